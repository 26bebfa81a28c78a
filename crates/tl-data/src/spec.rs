//! How a dataset is laid out on disk: the `[entry.dataset]` table of the registry, and
//! the description a user gives of their own data.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{
    Result,
    dataset::{Dataset, Task, combine_hashes},
    loaders::{self, PixelTable, TextTable},
};

/// A dataset's format and where its files are, relative to its directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "format", rename_all = "kebab-case", deny_unknown_fields)]
pub enum DatasetSpec {
    /// Pixel rows with an integer label (one task, `label`).
    PixelCsv {
        file: String,
        #[serde(flatten)]
        table: PixelTable,
        classes: Vec<String>,
    },
    /// IDX image and label files (MNIST family).
    Idx {
        images: String,
        labels: String,
        classes: Vec<String>,
    },
    /// One sub-folder per class, or an unlabelled folder.
    ImageFolder {
        #[serde(default)]
        dir: Option<String>,
    },
    /// A plain list of image files (one path per line, relative to the list), unlabelled.
    FileList { file: String },
    /// Text tables; rows of every file are concatenated in order.
    TextTable {
        files: Vec<TableFile>,
        #[serde(flatten)]
        table: TextTable,
    },
}

/// One file of a text table, optionally a member of a zip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableFile {
    pub file: String,
    #[serde(default)]
    pub member: Option<String>,
}

impl DatasetSpec {
    /// Loads the dataset `name` whose files are in `dir`.
    pub fn load(&self, name: &str, dir: &Path) -> Result<Dataset> {
        let label_task = |classes: &[String]| {
            vec![Task {
                name: "label".into(),
                classes: classes.to_vec(),
            }]
        };
        let mut skipped = Vec::new();
        let mut folder_sha = None;
        let (tasks, rows, files): (Vec<Task>, _, Vec<std::path::PathBuf>) = match self {
            DatasetSpec::PixelCsv {
                file,
                table,
                classes,
            } => {
                let p = dir.join(file);
                (
                    label_task(classes),
                    loaders::pixel_table(&p, table, classes.len())?,
                    vec![p],
                )
            }
            DatasetSpec::Idx {
                images,
                labels,
                classes,
            } => {
                let (i, l) = (dir.join(images), dir.join(labels));
                (
                    label_task(classes),
                    loaders::idx(&i, &l, classes.len())?,
                    vec![i, l],
                )
            }
            DatasetSpec::ImageFolder { dir: sub } => {
                let root = sub
                    .as_ref()
                    .map_or_else(|| dir.to_path_buf(), |s| dir.join(s));
                let (classes, rows) = loaders::image_folder(&root)?;
                // An image folder is identified by its rows: relative path, class and content.
                let ids: Vec<String> = rows
                    .iter()
                    .map(|r| Ok(format!("{}\t{:?}\t{}", r.id, r.labels, r.content.hash()?)))
                    .collect::<Result<_>>()?;
                folder_sha = Some(combine_hashes(ids.iter().map(String::as_str)));
                (label_task(&classes), rows, Vec::new())
            }
            DatasetSpec::FileList { file } => {
                // Identified, like a folder, by its rows' paths and contents.
                let rows = loaders::file_list(&dir.join(file))?;
                let ids: Vec<String> = rows
                    .iter()
                    .map(|r| Ok(format!("{}\t{}", r.id, r.content.hash()?)))
                    .collect::<Result<_>>()?;
                folder_sha = Some(combine_hashes(ids.iter().map(String::as_str)));
                (label_task(&[]), rows, Vec::new())
            }
            DatasetSpec::TextTable { files, table } => {
                let mut rows = Vec::new();
                let mut paths = Vec::new();
                for f in files {
                    let p = dir.join(&f.file);
                    let (r, s) = loaders::text_table(&p, f.member.as_deref(), table)?;
                    rows.extend(r);
                    skipped.extend(s);
                    paths.push(p);
                }
                let tasks = table
                    .tasks
                    .iter()
                    .map(|t| Task {
                        name: t.name.clone(),
                        classes: t.classes.clone(),
                    })
                    .collect();
                (tasks, rows, paths)
            }
        };
        let hashes: Vec<String> = files
            .iter()
            .map(|p| tl_core::hash::sha256_file(p))
            .collect::<Result<_, _>>()?;
        Ok(Dataset {
            name: name.to_string(),
            sha256: folder_sha.unwrap_or_else(|| combine_hashes(hashes.iter().map(String::as_str))),
            tasks,
            rows,
            skipped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_folder_identity_follows_content_and_labels() {
        let dir = tempfile::tempdir().unwrap();
        for (c, f, b) in [("a", "1.png", "x"), ("b", "2.png", "y")] {
            std::fs::create_dir_all(dir.path().join(c)).unwrap();
            std::fs::write(dir.path().join(c).join(f), b).unwrap();
        }
        let spec = DatasetSpec::ImageFolder { dir: None };
        let first = spec.load("f", dir.path()).unwrap().sha256;
        assert_eq!(first, spec.load("f", dir.path()).unwrap().sha256);
        assert_ne!(
            first,
            tl_core::hash::sha256_bytes(b""),
            "a folder's identity is not the empty hash"
        );
        std::fs::write(dir.path().join("b/2.png"), "changed").unwrap();
        assert_ne!(first, spec.load("f", dir.path()).unwrap().sha256);
    }
}
