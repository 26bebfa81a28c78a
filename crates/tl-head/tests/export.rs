//! Importing EfficientNet-Lite0's last layers, training them, and exporting the backbone
//! with the trained head: the exported file, run in plain ONNX Runtime on the raw input,
//! gives the `tl-nn` forward pass's probabilities on the extracted features. Two
//! independent paths: ONNX Runtime's whole graph against ndarray's layers.

use std::collections::BTreeMap;

use ndarray::{ArrayD, IxDyn};
use tl_head::{
    export::{ExportPool, ExportSpec, export},
    import::import_chain,
    net::{HeadNet, HeadSpec, TaskSpec},
    train::{Labelled, TrainConfig, train},
};
use tl_nn::{Act, ModuleExt, checkpoint::named_params, softmax};
use tl_onnx::OnnxModel;
use tl_runtime::{Input, Runtime, RuntimeOptions, Session, SessionOptions};

/// The bar for exported probabilities against the ndarray forward pass.
const PROB_TOL: f32 = 1e-5;
/// Imported layers with pretrained weights against ONNX Runtime's own features.
const FEATURE_TOL: f32 = 1e-4;

fn model(file: &str) -> (std::path::PathBuf, OnnxModel) {
    let dir = tl_core::home::model_dir(&tl_core::home::tl_home().unwrap(), "efficientnet-lite0");
    assert!(
        dir.join("fetched.json").is_file(),
        "run `cargo xtask fetch-models efficientnet-lite0`"
    );
    let path = dir.join(file);
    let m = OnnxModel::load(&path).unwrap();
    (path, m)
}

fn runtime() -> &'static Runtime {
    Runtime::init(&RuntimeOptions::default()).expect("run `cargo xtask fetch-models onnxruntime`")
}

/// A deterministic input batch [n, 3, 96, 96] in the normalised range.
fn input(n: usize) -> ArrayD<f32> {
    let per = 3 * 96 * 96;
    ArrayD::from_shape_fn(IxDyn(&[n, 3, 96, 96]), |i| {
        let k = ((i[1] * 96 + i[2]) * 96 + i[3]) as f64;
        (1.5 * (0.001 * (i[0] as f64 + 1.0) * k + 0.3 * i[0] as f64).sin() + 0.1 * (k / per as f64))
            as f32
    })
}

fn run(session: &mut Session, x: &ArrayD<f32>, outs: &[&str]) -> BTreeMap<String, ArrayD<f32>> {
    session
        .run(&[("input", Input::F32(x.view()))], outs)
        .unwrap()
        .into_iter()
        .collect()
}

