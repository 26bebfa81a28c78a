//! The experiment runner: sweeps of train, adapt and rank runs described in one file (the
//! same config schema as `config.json`), run in one go, resumable cell by cell, with one
//! comparison report; [`outputs`] reads every cell's typed results back.

mod report;

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use serde::{Deserialize, Serialize};
use tl_eval::mean_ci;

use crate::{
    Env, Error, Result,
    artifact::{AdaptMetrics, Metrics},
    config::{AdaptRunConfig, EXPERIMENT_SCHEMA_VERSION, Experiment, RankConfig, RunConfig},
    source::RawInput,
};

/// Schema version of `cell.json`, the experiment's `manifest.json` and its outcome.
pub const OUTCOME_SCHEMA_VERSION: u32 = 1;

/// Reads and checks an experiment file: syntax, keys, names, models and data, before any
/// work. Every error names the file.
pub fn load(path: &Path) -> Result<Experiment> {
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
    if e.train.is_empty() && e.adapt.is_empty() && e.rank.is_empty() {
        return Err(bad("no [[train]], [[adapt]] or [[rank]] study".into()));
    }
    let registry = tl_hub::Registry::builtin()?;
    let mut names = std::collections::BTreeSet::new();
    let studies = e
        .train
        .iter()
        .map(|s| (&s.name, s.budgets.clone()))
        .chain(e.adapt.iter().map(|s| (&s.name, s.budgets.clone())))
        .chain(
            e.rank
                .iter()
                .map(|s| (&s.name, s.config.budget.into_iter().collect())),
        );
    for (name, budgets) in studies {
        check_study(name, &budgets, &mut names).map_err(bad)?;
    }
    for s in &e.train {
        check_train_study(s, registry).map_err(|why| bad(format!("study `{}`{why}", s.name)))?;
    }
    for s in &e.adapt {
        check_adapt_study(s, registry).map_err(|why| bad(format!("study `{}`{why}", s.name)))?;
    }
    for s in &e.rank {
        check_rank_study(s, registry).map_err(|why| bad(format!("study `{}`{why}", s.name)))?;
    }
    let mut seeds = std::iter::once(&e.seeds)
        .chain(e.train.iter().filter_map(|s| s.seeds.as_ref()))
        .chain(e.adapt.iter().filter_map(|s| s.seeds.as_ref()))
        .chain(e.rank.iter().filter_map(|s| s.seeds.as_ref()));
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
        tl_hub::check_dataset(&a.config.data)
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
) -> std::result::Result<(), String> {
    if s.methods.is_empty() {
        return Err(" lists no methods".into());
    }
    if !known_model(&s.config.model, registry) {
        return Err(format!(": unknown model `{}`", s.config.model));
    }
    for d in [&s.config.source, &s.config.target] {
        tl_hub::check_dataset(d).map_err(|err| format!(": {err}"))?;
    }
    s.config.train.check().map_err(|err| format!(": {err}"))
}

/// A rank study's dataset and candidates (the error continues `study NAME`).
fn check_rank_study(
    s: &crate::config::RankStudy,
    registry: &tl_hub::Registry,
) -> std::result::Result<(), String> {
    if s.config.models.is_empty() {
        return Err(" lists no candidate models".into());
    }
    if let Some(m) = s.config.models.iter().find(|m| {
        let model = m.split_once(':').map_or(m.as_str(), |(model, _)| model);
        !known_model(model, registry)
    }) {
        return Err(format!(": unknown model in candidate `{m}`"));
    }
    tl_hub::check_dataset(&s.config.data).map_err(|err| format!(": {err}"))
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

/// Where a cell sits in its experiment: one value for the runner's cells, `cell.json`,
/// the plan and the outputs read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellId {
    pub study: String,
    pub arm: String,
    /// Labels per class (none: all).
    pub budget: Option<usize>,
    /// Labelled target rows per class of a semi-supervised sweep (none: not swept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_labels: Option<usize>,
    pub seed: u64,
}

