//! The report every run writes beside its `metrics.json`: `report.md` and a
//! self-contained `report.html` (tl-eval renders both).

use std::path::Path;

use ndarray::{Array2, s};
use serde::Serialize;
use tl_adapt::shift::ShiftReport;
use tl_core::Named;
use tl_eval::{Block, EvalOptions, Evaluation, Point, Report, Scored, Section, Series};
use tl_head::net::{HeadKind, HeadNet, TaskSpec};

use crate::{
    Result,
    artifact::{AdaptMetrics, Metrics, TaskEvaluation, files},
    config::{AdaptRunConfig, RunConfig},
};

/// Rows of one part as logits per task.
#[derive(Debug)]
pub struct PartLogits<'a> {
    pub logits: Array2<f64>,
    pub labels: &'a [Vec<Option<u32>>],
}

impl<'a> PartLogits<'a> {
    pub fn of(
        net: &mut HeadNet,
        x: &tl_nn::Tensor,
        labels: &'a [Vec<Option<u32>>],
    ) -> Result<Self> {
        Ok(Self {
            logits: tl_head::train::predict(net, x, 256)?.mapv(f64::from),
            labels,
        })
    }

    /// Task `t`'s logits and classes, for the rows that have its label.
    fn task(&self, net: &HeadNet, t: usize) -> (Array2<f64>, Vec<u32>) {
        let cols = net.columns(t);
        let keep: Vec<usize> = (0..self.labels[t].len())
            .filter(|&i| self.labels[t][i].is_some())
            .collect();
        let z = self
            .logits
            .slice(s![.., cols])
            .select(ndarray::Axis(0), &keep);
        let y = keep.iter().filter_map(|&i| self.labels[t][i]).collect();
        (z, y)
    }
}

/// Each task's test evaluation, its temperature fitted on the validation rows.
pub fn evaluate_tasks(
    net: &HeadNet,
    tasks: &[TaskSpec],
    test: &PartLogits<'_>,
    val: Option<&PartLogits<'_>>,
    options: EvalOptions,
) -> Result<Vec<TaskEvaluation>> {
    let mut out = Vec::new();
    for (t, task) in tasks.iter().enumerate() {
        let (zt, yt) = test.task(net, t);
        if yt.is_empty() {
            continue;
        }
        let v = val.map(|v| v.task(net, t));
        let evaluation = Evaluation::new(
            &task.classes,
            Scored {
                logits: zt.view(),
                labels: &yt,
            },
            v.as_ref().map(|(z, y)| Scored {
                logits: z.view(),
                labels: y,
            }),
            options,
        )?;
        out.push(TaskEvaluation {
            task: task.name.clone(),
            evaluation,
        });
    }
    Ok(out)
}

/// Validation accuracy (and training loss) per epoch, one series per task.
pub fn convergence(history: &[tl_head::train::EpochLog]) -> Option<Section> {
    if history.is_empty() {
        return None;
    }
    let mut series: Vec<Series> = Vec::new();
    for log in history {
        for s in &log.val {
            let name = format!("{}: validation accuracy", s.task);
            let at = match series.iter().position(|x| x.name == name) {
                Some(i) => i,
                None => {
                    series.push(Series {
                        name,
                        points: Vec::new(),
                    });
                    series.len() - 1
                }
            };
            series[at].points.push(Point {
                x: (log.epoch + 1) as f64,
                y: s.accuracy,
                low: None,
                high: None,
            });
        }
    }
    let loss = Series {
        name: "training loss".into(),
        points: history
            .iter()
            .map(|l| Point {
                x: (l.epoch + 1) as f64,
                y: l.train_loss,
                low: None,
                high: None,
            })
            .collect(),
    };
    let mut blocks = Vec::new();
    if !series.is_empty() {
        blocks.push(Block::Curves {
            title: "validation accuracy per epoch".into(),
            x_label: "epoch".into(),
            y_label: "validation accuracy".into(),
            log_x: false,
            series,
        });
    }
    blocks.push(Block::Curves {
        title: "training loss per epoch".into(),
        x_label: "epoch".into(),
        y_label: "training loss".into(),
        log_x: false,
        series: vec![loss],
    });
    Some(Section {
        title: "Convergence".into(),
        blocks,
    })
}

