//! The transferability section of `cargo xtask bench-report --only rank`: `tl rank` on two
//! digit datasets, 3 split seeds each, over layers of both ImageNet backbones (LogME and
//! H-score) and over the two whole models (NCE and LEEP, which need each model's ImageNet
//! classifier). The runs are the cells of `experiments/rank.toml`, run by `tl run`
//! (resumable) and read back as typed results.

use std::fmt::Write as _;

use anyhow::{Context, Result};
use tl_pipeline::rank::Taus;

use crate::bench_report::{experiment_outputs, rank_runs};

const SEEDS: [u64; 3] = [0, 1, 2];

/// Datasets and the `tl rank` flags of their studies (112 px keeps the extractions short).
const DATASETS: [(&str, &str); 2] = [
    ("sklearn-digits", "--image-size 112"),
    ("mnist-5k", "--image-size 112 --budget 50"),
];

fn mean(v: &[f64]) -> String {
    if v.is_empty() {
        return "–".into();
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let each: Vec<String> = v.iter().map(|x| format!("{x:+.2}")).collect();
    format!("{m:+.2} ({})", each.join(", "))
}

/// The markdown section.
pub fn section() -> Result<String> {
    let mut md = String::new();
    writeln!(
        md,
        "## Transferability before training: `tl rank`\n\nEach score is computed on a seeded split's training rows without training a head; then each candidate's exact linear probe (C on the validation rows) gives the test accuracy the scores try to predict, and Kendall's τ (+1: the same order, −1: reversed) says how well each score ordered the candidates. LogME and H-score rank eight candidates: three inner layers (spatially mean-pooled) and the feature output of each backbone; NCE and LEEP read a model's ImageNet classifier, so they rank the two whole models only (τ is then ±1). Split seeds {SEEDS:?}; images at 112 px.\n"
    )?;
    let outs = experiment_outputs("rank")?;
    for (data, flags) in DATASETS {
        // Per seed: the layers run (LogME, H-score) and the whole-models run (NCE, LEEP).
        let layer_runs = rank_runs(&outs, &format!("{data}-layers"));
        let model_runs = rank_runs(&outs, &format!("{data}-models"));
        let first = layer_runs.first().context("no rank run")?;
        writeln!(
            md,
            "### {data} (`tl rank --data {data} {flags} --models … --seed S`)\n\nSeed 0: {} training rows scored, {} test rows for the probe.\n",
            first.rows.train, first.rows.test
        )?;
        writeln!(
            md,
            "| candidate (seed 0) | width | LogME | H-score | NCE | LEEP | probe test accuracy |"
        )?;
        writeln!(md, "|---|---|---|---|---|---|---|")?;
        let models = &model_runs
            .first()
            .context("no rank run of the models")?
            .candidates;
        for c in &first.candidates {
            // NCE and LEEP of a whole model come from the models run (same split).
            let whole = models
                .iter()
                .find(|w| w.model == c.model && w.layer == c.layer);
            let opt = |f: fn(&tl_pipeline::rank::Candidate) -> Option<f64>| {
                whole.and_then(f).map_or("–".into(), |x| format!("{x:.4}"))
            };
            writeln!(
                md,
                "| {}:{} | {} | {:.2} | {:.2} | {} | {} | {:.1} % |",
                c.model,
                c.layer,
                c.width,
                c.logme,
                c.h_score,
                opt(|w| w.nce),
                opt(|w| w.leep),
                100.0 * c.probe_test_accuracy
            )?;
        }
        let collect =
            |runs: &[&tl_pipeline::rank::Ranking], score: fn(&Taus) -> Option<f64>| -> Vec<f64> {
                runs.iter()
                    .filter_map(|r| score(&r.kendall_tau_with_probe_accuracy))
                    .collect()
            };
        writeln!(
            md,
            "\nKendall's τ with the probe's test accuracy, mean (seeds {SEEDS:?}): LogME {}, H-score {} over the eight candidates; NCE {}, LEEP {} over the two models.\n",
            mean(&collect(&layer_runs, |t| t.logme)),
            mean(&collect(&layer_runs, |t| t.h_score)),
            mean(&collect(&model_runs, |t| t.nce)),
            mean(&collect(&model_runs, |t| t.leep)),
        )?;
    }
    writeln!(
        md,
        "Experiment: `tl run experiments/rank.toml` (every figure above is one of its runs).\n"
    )?;
    Ok(md)
}
