//! Probabilities: log loss, expected calibration error, reliability bins and temperature
//! scaling.

use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The bins of the expected calibration error and the reliability diagram (Guo et al.
/// 2017 use 15).
pub const DEFAULT_BINS: usize = 15;

/// The first largest entry of a row and its value (the predicted class and its
/// confidence).
pub(crate) fn top(row: ndarray::ArrayView1<'_, f64>) -> (usize, f64) {
    let i = tl_core::num::argmax(row.iter().copied());
    (i, row[i])
}

/// Row-wise softmax of `logits / temperature`, computed stably.
pub fn softmax(logits: ArrayView2<'_, f64>, temperature: f64) -> Array2<f64> {
    let mut p = logits.mapv(|z| z / temperature);
    tl_core::num::softmax_rows_in_place(&mut p);
    p
}

fn check(probs: ArrayView2<'_, f64>, labels: &[u32], what: &str) -> Result<()> {
    if probs.nrows() != labels.len() {
        return Err(Error::Shape {
            what: format!("{what} rows"),
            expected: format!("{} (one per label)", labels.len()),
            got: probs.nrows().to_string(),
        });
    }
    if let Some(&bad) = labels.iter().find(|&&y| y as usize >= probs.ncols()) {
        return Err(Error::Class {
            class: bad,
            classes: probs.ncols(),
        });
    }
    Ok(())
}

/// Mean negative log-likelihood of the true classes, probabilities clipped to
/// [ε, 1 − ε] with ε = `f64::EPSILON` (scikit-learn's `log_loss` on float64 input).
pub fn log_loss(probs: ArrayView2<'_, f64>, labels: &[u32]) -> Result<f64> {
    check(probs, labels, "probabilities")?;
    let eps = f64::EPSILON;
    let total: f64 = labels
        .iter()
        .enumerate()
        .map(|(i, &y)| {
            let row = probs.row(i);
            let p = row[y as usize] / row.sum();
            -p.clamp(eps, 1.0 - eps).ln()
        })
        .sum();
    Ok(total / labels.len() as f64)
}

/// One bin of a reliability diagram: rows whose top-label confidence lies in (lo, hi].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bin {
    pub lo: f64,
    pub hi: f64,
    pub rows: usize,
    /// Mean top-label confidence of the bin's rows (NaN when empty; JSON `null`).
    #[serde(deserialize_with = "tl_core::io::nan_if_null")]
    pub confidence: f64,
    /// Fraction of the bin's rows predicted right (NaN when empty; JSON `null`).
    #[serde(deserialize_with = "tl_core::io::nan_if_null")]
    pub accuracy: f64,
}

/// The reliability diagram's bins: `bins` equal-width intervals (lo, hi] of the top-label
/// confidence (the first also takes a confidence of exactly 0).
pub fn reliability(probs: ArrayView2<'_, f64>, labels: &[u32], bins: usize) -> Result<Vec<Bin>> {
    check(probs, labels, "probabilities")?;
    let mut rows = vec![0usize; bins];
    let mut conf = vec![0.0; bins];
    let mut right = vec![0usize; bins];
    for (i, &y) in labels.iter().enumerate() {
        let row = probs.row(i);
        let (arg, confidence) = top(row);
        // (lo, hi]: the bin whose upper edge is the first at or above the confidence.
        let b = ((confidence * bins as f64).ceil() as usize).clamp(1, bins) - 1;
        rows[b] += 1;
        conf[b] += confidence;
        right[b] += usize::from(arg == y as usize);
    }
    Ok((0..bins)
        .map(|b| Bin {
            lo: b as f64 / bins as f64,
            hi: (b + 1) as f64 / bins as f64,
            rows: rows[b],
            confidence: conf[b] / rows[b] as f64,
            accuracy: right[b] as f64 / rows[b] as f64,
        })
        .collect())
}

/// Expected calibration error of reliability bins: Σ |B|/n · |acc(B) − conf(B)|.
pub fn ece(bins: &[Bin]) -> f64 {
    let n: usize = bins.iter().map(|b| b.rows).sum();
    bins.iter()
        .filter(|b| b.rows > 0)
        .map(|b| b.rows as f64 / n as f64 * (b.accuracy - b.confidence).abs())
        .sum()
}

