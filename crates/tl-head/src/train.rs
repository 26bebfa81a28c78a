//! The trainer: mini-batch training of a [`HeadNet`] with any `tl-nn` optimiser and
//! schedule, per-group learning rates and gradual unfreezing, validation after every
//! epoch, early stopping, and checkpoints that resume to the same bits.
//!
//! Randomness comes from named streams of the run seed: `shuffle/<epoch>` orders each
//! epoch's rows and `dropout/<epoch>` draws its dropout masks. Nothing else is random, so
//! a run resumed after epoch `e` takes exactly the steps an uninterrupted run takes.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use ndarray::Axis;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use tl_nn::{
    CrossEntropy, Ctx, LrGroups, Module, ModuleExt, OptState, Optimizer, Schedule, Tensor,
    checkpoint,
};

use crate::{
    Error, Result,
    augment::Augment,
    net::{HeadNet, TaskSpec},
};

/// Schema version of `optimizer.json`.
pub const STATE_SCHEMA_VERSION: u32 = 2;

/// Gradual unfreezing: parameters under `prefix` stay frozen before `epoch` (0-based).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unfreeze {
    pub prefix: String,
    pub epoch: usize,
}

/// How to train (the `[train]` table of the config schema).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TrainConfig {
    pub seed: u64,
    pub epochs: usize,
    pub batch_size: usize,
    /// The head's learning rate; groups scale it.
    pub lr: f32,
    pub optimizer: Optimizer,
    pub schedule: Schedule,
    pub warmup_steps: usize,
    pub label_smoothing: f32,
    /// Stop after this many epochs without a better validation score.
    pub patience: Option<usize>,
    /// Learning-rate factors by parameter-name prefix (discriminative rates).
    pub groups: LrGroups,
    pub unfreeze: Vec<Unfreeze>,
    /// Which weights the run ends with.
    pub keep: Keep,
    /// Scale the gradients down to this global L2 norm when they exceed it.
    pub clip_norm: Option<f32>,
    /// Rows per forward/backward pass within a batch: gradients of the micro-batches are
    /// accumulated (weighted by their rows) into one step of `batch_size` rows, bounding
    /// memory for large inputs. BatchNorm sees micro-batch statistics, as in PyTorch.
    pub micro_batch: Option<usize>,
    /// Augmentation of image inputs (`[N, C, H, W]`) in each training batch, by [`Trainer`]'s
    /// supervised objective.
    pub augment: Augment,
}

/// The weights a run ends with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Keep {
    /// The epoch with the best validation score (the last one without validation rows).
    #[default]
    Best,
    /// The last epoch's; validation is only reported.
    Last,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            epochs: 30,
            batch_size: 64,
            lr: 1e-3,
            optimizer: Optimizer::default(),
            schedule: Schedule::Cosine { min_factor: 0.0 },
            warmup_steps: 0,
            label_smoothing: 0.0,
            patience: Some(5),
            groups: LrGroups::default(),
            unfreeze: Vec::new(),
            keep: Keep::Best,
            clip_norm: None,
            micro_batch: None,
            augment: Augment::default(),
        }
    }
}

impl TrainConfig {
    /// Checks every setting once, before any training.
    pub fn check(&self) -> Result<()> {
        if self.epochs == 0 {
            return Err(Error::setting("epochs", "must be ≥ 1"));
        }
        if self.batch_size == 0 {
            return Err(Error::setting("batch size", "must be ≥ 1"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::setting(
                "learning rate",
                format!("{} must be finite and > 0", self.lr),
            ));
        }
        if let Some((p, f)) = self
            .groups
            .0
            .iter()
            .find(|(_, f)| !(f.is_finite() && *f >= 0.0))
        {
            return Err(Error::setting(
                "learning-rate factor",
                format!("`{p}`: {f} must be ≥ 0"),
            ));
        }
        if let Some(c) = self.clip_norm.filter(|c| !(c.is_finite() && *c > 0.0)) {
            return Err(Error::setting(
                "gradient clipping",
                format!("a norm of {c} must be finite and > 0"),
            ));
        }
        if self.micro_batch == Some(0) {
            return Err(Error::setting("micro-batch", "must be ≥ 1 row"));
        }
        self.augment.check()?;
        if self.patience == Some(0) {
            return Err(Error::setting("patience", "must be ≥ 1 epoch (or none)"));
        }
        self.optimizer.check()?;
        self.schedule.check()?;
        CrossEntropy {
            label_smoothing: self.label_smoothing,
            class_weights: None,
        }
        .check(2)?;
        Ok(())
    }

    /// The learning-rate factors in force during `epoch`.
    pub fn groups_at(&self, epoch: usize) -> LrGroups {
        let mut g = self.groups.clone();
        for u in &self.unfreeze {
            if epoch < u.epoch {
                g.0.push((u.prefix.clone(), 0.0));
            }
        }
        g
    }
}

/// Rows with features and labels per task (`labels[task][row]`, `None` where a row lacks
/// that task's label).
#[derive(Debug, Clone, Copy)]
pub struct Labelled<'a> {
    pub x: &'a Tensor,
    pub labels: &'a [Vec<Option<u32>>],
}

