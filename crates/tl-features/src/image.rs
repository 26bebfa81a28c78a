//! Image decoding and preprocessing, matching Pillow where it matters.
//!
//! The resize reproduces Pillow's `Image.resize(..., BILINEAR)` (its `ImagingResample`):
//! a triangle filter whose support widens with the downscale factor (antialiasing),
//! coefficients normalised and quantised to 22-bit fixed point, a horizontal pass
//! rounded to 8 bits, then a vertical pass. The test in `tests/pillow_parity.rs`
//! compares against golden outputs of Pillow itself.

use std::path::Path;

use ndarray::{Array4, ArrayViewMut3, Axis};
use rayon::prelude::*;
use tl_core::{ImageContract, Layout, ResizePolicy, contract::ColourOrder};

use crate::{Error, Result};

/// An 8-bit image with `C` interleaved channels (3: RGB, 1: gray).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image8<const C: usize> {
    width: u32,
    height: u32,
    data: Vec<u8>,
}

/// 8-bit RGB.
pub type Rgb8 = Image8<3>;
/// 8-bit grayscale.
pub type Gray8 = Image8<1>;

impl<const C: usize> Image8<C> {
    /// Wraps interleaved pixel bytes, checking their length.
    pub fn new(width: u32, height: u32, data: Vec<u8>) -> Result<Self> {
        if data.len() != width as usize * height as usize * C {
            return Err(Error::BadBuffer {
                len: data.len(),
                width,
                height,
                channels: C,
            });
        }
        Ok(Self {
            width,
            height,
            data,
        })
    }
    pub fn width(&self) -> u32 {
        self.width
    }
    pub fn height(&self) -> u32 {
        self.height
    }
    /// Interleaved pixel bytes, row by row.
    pub fn pixels(&self) -> &[u8] {
        &self.data
    }

    /// The `w × h` region at (`left`, `top`); the caller keeps it inside the image.
    pub fn crop(&self, left: u32, top: u32, w: u32, h: u32) -> Self {
        assert!(
            left + w <= self.width && top + h <= self.height,
            "crop outside the image"
        );
        let mut data = Vec::with_capacity(w as usize * h as usize * C);
        for y in top..top + h {
            let start = (y as usize * self.width as usize + left as usize) * C;
            data.extend_from_slice(&self.data[start..start + w as usize * C]);
        }
        Self {
            width: w,
            height: h,
            data,
        }
    }
}

/// Decodes an image file to RGB (grayscale is replicated, alpha dropped as Pillow's `convert("RGB")` does).
pub fn load_rgb(path: &Path) -> Result<Rgb8> {
    let img = decode(path)?.into_rgb8();
    let (w, h) = img.dimensions();
    Rgb8::new(w, h, img.into_raw())
}

/// Decodes an image file to 8-bit grayscale.
pub fn load_gray(path: &Path) -> Result<Gray8> {
    let img = decode(path)?.into_luma8();
    let (w, h) = img.dimensions();
    Gray8::new(w, h, img.into_raw())
}

