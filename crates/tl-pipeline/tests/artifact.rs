//! Artifacts written before the pipeline became a library still load and export to the
//! same bytes; an artifact of an unknown `schema_version` fails with that version named.

use std::path::{Path, PathBuf};

use tl_pipeline::{
    Error,
    artifact::{HeadMeta, Metrics, export_artifact, files},
    config::RunConfig,
};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/artifact-2ba04e5"
);

/// A copy of the fixture whose backbone path is the fetched EfficientNet-Lite0.
fn fixture_copy(dir: &Path) -> PathBuf {
    let home = tl_core::home::tl_home().unwrap();
    let registry = tl_hub::Registry::builtin().unwrap();
    let entry = registry.get("efficientnet-lite0").unwrap();
    let model = tl_hub::model_path(&home, entry, false).unwrap();
    for f in ["config.json", "weights.safetensors", "metrics.json"] {
        std::fs::copy(Path::new(FIXTURE).join(f), dir.join(f)).unwrap();
    }
    let mut head: serde_json::Value =
        serde_json::from_slice(&std::fs::read(Path::new(FIXTURE).join("head.json")).unwrap())
            .unwrap();
    head["model_file"] = model.display().to_string().into();
    std::fs::write(
        dir.join(files::HEAD),
        serde_json::to_vec_pretty(&head).unwrap(),
    )
    .unwrap();
    dir.to_path_buf()
}

#[test]
fn an_artifact_from_before_the_library_loads_and_exports_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fixture_copy(tmp.path());
    let meta = HeadMeta::read(&dir.join(files::HEAD)).unwrap();
    assert_eq!(meta.tasks[0].classes.len(), 10);
    assert_eq!(meta.feature_width, 1280);
    let cfg: RunConfig = tl_core::io::read_json(&dir.join(files::CONFIG)).unwrap();
    assert_eq!(cfg.image_size, Some(64));
    let metrics: Metrics = tl_core::io::read_json(&dir.join(files::METRICS)).unwrap();
    assert_eq!(metrics.schema_version, 2);
    assert!(metrics.evaluation[0].evaluation.accuracy.value > 0.1);
    let exported = export_artifact(&dir, &dir.join(files::MODEL)).unwrap();
    // The fixture's hash is of the export before exports were sealed: the same bytes
    // without the `tl.sha256` entry.
    let mut proto = tl_onnx::OnnxModel::load(&exported).unwrap().into_proto();
    let sealed = proto.metadata_props.len();
    proto
        .metadata_props
        .retain(|e| e.key != tl_core::metadata::SELF_SHA256);
    assert_eq!(proto.metadata_props.len(), sealed - 1);
    let expected = std::fs::read_to_string(Path::new(FIXTURE).join("model.onnx.sha256")).unwrap();
    assert_eq!(
        tl_core::hash::sha256_bytes(&prost::Message::encode_to_vec(&proto)),
        expected.trim(),
        "the export of an old artifact changed"
    );
}

#[test]
fn an_artifact_of_another_schema_version_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fixture_copy(tmp.path());
    let path = dir.join(files::HEAD);
    let mut head: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    head["schema_version"] = 7.into();
    std::fs::write(&path, serde_json::to_vec(&head).unwrap()).unwrap();
    let err = export_artifact(&dir, &dir.join(files::MODEL)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::SchemaVersion {
                found: 7,
                supported: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("schema_version 7"), "{err}");
    assert!(!dir.join(files::MODEL).exists());
}

#[test]
fn a_changed_backbone_is_refused_with_both_hashes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fixture_copy(tmp.path());
    let path = dir.join(files::HEAD);
    let mut head: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    // A hand-edited hash shorter than the 12 characters shown must not panic.
    head["model_sha256"] = "abc".into();
    std::fs::write(&path, serde_json::to_vec(&head).unwrap()).unwrap();
    let err = export_artifact(&dir, &dir.join(files::MODEL)).unwrap_err();
    assert!(err.to_string().contains("changed since training"), "{err}");
    assert!(err.to_string().contains("trained on abc"), "{err}");
}

#[test]
fn weights_that_changed_since_the_manifest_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fixture_copy(tmp.path());
    let weights = dir.join(files::WEIGHTS);
    let mut manifest = tl_pipeline::artifact::Manifest::new(&[]);
    manifest.weights_sha256 = tl_core::hash::sha256_file(&weights).unwrap();
    tl_core::io::write_json(&dir.join(files::MANIFEST), &manifest).unwrap();
    // As recorded: exports.
    export_artifact(&dir, &tmp.path().join("ok.onnx")).unwrap();
    // One byte flipped in the tensors' data (the header is at the start).
    let mut bytes = std::fs::read(&weights).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x01;
    std::fs::write(&weights, bytes).unwrap();
    let err = export_artifact(&dir, &tmp.path().join("bad.onnx"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("weights.safetensors") && err.contains("manifest.json recorded"),
        "{err}"
    );
    assert!(!tmp.path().join("bad.onnx").exists());
}

/// An exported file carries its own sha256 (`tl.sha256`): the predictor opens it as
/// written, and refuses a copy with one weight byte flipped, or with the seal removed,
/// naming the file.
#[test]
fn an_exported_model_that_changed_is_refused_by_the_predictor() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fixture_copy(tmp.path());
    let exported = export_artifact(&dir, &tmp.path().join("ok.onnx")).unwrap();
    let env = tl_pipeline::Env::new(tl_core::home::tl_home().unwrap())
        .with_fetching(tl_pipeline::Fetching::Offline);
    tl_pipeline::predict::Predictor::open(&exported, &env).unwrap();

    let bytes = std::fs::read(&exported).unwrap();
    let mut flipped = bytes.clone();
    // Past the first fifth, inside the backbone's weights.
    let at = bytes.len() / 5;
    flipped[at] ^= 0x01;
    let bad = tmp.path().join("flipped.onnx");
    std::fs::write(&bad, &flipped).unwrap();
    let err = tl_pipeline::predict::Predictor::open(&bad, &env)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("flipped.onnx") && err.contains("changed since tl wrote it"),
        "{err}"
    );

    let mut model = tl_onnx::OnnxModel::load(&exported).unwrap().into_proto();
    model
        .metadata_props
        .retain(|e| e.key != tl_core::metadata::SELF_SHA256);
    let unsealed = tmp.path().join("unsealed.onnx");
    std::fs::write(&unsealed, prost::Message::encode_to_vec(&model)).unwrap();
    let err = tl_pipeline::predict::Predictor::open(&unsealed, &env)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unsealed.onnx") && err.contains("tl.sha256"),
        "{err}"
    );
}
