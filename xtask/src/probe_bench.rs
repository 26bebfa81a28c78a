//! The linear-probe benchmark of `cargo xtask bench-report`: time for tl and for
//! scikit-learn to reach scikit-learn's own tol=1e-10 objective within 1e-5 relative, on
//! EfficientNet-Lite0 features of mnist-5k and on synthetic 50,000 × 2,048 × 10 data, and
//! a 10-value C path against one scikit-learn fit.

use std::{fmt::Write as _, path::Path, process::Command, time::Instant};

use anyhow::{Context, Result};
use ndarray::{Array2, Axis};
use tl_head::probe::{ProbeConfig, ProbeData, fit, fit_path, objective};

/// The accuracy bar for "reached the optimum".
const REL: f64 = 1e-5;
const C: f64 = 1.0;

/// Writes a C-order `.npy` file.
fn write_npy(path: &Path, descr: &str, shape: &[usize], data: &[u8]) -> Result<()> {
    let shape_txt = match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_txt}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes)?;
    Ok(())
}

/// One dataset's figures.
struct Row {
    name: String,
    shape: (usize, usize, usize),
    sk: serde_json::Value,
    tl_tol: f64,
    tl_seconds: f64,
    tl_iterations: usize,
    tl_rel: f64,
    path_seconds: Option<f64>,
}

