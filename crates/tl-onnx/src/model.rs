//! Reading, checking, inspecting, tapping and writing ONNX models.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::Path,
};

use prost::Message;
use serde::Serialize;

use tl_core::metadata;

use crate::{
    Error, Result,
    proto::{
        DataType, ModelProto, StringStringEntryProto, TypeProto, ValueInfoProto,
        tensor_shape_proto::dimension, type_proto,
    },
};

/// An ONNX model held as its protobuf message.
#[derive(Debug, Clone, PartialEq)]
pub struct OnnxModel {
    proto: ModelProto,
}

/// Drops the seal of a model about to become another one.
fn unseal(proto: &mut ModelProto) {
    proto
        .metadata_props
        .retain(|e| e.key != metadata::SELF_SHA256);
}

/// What kind of value a graph value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueKind {
    /// A graph input fed at run time.
    Input,
    /// Produced by a node: can be tapped as an output.
    Node,
}

/// One value of a graph, as `tl models inspect` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValueInfo {
    pub name: String,
    pub kind: ValueKind,
    /// The op type that produces it (`"Conv"`), or `None` for graph inputs.
    pub op: Option<String>,
    /// The producing node's name.
    pub node: Option<String>,
    /// Element type (`"float"`), where known.
    pub dtype: Option<&'static str>,
    /// Dimensions where known: a number, or a symbolic name such as `"N"`; `None` where unknown.
    pub shape: Option<Vec<String>>,
    /// Whether it is already a graph output.
    pub is_output: bool,
}

impl OnnxModel {
    /// Wraps a protobuf message after checking it (see [`OnnxModel::check`]). A model
    /// built from a message is a new model: any seal it carried is dropped
    /// ([`OnnxModel::seal`] adds one).
    pub fn from_proto(mut proto: ModelProto) -> Result<Self> {
        unseal(&mut proto);
        let model = Self { proto };
        model.check(Path::new("<memory>"))?;
        Ok(model)
    }

    /// Decodes and checks a model from bytes; `origin` names the source in errors. A
    /// sealed model (one `tl` exported) must still have the sha256 its seal records.
    pub fn from_bytes(bytes: &[u8], origin: &Path) -> Result<Self> {
        let proto = ModelProto::decode(bytes).map_err(|source| Error::Decode {
            path: origin.to_path_buf(),
            source,
        })?;
        let model = Self { proto };
        model.check(origin)?;
        model.verify_seal(origin)?;
        Ok(model)
    }

    /// The sha256 of the model's encoding without its seal.
    pub fn content_sha256(&self) -> String {
        let mut proto = self.proto.clone();
        unseal(&mut proto);
        tl_core::hash::sha256_bytes(&proto.encode_to_vec())
    }

    /// Records the model's own sha256 in its metadata ([`metadata::SELF_SHA256`]), so that
    /// loading it detects any change to the file's bytes after it was written.
    pub fn seal(&mut self) {
        let sha = self.content_sha256();
        self.set_metadata(metadata::SELF_SHA256, &sha);
    }

    /// Checks a sealed model against the sha256 its seal records; an unsealed one passes.
    pub fn verify_seal(&self, origin: &Path) -> Result<()> {
        let Some(recorded) = self.metadata().remove(metadata::SELF_SHA256) else {
            return Ok(());
        };
        let found = self.content_sha256();
        if found != recorded {
            return Err(Error::Changed {
                path: origin.to_path_buf(),
                found,
                recorded,
            });
        }
        Ok(())
    }

