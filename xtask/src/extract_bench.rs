//! The `extract` section of `cargo xtask bench-report`: `tl extract` end to end against
//! bare ONNX Runtime and straightforward Python pipelines (`benches/python/extract_baseline.py`),
//! on mnist-5k, a generated folder of JPEGs and Rotten Tomatoes texts, all timed in one run,
//! runs interleaved so that a slow spell of the machine hits every contender alike.

use std::{fmt::Write as _, path::Path, process::Command};

use anyhow::Result;

use crate::bench_report::{THREADS, json_field, median, output};

/// Images per ONNX Runtime call, for tl and the Python baselines alike.
const BATCH: u32 = 64;
/// Sentences per call in the text comparison.
const TEXT_BATCH: u32 = 32;
/// Rotten Tomatoes rows in the text comparison: its 1,097 plot summaries (long) and the
/// first 403 review snippets (short), so lengths vary as in real corpora.
const TEXT_ROWS: u32 = 1500;
const BASELINE: &str = "benches/python/extract_baseline.py";

/// `tl extract --json` into a private, empty feature store (sharing the fetched runtime,
/// models and data), so every run computes every row. Returns the JSON report.
fn tl_extract(tl: &Path, home: &Path, args: &[&str]) -> Result<String> {
    let tmp = tempfile::tempdir()?;
    for sub in ["runtimes", "models", "datasets", "assets"] {
        std::os::unix::fs::symlink(home.join(sub), tmp.path().join(sub))?;
    }
    output(
        Command::new(tl)
            .args([
                "extract",
                "--json",
                "--quiet",
                "--threads",
                &THREADS.to_string(),
            ])
            .args(args)
            .arg("--home")
            .arg(tmp.path()),
    )
}

fn python(mode: &str, model: &Path, data: &Path, size: u32, batch: u32) -> Result<String> {
    output(
        Command::new("python3")
            .arg(BASELINE)
            .arg(mode)
            .arg(model)
            .arg(data)
            .args([size.to_string(), batch.to_string(), THREADS.to_string()]),
    )
}

/// The median over several `tl extract` reports of one of their `stages` (seconds).
fn stage(reports: &[String], key: &str) -> Result<f64> {
    let v = reports
        .iter()
        .map(|r| json_field(r, &["report", "stages", key]))
        .collect::<Result<Vec<_>>>()?;
    Ok(median(v))
}

fn rate(report: &str) -> Result<f64> {
    json_field(report, &["report", "rows_per_second"])
        .or_else(|_| json_field(report, &["rows_per_second"]))
}

