//! Bar charts drawn on the server as inline SVG (the statistics page): no
//! script, no external file, nothing the `Content-Security-Policy` has to
//! allow. Colours are presentation attributes, not `style=`.

use maud::{html, Markup};

/// One series: its name (the legend), its colour, a value per label.
pub struct Series<'a> {
    /// The legend's words.
    pub name: &'a str,
    /// An SVG colour.
    pub colour: &'a str,
    /// One value per label.
    pub values: Vec<f64>,
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 240.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 44.0;

/// A bar chart, the series stacked on each label; `unit` follows each value
/// in the tooltips and the axis (`%`, or empty).
pub fn stacked_bars(title: &str, labels: &[String], series: &[Series<'_>], unit: &str) -> Markup {
    let totals: Vec<f64> = (0..labels.len())
        .map(|i| {
            series
                .iter()
                .map(|s| s.values.get(i).copied().unwrap_or(0.0))
                .sum()
        })
        .collect();
    let most = totals.iter().copied().fold(0.0, f64::max);
    // Counts get whole ticks: an axis of at least 4, cut in 4 or 5.
    let top = if unit == "%" {
        nice_max(most)
    } else {
        nice_max(most).max(4.0)
    };
    let ticks = if (top / 4.0).fract() == 0.0 { 4 } else { 5 };
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let slot = plot_w / labels.len().max(1) as f64;
    let bar = (slot * 0.7).min(48.0);
    let y = |v: f64| TOP + plot_h - v / top * plot_h;
    let fmt = |v: f64| {
        if unit == "%" {
            format!("{v:.1}%")
        } else {
            format!("{}", v.round() as u64)
        }
    };
    // Every other label when they would overlap.
    let every = ((labels.len() as f64 * 70.0 / plot_w).ceil() as usize).max(1);
    // The bars: (x, top, height, colour, tooltip), each series on the last.
    let mut rects = Vec::new();
    for (i, label) in labels.iter().enumerate() {
        let x = LEFT + slot * i as f64 + (slot - bar) / 2.0;
        let mut base = 0.0;
        for s in series {
            let v = s.values.get(i).copied().unwrap_or(0.0);
            if v > 0.0 {
                let tip = format!("{label} — {}: {}", s.name, fmt(v));
                rects.push((x, y(base + v), y(base) - y(base + v), s.colour, tip));
            }
            base += v;
        }
    }
    html! {
        figure {
            svg xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } width="100%"
                role="img" aria-label=(title) {
                title { (title) }
                text x=(LEFT) y="16" font-size="13" font-weight="bold" fill="#222" { (title) }
                @for k in 0..=ticks {
                    @let v = top * k as f64 / ticks as f64;
                    line x1=(LEFT) x2=(WIDTH - RIGHT) y1=(y(v)) y2=(y(v)) stroke="#ddd" stroke-width="1" {}
                    text x=(LEFT - 6.0) y=(y(v) + 4.0) font-size="11" text-anchor="end" fill="#555" { (fmt(v)) }
                }
                @for (x, top, h, colour, tip) in &rects {
                    rect x=(x) y=(top) width=(bar) height=(h) fill=(colour) { title { (tip) } }
                }
                @for (i, label) in labels.iter().enumerate() {
                    @if i % every == 0 {
                        text x=(LEFT + slot * i as f64 + slot / 2.0) y=(HEIGHT - BOTTOM + 16.0) font-size="11" text-anchor="middle" fill="#555" { (label) }
                    }
                }
                line x1=(LEFT) x2=(WIDTH - RIGHT) y1=(y(0.0)) y2=(y(0.0)) stroke="#888" stroke-width="1" {}
                @for (j, s) in series.iter().enumerate() {
                    @let lx = LEFT + (plot_w / series.len().max(1) as f64).min(150.0) * j as f64;
                    rect x=(lx) y=(HEIGHT - 14.0) width="10" height="10" fill=(s.colour) {}
                    text x=(lx + 14.0) y=(HEIGHT - 5.0) font-size="11" fill="#333" { (s.name) }
                }
            }
        }
    }
}

/// A round axis maximum at or above `v` (1, 2 or 5 times a power of ten).
fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if v <= m * p {
            return m * p;
        }
    }
    10.0 * p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_are_round_and_bars_are_drawn_to_scale() {
        assert_eq!(
            [0.0, 3.0, 10.0, 11.0, 180.0, 0.4].map(nice_max),
            [1.0, 5.0, 10.0, 20.0, 200.0, 0.5]
        );
        let svg = stacked_bars(
            "Messages <per> week",
            &["2026-W48".into(), "2026-W49".into()],
            &[Series {
                name: "messages",
                colour: "#36c",
                values: vec![50.0, 100.0],
            }],
            "",
        )
        .into_string();
        assert!(svg.contains("Messages &lt;per&gt; week"), "{svg}");
        // Whole ticks for counts: 0, 2, 4 … 10 for an axis of 10.
        let ticks = |most: f64| {
            let svg = stacked_bars(
                "t",
                &["a".into()],
                &[Series {
                    name: "n",
                    colour: "#000",
                    values: vec![most],
                }],
                "",
            )
            .into_string();
            svg.split("text-anchor=\"end\" fill=\"#555\">")
                .skip(1)
                .map(|t| t.split('<').next().unwrap_or("").to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(ticks(0.0), ["0", "1", "2", "3", "4"]);
        assert_eq!(ticks(7.0), ["0", "2", "4", "6", "8", "10"]);
        assert_eq!(ticks(150.0), ["0", "50", "100", "150", "200"]);
        // 100 of an axis of 100: the full plot height (240 - 28 - 44).
        assert!(svg.contains("height=\"168\""), "{svg}");
        assert!(svg.contains("height=\"84\""), "{svg}");
        assert!(
            svg.contains("<title>2026-W49 — messages: 100</title>"),
            "{svg}"
        );
        assert!(!svg.contains("<script"));
    }
}
