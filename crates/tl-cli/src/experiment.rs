//! `tl run EXPERIMENT.toml`: sweeps of `tl train` and `tl adapt` runs described in one
//! file (the same config schema as `config.json`), run in one go, resumable cell by cell,
//! with one comparison report.

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context, Result, ensure};
use clap::Args;
use serde::{Deserialize, Serialize};
use tl_eval::{Bar, Block, Point, Section, Series, mean_ci};

use crate::{
    Global, JSON_SCHEMA_VERSION, RunArgs,
    adapt::{AdaptMetrics, AdaptRunConfig},
    train::{Metrics, RawInput, RunConfig},
};

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
    #[serde(default)]
    pub seeds: Option<Vec<u64>>,
    pub config: AdaptRunConfig,
}

#[derive(Debug, Args)]
#[command(
    after_help = "An experiment file describes studies; each study sweeps arms (or adaptation
methods) × label budgets × seeds. Every cell is an ordinary `tl train` or `tl adapt` run
written to OUT/<study>/<arm or method>/<budget>/seed-<s>/ with its own config.json, metrics.json and
report; features come from the shared cache, so a backbone is run once per dataset.
A cell whose `cell.json` matches its config is not run again: rerun the same command after
an interruption and it resumes. OUT/report.html compares the arms (learning curves with
95 % intervals over seeds, convergence, method comparisons); OUT/manifest.json lists
every cell.

