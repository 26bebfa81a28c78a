//! Transductive pseudo-labels for the target: a source probe's predictions refined by the
//! target's own structure, without training a network.
//!
//! Three published steps, each a function here so it can be tested alone:
//! 1. [`centroid_labels`]: SHOT's clustering pseudo-labels (Liang et al., 2020): class
//!    centroids of the L2-normalised target rows weighted by the predicted probabilities,
//!    then each row to its nearest centroid by cosine, repeated until no label changes.
//! 2. [`KnnGraph`] and [`KnnGraph::propagate`]: label propagation on the target's cosine
//!    k-nearest-neighbour graph (Zhou et al., 2004, "Learning with local and global
//!    consistency"): `F ← α S F + (1 − α) Y` with `S = D^{-1/2} W D^{-1/2}`.
//! 3. [`sinkhorn`]: the propagated scores made to fill each class in proportion to a
//!    prior, by entropic optimal transport (Cuturi, 2013; as in SwAV's and SeLa's
//!    balanced pseudo-labels). The default prior is uniform, the assumption SHOT's
//!    diversity term also makes.

use ndarray::{Array1, Array2, ArrayView2, Axis, s};

use crate::{Error, Result};

/// Rows of the similarity matrix computed at once (bounds memory at `BLOCK × rows` f32).
const BLOCK: usize = 256;

/// Each row scaled to unit L2 norm (zero rows stay zero).
pub fn l2_rows(x: ArrayView2<'_, f32>) -> Array2<f32> {
    let mut out = x.to_owned();
    for mut row in out.rows_mut() {
        let n = row
            .iter()
            .map(|v| f64::from(*v) * f64::from(*v))
            .sum::<f64>()
            .sqrt();
        if n > 0.0 {
            row.mapv_inplace(|v| (f64::from(v) / n) as f32);
        }
    }
    out
}

/// SHOT's clustering pseudo-labels: centroids weighted by `p` (rows × classes), then
/// nearest centroid by cosine, then centroids of the hard labels, until the labels stop
/// changing or `max_rounds` rounds have run. Ties go to the lower class index.
pub fn centroid_labels(
    x: ArrayView2<'_, f32>,
    p: ArrayView2<'_, f64>,
    max_rounds: usize,
) -> Result<Vec<u32>> {
    if x.nrows() != p.nrows() {
        return Err(Error::Shape {
            what: "probabilities".into(),
            expected: format!("{} rows like the features", x.nrows()),
            got: format!("{:?}", p.shape()),
        });
    }
    let z = l2_rows(x).mapv(f64::from);
    let classes = p.ncols();
    let mut weights = p.to_owned();
    let mut labels: Vec<u32> = Vec::new();
    for _ in 0..max_rounds.max(1) {
        // Centroids [classes, d], L2-normalised so the nearest is by cosine.
        let mut c = weights.t().dot(&z);
        for mut row in c.rows_mut() {
            let n = row.dot(&row).sqrt();
            if n > 0.0 {
                row /= n;
            }
        }
        let sim = z.dot(&c.t());
        let next: Vec<u32> = sim.rows().into_iter().map(|r| argmax(r.iter())).collect();
        if next == labels {
            break;
        }
        weights = one_hot(&next, classes);
        labels = next;
    }
    Ok(labels)
}

/// The index of the largest value; ties go to the first.
fn argmax<'a>(it: impl Iterator<Item = &'a f64>) -> u32 {
    tl_core::num::argmax(it.copied()) as u32
}

/// Labels as a one-hot matrix [rows, classes].
pub fn one_hot(labels: &[u32], classes: usize) -> Array2<f64> {
    let mut y = Array2::zeros((labels.len(), classes));
    for (i, &l) in labels.iter().enumerate() {
        y[[i, l as usize]] = 1.0;
    }
    y
}

