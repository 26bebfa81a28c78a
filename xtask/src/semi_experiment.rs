//! The semi-supervised section of `cargo xtask bench-report --only semi`: `tl adapt
//! --target-labels K` on the two real pairs of the adaptation section, K labelled target
//! rows per class beside the labelled source, 5 seeds, against the same K labels used
//! alone (`tl train --budget K` on the target). The runs are the cells of
//! `experiments/semi.toml`, run by `tl run` (resumable) and read back as typed results.

use std::fmt::Write as _;

use anyhow::{Context, Result, bail};

use crate::{
    adapt_experiment::{metric, show},
    bench_report::{adapt_runs, evaluation, experiment_outputs, train_runs},
};

const SEEDS: [u64; 5] = [0, 1, 2, 3, 4];

/// Labelled target rows per class (0: the unsupervised run).
const LABELS: [usize; 4] = [0, 1, 5, 10];

struct Pair {
    /// The adapt study of `experiments/semi.toml`, and the train study of the labels alone.
    study: &'static str,
    alone: &'static str,
    title: &'static str,
    methods: &'static [&'static str],
    /// The headline metric (`accuracy` or `macro_f1`).
    metric: &'static str,
}

const PAIRS: [Pair; 2] = [
    Pair {
        study: "digits",
        alone: "digits-alone",
        title: "Digits: mnist-5k → sklearn-digits-padded, EfficientNet-Lite0 `features` at 224 px; target accuracy",
        methods: &["none", "propagate"],
        metric: "accuracy",
    },
    Pair {
        study: "sentiment",
        alone: "sentiment-alone",
        title: "Sentiment: rotten-tomatoes → drug-reviews (neutral dropped), MiniLM-L6, reviews cut into sentences (`--segments auto`); target macro-F1",
        methods: &["none", "prior"],
        metric: "macro_f1",
    },
];

/// One table cell: the method's runs with `k` target labels, checked to have used k
/// labelled target rows per class.
fn adapt_cell(
    outs: &[tl_pipeline::experiment::CellOutput],
    pair: &Pair,
    m: &str,
    k: usize,
) -> Result<String> {
    let mut values = Vec::new();
    for (seed, run) in adapt_runs(outs, pair.study, m, Some(k)).iter().enumerate() {
        let scores = run
            .target_scores
            .as_ref()
            .context("a target without labels")?;
        let labelled = run.rows.get("target_labelled").copied().unwrap_or(0);
        if labelled != k * scores.classes.len() {
            bail!(
                "{} {m} K={k} seed {seed}: {labelled} labelled target rows for {} classes",
                pair.study,
                scores.classes.len()
            );
        }
        values.push(metric(scores, pair.metric).value);
    }
    Ok(show(&values, pair.metric == "accuracy"))
}

/// The markdown section.
pub fn section() -> Result<String> {
    let outs = experiment_outputs("semi")?;
    let mut md = String::new();
    writeln!(
        md,
        "## A few target labels: `tl adapt --target-labels K`\n\nK target rows per class keep their labels (drawn by the seed) and join the labelled source in training, after per-domain standardisation; the target is scored on its other rows. Beside it, the same K labels alone: the exact linear probe `tl train --budget K` on the target (K rows per class for training and validation together, scored on its 20 % test split, so the scored rows differ; for the sentiment pair it reads whole-review embeddings, as `tl train` does not cut texts). Every other setting is the adaptation section's, fixed in advance. Mean ± 95 % interval over seeds {SEEDS:?}.\n"
    )?;
    for pair in &PAIRS {
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
                write!(row, " {} |", adapt_cell(&outs, pair, m, k)?)?;
            }
            if k == 0 {
                row.push_str(" – |");
            } else {
                let values = train_runs(&outs, pair.alone, None, Some(k))
                    .iter()
                    .map(|m| Ok(metric(evaluation(m)?, pair.metric).value))
                    .collect::<Result<Vec<f64>>>()?;
                write!(row, " {} |", show(&values, pair.metric == "accuracy"))?;
            }
            writeln!(md, "{row}")?;
        }
        writeln!(md)?;
    }
    writeln!(
        md,
        "Experiment: `tl run experiments/semi.toml` (every cell above is one of its runs).\n"
    )?;
    Ok(md)
}
