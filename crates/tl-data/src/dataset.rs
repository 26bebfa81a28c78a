//! The in-memory dataset: rows with content, labels per task, and class names.

use std::{collections::BTreeMap, path::PathBuf, sync::Arc};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// What a row holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    /// 8-bit pixels, row-major, `channels` interleaved (1: gray, 3: RGB).
    Pixels {
        width: u32,
        height: u32,
        channels: u8,
        data: Arc<[u8]>,
    },
    /// An image file, decoded when used.
    ImageFile(PathBuf),
    /// A text.
    Text(String),
}

impl Content {
    /// The content hash that joins features to labels: the same image or text has the
    /// same hash in every dataset. Image files hash their bytes.
    pub fn hash(&self) -> Result<String> {
        let mut h = Sha256::new();
        match self {
            Content::Pixels {
                width,
                height,
                channels,
                data,
            } => {
                h.update(b"pixels\0");
                h.update(width.to_le_bytes());
                h.update(height.to_le_bytes());
                h.update([*channels]);
                h.update(data);
            }
            Content::ImageFile(p) => {
                return tl_core::hash::sha256_file(p).map_err(Error::from);
            }
            Content::Text(t) => {
                h.update(b"text\0");
                h.update(t.as_bytes());
            }
        }
        Ok(hex::encode(h.finalize()))
    }

    /// A short human description (for `tl data info`).
    pub fn describe(&self) -> String {
        match self {
            Content::Pixels {
                width,
                height,
                channels,
                ..
            } => format!("{width}×{height}×{channels} pixels"),
            Content::ImageFile(p) => p.display().to_string(),
            Content::Text(t) => {
                let short: String = t.chars().take(100).collect();
                if short.len() < t.len() {
                    format!("{short}…")
                } else {
                    short
                }
            }
        }
    }
}

/// One labelled (or unlabelled) example.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Stable id within the dataset (`file:line`, a relative path, ...).
    pub id: String,
    pub content: Content,
    /// Label index per task; `None` where the row lacks that task's label.
    pub labels: Vec<Option<u32>>,
}

/// A classification task: its name and class names in label-index order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub name: String,
    pub classes: Vec<String>,
}

/// A dataset: rows, tasks, and where it came from.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub name: String,
    /// sha256 over the source files' hashes, in order.
    pub sha256: String,
    pub tasks: Vec<Task>,
    pub rows: Vec<Row>,
    /// Rows the loader skipped (only where the spec allows skipping).
    pub skipped: Vec<Skipped>,
}

/// A row a loader skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub id: String,
    pub reason: String,
}

impl Dataset {
    /// Index of a task by name.
    pub fn task_index(&self, name: &str) -> Result<usize> {
        self.tasks
            .iter()
            .position(|t| t.name == name)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "dataset `{}` has no task `{name}` (its tasks: {})",
                    self.name,
                    self.tasks
                        .iter()
                        .map(|t| t.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }

    /// Number of rows per class of `task`, and the number of rows without its label.
    pub fn class_counts(&self, task: usize) -> (Vec<usize>, usize) {
        let mut counts = vec![0; self.tasks[task].classes.len()];
        let mut missing = 0;
        for r in &self.rows {
            match r.labels[task] {
                Some(c) => counts[c as usize] += 1,
                None => missing += 1,
            }
        }
        (counts, missing)
    }

    /// Relabels `task` so that its class indices follow `target_classes` (another
    /// dataset's class order): a class missing from the target is an error naming it.
    pub fn map_labels_onto(&mut self, task: usize, target_classes: &[String]) -> Result<()> {
        let mine = &self.tasks[task].classes;
        let index: BTreeMap<&str, u32> = target_classes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.as_str(), i as u32))
            .collect();
        let map: Vec<u32> = mine
            .iter()
            .map(|c| {
                index.get(c.as_str()).copied().ok_or_else(|| {
                    Error::Invalid(format!(
                        "class `{c}` of dataset `{}` does not exist in the target label set ({})",
                        self.name,
                        target_classes.join(", ")
                    ))
                })
            })
            .collect::<Result<_>>()?;
        for r in &mut self.rows {
            if let Some(l) = r.labels[task].as_mut() {
                *l = map[*l as usize];
            }
        }
        self.tasks[task].classes = target_classes.to_vec();
        Ok(())
    }
}

/// sha256 over a list of file hashes (the identity of a multi-file source).
pub(crate) fn combine_hashes<'a>(hashes: impl IntoIterator<Item = &'a str>) -> String {
    let mut h = Sha256::new();
    for s in hashes {
        h.update(s.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds() -> Dataset {
        let rows = (0..6)
            .map(|i| Row {
                id: i.to_string(),
                content: Content::Text(format!("t{i}")),
                labels: vec![if i == 5 { None } else { Some(i % 2) }],
            })
            .collect();
        Dataset {
            name: "d".into(),
            sha256: String::new(),
            tasks: vec![Task {
                name: "t".into(),
                classes: vec!["neg".into(), "pos".into()],
            }],
            rows,
            skipped: Vec::new(),
        }
    }

    #[test]
    fn counts_and_label_mapping() {
        let mut d = ds();
        assert_eq!(d.class_counts(0), (vec![3, 2], 1));
        d.map_labels_onto(0, &["pos".into(), "neutral".into(), "neg".into()])
            .unwrap();
        assert_eq!(d.rows[0].labels[0], Some(2));
        assert_eq!(d.rows[1].labels[0], Some(0));
        assert_eq!(d.class_counts(0), (vec![2, 0, 3], 1));
        let err = ds()
            .map_labels_onto(0, &["pos".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`neg`"), "{err}");
    }

    #[test]
    fn content_hashes_depend_on_content_only() {
        let a = Content::Text("same".into());
        let b = Content::Text("same".into());
        let c = Content::Text("other".into());
        assert_eq!(a.hash().unwrap(), b.hash().unwrap());
        assert_ne!(a.hash().unwrap(), c.hash().unwrap());
        let px = |v: u8| Content::Pixels {
            width: 2,
            height: 1,
            channels: 1,
            data: Arc::from(vec![v, v]),
        };
        assert_ne!(px(1).hash().unwrap(), px(2).hash().unwrap());
    }
}
