//! `tl train` and `tl export`: flags onto the run config, one library call, printing.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use tl_features::extract::Pool;
use tl_head::{net::HeadKind, probe::ClassWeight};
use tl_nn::{Act, Optimizer, Schedule};
use tl_pipeline::{
    artifact::export_artifact,
    config::{BatchNormForm, Finetune, Init, RunConfig, read_config},
    train::train,
};

use crate::{Global, JSON_SCHEMA_VERSION, RunArgs, parse_named};

/// An optimiser flag, by the library's names.
fn parse_optimizer(s: &str) -> Result<Optimizer, String> {
    Optimizer::named(s).map_err(|e| e.to_string())
}

/// A schedule flag, by the library's names.
fn parse_schedule(s: &str) -> Result<Schedule, String> {
    Schedule::named(s).map_err(|e| e.to_string())
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
    #[arg(long, value_parser = parse_named::<Pool>)]
    pool: Option<Pool>,
    /// Input side in pixels (EfficientNet works at 96–224).
    #[arg(long, value_name = "N")]
    image_size: Option<u32>,
    /// linear: the exact probe (L-BFGS, C chosen on validation); mlp: hidden layers trained by the trainer.
    #[arg(long, value_parser = parse_named::<HeadKind>)]
    head: Option<HeadKind>,
    /// Hidden widths of an mlp head, comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "N,...")]
    hidden: Option<Vec<usize>>,
    #[arg(long, value_parser = parse_named::<Act>)]
    activation: Option<Act>,
    #[arg(long)]
    dropout: Option<f32>,
    /// none: a head on frozen features; last: also fine-tune the backbone's last block;
    /// all: fine-tune the whole backbone from its input (images, registry CNNs or their files).
    #[arg(long, value_parser = parse_named::<Finetune>)]
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
    #[arg(long, value_parser = parse_named::<Init>)]
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
    #[arg(long, value_parser = parse_named::<BatchNormForm>)]
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
    /// sgd (Nesterov momentum 0.9), adam, or adamw (weight decay 0.01).
    #[arg(long, value_parser = parse_optimizer)]
    optimizer: Option<Optimizer>,
    #[arg(long)]
    weight_decay: Option<f32>,
    /// constant, cosine (down to 0) or one-cycle.
    #[arg(long, value_parser = parse_schedule)]
    schedule: Option<Schedule>,
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

/// Sets `$field` to the flag's value when the flag was given.
macro_rules! set {
    ($field:expr, $flag:expr) => {
        if let Some(v) = $flag.clone() {
            $field = v;
        }
    };
}

impl TrainArgs {
    /// The run config: the `--config` file (or the defaults), then the flags given.
    pub(crate) fn config(&self) -> Result<RunConfig> {
        let mut c: RunConfig = read_config(self.config.as_deref(), "run config")?;
        self.apply_features_and_head(&mut c);
        self.apply_finetuning(&mut c);
        self.apply_split_and_probe(&mut c);
        self.apply_training(&mut c);
        Ok(c)
    }

    fn apply_features_and_head(&self, c: &mut RunConfig) {
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
            c.head.kind = h;
            if c.head.kind == HeadKind::Linear {
                c.head.hidden.clear();
            } else if c.head.hidden.is_empty() {
                c.head.hidden = vec![256];
            }
        }
        set!(c.head.hidden, self.hidden);
        set!(c.head.activation, self.activation);
        set!(c.head.dropout, self.dropout);
    }

    fn apply_finetuning(&self, c: &mut RunConfig) {
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
    }

    fn apply_split_and_probe(&self, c: &mut RunConfig) {
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
    }

    fn apply_training(&self, c: &mut RunConfig) {
        set!(c.train.epochs, self.epochs);
        set!(c.train.lr, self.lr);
        set!(c.train.batch_size, self.batch_size);
        set!(c.train.optimizer, self.optimizer);
        if let Some(wd) = self.weight_decay {
            c.train.optimizer = c.train.optimizer.clone().with_weight_decay(wd);
        }
        set!(c.train.schedule, self.schedule);
        set!(c.train.warmup_steps, self.warmup);
        set!(c.train.label_smoothing, self.label_smoothing);
        if let Some(p) = self.patience {
            c.train.patience = (p > 0).then_some(p);
        }
    }
}

pub fn run(a: &TrainArgs, global: &Global) -> Result<()> {
    let cfg = a.config()?;
    let out = &a.out;
    let env = global.env(Some(&a.run))?;
    let outcome = train(&cfg, out, a.contract.as_deref(), &env)?;
    let (metrics, exported) = (&outcome.metrics, &outcome.exported);
    if global.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "schema_version": JSON_SCHEMA_VERSION, "out": out, "test": metrics.test, "metrics": metrics,
                "exported": exported.as_ref().ok(), "export_error": exported.as_ref().err().map(|e| e.to_string()),
            }))?
        );
    } else {
        for s in &metrics.test {
            println!(
                "{}: test accuracy {:.4} on {} rows (loss {:.4})",
                s.task, s.accuracy, s.rows, s.loss
            );
        }
        match exported {
            Ok(p) => println!("artifact in {} (model: {})", out.display(), p.display()),
            Err(e) => println!("artifact in {} (not exported: {e})", out.display()),
        }
    }
    Ok(())
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