/// The linear probe's regularisation path: validation accuracy against C per task.
pub fn probe_path(paths: &[(String, Vec<tl_head::probe::PathPoint>)]) -> Option<Section> {
    if paths.iter().all(|(_, p)| p.is_empty()) {
        return None;
    }
    let curve = |name: String,
                 pts: &[tl_head::probe::PathPoint],
                 y: fn(&tl_head::probe::PathPoint) -> f64| Series {
        name,
        points: pts
            .iter()
            .map(|p| Point {
                x: p.c,
                y: y(p),
                low: None,
                high: None,
            })
            .collect(),
    };
    let series = paths
        .iter()
        .flat_map(|(task, pts)| {
            [
                curve(format!("{task}: validation accuracy"), pts, |p| {
                    p.val_accuracy
                }),
                curve(format!("{task}: training accuracy"), pts, |p| {
                    p.train_accuracy
                }),
            ]
        })
        .collect();
    Some(Section {
        title: "Regularisation path".into(),
        blocks: vec![
            Block::Text {
                text: "The exact linear probe at each C (inverse L2 strength), warm-started; the best validation accuracy picks C, then the probe is refitted on train + validation.".into(),
            },
            Block::Curves {
                title: "accuracy against C".into(),
                x_label: "C".into(),
                y_label: "accuracy".into(),
                log_x: true,
                series,
            },
        ],
    })
}

/// A report with `facts` and `sections`, written into `dir`.
pub fn write(
    dir: &Path,
    title: String,
    facts: Vec<(String, String)>,
    sections: Vec<Section>,
) -> Result<()> {
    Report {
        title,
        facts,
        sections,
    }
    .write(dir)?;
    Ok(())
}

/// How a config value is spelt in config files and flags.
fn serde_name<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".into(),
    }
}

/// `report.md` and `report.html` of a trained artifact.
pub fn write_train_report(
    out: &Path,
    cfg: &RunConfig,
    layer: &str,
    m: &Metrics,
    command: &[String],
) -> Result<()> {
    let head = match cfg.head.kind {
        HeadKind::Linear => "linear probe".to_string(),
        _ => format!(
            "MLP {:?} ({}, dropout {})",
            cfg.head.hidden,
            serde_name(&cfg.head.activation),
            cfg.head.dropout
        ),
    };
    let rows: Vec<String> = m.rows.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let facts = vec![
        ("model".to_string(), cfg.model.clone()),
        (
            "features".into(),
            format!("{layer} ({} pooling)", serde_name(&cfg.pool)),
        ),
        ("data".into(), cfg.data.clone()),
        ("head".into(), head),
        ("fine-tuning".into(), cfg.finetune.name().to_string()),
        ("rows".into(), rows.join(", ")),
        (
            "seeds".into(),
            format!("training {}, split {}", cfg.train.seed, cfg.split.seed),
        ),
        (
            "time".into(),
            format!(
                "{:.1} s",
                m.seconds.get("total").copied().unwrap_or(f64::NAN)
            ),
        ),
        ("command".into(), command.join(" ")),
    ];
    let mut sections: Vec<tl_eval::Section> = m
        .evaluation
        .iter()
        .map(|t| tl_eval::Section::evaluation(&format!("Test: {}", t.task), &t.evaluation))
        .collect();
    sections.extend(probe_path(&m.probe_path));
    if let Some(t) = &m.training {
        sections.extend(convergence(&t.history));
    }
    write(
        out,
        format!("tl train: {} on {}", cfg.model, cfg.data),
        facts,
        sections,
    )
}

/// `report.md` and `report.html` of an adaptation run.
pub fn write_adapt_report(
    out: &Path,
    c: &AdaptRunConfig,
    m: &AdaptMetrics,
    snd: f64,
    command: &[String],
) -> Result<()> {
    let s = &m.summary;
    let mut sections = adapt_sections(m, snd);
    sections.push(target_section(c, m));
    write(
        out,
        format!("tl adapt: {} → {} ({})", m.source, m.target, s.method),
        adapt_facts(out, c, m, command),
        sections,
    )
}

