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

/// Per-output taps of one axis: for output `i`, `len[i]` input samples from `start[i]`,
/// weighted by `k[i * stride..][..len[i]]` (22-bit fixed point, as Pillow quantises them).
struct Taps {
    start: Vec<usize>,
    len: Vec<usize>,
    k: Vec<i32>,
    stride: usize,
}

impl Taps {
    /// [`Taps::compute`], remembered per thread for the last few geometries (a dataset's
    /// images often share one size, and then every image reuses the same taps).
    fn new(in_size: u32, out_size: u32, from: u32, n: u32) -> std::rc::Rc<Self> {
        type Cache = Vec<((u32, u32, u32, u32), std::rc::Rc<Taps>)>;
        thread_local! {
            static CACHE: std::cell::RefCell<Cache> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let key = (in_size, out_size, from, n);
        CACHE.with_borrow_mut(|cache| {
            if let Some(pos) = cache.iter().position(|(k, _)| *k == key) {
                return cache[pos].1.clone();
            }
            let taps = std::rc::Rc::new(Self::compute(in_size, out_size, from, n));
            if cache.len() == 8 {
                cache.remove(0);
            }
            cache.push((key, taps.clone()));
            taps
        })
    }

    /// The taps of outputs `from..from + n` of a resize from `in_size` to `out_size`.
    fn compute(in_size: u32, out_size: u32, from: u32, n: u32) -> Self {
        let (bounds, weights) = coefficients(in_size, out_size);
        let range = from as usize..(from + n) as usize;
        let stride = weights[range.clone()]
            .iter()
            .map(Vec::len)
            .max()
            .unwrap_or(0);
        let mut k = vec![0; stride * n as usize];
        for (i, w) in weights[range.clone()].iter().enumerate() {
            k[i * stride..i * stride + w.len()].copy_from_slice(w);
        }
        Self {
            start: bounds[range.clone()].to_vec(),
            len: weights[range].iter().map(Vec::len).collect(),
            k,
            stride,
        }
    }

    fn weights(&self, i: usize) -> &[i32] {
        &self.k[i * self.stride..i * self.stride + self.len[i]]
    }
}

#[inline]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes like Pillow's `Image.resize((width, height), Image.BILINEAR)`.
pub fn resize_bilinear<const C: usize>(img: &Image8<C>, width: u32, height: u32) -> Image8<C> {
    resize_region(img, (width, height), (0, 0, width, height))
}

/// The `w × h` region at (`left`, `top`) of the image resized to `rw × rh` (Pillow's
/// bilinear), computed directly: the same bytes as resizing the whole image and cropping,
/// but only the input rows and output pixels the region needs are computed.
///
/// As in Pillow, the horizontal pass (rounded to 8 bits) comes first and an axis whose
/// size does not change is not resampled. Accumulators are 32-bit, as Pillow's are:
/// 255 × 2²² plus the rounding term stays below 2³¹.
pub fn resize_region<const C: usize>(
    img: &Image8<C>,
    (rw, rh): (u32, u32),
    (left, top, w, h): (u32, u32, u32, u32),
) -> Image8<C> {
    assert!(
        left + w <= rw && top + h <= rh,
        "region outside the resized image"
    );
    let iw = img.width as usize;
    let (w_, h_) = (w as usize, h as usize);
    let vertical = (rh != img.height).then(|| Taps::new(img.height, rh, top, h));
    // The input rows the vertical pass reads (or the cropped rows when there is none).
    let rows = match &vertical {
        Some(t) => {
            let first = t.start.first().copied().unwrap_or(0);
            let last = (0..h_)
                .map(|i| t.start[i] + t.len[i])
                .max()
                .unwrap_or(first);
            first..last
        }
        None => top as usize..(top + h) as usize,
    };
    let stride = w_ * C;
    let mut horizontal = vec![0u8; rows.len() * stride];
    if rw != img.width {
        let t = Taps::new(img.width, rw, left, w);
        for (y, out) in rows.clone().zip(horizontal.chunks_exact_mut(stride)) {
            let src = &img.data[y * iw * C..(y + 1) * iw * C];
            for (x, px) in out.chunks_exact_mut(C).enumerate() {
                let ks = t.weights(x);
                let mut acc = [1i32 << (PRECISION_BITS - 1); C];
                let taps = &src[t.start[x] * C..(t.start[x] + ks.len()) * C];
                for (p, &k) in taps.chunks_exact(C).zip(ks) {
                    for c in 0..C {
                        acc[c] += p[c] as i32 * k;
                    }
                }
                for c in 0..C {
                    px[c] = clip8(acc[c]);
                }
            }
        }
    } else {
        let from = left as usize * C;
        for (y, out) in rows.clone().zip(horizontal.chunks_exact_mut(stride)) {
            out.copy_from_slice(&img.data[y * iw * C + from..y * iw * C + from + stride]);
        }
    }
    let data = match vertical {
        None => horizontal,
        Some(t) => {
            let mut out = vec![0u8; h_ * stride];
            let mut acc = vec![0i32; stride];
            for (yy, row) in out.chunks_exact_mut(stride).enumerate() {
                acc.fill(1 << (PRECISION_BITS - 1));
                for (i, &k) in t.weights(yy).iter().enumerate() {
                    let y = t.start[yy] + i - rows.start;
                    let src = &horizontal[y * stride..(y + 1) * stride];
                    for (a, &p) in acc.iter_mut().zip(src) {
                        *a += p as i32 * k;
                    }
                }
                for (o, &a) in row.iter_mut().zip(&acc) {
                    *o = clip8(a);
                }
            }
            out
        }
    };
    debug_assert_eq!(data.len(), h_ * stride);
    Image8 {
        width: w,
        height: h,
        data,
    }
}

/// The resized size and crop box `(resize_w, resize_h, left, top)` a contract gives an image.
///
/// torchvision's `Resize(floor(size / crop_fraction))` then `CenterCrop(size)`, the
/// evaluation transform of the MobileNetV2 weights and of timm: the shorter side becomes
/// `floor(size / crop_fraction)`, the longer side `floor(long * that / short)` (truncated,
/// as `int()` truncates), and the crop starts at [`centre_offset`]`(side - size)`.
pub fn plan(contract: &ImageContract, width: u32, height: u32) -> (u32, u32, u32, u32) {
    let size = contract.size;
    // The epsilon keeps an exact quotient such as 224 / 0.875 = 256 from flooring to 255.
    let target = |f: f32| ((size as f64 / f as f64) + 1e-9).floor() as u64;
    match contract.resize {
        ResizePolicy::Stretch => (size, size, 0, 0),
        ResizePolicy::StretchCenterCrop { crop_fraction } => {
            let r = target(crop_fraction).max(size as u64) as u32;
            (r, r, centre_offset(r - size), centre_offset(r - size))
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
            (rw, rh, centre_offset(rw - size), centre_offset(rh - size))
        }
    }
}

/// Where a centred crop starts when the image is `excess` pixels longer than the crop:
/// `round(excess / 2)` with Python's `round`, half to even, as torchvision's `CenterCrop`
/// computes it. It differs from `floor(excess / 2)` exactly when `excess ≡ 3 (mod 4)`
/// (159 → 80, not 79).
pub fn centre_offset(excess: u32) -> u32 {
    let half = excess / 2;
    if excess % 2 == 1 && half % 2 == 1 {
        half + 1
    } else {
        half
    }
}

/// Resizes and crops an image as the contract says (before normalisation).
pub fn resize_and_crop<const C: usize>(contract: &ImageContract, img: &Image8<C>) -> Image8<C> {
    let (w, h, left, top) = plan(contract, img.width, img.height);
    resize_region(img, (w, h), (left, top, contract.size, contract.size))
}

/// A decoded image. Grayscale stays one channel, so it is resized once and replicated
/// only when laid out: the same values as resizing its RGB conversion, a third of the work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    Gray(Gray8),
    Rgb(Rgb8),
}