impl Labelled<'_> {
    pub fn len(&self) -> usize {
        self.x.shape()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every task's labels of rows `rows`, in that order.
    pub fn labels_of(&self, rows: &[usize]) -> Vec<Vec<Option<u32>>> {
        self.labels
            .iter()
            .map(|l| rows.iter().map(|&i| l[i]).collect())
            .collect()
    }

    fn check(&self, what: &str, tasks: &[TaskSpec]) -> Result<()> {
        if self.labels.len() != tasks.len() {
            return Err(Error::data(
                what,
                format!(
                    "labels for {} tasks, the head has {}",
                    self.labels.len(),
                    tasks.len()
                ),
            ));
        }
        for (t, (labels, task)) in self.labels.iter().zip(tasks).enumerate() {
            if labels.len() != self.len() {
                return Err(Error::data(
                    what,
                    format!(
                        "task `{}`: {} labels for {} rows",
                        task.name,
                        labels.len(),
                        self.len()
                    ),
                ));
            }
            if let Some((i, y)) = labels.iter().enumerate().find_map(|(i, y)| {
                y.filter(|&y| y as usize >= task.classes.len())
                    .map(|y| (i, y))
            }) {
                return Err(Error::LabelOutOfRange {
                    what: what.to_string(),
                    row: i,
                    class: y,
                    task: task.name.clone(),
                    classes: task.classes.len(),
                });
            }
            let _ = t;
        }
        tl_nn::check_finite(what, self.x.iter()).map_err(Error::from)
    }
}

/// Validation (or test) figures of one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskScore {
    pub task: String,
    pub loss: f64,
    pub accuracy: f64,
    pub rows: usize,
}

/// One epoch's log line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub train_loss: f64,
    pub lr: f32,
    pub val: Vec<TaskScore>,
    pub seconds: f64,
}

/// What training did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    pub epochs_run: usize,
    pub best_epoch: usize,
    pub stopped_early: bool,
    pub resumed_from_epoch: Option<usize>,
    pub history: Vec<EpochLog>,
    pub steps: u64,
}

/// `optimizer.json`: where training stands.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TrainState {
    schema_version: u32,
    /// What the run trains on (model, data, split, head): a checkpoint resumes only the
    /// same run.
    #[serde(default)]
    fingerprint: String,
    config: TrainConfig,
    epochs_done: usize,
    steps: u64,
    param_steps: std::collections::BTreeMap<String, u64>,
    best: Option<(usize, f64, f64)>,
    bad_epochs: usize,
    history: Vec<EpochLog>,
    /// The checkpoint's tensor files (`weights`, `optimizer`, `best`): each named by the
    /// epoch that wrote it, with its sha256. Files of an epoch whose `optimizer.json` was
    /// never published are not listed, and are removed.
    #[serde(default)]
    files: BTreeMap<String, CheckpointFile>,
}

/// One tensor file of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CheckpointFile {
    /// Its name in `checkpoint/`.
    name: String,
    sha256: String,
}

