//! The semi-supervised section of `cargo xtask bench-report --only semi`: `tl adapt
//! --target-labels K` on the two real pairs of the adaptation section, K labelled target
//! rows per class beside the labelled source, 5 seeds, against the same K labels used
//! alone (`tl train --budget K` on the target). Each run's JSON is kept in
//! `target/experiments/semi/`, so an interrupted section resumes where it stopped.

use std::{fmt::Write as _, path::Path};

use anyhow::{Context, Result, bail};

use crate::{
    adapt_experiment::show,
    bench_report::{cached_tl_json, cached_tl_train},
};

const SEEDS: [u64; 5] = [0, 1, 2, 3, 4];

/// Where each run's JSON is kept.
const DIR: &str = "target/experiments/semi";

/// Labelled target rows per class (0: the unsupervised run).
const LABELS: [usize; 4] = [0, 1, 5, 10];

struct Pair {
    key: &'static str,
    title: &'static str,
    adapt: &'static [&'static str],
    methods: &'static [&'static str],
    /// `tl train` flags of the target-alone probe (`--budget K` is added).
    alone: &'static [&'static str],
    /// The headline metric (`accuracy` or `macro_f1`).
    metric: &'static str,
}

const PAIRS: [Pair; 2] = [
    Pair {
        key: "digits",
        title: "Digits: mnist-5k → sklearn-digits-padded, EfficientNet-Lite0 `features` at 224 px; target accuracy",
        adapt: &["--source", "mnist-5k", "--target", "sklearn-digits-padded"],
        methods: &["none", "propagate"],
        alone: &["--data", "sklearn-digits-padded", "--head", "linear"],
        metric: "accuracy",
    },
    Pair {
        key: "sentiment",
        title: "Sentiment: rotten-tomatoes → drug-reviews (neutral dropped), MiniLM-L6, reviews cut into sentences (`--segments auto`); target macro-F1",
        adapt: &[
            "--source",
            "rotten-tomatoes",
            "--target",
            "drug-reviews",
            "--model",
            "minilm-l6",
            "--class-map",
            "rotten=negative,fresh=positive",
        ],
        methods: &["none", "prior"],
        alone: &[
            "--data",
            "drug-reviews",
            "--model",
            "minilm-l6",
            "--task",
            "sentiment",
            "--head",
            "linear",
            "--balanced",
        ],
        metric: "macro_f1",
    },
];

fn value(v: &serde_json::Value, metric: &str) -> Result<f64> {
    v[metric]["value"]
        .as_f64()
        .with_context(|| format!("no `{metric}` in a result"))
}

/// The markdown section.
pub fn section(tl: &Path) -> Result<String> {
    let mut md = String::new();
    writeln!(
        md,
        "## A few target labels: `tl adapt --target-labels K`\n\nK target rows per class keep their labels (drawn by the seed) and join the labelled source in training, after per-domain standardisation; the target is scored on its other rows. Beside it, the same K labels alone: the exact linear probe `tl train --budget K` on the target (K rows per class for training and validation together, scored on its 20 % test split, so the scored rows differ; for the sentiment pair it reads whole-review embeddings, as `tl train` does not cut texts). Every other setting is the adaptation section's, fixed in advance. Mean ± 95 % interval over seeds {SEEDS:?}.\n"
    )?;
    for pair in &PAIRS {
        let percent = pair.metric == "accuracy";
        writeln!(md, "### {}\n", pair.title)?;
        let mut header = String::from("| target labels per class |");
        let mut rule = String::from("|---|");
        for m in pair.methods {
            write!(header, " source + target, `{m}` |")?;
            rule.push_str("---|");
        }
        header.push_str(" target labels alone (`tl train --budget K`) |");
        rule.push_str("---|");
        writeln!(md, "{header}\n{rule}")?;
        for k in LABELS {
            let mut row = format!("| {k} |");
            for m in pair.methods {
                let mut values = Vec::new();
                for seed in SEEDS {
                    let mut args: Vec<String> = vec!["adapt".into()];
                    args.extend(pair.adapt.iter().map(|s| s.to_string()));
                    args.extend(["--method".into(), m.to_string()]);
                    args.extend(["--seed".into(), seed.to_string()]);
                    if k > 0 {
                        args.extend(["--target-labels".into(), k.to_string()]);
                    }
                    let v =
                        cached_tl_json(tl, DIR, &format!("{}-{m}-{k}-{seed}", pair.key), &args)?;
                    if k > 0 {
                        let labelled = v["rows"]["target_labelled"].as_u64().unwrap_or(0);
                        let classes =
                            v["target_scores"]["classes"].as_array().map_or(0, Vec::len) as u64;
                        if labelled != k as u64 * classes {
                            bail!(
                                "{} {m} K={k} seed {seed}: {labelled} labelled target rows for {classes} classes",
                                pair.key
                            );
                        }
                    }
                    values.push(value(&v["target_scores"], pair.metric)?);
                }
                write!(row, " {} |", show(&values, percent))?;
            }
            if k == 0 {
                row.push_str(" – |");
            } else {
                let mut values = Vec::new();
                for seed in SEEDS {
                    let mut args: Vec<String> = pair.alone.iter().map(|s| s.to_string()).collect();
                    args.extend([
                        "--budget".into(),
                        k.to_string(),
                        "--seed".into(),
                        seed.to_string(),
                    ]);
                    let v =
                        cached_tl_train(tl, DIR, &format!("{}-alone-{k}-{seed}", pair.key), &args)?;
                    values.push(value(&v["metrics"]["evaluation"][0], pair.metric)?);
                }
                write!(row, " {} |", show(&values, percent))?;
            }
            writeln!(md, "{row}")?;
        }
        writeln!(md)?;
    }
    Ok(md)
}
