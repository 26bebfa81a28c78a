//! What a user names becomes what a run loads: `--model ID|PATH.onnx` (with an optional
//! contract file) becomes a model file, its input contract, class names and outputs;
//! `--data NAME|PATH` becomes a dataset.

use std::path::{Path, PathBuf};

use tl_core::{InputContract, metadata};
use tl_data::Dataset;
use tl_onnx::OnnxModel;

use crate::{Entry, Error, Fetcher, Kind, Registry, Result};

/// A model ready to be loaded.
#[derive(Debug, Clone)]
pub struct ResolvedModel {
    /// Registry id, or the file path as given.
    pub name: String,
    pub path: PathBuf,
    pub contract: Option<InputContract>,
    pub labels: Option<Vec<String>>,
    /// The classifier output, when known.
    pub logits: Option<String>,
    pub logits_are_probabilities: bool,
    pub entry: Option<Entry>,
}

/// Whether `spec` names a file rather than a registry id.
fn names_a_file(spec: &str) -> bool {
    spec.ends_with(".onnx") || spec.contains('/') || Path::new(spec).is_file()
}

/// Resolves `spec` (a registry id or a path to an `.onnx` file); `contract_file`, when
/// given, replaces the model's own input contract.
pub fn resolve_model(
    spec: &str,
    contract_file: Option<&Path>,
    home: &Path,
) -> Result<ResolvedModel> {
    let registry = Registry::builtin()?;
    if !names_a_file(spec) {
        let entry = registry.get(spec)?.clone();
        if entry.kind != Kind::Model {
            return Err(Error::WrongKind {
                id: spec.to_string(),
                expected: "model",
                found: entry.kind,
            });
        }
        let path = crate::model_path(home, &entry, false)?;
        let contract = match contract_file {
            Some(f) => Some(read_contract(f)?),
            None => entry.input_contract()?,
        };
        let labels = crate::class_names(home, registry, &entry)?;
        let outputs = entry.outputs.clone();
        return Ok(ResolvedModel {
            name: entry.id.clone(),
            path,
            contract,
            labels,
            logits: outputs.as_ref().and_then(|o| o.logits.clone()),
            logits_are_probabilities: outputs.as_ref().is_some_and(|o| o.logits_are_probabilities),
            entry: Some(entry),
        });
    }
    let path = Path::new(spec);
    if !path.is_file() {
        return Err(Error::NoSuchFile {
            what: "model file",
            path: path.to_path_buf(),
        });
    }
    resolve_loaded(path, &OnnxModel::load(path)?, contract_file)
}

/// [`resolve_model`] for a model file already loaded (as `model`), which it does not read
/// again: the contract and class names from its metadata (or `contract_file`), the
/// classifier output from its outputs.
pub fn resolve_loaded(
    path: &Path,
    model: &OnnxModel,
    contract_file: Option<&Path>,
) -> Result<ResolvedModel> {
    let meta = model.metadata();
    let bad_metadata = |key: &'static str, reason: String| Error::Metadata {
        file: path.to_path_buf(),
        key,
        reason,
    };
    let contract = match contract_file {
        Some(f) => Some(read_contract(f)?),
        None => match meta.get(metadata::INPUT_CONTRACT) {
            Some(json) => Some(serde_json::from_str::<InputContract>(json).map_err(|e| {
                bad_metadata(
                    metadata::INPUT_CONTRACT,
                    format!("not a valid input contract: {e}"),
                )
            })?),
            None => None,
        },
    };
    // One task: a list of names; several tasks (an exported multi-task head): a map from
    // task to names, which `tl predict` reads through the tasks key.
    let labels = match meta.get(metadata::CLASS_NAMES) {
        Some(json) => match serde_json::from_str::<serde_json::Value>(json) {
            Ok(serde_json::Value::Object(_)) => None,
            _ => Some(serde_json::from_str::<Vec<String>>(json).map_err(|e| {
                bad_metadata(
                    metadata::CLASS_NAMES,
                    format!("not a JSON list of names: {e}"),
                )
            })?),
        },
        None => None,
    };
    let outputs = model.output_names();
    Ok(ResolvedModel {
        name: path.display().to_string(),
        path: path.to_path_buf(),
        contract,
        labels,
        logits: (outputs.len() == 1)
            .then(|| outputs[0].clone())
            .or_else(|| outputs.iter().find(|o| *o == "logits").cloned()),
        logits_are_probabilities: false,
        entry: None,
    })
}

