//! The PNG plot: attach latency against N for berth and each peer (log scale), drawn with
//! plotters' bitmap backend. Text goes through ab_glyph with a TTF read at run time (DejaVu Sans,
//! Debian's `fonts-dejavu-core`, which `cargo xtask bench` installs), so nothing needs
//! fontconfig or a display.

use std::path::Path;
use std::time::Duration;

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::scale::Scale;
use crate::stats::Summary;

/// Where the font is looked for.
pub const FONTS: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

fn color(key: &str) -> RGBColor {
    match key {
        "lib" => RGBColor(31, 90, 200),
        "netctl" => RGBColor(20, 150, 60),
        "bcni" => RGBColor(140, 60, 170),
        "netavark" => RGBColor(210, 40, 40),
        "nv2" => RGBColor(150, 20, 110),
        _ => RGBColor(230, 140, 0),
    }
}

/// One subject's curve: key, label, binned growing attaches, sampled checkpoints.
type Series<'a> = (&'a str, &'a str, Vec<(f64, f64)>, Vec<(f64, f64)>);

/// Medians of `fill` in about 50 buckets of N: `(N, ms)`.
fn binned(fill: &[(u32, Duration)], max_n: u32) -> Vec<(f64, f64)> {
    let width = (max_n / 50).max(1);
    let mut out = Vec::new();
    let mut i = 0;
    while i < fill.len() {
        let b = fill[i].0 / width;
        let mut v = Vec::new();
        while i < fill.len() && fill[i].0 / width == b {
            v.push(fill[i].1);
            i += 1;
        }
        let x = f64::from(b * width) + f64::from(width - 1) / 2.0;
        out.push((x, Summary::of(&v).median));
    }
    out
}

/// Draws `scale` into `path`.
pub fn draw(scale: &Scale, path: &Path) -> Result<(), String> {
    let font = FONTS
        .iter()
        .find_map(|p| std::fs::read(p).ok())
        .ok_or_else(|| format!("no TTF font at {FONTS:?} (Debian: fonts-dejavu-core)"))?;
    let font: &'static [u8] = Box::leak(font.into_boxed_slice());
    register_font("sans-serif", FontStyle::Normal, font).map_err(|_| "bad font file")?;
    let max_n = scale.checkpoints.iter().copied().max().unwrap_or(1);
    let series: Vec<Series> = scale
        .subjects
        .iter()
        .map(|s| {
            let points =
                s.at.iter()
                    .map(|a| {
                        let t: Vec<Duration> = a.samples.iter().map(|o| o.elapsed).collect();
                        (f64::from(a.n), Summary::of(&t).median)
                    })
                    .collect();
            (s.key, s.label, binned(&s.fill, max_n), points)
        })
        .collect();
    let all = series
        .iter()
        .flat_map(|s| s.2.iter().chain(&s.3).map(|p| p.1))
        .filter(|v| *v > 0.0);
    let (lo, hi) = all.fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if hi <= 0.0 {
        return Err("nothing to plot".into());
    }
    let root = BitMapBackend::new(path, (1100, 700)).into_drawing_area();
    let e = |e: DrawingAreaErrorKind<_>| format!("plot: {e:?}");
    root.fill(&WHITE).map_err(e)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Attach latency with N containers attached (one published port each)",
            ("sans-serif", 24),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(
            0f64..f64::from(max_n) * 1.02,
            (lo * 0.7..hi * 1.4).log_scale(),
        )
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("containers attached (N)   —   lines: every attach while growing (median per bin); dots: sampled next attaches")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_desc("attach latency, ms (log scale)")
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .draw()
        .map_err(e)?;
    for (key, label, line, points) in &series {
        let c = color(key);
        chart
            .draw_series(LineSeries::new(line.iter().copied(), c.stroke_width(2)))
            .map_err(e)?
            .label(label.to_string())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(3)));
        chart
            .draw_series(points.iter().map(|p| Circle::new(*p, 5, c.filled())))
            .map_err(e)?;
    }
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(e)?;
    root.present().map_err(e)?;
    Ok(())
}
