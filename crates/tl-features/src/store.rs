//! The content-addressed feature store.
//!
//! One directory per cache key under `TL_HOME/features/<key>/`: `meta.json` (everything
//! the key covers, plus width and row count) and shards `part-NNNNN.safetensors`, each
//! with `features` [n, d] (f32) and `hashes` [n, 32] (the rows' sha256 content hashes,
//! raw bytes), and in its metadata `crc32`, the CRC-32 of the two tensors' data, checked on
//! every read: a part that fails it is not served (its rows are computed again; see
//! [`FeatureStore::corrupt`]). Parts written before checksums have no `crc32` and are
//! read as they are. The key covers the model's sha256, the node, the pooling, every
//! preprocessing setting and the version of the code that applies them
//! ([`PREPROCESSING_VERSION`]), the ONNX Runtime version, the provider and the precision,
//! so features of different settings never share an entry. Labels are never stored: the
//! same image has the same features in every dataset, and is computed once.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The version of the preprocessing code (decoding, resizing, cropping, tokenizing): raised
/// whenever a change makes the same input and settings give other tensors, so that features
/// computed before are never served after. 1: the centre crop floored `(side - size) / 2`;
/// 2: it rounds half to even, as torchvision's `CenterCrop`.
pub const PREPROCESSING_VERSION: u32 = 2;

/// Everything a cache key covers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreKey {
    pub model_sha256: String,
    pub node: String,
    pub pooling: String,
    /// The preprocessing, as the model's input contract with the size actually used.
    pub preprocessing: serde_json::Value,
    /// [`PREPROCESSING_VERSION`] when the features were computed (0 in stores written
    /// before the field existed).
    #[serde(default)]
    pub preprocessing_version: u32,
    pub onnxruntime_version: String,
    pub provider: String,
    pub precision: String,
}

impl StoreKey {
    /// The directory name: the first 32 hex digits of the sha256 of the key's canonical JSON.
    pub fn id(&self) -> String {
        let json = serde_json::to_vec(self).expect("a key serialises");
        tl_core::hash::sha256_bytes(&json)[..32].to_string()
    }
}

/// `meta.json` of a store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreMeta {
    pub schema_version: u32,
    pub key: StoreKey,
    pub width: usize,
    pub rows: usize,
    pub parts: usize,
    pub tl_version: String,
}

/// An open feature store.
#[derive(Debug)]
pub struct FeatureStore {
    dir: PathBuf,
    key: StoreKey,
    width: Option<usize>,
    /// content hash (hex) → (part, row in part)
    index: HashMap<String, (usize, usize)>,
    parts: usize,
    /// Parts that failed their checksum (or could not be parsed) when opened, and why.
    corrupt: Vec<(PathBuf, String)>,
}

fn part_name(i: usize) -> String {
    format!("part-{i:05}.safetensors")
}

