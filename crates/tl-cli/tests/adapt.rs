//! `tl adapt` and `tl shift` end to end on the registry's digits and EfficientNet-Lite0
//! at 64 px (fetched by `cargo xtask test` first), with target folders written here.

use std::path::Path;

mod common;
use common::{ok_json, tl};

/// The first `n` scikit-learn digits as PNGs in class folders, each digit filed under
/// `relabel(true class)`.
fn digit_folder(dir: &Path, n: usize, relabel: impl Fn(u32) -> u32) {
    let home = tl_core::home::tl_home().unwrap();
    let ds = tl_hub::Registry::builtin()
        .unwrap()
        .get("sklearn-digits")
        .unwrap()
        .load_dataset(&home)
        .unwrap();
    for (i, row) in ds.rows.iter().take(n).enumerate() {
        let tl_data::Content::Pixels { data, .. } = &row.content else {
            panic!()
        };
        let class = relabel(row.labels[0].unwrap());
        let sub = dir.join(class.to_string());
        std::fs::create_dir_all(&sub).unwrap();
        image::GrayImage::from_raw(8, 8, data.to_vec())
            .unwrap()
            .save(sub.join(format!("d{i:04}.png")))
            .unwrap();
    }
}

/// A small run: 20 labelled MNIST rows per class, 64 px, 3 epochs.
fn adapt_args<'a>(target: &'a str, method: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "--json",
        "adapt",
        "--source",
        "mnist-5k",
        "--budget",
        "20",
        "--target",
        target,
        "--image-size",
        "64",
        "--method",
        method,
        "--epochs",
        "3",
        "--out",
        out,
    ]
}

/// Exported probabilities against the run's own: the exported graph recomputes the
/// features (ONNX Runtime, batches padded differently) in f32, the run's file has 6
/// decimals.
const EXPORTED_TOL: f64 = 1e-4;

/// `tl predict` on the first `n` target rows through the run's exported model agrees
/// with the run's `target_predictions.csv`; `input_of` maps a row id to its text or image
/// file. Returns how many predictions pooled several sentences.
fn exported_model_agrees(out: &Path, input_of: &dyn Fn(&str) -> String, n: usize) -> usize {
    let mut r = csv::Reader::from_path(out.join("target_predictions.csv")).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header[..2], ["id", "class"]);
    let rows: Vec<Vec<String>> = r
        .records()
        .take(n)
        .map(|rec| rec.unwrap().iter().map(String::from).collect())
        .collect();
    assert_eq!(rows.len(), n);
    let texts: Vec<String> = rows.iter().map(|row| input_of(&row[0])).collect();
    let model = out.join("model.onnx");
    let mut args = vec!["--json", "predict", "--model", model.to_str().unwrap()];
    args.extend(texts.iter().map(String::as_str));
    let v = ok_json(&tl(&args));
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), n);
    let mut pooled = 0;
    for (row, res) in rows.iter().zip(results) {
        let pred = &res["predictions"][0];
        assert_eq!(pred["class"], row[1].as_str(), "{}", row[0]);
        for (k, want) in row[2..].iter().enumerate() {
            let want: f64 = want.parse().unwrap();
            let got = pred["probabilities"][k].as_f64().unwrap();
            assert!(
                (got - want).abs() < EXPORTED_TOL,
                "{} {}: exported {got}, run {want}",
                row[0],
                header[2 + k]
            );
        }
        if res["sentences"].as_u64().is_some_and(|s| s > 1) {
            pooled += 1;
        }
    }
    pooled
}

