//! Every layer's and loss's analytic gradient against central finite differences.

use ndarray::Array1;
use rand::Rng;
use tl_core::rng::seeded_rng;
use tl_nn::{
    Act, Activation, BatchNorm, Conv2d, CrossEntropy, Ctx, Dropout, GlobalAvgPool, GradReverse,
    Graph, Linear, Module, Padding, Sequential, Tensor, gradcheck::check_module,
    gradcheck::numeric_grad,
};

/// f32 forward passes with step 1e-2 leave about 1e-4 of rounding in each difference; a
/// wrong gradient is off by order 1.
const GRAD_TOL: f64 = 2e-3;
const H: f32 = 1e-2;

fn random(shape: &[usize], seed: u64, stream: &str) -> Tensor {
    let mut rng = seeded_rng(seed, stream);
    Tensor::from_shape_fn(shape.to_vec(), |_| rng.random_range(-1.0f32..1.0))
}

/// Distinct values 0.05 apart in a seeded order: a step of ±H never changes which value of
/// a max-pooling window is largest.
fn spaced(shape: &[usize], seed: u64) -> Tensor {
    use rand::seq::SliceRandom;
    let n: usize = shape.iter().product();
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut seeded_rng(seed, "spaced"));
    Tensor::from_shape_vec(
        shape.to_vec(),
        order.iter().map(|&i| i as f32 * 0.05 - 1.0).collect(),
    )
    .unwrap()
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
    check_with(name, m, x, H);
}

