//! Helpers shared by tl-head's integration tests.

use ndarray::Array2;

/// The registry's `sklearn-digits` (fetched by `cargo xtask test` first): 8-bit pixels
/// (the loader scaled scikit-learn's 0–16 to 0–255) `[1797, 64]` and the digit of each row.
pub fn digits_u8() -> (Array2<u8>, Vec<u32>) {
    let home = tl_core::home::tl_home().unwrap();
    let ds = tl_hub::Registry::builtin()
        .unwrap()
        .get("sklearn-digits")
        .unwrap()
        .load_dataset(&home)
        .expect("run `cargo xtask fetch-models sklearn-digits`");
    let mut x = Array2::<u8>::zeros((ds.rows.len(), 64));
    for (mut row, r) in x.rows_mut().into_iter().zip(&ds.rows) {
        let tl_data::Content::Pixels { data, .. } = &r.content else {
            panic!("pixels")
        };
        row.assign(&ndarray::ArrayView1::from(&data[..]));
    }
    (x, ds.rows.iter().map(|r| r.labels[0].unwrap()).collect())
}
