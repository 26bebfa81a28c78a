//! `tl extract`: flags onto an extraction request, one library call, printing.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use tl_features::{extract::Pool, wordvec::Weighting};
use tl_pipeline::{
    extract::{embed_with_word_vectors, write_extracted},
    source::{ExtractRequest, extract},
};

use crate::{Global, JSON_SCHEMA_VERSION, RunArgs, parse_named};

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
    #[arg(long, default_value = "mean", value_parser = parse_named::<Pool>)]
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
    #[arg(long, default_value = "mean", value_parser = parse_named::<Weighting>)]
    weighting: Weighting,
    /// Also write the dataset's features in row order: <DIR>/<node>.safetensors, rows.json, extract.json.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    #[command(flatten)]
    run: RunArgs,
}

pub fn run(a: &ExtractArgs, global: &Global) -> Result<()> {
    let env = global.env(Some(&a.run))?;
    let registry = tl_hub::Registry::builtin()?;
    let mut ds = env.dataset(&a.data)?;
    if let Ok(entry) = registry.get(&a.model)
        && tl_hub::resolve::is_word_vectors(entry)
    {
        env.provide(&[a.model.as_str()])?;
        return word_vectors(a, entry, &ds, &env.home, global);
    }
    if let Some(n) = a.limit {
        ds.rows.truncate(n);
    }
    let x = extract(
        &ExtractRequest {
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
        },
        &ds,
        &env,
    )?;
    if let Some(out) = &a.out {
        write_extracted(out, &ds, &x, a.pool)?;
    }
    let report = &x.report;
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
        for (node, store) in x.layers.iter().zip(&x.stores) {
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

/// Sentence features from word vectors (mean or TF-IDF-weighted), with the
/// out-of-vocabulary rate.
fn word_vectors(
    a: &ExtractArgs,
    entry: &tl_hub::Entry,
    ds: &tl_data::Dataset,
    home: &std::path::Path,
    global: &Global,
) -> Result<()> {
    let r = embed_with_word_vectors(entry, ds, a.weighting, home, a.out.as_deref())?;
    if global.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else if !global.quiet {
        println!(
            "{}: {} texts, {} tokens, out-of-vocabulary rate {:.2} % ({} rows without a known word), width {}, {:.2} s",
            r.dataset,
            r.rows,
            r.tokens,
            100.0 * r.oov_rate,
            r.rows_without_known_words,
            r.width,
            r.seconds
        );
    }
    Ok(())
}