/// Logits, loss and accuracy per task of `net` on `data`, in evaluation mode.
pub fn evaluate(
    net: &mut HeadNet,
    data: &Labelled<'_>,
    tasks: &[TaskSpec],
    batch: usize,
) -> Result<Vec<TaskScore>> {
    let logits = predict(net, data.x, batch)?;
    let mut out = Vec::new();
    for (t, task) in tasks.iter().enumerate() {
        let cols = net.columns(t);
        let z = logits.slice(ndarray::s![.., cols]).to_owned().into_dyn();
        let (loss, _) = CrossEntropy::default().forward_backward(&z, &data.labels[t])?;
        let z2 = z.into_dimensionality::<ndarray::Ix2>().expect("2-D");
        let (predicted, truth): (Vec<u32>, Vec<u32>) = z2
            .rows()
            .into_iter()
            .zip(&data.labels[t])
            .filter_map(|(row, y)| Some((tl_core::num::argmax(row.iter().copied()) as u32, (*y)?)))
            .unzip();
        out.push(TaskScore {
            task: task.name.clone(),
            loss: loss as f64,
            accuracy: tl_eval::accuracy(&predicted, &truth),
            rows: truth.len(),
        });
    }
    Ok(out)
}

/// All tasks' logits side by side for `x`, in evaluation mode, `batch` rows at a time.
pub fn predict(net: &mut HeadNet, x: &Tensor, batch: usize) -> Result<ndarray::Array2<f32>> {
    Ok(predict_features(net, x, batch)?.1)
}

/// The trunk's outputs (the features the heads read, flattened per row) and all tasks'
/// logits for `x`, in evaluation mode, `batch` rows at a time.
pub fn predict_features(
    net: &mut HeadNet,
    x: &Tensor,
    batch: usize,
) -> Result<(ndarray::Array2<f32>, ndarray::Array2<f32>)> {
    let n = x.shape()[0];
    let (mut hs, mut zs) = (Vec::new(), Vec::new());
    for lo in (0..n).step_by(batch.max(1)) {
        let xb = x
            .slice_axis(Axis(0), ndarray::Slice::from(lo..(lo + batch).min(n)))
            .to_owned();
        let (h, z) = net.forward_features(&xb, &mut Ctx::eval())?;
        // A trunk output with spatial axes is flattened per row.
        let rows = h.shape()[0];
        let width = h.len() / rows.max(1);
        hs.push(
            h.into_shape_with_order((rows, width))
                .expect("a standard-layout output"),
        );
        zs.push(z.into_dimensionality::<ndarray::Ix2>().expect("2-D logits"));
    }
    if zs.is_empty() {
        let w: usize = (0..net.tasks()).map(|t| net.columns(t).len()).sum();
        return Ok((
            ndarray::Array2::zeros((0, 0)),
            ndarray::Array2::zeros((0, w)),
        ));
    }
    let cat = |parts: &[ndarray::Array2<f32>]| {
        let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
        ndarray::concatenate(Axis(0), &views).expect("same width")
    };
    Ok((cat(&hs), cat(&zs)))
}

fn score(val: &[TaskScore]) -> (f64, f64) {
    let k = val.len().max(1) as f64;
    (
        val.iter().map(|s| s.accuracy).sum::<f64>() / k,
        val.iter().map(|s| s.loss).sum::<f64>() / k,
    )
}

/// Where a step stands in its run: for loss weights that follow a schedule (DANN's λ
/// ramp) and for draws that a resumed run must repeat (seeded by epoch and batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepInfo {
    pub seed: u64,
    pub epoch: usize,
    /// The batch's index within its epoch.
    pub batch: usize,
    pub step: u64,
    pub total_steps: u64,
}

impl StepInfo {
    /// The fraction of the run done before this step, in [0, 1).
    pub fn progress(&self) -> f64 {
        self.step as f64 / self.total_steps.max(1) as f64
    }
}

/// The loss a run minimises. [`Supervised`] is the tasks' cross-entropy; domain
/// adaptation (`tl-adapt`) adds terms on unlabelled target rows and may train modules of
/// its own. Everything else (batches, optimiser, schedule, checkpoints, early stopping)
/// is the trainer's.
pub trait Objective {
    /// Before each epoch's first batch, with the network as it stands (pseudo-labels).
    fn begin_epoch(&mut self, _net: &mut HeadNet, _epoch: usize) -> Result<()> {
        Ok(())
    }

    /// The loss of training rows `rows`, with its gradients accumulated in the
    /// parameters of `net` and of [`Objective::aux`] (zeroed by the trainer).
    fn batch(
        &mut self,
        net: &mut HeadNet,
        train: &Labelled<'_>,
        rows: &[usize],
        info: StepInfo,
        ctx: &mut Ctx,
    ) -> Result<f64>;

    /// Trainable modules of the objective's own (a domain discriminator): stepped,
    /// checkpointed and restored with the network, their parameters named `aux.*`.
    fn aux(&mut self) -> Option<&mut dyn Module> {
        None
    }
}

