//! `tl rank`: transferability scores of candidate backbones and layers for a labelled
//! dataset, computed without training a head, beside the linear-probe accuracy each
//! candidate actually reaches and each score's rank correlation with it.

use anyhow::Result;
use clap::Args;
use serde::Serialize;
use tl_adapt::transfer::{h_score, kendall_tau, leep, logme, nce};
use tl_data::{Part, Split, SplitConfig};
use tl_features::extract::Pool;
use tl_head::probe::{ProbeConfig, ProbeData, accuracy, fit_path};

use crate::{
    Global, JSON_SCHEMA_VERSION, RunArgs, data,
    train::{FeatureRequest, feature_source},
};

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

/// One candidate's scores and the probe accuracy it reached.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    pub model: String,
    pub layer: String,
    pub width: usize,
    pub logme: f64,
    pub h_score: f64,
    pub nce: Option<f64>,
    pub leep: Option<f64>,
    pub probe_test_accuracy: f64,
    pub probe_c: f64,
}

pub fn run(a: &RankArgs, global: &Global) -> Result<()> {
    let home = global.home()?;
    let ds = data::load(&a.data, &home)?;
    let task = match &a.task {
        Some(t) => t.clone(),
        None => data::first_labelled_task(&ds)?,
    };
    let t = ds.task_index(&task)?;
    let classes = ds.tasks[t].classes.clone();
    let mut sc = SplitConfig::new(&task, a.seed);
    sc.budget = a.budget;
    let split = Split::stratified(&ds, &sc)?;
    let sub = split.used_rows(&ds);
    let part = |p: Part| -> (Vec<String>, Vec<u32>) {
        split
            .rows
            .iter()
            .filter(|r| r.split == p)
            .filter_map(|r| {
                let c = r.labels.get(&task)?;
                Some((
                    r.content_hash.clone(),
                    classes.iter().position(|k| k == c)? as u32,
                ))
            })
            .unzip()
    };
    let (train_h, train_y) = part(Part::Train);
    let (val_h, val_y) = part(Part::Val);
    let (test_h, test_y) = part(Part::Test);
    let candidates = a
        .models
        .clone()
        .unwrap_or_else(|| vec!["efficientnet-lite0".into(), "mobilenet-v2".into()]);
    let registry = tl_hub::Registry::builtin()?;
    let say = |s: String| {
        if !global.quiet && !global.json {
            eprintln!("{s}");
        }
    };
    let mut out = Vec::new();
    for cand in &candidates {
        let (model, layer) = match cand.split_once(':') {
            Some((m, l)) => (m.to_string(), Some(l.to_string())),
            None => (cand.clone(), None),
        };
        let req = |layer: Option<String>| FeatureRequest {
            model: &model,
            contract: None,
            model_file: None,
            layer,
            pool: Pool::Mean,
            image_size: a.image_size,
            inputs: false,
            run: &a.run,
        };
        let src = feature_source(&req(layer.clone()), &sub, &home, global)?;
        let (xtr, xva, xte) = (
            (src.gather)(&train_h)?,
            (src.gather)(&val_h)?,
            (src.gather)(&test_h)?,
        );
        let k = classes.len();
        let lm = logme(xtr.view(), &train_y, k)?;
        let hs = h_score(xtr.view(), &train_y, k)?;
        // The source classifier: the model's logits output, where it has one.
        let logits = registry
            .get(&model)
            .ok()
            .and_then(|e| e.outputs.as_ref().and_then(|o| o.logits.clone()));
        let (nc, le) = match logits {
            Some(node) => {
                let z = (feature_source(&req(Some(node)), &sub, &home, global)?.gather)(&train_h)?;
                let p = tl_adapt::loss::probabilities(z.mapv(f64::from).view());
                (
                    Some(nce(p.view(), &train_y, k)?),
                    Some(leep(p.view(), &train_y, k)?),
                )
            }
            None => (None, None),
        };
        let path = fit_path(
            &ProbeData {
                x: xtr.view(),
                y: &train_y,
                classes: k,
            },
            &ProbeData {
                x: xva.view(),
                y: &val_y,
                classes: k,
            },
            &crate::train::ProbeSettings::default().cs,
            &ProbeConfig::default(),
        )?;
        let acc = accuracy(&path.probe.predict(xte.view()), &test_y);
        say(format!(
            "{model}:{}: LogME {lm:.4}, H-score {hs:.3}, probe test accuracy {acc:.4}",
            src.layer
        ));
        out.push(Candidate {
            model: model.clone(),
            layer: src.layer.clone(),
            width: src.width,
            logme: lm,
            h_score: hs,
            nce: nc,
            leep: le,
            probe_test_accuracy: acc,
            probe_c: path.best_c,
        });
    }
    let acc: Vec<f64> = out.iter().map(|c| c.probe_test_accuracy).collect();
    let tau = |f: &dyn Fn(&Candidate) -> Option<f64>| -> Option<f64> {
        let v: Option<Vec<f64>> = out.iter().map(f).collect();
        v.filter(|v| v.len() >= 2).map(|v| kendall_tau(&v, &acc))
    };
    let taus = serde_json::json!({
        "logme": tau(&|c| Some(c.logme)),
        "h_score": tau(&|c| Some(c.h_score)),
        "nce": tau(&|c| c.nce),
        "leep": tau(&|c| c.leep),
    });
    if global.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "schema_version": JSON_SCHEMA_VERSION, "data": ds.name, "task": task,
                "rows": {"train": train_y.len(), "val": val_y.len(), "test": test_y.len()},
                "candidates": out, "kendall_tau_with_probe_accuracy": taus,
            }))?
        );
        return Ok(());
    }
    let mut order: Vec<usize> = (0..out.len()).collect();
    order.sort_by(|&i, &j| out[j].logme.total_cmp(&out[i].logme));
    let opt = |v: Option<f64>| v.map_or("–".to_string(), |x| format!("{x:.4}"));
    println!(
        "{} ({} training rows scored, {} test rows for the probe), ranked by LogME:",
        ds.name,
        train_y.len(),
        test_y.len()
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
    let show = |k: &str| {
        taus[k]
            .as_f64()
            .map_or("–".to_string(), |x| format!("{x:+.2}"))
    };
    println!(
        "Kendall's τ with the probe accuracy: LogME {}, H-score {}, NCE {}, LEEP {}",
        show("logme"),
        show("h_score"),
        show("nce"),
        show("leep")
    );
    Ok(())
}
