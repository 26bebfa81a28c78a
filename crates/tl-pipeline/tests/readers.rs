//! Every reader of our own formats and of users' files, fed random bytes and mutated copies
//! of a valid file (bytes flipped, inserted, cut, and length-like fields overwritten with
//! 2^60, 2^32 − 1 and the like), 1,000 cases each: it never panics, never allocates more
//! than [`ALLOC_MULTIPLE`] × the input's size + [`ALLOC_SLACK`] at its peak, and every
//! error names the file.
//!
//! Readers: ONNX, safetensors (checkpoints, weights and feature-store parts), the feature
//! store's `meta.json`, `config.json`, `head.json`, `split.json`, IDX images and labels,
//! CSV, TSV and JSONL tables, PyTorch checkpoints (legacy pickle and zip), the registry
//! manifest and experiment TOML.

use std::path::{Path, PathBuf};

use proptest::prelude::*;

/// Peak bytes a reader may hold beyond what was live before it, per input byte.
const ALLOC_MULTIPLE: usize = 64;
/// And beyond that, a constant (read buffers, parser tables, the registry's structures).
const ALLOC_SLACK: usize = 8 << 20;
/// Cases per reader.
const CASES: u32 = 1000;

#[global_allocator]
static ALLOCATOR: tl_core::alloc::Counting = tl_core::alloc::Counting;

/// A reader under test: reads the file at the path, `Err(message)` on refusal.
type Reader = dyn Fn(&Path) -> Result<(), String>;

/// Runs `read` on `bytes` written to `dir/name`: no panic, the peak allocation within
/// bounds, and an error naming the file.
fn check(read: &Reader, dir: &Path, name: &str, bytes: &[u8]) -> Result<(), TestCaseError> {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let (outcome, usage) = tl_core::alloc::measure(|| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read(&path)))
    });
    let peak = usage.peak_bytes;
    let outcome = match outcome {
        Ok(o) => o,
        Err(_) => return Err(TestCaseError::fail(format!("{name}: panicked"))),
    };
    let bound = ALLOC_MULTIPLE * bytes.len() + ALLOC_SLACK;
    prop_assert!(
        peak <= bound,
        "{name}: peak allocation {peak} bytes for {} input bytes (bound {bound})",
        bytes.len()
    );
    if let Err(e) = outcome {
        prop_assert!(
            e.contains(name),
            "{name}: error does not name the file: {e}"
        );
    }
    Ok(())
}

/// One way of damaging a valid file.
#[derive(Debug, Clone)]
enum Mutation {
    Flip {
        at: usize,
        bits: u8,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Cut {
        at: usize,
    },
    Remove {
        at: usize,
        len: usize,
    },
    /// A length field made huge: the value at `at`, little- or big-endian.
    Huge {
        at: usize,
        value: u64,
        width: usize,
        big: bool,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(at, bits)| Mutation::Flip { at, bits }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        any::<usize>().prop_map(|at| Mutation::Cut { at }),
        (any::<usize>(), 1usize..64).prop_map(|(at, len)| Mutation::Remove { at, len }),
        (
            any::<usize>(),
            prop::sample::select(vec![
                1u64 << 60,
                u64::MAX,
                u32::MAX as u64,
                i64::MAX as u64,
                1 << 31,
                1 << 40,
            ]),
            prop::sample::select(vec![4usize, 8]),
            any::<bool>()
        )
            .prop_map(|(at, value, width, big)| Mutation::Huge {
                at,
                value,
                width,
                big
            }),
    ]
}

fn apply(valid: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut b = valid.to_vec();
    for m in mutations {
        if b.is_empty() {
            break;
        }
        match m {
            Mutation::Flip { at, bits } => {
                let i = at % b.len();
                b[i] ^= bits;
            }
            Mutation::Insert { at, bytes } => {
                let i = at % (b.len() + 1);
                b.splice(i..i, bytes.iter().copied());
            }
            Mutation::Cut { at } => b.truncate(at % b.len()),
            Mutation::Remove { at, len } => {
                let i = at % b.len();
                let j = (i + len).min(b.len());
                b.drain(i..j);
            }
            Mutation::Huge {
                at,
                value,
                width,
                big,
            } => {
                let bytes = if *big {
                    value.to_be_bytes()
                } else {
                    value.to_le_bytes()
                };
                let field = if *big {
                    &bytes[8 - width..]
                } else {
                    &bytes[..*width]
                };
                if b.len() >= *width {
                    let i = at % (b.len() - width + 1);
                    b[i..i + width].copy_from_slice(field);
                }
            }
        }
    }
    b
}

/// Random bytes (a quarter of the cases) or the valid file with one to four mutations.
fn inputs(valid: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..2048),
        3 => prop::collection::vec(mutation(), 1..5).prop_map(move |m| apply(&valid, &m)),
    ]
}

