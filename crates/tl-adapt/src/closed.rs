//! Adaptation without training: transforms of the source features fitted in closed form.

use ndarray::{Array1, Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use crate::{Error, Result, linalg};

/// Closed-form CORAL (Sun, Feng & Saenko 2016): whiten the centred source features with
/// `(C_s + εI)^(−1/2)`, re-colour them with `(C_t + εI)^(1/2)` and move them to the
/// target's mean. A classifier trained on the transformed source rows is applied to the
/// target rows unchanged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClosedCoral {
    pub source_mean: Array1<f64>,
    pub target_mean: Array1<f64>,
    /// `(C_s + εI)^(−1/2) (C_t + εI)^(1/2)`, d × d.
    pub transform: Array2<f64>,
}

/// The paper's ε: 1, on features standardised by the pooled scale first (so that ε means
/// the same whatever the backbone's feature scale).
pub const CORAL_EPS: f64 = 1.0;

fn to64(x: ArrayView2<'_, f32>) -> Array2<f64> {
    x.mapv(f64::from)
}

fn check(xs: ArrayView2<'_, f32>, xt: ArrayView2<'_, f32>) -> Result<()> {
    if xs.ncols() != xt.ncols() {
        return Err(Error::Shape {
            what: "target features".into(),
            expected: format!("width {} (the source's)", xs.ncols()),
            got: format!("width {}", xt.ncols()),
        });
    }
    for (what, n) in [
        ("source features", xs.nrows()),
        ("target features", xt.nrows()),
    ] {
        if n < 2 {
            return Err(Error::data(what, format!("{n} rows: need at least 2")));
        }
    }
    Ok(())
}

impl ClosedCoral {
    /// Fits the transform; `eps` is added to both covariances' diagonals, after the
    /// features are divided by their pooled root-mean-square deviation.
    pub fn fit(xs: ArrayView2<'_, f32>, xt: ArrayView2<'_, f32>, eps: f64) -> Result<Self> {
        check(xs, xt)?;
        if !(eps.is_finite() && eps > 0.0) {
            return Err(Error::setting("CORAL ε", format!("{eps} must be > 0")));
        }
        let (s, t) = (to64(xs), to64(xt));
        let ms = s.mean_axis(Axis(0)).expect("rows");
        let mt = t.mean_axis(Axis(0)).expect("rows");
        let cs = crate::loss::covariance(s.view());
        let ct = crate::loss::covariance(t.view());
        let d = cs.nrows();
        // One scale for both domains: the mean variance of the pooled features.
        let scale = ((cs.diag().sum() + ct.diag().sum()) / (2.0 * d as f64)).max(1e-300);
        let reg = Array2::<f64>::eye(d) * eps;
        let whiten = linalg::sym_power(&(&cs / scale + &reg), -0.5, 1e-12);
        let colour = linalg::sym_power(&(&ct / scale + &reg), 0.5, 0.0);
        Ok(Self {
            source_mean: ms,
            target_mean: mt,
            transform: whiten.dot(&colour),
        })
    }

    /// Source rows moved into the target's second-order statistics.
    pub fn apply(&self, xs: ArrayView2<'_, f32>) -> Array2<f32> {
        let centred = to64(xs) - &self.source_mean;
        (centred.dot(&self.transform) + &self.target_mean).mapv(|v| v as f32)
    }
}

pub use tl_core::num::Standardizer;

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    fn sample(n: usize, d: usize, scale: f32, shift: f32, seed: u64) -> Array2<f32> {
        let mut rng = tl_core::rng::seeded_rng(seed, "test");
        let mix = Array2::from_shape_fn((d, d), |(i, j)| {
            if i == j {
                scale
            } else {
                0.3 * scale * ((i + j) % 3) as f32
            }
        });
        let raw = Array2::from_shape_fn((n, d), |_| rng.random::<f32>() - 0.5);
        raw.dot(&mix) + shift
    }

    #[test]
    fn transformed_source_takes_the_target_statistics() {
        const TOL: f64 = 1e-6;
        let xs = sample(400, 5, 1.0, 0.0, 1);
        let xt = sample(300, 5, 3.0, 2.0, 2);
        let coral = ClosedCoral::fit(xs.view(), xt.view(), 1e-9).expect("fits");
        let moved = coral.apply(xs.view()).mapv(f64::from);
        let mean_gap = (moved.mean_axis(Axis(0)).unwrap() - &coral.target_mean)
            .iter()
            .fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(mean_gap < TOL, "mean gap {mean_gap}");
        let (cm, ct) = (
            crate::loss::covariance(moved.view()),
            crate::loss::covariance(xt.mapv(f64::from).view()),
        );
        let rel = (&cm - &ct).iter().fold(0.0f64, |m, v| m.max(v.abs()))
            / ct.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(rel < 1e-4, "covariance gap {rel}");
    }

    #[test]
    fn in_sample_values_stay_within_the_sqrt_n_bound() {
        // A post-ReLU-like feature: zero on all rows but one, plus a constant one.
        const TOL: f32 = 1e-4;
        let n = 50;
        let x = Array2::from_shape_fn((n, 3), |(i, j)| match j {
            0 if i == 7 => 1e-3,
            0 => 0.0,
            1 => 5.0,
            _ => i as f32,
        });
        let st = Standardizer::fit(x.view()).expect("fits");
        let z = st.apply(x.view());
        let bound = ((n - 1) as f32).sqrt();
        let max = z.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(max <= bound * (1.0 + TOL), "max |z| {max} > √(n-1) {bound}");
        // The constant feature is centred, not scaled.
        assert!(z.column(1).iter().all(|v| v.abs() < TOL));
        assert_eq!(st.sd[1], 1.0);
        for j in [0, 2] {
            let col = z.column(j).mapv(f64::from);
            assert!(col.mean().unwrap().abs() < 1e-5, "feature {j} mean");
            assert!((col.std(0.0) - 1.0).abs() < 1e-4, "feature {j} sd");
        }
    }

    #[test]
    fn mismatched_widths_fail_naming_both() {
        let err = ClosedCoral::fit(
            sample(10, 4, 1.0, 0.0, 1).view(),
            sample(10, 3, 1.0, 0.0, 2).view(),
            1.0,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("width 4") && err.contains("width 3"), "{err}");
    }
}
