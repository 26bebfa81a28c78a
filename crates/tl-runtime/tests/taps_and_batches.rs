//! Tapping intermediate values of real models, and batched runs.

mod common;

use common::*;
use tl_onnx::OnnxModel;
use tl_runtime::{Input, Session, SessionOptions};

#[test]
fn tapped_head_pools_to_the_features_output() {
    // `features` is the global average of `head`: tapping `head` and pooling it by hand
    // must give `features` back, which checks that the tap returns the right tensor.
    let path = fetched("efficientnet-lite0", "model.onnx");
    let model = OnnxModel::load(&path)
        .unwrap()
        .with_outputs(&["head", "blocks.15"])
        .unwrap();
    let mut s =
        Session::from_model(runtime(), &model, "tapped", &SessionOptions::default()).unwrap();
    let x = sine_batch(3, &[3, 160, 160], 1.5, 0.0, 0.013, 0.7);
    let out = s.run(&[("input", Input::F32(x.view()))], &[]).unwrap();
    assert_eq!(out["head"].shape(), &[3, 1280, 5, 5]);
    assert_eq!(out["blocks.15"].shape(), &[3, 320, 5, 5]);
    let head = &out["head"];
    let mut worst: f32 = 0.0;
    for n in 0..3 {
        for c in 0..1280 {
            let mean: f32 = (0..5)
                .flat_map(|h| (0..5).map(move |w| (h, w)))
                .map(|(h, w)| head[[n, c, h, w]])
                .sum::<f32>()
                / 25.0;
            worst = worst.max((mean - out["features"][[n, c]]).abs());
        }
    }
    assert!(
        worst < 1e-5,
        "pooled tap differs from `features` by {worst}"
    );
}

#[test]
fn batch_results_equal_single_image_results() {
    let path = fetched("mobilenet-v2", "model.onnx");
    let mut s = Session::from_file(
        runtime(),
        &path,
        &SessionOptions::default().threads(Some(1)),
    )
    .unwrap();
    let x = sine_batch(4, &[3, 96, 96], 1.5, 0.0, 0.013, 0.7);
    let all = s
        .run(&[("input", Input::F32(x.view()))], &["logits"])
        .unwrap();
    for n in 0..4 {
        let one = x
            .slice(ndarray::s![n..n + 1, .., .., ..])
            .to_owned()
            .into_dyn();
        let single = s
            .run(&[("input", Input::F32(one.view()))], &["logits"])
            .unwrap();
        let d = all["logits"]
            .slice(ndarray::s![n, ..])
            .iter()
            .zip(single["logits"].iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(d < 1e-4, "sample {n}: batch and single runs differ by {d}");
    }
}

#[test]
fn wrong_shapes_and_names_are_clear_errors() {
    let path = fetched("vgg16-tumor", "model.onnx");
    let mut s = Session::from_file(runtime(), &path, &SessionOptions::default()).unwrap();
    let nchw = ndarray::ArrayD::<f32>::zeros(vec![1, 3, 240, 240]);
    let err = s
        .run(&[("input", Input::F32(nchw.view()))], &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`input`") && err.contains("[1, 3, 240, 240]") && err.contains("240, 240, 3"),
        "{err}"
    );
    let err = s
        .run(&[("image", Input::F32(nchw.view()))], &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no input `image`") && err.contains("`input`"),
        "{err}"
    );
    let ok = ndarray::ArrayD::<f32>::zeros(vec![1, 240, 240, 3]);
    let err = s
        .run(&[("input", Input::F32(ok.view()))], &["logits"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("`logits`"), "{err}");
}

#[test]
fn truncated_and_foreign_model_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fetched("mobilenet-v2", "model.onnx")).unwrap();
    let cut = dir.path().join("cut.onnx");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = Session::from_file(runtime(), &cut, &SessionOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("cut.onnx"), "{err}");
    let png = dir.path().join("photo.onnx");
    std::fs::write(&png, b"\x89PNG\r\n\x1a\n0000000000000").unwrap();
    let err = Session::from_file(runtime(), &png, &SessionOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("photo.onnx") && err.contains("not a valid ONNX model"),
        "{err}"
    );
}
