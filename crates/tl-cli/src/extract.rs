//! `tl extract`: features of a dataset at any nodes of a model, cached by content.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use tl_core::InputContract;
use tl_features::{
    extract::{ExtractOptions, Pool},
    text::TextEncoder,
    wordvec::{Weighting, WordVectors},
};
use tl_onnx::OnnxModel;
use tl_runtime::{Runtime, RuntimeOptions, Session, SessionOptions};

use crate::{Global, JSON_SCHEMA_VERSION, RunArgs, data, resolve};

#[derive(Debug, Args)]
pub struct ExtractArgs {
    /// Registry id or path to an .onnx file.
    #[arg(long, short, default_value = "efficientnet-lite0")]
    model: String,
    /// Input contract (TOML) for a model file that does not carry one.
    #[arg(long, value_name = "FILE.toml")]
    contract: Option<PathBuf>,
    /// Registry dataset, or a path: a folder of images (one sub-folder per class, or
    /// unlabelled), a text table (.csv/.tsv/.jsonl), an IDX file, a list of images, or a
    /// folder with a dataset.toml (`tl data info PATH` shows how a path is read).
    #[arg(long, short)]
    data: String,
    /// Graph value to extract (repeatable); `tl models inspect` lists them. Default: the model's feature output.
    #[arg(long = "layer", value_name = "NODE")]
    layers: Vec<String>,
    /// How spatial maps become vectors: mean, max, or none (flatten).
    #[arg(long, default_value = "mean")]
    pool: Pool,
    /// Input side in pixels, for models with dynamic spatial size.
    #[arg(long, value_name = "N")]
    image_size: Option<u32>,
    /// Rows per ONNX Runtime call [default: 32 on the CPU, 128 on a GPU, where larger batches
    /// keep the device busy; `tl gpu-check` measures several].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Rows per stored part (the unit an interrupted run resumes from).
    #[arg(long, default_value_t = 1024)]
    part_size: usize,
    /// Use only the first N rows of the dataset (a quick trial, or a benchmark at several sizes).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Skip rows whose image cannot be decoded (they are counted and listed) instead of failing.
    #[arg(long)]
    skip_bad: bool,
    /// Batch texts in dataset order instead of grouping similar lengths (bucketing pads
    /// less, so it is faster; the embeddings are the same either way).
    #[arg(long)]
    no_bucketing: bool,
    /// For word vectors (`--model glove-6b-50d`): plain mean or TF-IDF-weighted mean.
    #[arg(long, default_value = "mean")]
    weighting: String,
    /// Also write the dataset's features in row order: <DIR>/<node>.safetensors, rows.json, extract.json.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    #[command(flatten)]
    run: RunArgs,
}

pub fn run(a: &ExtractArgs, global: &Global) -> Result<()> {
    let home = global.home()?;
    let registry = tl_hub::Registry::builtin()?;
    if let Ok(entry) = registry.get(&a.model)
        && is_word_vectors(entry)
    {
        return word_vectors(a, global, entry, &home);
    }
    let mut ds = data::load(&a.data, &home)?;
    if let Some(n) = a.limit {
        ds.rows.truncate(n);
    }
    let Computed {
        model,
        sha,
        layers,
        contract_json,
        report,
        stores,
    } = compute(
        &Request {
            model: &a.model,
            contract: a.contract.as_deref(),
            model_file: None,
            layers: a.layers.clone(),
            pool: a.pool,
            image_size: a.image_size,
            batch_size: a.batch_size,
            part_size: a.part_size,
            skip_bad: a.skip_bad,
            bucket_by_length: !a.no_bucketing,
            run: &a.run,
        },
        &ds,
        &home,
        global,
    )?;
    if let Some(out) = &a.out {
        let skipped: std::collections::HashSet<&str> =
            report.skipped.iter().map(|s| s.id.as_str()).collect();
        // The extraction already hashed every row: reuse its hashes rather than read files again.
        let (kept, hashes): (Vec<&tl_data::Row>, Vec<String>) = ds
            .rows
            .iter()
            .zip(&report.row_hashes)
            .filter(|(r, _)| !skipped.contains(r.id.as_str()))
            .map(|(r, h)| (r, h.clone()))
            .unzip();
        for (node, store) in layers.iter().zip(&stores) {
            let features = store.gather(&hashes)?;
            let file = out.join(format!("{}.safetensors", sanitize(node)));
            tl_features::store::write_matrix(&file, &features)?;
        }
        let rows: Vec<_> = kept
            .iter()
            .zip(&hashes)
            .map(|(r, h)| serde_json::json!({"id": r.id, "content_hash": h}))
            .collect();
        tl_core::io::write_json(&out.join("rows.json"), &rows)?;
        tl_core::io::write_json(
            &out.join("extract.json"),
            &serde_json::json!({
                "schema_version": JSON_SCHEMA_VERSION, "model": model.name, "model_sha256": sha, "dataset": ds.name,
                "dataset_sha256": ds.sha256, "layers": layers, "pool": a.pool, "contract": contract_json, "report": report,
            }),
        )?;
    }
    if global.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"schema_version": JSON_SCHEMA_VERSION, "report": report})
            )?
        );
        return Ok(());
    }
    if !global.quiet {
        println!(
            "{}: {} rows ({} distinct): {} computed, {} from the cache, {} skipped; {:.1} rows/s on {}",
            ds.name,
            report.rows,
            report.unique_rows,
            report.computed,
            report.cached,
            report.skipped.len(),
            report.rows_per_second,
            report.provider
        );
        for (node, store) in layers.iter().zip(&stores) {
            println!(
                "  {node}: width {} in {}",
                store.width().unwrap_or(0),
                store.dir().display()
            );
        }
        for s in report.skipped.iter().take(10) {
            println!("  skipped {}: {}", s.id, s.reason);
        }
    }
    Ok(())
}

