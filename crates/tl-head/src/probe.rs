//! The linear probe: L2-regularised multinomial logistic regression solved to the
//! optimum by preconditioned L-BFGS in f64, multi-threaded and deterministic.
//!
//! The objective is scikit-learn's, in its classic form:
//!
//! ```text
//! F(W, b) = C Σᵢ sᵢ ℓᵢ(W, b) + ½‖W‖²        (the intercept is not penalised)
//! ```
//!
//! with `ℓᵢ` the softmax cross-entropy of row `i` and `sᵢ` its class weight. For two
//! classes one weight vector is fitted (the first class's logit is fixed at 0), as
//! scikit-learn does, so the optimum and objective are the same as its.
//!
//! Speed comes from a diagonal preconditioner (a bound on the Hessian's diagonal), which
//! makes L-BFGS insensitive to the scale of individual features, and from evaluating the
//! objective over fixed row chunks in parallel, summed in chunk order so the result does
//! not depend on the thread count.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis, s};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Tolerance of the points of a regularisation path (the final refit uses the config's).
/// Points only rank values of C by validation accuracy: on mnist-5k features the 10-value
/// default path gave the same validation accuracy at every point, and the same best C, at
/// 1e-5 as at 1e-7, in half the time (`examples/probe_timing.rs`).
pub const PATH_TOL: f64 = 1e-5;

/// Rows per parallel chunk of the objective.
const CHUNK_ROWS: usize = 512;

/// How rows are weighted by class.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClassWeight {
    #[default]
    None,
    /// `n / (classes × count of the class)`, as scikit-learn's `"balanced"`.
    Balanced,
    /// One weight per class.
    Given(Vec<f64>),
}

/// Settings of one probe fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ProbeConfig {
    /// Inverse regularisation strength (scikit-learn's `C`).
    pub c: f64,
    pub fit_intercept: bool,
    pub class_weight: ClassWeight,
    /// Standardise features (mean 0, variance 1 on the training rows) before fitting;
    /// the fitted weights are mapped back to the raw features.
    pub standardize: bool,
    /// Stop when the estimated distance to the optimum is below `tol` × |F|.
    pub tol: f64,
    pub max_iter: usize,
    /// L-BFGS memory (pairs kept).
    pub memory: usize,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            c: 1.0,
            fit_intercept: true,
            class_weight: ClassWeight::None,
            standardize: false,
            tol: 1e-10,
            max_iter: 5000,
            memory: 20,
        }
    }
}

impl ProbeConfig {
    /// A probe with inverse regularisation `c`.
    pub fn new(c: f64) -> Self {
        Self {
            c,
            ..Self::default()
        }
    }

    #[must_use]
    pub fn with_c(mut self, c: f64) -> Self {
        self.c = c;
        self
    }

    #[must_use]
    pub fn class_weight(mut self, w: ClassWeight) -> Self {
        self.class_weight = w;
        self
    }

    #[must_use]
    pub fn standardize(mut self, on: bool) -> Self {
        self.standardize = on;
        self
    }

    #[must_use]
    pub fn tol(mut self, tol: f64) -> Self {
        self.tol = tol;
        self
    }

    /// Checks every setting once, before any work.
    pub fn check(&self) -> Result<()> {
        if !(self.c.is_finite() && self.c > 0.0) {
            return Err(Error::setting(
                "C",
                format!("{} must be finite and > 0", self.c),
            ));
        }
        if !(self.tol.is_finite() && self.tol > 0.0) {
            return Err(Error::setting("tol", format!("{} must be > 0", self.tol)));
        }
        if self.max_iter == 0 || self.memory == 0 {
            return Err(Error::setting("max_iter and memory", "both must be ≥ 1"));
        }
        if let ClassWeight::Given(w) = &self.class_weight
            && w.iter().any(|v| !(v.is_finite() && *v > 0.0))
        {
            return Err(Error::setting(
                "class weights",
                "each must be finite and > 0",
            ));
        }
        Ok(())
    }
}

/// What a fit did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeReport {
    pub c: f64,
    /// F at the solution, on the features as fitted (standardised if asked).
    pub objective: f64,
    pub iterations: usize,
    pub evaluations: usize,
    pub converged: bool,
    pub seconds: f64,
}

/// A fitted probe: logits `x Wᵀ + b` over all classes, on the raw features.
#[derive(Debug, Clone)]
pub struct LinearProbe {
    /// `[classes, features]`.
    pub weight: Array2<f64>,
    pub bias: Array1<f64>,
    pub report: ProbeReport,
    /// The solver's own parameters (on standardised features if standardised), for warm starts.
    theta: Vec<f64>,
}