/// Feeds `CASES` inputs derived from `valid` to `read` as `name`, after checking that the
/// valid file itself reads.
fn fuzz(name: &str, valid: Vec<u8>, read: &Reader) {
    let dir = tempfile::tempdir().unwrap();
    {
        let path = dir.path().join(name);
        std::fs::write(&path, &valid).unwrap();
        if let Err(e) = read(&path) {
            panic!("the valid {name} does not read: {e}");
        }
    }
    // A fixed seed: the same cases every run, so that a failure reproduces.
    let mut runner = proptest::test_runner::TestRunner::new_with_rng(
        ProptestConfig {
            cases: CASES,
            failure_persistence: None,
            ..ProptestConfig::default()
        },
        proptest::test_runner::TestRng::deterministic_rng(
            proptest::test_runner::RngAlgorithm::ChaCha,
        ),
    );
    let result = runner.run(&inputs(valid), |bytes| {
        check(read, dir.path(), name, &bytes)
    });
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
}

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

fn text<E: std::fmt::Display>(r: Result<impl Sized, E>) -> Result<(), String> {
    r.map(|_| ()).map_err(|e| e.to_string())
}

#[test]
fn onnx_models() {
    let valid = tl_onnx::fixtures::tiny("mobilenet", 3, 4)
        .unwrap()
        .to_bytes();
    fuzz("fuzz-model.onnx", valid, &|p| {
        text(tl_onnx::OnnxModel::load(p))
    });
}

fn tensors() -> std::collections::BTreeMap<String, tl_nn::Tensor> {
    [
        ("a.weight", vec![3, 4]),
        ("a.bias", vec![4]),
        ("b", vec![2, 1, 3]),
    ]
    .into_iter()
    .map(|(k, shape)| {
        let n: usize = shape.iter().product();
        (
            k.to_string(),
            tl_nn::Tensor::from_shape_vec(shape, (0..n).map(|i| i as f32 * 0.5).collect()).unwrap(),
        )
    })
    .collect()
}

#[test]
fn safetensors_weights_and_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    tl_nn::checkpoint::save_tensors(&path, &tensors()).unwrap();
    fuzz(
        "fuzz-weights.safetensors",
        std::fs::read(&path).unwrap(),
        &|p| text(tl_nn::checkpoint::load_tensors(p)),
    );
}

fn store_key() -> tl_features::store::StoreKey {
    tl_features::store::StoreKey {
        model_sha256: "m".into(),
        node: "features".into(),
        pooling: "mean".into(),
        preprocessing: serde_json::json!({"size": 224, "mean": [0.485, 0.456]}),
        preprocessing_version: tl_features::store::PREPROCESSING_VERSION,
        onnxruntime_version: "1.31.1".into(),
        provider: "cpu".into(),
        precision: "f32".into(),
    }
}

/// A feature-store part is read by opening its store: a damaged part is listed as corrupt
/// (its rows computed again), which counts as its error here.
#[test]
fn feature_store_parts() {
    let home = tempfile::tempdir().unwrap();
    let mut store = tl_features::store::FeatureStore::open(home.path(), store_key()).unwrap();
    let hashes: Vec<String> = (0..5u8)
        .map(|i| tl_core::hash::sha256_bytes(&[i]))
        .collect();
    let x = ndarray::Array2::from_shape_fn((5, 3), |(i, j)| (i * 3 + j) as f32);
    store.append(&hashes, &x).unwrap();
    let dir = store.dir().to_path_buf();
    let part = dir.join("part-00000.safetensors");
    let valid = std::fs::read(&part).unwrap();
    std::fs::remove_file(&part).unwrap();
    let home = home.path().to_path_buf();
    // The part is written under a fuzzing name, then moved to where the store reads it.
    fuzz("fuzz-part.safetensors", valid, &move |p| {
        std::fs::copy(p, &part).unwrap();
        let store = tl_features::store::FeatureStore::open(&home, store_key())
            .map_err(|e| e.to_string())?;
        match store.corrupt().first() {
            Some((path, reason)) => Err(format!(
                "{} ({}): {reason}",
                path.display(),
                p.file_name().unwrap().to_string_lossy()
            )),
            None => Ok(()),
        }
    });
    assert!(dir.is_dir());
}

#[test]
fn feature_store_meta_json() {
    let meta = tl_features::store::StoreMeta {
        schema_version: 1,
        key: store_key(),
        width: 3,
        rows: 5,
        parts: 1,
        tl_version: "0.1.0".into(),
    };
    fuzz(
        "fuzz-meta.json",
        serde_json::to_vec_pretty(&meta).unwrap(),
        &|p| text(tl_core::io::read_json::<tl_features::store::StoreMeta>(p)),
    );
}

const ARTIFACT: &str = "crates/tl-pipeline/tests/fixtures/artifact-2ba04e5";

#[test]
fn run_config_json() {
    let valid = std::fs::read(fixture(ARTIFACT).join("config.json")).unwrap();
    fuzz("fuzz-config.json", valid, &|p| {
        let cfg: tl_pipeline::config::RunConfig =
            tl_core::io::read_json(p).map_err(|e| e.to_string())?;
        cfg.check().map_err(|e| format!("{}: {e}", p.display()))
    });
}

