//! The throughput part of the `finetune` section of `cargo xtask bench-report`: runs the
//! criterion group `finetune` (benches/benchmarks/finetune.rs) and tabulates its images
//! per second: MobileNetV2 forward + backward in `tl-nn`, its forward alone in `tl-nn`,
//! and ONNX Runtime's forward, on the same batches.

use std::{fmt::Write as _, path::Path, process::Command};

use anyhow::{Context, Result};

/// (side, batch) as the bench measures them (benches/benchmarks/finetune.rs `CASES`).
const CASES: [(usize, usize); 2] = [(112, 16), (224, 8)];

/// Criterion's mean time per iteration of one benchmark, in seconds.
fn mean_seconds(id: &str) -> Result<f64> {
    let file = Path::new("target/criterion/finetune")
        .join(id)
        .join("new/estimates.json");
    let v: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&file)
            .with_context(|| format!("no criterion estimate {}", file.display()))?,
    )?;
    Ok(v["mean"]["point_estimate"]
        .as_f64()
        .context("estimates.json has no mean")?
        / 1e9)
}

pub fn throughput(cargo: &str) -> Result<String> {
    crate::run(Command::new(cargo).args([
        "bench",
        "-p",
        "tl-benches",
        "--bench",
        "bench_main",
        "--",
        "finetune",
    ]))?;
    let mut s = String::from(
        "## Fine-tuning the whole network (issue 8)\n\n### Throughput: MobileNetV2, BatchNorm kept\n\nImages per second (criterion means of 10 samples, `cargo bench -p tl-benches -- finetune`): every layer trainable, BatchNorm on batch statistics, forward + backward in `tl-nn` (rayon over the batch, all cores); `tl-nn`'s evaluation-mode forward; ONNX Runtime's forward pass (CPU, 2 intra-op threads) on the same batch.\n\n| input | batch | tl-nn forward + backward | tl-nn forward | ONNX Runtime forward | ORT forward / tl-nn training |\n|---|---|---|---|---|---|\n",
    );
    for (size, batch) in CASES {
        let rate = |what: &str| -> Result<f64> {
            Ok(batch as f64 / mean_seconds(&format!("{what}_{size}px_b{batch}"))?)
        };
        let (train, eval, ort) = (rate("train")?, rate("eval")?, rate("onnxruntime")?);
        let _ = writeln!(
            s,
            "| {size} px | {batch} | {train:.1} img/s | {eval:.1} img/s | {ort:.1} img/s | {:.1}× |",
            ort / train
        );
    }
    Ok(s)
}
