//! Opening data files: plain, `.gz`, `.bz2`, or a member of a `.zip`.

use std::{
    fs::File,
    io::{BufReader, Read},
    path::Path,
};

use crate::{Error, Result};

/// A reader over the decompressed bytes of `path` (by extension: `.gz`, `.bz2`, else plain).
pub fn open(path: &Path) -> Result<Box<dyn Read>> {
    let file = File::open(path).map_err(|e| tl_core::Error::io("cannot open", path, e))?;
    let reader = BufReader::new(file);
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    Ok(if name.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(reader))
    } else if name.ends_with(".bz2") {
        Box::new(bzip2::read::MultiBzDecoder::new(reader))
    } else {
        Box::new(reader)
    })
}

/// The whole decompressed content of `path`, or of `member` inside the zip `path`.
pub fn read_all(path: &Path, member: Option<&str>) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    match member {
        None => {
            open(path)?
                .read_to_end(&mut buf)
                .map_err(|e| Error::format(path, None, format!("cannot decompress: {e}")))?;
        }
        Some(m) => {
            let file = File::open(path).map_err(|e| tl_core::Error::io("cannot open", path, e))?;
            let mut zip = zip::ZipArchive::new(file)
                .map_err(|e| Error::format(path, None, format!("not a zip archive: {e}")))?;
            let names: Vec<String> = zip.file_names().map(str::to_string).collect();
            let mut entry = zip.by_name(m).map_err(|_| {
                Error::format(
                    path,
                    None,
                    format!(
                        "the archive has no member `{m}` (members: {})",
                        names.join(", ")
                    ),
                )
            })?;
            entry.read_to_end(&mut buf).map_err(|e| {
                Error::format(path, Some(m.to_string()), format!("cannot read: {e}"))
            })?;
        }
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn reads_plain_gz_bz2_and_zip_members() {
        let dir = tempfile::tempdir().unwrap();
        let text = b"a,b\n1,2\n";
        std::fs::write(dir.path().join("t.csv"), text).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(text).unwrap();
        std::fs::write(dir.path().join("t.csv.gz"), gz.finish().unwrap()).unwrap();
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
        bz.write_all(text).unwrap();
        std::fs::write(dir.path().join("t.csv.bz2"), bz.finish().unwrap()).unwrap();
        let mut zip = zip::ZipWriter::new(File::create(dir.path().join("t.zip")).unwrap());
        zip.start_file("inner.csv", zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(text).unwrap();
        zip.finish().unwrap();
        for f in ["t.csv", "t.csv.gz", "t.csv.bz2"] {
            assert_eq!(read_all(&dir.path().join(f), None).unwrap(), text, "{f}");
        }
        assert_eq!(
            read_all(&dir.path().join("t.zip"), Some("inner.csv")).unwrap(),
            text
        );
        let err = read_all(&dir.path().join("t.zip"), Some("other.csv"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("other.csv") && err.contains("inner.csv"),
            "{err}"
        );
        std::fs::write(dir.path().join("bad.gz"), b"not gzip").unwrap();
        let err = read_all(&dir.path().join("bad.gz"), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.gz"), "{err}");
    }
}