#[test]
fn head_json() {
    let valid = std::fs::read(fixture(ARTIFACT).join("head.json")).unwrap();
    fuzz("fuzz-head.json", valid, &|p| {
        text(tl_pipeline::artifact::HeadMeta::read(p))
    });
}

fn tiny_dataset() -> tl_data::Dataset {
    tl_data::Dataset {
        name: "tiny".into(),
        sha256: "0123456789abcdef".into(),
        tasks: vec![tl_data::Task {
            name: "label".into(),
            classes: vec!["a".into(), "b".into()],
        }],
        rows: (0..12)
            .map(|i| tl_data::Row {
                id: format!("r{i}"),
                content: tl_data::Content::Text(format!("row {i}")),
                labels: vec![Some(i % 2)],
            })
            .collect(),
        skipped: Vec::new(),
    }
}

#[test]
fn split_json() {
    let ds = tiny_dataset();
    let split = tl_data::Split::stratified(&ds, &tl_data::SplitConfig::new("label", 1)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("split.json");
    split.save(&path).unwrap();
    fuzz(
        "fuzz-split.json",
        std::fs::read(&path).unwrap(),
        &move |p| text(tl_data::Split::load_for(p, &ds)),
    );
}

fn idx_pair() -> (Vec<u8>, Vec<u8>) {
    let (n, h, w) = (3u32, 4u32, 4u32);
    let mut images = vec![0, 0, 8, 3];
    for d in [n, h, w] {
        images.extend_from_slice(&d.to_be_bytes());
    }
    images.extend((0..n * h * w).map(|i| (i * 7) as u8));
    let mut labels = vec![0, 0, 8, 1];
    labels.extend_from_slice(&n.to_be_bytes());
    labels.extend([0u8, 1, 1]);
    (images, labels)
}

#[test]
fn idx_images_and_labels() {
    let (images, labels) = idx_pair();
    let dir = tempfile::tempdir().unwrap();
    let labels_path = dir.path().join("labels-idx1-ubyte");
    std::fs::write(&labels_path, &labels).unwrap();
    fuzz("fuzz-images-idx3-ubyte", images.clone(), &move |p| {
        text(tl_data::loaders::idx(p, &labels_path, 2))
    });
    let images_path = dir.path().join("images-idx3-ubyte");
    std::fs::write(&images_path, &images).unwrap();
    fuzz("fuzz-labels-idx1-ubyte", labels, &move |p| {
        text(tl_data::loaders::idx(&images_path, p, 2))
    });
}

fn table_spec() -> tl_data::loaders::TextTable {
    tl_data::loaders::TextTable {
        format: None,
        text_column: "text".into(),
        tasks: vec![tl_data::loaders::TaskColumn {
            name: "sentiment".into(),
            column: "label".into(),
            classes: vec!["neg".into(), "pos".into()],
            map: Default::default(),
            ignore: Vec::new(),
        }],
        clean_html: false,
        skip_empty_text: false,
    }
}

#[test]
fn csv_tsv_and_jsonl_tables() {
    let spec = table_spec();
    for (name, valid) in [
        (
            "fuzz-table.csv",
            "text,label\n\"a fine, long film\",pos\nawful,neg\n\"so \"\"so\"\"\",pos\n",
        ),
        (
            "fuzz-table.tsv",
            "text\tlabel\na fine film\tpos\nawful\tneg\nmeh\tneg\n",
        ),
        (
            "fuzz-table.jsonl",
            "{\"text\": \"a fine film\", \"label\": \"pos\"}\n{\"text\": \"awful\", \"label\": \"neg\"}\n",
        ),
    ] {
        let spec = spec.clone();
        fuzz(name, valid.as_bytes().to_vec(), &move |p| {
            text(tl_data::loaders::text_table(p, None, &spec))
        });
    }
}

#[test]
fn pytorch_checkpoints() {
    for name in ["tiny_legacy.pth", "tiny_zip.pth"] {
        let valid = std::fs::read(fixture("tests/fixtures/checkpoints").join(name)).unwrap();
        fuzz(&format!("fuzz-{name}"), valid, &|p| {
            text(tl_onnx::torch::Checkpoint::load(p))
        });
    }
}

#[test]
fn registry_manifest() {
    let valid = std::fs::read(fixture("models/registry.toml")).unwrap();
    fuzz("fuzz-registry.toml", valid, &|p| {
        let bytes = std::fs::read(p).map_err(|e| e.to_string())?;
        let name = p.display().to_string();
        let text = String::from_utf8(bytes).map_err(|e| format!("{name}: {e}"))?;
        tl_hub::Registry::parse(&text, &name)
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
}

#[test]
fn experiment_toml() {
    let valid = std::fs::read(fixture("experiments/heads.toml")).unwrap();
    fuzz("fuzz-experiment.toml", valid, &|p| {
        text(tl_pipeline::experiment::load(p))
    });
}
