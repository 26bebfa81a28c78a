//! The real GloVe 6B 50-d vectors: known values (ASSETS.md: "the" begins 0.418, 0.24968)
//! and nearest neighbours (king → prince, queen), which also checks the Fortran-order read.

use tl_features::wordvec::{Weighting, WordVectors};

fn glove() -> WordVectors {
    let home = tl_core::home::tl_home().unwrap();
    let dir = tl_core::home::asset_dir(&home, "glove-6b-50d");
    assert!(
        dir.join("fetched.json").is_file(),
        "run `cargo xtask fetch-models glove-6b-50d`"
    );
    WordVectors::load(&dir.join("glove_6B_50d_emb.npy"), &dir.join("vocab.txt")).unwrap()
}

#[test]
fn known_vector_and_neighbours() {
    let g = glove();
    assert_eq!(g.vectors.dim(), (400_000, 50));
    let the = g.get("the").unwrap();
    assert!(
        (the[0] - 0.418).abs() < 1e-6 && (the[1] - 0.24968).abs() < 1e-6,
        "{:?}",
        &the.to_vec()[..2]
    );
    let king = g.get("king").unwrap();
    let cos = |w: &str| {
        let v = g.get(w).unwrap();
        let dot: f32 = king.iter().zip(v.iter()).map(|(a, b)| a * b).sum();
        dot / (king.dot(&king).sqrt() * v.dot(&v).sqrt())
    };
    for near in ["prince", "queen"] {
        for far in ["espresso", "migraine", "rocket"] {
            assert!(
                cos(near) > cos(far) + 0.2,
                "king~{near} {} vs king~{far} {}",
                cos(near),
                cos(far)
            );
        }
    }
    let e = g.embed(&["The king and the queen.", "zzqxv qqzzv"], Weighting::Mean);
    assert_eq!(e.empty_rows, 1);
    assert_eq!(e.oov_tokens, 2);
}
