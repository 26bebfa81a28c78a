//! Faults a run must survive: `SIGKILL` in the middle of a training checkpoint, a second
//! run into the same directory, and the disk filling up during extraction and training.
//! Each leaves nothing half-written visible, and the rerun gives the bytes of a run that
//! was never disturbed.

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

mod common;
use common::{ok_json, tl};

/// How long a run may take to reach its pause point.
const PAUSE_TIMEOUT: Duration = Duration::from_secs(600);

fn train_args(out: &Path) -> Vec<String> {
    [
        "--json",
        "train",
        "--data",
        "sklearn-digits",
        "--image-size",
        "64",
        "--head",
        "mlp",
        "--hidden",
        "32",
        "--epochs",
        "4",
        "--seed",
        "11",
        "--out",
    ]
    .into_iter()
    .map(String::from)
    .chain([out.display().to_string()])
    .collect()
}

fn run(args: &[String]) -> std::process::Output {
    tl(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Starts `tl` paused at the fault point `point` (see `tl_core::fault`) and returns it
/// once it has printed that it is there.
fn paused_at(args: &[String], point: &str) -> std::process::Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tl"))
        .args(args)
        .env("TL_OFFLINE", "1")
        .env(tl_core::fault::PAUSE_AT, point)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tl");
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&seen).contains("tl: paused at") {
                let _ = tx.send(Ok(()));
                // Keep draining so that the process never blocks on a full pipe.
                while matches!(stderr.read(&mut buf), Ok(n) if n > 0) {}
                return;
            }
        }
        let _ = tx.send(Err(String::from_utf8_lossy(&seen).into_owned()));
    });
    match rx.recv_timeout(PAUSE_TIMEOUT) {
        Ok(Ok(())) => child,
        Ok(Err(stderr)) => panic!("tl ended before pausing at {point}: {stderr}"),
        Err(_) => {
            let _ = child.kill();
            panic!("tl did not reach {point} in {PAUSE_TIMEOUT:?}")
        }
    }
}

/// `SIGKILL` (what `Child::kill` sends on Unix), then reaped.
fn kill(mut child: std::process::Child) {
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());
}

fn weights(out: &Path) -> Vec<u8> {
    std::fs::read(out.join("weights.safetensors")).unwrap()
}

