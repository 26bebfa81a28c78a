//! `tl doctor`: what is installed and what is missing.

use anyhow::Result;
use serde::Serialize;
use tl_hub::{Fetcher, Registry};
use tl_runtime::{CPU_RUNTIME_ID, Runtime, RuntimeOptions, cuda_support, locate_library};

use crate::{Global, JSON_SCHEMA_VERSION};

#[derive(Debug, Serialize)]
struct Doctor {
    schema_version: u32,
    tl_version: &'static str,
    tl_home: String,
    tl_home_bytes: u64,
    library: Option<String>,
    library_error: Option<String>,
    onnxruntime_version: Option<String>,
    providers: Vec<&'static str>,
    cuda: Cuda,
    fetched: Vec<String>,
    not_fetched: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Cuda {
    feature: bool,
    runtime: Option<String>,
    provider_library: Option<String>,
    /// Every library the provider links or opens, and where it was found.
    libraries: Vec<tl_runtime::LibraryCheck>,
    driver: Option<String>,
    device: Option<String>,
    /// The GPUs the driver reports, or why it cannot say.
    gpus: Option<Result<Vec<tl_runtime::GpuInfo>, String>>,
    ready: bool,
    blocker: Option<String>,
}

pub fn run(global: &Global) -> Result<()> {
    let home = global.home()?;
    let registry = Registry::builtin()?;
    let (library, library_error) = match locate_library(&home, CPU_RUNTIME_ID) {
        Ok(p) => (Some(p), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let (version, providers) = if library.is_some() {
        match Runtime::init(&RuntimeOptions::default().with_home(home.clone())) {
            Ok(rt) => (Some(rt.version().to_string()), rt.available_providers()),
            Err(e) => (Some(format!("failed to load: {e}")), vec![]),
        }
    } else {
        (None, vec![])
    };
    let cuda = cuda_support(&home);
    let blocker = cuda.blocker();
    let show = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string());
    let (fetched, not_fetched): (Vec<_>, Vec<_>) = registry
        .entries
        .iter()
        .partition(|e| Fetcher::is_present(&home, e));
    let report = Doctor {
        schema_version: JSON_SCHEMA_VERSION,
        tl_version: tl_core::TL_VERSION,
        tl_home: home.display().to_string(),
        tl_home_bytes: tl_core::home::dir_size(&home),
        library: show(&library),
        library_error,
        onnxruntime_version: version,
        providers,
        cuda: Cuda {
            feature: cuda.feature,
            runtime: show(&cuda.runtime),
            provider_library: show(&cuda.provider_library),
            libraries: cuda.libraries.clone(),
            driver: show(&cuda.driver),
            device: show(&cuda.device_node),
            gpus: cuda.gpus.clone(),
            ready: blocker.is_none(),
            blocker,
        },
        fetched: fetched.iter().map(|e| e.id.clone()).collect(),
        not_fetched: not_fetched.iter().map(|e| e.id.clone()).collect(),
    };
    if global.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let yes_no = |o: &Option<String>| o.clone().unwrap_or_else(|| "not found".into());
    println!("tl {}", report.tl_version);
    println!(
        "TL_HOME            {} ({:.1} MB)",
        report.tl_home,
        report.tl_home_bytes as f64 / 1e6
    );
    match (&report.library, &report.library_error) {
        (Some(p), _) => println!("ONNX Runtime       {p}"),
        (None, Some(e)) => println!("ONNX Runtime       MISSING: {e}"),
        (None, None) => println!("ONNX Runtime       MISSING"),
    }
    println!("  version          {}", yes_no(&report.onnxruntime_version));
    println!(
        "  providers        {}",
        if report.providers.is_empty() {
            "-".to_string()
        } else {
            report.providers.join(", ")
        }
    );
    println!(
        "CUDA               {}",
        if report.cuda.ready {
            "ready".to_string()
        } else {
            format!(
                "not available: {}",
                report.cuda.blocker.clone().unwrap_or_default()
            )
        }
    );
    println!(
        "  cuda feature     {}",
        if report.cuda.feature { "on" } else { "off" }
    );
    println!("  CUDA runtime     {}", yes_no(&report.cuda.runtime));
    println!(
        "  CUDA provider    {}",
        yes_no(&report.cuda.provider_library)
    );
    if !report.cuda.libraries.is_empty() || report.cuda.runtime.is_some() {
        let found = report
            .cuda
            .libraries
            .iter()
            .filter(|l| l.found.is_some())
            .count();
        println!(
            "  CUDA libraries   {found} of {} found",
            report.cuda.libraries.len()
        );
        // System libraries the provider links are listed only when missing.
        for l in report
            .cuda
            .libraries
            .iter()
            .filter(|l| l.found.is_none() || l.what != tl_runtime::LINKED_BY_PROVIDER)
        {
            let state = match (&l.found, l.required) {
                (Some(p), _) => p.display().to_string(),
                (None, true) => "MISSING".into(),
                (None, false) => "not found (optional)".into(),
            };
            println!("    {:34} {:36} {state}", l.soname, l.what);
        }
    }
    println!("  NVIDIA driver    {}", yes_no(&report.cuda.driver));
    println!("  GPU device       {}", yes_no(&report.cuda.device));
    match &report.cuda.gpus {
        Some(Ok(gpus)) => {
            for g in gpus {
                println!(
                    "  GPU {}            {} ({:.1} GiB, {} SMs, compute capability {}.{})",
                    g.index,
                    g.name,
                    g.memory_bytes as f64 / (1u64 << 30) as f64,
                    g.multiprocessors,
                    g.compute_capability.0,
                    g.compute_capability.1
                );
            }
        }
        Some(Err(e)) => println!("  GPUs             the driver cannot list them: {e}"),
        None => {}
    }
    println!(
        "fetched            {}",
        if report.fetched.is_empty() {
            "-".to_string()
        } else {
            report.fetched.join(", ")
        }
    );
    println!(
        "not fetched        {}",
        if report.not_fetched.is_empty() {
            "-".to_string()
        } else {
            report.not_fetched.join(", ")
        }
    );
    Ok(())
}
