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
    /// A setting or input that cannot work, found before any training.
    #[error("invalid {name}: {reason}")]
    Invalid { name: String, reason: String },
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
    pub(crate) fn invalid(name: &str, reason: impl Into<String>) -> Self {
        Error::Invalid {
            name: name.to_string(),
            reason: reason.into(),
        }
    }
}
