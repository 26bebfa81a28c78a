//! `tl`: transfer learning from pretrained ONNX models, from one binary.
//!
//! This file parses arguments and dispatches; the work lives in the library crates.

#![warn(clippy::too_many_lines)]
// The doc comments of the clap structs are `--help` text, where `<file>` means a
// placeholder, not HTML.
#![allow(rustdoc::invalid_html_tags)]

mod adapt;
mod cache;
mod classify;
mod data;
mod doctor;
mod experiment;
mod extract;
mod flags;
mod gpucheck;
mod models;
mod predict;
mod quickstart;
mod rank;
mod train;

use std::{io::IsTerminal, path::PathBuf, process::ExitCode, sync::Arc};

use clap::{Args, Parser, Subcommand};
use tl_core::Device;
use tl_core::progress::{Meter, Progress, Unit};
use tl_pipeline::{Compute, Env, Observer};

/// Schema version of every `--json` output.
pub const JSON_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Parser)]
#[command(
    name = "tl",
    version,
    about = "Transfer learning from pretrained ONNX models: fetch real weights, inspect them, run them.",
    long_about = "Transfer learning from pretrained ONNX models: fetch real weights reproducibly, \
inspect every layer, tap any node as a feature, and run them on CPU (or CUDA).\n\n\
Everything `tl` fetches lives in TL_HOME (default: $XDG_CACHE_HOME/tl or ~/.cache/tl).",
    after_help = "Examples:\n  tl quickstart\n  tl models fetch efficientnet-lite0\n  tl classify --model efficientnet-lite0 cat.jpg\n  tl models inspect mobilenet-v2\n  tl doctor"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Flags every command takes.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Print machine-readable JSON (versioned schema) instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print nothing but results and errors.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Cache directory for runtimes, models and data (overrides TL_HOME).
    #[arg(long, global = true, env = "TL_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Never fetch: a registry model, dataset or runtime that is not in TL_HOME is an
    /// error naming it (without this flag, a command fetches what it needs on first use).
    #[arg(
        long,
        global = true,
        env = "TL_OFFLINE",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub offline: bool,
}

impl Global {
    /// The `TL_HOME` in force.
    pub fn home(&self) -> anyhow::Result<PathBuf> {
        Ok(match &self.home {
            Some(h) => h.clone(),
            None => tl_core::home::tl_home()?,
        })
    }

    /// What the library reports, printed as `--quiet` and `--json` allow.
    pub fn printer(&self) -> Arc<Printer> {
        Arc::new(Printer {
            show: !self.quiet && !self.json,
        })
    }

    /// The surroundings of a library call: `TL_HOME`, the compute flags, the printer.
    pub fn env(&self, run: Option<&RunArgs>) -> anyhow::Result<Env> {
        let compute = run.map_or_else(Compute::default, RunArgs::compute);
        let fetching = if self.offline {
            tl_pipeline::Fetching::Offline
        } else {
            tl_pipeline::Fetching::OnFirstUse
        };
        Ok(Env::new(self.home()?)
            .observed(self.printer())
            .with_compute(compute)
            .with_fetching(fetching))
    }

    /// Fetch options for `home`: progress as the flags allow (pip's own output goes to
    /// its log under `TL_HOME/logs/`).
    pub fn fetch_options(&self, home: PathBuf) -> tl_hub::FetchOptions {
        let mut opts = tl_hub::FetchOptions::new(home);
        opts.progress = self.printer();
        opts
    }
}

/// Prints the library's notes, progress bars (on a terminal) and epoch lines to stderr,
/// unless `--quiet` or `--json`.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    show: bool,
}

impl Progress for Printer {
    fn note(&self, text: &str) {
        if self.show {
            eprintln!("{text}");
        }
    }

