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
    /// A setting that cannot work, found before any computation (`name` as a person
    /// reads it: `MCC temperature`, `neighbours`).
    #[error("invalid {name}: {reason}")]
    Setting { name: &'static str, reason: String },
    /// Rows, labels or features that do not fit the method or each other.
    #[error("invalid {what}: {reason}")]
    Data { what: String, reason: String },
    /// Nothing to work on.
    #[error("invalid {what}: no rows")]
    NoRows { what: String },
    /// An estimate that cannot be made from these data (`method`: `BBSE`).
    #[error("invalid {method}: {reason}")]
    Estimate {
        method: &'static str,
        reason: String,
    },
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

    pub(crate) fn estimate(method: &'static str, reason: impl Into<String>) -> Self {
        Error::Estimate {
            method,
            reason: reason.into(),
        }
    }

    pub(crate) fn no_rows(what: &str) -> Self {
        Error::NoRows {
            what: what.to_string(),
        }
    }
}