#[test]
fn target_labels_never_reach_training() {
    let dir = tempfile::tempdir().unwrap();
    let (true_dir, permuted_dir) = (dir.path().join("true"), dir.path().join("permuted"));
    digit_folder(&true_dir, 200, |y| y);
    digit_folder(&permuted_dir, 200, |y| (y + 3) % 10);
    for method in ["mcc", "self-train", "adabn", "propagate"] {
        let (a, b) = (
            dir.path().join(format!("{method}-a")),
            dir.path().join(format!("{method}-b")),
        );
        let ra = ok_json(&tl(&adapt_args(
            true_dir.to_str().unwrap(),
            method,
            a.to_str().unwrap(),
        )));
        let rb = ok_json(&tl(&adapt_args(
            permuted_dir.to_str().unwrap(),
            method,
            b.to_str().unwrap(),
        )));
        let wa = std::fs::read(a.join("weights.safetensors")).unwrap();
        let wb = std::fs::read(b.join("weights.safetensors")).unwrap();
        assert!(
            wa == wb,
            "{method}: permuting the target's labels changed the trained weights"
        );
        // The labels did reach the evaluation: the scores differ.
        let (sa, sb) = (
            ra["target_scores"]["accuracy"]["value"].as_f64().unwrap(),
            rb["target_scores"]["accuracy"]["value"].as_f64().unwrap(),
        );
        assert!(sa != sb, "{method}: scores {sa} and {sb}");
        assert_eq!(ra["rows"]["target"], 200);
    }
}

#[test]
fn a_few_target_labels_train_and_are_left_out_of_the_scores() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("digits");
    digit_folder(&target, 200, |y| y);
    let run = |k: &str, out: &Path| {
        let mut args = adapt_args(target.to_str().unwrap(), "none", out.to_str().unwrap());
        args.extend(["--target-labels", k]);
        tl(&args)
    };
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let v = ok_json(&run("3", &a));
    let per_class: u64 = 3 * 10;
    assert_eq!(v["rows"]["target_labelled"], per_class);
    assert_eq!(v["rows"]["target"], 200);
    assert_eq!(v["target_scores"]["rows"], 200 - per_class);
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["target_labels"], 3);
    let report = std::fs::read_to_string(a.join("report.md")).unwrap();
    assert!(report.contains("semi-supervised"), "{report}");
    // Seeded: the same rows are drawn and the same bits trained.
    ok_json(&run("3", &b));
    assert_eq!(
        std::fs::read(a.join("weights.safetensors")).unwrap(),
        std::fs::read(b.join("weights.safetensors")).unwrap()
    );
    // The labels change the model: without them it is another one.
    let c = dir.path().join("c");
    ok_json(&tl(&adapt_args(
        target.to_str().unwrap(),
        "none",
        c.to_str().unwrap(),
    )));
    assert_ne!(
        std::fs::read(a.join("weights.safetensors")).unwrap(),
        std::fs::read(c.join("weights.safetensors")).unwrap()
    );
    // A class without rows to spare for scoring is refused by name.
    let o = run("40", &dir.path().join("d"));
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--target-labels 40") && err.contains("class `0`"),
        "{err}"
    );
}

