//! Choosing among adapted models without target labels.

use ndarray::{ArrayView2, Axis};

use crate::{Error, Result};

/// The temperature of SND's neighbourhood softmax (the paper's 0.05).
pub const SND_TAU: f64 = 0.05;

/// Soft neighbourhood density (Saito et al. 2021, "Tune it the right way"): the mean
/// entropy, over target rows, of a softmax (temperature `tau`) of the row's cosine
/// similarities to every other row's predicted probabilities. Higher is better: the
/// predictions form dense neighbourhoods rather than scattered ones. Needs no labels.
pub fn snd(p: ArrayView2<'_, f64>, tau: f64) -> Result<f64> {
    let n = p.nrows();
    if n < 2 {
        return Err(Error::data("SND", format!("{n} rows: need at least 2")));
    }
    if !(tau.is_finite() && tau > 0.0) {
        return Err(Error::data("SND temperature", format!("{tau} must be > 0")));
    }
    let mut f = p.to_owned();
    for mut r in f.rows_mut() {
        let norm = r.dot(&r).sqrt().max(1e-12);
        r /= norm;
    }
    let sim = f.dot(&f.t());
    let mut total = 0.0;
    for (i, row) in sim.axis_iter(Axis(0)).enumerate() {
        let others = row
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, &v)| v / tau);
        let lse = tl_core::num::log_sum_exp(others.clone());
        let h: f64 = others
            .map(|s| {
                let lp = s - lse;
                -lp.exp() * lp
            })
            .sum();
        total += h;
    }
    Ok(total / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snd_is_the_log_of_the_neighbours_when_all_agree() {
        // Identical predictions: a uniform softmax over the n − 1 others.
        let p = ndarray::Array2::from_elem((5, 3), 1.0 / 3.0);
        assert!((snd(p.view(), SND_TAU).unwrap() - 4f64.ln()).abs() < 1e-12);
        // Confident, well-separated clusters score below that maximum but above the
        // scattered case where every row is its own cluster.
        let clusters = ndarray::array![[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]];
        let s = snd(clusters.view(), SND_TAU).unwrap();
        assert!(
            (s - 0.0).abs() < 1e-6,
            "each row has one twin: entropy ≈ 0, got {s}"
        );
    }
}
