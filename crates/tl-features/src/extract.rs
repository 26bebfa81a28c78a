//! The extraction pipeline: dataset rows in, features of any nodes out, into the store.
//!
//! Rows are identified by content hash; only rows missing from the store are computed,
//! in fixed-size parts taken in dataset order, each published atomically. A run killed
//! half way keeps every finished part, and the rerun computes exactly the parts that
//! are missing, so it ends with the same bytes as an uninterrupted run. Decoding and
//! resizing (rayon) run on a producer thread while ONNX Runtime runs the previous batch.

use std::{
    path::{Path, PathBuf},
    sync::mpsc,
    time::Instant,
};

use ndarray::{Array2, ArrayD, Axis};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tl_core::{ImageContract, contract::TextContract};
use tl_core::{
    Named,
    progress::{Meter, Progress, Unit},
};
use tl_data::{Content, Row, Skipped};
use tl_runtime::{Input, Runtime, Session};

use crate::{
    Error, Result,
    image::{Decoded, Gray8, Rgb8, batch_shape, load, preprocess_into},
    store::{FeatureStore, StoreKey},
    text::{TextEncoder, length_buckets},
};

/// How a spatial feature map [N, C, H, W] becomes a vector per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Pool {
    /// Mean over every axis after the channel axis.
    #[default]
    Mean,
    /// Maximum over every axis after the channel axis.
    Max,
    /// Flatten everything after the batch axis.
    None,
}

tl_core::named_enum!(Pool, "pooling", [Mean => "mean", Max => "max", None => "none"]);

impl Pool {
    /// Pools a batch output [N, ...] to [N, D].
    pub fn apply(self, x: &ArrayD<f32>) -> Array2<f32> {
        let n = x.shape()[0];
        if x.ndim() <= 2 || self == Pool::None {
            let d = x.len() / n.max(1);
            return x
                .as_standard_layout()
                .into_owned()
                .into_shape_with_order((n, d))
                .expect("contiguous");
        }
        let c = x.shape()[1];
        let per = x.len() / (n * c).max(1);
        let flat = x
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order((n, c, per))
            .expect("contiguous");
        match self {
            Pool::Mean => flat.map_axis(Axis(2), |v| {
                (v.iter().map(|&a| a as f64).sum::<f64>() / per as f64) as f32
            }),
            Pool::Max => flat.map_axis(Axis(2), |v| {
                v.iter().copied().fold(f32::NEG_INFINITY, f32::max)
            }),
            Pool::None => unreachable!(),
        }
    }
}

/// Options of an extraction.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ExtractOptions {
    /// Graph values to extract (tapped as outputs of the session's model).
    pub nodes: Vec<String>,
    pub pool: Pool,
    /// Images per ONNX Runtime call.
    pub batch_size: usize,
    /// Rows per stored part (the unit of resumption).
    pub part_size: usize,
    /// Skip rows whose image cannot be decoded, listing them, instead of failing.
    pub skip_bad: bool,
    /// Where the extraction reports the rows it computes (default: nowhere).
    pub progress: std::sync::Arc<dyn Progress>,
    /// Stop after writing this many new parts (to test resumption).
    pub max_new_parts: Option<usize>,
    /// Batch texts of similar token counts together (less padding); off: dataset order.
    pub bucket_by_length: bool,
}

impl ExtractOptions {
    /// Defaults: mean pooling, batches of 32, parts of 1,024 rows.
    pub fn new(nodes: Vec<String>) -> Self {
        Self {
            nodes,
            pool: Pool::Mean,
            batch_size: 32,
            part_size: 1024,
            skip_bad: false,
            progress: std::sync::Arc::new(tl_core::progress::Silent),
            max_new_parts: None,
            bucket_by_length: true,
        }
    }
}

/// What an extraction did.
#[derive(Debug, Clone, Serialize)]
pub struct ExtractReport {
    pub rows: usize,
    pub unique_rows: usize,
    /// Rows whose features were computed now.
    pub computed: usize,
    /// Rows found in the store.
    pub cached: usize,
    pub skipped: Vec<Skipped>,
    pub seconds: f64,
    /// Computed rows per second, end to end (decode to store).
    pub rows_per_second: f64,
    pub provider: String,
    pub stores: Vec<PathBuf>,
    /// Peak resident memory of this process so far (Linux `VmHWM`), when known.
    pub peak_rss_bytes: Option<u64>,
    /// Where the time went.
    pub stages: StageSeconds,
    /// The content hash of every input row, in row order (kept so that callers need not
    /// read image files again to join features to rows).
    #[serde(skip)]
    pub row_hashes: Vec<String>,
}

