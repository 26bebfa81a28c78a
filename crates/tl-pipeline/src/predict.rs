//! The predictor: class probabilities per task from a trained or adapted artifact
//! directory (its `model.onnx`) or a file written by [`crate::artifact::export_artifact`].

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};
use tl_core::Named;

use ndarray::{ArrayD, Axis};
use serde::Serialize;
use tl_core::{InputContract, metadata};
use tl_data::segment::Segments;
use tl_head::net::TaskSpec;
use tl_runtime::{Input, Session, SessionOptions};

use crate::{Env, Error, Result, artifact::files};

/// One task's prediction for one input.
#[derive(Debug, Clone, Serialize)]
pub struct TaskPrediction {
    pub task: String,
    pub class: String,
    pub probability: f32,
    pub probabilities: Vec<f32>,
}

/// The predictions for one input.
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    pub input: String,
    pub predictions: Vec<TaskPrediction>,
    /// Sentences the prediction pools, for a model that cuts texts into sentences.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sentences: Option<usize>,
}

/// An exported model, open in ONNX Runtime.
pub struct Predictor {
    /// The ONNX file.
    pub path: PathBuf,
    pub tasks: Vec<TaskSpec>,
    contract: InputContract,
    /// Whether texts are cut into sentences whose predictions are pooled.
    segmented: bool,
    outputs: Vec<String>,
    session: Session,
}

impl std::fmt::Debug for Predictor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Predictor")
            .field("path", &self.path)
            .field("tasks", &self.tasks)
            .field("segmented", &self.segmented)
            .finish_non_exhaustive()
    }
}

impl Predictor {
    /// Opens `model`: an artifact directory (its `model.onnx`) or an exported ONNX file.
    pub fn open(model: &Path, env: &Env) -> Result<Self> {
        let path = if model.is_dir() {
            model.join(files::MODEL)
        } else {
            model.to_path_buf()
        };
        if !path.is_file() {
            return Err(Error::file(
                model,
                "has no model.onnx: export the artifact first",
            ));
        }
        // Read once for the contract and metadata; ONNX Runtime reads it for the session.
        let onnx = tl_onnx::OnnxModel::load(&path)?;
        let resolved = tl_hub::resolve_loaded(&path, &onnx, None)?;
        let meta = onnx.metadata();
        let tasks_json = meta.get(metadata::TASKS).ok_or_else(|| {
            Error::file(
                &path,
                format!("was not exported by tl (no `{}` metadata)", metadata::TASKS),
            )
        })?;
        // Loading verified the seal; one lost (a flipped field tag, or an export from before
        // tl sealed its exports) is refused rather than trusted.
        if !meta.contains_key(metadata::SELF_SHA256) {
            return Err(Error::file(
                &path,
                format!(
                    "carries no `{}` to verify it by (changed since export, or exported by an older tl): export it again from its run directory",
                    metadata::SELF_SHA256
                ),
            ));
        }
        let tasks: Vec<TaskSpec> = serde_json::from_str(tasks_json)
            .map_err(|e| Error::file(&path, format!("metadata `{}`: {e}", metadata::TASKS)))?;
        let contract = match &resolved.contract {
            Some(c @ InputContract::Text(_)) => c.clone(),
            _ => InputContract::Image(resolved.image_contract()?.clone()),
        };
        let rt = env.runtime()?;
        let session = Session::from_file(
            rt,
            &path,
            &SessionOptions::default()
                .threads(env.compute.threads)
                .precision(env.compute.precision),
        )?;
        Ok(Self {
            outputs: tasks
                .iter()
                .map(|t| metadata::probabilities_output(&t.name, tasks.len()))
                .collect(),
            segmented: meta.get(metadata::SEGMENTS).map(String::as_str)
                == Some(Segments::Sentences.name()),
            path,
            tasks,
            contract,
            session,
        })
    }

    /// Whether the model reads texts.
    pub fn is_text(&self) -> bool {
        matches!(self.contract, InputContract::Text(_))
    }

    /// The execution provider that runs the model.
    pub fn provider(&self) -> String {
        self.session.provider().to_string()
    }

