//! `tl quickstart`: the main job on built-in defaults.
//!
//! For now: fetch ONNX Runtime, both ImageNet models and the sample photos, then
//! classify the photos with each model and print a compact table. Later work grows
//! this into the full transfer-learning quickstart (learning curves, adaptation).

use anyhow::Result;
use serde::Serialize;
use tl_hub::{FetchOptions, Fetcher, Registry};

use crate::{Global, JSON_SCHEMA_VERSION, RunArgs, classify};

const MODELS: [&str; 2] = ["efficientnet-lite0", "mobilenet-v2"];
const PHOTOS: [&str; 5] = [
    "chelsea.png",
    "coffee.png",
    "astronaut.png",
    "rocket.jpg",
    "camera.png",
];

pub fn run(run: &RunArgs, global: &Global) -> Result<()> {
    let home = global.home()?;
    let registry = Registry::builtin()?;
    let mut opts = FetchOptions::new(home.clone());
    opts.quiet = global.quiet || global.json;
    let mut ids: Vec<String> = vec!["onnxruntime".into(), "sample-photos".into()];
    ids.extend(MODELS.iter().map(|s| s.to_string()));
    Fetcher::new(&registry, opts).fetch(&ids)?;
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
            reports: Vec<&'a classify::Report>,
        }
        let out = Out {
            schema_version: JSON_SCHEMA_VERSION,
            reports: reports.iter().map(|(r, _)| r).collect(),
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!();
    println!("ImageNet classification of scikit-image's sample photos (top-1 class, probability):");
    println!("{:<14} {:<36} {:<36}", "photo", MODELS[0], MODELS[1]);
    for (i, photo) in PHOTOS.iter().enumerate() {
        let cell = |r: &classify::Report| {
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
    for (r, t) in &reports {
        println!(
            "{}: {} photos at {} px on {} in {:.0} ms",
            r.model,
            r.results.len(),
            r.image_size,
            r.provider,
            t.as_secs_f64() * 1e3
        );
    }
    println!(
        "\nNext: `tl classify --model mobilenet-v2 YOUR_IMAGE.jpg`, `tl models inspect efficientnet-lite0`, `tl doctor`."
    );
    Ok(())
}
