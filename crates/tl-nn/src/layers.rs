//! Layers: linear, BatchNorm, activations, dropout, global average pooling and gradient
//! reversal (convolutions are in [`crate::conv`]).
//!
//! Weights follow ONNX and PyTorch layouts (`[out, in]` for linear layers), so imported
//! and exported weights need no transposition.

use std::sync::{
    Arc,
    atomic::{AtomicU32, Ordering},
};

use ndarray::{Array1, Array2, ArrayView2, Axis, Ix2};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::{
    Error, Result,
    kernels::{MatMut, MatRef, gemm},
    module::{Ctx, Module, Param, ParamKind, Tensor, cached, join},
};

fn as2<'a>(x: &'a Tensor, what: &str, width: Option<usize>) -> Result<ArrayView2<'a, f32>> {
    let v = x
        .view()
        .into_dimensionality::<Ix2>()
        .map_err(|_| Error::shape(what, "[batch, features]", x.shape()))?;
    if let Some(w) = width
        && v.ncols() != w
    {
        return Err(Error::shape(what, format!("[batch, {w}]"), x.shape()));
    }
    Ok(v)
}

/// A fully connected layer `y = x Wᵀ + b`.
#[derive(Debug)]
pub struct Linear {
    pub weight: Param,
    pub bias: Param,
    input: Option<Array2<f32>>,
}

impl Linear {
    /// PyTorch's default initialisation: weights and biases uniform in ±1/√inputs.
    pub fn new(inputs: usize, outputs: usize, rng: &mut ChaCha8Rng) -> Self {
        let bound = 1.0 / (inputs as f32).sqrt();
        let w = Array2::from_shape_fn((outputs, inputs), |_| rng.random_range(-bound..bound));
        let b = Array1::from_shape_fn(outputs, |_| rng.random_range(-bound..bound));
        Self::from_weights(w, b)
    }

    /// A layer with zero weights and biases (the linear probe's starting point).
    pub fn zeros(inputs: usize, outputs: usize) -> Self {
        Self::from_weights(Array2::zeros((outputs, inputs)), Array1::zeros(outputs))
    }

    /// A layer from `weight` `[out, in]` and `bias` `[out]`.
    pub fn from_weights(weight: Array2<f32>, bias: Array1<f32>) -> Self {
        Self {
            weight: Param::new(weight.into_dyn(), ParamKind::Weight),
            bias: Param::new(bias.into_dyn(), ParamKind::NoDecay),
            input: None,
        }
    }

    pub fn inputs(&self) -> usize {
        self.weight.value.shape()[1]
    }

    pub fn outputs(&self) -> usize {
        self.weight.value.shape()[0]
    }

    /// `Wᵀ`, `inputs × outputs`, without a copy.
    fn wt(&self) -> MatRef<'_> {
        let w = self.weight.value.as_slice().expect("standard layout");
        MatRef::row_major(w, self.outputs(), self.inputs()).t()
    }
}

impl Module for Linear {
    fn forward(&mut self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let x = as2(x, "linear input", Some(self.inputs()))?;
        let x = x.as_standard_layout();
        let (rows, outputs) = (x.nrows(), self.outputs());
        let bias = self.bias.value.as_slice().expect("standard layout");
        let mut y: Vec<f32> = (0..rows).flat_map(|_| bias.iter().copied()).collect();
        gemm(
            MatRef::row_major(x.as_slice().expect("standard layout"), rows, self.inputs()),
            self.wt(),
            MatMut::row_major(&mut y, rows, outputs),
            true,
        );
        let y = Array2::from_shape_vec((rows, outputs), y).expect("sizes");
        if ctx.train {
            self.input = Some(x.to_owned());
        }
        Ok(y.into_dyn())
    }