impl Decoded {
    /// The RGB image (grayscale replicated).
    pub fn into_rgb(self) -> Rgb8 {
        match self {
            Decoded::Rgb(img) => img,
            Decoded::Gray(g) => Rgb8 {
                width: g.width,
                height: g.height,
                data: g.data.iter().flat_map(|&v| [v, v, v]).collect(),
            },
        }
    }
}

/// Decodes an image file, keeping grayscale as one channel (alpha dropped, as Pillow's
/// `convert("RGB")` drops it).
pub fn load(path: &Path) -> Result<Decoded> {
    let img = decode(path)?;
    if img.color().has_color() {
        let img = img.into_rgb8();
        let (w, h) = img.dimensions();
        Rgb8::new(w, h, img.into_raw()).map(Decoded::Rgb)
    } else {
        let img = img.into_luma8();
        let (w, h) = img.dimensions();
        Gray8::new(w, h, img.into_raw()).map(Decoded::Gray)
    }
}

/// The batch shape of `n` images under a contract: [N, C, H, W] or [N, H, W, C].
pub fn batch_shape(contract: &ImageContract, n: usize) -> (usize, usize, usize, usize) {
    let s = contract.size as usize;
    let c = contract.colour.channels();
    match contract.layout {
        Layout::Nchw => (n, c, s, s),
        Layout::Nhwc => (n, s, s, c),
    }
}

