//! Optimisers as plain step functions over named parameters and explicit state, and
//! learning-rate schedules.
//!
//! [`step`] reads each trainable parameter's gradient and updates the value and that
//! parameter's slots in [`OptState`] (momentum, first and second moments, step count).
//! The state is data: [`crate::checkpoint`] saves and restores it, so a resumed run takes
//! the same steps as an uninterrupted one. Learning rates are set per parameter group by
//! name prefix ([`LrGroups`]), which is how discriminative rates, freezing (factor 0) and
//! gradual unfreezing are expressed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    Error, Result,
    module::{Module, ParamKind, Tensor},
};

/// The update rule, with PyTorch's semantics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
#[non_exhaustive]
pub enum Optimizer {
    /// SGD with (optionally Nesterov) momentum; L2 weight decay added to the gradient.
    Sgd {
        #[serde(default)]
        momentum: f32,
        #[serde(default)]
        nesterov: bool,
        #[serde(default)]
        weight_decay: f32,
    },
    /// Adam; weight decay as an L2 term in the gradient.
    Adam {
        #[serde(default = "beta1")]
        beta1: f32,
        #[serde(default = "beta2")]
        beta2: f32,
        #[serde(default = "adam_eps")]
        eps: f32,
        #[serde(default)]
        weight_decay: f32,
    },
    /// AdamW: Adam with decoupled weight decay.
    AdamW {
        #[serde(default = "beta1")]
        beta1: f32,
        #[serde(default = "beta2")]
        beta2: f32,
        #[serde(default = "adam_eps")]
        eps: f32,
        #[serde(default = "adamw_decay")]
        weight_decay: f32,
    },
}

fn beta1() -> f32 {
    0.9
}
fn beta2() -> f32 {
    0.999
}
fn adam_eps() -> f32 {
    1e-8
}
fn adamw_decay() -> f32 {
    0.01
}

impl Default for Optimizer {
    fn default() -> Self {
        Optimizer::AdamW {
            beta1: beta1(),
            beta2: beta2(),
            eps: adam_eps(),
            weight_decay: adamw_decay(),
        }
    }
}

impl Optimizer {
    /// Adam with PyTorch's defaults.
    /// The optimiser named `sgd`, `adam` or `adamw`, with PyTorch's defaults (SGD with
    /// Nesterov momentum 0.9; AdamW with its own weight decay, 0.01).
    pub fn named(name: &str) -> tl_core::Result<Self> {
        match name {
            "sgd" => Ok(Optimizer::Sgd {
                momentum: 0.9,
                nesterov: true,
                weight_decay: 0.0,
            }),
            "adam" => Ok(Optimizer::adam()),
            "adamw" => Ok(Optimizer::default()),
            _ => Err(tl_core::Error::Parse {
                what: "optimizer",
                value: name.to_string(),
                reason: "expected one of sgd, adam, adamw".into(),
            }),
        }
    }

    pub fn adam() -> Self {
        Optimizer::Adam {
            beta1: beta1(),
            beta2: beta2(),
            eps: adam_eps(),
            weight_decay: 0.0,
        }
    }

    /// SGD with `momentum`.
    pub fn sgd(momentum: f32) -> Self {
        Optimizer::Sgd {
            momentum,
            nesterov: false,
            weight_decay: 0.0,
        }
    }

    /// The same rule with weight decay `wd`.
    #[must_use]
    pub fn with_weight_decay(mut self, wd: f32) -> Self {
        match &mut self {
            Optimizer::Sgd { weight_decay, .. }
            | Optimizer::Adam { weight_decay, .. }
            | Optimizer::AdamW { weight_decay, .. } => *weight_decay = wd,
        }
        self
    }