/// The symmetric, normalised cosine k-nearest-neighbour graph of a set of rows, stored
/// as adjacency lists: `S = D^{-1/2} W D^{-1/2}` with `W = (A + Aᵀ) / 2` and `A[i, j] = 1`
/// where `j` is among the `k` rows most similar to `i` (itself excluded).
#[derive(Debug, Clone, PartialEq)]
pub struct KnnGraph {
    /// `edges[i]`: (neighbour, weight of `S`), sorted by neighbour.
    pub edges: Vec<Vec<(usize, f64)>>,
}

impl KnnGraph {
    pub fn build(x: ArrayView2<'_, f32>, k: usize) -> Result<Self> {
        let n = x.nrows();
        if k == 0 || k >= n {
            return Err(Error::setting(
                "neighbours",
                format!("k = {k} needs 1 ≤ k < rows ({n})"),
            ));
        }
        let z = l2_rows(x);
        let mut near: Vec<Vec<usize>> = Vec::with_capacity(n);
        for start in (0..n).step_by(BLOCK) {
            let end = (start + BLOCK).min(n);
            let sim = z.slice(s![start..end, ..]).dot(&z.t());
            for (r, row) in sim.rows().into_iter().enumerate() {
                let i = start + r;
                let mut idx: Vec<usize> = (0..n).filter(|&j| j != i).collect();
                // Most similar first; equal similarities by index, so the graph does not
                // depend on how ties happen to be met.
                let cmp = |a: &usize, b: &usize| row[*b].total_cmp(&row[*a]).then(a.cmp(b));
                idx.select_nth_unstable_by(k - 1, cmp);
                idx.truncate(k);
                idx.sort_unstable_by(cmp);
                near.push(idx);
            }
        }
        let mut w: Vec<std::collections::BTreeMap<usize, f64>> = vec![Default::default(); n];
        for (i, js) in near.iter().enumerate() {
            for &j in js {
                *w[i].entry(j).or_default() += 0.5;
                *w[j].entry(i).or_default() += 0.5;
            }
        }
        let deg: Vec<f64> = w.iter().map(|m| m.values().sum()).collect();
        let edges = w
            .iter()
            .enumerate()
            .map(|(i, m)| {
                m.iter()
                    .map(|(&j, &v)| (j, v / (deg[i] * deg[j]).sqrt()))
                    .collect()
            })
            .collect();
        Ok(Self { edges })
    }

    /// `S · f`.
    fn apply(&self, f: &Array2<f64>) -> Array2<f64> {
        let mut out = Array2::zeros(f.raw_dim());
        for (i, es) in self.edges.iter().enumerate() {
            let mut row = out.row_mut(i);
            for &(j, v) in es {
                row.scaled_add(v, &f.row(j));
            }
        }
        out
    }

    /// Zhou et al.'s iteration `F ← α S F + (1 − α) Y`, `iters` times from `F = Y`.
    pub fn propagate(
        &self,
        y: ArrayView2<'_, f64>,
        alpha: f64,
        iters: usize,
    ) -> Result<Array2<f64>> {
        if y.nrows() != self.edges.len() {
            return Err(Error::Shape {
                what: "seed labels".into(),
                expected: format!("{} rows like the graph", self.edges.len()),
                got: format!("{:?}", y.shape()),
            });
        }
        if !(0.0..1.0).contains(&alpha) {
            return Err(Error::setting(
                "propagation α",
                format!("{alpha} is not in [0, 1)"),
            ));
        }
        let y = y.to_owned();
        let mut f = y.clone();
        for _ in 0..iters {
            f = self.apply(&f) * alpha + &y * (1.0 - alpha);
        }
        Ok(f)
    }
}

