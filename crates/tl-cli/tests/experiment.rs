//! `tl run EXPERIMENT.toml` end to end on the registry's digits (fetched by
//! `cargo xtask test` first): a learning curve (EfficientNet-Lite0 features against raw
//! pixels) and an adaptation study, resumed cell by cell, with one comparison report; and
//! malformed files failing before any work.

use std::{path::Path, process::Output};

mod common;
use common::{ok_json, tl};

const EXPERIMENT: &str = r#"
title = "test experiment"
seeds = [0, 1]

[[train]]
name = "curve"
budgets = [2, 5]
all = false

[[train.arm]]
label = "EfficientNet-Lite0 probe"
config = { model = "efficientnet-lite0", data = "sklearn-digits", image_size = 32, probe = { cs = [0.1, 1.0] } }

[[train.arm]]
label = "pixels probe (from scratch)"
config = { model = "pixels", data = "sklearn-digits", image_size = 8, probe = { cs = [0.1, 1.0] } }

[[adapt]]
name = "da"
methods = ["none", "coral"]
seeds = [3]
config = { source = "sklearn-digits", target = "sklearn-digits-padded", image_size = 32, train = { epochs = 2 } }
"#;

/// `tl [--json] run FILE --out OUT [extra...]`.
fn tl_run(json: bool, file: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "run",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    if json {
        args.insert(0, "--json");
    }
    args.extend_from_slice(extra);
    tl(&args)
}

fn run(file: &Path, out: &Path) -> serde_json::Value {
    ok_json(&tl_run(true, file, out, &[]))
}

#[test]
fn an_experiment_runs_resumes_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("exp.toml");
    std::fs::write(&file, EXPERIMENT).unwrap();
    let out = dir.path().join("out");
    let v = run(&file, &out);
    // 2 arms × 2 budgets × 2 seeds, plus 2 methods × 1 seed.
    assert_eq!(
        (v["cells"].as_u64(), v["ran"].as_u64()),
        (Some(10), Some(10)),
        "{v}"
    );
    let summary = v["summary"].as_array().unwrap();
    assert_eq!(summary.len(), 6);
    for r in summary {
        let acc = r["accuracy"].as_f64().unwrap();
        assert!(acc > 0.1 && acc <= 1.0, "{r}");
    }
    // A budget of k labels per class is what the cell's run saw (training + validation).
    let cell = out.join("curve/pixels-probe-from-scratch/2-per-class/seed-1");
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cell.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(
        m["rows"]["train"].as_u64().unwrap() + m["rows"]["val"].as_u64().unwrap(),
        20
    );
    assert!(cell.join("report.html").is_file());
    // The comparison report carries every mean: the curve's points and the methods' bars.
    let chromium = tl_eval::browser::Chromium::find().expect("this test needs Chromium");
    let dom = chromium.dump_dom(&out.join("report.html")).unwrap();
    for r in summary {
        let acc = r["accuracy"].as_f64().unwrap();
        let mark = if r["study"] == "curve" {
            format!(
                "data-x=\"{}\" data-y=\"{acc}\"",
                r["labels_per_class"].as_f64().unwrap()
            )
        } else {
            format!("data-value=\"{acc}\"")
        };
        assert!(dom.contains(&mark), "report lacks {mark}");
    }
    assert!(dom.contains("data-plot=\"curves\"") && dom.contains("data-plot=\"bars\""));
    // Resume: a second run reuses every cell and writes the same report; a lost cell is
    // run again, to the same figures.
    let report = std::fs::read(out.join("report.md")).unwrap();
    let again = run(&file, &out);
    assert_eq!(again["ran"], 0);
    assert_eq!(again["summary"], v["summary"]);
    std::fs::remove_file(cell.join("cell.json")).unwrap();
    let again = run(&file, &out);
    assert_eq!(again["ran"], 1);
    let figures = |v: &serde_json::Value| -> Vec<serde_json::Value> {
        let mut rows = v["summary"].as_array().unwrap().clone();
        for r in &mut rows {
            r.as_object_mut().unwrap().remove("seconds");
        }
        rows
    };
    assert_eq!(
        figures(&again),
        figures(&v),
        "the re-run cell gives the same figures"
    );
    let md = String::from_utf8(report).unwrap();
    let now = std::fs::read_to_string(out.join("report.md")).unwrap();
    // Only timings may differ between the two reports.
    let strip = |s: &str| -> Vec<String> {
        s.lines()
            .map(|l| l.rsplit_once(" | ").map_or(l, |(a, _)| a).to_string())
            .collect()
    };
    assert_eq!(strip(&md), strip(&now));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["cells"].as_array().unwrap().len(), 10);
    // The manifest points at every cell's directory, adaptation cells included.
    for c in manifest["cells"].as_array().unwrap() {
        let d = Path::new(c["dir"].as_str().unwrap());
        assert!(d.join("cell.json").is_file(), "{}", d.display());
    }
}

