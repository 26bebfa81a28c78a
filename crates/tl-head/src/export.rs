//! Export: the backbone and the trained head(s) as one self-describing ONNX file.
//!
//! The backbone graph is kept up to the value the head reads; pooling as the extraction
//! did it; the trunk's layers (`Gemm` and activations, GELU as its `Erf` form); one
//! `Gemm` and `Softmax` per task. Layers imported for fine-tuning write their trained
//! values back into their own initializers. Outputs are `probabilities` (and `logits`)
//! for one task, `probabilities.<task>` for several. `metadata_props` carry the class
//! names, the input contract and the source model's sha256 (DESIGN.md).

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use tl_core::metadata;
use tl_nn::{Act, Tensor};
use tl_onnx::{
    OnnxModel,
    builder::{Dim, attr, node, tensor_f32, tensor_i64, value_info},
    proto::{DataType, NodeProto, StringStringEntryProto},
};

use crate::{
    Error, Result,
    import::ImportedLayer,
    net::{HeadSpec, TaskSpec},
};

/// How the head's input was pooled from the tapped value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportPool {
    /// Mean over every axis after the channel axis (nothing for `[N, D]` values).
    Mean,
    Max,
    /// Flattened to `[N, rest]`.
    None,
}

/// Sentence pooling of a text encoder's token output, built into the exported graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextPoolSpec {
    /// The token output `[N, T, D]`.
    pub token_output: String,
    /// The attention-mask input `[N, T]` (int64).
    pub attention_mask: String,
    /// Mask-weighted mean (true) or the first token (false).
    pub mean: bool,
    /// Scale to unit length.
    pub normalize: bool,
}

/// What to export.
#[derive(Debug)]
pub struct ExportSpec<'a> {
    /// For text encoders: pool the token output into sentence embeddings first (the head
    /// then reads them, and `input_value` and `pool` are not used).
    pub text: Option<TextPoolSpec>,
    /// The value the head reads: the tapped layer, or for fine-tuning the end of the imported chain.
    pub input_value: &'a str,
    pub pool: ExportPool,
    pub head: &'a HeadSpec,
    pub tasks: &'a [TaskSpec],
    /// Named parameters of the trained `HeadNet`.
    pub params: &'a BTreeMap<String, Tensor>,
    /// Layers imported for fine-tuning, written back into their initializers.
    pub imported: &'a [ImportedLayer],
    /// Extra `metadata_props` (input contract, source sha256, tokenizer, ...).
    pub metadata: BTreeMap<String, String>,
    /// `(scale, shift)`: the pooled features become `x · scale + shift`, per feature,
    /// before the head (a domain's standardisation, from `tl adapt`).
    pub input_affine: Option<(&'a [f32], &'a [f32])>,
    /// Added to the logits of the (single) task before its softmax, one per class (a
    /// label-shift correction: `ln(target prior / source prior)`).
    pub logit_offset: Option<&'a [f32]>,
}

fn param<'a>(params: &'a BTreeMap<String, Tensor>, name: &str) -> Result<&'a Tensor> {
    params
        .get(name)
        .ok_or_else(|| Error::export(format!("the trained weights have no `{name}`")))
}