/// Entropic optimal transport of the rows of `scores` (rows × classes, ≥ 0) onto the class
/// proportions `prior`: returns the plan `Q = diag(u) K diag(v)` with `K = (s / Σ s)^{1/ε}`
/// row by row, every row summing to `1 / rows` and column `j` to `prior[j]`. Computed in
/// the log domain (stable for small ε), at most `iters` rounds, stopping when the column
/// sums are within `1e-10` of the prior.
pub fn sinkhorn(
    scores: ArrayView2<'_, f64>,
    prior: &[f64],
    eps: f64,
    iters: usize,
) -> Result<Array2<f64>> {
    let (n, k) = scores.dim();
    if prior.len() != k {
        return Err(Error::Shape {
            what: "class prior".into(),
            expected: format!("{k} values, one per class"),
            got: format!("{}", prior.len()),
        });
    }
    let total: f64 = prior.iter().sum();
    if prior.iter().any(|&p| !(p.is_finite() && p > 0.0)) || (total - 1.0).abs() > 1e-6 {
        return Err(Error::setting(
            "class prior",
            format!("{prior:?} must be positive and sum to 1"),
        ));
    }
    if !(eps.is_finite() && eps > 0.0) {
        return Err(Error::setting("Sinkhorn ε", format!("{eps} must be > 0")));
    }
    if n == 0 {
        return Err(Error::no_rows("scores"));
    }
    // log K, rows normalised to sum 1 first; zero scores get a floor so every class can
    // still receive mass.
    let mut log_k = Array2::zeros((n, k));
    for (i, row) in scores.rows().into_iter().enumerate() {
        let sum: f64 = row.iter().map(|v| v.max(0.0)).sum();
        for j in 0..k {
            let p = if sum > 0.0 {
                row[j].max(0.0) / sum
            } else {
                1.0 / k as f64
            };
            log_k[[i, j]] = (p + 1e-12).ln() / eps;
        }
    }
    let log_r = -(n as f64).ln();
    let log_c: Vec<f64> = prior.iter().map(|p| p.ln()).collect();
    let mut log_u = Array1::<f64>::zeros(n);
    let mut log_v = Array1::<f64>::zeros(k);
    for _ in 0..iters {
        for i in 0..n {
            log_u[i] = log_r - tl_core::num::log_sum_exp((0..k).map(|j| log_k[[i, j]] + log_v[j]));
        }
        let mut err = 0.0f64;
        for j in 0..k {
            let col = tl_core::num::log_sum_exp((0..n).map(|i| log_k[[i, j]] + log_u[i]));
            err = err
                .max((col + log_v[j]).exp() - prior[j])
                .max(prior[j] - (col + log_v[j]).exp());
            log_v[j] = log_c[j] - col;
        }
        if err < 1e-10 {
            break;
        }
    }
    let mut q = log_k;
    for ((i, j), v) in q.indexed_iter_mut() {
        *v = (*v + log_u[i] + log_v[j]).exp();
    }
    Ok(q)
}

/// The settings of [`pseudo_labels`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PropagateSettings {
    pub neighbours: usize,
    pub alpha: f64,
    pub iters: usize,
    pub eps: f64,
    pub centroid_rounds: usize,
}

