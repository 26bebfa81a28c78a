//! Where a run's features come from: a registry model or an ONNX file (extracted into the
//! feature store, or found there), word vectors, raw inputs (pixels, TF-IDF), or a
//! model's preprocessed inputs for fine-tuning from the input. Each source gathers the
//! features of rows by content hash.

use std::path::{Path, PathBuf};

use ndarray::{Array2, Axis};
use serde::{Deserialize, Serialize};
use tl_core::InputContract;
use tl_data::Dataset;
use tl_features::{
    extract::{ExtractOptions, ExtractReport, Pool},
    store::FeatureStore,
    text::TextEncoder,
    wordvec::{Weighting, WordVectors},
};
use tl_hub::{Entry, ResolvedModel};
use tl_onnx::OnnxModel;
use tl_runtime::{Runtime, Session, SessionOptions};

use crate::{Env, Error, Result, error::shape};

/// Baselines without a pretrained model (`pixels`, `tfidf`): the "from scratch" arm of
/// learning curves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawInput {
    /// Images: luma pixels at the image size (default [`RAW_PIXEL_SIZE`]).
    Pixels,
    /// Texts: a TF-IDF bag of the [`RAW_VOCAB`] most common words.
    #[serde(rename = "tfidf")]
    TfIdf,
}

tl_core::named_enum!(RawInput, "raw input", [Pixels => "pixels", TfIdf => "tfidf"]);

/// Default side of the `pixels` baseline (MNIST's own size).
pub const RAW_PIXEL_SIZE: u32 = 28;
/// Vocabulary of the `tfidf` baseline.
pub const RAW_VOCAB: usize = 5000;

impl RawInput {
    /// The raw input a model name stands for, if any.
    pub fn of_model(model: &str) -> Option<Self> {
        model.parse().ok()
    }
}

/// How features were made: what a cache key, a fingerprint or a comparison of two
/// domains' features needs to know. Serialised as before it had a type (untagged).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Provenance {
    /// A model's input contract (features of a model, or its preprocessed inputs).
    Model(InputContract),
    /// Raw pixels at a size.
    Pixels { raw: RawInput, size: u32 },
    /// A TF-IDF vocabulary.
    TfIdf { raw: RawInput, vocab: usize },
    /// Mean word vectors, with the out-of-vocabulary rate the rows had (fields in the
    /// order earlier versions wrote them).
    WordVectors {
        oov_rate: f64,
        weighting: String,
        word_vectors: String,
    },
}

impl Provenance {
    /// Whether two sources preprocess alike: what each domain measured of itself (word
    /// vectors' out-of-vocabulary rate) is not preprocessing.
    pub fn same_preprocessing(&self, other: &Self) -> bool {
        match (self, other) {
            (
                Provenance::WordVectors {
                    word_vectors: a,
                    weighting: wa,
                    ..
                },
                Provenance::WordVectors {
                    word_vectors: b,
                    weighting: wb,
                    ..
                },
            ) => a == b && wa == wb,
            _ => self == other,
        }
    }

    /// The model's input contract, for features of a model.
    pub fn contract(&self) -> Option<&InputContract> {
        match self {
            Provenance::Model(c) => Some(c),
            _ => None,
        }
    }
}

/// What [`feature_source`] extracts.
#[derive(Debug, Clone)]
pub struct FeatureRequest<'a> {
    pub model: &'a str,
    /// An input contract file for a model file that does not carry one.
    pub contract: Option<&'a Path>,
    /// Another file of the same registry model (the BatchNorm-kept graph).
    pub model_file: Option<PathBuf>,
    pub layer: Option<String>,
    pub pool: Pool,
    pub image_size: Option<u32>,
    /// The model's preprocessed inputs instead of features (fine-tuning from the input).
    pub inputs: bool,
}

impl<'a> FeatureRequest<'a> {
    /// The model's default feature output, mean-pooled, at its own size.
    pub fn new(model: &'a str) -> Self {
        Self {
            model,
            contract: None,
            model_file: None,
            layer: None,
            pool: Pool::Mean,
            image_size: None,
            inputs: false,
        }
    }
}

/// Features of rows, by content hash.
pub type Gather = Box<dyn Fn(&[String]) -> Result<Array2<f32>> + Send + Sync>;