/// Where an extraction's time went. Wall-clock seconds of the thread that runs the model,
/// except `preprocessing_cpu`, which sums the threads that decode and resize (they run
/// while the model runs, so it can exceed the wall time), and the writing part of
/// `storing`, which runs on its own thread at the same time as the next part's inference.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StageSeconds {
    /// Hashing every row's content, to find the rows already in the store.
    pub hashing: f64,
    /// Decoding, resizing, cropping and normalising images, or tokenizing texts (CPU seconds).
    pub preprocessing_cpu: f64,
    /// Waiting for the next batch of inputs to be ready.
    pub waiting_for_input: f64,
    /// Inside ONNX Runtime (for texts: tokenizing the batch, running it and pooling).
    pub inference: f64,
    /// Pooling outputs (on the model's thread), and writing parts to the store (on a
    /// writer thread, while the model computes the next part).
    pub storing: f64,
}

pub use tl_core::alloc::peak_rss_bytes;

/// Rows decoded, resized and cropped by `contract` and normalised into one batch (the
/// model's input, for fine-tuning the whole network), in parallel.
pub fn preprocess_rows(contract: &ImageContract, rows: &[&Row]) -> Result<ndarray::Array4<f32>> {
    crate::image::preprocess_batch(contract, rows, |r| row_decoded(r))
}

/// The 8-bit RGB image of a row (grayscale replicated), or an error naming it.
pub fn row_image(row: &Row) -> Result<Rgb8> {
    row_decoded(row).map(Decoded::into_rgb)
}

/// The decoded image of a row (grayscale kept as one channel), or an error naming it.
pub fn row_decoded(row: &Row) -> Result<Decoded> {
    match &row.content {
        Content::ImageFile(p) => load(p),
        Content::Pixels {
            width,
            height,
            channels,
            data,
        } => match channels {
            1 => Gray8::new(*width, *height, data.to_vec()).map(Decoded::Gray),
            3 => Rgb8::new(*width, *height, data.to_vec()).map(Decoded::Rgb),
            c => Err(Error::Invalid(format!(
                "row `{}`: {c} channels (1 or 3 supported)",
                row.id
            ))),
        },
        Content::Text(_) => Err(Error::Invalid(format!(
            "row `{}` is text; an image model needs images",
            row.id
        ))),
    }
}

/// Extracts the features of `rows` at `opts.nodes` with `session` (whose model must
/// output those nodes), into one store per node under `home`.
pub fn extract(
    session: &mut Session,
    model_sha256: &str,
    contract: &ImageContract,
    rows: &[Row],
    home: &Path,
    opts: &ExtractOptions,
) -> Result<(ExtractReport, Vec<FeatureStore>)> {
    if opts.nodes.is_empty() {
        return Err(Error::Invalid("no node to extract".into()));
    }
    let preprocessing = serde_json::to_value(contract).expect("contract serialises");
    let stores = open_stores(
        session,
        model_sha256,
        &opts.nodes,
        opts.pool.name(),
        preprocessing,
        home,
    )?;
    run_parts(
        session,
        stores,
        rows,
        opts,
        |session, part, hashes, bar, stages| {
            run_part(session, contract, rows, hashes, part, opts, bar, stages)
        },
    )
}

