//! The `engine` section of `cargo xtask bench-report`: the training engine (`tl-nn`) against
//! PyTorch on the same machine and thread count, run alternately round by round so that a
//! slow spell of this shared machine hits both.
//!
//! Both sides follow one protocol (`benches/python/train_baseline.py` and
//! [`train_step`]/[`gemm_step`] here): 3 warm-up steps, then the median of `STEPS` timed
//! steps; fine-tuning is MobileNetV2 with BatchNorm on batch statistics, every parameter
//! trainable, no gradient for the input, a fresh batch each step, forward to the 1280
//! features and backward; peak RSS is the whole process's (`VmHWM` for tl, `ru_maxrss` for
//! Python, which includes PyTorch's own import).
//!
//! PyTorch runs from `TL_TORCH_PYTHON`, a Python in its own virtual environment (never CI):
//! `python3 -m venv /tmp/torch && /tmp/torch/bin/pip install torch==2.15.0 torchvision==0.29.2`.

use std::{fmt::Write as _, process::Command, time::Instant};

use anyhow::{Context, Result, bail};

use crate::bench_report::{median, output};
use ndarray::{Array2, ArrayD};
use rand::Rng;
use tl_nn::{Ctx, Module, ModuleExt, Tensor};

/// Rounds of (tl, PyTorch) per measurement.
const ROUNDS: usize = 3;
/// Timed steps per run, after 3 warm-up steps.
const STEPS: usize = 10;
/// Threads on both sides.
const THREADS: usize = 2;
/// (side, batch) of the fine-tuning measurements.
const FINETUNE: [(usize, usize); 2] = [(112, 16), (224, 8)];
/// MiniLM's dense layers: 32 × 64 tokens of 384 → 384 and 384 → 1,536.
const GEMMS: [(usize, usize, usize); 2] = [(2048, 384, 384), (2048, 384, 1536)];
/// MiniLM's attention: batch, heads, tokens, dimension per head.
const ATTENTION: [usize; 4] = [32, 12, 64, 32];

/// Median seconds of `STEPS` calls of `step` after 3 warm-up calls; `prepare` runs untimed
/// before each.
fn timed<T>(steps: usize, mut prepare: impl FnMut() -> T, mut step: impl FnMut(T)) -> f64 {
    for _ in 0..3 {
        step(prepare());
    }
    let mut times = Vec::with_capacity(steps);
    for _ in 0..steps {
        let input = prepare();
        let t = Instant::now();
        step(input);
        times.push(t.elapsed().as_secs_f64());
    }
    median(times)
}

/// The pool the step runs in, as `tl train` runs its training loop
/// (`tl_pipeline::Compute::install`).
fn pool(threads: usize) -> Result<rayon::ThreadPool> {
    Ok(rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?)
}

fn peak_rss_mib() -> f64 {
    tl_core::alloc::peak_rss_bytes().unwrap_or(0) as f64 / (1 << 20) as f64
}

fn parse(args: &[String], names: &[&str]) -> Result<Vec<usize>> {
    if args.len() != names.len() {
        bail!("expected {}", names.join(" "));
    }
    args.iter()
        .zip(names)
        .map(|(a, n)| {
            a.parse()
                .with_context(|| format!("{n} `{a}` is not a number"))
        })
        .collect()
}

/// `cargo xtask train-step SIZE BATCH THREADS STEPS`: tl's side of
/// `train_baseline.py finetune`, printed as one JSON object.
pub fn train_step(args: &[String]) -> Result<()> {
    let v = parse(args, &["SIZE", "BATCH", "THREADS", "STEPS"])?;
    let (size, batch, threads, steps) = (v[0], v[1], v[2], v[3]);
    let pool = pool(threads)?;
    let path = tl_core::home::tl_home()?.join("models/mobilenet-v2/model-bn.onnx");
    let model = tl_onnx::OnnxModel::load(&path).with_context(|| {
        format!(
            "run `cargo xtask fetch-models mobilenet-v2` ({})",
            path.display()
        )
    })?;
    let mut net = tl_head::import::import_graph(&model, "input", "features")?.layers;
    net.set_input_grad(false);
    let mut rng = tl_core::rng::seeded_rng(1, "train-step");
    let run = || {
        timed(
            steps,
            || -> Tensor {
                ArrayD::from_shape_simple_fn(vec![batch, 3, size, size], || {
                    rng.random::<f32>() * 2.0 - 1.0
                })
            },
            |x| {
                net.zero_grad();
                let y = net
                    .forward(&x, &mut Ctx::train(tl_core::rng::seeded_rng(0, "step")))
                    .expect("forward");
                net.backward(&Tensor::ones(y.raw_dim())).expect("backward");
            },
        )
    };
    let seconds = pool.install(run);
    let out = serde_json::json!({
        "mode": "finetune", "size": size, "batch": batch, "threads": threads,
        "seconds_median": seconds, "per_second": batch as f64 / seconds,
        "peak_rss_mib": peak_rss_mib(),
    });
    println!("{out}");
    Ok(())
}

