//! `tl`: transfer learning from pretrained ONNX models, from one binary.
//!
//! This file parses arguments and dispatches; the work lives in the library crates.

mod adapt;
mod classify;
mod data;
mod doctor;
mod experiment;
mod extract;
mod gpucheck;
mod models;
mod predict;
mod quickstart;
mod rank;
mod report;
mod resolve;
mod train;

use std::{path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand};
use tl_core::Device;

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
}

impl Global {
    /// The `TL_HOME` in force.
    pub fn home(&self) -> anyhow::Result<PathBuf> {
        Ok(match &self.home {
            Some(h) => h.clone(),
            None => tl_core::home::tl_home()?,
        })
    }
}

/// Where and how to run a model.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// `cpu`, `cuda`, `cuda:N` or `auto` (CUDA if usable, else CPU, and say so).
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: Device,
    /// Intra-op threads for ONNX Runtime (default: one per physical core).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// `f32`, or `f16`: the model rewritten to compute in half precision (float32 in and out;
    /// for GPUs; quantized models have no f16 form). Features of each precision are cached apart.
    #[arg(long, default_value = "f32", value_parser = parse_precision)]
    pub precision: tl_core::Precision,
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
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
