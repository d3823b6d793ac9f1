//! Confusion-matrix heatmap, like scikit-learn's `ConfusionMatrixDisplay`: rows are true
//! labels (first at the top), columns predicted labels, cells coloured with a Blues map and
//! labelled with their counts (white text on dark cells), a colour bar on the right.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::colormap::Colormap;
use crate::error::PlotError;
use crate::render::{Ticked, DrawResult, draw_colorbar, font, render_png, text_width};

/// Writes a confusion-matrix PNG to `path`.
///
/// `matrix[i][j]` counts examples of true class `i` predicted as class `j`; `labels[i]` names
/// class `i`. The matrix must be square with one row per label.
///
/// Errors: [`PlotError::InvalidInput`] for an empty or non-square matrix or a label count that
/// differs from its size; I/O and rendering errors.
pub fn plot_confusion_matrix(
    path: impl AsRef<Path>,
    labels: &[String],
    matrix: &[Vec<u64>],
    title: &str,
) -> Result<(), PlotError> {
    let path = path.as_ref();
    let invalid = |reason: String| PlotError::InvalidInput {
        path: path.to_path_buf(),
        reason,
    };
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

    let max = matrix.iter().flatten().copied().max().unwrap_or(0).max(1);
    // Cell size shrinks with the class count; counts get a font that fits the cell.
    let cell = (520 / n as u32).clamp(18, 64);
    let grid = cell * n as u32;
    let count_digits = max.to_string().len() as f64;
    let count_size = (f64::from(cell) * 0.4).min(f64::from(cell) * 1.6 / count_digits).clamp(7.0, 16.0);
    let tick_size = 13.0;
    let widest = labels.iter().map(|l| text_width(l, tick_size)).max().unwrap_or(0);
    let rotate_x = widest + 6 > cell;
    let y_area = widest + 44;
    let x_area = if rotate_x { widest + 44 } else { 52 };
    let (title_h, margin, bar_w) = (40, 12, 100);
    let width = margin + y_area + grid + 8 + bar_w + margin;
    let height = margin + title_h + grid + x_area + margin;

    render_png(path, (width, height), |root| -> DrawResult {
        let root = root.margin(margin, margin, margin, margin);
        let (main, bar) = root.split_horizontally(y_area + grid + 8);
        let main = main.titled(title, font(20.0))?;
        let key = |k: usize| k as f64 + 0.5;
        let nf = n as f64;
        let mut chart = ChartBuilder::on(&main)
            .margin_right(8)
            .x_label_area_size(x_area)
            .y_label_area_size(y_area)
            .build_cartesian_2d(
                Ticked::new(0.0, nf, (0..n).map(key).collect()),
                Ticked::new(0.0, nf, (0..n).map(key).collect()),
            )?;
        let x_fmt = |v: &f64| labels.get(v.floor() as usize).cloned().unwrap_or_default();
        // Row 0 is drawn at the top: y = n - 1 - i.
        let y_fmt = |v: &f64| {
            let i = n as i64 - 1 - v.floor() as i64;
            usize::try_from(i).ok().and_then(|i| labels.get(i)).cloned().unwrap_or_default()
        };
        let x_style = if rotate_x {
            font(tick_size).transform(FontTransform::Rotate90).pos(Pos::new(HPos::Left, VPos::Center))
        } else {
            font(tick_size)
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .x_label_style(x_style)
            .y_label_style(font(tick_size))
            .axis_desc_style(font(15.0))
            .x_desc("Predicted label")
            .y_desc("True label")
            .draw()?;

        let cmap = Colormap::Blues;
        for (i, row) in matrix.iter().enumerate() {
            for (j, &count) in row.iter().enumerate() {
                let t = count as f64 / max as f64;
                let (x, y) = (j as f64, (n - 1 - i) as f64);
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(x, y), (x + 1.0, y + 1.0)],
                    cmap.color(t).filled(),
                )))?;
                let text_color = if cmap.luminance(t) > 0.5 { BLACK } else { WHITE };
                let style = font(count_size).color(&text_color).pos(Pos::new(HPos::Center, VPos::Center));
                chart.draw_series(std::iter::once(Text::new(count.to_string(), (x + 0.5, y + 0.5), style)))?;
            }
        }
        chart.plotting_area().draw(&Rectangle::new([(0.0, 0.0), (nf, nf)], BLACK.stroke_width(1)))?;

        draw_colorbar(&bar, cmap, 0.0, max as f64, "", (title_h, x_area))
    })
}
