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
        "cannot run pip (`{python} -m pip`): {reason}. Install Python 3 with pip, set TL_PYTHON to a Python that has it, or fetch from a local directory of the files"
    )]
    PipMissing { python: String, reason: String },
    /// pip ran and failed.
    #[error("pip could not download `{requirement}`{kind}{}:\n{detail}", log.as_ref().map(|l| format!(" (pip's log: {})", l.display())).unwrap_or_default())]
    PipFailed {
        requirement: String,
        kind: &'static str,
        detail: String,
        /// pip's whole output.
        log: Option<PathBuf>,
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
    /// The local directory fetched from does not hold a file.
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
        "`{id}` is not fetched yet: run `tl {} fetch {id}` (or `cargo xtask fetch-models {id}`)",
        if *kind == crate::Kind::Dataset { "data" } else { "models" }
    )]
    NotFetched { id: String, kind: crate::Kind },
    /// A registry id of another kind than the command needs.
    #[error("`{id}` is a registry {found:?} entry, not a {expected}")]
    WrongKind {
        id: String,
        expected: &'static str,
        found: crate::Kind,
    },
    /// A path given as a model or data file that does not exist.
    #[error("{what} `{}` does not exist", path.display())]
    NoSuchFile { what: &'static str, path: PathBuf },
    /// A name that is neither a file nor a registry dataset.
    #[error(
        "unknown data `{spec}`: neither a registry dataset (`tl data list`) nor a file or folder"
    )]
    NoSuchData { spec: String },
    /// A model file whose `tl` metadata cannot be read.
    #[error("`{}`: metadata `{key}` is {reason}", file.display())]
    Metadata {
        file: PathBuf,
        key: &'static str,
        reason: String,
    },
    /// A model without the input contract a command needs.
    #[error(
        "`{model}` has no input contract: pass a contract file (see models/contracts/ for examples) or use a model exported by tl"
    )]
    NoContract { model: String },
    /// A text model where an image model is needed, or the other way round.
    #[error("`{model}` is a {found} model; this needs an {expected} model")]
    WrongModality {
        model: String,
        expected: &'static str,
        found: &'static str,
    },
    /// A dataset file that cannot be read as recognised.
    #[error("reading `{spec}` as {how}: {source}")]
    ReadingData {
        spec: String,
        how: String,
        #[source]
        source: Box<tl_data::Error>,
    },
    /// A dataset with no labelled task where one is needed.
    #[error(
        "`{dataset}` has no labelled task (no row carries a label); unlabelled data can be the target of an adaptation"
    )]
    Unlabelled { dataset: String },
}

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether fetching from a local directory of the files would get round this error
    /// (pip cannot run, or the package index cannot be reached).
    pub fn local_directory_helps(&self) -> bool {
        match self {
            Error::PipMissing { .. } => true,
            Error::PipFailed { kind, .. } => *kind == crate::pip::UNREACHABLE,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_fetched_names_the_command_of_its_kind() {
        let data = Error::NotFetched {
            id: "sklearn-digits".into(),
            kind: crate::Kind::Dataset,
        };
        assert!(
            data.to_string()
                .contains("run `tl data fetch sklearn-digits`"),
            "{data}"
        );
        let model = Error::NotFetched {
            id: "mobilenet-v2".into(),
            kind: crate::Kind::Model,
        };
        assert!(
            model
                .to_string()
                .contains("run `tl models fetch mobilenet-v2`"),
            "{model}"
        );
    }
}
