//! `tl train`, `tl export` and `tl predict` end to end on the registry's digits and
//! EfficientNet-Lite0 (fetched by `cargo xtask test` first).

use std::process::Output;

mod common;
use common::{ok_json, tl};

fn assert_fails_with(o: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "expected a failure naming `{needle}`");
    assert!(err.contains(needle), "{err}");
}

/// Digit 1790 of sklearn's digits (an 8) as an 8×8 PNG, written from the fetched dataset.
fn digit_png(dir: &std::path::Path) -> std::path::PathBuf {
    let home = tl_core::home::tl_home().unwrap();
    let ds = tl_hub::Registry::builtin()
        .unwrap()
        .get("sklearn-digits")
        .unwrap()
        .load_dataset(&home)
        .unwrap();
    let tl_data::Content::Pixels { data, .. } = &ds.rows[1790].content else {
        panic!()
    };
    assert_eq!(ds.rows[1790].labels[0], Some(8));
    let path = dir.join("eight.png");
    image::GrayImage::from_raw(8, 8, data.to_vec())
        .unwrap()
        .save(&path)
        .unwrap();
    path
}

/// `tl predict` of one digit image by `model`: its prediction, after checking that it
/// has ten class probabilities summing to 1.
fn predict_digit(model: &str, png: &std::path::Path) -> serde_json::Value {
    let v = ok_json(&tl(&[
        "--json",
        "predict",
        "--model",
        model,
        png.to_str().unwrap(),
    ]));
    let p = v["results"][0]["predictions"][0].clone();
    let probs: Vec<f64> = p["probabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(probs.len(), 10);
    assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-5);
    p
}

#[test]
fn probe_train_export_predict_on_digits() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("probe");
    let o = tl(&[
        "--json",
        "train",
        "--data",
        "sklearn-digits",
        "--image-size",
        "64",
        "--cs",
        "0.01,0.1,1",
        "--out",
        out.to_str().unwrap(),
    ]);
    let v = ok_json(&o);
    let acc = v["test"][0]["accuracy"].as_f64().unwrap();
    // EfficientNet-Lite0 features of 8×8 digits at 64 px: well above chance (10 %).
    assert!(acc > 0.8, "test accuracy {acc}");
    for f in [
        "config.json",
        "weights.safetensors",
        "metrics.json",
        "manifest.json",
        "split.json",
        "head.json",
        "model.onnx",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["probe_path"][0][1].as_array().unwrap().len(), 3);
    assert_eq!(metrics["schema_version"], 2);
    let e = &metrics["evaluation"][0];
    assert_eq!(e["task"], metrics["test"][0]["task"]);
    assert_eq!(
        e["accuracy"]["value"].as_f64().unwrap(),
        acc,
        "one accuracy"
    );
    assert!(e["calibration"]["temperature"].as_f64().unwrap() > 0.0);
    common::assert_report_carries(&out, e);
    // Export again: the same bytes.
    let again = dir.path().join("again.onnx");
    assert!(
        tl(&[
            "export",
            out.to_str().unwrap(),
            "--out",
            again.to_str().unwrap()
        ])
        .status
        .success()
    );
    assert_eq!(
        std::fs::read(&again).unwrap(),
        std::fs::read(out.join("model.onnx")).unwrap()
    );
    // Predict from the artifact directory and from the exported file.
    let png = digit_png(dir.path());
    for m in [out.to_str().unwrap(), again.to_str().unwrap()] {
        let p = predict_digit(m, &png);
        assert_eq!(p["class"], "8", "{p}");
    }
}

#[test]
fn an_mlp_run_is_reproducible_and_a_rerun_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let args = |out: &str| {
        vec![
            "--json",
            "train",
            "--data",
            "sklearn-digits",
            "--image-size",
            "64",
            "--head",
            "mlp",
            "--hidden",
            "32",
            "--epochs",
            "3",
            "--seed",
            "4",
            "--out",
        ]
        .into_iter()
        .map(String::from)
        .chain([out.to_string()])
        .collect::<Vec<_>>()
    };
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    for out in [&a, &b] {
        let v: Vec<String> = args(out.to_str().unwrap());
        ok_json(&tl(&v.iter().map(String::as_str).collect::<Vec<_>>()));
    }
    let w = |d: &std::path::Path| std::fs::read(d.join("weights.safetensors")).unwrap();
    assert_eq!(w(&a), w(&b), "same seed, same bits");
    // Running again in a finished artifact directory resumes from its checkpoint: no epoch
    // is trained again, and the weights stay the same.
    let v: Vec<String> = args(a.to_str().unwrap());
    let r = ok_json(&tl(&v.iter().map(String::as_str).collect::<Vec<_>>()));
    assert_eq!(r["metrics"]["training"]["resumed_from_epoch"], 3);
    assert_eq!(w(&a), w(&b));
}

