//! Grid heatmap with a colour bar, for spectrograms and MFCCs, like `librosa.display.specshow`
//! followed by `plt.colorbar()`: row 0 is at the bottom (lowest frequency or first
//! coefficient), columns run left to right in time. As in librosa, the colour map is `magma`
//! when the data has one sign (power, dB) and `coolwarm` when it has both (MFCC).

use std::path::Path;

use plotters::prelude::*;

use crate::colormap::Colormap;
use crate::error::PlotError;
use crate::output::{Target, render_to};
use crate::render::{
    DESC_SIZE, DrawResult, TICK_SIZE, TITLE_H, Ticked, colorbar_width, draw_colorbar, draw_frame, draw_title,
    finite_range, font, nice_step, padded, text_width, tick_label, ticks,
};

/// Chart size in pixels.
const SIZE: (u32, u32) = (800, 480);
/// Colour of cells whose value is NaN or infinite.
const MISSING: RGBColor = RGBColor(255, 255, 255);

/// Writes a heatmap of `data` (`[rows, cols]` row-major, row 0 drawn at the bottom) with a
/// colour bar labelled `colorbar_label` to `path`.
///
/// `x_axis` and `y_axis` are `(label, min, max)`: the grid spans `min..max` on each axis (e.g.
/// `("Time (s)", 0.0, duration)` and `("Hz", 0.0, sr / 2)`), cells are equal-sized. Colours span
/// the finite data range; non-finite cells are white.
///
/// Errors: [`PlotError::InvalidInput`] if `rows` or `cols` is 0, `data.len() != rows * cols`,
/// or an axis has `!(min < max)`; I/O and rendering errors.
#[allow(clippy::too_many_arguments)] // mirrors specshow + colorbar; each argument is distinct
pub fn plot_heatmap(
    path: impl AsRef<Path>,
    data: &[f32],
    rows: usize,
    cols: usize,
    x_axis: (&str, f64, f64),
    y_axis: (&str, f64, f64),
    title: &str,
    colorbar_label: &str,
) -> Result<(), PlotError> {
    let path = path.as_ref();
    heatmap(Target::File(path), data, rows, cols, x_axis, y_axis, title, colorbar_label).map(drop)
}

/// [`plot_heatmap`] into memory: the PNG file's bytes (for a web page).
#[allow(clippy::too_many_arguments)] // the same arguments as plot_heatmap
pub fn heatmap_png(
    data: &[f32],
    rows: usize,
    cols: usize,
    x_axis: (&str, f64, f64),
    y_axis: (&str, f64, f64),
    title: &str,
    colorbar_label: &str,
) -> Result<Vec<u8>, PlotError> {
    heatmap(Target::Memory, data, rows, cols, x_axis, y_axis, title, colorbar_label)
}

#[allow(clippy::too_many_arguments)]
fn heatmap(
    target: Target<'_>,
    data: &[f32],
    rows: usize,
    cols: usize,
    x_axis: (&str, f64, f64),
    y_axis: (&str, f64, f64),
    title: &str,
    colorbar_label: &str,
) -> Result<Vec<u8>, PlotError> {
    let invalid = |reason: String| PlotError::InvalidInput { path: target.path().to_path_buf(), reason };
    if rows == 0 || cols == 0 {
        return Err(invalid(format!("the grid is {rows}x{cols}; rows and cols must be > 0")));
    }
    if rows.checked_mul(cols) != Some(data.len()) {
        return Err(invalid(format!("data has {} values, expected rows * cols = {rows} * {cols}", data.len())));
    }
    for (name, (label, lo, hi)) in [("x", x_axis), ("y", y_axis)] {
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            return Err(invalid(format!("{name} axis {label:?} has range {lo}..{hi}; need finite min < max")));
        }
    }

    let (d_lo, d_hi) = finite_range(data.iter().map(|&v| f64::from(v))).unwrap_or((0.0, 1.0));
    let cmap = if d_lo >= 0.0 || d_hi <= 0.0 { Colormap::Magma } else { Colormap::CoolWarm };
    let (vmin, vmax) = if d_hi > d_lo { (d_lo, d_hi) } else { padded(d_lo, d_hi, 0.0) };

    let (x_label, x_lo, x_hi) = x_axis;
    let (y_label, y_lo, y_hi) = y_axis;
    let x_step = nice_step(x_hi - x_lo, 10);
    let y_step = nice_step(y_hi - y_lo, 8);
    let y_ticks = ticks(y_lo, y_hi, y_step);
    let y_tick_w = y_ticks.iter().map(|v| text_width(&tick_label(*v, y_step), TICK_SIZE)).max().unwrap_or(0);
    let margin = 12;
    let y_area = y_tick_w + 16 + 2 * DESC_SIZE as u32;
    let bar_w = colorbar_width(vmin, vmax, colorbar_label);

    render_to(target, SIZE, |root| -> DrawResult {
        let (main, _) = root.split_horizontally(SIZE.0 - margin - bar_w);
        let mut chart = ChartBuilder::on(&main)
            .margin(margin)
            .margin_top(TITLE_H + 4)
            .margin_right(0)
            .x_label_area_size(52)
            .y_label_area_size(y_area)
            .build_cartesian_2d(Ticked::new(x_lo, x_hi, ticks(x_lo, x_hi, x_step)), Ticked::new(y_lo, y_hi, y_ticks))?;

        let plot = chart.plotting_area().strip_coord_spec();
        let (w, h) = plot.dim_in_pixel();
        let span = vmax - vmin;
        for py in 0..h {
            // Pixel row 0 is the top, i.e. the last data row.
            let row = rows - 1 - (py as usize * rows / h as usize).min(rows - 1);
            for px in 0..w {
                let col = (px as usize * cols / w as usize).min(cols - 1);
                let v = f64::from(data[row * cols + col]);
                let color = if v.is_finite() { cmap.color((v - vmin) / span) } else { MISSING };
                plot.draw_pixel((px as i32, py as i32), &color)?;
            }
        }

        chart
            .configure_mesh()
            .disable_mesh()
            .x_label_formatter(&|v| tick_label(*v, x_step))
            .y_label_formatter(&|v| tick_label(*v, y_step))
            .label_style(font(TICK_SIZE))
            .axis_desc_style(font(DESC_SIZE))
            .x_desc(x_label)
            .y_desc(y_label)
            .draw()?;
        let (xs, ys) = chart.plotting_area().get_pixel_range();
        draw_title(root, title, xs.clone(), margin as i32 + TITLE_H as i32 / 2)?;
        draw_frame(root, (xs.clone(), ys.clone()))?;
        draw_colorbar(root, cmap, (vmin, vmax), colorbar_label, xs.end - 1, ys)
    })
}
