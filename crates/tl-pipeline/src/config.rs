//! The one config schema of `tl`: what a train run, an adapt run and an experiment file
//! say. Command-line flags map onto these structs, experiment files are written in them,
//! and every artifact saves its config as `config.json`.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use tl_adapt::AdaptConfig;
use tl_core::Named;
use tl_data::segment::Segments;
use tl_features::extract::Pool;
use tl_head::{net::HeadSpec, probe::ClassWeight, train::TrainConfig};

use crate::{Error, Result, artifact::ARTIFACT_SCHEMA_VERSION};

/// What is trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// The pretrained weights.
    #[default]
    Pretrained,
    /// PyTorch's default random initialisation of the same layers (training from scratch).
    Random,
}

/// Which graph of a converted CNN to fine-tune.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BatchNormForm {
    /// BatchNorm folded into the convolutions (the inference graph).
    #[default]
    Folded,
    /// BatchNorm kept: trained with batch statistics, running statistics updated.
    Kept,
}

tl_core::named_enum!(Finetune, "fine-tuning", [None => "none", Last => "last", All => "all"]);
tl_core::named_enum!(Init, "initialisation", [Pretrained => "pretrained", Random => "random"]);
tl_core::named_enum!(BatchNormForm, "BatchNorm form", [Folded => "folded", Kept => "kept"]);

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
            cs: tl_head::probe::default_cs(),
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

/// A config from a TOML file, or the defaults without one.
pub fn read_config<T: serde::de::DeserializeOwned + Default>(
    file: Option<&Path>,
    what: &'static str,
) -> Result<T> {
    let Some(f) = file else {
        return Ok(T::default());
    };
    let text = std::fs::read_to_string(f).map_err(|e| tl_core::Error::io("cannot read", f, e))?;
    toml::from_str(&text).map_err(|source| Error::Toml {
        path: f.to_path_buf(),
        what,
        source: Box::new(source),
    })
}

impl RunConfig {
    /// The trainer's settings: `train` plus, for fine-tuning, the pretrained layers at
    /// `pretrained_lr` × the head's rate, trained from `unfreeze_epoch` on. With the
    /// imported `backbone` of `--finetune all`, block by block: the last block at
    /// `pretrained_lr`, each earlier one at `layer_decay` × the next one's rate, and from
    /// `unfreeze_epoch` one more block every `unfreeze_every` epochs, last block first.
    pub fn trainer(&self, backbone: Option<&tl_nn::Graph>) -> TrainConfig {
        if self.finetune == Finetune::None {
            return self.train.clone();
        }
        let rates = tl_head::import::BlockRates {
            pretrained_lr: self.pretrained_lr,
            layer_decay: self.layer_decay,
            unfreeze_epoch: self.unfreeze_epoch,
            unfreeze_every: self.unfreeze_every,
        };
        rates.apply(
            &self.train,
            backbone.filter(|_| self.finetune == Finetune::All),
        )
    }

    /// Checks the settings that need no data, before any work.
    pub fn check(&self) -> Result<()> {
        self.head.check()?;
        self.train.check()?;
        if !(self.pretrained_lr.is_finite() && self.pretrained_lr >= 0.0) {
            return Err(Error::setting(
                "pretrained_lr",
                format!("{} must be ≥ 0", self.pretrained_lr),
            ));
        }
        if self.probe.cs.is_empty() {
            return Err(Error::setting(
                "probe.cs",
                "is empty: the probe needs at least one value of C",
            ));
        }
        if let Some(c) = self.probe.cs.iter().find(|c| !(c.is_finite() && **c > 0.0)) {
            return Err(Error::setting(
                "probe.cs",
                format!("C = {c}: each value of C must be finite and > 0"),
            ));
        }
        if self.finetune != Finetune::None && self.layer.is_some() {
            return Err(Error::setting(
                "layer",
                format!(
                    "does not apply: fine-tuning ({}) starts at the model's {}",
                    self.finetune.name(),
                    if self.finetune == Finetune::Last {
                        "last block"
                    } else {
                        "input"
                    }
                ),
            ));
        }
        if self.init == Init::Random && self.finetune == Finetune::None {
            return Err(Error::setting(
                "init",
                "random applies to fine-tuned layers ({finetune} last|all)",
            ));
        }
        if self.finetune != Finetune::All {
            let all_only = [
                ("freeze_until", self.freeze_until.is_some()),
                ("layer_decay", self.layer_decay != 1.0),
                ("unfreeze_every", self.unfreeze_every != 0),
                ("train.augment", self.train.augment.is_active()),
            ];
            if let Some((key, _)) = all_only.iter().find(|(_, set)| *set) {
                return Err(Error::setting(
                    key,
                    "applies to {finetune} all (the whole network from its input)",
                ));
            }
        }
        if !(self.layer_decay.is_finite() && self.layer_decay > 0.0 && self.layer_decay <= 1.0) {
            return Err(Error::setting(
                "layer_decay",
                format!("{} must be in (0, 1]", self.layer_decay),
            ));
        }
        if self.unfreeze_every > 0 && self.unfreeze_epoch == 0 {
            return Err(Error::setting(
                "unfreeze_every",
                "needs {unfreeze_epoch} (the epoch the last block starts training)",
            ));
        }
        if self.finetune != Finetune::None && self.unfreeze_epoch >= self.train.epochs {
            return Err(Error::setting(
                "unfreeze_epoch",
                format!(
                    "{} is not before the last of {} epochs: the pretrained layers would never train",
                    self.unfreeze_epoch, self.train.epochs
                ),
            ));
        }
        Ok(())
    }
}

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

