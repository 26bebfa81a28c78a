//! The `gpu` section of `docs/benchmarks.md`: `tl gpu-check` on this machine's GPU, or,
//! without one, the reason CUDA cannot run here and the same check's CPU baseline.

use std::process::Command;

use anyhow::{Context, Result};

/// Builds `tl` with the `cuda` feature, asks `tl doctor` whether CUDA is ready and runs
/// `tl gpu-check` (against the CPU) if so, else `tl gpu-check --device cpu --against cpu`.
pub fn section(cargo: &str) -> Result<String> {
    crate::run(Command::new(cargo).args([
        "build",
        "--release",
        "-p",
        "tl-cli",
        "--features",
        "cuda",
    ]))?;
    let tl = "target/release/tl";
    let doctor = Command::new(tl).args(["--json", "doctor"]).output()?;
    let doctor: serde_json::Value =
        serde_json::from_slice(&doctor.stdout).context("tl doctor --json")?;
    let ready = doctor["cuda"]["ready"].as_bool().unwrap_or(false);
    let blocker = doctor["cuda"]["blocker"].as_str().unwrap_or("").to_string();
    let mut s = String::from("## GPU (`tl gpu-check`)\n\n");
    let mut runs = Vec::new();
    for precision in ["f32", "f16"] {
        let mut args = vec!["--json", "--quiet", "gpu-check", "--precision", precision];
        if !ready {
            args.extend(["--device", "cpu", "--against", "cpu"]);
        }
        let out = Command::new(tl).args(&args).output()?;
        anyhow::ensure!(
            out.status.success(),
            "tl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        runs.push((
            args.join(" "),
            serde_json::from_slice::<serde_json::Value>(&out.stdout)?,
        ));
    }
    let v = &runs[0].1;
    if ready {
        s.push_str(&format!(
            "GPU: {} against {}; release build with `--features cuda`.\n\n",
            v["gpu"]["name"].as_str().unwrap_or("?"),
            v["reference"].as_str().unwrap_or("cpu")
        ));
    } else {
        s.push_str(&format!(
            "**Not yet run on a GPU.** On this machine `tl doctor` says CUDA is not available: {blocker}. \
             What follows is the same check with the CPU on both sides (release build with `--features cuda`): \
             the baseline a GPU run is compared with, and a test of the check's plumbing (two processes, private \
             feature stores, identical features in f32). Each figure is one run of a few seconds: the \
             CPU-against-CPU \"speed-up\" column in f32 is the run-to-run noise of such runs on this machine. \
             In f16, ONNX Runtime's CPU provider computes the ops it has no half kernel for in float32 (it inserts \
             casts), so the f16 difference below is mostly that of half-precision weights; a GPU computes in half.\n\n"
        ));
    }
    for (command, v) in &runs {
        s.push_str(&format!("### `tl {command}`\n\n"));
        s.push_str(&render(v)?);
    }
    Ok(s)
}

/// The tables of one `tl gpu-check --json` report.
fn render(v: &serde_json::Value) -> Result<String> {
    let mut s = String::new();
    let peak = v["peak_fp32_gflops"].as_f64();
    for m in v["models"].as_array().context("models")? {
        let unit = m["unit"].as_str().unwrap_or("rows");
        s.push_str(&format!(
            "**{}** on {} ({} {unit}{}), end to end (decode or tokenise, run, store):\n\n",
            m["model"].as_str().unwrap_or("?"),
            m["data"].as_str().unwrap_or("?"),
            m["rows"],
            m["multiply_adds"]
                .as_f64()
                .map_or(String::new(), |x| format!(
                    ", {:.2} GFLOP per 224 px image",
                    2.0 * x / 1e9
                ))
        ));
        s.push_str(&format!(
            "| batch | {} f32 {unit}/s | {} {} {unit}/s | speed-up | GFLOP/s{} |\n|---|---|---|---|---|\n",
            v["reference"].as_str().unwrap_or("?"),
            v["device"].as_str().unwrap_or("?"),
            v["precision"].as_str().unwrap_or("?"),
            if peak.is_some() { " (of peak)" } else { "" }
        ));
        for t in m["timings"].as_array().context("timings")? {
            let (r, d) = (
                t["reference_rows_per_second"].as_f64().unwrap_or(0.0),
                t["device_rows_per_second"].as_f64().unwrap_or(0.0),
            );
            let g = match (t["device_gflops"].as_f64(), peak) {
                (Some(g), Some(p)) => format!("{g:.0} ({:.1} %)", 100.0 * g / p),
                (Some(g), None) => format!("{g:.1}"),
                _ => "–".into(),
            };
            s.push_str(&format!(
                "| {} | {r:.1} | {d:.1} | {:.2}× | {g} |\n",
                t["batch_size"],
                d / r
            ));
        }
        s.push_str(&format!(
            "\nFeatures: largest difference {:.2e}, smallest per-row cosine {:.6} (tolerance: ≥ {}).\n\n",
            m["max_abs_difference"].as_f64().unwrap_or(f64::NAN),
            m["min_cosine"].as_f64().unwrap_or(f64::NAN),
            v["min_cosine_required"]
        ));
    }
    Ok(s)
}