fn decode(path: &Path) -> Result<::image::DynamicImage> {
    let fail = |reason: String| Error::Decode {
        path: path.to_path_buf(),
        reason,
    };
    let reader = ::image::ImageReader::open(path)
        .map_err(|e| fail(e.to_string()))?
        .with_guessed_format()
        .map_err(|e| fail(e.to_string()))?;
    if reader.format().is_none() {
        return Err(fail(
            "not an image format tl can read (PNG, JPEG, GIF, BMP, TIFF, WebP)".into(),
        ));
    }
    reader.decode().map_err(|e| fail(e.to_string()))
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Pillow's `precompute_coeffs` for the bilinear filter, followed by its 8-bit
/// fixed-point normalisation: per output pixel, the first input index and the weights.
fn coefficients(in_size: u32, out_size: u32) -> (Vec<usize>, Vec<Vec<i32>>) {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 1.0 * filterscale;
    let ss = 1.0 / filterscale;
    let mut bounds = Vec::with_capacity(out_size as usize);
    let mut weights = Vec::with_capacity(out_size as usize);
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        // C casts truncate toward zero; the value is clamped at 0 right after.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let mut k: Vec<f64> = (xmin..xmax)
            .map(|x| {
                let t = ((x as f64 - center + 0.5) * ss).abs();
                if t < 1.0 { 1.0 - t } else { 0.0 }
            })
            .collect();
        let ww: f64 = k.iter().sum();
        if ww != 0.0 {
            k.iter_mut().for_each(|v| *v /= ww);
        }
        let fixed = k
            .iter()
            .map(|&v| {
                let scaled = v * (1u32 << PRECISION_BITS) as f64;
                (if v < 0.0 { scaled - 0.5 } else { scaled + 0.5 }) as i32
            })
            .collect();
        bounds.push(xmin);
        weights.push(fixed);
    }
    (bounds, weights)
}

#[inline]
fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes like Pillow's `Image.resize((width, height), Image.BILINEAR)`.
pub fn resize_bilinear<const C: usize>(img: &Image8<C>, width: u32, height: u32) -> Image8<C> {
    let mut cur = img.clone();
    if width != cur.width {
        let (bounds, weights) = coefficients(cur.width, width);
        let mut out = vec![0u8; width as usize * cur.height as usize * C];
        out.par_chunks_mut(width as usize * C)
            .enumerate()
            .for_each(|(y, row)| {
                let src = &cur.data[y * cur.width as usize * C..(y + 1) * cur.width as usize * C];
                for (xx, (start, ks)) in bounds.iter().zip(&weights).enumerate() {
                    for c in 0..C {
                        let mut acc: i64 = 1 << (PRECISION_BITS - 1);
                        for (i, &k) in ks.iter().enumerate() {
                            acc += src[(start + i) * C + c] as i64 * k as i64;
                        }
                        row[xx * C + c] = clip8(acc);
                    }
                }
            });
        cur = Image8 {
            width,
            height: cur.height,
            data: out,
        };
    }
    if height != cur.height {
        let (bounds, weights) = coefficients(cur.height, height);
        let stride = cur.width as usize * C;
        let mut out = vec![0u8; stride * height as usize];
        out.par_chunks_mut(stride)
            .enumerate()
            .for_each(|(yy, row)| {
                let (start, ks) = (bounds[yy], &weights[yy]);
                for (x, px) in row.iter_mut().enumerate() {
                    let mut acc: i64 = 1 << (PRECISION_BITS - 1);
                    for (i, &k) in ks.iter().enumerate() {
                        acc += cur.data[(start + i) * stride + x] as i64 * k as i64;
                    }
                    *px = clip8(acc);
                }
            });
        cur = Image8 {
            width: cur.width,
            height,
            data: out,
        };
    }
    cur
}

/// The resized size and crop box `(resize_w, resize_h, left, top)` a contract gives an image.
///
/// Integer arithmetic throughout, as torchvision's `Resize`/`CenterCrop` and timm do it:
/// the shorter side becomes `floor(size / crop_fraction)`, the longer side
/// `floor(long * that / short)`, and the crop starts at `floor((side - size) / 2)`.
pub fn plan(contract: &ImageContract, width: u32, height: u32) -> (u32, u32, u32, u32) {
    let size = contract.size;
    // The epsilon keeps an exact quotient such as 224 / 0.875 = 256 from flooring to 255.
    let target = |f: f32| ((size as f64 / f as f64) + 1e-9).floor() as u64;
    match contract.resize {
        ResizePolicy::Stretch => (size, size, 0, 0),
        ResizePolicy::StretchCenterCrop { crop_fraction } => {
            let r = target(crop_fraction).max(size as u64) as u32;
            (r, r, (r - size) / 2, (r - size) / 2)
        }
        ResizePolicy::ShorterSideCenterCrop { crop_fraction } => {
            let t = target(crop_fraction);
            let (w, h) = (width.max(1) as u64, height.max(1) as u64);
            let (rw, rh) = if w <= h {
                (t, h * t / w)
            } else {
                (w * t / h, t)
            };
            let (rw, rh) = (rw.max(size as u64) as u32, rh.max(size as u64) as u32);
            (rw, rh, (rw - size) / 2, (rh - size) / 2)
        }
    }
}

