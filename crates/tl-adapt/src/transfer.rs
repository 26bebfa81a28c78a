//! Transferability before training: how well a backbone's features (or its source
//! classifier) will serve a labelled target task, scored without training a head.
//!
//! - [`logme`]: the log marginal evidence of a Bayesian linear model on the features
//!   (You et al. 2021), mean over classes of one-hot targets, per row.
//! - [`h_score`]: `tr(cov(f)⁻¹ cov(E[f | y]))` (Bao et al. 2019), with a ridge on cov(f).
//! - [`nce`]: the negative conditional entropy `−H(Y | Z)` of the target labels given the
//!   source classifier's hard predictions (Tran et al. 2019).
//! - [`leep`]: the log expected empirical prediction (Nguyen et al. 2020) from the
//!   source classifier's probabilities.
//!
//! Higher is better for all four.

use ndarray::{Array1, Array2, ArrayView2, Axis};

use crate::{Error, Result, linalg};

fn check_labels(n: usize, y: &[u32], classes: usize) -> Result<()> {
    if y.len() != n {
        return Err(Error::Shape {
            what: "labels".into(),
            expected: format!("{n} (one per row)"),
            got: y.len().to_string(),
        });
    }
    if n < 2 {
        return Err(Error::data(
            "transferability",
            format!("{n} rows: need at least 2"),
        ));
    }
    if let Some(&bad) = y.iter().find(|&&c| c as usize >= classes) {
        return Err(Error::data(
            "labels",
            format!("class {bad} is outside the {classes} classes"),
        ));
    }
    Ok(())
}

/// Column `k` of the labels' one-hot matrix.
fn one_hot(y: &[u32], k: usize) -> Array1<f64> {
    y.iter()
        .map(|&c| f64::from(u8::from(c as usize == k)))
        .collect()
}

/// LogME, transcribed from the authors' reference `LogME.py` (`each_evidence`, the
/// fixed-point iteration on α and β, at most 11 steps, stopping when α/β moves by < 1 %),
/// with the eigendecomposition of `FᵀF` (d × d). With fewer rows than features the same
/// evidence is computed from `FFᵀ` (n × n, [`logme_dual`]): `FᵀF` then has d − n zero
/// eigenvalues, which its numerical decomposition returns as rounding noise; on
/// EfficientNet-Lite0's features of 90 digits at 32 px (1,280 wide) the score was NaN.
pub fn logme(f: ArrayView2<'_, f32>, y: &[u32], classes: usize) -> Result<f64> {
    let (n, d) = f.dim();
    check_labels(n, y, classes)?;
    if n < d {
        return Ok(logme_dual(f, y, classes));
    }
    Ok(logme_primal(f, y, classes))
}

/// [`logme`] from the d × d matrix `FᵀF`, as the reference computes it.
fn logme_primal(f: ArrayView2<'_, f32>, y: &[u32], classes: usize) -> f64 {
    let (n, d) = f.dim();
    let f = f.mapv(f64::from);
    let (s, v) = linalg::sym_eigen(&f.t().dot(&f));
    let s = s.mapv(|x| x.max(0.0));
    let nf = n as f64;
    let df = d as f64;
    let mut total = 0.0;
    for k in 0..classes {
        let yk = one_hot(y, k);
        let eps = 1e-5;
        let (mut alpha, mut beta) = (1.0f64, 1.0f64);
        let mut lam = alpha / beta;
        let tmp = v.t().dot(&f.t().dot(&yk));
        let (mut alpha_de, mut beta_de) = (0.0, 0.0);
        for _ in 0..11 {
            let gamma: f64 = s.iter().map(|&si| si / (si + lam)).sum();
            let scaled: Array1<f64> = tmp
                .iter()
                .zip(&s)
                .map(|(t, si)| t * beta / (alpha + beta * si))
                .collect();
            let m = v.dot(&scaled);
            alpha_de = m.dot(&m);
            alpha = gamma / (alpha_de + eps);
            let resid = &yk - &f.dot(&m);
            beta_de = resid.dot(&resid);
            beta = (nf - gamma) / (beta_de + eps);
            let new_lam = alpha / beta;
            if ((new_lam - lam) / lam).abs() < 0.01 {
                break;
            }
            lam = new_lam;
        }
        let evidence = df / 2.0 * alpha.ln() + nf / 2.0 * beta.ln()
            - 0.5 * s.iter().map(|si| (alpha + beta * si).ln()).sum::<f64>()
            - beta / 2.0 * (beta_de + eps)
            - alpha / 2.0 * (alpha_de + eps)
            - nf / 2.0 * (2.0 * std::f64::consts::PI).ln();
        total += evidence / nf;
    }
    total / classes as f64
}

