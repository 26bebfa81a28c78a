//! The linear probe and the MLP trainer on synthetic features (`tl_head::synthetic::blobs`):
//! a probe fit to tolerance 1e-7 (rows per second of training data), one objective
//! evaluation's worth of MLP epoch, and a forward + backward pass of the 1×1 head
//! convolution that last-block fine-tuning trains.

use criterion::{Criterion, Throughput, criterion_group};
use tl_head::{
    net::{HeadNet, HeadSpec, TaskSpec},
    probe::{ProbeConfig, ProbeData, fit},
    synthetic::blobs,
    train::{Labelled, TrainConfig, Trainer},
};
use tl_nn::{Conv2d, Ctx, Module, Tensor};

fn bench(c: &mut Criterion) {
    let (x, y) = blobs(4000, 1280, 10, 0);
    let mut g = c.benchmark_group("heads");
    g.sample_size(10);
    g.throughput(Throughput::Elements(4000));
    g.bench_function("probe_fit/4000x1280x10_tol1e-7", |b| {
        b.iter(|| {
            fit(
                &ProbeData {
                    x: x.view(),
                    y: &y,
                    classes: 10,
                },
                &ProbeConfig::new(1.0).tol(1e-7),
                None,
            )
            .unwrap()
        })
    });
    let tasks = vec![TaskSpec {
        name: "y".into(),
        classes: (0..10).map(|i| i.to_string()).collect(),
        weight: 1.0,
    }];
    let labels = vec![y.iter().map(|&v| Some(v)).collect::<Vec<_>>()];
    let xd = x.clone().into_dyn();
    let mut cfg = TrainConfig::default();
    cfg.epochs = 1;
    g.bench_function("mlp_epoch/4000x1280_hidden256_batch64", |b| {
        b.iter(|| {
            let mut net = HeadNet::build(&HeadSpec::mlp(vec![256]), 1280, &tasks, 0).unwrap();
            Trainer::new(&cfg, &tasks)
                .fit(
                    &mut net,
                    &Labelled {
                        x: &xd,
                        labels: &labels,
                    },
                    None,
                )
                .unwrap()
        })
    });
    // EfficientNet-Lite0's head convolution on 112 px maps (4×4), batch 64.
    let w = Tensor::from_shape_fn(vec![1280, 320, 1, 1], |i| {
        ((i[0] * 7 + i[1]) % 13) as f32 * 0.01 - 0.06
    });
    let mut conv = Conv2d::pointwise(w, ndarray::Array1::zeros(1280)).unwrap();
    let maps = Tensor::from_shape_fn(vec![64, 320, 4, 4], |i| {
        ((i[0] + i[1] * 3 + i[2] + i[3]) % 11) as f32 * 0.1
    });
    g.throughput(Throughput::Elements(64));
    g.bench_function("conv1x1_forward_backward/64x320x4x4->1280", |b| {
        b.iter(|| {
            let y = conv
                .forward(&maps, &mut Ctx::train(tl_core::rng::seeded_rng(0, "b")))
                .unwrap();
            conv.backward(&y).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
