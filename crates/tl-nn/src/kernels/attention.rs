//! Scaled dot-product attention, `O = softmax(Q·Kᵀ/√d + mask)·V`, forward and backward, over
//! `[batch, heads, tokens, dim]` tensors: the kernel the transformer layers (self- and
//! cross-attention, encoders and decoders) are built on.
//!
//! Each (sample, head) is one task on rayon's pool, and every product in it is one call of
//! the engine's GEMM on that task's thread ([`super::gemm::gemm_serial`]), so results do
//! not depend on the thread count. The probabilities `P` `[batch, heads, queries, keys]`
//! are the only thing backward needs beyond the inputs; nothing else of that size is made
//! but one `queries × keys` scratch per task in backward.
//!
//! Masks: a key past `key_lengths[b]` (padding) or after the query's own position
//! (`causal`, query `i` sees keys `0..=i + keys − queries`) gets probability zero; a query
//! that sees no key gets a zero output and no gradient.

use rayon::prelude::*;

use super::gemm::{MatMut, MatRef, gemm_serial};

/// Sizes of one attention call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    pub batch: usize,
    pub heads: usize,
    pub queries: usize,
    pub keys: usize,
    pub dim: usize,
}

/// Which keys each query sees.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mask<'a> {
    /// Query `i` sees keys up to `i + keys − queries` (a decoder's own past).
    pub causal: bool,
    /// Valid keys per sample (the rest is padding); all keys when `None`.
    pub key_lengths: Option<&'a [usize]>,
}

impl Mask<'_> {
    /// Keys `0..end` that query `i` of sample `b` sees.
    fn visible(&self, b: usize, i: usize, d: &Dims) -> usize {
        let mut end = d.keys;
        if let Some(l) = self.key_lengths {
            end = end.min(l[b]);
        }
        if self.causal {
            end = end.min((i + 1 + d.keys).saturating_sub(d.queries));
        }
        end
    }
}

fn check(what: &str, got: usize, want: usize) {
    assert_eq!(
        got, want,
        "attention {what}: {got} values where {want} are needed"
    );
}

/// `out` `[b, h, queries, dim]` and `probs` `[b, h, queries, keys]` (kept for
/// [`backward`]) from `q` `[b, h, queries, dim]` and `k`, `v` `[b, h, keys, dim]`.
///
/// # Panics
/// If a slice's length or `mask.key_lengths`' length does not fit `d` (a bug of the
/// calling layer).
pub fn forward(
    (q, k, v): (&[f32], &[f32], &[f32]),
    d: Dims,
    mask: Mask<'_>,
    out: &mut [f32],
    probs: &mut [f32],
) {
    let tasks = d.batch * d.heads;
    let (qs, ks, ps) = (d.queries * d.dim, d.keys * d.dim, d.queries * d.keys);
    check("queries", q.len(), tasks * qs);
    check("keys", k.len(), tasks * ks);
    check("values", v.len(), tasks * ks);
    check("output", out.len(), tasks * qs);
    check("probabilities", probs.len(), tasks * ps);
    if let Some(l) = mask.key_lengths {
        check("key lengths", l.len(), d.batch);
    }
    if tasks == 0 || qs == 0 {
        return;
    }
    let scale = 1.0 / (d.dim as f32).sqrt();
    out.par_chunks_mut(qs)
        .zip(probs.par_chunks_mut(ps.max(1)))
        .enumerate()
        .for_each(|(t, (o, p))| {
            let b = t / d.heads;
            let (qt, kt, vt) = (
                &q[t * qs..(t + 1) * qs],
                &k[t * ks..(t + 1) * ks],
                &v[t * ks..(t + 1) * ks],
            );
            gemm_serial(
                MatRef::row_major(qt, d.queries, d.dim),
                MatRef::row_major(kt, d.keys, d.dim).t(),
                MatMut::row_major(p, d.queries, d.keys),
                false,
            );
            for (i, row) in p.chunks_mut(d.keys.max(1)).enumerate() {
                softmax_row(row, mask.visible(b, i, &d), scale);
            }
            gemm_serial(
                MatRef::row_major(p, d.queries, d.keys),
                MatRef::row_major(vt, d.keys, d.dim),
                MatMut::row_major(o, d.queries, d.dim),
                false,
            );
        });
}

