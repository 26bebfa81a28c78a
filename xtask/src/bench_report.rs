//! `cargo xtask bench-report`: measures, then writes `docs/benchmarks.md`. Never run in CI.

use std::{fmt::Write as _, path::Path, process::Command};

use anyhow::{Context, Result, bail};

const SIZES: [u32; 2] = [224, 112];
const BATCH: u32 = 64;
const THREADS: u32 = 2;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn output(cmd: &mut Command) -> Result<String> {
    eprintln!("bench-report: {cmd:?}");
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?)
}

fn json_field(text: &str, path: &[&str]) -> Result<f64> {
    let mut v: serde_json::Value = serde_json::from_str(text.trim()).context("not JSON")?;
    for p in path {
        v = v[*p].take();
    }
    v.as_f64()
        .with_context(|| format!("no number at {path:?} in {text}"))
}

pub fn run(args: &[String]) -> Result<()> {
    let mut runs = 3;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => runs = it.next().context("--runs needs a number")?.parse()?,
            other => bail!("unknown flag `{other}`"),
        }
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let ok = Command::new("python3")
        .args(["-c", "import numpy, PIL, onnxruntime"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        bail!(
            "the Python baselines need `python3 -m pip install numpy pillow onnxruntime==1.31.1`"
        );
    }
    crate::fetch_models(&[
        "onnxruntime".into(),
        "efficientnet-lite0".into(),
        "mnist-5k".into(),
        "sample-photos".into(),
    ])?;
    crate::run(Command::new(&cargo).args(["build", "--release", "-p", "tl-cli"]))?;
    let home = tl_core::home::tl_home()?;
    let model = home.join("models/efficientnet-lite0/model.onnx");
    let data = home.join("datasets/mnist-5k/mnist_5k.csv.gz");
    let tl = Path::new("target/release/tl");
    let mut rows = Vec::new();
    for size in SIZES {
        let (mut ours, mut bare, mut py) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            // A private feature store per run, sharing the fetched runtime, model and data.
            let tmp = tempdir()?;
            for sub in ["runtimes", "models", "datasets", "assets"] {
                std::os::unix::fs::symlink(home.join(sub), tmp.join(sub))?;
            }
            let report = output(
                Command::new(tl)
                    .args([
                        "extract",
                        "--json",
                        "--quiet",
                        "--data",
                        "mnist-5k",
                        "--image-size",
                        &size.to_string(),
                        "--batch-size",
                        &BATCH.to_string(),
                        "--threads",
                        &THREADS.to_string(),
                    ])
                    .arg("--home")
                    .arg(&tmp),
            )?;
            ours.push(json_field(&report, &["report", "rows_per_second"])?);
            let _ = std::fs::remove_dir_all(&tmp);
            for (mode, sink) in [("bare", &mut bare), ("pipeline", &mut py)] {
                let out = output(
                    Command::new("python3")
                        .arg("benches/python/extract_baseline.py")
                        .arg(mode)
                        .arg(&model)
                        .arg(&data)
                        .args([size.to_string(), BATCH.to_string(), THREADS.to_string()]),
                )?;
                sink.push(json_field(&out, &["rows_per_second"])?);
            }
        }
        rows.push((size, median(ours), median(bare), median(py)));
    }
    // Memory as the dataset grows: peak RSS of the whole `tl extract` process.
    let mut rss = Vec::new();
    for limit in [1000usize, 5000] {
        let tmp = tempdir()?;
        for sub in ["runtimes", "models", "datasets", "assets"] {
            std::os::unix::fs::symlink(home.join(sub), tmp.join(sub))?;
        }
        let report = output(
            Command::new(tl)
                .args([
                    "extract",
                    "--json",
                    "--quiet",
                    "--data",
                    "mnist-5k",
                    "--image-size",
                    "112",
                    "--batch-size",
                    &BATCH.to_string(),
                    "--threads",
                    &THREADS.to_string(),
                    "--limit",
                    &limit.to_string(),
                ])
                .arg("--home")
                .arg(&tmp),
        )?;
        rss.push((limit, json_field(&report, &["report", "peak_rss_bytes"])?));
        let _ = std::fs::remove_dir_all(&tmp);
    }
    let criterion = output(Command::new(&cargo).args([
        "bench",
        "-p",
        "tl-benches",
        "--",
        "--output-format",
        "bencher",
    ]))?;
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mut md = String::new();
    writeln!(md, "# Benchmarks\n")?;
    writeln!(
        md,
        "Generated by `cargo xtask bench-report --runs {runs}` (medians of {runs} runs) on {cpu}, {cores} cores, ONNX Runtime 1.31.1 CPU with {THREADS} intra-op threads. Do not edit by hand.\n"
    )?;
    writeln!(
        md,
        "## Feature extraction: mnist-5k through EfficientNet-Lite0 (`features`, 1280-d), batch {BATCH}\n"
    )?;
    writeln!(
        md,
        "| size | tl end to end (CSV → feature store on disk) | bare ONNX Runtime (Python, ready tensors) | Python pipeline (Pillow + NumPy + onnxruntime) | tl / bare | tl / Python |"
    )?;
    writeln!(md, "|---|---|---|---|---|---|")?;
    for (size, ours, bare, py) in &rows {
        writeln!(
            md,
            "| {size} px | {ours:.1} images/s | {bare:.1} images/s | {py:.1} images/s | {:.0} % | {:.2}× |",
            100.0 * ours / bare,
            ours / py
        )?;
    }
    writeln!(
        md,
        "\nThe Python baselines are `benches/python/extract_baseline.py` (its docstring names the package versions). The targets of issue 3 are tl ≥ 95 % of bare ONNX Runtime and ≥ 1.2× the Python pipeline.\n"
    )?;
    writeln!(
        md,
        "## Memory: peak RSS of `tl extract` (mnist-5k at 112 px, batch {BATCH})\n"
    )?;
    writeln!(md, "| rows | peak RSS |")?;
    writeln!(md, "|---|---|")?;
    for (limit, bytes) in &rss {
        writeln!(md, "| {limit} | {:.0} MB |", bytes / 1e6)?;
    }
    writeln!(md)?;
    writeln!(md, "## Criterion benches (`cargo bench -p tl-benches`)\n")?;
    writeln!(md, "| bench | time per iteration |")?;
    writeln!(md, "|---|---|")?;
    for line in criterion.lines().filter(|l| l.starts_with("test ")) {
        // `test NAME ... bench: N ns/iter (+/- M)`
        let name = line
            .trim_start_matches("test ")
            .split(" ...")
            .next()
            .unwrap_or("");
        let ns: f64 = line
            .split("bench:")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .map(|n| n.replace(',', ""))
            .and_then(|n| n.parse().ok())
            .unwrap_or(f64::NAN);
        writeln!(md, "| `{name}` | {:.3} ms |", ns / 1e6)?;
    }
    tl_core::io::atomic_write(Path::new("docs/benchmarks.md"), md.as_bytes())?;
    eprintln!("bench-report: wrote docs/benchmarks.md");
    Ok(())
}

fn tempdir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "tl-bench-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