impl LinearProbe {
    /// Class scores for `x`.
    pub fn logits(&self, x: ArrayView2<'_, f32>) -> Array2<f64> {
        let x64 = x.mapv(f64::from);
        x64.dot(&self.weight.t()) + &self.bias
    }

    /// The most likely class of each row.
    pub fn predict(&self, x: ArrayView2<'_, f32>) -> Vec<u32> {
        argmax_rows(&self.logits(x))
    }

    /// The weights as f32 `[classes, features]` and `[classes]`, for a `tl-nn` layer.
    pub fn to_f32(&self) -> (Array2<f32>, Array1<f32>) {
        (self.weight.mapv(|v| v as f32), self.bias.mapv(|v| v as f32))
    }
}

/// Index of each row's largest value (the first on ties).
pub fn argmax_rows(z: &Array2<f64>) -> Vec<u32> {
    z.rows()
        .into_iter()
        .map(|r| tl_core::num::argmax(r.iter().copied()) as u32)
        .collect()
}

/// The training problem in f64, ready for repeated evaluation.
struct Problem {
    x: Array2<f64>,
    y: Vec<u32>,
    sw: Vec<f64>,
    classes: usize,
    /// Free weight rows: `classes`, or 1 for two classes.
    rows: usize,
    c: f64,
    intercept: bool,
}

impl Problem {
    fn dim(&self) -> usize {
        self.rows * (self.x.ncols() + usize::from(self.intercept))
    }

    /// F(θ) and its gradient.
    fn eval(&self, theta: &[f64], grad: &mut [f64]) -> f64 {
        let (n, d) = self.x.dim();
        let r = self.rows;
        let w = ArrayView2::from_shape((r, d), &theta[..r * d]).expect("θ layout");
        let b: Vec<f64> = if self.intercept {
            theta[r * d..].to_vec()
        } else {
            vec![0.0; r]
        };
        let k = self.classes;
        let binary = k == 2 && r == 1;
        let parts: Vec<(f64, Array2<f64>, Array1<f64>)> = (0..n.div_ceil(CHUNK_ROWS))
            .into_par_iter()
            .map(|ci| {
                let (lo, hi) = (ci * CHUNK_ROWS, ((ci + 1) * CHUNK_ROWS).min(n));
                let xc = self.x.slice(s![lo..hi, ..]);
                let mut z = xc.dot(&w.t());
                let mut loss = 0.0;
                for (i, mut zr) in z.axis_iter_mut(Axis(0)).enumerate() {
                    let row = lo + i;
                    let (y, sw) = (self.y[row] as usize, self.sw[row]);
                    for (zz, bb) in zr.iter_mut().zip(&b) {
                        *zz += bb;
                    }
                    if binary {
                        // logits (0, z): ℓ = log(1 + e^z) − [y = 1] z
                        let zv = zr[0];
                        let lse = if zv > 0.0 {
                            zv + (-zv).exp().ln_1p()
                        } else {
                            zv.exp().ln_1p()
                        };
                        loss += sw * (lse - if y == 1 { zv } else { 0.0 });
                        let p1 = (zv - lse).exp();
                        zr[0] = sw * (p1 - if y == 1 { 1.0 } else { 0.0 });
                    } else {
                        let lse = tl_core::num::log_sum_exp(zr.iter().copied());
                        loss += sw * (lse - zr[y]);
                        for (j, zz) in zr.iter_mut().enumerate() {
                            *zz = sw * ((*zz - lse).exp() - if j == y { 1.0 } else { 0.0 });
                        }
                    }
                }
                let gw = z.t().dot(&xc);
                let gb = z.sum_axis(Axis(0));
                (loss, gw, gb)
            })
            .collect();
        let mut loss = 0.0;
        let mut gw = Array2::<f64>::zeros((r, d));
        let mut gb = Array1::<f64>::zeros(r);
        for (l, pw, pb) in parts {
            loss += l;
            gw += &pw;
            gb += &pb;
        }
        let c = self.c;
        let mut f = c * loss;
        for (i, g) in grad[..r * d].iter_mut().enumerate() {
            let wi = theta[i];
            *g = c * gw.as_slice().expect("standard layout")[i] + wi;
            f += 0.5 * wi * wi;
        }
        if self.intercept {
            for (j, g) in grad[r * d..].iter_mut().enumerate() {
                *g = c * gb[j];
            }
        }
        f
    }