    fn backward(&mut self, grad_out: &Tensor) -> Result<Tensor> {
        let x = cached(&self.input, "linear")?;
        let g = as2(grad_out, "linear output gradient", Some(self.outputs()))?;
        let g = g.as_standard_layout();
        let (rows, inputs, outputs) = (g.nrows(), self.inputs(), self.outputs());
        let gs = g.as_slice().expect("standard layout");
        let xs = x.as_slice().expect("standard layout");
        gemm(
            MatRef::row_major(gs, rows, outputs).t(),
            MatRef::row_major(xs, rows, inputs),
            MatMut::row_major(
                self.weight.grad.as_slice_mut().expect("standard layout"),
                outputs,
                inputs,
            ),
            true,
        );
        self.bias.grad += &g.sum_axis(Axis(0)).into_dyn();
        let mut dx = vec![0.0f32; rows * inputs];
        gemm(
            MatRef::row_major(gs, rows, outputs),
            self.wt().t(),
            MatMut::row_major(&mut dx, rows, inputs),
            false,
        );
        Ok(Tensor::from_shape_vec(vec![rows, inputs], dx).expect("sizes"))
    }

    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Param)) {
        f(&join(prefix, "weight"), &self.weight);
        f(&join(prefix, "bias"), &self.bias);
    }

    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        f(&join(prefix, "weight"), &mut self.weight);
        f(&join(prefix, "bias"), &mut self.bias);
    }

    fn describe(&self) -> String {
        format!("linear {}→{}", self.inputs(), self.outputs())
    }
}

/// Elementwise activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Act {
    Relu,
    /// `min(max(x, 0), 6)`, as MobileNet and EfficientNet-Lite use.
    Relu6,
    /// The exact GELU, `x Φ(x)`.
    Gelu,
}

tl_core::named_enum!(Act, "activation", [Relu => "relu", Relu6 => "relu6", Gelu => "gelu"]);

/// An activation layer.
#[derive(Debug)]
pub struct Activation {
    pub act: Act,
    input: Option<Tensor>,
}

impl Activation {
    pub fn new(act: Act) -> Self {
        Self { act, input: None }
    }
}

const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// The error function, to about 1.2e-7 relative (Numerical Recipes' `erfc` Chebyshev fit).
pub fn erf(x: f32) -> f32 {
    let x = x as f64;
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    (if x >= 0.0 { 1.0 - r } else { r - 1.0 }) as f32
}

impl Act {
    /// The activation of one value.
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Act::Relu => x.max(0.0),
            Act::Relu6 => x.clamp(0.0, 6.0),
            Act::Gelu => 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2)),
        }
    }

    /// Its derivative at `x` (0 at the kinks, as PyTorch).
    pub fn derivative(self, x: f32) -> f32 {
        match self {
            Act::Relu => f32::from(x > 0.0),
            Act::Relu6 => f32::from(x > 0.0 && x < 6.0),
            Act::Gelu => {
                0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
                    + x * FRAC_1_SQRT_2PI * (-0.5 * x * x).exp()
            }
        }
    }
}

impl Module for Activation {
    fn forward(&mut self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let act = self.act;
        let x = x.as_standard_layout();
        let y = crate::kernels::map(x.as_slice().expect("standard layout"), |v| act.apply(v));
        let y = Tensor::from_shape_vec(x.shape(), y).expect("sizes");
        if ctx.train {
            // ReLU's and ReLU6's derivatives are read off the output as well as the input.
            self.input = Some(match act {
                Act::Relu | Act::Relu6 => y.clone(),
                Act::Gelu => x.into_owned(),
            });
        }
        Ok(y)
    }

    fn backward(&mut self, grad_out: &Tensor) -> Result<Tensor> {
        let kept = cached(&self.input, "activation")?;
        if kept.shape() != grad_out.shape() {
            return Err(Error::shape(
                "activation output gradient",
                format!("{:?}", kept.shape()),
                grad_out.shape(),
            ));
        }
        let act = self.act;
        let g = grad_out.as_standard_layout();
        let (gs, ks) = (
            g.as_slice().expect("standard layout"),
            kept.as_slice().expect("standard layout"),
        );
        let dx = match act {
            // y > 0 exactly where x > 0; 0 < y < 6 exactly where 0 < x < 6.
            Act::Relu => crate::kernels::zip_map(gs, ks, |g, y| if y > 0.0 { g } else { 0.0 }),
            Act::Relu6 => {
                crate::kernels::zip_map(gs, ks, |g, y| if y > 0.0 && y < 6.0 { g } else { 0.0 })
            }
            Act::Gelu => crate::kernels::zip_map(gs, ks, |g, x| g * act.derivative(x)),
        };
        Ok(Tensor::from_shape_vec(kept.shape(), dx).expect("sizes"))
    }

    fn visit(&self, _: &str, _: &mut dyn FnMut(&str, &Param)) {}
    fn visit_mut(&mut self, _: &str, _: &mut dyn FnMut(&str, &mut Param)) {}

    fn as_activation(&self) -> Option<Act> {
        Some(self.act)
    }