/// The tasks' weighted cross-entropy on labelled rows.
#[derive(Debug, Clone)]
pub struct Supervised {
    losses: Vec<CrossEntropy>,
    weights: Vec<f32>,
    augment: Augment,
}

impl Supervised {
    pub fn new(tasks: &[TaskSpec], label_smoothing: f32) -> Self {
        Self {
            losses: tasks
                .iter()
                .map(|_| CrossEntropy {
                    label_smoothing,
                    class_weights: None,
                })
                .collect(),
            weights: tasks.iter().map(|t| t.weight).collect(),
            augment: Augment::default(),
        }
    }

    /// Augments each training batch's inputs with `augment` (from the stream
    /// `augment/<epoch>/<batch>/<first row>` of the run seed).
    #[must_use]
    pub fn with_augment(mut self, augment: Augment) -> Self {
        self.augment = augment;
        self
    }

    /// The loss of logits `z` (all tasks side by side) against `labels[task][row]`, and
    /// its gradient with respect to `z`. Rows without a task's label add nothing to it.
    pub fn loss(
        &self,
        net: &HeadNet,
        z: ndarray::ArrayView2<'_, f32>,
        labels: &[Vec<Option<u32>>],
    ) -> Result<(f64, ndarray::Array2<f32>)> {
        let mut grad = ndarray::Array2::<f32>::zeros(z.raw_dim());
        let mut total = 0.0f64;
        for (t, (ce, &w)) in self.losses.iter().zip(&self.weights).enumerate() {
            if labels[t].iter().all(Option::is_none) {
                continue;
            }
            let cols = net.columns(t);
            let zt = z.slice(ndarray::s![.., cols.clone()]).to_owned().into_dyn();
            let (l, g) = ce.forward_backward(&zt, &labels[t])?;
            total += (w * l) as f64;
            let g = g.into_dimensionality::<ndarray::Ix2>().expect("2-D") * w;
            grad.slice_mut(ndarray::s![.., cols]).assign(&g);
        }
        Ok((total, grad))
    }
}

impl Objective for Supervised {
    fn batch(
        &mut self,
        net: &mut HeadNet,
        train: &Labelled<'_>,
        rows: &[usize],
        info: StepInfo,
        ctx: &mut Ctx,
    ) -> Result<f64> {
        let mut xb = train.x.select(Axis(0), rows);
        if self.augment.is_active() {
            let stream = format!("augment/{}/{}/{}", info.epoch, info.batch, rows[0]);
            xb = self
                .augment
                .apply(&xb, &mut tl_core::rng::seeded_rng(info.seed, &stream))?;
        }
        let logits = net.forward(&xb, ctx)?;
        let z = logits
            .view()
            .into_dimensionality::<ndarray::Ix2>()
            .expect("2-D logits");
        let labels = train.labels_of(rows);
        let (loss, grad) = self.loss(net, z, &labels)?;
        net.backward(&grad.into_dyn())?;
        Ok(loss)
    }
}

/// The network and an objective's own modules as one parameter set (`aux.*`), for the
/// optimiser and checkpoints.
struct Joint<'a> {
    net: &'a mut HeadNet,
    aux: Option<&'a mut dyn Module>,
}

impl<'a> Joint<'a> {
    fn of(net: &'a mut HeadNet, objective: &'a mut dyn Objective) -> Self {
        Self {
            net,
            aux: objective.aux(),
        }
    }
}

impl std::fmt::Debug for Joint<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Module for Joint<'_> {
    fn forward(&mut self, x: &Tensor, ctx: &mut Ctx) -> tl_nn::Result<Tensor> {
        self.net.forward(x, ctx)
    }

    fn backward(&mut self, grad_out: &Tensor) -> tl_nn::Result<Tensor> {
        self.net.backward(grad_out)
    }

    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &tl_nn::Param)) {
        self.net.visit(prefix, f);
        if let Some(a) = &self.aux {
            a.visit(&tl_nn::module::join(prefix, "aux"), f);
        }
    }

    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut tl_nn::Param)) {
        self.net.visit_mut(prefix, f);
        if let Some(a) = &mut self.aux {
            a.visit_mut(&tl_nn::module::join(prefix, "aux"), f);
        }
    }

    fn describe(&self) -> String {
        match &self.aux {
            Some(a) => format!("{}; aux: {}", self.net.describe(), a.describe()),
            None => self.net.describe(),
        }
    }
}