impl FeatureStore {
    /// Opens (or prepares) the store for `key` under `home/features/`, indexing its shards.
    pub fn open(home: &Path, key: StoreKey) -> Result<Self> {
        let dir = home.join("features").join(key.id());
        let mut store = Self {
            dir,
            key,
            width: None,
            index: HashMap::new(),
            parts: 0,
            corrupt: Vec::new(),
        };
        if let Ok(meta) = tl_core::io::read_json::<StoreMeta>(&store.dir.join("meta.json")) {
            if meta.key != store.key {
                return Err(Error::Store(format!(
                    "`{}` holds features for other settings (a key collision or a hand-edited meta.json)",
                    store.dir.display()
                )));
            }
            store.width = Some(meta.width);
        }
        // Shards are published by rename, so every part file present is complete; one
        // whose bytes changed since is left out, and its rows count as missing.
        while store.dir.join(part_name(store.parts)).is_file() {
            let path = store.dir.join(part_name(store.parts));
            let (hashes, features) = match read_part(&path) {
                Ok(part) => part,
                Err(Error::Corrupt { path, reason }) => {
                    store.corrupt.push((path, reason));
                    store.parts += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            store.width.get_or_insert(features.ncols());
            for (r, h) in hashes.into_iter().enumerate() {
                store.index.entry(h).or_insert((store.parts, r));
            }
            store.parts += 1;
        }
        Ok(store)
    }

    /// Parts that failed verification when the store was opened, and why: their rows are
    /// not served (an extraction computes them again into a new part).
    pub fn corrupt(&self) -> &[(PathBuf, String)] {
        &self.corrupt
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key.
    pub fn key(&self) -> &StoreKey {
        &self.key
    }

    /// Whether the features of this content hash are stored.
    pub fn contains(&self, hash: &str) -> bool {
        self.index.contains_key(hash)
    }

    /// Number of distinct rows stored.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Feature width, once anything is stored.
    pub fn width(&self) -> Option<usize> {
        self.width
    }

    /// Appends one shard atomically and updates `meta.json`.
    pub fn append(&mut self, hashes: &[String], features: &Array2<f32>) -> Result<()> {
        if hashes.len() != features.nrows() {
            return Err(Error::Store(format!(
                "{} hashes for {} feature rows",
                hashes.len(),
                features.nrows()
            )));
        }
        if let Some(w) = self.width
            && w != features.ncols()
        {
            return Err(Error::Store(format!(
                "width {} does not match the store's {w}",
                features.ncols()
            )));
        }
        tl_core::io::create_dir_all(&self.dir)?;
        // Another process may have appended parts since this store was opened (parallel
        // extractions of different rows): under the store's lock, take the next free
        // part number, so that no part is ever replaced by one holding other rows.
        let _lock = tl_core::io::FileLock::acquire(&self.dir.join("append.lock"))?;
        while self.dir.join(part_name(self.parts)).is_file() {
            self.parts += 1;
        }
        let path = self.dir.join(part_name(self.parts));
        tl_core::io::atomic_write(&path, &encode_part(hashes, features)?)?;
        for (r, h) in hashes.iter().enumerate() {
            self.index.entry(h.clone()).or_insert((self.parts, r));
        }
        self.parts += 1;
        self.width = Some(features.ncols());
        tl_core::io::write_json(
            &self.dir.join("meta.json"),
            &StoreMeta {
                schema_version: 1,
                key: self.key.clone(),
                width: features.ncols(),
                rows: self.index.len(),
                parts: self.parts,
                tl_version: tl_core::TL_VERSION.to_string(),
            },
        )?;
        Ok(())
    }

    /// The features of `hashes`, in that order (an error names the first one missing).
    pub fn gather(&self, hashes: &[String]) -> Result<Array2<f32>> {
        let width = self.width.unwrap_or(0);
        let mut out = Array2::<f32>::zeros((hashes.len(), width));
        let mut cache: HashMap<usize, Array2<f32>> = HashMap::new();
        for (i, h) in hashes.iter().enumerate() {
            let &(part, row) = self.index.get(h).ok_or_else(|| {
                Error::Store(format!(
                    "row with content hash {h} is not in `{}`",
                    self.dir.display()
                ))
            })?;
            if let std::collections::hash_map::Entry::Vacant(e) = cache.entry(part) {
                e.insert(read_part(&self.dir.join(part_name(part)))?.1);
            }
            out.row_mut(i).assign(&cache[&part].row(row));
        }
        Ok(out)
    }
}

fn encode_part(hashes: &[String], features: &Array2<f32>) -> Result<Vec<u8>> {
    let raw_hashes: Vec<u8> = hashes
        .iter()
        .map(|h| {
            hex::decode(h)
                .ok()
                .filter(|b| b.len() == 32)
                .ok_or_else(|| Error::Store(format!("`{h}` is not a sha256")))
        })
        .collect::<Result<Vec<_>>>()?
        .concat();
    let feats: Vec<u8> = features.iter().flat_map(|v| v.to_le_bytes()).collect();
    let n = hashes.len();
    let views = vec![
        (
            "features",
            safetensors::tensor::TensorView::new(
                safetensors::Dtype::F32,
                vec![n, features.ncols()],
                &feats,
            )
            .map_err(st)?,
        ),
        (
            "hashes",
            safetensors::tensor::TensorView::new(safetensors::Dtype::U8, vec![n, 32], &raw_hashes)
                .map_err(st)?,
        ),
    ];
    // One metadata entry only: with several, the HashMap's order (and so the bytes) would vary.
    let metadata = HashMap::from([(CHECKSUM_KEY.to_string(), checksum(&feats, &raw_hashes))]);
    safetensors::serialize(views, Some(metadata)).map_err(st)
}

/// The metadata key of a part's checksum.
const CHECKSUM_KEY: &str = "crc32";

/// The CRC-32 (IEEE) of a part's features then hashes data, as 8 hex digits.
fn checksum(features: &[u8], hashes: &[u8]) -> String {
    let mut h = crc32fast::Hasher::new();
    h.update(features);
    h.update(hashes);
    format!("{:08x}", h.finalize())
}

fn st(e: safetensors::SafeTensorError) -> Error {
    Error::Store(format!("safetensors: {e}"))
}

/// Reads the safetensors file `path` and hands its tensors to `read`; errors name the file.
fn with_tensors<T>(
    path: &Path,
    read: impl FnOnce(&safetensors::SafeTensors<'_>) -> std::result::Result<T, String>,
) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|e| tl_core::Error::io("cannot read", path, e))?;
    let bad = |why: String| Error::Store(format!("`{}`: {why}", path.display()));
    let t = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    read(&t).map_err(bad)
}

/// The `features` tensor, [n, d] f32.
fn features_tensor(t: &safetensors::SafeTensors<'_>) -> std::result::Result<Array2<f32>, String> {
    let f = t.tensor("features").map_err(|e| e.to_string())?;
    let [n, d] = f.shape() else {
        return Err(format!("features has shape {:?}", f.shape()));
    };
    let values = f
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect();
    Array2::from_shape_vec((*n, *d), values).map_err(|e| e.to_string())
}

/// A part's hashes and features, verified against its checksum: any failure to parse or
/// verify is [`Error::Corrupt`] (an I/O error stays one).
fn read_part(path: &Path) -> Result<(Vec<String>, Array2<f32>)> {
    let bytes = std::fs::read(path).map_err(|e| tl_core::Error::io("cannot read", path, e))?;
    let corrupt = |reason: String| Error::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let (_, header) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let t = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let h = t.tensor("hashes").map_err(|e| corrupt(e.to_string()))?;
    if let Some(expected) = header.metadata().as_ref().and_then(|m| m.get(CHECKSUM_KEY)) {
        let f = t.tensor("features").map_err(|e| corrupt(e.to_string()))?;
        let found = checksum(f.data(), h.data());
        if &found != expected {
            return Err(corrupt(format!(
                "its data has CRC-32 {found}, written as {expected}"
            )));
        }
    }
    let features = features_tensor(&t).map_err(corrupt)?;
    let n = features.nrows();
    if h.shape() != [n, 32] {
        return Err(corrupt(format!(
            "hashes has shape {:?}, expected [{n}, 32]",
            h.shape()
        )));
    }
    Ok((
        h.data().chunks_exact(32).map(hex::encode).collect(),
        features,
    ))
}

/// One store under `TL_HOME/features/`, as `tl cache ls` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct StoreSummary {
    /// The directory name (the key's id).
    pub id: String,
    pub dir: PathBuf,
    /// From `meta.json`, when it reads.
    pub key: Option<StoreKey>,
    pub width: Option<usize>,
    pub rows: Option<usize>,
    /// Part files present.
    pub parts: usize,
    /// Bytes of every file in the directory.
    pub bytes: u64,
}

/// What verifying one part found.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "reason")]
pub enum PartState {
    /// Its data matches the checksum written with it.
    Verified,
    /// Written before checksums: read as it is.
    NoChecksum,
    /// Fails its checksum or no longer parses.
    Corrupt(String),
}

/// One part's verification.
#[derive(Debug, Clone, Serialize)]
pub struct PartCheck {
    pub path: PathBuf,
    pub state: PartState,
}

/// What [`gc`] removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    /// Corrupt parts, temporary files of interrupted writes, emptied and stale stores.
    pub removed: Vec<PathBuf>,
    /// Parts renamed to close the gaps removed parts left.
    pub renumbered: usize,
    pub freed_bytes: u64,
}