/// The exported model.
pub fn export(backbone: &OnnxModel, spec: &ExportSpec<'_>) -> Result<OnnxModel> {
    let mut m = backbone.clone();
    let opset = m.opset().unwrap_or(13);
    // Fine-tuned layers: trained values into their own initializers.
    for layer in spec.imported {
        for (p, init) in &layer.params {
            let t = param(spec.params, &format!("trunk.backbone.{}.{p}", layer.node))?;
            let values = t.as_slice().expect("standard layout");
            if init.is_empty() {
                let name = format!("tl.{}.{p}", layer.node);
                let g = m.graph_mut();
                let n = g
                    .node
                    .iter_mut()
                    .find(|n| n.name == layer.node)
                    .ok_or_else(|| {
                        Error::export(format!("the backbone has no node `{}`", layer.node))
                    })?;
                n.input.push(name.clone());
                g.initializer.push(tensor_f32(&name, t.shape(), values));
            } else {
                m.set_initializer_f32(init, values)?;
            }
        }
    }
    let mut nodes: Vec<NodeProto> = Vec::new();
    let mut inits = Vec::new();
    let mut cur = spec.input_value.to_string();
    let mut keep_value = spec.input_value.to_string();
    if let Some(t) = &spec.text {
        if opset < 13 {
            return Err(Error::export(format!(
                "text pooling needs opset ≥ 13, the model has {opset}"
            )));
        }
        keep_value = t.token_output.clone();
        text_pool(t, &mut nodes, &mut inits);
    }
    // Pooling, for any rank ≥ 2: [N, C, ...] → [N, C, rest] → reduce over rest.
    let pool_input = if spec.text.is_some() {
        "tl.sentence".to_string()
    } else {
        cur.clone()
    };
    cur = pool_input;
    match if spec.text.is_some() {
        ExportPool::None
    } else {
        spec.pool
    } {
        ExportPool::Mean | ExportPool::Max => {
            inits.push(tensor_i64("tl.pool.shape", &[3], &[0, 0, -1]));
            nodes.push(node(
                "Reshape",
                "tl.pool.reshape",
                &[&cur, "tl.pool.shape"],
                &["tl.pool.flat"],
                vec![],
            ));
            let op = if spec.pool == ExportPool::Mean {
                "ReduceMean"
            } else {
                "ReduceMax"
            };
            if opset >= 18 {
                inits.push(tensor_i64("tl.pool.axes", &[1], &[2]));
                nodes.push(node(
                    op,
                    "tl.pool",
                    &["tl.pool.flat", "tl.pool.axes"],
                    &["tl.pooled"],
                    vec![attr::int("keepdims", 0)],
                ));
            } else {
                nodes.push(node(
                    op,
                    "tl.pool",
                    &["tl.pool.flat"],
                    &["tl.pooled"],
                    vec![attr::ints("axes", &[2]), attr::int("keepdims", 0)],
                ));
            }
        }
        ExportPool::None => nodes.push(node(
            "Flatten",
            "tl.pool",
            &[&cur],
            &["tl.pooled"],
            vec![attr::int("axis", 1)],
        )),
    }
    cur = "tl.pooled".into();
    if let Some((scale, shift)) = spec.input_affine {
        if scale.len() != shift.len() {
            return Err(Error::export(format!(
                "the input affine map has {} scales and {} shifts",
                scale.len(),
                shift.len()
            )));
        }
        let n = [scale.len()];
        inits.push(tensor_f32("tl.affine.scale", &n, scale));
        inits.push(tensor_f32("tl.affine.shift", &n, shift));
        nodes.push(node(
            "Mul",
            "tl.affine.mul",
            &[&cur, "tl.affine.scale"],
            &["tl.affine.scaled"],
            vec![],
        ));
        nodes.push(node(
            "Add",
            "tl.affine",
            &["tl.affine.scaled", "tl.affine.shift"],
            &["tl.affine"],
            vec![],
        ));
        cur = "tl.affine".into();
    }
    let gemm = |prefix: &str,
                x: &str,
                out: &str,
                nodes: &mut Vec<NodeProto>,
                inits: &mut Vec<_>|
     -> Result<String> {
        let w = param(spec.params, &format!("{prefix}.weight"))?;
        let b = param(spec.params, &format!("{prefix}.bias"))?;
        let (wn, bn) = (format!("tl.{prefix}.weight"), format!("tl.{prefix}.bias"));
        inits.push(tensor_f32(
            &wn,
            w.shape(),
            w.as_slice().expect("standard layout"),
        ));
        inits.push(tensor_f32(
            &bn,
            b.shape(),
            b.as_slice().expect("standard layout"),
        ));
        nodes.push(node(
            "Gemm",
            &format!("tl.{prefix}"),
            &[x, &wn, &bn],
            &[out],
            vec![attr::int("transB", 1)],
        ));
        Ok(out.to_string())
    };
    for i in 0..spec.head.hidden.len() {
        let lin = format!("trunk.{}", 3 * i);
        cur = gemm(&lin, &cur, &format!("tl.{lin}"), &mut nodes, &mut inits)?;
        let out = format!("tl.trunk.{}", 3 * i + 1);
        match spec.head.activation {
            Act::Relu => nodes.push(node("Relu", &out, &[&cur], &[&out], vec![])),
            Act::Relu6 => {
                inits.push(tensor_f32(&format!("{out}.min"), &[], &[0.0]));
                inits.push(tensor_f32(&format!("{out}.max"), &[], &[6.0]));
                nodes.push(node(
                    "Clip",
                    &out,
                    &[&cur, &format!("{out}.min"), &format!("{out}.max")],
                    &[&out],
                    vec![],
                ));
            }
            Act::Gelu => {
                // x · ½ · (1 + erf(x / √2))
                let c = |n: &str| format!("{out}.{n}");
                inits.push(tensor_f32(
                    &c("inv_sqrt2"),
                    &[],
                    &[std::f32::consts::FRAC_1_SQRT_2],
                ));
                inits.push(tensor_f32(&c("one"), &[], &[1.0]));
                inits.push(tensor_f32(&c("half"), &[], &[0.5]));
                nodes.push(node(
                    "Mul",
                    &c("scaled"),
                    &[&cur, &c("inv_sqrt2")],
                    &[&c("scaled")],
                    vec![],
                ));
                nodes.push(node(
                    "Erf",
                    &c("erf"),
                    &[&c("scaled")],
                    &[&c("erf")],
                    vec![],
                ));
                nodes.push(node(
                    "Add",
                    &c("plus1"),
                    &[&c("erf"), &c("one")],
                    &[&c("plus1")],
                    vec![],
                ));
                nodes.push(node(
                    "Mul",
                    &c("times_x"),
                    &[&c("plus1"), &cur],
                    &[&c("times_x")],
                    vec![],
                ));
                nodes.push(node(
                    "Mul",
                    &out,
                    &[&c("times_x"), &c("half")],
                    &[&out],
                    vec![],
                ));
            }
        }
        cur = out;
    }
    let single = spec.tasks.len() == 1;
    if let Some(offset) = spec.logit_offset {
        let classes = spec.tasks.first().map_or(0, |t| t.classes.len());
        if !single || offset.len() != classes {
            return Err(Error::export(format!(
                "a logit offset needs one task and one value per class ({} tasks, {} values, {classes} classes)",
                spec.tasks.len(),
                offset.len()
            )));
        }
    }
    let mut outputs = Vec::new();
    for task in spec.tasks {
        let probs = metadata::probabilities_output(&task.name, spec.tasks.len());
        let logits = if single {
            "logits".to_string()
        } else {
            format!("logits.{}", task.name)
        };
        match spec.logit_offset {
            None => {
                gemm(
                    &format!("heads.{}.0", task.name),
                    &cur,
                    &logits,
                    &mut nodes,
                    &mut inits,
                )?;
            }
            Some(offset) => {
                let raw = format!("tl.{logits}.raw");
                gemm(
                    &format!("heads.{}.0", task.name),
                    &cur,
                    &raw,
                    &mut nodes,
                    &mut inits,
                )?;
                inits.push(tensor_f32("tl.logit_offset", &[offset.len()], offset));
                nodes.push(node(
                    "Add",
                    "tl.logit_offset.add",
                    &[&raw, "tl.logit_offset"],
                    &[&logits],
                    vec![],
                ));
            }
        }
        nodes.push(node(
            "Softmax",
            &probs,
            &[&logits],
            &[&probs],
            vec![attr::int("axis", 1)],
        ));
        let dims = [Dim::param("N"), Dim::Fixed(task.classes.len() as i64)];
        outputs.push(value_info(&probs, DataType::Float, &dims));
        outputs.push(value_info(&logits, DataType::Float, &dims));
    }
    {
        let g = m.graph_mut();
        // Keep only what the head's input needs (the ImageNet classifier goes), then check
        // that no remaining backbone value shares a name with the head's.
        g.output = vec![value_info(&keep_value, DataType::Float, &[])];
        prune(g);
        let taken: HashSet<&str> = g
            .node
            .iter()
            .flat_map(|n| n.output.iter().map(String::as_str))
            .collect();
        if let Some(clash) = nodes
            .iter()
            .flat_map(|n| &n.output)
            .find(|o| taken.contains(o.as_str()))
        {
            return Err(Error::export(format!(
                "the backbone already has a value named `{clash}`"
            )));
        }
        g.node.extend(nodes);
        g.initializer.extend(inits);
        g.output = outputs;
    }
    let classes: BTreeMap<&str, &Vec<String>> = spec
        .tasks
        .iter()
        .map(|t| (t.name.as_str(), &t.classes))
        .collect();
    let mut meta = spec.metadata.clone();
    meta.insert(metadata::VERSION.into(), env!("CARGO_PKG_VERSION").into());
    meta.insert(
        metadata::CLASS_NAMES.into(),
        if single {
            serde_json::to_string(&spec.tasks[0].classes).expect("strings")
        } else {
            serde_json::to_string(&classes).expect("strings")
        },
    );
    meta.insert(
        metadata::TASKS.into(),
        serde_json::to_string(spec.tasks).expect("tasks"),
    );
    meta.insert(
        metadata::HEAD.into(),
        serde_json::to_string(spec.head).expect("head"),
    );
    let mut proto = m.into_proto();
    proto
        .metadata_props
        .retain(|e| !e.key.starts_with(metadata::PREFIX));
    proto.metadata_props.extend(
        meta.into_iter()
            .map(|(key, value)| StringStringEntryProto { key, value }),
    );
    proto.producer_name = "tl".into();
    let mut model = OnnxModel::from_proto(proto)?;
    model.seal();
    Ok(model)
}

