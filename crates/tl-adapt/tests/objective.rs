//! The trained methods through `tl-head`'s trainer, on synthetic domains: the whole
//! objective's gradient against finite differences, reproducibility, resuming with a
//! discriminator, and that alignment moves the target where the source is.

use ndarray::{Array2, Axis};
use rand::Rng;
use tl_adapt::{
    AdaptConfig, Method,
    loss::{Bandwidths, Kernel},
    objective::AdaptObjective,
    run::{Adapted, AdaptedModel, Domains, adapt},
};
use tl_core::Named;
use tl_head::{
    net::{HeadNet, HeadSpec, TaskSpec},
    train::{Checkpoint, EpochLog, Flow, Labelled, Objective, StepInfo, TrainConfig, Trainer},
};
use tl_nn::{Ctx, ModuleExt, Tensor, checkpoint::named_params};

/// f32 network, central differences with step 1e-2 (as tl-nn's own checks).
const GRAD_TOL: f64 = 2e-3;

fn task() -> TaskSpec {
    TaskSpec {
        name: "y".into(),
        classes: vec!["a".into(), "b".into(), "c".into()],
        weight: 1.0,
    }
}

/// Source: three classes, each high on its own third of 8 features; target: the same, moved.
fn domains(n: usize, seed: u64) -> (Tensor, Vec<Vec<Option<u32>>>, Tensor, Vec<u32>) {
    let mut rng = tl_core::rng::seeded_rng(seed, "domains");
    let mut draw = |n: usize| {
        let y: Vec<u32> = (0..n).map(|i| (i % 3) as u32).collect();
        let x = Array2::from_shape_fn((n, 8), |(i, j)| {
            let centre = if j % 3 == y[i] as usize { 1.0 } else { 0.0 };
            centre + 0.5 * (rng.random::<f32>() - 0.5)
        });
        (x, y)
    };
    let (xs, ys) = draw(n);
    let (xt, yt) = draw(n);
    // Moved along class 0's features: a source classifier calls most target rows class 0.
    let xt = Array2::from_shape_fn(xt.raw_dim(), |(i, j)| {
        xt[[i, j]] + if j % 3 == 0 { 1.2 } else { 0.0 }
    });
    (
        xs.into_dyn(),
        vec![ys.iter().map(|&v| Some(v)).collect()],
        xt.into_dyn(),
        yt,
    )
}

/// GELU: smooth, so that finite differences do not straddle a kink.
fn head() -> HeadSpec {
    let mut h = HeadSpec::mlp(vec![16]);
    h.activation = tl_nn::Act::Gelu;
    h
}

fn train_cfg(epochs: usize) -> TrainConfig {
    let mut c = TrainConfig::default();
    c.epochs = epochs;
    c.batch_size = 32;
    c.lr = 1e-2;
    c.seed = 3;
    c.patience = None;
    c
}

#[test]
fn the_objectives_gradients_match_finite_differences() {
    let (xs, ys, xt, _) = domains(40, 1);
    let tasks = [task()];
    let fixed = Kernel::Gaussian {
        bandwidths: Bandwidths::Fixed {
            sigma2: vec![0.5, 2.0],
        },
    };
    let labelled = Labelled {
        x: &xs,
        labels: &ys,
    };
    let rows: Vec<usize> = (0..12).collect();
    let info = StepInfo {
        seed: 0,
        epoch: 0,
        batch: 0,
        step: 0,
        total_steps: 10,
    };
    for (method, kernel) in [
        (Method::Coral, Kernel::Linear),
        (Method::Mmd, fixed.clone()),
        (Method::Mmd, Kernel::Linear),
        (Method::Entropy, Kernel::Linear),
        (Method::Shot, Kernel::Linear), // before its warm-up: information maximisation only
    ] {
        let mut cfg = AdaptConfig::new(method);
        cfg.kernel = kernel;
        cfg.weight = Some(2.0);
        let mut net = HeadNet::build(&head(), 8, &tasks, 7).unwrap();
        let mut obj = AdaptObjective::new(&cfg, &tasks, 0.0, &xt, 16, 0).unwrap();
        obj.begin_epoch(&mut net, 0).unwrap();
        let mut loss_at = |net: &mut HeadNet| {
            net.zero_grad();
            obj.batch(
                net,
                &labelled,
                &rows,
                info,
                &mut Ctx::train(tl_core::rng::seeded_rng(0, "dropout")),
            )
            .unwrap()
        };
        loss_at(&mut net);
        let analytic = named_grads(&net);
        let params = named_params(&net);
        let mut worst = (0.0f64, String::new());
        for (name, value) in &params {
            for i in (0..value.len()).step_by(7) {
                let mut at = |delta: f32| {
                    let mut p = params.clone();
                    p.get_mut(name).unwrap().as_slice_mut().unwrap()[i] += delta;
                    tl_nn::checkpoint::set_params(&mut net, &p, std::path::Path::new("test"))
                        .unwrap();
                    loss_at(&mut net)
                };
                let h = 1e-2f32;
                let numeric = (at(h) - at(-h)) / (2.0 * f64::from(h));
                let a = f64::from(analytic[name].as_slice().unwrap()[i]);
                let err = (a - numeric).abs() / numeric.abs().max(1.0);
                if err > worst.0 {
                    worst = (err, format!("{name}[{i}]: analytic {a}, numeric {numeric}"));
                }
            }
        }
        assert!(worst.0 < GRAD_TOL, "{method}: {}", worst.1);
    }
}