/// [`check`] with step `h`: deep stacks with batch statistics need a smaller step, as
/// the central difference's truncation error grows with their curvature.
fn check_with(name: &str, m: &mut dyn Module, x: &Tensor, h: f32) {
    let y = m.forward(x, &mut train_ctx()).unwrap();
    let w = random(y.shape(), 11, "weights");
    let r = check_module(m, x, &w, h, 40, &train_ctx).unwrap();
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

/// A convolution case: (name, in, out, kernel, stride, padding, group).
type ConvCase = (
    &'static str,
    usize,
    usize,
    [usize; 2],
    [usize; 2],
    Padding,
    usize,
);

/// The convolutions of the shipped backbones and the rest of ONNX `Conv`'s cases.
fn conv_cases() -> Vec<ConvCase> {
    vec![
        (
            "pointwise",
            4,
            6,
            [1, 1],
            [1, 1],
            Padding::Explicit([0; 4]),
            1,
        ),
        (
            "stem 3x3/2 same-upper",
            3,
            5,
            [3, 3],
            [2, 2],
            Padding::SameUpper,
            1,
        ),
        (
            "3x3 pads 1",
            2,
            3,
            [3, 3],
            [1, 1],
            Padding::Explicit([1; 4]),
            1,
        ),
        (
            "depthwise 3x3 pads 1",
            4,
            4,
            [3, 3],
            [1, 1],
            Padding::Explicit([1; 4]),
            4,
        ),
        (
            "depthwise 5x5/2 same-upper",
            3,
            3,
            [5, 5],
            [2, 2],
            Padding::SameUpper,
            3,
        ),
        (
            "depthwise 3x3/2 pads 1",
            2,
            2,
            [3, 3],
            [2, 2],
            Padding::Explicit([1; 4]),
            2,
        ),
        (
            "grouped 2x3 uneven pads",
            4,
            6,
            [2, 3],
            [1, 2],
            Padding::Explicit([0, 2, 1, 0]),
            2,
        ),
        (
            "1x1 with padding",
            2,
            3,
            [1, 1],
            [1, 1],
            Padding::Explicit([1, 0, 0, 1]),
            1,
        ),
    ]
}

fn conv(case: usize, seed: u64) -> Conv2d {
    let (_, i, o, k, s, p, g) = conv_cases()[case];
    Conv2d::init(i, o, k, s, p, g, &mut seeded_rng(seed, "conv")).unwrap()
}

/// ONNX `Conv` by its definition, in f64 loops.
fn naive_conv(c: &Conv2d, x: &Tensor) -> Tensor {
    let (n, ci, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let ([kh, kw], [sh, sw], g, o) = (c.kernel(), c.stride, c.group, c.outputs());
    let (pt, pl, oh, ow) = match c.padding {
        Padding::Explicit([t, l, b, r]) => {
            (t, l, (h + t + b - kh) / sh + 1, (w + l + r - kw) / sw + 1)
        }
        Padding::SameUpper => {
            let (oh, ow) = (h.div_ceil(sh), w.div_ceil(sw));
            let th = ((oh - 1) * sh + kh).saturating_sub(h);
            let tw = ((ow - 1) * sw + kw).saturating_sub(w);
            (th / 2, tw / 2, oh, ow)
        }
    };
    let (cg, og) = (ci / g, o / g);
    Tensor::from_shape_fn(vec![n, o, oh, ow], |d| {
        let (b, oc, y, xx) = (d[0], d[1], d[2], d[3]);
        let gi = oc / og;
        let mut acc = c.bias.value[[oc]] as f64;
        for cc in 0..cg {
            for ky in 0..kh {
                for kx in 0..kw {
                    let iy = (y * sh + ky) as isize - pt as isize;
                    let ix = (xx * sw + kx) as isize - pl as isize;
                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                        acc += c.weight.value[[oc, cc, ky, kx]] as f64
                            * x[[b, gi * cg + cc, iy as usize, ix as usize]] as f64;
                    }
                }
            }
        }
        acc as f32
    })
}

/// f32 sums of at most 3·5·5 products of values below 1 in size.
const CONV_TOL: f32 = 1e-5;

#[test]
fn convolutions_equal_onnx_conv_by_definition() {
    for (i, case) in conv_cases().iter().enumerate() {
        let mut c = conv(i, 1);
        // Odd and even sizes: SAME_UPPER pads unevenly on one of them.
        for (h, w) in [(7, 6), (8, 5)] {
            let x = random(&[3, case.1, h, w], 2, "x");
            let y = c.forward(&x, &mut Ctx::eval()).unwrap();
            let expect = naive_conv(&c, &x);
            assert_eq!(y.shape(), expect.shape(), "{}", case.0);
            let d = y
                .iter()
                .zip(expect.iter())
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(d < CONV_TOL, "{} on {h}x{w}: max diff {d}", case.0);
        }
    }
}

#[test]
fn convolution_gradients() {
    for (i, case) in conv_cases().iter().enumerate() {
        // 9 samples: three parallel chunks of partial gradients.
        check(case.0, &mut conv(i, 3), &random(&[9, case.1, 7, 6], 4, "x"));
    }
}

#[test]
fn convolution_shapes_are_checked() {
    let mut c = conv(1, 1);
    let err = c
        .forward(&random(&[2, 4, 7, 7], 1, "x"), &mut Ctx::eval())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("[batch, 3, height, width]") && err.contains("[2, 4, 7, 7]"),
        "{err}"
    );
    let mut c = conv(2, 1);
    let err = c
        .forward(&random(&[1, 2, 0, 4], 1, "x"), &mut Ctx::eval())
        .unwrap_err()
        .to_string();
    assert!(err.contains("kernel"), "{err}");
    let err = Conv2d::from_weights(
        random(&[5, 2, 3, 3], 1, "w"),
        Array1::zeros(5),
        [1, 1],
        Padding::SameUpper,
        2,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("divisible by the group count 2"), "{err}");
}

/// conv → BatchNorm → activation → depthwise → conv, plus the input: an inverted-residual
/// block (with GELU, whose lack of kinks suits finite differences).
fn residual_block(seed: u64, running_stats: bool) -> Graph {
    let mut rng = seeded_rng(seed, "block");
    let mut g = Graph::new();
    let pad = Padding::Explicit([1; 4]);
    let a = g
        .push_layer(
            "expand",
            Graph::INPUT,
            Box::new(
                Conv2d::init(3, 6, [1, 1], [1, 1], Padding::Explicit([0; 4]), 1, &mut rng).unwrap(),
            ),
        )
        .unwrap();
    let mut bn = BatchNorm::new(6);
    bn.use_running_stats = running_stats;
    let a = g.push_layer("bn", a, Box::new(bn)).unwrap();
    let a = g
        .push_layer("act", a, Box::new(Activation::new(Act::Gelu)))
        .unwrap();
    let a = g
        .push_layer(
            "dw",
            a,
            Box::new(Conv2d::init(6, 6, [3, 3], [1, 1], pad, 6, &mut rng).unwrap()),
        )
        .unwrap();
    let a = g
        .push_layer(
            "project",
            a,
            Box::new(
                Conv2d::init(6, 3, [1, 1], [1, 1], Padding::Explicit([0; 4]), 1, &mut rng).unwrap(),
            ),
        )
        .unwrap();
    g.push_add("add", a, Graph::INPUT).unwrap();
    g
}

