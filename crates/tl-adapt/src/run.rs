//! One adaptation run on features: labelled source rows (train and validation), unlabelled
//! target rows, one method. Target labels never enter here: they exist only for the
//! caller's evaluation, so no setting can be tuned on them by accident.

use ndarray::{Array1, Array2, Axis};
use serde::{Deserialize, Serialize};
use tl_head::{
    net::{HeadNet, HeadSpec, TaskSpec},
    probe::{LinearProbe, ProbeConfig, ProbeData, argmax_rows, fit_path},
    train::{Checkpoint, EpochLog, Flow, Keep, Labelled, TrainConfig, TrainReport, Trainer},
};
use tl_nn::Tensor;

use crate::{
    Error, Result,
    closed::{ClosedCoral, Standardizer},
    loss,
    method::{AdaptConfig, Balance, Method, Selection},
    objective::{AdaptObjective, predict_proba},
    prior::{PriorEstimate, PriorMethod, bbse, confusion, em, reweight},
    propagate,
};

/// Rounds of Zhou et al.'s label-propagation iteration, from the seed labels.
const PROPAGATE_ITERS: usize = 100;
/// At most this many rounds of SHOT's centroid pseudo-labels (they stop when no label
/// changes).
const CENTROID_ROUNDS: usize = 10;

/// The class frequencies of the labelled training and validation rows (the source's,
/// and any labelled target rows); every class must be present.
fn source_frequencies(d: &Domains<'_>) -> Result<Vec<f64>> {
    let classes = d.task.classes.len();
    let mut counts = vec![0.0f64; classes];
    for y in d.source_train.labels[0]
        .iter()
        .chain(&d.source_val.labels[0])
        .chain(d.target_labels.unwrap_or(&[]))
        .flatten()
    {
        counts[*y as usize] += 1.0;
    }
    let total: f64 = counts.iter().sum();
    if let Some(k) = counts.iter().position(|&c| c == 0.0) {
        return Err(Error::data(
            "source labels",
            format!("class `{}` has no source rows", d.task.classes[k]),
        ));
    }
    Ok(counts.iter().map(|c| c / total).collect())
}

/// The two domains. The source has one task's labels; the target has none.
#[derive(Debug, Clone, Copy)]
pub struct Domains<'a> {
    pub task: &'a TaskSpec,
    pub source_train: Labelled<'a>,
    pub source_val: Labelled<'a>,
    pub target: &'a Tensor,
    /// A few target labels (semi-supervised adaptation), one entry per target row, most
    /// `None`: the labelled target rows join the source's training rows in the
    /// classification loss (and the probe of closed-form methods); every target row stays
    /// in the unlabelled set the method aligns.
    pub target_labels: Option<&'a [Option<u32>]>,
}

impl Domains<'_> {
    /// Clear errors before any work: widths, empty sets, label ranges.
    pub fn check(&self) -> Result<()> {
        let width = |t: &Tensor| t.shape().get(1).copied().unwrap_or(0);
        let ws = width(self.source_train.x);
        for (what, t) in [
            ("source validation features", self.source_val.x),
            ("target features", self.target),
        ] {
            if t.ndim() != 2 || width(t) != ws {
                return Err(Error::Shape {
                    what: what.into(),
                    expected: format!("[rows, {ws}] like the source training features"),
                    got: format!("{:?}", t.shape()),
                });
            }
        }
        if self.target.shape()[0] == 0 {
            return Err(Error::no_rows("target"));
        }
        if self.source_train.is_empty() {
            return Err(Error::data("source", "no training rows"));
        }
        if self.source_train.labels.len() != 1 || self.source_val.labels.len() != 1 {
            return Err(Error::data(
                "source labels",
                "adaptation takes exactly one task",
            ));
        }
        if let Some(t) = self.target_labels {
            if t.len() != self.target.shape()[0] {
                return Err(Error::Shape {
                    what: "target labels".into(),
                    expected: format!("one per target row ({})", self.target.shape()[0]),
                    got: t.len().to_string(),
                });
            }
            let k = self.task.classes.len() as u32;
            if let Some(bad) = t.iter().flatten().find(|&&y| y >= k) {
                return Err(Error::data(
                    "target labels",
                    format!("label {bad} of a task with {k} classes"),
                ));
            }
        }
        Ok(())
    }
}