fn bench(
    name: &str,
    x: &Array2<f32>,
    y: &[u32],
    val: Option<(&Array2<f32>, &[u32])>,
    threads: usize,
) -> Result<Row> {
    let classes = (*y.iter().max().context("no rows")? + 1) as usize;
    let dir = std::env::temp_dir().join(format!("tl-probe-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let xb: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_npy(&dir.join("x.npy"), "<f4", &[x.nrows(), x.ncols()], &xb)?;
    let yb: Vec<u8> = y.iter().flat_map(|&v| i64::from(v).to_le_bytes()).collect();
    write_npy(&dir.join("y.npy"), "<i8", &[y.len()], &yb)?;
    eprintln!(
        "bench-report: scikit-learn on {name} ({} × {} × {classes})",
        x.nrows(),
        x.ncols()
    );
    let out = Command::new("python3")
        .arg("benches/python/probe_baseline.py")
        .arg(dir.join("x.npy"))
        .arg(dir.join("y.npy"))
        .arg(C.to_string())
        .env("OPENBLAS_NUM_THREADS", threads.to_string())
        .env("OMP_NUM_THREADS", threads.to_string())
        .output()?;
    let _ = std::fs::remove_dir_all(&dir);
    anyhow::ensure!(
        out.status.success(),
        "probe_baseline.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sk: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let f_ref = sk["reference_objective"]
        .as_f64()
        .context("reference objective")?;
    let data = ProbeData {
        x: x.view(),
        y,
        classes,
    };
    let mut found = None;
    for k in 5..=12 {
        let tol = 10f64.powi(-k);
        let cfg = ProbeConfig::new(C).tol(tol);
        let start = Instant::now();
        let probe = fit(&data, &cfg, None)?;
        let seconds = start.elapsed().as_secs_f64();
        let rel = (objective(&probe, &data, &cfg)? - f_ref) / f_ref.abs();
        eprintln!(
            "bench-report: tl tol {tol:e}: {seconds:.2} s, {} iterations, rel {rel:.2e}",
            probe.report.iterations
        );
        if rel <= REL {
            found = Some((tol, seconds, probe.report.iterations, rel));
            break;
        }
    }
    let (tl_tol, tl_seconds, tl_iterations, tl_rel) =
        found.context("tl did not reach the reference objective")?;
    let path_seconds = match val {
        Some((xv, yv)) => {
            let cs: Vec<f64> = (0..10)
                .map(|i| 10f64.powf(-4.0 + 5.0 * i as f64 / 9.0))
                .collect();
            let start = Instant::now();
            fit_path(
                &data,
                &ProbeData {
                    x: xv.view(),
                    y: yv,
                    classes,
                },
                &cs,
                &ProbeConfig::new(1.0),
            )?;
            Some(start.elapsed().as_secs_f64())
        }
        None => None,
    };
    Ok(Row {
        name: name.into(),
        shape: (x.nrows(), x.ncols(), classes),
        sk,
        tl_tol,
        tl_seconds,
        tl_iterations,
        tl_rel,
        path_seconds,
    })
}

/// mnist-5k through EfficientNet-Lite0 (224 px, `features`): a seeded stratified split,
/// 80 % train, 10 % validation.
/// Training features and labels, then validation features and labels.
type TrainVal = (Array2<f32>, Vec<u32>, Array2<f32>, Vec<u32>);

fn mnist_features(tl: &Path) -> Result<TrainVal> {
    let out = std::env::temp_dir().join(format!("tl-probe-feats-{}", std::process::id()));
    crate::run(
        Command::new(tl)
            .args(["extract", "--quiet", "--data", "mnist-5k", "--out"])
            .arg(&out),
    )?;
    let feats = tl_nn::checkpoint::load_tensors(&out.join("features.safetensors"))?;
    let x = feats["features"]
        .clone()
        .into_dimensionality::<ndarray::Ix2>()?;
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(out.join("rows.json"))?)?;
    let _ = std::fs::remove_dir_all(&out);
    let home = tl_core::home::tl_home()?;
    let ds = tl_hub::Registry::builtin()?
        .get("mnist-5k")?
        .load_dataset(&home)?;
    let index: std::collections::HashMap<&str, usize> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| (r["id"].as_str().unwrap_or(""), i))
        .collect();
    let mut cfg = tl_data::SplitConfig::new("label", 0);
    cfg.val_fraction = 0.1;
    cfg.test_fraction = 0.1;
    let split = tl_data::Split::stratified(&ds, &cfg)?;
    let label: std::collections::HashMap<&str, u32> = ds
        .rows
        .iter()
        .map(|r| (r.id.as_str(), r.labels[0].unwrap_or(0)))
        .collect();
    let pick = |part: tl_data::Part| {
        let ids: Vec<&str> = split
            .rows
            .iter()
            .filter(|r| r.split == part)
            .map(|r| r.id.as_str())
            .collect();
        let idx: Vec<usize> = ids.iter().map(|id| index[id]).collect();
        (
            x.select(Axis(0), &idx),
            ids.iter().map(|id| label[id]).collect::<Vec<u32>>(),
        )
    };
    let (xt, yt) = pick(tl_data::Part::Train);
    let (xv, yv) = pick(tl_data::Part::Val);
    Ok((xt, yt, xv, yv))
}

/// The markdown section.
pub fn section(tl: &Path, threads: usize) -> Result<String> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .ok();
    let mut rows = Vec::new();
    let (xt, yt, xv, yv) = mnist_features(tl)?;
    rows.push(bench(
        "mnist-5k, EfficientNet-Lite0 `features` (224 px)",
        &xt,
        &yt,
        Some((&xv, &yv)),
        threads,
    )?);
    let (x, y) = tl_head::synthetic::blobs(55_000, 2048, 10, 0);
    let (xs, xsv) = x.view().split_at(Axis(0), 50_000);
    rows.push(bench(
        "synthetic (`tl_head::synthetic::blobs`, seed 0)",
        &xs.to_owned(),
        &y[..50_000],
        Some((&xsv.to_owned(), &y[50_000..])),
        threads,
    )?);
    let mut md = String::new();
    writeln!(
        md,
        "## Linear probe: time to scikit-learn's optimum (C = {C}, {threads} threads)\n"
    )?;
    writeln!(
        md,
        "Reference: scikit-learn's objective at `tol=1e-10`. Each solver is run at tolerances 1e-2, 1e-3, … (scikit-learn) and 1e-5, 1e-6, … (tl); the table gives the loosest one whose objective is within 1e-5 relative of the reference, and its wall time (one run each). The C path is 10 values from 1e-4 to 10, warm-started, best C on 500 / 5,000 validation rows, refitted on train + validation. Baseline script: `benches/python/probe_baseline.py`.\n"
    )?;
    writeln!(
        md,
        "| data | rows × features × classes | scikit-learn | tl | speed-up | tl 10-value C path | path vs one scikit-learn fit |"
    )?;
    writeln!(md, "|---|---|---|---|---|---|---|")?;
    for r in &rows {
        let ch = &r.sk["chosen"];
        let sk_s = ch["seconds"].as_f64().unwrap_or(f64::NAN);
        writeln!(
            md,
            "| {} | {} × {} × {} | {:.2} s (tol {:e}, {} iterations) | {:.2} s (tol {:e}, {} iterations, rel {:.1e}) | {:.1}× | {} | {} |",
            r.name,
            r.shape.0,
            r.shape.1,
            r.shape.2,
            sk_s,
            ch["tol"].as_f64().unwrap_or(f64::NAN),
            ch["iterations"],
            r.tl_seconds,
            r.tl_tol,
            r.tl_iterations,
            r.tl_rel,
            sk_s / r.tl_seconds,
            r.path_seconds.map_or("-".into(), |s| format!("{s:.2} s")),
            r.path_seconds
                .map_or("-".into(), |s| format!("{:.2}×", sk_s / s)),
        )?;
    }
    writeln!(
        md,
        "\nscikit-learn's reference fits (tol 1e-10) took {}.\n",
        rows.iter()
            .map(|r| format!(
                "{:.1} s ({} iterations)",
                r.sk["reference_seconds"].as_f64().unwrap_or(f64::NAN),
                r.sk["reference_iterations"]
            ))
            .collect::<Vec<_>>()
            .join(" and ")
    )?;
    Ok(md)
}