fn named_grads(net: &HeadNet) -> std::collections::BTreeMap<String, Tensor> {
    let mut out = std::collections::BTreeMap::new();
    tl_nn::Module::visit(net, "", &mut |name, p| {
        out.insert(name.to_string(), p.grad.clone());
    });
    out
}

#[test]
fn dann_resumes_to_the_same_bits_discriminator_included() {
    let (xs, ys, xt, _) = domains(120, 2);
    let tasks = [task()];
    let cfg = AdaptConfig::new(Method::Dann);
    let tc = train_cfg(4);
    let labelled = Labelled {
        x: &xs,
        labels: &ys,
    };
    let go = |dir: Option<&std::path::Path>, stop: Option<usize>| {
        let mut net = HeadNet::build(&head(), 8, &tasks, 3).unwrap();
        let mut obj = AdaptObjective::new(&cfg, &tasks, 0.0, &xt, 16, 3).unwrap();
        let mut ran = 0;
        let mut stop_after = |_: &EpochLog| {
            ran += 1;
            if stop.is_some_and(|s| ran >= s) {
                Flow::Stop
            } else {
                Flow::Continue
            }
        };
        Trainer::new(&tc, &tasks)
            .checkpoint(dir.map(|dir| Checkpoint {
                dir,
                fingerprint: "synthetic",
            }))
            .objective(&mut obj)
            .on_epoch(&mut stop_after)
            .fit(&mut net, &labelled, None)
            .unwrap();
        let aux = named_params(obj.aux().unwrap());
        (named_params(&net), aux)
    };
    let whole = go(None, None);
    let dir = tempfile::tempdir().unwrap();
    go(Some(dir.path()), Some(2));
    let weights = tl_head::train::checkpoint_weights(dir.path())
        .unwrap()
        .expect("a checkpoint after epoch 2");
    let saved = tl_nn::checkpoint::load_tensors(&weights).unwrap();
    assert!(
        saved.keys().any(|k| k.starts_with("aux.")),
        "the discriminator is checkpointed: {:?}",
        saved.keys()
    );
    let resumed = go(Some(dir.path()), None);
    assert_eq!(
        resumed, whole,
        "resumed after epoch 2: same bits, network and discriminator"
    );
}

fn target_accuracy(adapted: &mut Adapted, xt: &Tensor, yt: &[u32]) -> f64 {
    let pred = adapted.predict(xt).unwrap();
    pred.iter().zip(yt).filter(|(a, b)| a == b).count() as f64 / yt.len() as f64
}

