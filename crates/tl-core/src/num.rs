//! The numerics every crate shares, each in one place: log-sum-exp, softmax and
//! log-softmax over rows, the first arg-max, per-feature standardisation. Stable by
//! subtracting the maximum first.

use ndarray::{Array1, Array2, ArrayBase, ArrayView2, Axis, Data, DataMut, Ix2, NdFloat};
use serde::{Deserialize, Serialize};

/// `ln Σ exp(v)`, stably: `max + ln Σ exp(v − max)`, summed in order; −∞ when there is no
/// value or every value is −∞.
pub fn log_sum_exp<I>(values: I) -> f64
where
    I: IntoIterator<Item = f64>,
    I::IntoIter: Clone,
{
    let it = values.into_iter();
    let m = it.clone().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + it.map(|v| (v - m).exp()).sum::<f64>().ln()
}

/// Each row's softmax, in place: `exp(z − max) / Σ exp(z − max)`.
pub fn softmax_rows_in_place<S, A>(z: &mut ArrayBase<S, Ix2>)
where
    S: DataMut<Elem = A>,
    A: NdFloat,
{
    for mut row in z.axis_iter_mut(Axis(0)) {
        let m = row.fold(A::neg_infinity(), |a, &b| a.max(b));
        row.mapv_inplace(|v| (v - m).exp());
        let s = row.sum();
        row.mapv_inplace(|e| e / s);
    }
}

/// Each row's softmax.
pub fn softmax<A: NdFloat>(z: ArrayView2<'_, A>) -> Array2<A> {
    let mut p = z.to_owned();
    softmax_rows_in_place(&mut p);
    p
}

/// Each row's log-softmax (f64): `z − log_sum_exp(z)`.
pub fn log_softmax<S: Data<Elem = f64>>(z: &ArrayBase<S, Ix2>) -> Array2<f64> {
    let mut out = z.to_owned();
    for mut row in out.rows_mut() {
        let lse = log_sum_exp(row.iter().copied());
        row.mapv_inplace(|v| v - lse);
    }
    out
}

/// The index of the first largest value (0 when there is none); a NaN never wins.
pub fn argmax<T: PartialOrd + Copy>(values: impl IntoIterator<Item = T>) -> usize {
    let mut best: Option<(usize, T)> = None;
    for (i, v) in values.into_iter().enumerate() {
        // `v == v` is false for NaN only.
        #[allow(clippy::eq_op)]
        let is_number = v == v;
        if is_number && best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    best.map_or(0, |(i, _)| i)
}

/// Standardisation with one domain's statistics: each feature to zero mean and unit
/// variance (features constant in the domain are only centred). Fitted on each domain
/// separately, it is the simplest first-order alignment: the feature-level analogue of
/// re-estimating BatchNorm statistics on the target (AdaBN).
///
/// Fit it on every row it will be applied to. On its own fitting rows a standardised
/// value is bounded by √(n − 1); on rows outside the fit it is not: post-ReLU CNN features
/// that are zero on nearly all fitting rows have tiny standard deviations, and other rows
/// then reach thousands of units (measured: EfficientNet-Lite0 on mnist-5k, source
/// validation rows up to |x| = 4766 when only the training rows were fitted, against 67 on
/// the training rows), which wrecks any probe refitted on them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    pub mean: Array1<f32>,
    pub sd: Array1<f32>,
}

impl Standardizer {
    /// Standard deviations at or below this are a constant feature: centred, not scaled.
    pub const CONSTANT: f64 = 1e-12;

    /// Fits on `x`, which needs at least 2 rows.
    pub fn fit(x: ArrayView2<'_, f32>) -> crate::Result<Self> {
        if x.nrows() < 2 {
            return Err(crate::Error::Invalid {
                what: "standardisation",
                reason: format!("{} rows: need at least 2", x.nrows()),
            });
        }
        let (mean, sd) = Self::moments(x);
        Ok(Self {
            mean: mean.mapv(|v| v as f32),
            sd: sd.mapv(|v| v as f32),
        })
    }

    /// Each column's mean and population standard deviation in f64, the deviation 1 where
    /// it is at most [`Self::CONSTANT`] (a constant feature is centred, not scaled).
    pub fn moments(x: ArrayView2<'_, f32>) -> (Array1<f64>, Array1<f64>) {
        let n = x.nrows() as f64;
        let x64 = x.mapv(f64::from);
        let mean = x64.sum_axis(Axis(0)) / n;
        let var = x64
            .rows()
            .into_iter()
            .fold(Array1::<f64>::zeros(x.ncols()), |acc, r| {
                acc + (&r - &mean).mapv(|v| v * v)
            })
            / n;
        let sd = var.mapv(|v| {
            let sd = v.sqrt();
            if sd > Self::CONSTANT { sd } else { 1.0 }
        });
        (mean, sd)
    }

    pub fn apply(&self, x: ArrayView2<'_, f32>) -> Array2<f32> {
        (&x - &self.mean) / &self.sd
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;
    use proptest::prelude::*;

    const TOL: f64 = 1e-12;

    #[test]
    fn log_sum_exp_matches_the_naive_sum_where_it_does_not_overflow() {
        for v in [vec![0.0, 1.0, 2.0], vec![-3.5, 0.25], vec![7.0]] {
            let naive = v.iter().map(|x: &f64| x.exp()).sum::<f64>().ln();
            assert!(
                (log_sum_exp(v.iter().copied()) - naive).abs() < TOL,
                "{v:?}"
            );
        }
        // Stable where the naive sum overflows: ln(2 e^1000) = 1000 + ln 2.
        let big = log_sum_exp([1000.0, 1000.0]);
        assert!((big - (1000.0 + std::f64::consts::LN_2)).abs() < TOL);
        assert_eq!(log_sum_exp(Vec::<f64>::new()), f64::NEG_INFINITY);
        assert_eq!(log_sum_exp([f64::NEG_INFINITY; 2]), f64::NEG_INFINITY);
    }

    #[test]
    fn softmax_and_log_softmax_agree_with_a_hand_computation() {
        let z = array![[1.0f64, 2.0, 3.0], [1000.0, -1000.0, 0.0]];
        let p = softmax(z.view());
        // exp(1) / (e + e² + e³) = 0.09003057317038046.
        assert!((p[[0, 0]] - 0.090_030_573_170_380_46).abs() < TOL);
        assert!((p[[1, 0]] - 1.0).abs() < TOL);
        let lp = log_softmax(&z);
        for (a, b) in lp.iter().zip(p.iter()) {
            assert!((a.exp() - b).abs() < TOL);
        }
    }

    #[test]
    fn argmax_takes_the_first_largest_and_never_a_nan() {
        assert_eq!(argmax([0.1, 0.7, 0.7]), 1);
        assert_eq!(argmax([f64::NAN, 2.0, 1.0]), 1);
        assert_eq!(argmax([1.0, f64::NAN, 3.0]), 2);
        assert_eq!(argmax([f32::NAN; 3]), 0);
        assert_eq!(argmax(Vec::<f64>::new()), 0);
        assert_eq!(argmax([3u32, 9, 9]), 1);
    }

    proptest! {
        #[test]
        fn softmax_rows_sum_to_one_and_keep_order(
            v in proptest::collection::vec(-50.0f32..50.0, 1..12),
        ) {
            let z = Array2::from_shape_vec((1, v.len()), v.clone()).unwrap();
            let p = softmax(z.view());
            let sum: f32 = p.sum();
            prop_assert!((sum - 1.0).abs() < 1e-5);
            prop_assert_eq!(argmax(p.iter().copied()), argmax(v.iter().copied()));
        }
    }
}
