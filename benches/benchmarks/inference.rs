//! EfficientNet-Lite0 forward passes on ready tensors, ONNX Runtime CPU, 2 intra-op threads.

use criterion::{Criterion, Throughput, criterion_group};
use ndarray::ArrayD;
use tl_runtime::{Input, Runtime, RuntimeOptions, Session, SessionOptions};

fn bench(c: &mut Criterion) {
    let model = super::fetched("models", "efficientnet-lite0", "model.onnx");
    let rt = Runtime::init(&RuntimeOptions::default()).unwrap();
    let mut session =
        Session::from_file(rt, &model, &SessionOptions::default().threads(Some(2))).unwrap();
    let mut g = c.benchmark_group("inference/efficientnet-lite0");
    g.sample_size(10);
    for (size, batch) in [(224usize, 1usize), (224, 16), (112, 16)] {
        let x = ArrayD::<f32>::from_elem(vec![batch, 3, size, size], 0.1);
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_function(format!("{size}px/batch{batch}"), |b| {
            b.iter(|| {
                session
                    .run(&[("input", Input::F32(x.view()))], &["logits"])
                    .unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
