//! Throughput benches (items per second). The models come from `cargo xtask fetch-models`.
//!
//! `cargo bench -p tl-benches` runs them; `cargo bench -p tl-benches -- inference` one group.

mod benchmarks;

criterion::criterion_main!(
    benchmarks::preprocess::benches,
    benchmarks::inference::benches,
    benchmarks::heads::benches,
    benchmarks::finetune::benches,
    benchmarks::kernels::benches
);
