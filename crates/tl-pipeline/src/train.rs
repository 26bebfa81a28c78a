//! The train runner: a head (exact linear probe, MLP, several tasks) on a backbone's
//! features, or the backbone fine-tuned with it, as an artifact directory.
//!
//! A run is the composition of public stages: [`tasks_of`] → [`split_for`] →
//! [`labelled_features`] (load → split → gather, shared with the adapt and rank runners)
//! → [`Finetuning::import`] → [`fit`] → [`evaluate`] → [`write_artifact`].

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Instant,
};

use ndarray::{Array2, Axis};
use tl_data::{Dataset, Part, Split, SplitConfig};
use tl_features::extract::Pool;
use tl_head::{
    import::{ImportedLayer, import_graph},
    net::{HeadKind, HeadNet, TaskSpec},
    probe::{PathPoint, PathResult, ProbeConfig, ProbeData},
    train::{Checkpoint, Flow, Labelled, TaskScore, TrainConfig, TrainReport, Trainer},
};
use tl_nn::{Module, Tensor, checkpoint};
use tl_onnx::OnnxModel;

use crate::{
    Env, Error, Result,
    artifact::{
        ARTIFACT_SCHEMA_VERSION, HeadMeta, METRICS_SCHEMA_VERSION, Manifest, Metrics,
        TaskEvaluation, export_artifact, files,
    },
    config::{BatchNormForm, Finetune, Init, ProbeSettings, RunConfig, SplitSettings},
    error::shape,
    source::{FeatureRequest, Source, feature_source},
};

/// What a train run produced.
#[derive(Debug)]
pub struct TrainOutcome {
    pub metrics: Metrics,
    /// The exported `model.onnx`, or why there is none (an export error does not fail
    /// the run: word vectors and raw inputs have no graph to export).
    pub exported: Result<PathBuf>,
}

/// One train run with `cfg` into the artifact directory `out`; `contract` is an input
/// contract file for a model file that carries none.
pub fn train(
    cfg: &RunConfig,
    out: &Path,
    contract: Option<&Path>,
    env: &Env,
) -> Result<TrainOutcome> {
    cfg.check()?;
    let started = Instant::now();
    tl_core::io::create_dir_all(out)?;
    let _run = crate::artifact::lock_run(out)?;
    let ds = env.dataset(&cfg.data)?;
    let tasks = tasks_of(&ds, &cfg.tasks)?;
    let split = split_for(&cfg.split, &ds, &tasks)?;
    split.save(&out.join(files::SPLIT))?;
    let t_extract = Instant::now();
    let request = feature_request(cfg, contract, &env.home)?;
    let mut data = labelled_features(&request, &ds, &split, &tasks, env)?;
    let extract_seconds = t_extract.elapsed().as_secs_f64();
    let counts = data.counts();
    env.note(format!(
        "{} rows: {} train, {} val, {} test; features `{}` width {} ({extract_seconds:.1} s)",
        ds.name,
        counts["train"],
        counts["val"],
        counts["test"],
        data.source.layer,
        data.source.width
    ));
    let mut finetuning = Finetuning::import(cfg, &mut data, env)?;
    let fingerprint = fingerprint(cfg, &ds, &split, &tasks, &data.source)?;
    let t_train = Instant::now();
    let (mut net, fitted) = fit(
        cfg,
        &tasks,
        &data,
        finetuning.as_mut(),
        out,
        &fingerprint,
        env,
    )?;
    let train_seconds = t_train.elapsed().as_secs_f64();
    let evaluated = evaluate(&mut net, &tasks, &data, cfg.split.seed)?;
    let metrics = Metrics {
        schema_version: METRICS_SCHEMA_VERSION,
        evaluation: evaluated.evaluation,
        test: evaluated.test,
        val: evaluated.val,
        rows: counts,
        probe_path: fitted.probe_path,
        training: fitted.training,
        seconds: BTreeMap::from([
            ("extract".to_string(), extract_seconds),
            ("train".to_string(), train_seconds),
            ("total".to_string(), started.elapsed().as_secs_f64()),
        ]),
    };
    let written = Written {
        cfg,
        ds: &ds,
        tasks: &tasks,
        source: &data.source,
        finetuning: finetuning.as_ref(),
        metrics: &metrics,
    };
    write_artifact(&written, &net, out, env)?;
    let exported = if data.source.model_path.is_some() {
        export_artifact(out, &out.join(files::MODEL))
    } else {
        Err(Error::model(
            &cfg.model,
            "word-vector and raw-input features have no ONNX backbone to export",
        ))
    };
    Ok(TrainOutcome { metrics, exported })
}

