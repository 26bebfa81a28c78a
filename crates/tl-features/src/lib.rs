//! `tl-features`: turning raw inputs into the tensors a model expects (and, as the
//! feature-extraction work grows, the extraction pipeline and the feature store).
//!
//! [`image`] decodes images (PNG, JPEG, GIF, BMP, TIFF, WebP; grayscale and alpha
//! handled), resizes them with a Pillow-compatible antialiased bilinear filter,
//! crops and normalises them as the model's [`ImageContract`](tl_core::ImageContract)
//! says, and lays batches out as NCHW or NHWC.
//!
//! ```
//! use tl_features::image::{Rgb8, resize_bilinear};
//!
//! let img = Rgb8::new(4, 2, vec![255; 4 * 2 * 3]).unwrap();
//! let small = resize_bilinear(&img, 2, 1);
//! assert_eq!((small.width(), small.height()), (2, 1));
//! assert!(small.pixels().iter().all(|&p| p == 255));
//! ```

pub mod adabn;
mod error;
pub mod extract;
pub mod image;
pub mod raw;
pub mod store;
pub mod text;
pub mod wordvec;

pub use error::{Error, Result};
