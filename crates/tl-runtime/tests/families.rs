//! Graphs built by `tl-onnx` (tiny VGG, ResNet, Inception, MobileNet) load and run in
//! ONNX Runtime, and agree with a naive interpreter written here from the ONNX op
//! definitions (direct loops, f64 accumulation): an independent reference.

mod common;

use std::collections::HashMap;

use common::*;
use ndarray::{Array4, ArrayD, IxDyn};
use tl_onnx::{OnnxModel, fixtures, proto::AttributeProto};
use tl_runtime::{Input, Session, SessionOptions};

/// Allowed difference between ONNX Runtime (f32, reordered sums) and the naive reference.
const TOL: f32 = 1e-4;

fn ints(attrs: &[AttributeProto], name: &str) -> Option<Vec<i64>> {
    attrs
        .iter()
        .find(|a| a.name == name)
        .map(|a| a.ints.clone())
}
fn int(attrs: &[AttributeProto], name: &str, default: i64) -> i64 {
    attrs
        .iter()
        .find(|a| a.name == name)
        .map_or(default, |a| a.i)
}

fn conv(
    x: &Array4<f32>,
    w: &ArrayD<f32>,
    b: &ArrayD<f32>,
    stride: usize,
    pad: usize,
    groups: usize,
) -> Array4<f32> {
    let (n, cin, h, wd) = x.dim();
    let (cout, cpg, k) = (w.shape()[0], w.shape()[1], w.shape()[2]);
    let (oh, ow) = (
        (h + 2 * pad - k) / stride + 1,
        (wd + 2 * pad - k) / stride + 1,
    );
    let opg = cout / groups;
    assert_eq!(cpg * groups, cin);
    Array4::from_shape_fn((n, cout, oh, ow), |(b_, o, y, xx)| {
        let g = o / opg;
        let mut acc = b[[o]] as f64;
        for c in 0..cpg {
            for i in 0..k {
                for j in 0..k {
                    let (iy, ix) = (
                        (y * stride + i) as isize - pad as isize,
                        (xx * stride + j) as isize - pad as isize,
                    );
                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                        acc += x[[b_, g * cpg + c, iy as usize, ix as usize]] as f64
                            * w[[o, c, i, j]] as f64;
                    }
                }
            }
        }
        acc as f32
    })
}

fn maxpool(x: &Array4<f32>, k: usize, stride: usize, pad: usize) -> Array4<f32> {
    let (n, c, h, w) = x.dim();
    let (oh, ow) = (
        (h + 2 * pad - k) / stride + 1,
        (w + 2 * pad - k) / stride + 1,
    );
    Array4::from_shape_fn((n, c, oh, ow), |(b, ch, y, xx)| {
        let mut m = f32::NEG_INFINITY;
        for i in 0..k {
            for j in 0..k {
                let (iy, ix) = (
                    (y * stride + i) as isize - pad as isize,
                    (xx * stride + j) as isize - pad as isize,
                );
                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                    m = m.max(x[[b, ch, iy as usize, ix as usize]]);
                }
            }
        }
        m
    })
}

