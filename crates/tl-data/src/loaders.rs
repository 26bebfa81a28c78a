//! Loaders for the formats users have.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::Arc,
};

use serde::{Deserialize, Serialize};

use crate::{
    Error, Result,
    dataset::{Content, Row, Skipped},
    source,
};

/// Where the label is in a pixel table row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LabelPos {
    First,
    Last,
}

/// A table of grayscale pixel values with an integer label per row (MNIST-style CSV).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PixelTable {
    pub width: u32,
    pub height: u32,
    /// The largest pixel value (255 for MNIST, 16 for scikit-learn's digits); values are scaled to 0–255.
    pub max_value: u32,
    pub label: LabelPos,
    #[serde(default)]
    pub header: bool,
    /// A border of this many black pixels around each image (scikit-learn's 8×8 digits
    /// touch their edges; MNIST's are framed by a 4-pixel margin).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pad: u32,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// `data` (`width` × `height`, one channel) inside a border of `pad` zeros.
fn padded(data: Vec<u8>, width: u32, height: u32, pad: u32) -> Vec<u8> {
    if pad == 0 {
        return data;
    }
    let (w, p) = (width as usize, pad as usize);
    let pw = w + 2 * p;
    let mut out = vec![0u8; pw * (height as usize + 2 * p)];
    for (y, row) in data.chunks(w).enumerate() {
        let at = (y + p) * pw + p;
        out[at..at + w].copy_from_slice(row);
    }
    out
}

/// Reads a pixel table (`.csv`, `.csv.gz`, `.csv.bz2`); labels must be below `n_classes`.
pub fn pixel_table(path: &Path, spec: &PixelTable, n_classes: usize) -> Result<Vec<Row>> {
    let bytes = source::read_all(path, None)?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| Error::format(path, None, format!("not UTF-8 text: {e}")))?;
    let npx = (spec.width * spec.height) as usize;
    if spec.max_value == 0 {
        return Err(Error::Invalid("max_value must be positive".into()));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate().skip(usize::from(spec.header)) {
        if line.trim().is_empty() {
            continue;
        }
        let at = || Some(format!("line {}", i + 1));
        let values: Vec<u32> = line
            .split(',')
            .map(|v| {
                v.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                    .map(|f| f as u32)
            })
            .collect::<Option<_>>()
            .ok_or_else(|| {
                Error::format(path, at(), "values must be non-negative whole numbers")
            })?;
        if values.len() != npx + 1 {
            return Err(Error::format(
                path,
                at(),
                format!(
                    "{} values, expected {} pixels and a label",
                    values.len(),
                    npx
                ),
            ));
        }
        let (label, pixels) = match spec.label {
            LabelPos::First => (values[0], &values[1..]),
            LabelPos::Last => (values[npx], &values[..npx]),
        };
        if label as usize >= n_classes {
            return Err(Error::format(
                path,
                at(),
                format!("label {label} is outside the {n_classes} classes"),
            ));
        }
        let data: Vec<u8> = pixels
            .iter()
            .map(|&v| {
                if v > spec.max_value {
                    Err(Error::format(
                        path,
                        at(),
                        format!("pixel value {v} exceeds max_value {}", spec.max_value),
                    ))
                } else {
                    Ok(((v * 255 + spec.max_value / 2) / spec.max_value) as u8)
                }
            })
            .collect::<Result<_>>()?;
        rows.push(Row {
            id: format!("{name}:{}", i + 1),
            content: Content::Pixels {
                width: spec.width + 2 * spec.pad,
                height: spec.height + 2 * spec.pad,
                channels: 1,
                data: Arc::from(padded(data, spec.width, spec.height, spec.pad)),
            },
            labels: vec![Some(label)],
        });
    }
    if rows.is_empty() {
        return Err(Error::format(path, None, "no rows"));
    }
    Ok(rows)
}

