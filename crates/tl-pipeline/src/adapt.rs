//! The adapt runner: domain adaptation between a labelled source dataset and a target
//! dataset (unlabelled in training) on one backbone's features, and the shift between
//! two datasets' features.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Instant,
};
use tl_core::Named;

use serde::Serialize;
use tl_adapt::{
    Method,
    run::{Domains, adapt as run_method},
    shift::{ShiftConfig, ShiftReport, measure},
};
use tl_data::{
    Dataset, Part, Split, SplitConfig,
    segment::{Segments, median_words, segment},
};
use tl_head::net::TaskSpec;
use tl_nn::Tensor;
use tl_onnx::OnnxModel;
use tl_runtime::SessionOptions;

use crate::{
    Env, Error, Result,
    artifact::{
        ADAPT_METRICS_SCHEMA_VERSION, ARTIFACT_SCHEMA_VERSION, AdaptMetrics, Affine, HeadMeta,
        Manifest, export_artifact, files, write_target_predictions,
    },
    config::AdaptRunConfig,
    source::{FeatureRequest, Source, feature_source},
    train::{PartData, gather_part},
};

/// The two domains' features, labels and identities.
#[derive(Debug)]
pub struct Prepared {
    pub task: TaskSpec,
    pub source_train: PartData,
    pub source_val: PartData,
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
    pub source_sha256: String,
    pub target_sha256: String,
    /// The execution provider that computed the features.
    pub provider: String,
    /// What the run trains on, for the checkpoint's identity.
    pub fingerprint: String,
    pub layer: String,
    pub split: Split,
    /// The ONNX backbone of the target's features (AdaBN: the target-adapted one), its
    /// sha256 and input contract: what the exported model is built on (none for word
    /// vectors).
    pub target_backbone: Option<(PathBuf, String, tl_core::InputContract)>,
    /// The target documents' row ids, in the order of `target_labels`.
    pub target_ids: Vec<String>,
    /// `--target-labels`: the label of each target row (part row when segmented) that
    /// joins training, `None` for the rest; and which documents those are (left out of
    /// the scores).
    pub target_train_labels: Option<Vec<Option<u32>>>,
    pub target_labelled_docs: Vec<bool>,
}

/// Loads both datasets, matches their label sets, splits the source, and extracts the
/// features of every row used (with `sample`, only that many rows per domain).
pub fn prepare(
    c: &AdaptRunConfig,
    contract: Option<&Path>,
    env: &Env,
    split_val: f64,
    sample: Option<usize>,
) -> Result<Prepared> {
    let d = pair_domains(c, env)?;
    let target_rows = target_rows(&d, c.split_seed, sample)?;
    let split = source_split(c, &d, split_val, sample)?;
    // Features: one request per dataset, the same model, layer, pooling and size.
    let source_sub = split.used_rows(&d.source);
    // Segmentation is decided from the texts' lengths alone (labels unused).
    let words = (
        median_words(&source_sub.rows),
        median_words(target_rows.iter().map(|(_, r)| *r)),
    );
    let segments = c.segments.resolve(words.0, words.1);
    let (target_sub, target_owner) = target_dataset(&d.target, &target_rows, segments)?;
    let (src, tgt) = domain_features(c, contract, &source_sub, &target_sub, env)?;
    let part = |p: Part| gather_part(&split, p, &src, std::slice::from_ref(&d.task));
    let (source_train, source_val) = (part(Part::Train)?, part(Part::Val)?);
    let target_hashes: Vec<String> = target_rows.iter().map(|(h, _)| h.clone()).collect();
    // Segmented: one row per sentence, gathered by the sentences' own hashes.
    let xt = match target_owner {
        Some(_) => {
            let parts: Vec<String> = target_sub
                .rows
                .iter()
                .map(|r| r.content.hash())
                .collect::<Result<_, _>>()?;
            (tgt.gather)(&parts)?
        }
        None => (tgt.gather)(&target_hashes)?,
    };
    let target_labels: Option<Vec<u32>> = d.target_task.map(|t| {
        target_rows
            .iter()
            .map(|(_, r)| r.labels[t].expect("filtered"))
            .collect()
    });
    let target_labelled_docs =
        draw_target_labels(c, &d, target_labels.as_deref(), target_rows.len())?;
    let target_train_labels = c.target_labels.map(|_| {
        let y = target_labels.as_ref().expect("checked when drawn");
        let doc_label = |doc: usize| target_labelled_docs[doc].then_some(y[doc]);
        match &target_owner {
            Some(owner) => owner.iter().map(|&doc| doc_label(doc)).collect(),
            None => (0..y.len()).map(doc_label).collect(),
        }
    });
    let labelled_hashes: Vec<&String> = target_hashes
        .iter()
        .zip(&target_labelled_docs)
        .filter(|(_, l)| **l)
        .map(|(h, _)| h)
        .collect();
    // What the run trains on, for the checkpoint's identity.
    let fingerprint = serde_json::json!({
        "model": src.sha, "target_model": tgt.sha, "layer": src.layer, "contract": src.provenance,
        "source": d.source.sha256, "target": d.target.sha256, "split_rows": split.rows.len(),
        "split_seed": c.split_seed, "target_rows": target_hashes, "segments": segments.name(),
        "target_labelled": labelled_hashes,
    });
    Ok(Prepared {
        source_train,
        source_val,
        target: xt.into_dyn(),
        target_labels,
        target_docs: target_rows.len(),
        target_owner,
        segments,
        median_words: words,
        source_name: d.source.name.clone(),
        target_name: d.target.name.clone(),
        source_sha256: d.source.sha256.clone(),
        target_sha256: d.target.sha256.clone(),
        provider: tgt.provider.clone(),
        fingerprint: tl_core::hash::sha256_bytes(serde_json::to_string(&fingerprint)?.as_bytes()),
        layer: src.layer.clone(),
        split,
        target_ids: target_rows.iter().map(|(_, r)| r.id.clone()).collect(),
        target_train_labels,
        target_labelled_docs,
        target_backbone: tgt
            .model_path
            .clone()
            .zip(tgt.provenance.contract().cloned())
            .map(|(m, contract)| (m, tgt.sha.clone(), contract)),
        task: d.task,
    })
}