Example (a small cousin of experiments/digits.toml):
  title = \"Digits: transfer against from scratch\"
  seeds = [0, 1, 2]
  [[train]]
  name = \"curve\"
  budgets = [1, 2, 5, 10, 20]
  [[train.arm]]
  label = \"EfficientNet-Lite0 features + linear probe\"
  config = { model = \"efficientnet-lite0\", data = \"sklearn-digits\", image_size = 64 }
  [[train.arm]]
  label = \"pixels + linear probe (from scratch)\"
  config = { model = \"pixels\", data = \"sklearn-digits\" }
  [[adapt]]
  name = \"mnist-to-digits\"
  methods = [\"none\", \"coral\", \"mcc\"]
  config = { source = \"mnist-5k\", target = \"sklearn-digits-padded\", image_size = 64 }

Try `--dry-run` first to see the cells. A malformed file fails before any work with its path, line and key."
)]
pub struct RunExperimentArgs {
    /// The experiment file (TOML).
    pub file: PathBuf,
    /// Output directory (default: runs/<file stem>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Run only the studies named (repeatable).
    #[arg(long = "study", value_name = "NAME")]
    pub studies: Vec<String>,
    /// Check the file and list its cells (and which are done); run and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Reads and checks an experiment file: syntax, keys, names, models and data, before any
/// work.
pub fn load(path: &Path, home: &Path) -> Result<Experiment> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read experiment file `{}`", path.display()))?;
    let e: Experiment =
        toml::from_str(&text).map_err(|err| anyhow::anyhow!("{}: {err}", path.display()))?;
    let at = |what: String| format!("{}: {what}", path.display());
    ensure!(
        e.schema_version == EXPERIMENT_SCHEMA_VERSION,
        at(format!(
            "schema_version {} (this tl reads {EXPERIMENT_SCHEMA_VERSION})",
            e.schema_version
        ))
    );
    ensure!(
        !e.train.is_empty() || !e.adapt.is_empty(),
        at("no [[train]] or [[adapt]] study".into())
    );
    let mut names = std::collections::BTreeSet::new();
    let registry = tl_hub::Registry::builtin()?;
    let known_model =
        |m: &str| RawInput::parse(m).is_some() || registry.get(m).is_ok() || Path::new(m).is_file();
    let data_ok = |d: &str, at_what: String| {
        crate::data::check_exists(d, home)
            .map_err(|err| anyhow::anyhow!(at(format!("{at_what}: {err:#}"))))
    };
    // The checks every study gets: a unique, directory-safe name and budgets ≥ 1.
    let mut check_study = |name: &str, budgets: &[usize]| -> Result<()> {
        ensure!(
            names.insert(name.to_string()),
            at(format!("study name `{name}` is used twice"))
        );
        ensure!(
            slug(name) == name,
            at(format!(
                "study name `{name}`: use letters, digits, `-` and `_`"
            ))
        );
        ensure!(
            !budgets.contains(&0),
            at(format!(
                "study `{name}`: a budget must be at least 1 label per class"
            ))
        );
        Ok(())
    };
    for s in &e.train {
        check_study(&s.name, &s.budgets)?;
        ensure!(
            !s.arm.is_empty(),
            at(format!("study `{}` has no [[train.arm]]", s.name))
        );
        ensure!(
            !s.budgets.is_empty() || s.all,
            at(format!("study `{}`: no budgets and all = false", s.name))
        );
        let mut labels = std::collections::BTreeSet::new();
        for a in &s.arm {
            ensure!(
                labels.insert(slug(&a.label)),
                at(format!(
                    "study `{}`: two arms named like `{}`",
                    s.name, a.label
                ))
            );
            ensure!(
                known_model(&a.config.model),
                at(format!(
                    "study `{}`, arm `{}`: unknown model `{}` (a registry id, pixels, tfidf or an .onnx file)",
                    s.name, a.label, a.config.model
                ))
            );
            data_ok(
                &a.config.data,
                format!("study `{}`, arm `{}`", s.name, a.label),
            )?;
            a.config.train.check().map_err(|err| {
                anyhow::anyhow!(at(format!("study `{}`, arm `{}`: {err}", s.name, a.label)))
            })?;
        }
    }
    for s in &e.adapt {
        check_study(&s.name, &s.budgets)?;
        ensure!(
            !s.methods.is_empty(),
            at(format!("study `{}` lists no methods", s.name))
        );
        ensure!(
            known_model(&s.config.model),
            at(format!(
                "study `{}`: unknown model `{}`",
                s.name, s.config.model
            ))
        );
        for d in [&s.config.source, &s.config.target] {
            data_ok(d, format!("study `{}`", s.name))?;
        }
        s.config
            .train
            .check()
            .map_err(|err| anyhow::anyhow!(at(format!("study `{}`: {err}", s.name))))?;
    }
    for seeds in std::iter::once(&e.seeds)
        .chain(e.train.iter().filter_map(|s| s.seeds.as_ref()))
        .chain(e.adapt.iter().filter_map(|s| s.seeds.as_ref()))
    {
        ensure!(!seeds.is_empty(), at("an empty list of seeds".into()));
    }
    Ok(e)
}

/// A directory-safe name.
fn slug(s: &str) -> String {
    let mut o = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
            o.push(c.to_ascii_lowercase());
        } else if !o.ends_with('-') {
            o.push('-');
        }
    }
    o.trim_matches('-').to_string()
}

/// What `cell.json` records: the config a cell ran with and what it measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CellRecord {
    schema_version: u32,
    study: String,
    arm: String,
    /// Labels per class (none: all).
    budget: Option<usize>,
    seed: u64,
    config: serde_json::Value,
    result: CellResult,
    seconds: f64,
}

/// The figures the comparison report reads from a cell.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CellResult {
    accuracy: f64,
    macro_f1: f64,
    balanced_accuracy: f64,
    /// Labelled rows per class (training + validation, mean over classes) the run used.
    labels_per_class: f64,
    /// Validation accuracy per epoch (trained heads).
    #[serde(default)]
    val_curve: Vec<f64>,
    /// Proxy A-distance before and after (adaptation).
    #[serde(default)]
    shift: Option<(f64, f64)>,
}

struct Cell {
    study: String,
    arm: String,
    budget: Option<usize>,
    seed: u64,
    dir: PathBuf,
    job: Job,
}

enum Job {
    Train(Box<RunConfig>),
    Adapt(Box<AdaptRunConfig>),
}

impl Job {
    fn config_json(&self) -> Result<serde_json::Value> {
        Ok(match self {
            Job::Train(c) => serde_json::to_value(c)?,
            Job::Adapt(c) => serde_json::to_value(c)?,
        })
    }
}

