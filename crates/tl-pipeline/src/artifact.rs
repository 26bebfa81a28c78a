//! The artifact contract as types: what a trained or adapted run directory holds
//! (`config.json`, `head.json`, `metrics.json`, `manifest.json`, `weights.safetensors`,
//! `split.json`, `model.onnx`), and the export of an artifact as one ONNX file.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};
use tl_core::Named;

use serde::{Deserialize, Serialize};
use tl_adapt::{run::RunSummary, shift::ShiftReport};
use tl_core::metadata;
use tl_data::segment::Segments;
use tl_features::extract::Pool;
use tl_head::{
    export::{ExportPool, ExportSpec},
    import::ImportedLayer,
    net::{HeadSpec, TaskSpec},
    train::TaskScore,
};
use tl_nn::checkpoint;
use tl_onnx::OnnxModel;

use crate::{Error, Result, config::RunConfig};

/// Schema version of `config.json`, `head.json` and `manifest.json`.
pub const ARTIFACT_SCHEMA_VERSION: u32 = 1;
/// `metrics.json` of a train run: 2 replaced `test_metrics` with `evaluation`.
pub const METRICS_SCHEMA_VERSION: u32 = 2;
/// `metrics.json` of an adapt run.
pub const ADAPT_METRICS_SCHEMA_VERSION: u32 = 1;

/// The files of an artifact directory, by name.
pub mod files {
    pub const CONFIG: &str = "config.json";
    pub const HEAD: &str = "head.json";
    pub const METRICS: &str = "metrics.json";
    pub const MANIFEST: &str = "manifest.json";
    /// Held by the run writing the directory (see [`super::lock_run`]).
    pub const LOCK: &str = ".lock";
    pub const WEIGHTS: &str = "weights.safetensors";
    pub const SPLIT: &str = "split.json";
    pub const MODEL: &str = "model.onnx";
    /// An adapt run's predictions for every target document.
    pub const TARGET_PREDICTIONS: &str = "target_predictions.csv";
}

/// Each task's test evaluation in `metrics.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskEvaluation {
    pub task: String,
    #[serde(flatten)]
    pub evaluation: tl_eval::Evaluation,
}

/// The metrics file.
#[derive(Debug, Serialize, Deserialize)]
pub struct Metrics {
    pub schema_version: u32,
    pub test: Vec<TaskScore>,
    pub val: Vec<TaskScore>,
    pub rows: BTreeMap<String, usize>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probe_path: Vec<(String, Vec<tl_head::probe::PathPoint>)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<tl_head::train::TrainReport>,
    pub seconds: BTreeMap<String, f64>,
    /// Each task's test evaluation (rows with that task's label): headline metrics with
    /// bootstrap intervals, per-class scores, confusion matrix, calibration (temperature
    /// fitted on validation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evaluation: Vec<TaskEvaluation>,
}

/// `metrics.json` of an adapt run.
#[derive(Debug, Serialize, Deserialize)]
pub struct AdaptMetrics {
    pub schema_version: u32,
    pub source: String,
    pub target: String,
    pub layer: String,
    pub rows: BTreeMap<String, usize>,
    /// How the target's texts were cut (`auto` resolved): `sentences` means the method saw
    /// sentence rows and each target row's prediction pools its sentences'.
    pub segments: Segments,
    /// Median words per text of the source and the target (`null` for images): what
    /// `auto` decided from.
    pub median_words: (Option<f64>, Option<f64>),
    pub summary: RunSummary,
    /// Evaluated with the target's labels, which nothing above used; the calibration
    /// section's temperature is fitted on the source validation rows.
    pub target_scores: Option<tl_eval::Evaluation>,
    pub shift_before: ShiftReport,
    /// Between the adapter's outputs (trained methods) or the transformed source and the
    /// target (closed-form CORAL).
    pub shift_after: Option<ShiftReport>,
    pub seconds: BTreeMap<String, f64>,
    /// The exported target-domain model (`model.onnx` in the run directory: the
    /// backbone, the target's standardisation, the head; `tl predict --model DIR`), when
    /// the features come from an ONNX backbone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exported: Option<PathBuf>,
}

/// What export needs beyond config.json: the tasks, where the head reads, the backbone.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeadMeta {
    pub schema_version: u32,
    pub tasks: Vec<TaskSpec>,
    pub input_value: String,
    pub pool: Pool,
    pub model_file: PathBuf,
    pub model_sha256: String,
    pub contract: tl_core::InputContract,
    pub imported: Vec<ImportedLayer>,
    pub feature_width: usize,
    /// The head and the backbone's registry id, when `config.json` is not a `tl train`
    /// config (`tl adapt` artifacts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<HeadSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_model: Option<String>,
    /// The features become `x · scale + shift` before the head (`tl adapt`'s target
    /// standardisation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affine: Option<Affine>,
    /// Added to the logits before the softmax (`tl adapt --method prior`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logit_offset: Option<Vec<f32>>,
    /// How `tl predict` cuts texts before the model (`sentences`: each text's prediction
    /// pools its sentences', as `tl adapt --segments` scored them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segments: Option<tl_data::segment::Segments>,
}

