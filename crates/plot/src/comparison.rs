//! The architecture comparison chart (the seed's figure, as in the EfficientNet and timm
//! papers): ImageNet top-1 against operations (GMACs, log scale), one labelled bubble per model
//! with its area proportional to the parameter count, coloured by family; a second panel puts
//! the same accuracy against the latency measured on this machine.
//!
//! Both x axes are logarithmic: the values are drawn as `log10(x)` on a linear axis with ticks
//! at 1, 2 and 5 times each power of ten, labelled with the plain value.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::PlotError;
use crate::output::{Target, render_to};
use crate::render::{
    DESC_SIZE, DrawResult, TICK_SIZE, TITLE_H, Ticked, draw_frame, draw_title, font, nice_step, padded, tick_label,
    ticks,
};

/// One model of the chart.
#[derive(Clone, Debug, PartialEq)]
pub struct ComparisonPoint {
    /// The bubble's label (the model name).
    pub label: String,
    /// Its family; one colour per family.
    pub family: String,
    /// Parameters (bubble area).
    pub params: f64,
    /// Multiply-accumulates of one image, billions (left panel's x).
    pub gmacs: f64,
    /// Top-1 accuracy, percent (y).
    pub top1: f64,
    /// Measured milliseconds per image (right panel's x), if measured.
    pub latency_ms: Option<f64>,
}

/// Chart size: two panels side by side, a legend strip and a caption line.
const SIZE: (u32, u32) = (1800, 820);
/// Width of the family legend at the right.
const LEGEND_W: u32 = 190;
/// Height of the caption strip at the bottom.
const CAPTION_H: u32 = 40;
/// Radius in pixels of the bubble of the largest model.
const MAX_RADIUS: f64 = 34.0;
/// Radius of the smallest bubble, so that tiny models stay visible.
const MIN_RADIUS: f64 = 3.0;

/// matplotlib's `tab20` (pairs of dark and light), darks first: distinct colours for up to
/// 20 families, then repeated.
const PALETTE: [RGBColor; 20] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x17, 0xbe, 0xcf),
    RGBColor(0xae, 0xc7, 0xe8),
    RGBColor(0xff, 0xbb, 0x78),
    RGBColor(0x98, 0xdf, 0x8a),
    RGBColor(0xff, 0x98, 0x96),
    RGBColor(0xc5, 0xb0, 0xd5),
    RGBColor(0xc4, 0x9c, 0x94),
    RGBColor(0xf7, 0xb6, 0xd2),
    RGBColor(0xc7, 0xc7, 0xc7),
    RGBColor(0xdb, 0xdb, 0x8d),
    RGBColor(0x9e, 0xda, 0xe5),
];

/// Writes the two-panel comparison chart of `points` to `path`. `latency_desc` is the right
/// panel's x-axis description (batch, threads), `caption` the line under the chart (the source
/// of the accuracies). Points with a non-finite or non-positive GMACs, parameter count or
/// top-1 are left out; the right panel shows only points with a latency.
///
/// Errors: [`PlotError::InvalidInput`] when no point can be drawn; I/O and rendering errors.
pub fn plot_comparison(
    path: impl AsRef<Path>,
    points: &[ComparisonPoint],
    latency_desc: &str,
    caption: &str,
) -> Result<(), PlotError> {
    let path = path.as_ref();
    comparison(Target::File(path), points, latency_desc, caption).map(drop)
}

/// [`plot_comparison`] into memory: the PNG file's bytes (for a web page).
pub fn comparison_png(points: &[ComparisonPoint], latency_desc: &str, caption: &str) -> Result<Vec<u8>, PlotError> {
    comparison(Target::Memory, points, latency_desc, caption)
}

/// A panel: its title, its x-axis description, and each point with its x value.
type Panel<'a> = (&'a str, &'a str, Vec<(&'a ComparisonPoint, f64)>);

fn usable(p: &ComparisonPoint) -> bool {
    [p.params, p.gmacs, p.top1].iter().all(|v| v.is_finite() && *v > 0.0)
}

