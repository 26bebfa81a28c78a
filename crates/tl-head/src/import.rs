//! Importing an ONNX backbone, from any value to its feature output, as a trainable
//! `tl-nn` [`Graph`]: the last block (`train --finetune last`) or the whole network
//! (`--finetune all`).
//!
//! Supported ops: `Conv` (any kernel, stride, explicit or `SAME_UPPER` padding, groups,
//! so depthwise too), `BatchNormalization` (trainable, with batch statistics in training),
//! `Clip` as ReLU6, `Relu`, residual `Add`, `GlobalAveragePool`, `Flatten` after it, and
//! `Gemm`. Anything else is an error naming the node and op, as is a weight that is not a
//! constant initializer. The layers keep their ONNX node names, so export writes the
//! trained values back into the same initializers.

use std::collections::{HashMap, HashSet};

use ndarray::Array1;
use serde::{Deserialize, Serialize};
use tl_nn::{
    Act, Activation, BatchNorm, Conv2d, GlobalAvgPool, Graph, Linear, Module, Padding, Pool2d,
    PoolKind, Tensor,
};
use tl_onnx::{
    OnnxModel,
    proto::{GraphProto, NodeProto},
    tensor_values_f32,
};

use crate::{
    Error, Result,
    train::{TrainConfig, Unfreeze},
};

/// What an imported layer came from: its node and the initializers its parameters map to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportedLayer {
    pub node: String,
    pub op: String,
    /// `(parameter name within the layer, ONNX initializer)`; an empty initializer name
    /// is a parameter the node lacks (a convolution's bias), added on export.
    pub params: Vec<(String, String)>,
}

/// The imported part of the backbone.
#[derive(Debug)]
pub struct Imported {
    pub layers: Graph,
    pub map: Vec<ImportedLayer>,
    /// Channels of the input (the tapped value) and width of the output features.
    pub in_channels: usize,
    pub width: usize,
}

const SUPPORTED: &str = "fine-tuning supports Conv (any kernel, stride, pads or SAME_UPPER, groups; no dilation), BatchNormalization, Clip (as ReLU6), Relu, Add, Concat (axis 1), MaxPool and AveragePool (2-D, no dilation, ceil_mode 0), GlobalAveragePool, Flatten after it, and Gemm (transB = 1)";

fn unsupported(node: &NodeProto, reason: impl Into<String>) -> Error {
    Error::Unsupported {
        node: node.name.clone(),
        op: node.op_type.clone(),
        reason: reason.into(),
    }
}

fn init(model: &OnnxModel, node: &NodeProto, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
    let t = model.initializer(name).ok_or_else(|| {
        unsupported(
            node,
            format!("input `{name}` is not a constant initializer"),
        )
    })?;
    Ok(tensor_values_f32(t)?)
}

fn ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    node.attribute
        .iter()
        .find(|a| a.name == name)
        .map(|a| a.ints.clone())
}

fn int(node: &NodeProto, name: &str) -> Option<i64> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.i)
}

fn float(node: &NodeProto, name: &str) -> Option<f32> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.f)
}

fn attr_string(node: &NodeProto, name: &str) -> Option<String> {
    node.attribute
        .iter()
        .find(|a| a.name == name)
        .map(|a| String::from_utf8_lossy(&a.s).into_owned())
}

/// The block a node belongs to, by its name: the first segment, with the second when it
/// is a number (`blocks.3.dw.conv` → `blocks.3`, `features.17` → `features.17`,
/// `stem.conv` → `stem`, `head.bn` → `head`).
/// A window op's padding (Conv, pooling): `auto_pad = SAME_UPPER`, or explicit `pads`
/// (`[t, l, b, r]`, default none).
fn padding(node: &NodeProto) -> Result<Padding> {
    match attr_string(node, "auto_pad").as_deref() {
        Some("SAME_UPPER") => Ok(Padding::SameUpper),
        None | Some("NOTSET") => {
            let p = ints(node, "pads").unwrap_or_else(|| vec![0; 4]);
            if p.len() != 4 || p.iter().any(|&v| v < 0) {
                return Err(unsupported(node, format!("pads {p:?}")));
            }
            Ok(Padding::Explicit([
                p[0] as usize,
                p[1] as usize,
                p[2] as usize,
                p[3] as usize,
            ]))
        }
        Some(other) => Err(unsupported(node, format!("auto_pad {other}: {SUPPORTED}"))),
    }
}