/// The three steps in order: the target's class for every row of `x`, from the source
/// probe's probabilities `p` and the class proportions `prior` (`None`: no balancing).
pub fn pseudo_labels(
    x: ArrayView2<'_, f32>,
    p: ArrayView2<'_, f64>,
    prior: Option<&[f64]>,
    s: &PropagateSettings,
) -> Result<Vec<u32>> {
    let classes = p.ncols();
    let seeds = one_hot(&centroid_labels(x, p, s.centroid_rounds)?, classes);
    let graph = KnnGraph::build(x, s.neighbours)?;
    let f = graph.propagate(seeds.view(), s.alpha, s.iters)?;
    let f = match prior {
        Some(prior) => sinkhorn(f.view(), prior, s.eps, 1000)?,
        None => f,
    };
    Ok(f.axis_iter(Axis(0)).map(|r| argmax(r.iter())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    const TOL: f64 = 1e-9;

    /// Two well-separated blobs of `n` rows each in 3-D, seeded.
    fn blobs(n: usize, seed: u64) -> Array2<f32> {
        use rand::Rng;
        let mut rng = tl_core::rng::seeded_rng(seed, "blobs");
        Array2::from_shape_fn((2 * n, 3), |(i, j)| {
            let centre = if (i < n) == (j == 0) { 5.0 } else { 0.5 };
            centre + rng.random_range(-0.3..0.3)
        })
    }

    #[test]
    fn graph_is_symmetric_and_matches_a_naive_normalisation() {
        let x = blobs(6, 1);
        let k = 3;
        let g = KnnGraph::build(x.view(), k).unwrap();
        // Naive: the dense cosine matrix, k largest off-diagonal per row.
        let n = x.nrows();
        let z = l2_rows(x.view()).mapv(f64::from);
        let sim = z.dot(&z.t());
        let mut a = Array2::<f64>::zeros((n, n));
        for i in 0..n {
            let mut js: Vec<usize> = (0..n).filter(|&j| j != i).collect();
            js.sort_by(|&p, &q| sim[[i, q]].total_cmp(&sim[[i, p]]).then(p.cmp(&q)));
            for &j in &js[..k] {
                a[[i, j]] = 1.0;
            }
        }
        let w = (&a + &a.t()) / 2.0;
        let d = w.sum_axis(Axis(1));
        for i in 0..n {
            let dense: Vec<(usize, f64)> = (0..n)
                .filter(|&j| w[[i, j]] > 0.0)
                .map(|j| (j, w[[i, j]] / (d[i] * d[j]).sqrt()))
                .collect();
            assert_eq!(dense.len(), g.edges[i].len(), "row {i}");
            for ((j1, v1), (j2, v2)) in dense.iter().zip(&g.edges[i]) {
                assert_eq!(j1, j2);
                assert!((v1 - v2).abs() < TOL, "S[{i},{j1}] {v1} vs {v2}");
            }
        }
        // Symmetric.
        for (i, es) in g.edges.iter().enumerate() {
            for &(j, v) in es {
                let back = g.edges[j].iter().find(|e| e.0 == i).expect("symmetric").1;
                assert!((back - v).abs() < TOL);
            }
        }
    }

    #[test]
    fn propagation_matches_the_closed_form() {
        // Zhou et al.: the fixed point is (1 − α)(I − αS)^{-1} Y.
        let x = blobs(5, 2);
        let g = KnnGraph::build(x.view(), 3).unwrap();
        let n = x.nrows();
        let mut s_dense = Array2::<f64>::zeros((n, n));
        for (i, es) in g.edges.iter().enumerate() {
            for &(j, v) in es {
                s_dense[[i, j]] = v;
            }
        }
        let y = one_hot(&[0, 0, 0, 0, 0, 1, 1, 1, 1, 1], 2);
        let alpha = 0.9;
        let f = g.propagate(y.view(), alpha, 2000).unwrap();
        let a = Array2::<f64>::eye(n) - &s_dense * alpha;
        for c in 0..2 {
            let col = crate::linalg::solve(&a, &(y.column(c).to_owned() * (1.0 - alpha))).unwrap();
            for i in 0..n {
                assert!((col[i] - f[[i, c]]).abs() < 1e-8, "F[{i},{c}]");
            }
        }
    }

    #[test]
    fn propagation_corrects_a_wrong_seed_inside_a_cluster() {
        let x = blobs(8, 3);
        let g = KnnGraph::build(x.view(), 4).unwrap();
        let mut labels = vec![0u32; 8];
        labels.extend([1u32; 8]);
        labels[2] = 1; // one wrong seed in the first blob
        let f = g.propagate(one_hot(&labels, 2).view(), 0.99, 200).unwrap();
        let out: Vec<u32> = f.rows().into_iter().map(|r| argmax(r.iter())).collect();
        assert_eq!(out[2], 0);
        assert_eq!(&out[..8], &[0; 8]);
        assert_eq!(&out[8..], &[1; 8]);
    }

    /// Sinkhorn converges linearly, slowly at small ε and a prior far from the scores'
    /// own proportions: the marginals are met to this after 10,000 rounds.
    const MARGINAL_TOL: f64 = 1e-6;

    #[test]
    fn sinkhorn_meets_both_marginals() {
        let scores = array![[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4]];
        for prior in [[0.5, 0.5], [0.25, 0.75]] {
            let q = sinkhorn(scores.view(), &prior, 0.05, 10_000).unwrap();
            for r in q.sum_axis(Axis(1)) {
                assert!((r - 0.25).abs() < MARGINAL_TOL, "row sum {r}");
            }
            for (c, p) in q.sum_axis(Axis(0)).iter().zip(prior) {
                assert!((c - p).abs() < MARGINAL_TOL, "column sum {c} vs {p}");
            }
        }
        // With a balanced prior, the two rows least sure of class 0 move to class 1.
        let q = sinkhorn(scores.view(), &[0.5, 0.5], 0.05, 10_000).unwrap();
        let labels: Vec<u32> = q.rows().into_iter().map(|r| argmax(r.iter())).collect();
        assert_eq!(labels, [0, 0, 1, 1]);
    }

    #[test]
    fn sinkhorn_matches_the_plain_iteration() {
        // The textbook (non-log) Sinkhorn on the same kernel, at an ε it survives.
        let scores = array![
            [0.5, 0.3, 0.2],
            [0.1, 0.6, 0.3],
            [0.3, 0.3, 0.4],
            [0.7, 0.2, 0.1]
        ];
        let prior = [0.2, 0.3, 0.5];
        let eps = 0.5;
        let q = sinkhorn(scores.view(), &prior, eps, 100_000).unwrap();
        let kmat = scores.mapv(|v| (v + 1e-12).powf(1.0 / eps));
        let mut v = Array1::<f64>::ones(3);
        let mut u = Array1::<f64>::ones(4);
        for _ in 0..100_000 {
            u = kmat.dot(&v).mapv(|s| 0.25 / s);
            v = Array1::from(prior.to_vec()) / kmat.t().dot(&u);
        }
        for ((i, j), &got) in q.indexed_iter() {
            let want = u[i] * kmat[[i, j]] * v[j];
            assert!((got - want).abs() < 1e-10, "Q[{i},{j}] {got} vs {want}");
        }
    }

    #[test]
    fn centroid_labels_find_the_blobs_from_weak_probabilities() {
        let x = blobs(10, 4);
        // Barely better than chance, and wrong on a third of each blob.
        let p = Array2::from_shape_fn((20, 2), |(i, c)| {
            let right = (i < 10) == (c == 0);
            let flip = i % 3 == 0;
            if right != flip { 0.55 } else { 0.45 }
        });
        let labels = centroid_labels(x.view(), p.view(), 10).unwrap();
        assert_eq!(&labels[..10], &[0; 10]);
        assert_eq!(&labels[10..], &[1; 10]);
    }

    #[test]
    fn bad_settings_are_named() {
        let x = blobs(2, 5);
        let e = KnnGraph::build(x.view(), 4).unwrap_err().to_string();
        assert!(e.contains("k = 4") && e.contains("rows (4)"), "{e}");
        let s = array![[1.0, 0.0]];
        let e = sinkhorn(s.view(), &[0.7, 0.7], 0.1, 10)
            .unwrap_err()
            .to_string();
        assert!(e.contains("class prior"), "{e}");
        let e = sinkhorn(s.view(), &[1.0], 0.1, 10).unwrap_err().to_string();
        assert!(e.contains("2 values"), "{e}");
    }

    #[test]
    fn row_order_does_not_change_the_labels() {
        let x = blobs(7, 6);
        let p = Array2::from_shape_fn(
            (14, 2),
            |(i, c)| {
                if (i < 7) == (c == 0) { 0.6 } else { 0.4 }
            },
        );
        let st = PropagateSettings {
            neighbours: 3,
            alpha: 0.99,
            iters: 100,
            eps: 0.05,
            centroid_rounds: 10,
        };
        let a = pseudo_labels(x.view(), p.view(), Some(&[0.5, 0.5]), &st).unwrap();
        let perm: Vec<usize> = (0..14).rev().collect();
        let xp = x.select(Axis(0), &perm);
        let pp = p.select(Axis(0), &perm);
        let b = pseudo_labels(xp.view(), pp.view(), Some(&[0.5, 0.5]), &st).unwrap();
        for (i, &j) in perm.iter().enumerate() {
            assert_eq!(b[i], a[j]);
        }
    }
}
