//! `tl cache ls | verify [KEY] | gc`: the feature store under `TL_HOME/features/`.

use anyhow::{Result, bail};
use clap::Subcommand;
use tl_features::store::{self, PartState};

use crate::{Global, JSON_SCHEMA_VERSION};

#[derive(Debug, Subcommand)]
pub enum CacheCmd {
    /// Every feature store: key, model, node, rows, width, parts, size.
    #[command(after_help = "Example:\n  tl cache ls")]
    Ls,
    /// Read every part (of store KEY, or of all) and check it against the CRC-32 written
    /// with it; exits 1 when a part is corrupt.
    #[command(
        after_help = "Examples:\n  tl cache verify\n  tl cache verify 3f2a9c…   # one store, by the id `tl cache ls` shows\n\n\
A corrupt part is never served: its rows are computed again by the next extraction that \
needs them. `tl cache gc` removes it."
    )]
    Verify {
        /// A store id as `tl cache ls` shows it (default: every store).
        key: Option<String>,
    },
    /// Remove corrupt parts, stores left without parts and temporary files of interrupted
    /// writes; the parts kept are renumbered. Run it when no extraction is writing.
    #[command(after_help = "Example:\n  tl cache gc")]
    Gc,
}

pub fn run(cmd: &CacheCmd, global: &Global) -> Result<()> {
    let home = global.home()?;
    match cmd {
        CacheCmd::Ls => {
            let stores = store::list(&home)?;
            if global.json {
                return print_json(serde_json::json!({ "stores": stores }));
            }
            println!(
                "{:<32} {:>8} {:>6} {:>6} {:>10}  model sha256 / node",
                "store", "rows", "width", "parts", "MB"
            );
            for s in &stores {
                let (sha, node) = s.key.as_ref().map_or(("?", "?"), |k| {
                    (
                        k.model_sha256.get(..12).unwrap_or(&k.model_sha256),
                        k.node.as_str(),
                    )
                });
                println!(
                    "{:<32} {:>8} {:>6} {:>6} {:>10.1}  {sha} / {node}",
                    s.id,
                    s.rows.map_or("?".into(), |r| r.to_string()),
                    s.width.map_or("?".into(), |w| w.to_string()),
                    s.parts,
                    s.bytes as f64 / 1e6
                );
            }
            println!(
                "{} stores in {}",
                stores.len(),
                home.join("features").display()
            );
            Ok(())
        }
        CacheCmd::Verify { key } => {
            let checks = store::verify(&home, key.as_deref())?;
            let bad = checks
                .iter()
                .filter(|c| matches!(c.state, PartState::Corrupt(_)))
                .count();
            if global.json {
                print_json(serde_json::json!({ "parts": checks, "corrupt": bad }))?;
            } else {
                for c in &checks {
                    match &c.state {
                        PartState::Corrupt(why) => {
                            println!("corrupt     {}: {why}", c.path.display())
                        }
                        PartState::NoChecksum => println!("no checksum {}", c.path.display()),
                        PartState::Verified => {}
                    }
                }
                println!("{} parts read, {bad} corrupt", checks.len());
            }
            if bad > 0 {
                bail!("{bad} corrupt parts (never served; `tl cache gc` removes them)");
            }
            Ok(())
        }
        CacheCmd::Gc => {
            let report = store::gc(&home)?;
            if global.json {
                return print_json(serde_json::to_value(&report)?);
            }
            for p in &report.removed {
                println!("removed {}", p.display());
            }
            println!(
                "{} removed, {} parts renumbered, {:.1} MB freed",
                report.removed.len(),
                report.renumbered,
                report.freed_bytes as f64 / 1e6
            );
            Ok(())
        }
    }
}

fn print_json(mut v: serde_json::Value) -> Result<()> {
    v["schema_version"] = JSON_SCHEMA_VERSION.into();
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}
