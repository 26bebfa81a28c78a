//! Image augmentation on the fly, on normalised `[N, C, H, W]` model inputs: random
//! resized crop, horizontal flip and small rotations, as one affine warp per image with
//! bilinear sampling (edge values repeated outside the image).
//!
//! Draws come from the stream `augment/<epoch>/<batch>` of the run seed, so a batch is
//! augmented the same way in a resumed run as in an uninterrupted one.

use ndarray::{Array4, ArrayView3, ArrayViewMut3, Axis, Ix4};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tl_nn::Tensor;

use crate::{Error, Result};

/// What augmentation does; the default does nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Augment {
    /// Random resized crop: the crop keeps a fraction of the area drawn from
    /// `[crop_scale, 1]` (1: no crop), with aspect ratio in [3/4, 4/3], resized back.
    pub crop_scale: f32,
    /// Flip left-right with probability ½ (not for digits or text in images).
    pub flip: bool,
    /// Rotate by an angle drawn from `[-rotate, rotate]` degrees.
    pub rotate: f32,
}

impl Default for Augment {
    fn default() -> Self {
        Self {
            crop_scale: 1.0,
            flip: false,
            rotate: 0.0,
        }
    }
}

/// One image's inverse map: output pixel `(x, y)` samples the input at
/// `(a·x + b·y + c, d·x + e·y + f)`.
#[derive(Debug, Clone, Copy)]
struct Affine([f32; 6]);

impl Augment {
    /// Whether it changes anything.
    pub fn is_active(&self) -> bool {
        self.crop_scale < 1.0 || self.flip || self.rotate > 0.0
    }

    pub fn check(&self) -> Result<()> {
        if !(self.crop_scale > 0.0 && self.crop_scale <= 1.0) {
            return Err(Error::setting(
                "augment crop scale",
                format!("{} is not in (0, 1]", self.crop_scale),
            ));
        }
        if !(self.rotate.is_finite() && (0.0..=180.0).contains(&self.rotate)) {
            return Err(Error::setting(
                "augment rotation",
                format!("{}° is not in [0, 180]", self.rotate),
            ));
        }
        Ok(())
    }

    fn draw(&self, h: usize, w: usize, rng: &mut ChaCha8Rng) -> Affine {
        let (hf, wf) = (h as f32, w as f32);
        // Crop box (in input pixels) by area fraction and log-uniform aspect ratio.
        let (mut cw, mut ch, mut cx, mut cy) = (wf, hf, wf / 2.0, hf / 2.0);
        if self.crop_scale < 1.0 {
            let area = rng.random_range(self.crop_scale..=1.0) * hf * wf;
            let ratio = rng.random_range((0.75f32).ln()..=(4.0f32 / 3.0).ln()).exp();
            cw = (area * ratio).sqrt().min(wf);
            ch = (area / ratio).sqrt().min(hf);
            cx = rng.random_range(cw / 2.0..=wf - cw / 2.0);
            cy = rng.random_range(ch / 2.0..=hf - ch / 2.0);
        }
        let flip = self.flip && rng.random_bool(0.5);
        let angle = if self.rotate > 0.0 {
            rng.random_range(-self.rotate..=self.rotate).to_radians()
        } else {
            0.0
        };
        // Output centre-relative coordinates → scaled to the crop, flipped, rotated,
        // moved to the crop's centre.
        let (sx, sy) = (cw / wf * if flip { -1.0 } else { 1.0 }, ch / hf);
        let (cos, sin) = (angle.cos(), angle.sin());
        let (a, b, d, e) = (cos * sx, -sin * sy, sin * sx, cos * sy);
        // Pixel centres: u = x + 0.5 − w/2.
        let (ox, oy) = (0.5 - wf / 2.0, 0.5 - hf / 2.0);
        let c = a * ox + b * oy + cx - 0.5;
        let f = d * ox + e * oy + cy - 0.5;
        Affine([a, b, c, d, e, f])
    }

    /// Augments a batch `[N, C, H, W]`; draws from `rng`, one image after another.
    pub fn apply(&self, x: &Tensor, rng: &mut ChaCha8Rng) -> Result<Tensor> {
        let v = x.view().into_dimensionality::<Ix4>().map_err(|_| {
            Error::data(
                "augmentation",
                format!(
                    "needs [batch, channels, height, width] images, got {:?}",
                    x.shape()
                ),
            )
        })?;
        if !self.is_active() {
            return Ok(x.clone());
        }
        let (n, _, h, w) = v.dim();
        let maps: Vec<Affine> = (0..n).map(|_| self.draw(h, w, rng)).collect();
        let mut out = Array4::<f32>::zeros(v.raw_dim());
        out.axis_iter_mut(Axis(0))
            .into_par_iter()
            .zip(v.axis_iter(Axis(0)).into_par_iter())
            .zip(maps.par_iter())
            .for_each(|((o, i), m)| warp(i, o, m));
        Ok(out.into_dyn())
    }
}