/// Both datasets, the source task, and the target's task with its labels mapped onto
/// the source task's classes (none for an unlabelled target).
#[derive(Debug)]
pub struct PairedDomains {
    pub source: Dataset,
    pub target: Dataset,
    pub task: TaskSpec,
    pub target_task: Option<usize>,
}

/// Loads the source and target and matches their label sets (through `class_map`).
pub fn pair_domains(c: &AdaptRunConfig, env: &Env) -> Result<PairedDomains> {
    let source = env.dataset(&c.source)?;
    let mut target = env.dataset(&c.target)?;
    let task_name = match &c.task {
        Some(t) => t.clone(),
        None => source
            .tasks
            .first()
            .ok_or_else(|| Error::dataset(&source.name, "has no labelled task"))?
            .name
            .clone(),
    };
    let st = source.task_index(&task_name)?;
    let classes = source.tasks[st].classes.clone();
    if let Some(s) = c.class_map.keys().find(|s| !classes.contains(s)) {
        return Err(Error::setting(
            "class_map",
            format!(
                "names source class `{s}`, which task `{task_name}` of `{}` does not have ({})",
                source.name,
                classes.join(", ")
            ),
        ));
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
        target.map_labels_onto(tt, &classes).map_err(|e| {
            Error::setting(
                "class_map",
                format!(
                    "is needed: the label sets do not match ({e}); source task `{task_name}` has {}; map names as SRC=TGT",
                    classes.join(", ")
                ),
            )
        })?;
    }
    Ok(PairedDomains {
        source,
        target,
        task: TaskSpec {
            name: task_name,
            classes,
            weight: 1.0,
        },
        target_task: tt,
    })
}

/// Target rows with their content hashes: those its task labels (a binary task's other
/// rows, e.g. neutral reviews, are not part of it), or every row of an unlabelled target.
/// Only the presence of a label is read here, never its value. In content-hash order: the
/// rows a method sees, and their order, depend on the target's contents only, not on its
/// file names or label folders.
fn target_rows(
    d: &PairedDomains,
    seed: u64,
    sample: Option<usize>,
) -> Result<Vec<(String, &tl_data::Row)>> {
    let tt = d.target_task;
    let mut rows: Vec<(String, &tl_data::Row)> = d
        .target
        .rows
        .iter()
        .filter(|r| tt.is_none_or(|t| r.labels[t].is_some()))
        .map(|r| Ok((r.content.hash()?, r)))
        .collect::<Result<_>>()?;
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(k) = sample {
        rows = seeded_sample(rows, k, seed, "sample/target");
    }
    if rows.is_empty() {
        return Err(Error::dataset(
            &d.target.name,
            format!(
                "the target has no rows{}",
                tt.map_or(String::new(), |t| format!(
                    " labelled for task `{}`",
                    d.target.tasks[t].name
                ))
            ),
        ));
    }
    Ok(rows)
}