/// Extracts sentence embeddings of text rows (the contract's token output, pooled and
/// normalised as it says) into one store; rows are batched by token count.
pub fn extract_text(
    session: &mut Session,
    encoder: &TextEncoder,
    model_sha256: &str,
    contract: &TextContract,
    rows: &[Row],
    home: &Path,
    opts: &ExtractOptions,
) -> Result<(ExtractReport, Vec<FeatureStore>)> {
    let pooling = format!(
        "{:?}{}",
        contract.pooling,
        if contract.normalize { "+l2" } else { "" }
    )
    .to_lowercase();
    let preprocessing = serde_json::to_value(contract).expect("contract serialises");
    let nodes = [contract.token_output.clone()];
    let stores = open_stores(session, model_sha256, &nodes, &pooling, preprocessing, home)?;
    run_parts(
        session,
        stores,
        rows,
        opts,
        |session, part, hashes, bar, stages| {
            let texts: Vec<&str> = part
                .iter()
                .map(|&i| match &rows[i].content {
                    Content::Text(t) => Ok(t.as_str()),
                    _ => Err(Error::Invalid(format!(
                        "row `{}` is not text; a text model needs texts",
                        rows[i].id
                    ))),
                })
                .collect::<Result<_>>()?;
            let batches: Vec<Vec<usize>> = if opts.bucket_by_length {
                let counted = Instant::now();
                let counts = encoder.token_counts(&texts)?;
                stages.preprocessing_cpu += counted.elapsed().as_secs_f64();
                length_buckets(&counts, opts.batch_size)
            } else {
                (0..texts.len())
                    .collect::<Vec<_>>()
                    .chunks(opts.batch_size)
                    .map(<[usize]>::to_vec)
                    .collect()
            };
            let mut out = Array2::<f32>::zeros((0, 0));
            for bucket in batches {
                let batch: Vec<&str> = bucket.iter().map(|&k| texts[k]).collect();
                let ran = Instant::now();
                let emb = encoder.embed(session, &batch)?;
                stages.inference += ran.elapsed().as_secs_f64();
                if out.ncols() == 0 {
                    out = Array2::zeros((part.len(), emb.ncols()));
                }
                for (r, &k) in bucket.iter().enumerate() {
                    out.row_mut(k).assign(&emb.row(r));
                }
                bar.advance(bucket.len() as u64);
            }
            let kept = part.iter().map(|&i| hashes[i].clone()).collect();
            Ok((kept, vec![out], Vec::new()))
        },
    )
}

fn open_stores(
    session: &Session,
    model_sha256: &str,
    nodes: &[String],
    pooling: &str,
    preprocessing: serde_json::Value,
    home: &Path,
) -> Result<Vec<FeatureStore>> {
    let rt =
        Runtime::get().ok_or_else(|| Error::Invalid("ONNX Runtime is not initialised".into()))?;
    nodes
        .iter()
        .map(|node| {
            FeatureStore::open(
                home,
                StoreKey {
                    model_sha256: model_sha256.to_string(),
                    node: node.clone(),
                    pooling: pooling.to_string(),
                    preprocessing: preprocessing.clone(),
                    preprocessing_version: crate::store::PREPROCESSING_VERSION,
                    onnxruntime_version: rt.version().to_string(),
                    provider: session.provider().to_string(),
                    precision: session.precision().to_string(),
                },
            )
        })
        .collect()
}

/// One part's result: the content hashes kept, one matrix per store, the rows skipped.
type PartResult = (Vec<String>, Vec<Array2<f32>>, Vec<Skipped>);