/// A per-feature affine map.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Affine {
    pub scale: Vec<f32>,
    pub shift: Vec<f32>,
}

impl HeadMeta {
    /// Reads `head.json`: an error names its `schema_version` when this `tl` does not read
    /// that version.
    pub fn read(path: &Path) -> Result<Self> {
        let v: serde_json::Value = tl_core::io::read_json(path)?;
        let found = v
            .get("schema_version")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| Error::file(path, "has no schema_version"))?;
        if found != u64::from(ARTIFACT_SCHEMA_VERSION) {
            return Err(Error::SchemaVersion {
                path: path.to_path_buf(),
                found: u32::try_from(found).unwrap_or(u32::MAX),
                supported: ARTIFACT_SCHEMA_VERSION,
            });
        }
        serde_json::from_value(v).map_err(|e| Error::file(path, e.to_string()))
    }
}

/// Holds `out/.lock` for the run writing into `out`, so that two runs into one directory
/// never interleave their files: the second fails at once, naming the directory.
pub fn lock_run(out: &Path) -> Result<tl_core::io::FileLock> {
    Ok(tl_core::io::FileLock::try_acquire(
        &out.join(files::LOCK),
        out,
    )?)
}

/// The first `n` characters of a hash, for messages (the whole hash if shorter).
fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// Checks `weights` against the sha256 the artifact's `manifest.json` recorded when it
/// was written (artifacts without a manifest, from before manifests, are not checked).
fn check_weights(dir: &Path, weights: &Path) -> Result<()> {
    let manifest = dir.join(files::MANIFEST);
    if !manifest.is_file() {
        return Ok(());
    }
    let expected = tl_core::io::read_json::<Manifest>(&manifest)?.weights_sha256;
    let found = tl_core::hash::sha256_file(weights)?;
    if found != expected {
        return Err(Error::file(
            weights,
            format!(
                "changed since training (sha256 {}, manifest.json recorded {})",
                short(&found),
                short(&expected)
            ),
        ));
    }
    Ok(())
}

/// Writes the artifact in `dir` as one ONNX file at `dest`: the backbone, the head(s)
/// and a softmax, describing itself in its metadata.
pub fn export_artifact(dir: &Path, dest: &Path) -> Result<PathBuf> {
    let head_json = dir.join(files::HEAD);
    if !head_json.is_file() {
        return Err(Error::file(
            dir,
            "holds no head.json: it is not a directory written by a train or adapt run (with an ONNX backbone)",
        ));
    }
    let meta = HeadMeta::read(&head_json)?;
    let (head, source_model) = match (&meta.head, &meta.source_model) {
        (Some(h), Some(m)) => (h.clone(), m.clone()),
        _ => {
            let cfg: RunConfig = tl_core::io::read_json(&dir.join(files::CONFIG))?;
            (cfg.head.clone(), cfg.model.clone())
        }
    };
    let backbone = OnnxModel::load(&meta.model_file)?;
    let sha = tl_core::hash::sha256_file(&meta.model_file)?;
    if sha != meta.model_sha256 {
        return Err(Error::file(
            &meta.model_file,
            format!(
                "changed since training (sha256 {}, trained on {})",
                short(&sha),
                short(&meta.model_sha256)
            ),
        ));
    }
    let mut contract = meta.contract.clone();
    let text = tokenizer_beside(&meta.model_file, &mut contract, dest)?;
    let weights = dir.join(files::WEIGHTS);
    check_weights(dir, &weights)?;
    let params = checkpoint::load_tensors(&weights)?;
    let props = export_metadata(&meta, &contract, source_model)?;
    let model = tl_head::export::export(
        &backbone,
        &ExportSpec {
            text,
            input_value: &meta.input_value,
            pool: match meta.pool {
                Pool::Mean => ExportPool::Mean,
                Pool::Max => ExportPool::Max,
                Pool::None => ExportPool::None,
            },
            head: &head,
            tasks: &meta.tasks,
            params: &params,
            imported: &meta.imported,
            metadata: props,
            input_affine: meta
                .affine
                .as_ref()
                .map(|a| (a.scale.as_slice(), a.shift.as_slice())),
            logit_offset: meta.logit_offset.as_deref(),
        },
    )?;
    model.save(dest)?;
    Ok(dest.to_path_buf())
}

