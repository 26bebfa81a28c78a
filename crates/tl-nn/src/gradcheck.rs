//! Finite-difference checks of analytic gradients, for this crate's tests and for every
//! crate that adds a layer or a loss.

use crate::{
    Result,
    module::{Ctx, Module, Tensor},
};

/// The largest disagreement found by a gradient check.
#[derive(Debug, Clone, PartialEq)]
pub struct GradReport {
    /// `max |analytic − numeric| / max(1, |numeric|)` over all checked entries.
    pub max_error: f64,
    /// Where it occurred (`input[3]`, `0.weight[12]`).
    pub worst: String,
    pub checked: usize,
}

/// Central differences of a scalar function `f` at `x` along each coordinate, in f64.
pub fn numeric_grad(x: &[f64], h: f64, mut f: impl FnMut(&[f64]) -> f64) -> Vec<f64> {
    let mut x = x.to_vec();
    (0..x.len())
        .map(|i| {
            let orig = x[i];
            x[i] = orig + h;
            let up = f(&x);
            x[i] = orig - h;
            let down = f(&x);
            x[i] = orig;
            (up - down) / (2.0 * h)
        })
        .collect()
}

/// Checks `module`'s input and parameter gradients for the loss `Σ w ⊙ forward(x)` with a
/// fixed weighting `w`, against central differences with step `h`. `make_ctx` gives the
/// context of each forward pass (the same random stream every time, so dropout masks
/// repeat). At most `max_per_tensor` entries of each tensor are perturbed.
pub fn check_module(
    module: &mut dyn Module,
    x: &Tensor,
    w: &Tensor,
    h: f32,
    max_per_tensor: usize,
    make_ctx: &dyn Fn() -> Ctx,
) -> Result<GradReport> {
    let loss = |m: &mut dyn Module, x: &Tensor| -> Result<f64> {
        let y = m.forward(x, &mut make_ctx())?;
        Ok(y.iter()
            .zip(w.iter())
            .map(|(&a, &b)| a as f64 * b as f64)
            .sum())
    };
    module.visit_mut("", &mut |_, p| p.zero_grad());
    let y = module.forward(x, &mut make_ctx())?;
    if y.shape() != w.shape() {
        return Err(crate::Error::shape(
            "gradient-check weighting",
            format!("{:?}", y.shape()),
            w.shape(),
        ));
    }
    let dx = module.backward(w)?;
    let mut analytic: Vec<(String, Vec<f32>)> =
        vec![("input".into(), dx.iter().copied().collect())];
    module.visit("", &mut |n, p| {
        if p.trainable() {
            analytic.push((n.to_string(), p.grad.iter().copied().collect()));
        }
    });
    let mut report = GradReport {
        max_error: 0.0,
        worst: String::new(),
        checked: 0,
    };
    let mut note = |name: &str, i: usize, a: f32, num: f64| {
        let err = (a as f64 - num).abs() / num.abs().max(1.0);
        report.checked += 1;
        if err > report.max_error || report.worst.is_empty() {
            report.max_error = err;
            report.worst = format!("{name}[{i}]");
        }
    };
    let stride = |len: usize| (len / max_per_tensor.max(1)).max(1);
    // Input.
    let mut xp = x.clone();
    let len = xp.len();
    for i in (0..len).step_by(stride(len)) {
        let orig = xp.as_slice_mut().expect("standard layout")[i];
        xp.as_slice_mut().expect("standard layout")[i] = orig + h;
        let up = loss(module, &xp)?;
        xp.as_slice_mut().expect("standard layout")[i] = orig - h;
        let down = loss(module, &xp)?;
        xp.as_slice_mut().expect("standard layout")[i] = orig;
        note("input", i, analytic[0].1[i], (up - down) / (2.0 * h as f64));
    }
    // Parameters.
    for (name, grads) in analytic.iter().skip(1) {
        for i in (0..grads.len()).step_by(stride(grads.len())) {
            let set = |m: &mut dyn Module, v: Option<f32>| -> f32 {
                let mut old = 0.0;
                m.visit_mut("", &mut |n, p| {
                    if n == name {
                        let s = p.value.as_slice_mut().expect("standard layout");
                        old = s[i];
                        if let Some(v) = v {
                            s[i] = v;
                        }
                    }
                });
                old
            };
            let orig = set(module, None);
            set(module, Some(orig + h));
            let up = loss(module, x)?;
            set(module, Some(orig - h));
            let down = loss(module, x)?;
            set(module, Some(orig));
            note(name, i, grads[i], (up - down) / (2.0 * h as f64));
        }
    }
    Ok(report)
}