/// What a run produced: a model of the (standardised) features, and the standardisation
/// of each domain.
#[derive(Debug)]
pub struct Adapted {
    pub model: AdaptedModel,
    /// Applied to source rows before the model (per-domain standardisation).
    pub source_standardizer: Option<Standardizer>,
    /// Applied to target rows before the model.
    pub target_standardizer: Option<Standardizer>,
}

/// The trained or fitted part of an [`Adapted`].
#[derive(Debug)]
pub enum AdaptedModel {
    /// A trained network (adapter + classifier).
    Net { net: HeadNet, report: TrainReport },
    /// A linear probe, on transformed source features and/or with corrected priors.
    Probe {
        probe: LinearProbe,
        best_c: f64,
        coral: Option<Box<ClosedCoral>>,
        prior: Option<PriorEstimate>,
    },
}

/// What a run says about itself, for `metrics.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub method: Method,
    pub weight: f32,
    /// The rule that chose the stopping epoch or C (never target labels).
    pub selection: String,
    pub source_val_accuracy: f64,
    pub best_epoch: Option<usize>,
    pub best_c: Option<f64>,
    /// The target's class proportions: estimated (`prior`), or those of the pseudo-labels
    /// (`propagate`).
    pub target_priors: Option<Vec<f64>>,
}

fn standardized(st: &Option<Standardizer>, x: &Tensor) -> Result<Tensor> {
    Ok(match st {
        Some(st) => st
            .apply(
                x.view()
                    .into_dimensionality()
                    .map_err(|_| Error::data("features", "must be 2-D"))?,
            )
            .into_dyn(),
        None => x.clone(),
    })
}

impl Adapted {
    /// Class probabilities of target-domain rows `x`.
    pub fn predict_proba(&mut self, x: &Tensor) -> Result<Array2<f64>> {
        let x = standardized(&self.target_standardizer, x)?;
        match &mut self.model {
            AdaptedModel::Net { net, .. } => predict_proba(net, &x),
            AdaptedModel::Probe { probe, prior, .. } => {
                let p = loss::probabilities(probe.logits(view2(&x)).view());
                Ok(match prior {
                    Some(est) => reweight(
                        p.view(),
                        &Array1::from(est.source.clone()),
                        &Array1::from(est.target.clone()),
                    ),
                    None => p,
                })
            }
        }
    }

    /// The most likely class of each target-domain row.
    pub fn predict(&mut self, x: &Tensor) -> Result<Vec<u32>> {
        Ok(argmax_rows(&self.predict_proba(x)?))
    }

    /// The features the method aligns, of source rows `xs` and target rows `xt`: the
    /// adapter's outputs (trained methods), the transformed source and the target
    /// (closed-form CORAL), or the standardised inputs (otherwise).
    pub fn aligned(&mut self, xs: &Tensor, xt: &Tensor) -> Result<(Array2<f32>, Array2<f32>)> {
        let xs = standardized(&self.source_standardizer, xs)?;
        let xt = standardized(&self.target_standardizer, xt)?;
        Ok(match &mut self.model {
            AdaptedModel::Net { net, .. } => {
                (adapter_features(net, &xs)?, adapter_features(net, &xt)?)
            }
            AdaptedModel::Probe { coral: Some(c), .. } => {
                (c.apply(view2(&xs)), view2(&xt).to_owned())
            }
            AdaptedModel::Probe { .. } => (view2(&xs).to_owned(), view2(&xt).to_owned()),
        })
    }
}

/// The target-domain predictor of an [`Adapted`] as plain parts, for export as one ONNX
/// file: `softmax(head(x · scale + shift) + logit_offset)` on the backbone's features.
#[derive(Debug, Clone)]
pub struct TargetPredictor {
    /// The target's standardisation as `x · scale + shift` (`scale` = 1/sd,
    /// `shift` = −mean/sd), if the run standardised per domain.
    pub affine: Option<(Vec<f32>, Vec<f32>)>,
    /// The head: the trained network's spec, or `linear` for a probe.
    pub head: HeadSpec,
    /// Its parameters by `HeadNet` name (`trunk.*`, `heads.<task>.0.weight|bias`).
    pub params: std::collections::BTreeMap<String, Tensor>,
    /// `ln(target prior / source prior)` per class (`prior`): adding it to the logits is
    /// the posterior reweighting of [`reweight`].
    pub logit_offset: Option<Vec<f32>>,
}