/// Reads an IDX image file (magic 0x0803) and its label file (0x0801), `.gz` or plain.
pub fn idx(images: &Path, labels: &Path, n_classes: usize) -> Result<Vec<Row>> {
    let img = source::read_all(images, None)?;
    let lab = source::read_all(labels, None)?;
    let be32 = |b: &[u8], at: usize| -> Option<u32> {
        b.get(at..at + 4)
            .map(|s| u32::from_be_bytes(s.try_into().unwrap()))
    };
    if be32(&img, 0) != Some(0x0803) {
        return Err(Error::format(
            images,
            None,
            "not an IDX image file (magic 0x00000803 expected)",
        ));
    }
    if be32(&lab, 0) != Some(0x0801) {
        return Err(Error::format(
            labels,
            None,
            "not an IDX label file (magic 0x00000801 expected)",
        ));
    }
    let (n, h, w) = (
        be32(&img, 4).unwrap_or(0) as usize,
        be32(&img, 8).unwrap_or(0),
        be32(&img, 12).unwrap_or(0),
    );
    let nl = be32(&lab, 4).unwrap_or(0) as usize;
    if n != nl {
        return Err(Error::format(
            labels,
            None,
            format!("{nl} labels for {n} images in `{}`", images.display()),
        ));
    }
    // In u128: header fields up to 2^32 - 1 cannot overflow it.
    let expected = 16 + n as u128 * h as u128 * w as u128;
    if img.len() as u128 != expected {
        return Err(Error::format(
            images,
            None,
            format!(
                "{} bytes, expected {expected} for {n} images of {h}×{w} (truncated?)",
                img.len(),
            ),
        ));
    }
    let px = h as usize * w as usize;
    if lab.len() != 8 + n {
        return Err(Error::format(
            labels,
            None,
            format!("{} bytes, expected {} (truncated?)", lab.len(), 8 + n),
        ));
    }
    let name = images
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    (0..n)
        .map(|i| {
            let label = lab[8 + i] as u32;
            if label as usize >= n_classes {
                return Err(Error::format(
                    labels,
                    Some(format!("item {i}")),
                    format!("label {label} is outside the {n_classes} classes"),
                ));
            }
            Ok(Row {
                id: format!("{name}:{i}"),
                content: Content::Pixels {
                    width: w,
                    height: h,
                    channels: 1,
                    data: Arc::from(&img[16 + i * px..16 + (i + 1) * px]),
                },
                labels: vec![Some(label)],
            })
        })
        .collect()
}

/// File extensions read as images.
pub const IMAGE_EXTENSIONS: [&str; 8] = ["png", "jpg", "jpeg", "gif", "bmp", "tif", "tiff", "webp"];

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| tl_core::Error::io("cannot list", dir, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            !p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    v.sort();
    Ok(v)
}

/// An image folder: one sub-folder per class (sorted names are the classes), or, with no
/// sub-folders, an unlabelled folder of images. Returns the classes and the rows.
pub fn image_folder(dir: &Path) -> Result<(Vec<String>, Vec<Row>)> {
    let entries = sorted_entries(dir)?;
    let subdirs: Vec<&PathBuf> = entries.iter().filter(|p| p.is_dir()).collect();
    let row = |p: &Path, label: Option<u32>| Row {
        id: p.strip_prefix(dir).unwrap_or(p).display().to_string(),
        content: Content::ImageFile(p.to_path_buf()),
        labels: vec![label],
    };
    if subdirs.is_empty() {
        let rows: Vec<Row> = entries
            .iter()
            .filter(|p| is_image(p))
            .map(|p| row(p, None))
            .collect();
        if rows.is_empty() {
            return Err(Error::format(
                dir,
                None,
                "holds neither class sub-folders nor images",
            ));
        }
        return Ok((Vec::new(), rows));
    }
    let mut classes = Vec::new();
    let mut rows = Vec::new();
    for (c, sub) in subdirs.iter().enumerate() {
        classes.push(sub.file_name().unwrap().to_string_lossy().into_owned());
        let images: Vec<PathBuf> = sorted_entries(sub)?
            .into_iter()
            .filter(|p| is_image(p))
            .collect();
        if images.is_empty() {
            return Err(Error::EmptyClass {
                path: sub.to_path_buf(),
            });
        }
        rows.extend(images.iter().map(|p| row(p, Some(c as u32))));
    }
    Ok((classes, rows))
}

