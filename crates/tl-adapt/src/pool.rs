//! Predictions of documents from those of their parts (a review's from its sentences').
//!
//! A document's logits are the mean of its parts' log-probabilities: the normalised
//! geometric mean of their class probabilities, which for two classes is the mean of the
//! parts' log-odds. Each part is one vote of its confidence, so a long review is not
//! decided by its length.

use ndarray::{Array2, ArrayView2};

use crate::{Error, Result};

/// Logits of `docs` documents: row `d` is the mean of the rows `i` of `log_proba` with
/// `owner[i] == d`. Every document must own at least one row.
pub fn pool_log_proba(
    log_proba: ArrayView2<'_, f64>,
    owner: &[usize],
    docs: usize,
) -> Result<Array2<f64>> {
    if owner.len() != log_proba.nrows() {
        return Err(Error::Shape {
            what: "part owners".into(),
            expected: format!("one per part row ({})", log_proba.nrows()),
            got: owner.len().to_string(),
        });
    }
    let mut sum = Array2::<f64>::zeros((docs, log_proba.ncols()));
    let mut count = vec![0usize; docs];
    for (row, &d) in log_proba.rows().into_iter().zip(owner) {
        if d >= docs {
            return Err(Error::data(
                "part owners",
                format!("document {d} of {docs}"),
            ));
        }
        sum.row_mut(d).zip_mut_with(&row, |s, &v| *s += v);
        count[d] += 1;
    }
    if let Some(d) = count.iter().position(|&c| c == 0) {
        return Err(Error::data(
            "part owners",
            format!("document {d} has no part"),
        ));
    }
    for (mut r, &c) in sum.rows_mut().into_iter().zip(&count) {
        r /= c as f64;
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::probabilities;
    use ndarray::array;

    /// Pooled logits against a per-document loop over the parts (and the two-class
    /// log-odds identity), within a named tolerance.
    #[test]
    fn matches_the_naive_mean_and_gives_probabilities() {
        const TOL: f64 = 1e-12;
        let p = array![[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.5, 0.5], [0.7, 0.3]];
        let lp = p.mapv(f64::ln);
        let owner = [1, 0, 1, 2, 1];
        let z = pool_log_proba(lp.view(), &owner, 3).unwrap();
        for d in 0..3 {
            let parts: Vec<usize> = (0..5).filter(|&i| owner[i] == d).collect();
            for k in 0..2 {
                let naive = parts.iter().map(|&i| p[[i, k]].ln()).sum::<f64>() / parts.len() as f64;
                assert!((z[[d, k]] - naive).abs() < TOL);
            }
            let odds = parts
                .iter()
                .map(|&i| (p[[i, 1]] / p[[i, 0]]).ln())
                .sum::<f64>()
                / parts.len() as f64;
            assert!((z[[d, 1]] - z[[d, 0]] - odds).abs() < TOL);
        }
        let q = probabilities(z.view());
        for r in q.rows() {
            assert!((r.sum() - 1.0).abs() < TOL);
        }
        // One part: the document has that part's probabilities.
        assert!((q[[0, 1]] - 0.6).abs() < TOL);
        assert!((q[[2, 0]] - 0.5).abs() < TOL);
    }

    #[test]
    fn rejects_owners_that_do_not_fit() {
        let lp = array![[0.0, 0.0], [0.0, 0.0]];
        let e = pool_log_proba(lp.view(), &[0], 1).unwrap_err().to_string();
        assert!(e.contains("owners"), "{e}");
        let e = pool_log_proba(lp.view(), &[0, 3], 2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("document 3 of 2"), "{e}");
        let e = pool_log_proba(lp.view(), &[0, 0], 2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("document 1 has no part"), "{e}");
    }
}
