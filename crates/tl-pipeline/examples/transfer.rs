//! A complete transfer job, one public call per stage: fetch the pinned model and data,
//! extract features into the feature store, fit the exact linear probe, evaluate it, and
//! export backbone + head as one ONNX file.
//!
//! `cargo run -p tl-pipeline --example transfer [OUT_DIR]` (the test command runs it).

use std::{collections::BTreeMap, path::PathBuf};

use tl_pipeline::{
    Env,
    artifact::{METRICS_SCHEMA_VERSION, Metrics, export_artifact, files},
    config::{RunConfig, SplitSettings},
    train::{self, Written},
};

fn main() -> anyhow::Result<()> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or("runs/example-transfer".into()),
    );
    let home = tl_core::home::tl_home()?;
    // 1. Fetch: pinned by sha256, nothing to do when already fetched.
    let registry = tl_hub::Registry::builtin()?;
    // Notes and progress go nowhere by default; pip's own output to TL_HOME/logs/.
    let fetch = tl_hub::FetchOptions::new(home.clone());
    let ids = ["onnxruntime", "efficientnet-lite0", "sklearn-digits"].map(String::from);
    tl_hub::Fetcher::new(registry, fetch).fetch(&ids)?;
    // 2. The run: EfficientNet-Lite0 features of the digits at 64 px, 10 labels per class.
    let env = Env::new(home);
    let cfg = RunConfig {
        data: "sklearn-digits".into(),
        image_size: Some(64),
        split: SplitSettings {
            budget: Some(10),
            ..SplitSettings::default()
        },
        ..RunConfig::default()
    };
    let ds = tl_hub::load_dataset(&cfg.data, &env.home)?;
    let tasks = train::tasks_of(&ds, &cfg.tasks)?;
    let split = train::split_for(&cfg.split, &ds, &tasks)?;
    // 3. Extract (or find in the feature store) and gather the features per part.
    let request = train::feature_request(&cfg, None, &env.home)?;
    let data = train::labelled_features(&request, &ds, &split, &tasks, &env)?;
    // 4. Fit the exact probe (C chosen on validation) and evaluate it on the test rows.
    tl_core::io::create_dir_all(&out)?;
    split.save(&out.join(files::SPLIT))?;
    let (mut net, fitted) = train::fit(&cfg, &tasks, &data, None, &out, "example", &env)?;
    let scores = train::evaluate(&mut net, &tasks, &data, cfg.split.seed)?;
    let accuracy = &scores.evaluation[0].evaluation.accuracy;
    println!(
        "test accuracy {:.4} [{:.4}, {:.4}] on {} rows",
        accuracy.value, accuracy.low, accuracy.high, scores.test[0].rows
    );
    // 5. Write the artifact directory and export it as one ONNX file.
    let metrics = Metrics {
        schema_version: METRICS_SCHEMA_VERSION,
        test: scores.test,
        val: scores.val,
        rows: data.counts(),
        probe_path: fitted.probe_path,
        training: fitted.training,
        seconds: BTreeMap::new(),
        evaluation: scores.evaluation,
    };
    let written = Written {
        cfg: &cfg,
        ds: &ds,
        tasks: &tasks,
        source: &data.source,
        finetuning: None,
        metrics: &metrics,
    };
    train::write_artifact(&written, &net, &out, &env)?;
    let model = export_artifact(&out, &out.join(files::MODEL))?;
    println!("exported {}", model.display());
    Ok(())
}
