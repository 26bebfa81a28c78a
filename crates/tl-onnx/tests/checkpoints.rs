//! The checkpoint reader on tiny fixtures in both container formats, written by
//! `tests/reference/make_checkpoint_fixtures.py` (no PyTorch needed).

use std::path::{Path, PathBuf};

use tl_onnx::torch::{Checkpoint, DType};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/checkpoints")
        .join(name)
}

fn check(ckpt: &Checkpoint) {
    let keys: Vec<&str> = ckpt.keys().collect();
    assert_eq!(
        keys,
        [
            "conv.weight",
            "conv.bias",
            "bn.num_batches_tracked",
            "half",
            "param"
        ]
    );
    let w = ckpt.get("conv.weight").unwrap();
    assert_eq!(w.shape, [2, 3]);
    assert_eq!(w.f32s().unwrap(), [0.0, 0.25, 0.5, 0.75, 1.0, 1.25]);
    // A strided view: every second element of [10..16).
    assert_eq!(
        ckpt.get("conv.bias").unwrap().f32s().unwrap(),
        [10.0, 12.0, 14.0]
    );
    let n = ckpt.get("bn.num_batches_tracked").unwrap();
    assert_eq!(
        (n.dtype, n.shape.len(), n.i64s().unwrap()),
        (DType::I64, 0, &[7i64][..])
    );
    assert!(n.f32s().is_none());
    assert_eq!(ckpt.get("half").unwrap().f32s().unwrap(), [1.5, -2.0]);
    assert_eq!(ckpt.get("param").unwrap().f32s().unwrap(), [42.0]);
}

#[test]
fn legacy_format() {
    check(&Checkpoint::load(&fixture("tiny_legacy.pth")).unwrap());
}

#[test]
fn zip_format() {
    check(&Checkpoint::load(&fixture("tiny_zip.pth")).unwrap());
}

#[test]
fn truncated_checkpoints_are_errors_not_panics() {
    for name in ["tiny_legacy.pth", "tiny_zip.pth"] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        for cut in (1..bytes.len()).step_by(7) {
            let res = Checkpoint::from_bytes(&bytes[..cut], Path::new(name));
            let err = res
                .expect_err("a truncated checkpoint must not load")
                .to_string();
            assert!(err.contains(name), "{err}");
        }
    }
}
