//! The trainer on real data (the registry's digits): MLP heads learn, the same seed gives
//! the same bits, a resumed run equals an uninterrupted one, multi-task heads train on rows
//! that lack some tasks' labels, and the head network's gradients match finite differences.

mod common;

use tl_head::{
    net::{HeadNet, HeadSpec, TaskSpec},
    train::{Checkpoint, EpochLog, Flow, Labelled, TrainConfig, TrainReport, Trainer, evaluate},
};
use tl_nn::{Act, Ctx, Tensor, checkpoint::named_params, gradcheck::check_module};

/// Digits with pixels scaled to [0, 1].
fn digits() -> (Tensor, Vec<u32>) {
    let (x, y) = common::digits_u8();
    (x.mapv(|v| f32::from(v) / 255.0).into_dyn(), y)
}

fn digit_task() -> Vec<TaskSpec> {
    vec![TaskSpec {
        name: "digit".into(),
        classes: (0..10).map(|d| d.to_string()).collect(),
        weight: 1.0,
    }]
}

fn cfg(epochs: usize) -> TrainConfig {
    let mut c = TrainConfig::default();
    c.epochs = epochs;
    c.lr = 1e-2;
    c.batch_size = 32;
    c.seed = 5;
    c
}

fn split(x: &Tensor, y: &[u32], lo: usize, hi: usize) -> (Tensor, Vec<Vec<Option<u32>>>) {
    (
        x.slice_axis(ndarray::Axis(0), ndarray::Slice::from(lo..hi))
            .to_owned(),
        vec![y[lo..hi].iter().map(|&v| Some(v)).collect()],
    )
}

fn mlp() -> HeadSpec {
    let mut spec = HeadSpec::mlp(vec![32]);
    spec.dropout = 0.1;
    spec.activation = Act::Gelu;
    spec
}

/// The trainer as these tests drive it: checkpoint `dir` with its fingerprint, an epoch
/// callback, and an interruption after `stop_after` epochs (through [`Flow::Stop`]).
#[allow(clippy::too_many_arguments)]
fn train(
    net: &mut HeadNet,
    tasks: &[TaskSpec],
    train: &Labelled<'_>,
    val: Option<&Labelled<'_>>,
    cfg: &TrainConfig,
    dir: Option<(&std::path::Path, &str)>,
    on_epoch: &mut dyn FnMut(&EpochLog),
    stop_after: Option<usize>,
) -> tl_head::Result<TrainReport> {
    let mut ran = 0;
    let mut callback = |log: &EpochLog| {
        on_epoch(log);
        ran += 1;
        if stop_after.is_some_and(|s| ran >= s) {
            Flow::Stop
        } else {
            Flow::Continue
        }
    };
    Trainer::new(cfg, tasks)
        .checkpoint(dir.map(|(dir, fingerprint)| Checkpoint { dir, fingerprint }))
        .on_epoch(&mut callback)
        .fit(net, train, val)
}

#[test]
fn an_mlp_head_learns_digits_and_is_reproducible() {
    let (x, y) = digits();
    let (xtr, ytr) = split(&x, &y, 0, 1200);
    let (xva, yva) = split(&x, &y, 1200, 1500);
    let tasks = digit_task();
    let run = || {
        let mut net = HeadNet::build(&mlp(), 64, &tasks, 5).unwrap();
        let report = train(
            &mut net,
            &tasks,
            &Labelled {
                x: &xtr,
                labels: &ytr,
            },
            Some(&Labelled {
                x: &xva,
                labels: &yva,
            }),
            &cfg(30),
            None,
            &mut |_| {},
            None,
        )
        .unwrap();
        (net, report)
    };
    let (mut a, report) = run();
    let (b, _) = run();
    assert_eq!(named_params(&a), named_params(&b), "same seed, same bits");
    let (xte, yte) = split(&x, &y, 1500, 1797);
    let acc = evaluate(
        &mut a,
        &Labelled {
            x: &xte,
            labels: &yte,
        },
        &tasks,
        100,
    )
    .unwrap()[0]
        .accuracy;
    println!(
        "digits MLP: test accuracy {acc:.4}, best epoch {}",
        report.best_epoch
    );
    // Chance is 10 %. The last rows of digits come from other writers and are harder: the
    // exact linear probe gets 92 % on rows 1200.. (tests/golden/probe/digits.json).
    assert!(acc > 0.85, "test accuracy {acc}");
    let first = report.history[0].train_loss;
    assert!(report.history.last().unwrap().train_loss < first / 3.0);
}

