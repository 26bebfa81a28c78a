//! `tl classify`: top-k classes of images.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use tl_pipeline::classify::{Classify, Report};

use crate::{Global, RunArgs};

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

/// Classifies the images of `args`; returns the report and the time spent in
/// preprocessing and inference.
pub fn classify(args: &ClassifyArgs, global: &Global) -> Result<(Report, std::time::Duration)> {
    let env = global.env(Some(&args.run))?;
    let request = Classify {
        model: &args.model,
        contract: args.contract.as_deref(),
        top: args.top,
        batch_size: args.batch_size,
        image_size: args.image_size,
    };
    Ok(tl_pipeline::classify::classify(
        &request,
        &args.images,
        &env,
    )?)
}
