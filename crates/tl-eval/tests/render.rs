//! The HTML report rendered by headless Chromium: every plot is present and carries the
//! numbers it was built from, and the plots are actually drawn (their colours are on the
//! screenshot). Needs Chromium (`cargo xtask test` installs it when missing).

use std::path::Path;

use tl_eval::browser::Chromium;
use tl_eval::{Bar, Block, Evaluation, Point, Report, Section, Series};

mod common;

fn evaluation() -> Evaluation {
    let g = common::golden();
    let c = &g.cases[2];
    let names: Vec<String> = ["zero", "one", "two <&>", "three", "four"][..c.classes]
        .iter()
        .map(|s| s.to_string())
        .collect();
    c.evaluate(&names)
}

/// Every confusion-matrix cell, reliability bin, curve point and bar of `report`, looked
/// up in the DOM Chromium parsed.
pub fn assert_dom_carries(report: &Report, dom: &str) {
    let blocks = report.sections.iter().flat_map(|s| &s.blocks);
    for b in blocks {
        match b {
            Block::Confusion { counts, .. } => {
                if let Err(e) = tl_eval::browser::check_confusion_cells(dom, counts) {
                    panic!("{e}");
                }
            }
            Block::Reliability { bins, scaled, .. } => {
                assert!(dom.contains("data-plot=\"reliability\""));
                for (name, bins) in [("uncalibrated", bins), ("temperature-scaled", scaled)] {
                    let shown = dom
                        .matches(&format!("class=\"bin\" data-series=\"{name}\""))
                        .count();
                    assert_eq!(
                        shown,
                        bins.iter().filter(|b| b.rows > 0).count(),
                        "{name} bins"
                    );
                    for b in bins.iter().filter(|b| b.rows > 0) {
                        let want = format!(
                            "data-rows=\"{}\" data-confidence=\"{}\" data-accuracy=\"{}\"",
                            b.rows, b.confidence, b.accuracy
                        );
                        assert!(dom.contains(&want), "{name} bin {want} missing");
                    }
                }
            }
            Block::Curves { series, .. } => {
                assert!(dom.contains("data-plot=\"curves\""));
                for s in series {
                    for p in &s.points {
                        assert!(
                            dom.contains(&format!("data-x=\"{}\" data-y=\"{}\"", p.x, p.y)),
                            "{} point {p:?}",
                            s.name
                        );
                    }
                }
            }
            Block::Bars { bars, .. } => {
                assert!(dom.contains("data-plot=\"bars\""));
                for b in bars {
                    assert!(
                        dom.contains(&format!("data-value=\"{}\"", b.value)),
                        "bar {}",
                        b.label
                    );
                }
            }
            Block::Text { .. } | Block::Table { .. } => {}
        }
    }
}

/// Pixels of exactly `rgb` in the screenshot.
pub fn pixels_of(png: &Path, rgb: [u8; 3]) -> usize {
    let img = image::open(png).unwrap().to_rgb8();
    img.pixels().filter(|p| p.0 == rgb).count()
}

#[test]
fn report_renders_in_chromium_with_its_numbers() {
    let e = evaluation();
    let curve = |name: &str, base: f64| Series {
        name: name.into(),
        points: [1.0, 2.0, 5.0, 10.0, 20.0]
            .iter()
            .map(|&x| {
                let y = base + 0.1 * f64::ln(x);
                Point {
                    x,
                    y,
                    low: Some(y - 0.02),
                    high: Some(y + 0.02),
                }
            })
            .collect(),
    };
    let report = Report {
        title: "render test".into(),
        facts: vec![("model".into(), "efficientnet-lite0".into())],
        sections: vec![
            Section::evaluation("test", &e),
            Section {
                title: "learning curve".into(),
                blocks: vec![Block::Curves {
                    title: "accuracy against labels per class".into(),
                    x_label: "labels per class".into(),
                    y_label: "accuracy".into(),
                    log_x: true,
                    series: vec![curve("transfer", 0.6), curve("from scratch", 0.3)],
                }],
            },
            Section {
                title: "methods".into(),
                blocks: vec![Block::Bars {
                    title: "target accuracy".into(),
                    value_label: "accuracy".into(),
                    bars: vec![
                        Bar {
                            label: "none".into(),
                            value: 0.594,
                            low: Some(0.58),
                            high: Some(0.61),
                        },
                        Bar {
                            label: "mcc".into(),
                            value: 0.678,
                            low: Some(0.66),
                            high: Some(0.69),
                        },
                    ],
                }],
            },
        ],
    };
    let dir = tempfile::tempdir().unwrap();
    report.write(dir.path()).unwrap();
    if let Some(keep) = std::env::var_os("TL_KEEP_REPORT") {
        report.write(Path::new(&keep)).unwrap();
    }
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    let row0: Vec<String> = e.confusion.counts[0]
        .iter()
        .map(|v| v.to_string())
        .collect();
    assert!(
        md.contains(&format!("| zero | {} |", row0.join(" | "))),
        "{md}"
    );
    let html = dir.path().join("report.html");
    let chromium = Chromium::find().expect("this test needs Chromium");
    let dom = chromium.dump_dom(&html).unwrap();
    assert_dom_carries(&report, &dom);
    // Class names are escaped, not markup.
    assert!(dom.contains("two &lt;&amp;&gt;"));
    // Drawn, not only parsed: the bars' and the second curve's colours, and the shade of
    // the confusion matrix's largest row share, are on the screenshot.
    let png = dir.path().join("shot.png");
    chromium.screenshot(&html, &png, 1100, 4000).unwrap();
    assert!(pixels_of(&png, [0x00, 0x72, 0xb2]) > 500, "no bars drawn");
    assert!(
        pixels_of(&png, [0xd5, 0x5e, 0x00]) > 50,
        "no second series drawn"
    );
    let top_share = e
        .confusion
        .counts
        .iter()
        .filter(|r| r.iter().sum::<u64>() > 0)
        .map(|r| *r.iter().max().unwrap() as f64 / r.iter().sum::<u64>() as f64)
        .fold(0.0, f64::max);
    let s = top_share;
    let mix = |a: f64, b: f64| (a + (b - a) * s).round() as u8;
    let shade = [mix(255.0, 8.0), mix(255.0, 69.0), mix(255.0, 148.0)];
    assert!(
        pixels_of(&png, shade) > 100,
        "no confusion cell of shade {shade:?}"
    );
}
