//! Class names of registry models.

use std::path::Path;

use crate::{
    Error, Fetcher, Result,
    manifest::{Entry, LabelFormat, Labels, Registry},
};

/// The class names of `entry`, in output order; `None` when the registry names none.
pub fn class_names(home: &Path, registry: &Registry, entry: &Entry) -> Result<Option<Vec<String>>> {
    match &entry.labels {
        None => Ok(None),
        Some(Labels::Inline { names }) => Ok(Some(names.clone())),
        Some(Labels::Asset {
            asset,
            file,
            format,
        }) => {
            let asset = registry.get(asset)?;
            if !Fetcher::is_present(home, asset) {
                return Err(Error::NotFetched {
                    id: asset.id.clone(),
                    kind: asset.kind,
                });
            }
            let path = asset.dir(home).join(file);
            let bad = |reason: String| Error::Manifest {
                file: path.display().to_string(),
                reason,
            };
            let value: serde_json::Value = tl_core::io::read_json(&path)?;
            let names = match format {
                LabelFormat::JsonList => value
                    .as_array()
                    .ok_or_else(|| bad("expected a JSON list".into()))?
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| bad("non-string class name".into()))
                    })
                    .collect::<Result<Vec<_>>>()?,
                LabelFormat::JsonIndexMap => {
                    let map = value
                        .as_object()
                        .ok_or_else(|| bad("expected a JSON object".into()))?;
                    let mut names = vec![String::new(); map.len()];
                    for (k, v) in map {
                        let i: usize = k
                            .parse()
                            .map_err(|_| bad(format!("key `{k}` is not an index")))?;
                        let slot = names
                            .get_mut(i)
                            .ok_or_else(|| bad(format!("index {i} out of range")))?;
                        *slot = v
                            .as_str()
                            .ok_or_else(|| bad(format!("class {i} is not a string")))?
                            .to_string();
                    }
                    names
                }
            };
            Ok(Some(names))
        }
    }
}
