//! The error type of `tl-pipeline`.

use std::path::PathBuf;

/// Errors raised while composing and running a pipeline.
///
/// Library errors of the stages pass through unchanged; the variants of this crate say
/// which setting, model, dataset or file does not fit, in the config's own terms (a
/// setting by its config key, never by a command-line flag).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Core(#[from] tl_core::Error),
    #[error(transparent)]
    Onnx(#[from] tl_onnx::Error),
    #[error(transparent)]
    Runtime(#[from] tl_runtime::Error),
    #[error(transparent)]
    Hub(#[from] tl_hub::Error),
    #[error(transparent)]
    Data(#[from] tl_data::Error),
    #[error(transparent)]
    Features(#[from] tl_features::Error),
    #[error(transparent)]
    Nn(#[from] tl_nn::Error),
    #[error(transparent)]
    Head(#[from] tl_head::Error),
    #[error(transparent)]
    Adapt(#[from] tl_adapt::Error),
    #[error(transparent)]
    Eval(#[from] tl_eval::Error),
    /// A setting that cannot work, named by its config key (`pretrained_lr`); found
    /// before any work where the data are not needed to see it. The reason names other
    /// settings as `{key}`, so that a caller can show every setting in its own terms
    /// ([`Error::describe_setting`]).
    #[error("{}", Error::describe_setting(key, reason, |k| format!("`{k}`")))]
    Setting { key: &'static str, reason: String },
    /// Registry entries a run needs are not in `TL_HOME`, and fetching is off.
    #[error("not fetched, and fetching is off (offline): {}", missing.join(", "))]
    Offline { missing: Vec<String> },
    /// The model cannot serve what the run asks of it.
    #[error("model `{model}`: {reason}")]
    Model { model: String, reason: String },
    /// A dataset, or a pair of them, that does not fit the run.
    #[error("data `{data}`: {reason}")]
    Dataset { data: String, reason: String },
    /// Source and target features that cannot be compared.
    #[error(
        "source features (width {source_width}) and target features (width {target_width}) differ in width or preprocessing"
    )]
    FeatureMismatch {
        source_width: usize,
        target_width: usize,
    },
    /// A file of ours (an artifact, an experiment file) that does not hold what it should.
    #[error("`{}`: {reason}", path.display())]
    File { path: PathBuf, reason: String },
    /// A file of ours written by a `tl` whose format this one does not read.
    #[error("`{}` has schema_version {found}; this tl reads {supported}", path.display())]
    SchemaVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    /// A TOML config or experiment file that does not parse.
    #[error("`{}` is not a valid {what}: {source}", path.display())]
    Toml {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A step of a larger job failed (an experiment cell, an export after training).
    #[error("{step}: {source}")]
    Step {
        step: String,
        #[source]
        source: Box<Error>,
    },
    /// Arrays whose shapes do not fit together.
    #[error("{what}: {source}")]
    Shape {
        what: &'static str,
        #[source]
        source: ndarray::ShapeError,
    },
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Csv(#[from] csv::Error),
}

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A setting that cannot work.
    pub fn setting(key: &'static str, reason: impl Into<String>) -> Self {
        Error::Setting {
            key,
            reason: reason.into(),
        }
    }

    /// A model that cannot serve the run.
    pub fn model(model: &str, reason: impl Into<String>) -> Self {
        Error::Model {
            model: model.to_string(),
            reason: reason.into(),
        }
    }

    /// Data that do not fit the run.
    pub fn dataset(data: &str, reason: impl Into<String>) -> Self {
        Error::Dataset {
            data: data.to_string(),
            reason: reason.into(),
        }
    }

    /// A file of ours that does not hold what it should.
    pub fn file(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::File {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// This error as the failure of a named step.
    pub fn in_step(self, step: impl Into<String>) -> Self {
        Error::Step {
            step: step.into(),
            source: Box::new(self),
        }
    }

    /// A setting error as a sentence, each setting shown by `name` (the library shows
    /// config keys in backticks; the CLI shows flags).
    pub fn describe_setting(key: &str, reason: &str, name: impl Fn(&str) -> String) -> String {
        let mut out = format!("{} ", name(key));
        let mut rest = reason;
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}') else {
                break;
            };
            out.push_str(&rest[..open]);
            out.push_str(&name(&rest[open + 1..open + close]));
            rest = &rest[open + close + 1..];
        }
        out.push_str(rest);
        out
    }

    /// The config key of the setting at fault, looking through steps.
    pub fn setting_key(&self) -> Option<&'static str> {
        match self {
            Error::Setting { key, .. } => Some(key),
            Error::Step { source, .. } => source.setting_key(),
            _ => None,
        }
    }
}

/// [`Error::Shape`] for a reshape.
pub(crate) fn shape(what: &'static str) -> impl FnOnce(ndarray::ShapeError) -> Error {
    move |source| Error::Shape { what, source }
}
