//! `tl train`: a head (linear probe, MLP, several tasks) on a frozen backbone's features,
//! or the backbone's last layers fine-tuned with it; the trained artifact directory; and
//! `tl export`, which writes the backbone and the head as one ONNX file.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context, Result, bail, ensure};
use clap::{Args, ValueEnum};
use ndarray::{Array2, Axis};
use serde::{Deserialize, Serialize};
use tl_data::{Dataset, Part, Split, SplitConfig};
use tl_features::extract::Pool;
use tl_head::{
    export::{ExportPool, ExportSpec},
    import::{ImportedLayer, import_graph},
    net::{HeadKind, HeadNet, HeadSpec, TaskSpec},
    probe::{ClassWeight, ProbeConfig, ProbeData},
    train::{EpochLog, Labelled, TaskScore, TrainConfig, Unfreeze, evaluate},
};
use tl_nn::{Act, Module, Optimizer, Schedule, Tensor, checkpoint};
use tl_onnx::OnnxModel;

use crate::{Global, JSON_SCHEMA_VERSION, RunArgs, data, extract, resolve};

/// Schema version of `config.json`, `metrics.json` and `manifest.json`.
pub const ARTIFACT_SCHEMA_VERSION: u32 = 1;
/// `metrics.json` of `tl train`: 2 replaced `test_metrics` with `evaluation`.
pub const METRICS_SCHEMA_VERSION: u32 = 2;

/// What is trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum Finetune {
    /// A head on frozen features.
    #[default]
    None,
    /// The backbone's last block (1×1 head convolution, BatchNorm) with the head.
    Last,
    /// The whole backbone from its input with the head (`--freeze-until`, `--layer-decay`).
    All,
}

/// Where the fine-tuned layers start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// The pretrained weights.
    #[default]
    Pretrained,
    /// PyTorch's default random initialisation of the same layers (training from scratch).
    Random,
}

/// Which graph of a converted CNN to fine-tune.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum BatchNormForm {
    /// BatchNorm folded into the convolutions (the inference graph).
    #[default]
    Folded,
    /// BatchNorm kept: trained with batch statistics, running statistics updated.
    Kept,
}

/// The split part of the config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SplitSettings {
    /// Reuse this `split.json` (made by `tl data split` or an earlier run).
    pub file: Option<PathBuf>,
    pub seed: u64,
    pub val: f64,
    pub test: f64,
    /// Labelled rows per class for training and validation together (the split's budget).
    pub budget: Option<usize>,
}

impl Default for SplitSettings {
    fn default() -> Self {
        Self {
            file: None,
            seed: 0,
            val: 0.1,
            test: 0.2,
            budget: None,
        }
    }
}

/// The linear probe's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProbeSettings {
    /// Values of C tried (best on validation, refitted on train + validation); by default
    /// ten values from 1e-4 to 10, evenly spaced in log scale.
    pub cs: Vec<f64>,
    pub class_weight: ClassWeight,
    pub standardize: bool,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        Self {
            cs: (0..10)
                .map(|i| 10f64.powf(-4.0 + 5.0 * i as f64 / 9.0))
                .collect(),
            class_weight: ClassWeight::None,
            standardize: false,
        }
    }
}