    fn describe(&self) -> String {
        format!("{:?}", self.act).to_lowercase()
    }
}

/// Inverted dropout: in training, zeroes each value with probability `p` and scales the
/// rest by 1/(1 − p); the identity in evaluation.
#[derive(Debug)]
pub struct Dropout {
    pub p: f32,
    mask: Option<Tensor>,
}

impl Dropout {
    pub fn new(p: f32) -> Result<Self> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::invalid("dropout", format!("{p} is not in [0, 1)")));
        }
        Ok(Self { p, mask: None })
    }
}

impl Module for Dropout {
    fn forward(&mut self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        if !ctx.train || self.p == 0.0 {
            self.mask = None;
            return Ok(x.clone());
        }
        let keep = 1.0 - self.p;
        let scale = 1.0 / keep;
        let rng = &mut ctx.rng;
        let mask = Tensor::from_shape_fn(x.raw_dim(), |_| {
            if rng.random::<f32>() < keep {
                scale
            } else {
                0.0
            }
        });
        let y = x * &mask;
        self.mask = Some(mask);
        Ok(y)
    }

    fn backward(&mut self, grad_out: &Tensor) -> Result<Tensor> {
        Ok(match &self.mask {
            Some(m) => grad_out * m,
            None => grad_out.clone(),
        })
    }

    fn visit(&self, _: &str, _: &mut dyn FnMut(&str, &Param)) {}
    fn visit_mut(&mut self, _: &str, _: &mut dyn FnMut(&str, &mut Param)) {}

    fn describe(&self) -> String {
        format!("dropout {}", self.p)
    }
}

/// BatchNorm over the channel axis 1 of `[N, C]` or `[N, C, H, W]` input. Training uses
/// the batch's statistics and updates the running ones (PyTorch's convention: biased
/// variance to normalise, unbiased for the running estimate); evaluation uses the running
/// statistics. `weight` and `bias` are trained; `running_mean` and `running_var` are
/// buffers.
#[derive(Debug)]
pub struct BatchNorm {
    pub weight: Param,
    pub bias: Param,
    pub running_mean: Param,
    pub running_var: Param,
    pub eps: f32,
    pub momentum: f32,
    /// Keep the running statistics fixed in training too (a frozen BatchNorm).
    pub use_running_stats: bool,
    /// An activation applied to the output in the same pass (set by
    /// [`crate::Graph`] when an activation layer follows; see [`Module::fuse_activation`]).
    act: Option<Act>,
    cache: Option<BnCache>,
}

#[derive(Debug)]
struct BnCache {
    xhat: Tensor,
    inv_std: Array1<f32>,
}

impl BatchNorm {
    /// From ONNX `BatchNormalization` inputs (scale, bias, mean, var) and epsilon.
    pub fn from_stats(
        scale: Array1<f32>,
        bias: Array1<f32>,
        mean: Array1<f32>,
        var: Array1<f32>,
        eps: f32,
        momentum: f32,
    ) -> Result<Self> {
        let c = scale.len();
        if bias.len() != c || mean.len() != c || var.len() != c {
            return Err(Error::shape(
                "batch norm statistics",
                format!("four vectors of {c} channels"),
                &[bias.len(), mean.len(), var.len()],
            ));
        }
        Ok(Self {
            weight: Param::new(scale.into_dyn(), ParamKind::NoDecay),
            bias: Param::new(bias.into_dyn(), ParamKind::NoDecay),
            running_mean: Param::new(mean.into_dyn(), ParamKind::Buffer),
            running_var: Param::new(var.into_dyn(), ParamKind::Buffer),
            eps,
            momentum,
            use_running_stats: false,
            act: None,
            cache: None,
        })
    }

    /// A fresh layer: scale 1, shift 0, running mean 0 and variance 1.
    pub fn new(channels: usize) -> Self {
        Self::from_stats(
            Array1::ones(channels),
            Array1::zeros(channels),
            Array1::zeros(channels),
            Array1::ones(channels),
            1e-5,
            0.1,
        )
        .expect("equal lengths")
    }

    pub fn channels(&self) -> usize {
        self.weight.value.len()
    }
}

/// `(N, C, S)` of `[N, C]` or `[N, C, H, W]` input.
fn ncs(shape: &[usize], c: usize, what: &str) -> Result<(usize, usize, usize)> {
    if shape.len() < 2 || shape[1] != c {
        return Err(Error::shape(what, format!("[batch, {c}, ...]"), shape));
    }
    Ok((shape[0], c, shape[2..].iter().product()))
}

