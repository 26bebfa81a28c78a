//! The heads experiment of `cargo xtask bench-report --only heads`: linear probe vs MLP
//! head vs last-block fine-tuning on mnist-5k and digits at several label budgets, and a
//! multi-task head on Rotten Tomatoes against single-task heads; 5 seeds each, through
//! `tl train --json`. Each run's result is kept in `target/experiments/heads/`, so an
//! interrupted experiment resumes where it stopped.

use std::{fmt::Write as _, path::Path};

use anyhow::{Context, Result};

use crate::bench_report::cached_tl_train;

const SEEDS: [u64; 5] = [0, 1, 2, 3, 4];
/// EfficientNet-Lite0 input size for the image runs (fine-tuning at 224 px costs 3× more).
const IMAGE_SIZE: &str = "112";

struct Strategy {
    name: &'static str,
    args: &'static [&'static str],
}

const IMAGE_STRATEGIES: [Strategy; 3] = [
    Strategy {
        name: "linear probe",
        args: &["--head", "linear"],
    },
    Strategy {
        name: "MLP head (256, AdamW, 30 epochs)",
        args: &["--head", "mlp", "--hidden", "256", "--epochs", "30"],
    },
    Strategy {
        name: "last block fine-tuned (0.1× rate, 10 epochs)",
        args: &[
            "--finetune",
            "last",
            "--epochs",
            "10",
            "--pretrained-lr",
            "0.1",
        ],
    },
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

/// Runs `tl train ARGS` once, or reads the result a previous run left in
/// `target/experiments/heads/`.
fn train(tl: &Path, key: &str, args: &[String]) -> Result<serde_json::Value> {
    cached_tl_train(tl, "target/experiments/heads", key, args)
}

fn accuracy(v: &serde_json::Value, task: usize) -> Result<f64> {
    v["test"][task]["accuracy"]
        .as_f64()
        .context("no test accuracy")
}

/// The markdown section.
pub fn section(tl: &Path) -> Result<String> {
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
    for (data, budgets) in [
        ("mnist-5k", &["10", "50", "all"][..]),
        ("sklearn-digits", &["10", "all"][..]),
    ] {
        for budget in budgets {
            for s in &IMAGE_STRATEGIES {
                let mut accs = Vec::new();
                for seed in SEEDS {
                    let mut args: Vec<String> = [
                        "--data",
                        data,
                        "--image-size",
                        IMAGE_SIZE,
                        "--seed",
                        &seed.to_string(),
                    ]
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                    if *budget != "all" {
                        args.extend(["--budget".to_string(), budget.to_string()]);
                    }
                    args.extend(s.args.iter().map(|a| a.to_string()));
                    let key = format!(
                        "{data}-{budget}-{}-{seed}",
                        s.args.join("_").replace("--", "")
                    );
                    let v = train(tl, &key, &args)?;
                    accs.push(accuracy(&v, 0)?);
                }
                let (m, sd) = mean_sd(&accs);
                writeln!(
                    md,
                    "| {data} | {budget} | {} | {:.2} ± {:.2} % |",
                    s.name,
                    100.0 * m,
                    100.0 * sd
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
    let base = [
        "--model",
        "minilm-l6",
        "--data",
        "rotten-tomatoes",
        "--head",
        "mlp",
        "--hidden",
        "128",
        "--epochs",
        "20",
    ];
    let mut multi = [Vec::new(), Vec::new()];
    let mut single = [Vec::new(), Vec::new()];
    for seed in SEEDS {
        let mut args: Vec<String> = base.iter().map(|s| s.to_string()).collect();
        args.extend([
            "--seed".into(),
            seed.to_string(),
            "--task".into(),
            "sentiment".into(),
            "--task".into(),
            "subjectivity".into(),
        ]);
        let v = train(tl, &format!("rt-multi-{seed}"), &args)?;
        multi[0].push(accuracy(&v, 0)?);
        multi[1].push(accuracy(&v, 1)?);
        for (t, task) in ["sentiment", "subjectivity"].iter().enumerate() {
            let mut args: Vec<String> = base.iter().map(|s| s.to_string()).collect();
            args.extend([
                "--seed".into(),
                seed.to_string(),
                "--task".into(),
                task.to_string(),
            ]);
            // Alone, subjectivity is split on its own rows (reviews and plots alike).
            let v = train(tl, &format!("rt-{task}-{seed}"), &args)?;
            single[t].push(accuracy(&v, 0)?);
        }
    }
    for (t, task) in ["sentiment", "subjectivity"].iter().enumerate() {
        let (a, sa) = mean_sd(&multi[t]);
        let (b, sb) = mean_sd(&single[t]);
        writeln!(
            md,
            "| {task} | {:.2} ± {:.2} % | {:.2} ± {:.2} % |",
            100.0 * a,
            100.0 * sa,
            100.0 * b,
            100.0 * sb
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
        let mut accs = Vec::new();
        for seed in SEEDS {
            let args: Vec<String> = [
                "--model",
                model,
                "--data",
                "rotten-tomatoes",
                "--task",
                "sentiment",
                "--seed",
                &seed.to_string(),
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            accs.push(accuracy(
                &train(tl, &format!("rt-probe-{model}-{seed}"), &args)?,
                0,
            )?);
        }
        let (m, sd) = mean_sd(&accs);
        writeln!(
            md,
            "| {model} | {width} | {:.2} ± {:.2} % |",
            100.0 * m,
            100.0 * sd
        )?;
    }
    writeln!(
        md,
        "\nThe multi-task split is stratified on sentiment, with the plot summaries (no sentiment) split by subjectivity; a single-task subjectivity split is stratified on subjectivity over all rows, so the test sets differ slightly.\n"
    )?;
    Ok(md)
}