/// What `compute` needs.
#[derive(Debug)]
pub struct Request<'a> {
    pub model: &'a str,
    pub contract: Option<&'a std::path::Path>,
    /// Another file of the same registry model (the BatchNorm-kept graph).
    pub model_file: Option<PathBuf>,
    pub layers: Vec<String>,
    pub pool: Pool,
    pub image_size: Option<u32>,
    /// `None`: [`default_batch_size`] for the device the runtime chose.
    pub batch_size: Option<usize>,
    pub part_size: usize,
    pub skip_bad: bool,
    /// Group texts of similar token counts into batches.
    pub bucket_by_length: bool,
    pub run: &'a RunArgs,
}

/// Features of every row of a dataset, in the feature store.
#[derive(Debug)]
pub struct Computed {
    pub model: resolve::ResolvedModel,
    pub sha: String,
    pub layers: Vec<String>,
    pub contract_json: serde_json::Value,
    pub report: tl_features::extract::ExtractReport,
    pub stores: Vec<tl_features::store::FeatureStore>,
}

/// Rows per ONNX Runtime call when none is asked for: 32 on the CPU (the earlier fixed
/// default), 128 on a GPU, where larger batches keep the device busy (a guess until
/// `tl gpu-check`, which times several sizes, has run on GPUs).
pub fn default_batch_size(provider: tl_runtime::Provider) -> usize {
    match provider {
        tl_runtime::Provider::Cpu => 32,
        tl_runtime::Provider::Cuda { .. } => 128,
    }
}

/// Runs (or finds in the cache) the extraction `r` asks for over `ds`.
pub fn compute(
    r: &Request<'_>,
    ds: &tl_data::Dataset,
    home: &std::path::Path,
    global: &Global,
) -> Result<Computed> {
    let mut model = resolve::resolve(r.model, r.contract, home)?;
    let rt = Runtime::init(&RuntimeOptions::device(r.run.device).with_home(home.to_path_buf()))?;
    if let Some(note) = &rt.device().note
        && !global.quiet
    {
        eprintln!("{note}");
    }
    if let Some(f) = &r.model_file {
        model.path = f.clone();
    }
    let sha = tl_core::hash::sha256_file(&model.path)?;
    let session_opts = SessionOptions::default()
        .threads(r.run.threads)
        .precision(r.run.precision);
    let mut opts = ExtractOptions::new(Vec::new());
    opts.pool = r.pool;
    opts.batch_size = r
        .batch_size
        .unwrap_or_else(|| default_batch_size(rt.device().provider));
    opts.part_size = r.part_size;
    opts.skip_bad = r.skip_bad;
    opts.bucket_by_length = r.bucket_by_length;
    opts.quiet = global.quiet || global.json;
    let (layers, contract_json, (report, stores)) = match &model.contract {
        Some(InputContract::Text(contract)) => {
            anyhow::ensure!(
                r.layers.is_empty(),
                "a text model gives one sentence embedding per row; --layer applies to image models"
            );
            anyhow::ensure!(
                r.image_size.is_none(),
                "--image-size applies to image models"
            );
            let dir = model.path.parent().context("model file has no directory")?;
            let encoder = TextEncoder::new(dir, contract)?;
            let mut session = Session::from_file(rt, &model.path, &session_opts)?;
            let result = tl_features::extract::extract_text(
                &mut session,
                &encoder,
                &sha,
                contract,
                &ds.rows,
                home,
                &opts,
            )?;
            (
                vec![contract.token_output.clone()],
                serde_json::to_value(InputContract::Text(contract.clone()))?,
                result,
            )
        }
        _ => {
            let mut contract = model.image_contract()?.clone();
            if let Some(size) = r.image_size {
                contract = contract.with_size(size)?;
            }
            let layers: Vec<String> = if r.layers.is_empty() {
                vec![
                    model
                        .entry
                        .as_ref()
                        .and_then(|e| e.outputs.as_ref().map(|o| o.features.clone()))
                        .or_else(|| model.logits.clone())
                        .context("cannot tell the model's feature output: name one with --layer")?,
                ]
            } else {
                r.layers.clone()
            };
            let refs: Vec<&str> = layers.iter().map(String::as_str).collect();
            let tapped = OnnxModel::load(&model.path)?.with_outputs(&refs)?;
            let mut session = Session::from_model(rt, &tapped, &model.name, &session_opts)?;
            opts.nodes = layers.clone();
            let result = tl_features::extract::extract(
                &mut session,
                &sha,
                &contract,
                &ds.rows,
                home,
                &opts,
            )?;
            (
                layers,
                serde_json::to_value(InputContract::Image(contract))?,
                result,
            )
        }
    };
    Ok(Computed {
        model,
        sha,
        layers,
        contract_json,
        report,
        stores,
    })
}

