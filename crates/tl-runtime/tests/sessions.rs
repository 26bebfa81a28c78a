//! Sessions on the real ONNX Runtime library (`cargo xtask fetch-models onnxruntime`):
//! I/O binding and half precision give what a plain run gives.

use ndarray::{ArrayD, IxDyn};
use tl_core::Precision;
use tl_runtime::{Input, Runtime, RuntimeOptions, Session, SessionOptions};

/// Half precision on ONNX Runtime's CPU provider against float32, largest difference in the
/// logits of the tiny network below (inputs in [-1, 1]; measured 2.0e-4).
const F16_LOGIT_TOLERANCE: f32 = 2e-3;

fn input() -> ArrayD<f32> {
    ArrayD::from_shape_fn(IxDyn(&[3, 3, 16, 16]), |i| {
        ((i[0] * 7 + i[1] * 5 + i[2] * 3 + i[3]) % 17) as f32 / 8.0 - 1.0
    })
}

fn run(opts: &SessionOptions) -> ArrayD<f32> {
    let rt = Runtime::init(&RuntimeOptions::default())
        .expect("run `cargo xtask fetch-models onnxruntime`");
    let model = tl_onnx::fixtures::tiny("mobilenet", 5, 4)
        .unwrap()
        .with_outputs(&["block1"])
        .unwrap();
    let mut s = Session::from_model(rt, &model, "tiny", &opts.clone().threads(Some(1))).unwrap();
    let x = input();
    let out = s
        .run(&[("input", Input::F32(x.view()))], &["logits", "block1"])
        .unwrap();
    assert_eq!(out["block1"].shape(), [3, 8, 8, 8]);
    out["logits"].clone()
}

#[test]
fn io_binding_gives_the_same_bits_as_a_plain_run() {
    let plain = run(&SessionOptions::default().io_binding(false));
    let bound = run(&SessionOptions::default().io_binding(true));
    assert_eq!(plain.shape(), [3, 4]);
    assert_eq!(plain, bound);
}

#[test]
fn half_precision_is_close_to_float32_but_not_equal() {
    let f32_out = run(&SessionOptions::default());
    let f16_out = run(&SessionOptions::default().precision(Precision::F16));
    let worst = f32_out
        .iter()
        .zip(f16_out.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    println!("largest f16 - f32 logit difference: {worst:e}");
    assert!(worst > 0.0 && worst <= F16_LOGIT_TOLERANCE, "{worst}");
}
