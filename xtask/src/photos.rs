//! `cargo xtask make-photos`: a folder of JPEGs made from the registry's sample photos
//! (random crops, sizes and JPEG qualities, seeded), for the extraction benchmark.
//!
//! One sub-folder per source photo, so the folder is also a labelled image dataset.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use image::{ImageEncoder, codecs::jpeg::JpegEncoder, imageops::FilterType};
use rand::Rng;

/// What `make-photos` writes.
#[derive(Debug, Clone)]
pub struct PhotoSpec {
    pub count: usize,
    pub seed: u64,
    /// Range of the longer side of each JPEG, in pixels.
    pub long_side: (u32, u32),
}

impl Default for PhotoSpec {
    fn default() -> Self {
        Self {
            count: 1000,
            seed: 0,
            long_side: (160, 800),
        }
    }
}

/// The folder `spec` is written to by default (under `target/`, rebuilt when missing).
pub fn default_dir(spec: &PhotoSpec) -> PathBuf {
    PathBuf::from(format!(
        "target/bench-photos-{}-seed{}",
        spec.count, spec.seed
    ))
}

/// Writes `spec.count` JPEGs under `out` (replacing it atomically: a temporary folder is
/// renamed into place once complete). Returns the number of bytes written.
pub fn make(sources: &Path, out: &Path, spec: &PhotoSpec) -> Result<u64> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(sources)
        .with_context(|| format!("reading {}", sources.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("png" | "jpg" | "jpeg")
            )
        })
        .collect();
    names.sort();
    if names.is_empty() {
        bail!("no photos in {}", sources.display());
    }
    let photos = names
        .iter()
        .map(|p| {
            image::open(p)
                .map(|i| i.to_rgb8())
                .with_context(|| format!("decoding {}", p.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    let tmp = out.with_extension("partial");
    let _ = std::fs::remove_dir_all(&tmp);
    let mut rng = tl_core::rng::seeded_rng(spec.seed, "make-photos");
    let mut bytes = 0u64;
    for i in 0..spec.count {
        let k = i % photos.len();
        let src = &photos[k];
        let stem = names[k]
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("photo");
        let (w, h) = src.dimensions();
        let cw = rng.random_range(w * 2 / 5..=w);
        let ch = rng.random_range(h * 2 / 5..=h);
        let x = rng.random_range(0..=w - cw);
        let y = rng.random_range(0..=h - ch);
        let long = rng.random_range(spec.long_side.0..=spec.long_side.1);
        let (ow, oh) = if cw >= ch {
            (long, (long as u64 * ch as u64 / cw as u64).max(1) as u32)
        } else {
            ((long as u64 * cw as u64 / ch as u64).max(1) as u32, long)
        };
        let quality = rng.random_range(75..=95u8);
        let crop = image::imageops::crop_imm(src, x, y, cw, ch).to_image();
        let img = image::imageops::resize(&crop, ow, oh, FilterType::Triangle);
        let mut buf = Vec::new();
        JpegEncoder::new_with_quality(&mut buf, quality).write_image(
            img.as_raw(),
            ow,
            oh,
            image::ExtendedColorType::Rgb8,
        )?;
        let dir = tmp.join(stem);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("{stem}-{i:05}.jpg")), &buf)?;
        bytes += buf.len() as u64;
    }
    let _ = std::fs::remove_dir_all(out);
    std::fs::rename(&tmp, out)
        .with_context(|| format!("moving {} to {}", tmp.display(), out.display()))?;
    Ok(bytes)
}

/// `cargo xtask make-photos [--out DIR] [--count N] [--seed S]`.
pub fn run(args: &[String]) -> Result<()> {
    let mut spec = PhotoSpec::default();
    let mut out = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match a.as_str() {
            "--out" => out = Some(PathBuf::from(value("--out")?)),
            "--count" => spec.count = value("--count")?.parse().context("--count")?,
            "--seed" => spec.seed = value("--seed")?.parse().context("--seed")?,
            other => {
                bail!("unknown argument `{other}` (make-photos [--out DIR] [--count N] [--seed S])")
            }
        }
    }
    let out = out.unwrap_or_else(|| default_dir(&spec));
    crate::fetch_models(&["sample-photos".into(), "--quiet".into()])?;
    let sources = tl_core::home::tl_home()?.join("assets/sample-photos");
    let bytes = make(&sources, &out, &spec)?;
    eprintln!(
        "make-photos: {} JPEGs ({:.1} MB) in {}",
        spec.count,
        bytes as f64 / 1e6,
        out.display()
    );
    Ok(())
}
