//! `tl adapt` and `tl shift`: domain adaptation and shift measures between a labelled
//! source dataset and an unlabelled target dataset, on one backbone's features.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use serde::{Deserialize, Serialize};
use tl_adapt::{
    AdaptConfig, Balance, Method,
    method::Selection,
    prior::PriorMethod,
    run::{Domains, RunSummary, adapt},
    shift::{ShiftConfig, ShiftReport, measure},
};
use tl_data::{
    Dataset, Part, Split, SplitConfig,
    segment::{Segments, median_words, segment},
};
use tl_features::extract::Pool;
use tl_head::{
    net::{HeadSpec, TaskSpec},
    train::{Labelled, TrainConfig},
};
use tl_nn::Tensor;
use tl_onnx::OnnxModel;
use tl_runtime::{Runtime, RuntimeOptions, Session, SessionOptions};

use crate::{
    Global, JSON_SCHEMA_VERSION, RunArgs, data,
    train::{FeatureRequest, Source, feature_source, read_config},
};

/// The run config of `tl adapt` (`config.json` of its output; `--config FILE.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaptRunConfig {
    pub source: String,
    pub target: String,
    pub model: String,
    /// The source task (default: the source's first task).
    pub task: Option<String>,
    /// The target's task holding the same classes (default: the source task's name if
    /// the target has it, else its first task); its labels are read for evaluation only.
    pub target_task: Option<String>,
    /// Source class → target class name, where the two datasets name classes differently.
    pub class_map: BTreeMap<String, String>,
    pub layer: Option<String>,
    pub pool: Pool,
    pub image_size: Option<u32>,
    /// How target texts are cut before embedding (`auto`: into sentences when they are
    /// much longer than the source's); a document's prediction pools its parts'.
    pub segments: Segments,
    /// The adapter (hidden layers, whose output the feature losses align) and classifier.
    pub head: HeadSpec,
    pub split_seed: u64,
    /// Fraction of the source's labelled rows for validation (model selection).
    pub val: f64,
    /// Labelled source rows per class.
    pub budget: Option<usize>,
    /// Semi-supervised adaptation: this many target rows per class, drawn by the split
    /// seed, keep their labels and join the source's training rows; they are left out of
    /// the target's scores. None: the target is unlabelled in training.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_labels: Option<usize>,
    pub adapt: AdaptConfig,
    pub train: TrainConfig,
    /// Bootstrap resamples of the target's evaluation intervals.
    pub bootstrap: usize,
}

impl Default for AdaptRunConfig {
    fn default() -> Self {
        let mut train = TrainConfig::default();
        train.epochs = 30;
        train.patience = Some(10);
        train.lr = 1e-3;
        Self {
            source: "mnist-5k".into(),
            target: "sklearn-digits-padded".into(),
            model: "efficientnet-lite0".into(),
            task: None,
            target_task: None,
            class_map: BTreeMap::new(),
            layer: None,
            pool: Pool::Mean,
            image_size: None,
            segments: Segments::Auto,
            head: HeadSpec::mlp(vec![256]),
            split_seed: 0,
            val: 0.1,
            budget: None,
            target_labels: None,
            adapt: AdaptConfig::default(),
            train,
            bootstrap: 1000,
        }
    }
}

