//! Head networks: a shared trunk and one classifier per task.
//!
//! [`HeadNet`] is one [`Module`] whose output is every task's logits side by side
//! (`[batch, Σ classes]`), so the one optimiser and checkpoint code serve single-task
//! heads, multi-task heads and fine-tuned backbone layers alike. Parameter names:
//! `trunk.<layer>.<param>` and `heads.<task>.<layer>.<param>`; layers imported from a
//! pretrained ONNX backbone live under `trunk.backbone…`.

use ndarray::{Axis, s};
use serde::{Deserialize, Serialize};
use tl_nn::{Act, Activation, Ctx, Dropout, Linear, Module, Param, Sequential, Tensor};

use crate::{Error, Result};

/// A task a head predicts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub name: String,
    pub classes: Vec<String>,
    /// The task's weight in the summed loss.
    #[serde(default = "one")]
    pub weight: f32,
}

fn one() -> f32 {
    1.0
}

/// The architecture of a head, as saved in `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadSpec {
    /// `linear` (no trunk) or `mlp` (hidden layers shared by all tasks).
    pub kind: HeadKind,
    /// Widths of the hidden layers (mlp).
    #[serde(default)]
    pub hidden: Vec<usize>,
    #[serde(default = "relu")]
    pub activation: Act,
    #[serde(default)]
    pub dropout: f32,
}

fn relu() -> Act {
    Act::Relu
}

/// Which head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadKind {
    Linear,
    Mlp,
}

tl_core::named_enum!(HeadKind, "head", [Linear => "linear", Mlp => "mlp"]);

impl HeadSpec {
    /// A linear head.
    pub fn linear() -> Self {
        Self {
            kind: HeadKind::Linear,
            hidden: Vec::new(),
            activation: Act::Relu,
            dropout: 0.0,
        }
    }

    /// An MLP head with `hidden` widths.
    pub fn mlp(hidden: Vec<usize>) -> Self {
        Self {
            kind: HeadKind::Mlp,
            hidden,
            activation: Act::Relu,
            dropout: 0.0,
        }
    }

    pub fn check(&self) -> Result<()> {
        match self.kind {
            HeadKind::Linear if !self.hidden.is_empty() => Err(Error::setting(
                "head",
                "a linear head has no hidden layers (an mlp head has)",
            )),
            HeadKind::Mlp if self.hidden.is_empty() => Err(Error::setting(
                "head",
                "an mlp head needs at least one hidden width",
            )),
            _ if self.hidden.contains(&0) => {
                Err(Error::setting("hidden widths", "each must be ≥ 1"))
            }
            _ if !(0.0..1.0).contains(&self.dropout) => Err(Error::setting(
                "dropout",
                format!("{} is not in [0, 1)", self.dropout),
            )),
            _ => Ok(()),
        }
    }
}

/// A trunk shared by all tasks and one classifier per task.
#[derive(Debug)]
pub struct HeadNet {
    pub trunk: Sequential,
    pub heads: Vec<(String, Sequential)>,
    widths: Vec<usize>,
    input: Option<Vec<usize>>,
}

impl HeadNet {
    /// From parts; `widths` are the tasks' class counts.
    pub fn new(trunk: Sequential, heads: Vec<(String, Sequential)>, widths: Vec<usize>) -> Self {
        Self {
            trunk,
            heads,
            widths,
            input: None,
        }
    }

    /// The head `spec` on `inputs` features for `tasks`, initialised from `seed`.
    pub fn build(spec: &HeadSpec, inputs: usize, tasks: &[TaskSpec], seed: u64) -> Result<Self> {
        Self::build_on(spec, None, inputs, tasks, seed)
    }

    /// As [`HeadNet::build`], with pretrained `backbone` layers (named `trunk.backbone…`)
    /// first; `inputs` is then the backbone's output width.
    pub fn build_on(
        spec: &HeadSpec,
        backbone: Option<Box<dyn Module>>,
        inputs: usize,
        tasks: &[TaskSpec],
        seed: u64,
    ) -> Result<Self> {
        spec.check()?;
        if inputs == 0 {
            return Err(Error::data("features", "width 0"));
        }
        if tasks.is_empty() {
            return Err(Error::data("tasks", "a head needs at least one task"));
        }
        if let Some(t) = tasks.iter().find(|t| t.classes.len() < 2) {
            return Err(Error::data(
                "tasks",
                format!(
                    "task `{}` has {} class: need at least 2",
                    t.name,
                    t.classes.len()
                ),
            ));
        }
        let mut rng = tl_core::rng::seeded_rng(seed, "init");
        let mut trunk = Sequential::new();
        if let Some(b) = backbone {
            trunk.push_boxed("backbone", b);
        }
        let mut width = inputs;
        for (i, &h) in spec.hidden.iter().enumerate() {
            trunk.push_boxed(
                &format!("{}", 3 * i),
                Box::new(Linear::new(width, h, &mut rng)),
            );
            trunk.push_boxed(
                &format!("{}", 3 * i + 1),
                Box::new(Activation::new(spec.activation)),
            );
            trunk.push_boxed(
                &format!("{}", 3 * i + 2),
                Box::new(Dropout::new(spec.dropout)?),
            );
            width = h;
        }
        Ok(Self::with_trunk(trunk, width, tasks, &mut rng))
    }