/// Resizes, crops and normalises one decoded image into `out` ([C, H, W] or [H, W, C]).
pub fn preprocess_into(contract: &ImageContract, img: &Decoded, out: ArrayViewMut3<'_, f32>) {
    match img {
        Decoded::Gray(g) => lay_out(contract, &resize_and_crop(contract, g), out),
        Decoded::Rgb(c) => lay_out(contract, &resize_and_crop(contract, c), out),
    }
}

/// Writes one resized and cropped image into `out`, normalised through a per-channel
/// table of `(v - mean) / std` (the same f32 arithmetic, once per byte value).
fn lay_out<const C: usize>(
    contract: &ImageContract,
    img: &Image8<C>,
    mut out: ArrayViewMut3<'_, f32>,
) {
    let s = contract.size as usize;
    assert_eq!(
        (img.width as usize, img.height as usize),
        (s, s),
        "image not resized to the contract's size"
    );
    let channels = contract.colour.channels();
    let tables: Vec<[f32; 256]> = (0..channels)
        .map(|c| std::array::from_fn(|v| (v as f32 - contract.mean[c]) / contract.std[c]))
        .collect();
    let byte = |p: &[u8], c: usize| -> u8 {
        if C == 1 {
            // Gray replicated: R = G = B, and its luma is itself (the weights sum to 2¹⁶).
            return p[0];
        }
        match contract.colour {
            ColourOrder::Rgb => p[c],
            ColourOrder::Bgr => p[2 - c],
            // ITU-R 601-2 luma, as Pillow's convert("L") computes it.
            ColourOrder::Gray => {
                ((p[0] as u32 * 19595 + p[1] as u32 * 38470 + p[2] as u32 * 7471 + 0x8000) >> 16)
                    as u8
            }
        }
    };
    let fill = |dst: &mut [f32]| {
        let pixels = img.data.chunks_exact(C);
        match contract.layout {
            Layout::Nchw => {
                for c in 0..channels {
                    let (done, rest) = dst.split_at_mut(c * s * s);
                    let plane = &mut rest[..s * s];
                    // A gray image under equal constants: the same plane again.
                    if C == 1 && c > 0 && tables[c] == tables[c - 1] {
                        plane.copy_from_slice(&done[(c - 1) * s * s..]);
                        continue;
                    }
                    let table = &tables[c];
                    for (d, p) in plane.iter_mut().zip(pixels.clone()) {
                        *d = table[byte(p, c) as usize];
                    }
                }
            }
            Layout::Nhwc => {
                for (d, p) in dst.chunks_exact_mut(channels).zip(pixels) {
                    for (c, v) in d.iter_mut().enumerate() {
                        *v = tables[c][byte(p, c) as usize];
                    }
                }
            }
        }
    };
    match out.as_slice_mut() {
        Some(dst) => fill(dst),
        None => {
            let mut dst = vec![0f32; s * s * channels];
            fill(&mut dst);
            let shape = out.raw_dim();
            out.assign(&ndarray::ArrayView3::from_shape(shape, &dst).expect("same size"));
        }
    }
}

/// Decodes, resizes, crops and normalises image files into one batch, in parallel.
/// The first file that fails stops the batch with an error naming it.
pub fn preprocess_files(
    contract: &ImageContract,
    paths: &[impl AsRef<Path> + Sync],
) -> Result<Array4<f32>> {
    preprocess_batch(contract, paths, |p| load(p.as_ref()))
}