/// The run config: flags map onto it, `--config FILE.toml` is written in it, and every
/// artifact saves it as `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    pub schema_version: u32,
    pub model: String,
    pub data: String,
    /// Tasks trained together (default: the dataset's first).
    pub tasks: Vec<String>,
    /// The node whose features the head reads (default: the model's feature output).
    pub layer: Option<String>,
    pub pool: Pool,
    pub image_size: Option<u32>,
    pub head: HeadSpec,
    pub finetune: Finetune,
    pub batchnorm: BatchNormForm,
    /// The pretrained layers' learning rate as a fraction of the head's.
    pub pretrained_lr: f32,
    /// Epoch from which the pretrained layers train (gradual unfreezing).
    pub unfreeze_epoch: usize,
    /// `--finetune all`: with `unfreeze_epoch`, unfreeze one block every this many
    /// epochs, from the last block down (0: all blocks at once).
    pub unfreeze_every: usize,
    /// `--finetune all`: nodes up to and including this one stay frozen (evaluation-mode
    /// BatchNorm, no gradient).
    pub freeze_until: Option<String>,
    /// `--finetune all`: each block's rate is this fraction of the next block's (1: one
    /// rate for the whole backbone).
    pub layer_decay: f32,
    /// The fine-tuned layers' starting weights.
    pub init: Init,
    pub split: SplitSettings,
    pub probe: ProbeSettings,
    pub train: TrainConfig,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            schema_version: ARTIFACT_SCHEMA_VERSION,
            model: "efficientnet-lite0".into(),
            data: "mnist-5k".into(),
            tasks: Vec::new(),
            layer: None,
            pool: Pool::Mean,
            image_size: None,
            head: HeadSpec::linear(),
            finetune: Finetune::None,
            batchnorm: BatchNormForm::Folded,
            pretrained_lr: 0.1,
            unfreeze_epoch: 0,
            unfreeze_every: 0,
            freeze_until: None,
            layer_decay: 1.0,
            init: Init::Pretrained,
            split: SplitSettings::default(),
            probe: ProbeSettings::default(),
            train: TrainConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum HeadArg {
    Linear,
    Mlp,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OptArg {
    Sgd,
    Adam,
    Adamw,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ScheduleArg {
    Constant,
    Cosine,
    OneCycle,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ActArg {
    Relu,
    Gelu,
}

/// `tl train`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  tl train --model efficientnet-lite0 --data mnist-5k --budget 10 --out runs/probe
  tl train --data mnist-5k --head mlp --hidden 256 --epochs 30 --out runs/mlp
  tl train --data mnist-5k --finetune last --image-size 112 --pretrained-lr 0.1 --out runs/ft
  tl train --data sklearn-digits --finetune all --image-size 64 --freeze-until blocks.5 --layer-decay 0.8 \
           --batchnorm kept --augment-rotate 10 --augment-crop 0.8 --epochs 10 --out runs/ft-all
  tl train --model minilm-l6 --data rotten-tomatoes --task sentiment --task subjectivity --head mlp --hidden 128 --out runs/mt
  tl train --config experiment.toml --out runs/x     (flags given beside it override the file)")]
pub struct TrainArgs {
    /// Run config (TOML, the schema of config.json); flags override it.
    #[arg(long, value_name = "FILE.toml")]
    config: Option<PathBuf>,
    /// Registry id or path to an .onnx file (default efficientnet-lite0).
    #[arg(long, short)]
    model: Option<String>,
    /// Input contract (TOML) for a model file that does not carry one.
    #[arg(long, value_name = "FILE.toml")]
    contract: Option<PathBuf>,
    /// Registry dataset or path: image folder, text table, IDX file, dataset.toml
    /// (`tl data info PATH` shows how it is read; default mnist-5k).
    #[arg(long, short)]
    data: Option<String>,
    /// Task to train (repeat for a multi-task head; default: the dataset's first task).
    #[arg(long = "task", value_name = "NAME")]
    tasks: Vec<String>,
    /// Node whose features the head reads (default: the model's feature output).
    #[arg(long, value_name = "NODE")]
    layer: Option<String>,
    /// Pooling of spatial features: mean, max or none.
    #[arg(long)]
    pool: Option<Pool>,
    /// Input side in pixels (EfficientNet works at 96–224).
    #[arg(long, value_name = "N")]
    image_size: Option<u32>,
    /// linear: the exact probe (L-BFGS, C chosen on validation); mlp: hidden layers trained by the trainer.
    #[arg(long, value_enum)]
    head: Option<HeadArg>,
    /// Hidden widths of an mlp head, comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "N,...")]
    hidden: Option<Vec<usize>>,
    #[arg(long, value_enum)]
    activation: Option<ActArg>,
    #[arg(long)]
    dropout: Option<f32>,
    /// none: a head on frozen features; last: also fine-tune the backbone's last block;
    /// all: fine-tune the whole backbone from its input (images, registry CNNs or their files).
    #[arg(long, value_enum)]
    finetune: Option<Finetune>,
    /// --finetune all: keep every node up to and including NODE frozen (`tl models inspect` lists nodes; e.g. blocks.5, features.7).
    #[arg(long, value_name = "NODE")]
    freeze_until: Option<String>,
    /// --finetune all: layer-wise rate decay, each block at FACTOR × the next block's rate (the last block at --pretrained-lr).
    #[arg(long, value_name = "FACTOR")]
    layer_decay: Option<f32>,
    /// --finetune all: from --unfreeze-epoch on, unfreeze one more block every N epochs, last block first.
    #[arg(long, value_name = "N")]
    unfreeze_every: Option<usize>,
    /// --finetune last|all: start from the pretrained weights, or from a random
    /// initialisation of the same architecture (the from-scratch baseline).
    #[arg(long, value_enum)]
    init: Option<Init>,
    /// Clip the gradients to this global L2 norm.
    #[arg(long, value_name = "NORM")]
    clip_norm: Option<f32>,
    /// Rows per forward/backward pass; gradients are accumulated over a --batch-size step.
    #[arg(long, value_name = "ROWS")]
    micro_batch: Option<usize>,
    /// Augment (--finetune all): random resized crop keeping at least this fraction of the area.
    #[arg(long, value_name = "FRACTION")]
    augment_crop: Option<f32>,
    /// Augment (--finetune all): flip left-right with probability ½ (not for digits).
    #[arg(long)]
    augment_flip: bool,
    /// Augment (--finetune all): rotate by up to ± this many degrees.
    #[arg(long, value_name = "DEGREES")]
    augment_rotate: Option<f32>,
    /// Fine-tune the BatchNorm-folded graph or the BatchNorm-kept one.
    #[arg(long, value_enum)]
    batchnorm: Option<BatchNormForm>,
    /// The pretrained layers' learning rate as a fraction of the head's.
    #[arg(long, value_name = "FRACTION")]
    pretrained_lr: Option<f32>,
    /// Train only the head before this epoch (gradual unfreezing).
    #[arg(long, value_name = "EPOCH")]
    unfreeze_epoch: Option<usize>,
    /// Reuse a split file; otherwise one is made from --seed, --val, --test, --budget.
    #[arg(long, value_name = "split.json")]
    split: Option<PathBuf>,
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long, value_name = "FRACTION")]
    val: Option<f64>,
    #[arg(long, value_name = "FRACTION")]
    test: Option<f64>,
    /// Labelled rows per class for training and validation together (the split's budget).
    #[arg(long, value_name = "K")]
    budget: Option<usize>,
    /// Probe: values of C to try, comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "C,...")]
    cs: Option<Vec<f64>>,
    /// Probe: weight classes by inverse frequency.
    #[arg(long)]
    balanced: bool,
    /// Probe: standardise features first.
    #[arg(long)]
    standardize: bool,
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long)]
    lr: Option<f32>,
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long, value_enum)]
    optimizer: Option<OptArg>,
    #[arg(long)]
    weight_decay: Option<f32>,
    #[arg(long, value_enum)]
    schedule: Option<ScheduleArg>,
    #[arg(long, value_name = "STEPS")]
    warmup: Option<usize>,
    #[arg(long)]
    label_smoothing: Option<f32>,
    /// Early stopping: epochs without a better validation score (0: never stop early).
    #[arg(long)]
    patience: Option<usize>,
    /// Artifact directory (config.json, weights.safetensors, metrics.json, manifest.json, model.onnx).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    #[command(flatten)]
    run: RunArgs,
}

/// A config from a TOML file (`--config`), or the defaults without one.
pub(crate) fn read_config<T: serde::de::DeserializeOwned + Default>(
    file: Option<&Path>,
    what: &str,
) -> Result<T> {
    let Some(f) = file else {
        return Ok(T::default());
    };
    let text =
        std::fs::read_to_string(f).with_context(|| format!("cannot read `{}`", f.display()))?;
    toml::from_str(&text).with_context(|| format!("`{}` is not a valid {what}", f.display()))
}