/// `cargo xtask gemm-step M K N THREADS STEPS`: tl's side of `train_baseline.py gemm`.
pub fn gemm_step(args: &[String]) -> Result<()> {
    let v = parse(args, &["M", "K", "N", "THREADS", "STEPS"])?;
    let (m, k, n, threads, steps) = (v[0], v[1], v[2], v[3], v[4]);
    let pool = pool(threads)?;
    let mut rng = tl_core::rng::seeded_rng(2, "gemm-step");
    let a = Array2::from_shape_simple_fn((m, k), || rng.random::<f32>() - 0.5);
    let b = Array2::from_shape_simple_fn((k, n), || rng.random::<f32>() - 0.5);
    let seconds = pool.install(|| {
        timed(
            steps,
            || (),
            |()| {
                std::hint::black_box(tl_nn::kernels::matmul(&a.view(), &b.view()));
            },
        )
    });
    let out = serde_json::json!({
        "mode": "gemm", "m": m, "k": k, "n": n, "threads": threads,
        "seconds_median": seconds, "gflops": 2.0 * (m * k * n) as f64 / seconds / 1e9,
    });
    println!("{out}");
    Ok(())
}

/// `cargo xtask attention-step BATCH HEADS SEQ DIM THREADS STEPS`: tl's side of
/// `train_baseline.py attention` (forward and backward, output gradient of ones).
pub fn attention_step(args: &[String]) -> Result<()> {
    use tl_nn::kernels::attention::{Dims, Mask, backward, forward};
    let v = parse(args, &["BATCH", "HEADS", "SEQ", "DIM", "THREADS", "STEPS"])?;
    let d = Dims {
        batch: v[0],
        heads: v[1],
        queries: v[2],
        keys: v[2],
        dim: v[3],
    };
    let pool = pool(v[4])?;
    let mut rng = tl_core::rng::seeded_rng(3, "attention-step");
    let len = d.batch * d.heads * d.queries * d.dim;
    let mut draw = || {
        (0..len)
            .map(|_| rng.random::<f32>() - 0.5)
            .collect::<Vec<f32>>()
    };
    let (q, k, val) = (draw(), draw(), draw());
    let ones = vec![1.0f32; len];
    let seconds = pool.install(|| {
        timed(
            v[5],
            || (),
            |()| {
                let mut out = vec![0.0f32; len];
                let mut p = vec![0.0f32; d.batch * d.heads * d.queries * d.keys];
                forward((&q, &k, &val), d, Mask::default(), &mut out, &mut p);
                let (mut dq, mut dk, mut dv) = (vec![0.0; len], vec![0.0; len], vec![0.0; len]);
                backward((&q, &k, &val), &p, &ones, d, (&mut dq, &mut dk, &mut dv));
                std::hint::black_box((out, dq, dk, dv));
            },
        )
    });
    // Multiply-adds: Q·Kᵀ and P·V forward, four products backward.
    let flops = 2.0 * 6.0 * (d.batch * d.heads * d.queries * d.keys * d.dim) as f64;
    let out = serde_json::json!({
        "mode": "attention", "batch": d.batch, "heads": d.heads, "seq": d.queries, "dim": d.dim,
        "threads": v[4], "seconds_median": seconds, "gflops": flops / seconds / 1e9,
    });
    println!("{out}");
    Ok(())
}

/// Runs `cmd` and parses the last line of its standard output as JSON.
fn json(cmd: &mut Command) -> Result<serde_json::Value> {
    let text = output(cmd)?;
    let line = text.lines().last().context("no output")?;
    serde_json::from_str(line).with_context(|| format!("not JSON: {line}"))
}

fn field(v: &serde_json::Value, key: &str) -> Result<f64> {
    v[key]
        .as_f64()
        .with_context(|| format!("no `{key}` in {v}"))
}