/// AdaBN writes one backbone per domain: the BatchNorm-kept graph with that domain's
/// statistics and every weight kept; a model without BatchNorm layers is refused.
#[test]
fn adabn_renormalises_each_domain_and_needs_batchnorm_layers() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("adabn-digits");
    digit_folder(&target, 120, |y| y);
    let out = dir.path().join("out");
    let v = ok_json(&tl(&adapt_args(
        target.to_str().unwrap(),
        "adabn",
        out.to_str().unwrap(),
    )));
    assert_eq!(v["summary"]["method"], "adabn");
    let home = tl_core::home::tl_home().unwrap();
    let kept = tl_onnx::OnnxModel::load(
        &tl_core::home::model_dir(&home, "efficientnet-lite0").join("model-bn.onnx"),
    )
    .unwrap();
    let norms = kept.batch_norms().unwrap();
    let values = |m: &tl_onnx::OnnxModel, name: &str| {
        tl_onnx::tensor_values_f32(m.initializer(name).unwrap())
            .unwrap()
            .1
    };
    // The target's backbone, found by its metadata among the adapted ones (its 120 rows:
    // no other test adapts to 120 rows).
    let adapted = std::fs::read_dir(home.join("adapted"))
        .unwrap()
        .map(|e| e.unwrap().path().join("model.onnx"))
        .filter(|p| p.is_file())
        .map(|p| tl_onnx::OnnxModel::load(&p).unwrap())
        .find(|m| {
            m.metadata().get("tl.adabn").is_some_and(|j| {
                let j: serde_json::Value = serde_json::from_str(j).unwrap();
                j["rows"] == 120
            })
        })
        .expect("the target's adapted backbone");
    // Only running statistics changed: every other initializer is the backbone's.
    let stats: std::collections::HashSet<&str> = norms
        .iter()
        .flat_map(|b| [b.mean.as_str(), b.var.as_str()])
        .collect();
    let graph = |m: &tl_onnx::OnnxModel| m.proto().graph.clone().unwrap();
    let mut kept_weights = 0;
    for t in graph(&kept).initializer {
        if stats.contains(t.name.as_str()) {
            continue;
        }
        assert_eq!(
            values(&adapted, &t.name),
            values(&kept, &t.name),
            "{}",
            t.name
        );
        kept_weights += 1;
    }
    assert!(
        kept_weights > norms.len() * 2,
        "{kept_weights} weights compared"
    );
    let changed = norms
        .iter()
        .filter(|b| values(&adapted, &b.mean) != values(&kept, &b.mean))
        .count();
    assert_eq!(
        changed,
        norms.len(),
        "every BatchNorm's mean is re-estimated"
    );
    // The exported model is built on the target's adapted backbone: it predicts the
    // target's images as the run did.
    let input_of = |id: &str| target.join(id).display().to_string();
    exported_model_agrees(&out, &input_of, 20);
    let text = tl(&[
        "adapt",
        "--source",
        "rotten-tomatoes",
        "--target",
        "drug-reviews",
        "--model",
        "minilm-l6",
        "--class-map",
        "rotten=negative,fresh=positive",
        "--method",
        "adabn",
    ]);
    assert!(!text.status.success());
    let err = String::from_utf8_lossy(&text.stderr);
    assert!(
        err.contains("BatchNorm") && err.contains("minilm-l6"),
        "{err}"
    );
}

#[test]
fn adapt_writes_its_artifact_and_reports_shift() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mmd");
    let v = ok_json(&tl(&adapt_args(
        "sklearn-digits",
        "mmd",
        out.to_str().unwrap(),
    )));
    for f in [
        "config.json",
        "metrics.json",
        "weights.safetensors",
        "split.json",
        "checkpoint/optimizer.json",
    ] {
        assert!(out.join(f).is_file(), "missing {f}");
    }
    assert_eq!(v["summary"]["method"], "mmd");
    assert_eq!(v["rows"]["target"], 1797);
    // `--segments auto` leaves images whole.
    assert_eq!(v["segments"], "none");
    assert!(v["median_words"][1].is_null());
    let acc = &v["target_scores"]["accuracy"];
    let (val, lo, hi) = (
        acc["value"].as_f64().unwrap(),
        acc["low"].as_f64().unwrap(),
        acc["high"].as_f64().unwrap(),
    );
    assert!(lo <= val && val <= hi && val > 0.1, "{acc}");
    common::assert_report_carries(&out, &v["target_scores"]);
    let before = v["shift_before"]["proxy_a_distance"].as_f64().unwrap();
    assert!(before > 1.0, "MNIST and 8×8 digits are far apart: {before}");
    assert!(
        v["shift_after"]["mmd2_gaussian"].as_f64().unwrap()
            < v["shift_before"]["mmd2_gaussian"].as_f64().unwrap()
    );
    // The same command again resumes from the finished checkpoint: the same weights.
    let w = std::fs::read(out.join("weights.safetensors")).unwrap();
    ok_json(&tl(&adapt_args(
        "sklearn-digits",
        "mmd",
        out.to_str().unwrap(),
    )));
    assert!(w == std::fs::read(out.join("weights.safetensors")).unwrap());
    // The exported model predicts target digits, written as PNGs, as the run did.
    let home = tl_core::home::tl_home().unwrap();
    let digits = tl_hub::Registry::builtin()
        .unwrap()
        .get("sklearn-digits")
        .unwrap()
        .load_dataset(&home)
        .unwrap();
    let pngs = dir.path().join("png");
    std::fs::create_dir_all(&pngs).unwrap();
    let input_of = |id: &str| {
        let row = digits.rows.iter().find(|r| r.id == id).unwrap();
        let tl_data::Content::Pixels { data, .. } = &row.content else {
            panic!()
        };
        let f = pngs.join(format!("{}.png", id.replace([':', '/'], "_")));
        image::GrayImage::from_raw(8, 8, data.to_vec())
            .unwrap()
            .save(&f)
            .unwrap();
        f.display().to_string()
    };
    exported_model_agrees(&out, &input_of, 20);
    // Closed-form CORAL: a probe, no training.
    let v = ok_json(&tl(&adapt_args(
        "sklearn-digits",
        "coral-closed",
        dir.path().join("cc").to_str().unwrap(),
    )));
    assert!(v["summary"]["best_c"].as_f64().is_some());
}