/// [`logme`] from the n × n Gram matrix `FFᵀ = U diag(σ) Uᵀ`: with `x = Uᵀy`, the fixed
/// point's `mᵀm = Σ σx²/(t + σ)²` and `‖y − Fm‖² = Σ x²(t/(t + σ))² + (‖y‖² − ‖x‖²)` for
/// `t = α/β`, and `log|αI + βFᵀF| = Σ log(α + βσ) + (d − n) log α`, the d − n exact zeros
/// of `FᵀF` counted exactly. The same evidence as the d × d form, for any n.
pub fn logme_dual(f: ArrayView2<'_, f32>, y: &[u32], classes: usize) -> f64 {
    let (n, d) = f.dim();
    let f = f.mapv(f64::from);
    let (s, u) = linalg::sym_eigen(&f.dot(&f.t()));
    let s = s.mapv(|x| x.max(0.0));
    let (nf, df) = (n as f64, d as f64);
    // FᵀF and FFᵀ share their nonzero eigenvalues; the rest are zeros, d − n more of
    // them in FᵀF (fewer when n > d), each adding log α to log|αI + βFᵀF|.
    let zeros = d as f64 - n as f64;
    let eps = 1e-5;
    let mut total = 0.0;
    for k in 0..classes {
        let yk = one_hot(y, k);
        let x = u.t().dot(&yk);
        let rest = (yk.dot(&yk) - x.dot(&x)).max(0.0);
        let (mut alpha, mut beta) = (1.0f64, 1.0f64);
        let mut lam = alpha / beta;
        let (mut m2, mut res2) = (0.0, 0.0);
        for _ in 0..11 {
            let gamma: f64 = s.iter().map(|&si| si / (si + lam)).sum();
            m2 = x
                .iter()
                .zip(&s)
                .map(|(xi, si)| si * xi * xi / ((lam + si) * (lam + si)))
                .sum();
            res2 = x
                .iter()
                .zip(&s)
                .map(|(xi, si)| (xi * lam / (lam + si)).powi(2))
                .sum::<f64>()
                + rest;
            alpha = gamma / (m2 + eps);
            beta = (nf - gamma) / (res2 + eps);
            let new_lam = alpha / beta;
            if ((new_lam - lam) / lam).abs() < 0.01 {
                break;
            }
            lam = new_lam;
        }
        let logdet = s.iter().map(|si| (alpha + beta * si).ln()).sum::<f64>() + zeros * alpha.ln();
        let evidence = df / 2.0 * alpha.ln() + nf / 2.0 * beta.ln()
            - 0.5 * logdet
            - beta / 2.0 * (res2 + eps)
            - alpha / 2.0 * (m2 + eps)
            - nf / 2.0 * (2.0 * std::f64::consts::PI).ln();
        total += evidence / nf;
    }
    total / classes as f64
}

/// The ridge added to cov(f) in [`h_score`], relative to its mean diagonal.
pub const H_SCORE_RIDGE: f64 = 1e-6;