impl Adapted {
    /// The parts that predict target rows as [`Adapted::predict_proba`] does; `head` is
    /// the spec the network was trained with, `task` the run's task.
    pub fn target_predictor(&self, head: &HeadSpec, task: &TaskSpec) -> TargetPredictor {
        let affine = self.target_standardizer.as_ref().map(|st| {
            let scale: Vec<f32> = st.sd.iter().map(|s| 1.0 / s).collect();
            let shift: Vec<f32> = st.mean.iter().zip(&scale).map(|(m, k)| -m * k).collect();
            (scale, shift)
        });
        match &self.model {
            AdaptedModel::Net { net, .. } => TargetPredictor {
                affine,
                head: head.clone(),
                params: tl_nn::checkpoint::named_params(net),
                logit_offset: None,
            },
            AdaptedModel::Probe { probe, prior, .. } => {
                let (w, b) = probe.to_f32();
                let params = [
                    (format!("heads.{}.0.weight", task.name), w.into_dyn()),
                    (format!("heads.{}.0.bias", task.name), b.into_dyn()),
                ]
                .into_iter()
                .collect();
                TargetPredictor {
                    affine,
                    head: HeadSpec::linear(),
                    params,
                    logit_offset: prior.as_ref().map(|est| {
                        est.target
                            .iter()
                            .zip(&est.source)
                            .map(|(t, s)| (t / s).ln() as f32)
                            .collect()
                    }),
                }
            }
        }
    }
}

/// The adapter's (trunk's) outputs for `x`, in evaluation mode.
fn adapter_features(net: &mut HeadNet, x: &Tensor) -> Result<Array2<f32>> {
    Ok(tl_head::train::predict_features(net, x, 512)?.0)
}

fn view2(t: &Tensor) -> ndarray::ArrayView2<'_, f32> {
    t.view().into_dimensionality().expect("checked 2-D")
}

fn known(labels: &[Option<u32>], x: &Tensor) -> (Array2<f32>, Vec<u32>) {
    let idx: Vec<usize> = (0..labels.len()).filter(|&i| labels[i].is_some()).collect();
    (
        view2(x).select(Axis(0), &idx),
        idx.iter().map(|&i| labels[i].expect("kept")).collect(),
    )
}

