//! Optimisers against naive f64 transcriptions of PyTorch's update rules; schedules;
//! checkpoints.

use std::collections::BTreeMap;

use ndarray::Array1;
use tl_nn::{
    Ctx, Linear, LrGroups, Module, ModuleExt, OptState, Optimizer, Schedule, Tensor, checkpoint,
    step,
};

/// f32 updates against an f64 reference over a few steps.
const STEP_TOL: f64 = 1e-5;

/// One parameter vector `w` with a fixed gradient function g(w) = w − target.
fn run(opt: &Optimizer, steps: usize, lr: f32) -> (Vec<f32>, Vec<f32>) {
    let mut lin = Linear::from_weights(
        ndarray::Array2::from_shape_vec((1, 3), vec![1.0, -2.0, 0.5]).unwrap(),
        Array1::from_vec(vec![0.3]),
    );
    let mut state = OptState::default();
    for _ in 0..steps {
        lin.zero_grad();
        lin.weight.grad = lin.weight.value.mapv(|w| w - 0.25);
        lin.bias.grad = lin.bias.value.mapv(|b| b + 1.0);
        step(opt, &mut state, &mut lin, lr, &LrGroups::default());
    }
    (
        lin.weight.value.iter().copied().collect(),
        lin.bias.value.iter().copied().collect(),
    )
}

#[allow(clippy::too_many_arguments)]
fn naive_adam(
    w0: f64,
    target: f64,
    steps: usize,
    lr: f64,
    b1: f64,
    b2: f64,
    eps: f64,
    wd: f64,
    decoupled: bool,
) -> f64 {
    let (mut w, mut m, mut v) = (w0, 0.0, 0.0);
    for t in 1..=steps {
        let mut g = w - target;
        if decoupled {
            w *= 1.0 - lr * wd;
        } else {
            g += wd * w;
        }
        m = b1 * m + (1.0 - b1) * g;
        v = b2 * v + (1.0 - b2) * g * g;
        let mh = m / (1.0 - b1.powi(t as i32));
        let vh = v / (1.0 - b2.powi(t as i32));
        w -= lr * mh / (vh.sqrt() + eps);
    }
    w
}

fn naive_sgd(w0: f64, target: f64, steps: usize, lr: f64, mu: f64, nesterov: bool, wd: f64) -> f64 {
    let (mut w, mut buf) = (w0, None::<f64>);
    for _ in 0..steps {
        let g = w - target + wd * w;
        let b = match buf {
            None => g,
            Some(b) => mu * b + g,
        };
        buf = Some(b);
        let d = if nesterov { g + mu * b } else { b };
        w -= lr * d;
    }
    w
}

#[test]
fn adam_and_adamw_follow_pytorch() {
    for decoupled in [false, true] {
        let opt = if decoupled {
            Optimizer::AdamW {
                beta1: 0.9,
                beta2: 0.99,
                eps: 1e-8,
                weight_decay: 0.1,
            }
        } else {
            Optimizer::Adam {
                beta1: 0.9,
                beta2: 0.99,
                eps: 1e-8,
                weight_decay: 0.1,
            }
        };
        let (w, b) = run(&opt, 7, 0.05);
        for (got, w0) in w.iter().zip([1.0, -2.0, 0.5]) {
            let want = naive_adam(w0, 0.25, 7, 0.05, 0.9, 0.99, 1e-8, 0.1, decoupled);
            assert!(
                (*got as f64 - want).abs() < STEP_TOL,
                "{opt:?}: {got} vs {want}"
            );
        }
        // Biases have no weight decay.
        let want = naive_adam(0.3, -1.0, 7, 0.05, 0.9, 0.99, 1e-8, 0.0, decoupled);
        assert!((b[0] as f64 - want).abs() < STEP_TOL);
    }
}

