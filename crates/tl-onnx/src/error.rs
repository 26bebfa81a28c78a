//! The error type of `tl-onnx`.

use std::path::PathBuf;

/// Errors raised while reading, building, tapping or converting models.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Core(#[from] tl_core::Error),
    /// The bytes are not an ONNX protobuf (or are truncated mid-field).
    #[error("`{}` is not a valid ONNX model (truncated, or not an ONNX file): {source}", path.display())]
    Decode {
        path: PathBuf,
        #[source]
        source: prost::DecodeError,
    },
    /// The protobuf decoded but does not describe a usable model.
    #[error("`{}` is not a usable ONNX model: {reason}", path.display())]
    Malformed { path: PathBuf, reason: String },
    /// A model `tl` exported whose bytes changed after it was written.
    #[error("`{}` changed since tl wrote it (its sha256 is {}…, its metadata `tl.sha256` records {}…): export it again from its run directory", path.display(), short(found), short(recorded))]
    Changed {
        path: PathBuf,
        found: String,
        recorded: String,
    },
    /// A value name that the graph does not contain.
    #[error("the model has no value named `{name}`{hint}")]
    UnknownValue { name: String, hint: String },
    /// A graph being built is inconsistent.
    #[error("invalid graph: {0}")]
    Build(String),
    /// The checkpoint file could not be parsed.
    #[error("cannot read checkpoint `{}`: {reason}", path.display())]
    Checkpoint { path: PathBuf, reason: String },
    /// A pickle opcode the checkpoint reader does not implement.
    #[error("cannot read checkpoint `{}`: unsupported pickle opcode {name} (0x{code:02x}) at byte {offset}", path.display())]
    UnsupportedOpcode {
        path: PathBuf,
        name: &'static str,
        code: u8,
        offset: u64,
    },
    /// A checkpoint lacks a tensor the architecture needs.
    #[error("checkpoint `{}` has no tensor `{key}` (needed by {arch})", path.display())]
    MissingKey {
        path: PathBuf,
        key: String,
        arch: &'static str,
    },
    /// A checkpoint has tensors the architecture does not use.
    #[error("checkpoint `{}` has unexpected tensor(s) for {arch}: {}", path.display(), keys.join(", "))]
    UnexpectedKeys {
        path: PathBuf,
        keys: Vec<String>,
        arch: &'static str,
    },
    /// A checkpoint tensor has the wrong shape.
    #[error("checkpoint `{}`: tensor `{key}` has shape {got:?}, expected {expected:?}", path.display())]
    ShapeMismatch {
        path: PathBuf,
        key: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
}

/// The first 12 characters of a hash for a message (all of a shorter or non-hex one).
fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
