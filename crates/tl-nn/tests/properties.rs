//! Invariants: softmax rows sum to 1, cross-entropy ≥ 0, erf against tabulated values.

use proptest::prelude::*;
use tl_nn::{CrossEntropy, Tensor, layers::erf, softmax};

/// Softmax sums are within a few f32 ulps of 1.
const SUM_TOL: f32 = 1e-5;

proptest! {
    #[test]
    fn softmax_rows_sum_to_one(vals in prop::collection::vec(-50.0f32..50.0, 12)) {
        let z = ndarray::Array2::from_shape_vec((3, 4), vals).unwrap();
        let p = softmax(z.view());
        for row in p.rows() {
            prop_assert!((row.sum() - 1.0).abs() < SUM_TOL);
            prop_assert!(row.iter().all(|&v| (0.0..=1.0).contains(&v)));
        }
    }

    #[test]
    fn cross_entropy_is_not_negative(vals in prop::collection::vec(-30.0f32..30.0, 8), t in 0u32..4, eps in 0.0f32..0.5) {
        let z = Tensor::from_shape_vec(vec![2, 4], vals).unwrap();
        let ce = CrossEntropy { label_smoothing: eps, class_weights: None };
        let (loss, grad) = ce.forward_backward(&z, &[Some(t), Some(3 - t)]).unwrap();
        prop_assert!(loss >= 0.0);
        // Each row's gradient sums to zero (p and the target both sum to one).
        for r in 0..2 {
            let s: f32 = (0..4).map(|c| grad[[r, c]]).sum();
            prop_assert!(s.abs() < SUM_TOL);
        }
    }
}

#[test]
fn erf_matches_tabulated_values() {
    // Abramowitz & Stegun, table 7.1.
    const ERF_TOL: f64 = 2e-7;
    for (x, want) in [
        (0.0f32, 0.0f64),
        (0.5, 0.520_499_88),
        (1.0, 0.842_700_79),
        (2.0, 0.995_322_27),
        (-1.5, -0.966_105_15),
    ] {
        assert!(
            (erf(x) as f64 - want).abs() < ERF_TOL,
            "erf({x}) = {} not {want}",
            erf(x)
        );
    }
}
