//! `tl classify`: top-k classes of images.

use std::{path::PathBuf, time::Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use ndarray::{Array2, Axis};
use serde::Serialize;
use tl_runtime::{Input, Runtime, RuntimeOptions, Session, SessionOptions};

use crate::{Global, JSON_SCHEMA_VERSION, RunArgs, resolve};

#[derive(Debug, Clone, Args)]
pub struct ClassifyArgs {
    /// Registry id (`tl models list`) or path to an .onnx file.
    #[arg(long, short, default_value = "efficientnet-lite0")]
    pub model: String,
    /// Input contract (TOML) for a model file that does not carry one.
    #[arg(long, value_name = "FILE.toml")]
    pub contract: Option<PathBuf>,
    /// How many classes to show per image.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// Images per ONNX Runtime call.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Input side in pixels, for models with dynamic spatial size (default: the model's own).
    #[arg(long, value_name = "N")]
    pub image_size: Option<u32>,
    #[command(flatten)]
    pub run: RunArgs,
    /// Image files (PNG, JPEG, GIF, BMP, TIFF, WebP).
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<PathBuf>,
}

#[derive(Debug, Serialize)]
pub struct Prediction {
    pub class: usize,
    pub label: Option<String>,
    pub probability: f32,
}

#[derive(Debug, Serialize)]
pub struct ImageResult {
    pub image: PathBuf,
    pub top: Vec<Prediction>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub model: String,
    pub provider: String,
    pub device_note: Option<String>,
    pub image_size: u32,
    pub results: Vec<ImageResult>,
}

/// Row-wise softmax, computed stably in f64.
pub fn softmax_rows(logits: &Array2<f32>) -> Array2<f32> {
    let mut out = logits.clone();
    for mut row in out.axis_iter_mut(Axis(0)) {
        let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
        row.mapv_inplace(|v| ((v as f64 - max).exp() / sum) as f32);
    }
    out
}

pub fn run(args: &ClassifyArgs, global: &Global) -> Result<()> {
    let (report, elapsed) = classify(args, global)?;
    if global.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    for r in &report.results {
        println!("{}", r.image.display());
        for p in &r.top {
            println!(
                "  {:>7.4}  {:>4}  {}",
                p.probability,
                p.class,
                p.label.as_deref().unwrap_or("-")
            );
        }
    }
    if !global.quiet {
        eprintln!(
            "{} image(s), model {} at {} px, provider {}, {:.0} ms",
            report.results.len(),
            report.model,
            report.image_size,
            report.provider,
            elapsed.as_secs_f64() * 1e3
        );
    }
    Ok(())
}

/// Classifies the images of `args`; returns the report and the time spent in preprocessing and inference.
pub fn classify(args: &ClassifyArgs, global: &Global) -> Result<(Report, std::time::Duration)> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    if args.top == 0 {
        bail!("--top must be at least 1");
    }
    let home = global.home()?;
    let model = resolve::resolve(&args.model, args.contract.as_deref(), &home)?;
    let mut contract = model.image_contract()?.clone();
    if let Some(size) = args.image_size {
        contract = contract.with_size(size)?;
    }
    let logits_name = model.logits.clone().with_context(|| {
        format!(
            "`{}`: cannot tell which output holds the class scores",
            model.name
        )
    })?;
    for img in &args.images {
        if !img.is_file() {
            bail!("image `{}` does not exist", img.display());
        }
    }
    let rt = Runtime::init(&RuntimeOptions::device(args.run.device).with_home(home.clone()))?;
    if let Some(note) = &rt.device().note
        && !global.quiet
    {
        eprintln!("{note}");
    }
    let mut session = Session::from_file(
        rt,
        &model.path,
        &SessionOptions::default()
            .threads(args.run.threads)
            .precision(args.run.precision),
    )?;
    let started = Instant::now();
    let mut results = Vec::with_capacity(args.images.len());
    for chunk in args.images.chunks(args.batch_size) {
        let batch = tl_features::image::preprocess_files(&contract, chunk)?.into_dyn();
        let out = session.run(
            &[(contract.input.as_str(), Input::F32(batch.view()))],
            &[logits_name.as_str()],
        )?;
        let scores = out[&logits_name]
            .clone()
            .into_dimensionality::<ndarray::Ix2>()
            .with_context(|| format!("output `{logits_name}` is not [batch, classes]"))?;
        let probs = if model.logits_are_probabilities {
            scores
        } else {
            softmax_rows(&scores)
        };
        for (path, row) in chunk.iter().zip(probs.axis_iter(Axis(0))) {
            let mut idx: Vec<usize> = (0..row.len()).collect();
            idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
            let top = idx
                .into_iter()
                .take(args.top)
                .map(|i| Prediction {
                    class: i,
                    label: model.labels.as_ref().and_then(|l| l.get(i).cloned()),
                    probability: row[i],
                })
                .collect();
            results.push(ImageResult {
                image: path.clone(),
                top,
            });
        }
    }
    let elapsed = started.elapsed();
    let report = Report {
        schema_version: JSON_SCHEMA_VERSION,
        model: model.name.clone(),
        provider: session.provider().to_string(),
        device_note: rt.device().note.clone(),
        image_size: contract.size,
        results,
    };
    Ok((report, elapsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_rows_sum_to_one_and_keep_order() {
        let x = Array2::from_shape_vec((2, 3), vec![1.0, 2.0, 3.0, 1000.0, -1000.0, 0.0]).unwrap();
        let p = softmax_rows(&x);
        for row in p.axis_iter(Axis(0)) {
            assert!((row.sum() - 1.0).abs() < 1e-6);
        }
        assert!(p[[0, 2]] > p[[0, 1]] && p[[0, 1]] > p[[0, 0]]);
        // Reference: exp(1)/(e+e^2+e^3) computed by hand = 0.09003057.
        assert!((p[[0, 0]] - 0.090_030_57).abs() < 1e-6);
        assert!((p[[1, 0]] - 1.0).abs() < 1e-6);
    }
}
