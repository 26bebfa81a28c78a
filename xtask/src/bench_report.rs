//! `cargo xtask bench-report`: measures, then writes `docs/benchmarks.md`. Never run in CI.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};
use tl_pipeline::{
    artifact::{AdaptMetrics, Metrics},
    experiment::{CellOutput, ExperimentRun, RunOutput},
    rank::Ranking,
};

pub(crate) const THREADS: u32 = 2;

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub(crate) fn output(cmd: &mut Command) -> Result<String> {
    eprintln!("bench-report: {cmd:?}");
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?)
}

pub(crate) fn json_field(text: &str, path: &[&str]) -> Result<f64> {
    let mut v: serde_json::Value = serde_json::from_str(text.trim()).context("not JSON")?;
    for p in path {
        v = v[*p].take();
    }
    v.as_f64()
        .with_context(|| format!("no number at {path:?} in {text}"))
}

/// Where `experiments/<name>.toml` runs for the report: the file and its output directory.
fn experiment_paths(name: &str) -> (String, PathBuf) {
    (
        format!("experiments/{name}.toml"),
        Path::new("target/experiments/run").join(name),
    )
}

/// Runs `experiments/<name>.toml` with the release `tl run` (resumable: finished cells are
/// kept); returns the file and its output directory.
fn run_experiment(name: &str) -> Result<(String, PathBuf)> {
    let (file, out) = experiment_paths(name);
    crate::run(
        Command::new("target/release/tl")
            .args(["run", &file, "--out"])
            .arg(&out),
    )?;
    Ok((file, out))
}

/// Runs `experiments/<name>.toml` ([`run_experiment`]) and reads every cell's typed output
/// back through the library.
pub(crate) fn experiment_outputs(name: &str) -> Result<Vec<CellOutput>> {
    let (file, out) = run_experiment(name)?;
    let run = ExperimentRun {
        file: file.into(),
        out: Some(out),
        studies: Vec::new(),
    };
    Ok(tl_pipeline::experiment::outputs(&run)?)
}

/// The adapt runs of `study` with method `arm` (and target labels `k` of a sweep), in
/// seed order.
pub(crate) fn adapt_runs<'a>(
    outs: &'a [CellOutput],
    study: &str,
    arm: &str,
    k: Option<usize>,
) -> Vec<&'a AdaptMetrics> {
    outs.iter()
        .filter(|c| c.id.study == study && c.id.arm == arm && c.id.target_labels == k)
        .filter_map(|c| match &c.output {
            RunOutput::Adapt(m) => Some(&**m),
            _ => None,
        })
        .collect()
}

/// The train runs of `study` (arm `arm`, when given) at `budget`, in seed order.
pub(crate) fn train_runs<'a>(
    outs: &'a [CellOutput],
    study: &str,
    arm: Option<&str>,
    budget: Option<usize>,
) -> Vec<&'a Metrics> {
    outs.iter()
        .filter(|c| {
            c.id.study == study && arm.is_none_or(|a| c.id.arm == a) && c.id.budget == budget
        })
        .filter_map(|c| match &c.output {
            RunOutput::Train(m) => Some(&**m),
            _ => None,
        })
        .collect()
}

/// The rank runs of `study`, in seed order.
pub(crate) fn rank_runs<'a>(outs: &'a [CellOutput], study: &str) -> Vec<&'a Ranking> {
    outs.iter()
        .filter(|c| c.id.study == study)
        .filter_map(|c| match &c.output {
            RunOutput::Rank(r) => Some(&**r),
            _ => None,
        })
        .collect()
}

/// The first task's test evaluation of a train run.
pub(crate) fn evaluation(m: &Metrics) -> Result<&tl_eval::Evaluation> {
    Ok(&m
        .evaluation
        .first()
        .context("a train run without a test evaluation")?
        .evaluation)
}

/// The report, relative to the workspace root (the working directory of `cargo xtask`).
const REPORT: &str = "docs/benchmarks.md";

/// Sections of `docs/benchmarks.md`, each regenerated on its own (`--only NAME`).
const SECTIONS: [&str; 10] = [
    "extract",
    "probe",
    "heads",
    "adapt",
    "semi",
    "rank",
    "experiments",
    "finetune",
    "engine",
    "gpu",
];

/// The footer note of sections made from `tl run` experiments.
const REUSED_CELLS: &str =
    " (cells reused from earlier runs keep the seconds they were measured with)";

