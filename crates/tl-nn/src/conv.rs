//! 2-D convolution over NCHW input: any kernel size, stride, explicit or `SAME_UPPER`
//! padding and group count, as ONNX `Conv` defines them.
//!
//! Two kernels, chosen by the group structure:
//! - **depthwise** (one input and one output channel per group, as in MobileNet and
//!   EfficientNet): direct loops over rows of the input plane, vectorisable, no copies;
//! - **pointwise** (1×1, stride 1, no padding): per group, one matrix product
//!   ([`crate::kernels::gemm()`]) over the whole batch, the `[n, c, h·w]` input read in place
//!   as a `c × (n·h·w)` matrix, forward and backward;
//! - **everything else**: per sample and group, `im2col` into a reused buffer and one
//!   matrix product, in parallel over the batch; the backward pass sums per-chunk partial
//!   weight gradients in chunk order.
//!
//! No result depends on the thread count. The input is the only thing kept for backward;
//! `im2col` is recomputed there.

use ndarray::{Array1, Ix4};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::{
    Error, Result,
    kernels::{Axis, MatMut, MatRef, gemm},
    module::{Ctx, Module, Param, ParamKind, Tensor, cached, join},
};

/// Samples per parallel chunk of the backward pass (partial gradients summed in order).
const CHUNK: usize = 4;

/// How a convolution pads its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// Zeros added at the top, left, bottom and right (ONNX `pads` = `[t, l, b, r]`).
    Explicit([usize; 4]),
    /// ONNX `auto_pad = SAME_UPPER`: the output has ⌈size / stride⌉ positions; an odd
    /// total padding puts the extra zero at the end.
    SameUpper,
}

impl Padding {
    /// Output size and leading (top, left) padding of a `kernel` window moved by `stride`
    /// over a `size` input, or `None` when the padded input is smaller than the window.
    /// Pooling windows follow the same rule.
    pub fn apply(
        &self,
        size: [usize; 2],
        kernel: [usize; 2],
        stride: [usize; 2],
    ) -> Option<([usize; 2], [usize; 2])> {
        let (same, p) = match *self {
            Padding::SameUpper => (true, [0; 4]),
            Padding::Explicit(p) => (false, p),
        };
        let (oh, pt) = axis(size[0], kernel[0], stride[0], (p[0], p[2]), same)?;
        let (ow, pl) = axis(size[1], kernel[1], stride[1], (p[1], p[3]), same)?;
        Some(([oh, ow], [pt, pl]))
    }
}

/// A convolution layer: weight `[out, in / group, kh, kw]`, bias `[out]` (ONNX and
/// PyTorch layout, so imported and exported weights need no transposition).
#[derive(Debug)]
pub struct Conv2d {
    pub weight: Param,
    pub bias: Param,
    pub stride: [usize; 2],
    pub padding: Padding,
    pub group: usize,
    /// Whether backward computes the input's gradient (off for a network's first layer,
    /// whose input is the data: see [`Module::set_input_grad`]); off, it returns zeros.
    input_grad: bool,
    input: Option<Tensor>,
}

/// The sizes of one convolution applied to one input size.
#[derive(Debug, Clone, Copy)]
struct Geom {
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    pt: usize,
    pl: usize,
    oh: usize,
    ow: usize,
    g: usize,
}

impl Geom {
    /// Input channels per group.
    fn cg(&self) -> usize {
        self.c / self.g
    }
    /// Output channels per group.
    fn og(&self) -> usize {
        self.o / self.g
    }
    /// Rows of one group's `im2col` matrix.
    fn k(&self) -> usize {
        self.cg() * self.kh * self.kw
    }
    fn depthwise(&self) -> bool {
        self.cg() == 1 && self.og() == 1
    }
    /// A 1×1 convolution that is a plain matrix product of the input.
    fn pointwise(&self) -> bool {
        self.kh == 1
            && self.kw == 1
            && self.oh == self.h
            && self.ow == self.w
            && self.sh == 1
            && self.sw == 1
            && self.pt == 0
            && self.pl == 0
    }
}