/// One batch's loss, with its gradients in the parameters: in micro-batches of
/// `cfg.micro_batch` rows whose gradients are summed weighted by their share of rows, then
/// clipped to `cfg.clip_norm`.
fn accumulate(
    net: &mut HeadNet,
    objective: &mut dyn Objective,
    train: &Labelled<'_>,
    idx: &[usize],
    info: StepInfo,
    ctx: &mut Ctx,
    cfg: &TrainConfig,
) -> Result<f64> {
    let micro = cfg.micro_batch.unwrap_or(idx.len()).max(1);
    let loss = if idx.len() <= micro {
        objective.batch(net, train, idx, info, ctx)?
    } else {
        let mut sum: Vec<Tensor> = Vec::new();
        let mut loss = 0.0;
        for part in idx.chunks(micro) {
            let l = objective.batch(net, train, part, info, ctx)?;
            let share = part.len() as f32 / idx.len() as f32;
            loss += l * share as f64;
            let mut k = 0;
            Joint::of(&mut *net, &mut *objective).visit_mut("", &mut |_, p| {
                match sum.get_mut(k) {
                    Some(s) => s.scaled_add(share, &p.grad),
                    None => sum.push(p.grad.mapv(|g| g * share)),
                }
                p.zero_grad();
                k += 1;
            });
        }
        let mut k = 0;
        Joint::of(&mut *net, &mut *objective).visit_mut("", &mut |_, p| {
            p.grad.assign(&sum[k]);
            k += 1;
        });
        loss
    };
    if let Some(max) = cfg.clip_norm {
        let mut joint = Joint::of(&mut *net, &mut *objective);
        let mut sq = 0.0f64;
        joint.visit("", &mut |_, p| {
            if p.trainable() {
                sq += p.grad.iter().map(|&g| (g as f64).powi(2)).sum::<f64>();
            }
        });
        let norm = sq.sqrt();
        if norm > max as f64 {
            let scale = (max as f64 / norm) as f32;
            joint.visit_mut("", &mut |_, p| p.grad.mapv_inplace(|g| g * scale));
        }
    }
    Ok(loss)
}

/// Where a run keeps its checkpoint (`<dir>/checkpoint/`).
pub fn checkpoint_dir(dir: &Path) -> PathBuf {
    dir.join("checkpoint")
}

/// The network weights of the last checkpoint a run in `dir` published, if any.
pub fn checkpoint_weights(dir: &Path) -> Result<Option<PathBuf>> {
    let ck = checkpoint_dir(dir);
    let json = ck.join(STATE_FILE);
    if !json.is_file() {
        return Ok(None);
    }
    let state: TrainState = tl_core::io::read_json(&json)?;
    Ok(Some(verified(&ck, &state, "weights")?))
}

/// `checkpoint/optimizer.json`: the state, published last.
const STATE_FILE: &str = "optimizer.json";

/// The checkpoint file `role` of `state`, after checking it against its recorded sha256.
fn verified(ck: &Path, state: &TrainState, role: &str) -> Result<PathBuf> {
    let state_file = ck.join(STATE_FILE);
    let file = state
        .files
        .get(role)
        .ok_or_else(|| Error::CheckpointCorrupt {
            path: state_file.clone(),
            reason: format!("it lists no `{role}` file"),
        })?;
    // A name is a file inside the checkpoint, never a path out of it.
    if file.name.contains(['/', '\\']) || file.name.starts_with('.') {
        return Err(Error::CheckpointCorrupt {
            path: state_file,
            reason: format!("`{}` is not a checkpoint file name", file.name),
        });
    }
    let path = ck.join(&file.name);
    let found = tl_core::hash::sha256_file(&path)?;
    if found != file.sha256 {
        return Err(Error::CheckpointCorrupt {
            path,
            reason: format!(
                "its sha256 is {}…, {STATE_FILE} recorded {}…",
                found.get(..12).unwrap_or(&found),
                file.sha256.get(..12).unwrap_or(&file.sha256)
            ),
        });
    }
    Ok(path)
}

