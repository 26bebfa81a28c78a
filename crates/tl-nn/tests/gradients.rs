//! Every layer's and loss's analytic gradient against central finite differences.

use ndarray::Array1;
use rand::Rng;
use tl_core::rng::seeded_rng;
use tl_nn::{
    Act, Activation, BatchNorm, CrossEntropy, Ctx, Dropout, GlobalAvgPool, GradReverse, Linear,
    Module, PointwiseConv, Sequential, Tensor, gradcheck::check_module, gradcheck::numeric_grad,
};

/// f32 forward passes with step 1e-2 leave about 1e-4 of rounding in each difference; a
/// wrong gradient is off by order 1.
const GRAD_TOL: f64 = 2e-3;
const H: f32 = 1e-2;

fn random(shape: &[usize], seed: u64, stream: &str) -> Tensor {
    let mut rng = seeded_rng(seed, stream);
    Tensor::from_shape_fn(shape.to_vec(), |_| rng.random_range(-1.0f32..1.0))
}

/// Values at least `gap` away from the kinks at 0 and 6, so ±H never crosses one.
fn away_from_kinks(shape: &[usize], seed: u64) -> Tensor {
    random(shape, seed, "kinks")
        .mapv(|v| if v >= 0.0 { v * 7.0 + 0.05 } else { v - 0.05 })
        .mapv(|v| if (v - 6.0).abs() < 0.05 { 6.2 } else { v })
}

fn train_ctx() -> Ctx {
    Ctx::train(seeded_rng(3, "dropout"))
}

fn check(name: &str, m: &mut dyn Module, x: &Tensor) {
    let y = m.forward(x, &mut train_ctx()).unwrap();
    let w = random(y.shape(), 11, "weights");
    let r = check_module(m, x, &w, H, 40, &train_ctx).unwrap();
    assert!(r.checked > 0);
    assert!(
        r.max_error < GRAD_TOL,
        "{name}: worst gradient error {} at {} ({} entries checked)",
        r.max_error,
        r.worst,
        r.checked
    );
}

#[test]
fn linear() {
    let mut rng = seeded_rng(1, "init");
    check(
        "linear",
        &mut Linear::new(7, 5, &mut rng),
        &random(&[4, 7], 1, "x"),
    );
}

#[test]
fn activations() {
    for act in [Act::Relu, Act::Relu6, Act::Gelu] {
        check(
            &format!("{act:?}"),
            &mut Activation::new(act),
            &away_from_kinks(&[3, 9], 2),
        );
    }
}

#[test]
fn dropout_with_a_fixed_mask() {
    check(
        "dropout",
        &mut Dropout::new(0.4).unwrap(),
        &random(&[5, 6], 3, "x"),
    );
}

#[test]
fn pointwise_convolution() {
    let w = random(&[6, 4, 1, 1], 4, "w");
    let b = Array1::from_vec(vec![0.1, -0.2, 0.3, 0.0, 0.5, -0.4]);
    let mut conv = PointwiseConv::from_weights(w, b).unwrap();
    // 11 samples: more than one parallel chunk of partial gradients.
    check("conv1x1", &mut conv, &random(&[11, 4, 3, 2], 4, "x"));
}

#[test]
fn pointwise_convolution_equals_a_naive_loop() {
    let w = random(&[3, 2, 1, 1], 5, "w");
    let b = Array1::from_vec(vec![0.5, -1.0, 0.25]);
    let x = random(&[2, 2, 2, 3], 5, "x");
    let y = PointwiseConv::from_weights(w.clone(), b.clone())
        .unwrap()
        .forward(&x, &mut Ctx::eval())
        .unwrap();
    for n in 0..2 {
        for o in 0..3 {
            for i in 0..2 {
                for j in 0..3 {
                    let naive: f32 = b[o]
                        + (0..2)
                            .map(|c| w[[o, c, 0, 0]] * x[[n, c, i, j]])
                            .sum::<f32>();
                    assert!((y[[n, o, i, j]] - naive).abs() < 1e-6);
                }
            }
        }
    }
}

#[test]
fn batch_norm_with_batch_statistics() {
    let mut bn = BatchNorm::new(3);
    bn.weight.value = Tensor::from_shape_vec(vec![3], vec![1.5, 0.5, -1.0]).unwrap();
    bn.bias.value = Tensor::from_shape_vec(vec![3], vec![0.1, 0.2, 0.3]).unwrap();
    check("batchnorm 4-D", &mut bn, &random(&[4, 3, 2, 2], 6, "x"));
    check(
        "batchnorm 2-D",
        &mut BatchNorm::new(5),
        &random(&[8, 5], 6, "x2"),
    );
}

#[test]
fn frozen_batch_norm_uses_running_statistics() {
    let mut bn = BatchNorm::from_stats(
        Array1::from_vec(vec![2.0, 0.5]),
        Array1::from_vec(vec![0.0, 1.0]),
        Array1::from_vec(vec![0.3, -0.2]),
        Array1::from_vec(vec![4.0, 0.25]),
        1e-3,
        0.1,
    )
    .unwrap();
    bn.use_running_stats = true;
    let x = random(&[3, 2, 2, 2], 7, "x");
    let y = bn.forward(&x, &mut train_ctx()).unwrap();
    let expect = 2.0 * (x[[1, 0, 1, 0]] - 0.3) / (4.0f32 + 1e-3).sqrt();
    assert!((y[[1, 0, 1, 0]] - expect).abs() < 1e-6);
    check("frozen batchnorm", &mut bn, &x);
}

