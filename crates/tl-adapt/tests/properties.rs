//! Invariants of the shift measures and losses.

use ndarray::{Array2, Axis};
use proptest::prelude::*;
use rand::{Rng, seq::SliceRandom};
use tl_adapt::loss::{self, Estimator, Kernel};

/// Sums of a few hundred products in f64.
const TOL: f64 = 1e-9;

fn matrix(rows: usize, cols: usize) -> impl Strategy<Value = Array2<f64>> {
    proptest::collection::vec(-3.0f64..3.0, rows * cols)
        .prop_map(move |v| Array2::from_shape_vec((rows, cols), v).unwrap())
}

fn kernels() -> [Kernel; 2] {
    [Kernel::Linear, Kernel::multi_gaussian()]
}

fn permuted(x: &Array2<f64>, seed: u64) -> Array2<f64> {
    let mut idx: Vec<usize> = (0..x.nrows()).collect();
    idx.shuffle(&mut tl_core::rng::seeded_rng(seed, "perm"));
    x.select(Axis(0), &idx)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn mmd_of_a_sample_with_itself_is_zero(x in matrix(6, 3)) {
        for k in kernels() {
            let m = loss::mmd2(x.view(), x.view(), &k, Estimator::Biased).unwrap();
            prop_assert!(m.loss.abs() < TOL, "{k:?}: {}", m.loss);
        }
    }

    #[test]
    fn mmd_is_symmetric_and_ignores_row_order(xs in matrix(5, 3), xt in matrix(7, 3), seed in 0u64..1000) {
        for k in kernels() {
            for e in [Estimator::Unbiased, Estimator::Biased] {
                let ab = loss::mmd2(xs.view(), xt.view(), &k, e).unwrap().loss;
                let ba = loss::mmd2(xt.view(), xs.view(), &k, e).unwrap().loss;
                let perm = loss::mmd2(permuted(&xs, seed).view(), permuted(&xt, seed + 1).view(), &k, e).unwrap().loss;
                prop_assert!((ab - ba).abs() < TOL, "{k:?} {e:?}: {ab} vs {ba}");
                prop_assert!((ab - perm).abs() < TOL, "{k:?} {e:?}: {ab} vs permuted {perm}");
                if e == Estimator::Biased {
                    prop_assert!(ab >= -TOL);
                }
            }
        }
    }

    #[test]
    fn coral_is_nonnegative_zero_for_equal_covariances_and_ignores_row_order(xs in matrix(6, 3), xt in matrix(8, 3), shift in -5.0f64..5.0, seed in 0u64..1000) {
        let c = loss::coral(xs.view(), xt.view()).unwrap();
        prop_assert!(c.loss >= 0.0);
        // A translated copy has the same covariance.
        let moved = &xs + shift;
        prop_assert!(loss::coral(xs.view(), moved.view()).unwrap().loss < TOL);
        let p = loss::coral(permuted(&xs, seed).view(), permuted(&xt, seed + 1).view()).unwrap().loss;
        prop_assert!((c.loss - p).abs() < TOL);
    }

    #[test]
    fn entropy_and_info_max_are_bounded(z in matrix(5, 4)) {
        let h = loss::entropy(z.view()).unwrap().loss;
        prop_assert!((-TOL..=4f64.ln() + TOL).contains(&h), "entropy {h}");
        // IM = mean entropy − entropy of the mean ≤ 0 (entropy is concave).
        prop_assert!(loss::info_max(z.view()).unwrap().loss <= TOL);
        let m = loss::mcc(z.view(), 2.5).unwrap().loss;
        prop_assert!((-TOL..=1.0 + TOL).contains(&m), "MCC {m}");
    }
}

/// The unbiased MMD² averages to 0 over pairs of independent samples of one distribution,
/// while the biased one stays positive: 400 pairs of 20-row samples.
#[test]
fn unbiased_mmd_is_centred_on_zero_for_one_distribution() {
    let mut rng = tl_core::rng::seeded_rng(0, "mmd-null");
    let mut draw = || Array2::from_shape_fn((20, 3), |_| rng.random::<f64>());
    let k = Kernel::multi_gaussian();
    let (mut u, mut b) = (Vec::new(), Vec::new());
    for _ in 0..400 {
        let (x, y) = (draw(), draw());
        u.push(
            loss::mmd2(x.view(), y.view(), &k, Estimator::Unbiased)
                .unwrap()
                .loss,
        );
        b.push(
            loss::mmd2(x.view(), y.view(), &k, Estimator::Biased)
                .unwrap()
                .loss,
        );
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let sd = (u.iter().map(|v| (v - mean(&u)).powi(2)).sum::<f64>() / (u.len() - 1) as f64).sqrt();
    let se = sd / (u.len() as f64).sqrt();
    assert!(
        mean(&u).abs() < 4.0 * se,
        "unbiased mean {} (se {se})",
        mean(&u)
    );
    assert!(
        mean(&b) > 10.0 * se,
        "biased mean {} should sit above 0",
        mean(&b)
    );
}

#[test]
fn bad_shapes_fail_with_both_widths() {
    let (a, b) = (Array2::<f64>::zeros((4, 3)), Array2::<f64>::zeros((4, 2)));
    let e = loss::mmd2(a.view(), b.view(), &Kernel::Linear, Estimator::Unbiased)
        .unwrap_err()
        .to_string();
    assert!(e.contains("width 3") && e.contains("width 2"), "{e}");
    let one = Array2::<f64>::zeros((1, 3));
    let e = loss::coral(a.view(), one.view()).unwrap_err().to_string();
    assert!(e.contains("target") && e.contains("1 rows"), "{e}");
}
