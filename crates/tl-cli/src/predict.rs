//! `tl predict`: class probabilities from a trained artifact or an exported model.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use tl_pipeline::predict::{Prediction, Predictor};

use crate::{Global, JSON_SCHEMA_VERSION, RunArgs};

/// `tl predict`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  tl predict --model runs/probe digit1.png digit2.png\n  tl predict --model probe.onnx --json photo.jpg"
)]
pub struct PredictArgs {
    /// An artifact directory from `tl train` (its model.onnx) or an ONNX file from `tl export`.
    #[arg(long, short, value_name = "ARTIFACT_DIR|FILE.onnx")]
    model: PathBuf,
    /// Images per ONNX Runtime call.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    #[command(flatten)]
    run: RunArgs,
    /// For a text model: read the texts from FILE, one per line.
    #[arg(long, value_name = "FILE")]
    lines: Option<PathBuf>,
    /// Image files, or texts for a text model.
    #[arg(value_name = "IMAGE|TEXT")]
    inputs: Vec<String>,
}

pub fn run(a: &PredictArgs, global: &Global) -> Result<()> {
    if a.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let env = global.env(Some(&a.run))?;
    let mut predictor = Predictor::open(&a.model, &env)?;
    let rows = if predictor.is_text() {
        let mut texts = a.inputs.clone();
        if let Some(f) = &a.lines {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read `{}`", f.display()))?;
            texts.extend(
                text.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(String::from),
            );
        }
        if texts.is_empty() {
            bail!("no texts: give them as arguments or with --lines FILE");
        }
        predictor.predict_texts(&texts, a.batch_size)?
    } else {
        if a.lines.is_some() {
            bail!(
                "--lines gives texts; `{}` is an image model",
                predictor.path.display()
            );
        }
        if a.inputs.is_empty() {
            bail!("no images given");
        }
        let files: Vec<PathBuf> = a.inputs.iter().map(PathBuf::from).collect();
        predictor.predict_images(&files, a.batch_size)?
    };
    print(&rows, &predictor, global)
}

/// Prints the predictions.
fn print(rows: &[Prediction], predictor: &Predictor, global: &Global) -> Result<()> {
    if global.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "schema_version": JSON_SCHEMA_VERSION, "model": predictor.path,
                "provider": predictor.provider(), "results": rows,
            }))?
        );
        return Ok(());
    }
    for r in rows {
        let parts: Vec<String> = r
            .predictions
            .iter()
            .map(|p| format!("{} = {} ({:.4})", p.task, p.class, p.probability))
            .collect();
        let pooled = r
            .sentences
            .map_or(String::new(), |n| format!("  (pooled over {n} sentences)"));
        println!("{}  {}{pooled}", r.input, parts.join(", "));
    }
    Ok(())
}