/// Output positions `lo..hi` along one axis whose input index `o·s + k − p` is inside
/// `0..size`.
fn valid_range(k: usize, p: usize, s: usize, size: usize, out: usize) -> (usize, usize) {
    let lo = if p > k { (p - k).div_ceil(s) } else { 0 }.min(out);
    let hi = if size + p > k {
        ((size - 1 + p - k) / s + 1).min(out)
    } else {
        0
    };
    (lo, hi.max(lo))
}

/// Output size and leading padding along one axis.
fn axis(
    size: usize,
    k: usize,
    s: usize,
    pad: (usize, usize),
    same: bool,
) -> Option<(usize, usize)> {
    if same {
        let out = size.div_ceil(s);
        let total = ((out - 1) * s + k).saturating_sub(size);
        Some((out, total / 2))
    } else {
        let padded = size + pad.0 + pad.1;
        (padded >= k).then(|| ((padded - k) / s + 1, pad.0))
    }
}

impl Conv2d {
    /// From weights `[out, in / group, kh, kw]` and a bias `[out]`.
    pub fn from_weights(
        weight: Tensor,
        bias: Array1<f32>,
        stride: [usize; 2],
        padding: Padding,
        group: usize,
    ) -> Result<Self> {
        let s = weight.shape().to_vec();
        let ok = s.len() == 4
            && group >= 1
            && s[0].is_multiple_of(group)
            && bias.len() == s[0]
            && s.iter().all(|&d| d > 0);
        if !ok {
            return Err(Error::shape(
                "convolution weight",
                format!(
                    "[out, in / group, kh, kw] with out divisible by the group count {group} and a bias [out] ({} values)",
                    bias.len()
                ),
                &s,
            ));
        }
        if stride.contains(&0) {
            return Err(Error::invalid("convolution stride", "must be ≥ 1"));
        }
        Ok(Self {
            weight: Param::new(weight.as_standard_layout().into_owned(), ParamKind::Weight),
            bias: Param::new(bias.into_dyn(), ParamKind::NoDecay),
            stride,
            padding,
            group,
            input_grad: true,
            input: None,
        })
    }

    /// A 1×1 convolution, stride 1, no padding, from `[out, in, 1, 1]` (or `[out, in]`).
    pub fn pointwise(weight: Tensor, bias: Array1<f32>) -> Result<Self> {
        let s = weight.shape().to_vec();
        let w = if s.len() == 2 {
            weight
                .into_shape_with_order((s[0], s[1], 1, 1))
                .expect("2-D")
                .into_dyn()
        } else {
            weight
        };
        Self::from_weights(w, bias, [1, 1], Padding::Explicit([0; 4]), 1)
    }

    /// PyTorch's default initialisation: uniform in ±1/√fan-in for weights and biases.
    pub fn init(
        inputs: usize,
        outputs: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: Padding,
        group: usize,
        rng: &mut ChaCha8Rng,
    ) -> Result<Self> {
        if group == 0 || !inputs.is_multiple_of(group) {
            return Err(Error::invalid(
                "convolution groups",
                format!("{inputs} input channels are not divisible into {group} groups"),
            ));
        }
        let fan_in = inputs / group * kernel[0] * kernel[1];
        let bound = 1.0 / (fan_in as f32).sqrt();
        let w = Tensor::from_shape_fn(vec![outputs, inputs / group, kernel[0], kernel[1]], |_| {
            rng.random_range(-bound..bound)
        });
        let b = Array1::from_shape_fn(outputs, |_| rng.random_range(-bound..bound));
        Self::from_weights(w, b, stride, padding, group)
    }

    pub fn inputs(&self) -> usize {
        self.weight.value.shape()[1] * self.group
    }

    pub fn outputs(&self) -> usize {
        self.weight.value.shape()[0]
    }

    pub fn kernel(&self) -> [usize; 2] {
        let s = self.weight.value.shape();
        [s[2], s[3]]
    }

