//! Training-history line charts, matching the Keras course's matplotlib helper
//! `show_train_history(train_history, train, validation)`: one line per series against the
//! epoch, title "Train History", x label "Epoch", legend `["train", "validation"]` upper left.
//! Epochs are numbered from 1.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::error::PlotError;
use crate::render::{
    C0, C1, DESC_SIZE, DrawResult, TICK_SIZE, TITLE_H, Ticked, draw_frame, draw_title, finite_range, font, nice_step,
    padded, render_png, text_width, tick_label, ticks,
};

/// Chart size in pixels: matplotlib's default figure (6.4 x 4.8 in at 100 dpi).
const SIZE: (u32, u32) = (640, 480);

/// Writes a PNG line chart of `train` and `validation` per epoch (1-based) to `path`.
///
/// `train[i]` and `validation[i]` are the values after epoch `i + 1`; the series may differ in
/// length and `validation` may be empty (only `train` is drawn). Non-finite values (a diverged
/// loss) leave a gap in the line. The legend, upper left, shows `train_label` and `val_label`;
/// `ylabel` names the y axis (e.g. `"loss"`, `"accuracy"`), the x axis is `"Epoch"`.
///
/// Errors: [`PlotError::InvalidInput`] if both series are empty; I/O and rendering errors.
pub fn plot_train_history(
    path: impl AsRef<Path>,
    title: &str,
    train: &[f64],
    validation: &[f64],
    train_label: &str,
    val_label: &str,
    ylabel: &str,
) -> Result<(), PlotError> {
    let path = path.as_ref();
    let epochs = train.len().max(validation.len());
    if epochs == 0 {
        return Err(PlotError::InvalidInput {
            path: path.to_path_buf(),
            reason: "both the train and the validation series are empty".into(),
        });
    }
    let (y_lo, y_hi) = finite_range(train.iter().chain(validation).copied()).unwrap_or((0.0, 1.0));
    let (y_lo, y_hi) = padded(y_lo, y_hi, 0.05);
    let (x_lo, x_hi) = if epochs > 1 { padded(1.0, epochs as f64, 0.05) } else { (0.5, 1.5) };
    let x_step = nice_step(epochs as f64 - 1.0, 10).max(1.0);
    let x_ticks = ticks(1.0, epochs as f64, x_step);
    let y_step = nice_step(y_hi - y_lo, 8);
    let y_ticks = ticks(y_lo, y_hi, y_step);
    let y_tick_w = y_ticks.iter().map(|v| text_width(&tick_label(*v, y_step), TICK_SIZE)).max().unwrap_or(0);
    let y_area = y_tick_w + 16 + 2 * DESC_SIZE as u32;

    render_png(path, SIZE, |root| -> DrawResult {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .margin_top(TITLE_H + 4)
            .margin_right(24)
            .x_label_area_size(52)
            .y_label_area_size(y_area)
            .build_cartesian_2d(Ticked::new(x_lo, x_hi, x_ticks), Ticked::new(y_lo, y_hi, y_ticks))?;
        chart
            .configure_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(RGBColor(225, 225, 225))
            .x_label_formatter(&|v| tick_label(*v, 1.0))
            .y_label_formatter(&|v| tick_label(*v, y_step))
            .label_style(font(TICK_SIZE))
            .axis_desc_style(font(DESC_SIZE))
            .x_desc("Epoch")
            .y_desc(ylabel)
            .draw()?;

        let pixels = chart.plotting_area().get_pixel_range();
        draw_title(root, title, pixels.0.clone(), 12 + TITLE_H as i32 / 2)?;
        draw_frame(root, pixels)?;

        let mut any_label = false;
        for (series, label, color) in [(train, train_label, C0), (validation, val_label, C1)] {
            if series.is_empty() {
                continue;
            }
            let style = color.stroke_width(2);
            let segments = finite_segments(series);
            let singles: Vec<(f64, f64)> = segments.iter().filter(|s| s.len() == 1).map(|s| s[0]).collect();
            let drawn =
                chart.draw_series(segments.into_iter().filter(|s| s.len() > 1).map(|s| PathElement::new(s, style)))?;
            if !label.is_empty() {
                any_label = true;
                drawn
                    .label(label)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
            }
            chart.draw_series(singles.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
        }
        if any_label {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .margin(10)
                .label_font(font(TICK_SIZE))
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(200, 200, 200))
                .draw()?;
        }
        Ok(())
    })
}

/// Writes `<stem>_loss.png` (from `loss`, `val_loss`) and `<stem>_accuracy.png` (from `acc`,
/// `val_acc`) in `dir` (created if missing) with [`plot_train_history`], title
/// "Train History", legend "train" / "validation". A chart whose train and validation series
/// are both empty is skipped. Returns the paths written.
pub fn plot_history_pair(
    dir: impl AsRef<Path>,
    stem: &str,
    loss: &[f64],
    val_loss: &[f64],
    acc: &[f64],
    val_acc: &[f64],
) -> Result<Vec<PathBuf>, PlotError> {
    let dir = dir.as_ref();
    let mut written = Vec::new();
    for (suffix, train, val) in [("loss", loss, val_loss), ("accuracy", acc, val_acc)] {
        if train.is_empty() && val.is_empty() {
            continue;
        }
        let path = dir.join(format!("{stem}_{suffix}.png"));
        plot_train_history(&path, "Train History", train, val, "train", "validation", suffix)?;
        written.push(path);
    }
    Ok(written)
}

/// Runs of consecutive finite values as `(epoch, value)` points, epochs 1-based.
fn finite_segments(series: &[f64]) -> Vec<Vec<(f64, f64)>> {
    let mut segments = Vec::new();
    let mut current = Vec::new();
    for (i, &v) in series.iter().enumerate() {
        if v.is_finite() {
            current.push(((i + 1) as f64, v));
        } else if !current.is_empty() {
            segments.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        segments.push(current);
    }
    segments
}