impl TrainArgs {
    fn config(&self) -> Result<RunConfig> {
        let mut c: RunConfig = read_config(self.config.as_deref(), "run config")?;
        macro_rules! set {
            ($field:expr, $flag:expr) => {
                if let Some(v) = $flag.clone() {
                    $field = v;
                }
            };
        }
        set!(c.model, self.model);
        set!(c.data, self.data);
        if !self.tasks.is_empty() {
            c.tasks = self.tasks.clone();
        }
        if self.layer.is_some() {
            c.layer = self.layer.clone();
        }
        set!(c.pool, self.pool);
        if self.image_size.is_some() {
            c.image_size = self.image_size;
        }
        if let Some(h) = self.head {
            c.head.kind = match h {
                HeadArg::Linear => HeadKind::Linear,
                HeadArg::Mlp => HeadKind::Mlp,
            };
            if c.head.kind == HeadKind::Linear {
                c.head.hidden.clear();
            } else if c.head.hidden.is_empty() {
                c.head.hidden = vec![256];
            }
        }
        set!(c.head.hidden, self.hidden);
        if let Some(a) = self.activation {
            c.head.activation = match a {
                ActArg::Relu => Act::Relu,
                ActArg::Gelu => Act::Gelu,
            };
        }
        set!(c.head.dropout, self.dropout);
        set!(c.finetune, self.finetune);
        set!(c.batchnorm, self.batchnorm);
        set!(c.pretrained_lr, self.pretrained_lr);
        set!(c.unfreeze_epoch, self.unfreeze_epoch);
        set!(c.unfreeze_every, self.unfreeze_every);
        if self.freeze_until.is_some() {
            c.freeze_until = self.freeze_until.clone();
        }
        set!(c.layer_decay, self.layer_decay);
        set!(c.init, self.init);
        if self.clip_norm.is_some() {
            c.train.clip_norm = self.clip_norm;
        }
        if self.micro_batch.is_some() {
            c.train.micro_batch = self.micro_batch;
        }
        set!(c.train.augment.crop_scale, self.augment_crop);
        if self.augment_flip {
            c.train.augment.flip = true;
        }
        set!(c.train.augment.rotate, self.augment_rotate);
        if self.split.is_some() {
            c.split.file = self.split.clone();
        }
        set!(c.split.seed, self.seed);
        set!(c.train.seed, self.seed);
        set!(c.split.val, self.val);
        set!(c.split.test, self.test);
        if self.budget.is_some() {
            c.split.budget = self.budget;
        }
        set!(c.probe.cs, self.cs);
        if self.balanced {
            c.probe.class_weight = ClassWeight::Balanced;
        }
        if self.standardize {
            c.probe.standardize = true;
        }
        set!(c.train.epochs, self.epochs);
        set!(c.train.lr, self.lr);
        set!(c.train.batch_size, self.batch_size);
        if let Some(o) = self.optimizer {
            // PyTorch's defaults; AdamW brings its own weight decay (0.01).
            c.train.optimizer = match o {
                OptArg::Sgd => Optimizer::Sgd {
                    momentum: 0.9,
                    nesterov: true,
                    weight_decay: 0.0,
                },
                OptArg::Adam => Optimizer::adam(),
                OptArg::Adamw => Optimizer::default(),
            };
        }
        if let Some(wd) = self.weight_decay {
            c.train.optimizer = c.train.optimizer.clone().with_weight_decay(wd);
        }
        if let Some(s) = self.schedule {
            c.train.schedule = match s {
                ScheduleArg::Constant => Schedule::Constant,
                ScheduleArg::Cosine => Schedule::Cosine { min_factor: 0.0 },
                ScheduleArg::OneCycle => Schedule::one_cycle(),
            };
        }
        set!(c.train.warmup_steps, self.warmup);
        set!(c.train.label_smoothing, self.label_smoothing);
        if let Some(p) = self.patience {
            c.train.patience = (p > 0).then_some(p);
        }
        c.check()?;
        Ok(c)
    }
}

impl RunConfig {
    /// The trainer's settings: `train` plus, for fine-tuning, the pretrained layers at
    /// `pretrained_lr` × the head's rate, trained from `unfreeze_epoch` on. With the
    /// imported `backbone` of `--finetune all`, block by block: the last block at
    /// `pretrained_lr`, each earlier one at `layer_decay` × the next one's rate, and from
    /// `unfreeze_epoch` one more block every `unfreeze_every` epochs, last block first.
    pub fn trainer(&self, backbone: Option<&tl_nn::Graph>) -> TrainConfig {
        let mut t = self.train.clone();
        if self.finetune == Finetune::None {
            return t;
        }
        t.groups
            .0
            .insert(0, ("trunk.backbone".into(), self.pretrained_lr));
        let Some(graph) = backbone.filter(|_| self.finetune == Finetune::All) else {
            if self.unfreeze_epoch > 0 {
                t.unfreeze.push(Unfreeze {
                    prefix: "trunk.backbone".into(),
                    epoch: self.unfreeze_epoch,
                });
            }
            return t;
        };
        // The trainable blocks, in graph order.
        let mut blocks: Vec<String> = Vec::new();
        for node in &graph.nodes()[graph.frozen()..] {
            let b = tl_head::import::block_of(&node.name);
            if !blocks.contains(&b) {
                blocks.push(b);
            }
        }
        for (i, b) in blocks.iter().enumerate() {
            let depth = blocks.len() - 1 - i;
            let prefix = format!("trunk.backbone.{b}.");
            if self.layer_decay != 1.0 {
                let factor = self.pretrained_lr * self.layer_decay.powi(depth as i32);
                t.groups.0.push((prefix.clone(), factor));
            }
            if self.unfreeze_epoch > 0 {
                t.unfreeze.push(Unfreeze {
                    prefix,
                    epoch: self.unfreeze_epoch + depth * self.unfreeze_every,
                });
            }
        }
        t
    }

    /// Checks the settings that need no data, before any work.
    pub fn check(&self) -> Result<()> {
        self.head.check()?;
        self.train.check()?;
        ensure!(
            self.pretrained_lr.is_finite() && self.pretrained_lr >= 0.0,
            "--pretrained-lr {} must be ≥ 0",
            self.pretrained_lr
        );
        ensure!(
            !self.probe.cs.is_empty(),
            "the probe needs at least one value of C"
        );
        if let Some(c) = self.probe.cs.iter().find(|c| !(c.is_finite() && **c > 0.0)) {
            bail!("C = {c}: each value of C must be finite and > 0");
        }
        if self.finetune != Finetune::None {
            ensure!(
                self.layer.is_none(),
                "--finetune {} starts at the model's {}; --layer does not apply",
                serde_name(&self.finetune),
                if self.finetune == Finetune::Last {
                    "last block"
                } else {
                    "input"
                }
            );
        }
        ensure!(
            self.init == Init::Pretrained || self.finetune != Finetune::None,
            "--init random applies to fine-tuned layers (--finetune last|all)"
        );
        if self.finetune != Finetune::All {
            let all_only = [
                ("--freeze-until", self.freeze_until.is_some()),
                ("--layer-decay", self.layer_decay != 1.0),
                ("--unfreeze-every", self.unfreeze_every != 0),
                ("--augment-*", self.train.augment.is_active()),
            ];
            if let Some((flag, _)) = all_only.iter().find(|(_, set)| *set) {
                bail!("{flag} applies to --finetune all (the whole network from its input)");
            }
        }
        ensure!(
            self.layer_decay.is_finite() && self.layer_decay > 0.0 && self.layer_decay <= 1.0,
            "--layer-decay {} must be in (0, 1]",
            self.layer_decay
        );
        if self.unfreeze_every > 0 {
            ensure!(
                self.unfreeze_epoch > 0,
                "--unfreeze-every needs --unfreeze-epoch (the epoch the last block starts training)"
            );
        }
        if self.finetune != Finetune::None && self.unfreeze_epoch >= self.train.epochs {
            bail!(
                "--unfreeze-epoch {} is not before the last of {} epochs: the pretrained layers would never train",
                self.unfreeze_epoch,
                self.train.epochs
            );
        }
        Ok(())
    }
}

/// Rows of one part: features and labels per task.
struct PartData {
    x: Tensor,
    labels: Vec<Vec<Option<u32>>>,
}