/// Ticks at 1, 2 and 5 times each power of ten inside `lo..hi` (log10 units).
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut out = Vec::new();
    for k in (lo.floor() as i32)..=(hi.ceil() as i32) {
        for m in [1.0, 2.0, 5.0] {
            let v = (m * 10f64.powi(k)).log10();
            if v >= lo && v <= hi {
                out.push(v);
            }
        }
    }
    out
}

/// A value given in log10 units as plain text: `0.05`, `2`, `500`.
fn log_label(v: f64) -> String {
    let x = 10f64.powf(v);
    let digits = if x >= 1.0 { 0 } else { (-x.log10()).ceil().clamp(0.0, 6.0) as usize };
    format!("{x:.digits$}")
}

fn comparison(
    target: Target<'_>,
    points: &[ComparisonPoint],
    latency_desc: &str,
    caption: &str,
) -> Result<Vec<u8>, PlotError> {
    let pts: Vec<&ComparisonPoint> = points.iter().filter(|p| usable(p)).collect();
    if pts.is_empty() {
        return Err(PlotError::InvalidInput {
            path: target.path().to_path_buf(),
            reason: "no model has a positive GMACs, parameter count and top-1 to plot".into(),
        });
    }
    let mut families: Vec<&str> = Vec::new();
    for p in &pts {
        if !families.contains(&p.family.as_str()) {
            families.push(&p.family);
        }
    }
    let colour = |family: &str| PALETTE[families.iter().position(|f| *f == family).unwrap_or(0) % PALETTE.len()];
    let max_params = pts.iter().map(|p| p.params).fold(0.0, f64::max);
    let radius = |params: f64| (MAX_RADIUS * (params / max_params).sqrt()).max(MIN_RADIUS);

    let (y_lo, y_hi) = pts.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.top1), b.max(p.top1)));
    let (y_lo, y_hi) = padded(y_lo, y_hi, 0.08);
    let y_step = nice_step(y_hi - y_lo, 8);

    render_to(target, SIZE, |root| -> DrawResult {
        let (w, h) = root.dim_in_pixel();
        let (body, bottom) = root.split_vertically(h - CAPTION_H);
        let (panels, legend) = body.split_horizontally(w - LEGEND_W);
        let halves = panels.split_evenly((1, 2));
        let lat: Vec<(&ComparisonPoint, f64)> =
            pts.iter().filter_map(|p| p.latency_ms.filter(|l| l.is_finite() && *l > 0.0).map(|l| (*p, l))).collect();
        let panels: [Panel<'_>; 2] = [
            ("ImageNet top-1 vs GMACs", "GMACs per image (log scale)", pts.iter().map(|p| (*p, p.gmacs)).collect()),
            ("ImageNet top-1 vs latency here", latency_desc, lat),
        ];
        for (area, (title, x_desc, series)) in halves.iter().zip(panels) {
            if series.is_empty() {
                let style = font(DESC_SIZE).pos(Pos::new(HPos::Center, VPos::Center));
                let (aw, ah) = area.dim_in_pixel();
                area.draw(&Text::new(format!("{title}: not measured"), (aw as i32 / 2, ah as i32 / 2), style))?;
                continue;
            }
            let logs: Vec<f64> = series.iter().map(|(_, x)| x.log10()).collect();
            let (x_lo, x_hi) = logs.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
            let (x_lo, x_hi) = padded(x_lo, x_hi, 0.08);
            let mut chart = ChartBuilder::on(area)
                .margin(12)
                .margin_top(TITLE_H + 4)
                .margin_right(24)
                .x_label_area_size(52)
                .y_label_area_size(80)
                .build_cartesian_2d(
                    Ticked::new(x_lo, x_hi, log_ticks(x_lo, x_hi)),
                    Ticked::new(y_lo, y_hi, ticks(y_lo, y_hi, y_step)),
                )?;
            chart
                .configure_mesh()
                .light_line_style(TRANSPARENT)
                .bold_line_style(RGBColor(230, 230, 230))
                .x_label_formatter(&|v| log_label(*v))
                .y_label_formatter(&|v| tick_label(*v, y_step))
                .label_style(font(TICK_SIZE))
                .axis_desc_style(font(DESC_SIZE))
                .x_desc(x_desc)
                .y_desc("Top-1 accuracy (%)")
                .draw()?;
            let pixels = chart.plotting_area().get_pixel_range();
            // the pixel range is in the whole picture's coordinates: draw on the root
            draw_title(root, title, pixels.0.clone(), 12 + TITLE_H as i32 / 2)?;
            // largest first, so that small bubbles stay visible on top
            let mut order: Vec<usize> = (0..series.len()).collect();
            order.sort_by(|&a, &b| series[b].0.params.total_cmp(&series[a].0.params));
            for &i in &order {
                let (p, _) = series[i];
                let c = colour(&p.family);
                let r = radius(p.params).round() as i32;
                let at = (logs[i], p.top1);
                chart.draw_series([Circle::new(at, r, c.mix(0.45).filled())])?;
                chart.draw_series([Circle::new(at, r, c.stroke_width(1))])?;
            }
            let label_style = font(11.0).pos(Pos::new(HPos::Left, VPos::Center));
            for (i, (p, _)) in series.iter().enumerate() {
                let r = radius(p.params).round() as i32;
                let offset = (r / 2 + 3, -(r / 2) - 3);
                let label =
                    EmptyElement::at((logs[i], p.top1)) + Text::new(p.label.clone(), offset, label_style.clone());
                chart.plotting_area().draw(&label)?;
            }
            draw_frame(root, pixels)?;
        }
        // families, with the colour of their bubbles
        let head = font(DESC_SIZE).pos(Pos::new(HPos::Left, VPos::Center));
        legend.draw(&Text::new("family", (8, TITLE_H as i32 + 24), head))?;
        let item = font(TICK_SIZE).pos(Pos::new(HPos::Left, VPos::Center));
        for (k, f) in families.iter().enumerate() {
            let y = TITLE_H as i32 + 52 + 24 * k as i32;
            let c = colour(f);
            legend.draw(&Circle::new((16, y), 7, c.mix(0.6).filled()))?;
            legend.draw(&Circle::new((16, y), 7, c.stroke_width(1)))?;
            legend.draw(&Text::new(f.to_string(), (30, y), item.clone()))?;
        }
        let note = font(TICK_SIZE).pos(Pos::new(HPos::Left, VPos::Center));
        let y = TITLE_H as i32 + 60 + 24 * families.len() as i32;
        legend.draw(&Text::new("bubble area ∝ parameters", (8, y), note))?;
        let cap = font(TICK_SIZE).pos(Pos::new(HPos::Center, VPos::Center));
        bottom.draw(&Text::new(caption.to_string(), (w as i32 / 2, CAPTION_H as i32 / 2), cap))?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(label: &str, family: &str, params: f64, gmacs: f64, top1: f64, latency: Option<f64>) -> ComparisonPoint {
        ComparisonPoint { label: label.into(), family: family.into(), params, gmacs, top1, latency_ms: latency }
    }

    #[test]
    fn log_ticks_are_one_two_five() {
        let t: Vec<String> = log_ticks(-1.2, 1.0).iter().map(|v| log_label(*v)).collect();
        assert_eq!(t, ["0.1", "0.2", "0.5", "1", "2", "5", "10"]);
    }

    #[test]
    fn draws_a_png_and_rejects_nothing_to_draw() {
        let pts = [
            point("resnet50", "resnet", 25.6e6, 4.1, 80.4, Some(40.0)),
            point("vgg16", "vgg", 138.4e6, 15.5, 71.6, None),
            point("lite0", "efficientnet", 4.7e6, 0.39, 74.8, Some(9.0)),
            point("no_result", "lenet", 6e4, 0.0004, f64::NAN, None),
        ];
        let png = comparison_png(&pts, "ms per image", "source").unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let dir = tempfile::tempdir().unwrap();
        plot_comparison(dir.path().join("c.png"), &pts, "ms per image", "source").unwrap();
        // the same picture, whether written or returned
        let pixels = |bytes: Vec<u8>| {
            let mut reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().unwrap();
            let mut buf = vec![0; reader.output_buffer_size().unwrap()];
            reader.next_frame(&mut buf).unwrap();
            buf
        };
        assert!(pixels(std::fs::read(dir.path().join("c.png")).unwrap()) == pixels(png));
        let e = comparison_png(&pts[3..], "ms", "").unwrap_err();
        assert!(matches!(e, PlotError::InvalidInput { .. }), "{e}");
    }
}
