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

/// One input row of a depthwise plane as a strided kernel reads it: with stride 1 the row
/// itself; with stride 2 its even and odd positions split into two contiguous rows, so that
/// `row[ox·2 + off]` is `split[off mod 2][ox + off div 2]` and every inner loop runs over
/// contiguous memory.
struct Rows<'a> {
    stride: usize,
    even: &'a [f32],
    odd: &'a [f32],
}

impl Rows<'_> {
    /// The contiguous run of `len` values `row[(from + i)·stride + off]`, `i < len`.
    fn run(&self, from: usize, off: isize, len: usize) -> &[f32] {
        if len == 0 {
            return &[];
        }
        if self.stride == 1 {
            let at = (from as isize + off) as usize;
            return &self.even[at..at + len];
        }
        let (half, odd) = (off.div_euclid(2), off.rem_euclid(2) == 1);
        let at = (from as isize + half) as usize;
        let src = if odd { self.odd } else { self.even };
        &src[at..at + len]
    }
}

/// Splits `row` into even and odd positions (stride 2), into `buf`.
fn split_row<'a>(row: &'a [f32], stride: usize, buf: &'a mut Vec<f32>) -> Rows<'a> {
    if stride == 1 {
        return Rows {
            stride,
            even: row,
            odd: &[],
        };
    }
    debug_assert_eq!(stride, 2);
    buf.clear();
    buf.extend(row.iter().step_by(2));
    let n_even = buf.len();
    buf.extend(row.iter().skip(1).step_by(2));
    let (even, odd) = buf.split_at(n_even);
    Rows { stride, even, odd }
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

/// Planes of `size` values per parallel task: at least 4096 values, so that small planes
/// (7×7 at the end of a MobileNet) do not drown in scheduling.
fn planes_per_task(size: usize) -> usize {
    4096usize.div_ceil(size.max(1)).max(1)
}

/// One depthwise plane: `y = b + Σ k[ky, kx] · x[oy·sh + ky − pt, ox·sw + kx − pl]` over
/// the positions inside the input (no padded copy). Strides 1 and 2 run over contiguous
/// rows; others use the general loop.
#[multiversion::multiversion(targets = "simd")]
#[allow(clippy::too_many_arguments)]
fn dw_forward(x: &[f32], k: &[f32], b: f32, g: &Geom, t: &Taps, y: &mut [f32], buf: &mut Vec<f32>) {
    y.fill(b);
    for ky in 0..g.kh {
        let (ylo, yhi) = t.y[ky];
        for oy in ylo..yhi {
            let iy = oy * g.sh + ky - g.pt;
            let row = &x[iy * g.w..(iy + 1) * g.w];
            let yr = &mut y[oy * g.ow..(oy + 1) * g.ow];
            if g.sw > 2 {
                for kx in 0..g.kw {
                    let (xlo, xhi) = t.x[kx];
                    let wv = k[ky * g.kw + kx];
                    for (ox, d) in yr.iter_mut().enumerate().take(xhi).skip(xlo) {
                        *d += wv * row[ox * g.sw + kx - g.pl];
                    }
                }
                continue;
            }
            let rows = split_row(row, g.sw, buf);
            for kx in 0..g.kw {
                let (xlo, xhi) = t.x[kx];
                let wv = k[ky * g.kw + kx];
                let src = rows.run(xlo, kx as isize - g.pl as isize, xhi - xlo);
                for (d, &s) in yr[xlo..xhi].iter_mut().zip(src) {
                    *d += wv * s;
                }
            }
        }
    }
}

/// One depthwise plane's backward: `dx` (written, not added), and the plane's kernel and
/// bias gradients (written into `dk`, `db`).
#[multiversion::multiversion(targets = "simd")]
#[allow(clippy::too_many_arguments)]
fn dw_backward(
    x: &[f32],
    k: &[f32],
    dy: &[f32],
    g: &Geom,
    t: &Taps,
    dx: &mut [f32],
    dk: &mut [f32],
    db: &mut f32,
    (buf, dbuf): (&mut Vec<f32>, &mut Vec<f32>),
) {
    *db = crate::kernels::sum_by(dy, |v| v) as f32;
    dx.fill(0.0);
    // Per kernel tap, lanes of f32 partial sums over the plane (a plane's products are few
    // enough per lane for f32), added in f64 at the end.
    let mut acc = vec![[0.0f32; crate::kernels::LANES]; g.kh * g.kw];
    for ky in 0..g.kh {
        let (ylo, yhi) = t.y[ky];
        for oy in ylo..yhi {
            let iy = oy * g.sh + ky - g.pt;
            let row = &x[iy * g.w..(iy + 1) * g.w];
            let gy = &dy[oy * g.ow..(oy + 1) * g.ow];
            if g.sw > 2 {
                let drow = &mut dx[iy * g.w..(iy + 1) * g.w];
                for kx in 0..g.kw {
                    let (xlo, xhi) = t.x[kx];
                    let wv = k[ky * g.kw + kx];
                    for (ox, &gv) in gy.iter().enumerate().take(xhi).skip(xlo) {
                        let ix = ox * g.sw + kx - g.pl;
                        drow[ix] += wv * gv;
                        acc[ky * g.kw + kx][ox % crate::kernels::LANES] += gv * row[ix];
                    }
                }
                continue;
            }
            let rows = split_row(row, g.sw, buf);
            let drow = &mut dx[iy * g.w..(iy + 1) * g.w];
            if g.sw == 1 {
                for kx in 0..g.kw {
                    let (xlo, xhi) = t.x[kx];
                    if xhi <= xlo {
                        continue;
                    }
                    let at = xlo + kx - g.pl;
                    let wv = k[ky * g.kw + kx];
                    let (gs, src) = (&gy[xlo..xhi], &row[at..at + xhi - xlo]);
                    crate::kernels::lane_dot(&mut acc[ky * g.kw + kx], gs, src);
                    for (d, &gv) in drow[at..at + xhi - xlo].iter_mut().zip(gs) {
                        *d += wv * gv;
                    }
                }
                continue;
            }
            // Stride 2: the row's input gradient split as the row is, then merged back.
            dbuf.clear();
            dbuf.resize(g.w, 0.0);
            let n_even = g.w.div_ceil(2);
            for kx in 0..g.kw {
                let (xlo, xhi) = t.x[kx];
                if xhi <= xlo {
                    continue;
                }
                let len = xhi - xlo;
                let off = kx as isize - g.pl as isize;
                let wv = k[ky * g.kw + kx];
                let src = rows.run(xlo, off, len);
                crate::kernels::lane_dot(&mut acc[ky * g.kw + kx], &gy[xlo..xhi], src);
                let odd = off.rem_euclid(2) == 1;
                let at = (xlo as isize + off.div_euclid(2)) as usize + if odd { n_even } else { 0 };
                for (d, &gv) in dbuf[at..at + len].iter_mut().zip(&gy[xlo..xhi]) {
                    *d += wv * gv;
                }
            }
            let (even, odd) = dbuf.split_at(n_even);
            for (d, &v) in drow.iter_mut().step_by(2).zip(even) {
                *d += v;
            }
            for (d, &v) in drow.iter_mut().skip(1).step_by(2).zip(odd) {
                *d += v;
            }
        }
    }
    for (d, lanes) in dk.iter_mut().zip(acc) {
        *d = lanes.iter().map(|&v| v as f64).sum::<f64>() as f32;
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
        (col, _): (&mut Vec<f32>, &mut Vec<f32>),
    ) {
        let w = self.weight.value.as_slice().expect("standard layout");
        let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
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
                if self.input_grad {
                    let mut dxv = ArrayViewMut2::from_shape((k, ohw), dxg).expect("sizes");
                    ndarray::linalg::general_mat_mul(1.0, &wg.t(), &dyg, 1.0, &mut dxv);
                }
            } else {
                col.resize(k * ohw, 0.0);
                im2col(xg, cg, g, col);
                let cv = ArrayView2::from_shape((k, ohw), &col[..]).expect("sizes");
                ndarray::linalg::general_mat_mul(1.0, &dyg, &cv.t(), 1.0, &mut dwg);
                if self.input_grad {
                    let mut dcol =
                        ArrayViewMut2::from_shape((k, ohw), &mut col[..]).expect("sizes");
                    ndarray::linalg::general_mat_mul(1.0, &wg.t(), &dyg, 0.0, &mut dcol);
                    col2im(col, cg, g, dxg);
                }
            }
        }
    }
}

