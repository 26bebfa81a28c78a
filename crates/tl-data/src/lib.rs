//! `tl-data`: labelled datasets in, the same rows out for every later step.
//!
//! - [`loaders`]: image folders (one sub-folder per class, or unlabelled), IDX files,
//!   pixel tables in CSV, text tables in CSV/TSV/JSONL (`.gz`, `.bz2`, or inside a
//!   `.zip`) with a text column and label columns, plain file lists; every error names
//!   the file, row or column at fault.
//! - [`Dataset`]: rows with content hashes, labels per task (a row may lack some),
//!   class names, and relabelling onto another dataset's classes.
//! - [`Split`]: stratified train/validation/test splits by seed with an optional label
//!   budget per class, saved as `split.json` and checked against the dataset on reload.
//! - [`open`]: what `--data PATH` reads: a `dataset.toml` spec, or a folder, table,
//!   IDX file or file list recognised from its name and columns.
//! - [`segment`]: texts cut into sentence rows that remember their document.
//!
//! ```
//! use tl_data::{Content, Dataset, Row, Split, SplitConfig, Task};
//!
//! let rows = (0..20)
//!     .map(|i| Row { id: i.to_string(), content: Content::Text(format!("text {i}")), labels: vec![Some(i % 2)] })
//!     .collect();
//! let ds = Dataset {
//!     name: "toy".into(),
//!     sha256: String::new(),
//!     tasks: vec![Task { name: "label".into(), classes: vec!["a".into(), "b".into()] }],
//!     rows,
//!     skipped: vec![],
//! };
//! let split = Split::stratified(&ds, &SplitConfig::new("label", 42)).unwrap();
//! assert_eq!(split.rows.len(), 20);
//! ```

mod dataset;
mod error;
pub mod loaders;
pub mod open;
pub mod segment;
pub mod source;
mod spec;
mod split;
pub mod summary;

pub use dataset::{Content, Dataset, Row, Skipped, Task};
pub use error::{Error, Result};
pub use spec::{DatasetSpec, TableFile};
pub use split::{Part, Split, SplitConfig, SplitRow};