    /// The preconditioner: the inverse of a bound on the Hessian, `C/4 · X̃ᵀSX̃ + I` per
    /// class (X̃ the features with a column of ones for the intercept, S the row weights,
    /// the softmax curvature p(1 − p) being at most 1/4; the intercept gets no ridge but a
    /// tiny one to stay positive definite). Features are usually strongly correlated, so the
    /// full block, not its diagonal, is what makes L-BFGS converge in few iterations. Above
    /// [`MAX_BLOCK`] features the diagonal is used. The Gram matrix does not depend on C:
    /// `gram` holds one from an earlier fit on the same rows, or receives this one.
    fn precond(&self, gram: &mut Option<Gram>) -> Precond {
        let d = self.x.ncols();
        let dp = d + usize::from(self.intercept);
        // Few rows make the low-rank form cheap at any width; otherwise wide blocks fall
        // back to the diagonal.
        let low_rank = 2 * self.x.nrows().min(GRAM_ROWS) < dp;
        if dp > MAX_BLOCK && !low_rank {
            let mut col = vec![0.0f64; d];
            for (row, &sw) in self.x.rows().into_iter().zip(&self.sw) {
                for (c, &v) in col.iter_mut().zip(row.iter()) {
                    *c += sw * v * v;
                }
            }
            let swsum: f64 = self.sw.iter().sum();
            let mut out = Vec::with_capacity(self.dim());
            for _ in 0..self.rows {
                out.extend(col.iter().map(|&c| 1.0 / (0.25 * self.c * c + 1.0)));
            }
            if self.intercept {
                out.extend(std::iter::repeat_n(
                    1.0 / (0.25 * self.c * swsum).max(1e-12),
                    self.rows,
                ));
            }
            return Precond::Diag(out);
        }
        let gram = gram.get_or_insert_with(|| self.gram());
        let kappa = 0.25 * self.c * gram.scale;
        if let Some(rows) = &gram.rows {
            return self.low_rank(rows, kappa);
        }
        let sum = gram.sum.as_ref().expect("a Gram holds rows or their sum");
        let mut a = sum.mapv(|v| kappa * v);
        let mean_diag = (0..dp).map(|i| a[[i, i]]).sum::<f64>() / dp as f64;
        for i in 0..d {
            a[[i, i]] += 1.0;
        }
        if self.intercept {
            a[[d, d]] += 1e-9 * mean_diag.max(1.0);
        }
        Precond::Block {
            inv: spd_inverse(a),
            rows: self.rows,
            d,
            intercept: self.intercept,
        }
    }

    /// The block preconditioner `(I' + κ X̃ᵀSX̃)⁻¹` for m sampled rows fewer than half the
    /// width, without forming its dp × dp inverse (which costs O(dp³) per C: 0.7 s at
    /// 1,281 columns, whatever the rows). With `W = √κ √S X` (weights) and `u = √κ √s`
    /// (the intercept column), `B = I + WᵀW` is inverted by Woodbury through the m × m
    /// `M = I + WWᵀ`, and the intercept by the Schur complement
    /// `σ = ε + uᵀM⁻¹u` (no cancellation): the same matrix as the dense path.
    fn low_rank(&self, rows: &Array2<f64>, kappa: f64) -> Precond {
        let d = self.x.ncols();
        let dp = d + usize::from(self.intercept);
        let w = rows.slice(s![.., ..d]).mapv(|v| v * kappa.sqrt());
        let mut m = w.dot(&w.t());
        for i in 0..m.nrows() {
            m[[i, i]] += 1.0;
        }
        let minv = spd_inverse(m);
        let intercept = self.intercept.then(|| {
            let u = rows.column(d).mapv(|v| v * kappa.sqrt());
            // The dense path's ridge on the intercept: 1e-9 × the mean diagonal.
            let trace = w.iter().map(|v| v * v).sum::<f64>() + u.dot(&u);
            let eps = 1e-9 * (trace / dp as f64).max(1.0);
            let mu = minv.dot(&u);
            let g = w.t().dot(&mu);
            (g, eps + u.dot(&mu))
        });
        Precond::LowRank {
            w,
            minv,
            intercept,
            rows: self.rows,
        }
    }