/// The example experiments the `experiments` section runs (`tl run`, resumable).
const EXPERIMENTS: [&str; 3] = ["digits", "sentiment", "multitask"];

/// Replaces (or appends) the section `name` of `doc`, delimited by HTML comments.
fn splice(doc: &str, name: &str, content: &str) -> String {
    let (open, close) = (
        format!("<!-- section: {name} -->"),
        format!("<!-- /section: {name} -->"),
    );
    let block = format!("{open}\n{}\n{close}", content.trim_end());
    match (doc.find(&open), doc.find(&close)) {
        (Some(a), Some(b)) if b > a => format!("{}{block}{}", &doc[..a], &doc[b + close.len()..]),
        _ => format!("{}\n\n{block}\n", doc.trim_end()),
    }
}

/// Runs `experiments/<name>.toml` (resumable) and returns its comparison report as a
/// subsection: headings demoted by two levels, the command above it.
fn experiment_report(name: &str) -> Result<String> {
    let (file, out) = run_experiment(name)?;
    let md = std::fs::read_to_string(out.join("report.md"))?;
    let mut section = format!(
        "\n### `{file}`\n\nCommand: `tl run {file} --out {}` (resumable).\n\n",
        out.display()
    );
    for line in md.lines().skip_while(|l| l.starts_with("# ")) {
        if line.starts_with("## ") {
            section.push_str("##");
        }
        section.push_str(line);
        section.push('\n');
    }
    Ok(section)
}

/// Fails with `hint` unless `python3` can import `modules` (comma-separated).
pub(crate) fn require_python(modules: &str, hint: &str) -> Result<()> {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        bail!("{hint}");
    }
    Ok(())
}

/// Fetches what a section measures and builds the release `tl` it runs.
pub(crate) fn release_tl(cargo: &str, assets: &[&str]) -> Result<()> {
    crate::fetch_models(&assets.iter().map(|a| a.to_string()).collect::<Vec<_>>())?;
    crate::run(Command::new(cargo).args(["build", "--release", "-p", "tl-cli"]))
}

/// Replaces section `name` of `doc` by `body` and the footer saying how, where and at
/// which commit it was generated (plus `note`), then writes `path`.
fn write_section(doc: &mut String, path: &Path, name: &str, body: &str, note: &str) -> Result<()> {
    *doc = splice(
        doc,
        name,
        &format!(
            "{body}\nGenerated by `cargo xtask bench-report --only {name}` on {}, at commit {}{note}.\n",
            machine(),
            git_revision()
        ),
    );
    tl_core::io::atomic_write(path, doc.as_bytes())?;
    eprintln!(
        "bench-report: wrote the {name} section of {}",
        path.display()
    );
    Ok(())
}