#[test]
fn sgd_with_momentum_and_nesterov_follows_pytorch() {
    for nesterov in [false, true] {
        let opt = Optimizer::Sgd {
            momentum: 0.9,
            nesterov,
            weight_decay: 0.01,
        };
        let (w, b) = run(&opt, 5, 0.1);
        for (got, w0) in w.iter().zip([1.0, -2.0, 0.5]) {
            let want = naive_sgd(w0, 0.25, 5, 0.1, 0.9, nesterov, 0.01);
            assert!((*got as f64 - want).abs() < STEP_TOL, "{got} vs {want}");
        }
        let want = naive_sgd(0.3, -1.0, 5, 0.1, 0.9, nesterov, 0.0);
        assert!((b[0] as f64 - want).abs() < STEP_TOL);
    }
}

#[test]
fn a_zero_factor_freezes_and_factors_scale() {
    let mut lin = Linear::from_weights(ndarray::Array2::ones((2, 2)), Array1::zeros(2));
    lin.weight.grad.fill(1.0);
    lin.bias.grad.fill(1.0);
    let groups = LrGroups(vec![("weight".into(), 0.0), ("bias".into(), 0.5)]);
    let mut state = OptState::default();
    step(&Optimizer::sgd(0.0), &mut state, &mut lin, 0.2, &groups);
    assert!(lin.weight.value.iter().all(|&w| w == 1.0));
    assert!(lin.bias.value.iter().all(|&b| (b + 0.1).abs() < 1e-7));
    assert!(!state.steps.contains_key("weight"));
}

#[test]
fn schedules() {
    const TOL: f32 = 1e-6;
    let c = Schedule::Cosine { min_factor: 0.1 };
    assert!((c.factor(0, 11, 0) - 1.0).abs() < TOL);
    assert!((c.factor(5, 11, 0) - 0.55).abs() < TOL);
    assert!((c.factor(10, 11, 0) - 0.1).abs() < TOL);
    let one = Schedule::OneCycle {
        pct_start: 0.3,
        div_factor: 25.0,
        final_div_factor: 1e4,
    };
    assert!((one.factor(0, 100, 0) - 0.04).abs() < TOL);
    assert!((one.factor(29, 100, 0) - 1.0).abs() < TOL);
    assert!((one.factor(99, 100, 0) - 4e-6).abs() < TOL);
    // Linear warm-up multiplies the schedule.
    assert!((Schedule::Constant.factor(0, 100, 4) - 0.2).abs() < TOL);
    assert!((Schedule::Constant.factor(4, 100, 4) - 1.0).abs() < TOL);
    assert!(Schedule::Cosine { min_factor: 2.0 }.check().is_err());
    assert!(
        Optimizer::Sgd {
            momentum: 1.5,
            nesterov: false,
            weight_decay: 0.0
        }
        .check()
        .is_err()
    );
}

#[test]
fn checkpoints_round_trip_and_refuse_another_network() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weights.safetensors");
    let mut rng = tl_core::rng::seeded_rng(1, "init");
    let mut a = Linear::new(4, 3, &mut rng);
    checkpoint::save_params(&a, &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let mut b = Linear::zeros(4, 3);
    checkpoint::load_params(&mut b, &path).unwrap();
    let x = Tensor::ones(vec![2, 4]);
    assert_eq!(
        a.forward(&x, &mut Ctx::eval()).unwrap(),
        b.forward(&x, &mut Ctx::eval()).unwrap()
    );
    checkpoint::save_params(&b, &path).unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "same parameters, same bytes"
    );

    let err = checkpoint::load_params(&mut Linear::zeros(5, 3), &path).unwrap_err();
    assert!(
        err.to_string()
            .contains("tensor `weight` has shape [3, 4], the network needs [3, 5]"),
        "{err}"
    );
    let mut extra = BTreeMap::new();
    extra.insert("weight".to_string(), Tensor::zeros(vec![3, 4]));
    extra.insert("bias".to_string(), Tensor::zeros(vec![3]));
    extra.insert("other".to_string(), Tensor::zeros(vec![1]));
    let err = checkpoint::set_params(&mut b, &extra, &path).unwrap_err();
    assert!(
        err.to_string().contains("unexpected tensor `other`"),
        "{err}"
    );
    std::fs::write(&path, b"not safetensors").unwrap();
    assert!(checkpoint::load_params(&mut b, &path).is_err());
}
