//! `tl-head`: what is trained on top of a frozen backbone.
//!
//! - [`probe`]: the linear probe, L2-regularised multinomial logistic regression solved
//!   to the optimum (scikit-learn's objective), with a regularisation path.
//!
//! ```
//! use ndarray::array;
//! use tl_head::probe::{ProbeConfig, ProbeData, fit};
//!
//! let x = array![[0.0f32, 1.0], [0.2, 0.9], [1.0, 0.1], [0.9, 0.0]];
//! let y = [0, 0, 1, 1];
//! let probe = fit(&ProbeData { x: x.view(), y: &y, classes: 2 }, &ProbeConfig::new(10.0), None)?;
//! assert_eq!(probe.predict(x.view()), vec![0, 0, 1, 1]);
//! assert!(probe.report.converged);
//! # Ok::<(), tl_head::Error>(())
//! ```

pub mod augment;
mod error;
pub mod export;
pub mod import;
pub mod net;
pub mod probe;
pub mod synthetic;
pub mod train;

pub use error::{Error, Result};

/// Fails on the first NaN or infinite feature, naming its row and column.
pub fn check_features(what: &str, x: ndarray::ArrayView2<'_, f32>) -> Result<()> {
    for ((row, column), &value) in x.indexed_iter() {
        if !value.is_finite() {
            return Err(Error::NonFinite {
                what: what.to_string(),
                row,
                column,
                value,
            });
        }
    }
    Ok(())
}
