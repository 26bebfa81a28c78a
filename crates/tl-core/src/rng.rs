//! Seeded random streams.
//!
//! Every random choice in `tl` draws from a `ChaCha8Rng` seeded from the run seed
//! and a named stream ("split", "init", "dropout", ...), so adding a new use of
//! randomness never shifts the numbers another use sees.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

/// A generator for `stream` under the run `seed`: same inputs, same numbers, on every machine.
pub fn seeded_rng(seed: u64, stream: &str) -> ChaCha8Rng {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(stream.as_bytes());
    let digest: [u8; 32] = h.finalize().into();
    ChaCha8Rng::from_seed(digest)
}

/// `k` of the indices `0..n` (all of them when `n ≤ k`), drawn from `stream` of `seed`,
/// in increasing order.
pub fn sample_indices(n: usize, k: usize, seed: u64, stream: &str) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    if n <= k {
        return idx;
    }
    rand::seq::SliceRandom::shuffle(&mut idx[..], &mut seeded_rng(seed, stream));
    idx.truncate(k);
    idx.sort_unstable();
    idx
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(seeded_rng(1, "a"), |r, _: u64| Some(r.random()))
            .collect();
        let a2: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(seeded_rng(1, "a"), |r, _: u64| Some(r.random()))
            .collect();
        let b: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(seeded_rng(1, "b"), |r, _: u64| Some(r.random()))
            .collect();
        let c: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(seeded_rng(2, "a"), |r, _: u64| Some(r.random()))
            .collect();
        assert_eq!(a, a2);
        assert_ne!(a, b);
        assert_ne!(a, c);
    }
}