/// What `cell.json` records: the config a cell ran with and what it measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CellRecord {
    schema_version: u32,
    #[serde(flatten)]
    id: CellId,
    config: serde_json::Value,
    result: CellResult,
    seconds: f64,
}

/// The figures the comparison report reads from a cell.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum CellResult {
    Scores(Scores),
    Ranking(RankResult),
}

/// A trained head's (or an adapted target's) test scores.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Scores {
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

/// A ranking's candidates and rank correlations.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RankResult {
    candidates: Vec<crate::rank::Candidate>,
    kendall_tau_with_probe_accuracy: crate::rank::Taus,
}

impl CellResult {
    fn scores(&self) -> Option<&Scores> {
        match self {
            CellResult::Scores(s) => Some(s),
            CellResult::Ranking(_) => None,
        }
    }

    /// The cell's line in the progress output.
    fn line(&self) -> String {
        match self {
            CellResult::Scores(s) => {
                format!("accuracy {:.4}, macro-F1 {:.4}", s.accuracy, s.macro_f1)
            }
            CellResult::Ranking(r) => {
                let t = &r.kendall_tau_with_probe_accuracy;
                let show = |v: Option<f64>| v.map_or("–".into(), |x| format!("{x:+.2}"));
                format!(
                    "Kendall's τ LogME {}, H-score {}",
                    show(t.logme),
                    show(t.h_score)
                )
            }
        }
    }
}

struct Cell {
    id: CellId,
    dir: PathBuf,
    job: Job,
}

enum Job {
    Train(Box<RunConfig>),
    Adapt(Box<AdaptRunConfig>),
    Rank(Box<RankConfig>),
}

impl Job {
    fn config_json(&self) -> Result<serde_json::Value> {
        Ok(match self {
            Job::Train(c) => serde_json::to_value(c)?,
            Job::Adapt(c) => serde_json::to_value(c)?,
            Job::Rank(c) => serde_json::to_value(c)?,
        })
    }
}

fn budget_dir(b: Option<usize>) -> String {
    b.map_or("all".into(), |k| format!("{k}-per-class"))
}

/// Where a cell runs: `OUT/<study>/<arm slug>/<budget>/[target-<k>/]seed-<s>/` (an
/// adaptation method's name is its own slug; `target-<k>` only in semi-supervised sweeps).
fn cell_path(out: &Path, id: &CellId) -> PathBuf {
    let mut p = out
        .join(&id.study)
        .join(slug(&id.arm))
        .join(budget_dir(id.budget));
    if let Some(k) = id.target_labels {
        p.push(format!("target-{k}"));
    }
    p.join(format!("seed-{}", id.seed))
}