/// The tasks a run trains: those named, or the dataset's first labelled one.
pub fn tasks_of(ds: &Dataset, wanted: &[String]) -> Result<Vec<TaskSpec>> {
    let names: Vec<String> = if wanted.is_empty() {
        vec![tl_hub::resolve::first_labelled_task(ds)?]
    } else {
        wanted.to_vec()
    };
    names
        .iter()
        .map(|name| {
            let t = ds.task_index(name)?;
            Ok(TaskSpec {
                name: ds.tasks[t].name.clone(),
                classes: ds.tasks[t].classes.clone(),
                weight: 1.0,
            })
        })
        .collect()
}

/// The run's split: the file named, or a stratified split by the first task (the others
/// kept where labelled).
pub fn split_for(s: &SplitSettings, ds: &Dataset, tasks: &[TaskSpec]) -> Result<Split> {
    Ok(match &s.file {
        Some(f) => Split::load_for(f, ds)?,
        None => {
            let mut sc = SplitConfig::new(&tasks[0].name, s.seed);
            sc.val_fraction = s.val;
            sc.test_fraction = s.test;
            sc.budget = s.budget;
            sc.also = tasks[1..].iter().map(|t| t.name.clone()).collect();
            Split::stratified(ds, &sc)?
        }
    })
}

/// What features a train run reads: the configured layer, or for fine-tuning the last
/// block's output (`last`) or the model's input (`all`), of the folded or kept graph.
pub fn feature_request<'a>(
    cfg: &'a RunConfig,
    contract: Option<&'a Path>,
    home: &Path,
) -> Result<FeatureRequest<'a>> {
    let mut r = FeatureRequest {
        model: &cfg.model,
        contract,
        model_file: None,
        layer: cfg.layer.clone(),
        pool: cfg.pool,
        image_size: cfg.image_size,
        inputs: cfg.finetune == Finetune::All,
    };
    if cfg.finetune == Finetune::None {
        return Ok(r);
    }
    let registry = tl_hub::Registry::builtin()?;
    let entry = registry.get(&cfg.model).map_err(|_| {
        Error::model(
            &cfg.model,
            "fine-tuning needs a registry CNN (efficientnet-lite0, mobilenet-v2)",
        )
    })?;
    if tl_hub::resolve::is_word_vectors(entry) {
        return Err(Error::model(
            &cfg.model,
            "word vectors have no layers to fine-tune",
        ));
    }
    if cfg.finetune == Finetune::Last {
        r.layer = Some(
            entry
                .outputs
                .as_ref()
                .and_then(|o| o.last_block.clone())
                .ok_or_else(|| Error::model(&entry.id, "names no last block to fine-tune from"))?,
        );
    }
    r.pool = Pool::None;
    if cfg.batchnorm == BatchNormForm::Kept {
        r.model_file = Some(tl_hub::model_path(home, entry, true)?);
    }
    Ok(r)
}

/// Rows of one part: features and labels per task.
#[derive(Debug, Clone)]
pub struct PartData {
    pub x: Tensor,
    /// Per task, per row: the class, or none where the row lacks that task's label.
    pub labels: Vec<Vec<Option<u32>>>,
}

