//! Label shift: the target's class priors differ from the source's while `p(x | y)` stays
//! put. Estimate the target priors from a source classifier's outputs on unlabelled
//! target rows, then reweight its probabilities.

use ndarray::{Array1, Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use crate::{Error, Result, linalg};

/// How the target priors are estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PriorMethod {
    /// Saerens, Latinne & Decaestecker (2002): EM on the target posteriors.
    Em,
    /// Black-box shift estimation (Lipton, Wang & Smola 2018): the source validation
    /// confusion matrix inverted against the target's predicted-label frequencies.
    Bbse,
}

tl_core::named_enum!(PriorMethod, "prior estimate", [Em => "em", Bbse => "bbse"]);

/// Estimated target priors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriorEstimate {
    pub method: PriorMethod,
    pub source: Vec<f64>,
    pub target: Vec<f64>,
    pub iterations: usize,
}

fn check_probs(what: &str, p: ArrayView2<'_, f64>, k: usize) -> Result<()> {
    if p.ncols() != k {
        return Err(Error::Shape {
            what: what.into(),
            expected: format!("{k} classes"),
            got: format!("{} columns", p.ncols()),
        });
    }
    if p.nrows() == 0 {
        return Err(Error::no_rows(what));
    }
    if let Some(((r, c), v)) = p
        .indexed_iter()
        .find(|(_, v)| !(v.is_finite() && **v >= 0.0))
    {
        return Err(Error::data(
            what,
            format!("row {r}, class {c}: probability {v}"),
        ));
    }
    Ok(())
}

fn check_priors(source: &[f64]) -> Result<()> {
    if source.len() < 2 || source.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
        return Err(Error::data(
            "source priors",
            format!("{source:?}: need ≥ 2 classes, each > 0"),
        ));
    }
    Ok(())
}

/// EM estimate of the target priors from source-calibrated posteriors `p` of the target
/// rows; stops when no prior moves by more than `tol`.
pub fn em(
    p: ArrayView2<'_, f64>,
    source: &[f64],
    tol: f64,
    max_iter: usize,
) -> Result<PriorEstimate> {
    check_priors(source)?;
    check_probs("target probabilities", p, source.len())?;
    let ps = Array1::from(source.to_vec());
    let mut pt = ps.clone();
    let mut it = 0;
    while it < max_iter {
        it += 1;
        let adjusted = reweight(p, &ps, &pt);
        let next = adjusted.mean_axis(Axis(0)).expect("rows");
        let moved = (&next - &pt).iter().fold(0.0f64, |m, v| m.max(v.abs()));
        pt = next;
        if moved < tol {
            break;
        }
    }
    Ok(PriorEstimate {
        method: PriorMethod::Em,
        source: source.to_vec(),
        target: pt.to_vec(),
        iterations: it,
    })
}

/// BBSE: `confusion[i][j]` = the fraction of source validation rows predicted `i` whose
/// class is `j`; `predicted` = the fraction of target rows predicted as each class. The
/// importance weights solve `confusion · w = predicted`, clipped at 0.
pub fn bbse(confusion: &Array2<f64>, predicted: &[f64], source: &[f64]) -> Result<PriorEstimate> {
    check_priors(source)?;
    let k = source.len();
    if confusion.dim() != (k, k) || predicted.len() != k {
        return Err(Error::Shape {
            what: "BBSE inputs".into(),
            expected: format!("a {k}×{k} confusion matrix and {k} predicted frequencies"),
            got: format!("{:?} and {}", confusion.dim(), predicted.len()),
        });
    }
    let w = linalg::solve(confusion, &Array1::from(predicted.to_vec())).ok_or_else(|| {
        Error::estimate(
            "BBSE",
            "the source confusion matrix is singular (a class is never predicted): use EM",
        )
    })?;
    let mut pt: Array1<f64> = w.mapv(|v| v.max(0.0)) * &Array1::from(source.to_vec());
    let s = pt.sum();
    if s <= 0.0 {
        return Err(Error::estimate("BBSE", "every estimated weight is ≤ 0"));
    }
    pt /= s;
    Ok(PriorEstimate {
        method: PriorMethod::Bbse,
        source: source.to_vec(),
        target: pt.to_vec(),
        iterations: 1,
    })
}