#[test]
fn a_resumed_run_gives_the_same_bits() {
    let (x, y) = digits();
    let (xtr, ytr) = split(&x, &y, 0, 600);
    let (xva, yva) = split(&x, &y, 600, 800);
    let tasks = digit_task();
    let c = cfg(6);
    let fit = |dir: Option<&std::path::Path>, stop: Option<usize>| {
        let mut net = HeadNet::build(&mlp(), 64, &tasks, 5).unwrap();
        train(
            &mut net,
            &tasks,
            &Labelled {
                x: &xtr,
                labels: &ytr,
            },
            Some(&Labelled {
                x: &xva,
                labels: &yva,
            }),
            &c,
            dir.map(|d| (d, "digits 0..600")),
            &mut |_| {},
            stop,
        )
        .map(|r| (named_params(&net), r))
    };
    let go = |dir: Option<&std::path::Path>, stop: Option<usize>| fit(dir, stop).unwrap();
    let (whole, _) = go(None, None);
    let dir = tempfile::tempdir().unwrap();
    let (_, first) = go(Some(dir.path()), Some(2));
    assert_eq!(first.epochs_run, 2);
    let ck = tl_head::train::checkpoint_dir(dir.path());
    let mut names: Vec<String> = std::fs::read_dir(&ck)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "best-0002.safetensors",
            "optimizer-0002.safetensors",
            "optimizer.json",
            "weights-0002.safetensors"
        ],
        "only the published epoch's files remain"
    );
    // What a process killed while writing epoch 3's checkpoint leaves: that epoch's tensor
    // files, unpublished (optimizer.json still lists epoch 2's). They are not read.
    for f in ["weights-0003.safetensors", "best-0003.safetensors"] {
        std::fs::copy(ck.join("weights-0002.safetensors"), ck.join(f)).unwrap();
    }
    std::fs::write(ck.join(".optimizer.json.1.0.tmp"), b"{\"half").unwrap();
    // A fresh process would rebuild the network from the seed, then find the checkpoint.
    let (resumed, r) = go(Some(dir.path()), None);
    assert_eq!(r.resumed_from_epoch, Some(2));
    assert_eq!(
        resumed, whole,
        "resumed after epoch 2, same bits as one run"
    );
    // A checkpoint of another run (other data) is refused, not resumed.
    let mut net = HeadNet::build(&mlp(), 64, &tasks, 5).unwrap();
    let err = train(
        &mut net,
        &tasks,
        &Labelled {
            x: &xtr,
            labels: &ytr,
        },
        None,
        &c,
        Some((dir.path(), "another dataset")),
        &mut |_| {},
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("holds a checkpoint of a run with another model, data or head"),
        "{err}"
    );
    // A checkpoint file changed since it was published is refused by name, not loaded.
    let dir = tempfile::tempdir().unwrap();
    go(Some(dir.path()), Some(2));
    let weights = tl_head::train::checkpoint_weights(dir.path())
        .unwrap()
        .unwrap();
    let mut bytes = std::fs::read(&weights).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 0x01;
    std::fs::write(&weights, bytes).unwrap();
    let err = fit(Some(dir.path()), None).unwrap_err().to_string();
    assert!(
        err.contains("weights-0002.safetensors") && err.contains("optimizer.json recorded"),
        "{err}"
    );
}

