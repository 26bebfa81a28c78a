//! The error type of `tl-data`.

use std::path::PathBuf;

/// Errors raised while loading, labelling or splitting datasets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Core(#[from] tl_core::Error),
    /// A file whose content is not what its format says.
    #[error("`{}`{}: {reason}", path.display(), location.as_ref().map(|l| format!(" ({l})")).unwrap_or_default())]
    Format {
        path: PathBuf,
        location: Option<String>,
        reason: String,
    },
    /// A column that the file does not have.
    #[error("`{}` has no column `{column}` (its columns: {})", path.display(), available.join(", "))]
    NoColumn {
        path: PathBuf,
        column: String,
        available: Vec<String>,
    },
    /// A class folder without images.
    #[error("class folder `{}` holds no images", path.display())]
    EmptyClass { path: PathBuf },
    /// A dataset or split setting that cannot work.
    #[error("{0}")]
    Invalid(String),
}

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn format(
        path: &std::path::Path,
        location: Option<String>,
        reason: impl Into<String>,
    ) -> Self {
        Error::Format {
            path: path.to_path_buf(),
            location,
            reason: reason.into(),
        }
    }
}