/// Mean negative log-likelihood of softmax(β · z) and its first two derivatives in β.
fn nll_beta(logits: ArrayView2<'_, f64>, labels: &[u32], beta: f64) -> (f64, f64, f64) {
    let (mut f, mut g, mut h) = (0.0, 0.0, 0.0);
    for (i, &y) in labels.iter().enumerate() {
        let z = logits.row(i);
        let m = z.fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        let w: Vec<f64> = z.iter().map(|&v| (beta * (v - m)).exp()).collect();
        let s: f64 = w.iter().sum();
        let mean: f64 = w.iter().zip(z).map(|(w, z)| w * z).sum::<f64>() / s;
        let second: f64 = w.iter().zip(z).map(|(w, z)| w * z * z).sum::<f64>() / s;
        f += s.ln() + beta * m - beta * z[y as usize];
        g += mean - z[y as usize];
        h += second - mean * mean;
    }
    let n = labels.len() as f64;
    (f / n, g / n, h / n)
}

/// The temperature T > 0 minimising the mean negative log-likelihood of
/// softmax(logits / T) (Guo et al. 2017), fitted on validation logits.
///
/// The objective is convex in β = 1/T (a mean of log-sum-exps of lines minus a line), so
/// a safeguarded Newton iteration on β reaches the optimum to machine precision; T is
/// kept in [0.01, 100].
pub fn fit_temperature(logits: ArrayView2<'_, f64>, labels: &[u32]) -> Result<f64> {
    check(logits, labels, "validation logits")?;
    if labels.is_empty() {
        return Err(Error::Shape {
            what: "validation rows for temperature scaling".into(),
            expected: "at least 1".into(),
            got: "0".into(),
        });
    }
    let (lo, hi) = (0.01, 100.0);
    let mut beta: f64 = 1.0;
    for _ in 0..100 {
        let (f, g, h) = nll_beta(logits, labels, beta);
        let mut step = if h > 1e-300 { g / h } else { g.signum() * beta };
        // Backtrack until the objective does not increase (convex, so this ends).
        let mut next = (beta - step).clamp(lo, hi);
        for _ in 0..60 {
            if nll_beta(logits, labels, next).0 <= f {
                break;
            }
            step *= 0.5;
            next = (beta - step).clamp(lo, hi);
        }
        let moved = (next - beta).abs();
        beta = next;
        if moved <= 1e-14 * beta.max(1.0) {
            break;
        }
    }
    Ok(1.0 / beta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn logits() -> impl Strategy<Value = (Array2<f64>, Vec<u32>)> {
        (1usize..40, 2usize..6).prop_flat_map(|(n, k)| {
            (
                proptest::collection::vec(-30.0f64..30.0, n * k),
                proptest::collection::vec(0u32..k as u32, n),
            )
                .prop_map(move |(z, y)| (Array2::from_shape_vec((n, k), z).unwrap(), y))
        })
    }

    #[test]
    fn an_empty_bin_reads_back_from_json_as_nan() {
        let bin = Bin {
            lo: 0.0,
            hi: 0.1,
            rows: 0,
            confidence: f64::NAN,
            accuracy: f64::NAN,
        };
        let json = serde_json::to_string(&bin).unwrap();
        assert!(json.contains("null"), "{json}");
        let back: Bin = serde_json::from_str(&json).unwrap();
        assert!(back.confidence.is_nan() && back.accuracy.is_nan());
        assert_eq!((back.lo, back.hi, back.rows), (0.0, 0.1, 0));
    }

    proptest! {
        #[test]
        fn softmax_rows_sum_to_one((z, _y) in logits(), t in 0.05f64..20.0) {
            for row in softmax(z.view(), t).outer_iter() {
                prop_assert!((row.sum() - 1.0).abs() < 1e-12);
                prop_assert!(row.iter().all(|&p| (0.0..=1.0).contains(&p)));
            }
        }

        #[test]
        fn calibration_error_is_a_fraction_and_bins_hold_every_row((z, y) in logits()) {
            let p = softmax(z.view(), 1.0);
            let bins = reliability(p.view(), &y, DEFAULT_BINS).unwrap();
            prop_assert_eq!(bins.iter().map(|b| b.rows).sum::<usize>(), y.len());
            for b in bins.iter().filter(|b| b.rows > 0) {
                prop_assert!(b.confidence > b.lo - 1e-12 && b.confidence <= b.hi + 1e-12);
            }
            let e = ece(&bins);
            prop_assert!((0.0..=1.0).contains(&e), "ECE {}", e);
        }

        #[test]
        fn fitted_temperature_never_raises_the_nll((z, y) in logits()) {
            let t = fit_temperature(z.view(), &y).unwrap();
            let nll = |t: f64| log_loss(softmax(z.view(), t).view(), &y).unwrap();
            prop_assert!(t > 0.0);
            prop_assert!(nll(t) <= nll(1.0) + 1e-12, "T {} NLL {} > {}", t, nll(t), nll(1.0));
        }
    }
}
