//! The linear probe against scikit-learn: the same objective within 1e-5 relative and the
//! same test accuracy, on the registry's `sklearn-digits` (golden values and the script
//! that made them: tests/golden/probe/digits.json, tests/reference/probe_reference.py).

mod common;

use ndarray::Array2;
use serde::Deserialize;
use tl_head::probe::{ClassWeight, LinearProbe, ProbeConfig, ProbeData, accuracy, fit, objective};

/// The bar: tl's objective within 1e-5 of scikit-learn's at tol 1e-10.
const OBJECTIVE_REL_TOL: f64 = 1e-5;

#[derive(Deserialize)]
struct Golden {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    classes: Vec<u32>,
    rows: Option<Vec<usize>>,
    train_rows: usize,
    c: f64,
    class_weight: Option<String>,
    objective: f64,
    test_accuracy: f64,
    test_size: usize,
}

/// Digits as scikit-learn gives them: pixel values 0–16 (the loader scaled them to 0–255).
fn digits() -> (Array2<f32>, Vec<u32>) {
    let (x, y) = common::digits_u8();
    (x.mapv(|v| (f64::from(v) * 16.0 / 255.0).round() as f32), y)
}

fn golden() -> Golden {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/golden/probe/digits.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn run(case: &Case, x: &Array2<f32>, y: &[u32]) -> (LinearProbe, f64, f64, ProbeConfig) {
    let rows: Vec<usize> = case.rows.clone().unwrap_or_else(|| (0..y.len()).collect());
    let sub = x.select(ndarray::Axis(0), &rows);
    let ys: Vec<u32> = rows
        .iter()
        .map(|&i| case.classes.iter().position(|&c| c == y[i]).unwrap() as u32)
        .collect();
    let (xtr, xte) = sub.view().split_at(ndarray::Axis(0), case.train_rows);
    let (ytr, yte) = ys.split_at(case.train_rows);
    let cfg = ProbeConfig::new(case.c).class_weight(match case.class_weight.as_deref() {
        Some("balanced") => ClassWeight::Balanced,
        None => ClassWeight::None,
        Some(other) => panic!("{other}"),
    });
    let data = ProbeData {
        x: xtr,
        y: ytr,
        classes: case.classes.len(),
    };
    let probe = fit(&data, &cfg, None).unwrap();
    let obj = objective(&probe, &data, &cfg).unwrap();
    let acc = accuracy(&probe.predict(xte), yte);
    (probe, obj, acc, cfg)
}

#[test]
fn reaches_scikit_learns_objective_and_accuracy() {
    let (x, y) = digits();
    for case in golden().cases {
        let (probe, obj, acc, _) = run(&case, &x, &y);
        let rel = (obj - case.objective) / case.objective;
        println!(
            "{}: objective {obj:.10} vs {:.10} (rel {rel:.2e}), {} iterations, {:.3} s; test accuracy {acc:.4} vs {:.4}",
            case.name,
            case.objective,
            probe.report.iterations,
            probe.report.seconds,
            case.test_accuracy
        );
        assert!(probe.report.converged, "{}", case.name);
        assert!(
            rel.abs() <= OBJECTIVE_REL_TOL,
            "{}: relative objective difference {rel:e}",
            case.name
        );
        assert!(
            (probe.report.objective - obj).abs() <= 1e-9 * obj,
            "the solver reports the objective it reached"
        );
        // The same number of correct test rows.
        let correct = |a: f64| (a * case.test_size as f64).round() as usize;
        assert_eq!(correct(acc), correct(case.test_accuracy), "{}", case.name);
    }
}

#[test]
fn deterministic_and_standardisation_maps_back() {
    let (x, y) = digits();
    let case = &golden().cases[0];
    let (a, _, _, cfg) = run(case, &x, &y);
    let (b, _, _, _) = run(case, &x, &y);
    assert_eq!(a.weight, b.weight, "same inputs, same bits");
    // Standardised fitting changes the problem, but the weights map back onto raw
    // features: predictions through `weight`/`bias` equal those on standardised rows.
    let xs = x.slice(ndarray::s![..1200, ..]);
    let data = ProbeData {
        x: xs,
        y: &y[..1200],
        classes: 10,
    };
    let st = fit(&data, &cfg.clone().standardize(true), None).unwrap();
    assert!(st.report.converged);
    assert!(accuracy(&st.predict(xs), &y[..1200]) > 0.95);
}

#[test]
fn bad_input_is_refused_before_fitting() {
    let x = Array2::<f32>::from_shape_fn((4, 2), |(i, j)| (i + j) as f32);
    let msg = |x: &Array2<f32>, y: &[u32], classes, cfg: &ProbeConfig| {
        fit(
            &ProbeData {
                x: x.view(),
                y,
                classes,
            },
            cfg,
            None,
        )
        .unwrap_err()
        .to_string()
    };
    let cfg = ProbeConfig::new(1.0);
    let mut nan = x.clone();
    nan[[2, 1]] = f32::NAN;
    assert!(msg(&nan, &[0, 1, 0, 1], 2, &cfg).contains("row 2, column 1 is NaN"));
    assert!(msg(&x, &[0, 1, 0, 1], 3, &cfg).contains("class 2 has no training rows"));
    assert!(msg(&x, &[0, 1, 0, 5], 2, &cfg).contains("row 3 has class 5"));
    assert!(msg(&x, &[0, 1, 0], 2, &cfg).contains("4 feature rows but 3 labels"));
    assert!(msg(&x, &[0, 1, 0, 1], 2, &ProbeConfig::new(-1.0)).contains("invalid C"));
}
