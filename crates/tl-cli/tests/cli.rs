//! End-to-end tests of the `tl` binary on the real fetched models
//! (`cargo xtask test` fetches them first).

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// Tests never reach the network: `tl` runs offline (`TL_OFFLINE`), and `cargo xtask
/// test` has fetched what they use.
fn tl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tl"))
        .args(args)
        .env("TL_OFFLINE", "1")
        .output()
        .expect("run tl")
}

fn tl_env(args: &[&str], env: &[(&str, &str)], remove: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tl"));
    cmd.args(args).env("TL_OFFLINE", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    for k in remove {
        cmd.env_remove(k);
    }
    cmd.output().expect("run tl")
}

/// A private TL_HOME sharing the fetched `subs` (runtimes, models, ...) but with its own
/// feature store, so a test sees every row computed.
fn private_home(subs: &[&str]) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let real = tl_core::home::tl_home().unwrap();
    for sub in subs {
        std::os::unix::fs::symlink(real.join(sub), home.path().join(sub)).unwrap();
    }
    home
}

/// The command failed, and its error names `needle`.
fn assert_fails_with(o: &Output, needle: &str) {
    assert!(!o.status.success(), "expected a failure naming `{needle}`");
    assert!(stderr(o).contains(needle), "{}", stderr(o));
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn photo(name: &str) -> PathBuf {
    let home = tl_core::home::tl_home().unwrap();
    let dir = tl_core::home::asset_dir(&home, "sample-photos");
    assert!(
        dir.join("fetched.json").is_file(),
        "run `cargo xtask fetch-models sample-photos`"
    );
    dir.join(name)
}

fn top1(model: &str, image: &Path) -> (usize, String, f64, String) {
    let out = tl(&[
        "classify",
        "--json",
        "--model",
        model,
        image.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schema_version"], 1);
    let first = &v["results"][0]["top"][0];
    (
        first["class"].as_u64().unwrap() as usize,
        first["label"].as_str().unwrap().to_string(),
        first["probability"].as_f64().unwrap(),
        v["provider"].as_str().unwrap().to_string(),
    )
}

/// ImageNet indices of tabby (281), tiger cat (282) and Egyptian cat (285).
const CATS: [usize; 3] = [281, 282, 285];
const ESPRESSO: usize = 967;

#[test]
fn both_imagenet_models_see_the_cat_and_the_espresso() {
    for model in ["efficientnet-lite0", "mobilenet-v2"] {
        let (class, label, p, provider) = top1(model, &photo("chelsea.png"));
        assert!(
            CATS.contains(&class),
            "{model}: chelsea classified as {class} {label} ({p})"
        );
        assert!(provider.contains("CPUExecutionProvider"), "{provider}");
        let (class, label, p, _) = top1(model, &photo("coffee.png"));
        assert_eq!(
            class, ESPRESSO,
            "{model}: coffee classified as {label} ({p})"
        );
        assert!(p > 0.5, "{model}: espresso only {p}");
    }
}

/// Largest difference from torchvision's probabilities on a PNG (the same pixels after
/// resize and crop, ONNX Runtime against PyTorch; measured 6e-7).
const TORCHVISION_PNG_PROB: f64 = 1e-4;
/// The same on the JPEG, whose decoders differ by up to 2 levels (measured 0.0039).
const TORCHVISION_JPEG_PROB: f64 = 0.01;

/// `tl classify` with MobileNetV2 gives torchvision's own top 5 and probabilities
/// (`tests/golden/torchvision_mobilenet_v2.json`: the same weights through
/// `MobileNet_V2_Weights.IMAGENET1K_V1.transforms()`, decoding included). With a floored
/// centre crop, rocket.jpg's top-1 probability was 0.3034 in tl against torchvision's 0.3542,
/// and its third and fourth classes were swapped.
#[test]
fn mobilenet_v2_gives_torchvisions_probabilities_on_the_sample_photos() {
    let golden: serde_json::Value = tl_core::io::read_json(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/golden/torchvision_mobilenet_v2.json"),
    )
    .unwrap();
    for (name, want) in golden["photos"].as_object().unwrap() {
        let out = tl(&[
            "classify",
            "--json",
            "--model",
            "mobilenet-v2",
            "--top",
            "5",
            photo(name).to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let top = v["results"][0]["top"].as_array().unwrap();
        let classes: Vec<u64> = top.iter().map(|t| t["class"].as_u64().unwrap()).collect();
        let want_classes: Vec<u64> = want["top5"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_u64().unwrap())
            .collect();
        assert_eq!(classes, want_classes, "{name}: top 5");
        let tolerance = if name.ends_with(".jpg") {
            TORCHVISION_JPEG_PROB
        } else {
            TORCHVISION_PNG_PROB
        };
        for (t, p) in top.iter().zip(want["probabilities"].as_array().unwrap()) {
            let (ours, theirs) = (t["probability"].as_f64().unwrap(), p.as_f64().unwrap());
            assert!(
                (ours - theirs).abs() <= tolerance,
                "{name}: class {} has probability {ours} in tl, {theirs} in torchvision",
                t["class"]
            );
        }
    }
}

#[test]
fn probabilities_are_a_distribution_and_text_output_is_readable() {
    let out = tl(&[
        "classify",
        "--top",
        "1000",
        "--json",
        photo("rocket.jpg").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let top = v["results"][0]["top"].as_array().unwrap();
    assert_eq!(top.len(), 1000);
    let sum: f64 = top.iter().map(|t| t["probability"].as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-4, "probabilities sum to {sum}");
    let out = tl(&[
        "classify",
        "--top",
        "2",
        photo("coffee.png").to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("espresso"), "{text}");
    assert!(stderr(&out).contains("provider cpu"), "{}", stderr(&out));
}

#[test]
fn own_model_with_a_contract_file() {
    let home = tl_core::home::tl_home().unwrap();
    let model = tl_core::home::model_dir(&home, "resnet50-nsfw").join("model.onnx");
    let contract =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/contracts/resnet50-nsfw.toml");
    let out = tl(&[
        "classify",
        "--json",
        "--model",
        model.to_str().unwrap(),
        "--contract",
        contract.to_str().unwrap(),
        photo("coffee.png").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let top = v["results"][0]["top"].as_array().unwrap();
    assert_eq!(top.len(), 2, "a two-class model");
    // Without a contract the model file cannot be used, and the error says what to do.
    let out = tl(&[
        "classify",
        "--model",
        model.to_str().unwrap(),
        photo("coffee.png").to_str().unwrap(),
    ]);
    assert_fails_with(&out, "--contract");
}

#[test]
fn inspect_lists_tappable_values_with_measured_shapes() {
    let out = tl(&["models", "inspect", "--json", "efficientnet-lite0"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let values = v["values"].as_array().unwrap();
    let find = |n: &str| {
        values
            .iter()
            .find(|x| x["name"] == n)
            .unwrap_or_else(|| panic!("no value {n}"))
    };
    assert_eq!(
        find("blocks.15")["measured_shape"],
        serde_json::json!([1, 320, 7, 7])
    );
    assert_eq!(find("head")["op"], "Clip");
    assert_eq!(
        find("features")["measured_shape"],
        serde_json::json!([1, 1280])
    );
    assert_eq!(v["nodes"], 94);
}

#[test]
fn bad_inputs_give_one_clear_error() {
    let coffee = photo("coffee.png");
    let coffee = coffee.to_str().unwrap();

    let out = tl(&["classify", "--model", "resnet-9000", coffee]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("unknown registry id `resnet-9000`") && e.contains("efficientnet-lite0"),
        "{e}"
    );

    let dir = tempfile::tempdir().unwrap();
    let not_image = dir.path().join("notes.jpg");
    std::fs::write(&not_image, b"this is text, not a JPEG").unwrap();
    let out = tl(&["classify", not_image.to_str().unwrap()]);
    assert_fails_with(&out, "notes.jpg");

    let out = tl(&["classify", "--device", "tpu", coffee]);
    assert_fails_with(&out, "tpu");

    let out = tl(&[
        "classify",
        "--image-size",
        "112",
        "--model",
        "vgg16-tumor",
        coffee,
    ]);
    assert_fails_with(&out, "240");
}

#[test]
fn cuda_that_cannot_be_honoured_fails_loudly_and_auto_says_what_it_chose() {
    let coffee = photo("coffee.png");
    let out = tl(&["classify", "--device", "cuda", coffee.to_str().unwrap()]);
    assert!(
        !out.status.success(),
        "--device cuda must not silently run on the CPU"
    );
    let e = stderr(&out);
    assert!(e.contains("--device cuda cannot be used"), "{e}");
    let out = tl(&["classify", "--device", "auto", coffee.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--device auto chose cpu"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn missing_runtime_library_names_the_fetch_command() {
    let empty_home = tempfile::tempdir().unwrap();
    let home = tl_core::home::tl_home().unwrap();
    // A model file is given by path so that only the runtime is missing.
    let model = tl_core::home::model_dir(&home, "mobilenet-v2").join("model.onnx");
    let contract =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/contracts/vgg16-tumor.toml");
    let out = tl_env(
        &[
            "classify",
            "--model",
            model.to_str().unwrap(),
            "--contract",
            contract.to_str().unwrap(),
            photo("coffee.png").to_str().unwrap(),
        ],
        &[("TL_HOME", empty_home.path().to_str().unwrap())],
        &["ORT_DYLIB_PATH"],
    );
    assert!(!out.status.success());
    let e = stderr(&out);
    // Offline (as tests run), the missing runtime is named with the way to fetch it.
    assert!(
        e.contains("not fetched, and fetching is off (offline): onnxruntime")
            && e.contains("tl models fetch ID"),
        "{e}"
    );
    // A library named by ORT_DYLIB_PATH is used as it is: nothing to fetch, even offline.
    let lib = tl_runtime::locate_library(&home, "onnxruntime").unwrap();
    let nsfw = tl_core::home::model_dir(&home, "resnet50-nsfw").join("model.onnx");
    let nsfw_contract =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/contracts/resnet50-nsfw.toml");
    let out = tl_env(
        &[
            "classify",
            "--model",
            nsfw.to_str().unwrap(),
            "--contract",
            nsfw_contract.to_str().unwrap(),
            photo("coffee.png").to_str().unwrap(),
        ],
        &[
            ("TL_HOME", empty_home.path().to_str().unwrap()),
            ("ORT_DYLIB_PATH", lib.to_str().unwrap()),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!empty_home.path().join("runtimes").exists());
    assert!(!e.contains("panicked"), "{e}");

    let out = tl_env(
        &["doctor", "--json"],
        &[("TL_HOME", empty_home.path().to_str().unwrap())],
        &["ORT_DYLIB_PATH"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["library"].is_null());
    assert!(
        v["library_error"]
            .as_str()
            .unwrap()
            .contains("tl models fetch onnxruntime")
    );
}

#[test]
fn doctor_reports_version_and_providers() {
    let out = tl(&["doctor", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["onnxruntime_version"], "1.31.1");
    assert!(
        v["providers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "CPUExecutionProvider")
    );
    assert_eq!(v["cuda"]["ready"], false);
}

#[test]
fn help_teaches_with_examples() {
    for args in [
        vec!["--help"],
        vec!["classify", "--help"],
        vec!["models", "fetch", "--help"],
    ] {
        let out = tl(&args);
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Example"), "{args:?}: {text}");
    }
}

#[test]
fn data_info_and_split() {
    let out = tl(&["data", "info", "--json", "sklearn-digits"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["rows"], 1797);
    let dir = tempfile::tempdir().unwrap();
    let split = dir.path().join("split.json");
    let args = [
        "data",
        "split",
        "sklearn-digits",
        "--seed",
        "7",
        "--budget",
        "5",
        "--out",
        split.to_str().unwrap(),
    ];
    assert!(tl(&args).status.success());
    let first = std::fs::read(&split).unwrap();
    assert!(tl(&args).status.success());
    assert_eq!(
        std::fs::read(&split).unwrap(),
        first,
        "same seed, same split.json bytes"
    );
    let s: serde_json::Value = serde_json::from_slice(&first).unwrap();
    let count = |part: &str| {
        s["rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["split"] == part)
            .count()
    };
    // 5 labels for each of 10 classes, training and validation together: 4 + 1.
    assert_eq!((count("train"), count("val")), (40, 10));
    let out = tl(&["data", "info", "imagenet-classes"]);
    assert_fails_with(&out, "imagenet-classes");
}

#[test]
fn extract_caches_by_content_and_writes_row_ordered_features() {
    let home = private_home(&["runtimes", "models", "assets", "datasets"]);
    let out = home.path().join("out");
    let args = [
        "extract",
        "--json",
        "--data",
        "sklearn-digits",
        "--image-size",
        "32",
        "--layer",
        "blocks.15",
        "--layer",
        "features",
        "--out",
        out.to_str().unwrap(),
    ];
    let env = [("TL_HOME", home.path().to_str().unwrap())];
    let first = tl_env(&args, &env, &[]);
    assert!(first.status.success(), "{}", stderr(&first));
    let v: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(v["report"]["computed"], 1797);
    let second = tl_env(&args, &env, &[]);
    let v: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(
        (
            v["report"]["computed"].as_u64(),
            v["report"]["cached"].as_u64()
        ),
        (Some(0), Some(1797))
    );
    for f in [
        "blocks.15.safetensors",
        "features.safetensors",
        "rows.json",
        "extract.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let rows: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("rows.json")).unwrap()).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1797);
    assert!(
        !std::fs::read_to_string(out.join("rows.json"))
            .unwrap()
            .contains("label"),
        "features never carry labels"
    );
    let bad = tl_env(
        &[
            "extract",
            "--data",
            "sklearn-digits",
            "--layer",
            "blocks.99",
        ],
        &env,
        &[],
    );
    assert_fails_with(&bad, "blocks.99");
}

#[test]
fn image_folder_extraction_skips_and_lists_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    for (class, src) in [("cat", "chelsea.png"), ("drink", "coffee.png")] {
        std::fs::create_dir_all(photos.join(class)).unwrap();
        std::fs::copy(photo(src), photos.join(class).join(src)).unwrap();
    }
    std::fs::write(photos.join("drink/broken.png"), b"not an image").unwrap();
    let home = private_home(&["runtimes", "models", "assets"]);
    let env = [("TL_HOME", home.path().to_str().unwrap())];
    let strict = tl_env(
        &[
            "extract",
            "--data",
            photos.to_str().unwrap(),
            "--image-size",
            "64",
        ],
        &env,
        &[],
    );
    assert_fails_with(&strict, "broken.png");
    let out = tl_env(
        &[
            "extract",
            "--json",
            "--skip-bad",
            "--data",
            photos.to_str().unwrap(),
            "--image-size",
            "64",
        ],
        &env,
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["report"]["computed"], 2);
    assert_eq!(v["report"]["skipped"][0]["id"], "drink/broken.png");
}

#[test]
fn gpu_check_without_a_usable_gpu_fails_with_the_reason() {
    let out = tl(&["gpu-check", "--no-fetch"]);
    assert!(!out.status.success());
    let e = stderr(&out);
    if cfg!(feature = "cuda") {
        assert!(e.contains("--device cuda cannot be used:"), "{e}");
    } else {
        assert!(
            e.contains(
                "--device cuda cannot be used: this `tl` was built without the `cuda` feature"
            ),
            "{e}"
        );
    }
    assert!(out.stdout.is_empty(), "no throughput table without the GPU");
}

#[test]
fn gpu_check_compares_two_devices_in_separate_processes() {
    // The check's own plumbing, CPU against CPU: both runs compute every row (private
    // feature stores), and the same provider gives the same features.
    let out = tl(&[
        "--json",
        "--quiet",
        "gpu-check",
        "--device",
        "cpu",
        "--against",
        "cpu",
        "--batch-sizes",
        "4,8",
        "--images",
        "8",
        "--sentences",
        "8",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let models = v["models"].as_array().unwrap();
    assert_eq!(models.len(), 2);
    for m in models {
        assert_eq!(m["max_abs_difference"], 0.0, "{m}");
        assert_eq!(m["passed"], true);
        let timings = m["timings"].as_array().unwrap();
        assert_eq!(timings.len(), 2);
        assert!(
            timings
                .iter()
                .all(|t| t["device_rows_per_second"].as_f64().unwrap() > 0.0)
        );
    }
    // EfficientNet-Lite0 at 224 px: 385 M multiply-adds, counted from the graph.
    let macs = models[0]["multiply_adds"].as_u64().unwrap();
    assert!((380_000_000..400_000_000).contains(&macs), "{macs}");
    assert!(v["gpu"].is_null());
}

/// Smallest per-row cosine between f16 and f32 EfficientNet-Lite0 features on the CPU
/// provider (measured 0.99995 on 32 MNIST digits; ONNX Runtime's CPU provider computes the
/// ops it has no f16 kernel for in f32, so this mostly measures half-precision weights).
const F16_MIN_COSINE: f64 = 0.9995;

#[test]
fn half_precision_features_are_close_and_cached_apart() {
    let home = private_home(&["runtimes", "models", "assets", "datasets"]);
    let h = home.path().to_str().unwrap();
    let run = |precision: &str, out: &Path| {
        let o = tl(&[
            "--home",
            h,
            "--json",
            "--quiet",
            "extract",
            "--model",
            "efficientnet-lite0",
            "--data",
            "mnist-5k",
            "--limit",
            "16",
            "--precision",
            precision,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        (
            v["report"]["computed"].as_u64().unwrap(),
            tl_features::store::read_matrix(&out.join("features.safetensors")).unwrap(),
        )
    };
    let outs = tempfile::tempdir().unwrap();
    let (n32, f32_features) = run("f32", &outs.path().join("f32"));
    let (n16, f16_features) = run("f16", &outs.path().join("f16"));
    assert_eq!((n32, n16), (16, 16), "f16 must not reuse f32 features");
    assert_eq!(
        run("f16", &outs.path().join("again")).0,
        0,
        "f16 features are cached"
    );
    let mut min_cos = 1f64;
    for (a, b) in f32_features.rows().into_iter().zip(f16_features.rows()) {
        let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
        let na: f64 = a.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
        let nb: f64 = b.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
        min_cos = min_cos.min(dot / (na * nb));
    }
    assert!(min_cos >= F16_MIN_COSINE, "{min_cos}");
    assert_ne!(f32_features, f16_features, "f16 changes the numbers");
}

#[test]
fn cache_verify_finds_a_flipped_byte_and_gc_removes_the_part() {
    let home = private_home(&["runtimes", "models", "assets", "datasets"]);
    let h = home.path().to_str().unwrap();
    let env = [("TL_HOME", h)];
    let out = tl_env(
        &[
            "extract",
            "--data",
            "sklearn-digits",
            "--image-size",
            "32",
            "--limit",
            "40",
        ],
        &env,
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let ls = tl_env(&["--json", "cache", "ls"], &env, &[]);
    assert!(ls.status.success(), "{}", stderr(&ls));
    let v: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    let stores = v["stores"].as_array().unwrap();
    assert_eq!(stores.len(), 1, "{v}");
    assert_eq!(stores[0]["rows"], 40);
    let dir = Path::new(stores[0]["dir"].as_str().unwrap()).to_path_buf();
    assert!(tl_env(&["cache", "verify"], &env, &[]).status.success());
    // One byte flipped in the middle of the stored features.
    let part = dir.join("part-00000.safetensors");
    let mut bytes = std::fs::read(&part).unwrap();
    let mid = bytes.len() - 40 * 32 - 100;
    bytes[mid] ^= 0x08;
    std::fs::write(&part, bytes).unwrap();
    let verify = tl_env(&["cache", "verify"], &env, &[]);
    assert!(!verify.status.success());
    let said = String::from_utf8_lossy(&verify.stdout);
    assert!(
        said.contains("corrupt") && said.contains("part-00000"),
        "{said}"
    );
    assert!(
        stderr(&verify).contains("1 corrupt parts"),
        "{}",
        stderr(&verify)
    );
    let gc = tl_env(&["cache", "gc"], &env, &[]);
    assert!(gc.status.success(), "{}", stderr(&gc));
    assert!(!part.exists());
    // The store had one part: it is gone, and verification has nothing left to fail.
    assert!(tl_env(&["cache", "verify"], &env, &[]).status.success());
}