impl Conv2d {
    /// A depthwise convolution's forward pass, in parallel over every (sample, channel)
    /// plane, so that even batch 1 uses every thread.
    fn forward_depthwise(&self, xs: &[f32], g: &Geom, n: usize) -> Vec<f32> {
        let w = self.weight.value.as_slice().expect("standard layout");
        let b = self.bias.value.as_slice().expect("standard layout");
        let (hw, ohw, kk) = (g.h * g.w, g.oh * g.ow, g.kh * g.kw);
        let mut y = vec![0.0f32; n * g.o * ohw];
        let taps = Taps::of(g);
        let per_task = planes_per_task(ohw);
        y.par_chunks_mut((ohw * per_task).max(1))
            .enumerate()
            .for_each_init(Vec::new, |buf, (t, ys)| {
                for (j, yp) in ys.chunks_mut(ohw.max(1)).enumerate() {
                    let p = t * per_task + j;
                    let ch = p % g.o;
                    dw_forward(
                        &xs[p * hw..(p + 1) * hw],
                        &w[ch * kk..(ch + 1) * kk],
                        b[ch],
                        g,
                        &taps,
                        yp,
                        buf,
                    );
                }
            });
        y
    }

    /// A depthwise convolution's backward pass, in parallel over planes: each plane's
    /// kernel and bias gradients, then summed per channel over the samples in order.
    #[allow(clippy::too_many_arguments)]
    fn backward_depthwise(
        weight: &Tensor,
        weight_grad: &mut Tensor,
        bias_grad: &mut Tensor,
        xs: &[f32],
        dys: &[f32],
        g: &Geom,
        n: usize,
    ) -> Vec<f32> {
        let (hw, ohw, kk) = (g.h * g.w, g.oh * g.ow, g.kh * g.kw);
        let mut dx = vec![0.0f32; n * g.o * hw];
        let mut dk = vec![0.0f32; n * g.o * kk];
        let mut db = vec![0.0f32; n * g.o];
        {
            let w = weight.as_slice().expect("standard layout");
            let taps = Taps::of(g);
            let per_task = planes_per_task(hw);
            dx.par_chunks_mut((hw * per_task).max(1))
                .zip(dk.par_chunks_mut(kk * per_task))
                .zip(db.par_chunks_mut(per_task))
                .enumerate()
                .for_each_init(
                    || (Vec::new(), Vec::new()),
                    |(buf, dbuf), (t, ((dxs, dks), dbs))| {
                        let planes = dxs
                            .chunks_mut(hw.max(1))
                            .zip(dks.chunks_mut(kk))
                            .zip(dbs.iter_mut());
                        for (j, ((dxp, dkp), dbp)) in planes.enumerate() {
                            let p = t * per_task + j;
                            let ch = p % g.o;
                            dw_backward(
                                &xs[p * hw..(p + 1) * hw],
                                &w[ch * kk..(ch + 1) * kk],
                                &dys[p * ohw..(p + 1) * ohw],
                                g,
                                &taps,
                                dxp,
                                dkp,
                                dbp,
                                (&mut *buf, &mut *dbuf),
                            );
                        }
                    },
                );
        }
        let wg = weight_grad.as_slice_mut().expect("standard layout");
        let bg = bias_grad.as_slice_mut().expect("standard layout");
        for i in 0..n {
            for ch in 0..g.o {
                let p = i * g.o + ch;
                for (a, &v) in wg[ch * kk..(ch + 1) * kk]
                    .iter_mut()
                    .zip(&dk[p * kk..(p + 1) * kk])
                {
                    *a += v;
                }
                bg[ch] += db[p];
            }
        }
        dx
    }
}

impl Module for Conv2d {
    fn forward(&mut self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let g = self.geom(x.shape(), "convolution input")?;
        let x = x.as_standard_layout();
        let xs = x.as_slice().expect("standard layout");
        let n = x.shape()[0];
        let (per_in, per_out) = (g.c * g.h * g.w, g.o * g.oh * g.ow);
        let y = if g.depthwise() {
            self.forward_depthwise(xs, &g, n)
        } else {
            let mut y = vec![0.0f32; n * per_out];
            y.par_chunks_mut(per_out.max(1))
                .zip(xs.par_chunks(per_in.max(1)))
                .for_each_init(Vec::new, |col, (yi, xi)| self.forward_one(xi, &g, yi, col));
            y
        };
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
        if g.depthwise() {
            let dx = Self::backward_depthwise(
                &self.weight.value,
                &mut self.weight.grad,
                &mut self.bias.grad,
                xs,
                dys,
                &g,
                n,
            );
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
