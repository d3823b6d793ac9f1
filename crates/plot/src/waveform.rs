//! Waveform chart, like `librosa.display.waveshow`: amplitude against time in seconds. A
//! signal with more than two samples per pixel column is drawn as its min/max envelope per
//! column (what waveshow does for long signals); shorter ones as a line through every sample.

use std::path::Path;

use plotters::prelude::*;

use crate::error::PlotError;
use crate::output::{Target, render_to};
use crate::render::{
    C0, DESC_SIZE, DrawResult, TICK_SIZE, TITLE_H, Ticked, draw_frame, draw_title, finite_range, font, nice_step,
    text_width, tick_label, ticks,
};

/// Chart size in pixels.
const SIZE: (u32, u32) = (800, 320);

/// Writes a waveform PNG of `samples` at `sample_rate` Hz to `path`: x is time in seconds
/// (`0..samples.len() / sample_rate`), y the amplitude on a symmetric range.
///
/// Non-finite samples are skipped. Errors: [`PlotError::InvalidInput`] for no samples or a
/// zero sample rate; I/O and rendering errors.
pub fn plot_waveform(path: impl AsRef<Path>, samples: &[f32], sample_rate: u32, title: &str) -> Result<(), PlotError> {
    let path = path.as_ref();
    waveform(Target::File(path), samples, sample_rate, title).map(drop)
}

/// [`plot_waveform`] into memory: the PNG file's bytes (for a web page).
pub fn waveform_png(samples: &[f32], sample_rate: u32, title: &str) -> Result<Vec<u8>, PlotError> {
    waveform(Target::Memory, samples, sample_rate, title)
}

fn waveform(target: Target<'_>, samples: &[f32], sample_rate: u32, title: &str) -> Result<Vec<u8>, PlotError> {
    let invalid =
        |reason: &str| PlotError::InvalidInput { path: target.path().to_path_buf(), reason: reason.to_string() };
    if samples.is_empty() {
        return Err(invalid("no samples"));
    }
    if sample_rate == 0 {
        return Err(invalid("sample rate is 0"));
    }
    let sr = f64::from(sample_rate);
    let duration = samples.len() as f64 / sr;
    let (lo, hi) = finite_range(samples.iter().map(|&v| f64::from(v))).unwrap_or((0.0, 0.0));
    let peak = lo.abs().max(hi.abs());
    let y_max = if peak > 0.0 { peak * 1.1 } else { 1.0 };
    let x_step = nice_step(duration, 10);
    let y_step = nice_step(2.0 * y_max, 6);
    let y_ticks = ticks(-y_max, y_max, y_step);
    let y_tick_w = y_ticks.iter().map(|v| text_width(&tick_label(*v, y_step), TICK_SIZE)).max().unwrap_or(0);
    let y_area = y_tick_w + 16 + 2 * DESC_SIZE as u32;

    render_to(target, SIZE, |root| -> DrawResult {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .margin_top(TITLE_H + 4)
            .margin_right(24)
            .x_label_area_size(52)
            .y_label_area_size(y_area)
            .build_cartesian_2d(
                Ticked::new(0.0, duration, ticks(0.0, duration, x_step)),
                Ticked::new(-y_max, y_max, y_ticks),
            )?;
        chart
            .configure_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(RGBColor(230, 230, 230))
            .x_label_formatter(&|v| tick_label(*v, x_step))
            .y_label_formatter(&|v| tick_label(*v, y_step))
            .label_style(font(TICK_SIZE))
            .axis_desc_style(font(DESC_SIZE))
            .x_desc("Time (s)")
            .y_desc("Amplitude")
            .draw()?;

        let pixels = chart.plotting_area().get_pixel_range();
        draw_title(root, title, pixels.0.clone(), 12 + TITLE_H as i32 / 2)?;
        let (columns, _) = chart.plotting_area().dim_in_pixel();
        let columns = columns.max(1) as usize;
        if samples.len() > 2 * columns {
            // Min/max envelope: one filled bar per pixel column.
            let bars = (0..columns).filter_map(|k| {
                let (a, b) = (k * samples.len() / columns, (k + 1) * samples.len() / columns);
                let (lo, hi) = finite_range(samples[a..b].iter().map(|&v| f64::from(v)))?;
                let (t0, t1) = (a as f64 / sr, b as f64 / sr);
                Some(Rectangle::new([(t0, lo), (t1, hi)], C0.filled()))
            });
            chart.draw_series(bars)?;
        } else {
            // Runs of finite samples; a non-finite sample ends a run.
            let mut segments: Vec<Vec<(f64, f64)>> = Vec::new();
            let mut current = Vec::new();
            for (i, &s) in samples.iter().enumerate() {
                if s.is_finite() {
                    current.push((i as f64 / sr, f64::from(s)));
                } else if !current.is_empty() {
                    segments.push(std::mem::take(&mut current));
                }
            }
            segments.push(current);
            chart.draw_series(segments.into_iter().map(|seg| PathElement::new(seg, C0.stroke_width(1))))?;
        }
        draw_frame(root, pixels)
    })
}