/// Per channel of `[N, C, S]` values: `f` of the channel's N planes of S values, in
/// parallel over channels.
fn per_channel<T: Send>(
    x: &[f32],
    (n, c, s): (usize, usize, usize),
    f: impl Fn(usize, &mut dyn Iterator<Item = &[f32]>) -> T + Sync,
) -> Vec<T> {
    (0..c)
        .into_par_iter()
        .map(|ch| {
            f(
                ch,
                &mut (0..n).map(|i| &x[(i * c + ch) * s..(i * c + ch + 1) * s]),
            )
        })
        .collect()
}

/// An activation as a type, so that loops over values are compiled once per activation
/// with the function inlined: `apply` and `through(g, z)`, the gradient `g` at the output
/// carried back to the input `z`.
trait Pointwise: Copy + Send + Sync {
    fn apply(self, v: f32) -> f32;
    fn through(self, g: f32, z: f32) -> f32;
}

#[derive(Clone, Copy)]
struct Identity;
#[derive(Clone, Copy)]
struct ReluFn;
#[derive(Clone, Copy)]
struct Relu6Fn;
#[derive(Clone, Copy)]
struct GeluFn;

impl Pointwise for Identity {
    #[inline(always)]
    fn apply(self, v: f32) -> f32 {
        v
    }
    #[inline(always)]
    fn through(self, g: f32, _: f32) -> f32 {
        g
    }
}

impl Pointwise for ReluFn {
    #[inline(always)]
    fn apply(self, v: f32) -> f32 {
        v.max(0.0)
    }
    #[inline(always)]
    fn through(self, g: f32, z: f32) -> f32 {
        if z > 0.0 { g } else { 0.0 }
    }
}

impl Pointwise for Relu6Fn {
    #[inline(always)]
    fn apply(self, v: f32) -> f32 {
        v.clamp(0.0, 6.0)
    }
    #[inline(always)]
    fn through(self, g: f32, z: f32) -> f32 {
        if z > 0.0 && z < 6.0 { g } else { 0.0 }
    }
}

impl Pointwise for GeluFn {
    #[inline(always)]
    fn apply(self, v: f32) -> f32 {
        Act::Gelu.apply(v)
    }
    #[inline(always)]
    fn through(self, g: f32, z: f32) -> f32 {
        g * Act::Gelu.derivative(z)
    }
}

/// BatchNorm's normalisation pass: `y = act(x̂·γ + β)` with `x̂ = (x − mean)·inv_std`,
/// keeping `x̂` when asked, in parallel over samples.
struct Normalise<'a> {
    mean: &'a [f32],
    inv_std: &'a [f32],
    gamma: &'a [f32],
    beta: &'a [f32],
    /// Values per channel plane.
    sp: usize,
}

/// One channel plane of [`Normalise::run`]: `y = act((x − m)·is·γ + β)`, keeping `x̂`
/// when given; compiled for each instruction set (rayon's closures are not, so the loop
/// lives here).
#[multiversion::multiversion(targets = "simd")]
#[allow(clippy::too_many_arguments)]
fn normalise_plane(
    (m, is, gg, bb): (f32, f32, f32, f32),
    yr: &mut [f32],
    xr: &[f32],
    hr: Option<&mut [f32]>,
    act: impl Pointwise,
) {
    match hr {
        Some(h) => {
            for ((yv, hv), &xv) in yr.iter_mut().zip(h).zip(xr) {
                *hv = (xv - m) * is;
                *yv = act.apply(*hv * gg + bb);
            }
        }
        None => {
            for (yv, &xv) in yr.iter_mut().zip(xr) {
                *yv = act.apply((xv - m) * is * gg + bb);
            }
        }
    }
}

