//! The CUDA path on a machine without a GPU, end to end through the real CUDA build of ONNX
//! Runtime: with a stand-in driver (`tl-runtime/tests/fixtures/stub_cuda_driver.c`) every
//! check before ONNX Runtime passes, the NVIDIA libraries load, and ONNX Runtime's CUDA
//! provider itself fails to start. `--device cuda` must then fail and name the reason, and
//! `--device auto` must run on the CPU and say so.
//!
//! Needs `tl models fetch onnxruntime-cuda` (2.3 GB, so not in CI) and the `cuda` feature:
//! `cargo test -p tl-cli --features cuda --test cuda -- --ignored`.
#![cfg(feature = "cuda")]

use std::{path::Path, process::Command};

#[test]
#[ignore = "needs `tl models fetch onnxruntime-cuda` (2.3 GB)"]
fn a_cuda_provider_that_cannot_start_fails_loudly_and_auto_says_it_chose_cpu() {
    let home = tl_core::home::tl_home().unwrap();
    assert!(
        tl_core::home::runtime_dir(&home, "onnxruntime-cuda").is_dir(),
        "fetch onnxruntime-cuda first"
    );
    let driver = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tl-runtime/tests/fixtures/stub_cuda_driver.c");
    let ok = Command::new("cc")
        .args(["-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o"])
        .arg(driver.path().join("libcuda.so.1"))
        .arg(src)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let photo = tl_core::home::asset_dir(&home, "sample-photos").join("chelsea.png");
    let tl = |device: &str| {
        Command::new(env!("CARGO_BIN_EXE_tl"))
            .args([
                "classify",
                "--model",
                "efficientnet-lite0",
                "--device",
                device,
            ])
            .arg(&photo)
            .env("LD_LIBRARY_PATH", driver.path())
            .env_remove("ORT_DYLIB_PATH")
            .output()
            .unwrap()
    };
    let cuda = tl("cuda");
    let err = String::from_utf8_lossy(&cuda.stderr);
    println!("--device cuda: {err}");
    assert!(!cuda.status.success());
    assert!(cuda.stdout.is_empty(), "no result from a silent CPU run");
    assert!(
        err.contains(
            "--device cuda cannot be used: ONNX Runtime could not start its CUDA provider"
        ) && err.contains("libonnxruntime_providers_cuda.so"),
        "{err}"
    );
    let auto = tl("auto");
    let err = String::from_utf8_lossy(&auto.stderr);
    let out = String::from_utf8_lossy(&auto.stdout);
    println!("--device auto: {err}{out}");
    assert!(auto.status.success(), "{err}");
    assert!(
        err.contains(
            "--device auto chose cpu after all: ONNX Runtime could not start its CUDA provider"
        ),
        "{err}"
    );
    assert!(out.contains("tiger cat"), "{out}");
    assert!(err.contains("provider cpu (CPUExecutionProvider)"), "{err}");

    let doctor = Command::new(env!("CARGO_BIN_EXE_tl"))
        .args(["doctor", "--json"])
        .env("LD_LIBRARY_PATH", driver.path())
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&doctor.stdout).unwrap();
    assert_eq!(v["cuda"]["gpus"]["Ok"][0]["name"], "Stub GPU (not a GPU)");
    assert_eq!(
        v["cuda"]["ready"], true,
        "every check before ONNX Runtime passes"
    );

    // The GPU check gets as far as ONNX Runtime, and stops there with its reason.
    let check = Command::new(env!("CARGO_BIN_EXE_tl"))
        .args([
            "gpu-check",
            "--no-fetch",
            "--batch-sizes",
            "1",
            "--images",
            "2",
            "--sentences",
            "2",
        ])
        .env("LD_LIBRARY_PATH", driver.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&check.stderr);
    println!("gpu-check: {err}");
    assert!(!check.status.success());
    assert!(err.contains("could not start its CUDA provider"), "{err}");
    assert!(check.stdout.is_empty());
}
