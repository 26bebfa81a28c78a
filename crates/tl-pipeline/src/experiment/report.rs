//! The experiment's comparison report: a section per study (tables, learning curves,
//! convergence, method bars, rankings) and `manifest.json`.

use std::path::Path;

use tl_eval::{Bar, Block, Point, Section, Series, mean_ci};

use super::{CellRecord, OUTCOME_SCHEMA_VERSION, SummaryRow, budget_dir, cell_path, summary_rows};
use crate::{Env, Result, config::Experiment};

/// The interval `v ± ci`, none when `ci` is not finite (one seed).
fn band(v: f64, ci: f64) -> (Option<f64>, Option<f64>) {
    if ci.is_finite() {
        (Some(v - ci), Some(v + ci))
    } else {
        (None, None)
    }
}

fn pm(v: f64, ci: f64) -> String {
    if ci.is_finite() {
        format!("{:.2} ± {:.2} %", 100.0 * v, 100.0 * ci)
    } else {
        format!("{:.2} %", 100.0 * v)
    }
}

pub(super) fn write_outputs(
    e: &Experiment,
    file: &Path,
    out: &Path,
    records: &[CellRecord],
    planned: usize,
    env: &Env,
) -> Result<()> {
    let rows = summary_rows(records);
    let mut sections = Vec::new();
    for s in &e.train {
        sections.extend(train_section(s, &rows, records));
    }
    for s in &e.adapt {
        sections.extend(adapt_section(s, &rows, records));
    }
    for s in &e.rank {
        sections.extend(rank_section(s, records));
    }
    let mut facts = vec![
        ("experiment".to_string(), file.display().to_string()),
        (
            "cells".into(),
            format!("{} of {planned} finished", records.len()),
        ),
        ("threads".into(), rayon::current_num_threads().to_string()),
    ];
    if let Some(d) = &e.description {
        facts.insert(0, ("description".into(), d.clone()));
    }
    crate::report::write(out, e.title.clone(), facts, sections)?;
    let manifest = serde_json::json!({
        "schema_version": OUTCOME_SCHEMA_VERSION,
        "tl_version": env!("CARGO_PKG_VERSION"),
        "git_revision": option_env!("TL_GIT_REVISION"),
        "command": env.command,
        "experiment_sha256": tl_core::hash::sha256_file(&out.join("experiment.toml"))?,
        "threads": rayon::current_num_threads(),
        "planned": planned,
        "cells": records.iter().map(|r| serde_json::json!({
            "study": r.id.study, "arm": r.id.arm, "budget": r.id.budget,
            "target_labels": r.id.target_labels, "seed": r.id.seed, "seconds": r.seconds,
            "dir": cell_path(out, &r.id),
        })).collect::<Vec<_>>(),
        "summary": rows,
    });
    tl_core::io::write_json(&out.join("manifest.json"), &manifest)?;
    Ok(())
}

/// The summary rows of study `name`, none when it has no finished cell.
fn study_rows<'a>(rows: &'a [SummaryRow], name: &str) -> Option<Vec<&'a SummaryRow>> {
    let mine: Vec<&SummaryRow> = rows.iter().filter(|r| r.study == name).collect();
    (!mine.is_empty()).then_some(mine)
}

