//! The error type of `tl-nn`.

/// Errors raised while building, running, training or checkpointing a network.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Core(#[from] tl_core::Error),
    /// A tensor whose shape is not what a layer or loss expects.
    #[error("{what}: expected shape {expected}, got {got:?}")]
    Shape {
        what: String,
        expected: String,
        got: Vec<usize>,
    },
    /// A hyperparameter or setting that cannot work, found before any training.
    #[error("invalid {name}: {reason}")]
    Invalid { name: String, reason: String },
    /// Values that are NaN or infinite.
    #[error("{what} holds a non-finite value ({value}) at index {index}")]
    NonFinite {
        what: String,
        index: usize,
        value: f32,
    },
    /// A checkpoint that does not fit the network.
    #[error("checkpoint `{path}` does not fit this network: {reason}")]
    Checkpoint { path: String, reason: String },
    /// `backward` called without a training-mode `forward` before it.
    #[error("layer `{0}`: backward needs a forward pass in training mode first")]
    NoForward(String),
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

    pub(crate) fn shape(
        what: impl Into<String>,
        expected: impl Into<String>,
        got: &[usize],
    ) -> Self {
        Error::Shape {
            what: what.into(),
            expected: expected.into(),
            got: got.to_vec(),
        }
    }
}

/// Fails on the first NaN or infinite value of `values`, naming `what`.
pub fn check_finite<'a>(what: &str, values: impl IntoIterator<Item = &'a f32>) -> Result<()> {
    for (index, &v) in values.into_iter().enumerate() {
        if !v.is_finite() {
            return Err(Error::NonFinite {
                what: what.to_string(),
                index,
                value: v,
            });
        }
    }
    Ok(())
}
