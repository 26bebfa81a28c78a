//! `tl-eval`: how good a classifier is, with how sure we are of it.
//!
//! [`Confusion`] accumulates predictions batch by batch and gives accuracy, macro-F1 and
//! balanced accuracy; [`bootstrap`] gives a seeded percentile interval of any of them.
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

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Errors of the metrics.
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
}

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Counts of `[true class][predicted class]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    pub counts: Vec<Vec<u64>>,
}

impl Confusion {
    pub fn new(classes: usize) -> Self {
        Self {
            counts: vec![vec![0; classes]; classes],
        }
    }

    pub fn classes(&self) -> usize {
        self.counts.len()
    }

    /// Adds a batch of predictions and their true classes.
    pub fn update(&mut self, pred: &[u32], truth: &[u32]) -> Result<()> {
        if pred.len() != truth.len() {
            return Err(Error::Shape {
                what: "predictions".into(),
                expected: format!("{} (one per true label)", truth.len()),
                got: pred.len().to_string(),
            });
        }
        let k = self.classes();
        if let Some(&bad) = pred.iter().chain(truth).find(|&&c| c as usize >= k) {
            return Err(Error::Class {
                class: bad,
                classes: k,
            });
        }
        for (&p, &t) in pred.iter().zip(truth) {
            self.counts[t as usize][p as usize] += 1;
        }
        Ok(())
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    /// The fraction of rows predicted right (NaN without rows).
    pub fn accuracy(&self) -> f64 {
        let right: u64 = (0..self.classes()).map(|k| self.counts[k][k]).sum();
        right as f64 / self.total() as f64
    }

    /// Recall of each class present in the truth (`None` for absent classes).
    fn recalls(&self) -> Vec<Option<f64>> {
        (0..self.classes())
            .map(|k| {
                let n: u64 = self.counts[k].iter().sum();
                (n > 0).then(|| self.counts[k][k] as f64 / n as f64)
            })
            .collect()
    }

    /// The mean recall over the classes present in the truth.
    pub fn balanced_accuracy(&self) -> f64 {
        let r: Vec<f64> = self.recalls().into_iter().flatten().collect();
        r.iter().sum::<f64>() / r.len() as f64
    }

    /// The unweighted mean of per-class F1 over classes present in the truth or the
    /// predictions (scikit-learn's `f1_score(average="macro")`, with F1 = 0 for a class
    /// never predicted).
    pub fn macro_f1(&self) -> f64 {
        let k = self.classes();
        let mut f1s = Vec::new();
        for c in 0..k {
            let tp = self.counts[c][c] as f64;
            let actual: u64 = self.counts[c].iter().sum();
            let predicted: u64 = (0..k).map(|t| self.counts[t][c]).sum();
            if actual == 0 && predicted == 0 {
                continue;
            }
            let denom = actual as f64 + predicted as f64;
            f1s.push(if denom > 0.0 { 2.0 * tp / denom } else { 0.0 });
        }
        f1s.iter().sum::<f64>() / f1s.len() as f64
    }
}

/// A metric of a [`Confusion`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    Accuracy,
    MacroF1,
    BalancedAccuracy,
}

impl Metric {
    pub fn of(self, c: &Confusion) -> f64 {
        match self {
            Metric::Accuracy => c.accuracy(),
            Metric::MacroF1 => c.macro_f1(),
            Metric::BalancedAccuracy => c.balanced_accuracy(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::MacroF1 => "macro-F1",
            Metric::BalancedAccuracy => "balanced accuracy",
        }
    }
}

/// A value with a percentile interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

/// The metric on all rows and its 95 % percentile bootstrap interval from `resamples`
/// resamples of the rows, drawn from the stream `bootstrap` of `seed`.
pub fn bootstrap(
    pred: &[u32],
    truth: &[u32],
    classes: usize,
    metric: Metric,
    resamples: usize,
    seed: u64,
) -> Result<Interval> {
    let mut all = Confusion::new(classes);
    all.update(pred, truth)?;
    let n = pred.len();
    let mut rng = tl_core::rng::seeded_rng(seed, "bootstrap");
    let mut values: Vec<f64> = (0..resamples)
        .map(|_| {
            let mut c = Confusion::new(classes);
            for _ in 0..n {
                let i = rng.random_range(0..n);
                c.counts[truth[i] as usize][pred[i] as usize] += 1;
            }
            metric.of(&c)
        })
        .filter(|v| v.is_finite())
        .collect();
    values.sort_by(f64::total_cmp);
    let q = |p: f64| {
        if values.is_empty() {
            return f64::NAN;
        }
        let pos = p * (values.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        values[lo] + (values[hi] - values[lo]) * (pos - lo as f64)
    };
    Ok(Interval {
        value: metric.of(&all),
        low: q(0.025),
        high: q(0.975),
    })
}

/// Mean and a 95 % normal-approximation half-width (1.96 standard errors) of per-seed
/// values.
pub fn mean_ci(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, f64::NAN);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, 1.96 * (var / n).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TOL: f64 = 1e-12;

    /// Goldens from scikit-learn 1.9.1: `f1_score([0,0,1,1,2,2], [0,1,1,1,0,2],
    /// average="macro")` = 0.6555555555555556 and `balanced_accuracy_score` = 0.6666666666666666.
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
