//! The error type of `tl-adapt`.

/// Errors raised while adapting, measuring shift or estimating priors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Core(#[from] tl_core::Error),
    #[error(transparent)]
    Nn(#[from] tl_nn::Error),
    #[error(transparent)]
    Head(#[from] tl_head::Error),
    /// A setting or input that cannot work, found before any training.
    #[error("invalid {name}: {reason}")]
    Invalid { name: String, reason: String },
    /// Inputs whose shapes do not fit together.
    #[error("{what}: expected {expected}, got {got}")]
    Shape {
        what: String,
        expected: String,
        got: String,
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
