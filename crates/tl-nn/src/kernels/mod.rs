//! Elementwise and reduction kernels over contiguous `f32` slices, shared by the layers.
//!
//! Work is split into fixed blocks of [`BLOCK`] values run on rayon's pool, so the result
//! never depends on the thread count: maps are exact per element, and reductions add
//! fixed-width lanes within a block, then blocks in order, in `f64`.
//!
//! The instruction set is chosen at run time: the hot loops of the layers are compiled
//! for AVX-512, AVX2 + FMA and the x86-64 baseline (`#[multiversion(targets(SIMD))]`, and
//! these kernels are `#[inline]` into them). The loops never reassociate a sum and Rust
//! never contracts `a * b + c` into a fused multiply-add, so every version computes the
//! same bits: only their speed differs.

use rayon::prelude::*;

pub mod attention;
pub mod gemm;

pub use gemm::{Axis, MatMut, MatRef, gemm, matmul};

/// Values per parallel block (large enough to amortise scheduling, small enough to split
/// one layer's activations across threads).
pub const BLOCK: usize = 1 << 14;

/// `f` of every value, in parallel.
pub fn map(x: &[f32], f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    let mut y = vec![0.0f32; x.len()];
    y.par_chunks_mut(BLOCK)
        .zip(x.par_chunks(BLOCK))
        .for_each(|(y, x)| {
            for (y, &x) in y.iter_mut().zip(x) {
                *y = f(x);
            }
        });
    y
}

/// `f(a, b)` of every pair of values, in parallel.
pub fn zip_map(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    assert_eq!(a.len(), b.len(), "zip_map of slices of different lengths");
    let mut y = vec![0.0f32; a.len()];
    y.par_chunks_mut(BLOCK)
        .zip(a.par_chunks(BLOCK).zip(b.par_chunks(BLOCK)))
        .for_each(|(y, (a, b))| {
            for ((y, &a), &b) in y.iter_mut().zip(a).zip(b) {
                *y = f(a, b);
            }
        });
    y
}

/// Lanes of the sums below: wide enough for the compiler to vectorise the inner loop.
pub const LANES: usize = 16;

/// Adds `a[i]·b[i]` into lane `i mod LANES` of `acc`.
#[inline(always)]
pub fn lane_dot(acc: &mut [f32; LANES], a: &[f32], b: &[f32]) {
    let (mut ia, mut ib) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    for (xa, xb) in (&mut ia).zip(&mut ib) {
        for l in 0..LANES {
            acc[l] += xa[l] * xb[l];
        }
    }
    for (l, (&u, &v)) in ia.remainder().iter().zip(ib.remainder()).enumerate() {
        acc[l] += u * v;
    }
}

/// `Σ f(x)` over a slice, in a fixed order: `LANES` `f32` partial sums over chunks of
/// at most 256 values each (so every `f32` partial sums few terms), added in `f64`.
#[inline(always)]
pub fn sum_by(x: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut total = 0.0f64;
    for chunk in x.chunks(256) {
        let mut acc = [0.0f32; LANES];
        let mut it = chunk.chunks_exact(LANES);
        for c in &mut it {
            for (a, &v) in acc.iter_mut().zip(c) {
                *a += f(v);
            }
        }
        for (a, &v) in acc.iter_mut().zip(it.remainder()) {
            *a += f(v);
        }
        total += acc.iter().map(|&a| a as f64).sum::<f64>();
    }
    total
}

