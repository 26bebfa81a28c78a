//! Named pause points for fault tests.
//!
//! A test that must kill a process at an exact moment (between the files of a checkpoint,
//! after a temporary file is written and before its rename) starts it with
//! `TL_PAUSE_AT=<point>` or `TL_PAUSE_AT=<point>#<k>` (the k-th time, from 1). At that
//! point the process prints `tl: paused at <point>` on standard error and sleeps until it
//! is killed: the test then sends `SIGKILL` ([`std::process::Child::kill`]) and checks what
//! a rerun makes of what was left. Without the variable a point costs one environment
//! lookup, and it never changes what a run computes.

use std::sync::Mutex;

/// The variable naming the point to pause at.
pub const PAUSE_AT: &str = "TL_PAUSE_AT";

static SEEN: Mutex<Vec<(String, u32)>> = Mutex::new(Vec::new());

/// Pauses forever here if `TL_PAUSE_AT` names `point` (and this is its k-th pass).
pub fn point(point: &str) {
    let Ok(want) = std::env::var(PAUSE_AT) else {
        return;
    };
    let (name, k) = match want.split_once('#') {
        Some((n, k)) => (n.to_string(), k.parse::<u32>().unwrap_or(1)),
        None => (want.clone(), 1),
    };
    if name != point {
        return;
    }
    let pass = {
        let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
        match seen.iter_mut().find(|(n, _)| *n == name) {
            Some((_, c)) => {
                *c += 1;
                *c
            }
            None => {
                seen.push((name, 1));
                1
            }
        }
    };
    if pass == k {
        eprintln!("tl: paused at {want}");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}