/// Flags shared by `tl adapt` and `tl shift`: the two domains and the features.
#[derive(Debug, Args)]
pub struct DomainArgs {
    /// Labelled source: registry dataset or path (default mnist-5k).
    #[arg(long, value_name = "NAME|PATH")]
    source: Option<String>,
    /// Target: registry dataset or path (default sklearn-digits-padded); its labels, if any, are read only to evaluate.
    #[arg(long, value_name = "NAME|PATH")]
    target: Option<String>,
    /// Registry id or .onnx path (default efficientnet-lite0).
    #[arg(long, short)]
    model: Option<String>,
    /// Input contract (TOML) for a model file that does not carry one.
    #[arg(long, value_name = "FILE.toml")]
    contract: Option<PathBuf>,
    /// Source task (default: its first).
    #[arg(long, value_name = "NAME")]
    task: Option<String>,
    /// Target task with the same classes (default: the source task's name, else the target's first task).
    #[arg(long, value_name = "NAME")]
    target_task: Option<String>,
    /// Source class = target class, where names differ (e.g. rotten=negative,fresh=positive).
    #[arg(long, value_delimiter = ',', value_name = "SRC=TGT,...")]
    class_map: Option<Vec<String>>,
    /// Node whose features are used (default: the model's feature output).
    #[arg(long, value_name = "NODE")]
    layer: Option<String>,
    #[arg(long)]
    pool: Option<Pool>,
    /// Input side in pixels.
    #[arg(long, value_name = "N")]
    image_size: Option<u32>,
    /// Target texts cut before embedding: none, sentences (each sentence a row; a review's
    /// prediction is the mean of its sentences' log-probabilities), or auto (sentences when
    /// the target's median text has more than twice the source's words; images never)
    /// [default: auto].
    #[arg(long, value_name = "HOW", value_parser = parse_segments)]
    segments: Option<Segments>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
tl adapt --method mmd --out runs/digits-mmd        # mnist-5k → sklearn-digits-padded, EfficientNet-Lite0\n  \
tl adapt --source rotten-tomatoes --target drug-reviews --model minilm-l6 \\\n      \
--class-map rotten=negative,fresh=positive --method coral-closed\n  \
tl adapt --method dann --weight 0.3 --epochs 40 --json\n\n\
Methods (every setting is chosen without target labels; the target's labels, when it has \
them, are only read to report accuracy, macro-F1 and balanced accuracy with bootstrap \
intervals):\n  \
none          source only: the adapter + classifier trained on the source\n  \
coral         Deep CORAL loss on the adapter's output\n  \
coral-closed  closed-form CORAL of the source features, then the exact linear probe\n  \
mmd           multi-kernel Gaussian MMD² (median heuristic) on the adapter's output\n  \
entropy       entropy minimisation of the target predictions\n  \
mcc           minimum class confusion\n  \
shot          information maximisation + clustering pseudo-labels (SHOT-style)\n  \
self-train    confidence-thresholded pseudo-labels (--threshold)\n  \
dann          domain discriminator behind gradient reversal, λ ramped 0 → 1\n  \
prior         label-shift correction (EM, or --prior bbse) of the source probe\n  \
adabn         each domain's features through the backbone with its own BatchNorm statistics\n  \
propagate     the source probe's target predictions refined by SHOT's centroid clustering,\n                \
propagated on the target's cosine k-NN graph (--neighbours, α 0.99) and balanced to\n                \
--balance uniform|source|none class proportions by Sinkhorn; then a probe on the target\n                \
rows with those pseudo-labels\n\n\
Features are standardised per domain first (--no-standardize to skip). Trained methods keep \
the last epoch of a fixed schedule (--select source-val: the best source-validation epoch).\n\n\
Text targets much longer than the source (the median target text has more than twice the \
source's words, e.g. drug reviews against one-sentence film snippets) are cut into sentences \
by default (--segments auto): the method sees one row per sentence, and each review's \
prediction is the mean of its sentences' log-probabilities. --segments none keeps each text \
whole; --segments sentences always cuts.\n\n\
With --out DIR the run writes target_predictions.csv (each target row's class and \
probabilities) and model.onnx, the target-domain model: `tl predict --model DIR INPUT...`. \
--target-labels K makes it semi-supervised: K target rows per class keep their labels for \
training and the target is scored on the rest (on MNIST → digits at 112 px, seed 0, `none` goes \
from 56.4 % to 73.6 % with 5 labels per class and 78.9 % with 10).")]
pub struct AdaptArgs {
    /// Run config (TOML, the schema of config.json); flags override it.
    #[arg(long, value_name = "FILE.toml")]
    config: Option<PathBuf>,
    #[command(flatten)]
    domains: DomainArgs,
    /// none, coral, coral-closed, mmd, entropy, mcc, shot, self-train, dann, prior, propagate or adabn
    /// (a CNN with BatchNorm layers: each domain's features through the backbone with that
    /// domain's BatchNorm statistics, written to TL_HOME/adapted/; then trained as none).
    #[arg(long, value_parser = parse_method)]
    method: Option<Method>,
    /// Weight of the method's loss (default: the method's own).
    #[arg(long)]
    weight: Option<f32>,
    /// Hidden widths of the adapter, comma-separated (default 256).
    #[arg(long, value_delimiter = ',', value_name = "N,...")]
    hidden: Option<Vec<usize>>,
    /// Self-training's confidence threshold.
    #[arg(long)]
    threshold: Option<f32>,
    /// How `prior` estimates the target's class priors: em or bbse.
    #[arg(long, value_parser = parse_prior)]
    prior: Option<PriorMethod>,
    /// `propagate`: neighbours per row of the target's k-NN graph (default 10).
    #[arg(long, value_name = "K")]
    neighbours: Option<usize>,
    /// `propagate`: class proportions of the pseudo-labels: uniform (default), source (the source's frequencies) or none.
    #[arg(long, value_parser = parse_balance)]
    balance: Option<Balance>,
    /// Which epoch a trained method keeps: last (of the fixed schedule) or source-val (best source-validation accuracy).
    #[arg(long, value_parser = parse_selection)]
    select: Option<Selection>,
    /// Do not standardise each domain's features with its own statistics first.
    #[arg(long)]
    no_standardize: bool,
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long)]
    lr: Option<f32>,
    #[arg(long)]
    batch_size: Option<usize>,
    /// Seed of the split, the initialisation and every draw.
    #[arg(long)]
    seed: Option<u64>,
    /// Labelled source rows per class.
    #[arg(long, value_name = "K")]
    budget: Option<usize>,
    /// Semi-supervised: K labelled target rows per class (drawn by --seed) join the source's
    /// training rows; the target is scored on its other rows. Default: no target labels.
    #[arg(long, value_name = "K")]
    target_labels: Option<usize>,
    /// Output directory (config.json, metrics.json, weights, checkpoint/); default: none.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
tl shift                                   # mnist-5k vs sklearn-digits-padded, EfficientNet-Lite0\n  \
tl shift --layer blocks.5 --layer features --image-size 112\n  \
tl shift --source rotten-tomatoes --target drug-reviews --model minilm-l6 --json\n\n\
MMD² (unbiased; linear on RMS-scaled features and multi-kernel Gaussian) and the proxy \
A-distance 2(1 − 2ε) of a linear domain classifier (trained on half of a seeded sample \
of at most 1,000 rows per domain, ε its error on the other half): 0 means the domains \
look alike, 2 that a linear classifier separates them.")]
pub struct ShiftArgs {
    #[command(flatten)]
    domains: DomainArgs,
    /// Further nodes to measure (repeatable; with --layer, every one is measured).
    #[arg(long = "also-layer", value_name = "NODE")]
    also: Vec<String>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn parse_method(s: &str) -> Result<Method, String> {
    Method::parse(s).map_err(|e| e.to_string())
}

fn parse_segments(s: &str) -> Result<Segments, String> {
    Segments::parse(s).map_err(|e| e.to_string())
}

fn parse_selection(s: &str) -> Result<Selection, String> {
    match s {
        "last" => Ok(Selection::Last),
        "source-val" => Ok(Selection::SourceVal),
        _ => Err(format!("`{s}`: expected last or source-val")),
    }
}

fn parse_balance(s: &str) -> Result<Balance, String> {
    Balance::parse(s).map_err(|e| e.to_string())
}

fn parse_prior(s: &str) -> Result<PriorMethod, String> {
    match s {
        "em" => Ok(PriorMethod::Em),
        "bbse" => Ok(PriorMethod::Bbse),
        _ => Err(format!("`{s}`: expected em or bbse")),
    }
}

impl DomainArgs {
    fn apply(&self, c: &mut AdaptRunConfig) -> Result<()> {
        if let Some(v) = &self.source {
            c.source = v.clone();
        }
        if let Some(v) = &self.target {
            c.target = v.clone();
        }
        if let Some(v) = &self.model {
            c.model = v.clone();
        }
        if self.task.is_some() {
            c.task = self.task.clone();
        }
        if self.target_task.is_some() {
            c.target_task = self.target_task.clone();
        }
        if let Some(pairs) = &self.class_map {
            c.class_map.clear();
            for p in pairs {
                let (s, t) = p
                    .split_once('=')
                    .with_context(|| format!("--class-map `{p}`: expected SRC=TGT"))?;
                c.class_map.insert(s.trim().into(), t.trim().into());
            }
        }
        if self.layer.is_some() {
            c.layer = self.layer.clone();
        }
        if let Some(p) = self.pool {
            c.pool = p;
        }
        if self.image_size.is_some() {
            c.image_size = self.image_size;
        }
        if let Some(s) = self.segments {
            c.segments = s;
        }
        Ok(())
    }
}

impl AdaptArgs {
    fn config(&self) -> Result<AdaptRunConfig> {
        let mut c: AdaptRunConfig = read_config(self.config.as_deref(), "adapt config")?;
        self.domains.apply(&mut c)?;
        if let Some(m) = self.method {
            c.adapt.method = m;
        }
        if self.weight.is_some() {
            c.adapt.weight = self.weight;
        }
        if let Some(h) = &self.hidden {
            c.head.hidden = h.clone();
        }
        if let Some(t) = self.threshold {
            c.adapt.threshold = t;
        }
        if let Some(p) = self.prior {
            c.adapt.prior = p;
        }
        if let Some(k) = self.neighbours {
            c.adapt.neighbours = k;
        }
        if let Some(b) = self.balance {
            c.adapt.balance = b;
        }
        if let Some(sel) = self.select {
            c.adapt.selection = sel;
        }
        if self.no_standardize {
            c.adapt.per_domain_standardize = false;
        }
        if let Some(e) = self.epochs {
            c.train.epochs = e;
        }
        if let Some(lr) = self.lr {
            c.train.lr = lr;
        }
        if let Some(b) = self.batch_size {
            c.train.batch_size = b;
        }
        if let Some(s) = self.seed {
            c.split_seed = s;
            c.train.seed = s;
        }
        if self.budget.is_some() {
            c.budget = self.budget;
        }
        if self.target_labels.is_some() {
            c.target_labels = self.target_labels;
        }
        c.head.check()?;
        c.train.check()?;
        c.adapt.check()?;
        ensure!(
            c.head.kind == tl_head::net::HeadKind::Mlp,
            "adaptation needs an adapter: the head must have hidden layers (--hidden 256)"
        );
        Ok(c)
    }
}

/// The two domains' features, labels and identities.
pub struct Prepared {
    pub task: TaskSpec,
    pub source_train: (Tensor, Vec<Vec<Option<u32>>>),
    pub source_val: (Tensor, Vec<Vec<Option<u32>>>),
    /// One row per target row, or per part (sentence) of one when segmented.
    pub target: Tensor,
    /// The target's labels mapped onto the source classes: evaluation only.
    pub target_labels: Option<Vec<u32>>,
    /// When the target is segmented: the document (target row) of each part row.
    pub target_owner: Option<Vec<usize>>,
    /// Target documents (rows before segmentation).
    pub target_docs: usize,
    /// The segmentation used (`auto` resolved), and the median words per text of the
    /// source and the target that resolved it (none for images).
    pub segments: Segments,
    pub median_words: (Option<f64>, Option<f64>),
    pub source_name: String,
    pub target_name: String,
    /// What the run trains on, for the checkpoint's identity.
    pub fingerprint: String,
    pub layer: String,
    pub split: Split,
    /// The ONNX backbone of the target's features (AdaBN: the target-adapted one), its
    /// sha256 and input contract: what the exported model is built on (none for word
    /// vectors).
    pub target_backbone: Option<(PathBuf, String, serde_json::Value)>,
    /// The target documents' row ids, in the order of `target_labels`.
    pub target_ids: Vec<String>,
    /// `--target-labels`: the label of each target row (part row when segmented) that
    /// joins training, `None` for the rest; and which documents those are (left out of
    /// the scores).
    pub target_train_labels: Option<Vec<Option<u32>>>,
    pub target_labelled_docs: Vec<bool>,
}

/// Loads both datasets, matches their label sets, splits the source, and extracts the
/// features of every row used.
pub fn prepare(
    c: &AdaptRunConfig,
    contract: Option<&Path>,
    run: &RunArgs,
    home: &Path,
    global: &Global,
    split_val: f64,
    sample: Option<usize>,
) -> Result<Prepared> {
    let source = data::load(&c.source, home)?;
    let mut target = data::load(&c.target, home)?;
    let task_name = match &c.task {
        Some(t) => t.clone(),
        None => source
            .tasks
            .first()
            .with_context(|| format!("source `{}` has no labelled task", source.name))?
            .name
            .clone(),
    };
    let st = source.task_index(&task_name)?;
    let classes = source.tasks[st].classes.clone();
    for s in c.class_map.keys() {
        ensure!(
            classes.contains(s),
            "--class-map names source class `{s}`, which task `{task_name}` of `{}` does not have ({})",
            source.name,
            classes.join(", ")
        );
    }
    // The target's task: named, or the same name, or its first; none for an unlabelled target.
    let tt = match &c.target_task {
        Some(t) => Some(target.task_index(t)?),
        None => target
            .task_index(&task_name)
            .ok()
            .or((!target.tasks.is_empty()).then_some(0)),
    };
    // A task no row is labelled for (an unlabelled image folder, a file list) leaves the
    // target unlabelled: every row takes part.
    let tt = tt.filter(|&t| target.rows.iter().any(|r| r.labels[t].is_some()));
    if let Some(tt) = tt {
        let back: BTreeMap<&str, &str> = c
            .class_map
            .iter()
            .map(|(s, t)| (t.as_str(), s.as_str()))
            .collect();
        for cl in &mut target.tasks[tt].classes {
            if let Some(s) = back.get(cl.as_str()) {
                *cl = s.to_string();
            }
        }
        target.map_labels_onto(tt, &classes).with_context(|| {
            format!(
                "the label sets do not match: source task `{task_name}` has {}; map names with --class-map SRC=TGT",
                classes.join(", ")
            )
        })?;
    }
    // Target rows: those its task labels (a binary task's other rows, e.g. neutral
    // reviews, are not part of it), or every row of an unlabelled target. Only the
    // presence of a label is read here, never its value.
    // In content-hash order: the rows a method sees, and their order, depend on the
    // target's contents only, not on its file names or label folders.
    let mut target_rows: Vec<(String, &tl_data::Row)> = target
        .rows
        .iter()
        .filter(|r| tt.is_none_or(|t| r.labels[t].is_some()))
        .map(|r| Ok((r.content.hash()?, r)))
        .collect::<Result<_>>()?;
    target_rows.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(k) = sample {
        target_rows = seeded_sample(target_rows, k, c.split_seed, "sample/target");
    }
    ensure!(
        !target_rows.is_empty(),
        "target `{}` has no rows{}",
        target.name,
        tt.map_or(String::new(), |t| format!(
            " labelled for task `{}`",
            target.tasks[t].name
        ))
    );
    let mut sc = SplitConfig::new(&task_name, c.split_seed);
    sc.val_fraction = split_val;
    sc.test_fraction = 0.0;
    sc.budget = c.budget;
    sc.domain = Some("source".into());
    let mut split = Split::stratified(&source, &sc)?;
    if let Some(k) = sample {
        // Only the measure's sample is extracted; the other rows become unlabelled.
        let train: Vec<usize> = (0..split.rows.len())
            .filter(|&i| split.rows[i].split == Part::Train)
            .collect();
        let keep: std::collections::HashSet<usize> =
            seeded_sample(train, k, c.split_seed, "sample/source")
                .into_iter()
                .collect();
        for (i, r) in split.rows.iter_mut().enumerate() {
            if r.split == Part::Train && !keep.contains(&i) {
                r.split = Part::Unlabelled;
                r.labels.clear();
            }
        }
    }
    // Features: one request per dataset, the same model, layer, pooling and size.
    let source_sub = split.used_rows(&source);
    // Segmentation is decided from the texts' lengths alone (labels unused).
    let words = (
        median_words(&source_sub.rows),
        median_words(target_rows.iter().map(|(_, r)| *r)),
    );
    let segments = c.segments.resolve(words.0, words.1);
    let (target_sub, target_owner) = if segments == Segments::Sentences {
        let s = segment(&target, target_rows.iter().map(|(_, r)| *r))
            .with_context(|| format!("--segments sentences on target `{}`", target.name))?;
        (s.dataset, Some(s.owner))
    } else {
        let rows = target_rows.iter().map(|(_, r)| (*r).clone()).collect();
        (
            Dataset {
                rows,
                ..target.clone()
            },
            None,
        )
    };
    let mut req = FeatureRequest {
        model: &c.model,
        contract,
        model_file: None,
        layer: c.layer.clone(),
        pool: c.pool,
        image_size: c.image_size,
        inputs: false,
        run,
    };
    // AdaBN: each domain through the backbone with its own BatchNorm statistics. The
    // backbone's own are ImageNet's, a third domain: the head learns on source features
    // normalised by the source's statistics and reads target features normalised by the
    // target's, so both reach it on the same footing.
    let adabn = c.adapt.method == Method::AdaBn;
    if adabn {
        req.model_file = Some(adabn_backbone(c, contract, &source_sub, run, home, global)?);
    }
    let src: Source = feature_source(&req, &source_sub, home, global)?;
    if adabn {
        req.model_file = Some(adabn_backbone(c, contract, &target_sub, run, home, global)?);
    }
    let tgt: Source = feature_source(&req, &target_sub, home, global)?;
    // What each domain measured of itself (word vectors' out-of-vocabulary rate) is not
    // preprocessing.
    let preprocessing = |v: &serde_json::Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("oov_rate");
        }
        v
    };
    ensure!(
        src.width == tgt.width
            && preprocessing(&src.contract_json) == preprocessing(&tgt.contract_json),
        "source features (width {}) and target features (width {}) differ in width or preprocessing",
        src.width,
        tgt.width
    );
    let part = |p: Part| -> Result<(Tensor, Vec<Vec<Option<u32>>>)> {
        let rows: Vec<&tl_data::SplitRow> = split.rows.iter().filter(|r| r.split == p).collect();
        let hashes: Vec<String> = rows.iter().map(|r| r.content_hash.clone()).collect();
        let x = (src.gather)(&hashes)?;
        let labels = rows
            .iter()
            .map(|r| {
                r.labels
                    .get(&task_name)
                    .and_then(|c| classes.iter().position(|k| k == c))
                    .map(|i| i as u32)
            })
            .collect();
        Ok((x.into_dyn(), vec![labels]))
    };
    let (source_train, source_val) = (part(Part::Train)?, part(Part::Val)?);
    let target_hashes: Vec<String> = target_rows.iter().map(|(h, _)| h.clone()).collect();
    let xt = if target_owner.is_some() {
        let parts: Vec<String> = target_sub
            .rows
            .iter()
            .map(|r| r.content.hash())
            .collect::<Result<_, _>>()?;
        (tgt.gather)(&parts)?
    } else {
        (tgt.gather)(&target_hashes)?
    };
    let target_labels: Option<Vec<u32>> = tt.map(|t| {
        target_rows
            .iter()
            .map(|(_, r)| r.labels[t].expect("filtered"))
            .collect()
    });
    // `--target-labels K`: K documents per class keep their labels for training, drawn
    // from the stream `target-labels/<class>` of the split seed in content-hash order.
    let mut target_labelled_docs = vec![false; target_rows.len()];
    if let Some(k) = c.target_labels {
        let y = target_labels.as_ref().with_context(|| {
            format!(
                "--target-labels {k}: target `{}` has no labels for task `{task_name}`",
                target.name
            )
        })?;
        for (ci, class) in classes.iter().enumerate() {
            let of_class: Vec<usize> = (0..y.len()).filter(|&i| y[i] == ci as u32).collect();
            ensure!(
                of_class.len() > k,
                "--target-labels {k}: target class `{class}` has {} rows; it needs more than {k}, to keep some for scoring",
                of_class.len()
            );
            for i in seeded_sample(of_class, k, c.split_seed, &format!("target-labels/{class}")) {
                target_labelled_docs[i] = true;
            }
        }
    }
    let target_train_labels = c.target_labels.map(|_| {
        let y = target_labels.as_ref().expect("checked above");
        let doc_label = |d: usize| target_labelled_docs[d].then_some(y[d]);
        match &target_owner {
            Some(owner) => owner.iter().map(|&d| doc_label(d)).collect(),
            None => (0..y.len()).map(doc_label).collect(),
        }
    });
    let labelled_hashes: Vec<&String> = target_rows
        .iter()
        .zip(&target_labelled_docs)
        .filter(|(_, l)| **l)
        .map(|((h, _), _)| h)
        .collect();
    let fingerprint = tl_core::hash::sha256_bytes(
        serde_json::to_string(&serde_json::json!({
            "model": src.sha, "target_model": tgt.sha, "layer": src.layer, "contract": src.contract_json,
            "source": source.sha256, "target": target.sha256, "split_rows": split.rows.len(),
            "split_seed": c.split_seed, "target_rows": target_hashes, "segments": segments.name(),
            "target_labelled": labelled_hashes,
        }))?
        .as_bytes(),
    );
    Ok(Prepared {
        task: TaskSpec {
            name: task_name,
            classes,
            weight: 1.0,
        },
        source_train,
        source_val,
        target: xt.into_dyn(),
        target_labels,
        target_docs: target_rows.len(),
        target_owner,
        segments,
        median_words: words,
        source_name: source.name.clone(),
        target_name: target.name.clone(),
        fingerprint,
        layer: src.layer.clone(),
        split,
        target_ids: target_rows.iter().map(|(_, r)| r.id.clone()).collect(),
        target_train_labels,
        target_labelled_docs,
        target_backbone: tgt
            .model_path
            .clone()
            .map(|m| (m, tgt.sha.clone(), tgt.contract_json.clone())),
    })
}