#[test]
fn bad_settings_fail_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    let o = out.to_str().unwrap();
    assert_fails_with(
        &tl(&[
            "train",
            "--data",
            "sklearn-digits",
            "--head",
            "mlp",
            "--lr=-1",
            "--out",
            o,
        ]),
        "learning rate",
    );
    assert_fails_with(
        &tl(&[
            "train",
            "--data",
            "sklearn-digits",
            "--head",
            "mlp",
            "--batch-size",
            "0",
            "--out",
            o,
        ]),
        "batch size",
    );
    assert_fails_with(
        &tl(&[
            "train",
            "--data",
            "sklearn-digits",
            "--cs=0.1,-2",
            "--out",
            o,
        ]),
        "C = -2",
    );
    assert_fails_with(
        &tl(&[
            "train",
            "--data",
            "sklearn-digits",
            "--task",
            "colour",
            "--out",
            o,
        ]),
        "has no task `colour`",
    );
    assert_fails_with(
        &tl(&[
            "train",
            "--data",
            "sklearn-digits",
            "--finetune",
            "last",
            "--layer",
            "blocks.3",
            "--out",
            o,
        ]),
        "--layer does not apply",
    );
    assert!(!out.join("weights.safetensors").exists());
    assert_fails_with(
        &tl(&["export", dir.path().to_str().unwrap()]),
        "holds no head.json",
    );
}