/// Measures and returns the section's markdown.
pub fn section(cargo: &str, runs: usize) -> Result<String> {
    crate::bench_report::require_python(
        "numpy, PIL, onnxruntime, tokenizers",
        "the Python baselines need `python3 -m pip install numpy pillow onnxruntime==1.31.1 tokenizers`",
    )?;
    crate::bench_report::release_tl(
        cargo,
        &[
            "onnxruntime",
            "efficientnet-lite0",
            "minilm-l6",
            "mnist-5k",
            "rotten-tomatoes",
            "sample-photos",
        ],
    )?;
    let home = tl_core::home::tl_home()?;
    let spec = crate::photos::PhotoSpec::default();
    let photos = std::env::current_dir()?.join(crate::photos::default_dir(&spec));
    if !photos.is_dir() {
        crate::photos::make(&home.join("assets/sample-photos"), &photos, &spec)?;
    }
    let model = home.join("models/efficientnet-lite0/model.onnx");
    let mnist = home.join("datasets/mnist-5k/mnist_5k.csv.gz");
    let minilm = home.join("models/minilm-l6");
    let corpus = home.join("datasets/rotten-tomatoes/rotten_tomatoes_corpus_full.csv.bz2");
    let tl = Path::new("target/release/tl");
    let batch = BATCH.to_string();
    let photo_dir = photos.to_string_lossy().to_string();

    // mnist-5k at each size, then the photos (224 px): tl, bare, Python, interleaved.
    struct Row {
        name: String,
        tl: Vec<String>,
        bare: Vec<f64>,
        python: Vec<f64>,
    }
    let mut rows: Vec<Row> = Vec::new();
    for (name, data, size) in [
        ("mnist-5k, 224 px".to_string(), None, 224),
        ("mnist-5k, 112 px".to_string(), None, 112),
        (
            format!("{} JPEGs, 224 px", spec.count),
            Some(photo_dir.as_str()),
            224,
        ),
    ] {
        let mut row = Row {
            name,
            tl: Vec::new(),
            bare: Vec::new(),
            python: Vec::new(),
        };
        for run in 0..runs {
            eprintln!(
                "bench-report: extract, {} (run {}/{runs})",
                row.name,
                run + 1
            );
            let size_s = size.to_string();
            let args = [
                "--data",
                data.unwrap_or("mnist-5k"),
                "--batch-size",
                &batch,
                "--image-size",
                &size_s,
            ];
            row.tl.push(tl_extract(tl, &home, &args)?);
            row.bare
                .push(rate(&python("bare", &model, &mnist, size, BATCH)?)?);
            let out = match data {
                None => python("pipeline", &model, &mnist, size, BATCH)?,
                Some(dir) => python("folder", &model, Path::new(dir), size, BATCH)?,
            };
            row.python.push(rate(&out)?);
        }
        rows.push(row);
    }

    // Texts: bucketed by length, in dataset order, and the Python pipeline (dataset order).
    let (mut bucketed, mut ordered, mut py_text) = (Vec::new(), Vec::new(), Vec::new());
    let (limit, tb) = (TEXT_ROWS.to_string(), TEXT_BATCH.to_string());
    for run in 0..runs {
        eprintln!("bench-report: extract, texts (run {}/{runs})", run + 1);
        let args = [
            "--model",
            "minilm-l6",
            "--data",
            "rotten-tomatoes",
            "--limit",
            &limit,
            "--batch-size",
            &tb,
        ];
        bucketed.push(tl_extract(tl, &home, &args)?);
        let mut plain = args.to_vec();
        plain.push("--no-bucketing");
        ordered.push(tl_extract(tl, &home, &plain)?);
        py_text.push(rate(&python(
            "text", &minilm, &corpus, TEXT_ROWS, TEXT_BATCH,
        )?)?);
    }

    // Memory as the dataset grows: peak RSS of the whole `tl extract` process.
    let mut rss = Vec::new();
    for limit in [1000usize, 5000] {
        let report = tl_extract(
            tl,
            &home,
            &[
                "--data",
                "mnist-5k",
                "--batch-size",
                &batch,
                "--image-size",
                "112",
                "--limit",
                &limit.to_string(),
            ],
        )?;
        rss.push((limit, json_field(&report, &["report", "peak_rss_bytes"])?));
    }
    let criterion = output(Command::new(cargo).args([
        "bench",
        "-p",
        "tl-benches",
        "--",
        "--output-format",
        "bencher",
        "preprocess|inference",
    ]))?;

    let mut md = String::new();
    writeln!(
        md,
        "Medians of {runs} runs; in each run tl, bare ONNX Runtime and the Python pipeline are timed one after another, so a slow spell of this shared machine hits all three. ONNX Runtime 1.31.1 CPU provider, {THREADS} intra-op threads for tl and Python alike.\n"
    )?;
    writeln!(
        md,
        "## Feature extraction: EfficientNet-Lite0 (`features`, 1280-d), batch {BATCH}\n"
    )?;
    writeln!(
        md,
        "| data | tl end to end (files → feature store on disk) | bare ONNX Runtime (Python, ready tensors) | Python pipeline (Pillow + NumPy + onnxruntime) | tl / bare | tl / Python |"
    )?;
    writeln!(md, "|---|---|---|---|---|---|")?;
    for r in &rows {
        let ours = median(r.tl.iter().map(|t| rate(t)).collect::<Result<_>>()?);
        let (bare, py) = (median(r.bare.clone()), median(r.python.clone()));
        writeln!(
            md,
            "| {} | {ours:.1} images/s | {bare:.1} images/s | {py:.1} images/s | {:.0} % | {:.2}× |",
            r.name,
            100.0 * ours / bare,
            ours / py
        )?;
    }
    writeln!(
        md,
        "\nTargets (issue 3), for mnist-5k: tl ≥ 95 % of bare ONNX Runtime and ≥ 1.2× the Python pipeline. The photos are `cargo xtask make-photos` ({} JPEGs cut from the five sample photos at random, {}–{} px on the longer side, quality 75–95, seed {}); their bare figure runs the same model on ready 224 px tensors. Python baselines: `{BASELINE}` (its docstring names the package versions).\n",
        spec.count, spec.long_side.0, spec.long_side.1, spec.seed
    )?;
    writeln!(md, "### Where tl's time goes\n")?;
    writeln!(
        md,
        "Seconds per run (medians), from `tl extract --json`'s `stages`. Inference, waiting and storing are wall time of the thread that runs the model; decoding and resizing run on other threads at the same time, and their CPU seconds (summed over threads) compete with ONNX Runtime's threads for the same {} cores.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    )?;
    writeln!(
        md,
        "| data | total | inference | waiting for input | storing | hashing | decode + resize (CPU s) |"
    )?;
    writeln!(md, "|---|---|---|---|---|---|---|")?;
    for r in &rows {
        let get = |k: &str| stage(&r.tl, k);
        let total = median(
            r.tl.iter()
                .map(|t| json_field(t, &["report", "seconds"]))
                .collect::<Result<_>>()?,
        );
        writeln!(
            md,
            "| {} | {total:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            r.name,
            get("inference")?,
            get("waiting_for_input")?,
            get("storing")?,
            get("hashing")?,
            get("preprocessing_cpu")?
        )?;
    }
    writeln!(
        md,
        "\n## Sentence embeddings: MiniLM-L6 on the first {TEXT_ROWS} Rotten Tomatoes texts, batch {TEXT_BATCH}\n"
    )?;
    writeln!(
        md,
        "| tl, batches bucketed by length | tl, dataset order (`--no-bucketing`) | Python pipeline (tokenizers + onnxruntime, dataset order) | bucketed / Python |"
    )?;
    writeln!(md, "|---|---|---|---|")?;
    let b = median(bucketed.iter().map(|t| rate(t)).collect::<Result<_>>()?);
    let o = median(ordered.iter().map(|t| rate(t)).collect::<Result<_>>()?);
    let p = median(py_text);
    writeln!(
        md,
        "| {b:.1} sentences/s | {o:.1} sentences/s | {p:.1} sentences/s | {:.2}× |",
        b / p
    )?;
    writeln!(
        md,
        "\nEvery batch is padded to its longest text (truncation at 256 tokens), so bucketing saves the padding: the plot summaries run near 256 tokens, the reviews near 30.\n"
    )?;
    writeln!(
        md,
        "## Memory: peak RSS of `tl extract` (mnist-5k at 112 px, batch {BATCH})\n"
    )?;
    writeln!(md, "| rows | peak RSS |")?;
    writeln!(md, "|---|---|")?;
    for (limit, bytes) in &rss {
        writeln!(md, "| {limit} | {:.0} MB |", bytes / 1e6)?;
    }
    writeln!(md)?;
    writeln!(
        md,
        "## Criterion benches (`cargo bench -p tl-benches -- 'preprocess|inference'`)\n"
    )?;
    writeln!(md, "| bench | time per iteration |")?;
    writeln!(md, "|---|---|")?;
    for line in criterion.lines().filter(|l| l.starts_with("test ")) {
        // `test NAME ... bench: N ns/iter (+/- M)`
        let name = line
            .trim_start_matches("test ")
            .split(" ...")
            .next()
            .unwrap_or("");
        let ns: f64 = line
            .split("bench:")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .map(|n| n.replace(',', ""))
            .and_then(|n| n.parse().ok())
            .unwrap_or(f64::NAN);
        writeln!(md, "| `{name}` | {:.3} ms |", ns / 1e6)?;
    }
    Ok(md)
}