/// Long reviews against one-sentence snippets: `auto` cuts the target into sentences,
/// the method sees sentence rows and the evaluation counts reviews.
#[test]
fn long_target_texts_are_cut_into_sentences_and_pooled_per_review() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let home = tl_core::home::tl_home().unwrap();
    let drug = tl_hub::Registry::builtin()
        .unwrap()
        .get("drug-reviews")
        .unwrap()
        .load_dataset(&home)
        .unwrap();
    // The reviews the binary task labels (neutral dropped), and their sentences.
    let (reviews, sentences) =
        drug.rows
            .iter()
            .filter(|r| r.labels[0].is_some())
            .fold((0usize, 0usize), |(n, s), r| match &r.content {
                tl_data::Content::Text(t) => (n + 1, s + tl_data::segment::sentences(t).len()),
                _ => panic!("drug reviews are texts"),
            });
    let v = ok_json(&tl(&[
        "--json",
        "adapt",
        "--source",
        "rotten-tomatoes",
        "--budget",
        "20",
        "--target",
        "drug-reviews",
        "--model",
        "minilm-l6",
        "--class-map",
        "rotten=negative,fresh=positive",
        "--method",
        "prior",
        "--out",
        out.to_str().unwrap(),
    ]));
    assert_eq!(v["segments"], "sentences");
    let (ms, mt) = (
        v["median_words"][0].as_f64().unwrap(),
        v["median_words"][1].as_f64().unwrap(),
    );
    assert!(mt > 2.0 * ms, "auto cut at medians {ms} and {mt}");
    assert_eq!(v["rows"]["target"], reviews);
    assert_eq!(v["rows"]["target_sentences"], sentences);
    assert!(
        sentences > 3 * reviews,
        "{sentences} sentences of {reviews} reviews"
    );
    let scores = &v["target_scores"];
    assert_eq!(
        scores["rows"], reviews,
        "scored per review, not per sentence"
    );
    let counted: u64 = scores["confusion"]["counts"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|c| c.as_u64().unwrap())
        .sum();
    assert_eq!(counted, reviews as u64);
    // The exported model (standardisation, probe and prior correction in one graph) cuts
    // a text into sentences as the run did and pools them to the run's probabilities.
    let text_of = |id: &str| match &drug.rows.iter().find(|r| r.id == id).unwrap().content {
        tl_data::Content::Text(t) => t.clone(),
        _ => unreachable!(),
    };
    let pooled = exported_model_agrees(&out, &text_of, 40);
    assert!(
        pooled > 30,
        "{pooled} of 40 reviews pooled several sentences"
    );
    // A segmentation that is not one of the three is refused by name.
    let bad = tl(&["adapt", "--segments", "paragraphs"]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("paragraphs"), "{err}");
}

