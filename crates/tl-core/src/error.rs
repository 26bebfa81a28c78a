//! The error type of `tl-core`.

use std::path::PathBuf;

/// Errors raised by the shared pieces of `tl`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation on a named path failed.
    #[error("{action} `{}`: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A JSON document could not be read or written.
    #[error("invalid JSON in `{}`: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A value given by the user could not be parsed.
    #[error("invalid {what} `{value}`: {reason}")]
    Parse {
        what: &'static str,
        value: String,
        reason: String,
    },
    /// A contract or configuration is internally inconsistent.
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    /// Another process holds the lock on a directory this one would write.
    #[error("`{}` is in use by another run (it holds `{}`): wait for it to finish, or write elsewhere", dir.display(), lock.display())]
    Busy { dir: PathBuf, lock: PathBuf },
    /// The home directory could not be determined.
    #[error("cannot locate the tl cache: set TL_HOME (or XDG_CACHE_HOME or HOME)")]
    NoHome,
}

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an [`std::io::Error`] with the action and path it concerns.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