impl PartData {
    /// The rows as the trainer takes them.
    pub fn labelled(&self) -> Labelled<'_> {
        Labelled {
            x: &self.x,
            labels: &self.labels,
        }
    }

    pub fn rows(&self) -> usize {
        self.x.shape()[0]
    }

    /// Task `t`'s labelled rows as a matrix and their classes.
    pub fn task_rows(&self, t: usize) -> (Array2<f32>, Vec<u32>) {
        let idx: Vec<usize> = (0..self.labels[t].len())
            .filter(|&i| self.labels[t][i].is_some())
            .collect();
        let x = self
            .x
            .view()
            .into_dimensionality::<ndarray::Ix2>()
            .expect("features are rows of vectors")
            .select(Axis(0), &idx);
        (x, idx.iter().filter_map(|&i| self.labels[t][i]).collect())
    }
}

/// A split's labelled parts with their features, and where the features came from.
#[derive(Debug)]
pub struct LabelledFeatures {
    pub source: Source,
    pub train: PartData,
    pub val: PartData,
    pub test: PartData,
}

impl LabelledFeatures {
    /// Rows per part, by name.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        [
            ("train", &self.train),
            ("val", &self.val),
            ("test", &self.test),
        ]
        .iter()
        .map(|(n, p)| (n.to_string(), p.rows()))
        .collect()
    }

    fn parts_mut(&mut self) -> [&mut PartData; 3] {
        [&mut self.train, &mut self.val, &mut self.test]
    }
}

/// Load → split → gather: the features of the rows `split` uses (extracted or found in
/// the feature store), gathered per part with their labels for `tasks`.
pub fn labelled_features(
    request: &FeatureRequest<'_>,
    ds: &Dataset,
    split: &Split,
    tasks: &[TaskSpec],
    env: &Env,
) -> Result<LabelledFeatures> {
    let source = feature_source(request, &split.used_rows(ds), env)?;
    let part = |p: Part| gather_part(split, p, &source, tasks);
    Ok(LabelledFeatures {
        train: part(Part::Train)?,
        val: part(Part::Val)?,
        test: part(Part::Test)?,
        source,
    })
}

/// The rows of part `p` of `split`: features from `source`, labels per task.
pub fn gather_part(
    split: &Split,
    p: Part,
    source: &Source,
    tasks: &[TaskSpec],
) -> Result<PartData> {
    let rows: Vec<&tl_data::SplitRow> = split.rows.iter().filter(|r| r.split == p).collect();
    let hashes: Vec<String> = rows.iter().map(|r| r.content_hash.clone()).collect();
    let x = (source.gather)(&hashes)?;
    let labels = tasks
        .iter()
        .map(|task| {
            rows.iter()
                .map(|r| {
                    r.labels
                        .get(&task.name)
                        .and_then(|c| task.classes.iter().position(|k| k == c))
                        .map(|i| i as u32)
                })
                .collect()
        })
        .collect();
    Ok(PartData {
        x: x.into_dyn(),
        labels,
    })
}

/// The pretrained layers a fine-tuning run trains with the head.
#[derive(Debug)]
pub struct Finetuning {
    /// The imported layers, until [`fit`] builds the network on them.
    pub backbone: Option<tl_nn::Graph>,
    /// The trainer's settings with the backbone's per-block rates and unfreezing.
    pub trainer: TrainConfig,
    /// Which ONNX nodes became which layers (for export).
    pub imported: Vec<ImportedLayer>,
    /// The backbone output's width, which the head reads.
    pub head_width: usize,
    /// The model's feature output, where the backbone ends.
    pub features_output: String,
}

