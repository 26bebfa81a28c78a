//! The converters on the real fetched checkpoints: byte-identical output pinned in the
//! registry, and clear errors for checkpoints that do not fit the architecture.

use tl_hub::{Registry, manifest::Conversion};
use tl_onnx::{convert::BatchNorm, torch::Checkpoint};

fn checkpoint(id: &str) -> (Checkpoint, Conversion) {
    let reg = Registry::builtin().unwrap();
    let entry = reg.get(id).unwrap();
    let home = tl_core::home::tl_home().unwrap();
    let dir = entry.dir(&home);
    assert!(
        dir.join("fetched.json").is_file(),
        "run `cargo xtask fetch-models {id}`"
    );
    let conv = entry.convert[0].clone();
    let Conversion::Cnn { checkpoint, .. } = &conv else {
        panic!("{id} is not a CNN conversion")
    };
    (Checkpoint::load(&dir.join(checkpoint)).unwrap(), conv)
}

#[test]
fn conversions_are_byte_identical_and_match_the_pins() {
    for id in ["efficientnet-lite0", "mobilenet-v2"] {
        let (ckpt, conv) = checkpoint(id);
        let Conversion::Cnn {
            architecture,
            folded,
            kept,
            ..
        } = conv
        else {
            unreachable!()
        };
        let source = tl_core::hash::sha256_file(&ckpt.path).unwrap();
        for (form, pin) in [(BatchNorm::Folded, folded), (BatchNorm::Kept, kept)] {
            let a = tl_onnx::convert::convert(&architecture, &ckpt, form, &source)
                .unwrap()
                .to_bytes();
            let b = tl_onnx::convert::convert(&architecture, &ckpt, form, &source)
                .unwrap()
                .to_bytes();
            assert_eq!(a, b, "{id} {form:?}: two conversions differ");
            assert_eq!(
                tl_core::hash::sha256_bytes(&a),
                pin.sha256,
                "{id} {form:?}: not the pinned bytes"
            );
        }
    }
}

#[test]
fn checkpoints_that_do_not_fit_are_named() {
    let (ckpt, _) = checkpoint("mobilenet-v2");
    let source = "0".repeat(64);

    let mut extra = ckpt.clone();
    let t = extra.get("classifier.1.bias").unwrap().clone();
    extra.tensors.push(("classifier.2.bias".into(), t));
    let err = tl_onnx::convert::mobilenet_v2(&extra, BatchNorm::Folded, &source)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unexpected") && err.contains("classifier.2.bias"),
        "{err}"
    );

    let mut missing = ckpt.clone();
    missing
        .tensors
        .retain(|(k, _)| k != "features.5.conv.1.0.weight");
    let err = tl_onnx::convert::mobilenet_v2(&missing, BatchNorm::Folded, &source)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no tensor `features.5.conv.1.0.weight`"),
        "{err}"
    );

    let mut reshaped = ckpt.clone();
    for (k, t) in reshaped.tensors.iter_mut() {
        if k == "classifier.1.weight" {
            t.shape = vec![500, 2560];
        }
    }
    let err = tl_onnx::convert::mobilenet_v2(&reshaped, BatchNorm::Folded, &source)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("classifier.1.weight")
            && err.contains("[500, 2560]")
            && err.contains("[1000, 1280]"),
        "{err}"
    );

    // An EfficientNet checkpoint is not a MobileNetV2 one.
    let (eff, _) = checkpoint("efficientnet-lite0");
    let err = tl_onnx::convert::mobilenet_v2(&eff, BatchNorm::Folded, &source)
        .unwrap_err()
        .to_string();
    assert!(err.contains("features.0.0.weight"), "{err}");
}