    fn start(&self, what: &str, unit: Unit, total: Option<u64>) -> Box<dyn Meter> {
        if !self.show || !std::io::stderr().is_terminal() {
            return Box::new(tl_core::progress::Silent);
        }
        let bar = match total {
            Some(t) => indicatif::ProgressBar::new(t),
            None => indicatif::ProgressBar::new_spinner(),
        };
        let template = match unit {
            Unit::Rows => "  {msg} [{bar:30}] {pos}/{len} rows {per_sec} eta {eta}",
            Unit::Bytes => "  {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(template)
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(what.to_string());
        Box::new(Bar(bar))
    }
}

/// A terminal progress bar.
struct Bar(indicatif::ProgressBar);

impl Meter for Bar {
    fn advance(&self, n: u64) {
        self.0.inc(n);
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl Observer for Printer {
    /// What `auto` chose is said even with --quiet or --json (on stderr): a run that
    /// asked for CUDA if it can be had must not end up on the CPU unseen.
    fn device(&self, choice: &tl_runtime::AutoChoice) {
        eprintln!("--device {choice}");
    }

    fn epoch(&self, log: &tl_head::train::EpochLog, epochs: usize) {
        if !self.show {
            return;
        }
        let val: Vec<String> = log
            .val
            .iter()
            .map(|s| format!("{} {:.4}", s.task, s.accuracy))
            .collect();
        eprintln!(
            "epoch {:>3}/{epochs}  loss {:.4}  val acc {}  lr {:.2e}  {:.1} s",
            log.epoch + 1,
            log.train_loss,
            if val.is_empty() {
                "-".into()
            } else {
                val.join(", ")
            },
            log.lr,
            log.seconds
        );
    }
}

/// Where and how to run a model.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// `cpu`, `cuda`, `cuda:N` or `auto` (CUDA if usable, else CPU, and say so).
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: Device,
    /// Threads for ONNX Runtime and for training networks in tl-nn (default: one per core).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// `f32`, or `f16`: the model rewritten to compute in half precision (float32 in and out;
    /// for GPUs; quantized models have no f16 form). Features of each precision are cached apart.
    #[arg(long, default_value = "f32", value_parser = parse_precision)]
    pub precision: tl_core::Precision,
}

impl RunArgs {
    /// The library's compute settings.
    pub fn compute(&self) -> Compute {
        Compute {
            device: self.device,
            threads: self.threads,
            precision: self.precision,
        }
    }
}

/// A value of a [`tl_core::Named`] enum, as the library spells it.
pub(crate) fn parse_named<T: tl_core::Named>(s: &str) -> Result<T, String> {
    T::parse_name(s).map_err(|e| e.to_string())
}

pub(crate) fn parse_precision(s: &str) -> Result<tl_core::Precision, String> {
    s.parse().map_err(|e: tl_core::Error| e.to_string())
}

fn parse_device(s: &str) -> Result<Device, String> {
    s.parse().map_err(|e: tl_core::Error| e.to_string())
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List, fetch and inspect models, runtimes and assets of the registry.
    #[command(subcommand)]
    Models(models::ModelsCmd),
    /// List, fetch, describe and split labelled datasets.
    #[command(subcommand)]
    Data(data::DataCmd),
    /// List, verify and clean the feature store (cached features by content).
    #[command(subcommand)]
    Cache(cache::CacheCmd),
    /// Classify images with an ImageNet model (or any classifier with an input contract).
    #[command(
        after_help = "Examples:\n  tl classify --model efficientnet-lite0 photo.jpg other.png\n  \
tl classify --model mobilenet-v2 --top 3 --json photo.jpg\n  \
tl classify --model my.onnx --contract my-contract.toml photo.jpg"
    )]
    Classify(classify::ClassifyArgs),
    /// The main job on built-in defaults: fetch the models and data, classify the sample photos, then run the built-in experiment (learning curves, adaptation) into an HTML report.
    Quickstart(quickstart::QuickstartArgs),
    /// Features of a dataset at any layers of a model, cached by content and resumable.
    #[command(
        after_help = "Examples:\n  tl extract --model efficientnet-lite0 --data mnist-5k --image-size 112\n  \
tl extract --model mobilenet-v2 --data ./photos --layer features.17 --layer features --out feats/"
    )]
    Extract(extract::ExtractArgs),
    /// Train a head (exact linear probe, MLP, several tasks) on a backbone's features, or fine-tune its last block.
    Train(Box<train::TrainArgs>),
    /// Class probabilities from a trained artifact or an exported model.
    Predict(predict::PredictArgs),
    /// Write a trained artifact as one ONNX file (backbone + head, softmax, metadata).
    Export(train::ExportArgs),
    /// Adapt a classifier from a labelled source dataset to an unlabelled target dataset (MMD, CORAL, DANN, ...).
    Adapt(Box<adapt::AdaptArgs>),
    /// Measure the shift between two datasets' features (MMD, proxy A-distance), per layer.
    Shift(adapt::ShiftArgs),
    /// Run an experiment file: sweeps of train and adapt runs (arms × label budgets × seeds, methods), resumable, with one comparison report.
    Run(experiment::RunExperimentArgs),
    /// Rank backbones and layers for a labelled dataset before training (LogME, H-score, NCE, LEEP).
    Rank(rank::RankArgs),
    /// Check a GPU end to end: readiness, features on the GPU against the CPU, throughput at several batch sizes beside the card's roofline.
    #[command(
        after_help = "Examples:\n  tl gpu-check                      # cuda:0 against cpu; fetches the CUDA runtime (2.3 GB) if missing\n  \
tl gpu-check --device cuda:1 --batch-sizes 32,128,256\n  \
tl gpu-check --device cpu --against cpu --batch-sizes 8 --images 32 --sentences 32   # the check's own plumbing, no GPU"
    )]
    GpuCheck(gpucheck::GpuCheckArgs),
    /// Check the installation: ONNX Runtime library, version, providers, CUDA readiness, cache.
    #[command(after_help = "Example:\n  tl doctor --json")]
    Doctor,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Models(cmd) => models::run(cmd, &cli.global),
        Command::Data(cmd) => data::run(cmd, &cli.global),
        Command::Cache(cmd) => cache::run(cmd, &cli.global),
        Command::Classify(args) => classify::run(args, &cli.global),
        Command::Doctor => doctor::run(&cli.global),
        Command::GpuCheck(a) => gpucheck::run(a, &cli.global),
        Command::Extract(a) => extract::run(a, &cli.global),
        Command::Quickstart(a) => quickstart::run(a, &cli.global),
        Command::Train(a) => train::run(a, &cli.global),
        Command::Run(a) => experiment::run(a, &cli.global),
        Command::Predict(a) => predict::run(a, &cli.global),
        Command::Export(a) => train::export_cmd(a, &cli.global),
        Command::Adapt(a) => adapt::run(a, &cli.global),
        Command::Shift(a) => adapt::shift(a, &cli.global),
        Command::Rank(a) => rank::run(a, &cli.global),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", flags::describe(&e));
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
