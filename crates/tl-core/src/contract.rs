//! The input contract of a model: how raw inputs become the tensors it expects.
//!
//! A contract travels with every model: in the registry manifest, in a
//! `--contract FILE.toml` for a user's own ONNX file, and in the metadata of every
//! ONNX file `tl` exports. Pixel statistics are in pixel units (0–255), so one
//! formula, `(pixel - mean) / std`, covers every convention:
//!
//! | convention | mean | std |
//! |---|---|---|
//! | TensorFlow `(x - 127) / 128` | 127 | 128 |
//! | torchvision ImageNet | 123.675, 116.28, 103.53 | 58.395, 57.12, 57.375 |
//! | scaled to [0, 1] | 0 | 255 |

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How a model wants its input tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum InputContract {
    Image(ImageContract),
    Text(TextContract),
}

impl InputContract {
    /// Checks the contract once, before any work uses it.
    pub fn check(&self) -> Result<()> {
        match self {
            InputContract::Image(c) => c.check(),
            InputContract::Text(c) => c.check(),
        }
    }

    /// The image contract, if this is one.
    pub fn as_image(&self) -> Option<&ImageContract> {
        match self {
            InputContract::Image(c) => Some(c),
            InputContract::Text(_) => None,
        }
    }
}

/// Memory layout of an image batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    Nchw,
    Nhwc,
}

/// Channel order the model expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColourOrder {
    #[default]
    Rgb,
    Bgr,
    Gray,
}

impl ColourOrder {
    /// Number of channels.
    pub fn channels(self) -> usize {
        match self {
            ColourOrder::Gray => 1,
            _ => 3,
        }
    }
}

/// How an image of any size becomes `size × size`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "kebab-case")]
pub enum ResizePolicy {
    /// Resize the shorter side to `size / crop_fraction`, keeping the aspect ratio,
    /// then take the central `size × size` crop (the ImageNet evaluation recipe, 0.875).
    ShorterSideCenterCrop { crop_fraction: f32 },
    /// Resize both sides to `size`, ignoring the aspect ratio.
    Stretch,
    /// Resize both sides to `size / crop_fraction`, ignoring the aspect ratio, then take
    /// the central `size × size` crop (Caffe-style pipelines).
    StretchCenterCrop { crop_fraction: f32 },
}

/// The image input contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageContract {
    /// Name of the model input that takes the image batch.
    pub input: String,
    pub layout: Layout,
    /// Side of the square input the model was trained at.
    pub size: u32,
    /// Whether the model accepts other sizes (fully convolutional up to global pooling).
    #[serde(default)]
    pub dynamic_size: bool,
    pub resize: ResizePolicy,
    #[serde(default)]
    pub colour: ColourOrder,
    /// Per-channel mean in pixel units (0–255), in the model's channel order.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation in pixel units (0–255).
    pub std: Vec<f32>,
}

impl ImageContract {
    /// An RGB, NCHW contract with the ImageNet evaluation recipe (shorter side to
    /// `size / 0.875`, central crop) for a model that accepts any input size.
    pub fn rgb_center_crop(input: &str, size: u32, mean: [f32; 3], std: [f32; 3]) -> Self {
        Self {
            input: input.to_string(),
            layout: Layout::Nchw,
            size,
            dynamic_size: true,
            resize: ResizePolicy::ShorterSideCenterCrop {
                crop_fraction: 0.875,
            },
            colour: ColourOrder::Rgb,
            mean: mean.to_vec(),
            std: std.to_vec(),
        }
    }

    /// Checks sizes, statistics and policy.
    pub fn check(&self) -> Result<()> {
        let bad = |reason: String| {
            Err(Error::Invalid {
                what: "image contract",
                reason,
            })
        };
        let c = self.colour.channels();
        if self.size == 0 {
            return bad("size must be positive".into());
        }
        if self.mean.len() != c || self.std.len() != c {
            return bad(format!(
                "mean and std need {c} values for colour `{:?}`, got {} and {}",
                self.colour,
                self.mean.len(),
                self.std.len()
            ));
        }
        if let Some(s) = self.std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return bad(format!("std must be positive and finite, got {s}"));
        }
        if let ResizePolicy::ShorterSideCenterCrop { crop_fraction }
        | ResizePolicy::StretchCenterCrop { crop_fraction } = self.resize
            && !(crop_fraction > 0.0 && crop_fraction <= 1.0)
        {
            return bad(format!(
                "crop_fraction must be in (0, 1], got {crop_fraction}"
            ));
        }
        if self.input.is_empty() {
            return bad("input name is empty".into());
        }
        Ok(())
    }

    /// The same contract at another input side (`--image-size`); an error if the model is fixed-size.
    pub fn with_size(&self, size: u32) -> Result<Self> {
        if size != self.size && !self.dynamic_size {
            return Err(Error::Invalid {
                what: "image size",
                reason: format!(
                    "this model takes only {0}×{0} inputs; a size of {size} needs a model with dynamic spatial size",
                    self.size
                ),
            });
        }
        let mut c = self.clone();
        c.size = size;
        c.check()?;
        Ok(c)
    }
}

/// Sentence pooling over token embeddings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TextPooling {
    /// Mean over tokens weighted by the attention mask.
    Mean,
    /// The first token's embedding.
    Cls,
}

/// The text input contract (tokenizer and pooling).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextContract {
    /// File name of the `tokenizer.json`, relative to the model's directory.
    pub tokenizer: String,
    pub max_length: usize,
    pub input_ids: String,
    pub attention_mask: String,
    #[serde(default)]
    pub token_type_ids: Option<String>,
    /// The output holding per-token embeddings [B, T, D].
    pub token_output: String,
    pub pooling: TextPooling,
    pub normalize: bool,
}

impl TextContract {
    /// Checks lengths and names.
    pub fn check(&self) -> Result<()> {
        if self.max_length == 0 {
            return Err(Error::Invalid {
                what: "text contract",
                reason: "max_length must be positive".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn effnet() -> ImageContract {
        ImageContract {
            input: "input".into(),
            layout: Layout::Nchw,
            size: 224,
            dynamic_size: true,
            resize: ResizePolicy::ShorterSideCenterCrop {
                crop_fraction: 0.875,
            },
            colour: ColourOrder::Rgb,
            mean: vec![127.0; 3],
            std: vec![128.0; 3],
        }
    }

    #[test]
    fn json_roundtrip_and_checks() {
        let c = InputContract::Image(effnet());
        c.check().unwrap();
        let json = serde_json::to_string(&c).unwrap();
        let back: InputContract = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);

        let mut bad = effnet();
        bad.std = vec![1.0, 0.0, 1.0];
        assert!(bad.check().unwrap_err().to_string().contains("std"));
        bad = effnet();
        bad.mean = vec![0.0];
        assert!(bad.check().unwrap_err().to_string().contains("3 values"));
    }

    #[test]
    fn fixed_size_models_refuse_other_sizes() {
        let mut c = effnet();
        assert_eq!(c.with_size(112).unwrap().size, 112);
        c.dynamic_size = false;
        let err = c.with_size(112).unwrap_err().to_string();
        assert!(err.contains("224") && err.contains("112"), "{err}");
    }
}