/// Runs `cfg.method`. Trained methods build `head` on the features (its trunk is the
/// adapter whose output the feature losses align) and train with `train`, stopping on
/// the source validation accuracy; closed-form methods fit a probe path on the source
/// and pick C by source validation accuracy.
pub fn adapt(
    d: &Domains<'_>,
    cfg: &AdaptConfig,
    head: &HeadSpec,
    train: &TrainConfig,
    checkpoint: Option<Checkpoint<'_>>,
    on_epoch: &mut dyn FnMut(&EpochLog),
) -> Result<(Adapted, RunSummary)> {
    cfg.check()?;
    d.check()?;
    if cfg.per_domain_standardize {
        // Each domain's statistics come from all its rows, labels unused: the target's
        // from every target row, the source's from its training and validation rows, so
        // that validation rows are standardised like the rows the statistics saw.
        let source_all =
            ndarray::concatenate(Axis(0), &[view2(d.source_train.x), view2(d.source_val.x)])
                .map_err(|e| Error::data("standardisation", e.to_string()))?;
        let ss = Standardizer::fit(source_all.view())?;
        let ts = Standardizer::fit(view2(d.target))?;
        let st = ss.apply(view2(d.source_train.x)).into_dyn();
        let sv = ss.apply(view2(d.source_val.x)).into_dyn();
        let tt = ts.apply(view2(d.target)).into_dyn();
        let inner = Domains {
            task: d.task,
            source_train: Labelled {
                x: &st,
                labels: d.source_train.labels,
            },
            source_val: Labelled {
                x: &sv,
                labels: d.source_val.labels,
            },
            target: &tt,
            target_labels: d.target_labels,
        };
        let plain = AdaptConfig {
            per_domain_standardize: false,
            ..cfg.clone()
        };
        let (mut adapted, summary) = adapt(&inner, &plain, head, train, checkpoint, on_epoch)?;
        adapted.source_standardizer = Some(ss);
        adapted.target_standardizer = Some(ts);
        return Ok((adapted, summary));
    }
    let classes = d.task.classes.len();
    let width = d.source_train.x.shape()[1];
    // The labelled target rows, if any (already standardised with the target's statistics).
    let labelled_target = d.target_labels.map(|t| known(t, d.target));
    if cfg.method.trained() {
        let tasks = std::slice::from_ref(d.task);
        let mut net = HeadNet::build(head, width, tasks, train.seed)?;
        let features = head.hidden.last().copied().unwrap_or(width);
        let mut objective = AdaptObjective::new(
            cfg,
            tasks,
            train.label_smoothing,
            d.target,
            features,
            train.seed,
        )?;
        // With `Last`, validation is still reported each epoch but picks nothing.
        let mut train = train.clone();
        if cfg.selection == Selection::Last {
            train.patience = None;
            train.keep = Keep::Last;
        }
        let joined = labelled_target
            .as_ref()
            .filter(|(_, y)| !y.is_empty())
            .map(|(xl, yl)| -> Result<(Tensor, Vec<Vec<Option<u32>>>)> {
                let x = ndarray::concatenate(Axis(0), &[view2(d.source_train.x), xl.view()])
                    .map_err(|e| Error::data("target labels", e.to_string()))?;
                let mut y = d.source_train.labels[0].clone();
                y.extend(yl.iter().map(|&v| Some(v)));
                Ok((x.into_dyn(), vec![y]))
            })
            .transpose()?;
        let train_set = match &joined {
            Some((x, labels)) => Labelled { x, labels },
            None => d.source_train,
        };
        let mut each_epoch = |log: &EpochLog| {
            on_epoch(log);
            Flow::Continue
        };
        let report = Trainer::new(&train, tasks)
            .checkpoint(checkpoint)
            .objective(&mut objective)
            .on_epoch(&mut each_epoch)
            .fit(
                &mut net,
                &train_set,
                Some(&d.source_val).filter(|v| !v.is_empty()),
            )?;
        let best = report.history.get(report.best_epoch);
        let summary = RunSummary {
            method: cfg.method,
            weight: cfg.weight(),
            selection: cfg.selection.describe().into(),
            source_val_accuracy: best
                .and_then(|l| l.val.first())
                .map_or(f64::NAN, |s| s.accuracy),
            best_epoch: Some(report.best_epoch),
            best_c: None,
            target_priors: None,
        };
        let adapted = Adapted {
            model: AdaptedModel::Net { net, report },
            source_standardizer: None,
            target_standardizer: None,
        };
        return Ok((adapted, summary));
    }
    // Closed form: a probe on (transformed) source features.
    let (xs, ys) = known(&d.source_train.labels[0], d.source_train.x);
    let (xv, yv) = known(&d.source_val.labels[0], d.source_val.x);
    let coral = (cfg.method == Method::CoralClosed)
        .then(|| ClosedCoral::fit(xs.view(), view2(d.target), cfg.coral_eps))
        .transpose()?;
    let (xs_fit, xv_fit) = match &coral {
        Some(c) => (c.apply(xs.view()), c.apply(xv.view())),
        None => (xs.clone(), xv.clone()),
    };
    // Labelled target rows join the training rows after the source's transform: they are
    // target-domain rows already.
    let (xs, xs_fit, ys) = match &labelled_target {
        Some((xl, yl)) if !yl.is_empty() => {
            let cat = |a: &Array2<f32>| {
                ndarray::concatenate(Axis(0), &[a.view(), xl.view()])
                    .map_err(|e| Error::data("target labels", e.to_string()))
            };
            let mut y = ys.clone();
            y.extend(yl);
            (cat(&xs)?, cat(&xs_fit)?, y)
        }
        _ => (xs, xs_fit, ys),
    };
    let pc = ProbeConfig::default().standardize(true);
    let path = fit_path(
        &ProbeData {
            x: xs_fit.view(),
            y: &ys,
            classes,
        },
        &ProbeData {
            x: xv_fit.view(),
            y: &yv,
            classes,
        },
        &tl_head::probe::default_cs(),
        &pc,
    )?;
    let val_acc_at = |c: f64| {
        path.points
            .iter()
            .find(|p| p.c == c)
            .map_or(f64::NAN, |p| p.val_accuracy)
    };
    // Label-shift correction reweights posteriors: it needs calibrated ones, so `prior`
    // takes the C with the lowest validation log-loss (accuracy ties favour the
    // strongest regularisation, whose posteriors are nearly flat).
    let (probe, best_c) = if cfg.method == Method::Prior {
        let point = path
            .points
            .iter()
            .min_by(|a, b| a.val_log_loss.total_cmp(&b.val_log_loss))
            .expect("a path has points");
        let all_x = ndarray::concatenate(Axis(0), &[xs.view(), xv.view()])
            .map_err(|e| Error::data("features", e.to_string()))?;
        let all_y: Vec<u32> = ys.iter().chain(&yv).copied().collect();
        let refit = tl_head::probe::fit(
            &ProbeData {
                x: all_x.view(),
                y: &all_y,
                classes,
            },
            &pc.clone().with_c(point.c),
            None,
        )?;
        (refit, point.c)
    } else {
        (path.probe, path.best_c)
    };
    let prior = if cfg.method == Method::Prior {
        // Every class present: a prior of 0 cannot be reweighted.
        let source = source_frequencies(d)?;
        let pt = loss::probabilities(probe.logits(view2(d.target)).view());
        Some(match cfg.prior {
            PriorMethod::Em => em(pt.view(), &source, 1e-8, 1000)?,
            PriorMethod::Bbse => {
                // The refitted probe saw the validation rows: the confusion comes from the
                // path's probe at the best C, fitted on the training rows only.
                let val_probe = tl_head::probe::fit(
                    &ProbeData {
                        x: xs.view(),
                        y: &ys,
                        classes,
                    },
                    &pc.clone().with_c(best_c),
                    None,
                )?;
                let conf = confusion(&val_probe.predict(xv.view()), &yv, classes);
                let pred = val_probe.predict(view2(d.target));
                let mut freq = vec![0.0f64; classes];
                for &p in &pred {
                    freq[p as usize] += 1.0 / pred.len() as f64;
                }
                bbse(&conf, &freq, &source)?
            }
        })
    } else {
        None
    };
    // Transductive: the target's pseudo-labels, then a probe on the target rows with them
    // at the C the source chose.
    let (probe, propagated) = if cfg.method == Method::Propagate {
        let xt = view2(d.target);
        let p = loss::probabilities(probe.logits(xt).view());
        let balance = match cfg.balance {
            Balance::Uniform => Some(vec![1.0 / classes as f64; classes]),
            Balance::Source => Some(source_frequencies(d)?),
            Balance::None => None,
        };
        let labels = propagate::pseudo_labels(
            xt,
            p.view(),
            balance.as_deref(),
            &propagate::PropagateSettings {
                neighbours: cfg.neighbours,
                alpha: cfg.propagate_alpha,
                iters: PROPAGATE_ITERS,
                eps: cfg.sinkhorn_eps,
                centroid_rounds: CENTROID_ROUNDS,
            },
        )?;
        let refit = tl_head::probe::fit(
            &ProbeData {
                x: xt,
                y: &labels,
                classes,
            },
            &pc.clone().with_c(best_c),
            None,
        )?;
        let mut counts = vec![0.0f64; classes];
        for &l in &labels {
            counts[l as usize] += 1.0 / labels.len() as f64;
        }
        (refit, Some(counts))
    } else {
        (probe, None)
    };
    let summary = RunSummary {
        method: cfg.method,
        weight: cfg.weight(),
        selection: if cfg.method == Method::Propagate {
            "C with the best source-validation accuracy on a 10-value path (the source probe that seeds the pseudo-labels; the target probe is fitted at the same C)"
        } else if cfg.method == Method::Prior {
            "C with the lowest source-validation log-loss on a 10-value path, refitted on train + validation"
        } else {
            "C with the best source-validation accuracy on a 10-value path, refitted on train + validation"
        }
        .into(),
        source_val_accuracy: val_acc_at(best_c),
        best_epoch: None,
        best_c: Some(best_c),
        target_priors: prior.as_ref().map(|p| p.target.clone()).or(propagated),
    };
    let adapted = Adapted {
        model: AdaptedModel::Probe {
            probe,
            best_c,
            coral: coral.map(Box::new),
            prior,
        },
        source_standardizer: None,
        target_standardizer: None,
    };
    Ok((adapted, summary))
}
