//! `--model ID|PATH` and `--contract FILE` to a model file, contract, labels and outputs.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use tl_core::InputContract;
use tl_hub::{Registry, manifest::Entry};
use tl_onnx::OnnxModel;

/// Metadata key under which exported models carry their input contract (JSON).
pub const CONTRACT_KEY: &str = "tl.input_contract";
/// Metadata key under which exported models carry their class names (JSON list).
pub const CLASS_NAMES_KEY: &str = "tl.class_names";

/// A model ready to be loaded.
#[derive(Debug)]
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

/// Resolves `spec` (a registry id or a path to an `.onnx` file).
pub fn resolve(spec: &str, contract_file: Option<&Path>, home: &Path) -> Result<ResolvedModel> {
    let registry = Registry::builtin()?;
    let as_path = Path::new(spec);
    let looks_like_path = spec.ends_with(".onnx") || spec.contains('/') || as_path.is_file();
    if !looks_like_path {
        let entry = registry.get(spec)?.clone();
        if entry.kind != tl_hub::Kind::Model {
            bail!("`{spec}` is a {:?} entry, not a model", entry.kind);
        }
        let path = tl_hub::model_path(home, &entry, false)?;
        let mut contract = entry.input_contract()?;
        if let Some(f) = contract_file {
            contract = Some(read_contract(f)?);
        }
        let labels = tl_hub::class_names(home, &registry, &entry)?;
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
    if !as_path.is_file() {
        bail!("model file `{spec}` does not exist");
    }
    let model = OnnxModel::load(as_path)?;
    let meta = model.metadata();
    let contract =
        match contract_file {
            Some(f) => Some(read_contract(f)?),
            None => match meta.get(CONTRACT_KEY) {
                Some(json) => Some(serde_json::from_str::<InputContract>(json).with_context(
                    || format!("`{spec}`: metadata `{CONTRACT_KEY}` is not a valid input contract"),
                )?),
                None => None,
            },
        };
    // One task: a list of names; several tasks (`tl export` of a multi-task head): a map
    // from task to names, which `tl predict` reads through `tl.tasks`.
    let labels = match meta.get(CLASS_NAMES_KEY) {
        Some(json) => match serde_json::from_str::<serde_json::Value>(json) {
            Ok(serde_json::Value::Object(_)) => None,
            _ => Some(serde_json::from_str::<Vec<String>>(json).with_context(|| {
                format!("`{spec}`: metadata `{CLASS_NAMES_KEY}` is not a JSON list of names")
            })?),
        },
        None => None,
    };
    let outputs = model.output_names();
    Ok(ResolvedModel {
        name: spec.to_string(),
        path: as_path.to_path_buf(),
        contract,
        labels,
        logits: (outputs.len() == 1)
            .then(|| outputs[0].clone())
            .or_else(|| outputs.iter().find(|o| *o == "logits").cloned()),
        logits_are_probabilities: false,
        entry: None,
    })
}

fn read_contract(path: &Path) -> Result<InputContract> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read contract `{}`", path.display()))?;
    Ok(tl_hub::parse_contract(&text, &path.display().to_string())?)
}

impl ResolvedModel {
    /// The image contract, or an error saying how to supply one.
    pub fn image_contract(&self) -> Result<&tl_core::ImageContract> {
        match &self.contract {
            Some(InputContract::Image(c)) => Ok(c),
            Some(InputContract::Text(_)) => bail!(
                "`{}` is a text model; this command needs an image model",
                self.name
            ),
            None => bail!(
                "`{}` has no input contract: pass `--contract FILE.toml` (see models/contracts/ for examples) or use a model exported by tl",
                self.name
            ),
        }
    }
}
