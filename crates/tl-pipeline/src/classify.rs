//! Classification with a pretrained classifier: the top-k classes of images.

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use ndarray::Axis;
use serde::Serialize;
use tl_runtime::{Input, Session, SessionOptions};

use crate::{Env, Error, Result};

/// Schema version of the classification report.
pub const CLASSIFY_SCHEMA_VERSION: u32 = 1;

/// What to classify with.
#[derive(Debug, Clone)]
pub struct Classify<'a> {
    /// Registry id or path to an `.onnx` file.
    pub model: &'a str,
    /// An input contract file for a model file that carries none.
    pub contract: Option<&'a Path>,
    /// Classes per image.
    pub top: usize,
    /// Images per ONNX Runtime call.
    pub batch_size: usize,
    /// Input side in pixels (default: the model's own).
    pub image_size: Option<u32>,
}

/// One class of an image's top k.
#[derive(Debug, Serialize)]
pub struct Prediction {
    pub class: usize,
    pub label: Option<String>,
    pub probability: f32,
}

/// An image's top classes.
#[derive(Debug, Serialize)]
pub struct ImageResult {
    pub image: PathBuf,
    pub top: Vec<Prediction>,
}

/// What a classification found.
#[derive(Debug, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub model: String,
    pub provider: String,
    pub device_note: Option<String>,
    pub image_size: u32,
    pub results: Vec<ImageResult>,
}

/// The `k` most probable classes of one row, ties by class index.
fn top_k(
    row: ndarray::ArrayView1<'_, f32>,
    k: usize,
    labels: Option<&[String]>,
) -> Vec<Prediction> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
    idx.into_iter()
        .take(k)
        .map(|i| Prediction {
            class: i,
            label: labels.and_then(|l| l.get(i).cloned()),
            probability: row[i],
        })
        .collect()
}

/// Classifies `images`; returns the report and the time spent in preprocessing and
/// inference.
pub fn classify(
    args: &Classify<'_>,
    images: &[PathBuf],
    env: &Env,
) -> Result<(Report, std::time::Duration)> {
    if args.batch_size == 0 {
        return Err(Error::setting("batch_size", "must be at least 1"));
    }
    if args.top == 0 {
        return Err(Error::setting("top", "must be at least 1"));
    }
    let model = env.model(args.model, args.contract)?;
    let mut contract = model.image_contract()?.clone();
    if let Some(size) = args.image_size {
        contract = contract.with_size(size)?;
    }
    let logits_name = model.logits.clone().ok_or_else(|| {
        Error::model(
            &model.name,
            "cannot tell which output holds the class scores",
        )
    })?;
    if let Some(img) = images.iter().find(|i| !i.is_file()) {
        return Err(Error::file(img, "image does not exist"));
    }
    let rt = env.runtime()?;
    let mut session = Session::from_file(
        rt,
        &model.path,
        &SessionOptions::default()
            .threads(env.compute.threads)
            .precision(env.compute.precision),
    )?;
    env.report_device(rt);
    let started = Instant::now();
    let mut results = Vec::with_capacity(images.len());
    for chunk in images.chunks(args.batch_size) {
        let batch = tl_features::image::preprocess_files(&contract, chunk)?.into_dyn();
        let out = session.run(
            &[(contract.input.as_str(), Input::F32(batch.view()))],
            &[logits_name.as_str()],
        )?;
        let scores = out[&logits_name]
            .clone()
            .into_dimensionality::<ndarray::Ix2>()
            .map_err(|_| {
                Error::model(
                    &model.name,
                    format!("output `{logits_name}` is not [batch, classes]"),
                )
            })?;
        let probs = if model.logits_are_probabilities {
            scores
        } else {
            tl_core::num::softmax(scores.view())
        };
        for (path, row) in chunk.iter().zip(probs.axis_iter(Axis(0))) {
            results.push(ImageResult {
                image: path.clone(),
                top: top_k(row, args.top, model.labels.as_deref()),
            });
        }
    }
    let elapsed = started.elapsed();
    let report = Report {
        schema_version: CLASSIFY_SCHEMA_VERSION,
        model: model.name.clone(),
        provider: session.provider().to_string(),
        device_note: rt.device().note.as_ref().map(ToString::to_string),
        image_size: contract.size,
        results,
    };
    Ok((report, elapsed))
}
