//! The experiment runner: sweeps of train and adapt runs described in one file (the
//! same config schema as `config.json`), run in one go, resumable cell by cell, with one
//! comparison report.

use std::{
    path::{Path, PathBuf},
    time::Instant,
};
use tl_core::Named;

use serde::{Deserialize, Serialize};
use tl_eval::{Bar, Block, Point, Section, Series, mean_ci};

use crate::{
    Env, Error, Result,
    artifact::{AdaptMetrics, Metrics},
    config::{AdaptRunConfig, EXPERIMENT_SCHEMA_VERSION, Experiment, RunConfig},
    source::RawInput,
};

/// Schema version of `cell.json`, the experiment's `manifest.json` and its outcome.
pub const OUTCOME_SCHEMA_VERSION: u32 = 1;

/// Reads and checks an experiment file: syntax, keys, names, models and data, before any
/// work. Every error names the file.
pub fn load(path: &Path, home: &Path) -> Result<Experiment> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| tl_core::Error::io("cannot read experiment file", path, e))?;
    let e: Experiment = toml::from_str(&text).map_err(|source| Error::Toml {
        path: path.to_path_buf(),
        what: "experiment file",
        source: Box::new(source),
    })?;
    let bad = |what: String| Error::file(path, what);
    if e.schema_version != EXPERIMENT_SCHEMA_VERSION {
        return Err(Error::SchemaVersion {
            path: path.to_path_buf(),
            found: e.schema_version,
            supported: EXPERIMENT_SCHEMA_VERSION,
        });
    }
    if e.train.is_empty() && e.adapt.is_empty() {
        return Err(bad("no [[train]] or [[adapt]] study".into()));
    }
    let registry = tl_hub::Registry::builtin()?;
    let mut names = std::collections::BTreeSet::new();
    for (name, budgets) in e
        .train
        .iter()
        .map(|s| (&s.name, &s.budgets))
        .chain(e.adapt.iter().map(|s| (&s.name, &s.budgets)))
    {
        check_study(name, budgets, &mut names).map_err(bad)?;
    }
    for s in &e.train {
        check_train_study(s, &registry, home)
            .map_err(|why| bad(format!("study `{}`{why}", s.name)))?;
    }
    for s in &e.adapt {
        check_adapt_study(s, &registry, home)
            .map_err(|why| bad(format!("study `{}`{why}", s.name)))?;
    }
    let mut seeds = std::iter::once(&e.seeds)
        .chain(e.train.iter().filter_map(|s| s.seeds.as_ref()))
        .chain(e.adapt.iter().filter_map(|s| s.seeds.as_ref()));
    if seeds.any(Vec::is_empty) {
        return Err(bad("an empty list of seeds".into()));
    }
    Ok(e)
}

/// The checks every study gets: a unique, directory-safe name and budgets ≥ 1.
fn check_study(
    name: &str,
    budgets: &[usize],
    names: &mut std::collections::BTreeSet<String>,
) -> std::result::Result<(), String> {
    if !names.insert(name.to_string()) {
        return Err(format!("study name `{name}` is used twice"));
    }
    if slug(name) != name {
        return Err(format!(
            "study name `{name}`: use letters, digits, `-` and `_`"
        ));
    }
    if budgets.contains(&0) {
        return Err(format!(
            "study `{name}`: a budget must be at least 1 label per class"
        ));
    }
    Ok(())
}

/// Whether `m` names a model: a registry id, a raw input, or a file.
fn known_model(m: &str, registry: &tl_hub::Registry) -> bool {
    RawInput::of_model(m).is_some() || registry.get(m).is_ok() || Path::new(m).is_file()
}

/// A train study's arms (the error continues `study NAME`).
fn check_train_study(
    s: &crate::config::TrainStudy,
    registry: &tl_hub::Registry,
    home: &Path,
) -> std::result::Result<(), String> {
    if s.arm.is_empty() {
        return Err(" has no [[train.arm]]".into());
    }
    if s.budgets.is_empty() && !s.all {
        return Err(": no budgets and all = false".into());
    }
    let mut labels = std::collections::BTreeSet::new();
    for a in &s.arm {
        if !labels.insert(slug(&a.label)) {
            return Err(format!(": two arms named like `{}`", a.label));
        }
        if !known_model(&a.config.model, registry) {
            return Err(format!(
                ", arm `{}`: unknown model `{}` (a registry id, pixels, tfidf or an .onnx file)",
                a.label, a.config.model
            ));
        }
        tl_hub::check_dataset(&a.config.data, home)
            .map_err(|err| format!(", arm `{}`: {err}", a.label))?;
        a.config
            .train
            .check()
            .map_err(|err| format!(", arm `{}`: {err}", a.label))?;
    }
    Ok(())
}

