//! `tl run EXPERIMENT.toml`: flags onto the experiment run, one library call, printing.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use tl_pipeline::experiment::{ExperimentRun, Outcome, plan, run as run_experiment};

use crate::{Global, JSON_SCHEMA_VERSION, RunArgs};

#[derive(Debug, Args)]
#[command(
    after_help = "An experiment file describes studies; each study sweeps arms (or adaptation
methods) × label budgets × seeds. Every cell is an ordinary `tl train` or `tl adapt` run
written to OUT/<study>/<arm or method>/<budget>/seed-<s>/ with its own config.json, metrics.json and
report; features come from the shared cache, so a backbone is run once per dataset. An
[[adapt]] study may sweep `target_labels = [0, 1, 5]` (labelled target rows per class, as
`tl adapt --target-labels`); a [[rank]] study runs `tl rank` once per seed
(`config = { data = \"sklearn-digits\", models = [\"efficientnet-lite0\", \"mobilenet-v2:features.13\"] }`).
experiments/{adaptation,semi,rank,heads}.toml are the benchmark studies of docs/benchmarks.md.
A cell whose `cell.json` matches its config is not run again: rerun the same command after
an interruption and it resumes. OUT/report.html compares the arms (learning curves with
95 % intervals over seeds, convergence, method comparisons); OUT/manifest.json lists
every cell.

Example (a small cousin of experiments/digits.toml):
  title = \"Digits: transfer against from scratch\"
  seeds = [0, 1, 2]
  [[train]]
  name = \"curve\"
  budgets = [1, 2, 5, 10, 20]
  [[train.arm]]
  label = \"EfficientNet-Lite0 features + linear probe\"
  config = { model = \"efficientnet-lite0\", data = \"sklearn-digits\", image_size = 64 }
  [[train.arm]]
  label = \"pixels + linear probe (from scratch)\"
  config = { model = \"pixels\", data = \"sklearn-digits\" }
  [[adapt]]
  name = \"mnist-to-digits\"
  methods = [\"none\", \"coral\", \"mcc\"]
  config = { source = \"mnist-5k\", target = \"sklearn-digits-padded\", image_size = 64 }

Try `--dry-run` first to see the cells. A malformed file fails before any work with its path, line and key."
)]
pub struct RunExperimentArgs {
    /// The experiment file (TOML).
    pub file: PathBuf,
    /// Output directory (default: runs/<file stem>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Run only the studies named (repeatable).
    #[arg(long = "study", value_name = "NAME")]
    pub studies: Vec<String>,
    /// Check the file and list its cells (and which are done); run and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

impl RunExperimentArgs {
    fn job(&self) -> ExperimentRun {
        ExperimentRun {
            file: self.file.clone(),
            out: self.out.clone(),
            studies: self.studies.clone(),
        }
    }
}

pub fn run(a: &RunExperimentArgs, global: &Global) -> Result<()> {
    if a.dry_run {
        let p = plan(&a.job())?;
        let done = p.cells.iter().filter(|c| c.done).count();
        if global.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "schema_version": JSON_SCHEMA_VERSION, "out": p.out, "cells": p.cells.len(),
                    "ran": 0, "seconds": 0.0, "summary": [], "plan": p.cells,
                }))?
            );
            return Ok(());
        }
        for c in &p.cells {
            println!("{}{}", c.tag, if c.done { " (done)" } else { "" });
        }
        println!(
            "{} cells, {done} done; nothing run (--dry-run)",
            p.cells.len()
        );
        return Ok(());
    }
    let o = execute(a, global)?;
    if global.json {
        println!("{}", serde_json::to_string_pretty(&o)?);
    } else {
        print_outcome(&o);
    }
    Ok(())
}

/// Runs (or resumes) the experiment, printing one line per cell.
pub fn execute(a: &RunExperimentArgs, global: &Global) -> Result<Outcome> {
    let env = global.env(Some(&a.run))?;
    Ok(run_experiment(&a.job(), &env)?)
}

/// The summary table of an experiment run.
pub fn print_outcome(o: &Outcome) {
    println!(
        "{} cells ({} run now, {} reused) in {:.1} s",
        o.cells,
        o.ran,
        o.cells - o.ran,
        o.seconds
    );
    if o.summary.is_empty() {
        // Rank studies only: their figures are in the report.
        println!("report: {}", o.out.join("report.html").display());
        return;
    }
    println!(
        "{:<16} {:<52} {:>12} {:>18} {:>9}",
        "study", "arm", "labels", "accuracy", "macro-F1"
    );
    for r in &o.summary {
        // One seed has no interval: say so rather than print NaN.
        let ci = if r.accuracy_ci.is_finite() {
            format!("± {:<6.4}", r.accuracy_ci)
        } else {
            format!("{:<8}", "(1 seed)")
        };
        println!(
            "{:<16} {:<52} {:>12} {:>9.4} {ci} {:>9.4}",
            r.study, r.arm, r.budget, r.accuracy, r.macro_f1
        );
    }
    println!("report: {}", o.out.join("report.html").display());
}

