//! 2-D max and average pooling over NCHW input, as ONNX `MaxPool` and `AveragePool` define
//! them (kernel, strides, explicit or `SAME_UPPER` padding; average pooling with or
//! without the padded positions in its count), the windows an Inception block or a
//! detector's neck uses.
//!
//! Both run in parallel over (sample, channel) planes. Max pooling keeps, per output, the
//! flat index of the first largest input of its window (ties go to the first in row-major
//! order, as ONNX Runtime and PyTorch do), and its backward pass adds each gradient there.

use rayon::prelude::*;

use crate::{
    Error, Result,
    conv::Padding,
    module::{Ctx, Module, Param, Tensor, cached},
};

/// Max or average.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    /// `count_include_pad`: divide by the whole window, padded positions included (ONNX's
    /// attribute); otherwise by the positions inside the input.
    Average {
        count_include_pad: bool,
    },
}

/// A pooling layer.
#[derive(Debug)]
pub struct Pool2d {
    pub kind: PoolKind,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: Padding,
    /// Input shape and, for max pooling, each output's input index within its plane.
    cache: Option<(Vec<usize>, Vec<u32>)>,
}

/// The sizes of one pooling applied to one input size.
#[derive(Debug, Clone, Copy)]
struct Geom {
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    pt: usize,
    pl: usize,
}

impl Pool2d {
    pub fn new(
        kind: PoolKind,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: Padding,
    ) -> Result<Self> {
        if kernel.contains(&0) || stride.contains(&0) {
            return Err(Error::invalid(
                "pooling window",
                format!("kernel {kernel:?} and stride {stride:?} must be ≥ 1"),
            ));
        }
        Ok(Self {
            kind,
            kernel,
            stride,
            padding,
            cache: None,
        })
    }

    fn geom(&self, s: &[usize], what: &str) -> Result<Geom> {
        if s.len() != 4 {
            return Err(Error::shape(what, "[batch, channels, height, width]", s));
        }
        let Some(([oh, ow], [pt, pl])) = self.padding.apply([s[2], s[3]], self.kernel, self.stride)
        else {
            return Err(Error::shape(
                what,
                format!("at least the {:?} window once padded", self.kernel),
                s,
            ));
        };
        Ok(Geom {
            h: s[2],
            w: s[3],
            oh,
            ow,
            pt,
            pl,
        })
    }

    /// The input rows and columns of output `(oy, ox)`'s window, clipped to the input, and
    /// the window's full size (padding included).
    fn window(
        &self,
        g: &Geom,
        oy: usize,
        ox: usize,
    ) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        let clip = |o: usize, s: usize, k: usize, p: usize, size: usize| {
            let start = (o * s) as isize - p as isize;
            let lo = start.max(0) as usize;
            let hi = ((start + k as isize).max(0) as usize).min(size);
            lo..hi.max(lo)
        };
        (
            clip(oy, self.stride[0], self.kernel[0], g.pt, g.h),
            clip(ox, self.stride[1], self.kernel[1], g.pl, g.w),
        )
    }
}