/// The metrics file.
#[derive(Debug, Serialize, Deserialize)]
pub struct Metrics {
    pub schema_version: u32,
    pub test: Vec<TaskScore>,
    pub val: Vec<TaskScore>,
    pub rows: BTreeMap<String, usize>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probe_path: Vec<(String, Vec<tl_head::probe::PathPoint>)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<tl_head::train::TrainReport>,
    pub seconds: BTreeMap<String, f64>,
    /// Each task's test evaluation (rows with that task's label): headline metrics with
    /// bootstrap intervals, per-class scores, confusion matrix, calibration (temperature
    /// fitted on validation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evaluation: Vec<crate::report::TaskEvaluation>,
}

pub fn run(a: &TrainArgs, global: &Global) -> Result<()> {
    let cfg = a.config()?;
    let out = &a.out;
    let (metrics, exported) = execute(&cfg, out, a.contract.as_deref(), &a.run, global)?;
    let test_scores = &metrics.test;
    if global.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "schema_version": JSON_SCHEMA_VERSION, "out": out, "test": test_scores, "metrics": metrics,
                "exported": exported.as_ref().ok(), "export_error": exported.as_ref().err().map(|e| format!("{e:#}")),
            }))?
        );
    } else {
        for s in test_scores {
            println!(
                "{}: test accuracy {:.4} on {} rows (loss {:.4})",
                s.task, s.accuracy, s.rows, s.loss
            );
        }
        match &exported {
            Ok(p) => println!("artifact in {} (model: {})", out.display(), p.display()),
            Err(e) => println!("artifact in {} (not exported: {e:#})", out.display()),
        }
    }
    Ok(())
}

