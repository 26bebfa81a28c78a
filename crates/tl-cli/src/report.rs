//! The report every run writes beside its `metrics.json`: `report.md` and a
//! self-contained `report.html` (tl-eval renders both).

use ndarray::{Array2, s};
use serde::{Deserialize, Serialize};
use tl_eval::{Block, EvalOptions, Evaluation, Point, Report, Scored, Section, Series};
use tl_head::net::{HeadNet, TaskSpec};

use anyhow::Result;

/// One task's evaluation in `metrics.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskEvaluation {
    pub task: String,
    #[serde(flatten)]
    pub evaluation: Evaluation,
}

/// Rows of one part as logits per task.
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
    dir: &std::path::Path,
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
