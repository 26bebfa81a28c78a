//! `tl-pipeline`: runs of `tl` as a library.
//!
//! The `tl` binary is a thin shell over this crate: each command maps its flags onto a
//! config of [`config`] and calls one function here. Everything a run does is a public
//! stage you can call on its own:
//!
//! - [`config`]: the one serde schema of train runs, adapt runs and experiment files;
//! - [`source`]: where features come from (a registry model or ONNX file through the
//!   feature store, word vectors, raw pixels or TF-IDF) and [`source::extract`];
//! - [`train`]: tasks → split → labelled features → fit → evaluate → artifact;
//! - [`adapt`]: two domains' features, a domain-adaptation method, the target-domain model;
//! - [`rank`], [`predict`], [`experiment`]: the other runners;
//! - [`artifact`]: the files a run writes, as types, and [`artifact::export_artifact`];
//! - [`Env`] and [`Observer`]: where a run keeps its files and whom it tells what it does
//!   (libraries never print).
//!
//! A transfer job in a few calls (a linear probe on EfficientNet-Lite0 features of the
//! scikit-learn digits; `examples/transfer.rs` runs the same job stage by stage):
//!
//! ```no_run
//! use tl_pipeline::{Env, config::RunConfig, train::train};
//!
//! let env = Env::new(tl_core::home::tl_home()?);
//! let cfg = RunConfig {
//!     model: "efficientnet-lite0".into(),
//!     data: "sklearn-digits".into(),
//!     image_size: Some(64),
//!     ..RunConfig::default()
//! };
//! let outcome = train(&cfg, std::path::Path::new("runs/digits"), None, &env)?;
//! println!("test accuracy {:.3}", outcome.metrics.test[0].accuracy);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(clippy::too_many_lines)]

pub mod adapt;
pub mod artifact;
pub mod classify;
pub mod config;
pub mod doctor;
mod env;
mod error;
pub mod experiment;
pub mod extract;
pub mod predict;
pub mod rank;
pub mod report;
pub mod source;
pub mod train;

pub use env::{Compute, Env, Fetching, Observer};
pub use error::{Error, Result};