    /// Checks every setting once, before training.
    pub fn check(&self) -> Result<()> {
        let unit = |name: &str, v: f32| {
            if (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                Err(Error::invalid(name, format!("{v} is not in [0, 1)")))
            }
        };
        let nonneg = |name: &str, v: f32| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(Error::invalid(name, format!("{v} must be finite and ≥ 0")))
            }
        };
        match *self {
            Optimizer::Sgd {
                momentum,
                weight_decay,
                ..
            } => {
                unit("momentum", momentum)?;
                nonneg("weight decay", weight_decay)
            }
            Optimizer::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
            }
            | Optimizer::AdamW {
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                unit("beta1", beta1)?;
                unit("beta2", beta2)?;
                if !(eps > 0.0 && eps.is_finite()) {
                    return Err(Error::invalid("eps", format!("{eps} must be > 0")));
                }
                nonneg("weight decay", weight_decay)
            }
        }
    }
}

/// Per-parameter optimiser state: named slot tensors (`<param>/momentum`, `<param>/m`,
/// `<param>/v`) and each parameter's step count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OptState {
    pub slots: BTreeMap<String, Tensor>,
    pub steps: BTreeMap<String, u64>,
}

/// Learning-rate factors by parameter-name prefix; the longest matching prefix wins, a
/// parameter with no match gets 1, and factor 0 freezes (no update, no state).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LrGroups(pub Vec<(String, f32)>);

impl LrGroups {
    /// The factor for the parameter `name`.
    pub fn factor(&self, name: &str) -> f32 {
        self.0
            .iter()
            .filter(|(p, _)| name.starts_with(p.as_str()))
            .max_by_key(|(p, _)| p.len())
            .map_or(1.0, |(_, f)| *f)
    }
}

/// One optimisation step with base learning rate `lr` on every trainable parameter of
/// `module`, from the gradients in [`crate::Param::grad`].
pub fn step(
    opt: &Optimizer,
    state: &mut OptState,
    module: &mut dyn Module,
    lr: f32,
    groups: &LrGroups,
) {
    module.visit_mut("", &mut |name, p| {
        if p.kind == ParamKind::Buffer {
            return;
        }
        let lr = lr * groups.factor(name);
        if lr == 0.0 {
            return;
        }
        let t = state.steps.entry(name.to_string()).or_insert(0);
        *t += 1;
        let t = *t;
        let decay = p.kind == ParamKind::Weight;
        match *opt {
            Optimizer::Sgd {
                momentum,
                nesterov,
                weight_decay,
            } => {
                let wd = if decay { weight_decay } else { 0.0 };
                let mut g = p.grad.clone();
                if wd != 0.0 {
                    g.zip_mut_with(&p.value, |g, &w| *g += wd * w);
                }
                if momentum != 0.0 {
                    let key = format!("{name}/momentum");
                    let buf = state.slots.entry(key).or_insert_with(|| g.clone());
                    if t > 1 {
                        buf.zip_mut_with(&g, |b, &g| *b = momentum * *b + g);
                    }
                    if nesterov {
                        g.zip_mut_with(buf, |g, &b| *g += momentum * b);
                    } else {
                        g.assign(buf);
                    }
                }
                p.value.zip_mut_with(&g, |w, &g| *w -= lr * g);
            }
            Optimizer::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
            }
            | Optimizer::AdamW {
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                let decoupled = matches!(opt, Optimizer::AdamW { .. });
                let wd = if decay { weight_decay } else { 0.0 };
                let mut g = p.grad.clone();
                if wd != 0.0 {
                    if decoupled {
                        p.value.mapv_inplace(|w| w * (1.0 - lr * wd));
                    } else {
                        g.zip_mut_with(&p.value, |g, &w| *g += wd * w);
                    }
                }
                let shape = p.value.raw_dim();
                let m = state
                    .slots
                    .entry(format!("{name}/m"))
                    .or_insert_with(|| Tensor::zeros(shape.clone()));
                m.zip_mut_with(&g, |m, &g| *m = beta1 * *m + (1.0 - beta1) * g);
                let m = m.clone();
                let v = state
                    .slots
                    .entry(format!("{name}/v"))
                    .or_insert_with(|| Tensor::zeros(shape));
                v.zip_mut_with(&g, |v, &g| *v = beta2 * *v + (1.0 - beta2) * g * g);
                let bc1 = 1.0 - beta1.powi(t as i32);
                let bc2 = 1.0 - beta2.powi(t as i32);
                let step_size = lr / bc1;
                let bc2_sqrt = bc2.sqrt();
                ndarray::Zip::from(&mut p.value)
                    .and(&m)
                    .and(&*v)
                    .for_each(|w, &m, &v| *w -= step_size * m / (v.sqrt() / bc2_sqrt + eps));
            }
        }
    });
}