    /// The Gram matrix `X̃ᵀSX̃` of at most [`GRAM_ROWS`] evenly spaced rows, summed from
    /// f32 products (a preconditioner needs no more precision), and the factor that scales
    /// it to all rows.
    fn gram(&self) -> Gram {
        let (n, d) = self.x.dim();
        let dp = d + usize::from(self.intercept);
        let m = n.min(GRAM_ROWS);
        let picked: Vec<usize> = (0..m).map(|i| i * n / m).collect();
        let weighted = |idx: &[usize]| {
            let mut xs = Array2::<f32>::zeros((idx.len(), dp));
            for (r, &i) in idx.iter().enumerate() {
                let w = self.sw[i].sqrt() as f32;
                for j in 0..d {
                    xs[[r, j]] = w * self.x[[i, j]] as f32;
                }
                if self.intercept {
                    xs[[r, d]] = w;
                }
            }
            xs
        };
        let scale = n as f64 / m as f64;
        if 2 * m < dp {
            return Gram {
                sum: None,
                rows: Some(weighted(&picked).mapv(f64::from)),
                scale,
            };
        }
        let parts: Vec<Array2<f32>> = picked
            .par_chunks(CHUNK_ROWS)
            .map(|idx| {
                let xs = weighted(idx);
                xs.t().dot(&xs)
            })
            .collect();
        let mut sum = Array2::<f64>::zeros((dp, dp));
        for p in parts {
            sum.zip_mut_with(&p, |a, &v| *a += v as f64);
        }
        Gram {
            sum: Some(sum),
            rows: None,
            scale,
        }
    }
}

/// Largest feature count (plus intercept) for the full-block preconditioner (its inverse
/// takes `MAX_BLOCK²` f64).
const MAX_BLOCK: usize = 4096;
/// Rows sampled for the preconditioner's Gram matrix.
const GRAM_ROWS: usize = 8192;

/// The C-independent part of the block preconditioner (see `Problem::precond`).
struct Gram {
    /// `X̃ᵀSX̃` of the sampled rows (when they are at least half the width).
    sum: Option<Array2<f64>>,
    /// The sampled rows `√s · X̃` themselves (when they are fewer than half the width:
    /// the preconditioner is then applied in its low-rank form).
    rows: Option<Array2<f64>>,
    scale: f64,
}

/// `H₀ = P⁻¹` of the L-BFGS recursion.
enum Precond {
    Diag(Vec<f64>),
    /// The same inverse block for every class: `[wₖ, bₖ] ↦ [wₖ, bₖ] · inv`.
    Block {
        inv: Array2<f64>,
        rows: usize,
        d: usize,
        intercept: bool,
    },
    /// The same block in low-rank form (see `Problem::low_rank`): `B⁻¹q = q − WᵀM⁻¹Wq`,
    /// and with an intercept `g = B⁻¹b`, `σ` its Schur complement.
    LowRank {
        w: Array2<f64>,
        minv: Array2<f64>,
        intercept: Option<(Array1<f64>, f64)>,
        rows: usize,
    },
}

impl Precond {
    /// `P⁻¹ q`, in the layout of θ (all weight rows, then all intercepts).
    fn apply(&self, q: &[f64]) -> Vec<f64> {
        match self {
            Precond::Diag(dinv) => q.iter().zip(dinv).map(|(a, b)| a * b).collect(),
            Precond::LowRank {
                w,
                minv,
                intercept,
                rows,
            } => {
                let (r, d) = (*rows, w.ncols());
                let qw = ArrayView2::from_shape((r, d), &q[..r * d]).expect("weight rows");
                // Y = Q − (Q Wᵀ) M⁻¹ W for all classes at once.
                let y = &qw - &qw.dot(&w.t()).dot(minv).dot(w);
                let mut out = vec![0.0; q.len()];
                for k in 0..r {
                    let yk = y.row(k);
                    match intercept {
                        Some((g, sigma)) => {
                            let t = (g.dot(&qw.row(k)) - q[r * d + k]) / sigma;
                            for j in 0..d {
                                out[k * d + j] = yk[j] + g[j] * t;
                            }
                            out[r * d + k] = -t;
                        }
                        None => out[k * d..(k + 1) * d]
                            .copy_from_slice(yk.as_slice().expect("standard layout")),
                    }
                }
                out
            }
            Precond::Block {
                inv,
                rows,
                d,
                intercept,
            } => {
                let (r, d) = (*rows, *d);
                let dp = inv.nrows();
                let mut qm = Array2::<f64>::zeros((r, dp));
                for k in 0..r {
                    qm.row_mut(k)
                        .slice_mut(s![..d])
                        .assign(&ArrayView1::from(&q[k * d..(k + 1) * d]));
                    if *intercept {
                        qm[[k, d]] = q[r * d + k];
                    }
                }
                let z = qm.dot(inv);
                let mut out = vec![0.0; q.len()];
                for k in 0..r {
                    out[k * d..(k + 1) * d]
                        .copy_from_slice(&z.row(k).as_slice().expect("standard layout")[..d]);
                    if *intercept {
                        out[r * d + k] = z[[k, d]];
                    }
                }
                out
            }
        }
    }
}

