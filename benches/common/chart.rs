//! An SVG bar chart of figures against their targets, for the README: one row per figure, its
//! bar the figure over its target (the dashed line is 1.0, the target; lower is better),
//! labelled with the figure and its unit.
//!
//! Written by hand rather than with plotters: the chart is a few rectangles and labels, and
//! plotters' SVG backend without system fonts only estimates text widths (its `ttf` feature
//! needs fontconfig and freetype); this needs no dependency and no font.

/// One figure and the target it is held against (lower is better).
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub target: f64,
    pub unit: &'static str,
}

/// Escapes text for an SVG text node.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The chart as an SVG document.
pub fn svg(title: &str, bars: &[Bar]) -> String {
    const ROW: f64 = 26.0;
    const LEFT: f64 = 330.0;
    const WIDTH: f64 = 420.0;
    const TOP: f64 = 50.0;
    // The x axis runs to the largest ratio shown (at least 2x, at most 4x: longer bars are cut
    // and marked).
    let max = bars
        .iter()
        .map(|b| b.value / b.target)
        .filter(|r| r.is_finite())
        .fold(2.0f64, f64::max)
        .min(4.0);
    let x = |r: f64| LEFT + WIDTH * (r.clamp(0.0, max) / max);
    let h = TOP + ROW * bars.len() as f64 + 40.0;
    let w = LEFT + WIDTH + 230.0;
    let mut o = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"24\" font-size=\"15\">{}</text>\n",
        esc(title)
    );
    for (i, b) in bars.iter().enumerate() {
        let y = TOP + ROW * i as f64;
        let r = b.value / b.target;
        let color = if r <= 1.0 { "#3a8a3a" } else { "#c0392b" };
        let cut = if r > max { " (cut)" } else { "" };
        o += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n\
             <rect x=\"{LEFT}\" y=\"{}\" width=\"{:.1}\" height=\"{}\" fill=\"{color}\"/>\n\
             <text x=\"{}\" y=\"{}\">{:.2} {} = {:.2}x target {:.2}{}</text>\n",
            LEFT - 8.0,
            y + 16.0,
            esc(&b.label),
            y + 4.0,
            x(r) - LEFT,
            ROW - 8.0,
            x(r.min(max)) + 6.0,
            y + 16.0,
            b.value,
            esc(b.unit),
            r,
            b.target,
            cut
        );
    }
    let bottom = TOP + ROW * bars.len() as f64;
    o += &format!(
        "<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"black\" stroke-dasharray=\"4 3\"/>\n\
         <text x=\"{0}\" y=\"{3}\" text-anchor=\"middle\">1.0x = target</text>\n\
         <line x1=\"{LEFT}\" y1=\"{2}\" x2=\"{4}\" y2=\"{2}\" stroke=\"black\"/>\n\
         <text x=\"{4}\" y=\"{3}\" text-anchor=\"end\">{5:.1}x</text>\n</svg>\n",
        x(1.0),
        TOP - 6.0,
        bottom,
        bottom + 18.0,
        LEFT + WIDTH,
        max
    );
    o
}
