//! Conversions run after an entry's files are in place.

use std::{fs::File, path::Path};

use parquet::{
    file::reader::{FileReader, SerializedFileReader},
    record::RowAccessor,
};
use tl_onnx::{convert::BatchNorm, torch::Checkpoint};

use crate::{
    Error, Result,
    fetch::publish_pinned,
    manifest::{Conversion, Entry},
};

/// Runs one conversion of `entry` inside `dir`; every output must hash to its pinned value.
pub(crate) fn run(entry: &Entry, conv: &Conversion, dir: &Path) -> Result<()> {
    match conv {
        Conversion::Cnn {
            architecture,
            checkpoint,
            folded,
            kept,
        } => {
            let ckpt_path = dir.join(checkpoint);
            let source_sha = tl_core::hash::sha256_file(&ckpt_path)?;
            let ckpt = Checkpoint::load(&ckpt_path)?;
            for (form, out) in [(BatchNorm::Folded, folded), (BatchNorm::Kept, kept)] {
                let model = tl_onnx::convert::convert(architecture, &ckpt, form, &source_sha)?;
                publish_pinned(
                    &dir.join(&out.file),
                    &model.to_bytes(),
                    &out.sha256,
                    &format!(
                        "`{}` converted from `{checkpoint}` ({} BatchNorm)",
                        out.file,
                        form.as_str()
                    ),
                )?;
            }
            Ok(())
        }
        Conversion::ParquetVocab {
            parquet,
            column,
            output,
        } => {
            let path = dir.join(parquet);
            let words = read_parquet_strings(&path, column).map_err(|reason| Error::Convert {
                id: entry.id.clone(),
                reason: format!("`{}`: {reason}", path.display()),
            })?;
            let mut text = String::with_capacity(words.len() * 8);
            for (row, w) in words.iter().enumerate() {
                if w.contains('\n') || w.contains('\r') {
                    return Err(Error::Convert {
                        id: entry.id.clone(),
                        reason: format!(
                            "word at row {row} contains a line break; cannot write a line-per-word vocabulary"
                        ),
                    });
                }
                text.push_str(w);
                text.push('\n');
            }
            publish_pinned(
                &dir.join(&output.file),
                text.as_bytes(),
                &output.sha256,
                &format!("`{}`", output.file),
            )
        }
    }
}

/// Every value of a string column, in row order.
pub fn read_parquet_strings(path: &Path, column: &str) -> std::result::Result<Vec<String>, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let reader = SerializedFileReader::new(file).map_err(|e| e.to_string())?;
    let schema = reader.metadata().file_metadata().schema_descr();
    let idx = (0..schema.num_columns())
        .find(|&i| schema.column(i).name() == column)
        .ok_or_else(|| format!("no column `{column}`"))?;
    let mut out = Vec::with_capacity(reader.metadata().file_metadata().num_rows().max(0) as usize);
    for row in reader.get_row_iter(None).map_err(|e| e.to_string())? {
        let row = row.map_err(|e| e.to_string())?;
        out.push(
            row.get_string(idx)
                .map_err(|e| format!("row {}: {e}", out.len()))?
                .clone(),
        );
    }
    Ok(out)
}
