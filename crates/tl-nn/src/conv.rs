//! 2-D convolution over NCHW input: any kernel size, stride, explicit or `SAME_UPPER`
//! padding and group count, as ONNX `Conv` defines them.
//!
//! Two kernels, chosen by the group structure:
//! - **depthwise** (one input and one output channel per group, as in MobileNet and
//!   EfficientNet): direct loops over rows of the input plane, vectorisable, no copies;
//! - **everything else**: per group, `im2col` into a reused buffer and one matrix product
//!   (`ndarray`'s GEMM); a 1×1 convolution with stride 1 and no padding multiplies the
//!   input itself.
//!
//! Both run in parallel over the batch. The backward pass sums per-chunk partial weight
//! gradients in chunk order, so results do not depend on the thread count. The input is
//! the only thing kept for backward; `im2col` is recomputed there.

use ndarray::{Array1, ArrayView2, ArrayViewMut2, Ix4};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::{
    Error, Result,
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

/// The zero-padded size `(hp, wp)` that holds every input position a depthwise kernel
/// reads, with the input at offset `(pt, pl)`.
fn padded(g: &Geom) -> (usize, usize) {
    (
        ((g.oh - 1) * g.sh + g.kh).max(g.pt + g.h),
        ((g.ow - 1) * g.sw + g.kw).max(g.pl + g.w),
    )
}

/// Copies the plane `x` into the zero-padded scratch `pad`.
fn pad_plane(x: &[f32], g: &Geom, pad: &mut Vec<f32>) {
    let (hp, wp) = padded(g);
    pad.clear();
    pad.resize(hp * wp, 0.0);
    for (r, row) in x.chunks_exact(g.w).enumerate() {
        let at = (r + g.pt) * wp + g.pl;
        pad[at..at + g.w].copy_from_slice(row);
    }
}

/// One depthwise plane: `y = b + Σ k[ky, kx] · x[shifted]`, over the padded input.
fn dw_forward(x: &[f32], k: &[f32], b: f32, g: &Geom, y: &mut [f32], pad: &mut Vec<f32>) {
    pad_plane(x, g, pad);
    let (_, wp) = padded(g);
    for (oy, yr) in y.chunks_exact_mut(g.ow).enumerate() {
        yr.fill(b);
        for ky in 0..g.kh {
            let row = &pad[(oy * g.sh + ky) * wp..][..wp];
            for kx in 0..g.kw {
                let wv = k[ky * g.kw + kx];
                if g.sw == 1 {
                    for (d, &s) in yr.iter_mut().zip(&row[kx..kx + g.ow]) {
                        *d += wv * s;
                    }
                } else {
                    for (ox, d) in yr.iter_mut().enumerate() {
                        *d += wv * row[ox * g.sw + kx];
                    }
                }
            }
        }
    }
}

/// One depthwise plane's backward: adds into `dx`, the kernel gradient `dk` and `db`.
#[allow(clippy::too_many_arguments)]
fn dw_backward(
    x: &[f32],
    k: &[f32],
    dy: &[f32],
    g: &Geom,
    dx: &mut [f32],
    dk: &mut [f32],
    db: &mut f32,
    (pad, dpad): (&mut Vec<f32>, &mut Vec<f32>),
) {
    *db += dy.iter().map(|&v| v as f64).sum::<f64>() as f32;
    pad_plane(x, g, pad);
    let (hp, wp) = padded(g);
    dpad.clear();
    dpad.resize(hp * wp, 0.0);
    for (oy, gy) in dy.chunks_exact(g.ow).enumerate() {
        for ky in 0..g.kh {
            let at = (oy * g.sh + ky) * wp;
            let row = &pad[at..at + wp];
            let drow = &mut dpad[at..at + wp];
            for kx in 0..g.kw {
                let wv = k[ky * g.kw + kx];
                let mut acc = 0.0f32;
                if g.sw == 1 {
                    for ((d, &s), &gv) in drow[kx..kx + g.ow]
                        .iter_mut()
                        .zip(&row[kx..kx + g.ow])
                        .zip(gy)
                    {
                        *d += wv * gv;
                        acc += gv * s;
                    }
                } else {
                    for (ox, &gv) in gy.iter().enumerate() {
                        let ix = ox * g.sw + kx;
                        drow[ix] += wv * gv;
                        acc += gv * row[ix];
                    }
                }
                dk[ky * g.kw + kx] += acc;
            }
        }
    }
    for (r, out) in dx.chunks_exact_mut(g.w).enumerate() {
        let at = (r + g.pt) * wp + g.pl;
        for (o, &d) in out.iter_mut().zip(&dpad[at..at + g.w]) {
            *o += d;
        }
    }
}

impl Conv2d {
    /// One sample: `x` `[c, h, w]` → `y` `[o, oh, ow]`; `col` is scratch.
    fn forward_one(&self, x: &[f32], g: &Geom, y: &mut [f32], col: &mut Vec<f32>) {
        let w = self.weight.value.as_slice().expect("standard layout");
        let b = self.bias.value.as_slice().expect("standard layout");
        let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
        if g.depthwise() {
            let kk = g.kh * g.kw;
            for ch in 0..g.o {
                dw_forward(
                    &x[ch * hw..(ch + 1) * hw],
                    &w[ch * kk..(ch + 1) * kk],
                    b[ch],
                    g,
                    &mut y[ch * ohw..(ch + 1) * ohw],
                    col,
                );
            }
            return;
        }
        let (cg, og, k) = (g.cg(), g.og(), g.k());
        for gi in 0..g.g {
            let xg = &x[gi * cg * hw..(gi + 1) * cg * hw];
            let cols: &[f32] = if g.pointwise() {
                xg
            } else {
                col.resize(k * ohw, 0.0);
                im2col(xg, cg, g, col);
                col
            };
            let cols = ArrayView2::from_shape((k, ohw), cols).expect("sizes");
            let wg =
                ArrayView2::from_shape((og, k), &w[gi * og * k..(gi + 1) * og * k]).expect("sizes");
            let yg = &mut y[gi * og * ohw..(gi + 1) * og * ohw];
            for (o, row) in yg.chunks_mut(ohw).enumerate() {
                row.fill(b[gi * og + o]);
            }
            let mut yg = ArrayViewMut2::from_shape((og, ohw), yg).expect("sizes");
            ndarray::linalg::general_mat_mul(1.0, &wg, &cols, 1.0, &mut yg);
        }
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
        (col, dcol): (&mut Vec<f32>, &mut Vec<f32>),
    ) {
        let w = self.weight.value.as_slice().expect("standard layout");
        let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
        if g.depthwise() {
            let kk = g.kh * g.kw;
            for ch in 0..g.o {
                dw_backward(
                    &x[ch * hw..(ch + 1) * hw],
                    &w[ch * kk..(ch + 1) * kk],
                    &dy[ch * ohw..(ch + 1) * ohw],
                    g,
                    &mut dx[ch * hw..(ch + 1) * hw],
                    &mut dw[ch * kk..(ch + 1) * kk],
                    &mut db[ch],
                    (&mut *col, &mut *dcol),
                );
            }
            return;
        }
        let (cg, og, k) = (g.cg(), g.og(), g.k());
        for gi in 0..g.g {
            let dyg = &dy[gi * og * ohw..(gi + 1) * og * ohw];
            for (o, row) in dyg.chunks(ohw).enumerate() {
                db[gi * og + o] += row.iter().map(|&v| v as f64).sum::<f64>() as f32;
            }
            let dyg = ArrayView2::from_shape((og, ohw), dyg).expect("sizes");
            let xg = &x[gi * cg * hw..(gi + 1) * cg * hw];
            let wg =
                ArrayView2::from_shape((og, k), &w[gi * og * k..(gi + 1) * og * k]).expect("sizes");
            let mut dwg =
                ArrayViewMut2::from_shape((og, k), &mut dw[gi * og * k..(gi + 1) * og * k])
                    .expect("sizes");
            let dxg = &mut dx[gi * cg * hw..(gi + 1) * cg * hw];
            if g.pointwise() {
                let xv = ArrayView2::from_shape((k, ohw), xg).expect("sizes");
                ndarray::linalg::general_mat_mul(1.0, &dyg, &xv.t(), 1.0, &mut dwg);
                let mut dxv = ArrayViewMut2::from_shape((k, ohw), dxg).expect("sizes");
                ndarray::linalg::general_mat_mul(1.0, &wg.t(), &dyg, 1.0, &mut dxv);
            } else {
                col.resize(k * ohw, 0.0);
                im2col(xg, cg, g, col);
                let cv = ArrayView2::from_shape((k, ohw), &col[..]).expect("sizes");
                ndarray::linalg::general_mat_mul(1.0, &dyg, &cv.t(), 1.0, &mut dwg);
                let mut dcol = ArrayViewMut2::from_shape((k, ohw), &mut col[..]).expect("sizes");
                ndarray::linalg::general_mat_mul(1.0, &wg.t(), &dyg, 0.0, &mut dcol);
                col2im(col, cg, g, dxg);
            }
        }
    }
}

impl Module for Conv2d {
    fn forward(&mut self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let g = self.geom(x.shape(), "convolution input")?;
        let x = x.as_standard_layout();
        let xs = x.as_slice().expect("standard layout");
        let n = x.shape()[0];
        let (per_in, per_out) = (g.c * g.h * g.w, g.o * g.oh * g.ow);
        let mut y = vec![0.0f32; n * per_out];
        y.par_chunks_mut(per_out.max(1))
            .zip(xs.par_chunks(per_in.max(1)))
            .for_each_init(Vec::new, |col, (yi, xi)| self.forward_one(xi, &g, yi, col));
        if ctx.train {
            self.input = Some(x.into_owned());
        }
        Ok(Tensor::from_shape_vec(vec![n, g.o, g.oh, g.ow], y).expect("sizes"))
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
            })?
            .as_standard_layout()
            .into_owned();
        let (xs, dys) = (
            x.as_slice().expect("standard layout"),
            dy.as_slice().expect("standard layout"),
        );
        let (per_in, per_out) = (g.c * g.h * g.w, g.o * g.oh * g.ow);
        let (wlen, o) = (self.weight.value.len(), g.o);
        let mut dx = vec![0.0f32; n * per_in];
        // Per chunk of samples: (dW, db); summed in chunk order below.
        let partial: Vec<(Vec<f32>, Vec<f32>)> = dx
            .par_chunks_mut((CHUNK * per_in).max(1))
            .enumerate()
            .map(|(ci, dxc)| {
                let (mut dw, mut db) = (vec![0.0f32; wlen], vec![0.0f32; o]);
                let (mut col, mut dcol) = (Vec::new(), Vec::new());
                for (j, dxi) in dxc.chunks_mut(per_in.max(1)).enumerate() {
                    let i = ci * CHUNK + j;
                    self.backward_one(
                        &xs[i * per_in..(i + 1) * per_in],
                        &dys[i * per_out..(i + 1) * per_out],
                        &g,
                        dxi,
                        &mut dw,
                        &mut db,
                        (&mut col, &mut dcol),
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
