//! Named tensors in safetensors files: parameters (`weights.safetensors`) and optimiser
//! slots (`optimizer.safetensors`). Files are written atomically and hold tensors in name
//! order with no free-form metadata, so equal parameters give equal bytes.

use std::{collections::BTreeMap, path::Path};

use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use crate::{
    Error, Result,
    module::{Module, Tensor},
};

fn ck(path: &Path, reason: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Serialises named f32 tensors.
pub fn tensors_to_bytes(tensors: &BTreeMap<String, Tensor>) -> Vec<u8> {
    let raw: Vec<(&String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, t)| {
            let bytes: Vec<u8> = t.iter().flat_map(|v| v.to_le_bytes()).collect();
            (n, t.shape().to_vec(), bytes)
        })
        .collect();
    let views: Vec<(&str, TensorView<'_>)> = raw
        .iter()
        .map(|(n, s, b)| {
            (
                n.as_str(),
                TensorView::new(Dtype::F32, s.clone(), b).expect("size matches shape"),
            )
        })
        .collect();
    safetensors::serialize(views, None).expect("serialising in-memory f32 tensors")
}

/// Writes named f32 tensors to `path` atomically.
pub fn save_tensors(path: &Path, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
    tl_core::io::atomic_write(path, &tensors_to_bytes(tensors))?;
    Ok(())
}

/// Reads every f32 tensor of a safetensors file.
pub fn load_tensors(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let bytes = std::fs::read(path).map_err(|e| tl_core::Error::io("read", path, e))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| ck(path, e.to_string()))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(ck(
                path,
                format!("tensor `{name}` is {:?}, not F32", view.dtype()),
            ));
        }
        let vals: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let t = Tensor::from_shape_vec(view.shape().to_vec(), vals)
            .map_err(|e| ck(path, e.to_string()))?;
        out.insert(name, t);
    }
    Ok(out)
}

/// Every parameter of `module` (buffers included) by name.
pub fn named_params(module: &dyn Module) -> BTreeMap<String, Tensor> {
    let mut out = BTreeMap::new();
    module.visit("", &mut |n, p| {
        out.insert(n.to_string(), p.value.clone());
    });
    out
}

/// Writes `module`'s parameters to `path` (`weights.safetensors`).
pub fn save_params(module: &dyn Module, path: &Path) -> Result<()> {
    save_tensors(path, &named_params(module))
}

/// Sets `module`'s parameters from `tensors`, which must hold exactly its names and shapes.
pub fn set_params(
    module: &mut dyn Module,
    tensors: &BTreeMap<String, Tensor>,
    origin: &Path,
) -> Result<()> {
    let mut expected = Vec::new();
    module.visit("", &mut |n, p| {
        expected.push((n.to_string(), p.value.shape().to_vec()))
    });
    for (name, shape) in &expected {
        match tensors.get(name) {
            None => {
                return Err(ck(
                    origin,
                    format!(
                        "no tensor `{name}` (this network has {} parameters)",
                        expected.len()
                    ),
                ));
            }
            Some(t) if t.shape() != shape.as_slice() => {
                return Err(ck(
                    origin,
                    format!(
                        "tensor `{name}` has shape {:?}, the network needs {shape:?}",
                        t.shape()
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    if let Some(extra) = tensors
        .keys()
        .find(|k| !expected.iter().any(|(n, _)| n == *k))
    {
        return Err(ck(
            origin,
            format!("unexpected tensor `{extra}`: the checkpoint is from another network"),
        ));
    }
    module.visit_mut("", &mut |n, p| p.value.assign(&tensors[n]));
    Ok(())
}

/// Loads `path` into `module` (see [`set_params`]).
pub fn load_params(module: &mut dyn Module, path: &Path) -> Result<()> {
    let tensors = load_tensors(path)?;
    set_params(module, &tensors, path)
}
