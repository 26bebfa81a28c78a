//! Word vectors (GloVe): sentence features as the mean, or TF-IDF-weighted mean, of the
//! vectors of a text's words, with the out-of-vocabulary rate counted.

use std::{collections::HashMap, path::Path};

use ndarray::Array2;

use crate::{Error, Result};

/// A word-vector table.
#[derive(Debug, Clone)]
pub struct WordVectors {
    pub vectors: Array2<f32>,
    index: HashMap<String, usize>,
}

/// How word vectors are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weighting {
    #[default]
    Mean,
    /// Weighted by term frequency × smoothed inverse document frequency over the texts
    /// embedded together: idf(w) = ln((1 + N) / (1 + df(w))) + 1, as scikit-learn's TfidfVectorizer.
    Tfidf,
}

tl_core::named_enum!(Weighting, "weighting", [Mean => "mean", Tfidf => "tfidf"]);

/// Sentence features and how many of their words were known.
#[derive(Debug, Clone)]
pub struct Embedded {
    pub features: Array2<f32>,
    pub tokens: usize,
    pub oov_tokens: usize,
    /// Rows with no known word (their features are zero).
    pub empty_rows: usize,
}

impl Embedded {
    /// Share of tokens not in the vocabulary.
    pub fn oov_rate(&self) -> f64 {
        if self.tokens == 0 {
            0.0
        } else {
            self.oov_tokens as f64 / self.tokens as f64
        }
    }
}

impl WordVectors {
    /// Loads `vectors` (a `.npy` of float32 [words, dim], C or Fortran order) and `vocab`
    /// (one word per line, in row order).
    pub fn load(vectors: &Path, vocab: &Path) -> Result<Self> {
        let matrix = read_npy_f32(vectors)?;
        let text = std::fs::read_to_string(vocab)
            .map_err(|e| tl_core::Error::io("cannot read", vocab, e))?;
        let words: Vec<&str> = text.lines().collect();
        if words.len() != matrix.nrows() {
            return Err(Error::Invalid(format!(
                "`{}` has {} words but `{}` has {} vectors",
                vocab.display(),
                words.len(),
                vectors.display(),
                matrix.nrows()
            )));
        }
        let mut index = HashMap::with_capacity(words.len());
        for (i, w) in words.iter().enumerate() {
            index.entry((*w).to_string()).or_insert(i);
        }
        Ok(Self {
            vectors: matrix,
            index,
        })
    }

    /// The vector of a word, if known.
    pub fn get(&self, word: &str) -> Option<ndarray::ArrayView1<'_, f32>> {
        self.index.get(word).map(|&i| self.vectors.row(i))
    }

    /// Vector width.
    pub fn dim(&self) -> usize {
        self.vectors.ncols()
    }

    /// Sentence features of `texts`.
    pub fn embed(&self, texts: &[&str], weighting: Weighting) -> Embedded {
        let tokenized: Vec<Vec<String>> = texts.iter().map(|t| tokenize(t)).collect();
        let idf: HashMap<&str, f64> = match weighting {
            Weighting::Mean => HashMap::new(),
            Weighting::Tfidf => {
                let mut df: HashMap<&str, usize> = HashMap::new();
                for toks in &tokenized {
                    let uniq: std::collections::BTreeSet<&str> =
                        toks.iter().map(String::as_str).collect();
                    for w in uniq {
                        *df.entry(w).or_insert(0) += 1;
                    }
                }
                let n = texts.len() as f64;
                df.into_iter()
                    .map(|(w, d)| (w, ((1.0 + n) / (1.0 + d as f64)).ln() + 1.0))
                    .collect()
            }
        };
        let d = self.dim();
        let mut features = Array2::<f32>::zeros((texts.len(), d));
        let (mut tokens, mut oov, mut empty) = (0, 0, 0);
        for (r, toks) in tokenized.iter().enumerate() {
            let mut acc = vec![0f64; d];
            let mut total_weight = 0f64;
            for w in toks {
                tokens += 1;
                let Some(v) = self.get(w) else {
                    oov += 1;
                    continue;
                };
                // tf × idf summed per occurrence is the same as count × idf per word.
                let weight = idf.get(w.as_str()).copied().unwrap_or(1.0);
                for (a, &x) in acc.iter_mut().zip(v.iter()) {
                    *a += weight * x as f64;
                }
                total_weight += weight;
            }
            if total_weight == 0.0 {
                empty += 1;
                continue;
            }
            for (k, a) in acc.iter().enumerate() {
                features[[r, k]] = (a / total_weight) as f32;
            }
        }
        Embedded {
            features,
            tokens,
            oov_tokens: oov,
            empty_rows: empty,
        }
    }
}

