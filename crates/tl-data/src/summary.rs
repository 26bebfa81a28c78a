//! What a dataset holds, for a person or a JSON reader: counts per class and task, rows
//! without a label, skipped rows and a few example rows.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{Dataset, Skipped};

/// One task's classes and how many rows carry each.
#[derive(Debug, Clone, Serialize)]
pub struct TaskSummary {
    pub name: String,
    pub classes: Vec<String>,
    /// Rows per class, in class order.
    pub counts: Vec<usize>,
    pub without_label: usize,
}

/// One example row.
#[derive(Debug, Clone, Serialize)]
pub struct Example {
    pub id: String,
    /// The row's content, described in a line.
    pub content: String,
    /// The row's class per task (none where it lacks that label).
    pub labels: BTreeMap<String, Option<String>>,
}

/// A dataset at a glance.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub name: String,
    pub sha256: String,
    pub rows: usize,
    pub tasks: Vec<TaskSummary>,
    pub examples: Vec<Example>,
    pub skipped: Vec<Skipped>,
}

impl Dataset {
    /// The dataset's summary with its first `examples` rows.
    pub fn summary(&self, examples: usize) -> Summary {
        let tasks = (0..self.tasks.len())
            .map(|t| {
                let (counts, without_label) = self.class_counts(t);
                TaskSummary {
                    name: self.tasks[t].name.clone(),
                    classes: self.tasks[t].classes.clone(),
                    counts,
                    without_label,
                }
            })
            .collect();
        let examples = self
            .rows
            .iter()
            .take(examples)
            .map(|r| Example {
                id: r.id.clone(),
                content: r.content.describe(),
                labels: self
                    .tasks
                    .iter()
                    .zip(&r.labels)
                    .map(|(t, l)| (t.name.clone(), l.map(|l| t.classes[l as usize].clone())))
                    .collect(),
            })
            .collect();
        Summary {
            name: self.name.clone(),
            sha256: self.sha256.clone(),
            rows: self.rows.len(),
            tasks,
            examples,
            skipped: self.skipped.clone(),
        }
    }
}