/// The source's split into training and validation rows (no test rows: the target is
/// what is scored); with `sample`, only that many training rows keep their labels.
fn source_split(
    c: &AdaptRunConfig,
    d: &PairedDomains,
    split_val: f64,
    sample: Option<usize>,
) -> Result<Split> {
    let mut sc = SplitConfig::new(&d.task.name, c.split_seed);
    sc.val_fraction = split_val;
    sc.test_fraction = 0.0;
    sc.budget = c.budget;
    sc.domain = Some("source".into());
    let mut split = Split::stratified(&d.source, &sc)?;
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
    Ok(split)
}

/// The target rows as a dataset, cut into sentences when `segments` says so (with each
/// sentence's document).
fn target_dataset(
    target: &Dataset,
    rows: &[(String, &tl_data::Row)],
    segments: Segments,
) -> Result<(Dataset, Option<Vec<usize>>)> {
    if segments == Segments::Sentences {
        let s = segment(target, rows.iter().map(|(_, r)| *r)).map_err(|e| {
            Error::setting(
                "segments",
                format!("sentences on target `{}`: {e}", target.name),
            )
        })?;
        return Ok((s.dataset, Some(s.owner)));
    }
    let rows = rows.iter().map(|(_, r)| (*r).clone()).collect();
    Ok((
        Dataset {
            rows,
            ..target.clone()
        },
        None,
    ))
}

/// Each domain's features from the same model, layer, pooling and size; with AdaBN each
/// domain through the backbone with its own BatchNorm statistics. The backbone's own are
/// ImageNet's, a third domain: the head learns on source features normalised by the
/// source's statistics and reads target features normalised by the target's, so both
/// reach it on the same footing.
fn domain_features(
    c: &AdaptRunConfig,
    contract: Option<&Path>,
    source: &Dataset,
    target: &Dataset,
    env: &Env,
) -> Result<(Source, Source)> {
    let mut req = FeatureRequest {
        contract,
        layer: c.layer.clone(),
        pool: c.pool,
        image_size: c.image_size,
        ..FeatureRequest::new(&c.model)
    };
    let adabn = c.adapt.method == Method::AdaBn;
    if adabn {
        req.model_file = Some(adabn_backbone(c, contract, source, env)?);
    }
    let src = feature_source(&req, source, env)?;
    if adabn {
        req.model_file = Some(adabn_backbone(c, contract, target, env)?);
    }
    let tgt = feature_source(&req, target, env)?;
    if src.width != tgt.width || !src.provenance.same_preprocessing(&tgt.provenance) {
        return Err(Error::FeatureMismatch {
            source_width: src.width,
            target_width: tgt.width,
        });
    }
    Ok((src, tgt))
}

