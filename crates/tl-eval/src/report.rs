//! Run reports: one document model rendered as `report.md` and as one self-contained
//! `report.html` whose plots are inline SVG (no script, no network).
//!
//! Every plot carries its numbers as text (cell counts, point values) so a reader, and
//! the test that renders the page in Chromium, can check them against `metrics.json`.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::calibration::Bin;
use crate::svg;

/// A report: a title, key facts about the run, and sections of blocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub title: String,
    /// Key facts shown under the title (model, data, seed, command...).
    pub facts: Vec<(String, String)>,
    pub sections: Vec<Section>,
}

/// A titled group of blocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Section {
    pub title: String,
    pub blocks: Vec<Block>,
}

/// One point of a curve, with an optional interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high: Option<f64>,
}

/// A named line of points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub name: String,
    pub points: Vec<Point>,
}

/// One bar, with an optional interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bar {
    pub label: String,
    pub value: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high: Option<f64>,
}

/// What a section holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Block {
    /// A paragraph of plain text.
    Text { text: String },
    Table {
        header: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    /// A confusion-matrix heat map (rows: true class; columns: predicted), shaded by
    /// each row's share so small classes read as clearly as large ones.
    Confusion {
        title: String,
        classes: Vec<String>,
        counts: Vec<Vec<u64>>,
    },
    /// A reliability diagram: accuracy against confidence per bin, with the diagonal.
    Reliability {
        title: String,
        bins: Vec<Bin>,
        /// The same after temperature scaling, when fitted.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        scaled: Vec<Bin>,
    },
    /// Lines over a shared x axis (learning curves, convergence).
    Curves {
        title: String,
        x_label: String,
        y_label: String,
        /// Logarithmic x axis (labels per class).
        log_x: bool,
        series: Vec<Series>,
    },
    /// Horizontal bars with intervals (method comparisons).
    Bars {
        title: String,
        value_label: String,
        bars: Vec<Bar>,
    },
}

/// Escapes text for HTML and SVG.
pub(crate) fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            _ => o.push(c),
        }
    }
    o
}

/// A number for tables: integers as such, the rest to 4 significant decimals.
pub fn fmt_num(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.4}")
    }
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn md_table(out: &mut String, header: &[String], rows: &[Vec<String>]) {
    let h: Vec<String> = header.iter().map(|c| md_cell(c)).collect();
    let _ = writeln!(out, "| {} |", h.join(" | "));
    let _ = writeln!(out, "|{}|", vec!["---"; header.len()].join("|"));
    for r in rows {
        let r: Vec<String> = r.iter().map(|c| md_cell(c)).collect();
        let _ = writeln!(out, "| {} |", r.join(" | "));
    }
    out.push('\n');
}

fn bin_rows(bins: &[Bin]) -> Vec<Vec<String>> {
    bins.iter()
        .filter(|b| b.rows > 0)
        .map(|b| {
            vec![
                format!("({:.3}, {:.3}]", b.lo, b.hi),
                b.rows.to_string(),
                fmt_num(b.confidence),
                fmt_num(b.accuracy),
            ]
        })
        .collect()
}

fn interval_text(p_low: Option<f64>, p_high: Option<f64>) -> String {
    match (p_low, p_high) {
        (Some(l), Some(h)) => format!("[{}, {}]", fmt_num(l), fmt_num(h)),
        _ => String::new(),
    }
}