/// The shape of the learning rate over training.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Schedule {
    Constant,
    /// Cosine decay from the base rate to `min_factor` × base.
    Cosine {
        #[serde(default)]
        min_factor: f32,
    },
    /// PyTorch's `OneCycleLR` (cosine): from base/`div_factor` up to base over the first
    /// `pct_start` of the steps, then down to base/(`div_factor` × `final_div_factor`).
    OneCycle {
        #[serde(default = "pct_start")]
        pct_start: f32,
        #[serde(default = "div_factor")]
        div_factor: f32,
        #[serde(default = "final_div_factor")]
        final_div_factor: f32,
    },
}

fn pct_start() -> f32 {
    0.3
}
fn div_factor() -> f32 {
    25.0
}
fn final_div_factor() -> f32 {
    1e4
}

impl Schedule {
    /// PyTorch's `OneCycleLR` defaults: 30 % up, from base/25 to base/250,000.
    /// The schedule named `constant`, `cosine` (down to 0) or `one-cycle`, with defaults.
    pub fn named(name: &str) -> tl_core::Result<Self> {
        match name {
            "constant" => Ok(Schedule::Constant),
            "cosine" => Ok(Schedule::Cosine { min_factor: 0.0 }),
            "one-cycle" => Ok(Schedule::one_cycle()),
            _ => Err(tl_core::Error::Parse {
                what: "schedule",
                value: name.to_string(),
                reason: "expected one of constant, cosine, one-cycle".into(),
            }),
        }
    }

    pub fn one_cycle() -> Self {
        Schedule::OneCycle {
            pct_start: pct_start(),
            div_factor: div_factor(),
            final_div_factor: final_div_factor(),
        }
    }

    /// The factor on the base rate at `step` (0-based) of `total` steps, after a linear
    /// warm-up over the first `warmup` steps.
    pub fn factor(&self, step: usize, total: usize, warmup: usize) -> f32 {
        let cos = |from: f32, to: f32, frac: f32| {
            to + (from - to) * 0.5 * (1.0 + (std::f32::consts::PI * frac.clamp(0.0, 1.0)).cos())
        };
        let last = total.saturating_sub(1).max(1) as f32;
        let base = match *self {
            Schedule::Constant => 1.0,
            Schedule::Cosine { min_factor } => cos(1.0, min_factor, step as f32 / last),
            Schedule::OneCycle {
                pct_start,
                div_factor,
                final_div_factor,
            } => {
                let up = (pct_start * total as f32 - 1.0).max(1.0);
                let s = step as f32;
                if s <= up {
                    cos(1.0 / div_factor, 1.0, s / up)
                } else {
                    let down = (last - up).max(1.0);
                    cos(1.0, 1.0 / (div_factor * final_div_factor), (s - up) / down)
                }
            }
        };
        if step < warmup {
            base * (step + 1) as f32 / (warmup + 1) as f32
        } else {
            base
        }
    }

    pub fn check(&self) -> Result<()> {
        match *self {
            Schedule::Constant => Ok(()),
            Schedule::Cosine { min_factor } if (0.0..=1.0).contains(&min_factor) => Ok(()),
            Schedule::Cosine { min_factor } => Err(Error::invalid(
                "cosine min_factor",
                format!("{min_factor} is not in [0, 1]"),
            )),
            Schedule::OneCycle {
                pct_start,
                div_factor,
                final_div_factor,
            } => {
                if !(pct_start > 0.0 && pct_start < 1.0) {
                    return Err(Error::invalid(
                        "one-cycle pct_start",
                        format!("{pct_start} is not in (0, 1)"),
                    ));
                }
                if !(div_factor >= 1.0 && final_div_factor >= 1.0) {
                    return Err(Error::invalid("one-cycle div factors", "both must be ≥ 1"));
                }
                Ok(())
            }
        }
    }
}