fn budget_dir(b: Option<usize>) -> String {
    b.map_or("all".into(), |k| format!("{k}-per-class"))
}

/// Where a cell runs: `OUT/<study>/<arm slug>/<budget>/seed-<s>/` (an adaptation method's
/// name is its own slug).
fn cell_path(out: &Path, study: &str, arm: &str, budget: Option<usize>, seed: u64) -> PathBuf {
    out.join(study)
        .join(slug(arm))
        .join(budget_dir(budget))
        .join(format!("seed-{seed}"))
}

impl Cell {
    /// `[i/n] study / arm / budget / seed s`, the cell's line in the progress output.
    fn tag(&self, i: usize, n: usize) -> String {
        format!(
            "[{}/{n}] {} / {} / {} / seed {}",
            i + 1,
            self.study,
            self.arm,
            budget_dir(self.budget),
            self.seed
        )
    }

    /// The record of an earlier run of this cell with the same config.
    fn finished(&self, config: &serde_json::Value) -> Option<CellRecord> {
        tl_core::io::read_json::<CellRecord>(&self.dir.join("cell.json"))
            .ok()
            .filter(|r| &r.config == config)
    }
}

fn cells(e: &Experiment, out: &Path, only: &[String]) -> Vec<Cell> {
    let mut v = Vec::new();
    let wanted = |n: &str| only.is_empty() || only.iter().any(|o| o == n);
    for s in e.train.iter().filter(|s| wanted(&s.name)) {
        let seeds = s.seeds.as_ref().unwrap_or(&e.seeds);
        let budgets: Vec<Option<usize>> = s
            .budgets
            .iter()
            .map(|&b| Some(b))
            .chain(s.all.then_some(None))
            .collect();
        for a in &s.arm {
            for &b in &budgets {
                for &seed in seeds {
                    let mut c = a.config.clone();
                    c.split.budget = b;
                    c.split.seed = seed;
                    c.train.seed = seed;
                    v.push(Cell {
                        study: s.name.clone(),
                        arm: a.label.clone(),
                        budget: b,
                        seed,
                        dir: cell_path(out, &s.name, &a.label, b, seed),
                        job: Job::Train(Box::new(c)),
                    });
                }
            }
        }
    }
    for s in e.adapt.iter().filter(|s| wanted(&s.name)) {
        let seeds = s.seeds.as_ref().unwrap_or(&e.seeds);
        let budgets: Vec<Option<usize>> = if s.budgets.is_empty() {
            vec![s.config.budget]
        } else {
            s.budgets.iter().map(|&b| Some(b)).collect()
        };
        for m in &s.methods {
            for &b in &budgets {
                for &seed in seeds {
                    let mut c = s.config.clone();
                    c.adapt.method = *m;
                    c.budget = b;
                    c.split_seed = seed;
                    c.train.seed = seed;
                    v.push(Cell {
                        study: s.name.clone(),
                        arm: m.to_string(),
                        budget: b,
                        seed,
                        dir: cell_path(out, &s.name, m.name(), b, seed),
                        job: Job::Adapt(Box::new(c)),
                    });
                }
            }
        }
    }
    v
}

/// Labelled rows per class of a run: its training and validation rows over its classes.
fn labels_per_class(
    rows: &std::collections::BTreeMap<String, usize>,
    train: &str,
    val: &str,
    classes: usize,
) -> f64 {
    (rows.get(train).copied().unwrap_or(0) + rows.get(val).copied().unwrap_or(0)) as f64
        / classes.max(1) as f64
}

fn train_result(m: &Metrics) -> Result<CellResult> {
    let e = &m
        .evaluation
        .first()
        .context("the run has no test evaluation")?
        .evaluation;
    Ok(CellResult {
        accuracy: e.accuracy.value,
        macro_f1: e.macro_f1.value,
        balanced_accuracy: e.balanced_accuracy.value,
        labels_per_class: labels_per_class(&m.rows, "train", "val", e.classes.len()),
        val_curve: m
            .training
            .as_ref()
            .map(|t| {
                t.history
                    .iter()
                    .filter_map(|h| h.val.first().map(|s| s.accuracy))
                    .collect()
            })
            .unwrap_or_default(),
        shift: None,
    })
}

