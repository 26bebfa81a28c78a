//! `tl-adapt`: domain adaptation on cached features.
//!
//! A labelled source domain and an unlabelled target domain, one backbone's features of
//! both. This crate measures how far apart they are ([`shift`]), aligns them
//! ([`loss`] for the trained methods through `tl-head`'s trainer, [`closed`] for the
//! closed-form ones), corrects for label shift ([`prior`]) and pools the predictions of
//! a document's parts into its own ([`pool`]). Every setting is chosen
//! without target labels: [`run::adapt`] never sees them.
//!
//! ```
//! use ndarray::array;
//! use tl_adapt::loss::{Estimator, Kernel, mmd2};
//!
//! let xs = array![[0.0, 1.0], [0.5, 0.2], [1.0, 0.0]];
//! let xt = array![[3.0, 1.0], [3.5, 0.2], [4.0, 0.0]];
//! let far = mmd2(xs.view(), xt.view(), &Kernel::Linear, Estimator::Biased)?;
//! let same = mmd2(xs.view(), xs.view(), &Kernel::Linear, Estimator::Biased)?;
//! assert!((far.loss - 9.0).abs() < 1e-12); // the means are 3 apart
//! assert!(same.loss.abs() < 1e-12);
//! # Ok::<(), tl_adapt::Error>(())
//! ```

pub mod closed;
mod error;
pub mod linalg;
pub mod loss;
pub mod method;
pub mod objective;
pub mod pool;
pub mod prior;
pub mod propagate;
pub mod run;
pub mod select;
pub mod shift;
pub mod transfer;

pub use error::{Error, Result};
pub use method::{AdaptConfig, Balance, Method};
