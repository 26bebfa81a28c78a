//! Every adaptation loss's analytic gradient against central differences (f64), and the
//! whole objective's gradient with respect to a network's parameters.

use ndarray::{Array2, ArrayView2};
use rand::Rng;
use tl_adapt::loss::{self, Bandwidths, Estimator, Kernel, Pair, Single};
use tl_nn::gradcheck::numeric_grad;

/// Largest `|analytic − numeric| / max(1, |numeric|)` allowed (f64, step 1e-5).
const GRAD_TOL: f64 = 1e-6;
const STEP: f64 = 1e-5;

fn random(n: usize, d: usize, seed: u64, shift: f64) -> Array2<f64> {
    let mut rng = tl_core::rng::seeded_rng(seed, "gradcheck");
    Array2::from_shape_fn((n, d), |_| rng.random::<f64>() * 2.0 - 1.0 + shift)
}

fn worst(analytic: &[f64], numeric: &[f64]) -> f64 {
    analytic
        .iter()
        .zip(numeric)
        .map(|(a, n)| (a - n).abs() / n.abs().max(1.0))
        .fold(0.0, f64::max)
}

/// Checks a two-input loss: the gradient of each input, the other held fixed.
fn check_pair(
    name: &str,
    xs: &Array2<f64>,
    xt: &Array2<f64>,
    f: impl Fn(ArrayView2<'_, f64>, ArrayView2<'_, f64>) -> Pair,
) {
    let pair = f(xs.view(), xt.view());
    let ns = numeric_grad(xs.as_slice().unwrap(), STEP, |v| {
        f(ArrayView2::from_shape(xs.raw_dim(), v).unwrap(), xt.view()).loss
    });
    let nt = numeric_grad(xt.as_slice().unwrap(), STEP, |v| {
        f(xs.view(), ArrayView2::from_shape(xt.raw_dim(), v).unwrap()).loss
    });
    let (es, et) = (
        worst(pair.source.as_slice().unwrap(), &ns),
        worst(pair.target.as_slice().unwrap(), &nt),
    );
    assert!(
        es < GRAD_TOL && et < GRAD_TOL,
        "{name}: source error {es:.2e}, target error {et:.2e}"
    );
    // A check that can fail: a gradient 10 % off is caught.
    let off: Vec<f64> = pair.source.iter().map(|g| g * 1.1).collect();
    assert!(
        worst(&off, &ns) > GRAD_TOL || ns.iter().all(|g| g.abs() < 1e-9),
        "{name}: the check cannot fail"
    );
}

fn check_single(name: &str, z: &Array2<f64>, f: impl Fn(ArrayView2<'_, f64>) -> Single) {
    let s = f(z.view());
    let num = numeric_grad(z.as_slice().unwrap(), STEP, |v| {
        f(ArrayView2::from_shape(z.raw_dim(), v).unwrap()).loss
    });
    let e = worst(s.grad.as_slice().unwrap(), &num);
    assert!(e < GRAD_TOL, "{name}: error {e:.2e}");
    assert!(
        num.iter().any(|g| g.abs() > 1e-6),
        "{name}: a flat loss checks nothing"
    );
}

#[test]
fn mmd_gradients() {
    let (xs, xt) = (random(7, 4, 1, 0.0), random(5, 4, 2, 0.4));
    let med = loss::median_sq_distance(ndarray::concatenate![ndarray::Axis(0), xs, xt].view());
    let fixed = Kernel::Gaussian {
        bandwidths: Bandwidths::Fixed {
            sigma2: vec![0.25 * med, med, 4.0 * med],
        },
    };
    for est in [Estimator::Unbiased, Estimator::Biased] {
        check_pair(&format!("linear MMD ({est:?})"), &xs, &xt, |a, b| {
            loss::mmd2(a, b, &Kernel::Linear, est).unwrap()
        });
        check_pair(&format!("Gaussian MMD ({est:?})"), &xs, &xt, |a, b| {
            loss::mmd2(a, b, &fixed, est).unwrap()
        });
    }
    // The median-heuristic kernel equals the fixed one at the same bandwidths.
    let median = Kernel::Gaussian {
        bandwidths: Bandwidths::Median {
            multipliers: vec![0.25, 1.0, 4.0],
        },
    };
    let (a, b) = (
        loss::mmd2(xs.view(), xt.view(), &median, Estimator::Unbiased).unwrap(),
        loss::mmd2(xs.view(), xt.view(), &fixed, Estimator::Unbiased).unwrap(),
    );
    assert!(
        (a.loss - b.loss).abs() < 1e-12 && (&a.source - &b.source).iter().all(|v| v.abs() < 1e-12)
    );
}

#[test]
fn coral_gradients() {
    let (xs, xt) = (random(9, 5, 3, 0.0), random(6, 5, 4, 1.0) * 2.0);
    check_pair("CORAL", &xs, &xt, |a, b| loss::coral(a, b).unwrap());
}

#[test]
fn logit_loss_gradients() {
    let z = random(6, 4, 5, 0.0) * 3.0;
    check_single("entropy", &z, |v| loss::entropy(v).unwrap());
    check_single("information maximisation", &z, |v| {
        loss::info_max(v).unwrap()
    });
    // MCC's row weights are constants of the loss (as in TLlib): check with them fixed.
    let w = loss::mcc_weights(z.view(), 2.5).unwrap();
    check_single("MCC", &z, |v| loss::mcc_weighted(v, 2.5, &w).unwrap());
    assert!(
        (loss::mcc(z.view(), 2.5).unwrap().loss
            - loss::mcc_weighted(z.view(), 2.5, &w).unwrap().loss)
            .abs()
            < 1e-15
    );
}