pub fn block_of(node: &str) -> String {
    let mut parts = node.split('.');
    let first = parts.next().unwrap_or_default();
    match parts.next() {
        Some(n) if n.parse::<u32>().is_ok() => format!("{first}.{n}"),
        _ => first.to_string(),
    }
}

/// How an imported backbone trains beside its head: at `pretrained_lr` × the head's rate,
/// from `unfreeze_epoch` on; block by block (see [`block_of`]) when the whole network is
/// fine-tuned: the last block at `pretrained_lr`, each earlier one at `layer_decay` × the
/// next one's rate, and from `unfreeze_epoch` one more block every `unfreeze_every`
/// epochs, last block first.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockRates {
    pub pretrained_lr: f32,
    pub layer_decay: f32,
    pub unfreeze_epoch: usize,
    pub unfreeze_every: usize,
}

impl BlockRates {
    /// `train` with the backbone's groups and unfreezing added; `blocks` is the imported
    /// graph when it trains block by block (frozen nodes are buffers, in no group).
    pub fn apply(&self, train: &TrainConfig, blocks: Option<&tl_nn::Graph>) -> TrainConfig {
        let mut t = train.clone();
        t.groups
            .0
            .insert(0, ("trunk.backbone".into(), self.pretrained_lr));
        let Some(graph) = blocks else {
            if self.unfreeze_epoch > 0 {
                t.unfreeze.push(Unfreeze {
                    prefix: "trunk.backbone".into(),
                    epoch: self.unfreeze_epoch,
                });
            }
            return t;
        };
        // The trainable blocks, in graph order.
        let mut names: Vec<String> = Vec::new();
        for node in &graph.nodes()[graph.frozen()..] {
            let b = block_of(&node.name);
            if !names.contains(&b) {
                names.push(b);
            }
        }
        for (i, b) in names.iter().enumerate() {
            let depth = names.len() - 1 - i;
            let prefix = format!("trunk.backbone.{b}.");
            if self.layer_decay != 1.0 {
                let factor = self.pretrained_lr * self.layer_decay.powi(depth as i32);
                t.groups.0.push((prefix.clone(), factor));
            }
            if self.unfreeze_epoch > 0 {
                t.unfreeze.push(Unfreeze {
                    prefix,
                    epoch: self.unfreeze_epoch + depth * self.unfreeze_every,
                });
            }
        }
        t
    }
}

/// The nodes that compute `to` from `from`, in graph order. Every value they read must be
/// computed from `from` or be a constant initializer; an error names the node that reads
/// anything else.
fn path<'a>(
    graph: &'a GraphProto,
    model: &OnnxModel,
    from: &str,
    to: &str,
) -> Result<Vec<&'a NodeProto>> {
    let known = graph.input.iter().any(|i| i.name == from)
        || graph
            .node
            .iter()
            .any(|n| n.output.iter().any(|o| o == from));
    if !known {
        return Err(Error::fine_tuning(format!(
            "the model has no value `{from}` to start from"
        )));
    }
    // Values computed from `from`.
    let mut down: HashSet<&str> = HashSet::from([from]);
    for n in &graph.node {
        if n.input.iter().any(|i| down.contains(i.as_str())) {
            down.extend(n.output.iter().map(String::as_str));
        }
    }
    if !down.contains(to) {
        return Err(Error::fine_tuning(format!(
            "`{to}` is not computed from `{from}`"
        )));
    }
    // Walk back from `to` through the values computed from `from`.
    let producer: HashMap<&str, usize> = graph
        .node
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.output.iter().map(move |o| (o.as_str(), i)))
        .collect();
    let mut needed = vec![false; graph.node.len()];
    let mut stack = vec![to];
    while let Some(v) = stack.pop() {
        if v == from {
            continue;
        }
        let i = producer[v];
        if std::mem::replace(&mut needed[i], true) {
            continue;
        }
        let node = &graph.node[i];
        for input in node.input.iter().filter(|s| !s.is_empty()) {
            if down.contains(input.as_str()) {
                stack.push(input);
            } else if model.initializer(input).is_none() {
                return Err(if producer.contains_key(input.as_str()) {
                    Error::fine_tuning(format!(
                        "node `{}` ({}) reads `{input}`, which does not come from `{from}`: start from a value every path to `{to}` goes through",
                        node.name, node.op_type
                    ))
                } else {
                    unsupported(
                        node,
                        format!("input `{input}` is not a constant initializer"),
                    )
                });
            }
        }
    }
    Ok(graph
        .node
        .iter()
        .zip(needed)
        .filter_map(|(n, k)| k.then_some(n))
        .collect())
}

