//! The converted ImageNet models against an independent reference: a NumPy forward pass
//! written directly from the `.pth` weights (`tests/reference/imagenet_reference.py`,
//! goldens in `tests/golden/imagenet_reference.json`), at 224 and at 112 px.

mod common;

use common::*;
use tl_runtime::{Input, Session, SessionOptions};

/// Allowed difference in logits between ONNX Runtime (f32) and the NumPy reference (f64).
const LOGIT_TOL: f64 = 1e-3;
/// Allowed difference in pooled features.
const FEATURE_TOL: f64 = 1e-3;

fn check(model_id: &str, file: &str) {
    let g = golden("imagenet_reference.json");
    let rt = runtime();
    let mut session =
        Session::from_file(rt, &fetched(model_id, file), &SessionOptions::default()).unwrap();
    for size in [224usize, 112] {
        let x = sine_batch(2, &[3, size, size], 1.5, 0.0, 0.013, 0.7);
        let out = session
            .run(&[("input", Input::F32(x.view()))], &["logits", "features"])
            .unwrap();
        let want = &g["models"][model_id][size.to_string()];
        let dl = max_abs_diff(&out["logits"], &rows(&want["logits"]));
        let df = max_abs_diff(&out["features"], &rows(&want["features_head"]));
        eprintln!(
            "{model_id} ({file}) at {size} px: max |Δlogit| = {dl:.2e}, max |Δfeature| = {df:.2e}"
        );
        assert!(
            dl < LOGIT_TOL,
            "{model_id} {file} {size}px: logits differ by {dl}"
        );
        assert!(
            df < FEATURE_TOL,
            "{model_id} {file} {size}px: features differ by {df}"
        );
        let argmax: Vec<usize> = out["logits"]
            .outer_iter()
            .map(|r| {
                r.iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .unwrap()
                    .0
            })
            .collect();
        let want_argmax: Vec<usize> = want["argmax"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(argmax, want_argmax);
    }
}

#[test]
fn efficientnet_lite0_folded_matches_numpy_reference() {
    check("efficientnet-lite0", "model.onnx");
}

#[test]
fn efficientnet_lite0_batchnorm_kept_matches_numpy_reference() {
    check("efficientnet-lite0", "model-bn.onnx");
}

#[test]
fn mobilenet_v2_folded_matches_numpy_reference() {
    check("mobilenet-v2", "model.onnx");
}

#[test]
fn mobilenet_v2_batchnorm_kept_matches_numpy_reference() {
    check("mobilenet-v2", "model-bn.onnx");
}
