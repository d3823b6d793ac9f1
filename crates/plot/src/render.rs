//! Shared plumbing: the embedded font, drawing into an RGB buffer, atomic PNG writing, the
//! colour bar, and small helpers for axis ranges.

use std::error::Error;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::colormap::Colormap;
use crate::error::PlotError;

/// DejaVu Sans 2.37 (Debian package `fonts-dejavu-core`), embedded so that rendering never
/// depends on the host's fonts. Licence: Bitstream Vera Fonts licence (permissive; DejaVu
/// changes are public domain), full text in `assets/DejaVuSans-LICENSE.txt`.
static DEJAVU_SANS: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// The font family every chart uses; registered under plotters' default family name so that
/// default label styles find it too.
pub(crate) const FONT: &str = "sans-serif";

/// Drawing area over the in-memory RGB buffer.
pub(crate) type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;
/// What a drawing closure returns; any plotters error converts into it with `?`.
pub(crate) type DrawResult = Result<(), Box<dyn Error>>;

/// Font sizes (pixels) of titles, axis descriptions, tick labels and legends.
pub(crate) const TITLE_SIZE: f64 = 22.0;
pub(crate) const DESC_SIZE: f64 = 17.0;
pub(crate) const TICK_SIZE: f64 = 15.0;
/// Height reserved above the plot for the title.
pub(crate) const TITLE_H: u32 = 40;

/// Matplotlib's first two default colours (`C0`, `C1`).
pub(crate) const C0: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
pub(crate) const C1: RGBColor = RGBColor(0xff, 0x7f, 0x0e);

pub(crate) fn register_font() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            plotters::style::register_font(FONT, FontStyle::Normal, DEJAVU_SANS)
                .map_err(|_| "the embedded DejaVu Sans font failed to load".to_string())
        })
        .clone()
}

/// Draws a `width x height` chart with `draw` on a white background and writes it as an RGB
/// PNG to `path` (through a temporary file in the same directory, then a rename).
pub(crate) fn render_png(
    path: &Path,
    (width, height): (u32, u32),
    draw: impl FnOnce(&Area<'_>) -> DrawResult,
) -> Result<(), PlotError> {
    let render_err = |reason: String| PlotError::Render { path: path.to_path_buf(), reason };
    register_font().map_err(render_err)?;
    let mut buf = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| render_err(e.to_string()))?;
        draw(&root).map_err(|e| render_err(e.to_string()))?;
        root.present().map_err(|e| render_err(e.to_string()))?;
    }
    write_png_atomic(path, width, height, &buf)
}

/// Encodes the PNG in memory, then writes it as convnet writes every file (`convnet_nn::fsio`,
/// which this crate cannot depend on): a synced temporary file `.<name>.tmp-<pid>-<n>` renamed
/// over `path`, the folder synced, and temporary files of dead processes removed first.
fn write_png_atomic(path: &Path, width: u32, height: u32, rgb: &[u8]) -> Result<(), PlotError> {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let io_err = |source| PlotError::Io { path: path.to_path_buf(), source };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).map_err(io_err)?;
    let bytes =
        encode_png(width, height, rgb).map_err(|reason| PlotError::Encode { path: path.to_path_buf(), reason })?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let prefix = format!(".{name}.tmp-");
    remove_stale_temps(&dir, &prefix);
    let tmp = dir.join(format!("{prefix}{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        // Best effort: the temporary file is ours and useless now.
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err)
}

/// Removes `<prefix><pid>-<n>` files in `dir` whose process is gone (Linux only: elsewhere
/// nothing tells a dead process from a live one, so nothing is removed).
fn remove_stale_temps(dir: &Path, prefix: &str) {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(rest) = file.to_str().and_then(|f| f.strip_prefix(prefix)) else { continue };
        if let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok())
            && pid != std::process::id()
            && !proc.join(pid.to_string()).exists()
        {
            let _ = fs::remove_file(entry.path());
        }
    }
}

fn encode_png(width: u32, height: u32, rgb: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
    writer.write_image_data(rgb).map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    Ok(out)
}

/// Text style of the given pixel size in the embedded font.
pub(crate) fn font(size: f64) -> TextStyle<'static> {
    (FONT, size).into_font().color(&BLACK)
}

/// Width in pixels of `text` at `size` (0 if it cannot be measured).
pub(crate) fn text_width(text: &str, size: f64) -> u32 {
    // Measuring needs the font; layout is often computed before `render_png` registers it.
    if register_font().is_err() {
        return 0;
    }
    (FONT, size).into_font().box_size(text).map(|(w, _)| w).unwrap_or(0)
}