/// The AdaBN backbone of one domain: the registry model's BatchNorm-kept graph with every
/// BatchNorm's mean and variance re-estimated on the domain's images (AdaBN, Li et al.
/// 2016), written once to `TL_HOME/adapted/<key>/model.onnx` and reused. The key covers the
/// backbone's bytes, the preprocessing and the rows (by content, in order); labels are
/// never read.
fn adabn_backbone(
    c: &AdaptRunConfig,
    contract: Option<&Path>,
    domain: &Dataset,
    run: &RunArgs,
    home: &Path,
    global: &Global,
) -> Result<PathBuf> {
    let registry = tl_hub::Registry::builtin()?;
    let kept = registry
        .get(&c.model)
        .ok()
        .filter(|e| e.model_bn.is_some())
        .with_context(|| {
            format!(
                "--method adabn needs a CNN whose BatchNorm layers are kept (efficientnet-lite0, mobilenet-v2); `{}` has none",
                c.model
            )
        })
        .and_then(|e| Ok(tl_hub::model_path(home, e, true)?))?;
    let resolved = crate::resolve::resolve(&c.model, contract, home)?;
    let mut image = resolved.image_contract()?.clone();
    if let Some(size) = c.image_size {
        image = image.with_size(size)?;
    }
    let hashes: Vec<String> = domain
        .rows
        .iter()
        .map(|r| r.content.hash())
        .collect::<std::result::Result<_, _>>()?;
    let key = tl_core::hash::sha256_bytes(
        serde_json::to_string(&serde_json::json!({
            "method": "adabn", "backbone": tl_core::hash::sha256_file(&kept)?,
            "contract": image, "batch": ADABN_BATCH, "rows": hashes,
        }))?
        .as_bytes(),
    );
    let path = home.join("adapted").join(&key[..32]).join("model.onnx");
    if path.is_file() {
        return Ok(path);
    }
    let backbone = OnnxModel::load(&kept)?;
    let (stats_model, norms) = backbone.with_batch_statistics()?;
    if !global.quiet && !global.json {
        eprintln!(
            "AdaBN: re-estimating {} BatchNorm statistics of `{}` on {} rows of `{}`",
            norms.len(),
            c.model,
            domain.rows.len(),
            domain.name
        );
    }
    let rt = Runtime::init(&RuntimeOptions::device(run.device).with_home(home.to_path_buf()))?;
    let opts = SessionOptions::default().threads(run.threads);
    let mut session = Session::from_model(rt, &stats_model, &c.model, &opts)?;
    let rows: Vec<&tl_data::Row> = domain.rows.iter().collect();
    let stats =
        tl_features::adabn::target_statistics(&mut session, &norms, &image, &rows, ADABN_BATCH)?;
    let mut adapted = backbone.with_running_statistics(&stats)?;
    adapted.set_metadata(
        "tl.adabn",
        // Not the domain's name: the file is shared by every dataset with these rows.
        &serde_json::json!({"backbone": c.model, "rows": rows.len()}).to_string(),
    );
    std::fs::create_dir_all(path.parent().expect("has a parent"))?;
    adapted.save(&path)?;
    Ok(path)
}