/// Imports the nodes that compute the value `to` from the value `from` as a trainable
/// [`Graph`]: a chain (the last block) or the whole backbone (from its input).
pub fn import_graph(model: &OnnxModel, from: &str, to: &str) -> Result<Imported> {
    let graph = model
        .proto()
        .graph
        .as_ref()
        .expect("loaded models have a graph");
    let nodes = path(graph, model, from, to)?;
    let mut g = Graph::new();
    let mut value: HashMap<String, usize> = HashMap::from([(from.to_string(), Graph::INPUT)]);
    let mut map = Vec::new();
    let mut in_channels = None;
    let mut width = None;
    let mut pooled = HashSet::new();
    for node in nodes {
        let name = if node.name.is_empty() {
            node.output[0].clone()
        } else {
            node.name.clone()
        };
        let data: Vec<&String> = node
            .input
            .iter()
            .filter(|i| !i.is_empty() && model.initializer(i).is_none())
            .collect();
        let input = |k: usize| -> Result<usize> {
            let v = data
                .get(k)
                .ok_or_else(|| unsupported(node, "a data input is missing"))?;
            value.get(v.as_str()).copied().ok_or_else(|| {
                unsupported(
                    node,
                    format!(
                        "input `{v}` is neither a constant initializer nor computed from `{from}`"
                    ),
                )
            })
        };
        // Every node but Add and Concat reads one value; its other inputs must be
        // initializers.
        if !matches!(node.op_type.as_str(), "Add" | "Concat") && data.len() > 1 {
            return Err(unsupported(
                node,
                format!("input `{}` is not a constant initializer", data[1]),
            ));
        }
        let layer: Option<Box<dyn Module>> = match node.op_type.as_str() {
            "Conv" => {
                let (ws, w) = init(model, node, &node.input[1])?;
                if ints(node, "dilations").is_some_and(|d| d.iter().any(|&v| v != 1)) {
                    return Err(unsupported(
                        node,
                        format!("dilated convolution: {SUPPORTED}"),
                    ));
                }
                let padding = padding(node)?;
                let stride = ints(node, "strides").unwrap_or_else(|| vec![1, 1]);
                if ws.len() != 4 || stride.len() != 2 || stride.iter().any(|&v| v < 1) {
                    return Err(unsupported(
                        node,
                        format!(
                            "kernel {ws:?}, strides {stride:?}: only 2-D convolutions are supported"
                        ),
                    ));
                }
                let bias = match node.input.get(2).filter(|b| !b.is_empty()) {
                    Some(b) => init(model, node, b)?.1,
                    None => vec![0.0; ws[0]],
                };
                let group = int(node, "group").unwrap_or(1) as usize;
                in_channels.get_or_insert(ws[1] * group);
                width = Some(ws[0]);
                let conv = Conv2d::from_weights(
                    Tensor::from_shape_vec(ws.clone(), w).expect("shape checked"),
                    Array1::from_vec(bias),
                    [stride[0] as usize, stride[1] as usize],
                    padding,
                    group,
                )?;
                // A convolution without a bias (before a BatchNorm) gets one when trained;
                // an empty initializer name tells export to add it to the node.
                let bias_init = node
                    .input
                    .get(2)
                    .filter(|b| !b.is_empty())
                    .cloned()
                    .unwrap_or_default();
                map.push(ImportedLayer {
                    node: name.clone(),
                    op: node.op_type.clone(),
                    params: vec![
                        ("weight".to_string(), node.input[1].clone()),
                        ("bias".into(), bias_init),
                    ],
                });
                Some(Box::new(conv))
            }
            "BatchNormalization" => {
                let get =
                    |i: usize| init(model, node, &node.input[i]).map(|(_, v)| Array1::from_vec(v));
                let eps = float(node, "epsilon").unwrap_or(1e-5);
                // ONNX: running = momentum × running + (1 − momentum) × batch.
                let momentum = 1.0 - float(node, "momentum").unwrap_or(0.9);
                let bn = BatchNorm::from_stats(get(1)?, get(2)?, get(3)?, get(4)?, eps, momentum)?;
                in_channels.get_or_insert(bn.channels());
                map.push(ImportedLayer {
                    node: name.clone(),
                    op: node.op_type.clone(),
                    params: ["weight", "bias", "running_mean", "running_var"]
                        .iter()
                        .zip(&node.input[1..5])
                        .map(|(p, i)| (p.to_string(), i.clone()))
                        .collect(),
                });
                Some(Box::new(bn))
            }
            "Clip" => {
                let bound = |i: usize, attr: &str| -> Result<Option<f32>> {
                    match node.input.get(i).filter(|s| !s.is_empty()) {
                        Some(n) => Ok(Some(
                            init(model, node, n)?.1.first().copied().unwrap_or(f32::NAN),
                        )),
                        None => Ok(float(node, attr)),
                    }
                };
                let (lo, hi) = (bound(1, "min")?, bound(2, "max")?);
                let act = match (lo, hi) {
                    (Some(l), Some(h)) if l == 0.0 && h == 6.0 => Act::Relu6,
                    (Some(0.0), None) => Act::Relu,
                    _ => {
                        return Err(unsupported(
                            node,
                            format!("bounds {lo:?}..{hi:?}: only Clip(0, 6) is ReLU6"),
                        ));
                    }
                };
                Some(Box::new(Activation::new(act)))
            }
            "Relu" => Some(Box::new(Activation::new(Act::Relu))),
            "GlobalAveragePool" => {
                pooled.insert(node.output[0].clone());
                Some(Box::new(GlobalAvgPool::new()))
            }
            "Gemm" => {
                let transposed = int(node, "transB") == Some(1)
                    && int(node, "transA").unwrap_or(0) == 0
                    && float(node, "alpha").unwrap_or(1.0) == 1.0
                    && float(node, "beta").unwrap_or(1.0) == 1.0;
                if !transposed {
                    return Err(unsupported(
                        node,
                        format!("only transB = 1, alpha = beta = 1: {SUPPORTED}"),
                    ));
                }
                let (ws, w) = init(model, node, &node.input[1])?;
                let bias = match node.input.get(2).filter(|b| !b.is_empty()) {
                    Some(b) => init(model, node, b)?.1,
                    None => {
                        return Err(unsupported(node, "a Gemm without a bias"));
                    }
                };
                width = Some(ws[0]);
                map.push(ImportedLayer {
                    node: name.clone(),
                    op: node.op_type.clone(),
                    params: vec![
                        ("weight".to_string(), node.input[1].clone()),
                        ("bias".into(), node.input[2].clone()),
                    ],
                });
                Some(Box::new(Linear::from_weights(
                    ndarray::Array2::from_shape_vec((ws[0], ws[1]), w)
                        .map_err(|_| unsupported(node, format!("weight {ws:?} is not 2-D")))?,
                    Array1::from_vec(bias),
                )))
            }
            "Add" => None,
            "Concat" => {
                if int(node, "axis") != Some(1) {
                    return Err(unsupported(node, format!("only axis 1: {SUPPORTED}")));
                }
                let inputs = (0..data.len()).map(input).collect::<Result<Vec<_>>>()?;
                let out = g.push_concat(&name, &inputs)?;
                value.insert(node.output[0].clone(), out);
                continue;
            }
            "MaxPool" | "AveragePool" => {
                let kernel = ints(node, "kernel_shape").unwrap_or_default();
                let stride = ints(node, "strides").unwrap_or_else(|| vec![1, 1]);
                let plain = kernel.len() == 2
                    && stride.len() == 2
                    && kernel.iter().chain(&stride).all(|&v| v >= 1)
                    && int(node, "ceil_mode").unwrap_or(0) == 0
                    && ints(node, "dilations").is_none_or(|d| d.iter().all(|&v| v == 1))
                    && node.output.iter().skip(1).all(String::is_empty);
                if !plain {
                    return Err(unsupported(
                        node,
                        format!("kernel {kernel:?}, strides {stride:?}: {SUPPORTED}"),
                    ));
                }
                let kind = if node.op_type == "MaxPool" {
                    PoolKind::Max
                } else {
                    PoolKind::Average {
                        count_include_pad: int(node, "count_include_pad") == Some(1),
                    }
                };
                let pair = |v: &[i64]| [v[0] as usize, v[1] as usize];
                Some(Box::new(Pool2d::new(
                    kind,
                    pair(&kernel),
                    pair(&stride),
                    padding(node)?,
                )?))
            }
            // Global pooling already gives [N, C].
            "Flatten" if data.first().is_some_and(|d| pooled.contains(*d)) => {
                value.insert(node.output[0].clone(), input(0)?);
                continue;
            }
            _ => return Err(unsupported(node, SUPPORTED)),
        };
        let out = match layer {
            Some(l) => g.push_layer(&name, input(0)?, l)?,
            None => {
                if data.len() != 2 {
                    return Err(unsupported(node, "Add of two computed values only"));
                }
                g.push_add(&name, input(0)?, input(1)?)?
            }
        };
        value.insert(node.output[0].clone(), out);
    }
    let (Some(in_channels), Some(width)) = (in_channels, width) else {
        return Err(Error::fine_tuning(format!(
            "no trainable layer between `{from}` and `{to}`"
        )));
    };
    if value.get(to) != Some(&g.len()) {
        return Err(Error::fine_tuning(format!(
            "the layers from `{from}` do not end in `{to}`"
        )));
    }
    if pooled.is_empty() {
        return Err(Error::fine_tuning(format!(
            "the layers from `{from}` to `{to}` do not end in global pooling"
        )));
    }
    Ok(Imported {
        layers: g,
        map,
        in_channels,
        width,
    })
}

