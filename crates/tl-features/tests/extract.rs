//! The extraction pipeline on a tiny generated model: cache hits, resumption with
//! identical bytes, equality with a direct run, bad rows.

use std::{path::Path, sync::Arc};

use tl_core::ImageContract;
use tl_data::{Content, Row};
use tl_features::{
    extract::{ExtractOptions, extract},
    image::{batch, resize_and_crop},
};
use tl_runtime::{Input, Runtime, RuntimeOptions, Session, SessionOptions};

const NODES: [&str; 2] = ["block1", "features"];

fn rows() -> Vec<Row> {
    (0..45)
        .map(|i| {
            // Rows 40.. repeat rows 0..5: the same content is computed once.
            let k = if i >= 40 { i - 40 } else { i };
            let data: Vec<u8> = (0..100).map(|p| ((p * 7 + k * 31) % 256) as u8).collect();
            Row {
                id: format!("row{i}"),
                content: Content::Pixels {
                    width: 10,
                    height: 10,
                    channels: 1,
                    data: Arc::from(data),
                },
                labels: vec![Some((k % 3) as u32)],
            }
        })
        .collect()
}

fn session() -> Session {
    let rt = Runtime::init(&RuntimeOptions::default())
        .expect("run `cargo xtask fetch-models onnxruntime`");
    let model = tl_onnx::fixtures::tiny("mobilenet", 3, 4)
        .unwrap()
        .with_outputs(&NODES)
        .unwrap();
    Session::from_model(
        rt,
        &model,
        "tiny",
        &SessionOptions::default().threads(Some(1)),
    )
    .unwrap()
}

fn contract() -> ImageContract {
    ImageContract::rgb_center_crop("input", 24, [127.0; 3], [128.0; 3])
}

fn opts() -> ExtractOptions {
    let mut o = ExtractOptions::new(NODES.iter().map(|s| s.to_string()).collect());
    o.batch_size = 5;
    o.part_size = 8;
    o
}

fn parts(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("part-"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn cache_resume_and_direct_equality() {
    let mut s = session();
    let rows = rows();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());

    // Uninterrupted run in home A.
    let (rep, stores) = extract(&mut s, "m", &contract(), &rows, a.path(), &opts()).unwrap();
    assert_eq!(
        (rep.rows, rep.unique_rows, rep.computed, rep.cached),
        (45, 40, 40, 0)
    );
    // Second run: every row is cached, no model runs.
    let (rep2, _) = extract(&mut s, "m", &contract(), &rows, a.path(), &opts()).unwrap();
    assert_eq!((rep2.computed, rep2.cached), (0, 40));
    // Where the time went: the first run ran the model and preprocessed, the second neither.
    assert!(rep.stages.inference > 0.0 && rep.stages.preprocessing_cpu > 0.0);
    assert_eq!(
        (rep2.stages.inference, rep2.stages.preprocessing_cpu),
        (0.0, 0.0)
    );

    // Interrupted after two parts in home B, then resumed.
    let mut first = opts();
    first.max_new_parts = Some(2);
    let (r1, _) = extract(&mut s, "m", &contract(), &rows, b.path(), &first).unwrap();
    assert_eq!(r1.computed, 16);
    let (r2, stores_b) = extract(&mut s, "m", &contract(), &rows, b.path(), &opts()).unwrap();
    assert_eq!((r2.computed, r2.cached), (24, 16));
    for (sa, sb) in stores.iter().zip(&stores_b) {
        assert_eq!(
            parts(sa.dir()),
            parts(sb.dir()),
            "resumed run differs from the uninterrupted one"
        );
    }

    // The stored features equal a direct run of the model on the same preprocessed rows.
    let hashes: Vec<String> = rows.iter().map(|r| r.content.hash().unwrap()).collect();
    let images: Vec<_> = rows
        .iter()
        .map(|r| resize_and_crop(&contract(), &tl_features::extract::row_image(r).unwrap()))
        .collect();
    let x = batch(&contract(), &images).into_dyn();
    let direct = s.run(&[("input", Input::F32(x.view()))], &NODES).unwrap();
    for (k, node) in NODES.iter().enumerate() {
        let want = tl_features::extract::Pool::Mean.apply(&direct[*node]);
        let got = stores[k].gather(&hashes).unwrap();
        let d = (&got - &want).iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(d < 1e-5, "{node}: store and direct run differ by {d}");
    }
}

#[test]
fn bad_rows_fail_or_are_skipped_and_listed() {
    let mut s = session();
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.png");
    std::fs::write(&broken, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let mut rows = rows();
    rows.insert(
        3,
        Row {
            id: "broken".into(),
            content: Content::ImageFile(broken),
            labels: vec![None],
        },
    );
    let err = extract(&mut s, "m", &contract(), &rows, dir.path(), &opts())
        .unwrap_err()
        .to_string();
    assert!(err.contains("broken.png"), "{err}");
    let mut lenient = opts();
    lenient.skip_bad = true;
    let (rep, _) = extract(&mut s, "m", &contract(), &rows, dir.path(), &lenient).unwrap();
    assert_eq!(rep.skipped.len(), 1);
    assert_eq!(rep.skipped[0].id, "broken");
    assert_eq!(rep.computed, 40);
}

#[test]
fn a_corrupted_part_is_computed_again_not_served() {
    let mut s = session();
    let rows = rows();
    let home = tempfile::tempdir().unwrap();
    let (_, stores) = extract(&mut s, "m", &contract(), &rows, home.path(), &opts()).unwrap();
    let hashes: Vec<String> = rows.iter().map(|r| r.content.hash().unwrap()).collect();
    let before = stores[0].gather(&hashes).unwrap();
    // Flip one byte in the middle of the first part of the first node's store.
    let part = stores[0].dir().join("part-00000.safetensors");
    let mut bytes = std::fs::read(&part).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&part, &bytes).unwrap();
    // The next run says so, computes that part's 8 rows again, and serves the right values.
    let notes = Arc::new(Notes::default());
    let mut o = opts();
    o.progress = notes.clone();
    let (rep, stores) = extract(&mut s, "m", &contract(), &rows, home.path(), &o).unwrap();
    assert_eq!((rep.computed, rep.cached), (8, 32));
    let said = notes.0.lock().unwrap().join("\n");
    assert!(
        said.contains("part-00000.safetensors") && said.contains("computed again"),
        "{said}"
    );
    assert_eq!(stores[0].gather(&hashes).unwrap(), before);
}

/// Records the notes an extraction reports.
#[derive(Default)]
struct Notes(std::sync::Mutex<Vec<String>>);

impl tl_core::progress::Progress for Notes {
    fn note(&self, text: &str) {
        self.0.lock().unwrap().push(text.to_string());
    }
}