impl Finetuning {
    /// For a fine-tuning run, imports the backbone from the ONNX graph between the
    /// features' node and the model's feature output (reinitialised for `init = random`,
    /// frozen through `freeze_until`), and shapes the parts' rows as its input maps.
    pub fn import(cfg: &RunConfig, data: &mut LabelledFeatures, env: &Env) -> Result<Option<Self>> {
        if cfg.finetune == Finetune::None {
            return Ok(None);
        }
        let src = &data.source;
        let to = tl_hub::Registry::builtin()?
            .get(&cfg.model)
            .ok()
            .and_then(|e| e.outputs.as_ref().map(|o| o.features.clone()))
            .ok_or_else(|| Error::model(&cfg.model, "names no feature output"))?;
        let model_path = src
            .model_path
            .as_ref()
            .ok_or_else(|| Error::model(&cfg.model, "has no ONNX backbone to fine-tune"))?;
        let mut imp = import_graph(&OnnxModel::load(model_path)?, &src.layer, &to)?;
        if cfg.init == Init::Random {
            tl_head::import::reinitialize(&mut imp.layers, cfg.train.seed);
        }
        if let Some(node) = &cfg.freeze_until {
            imp.layers.freeze_through(node)?;
        }
        // The backbone's input is data (pixels or cached maps): no gradient for it.
        imp.layers.set_input_grad(false);
        let width = src.width;
        let side = ((width / imp.in_channels) as f64).sqrt().round() as usize;
        if side * side * imp.in_channels != width {
            return Err(Error::model(
                &cfg.model,
                format!(
                    "features of width {width} are not {} square maps",
                    imp.in_channels
                ),
            ));
        }
        for p in data.parts_mut() {
            let n = p.rows();
            p.x = std::mem::take(&mut p.x)
                .into_shape_with_order(vec![n, imp.in_channels, side, side])
                .map_err(shape("input maps"))?;
        }
        env.note(format!(
            "fine-tuning {} from `{}` ({} layers, {}×{side}×{side} in), pretrained layers at {}× the head's rate",
            imp.layers.describe(),
            data.source.layer,
            imp.map.len(),
            imp.in_channels,
            cfg.pretrained_lr
        ));
        Ok(Some(Self {
            trainer: cfg.trainer(Some(&imp.layers)),
            backbone: Some(imp.layers),
            imported: imp.map,
            head_width: imp.width,
            features_output: to,
        }))
    }
}

/// What a run trains on: a checkpoint in the artifact directory resumes only the same run.
fn fingerprint(
    cfg: &RunConfig,
    ds: &Dataset,
    split: &Split,
    tasks: &[TaskSpec],
    src: &Source,
) -> Result<String> {
    Ok(tl_core::hash::sha256_bytes(
        serde_json::to_string(&serde_json::json!({
            "model_sha256": src.sha, "layer": src.layer, "pool": src.pool, "contract": src.provenance,
            "dataset_sha256": ds.sha256, "split": split.rows.iter().map(|r| (&r.content_hash, r.split)).collect::<Vec<_>>(),
            "tasks": tasks, "head": cfg.head, "finetune": cfg.finetune, "freeze_until": cfg.freeze_until, "init": cfg.init,
        }))?
        .as_bytes(),
    ))
}

/// How the head was fitted.
#[derive(Debug, Default)]
pub struct Fitted {
    /// The exact probe's regularisation path per task.
    pub probe_path: Vec<(String, Vec<PathPoint>)>,
    /// The trainer's report (MLP heads and fine-tuning).
    pub training: Option<TrainReport>,
}

/// Builds the network (head on the features, or on the fine-tuned backbone) and fits it:
/// the exact probe per task for a linear head on frozen features, else the trainer,
/// checkpointing into `out`.
pub fn fit(
    cfg: &RunConfig,
    tasks: &[TaskSpec],
    data: &LabelledFeatures,
    finetuning: Option<&mut Finetuning>,
    out: &Path,
    fingerprint: &str,
    env: &Env,
) -> Result<(HeadNet, Fitted)> {
    let (backbone, head_width, train_cfg) = match finetuning {
        Some(f) => (
            f.backbone.take().map(|g| Box::new(g) as Box<dyn Module>),
            f.head_width,
            f.trainer.clone(),
        ),
        None => (None, data.source.width, cfg.trainer(None)),
    };
    let mut net = HeadNet::build_on(&cfg.head, backbone, head_width, tasks, cfg.train.seed)?;
    if cfg.head.kind == HeadKind::Linear && cfg.finetune == Finetune::None {
        let probe_path = fit_probes(&mut net, tasks, data, &cfg.probe, env)?;
        return Ok((
            net,
            Fitted {
                probe_path,
                training: None,
            },
        ));
    }
    let report = train_head(&mut net, tasks, data, &train_cfg, out, fingerprint, env)?;
    Ok((
        net,
        Fitted {
            probe_path: Vec::new(),
            training: Some(report),
        },
    ))
}

