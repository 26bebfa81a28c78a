//! A dataset at a path on disk: what `--data PATH` reads.
//!
//! - a folder with a `dataset.toml` ([`SPEC_FILE`]): that spec, its files relative to
//!   the folder;
//! - any other folder: an image folder (one sub-folder per class, or unlabelled);
//! - a `.toml` file: a spec whose files are relative to the file's folder;
//! - a text table (`.csv`, `.tsv`, `.jsonl`, optionally `.gz`/`.bz2`, or the one table
//!   inside a `.zip`): the text column and label column are recognised by name (see
//!   [`TEXT_COLUMNS`] and [`LABEL_COLUMNS`]), the task is named after the label column
//!   and its classes are the column's values;
//!   a table without a label column is unlabelled (a target domain);
//! - an IDX image file (`*-images-idx3-ubyte`, `.gz` too) with its `labels-idx1` file
//!   beside it;
//! - a `.txt` or `.lst` list of image files: unlabelled.
//!
//! What was recognised is said in [`Opened::how`]; [`Opened::spec`] serialises to a
//! `dataset.toml` that a user can save beside the data and edit (another text column, a
//! second task, class names in another order).

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use crate::{
    Dataset, DatasetSpec, Error, Result, TableFile,
    loaders::{TableFormat, TaskColumn, TextTable, table_records},
    source,
};

/// The spec file a data folder may hold.
pub const SPEC_FILE: &str = "dataset.toml";

/// Column names taken as the text, in order of preference (compared without case).
pub const TEXT_COLUMNS: &[&str] = &[
    "text", "sentence", "review", "content", "body", "document", "comment",
];

/// Column names taken as the label, in order of preference (compared without case).
pub const LABEL_COLUMNS: &[&str] = &["label", "class", "category", "sentiment", "target", "y"];

/// A label column with more distinct values than this is not taken as a class label.
pub const MAX_INFERRED_CLASSES: usize = 1000;

/// How a path reads as a dataset.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The spec; its file names are relative to `dir`.
    pub spec: DatasetSpec,
    pub dir: PathBuf,
    /// What was recognised, for a person (`text table: text column review, ...`).
    pub how: String,
    /// Whether the spec was inferred rather than read from a spec file.
    pub inferred: bool,
}

impl Opened {
    /// Loads the dataset, named `name`.
    pub fn load(&self, name: &str) -> Result<Dataset> {
        self.spec.load(name, &self.dir)
    }

    /// The spec as the text of a `dataset.toml` for `dir`.
    pub fn spec_toml(&self) -> Result<String> {
        toml::to_string(&self.spec)
            .map_err(|e| Error::Invalid(format!("cannot write the spec as TOML: {e}")))
    }
}

