//! sha256 content hashes, hex encoded.

use std::{fs::File, io::Read, path::Path};

use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// The lowercase hex sha256 of `bytes`.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The lowercase hex sha256 of a file, streamed in 1 MiB chunks.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(|e| Error::io("cannot open", path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| Error::io("cannot read", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// An incremental sha256 for data that arrives in pieces (downloads).
#[derive(Debug, Default, Clone)]
pub struct Hasher(Sha256);

impl Hasher {
    /// A new, empty hasher.
    pub fn new() -> Self {
        Self::default()
    }
    /// Feeds more bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    /// The lowercase hex digest.
    pub fn finish(self) -> String {
        hex::encode(self.0.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        // Reference digests from `printf '' | sha256sum` and `printf abc | sha256sum`.
        assert_eq!(
            sha256_bytes(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_bytes(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn file_and_incremental_agree_with_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let mut h = Hasher::new();
        for chunk in data.chunks(12_345) {
            h.update(chunk);
        }
        let whole = sha256_bytes(&data);
        assert_eq!(sha256_file(&path).unwrap(), whole);
        assert_eq!(h.finish(), whole);
    }

    #[test]
    fn missing_file_names_path() {
        let err = sha256_file(Path::new("/nonexistent/xyz")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/xyz"), "{err}");
    }
}
