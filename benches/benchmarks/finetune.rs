//! Fine-tuning the whole network: forward + backward of MobileNetV2 (BatchNorm kept, batch
//! statistics, every layer trainable) in `tl-nn`, against its evaluation-mode forward in
//! `tl-nn` and ONNX Runtime's forward pass alone (CPU, 2 intra-op threads) on the same
//! batch. `tl-nn` runs on rayon's pool (`RAYON_NUM_THREADS`, default: every core).
//!
//! `cargo xtask bench-report --only finetune` runs this group and writes its images per
//! second into `docs/benchmarks.md`.

use criterion::{Criterion, Throughput, criterion_group};
use ndarray::ArrayD;
use tl_head::import::import_graph;
use tl_nn::{Ctx, Module, ModuleExt, Tensor};
use tl_onnx::OnnxModel;
use tl_runtime::{Input, Runtime, RuntimeOptions, Session, SessionOptions};

/// (side in pixels, batch) of each measurement; `cargo xtask bench-report` reads the same.
const CASES: [(usize, usize); 2] = [(112, 16), (224, 8)];

fn bench(c: &mut Criterion) {
    let path = super::fetched("models", "mobilenet-v2", "model-bn.onnx");
    let model = OnnxModel::load(&path).unwrap();
    let mut net = import_graph(&model, "input", "features").unwrap().layers;
    // As `tl train --finetune` and the PyTorch baseline: no gradient for the pixels.
    net.set_input_grad(false);
    let rt = Runtime::init(&RuntimeOptions::default()).unwrap();
    let mut session =
        Session::from_file(rt, &path, &SessionOptions::default().threads(Some(2))).unwrap();
    let mut g = c.benchmark_group("finetune");
    g.sample_size(10);
    for (size, batch) in CASES {
        let x: Tensor = ArrayD::from_shape_fn(vec![batch, 3, size, size], |i| {
            ((i[1] * 7 + i[2] * 3 + i[3] + i[0]) % 17) as f32 / 8.0 - 1.0
        });
        g.throughput(Throughput::Elements(batch as u64));
        // A fresh batch each step (made outside the timing), as the PyTorch baseline does.
        let mut step = 0usize;
        g.bench_function(format!("train_{size}px_b{batch}"), |b| {
            b.iter_batched(
                || {
                    step += 1;
                    ArrayD::from_shape_fn(vec![batch, 3, size, size], |i| {
                        ((i[1] * 7 + i[2] * 3 + i[3] + i[0] + step) % 17) as f32 / 8.0 - 1.0
                    })
                },
                |x: Tensor| {
                    net.zero_grad();
                    let y = net
                        .forward_owned(x, &mut Ctx::train(tl_core::rng::seeded_rng(0, "bench")))
                        .unwrap();
                    net.backward(&Tensor::ones(y.raw_dim())).unwrap()
                },
                criterion::BatchSize::LargeInput,
            )
        });
        g.bench_function(format!("eval_{size}px_b{batch}"), |b| {
            b.iter(|| net.predict(&x).unwrap())
        });
        g.bench_function(format!("onnxruntime_{size}px_b{batch}"), |b| {
            b.iter(|| {
                session
                    .run(&[("input", Input::F32(x.view()))], &["features"])
                    .unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
