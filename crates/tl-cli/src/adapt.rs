//! `tl adapt` and `tl shift`: flags onto the adapt config, one library call, printing.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use tl_adapt::{Balance, Method, method::Selection, prior::PriorMethod};
use tl_data::segment::Segments;
use tl_features::extract::Pool;
use tl_pipeline::{
    adapt::{adapt, shift as measure_shift},
    artifact::AdaptMetrics,
    config::{AdaptRunConfig, read_config},
};

use crate::{Global, JSON_SCHEMA_VERSION, RunArgs, parse_named};

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
    #[arg(long, value_parser = parse_named::<Pool>)]
    pool: Option<Pool>,
    /// Input side in pixels.
    #[arg(long, value_name = "N")]
    image_size: Option<u32>,
    /// Target texts cut before embedding: none, sentences (each sentence a row; a review's
    /// prediction is the mean of its sentences' log-probabilities), or auto (sentences when
    /// the target's median text has more than twice the source's words; images never)
    /// [default: auto].
    #[arg(long, value_name = "HOW", value_parser = parse_named::<Segments>)]
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
    #[arg(long, value_parser = parse_named::<Method>)]
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
    #[arg(long, value_parser = parse_named::<PriorMethod>)]
    prior: Option<PriorMethod>,
    /// `propagate`: neighbours per row of the target's k-NN graph (default 10).
    #[arg(long, value_name = "K")]
    neighbours: Option<usize>,
    /// `propagate`: class proportions of the pseudo-labels: uniform (default), source (the source's frequencies) or none.
    #[arg(long, value_parser = parse_named::<Balance>)]
    balance: Option<Balance>,
    /// Which epoch a trained method keeps: last (of the fixed schedule) or source-val (best source-validation accuracy).
    #[arg(long, value_parser = parse_named::<Selection>)]
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
    pub(crate) fn config(&self) -> Result<AdaptRunConfig> {
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
        Ok(c)
    }
}

pub fn run(a: &AdaptArgs, global: &Global) -> Result<()> {
    let c = a.config()?;
    let env = global.env(Some(&a.domains.run))?;
    let o = adapt(&c, a.out.as_deref(), a.domains.contract.as_deref(), &env)?;
    print_result(&o.metrics, &o.classes, global)
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

pub fn shift(a: &ShiftArgs, global: &Global) -> Result<()> {
    let mut c = AdaptRunConfig::default();
    a.domains.apply(&mut c)?;
    let env = global.env(Some(&a.domains.run))?;
    let reports = measure_shift(&c, &a.also, a.seed, a.domains.contract.as_deref(), &env)?;
    if global.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"schema_version": JSON_SCHEMA_VERSION, "layers": reports})
            )?
        );
        return Ok(());
    }
    if reports.is_empty() {
        bail!("no layer to measure");
    }
    println!(
        "{} → {} ({} rows per domain sampled)",
        reports[0].source, reports[0].target, reports[0].shift.sample_rows
    );
    println!(
        "{:<28} {:>12} {:>16} {:>13} {:>11}",
        "layer", "MMD² linear", "MMD² Gaussian", "domain error", "proxy A"
    );
    for l in &reports {
        let r = &l.shift;
        println!(
            "{:<28} {:>12.4} {:>16.4} {:>13.3} {:>11.3}",
            l.layer, r.mmd2_linear, r.mmd2_gaussian, r.domain_error, r.proxy_a_distance
        );
    }
    Ok(())
}
