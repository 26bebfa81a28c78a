//! How far apart two domains' features are: MMD² (linear and multi-kernel Gaussian) and
//! the proxy A-distance of a linear domain classifier.

use ndarray::{Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};
use tl_head::probe::{ProbeConfig, ProbeData, accuracy, fit};

use crate::{
    Error, Result,
    loss::{Estimator, Kernel, mmd2},
};

/// Shift measures between a source and a target sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShiftReport {
    pub source_rows: usize,
    pub target_rows: usize,
    /// Rows per domain the measures used (a seeded sample when there are more).
    pub sample_rows: usize,
    /// Unbiased MMD² with the linear kernel, on features scaled by the pooled RMS.
    pub mmd2_linear: f64,
    /// Unbiased MMD² with the multi-kernel Gaussian (median heuristic).
    pub mmd2_gaussian: f64,
    /// Test error of a linear domain classifier trained on half of the sample.
    pub domain_error: f64,
    /// `2 (1 − 2 ε)`: 0 for indistinguishable domains, 2 for separable ones.
    pub proxy_a_distance: f64,
}

/// Settings of [`measure`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShiftConfig {
    pub seed: u64,
    /// At most this many rows per domain (seeded sample).
    pub max_rows: usize,
    /// C of the domain classifier (standardised features).
    pub c: f64,
}

impl Default for ShiftConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            max_rows: 1000,
            c: 1.0,
        }
    }
}

fn sample(x: ArrayView2<'_, f32>, k: usize, seed: u64, stream: &str) -> Array2<f32> {
    x.select(
        Axis(0),
        &tl_core::rng::sample_indices(x.nrows(), k, seed, stream),
    )
}

/// Measures the shift between `xs` and `xt` (equal-size seeded samples of both).
pub fn measure(
    xs: ArrayView2<'_, f32>,
    xt: ArrayView2<'_, f32>,
    cfg: &ShiftConfig,
) -> Result<ShiftReport> {
    if xs.ncols() != xt.ncols() {
        return Err(Error::Shape {
            what: "target features".into(),
            expected: format!("width {} (the source's)", xs.ncols()),
            got: format!("width {}", xt.ncols()),
        });
    }
    let k = xs.nrows().min(xt.nrows()).min(cfg.max_rows);
    if k < 4 {
        return Err(Error::data(
            "shift",
            format!(
                "{} source and {} target rows: need at least 4 of each",
                xs.nrows(),
                xt.nrows()
            ),
        ));
    }
    let s = sample(xs, k, cfg.seed, "shift/source");
    let t = sample(xt, k, cfg.seed, "shift/target");
    let (s64, t64) = (s.mapv(f64::from), t.mapv(f64::from));
    // The linear MMD² depends on the features' scale: divide by the pooled RMS deviation.
    let pooled = ndarray::concatenate(Axis(0), &[s64.view(), t64.view()]).expect("same width");
    let mean = pooled.mean_axis(Axis(0)).expect("rows");
    let rms = ((&pooled - &mean).mapv(|v| v * v).sum() / pooled.nrows() as f64)
        .sqrt()
        .max(1e-300);
    let lin = mmd2(
        (&s64 / rms).view(),
        (&t64 / rms).view(),
        &Kernel::Linear,
        Estimator::Unbiased,
    )?;
    let gauss = mmd2(
        s64.view(),
        t64.view(),
        &Kernel::multi_gaussian(),
        Estimator::Unbiased,
    )?;
    // Domain classifier: even rows of each domain train, odd rows test.
    let half = |x: &Array2<f32>, parity: usize| {
        let idx: Vec<usize> = (parity..x.nrows()).step_by(2).collect();
        x.select(Axis(0), &idx)
    };
    let (tr, te): (Vec<Array2<f32>>, Vec<Array2<f32>>) = (
        [&s, &t].iter().map(|x| half(x, 0)).collect(),
        [&s, &t].iter().map(|x| half(x, 1)).collect(),
    );
    let stack = |parts: &[Array2<f32>]| {
        let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
        let x = ndarray::concatenate(Axis(0), &views).expect("same width");
        let y: Vec<u32> = parts
            .iter()
            .enumerate()
            .flat_map(|(d, p)| std::iter::repeat_n(d as u32, p.nrows()))
            .collect();
        (x, y)
    };
    let ((xtr, ytr), (xte, yte)) = (stack(&tr), stack(&te));
    let pc = ProbeConfig::new(cfg.c).tol(1e-6).standardize(true);
    let probe = fit(
        &ProbeData {
            x: xtr.view(),
            y: &ytr,
            classes: 2,
        },
        &pc,
        None,
    )?;
    let err = 1.0 - accuracy(&probe.predict(xte.view()), &yte);
    Ok(ShiftReport {
        source_rows: xs.nrows(),
        target_rows: xt.nrows(),
        sample_rows: k,
        mmd2_linear: lin.loss,
        mmd2_gaussian: gauss.loss,
        domain_error: err,
        proxy_a_distance: 2.0 * (1.0 - 2.0 * err),
    })
}