/// H-score: `tr(cov(f)⁻¹ cov(g))`, `g` each row's class mean of the features.
pub fn h_score(f: ArrayView2<'_, f32>, y: &[u32], classes: usize) -> Result<f64> {
    let (n, d) = f.dim();
    check_labels(n, y, classes)?;
    let f = f.mapv(f64::from);
    let mean = f.mean_axis(Axis(0)).expect("rows");
    let fc = &f - &mean;
    let mut sums = Array2::<f64>::zeros((classes, d));
    let mut counts = vec![0.0f64; classes];
    for (row, &c) in fc.rows().into_iter().zip(y) {
        let mut s = sums.row_mut(c as usize);
        s += &row;
        counts[c as usize] += 1.0;
    }
    let g = Array2::from_shape_fn((n, d), |(i, j)| {
        sums[[y[i] as usize, j]] / counts[y[i] as usize]
    });
    let cov_f = fc.t().dot(&fc) / nf(n);
    let cov_g = g.t().dot(&g) / nf(n);
    let ridge = H_SCORE_RIDGE * cov_f.diag().mean().unwrap_or(1.0).max(1e-300);
    let inv = linalg::sym_power(&(&cov_f + &(Array2::<f64>::eye(d) * ridge)), -1.0, 1e-300);
    Ok((inv * cov_g.t()).sum())
}

fn nf(n: usize) -> f64 {
    n as f64
}

/// NCE: `Σ P(z, y) log P(y | z)` over source predictions `z` (argmax of `source_probs`)
/// and target classes `y`.
pub fn nce(source_probs: ArrayView2<'_, f64>, y: &[u32], classes: usize) -> Result<f64> {
    let (n, zs) = source_probs.dim();
    check_labels(n, y, classes)?;
    let z: Vec<usize> = tl_head::probe::argmax_rows(&source_probs.to_owned())
        .into_iter()
        .map(|k| k as usize)
        .collect();
    let mut joint = Array2::<f64>::zeros((zs, classes));
    for (&zi, &yi) in z.iter().zip(y) {
        joint[[zi, yi as usize]] += 1.0 / n as f64;
    }
    let pz = joint.sum_axis(Axis(1));
    let mut total = 0.0;
    for a in 0..zs {
        for b in 0..classes {
            let p = joint[[a, b]];
            if p > 0.0 {
                total += p * (p / pz[a]).ln();
            }
        }
    }
    Ok(total)
}

/// LEEP: `(1/n) Σ_i log Σ_z P̂(y_i | z) θ(x_i)_z`, with `P̂(y | z)` the empirical
/// conditional from the soft joint `(1/n) Σ_i θ(x_i)_z 1[y_i = y]`.
pub fn leep(source_probs: ArrayView2<'_, f64>, y: &[u32], classes: usize) -> Result<f64> {
    let (n, zs) = source_probs.dim();
    check_labels(n, y, classes)?;
    let mut joint = Array2::<f64>::zeros((zs, classes));
    for (row, &yi) in source_probs.rows().into_iter().zip(y) {
        let mut col = joint.column_mut(yi as usize);
        col += &row.mapv(|v| v / n as f64);
    }
    let pz = joint.sum_axis(Axis(1));
    let cond = Array2::from_shape_fn((zs, classes), |(a, b)| {
        if pz[a] > 0.0 {
            joint[[a, b]] / pz[a]
        } else {
            0.0
        }
    });
    let mut total = 0.0;
    for (row, &yi) in source_probs.rows().into_iter().zip(y) {
        let eep = row.dot(&cond.column(yi as usize));
        total += eep.max(1e-300).ln();
    }
    Ok(total / n as f64)
}

