//! Half precision: a float32 model rewritten to compute in float16, with float32 inputs and
//! outputs (a `Cast` after each float input and before each float output), so callers feed
//! and read the same tensors as before.

use std::collections::HashMap;

use crate::{
    Error, OnnxModel, Result,
    proto::{AttributeProto, DataType, NodeProto, TensorProto},
    tensor_values_f32,
};

/// Ops of quantized models: their float inputs must stay float32, so such a model has no
/// half-precision form.
const QUANTIZED: [&str; 8] = [
    "DynamicQuantizeLinear",
    "QuantizeLinear",
    "DequantizeLinear",
    "MatMulInteger",
    "ConvInteger",
    "QLinearConv",
    "QLinearMatMul",
    "DynamicQuantizeMatMul",
];

/// f32 → f16 bits, rounding to nearest even (IEEE 754), as numpy's `astype(float16)`.
pub fn f16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let man = b & 0x7f_ffff;
    if exp == 0xff {
        // Inf or NaN (NaN keeps a payload bit).
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00; // overflow to infinity
    }
    if e <= 0 {
        // Subnormal half (or zero): shift the full mantissa into place, round to nearest even.
        if e < -10 {
            return sign;
        }
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let rest = m & ((1u32 << shift) - 1);
        let mut h = m >> shift;
        if rest > half || (rest == half && h & 1 == 1) {
            h += 1;
        }
        return sign | h as u16;
    }
    let mut h = ((e as u32) << 10) | (man >> 13);
    let rest = man & 0x1fff;
    if rest > 0x1000 || (rest == 0x1000 && h & 1 == 1) {
        h += 1; // may carry into the exponent, up to infinity: still correct
    }
    sign | h as u16
}

/// f16 bits → f32 (exact).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h as u32) & 0x8000) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: normalise.
            let shift = m.leading_zeros() - 21;
            sign | ((127 - 15 + 1 - shift) << 23) | ((m << shift) & 0x3ff) << 13
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

fn to_half(t: &TensorProto) -> Result<TensorProto> {
    let (_, values) = tensor_values_f32(t)?;
    Ok(TensorProto {
        data_type: DataType::Float16 as i32,
        float_data: Vec::new(),
        raw_data: values
            .iter()
            .flat_map(|&v| f16_bits(v).to_le_bytes())
            .collect(),
        ..t.clone()
    })
}

fn cast(name: &str, input: &str, output: &str, to: DataType) -> NodeProto {
    NodeProto {
        name: name.into(),
        op_type: "Cast".into(),
        input: vec![input.into()],
        output: vec![output.into()],
        attribute: vec![AttributeProto {
            name: "to".into(),
            r#type: crate::proto::AttributeType::Int as i32,
            i: to as i64,
            ..Default::default()
        }],
        ..Default::default()
    }
}

