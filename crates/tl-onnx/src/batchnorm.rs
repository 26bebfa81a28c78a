//! BatchNormalization nodes: listing them, computing them from the statistics of the
//! batch they are given (as in training), and replacing their running statistics. These
//! are the graph halves of AdaBN (Li et al. 2016): re-estimate every BatchNorm's
//! statistics on the target domain, keep every weight.

use std::collections::HashMap;

use crate::{
    Error, OnnxModel, Result,
    builder::{attr, node, tensor_f32, tensor_i64},
    tensor_values_f32,
};

/// One `BatchNormalization` node and the initializers that hold its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchNormNode {
    pub name: String,
    /// The value it normalises (a convolution's output, [N, C, H, W]).
    pub input: String,
    pub output: String,
    pub scale: String,
    pub bias: String,
    pub mean: String,
    pub var: String,
    pub epsilon: f32,
    pub channels: usize,
}

impl BatchNormNode {
    /// The output carrying the batch mean of the input, in [`OnnxModel::with_batch_statistics`].
    pub fn batch_mean(&self) -> String {
        format!("{}.batch_mean", self.output)
    }
    /// The output carrying the (biased) batch variance of the input.
    pub fn batch_var(&self) -> String {
        format!("{}.batch_var", self.output)
    }
}

/// New running statistics of one BatchNorm node, per channel.
#[derive(Debug, Clone, PartialEq)]
pub struct RunningStatistics {
    pub node: String,
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
}

impl OnnxModel {
    /// The model's `BatchNormalization` nodes in graph order. Every parameter must be an
    /// initializer and every input a convolution's output (4-d); anything else is an
    /// error naming the node.
    pub fn batch_norms(&self) -> Result<Vec<BatchNormNode>> {
        let graph = self.graph();
        let producer: HashMap<&str, &str> = graph
            .node
            .iter()
            .flat_map(|n| n.output.iter().map(|o| (o.as_str(), n.op_type.as_str())))
            .collect();
        graph
            .node
            .iter()
            .filter(|n| n.op_type == "BatchNormalization")
            .map(|n| {
                let fail = |why: String| {
                    Error::Build(format!("BatchNormalization `{}`: {why}", n.name))
                };
                if n.input.len() != 5 || n.output.is_empty() {
                    return Err(fail(format!(
                        "{} inputs and {} outputs (expected 5 and at least 1)",
                        n.input.len(),
                        n.output.len()
                    )));
                }
                match producer.get(n.input[0].as_str()) {
                    Some(&"Conv") => {}
                    other => {
                        return Err(fail(format!(
                            "its input `{}` comes from {}, not a Conv: only the BatchNorms of convolutional networks ([N, C, H, W]) are handled",
                            n.input[0],
                            other.map_or("no node".to_string(), |op| format!("a {op}"))
                        )));
                    }
                }
                let len = |name: &str| -> Result<usize> {
                    let t = self
                        .initializer(name)
                        .ok_or_else(|| fail(format!("parameter `{name}` is not an initializer")))?;
                    Ok(t.dims.iter().product::<i64>() as usize)
                };
                let channels = len(&n.input[1])?;
                for p in &n.input[2..5] {
                    if len(p)? != channels {
                        return Err(fail(format!(
                            "parameter `{p}` has {} values, the scale {channels}",
                            len(p)?
                        )));
                    }
                }
                let epsilon = n
                    .attribute
                    .iter()
                    .find(|a| a.name == "epsilon")
                    .map_or(1e-5, |a| a.f);
                Ok(BatchNormNode {
                    name: n.name.clone(),
                    input: n.input[0].clone(),
                    output: n.output[0].clone(),
                    scale: n.input[1].clone(),
                    bias: n.input[2].clone(),
                    mean: n.input[3].clone(),
                    var: n.input[4].clone(),
                    epsilon,
                    channels,
                })
            })
            .collect()
    }

