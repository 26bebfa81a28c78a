//! AdaBN's pass over a target domain: the statistics of every BatchNorm input of a
//! convolutional network on a dataset's images.
//!
//! The session runs [`tl_onnx::OnnxModel::with_batch_statistics`]'s model, in which each
//! BatchNorm normalises by its batch, as in training (and as PyTorch's AdaBN recipes run a
//! network in train mode over target batches). Per channel, the batches' means and
//! variances are pooled into the mean and variance over all target rows and positions:
//! mean = Σ nᵦ·μᵦ / N, var = Σ nᵦ·(σ²ᵦ + μᵦ²) / N − mean², in f64.

use ndarray::ArrayD;
use tl_core::ImageContract;
use tl_data::Row;
use tl_onnx::OnnxModel;
use tl_onnx::batchnorm::{BatchNormNode, RunningStatistics};
use tl_runtime::{Input, Runtime, Session, SessionOptions};

use crate::{Error, Result, extract::preprocess_rows};

/// AdaBN (Li et al. 2016): `backbone`, a CNN with its BatchNorm layers kept, with every
/// BatchNorm's running mean and variance re-estimated on `rows` (each batch of
/// `batch_size` normalised by its own statistics on the way, as in training), every weight
/// kept. `name` names the model in ONNX Runtime's messages.
pub fn adapt_backbone(
    backbone: &OnnxModel,
    name: &str,
    contract: &ImageContract,
    rows: &[&Row],
    batch_size: usize,
    (rt, opts): (&Runtime, &SessionOptions),
) -> Result<OnnxModel> {
    let (stats_model, norms) = backbone.with_batch_statistics()?;
    let mut session = Session::from_model(rt, &stats_model, name, opts)?;
    let stats = target_statistics(&mut session, &norms, contract, rows, batch_size)?;
    Ok(backbone.with_running_statistics(&stats)?)
}

/// The pooled statistics of every BatchNorm in `norms` over `rows`, in batches of
/// `batch_size` rows, with `session` running the batch-statistics model.
pub fn target_statistics(
    session: &mut Session,
    norms: &[BatchNormNode],
    contract: &ImageContract,
    rows: &[&Row],
    batch_size: usize,
) -> Result<Vec<RunningStatistics>> {
    if rows.is_empty() || batch_size == 0 {
        return Err(Error::Invalid(
            "AdaBN needs at least one target row and a batch size of at least 1".into(),
        ));
    }
    let names: Vec<String> = norms
        .iter()
        .flat_map(|b| [b.batch_mean(), b.batch_var()])
        .collect();
    let outputs: Vec<&str> = names.iter().map(String::as_str).collect();
    // Per node: Σ n·μ and Σ n·(σ² + μ²), per channel.
    let mut sums: Vec<(Vec<f64>, Vec<f64>)> = norms
        .iter()
        .map(|b| (vec![0.0; b.channels], vec![0.0; b.channels]))
        .collect();
    for chunk in rows.chunks(batch_size) {
        let x = preprocess_rows(contract, chunk)?.into_dyn();
        let out = session.run(&[(contract.input.as_str(), Input::F32(x.view()))], &outputs)?;
        let n = chunk.len() as f64;
        for (b, (s1, s2)) in norms.iter().zip(&mut sums) {
            let flat = |name: &str| -> Result<Vec<f32>> {
                let a: &ArrayD<f32> = &out[name];
                if a.len() != b.channels {
                    return Err(Error::Invalid(format!(
                        "`{name}` has {} values, expected {} channels",
                        a.len(),
                        b.channels
                    )));
                }
                Ok(a.iter().copied().collect())
            };
            let (mean, var) = (flat(&b.batch_mean())?, flat(&b.batch_var())?);
            for c in 0..b.channels {
                let (m, v) = (mean[c] as f64, var[c] as f64);
                s1[c] += n * m;
                s2[c] += n * (v + m * m);
            }
        }
    }
    let total = rows.len() as f64;
    Ok(norms
        .iter()
        .zip(sums)
        .map(|(b, (s1, s2))| {
            let mean: Vec<f64> = s1.iter().map(|s| s / total).collect();
            RunningStatistics {
                node: b.name.clone(),
                var: s2
                    .iter()
                    .zip(&mean)
                    .map(|(s, m)| (s / total - m * m).max(0.0) as f32)
                    .collect(),
                mean: mean.iter().map(|&m| m as f32).collect(),
            }
        })
        .collect())
}
