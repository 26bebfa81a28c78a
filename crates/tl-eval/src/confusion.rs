//! The confusion matrix and the metrics read from it.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

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

    /// The fraction of rows predicted right (NaN without rows), as [`crate::accuracy`] of
    /// the rows counted.
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

    /// Precision, recall, F1 and support of every class, as scikit-learn's
    /// `precision_recall_fscore_support(labels=range(k), zero_division=0)`.
    pub fn per_class(&self) -> Vec<ClassScore> {
        let k = self.classes();
        (0..k)
            .map(|c| {
                let tp = self.counts[c][c] as f64;
                let support: u64 = self.counts[c].iter().sum();
                let predicted: u64 = (0..k).map(|t| self.counts[t][c]).sum();
                let ratio = |num: f64, den: u64| if den > 0 { num / den as f64 } else { 0.0 };
                ClassScore {
                    precision: ratio(tp, predicted),
                    recall: ratio(tp, support),
                    f1: ratio(2.0 * tp, support + predicted),
                    support,
                    predicted,
                }
            })
            .collect()
    }

    /// The unweighted mean of per-class F1 over classes present in the truth or the
    /// predictions (scikit-learn's `f1_score(average="macro")`, with F1 = 0 for a class
    /// never predicted).
    pub fn macro_f1(&self) -> f64 {
        let f1s: Vec<f64> = self
            .per_class()
            .iter()
            .filter(|c| c.support > 0 || c.predicted > 0)
            .map(|c| c.f1)
            .collect();
        f1s.iter().sum::<f64>() / f1s.len() as f64
    }
}

/// One class's scores in a [`Confusion`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClassScore {
    #[serde(deserialize_with = "tl_core::io::nan_if_null")]
    pub precision: f64,
    #[serde(deserialize_with = "tl_core::io::nan_if_null")]
    pub recall: f64,
    #[serde(deserialize_with = "tl_core::io::nan_if_null")]
    pub f1: f64,
    /// Rows whose true class this is.
    pub support: u64,
    /// Rows predicted as this class.
    pub predicted: u64,
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
