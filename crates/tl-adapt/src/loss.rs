//! Adaptation losses with analytic gradients, in f64.
//!
//! Each function takes the source and/or target rows of one batch (features or logits)
//! and returns the loss with its gradient with respect to every input row. They are
//! checked against central differences in `tests/gradients.rs`.
//!
//! Inputs are f64 because the losses sum many products of small differences (kernel
//! matrices, covariances); callers convert a batch (a few hundred rows) on the way in.

use ndarray::{Array1, Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A loss and its gradients with respect to the source and target rows.
#[derive(Debug, Clone)]
pub struct Pair {
    pub loss: f64,
    pub source: Array2<f64>,
    pub target: Array2<f64>,
}

/// A loss and its gradient with respect to one set of rows.
#[derive(Debug, Clone)]
pub struct Single {
    pub loss: f64,
    pub grad: Array2<f64>,
}

/// The kernel of an MMD.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Kernel {
    /// `k(x, y) = x·y`: MMD² is the squared distance between the means.
    Linear,
    /// The mean of Gaussian kernels `exp(−‖x − y‖² / (2σ²))`, one per `σ²` in
    /// `bandwidths`.
    Gaussian { bandwidths: Bandwidths },
}

/// How a Gaussian kernel's bandwidths are set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "kebab-case")]
pub enum Bandwidths {
    /// `σ²` = the median squared distance between the pooled rows × each multiplier
    /// (the median heuristic; DAN uses a family of such kernels). The median is a
    /// constant of the batch: no gradient flows through it.
    Median { multipliers: Vec<f64> },
    /// Fixed `σ²` values.
    Fixed { sigma2: Vec<f64> },
}

impl Kernel {
    /// The multi-kernel default: the median heuristic × {1/4, 1/2, 1, 2, 4}.
    pub fn multi_gaussian() -> Self {
        Kernel::Gaussian {
            bandwidths: Bandwidths::Median {
                multipliers: vec![0.25, 0.5, 1.0, 2.0, 4.0],
            },
        }
    }

    pub fn check(&self) -> Result<()> {
        let (what, v) = match self {
            Kernel::Linear => return Ok(()),
            Kernel::Gaussian {
                bandwidths: Bandwidths::Median { multipliers },
            } => ("bandwidth multipliers", multipliers),
            Kernel::Gaussian {
                bandwidths: Bandwidths::Fixed { sigma2 },
            } => ("bandwidths", sigma2),
        };
        if v.is_empty() || v.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(Error::setting(
                what,
                format!("{v:?}: need at least one, each finite and > 0"),
            ));
        }
        Ok(())
    }
}

/// Which MMD² estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Estimator {
    /// The U-statistic (Gretton et al. 2012, eq. 3 generalised to unequal sizes):
    /// within-sample sums leave out `i = j`. Its expectation is 0 when both samples come
    /// from one distribution, so a single estimate can be slightly negative; for a sample
    /// against itself it is negative (the two "samples" are not independent).
    Unbiased,
    /// The V-statistic: the squared distance between the kernel mean embeddings, ≥ 0,
    /// and exactly 0 for a sample against itself.
    Biased,
}

fn pairwise_sq(z: ArrayView2<'_, f64>) -> Array2<f64> {
    let sq: Array1<f64> = z.rows().into_iter().map(|r| r.dot(&r)).collect();
    let g = z.dot(&z.t());
    let n = z.nrows();
    Array2::from_shape_fn((n, n), |(a, b)| {
        if a == b {
            0.0
        } else {
            (sq[a] + sq[b] - 2.0 * g[[a, b]]).max(0.0)
        }
    })
}

