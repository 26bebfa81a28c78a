//! AdaBN on the real MobileNetV2 (BatchNorm kept): the batch-statistics model against a
//! naive computation, pooling over batches, and the adapted model against the
//! batch-statistics model it must reproduce on a single batch.

use std::sync::Arc;

use ndarray::Axis;
use tl_core::ImageContract;
use tl_data::{Content, Row};
use tl_features::{adabn::target_statistics, extract::preprocess_rows};
use tl_onnx::OnnxModel;
use tl_runtime::{Input, Runtime, RuntimeOptions, Session, SessionOptions};

/// Relative tolerance of statistics pooled over batches against one pass (f32 sums
/// inside ONNX Runtime's ReduceMean, f64 pooling).
const STAT_REL: f64 = 1e-4;
/// Largest difference, relative to the values' scale, between a BatchNorm output of the
/// adapted model and of the batch-statistics model on the same batch, through layer 20.
const LAYER_REL: f32 = 1e-4;
/// Layers compared. Beyond layer 20 the two computations drift apart by f32 rounding, not
/// by a fault: on these noise images some channels' target variance is near 0, and a
/// BatchNorm divides them by about sqrt(epsilon), amplifying a 1-ulp difference. Measured
/// on 5 rows at 48 px: 5e-7 at BatchNorm 0, 1e-5 at 20, 1e-3 at 42, 16 at 51 (of 52).
const LAYERS: [usize; 3] = [0, 10, 20];
/// The adaptation must move the final features: largest per-row cosine to the source's.
const MOVED_COSINE: f64 = 0.999;

fn model() -> OnnxModel {
    let home = tl_core::home::tl_home().unwrap();
    let path = tl_core::home::model_dir(&home, "mobilenet-v2").join("model-bn.onnx");
    OnnxModel::load(&path).expect("run `cargo xtask fetch-models mobilenet-v2`")
}

fn session(m: &OnnxModel) -> Session {
    let rt = Runtime::init(&RuntimeOptions::default())
        .expect("run `cargo xtask fetch-models onnxruntime`");
    Session::from_model(rt, m, "mobilenet-v2", &SessionOptions::default()).unwrap()
}

fn contract() -> ImageContract {
    ImageContract::rgb_center_crop(
        "input",
        48,
        [123.675, 116.28, 103.53],
        [58.395, 57.12, 57.375],
    )
}

/// Colour images of noise around `level`, 40×40.
fn rows(n: usize, level: u32) -> Vec<Row> {
    (0..n)
        .map(|i| {
            let data: Vec<u8> = (0..40 * 40 * 3u32)
                .map(|p| {
                    (level + (p.wrapping_mul(2654435761).wrapping_add(i as u32 * 977) >> 27)) as u8
                })
                .collect();
            Row {
                id: format!("r{i}"),
                content: Content::Pixels {
                    width: 40,
                    height: 40,
                    channels: 3,
                    data: Arc::from(data),
                },
                labels: vec![],
            }
        })
        .collect()
}

#[test]
fn first_batchnorm_statistics_match_a_naive_computation_however_batched() {
    let m = model();
    let (stats_model, norms) = m.with_batch_statistics().unwrap();
    assert_eq!(norms.len(), 52, "MobileNetV2 has 52 BatchNorms");
    let target = rows(6, 40);
    let refs: Vec<&Row> = target.iter().collect();
    // Naive: the first BatchNorm's input (nothing before it is normalised) over N, H, W.
    let mut tapped = session(&m.with_outputs(&[norms[0].input.as_str()]).unwrap());
    let x = preprocess_rows(&contract(), &refs).unwrap().into_dyn();
    let pre = tapped
        .run(
            &[("input", Input::F32(x.view()))],
            &[norms[0].input.as_str()],
        )
        .unwrap()
        .remove(norms[0].input.as_str())
        .unwrap();
    let mut s = session(&stats_model);
    for batch in [6, 4, 1] {
        let stats = target_statistics(&mut s, &norms, &contract(), &refs, batch).unwrap();
        assert_eq!(stats.len(), norms.len());
        for c in 0..norms[0].channels {
            let v: Vec<f64> = pre
                .index_axis(Axis(1), c)
                .iter()
                .map(|&a| a as f64)
                .collect();
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            let var = v.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / v.len() as f64;
            let (m_, v_) = (stats[0].mean[c] as f64, stats[0].var[c] as f64);
            assert!(
                (m_ - mean).abs() <= STAT_REL * (1.0 + mean.abs()),
                "batch {batch}, channel {c}: mean {m_} vs {mean}"
            );
            assert!(
                (v_ - var).abs() <= STAT_REL * (1.0 + var),
                "batch {batch}, channel {c}: var {v_} vs {var}"
            );
        }
    }
}

