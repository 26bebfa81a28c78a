//! Headless Chromium, to check that a report renders: the DOM as the browser parsed it,
//! and a screenshot. Used by the tests of `tl-eval` and `tl-cli`; `cargo xtask test`
//! installs Debian's `chromium-headless-shell` when no Chromium is found.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::{Error, Result};

/// The executables tried, in order, after `TL_CHROMIUM`.
pub const CANDIDATES: [&str; 4] = [
    "chromium-headless-shell",
    "chromium",
    "chromium-browser",
    "google-chrome",
];

/// A located Chromium executable.
#[derive(Debug, Clone)]
pub struct Chromium {
    pub path: PathBuf,
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

static PROFILE: AtomicUsize = AtomicUsize::new(0);

impl Chromium {
    /// `TL_CHROMIUM`, else the first of [`CANDIDATES`] on `PATH`.
    pub fn find() -> Result<Self> {
        if let Some(p) = std::env::var_os("TL_CHROMIUM") {
            let path = PathBuf::from(p);
            return if path.is_file() {
                Ok(Self { path })
            } else {
                Err(Error::Browser(format!(
                    "TL_CHROMIUM={} is not a file",
                    path.display()
                )))
            };
        }
        CANDIDATES
            .iter()
            .find_map(|n| on_path(n))
            .map(|path| Self { path })
            .ok_or_else(|| {
                Error::Browser(format!(
                    "no Chromium found (tried TL_CHROMIUM and {} on PATH); `cargo xtask test` installs Debian's chromium-headless-shell, or run `apt-get install chromium-headless-shell`",
                    CANDIDATES.join(", ")
                ))
            })
    }

    fn run(&self, page: &Path, args: &[String]) -> Result<Vec<u8>> {
        let page = std::fs::canonicalize(page)
            .map_err(|e| Error::Browser(format!("{}: {e}", page.display())))?;
        let profile = std::env::temp_dir().join(format!(
            "tl-chromium-{}-{}",
            std::process::id(),
            PROFILE.fetch_add(1, Ordering::Relaxed)
        ));
        let out = Command::new(&self.path)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--hide-scrollbars",
                &format!("--user-data-dir={}", profile.display()),
            ])
            .args(args)
            .arg(format!("file://{}", page.display()))
            .output()
            .map_err(|e| Error::Browser(format!("{}: {e}", self.path.display())))?;
        let _ = std::fs::remove_dir_all(&profile);
        if !out.status.success() {
            return Err(Error::Browser(format!(
                "{} failed on {} ({}): {}",
                self.path.display(),
                page.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(out.stdout)
    }

    /// The page's DOM after Chromium parsed and loaded it, serialised.
    pub fn dump_dom(&self, page: &Path) -> Result<String> {
        let out = self.run(page, &["--dump-dom".to_string()])?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// Renders the page into a PNG of `width` × `height` pixels.
    pub fn screenshot(&self, page: &Path, png: &Path, width: u32, height: u32) -> Result<()> {
        self.run(
            page,
            &[
                format!("--screenshot={}", png.display()),
                format!("--window-size={width},{height}"),
            ],
        )?;
        if png.is_file() {
            Ok(())
        } else {
            Err(Error::Browser(format!(
                "{} wrote no screenshot of {}",
                self.path.display(),
                page.display()
            )))
        }
    }
}

/// Whether a report's DOM (as [`Chromium::dump_dom`] gives it) shows the confusion
/// matrix `counts`: every cell present with its count, and printing it. The error names
/// the first cell that is not.
pub fn check_confusion_cells(dom: &str, counts: &[Vec<u64>]) -> std::result::Result<(), String> {
    if !dom.contains("data-plot=\"confusion\"") {
        return Err("no confusion-matrix plot".into());
    }
    for (i, row) in counts.iter().enumerate() {
        for (j, v) in row.iter().enumerate() {
            let cell = format!("data-true=\"{i}\" data-predicted=\"{j}\" data-count=\"{v}\"");
            let at = dom
                .find(&cell)
                .ok_or_else(|| format!("cell {i},{j} ({v}) missing"))?;
            let end = at + dom[at..].find("</g>").unwrap_or(dom.len() - at);
            if !dom[at..end].contains(&format!(">{v}</text>")) {
                return Err(format!("cell {i},{j} does not print {v}"));
            }
        }
    }
    Ok(())
}
