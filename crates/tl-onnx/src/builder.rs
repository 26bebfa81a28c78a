//! Building ONNX graphs in code.
//!
//! Used by the converters, by tests that need small models of every family, and
//! later by export. Names are given by the caller, so graphs are deterministic and
//! every value has a readable name to tap.

use crate::{
    OnnxModel, Result,
    proto::{
        AttributeProto, AttributeType, DataType, GraphProto, ModelProto, NodeProto,
        OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto,
        ValueInfoProto,
        tensor_shape_proto::{Dimension, dimension},
        type_proto,
    },
};

/// The IR version written by [`ModelBuilder`] (ONNX 1.16+, understood by ONNX Runtime 1.31).
pub const IR_VERSION: i64 = 10;

/// One dimension of a declared shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    Fixed(i64),
    Param(String),
}

impl Dim {
    /// A symbolic dimension such as `"N"`.
    pub fn param(name: &str) -> Self {
        Dim::Param(name.to_string())
    }
}

/// A typed value declaration (`ValueInfoProto`).
pub fn value_info(name: &str, elem: DataType, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Fixed(v) => dimension::Value::DimValue(*v),
                Dim::Param(p) => dimension::Value::DimParam(p.clone()),
            }),
            denotation: String::new(),
        })
        .collect();
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            denotation: String::new(),
        }),
        ..Default::default()
    }
}

/// A float tensor stored as little-endian `raw_data`.
pub fn tensor_f32(name: &str, dims: &[usize], data: &[f32]) -> TensorProto {
    raw_tensor(
        name,
        dims,
        DataType::Float,
        data.len(),
        data.iter().flat_map(|v| v.to_le_bytes()).collect(),
    )
}

/// An int64 tensor stored as little-endian `raw_data`.
pub fn tensor_i64(name: &str, dims: &[usize], data: &[i64]) -> TensorProto {
    raw_tensor(
        name,
        dims,
        DataType::Int64,
        data.len(),
        data.iter().flat_map(|v| v.to_le_bytes()).collect(),
    )
}

