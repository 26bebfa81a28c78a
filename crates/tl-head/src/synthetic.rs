//! Synthetic classification data for benchmarks: Gaussian class clusters in `d`
//! dimensions, the same for a given seed on every machine.
//!
//! Class `k` has a centre `μₖ ~ N(0, 0.06² I)`; a row of class `k` is
//! `max(0, μₖ + ε)` with `ε ~ N(0, I)`, rectified like pooled CNN features. In 2,048
//! dimensions two centres are about 0.06·√4096 ≈ 3.8 noise standard deviations apart, so the
//! classes overlap a little, as real features of a 10-class task do. Classes take turns, so every
//! class has ⌊n / k⌋ or ⌈n / k⌉ rows.

use ndarray::Array2;
use rand::Rng;

/// One standard normal draw (Box–Muller).
fn normal(rng: &mut impl Rng) -> f32 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

/// `n` rows of `d` features in `classes` classes, from the stream `synthetic` of `seed`.
pub fn blobs(n: usize, d: usize, classes: usize, seed: u64) -> (Array2<f32>, Vec<u32>) {
    let mut rng = tl_core::rng::seeded_rng(seed, "synthetic");
    let centres = Array2::from_shape_simple_fn((classes, d), || 0.06 * normal(&mut rng));
    let y: Vec<u32> = (0..n).map(|i| (i % classes) as u32).collect();
    let mut x = Array2::<f32>::zeros((n, d));
    for (i, mut row) in x.rows_mut().into_iter().enumerate() {
        let c = centres.row(y[i] as usize);
        for (v, &m) in row.iter_mut().zip(c.iter()) {
            *v = (m + normal(&mut rng)).max(0.0);
        }
    }
    (x, y)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reproducible_balanced_and_rectified() {
        let (a, ya) = super::blobs(30, 8, 3, 1);
        let (b, yb) = super::blobs(30, 8, 3, 1);
        assert_eq!(a, b);
        assert_eq!(ya, yb);
        assert_eq!(ya.iter().filter(|&&y| y == 2).count(), 10);
        assert!(a.iter().all(|&v| v >= 0.0));
        assert_ne!(a, super::blobs(30, 8, 3, 2).0);
    }
}