/// The exact probe, one per task (a linear head per task on shared features is exactly
/// independent probes): C chosen on validation, refitted on train + validation, written
/// into the network's heads.
pub fn fit_probes(
    net: &mut HeadNet,
    tasks: &[TaskSpec],
    data: &LabelledFeatures,
    settings: &ProbeSettings,
    env: &Env,
) -> Result<Vec<(String, Vec<PathPoint>)>> {
    let mut paths = Vec::new();
    for (t, task) in tasks.iter().enumerate() {
        let (xtr, ytr) = data.train.task_rows(t);
        let (xva, yva) = data.val.task_rows(t);
        let pcfg = ProbeConfig::new(1.0)
            .class_weight(settings.class_weight.clone())
            .standardize(settings.standardize);
        let trd = ProbeData {
            x: xtr.view(),
            y: &ytr,
            classes: task.classes.len(),
        };
        let result = if yva.is_empty() {
            let c = settings.cs[settings.cs.len() / 2];
            env.note(format!(
                "{}: no validation rows, fitting C = {c}",
                task.name
            ));
            let probe = tl_head::probe::fit(&trd, &pcfg.clone().with_c(c), None)?;
            PathResult {
                points: Vec::new(),
                best_c: c,
                probe,
            }
        } else {
            let vad = ProbeData {
                x: xva.view(),
                y: &yva,
                classes: task.classes.len(),
            };
            tl_head::probe::fit_path(&trd, &vad, &settings.cs, &pcfg)?
        };
        for p in &result.points {
            env.note(format!(
                "  {}: C {:<9.3e} train {:.4}  val {:.4}  ({} iterations, {:.2} s)",
                task.name, p.c, p.train_accuracy, p.val_accuracy, p.iterations, p.seconds
            ));
        }
        env.note(format!(
            "  {}: best C {:.3e}, refitted on train + val",
            task.name, result.best_c
        ));
        let (w, b) = result.probe.to_f32();
        let mut params = checkpoint::named_params(net);
        params.insert(format!("heads.{}.0.weight", task.name), w.into_dyn());
        params.insert(format!("heads.{}.0.bias", task.name), b.into_dyn());
        checkpoint::set_params(net, &params, Path::new("probe"))?;
        paths.push((task.name.clone(), result.points));
    }
    Ok(paths)
}

/// The trainer over the train part, validated on the val part, checkpointed in `out`.
fn train_head(
    net: &mut HeadNet,
    tasks: &[TaskSpec],
    data: &LabelledFeatures,
    train_cfg: &TrainConfig,
    out: &Path,
    fingerprint: &str,
    env: &Env,
) -> Result<TrainReport> {
    let epochs = train_cfg.epochs;
    let mut on_epoch = |log: &tl_head::train::EpochLog| {
        env.observer.epoch(log, epochs);
        Flow::Continue
    };
    let report = env.compute.install(|| {
        Trainer::new(train_cfg, tasks)
            .checkpoint(Some(Checkpoint {
                dir: out,
                fingerprint,
            }))
            .on_epoch(&mut on_epoch)
            .fit(net, &data.train.labelled(), Some(&data.val.labelled()))
    })??;
    if let Some(from) = report.resumed_from_epoch {
        env.note(format!("resumed from the checkpoint after epoch {from}"));
    }
    Ok(report)
}

/// Test and validation scores, and each task's full test evaluation.
#[derive(Debug)]
pub struct Evaluated {
    pub test: Vec<TaskScore>,
    pub val: Vec<TaskScore>,
    pub evaluation: Vec<TaskEvaluation>,
}

