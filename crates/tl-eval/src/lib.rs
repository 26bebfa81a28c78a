//! `tl-eval`: how good a classifier is, with how sure we are of it, and the report that
//! shows it.
//!
//! - [`Confusion`] accumulates predictions batch by batch and gives accuracy, macro-F1,
//!   balanced accuracy and per-class precision, recall and F1;
//! - [`bootstrap`] gives a seeded percentile interval of any of them;
//! - [`calibration`]: log loss, expected calibration error, reliability bins and
//!   temperature scaling fitted on validation logits;
//! - [`Evaluation`] gathers all of it for one classifier on one labelled set;
//! - [`report`] renders a run's report as Markdown and as self-contained HTML with SVG
//!   plots.
//!
//! ```
//! use tl_eval::{Confusion, Metric};
//!
//! let mut c = Confusion::new(2);
//! c.update(&[0, 0, 1, 1], &[0, 1, 1, 1])?;
//! assert_eq!(c.accuracy(), 0.75);
//! assert!((Metric::BalancedAccuracy.of(&c) - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
//! # Ok::<(), tl_eval::Error>(())
//! ```

mod bootstrap;
pub mod browser;
pub mod calibration;
mod confusion;
mod evaluation;
pub mod report;
mod svg;

pub use bootstrap::{Interval, bootstrap, mean_ci};
pub use confusion::{ClassScore, Confusion, Metric};
pub use evaluation::{Calibration, EvalOptions, Evaluation, Scored};
pub use report::{Bar, Block, Point, Report, Section, Series};

/// Errors of the metrics and reports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{what}: expected {expected}, got {got}")]
    Shape {
        what: String,
        expected: String,
        got: String,
    },
    #[error("class {class} is outside the {classes} classes")]
    Class { class: u32, classes: usize },
    #[error("headless browser: {0}")]
    Browser(String),
    #[error(transparent)]
    Core(#[from] tl_core::Error),
}

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The share of `pred` equal to `y` (NaN when there are no rows): the one accuracy of
/// `tl`, which the probe, the trainer's scores and [`Confusion::accuracy`] agree with.
pub fn accuracy(pred: &[u32], y: &[u32]) -> f64 {
    if y.is_empty() {
        return f64::NAN;
    }
    pred.iter().zip(y).filter(|(a, b)| a == b).count() as f64 / y.len() as f64
}

/// How closely two feature matrices agree: the largest absolute difference and the
/// smallest per-row cosine similarity (none when their shapes differ).
pub fn agreement(a: &ndarray::Array2<f32>, b: &ndarray::Array2<f32>) -> Option<(f64, f64)> {
    if a.dim() != b.dim() {
        return None;
    }
    let mut max_abs = 0f64;
    let mut min_cos = 1f64;
    for (ra, rb) in a.rows().into_iter().zip(b.rows()) {
        let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
        for (&x, &y) in ra.iter().zip(rb.iter()) {
            let (x, y) = (x as f64, y as f64);
            max_abs = max_abs.max((x - y).abs());
            dot += x * y;
            na += x * x;
            nb += y * y;
        }
        let cos = if na == 0.0 && nb == 0.0 {
            1.0
        } else {
            dot / (na.sqrt() * nb.sqrt()).max(f64::MIN_POSITIVE)
        };
        min_cos = min_cos.min(cos);
    }
    Some((max_abs, min_cos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TOL: f64 = 1e-12;

    /// Goldens from scikit-learn 1.9.1: `f1_score([0,0,1,1,2,2], [0,1,1,1,0,2],
    /// average="macro")` = 0.6555555555555556 and `balanced_accuracy_score` = 0.6666666666666666.
    #[test]
    fn comparison_reports_the_worst_row() {
        let a = ndarray::array![[1.0f32, 0.0], [0.0, 2.0]];
        let b = ndarray::array![[1.0f32, 0.0], [1.0, 1.0]];
        let (max_abs, min_cos) = agreement(&a, &b).unwrap();
        assert_eq!(max_abs, 1.0);
        assert!((min_cos - 0.5f64.sqrt()).abs() < 1e-12);
        assert_eq!(agreement(&a, &a).unwrap(), (0.0, 1.0));
        assert!(agreement(&a, &ndarray::array![[1.0f32, 0.0]]).is_none());
    }

    #[test]
    fn matches_scikit_learn_on_a_small_case() {
        let mut c = Confusion::new(3);
        c.update(&[0, 1, 1, 1, 0, 2], &[0, 0, 1, 1, 2, 2]).unwrap();
        assert!((c.macro_f1() - 0.655_555_555_555_555_6).abs() < TOL);
        assert!((c.balanced_accuracy() - 0.666_666_666_666_666_6).abs() < TOL);
        assert!((c.accuracy() - 4.0 / 6.0).abs() < TOL);
    }

    #[test]
    fn bad_input_names_the_problem() {
        let mut c = Confusion::new(2);
        assert!(
            c.update(&[0, 2], &[0, 1])
                .unwrap_err()
                .to_string()
                .contains("class 2")
        );
        assert!(
            c.update(&[0], &[0, 1])
                .unwrap_err()
                .to_string()
                .contains("predictions")
        );
    }

    #[test]
    fn bootstrap_is_seeded_and_brackets_the_value() {
        let truth: Vec<u32> = (0..200).map(|i| (i % 3) as u32).collect();
        let pred: Vec<u32> = truth
            .iter()
            .enumerate()
            .map(|(i, &t)| if i % 5 == 0 { (t + 1) % 3 } else { t })
            .collect();
        let a = bootstrap(&pred, &truth, 3, Metric::MacroF1, 300, 7).unwrap();
        let b = bootstrap(&pred, &truth, 3, Metric::MacroF1, 300, 7).unwrap();
        assert_eq!(a, b);
        assert!(
            a.low <= a.value && a.value <= a.high && a.low < a.high,
            "{a:?}"
        );
    }

    proptest! {
        #[test]
        fn metrics_lie_in_the_unit_interval(pairs in proptest::collection::vec((0u32..4, 0u32..4), 1..60)) {
            let (pred, truth): (Vec<u32>, Vec<u32>) = pairs.into_iter().unzip();
            let mut c = Confusion::new(4);
            c.update(&pred, &truth).unwrap();
            for m in [Metric::Accuracy, Metric::MacroF1, Metric::BalancedAccuracy] {
                let v = m.of(&c);
                prop_assert!((0.0..=1.0).contains(&v), "{} = {}", m.name(), v);
            }
            // Perfect predictions score 1 on every metric.
            let mut p = Confusion::new(4);
            p.update(&truth, &truth).unwrap();
            prop_assert!((p.macro_f1() - 1.0).abs() < TOL && (p.balanced_accuracy() - 1.0).abs() < TOL);
        }
    }
}