/// Resizes and crops an RGB image as the contract says (before normalisation).
pub fn resize_and_crop(contract: &ImageContract, img: &Rgb8) -> Rgb8 {
    let (w, h, left, top) = plan(contract, img.width, img.height);
    let resized = resize_bilinear(img, w, h);
    if left == 0 && top == 0 && w == contract.size && h == contract.size {
        resized
    } else {
        resized.crop(left, top, contract.size, contract.size)
    }
}

/// Writes one preprocessed image into `out`, shaped [C, H, W] or [H, W, C] by the layout.
fn normalise_into(contract: &ImageContract, img: &Rgb8, mut out: ArrayViewMut3<'_, f32>) {
    let s = contract.size as usize;
    let channels = contract.colour.channels();
    for y in 0..s {
        for x in 0..s {
            let p = &img.data[(y * s + x) * 3..(y * s + x) * 3 + 3];
            for c in 0..channels {
                let v = match contract.colour {
                    ColourOrder::Rgb => p[c] as f32,
                    ColourOrder::Bgr => p[2 - c] as f32,
                    // ITU-R 601-2 luma, as Pillow's convert("L") computes it.
                    ColourOrder::Gray => {
                        ((p[0] as u32 * 19595 + p[1] as u32 * 38470 + p[2] as u32 * 7471 + 0x8000)
                            >> 16) as f32
                    }
                };
                let v = (v - contract.mean[c]) / contract.std[c];
                match contract.layout {
                    Layout::Nchw => out[[c, y, x]] = v,
                    Layout::Nhwc => out[[y, x, c]] = v,
                }
            }
        }
    }
}

/// Decodes, resizes, crops and normalises image files into one batch, in parallel.
/// The first file that fails stops the batch with an error naming it.
pub fn preprocess_files(
    contract: &ImageContract,
    paths: &[impl AsRef<Path> + Sync],
) -> Result<Array4<f32>> {
    let images: Vec<Rgb8> = paths
        .par_iter()
        .map(|p| load_rgb(p.as_ref()).map(|img| resize_and_crop(contract, &img)))
        .collect::<Result<_>>()?;
    Ok(batch(contract, &images))
}

