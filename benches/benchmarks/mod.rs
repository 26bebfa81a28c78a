pub mod finetune;
pub mod heads;
pub mod inference;
pub mod kernels;
pub mod preprocess;

use std::path::PathBuf;

/// A fetched file under `TL_HOME`, or a panic that says which fetch provides it.
pub fn fetched(kind_dir: &str, id: &str, file: &str) -> PathBuf {
    let home = tl_core::home::tl_home().expect("TL_HOME");
    let dir = home.join(kind_dir).join(id);
    assert!(
        dir.join("fetched.json").is_file(),
        "run `cargo xtask fetch-models {id}` first"
    );
    dir.join(file)
}