/// One `tl train` run with `cfg` into `out`: the artifact directory, its metrics and the
/// export's outcome (an export error does not fail the run).
pub(crate) fn execute(
    cfg: &RunConfig,
    out: &Path,
    contract: Option<&Path>,
    run_args: &crate::RunArgs,
    global: &Global,
) -> Result<(Metrics, Result<PathBuf>)> {
    let cfg = cfg.clone();
    let started = Instant::now();
    let home = global.home()?;
    let out = &out.to_path_buf();
    tl_core::io::create_dir_all(out)?;
    let say = |s: String| {
        if !global.quiet && !global.json {
            eprintln!("{s}");
        }
    };
    // Data, tasks and split.
    let ds = data::load(&cfg.data, &home)?;
    let task_names: Vec<String> = if cfg.tasks.is_empty() {
        vec![data::first_labelled_task(&ds)?]
    } else {
        cfg.tasks.clone()
    };
    let task_idx: Vec<usize> = task_names
        .iter()
        .map(|t| ds.task_index(t))
        .collect::<Result<_, _>>()?;
    let tasks: Vec<TaskSpec> = task_idx
        .iter()
        .map(|&t| TaskSpec {
            name: ds.tasks[t].name.clone(),
            classes: ds.tasks[t].classes.clone(),
            weight: 1.0,
        })
        .collect();
    let split = match &cfg.split.file {
        Some(f) => Split::load_for(f, &ds)?,
        None => {
            let mut sc = SplitConfig::new(&task_names[0], cfg.split.seed);
            sc.val_fraction = cfg.split.val;
            sc.test_fraction = cfg.split.test;
            sc.budget = cfg.split.budget;
            sc.also = task_names[1..].to_vec();
            Split::stratified(&ds, &sc)?
        }
    };
    split.save(&out.join("split.json"))?;
    // Features of the rows the split uses.
    let sub = split.used_rows(&ds);
    let registry_entry = tl_hub::Registry::builtin()?.get(&cfg.model).ok().cloned();
    let (layer, pool, model_file) = match cfg.finetune {
        Finetune::None => (cfg.layer.clone(), cfg.pool, None),
        Finetune::Last | Finetune::All => {
            let entry = registry_entry.as_ref().with_context(|| {
                format!(
                    "--finetune {} needs a registry CNN (efficientnet-lite0, mobilenet-v2)",
                    serde_name(&cfg.finetune)
                )
            })?;
            // The last block's output, or (all) the model's input.
            let from = match cfg.finetune {
                Finetune::Last => Some(
                    entry
                        .outputs
                        .as_ref()
                        .and_then(|o| o.last_block.clone())
                        .with_context(|| {
                            format!("`{}` names no last block to fine-tune from", entry.id)
                        })?,
                ),
                _ => None,
            };
            let file = match cfg.batchnorm {
                BatchNormForm::Folded => None,
                BatchNormForm::Kept => Some(tl_hub::model_path(&home, entry, true)?),
            };
            (from, Pool::None, file)
        }
    };
    let t_extract = Instant::now();
    if cfg.finetune != Finetune::None
        && registry_entry
            .as_ref()
            .is_some_and(extract::is_word_vectors)
    {
        bail!("word vectors have no layers to fine-tune");
    }
    let src = feature_source(
        &FeatureRequest {
            model: &cfg.model,
            contract,
            model_file,
            layer: layer.clone(),
            pool,
            image_size: cfg.image_size,
            inputs: cfg.finetune == Finetune::All,
            run: run_args,
        },
        &sub,
        &home,
        global,
    )?;
    let extract_seconds = t_extract.elapsed().as_secs_f64();
    let width = src.width;
    let class_of = |task: usize, name: &str| {
        tasks[task]
            .classes
            .iter()
            .position(|c| c == name)
            .map(|i| i as u32)
    };
    let part = |p: Part| -> Result<PartData> {
        let rows: Vec<&tl_data::SplitRow> = split.rows.iter().filter(|r| r.split == p).collect();
        let hashes: Vec<String> = rows.iter().map(|r| r.content_hash.clone()).collect();
        let x = (src.gather)(&hashes)?;
        let labels = (0..tasks.len())
            .map(|t| {
                rows.iter()
                    .map(|r| r.labels.get(&tasks[t].name).and_then(|c| class_of(t, c)))
                    .collect()
            })
            .collect();
        Ok(PartData {
            x: x.into_dyn(),
            labels,
        })
    };
    let (mut train, mut val, mut test) = (part(Part::Train)?, part(Part::Val)?, part(Part::Test)?);
    let counts: BTreeMap<String, usize> = [("train", &train), ("val", &val), ("test", &test)]
        .iter()
        .map(|(n, p)| (n.to_string(), p.x.shape()[0]))
        .collect();
    say(format!(
        "{} rows: {} train, {} val, {} test; features `{}` width {width} ({:.1} s)",
        ds.name, counts["train"], counts["val"], counts["test"], src.layer, extract_seconds
    ));
    let features_output = registry_entry
        .as_ref()
        .and_then(|e| e.outputs.as_ref().map(|o| o.features.clone()));
    let mut imported: Vec<ImportedLayer> = Vec::new();
    let mut backbone = None;
    let mut head_width = width;
    let mut train_cfg = cfg.trainer(None);
    if cfg.finetune != Finetune::None {
        let to = features_output
            .clone()
            .context("the model names no feature output")?;
        let backbone_model = OnnxModel::load(src.model_path.as_ref().context("no ONNX backbone")?)?;
        let mut imp = import_graph(&backbone_model, &src.layer, &to)?;
        if cfg.init == Init::Random {
            tl_head::import::reinitialize(&mut imp.layers, cfg.train.seed);
        }
        if let Some(node) = &cfg.freeze_until {
            imp.layers.freeze_through(node)?;
        }
        train_cfg = cfg.trainer(Some(&imp.layers));
        let hw = width / imp.in_channels;
        let side = (hw as f64).sqrt().round() as usize;
        ensure!(
            side * side * imp.in_channels == width,
            "features of width {width} are not {} square maps",
            imp.in_channels
        );
        for p in [&mut train, &mut val, &mut test] {
            let n = p.x.shape()[0];
            p.x = std::mem::take(&mut p.x).into_shape_with_order(vec![
                n,
                imp.in_channels,
                side,
                side,
            ])?;
        }
        say(format!(
            "fine-tuning {} from `{}` ({} layers, {}×{side}×{side} in), pretrained layers at {}× the head's rate",
            imp.layers.describe(),
            src.layer,
            imp.map.len(),
            imp.in_channels,
            cfg.pretrained_lr
        ));
        head_width = imp.width;
        imported = imp.map;
        backbone = Some(Box::new(imp.layers) as Box<dyn Module>);
    }
    // What this run trains on: a checkpoint in `out` resumes only the same run.
    let fingerprint = tl_core::hash::sha256_bytes(
        serde_json::to_string(&serde_json::json!({
            "model_sha256": src.sha, "layer": src.layer, "pool": pool, "contract": src.contract_json,
            "dataset_sha256": ds.sha256, "split": split.rows.iter().map(|r| (&r.content_hash, r.split)).collect::<Vec<_>>(),
            "tasks": tasks, "head": cfg.head, "finetune": cfg.finetune, "freeze_until": cfg.freeze_until, "init": cfg.init,
        }))?
        .as_bytes(),
    );
    let t_train = Instant::now();
    let mut net = HeadNet::build_on(&cfg.head, backbone, head_width, &tasks, cfg.train.seed)?;
    let mut probe_path = Vec::new();
    let mut training = None;
    if cfg.head.kind == HeadKind::Linear && cfg.finetune == Finetune::None {
        // The exact probe, one per task (a linear head per task on shared features is
        // exactly independent probes).
        for (t, task) in tasks.iter().enumerate() {
            let pick = |p: &PartData| -> (Array2<f32>, Vec<u32>) {
                let idx: Vec<usize> = (0..p.labels[t].len())
                    .filter(|&i| p.labels[t][i].is_some())
                    .collect();
                let x =
                    p.x.view()
                        .into_dimensionality::<ndarray::Ix2>()
                        .expect("2-D")
                        .select(Axis(0), &idx);
                (
                    x,
                    idx.iter()
                        .map(|&i| p.labels[t][i].expect("filtered"))
                        .collect(),
                )
            };
            let (xtr, ytr) = pick(&train);
            let (xva, yva) = pick(&val);
            let pcfg = ProbeConfig::new(1.0)
                .class_weight(cfg.probe.class_weight.clone())
                .standardize(cfg.probe.standardize);
            let trd = ProbeData {
                x: xtr.view(),
                y: &ytr,
                classes: task.classes.len(),
            };
            let result = if yva.is_empty() {
                let c = cfg.probe.cs[cfg.probe.cs.len() / 2];
                say(format!(
                    "{}: no validation rows, fitting C = {c}",
                    task.name
                ));
                let probe = tl_head::probe::fit(&trd, &pcfg.clone().with_c(c), None)?;
                tl_head::probe::PathResult {
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
                tl_head::probe::fit_path(&trd, &vad, &cfg.probe.cs, &pcfg)?
            };
            for p in &result.points {
                say(format!(
                    "  {}: C {:<9.3e} train {:.4}  val {:.4}  ({} iterations, {:.2} s)",
                    task.name, p.c, p.train_accuracy, p.val_accuracy, p.iterations, p.seconds
                ));
            }
            say(format!(
                "  {}: best C {:.3e}, refitted on train + val",
                task.name, result.best_c
            ));
            let (w, b) = result.probe.to_f32();
            let mut params = checkpoint::named_params(&net);
            params.insert(format!("heads.{}.0.weight", task.name), w.into_dyn());
            params.insert(format!("heads.{}.0.bias", task.name), b.into_dyn());
            checkpoint::set_params(&mut net, &params, Path::new("probe"))?;
            probe_path.push((task.name.clone(), result.points));
        }
    } else {
        let total = cfg.train.epochs;
        let mut log = |e: &EpochLog| {
            let val: Vec<String> = e
                .val
                .iter()
                .map(|s| format!("{} {:.4}", s.task, s.accuracy))
                .collect();
            say(format!(
                "epoch {:>3}/{total}  loss {:.4}  val acc {}  lr {:.2e}  {:.1} s",
                e.epoch + 1,
                e.train_loss,
                if val.is_empty() {
                    "-".into()
                } else {
                    val.join(", ")
                },
                e.lr,
                e.seconds
            ));
        };
        let report = tl_head::train::train(
            &mut net,
            &tasks,
            &Labelled {
                x: &train.x,
                labels: &train.labels,
            },
            Some(&Labelled {
                x: &val.x,
                labels: &val.labels,
            }),
            &train_cfg,
            Some((out.as_path(), fingerprint.as_str())),
            &mut log,
            None,
        )?;
        if let Some(from) = report.resumed_from_epoch {
            say(format!("resumed from the checkpoint after epoch {from}"));
        }
        training = Some(report);
    }
    let train_seconds = t_train.elapsed().as_secs_f64();
    let test_scores = evaluate(
        &mut net,
        &Labelled {
            x: &test.x,
            labels: &test.labels,
        },
        &tasks,
        256,
    )?;
    let val_scores = if val.x.shape()[0] > 0 {
        evaluate(
            &mut net,
            &Labelled {
                x: &val.x,
                labels: &val.labels,
            },
            &tasks,
            256,
        )?
    } else {
        Vec::new()
    };
    // The artifact: weights, config, metrics, manifest, then the exported model.
    checkpoint::save_params(&net, &out.join("weights.safetensors"))?;
    let mut saved_cfg = cfg.clone();
    saved_cfg.split.file = Some(PathBuf::from("split.json"));
    tl_core::io::write_json(&out.join("config.json"), &saved_cfg)?;
    // head.json (what export needs) exists for ONNX backbones; word vectors have none.
    if let Some(model_file) = &src.model_path {
        let head_meta = HeadMeta {
            schema_version: ARTIFACT_SCHEMA_VERSION,
            tasks: tasks.clone(),
            input_value: if cfg.finetune != Finetune::None {
                features_output.clone().unwrap_or_default()
            } else {
                src.layer.clone()
            },
            pool: if cfg.finetune != Finetune::None {
                Pool::None
            } else {
                pool
            },
            model_file: model_file.clone(),
            model_sha256: src.sha.clone(),
            contract: src.contract_json.clone(),
            imported,
            feature_width: width,
            head: None,
            source_model: None,
            affine: None,
            logit_offset: None,
            segments: None,
        };
        tl_core::io::write_json(&out.join("head.json"), &head_meta)?;
    }
    let evaluation = if test.x.shape()[0] > 0 {
        let test_logits = crate::report::PartLogits::of(&mut net, &test.x, &test.labels)?;
        let val_logits = if val.x.shape()[0] > 0 {
            Some(crate::report::PartLogits::of(
                &mut net,
                &val.x,
                &val.labels,
            )?)
        } else {
            None
        };
        crate::report::evaluate_tasks(
            &net,
            &tasks,
            &test_logits,
            val_logits.as_ref(),
            tl_eval::EvalOptions {
                seed: cfg.split.seed,
                ..Default::default()
            },
        )?
    } else {
        Vec::new()
    };
    let metrics = Metrics {
        schema_version: METRICS_SCHEMA_VERSION,
        evaluation,
        test: test_scores.clone(),
        val: val_scores,
        rows: counts,
        probe_path,
        training,
        seconds: BTreeMap::from([
            ("extract".to_string(), extract_seconds),
            ("train".to_string(), train_seconds),
            ("total".to_string(), started.elapsed().as_secs_f64()),
        ]),
    };
    tl_core::io::write_json(&out.join("metrics.json"), &metrics)?;
    let manifest = serde_json::json!({
        "schema_version": ARTIFACT_SCHEMA_VERSION,
        "tl_version": env!("CARGO_PKG_VERSION"),
        "git_revision": option_env!("TL_GIT_REVISION"),
        "command": std::env::args().collect::<Vec<_>>(),
        "model": cfg.model, "model_file": src.model_path, "model_sha256": src.sha,
        "dataset": ds.name, "dataset_sha256": ds.sha256,
        "split_sha256": tl_core::hash::sha256_file(&out.join("split.json"))?,
        "seed": cfg.train.seed, "split_seed": cfg.split.seed,
        "provider": src.provider, "feature_store": src.store_dir,
        "threads": rayon::current_num_threads(),
        "weights_sha256": tl_core::hash::sha256_file(&out.join("weights.safetensors"))?,
        "timings_seconds": metrics.seconds,
    });
    tl_core::io::write_json(&out.join("manifest.json"), &manifest)?;
    write_report(out, &cfg, &src.layer, &metrics)?;
    let exported = if src.model_path.is_some() {
        export_artifact(out, &out.join("model.onnx"))
    } else {
        Err(anyhow::anyhow!(
            "word-vector and raw-input features have no ONNX backbone to export"
        ))
    };
    Ok((metrics, exported))
}

/// How a config value is spelt in config files and flags.
fn serde_name<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".into(),
    }
}

