//! `tl gpu-check`: one command that tells a GPU user whether CUDA works here and what it buys.
//!
//! It checks readiness (fetching the CUDA runtime if it is missing), then extracts features
//! with EfficientNet-Lite0 (MNIST at 224 px) and MiniLM (film reviews) on the reference device
//! and on the GPU, at several batch sizes, each run in its own `tl extract` process (a process
//! holds one ONNX Runtime library) with an empty feature store, so every row is computed.
//! It compares the two devices' features and prints end-to-end throughput beside the card's
//! compute roofline. It never loads ONNX Runtime itself.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;
use tl_core::Device;
use tl_hub::{Fetcher, Registry};

use crate::{Global, JSON_SCHEMA_VERSION, parse_device};

#[derive(Debug, Args)]
pub struct GpuCheckArgs {
    /// The device to check.
    #[arg(long, default_value = "cuda", value_parser = parse_device)]
    pub device: Device,
    /// The reference its features are compared with and its throughput shown beside.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub against: Device,
    /// Batch sizes to time, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32,128")]
    pub batch_sizes: Vec<usize>,
    /// MNIST images per run (EfficientNet-Lite0 at 224 px).
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub images: usize,
    /// Film-review sentences per run (MiniLM).
    #[arg(long, default_value_t = 512, value_name = "N")]
    pub sentences: usize,
    /// Precision on the checked device (`f16`: half precision; the reference stays `f32`),
    /// so the difference f16 makes is measured against float32 features.
    #[arg(long, default_value = "f32", value_parser = crate::parse_precision)]
    pub precision: tl_core::Precision,
    /// Smallest per-row cosine similarity between the two devices' features that passes.
    #[arg(long, default_value_t = 0.999)]
    pub min_cosine: f64,
    /// Do not fetch the CUDA runtime (2.3 GB) when it is missing; fail instead.
    #[arg(long)]
    pub no_fetch: bool,
}

/// One model's workload.
struct Workload {
    model: &'static str,
    data: &'static str,
    unit: &'static str,
    rows: usize,
}

#[derive(Debug, Serialize)]
struct Timing {
    batch_size: usize,
    /// Rows per second end to end (decode or tokenise, run, store), per device.
    reference_rows_per_second: f64,
    device_rows_per_second: f64,
    /// Achieved GFLOP/s on the device (vision; 2 × multiply-adds per image).
    device_gflops: Option<f64>,
}

#[derive(Debug, Serialize)]
struct ModelCheck {
    model: String,
    data: String,
    unit: String,
    rows: usize,
    /// Multiply-adds per row (vision at 224 px), from the ONNX graph.
    multiply_adds: Option<u64>,
    timings: Vec<Timing>,
    max_abs_difference: f64,
    min_cosine: f64,
    passed: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    schema_version: u32,
    device: String,
    /// Precision on the device (the reference runs in f32).
    precision: String,
    reference: String,
    gpu: Option<tl_runtime::GpuInfo>,
    /// Peak FP32 FLOP/s of the GPU: SMs × FP32 lanes per SM × 2 × clock.
    peak_fp32_gflops: Option<f64>,
    min_cosine_required: f64,
    models: Vec<ModelCheck>,
}

pub fn run(a: &GpuCheckArgs, global: &Global) -> Result<()> {
    let home = global.home()?;
    let registry = Registry::builtin()?;
    if a.batch_sizes.is_empty() || a.batch_sizes.contains(&0) {
        bail!("--batch-sizes needs whole numbers above 0, as in `1,8,32`");
    }
    let gpu = ready_gpu(a, &home, registry, global)?;
    let workloads = [
        Workload {
            model: "efficientnet-lite0",
            data: "mnist-5k",
            unit: "images",
            rows: a.images,
        },
        Workload {
            model: "minilm-l6",
            data: "rotten-tomatoes",
            unit: "sentences",
            rows: a.sentences,
        },
    ];
    let opts = global.fetch_options(home.clone());
    let ids: Vec<String> = workloads
        .iter()
        .flat_map(|w| [w.model.to_string(), w.data.to_string()])
        .collect();
    Fetcher::new(registry, opts).fetch(&ids)?;

    let peak = gpu.as_ref().and_then(tl_runtime::GpuInfo::peak_fp32_gflops);
    let scratch = tempfile::tempdir()?;
    let mut models = Vec::new();
    for w in &workloads {
        models.push(check_model(a, w, registry, &home, scratch.path(), global)?);
    }
    let report = Report {
        schema_version: JSON_SCHEMA_VERSION,
        device: a.device.to_string(),
        precision: a.precision.to_string(),
        reference: a.against.to_string(),
        gpu,
        peak_fp32_gflops: peak,
        min_cosine_required: a.min_cosine,
        models,
    };
    if global.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    let failed: Vec<&str> = report
        .models
        .iter()
        .filter(|m| !m.passed)
        .map(|m| m.model.as_str())
        .collect();
    if !failed.is_empty() {
        bail!(
            "features on {} differ from {} beyond the tolerance (cosine < {}) for: {}",
            report.device,
            report.reference,
            a.min_cosine,
            failed.join(", ")
        );
    }
    Ok(())
}

