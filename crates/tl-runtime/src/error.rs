//! The error type of `tl-runtime`.

use std::path::PathBuf;

use tl_core::Device;

/// Errors raised while loading ONNX Runtime, creating sessions or running them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Core(#[from] tl_core::Error),
    #[error(transparent)]
    Onnx(#[from] tl_onnx::Error),
    /// No ONNX Runtime library was found.
    #[error("ONNX Runtime library not found (looked in: {}). Fetch it with `tl models fetch {runtime}` (or `cargo xtask fetch-models {runtime}`), or point ORT_DYLIB_PATH at a libonnxruntime.so {}", searched.iter().map(|p| format!("`{}`", p.display())).collect::<Vec<_>>().join(", "), crate::ORT_VERSION)]
    LibraryNotFound {
        runtime: &'static str,
        searched: Vec<PathBuf>,
    },
    /// The library exists but could not be loaded.
    #[error("cannot load ONNX Runtime from `{}`: {reason}", path.display())]
    LibraryLoad { path: PathBuf, reason: String },
    /// ONNX Runtime was already loaded for another device in this process.
    #[error(
        "ONNX Runtime is already loaded for device `{current}` in this process; `{requested}` needs a new process"
    )]
    AlreadyInitialised { current: Device, requested: Device },
    /// CUDA was requested and cannot be used.
    #[error("device `{requested}` cannot be used: {reason}")]
    CudaUnavailable { requested: Device, reason: String },
    /// An error reported by ONNX Runtime.
    #[error("ONNX Runtime: {0}")]
    Ort(#[from] ort::Error),
    /// ONNX Runtime failed to load a model file.
    #[error("ONNX Runtime cannot load `{}`: {reason}", path.display())]
    ModelLoad { path: PathBuf, reason: String },
    /// An input name the model does not have, or a required input not given.
    #[error("model `{model}`: {reason}")]
    Inputs { model: String, reason: String },
    /// A batch whose shape the model rejects.
    #[error("model `{model}`: input `{input}` has shape {got:?}, the model expects {expected} ")]
    ShapeMismatch {
        model: String,
        input: String,
        expected: String,
        got: Vec<usize>,
    },
    /// An output that is not a float tensor, or not present.
    #[error("model `{model}`: output `{output}`: {reason}")]
    Output {
        model: String,
        output: String,
        reason: String,
    },
}

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<ort::Error<ort::session::builder::SessionBuilder>> for Error {
    fn from(e: ort::Error<ort::session::builder::SessionBuilder>) -> Self {
        Error::Ort(e.into())
    }
}
