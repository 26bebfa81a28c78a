//! The transferability section of `cargo xtask bench-report --only rank`: `tl rank` on two
//! digit datasets, 3 split seeds each, over layers of both ImageNet backbones (LogME and
//! H-score) and over the two whole models (NCE and LEEP, which need each model's ImageNet
//! classifier). Each run's JSON is kept in `target/experiments/rank/`, so an interrupted
//! section resumes where it stopped.

use std::{fmt::Write as _, path::Path};

use anyhow::{Context, Result};

use crate::bench_report::cached_tl_json;

const SEEDS: [u64; 3] = [0, 1, 2];

/// Layers of both backbones, from early to the feature output: what LogME and H-score rank.
const LAYERS: &str = "efficientnet-lite0:blocks.5,efficientnet-lite0:blocks.10,efficientnet-lite0:blocks.15,efficientnet-lite0,mobilenet-v2:features.6,mobilenet-v2:features.13,mobilenet-v2:features.16,mobilenet-v2";

/// The two whole models, whose ImageNet logits NCE and LEEP read.
const MODELS: &str = "efficientnet-lite0,mobilenet-v2";

/// Datasets and their `tl rank` flags (112 px keeps the extractions short).
const DATASETS: [(&str, &[&str]); 2] = [
    ("sklearn-digits", &["--image-size", "112"]),
    ("mnist-5k", &["--image-size", "112", "--budget", "50"]),
];

fn tau(v: &serde_json::Value, score: &str) -> Option<f64> {
    v["kendall_tau_with_probe_accuracy"][score].as_f64()
}

fn mean(v: &[f64]) -> String {
    if v.is_empty() {
        return "–".into();
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let each: Vec<String> = v.iter().map(|x| format!("{x:+.2}")).collect();
    format!("{m:+.2} ({})", each.join(", "))
}

/// The markdown section.
pub fn section(tl: &Path) -> Result<String> {
    let mut md = String::new();
    writeln!(
        md,
        "## Transferability before training: `tl rank`\n\nEach score is computed on a seeded split's training rows without training a head; then each candidate's exact linear probe (C on the validation rows) gives the test accuracy the scores try to predict, and Kendall's τ (+1: the same order, −1: reversed) says how well each score ordered the candidates. LogME and H-score rank eight candidates: three inner layers (spatially mean-pooled) and the feature output of each backbone; NCE and LEEP read a model's ImageNet classifier, so they rank the two whole models only (τ is then ±1). Split seeds {SEEDS:?}; images at 112 px.\n"
    )?;
    for (data, flags) in DATASETS {
        let mut layer_runs = Vec::new();
        let mut model_runs = Vec::new();
        for seed in SEEDS {
            for (kind, candidates, runs) in [
                ("layers", LAYERS, &mut layer_runs),
                ("models", MODELS, &mut model_runs),
            ] {
                let mut args: Vec<String> = vec!["rank".into(), "--data".into(), data.into()];
                args.extend(flags.iter().map(|s| s.to_string()));
                args.extend([
                    "--models".into(),
                    candidates.into(),
                    "--seed".into(),
                    seed.to_string(),
                ]);
                runs.push(cached_tl_json(
                    tl,
                    "target/experiments/rank",
                    &format!("{data}-{kind}-{seed}"),
                    &args,
                )?);
            }
        }
        let first = &layer_runs[0];
        writeln!(
            md,
            "### {data} (`tl rank --data {data} {} --models … --seed S`)\n\nSeed 0: {} training rows scored, {} test rows for the probe.\n",
            flags.join(" "),
            first["rows"]["train"],
            first["rows"]["test"]
        )?;
        writeln!(
            md,
            "| candidate (seed 0) | width | LogME | H-score | NCE | LEEP | probe test accuracy |"
        )?;
        writeln!(md, "|---|---|---|---|---|---|---|")?;
        let models = &model_runs[0]["candidates"];
        for c in first["candidates"]
            .as_array()
            .context("no candidates in a rank result")?
        {
            // NCE and LEEP of a whole model come from the models run (same split).
            let whole = models.as_array().and_then(|m| {
                m.iter()
                    .find(|w| w["model"] == c["model"] && w["layer"] == c["layer"])
            });
            let opt = |k: &str| {
                whole
                    .and_then(|w| w[k].as_f64())
                    .map_or("–".into(), |x| format!("{x:.4}"))
            };
            writeln!(
                md,
                "| {}:{} | {} | {:.2} | {:.2} | {} | {} | {:.1} % |",
                c["model"].as_str().unwrap_or(""),
                c["layer"].as_str().unwrap_or(""),
                c["width"],
                c["logme"].as_f64().unwrap_or(f64::NAN),
                c["h_score"].as_f64().unwrap_or(f64::NAN),
                opt("nce"),
                opt("leep"),
                100.0 * c["probe_test_accuracy"].as_f64().unwrap_or(f64::NAN)
            )?;
        }
        let collect = |runs: &[serde_json::Value], score: &str| -> Vec<f64> {
            runs.iter().filter_map(|v| tau(v, score)).collect()
        };
        writeln!(
            md,
            "\nKendall's τ with the probe's test accuracy, mean (seeds {SEEDS:?}): LogME {}, H-score {} over the eight candidates; NCE {}, LEEP {} over the two models.\n",
            mean(&collect(&layer_runs, "logme")),
            mean(&collect(&layer_runs, "h_score")),
            mean(&collect(&model_runs, "nce")),
            mean(&collect(&model_runs, "leep")),
        )?;
    }
    Ok(md)
}