#[test]
fn graph_with_a_residual_add() {
    let x = random(&[5, 3, 4, 4], 8, "x");
    check_with("residual block", &mut residual_block(1, false), &x, 3e-3);
    // The sum is the block's branch plus its input.
    let mut g = residual_block(1, false);
    let y = g.forward(&x, &mut Ctx::eval()).unwrap();
    let mut branch = residual_block(1, false);
    branch.freeze_first(0);
    let names: Vec<&str> = g.nodes().iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["expand", "bn", "act", "dw", "project", "add"]);
    let mut chain = Sequential::new();
    let mut rng = seeded_rng(1, "block");
    let pad = Padding::Explicit([1; 4]);
    chain = chain
        .push(Conv2d::init(3, 6, [1, 1], [1, 1], Padding::Explicit([0; 4]), 1, &mut rng).unwrap())
        .push(BatchNorm::new(6))
        .push(Activation::new(Act::Gelu))
        .push(Conv2d::init(6, 6, [3, 3], [1, 1], pad, 6, &mut rng).unwrap())
        .push(Conv2d::init(6, 3, [1, 1], [1, 1], Padding::Explicit([0; 4]), 1, &mut rng).unwrap());
    let expect = chain.forward(&x, &mut Ctx::eval()).unwrap() + &x;
    assert_eq!(y, expect);
}

#[test]
fn a_frozen_prefix_runs_in_evaluation_mode_and_gets_no_gradient() {
    let x = random(&[4, 3, 4, 4], 9, "x");
    let mut g = residual_block(2, false);
    g.freeze_through("bn").unwrap();
    assert_eq!(g.frozen(), 2);
    let y = g.forward(&x, &mut train_ctx()).unwrap();
    let w = random(y.shape(), 12, "w");
    let dx = g.backward(&w).unwrap();
    // The gradient reaches the input through the skip connection only.
    assert_eq!(dx, w);
    // The same function unfrozen: BatchNorm on running statistics in training too.
    let mut open = residual_block(2, true);
    let y_open = open.forward(&x, &mut train_ctx()).unwrap();
    assert_eq!(
        y, y_open,
        "frozen BatchNorm must use its running statistics"
    );
    open.backward(&w).unwrap();
    let grads = |m: &Graph| {
        let mut out = Vec::new();
        m.visit("", &mut |n, p| {
            out.push((n.to_string(), p.trainable(), p.grad.clone()))
        });
        out
    };
    for ((name, trainable, gf), (_, _, go)) in grads(&g).into_iter().zip(grads(&open)) {
        let frozen = name.starts_with("expand.") || name.starts_with("bn.");
        assert_eq!(trainable, !frozen, "{name}");
        if frozen {
            assert!(gf.iter().all(|&v| v == 0.0), "{name} got a gradient");
        } else if !name.contains("running") {
            assert_eq!(gf, go, "{name}");
            assert!(gf.iter().any(|&v| v != 0.0), "{name} got no gradient");
        }
    }
    // ... and the unfrozen graph's gradients are exact.
    check(
        "residual block, BatchNorm on running statistics",
        &mut open,
        &x,
    );
    let err = residual_block(2, false)
        .freeze_through("blocks.3")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no node is named `blocks.3`") && err.contains("`expand`"),
        "{err}"
    );
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

