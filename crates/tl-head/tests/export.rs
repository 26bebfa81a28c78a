//! Importing EfficientNet-Lite0's last layers, training them, and exporting the backbone
//! with the trained head: the exported file, run in plain ONNX Runtime on the raw input,
//! gives the `tl-nn` forward pass's probabilities on the extracted features. Two
//! independent paths: ONNX Runtime's whole graph against ndarray's layers.

use std::collections::BTreeMap;

use ndarray::{ArrayD, IxDyn};
use tl_head::{
    export::{ExportPool, ExportSpec, export},
    import::import_graph,
    net::{HeadNet, HeadSpec, TaskSpec},
    train::{Labelled, TrainConfig, Trainer},
};
use tl_nn::{Act, Module, ModuleExt, checkpoint::named_params, softmax};
use tl_onnx::OnnxModel;
use tl_runtime::{Input, Runtime, RuntimeOptions, Session, SessionOptions};

/// The bar for exported probabilities against the ndarray forward pass.
const PROB_TOL: f32 = 1e-5;
/// Imported layers with pretrained weights against ONNX Runtime's own features.
const FEATURE_TOL: f32 = 1e-4;
/// The bar for a whole fine-tuned network exported, against the ndarray forward.
const FULL_TOL: f32 = 1e-4;

