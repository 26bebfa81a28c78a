//! Users' own ONNX files of the seed's families (VGG16 in NHWC, a half-width ResNet-50)
//! against Python onnxruntime on the same input tensors (`tests/reference/byo_reference.py`,
//! goldens in `tests/golden/byo_reference.json`).

mod common;

use common::*;
use tl_onnx::OnnxModel;
use tl_runtime::{Input, Session, SessionOptions};

/// Allowed difference from Python onnxruntime: the same library on the same machine
/// gives the same bits, but the reference runs another thread count and build of the bindings.
const TOL: f64 = 1e-4;

fn check(model_id: &str, shape: &[usize], amp: f64, offset: f64, freq: f64, phase: f64) {
    let g = &golden("byo_reference.json")["models"][model_id];
    let tap = g["tap"].as_str().unwrap();
    let output = g["output"].as_str().unwrap();
    let input = g["input"].as_str().unwrap();
    let model = OnnxModel::load(&fetched(model_id, "model.onnx"))
        .unwrap()
        .with_outputs(&[tap])
        .unwrap();
    let mut s =
        Session::from_model(runtime(), &model, model_id, &SessionOptions::default()).unwrap();
    let x = sine_batch(2, shape, amp, offset, freq, phase);
    let out = s
        .run(&[(input, Input::F32(x.view()))], &[output, tap])
        .unwrap();
    let d_out = max_abs_diff(&out[output], &rows(&g["outputs"]));
    let d_tap = max_abs_diff(&out[tap], &rows(&g["tap_values"]));
    eprintln!("{model_id}: max |Δoutput| = {d_out:.2e}, max |Δ{tap}| = {d_tap:.2e}");
    assert!(
        d_out < TOL && d_tap < TOL,
        "{model_id}: differs from Python onnxruntime by {d_out} / {d_tap}"
    );
}

#[test]
fn vgg16_nhwc_matches_python_onnxruntime() {
    check("vgg16-tumor", &[240, 240, 3], 0.5, 0.5, 0.011, 0.3);
}

#[test]
fn resnet50_half_width_matches_python_onnxruntime() {
    check("resnet50-nsfw", &[224, 224, 3], 60.0, 0.0, 0.017, 0.5);
}
