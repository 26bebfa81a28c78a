//! Finding the ONNX Runtime shared library.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// What `tl doctor` reports about the library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LibraryStatus {
    Found { path: PathBuf, source: &'static str },
    Missing { searched: Vec<PathBuf> },
}

/// Finds `libonnxruntime.so` for the runtime `runtime_id` (`onnxruntime` or `onnxruntime-cuda`).
///
/// Order: `ORT_DYLIB_PATH` (an error if it names no file), then
/// `TL_HOME/runtimes/<runtime_id>/`, then the executable's directory.
pub fn locate_library(home: &Path, runtime_id: &'static str) -> Result<PathBuf> {
    match status(home, runtime_id) {
        LibraryStatus::Found { path, .. } => Ok(path),
        LibraryStatus::Missing { searched } => Err(Error::LibraryNotFound {
            runtime: runtime_id,
            searched,
        }),
    }
}

/// Where the library is, or every place that was searched.
pub fn status(home: &Path, runtime_id: &'static str) -> LibraryStatus {
    status_with(home, runtime_id, std::env::var_os("ORT_DYLIB_PATH"))
}

/// [`status`] with the value of `ORT_DYLIB_PATH` given (tests set it without touching
/// the process environment).
fn status_with(
    home: &Path,
    runtime_id: &'static str,
    dylib: Option<std::ffi::OsString>,
) -> LibraryStatus {
    let mut searched = Vec::new();
    if let Some(p) = dylib.filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return LibraryStatus::Found {
                path: p,
                source: "ORT_DYLIB_PATH",
            };
        }
        // An explicit setting that is wrong must not be silently replaced by another library.
        return LibraryStatus::Missing { searched: vec![p] };
    }
    let dir = tl_core::home::runtime_dir(home, runtime_id);
    if let Some(p) = find_in(&dir) {
        return LibraryStatus::Found {
            path: p,
            source: "TL_HOME",
        };
    }
    searched.push(dir);
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        if let Some(p) = find_in(&exe_dir) {
            return LibraryStatus::Found {
                path: p,
                source: "beside the executable",
            };
        }
        searched.push(exe_dir);
    }
    LibraryStatus::Missing { searched }
}

/// `libonnxruntime.so.<version>` (preferred) or `libonnxruntime.so` in `dir`.
fn find_in(dir: &Path) -> Option<PathBuf> {
    let exact = dir.join(format!("libonnxruntime.so.{}", crate::ORT_VERSION));
    if exact.is_file() {
        return Some(exact);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    n == "libonnxruntime.so" || n.starts_with("libonnxruntime.so.")
                })
        })
        .collect();
    found.sort();
    found.pop()
}

/// The library's version: from ONNX Runtime's build info when it states it, else the file name.
pub(crate) fn version_of(path: &Path) -> String {
    let info = ort::info();
    if let Some(v) = info
        .split([',', ' '])
        .find_map(|part| part.trim().strip_prefix("git-branch=rel-"))
    {
        return v.to_string();
    }
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("libonnxruntime.so."))
        .map(str::to_string)
        .unwrap_or_else(|| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_versioned_library_in_home() {
        let home = tempfile::tempdir().unwrap();
        let dir = tl_core::home::runtime_dir(home.path(), "onnxruntime");
        assert!(matches!(
            status_with(home.path(), "onnxruntime", None),
            LibraryStatus::Missing { .. }
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("libonnxruntime.so.1.31.1"), b"").unwrap();
        assert_eq!(
            status_with(home.path(), "onnxruntime", None),
            LibraryStatus::Found {
                path: dir.join("libonnxruntime.so.1.31.1"),
                source: "TL_HOME",
            }
        );
        // An empty ORT_DYLIB_PATH counts as unset.
        assert!(matches!(
            status_with(home.path(), "onnxruntime", Some("".into())),
            LibraryStatus::Found {
                source: "TL_HOME",
                ..
            }
        ));
    }

    #[test]
    fn ort_dylib_path_comes_first_and_a_wrong_one_is_not_replaced() {
        let home = tempfile::tempdir().unwrap();
        let dir = tl_core::home::runtime_dir(home.path(), "onnxruntime");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("libonnxruntime.so.1.31.1"), b"").unwrap();
        let mine = home.path().join("elsewhere.so");
        std::fs::write(&mine, b"").unwrap();
        assert_eq!(
            status_with(home.path(), "onnxruntime", Some(mine.clone().into())),
            LibraryStatus::Found {
                path: mine,
                source: "ORT_DYLIB_PATH",
            }
        );
        let wrong = home.path().join("missing.so");
        assert_eq!(
            status_with(home.path(), "onnxruntime", Some(wrong.clone().into())),
            LibraryStatus::Missing {
                searched: vec![wrong]
            }
        );
    }

    #[test]
    fn a_missing_library_names_the_fetch_command_and_where_it_looked() {
        let home = tempfile::tempdir().unwrap();
        let dir = tl_core::home::runtime_dir(home.path(), "onnxruntime");
        let err = match status_with(home.path(), "onnxruntime", None) {
            LibraryStatus::Missing { searched } => Error::LibraryNotFound {
                runtime: "onnxruntime",
                searched,
            },
            found => panic!("nothing was installed, yet {found:?}"),
        }
        .to_string();
        assert!(err.contains("tl models fetch onnxruntime"), "{err}");
        assert!(err.contains(&dir.display().to_string()), "{err}");
    }
}
