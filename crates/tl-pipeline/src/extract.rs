//! Extraction as a job of its own: features of a whole dataset written out in row order
//! (`<node>.safetensors`, `rows.json`, `extract.json`), and word-vector embeddings.

use std::path::Path;

use serde::Serialize;
use tl_data::Dataset;
use tl_features::wordvec::Weighting;
use tl_hub::Entry;

use crate::{Result, source::Extracted};

/// Schema version of `extract.json` and of the extraction reports.
pub const EXTRACT_SCHEMA_VERSION: u32 = 1;

/// A node name as a file name (`blocks.15` stays, `a/b:0` becomes `a_b_0`).
pub fn file_stem_of(node: &str) -> String {
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

/// `extract.json`: what an extraction written out was.
#[derive(Debug, Serialize)]
struct ExtractRecord<'a> {
    schema_version: u32,
    model: &'a str,
    model_sha256: &'a str,
    dataset: &'a str,
    dataset_sha256: &'a str,
    layers: &'a [String],
    pool: tl_features::extract::Pool,
    contract: &'a tl_core::InputContract,
    report: &'a tl_features::extract::ExtractReport,
}

/// Writes the features of `ds`'s rows (skipped rows left out) in row order into `out`:
/// one `<node>.safetensors` per layer, `rows.json` (id and content hash per row) and
/// `extract.json`.
pub fn write_extracted(
    out: &Path,
    ds: &Dataset,
    x: &Extracted,
    pool: tl_features::extract::Pool,
) -> Result<()> {
    let skipped: std::collections::HashSet<&str> =
        x.report.skipped.iter().map(|s| s.id.as_str()).collect();
    // The extraction already hashed every row: reuse its hashes rather than read files again.
    let (kept, hashes): (Vec<&tl_data::Row>, Vec<String>) = ds
        .rows
        .iter()
        .zip(&x.report.row_hashes)
        .filter(|(r, _)| !skipped.contains(r.id.as_str()))
        .map(|(r, h)| (r, h.clone()))
        .unzip();
    for (node, store) in x.layers.iter().zip(&x.stores) {
        let features = store.gather(&hashes)?;
        let file = out.join(format!("{}.safetensors", file_stem_of(node)));
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
        &ExtractRecord {
            schema_version: EXTRACT_SCHEMA_VERSION,
            model: &x.model.name,
            model_sha256: &x.sha,
            dataset: &ds.name,
            dataset_sha256: &ds.sha256,
            layers: &x.layers,
            pool,
            contract: &x.contract,
            report: &x.report,
        },
    )?;
    Ok(())
}

/// What embedding a dataset with word vectors measured.
#[derive(Debug, Clone, Serialize)]
pub struct WordVectorReport {
    pub schema_version: u32,
    pub model: String,
    pub dataset: String,
    pub rows: usize,
    pub weighting: String,
    pub width: usize,
    pub tokens: usize,
    pub oov_tokens: usize,
    pub oov_rate: f64,
    pub rows_without_known_words: usize,
    pub seconds: f64,
}

/// Sentence features from word vectors: computed directly (a TF-IDF weighting depends on
/// the texts embedded together, so these are not cached in the feature store); written
/// into `out` as `<id>-<weighting>.safetensors`, `rows.json` and `extract.json` when given.
pub fn embed_with_word_vectors(
    entry: &Entry,
    ds: &Dataset,
    weighting: Weighting,
    home: &Path,
    out: Option<&Path>,
) -> Result<WordVectorReport> {
    let wv = crate::source::load_word_vectors(entry, home)?;
    let texts = crate::source::texts(ds)?;
    let started = std::time::Instant::now();
    let e = wv.embed(&texts, weighting);
    let name = tl_core::Named::name(weighting);
    let report = WordVectorReport {
        schema_version: EXTRACT_SCHEMA_VERSION,
        model: entry.id.clone(),
        dataset: ds.name.clone(),
        rows: texts.len(),
        weighting: name.into(),
        width: wv.dim(),
        tokens: e.tokens,
        oov_tokens: e.oov_tokens,
        oov_rate: e.oov_rate(),
        rows_without_known_words: e.empty_rows,
        seconds: started.elapsed().as_secs_f64(),
    };
    if let Some(out) = out {
        tl_features::store::write_matrix(
            &out.join(format!("{}-{name}.safetensors", entry.id)),
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
    Ok(report)
}
