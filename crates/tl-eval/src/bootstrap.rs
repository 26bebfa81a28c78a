//! Seeded percentile bootstrap intervals and means over seeds.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::{Confusion, Metric, Result};

/// A value with a percentile interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    #[serde(deserialize_with = "tl_core::io::nan_if_null")]
    pub value: f64,
    #[serde(deserialize_with = "tl_core::io::nan_if_null")]
    pub low: f64,
    #[serde(deserialize_with = "tl_core::io::nan_if_null")]
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
