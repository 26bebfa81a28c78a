//! `tl rank`: flags onto the rank config, one library call, printing.

use anyhow::Result;
use clap::Args;
use tl_pipeline::{config::RankConfig, rank::rank};

use crate::{Global, JSON_SCHEMA_VERSION, RunArgs};

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
tl rank --data sklearn-digits --image-size 112\n  \
tl rank --data mnist-5k --models efficientnet-lite0,efficientnet-lite0:blocks.12,mobilenet-v2 --budget 20\n\n\
Scores (higher is better), from the training rows of a seeded split:\n  \
LogME    log marginal evidence of a Bayesian linear model on the features (You et al. 2021)\n  \
H-score  tr(cov(f)⁻¹ cov(E[f|y])) (Bao et al. 2019)\n  \
NCE      −H(target label | source classifier's prediction) (Tran et al. 2019)\n  \
LEEP     log expected empirical prediction of the source classifier (Nguyen et al. 2020)\n\
NCE and LEEP need the model's source classifier (ImageNet logits): `–` for other layers' \
candidates' models without one. Then each candidate's exact linear probe (C on validation) \
gives the test accuracy the scores try to predict, and Kendall's τ says how well each \
score ranked the candidates.")]
pub struct RankArgs {
    /// Registry dataset or path: image folder, text table, IDX file, dataset.toml
    /// (`tl data info PATH` shows how it is read).
    #[arg(long, short)]
    data: String,
    /// Candidates: MODEL or MODEL:LAYER, comma-separated (default: efficientnet-lite0,mobilenet-v2 at their feature outputs).
    #[arg(long, value_delimiter = ',', value_name = "MODEL[:LAYER],...")]
    models: Option<Vec<String>>,
    /// Task (default: the dataset's first).
    #[arg(long)]
    task: Option<String>,
    #[arg(long, value_name = "N")]
    image_size: Option<u32>,
    /// Labelled rows per class for training and validation together (the split's budget).
    #[arg(long, value_name = "K")]
    budget: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    run: RunArgs,
}

impl RankArgs {
    /// The rank config the flags describe.
    pub(crate) fn config(&self) -> RankConfig {
        RankConfig {
            data: self.data.clone(),
            models: self
                .models
                .clone()
                .unwrap_or_else(|| RankConfig::default().models),
            task: self.task.clone(),
            image_size: self.image_size,
            budget: self.budget,
            seed: self.seed,
        }
    }
}

pub fn run(a: &RankArgs, global: &Global) -> Result<()> {
    let env = global.env(Some(&a.run))?;
    let r = rank(&a.config(), &env)?;
    if global.json {
        let mut v = serde_json::to_value(&r)?;
        v["schema_version"] = JSON_SCHEMA_VERSION.into();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let out = &r.candidates;
    let taus = &r.kendall_tau_with_probe_accuracy;
    let mut order: Vec<usize> = (0..out.len()).collect();
    order.sort_by(|&i, &j| out[j].logme.total_cmp(&out[i].logme));
    let opt = |v: Option<f64>| v.map_or("–".to_string(), |x| format!("{x:.4}"));
    println!(
        "{} ({} training rows scored, {} test rows for the probe), ranked by LogME:",
        r.data, r.rows.train, r.rows.test
    );
    println!(
        "{:<40} {:>9} {:>9} {:>9} {:>9} {:>14}",
        "candidate", "LogME", "H-score", "NCE", "LEEP", "probe test acc"
    );
    for i in order {
        let c = &out[i];
        println!(
            "{:<40} {:>9.4} {:>9.3} {:>9} {:>9} {:>14.4}",
            format!("{}:{}", c.model, c.layer),
            c.logme,
            c.h_score,
            opt(c.nce),
            opt(c.leep),
            c.probe_test_accuracy
        );
    }
    let show = |t: Option<f64>| t.map_or("–".to_string(), |x| format!("{x:+.2}"));
    println!(
        "Kendall's τ with the probe accuracy: LogME {}, H-score {}, NCE {}, LEEP {}",
        show(taus.logme),
        show(taus.h_score),
        show(taus.nce),
        show(taus.leep)
    );
    Ok(())
}