/// An input contract from a TOML file.
pub fn read_contract(path: &Path) -> Result<InputContract> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| tl_core::Error::io("cannot read contract", path, e))?;
    crate::parse_contract(&text, &path.display().to_string())
}

impl ResolvedModel {
    /// The image contract, or an error saying what is missing.
    pub fn image_contract(&self) -> Result<&tl_core::ImageContract> {
        match &self.contract {
            Some(InputContract::Image(c)) => Ok(c),
            Some(InputContract::Text(_)) => Err(Error::WrongModality {
                model: self.name.clone(),
                expected: "image",
                found: "text",
            }),
            None => Err(Error::NoContract {
                model: self.name.clone(),
            }),
        }
    }

    /// The node whose output is the model's features: the registry's feature output, else
    /// its classifier output.
    pub fn feature_output(&self) -> Option<String> {
        self.entry
            .as_ref()
            .and_then(|e| e.outputs.as_ref().map(|o| o.features.clone()))
            .or_else(|| self.logits.clone())
    }
}

/// Whether `spec` is meant as a path: registry names hold neither separators nor dots.
fn looks_like_path(spec: &str) -> bool {
    spec.contains(['/', '\\', '.'])
}

/// Loads a registry dataset by name, or the dataset at a path (`tl_data::open`: a folder
/// of images or with a `dataset.toml`, a text table, an IDX file, a list of images).
pub fn load_dataset(spec: &str, home: &Path) -> Result<Dataset> {
    let path = Path::new(spec);
    if path.exists() {
        let opened = tl_data::open::open(path)?;
        return opened.load(spec).map_err(|source| Error::ReadingData {
            spec: spec.to_string(),
            how: opened.how.clone(),
            source: Box::new(source),
        });
    }
    let registry = Registry::builtin()?;
    let entry = registry.get(spec).map_err(|e| {
        if looks_like_path(spec) {
            Error::NoSuchData {
                spec: spec.to_string(),
            }
        } else {
            e
        }
    })?;
    entry.load_dataset(home)
}

/// Checks, without loading it, that `spec` names a dataset on disk or a registry dataset
/// (fetched or not: a run fetches it on first use, or offline says it is missing).
pub fn check_dataset(spec: &str) -> Result<()> {
    if Path::new(spec).exists() {
        tl_data::open::open(Path::new(spec))?;
        return Ok(());
    }
    let registry = Registry::builtin()?;
    let entry = registry.get(spec).map_err(|_| Error::NoSuchData {
        spec: spec.to_string(),
    })?;
    if entry.kind != Kind::Dataset {
        return Err(Error::WrongKind {
            id: spec.to_string(),
            expected: "dataset",
            found: entry.kind,
        });
    }
    Ok(())
}

/// The name of the dataset's first task that some row is labelled for.
pub fn first_labelled_task(ds: &Dataset) -> Result<String> {
    (0..ds.tasks.len())
        .find(|&t| ds.rows.iter().any(|r| r.labels[t].is_some()))
        .map(|t| ds.tasks[t].name.clone())
        .ok_or_else(|| Error::Unlabelled {
            dataset: ds.name.clone(),
        })
}

/// Whether a registry entry is a word-vector asset (`glove-6b-50d`).
pub fn is_word_vectors(entry: &Entry) -> bool {
    entry.kind == Kind::Asset && entry.files.iter().any(|f| f.name.ends_with(".npy"))
}

/// The `.npy` matrix and `vocab.txt` of a fetched word-vector asset.
pub fn word_vector_files(entry: &Entry, home: &Path) -> Result<(PathBuf, PathBuf)> {
    if !Fetcher::is_present(home, entry) {
        return Err(Error::NotFetched {
            id: entry.id.clone(),
            kind: entry.kind,
        });
    }
    let dir = entry.dir(home);
    let npy = entry
        .files
        .iter()
        .find(|f| f.name.ends_with(".npy"))
        .map(|f| dir.join(&f.name))
        .ok_or_else(|| Error::Manifest {
            file: entry.id.clone(),
            reason: "a word-vector entry without a .npy file".into(),
        })?;
    Ok((npy, dir.join("vocab.txt")))
}