fn model(id: &str, file: &str) -> (std::path::PathBuf, OnnxModel) {
    let dir = tl_core::home::model_dir(&tl_core::home::tl_home().unwrap(), id);
    assert!(
        dir.join("fetched.json").is_file(),
        "run `cargo xtask fetch-models {id}`"
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

/// `outs` of `model` (called `name` in errors) run by ONNX Runtime on `x`.
fn run_model(
    model: &OnnxModel,
    name: &str,
    x: &ArrayD<f32>,
    outs: &[&str],
) -> BTreeMap<String, ArrayD<f32>> {
    let opts = SessionOptions::default();
    run(
        &mut Session::from_model(runtime(), model, name, &opts).unwrap(),
        x,
        outs,
    )
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

/// What the head reads.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Tap {
    /// `blocks.15` (or `last`) mean-pooled, frozen backbone.
    Pooled,
    /// The last block imported and fine-tuned from `last`.
    Last,
    /// The whole network imported and fine-tuned from its input.
    All,
}

fn check_export(id: &str, file: &str, last: &str, tap_at: Tap, head: HeadSpec) {
    let (path, backbone) = model(id, file);
    let rt = runtime();
    let x = input(8);
    let tapped = backbone.with_outputs(&[last]).unwrap();
    let outs = run_model(&tapped, file, &x, &[last, "features"]);
    let (tap, features) = (&outs[last], &outs["features"]);
    let tasks = tasks();
    let (mut net, head_input, pool, imported) = if tap_at != Tap::Pooled {
        let (from, from_value) = if tap_at == Tap::All {
            ("input", &x)
        } else {
            (last, tap)
        };
        let imp = import_graph(&backbone, from, "features").unwrap();
        let mut layers = imp.layers;
        let mine = layers.predict(from_value).unwrap();
        let d = max_diff(&mine, features);
        println!(
            "{id}/{file} from {from}: imported layers vs ONNX Runtime's features: max diff {d:.2e}"
        );
        assert!(d < FEATURE_TOL, "{d}");
        (
            HeadNet::build_on(&head, Some(Box::new(layers)), imp.width, &tasks, 3).unwrap(),
            from_value.clone(),
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
    Trainer::new(&cfg, &tasks)
        .fit(
            &mut net,
            &Labelled {
                x: &head_input,
                labels: &y,
            },
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
            input_value: if tap_at == Tap::Pooled {
                last
            } else {
                "features"
            },
            pool,
            head: &head,
            tasks: &tasks,
            params: &params,
            imported: &imported,
            metadata: BTreeMap::from([(
                "tl.source_sha256".to_string(),
                tl_core::hash::sha256_file(&path).unwrap(),
            )]),
            input_affine: None,
            logit_offset: None,
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
            "{id}/{file} {tap_at:?} {}: task {name}: exported vs ndarray max diff {d:.2e}",
            head.hidden.len()
        );
        let tol = if tap_at == Tap::All {
            FULL_TOL
        } else {
            PROB_TOL
        };
        assert!(d < tol, "task {name}: {d}");
    }
    let meta = OnnxModel::load(&out).unwrap().metadata();
    assert!(meta["tl.class_names"].contains("\"light\""));
    assert!(meta.contains_key("tl.source_sha256"));
}

#[test]
fn finetuned_last_layers_with_batch_norm_kept_export_and_match() {
    check_export(
        "efficientnet-lite0",
        "model-bn.onnx",
        "blocks.15",
        Tap::Last,
        HeadSpec::linear(),
    );
}

#[test]
fn finetuned_last_layers_folded_with_an_mlp_export_and_match() {
    let mut h = HeadSpec::mlp(vec![16]);
    h.activation = Act::Relu6;
    check_export(
        "efficientnet-lite0",
        "model.onnx",
        "blocks.15",
        Tap::Last,
        h,
    );
}

#[test]
fn a_gelu_mlp_on_pooled_features_exports_and_matches() {
    let mut h = HeadSpec::mlp(vec![24]);
    h.activation = Act::Gelu;
    h.dropout = 0.2;
    check_export(
        "efficientnet-lite0",
        "model.onnx",
        "blocks.15",
        Tap::Pooled,
        h,
    );
}

#[test]
fn the_whole_efficientnet_with_batch_norm_kept_is_fine_tuned_exported_and_matches() {
    check_export(
        "efficientnet-lite0",
        "model-bn.onnx",
        "blocks.15",
        Tap::All,
        HeadSpec::linear(),
    );
}

#[test]
fn the_whole_mobilenet_v2_folded_with_an_mlp_is_fine_tuned_exported_and_matches() {
    check_export(
        "mobilenet-v2",
        "model.onnx",
        "features.17",
        Tap::All,
        HeadSpec::mlp(vec![16]),
    );
}

#[test]
fn the_whole_mobilenet_v2_with_batch_norm_kept_imports_exactly() {
    let (_, backbone) = model("mobilenet-v2", "model-bn.onnx");
    let x = input(3);
    let features = run_model(&backbone, "mobilenet-v2", &x, &["features"])
        .remove("features")
        .unwrap();
    let mut imp = import_graph(&backbone, "input", "features").unwrap();
    assert_eq!(imp.in_channels, 3);
    assert_eq!(imp.width, 1280);
    let d = max_diff(&imp.layers.predict(&x).unwrap(), &features);
    println!("mobilenet-v2/model-bn.onnx from input: max diff {d:.2e}");
    assert!(d < FEATURE_TOL, "{d}");
}

/// A tiny model: input → Conv(weight) → `op` → GlobalAveragePool → Flatten → features.
fn tiny(op: &str, weight_is_input: bool) -> OnnxModel {
    use tl_onnx::builder::{Dim, GraphBuilder, ModelBuilder, attr};
    use tl_onnx::proto::DataType;
    let mut g = GraphBuilder::new("tiny");
    let x = g.image_input("input", 2);
    let w = if weight_is_input {
        g.input(
            "w",
            DataType::Float,
            &[Dim::Fixed(3), Dim::Fixed(2), Dim::Fixed(1), Dim::Fixed(1)],
        )
    } else {
        g.initializer("w", &[3, 2, 1, 1], &[0.5; 6])
    };
    let c = g.op(
        "Conv",
        "conv",
        &[&x, &w],
        vec![attr::ints("kernel_shape", &[1, 1])],
    );
    let a = g.op(op, "act", &[&c], vec![]);
    let p = g.op("GlobalAveragePool", "pool", &[&a], vec![]);
    g.op("Flatten", "features", &[&p], vec![attr::int("axis", 1)]);
    g.output(
        "features",
        DataType::Float,
        &[Dim::param("N"), Dim::Fixed(3)],
    );
    ModelBuilder::new(g.build()).build().unwrap()
}

#[test]
fn bad_graphs_are_named_before_training() {
    assert!(import_graph(&tiny("Relu", false), "input", "features").is_ok());
    let err = import_graph(&tiny("Sigmoid", false), "input", "features")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("node `act` (Sigmoid)") && err.contains("fine-tuning supports Conv"),
        "{err}"
    );
    let err = import_graph(&tiny("Relu", true), "input", "features")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("node `conv` (Conv): input `w` is not a constant initializer"),
        "{err}"
    );
    let (_, backbone) = model("efficientnet-lite0", "model.onnx");
    let err = import_graph(&backbone, "no.such.value", "features")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("the model has no value `no.such.value`"),
        "{err}"
    );
    // A residual block's inner value: the skip connection bypasses it.
    let err = import_graph(&backbone, "blocks.14.dw", "features")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "node `blocks.14` (Add) reads `blocks.13`, which does not come from `blocks.14.dw`"
        ),
        "{err}"
    );
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
            input_affine: None,
            logit_offset: None,
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