#[test]
fn every_method_runs_and_is_reproducible_and_alignment_helps() {
    let (xs, ys, xt, yt) = domains(300, 4);
    let (xv, yv) = (
        xs.slice_axis(Axis(0), ndarray::Slice::from(240..300))
            .to_owned(),
        vec![ys[0][240..].to_vec()],
    );
    let (xtr, ytr) = (
        xs.slice_axis(Axis(0), ndarray::Slice::from(0..240))
            .to_owned(),
        vec![ys[0][..240].to_vec()],
    );
    let t = task();
    let d = Domains {
        task: &t,
        source_train: Labelled {
            x: &xtr,
            labels: &ytr,
        },
        source_val: Labelled {
            x: &xv,
            labels: &yv,
        },
        target: &xt,
        target_labels: None,
    };
    // Without per-domain standardisation (which alone undoes a translation: checked
    // below), so that the methods have a shift to remove.
    let raw = |m: Method| {
        let mut c = AdaptConfig::new(m);
        c.per_domain_standardize = false;
        c
    };
    let mut acc = std::collections::BTreeMap::new();
    for &m in Method::ALL {
        let (mut a, summary) =
            adapt(&d, &raw(m), &head(), &train_cfg(8), None, &mut |_| {}).unwrap();
        assert_eq!(summary.method, m);
        assert!(
            summary.source_val_accuracy > 0.8,
            "{m}: source validation {}",
            summary.source_val_accuracy
        );
        let p = a.predict_proba(&xt).unwrap();
        assert!(
            p.rows().into_iter().all(|r| (r.sum() - 1.0).abs() < 1e-9),
            "{m}: rows sum to 1"
        );
        if m.trained() {
            let (b, _) = adapt(&d, &raw(m), &head(), &train_cfg(8), None, &mut |_| {}).unwrap();
            let (AdaptedModel::Net { net: n1, .. }, AdaptedModel::Net { net: n2, .. }) =
                (&a.model, &b.model)
            else {
                unreachable!()
            };
            assert_eq!(
                named_params(n1),
                named_params(n2),
                "{m}: same seed, same bits"
            );
        }
        acc.insert(m.name(), target_accuracy(&mut a, &xt, &yt));
    }
    eprintln!("target accuracy: {acc:?}");
    // The target is the source moved: aligning the statistics must help.
    // (Measured: none 0.48; coral-closed, mmd, dann, shot and propagate 1.0; deep CORAL
    // 0.54, which matches covariances, not means.)
    for m in ["coral-closed", "mmd", "dann", "shot", "propagate"] {
        assert!(acc[m] > acc["none"] + 0.3, "{m}: {acc:?}");
    }
    // Per-domain standardisation (the default) removes the translation by itself.
    for m in [Method::None, Method::Prior] {
        let (mut a, _) = adapt(
            &d,
            &AdaptConfig::new(m),
            &head(),
            &train_cfg(8),
            None,
            &mut |_| {},
        )
        .unwrap();
        let standardized = target_accuracy(&mut a, &xt, &yt);
        assert!(
            standardized > 0.95,
            "{m} with standardisation: {standardized}"
        );
        // The source statistics come from every source row, validation included (labels
        // unused): fitted on the training rows alone, a feature nearly constant there
        // blows validation rows up (see `Standardizer`).
        let all = ndarray::concatenate(Axis(0), &[xtr.view(), xv.view()]).unwrap();
        let want = tl_adapt::closed::Standardizer::fit(
            all.into_dimensionality::<ndarray::Ix2>().unwrap().view(),
        )
        .unwrap();
        assert_eq!(a.source_standardizer.as_ref(), Some(&want), "{m}");
    }
}

/// A predictor's parts composed by hand against the run's own predictions: the exported
/// ONNX graph is these same parts (tl-cli's tests run it through ONNX Runtime).
const PREDICTOR_TOL: f64 = 1e-5;

#[test]
fn the_target_predictor_parts_reproduce_every_methods_predictions() {
    let (xs, ys, xt, _) = domains(240, 5);
    let xv = xs
        .slice_axis(Axis(0), ndarray::Slice::from(180..240))
        .to_owned();
    let yv = vec![ys[0][180..].to_vec()];
    let xtr = xs
        .slice_axis(Axis(0), ndarray::Slice::from(0..180))
        .to_owned();
    let ytr = vec![ys[0][..180].to_vec()];
    let t = task();
    let d = Domains {
        task: &t,
        source_train: Labelled {
            x: &xtr,
            labels: &ytr,
        },
        source_val: Labelled {
            x: &xv,
            labels: &yv,
        },
        target: &xt,
        target_labels: None,
    };
    let x2 = xt.clone().into_dimensionality::<ndarray::Ix2>().unwrap();
    for &m in Method::ALL {
        if m == Method::AdaBn {
            continue; // a backbone method: its head is a `none` run on other features
        }
        for standardize in [true, false] {
            let mut c = AdaptConfig::new(m);
            c.per_domain_standardize = standardize;
            let (mut a, _) = adapt(&d, &c, &head(), &train_cfg(3), None, &mut |_| {}).unwrap();
            let want = a.predict_proba(&xt).unwrap();
            let p = a.target_predictor(&head(), &t);
            assert_eq!(p.affine.is_some(), standardize, "{m}");
            assert_eq!(p.logit_offset.is_some(), m == Method::Prior, "{m}");
            let x = match &p.affine {
                Some((scale, shift)) => {
                    let (k, b) = (
                        ndarray::Array1::from(scale.clone()),
                        ndarray::Array1::from(shift.clone()),
                    );
                    &x2 * &k + &b
                }
                None => x2.clone(),
            };
            let mut net = HeadNet::build(&p.head, 8, std::slice::from_ref(&t), 0).unwrap();
            tl_nn::checkpoint::set_params(&mut net, &p.params, std::path::Path::new("parts"))
                .unwrap();
            let mut z = net
                .predict(&x.into_dyn())
                .unwrap()
                .into_dimensionality::<ndarray::Ix2>()
                .unwrap()
                .mapv(f64::from);
            if let Some(o) = &p.logit_offset {
                z += &ndarray::Array1::from(o.iter().map(|&v| f64::from(v)).collect::<Vec<_>>());
            }
            let got = tl_adapt::loss::probabilities(z.view());
            let worst = (&got - &want).iter().fold(0.0f64, |w, d| w.max(d.abs()));
            assert!(
                worst < PREDICTOR_TOL,
                "{m}, standardise {standardize}: {worst:.2e}"
            );
        }
    }
}

