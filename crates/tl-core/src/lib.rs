//! `tl-core`: the shared vocabulary of `tl`.
//!
//! Every other crate builds on these pieces and on nothing heavier:
//! - [`io`]: atomic writes (temp file + rename) and advisory lock files, so that
//!   interrupted runs and parallel tests never see half a file;
//! - [`hash`]: sha256 of files and bytes, the content hashes used by caches and manifests;
//! - [`rng`]: seeded `ChaCha8Rng` streams, one named stream per use;
//! - [`device`]: the execution device a user asks for (`cpu`, `cuda[:N]`, `auto`);
//! - [`contract`]: the input contract of a model (layout, size, resize policy, normalisation);
//! - [`home`]: where `TL_HOME` is.
//!
//! ```
//! use tl_core::{Device, rng::seeded_rng};
//! use rand::Rng;
//!
//! let device: Device = "cuda:1".parse().unwrap();
//! assert_eq!(device, Device::Cuda { id: 1 });
//! let a: u32 = seeded_rng(7, "split").random();
//! let b: u32 = seeded_rng(7, "split").random();
//! assert_eq!(a, b);
//! ```

pub mod contract;
pub mod device;
pub mod error;
pub mod hash;
pub mod home;
pub mod io;
pub mod rng;

pub use contract::{ImageContract, InputContract, Layout, ResizePolicy, TextContract};
pub use device::{Device, Precision};
pub use error::{Error, Result};

/// The version of `tl`, written into every artifact and cache entry.
pub const TL_VERSION: &str = env!("CARGO_PKG_VERSION");