/// The inverse of a symmetric positive definite matrix, through its Cholesky factor
/// (rows of each step in parallel, each entry computed by one thread: deterministic).
fn spd_inverse(mut a: Array2<f64>) -> Array2<f64> {
    let n = a.nrows();
    // In place: the lower triangle becomes L with A = L Lᵀ.
    for j in 0..n {
        let (head, mut tail) = a.view_mut().split_at(Axis(0), j + 1);
        let row_j = head.row(j);
        let pivot = (row_j[j] - row_j.slice(s![..j]).dot(&row_j.slice(s![..j])))
            .max(1e-300)
            .sqrt();
        let lj = row_j.slice(s![..j]).to_owned();

        tail.axis_iter_mut(Axis(0))
            .into_par_iter()
            .for_each(|mut row| {
                let v = (row[j] - row.slice(s![..j]).dot(&lj)) / pivot;
                row[j] = v;
            });
        a[[j, j]] = pivot;
    }
    // L⁻¹, column by column (forward substitution), columns in parallel.
    let cols: Vec<Vec<f64>> = (0..n)
        .into_par_iter()
        .map(|j| {
            let mut x = vec![0.0; n];
            for i in j..n {
                let row = a.row(i);
                let mut acc = if i == j { 1.0 } else { 0.0 };
                for k in j..i {
                    acc -= row[k] * x[k];
                }
                x[i] = acc / row[i];
            }
            x
        })
        .collect();
    let mut linv = Array2::<f64>::zeros((n, n));
    for (j, c) in cols.iter().enumerate() {
        for i in j..n {
            linv[[i, j]] = c[i];
        }
    }
    // A⁻¹ = L⁻ᵀ L⁻¹.
    linv.t().dot(&linv)
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Preconditioned L-BFGS with an Armijo backtracking line search. Returns θ, F, the
/// iteration and evaluation counts and whether it converged.
fn lbfgs(
    p: &Problem,
    theta0: Vec<f64>,
    cfg: &ProbeConfig,
    gram: &mut Option<Gram>,
) -> (Vec<f64>, f64, usize, usize, bool) {
    let n = p.dim();
    let pre = p.precond(gram);
    let mut theta = theta0;
    let mut g = vec![0.0; n];
    let mut f = p.eval(&theta, &mut g);
    let mut evals = 1;
    let mut hist: std::collections::VecDeque<(Vec<f64>, Vec<f64>, f64)> = Default::default();
    let mut gamma = 1.0;
    let mut gnew = vec![0.0; n];
    for iter in 0..cfg.max_iter {
        // Two-loop recursion with H₀ = γ D⁻¹.
        let mut q = g.clone();
        let mut alphas = Vec::with_capacity(hist.len());
        for (s, y, rho) in hist.iter().rev() {
            let a = rho * dot(s, &q);
            for (qi, yi) in q.iter_mut().zip(y) {
                *qi -= a * yi;
            }
            alphas.push(a);
        }
        let mut q = pre.apply(&q);
        for qi in q.iter_mut() {
            *qi *= gamma;
        }
        for ((s, y, rho), a) in hist.iter().zip(alphas.iter().rev()) {
            let b = rho * dot(y, &q);
            for (qi, si) in q.iter_mut().zip(s) {
                *qi += (a - b) * si;
            }
        }
        let mut dir: Vec<f64> = q.iter().map(|v| -v).collect();
        let mut slope = dot(&g, &dir);
        if slope >= 0.0 {
            // Not a descent direction (rounding): restart from the preconditioned gradient.
            hist.clear();
            dir = pre.apply(&g).iter().map(|v| -v).collect();
            slope = dot(&g, &dir);
        }
        // Estimated distance to the optimum, ½ gᵀ H⁻¹ g with L-BFGS's own inverse-Hessian
        // estimate (the quasi-Newton decrement).
        if -0.5 * slope <= cfg.tol * f.abs().max(1e-300) {
            return (theta, f, iter, evals, true);
        }
        let mut step = 1.0;
        let mut trial = vec![0.0; n];
        let mut accepted = false;
        for _ in 0..60 {
            for i in 0..n {
                trial[i] = theta[i] + step * dir[i];
            }
            let ft = p.eval(&trial, &mut gnew);
            evals += 1;
            if ft <= f + 1e-4 * step * slope {
                let s: Vec<f64> = trial.iter().zip(&theta).map(|(a, b)| a - b).collect();
                let y: Vec<f64> = gnew.iter().zip(&g).map(|(a, b)| a - b).collect();
                let sy = dot(&s, &y);
                if sy > 1e-12 * dot(&y, &y).sqrt() * dot(&s, &s).sqrt() {
                    let ydy: f64 = dot(&y, &pre.apply(&y));
                    gamma = sy / ydy;
                    if hist.len() == cfg.memory {
                        hist.pop_front();
                    }
                    hist.push_back((s, y, 1.0 / sy));
                }
                std::mem::swap(&mut theta, &mut trial);
                std::mem::swap(&mut g, &mut gnew);
                f = ft;
                accepted = true;
                break;
            }
            // Quadratic interpolation, kept within [0.1, 0.5] of the step.
            let denom = 2.0 * (ft - f - step * slope);
            let next = if denom > 0.0 {
                -slope * step * step / denom
            } else {
                step * 0.5
            };
            step = next.clamp(0.1 * step, 0.5 * step);
        }
        if !accepted {
            // No decrease is representable any more: this is the optimum to f64 precision.
            return (theta, f, iter + 1, evals, true);
        }
    }
    (theta, f, cfg.max_iter, evals, false)
}

/// Training data for a probe: features (f32, as stored) and class indices.
#[derive(Debug, Clone, Copy)]
pub struct ProbeData<'a> {
    pub x: ArrayView2<'a, f32>,
    pub y: &'a [u32],
    pub classes: usize,
}

