//! Parameters, the [`Module`] trait and [`Sequential`].
//!
//! A module owns its parameters and the values its backward pass needs. `forward` in
//! training mode keeps those values; `backward` takes the gradient of the loss with
//! respect to the module's output, adds the parameters' gradients into [`Param::grad`]
//! and returns the gradient with respect to the input. Parameters are reached by name
//! (`"0.weight"`, `"trunk.1.bias"`), which is what optimisers, checkpoints, freezing and
//! per-group learning rates work with.

use ndarray::ArrayD;
use rand_chacha::ChaCha8Rng;

use crate::{Error, Result};

/// The tensor type of `tl-nn`: f32, any rank, row-major.
pub type Tensor = ArrayD<f32>;

/// One trainable tensor with its accumulated gradient.
#[derive(Debug, Clone)]
pub struct Param {
    pub value: Tensor,
    pub grad: Tensor,
    pub kind: ParamKind,
}

/// What an optimiser does with a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// Trained, with weight decay (weight matrices, convolution kernels).
    Weight,
    /// Trained, without weight decay (biases, normalisation scales and shifts).
    NoDecay,
    /// Not trained by gradients but saved and restored (BatchNorm running statistics).
    Buffer,
}

impl Param {
    /// A parameter with a zero gradient.
    pub fn new(value: Tensor, kind: ParamKind) -> Self {
        let grad = Tensor::zeros(value.raw_dim());
        Self { value, grad, kind }
    }

    /// Whether an optimiser updates it.
    pub fn trainable(&self) -> bool {
        self.kind != ParamKind::Buffer
    }

    /// Sets the gradient to zero.
    pub fn zero_grad(&mut self) {
        self.grad.fill(0.0);
    }
}

/// Training or evaluation, and the random stream dropout draws from.
#[derive(Debug)]
pub struct Ctx {
    pub train: bool,
    pub rng: ChaCha8Rng,
}

impl Ctx {
    /// Training mode, drawing from `rng`.
    pub fn train(rng: ChaCha8Rng) -> Self {
        Self { train: true, rng }
    }

    /// Evaluation mode: no dropout, running statistics, nothing kept for backward.
    pub fn eval() -> Self {
        Self {
            train: false,
            rng: tl_core::rng::seeded_rng(0, "eval"),
        }
    }
}

/// A differentiable layer or network.
pub trait Module: Send + Sync + std::fmt::Debug {
    /// The output for `x`; in training mode, also keeps what `backward` needs.
    fn forward(&mut self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor>;

    /// [`Module::forward`] of an input the caller no longer needs: a layer that keeps its
    /// input for backward keeps this one instead of a copy. [`crate::Graph`] hands each
    /// value on this way to the last node that reads it.
    fn forward_owned(&mut self, x: Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        self.forward(&x, ctx)
    }

    /// Adds the parameters' gradients for `grad_out` (d loss / d output of the last
    /// training-mode forward) and returns d loss / d input.
    fn backward(&mut self, grad_out: &Tensor) -> Result<Tensor>;

    /// Calls `f` with the full name and the parameter, for every parameter, in a fixed order.
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Param));

    /// As [`Module::visit`], mutably.
    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param));

    /// A short description for summaries (`linear 1280→10`).
    fn describe(&self) -> String;

    /// Applies `act` to this layer's output in its own pass, forward and backward, if the
    /// layer can (`None` undoes it); returns whether it did. [`crate::Graph`] fuses an
    /// activation into the layer before it this way, saving a pass over the values and a
    /// copy of them. Layers that cannot keep the default.
    fn fuse_activation(&mut self, act: Option<crate::Act>) -> bool {
        let _ = act;
        false
    }

    /// Whether backward computes the gradient of the input (on by default); returns
    /// whether the layer can skip it. Off for a network's first layer when its input is
    /// data that needs no gradient (images): backward then returns zeros, and saves the
    /// work. Layers that cannot skip it keep the default.
    fn set_input_grad(&mut self, on: bool) -> bool {
        let _ = on;
        false
    }

    /// The activation this layer is, if it is only one.
    fn as_activation(&self) -> Option<crate::Act> {
        None
    }
}

/// `prefix.name`, or `name` at the top.
pub fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Helpers every module gets.
pub trait ModuleExt: Module {
    /// Sets every gradient to zero.
    fn zero_grad(&mut self) {
        self.visit_mut("", &mut |_, p| p.zero_grad());
    }

    /// Names and shapes of all parameters, in visiting order.
    fn param_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        self.visit("", &mut |n, p| {
            out.push((n.to_string(), p.value.shape().to_vec()))
        });
        out
    }

    /// Total number of scalar parameters.
    fn param_count(&self) -> usize {
        let mut n = 0;
        self.visit("", &mut |_, p| n += p.value.len());
        n
    }

    /// Forward in evaluation mode.
    fn predict(&mut self, x: &Tensor) -> Result<Tensor> {
        self.forward(x, &mut Ctx::eval())
    }
}

impl<M: Module + ?Sized> ModuleExt for M {}

/// Layers applied one after another; parameters are named `<index>.<param>` or by the
/// name given to [`Sequential::push_named`].
#[derive(Debug, Default)]
pub struct Sequential {
    layers: Vec<(String, Box<dyn Module>)>,
}

impl Sequential {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a layer named by its index.
    #[must_use]
    pub fn push(mut self, layer: impl Module + 'static) -> Self {
        let name = self.layers.len().to_string();
        self.layers.push((name, Box::new(layer)));
        self
    }

    /// Appends a layer under `name`.
    #[must_use]
    pub fn push_named(mut self, name: &str, layer: impl Module + 'static) -> Self {
        self.layers.push((name.to_string(), Box::new(layer)));
        self
    }

    /// Appends a boxed layer under `name`.
    pub fn push_boxed(&mut self, name: &str, layer: Box<dyn Module>) {
        self.layers.push((name.to_string(), layer));
    }

    pub fn len(&self) -> usize {
        self.layers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// The layers with their names.
    pub fn layers(&self) -> impl Iterator<Item = (&str, &dyn Module)> {
        self.layers.iter().map(|(n, l)| (n.as_str(), l.as_ref()))
    }
}

impl Module for Sequential {
    fn forward(&mut self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        self.forward_owned(x.clone(), ctx)
    }

    fn forward_owned(&mut self, x: Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let mut h = x;
        for (_, l) in &mut self.layers {
            h = l.forward_owned(h, ctx)?;
        }
        Ok(h)
    }

    fn backward(&mut self, grad_out: &Tensor) -> Result<Tensor> {
        let mut g = grad_out.clone();
        for (_, l) in self.layers.iter_mut().rev() {
            g = l.backward(&g)?;
        }
        Ok(g)
    }

    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Param)) {
        for (n, l) in &self.layers {
            l.visit(&join(prefix, n), f);
        }
    }

    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        for (n, l) in &mut self.layers {
            l.visit_mut(&join(prefix, n), f);
        }
    }

    fn describe(&self) -> String {
        let parts: Vec<String> = self.layers.iter().map(|(_, l)| l.describe()).collect();
        parts.join(" → ")
    }
}

/// The cached input of a layer, or the error `backward` gives without one.
pub(crate) fn cached<'a, T>(cache: &'a Option<T>, layer: &str) -> Result<&'a T> {
    cache
        .as_ref()
        .ok_or_else(|| Error::NoForward(layer.to_string()))
}