/// `(Σ t, Σ t·b)` with `t = f(a, b)` over two slices of one length, in one pass, in the
/// fixed order of [`sum_by`].
#[inline(always)]
pub fn sum_and_dot(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> (f64, f64) {
    assert_eq!(
        a.len(),
        b.len(),
        "sum_and_dot of slices of different lengths"
    );
    let (mut s, mut d) = (0.0f64, 0.0f64);
    for (ca, cb) in a.chunks(256).zip(b.chunks(256)) {
        let (mut acc_s, mut acc_d) = ([0.0f32; LANES], [0.0f32; LANES]);
        let (mut ia, mut ib) = (ca.chunks_exact(LANES), cb.chunks_exact(LANES));
        for (xa, xb) in (&mut ia).zip(&mut ib) {
            for l in 0..LANES {
                let t = f(xa[l], xb[l]);
                acc_s[l] += t;
                acc_d[l] += t * xb[l];
            }
        }
        for (l, (&u, &v)) in ia.remainder().iter().zip(ib.remainder()).enumerate() {
            let t = f(u, v);
            acc_s[l] += t;
            acc_d[l] += t * v;
        }
        s += acc_s.iter().map(|&v| v as f64).sum::<f64>();
        d += acc_d.iter().map(|&v| v as f64).sum::<f64>();
    }
    (s, d)
}

/// `x ← eˣ` for every value, vectorised: Cephes' `expf` (range reduction by ln 2 in two
/// parts, a degree-5 polynomial, the power of two built in the exponent bits), within
/// [`EXP_REL`] of the exact value; inputs are clamped to `[-87.3, 88.3]` (so results are
/// normal `f32`, never 0 or ∞). Written without branches or fused multiply-adds, so every
/// instruction set gives the same bits.
#[multiversion::multiversion(targets = "simd")]
pub fn exp_in_place(x: &mut [f32]) {
    for v in x.iter_mut() {
        let a = v.clamp(-87.3, 88.3);
        let n = (a * std::f32::consts::LOG2_E + 0.5).floor();
        let r = a - n * 0.693_359_4 - n * -2.121_944_4e-4;
        let z = r * r;
        let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2)
            * r
            + 0.166_666_65)
            * r
            + 0.5;
        let y = p * z + r + 1.0;
        *v = y * f32::from_bits(((n as i32 + 127) as u32) << 23);
    }
}

/// Largest relative error of [`exp_in_place`] (tested over its whole range).
pub const EXP_REL: f64 = 4e-7;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_its_stated_error_over_its_range() {
        let mut worst = 0.0f64;
        let xs: Vec<f32> = (0..200_001)
            .map(|i| -87.3 + i as f32 * (175.6 / 200_000.0))
            .collect();
        let mut ys = xs.clone();
        exp_in_place(&mut ys);
        for (&x, &y) in xs.iter().zip(&ys) {
            let want = (x as f64).exp();
            worst = worst.max((y as f64 - want).abs() / want);
        }
        assert!(worst < EXP_REL, "relative error {worst}");
        let mut edge = [f32::NEG_INFINITY, -1e30, 0.0, 1e30];
        exp_in_place(&mut edge);
        assert!(edge.iter().all(|v| v.is_finite() && *v > 0.0), "{edge:?}");
        assert_eq!(edge[2], 1.0);
    }

    /// Largest error of the lane sums against a plain `f64` sum, relative to the sum of the
    /// terms' magnitudes (the scale of summation error; the sums themselves may cancel).
    const SUM_REL: f64 = 1e-6;

    fn close(got: f64, terms: impl Iterator<Item = f64>) -> bool {
        let (mut naive, mut scale) = (0.0, 0.0);
        for t in terms {
            naive += t;
            scale += t.abs();
        }
        (got - naive).abs() <= SUM_REL * scale.max(1e-30)
    }

    #[test]
    fn sums_match_a_naive_f64_sum_on_every_remainder() {
        for n in [0, 1, 15, 16, 17, 255, 256, 257, 1000, 4099] {
            let x: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
                .collect();
            let y: Vec<f32> = (0..n).map(|i| ((i * 11 % 29) as f32) / 3.0).collect();
            let pairs = || x.iter().zip(&y).map(|(&a, &b)| (a as f64, b as f64));
            assert!(
                close(sum_by(&x, |v| v * v), x.iter().map(|&v| (v as f64).powi(2))),
                "n {n}"
            );
            // lane_dot over 256-value chunks, as the depthwise kernels call it per row.
            let mut dot = 0.0;
            for (a, b) in x.chunks(256).zip(y.chunks(256)) {
                let mut acc = [0.0f32; LANES];
                lane_dot(&mut acc, a, b);
                dot += acc.iter().map(|&v| v as f64).sum::<f64>();
            }
            assert!(close(dot, pairs().map(|(a, b)| a * b)), "n {n}");
            let (s, d) = sum_and_dot(&x, &y, |a, _| 2.0 * a);
            assert!(close(s, pairs().map(|(a, _)| 2.0 * a)), "n {n}");
            assert!(close(d, pairs().map(|(a, b)| 2.0 * a * b)), "n {n}");
        }
    }

    #[test]
    fn maps_are_exact_per_element() {
        let x: Vec<f32> = (0..BLOCK * 2 + 5).map(|i| i as f32 - 7.0).collect();
        assert_eq!(
            map(&x, |v| v.max(0.0)),
            x.iter().map(|v| v.max(0.0)).collect::<Vec<_>>()
        );
        let z = zip_map(&x, &x, |a, b| a * b);
        assert!(z.iter().zip(&x).all(|(z, x)| *z == x * x));
    }
}