impl Normalise<'_> {
    fn run(&self, xs: &[f32], y: &mut [f32], hat: Option<&mut [f32]>, act: impl Pointwise) {
        let (c, sp) = (self.mean.len(), self.sp);
        let per = (c * sp).max(1);
        let k = |ch: usize| {
            (
                self.mean[ch],
                self.inv_std[ch],
                self.gamma[ch],
                self.beta[ch],
            )
        };
        match hat {
            Some(hat) => y
                .par_chunks_mut(per)
                .zip(xs.par_chunks(per))
                .zip(hat.par_chunks_mut(per))
                .for_each(|((yi, xi), hi)| {
                    for (ch, ((yr, xr), hr)) in yi
                        .chunks_mut(sp.max(1))
                        .zip(xi.chunks(sp.max(1)))
                        .zip(hi.chunks_mut(sp.max(1)))
                        .enumerate()
                    {
                        normalise_plane(k(ch), yr, xr, Some(hr), act);
                    }
                }),
            None => y
                .par_chunks_mut(per)
                .zip(xs.par_chunks(per))
                .for_each(|(yi, xi)| {
                    for (ch, (yr, xr)) in yi
                        .chunks_mut(sp.max(1))
                        .zip(xi.chunks(sp.max(1)))
                        .enumerate()
                    {
                        normalise_plane(k(ch), yr, xr, None, act);
                    }
                }),
        }
    }
}

/// BatchNorm's backward pass through a fused activation whose derivative `through(g, z)`
/// gives the gradient at the normalised output `z`.
struct BnBackward<'a> {
    gs: &'a [f32],
    xh: &'a [f32],
    gamma: &'a [f32],
    beta: &'a [f32],
    /// `γ · inv_std` per channel.
    k: &'a [f32],
    dims: (usize, usize, usize),
    count: f32,
    batch_stats: bool,
}

/// `(Σ t, Σ t·x̂)` over one plane, `t` the gradient through the activation at
/// `z = x̂·γ + β`; compiled for each instruction set.
#[multiversion::multiversion(targets = "simd")]
fn bn_plane_sums(g: &[f32], h: &[f32], (gg, bb): (f32, f32), act: impl Pointwise) -> (f64, f64) {
    crate::kernels::sum_and_dot(g, h, |gv, hv| act.through(gv, hv * gg + bb))
}

/// One plane of BatchNorm's input gradient, `k·(t − mean t − x̂·mean(t·x̂))`; compiled for
/// each instruction set.
#[multiversion::multiversion(targets = "simd")]
fn bn_plane_dx(
    d: &mut [f32],
    g: &[f32],
    h: &[f32],
    (kk, gg, bb, mb, mg): (f32, f32, f32, f32, f32),
    act: impl Pointwise,
) {
    for ((d, &g), &h) in d.iter_mut().zip(g).zip(h) {
        *d = kk * (act.through(g, h * gg + bb) - mb - h * mg);
    }
}

impl BnBackward<'_> {
    /// `dx` and, per channel, `(Σ g, Σ g·x̂)` (the shift's and the scale's gradients).
    fn run(&self, act: impl Pointwise) -> (Vec<f32>, Vec<(f32, f32)>) {
        let (_, c, sp) = self.dims;
        let sums = per_channel(self.gs, self.dims, |ch, planes| {
            let (mut db, mut dg) = (0.0f64, 0.0f64);
            for (i, p) in planes.enumerate() {
                let h = &self.xh[(i * c + ch) * sp..(i * c + ch + 1) * sp];
                let (a, b) = bn_plane_sums(p, h, (self.gamma[ch], self.beta[ch]), act);
                db += a;
                dg += b;
            }
            (db as f32, dg as f32)
        });
        let per = (c * sp).max(1);
        let mut dx = vec![0.0f32; self.gs.len()];
        dx.par_chunks_mut(per)
            .zip(self.gs.par_chunks(per))
            .zip(self.xh.par_chunks(per))
            .for_each(|((di, gi), hi)| {
                for (ch, &(sb, sg)) in sums.iter().enumerate() {
                    let r = ch * sp..(ch + 1) * sp;
                    let (mb, mg) = if self.batch_stats {
                        (sb / self.count, sg / self.count)
                    } else {
                        (0.0, 0.0)
                    };
                    let k = (self.k[ch], self.gamma[ch], self.beta[ch], mb, mg);
                    bn_plane_dx(&mut di[r.clone()], &gi[r.clone()], &hi[r], k, act);
                }
            });
        (dx, sums)
    }
}

