//! Importing the last layers of an ONNX backbone as trainable `tl-nn` layers
//! (`train --finetune last`).
//!
//! From a tapped value (the output of the last inverted-residual block) to the feature
//! output, the graph must be a chain of supported ops: 1×1 `Conv`, `BatchNormalization`,
//! `Clip` as ReLU6, `Relu`, `GlobalAveragePool` and `Flatten`. Anything else is an error
//! naming the node and op. The layers keep their ONNX node names, so export writes the
//! trained values back into the same initializers.

use ndarray::Array1;
use serde::{Deserialize, Serialize};
use tl_nn::{Act, Activation, BatchNorm, GlobalAvgPool, PointwiseConv, Sequential, Tensor};
use tl_onnx::{OnnxModel, proto::NodeProto, tensor_values_f32};

use crate::{Error, Result};

/// What an imported layer came from: its node and the initializers its parameters map to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportedLayer {
    pub node: String,
    pub op: String,
    /// `(parameter name within the layer, ONNX initializer)`; an empty initializer name
    /// is a parameter the node lacks (a convolution's bias), added on export.
    pub params: Vec<(String, String)>,
}

/// The imported chain.
#[derive(Debug)]
pub struct Imported {
    pub layers: Sequential,
    pub map: Vec<ImportedLayer>,
    /// Channels of the input (the tapped value) and width of the output features.
    pub in_channels: usize,
    pub width: usize,
}

const SUPPORTED: &str = "fine-tuning the last layers supports Conv (1×1, group 1, stride 1), BatchNormalization, Clip (as ReLU6), Relu, GlobalAveragePool and Flatten";

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

/// Imports the chain of nodes from the value `from` to the value `to`.
pub fn import_chain(model: &OnnxModel, from: &str, to: &str) -> Result<Imported> {
    let graph = &model
        .proto()
        .graph
        .as_ref()
        .expect("loaded models have a graph");
    let mut current = from.to_string();
    let mut layers = Sequential::new();
    let mut map = Vec::new();
    let mut in_channels = None;
    let mut width = None;
    while current != to {
        let consumers: Vec<&NodeProto> = graph
            .node
            .iter()
            .filter(|n| n.input.contains(&current))
            .collect();
        let node = match consumers.as_slice() {
            [n] => *n,
            [] => {
                return Err(Error::invalid(
                    "fine-tuning",
                    format!("no node consumes `{current}` on the way from `{from}` to `{to}`"),
                ));
            }
            many => {
                let names: Vec<&str> = many.iter().map(|n| n.name.as_str()).collect();
                return Err(Error::invalid(
                    "fine-tuning",
                    format!(
                        "`{current}` feeds several nodes ({}): only a chain can be fine-tuned",
                        names.join(", ")
                    ),
                ));
            }
        };
        let name = if node.name.is_empty() {
            node.output[0].clone()
        } else {
            node.name.clone()
        };
        match node.op_type.as_str() {
            "Conv" => {
                let (ws, w) = init(model, node, &node.input[1])?;
                let ok_kernel = ws.len() == 4 && ws[2] == 1 && ws[3] == 1;
                let ok_group = int(node, "group").unwrap_or(1) == 1;
                let ok_stride = ints(node, "strides").is_none_or(|s| s.iter().all(|&v| v == 1));
                let ok_pads = ints(node, "pads").is_none_or(|p| p.iter().all(|&v| v == 0));
                if !(ok_kernel && ok_group && ok_stride && ok_pads) {
                    return Err(unsupported(node, format!("kernel {ws:?}: {SUPPORTED}")));
                }
                let bias = match node.input.get(2).filter(|b| !b.is_empty()) {
                    Some(b) => init(model, node, b)?.1,
                    None => vec![0.0; ws[0]],
                };
                in_channels.get_or_insert(ws[1]);
                width = Some(ws[0]);
                let conv = PointwiseConv::from_weights(
                    Tensor::from_shape_vec(ws.clone(), w).expect("shape checked"),
                    Array1::from_vec(bias),
                )?;
                // A convolution without a bias (before a BatchNorm) gets one when trained;
                // an empty initializer name tells export to add it to the node.
                let bias_init = node
                    .input
                    .get(2)
                    .filter(|b| !b.is_empty())
                    .cloned()
                    .unwrap_or_default();
                let params = vec![
                    ("weight".to_string(), node.input[1].clone()),
                    ("bias".into(), bias_init),
                ];
                layers.push_boxed(&name, Box::new(conv));
                map.push(ImportedLayer {
                    node: name.clone(),
                    op: node.op_type.clone(),
                    params,
                });
            }
            "BatchNormalization" => {
                let get =
                    |i: usize| init(model, node, &node.input[i]).map(|(_, v)| Array1::from_vec(v));
                let eps = float(node, "epsilon").unwrap_or(1e-5);
                // ONNX: running = momentum × running + (1 − momentum) × batch.
                let momentum = 1.0 - float(node, "momentum").unwrap_or(0.9);
                let bn = BatchNorm::from_stats(get(1)?, get(2)?, get(3)?, get(4)?, eps, momentum)?;
                in_channels.get_or_insert(bn.channels());
                let params = ["weight", "bias", "running_mean", "running_var"]
                    .iter()
                    .zip(&node.input[1..5])
                    .map(|(p, i)| (p.to_string(), i.clone()))
                    .collect();
                layers.push_boxed(&name, Box::new(bn));
                map.push(ImportedLayer {
                    node: name.clone(),
                    op: node.op_type.clone(),
                    params,
                });
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
                layers.push_boxed(&name, Box::new(Activation::new(act)));
            }
            "Relu" => layers.push_boxed(&name, Box::new(Activation::new(Act::Relu))),
            "GlobalAveragePool" => layers.push_boxed(&name, Box::new(GlobalAvgPool::new())),
            // Global pooling already gives [N, C].
            "Flatten"
                if layers
                    .layers()
                    .any(|(_, l)| l.describe() == "global-avg-pool") => {}
            _ => return Err(unsupported(node, SUPPORTED)),
        }
        current = node.output[0].clone();
    }
    let (Some(in_channels), Some(width)) = (in_channels, width) else {
        return Err(Error::invalid(
            "fine-tuning",
            format!("no trainable layer between `{from}` and `{to}`"),
        ));
    };
    if !layers
        .layers()
        .any(|(_, l)| l.describe() == "global-avg-pool")
    {
        return Err(Error::invalid(
            "fine-tuning",
            format!("the layers from `{from}` to `{to}` do not end in global pooling"),
        ));
    }
    Ok(Imported {
        layers,
        map,
        in_channels,
        width,
    })
}