impl AdaptRunConfig {
    /// Checks the settings that need no data, before any work.
    pub fn check(&self) -> Result<()> {
        self.head.check()?;
        self.train.check()?;
        self.adapt.check()?;
        if self.head.kind != tl_head::net::HeadKind::Mlp {
            return Err(Error::setting(
                "head.hidden",
                "is empty: adaptation needs an adapter, a head with hidden layers (e.g. 256)",
            ));
        }
        Ok(())
    }
}

/// The experiment file's schema version.
pub const EXPERIMENT_SCHEMA_VERSION: u32 = 1;

/// An experiment file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    #[serde(default = "schema_one")]
    pub schema_version: u32,
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Seeds of every study that does not list its own: each seed sets the training seed
    /// and the split seed (so the labelled subsets differ too).
    #[serde(default = "seed_zero")]
    pub seeds: Vec<u64>,
    /// Studies comparing `tl train` configurations, optionally over label budgets.
    #[serde(default)]
    pub train: Vec<TrainStudy>,
    /// Studies comparing `tl adapt` methods.
    #[serde(default)]
    pub adapt: Vec<AdaptStudy>,
    /// Studies ranking candidate backbones and layers before training (`tl rank`).
    #[serde(default)]
    pub rank: Vec<RankStudy>,
}

impl Experiment {
    /// Whether a study of any kind is named `name`.
    pub fn has_study(&self, name: &str) -> bool {
        self.train.iter().any(|s| s.name == name)
            || self.adapt.iter().any(|s| s.name == name)
            || self.rank.iter().any(|s| s.name == name)
    }
}

fn schema_one() -> u32 {
    EXPERIMENT_SCHEMA_VERSION
}

fn seed_zero() -> Vec<u64> {
    vec![0]
}

fn yes() -> bool {
    true
}

/// `tl train` arms, each run at every label budget and seed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainStudy {
    pub name: String,
    /// Labelled rows per class (training + validation, the split's budget); empty: all only.
    #[serde(default)]
    pub budgets: Vec<usize>,
    /// Also run with all training labels (the budget `all`).
    #[serde(default = "yes")]
    pub all: bool,
    #[serde(default)]
    pub seeds: Option<Vec<u64>>,
    pub arm: Vec<TrainArm>,
}

/// One line of a train study: a label and a run config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainArm {
    pub label: String,
    pub config: RunConfig,
}

/// `tl adapt` methods on one pair of domains.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdaptStudy {
    pub name: String,
    pub methods: Vec<tl_adapt::Method>,
    /// Labelled source rows per class (training + validation); empty: the config's.
    #[serde(default)]
    pub budgets: Vec<usize>,
    /// Semi-supervised sweeps: labelled target rows per class joining the source (0: the
    /// target unlabelled in training); empty: the config's `target_labels`.
    #[serde(default)]
    pub target_labels: Vec<usize>,
    #[serde(default)]
    pub seeds: Option<Vec<u64>>,
    pub config: AdaptRunConfig,
}

/// `tl rank` on one dataset, once per seed (each seed draws the split the candidates are
/// scored and probed on).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RankStudy {
    pub name: String,
    #[serde(default)]
    pub seeds: Option<Vec<u64>>,
    pub config: RankConfig,
}

/// A ranking of candidate backbones and layers for a labelled dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RankConfig {
    pub data: String,
    /// Candidates as `MODEL` or `MODEL:LAYER`.
    pub models: Vec<String>,
    /// The task (default: the dataset's first labelled one).
    pub task: Option<String>,
    pub image_size: Option<u32>,
    /// Labelled rows per class for training and validation together.
    pub budget: Option<usize>,
    /// The split's seed.
    pub seed: u64,
}

impl Default for RankConfig {
    fn default() -> Self {
        Self {
            data: "sklearn-digits".into(),
            models: vec!["efficientnet-lite0".into(), "mobilenet-v2".into()],
            task: None,
            image_size: None,
            budget: None,
            seed: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tl_nn::{Conv2d, Graph, Tensor};

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