/// Publishes the checkpoint of `state.epochs_done`: the tensor files under names of that
/// epoch, then `optimizer.json` listing them with their sha256 (the one rename that
/// commits the checkpoint), then the files of earlier epochs go. A process killed at any
/// point leaves the last published checkpoint whole: resuming from it gives the bits of
/// an uninterrupted run.
fn save_checkpoint(
    ck: &Path,
    state: &mut TrainState,
    weights: &BTreeMap<String, Tensor>,
    slots: &BTreeMap<String, Tensor>,
    best: Option<&BTreeMap<String, Tensor>>,
) -> Result<()> {
    tl_core::io::create_dir_all(ck)?;
    let epoch = state.epochs_done;
    let mut files = BTreeMap::new();
    for (role, tensors) in [
        ("weights", Some(weights)),
        ("optimizer", Some(slots)),
        ("best", best),
    ] {
        let Some(tensors) = tensors else { continue };
        let name = format!("{role}-{epoch:04}.safetensors");
        // Hashed as serialised, not read back from disk.
        let bytes = checkpoint::tensors_to_bytes(tensors);
        let sha256 = tl_core::hash::sha256_bytes(&bytes);
        tl_core::io::atomic_write(&ck.join(&name), &bytes)?;
        files.insert(role.to_string(), CheckpointFile { name, sha256 });
    }
    state.files = files;
    tl_core::io::write_json(&ck.join(STATE_FILE), &*state)?;
    remove_unlisted(ck, state)
}

/// Removes the tensor files `state` does not list (earlier epochs', an unpublished epoch's,
/// the fixed names of the first checkpoint format) and stray temporary files.
fn remove_unlisted(ck: &Path, state: &TrainState) -> Result<()> {
    let listed: std::collections::HashSet<&str> =
        state.files.values().map(|f| f.name.as_str()).collect();
    for entry in std::fs::read_dir(ck).map_err(|e| tl_core::Error::io("cannot list", ck, e))? {
        let entry = entry.map_err(|e| tl_core::Error::io("cannot list", ck, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours =
            name.ends_with(".safetensors") || (name.starts_with('.') && name.ends_with(".tmp"));
        if ours && !listed.contains(name.as_str()) {
            std::fs::remove_file(entry.path())
                .map_err(|e| tl_core::Error::io("cannot remove", entry.path(), e))?;
        }
    }
    Ok(())
}

/// What an epoch callback asks of the trainer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// End the run after this epoch (its checkpoint is written first): early stopping by
    /// the caller's own rule, or an interruption to test resuming.
    Stop,
}

/// Where a run checkpoints, and which run it is: a checkpoint resumes only a run with the
/// same fingerprint and training config.
#[derive(Debug, Clone, Copy)]
pub struct Checkpoint<'a> {
    /// The run's directory (the state goes into its `checkpoint/`).
    pub dir: &'a Path,
    /// What the run trains on (model, data, split, head), hashed by the caller.
    pub fingerprint: &'a str,
}

/// A training run: the config and tasks, then optionally a checkpoint, an objective other
/// than the tasks' cross-entropy, and an epoch callback; [`Trainer::fit`] runs it.
///
/// `fit` validates on `val` after each epoch; with a checkpoint it saves one after each
/// epoch and resumes from one left by an interrupted run of the same fingerprint and
/// config. The best epoch's weights (by mean validation accuracy, then loss) are in `net`
/// at the end (`keep = best`); without validation rows, the last epoch's.
pub struct Trainer<'a> {
    cfg: &'a TrainConfig,
    tasks: &'a [TaskSpec],
    checkpoint: Option<Checkpoint<'a>>,
    objective: Option<&'a mut dyn Objective>,
    on_epoch: Option<&'a mut dyn FnMut(&EpochLog) -> Flow>,
}

impl std::fmt::Debug for Trainer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("cfg", self.cfg)
            .field("tasks", &self.tasks)
            .field("checkpoint", &self.checkpoint)
            .finish_non_exhaustive()
    }
}

impl<'a> Trainer<'a> {
    /// Trains the tasks' cross-entropy with `cfg`, no checkpoint, no callback.
    pub fn new(cfg: &'a TrainConfig, tasks: &'a [TaskSpec]) -> Self {
        Self {
            cfg,
            tasks,
            checkpoint: None,
            objective: None,
            on_epoch: None,
        }
    }

    /// Checkpoints into `checkpoint` (none: no checkpoint).
    #[must_use]
    pub fn checkpoint(mut self, checkpoint: Option<Checkpoint<'a>>) -> Self {
        self.checkpoint = checkpoint;
        self
    }