#[test]
fn the_adapted_model_reproduces_batch_normalisation_by_the_target() {
    let m = model();
    let (stats_model, norms) = m.with_batch_statistics().unwrap();
    let target = rows(8, 90);
    let refs: Vec<&Row> = target.iter().collect();
    // One batch: its statistics are the whole target's, so the adapted model in inference
    // mode must compute what the batch-statistics model computes on that batch.
    let mut s = session(&stats_model);
    let stats = target_statistics(&mut s, &norms, &contract(), &refs, refs.len()).unwrap();
    let adapted = m.with_running_statistics(&stats).unwrap();
    let taps: Vec<&str> = LAYERS
        .iter()
        .map(|&k| norms[k].output.as_str())
        .chain(["features"])
        .collect();
    let x = preprocess_rows(&contract(), &refs).unwrap().into_dyn();
    let run = |model: &OnnxModel| {
        session(&model.with_outputs(&taps).unwrap())
            .run(&[("input", Input::F32(x.view()))], &taps)
            .unwrap()
    };
    let (want, got, source) = (run(&stats_model), run(&adapted), run(&m));
    for name in &taps[..LAYERS.len()] {
        let scale = want[*name].iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = (&got[*name] - &want[*name])
            .iter()
            .fold(0f32, |a, v| a.max(v.abs()));
        assert!(
            d <= LAYER_REL * (1.0 + scale),
            "{name}: {d} (scale {scale})"
        );
    }
    let cosine = |a: ndarray::ArrayView1<f32>, b: ndarray::ArrayView1<f32>| {
        let dot: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
        let n = |v: &ndarray::ArrayView1<f32>| {
            v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt()
        };
        dot / (n(&a) * n(&b))
    };
    let (f_want, f_source) = (&want["features"], &source["features"]);
    let moved = (0..refs.len())
        .map(|i| {
            let (w, s_) = (
                f_want.index_axis(Axis(0), i),
                f_source.index_axis(Axis(0), i),
            );
            cosine(
                s_.view().into_dimensionality().unwrap(),
                w.view().into_dimensionality().unwrap(),
            )
        })
        .fold(f64::NEG_INFINITY, f64::max);
    assert!(moved < MOVED_COSINE, "source vs adapted: cosine {moved}");
}

#[test]
fn bad_adabn_inputs_are_named() {
    let m = model();
    let err = m
        .with_running_statistics(&[tl_onnx::batchnorm::RunningStatistics {
            node: "no-such-bn".into(),
            mean: vec![0.0],
            var: vec![1.0],
        }])
        .unwrap_err()
        .to_string();
    assert!(err.contains("no-such-bn"), "{err}");
    let norms = m.batch_norms().unwrap();
    let err = m
        .with_running_statistics(&[tl_onnx::batchnorm::RunningStatistics {
            node: norms[0].name.clone(),
            mean: vec![0.0; norms[0].channels],
            var: vec![-1.0; norms[0].channels],
        }])
        .unwrap_err()
        .to_string();
    assert!(err.contains(&norms[0].name), "{err}");
    // A folded model has no BatchNorm left to adapt.
    let home = tl_core::home::tl_home().unwrap();
    let folded =
        OnnxModel::load(&tl_core::home::model_dir(&home, "mobilenet-v2").join("model.onnx"))
            .unwrap();
    let err = folded.with_batch_statistics().unwrap_err().to_string();
    assert!(err.contains("no BatchNormalization"), "{err}");
}
