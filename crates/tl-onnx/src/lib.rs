//! `tl-onnx`: ONNX models as data, in pure Rust (no ONNX Runtime).
//!
//! - [`OnnxModel`] reads and writes the ONNX protobuf, checks that a graph is
//!   complete (every value used is produced), lists every value with the op that
//!   produces it and its shape where known, and adds any value as an extra output
//!   ([`OnnxModel::with_outputs`]): the feature-extraction tap.
//! - [`builder`] builds graphs: inputs, initializers, nodes, attributes, outputs,
//!   opset and metadata.
//! - [`torch`] reads PyTorch checkpoints (legacy `torch.save` pickles and the zip format).
//! - [`fixtures`] builds tiny VGG, ResNet, Inception and MobileNet networks for tests.
//! - [`convert`] turns the ImageNet checkpoints of EfficientNet-Lite0 and MobileNetV2
//!   into ONNX, with BatchNorm folded or kept.
//!
//! ```
//! use tl_onnx::builder::{Dim, GraphBuilder, ModelBuilder};
//! use tl_onnx::proto::DataType;
//!
//! let mut g = GraphBuilder::new("relu-net");
//! let x = g.input("x", DataType::Float, &[Dim::param("N"), Dim::Fixed(4)]);
//! let h = g.op("Relu", "hidden", &[&x], vec![]);
//! let y = g.op("Neg", "y", &[&h], vec![]);
//! g.output(&y, DataType::Float, &[Dim::param("N"), Dim::Fixed(4)]);
//! let model = ModelBuilder::new(g.build()).opset(17).build().unwrap();
//!
//! // Tap the intermediate value `hidden` as an extra output.
//! let tapped = model.with_outputs(&["hidden"]).unwrap();
//! assert_eq!(tapped.output_names(), ["y", "hidden"]);
//! ```

pub mod batchnorm;
pub mod builder;
pub mod convert;
mod error;
pub mod fixtures;
mod model;
pub mod precision;
pub mod proto;
pub mod torch;

pub use error::{Error, Result};
pub use model::{OnnxModel, ValueInfo, ValueKind, tensor_values_f32};