    /// Minimises `objective` instead of the tasks' cross-entropy alone.
    #[must_use]
    pub fn objective(mut self, objective: &'a mut dyn Objective) -> Self {
        self.objective = Some(objective);
        self
    }

    /// Calls `f` after each epoch; [`Flow::Stop`] ends the run there.
    #[must_use]
    pub fn on_epoch(mut self, f: &'a mut dyn FnMut(&EpochLog) -> Flow) -> Self {
        self.on_epoch = Some(f);
        self
    }

    /// Runs the training of `net` on `train`, validating on `val`.
    pub fn fit(
        self,
        net: &mut HeadNet,
        train: &Labelled<'_>,
        val: Option<&Labelled<'_>>,
    ) -> Result<TrainReport> {
        let mut supervised;
        let objective: &mut dyn Objective = match self.objective {
            Some(o) => o,
            None => {
                supervised = Supervised::new(self.tasks, self.cfg.label_smoothing)
                    .with_augment(self.cfg.augment.clone());
                &mut supervised
            }
        };
        let mut ignore = |_: &EpochLog| Flow::Continue;
        let on_epoch = match self.on_epoch {
            Some(f) => f,
            None => &mut ignore,
        };
        run(
            net,
            self.tasks,
            train,
            val,
            self.cfg,
            self.checkpoint,
            objective,
            on_epoch,
        )
    }
}