fn raw_tensor(
    name: &str,
    dims: &[usize],
    ty: DataType,
    len: usize,
    raw_data: Vec<u8>,
) -> TensorProto {
    assert_eq!(
        dims.iter().product::<usize>(),
        len,
        "tensor `{name}`: dims {dims:?} do not match {len} values"
    );
    TensorProto {
        name: name.to_string(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: ty as i32,
        raw_data,
        ..Default::default()
    }
}

/// A node, for graphs edited outside a [`GraphBuilder`] (`tl export` extends a backbone).
pub fn node(
    op_type: &str,
    name: &str,
    inputs: &[&str],
    outputs: &[&str],
    attributes: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        name: name.to_string(),
        op_type: op_type.to_string(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute: attributes,
        ..Default::default()
    }
}

/// Attribute constructors.
pub mod attr {
    use super::*;

    fn base(name: &str, ty: AttributeType) -> AttributeProto {
        AttributeProto {
            name: name.to_string(),
            r#type: ty as i32,
            ..Default::default()
        }
    }
    /// An `INT` attribute.
    pub fn int(name: &str, v: i64) -> AttributeProto {
        AttributeProto {
            i: v,
            ..base(name, AttributeType::Int)
        }
    }
    /// An `INTS` attribute.
    pub fn ints(name: &str, v: &[i64]) -> AttributeProto {
        AttributeProto {
            ints: v.to_vec(),
            ..base(name, AttributeType::Ints)
        }
    }
    /// A `FLOAT` attribute.
    pub fn float(name: &str, v: f32) -> AttributeProto {
        AttributeProto {
            f: v,
            ..base(name, AttributeType::Float)
        }
    }
    /// A `FLOATS` attribute.
    pub fn floats(name: &str, v: &[f32]) -> AttributeProto {
        AttributeProto {
            floats: v.to_vec(),
            ..base(name, AttributeType::Floats)
        }
    }
    /// A `STRING` attribute.
    pub fn string(name: &str, v: &str) -> AttributeProto {
        AttributeProto {
            s: v.as_bytes().to_vec(),
            ..base(name, AttributeType::String)
        }
    }
    /// A `TENSOR` attribute.
    pub fn tensor(name: &str, t: TensorProto) -> AttributeProto {
        AttributeProto {
            t: Some(t),
            ..base(name, AttributeType::Tensor)
        }
    }
}

/// Builds a [`GraphProto`] node by node.
#[derive(Debug, Default)]
pub struct GraphBuilder {
    graph: GraphProto,
}

impl GraphBuilder {
    /// An empty graph called `name`.
    pub fn new(name: &str) -> Self {
        Self {
            graph: GraphProto {
                name: name.to_string(),
                ..Default::default()
            },
        }
    }

    /// Declares a run-time input; returns its name.
    pub fn input(&mut self, name: &str, elem: DataType, dims: &[Dim]) -> String {
        self.graph.input.push(value_info(name, elem, dims));
        name.to_string()
    }

    /// Declares the usual image input: float [N, channels, H, W] with dynamic batch and size.
    pub fn image_input(&mut self, name: &str, channels: i64) -> String {
        self.input(
            name,
            DataType::Float,
            &[
                Dim::param("N"),
                Dim::Fixed(channels),
                Dim::param("H"),
                Dim::param("W"),
            ],
        )
    }

    /// Declares an existing value as a graph output, with its type and shape.
    pub fn output(&mut self, name: &str, elem: DataType, dims: &[Dim]) {
        self.graph.output.push(value_info(name, elem, dims));
    }

    /// Records the type and shape of an intermediate value (shown by inspection).
    pub fn annotate(&mut self, name: &str, elem: DataType, dims: &[Dim]) {
        self.graph.value_info.push(value_info(name, elem, dims));
    }

    /// Adds a float initializer; returns its name.
    pub fn initializer(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        self.graph.initializer.push(tensor_f32(name, dims, data));
        name.to_string()
    }

    /// Adds an int64 initializer; returns its name.
    pub fn initializer_i64(&mut self, name: &str, dims: &[usize], data: &[i64]) -> String {
        self.graph.initializer.push(tensor_i64(name, dims, data));
        name.to_string()
    }

    /// Adds a node with one output named `out` (the node is named after it); returns `out`.
    pub fn op(
        &mut self,
        op_type: &str,
        out: &str,
        inputs: &[&str],
        attributes: Vec<AttributeProto>,
    ) -> String {
        self.node(op_type, out, inputs, &[out], attributes);
        out.to_string()
    }

    /// Adds a node with any number of outputs.
    pub fn node(
        &mut self,
        op_type: &str,
        name: &str,
        inputs: &[&str],
        outputs: &[&str],
        attributes: Vec<AttributeProto>,
    ) {
        self.graph
            .node
            .push(node(op_type, name, inputs, outputs, attributes));
    }

    /// The usual classifier end of a CNN: global average pooling of `x` [N, width, H, W],
    /// flattened to the output `features` [N, width], then `logits` [N, classes] through
    /// `Gemm` with the initializers `weight` [classes, width] and `bias` \[classes\].
    pub fn pooled_classifier(
        &mut self,
        x: &str,
        weight: &str,
        bias: &str,
        width: usize,
        classes: usize,
    ) {
        let pooled = self.op("GlobalAveragePool", "pool", &[x], vec![]);
        let features = self.op(
            "Flatten",
            "features",
            &[&pooled],
            vec![attr::int("axis", 1)],
        );
        self.op(
            "Gemm",
            "logits",
            &[&features, weight, bias],
            vec![attr::int("transB", 1)],
        );
        self.output(
            "logits",
            DataType::Float,
            &[Dim::param("N"), Dim::Fixed(classes as i64)],
        );
        self.output(
            "features",
            DataType::Float,
            &[Dim::param("N"), Dim::Fixed(width as i64)],
        );
    }

    /// Sets the graph's doc string.
    pub fn doc(&mut self, doc: &str) {
        self.graph.doc_string = doc.to_string();
    }

    /// The finished graph.
    pub fn build(self) -> GraphProto {
        self.graph
    }
}

/// Wraps a graph into a model with opset, producer and metadata.
#[derive(Debug)]
#[must_use]
pub struct ModelBuilder {
    graph: GraphProto,
    opset: i64,
    producer: String,
    metadata: Vec<(String, String)>,
    doc: String,
}

impl ModelBuilder {
    /// A model around `graph`, opset 17, produced by `tl`.
    pub fn new(graph: GraphProto) -> Self {
        Self {
            graph,
            opset: 17,
            producer: "tl".to_string(),
            metadata: Vec::new(),
            doc: String::new(),
        }
    }
    /// The default-domain opset version.
    pub fn opset(mut self, version: i64) -> Self {
        self.opset = version;
        self
    }
    /// The producer name.
    pub fn producer(mut self, name: &str) -> Self {
        self.producer = name.to_string();
        self
    }
    /// Adds a `metadata_props` entry.
    pub fn metadata(mut self, key: &str, value: &str) -> Self {
        self.metadata.push((key.to_string(), value.to_string()));
        self
    }
    /// The model's doc string.
    pub fn doc(mut self, doc: &str) -> Self {
        self.doc = doc.to_string();
        self
    }
    /// The checked model. The producer version is deliberately not the crate
    /// version, so converted files stay byte-identical across `tl` releases.
    pub fn build(self) -> Result<OnnxModel> {
        OnnxModel::from_proto(ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: self.opset,
            }],
            producer_name: self.producer,
            doc_string: self.doc,
            graph: Some(self.graph),
            metadata_props: self
                .metadata
                .into_iter()
                .map(|(key, value)| StringStringEntryProto { key, value })
                .collect(),
            ..Default::default()
        })
    }
}