/// `row ← softmax(row·scale)` over its first `visible` values, zero after them (and zero
/// everywhere when none is visible). The sum is [`super::sum_by`]'s fixed order.
fn softmax_row(row: &mut [f32], visible: usize, scale: f32) {
    let (seen, hidden) = row.split_at_mut(visible);
    hidden.fill(0.0);
    if seen.is_empty() {
        return;
    }
    let max = seen
        .iter()
        .fold(f32::NEG_INFINITY, |m, &s| m.max(s * scale));
    for s in seen.iter_mut() {
        *s = *s * scale - max;
    }
    super::exp_in_place(seen);
    let sum = super::sum_by(seen, |s| s);
    let inv = (1.0 / sum) as f32;
    for s in seen.iter_mut() {
        *s *= inv;
    }
}

/// Gradients `dq`, `dk`, `dv` (overwritten) of the [`forward`] that gave `probs`, for the
/// output gradient `d_out`.
///
/// # Panics
/// As [`forward`].
pub fn backward(
    (q, k, v): (&[f32], &[f32], &[f32]),
    probs: &[f32],
    d_out: &[f32],
    d: Dims,
    (dq, dk, dv): (&mut [f32], &mut [f32], &mut [f32]),
) {
    let tasks = d.batch * d.heads;
    let (qs, ks, ps) = (d.queries * d.dim, d.keys * d.dim, d.queries * d.keys);
    for (what, got, want) in [
        ("queries", q.len(), tasks * qs),
        ("keys", k.len(), tasks * ks),
        ("values", v.len(), tasks * ks),
        ("probabilities", probs.len(), tasks * ps),
        ("output gradient", d_out.len(), tasks * qs),
        ("query gradient", dq.len(), tasks * qs),
        ("key gradient", dk.len(), tasks * ks),
        ("value gradient", dv.len(), tasks * ks),
    ] {
        check(what, got, want);
    }
    if tasks == 0 || qs == 0 || ks == 0 {
        dq.fill(0.0);
        dk.fill(0.0);
        dv.fill(0.0);
        return;
    }
    let scale = 1.0 / (d.dim as f32).sqrt();
    dq.par_chunks_mut(qs)
        .zip(dk.par_chunks_mut(ks).zip(dv.par_chunks_mut(ks)))
        .enumerate()
        .for_each_init(Vec::new, |ds, (t, (dqt, (dkt, dvt)))| {
            let (qt, kt, vt) = (
                &q[t * qs..(t + 1) * qs],
                &k[t * ks..(t + 1) * ks],
                &v[t * ks..(t + 1) * ks],
            );
            let (p, go) = (&probs[t * ps..(t + 1) * ps], &d_out[t * qs..(t + 1) * qs]);
            // dV = Pᵀ·dO
            gemm_serial(
                MatRef::row_major(p, d.queries, d.keys).t(),
                MatRef::row_major(go, d.queries, d.dim),
                MatMut::row_major(dvt, d.keys, d.dim),
                false,
            );
            // dP = dO·Vᵀ, then dS = P ⊙ (dP − Σ_j dP·P) · scale, in place.
            ds.resize(ps, 0.0);
            gemm_serial(
                MatRef::row_major(go, d.queries, d.dim),
                MatRef::row_major(vt, d.keys, d.dim).t(),
                MatMut::row_major(ds, d.queries, d.keys),
                false,
            );
            for (dsr, pr) in ds.chunks_mut(d.keys).zip(p.chunks(d.keys)) {
                let mut lanes = [0.0f32; super::LANES];
                super::lane_dot(&mut lanes, dsr, pr);
                let dot = lanes.iter().map(|&l| l as f64).sum::<f64>() as f32;
                for (g, &pv) in dsr.iter_mut().zip(pr) {
                    *g = pv * (*g - dot) * scale;
                }
            }
            // dQ = dS·K, dK = dSᵀ·Q
            gemm_serial(
                MatRef::row_major(ds, d.queries, d.keys),
                MatRef::row_major(kt, d.keys, d.dim),
                MatMut::row_major(dqt, d.queries, d.dim),
                false,
            );
            gemm_serial(
                MatRef::row_major(ds, d.queries, d.keys).t(),
                MatRef::row_major(qt, d.queries, d.dim),
                MatMut::row_major(dkt, d.keys, d.dim),
                false,
            );
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Forward values against the `f64` reference.
    const FORWARD_TOL: f64 = 1e-5;
    /// Analytic gradients against the reference's central differences (step `H`).
    const GRAD_TOL: f64 = 1e-6;
    const H: f64 = 1e-5;

    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 - 1001.0) / 700.0)
            .collect()
    }

    /// Queries, keys and values for `d`, from seeds `seed`, `seed + 1`, `seed + 2`.
    fn inputs(d: &Dims, seed: usize) -> [Vec<f32>; 3] {
        let t = d.batch * d.heads;
        [
            values(t * d.queries * d.dim, seed),
            values(t * d.keys * d.dim, seed + 1),
            values(t * d.keys * d.dim, seed + 2),
        ]
    }

    fn wide(x: &[f32]) -> Vec<f64> {
        x.iter().map(|&a| a as f64).collect()
    }

    /// The definition, in `f64`: `out` for inputs `q`, `k`, `v`.
    fn reference(q: &[f64], k: &[f64], v: &[f64], d: Dims, mask: Mask<'_>) -> Vec<f64> {
        let mut out = vec![0.0; d.batch * d.heads * d.queries * d.dim];
        let scale = 1.0 / (d.dim as f64).sqrt();
        for t in 0..d.batch * d.heads {
            let b = t / d.heads;
            for i in 0..d.queries {
                let end = mask.visible(b, i, &d);
                let s: Vec<f64> = (0..end)
                    .map(|j| {
                        (0..d.dim)
                            .map(|c| {
                                q[(t * d.queries + i) * d.dim + c] * k[(t * d.keys + j) * d.dim + c]
                            })
                            .sum::<f64>()
                            * scale
                    })
                    .collect();
                let max = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
                let z: f64 = e.iter().sum();
                for c in 0..d.dim {
                    out[(t * d.queries + i) * d.dim + c] = (0..end)
                        .map(|j| e[j] / z * v[(t * d.keys + j) * d.dim + c])
                        .sum();
                }
            }
        }
        out
    }

    fn cases() -> Vec<(Dims, bool, Option<Vec<usize>>)> {
        let d = |batch, heads, queries, keys, dim| Dims {
            batch,
            heads,
            queries,
            keys,
            dim,
        };
        vec![
            (d(1, 1, 1, 1, 1), false, None),
            (d(2, 3, 5, 5, 4), false, None),
            (d(2, 2, 7, 7, 3), true, None),
            (d(3, 2, 4, 9, 5), false, Some(vec![9, 3, 0])),
            (d(2, 1, 6, 6, 33), true, Some(vec![4, 6])),
            (d(1, 2, 13, 17, 16), false, None),
        ]
    }

    #[test]
    fn forward_equals_the_definition_and_probabilities_sum_to_one() {
        for (d, causal, lengths) in cases() {
            let mask = Mask {
                causal,
                key_lengths: lengths.as_deref(),
            };
            let t = d.batch * d.heads;
            let [q, k, v] = inputs(&d, 1);
            let mut out = vec![f32::NAN; q.len()];
            let mut p = vec![f32::NAN; t * d.queries * d.keys];
            forward((&q, &k, &v), d, mask, &mut out, &mut p);
            let want = reference(&wide(&q), &wide(&k), &wide(&v), d, mask);
            for (g, w) in out.iter().zip(&want) {
                assert!((*g as f64 - w).abs() < FORWARD_TOL, "{d:?}: {g} vs {w}");
            }
            for (r, row) in p.chunks(d.keys).enumerate() {
                let (b, i) = (r / (d.heads * d.queries), r % d.queries);
                let end = mask.visible(b, i, &d);
                let sum: f64 = row.iter().map(|&x| x as f64).sum();
                assert!(row[end..].iter().all(|&x| x == 0.0), "{d:?}: masked keys");
                let want = if end == 0 { 0.0 } else { 1.0 };
                assert!((sum - want).abs() < 1e-6, "{d:?}: row sums to {sum}");
            }
        }
    }

    /// Every gradient against central differences of the `f64` reference, for the loss
    /// `Σ out ⊙ w` with fixed weights `w`.
    #[test]
    fn gradients_equal_finite_differences() {
        for (d, causal, lengths) in cases() {
            let mask = Mask {
                causal,
                key_lengths: lengths.as_deref(),
            };
            let t = d.batch * d.heads;
            let [q, k, v] = inputs(&d, 4);
            let w = values(q.len(), 7);
            let mut out = vec![0.0; q.len()];
            let mut p = vec![0.0; t * d.queries * d.keys];
            forward((&q, &k, &v), d, mask, &mut out, &mut p);
            let (mut dq, mut dk, mut dv) = (
                vec![f32::NAN; q.len()],
                vec![f32::NAN; k.len()],
                vec![f32::NAN; v.len()],
            );
            backward((&q, &k, &v), &p, &w, d, (&mut dq, &mut dk, &mut dv));
            let (q64, k64, v64, w64) = (wide(&q), wide(&k), wide(&v), wide(&w));
            let loss = |q: &[f64], k: &[f64], v: &[f64]| -> f64 {
                reference(q, k, v, d, mask)
                    .iter()
                    .zip(&w64)
                    .map(|(o, w)| o * w)
                    .sum()
            };
            let grads = [("q", &dq), ("k", &dk), ("v", &dv)];
            for (slot, (which, grad)) in grads.into_iter().enumerate() {
                for (i, &g) in grad.iter().enumerate() {
                    let mut ins = [q64.clone(), k64.clone(), v64.clone()];
                    ins[slot][i] += H;
                    let up = loss(&ins[0], &ins[1], &ins[2]);
                    ins[slot][i] -= 2.0 * H;
                    let down = loss(&ins[0], &ins[1], &ins[2]);
                    let fd = (up - down) / (2.0 * H);
                    let tol = GRAD_TOL.max(1e-5 * fd.abs()) + 2e-6;
                    assert!(
                        (g as f64 - fd).abs() < tol,
                        "{d:?} causal {causal}: d{which}[{i}] = {g}, finite difference {fd}"
                    );
                }
            }
        }
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let d = Dims {
            batch: 4,
            heads: 3,
            queries: 20,
            keys: 20,
            dim: 8,
        };
        let t = d.batch * d.heads;
        let [q, k, v] = inputs(&d, 1);
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| {
                    let (mut o, mut p) = (vec![0.0; q.len()], vec![0.0; t * 400]);
                    forward((&q, &k, &v), d, Mask::default(), &mut o, &mut p);
                    let (mut a, mut b, mut c) =
                        (vec![0.0; q.len()], vec![0.0; k.len()], vec![0.0; v.len()]);
                    backward((&q, &k, &v), &p, &o, d, (&mut a, &mut b, &mut c));
                    (o, a, b, c)
                })
        };
        assert_eq!(run(1), run(3));
    }
}