pub fn run(args: &[String]) -> Result<()> {
    let mut runs = 3;
    let mut only: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => runs = it.next().context("--runs needs a number")?.parse()?,
            "--only" => {
                let s = it.next().context("--only needs a section name")?;
                if !SECTIONS.contains(&s.as_str()) {
                    bail!("unknown section `{s}` (sections: {})", SECTIONS.join(", "));
                }
                only.push(s.clone());
            }
            other => bail!("unknown flag `{other}`"),
        }
    }
    if only.is_empty() {
        only = SECTIONS.iter().map(|s| s.to_string()).collect();
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let path = Path::new(REPORT);
    let mut doc = std::fs::read_to_string(path).unwrap_or_else(|_| "# Benchmarks\n".into());
    if only.iter().any(|s| s == "probe") {
        require_python(
            "numpy, scipy, sklearn",
            "the probe baseline needs `python3 -m pip install numpy scipy scikit-learn==1.9.1`",
        )?;
        release_tl(&cargo, &["onnxruntime", "efficientnet-lite0", "mnist-5k"])?;
        // Timed in a release build of xtask (a dev build keeps ndarray's debug assertions).
        let tmp = std::env::temp_dir().join(format!("tl-probe-section-{}.md", std::process::id()));
        crate::run(
            Command::new(&cargo)
                .args(["run", "--release", "-p", "xtask", "--", "probe-section"])
                .arg(&tmp),
        )?;
        let section = std::fs::read_to_string(&tmp)?;
        let _ = std::fs::remove_file(&tmp);
        write_section(&mut doc, path, "probe", &section, "")?;
    }
    if only.iter().any(|s| s == "heads") {
        release_tl(
            &cargo,
            &[
                "onnxruntime",
                "efficientnet-lite0",
                "minilm-l6",
                "glove-6b-50d",
                "mnist-5k",
                "sklearn-digits",
                "rotten-tomatoes",
            ],
        )?;
        let section = crate::heads_experiment::section()?;
        write_section(&mut doc, path, "heads", &section, "")?;
    }
    if only.iter().any(|s| s == "adapt") {
        release_tl(
            &cargo,
            &[
                "onnxruntime",
                "efficientnet-lite0",
                "minilm-l6",
                "mnist-5k",
                "sklearn-digits-padded",
                "rotten-tomatoes",
                "drug-reviews",
            ],
        )?;
        let section = crate::adapt_experiment::section()?;
        write_section(&mut doc, path, "adapt", &section, "")?;
    }
    if only.iter().any(|s| s == "semi") {
        release_tl(
            &cargo,
            &[
                "onnxruntime",
                "efficientnet-lite0",
                "minilm-l6",
                "mnist-5k",
                "sklearn-digits-padded",
                "rotten-tomatoes",
                "drug-reviews",
            ],
        )?;
        let section = crate::semi_experiment::section()?;
        write_section(&mut doc, path, "semi", &section, "")?;
    }
    if only.iter().any(|s| s == "rank") {
        release_tl(
            &cargo,
            &[
                "onnxruntime",
                "efficientnet-lite0",
                "mobilenet-v2",
                "imagenet-classes",
                "mnist-5k",
                "sklearn-digits",
            ],
        )?;
        let section = crate::rank_experiment::section()?;
        write_section(&mut doc, path, "rank", &section, "")?;
    }
    if only.iter().any(|s| s == "experiments") {
        release_tl(
            &cargo,
            &[
                "onnxruntime",
                "efficientnet-lite0",
                "minilm-l6",
                "glove-6b-50d",
                "mnist-5k",
                "sklearn-digits-padded",
                "rotten-tomatoes",
                "drug-reviews",
            ],
        )?;
        let mut section = String::from(
            "## Experiments (`tl run experiments/*.toml`)\n\nEach study below is the comparison report that `tl run` wrote (its `report.md`, headings demoted by two levels); the HTML version with plots is beside it. Budgets count labelled rows per class for training and validation together; ± is the 95 % interval over seeds (1.96 standard errors).\n",
        );
        for name in EXPERIMENTS {
            section.push_str(&experiment_report(name)?);
        }
        write_section(&mut doc, path, "experiments", &section, REUSED_CELLS)?;
    }
    if only.iter().any(|s| s == "finetune") {
        release_tl(
            &cargo,
            &[
                "onnxruntime",
                "efficientnet-lite0",
                "mobilenet-v2",
                "mnist-5k",
                "sklearn-digits",
            ],
        )?;
        let mut section = crate::finetune_bench::throughput(&cargo)?;
        section.push_str(&experiment_report("finetune")?);
        write_section(&mut doc, path, "finetune", &section, REUSED_CELLS)?;
    }
    if only.iter().any(|s| s == "engine") {
        let section = crate::engine_bench::section(&cargo)?;
        write_section(&mut doc, path, "engine", &section, "")?;
    }
    if only.iter().any(|s| s == "gpu") {
        crate::fetch_models(
            &[
                "onnxruntime",
                "efficientnet-lite0",
                "minilm-l6",
                "mnist-5k",
                "rotten-tomatoes",
            ]
            .map(String::from),
        )?;
        let section = crate::gpu_report::section(&cargo)?;
        write_section(&mut doc, path, "gpu", &section, "")?;
    }
    if only.iter().any(|s| s == "extract") {
        let section = crate::extract_bench::section(&cargo, runs)?;
        write_section(&mut doc, path, "extract", &section, "")?;
    }
    Ok(())
}

/// The short hash of HEAD, with `+changes` when the work tree differs from it in
/// anything but the report being written.
fn git_revision() -> String {
    let out = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let head = out(&["rev-parse", "--short", "HEAD"]);
    let exclude = format!(":!{REPORT}");
    let status = [
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
        ".",
        exclude.as_str(),
    ];
    if out(&status).is_empty() {
        head
    } else {
        format!("{head}+changes")
    }
}

/// CPU model and core count.
fn machine() -> String {
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
    format!("{cpu}, {cores} cores")
}