#[test]
fn batch_norm_running_statistics_follow_pytorch() {
    // PyTorch: running = 0.9 running + 0.1 batch, the variance unbiased (n − 1).
    let mut bn = BatchNorm::new(1);
    let x = Tensor::from_shape_vec(vec![4, 1], vec![1.0, 2.0, 3.0, 6.0]).unwrap();
    bn.forward(&x, &mut train_ctx()).unwrap();
    let (mean, var_unbiased) = (3.0f32, 14.0f32 / 3.0);
    assert!((bn.running_mean.value[[0]] - 0.1 * mean).abs() < 1e-6);
    assert!((bn.running_var.value[[0]] - (0.9 + 0.1 * var_unbiased)).abs() < 1e-6);
}

#[test]
fn global_average_pool_and_gradient_reversal() {
    check(
        "gap",
        &mut GlobalAvgPool::new(),
        &random(&[3, 4, 2, 3], 8, "x"),
    );
    let (mut grl, handle) = GradReverse::new(0.5);
    handle.set(0.75);
    let g = grl.backward(&Tensor::ones(vec![2, 2])).unwrap();
    assert!(g.iter().all(|&v| (v + 0.75).abs() < 1e-7));
}

#[test]
fn a_whole_mlp() {
    let mut rng = seeded_rng(9, "init");
    let mut net = Sequential::new()
        .push(Linear::new(6, 10, &mut rng))
        .push(Activation::new(Act::Gelu))
        .push(Dropout::new(0.2).unwrap())
        .push(BatchNorm::new(10))
        .push(Linear::new(10, 4, &mut rng));
    check("mlp", &mut net, &random(&[7, 6], 9, "x"));
}

#[test]
fn cross_entropy_gradient_with_smoothing_weights_and_missing_labels() {
    let logits = random(&[5, 4], 10, "z").mapv(|v| v * 3.0);
    let targets = [Some(0), None, Some(3), Some(1), Some(3)];
    let ce = CrossEntropy {
        label_smoothing: 0.1,
        class_weights: Some(vec![1.0, 2.0, 0.5, 3.0]),
    };
    let (loss, grad) = ce.forward_backward(&logits, &targets).unwrap();
    let flat: Vec<f64> = logits.iter().map(|&v| v as f64).collect();
    let num = numeric_grad(&flat, 1e-2, |z| {
        let t = Tensor::from_shape_vec(vec![5, 4], z.iter().map(|&v| v as f32).collect()).unwrap();
        ce.forward_backward(&t, &targets).unwrap().0 as f64
    });
    for (i, (&a, n)) in grad.iter().zip(&num).enumerate() {
        assert!(
            (a as f64 - n).abs() < GRAD_TOL,
            "entry {i}: analytic {a}, numeric {n}"
        );
    }
    // The missing row gets no gradient; the value equals a naive f64 computation.
    assert!(grad.row_iter_sum(1) == 0.0);
    let mut naive = 0.0f64;
    let mut wsum = 0.0f64;
    for (i, t) in targets.iter().enumerate() {
        let Some(t) = *t else { continue };
        let w = ce.class_weights.as_ref().unwrap()[t as usize] as f64;
        let row: Vec<f64> = (0..4).map(|c| logits[[i, c]] as f64).collect();
        let lse = row.iter().map(|v| v.exp()).sum::<f64>().ln();
        let l: f64 = (0..4)
            .map(|c| -(0.1 / 4.0 + if c == t as usize { 0.9 } else { 0.0 }) * (row[c] - lse))
            .sum();
        naive += w * l;
        wsum += w;
    }
    assert!((loss as f64 - naive / wsum).abs() < 1e-6);
}

trait RowSum {
    fn row_iter_sum(&self, row: usize) -> f32;
}
impl RowSum for Tensor {
    fn row_iter_sum(&self, row: usize) -> f32 {
        (0..self.shape()[1]).map(|c| self[[row, c]].abs()).sum()
    }
}

#[test]
fn bad_input_is_named() {
    let mut rng = seeded_rng(1, "init");
    let err = Linear::new(3, 2, &mut rng)
        .forward(&Tensor::zeros(vec![4, 5]), &mut Ctx::eval())
        .unwrap_err();
    assert!(err.to_string().contains("[batch, 3]"), "{err}");
    let err = CrossEntropy::default()
        .forward_backward(&Tensor::zeros(vec![2, 3]), &[Some(0), Some(3)])
        .unwrap_err();
    assert!(
        err.to_string().contains("class 3 but only 3 classes"),
        "{err}"
    );
    let err = Linear::new(3, 2, &mut rng)
        .backward(&Tensor::zeros(vec![4, 2]))
        .unwrap_err();
    assert!(
        err.to_string().contains("forward pass in training mode"),
        "{err}"
    );
    assert!(Dropout::new(1.0).is_err());
}

/// A layer whose backward is wrong by a factor of 1.1: the check must catch it.
#[derive(Debug)]
struct WrongScale;

impl Module for WrongScale {
    fn forward(&mut self, x: &Tensor, _: &mut Ctx) -> tl_nn::Result<Tensor> {
        Ok(x * 2.0)
    }
    fn backward(&mut self, g: &Tensor) -> tl_nn::Result<Tensor> {
        Ok(g * 2.2)
    }
    fn visit(&self, _: &str, _: &mut dyn FnMut(&str, &tl_nn::Param)) {}
    fn visit_mut(&mut self, _: &str, _: &mut dyn FnMut(&str, &mut tl_nn::Param)) {}
    fn describe(&self) -> String {
        "wrong".into()
    }
}

#[test]
fn the_check_catches_a_wrong_gradient() {
    let x = random(&[2, 3], 12, "x");
    let w = random(&[2, 3], 12, "w");
    let r = check_module(&mut WrongScale, &x, &w, H, 10, &train_ctx).unwrap();
    assert!(r.max_error > 10.0 * GRAD_TOL, "{r:?}");
}