/// Target rows per batch of AdaBN's statistics pass (each batch is normalised by its own
/// statistics on the way, as in training).
const ADABN_BATCH: usize = 32;

/// At most `k` of `items`, drawn from the stream `stream` of `seed`, in their order.
fn seeded_sample<T>(items: Vec<T>, k: usize, seed: u64, stream: &str) -> Vec<T> {
    let keep: std::collections::HashSet<usize> =
        tl_core::rng::sample_indices(items.len(), k, seed, stream)
            .into_iter()
            .collect();
    items
        .into_iter()
        .enumerate()
        .filter(|(i, _)| keep.contains(i))
        .map(|(_, t)| t)
        .collect()
}

/// `metrics.json` of `tl adapt`.
#[derive(Debug, Serialize, Deserialize)]
pub struct AdaptMetrics {
    pub schema_version: u32,
    pub source: String,
    pub target: String,
    pub layer: String,
    pub rows: BTreeMap<String, usize>,
    /// How the target's texts were cut (`auto` resolved): `sentences` means the method saw
    /// sentence rows and each target row's prediction pools its sentences'.
    pub segments: Segments,
    /// Median words per text of the source and the target (`null` for images): what
    /// `auto` decided from.
    pub median_words: (Option<f64>, Option<f64>),
    pub summary: RunSummary,
    /// Evaluated with the target's labels, which nothing above used; the calibration
    /// section's temperature is fitted on the source validation rows.
    pub target_scores: Option<tl_eval::Evaluation>,
    pub shift_before: ShiftReport,
    /// Between the adapter's outputs (trained methods) or the transformed source and the
    /// target (closed-form CORAL).
    pub shift_after: Option<ShiftReport>,
    pub seconds: BTreeMap<String, f64>,
    /// The exported target-domain model (`model.onnx` in the run directory: the
    /// backbone, the target's standardisation, the head; `tl predict --model DIR`), when
    /// the features come from an ONNX backbone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exported: Option<PathBuf>,
}