/// Decodes each item with `decode`, then resizes, crops and normalises it into one batch,
/// in parallel; the first item that fails to decode stops the batch with its error.
pub fn preprocess_batch<T: Sync>(
    contract: &ImageContract,
    items: &[T],
    decode: impl Fn(&T) -> Result<Decoded> + Sync,
) -> Result<Array4<f32>> {
    let mut out = Array4::<f32>::zeros(batch_shape(contract, items.len()));
    out.axis_iter_mut(Axis(0))
        .into_par_iter()
        .zip(items.par_iter())
        .map(|(view, item)| decode(item).map(|img| preprocess_into(contract, &img, view)))
        .collect::<Result<Vec<()>>>()?;
    Ok(out)
}

/// Lays out already resized and cropped images as a normalised batch.
pub fn batch(contract: &ImageContract, images: &[Rgb8]) -> Array4<f32> {
    let mut out = Array4::<f32>::zeros(batch_shape(contract, images.len()));
    out.axis_iter_mut(Axis(0))
        .into_par_iter()
        .zip(images.par_iter())
        .for_each(|(view, img)| lay_out(contract, img, view));
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

    /// The plain two-pass resize of the whole image (every output pixel, 64-bit sums, no
    /// taps cache), as this module computed it before regions: the reference for regions.
    fn full_resize<const C: usize>(img: &Image8<C>, width: u32, height: u32) -> Image8<C> {
        let pass = |src: &[u8], n_in: usize, n_out: u32, lines: usize, step: usize| {
            // Resamples `lines` lines of `n_in` samples (each `step` bytes apart).
            let (bounds, weights) = coefficients(n_in as u32, n_out);
            let mut out = vec![0u8; lines * n_out as usize * step];
            for line in 0..lines {
                for (o, (start, ks)) in bounds.iter().zip(&weights).enumerate() {
                    for c in 0..step {
                        let mut acc: i64 = 1 << (PRECISION_BITS - 1);
                        for (i, &k) in ks.iter().enumerate() {
                            acc += src[(line * n_in + start + i) * step + c] as i64 * k as i64;
                        }
                        out[(line * n_out as usize + o) * step + c] =
                            (acc >> PRECISION_BITS).clamp(0, 255) as u8;
                    }
                }
            }
            out
        };
        let (w, h) = (img.width as usize, img.height as usize);
        let mut data = img.data.clone();
        let mut cw = w;
        if width != img.width {
            data = pass(&data, w, width, h, C);
            cw = width as usize;
        }
        if height != img.height {
            // Columns as lines: transpose, resample, transpose back.
            let mut t = vec![0u8; data.len()];
            for y in 0..h {
                for x in 0..cw {
                    for c in 0..C {
                        t[(x * h + y) * C + c] = data[(y * cw + x) * C + c];
                    }
                }
            }
            let r = pass(&t, h, height, cw, C);
            data = vec![0u8; r.len()];
            for x in 0..cw {
                for y in 0..height as usize {
                    for c in 0..C {
                        data[(y * cw + x) * C + c] = r[(x * height as usize + y) * C + c];
                    }
                }
            }
        }
        Image8::new(width, height, data).unwrap()
    }

    fn noise<const C: usize>(w: u32, h: u32, seed: u32) -> Image8<C> {
        let n = (w * h) as usize * C;
        let data = (0..n)
            .map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 13) as u8)
            .collect();
        Image8::new(w, h, data).unwrap()
    }

    #[test]
    fn regions_are_the_crops_of_the_whole_resize_bit_for_bit() {
        // Up, down, identity on either axis, odd sizes, 1 and 3 channels.
        for (iw, ih, rw, rh) in [
            (28, 28, 256, 256),
            (451, 300, 384, 256),
            (300, 451, 128, 192),
            (37, 19, 37, 50),
            (64, 48, 20, 48),
            (5, 3, 9, 7),
        ] {
            let rgb: Rgb8 = noise(iw, ih, iw * 7 + ih);
            let gray: Gray8 = noise(iw, ih, ih * 3 + 1);
            let (full_rgb, full_gray) = (full_resize(&rgb, rw, rh), full_resize(&gray, rw, rh));
            assert_eq!(
                resize_bilinear(&rgb, rw, rh),
                full_rgb,
                "{iw}x{ih} -> {rw}x{rh}"
            );
            assert_eq!(
                resize_bilinear(&gray, rw, rh),
                full_gray,
                "{iw}x{ih} -> {rw}x{rh}"
            );
            for (left, top, w, h) in [
                (0, 0, rw, rh),
                (rw / 4, rh / 3, rw / 2, rh / 2),
                (rw - 1, rh - 1, 1, 1),
            ] {
                assert_eq!(
                    resize_region(&rgb, (rw, rh), (left, top, w, h)),
                    full_rgb.crop(left, top, w, h),
                    "{iw}x{ih} -> {rw}x{rh}, region {left},{top} {w}x{h}"
                );
                assert_eq!(
                    resize_region(&gray, (rw, rh), (left, top, w, h)),
                    full_gray.crop(left, top, w, h)
                );
            }
        }
    }

    #[test]
    fn gray_images_preprocess_as_their_rgb_conversion() {
        let gray: Gray8 = noise(28, 28, 5);
        let rgb = Decoded::Gray(gray.clone()).into_rgb();
        let (g0, g1) = (gray.pixels()[0], gray.pixels()[1]);
        assert_eq!(rgb.pixels()[..6], [g0, g0, g0, g1, g1, g1]);
        for colour in [ColourOrder::Rgb, ColourOrder::Bgr, ColourOrder::Gray] {
            for layout in [Layout::Nchw, Layout::Nhwc] {
                for mean in [vec![127.0; 3], vec![123.675, 116.28, 103.53]] {
                    let c = ImageContract {
                        input: "x".into(),
                        layout,
                        size: 24,
                        dynamic_size: true,
                        resize: ResizePolicy::ShorterSideCenterCrop {
                            crop_fraction: 0.875,
                        },
                        colour,
                        mean: mean.clone(),
                        std: vec![58.4, 57.1, 57.4],
                    };
                    let mut a = Array4::<f32>::zeros(batch_shape(&c, 1));
                    let mut b = Array4::<f32>::zeros(batch_shape(&c, 1));
                    preprocess_into(
                        &c,
                        &Decoded::Gray(gray.clone()),
                        a.index_axis_mut(Axis(0), 0),
                    );
                    preprocess_into(&c, &Decoded::Rgb(rgb.clone()), b.index_axis_mut(Axis(0), 0));
                    assert_eq!(a, b, "{colour:?} {layout:?} {mean:?}");
                    // And both equal the batch of the resized RGB image.
                    assert_eq!(a, batch(&c, &[resize_and_crop(&c, &rgb)]));
                }
            }
        }
    }

    #[test]
    fn a_non_contiguous_destination_is_filled_too() {
        let c = ImageContract::rgb_center_crop("x", 8, [127.0; 3], [128.0; 3]);
        let img = Decoded::Rgb(noise(10, 12, 9));
        let mut want = Array4::<f32>::zeros(batch_shape(&c, 1));
        preprocess_into(&c, &img, want.index_axis_mut(Axis(0), 0));
        // [C, H, W] viewed through a transposed [W, H, C] array: not a contiguous slice.
        let mut t = ndarray::Array3::<f32>::zeros((8, 8, 3));
        let mut view = t.view_mut().reversed_axes();
        assert!(view.as_slice_mut().is_none());
        preprocess_into(&c, &img, view.view_mut());
        assert_eq!(view, want.index_axis(Axis(0), 0));
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
    fn grayscale_files_decode_to_one_channel_and_colour_files_to_three() {
        let dir = tempfile::tempdir().unwrap();
        let gray = dir.path().join("gray.png");
        let luma = ::image::GrayImage::from_fn(5, 4, |x, y| ::image::Luma([(x * 40 + y) as u8]));
        luma.save(&gray).unwrap();
        let Decoded::Gray(g) = load(&gray).unwrap() else {
            panic!("a grayscale PNG decoded to colour")
        };
        assert_eq!(g.pixels(), luma.as_raw().as_slice());
        assert_eq!(Decoded::Gray(g).into_rgb(), load_rgb(&gray).unwrap());
        let colour = dir.path().join("colour.png");
        ::image::RgbImage::from_pixel(3, 2, ::image::Rgb([1, 2, 3]))
            .save(&colour)
            .unwrap();
        assert_eq!(
            load(&colour).unwrap(),
            Decoded::Rgb(load_rgb(&colour).unwrap())
        );
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