    fn geom(&self, x: &[usize], what: &str) -> Result<Geom> {
        let expect = || format!("[batch, {}, height, width]", self.inputs());
        if x.len() != 4 || x[1] != self.inputs() {
            return Err(Error::shape(what, expect(), x));
        }
        let [kh, kw] = self.kernel();
        let [sh, sw] = self.stride;
        let Some(([oh, ow], [pt, pl])) = self.padding.apply([x[2], x[3]], [kh, kw], self.stride)
        else {
            return Err(Error::shape(
                what,
                format!("{} at least the {kh}×{kw} kernel once padded", expect()),
                x,
            ));
        };
        Ok(Geom {
            c: x[1],
            h: x[2],
            w: x[3],
            o: self.outputs(),
            kh,
            kw,
            sh,
            sw,
            pt,
            pl,
            oh,
            ow,
            g: self.group,
        })
    }
}

/// `col[(ci·kh + ky)·kw + kx, oy·ow + ox] = x[ci, oy·sh + ky − pt, ox·sw + kx − pl]` (0
/// outside), for `channels` planes of `x`.
fn im2col(x: &[f32], channels: usize, g: &Geom, col: &mut [f32]) {
    let (ohw, hw) = (g.oh * g.ow, g.h * g.w);
    for ci in 0..channels {
        let plane = &x[ci * hw..(ci + 1) * hw];
        for ky in 0..g.kh {
            let (ylo, yhi) = valid_range(ky, g.pt, g.sh, g.h, g.oh);
            for kx in 0..g.kw {
                let (xlo, xhi) = valid_range(kx, g.pl, g.sw, g.w, g.ow);
                let row = &mut col[((ci * g.kh + ky) * g.kw + kx) * ohw..][..ohw];
                row[..ylo * g.ow].fill(0.0);
                row[yhi * g.ow..].fill(0.0);
                for oy in ylo..yhi {
                    let src = &plane[(oy * g.sh + ky - g.pt) * g.w..][..g.w];
                    let dst = &mut row[oy * g.ow..(oy + 1) * g.ow];
                    dst[..xlo].fill(0.0);
                    dst[xhi..].fill(0.0);
                    for (ox, d) in dst[xlo..xhi].iter_mut().enumerate() {
                        *d = src[(xlo + ox) * g.sw + kx - g.pl];
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds `col` back into the `channels` planes of `dx`.
fn col2im(col: &[f32], channels: usize, g: &Geom, dx: &mut [f32]) {
    let (ohw, hw) = (g.oh * g.ow, g.h * g.w);
    for ci in 0..channels {
        let plane = &mut dx[ci * hw..(ci + 1) * hw];
        for ky in 0..g.kh {
            let (ylo, yhi) = valid_range(ky, g.pt, g.sh, g.h, g.oh);
            for kx in 0..g.kw {
                let (xlo, xhi) = valid_range(kx, g.pl, g.sw, g.w, g.ow);
                let row = &col[((ci * g.kh + ky) * g.kw + kx) * ohw..][..ohw];
                for oy in ylo..yhi {
                    let dst = &mut plane[(oy * g.sh + ky - g.pt) * g.w..][..g.w];
                    let src = &row[oy * g.ow..(oy + 1) * g.ow];
                    for (ox, &s) in src[xlo..xhi].iter().enumerate() {
                        dst[(xlo + ox) * g.sw + kx - g.pl] += s;
                    }
                }
            }
        }
    }
}

/// The output positions `lo..hi` each kernel row (`y`) and column (`x`) reaches inside the
/// input, computed once per layer call rather than per plane.
struct Taps {
    x: Vec<(usize, usize)>,
    y: Vec<(usize, usize)>,
}

impl Taps {
    fn of(g: &Geom) -> Self {
        Self {
            x: (0..g.kw)
                .map(|kx| valid_range(kx, g.pl, g.sw, g.w, g.ow))
                .collect(),
            y: (0..g.kh)
                .map(|ky| valid_range(ky, g.pt, g.sh, g.h, g.oh))
                .collect(),
        }
    }
}

/// Channels per block of the depthwise kernels: one AVX-512 register of `f32`.
const CB: usize = 16;

/// A block of [`CB`] channels, channel-minor.
type Block = Vec<[f32; CB]>;

/// One block of [`CB`] channels of one sample, `[hw][CB]` (channel-minor), from `[c][hw]`
/// planes; channels past `c` are zero.
fn to_blocked(x: &[f32], c: usize, c0: usize, hw: usize, out: &mut [[f32; CB]]) {
    let lanes = CB.min(c - c0);
    for (p, o) in out[..hw].iter_mut().enumerate() {
        for (l, v) in o.iter_mut().enumerate() {
            *v = if l < lanes { x[(c0 + l) * hw + p] } else { 0.0 };
        }
    }
}

/// The inverse of [`to_blocked`]: writes the block's real channels back to `[c][hw]`.
fn from_blocked(xb: &[[f32; CB]], c: usize, c0: usize, hw: usize, out: &mut [f32]) {
    for l in 0..CB.min(c - c0) {
        for (o, v) in out[(c0 + l) * hw..(c0 + l + 1) * hw].iter_mut().zip(xb) {
            *o = v[l];
        }
    }
}

/// One block of a depthwise forward pass: `y = b + Σ k[ky, kx] · x[oy·sh + ky − pt,
/// ox·sw + kx − pl]` over the positions inside the input (no padded copy), 16 channels at
/// once. Per element the taps are added in `(ky, kx)` order.
#[multiversion::multiversion(targets = "simd")]
fn dw_forward(
    x: &[[f32; CB]],
    k: &[[f32; CB]],
    b: &[f32; CB],
    g: &Geom,
    t: &Taps,
    y: &mut [[f32; CB]],
) {
    y.fill(*b);
    for ky in 0..g.kh {
        let (ylo, yhi) = t.y[ky];
        for oy in ylo..yhi {
            let iy = oy * g.sh + ky - g.pt;
            let yr = &mut y[oy * g.ow..(oy + 1) * g.ow];
            let xr = &x[iy * g.w..(iy + 1) * g.w];
            for kx in 0..g.kw {
                let (xlo, xhi) = t.x[kx];
                let wv = k[ky * g.kw + kx];
                for ox in xlo..xhi {
                    let (d, s) = (&mut yr[ox], &xr[ox * g.sw + kx - g.pl]);
                    for l in 0..CB {
                        d[l] += wv[l] * s[l];
                    }
                }
            }
        }
    }
}

/// One block of a depthwise backward pass: `dx` (overwritten), and the kernel and bias
/// gradients added into `dk` and `db` in `f64` (`f32` partial sums over one row each).
#[multiversion::multiversion(targets = "simd")]
#[allow(clippy::too_many_arguments)]
fn dw_backward(
    x: &[[f32; CB]],
    k: &[[f32; CB]],
    dy: &[[f32; CB]],
    g: &Geom,
    t: &Taps,
    dx: &mut [[f32; CB]],
    dk: &mut [[f64; CB]],
    db: &mut [f64; CB],
) {
    for row in dy.chunks(g.ow.max(1)) {
        let mut acc = [0.0f32; CB];
        for v in row {
            for l in 0..CB {
                acc[l] += v[l];
            }
        }
        for l in 0..CB {
            db[l] += acc[l] as f64;
        }
    }
    dx.fill([0.0; CB]);
    for ky in 0..g.kh {
        let (ylo, yhi) = t.y[ky];
        for oy in ylo..yhi {
            let iy = oy * g.sh + ky - g.pt;
            let gr = &dy[oy * g.ow..(oy + 1) * g.ow];
            let xr = &x[iy * g.w..(iy + 1) * g.w];
            let dr = &mut dx[iy * g.w..(iy + 1) * g.w];
            for kx in 0..g.kw {
                let (xlo, xhi) = t.x[kx];
                let tap = ky * g.kw + kx;
                let wv = k[tap];
                let mut acc = [0.0f32; CB];
                for (ox, gv) in gr.iter().enumerate().take(xhi).skip(xlo) {
                    let ix = ox * g.sw + kx - g.pl;
                    let (xv, d) = (&xr[ix], &mut dr[ix]);
                    for l in 0..CB {
                        d[l] += wv[l] * gv[l];
                        acc[l] += gv[l] * xv[l];
                    }
                }
                for l in 0..CB {
                    dk[tap][l] += acc[l] as f64;
                }
            }
        }
    }
}

impl Conv2d {
    /// One sample: `x` `[c, h, w]` → `y` `[o, oh, ow]`; `col` is scratch.
    fn forward_one(&self, x: &[f32], g: &Geom, y: &mut [f32], col: &mut Vec<f32>) {
        let w = self.weight.value.as_slice().expect("standard layout");
        let b = self.bias.value.as_slice().expect("standard layout");
        let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
        let (cg, og, k) = (g.cg(), g.og(), g.k());
        for gi in 0..g.g {
            col.resize(k * ohw, 0.0);
            im2col(&x[gi * cg * hw..(gi + 1) * cg * hw], cg, g, col);
            let yg = &mut y[gi * og * ohw..(gi + 1) * og * ohw];
            for (o, row) in yg.chunks_mut(ohw).enumerate() {
                row.fill(b[gi * og + o]);
            }
            gemm(
                MatRef::row_major(&w[gi * og * k..(gi + 1) * og * k], og, k),
                MatRef::row_major(col, k, ohw),
                MatMut::row_major(yg, og, ohw),
                true,
            );
        }
    }

    /// A pointwise convolution of the whole batch: per group, `Y = W·X + b` with `X` the
    /// `cg × (n·h·w)` matrix of the input planes.
    fn forward_pointwise(&self, xs: &[f32], g: &Geom, n: usize) -> Vec<f32> {
        let w = self.weight.value.as_slice().expect("standard layout");
        let b = self.bias.value.as_slice().expect("standard layout");
        let (hw, cg, og) = (g.h * g.w, g.cg(), g.og());
        let mut y = vec![0.0f32; n * g.o * hw];
        for (o, row) in y.chunks_mut(hw.max(1)).enumerate() {
            row.fill(b[o % g.o]);
        }
        for gi in 0..g.g {
            gemm(
                MatRef::row_major(&w[gi * og * cg..(gi + 1) * og * cg], og, cg),
                batch_planes(&xs[gi * cg * hw..], cg, n, hw, g.c),
                batch_planes_mut(&mut y[gi * og * hw..], og, n, hw, g.o),
                true,
            );
        }
        y
    }

    /// The pointwise backward pass over the whole batch: `dW += dY·Xᵀ`, `db += Σ dY`,
    /// `dX = Wᵀ·dY` (when the input needs a gradient).
    fn backward_pointwise(
        (weight, bias): (&mut Param, &mut Param),
        input_grad: bool,
        xs: &[f32],
        dys: &[f32],
        g: &Geom,
        n: usize,
    ) -> Vec<f32> {
        let (hw, cg, og) = (g.h * g.w, g.cg(), g.og());
        let w = weight.value.as_slice().expect("standard layout");
        let dw = weight.grad.as_slice_mut().expect("standard layout");
        let db = bias.grad.as_slice_mut().expect("standard layout");
        for (o, d) in db.iter_mut().enumerate() {
            let total: f64 = (0..n)
                .map(|s| crate::kernels::sum_by(&dys[(s * g.o + o) * hw..][..hw], |v| v))
                .sum();
            *d += total as f32;
        }
        let mut dx = vec![0.0f32; n * g.c * hw];
        for gi in 0..g.g {
            let dy = batch_planes(&dys[gi * og * hw..], og, n, hw, g.o);
            gemm(
                dy,
                batch_planes(&xs[gi * cg * hw..], cg, n, hw, g.c).t(),
                MatMut::row_major(&mut dw[gi * og * cg..(gi + 1) * og * cg], og, cg),
                true,
            );
            if input_grad {
                gemm(
                    MatRef::row_major(&w[gi * og * cg..(gi + 1) * og * cg], og, cg).t(),
                    dy,
                    batch_planes_mut(&mut dx[gi * cg * hw..], cg, n, hw, g.c),
                    false,
                );
            }
        }
        dx
    }

    /// One sample's backward: adds into `dx` `[c, h, w]`, `dw` and `db`.
    #[allow(clippy::too_many_arguments)]
    fn backward_one(
        &self,
        x: &[f32],
        dy: &[f32],
        g: &Geom,
        dx: &mut [f32],
        dw: &mut [f32],
        db: &mut [f32],
        col: &mut Vec<f32>,
    ) {
        let w = self.weight.value.as_slice().expect("standard layout");
        let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
        let (cg, og, k) = (g.cg(), g.og(), g.k());
        for gi in 0..g.g {
            let dyg = &dy[gi * og * ohw..(gi + 1) * og * ohw];
            for (o, row) in dyg.chunks(ohw).enumerate() {
                db[gi * og + o] += row.iter().map(|&v| v as f64).sum::<f64>() as f32;
            }
            let dyg = MatRef::row_major(dyg, og, ohw);
            let wg = MatRef::row_major(&w[gi * og * k..(gi + 1) * og * k], og, k);
            col.resize(k * ohw, 0.0);
            im2col(&x[gi * cg * hw..(gi + 1) * cg * hw], cg, g, col);
            let dwg = MatMut::row_major(&mut dw[gi * og * k..(gi + 1) * og * k], og, k);
            gemm(dyg, MatRef::row_major(col, k, ohw).t(), dwg, true);
            if self.input_grad {
                gemm(wg.t(), dyg, MatMut::row_major(col, k, ohw), false);
                col2im(col, cg, g, &mut dx[gi * cg * hw..(gi + 1) * cg * hw]);
            }
        }
    }
}

/// `rows` channels of a batch of `n` planes of `hw` values, `channels` channels per
/// sample, as a `rows × (n·hw)` matrix.
fn batch_planes(data: &[f32], rows: usize, n: usize, hw: usize, channels: usize) -> MatRef<'_> {
    MatRef {
        data,
        rows: Axis::new(rows, hw),
        cols: Axis::batched(n * hw, hw, 1, channels * hw),
    }
}

/// [`batch_planes`], to write.
fn batch_planes_mut(
    data: &mut [f32],
    rows: usize,
    n: usize,
    hw: usize,
    channels: usize,
) -> MatMut<'_> {
    MatMut {
        data,
        rows: Axis::new(rows, hw),
        cols: Axis::batched(n * hw, hw, 1, channels * hw),
    }
}

impl Conv2d {
    /// The kernel `[c][kh·kw]` as blocks of [`CB`] channels, `[c/CB][kh·kw][CB]`, and the
    /// bias as `[c/CB][CB]` (zero past `c`).
    fn blocked_params(&self, g: &Geom) -> (Vec<[f32; CB]>, Vec<[f32; CB]>) {
        let w = self.weight.value.as_slice().expect("standard layout");
        let b = self.bias.value.as_slice().expect("standard layout");
        let (kk, blocks) = (g.kh * g.kw, g.o.div_ceil(CB));
        let mut wb = vec![[0.0f32; CB]; blocks * kk];
        let mut bb = vec![[0.0f32; CB]; blocks];
        for ch in 0..g.o {
            for tap in 0..kk {
                wb[(ch / CB) * kk + tap][ch % CB] = w[ch * kk + tap];
            }
            bb[ch / CB][ch % CB] = b[ch];
        }
        (wb, bb)
    }

    /// A depthwise convolution's forward pass, in parallel over every (sample, block of 16
    /// channels); each block is transposed to channel-minor order, convolved, and back.
    fn forward_depthwise(&self, xs: &[f32], g: &Geom, n: usize) -> Vec<f32> {
        let (hw, ohw, kk, c) = (g.h * g.w, g.oh * g.ow, g.kh * g.kw, g.o);
        let blocks = c.div_ceil(CB);
        let (wb, bb) = self.blocked_params(g);
        let taps = Taps::of(g);
        let mut y = vec![0.0f32; n * c * ohw];
        // Each sample's output, split by block of channels (the last may be short).
        let outs: Vec<(usize, &mut [f32])> = y
            .chunks_mut((c * ohw).max(1))
            .flat_map(|ys| ys.chunks_mut((CB * ohw).max(1)))
            .enumerate()
            .collect();
        outs.into_par_iter().for_each_init(
            || (Vec::new(), Vec::new()),
            |(xb, yb): &mut (Block, Block), (task, ys)| {
                let (i, blk) = (task / blocks, task % blocks);
                xb.resize(hw, [0.0; CB]);
                yb.resize(ohw, [0.0; CB]);
                to_blocked(&xs[i * c * hw..(i + 1) * c * hw], c, blk * CB, hw, xb);
                dw_forward(xb, &wb[blk * kk..(blk + 1) * kk], &bb[blk], g, &taps, yb);
                from_blocked(yb, CB.min(c - blk * CB), 0, ohw, ys);
            },
        );
        y
    }

    /// A depthwise convolution's backward pass, in parallel over (sample, block of 16
    /// channels): the input gradient, and the kernel and bias gradients `[c·kh·kw]`, `[c]`,
    /// each summed over the samples in order.
    fn backward_depthwise(
        &self,
        xs: &[f32],
        dys: &[f32],
        g: &Geom,
        n: usize,
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let (hw, ohw, kk, c) = (g.h * g.w, g.oh * g.ow, g.kh * g.kw, g.o);
        let blocks = c.div_ceil(CB);
        let (wb, _) = self.blocked_params(g);
        let taps = Taps::of(g);
        let mut dx = vec![0.0f32; n * c * hw];
        // Per task: kk rows of kernel gradient and one of bias gradient.
        let mut partial = vec![[0.0f64; CB]; n * blocks * (kk + 1)];
        type Task<'a> = ((usize, &'a mut [f32]), &'a mut [[f64; CB]]);
        let tasks: Vec<Task<'_>> = dx
            .chunks_mut((c * hw).max(1))
            .flat_map(|d| d.chunks_mut((CB * hw).max(1)))
            .enumerate()
            .zip(partial.chunks_mut(kk + 1))
            .collect();
        tasks.into_par_iter().for_each_init(
            || (Vec::new(), Vec::new(), Vec::new()),
            |(xb, gb, db): &mut (Block, Block, Block), ((task, dxs), part)| {
                let (i, blk) = (task / blocks, task % blocks);
                xb.resize(hw, [0.0; CB]);
                gb.resize(ohw, [0.0; CB]);
                db.resize(hw, [0.0; CB]);
                to_blocked(&xs[i * c * hw..(i + 1) * c * hw], c, blk * CB, hw, xb);
                to_blocked(&dys[i * c * ohw..(i + 1) * c * ohw], c, blk * CB, ohw, gb);
                let (dk, dbias) = part.split_at_mut(kk);
                let w = &wb[blk * kk..(blk + 1) * kk];
                dw_backward(xb, w, gb, g, &taps, db, dk, &mut dbias[0]);
                if self.input_grad {
                    from_blocked(db, CB.min(c - blk * CB), 0, hw, dxs);
                }
            },
        );
        let (mut dk, mut db) = (vec![0.0f32; c * kk], vec![0.0f32; c]);
        for ch in 0..c {
            let (blk, l) = (ch / CB, ch % CB);
            let at = |i: usize| (i * blocks + blk) * (kk + 1);
            for tap in 0..kk {
                dk[ch * kk + tap] = (0..n).map(|i| partial[at(i) + tap][l]).sum::<f64>() as f32;
            }
            db[ch] = (0..n).map(|i| partial[at(i) + kk][l]).sum::<f64>() as f32;
        }
        (dx, dk, db)
    }
}

impl Conv2d {
    /// The output for `x` (any layout), without keeping anything.
    fn output(&self, x: &Tensor) -> Result<Tensor> {
        let g = self.geom(x.shape(), "convolution input")?;
        let x = x.as_standard_layout();
        let xs = x.as_slice().expect("standard layout");
        let n = x.shape()[0];
        let (per_in, per_out) = (g.c * g.h * g.w, g.o * g.oh * g.ow);
        let y = if g.depthwise() {
            self.forward_depthwise(xs, &g, n)
        } else if g.pointwise() {
            self.forward_pointwise(xs, &g, n)
        } else {
            let mut y = vec![0.0f32; n * per_out];
            y.par_chunks_mut(per_out.max(1))
                .zip(xs.par_chunks(per_in.max(1)))
                .for_each_init(Vec::new, |col, (yi, xi)| self.forward_one(xi, &g, yi, col));
            y
        };
        Ok(Tensor::from_shape_vec(vec![n, g.o, g.oh, g.ow], y).expect("sizes"))
    }
}

impl Module for Conv2d {
    fn forward(&mut self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let y = self.output(x)?;
        if ctx.train {
            self.input = Some(x.as_standard_layout().into_owned());
        }
        Ok(y)
    }

    fn forward_owned(&mut self, x: Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let y = self.output(&x)?;
        if ctx.train {
            self.input = Some(if x.is_standard_layout() {
                x
            } else {
                x.as_standard_layout().into_owned()
            });
        }
        Ok(y)
    }

    fn backward(&mut self, grad_out: &Tensor) -> Result<Tensor> {
        let x = cached(&self.input, "convolution")?;
        let g = self.geom(x.shape(), "convolution input")?;
        let n = x.shape()[0];
        let dy = grad_out
            .view()
            .into_dimensionality::<Ix4>()
            .ok()
            .filter(|v| v.dim() == (n, g.o, g.oh, g.ow))
            .ok_or_else(|| {
                Error::shape(
                    "convolution output gradient",
                    format!("[{n}, {}, {}, {}]", g.o, g.oh, g.ow),
                    grad_out.shape(),
                )
            })?;
        let dy = dy.as_standard_layout();
        let (xs, dys) = (
            x.as_slice().expect("standard layout"),
            dy.as_slice().expect("standard layout"),
        );
        let (per_in, per_out) = (g.c * g.h * g.w, g.o * g.oh * g.ow);
        if g.depthwise() {
            let shape = x.shape().to_vec();
            let (dx, dk, db) = self.backward_depthwise(xs, dys, &g, n);
            let wg = self.weight.grad.as_slice_mut().expect("standard layout");
            wg.iter_mut().zip(&dk).for_each(|(a, b)| *a += b);
            let bg = self.bias.grad.as_slice_mut().expect("standard layout");
            bg.iter_mut().zip(&db).for_each(|(a, b)| *a += b);
            return Ok(Tensor::from_shape_vec(shape, dx).expect("sizes"));
        }
        if g.pointwise() {
            let params = (&mut self.weight, &mut self.bias);
            let dx = Self::backward_pointwise(params, self.input_grad, xs, dys, &g, n);
            return Ok(Tensor::from_shape_vec(x.shape().to_vec(), dx).expect("sizes"));
        }
        let (wlen, o) = (self.weight.value.len(), g.o);
        let mut dx = vec![0.0f32; n * per_in];
        // Per chunk of samples: (dW, db); summed in chunk order below.
        let partial: Vec<(Vec<f32>, Vec<f32>)> = dx
            .par_chunks_mut((CHUNK * per_in).max(1))
            .enumerate()
            .map(|(ci, dxc)| {
                let (mut dw, mut db) = (vec![0.0f32; wlen], vec![0.0f32; o]);
                let mut col = Vec::new();
                for (j, dxi) in dxc.chunks_mut(per_in.max(1)).enumerate() {
                    let i = ci * CHUNK + j;
                    self.backward_one(
                        &xs[i * per_in..(i + 1) * per_in],
                        &dys[i * per_out..(i + 1) * per_out],
                        &g,
                        dxi,
                        &mut dw,
                        &mut db,
                        &mut col,
                    );
                }
                (dw, db)
            })
            .collect();
        let wg = self.weight.grad.as_slice_mut().expect("standard layout");
        let bg = self.bias.grad.as_slice_mut().expect("standard layout");
        for (pw, pb) in partial {
            wg.iter_mut().zip(&pw).for_each(|(a, b)| *a += b);
            bg.iter_mut().zip(&pb).for_each(|(a, b)| *a += b);
        }
        Ok(Tensor::from_shape_vec(x.shape().to_vec(), dx).expect("sizes"))
    }

    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Param)) {
        f(&join(prefix, "weight"), &self.weight);
        f(&join(prefix, "bias"), &self.bias);
    }

    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        f(&join(prefix, "weight"), &mut self.weight);
        f(&join(prefix, "bias"), &mut self.bias);
    }

    fn set_input_grad(&mut self, on: bool) -> bool {
        self.input_grad = on;
        true
    }

    fn describe(&self) -> String {
        let [kh, kw] = self.kernel();
        let kind = if self.group > 1 && self.group == self.outputs() && self.group == self.inputs()
        {
            "dwconv"
        } else {
            "conv"
        };
        let stride = if self.stride == [1, 1] {
            String::new()
        } else {
            format!("/{}", self.stride[0])
        };
        format!(
            "{kind}{kh}x{kw}{stride} {}→{}",
            self.inputs(),
            self.outputs()
        )
    }
}