#[test]
fn a_few_target_labels_join_the_training_rows() {
    let (xs, ys, xt, yt) = domains(240, 6);
    let xv = xs
        .slice_axis(Axis(0), ndarray::Slice::from(180..240))
        .to_owned();
    let yv = vec![ys[0][180..].to_vec()];
    let xtr = xs
        .slice_axis(Axis(0), ndarray::Slice::from(0..180))
        .to_owned();
    let ytr = vec![ys[0][..180].to_vec()];
    let t = task();
    let run = |m: Method, labels: Option<&[Option<u32>]>| {
        let d = Domains {
            task: &t,
            source_train: Labelled {
                x: &xtr,
                labels: &ytr,
            },
            source_val: Labelled {
                x: &xv,
                labels: &yv,
            },
            target: &xt,
            target_labels: labels,
        };
        // No standardisation: the shift stays, so only labels can undo it.
        let mut c = AdaptConfig::new(m);
        c.per_domain_standardize = false;
        let (mut a, _) = adapt(&d, &c, &head(), &train_cfg(8), None, &mut |_| {}).unwrap();
        target_accuracy(&mut a, &xt, &yt)
    };
    let all: Vec<Option<u32>> = yt.iter().map(|&y| Some(y)).collect();
    let few: Vec<Option<u32>> = (0..yt.len()).map(|i| (i < 15).then_some(yt[i])).collect();
    for m in [Method::None, Method::Prior] {
        let (without, with_all, with_few) = (run(m, None), run(m, Some(&all)), run(m, Some(&few)));
        eprintln!("{m}: no target labels {without:.3}, 15 {with_few:.3}, all {with_all:.3}");
        // Every target row labelled: the shift is learnt away.
        assert!(
            with_all > 0.9 && with_all > without + 0.3,
            "{m}: {without} → {with_all}"
        );
        assert_ne!(with_few, without, "{m}: 15 target labels changed nothing");
    }
    // A label list that does not match the target's rows fails before training.
    let short = vec![Some(0u32); 3];
    let d = Domains {
        task: &t,
        source_train: Labelled {
            x: &xtr,
            labels: &ytr,
        },
        source_val: Labelled {
            x: &xv,
            labels: &yv,
        },
        target: &xt,
        target_labels: Some(&short),
    };
    let e = adapt(
        &d,
        &AdaptConfig::new(Method::None),
        &head(),
        &train_cfg(1),
        None,
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("target labels"), "{e}");
}

#[test]
fn mismatched_domains_fail_before_training() {
    let (xs, ys, _, _) = domains(30, 5);
    let narrow: Tensor = Array2::<f32>::zeros((10, 5)).into_dyn();
    let empty: Tensor = Array2::<f32>::zeros((0, 8)).into_dyn();
    let t = task();
    for (target, want) in [(&narrow, "[rows, 8]"), (&empty, "no rows")] {
        let d = Domains {
            task: &t,
            source_train: Labelled {
                x: &xs,
                labels: &ys,
            },
            source_val: Labelled {
                x: &xs,
                labels: &ys,
            },
            target,
            target_labels: None,
        };
        let err = adapt(
            &d,
            &AdaptConfig::new(Method::Mmd),
            &head(),
            &train_cfg(1),
            None,
            &mut |_| {},
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains(want), "{err}");
    }
}