/// A plain list of image files (one path per line, relative to the list's folder), unlabelled.
pub fn file_list(list: &Path) -> Result<Vec<Row>> {
    let bytes = source::read_all(list, None)?;
    let text = String::from_utf8_lossy(&bytes);
    let base = list.parent().unwrap_or(Path::new("."));
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let p = base.join(line);
        if !p.is_file() {
            return Err(Error::format(
                list,
                Some(format!("line {}", i + 1)),
                format!("`{}` does not exist", p.display()),
            ));
        }
        rows.push(Row {
            id: line.to_string(),
            content: Content::ImageFile(p),
            labels: vec![None],
        });
    }
    Ok(rows)
}

/// Table formats for text data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TableFormat {
    Csv,
    Tsv,
    Jsonl,
}

impl TableFormat {
    /// From a file name (`x.tsv.gz` is TSV).
    pub fn from_name(name: &str) -> Option<Self> {
        let n = name.to_ascii_lowercase();
        let n = n.trim_end_matches(".gz").trim_end_matches(".bz2");
        if n.ends_with(".csv") {
            Some(TableFormat::Csv)
        } else if n.ends_with(".tsv") || n.ends_with(".tab") {
            Some(TableFormat::Tsv)
        } else if n.ends_with(".jsonl") || n.ends_with(".ndjson") {
            Some(TableFormat::Jsonl)
        } else {
            None
        }
    }
}

/// One labelled task of a text table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskColumn {
    /// Task name (`sentiment`).
    pub name: String,
    /// Column holding the label.
    pub column: String,
    /// Class names, in label-index order (after `map`).
    pub classes: Vec<String>,
    /// Renames column values before they are looked up in `classes` (`fresh` → `subjective`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub map: BTreeMap<String, String>,
    /// Values that mean "this row has no label for this task" (`plot` for sentiment).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<String>,
}

/// A table of texts with label columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextTable {
    /// Forced format; by default from the file name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<TableFormat>,
    pub text_column: String,
    pub tasks: Vec<TaskColumn>,
    /// Decode HTML entities and strip the quotes some exports wrap texts in.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub clean_html: bool,
    /// Skip rows whose text is empty (they are listed in [`crate::Dataset::skipped`])
    /// instead of failing on the first one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_empty_text: bool,
}