/// For a CUDA device: its readiness (fetching the CUDA runtime when missing and allowed)
/// and the GPU the driver reports.
fn ready_gpu(
    a: &GpuCheckArgs,
    home: &Path,
    registry: &Registry,
    global: &Global,
) -> Result<Option<tl_runtime::GpuInfo>> {
    let mut gpu = None;
    if let Device::Cuda { id } = a.device {
        let mut support = tl_runtime::cuda_support(home);
        if support.feature && support.runtime.is_none() && !a.no_fetch {
            eprintln!(
                "The CUDA runtime is not fetched: fetching `{}` (2.3 GB).",
                tl_runtime::CUDA_RUNTIME_ID
            );
            let opts = global.fetch_options(home.to_path_buf());
            Fetcher::new(registry, opts).fetch(&[tl_runtime::CUDA_RUNTIME_ID.to_string()])?;
            support = tl_runtime::cuda_support(home);
        }
        if let Some(reason) = support.blocker_for(id) {
            bail!(
                "--device {} cannot be used: {reason}. `tl doctor` lists every CUDA library and where it was found.",
                a.device
            );
        }
        gpu = support
            .gpus
            .and_then(|g| g.ok())
            .and_then(|g| g.into_iter().nth(id as usize));
    }
    Ok(gpu)
}

/// One model's features on both devices at every batch size: throughput, and how far
/// the last batch size's features are apart.
fn check_model(
    a: &GpuCheckArgs,
    w: &Workload,
    registry: &Registry,
    home: &Path,
    scratch: &Path,
    global: &Global,
) -> Result<ModelCheck> {
    let entry = registry.get(w.model)?;
    let multiply_adds = match &entry.model {
        Some(file) if w.unit == "images" => {
            let path = tl_core::home::model_dir(home, w.model).join(file);
            let onnx = tl_onnx::OnnxModel::load(&path)?;
            Some(tl_head::import::multiply_adds(&onnx, 224, 224)?)
        }
        _ => None,
    };
    let mut timings = Vec::new();
    let mut features = Vec::new();
    for (i, &batch) in a.batch_sizes.iter().enumerate() {
        let keep = i + 1 == a.batch_sizes.len();
        let mut rates = Vec::new();
        // The device first: a GPU that fails, fails before any reference run.
        for (side, device, precision) in [
            ("device", a.device, a.precision),
            ("reference", a.against, tl_core::Precision::F32),
        ] {
            let out = scratch.join(format!("{}-{side}-{batch}", w.model));
            let rate = extract_in_own_process(home, w, (device, precision), batch, &out, global)?;
            if keep {
                features.push(read_features(&out)?);
            }
            rates.push(rate);
        }
        let gflops = multiply_adds.map(|m| 2.0 * m as f64 * rates[0] / 1e9);
        timings.push(Timing {
            batch_size: batch,
            reference_rows_per_second: rates[1],
            device_rows_per_second: rates[0],
            device_gflops: gflops,
        });
    }
    let (max_abs, min_cos) = tl_eval::agreement(&features[0], &features[1])
        .with_context(|| format!("{}: the two devices' features differ in shape", w.model))?;
    Ok(ModelCheck {
        model: w.model.into(),
        data: w.data.into(),
        unit: w.unit.into(),
        rows: w.rows,
        multiply_adds,
        timings,
        max_abs_difference: max_abs,
        min_cosine: min_cos,
        passed: min_cos >= a.min_cosine,
    })
}