/// Replaces every imported weight by a fresh random initialisation from `seed`, as
/// PyTorch initialises the same layers: convolution and linear weights and biases uniform
/// in ±1/√fan-in, BatchNorm scale 1, shift 0, running mean 0 and variance 1. The same
/// architecture trained from scratch: the baseline of "pretrained weights converge
/// faster".
pub fn reinitialize(net: &mut dyn Module, seed: u64) {
    use rand::Rng;
    let mut rng = tl_core::rng::seeded_rng(seed, "reinitialize");
    // The fan-in of the last weight visited (0 after a BatchNorm scale).
    let mut fan_in = 0usize;
    net.visit_mut("", &mut |name, p| {
        let shape = p.value.shape().to_vec();
        let last = name.rsplit('.').next().unwrap_or_default();
        let uniform = |rng: &mut rand_chacha::ChaCha8Rng, v: &mut Tensor, fan: usize| {
            let bound = 1.0 / (fan.max(1) as f32).sqrt();
            v.mapv_inplace(|_| rng.random_range(-bound..bound));
        };
        match (last, shape.len()) {
            ("weight", 1) => {
                fan_in = 0;
                p.value.fill(1.0);
            }
            ("weight", _) => {
                fan_in = shape[1..].iter().product();
                uniform(&mut rng, &mut p.value, fan_in);
            }
            ("bias", _) if fan_in == 0 => p.value.fill(0.0),
            ("bias", _) => uniform(&mut rng, &mut p.value, fan_in),
            ("running_mean", _) => p.value.fill(0.0),
            ("running_var", _) => p.value.fill(1.0),
            _ => {}
        }
    });
}