#[test]
fn multi_task_heads_train_with_missing_labels() {
    let (x, y) = digits();
    let n = 1000;
    let xtr = x
        .slice_axis(ndarray::Axis(0), ndarray::Slice::from(0..n))
        .to_owned();
    // Task 1: the digit, known for every other row only; task 2: even or odd, on all rows.
    let digit: Vec<Option<u32>> = (0..n).map(|i| (i % 2 == 0).then_some(y[i])).collect();
    let parity: Vec<Option<u32>> = (0..n).map(|i| Some(y[i] % 2)).collect();
    let tasks = vec![
        digit_task().remove(0),
        TaskSpec {
            name: "parity".into(),
            classes: vec!["even".into(), "odd".into()],
            weight: 0.5,
        },
    ];
    let labels = vec![digit, parity];
    let mut net = HeadNet::build(&mlp(), 64, &tasks, 1).unwrap();
    let (xte, yte) = split(&x, &y, 1200, 1797);
    let te_labels = vec![
        yte[0].clone(),
        yte[0].iter().map(|v| v.map(|d| d % 2)).collect(),
    ];
    train(
        &mut net,
        &tasks,
        &Labelled {
            x: &xtr,
            labels: &labels,
        },
        None,
        &cfg(25),
        None,
        &mut |_| {},
        None,
    )
    .unwrap();
    let scores = evaluate(
        &mut net,
        &Labelled {
            x: &xte,
            labels: &te_labels,
        },
        &tasks,
        128,
    )
    .unwrap();
    println!("multi-task: {scores:?}");
    assert!(
        scores[0].accuracy > 0.85 && scores[1].accuracy > 0.85,
        "{scores:?}"
    );
}

#[test]
fn the_head_networks_gradients_match_finite_differences() {
    let tasks = vec![
        TaskSpec {
            name: "a".into(),
            classes: vec!["x".into(), "y".into(), "z".into()],
            weight: 1.0,
        },
        TaskSpec {
            name: "b".into(),
            classes: vec!["p".into(), "q".into()],
            weight: 1.0,
        },
    ];
    let mut spec = HeadSpec::mlp(vec![6]);
    spec.activation = Act::Gelu;
    let mut net = HeadNet::build(&spec, 5, &tasks, 2).unwrap();
    let x = Tensor::from_shape_fn(vec![4, 5], |i| ((i[0] * 5 + i[1]) as f32 * 0.37).sin());
    let w = Tensor::from_shape_fn(vec![4, 5], |i| ((i[0] * 5 + i[1]) as f32 * 0.71).cos());
    let r = check_module(&mut net, &x, &w, 1e-2, 50, &|| {
        Ctx::train(tl_core::rng::seeded_rng(0, "d"))
    })
    .unwrap();
    assert!(r.max_error < 2e-3, "{r:?}");
}

#[test]
fn bad_settings_and_labels_fail_before_training() {
    let tasks = digit_task();
    let x = Tensor::zeros(vec![4, 3]);
    let labels = vec![vec![Some(0), Some(1), Some(12), None]];
    let mut net = HeadNet::build(&HeadSpec::linear(), 3, &tasks, 0).unwrap();
    let mut go = |c: &TrainConfig, labels: &[Vec<Option<u32>>], x: &Tensor| {
        train(
            &mut net,
            &tasks,
            &Labelled { x, labels },
            None,
            c,
            None,
            &mut |_| {},
            None,
        )
        .unwrap_err()
        .to_string()
    };
    assert!(
        go(&cfg(1), &labels, &x)
            .contains("row 2: class 12 of task `digit` is outside its 10 classes")
    );
    let mut c = cfg(1);
    c.lr = -1.0;
    assert!(go(&c, &labels, &x).contains("learning rate"));
    let mut c = cfg(1);
    c.batch_size = 0;
    assert!(go(&c, &labels, &x).contains("batch size"));
    let mut nan = x.clone();
    nan[[1, 2]] = f32::INFINITY;
    assert!(go(&cfg(1), &[vec![Some(0); 4]], &nan).contains("non-finite"));
    assert!(HeadNet::build(&HeadSpec::mlp(vec![]), 3, &tasks, 0).is_err());
    let wide = Tensor::zeros(vec![4, 5]);
    assert!(go(&cfg(1), &[vec![Some(0); 4]], &wide).contains(
        "invalid training features: linear input: expected shape [batch, 3], got [1, 5]"
    ));
}

