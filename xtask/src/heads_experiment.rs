//! The heads experiment of `cargo xtask bench-report --only heads`: linear probe vs MLP
//! head vs last-block fine-tuning on mnist-5k and digits at several label budgets, and a
//! multi-task head on Rotten Tomatoes against single-task heads; 5 seeds each. The runs
//! are the cells of `experiments/heads.toml`, run by `tl run` (resumable) and read back
//! as typed results.

use std::fmt::Write as _;

use anyhow::{Context, Result};
use tl_pipeline::{artifact::Metrics, experiment::CellOutput};

use crate::bench_report::{experiment_outputs, train_runs};

const SEEDS: [u64; 5] = [0, 1, 2, 3, 4];
/// EfficientNet-Lite0 input size for the image runs (fine-tuning at 224 px costs 3× more).
const IMAGE_SIZE: &str = "112";

/// The image strategies: the arms of the image studies, with the flags the report shows.
const IMAGE_STRATEGIES: [&str; 3] = [
    "linear probe",
    "MLP head (256, AdamW, 30 epochs)",
    "last block fine-tuned (0.1× rate, 10 epochs)",
];

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (m, var.sqrt())
}

/// Test accuracy of task `task` in each run.
fn accuracies(runs: &[&Metrics], task: usize) -> Result<Vec<f64>> {
    runs.iter()
        .map(|m| {
            m.test
                .get(task)
                .map(|t| t.accuracy)
                .context("no test accuracy")
        })
        .collect()
}

/// `mean ± sd %` of the test accuracies of task `task` over an arm's seeds.
fn row(
    outs: &[CellOutput],
    study: &str,
    arm: &str,
    budget: Option<usize>,
    task: usize,
) -> Result<String> {
    let (m, sd) = mean_sd(&accuracies(
        &train_runs(outs, study, Some(arm), budget),
        task,
    )?);
    Ok(format!("{:.2} ± {:.2} %", 100.0 * m, 100.0 * sd))
}

/// The markdown section.
pub fn section() -> Result<String> {
    let mut md = String::new();
    writeln!(
        md,
        "## Heads: linear probe vs MLP vs last-block fine-tuning (EfficientNet-Lite0 at {IMAGE_SIZE} px)\n"
    )?;
    writeln!(
        md,
        "Test accuracy, mean ± sd over seeds {SEEDS:?} (each seed draws its own stratified split, 10 % validation and 20 % test, and its own initialisation). Budget = labelled rows per class, training and validation together (validation takes round(k / 8) of them). Runs: `tl train --data D --image-size {IMAGE_SIZE} --budget K --seed S` plus the strategy's flags.\n"
    )?;
    writeln!(md, "| data | budget | strategy | test accuracy |")?;
    writeln!(md, "|---|---|---|---|")?;
    let outs = experiment_outputs("heads")?;
    for (data, budgets) in [
        ("mnist-5k", &[Some(10), Some(50), None][..]),
        ("sklearn-digits", &[Some(10), None][..]),
    ] {
        for &budget in budgets {
            for s in IMAGE_STRATEGIES {
                writeln!(
                    md,
                    "| {data} | {} | {s} | {} |",
                    budget.map_or("all".into(), |k| k.to_string()),
                    row(&outs, data, s, budget, 0)?
                )?;
            }
        }
    }
    writeln!(
        md,
        "\n## Multi-task: Rotten Tomatoes sentiment + subjectivity on MiniLM-L6 features\n"
    )?;
    writeln!(
        md,
        "One MLP (128 hidden, 20 epochs) with a head per task, trained jointly on rows that may lack a task's label (plot summaries have no sentiment), against the same MLP trained on each task alone; test accuracy, mean ± sd over seeds {SEEDS:?}. Runs: `tl train --model minilm-l6 --data rotten-tomatoes --head mlp --hidden 128 --epochs 20 --task …`.\n"
    )?;
    writeln!(md, "| task | multi-task head | single-task head |")?;
    writeln!(md, "|---|---|---|")?;
    for (t, task) in ["sentiment", "subjectivity"].iter().enumerate() {
        writeln!(
            md,
            "| {task} | {} | {} |",
            row(&outs, "multitask", "sentiment + subjectivity", None, t)?,
            row(&outs, "multitask", task, None, 0)?
        )?;
    }
    writeln!(
        md,
        "\n## Word vectors vs a sentence encoder: Rotten Tomatoes sentiment, linear probe\n"
    )?;
    writeln!(
        md,
        "The exact linear probe (C chosen on validation) on GloVe 6B 50-d mean vectors and on MiniLM-L6 sentence embeddings, the same splits; test accuracy, mean ± sd over seeds {SEEDS:?}. Runs: `tl train --model M --data rotten-tomatoes --task sentiment --seed S`.\n"
    )?;
    writeln!(md, "| features | width | test accuracy |")?;
    writeln!(md, "|---|---|---|")?;
    for (model, width) in [("glove-6b-50d", 50), ("minilm-l6", 384)] {
        writeln!(
            md,
            "| {model} | {width} | {} |",
            row(&outs, "word-vectors", model, None, 0)?
        )?;
    }
    writeln!(
        md,
        "\nThe multi-task split is stratified on sentiment, with the plot summaries (no sentiment) split by subjectivity; a single-task subjectivity split is stratified on subjectivity over all rows, so the test sets differ slightly.\n"
    )?;
    writeln!(
        md,
        "Experiment: `tl run experiments/heads.toml` (every figure above is one of its runs).\n"
    )?;
    Ok(md)
}