#[test]
fn a_random_initialisation_replaces_every_pretrained_weight() {
    let (_, backbone) = model("mobilenet-v2", "model-bn.onnx");
    let pretrained = named_params(&import_graph(&backbone, "input", "features").unwrap().layers);
    let fresh = |seed| {
        let mut g = import_graph(&backbone, "input", "features").unwrap().layers;
        tl_head::import::reinitialize(&mut g, seed);
        named_params(&g)
    };
    let (a, b) = (fresh(1), fresh(1));
    assert_eq!(a, b, "the same seed gives the same weights");
    assert_ne!(a, fresh(2));
    for (name, v) in &a {
        let old = &pretrained[name];
        let shape = v.shape();
        if name.ends_with("running_var") || (name.ends_with("weight") && shape.len() == 1) {
            assert!(v.iter().all(|&x| x == 1.0), "{name}");
        } else if name.ends_with("running_mean")
            || (name.ends_with("bias") && name.contains(".bn."))
        {
            assert!(v.iter().all(|&x| x == 0.0), "{name}");
        } else {
            // Convolution weights: uniform in ±1/√fan-in (and not the pretrained values).
            let bound = 1.0 / (shape[1..].iter().product::<usize>() as f32).sqrt();
            assert!(v.iter().all(|x| x.abs() <= bound), "{name}");
            assert_ne!(v, old, "{name}");
        }
    }
}

/// An Inception-like network (a stem, then 1×1, 3×3 and 5×5 branches and a 3×3 max pool
/// with a 1×1 convolution, joined by `Concat`; `tl_onnx::fixtures::tiny("inception")`)
/// imports whole: its features equal ONNX Runtime's, and one training step runs through
/// the concat and the pooling with every branch getting a gradient. An average pool
/// variant of the same file (count_include_pad 0 and 1) imports exactly too.
#[test]
fn an_inception_block_with_concat_and_pooling_imports_exactly_and_trains() {
    let backbone = tl_onnx::fixtures::tiny("inception", 5, 4).unwrap();
    let with_features = backbone.with_outputs(&["features"]).unwrap();
    let x = input(2);
    for include_pad in [None, Some(0), Some(1)] {
        let mut model = with_features.clone().into_proto();
        if let Some(c) = include_pad {
            let graph = model.graph.as_mut().unwrap();
            let pool = graph
                .node
                .iter_mut()
                .find(|n| n.op_type == "MaxPool")
                .unwrap();
            pool.op_type = "AveragePool".into();
            pool.attribute.push(tl_onnx::proto::AttributeProto {
                name: "count_include_pad".into(),
                r#type: tl_onnx::proto::AttributeType::Int as i32,
                i: c,
                ..Default::default()
            });
        }
        let model = OnnxModel::from_proto(model).unwrap();
        let features = run_model(&model, "tiny-inception", &x, &["features"])
            .remove("features")
            .unwrap();
        let mut imp = import_graph(&model, "input", "features").unwrap();
        let d = max_diff(&imp.layers.predict(&x).unwrap(), &features);
        println!("tiny inception ({include_pad:?}): imported vs ONNX Runtime: max diff {d:.2e}");
        assert!(d < FEATURE_TOL, "{include_pad:?}: {d}");
        let described = imp.layers.describe();
        assert!(described.contains("concat"), "{described}");
        let y = imp
            .layers
            .forward(
                &x,
                &mut tl_nn::Ctx::train(tl_core::rng::seeded_rng(0, "step")),
            )
            .unwrap();
        imp.layers
            .backward(&ndarray::ArrayD::ones(y.raw_dim()))
            .unwrap();
        let mut silent = Vec::new();
        imp.layers.visit("", &mut |n, p| {
            if n.ends_with(".weight") && p.grad.iter().all(|&v| v == 0.0) {
                silent.push(n.to_string());
            }
        });
        assert!(silent.is_empty(), "no gradient reached {silent:?}");
    }
}
