//! Everything `tl` reports about one classifier on one labelled set.

use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

use crate::calibration::{self, Bin};
use crate::{ClassScore, Confusion, Error, Interval, Metric, Result, bootstrap};

/// How an [`Evaluation`] is computed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EvalOptions {
    /// Bins of the calibration error and the reliability diagram.
    pub bins: usize,
    /// Bootstrap resamples of the headline metrics' intervals.
    pub resamples: usize,
    /// Seed of the bootstrap (stream `bootstrap`).
    pub seed: u64,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            bins: calibration::DEFAULT_BINS,
            resamples: 1000,
            seed: 0,
        }
    }
}

/// Calibration of the probabilities, before and after temperature scaling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    #[serde(deserialize_with = "tl_core::io::nan_if_null")]
    pub log_loss: f64,
    #[serde(deserialize_with = "tl_core::io::nan_if_null")]
    pub ece: f64,
    pub reliability: Vec<Bin>,
    /// The temperature fitted on the validation logits (absent without validation rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_loss_scaled: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ece_scaled: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reliability_scaled: Vec<Bin>,
}

/// A classifier scored on labelled rows: headline metrics with 95 % bootstrap intervals,
/// per-class scores, the confusion matrix and calibration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub classes: Vec<String>,
    pub rows: usize,
    pub accuracy: Interval,
    pub balanced_accuracy: Interval,
    pub macro_f1: Interval,
    pub per_class: Vec<ClassScore>,
    /// Counts of `[true class][predicted class]`.
    pub confusion: Confusion,
    pub calibration: Calibration,
    pub options: EvalOptions,
}

/// Logits (or log-probabilities) of some rows and their classes.
#[derive(Debug, Clone, Copy)]
pub struct Scored<'a> {
    pub logits: ArrayView2<'a, f64>,
    pub labels: &'a [u32],
}

impl Evaluation {
    /// Scores `test`; `val`, when given, fits the temperature of the calibration section.
    pub fn new(
        classes: &[String],
        test: Scored<'_>,
        val: Option<Scored<'_>>,
        options: EvalOptions,
    ) -> Result<Self> {
        let k = classes.len();
        if test.logits.ncols() != k {
            return Err(Error::Shape {
                what: "logits columns".into(),
                expected: format!("{k} (one per class)"),
                got: test.logits.ncols().to_string(),
            });
        }
        if test.labels.is_empty() {
            return Err(Error::Shape {
                what: "labelled rows to evaluate".into(),
                expected: "at least 1".into(),
                got: "0".into(),
            });
        }
        let probs = calibration::softmax(test.logits, 1.0);
        let pred: Vec<u32> = probs
            .outer_iter()
            .map(|r| calibration::top(r).0 as u32)
            .collect();
        let mut confusion = Confusion::new(k);
        confusion.update(&pred, test.labels)?;
        let interval =
            |m: Metric| bootstrap(&pred, test.labels, k, m, options.resamples, options.seed);
        let reliability = calibration::reliability(probs.view(), test.labels, options.bins)?;
        let mut cal = Calibration {
            log_loss: calibration::log_loss(probs.view(), test.labels)?,
            ece: calibration::ece(&reliability),
            reliability,
            temperature: None,
            log_loss_scaled: None,
            ece_scaled: None,
            reliability_scaled: Vec::new(),
        };
        if let Some(val) = val.filter(|v| !v.labels.is_empty()) {
            if val.logits.ncols() != k {
                return Err(Error::Shape {
                    what: "validation logits columns".into(),
                    expected: format!("{k} (one per class)"),
                    got: val.logits.ncols().to_string(),
                });
            }
            let t = calibration::fit_temperature(val.logits, val.labels)?;
            let scaled = calibration::softmax(test.logits, t);
            let bins = calibration::reliability(scaled.view(), test.labels, options.bins)?;
            cal.temperature = Some(t);
            cal.log_loss_scaled = Some(calibration::log_loss(scaled.view(), test.labels)?);
            cal.ece_scaled = Some(calibration::ece(&bins));
            cal.reliability_scaled = bins;
        }
        Ok(Self {
            classes: classes.to_vec(),
            rows: test.labels.len(),
            accuracy: interval(Metric::Accuracy)?,
            balanced_accuracy: interval(Metric::BalancedAccuracy)?,
            macro_f1: interval(Metric::MacroF1)?,
            per_class: confusion.per_class(),
            confusion,
            calibration: cal,
            options,
        })
    }
}