    /// One prediction per input from the model's output probabilities.
    fn rows(&self, inputs: &[String], out: &HashMap<String, ArrayD<f32>>) -> Vec<Prediction> {
        inputs
            .iter()
            .enumerate()
            .map(|(i, input)| Prediction {
                input: input.clone(),
                predictions: self
                    .tasks
                    .iter()
                    .zip(&self.outputs)
                    .map(|(t, n)| {
                        let p: Vec<f32> = out[n].index_axis(Axis(0), i).iter().copied().collect();
                        let best = tl_core::num::argmax(p.iter().copied());
                        TaskPrediction {
                            task: t.name.clone(),
                            class: t.classes[best].clone(),
                            probability: p[best],
                            probabilities: p,
                        }
                    })
                    .collect(),
                sentences: None,
            })
            .collect()
    }

    /// Predictions for image files, `batch` per ONNX Runtime call.
    pub fn predict_images(&mut self, files: &[PathBuf], batch: usize) -> Result<Vec<Prediction>> {
        let InputContract::Image(contract) = self.contract.clone() else {
            return Err(Error::file(&self.path, "is a text model; give it texts"));
        };
        if let Some(f) = files.iter().find(|f| !f.is_file()) {
            return Err(Error::file(f, "does not exist"));
        }
        let refs: Vec<&str> = self.outputs.iter().map(String::as_str).collect();
        let mut rows = Vec::new();
        for chunk in files.chunks(batch.max(1)) {
            let x = tl_features::image::preprocess_files(&contract, chunk)?.into_dyn();
            let out = self
                .session
                .run(&[(contract.input.as_str(), Input::F32(x.view()))], &refs)?;
            let names: Vec<String> = chunk.iter().map(|f| f.display().to_string()).collect();
            rows.extend(self.rows(&names, &out));
        }
        Ok(rows)
    }

    /// Predictions for texts, `batch` per ONNX Runtime call. A model adapted on sentences
    /// predicts each text from its sentences': the mean of their log-probabilities,
    /// renormalised.
    pub fn predict_texts(&mut self, texts: &[String], batch: usize) -> Result<Vec<Prediction>> {
        let InputContract::Text(contract) = self.contract.clone() else {
            return Err(Error::file(&self.path, "is an image model; give it images"));
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let encoder = tl_features::text::TextEncoder::new(dir, &contract)?;
        let (parts, owner): (Vec<String>, Vec<usize>) = if self.segmented {
            texts
                .iter()
                .enumerate()
                .flat_map(|(d, t)| {
                    tl_data::segment::sentences(t)
                        .into_iter()
                        .map(move |s| (s, d))
                })
                .unzip()
        } else {
            (texts.to_vec(), (0..texts.len()).collect())
        };
        let refs: Vec<&str> = self.outputs.iter().map(String::as_str).collect();
        let mut rows = Vec::new();
        let mut log_p: Vec<Vec<f64>> = vec![Vec::new(); self.outputs.len()];
        let mut width = vec![0usize; self.outputs.len()];
        for chunk in parts.chunks(batch.max(1)) {
            let strs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let b = encoder.tokenize(&strs)?;
            let (ids, mask, types) = (b.ids.into_dyn(), b.mask.into_dyn(), b.type_ids.into_dyn());
            let mut feed = vec![
                (contract.input_ids.as_str(), Input::I64(ids.view())),
                (contract.attention_mask.as_str(), Input::I64(mask.view())),
            ];
            if let Some(t) = &contract.token_type_ids {
                feed.push((t.as_str(), Input::I64(types.view())));
            }
            let out = self.session.run(&feed, &refs)?;
            if !self.segmented {
                rows.extend(self.rows(chunk, &out));
                continue;
            }
            for (k, n) in self.outputs.iter().enumerate() {
                let p = &out[n];
                width[k] = p.shape()[1];
                log_p[k].extend(p.iter().map(|&v| f64::from(v).max(f64::MIN_POSITIVE).ln()));
            }
        }
        if !self.segmented {
            return Ok(rows);
        }
        let mut pooled = HashMap::new();
        for (k, n) in self.outputs.iter().enumerate() {
            let lp = ndarray::Array2::from_shape_vec(
                (parts.len(), width[k]),
                std::mem::take(&mut log_p[k]),
            )
            .map_err(crate::error::shape("sentence probabilities"))?;
            let z = tl_adapt::pool::pool_log_proba(lp.view(), &owner, texts.len())?;
            let p = tl_adapt::loss::probabilities(z.view()).mapv(|v| v as f32);
            pooled.insert(n.clone(), p.into_dyn());
        }
        let mut rows = self.rows(texts, &pooled);
        for (r, d) in rows.iter_mut().zip(0..) {
            r.sentences = Some(owner.iter().filter(|&&o| o == d).count());
        }
        Ok(rows)
    }
}
