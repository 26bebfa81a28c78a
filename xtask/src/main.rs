//! `cargo xtask`: the project's own automation (fetching models, running the whole test suite).
//!
//! - `cargo xtask fetch-models [ID...] [--from DIR] [--quiet]`: fetch registry entries into `TL_HOME`.
//! - `cargo xtask test`: what CI runs — fetch what the tests need, then fmt, clippy, tests,
//!   docs (warnings denied) and the library's examples.
//! - `cargo xtask make-photos`: the JPEG folder of the extraction benchmark.

use std::process::Command;

use anyhow::{Context, Result, bail};

mod adapt_experiment;
mod bench_report;
mod engine_bench;
mod extract_bench;
mod finetune_bench;
mod gpu_report;
mod heads_experiment;
mod photos;
mod probe_bench;
mod rank_experiment;
mod semi_experiment;

const USAGE: &str = "\
cargo xtask <command>

commands:
  fetch-models [ID...] [--from DIR] [--quiet] [--verify]
        fetch registry entries (all non-optional ones when no ID is given) into TL_HOME
  test  fetch what the tests need, then cargo fmt --check, cargo clippy -D warnings,
        cargo test over the whole workspace, cargo doc (warnings denied) and the
        tl-pipeline examples
  bench-report [--runs N] [--only extract|probe|heads|adapt|semi|rank|experiments|finetune|engine|gpu]
        measure feature extraction (tl end to end, bare ONNX Runtime, a Python pipeline)
        and the criterion benches on this machine, and regenerate docs/benchmarks.md
        (engine: the training engine against PyTorch from TL_TORCH_PYTHON)
  train-step SIZE BATCH THREADS STEPS
        MobileNetV2 fine-tuning steps in tl-nn, median seconds and peak RSS as JSON
  gemm-step M K N THREADS STEPS
        tl-nn's matrix product, median seconds and GFLOP/s as JSON
  attention-step BATCH HEADS SEQ DIM THREADS STEPS
        tl-nn's attention forward + backward, median seconds as JSON
  make-photos [--out DIR] [--count N] [--seed S]
        write N JPEGs (default 1000) made from the sample photos by random crops, sizes
        (160-800 px on the longer side) and JPEG qualities, one sub-folder per photo
        (default DIR: target/bench-photos-N-seedS); the extract benchmark uses them
";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("fetch-models") => fetch_models(&args[1..]),
        Some("test") => test(&args[1..]),
        Some("bench-report") => bench_report::run(&args[1..]),
        Some("make-photos") => photos::run(&args[1..]),
        // Used by bench-report's engine section: tl's side of train_baseline.py.
        Some("train-step") => engine_bench::train_step(&args[1..]),
        Some("gemm-step") => engine_bench::gemm_step(&args[1..]),
        Some("attention-step") => engine_bench::attention_step(&args[1..]),
        // Used by bench-report: the probe section, timed in a release build.
        Some("probe-section") => {
            let out = args.get(1).context("probe-section needs an output file")?;
            let md = probe_bench::section(
                std::path::Path::new("target/release/tl"),
                bench_report::THREADS as usize,
            )?;
            std::fs::write(out, md)?;
            Ok(())
        }
        Some("-h" | "--help" | "help") | None => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown xtask command `{other}`\n\n{USAGE}"),
    }
}

pub(crate) fn fetch_models(args: &[String]) -> Result<()> {
    let home = tl_core::home::tl_home()?;
    let mut opts = tl_hub::FetchOptions::new(home);
    opts.progress = std::sync::Arc::new(Lines);
    let mut ids = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--from" => opts.from_dir = Some(it.next().context("--from needs a directory")?.into()),
            "--quiet" => opts.progress = std::sync::Arc::new(tl_core::progress::Silent),
            "--verify" => opts.verify = true,
            flag if flag.starts_with('-') => bail!("unknown flag `{flag}`\n\n{USAGE}"),
            id => ids.push(id.to_string()),
        }
    }
    let registry = tl_hub::Registry::builtin()?;
    tl_hub::Fetcher::new(registry, opts).fetch(&ids)?;
    Ok(())
}

/// Fetch notes, one line each on stderr.
struct Lines;

impl tl_core::progress::Progress for Lines {
    fn note(&self, text: &str) {
        eprintln!("{text}");
    }
}

/// The entries the test suite uses.
const TEST_ASSETS: &[&str] = &[
    "onnxruntime",
    "efficientnet-lite0",
    "mobilenet-v2",
    "minilm-l6",
    "glove-6b-50d",
    "sample-photos",
    "vgg16-tumor",
    "resnet50-nsfw",
    "mnist-5k",
    "sklearn-digits",
    "sklearn-digits-padded",
    "rotten-tomatoes",
    "drug-reviews",
];

pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// The report tests render HTML in headless Chromium: install Debian's
/// `chromium-headless-shell` (the Chromium build made for this; ~200 MB) when none is found.
fn ensure_chromium() -> Result<()> {
    if let Ok(c) = tl_eval::browser::Chromium::find() {
        eprintln!("xtask: Chromium for the report tests: {}", c.path.display());
        return Ok(());
    }
    let package = tl_eval::browser::CANDIDATES[0];
    eprintln!("xtask: no Chromium found; installing Debian's {package} for the report tests");
    let apt = |args: &[&str]| {
        run(Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive"))
    };
    apt(&["update"])
        .and_then(|()| apt(&["install", "-y", "--no-install-recommends", package]))
        .with_context(|| {
            format!(
                "cannot install {package} (the report tests need a headless Chromium): install it, or set TL_CHROMIUM to a Chromium executable"
            )
        })?;
    tl_eval::browser::Chromium::find()?;
    Ok(())
}

fn test(args: &[String]) -> Result<()> {
    if let Some(a) = args.first() {
        bail!("`cargo xtask test` takes no arguments (got `{a}`)");
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let ids: Vec<String> = TEST_ASSETS.iter().map(|s| s.to_string()).collect();
    fetch_models(&ids)?;
    ensure_chromium()?;
    run(Command::new(&cargo).args(["fmt", "--all", "--", "--check"]))?;
    run(Command::new(&cargo).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    run(Command::new(&cargo).args(["test", "--workspace", "--all-targets"]))?;
    run(Command::new(&cargo).args(["test", "--workspace", "--doc"]))?;
    // The library's documentation builds without warnings, and its examples run.
    run(Command::new(&cargo)
        .args(["doc", "--workspace", "--no-deps"])
        .env("RUSTDOCFLAGS", "-D warnings"))?;
    let examples = std::env::temp_dir().join(format!("tl-examples-{}", std::process::id()));
    for example in ["transfer", "adapt"] {
        let out = examples.join(example).display().to_string();
        run(Command::new(&cargo).args([
            "run",
            "-p",
            "tl-pipeline",
            "--example",
            example,
            "--",
            &out,
        ]))?;
    }
    let _ = std::fs::remove_dir_all(&examples);
    // The CUDA path compiles, and its failure paths hold, on machines without a GPU.
    run(Command::new(&cargo).args([
        "clippy",
        "-p",
        "tl-cli",
        "--features",
        "cuda",
        "--",
        "-D",
        "warnings",
    ]))?;
    run(Command::new(&cargo).args(["test", "-p", "tl-runtime", "--features", "cuda", "--lib"]))?;
    Ok(())
}