/// conv → BatchNorm → `act` as a graph (the activation fused into the BatchNorm) and as
/// separate layers in a chain: the same outputs, input gradients and parameter gradients,
/// bit for bit, in training (batch statistics) and evaluation.
#[test]
fn a_fused_batch_norm_and_activation_equal_the_separate_layers() {
    for act in [Act::Relu, Act::Relu6, Act::Gelu] {
        let build_conv = || {
            let mut rng = seeded_rng(4, "fused");
            Conv2d::init(3, 5, [3, 3], [1, 1], Padding::Explicit([1; 4]), 1, &mut rng).unwrap()
        };
        // Scale 4 and shift 2: ReLU6 sees values on both sides of 0 and of 6.
        let bn = || {
            BatchNorm::from_stats(
                Array1::from_elem(5, 4.0),
                Array1::from_elem(5, 2.0),
                Array1::zeros(5),
                Array1::ones(5),
                1e-5,
                0.1,
            )
            .unwrap()
        };
        let mut g = Graph::new();
        let v = g
            .push_layer("conv", Graph::INPUT, Box::new(build_conv()))
            .unwrap();
        let v = g.push_layer("bn", v, Box::new(bn())).unwrap();
        g.push_layer("act", v, Box::new(Activation::new(act)))
            .unwrap();
        let mut chain = Sequential::new()
            .push_named("conv", build_conv())
            .push_named("bn", bn())
            .push_named("act", Activation::new(act));
        let x = random(&[4, 3, 5, 5], 21, "x");
        for train in [true, false] {
            let ctx = || if train { train_ctx() } else { Ctx::eval() };
            let yg = g.forward(&x, &mut ctx()).unwrap();
            let yc = chain.forward(&x, &mut ctx()).unwrap();
            assert_eq!(yg, yc, "{act:?}, train {train}: outputs");
            if !train {
                continue;
            }
            if act == Act::Relu6 {
                assert!(yg.iter().any(|&v| v == 6.0) && yg.iter().any(|&v| v == 0.0));
            }
            let w = random(yg.shape(), 22, "w");
            assert_eq!(
                g.backward(&w).unwrap(),
                chain.backward(&w).unwrap(),
                "{act:?}: dx"
            );
            let grads = |m: &dyn Module| {
                let mut out = Vec::new();
                m.visit("", &mut |n, p| out.push((n.to_string(), p.grad.clone())));
                out
            };
            assert_eq!(grads(&g), grads(&chain), "{act:?}: parameter gradients");
        }
    }
    // And the fused pass's gradient against finite differences (shifted by 3, the
    // normalised values stay between ReLU6's kinks at 0 and 6).
    let mut g = Graph::new();
    let bn = BatchNorm::from_stats(
        Array1::ones(3),
        Array1::from_elem(3, 3.0),
        Array1::zeros(3),
        Array1::ones(3),
        1e-5,
        0.1,
    )
    .unwrap();
    let v = g.push_layer("bn", Graph::INPUT, Box::new(bn)).unwrap();
    g.push_layer("act", v, Box::new(Activation::new(Act::Relu6)))
        .unwrap();
    check_with(
        "fused batchnorm + relu6",
        &mut g,
        &random(&[6, 3, 2, 2], 5, "x"),
        1e-3,
    );
}

/// Depthwise convolutions against naive loops, forward and backward (input, kernel and
/// bias gradients, accumulated in f64), on every width from 1 to 20 (every remainder after
/// the 16-value lanes and the stride-2 split), heights 1 to 5, 3×3 and 5×5 kernels,
/// strides 1 and 2, symmetric, asymmetric and SAME_UPPER padding, batch 1 and 3.
#[test]
fn depthwise_kernels_equal_naive_loops_on_every_remainder() {
    for (kernel, stride, padding) in [
        (3, 1, Padding::Explicit([1; 4])),
        (3, 2, Padding::Explicit([1; 4])),
        (3, 2, Padding::Explicit([0; 4])),
        (3, 2, Padding::SameUpper),
        (3, 1, Padding::SameUpper),
        (5, 2, Padding::SameUpper),
        (5, 1, Padding::Explicit([2; 4])),
        (5, 2, Padding::Explicit([1, 2, 2, 1])),
        (3, 2, Padding::Explicit([0, 0, 1, 1])),
    ] {
        for w in 1..=20 {
            for (n, h) in [(1, 1), (1, 3), (3, 5)] {
                // Channel counts on every side of the kernels' 16-channel blocks.
                let ch = [4, 16, 17, 33][w % 4];
                let what = format!(
                    "{kernel}x{kernel}/{stride}, {padding:?}, batch {n}, {ch} channels, {h}x{w}"
                );
                let mut rng = seeded_rng(w as u64, "dw");
                let mut c = Conv2d::init(
                    ch,
                    ch,
                    [kernel, kernel],
                    [stride, stride],
                    padding,
                    ch,
                    &mut rng,
                )
                .unwrap();
                let x = random(&[n, ch, h, w], w as u64, "x");
                let Ok(y) = c.forward(&x, &mut train_ctx()) else {
                    continue;
                };
                let expect = naive_conv(&c, &x);
                let d = (&y - &expect).iter().fold(0.0f32, |m, v| m.max(v.abs()));
                assert!(d < CONV_TOL, "{what}: forward differs by {d}");
                let dy = random(y.shape(), 9, "dy");
                let dx = c.backward(&dy).unwrap();
                let (ndx, ndk, ndb) = naive_depthwise_backward(&c, &x, &dy);
                let close = |a: &[f32], b: &[f64]| {
                    a.iter().zip(b).all(|(&a, &b)| (a as f64 - b).abs() < 1e-4)
                };
                assert!(
                    close(dx.as_slice().unwrap(), &ndx),
                    "{what}: input gradient"
                );
                assert!(
                    close(c.weight.grad.as_slice().unwrap(), &ndk),
                    "{what}: kernel gradient"
                );
                assert!(
                    close(c.bias.grad.as_slice().unwrap(), &ndb),
                    "{what}: bias gradient"
                );
            }
        }
    }
}

