//! Converters from PyTorch ImageNet checkpoints to ONNX.
//!
//! Each converter reads a state dict with [`Checkpoint`], checks every tensor's
//! name and shape against the architecture (a missing, unexpected or misshapen
//! tensor is an error naming it), and writes a graph with
//! - input `input` [N, 3, H, W] (dynamic batch and spatial size),
//! - outputs `logits` [N, 1000] and `features` [N, 1280] (the pooled penultimate layer),
//! - readable names for every intermediate value (`blocks.15`, `features.17`, ...),
//!   so any of them can be tapped;
//!
//! in one of two [`BatchNorm`] forms. The same checkpoint always gives the same bytes.

mod efficientnet_lite;
mod mobilenet_v2;

use std::collections::HashSet;

pub use efficientnet_lite::efficientnet_lite0;
pub use mobilenet_v2::mobilenet_v2;

use crate::{
    Error, OnnxModel, Result,
    builder::{GraphBuilder, ModelBuilder, attr},
    torch::Checkpoint,
};

/// How BatchNorm layers appear in the converted graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchNorm {
    /// Folded into the preceding convolution's weights and bias (inference; the default).
    Folded,
    /// Kept as `BatchNormalization` nodes (for training with batch statistics and
    /// for re-estimating statistics on a new domain). The convolution output before
    /// each BatchNorm is named `<unit>.conv`.
    Kept,
}

impl BatchNorm {
    /// `"folded"` or `"kept"`.
    pub fn as_str(self) -> &'static str {
        match self {
            BatchNorm::Folded => "folded",
            BatchNorm::Kept => "kept",
        }
    }
}

/// Convolution padding.
#[derive(Debug, Clone, Copy)]
enum Padding {
    /// TensorFlow "SAME": `auto_pad = SAME_UPPER`, correct at every input size.
    SameUpper,
    /// Symmetric explicit padding on every side.
    Symmetric(i64),
}

/// One convolution + BatchNorm (+ ReLU6) unit.
struct ConvUnit<'a> {
    /// Output value name of the unit.
    name: String,
    conv: &'a str,
    bn: &'a str,
    out_ch: usize,
    in_ch: usize,
    kernel: usize,
    stride: usize,
    depthwise: bool,
    padding: Padding,
    relu6: bool,
}

impl<'a> ConvUnit<'a> {
    /// A 1×1 convolution (expansion, projection, head).
    fn pointwise(
        name: String,
        conv: &'a str,
        bn: &'a str,
        in_ch: usize,
        out_ch: usize,
        relu6: bool,
    ) -> Self {
        Self {
            name,
            conv,
            bn,
            out_ch,
            in_ch,
            kernel: 1,
            stride: 1,
            depthwise: false,
            padding: Padding::Symmetric(0),
            relu6,
        }
    }

    /// A depthwise k×k convolution followed by ReLU6.
    fn depthwise(
        name: String,
        conv: &'a str,
        bn: &'a str,
        ch: usize,
        kernel: usize,
        stride: usize,
        padding: Padding,
    ) -> Self {
        Self {
            name,
            conv,
            bn,
            out_ch: ch,
            in_ch: ch,
            kernel,
            stride,
            depthwise: true,
            padding,
            relu6: true,
        }
    }

    /// The 3×3 stride-2 stem from RGB to `out_ch` channels, followed by ReLU6.
    fn stem(name: &str, conv: &'a str, bn: &'a str, out_ch: usize, padding: Padding) -> Self {
        Self {
            name: name.to_string(),
            conv,
            bn,
            out_ch,
            in_ch: 3,
            kernel: 3,
            stride: 2,
            depthwise: false,
            padding,
            relu6: true,
        }
    }
}

/// Shared state of a conversion.
struct Ctx<'c> {
    ckpt: &'c Checkpoint,
    arch: &'static str,
    form: BatchNorm,
    eps: f64,
    used: HashSet<String>,
    g: GraphBuilder,
    clip_bounds: Option<(String, String)>,
}

impl<'c> Ctx<'c> {
    fn new(ckpt: &'c Checkpoint, arch: &'static str, form: BatchNorm, eps: f64) -> Self {
        let mut g = GraphBuilder::new(arch);
        g.image_input("input", 3);
        Self {
            ckpt,
            arch,
            form,
            eps,
            used: HashSet::new(),
            g,
            clip_bounds: None,
        }
    }