/// Kendall's τ-b between two score lists (ties counted as neither concordant nor
/// discordant, with the tie correction).
pub fn kendall_tau(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (mut conc, mut disc, mut ties_a, mut ties_b) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for i in 0..n {
        for j in i + 1..n {
            let (da, db) = (a[i] - a[j], b[i] - b[j]);
            if da == 0.0 && db == 0.0 {
                continue;
            } else if da == 0.0 {
                ties_a += 1.0;
            } else if db == 0.0 {
                ties_b += 1.0;
            } else if (da > 0.0) == (db > 0.0) {
                conc += 1.0;
            } else {
                disc += 1.0;
            }
        }
    }
    let denom = ((conc + disc + ties_a) * (conc + disc + ties_b)).sqrt();
    if denom == 0.0 {
        f64::NAN
    } else {
        (conc - disc) / denom
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kendall_tau_of_orders() {
        assert_eq!(kendall_tau(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]), 1.0);
        assert_eq!(kendall_tau(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), -1.0);
        assert!(
            (kendall_tau(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 4.0]) - 4.0 / 6.0).abs() < 1e-12
        );
    }

    #[test]
    fn nce_and_leep_reward_informative_source_predictions() {
        // Source predictions that determine the target class vs ones that do not.
        let y = [0u32, 0, 1, 1];
        let sharp = ndarray::array![[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]];
        let blind = ndarray::array![[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]];
        assert!(nce(sharp.view(), &y, 2).unwrap().abs() < 1e-12); // H(Y|Z) = 0
        assert!((nce(blind.view(), &y, 2).unwrap() + 2f64.ln()).abs() < 1e-12);
        assert!(leep(sharp.view(), &y, 2).unwrap().abs() < 1e-12);
        assert!((leep(blind.view(), &y, 2).unwrap() + 2f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn h_score_prefers_separable_features() {
        let y: Vec<u32> = (0..40).map(|i| (i % 2) as u32).collect();
        let sep = Array2::from_shape_fn((40, 3), |(i, j)| {
            (if j == 0 { 3.0 * y[i] as f32 } else { 0.0 }) + ((i * 7 + j * 3) % 5) as f32 * 0.1
        });
        let noise = Array2::from_shape_fn((40, 3), |(i, j)| {
            ((i * 7 + j * 3) % 5) as f32 * 0.1 + (i % 3) as f32
        });
        let (a, b) = (
            h_score(sep.view(), &y, 2).unwrap(),
            h_score(noise.view(), &y, 2).unwrap(),
        );
        assert!(a > b && a > 0.5, "{a} vs {b}");
        let (la, lb) = (
            logme(sep.view(), &y, 2).unwrap(),
            logme(noise.view(), &y, 2).unwrap(),
        );
        assert!(la > lb, "LogME {la} vs {lb}");
    }

    /// Largest relative difference between LogME's d × d and n × n forms (the same
    /// evidence; f64 eigendecompositions of different matrices).
    const DUAL_REL: f64 = 1e-6;

    #[test]
    fn logme_from_the_gram_matrix_equals_the_reference_form() {
        for (n, d, seed) in [(40, 3, 1u64), (30, 8, 2), (12, 12, 3), (50, 20, 4)] {
            let mut rng = tl_core::rng::seeded_rng(seed, "logme");
            use rand::Rng;
            let y: Vec<u32> = (0..n).map(|i| (i % 3) as u32).collect();
            let f = Array2::from_shape_fn((n, d), |(i, j)| {
                rng.random_range(-1.0f32..1.0) + if j == 0 { y[i] as f32 } else { 0.0 }
            });
            let (p, q) = (logme_primal(f.view(), &y, 3), logme_dual(f.view(), &y, 3));
            assert!(
                (p - q).abs() <= DUAL_REL * p.abs().max(1.0),
                "{n}x{d}: primal {p}, dual {q}"
            );
        }
    }

    /// Fewer rows than features (80 of 1,280, where the fit interpolates): a finite score,
    /// higher for features that carry the labels than for noise. (The d × d form agrees on
    /// these random features; on EfficientNet-Lite0's it gave NaN: the CLI's rank test.)
    #[test]
    fn logme_with_fewer_rows_than_features_is_finite_and_ranks() {
        use rand::Rng;
        let (n, d) = (80, 1280);
        let y: Vec<u32> = (0..n).map(|i| (i % 4) as u32).collect();
        let mut rng = tl_core::rng::seeded_rng(5, "wide");
        let noise = Array2::from_shape_fn((n, d), |_| rng.random_range(-1.0f32..1.0));
        let mut informative = noise.clone();
        for (i, &c) in y.iter().enumerate() {
            for j in 0..8 {
                informative[[i, c as usize * 8 + j]] += 3.0;
            }
        }
        let (a, b) = (
            logme(informative.view(), &y, 4).unwrap(),
            logme(noise.view(), &y, 4).unwrap(),
        );
        assert!(a.is_finite() && b.is_finite(), "{a}, {b}");
        assert!(a > b, "informative {a} vs noise {b}");
    }
}
