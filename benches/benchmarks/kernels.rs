//! The training engine's kernels one by one, each forward + backward in training mode at
//! the shapes that dominate MobileNetV2 fine-tuning (112 px, batch 16) and MiniLM (batch 32
//! × 64 tokens = 2,048 rows of 384). Throughput is in floating-point operations (criterion
//! reports them as "elem/s": divide by 1e9 for GFLOP/s); `gemm_*` is the machine's matrix
//! product alone (ndarray's, which every dense layer uses), the reference for the others.
//! `attention_*` is MiniLM's attention forward + backward. `benches/python/train_baseline.py
//! gemm|attention` runs the same shapes in PyTorch; `cargo xtask bench-report --only engine`
//! runs both sides alternately.
//!
//! `cargo bench -p tl-benches -- kernels` runs this group.

use criterion::{Criterion, Throughput, criterion_group};
use ndarray::{Array2, ArrayD, Dimension};
use tl_nn::{Act, Activation, BatchNorm, Conv2d, Ctx, Graph, Module, Padding, Tensor};

/// A case: name, layer, input shape, multiply-adds of one forward pass.
type Case = (&'static str, Box<dyn Module>, Vec<usize>, usize);

fn input(shape: &[usize]) -> Tensor {
    ArrayD::from_shape_fn(shape.to_vec(), |i| {
        (i.as_array_view().iter().sum::<usize>() % 13) as f32 / 6.0 - 1.0
    })
}

fn train(m: &mut dyn Module, x: &Tensor) -> Tensor {
    let y = m
        .forward(x, &mut Ctx::train(tl_core::rng::seeded_rng(0, "bench")))
        .unwrap();
    m.backward(&y).unwrap()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("kernels");
    g.sample_size(10);
    // MiniLM's dense layers: 2,048 rows by 384 → 384 and 384 → 1,536.
    for (m, k, n) in [(2048usize, 384usize, 384usize), (2048, 384, 1536)] {
        let a = Array2::from_shape_fn((m, k), |(i, j)| ((i + j) % 7) as f32 / 7.0);
        let b = Array2::from_shape_fn((k, n), |(i, j)| ((i * 3 + j) % 5) as f32 / 5.0);
        g.throughput(Throughput::Elements((2 * m * k * n) as u64));
        g.bench_function(format!("gemm_{m}x{k}x{n}"), |bench| {
            bench.iter(|| tl_nn::kernels::matmul(&a.view(), &b.view()))
        });
        g.bench_function(format!("gemm_ndarray_{m}x{k}x{n}"), |bench| {
            bench.iter(|| a.dot(&b))
        });
    }
    // MiniLM's attention: 32 sequences × 12 heads × 64 tokens × 32 dimensions per head,
    // forward and backward (output gradient of ones); six products of 64 × 64 × 32.
    {
        use tl_nn::kernels::attention::{Dims, Mask, backward, forward};
        let d = Dims {
            batch: 32,
            heads: 12,
            queries: 64,
            keys: 64,
            dim: 32,
        };
        let len = d.batch * d.heads * d.queries * d.dim;
        let q: Vec<f32> = (0..len).map(|i| (i % 13) as f32 / 13.0 - 0.5).collect();
        let k: Vec<f32> = (0..len).map(|i| (i % 7) as f32 / 7.0 - 0.5).collect();
        let v: Vec<f32> = (0..len).map(|i| (i % 5) as f32 / 5.0 - 0.5).collect();
        let ones = vec![1.0f32; len];
        let (mut out, mut p) = (vec![0.0; len], vec![0.0; d.batch * d.heads * 64 * 64]);
        let (mut dq, mut dk, mut dv) = (vec![0.0; len], vec![0.0; len], vec![0.0; len]);
        g.throughput(Throughput::Elements(
            (12 * d.batch * d.heads * 64 * 64 * 32) as u64,
        ));
        g.bench_function("attention_b32_h12_t64_d32", |bench| {
            bench.iter(|| {
                forward((&q, &k, &v), d, Mask::default(), &mut out, &mut p);
                backward((&q, &k, &v), &p, &ones, d, (&mut dq, &mut dk, &mut dv));
            })
        });
    }
    let mut rng = tl_core::rng::seeded_rng(1, "kernels");
    let (n, c, s) = (16usize, 96usize, 28usize);
    let cases: Vec<Case> = vec![
        (
            "pointwise_96to576_28px",
            Box::new(
                Conv2d::init(
                    c,
                    576,
                    [1, 1],
                    [1, 1],
                    Padding::Explicit([0; 4]),
                    1,
                    &mut rng,
                )
                .unwrap(),
            ),
            vec![n, c, s, s],
            n * 576 * c * s * s,
        ),
        (
            "depthwise_144_56px_s2",
            Box::new(
                Conv2d::init(
                    144,
                    144,
                    [3, 3],
                    [2, 2],
                    Padding::Explicit([1; 4]),
                    144,
                    &mut rng,
                )
                .unwrap(),
            ),
            vec![n, 144, 56, 56],
            n * 144 * 9 * 28 * 28,
        ),
        (
            "depthwise_576_14px",
            Box::new(
                Conv2d::init(
                    576,
                    576,
                    [3, 3],
                    [1, 1],
                    Padding::Explicit([1; 4]),
                    576,
                    &mut rng,
                )
                .unwrap(),
            ),
            vec![n, 576, 14, 14],
            n * 576 * 9 * 14 * 14,
        ),
        (
            "dense3x3_32to32_56px",
            Box::new(
                Conv2d::init(
                    32,
                    32,
                    [3, 3],
                    [1, 1],
                    Padding::Explicit([1; 4]),
                    1,
                    &mut rng,
                )
                .unwrap(),
            ),
            vec![n, 32, 56, 56],
            n * 32 * 32 * 9 * 56 * 56,
        ),
    ];
    for (name, mut layer, shape, macs) in cases {
        let x = input(&shape);
        // Forward, input gradient and weight gradient: three products of the forward's size.
        g.throughput(Throughput::Elements((3 * 2 * macs) as u64));
        g.bench_function(name, |bench| bench.iter(|| train(layer.as_mut(), &x)));
    }
    // BatchNorm with ReLU6 fused (as the graph runs it): about 10 operations per value.
    let mut bn = Graph::new();
    let v = bn
        .push_layer("bn", Graph::INPUT, Box::new(BatchNorm::new(144)))
        .unwrap();
    bn.push_layer("act", v, Box::new(Activation::new(Act::Relu6)))
        .unwrap();
    let x = input(&[n, 144, 56, 56]);
    g.throughput(Throughput::Elements((10 * x.len()) as u64));
    g.bench_function("batchnorm_relu6_144_56px", |bench| {
        bench.iter(|| train(&mut bn, &x))
    });
    g.finish();
}

criterion_group!(benches, bench);