impl Module for BatchNorm {
    fn forward(&mut self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let c = self.channels();
        let dims = ncs(x.shape(), c, "batch norm input")?;
        let (n, _, sp) = dims;
        let x = x.as_standard_layout();
        let xs = x.as_slice().expect("standard layout");
        let count = (n * sp) as f64;
        let batch_stats = ctx.train && !self.use_running_stats;
        let (mean, var): (Vec<f32>, Vec<f32>) = if batch_stats {
            if count < 2.0 {
                return Err(Error::shape(
                    "batch norm input in training",
                    "more than one value per channel",
                    x.shape(),
                ));
            }
            // Two passes per channel, in lanes of f32 added in f64 (`kernels::sum_by`).
            let stats = per_channel(xs, dims, |_, planes| {
                let planes: Vec<&[f32]> = planes.collect();
                let m = planes
                    .iter()
                    .map(|p| crate::kernels::sum_by(p, |a| a))
                    .sum::<f64>()
                    / count;
                let mf = m as f32;
                let q = planes
                    .iter()
                    .map(|p| crate::kernels::sum_by(p, |a| (a - mf) * (a - mf)))
                    .sum::<f64>()
                    / count;
                (mf, q as f32)
            });
            let (mean, var): (Vec<f32>, Vec<f32>) = stats.into_iter().unzip();
            let unbias = (count / (count - 1.0)) as f32;
            let mo = self.momentum;
            for (r, &m) in self.running_mean.value.iter_mut().zip(&mean) {
                *r = (1.0 - mo) * *r + mo * m;
            }
            for (r, &q) in self.running_var.value.iter_mut().zip(&var) {
                *r = (1.0 - mo) * *r + mo * q * unbias;
            }
            (mean, var)
        } else {
            (
                self.running_mean.value.iter().copied().collect(),
                self.running_var.value.iter().copied().collect(),
            )
        };
        let inv_std: Vec<f32> = var.iter().map(|q| 1.0 / (q + self.eps).sqrt()).collect();
        let (g, b) = (
            self.weight.value.as_slice().expect("contiguous"),
            self.bias.value.as_slice().expect("contiguous"),
        );
        let mut y = vec![0.0f32; xs.len()];
        let mut xhat = if ctx.train {
            vec![0.0f32; xs.len()]
        } else {
            Vec::new()
        };
        let norm = Normalise {
            mean: &mean,
            inv_std: &inv_std,
            gamma: g,
            beta: b,
            sp,
        };
        let hat = ctx.train.then_some(&mut xhat[..]);
        match self.act {
            None => norm.run(xs, &mut y, hat, Identity),
            Some(Act::Relu) => norm.run(xs, &mut y, hat, ReluFn),
            Some(Act::Relu6) => norm.run(xs, &mut y, hat, Relu6Fn),
            Some(Act::Gelu) => norm.run(xs, &mut y, hat, GeluFn),
        }
        let keep = ctx.train;
        self.cache = keep.then(|| BnCache {
            xhat: Tensor::from_shape_vec(x.shape().to_vec(), xhat).expect("sizes"),
            inv_std: Array1::from_vec(inv_std),
        });
        Ok(Tensor::from_shape_vec(x.shape().to_vec(), y).expect("sizes"))
    }

    fn backward(&mut self, grad_out: &Tensor) -> Result<Tensor> {
        let c = self.channels();
        let cache = cached(&self.cache, "batch norm")?;
        if grad_out.shape() != cache.xhat.shape() {
            return Err(Error::shape(
                "batch norm output gradient",
                format!("{:?}", cache.xhat.shape()),
                grad_out.shape(),
            ));
        }
        let dims = ncs(grad_out.shape(), c, "batch norm output gradient")?;
        let (_, _, sp) = dims;
        let g = grad_out.as_standard_layout();
        let gs = g.as_slice().expect("standard layout");
        let xh = cache.xhat.as_slice().expect("standard layout");
        let count = (dims.0 * sp) as f32;
        let (gamma, beta) = (
            self.weight.value.as_slice().expect("contiguous"),
            self.bias.value.as_slice().expect("contiguous"),
        );
        let k: Vec<f32> = (0..c)
            .map(|ch| self.weight.value[[ch]] * cache.inv_std[ch])
            .collect();
        let pass = BnBackward {
            gs,
            xh,
            gamma,
            beta,
            k: &k,
            dims,
            count,
            batch_stats: !self.use_running_stats,
        };
        // The gradient at the normalised output `z = x̂·γ + β`, through the fused activation.
        let (dx, sums) = match self.act {
            None => pass.run(Identity),
            Some(Act::Relu) => pass.run(ReluFn),
            Some(Act::Relu6) => pass.run(Relu6Fn),
            Some(Act::Gelu) => pass.run(GeluFn),
        };
        for (ch, &(db, dg)) in sums.iter().enumerate() {
            self.bias.grad[[ch]] += db;
            self.weight.grad[[ch]] += dg;
        }
        Ok(Tensor::from_shape_vec(grad_out.shape().to_vec(), dx).expect("sizes"))
    }

