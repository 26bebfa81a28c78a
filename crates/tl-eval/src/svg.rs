//! The report's plots as inline SVG strings. Each mark carries its value in a `data-*`
//! attribute and a `<title>` tooltip, and the confusion matrix and bars print theirs.

use std::fmt::Write as _;

use crate::calibration::Bin;
use crate::report::{Bar, Series, esc, fmt_num};

/// Colours of successive series (colour-blind safe, Okabe & Ito).
const PALETTE: [&str; 8] = [
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#f0e442", "#000000",
];

/// Round tick values covering [lo, hi], about `n` of them.
fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
        return vec![lo];
    }
    let raw = (hi - lo) / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

fn tick_label(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

/// A plotting frame: data ranges mapped onto a pixel box.
struct Frame {
    left: f64,
    top: f64,
    width: f64,
    height: f64,
    x: (f64, f64),
    y: (f64, f64),
    log_x: bool,
}

impl Frame {
    fn fx(&self, v: f64) -> f64 {
        let (v, lo, hi) = if self.log_x {
            (v.ln(), self.x.0.ln(), self.x.1.ln())
        } else {
            (v, self.x.0, self.x.1)
        };
        self.left + (v - lo) / (hi - lo) * self.width
    }

    fn fy(&self, v: f64) -> f64 {
        self.top + self.height - (v - self.y.0) / (self.y.1 - self.y.0) * self.height
    }

    /// Axes, grid, ticks and axis titles.
    fn axes(&self, out: &mut String, x_ticks: &[f64], x_label: &str, y_label: &str) {
        let (l, t, w, h) = (self.left, self.top, self.width, self.height);
        for v in ticks(self.y.0, self.y.1, 5) {
            let y = self.fy(v);
            let _ = write!(
                out,
                "<line x1=\"{l:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#e5e5e5\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{}</text>",
                l + w,
                l - 6.0,
                y + 4.0,
                tick_label(v)
            );
        }
        for &v in x_ticks {
            let x = self.fx(v);
            let _ = write!(
                out,
                "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#999\"/><text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
                t + h,
                t + h + 4.0,
                t + h + 17.0,
                tick_label(v)
            );
        }
        let _ = write!(
            out,
            "<rect x=\"{l:.1}\" y=\"{t:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" fill=\"none\" stroke=\"#999\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"middle\">{}</text>\
             <text transform=\"translate({:.1},{:.1}) rotate(-90)\" font-size=\"12\" text-anchor=\"middle\">{}</text>",
            l + w / 2.0,
            t + h + 36.0,
            esc(x_label),
            l - 42.0,
            t + h / 2.0,
            esc(y_label)
        );
    }
}

fn open_svg(out: &mut String, w: f64, h: f64, label: &str) {
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w:.0}\" height=\"{h:.0}\" viewBox=\"0 0 {w:.0} {h:.0}\" role=\"img\" aria-label=\"{}\">",
        esc(label)
    );
}

/// Interpolates white → a deep blue by `s` in [0, 1].
fn shade(s: f64) -> String {
    let s = s.clamp(0.0, 1.0);
    let mix = |a: f64, b: f64| (a + (b - a) * s).round() as u8;
    format!(
        "#{:02x}{:02x}{:02x}",
        mix(255.0, 8.0),
        mix(255.0, 69.0),
        mix(255.0, 148.0)
    )
}

pub(crate) fn confusion(classes: &[String], counts: &[Vec<u64>]) -> String {
    let k = classes.len().max(1);
    let cell = (560.0 / k as f64).clamp(14.0, 48.0);
    let label_w = 8.0
        + 7.0
            * classes
                .iter()
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(1)
                .min(24) as f64;
    let (left, top) = (label_w + 26.0, 30.0 + label_w);
    let (w, h) = (left + cell * k as f64 + 10.0, top + cell * k as f64 + 10.0);
    let font = (cell * 0.32).clamp(7.0, 13.0);
    let mut out = String::new();
    open_svg(&mut out, w, h, "confusion matrix");
    let _ = write!(
        out,
        "<text x=\"{:.1}\" y=\"14\" font-size=\"12\" text-anchor=\"middle\">predicted</text>\
         <text transform=\"translate(12,{:.1}) rotate(-90)\" font-size=\"12\" text-anchor=\"middle\">true</text>",
        left + cell * k as f64 / 2.0,
        top + cell * k as f64 / 2.0
    );
    for (j, c) in classes.iter().enumerate() {
        let x = left + cell * (j as f64 + 0.5);
        let _ = write!(
            out,
            "<text transform=\"translate({x:.1},{:.1}) rotate(-60)\" font-size=\"11\">{}</text>",
            top - 4.0,
            esc(c)
        );
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{}</text>",
            left - 4.0,
            top + cell * (j as f64 + 0.5) + 4.0,
            esc(c)
        );
    }
    for (i, row) in counts.iter().enumerate() {
        let n: u64 = row.iter().sum();
        for (j, &v) in row.iter().enumerate() {
            let s = if n > 0 { v as f64 / n as f64 } else { 0.0 };
            let (x, y) = (left + cell * j as f64, top + cell * i as f64);
            let ink = if s > 0.5 { "#fff" } else { "#222" };
            let _ = write!(
                out,
                "<g class=\"cell\" data-true=\"{i}\" data-predicted=\"{j}\" data-count=\"{v}\"><title>true {}, predicted {}: {v} ({:.1} % of the row)</title>\
                 <rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{cell:.1}\" height=\"{cell:.1}\" fill=\"{}\" stroke=\"#fff\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"{font:.1}\" text-anchor=\"middle\" fill=\"{ink}\">{v}</text></g>",
                esc(&classes[i]),
                esc(&classes[j]),
                100.0 * s,
                shade(s),
                x + cell / 2.0,
                y + cell / 2.0 + font / 3.0
            );
        }
    }
    out.push_str("</svg>");
    out
}

