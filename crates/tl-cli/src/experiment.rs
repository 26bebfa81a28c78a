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
report; features come from the shared cache, so a backbone is run once per dataset.
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
        let p = plan(&a.job(), &global.home()?)?;
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