/// The facts at the top of an adaptation report.
fn adapt_facts(
    out: &Path,
    c: &AdaptRunConfig,
    m: &AdaptMetrics,
    command: &[String],
) -> Vec<(String, String)> {
    let s = &m.summary;
    let rows: Vec<String> = m.rows.iter().map(|(k, v)| format!("{k} {v}")).collect();
    vec![
        ("source".to_string(), m.source.clone()),
        ("target".into(), m.target.clone()),
        ("model".into(), format!("{} at {}", c.model, m.layer)),
        (
            "method".into(),
            format!("{} (weight {})", s.method, s.weight),
        ),
        ("selection".into(), s.selection.clone()),
        ("rows".into(), rows.join(", ")),
        (
            "seeds".into(),
            format!("training {}, split {}", c.train.seed, c.split_seed),
        ),
        ("command".into(), command.join(" ")),
        (
            "outputs".into(),
            match &m.exported {
                Some(_) => format!(
                    "{} (each target row's class and probabilities); model.onnx, the target-domain model (`tl predict --model {} INPUT...`)",
                    files::TARGET_PREDICTIONS,
                    out.display()
                ),
                None => format!(
                    "{} (each target row's class and probabilities); no model.onnx: word-vector features have no graph to export",
                    files::TARGET_PREDICTIONS
                ),
            },
        ),
    ]
}

/// The label-free figures and the shift before and after.
fn adapt_sections(m: &AdaptMetrics, snd: f64) -> Vec<Section> {
    let s = &m.summary;
    let f = tl_eval::report::fmt_num;
    type Measure = fn(&ShiftReport) -> f64;
    let measures: [(&str, Measure); 4] = [
        ("proxy A-distance", |r| r.proxy_a_distance),
        ("domain classifier error", |r| r.domain_error),
        ("MMD² (linear)", |r| r.mmd2_linear),
        ("MMD² (Gaussian)", |r| r.mmd2_gaussian),
    ];
    let shift_rows: Vec<Vec<String>> = measures
        .iter()
        .map(|(name, get)| {
            vec![
                name.to_string(),
                f(get(&m.shift_before)),
                m.shift_after.as_ref().map_or("–".into(), |a| f(get(a))),
            ]
        })
        .collect();
    vec![
        tl_eval::Section {
            title: "Label-free figures (what chose the model)".into(),
            blocks: vec![tl_eval::Block::Table {
                header: ["figure", "value"].map(String::from).to_vec(),
                rows: vec![
                    vec![
                        "source validation accuracy".into(),
                        f(s.source_val_accuracy),
                    ],
                    vec![
                        "SND of the target predictions (higher: tighter clusters)".into(),
                        f(snd),
                    ],
                ],
            }],
        },
        tl_eval::Section {
            title: "Shift between the domains".into(),
            blocks: vec![
                tl_eval::Block::Text {
                    text: format!(
                        "Before: the backbone's features at {}; after: the adapter's outputs (trained methods) or the transformed source (closed-form CORAL). Seeded samples of up to {} rows per domain.",
                        m.layer, m.shift_before.sample_rows
                    ),
                },
                tl_eval::Block::Table {
                    header: ["measure", "before", "after"].map(String::from).to_vec(),
                    rows: shift_rows,
                },
            ],
        },
    ]
}

/// The target's evaluation, or why there is none.
fn target_section(c: &AdaptRunConfig, m: &AdaptMetrics) -> Section {
    match &m.target_scores {
        Some(e) => {
            let (title, text) = match (m.rows.get("target_labelled"), c.target_labels) {
                (Some(n), Some(k)) => (
                    "Target (semi-supervised: some target labels trained)".to_string(),
                    format!(
                        "{n} target rows ({k} per class, --target-labels) kept their labels and joined the source's training rows; this section scores the other {} target rows. The calibration temperature is fitted on the source validation rows.",
                        e.rows
                    ),
                ),
                _ => (
                    "Target (labels read only here)".to_string(),
                    "The target's labels were read only to compute this section; the calibration temperature is fitted on the source validation rows.".to_string(),
                ),
            };
            let mut sec = tl_eval::Section::evaluation(&title, e);
            sec.blocks.insert(0, tl_eval::Block::Text { text });
            sec
        }
        None => tl_eval::Section {
            title: "Target".into(),
            blocks: vec![tl_eval::Block::Text {
                text: "The target has no labels: no target accuracy to report.".into(),
            }],
        },
    }
}
