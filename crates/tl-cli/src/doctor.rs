//! `tl doctor`: what is installed and what is missing.

use anyhow::Result;
use tl_pipeline::doctor::{Doctor, doctor};

use crate::Global;

pub fn run(global: &Global) -> Result<()> {
    let report = doctor(&global.home()?)?;
    if global.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    print_runtime(&report);
    print_cuda(&report);
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(", ")
        }
    };
    println!("fetched            {}", list(&report.fetched));
    println!("not fetched        {}", list(&report.not_fetched));
    Ok(())
}

fn yes_no(o: &Option<String>) -> String {
    o.clone().unwrap_or_else(|| "not found".into())
}

fn print_runtime(report: &Doctor) {
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
}

fn print_cuda(report: &Doctor) {
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
}