/// An adapt study's methods, model and domains (the error continues `study NAME`).
fn check_adapt_study(
    s: &crate::config::AdaptStudy,
    registry: &tl_hub::Registry,
    home: &Path,
) -> std::result::Result<(), String> {
    if s.methods.is_empty() {
        return Err(" lists no methods".into());
    }
    if !known_model(&s.config.model, registry) {
        return Err(format!(": unknown model `{}`", s.config.model));
    }
    for d in [&s.config.source, &s.config.target] {
        tl_hub::check_dataset(d, home).map_err(|err| format!(": {err}"))?;
    }
    s.config.train.check().map_err(|err| format!(": {err}"))
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
    pub macro_f1: f64,
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

fn train_result(m: &Metrics, dir: &Path) -> Result<CellResult> {
    let e = &m
        .evaluation
        .first()
        .ok_or_else(|| Error::file(dir, "the run has no test evaluation"))?
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
    let e = m.target_scores.as_ref().ok_or_else(|| {
        Error::dataset(
            &m.target,
            "the target has no labels: an adapt study needs them to compare methods",
        )
    })?;
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
    pub schema_version: u32,
    pub out: PathBuf,
    pub cells: usize,
    pub ran: usize,
    pub seconds: f64,
    pub summary: Vec<SummaryRow>,
}

/// Which experiment to run, where, and which of its studies.
#[derive(Debug, Clone)]
pub struct ExperimentRun {
    /// The experiment file (TOML).
    pub file: PathBuf,
    /// Output directory (default: `runs/<file stem>`).
    pub out: Option<PathBuf>,
    /// Run only the studies named (empty: all).
    pub studies: Vec<String>,
}

/// One cell of a plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedCell {
    /// `[i/n] study / arm / budget / seed s`.
    pub tag: String,
    pub dir: PathBuf,
    /// Whether an earlier run finished this cell with the same config.
    pub done: bool,
}

/// The cells an experiment run would run, checked before any work.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub out: PathBuf,
    pub cells: Vec<PlannedCell>,
}

impl ExperimentRun {
    /// The experiment file, checked, and the output directory.
    fn open(&self, home: &Path) -> Result<(Experiment, PathBuf)> {
        let e = load(&self.file, home)?;
        if let Some(s) = self.studies.iter().find(|s| {
            !(e.train.iter().any(|t| &t.name == *s) || e.adapt.iter().any(|t| &t.name == *s))
        }) {
            return Err(Error::file(&self.file, format!("no study named `{s}`")));
        }
        let stem = self
            .file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "experiment".into());
        let out = self
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from("runs").join(&stem));
        Ok((e, out))
    }
}

/// The cells of an experiment and which are done; runs and writes nothing.
pub fn plan(r: &ExperimentRun, home: &Path) -> Result<Plan> {
    let (e, out) = r.open(home)?;
    let all = cells(&e, &out, &r.studies);
    let cells = all
        .iter()
        .enumerate()
        .map(|(i, cell)| {
            Ok(PlannedCell {
                tag: cell.tag(i, all.len()),
                dir: cell.dir.clone(),
                done: cell.finished(&cell.job.config_json()?).is_some(),
            })
        })
        .collect::<Result<_>>()?;
    Ok(Plan { out, cells })
}