pub fn section(cargo: &str) -> Result<String> {
    let python = std::env::var("TL_TORCH_PYTHON").context(
        "the engine section needs TL_TORCH_PYTHON: a Python with torch==2.15.0 and \
         torchvision==0.29.2 in its own virtual environment (see benches/python/train_baseline.py)",
    )?;
    crate::fetch_models(&["mobilenet-v2".to_string()])?;
    crate::run(Command::new(cargo).args(["build", "--release", "-p", "xtask"]))?;
    let tl = || {
        let mut c = Command::new("target/release/xtask");
        c.env_remove("RAYON_NUM_THREADS");
        c
    };
    let torch = || {
        let mut c = Command::new(&python);
        c.arg("benches/python/train_baseline.py");
        c
    };
    let s = |v: usize| v.to_string();
    // (label, tl runs, PyTorch runs, unit)
    let mut rows: Vec<(String, Vec<f64>, Vec<f64>, &str)> = Vec::new();
    let mut rss = Vec::new();
    let mut versions = serde_json::Value::Null;
    for (size, batch) in FINETUNE {
        let (mut a, mut b) = (vec![], vec![]);
        for _ in 0..ROUNDS {
            let args = [s(size), s(batch), s(THREADS), s(STEPS)];
            let t = json(tl().arg("train-step").args(&args))?;
            let p = json(torch().arg("finetune").args(&args))?;
            a.push(field(&t, "per_second")?);
            b.push(field(&p, "per_second")?);
            if size == 224 {
                rss.push((field(&t, "peak_rss_mib")?, field(&p, "peak_rss_mib")?));
            }
            versions = p;
        }
        rows.push((
            format!("MobileNetV2 fine-tuning, {size} px, batch {batch}"),
            a,
            b,
            "img/s",
        ));
    }
    for (m, k, n) in GEMMS {
        let (mut a, mut b) = (vec![], vec![]);
        for _ in 0..ROUNDS {
            let args = [s(m), s(k), s(n), s(THREADS), s(STEPS * 5)];
            a.push(field(&json(tl().arg("gemm-step").args(&args))?, "gflops")?);
            b.push(field(&json(torch().arg("gemm").args(&args))?, "gflops")?);
        }
        rows.push((format!("GEMM {m} × {k} × {n}"), a, b, "GFLOP/s"));
    }
    {
        let [batch, heads, seq, dim] = ATTENTION;
        let (mut a, mut b) = (vec![], vec![]);
        for _ in 0..ROUNDS {
            let args = [s(batch), s(heads), s(seq), s(dim), s(THREADS), s(STEPS * 2)];
            a.push(field(
                &json(tl().arg("attention-step").args(&args))?,
                "seconds_median",
            )?);
            b.push(field(
                &json(torch().arg("attention").args(&args))?,
                "seconds_median",
            )?);
        }
        // As rates, so that higher is better in every row.
        let rate = |v: Vec<f64>| v.into_iter().map(|s| 1.0 / s).collect::<Vec<_>>();
        rows.push((
            format!(
                "attention forward + backward, batch {batch} × {heads} heads × {seq} tokens × {dim}"
            ),
            rate(a),
            rate(b),
            "steps/s",
        ));
    }
    let mut md = format!(
        "## Training engine against PyTorch (issue 25)\n\n\
         Same machine, {THREADS} threads on both sides, run alternately: {ROUNDS} rounds of \
         (tl, PyTorch) per row, each run the median of {STEPS} steps after 3 warm-up steps \
         (GEMMs: {} steps, attention {}); the table gives the median run and every run. Fine-tuning: \
         MobileNetV2, BatchNorm on batch statistics, every parameter trainable, no gradient \
         for the input, a fresh batch each step, forward to the 1280 features and backward. \
         tl: `cargo xtask train-step` / `gemm-step` (release); PyTorch: \
         `benches/python/train_baseline.py` (torch {}, torchvision {}, Python {}).\n\n\
         | measurement | tl | PyTorch | tl / PyTorch | tl runs | PyTorch runs |\n|---|---|---|---|---|---|\n",
        STEPS * 5,
        STEPS * 2,
        versions["torch"].as_str().unwrap_or("?"),
        versions["torchvision"].as_str().unwrap_or("?"),
        versions["python"].as_str().unwrap_or("?"),
    );
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (label, a, b, unit) in &rows {
        let (ma, mb) = (median(a.clone()), median(b.clone()));
        writeln!(
            md,
            "| {label} | {ma:.1} {unit} | {mb:.1} {unit} | {:.2}× | {} | {} |",
            ma / mb,
            list(a),
            list(b)
        )?;
    }
    let (ta, tb): (Vec<f64>, Vec<f64>) = rss.into_iter().unzip();
    writeln!(
        md,
        "\nPeak RSS of the whole process, 224 px fine-tuning at batch 8 (median of the runs): \
         tl {:.0} MiB, PyTorch {:.0} MiB (PyTorch's includes its own import).",
        median(ta),
        median(tb)
    )?;
    Ok(md)
}