/// Sentence features from word vectors: computed directly (a TF-IDF weighting depends on
/// the texts embedded together, so these are not cached in the feature store).
fn word_vectors(
    a: &ExtractArgs,
    global: &Global,
    entry: &tl_hub::Entry,
    home: &std::path::Path,
) -> Result<()> {
    let weighting = match a.weighting.as_str() {
        "mean" => Weighting::Mean,
        "tfidf" => Weighting::Tfidf,
        other => anyhow::bail!("--weighting `{other}`: expected mean or tfidf"),
    };
    let wv = load_word_vectors(entry, home)?;
    let ds = data::load(&a.data, home)?;
    let texts = texts(&ds)?;
    let started = std::time::Instant::now();
    let e = wv.embed(&texts, weighting);
    let seconds = started.elapsed().as_secs_f64();
    let report = serde_json::json!({
        "schema_version": JSON_SCHEMA_VERSION, "model": entry.id, "dataset": ds.name, "rows": texts.len(),
        "weighting": a.weighting, "width": wv.dim(), "tokens": e.tokens, "oov_tokens": e.oov_tokens,
        "oov_rate": e.oov_rate(), "rows_without_known_words": e.empty_rows, "seconds": seconds,
    });
    if let Some(out) = &a.out {
        tl_features::store::write_matrix(
            &out.join(format!("{}-{}.safetensors", entry.id, a.weighting)),
            &e.features,
        )?;
        let rows: Vec<_> = ds
            .rows
            .iter()
            .map(|r| Ok(serde_json::json!({"id": r.id, "content_hash": r.content.hash()?})))
            .collect::<Result<_>>()?;
        tl_core::io::write_json(&out.join("rows.json"), &rows)?;
        tl_core::io::write_json(&out.join("extract.json"), &report)?;
    }
    if global.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if !global.quiet {
        println!(
            "{}: {} texts, {} tokens, out-of-vocabulary rate {:.2} % ({} rows without a known word), width {}, {:.2} s",
            ds.name,
            texts.len(),
            e.tokens,
            100.0 * e.oov_rate(),
            e.empty_rows,
            wv.dim(),
            seconds
        );
    }
    Ok(())
}

/// Whether a registry entry is a word-vector asset (`glove-6b-50d`).
pub fn is_word_vectors(entry: &tl_hub::Entry) -> bool {
    entry.kind == tl_hub::Kind::Asset && entry.files.iter().any(|f| f.name.ends_with(".npy"))
}

/// Loads a fetched word-vector asset (its `.npy` matrix and `vocab.txt`).
pub fn load_word_vectors(entry: &tl_hub::Entry, home: &std::path::Path) -> Result<WordVectors> {
    anyhow::ensure!(
        tl_hub::Fetcher::is_present(home, entry),
        "`{}` is not fetched: run `tl models fetch {}`",
        entry.id,
        entry.id
    );
    let dir = entry.dir(home);
    let npy = entry
        .files
        .iter()
        .find(|f| f.name.ends_with(".npy"))
        .map(|f| dir.join(&f.name))
        .context("no .npy file")?;
    Ok(WordVectors::load(&npy, &dir.join("vocab.txt"))?)
}

/// The texts of a dataset's rows, or an error naming the first row that is not text.
pub fn texts(ds: &tl_data::Dataset) -> Result<Vec<&str>> {
    ds.rows
        .iter()
        .map(|r| match &r.content {
            tl_data::Content::Text(t) => Ok(t.as_str()),
            _ => Err(anyhow::anyhow!(
                "row `{}` of `{}` is not text; word vectors embed texts",
                r.id,
                ds.name
            )),
        })
        .collect()
}

/// A node name as a file name (`blocks.15` stays, `a/b:0` becomes `a_b_0`).
fn sanitize(node: &str) -> String {
    node.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