/// The part loop shared by images and texts: hashes, missing rows in dataset order,
/// fixed-size parts computed by `compute` and appended to every store.
fn run_parts(
    session: &mut Session,
    mut stores: Vec<FeatureStore>,
    rows: &[Row],
    opts: &ExtractOptions,
    mut compute: impl FnMut(
        &mut Session,
        &[usize],
        &[String],
        &dyn Meter,
        &mut StageSeconds,
    ) -> Result<PartResult>,
) -> Result<(ExtractReport, Vec<FeatureStore>)> {
    if opts.batch_size == 0 || opts.part_size == 0 {
        return Err(Error::Invalid(
            "batch size and part size must be at least 1".into(),
        ));
    }
    for (path, why) in stores.iter().flat_map(FeatureStore::corrupt) {
        opts.progress.note(&format!(
            "`{}` failed verification ({why}): its rows are computed again",
            path.display()
        ));
    }
    let started = Instant::now();
    let mut stages = StageSeconds::default();
    let hashes: Vec<String> = rows
        .par_iter()
        .map(|r| r.content.hash().map_err(Error::from))
        .collect::<Result<_>>()?;
    stages.hashing = started.elapsed().as_secs_f64();
    // Unique missing rows, in dataset order: the same list on every run, hence the same parts.
    let mut seen = std::collections::HashSet::new();
    let mut missing: Vec<usize> = Vec::new();
    let mut unique = 0;
    for (i, h) in hashes.iter().enumerate() {
        if seen.insert(h.as_str()) {
            unique += 1;
            if !stores.iter().all(|s| s.contains(h)) {
                missing.push(i);
            }
        }
    }
    let bar = opts
        .progress
        .start("extracting", Unit::Rows, Some(missing.len() as u64));
    let mut skipped = Vec::new();
    let mut computed = 0;
    // Parts are written by a writer thread, in order, while the model computes the next
    // part: writing (and syncing) a part no longer stalls inference at each part boundary.
    // The writer holds at most one part in waiting; its first error ends the run.
    let (stores, writing) = std::thread::scope(|scope| -> Result<(Vec<FeatureStore>, f64)> {
        let (tx, rx) = mpsc::sync_channel::<(Vec<String>, Vec<Array2<f32>>)>(1);
        let writer = scope.spawn(move || -> Result<(Vec<FeatureStore>, f64)> {
            let mut seconds = 0.0;
            for (part_hashes, outputs) in rx {
                let stored = Instant::now();
                for (store, out) in stores.iter_mut().zip(&outputs) {
                    store.append(&part_hashes, out)?;
                }
                seconds += stored.elapsed().as_secs_f64();
            }
            Ok((stores, seconds))
        });
        let computing = (|| -> Result<()> {
            for (p, part) in missing.chunks(opts.part_size).enumerate() {
                if opts.max_new_parts.is_some_and(|m| p >= m) {
                    break;
                }
                let (part_hashes, outputs, bad) =
                    compute(session, part, &hashes, &*bar, &mut stages)?;
                skipped.extend(bad);
                if part_hashes.is_empty() {
                    continue;
                }
                computed += part_hashes.len();
                if tx.send((part_hashes, outputs)).is_err() {
                    // The writer stopped on an error, which joining it returns.
                    break;
                }
            }
            Ok(())
        })();
        drop(tx);
        let written = writer
            .join()
            .map_err(|_| Error::Store("the feature writer thread panicked".into()))?;
        // A write error comes first: it explains why computing stopped.
        let written = written?;
        computing?;
        Ok(written)
    })?;
    stages.storing += writing;
    bar.finish();
    let seconds = started.elapsed().as_secs_f64();
    let report = ExtractReport {
        rows: rows.len(),
        unique_rows: unique,
        computed,
        cached: unique - missing.len(),
        skipped,
        seconds,
        rows_per_second: if seconds > 0.0 {
            computed as f64 / seconds
        } else {
            0.0
        },
        provider: session.provider().to_string(),
        stores: stores.iter().map(|s| s.dir().to_path_buf()).collect(),
        peak_rss_bytes: peak_rss_bytes(),
        stages,
        row_hashes: hashes,
    };
    Ok((report, stores))
}

type Batch = (Vec<usize>, Option<ndarray::Array4<f32>>, Vec<Skipped>);