#[test]
fn a_text_table_given_by_path_trains_and_a_row_without_label_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    // Two classes told apart by their words; the texts differ row by row.
    let mut tsv = String::from("sentiment\ttext\tsource\n");
    for i in 0..120 {
        let (c, t) = if i % 2 == 0 {
            ("good", format!("a wonderful delightful film, number {i}"))
        } else {
            ("bad", format!("a dreadful tedious mess, number {i}"))
        };
        tsv.push_str(&format!("{c}\t{t}\tweb\n"));
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, tsv.as_bytes()).unwrap();
    let table = dir.path().join("films.tsv.gz");
    std::fs::write(&table, gz.finish().unwrap()).unwrap();
    let out = dir.path().join("run");
    let v = ok_json(&tl(&[
        "--json",
        "train",
        "--model",
        "tfidf",
        "--data",
        table.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    assert_eq!(v["test"][0]["task"], "sentiment", "{}", v["test"][0]);
    let acc = v["test"][0]["accuracy"].as_f64().unwrap();
    assert!(acc >= 0.95, "separable by their words, test accuracy {acc}");
    // A row whose label is missing: the error names the file, the line and the column.
    tsv.push_str("\tan unlabelled row\tweb\n");
    let bad = dir.path().join("bad.tsv");
    std::fs::write(&bad, &tsv).unwrap();
    let o = tl(&[
        "train",
        "--model",
        "tfidf",
        "--data",
        bad.to_str().unwrap(),
        "--out",
        dir.path().join("bad-run").to_str().unwrap(),
    ]);
    assert_fails_with(&o, "bad.tsv");
    assert_fails_with(&o, "line 122");
    assert_fails_with(&o, "sentiment");
}

#[test]
fn a_text_head_trains_exports_with_its_tokenizer_and_predicts_texts() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("text");
    // A small labelled budget keeps the extraction to about 100 reviews.
    let v = ok_json(&tl(&[
        "--json",
        "train",
        "--model",
        "minilm-l6",
        "--data",
        "drug-reviews",
        "--budget",
        "10",
        "--val",
        "0.05",
        "--test",
        "0.05",
        "--cs",
        "0.1,1",
        "--out",
        out.to_str().unwrap(),
    ]));
    assert!(v["test"][0]["rows"].as_u64().unwrap() > 10);
    assert!(
        out.join("model.tokenizer.json").is_file(),
        "the tokenizer is written beside the export"
    );
    let texts = dir.path().join("texts.txt");
    std::fs::write(&texts, "This medicine worked wonders, no side effects at all.\n\nTerrible: it made me sick for weeks.\n").unwrap();
    let v = ok_json(&tl(&[
        "--json",
        "predict",
        "--model",
        out.to_str().unwrap(),
        "--lines",
        texts.to_str().unwrap(),
    ]));
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "blank lines are skipped");
    for r in results {
        let p = &r["predictions"][0];
        let sum: f64 = p["probabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .sum();
        assert!((sum - 1.0).abs() < 1e-5);
    }
    assert_fails_with(
        &tl(&["predict", "--model", out.to_str().unwrap()]),
        "no texts",
    );
}

#[test]
fn the_whole_network_fine_tunes_reproducibly_exports_and_predicts() {
    let dir = tempfile::tempdir().unwrap();
    let args = |out: &std::path::Path| -> Vec<String> {
        [
            "--json",
            "train",
            "--data",
            "sklearn-digits",
            "--finetune",
            "all",
            "--image-size",
            "32",
            "--batchnorm",
            "kept",
            "--freeze-until",
            "blocks.2",
            "--layer-decay",
            "0.8",
            "--augment-rotate",
            "10",
            "--augment-crop",
            "0.8",
            "--budget",
            "10",
            "--epochs",
            "2",
            "--micro-batch",
            "16",
            "--clip-norm",
            "5",
            "--seed",
            "1",
            "--out",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([out.to_str().unwrap().to_string()])
        .collect()
    };
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let run = |out: &std::path::Path, threads: &str| {
        let mut args = args(out);
        args.extend(["--threads".to_string(), threads.to_string()]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        ok_json(&tl(&refs))
    };
    let v = run(&a, "2");
    assert_eq!(v["metrics"]["training"]["epochs_run"], 2, "{v}");
    run(&b, "1");
    // The same seed, with augmentation and micro-batches, on 2 workers and on 1: the same
    // bits.
    assert_eq!(
        std::fs::read(a.join("weights.safetensors")).unwrap(),
        std::fs::read(b.join("weights.safetensors")).unwrap()
    );
    let workers = |dir: &std::path::Path| {
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
        m["threads"].as_u64()
    };
    assert_eq!((workers(&a), workers(&b)), (Some(2), Some(1)));
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["finetune"], "all");
    assert_eq!(cfg["freeze_until"], "blocks.2");
    // The exported network runs in ONNX Runtime from the raw image.
    let png = digit_png(dir.path());
    predict_digit(a.join("model.onnx").to_str().unwrap(), &png);
    // Bad settings fail before any work, naming what is wrong.
    let o = dir.path().join("bad");
    let o = o.to_str().unwrap();
    let base = [
        "train",
        "--data",
        "sklearn-digits",
        "--image-size",
        "32",
        "--out",
        o,
    ];
    let with = |extra: &[&str]| tl(&[&base[..], extra].concat());
    assert_fails_with(
        &with(&["--finetune", "all", "--freeze-until", "blocks.99"]),
        "no node is named `blocks.99`",
    );
    assert_fails_with(
        &with(&["--layer-decay", "0.5"]),
        "--layer-decay applies to --finetune all",
    );
    assert_fails_with(
        &with(&["--init", "random"]),
        "--init random applies to fine-tuned layers",
    );
    assert_fails_with(
        &with(&["--finetune", "all", "--layer-decay", "1.5"]),
        "must be in (0, 1]",
    );
    assert_fails_with(
        &with(&[
            "--finetune",
            "all",
            "--epochs",
            "2",
            "--unfreeze-epoch",
            "2",
        ]),
        "the pretrained layers would never train",
    );
    assert_fails_with(
        &with(&["--finetune", "all", "--unfreeze-every", "1"]),
        "--unfreeze-every needs --unfreeze-epoch",
    );
    assert_fails_with(
        &with(&["--finetune", "all", "--augment-crop", "0"]),
        "augment crop scale",
    );
    assert_fails_with(
        &tl(&[
            "train",
            "--model",
            "minilm-l6",
            "--data",
            "rotten-tomatoes",
            "--finetune",
            "all",
            "--out",
            o,
        ]),
        "--finetune all trains image models from their input",
    );
}