impl Cell {
    /// `[i/n] study / arm / budget / [target k /] seed s`, the cell's progress line.
    fn tag(&self, i: usize, n: usize) -> String {
        let id = &self.id;
        let target = id
            .target_labels
            .map_or(String::new(), |k| format!(" / {k} target labels"));
        format!(
            "[{}/{n}] {} / {} / {}{target} / seed {}",
            i + 1,
            id.study,
            id.arm,
            budget_dir(id.budget),
            id.seed
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
    let wanted = |n: &str| only.is_empty() || only.iter().any(|o| o == n);
    let mut v = Vec::new();
    for s in e.train.iter().filter(|s| wanted(&s.name)) {
        v.extend(train_cells(s, s.seeds.as_ref().unwrap_or(&e.seeds), out));
    }
    for s in e.adapt.iter().filter(|s| wanted(&s.name)) {
        v.extend(adapt_cells(s, s.seeds.as_ref().unwrap_or(&e.seeds), out));
    }
    for s in e.rank.iter().filter(|s| wanted(&s.name)) {
        for &seed in s.seeds.as_ref().unwrap_or(&e.seeds) {
            let c = RankConfig {
                seed,
                ..s.config.clone()
            };
            let id = CellId {
                study: s.name.clone(),
                arm: RANK_ARM.into(),
                budget: c.budget,
                target_labels: None,
                seed,
            };
            v.push(Cell {
                dir: cell_path(out, &id),
                id,
                job: Job::Rank(Box::new(c)),
            });
        }
    }
    v
}

/// The arm name of a rank study's cells.
const RANK_ARM: &str = "ranking";

/// The file a rank cell writes its ranking to.
pub const RANKING_FILE: &str = "ranking.json";

fn train_cells(s: &crate::config::TrainStudy, seeds: &[u64], out: &Path) -> Vec<Cell> {
    let budgets: Vec<Option<usize>> = s
        .budgets
        .iter()
        .map(|&b| Some(b))
        .chain(s.all.then_some(None))
        .collect();
    let mut v = Vec::new();
    for a in &s.arm {
        for &b in &budgets {
            for &seed in seeds {
                let mut c = a.config.clone();
                c.split.budget = b;
                c.split.seed = seed;
                c.train.seed = seed;
                let id = CellId {
                    study: s.name.clone(),
                    arm: a.label.clone(),
                    budget: b,
                    target_labels: None,
                    seed,
                };
                v.push(Cell {
                    dir: cell_path(out, &id),
                    id,
                    job: Job::Train(Box::new(c)),
                });
            }
        }
    }
    v
}

fn adapt_cells(s: &crate::config::AdaptStudy, seeds: &[u64], out: &Path) -> Vec<Cell> {
    let budgets: Vec<Option<usize>> = if s.budgets.is_empty() {
        vec![s.config.budget]
    } else {
        s.budgets.iter().map(|&b| Some(b)).collect()
    };
    // Each swept count is its own axis (0 included); without a sweep, the config's.
    let targets: Vec<Option<usize>> = if s.target_labels.is_empty() {
        vec![None]
    } else {
        s.target_labels.iter().map(|&k| Some(k)).collect()
    };
    let mut v = Vec::new();
    for m in &s.methods {
        for &b in &budgets {
            for &t in &targets {
                for &seed in seeds {
                    let mut c = s.config.clone();
                    c.adapt.method = *m;
                    c.budget = b;
                    if let Some(k) = t {
                        c.target_labels = (k > 0).then_some(k);
                    }
                    c.split_seed = seed;
                    c.train.seed = seed;
                    let id = CellId {
                        study: s.name.clone(),
                        arm: m.to_string(),
                        budget: b,
                        target_labels: t,
                        seed,
                    };
                    v.push(Cell {
                        dir: cell_path(out, &id),
                        id,
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
    Ok(CellResult::Scores(Scores {
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
    }))
}

fn adapt_result(m: &AdaptMetrics) -> Result<CellResult> {
    let e = m.target_scores.as_ref().ok_or_else(|| {
        Error::dataset(
            &m.target,
            "the target has no labels: an adapt study needs them to compare methods",
        )
    })?;
    Ok(CellResult::Scores(Scores {
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
    }))
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
    #[serde(flatten)]
    pub id: CellId,
    pub dir: PathBuf,
    /// Whether an earlier run finished this cell with the same config.
    pub done: bool,
    /// The config the cell runs with (a `tl train`, `tl adapt` or `tl rank` config).
    pub config: serde_json::Value,
}

/// The cells an experiment run would run, checked before any work.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub out: PathBuf,
    pub cells: Vec<PlannedCell>,
}

impl ExperimentRun {
    /// The experiment file, checked, and the output directory.
    fn open(&self) -> Result<(Experiment, PathBuf)> {
        let e = load(&self.file)?;
        if let Some(s) = self.studies.iter().find(|s| !e.has_study(s)) {
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
pub fn plan(r: &ExperimentRun) -> Result<Plan> {
    let (e, out) = r.open()?;
    let all = cells(&e, &out, &r.studies);
    let cells = all
        .iter()
        .enumerate()
        .map(|(i, cell)| {
            let config = cell.job.config_json()?;
            Ok(PlannedCell {
                tag: cell.tag(i, all.len()),
                id: cell.id.clone(),
                dir: cell.dir.clone(),
                done: cell.finished(&config).is_some(),
                config,
            })
        })
        .collect::<Result<_>>()?;
    Ok(Plan { out, cells })
}

/// Runs (or resumes) every cell of the experiment and writes its report; each cell is an
/// ordinary train, adapt or rank run in its own directory.
pub fn run(exp: &ExperimentRun, env: &Env) -> Result<Outcome> {
    let (e, out) = exp.open()?;
    tl_core::io::create_dir_all(&out)?;
    let toml =
        std::fs::read(&exp.file).map_err(|e| tl_core::Error::io("cannot read", &exp.file, e))?;
    tl_core::io::atomic_write(&out.join("experiment.toml"), &toml)?;
    let all = cells(&e, &out, &exp.studies);
    provide(&all, env)?;
    // Each cell's own run is quiet: the experiment tells one line per cell.
    let inner = env.observed(std::sync::Arc::new(tl_core::progress::Silent));
    let mut records: Vec<CellRecord> = Vec::new();
    let started = Instant::now();
    let mut ran = 0usize;
    for (i, cell) in all.iter().enumerate() {
        let config = cell.job.config_json()?;
        let tag = cell.tag(i, all.len());
        if let Some(r) = cell.finished(&config) {
            env.note(format!("{tag}: done before ({})", r.result.line()));
            records.push(r);
            continue;
        }
        let t = Instant::now();
        let result = run_cell(cell, &inner).map_err(|e| e.in_step(format!("{tag} failed")))?;
        ran += 1;
        let r = CellRecord {
            schema_version: OUTCOME_SCHEMA_VERSION,
            id: cell.id.clone(),
            config,
            result,
            seconds: t.elapsed().as_secs_f64(),
        };
        tl_core::io::write_json(&cell.dir.join("cell.json"), &r)?;
        env.note(format!("{tag}: {} ({:.1} s)", r.result.line(), r.seconds));
        records.push(r);
        // The report and manifest so far: an interrupted run keeps what it finished.
        report::write_outputs(&e, &exp.file, &out, &records, all.len(), env)?;
    }
    report::write_outputs(&e, &exp.file, &out, &records, all.len(), env)?;
    Ok(Outcome {
        schema_version: OUTCOME_SCHEMA_VERSION,
        out,
        cells: records.len(),
        ran,
        seconds: started.elapsed().as_secs_f64(),
        summary: summary_rows(&records),
    })
}

/// Fetches, before any cell runs, the registry models and datasets the cells need (and
/// ONNX Runtime when a model needs it), or fails offline naming every one missing.
fn provide(cells: &[Cell], env: &Env) -> Result<()> {
    let mut specs: Vec<String> = Vec::new();
    for c in cells {
        match &c.job {
            Job::Train(r) => specs.extend([r.model.clone(), r.data.clone()]),
            Job::Adapt(a) => specs.extend([a.model.clone(), a.source.clone(), a.target.clone()]),
            Job::Rank(r) => {
                specs.push(r.data.clone());
                specs.extend(
                    r.models
                        .iter()
                        .map(|m| m.split_once(':').map_or(m.as_str(), |(m, _)| m).to_string()),
                );
            }
        }
    }
    if specs.iter().any(|s| RawInput::of_model(s).is_none()) && env.needs_cpu_runtime() {
        specs.push(tl_runtime::CPU_RUNTIME_ID.into());
    }
    specs.sort();
    specs.dedup();
    env.provide(&specs.iter().map(String::as_str).collect::<Vec<_>>())
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
        Job::Rank(c) => {
            let r = crate::rank::rank(c, env)?;
            tl_core::io::create_dir_all(&cell.dir)?;
            tl_core::io::write_json(&cell.dir.join(RANKING_FILE), &r)?;
            Ok(CellResult::Ranking(RankResult {
                candidates: r.candidates,
                kendall_tau_with_probe_accuracy: r.kendall_tau_with_probe_accuracy,
            }))
        }
    }
}

/// A finished cell and the typed output its run wrote: what benchmark reports read.
#[derive(Debug)]
pub struct CellOutput {
    pub id: CellId,
    pub dir: PathBuf,
    pub output: RunOutput,
}

/// A cell's run output, read back from its directory.
#[derive(Debug)]
pub enum RunOutput {
    Train(Box<Metrics>),
    Adapt(Box<AdaptMetrics>),
    Rank(Box<crate::rank::Ranking>),
}

/// The outputs of every cell of an experiment, in plan order; fails on the first cell
/// not finished with its current config (naming it), so a report never mixes runs.
pub fn outputs(r: &ExperimentRun) -> Result<Vec<CellOutput>> {
    let (e, out) = r.open()?;
    let all = cells(&e, &out, &r.studies);
    let n = all.len();
    all.into_iter()
        .enumerate()
        .map(|(i, cell)| {
            if cell.finished(&cell.job.config_json()?).is_none() {
                return Err(Error::file(
                    &cell.dir,
                    format!(
                        "cell {} has not finished with the experiment's config: run `tl run {}`",
                        cell.tag(i, n),
                        r.file.display()
                    ),
                ));
            }
            let read = |name: &str| cell.dir.join(name);
            let output = match cell.job {
                Job::Train(_) => RunOutput::Train(tl_core::io::read_json(&read(
                    crate::artifact::files::METRICS,
                ))?),
                Job::Adapt(_) => RunOutput::Adapt(tl_core::io::read_json(&read(
                    crate::artifact::files::METRICS,
                ))?),
                Job::Rank(_) => RunOutput::Rank(tl_core::io::read_json(&read(RANKING_FILE))?),
            };
            Ok(CellOutput {
                id: cell.id,
                dir: cell.dir,
                output,
            })
        })
        .collect()
}

/// Mean over seeds of one arm at one budget.
#[derive(Debug, Clone, Serialize)]
pub struct SummaryRow {
    pub study: String,
    pub arm: String,
    pub budget: String,
    /// Labelled target rows per class of a semi-supervised sweep.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_labels: Option<usize>,
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
    type Key = (String, String, Option<usize>, Option<usize>);
    let key = |r: &CellRecord| -> Key {
        (
            r.id.study.clone(),
            r.id.arm.clone(),
            r.id.budget,
            r.id.target_labels,
        )
    };
    // Keep the order cells were listed in; rankings have no scores to summarise.
    let mut keys: Vec<Key> = Vec::new();
    for r in records.iter().filter(|r| r.result.scores().is_some()) {
        if !keys.contains(&key(r)) {
            keys.push(key(r));
        }
    }
    keys.into_iter()
        .map(|k| {
            let rs: Vec<(&CellRecord, &Scores)> = records
                .iter()
                .filter(|r| key(r) == k)
                .filter_map(|r| Some((r, r.result.scores()?)))
                .collect();
            let col = |f: fn(&Scores) -> f64| rs.iter().map(|r| f(r.1)).collect::<Vec<f64>>();
            let (acc, acc_ci) = mean_ci(&col(|s| s.accuracy));
            let (f1, f1_ci) = mean_ci(&col(|s| s.macro_f1));
            let seconds: Vec<f64> = rs.iter().map(|r| r.0.seconds).collect();
            let (study, arm, budget, target_labels) = k;
            SummaryRow {
                study,
                arm,
                budget: budget_dir(budget),
                target_labels,
                seeds: rs.len(),
                accuracy: acc,
                accuracy_ci: acc_ci,
                macro_f1: f1,
                macro_f1_ci: f1_ci,
                labels_per_class: mean_ci(&col(|s| s.labels_per_class)).0,
                seconds: mean_ci(&seconds).0,
            }
        })
        .collect()
}