impl Module for Pool2d {
    fn forward(&mut self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let g = self.geom(x.shape(), "pooling input")?;
        let (n, c) = (x.shape()[0], x.shape()[1]);
        let x = x.as_standard_layout();
        let xs = x.as_slice().expect("standard layout");
        let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
        let mut y = vec![0.0f32; n * c * ohw];
        let mut arg = if self.kind == PoolKind::Max && ctx.train {
            vec![0u32; n * c * ohw]
        } else {
            Vec::new()
        };
        let full = (self.kernel[0] * self.kernel[1]) as f32;
        let this = &*self;
        let plane = |xp: &[f32], yp: &mut [f32], mut ap: Option<&mut [u32]>| {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let (rows, cols) = this.window(&g, oy, ox);
                    let o = oy * g.ow + ox;
                    match this.kind {
                        PoolKind::Max => {
                            let (mut best, mut at) = (f32::NEG_INFINITY, None);
                            for r in rows.clone() {
                                for col in cols.clone() {
                                    let v = xp[r * g.w + col];
                                    // `>`: the first of equal values wins; NaN propagates.
                                    if at.is_none() || v > best || v.is_nan() && !best.is_nan() {
                                        best = v;
                                        at = Some(r * g.w + col);
                                    }
                                }
                            }
                            // A window entirely in the padding (possible only with pads as
                            // large as the kernel) yields -inf, as ONNX's padding value.
                            yp[o] = best;
                            if let Some(a) = ap.as_deref_mut() {
                                a[o] = at.map_or(u32::MAX, |i| i as u32);
                            }
                        }
                        PoolKind::Average { count_include_pad } => {
                            let mut sum = 0.0f32;
                            for r in rows.clone() {
                                sum += xp[r * g.w + cols.start..r * g.w + cols.end]
                                    .iter()
                                    .sum::<f32>();
                            }
                            let count = if count_include_pad {
                                full
                            } else {
                                (rows.len() * cols.len()).max(1) as f32
                            };
                            yp[o] = sum / count;
                        }
                    }
                }
            }
        };
        if arg.is_empty() {
            y.par_chunks_mut(ohw.max(1))
                .zip(xs.par_chunks(hw.max(1)))
                .for_each(|(yp, xp)| plane(xp, yp, None));
        } else {
            y.par_chunks_mut(ohw.max(1))
                .zip(xs.par_chunks(hw.max(1)))
                .zip(arg.par_chunks_mut(ohw.max(1)))
                .for_each(|((yp, xp), ap)| plane(xp, yp, Some(ap)));
        }
        if ctx.train {
            self.cache = Some((x.shape().to_vec(), arg));
        }
        Ok(Tensor::from_shape_vec(vec![n, c, g.oh, g.ow], y).expect("sizes"))
    }

    fn backward(&mut self, grad_out: &Tensor) -> Result<Tensor> {
        let (shape, arg) = cached(&self.cache, "pooling")?;
        let g = self.geom(shape, "pooling input")?;
        let (n, c) = (shape[0], shape[1]);
        if grad_out.shape() != [n, c, g.oh, g.ow] {
            return Err(Error::shape(
                "pooling output gradient",
                format!("[{n}, {c}, {}, {}]", g.oh, g.ow),
                grad_out.shape(),
            ));
        }
        let dy = grad_out.as_standard_layout();
        let dys = dy.as_slice().expect("standard layout");
        let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
        let mut dx = vec![0.0f32; n * c * hw];
        let full = (self.kernel[0] * self.kernel[1]) as f32;
        let this = &*self;
        dx.par_chunks_mut(hw.max(1))
            .zip(dys.par_chunks(ohw.max(1)))
            .enumerate()
            .for_each(|(p, (dxp, dyp))| match this.kind {
                PoolKind::Max => {
                    for (o, &gv) in dyp.iter().enumerate() {
                        let at = arg[p * ohw + o];
                        if at != u32::MAX {
                            dxp[at as usize] += gv;
                        }
                    }
                }
                PoolKind::Average { count_include_pad } => {
                    for oy in 0..g.oh {
                        for ox in 0..g.ow {
                            let (rows, cols) = this.window(&g, oy, ox);
                            let count = if count_include_pad {
                                full
                            } else {
                                (rows.len() * cols.len()).max(1) as f32
                            };
                            let share = dyp[oy * g.ow + ox] / count;
                            for r in rows {
                                for d in &mut dxp[r * g.w + cols.start..r * g.w + cols.end] {
                                    *d += share;
                                }
                            }
                        }
                    }
                }
            });
        Ok(Tensor::from_shape_vec(shape.clone(), dx).expect("sizes"))
    }

    fn visit(&self, _: &str, _: &mut dyn FnMut(&str, &Param)) {}
    fn visit_mut(&mut self, _: &str, _: &mut dyn FnMut(&str, &mut Param)) {}

    fn describe(&self) -> String {
        let kind = match self.kind {
            PoolKind::Max => "maxpool",
            PoolKind::Average { .. } => "avgpool",
        };
        format!(
            "{kind}{}x{}/{}",
            self.kernel[0], self.kernel[1], self.stride[0]
        )
    }
}