/// Runs the graph node by node with the naive kernels above.
fn naive_forward(model: &OnnxModel, input: &ArrayD<f32>) -> HashMap<String, ArrayD<f32>> {
    let graph = model.proto().graph.as_ref().unwrap();
    let mut env: HashMap<String, ArrayD<f32>> = HashMap::new();
    for t in &graph.initializer {
        let data: Vec<f32> = t
            .raw_data
            .chunks(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let dims: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
        env.insert(
            t.name.clone(),
            ArrayD::from_shape_vec(IxDyn(&dims), data).unwrap(),
        );
    }
    env.insert("input".into(), input.clone());
    for node in &graph.node {
        let arg = |i: usize| env[&node.input[i]].clone();
        let four = |a: ArrayD<f32>| a.into_dimensionality::<ndarray::Ix4>().unwrap();
        let a = &node.attribute;
        let out: ArrayD<f32> = match node.op_type.as_str() {
            "Conv" => {
                let s = ints(a, "strides").unwrap()[0] as usize;
                let p = ints(a, "pads").unwrap()[0] as usize;
                conv(
                    &four(arg(0)),
                    &arg(1),
                    &arg(2),
                    s,
                    p,
                    int(a, "group", 1) as usize,
                )
                .into_dyn()
            }
            "Relu" => arg(0).mapv(|v| v.max(0.0)),
            "Add" => &arg(0) + &arg(1),
            "MaxPool" => {
                let k = ints(a, "kernel_shape").unwrap()[0] as usize;
                let s = ints(a, "strides").unwrap()[0] as usize;
                let p = ints(a, "pads").map_or(0, |p| p[0] as usize);
                maxpool(&four(arg(0)), k, s, p).into_dyn()
            }
            "Concat" => {
                let parts: Vec<ArrayD<f32>> = (0..node.input.len()).map(arg).collect();
                let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
                ndarray::concatenate(ndarray::Axis(int(a, "axis", 0) as usize), &views).unwrap()
            }
            "GlobalAveragePool" => {
                let x = four(arg(0));
                let (n, c, h, w) = x.dim();
                Array4::from_shape_fn((n, c, 1, 1), |(b, ch, _, _)| {
                    x.slice(ndarray::s![b, ch, .., ..])
                        .iter()
                        .map(|&v| v as f64)
                        .sum::<f64>() as f32
                        / (h * w) as f32
                })
                .into_dyn()
            }
            "Flatten" => {
                let x = arg(0);
                let n = x.shape()[0];
                let rest = x.len() / n;
                x.into_shape_with_order(IxDyn(&[n, rest])).unwrap()
            }
            "Gemm" => {
                let x = arg(0).into_dimensionality::<ndarray::Ix2>().unwrap();
                let w = arg(1).into_dimensionality::<ndarray::Ix2>().unwrap();
                (x.dot(&w.t()) + &arg(2).into_dimensionality::<ndarray::Ix1>().unwrap()).into_dyn()
            }
            other => panic!("naive interpreter lacks {other}"),
        };
        env.insert(node.output[0].clone(), out);
    }
    env
}

#[test]
fn every_family_runs_in_onnx_runtime_and_matches_the_naive_reference() {
    for family in fixtures::FAMILIES {
        let model = fixtures::tiny(family, 7, 5).unwrap();
        // Same seed, same bytes; another seed, other weights.
        assert_eq!(
            model.to_bytes(),
            fixtures::tiny(family, 7, 5).unwrap().to_bytes()
        );
        assert_ne!(
            model.to_bytes(),
            fixtures::tiny(family, 8, 5).unwrap().to_bytes()
        );
        // Tap every intermediate value and compare them all, at an even and an odd size.
        let names: Vec<String> = model
            .values()
            .into_iter()
            .filter(|v| v.op.is_some())
            .map(|v| v.name)
            .collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let tapped = model.with_outputs(&refs).unwrap();
        let mut s =
            Session::from_model(runtime(), &tapped, family, &SessionOptions::default()).unwrap();
        for size in [32usize, 21] {
            let x = sine_batch(2, &[3, size, size], 1.0, 0.0, 0.031, 0.9);
            let ours = s.run(&[("input", Input::F32(x.view()))], &[]).unwrap();
            let reference = naive_forward(&model, &x);
            for name in &names {
                let (a, b) = (&ours[name], &reference[name]);
                assert_eq!(a.shape(), b.shape(), "{family} {name} at {size}");
                let d = a
                    .iter()
                    .zip(b.iter())
                    .map(|(p, q)| (p - q).abs())
                    .fold(0.0f32, f32::max);
                assert!(d < TOL, "{family}: `{name}` at {size} px differs by {d}");
            }
            assert_eq!(ours["logits"].shape(), &[2, 5]);
        }
    }
}

#[test]
fn unknown_family_is_an_error() {
    let err = fixtures::tiny("transformer", 1, 2).unwrap_err().to_string();
    assert!(
        err.contains("transformer") && err.contains("inception"),
        "{err}"
    );
}