/// Posteriors corrected from priors `source` to `target`: `p ∘ (π_t / π_s)`, renormalised.
pub fn reweight(p: ArrayView2<'_, f64>, source: &Array1<f64>, target: &Array1<f64>) -> Array2<f64> {
    let ratio = target / source;
    let mut q = &p * &ratio;
    for mut row in q.rows_mut() {
        let s = row.sum();
        if s > 0.0 {
            row /= s;
        }
    }
    q
}

/// The confusion matrix for BBSE: `[predicted][true]` fractions of the rows.
pub fn confusion(pred: &[u32], truth: &[u32], k: usize) -> Array2<f64> {
    let mut c = Array2::<f64>::zeros((k, k));
    for (&p, &t) in pred.iter().zip(truth) {
        c[[p as usize, t as usize]] += 1.0;
    }
    let n = pred.len().max(1) as f64;
    c / n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A classifier with a known confusion: posteriors exact under the source priors;
    /// a target drawn with other priors. EM and BBSE both recover them.
    #[test]
    fn em_and_bbse_recover_known_priors() {
        const TOL: f64 = 1e-6;
        // Two overlapping classes with likelihood tables over 3 discrete "inputs".
        let lik = ndarray::array![[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]]; // p(x | y)
        let src = [0.5, 0.5];
        let tgt = [0.2, 0.8];
        // Target rows: 1000 rows per unit of p_t(x), posteriors under the source priors.
        let mut rows = Vec::new();
        let mut weights = Vec::new();
        for x in 0..3 {
            let px_t: f64 = (0..2).map(|y| tgt[y] * lik[[y, x]]).sum();
            let post: Vec<f64> = (0..2).map(|y| src[y] * lik[[y, x]]).collect();
            let z: f64 = post.iter().sum();
            rows.push(post.iter().map(|v| v / z).collect::<Vec<_>>());
            weights.push(px_t);
        }
        // Expand into rows in proportion to p_t(x) (exact rationals × 1000).
        let mut flat = Vec::new();
        for (r, w) in rows.iter().zip(&weights) {
            for _ in 0..(w * 1000.0).round() as usize {
                flat.extend_from_slice(r);
            }
        }
        let p = Array2::from_shape_vec((flat.len() / 2, 2), flat).unwrap();
        let est = em(p.view(), &src, 1e-12, 10_000).unwrap();
        assert!((est.target[0] - 0.2).abs() < 1e-3, "{:?}", est.target);
        // BBSE with the exact source confusion of the Bayes classifier (argmax posterior).
        let pred_of_x: Vec<usize> = rows.iter().map(|r| usize::from(r[1] > r[0])).collect();
        let mut conf = Array2::<f64>::zeros((2, 2));
        let mut predicted = [0.0; 2];
        for x in 0..3 {
            for y in 0..2 {
                conf[[pred_of_x[x], y]] += src[y] * lik[[y, x]];
                predicted[pred_of_x[x]] += tgt[y] * lik[[y, x]];
            }
        }
        let b = bbse(&conf, &predicted, &src).unwrap();
        assert!((b.target[0] - 0.2).abs() < TOL, "{:?}", b.target);
        assert!((b.target.iter().sum::<f64>() - 1.0).abs() < TOL);
    }

    #[test]
    fn reweighting_with_equal_priors_is_the_identity() {
        let p = ndarray::array![[0.3, 0.7], [0.9, 0.1]];
        let s = ndarray::array![0.4, 0.6];
        let q = reweight(p.view(), &s, &s);
        assert!((&q - &p).iter().all(|v| v.abs() < 1e-15));
    }
}