/// Bilinear sampling of `src` through the inverse map `m`, edges repeated.
fn warp(src: ArrayView3<'_, f32>, mut dst: ArrayViewMut3<'_, f32>, m: &Affine) {
    let (c, h, w) = src.dim();
    let [a, b, cc, d, e, f] = m.0;
    for y in 0..h {
        for x in 0..w {
            let sx = (a * x as f32 + b * y as f32 + cc).clamp(0.0, (w - 1) as f32);
            let sy = (d * x as f32 + e * y as f32 + f).clamp(0.0, (h - 1) as f32);
            let (x0, y0) = (sx.floor() as usize, sy.floor() as usize);
            let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
            let (fx, fy) = (sx - x0 as f32, sy - y0 as f32);
            for ch in 0..c {
                let top = src[[ch, y0, x0]] * (1.0 - fx) + src[[ch, y0, x1]] * fx;
                let bottom = src[[ch, y1, x0]] * (1.0 - fx) + src[[ch, y1, x1]] * fx;
                dst[[ch, y, x]] = top * (1.0 - fy) + bottom * fy;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tl_core::rng::seeded_rng;

    fn image(n: usize) -> Tensor {
        Tensor::from_shape_fn(vec![n, 3, 6, 5], |i| {
            (i[0] * 100 + i[1] * 30 + i[2] * 5 + i[3]) as f32
        })
    }

    #[test]
    fn the_default_is_the_identity_and_an_identity_warp_is_exact() {
        let x = image(2);
        assert_eq!(
            Augment::default()
                .apply(&x, &mut seeded_rng(0, "a"))
                .unwrap(),
            x
        );
        let v = x.view().into_dimensionality::<Ix4>().unwrap();
        let mut out = Array4::<f32>::zeros(v.raw_dim());
        let id = Augment {
            crop_scale: 1.0,
            flip: false,
            rotate: 0.0,
        }
        .draw(6, 5, &mut seeded_rng(0, "a"));
        warp(
            v.index_axis(Axis(0), 1),
            out.index_axis_mut(Axis(0), 1),
            &id,
        );
        assert_eq!(out.index_axis(Axis(0), 1), v.index_axis(Axis(0), 1));
    }

    #[test]
    fn a_flip_mirrors_columns_for_about_half_the_images() {
        let x = image(16);
        let flip = Augment {
            flip: true,
            ..Augment::default()
        };
        let y = flip.apply(&x, &mut seeded_rng(1, "a")).unwrap();
        let mut flipped = 0;
        for n in 0..16 {
            let at = |t: &Tensor, c: usize, r: usize, col: usize| t[[n, c, r, col]];
            let mirrored = (0..3)
                .all(|c| (0..6).all(|r| (0..5).all(|k| at(&y, c, r, k) == at(&x, c, r, 4 - k))));
            let same =
                (0..3).all(|c| (0..6).all(|r| (0..5).all(|k| at(&y, c, r, k) == at(&x, c, r, k))));
            assert!(
                mirrored || same,
                "image {n} is neither itself nor its mirror"
            );
            flipped += usize::from(mirrored);
        }
        assert!((3..=13).contains(&flipped), "{flipped} of 16 flipped");
    }

    #[test]
    fn draws_repeat_with_the_stream_and_stay_in_range() {
        let a = Augment {
            crop_scale: 0.5,
            flip: true,
            rotate: 15.0,
        };
        a.check().unwrap();
        let x = image(2);
        let y1 = a.apply(&x, &mut seeded_rng(3, "augment/0/0")).unwrap();
        let y2 = a.apply(&x, &mut seeded_rng(3, "augment/0/0")).unwrap();
        assert_eq!(y1, y2);
        assert_ne!(y1, x);
        // Bilinear interpolation with repeated edges stays within the image's range.
        let (lo, hi) = (0.0, x.iter().copied().fold(f32::MIN, f32::max));
        assert!(y1.iter().all(|&v| v >= lo && v <= hi));
        assert!(
            Augment {
                crop_scale: 0.0,
                ..Augment::default()
            }
            .check()
            .is_err()
        );
        assert!(
            Augment {
                rotate: 200.0,
                ..Augment::default()
            }
            .check()
            .is_err()
        );
    }
}