/// `report.md` and `report.html` of a trained artifact.
fn write_report(out: &Path, cfg: &RunConfig, layer: &str, m: &Metrics) -> Result<()> {
    let head = match cfg.head.kind {
        HeadKind::Linear => "linear probe".to_string(),
        _ => format!(
            "MLP {:?} ({}, dropout {})",
            cfg.head.hidden,
            serde_name(&cfg.head.activation),
            cfg.head.dropout
        ),
    };
    let rows: Vec<String> = m.rows.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let facts = vec![
        ("model".to_string(), cfg.model.clone()),
        (
            "features".into(),
            format!("{layer} ({} pooling)", serde_name(&cfg.pool)),
        ),
        ("data".into(), cfg.data.clone()),
        ("head".into(), head),
        ("fine-tuning".into(), serde_name(&cfg.finetune)),
        ("rows".into(), rows.join(", ")),
        (
            "seeds".into(),
            format!("training {}, split {}", cfg.train.seed, cfg.split.seed),
        ),
        (
            "time".into(),
            format!(
                "{:.1} s",
                m.seconds.get("total").copied().unwrap_or(f64::NAN)
            ),
        ),
        (
            "command".into(),
            std::env::args().collect::<Vec<_>>().join(" "),
        ),
    ];
    let mut sections: Vec<tl_eval::Section> = m
        .evaluation
        .iter()
        .map(|t| tl_eval::Section::evaluation(&format!("Test: {}", t.task), &t.evaluation))
        .collect();
    sections.extend(crate::report::probe_path(&m.probe_path));
    if let Some(t) = &m.training {
        sections.extend(crate::report::convergence(&t.history));
    }
    crate::report::write(
        out,
        format!("tl train: {} on {}", cfg.model, cfg.data),
        facts,
        sections,
    )
}

/// Where a run's features come from.
/// What [`feature_source`] extracts.
#[derive(Debug)]
pub(crate) struct FeatureRequest<'a> {
    pub model: &'a str,
    pub contract: Option<&'a std::path::Path>,
    /// Another file of the same registry model (the BatchNorm-kept graph).
    pub model_file: Option<PathBuf>,
    pub layer: Option<String>,
    pub pool: Pool,
    pub image_size: Option<u32>,
    /// The model's preprocessed inputs instead of features (`--finetune all`).
    pub inputs: bool,
    pub run: &'a crate::RunArgs,
}

/// Features of the rows of `ds` from a registry model, a model file or word vectors:
/// extracted (or found in the feature store), then gathered by content hash.
pub(crate) fn feature_source(
    r: &FeatureRequest<'_>,
    ds: &Dataset,
    home: &Path,
    global: &Global,
) -> Result<Source> {
    if let Some(raw) = RawInput::parse(r.model) {
        return raw_source(raw, ds, r.image_size);
    }
    if r.inputs {
        return input_source(r, ds, home);
    }
    let registry_entry = tl_hub::Registry::builtin()?.get(r.model).ok().cloned();
    if let Some(entry) = registry_entry
        .as_ref()
        .filter(|e| extract::is_word_vectors(e))
    {
        return word_vector_source(entry, ds, home);
    }
    let computed = extract::compute(
        &extract::Request {
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
            run: r.run,
        },
        ds,
        home,
        global,
    )?;
    let store = computed
        .stores
        .into_iter()
        .next()
        .context("no feature store")?;
    Ok(Source {
        layer: computed.layers[0].clone(),
        width: store.width().context("no features were extracted")?,
        model_path: Some(computed.model.path.clone()),
        sha: computed.sha,
        contract_json: computed.contract_json,
        provider: computed.report.provider,
        store_dir: Some(store.dir().to_path_buf()),
        gather: Box::new(move |h: &[String]| Ok(store.gather(h)?)),
    })
}

/// Features of rows, by content hash.
pub(crate) type Gather = Box<dyn Fn(&[String]) -> Result<Array2<f32>>>;

/// Where a run's features come from, and how to get them.
pub(crate) struct Source {
    pub layer: String,
    pub width: usize,
    /// The ONNX backbone (none for word vectors).
    pub model_path: Option<PathBuf>,
    pub sha: String,
    pub contract_json: serde_json::Value,
    pub provider: String,
    pub store_dir: Option<PathBuf>,
    /// Features of rows by content hash.
    pub gather: Gather,
}