#[test]
fn malformed_experiments_fail_before_any_work_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        // (file text, what the error must name)
        (
            "title = \"x\"\n[[train]]\nname = \"a\"\nbudgest = [1]\n[[train.arm]]\nlabel = \"p\"\nconfig = { model = \"pixels\", data = \"sklearn-digits\" }\n",
            vec!["line 4", "budgest"],
        ),
        (
            "title = \"x\"\n[[train]]\nname = \"a\"\n[[train.arm]]\nlabel = \"p\"\nconfig = { model = \"pixels\", data = \"sklearn-digits\", image_size = \"big\" }\n",
            vec!["line 6", "image_size"],
        ),
        (
            "title = \"x\"\n[[train]]\nname = \"a\"\n[[train.arm]]\nlabel = \"p\"\nconfig = { model = \"no-such-net\", data = \"sklearn-digits\" }\n",
            vec!["unknown model `no-such-net`", "arm `p`"],
        ),
        (
            "title = \"x\"\n[[train]]\nname = \"a\"\n[[train.arm]]\nlabel = \"p\"\nconfig = { model = \"pixels\", data = \"no-such-data\" }\n",
            vec!["unknown data `no-such-data`"],
        ),
        (
            "title = \"x\"\n[[adapt]]\nname = \"d\"\nmethods = [\"mmd\", \"magic\"]\nconfig = { source = \"sklearn-digits\", target = \"sklearn-digits-padded\" }\n",
            vec!["line 4", "magic"],
        ),
        (
            "title = \"x\"\n[[adapt]]\nname = \"d\"\nmethods = [\"mmd\"]\nbudgets = [5, 0]\nconfig = { source = \"sklearn-digits\", target = \"sklearn-digits-padded\" }\n",
            vec!["study `d`: a budget must be at least 1 label per class"],
        ),
        (
            "title = \"x\"\n",
            vec!["no [[train]], [[adapt]] or [[rank]] study"],
        ),
    ];
    for (i, (text, needles)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&file, text).unwrap();
        let out = dir.path().join(format!("out{i}"));
        let o = tl_run(false, &file, &out, &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "case {i} succeeded");
        assert!(
            err.contains(file.to_str().unwrap()),
            "case {i} does not name the file: {err}"
        );
        for n in needles {
            assert!(err.contains(n), "case {i} does not name `{n}`: {err}");
        }
        assert!(!out.exists(), "case {i} wrote {}", out.display());
    }
}

#[test]
fn the_shipped_experiments_are_valid() {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../experiments"));
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = tempfile::tempdir().unwrap();
            let v = ok_json(&tl_run(true, &path, &out.path().join("x"), &["--dry-run"]));
            assert!(v["cells"].as_u64().unwrap() > 0, "{}", path.display());
            assert_eq!(v["ran"], 0);
            assert!(
                !out.path().join("x").exists(),
                "--dry-run wrote {}",
                path.display()
            );
            n += 1;
        }
    }
    assert!(n >= 4, "experiments/ holds {n} files");
}

#[test]
fn a_run_that_fails_half_way_keeps_its_finished_cells_and_report() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("exp.toml");
    // The second arm passes the checks (a known model and data) but fails when run:
    // TF-IDF needs texts.
    std::fs::write(
        &file,
        r#"
title = "half way"
[[train]]
name = "s"
budgets = [3]
all = false
[[train.arm]]
label = "pixels"
config = { model = "pixels", data = "sklearn-digits", image_size = 8, probe = { cs = [1.0] } }
[[train.arm]]
label = "tfidf on images"
config = { model = "tfidf", data = "sklearn-digits" }
"#,
    )
    .unwrap();
    let out = dir.path().join("out");
    let o = tl_run(false, &file, &out, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("[2/2] s / tfidf on images") && err.contains("tfidf"),
        "{err}"
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["cells"].as_array().unwrap().len(), 1);
    assert_eq!(manifest["planned"], 2);
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("| pixels | 3-per-class |") && md.contains("1 of 2 finished"),
        "{md}"
    );
    assert!(out.join("s/pixels/3-per-class/seed-0/cell.json").is_file());
}
