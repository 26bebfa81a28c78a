//! The error type of `tl-features`.

use std::path::PathBuf;

/// Errors raised while preprocessing inputs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Core(#[from] tl_core::Error),
    #[error(transparent)]
    Runtime(#[from] tl_runtime::Error),
    #[error(transparent)]
    Onnx(#[from] tl_onnx::Error),
    #[error(transparent)]
    Data(#[from] tl_data::Error),
    /// The feature store is inconsistent or cannot be written.
    #[error("feature store: {0}")]
    Store(String),
    /// A stored part whose data no longer matches the checksum written with it.
    #[error("feature store: `{}` is corrupt: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    /// An extraction setting that cannot work.
    #[error("{0}")]
    Invalid(String),
    /// An image that cannot be read or decoded.
    #[error("cannot decode image `{}`: {reason}", path.display())]
    Decode { path: PathBuf, reason: String },
    /// Pixel data whose length does not match its dimensions.
    #[error("image buffer of {len} bytes does not match {width}×{height}×{channels}")]
    BadBuffer {
        len: usize,
        width: u32,
        height: u32,
        channels: usize,
    },
    /// An image too small for the contract's crop.
    #[error("image `{}` is {width}×{height}, which cannot be resized for a {size}×{size} input", path.display())]
    TooSmall {
        path: PathBuf,
        width: u32,
        height: u32,
        size: u32,
    },
}

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