impl Block {
    fn markdown(&self, out: &mut String) {
        match self {
            Block::Text { text } => {
                let _ = writeln!(out, "{text}\n");
            }
            Block::Table { header, rows } => md_table(out, header, rows),
            Block::Confusion {
                title,
                classes,
                counts,
            } => {
                let _ = writeln!(out, "**{title}** (rows: true class; columns: predicted)\n");
                let mut header = vec!["true \\ predicted".to_string()];
                header.extend(classes.iter().cloned());
                let rows: Vec<Vec<String>> = classes
                    .iter()
                    .zip(counts)
                    .map(|(c, r)| {
                        std::iter::once(c.clone())
                            .chain(r.iter().map(|v| v.to_string()))
                            .collect()
                    })
                    .collect();
                md_table(out, &header, &rows);
            }
            Block::Reliability {
                title,
                bins,
                scaled,
            } => {
                let _ = writeln!(out, "**{title}**\n");
                let header: Vec<String> = ["confidence bin", "rows", "mean confidence", "accuracy"]
                    .map(String::from)
                    .to_vec();
                md_table(out, &header, &bin_rows(bins));
                if !scaled.is_empty() {
                    let _ = writeln!(out, "After temperature scaling:\n");
                    md_table(out, &header, &bin_rows(scaled));
                }
            }
            Block::Curves {
                title,
                x_label,
                y_label,
                series,
                ..
            } => {
                let _ = writeln!(out, "**{title}** ({y_label} against {x_label})\n");
                let header: Vec<String> = [
                    "series",
                    x_label.as_str(),
                    y_label.as_str(),
                    "95 % interval",
                ]
                .map(String::from)
                .to_vec();
                let rows: Vec<Vec<String>> = series
                    .iter()
                    .flat_map(|s| {
                        s.points.iter().map(|p| {
                            vec![
                                s.name.clone(),
                                fmt_num(p.x),
                                fmt_num(p.y),
                                interval_text(p.low, p.high),
                            ]
                        })
                    })
                    .collect();
                md_table(out, &header, &rows);
            }
            Block::Bars {
                title,
                value_label,
                bars,
            } => {
                let _ = writeln!(out, "**{title}**\n");
                let header = vec![
                    String::new(),
                    value_label.clone(),
                    "95 % interval".to_string(),
                ];
                let rows: Vec<Vec<String>> = bars
                    .iter()
                    .map(|b| {
                        vec![
                            b.label.clone(),
                            fmt_num(b.value),
                            interval_text(b.low, b.high),
                        ]
                    })
                    .collect();
                md_table(out, &header, &rows);
            }
        }
    }

    fn html(&self, out: &mut String) {
        match self {
            Block::Text { text } => {
                let _ = writeln!(out, "<p>{}</p>", esc(text));
            }
            Block::Table { header, rows } => {
                out.push_str("<table>\n<thead><tr>");
                for h in header {
                    let _ = write!(out, "<th>{}</th>", esc(h));
                }
                out.push_str("</tr></thead>\n<tbody>\n");
                for r in rows {
                    out.push_str("<tr>");
                    for c in r {
                        let _ = write!(out, "<td>{}</td>", esc(c));
                    }
                    out.push_str("</tr>\n");
                }
                out.push_str("</tbody></table>\n");
            }
            Block::Confusion {
                title,
                classes,
                counts,
            } => figure(out, "confusion", title, &svg::confusion(classes, counts)),
            Block::Reliability {
                title,
                bins,
                scaled,
            } => figure(out, "reliability", title, &svg::reliability(bins, scaled)),
            Block::Curves {
                title,
                x_label,
                y_label,
                log_x,
                series,
            } => figure(
                out,
                "curves",
                title,
                &svg::curves(x_label, y_label, *log_x, series),
            ),
            Block::Bars {
                title,
                value_label,
                bars,
            } => figure(out, "bars", title, &svg::bars(value_label, bars)),
        }
    }
}