pub(crate) fn reliability(bins: &[Bin], scaled: &[Bin]) -> String {
    let f = Frame {
        left: 60.0,
        top: 20.0,
        width: 360.0,
        height: 300.0,
        x: (0.0, 1.0),
        y: (0.0, 1.0),
        log_x: false,
    };
    let mut out = String::new();
    open_svg(&mut out, 620.0, 380.0, "reliability diagram");
    f.axes(&mut out, &ticks(0.0, 1.0, 5), "confidence", "accuracy");
    let _ = write!(
        out,
        "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#888\" stroke-dasharray=\"4 3\"/>",
        f.fx(0.0),
        f.fy(0.0),
        f.fx(1.0),
        f.fy(1.0)
    );
    let mut series = vec![("uncalibrated", bins, PALETTE[0])];
    if !scaled.is_empty() {
        series.push(("temperature-scaled", scaled, PALETTE[1]));
    }
    for (si, (name, bins, colour)) in series.iter().enumerate() {
        for b in bins.iter().filter(|b| b.rows > 0) {
            let (x0, x1) = (f.fx(b.lo), f.fx(b.hi));
            let y = f.fy(b.accuracy);
            let _ = write!(
                out,
                "<g class=\"bin\" data-series=\"{name}\" data-rows=\"{}\" data-confidence=\"{}\" data-accuracy=\"{}\"><title>{name}: confidence ({:.3}, {:.3}], {} rows, mean confidence {:.4}, accuracy {:.4}</title>",
                b.rows, b.confidence, b.accuracy, b.lo, b.hi, b.rows, b.confidence, b.accuracy
            );
            if si == 0 {
                let _ = write!(
                    out,
                    "<rect x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{colour}\" fill-opacity=\"0.55\" stroke=\"{colour}\"/>",
                    x1 - x0,
                    f.fy(0.0) - y
                );
            } else {
                let _ = write!(
                    out,
                    "<line x1=\"{x0:.1}\" y1=\"{y:.1}\" x2=\"{x1:.1}\" y2=\"{y:.1}\" stroke=\"{colour}\" stroke-width=\"3\"/>"
                );
            }
            let _ = write!(
                out,
                "<circle cx=\"{:.1}\" cy=\"{y:.1}\" r=\"2.5\" fill=\"{colour}\"/></g>",
                f.fx(b.confidence)
            );
        }
        let ly = 30.0 + 18.0 * si as f64;
        let _ = write!(
            out,
            "<rect x=\"436\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{colour}\"/><text x=\"454\" y=\"{:.1}\" font-size=\"12\">{name}</text>",
            ly - 10.0,
            ly
        );
    }
    out.push_str("</svg>");
    out
}

