//! Helpers shared by the CLI's tests (each test crate uses some of them).
#![allow(dead_code)]

use std::{
    path::Path,
    process::{Command, Output},
};

/// Runs the `tl` binary built for the tests.
pub fn tl(args: &[&str]) -> Output {
    // Tests never reach the network: offline, on what `cargo xtask test` fetched.
    Command::new(env!("CARGO_BIN_EXE_tl"))
        .args(args)
        .env("TL_OFFLINE", "1")
        .output()
        .expect("run tl")
}

/// The JSON a successful `tl --json ...` printed.
pub fn ok_json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The run's `report.html`, rendered by headless Chromium, shows the confusion matrix and
/// headline accuracy of `evaluation` (one entry of the run's `metrics.json`), and
/// `report.md` carries the same accuracy.
pub fn assert_report_carries(out: &Path, evaluation: &serde_json::Value) {
    let chromium = tl_eval::browser::Chromium::find().expect("the report check needs Chromium");
    let dom = chromium.dump_dom(&out.join("report.html")).unwrap();
    let counts: Vec<Vec<u64>> = serde_json::from_value(evaluation["confusion"]["counts"].clone())
        .expect("confusion counts");
    assert!(!counts.is_empty());
    assert!(dom.contains("data-plot=\"reliability\""));
    if let Err(e) = tl_eval::browser::check_confusion_cells(&dom, &counts) {
        panic!("report.html: {e}");
    }
    let acc = format!(
        "{:.2} %",
        100.0 * evaluation["accuracy"]["value"].as_f64().unwrap()
    );
    assert!(dom.contains(&acc), "report.html lacks the accuracy {acc}");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains(&acc), "report.md lacks the accuracy {acc}");
}