fn adapt_result(m: &AdaptMetrics) -> Result<CellResult> {
    let e = m
        .target_scores
        .as_ref()
        .context("the target has no labels: an adapt study needs them to compare methods")?;
    Ok(CellResult {
        accuracy: e.accuracy.value,
        macro_f1: e.macro_f1.value,
        balanced_accuracy: e.balanced_accuracy.value,
        labels_per_class: labels_per_class(&m.rows, "source_train", "source_val", e.classes.len()),
        val_curve: Vec::new(),
        shift: Some((
            m.shift_before.proxy_a_distance,
            m.shift_after
                .as_ref()
                .map_or(f64::NAN, |a| a.proxy_a_distance),
        )),
    })
}

/// What an experiment run did.
#[derive(Debug, Serialize)]
pub struct Outcome {
    schema_version: u32,
    out: PathBuf,
    cells: usize,
    ran: usize,
    seconds: f64,
    summary: Vec<SummaryRow>,
}

pub fn run(a: &RunExperimentArgs, global: &Global) -> Result<()> {
    let o = execute(a, global)?;
    if global.json {
        println!("{}", serde_json::to_string_pretty(&o)?);
    } else if !a.dry_run {
        print_outcome(&o);
    }
    Ok(())
}

/// The summary table of an experiment run.
pub fn print_outcome(o: &Outcome) {
    println!(
        "{} cells ({} run now, {} reused) in {:.1} s",
        o.cells,
        o.ran,
        o.cells - o.ran,
        o.seconds
    );
    println!(
        "{:<16} {:<52} {:>12} {:>18} {:>9}",
        "study", "arm", "labels", "accuracy", "macro-F1"
    );
    for r in &o.summary {
        // One seed has no interval: say so rather than print NaN.
        let ci = if r.accuracy_ci.is_finite() {
            format!("± {:<6.4}", r.accuracy_ci)
        } else {
            format!("{:<8}", "(1 seed)")
        };
        println!(
            "{:<16} {:<52} {:>12} {:>9.4} {ci} {:>9.4}",
            r.study, r.arm, r.budget, r.accuracy, r.macro_f1
        );
    }
    println!("report: {}", o.out.join("report.html").display());
}

