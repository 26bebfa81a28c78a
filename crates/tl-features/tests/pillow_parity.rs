//! tl's resize against Pillow's own output (goldens made by `tests/reference/pillow_resize.py`,
//! Pillow 13.0.0) on 20 inputs: scikit-image's sample photos at 224, 160, 112 (and 96) px
//! and tiny grayscale inputs upscaled to 224.

use std::path::{Path, PathBuf};

use tl_core::ImageContract;
use tl_features::image::{Rgb8, load_rgb, resize_and_crop, resize_bilinear};

/// Largest allowed difference from Pillow, in 8-bit levels (the issue allows 1.5/255).
const MAX_LEVELS: u8 = 1;

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/golden/pillow")
        .join(name)
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