/// The input, kernel and bias gradients of a depthwise convolution by definition, in f64.
fn naive_depthwise_backward(c: &Conv2d, x: &Tensor, dy: &Tensor) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (n, ch, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let (oh, ow) = (dy.shape()[2], dy.shape()[3]);
    let ([kh, kw], [sh, sw]) = (c.kernel(), c.stride);
    let (pt, pl) = match c.padding {
        Padding::Explicit([t, l, _, _]) => (t, l),
        Padding::SameUpper => (
            ((oh - 1) * sh + kh).saturating_sub(h) / 2,
            ((ow - 1) * sw + kw).saturating_sub(w) / 2,
        ),
    };
    let mut dx = vec![0.0f64; x.len()];
    let mut dk = vec![0.0f64; ch * kh * kw];
    let mut db = vec![0.0f64; ch];
    for b in 0..n {
        for cc in 0..ch {
            for y in 0..oh {
                for xx in 0..ow {
                    let g = dy[[b, cc, y, xx]] as f64;
                    db[cc] += g;
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let iy = (y * sh + ky) as isize - pt as isize;
                            let ix = (xx * sw + kx) as isize - pl as isize;
                            if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                let (iy, ix) = (iy as usize, ix as usize);
                                dk[(cc * kh + ky) * kw + kx] += g * x[[b, cc, iy, ix]] as f64;
                                dx[((b * ch + cc) * h + iy) * w + ix] +=
                                    g * c.weight.value[[cc, 0, ky, kx]] as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    (dx, dk, db)
}

/// Without the input's gradient, a graph's parameter gradients are unchanged, and the
/// layers reading the input (a 3×3 and a 1×1 convolution here) contribute zeros to it.
#[test]
fn skipping_the_input_gradient_leaves_parameter_gradients_unchanged() {
    let build = || {
        let mut rng = seeded_rng(6, "skip");
        let mut g = Graph::new();
        let v = g
            .push_layer(
                "stem",
                Graph::INPUT,
                Box::new(
                    Conv2d::init(3, 4, [3, 3], [2, 2], Padding::SameUpper, 1, &mut rng).unwrap(),
                ),
            )
            .unwrap();
        let v = g.push_layer("bn", v, Box::new(BatchNorm::new(4))).unwrap();
        let v = g
            .push_layer("act", v, Box::new(Activation::new(Act::Relu6)))
            .unwrap();
        g.push_layer(
            "pw",
            v,
            Box::new(
                Conv2d::init(4, 2, [1, 1], [1, 1], Padding::Explicit([0; 4]), 1, &mut rng).unwrap(),
            ),
        )
        .unwrap();
        g
    };
    let x = random(&[3, 3, 6, 5], 30, "x");
    let run = |input_grad: bool| {
        let mut g = build();
        g.set_input_grad(input_grad);
        let y = g.forward(&x, &mut train_ctx()).unwrap();
        let dx = g.backward(&random(y.shape(), 31, "w")).unwrap();
        let mut grads = Vec::new();
        g.visit("", &mut |n, p| grads.push((n.to_string(), p.grad.clone())));
        (dx, grads)
    };
    let (dx_on, grads_on) = run(true);
    let (dx_off, grads_off) = run(false);
    assert_eq!(grads_on, grads_off);
    assert!(dx_on.iter().any(|&v| v != 0.0));
    assert!(dx_off.iter().all(|&v| v == 0.0));
    assert_eq!(dx_off.shape(), x.shape());
}

/// ONNX pooling by its definition, in f64: max over the window's positions inside the
/// input, or their sum divided by the window (padding included) or by those positions.
fn naive_pool(p: &tl_nn::Pool2d, x: &Tensor) -> Tensor {
    let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let ([kh, kw], [sh, sw]) = (p.kernel, p.stride);
    let (pt, pl, oh, ow) = match p.padding {
        Padding::Explicit([t, l, b, r]) => {
            (t, l, (h + t + b - kh) / sh + 1, (w + l + r - kw) / sw + 1)
        }
        Padding::SameUpper => {
            let (oh, ow) = (h.div_ceil(sh), w.div_ceil(sw));
            (
                ((oh - 1) * sh + kh).saturating_sub(h) / 2,
                ((ow - 1) * sw + kw).saturating_sub(w) / 2,
                oh,
                ow,
            )
        }
    };
    Tensor::from_shape_fn(vec![n, c, oh, ow], |d| {
        let (mut best, mut sum, mut count) = (f64::NEG_INFINITY, 0.0f64, 0usize);
        for ky in 0..kh {
            for kx in 0..kw {
                let iy = (d[2] * sh + ky) as isize - pt as isize;
                let ix = (d[3] * sw + kx) as isize - pl as isize;
                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                    let v = x[[d[0], d[1], iy as usize, ix as usize]] as f64;
                    best = best.max(v);
                    sum += v;
                    count += 1;
                }
            }
        }
        match p.kind {
            tl_nn::PoolKind::Max => best as f32,
            tl_nn::PoolKind::Average {
                count_include_pad: true,
            } => (sum / (kh * kw) as f64) as f32,
            tl_nn::PoolKind::Average {
                count_include_pad: false,
            } => (sum / count as f64) as f32,
        }
    })
}

#[test]
fn pooling_equals_onnx_by_definition_and_its_gradients_are_exact() {
    use tl_nn::{Pool2d, PoolKind};
    let kinds = [
        PoolKind::Max,
        PoolKind::Average {
            count_include_pad: true,
        },
        PoolKind::Average {
            count_include_pad: false,
        },
    ];
    let windows = [
        ([3, 3], [1, 1], Padding::Explicit([1; 4])),
        ([3, 3], [2, 2], Padding::Explicit([0; 4])),
        ([3, 3], [2, 2], Padding::SameUpper),
        ([2, 2], [2, 2], Padding::Explicit([0; 4])),
        ([5, 5], [1, 1], Padding::Explicit([2; 4])),
    ];
    for kind in kinds {
        for (kernel, stride, padding) in windows {
            let what = format!("{kind:?} {kernel:?}/{stride:?} {padding:?}");
            for (h, w) in [(7, 6), (8, 5), (5, 5)] {
                let mut p = Pool2d::new(kind, kernel, stride, padding).unwrap();
                let x = random(&[2, 3, h, w], 40, "x");
                let y = p.forward(&x, &mut Ctx::eval()).unwrap();
                let expect = naive_pool(&p, &x);
                assert_eq!(y.shape(), expect.shape(), "{what}");
                let d = (&y - &expect).iter().fold(0.0f32, |m, v| m.max(v.abs()));
                assert!(d < CONV_TOL, "{what} on {h}x{w}: max diff {d}");
            }
            // Values well apart: max pooling is differentiable at them.
            let mut p = Pool2d::new(kind, kernel, stride, padding).unwrap();
            check(&what, &mut p, &spaced(&[2, 2, 7, 6], 41));
        }
    }
    let err = Pool2d::new(PoolKind::Max, [0, 3], [1, 1], Padding::SameUpper).unwrap_err();
    assert!(err.to_string().contains("kernel"), "{err}");
}

/// An Inception-like block: two branches (a 1×1 convolution, a 3×3 max pool then a 1×1
/// convolution) joined by `Concat` along the channels.
fn concat_block(seed: u64) -> Graph {
    let mut rng = seeded_rng(seed, "concat");
    let mut g = Graph::new();
    let pw = |i, o, rng: &mut _| {
        Box::new(Conv2d::init(i, o, [1, 1], [1, 1], Padding::Explicit([0; 4]), 1, rng).unwrap())
    };
    let a = g.push_layer("a", Graph::INPUT, pw(3, 2, &mut rng)).unwrap();
    let p = g
        .push_layer(
            "pool",
            Graph::INPUT,
            Box::new(
                tl_nn::Pool2d::new(
                    tl_nn::PoolKind::Max,
                    [3, 3],
                    [1, 1],
                    Padding::Explicit([1; 4]),
                )
                .unwrap(),
            ),
        )
        .unwrap();
    let b = g.push_layer("b", p, pw(3, 4, &mut rng)).unwrap();
    g.push_concat("cat", &[a, b, Graph::INPUT]).unwrap();
    g
}

#[test]
fn a_concat_of_branches_joins_channels_and_its_gradient_is_exact() {
    let x = spaced(&[3, 3, 5, 4], 42);
    let mut g = concat_block(1);
    let y = g.forward(&x, &mut Ctx::eval()).unwrap();
    assert_eq!(y.shape(), [3, 2 + 4 + 3, 5, 4]);
    // The last three channels are the input itself.
    assert_eq!(y.slice(ndarray::s![.., 6.., .., ..]).into_dyn(), x.view());
    check("concat block", &mut concat_block(1), &x);
    // Inputs that differ in more than the channels are refused by name.
    let mut bad = Graph::new();
    let mut rng = seeded_rng(2, "bad");
    let s = bad
        .push_layer(
            "down",
            Graph::INPUT,
            Box::new(Conv2d::init(3, 3, [3, 3], [2, 2], Padding::SameUpper, 1, &mut rng).unwrap()),
        )
        .unwrap();
    bad.push_concat("join", &[s, Graph::INPUT]).unwrap();
    let err = bad.forward(&x, &mut Ctx::eval()).unwrap_err().to_string();
    assert!(err.contains("`join` (Concat)"), "{err}");
}

/// A graph with two tapped outputs seen as one module: both outputs flattened side by side,
/// so that the finite-difference check covers `forward_all` and `backward_all` together.
#[derive(Debug)]
struct Taps(Graph);

impl Module for Taps {
    fn forward(&mut self, x: &Tensor, ctx: &mut Ctx) -> tl_nn::Result<Tensor> {
        let outs = self.0.forward_all(x, ctx)?;
        let n = x.shape()[0];
        let flat: Vec<_> = outs
            .iter()
            .map(|t| t.to_shape((n, t.len() / n)).unwrap().to_owned())
            .collect();
        let views: Vec<_> = flat.iter().map(|t| t.view()).collect();
        Ok(ndarray::concatenate(ndarray::Axis(1), &views)
            .unwrap()
            .into_dyn())
    }

    fn backward(&mut self, g: &Tensor) -> tl_nn::Result<Tensor> {
        // Output shapes: [n, 2, 5, 4] (the first convolution) and [n, 9, 5, 4] (the concat).
        let n = g.shape()[0];
        let first = 2 * 5 * 4;
        let a = g
            .slice(ndarray::s![.., ..first])
            .to_shape((n, 2, 5, 4))
            .unwrap()
            .to_owned();
        let b = g
            .slice(ndarray::s![.., first..])
            .to_shape((n, 9, 5, 4))
            .unwrap()
            .to_owned();
        self.0
            .backward_all(&[Some(a.into_dyn()), Some(b.into_dyn())])
    }

    fn visit(&self, p: &str, f: &mut dyn FnMut(&str, &tl_nn::Param)) {
        self.0.visit(p, f)
    }

    fn visit_mut(&mut self, p: &str, f: &mut dyn FnMut(&str, &mut tl_nn::Param)) {
        self.0.visit_mut(p, f)
    }

    fn describe(&self) -> String {
        "taps".into()
    }
}

#[test]
fn tapped_outputs_run_together_and_their_gradients_add() {
    let x = spaced(&[3, 3, 5, 4], 43);
    let mut g = concat_block(3);
    let a = 1; // the value of node `a`
    let cat = g.len();
    g.set_outputs(&[a, cat]).unwrap();
    assert_eq!(g.outputs(), [a, cat]);
    let outs = g.forward_all(&x, &mut Ctx::eval()).unwrap();
    assert_eq!(outs.len(), 2);
    assert_eq!(
        outs[0].view(),
        outs[1].slice(ndarray::s![.., ..2, .., ..]).into_dyn()
    );
    // One output through `forward` is refused: the graph has two.
    let err = g.forward(&x, &mut Ctx::eval()).unwrap_err().to_string();
    assert!(err.contains("2 outputs"), "{err}");
    assert!(g.set_outputs(&[99]).is_err());
    check("two tapped outputs", &mut Taps(g), &x);
}