/// Log-probabilities clipped at 1e-300: logits that give back `proba` under softmax.
/// The run's predictions for every target document, in `metrics.json`'s row order.
pub const TARGET_PREDICTIONS: &str = "target_predictions.csv";

/// `id,class,p_<class>...`: each target document's predicted class and probabilities,
/// written atomically.
fn write_target_predictions(
    dest: &Path,
    ids: &[String],
    classes: &[String],
    proba: &ndarray::Array2<f64>,
) -> Result<()> {
    ensure!(
        ids.len() == proba.nrows(),
        "{} target ids for {} predictions",
        ids.len(),
        proba.nrows()
    );
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["id".to_string(), "class".to_string()];
    header.extend(classes.iter().map(|c| format!("p_{c}")));
    w.write_record(&header)?;
    for (id, row) in ids.iter().zip(proba.rows()) {
        let best = (0..row.len()).fold(0, |b, k| if row[k] > row[b] { k } else { b });
        let mut rec = vec![id.clone(), classes[best].clone()];
        rec.extend(row.iter().map(|p| format!("{p:.6}")));
        w.write_record(&rec)?;
    }
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    tl_core::io::atomic_write(dest, &bytes)?;
    Ok(())
}

fn log_proba(proba: &ndarray::Array2<f64>) -> ndarray::Array2<f64> {
    proba.mapv(|p| p.max(1e-300).ln())
}