    /// Classifiers for `tasks` on top of `trunk`, whose output has `width` features.
    pub fn with_trunk(
        trunk: Sequential,
        width: usize,
        tasks: &[TaskSpec],
        rng: &mut rand_chacha::ChaCha8Rng,
    ) -> Self {
        let heads = tasks
            .iter()
            .map(|t| {
                (
                    t.name.clone(),
                    Sequential::new().push(Linear::new(width, t.classes.len(), rng)),
                )
            })
            .collect();
        Self::new(
            trunk,
            heads,
            tasks.iter().map(|t| t.classes.len()).collect(),
        )
    }

    /// The column range of task `i` in the output.
    pub fn columns(&self, i: usize) -> std::ops::Range<usize> {
        let start: usize = self.widths[..i].iter().sum();
        start..start + self.widths[i]
    }

    pub fn tasks(&self) -> usize {
        self.heads.len()
    }
}

impl HeadNet {
    /// The trunk's output (the features the heads read) and all tasks' logits side by
    /// side: for losses on the features as well as on the logits (domain adaptation).
    pub fn forward_features(
        &mut self,
        x: &Tensor,
        ctx: &mut Ctx,
    ) -> tl_nn::Result<(Tensor, Tensor)> {
        let h = self.trunk.forward(x, ctx)?;
        let outs: Vec<Tensor> = self
            .heads
            .iter_mut()
            .map(|(_, head)| head.forward(&h, ctx))
            .collect::<tl_nn::Result<_>>()?;
        if ctx.train {
            self.input = Some(h.shape().to_vec());
        }
        let views: Vec<_> = outs
            .iter()
            .map(|o| {
                o.view()
                    .into_dimensionality::<ndarray::Ix2>()
                    .expect("2-D logits")
            })
            .collect();
        let logits = ndarray::concatenate(Axis(1), &views)
            .expect("same batch")
            .into_dyn();
        Ok((h, logits))
    }

    /// The backward pass of [`HeadNet::forward_features`]: the logits' gradient, plus a
    /// gradient with respect to the trunk's output from a loss on the features.
    pub fn backward_features(
        &mut self,
        grad_logits: &Tensor,
        grad_features: Option<&Tensor>,
    ) -> tl_nn::Result<Tensor> {
        let shape = self
            .input
            .clone()
            .ok_or_else(|| tl_nn::Error::NoForward("head network".into()))?;
        let g = grad_logits
            .view()
            .into_dimensionality::<ndarray::Ix2>()
            .expect("2-D gradient");
        let mut gh = match grad_features {
            Some(extra) if extra.shape() == shape.as_slice() => extra.clone(),
            Some(extra) => {
                return Err(tl_nn::Error::Shape {
                    what: "gradient of the head network's features".into(),
                    expected: format!("{shape:?}"),
                    got: extra.shape().to_vec(),
                });
            }
            None => Tensor::zeros(shape),
        };
        for i in 0..self.heads.len() {
            let cols = self.columns(i);
            let gi = g.slice(s![.., cols]).to_owned().into_dyn();
            gh += &self.heads[i].1.backward(&gi)?;
        }
        self.trunk.backward(&gh)
    }
}

impl Module for HeadNet {
    fn forward(&mut self, x: &Tensor, ctx: &mut Ctx) -> tl_nn::Result<Tensor> {
        Ok(self.forward_features(x, ctx)?.1)
    }

    fn backward(&mut self, grad_out: &Tensor) -> tl_nn::Result<Tensor> {
        self.backward_features(grad_out, None)
    }

    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Param)) {
        self.trunk.visit(&tl_nn::module::join(prefix, "trunk"), f);
        for (name, head) in &self.heads {
            head.visit(&tl_nn::module::join(prefix, &format!("heads.{name}")), f);
        }
    }

    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        self.trunk
            .visit_mut(&tl_nn::module::join(prefix, "trunk"), f);
        for (name, head) in &mut self.heads {
            head.visit_mut(&tl_nn::module::join(prefix, &format!("heads.{name}")), f);
        }
    }

    fn describe(&self) -> String {
        let heads: Vec<String> = self
            .heads
            .iter()
            .map(|(n, h)| format!("{n}: {}", h.describe()))
            .collect();
        if self.trunk.is_empty() {
            heads.join("; ")
        } else {
            format!("{} ⇒ {}", self.trunk.describe(), heads.join("; "))
        }
    }
}