/// Scores the fitted network on the test and validation parts; each task's evaluation
/// (bootstrap seeded by `seed`) has its temperature fitted on validation.
pub fn evaluate(
    net: &mut HeadNet,
    tasks: &[TaskSpec],
    data: &LabelledFeatures,
    seed: u64,
) -> Result<Evaluated> {
    let test = tl_head::train::evaluate(net, &data.test.labelled(), tasks, 256)?;
    let val = if data.val.rows() > 0 {
        tl_head::train::evaluate(net, &data.val.labelled(), tasks, 256)?
    } else {
        Vec::new()
    };
    let evaluation = if data.test.rows() > 0 {
        let test_logits = crate::report::PartLogits::of(net, &data.test.x, &data.test.labels)?;
        let val_logits = if data.val.rows() > 0 {
            Some(crate::report::PartLogits::of(
                net,
                &data.val.x,
                &data.val.labels,
            )?)
        } else {
            None
        };
        crate::report::evaluate_tasks(
            net,
            tasks,
            &test_logits,
            val_logits.as_ref(),
            tl_eval::EvalOptions {
                seed,
                ..Default::default()
            },
        )?
    } else {
        Vec::new()
    };
    Ok(Evaluated {
        test,
        val,
        evaluation,
    })
}

/// What [`write_artifact`] writes.
#[derive(Debug)]
pub struct Written<'a> {
    pub cfg: &'a RunConfig,
    pub ds: &'a Dataset,
    pub tasks: &'a [TaskSpec],
    pub source: &'a Source,
    pub finetuning: Option<&'a Finetuning>,
    pub metrics: &'a Metrics,
}

/// The artifact directory: weights, config, head.json (what export needs), metrics,
/// manifest and report (the split is written before training).
pub fn write_artifact(w: &Written<'_>, net: &HeadNet, out: &Path, env: &Env) -> Result<()> {
    let (cfg, src) = (w.cfg, w.source);
    checkpoint::save_params(net, &out.join(files::WEIGHTS))?;
    let mut saved_cfg = cfg.clone();
    saved_cfg.split.file = Some(PathBuf::from(files::SPLIT));
    tl_core::io::write_json(&out.join(files::CONFIG), &saved_cfg)?;
    // head.json exists for ONNX backbones; word vectors and raw inputs have none.
    if let (Some(model_file), Some(contract)) = (&src.model_path, src.provenance.contract()) {
        let head_meta = HeadMeta {
            schema_version: ARTIFACT_SCHEMA_VERSION,
            tasks: w.tasks.to_vec(),
            input_value: match w.finetuning {
                Some(f) => f.features_output.clone(),
                None => src.layer.clone(),
            },
            pool: src.pool,
            model_file: model_file.clone(),
            model_sha256: src.sha.clone(),
            contract: contract.clone(),
            imported: w.finetuning.map(|f| f.imported.clone()).unwrap_or_default(),
            feature_width: src.width,
            head: None,
            source_model: None,
            affine: None,
            logit_offset: None,
            segments: None,
        };
        tl_core::io::write_json(&out.join(files::HEAD), &head_meta)?;
    }
    tl_core::io::write_json(&out.join(files::METRICS), w.metrics)?;
    let mut manifest = Manifest::new(&env.command);
    manifest.threads = env.compute.workers();
    manifest.model = cfg.model.clone();
    manifest.model_file = src.model_path.clone();
    manifest.model_sha256 = src.sha.clone();
    manifest.dataset = w.ds.name.clone();
    manifest.dataset_sha256 = w.ds.sha256.clone();
    manifest.split_sha256 = tl_core::hash::sha256_file(&out.join(files::SPLIT))?;
    manifest.seed = cfg.train.seed;
    manifest.split_seed = cfg.split.seed;
    manifest.provider = src.provider.clone();
    manifest.feature_store = src.store_dir.clone();
    manifest.weights_sha256 = tl_core::hash::sha256_file(&out.join(files::WEIGHTS))?;
    manifest.timings_seconds = w.metrics.seconds.clone();
    tl_core::io::write_json(&out.join(files::MANIFEST), &manifest)?;
    crate::report::write_train_report(out, cfg, &src.layer, w.metrics, &env.command)
}
