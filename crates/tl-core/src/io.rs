//! Atomic file publication and lock files.
//!
//! Writers create `<name>.<pid>.<n>.tmp` beside the destination, fsync it and
//! rename it into place: a reader sees the old file or the new one, never half of
//! either, and a crash leaves at most a stray `.tmp` file.

use std::{
    fs::{self, File, OpenOptions},
    io::{BufWriter, Write},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use crate::{Error, Result};

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh temporary path beside `dest`, unique within this process and across processes.
pub fn temp_path_for(dest: &Path) -> PathBuf {
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = dest
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    dest.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// Creates `dir` and its parents.
pub fn create_dir_all(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| Error::io("cannot create directory", dir, e))
}

/// Writes `bytes` to `dest` atomically.
pub fn atomic_write(dest: &Path, bytes: &[u8]) -> Result<()> {
    atomic_write_with(dest, |w| w.write_all(bytes))
}

/// Writes `dest` atomically through `fill`, which receives a buffered writer.
pub fn atomic_write_with(
    dest: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<()> {
    if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_all(parent)?;
    }
    let tmp = temp_path_for(dest);
    let result = (|| {
        let file = File::create(&tmp)?;
        let mut w = BufWriter::new(file);
        fill(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io("cannot write", dest, e));
    }
    if let Some(name) = dest.file_name() {
        crate::fault::point(&format!("write:{}", name.to_string_lossy()));
    }
    persist(&tmp, dest)
}

/// Renames a finished temporary file into place.
pub fn persist(tmp: &Path, dest: &Path) -> Result<()> {
    fs::rename(tmp, dest).map_err(|e| {
        let _ = fs::remove_file(tmp);
        Error::io("cannot move into place", dest, e)
    })
}

/// Serialises `value` as pretty JSON into `dest`, atomically.
pub fn write_json<T: serde::Serialize>(dest: &Path, value: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|source| Error::Json {
        path: dest.to_path_buf(),
        source,
    })?;
    bytes.push(b'\n');
    atomic_write(dest, &bytes)
}

/// Reads and deserialises a JSON file, naming the file on error.
/// A number JSON wrote as `null` (serde_json writes NaN so) reads back as NaN: use as
/// `#[serde(deserialize_with = "tl_core::io::nan_if_null")]` on `f64` fields that may be
/// NaN, so that a file a run wrote always reads back.
pub fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(<Option<f64> as serde::Deserialize>::deserialize(d)?.unwrap_or(f64::NAN))
}

pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).map_err(|e| Error::io("cannot read", path, e))?;
    serde_json::from_slice(&bytes).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// An exclusive advisory lock on a lock file, released on drop.
///
/// Used around every fetch or cache write so that two processes (or two tests)
/// that want the same entry do the work once and never interleave.
#[derive(Debug)]
pub struct FileLock {
    file: File,
    path: PathBuf,
}

/// Opens (creating it and its directory if needed) the lock file at `path`.
fn open_lock_file(path: &Path) -> Result<File> {
    if let Some(parent) = path.parent() {
        create_dir_all(parent)?;
    }
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| Error::io("cannot open lock file", path, e))
}

impl FileLock {
    /// Blocks until the lock at `path` is held by this process.
    pub fn acquire(path: &Path) -> Result<Self> {
        let file = open_lock_file(path)?;
        file.lock().map_err(|e| Error::io("cannot lock", path, e))?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Takes the lock at `path` if no other process holds it; [`Error::Busy`] (naming
    /// `dir`, what the lock guards) if one does.
    pub fn try_acquire(path: &Path, dir: &Path) -> Result<Self> {
        let file = open_lock_file(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Self {
                file,
                path: path.to_path_buf(),
            }),
            Err(fs::TryLockError::WouldBlock) => Err(Error::Busy {
                dir: dir.to_path_buf(),
                lock: path.to_path_buf(),
            }),
            Err(fs::TryLockError::Error(e)) => Err(Error::io("cannot lock", path, e)),
        }
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("sub/out.bin");
        atomic_write(&dest, b"first").unwrap();
        atomic_write(&dest, b"second").unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"second");
        let names: Vec<_> = fs::read_dir(dest.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("out.bin")]);
    }

    #[test]
    fn failed_fill_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.bin");
        atomic_write(&dest, b"kept").unwrap();
        let err = atomic_write_with(&dest, |w| {
            w.write_all(b"partial")?;
            Err(std::io::Error::other("interrupted"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("out.bin"), "{err}");
        assert_eq!(fs::read(&dest).unwrap(), b"kept");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn lock_excludes_other_holders() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let lock = FileLock::acquire(&path).unwrap();
        // A second handle on the same file cannot take the lock while the first holds it.
        let other = OpenOptions::new().write(true).open(&path).unwrap();
        assert!(other.try_lock().is_err());
        drop(lock);
        assert!(other.try_lock().is_ok());
    }

    #[test]
    fn try_acquire_fails_busy_naming_the_directory_then_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.lock");
        let held = FileLock::try_acquire(&path, dir.path()).unwrap();
        let err = FileLock::try_acquire(&path, dir.path()).unwrap_err();
        assert!(matches!(err, Error::Busy { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&format!(
                "`{}` is in use by another run",
                dir.path().display()
            )),
            "{err}"
        );
        drop(held);
        FileLock::try_acquire(&path, dir.path()).unwrap();
    }

    #[test]
    fn json_roundtrip_and_error_names_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v.json");
        write_json(&p, &vec![1, 2, 3]).unwrap();
        let v: Vec<i32> = read_json(&p).unwrap();
        assert_eq!(v, [1, 2, 3]);
        fs::write(&p, b"{not json").unwrap();
        let err = read_json::<Vec<i32>>(&p).unwrap_err();
        assert!(err.to_string().contains("v.json"), "{err}");
    }
}