/// Multiply-adds of one `height` × `width` image through `model`'s convolutions, pooling
/// and dense layers (Conv, Gemm and MatMul with constant weights), by walking the graph
/// with each value's spatial size; elementwise ops are not counted. FLOPs are twice this.
/// For a roofline: what a forward pass must compute, against what a device can.
pub fn multiply_adds(model: &OnnxModel, height: usize, width: usize) -> Result<u64> {
    let graph = model
        .proto()
        .graph
        .as_ref()
        .expect("loaded models have a graph");
    let initializers: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let mut spatial: HashMap<String, (usize, usize)> = graph
        .input
        .iter()
        .filter(|i| !initializers.contains(i.name.as_str()))
        .map(|i| (i.name.clone(), (height, width)))
        .collect();
    let mut total = 0u64;
    for node in &graph.node {
        let Some(&(h, w)) = node.input.iter().find_map(|i| spatial.get(i)) else {
            continue;
        };
        let window = |k: &[usize]| -> Result<(usize, usize)> {
            let s = ints(node, "strides").unwrap_or_else(|| vec![1, 1]);
            let stride = [
                s[0].max(1) as usize,
                s.get(1).copied().unwrap_or(s[0]).max(1) as usize,
            ];
            // Counting needs output sizes only: SAME_LOWER pads the other side to the size
            // SAME_UPPER gives, and VALID is no padding (import supports neither).
            let padding = match attr_string(node, "auto_pad").as_deref() {
                Some("SAME_LOWER") => Padding::SameUpper,
                Some("VALID") => Padding::Explicit([0; 4]),
                _ => padding(node)?,
            };
            let ([oh, ow], _) = padding.apply([h, w], [k[0], k[1]], stride).ok_or_else(|| {
                unsupported(
                    node,
                    format!("a {}x{} window on a {h}x{w} input", k[0], k[1]),
                )
            })?;
            Ok((oh, ow))
        };
        let out = match node.op_type.as_str() {
            "Conv" => {
                let t = graph
                    .initializer
                    .iter()
                    .find(|t| t.name == node.input[1])
                    .ok_or_else(|| unsupported(node, "the weight is not an initializer"))?;
                let d: Vec<usize> = t.dims.iter().map(|&v| v as usize).collect();
                if d.len() != 4 {
                    return Err(unsupported(node, format!("weight of shape {d:?}")));
                }
                let (oh, ow) = window(&d[2..])?;
                total += (d.iter().product::<usize>() * oh * ow) as u64;
                (oh, ow)
            }
            "MaxPool" | "AveragePool" => {
                let k: Vec<usize> = ints(node, "kernel_shape")
                    .unwrap_or_default()
                    .iter()
                    .map(|&v| v as usize)
                    .collect();
                window(&k)?
            }
            "GlobalAveragePool" | "GlobalMaxPool" => (1, 1),
            "Gemm" | "MatMul" => {
                if let Some(t) = graph.initializer.iter().find(|t| t.name == node.input[1]) {
                    total += t.dims.iter().product::<i64>().max(0) as u64 * (h * w) as u64;
                }
                (h, w)
            }
            _ => (h, w),
        };
        for o in &node.output {
            spatial.insert(o.clone(), out);
        }
    }
    Ok(total)
}