/// Where a run's features come from, and how to get them.
pub struct Source {
    /// The node (or a description of the raw features) the features are.
    pub layer: String,
    pub width: usize,
    /// How spatial features were pooled (as requested; `none` for a model's inputs).
    pub pool: Pool,
    /// The ONNX backbone (none for word vectors and raw inputs).
    pub model_path: Option<PathBuf>,
    pub sha: String,
    pub provenance: Provenance,
    pub provider: String,
    pub store_dir: Option<PathBuf>,
    /// Features of rows by content hash.
    pub gather: Gather,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("layer", &self.layer)
            .field("width", &self.width)
            .field("model_path", &self.model_path)
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

/// Features of the rows of `ds` from a registry model, a model file, word vectors or raw
/// inputs: extracted (or found in the feature store), then gathered by content hash.
pub fn feature_source(r: &FeatureRequest<'_>, ds: &Dataset, env: &Env) -> Result<Source> {
    if let Some(raw) = RawInput::of_model(r.model) {
        return raw_source(raw, ds, r);
    }
    if r.inputs {
        return input_source(r, ds, env);
    }
    let registry_entry = tl_hub::Registry::builtin()?.get(r.model).ok().cloned();
    if let Some(entry) = registry_entry
        .as_ref()
        .filter(|e| tl_hub::resolve::is_word_vectors(e))
    {
        env.provide(&[r.model])?;
        return word_vector_source(entry, ds, r.pool, &env.home);
    }
    let extracted = extract(
        &ExtractRequest {
            model: r.model,
            contract: r.contract,
            model_file: r.model_file.clone(),
            layers: r.layer.clone().into_iter().collect(),
            pool: r.pool,
            image_size: r.image_size,
            batch_size: None,
            part_size: 1024,
            skip_bad: false,
            bucket_by_length: true,
        },
        ds,
        env,
    )?;
    let store = extracted
        .stores
        .into_iter()
        .next()
        .expect("one store per layer, and one layer");
    let width = store
        .width()
        .ok_or_else(|| Error::dataset(&ds.name, "no features were extracted (no rows)"))?;
    Ok(Source {
        layer: extracted.layers[0].clone(),
        width,
        pool: r.pool,
        model_path: Some(extracted.model.path.clone()),
        sha: extracted.sha,
        provenance: Provenance::Model(extracted.contract),
        provider: extracted.report.provider,
        store_dir: Some(store.dir().to_path_buf()),
        gather: Box::new(move |h: &[String]| Ok(store.gather(h)?)),
    })
}

/// Raw-input features of every row of `ds` (computed per run, not cached: they cost
/// less than reading a cache).
fn raw_source(raw: RawInput, ds: &Dataset, r: &FeatureRequest<'_>) -> Result<Source> {
    let (features, layer, provenance) = match raw {
        RawInput::Pixels => {
            let size = r.image_size.unwrap_or(RAW_PIXEL_SIZE);
            let rows: Vec<&tl_data::Row> = ds.rows.iter().collect();
            if rows
                .iter()
                .any(|r| matches!(r.content, tl_data::Content::Text(_)))
            {
                return Err(Error::model(
                    "pixels",
                    format!(
                        "is for images; dataset `{}` holds texts (use tfidf)",
                        ds.name
                    ),
                ));
            }
            (
                tl_features::raw::pixels(&rows, size)?,
                format!("pixels {size}x{size} luma"),
                Provenance::Pixels { raw, size },
            )
        }
        RawInput::TfIdf => {
            let texts =
                texts(ds).map_err(|e| Error::model("tfidf", format!("is for texts: {e}")))?;
            (
                tl_features::raw::tfidf(&texts, RAW_VOCAB),
                format!("tf-idf {RAW_VOCAB} words"),
                Provenance::TfIdf {
                    raw,
                    vocab: RAW_VOCAB,
                },
            )
        }
    };
    Ok(Source {
        layer,
        width: features.ncols(),
        pool: r.pool,
        model_path: None,
        sha: String::new(),
        provenance,
        provider: "cpu (no model)".into(),
        store_dir: None,
        gather: in_memory(ds, features)?,
    })
}

/// The model's preprocessed inputs (fine-tuning from the input): each row decoded,
/// resized and cropped by the input contract (at the image size), normalised and
/// flattened; the network computes everything after that.
fn input_source(r: &FeatureRequest<'_>, ds: &Dataset, env: &Env) -> Result<Source> {
    let mut model = env.model(r.model, r.contract)?;
    if let Some(f) = &r.model_file {
        model.path = f.clone();
    }
    let mut contract = model
        .image_contract()
        .map_err(|e| {
            Error::setting(
                "finetune",
                format!("all trains image models from their input: {e}"),
            )
        })?
        .clone();
    if let Some(size) = r.image_size {
        contract = contract.with_size(size)?;
    }
    if contract.layout != tl_core::contract::Layout::Nchw {
        return Err(Error::model(
            r.model,
            "fine-tuning from the input needs a model with NCHW input",
        ));
    }
    let rows: Vec<&tl_data::Row> = ds.rows.iter().collect();
    let x = tl_features::extract::preprocess_rows(&contract, &rows)?;
    let n = x.shape()[0];
    let width = x.len() / n.max(1);
    let features = x
        .into_shape_with_order((n, width))
        .map_err(shape("preprocessed inputs"))?;
    Ok(Source {
        layer: contract.input.clone(),
        width,
        pool: r.pool,
        sha: tl_core::hash::sha256_file(&model.path)?,
        model_path: Some(model.path),
        provenance: Provenance::Model(InputContract::Image(contract)),
        provider: "cpu (ndarray)".into(),
        store_dir: None,
        gather: in_memory(ds, features)?,
    })
}

/// The gather of features computed in memory for every row of `ds` (row i of `features`
/// is row i of the dataset): rows by content hash.
fn in_memory(ds: &Dataset, features: Array2<f32>) -> Result<Gather> {
    let index: std::collections::HashMap<String, usize> = ds
        .rows
        .iter()
        .enumerate()
        .map(|(i, r)| Ok((r.content.hash()?, i)))
        .collect::<Result<_>>()?;
    let name = ds.name.clone();
    Ok(Box::new(move |hashes: &[String]| {
        let idx: Vec<usize> = hashes
            .iter()
            .map(|h| {
                index
                    .get(h)
                    .copied()
                    .ok_or_else(|| Error::dataset(&name, format!("no row with content hash {h}")))
            })
            .collect::<Result<_>>()?;
        Ok(features.select(Axis(0), &idx))
    }))
}

/// Sentence features from word vectors (`glove-6b-50d`): the mean of the known words'
/// vectors, computed for the rows used (not cached: see DESIGN.md).
fn word_vector_source(entry: &Entry, ds: &Dataset, pool: Pool, home: &Path) -> Result<Source> {
    let wv = load_word_vectors(entry, home)?;
    let texts = texts(ds)?;
    let e = wv.embed(&texts, Weighting::Mean);
    let oov_rate = e.oov_rate();
    let features = e.features;
    Ok(Source {
        layer: format!("{} mean", entry.id),
        width: wv.dim(),
        pool,
        model_path: None,
        // Pinned in the registry and verified when fetched: no need to hash the file again.
        sha: entry
            .files
            .iter()
            .find(|f| f.name.ends_with(".npy"))
            .map(|f| f.sha256.clone())
            .unwrap_or_default(),
        provenance: Provenance::WordVectors {
            word_vectors: entry.id.clone(),
            weighting: "mean".into(),
            oov_rate,
        },
        provider: "cpu (no ONNX Runtime)".into(),
        store_dir: None,
        gather: in_memory(ds, features)?,
    })
}

/// What [`extract`] computes.
#[derive(Debug, Clone)]
pub struct ExtractRequest<'a> {
    pub model: &'a str,
    pub contract: Option<&'a Path>,
    /// Another file of the same registry model (the BatchNorm-kept graph).
    pub model_file: Option<PathBuf>,
    /// Graph values to extract (empty: the model's feature output).
    pub layers: Vec<String>,
    pub pool: Pool,
    pub image_size: Option<u32>,
    /// `None`: [`default_batch_size`] for the device the runtime chose.
    pub batch_size: Option<usize>,
    /// Rows per stored part (the unit an interrupted run resumes from).
    pub part_size: usize,
    /// Skip rows that cannot be decoded (counted and listed) instead of failing.
    pub skip_bad: bool,
    /// Group texts of similar token counts into batches.
    pub bucket_by_length: bool,
}

