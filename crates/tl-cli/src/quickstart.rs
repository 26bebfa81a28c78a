//! `tl quickstart`: the main job on built-in defaults.
//!
//! Fetches what it needs, shows the pretrained ImageNet models at work on the sample
//! photos, then runs the built-in experiment (`experiments/quickstart.toml`): learning
//! curves of pretrained features against raw inputs on digits and film reviews, and
//! MNIST → digits adaptation, ending in one HTML report. A second run reuses every
//! finished cell.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use serde::Serialize;
use tl_hub::{Fetcher, Registry};

use crate::{Global, JSON_SCHEMA_VERSION, RunArgs, classify, experiment};

/// The built-in experiment.
pub const EXPERIMENT: &str = include_str!("../../../experiments/quickstart.toml");

/// What the quickstart fetches: the runtime, the models and data the photos and the
/// experiment use.
const FETCH: [&str; 8] = [
    "onnxruntime",
    "sample-photos",
    "efficientnet-lite0",
    "mobilenet-v2",
    "minilm-l6",
    "mnist-5k",
    "sklearn-digits-padded",
    "rotten-tomatoes",
];

#[derive(Debug, Args)]
#[command(
    after_help = "The quickstart's experiment is experiments/quickstart.toml, built in; run it (or your
own copy) with `tl run FILE`. EfficientNet-Lite0 runs at 64 px here to fit a few minutes on
a 2-core CPU. Rerun to reuse every finished cell (an interrupted run resumes)."
)]
pub struct QuickstartArgs {
    /// Where the experiment's runs and report go.
    #[arg(long, default_value = "runs/quickstart")]
    pub out: PathBuf,
    /// Only classify the sample photos; skip the experiment.
    #[arg(long)]
    pub photos_only: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

const MODELS: [&str; 2] = ["efficientnet-lite0", "mobilenet-v2"];
const PHOTOS: [&str; 5] = [
    "chelsea.png",
    "coffee.png",
    "astronaut.png",
    "rocket.jpg",
    "camera.png",
];

pub fn run(a: &QuickstartArgs, global: &Global) -> Result<()> {
    let run = &a.run;
    let home = global.home()?;
    let registry = Registry::builtin()?;
    let opts = global.fetch_options(home.clone());
    let ids: Vec<String> = if a.photos_only {
        FETCH[..4].iter().map(|s| s.to_string()).collect()
    } else {
        FETCH.iter().map(|s| s.to_string()).collect()
    };
    Fetcher::new(registry, opts).fetch(&ids)?;
    let photos_dir = tl_core::home::asset_dir(&home, "sample-photos");
    let images: Vec<_> = PHOTOS.iter().map(|p| photos_dir.join(p)).collect();
    let mut reports = Vec::new();
    for model in MODELS {
        let args = classify::ClassifyArgs {
            model: model.to_string(),
            contract: None,
            top: 3,
            batch_size: 8,
            image_size: None,
            run: run.clone(),
            images: images.clone(),
        };
        reports.push(classify::classify(&args, global)?);
    }
    if global.json {
        #[derive(Serialize)]
        struct Out<'a> {
            schema_version: u32,
            reports: Vec<&'a tl_pipeline::classify::Report>,
            experiment: Option<tl_pipeline::experiment::Outcome>,
        }
        let out = Out {
            schema_version: JSON_SCHEMA_VERSION,
            reports: reports.iter().map(|(r, _)| r).collect(),
            experiment: experiment_step(a, global)?,
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    print_photos(&reports);
    if let Some(o) = experiment_step(a, global)? {
        experiment::print_outcome(&o);
    }
    println!(
        "\nNext: `tl run experiments/digits.toml` (the full grid; also sentiment, adaptation, multitask), `tl train --data YOUR_FOLDER --out runs/mine`, `tl classify --model mobilenet-v2 YOUR_IMAGE.jpg`, `tl doctor`."
    );
    Ok(())
}

/// The two models' top-1 class per photo, and their timings.
fn print_photos(reports: &[(tl_pipeline::classify::Report, std::time::Duration)]) {
    println!();
    println!("ImageNet classification of scikit-image's sample photos (top-1 class, probability):");
    println!("{:<14} {:<36} {:<36}", "photo", MODELS[0], MODELS[1]);
    for (i, photo) in PHOTOS.iter().enumerate() {
        let cell = |r: &tl_pipeline::classify::Report| {
            let p = &r.results[i].top[0];
            let label = p.label.as_deref().unwrap_or("-");
            let short: String = label
                .split(',')
                .next()
                .unwrap_or(label)
                .chars()
                .take(26)
                .collect();
            format!("{short} ({:.2})", p.probability)
        };
        println!(
            "{:<14} {:<36} {:<36}",
            photo,
            cell(&reports[0].0),
            cell(&reports[1].0)
        );
    }
    for (r, t) in reports {
        println!(
            "{}: {} photos at {} px on {} in {:.0} ms",
            r.model,
            r.results.len(),
            r.image_size,
            r.provider,
            t.as_secs_f64() * 1e3
        );
    }
}

/// The built-in experiment, written into the output directory and run from there.
fn experiment_step(
    a: &QuickstartArgs,
    global: &Global,
) -> Result<Option<tl_pipeline::experiment::Outcome>> {
    if a.photos_only {
        return Ok(None);
    }
    if !global.quiet && !global.json {
        println!(
            "\nTransfer learning on real data: the built-in experiment (EfficientNet-Lite0 at 64 px, reduced from 224 to fit a few minutes on a CPU), into {}",
            a.out.display()
        );
    }
    tl_core::io::create_dir_all(&a.out)?;
    let file = a.out.join("quickstart.toml");
    tl_core::io::atomic_write(&file, EXPERIMENT.as_bytes())?;
    experiment::execute(
        &experiment::RunExperimentArgs {
            file,
            out: Some(a.out.clone()),
            studies: Vec::new(),
            dry_run: false,
            run: a.run.clone(),
        },
        global,
    )
    .map(Some)
}