#[cfg(test)]
mod multiply_add_tests {
    use super::*;

    #[test]
    fn multiply_adds_of_tiny_networks_match_a_hand_count() {
        // tiny-mobilenet at 32 px: stem 3→8 k3 s2 (16x16), expand 8→16 k1, depthwise 16 k3,
        // project 16→8 k1, global pool, fc 8→10.
        let m = tl_onnx::fixtures::tiny("mobilenet", 0, 10).unwrap();
        let hand = 8 * 3 * 9 * 256 + 16 * 8 * 256 + 16 * 9 * 256 + 8 * 16 * 256 + 8 * 10;
        assert_eq!(multiply_adds(&m, 32, 32).unwrap(), hand);
        // tiny-vgg at 32 px: two 3x3 convs at 32x32, a 2x2 max pool, one at 16x16, fc 16→10.
        let m = tl_onnx::fixtures::tiny("vgg", 0, 10).unwrap();
        let hand = 8 * 3 * 9 * 1024 + 8 * 8 * 9 * 1024 + 16 * 8 * 9 * 256 + 16 * 10;
        assert_eq!(multiply_adds(&m, 32, 32).unwrap(), hand);
        // Quadratic in the side: 64 px is 4x the convolutions.
        let m = tl_onnx::fixtures::tiny("mobilenet", 0, 10).unwrap();
        assert_eq!(
            multiply_adds(&m, 64, 64).unwrap() - 80,
            4 * (multiply_adds(&m, 32, 32).unwrap() - 80)
        );
    }
}