    /// The float values of `key`, checked against `shape`.
    fn tensor(&mut self, key: &str, shape: &[usize]) -> Result<&'c [f32]> {
        let t = self.ckpt.get(key).ok_or_else(|| Error::MissingKey {
            path: self.ckpt.path.clone(),
            key: key.to_string(),
            arch: self.arch,
        })?;
        if t.shape != shape {
            return Err(Error::ShapeMismatch {
                path: self.ckpt.path.clone(),
                key: key.to_string(),
                expected: shape.to_vec(),
                got: t.shape.clone(),
            });
        }
        let values = t.f32s().ok_or_else(|| Error::Checkpoint {
            path: self.ckpt.path.clone(),
            reason: format!("tensor `{key}` is {:?}, expected floating point", t.dtype),
        })?;
        self.used.insert(key.to_string());
        Ok(values)
    }

    fn relu6(&mut self, x: &str, out: &str) -> String {
        let (lo, hi) = self
            .clip_bounds
            .get_or_insert_with(|| {
                (
                    self.g.initializer("relu6.min", &[], &[0.0]),
                    self.g.initializer("relu6.max", &[], &[6.0]),
                )
            })
            .clone();
        self.g.op("Clip", out, &[x, &lo, &hi], vec![])
    }

    fn conv_unit(&mut self, x: &str, u: ConvUnit<'_>) -> Result<String> {
        let group = if u.depthwise { u.in_ch } else { 1 };
        let w_shape = [u.out_ch, u.in_ch / group, u.kernel, u.kernel];
        let w = self.tensor(&format!("{}.weight", u.conv), &w_shape)?;
        let bn = |s: &str| format!("{}.{s}", u.bn);
        let gamma = self.tensor(&bn("weight"), &[u.out_ch])?;
        let beta = self.tensor(&bn("bias"), &[u.out_ch])?;
        let mean = self.tensor(&bn("running_mean"), &[u.out_ch])?;
        let var = self.tensor(&bn("running_var"), &[u.out_ch])?;
        let mut attrs = vec![
            attr::ints("kernel_shape", &[u.kernel as i64, u.kernel as i64]),
            attr::ints("strides", &[u.stride as i64, u.stride as i64]),
            attr::int("group", group as i64),
        ];
        match u.padding {
            Padding::SameUpper => attrs.push(attr::string("auto_pad", "SAME_UPPER")),
            Padding::Symmetric(p) => attrs.push(attr::ints("pads", &[p, p, p, p])),
        }
        let pre_act = if u.relu6 {
            format!("{}.conv", u.name)
        } else {
            u.name.clone()
        };
        let after_bn = match self.form {
            BatchNorm::Folded => {
                let per = w.len() / u.out_ch;
                let mut wf = Vec::with_capacity(w.len());
                let mut bf = Vec::with_capacity(u.out_ch);
                for o in 0..u.out_ch {
                    let scale = gamma[o] as f64 / (var[o] as f64 + self.eps).sqrt();
                    wf.extend(
                        w[o * per..(o + 1) * per]
                            .iter()
                            .map(|&v| (v as f64 * scale) as f32),
                    );
                    bf.push((beta[o] as f64 - mean[o] as f64 * scale) as f32);
                }
                let wn = self
                    .g
                    .initializer(&format!("{}.weight", u.conv), &w_shape, &wf);
                let bn_ = self
                    .g
                    .initializer(&format!("{}.bias", u.conv), &[u.out_ch], &bf);
                self.g.op("Conv", &pre_act, &[x, &wn, &bn_], attrs)
            }
            BatchNorm::Kept => {
                let wn = self
                    .g
                    .initializer(&format!("{}.weight", u.conv), &w_shape, w);
                let conv_out = self
                    .g
                    .op("Conv", &format!("{}.conv", u.name), &[x, &wn], attrs);
                let names: Vec<String> = [
                    ("weight", gamma),
                    ("bias", beta),
                    ("running_mean", mean),
                    ("running_var", var),
                ]
                .iter()
                .map(|(s, v)| self.g.initializer(&bn(s), &[u.out_ch], v))
                .collect();
                let bn_out = if u.relu6 {
                    format!("{}.bn", u.name)
                } else {
                    u.name.clone()
                };
                self.g.op(
                    "BatchNormalization",
                    &bn_out,
                    &[&conv_out, &names[0], &names[1], &names[2], &names[3]],
                    vec![
                        attr::float("epsilon", self.eps as f32),
                        attr::float("momentum", 0.9),
                    ],
                )
            }
        };
        Ok(if u.relu6 {
            self.relu6(&after_bn, &u.name)
        } else {
            after_bn
        })
    }

    /// Global average pool, flatten (`features`) and the classifier (`logits`).
    fn classifier_head(&mut self, x: &str, fc: &str, width: usize, classes: usize) -> Result<()> {
        let (wk, bk) = (format!("{fc}.weight"), format!("{fc}.bias"));
        let w = self.tensor(&wk, &[classes, width])?;
        let b = self.tensor(&bk, &[classes])?;
        let wn = self.g.initializer(&wk, &[classes, width], w);
        let bn = self.g.initializer(&bk, &[classes], b);
        self.g.pooled_classifier(x, &wn, &bn, width, classes);
        Ok(())
    }

    fn finish(self, source_sha256: &str) -> Result<OnnxModel> {
        let mut unexpected: Vec<String> = self
            .ckpt
            .keys()
            .filter(|k| !self.used.contains(*k) && !k.ends_with("num_batches_tracked"))
            .map(str::to_string)
            .collect();
        if !unexpected.is_empty() {
            unexpected.truncate(10);
            return Err(Error::UnexpectedKeys {
                path: self.ckpt.path.clone(),
                keys: unexpected,
                arch: self.arch,
            });
        }
        ModelBuilder::new(self.g.build())
            .opset(17)
            .producer("tl-onnx converter")
            .metadata(tl_core::metadata::ARCHITECTURE, self.arch)
            .metadata(tl_core::metadata::BATCHNORM, self.form.as_str())
            .metadata(tl_core::metadata::SOURCE_SHA256, source_sha256)
            .build()
    }
}

/// Converts a checkpoint of a named architecture (`"efficientnet-lite0"` or `"mobilenet-v2"`).
pub fn convert(
    arch: &str,
    ckpt: &Checkpoint,
    form: BatchNorm,
    source_sha256: &str,
) -> Result<OnnxModel> {
    match arch {
        "efficientnet-lite0" => efficientnet_lite0(ckpt, form, source_sha256),
        "mobilenet-v2" => mobilenet_v2(ckpt, form, source_sha256),
        other => Err(Error::Build(format!(
            "no converter for architecture `{other}` (known: efficientnet-lite0, mobilenet-v2)"
        ))),
    }
}