impl OnnxModel {
    /// This model computing in float16, with float32 inputs and outputs.
    ///
    /// Float initializers and `Constant` values become float16, `Cast`s to float become
    /// casts to float16, and intermediate type annotations are dropped (ONNX Runtime infers
    /// them). A quantized model (int8 ops) is an error naming its first quantized node.
    pub fn to_float16(&self) -> Result<OnnxModel> {
        let mut proto = self.proto().clone();
        let graph = proto.graph.as_mut().expect("checked on construction");
        if let Some(n) = graph
            .node
            .iter()
            .find(|n| QUANTIZED.contains(&n.op_type.as_str()))
        {
            return Err(Error::Build(format!(
                "no float16 form: node `{}` ({}) is quantized; float16 needs a float32 model",
                n.name, n.op_type
            )));
        }
        let float = DataType::Float as i32;
        for t in graph
            .initializer
            .iter_mut()
            .filter(|t| t.data_type == float)
        {
            *t = to_half(t)?;
        }
        for node in graph.node.iter_mut() {
            for a in node.attribute.iter_mut() {
                if let Some(t) = a.t.as_mut().filter(|t| t.data_type == float) {
                    *t = to_half(t)?;
                }
                if node.op_type == "Cast" && a.name == "to" && a.i == DataType::Float as i64 {
                    a.i = DataType::Float16 as i64;
                }
            }
        }
        graph.value_info.clear();
        let is_float = |v: &crate::proto::ValueInfoProto| {
            use crate::proto::type_proto::Value;
            match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
                Some(Value::TensorType(t)) => t.elem_type == float,
                // Untyped (tapped) outputs: the tensors `tl` reads are float.
                None => true,
                _ => false,
            }
        };
        // Inputs: `x` (float32) → Cast → `x.f16`, read by the nodes instead of `x`.
        let mut renamed: HashMap<String, String> = HashMap::new();
        let mut casts = Vec::new();
        for input in graph.input.iter().filter(|v| is_float(v)) {
            if graph.initializer.iter().any(|t| t.name == input.name) {
                continue;
            }
            let half = format!("{}.f16", input.name);
            casts.push(cast(
                &format!("{}.to_f16", input.name),
                &input.name,
                &half,
                DataType::Float16,
            ));
            renamed.insert(input.name.clone(), half);
        }
        // Outputs: the producer writes `y.f16`; a Cast gives `y` in float32.
        let mut out_casts = Vec::new();
        let mut produced_as: HashMap<String, String> = HashMap::new();
        for output in graph.output.iter_mut().filter(|v| is_float(v)) {
            let half = format!("{}.f16", output.name);
            out_casts.push(cast(
                &format!("{}.to_f32", output.name),
                &half,
                &output.name,
                DataType::Float,
            ));
            produced_as.insert(output.name.clone(), half);
        }
        for node in graph.node.iter_mut() {
            for i in node.input.iter_mut() {
                if let Some(r) = renamed.get(i).or_else(|| produced_as.get(i)) {
                    *i = r.clone();
                }
            }
            for o in node.output.iter_mut() {
                if let Some(r) = produced_as.get(o) {
                    *o = r.clone();
                }
            }
        }
        // An output that is also a graph input (a pass-through) reads the input's cast.
        for c in out_casts.iter_mut() {
            let original = c.output[0].clone();
            if let Some(r) = renamed.get(&original) {
                c.input[0] = r.clone();
            }
        }
        casts.append(&mut graph.node);
        casts.extend(out_casts);
        graph.node = casts;
        OnnxModel::from_proto(proto)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_rounding_matches_ieee_round_to_nearest_even() {
        // (f32, f16 bits) pairs as numpy 2.4 `np.float32(x).astype(np.float16).view(np.uint16)` gives them.
        for (x, bits) in [
            (0.0f32, 0x0000u16),
            (-0.0, 0x8000),
            (1.0, 0x3c00),
            (-2.5, 0xc100),
            (65504.0, 0x7bff),
            (65520.0, 0x7c00), // half-way to the next binade rounds up to infinity
            (1e-8, 0x0000),
            (5.960_464_5e-8, 0x0001), // smallest subnormal
            (6.103_515_6e-5, 0x0400), // smallest normal
            (0.1, 0x2e66),
            (1.0 + 1.0 / 2048.0, 0x3c00), // a tie: to even
            (1.0 + 3.0 / 2048.0, 0x3c02), // a tie: to even, upwards
            (f32::INFINITY, 0x7c00),
        ] {
            assert_eq!(f16_bits(x), bits, "{x}");
        }
        assert!(f16_to_f32(f16_bits(f32::NAN)).is_nan());
        // Every half value converts to f32 and back to itself.
        for h in 0..=u16::MAX {
            let x = f16_to_f32(h);
            if !x.is_nan() {
                assert_eq!(f16_bits(x), h, "{h:#06x}");
            }
        }
    }

    #[test]
    fn the_half_model_has_half_weights_and_float_io() {
        let m = crate::fixtures::tiny("mobilenet", 1, 10).unwrap();
        let tapped = m.with_outputs(&["block1.dw"]).unwrap();
        let h = tapped.to_float16().unwrap();
        let g = h.proto().graph.as_ref().unwrap();
        let g32 = tapped.proto().graph.as_ref().unwrap();
        assert!(
            g.initializer
                .iter()
                .all(|t| t.data_type == DataType::Float16 as i32)
        );
        // Weights are the f32 values rounded to the nearest half.
        for (t16, t32) in g.initializer.iter().zip(&g32.initializer) {
            let (_, v32) = tensor_values_f32(t32).unwrap();
            let v16: Vec<f32> = t16
                .raw_data
                .chunks_exact(2)
                .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                .collect();
            for (a, b) in v32.iter().zip(&v16) {
                assert!((a - b).abs() <= a.abs() * 2f32.powi(-11) + 6e-8, "{a} {b}");
            }
        }
        assert_eq!(h.input_names(), tapped.input_names());
        assert_eq!(h.output_names(), tapped.output_names());
        let casts: Vec<&str> = g
            .node
            .iter()
            .filter(|n| n.op_type == "Cast")
            .map(|n| n.name.as_str())
            .collect();
        assert_eq!(casts.len(), 1 + tapped.output_names().len(), "{casts:?}");
        assert_eq!(g.node.len(), g32.node.len() + casts.len());
    }

    #[test]
    fn a_quantized_model_has_no_half_form() {
        use crate::builder::{Dim, GraphBuilder, ModelBuilder};
        let mut g = GraphBuilder::new("q");
        let x = g.input("x", DataType::Float, &[Dim::param("N"), Dim::Fixed(4)]);
        let q = g.op("DynamicQuantizeLinear", "quant", &[&x], vec![]);
        g.output(&q, DataType::Uint8, &[Dim::param("N"), Dim::Fixed(4)]);
        let m = ModelBuilder::new(g.build()).opset(17).build().unwrap();
        let err = m.to_float16().unwrap_err().to_string();
        assert!(
            err.contains("node `quant` (DynamicQuantizeLinear) is quantized"),
            "{err}"
        );
    }
}