/// Lays out already resized and cropped images as a normalised batch.
pub fn batch(contract: &ImageContract, images: &[Rgb8]) -> Array4<f32> {
    let s = contract.size as usize;
    let c = contract.colour.channels();
    let shape = match contract.layout {
        Layout::Nchw => (images.len(), c, s, s),
        Layout::Nhwc => (images.len(), s, s, c),
    };
    let mut out = Array4::<f32>::zeros(shape);
    out.axis_iter_mut(Axis(0))
        .into_par_iter()
        .zip(images.par_iter())
        .for_each(|(view, img)| normalise_into(contract, img, view));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A naive float implementation of the same filter, as an independent reference.
    fn naive_resize_1d(src: &[f64], out: usize) -> Vec<f64> {
        let n = src.len();
        let scale = n as f64 / out as f64;
        let fs = scale.max(1.0);
        (0..out)
            .map(|i| {
                let center = (i as f64 + 0.5) * scale;
                let (mut acc, mut wsum) = (0.0, 0.0);
                for (j, &v) in src.iter().enumerate() {
                    let w = (1.0 - ((j as f64 + 0.5 - center) / fs).abs()).max(0.0);
                    acc += w * v;
                    wsum += w;
                }
                acc / wsum
            })
            .collect()
    }

    #[test]
    fn fixed_point_resize_matches_naive_float_within_one_level() {
        let w = 37u32;
        let row: Vec<u8> = (0..w).map(|i| ((i * 97 + 13) % 256) as u8).collect();
        let img = Gray8::new(w, 1, row.clone()).unwrap();
        for out in [5u32, 11, 37, 64, 150] {
            let got = resize_bilinear(&img, out, 1);
            let want = naive_resize_1d(
                &row.iter().map(|&v| v as f64).collect::<Vec<_>>(),
                out as usize,
            );
            for (g, w_) in got.pixels().iter().zip(&want) {
                assert!((*g as f64 - w_).abs() <= 1.0, "out={out}: {g} vs {w_}");
            }
        }
    }

    #[test]
    fn constant_images_stay_constant_and_weights_sum_to_one() {
        for (i, o) in [(8u32, 224u32), (640, 256), (451, 300), (3, 2)] {
            let (_, ws) = coefficients(i, o);
            for k in ws {
                let sum: i64 = k.iter().map(|&v| v as i64).sum();
                assert!(
                    (sum - (1 << PRECISION_BITS)).abs() <= k.len() as i64,
                    "{i}->{o}: {sum}"
                );
            }
        }
        let img = Rgb8::new(8, 8, vec![77; 8 * 8 * 3]).unwrap();
        assert!(
            resize_bilinear(&img, 224, 224)
                .pixels()
                .iter()
                .all(|&p| p == 77)
        );
    }

    #[test]
    fn plan_keeps_aspect_and_centres_the_crop() {
        let c = ImageContract {
            input: "x".into(),
            layout: Layout::Nchw,
            size: 224,
            dynamic_size: true,
            resize: ResizePolicy::ShorterSideCenterCrop {
                crop_fraction: 0.875,
            },
            colour: ColourOrder::Rgb,
            mean: vec![0.0; 3],
            std: vec![1.0; 3],
        };
        // scikit-image's chelsea is 451×300.
        assert_eq!(plan(&c, 451, 300), (384, 256, 80, 16));
        // 600×400 at 160 px: shorter side floor(182.86) = 182, longer floor(600·182/400) = 273.
        let c160 = c.with_size(160).unwrap();
        assert_eq!(plan(&c160, 600, 400), (273, 182, 56, 11));
        assert_eq!(plan(&c, 8, 8), (256, 256, 16, 16));
        let img = Rgb8::new(451, 300, vec![0; 451 * 300 * 3]).unwrap();
        let b = batch(&c, &[resize_and_crop(&c, &img)]);
        assert_eq!(b.shape(), &[1, 3, 224, 224]);
    }

    #[test]
    fn bgr_and_nhwc_layout() {
        let c = ImageContract {
            input: "x".into(),
            layout: Layout::Nhwc,
            size: 1,
            dynamic_size: false,
            resize: ResizePolicy::Stretch,
            colour: ColourOrder::Bgr,
            mean: vec![1.0, 2.0, 3.0],
            std: vec![1.0, 2.0, 4.0],
        };
        let img = Rgb8::new(1, 1, vec![10, 20, 30]).unwrap();
        let b = batch(&c, &[img]);
        assert_eq!(b.shape(), &[1, 1, 1, 3]);
        // B=30, G=20, R=10 after the swap.
        assert_eq!(b.iter().copied().collect::<Vec<_>>(), vec![29.0, 9.0, 1.75]);
    }

    #[test]
    fn undecodable_files_name_the_file() {
        let dir = std::env::temp_dir().join(format!("tl-features-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("broken.png");
        std::fs::write(&bad, b"\x89PNG\r\n\x1a\n truncated").unwrap();
        let err = load_rgb(&bad).unwrap_err().to_string();
        assert!(err.contains("broken.png"), "{err}");
        let txt = dir.join("notes.txt");
        std::fs::write(&txt, b"hello").unwrap();
        let err = load_rgb(&txt).unwrap_err().to_string();
        assert!(err.contains("notes.txt"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
