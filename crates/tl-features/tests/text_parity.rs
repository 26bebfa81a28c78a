//! MiniLM sentence embeddings against Python (tokenizers 0.23.3 + onnxruntime 1.31.1,
//! one sentence at a time, no padding): `tests/reference/minilm_reference.py`.

use std::path::Path;

use tl_core::{InputContract, contract::TextContract};
use tl_features::text::{TextEncoder, length_buckets};
use tl_runtime::{Runtime, RuntimeOptions, Session, SessionOptions};

/// The bar: every embedding within 1e-4 of the reference, cosine ≥ 0.9999.
const MAX_ABS: f32 = 1e-4;
const MIN_COSINE: f64 = 0.9999;

fn golden() -> serde_json::Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden/minilm_reference.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The golden embedding of sentence `i`.
fn embedding(golden: &serde_json::Value, i: usize) -> Vec<f32> {
    golden["embeddings"][i]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

fn contract() -> TextContract {
    let registry = tl_hub::Registry::builtin().unwrap();
    match registry.get("minilm-l6").unwrap().input_contract().unwrap() {
        Some(InputContract::Text(t)) => t,
        other => panic!("minilm-l6 must have a text contract, got {other:?}"),
    }
}

#[test]
fn embeddings_match_python_in_padded_bucketed_batches() {
    let home = tl_core::home::tl_home().unwrap();
    let dir = tl_core::home::model_dir(&home, "minilm-l6");
    assert!(
        dir.join("fetched.json").is_file(),
        "run `cargo xtask fetch-models minilm-l6`"
    );
    let golden = golden();
    let sentences: Vec<&str> = golden["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let c = contract();
    let enc = TextEncoder::new(&dir, &c).unwrap();
    let counts = enc.token_counts(&sentences).unwrap();
    let want_counts: Vec<usize> = golden["token_counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(
        counts, want_counts,
        "token counts differ from Python tokenizers"
    );

    let rt = Runtime::init(&RuntimeOptions::default()).unwrap();
    let mut s =
        Session::from_file(rt, &dir.join("model.onnx"), &SessionOptions::default()).unwrap();
    let (mut worst, mut min_cos) = (0f32, 1f64);
    for bucket in length_buckets(&counts, 6) {
        let texts: Vec<&str> = bucket.iter().map(|&i| sentences[i]).collect();
        let emb = enc.embed(&mut s, &texts).unwrap();
        for (k, &i) in bucket.iter().enumerate() {
            let want = embedding(&golden, i);
            let got = emb.row(k);
            let d = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            let cos: f64 = got
                .iter()
                .zip(&want)
                .map(|(a, b)| *a as f64 * *b as f64)
                .sum();
            worst = worst.max(d);
            min_cos = min_cos.min(cos);
        }
    }
    eprintln!("MiniLM vs Python: max |Δ| = {worst:.2e}, min cosine = {min_cos:.7}");
    assert!(worst < MAX_ABS, "max abs difference {worst}");
    assert!(min_cos >= MIN_COSINE, "min cosine {min_cos}");
}

#[test]
fn text_extraction_stores_the_same_embeddings_and_caches_them() {
    use tl_data::{Content, Row};
    use tl_features::extract::{ExtractOptions, extract_text};

    let home = tl_core::home::tl_home().unwrap();
    let dir = tl_core::home::model_dir(&home, "minilm-l6");
    let golden = golden();
    let rows: Vec<Row> = golden["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, s)| Row {
            id: format!("s{i}"),
            content: Content::Text(s.as_str().unwrap().to_string()),
            labels: vec![],
        })
        .collect();
    let c = contract();
    let enc = TextEncoder::new(&dir, &c).unwrap();
    let rt = Runtime::init(&RuntimeOptions::default()).unwrap();
    let mut s =
        Session::from_file(rt, &dir.join("model.onnx"), &SessionOptions::default()).unwrap();
    let store_home = tempfile::tempdir().unwrap();
    let mut opts = ExtractOptions::new(vec![]);
    opts.batch_size = 4;
    opts.part_size = 8;
    let (rep, stores) =
        extract_text(&mut s, &enc, "sha", &c, &rows, store_home.path(), &opts).unwrap();
    assert_eq!(rep.computed, 20);
    let hashes: Vec<String> = rows.iter().map(|r| r.content.hash().unwrap()).collect();
    let matches_golden = |got: ndarray::Array2<f32>, how: &str| {
        for (i, row) in got.outer_iter().enumerate() {
            let want = embedding(&golden, i);
            let d = row
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(d < MAX_ABS, "sentence {i}, {how}: {d}");
        }
    };
    matches_golden(stores[0].gather(&hashes).unwrap(), "bucketed");
    let (again, _) =
        extract_text(&mut s, &enc, "sha", &c, &rows, store_home.path(), &opts).unwrap();
    assert_eq!((again.computed, again.cached), (0, 20));

    // Batches in dataset order (no length bucketing) pad differently, and give the same
    // embeddings within the same tolerance.
    let plain_home = tempfile::tempdir().unwrap();
    opts.bucket_by_length = false;
    let (plain, plain_stores) =
        extract_text(&mut s, &enc, "sha", &c, &rows, plain_home.path(), &opts).unwrap();
    assert_eq!(plain.computed, 20);
    matches_golden(plain_stores[0].gather(&hashes).unwrap(), "dataset order");
}
