//! Helpers shared by the integration tests that use real fetched models.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use ndarray::{ArrayD, IxDyn};
use tl_runtime::{Runtime, RuntimeOptions};

/// `TL_HOME`, where `cargo xtask fetch-models` (run by `cargo xtask test` first) put the models.
pub fn home() -> PathBuf {
    tl_core::home::tl_home().expect("TL_HOME")
}

/// Path of a fetched registry model file, with a clear message when it is missing.
pub fn fetched(id: &str, file: &str) -> PathBuf {
    let dir = tl_core::home::model_dir(&home(), id);
    assert!(
        dir.join("fetched.json").is_file(),
        "`{id}` is not fetched into {}: run `cargo xtask fetch-models {id}` (the README's test command does)",
        dir.display()
    );
    dir.join(file)
}

/// The process-wide CPU runtime.
pub fn runtime() -> &'static Runtime {
    Runtime::init(&RuntimeOptions::default())
        .expect("ONNX Runtime: run `cargo xtask fetch-models onnxruntime`")
}

/// A deterministic test batch: `offset + amp * sin(freq * (n + 1) * i + phase * n)`, i the flat
/// index within sample n, in f64 then cast to f32 (as the Python reference scripts compute it).
pub fn sine_batch(
    batch: usize,
    shape: &[usize],
    amp: f64,
    offset: f64,
    freq: f64,
    phase: f64,
) -> ArrayD<f32> {
    let per: usize = shape.iter().product();
    let mut data = Vec::with_capacity(batch * per);
    for n in 0..batch {
        for i in 0..per {
            data.push(
                (offset + amp * (freq * (n as f64 + 1.0) * i as f64 + phase * n as f64).sin())
                    as f32,
            );
        }
    }
    let mut dims = vec![batch];
    dims.extend_from_slice(shape);
    ArrayD::from_shape_vec(IxDyn(&dims), data).unwrap()
}

/// A golden JSON file from `tests/golden/`.
pub fn golden(name: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/golden")
        .join(name);
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// A JSON array of arrays of numbers as rows of f64.
pub fn rows(v: &serde_json::Value) -> Vec<Vec<f64>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect()
}

/// Largest absolute difference between a [rows, cols] array and golden rows (first `cols` columns).
pub fn max_abs_diff(got: &ArrayD<f32>, want: &[Vec<f64>]) -> f64 {
    let mut worst: f64 = 0.0;
    for (r, row) in want.iter().enumerate() {
        for (c, w) in row.iter().enumerate() {
            worst = worst.max((got[[r, c]] as f64 - w).abs());
        }
    }
    worst
}