fn figure(out: &mut String, kind: &str, title: &str, svg: &str) {
    let _ = writeln!(
        out,
        "<figure class=\"plot\" data-plot=\"{kind}\">\n{svg}\n<figcaption>{}</figcaption>\n</figure>",
        esc(title)
    );
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#1d1d1f}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:1em 0;font-variant-numeric:tabular-nums}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}td{white-space:nowrap}td:first-child{white-space:normal}th{background:#f4f4f6}
td:first-child,th:first-child{text-align:left}
dl.facts{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}dt{font-weight:600}dd{margin:0;word-break:break-all}
figure.plot{margin:1.5em 0}figcaption{color:#555;font-size:.9em}
svg text{font-family:system-ui,sans-serif}";

impl Report {
    pub fn to_markdown(&self) -> String {
        let mut out = format!("# {}\n\n", self.title);
        for (k, v) in &self.facts {
            let _ = writeln!(out, "- **{k}:** {v}");
        }
        if !self.facts.is_empty() {
            out.push('\n');
        }
        for s in &self.sections {
            let _ = writeln!(out, "## {}\n", s.title);
            for b in &s.blocks {
                b.markdown(&mut out);
            }
        }
        out
    }

    pub fn to_html(&self) -> String {
        let mut out = String::new();
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>\n{STYLE}\n</style>\n</head>\n<body>\n<h1>{}</h1>\n",
            esc(&self.title),
            esc(&self.title)
        );
        if !self.facts.is_empty() {
            out.push_str("<dl class=\"facts\">\n");
            for (k, v) in &self.facts {
                let _ = writeln!(out, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(v));
            }
            out.push_str("</dl>\n");
        }
        for s in &self.sections {
            let _ = writeln!(out, "<section>\n<h2>{}</h2>", esc(&s.title));
            for b in &s.blocks {
                b.html(&mut out);
            }
            out.push_str("</section>\n");
        }
        out.push_str("</body>\n</html>\n");
        out
    }

    /// Writes `report.md` and `report.html` into `dir`, each atomically.
    pub fn write(&self, dir: &Path) -> crate::Result<()> {
        tl_core::io::atomic_write(&dir.join("report.md"), self.to_markdown().as_bytes())?;
        tl_core::io::atomic_write(&dir.join("report.html"), self.to_html().as_bytes())?;
        Ok(())
    }
}

impl Section {
    /// The standard section of one [`Evaluation`](crate::Evaluation): headline metrics
    /// with their intervals, per-class scores, the confusion matrix and calibration.
    pub fn evaluation(title: &str, e: &crate::Evaluation) -> Self {
        let pct = |i: &crate::Interval| {
            vec![
                format!("{:.2} %", 100.0 * i.value),
                format!("[{:.2}, {:.2}] %", 100.0 * i.low, 100.0 * i.high),
            ]
        };
        let mut headline: Vec<Vec<String>> = ["accuracy", "balanced accuracy", "macro-F1"]
            .iter()
            .zip([&e.accuracy, &e.balanced_accuracy, &e.macro_f1])
            .map(|(n, i)| {
                let mut r = vec![n.to_string()];
                r.extend(pct(i));
                r
            })
            .collect();
        let c = &e.calibration;
        headline.push(vec!["log loss".into(), fmt_num(c.log_loss), String::new()]);
        headline.push(vec![
            format!("expected calibration error ({} bins)", e.options.bins),
            fmt_num(c.ece),
            String::new(),
        ]);
        if let (Some(t), Some(ll), Some(ece)) = (c.temperature, c.log_loss_scaled, c.ece_scaled) {
            headline.push(vec![
                "temperature (fitted on validation)".into(),
                fmt_num(t),
                String::new(),
            ]);
            headline.push(vec![
                "log loss, temperature-scaled".into(),
                fmt_num(ll),
                String::new(),
            ]);
            headline.push(vec![
                "calibration error, temperature-scaled".into(),
                fmt_num(ece),
                String::new(),
            ]);
        }
        let per_class: Vec<Vec<String>> = e
            .classes
            .iter()
            .zip(&e.per_class)
            .map(|(name, s)| {
                vec![
                    name.clone(),
                    fmt_num(s.precision),
                    fmt_num(s.recall),
                    fmt_num(s.f1),
                    s.support.to_string(),
                ]
            })
            .collect();
        Section {
            title: title.to_string(),
            blocks: vec![
                Block::Text {
                    text: format!(
                        "{} rows. Intervals: 95 % percentile bootstrap over {} resamples of the rows (seed {}).",
                        e.rows, e.options.resamples, e.options.seed
                    ),
                },
                Block::Table {
                    header: ["metric", "value", "95 % interval"]
                        .map(String::from)
                        .to_vec(),
                    rows: headline,
                },
                Block::Table {
                    header: ["class", "precision", "recall", "F1", "support"]
                        .map(String::from)
                        .to_vec(),
                    rows: per_class,
                },
                Block::Confusion {
                    title: format!("{title}: confusion matrix"),
                    classes: e.classes.clone(),
                    counts: e.confusion.counts.clone(),
                },
                Block::Reliability {
                    title: format!("{title}: reliability diagram"),
                    bins: c.reliability.clone(),
                    scaled: c.reliability_scaled.clone(),
                },
            ],
        }
    }
}
