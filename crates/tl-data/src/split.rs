//! Stratified train/validation/test splits and label budgets, saved as `split.json`.

use std::{collections::BTreeMap, path::Path};

use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::{Error, Result, dataset::Dataset};

/// Which part of a split a row belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    Train,
    Val,
    Test,
    /// No label for the task, or beyond the label budget: its label is not to be used.
    Unlabelled,
}

/// How to split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SplitConfig {
    pub seed: u64,
    /// The task whose classes stratify the split.
    pub task: String,
    pub val_fraction: f64,
    pub test_fraction: f64,
    /// At most this many labelled rows per class for training and validation together
    /// (the rest become unlabelled): validation takes round(k · val / (1 − test)) of
    /// them, training the rest (at least 1). Test rows are not part of the budget.
    pub budget: Option<usize>,
    /// Domain recorded on every row (`source`, `target`, ...).
    pub domain: Option<String>,
    /// Further tasks of a multi-task run: rows without a `task` label but with a label of
    /// one of these are split too, stratified by the first such task's class.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<String>,
}

impl SplitConfig {
    /// A split on `task` with 10 % validation and 20 % test rows, no budget.
    pub fn new(task: &str, seed: u64) -> Self {
        Self {
            seed,
            task: task.to_string(),
            val_fraction: 0.1,
            test_fraction: 0.2,
            budget: None,
            domain: None,
            also: Vec::new(),
        }
    }

    /// Checks fractions and budget once, before any work.
    pub fn check(&self) -> Result<()> {
        let ok = |f: f64| (0.0..1.0).contains(&f);
        if !ok(self.val_fraction)
            || !ok(self.test_fraction)
            || self.val_fraction + self.test_fraction >= 1.0
        {
            return Err(Error::Invalid(format!(
                "validation ({}) and test ({}) fractions must be in [0, 1) and leave rows for training",
                self.val_fraction, self.test_fraction
            )));
        }
        if self.budget == Some(0) {
            return Err(Error::Invalid(
                "a label budget must be at least 1 per class".into(),
            ));
        }
        Ok(())
    }
}

/// One row of `split.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitRow {
    pub id: String,
    pub content_hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    pub split: Part,
    /// Class name per task; only for train/val/test rows, and only the tasks the row has.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// The `split.json` contract: every later step sees the same rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Split {
    pub schema_version: u32,
    pub dataset: String,
    pub dataset_sha256: String,
    pub config: SplitConfig,
    pub rows: Vec<SplitRow>,
}

impl Split {
    /// The rows of `ds` this split uses (every part but `unlabelled`), in dataset order:
    /// what needs features.
    pub fn used_rows(&self, ds: &Dataset) -> Dataset {
        let used: std::collections::HashSet<&str> = self
            .rows
            .iter()
            .filter(|r| r.split != Part::Unlabelled)
            .map(|r| r.id.as_str())
            .collect();
        Dataset {
            rows: ds
                .rows
                .iter()
                .filter(|r| used.contains(r.id.as_str()))
                .cloned()
                .collect(),
            ..ds.clone()
        }
    }