/// `target_labels = K`: K documents per class keep their labels for training, drawn from
/// the stream `target-labels/<class>` of the split seed in content-hash order; which
/// of the `docs` documents those are (all false without the setting).
fn draw_target_labels(
    c: &AdaptRunConfig,
    d: &PairedDomains,
    labels: Option<&[u32]>,
    docs: usize,
) -> Result<Vec<bool>> {
    let Some(k) = c.target_labels else {
        return Ok(vec![false; docs]);
    };
    let y = labels.ok_or_else(|| {
        Error::setting(
            "target_labels",
            format!(
                "{k}: target `{}` has no labels for task `{}`",
                d.target.name, d.task.name
            ),
        )
    })?;
    let mut labelled = vec![false; docs];
    for (ci, class) in d.task.classes.iter().enumerate() {
        let of_class: Vec<usize> = (0..y.len()).filter(|&i| y[i] == ci as u32).collect();
        if of_class.len() <= k {
            return Err(Error::setting(
                "target_labels",
                format!(
                    "{k}: target class `{class}` has {} rows; it needs more than {k}, to keep some for scoring",
                    of_class.len()
                ),
            ));
        }
        for i in seeded_sample(of_class, k, c.split_seed, &format!("target-labels/{class}")) {
            labelled[i] = true;
        }
    }
    Ok(labelled)
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
    env: &Env,
) -> Result<PathBuf> {
    let home = &env.home;
    let registry = tl_hub::Registry::builtin()?;
    let entry = registry
        .get(&c.model)
        .ok()
        .filter(|e| e.model_bn.is_some())
        .ok_or_else(|| {
            Error::model(
                &c.model,
                "has no BatchNorm layers kept: AdaBN needs a CNN whose BatchNorm layers are kept (efficientnet-lite0, mobilenet-v2)",
            )
        })?;
    env.provide(&[c.model.as_str()])?;
    let kept = tl_hub::model_path(home, entry, true)?;
    let resolved = env.model(&c.model, contract)?;
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
    env.note(format!(
        "AdaBN: re-estimating the BatchNorm statistics of `{}` on {} rows of `{}`",
        c.model,
        domain.rows.len(),
        domain.name
    ));
    let rt = env.runtime()?;
    let opts = SessionOptions::default().threads(env.compute.threads);
    let rows: Vec<&tl_data::Row> = domain.rows.iter().collect();
    let mut adapted = tl_features::adabn::adapt_backbone(
        &backbone,
        &c.model,
        &image,
        &rows,
        ADABN_BATCH,
        (rt, &opts),
    )?;
    adapted.set_metadata(
        tl_core::metadata::ADABN,
        // Not the domain's name: the file is shared by every dataset with these rows.
        &serde_json::json!({"backbone": c.model, "rows": rows.len()}).to_string(),
    );
    tl_core::io::create_dir_all(path.parent().expect("has a parent"))?;
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

/// Log-probabilities clipped at 1e-300: logits that give back `proba` under softmax.
fn log_proba(proba: &ndarray::Array2<f64>) -> ndarray::Array2<f64> {
    proba.mapv(|p| p.max(1e-300).ln())
}

fn view2(t: &Tensor) -> ndarray::ArrayView2<'_, f32> {
    t.view().into_dimensionality().expect("2-D features")
}

/// What an adapt run produced.
#[derive(Debug)]
pub struct AdaptOutcome {
    pub metrics: AdaptMetrics,
    /// The task's class names, in the order of the model's outputs.
    pub classes: Vec<String>,
}

