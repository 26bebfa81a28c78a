//! tl's resize and centre crop against torchvision's evaluation transform (`Resize` then
//! `CenterCrop` on PIL images; goldens made by `tests/reference/torchvision_transform.py`,
//! torchvision 0.29.2, Pillow 13.0.0): scikit-image's sample photos at 224, 160, 112 (and
//! 96) px, tiny grayscale inputs upscaled to 224, and the resized sizes and crop offsets
//! torchvision takes for 90 image sizes.

use std::path::{Path, PathBuf};

use tl_core::ImageContract;
use tl_features::image::{Rgb8, load_rgb, plan, resize_and_crop, resize_bilinear};

/// Largest allowed difference from Pillow, in 8-bit levels (the issue allows 1.5/255).
const MAX_LEVELS: u8 = 1;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden")
}

fn golden(name: &str) -> PathBuf {
    golden_dir().join("pillow").join(name)
}

fn photos() -> PathBuf {
    let home = tl_core::home::tl_home().unwrap();
    let dir = tl_core::home::asset_dir(&home, "sample-photos");
    assert!(
        dir.join("fetched.json").is_file(),
        "sample photos missing in {}: run `cargo xtask fetch-models sample-photos`",
        dir.display()
    );
    dir
}

fn max_diff(a: &Rgb8, b: &Rgb8) -> u8 {
    assert_eq!((a.width(), a.height()), (b.width(), b.height()));
    a.pixels()
        .iter()
        .zip(b.pixels())
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap()
}

fn contract(size: u32) -> ImageContract {
    ImageContract::rgb_center_crop("input", size, [0.0; 3], [1.0; 3])
}

#[test]
fn photos_match_pillow() {
    let dir = photos();
    let mut worst = 0;
    for name in [
        "chelsea.png",
        "coffee.png",
        "astronaut.png",
        "rocket.jpg",
        "camera.png",
    ] {
        // JPEG: resize Pillow's own decoded pixels (decoders differ; see the test below).
        let img = if name.ends_with(".jpg") {
            load_rgb(&golden(&format!(
                "{}-decoded.png",
                name.split('.').next().unwrap()
            )))
            .unwrap()
        } else {
            load_rgb(&dir.join(name)).unwrap()
        };
        let sizes: &[u32] = if matches!(name, "chelsea.png" | "rocket.jpg") {
            &[224, 160, 112, 96]
        } else {
            &[224, 160, 112]
        };
        for &size in sizes {
            let ours = resize_and_crop(&contract(size), &img);
            let stem = name.split('.').next().unwrap();
            let theirs = load_rgb(&golden(&format!("{stem}-{size}.png"))).unwrap();
            let d = max_diff(&ours, &theirs);
            assert!(
                d <= MAX_LEVELS,
                "{name} at {size}: max difference {d} levels"
            );
            worst = worst.max(d);
        }
    }
    eprintln!("largest difference from Pillow over 17 photo crops: {worst}/255");
}

/// Every resized size and crop offset torchvision takes, on sizes where `side - size` takes
/// each residue mod 4 (a floored offset is one pixel short at 3), in both orientations,
/// downscaled and upscaled, at five crop sizes.
#[test]
fn resize_sizes_and_crop_offsets_equal_torchvisions() {
    let golden: serde_json::Value =
        tl_core::io::read_json(&golden_dir().join("torchvision_plans.json")).unwrap();
    let cases = golden["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 90);
    let mut residues = std::collections::BTreeSet::new();
    for case in cases {
        let n = |k: &str| case[k].as_u64().unwrap() as u32;
        let resized = &case["resized"];
        let want = (
            resized[0].as_u64().unwrap() as u32,
            resized[1].as_u64().unwrap() as u32,
            n("left"),
            n("top"),
        );
        let (w, h, size) = (n("width"), n("height"), n("size"));
        assert_eq!(
            plan(&contract(size), w, h),
            want,
            "{w}x{h} at {size}: (resized width, height, left, top)"
        );
        residues.insert((want.0.max(want.1) - size) % 4);
    }
    assert_eq!(residues.len(), 4, "the goldens cover every residue mod 4");
}

/// The JPEG decoded by tl (the image crate) rather than Pillow, then resized and cropped:
/// torchvision's whole transform from the file, decoding included.
#[test]
fn the_jpeg_from_its_file_is_within_a_few_levels_of_torchvision() {
    let img = load_rgb(&photos().join("rocket.jpg")).unwrap();
    for size in [224, 160, 112, 96] {
        let ours = resize_and_crop(&contract(size), &img);
        let theirs = load_rgb(&golden(&format!("rocket-{size}.png"))).unwrap();
        let d = max_diff(&ours, &theirs);
        eprintln!("rocket.jpg at {size}, decoding included: max difference {d}/255");
        assert!(d <= JPEG_DECODE_LEVELS, "rocket.jpg at {size}: {d} levels");
    }
}

#[test]
fn tiny_grayscale_inputs_match_pillow() {
    for n in [8, 16, 28] {
        let tiny = load_rgb(&golden(&format!("tiny{n}.png"))).unwrap();
        assert_eq!((tiny.width(), tiny.height()), (n, n));
        let ours = resize_bilinear(&tiny, 224, 224);
        let theirs = load_rgb(&golden(&format!("tiny{n}-224.png"))).unwrap();
        let d = max_diff(&ours, &theirs);
        assert!(d <= MAX_LEVELS, "{n}x{n} -> 224: max difference {d} levels");
    }
}

/// The image crate's JPEG decoder and Pillow's (libjpeg-turbo) round the IDCT differently;
/// this bounds the difference on the one JPEG sample, measured at 2 levels.
const JPEG_DECODE_LEVELS: u8 = 3;

#[test]
fn jpeg_decoding_differs_from_pillow_by_at_most_a_few_levels() {
    let ours = load_rgb(&photos().join("rocket.jpg")).unwrap();
    let theirs = load_rgb(&golden("rocket-decoded.png")).unwrap();
    let d = max_diff(&ours, &theirs);
    eprintln!("rocket.jpg decoded: max difference from Pillow {d}/255");
    assert!(d <= JPEG_DECODE_LEVELS, "JPEG decode differs by {d} levels");
}