impl<'a> ExtractRequest<'a> {
    /// The model's feature output, mean-pooled, in parts of 1,024 rows.
    pub fn new(model: &'a str) -> Self {
        Self {
            model,
            contract: None,
            model_file: None,
            layers: Vec::new(),
            pool: Pool::Mean,
            image_size: None,
            batch_size: None,
            part_size: 1024,
            skip_bad: false,
            bucket_by_length: true,
        }
    }
}

/// Features of every row of a dataset, in the feature store.
#[derive(Debug)]
pub struct Extracted {
    pub model: ResolvedModel,
    pub sha: String,
    pub layers: Vec<String>,
    /// The input contract the rows were preprocessed by (the image size applied).
    pub contract: InputContract,
    pub report: ExtractReport,
    /// One store per layer.
    pub stores: Vec<FeatureStore>,
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

/// Runs (or finds in the feature store) the extraction `r` asks for over `ds`.
pub fn extract(r: &ExtractRequest<'_>, ds: &Dataset, env: &Env) -> Result<Extracted> {
    let mut model = env.model(r.model, r.contract)?;
    let rt = env.runtime()?;
    if let Some(f) = &r.model_file {
        model.path = f.clone();
    }
    let sha = tl_core::hash::sha256_file(&model.path)?;
    let session_opts = SessionOptions::default()
        .threads(env.compute.threads)
        .precision(env.compute.precision);
    let mut opts = ExtractOptions::new(Vec::new());
    opts.pool = r.pool;
    opts.batch_size = r
        .batch_size
        .unwrap_or_else(|| default_batch_size(rt.device().provider));
    opts.part_size = r.part_size;
    opts.skip_bad = r.skip_bad;
    opts.bucket_by_length = r.bucket_by_length;
    opts.progress = env.progress();
    let stage = Stage {
        model: &model,
        sha: &sha,
        rt,
        session: &session_opts,
        ds,
        env,
    };
    let (layers, contract, (report, stores)) = match &model.contract {
        Some(InputContract::Text(contract)) => extract_texts(r, contract, &stage, &opts)?,
        _ => extract_images(r, &stage, &mut opts)?,
    };
    Ok(Extracted {
        model,
        sha,
        layers,
        contract,
        report,
        stores,
    })
}

/// What both kinds of extraction share.
struct Stage<'a> {
    model: &'a ResolvedModel,
    sha: &'a str,
    rt: &'a Runtime,
    session: &'a SessionOptions,
    ds: &'a Dataset,
    env: &'a Env,
}

