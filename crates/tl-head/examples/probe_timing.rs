//! Probe fits at decreasing tolerances on features written by `tl extract --out DIR`:
//! time, iterations and objective at each, to see what a tolerance costs; then the
//! default 10-value C path (every tenth row for validation).
//!
//! ```sh
//! tl extract --data mnist-5k --out /tmp/mnist-features
//! cargo run --release -p tl-head --example probe_timing -- /tmp/mnist-features mnist-5k 1.0
//! ```

use std::collections::HashMap;

use anyhow::{Context, Result};
use tl_head::probe::{ProbeConfig, ProbeData, fit, fit_path};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, data, c] = args.as_slice() else {
        anyhow::bail!("usage: probe_timing EXTRACT_DIR DATASET C");
    };
    let dir = std::path::Path::new(dir);
    let file = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .context("no .safetensors in the directory")?;
    let x = tl_nn::checkpoint::load_tensors(&file)?["features"]
        .clone()
        .into_dimensionality::<ndarray::Ix2>()?;
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(dir.join("rows.json"))?)?;
    let home = tl_core::home::tl_home()?;
    let ds = tl_hub::Registry::builtin()?
        .get(data)?
        .load_dataset(&home)?;
    let label: HashMap<&str, u32> = ds
        .rows
        .iter()
        .filter_map(|r| Some((r.id.as_str(), r.labels[0]?)))
        .collect();
    let y: Vec<u32> = rows
        .iter()
        .map(|r| label[r["id"].as_str().unwrap_or("")])
        .collect();
    let classes = ds.tasks[0].classes.len();
    let c: f64 = c.parse()?;
    let data = ProbeData {
        x: x.view(),
        y: &y,
        classes,
    };
    let path_tol: f64 = std::env::var("PATH_TOL")
        .ok()
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(1e-10);
    for k in 4..=10 {
        if std::env::var_os("SKIP_TOLS").is_some() {
            break;
        }
        let tol = 10f64.powi(-k);
        let p = fit(&data, &ProbeConfig::new(c).tol(tol), None)?;
        println!(
            "tol {tol:.0e}: objective {:.10}, {} iterations, {} evaluations, {:.2} s",
            p.report.objective, p.report.iterations, p.report.evaluations, p.report.seconds
        );
    }
    let (tr, va): (Vec<usize>, Vec<usize>) = (0..y.len()).partition(|i| i % 10 != 0);
    let pick = |idx: &[usize]| {
        (
            x.select(ndarray::Axis(0), idx),
            idx.iter().map(|&i| y[i]).collect::<Vec<u32>>(),
        )
    };
    let ((xt, yt), (xv, yv)) = (pick(&tr), pick(&va));
    let cs = tl_head::probe::default_cs();
    let start = std::time::Instant::now();
    let path = fit_path(
        &ProbeData {
            x: xt.view(),
            y: &yt,
            classes,
        },
        &ProbeData {
            x: xv.view(),
            y: &yv,
            classes,
        },
        &cs,
        &ProbeConfig::new(1.0).tol(path_tol),
    )?;
    for p in &path.points {
        println!(
            "  C {:.3e}: {} iterations, val {:.4}, {:.2} s",
            p.c, p.iterations, p.val_accuracy, p.seconds
        );
    }
    println!(
        "10-value C path (1e-4..10) and refit at tol {path_tol:e}: best C {:.3e}, refit {:.2} s, total {:.2} s",
        path.best_c,
        path.probe.report.seconds,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