/// Reads a text table (CSV, TSV or JSONL; `.gz`, `.bz2`, or `member` of a zip); returns
/// the rows and the (id, reason) of rows skipped under `skip_empty_text`.
pub fn text_table(
    path: &Path,
    member: Option<&str>,
    spec: &TextTable,
) -> Result<(Vec<Row>, Vec<Skipped>)> {
    let bytes = source::read_all(path, member)?;
    let label = member.map(str::to_string).unwrap_or_else(|| {
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let format = spec
        .format
        .or_else(|| TableFormat::from_name(&label))
        .ok_or_else(|| {
            Error::format(
                path,
                None,
                "cannot tell the table format from the name: set format = csv, tsv or jsonl",
            )
        })?;
    let records = table_records(path, member, format, &bytes, &label)?;
    let Some((_, first)) = records.first() else {
        return Err(Error::format(path, member.map(str::to_string), "no rows"));
    };
    let mut available: Vec<String> = first.keys().cloned().collect();
    available.sort();
    for col in std::iter::once(&spec.text_column).chain(spec.tasks.iter().map(|t| &t.column)) {
        if !first.contains_key(col) {
            return Err(Error::NoColumn {
                path: path.to_path_buf(),
                column: col.clone(),
                available,
            });
        }
    }
    let mut rows = Vec::with_capacity(records.len());
    let mut skipped = Vec::new();
    for (line, rec) in records {
        let at = || Some(format!("{label} line {line}"));
        let text = rec.get(&spec.text_column).cloned().unwrap_or_default();
        let text = if spec.clean_html {
            clean_html(&text)
        } else {
            text
        };
        if text.trim().is_empty() {
            let why = format!("empty text in column `{}`", spec.text_column);
            if spec.skip_empty_text {
                skipped.push(Skipped {
                    id: format!("{label}:{line}"),
                    reason: why,
                });
                continue;
            }
            return Err(Error::format(path, at(), why));
        }
        let mut labels = Vec::with_capacity(spec.tasks.len());
        for task in &spec.tasks {
            let raw = rec.get(&task.column).map(|s| s.trim()).unwrap_or_default();
            if raw.is_empty() {
                return Err(Error::format(
                    path,
                    at(),
                    format!("missing label in column `{}`", task.column),
                ));
            }
            if task.ignore.iter().any(|v| v == raw) {
                labels.push(None);
                continue;
            }
            let value = task.map.get(raw).map(String::as_str).unwrap_or(raw);
            let idx = task
                .classes
                .iter()
                .position(|c| c == value)
                .ok_or_else(|| {
                    Error::format(
                        path,
                        at(),
                        format!(
                            "label `{raw}` in column `{}` is not one of {} (nor ignored)",
                            task.column,
                            task.classes.join(", ")
                        ),
                    )
                })?;
            labels.push(Some(idx as u32));
        }
        rows.push(Row {
            id: format!("{label}:{line}"),
            content: Content::Text(text),
            labels,
        });
    }
    Ok((rows, skipped))
}

/// The records of a table (CSV, TSV or JSONL) as (line, column → value), in file order;
/// JSON values that are not strings are kept as their JSON text.
pub(crate) fn table_records(
    path: &Path,
    member: Option<&str>,
    format: TableFormat,
    bytes: &[u8],
    label: &str,
) -> Result<Vec<(usize, HashMap<String, String>)>> {
    let records: Vec<(usize, HashMap<String, String>)> = match format {
        TableFormat::Csv | TableFormat::Tsv => {
            let mut reader = csv::ReaderBuilder::new()
                .delimiter(if format == TableFormat::Tsv {
                    b'\t'
                } else {
                    b','
                })
                .flexible(false)
                .from_reader(bytes);
            let headers: Vec<String> = reader
                .headers()
                .map_err(|e| {
                    Error::format(
                        path,
                        member.map(str::to_string),
                        format!("cannot read the header: {e}"),
                    )
                })?
                .iter()
                .map(str::to_string)
                .collect();
            // Line numbers from byte offsets: the reader's own count is one short after
            // CRLF line ends. Offsets only grow, so the count is carried forward.
            let (mut at, mut lines) = (0usize, 1usize);
            let mut line_of = |byte: u64| {
                // A record's offset may point at the `\n` of the CRLF before it.
                let mut byte = (byte as usize).min(bytes.len());
                while byte < bytes.len() && matches!(bytes[byte], b'\r' | b'\n') {
                    byte += 1;
                }
                if byte >= at {
                    lines += bytes[at..byte].iter().filter(|&&b| b == b'\n').count();
                    at = byte;
                }
                lines
            };
            reader
                .records()
                .map(|r| {
                    let r = r.map_err(|e| {
                        let line = e.position().map(|p| format!("line {}", line_of(p.byte())));
                        Error::format(path, line, format!("{label}: {e}"))
                    })?;
                    let line = r.position().map_or(0, |p| line_of(p.byte()));
                    Ok((
                        line,
                        headers
                            .iter()
                            .cloned()
                            .zip(r.iter().map(str::to_string))
                            .collect(),
                    ))
                })
                .collect::<Result<_>>()?
        }
        TableFormat::Jsonl => {
            let text = String::from_utf8_lossy(bytes);
            text.lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
                .map(|(i, l)| {
                    let v: serde_json::Value = serde_json::from_str(l).map_err(|e| {
                        Error::format(
                            path,
                            Some(format!("line {}", i + 1)),
                            format!("invalid JSON: {e}"),
                        )
                    })?;
                    let obj = v.as_object().ok_or_else(|| {
                        Error::format(path, Some(format!("line {}", i + 1)), "not a JSON object")
                    })?;
                    let fields = obj
                        .iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                v.as_str()
                                    .map(str::to_string)
                                    .unwrap_or_else(|| v.to_string()),
                            )
                        })
                        .collect();
                    Ok((i + 1, fields))
                })
                .collect::<Result<_>>()?
        }
    };
    Ok(records)
}