/// The first `n` drug reviews the binary task labels, as (text, class name).
fn drug_reviews(n: usize) -> Vec<(String, String)> {
    let home = tl_core::home::tl_home().unwrap();
    let drug = tl_hub::Registry::builtin()
        .unwrap()
        .get("drug-reviews")
        .unwrap()
        .load_dataset(&home)
        .unwrap();
    drug.rows
        .iter()
        .filter_map(|r| match (&r.content, r.labels[0]) {
            (tl_data::Content::Text(t), Some(l)) => {
                Some((t.clone(), drug.tasks[0].classes[l as usize].clone()))
            }
            _ => None,
        })
        .take(n)
        .collect()
}

#[test]
fn a_users_own_text_tables_are_read_by_path_and_an_unlabelled_target_takes_part() {
    let dir = tempfile::tempdir().unwrap();
    let reviews = drug_reviews(120);
    // The same reviews twice: a labelled CSV and an unlabelled JSONL.
    let csv = dir.path().join("labelled.csv");
    let mut w = csv::Writer::from_path(&csv).unwrap();
    w.write_record(["id", "review", "sentiment"]).unwrap();
    for (i, (t, c)) in reviews.iter().enumerate() {
        w.write_record([i.to_string().as_str(), t, c]).unwrap();
    }
    w.flush().unwrap();
    let jsonl = dir.path().join("unlabelled.jsonl");
    let lines: Vec<String> = reviews
        .iter()
        .map(|(t, _)| serde_json::json!({ "text": t }).to_string())
        .collect();
    std::fs::write(&jsonl, lines.join("\n")).unwrap();

    let info = ok_json(&tl(&["--json", "data", "info", csv.to_str().unwrap()]));
    assert_eq!(info["rows"], reviews.len());
    let read_as = info["read_as"].as_str().unwrap();
    assert!(
        read_as.contains("text column `review`") && read_as.contains("task `sentiment`"),
        "{read_as}"
    );
    let positives = reviews.iter().filter(|(_, c)| c == "positive").count();
    let tasks = &info["tasks"][0];
    let pos = tasks["classes"]
        .as_array()
        .unwrap()
        .iter()
        .position(|c| c == "positive")
        .unwrap();
    assert_eq!(tasks["counts"][pos], positives);

    let run = |target: &Path, out: &Path| {
        ok_json(&tl(&[
            "--json",
            "adapt",
            "--source",
            "rotten-tomatoes",
            "--budget",
            "20",
            "--target",
            target.to_str().unwrap(),
            "--model",
            "minilm-l6",
            "--class-map",
            "rotten=negative,fresh=positive",
            "--segments",
            "none",
            "--method",
            "entropy",
            "--epochs",
            "3",
            "--out",
            out.to_str().unwrap(),
        ]))
    };
    let (out_l, out_u) = (dir.path().join("l"), dir.path().join("u"));
    let labelled = run(&csv, &out_l);
    let unlabelled = run(&jsonl, &out_u);
    assert_eq!(labelled["rows"]["target"], reviews.len());
    assert_eq!(unlabelled["rows"]["target"], reviews.len());
    assert_eq!(labelled["target_scores"]["rows"], reviews.len());
    assert!(
        unlabelled["target_scores"].is_null(),
        "an unlabelled target has nothing to score: {}",
        unlabelled["target_scores"]
    );
    // The target's labels are read only to score: both runs train the same model.
    assert_eq!(
        std::fs::read(out_l.join("weights.safetensors")).unwrap(),
        std::fs::read(out_u.join("weights.safetensors")).unwrap()
    );
    // The exported network (target standardisation, adapter, head) predicts the target
    // as the run did; the JSONL's row ids are `unlabelled.jsonl:<line>`.
    let text_of = |id: &str| {
        let line: usize = id.rsplit(':').next().unwrap().parse().unwrap();
        reviews[line - 1].0.clone()
    };
    assert_eq!(
        exported_model_agrees(&out_u, &text_of, 30),
        0,
        "--segments none"
    );
    // Word vectors: each domain measures its own out-of-vocabulary rate, which is not a
    // difference in preprocessing; there is no graph to export, the predictions are kept.
    let out_g = dir.path().join("glove");
    let g = ok_json(&tl(&[
        "--json",
        "adapt",
        "--source",
        csv.to_str().unwrap(),
        "--target",
        jsonl.to_str().unwrap(),
        "--model",
        "glove-6b-50d",
        "--segments",
        "none",
        "--method",
        "coral-closed",
        "--out",
        out_g.to_str().unwrap(),
    ]));
    assert!(g["exported"].is_null() && !out_g.join("model.onnx").exists());
    let kept = std::fs::read_to_string(out_g.join("target_predictions.csv")).unwrap();
    assert_eq!(kept.lines().count(), 1 + reviews.len());
}