/// The training loop of [`Trainer::fit`].
#[allow(clippy::too_many_arguments)]
fn run(
    net: &mut HeadNet,
    tasks: &[TaskSpec],
    train: &Labelled<'_>,
    val: Option<&Labelled<'_>>,
    cfg: &TrainConfig,
    checkpoint: Option<Checkpoint<'_>>,
    objective: &mut dyn Objective,
    on_epoch: &mut dyn FnMut(&EpochLog) -> Flow,
) -> Result<TrainReport> {
    let (dir, fingerprint) = match checkpoint {
        Some(c) => (Some(c.dir), c.fingerprint.to_string()),
        None => (None, String::new()),
    };
    cfg.check()?;
    train.check("training rows", tasks)?;
    if train.is_empty() {
        return Err(Error::NoRows {
            what: "training data",
        });
    }
    if let Some(v) = val {
        v.check("validation rows", tasks)?;
    }
    for (t, task) in tasks.iter().enumerate() {
        if train.labels[t].iter().all(Option::is_none) {
            return Err(Error::NoLabelledRows {
                task: task.name.clone(),
            });
        }
    }
    // One row through the network in evaluation mode: a feature width or shape the
    // network does not take fails here, before any step.
    for (what, data) in [
        ("training features", Some(train)),
        ("validation features", val),
    ] {
        if let Some(d) = data.filter(|d| !d.is_empty()) {
            let one =
                d.x.slice_axis(Axis(0), ndarray::Slice::from(0..1))
                    .to_owned();
            net.predict(&one)
                .map_err(|e| Error::data(what, e.to_string()))?;
        }
    }
    let n = train.len();
    let per_epoch = n.div_ceil(cfg.batch_size);
    let total_steps = per_epoch * cfg.epochs;
    let mut opt_state = OptState::default();
    let mut state = TrainState {
        schema_version: STATE_SCHEMA_VERSION,
        fingerprint: fingerprint.clone(),
        config: cfg.clone(),
        epochs_done: 0,
        steps: 0,
        param_steps: Default::default(),
        best: None,
        bad_epochs: 0,
        history: Vec::new(),
        files: Default::default(),
    };
    let ck = dir.map(checkpoint_dir);
    let mut resumed = None;
    if let Some(ck) = &ck {
        let json = ck.join(STATE_FILE);
        if json.exists() {
            let saved: TrainState = tl_core::io::read_json(&json)?;
            if saved.fingerprint != fingerprint
                || saved.config != *cfg
                || saved.schema_version != STATE_SCHEMA_VERSION
            {
                let what = if saved.schema_version != STATE_SCHEMA_VERSION {
                    "another checkpoint format (an older tl)"
                } else if saved.fingerprint != fingerprint {
                    "another model, data or head"
                } else {
                    "other training settings"
                };
                return Err(Error::CheckpointMismatch {
                    state: json.clone(),
                    dir: ck.clone(),
                    differs: what,
                });
            }
            {
                let mut joint = Joint::of(&mut *net, &mut *objective);
                checkpoint::load_params(&mut joint, &verified(ck, &saved, "weights")?)?;
                opt_state.slots = checkpoint::load_tensors(&verified(ck, &saved, "optimizer")?)?;
                opt_state.steps = saved.param_steps.clone();
                resumed = Some(saved.epochs_done);
                state = saved;
            }
        }
    }
    let mut best_weights = match (&ck, state.best) {
        (Some(ck), Some(_)) => Some(checkpoint::load_tensors(&verified(ck, &state, "best")?)?),
        _ => None,
    };
    let mut stopped_early = cfg.patience.is_some_and(|p| state.bad_epochs >= p);
    let mut flow = Flow::Continue;
    while state.epochs_done < cfg.epochs && !stopped_early && flow == Flow::Continue {
        let epoch = state.epochs_done;
        let start = std::time::Instant::now();
        let groups = cfg.groups_at(epoch);
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut tl_core::rng::seeded_rng(
            cfg.seed,
            &format!("shuffle/{epoch}"),
        ));
        let mut ctx = Ctx::train(tl_core::rng::seeded_rng(
            cfg.seed,
            &format!("dropout/{epoch}"),
        ));
        let (mut loss_sum, mut loss_rows) = (0.0f64, 0usize);
        let mut lr = cfg.lr;
        objective.begin_epoch(net, epoch)?;
        for (batch, idx) in order.chunks(cfg.batch_size).enumerate() {
            let mut joint = Joint::of(&mut *net, &mut *objective);
            joint.zero_grad();
            let info = StepInfo {
                seed: cfg.seed,
                epoch,
                batch,
                step: state.steps,
                total_steps: total_steps as u64,
            };
            let batch_loss = accumulate(net, objective, train, idx, info, &mut ctx, cfg)?;
            if !batch_loss.is_finite() {
                return Err(Error::Diverged {
                    epoch,
                    loss: batch_loss,
                });
            }
            lr = cfg.lr
                * cfg
                    .schedule
                    .factor(state.steps as usize, total_steps, cfg.warmup_steps);
            let mut joint = Joint::of(&mut *net, &mut *objective);
            tl_nn::step(&cfg.optimizer, &mut opt_state, &mut joint, lr, &groups);
            state.steps += 1;
            loss_sum += batch_loss * idx.len() as f64;
            loss_rows += idx.len();
        }
        let val_scores = match val {
            Some(v) if !v.is_empty() => evaluate(net, v, tasks, 512)?,
            _ => Vec::new(),
        };
        let log = EpochLog {
            epoch,
            train_loss: loss_sum / loss_rows as f64,
            lr,
            val: val_scores,
            seconds: start.elapsed().as_secs_f64(),
        };
        if !log.val.is_empty() {
            let (acc, loss) = score(&log.val);
            let better = state
                .best
                .is_none_or(|(_, a, l)| acc > a || (acc == a && loss < l));
            if better {
                state.best = Some((epoch, acc, loss));
                state.bad_epochs = 0;
                best_weights = Some(checkpoint::named_params(&Joint::of(
                    &mut *net,
                    &mut *objective,
                )));
            } else {
                state.bad_epochs += 1;
            }
            stopped_early = cfg.patience.is_some_and(|p| state.bad_epochs >= p);
        }
        flow = on_epoch(&log);
        state.history.push(log);
        state.epochs_done += 1;
        state.param_steps = opt_state.steps.clone();
        if let Some(ck) = &ck {
            save_checkpoint(
                ck,
                &mut state,
                &checkpoint::named_params(&Joint::of(&mut *net, &mut *objective)),
                &opt_state.slots,
                best_weights.as_ref(),
            )?;
        }
    }
    if let Some(b) = best_weights.as_ref().filter(|_| cfg.keep == Keep::Best) {
        let mut joint = Joint::of(&mut *net, &mut *objective);
        checkpoint::set_params(&mut joint, b, Path::new("best weights"))?;
    }
    Ok(TrainReport {
        epochs_run: state.epochs_done,
        best_epoch: match (cfg.keep, state.best) {
            (Keep::Best, Some(b)) => b.0,
            _ => state.epochs_done.saturating_sub(1),
        },
        stopped_early,
        resumed_from_epoch: resumed,
        history: state.history,
        steps: state.steps,
    })
}