    /// Reads and checks an ONNX file.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).map_err(|e| tl_core::Error::io("cannot read model", path, e))?;
        Self::from_bytes(&bytes, path)
    }

    /// The serialised protobuf. The same model always gives the same bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.proto.encode_to_vec()
    }

    /// Writes the model atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        tl_core::io::atomic_write(path, &self.to_bytes())?;
        Ok(())
    }

    /// The protobuf message.
    pub fn proto(&self) -> &ModelProto {
        &self.proto
    }

    /// Consumes the model, returning the protobuf message.
    pub fn into_proto(self) -> ModelProto {
        self.proto
    }

    /// Checks what a decoder cannot: a graph is present, has outputs, and every
    /// value a node or output uses is produced by an input, an initializer or a
    /// node. A file truncated on a field boundary decodes without error but fails here.
    pub fn check(&self, origin: &Path) -> Result<()> {
        let bad = |reason: String| Error::Malformed {
            path: origin.to_path_buf(),
            reason,
        };
        let graph = self
            .proto
            .graph
            .as_ref()
            .ok_or_else(|| bad("it has no graph".into()))?;
        if graph.node.is_empty() {
            return Err(bad("its graph has no nodes".into()));
        }
        if graph.output.is_empty() {
            return Err(bad("its graph has no outputs".into()));
        }
        let mut known: HashSet<&str> = graph.input.iter().map(|v| v.name.as_str()).collect();
        known.extend(graph.initializer.iter().map(|t| t.name.as_str()));
        known.extend(
            graph
                .sparse_initializer
                .iter()
                .filter_map(|t| t.values.as_ref())
                .map(|t| t.name.as_str()),
        );
        known.insert("");
        // ONNX requires nodes in topological order, so one pass suffices.
        for node in &graph.node {
            for input in &node.input {
                if !known.contains(input.as_str()) {
                    return Err(bad(format!(
                        "node `{}` ({}) uses `{input}`, which nothing before it produces (file truncated or nodes out of order?)",
                        node.name, node.op_type
                    )));
                }
            }
            known.extend(node.output.iter().map(String::as_str));
        }
        for out in &graph.output {
            if !known.contains(out.name.as_str()) {
                return Err(bad(format!(
                    "graph output `{}` is produced by no node",
                    out.name
                )));
            }
        }
        Ok(())
    }

    /// Names of the graph inputs that are fed at run time (initializers excluded).
    pub fn input_names(&self) -> Vec<String> {
        let graph = self.graph();
        let inits: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
        graph
            .input
            .iter()
            .filter(|v| !inits.contains(v.name.as_str()))
            .map(|v| v.name.clone())
            .collect()
    }

    /// Names of the graph outputs, in order.
    pub fn output_names(&self) -> Vec<String> {
        self.graph().output.iter().map(|v| v.name.clone()).collect()
    }

    pub(crate) fn graph(&self) -> &crate::proto::GraphProto {
        self.proto.graph.as_ref().expect("checked on construction")
    }

    /// The opset version of the default ONNX domain.
    pub fn opset(&self) -> Option<i64> {
        self.proto
            .opset_import
            .iter()
            .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
            .map(|o| o.version)
    }

    /// Number of nodes in the main graph.
    pub fn node_count(&self) -> usize {
        self.graph().node.len()
    }

    /// Every value of the graph: run-time inputs and every node output, in graph order,
    /// with the producing op and the shape where the file records it.
    pub fn values(&self) -> Vec<ValueInfo> {
        let graph = self.graph();
        let mut types: HashMap<&str, &ValueInfoProto> = HashMap::new();
        for v in graph
            .input
            .iter()
            .chain(&graph.value_info)
            .chain(&graph.output)
        {
            types.insert(v.name.as_str(), v);
        }
        let outputs: HashSet<&str> = graph.output.iter().map(|v| v.name.as_str()).collect();
        let describe = |name: &str| -> (Option<&'static str>, Option<Vec<String>>) {
            types
                .get(name)
                .and_then(|v| v.r#type.as_ref())
                .map(type_summary)
                .unwrap_or((None, None))
        };
        let mut out = Vec::new();
        for name in self.input_names() {
            let (dtype, shape) = describe(&name);
            out.push(ValueInfo {
                is_output: outputs.contains(name.as_str()),
                name,
                kind: ValueKind::Input,
                op: None,
                node: None,
                dtype,
                shape,
            });
        }
        for node in &graph.node {
            for name in node.output.iter().filter(|n| !n.is_empty()) {
                let (dtype, shape) = describe(name);
                out.push(ValueInfo {
                    name: name.clone(),
                    kind: ValueKind::Node,
                    op: Some(node.op_type.clone()),
                    node: Some(node.name.clone()),
                    dtype,
                    shape,
                    is_output: outputs.contains(name.as_str()),
                });
            }
        }
        out
    }

    /// A copy of the model with the named values added as graph outputs (after the
    /// existing ones, in the order given; values that are already outputs are kept once).
    /// Any value a node produces can be tapped. An unknown name is an error that
    /// suggests the closest names.
    pub fn with_outputs(&self, names: &[&str]) -> Result<Self> {
        let mut proto = self.proto.clone();
        let graph = proto.graph.as_mut().expect("checked on construction");
        let produced: HashSet<&str> = graph
            .node
            .iter()
            .flat_map(|n| n.output.iter().map(String::as_str))
            .chain(graph.input.iter().map(|v| v.name.as_str()))
            .collect();
        let mut typed: HashMap<String, ValueInfoProto> = HashMap::new();
        for v in graph.value_info.iter() {
            typed.insert(v.name.clone(), v.clone());
        }
        let mut present: HashSet<String> = graph.output.iter().map(|v| v.name.clone()).collect();
        let mut extra = Vec::new();
        for &name in names {
            if !produced.contains(name) {
                let candidates: Vec<&str> = produced.iter().copied().collect();
                return Err(Error::UnknownValue {
                    name: name.to_string(),
                    hint: suggest(name, &candidates),
                });
            }
            if present.insert(name.to_string()) {
                // ONNX Runtime accepts an output without a type; keep the type where the file has it.
                extra.push(typed.remove(name).unwrap_or_else(|| ValueInfoProto {
                    name: name.to_string(),
                    ..Default::default()
                }));
            }
        }
        graph.output.extend(extra);
        unseal(&mut proto);
        Ok(Self { proto })
    }

    /// The model's `metadata_props` as a map.
    pub fn metadata(&self) -> BTreeMap<String, String> {
        self.proto
            .metadata_props
            .iter()
            .map(|e| (e.key.clone(), e.value.clone()))
            .collect()
    }

    /// Sets (or replaces) one `metadata_props` entry.
    pub fn set_metadata(&mut self, key: &str, value: &str) {
        match self.proto.metadata_props.iter_mut().find(|e| e.key == key) {
            Some(e) => e.value = value.to_string(),
            None => self.proto.metadata_props.push(StringStringEntryProto {
                key: key.to_string(),
                value: value.to_string(),
            }),
        }
    }

    /// The initializer called `name`.
    pub fn initializer(&self, name: &str) -> Option<&crate::proto::TensorProto> {
        self.graph().initializer.iter().find(|t| t.name == name)
    }

    /// Replaces the values of the float initializer `name` (same shape).
    pub fn set_initializer_f32(&mut self, name: &str, values: &[f32]) -> Result<()> {
        let graph = self.proto.graph.as_mut().expect("checked at load");
        let t = graph
            .initializer
            .iter_mut()
            .find(|t| t.name == name)
            .ok_or_else(|| Error::Build(format!("no initializer `{name}`")))?;
        let n: i64 = t.dims.iter().product();
        if n as usize != values.len() {
            return Err(Error::Build(format!(
                "initializer `{name}` has {n} values, got {}",
                values.len()
            )));
        }
        *t = crate::builder::tensor_f32(
            name,
            &t.dims.iter().map(|&d| d as usize).collect::<Vec<_>>(),
            values,
        );
        Ok(())
    }

    /// The graph, mutably (for rewriting exported models).
    pub fn graph_mut(&mut self) -> &mut crate::proto::GraphProto {
        self.proto.graph.as_mut().expect("checked at load")
    }

    /// Total number of scalar parameters held in initializers.
    pub fn parameter_count(&self) -> u64 {
        self.graph()
            .initializer
            .iter()
            .map(|t| t.dims.iter().map(|&d| d.max(0) as u64).product::<u64>())
            .sum()
    }
}