impl ProbeData<'_> {
    fn check(&self) -> Result<()> {
        if self.x.nrows() != self.y.len() {
            return Err(Error::data(
                "training data",
                format!(
                    "{} feature rows but {} labels",
                    self.x.nrows(),
                    self.y.len()
                ),
            ));
        }
        if self.x.nrows() == 0 {
            return Err(Error::data("training data", "no labelled rows"));
        }
        if self.classes < 2 {
            return Err(Error::data(
                "classes",
                format!("{} class: need at least 2", self.classes),
            ));
        }
        crate::check_features("training features", self.x)?;
        let mut counts = vec![0usize; self.classes];
        for (i, &y) in self.y.iter().enumerate() {
            let Some(c) = counts.get_mut(y as usize) else {
                return Err(Error::data(
                    "labels",
                    format!(
                        "row {i} has class {y}, outside the {} classes",
                        self.classes
                    ),
                ));
            };
            *c += 1;
        }
        if let Some(k) = counts.iter().position(|&c| c == 0) {
            return Err(Error::data(
                "training data",
                format!("class {k} has no training rows"),
            ));
        }
        Ok(())
    }
}

/// Column means and standard deviations (1 where a column is constant): the one
/// standardisation of `tl`, in f64.
fn moments(x: ArrayView2<'_, f32>) -> (Array1<f64>, Array1<f64>) {
    tl_core::num::Standardizer::moments(x)
}

fn build(
    data: &ProbeData<'_>,
    cfg: &ProbeConfig,
    scale: Option<&(Array1<f64>, Array1<f64>)>,
) -> Result<Problem> {
    let mut x = data.x.mapv(f64::from);
    if let Some((m, sd)) = scale {
        for mut row in x.rows_mut() {
            row -= m;
            row /= sd;
        }
    }
    let k = data.classes;
    let cw: Vec<f64> = match &cfg.class_weight {
        ClassWeight::None => vec![1.0; k],
        ClassWeight::Balanced => {
            let mut counts = vec![0.0; k];
            for &y in data.y {
                counts[y as usize] += 1.0;
            }
            let n = data.y.len() as f64;
            counts.iter().map(|&c| n / (k as f64 * c)).collect()
        }
        ClassWeight::Given(w) => {
            if w.len() != k {
                return Err(Error::setting(
                    "class weights",
                    format!("{} weights for {k} classes", w.len()),
                ));
            }
            w.clone()
        }
    };
    Ok(Problem {
        x,
        y: data.y.to_vec(),
        sw: data.y.iter().map(|&y| cw[y as usize]).collect(),
        classes: k,
        rows: if k == 2 { 1 } else { k },
        c: cfg.c,
        intercept: cfg.fit_intercept,
    })
}