/// Killed while writing epoch 2's checkpoint (its weights written but not yet renamed;
/// or every tensor file written and `optimizer.json` not yet renamed), the run resumes
/// from epoch 1's checkpoint and ends with the bytes of an uninterrupted run. A second
/// run into the directory while the first holds it fails at once, naming it.
#[test]
fn a_run_killed_while_checkpointing_resumes_to_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    ok_json(&run(&train_args(&whole)));
    for (i, point) in ["write:weights-0002.safetensors", "write:optimizer.json#2"]
        .into_iter()
        .enumerate()
    {
        let out = dir.path().join(format!("killed-{i}"));
        let args = train_args(&out);
        let child = paused_at(&args, point);

        // The directory is held: a second run fails clearly and writes nothing.
        let second = run(&args);
        let err = String::from_utf8_lossy(&second.stderr);
        assert!(!second.status.success());
        assert!(
            err.contains(&format!("`{}` is in use by another run", out.display())),
            "{err}"
        );
        kill(child);

        let state: serde_json::Value =
            tl_core::io::read_json(&out.join("checkpoint/optimizer.json")).unwrap();
        assert_eq!(
            state["epochs_done"], 1,
            "{point}: epoch 1 is the last published"
        );
        assert!(!out.join("weights.safetensors").exists());

        let v = ok_json(&run(&args));
        assert_eq!(v["metrics"]["training"]["resumed_from_epoch"], 1, "{point}");
        assert_eq!(
            weights(&out),
            weights(&whole),
            "{point}: resumed bytes differ"
        );
        let leftovers: Vec<PathBuf> = walk(&out)
            .into_iter()
            .filter(|p| p.to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{point}: {leftovers:?}");
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Runs `tl args` with every file it writes limited to `kib` KiB (`ulimit -f`), as a disk
/// that fills up at that size: writes beyond it fail with "File too large" (EFBIG; the
/// signal that would kill the process is ignored, as a full disk sends none).
fn tl_limited(kib: u64, args: &[String], env: &[(&str, &Path)]) -> std::process::Output {
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(format!("ulimit -f {kib}; trap '' XFSZ; exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_tl"))
        .args(args)
        .env("TL_OFFLINE", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run tl under ulimit")
}

fn tl_in(home: &Path, args: &[String]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tl"))
        .args(args)
        .env("TL_OFFLINE", "1")
        .env("TL_HOME", home)
        .output()
        .expect("run tl")
}

/// A private TL_HOME that shares the fetched runtimes, models and datasets but computes
/// its own features.
fn private_home() -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let real = tl_core::home::tl_home().unwrap();
    for sub in ["runtimes", "models", "assets", "datasets"] {
        std::os::unix::fs::symlink(real.join(sub), home.path().join(sub)).unwrap();
    }
    home
}

fn temporaries(dir: &Path) -> Vec<PathBuf> {
    walk(dir)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect()
}

fn extract_args(out: &Path) -> Vec<String> {
    [
        "--json",
        "extract",
        "--data",
        "sklearn-digits",
        "--image-size",
        "32",
        "--out",
    ]
    .into_iter()
    .map(String::from)
    .chain([out.display().to_string()])
    .collect()
}

/// The disk fills up during extraction: first before a feature part can be written
/// (5.3 MB, limit 2 MiB), then after the parts, before the 9.2 MB output (limit 7000 KiB).
/// Each time the error names the file, no partial file is left visible, and a rerun with
/// space completes with the features of an undisturbed run (the second reusing the
/// cached parts).
#[test]
fn extraction_on_a_full_disk_fails_clearly_and_a_rerun_completes() {
    let reference = private_home();
    let want_out = reference.path().join("out");
    ok_json(&tl_in(reference.path(), &extract_args(&want_out)));
    let want = std::fs::read(want_out.join("features.safetensors")).unwrap();

    for (kib, cached_after) in [(2048, 0), (7000, 1797)] {
        let home = private_home();
        let out = home.path().join("out");
        let args = extract_args(&out);
        let full = tl_limited(kib, &args, &[("TL_HOME", home.path())]);
        let err = String::from_utf8_lossy(&full.stderr);
        assert!(!full.status.success(), "limit {kib} KiB: the run succeeded");
        assert!(
            err.contains("File too large") && err.contains(".safetensors"),
            "limit {kib} KiB: {err}"
        );
        assert!(
            temporaries(home.path()).is_empty(),
            "{:?}",
            temporaries(home.path())
        );
        assert!(!out.join("features.safetensors").exists());

        let v = ok_json(&tl_in(home.path(), &args));
        assert_eq!(v["report"]["cached"], cached_after, "limit {kib} KiB");
        assert_eq!(
            std::fs::read(out.join("features.safetensors")).unwrap(),
            want,
            "limit {kib} KiB: the rerun's features differ"
        );
    }
}

/// The disk fills up during training, at the first checkpoint (a 2,048-unit MLP's weights
/// are 10.5 MB; the limit is 7000 KiB, enough for the cached feature parts): a clear
/// error naming the file, no partial file visible, and a rerun with space gives the bytes
/// of an undisturbed run.
#[test]
fn training_on_a_full_disk_fails_clearly_and_a_rerun_completes() {
    let dir = tempfile::tempdir().unwrap();
    let args = |out: &Path| {
        let mut a = train_args(out);
        let hidden = a.iter().position(|s| s == "--hidden").unwrap();
        a[hidden + 1] = "2048".into();
        let epochs = a.iter().position(|s| s == "--epochs").unwrap();
        a[epochs + 1] = "2".into();
        a
    };
    let whole = dir.path().join("whole");
    ok_json(&run(&args(&whole)));

    let out = dir.path().join("full");
    let full = tl_limited(7000, &args(&out), &[]);
    let err = String::from_utf8_lossy(&full.stderr);
    assert!(!full.status.success(), "the run succeeded");
    assert!(
        err.contains("File too large") && err.contains("weights-0001.safetensors"),
        "{err}"
    );
    assert!(temporaries(&out).is_empty(), "{:?}", temporaries(&out));
    assert!(!out.join("weights.safetensors").exists());
    assert!(!out.join("checkpoint/optimizer.json").exists());

    ok_json(&run(&args(&out)));
    assert_eq!(weights(&out), weights(&whole), "the rerun's weights differ");
}