fn type_summary(t: &TypeProto) -> (Option<&'static str>, Option<Vec<String>>) {
    match &t.value {
        Some(type_proto::Value::TensorType(tt)) => {
            let shape = tt.shape.as_ref().map(|s| {
                s.dim
                    .iter()
                    .map(|d| match &d.value {
                        Some(dimension::Value::DimValue(v)) => v.to_string(),
                        Some(dimension::Value::DimParam(p)) => p.clone(),
                        None => "?".to_string(),
                    })
                    .collect()
            });
            (Some(DataType::name_of(tt.elem_type)), shape)
        }
        _ => (None, None),
    }
}

/// " (did you mean `a`, `b`?)" for the names closest to `name`, or "".
pub(crate) fn suggest(name: &str, candidates: &[&str]) -> String {
    let mut scored: Vec<(usize, &str)> = candidates
        .iter()
        .map(|c| (edit_distance(name, c), *c))
        .collect();
    scored.sort();
    let close: Vec<String> = scored
        .iter()
        .take(3)
        .filter(|(d, c)| *d <= name.len().max(c.len()) / 2 + 1)
        .map(|(_, c)| format!("`{c}`"))
        .collect();
    if close.is_empty() {
        " (run `tl models inspect` to list every value)".to_string()
    } else {
        format!(
            " (did you mean {}? `tl models inspect` lists every value)",
            close.join(", ")
        )
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The shape and values of a float tensor (from `raw_data` or `float_data`).
pub fn tensor_values_f32(t: &crate::proto::TensorProto) -> Result<(Vec<usize>, Vec<f32>)> {
    let shape: Vec<usize> = t.dims.iter().map(|&d| d.max(0) as usize).collect();
    if t.data_type != crate::proto::DataType::Float as i32 {
        return Err(Error::Build(format!("tensor `{}` is not float32", t.name)));
    }
    if !t.external_data.is_empty() {
        return Err(Error::Build(format!(
            "tensor `{}` keeps its data in an external file",
            t.name
        )));
    }
    let values: Vec<f32> = if t.raw_data.is_empty() {
        t.float_data.clone()
    } else {
        t.raw_data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    if values.len() != shape.iter().product::<usize>() {
        return Err(Error::Build(format!(
            "tensor `{}`: {} values for shape {shape:?}",
            t.name,
            values.len()
        )));
    }
    Ok((shape, values))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::{Dim, GraphBuilder, ModelBuilder};

    fn tiny() -> OnnxModel {
        let mut g = GraphBuilder::new("t");
        let x = g.input("x", DataType::Float, &[Dim::param("N"), Dim::Fixed(3)]);
        let w = g.initializer("w", &[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let h = g.op("MatMul", "h", &[&x, &w], vec![]);
        let y = g.op("Relu", "y", &[&h], vec![]);
        g.output(&y, DataType::Float, &[Dim::param("N"), Dim::Fixed(2)]);
        ModelBuilder::new(g.build()).opset(17).build().unwrap()
    }

    #[test]
    fn bytes_roundtrip_is_identical() {
        let m = tiny();
        let bytes = m.to_bytes();
        let back = OnnxModel::from_bytes(&bytes, Path::new("t.onnx")).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.to_bytes(), bytes);
    }

    #[test]
    fn values_list_inputs_and_node_outputs() {
        let v = tiny().values();
        let names: Vec<_> = v.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["x", "h", "y"]);
        assert_eq!(v[1].op.as_deref(), Some("MatMul"));
        assert_eq!(
            v[2].shape.as_deref(),
            Some(&["N".to_string(), "2".to_string()][..])
        );
        assert!(v[2].is_output && !v[1].is_output);
    }

    #[test]
    fn tapping_adds_outputs_once_and_rejects_unknown_names() {
        let m = tiny();
        let t = m.with_outputs(&["h", "y", "h"]).unwrap();
        assert_eq!(t.output_names(), ["y", "h"]);
        let err = m.with_outputs(&["hh"]).unwrap_err().to_string();
        assert!(err.contains("`hh`") && err.contains("`h`"), "{err}");
    }

    /// A sealed model loads as written; a copy with one bit flipped anywhere fails to
    /// decode, to check or its seal (naming the file), or has lost its seal (a flipped
    /// field tag; readers of exported models require one).
    #[test]
    fn a_sealed_model_detects_every_changed_bit() {
        let mut m = tiny();
        m.set_metadata("tl.tasks", "[]");
        m.seal();
        let bytes = m.to_bytes();
        assert_eq!(
            OnnxModel::from_bytes(&bytes, Path::new("m.onnx")).unwrap(),
            m
        );
        let mut changed = 0;
        for at in 0..bytes.len() {
            for bit in [0x01, 0x10, 0x80] {
                let mut b = bytes.clone();
                b[at] ^= bit;
                match OnnxModel::from_bytes(&b, Path::new("m.onnx")) {
                    Ok(back) => assert!(
                        !back.metadata().contains_key(metadata::SELF_SHA256),
                        "a flip of bit {bit:#x} at byte {at} loaded sealed"
                    ),
                    Err(Error::Changed { path, .. }) => {
                        assert_eq!(path, Path::new("m.onnx"));
                        changed += 1;
                    }
                    Err(_) => {}
                }
            }
        }
        // Most flips of weights and metadata values still decode: the seal catches them.
        assert!(
            changed > bytes.len() / 2,
            "{changed} of {}",
            bytes.len() * 3
        );
        let err = OnnxModel::from_bytes(
            &{
                let mut b = bytes.clone();
                let at = b
                    .windows(4)
                    .position(|w| w == 2.0f32.to_le_bytes())
                    .unwrap();
                b[at + 3] ^= 0x01;
                b
            },
            Path::new("m.onnx"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("`m.onnx` changed since tl wrote it"), "{err}");
    }

    /// Models derived from a sealed one (a new message, tapped outputs) are new models: no
    /// stale seal, so that saving and loading them works; an unsealed model loads unchecked.
    #[test]
    fn derived_models_carry_no_seal() {
        let mut m = tiny();
        m.seal();
        assert!(m.metadata().contains_key(metadata::SELF_SHA256));
        let tapped = m.with_outputs(&["h"]).unwrap();
        assert!(!tapped.metadata().contains_key(metadata::SELF_SHA256));
        OnnxModel::from_bytes(&tapped.to_bytes(), Path::new("t.onnx")).unwrap();
        let rebuilt = OnnxModel::from_proto(m.clone().into_proto()).unwrap();
        assert!(!rebuilt.metadata().contains_key(metadata::SELF_SHA256));
        let mut edited = tiny();
        edited.set_metadata("tl.tasks", "[1]");
        OnnxModel::from_bytes(&edited.to_bytes(), Path::new("e.onnx")).unwrap();
    }

    #[test]
    fn truncated_and_garbage_files_are_rejected_with_the_path() {
        let bytes = tiny().to_bytes();
        for cut in [bytes.len() / 3, bytes.len() / 2, bytes.len() - 1] {
            let err = OnnxModel::from_bytes(&bytes[..cut], Path::new("cut.onnx")).unwrap_err();
            assert!(err.to_string().contains("cut.onnx"), "{err}");
        }
        let err =
            OnnxModel::from_bytes(b"\x89PNG not a model at all", Path::new("x.png")).unwrap_err();
        assert!(err.to_string().contains("x.png"), "{err}");
        let err = OnnxModel::from_bytes(b"", Path::new("empty.onnx")).unwrap_err();
        assert!(err.to_string().contains("no graph"), "{err}");
    }

    #[test]
    fn metadata_set_and_replace() {
        let mut m = tiny();
        m.set_metadata("a", "1");
        m.set_metadata("a", "2");
        m.set_metadata("b", "3");
        let md = m.metadata();
        assert_eq!(md.len(), 2);
        assert_eq!(md["a"], "2");
    }
}