    /// Stratified split of `ds`: per class, rows shuffled by the seed, then the test and
    /// validation shares (rounded, at least one each when the fraction is positive and
    /// the class has three rows or more), the rest for training, cut to the budget.
    pub fn stratified(ds: &Dataset, config: &SplitConfig) -> Result<Self> {
        config.check()?;
        let task = ds.task_index(&config.task)?;
        let mut parts = vec![Part::Unlabelled; ds.rows.len()];
        // The main task's rows, then rows labelled only for one of the `also` tasks.
        let mut passes: Vec<(usize, Vec<usize>, String)> = vec![(
            task,
            (0..ds.rows.len())
                .filter(|&i| ds.rows[i].labels[task].is_some())
                .collect(),
            format!("split/{}", config.task),
        )];
        let mut taken: Vec<bool> = ds.rows.iter().map(|r| r.labels[task].is_some()).collect();
        for name in &config.also {
            let t = ds.task_index(name)?;
            if t == task {
                continue;
            }
            let rows: Vec<usize> = (0..ds.rows.len())
                .filter(|&i| !taken[i] && ds.rows[i].labels[t].is_some())
                .collect();
            for &i in &rows {
                taken[i] = true;
            }
            if !rows.is_empty() {
                passes.push((t, rows, format!("split/{}/only", name)));
            }
        }
        for (pass, (task, rows, stream)) in passes.into_iter().enumerate() {
            let classes = &ds.tasks[task].classes;
            let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes.len()];
            for &i in &rows {
                by_class[ds.rows[i].labels[task].expect("filtered") as usize].push(i);
            }
            for (c, idx) in by_class.iter_mut().enumerate() {
                if idx.is_empty() {
                    if pass > 0 {
                        continue;
                    }
                    return Err(Error::Invalid(format!(
                        "class `{}` of task `{}` has no examples",
                        classes[c], ds.tasks[task].name
                    )));
                }
                let mut rng = tl_core::rng::seeded_rng(config.seed, &format!("{stream}/{c}"));
                idx.shuffle(&mut rng);
                let n = idx.len();
                let share = |f: f64| {
                    if f > 0.0 && n >= 3 {
                        ((n as f64 * f).round() as usize).max(1)
                    } else {
                        0
                    }
                };
                let (n_test, n_val) = (share(config.test_fraction), share(config.val_fraction));
                let n_train = n - n_test - n_val;
                if n_train == 0 {
                    return Err(Error::Invalid(format!(
                        "class `{}` has {n} rows: too few to leave any for training",
                        classes[c]
                    )));
                }
                // A budget covers validation too: a run never sees more labels per class.
                let (val_cap, budget) = match config.budget {
                    Some(k) => {
                        let share = config.val_fraction / (1.0 - config.test_fraction);
                        let v = ((k as f64 * share).round() as usize).min(k - 1).min(n_val);
                        (v, k - v)
                    }
                    None => (n_val, usize::MAX),
                };
                for (k, &i) in idx.iter().enumerate() {
                    parts[i] = if k < n_test {
                        Part::Test
                    } else if k < n_test + n_val {
                        if k - n_test < val_cap {
                            Part::Val
                        } else {
                            Part::Unlabelled
                        }
                    } else if k - n_test - n_val < budget {
                        Part::Train
                    } else {
                        Part::Unlabelled
                    };
                }
            }
        }
        let rows = ds
            .rows
            .iter()
            .zip(&parts)
            .map(|(r, &split)| {
                let labels = if split == Part::Unlabelled {
                    BTreeMap::new()
                } else {
                    ds.tasks
                        .iter()
                        .zip(&r.labels)
                        .filter_map(|(t, l)| {
                            l.map(|l| (t.name.clone(), t.classes[l as usize].clone()))
                        })
                        .collect()
                };
                Ok(SplitRow {
                    id: r.id.clone(),
                    content_hash: r.content.hash()?,
                    domain: config.domain.clone(),
                    split,
                    labels,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Split {
            schema_version: 1,
            dataset: ds.name.clone(),
            dataset_sha256: ds.sha256.clone(),
            config: config.clone(),
            rows,
        })
    }

    /// Number of rows in each part.
    pub fn counts(&self) -> BTreeMap<Part, usize> {
        let mut m = BTreeMap::new();
        for r in &self.rows {
            *m.entry(r.split).or_insert(0) += 1;
        }
        m
    }

    /// Writes `split.json` atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        Ok(tl_core::io::write_json(path, self)?)
    }

    /// Reads a `split.json`, checking that it belongs to `ds` (same name and sha256).
    pub fn load_for(path: &Path, ds: &Dataset) -> Result<Self> {
        let s: Split = tl_core::io::read_json(path)?;
        if s.dataset != ds.name || s.dataset_sha256 != ds.sha256 {
            return Err(Error::Invalid(format!(
                "`{}` was made for dataset `{}` ({}), not `{}` ({})",
                path.display(),
                s.dataset,
                s.dataset_sha256.get(..12).unwrap_or(&s.dataset_sha256),
                ds.name,
                ds.sha256.get(..12).unwrap_or(&ds.sha256)
            )));
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::dataset::{Content, Row, Task};

    fn ds(counts: &[usize]) -> Dataset {
        let mut rows = Vec::new();
        for (c, &n) in counts.iter().enumerate() {
            for i in 0..n {
                rows.push(Row {
                    id: format!("{c}-{i}"),
                    content: Content::Text(format!("class {c} row {i}")),
                    labels: vec![Some(c as u32)],
                });
            }
        }
        Dataset {
            name: "toy".into(),
            sha256: "ab".repeat(32),
            tasks: vec![Task {
                name: "label".into(),
                classes: (0..counts.len()).map(|c| format!("c{c}")).collect(),
            }],
            rows,
            skipped: Vec::new(),
        }
    }

    #[test]
    fn rows_labelled_only_for_another_task_are_split_when_asked() {
        // Task `label` on the first 60 rows; task `kind` on all 100, 40 of which have no `label`
        // (as Rotten Tomatoes' plot summaries have subjectivity but no sentiment).
        let mut d = ds(&[30, 30, 40]);
        d.tasks.push(Task {
            name: "kind".into(),
            classes: vec!["review".into(), "plot".into()],
        });
        for (i, r) in d.rows.iter_mut().enumerate() {
            let plot = i >= 60;
            r.labels = vec![
                (!plot).then_some(r.labels[0].unwrap()),
                Some(u32::from(plot)),
            ];
        }
        d.tasks[0].classes.truncate(2);
        let plain = Split::stratified(&d, &SplitConfig::new("label", 1)).unwrap();
        assert!(plain.rows[60..].iter().all(|r| r.split == Part::Unlabelled));
        let mut cfg = SplitConfig::new("label", 1);
        cfg.also = vec!["kind".into()];
        let multi = Split::stratified(&d, &cfg).unwrap();
        // The main task's rows are split exactly as before; the plots now too, by `kind`.
        assert_eq!(multi.rows[..60], plain.rows[..60]);
        let plots: Vec<&SplitRow> = multi.rows[60..].iter().collect();
        assert_eq!(plots.iter().filter(|r| r.split == Part::Test).count(), 8);
        assert_eq!(plots.iter().filter(|r| r.split == Part::Val).count(), 4);
        assert!(
            plots
                .iter()
                .all(|r| r.labels.get("kind").map(String::as_str) == Some("plot")
                    && !r.labels.contains_key("label"))
        );
    }

    #[test]
    fn same_seed_same_split_other_seed_other_split() {
        let d = ds(&[50, 30, 20]);
        let cfg = SplitConfig::new("label", 3);
        let a = Split::stratified(&d, &cfg).unwrap();
        assert_eq!(a, Split::stratified(&d, &cfg).unwrap());
        let b = Split::stratified(&d, &SplitConfig::new("label", 4)).unwrap();
        assert_ne!(a.rows, b.rows);
        assert_eq!(a.counts(), b.counts());
    }

    #[test]
    fn budget_caps_labelled_rows_per_class_and_hides_the_rest() {
        let d = ds(&[50, 30]);
        let mut cfg = SplitConfig::new("label", 1);
        // (budget, validation rows, training rows) per class at val 0.1, test 0.2:
        // validation takes round(k · 0.1 / 0.8), training at least one.
        for (k, val, train) in [(1, 0, 1), (2, 0, 2), (5, 1, 4), (10, 1, 9), (20, 3, 17)] {
            cfg.budget = Some(k);
            let s = Split::stratified(&d, &cfg).unwrap();
            for c in ["c0", "c1"] {
                let count = |p: Part| {
                    s.rows
                        .iter()
                        .filter(|r| r.split == p && r.labels["label"] == c)
                        .count()
                };
                assert_eq!(
                    (count(Part::Val), count(Part::Train)),
                    (val, train),
                    "budget {k}"
                );
            }
        }
        cfg.budget = Some(5);
        let s = Split::stratified(&d, &cfg).unwrap();
        assert!(
            s.rows
                .iter()
                .filter(|r| r.split == Part::Unlabelled)
                .all(|r| r.labels.is_empty())
        );
    }

    #[test]
    fn impossible_splits_are_errors() {
        let err = Split::stratified(&ds(&[5, 0]), &SplitConfig::new("label", 1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`c1`") && err.contains("no examples"), "{err}");
        let mut cfg = SplitConfig::new("label", 1);
        cfg.val_fraction = 0.5;
        cfg.test_fraction = 0.5;
        assert!(Split::stratified(&ds(&[5]), &cfg).is_err());
        assert!(
            Split::stratified(&ds(&[5]), &SplitConfig::new("sentiment", 1))
                .unwrap_err()
                .to_string()
                .contains("no task")
        );
    }

    #[test]
    fn saved_splits_reload_only_for_their_dataset() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("split.json");
        let d = ds(&[10, 10]);
        let s = Split::stratified(&d, &SplitConfig::new("label", 9)).unwrap();
        s.save(&p).unwrap();
        assert_eq!(Split::load_for(&p, &d).unwrap(), s);
        let mut other = ds(&[10, 10]);
        other.sha256 = "cd".repeat(32);
        assert!(
            Split::load_for(&p, &other)
                .unwrap_err()
                .to_string()
                .contains("was made for")
        );
    }

    proptest! {
        /// Every row lands in exactly one part, every class is in train, and the test
        /// and validation shares of each class are within one row of the fractions.
        #[test]
        fn stratification_invariants(counts in proptest::collection::vec(3usize..60, 1..5), seed in 0u64..1000) {
            let d = ds(&counts);
            let s = Split::stratified(&d, &SplitConfig::new("label", seed)).unwrap();
            prop_assert_eq!(s.rows.len(), d.rows.len());
            for (c, &n) in counts.iter().enumerate() {
                let name = format!("c{c}");
                let of = |p: Part| s.rows.iter().filter(|r| r.split == p && r.labels.get("label") == Some(&name)).count();
                prop_assert!(of(Part::Train) >= 1);
                prop_assert!((of(Part::Test) as f64 - n as f64 * 0.2).abs() <= 1.0);
                prop_assert!((of(Part::Val) as f64 - n as f64 * 0.1).abs() <= 1.0);
                prop_assert_eq!(of(Part::Train) + of(Part::Test) + of(Part::Val), n);
            }
        }
    }
}
