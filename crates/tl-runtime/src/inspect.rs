//! Inspecting a model by running it: the concrete shape of every value of the graph,
//! measured by one run on dummy inputs with all of them tapped.

use std::collections::HashMap;

use ndarray::{ArrayD, IxDyn};
use tl_core::{InputContract, Layout};
use tl_onnx::OnnxModel;

use crate::{Input, OptLevel, Result, Runtime, Session, SessionOptions, TensorInfo};

/// A dummy batch of one for every model input: images at the contract size, other
/// dynamic dimensions 8 (sequence length) after a batch of 1; int64 inputs are ones.
fn dummy_inputs(session: &Session, contract: Option<&InputContract>) -> Vec<(String, DummyInput)> {
    session
        .inputs()
        .iter()
        .map(|info| {
            let image = contract
                .and_then(InputContract::as_image)
                .filter(|c| c.input == info.name);
            let dims: Vec<usize> = match image {
                Some(c) => {
                    let (s, ch) = (c.size as usize, c.colour.channels());
                    match c.layout {
                        Layout::Nchw => vec![1, ch, s, s],
                        Layout::Nhwc => vec![1, s, s, ch],
                    }
                }
                None => info
                    .shape
                    .iter()
                    .enumerate()
                    .map(|(i, d)| d.map_or(if i == 0 { 1 } else { 8 }, |v| v as usize))
                    .collect(),
            };
            let value = if info.dtype.contains("64") && info.dtype.contains('i') {
                DummyInput::I64(ArrayD::from_elem(IxDyn(&dims), 1))
            } else {
                DummyInput::F32(ArrayD::zeros(IxDyn(&dims)))
            };
            (info.name.clone(), value)
        })
        .collect()
}

/// A dummy input tensor.
enum DummyInput {
    F32(ArrayD<f32>),
    I64(ArrayD<i64>),
}

/// Concrete shapes of every value, measured by one run with all of them tapped.
pub fn measured_shapes(
    rt: &Runtime,
    model: &OnnxModel,
    contract: Option<&InputContract>,
) -> Result<HashMap<String, TensorInfo>> {
    let values = model.values();
    let names: Vec<&str> = values
        .iter()
        .filter(|v| v.op.is_some())
        .map(|v| v.name.as_str())
        .collect();
    let tapped = model.with_outputs(&names)?;
    // No graph rewrites: every value must survive as computed.
    let mut session = Session::from_model(
        rt,
        &tapped,
        "inspect",
        &SessionOptions::default().opt_level(OptLevel::Disable),
    )?;
    let dummies = dummy_inputs(&session, contract);
    let inputs: Vec<(&str, Input<'_>)> = dummies
        .iter()
        .map(|(n, v)| {
            (
                n.as_str(),
                match v {
                    DummyInput::F32(a) => Input::F32(a.view()),
                    DummyInput::I64(a) => Input::I64(a.view()),
                },
            )
        })
        .collect();
    Ok(session
        .run_shapes(&inputs)?
        .into_iter()
        .map(|t| (t.name.clone(), t))
        .collect())
}