/// Runs (or resumes) every cell of the experiment and writes its report; each cell is an
/// ordinary train or adapt run in its own directory.
pub fn run(exp: &ExperimentRun, env: &Env) -> Result<Outcome> {
    let (e, out) = exp.open(&env.home)?;
    tl_core::io::create_dir_all(&out)?;
    let toml =
        std::fs::read(&exp.file).map_err(|e| tl_core::Error::io("cannot read", &exp.file, e))?;
    tl_core::io::atomic_write(&out.join("experiment.toml"), &toml)?;
    let all = cells(&e, &out, &exp.studies);
    // Each cell's own run is quiet: the experiment tells one line per cell.
    let inner = env.observed(std::sync::Arc::new(tl_core::progress::Silent));
    let mut records: Vec<CellRecord> = Vec::new();
    let started = Instant::now();
    let mut ran = 0usize;
    for (i, cell) in all.iter().enumerate() {
        let config = cell.job.config_json()?;
        let tag = cell.tag(i, all.len());
        if let Some(r) = cell.finished(&config) {
            env.note(format!(
                "{tag}: done before (accuracy {:.4})",
                r.result.accuracy
            ));
            records.push(r);
            continue;
        }
        let t = Instant::now();
        let result = run_cell(cell, &inner).map_err(|e| e.in_step(format!("{tag} failed")))?;
        ran += 1;
        let r = CellRecord {
            schema_version: OUTCOME_SCHEMA_VERSION,
            study: cell.study.clone(),
            arm: cell.arm.clone(),
            budget: cell.budget,
            seed: cell.seed,
            config,
            result,
            seconds: t.elapsed().as_secs_f64(),
        };
        tl_core::io::write_json(&cell.dir.join("cell.json"), &r)?;
        env.note(format!(
            "{tag}: accuracy {:.4}, macro-F1 {:.4} ({:.1} s)",
            r.result.accuracy, r.result.macro_f1, r.seconds
        ));
        records.push(r);
        // The report and manifest so far: an interrupted run keeps what it finished.
        write_outputs(&e, &exp.file, &out, &records, all.len(), env)?;
    }
    write_outputs(&e, &exp.file, &out, &records, all.len(), env)?;
    Ok(Outcome {
        schema_version: OUTCOME_SCHEMA_VERSION,
        out,
        cells: records.len(),
        ran,
        seconds: started.elapsed().as_secs_f64(),
        summary: summary_rows(&records),
    })
}

/// Runs one cell into its directory and reads its figures.
fn run_cell(cell: &Cell, env: &Env) -> Result<CellResult> {
    match &cell.job {
        Job::Train(c) => {
            let o = crate::train::train(c, &cell.dir, None, env)?;
            train_result(&o.metrics, &cell.dir)
        }
        Job::Adapt(c) => {
            let o = crate::adapt::adapt(c, Some(&cell.dir), None, env)?;
            adapt_result(&o.metrics)
        }
    }
}

/// Mean over seeds of one arm at one budget.
#[derive(Debug, Clone, Serialize)]
pub struct SummaryRow {
    pub study: String,
    pub arm: String,
    pub budget: String,
    pub seeds: usize,
    pub accuracy: f64,
    /// Half-width of the 95 % interval over seeds (NaN with one seed).
    pub accuracy_ci: f64,
    pub macro_f1: f64,
    pub macro_f1_ci: f64,
    pub labels_per_class: f64,
    pub seconds: f64,
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
    env: &Env,
) -> Result<()> {
    let rows = summary_rows(records);
    let mut sections = Vec::new();
    for s in &e.train {
        sections.extend(train_section(s, &rows, records));
    }
    for s in &e.adapt {
        sections.extend(adapt_section(s, &rows, records));
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
        "schema_version": OUTCOME_SCHEMA_VERSION,
        "tl_version": env!("CARGO_PKG_VERSION"),
        "git_revision": option_env!("TL_GIT_REVISION"),
        "command": env.command,
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

/// The summary rows of study `name`, none when it has no finished cell.
fn study_rows<'a>(rows: &'a [SummaryRow], name: &str) -> Option<Vec<&'a SummaryRow>> {
    let mine: Vec<&SummaryRow> = rows.iter().filter(|r| r.study == name).collect();
    (!mine.is_empty()).then_some(mine)
}

/// A train study's table, learning curves (or bars) and convergence curves.
fn train_section(
    s: &crate::config::TrainStudy,
    rows: &[SummaryRow],
    records: &[CellRecord],
) -> Option<Section> {
    let mine = study_rows(rows, &s.name)?;
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
    blocks.extend(convergence_curves(s, records));
    Some(Section {
        title: format!("Study: {}", s.name),
        blocks,
    })
}

/// Convergence: validation accuracy per epoch at the largest budget, averaged over seeds,
/// for arms that train by epochs.
fn convergence_curves(s: &crate::config::TrainStudy, records: &[CellRecord]) -> Option<Block> {
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
    (!conv.is_empty()).then(|| Block::Curves {
        title: format!(
            "{}: validation accuracy per epoch ({} labels)",
            s.name,
            budget_dir(top)
        ),
        x_label: "epoch".into(),
        y_label: "validation accuracy".into(),
        log_x: false,
        series: conv,
    })
}

/// An adapt study's table and bars by method.
fn adapt_section(
    s: &crate::config::AdaptStudy,
    rows: &[SummaryRow],
    records: &[CellRecord],
) -> Option<Section> {
    let mine = study_rows(rows, &s.name)?;
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
    Some(Section {
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
    })
}
