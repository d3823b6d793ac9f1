//! Confusion-matrix heatmap, like scikit-learn's `ConfusionMatrixDisplay`: rows are true
//! labels (first at the top), columns predicted labels, cells coloured with a Blues map and
//! labelled with their counts (white text on dark cells), a colour bar on the right.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::colormap::Colormap;
use crate::error::PlotError;
use crate::render::{
    DESC_SIZE, DrawResult, TICK_SIZE, TITLE_H, Ticked, colorbar_width, draw_colorbar, draw_frame, draw_title, font,
    render_png, text_width,
};

/// Largest class count drawn (the image grows with it).
const MAX_CLASSES: usize = 1000;

/// Writes a confusion-matrix PNG to `path`.
///
/// `matrix[i][j]` counts examples of true class `i` predicted as class `j`; `labels[i]` names
/// class `i`. The matrix must be square with one row per label.
///
/// The image grows with the class count (cells of 18 to 96 pixels up to 200 classes, smaller
/// beyond, without counts below 14 pixels).
///
/// Errors: [`PlotError::InvalidInput`] for an empty or non-square matrix, a label count that
/// differs from its size, or more than 1000 classes; I/O and rendering errors.
pub fn plot_confusion_matrix(
    path: impl AsRef<Path>,
    labels: &[String],
    matrix: &[Vec<u64>],
    title: &str,
) -> Result<(), PlotError> {
    let path = path.as_ref();
    let invalid = |reason: String| PlotError::InvalidInput { path: path.to_path_buf(), reason };
    let n = matrix.len();
    if n == 0 {
        return Err(invalid("the matrix is empty".into()));
    }
    if let Some((i, row)) = matrix.iter().enumerate().find(|(_, r)| r.len() != n) {
        return Err(invalid(format!("the matrix has {n} rows but row {i} has {} columns", row.len())));
    }
    if labels.len() != n {
        return Err(invalid(format!("{} labels for a {n}x{n} matrix", labels.len())));
    }

    if n > MAX_CLASSES {
        return Err(invalid(format!("{n} classes; at most {MAX_CLASSES} can be drawn")));
    }

    let max = matrix.iter().flatten().copied().max().unwrap_or(0).max(1);
    // Cell size shrinks with the class count; counts get a font that fits the cell.
    let cell = if n <= 200 { (560 / n as u32).clamp(18, 96) } else { (3600 / n as u32).max(3) };
    let grid = cell * n as u32;
    let count_digits = max.to_string().len() as f64;
    let count_size = (f64::from(cell) * 0.42).min(f64::from(cell) * 1.7 / count_digits).clamp(7.0, 18.0);
    let widest = labels.iter().map(|l| text_width(l, TICK_SIZE)).max().unwrap_or(0);
    // Labels wider than a cell are written vertically under the x axis, as with
    // matplotlib's `xticks_rotation="vertical"`.
    let rotate_x = widest + 6 > cell;
    let y_area = widest + 16 + 2 * DESC_SIZE as u32;
    let x_area = if rotate_x { widest } else { TICK_SIZE as u32 } + 16 + 2 * DESC_SIZE as u32;
    let margin = 12;
    let bar_w = colorbar_width(0.0, max as f64, "");
    let width = margin + y_area + grid + bar_w + margin;
    let height = margin + TITLE_H + 4 + grid + x_area + margin;

    render_png(path, (width, height), |root| -> DrawResult {
        let (main, _) = root.split_horizontally(width - margin - bar_w);
        let key = |k: usize| k as f64 + 0.5;
        let nf = n as f64;
        let mut chart = ChartBuilder::on(&main)
            .margin(margin)
            .margin_top(TITLE_H + 4)
            .margin_right(0)
            .x_label_area_size(x_area)
            .y_label_area_size(y_area)
            .build_cartesian_2d(
                Ticked::new(0.0, nf, (0..n).map(key).collect()),
                Ticked::new(0.0, nf, (0..n).map(key).collect()),
            )?;
        let x_fmt = |v: &f64| {
            if rotate_x { String::new() } else { labels.get(v.floor() as usize).cloned().unwrap_or_default() }
        };
        // Row 0 is drawn at the top: y = n - 1 - i.
        let y_fmt = |v: &f64| {
            let i = n as i64 - 1 - v.floor() as i64;
            usize::try_from(i).ok().and_then(|i| labels.get(i)).cloned().unwrap_or_default()
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .label_style(font(TICK_SIZE))
            .axis_desc_style(font(DESC_SIZE))
            .x_desc("Predicted label")
            .y_desc("True label")
            .draw()?;
        let (xs, ys) = chart.plotting_area().get_pixel_range();
        if rotate_x {
            let style = font(TICK_SIZE).transform(FontTransform::Rotate270).pos(Pos::new(HPos::Right, VPos::Center));
            for (j, label) in labels.iter().enumerate() {
                let (x, _) = chart.backend_coord(&(key(j), 0.0));
                root.draw(&Text::new(label.clone(), (x, ys.end + 9), style.clone()))?;
            }
        }

        let cmap = Colormap::Blues;
        for (i, row) in matrix.iter().enumerate() {
            for (j, &count) in row.iter().enumerate() {
                let t = count as f64 / max as f64;
                let (x, y) = (j as f64, (n - 1 - i) as f64);
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(x, y), (x + 1.0, y + 1.0)],
                    cmap.color(t).filled(),
                )))?;
                if cell < 14 {
                    continue; // too small for readable counts
                }
                let text_color = if cmap.luminance(t) > 0.5 { BLACK } else { WHITE };
                let style = font(count_size).color(&text_color).pos(Pos::new(HPos::Center, VPos::Center));
                chart.draw_series(std::iter::once(Text::new(count.to_string(), (x + 0.5, y + 0.5), style)))?;
            }
        }
        draw_title(root, title, xs.clone(), margin as i32 + TITLE_H as i32 / 2)?;
        draw_frame(root, (xs.clone(), ys.clone()))?;
        draw_colorbar(root, cmap, (0.0, max as f64), "", xs.end - 1, ys)
    })
}
