//! LogME, H-score, NCE and LEEP against goldens from `tests/reference/logme_reference.py`
//! (LogME transcribed from the authors' code; NumPy 2.4.6), on inputs built from the same
//! formulas here.

use ndarray::Array2;
use tl_adapt::transfer::{h_score, leep, logme, nce};

/// f64 throughout; the eigendecompositions differ (nalgebra vs LAPACK).
const TOL: f64 = 1e-8;

fn golden() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/golden/transfer.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn features(n: usize, d: usize) -> Array2<f32> {
    Array2::from_shape_fn((n, d), |(i, j)| {
        let (i, j) = (i as f64, j as f64);
        ((0.7 * i + 1.3 * j).sin() + 0.1 * ((i as usize * j as usize) % 7) as f64) as f32
    })
}

fn labels(n: usize, k: usize) -> Vec<u32> {
    (0..n).map(|i| ((i * 5 + i / 7) % k) as u32).collect()
}

fn source_probs(n: usize, z: usize) -> Array2<f64> {
    let mut p = Array2::from_shape_fn((n, z), |(i, j)| {
        2.0 * (0.9 * i as f64 + 0.4 * (j * j) as f64).cos()
    });
    for mut r in p.rows_mut() {
        let m = r.fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        r.mapv_inplace(|v| (v - m).exp());
        let s = r.sum();
        r /= s;
    }
    p
}

#[test]
fn scores_match_the_reference() {
    let g = golden();
    let (n, d, k, z) = (60, 8, 3, 5);
    assert_eq!((g["n"].as_u64(), g["d"].as_u64()), (Some(60), Some(8)));
    let (f, y, p) = (features(n, d), labels(n, k), source_probs(n, z));
    for (name, got) in [
        ("logme", logme(f.view(), &y, k).unwrap()),
        ("h_score", h_score(f.view(), &y, k).unwrap()),
        ("nce", nce(p.view(), &y, k).unwrap()),
        ("leep", leep(p.view(), &y, k).unwrap()),
    ] {
        let want = g[name].as_f64().unwrap();
        assert!(
            (got - want).abs() <= TOL * want.abs().max(1.0),
            "{name}: {got} vs {want}"
        );
    }
}

#[test]
fn bad_labels_are_named() {
    let f = features(10, 3);
    let err = logme(f.view(), &[0, 1, 2], 3).unwrap_err().to_string();
    assert!(err.contains("10 (one per row)"), "{err}");
    let err = h_score(f.view(), &[0, 1, 5, 0, 1, 0, 1, 0, 1, 0], 3)
        .unwrap_err()
        .to_string();
    assert!(err.contains("class 5"), "{err}");
}