/// One adapt run with `c`, writing its artifact into `out` when given; `contract` is an
/// input contract file for a model file that carries none.
pub fn adapt(
    c: &AdaptRunConfig,
    out: Option<&Path>,
    contract: Option<&Path>,
    env: &Env,
) -> Result<AdaptOutcome> {
    c.check()?;
    let started = Instant::now();
    let _run = match out {
        Some(out) => Some(crate::artifact::lock_run(out)?),
        None => None,
    };
    let p = prepare(c, contract, env, c.val, None)?;
    let extract_seconds = started.elapsed().as_secs_f64();
    let rows = describe(c, &p, env);
    let shift_cfg = ShiftConfig {
        seed: c.split_seed,
        ..ShiftConfig::default()
    };
    let before = measure(view2(&p.source_train.x), view2(&p.target), &shift_cfg)?;
    env.note(format!(
        "shift before: proxy A-distance {:.3}, MMD² (Gaussian) {:.4}",
        before.proxy_a_distance, before.mmd2_gaussian
    ));
    if let Some(out) = out {
        tl_core::io::create_dir_all(out)?;
        tl_core::io::write_json(&out.join(files::CONFIG), c)?;
    }
    let t_train = Instant::now();
    let (mut adapted, summary) = fit(c, &p, out, env)?;
    let train_seconds = t_train.elapsed().as_secs_f64();
    let scored = score_target(c, &p, &mut adapted, env)?;
    let (s_al, t_al) = adapted.aligned(&p.source_train.x, &p.target)?;
    let after = Some(measure(s_al.view(), t_al.view(), &shift_cfg)?);
    let mut metrics = AdaptMetrics {
        schema_version: ADAPT_METRICS_SCHEMA_VERSION,
        source: p.source_name.clone(),
        target: p.target_name.clone(),
        layer: p.layer.clone(),
        rows,
        segments: p.segments,
        median_words: p.median_words,
        summary,
        target_scores: scored.evaluation.clone(),
        shift_before: before,
        shift_after: after,
        seconds: [("features", extract_seconds), ("adapt", train_seconds)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        exported: None,
    };
    if let Some(out) = out {
        metrics.exported = write_artifact(c, &p, &adapted, &scored, out)?;
        tl_core::io::write_json(&out.join(files::METRICS), &metrics)?;
        write_manifest(c, &p, out, &metrics, env)?;
        crate::report::write_adapt_report(out, c, &metrics, scored.snd, &env.command)?;
    }
    Ok(AdaptOutcome {
        metrics,
        classes: p.task.classes.clone(),
    })
}

/// The rows of each domain, told to the observer.
fn describe(c: &AdaptRunConfig, p: &Prepared, env: &Env) -> BTreeMap<String, usize> {
    let mut rows: BTreeMap<String, usize> = [
        ("source_train", p.source_train.rows()),
        ("source_val", p.source_val.rows()),
        ("target", p.target_docs),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Some(k) = c.target_labels {
        let n = p.target_labelled_docs.iter().filter(|&&l| l).count();
        rows.insert("target_labelled".into(), n);
        env.note(format!(
            "{n} target rows ({k} per class) keep their labels and join the source's training rows; the target is scored on the other {}",
            p.target_docs - n
        ));
    }
    if p.target_owner.is_some() {
        rows.insert("target_sentences".into(), p.target.shape()[0]);
        env.note(format!(
            "target texts cut into {} sentences (segments {}; median words per text: source {}, target {}); a review's prediction pools its sentences'",
            p.target.shape()[0],
            c.segments.name(),
            p.median_words.0.unwrap_or(f64::NAN),
            p.median_words.1.unwrap_or(f64::NAN),
        ));
    }
    env.note(format!(
        "{} → {}: {} source training rows, {} source validation rows, {} target rows (unlabelled in training); features `{}` width {}",
        p.source_name,
        p.target_name,
        rows["source_train"],
        rows["source_val"],
        rows["target"],
        p.layer,
        p.target.shape()[1]
    ));
    rows
}

/// Runs the configured method on the prepared domains (checkpointing into `out`).
pub fn fit(
    c: &AdaptRunConfig,
    p: &Prepared,
    out: Option<&Path>,
    env: &Env,
) -> Result<(tl_adapt::run::Adapted, tl_adapt::run::RunSummary)> {
    let d = Domains {
        task: &p.task,
        source_train: p.source_train.labelled(),
        source_val: p.source_val.labelled(),
        target: &p.target,
        target_labels: p.target_train_labels.as_deref(),
    };
    let epochs = c.train.epochs;
    let mut on_epoch = |log: &tl_head::train::EpochLog| {
        env.observer.epoch(log, epochs);
    };
    Ok(run_method(
        &d,
        &c.adapt,
        &c.head,
        &c.train,
        out.map(|dir| tl_head::train::Checkpoint {
            dir,
            fingerprint: &p.fingerprint,
        }),
        &mut on_epoch,
    )?)
}

/// The adapted model's view of the target.
#[derive(Debug)]
pub struct TargetScores {
    /// Each target document's log-probabilities (its sentences' pooled when segmented).
    pub log_proba: ndarray::Array2<f64>,
    /// Soft neighbourhood density of the target predictions (label-free).
    pub snd: f64,
    /// The evaluation with the target's labels, which nothing before read; documents whose
    /// labels joined training are left out.
    pub evaluation: Option<tl_eval::Evaluation>,
}

/// Predicts the target, and scores it where it has labels (calibration fitted on the
/// source validation rows).
pub fn score_target(
    c: &AdaptRunConfig,
    p: &Prepared,
    adapted: &mut tl_adapt::run::Adapted,
    env: &Env,
) -> Result<TargetScores> {
    let proba = adapted.predict_proba(&p.target)?;
    let snd = tl_adapt::select::snd(proba.view(), tl_adapt::select::SND_TAU)?;
    env.note(format!(
        "SND of the target predictions (label-free): {snd:.4}"
    ));
    let zt = match &p.target_owner {
        Some(owner) => {
            tl_adapt::pool::pool_log_proba(log_proba(&proba).view(), owner, p.target_docs)?
        }
        None => log_proba(&proba),
    };
    let evaluation = match &p.target_labels {
        Some(y) => {
            let scored: Vec<usize> = (0..y.len())
                .filter(|&i| !p.target_labelled_docs[i])
                .collect();
            let z = zt.select(ndarray::Axis(0), &scored);
            let y: Vec<u32> = scored.iter().map(|&i| y[i]).collect();
            let zv = log_proba(&adapted.predict_proba(&p.source_val.x)?);
            let yv: Vec<u32> = p.source_val.labels[0].iter().flatten().copied().collect();
            assert_eq!(yv.len(), zv.nrows(), "source validation rows are labelled");
            Some(tl_eval::Evaluation::new(
                &p.task.classes,
                tl_eval::Scored {
                    logits: z.view(),
                    labels: &y,
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
    Ok(TargetScores {
        log_proba: zt,
        snd,
        evaluation,
    })
}

/// The adapt artifact: the target-domain predictor's weights, the split, every target
/// document's prediction, and (with an ONNX backbone) `head.json` and the exported
/// `model.onnx`, whose path it returns.
fn write_artifact(
    c: &AdaptRunConfig,
    p: &Prepared,
    adapted: &tl_adapt::run::Adapted,
    scored: &TargetScores,
    out: &Path,
) -> Result<Option<PathBuf>> {
    let predictor = adapted.target_predictor(&c.head, &p.task);
    // A manifest of an earlier run here describes the weights about to be replaced, and
    // the export checks the weights against it: it goes, and this run's is written after.
    let stale = out.join(files::MANIFEST);
    if stale.is_file() {
        std::fs::remove_file(&stale).map_err(|e| tl_core::Error::io("cannot remove", &stale, e))?;
    }
    tl_nn::checkpoint::save_tensors(&out.join(files::WEIGHTS), &predictor.params)?;
    p.split.save(&out.join(files::SPLIT))?;
    write_target_predictions(
        &out.join(files::TARGET_PREDICTIONS),
        &p.target_ids,
        &p.task.classes,
        &tl_adapt::loss::probabilities(scored.log_proba.view()),
    )?;
    let Some((model_file, sha, contract)) = &p.target_backbone else {
        return Ok(None);
    };
    let meta = HeadMeta {
        schema_version: ARTIFACT_SCHEMA_VERSION,
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
            .map(|(scale, shift)| Affine { scale, shift }),
        logit_offset: predictor.logit_offset,
        segments: (p.segments == Segments::Sentences).then_some(Segments::Sentences),
    };
    tl_core::io::write_json(&out.join(files::HEAD), &meta)?;
    let dest = out.join(files::MODEL);
    export_artifact(out, &dest).map_err(|e| e.in_step("exporting the adapted model"))?;
    Ok(Some(dest))
}

/// `manifest.json` of an adapt run.
fn write_manifest(
    c: &AdaptRunConfig,
    p: &Prepared,
    out: &Path,
    metrics: &AdaptMetrics,
    env: &Env,
) -> Result<()> {
    let mut m = Manifest::new(&env.command);
    m.model = c.model.clone();
    if let Some((file, sha, _)) = &p.target_backbone {
        m.model_file = Some(file.clone());
        m.model_sha256 = sha.clone();
    }
    m.dataset = p.source_name.clone();
    m.dataset_sha256 = p.source_sha256.clone();
    m.target = Some(p.target_name.clone());
    m.target_sha256 = Some(p.target_sha256.clone());
    m.split_sha256 = tl_core::hash::sha256_file(&out.join(files::SPLIT))?;
    m.seed = c.train.seed;
    m.split_seed = c.split_seed;
    m.provider = p.provider.clone();
    m.weights_sha256 = tl_core::hash::sha256_file(&out.join(files::WEIGHTS))?;
    m.timings_seconds = metrics.seconds.clone();
    tl_core::io::write_json(&out.join(files::MANIFEST), &m)?;
    Ok(())
}

/// The shift between two datasets' features at one layer.
#[derive(Debug, Clone, Serialize)]
pub struct LayerShift {
    pub layer: String,
    pub source: String,
    pub target: String,
    pub shift: ShiftReport,
}

/// The shift between `c`'s source and target at its layer and at each of `also`: only the
/// rows the measure samples are extracted.
pub fn shift(
    c: &AdaptRunConfig,
    also: &[String],
    seed: u64,
    contract: Option<&Path>,
    env: &Env,
) -> Result<Vec<LayerShift>> {
    let mut layers: Vec<Option<String>> = vec![c.layer.clone()];
    layers.extend(also.iter().cloned().map(Some));
    let mut reports = Vec::new();
    for layer in layers {
        let lc = AdaptRunConfig {
            layer: layer.clone(),
            split_seed: seed,
            ..c.clone()
        };
        let p = prepare(
            &lc,
            contract,
            env,
            0.0,
            Some(ShiftConfig::default().max_rows),
        )?;
        let shift = measure(
            view2(&p.source_train.x),
            view2(&p.target),
            &ShiftConfig {
                seed,
                ..ShiftConfig::default()
            },
        )?;
        reports.push(LayerShift {
            layer: p.layer.clone(),
            source: p.source_name.clone(),
            target: p.target_name.clone(),
            shift,
        });
    }
    Ok(reports)
}