/// Runs (or resumes) every cell of the experiment and writes its report.
pub fn execute(a: &RunExperimentArgs, global: &Global) -> Result<Outcome> {
    let home = global.home()?;
    let e = load(&a.file, &home)?;
    for s in &a.studies {
        ensure!(
            e.train.iter().any(|t| &t.name == s) || e.adapt.iter().any(|t| &t.name == s),
            "{}: no study named `{s}`",
            a.file.display()
        );
    }
    let stem = a
        .file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "experiment".into());
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(&stem));
    if a.dry_run {
        let all = cells(&e, &out, &a.studies);
        let mut done = 0;
        for (i, cell) in all.iter().enumerate() {
            let finished = cell.finished(&cell.job.config_json()?).is_some();
            done += usize::from(finished);
            if !global.json {
                println!(
                    "{}{}",
                    cell.tag(i, all.len()),
                    if finished { " (done)" } else { "" }
                );
            }
        }
        return Ok(Outcome {
            schema_version: JSON_SCHEMA_VERSION,
            out,
            cells: all.len(),
            ran: 0,
            seconds: 0.0,
            summary: Vec::new(),
        })
        .inspect(|_| {
            if !global.json {
                println!("{} cells, {done} done; nothing run (--dry-run)", all.len());
            }
        });
    }
    tl_core::io::create_dir_all(&out)?;
    tl_core::io::atomic_write(&out.join("experiment.toml"), &std::fs::read(&a.file)?)?;
    let all = cells(&e, &out, &a.studies);
    let say = |s: String| {
        if !global.quiet && !global.json {
            eprintln!("{s}");
        }
    };
    // Each cell's own run is quiet: the experiment prints one line per cell.
    let inner = Global {
        json: false,
        quiet: true,
        home: Some(home.clone()),
    };
    let mut records: Vec<CellRecord> = Vec::new();
    let started = Instant::now();
    let mut ran = 0usize;
    for (i, cell) in all.iter().enumerate() {
        let config = cell.job.config_json()?;
        let tag = cell.tag(i, all.len());
        if let Some(r) = cell.finished(&config) {
            say(format!(
                "{tag}: done before (accuracy {:.4})",
                r.result.accuracy
            ));
            records.push(r);
            continue;
        }
        let t = Instant::now();
        let result = match &cell.job {
            Job::Train(c) => {
                let (m, _exported) = crate::train::execute(c, &cell.dir, None, &a.run, &inner)
                    .with_context(|| format!("{tag} failed"))?;
                train_result(&m)?
            }
            Job::Adapt(c) => {
                let (m, _) = crate::adapt::execute(c, Some(&cell.dir), None, &a.run, &inner)
                    .with_context(|| format!("{tag} failed"))?;
                adapt_result(&m)?
            }
        };
        ran += 1;
        let r = CellRecord {
            schema_version: JSON_SCHEMA_VERSION,
            study: cell.study.clone(),
            arm: cell.arm.clone(),
            budget: cell.budget,
            seed: cell.seed,
            config,
            result,
            seconds: t.elapsed().as_secs_f64(),
        };
        tl_core::io::write_json(&cell.dir.join("cell.json"), &r)?;
        say(format!(
            "{tag}: accuracy {:.4}, macro-F1 {:.4} ({:.1} s)",
            r.result.accuracy, r.result.macro_f1, r.seconds
        ));
        records.push(r);
        // The report and manifest so far: an interrupted run keeps what it finished.
        write_outputs(&e, &a.file, &out, &records, all.len())?;
    }
    write_outputs(&e, &a.file, &out, &records, all.len())?;
    Ok(Outcome {
        schema_version: JSON_SCHEMA_VERSION,
        out,
        cells: records.len(),
        ran,
        seconds: started.elapsed().as_secs_f64(),
        summary: summary_rows(&records),
    })
}

/// Mean over seeds of one arm at one budget.
#[derive(Debug, Clone, Serialize)]
struct SummaryRow {
    study: String,
    arm: String,
    budget: String,
    seeds: usize,
    accuracy: f64,
    /// Half-width of the 95 % interval over seeds (NaN with one seed).
    accuracy_ci: f64,
    macro_f1: f64,
    macro_f1_ci: f64,
    labels_per_class: f64,
    seconds: f64,
}