/// Runs `tl extract` in a child process with an empty feature store (a private home that
/// shares the fetched runtimes, models and data), and returns its rows per second.
fn extract_in_own_process(
    home: &Path,
    w: &Workload,
    (device, precision): (Device, tl_core::Precision),
    batch: usize,
    out: &Path,
    global: &Global,
) -> Result<f64> {
    let private = tempfile::tempdir()?;
    for sub in ["runtimes", "models", "assets", "datasets"] {
        let real = home.join(sub);
        if real.exists() {
            std::os::unix::fs::symlink(&real, private.path().join(sub))?;
        }
    }
    std::fs::create_dir_all(out)?;
    if !global.quiet && !global.json {
        eprintln!(
            "  {} on {device} ({precision}), batch {batch}: {} {} ...",
            w.model, w.rows, w.unit
        );
    }
    let output = Command::new(std::env::current_exe()?)
        .arg("--home")
        .arg(private.path())
        .args([
            "--json", "--quiet", "extract", "--model", w.model, "--data", w.data,
        ])
        .args([
            "--limit",
            &w.rows.to_string(),
            "--batch-size",
            &batch.to_string(),
        ])
        .args(["--device", &device.to_string()])
        .args(["--precision", &precision.to_string(), "--out"])
        .arg(out)
        .output()
        .context("cannot run `tl extract` as a child process")?;
    if !output.status.success() {
        bail!(
            "`tl extract --model {} --device {device} --precision {precision} --batch-size {batch}` failed: {}",
            w.model,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let v: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("`tl extract --json` printed no JSON")?;
    v["report"]["rows_per_second"]
        .as_f64()
        .context("`tl extract --json` gave no rows_per_second")
}

/// The one feature matrix `tl extract --out` wrote.
fn read_features(out: &Path) -> Result<ndarray::Array2<f32>> {
    let files: Vec<PathBuf> = std::fs::read_dir(out)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    let [file] = files.as_slice() else {
        bail!(
            "expected one feature file in `{}`, found {}",
            out.display(),
            files.len()
        );
    };
    Ok(tl_features::store::read_matrix(file)?)
}

fn print_report(r: &Report) {
    match (&r.gpu, r.peak_fp32_gflops) {
        (Some(g), peak) => println!(
            "GPU check: {} = {} ({:.1} GiB, {} SMs, compute capability {}.{}, peak FP32 {}) against {}",
            r.device,
            g.name,
            g.memory_bytes as f64 / (1u64 << 30) as f64,
            g.multiprocessors,
            g.compute_capability.0,
            g.compute_capability.1,
            peak.map_or("unknown".into(), |p| format!("{:.1} TFLOP/s", p / 1e3)),
            r.reference
        ),
        (None, _) => println!(
            "Device check: {} ({}) against {} (f32)",
            r.device, r.precision, r.reference
        ),
    }
    for m in &r.models {
        println!(
            "\n{} on {} ({} {}{}), end to end:",
            m.model,
            m.data,
            m.rows,
            m.unit,
            m.multiply_adds.map_or(String::new(), |x| format!(
                ", {:.2} GFLOP per image at 224 px",
                2.0 * x as f64 / 1e9
            ))
        );
        println!(
            "  {:>6}  {:>14}  {:>14}  {:>8}  {:>22}",
            "batch",
            format!("{} {}/s", r.reference, m.unit),
            format!("{} {} {}/s", r.device, r.precision, m.unit),
            "speed-up",
            "GFLOP/s (of peak)"
        );
        for t in &m.timings {
            let roofline = match (t.device_gflops, r.peak_fp32_gflops) {
                (Some(g), Some(p)) => format!("{g:.0} ({:.1} %)", 100.0 * g / p),
                (Some(g), None) => format!("{g:.1}"),
                _ => "-".into(),
            };
            println!(
                "  {:>6}  {:>14.1}  {:>14.1}  {:>7.2}x  {:>22}",
                t.batch_size,
                t.reference_rows_per_second,
                t.device_rows_per_second,
                t.device_rows_per_second / t.reference_rows_per_second,
                roofline
            );
        }
        println!(
            "  features: largest |difference| {:.2e}, smallest row cosine {:.6} (needs >= {}): {}",
            m.max_abs_difference,
            m.min_cosine,
            r.min_cosine_required,
            if m.passed { "ok" } else { "FAILED" }
        );
    }
}