/// Baselines without a pretrained model (`--model pixels|tfidf`): the "from scratch"
/// arm of learning curves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RawInput {
    /// Images: luma pixels at `--image-size` (default [`RAW_PIXEL_SIZE`]).
    Pixels,
    /// Texts: a TF-IDF bag of the [`RAW_VOCAB`] most common words.
    TfIdf,
}

/// Default side of the `pixels` baseline (MNIST's own size).
pub(crate) const RAW_PIXEL_SIZE: u32 = 28;
/// Vocabulary of the `tfidf` baseline.
pub(crate) const RAW_VOCAB: usize = 5000;

impl RawInput {
    pub(crate) fn parse(model: &str) -> Option<Self> {
        match model {
            "pixels" => Some(Self::Pixels),
            "tfidf" => Some(Self::TfIdf),
            _ => None,
        }
    }
}

/// Raw-input features of every row of `ds` (computed per run, not cached: they cost
/// less than reading a cache).
fn raw_source(raw: RawInput, ds: &Dataset, image_size: Option<u32>) -> Result<Source> {
    let (features, layer, contract) = match raw {
        RawInput::Pixels => {
            let size = image_size.unwrap_or(RAW_PIXEL_SIZE);
            let rows: Vec<&tl_data::Row> = ds.rows.iter().collect();
            ensure!(
                rows.iter()
                    .all(|r| !matches!(r.content, tl_data::Content::Text(_))),
                "dataset `{}` holds texts: `--model pixels` is for images (use `--model tfidf`)",
                ds.name
            );
            (
                tl_features::raw::pixels(&rows, size)?,
                format!("pixels {size}x{size} luma"),
                serde_json::json!({"raw": "pixels", "size": size}),
            )
        }
        RawInput::TfIdf => {
            let texts = extract::texts(ds)
                .with_context(|| format!("`--model tfidf` is for texts; dataset `{}`", ds.name))?;
            (
                tl_features::raw::tfidf(&texts, RAW_VOCAB),
                format!("tf-idf {RAW_VOCAB} words"),
                serde_json::json!({"raw": "tfidf", "vocab": RAW_VOCAB}),
            )
        }
    };
    Ok(Source {
        layer,
        width: features.ncols(),
        model_path: None,
        sha: String::new(),
        contract_json: contract,
        provider: "cpu (no model)".into(),
        store_dir: None,
        gather: in_memory(ds, features)?,
    })
}

/// The model's preprocessed inputs (`--finetune all`): each row decoded, resized and
/// cropped by the input contract (at `--image-size`), normalised and flattened; the
/// network computes everything after that.
fn input_source(r: &FeatureRequest<'_>, ds: &Dataset, home: &Path) -> Result<Source> {
    let mut model = resolve::resolve(r.model, r.contract, home)?;
    if let Some(f) = &r.model_file {
        model.path = f.clone();
    }
    let mut contract = model
        .image_contract()
        .context("--finetune all trains image models from their input")?
        .clone();
    if let Some(size) = r.image_size {
        contract = contract.with_size(size)?;
    }
    ensure!(
        contract.layout == tl_core::contract::Layout::Nchw,
        "--finetune all needs a model with NCHW input"
    );
    let rows: Vec<&tl_data::Row> = ds.rows.iter().collect();
    let x = tl_features::extract::preprocess_rows(&contract, &rows)?;
    let n = x.shape()[0];
    let width = x.len() / n.max(1);
    let features = x.into_shape_with_order((n, width))?;
    Ok(Source {
        layer: contract.input.clone(),
        width,
        sha: tl_core::hash::sha256_file(&model.path)?,
        model_path: Some(model.path),
        contract_json: serde_json::to_value(tl_core::InputContract::Image(contract))?,
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
    Ok(Box::new(move |hashes: &[String]| {
        let idx: Vec<usize> = hashes
            .iter()
            .map(|h| {
                index
                    .get(h)
                    .copied()
                    .with_context(|| format!("no row with content hash {h}"))
            })
            .collect::<Result<_>>()?;
        Ok(features.select(Axis(0), &idx))
    }))
}

/// Sentence features from word vectors (`glove-6b-50d`): the mean of the known words'
/// vectors, computed for the rows used (not cached: see DESIGN.md).
fn word_vector_source(entry: &tl_hub::Entry, ds: &Dataset, home: &Path) -> Result<Source> {
    let wv = extract::load_word_vectors(entry, home)?;
    let texts = extract::texts(ds)?;
    let e = wv.embed(&texts, tl_features::wordvec::Weighting::Mean);
    let oov_rate = e.oov_rate();
    let features = e.features;
    Ok(Source {
        layer: format!("{} mean", entry.id),
        width: wv.dim(),
        model_path: None,
        // Pinned in the registry and verified when fetched: no need to hash the file again.
        sha: entry
            .files
            .iter()
            .find(|f| f.name.ends_with(".npy"))
            .map(|f| f.sha256.clone())
            .unwrap_or_default(),
        contract_json: serde_json::json!({"word_vectors": entry.id, "weighting": "mean", "oov_rate": oov_rate}),
        provider: "cpu (no ONNX Runtime)".into(),
        store_dir: None,
        gather: in_memory(ds, features)?,
    })
}

/// What export needs beyond config.json: the tasks, where the head reads, the backbone.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeadMeta {
    pub schema_version: u32,
    pub tasks: Vec<TaskSpec>,
    pub input_value: String,
    pub pool: Pool,
    pub model_file: PathBuf,
    pub model_sha256: String,
    pub contract: serde_json::Value,
    pub imported: Vec<ImportedLayer>,
    pub feature_width: usize,
    /// The head and the backbone's registry id, when `config.json` is not a `tl train`
    /// config (`tl adapt` artifacts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<HeadSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_model: Option<String>,
    /// The features become `x · scale + shift` before the head (`tl adapt`'s target
    /// standardisation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affine: Option<Affine>,
    /// Added to the logits before the softmax (`tl adapt --method prior`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logit_offset: Option<Vec<f32>>,
    /// How `tl predict` cuts texts before the model (`sentences`: each text's prediction
    /// pools its sentences', as `tl adapt --segments` scored them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segments: Option<tl_data::segment::Segments>,
}

/// A per-feature affine map.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Affine {
    pub scale: Vec<f32>,
    pub shift: Vec<f32>,
}

/// The ONNX metadata key that tells `tl predict` to cut texts into sentences.
pub const SEGMENTS_KEY: &str = "tl.segments";

