//! MobileNetV2 (torchvision key names, as in torchvision's `mobilenet_v2-b0353104.pth`).
//!
//! Symmetric padding `(k - 1) / 2`, BatchNorm eps 1e-5, ReLU6, 17 inverted-residual
//! blocks, head convolution 320→1280, global average pooling, classifier 1280→1000.

use super::{BatchNorm, ConvUnit, Ctx, Padding};
use crate::{OnnxModel, Result, torch::Checkpoint};

/// (expand ratio, out channels, repeats, stride) per stage, from torchvision.
const SETTINGS: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

/// Converts a torchvision MobileNetV2 ImageNet checkpoint.
pub fn mobilenet_v2(ckpt: &Checkpoint, form: BatchNorm, source_sha256: &str) -> Result<OnnxModel> {
    let mut c = Ctx::new(ckpt, "mobilenet-v2", form, 1e-5);
    let mut x = c.conv_unit(
        "input",
        ConvUnit {
            name: "features.0".into(),
            conv: "features.0.0",
            bn: "features.0.1",
            out_ch: 32,
            in_ch: 3,
            kernel: 3,
            stride: 2,
            depthwise: false,
            padding: Padding::Symmetric(1),
            relu6: true,
        },
    )?;
    let mut inp = 32;
    let mut idx = 1;
    for (t, out, n, stride) in SETTINGS {
        for r in 0..n {
            let s = if r == 0 { stride } else { 1 };
            let name = format!("features.{idx}");
            let p = format!("features.{idx}.conv");
            let block_in = x.clone();
            let mid = inp * t;
            // torchvision numbers the sub-modules of `conv` in order; the expansion is absent when t == 1.
            let mut k = 0;
            let key = |k: usize, sub: Option<usize>| match sub {
                Some(s) => format!("{p}.{k}.{s}"),
                None => format!("{p}.{k}"),
            };
            if t != 1 {
                let (cv, bn) = (key(k, Some(0)), key(k, Some(1)));
                x = c.conv_unit(
                    &x,
                    ConvUnit {
                        name: format!("{name}.expand"),
                        conv: &cv,
                        bn: &bn,
                        out_ch: mid,
                        in_ch: inp,
                        kernel: 1,
                        stride: 1,
                        depthwise: false,
                        padding: Padding::Symmetric(0),
                        relu6: true,
                    },
                )?;
                k += 1;
            }
            let (cv, bn) = (key(k, Some(0)), key(k, Some(1)));
            x = c.conv_unit(
                &x,
                ConvUnit {
                    name: format!("{name}.dw"),
                    conv: &cv,
                    bn: &bn,
                    out_ch: mid,
                    in_ch: mid,
                    kernel: 3,
                    stride: s,
                    depthwise: true,
                    padding: Padding::Symmetric(1),
                    relu6: true,
                },
            )?;
            let residual = s == 1 && inp == out;
            let (cv, bn) = (key(k + 1, None), key(k + 2, None));
            x = c.conv_unit(
                &x,
                ConvUnit {
                    name: if residual {
                        format!("{name}.project")
                    } else {
                        name.clone()
                    },
                    conv: &cv,
                    bn: &bn,
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
            inp = out;
            idx += 1;
        }
    }
    x = c.conv_unit(
        &x,
        ConvUnit {
            name: "features.18".into(),
            conv: "features.18.0",
            bn: "features.18.1",
            out_ch: 1280,
            in_ch: 320,
            kernel: 1,
            stride: 1,
            depthwise: false,
            padding: Padding::Symmetric(0),
            relu6: true,
        },
    )?;
    c.classifier_head(&x, "classifier.1", 1280, 1000)?;
    c.finish(source_sha256)
}