fn view2(t: &Tensor) -> ndarray::ArrayView2<'_, f32> {
    t.view().into_dimensionality().expect("2-D features")
}

pub fn run(a: &AdaptArgs, global: &Global) -> Result<()> {
    let c = a.config()?;
    let (metrics, classes) = execute(
        &c,
        a.out.as_deref(),
        a.domains.contract.as_deref(),
        &a.domains.run,
        global,
    )?;
    print_result(&metrics, &classes, global)
}

/// One `tl adapt` run with `c`, writing its artifact into `out` when given: the metrics
/// and the task's class names.
pub(crate) fn execute(
    c: &AdaptRunConfig,
    out: Option<&Path>,
    contract: Option<&Path>,
    run_args: &crate::RunArgs,
    global: &Global,
) -> Result<(AdaptMetrics, Vec<String>)> {
    let c = c.clone();
    let home = global.home()?;
    let say = |s: String| {
        if !global.quiet && !global.json {
            eprintln!("{s}");
        }
    };
    let started = Instant::now();
    let p = prepare(&c, contract, run_args, &home, global, c.val, None)?;
    let extract_seconds = started.elapsed().as_secs_f64();
    let mut rows: BTreeMap<String, usize> = [
        ("source_train", p.source_train.0.shape()[0]),
        ("source_val", p.source_val.0.shape()[0]),
        ("target", p.target_docs),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Some(k) = c.target_labels {
        let n = p.target_labelled_docs.iter().filter(|&&l| l).count();
        rows.insert("target_labelled".into(), n);
        say(format!(
            "--target-labels {k}: {n} target rows ({k} per class) keep their labels and join the source's training rows; the target is scored on the other {}",
            p.target_docs - n
        ));
    }
    if p.target_owner.is_some() {
        rows.insert("target_sentences".into(), p.target.shape()[0]);
        say(format!(
            "target texts cut into {} sentences (--segments {}; median words per text: source {}, target {}); a review's prediction pools its sentences'",
            p.target.shape()[0],
            c.segments.name(),
            p.median_words.0.unwrap_or(f64::NAN),
            p.median_words.1.unwrap_or(f64::NAN),
        ));
    }
    say(format!(
        "{} → {}: {} source training rows, {} source validation rows, {} target rows (unlabelled in training); features `{}` width {}",
        p.source_name,
        p.target_name,
        rows["source_train"],
        rows["source_val"],
        rows["target"],
        p.layer,
        p.target.shape()[1]
    ));
    let shift_cfg = ShiftConfig {
        seed: c.split_seed,
        ..ShiftConfig::default()
    };
    let before = measure(view2(&p.source_train.0), view2(&p.target), &shift_cfg)?;
    say(format!(
        "shift before: proxy A-distance {:.3}, MMD² (Gaussian) {:.4}",
        before.proxy_a_distance, before.mmd2_gaussian
    ));
    if let Some(out) = out {
        tl_core::io::create_dir_all(out)?;
        tl_core::io::write_json(&out.join("config.json"), &c)?;
    }
    let d = Domains {
        task: &p.task,
        source_train: Labelled {
            x: &p.source_train.0,
            labels: &p.source_train.1,
        },
        source_val: Labelled {
            x: &p.source_val.0,
            labels: &p.source_val.1,
        },
        target: &p.target,
        target_labels: p.target_train_labels.as_deref(),
    };
    let t_train = Instant::now();
    let quiet = global.quiet || global.json;
    let mut on_epoch = |log: &tl_head::train::EpochLog| {
        if !quiet {
            let val = log.val.first().map_or(String::new(), |s| {
                format!(", source validation accuracy {:.4}", s.accuracy)
            });
            eprintln!(
                "epoch {:>3}: loss {:.4}{val} ({:.1} s)",
                log.epoch + 1,
                log.train_loss,
                log.seconds
            );
        }
    };
    let (mut adapted, summary) = adapt(
        &d,
        &c.adapt,
        &c.head,
        &c.train,
        out.map(|o| (o, p.fingerprint.as_str())),
        &mut on_epoch,
    )?;
    let train_seconds = t_train.elapsed().as_secs_f64();
    let proba = adapted.predict_proba(&p.target)?;
    let snd = tl_adapt::select::snd(proba.view(), tl_adapt::select::SND_TAU)?;
    say(format!(
        "SND of the target predictions (label-free): {snd:.4}"
    ));
    // Each target document's logits: its sentences' pooled, or its own.
    let zt = match &p.target_owner {
        Some(owner) => {
            tl_adapt::pool::pool_log_proba(log_proba(&proba).view(), owner, p.target_docs)?
        }
        None => log_proba(&proba),
    };
    let target = match &p.target_labels {
        Some(y) => {
            // Documents whose labels joined training (`--target-labels`) are not scored.
            let scored: Vec<usize> = (0..y.len())
                .filter(|&i| !p.target_labelled_docs[i])
                .collect();
            let zt = zt.select(ndarray::Axis(0), &scored);
            let y: &Vec<u32> = &scored.iter().map(|&i| y[i]).collect();
            let zv = log_proba(&adapted.predict_proba(&p.source_val.0)?);
            let yv: Vec<u32> = p.source_val.1[0].iter().flatten().copied().collect();
            ensure!(
                yv.len() == zv.nrows(),
                "source validation rows without a label"
            );
            Some(tl_eval::Evaluation::new(
                &p.task.classes,
                tl_eval::Scored {
                    logits: zt.view(),
                    labels: y,
                },
                Some(tl_eval::Scored {
                    logits: zv.view(),
                    labels: &yv,
                }),
                tl_eval::EvalOptions {
                    resamples: c.bootstrap,
                    seed: c.split_seed,
                    ..Default::default()
                },
            )?)
        }
        None => None,
    };
    let (s_al, t_al) = adapted.aligned(&p.source_train.0, &p.target)?;
    let after = Some(measure(s_al.view(), t_al.view(), &shift_cfg)?);
    let mut metrics = AdaptMetrics {
        schema_version: JSON_SCHEMA_VERSION,
        source: p.source_name.clone(),
        target: p.target_name.clone(),
        layer: p.layer.clone(),
        rows,
        segments: p.segments,
        median_words: p.median_words,
        summary,
        target_scores: target,
        shift_before: before,
        shift_after: after,
        seconds: [("features", extract_seconds), ("adapt", train_seconds)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        exported: None,
    };
    if let Some(out) = out {
        // The target-domain predictor: weights by HeadNet name, head.json, model.onnx.
        let predictor = adapted.target_predictor(&c.head, &p.task);
        tl_nn::checkpoint::save_tensors(&out.join("weights.safetensors"), &predictor.params)?;
        p.split.save(&out.join("split.json"))?;
        write_target_predictions(
            &out.join(TARGET_PREDICTIONS),
            &p.target_ids,
            &p.task.classes,
            &tl_adapt::loss::probabilities(zt.view()),
        )?;
        if let Some((model_file, sha, contract)) = &p.target_backbone {
            let meta = crate::train::HeadMeta {
                schema_version: crate::train::ARTIFACT_SCHEMA_VERSION,
                tasks: vec![p.task.clone()],
                input_value: p.layer.clone(),
                pool: c.pool,
                model_file: model_file.clone(),
                model_sha256: sha.clone(),
                contract: contract.clone(),
                imported: Vec::new(),
                feature_width: p.target.shape()[1],
                head: Some(predictor.head.clone()),
                source_model: Some(c.model.clone()),
                affine: predictor
                    .affine
                    .map(|(scale, shift)| crate::train::Affine { scale, shift }),
                logit_offset: predictor.logit_offset,
                segments: (p.segments == Segments::Sentences).then_some(Segments::Sentences),
            };
            tl_core::io::write_json(&out.join("head.json"), &meta)?;
            let dest = out.join("model.onnx");
            crate::train::export_artifact(out, &dest)
                .with_context(|| format!("exporting the adapted model to `{}`", dest.display()))?;
            metrics.exported = Some(dest);
        }
        tl_core::io::write_json(&out.join("metrics.json"), &metrics)?;
        write_report(out, &c, &metrics, snd)?;
    }
    Ok((metrics, p.task.classes.clone()))
}

fn print_result(metrics: &AdaptMetrics, classes: &[String], global: &Global) -> Result<()> {
    if global.json {
        println!("{}", serde_json::to_string_pretty(&metrics)?);
        return Ok(());
    }
    let s = &metrics.summary;
    println!(
        "method {} (weight {}): source validation accuracy {:.4}; selected by {}",
        s.method, s.weight, s.source_val_accuracy, s.selection
    );
    match &metrics.target_scores {
        Some(t) => {
            let f = |i: &tl_eval::Interval| format!("{:.4} [{:.4}, {:.4}]", i.value, i.low, i.high);
            let read = match metrics.rows.get("target_labelled") {
                Some(n) => format!("{n} other target rows' labels trained"),
                None => "labels read only here".into(),
            };
            println!(
                "target ({} rows, {read}): accuracy {}, macro-F1 {}, balanced accuracy {}",
                t.rows,
                f(&t.accuracy),
                f(&t.macro_f1),
                f(&t.balanced_accuracy)
            );
        }
        None => println!("target has no labels: no target accuracy to report"),
    }
    if let Some(after) = &metrics.shift_after {
        println!(
            "shift: proxy A-distance {:.3} → {:.3}, MMD² (Gaussian) {:.4} → {:.4}",
            metrics.shift_before.proxy_a_distance,
            after.proxy_a_distance,
            metrics.shift_before.mmd2_gaussian,
            after.mmd2_gaussian
        );
    }
    if let Some(pr) = &s.target_priors {
        let shown: Vec<String> = classes
            .iter()
            .zip(pr)
            .map(|(c, v)| format!("{c} {v:.3}"))
            .collect();
        let what = if s.method == Method::Propagate {
            "target pseudo-label proportions"
        } else {
            "estimated target priors"
        };
        println!("{what}: {}", shown.join(", "));
    }
    Ok(())
}

/// `report.md` and `report.html` of an adaptation run.
fn write_report(out: &Path, c: &AdaptRunConfig, m: &AdaptMetrics, snd: f64) -> Result<()> {
    let s = &m.summary;
    let rows: Vec<String> = m.rows.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let facts = vec![
        ("source".to_string(), m.source.clone()),
        ("target".into(), m.target.clone()),
        ("model".into(), format!("{} at {}", c.model, m.layer)),
        (
            "method".into(),
            format!("{} (weight {})", s.method, s.weight),
        ),
        ("selection".into(), s.selection.clone()),
        ("rows".into(), rows.join(", ")),
        (
            "seeds".into(),
            format!("training {}, split {}", c.train.seed, c.split_seed),
        ),
        (
            "command".into(),
            std::env::args().collect::<Vec<_>>().join(" "),
        ),
        (
            "outputs".into(),
            match &m.exported {
                Some(_) => format!(
                    "{TARGET_PREDICTIONS} (each target row's class and probabilities); model.onnx, the target-domain model (`tl predict --model {} INPUT...`)",
                    out.display()
                ),
                None => format!(
                    "{TARGET_PREDICTIONS} (each target row's class and probabilities); no model.onnx: word-vector features have no graph to export"
                ),
            },
        ),
    ];
    let f = tl_eval::report::fmt_num;
    type Measure = fn(&ShiftReport) -> f64;
    let measures: [(&str, Measure); 4] = [
        ("proxy A-distance", |r| r.proxy_a_distance),
        ("domain classifier error", |r| r.domain_error),
        ("MMD² (linear)", |r| r.mmd2_linear),
        ("MMD² (Gaussian)", |r| r.mmd2_gaussian),
    ];
    let shift_rows: Vec<Vec<String>> = measures
        .iter()
        .map(|(name, get)| {
            vec![
                name.to_string(),
                f(get(&m.shift_before)),
                m.shift_after.as_ref().map_or("–".into(), |a| f(get(a))),
            ]
        })
        .collect();
    let mut sections = vec![
        tl_eval::Section {
            title: "Label-free figures (what chose the model)".into(),
            blocks: vec![tl_eval::Block::Table {
                header: ["figure", "value"].map(String::from).to_vec(),
                rows: vec![
                    vec![
                        "source validation accuracy".into(),
                        f(s.source_val_accuracy),
                    ],
                    vec![
                        "SND of the target predictions (higher: tighter clusters)".into(),
                        f(snd),
                    ],
                ],
            }],
        },
        tl_eval::Section {
            title: "Shift between the domains".into(),
            blocks: vec![
                tl_eval::Block::Text {
                    text: format!(
                        "Before: the backbone's features at {}; after: the adapter's outputs (trained methods) or the transformed source (closed-form CORAL). Seeded samples of up to {} rows per domain.",
                        m.layer, m.shift_before.sample_rows
                    ),
                },
                tl_eval::Block::Table {
                    header: ["measure", "before", "after"].map(String::from).to_vec(),
                    rows: shift_rows,
                },
            ],
        },
    ];
    match &m.target_scores {
        Some(e) => {
            let (title, text) = match (m.rows.get("target_labelled"), c.target_labels) {
                (Some(n), Some(k)) => (
                    "Target (semi-supervised: some target labels trained)".to_string(),
                    format!(
                        "{n} target rows ({k} per class, --target-labels) kept their labels and joined the source's training rows; this section scores the other {} target rows. The calibration temperature is fitted on the source validation rows.",
                        e.rows
                    ),
                ),
                _ => (
                    "Target (labels read only here)".to_string(),
                    "The target's labels were read only to compute this section; the calibration temperature is fitted on the source validation rows.".to_string(),
                ),
            };
            let mut sec = tl_eval::Section::evaluation(&title, e);
            sec.blocks.insert(0, tl_eval::Block::Text { text });
            sections.push(sec);
        }
        None => sections.push(tl_eval::Section {
            title: "Target".into(),
            blocks: vec![tl_eval::Block::Text {
                text: "The target has no labels: no target accuracy to report.".into(),
            }],
        }),
    }
    crate::report::write(
        out,
        format!("tl adapt: {} → {} ({})", m.source, m.target, s.method),
        facts,
        sections,
    )
}

pub fn shift(a: &ShiftArgs, global: &Global) -> Result<()> {
    let mut c = AdaptRunConfig::default();
    a.domains.apply(&mut c)?;
    let home = global.home()?;
    let mut layers: Vec<Option<String>> = vec![c.layer.clone()];
    layers.extend(a.also.iter().cloned().map(Some));
    let mut reports = Vec::new();
    for layer in layers {
        let lc = AdaptRunConfig {
            layer: layer.clone(),
            split_seed: a.seed,
            ..c.clone()
        };
        // Only the rows the measure samples are extracted.
        let p = prepare(
            &lc,
            a.domains.contract.as_deref(),
            &a.domains.run,
            &home,
            global,
            0.0,
            Some(ShiftConfig::default().max_rows),
        )?;
        let r = measure(
            view2(&p.source_train.0),
            view2(&p.target),
            &ShiftConfig {
                seed: a.seed,
                ..ShiftConfig::default()
            },
        )?;
        reports.push((
            p.layer.clone(),
            p.source_name.clone(),
            p.target_name.clone(),
            r,
        ));
    }
    if global.json {
        let v: Vec<_> = reports
            .iter()
            .map(|(l, s, t, r)| serde_json::json!({"layer": l, "source": s, "target": t, "shift": r}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"schema_version": JSON_SCHEMA_VERSION, "layers": v})
            )?
        );
        return Ok(());
    }
    if reports.is_empty() {
        bail!("no layer to measure");
    }
    println!(
        "{} → {} ({} rows per domain sampled)",
        reports[0].1, reports[0].2, reports[0].3.sample_rows
    );
    println!(
        "{:<28} {:>12} {:>16} {:>13} {:>11}",
        "layer", "MMD² linear", "MMD² Gaussian", "domain error", "proxy A"
    );
    for (l, _, _, r) in &reports {
        println!(
            "{:<28} {:>12.4} {:>16.4} {:>13.3} {:>11.3}",
            l, r.mmd2_linear, r.mmd2_gaussian, r.domain_error, r.proxy_a_distance
        );
    }
    Ok(())
}