/// The median of the squared distances between distinct rows of `z`, from at most 512
/// evenly spaced rows.
pub fn median_sq_distance(z: ArrayView2<'_, f64>) -> f64 {
    let n = z.nrows();
    let step = n.div_ceil(512).max(1);
    let idx: Vec<usize> = (0..n).step_by(step).collect();
    let sub = z.select(Axis(0), &idx);
    let d = pairwise_sq(sub.view());
    let mut v: Vec<f64> = Vec::with_capacity(idx.len() * idx.len() / 2);
    for a in 0..idx.len() {
        for b in a + 1..idx.len() {
            v.push(d[[a, b]]);
        }
    }
    if v.is_empty() {
        return 1.0;
    }
    let mid = v.len() / 2;
    let (_, m, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    if *m > 0.0 { *m } else { 1.0 }
}

fn check_pair(xs: ArrayView2<'_, f64>, xt: ArrayView2<'_, f64>, min_rows: usize) -> Result<()> {
    if xs.ncols() != xt.ncols() {
        return Err(Error::Shape {
            what: "target rows".into(),
            expected: format!("width {} (the source's)", xs.ncols()),
            got: format!("width {}", xt.ncols()),
        });
    }
    for (what, n) in [("source", xs.nrows()), ("target", xt.nrows())] {
        if n < min_rows {
            return Err(Error::data(
                what,
                format!("{n} rows: this loss needs at least {min_rows}"),
            ));
        }
    }
    Ok(())
}

/// MMD² between the rows of `xs` and `xt` under `kernel`, with its gradients.
///
/// Written as `L = Σ_ab A_ab k(z_a, z_b)` over the pooled rows `z = [xs; xt]`, with `A`
/// holding the estimator's weights; for the Gaussian kernel
/// `∂L/∂z_a = −2 Σ_b A_ab E_ab (z_a − z_b)`, `E_ab = Σ_q w_q k_q(z_a, z_b) / σ_q²`.
pub fn mmd2(
    xs: ArrayView2<'_, f64>,
    xt: ArrayView2<'_, f64>,
    kernel: &Kernel,
    estimator: Estimator,
) -> Result<Pair> {
    kernel.check()?;
    let min = match estimator {
        Estimator::Unbiased => 2,
        Estimator::Biased => 1,
    };
    check_pair(xs, xt, min)?;
    let (n, m) = (xs.nrows(), xt.nrows());
    let z = ndarray::concatenate(Axis(0), &[xs, xt]).expect("same width");
    let total = n + m;
    let (nf, mf) = (n as f64, m as f64);
    let weight = |a: usize, b: usize| -> f64 {
        let (sa, sb) = (a < n, b < n);
        match (sa, sb, estimator) {
            (true, true, Estimator::Unbiased) if a == b => 0.0,
            (false, false, Estimator::Unbiased) if a == b => 0.0,
            (true, true, Estimator::Unbiased) => 1.0 / (nf * (nf - 1.0)),
            (false, false, Estimator::Unbiased) => 1.0 / (mf * (mf - 1.0)),
            (true, true, Estimator::Biased) => 1.0 / (nf * nf),
            (false, false, Estimator::Biased) => 1.0 / (mf * mf),
            _ => -1.0 / (nf * mf),
        }
    };
    let a = Array2::from_shape_fn((total, total), |(i, j)| weight(i, j));
    let (loss, grad) = match kernel {
        Kernel::Linear => {
            let k = z.dot(&z.t());
            let loss = (&a * &k).sum();
            (loss, a.dot(&z) * 2.0)
        }
        Kernel::Gaussian { bandwidths } => {
            let sigma2: Vec<f64> = match bandwidths {
                Bandwidths::Fixed { sigma2 } => sigma2.clone(),
                Bandwidths::Median { multipliers } => {
                    let med = median_sq_distance(z.view());
                    multipliers.iter().map(|m| m * med).collect()
                }
            };
            let w = 1.0 / sigma2.len() as f64;
            let d = pairwise_sq(z.view());
            let mut k = Array2::<f64>::zeros((total, total));
            let mut e = Array2::<f64>::zeros((total, total));
            for s2 in &sigma2 {
                let kq = d.mapv(|v| (-v / (2.0 * s2)).exp());
                e.scaled_add(w / s2, &kq);
                k.scaled_add(w, &kq);
            }
            let loss = (&a * &k).sum();
            let mm = &a * &e;
            let rs = mm.sum_axis(Axis(1));
            let grad = (mm.dot(&z) - &z * &rs.insert_axis(Axis(1))) * 2.0;
            (loss, grad)
        }
    };
    let (gs, gt) = grad.view().split_at(Axis(0), n);
    Ok(Pair {
        loss,
        source: gs.to_owned(),
        target: gt.to_owned(),
    })
}

fn centred(x: ArrayView2<'_, f64>) -> Array2<f64> {
    let mean = x.mean_axis(Axis(0)).expect("rows");
    &x - &mean
}

/// The covariance of the rows of `x` (divisor n − 1).
pub fn covariance(x: ArrayView2<'_, f64>) -> Array2<f64> {
    let c = centred(x);
    c.t().dot(&c) / (x.nrows() as f64 - 1.0)
}

/// Deep CORAL (Sun & Saenko 2016): `‖C_s − C_t‖²_F / (4d²)`, with
/// `∂L/∂X_s = X̄_s (C_s − C_t) / (d² (n_s − 1))` and the opposite sign for the target.
pub fn coral(xs: ArrayView2<'_, f64>, xt: ArrayView2<'_, f64>) -> Result<Pair> {
    check_pair(xs, xt, 2)?;
    let d = xs.ncols() as f64;
    let (cs, ct) = (centred(xs), centred(xt));
    let (ns, nt) = (xs.nrows() as f64, xt.nrows() as f64);
    let diff = cs.t().dot(&cs) / (ns - 1.0) - ct.t().dot(&ct) / (nt - 1.0);
    let loss = diff.iter().map(|v| v * v).sum::<f64>() / (4.0 * d * d);
    Ok(Pair {
        loss,
        source: cs.dot(&diff) / (d * d * (ns - 1.0)),
        target: ct.dot(&diff) * (-1.0 / (d * d * (nt - 1.0))),
    })
}

/// Row-wise softmax and log-softmax of `z / t`.
fn softmax_t(z: ArrayView2<'_, f64>, t: f64) -> (Array2<f64>, Array2<f64>) {
    let logp = tl_core::num::log_softmax(&z.mapv(|v| v / t));
    (logp.mapv(f64::exp), logp)
}

/// The gradient with respect to `z` of a loss whose gradient with respect to
/// `p = softmax(z / t)` is `gp`: `(p ∘ (gp − ⟨gp, p⟩)) / t` row by row.
fn softmax_backward(p: &Array2<f64>, gp: &Array2<f64>, t: f64) -> Array2<f64> {
    let dot = (p * gp).sum_axis(Axis(1)).insert_axis(Axis(1));
    p * &(gp - &dot) / t
}

/// Per-row entropies of softmax probabilities given their logarithms.
fn entropies(p: &Array2<f64>, logp: &Array2<f64>) -> Array1<f64> {
    -(p * logp).sum_axis(Axis(1))
}

fn check_logits(z: ArrayView2<'_, f64>) -> Result<()> {
    if z.nrows() == 0 {
        return Err(Error::no_rows("target logits"));
    }
    if z.ncols() < 2 {
        return Err(Error::data(
            "target logits",
            format!("{} class: need at least 2", z.ncols()),
        ));
    }
    Ok(())
}

/// Entropy minimisation: the mean entropy of `softmax(z)` over rows;
/// `∂H/∂z_k = −p_k (log p_k + H)`.
pub fn entropy(z: ArrayView2<'_, f64>) -> Result<Single> {
    check_logits(z)?;
    let n = z.nrows() as f64;
    let (p, logp) = softmax_t(z, 1.0);
    let h = entropies(&p, &logp);
    let grad = -(&p * &(&logp + &h.clone().insert_axis(Axis(1)))) / n;
    Ok(Single {
        loss: h.sum() / n,
        grad,
    })
}

/// Information maximisation (SHOT's `L_ent − L_div`): the mean entropy of the rows'
/// predictions minus the entropy of their mean, so that predictions are confident and
/// the classes used evenly.
pub fn info_max(z: ArrayView2<'_, f64>) -> Result<Single> {
    check_logits(z)?;
    let n = z.nrows() as f64;
    let (p, logp) = softmax_t(z, 1.0);
    let h = entropies(&p, &logp);
    let mean = p.mean_axis(Axis(0)).expect("rows");
    let logm = mean.mapv(|v| v.max(1e-300).ln());
    let div = -(&mean * &logm).sum();
    // ∂(−H(p̄))/∂p_i = (log p̄ + 1) / n; the mean entropy's gradient is entropy()'s.
    let gp = Array2::from_shape_fn(p.raw_dim(), |(_, k)| (logm[k] + 1.0) / n);
    let grad =
        -(&p * &(&logp + &h.clone().insert_axis(Axis(1)))) / n + softmax_backward(&p, &gp, 1.0);
    Ok(Single {
        loss: h.sum() / n - div,
        grad,
    })
}

/// Minimum class confusion (Jin et al. 2020), as TLlib computes it: probabilities at
/// temperature `t`, rows weighted by [`mcc_weights`] (which carry no gradient), the
/// class-correlation matrix `C = Pᵀ W P` with column j divided by row sum j, and the loss
/// is its off-diagonal mass over the number of classes.
pub fn mcc(z: ArrayView2<'_, f64>, t: f64) -> Result<Single> {
    let w = mcc_weights(z, t)?;
    mcc_weighted(z, t, &w)
}

/// MCC's row weights: `1 + exp(−H(softmax(z/t)))`, normalised to sum to the row count.
pub fn mcc_weights(z: ArrayView2<'_, f64>, t: f64) -> Result<Array1<f64>> {
    check_logits(z)?;
    if !(t.is_finite() && t > 0.0) {
        return Err(Error::setting(
            "MCC temperature",
            format!("{t} must be > 0"),
        ));
    }
    let (p, logp) = softmax_t(z, t);
    let mut w = entropies(&p, &logp).mapv(|v| 1.0 + (-v).exp());
    w *= z.nrows() as f64 / w.sum();
    Ok(w)
}

/// [`mcc`] with given row weights `w` (constants of the loss).
pub fn mcc_weighted(z: ArrayView2<'_, f64>, t: f64, w: &Array1<f64>) -> Result<Single> {
    check_logits(z)?;
    if w.len() != z.nrows() {
        return Err(Error::Shape {
            what: "MCC weights".into(),
            expected: format!("{} (one per row)", z.nrows()),
            got: w.len().to_string(),
        });
    }
    let k = z.ncols();
    let kf = k as f64;
    let (p, _) = softmax_t(z, t);
    let wp = &p * &w.clone().insert_axis(Axis(1));
    let c = p.t().dot(&wp);
    // L = (Σ_ij C_ij/s_j − Σ_j C_jj/s_j)/K with s_j = Σ_l C_jl.
    let s = c.sum_axis(Axis(1));
    let col = c.sum_axis(Axis(0));
    let mut loss = 0.0;
    for i in 0..k {
        for j in 0..k {
            if i != j {
                loss += c[[i, j]] / s[j];
            }
        }
    }
    loss /= kf;
    // ∂L/∂C_ab: the direct term (a ≠ b) / s_b, and through s_a every C_ia/s_a with i ≠ a.
    let g = Array2::from_shape_fn((k, k), |(a, b)| {
        let direct = if a == b { 0.0 } else { 1.0 / s[b] };
        direct / kf - (col[a] - c[[a, a]]) / (s[a] * s[a] * kf)
    });
    // C = Pᵀ W P  ⇒  ∂L/∂P = W P (G + Gᵀ).
    let gp = wp.dot(&(&g + &g.t()));
    Ok(Single {
        loss,
        grad: softmax_backward(&p, &gp, t),
    })
}

/// Softmax probabilities of logits, row by row (f64).
pub fn probabilities(z: ArrayView2<'_, f64>) -> Array2<f64> {
    softmax_t(z, 1.0).0
}