/// A train study's table, learning curves (or bars) and convergence curves.
fn train_section(
    s: &crate::config::TrainStudy,
    rows: &[SummaryRow],
    records: &[CellRecord],
) -> Option<Section> {
    let mine = study_rows(rows, &s.name)?;
    let mut blocks = vec![Block::Table {
        header: [
            "arm",
            "labels",
            "seeds",
            "labels / class",
            "test accuracy",
            "macro-F1",
            "seconds / run",
        ]
        .map(String::from)
        .to_vec(),
        rows: mine
            .iter()
            .map(|r| {
                vec![
                    r.arm.clone(),
                    r.budget.clone(),
                    r.seeds.to_string(),
                    format!("{:.1}", r.labels_per_class),
                    pm(r.accuracy, r.accuracy_ci),
                    pm(r.macro_f1, r.macro_f1_ci),
                    format!("{:.1}", r.seconds),
                ]
            })
            .collect(),
    }];
    let budgets = s.budgets.len() + usize::from(s.all);
    if budgets > 1 {
        let series = s
            .arm
            .iter()
            .map(|a| Series {
                name: a.label.clone(),
                points: mine
                    .iter()
                    .filter(|r| r.arm == a.label)
                    .map(|r| Point {
                        x: r.labels_per_class,
                        y: r.accuracy,
                        low: band(r.accuracy, r.accuracy_ci).0,
                        high: band(r.accuracy, r.accuracy_ci).1,
                    })
                    .collect(),
            })
            .collect();
        blocks.push(Block::Curves {
            title: format!("{}: test accuracy against labelled rows per class, training + validation (mean and 95 % interval over seeds)", s.name),
            x_label: "labelled rows per class".into(),
            y_label: "test accuracy".into(),
            log_x: true,
            series,
        });
    } else {
        blocks.push(Block::Bars {
            title: format!(
                "{}: test accuracy (mean and 95 % interval over seeds)",
                s.name
            ),
            value_label: "test accuracy".into(),
            bars: mine
                .iter()
                .map(|r| Bar {
                    label: r.arm.clone(),
                    value: r.accuracy,
                    low: band(r.accuracy, r.accuracy_ci).0,
                    high: band(r.accuracy, r.accuracy_ci).1,
                })
                .collect(),
        });
    }
    blocks.extend(convergence_curves(s, records));
    Some(Section {
        title: format!("Study: {}", s.name),
        blocks,
    })
}

/// Convergence: validation accuracy per epoch at the largest budget, averaged over seeds,
/// for arms that train by epochs.
fn convergence_curves(s: &crate::config::TrainStudy, records: &[CellRecord]) -> Option<Block> {
    let top = if s.all {
        None
    } else {
        s.budgets.iter().max().copied()
    };
    let conv: Vec<Series> = s
        .arm
        .iter()
        .filter_map(|a| {
            let curves: Vec<&Vec<f64>> = records
                .iter()
                .filter(|r| r.id.study == s.name && r.id.arm == a.label && r.id.budget == top)
                .filter_map(|r| r.result.scores())
                .map(|s| &s.val_curve)
                .filter(|c| !c.is_empty())
                .collect();
            let len = curves.iter().map(|c| c.len()).min()?;
            Some(Series {
                name: a.label.clone(),
                points: (0..len)
                    .map(|i| {
                        let v: Vec<f64> = curves.iter().map(|c| c[i]).collect();
                        let (m, ci) = mean_ci(&v);
                        Point {
                            x: (i + 1) as f64,
                            y: m,
                            low: band(m, ci).0,
                            high: band(m, ci).1,
                        }
                    })
                    .collect(),
            })
        })
        .collect();
    (!conv.is_empty()).then(|| Block::Curves {
        title: format!(
            "{}: validation accuracy per epoch ({} labels)",
            s.name,
            budget_dir(top)
        ),
        x_label: "epoch".into(),
        y_label: "validation accuracy".into(),
        log_x: false,
        series: conv,
    })
}

/// Mean proxy A-distance before and after over the seeds of one row of an adapt study.
fn mean_shift(records: &[CellRecord], study: &str, r: &SummaryRow) -> (f64, f64) {
    let v: Vec<(f64, f64)> = records
        .iter()
        .filter(|c| c.id.study == study && c.id.arm == r.arm && budget_dir(c.id.budget) == r.budget)
        .filter(|c| c.id.target_labels == r.target_labels)
        .filter_map(|c| c.result.scores()?.shift)
        .collect();
    let n = v.len().max(1) as f64;
    (
        v.iter().map(|x| x.0).sum::<f64>() / n,
        v.iter().map(|x| x.1).sum::<f64>() / n,
    )
}