#[test]
fn shift_measures_layers_and_bad_domains_fail_clearly() {
    let o = tl(&[
        "--json",
        "shift",
        "--source",
        "mnist-5k",
        "--target",
        "sklearn-digits",
        "--image-size",
        "64",
    ]);
    let v = ok_json(&o);
    let pad = v["layers"][0]["shift"]["proxy_a_distance"]
        .as_f64()
        .unwrap();
    assert!((0.0..=2.0).contains(&pad), "{v}");
    // Label sets that do not match, and a class map naming a class the source lacks.
    let o = tl(&[
        "adapt",
        "--source",
        "mnist-5k",
        "--target",
        "rotten-tomatoes",
        "--model",
        "efficientnet-lite0",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("label sets do not match"),
        "{err}"
    );
    let o = tl(&["adapt", "--class-map", "eleven=1"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("source class `eleven`"),
        "{err}"
    );
    // A linear head has no adapter to align.
    let o = tl(&["adapt", "--hidden", ""]);
    assert!(!o.status.success());
}

#[test]
fn rank_scores_candidates_and_correlates_them_with_the_probe() {
    // `tl rank` on sklearn-digits, 10 labelled rows per class.
    let rank = |image_size: &str, models: &str| {
        ok_json(&tl(&[
            "--json",
            "rank",
            "--data",
            "sklearn-digits",
            "--image-size",
            image_size,
            "--budget",
            "10",
            "--models",
            models,
        ]))
    };
    let v = rank("64", "efficientnet-lite0,efficientnet-lite0:blocks.12");
    let c = v["candidates"].as_array().unwrap();
    assert_eq!(c.len(), 2);
    assert_eq!(c[1]["layer"], "blocks.12");
    for cand in c {
        assert!(cand["logme"].as_f64().unwrap().is_finite());
        assert!(
            cand["leep"].as_f64().unwrap() <= 0.0,
            "LEEP is a mean log-probability"
        );
        let acc = cand["probe_test_accuracy"].as_f64().unwrap();
        assert!(acc > 0.5, "{cand}");
    }
    // One model: its source classifier is the same for both layers.
    assert_eq!(c[0]["nce"], c[1]["nce"]);
    let tau = v["kendall_tau_with_probe_accuracy"]["logme"]
        .as_f64()
        .unwrap();
    assert!((-1.0..=1.0).contains(&tau));
    // A budget of 10 per class: 9 training and 1 validation row per class.
    assert_eq!(v["rows"]["train"], 90, "{}", v["rows"]);
    // 90 rows of 1,280 features at 32 px, where the fit interpolates: EfficientNet-Lite0's
    // LogME was NaN (computed from the 1,280 × 1,280 FᵀF) and ranked nothing.
    let v = rank("32", "efficientnet-lite0,mobilenet-v2");
    for cand in v["candidates"].as_array().unwrap() {
        let logme = cand["logme"].as_f64();
        assert!(logme.is_some_and(f64::is_finite), "{cand}");
    }
    assert!(
        v["kendall_tau_with_probe_accuracy"]["logme"]
            .as_f64()
            .is_some()
    );
}
