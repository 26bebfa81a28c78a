//! The error type of `tl-head`.

/// Errors raised while fitting, training, importing or exporting heads.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Core(#[from] tl_core::Error),
    #[error(transparent)]
    Nn(#[from] tl_nn::Error),
    #[error(transparent)]
    Onnx(#[from] tl_onnx::Error),
    /// A setting that cannot work, found before any computation (`name` as a person
    /// reads it: `learning rate`, `dropout`).
    #[error("invalid {name}: {reason}")]
    Setting { name: &'static str, reason: String },
    /// Rows, labels or features that do not fit the head or each other.
    #[error("invalid {what}: {reason}")]
    Data { what: String, reason: String },
    /// Nothing to train on.
    #[error("invalid {what}: no rows")]
    NoRows { what: &'static str },
    /// A task none of whose training rows carries a label.
    #[error("invalid training data: task `{task}` has no labelled training rows")]
    NoLabelledRows { task: String },
    /// A label outside its task's classes.
    #[error(
        "invalid labels: {what} row {row}: class {class} of task `{task}` is outside its {classes} classes"
    )]
    LabelOutOfRange {
        what: String,
        row: usize,
        class: u32,
        task: String,
        classes: usize,
    },
    /// The loss stopped being a number.
    #[error("invalid training: the loss became {loss} at epoch {epoch} (lower the learning rate)")]
    Diverged { epoch: usize, loss: f64 },
    /// A checkpoint of another run in the directory a run would resume from.
    #[error("invalid checkpoint: `{}` holds a checkpoint of a run with {differs}: resume it with its own settings, or train into another directory (or delete `{}`)", state.display(), dir.display())]
    CheckpointMismatch {
        state: std::path::PathBuf,
        dir: std::path::PathBuf,
        /// `another model, data or head` or `other training settings`.
        differs: &'static str,
    },
    /// A checkpoint file that is missing or changed since the checkpoint was published.
    #[error("invalid checkpoint: `{}`: {reason} (the checkpoint cannot be trusted: delete its directory to train from the start)", path.display())]
    CheckpointCorrupt {
        path: std::path::PathBuf,
        reason: String,
    },
    /// Layers that cannot be imported for fine-tuning between two values.
    #[error("invalid fine-tuning: {reason}")]
    FineTuning { reason: String },
    /// An error of a caller's [`crate::train::Objective`], in its own type.
    #[error("{0}")]
    Objective(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A head that cannot be exported onto its backbone.
    #[error("invalid export: {reason}")]
    Export { reason: String },
    /// Features with NaN or infinite values.
    #[error("{what}: row {row}, column {column} is {value}")]
    NonFinite {
        what: String,
        row: usize,
        column: usize,
        value: f32,
    },
    /// An ONNX graph part that cannot become trainable layers.
    #[error("node `{node}` ({op}): {reason}")]
    Unsupported {
        node: String,
        op: String,
        reason: String,
    },
}

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn setting(name: &'static str, reason: impl Into<String>) -> Self {
        Error::Setting {
            name,
            reason: reason.into(),
        }
    }

    pub(crate) fn data(what: &str, reason: impl Into<String>) -> Self {
        Error::Data {
            what: what.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn export(reason: impl Into<String>) -> Self {
        Error::Export {
            reason: reason.into(),
        }
    }

    pub(crate) fn fine_tuning(reason: impl Into<String>) -> Self {
        Error::FineTuning {
            reason: reason.into(),
        }
    }
}