fn summary_rows(records: &[CellRecord]) -> Vec<SummaryRow> {
    // Keep the order cells were listed in.
    let mut keys: Vec<(String, String, Option<usize>)> = Vec::new();
    for r in records {
        let k = (r.study.clone(), r.arm.clone(), r.budget);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.into_iter()
        .map(|(study, arm, budget)| {
            let rs: Vec<&CellRecord> = records
                .iter()
                .filter(|r| r.study == study && r.arm == arm && r.budget == budget)
                .collect();
            let col = |f: fn(&CellRecord) -> f64| rs.iter().map(|r| f(r)).collect::<Vec<f64>>();
            let (acc, acc_ci) = mean_ci(&col(|r| r.result.accuracy));
            let (f1, f1_ci) = mean_ci(&col(|r| r.result.macro_f1));
            SummaryRow {
                study,
                arm,
                budget: budget_dir(budget),
                seeds: rs.len(),
                accuracy: acc,
                accuracy_ci: acc_ci,
                macro_f1: f1,
                macro_f1_ci: f1_ci,
                labels_per_class: mean_ci(&col(|r| r.result.labels_per_class)).0,
                seconds: mean_ci(&col(|r| r.seconds)).0,
            }
        })
        .collect()
}

/// The interval `v ± ci`, none when `ci` is not finite (one seed).
fn band(v: f64, ci: f64) -> (Option<f64>, Option<f64>) {
    if ci.is_finite() {
        (Some(v - ci), Some(v + ci))
    } else {
        (None, None)
    }
}

fn pm(v: f64, ci: f64) -> String {
    if ci.is_finite() {
        format!("{:.2} ± {:.2} %", 100.0 * v, 100.0 * ci)
    } else {
        format!("{:.2} %", 100.0 * v)
    }
}

fn write_outputs(
    e: &Experiment,
    file: &Path,
    out: &Path,
    records: &[CellRecord],
    planned: usize,
) -> Result<()> {
    let rows = summary_rows(records);
    let mut sections = Vec::new();
    for s in &e.train {
        let mine: Vec<&SummaryRow> = rows.iter().filter(|r| r.study == s.name).collect();
        if mine.is_empty() {
            continue;
        }
        let mut blocks = vec![Block::Table {
            header: [
                "arm",
                "labels",
                "seeds",
                "labels / class",
                "test accuracy",
                "macro-F1",
                "seconds / run",
            ]
            .map(String::from)
            .to_vec(),
            rows: mine
                .iter()
                .map(|r| {
                    vec![
                        r.arm.clone(),
                        r.budget.clone(),
                        r.seeds.to_string(),
                        format!("{:.1}", r.labels_per_class),
                        pm(r.accuracy, r.accuracy_ci),
                        pm(r.macro_f1, r.macro_f1_ci),
                        format!("{:.1}", r.seconds),
                    ]
                })
                .collect(),
        }];
        let budgets = s.budgets.len() + usize::from(s.all);
        if budgets > 1 {
            let series = s
                .arm
                .iter()
                .map(|a| Series {
                    name: a.label.clone(),
                    points: mine
                        .iter()
                        .filter(|r| r.arm == a.label)
                        .map(|r| Point {
                            x: r.labels_per_class,
                            y: r.accuracy,
                            low: band(r.accuracy, r.accuracy_ci).0,
                            high: band(r.accuracy, r.accuracy_ci).1,
                        })
                        .collect(),
                })
                .collect();
            blocks.push(Block::Curves {
                title: format!("{}: test accuracy against labelled rows per class, training + validation (mean and 95 % interval over seeds)", s.name),
                x_label: "labelled rows per class".into(),
                y_label: "test accuracy".into(),
                log_x: true,
                series,
            });
        } else {
            blocks.push(Block::Bars {
                title: format!(
                    "{}: test accuracy (mean and 95 % interval over seeds)",
                    s.name
                ),
                value_label: "test accuracy".into(),
                bars: mine
                    .iter()
                    .map(|r| Bar {
                        label: r.arm.clone(),
                        value: r.accuracy,
                        low: band(r.accuracy, r.accuracy_ci).0,
                        high: band(r.accuracy, r.accuracy_ci).1,
                    })
                    .collect(),
            });
        }
        // Convergence: validation accuracy per epoch at the largest budget, averaged over
        // seeds, for arms that train by epochs.
        let top = if s.all {
            None
        } else {
            s.budgets.iter().max().copied()
        };
        let conv: Vec<Series> = s
            .arm
            .iter()
            .filter_map(|a| {
                let curves: Vec<&Vec<f64>> = records
                    .iter()
                    .filter(|r| r.study == s.name && r.arm == a.label && r.budget == top)
                    .map(|r| &r.result.val_curve)
                    .filter(|c| !c.is_empty())
                    .collect();
                let len = curves.iter().map(|c| c.len()).min()?;
                Some(Series {
                    name: a.label.clone(),
                    points: (0..len)
                        .map(|i| {
                            let v: Vec<f64> = curves.iter().map(|c| c[i]).collect();
                            let (m, ci) = mean_ci(&v);
                            Point {
                                x: (i + 1) as f64,
                                y: m,
                                low: band(m, ci).0,
                                high: band(m, ci).1,
                            }
                        })
                        .collect(),
                })
            })
            .collect();
        if !conv.is_empty() {
            blocks.push(Block::Curves {
                title: format!(
                    "{}: validation accuracy per epoch ({} labels)",
                    s.name,
                    budget_dir(top)
                ),
                x_label: "epoch".into(),
                y_label: "validation accuracy".into(),
                log_x: false,
                series: conv,
            });
        }
        sections.push(Section {
            title: format!("Study: {}", s.name),
            blocks,
        });
    }
    for s in &e.adapt {
        let mine: Vec<&SummaryRow> = rows.iter().filter(|r| r.study == s.name).collect();
        if mine.is_empty() {
            continue;
        }
        let shift = |arm: &str, budget: &str| {
            let v: Vec<(f64, f64)> = records
                .iter()
                .filter(|r| r.study == s.name && r.arm == arm && budget_dir(r.budget) == budget)
                .filter_map(|r| r.result.shift)
                .collect();
            let n = v.len().max(1) as f64;
            (
                v.iter().map(|x| x.0).sum::<f64>() / n,
                v.iter().map(|x| x.1).sum::<f64>() / n,
            )
        };
        sections.push(Section {
            title: format!("Study: {} ({} → {})", s.name, s.config.source, s.config.target),
            blocks: vec![
                Block::Text {
                    text: "Every method is chosen and trained without target labels; the target's labels are read only to score. Proxy A-distance: 2 for separable domains, 0 for indistinguishable ones.".into(),
                },
                Block::Table {
                    header: ["method", "source labels", "seeds", "target accuracy", "target macro-F1", "proxy A-distance before → after", "seconds / run"]
                        .map(String::from)
                        .to_vec(),
                    rows: mine
                        .iter()
                        .map(|r| {
                            let (b, a) = shift(&r.arm, &r.budget);
                            vec![
                                r.arm.clone(),
                                r.budget.clone(),
                                r.seeds.to_string(),
                                pm(r.accuracy, r.accuracy_ci),
                                pm(r.macro_f1, r.macro_f1_ci),
                                format!("{b:.3} → {a:.3}"),
                                format!("{:.1}", r.seconds),
                            ]
                        })
                        .collect(),
                },
                Block::Bars {
                    title: format!("{}: target accuracy by method (mean and 95 % interval over seeds)", s.name),
                    value_label: "target accuracy".into(),
                    bars: mine
                        .iter()
                        .map(|r| Bar {
                            label: if s.budgets.len() > 1 {
                                format!("{} ({})", r.arm, r.budget)
                            } else {
                                r.arm.clone()
                            },
                            value: r.accuracy,
                            low: band(r.accuracy, r.accuracy_ci).0,
 high: band(r.accuracy, r.accuracy_ci).1,
                        })
                        .collect(),
                },
            ],
        });
    }
    let mut facts = vec![
        ("experiment".to_string(), file.display().to_string()),
        (
            "cells".into(),
            format!("{} of {planned} finished", records.len()),
        ),
        ("threads".into(), rayon::current_num_threads().to_string()),
    ];
    if let Some(d) = &e.description {
        facts.insert(0, ("description".into(), d.clone()));
    }
    crate::report::write(out, e.title.clone(), facts, sections)?;
    let manifest = serde_json::json!({
        "schema_version": JSON_SCHEMA_VERSION,
        "tl_version": env!("CARGO_PKG_VERSION"),
        "git_revision": option_env!("TL_GIT_REVISION"),
        "command": std::env::args().collect::<Vec<_>>(),
        "experiment_sha256": tl_core::hash::sha256_file(&out.join("experiment.toml"))?,
        "threads": rayon::current_num_threads(),
        "planned": planned,
        "cells": records.iter().map(|r| serde_json::json!({
            "study": r.study, "arm": r.arm, "budget": r.budget, "seed": r.seed, "seconds": r.seconds,
            "dir": cell_path(out, &r.study, &r.arm, r.budget, r.seed),
        })).collect::<Vec<_>>(),
        "summary": rows,
    });
    tl_core::io::write_json(&out.join("manifest.json"), &manifest)?;
    Ok(())
}