/// Fits a probe; `warm` starts from another fit's solution (same classes and width).
pub fn fit(
    data: &ProbeData<'_>,
    cfg: &ProbeConfig,
    warm: Option<&LinearProbe>,
) -> Result<LinearProbe> {
    fit_with(data, cfg, warm, &mut None)
}

/// [`fit`], reusing (or filling) the preconditioner's Gram matrix of `data`, which
/// depends on the rows and class weights but not on C.
fn fit_with(
    data: &ProbeData<'_>,
    cfg: &ProbeConfig,
    warm: Option<&LinearProbe>,
    gram: &mut Option<Gram>,
) -> Result<LinearProbe> {
    cfg.check()?;
    data.check()?;
    let start = std::time::Instant::now();
    let scale = cfg.standardize.then(|| moments(data.x));
    let problem = build(data, cfg, scale.as_ref())?;
    let theta0 = match warm {
        Some(w) if w.theta.len() == problem.dim() => w.theta.clone(),
        _ => vec![0.0; problem.dim()],
    };
    let (theta, f, iterations, evaluations, converged) = lbfgs(&problem, theta0, cfg, gram);
    let (k, d, r) = (data.classes, data.x.ncols(), problem.rows);
    let mut weight = Array2::<f64>::zeros((k, d));
    let mut bias = Array1::<f64>::zeros(k);
    let free = ArrayView2::from_shape((r, d), &theta[..r * d]).expect("θ layout");
    let first = k - r; // 1 for binary: class 0's logit stays 0
    weight.slice_mut(s![first.., ..]).assign(&free);
    if cfg.fit_intercept {
        bias.slice_mut(s![first..])
            .assign(&ArrayView1::from(&theta[r * d..]));
    }
    if let Some((m, sd)) = &scale {
        // x' = (x − m)/sd  ⇒  W x' + b = (W/sd) x + (b − (W/sd)·m)
        for mut row in weight.rows_mut() {
            row /= sd;
        }
        bias -= &weight.dot(m);
    }
    Ok(LinearProbe {
        weight,
        bias,
        report: ProbeReport {
            c: cfg.c,
            objective: f,
            iterations,
            evaluations,
            converged,
            seconds: start.elapsed().as_secs_f64(),
        },
        theta,
    })
}

/// The objective F of `probe`'s weights on `data` under `cfg` (no standardisation), for
/// comparing solutions.
pub fn objective(probe: &LinearProbe, data: &ProbeData<'_>, cfg: &ProbeConfig) -> Result<f64> {
    let problem = build(data, cfg, None)?;
    let mut theta: Vec<f64>;
    if problem.rows == 1 {
        // Binary: only the difference of the two classes' scores matters.
        theta = (&probe.weight.row(1) - &probe.weight.row(0)).to_vec();
        if cfg.fit_intercept {
            theta.push(probe.bias[1] - probe.bias[0]);
        }
    } else {
        theta = probe.weight.iter().copied().collect();
        if cfg.fit_intercept {
            theta.extend(probe.bias.iter());
        }
    }
    let mut g = vec![0.0; problem.dim()];
    Ok(problem.eval(&theta, &mut g))
}

/// One point of a regularisation path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PathPoint {
    pub c: f64,
    pub objective: f64,
    pub iterations: usize,
    pub train_accuracy: f64,
    pub val_accuracy: f64,
    /// Mean cross-entropy of the validation rows (how well calibrated the point is).
    #[serde(default)]
    pub val_log_loss: f64,
    pub seconds: f64,
}

/// Mean cross-entropy of `probe`'s softmax on rows `x` with classes `y`.
pub fn log_loss(probe: &LinearProbe, x: ArrayView2<'_, f32>, y: &[u32]) -> f64 {
    if y.is_empty() {
        return f64::NAN;
    }
    let z = probe.logits(x);
    let total: f64 = z
        .rows()
        .into_iter()
        .zip(y)
        .map(|(row, &c)| tl_core::num::log_sum_exp(row.iter().copied()) - row[c as usize])
        .sum();
    total / y.len() as f64
}

/// A regularisation path over `cs` (fitted in increasing order, each warm-started from
/// the previous), the best C by validation accuracy (the smallest C on ties: the
/// strongest regularisation), and the final probe refitted on training + validation rows.
#[derive(Debug, Clone)]
pub struct PathResult {
    pub points: Vec<PathPoint>,
    pub best_c: f64,
    pub probe: LinearProbe,
}