/// Drops nodes, initializers and annotations that no output depends on.
fn prune(g: &mut tl_onnx::proto::GraphProto) {
    let mut needed: HashSet<String> = g.output.iter().map(|o| o.name.clone()).collect();
    let mut keep = vec![false; g.node.len()];
    for (i, n) in g.node.iter().enumerate().rev() {
        if n.output.iter().any(|o| needed.contains(o)) {
            keep[i] = true;
            needed.extend(n.input.iter().cloned());
        }
    }
    let mut k = keep.into_iter();
    g.node.retain(|_| k.next().unwrap_or(false));
    g.initializer.retain(|t| needed.contains(&t.name));
    g.value_info.retain(|v| needed.contains(&v.name));
}

/// Nodes from the token output and attention mask to `tl.sentence` `[N, D]`: the
/// mask-weighted mean (sum / max(count, 1)) or the first token, then optionally divided by
/// its Euclidean norm (rows of zeros stay zero), as `tl-features` computes them.
fn text_pool(
    t: &TextPoolSpec,
    nodes: &mut Vec<NodeProto>,
    inits: &mut Vec<tl_onnx::proto::TensorProto>,
) {
    inits.push(tensor_i64("tl.text.axis1", &[1], &[1]));
    inits.push(tensor_i64("tl.text.axis2", &[1], &[2]));
    inits.push(tensor_f32("tl.text.one", &[], &[1.0]));
    inits.push(tensor_f32("tl.text.tiny", &[], &[1e-30]));
    let pooled = if t.normalize {
        "tl.text.pooled"
    } else {
        "tl.sentence"
    };
    if t.mean {
        nodes.push(node(
            "Cast",
            "tl.text.mask",
            &[&t.attention_mask],
            &["tl.text.mask"],
            vec![attr::int("to", DataType::Float as i64)],
        ));
        nodes.push(node(
            "Unsqueeze",
            "tl.text.mask3",
            &["tl.text.mask", "tl.text.axis2"],
            &["tl.text.mask3"],
            vec![],
        ));
        nodes.push(node(
            "Mul",
            "tl.text.masked",
            &[&t.token_output, "tl.text.mask3"],
            &["tl.text.masked"],
            vec![],
        ));
        nodes.push(node(
            "ReduceSum",
            "tl.text.sum",
            &["tl.text.masked", "tl.text.axis1"],
            &["tl.text.sum"],
            vec![attr::int("keepdims", 0)],
        ));
        nodes.push(node(
            "ReduceSum",
            "tl.text.count",
            &["tl.text.mask3", "tl.text.axis1"],
            &["tl.text.count"],
            vec![attr::int("keepdims", 0)],
        ));
        nodes.push(node(
            "Max",
            "tl.text.count1",
            &["tl.text.count", "tl.text.one"],
            &["tl.text.count1"],
            vec![],
        ));
        nodes.push(node(
            "Div",
            pooled,
            &["tl.text.sum", "tl.text.count1"],
            &[pooled],
            vec![],
        ));
    } else {
        inits.push(tensor_i64("tl.text.first", &[], &[0]));
        nodes.push(node(
            "Gather",
            pooled,
            &[&t.token_output, "tl.text.first"],
            &[pooled],
            vec![attr::int("axis", 1)],
        ));
    }
    if t.normalize {
        nodes.push(node(
            "Mul",
            "tl.text.sq",
            &[pooled, pooled],
            &["tl.text.sq"],
            vec![],
        ));
        nodes.push(node(
            "ReduceSum",
            "tl.text.sumsq",
            &["tl.text.sq", "tl.text.axis1"],
            &["tl.text.sumsq"],
            vec![attr::int("keepdims", 1)],
        ));
        nodes.push(node(
            "Sqrt",
            "tl.text.norm",
            &["tl.text.sumsq"],
            &["tl.text.norm"],
            vec![],
        ));
        nodes.push(node(
            "Max",
            "tl.text.norm1",
            &["tl.text.norm", "tl.text.tiny"],
            &["tl.text.norm1"],
            vec![],
        ));
        nodes.push(node(
            "Div",
            "tl.sentence",
            &[pooled, "tl.text.norm1"],
            &["tl.sentence"],
            vec![],
        ));
    }
}