/// The benchmark experiments' cells are the `tl` commands their comments (and
/// docs/benchmarks.md) name: each cell's config equals the one the CLI builds from those
/// flags, so `tl run` and the commands give the same runs.
#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use tl_pipeline::experiment::PlannedCell;

    const DIGITS: &str = "--source mnist-5k --target sklearn-digits-padded";
    const REVIEWS: &str = "--source rotten-tomatoes --target drug-reviews --model minilm-l6 --class-map rotten=negative,fresh=positive";
    const DIGITS_PROBE: &str = "train --data sklearn-digits-padded --head linear";
    const REVIEWS_PROBE: &str =
        "train --data drug-reviews --model minilm-l6 --task sentiment --head linear --balanced";
    const LAYERS: &str = "efficientnet-lite0:blocks.5,efficientnet-lite0:blocks.10,efficientnet-lite0:blocks.15,efficientnet-lite0,mobilenet-v2:features.6,mobilenet-v2:features.13,mobilenet-v2:features.16,mobilenet-v2";
    const MODELS: &str = "efficientnet-lite0,mobilenet-v2";
    const REVIEWS_MLP: &str =
        "train --model minilm-l6 --data rotten-tomatoes --head mlp --hidden 128 --epochs 20";

    /// The command (without budget, target labels and seed) of a cell, as its
    /// experiment file's comments and docs/benchmarks.md give it.
    fn command(file: &str, c: &PlannedCell) -> Vec<String> {
        let m = &c.id.arm;
        let rank = |data: &str, models: &str| {
            let budget = if data == "mnist-5k" {
                "--budget 50"
            } else {
                ""
            };
            format!("rank --data {data} --image-size 112 --models {models} {budget}")
        };
        let image_arm = |data: &str| {
            let arm = match m.as_str() {
                "linear probe" => "--head linear",
                "MLP head (256, AdamW, 30 epochs)" => "--head mlp --hidden 256 --epochs 30",
                _ => "--finetune last --epochs 10 --pretrained-lr 0.1",
            };
            format!("train --data {data} --image-size 112 {arm}")
        };
        let line = match (file, c.id.study.as_str()) {
            (_, "digits") => format!("adapt {DIGITS} --method {m}"),
            ("semi", "sentiment") => format!("adapt {REVIEWS} --method {m}"),
            (_, "sentiment") => format!("adapt {REVIEWS} --segments none --method {m}"),
            (_, "sentiment-sentences") => format!("adapt {REVIEWS} --segments auto --method {m}"),
            (_, "digits-oracle" | "digits-alone") => DIGITS_PROBE.into(),
            (_, "sentiment-oracle" | "sentiment-alone") => REVIEWS_PROBE.into(),
            (_, "sklearn-digits-layers") => rank("sklearn-digits", LAYERS),
            (_, "mnist-5k-layers") => rank("mnist-5k", LAYERS),
            (_, "sklearn-digits-models") => rank("sklearn-digits", MODELS),
            (_, "mnist-5k-models") => rank("mnist-5k", MODELS),
            (_, "mnist-5k" | "sklearn-digits") => image_arm(&c.id.study),
            (_, "multitask") if m == "sentiment + subjectivity" => {
                format!("{REVIEWS_MLP} --task sentiment --task subjectivity")
            }
            (_, "multitask") => format!("{REVIEWS_MLP} --task {m}"),
            (_, "word-vectors") => {
                format!("train --model {m} --data rotten-tomatoes --task sentiment")
            }
            (f, s) => panic!("{f}.toml: no command for study `{s}`"),
        };
        line.split_whitespace().map(String::from).collect()
    }

    /// The config the CLI builds from `args`.
    fn cli_config(args: &[String]) -> serde_json::Value {
        let cli = crate::Cli::try_parse_from(
            std::iter::once("tl".to_string()).chain(args.iter().cloned()),
        )
        .unwrap_or_else(|e| panic!("tl {}: {e}", args.join(" ")));
        match cli.command {
            crate::Command::Train(a) => serde_json::to_value(a.config().unwrap()).unwrap(),
            crate::Command::Adapt(a) => serde_json::to_value(a.config().unwrap()).unwrap(),
            crate::Command::Rank(a) => serde_json::to_value(a.config()).unwrap(),
            _ => panic!("tl {}: not a train, adapt or rank command", args.join(" ")),
        }
    }

    #[test]
    fn benchmark_experiment_cells_are_the_commands_they_document() {
        for file in ["adaptation", "semi", "rank", "heads"] {
            let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join(format!("../../experiments/{file}.toml"));
            let run = ExperimentRun {
                file: path,
                out: Some(std::env::temp_dir().join("tl-bench-plan-never-written")),
                studies: Vec::new(),
            };
            let p = plan(&run).unwrap();
            assert!(!p.cells.is_empty(), "{file}.toml plans no cell");
            for c in &p.cells {
                let mut args = command(file, c);
                if args[0] == "train" {
                    args.extend(["--out".into(), "unused".into()]);
                    if let Some(k) = c.id.budget {
                        args.extend(["--budget".into(), k.to_string()]);
                    }
                }
                if let Some(k) = c.id.target_labels.filter(|&k| k > 0) {
                    args.extend(["--target-labels".into(), k.to_string()]);
                }
                args.extend(["--seed".into(), c.id.seed.to_string()]);
                assert_eq!(
                    c.config,
                    cli_config(&args),
                    "{file}.toml {}: not `tl {}`",
                    c.tag,
                    args.join(" ")
                );
            }
        }
    }
}