/// Minimum and maximum of the finite values, or `None` if there are none.
pub(crate) fn finite_range(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    values.into_iter().filter(|v| v.is_finite()).fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

/// `lo..hi` widened by `frac` of its span on each side (matplotlib's margins); a zero span
/// becomes a unit-wide interval around the value.
pub(crate) fn padded(lo: f64, hi: f64, frac: f64) -> (f64, f64) {
    let span = hi - lo;
    if span > 0.0 && span.is_finite() {
        (lo - frac * span, hi + frac * span)
    } else {
        let half = if lo == 0.0 { 0.5 } else { 0.05 * lo.abs() };
        (lo - half, lo + half)
    }
}

/// Formats a tick value compactly: integers without decimals, others with the digits needed
/// for a tick step of `step`.
pub(crate) fn tick_label(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 || step <= 0.0 || !step.is_finite() {
        0
    } else {
        (-step.log10()).ceil().clamp(0.0, 6.0) as usize
    };
    let s = format!("{v:.decimals$}");
    // Avoid "-0".
    match s.strip_prefix('-') {
        Some(rest) if rest.chars().all(|c| c == '0' || c == '.') => rest.to_string(),
        _ => s,
    }
}

/// A "nice" tick step (1, 2 or 5 times a power of ten) giving at most about `max_ticks` ticks
/// over `span`.
pub(crate) fn nice_step(span: f64, max_ticks: usize) -> f64 {
    if !(span.is_finite() && span > 0.0) {
        return 1.0;
    }
    let raw = span / max_ticks.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// Multiples of `step` inside `lo..=hi`.
pub(crate) fn ticks(lo: f64, hi: f64, step: f64) -> Vec<f64> {
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

/// Width in pixels a colour bar drawn by [`draw_colorbar`] needs right of the plot.
pub(crate) fn colorbar_width(vmin: f64, vmax: f64, label: &str) -> u32 {
    let step = nice_step(vmax - vmin, 8);
    let tick_w =
        ticks(vmin, vmax, step).iter().map(|v| text_width(&tick_label(*v, step), TICK_SIZE)).max().unwrap_or(0);
    let label_w = if label.is_empty() { 0 } else { 12 + DESC_SIZE as u32 };
    COLORBAR_GAP + COLORBAR_BAR + 8 + tick_w + label_w + 4
}

/// Space between the plot and the colour bar, and the bar's own width, in pixels.
const COLORBAR_GAP: u32 = 18;
const COLORBAR_BAR: u32 = 20;

/// Draws a vertical colour bar for `vmin..vmax` right of the plot whose right edge is `plot_x1`
/// and which spans pixel rows `y_range` (coordinates of `area`), with ticks and a label reading
/// bottom to top, like matplotlib's `colorbar()`.
pub(crate) fn draw_colorbar(
    area: &Area<'_>,
    cmap: Colormap,
    (vmin, vmax): (f64, f64),
    label: &str,
    plot_x1: i32,
    y_range: std::ops::Range<i32>,
) -> DrawResult {
    let x0 = plot_x1 + COLORBAR_GAP as i32;
    let x1 = x0 + COLORBAR_BAR as i32 - 1;
    let (y0, y1) = (y_range.start, y_range.end - 1);
    let h = (y1 - y0).max(1);
    for y in y0..=y1 {
        let color = cmap.color(f64::from(y1 - y) / f64::from(h));
        area.draw(&PathElement::new(vec![(x0, y), (x1, y)], color.stroke_width(1)))?;
    }
    area.draw(&Rectangle::new([(x0, y0), (x1, y1)], BLACK.stroke_width(1)))?;

    let step = nice_step(vmax - vmin, 8);
    let span = if vmax > vmin { vmax - vmin } else { 1.0 };
    let tick_style = font(TICK_SIZE).pos(Pos::new(HPos::Left, VPos::Center));
    let mut tick_w = 0;
    for v in ticks(vmin, vmax, step) {
        let y = y1 - ((v - vmin) / span * f64::from(h)).round() as i32;
        area.draw(&PathElement::new(vec![(x1, y), (x1 + 4, y)], BLACK.stroke_width(1)))?;
        let text = tick_label(v, step);
        tick_w = tick_w.max(text_width(&text, TICK_SIZE) as i32);
        area.draw(&Text::new(text, (x1 + 7, y), tick_style.clone()))?;
    }
    if !label.is_empty() {
        let style = font(DESC_SIZE).transform(FontTransform::Rotate270).pos(Pos::new(HPos::Center, VPos::Center));
        let x = x1 + 7 + tick_w + 8 + DESC_SIZE as i32 / 2;
        area.draw(&Text::new(label.to_string(), (x, (y0 + y1) / 2), style))?;
    }
    Ok(())
}

/// Draws `title` centred over pixel columns `x_range` at row `y` (coordinates of `area`).
pub(crate) fn draw_title(area: &Area<'_>, title: &str, x_range: std::ops::Range<i32>, y: i32) -> DrawResult {
    let style = font(TITLE_SIZE).pos(Pos::new(HPos::Center, VPos::Center));
    area.draw(&Text::new(title.to_string(), ((x_range.start + x_range.end) / 2, y), style))?;
    Ok(())
}

/// Draws a thin black frame around the chart's plotting area (matplotlib's four spines).
pub(crate) fn draw_frame(area: &Area<'_>, (xs, ys): (std::ops::Range<i32>, std::ops::Range<i32>)) -> DrawResult {
    area.draw(&Rectangle::new([(xs.start, ys.start), (xs.end - 1, ys.end - 1)], BLACK.stroke_width(1)))?;
    Ok(())
}

/// A linear `f64` axis with explicit tick positions (plotters' own `with_key_points` on `f64`
/// ranges has no label formatter). Light grid lines are not drawn.
pub(crate) struct Ticked {
    inner: RangedCoordf64,
    ticks: Vec<f64>,
}

impl Ticked {
    /// The axis `lo..hi` with ticks at `ticks`.
    pub(crate) fn new(lo: f64, hi: f64, ticks: Vec<f64>) -> Self {
        Self { inner: (lo..hi).into(), ticks }
    }
}

impl Ranged for Ticked {
    type ValueType = f64;
    type FormatOption = DefaultFormatting;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() { Vec::new() } else { self.ticks.clone() }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.inner.range()
    }
}