    /// A copy in which every BatchNormalization normalises its input by the statistics of
    /// the batch it is given, as in training, and outputs them: [`BatchNormNode::batch_mean`]
    /// and [`BatchNormNode::batch_var`], each [1, C, 1, 1] (the variance biased, over the
    /// batch and spatial axes). Later layers therefore see activations normalised the way
    /// the target domain's own statistics would normalise them.
    pub fn with_batch_statistics(&self) -> Result<(OnnxModel, Vec<BatchNormNode>)> {
        let norms = self.batch_norms()?;
        if norms.is_empty() {
            return Err(Error::Build(
                "the model has no BatchNormalization node (a folded model? use its BatchNorm-kept form)"
                    .into(),
            ));
        }
        // ReduceMean takes its axes as an input from opset 18 on, as an attribute before.
        let axes_as_input = self.opset().unwrap_or(17) >= 18;
        let mut model = self.clone();
        let by_name: HashMap<&str, &BatchNormNode> =
            norms.iter().map(|b| (b.name.as_str(), b)).collect();
        let mut initializers = Vec::new();
        let mut nodes = Vec::new();
        if axes_as_input {
            initializers.push(tensor_i64("tl.batch_statistics.axes", &[3], &[0, 2, 3]));
        }
        let reduce = |name: &str, input: &str, output: &str| {
            if axes_as_input {
                node(
                    "ReduceMean",
                    name,
                    &[input, "tl.batch_statistics.axes"],
                    &[output],
                    vec![attr::int("keepdims", 1)],
                )
            } else {
                node(
                    "ReduceMean",
                    name,
                    &[input],
                    &[output],
                    vec![attr::ints("axes", &[0, 2, 3]), attr::int("keepdims", 1)],
                )
            }
        };
        for n in &self.graph().node {
            let Some(b) = (n.op_type == "BatchNormalization")
                .then(|| by_name.get(n.name.as_str()))
                .flatten()
            else {
                nodes.push(n.clone());
                continue;
            };
            let column = |name: &str| -> Result<Vec<f32>> {
                let t = self.initializer(name).expect("checked by batch_norms");
                Ok(tensor_values_f32(t)?.1)
            };
            let (o, c) = (b.output.as_str(), b.channels);
            let v = |s: &str| format!("{o}.{s}");
            initializers.push(tensor_f32(&v("epsilon"), &[], &[b.epsilon]));
            initializers.push(tensor_f32(&v("scale"), &[c, 1, 1], &column(&b.scale)?));
            initializers.push(tensor_f32(&v("bias"), &[c, 1, 1], &column(&b.bias)?));
            let (mean, var) = (b.batch_mean(), b.batch_var());
            nodes.push(reduce(&mean, &b.input, &mean));
            nodes.push(node(
                "Sub",
                &v("centred"),
                &[&b.input, &mean],
                &[&v("centred")],
                vec![],
            ));
            nodes.push(node(
                "Mul",
                &v("squared"),
                &[&v("centred"), &v("centred")],
                &[&v("squared")],
                vec![],
            ));
            nodes.push(reduce(&var, &v("squared"), &var));
            nodes.push(node(
                "Add",
                &v("var_eps"),
                &[&var, &v("epsilon")],
                &[&v("var_eps")],
                vec![],
            ));
            nodes.push(node(
                "Sqrt",
                &v("std"),
                &[&v("var_eps")],
                &[&v("std")],
                vec![],
            ));
            nodes.push(node(
                "Div",
                &v("normalised"),
                &[&v("centred"), &v("std")],
                &[&v("normalised")],
                vec![],
            ));
            nodes.push(node(
                "Mul",
                &v("scaled"),
                &[&v("normalised"), &v("scale")],
                &[&v("scaled")],
                vec![],
            ));
            nodes.push(node(
                "Add",
                &b.name,
                &[&v("scaled"), &v("bias")],
                &[o],
                vec![],
            ));
        }
        let graph = model.graph_mut();
        graph.node = nodes;
        graph.initializer.extend(initializers);
        // Shapes inferred for the old graph's values still hold; the new values are left to ONNX Runtime.
        let outputs: Vec<String> = norms
            .iter()
            .flat_map(|b| [b.batch_mean(), b.batch_var()])
            .collect();
        let refs: Vec<&str> = outputs.iter().map(String::as_str).collect();
        Ok((model.with_outputs(&refs)?, norms))
    }