/// Computes one part: batches preprocessed on a producer thread (rows in parallel, each
/// written straight into the batch tensor), inference here.
#[allow(clippy::too_many_arguments)]
fn run_part(
    session: &mut Session,
    contract: &ImageContract,
    rows: &[Row],
    hashes: &[String],
    part: &[usize],
    opts: &ExtractOptions,
    bar: &dyn Meter,
    stages: &mut StageSeconds,
) -> Result<PartResult> {
    let nodes: Vec<&str> = opts.nodes.iter().map(String::as_str).collect();
    let mut kept: Vec<String> = Vec::with_capacity(part.len());
    let mut per_node: Vec<Vec<Array2<f32>>> = vec![Vec::new(); nodes.len()];
    let mut skipped = Vec::new();
    let preprocessing_ns = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|scope| -> Result<()> {
        let (tx, rx) = mpsc::sync_channel::<Result<Batch>>(2);
        // Spent batch tensors come back to be refilled: every element is overwritten, and
        // fresh tens-of-megabyte buffers would cost page faults on every batch.
        let (spent_tx, spent_rx) = mpsc::channel::<ndarray::Array4<f32>>();
        let preprocessing_ns = &preprocessing_ns;
        scope.spawn(move || {
            for chunk in part.chunks(opts.batch_size) {
                let shape = batch_shape(contract, chunk.len());
                let mut tensor = match spent_rx.try_recv() {
                    Ok(t) if t.dim() == shape => t,
                    _ => ndarray::Array4::<f32>::zeros(shape),
                };
                let results: Vec<Result<()>> = tensor
                    .axis_iter_mut(Axis(0))
                    .into_par_iter()
                    .zip(chunk.par_iter())
                    .map(|(view, &i)| {
                        let t = Instant::now();
                        let r =
                            row_decoded(&rows[i]).map(|img| preprocess_into(contract, &img, view));
                        preprocessing_ns.fetch_add(
                            t.elapsed().as_nanos() as u64,
                            std::sync::atomic::Ordering::Relaxed,
                        );
                        r
                    })
                    .collect();
                let mut ok_pos = Vec::with_capacity(chunk.len());
                let mut bad = Vec::new();
                for (pos, (&i, r)) in chunk.iter().zip(results).enumerate() {
                    match r {
                        Ok(()) => ok_pos.push(pos),
                        Err(e) if opts.skip_bad => bad.push(Skipped {
                            id: rows[i].id.clone(),
                            reason: e.to_string(),
                        }),
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    }
                }
                let idx: Vec<usize> = ok_pos.iter().map(|&p| chunk[p]).collect();
                let tensor = match ok_pos.len() {
                    0 => None,
                    n if n == chunk.len() => Some(tensor),
                    _ => Some(tensor.select(Axis(0), &ok_pos)),
                };
                if tx.send(Ok((idx, tensor, bad))).is_err() {
                    return;
                }
            }
        });
        loop {
            let waited = Instant::now();
            let Ok(msg) = rx.recv() else { break };
            stages.waiting_for_input += waited.elapsed().as_secs_f64();
            let (idx, tensor, bad) = msg?;
            bar.advance((idx.len() + bad.len()) as u64);
            skipped.extend(bad);
            let Some(tensor) = tensor else { continue };
            let ran = Instant::now();
            let out = session.run(
                &[(
                    contract.input.as_str(),
                    Input::F32(tensor.view().into_dyn()),
                )],
                &nodes,
            )?;
            stages.inference += ran.elapsed().as_secs_f64();
            let _ = spent_tx.send(tensor);
            let pooled = Instant::now();
            for (k, node) in nodes.iter().enumerate() {
                per_node[k].push(opts.pool.apply(&out[*node]));
            }
            stages.storing += pooled.elapsed().as_secs_f64();
            kept.extend(idx.iter().map(|&i| hashes[i].clone()));
        }
        Ok(())
    })?;
    stages.preprocessing_cpu +=
        preprocessing_ns.load(std::sync::atomic::Ordering::Relaxed) as f64 * 1e-9;
    let outputs = per_node
        .into_iter()
        .map(|parts| {
            let views: Vec<_> = parts.iter().map(|a| a.view()).collect();
            if views.is_empty() {
                Ok(Array2::zeros((0, 0)))
            } else {
                ndarray::concatenate(Axis(0), &views).map_err(|e| Error::Store(e.to_string()))
            }
        })
        .collect::<Result<_>>()?;
    Ok((kept, outputs, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_reduces_spatial_axes() {
        let x = ArrayD::from_shape_vec(vec![1, 2, 2, 2], vec![1., 2., 3., 4., -1., -2., -3., 10.])
            .unwrap();
        assert_eq!(
            Pool::Mean.apply(&x).into_raw_vec_and_offset().0,
            vec![2.5, 1.0]
        );
        assert_eq!(
            Pool::Max.apply(&x).into_raw_vec_and_offset().0,
            vec![4.0, 10.0]
        );
        assert_eq!(Pool::None.apply(&x).shape(), &[1, 8]);
        let v = ArrayD::from_shape_vec(vec![2, 3], vec![1., 2., 3., 4., 5., 6.]).unwrap();
        assert_eq!(Pool::Mean.apply(&v).shape(), &[2, 3]);
    }

    #[test]
    fn pixels_become_rgb() {
        let row = Row {
            id: "r".into(),
            content: Content::Pixels {
                width: 2,
                height: 1,
                channels: 1,
                data: std::sync::Arc::from(vec![7u8, 9]),
            },
            labels: vec![],
        };
        assert_eq!(row_image(&row).unwrap().pixels(), &[7, 7, 7, 9, 9, 9]);
        let text = Row {
            id: "t".into(),
            content: Content::Text("hi".into()),
            labels: vec![],
        };
        assert!(row_image(&text).unwrap_err().to_string().contains("`t`"));
    }
}
