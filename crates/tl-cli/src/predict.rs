//! `tl predict`: class probabilities from a trained artifact or an exported model.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use ndarray::Axis;
use serde::Serialize;
use tl_head::net::TaskSpec;
use tl_runtime::{Input, Runtime, RuntimeOptions, Session, SessionOptions};

use crate::{Global, JSON_SCHEMA_VERSION, RunArgs, resolve};

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

#[derive(Debug, Serialize)]
struct TaskPrediction {
    task: String,
    class: String,
    probability: f32,
    probabilities: Vec<f32>,
}

#[derive(Debug, Serialize)]
struct Row {
    input: String,
    predictions: Vec<TaskPrediction>,
    /// Sentences the prediction pools, for a model that cuts texts (`tl.segments`).
    #[serde(skip_serializing_if = "Option::is_none")]
    sentences: Option<usize>,
}

pub fn run(a: &PredictArgs, global: &Global) -> Result<()> {
    if a.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let path = if a.model.is_dir() {
        a.model.join("model.onnx")
    } else {
        a.model.clone()
    };
    if !path.is_file() {
        bail!(
            "`{}` has no model.onnx: run `tl export {}` first",
            a.model.display(),
            a.model.display()
        );
    }
    let home = global.home()?;
    let model = resolve::resolve(&path.display().to_string(), None, &home)?;
    let meta = tl_onnx::OnnxModel::load(&path)?.metadata();
    let tasks: Vec<TaskSpec> = serde_json::from_str(meta.get("tl.tasks").with_context(|| {
        format!(
            "`{}` was not exported by tl (no `tl.tasks` metadata)",
            path.display()
        )
    })?)
    .context("metadata `tl.tasks`")?;
    let rt = Runtime::init(&RuntimeOptions::device(a.run.device).with_home(home))?;
    let mut session = Session::from_file(
        rt,
        &path,
        &SessionOptions::default()
            .threads(a.run.threads)
            .precision(a.run.precision),
    )?;
    let names: Vec<String> = if tasks.len() == 1 {
        vec!["probabilities".into()]
    } else {
        tasks
            .iter()
            .map(|t| format!("probabilities.{}", t.name))
            .collect()
    };
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut inputs = a.inputs.clone();
    let mut rows = Vec::new();
    let mut push =
        |chunk: &[String], out: &std::collections::HashMap<String, ndarray::ArrayD<f32>>| {
            for (i, input) in chunk.iter().enumerate() {
                let predictions = tasks
                    .iter()
                    .zip(&names)
                    .map(|(t, n)| {
                        let p: Vec<f32> = out[n].index_axis(Axis(0), i).iter().copied().collect();
                        let best = (0..p.len()).fold(0, |b, k| if p[k] > p[b] { k } else { b });
                        TaskPrediction {
                            task: t.name.clone(),
                            class: t.classes[best].clone(),
                            probability: p[best],
                            probabilities: p,
                        }
                    })
                    .collect();
                rows.push(Row {
                    input: input.clone(),
                    predictions,
                    sentences: None,
                });
            }
        };
    match &model.contract {
        Some(tl_core::InputContract::Text(contract)) => {
            if let Some(f) = &a.lines {
                let text = std::fs::read_to_string(f)
                    .with_context(|| format!("cannot read `{}`", f.display()))?;
                inputs.extend(
                    text.lines()
                        .filter(|l| !l.trim().is_empty())
                        .map(String::from),
                );
            }
            if inputs.is_empty() {
                bail!("no texts: give them as arguments or with --lines FILE");
            }
            let dir = path.parent().context("model file has no directory")?;
            let encoder = tl_features::text::TextEncoder::new(dir, contract)?;
            // A model adapted on sentences (`tl adapt --segments`) predicts each text from
            // its sentences': the mean of their log-probabilities, renormalised.
            let segmented = meta.get(crate::train::SEGMENTS_KEY).map(String::as_str)
                == Some(tl_data::segment::Segments::Sentences.name());
            let (parts, owner): (Vec<String>, Vec<usize>) = if segmented {
                inputs
                    .iter()
                    .enumerate()
                    .flat_map(|(d, t)| {
                        tl_data::segment::sentences(t)
                            .into_iter()
                            .map(move |s| (s, d))
                    })
                    .unzip()
            } else {
                (inputs.clone(), (0..inputs.len()).collect())
            };
            let mut log_p: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
            let mut width = vec![0usize; names.len()];
            for chunk in parts.chunks(a.batch_size) {
                let texts: Vec<&str> = chunk.iter().map(String::as_str).collect();
                let b = encoder.tokenize(&texts)?;
                let (ids, mask, types) =
                    (b.ids.into_dyn(), b.mask.into_dyn(), b.type_ids.into_dyn());
                let mut feed = vec![
                    (contract.input_ids.as_str(), Input::I64(ids.view())),
                    (contract.attention_mask.as_str(), Input::I64(mask.view())),
                ];
                if let Some(t) = &contract.token_type_ids {
                    feed.push((t.as_str(), Input::I64(types.view())));
                }
                let out = session.run(&feed, &refs)?;
                if !segmented {
                    push(chunk, &out);
                    continue;
                }
                for (k, n) in names.iter().enumerate() {
                    let p = &out[n];
                    width[k] = p.shape()[1];
                    log_p[k].extend(p.iter().map(|&v| f64::from(v).max(f64::MIN_POSITIVE).ln()));
                }
            }
            if !segmented {
                return finish(&rows, &path, &session, global);
            }
            let mut pooled = std::collections::HashMap::new();
            for (k, n) in names.iter().enumerate() {
                let lp = ndarray::Array2::from_shape_vec(
                    (parts.len(), width[k]),
                    std::mem::take(&mut log_p[k]),
                )?;
                let z = tl_adapt::pool::pool_log_proba(lp.view(), &owner, inputs.len())?;
                let p = tl_adapt::loss::probabilities(z.view()).mapv(|v| v as f32);
                pooled.insert(n.clone(), p.into_dyn());
            }
            push(&inputs, &pooled);
            for (r, d) in rows.iter_mut().zip(0..) {
                r.sentences = Some(owner.iter().filter(|&&o| o == d).count());
            }
        }
        _ => {
            let contract = model.image_contract()?.clone();
            if a.lines.is_some() {
                bail!(
                    "--lines gives texts; `{}` is an image model",
                    path.display()
                );
            }
            if inputs.is_empty() {
                bail!("no images given");
            }
            let files: Vec<PathBuf> = inputs.iter().map(PathBuf::from).collect();
            for f in &files {
                if !f.is_file() {
                    bail!("input `{}` does not exist", f.display());
                }
            }
            for (chunk, names_chunk) in files.chunks(a.batch_size).zip(inputs.chunks(a.batch_size))
            {
                let batch = tl_features::image::preprocess_files(&contract, chunk)?.into_dyn();
                let out = session.run(
                    &[(contract.input.as_str(), Input::F32(batch.view()))],
                    &refs,
                )?;
                push(names_chunk, &out);
            }
        }
    }
    finish(&rows, &path, &session, global)
}

/// Prints the predictions.
fn finish(rows: &[Row], path: &std::path::Path, session: &Session, global: &Global) -> Result<()> {
    if global.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "schema_version": JSON_SCHEMA_VERSION, "model": path, "provider": session.provider().to_string(), "results": rows,
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