/// Reads `path` as a dataset spec (see the module's documentation).
pub fn open(path: &Path) -> Result<Opened> {
    if path.is_dir() {
        let spec_file = path.join(SPEC_FILE);
        if spec_file.is_file() {
            return spec_from_file(&spec_file);
        }
        return Ok(Opened {
            spec: DatasetSpec::ImageFolder { dir: None },
            dir: path.to_path_buf(),
            how: "image folder (one sub-folder per class, or unlabelled images)".into(),
            inferred: true,
        });
    }
    if !path.is_file() {
        return Err(Error::Invalid(format!(
            "`{}` is neither a file nor a folder",
            path.display()
        )));
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let lower = file.to_ascii_lowercase();
    if lower.ends_with(".toml") {
        return spec_from_file(path);
    }
    if TableFormat::from_name(&lower).is_some() {
        return infer_table(path, dir, file, None);
    }
    if lower.ends_with(".zip") {
        let member = zip_table_member(path)?;
        return infer_table(path, dir, file, Some(member));
    }
    if lower.contains("idx3-ubyte") {
        return infer_idx(path, dir, &file);
    }
    if lower.ends_with(".txt") || lower.ends_with(".lst") {
        return Ok(Opened {
            spec: DatasetSpec::FileList { file },
            dir,
            how: "list of image files (one path per line, relative to the list), unlabelled".into(),
            inferred: true,
        });
    }
    Err(Error::format(
        path,
        None,
        format!(
            "cannot tell what dataset this is: expected a folder of images, a text table \
             (.csv, .tsv, .jsonl, optionally .gz/.bz2, or a .zip holding one), an IDX image \
             file, a .txt list of images, or a {SPEC_FILE} spec"
        ),
    ))
}

fn spec_from_file(path: &Path) -> Result<Opened> {
    let text =
        std::fs::read_to_string(path).map_err(|e| tl_core::Error::io("cannot read", path, e))?;
    let spec: DatasetSpec =
        toml::from_str(&text).map_err(|e| Error::format(path, None, e.to_string()))?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    Ok(Opened {
        spec,
        dir,
        how: format!("spec file {}", path.display()),
        inferred: false,
    })
}

/// The one table member of a zip archive.
fn zip_table_member(path: &Path) -> Result<String> {
    let file = std::fs::File::open(path).map_err(|e| tl_core::Error::io("cannot open", path, e))?;
    let zip = zip::ZipArchive::new(file)
        .map_err(|e| Error::format(path, None, format!("not a zip archive: {e}")))?;
    let names: Vec<String> = zip.file_names().map(str::to_string).collect();
    let tables: Vec<&String> = names
        .iter()
        .filter(|n| TableFormat::from_name(n).is_some() && !n.ends_with('/'))
        .collect();
    match tables.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(Error::format(
            path,
            None,
            format!(
                "the archive holds no text table (.csv, .tsv, .jsonl); members: {}",
                names.join(", ")
            ),
        )),
        many => Err(Error::format(
            path,
            None,
            format!(
                "the archive holds {} tables ({}): name the one to read in a {SPEC_FILE} \
                 (files = [{{ file = \"…\", member = \"…\" }}])",
                many.len(),
                many.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// A column of `columns` named like one of `names` (first preference first), compared
/// without case.
fn pick<'a>(columns: &'a [String], names: &[&str]) -> Option<&'a String> {
    names
        .iter()
        .find_map(|n| columns.iter().find(|c| c.eq_ignore_ascii_case(n)))
}

/// Class names in a natural order: numerically when every value is a number, else by text.
fn class_order(values: BTreeSet<String>) -> Vec<String> {
    let mut v: Vec<String> = values.into_iter().collect();
    if v.iter().all(|s| s.parse::<f64>().is_ok()) {
        v.sort_by(|a, b| {
            a.parse::<f64>()
                .unwrap()
                .total_cmp(&b.parse::<f64>().unwrap())
        });
    }
    v
}

fn infer_table(path: &Path, dir: PathBuf, file: String, member: Option<String>) -> Result<Opened> {
    let label = member.clone().unwrap_or_else(|| file.clone());
    let format = TableFormat::from_name(&label).expect("checked by the caller");
    let bytes = source::read_all(path, member.as_deref())?;
    let records = table_records(path, member.as_deref(), format, &bytes, &label)?;
    let Some((_, first)) = records.first() else {
        return Err(Error::format(path, member, "no rows"));
    };
    let mut columns: Vec<String> = first.keys().cloned().collect();
    columns.sort();
    let label_col = pick(&columns, LABEL_COLUMNS).cloned();
    let text_col = match pick(&columns, TEXT_COLUMNS) {
        Some(c) => c.clone(),
        None => {
            // The column with the longest texts, if it is not the label.
            let mean_len = |c: &String| {
                records
                    .iter()
                    .map(|(_, r)| r.get(c).map_or(0, |v| v.chars().count()))
                    .sum::<usize>() as f64
                    / records.len() as f64
            };
            columns
                .iter()
                .filter(|c| Some(*c) != label_col.as_ref())
                .max_by(|a, b| mean_len(a).total_cmp(&mean_len(b)))
                .cloned()
                .ok_or_else(|| Error::NoColumn {
                    path: path.to_path_buf(),
                    column: format!("of text (one of {})", TEXT_COLUMNS.join(", ")),
                    available: columns.clone(),
                })?
        }
    };
    let mut tasks = Vec::new();
    let mut how = format!("text table ({format:?}): text column `{text_col}`");
    if let Some(col) = &label_col {
        let values: BTreeSet<String> = records
            .iter()
            .filter_map(|(_, r)| r.get(col).map(|v| v.trim().to_string()))
            .filter(|v| !v.is_empty())
            .collect();
        if values.len() > MAX_INFERRED_CLASSES {
            return Err(Error::format(
                path,
                member,
                format!(
                    "column `{col}` has {} distinct values, too many for class labels: \
                     write a {SPEC_FILE} that names the label column",
                    values.len()
                ),
            ));
        }
        let classes = class_order(values);
        how.push_str(&format!(", task `{col}` (classes: {})", classes.join(", ")));
        tasks.push(TaskColumn {
            name: col.clone(),
            column: col.clone(),
            classes,
            map: Default::default(),
            ignore: Vec::new(),
        });
    } else {
        how.push_str(&format!(
            ", no label column (none of {}): unlabelled",
            LABEL_COLUMNS.join(", ")
        ));
    }
    Ok(Opened {
        spec: DatasetSpec::TextTable {
            files: vec![TableFile { file, member }],
            table: TextTable {
                format: None,
                text_column: text_col,
                tasks,
                clean_html: false,
                skip_empty_text: false,
            },
        },
        dir,
        how,
        inferred: true,
    })
}

fn infer_idx(path: &Path, dir: PathBuf, file: &str) -> Result<Opened> {
    let lower = file.to_ascii_lowercase();
    let at = lower.find("images-idx3").ok_or_else(|| {
        Error::format(
            path,
            None,
            "an IDX image file is named `…-images-idx3-ubyte` so that its labels file is found beside it",
        )
    })?;
    let base = format!(
        "{}labels-idx1{}",
        &file[..at],
        &file[at + "images-idx3".len()..]
    );
    let candidates = [
        base.clone(),
        base.trim_end_matches(".gz").to_string(),
        format!("{}.gz", base.trim_end_matches(".gz")),
    ];
    let labels = candidates
        .iter()
        .find(|c| dir.join(c).is_file())
        .cloned()
        .ok_or_else(|| {
            Error::format(
                path,
                None,
                format!(
                    "its labels file `{}` is not beside it",
                    dir.join(&base).display()
                ),
            )
        })?;
    let bytes = source::read_all(&dir.join(&labels), None)?;
    let n = bytes
        .get(8..)
        .map_or(0, |b| b.iter().copied().max().map_or(0, |m| m as usize + 1));
    if n == 0 {
        return Err(Error::format(&dir.join(&labels), None, "holds no labels"));
    }
    let classes: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    Ok(Opened {
        how: format!(
            "IDX images with labels from `{labels}` (classes 0–{})",
            n - 1
        ),
        spec: DatasetSpec::Idx {
            images: file.to_string(),
            labels,
            classes,
        },
        dir,
        inferred: true,
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn a_labelled_csv_is_read_with_its_named_columns_and_sorted_classes() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "reviews.csv",
            "id,Review,label\n1,great film,pos\n2,dull and long,neg\n3,\"loved it, really\",pos\n",
        );
        let o = open(&p).unwrap();
        assert!(o.inferred);
        assert!(o.how.contains("text column `Review`"), "{}", o.how);
        let ds = o.load("reviews").unwrap();
        assert_eq!(ds.tasks.len(), 1);
        assert_eq!(ds.tasks[0].classes, ["neg", "pos"]);
        assert_eq!(ds.rows.len(), 3);
        assert_eq!(
            ds.rows[2].content,
            crate::Content::Text("loved it, really".into())
        );
        assert_eq!(
            ds.rows.iter().map(|r| r.labels[0]).collect::<Vec<_>>(),
            [Some(1), Some(0), Some(1)]
        );
    }

    #[test]
    fn row_ids_and_errors_name_the_file_line_with_crlf_line_ends_and_quoted_breaks() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "w.csv",
            "text,label\r\nfirst,a\r\n\"two\r\nlines\",b\r\nthird,a\r\n,b\r\n",
        );
        let e = open(&p).unwrap().load("w").unwrap_err().to_string();
        assert!(e.contains("line 6") && e.contains("empty text"), "{e}");
        let p = write(
            dir.path(),
            "ok.csv",
            "text,label\r\nfirst,a\r\n\"two\r\nlines\",b\r\nthird,a\r\n",
        );
        let ds = open(&p).unwrap().load("ok").unwrap();
        let ids: Vec<&str> = ds.rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["ok.csv:2", "ok.csv:3", "ok.csv:5"]);
    }

    #[test]
    fn numeric_labels_sort_as_numbers_and_a_table_without_labels_is_unlabelled() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "t.tsv", "sentence\tclass\na\t10\nb\t9\nc\t2\n");
        let ds = open(&p).unwrap().load("t").unwrap();
        assert_eq!(ds.tasks[0].classes, ["2", "9", "10"]);
        let p = write(
            dir.path(),
            "u.jsonl",
            "{\"note\": \"x\", \"body\": \"first text\"}\n{\"note\": \"y\", \"body\": \"second\"}\n",
        );
        let o = open(&p).unwrap();
        assert!(o.how.contains("unlabelled"), "{}", o.how);
        let ds = o.load("u").unwrap();
        assert!(ds.tasks.is_empty());
        assert_eq!(
            ds.rows[0].content,
            crate::Content::Text("first text".into())
        );
    }

    #[test]
    fn without_a_known_text_column_the_longest_column_is_the_text() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "t.csv",
            "k,words,label\na,a long piece of text,x\nb,another long one here,y\n",
        );
        let o = open(&p).unwrap();
        assert!(o.how.contains("text column `words`"), "{}", o.how);
    }

    #[test]
    fn a_zip_with_one_table_is_read_and_with_two_names_them() {
        let dir = tempfile::tempdir().unwrap();
        let mk = |name: &str, members: &[&str]| {
            let p = dir.path().join(name);
            let mut zip = zip::ZipWriter::new(std::fs::File::create(&p).unwrap());
            for m in members {
                zip.start_file(*m, zip::write::SimpleFileOptions::default())
                    .unwrap();
                zip.write_all(b"text,label\nhello,a\nworld,b\n").unwrap();
            }
            zip.finish().unwrap();
            p
        };
        let one = mk("one.zip", &["README", "data/train.csv"]);
        let ds = open(&one).unwrap().load("one").unwrap();
        assert_eq!(ds.rows.len(), 2);
        let two = mk("two.zip", &["a.csv", "b.tsv"]);
        let e = open(&two).unwrap_err().to_string();
        assert!(e.contains("two.zip") && e.contains("a.csv, b.tsv"), "{e}");
    }

    #[test]
    fn a_spec_file_in_the_folder_wins_and_the_inferred_spec_round_trips_as_toml() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "t.csv", "text,label,topic\nhi,a,u\nho,b,v\n");
        let o = open(&p).unwrap();
        let toml = o.spec_toml().unwrap();
        let back: DatasetSpec = toml::from_str(&toml).unwrap();
        assert_eq!(back, o.spec, "{toml}");
        // A spec with a second task, saved as dataset.toml: the folder reads by it.
        let edited = toml.replace(
            "[[tasks]]",
            "[[tasks]]\nname = \"topic\"\ncolumn = \"topic\"\nclasses = [\"u\", \"v\"]\n\n[[tasks]]",
        );
        std::fs::write(dir.path().join(SPEC_FILE), &edited).unwrap();
        let o = open(dir.path()).unwrap();
        assert!(!o.inferred);
        let ds = o.load("d").unwrap();
        assert_eq!(
            ds.tasks.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
            ["topic", "label"],
            "{edited}"
        );
    }

    #[test]
    fn idx_files_find_their_labels_and_a_list_reads_images() {
        let dir = tempfile::tempdir().unwrap();
        let mut img = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2];
        img.extend([0u8, 255, 255, 0, 10, 20, 30, 40]);
        std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), &img).unwrap();
        std::fs::write(
            dir.path().join("t10k-labels-idx1-ubyte"),
            [0, 0, 8, 1, 0, 0, 0, 2, 3, 1],
        )
        .unwrap();
        let o = open(&dir.path().join("t10k-images-idx3-ubyte")).unwrap();
        let ds = o.load("idx").unwrap();
        assert_eq!(ds.tasks[0].classes, ["0", "1", "2", "3"]);
        assert_eq!(ds.rows.len(), 2);
        std::fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte")).unwrap();
        let e = open(&dir.path().join("t10k-images-idx3-ubyte"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("t10k-labels-idx1-ubyte"), "{e}");

        std::fs::write(dir.path().join("a.png"), b"not decoded here").unwrap();
        let p = write(dir.path(), "files.txt", "# unlabelled\na.png\n");
        let ds = open(&p).unwrap().load("l").unwrap();
        assert_eq!(ds.rows.len(), 1);
        assert!(ds.rows[0].labels.iter().all(Option::is_none));
        let p = write(dir.path(), "bad.txt", "missing.png\n");
        let e = open(&p).unwrap().load("l").unwrap_err().to_string();
        assert!(e.contains("bad.txt") && e.contains("line 1"), "{e}");
    }

    #[test]
    fn unknown_files_and_id_like_label_columns_fail_with_the_file_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "data.parquet", "x");
        let e = open(&p).unwrap_err().to_string();
        assert!(e.contains("data.parquet") && e.contains(SPEC_FILE), "{e}");
        let mut t = String::from("text,label\n");
        for i in 0..=MAX_INFERRED_CLASSES {
            t.push_str(&format!("row {i},{i}\n"));
        }
        let p = write(dir.path(), "ids.csv", &t);
        let e = open(&p).unwrap_err().to_string();
        assert!(e.contains("ids.csv") && e.contains("1001 distinct"), "{e}");
        let e = open(&dir.path().join("nothing-here"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nothing-here"), "{e}");
    }
}
