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
        ConvUnit::stem(
            "features.0",
            "features.0.0",
            "features.0.1",
            32,
            Padding::Symmetric(1),
        ),
    )?;
    let mut inp = 32;
    let mut idx = 1;
    for (t, out, n, stride) in SETTINGS {
        for r in 0..n {
            let s = if r == 0 { stride } else { 1 };
            let name = format!("features.{idx}");
            let block_in = x.clone();
            let mid = inp * t;
            // torchvision numbers the sub-modules of `conv` in order; the expansion is absent when t == 1.
            let key = |m: usize| format!("features.{idx}.conv.{m}");
            let mut k = 0;
            if t != 1 {
                let (cv, bn) = (format!("{}.0", key(k)), format!("{}.1", key(k)));
                x = c.conv_unit(
                    &x,
                    ConvUnit::pointwise(format!("{name}.expand"), &cv, &bn, inp, mid, true),
                )?;
                k += 1;
            }
            let (cv, bn) = (format!("{}.0", key(k)), format!("{}.1", key(k)));
            x = c.conv_unit(
                &x,
                ConvUnit::depthwise(
                    format!("{name}.dw"),
                    &cv,
                    &bn,
                    mid,
                    3,
                    s,
                    Padding::Symmetric(1),
                ),
            )?;
            let residual = s == 1 && inp == out;
            let project = if residual {
                format!("{name}.project")
            } else {
                name.clone()
            };
            let (cv, bn) = (key(k + 1), key(k + 2));
            x = c.conv_unit(&x, ConvUnit::pointwise(project, &cv, &bn, mid, out, false))?;
            if residual {
                x = c.g.op("Add", &name, &[&x, &block_in], vec![]);
            }
            inp = out;
            idx += 1;
        }
    }
    x = c.conv_unit(
        &x,
        ConvUnit::pointwise(
            "features.18".into(),
            "features.18.0",
            "features.18.1",
            320,
            1280,
            true,
        ),
    )?;
    c.classifier_head(&x, "classifier.1", 1280, 1000)?;
    c.finish(source_sha256)
}
