//! The experiment runner as a library: a semi-supervised sweep and a rank study run by
//! `experiment::run`, read back as typed outputs by `experiment::outputs` (what the
//! benchmark report renders), and a cell not yet run refused by name. Uses the registry's
//! digits and both ImageNet backbones, fetched by `cargo xtask test` first.

use tl_pipeline::{
    Env,
    experiment::{ExperimentRun, RunOutput, outputs, plan, run},
};

const EXPERIMENT: &str = r#"
title = "sweep and ranking"
seeds = [0]

[[adapt]]
name = "semi"
methods = ["none"]
target_labels = [0, 2]
config = { source = "sklearn-digits", target = "sklearn-digits-padded", image_size = 32, train = { epochs = 2 } }

[[rank]]
name = "ranking"
seeds = [0, 1]
config = { data = "sklearn-digits", image_size = 32, budget = 10, models = ["efficientnet-lite0", "mobilenet-v2"] }
"#;

#[test]
fn sweeps_and_rankings_run_and_read_back_typed() {
    let home = tl_core::home::tl_home().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("exp.toml");
    std::fs::write(&file, EXPERIMENT).unwrap();
    let job = ExperimentRun {
        file,
        out: Some(dir.path().join("out")),
        studies: Vec::new(),
    };
    // Before running, the outputs are refused, naming the first cell.
    let err = outputs(&job).unwrap_err().to_string();
    assert!(
        err.contains("semi / none / all / 0 target labels / seed 0") && err.contains("tl run"),
        "{err}"
    );
    let p = plan(&job).unwrap();
    let dirs: Vec<String> = p
        .cells
        .iter()
        .map(|c| c.dir.strip_prefix(&p.out).unwrap().display().to_string())
        .collect();
    assert_eq!(
        dirs,
        [
            "semi/none/all/target-0/seed-0",
            "semi/none/all/target-2/seed-0",
            "ranking/ranking/10-per-class/seed-0",
            "ranking/ranking/10-per-class/seed-1",
        ]
    );
    // The swept count is the run's `target_labels` (0: none).
    assert!(p.cells[0].config.get("target_labels").is_none());
    assert_eq!(p.cells[1].config["target_labels"], 2);
    let o = run(&job, &Env::new(home.clone())).unwrap();
    assert_eq!((o.cells, o.ran), (4, 4));
    // Only the adapt cells have scores to summarise; each sweep point is its own row.
    let ks: Vec<Option<usize>> = o.summary.iter().map(|r| r.target_labels).collect();
    assert_eq!(ks, [Some(0), Some(2)]);

    let cells = outputs(&job).unwrap();
    assert_eq!(cells.len(), 4);
    for c in &cells {
        match (&c.output, c.id.target_labels) {
            (RunOutput::Adapt(m), Some(k)) => {
                let classes = m.target_scores.as_ref().unwrap().classes.len();
                assert_eq!(classes, 10);
                let labelled = m.rows.get("target_labelled").copied().unwrap_or(0);
                assert_eq!(labelled, k * classes, "{c:?}");
            }
            (RunOutput::Rank(r), None) => {
                assert_eq!(r.candidates.len(), 2);
                // 10 rows per class for training and validation together.
                assert_eq!(r.rows.train + r.rows.val, 100);
                let tau = r.kendall_tau_with_probe_accuracy.h_score.unwrap();
                assert!(
                    tau == 1.0 || tau == -1.0,
                    "two candidates: τ = ±1, got {tau}"
                );
            }
            other => panic!("unexpected cell output {other:?}"),
        }
    }
    let report = std::fs::read_to_string(o.out.join("report.md")).unwrap();
    assert!(
        report.contains("## Study: ranking (ranking candidates for sklearn-digits)"),
        "{report}"
    );
    assert!(report.contains("| target labels / class |"), "{report}");
}
