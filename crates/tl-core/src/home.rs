//! Where `tl` keeps what it fetches and computes.
//!
//! `TL_HOME`, else `$XDG_CACHE_HOME/tl`, else `~/.cache/tl`. Inside:
//! `runtimes/`, `models/<id>/`, `datasets/<name>/`, `features/<key>/`, `downloads/`.

use std::path::PathBuf;

use crate::{Error, Result};

/// The `tl` home directory (not created here).
pub fn tl_home() -> Result<PathBuf> {
    let non_empty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(h) = non_empty("TL_HOME") {
        return Ok(PathBuf::from(h));
    }
    if let Some(x) = non_empty("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(x).join("tl"));
    }
    if let Some(h) = non_empty("HOME") {
        return Ok(PathBuf::from(h).join(".cache").join("tl"));
    }
    Err(Error::NoHome)
}

/// Total size in bytes of the regular files below `dir` (0 if it does not exist).
pub fn dir_size(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

/// `TL_HOME/runtimes/<id>`: an ONNX Runtime build (`onnxruntime`, `onnxruntime-cuda`).
pub fn logs_dir(home: &std::path::Path) -> PathBuf {
    home.join("logs")
}

/// `TL_HOME/runtimes/<id>`.
pub fn runtime_dir(home: &std::path::Path, id: &str) -> PathBuf {
    home.join("runtimes").join(id)
}

/// `TL_HOME/models/<id>`: a model's fetched and converted files.
pub fn model_dir(home: &std::path::Path, id: &str) -> PathBuf {
    home.join("models").join(id)
}

/// `TL_HOME/datasets/<name>`: a dataset's fetched files.
pub fn dataset_dir(home: &std::path::Path, name: &str) -> PathBuf {
    home.join("datasets").join(name)
}

/// `TL_HOME/assets/<id>`: other fetched files (class names, sample photos, vectors).
pub fn asset_dir(home: &std::path::Path, id: &str) -> PathBuf {
    home.join("assets").join(id)
}