/// An adapt study's table and bars by method (and target labels, in a sweep).
fn adapt_section(
    s: &crate::config::AdaptStudy,
    rows: &[SummaryRow],
    records: &[CellRecord],
) -> Option<Section> {
    let mine = study_rows(rows, &s.name)?;
    let sweep = !s.target_labels.is_empty();
    let label = |r: &SummaryRow| {
        let mut l = r.arm.clone();
        if s.budgets.len() > 1 {
            l.push_str(&format!(" ({})", r.budget));
        }
        if let Some(k) = r.target_labels.filter(|_| sweep) {
            l.push_str(&format!(" + {k} target labels / class"));
        }
        l
    };
    let mut header = vec!["method", "source labels"];
    if sweep {
        header.push("target labels / class");
    }
    header.extend([
        "seeds",
        "target accuracy",
        "target macro-F1",
        "proxy A-distance before → after",
        "seconds / run",
    ]);
    let table = mine
        .iter()
        .map(|r| {
            let (b, a) = mean_shift(records, &s.name, r);
            let mut row = vec![r.arm.clone(), r.budget.clone()];
            if sweep {
                row.push(r.target_labels.unwrap_or(0).to_string());
            }
            row.extend([
                r.seeds.to_string(),
                pm(r.accuracy, r.accuracy_ci),
                pm(r.macro_f1, r.macro_f1_ci),
                format!("{b:.3} → {a:.3}"),
                format!("{:.1}", r.seconds),
            ]);
            row
        })
        .collect();
    let bars = mine
        .iter()
        .map(|r| Bar {
            label: label(r),
            value: r.accuracy,
            low: band(r.accuracy, r.accuracy_ci).0,
            high: band(r.accuracy, r.accuracy_ci).1,
        })
        .collect();
    Some(Section {
        title: format!("Study: {} ({} → {})", s.name, s.config.source, s.config.target),
        blocks: vec![
            Block::Text {
                text: "Every method is chosen and trained without target labels (but the labelled target rows of a semi-supervised sweep, left out of its scores); the target's labels are read only to score. Proxy A-distance: 2 for separable domains, 0 for indistinguishable ones.".into(),
            },
            Block::Table {
                header: header.into_iter().map(String::from).collect(),
                rows: table,
            },
            Block::Bars {
                title: format!(
                    "{}: target accuracy by method (mean and 95 % interval over seeds)",
                    s.name
                ),
                value_label: "target accuracy".into(),
                bars,
            },
        ],
    })
}

/// A rank study's candidates (seed-mean scores and probe accuracy) and Kendall's τ.
fn rank_section(s: &crate::config::RankStudy, records: &[CellRecord]) -> Option<Section> {
    let runs: Vec<&super::RankResult> = records
        .iter()
        .filter(|r| r.id.study == s.name)
        .filter_map(|r| match &r.result {
            super::CellResult::Ranking(k) => Some(k),
            super::CellResult::Scores(_) => None,
        })
        .collect();
    let first = runs.first()?;
    let mean = |f: &dyn Fn(&crate::rank::Candidate) -> Option<f64>, i: usize| {
        let v: Vec<f64> = runs
            .iter()
            .filter_map(|r| f(r.candidates.get(i)?))
            .collect();
        if v.is_empty() {
            "–".to_string()
        } else {
            format!("{:.4}", v.iter().sum::<f64>() / v.len() as f64)
        }
    };
    let rows = first
        .candidates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            vec![
                format!("{}:{}", c.model, c.layer),
                c.width.to_string(),
                mean(&|c| Some(c.logme), i),
                mean(&|c| Some(c.h_score), i),
                mean(&|c| c.nce, i),
                mean(&|c| c.leep, i),
                mean(&|c| Some(c.probe_test_accuracy), i),
            ]
        })
        .collect();
    let tau = |f: fn(&crate::rank::Taus) -> Option<f64>| {
        let v: Vec<String> = runs
            .iter()
            .map(|r| {
                f(&r.kendall_tau_with_probe_accuracy).map_or("–".into(), |x| format!("{x:+.2}"))
            })
            .collect();
        v.join(", ")
    };
    Some(Section {
        title: format!(
            "Study: {} (ranking candidates for {})",
            s.name, s.config.data
        ),
        blocks: vec![
            Block::Table {
                header: [
                    "candidate",
                    "width",
                    "LogME",
                    "H-score",
                    "NCE",
                    "LEEP",
                    "probe test accuracy",
                ]
                .map(String::from)
                .to_vec(),
                rows,
            },
            Block::Text {
                text: format!(
                    "Scores and probe accuracy are means over {} seeds. Kendall's τ with the probe's test accuracy, seed by seed: LogME {}; H-score {}; NCE {}; LEEP {}.",
                    runs.len(),
                    tau(|t| t.logme),
                    tau(|t| t.h_score),
                    tau(|t| t.nce),
                    tau(|t| t.leep)
                ),
            },
        ],
    })
}