/// One epoch of one batch: the weights after a single step.
fn one_step(c: &TrainConfig) -> std::collections::BTreeMap<String, Tensor> {
    let (x, y) = digits();
    let (xtr, ytr) = split(&x, &y, 0, 96);
    let tasks = digit_task();
    let mut spec = HeadSpec::mlp(vec![16]);
    spec.activation = Act::Gelu;
    let mut net = HeadNet::build(&spec, 64, &tasks, 2).unwrap();
    train(
        &mut net,
        &tasks,
        &Labelled {
            x: &xtr,
            labels: &ytr,
        },
        None,
        c,
        None,
        &mut |_| {},
        None,
    )
    .unwrap();
    named_params(&net)
}

fn max_change(
    a: &std::collections::BTreeMap<String, Tensor>,
    b: &std::collections::BTreeMap<String, Tensor>,
) -> f32 {
    a.iter()
        .map(|(k, v)| {
            v.iter()
                .zip(b[k].iter())
                .map(|(p, q)| (p - q).abs())
                .fold(0.0, f32::max)
        })
        .fold(0.0, f32::max)
}

/// Summation order differs between one pass of 96 rows and three of 32.
const ACCUMULATE_TOL: f32 = 1e-6;

#[test]
fn micro_batches_accumulate_to_the_full_batch_step_and_clipping_bounds_the_step() {
    let mut c = cfg(1);
    c.batch_size = 96;
    c.optimizer = tl_nn::Optimizer::Sgd {
        momentum: 0.0,
        nesterov: false,
        weight_decay: 0.0,
    };
    c.schedule = tl_nn::Schedule::Constant;
    c.lr = 0.5;
    let full = one_step(&c);
    let mut micro = c.clone();
    micro.micro_batch = Some(32);
    let d = max_change(&full, &one_step(&micro));
    assert!(
        d < ACCUMULATE_TOL,
        "micro-batches differ from the full batch by {d}"
    );
    // Uneven micro-batches (40 + 40 + 16) are weighted by their rows.
    micro.micro_batch = Some(40);
    let d = max_change(&full, &one_step(&micro));
    assert!(d < ACCUMULATE_TOL, "uneven micro-batches differ by {d}");
    // Clipping: plain SGD moves the weights by lr × the clipped gradient, whose global
    // norm is the clip.
    let mut start = c.clone();
    start.lr = 1e-30;
    let before = one_step(&start);
    let mut clipped = c.clone();
    clipped.clip_norm = Some(1e-3);
    let after = one_step(&clipped);
    let step: f64 = after
        .iter()
        .map(|(k, v)| {
            v.iter()
                .zip(before[k].iter())
                .map(|(p, q)| ((p - q) as f64).powi(2))
                .sum::<f64>()
        })
        .sum::<f64>()
        .sqrt();
    assert!(
        (step - 0.5e-3).abs() < 1e-5,
        "clipped step norm {step}, expected lr × clip = 5e-4"
    );
    let mut bad = c.clone();
    bad.clip_norm = Some(0.0);
    assert!(
        bad.check()
            .unwrap_err()
            .to_string()
            .contains("gradient clipping")
    );
    bad.clip_norm = None;
    bad.micro_batch = Some(0);
    assert!(bad.check().unwrap_err().to_string().contains("micro-batch"));
}