fn max_diff(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn tasks() -> Vec<TaskSpec> {
    vec![
        TaskSpec {
            name: "shape".into(),
            classes: vec!["a".into(), "b".into(), "c".into()],
            weight: 1.0,
        },
        TaskSpec {
            name: "tone".into(),
            classes: vec!["dark".into(), "light".into()],
            weight: 0.5,
        },
    ]
}

fn labels(n: usize) -> Vec<Vec<Option<u32>>> {
    vec![
        (0..n).map(|i| Some((i % 3) as u32)).collect(),
        (0..n)
            .map(|i| (i % 4 != 0).then_some((i % 2) as u32))
            .collect(),
    ]
}

fn check_export(file: &str, finetune: bool, head: HeadSpec) {
    let (path, backbone) = model(file);
    let rt = runtime();
    let x = input(8);
    let mut session = Session::from_model(
        rt,
        &backbone.with_outputs(&["blocks.15"]).unwrap(),
        file,
        &SessionOptions::default(),
    )
    .unwrap();
    let outs = run(&mut session, &x, &["blocks.15", "features"]);
    let (tap, features) = (&outs["blocks.15"], &outs["features"]);
    let tasks = tasks();
    let (mut net, head_input, pool, imported) = if finetune {
        let imp = import_chain(&backbone, "blocks.15", "features").unwrap();
        let mut layers = imp.layers;
        let mine = layers.predict(tap).unwrap();
        let d = max_diff(&mine, features);
        println!("{file}: imported layers vs ONNX Runtime's features: max diff {d:.2e}");
        assert!(d < FEATURE_TOL, "{d}");
        (
            HeadNet::build_on(&head, Some(layers), imp.width, &tasks, 3).unwrap(),
            tap.clone(),
            ExportPool::None,
            imp.map,
        )
    } else {
        // A head on blocks.15 mean-pooled, as `tl extract --layer blocks.15 --pool mean` stores it.
        let pooled = tap
            .mean_axis(ndarray::Axis(3))
            .unwrap()
            .mean_axis(ndarray::Axis(2))
            .unwrap();
        (
            HeadNet::build(&head, 320, &tasks, 3).unwrap(),
            pooled,
            ExportPool::Mean,
            Vec::new(),
        )
    };
    let mut cfg = TrainConfig::default();
    cfg.epochs = 2;
    cfg.batch_size = 4;
    cfg.lr = 1e-2;
    let before = named_params(&net);
    let y = labels(8);
    train(
        &mut net,
        &tasks,
        &Labelled {
            x: &head_input,
            labels: &y,
        },
        None,
        &cfg,
        None,
        &mut |_| {},
        None,
    )
    .unwrap();
    let params = named_params(&net);
    assert_ne!(before, params, "training changed the weights");
    let logits = net
        .predict(&head_input)
        .unwrap()
        .into_dimensionality::<ndarray::Ix2>()
        .unwrap();
    let exported = export(
        &backbone,
        &ExportSpec {
            text: None,
            input_value: if finetune { "features" } else { "blocks.15" },
            pool,
            head: &head,
            tasks: &tasks,
            params: &params,
            imported: &imported,
            metadata: BTreeMap::from([(
                "tl.source_sha256".to_string(),
                tl_core::hash::sha256_file(&path).unwrap(),
            )]),
        },
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("exported.onnx");
    exported.save(&out).unwrap();
    let mut plain = Session::from_file(rt, &out, &SessionOptions::default()).unwrap();
    let got = run(
        &mut plain,
        &x,
        &["probabilities.shape", "probabilities.tone"],
    );
    for (t, name) in ["shape", "tone"].iter().enumerate() {
        let cols = net.columns(t);
        let want = softmax(logits.slice(ndarray::s![.., cols])).into_dyn();
        let d = max_diff(&got[&format!("probabilities.{name}")], &want);
        println!(
            "{file} finetune={finetune} {}: task {name}: exported vs ndarray max diff {d:.2e}",
            head.hidden.len()
        );
        assert!(d < PROB_TOL, "task {name}: {d}");
    }
    let meta = OnnxModel::load(&out).unwrap().metadata();
    assert!(meta["tl.class_names"].contains("\"light\""));
    assert!(meta.contains_key("tl.source_sha256"));
}

#[test]
fn finetuned_last_layers_with_batch_norm_kept_export_and_match() {
    check_export("model-bn.onnx", true, HeadSpec::linear());
}

#[test]
fn finetuned_last_layers_folded_with_an_mlp_export_and_match() {
    let mut h = HeadSpec::mlp(vec![16]);
    h.activation = Act::Relu6;
    check_export("model.onnx", true, h);
}

#[test]
fn a_gelu_mlp_on_pooled_features_exports_and_matches() {
    let mut h = HeadSpec::mlp(vec![24]);
    h.activation = Act::Gelu;
    h.dropout = 0.2;
    check_export("model.onnx", false, h);
}

#[test]
fn an_unsupported_op_is_named() {
    let (_, backbone) = model("model.onnx");
    // From blocks.14 the chain reaches the depthwise 3×3 convolution of block 15.
    let err = import_chain(&backbone, "blocks.14", "features")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("node `blocks.15.dw.conv` (Conv): kernel [1152, 1, 3, 3]: fine-tuning the last layers supports"),
        "{err}"
    );
    let err = import_chain(&backbone, "no.such.value", "features")
        .unwrap_err()
        .to_string();
    assert!(err.contains("no node consumes `no.such.value`"), "{err}");
}

#[test]
fn a_text_head_exports_with_pooling_in_the_graph_and_matches() {
    let home = tl_core::home::tl_home().unwrap();
    let dir = tl_core::home::model_dir(&home, "minilm-l6");
    assert!(
        dir.join("fetched.json").is_file(),
        "run `cargo xtask fetch-models minilm-l6`"
    );
    let entry = tl_hub::Registry::builtin()
        .unwrap()
        .get("minilm-l6")
        .unwrap()
        .clone();
    let Some(tl_core::InputContract::Text(contract)) = entry.input_contract().unwrap() else {
        panic!("text contract")
    };
    let path = tl_hub::model_path(&home, &entry, false).unwrap();
    let backbone = OnnxModel::load(&path).unwrap();
    let encoder = tl_features::text::TextEncoder::new(path.parent().unwrap(), &contract).unwrap();
    let texts = [
        "a gripping, funny film",
        "dull",
        "the plot follows a retired detective to paris and back again",
        "",
    ];
    let b = encoder.tokenize(&texts).unwrap();
    let (ids, mask, types) = (
        b.ids.into_dyn(),
        b.mask.clone().into_dyn(),
        b.type_ids.into_dyn(),
    );
    let mut feed = vec![
        (contract.input_ids.as_str(), Input::I64(ids.view())),
        (contract.attention_mask.as_str(), Input::I64(mask.view())),
    ];
    if let Some(t) = &contract.token_type_ids {
        feed.push((t.as_str(), Input::I64(types.view())));
    }
    let rt = runtime();
    let mut s = Session::from_file(rt, &path, &SessionOptions::default()).unwrap();
    let hidden = s
        .run(&feed, &[&contract.token_output])
        .unwrap()
        .remove(&contract.token_output)
        .unwrap();
    // The Rust pooling path, as `tl extract` stores sentence features.
    let mut emb = tl_features::text::mean_pool(&hidden, &b.mask).unwrap();
    tl_features::text::l2_normalize(&mut emb);
    let tasks = tasks();
    let mut h = HeadSpec::mlp(vec![8]);
    h.activation = Act::Gelu;
    let mut net = HeadNet::build(&h, emb.ncols(), &tasks, 9).unwrap();
    let logits = net
        .predict(&emb.into_dyn())
        .unwrap()
        .into_dimensionality::<ndarray::Ix2>()
        .unwrap();
    let exported = export(
        &backbone,
        &ExportSpec {
            text: Some(tl_head::export::TextPoolSpec {
                token_output: contract.token_output.clone(),
                attention_mask: contract.attention_mask.clone(),
                mean: true,
                normalize: true,
            }),
            input_value: &contract.token_output,
            pool: ExportPool::None,
            head: &h,
            tasks: &tasks,
            params: &named_params(&net),
            imported: &[],
            metadata: BTreeMap::new(),
        },
    )
    .unwrap();
    let mut plain =
        Session::from_model(rt, &exported, "text head", &SessionOptions::default()).unwrap();
    let got = plain
        .run(&feed, &["probabilities.shape", "probabilities.tone"])
        .unwrap();
    for (t, name) in ["shape", "tone"].iter().enumerate() {
        let want = softmax(logits.slice(ndarray::s![.., net.columns(t)])).into_dyn();
        let d = max_diff(&got[&format!("probabilities.{name}")], &want);
        println!("minilm-l6 text head, task {name}: exported vs ndarray max diff {d:.2e}");
        assert!(d < PROB_TOL, "{d}");
    }
}
