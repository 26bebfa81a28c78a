//! tl-eval against scikit-learn and SciPy on the same logits: goldens in
//! `tests/golden/metrics.json`, made by `tests/reference/metrics_reference.py` (the
//! versions are in the file's `provenance`).

use ndarray::Array2;
use tl_eval::calibration::{self, DEFAULT_BINS};
use tl_eval::{EvalOptions, Evaluation, Scored};

mod common;
use common::{golden, matrix};

/// Metrics are ratios of counts and sums of logs: they agree to rounding.
const METRIC_TOL: f64 = 1e-12;
/// The temperature: the NLL is flat at its minimum (quadratic in ΔT), so SciPy's bounded
/// Brent search stops up to ~3e-8 (relative) from tl's Newton optimum while the NLL agrees
/// to 1e-15; tl's NLL is never the higher one (`fitted_temperature_is_at_least_as_good`).
const TEMPERATURE_TOL: f64 = 1e-7;
/// Test-set figures after scaling move linearly with that ΔT.
const SCALED_TOL: f64 = 1e-8;

fn close(what: &str, case: &str, got: f64, want: f64, tol: f64) {
    assert!(
        (got - want).abs() <= tol * want.abs().max(1.0),
        "{case}: {what} = {got}, scikit-learn/NumPy reference {want} (tolerance {tol})"
    );
}

#[test]
fn evaluation_matches_scikit_learn() {
    let g = golden();
    assert_eq!(g.provenance["ece_bins"], DEFAULT_BINS);
    for c in &g.cases {
        let names: Vec<String> = (0..c.classes).map(|k| format!("c{k}")).collect();
        let e = c.evaluate(&names);
        let zv = matrix(&c.val_logits);
        let n = &c.name;
        assert_eq!(e.confusion.counts, c.confusion, "{n}: confusion matrix");
        for (k, s) in e.per_class.iter().enumerate() {
            close("precision", n, s.precision, c.precision[k], METRIC_TOL);
            close("recall", n, s.recall, c.recall[k], METRIC_TOL);
            close("F1", n, s.f1, c.f1[k], METRIC_TOL);
            assert_eq!(s.support, c.support[k], "{n}: support of class {k}");
        }
        close("accuracy", n, e.accuracy.value, c.accuracy, METRIC_TOL);
        close(
            "balanced accuracy",
            n,
            e.balanced_accuracy.value,
            c.balanced_accuracy,
            METRIC_TOL,
        );
        close("macro-F1", n, e.macro_f1.value, c.macro_f1, METRIC_TOL);
        close(
            "log loss",
            n,
            e.calibration.log_loss,
            c.log_loss,
            METRIC_TOL,
        );
        close("ECE", n, e.calibration.ece, c.ece, METRIC_TOL);
        let t = e.calibration.temperature.unwrap();
        close("temperature", n, t, c.temperature, TEMPERATURE_TOL);
        close(
            "scaled log loss",
            n,
            e.calibration.log_loss_scaled.unwrap(),
            c.log_loss_scaled,
            SCALED_TOL,
        );
        close(
            "scaled ECE",
            n,
            e.calibration.ece_scaled.unwrap(),
            c.ece_scaled,
            SCALED_TOL,
        );
        // Temperature scaling never raises the validation NLL above T = 1's.
        let nll = |t: f64| {
            calibration::log_loss(calibration::softmax(zv.view(), t).view(), &c.val_labels).unwrap()
        };
        assert!(
            nll(t) <= nll(1.0) + 1e-15,
            "{n}: NLL {} at T {t} > {} at 1",
            nll(t),
            nll(1.0)
        );
        for b in &e.per_class {
            assert!((0.0..=1.0).contains(&b.f1));
        }
        // The intervals bracket their values.
        for i in [e.accuracy, e.balanced_accuracy, e.macro_f1] {
            assert!(i.low <= i.value && i.value <= i.high, "{n}: {i:?}");
        }
    }
}

#[test]
fn temperature_is_the_minimum_of_the_validation_nll() {
    // Against a naive reference: a dense scan of T, then the fitted T must be no worse
    // than any scanned point.
    let g = golden();
    let c = &g.cases[0];
    let zv = matrix(&c.val_logits);
    let nll = |t: f64| {
        calibration::log_loss(calibration::softmax(zv.view(), t).view(), &c.val_labels).unwrap()
    };
    let t = calibration::fit_temperature(zv.view(), &c.val_labels).unwrap();
    let best_scan = (1..=2000)
        .map(|i| nll(i as f64 * 0.005))
        .fold(f64::INFINITY, f64::min);
    assert!(
        nll(t) <= best_scan + 1e-12,
        "fitted {} vs scan {best_scan}",
        nll(t)
    );
}

#[test]
fn bad_shapes_name_what_is_wrong() {
    let z = Array2::<f64>::zeros((3, 2));
    let names = vec!["a".to_string(), "b".to_string(), "c".to_string()];
    let err = Evaluation::new(
        &names,
        Scored {
            logits: z.view(),
            labels: &[0, 1, 0],
        },
        None,
        EvalOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("logits columns") && err.contains("3 (one per class)"),
        "{err}"
    );
    let err = calibration::log_loss(z.view(), &[0, 1])
        .unwrap_err()
        .to_string();
    assert!(err.contains("probabilities rows"), "{err}");
    let err = calibration::fit_temperature(z.view(), &[0, 5, 1])
        .unwrap_err()
        .to_string();
    assert!(err.contains("class 5"), "{err}");
}

#[test]
fn fitted_temperature_is_at_least_as_good_as_scipys() {
    for c in &golden().cases {
        let zv = matrix(&c.val_logits);
        let nll = |t: f64| {
            calibration::log_loss(calibration::softmax(zv.view(), t).view(), &c.val_labels).unwrap()
        };
        let t = calibration::fit_temperature(zv.view(), &c.val_labels).unwrap();
        println!(
            "{}: tl T {t} NLL {:e}, SciPy T {} NLL {:e}",
            c.name,
            nll(t),
            c.temperature,
            nll(c.temperature)
        );
        assert!(nll(t) <= nll(c.temperature) + 1e-15, "{}", c.name);
    }
}
