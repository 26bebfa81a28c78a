//! Text: the model's `tokenizer.json` through the `tokenizers` crate, dynamic padding per
//! batch, attention masks, mask-weighted mean (or CLS) pooling, optional L2 normalisation.

use std::path::Path;

use ndarray::{Array2, ArrayD, Axis};
use tl_core::contract::{TextContract, TextPooling};
use tl_runtime::{Input, Session};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::{Error, Result};

/// A tokenized batch: ids, attention mask and token types, [B, T] with T the longest row.
#[derive(Debug, Clone)]
pub struct TokenBatch {
    pub ids: Array2<i64>,
    pub mask: Array2<i64>,
    pub type_ids: Array2<i64>,
}

/// Tokenizes and embeds texts as a text model's contract says.
#[derive(Debug)]
pub struct TextEncoder {
    tokenizer: Tokenizer,
    contract: TextContract,
}

impl TextEncoder {
    /// Loads `tokenizer.json` (named by the contract) from `model_dir`.
    pub fn new(model_dir: &Path, contract: &TextContract) -> Result<Self> {
        contract.check()?;
        let path = model_dir.join(&contract.tokenizer);
        let mut tokenizer = Tokenizer::from_file(&path).map_err(|e| {
            Error::Invalid(format!("cannot load tokenizer `{}`: {e}", path.display()))
        })?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: contract.max_length,
                ..Default::default()
            }))
            .map_err(|e| Error::Invalid(format!("tokenizer `{}`: {e}", path.display())))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..Default::default()
        }));
        Ok(Self {
            tokenizer,
            contract: contract.clone(),
        })
    }

    /// Number of tokens of each text after truncation (for length bucketing).
    pub fn token_counts(&self, texts: &[&str]) -> Result<Vec<usize>> {
        let mut t = self.tokenizer.clone();
        t.with_padding(None);
        let enc = t
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| Error::Invalid(format!("tokenizer: {e}")))?;
        Ok(enc.iter().map(|e| e.get_ids().len()).collect())
    }

    /// Tokenizes a batch, padded to its longest row.
    pub fn tokenize(&self, texts: &[&str]) -> Result<TokenBatch> {
        let enc = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| Error::Invalid(format!("tokenizer: {e}")))?;
        let t = enc.iter().map(|e| e.get_ids().len()).max().unwrap_or(0);
        let grab = |f: &dyn Fn(&tokenizers::Encoding) -> Vec<i64>| {
            let flat: Vec<i64> = enc.iter().flat_map(f).collect();
            Array2::from_shape_vec((enc.len(), t), flat).expect("padded to the longest row")
        };
        Ok(TokenBatch {
            ids: grab(&|e| e.get_ids().iter().map(|&v| v as i64).collect()),
            mask: grab(&|e| e.get_attention_mask().iter().map(|&v| v as i64).collect()),
            type_ids: grab(&|e| e.get_type_ids().iter().map(|&v| v as i64).collect()),
        })
    }

    /// Sentence embeddings [B, D] of one batch.
    pub fn embed(&self, session: &mut Session, texts: &[&str]) -> Result<Array2<f32>> {
        let b = self.tokenize(texts)?;
        let (ids, mask, types) = (
            b.ids.into_dyn(),
            b.mask.clone().into_dyn(),
            b.type_ids.into_dyn(),
        );
        let mut inputs = vec![
            (self.contract.input_ids.as_str(), Input::I64(ids.view())),
            (
                self.contract.attention_mask.as_str(),
                Input::I64(mask.view()),
            ),
        ];
        if let Some(name) = &self.contract.token_type_ids {
            inputs.push((name.as_str(), Input::I64(types.view())));
        }
        let out = session.run(&inputs, &[self.contract.token_output.as_str()])?;
        let hidden = &out[&self.contract.token_output];
        let mut pooled = match self.contract.pooling {
            TextPooling::Mean => mean_pool(hidden, &b.mask)?,
            TextPooling::Cls => hidden
                .index_axis(Axis(1), 0)
                .to_owned()
                .into_dimensionality()
                .map_err(|e| Error::Invalid(e.to_string()))?,
        };
        if self.contract.normalize {
            l2_normalize(&mut pooled);
        }
        Ok(pooled)
    }
}

/// Mean of token embeddings [B, T, D] weighted by the attention mask [B, T].
pub fn mean_pool(hidden: &ArrayD<f32>, mask: &Array2<i64>) -> Result<Array2<f32>> {
    let [b, t, d] = hidden.shape() else {
        return Err(Error::Invalid(format!(
            "token output has shape {:?}, expected [batch, tokens, width]",
            hidden.shape()
        )));
    };
    if mask.dim() != (*b, *t) {
        return Err(Error::Invalid(format!(
            "mask {:?} does not match token output {:?}",
            mask.dim(),
            hidden.shape()
        )));
    }
    let mut out = Array2::<f32>::zeros((*b, *d));
    for i in 0..*b {
        let n: i64 = mask.row(i).sum();
        for k in 0..*d {
            let mut acc = 0f64;
            for j in 0..*t {
                if mask[[i, j]] != 0 {
                    acc += hidden[[i, j, k]] as f64;
                }
            }
            out[[i, k]] = (acc / n.max(1) as f64) as f32;
        }
    }
    Ok(out)
}

/// Scales every row to unit Euclidean length (rows of zeros stay zero).
pub fn l2_normalize(x: &mut Array2<f32>) {
    for mut row in x.axis_iter_mut(Axis(0)) {
        let n = row
            .iter()
            .map(|&v| (v as f64) * (v as f64))
            .sum::<f64>()
            .sqrt();
        if n > 0.0 {
            row.mapv_inplace(|v| (v as f64 / n) as f32);
        }
    }
}

/// Batches of row indices with similar token counts (length bucketing): indices sorted by
/// length, cut into batches of `batch_size`. Fewer padding tokens, the same embeddings.
pub fn length_buckets(counts: &[usize], batch_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..counts.len()).collect();
    order.sort_by_key(|&i| (counts[i], i));
    order
        .chunks(batch_size.max(1))
        .map(<[usize]>::to_vec)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_pool_ignores_padding() {
        let h = ArrayD::from_shape_vec(vec![1, 3, 2], vec![1., 2., 3., 4., 100., 100.]).unwrap();
        let m = Array2::from_shape_vec((1, 3), vec![1, 1, 0]).unwrap();
        assert_eq!(
            mean_pool(&h, &m).unwrap().into_raw_vec_and_offset().0,
            vec![2., 3.]
        );
    }

    #[test]
    fn normalised_rows_have_unit_length() {
        let mut x = Array2::from_shape_vec((2, 2), vec![3., 4., 0., 0.]).unwrap();
        l2_normalize(&mut x);
        assert_eq!(x.into_raw_vec_and_offset().0, vec![0.6, 0.8, 0., 0.]);
    }

    #[test]
    fn buckets_cover_every_row_once() {
        let counts = [5, 1, 9, 3, 3, 7];
        let b = length_buckets(&counts, 4);
        assert_eq!(b, vec![vec![1, 3, 4, 0], vec![5, 2]]);
    }
}
