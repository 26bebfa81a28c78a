//! Raw-input features for the "from scratch" baselines of learning curves: the same head
//! trained on what the backbone would have seen, without the backbone.
//!
//! - [`pixels`]: each image resized (Pillow-compatible bilinear, stretched to a square, no
//!   crop, so an 8×8 digit stays whole) to `size` × `size`, converted to luma
//!   (ITU-R 601: (299 R + 587 G + 114 B) / 1000, as Pillow's `convert("L")`), scaled to
//!   [0, 1] and flattened row-major.
//! - [`tfidf`]: a bag of words over [`crate::wordvec::tokenize`]'s tokens,
//!   the `max_vocab` words in most documents (ties by word), weighted by smoothed IDF
//!   `ln((1 + n) / (1 + df)) + 1` and L2-normalised per row (scikit-learn's
//!   `TfidfVectorizer` defaults). Document frequencies come from the texts given, labels
//!   unused.

use std::collections::HashMap;

use ndarray::Array2;
use rayon::prelude::*;
use tl_data::Row;

use crate::extract::row_image;
use crate::image::resize_bilinear;
use crate::wordvec::tokenize;
use crate::{Error, Result};

/// `size` × `size` luma pixels in [0, 1] per row.
pub fn pixels(rows: &[&Row], size: u32) -> Result<Array2<f32>> {
    if size == 0 {
        return Err(Error::Invalid("pixel size 0".into()));
    }
    let d = (size * size) as usize;
    let per_row: Vec<Vec<f32>> = rows
        .par_iter()
        .map(|row| {
            let img = resize_bilinear(&row_image(row)?, size, size);
            Ok(img
                .pixels()
                .chunks_exact(3)
                .map(|p| {
                    let l = (299 * p[0] as u32 + 587 * p[1] as u32 + 114 * p[2] as u32) / 1000;
                    l as f32 / 255.0
                })
                .collect())
        })
        .collect::<Result<_>>()?;
    let mut out = Array2::<f32>::zeros((rows.len(), d));
    for (mut o, v) in out.outer_iter_mut().zip(per_row) {
        o.assign(&ndarray::ArrayView1::from(&v));
    }
    Ok(out)
}

/// The vocabulary of a TF-IDF bag of words and its IDF weights.
#[derive(Debug, Clone)]
pub struct TfIdf {
    pub vocab: Vec<String>,
    pub idf: Vec<f32>,
    index: HashMap<String, usize>,
}

impl TfIdf {
    /// Fits the vocabulary (the `max_vocab` words in most documents) and IDF on `texts`.
    pub fn fit(texts: &[&str], max_vocab: usize) -> Self {
        let mut df: HashMap<String, usize> = HashMap::new();
        for t in texts {
            let mut seen: Vec<String> = tokenize(t);
            seen.sort();
            seen.dedup();
            for w in seen {
                *df.entry(w).or_default() += 1;
            }
        }
        let mut words: Vec<(String, usize)> = df.into_iter().collect();
        words.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        words.truncate(max_vocab);
        let n = texts.len() as f64;
        let idf = words
            .iter()
            .map(|(_, d)| (((1.0 + n) / (1.0 + *d as f64)).ln() + 1.0) as f32)
            .collect();
        let vocab: Vec<String> = words.into_iter().map(|(w, _)| w).collect();
        let index = vocab
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), i))
            .collect();
        Self { vocab, idf, index }
    }

    /// Term counts × IDF, each row L2-normalised (a text with no known word is all 0).
    pub fn transform(&self, texts: &[&str]) -> Array2<f32> {
        let mut out = Array2::<f32>::zeros((texts.len(), self.vocab.len()));
        out.outer_iter_mut()
            .into_par_iter()
            .zip(texts.par_iter())
            .for_each(|(mut row, t)| {
                for w in tokenize(t) {
                    if let Some(&i) = self.index.get(&w) {
                        row[i] += 1.0;
                    }
                }
                for (v, idf) in row.iter_mut().zip(&self.idf) {
                    *v *= idf;
                }
                let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
                if norm > 0.0 {
                    row.mapv_inplace(|v| v / norm);
                }
            });
        out
    }
}

/// TF-IDF features of `texts`, vocabulary and IDF fitted on the same texts.
pub fn tfidf(texts: &[&str], max_vocab: usize) -> Array2<f32> {
    TfIdf::fit(texts, max_vocab).transform(texts)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against scikit-learn 1.9.1: `TfidfVectorizer(token_pattern=r"(?u)\b\w+\b")` on
    /// these texts gives row 0 = 0.42544054 (the), 0.54783215 (cat), 0.72033345 (sat).
    #[test]
    fn tfidf_matches_scikit_learns_weights() {
        let texts = ["the cat sat", "the dog", "the cat and the dog"];
        let m = TfIdf::fit(&texts, 100);
        // df: the 3, cat 2, dog 2, and 1, sat 1 → order the, cat, dog, and, sat.
        assert_eq!(m.vocab, ["the", "cat", "dog", "and", "sat"]);
        let x = m.transform(&texts);
        // Row 0 "the cat sat": counts the 1, cat 1, sat 1; idf the ln(4/4)+1 = 1,
        // cat ln(4/3)+1, sat ln(4/2)+1.
        let (a, b, c) = (1.0f64, (4.0f64 / 3.0).ln() + 1.0, 2f64.ln() + 1.0);
        let n = (a * a + b * b + c * c).sqrt();
        let want = [a / n, b / n, 0.0, 0.0, c / n];
        for (g, w) in x.row(0).iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-6, "{g} vs {w}");
        }
        for (g, w) in [
            (x[[0, 0]], 0.42544054),
            (x[[0, 1]], 0.54783215),
            (x[[0, 4]], 0.72033345),
        ] {
            assert!((g - w).abs() < 1e-6, "{g} vs scikit-learn {w}");
        }
        // Rows have unit norm.
        for r in x.outer_iter() {
            assert!((r.iter().map(|v| v * v).sum::<f32>() - 1.0).abs() < 1e-5);
        }
        // A capped vocabulary keeps the most frequent words.
        assert_eq!(TfIdf::fit(&texts, 2).vocab, ["the", "cat"]);
    }
}