/// GloVe-style tokens: lowercase runs of letters and digits (with inner apostrophes),
/// and every other non-space character on its own.
pub fn tokenize(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let inner_apostrophe =
            c == '\'' && !cur.is_empty() && chars.get(i + 1).is_some_and(|n| n.is_alphanumeric());
        if c.is_alphanumeric() || inner_apostrophe {
            cur.extend(c.to_lowercase());
        } else {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            if !c.is_whitespace() {
                out.push(c.to_string());
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Reads a 2-D float32 `.npy` file (format 1.0–3.0, C or Fortran order) as row-major.
pub fn read_npy_f32(path: &Path) -> Result<Array2<f32>> {
    let bytes = std::fs::read(path).map_err(|e| tl_core::Error::io("cannot read", path, e))?;
    let bad = |why: &str| {
        Error::Invalid(format!(
            "`{}` is not a readable .npy file: {why}",
            path.display()
        ))
    };
    if !bytes.starts_with(b"\x93NUMPY") || bytes.len() < 10 {
        return Err(bad("no NUMPY magic"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => (
            u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
            12,
        ),
        v => return Err(bad(&format!("format version {v}"))),
    };
    let header = std::str::from_utf8(
        bytes
            .get(start..start + header_len)
            .ok_or_else(|| bad("truncated header"))?,
    )
    .map_err(|_| bad("header is not text"))?;
    if !header.contains("'descr': '<f4'") {
        return Err(bad("only little-endian float32 ('<f4') is supported"));
    }
    let fortran = header.contains("'fortran_order': True");
    let shape_text = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad("no shape"))?;
    let dims: Vec<usize> = shape_text
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().map_err(|_| bad("bad shape")))
        .collect::<Result<_>>()?;
    let [rows, cols] = dims[..] else {
        return Err(bad(&format!("{} dimensions, expected 2", dims.len())));
    };
    let data = &bytes[start + header_len..];
    if data.len() != rows * cols * 4 {
        return Err(bad(&format!(
            "{} data bytes for shape ({rows}, {cols}) (truncated?)",
            data.len()
        )));
    }
    let values: Vec<f32> = data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    Ok(if fortran {
        Array2::from_shape_vec((cols, rows), values)
            .expect("checked length")
            .reversed_axes()
            .as_standard_layout()
            .into_owned()
    } else {
        Array2::from_shape_vec((rows, cols), values).expect("checked length")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(path: &Path, rows: usize, cols: usize, fortran: bool, values_row_major: &[f32]) {
        let header = format!(
            "{{'descr': '<f4', 'fortran_order': {}, 'shape': ({rows}, {cols}), }}",
            if fortran { "True" } else { "False" }
        );
        let mut h = header.into_bytes();
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(b' ');
        }
        h.push(b'\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend((h.len() as u16).to_le_bytes());
        bytes.extend(h);
        let ordered: Vec<f32> = if fortran {
            (0..cols)
                .flat_map(|c| (0..rows).map(move |r| values_row_major[r * cols + c]))
                .collect()
        } else {
            values_row_major.to_vec()
        };
        bytes.extend(ordered.iter().flat_map(|v| v.to_le_bytes()));
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn npy_in_both_orders() {
        let dir = tempfile::tempdir().unwrap();
        let v = [1., 2., 3., 4., 5., 6.];
        for fortran in [false, true] {
            let p = dir.path().join(format!("{fortran}.npy"));
            npy(&p, 3, 2, fortran, &v);
            let m = read_npy_f32(&p).unwrap();
            assert_eq!(
                m,
                Array2::from_shape_vec((3, 2), v.to_vec()).unwrap(),
                "fortran = {fortran}"
            );
        }
        std::fs::write(dir.path().join("bad.npy"), b"not numpy").unwrap();
        assert!(
            read_npy_f32(&dir.path().join("bad.npy"))
                .unwrap_err()
                .to_string()
                .contains("bad.npy")
        );
    }

    #[test]
    fn tokenizer_splits_punctuation_and_lowercases() {
        assert_eq!(
            tokenize("It's GOOD, isn't it?!"),
            ["it's", "good", ",", "isn't", "it", "?", "!"]
        );
        assert_eq!(tokenize("  "), Vec::<String>::new());
    }

    #[test]
    fn mean_and_tfidf_against_hand_computation() {
        let dir = tempfile::tempdir().unwrap();
        npy(
            &dir.path().join("v.npy"),
            3,
            2,
            true,
            &[1., 0., 0., 1., 3., 3.],
        );
        std::fs::write(dir.path().join("vocab.txt"), "good\nbad\nthe\n").unwrap();
        let wv =
            WordVectors::load(&dir.path().join("v.npy"), &dir.path().join("vocab.txt")).unwrap();
        let e = wv.embed(&["the good movie", "the bad"], Weighting::Mean);
        assert_eq!(e.features.row(0).to_vec(), vec![2.0, 1.5]);
        assert_eq!((e.tokens, e.oov_tokens), (5, 1));
        assert!((e.oov_rate() - 0.2).abs() < 1e-12);
        // idf(the) = ln(3/3) + 1 = 1; idf(good) = ln(3/2) + 1.
        let t = wv.embed(&["the good movie", "the bad"], Weighting::Tfidf);
        let g = (1.5f64).ln() + 1.0;
        let want = [(3.0 + g) / (1.0 + g), 3.0 / (1.0 + g)];
        for (k, w) in want.iter().enumerate() {
            assert!((t.features[[0, k]] as f64 - w).abs() < 1e-6);
        }
        assert_eq!(
            wv.embed(&["unknown words only"], Weighting::Mean)
                .empty_rows,
            1
        );
    }
}