/// The store directories under `home/features/`, sorted by id.
fn store_dirs(home: &Path) -> Result<Vec<PathBuf>> {
    let root = home.join("features");
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Ok(Vec::new());
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// The part files of a store directory, in part order.
fn part_files(dir: &Path) -> Vec<PathBuf> {
    let mut parts: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("part-") && n.ends_with(".safetensors"))
        })
        .collect();
    parts.sort();
    parts
}

/// Every store under `home/features/`: key, width, rows, parts and size.
pub fn list(home: &Path) -> Result<Vec<StoreSummary>> {
    Ok(store_dirs(home)?
        .into_iter()
        .map(|dir| {
            let meta = tl_core::io::read_json::<StoreMeta>(&dir.join("meta.json")).ok();
            StoreSummary {
                id: dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                parts: part_files(&dir).len(),
                bytes: tl_core::home::dir_size(&dir),
                width: meta.as_ref().map(|m| m.width),
                rows: meta.as_ref().map(|m| m.rows),
                key: meta.map(|m| m.key),
                dir,
            }
        })
        .collect())
}

/// Reads every part of the store `id` (every store when none) and checks it against its
/// checksum. An unknown `id` is an error naming it.
pub fn verify(home: &Path, id: Option<&str>) -> Result<Vec<PartCheck>> {
    let dirs: Vec<PathBuf> = match id {
        Some(id) => {
            let dir = home.join("features").join(id);
            if !dir.is_dir() {
                return Err(Error::Store(format!(
                    "no store `{id}` under `{}`",
                    home.join("features").display()
                )));
            }
            vec![dir]
        }
        None => store_dirs(home)?,
    };
    let mut out = Vec::new();
    for path in dirs.iter().flat_map(|d| part_files(d)) {
        let state = match read_part(&path) {
            Ok(_) if has_checksum(&path)? => PartState::Verified,
            Ok(_) => PartState::NoChecksum,
            Err(Error::Corrupt { reason, .. }) => PartState::Corrupt(reason),
            Err(e) => return Err(e),
        };
        out.push(PartCheck { path, state });
    }
    Ok(out)
}