/// Writes the artifact in `dir` as one ONNX file at `dest`.
pub fn export_artifact(dir: &Path, dest: &Path) -> Result<PathBuf> {
    let head_json = dir.join("head.json");
    ensure!(
        head_json.is_file(),
        "`{}` holds no head.json: it is not a directory written by `tl train` or `tl adapt` (with an ONNX backbone)",
        dir.display()
    );
    let meta: HeadMeta = tl_core::io::read_json(&head_json)?;
    let (head, source_model) = match (&meta.head, &meta.source_model) {
        (Some(h), Some(m)) => (h.clone(), m.clone()),
        _ => {
            let cfg: RunConfig = tl_core::io::read_json(&dir.join("config.json"))?;
            (cfg.head.clone(), cfg.model.clone())
        }
    };
    let backbone = OnnxModel::load(&meta.model_file)
        .with_context(|| format!("the artifact's backbone `{}`", meta.model_file.display()))?;
    let sha = tl_core::hash::sha256_file(&meta.model_file)?;
    ensure!(
        sha == meta.model_sha256,
        "`{}` changed since training (sha256 {}, trained on {})",
        meta.model_file.display(),
        &sha[..12],
        &meta.model_sha256[..12]
    );
    let mut contract: tl_core::InputContract =
        serde_json::from_value(meta.contract.clone()).context("head.json: the input contract")?;
    // A text model's tokenizer goes beside the exported file, named in its contract.
    let text = match &mut contract {
        tl_core::InputContract::Text(t) => {
            let src = meta
                .model_file
                .parent()
                .context("model file has no directory")?
                .join(&t.tokenizer);
            let stem = dest.file_stem().and_then(|s| s.to_str()).unwrap_or("model");
            let name = format!("{stem}.tokenizer.json");
            let target = dest.parent().unwrap_or(Path::new(".")).join(&name);
            let bytes =
                std::fs::read(&src).with_context(|| format!("cannot read `{}`", src.display()))?;
            tl_core::io::atomic_write(&target, &bytes)?;
            t.tokenizer = name;
            Some(tl_head::export::TextPoolSpec {
                token_output: t.token_output.clone(),
                attention_mask: t.attention_mask.clone(),
                mean: t.pooling == tl_core::contract::TextPooling::Mean,
                normalize: t.normalize,
            })
        }
        _ => None,
    };
    let params = checkpoint::load_tensors(&dir.join("weights.safetensors"))?;
    let mut metadata = BTreeMap::from([
        (
            resolve::CONTRACT_KEY.to_string(),
            serde_json::to_string(&contract)?,
        ),
        ("tl.source_sha256".to_string(), meta.model_sha256.clone()),
        ("tl.source_model".to_string(), source_model),
    ]);
    if let Some(seg) = meta.segments {
        metadata.insert(SEGMENTS_KEY.into(), seg.name().into());
    }
    if let tl_core::InputContract::Text(t) = &contract {
        metadata.insert("tl.tokenizer".into(), t.tokenizer.clone());
    }
    let model = tl_head::export::export(
        &backbone,
        &ExportSpec {
            text,
            input_value: &meta.input_value,
            pool: match meta.pool {
                Pool::Mean => ExportPool::Mean,
                Pool::Max => ExportPool::Max,
                Pool::None => ExportPool::None,
            },
            head: &head,
            tasks: &meta.tasks,
            params: &params,
            imported: &meta.imported,
            metadata,
            input_affine: meta
                .affine
                .as_ref()
                .map(|a| (a.scale.as_slice(), a.shift.as_slice())),
            logit_offset: meta.logit_offset.as_deref(),
        },
    )?;
    model.save(dest)?;
    Ok(dest.to_path_buf())
}

/// `tl export`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  tl export runs/probe --out probe.onnx\n  tl predict --model probe.onnx digit.png"
)]
pub struct ExportArgs {
    /// A directory written by `tl train`.
    #[arg(value_name = "ARTIFACT_DIR")]
    artifact: PathBuf,
    /// Where to write the ONNX file (default: ARTIFACT_DIR/model.onnx).
    #[arg(long, value_name = "FILE.onnx")]
    out: Option<PathBuf>,
}

pub fn export_cmd(a: &ExportArgs, global: &Global) -> Result<()> {
    let dest = a
        .out
        .clone()
        .unwrap_or_else(|| a.artifact.join("model.onnx"));
    let p = export_artifact(&a.artifact, &dest)?;
    if global.json {
        println!(
            "{}",
            serde_json::json!({"schema_version": JSON_SCHEMA_VERSION, "out": p})
        );
    } else if !global.quiet {
        println!("exported {} to {}", a.artifact.display(), p.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tl_nn::{Conv2d, Graph};

    /// A graph with EfficientNet's node names: stem, two blocks, head.
    fn graph() -> Graph {
        let mut g = Graph::new();
        let mut v = Graph::INPUT;
        for name in [
            "stem.conv",
            "blocks.0.dw.conv",
            "blocks.1.project",
            "head.conv",
        ] {
            let conv = Conv2d::pointwise(Tensor::ones(vec![2, 2, 1, 1]), ndarray::Array1::zeros(2));
            v = g.push_layer(name, v, Box::new(conv.unwrap())).unwrap();
        }
        g
    }

    #[test]
    fn layer_decay_and_gradual_unfreezing_go_block_by_block_from_the_top() {
        let mut cfg = RunConfig {
            finetune: Finetune::All,
            pretrained_lr: 0.5,
            layer_decay: 0.1,
            unfreeze_epoch: 2,
            unfreeze_every: 3,
            ..RunConfig::default()
        };
        cfg.train.epochs = 20;
        cfg.check().unwrap();
        let t = cfg.trainer(Some(&graph()));
        let at = |epoch: usize, p: &str| {
            t.groups_at(epoch)
                .factor(&format!("trunk.backbone.{p}.weight"))
        };
        let close = |a: f32, b: f32| (a - b).abs() <= 1e-6 * b.abs();
        // The head's rate (factor 1) is untouched.
        assert_eq!(t.groups.factor("heads.label.0.weight"), 1.0);
        let last = 19;
        assert!(close(at(last, "head.conv"), 0.5));
        assert!(close(at(last, "blocks.1.project"), 0.05));
        assert!(close(at(last, "blocks.0.dw.conv"), 0.005));
        assert!(close(at(last, "stem.conv"), 0.0005));
        // head from epoch 2, blocks.1 from 5, blocks.0 from 8, stem from 11.
        for (node, from) in [
            ("head.conv", 2),
            ("blocks.1.project", 5),
            ("blocks.0.dw.conv", 8),
            ("stem.conv", 11),
        ] {
            assert_eq!(at(from - 1, node), 0.0, "{node} before epoch {from}");
            assert!(at(from, node) > 0.0, "{node} at epoch {from}");
        }
        // Frozen nodes are not in any group: their parameters are buffers.
        let mut frozen = graph();
        frozen.freeze_through("blocks.0.dw.conv").unwrap();
        let t = cfg.trainer(Some(&frozen));
        assert!(
            t.groups
                .0
                .iter()
                .all(|(p, _)| !p.contains("stem") && !p.contains("blocks.0"))
        );
    }
}