pub(crate) fn curves(x_label: &str, y_label: &str, log_x: bool, series: &[Series]) -> String {
    let pts = || series.iter().flat_map(|s| s.points.iter());
    let xs: Vec<f64> = pts().map(|p| p.x).filter(|x| !log_x || *x > 0.0).collect();
    let ys: Vec<f64> = pts()
        .flat_map(|p| [Some(p.y), p.low, p.high])
        .flatten()
        .filter(|v| v.is_finite())
        .collect();
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = |v: &[f64]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (mut x0, mut x1) = (min(&xs), max(&xs));
    if x1.partial_cmp(&x0) != Some(std::cmp::Ordering::Greater) {
        (x0, x1) = if log_x {
            (x0 / 2.0, x0 * 2.0)
        } else {
            (x0 - 1.0, x0 + 1.0)
        };
    }
    let (mut y0, mut y1) = (min(&ys), max(&ys));
    let pad = ((y1 - y0) * 0.05).max(1e-3);
    (y0, y1) = (y0 - pad, y1 + pad);
    if !y0.is_finite() || !y1.is_finite() {
        (y0, y1) = (0.0, 1.0);
    }
    let f = Frame {
        left: 64.0,
        top: 20.0,
        width: 520.0,
        height: 300.0,
        x: (x0, x1),
        y: (y0, y1),
        log_x,
    };
    let x_ticks: Vec<f64> = if log_x {
        let mut v: Vec<f64> = xs.clone();
        v.sort_by(f64::total_cmp);
        v.dedup();
        v
    } else {
        ticks(x0, x1, 6)
    };
    let mut out = String::new();
    let legend_h = 18.0 * series.len() as f64;
    let legend_w = 7.0
        * series
            .iter()
            .map(|s| s.name.chars().count())
            .max()
            .unwrap_or(0) as f64;
    open_svg(
        &mut out,
        640.0 + legend_w,
        (380.0f64).max(40.0 + legend_h),
        &format!("{y_label} against {x_label}"),
    );
    f.axes(&mut out, &x_ticks, x_label, y_label);
    for (si, s) in series.iter().enumerate() {
        let colour = PALETTE[si % PALETTE.len()];
        let ok: Vec<_> = s
            .points
            .iter()
            .filter(|p| p.y.is_finite() && (!log_x || p.x > 0.0))
            .collect();
        let path: Vec<String> = ok
            .iter()
            .map(|p| format!("{:.1},{:.1}", f.fx(p.x), f.fy(p.y)))
            .collect();
        let _ = write!(
            out,
            "<g class=\"series\" data-series=\"{}\"><polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"/>",
            esc(&s.name),
            path.join(" ")
        );
        for p in ok {
            let (x, y) = (f.fx(p.x), f.fy(p.y));
            let _ = write!(
                out,
                "<g class=\"point\" data-x=\"{}\" data-y=\"{}\"><title>{}: {} → {}</title>",
                p.x,
                p.y,
                esc(&s.name),
                fmt_num(p.x),
                fmt_num(p.y)
            );
            if let (Some(lo), Some(hi)) = (p.low, p.high) {
                let _ = write!(
                    out,
                    "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"{colour}\"/>",
                    f.fy(lo),
                    f.fy(hi)
                );
            }
            let _ = write!(
                out,
                "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"{colour}\"/></g>"
            );
        }
        let ly = 30.0 + 18.0 * si as f64;
        let _ = write!(
            out,
            "<rect x=\"600\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{colour}\"/><text x=\"618\" y=\"{ly:.1}\" font-size=\"12\">{}</text></g>",
            ly - 10.0,
            esc(&s.name)
        );
    }
    out.push_str("</svg>");
    out
}

pub(crate) fn bars(value_label: &str, bars: &[Bar]) -> String {
    let label_w = 10.0
        + 7.0
            * bars
                .iter()
                .map(|b| b.label.chars().count())
                .max()
                .unwrap_or(1)
                .min(64) as f64;
    let hi = bars
        .iter()
        .flat_map(|b| [Some(b.value), b.high])
        .flatten()
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let lo = bars
        .iter()
        .flat_map(|b| [Some(b.value), b.low])
        .flatten()
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::min);
    let row = 24.0;
    let f = Frame {
        left: label_w,
        top: 10.0,
        width: 440.0,
        height: row * bars.len().max(1) as f64,
        x: (lo, if hi > lo { hi * 1.05 } else { lo + 1.0 }),
        y: (0.0, 1.0),
        log_x: false,
    };
    let mut out = String::new();
    open_svg(&mut out, label_w + 520.0, f.height + 60.0, value_label);
    for v in ticks(f.x.0, f.x.1, 6) {
        let x = f.fx(v);
        let _ = write!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#e5e5e5\"/><text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
            f.top,
            f.top + f.height,
            f.top + f.height + 15.0,
            tick_label(v)
        );
    }
    let _ = write!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"middle\">{}</text>",
        f.left + f.width / 2.0,
        f.top + f.height + 34.0,
        esc(value_label)
    );
    for (i, b) in bars.iter().enumerate() {
        let y = f.top + row * i as f64;
        let (x0, x1) = (f.fx(0.0f64.max(f.x.0)), f.fx(b.value));
        let _ = write!(
            out,
            "<g class=\"bar\" data-label=\"{}\" data-value=\"{}\"><title>{}: {}</title>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"end\">{}</text>\
             <rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"/>",
            esc(&b.label),
            b.value,
            esc(&b.label),
            fmt_num(b.value),
            f.left - 6.0,
            y + row * 0.65,
            esc(&b.label),
            x0.min(x1),
            y + 4.0,
            (x1 - x0).abs(),
            row - 8.0,
            PALETTE[0]
        );
        if let (Some(l), Some(h)) = (b.low, b.high) {
            let ym = y + row / 2.0;
            let _ = write!(
                out,
                "<line x1=\"{:.1}\" y1=\"{ym:.1}\" x2=\"{:.1}\" y2=\"{ym:.1}\" stroke=\"#222\"/>",
                f.fx(l),
                f.fx(h)
            );
        }
        let end = b.high.map_or(x1, |h| f.fx(h).max(x1));
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\">{}</text></g>",
            end + 4.0,
            y + row * 0.65,
            fmt_num(b.value)
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(
            ticks(0.0, 1.0, 5),
            vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
        );
        let t = ticks(0.53, 0.97, 5);
        assert!(
            t.iter().all(|v| (0.53..=0.97).contains(v)) && t.len() >= 3,
            "{t:?}"
        );
        assert_eq!(tick_label(0.6000000000000001), "0.6");
    }

    #[test]
    fn shade_runs_from_white_to_blue() {
        assert_eq!(shade(0.0), "#ffffff");
        assert_eq!(shade(1.0), "#084594");
    }
}