/// What an extraction stored: the layers, the contract applied, the report and stores.
type Stored = (
    Vec<String>,
    InputContract,
    (ExtractReport, Vec<FeatureStore>),
);

/// Sentence embeddings of a text model: one per row, at its token output.
fn extract_texts(
    r: &ExtractRequest<'_>,
    contract: &tl_core::TextContract,
    s: &Stage<'_>,
    opts: &ExtractOptions,
) -> Result<Stored> {
    if !r.layers.is_empty() {
        return Err(Error::setting(
            "layer",
            "applies to image models: a text model gives one sentence embedding per row",
        ));
    }
    if r.image_size.is_some() {
        return Err(Error::setting("image_size", "applies to image models"));
    }
    let dir = s.model.path.parent().unwrap_or(Path::new("."));
    let encoder = TextEncoder::new(dir, contract)?;
    let mut session = Session::from_file(s.rt, &s.model.path, s.session)?;
    s.env.report_device(s.rt);
    let result = tl_features::extract::extract_text(
        &mut session,
        &encoder,
        s.sha,
        contract,
        &s.ds.rows,
        &s.env.home,
        opts,
    )?;
    Ok((
        vec![contract.token_output.clone()],
        InputContract::Text(contract.clone()),
        result,
    ))
}

/// Features of an image model at the requested nodes (default: its feature output).
fn extract_images(
    r: &ExtractRequest<'_>,
    s: &Stage<'_>,
    opts: &mut ExtractOptions,
) -> Result<Stored> {
    let mut contract = s.model.image_contract()?.clone();
    if let Some(size) = r.image_size {
        contract = contract.with_size(size)?;
    }
    let layers: Vec<String> = if r.layers.is_empty() {
        vec![s.model.feature_output().ok_or_else(|| {
            Error::model(
                &s.model.name,
                "cannot tell its feature output: name a layer to extract",
            )
        })?]
    } else {
        r.layers.clone()
    };
    let refs: Vec<&str> = layers.iter().map(String::as_str).collect();
    let tapped = OnnxModel::load(&s.model.path)?.with_outputs(&refs)?;
    let mut session = Session::from_model(s.rt, &tapped, &s.model.name, s.session)?;
    s.env.report_device(s.rt);
    opts.nodes = layers.clone();
    let result = tl_features::extract::extract(
        &mut session,
        s.sha,
        &contract,
        &s.ds.rows,
        &s.env.home,
        opts,
    )?;
    Ok((layers, InputContract::Image(contract), result))
}

/// Loads a fetched word-vector asset (its `.npy` matrix and `vocab.txt`).
pub fn load_word_vectors(entry: &Entry, home: &Path) -> Result<WordVectors> {
    let (npy, vocab) = tl_hub::resolve::word_vector_files(entry, home)?;
    Ok(WordVectors::load(&npy, &vocab)?)
}

/// The texts of a dataset's rows, or an error naming the first row that is not text.
pub fn texts(ds: &Dataset) -> Result<Vec<&str>> {
    ds.rows
        .iter()
        .map(|r| match &r.content {
            tl_data::Content::Text(t) => Ok(t.as_str()),
            _ => Err(Error::dataset(
                &ds.name,
                format!("row `{}` is not text", r.id),
            )),
        })
        .collect()
}
