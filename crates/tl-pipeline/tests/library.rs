//! The pipeline as a library: a train run called directly, its progress reported to an
//! observer instead of printed, and errors a caller can match on.

use std::sync::{Arc, Mutex};

use tl_core::progress::Progress;
use tl_pipeline::{
    Env, Error, Observer,
    artifact::files,
    config::{Finetune, RunConfig, SplitSettings},
    train::train,
};

/// Records what the run reports.
#[derive(Debug, Default)]
struct Recorder {
    notes: Mutex<Vec<String>>,
    epochs: Mutex<Vec<usize>>,
}

impl Progress for Recorder {
    fn note(&self, text: &str) {
        self.notes.lock().unwrap().push(text.to_string());
    }
}

impl Observer for Recorder {
    fn epoch(&self, log: &tl_head::train::EpochLog, _: usize) {
        self.epochs.lock().unwrap().push(log.epoch);
    }
}

fn digits(budget: usize) -> RunConfig {
    RunConfig {
        data: "sklearn-digits".into(),
        image_size: Some(32),
        split: SplitSettings {
            budget: Some(budget),
            ..SplitSettings::default()
        },
        ..RunConfig::default()
    }
}

#[test]
fn a_train_run_reports_to_its_observer_and_writes_its_artifact() {
    let tmp = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    let env = Env::new(tl_core::home::tl_home().unwrap()).observed(recorder.clone());
    let mut cfg = digits(10);
    cfg.head = tl_head::net::HeadSpec::mlp(vec![32]);
    cfg.train.epochs = 3;
    let out = tmp.path().join("run");
    let o = train(&cfg, &out, None, &env).unwrap();
    assert_eq!(*recorder.epochs.lock().unwrap(), vec![0, 1, 2]);
    let notes = recorder.notes.lock().unwrap();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("rows:") && n.contains("train")),
        "{notes:?}"
    );
    assert_eq!(o.metrics.test.len(), 1);
    assert!(o.exported.is_ok(), "{:?}", o.exported);
    for f in [
        files::CONFIG,
        files::HEAD,
        files::METRICS,
        files::MANIFEST,
        files::WEIGHTS,
        files::SPLIT,
        files::MODEL,
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let manifest: tl_pipeline::artifact::Manifest =
        tl_core::io::read_json(&out.join(files::MANIFEST)).unwrap();
    assert_eq!(manifest.dataset, "sklearn-digits");
    assert_eq!(
        manifest.weights_sha256,
        tl_core::hash::sha256_file(&out.join(files::WEIGHTS)).unwrap()
    );
}

#[test]
fn bad_settings_are_errors_a_caller_can_match_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let env = Env::new(tl_core::home::tl_home().unwrap());
    let mut cfg = digits(5);
    cfg.finetune = Finetune::Last;
    cfg.pretrained_lr = -1.0;
    let out = tmp.path().join("never");
    let err = train(&cfg, &out, None, &env).unwrap_err();
    assert_eq!(err.setting_key(), Some("pretrained_lr"), "{err}");
    assert!(
        !out.exists(),
        "nothing is written before the settings are checked"
    );
    let mut cfg = digits(5);
    cfg.layer_decay = 0.5;
    let err = train(&cfg, &out, None, &env).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Setting {
                key: "layer_decay",
                ..
            }
        ),
        "{err:?}"
    );
}
