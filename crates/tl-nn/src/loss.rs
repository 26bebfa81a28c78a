//! Losses: each returns the loss and its gradient with respect to its input.

use ndarray::{Array2, Ix2};

use crate::{Error, Result, module::Tensor};

pub use tl_core::num::softmax;

/// Softmax cross-entropy with optional label smoothing and class weights. Rows without a
/// label (`None`) add nothing, which is how a multi-task batch carries rows that lack
/// some tasks' labels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CrossEntropy {
    /// ε: the target is (1 − ε) on the label plus ε spread evenly over all classes.
    pub label_smoothing: f32,
    /// A weight per class; the loss is the weighted mean over labelled rows.
    pub class_weights: Option<Vec<f32>>,
}

impl CrossEntropy {
    /// Checks the settings against `classes`.
    pub fn check(&self, classes: usize) -> Result<()> {
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return Err(Error::invalid(
                "label smoothing",
                format!("{} is not in [0, 1)", self.label_smoothing),
            ));
        }
        if let Some(w) = &self.class_weights {
            if w.len() != classes {
                return Err(Error::invalid(
                    "class weights",
                    format!("{} weights for {classes} classes", w.len()),
                ));
            }
            if w.iter().any(|&x| !(x.is_finite() && x >= 0.0)) {
                return Err(Error::invalid(
                    "class weights",
                    "weights must be finite and ≥ 0",
                ));
            }
        }
        Ok(())
    }

    /// The mean loss over labelled rows and its gradient with respect to `logits`.
    pub fn forward_backward(
        &self,
        logits: &Tensor,
        targets: &[Option<u32>],
    ) -> Result<(f32, Tensor)> {
        let z = logits.view().into_dimensionality::<Ix2>().map_err(|_| {
            Error::shape("cross-entropy logits", "[batch, classes]", logits.shape())
        })?;
        let (n, k) = z.dim();
        if targets.len() != n {
            return Err(Error::shape(
                "cross-entropy targets",
                format!("{n} targets, one per row of the logits"),
                &[targets.len()],
            ));
        }
        self.check(k)?;
        let p = softmax(z);
        let eps = self.label_smoothing;
        let mut grad = Array2::<f32>::zeros((n, k));
        let mut total = 0.0f64;
        let mut weight_sum = 0.0f64;
        for (i, t) in targets.iter().enumerate() {
            let Some(t) = *t else { continue };
            let t = t as usize;
            if t >= k {
                return Err(Error::invalid(
                    "label",
                    format!("row {i}: class {t} but only {k} classes"),
                ));
            }
            let w = self.class_weights.as_ref().map_or(1.0, |w| w[t]) as f64;
            weight_sum += w;
            let row = z.row(i);
            let lse = tl_core::num::log_sum_exp(row.iter().map(|&v| f64::from(v)));
            let mut li = 0.0;
            for c in 0..k {
                let q = eps as f64 / k as f64 + if c == t { 1.0 - eps as f64 } else { 0.0 };
                li -= q * (row[c] as f64 - lse);
                grad[[i, c]] = (w * (p[[i, c]] as f64 - q)) as f32;
            }
            total += w * li;
        }
        if weight_sum == 0.0 {
            return Ok((0.0, grad.into_dyn()));
        }
        grad.mapv_inplace(|g| (g as f64 / weight_sum) as f32);
        Ok(((total / weight_sum) as f32, grad.into_dyn()))
    }
}

/// Mean squared error `mean((x − y)²)` and its gradient with respect to `x`.
pub fn mse(x: &Tensor, y: &Tensor) -> Result<(f32, Tensor)> {
    if x.shape() != y.shape() {
        return Err(Error::shape(
            "mse target",
            format!("{:?}", x.shape()),
            y.shape(),
        ));
    }
    let n = x.len().max(1) as f64;
    let d = x - y;
    let loss = d.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / n;
    Ok((loss as f32, d.mapv(|v| (2.0 * v as f64 / n) as f32)))
}