/// A text model's tokenizer goes beside the exported file `dest` (as
/// `<stem>.tokenizer.json`, named in `contract`); the sentence pooling the export builds.
fn tokenizer_beside(
    model_file: &Path,
    contract: &mut tl_core::InputContract,
    dest: &Path,
) -> Result<Option<tl_head::export::TextPoolSpec>> {
    let tl_core::InputContract::Text(t) = contract else {
        return Ok(None);
    };
    let src = model_file
        .parent()
        .unwrap_or(Path::new("."))
        .join(&t.tokenizer);
    let stem = dest.file_stem().and_then(|s| s.to_str()).unwrap_or("model");
    let name = format!("{stem}.tokenizer.json");
    let target = dest.parent().unwrap_or(Path::new(".")).join(&name);
    let bytes = std::fs::read(&src).map_err(|e| tl_core::Error::io("cannot read", &src, e))?;
    tl_core::io::atomic_write(&target, &bytes)?;
    t.tokenizer = name;
    Ok(Some(tl_head::export::TextPoolSpec {
        token_output: t.token_output.clone(),
        attention_mask: t.attention_mask.clone(),
        mean: t.pooling == tl_core::contract::TextPooling::Mean,
        normalize: t.normalize,
    }))
}

/// The metadata an exported model carries beyond what `tl-head`'s export writes: the input
/// contract, the backbone's identity, the sentence cutting and the tokenizer.
fn export_metadata(
    meta: &HeadMeta,
    contract: &tl_core::InputContract,
    source_model: String,
) -> Result<BTreeMap<String, String>> {
    let mut props = BTreeMap::from([
        (
            metadata::INPUT_CONTRACT.to_string(),
            serde_json::to_string(contract)?,
        ),
        (
            metadata::SOURCE_SHA256.to_string(),
            meta.model_sha256.clone(),
        ),
        (metadata::SOURCE_MODEL.to_string(), source_model),
    ]);
    if let Some(seg) = meta.segments {
        props.insert(metadata::SEGMENTS.into(), seg.name().into());
    }
    if let tl_core::InputContract::Text(t) = contract {
        props.insert(metadata::TOKENIZER.into(), t.tokenizer.clone());
    }
    Ok(props)
}

/// `manifest.json`: what a run was, for reproducing it (versions, revision, command,
/// inputs by hash, seeds, the provider that ran, timings).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub schema_version: u32,
    pub tl_version: String,
    pub git_revision: Option<String>,
    pub command: Vec<String>,
    pub model: String,
    pub model_file: Option<PathBuf>,
    pub model_sha256: String,
    /// The labelled dataset (an adapt run's source).
    pub dataset: String,
    pub dataset_sha256: String,
    /// An adapt run's target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_sha256: Option<String>,
    pub split_sha256: String,
    pub seed: u64,
    pub split_seed: u64,
    pub provider: String,
    pub feature_store: Option<PathBuf>,
    pub threads: usize,
    pub weights_sha256: String,
    pub timings_seconds: BTreeMap<String, f64>,
}

impl Manifest {
    /// The fields every run fills the same way; the caller sets the rest.
    pub fn new(command: &[String]) -> Self {
        Self {
            schema_version: ARTIFACT_SCHEMA_VERSION,
            tl_version: tl_core::TL_VERSION.to_string(),
            git_revision: option_env!("TL_GIT_REVISION").map(String::from),
            command: command.to_vec(),
            model: String::new(),
            model_file: None,
            model_sha256: String::new(),
            dataset: String::new(),
            dataset_sha256: String::new(),
            target: None,
            target_sha256: None,
            split_sha256: String::new(),
            seed: 0,
            split_seed: 0,
            provider: String::new(),
            feature_store: None,
            threads: rayon::current_num_threads(),
            weights_sha256: String::new(),
            timings_seconds: BTreeMap::new(),
        }
    }
}

/// `id,class,p_<class>...`: each target document's predicted class and probabilities,
/// written atomically.
pub fn write_target_predictions(
    dest: &Path,
    ids: &[String],
    classes: &[String],
    proba: &ndarray::Array2<f64>,
) -> Result<()> {
    assert_eq!(ids.len(), proba.nrows(), "one target id per prediction");
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["id".to_string(), "class".to_string()];
    header.extend(classes.iter().map(|c| format!("p_{c}")));
    w.write_record(&header)?;
    for (id, row) in ids.iter().zip(proba.rows()) {
        let best = tl_core::num::argmax(row.iter().copied());
        let mut rec = vec![id.clone(), classes[best].clone()];
        rec.extend(row.iter().map(|p| format!("{p:.6}")));
        w.write_record(&rec)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| Error::file(dest, e.error().to_string()))?;
    tl_core::io::atomic_write(dest, &bytes)?;
    Ok(())
}