/// Decodes the HTML entities common in scraped text and strips wrapping quotes.
pub fn clean_html(s: &str) -> String {
    let trimmed = s.trim().trim_matches('"').trim();
    let mut out = String::with_capacity(trimmed.len());
    let mut rest = trimmed;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let tail = &rest[amp..];
        let decoded = tail.find(';').filter(|&semi| semi <= 10).and_then(|semi| {
            let ent = &tail[1..semi];
            let ch = match ent {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" | "#39" => Some('\''),
                "rsquo" | "lsquo" => Some('\''),
                "rdquo" | "ldquo" => Some('"'),
                "ndash" | "mdash" => Some('-'),
                "nbsp" => Some(' '),
                "hellip" => Some('…'),
                _ => ent
                    .strip_prefix("#x")
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .or_else(|| ent.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32),
            };
            ch.map(|c| (c, semi))
        });
        match decoded {
            Some((c, semi)) => {
                out.push(c);
                rest = &tail[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_entities_are_decoded() {
        assert_eq!(
            clean_html("\"\"\"I couldn&rsquo;t &amp; &#039;won&#x27;t&quot;\"\"\""),
            "I couldn't & 'won't\""
        );
        assert_eq!(clean_html("a & b &unknown; c"), "a & b &unknown; c");
    }

    #[test]
    fn pixel_tables_scale_and_check() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.csv");
        std::fs::write(&p, "0,8,16,16,3\n16,0,0,0,1\n").unwrap();
        let spec = PixelTable {
            width: 2,
            height: 2,
            max_value: 16,
            label: LabelPos::Last,
            header: false,
            pad: 0,
        };
        let rows = pixel_table(&p, &spec, 10).unwrap();
        assert_eq!(rows.len(), 2);
        let Content::Pixels { data, .. } = &rows[0].content else {
            panic!()
        };
        assert_eq!(&data[..], &[0, 128, 255, 255]);
        let framed = pixel_table(
            &p,
            &PixelTable {
                pad: 1,
                ..spec.clone()
            },
            10,
        )
        .unwrap();
        let Content::Pixels {
            width,
            height,
            data,
            ..
        } = &framed[0].content
        else {
            panic!()
        };
        assert_eq!((*width, *height), (4, 4));
        #[rustfmt::skip]
        assert_eq!(&data[..], &[0, 0, 0, 0, 0, 0, 128, 0, 0, 255, 255, 0, 0, 0, 0, 0]);
        assert_eq!(rows[0].labels, vec![Some(3)]);
        std::fs::write(&p, "0,8,16,16\n").unwrap();
        let err = pixel_table(&p, &spec, 10).unwrap_err().to_string();
        assert!(
            err.contains("d.csv") && err.contains("line 1") && err.contains("4 values"),
            "{err}"
        );
        std::fs::write(&p, "0,8,17,16,3\n").unwrap();
        assert!(
            pixel_table(&p, &spec, 10)
                .unwrap_err()
                .to_string()
                .contains("exceeds")
        );
        std::fs::write(&p, "0,8,16,16,12\n").unwrap();
        assert!(
            pixel_table(&p, &spec, 10)
                .unwrap_err()
                .to_string()
                .contains("label 12")
        );
    }

    #[test]
    fn idx_files_roundtrip_and_truncation_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let mut img = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3];
        img.extend(0..12u8);
        let lab = vec![0, 0, 8, 1, 0, 0, 0, 2, 7, 1];
        std::fs::write(dir.path().join("i.idx"), &img).unwrap();
        std::fs::write(dir.path().join("l.idx"), &lab).unwrap();
        let rows = idx(&dir.path().join("i.idx"), &dir.path().join("l.idx"), 10).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].labels, vec![Some(1)]);
        let Content::Pixels {
            width,
            height,
            data,
            ..
        } = &rows[1].content
        else {
            panic!()
        };
        assert_eq!(
            (*width, *height, &data[..]),
            (3, 2, &[6u8, 7, 8, 9, 10, 11][..])
        );
        std::fs::write(dir.path().join("i.idx"), &img[..20]).unwrap();
        let err = idx(&dir.path().join("i.idx"), &dir.path().join("l.idx"), 10)
            .unwrap_err()
            .to_string();
        assert!(err.contains("i.idx") && err.contains("truncated"), "{err}");
    }

    #[test]
    fn image_folders_and_their_errors() {
        let dir = tempfile::tempdir().unwrap();
        for (c, f) in [
            ("cat", "a.png"),
            ("cat", "b.jpg"),
            ("dog", "c.png"),
            ("dog", "notes.txt"),
        ] {
            std::fs::create_dir_all(dir.path().join(c)).unwrap();
            std::fs::write(dir.path().join(c).join(f), b"x").unwrap();
        }
        let (classes, rows) = image_folder(dir.path()).unwrap();
        assert_eq!(classes, ["cat", "dog"]);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[2].labels, vec![Some(1)]);
        std::fs::create_dir_all(dir.path().join("empty")).unwrap();
        let err = image_folder(dir.path()).unwrap_err().to_string();
        assert!(err.contains("empty") && err.contains("no images"), "{err}");
        let (classes, rows) = image_folder(&dir.path().join("cat")).unwrap();
        assert!(classes.is_empty());
        assert_eq!(rows[0].labels, vec![None]);
    }

    fn sentiment() -> TextTable {
        TextTable {
            format: None,
            text_column: "text".into(),
            tasks: vec![TaskColumn {
                name: "sentiment".into(),
                column: "label".into(),
                classes: vec!["neg".into(), "pos".into()],
                map: BTreeMap::new(),
                ignore: vec!["plot".into()],
            }],
            clean_html: false,
            skip_empty_text: false,
        }
    }

    #[test]
    fn text_tables_in_every_format() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("t.csv"),
            "text,label\n\"good, really\",pos\nbad,neg\nstory,plot\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("t.tsv"), "text\tlabel\ngood\tpos\n").unwrap();
        std::fs::write(
            dir.path().join("t.jsonl"),
            "{\"text\": \"good\", \"label\": \"pos\"}\n",
        )
        .unwrap();
        let (rows, _) = text_table(&dir.path().join("t.csv"), None, &sentiment()).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].content, Content::Text("good, really".into()));
        assert_eq!(
            rows.iter().map(|r| r.labels[0]).collect::<Vec<_>>(),
            [Some(1), Some(0), None]
        );
        for f in ["t.tsv", "t.jsonl"] {
            let (rows, _) = text_table(&dir.path().join(f), None, &sentiment()).unwrap();
            assert_eq!(rows[0].labels, vec![Some(1)], "{f}");
        }
    }

    #[test]
    fn text_table_errors_name_file_row_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.csv");
        std::fs::write(&p, "text,label\ngood,pos\nbad,\n").unwrap();
        let err = text_table(&p, None, &sentiment()).unwrap_err().to_string();
        assert!(
            err.contains("t.csv") && err.contains("line 3") && err.contains("missing label"),
            "{err}"
        );
        std::fs::write(&p, "text,label\ngood,positive\n").unwrap();
        let err = text_table(&p, None, &sentiment()).unwrap_err().to_string();
        assert!(
            err.contains("`positive`") && err.contains("line 2"),
            "{err}"
        );
        std::fs::write(&p, "text,label\n,pos\nfine,neg\n").unwrap();
        assert!(
            text_table(&p, None, &sentiment())
                .unwrap_err()
                .to_string()
                .contains("empty text")
        );
        let mut lenient = sentiment();
        lenient.skip_empty_text = true;
        let (rows, skipped) = text_table(&p, None, &lenient).unwrap();
        assert_eq!((rows.len(), skipped.len()), (1, 1));
        assert_eq!(skipped[0].id, "t.csv:2");
        std::fs::write(&p, "body,label\ngood,pos\n").unwrap();
        let err = text_table(&p, None, &sentiment()).unwrap_err().to_string();
        assert!(
            err.contains("no column `text`") && err.contains("body"),
            "{err}"
        );
    }
}