    /// A copy with the running statistics of the named BatchNorm nodes replaced (every
    /// weight kept): an AdaBN-adapted model when the statistics are the target domain's.
    pub fn with_running_statistics(&self, stats: &[RunningStatistics]) -> Result<OnnxModel> {
        let norms = self.batch_norms()?;
        let mut model = self.clone();
        for s in stats {
            let b = norms.iter().find(|b| b.name == s.node).ok_or_else(|| {
                Error::Build(format!("no BatchNormalization node named `{}`", s.node))
            })?;
            if s.var.iter().any(|v| !(v.is_finite() && *v >= 0.0))
                || s.mean.iter().any(|m| !m.is_finite())
            {
                return Err(Error::Build(format!(
                    "statistics of `{}` are not finite non-negative variances and finite means",
                    s.node
                )));
            }
            model.set_initializer_f32(&b.mean, &s.mean)?;
            model.set_initializer_f32(&b.var, &s.var)?;
        }
        Ok(model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        builder::{Dim, GraphBuilder, ModelBuilder},
        proto::DataType,
    };

    /// input → Conv (2 channels) → BatchNormalization → Relu, at `opset`.
    fn conv_bn(opset: i64) -> OnnxModel {
        let mut g = GraphBuilder::new("conv-bn");
        let x = g.image_input("input", 1);
        let w = g.initializer("w", &[2, 1, 1, 1], &[1.0, -2.0]);
        let y = g.op("Conv", "conv", &[&x, &w], vec![]);
        let s = g.initializer("s", &[2], &[1.0, 2.0]);
        let b = g.initializer("b", &[2], &[0.0, 0.5]);
        let m = g.initializer("m", &[2], &[0.1, 0.2]);
        let v = g.initializer("v", &[2], &[1.0, 4.0]);
        let bn = g.op(
            "BatchNormalization",
            "bn",
            &[&y, &s, &b, &m, &v],
            vec![attr::float("epsilon", 1e-3)],
        );
        let r = g.op("Relu", "relu", &[&bn], vec![]);
        g.output(
            &r,
            DataType::Float,
            &[
                Dim::param("N"),
                Dim::Fixed(2),
                Dim::param("H"),
                Dim::param("W"),
            ],
        );
        ModelBuilder::new(g.build()).opset(opset).build().unwrap()
    }

    #[test]
    fn batch_norms_are_listed_with_their_parameters() {
        let norms = conv_bn(17).batch_norms().unwrap();
        assert_eq!(norms.len(), 1);
        let b = &norms[0];
        assert_eq!(
            (
                b.name.as_str(),
                b.mean.as_str(),
                b.var.as_str(),
                b.channels,
                b.epsilon
            ),
            ("bn", "m", "v", 2, 1e-3)
        );
    }

    #[test]
    fn reduce_mean_axes_follow_the_opset() {
        for (opset, inputs) in [(17, 1), (18, 2)] {
            let (m, norms) = conv_bn(opset).with_batch_statistics().unwrap();
            let reduces: Vec<_> = m
                .graph()
                .node
                .iter()
                .filter(|n| n.op_type == "ReduceMean")
                .collect();
            assert_eq!(reduces.len(), 2, "opset {opset}");
            assert!(
                reduces.iter().all(|n| n.input.len() == inputs),
                "opset {opset}"
            );
            let outs = m.output_names();
            assert!(outs.contains(&norms[0].batch_mean()) && outs.contains(&norms[0].batch_var()));
            // The normalised value keeps its name, so the nodes after it are unchanged.
            assert!(
                m.graph()
                    .node
                    .iter()
                    .any(|n| n.op_type == "Relu" && n.input[0] == norms[0].output)
            );
            assert!(
                !m.graph()
                    .node
                    .iter()
                    .any(|n| n.op_type == "BatchNormalization")
            );
        }
    }

    #[test]
    fn running_statistics_are_replaced_and_weights_kept() {
        let m = conv_bn(17);
        let adapted = m
            .with_running_statistics(&[RunningStatistics {
                node: "bn".into(),
                mean: vec![3.0, 4.0],
                var: vec![0.5, 0.25],
            }])
            .unwrap();
        let values =
            |m: &OnnxModel, n: &str| tensor_values_f32(m.initializer(n).unwrap()).unwrap().1;
        assert_eq!(values(&adapted, "m"), [3.0, 4.0]);
        assert_eq!(values(&adapted, "v"), [0.5, 0.25]);
        for w in ["w", "s", "b"] {
            assert_eq!(values(&adapted, w), values(&m, w), "{w}");
        }
        let err = m
            .with_running_statistics(&[RunningStatistics {
                node: "bn".into(),
                mean: vec![0.0],
                var: vec![1.0],
            }])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`m`"), "{err}");
    }
}