/// Whether a part (that parsed) carries a checksum.
fn has_checksum(path: &Path) -> Result<bool> {
    let bytes = std::fs::read(path).map_err(|e| tl_core::Error::io("cannot read", path, e))?;
    Ok(safetensors::SafeTensors::read_metadata(&bytes)
        .ok()
        .and_then(|(_, h)| h.metadata().as_ref().map(|m| m.contains_key(CHECKSUM_KEY)))
        .unwrap_or(false))
}

/// Removes what no longer verifies (corrupt parts, then stores left without parts), stores
/// computed by an older [`PREPROCESSING_VERSION`] (never served again) and the temporary
/// files of interrupted writes, renumbering the parts that remain so that they stay
/// contiguous. Each store is changed under its append lock; run it when no
/// extraction is writing. Stores are never removed for being unused: a feature store is
/// referenced by content, not by name.
pub fn gc(home: &Path) -> Result<GcReport> {
    let mut report = GcReport::default();
    for dir in store_dirs(home)? {
        let lock = tl_core::io::FileLock::acquire(&dir.join("append.lock"))?;
        let stale = tl_core::io::read_json::<StoreMeta>(&dir.join("meta.json"))
            .is_ok_and(|m| m.key.preprocessing_version < PREPROCESSING_VERSION);
        if stale {
            report.freed_bytes += tl_core::home::dir_size(&dir);
            drop(lock);
            std::fs::remove_dir_all(&dir)
                .map_err(|e| tl_core::Error::io("cannot remove", &dir, e))?;
            report.removed.push(dir);
            continue;
        }
        let remove = |p: PathBuf, report: &mut GcReport| -> Result<()> {
            report.freed_bytes += std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            std::fs::remove_file(&p).map_err(|e| tl_core::Error::io("cannot remove", &p, e))?;
            report.removed.push(p);
            Ok(())
        };
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".tmp") {
                remove(entry.path(), &mut report)?;
            }
        }
        let mut kept = Vec::new();
        for part in part_files(&dir) {
            match read_part(&part) {
                Err(Error::Corrupt { .. }) => remove(part, &mut report)?,
                Err(e) => return Err(e),
                Ok(_) => kept.push(part),
            }
        }
        for (i, part) in kept.iter().enumerate() {
            let want = dir.join(part_name(i));
            if *part != want {
                std::fs::rename(part, &want)
                    .map_err(|e| tl_core::Error::io("cannot rename", part, e))?;
                report.renumbered += 1;
            }
        }
        if kept.is_empty() {
            report.freed_bytes += tl_core::home::dir_size(&dir);
            drop(lock);
            std::fs::remove_dir_all(&dir)
                .map_err(|e| tl_core::Error::io("cannot remove", &dir, e))?;
            report.removed.push(dir);
        }
    }
    Ok(report)
}

/// Reads a file written by [`write_matrix`].
pub fn read_matrix(path: &Path) -> Result<Array2<f32>> {
    with_tensors(path, features_tensor)
}