/// The values of C a path tries by default: ten from 1e-4 to 10, evenly spaced in log
/// scale (the best on validation is refitted on train + validation).
pub fn default_cs() -> Vec<f64> {
    (0..10)
        .map(|i| 10f64.powf(-4.0 + 5.0 * f64::from(i) / 9.0))
        .collect()
}

pub use tl_eval::accuracy;

/// See [`PathResult`].
pub fn fit_path(
    train: &ProbeData<'_>,
    val: &ProbeData<'_>,
    cs: &[f64],
    cfg: &ProbeConfig,
) -> Result<PathResult> {
    if cs.is_empty() {
        return Err(Error::setting("C path", "no values of C"));
    }
    if val.x.ncols() != train.x.ncols() {
        return Err(Error::data(
            "validation features",
            format!(
                "width {} but the training features have {}",
                val.x.ncols(),
                train.x.ncols()
            ),
        ));
    }
    let mut cs = cs.to_vec();
    cs.sort_by(f64::total_cmp);
    let mut points = Vec::new();
    let mut prev: Option<LinearProbe> = None;
    let mut best: Option<(f64, f64, LinearProbe)> = None;
    // Every point fits the same rows: one Gram matrix serves them all.
    let mut gram = None;
    for &c in &cs {
        // Points of the path only rank values of C: a looser tolerance than the refit's.
        let cfg_c = ProbeConfig {
            c,
            tol: cfg.tol.max(PATH_TOL),
            ..cfg.clone()
        };
        let probe = fit_with(train, &cfg_c, prev.as_ref(), &mut gram)?;
        let val_acc = accuracy(&probe.predict(val.x), val.y);
        points.push(PathPoint {
            c,
            objective: probe.report.objective,
            iterations: probe.report.iterations,
            train_accuracy: accuracy(&probe.predict(train.x), train.y),
            val_accuracy: val_acc,
            val_log_loss: log_loss(&probe, val.x, val.y),
            seconds: probe.report.seconds,
        });
        if best.as_ref().is_none_or(|(_, a, _)| val_acc > *a) {
            best = Some((c, val_acc, probe.clone()));
        }
        prev = Some(probe);
    }
    let (best_c, _, best_probe) = best.expect("at least one C");
    let x = ndarray::concatenate(Axis(0), &[train.x, val.x])
        .map_err(|e| Error::data("features", e.to_string()))?;
    let y: Vec<u32> = train.y.iter().chain(val.y).copied().collect();
    let all = ProbeData {
        x: x.view(),
        y: &y,
        classes: train.classes,
    };
    let probe = fit(
        &all,
        &ProbeConfig {
            c: best_c,
            ..cfg.clone()
        },
        Some(&best_probe),
    )?;
    Ok(PathResult {
        points,
        best_c,
        probe,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The low-rank form and the dense block are one matrix (up to rounding).
    const SAME_MATRIX_TOL: f64 = 1e-9;

    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    }

    #[test]
    fn low_rank_preconditioner_equals_the_dense_block() {
        for intercept in [true, false] {
            let (n, d, k) = (12, 40, 3);
            let mut seed = 7;
            let x = Array2::from_shape_fn((n, d), |_| lcg(&mut seed));
            let p = Problem {
                x,
                y: (0..n as u32).map(|i| i % 3).collect(),
                sw: (0..n).map(|i| 0.5 + i as f64 / n as f64).collect(),
                classes: k,
                rows: k,
                c: 0.7,
                intercept,
            };
            let gram = p.gram();
            let rows = gram.rows.clone().expect("12 rows for 40 columns: low-rank");
            let dense = Gram {
                sum: Some(rows.t().dot(&rows)),
                rows: None,
                scale: gram.scale,
            };
            let low = p.precond(&mut Some(gram));
            let block = p.precond(&mut Some(dense));
            assert!(matches!(low, Precond::LowRank { .. }));
            assert!(matches!(block, Precond::Block { .. }));
            let q: Vec<f64> = (0..p.dim()).map(|_| lcg(&mut seed)).collect();
            let (a, b) = (low.apply(&q), block.apply(&q));
            let scale = b.iter().map(|v| v.abs()).fold(0.0, f64::max);
            for (i, (u, v)) in a.iter().zip(&b).enumerate() {
                assert!(
                    (u - v).abs() <= SAME_MATRIX_TOL * scale,
                    "intercept {intercept}, entry {i}: {u} vs {v}"
                );
            }
        }
    }
}