    fn fuse_activation(&mut self, act: Option<Act>) -> bool {
        self.act = act;
        true
    }

    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Param)) {
        f(&join(prefix, "weight"), &self.weight);
        f(&join(prefix, "bias"), &self.bias);
        f(&join(prefix, "running_mean"), &self.running_mean);
        f(&join(prefix, "running_var"), &self.running_var);
    }

    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        f(&join(prefix, "weight"), &mut self.weight);
        f(&join(prefix, "bias"), &mut self.bias);
        f(&join(prefix, "running_mean"), &mut self.running_mean);
        f(&join(prefix, "running_var"), &mut self.running_var);
    }

    fn describe(&self) -> String {
        format!("batchnorm {}", self.channels())
    }
}

/// Global average pooling: `[N, C, H, W]` → `[N, C]`.
#[derive(Debug, Default)]
pub struct GlobalAvgPool {
    shape: Option<[usize; 4]>,
}

impl GlobalAvgPool {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Module for GlobalAvgPool {
    fn forward(&mut self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let s = x.shape();
        if s.len() != 4 {
            return Err(Error::shape(
                "global average pool input",
                "[batch, channels, height, width]",
                s,
            ));
        }
        let (n, c, h, w) = (s[0], s[1], s[2], s[3]);
        let v = x.as_standard_layout();
        let v = v
            .view()
            .into_shape_with_order((n, c, h * w))
            .expect("standard layout");
        let y = v
            .mapv(|a| a as f64)
            .sum_axis(Axis(2))
            .mapv(|a| (a / (h * w) as f64) as f32);
        if ctx.train {
            self.shape = Some([n, c, h, w]);
        }
        Ok(y.into_dyn())
    }

    fn backward(&mut self, grad_out: &Tensor) -> Result<Tensor> {
        let [n, c, h, w] = *cached(&self.shape, "global average pool")?;
        let g = as2(grad_out, "global average pool output gradient", Some(c))?;
        let scale = 1.0 / (h * w) as f32;
        Ok(
            ndarray::Array4::from_shape_fn((n, c, h, w), |(i, j, _, _)| g[[i, j]] * scale)
                .into_dyn(),
        )
    }

    fn visit(&self, _: &str, _: &mut dyn FnMut(&str, &Param)) {}
    fn visit_mut(&mut self, _: &str, _: &mut dyn FnMut(&str, &mut Param)) {}

    fn describe(&self) -> String {
        "global-avg-pool".into()
    }
}

/// The gradient-reversal layer of DANN: the identity forward, −λ × the gradient backward.
/// λ is shared through a [`GrlHandle`] so a trainer can ramp it during training.
#[derive(Debug)]
pub struct GradReverse {
    lambda: Arc<AtomicU32>,
}

/// Sets the λ of a [`GradReverse`] layer from outside the network.
#[derive(Debug, Clone)]
pub struct GrlHandle(Arc<AtomicU32>);

impl GrlHandle {
    pub fn set(&self, lambda: f32) {
        self.0.store(lambda.to_bits(), Ordering::Relaxed);
    }

    pub fn get(&self) -> f32 {
        f32::from_bits(self.0.load(Ordering::Relaxed))
    }
}

impl GradReverse {
    pub fn new(lambda: f32) -> (Self, GrlHandle) {
        let cell = Arc::new(AtomicU32::new(lambda.to_bits()));
        (
            Self {
                lambda: cell.clone(),
            },
            GrlHandle(cell),
        )
    }
}

impl Module for GradReverse {
    fn forward(&mut self, x: &Tensor, _: &mut Ctx) -> Result<Tensor> {
        Ok(x.clone())
    }

    fn backward(&mut self, grad_out: &Tensor) -> Result<Tensor> {
        let l = f32::from_bits(self.lambda.load(Ordering::Relaxed));
        Ok(grad_out.mapv(|g| -l * g))
    }

    fn visit(&self, _: &str, _: &mut dyn FnMut(&str, &Param)) {}
    fn visit_mut(&mut self, _: &str, _: &mut dyn FnMut(&str, &mut Param)) {}

    fn describe(&self) -> String {
        "grad-reverse".into()
    }
}