/// Writes a matrix as a safetensors file with one tensor, `features` [n, d], atomically.
pub fn write_matrix(path: &Path, features: &Array2<f32>) -> Result<()> {
    let bytes: Vec<u8> = features.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(
        safetensors::Dtype::F32,
        features.shape().to_vec(),
        &bytes,
    )
    .map_err(st)?;
    let data = safetensors::serialize([("features", view)], None).map_err(st)?;
    Ok(tl_core::io::atomic_write(path, &data)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(node: &str) -> StoreKey {
        StoreKey {
            model_sha256: "m".into(),
            node: node.into(),
            pooling: "mean".into(),
            preprocessing: serde_json::json!({"size": 224}),
            preprocessing_version: PREPROCESSING_VERSION,
            onnxruntime_version: "1.31.1".into(),
            provider: "cpu".into(),
            precision: "f32".into(),
        }
    }

    fn h(i: u8) -> String {
        tl_core::hash::sha256_bytes(&[i])
    }

    #[test]
    fn append_reopen_gather() {
        let home = tempfile::tempdir().unwrap();
        let mut s = FeatureStore::open(home.path(), key("a")).unwrap();
        assert!(s.is_empty());
        s.append(
            &[h(1), h(2)],
            &Array2::from_shape_vec((2, 3), vec![1., 2., 3., 4., 5., 6.]).unwrap(),
        )
        .unwrap();
        s.append(
            &[h(3)],
            &Array2::from_shape_vec((1, 3), vec![7., 8., 9.]).unwrap(),
        )
        .unwrap();
        let s = FeatureStore::open(home.path(), key("a")).unwrap();
        assert_eq!(s.len(), 3);
        let g = s.gather(&[h(3), h(1)]).unwrap();
        assert_eq!(
            g,
            Array2::from_shape_vec((2, 3), vec![7., 8., 9., 1., 2., 3.]).unwrap()
        );
        assert!(s.gather(&[h(4)]).unwrap_err().to_string().contains(&h(4)));
        // Another setting is another store.
        assert!(
            FeatureStore::open(home.path(), key("b"))
                .unwrap()
                .is_empty()
        );
        assert_ne!(key("a").id(), key("b").id());
    }

    #[test]
    fn a_flipped_byte_is_detected_and_its_rows_are_not_served() {
        let home = tempfile::tempdir().unwrap();
        let mut s = FeatureStore::open(home.path(), key("a")).unwrap();
        let x = Array2::from_shape_fn((40, 8), |(i, j)| (i * 8 + j) as f32 * 0.25);
        let hashes: Vec<String> = (0..40).map(|i| h(i as u8)).collect();
        s.append(&hashes[..20], &x.slice(ndarray::s![..20, ..]).to_owned())
            .unwrap();
        s.append(&hashes[20..], &x.slice(ndarray::s![20.., ..]).to_owned())
            .unwrap();
        let part0 = s.dir().join(part_name(0));
        let mut bytes = std::fs::read(&part0).unwrap();
        // One bit in the middle of the features data (the header is at the start).
        let mid = bytes.len() - 20 * 32 - 20 * 8 * 4 / 2;
        bytes[mid] ^= 0x10;
        std::fs::write(&part0, &bytes).unwrap();
        // Reading a part that changed is an error naming it...
        let err = s.gather(&hashes[..1]).unwrap_err().to_string();
        assert!(
            err.contains("part-00000") && err.contains("CRC-32"),
            "{err}"
        );
        // ... and reopened, the store leaves its rows out, so they are computed again.
        let s = FeatureStore::open(home.path(), key("a")).unwrap();
        assert_eq!(s.len(), 20);
        assert!(!s.contains(&hashes[0]) && s.contains(&hashes[20]));
        assert_eq!(s.corrupt().len(), 1);
        assert_eq!(s.corrupt()[0].0, part0);
        assert_eq!(
            s.gather(&hashes[20..]).unwrap(),
            x.slice(ndarray::s![20.., ..])
        );
        // A new append takes the next free part, never the corrupt one's name.
        let mut s = s;
        s.append(&hashes[..20], &x.slice(ndarray::s![..20, ..]).to_owned())
            .unwrap();
        assert!(s.dir().join(part_name(2)).is_file());
        let s = FeatureStore::open(home.path(), key("a")).unwrap();
        assert_eq!(s.len(), 40);
        assert_eq!(s.gather(&hashes).unwrap(), x);
    }

    #[test]
    fn verify_names_corrupt_parts_and_gc_removes_them_keeping_the_rest() {
        let home = tempfile::tempdir().unwrap();
        let mut s = FeatureStore::open(home.path(), key("a")).unwrap();
        let x = Array2::from_shape_fn((30, 4), |(i, j)| (i * 4 + j) as f32);
        let hashes: Vec<String> = (0..30).map(|i| h(i as u8)).collect();
        for c in 0..3 {
            let rows = c * 10..(c + 1) * 10;
            s.append(
                &hashes[rows.clone()],
                &x.slice(ndarray::s![rows, ..]).to_owned(),
            )
            .unwrap();
        }
        let dir = s.dir().to_path_buf();
        std::fs::write(dir.join(".part-00003.safetensors.1.0.tmp"), b"half").unwrap();
        let part1 = dir.join(part_name(1));
        let mut bytes = std::fs::read(&part1).unwrap();
        let at = bytes.len() - 10 * 32 - 8;
        bytes[at] ^= 0x40;
        std::fs::write(&part1, bytes).unwrap();

        let listed = list(home.path()).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].parts, listed[0].rows, listed[0].width),
            (3, Some(30), Some(4))
        );
        let checks = verify(home.path(), Some(&listed[0].id)).unwrap();
        let states: Vec<&PartState> = checks.iter().map(|c| &c.state).collect();
        assert!(matches!(
            states[..],
            [
                PartState::Verified,
                PartState::Corrupt(_),
                PartState::Verified
            ]
        ));
        assert!(
            verify(home.path(), Some("nope"))
                .unwrap_err()
                .to_string()
                .contains("nope")
        );

        let report = gc(home.path()).unwrap();
        assert_eq!(report.removed.len(), 2, "{report:?}");
        assert_eq!(report.renumbered, 1);
        assert!(
            verify(home.path(), None)
                .unwrap()
                .iter()
                .all(|c| c.state == PartState::Verified)
        );
        // The rows of the parts kept are all still served; part 1's are missing.
        let s = FeatureStore::open(home.path(), key("a")).unwrap();
        assert_eq!(s.len(), 20);
        assert_eq!(
            s.gather(&hashes[20..]).unwrap(),
            x.slice(ndarray::s![20.., ..])
        );
        assert!(!s.contains(&hashes[10]));
    }

    /// Features computed by older preprocessing code live under another key: they are never
    /// served to a current extraction, and gc removes them.
    #[test]
    fn features_of_an_older_preprocessing_are_not_served_and_gc_removes_them() {
        let home = tempfile::tempdir().unwrap();
        let old_key = StoreKey {
            preprocessing_version: PREPROCESSING_VERSION - 1,
            ..key("a")
        };
        assert_ne!(old_key.id(), key("a").id());
        let mut old = FeatureStore::open(home.path(), old_key).unwrap();
        let x = Array2::from_shape_fn((2, 3), |(i, j)| (i + j) as f32);
        old.append(&[h(1), h(2)], &x).unwrap();
        let mut current = FeatureStore::open(home.path(), key("a")).unwrap();
        assert!(!current.contains(&h(1)));
        current
            .append(&[h(1)], &x.slice(ndarray::s![..1, ..]).to_owned())
            .unwrap();

        // A meta.json of before the field reads as version 0.
        let mut meta: serde_json::Value =
            tl_core::io::read_json(&old.dir().join("meta.json")).unwrap();
        meta["key"]
            .as_object_mut()
            .unwrap()
            .remove("preprocessing_version");
        std::fs::write(old.dir().join("meta.json"), meta.to_string()).unwrap();
        let listed = list(home.path()).unwrap();
        assert_eq!(listed.len(), 2);
        assert!(
            listed
                .iter()
                .any(|s| s.key.as_ref().unwrap().preprocessing_version == 0)
        );

        let report = gc(home.path()).unwrap();
        assert_eq!(report.removed, vec![old.dir().to_path_buf()]);
        assert!(!old.dir().exists());
        let current = FeatureStore::open(home.path(), key("a")).unwrap();
        assert_eq!(
            current.gather(&[h(1)]).unwrap(),
            x.slice(ndarray::s![..1, ..])
        );
    }

    #[test]
    fn a_part_written_before_checksums_still_reads() {
        let home = tempfile::tempdir().unwrap();
        let s = FeatureStore::open(home.path(), key("a")).unwrap();
        std::fs::create_dir_all(s.dir()).unwrap();
        // The layout of before: the same tensors, no metadata.
        let feats: Vec<u8> = [1f32, 2., 3.]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let raw = hex::decode(h(7)).unwrap();
        let views = vec![
            (
                "features",
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1, 3], &feats)
                    .unwrap(),
            ),
            (
                "hashes",
                safetensors::tensor::TensorView::new(safetensors::Dtype::U8, vec![1, 32], &raw)
                    .unwrap(),
            ),
        ];
        let bytes = safetensors::serialize(views, None).unwrap();
        std::fs::write(s.dir().join(part_name(0)), bytes).unwrap();
        let s = FeatureStore::open(home.path(), key("a")).unwrap();
        assert!(s.corrupt().is_empty());
        assert_eq!(
            verify(home.path(), None).unwrap()[0].state,
            PartState::NoChecksum
        );
        assert_eq!(s.gather(&[h(7)]).unwrap().row(0).to_vec(), vec![1., 2., 3.]);
    }

    #[test]
    fn shards_are_byte_identical_for_the_same_input() {
        let f = Array2::from_shape_vec((2, 2), vec![0.5, -1.0, 3.25, 0.0]).unwrap();
        assert_eq!(
            encode_part(&[h(1), h(2)], &f).unwrap(),
            encode_part(&[h(1), h(2)], &f).unwrap()
        );
    }

    /// torchvision's normalisation constants are f32 values with long decimal forms: the
    /// key read back from meta.json must equal the key written (a 1-ulp parse error once
    /// made every MobileNetV2 store unreadable after its first use).
    #[test]
    fn a_written_matrix_reads_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        let m = Array2::from_shape_fn((3, 5), |(i, j)| (i * 5 + j) as f32 / 7.0 - 1.0);
        write_matrix(&p, &m).unwrap();
        assert_eq!(read_matrix(&p).unwrap(), m);
        std::fs::write(&p, b"not safetensors").unwrap();
        assert!(
            read_matrix(&p)
                .unwrap_err()
                .to_string()
                .contains("m.safetensors")
        );
    }

    #[test]
    fn keys_with_f32_constants_survive_the_round_trip() {
        let home = tempfile::tempdir().unwrap();
        let mut k = key("a");
        k.preprocessing = serde_json::json!({"mean": [0.485f32 * 255.0, 0.456f32 * 255.0, 0.406f32 * 255.0], "std": [58.395f32, 57.12f32, 57.375f32]});
        let mut s = FeatureStore::open(home.path(), k.clone()).unwrap();
        s.append(&[h(1)], &Array2::zeros((1, 3))).unwrap();
        let again = FeatureStore::open(home.path(), k).unwrap();
        assert_eq!(again.len(), 1);
    }

    /// Two handles opened before either writes (two processes extracting different rows)
    /// both keep their rows: the second append takes the next free part.
    #[test]
    fn concurrent_handles_never_replace_each_others_parts() {
        let home = tempfile::tempdir().unwrap();
        let mut a = FeatureStore::open(home.path(), key("a")).unwrap();
        let mut b = FeatureStore::open(home.path(), key("a")).unwrap();
        a.append(&[h(1)], &Array2::from_elem((1, 2), 1.0)).unwrap();
        b.append(&[h(2)], &Array2::from_elem((1, 2), 2.0)).unwrap();
        assert_eq!(a.gather(&[h(1)]).unwrap()[[0, 0]], 1.0);
        assert_eq!(b.gather(&[h(2)]).unwrap()[[0, 0]], 2.0);
        let c = FeatureStore::open(home.path(), key("a")).unwrap();
        assert_eq!(
            c.gather(&[h(1), h(2)]).unwrap().column(0).to_vec(),
            vec![1.0, 2.0]
        );
    }

    #[test]
    fn mismatched_widths_are_refused() {
        let home = tempfile::tempdir().unwrap();
        let mut s = FeatureStore::open(home.path(), key("a")).unwrap();
        s.append(&[h(1)], &Array2::zeros((1, 3))).unwrap();
        assert!(
            s.append(&[h(2)], &Array2::zeros((1, 4)))
                .unwrap_err()
                .to_string()
                .contains("width")
        );
    }
}
