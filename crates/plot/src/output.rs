//! Where a chart goes: a PNG file (written atomically by `render_png`) or PNG bytes in memory
//! (for the web app), from the same drawing code.

use std::path::Path;

use plotters::prelude::*;

use crate::error::PlotError;
use crate::render::{Area, DrawResult, register_font, render_png};

/// The name in-memory charts carry in their errors.
const IN_MEMORY: &str = "<in-memory PNG>";

/// A chart's destination.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Target<'a> {
    /// Write this file.
    File(&'a Path),
    /// Return the PNG bytes.
    Memory,
}

impl Target<'_> {
    /// The name errors give.
    pub(crate) fn path(&self) -> &Path {
        match self {
            Target::File(p) => p,
            Target::Memory => Path::new(IN_MEMORY),
        }
    }
}

/// Draws a `width x height` chart with `draw` on white and sends it to `target`: the PNG bytes
/// for [`Target::Memory`], an empty vector once the file is written for [`Target::File`].
pub(crate) fn render_to(
    target: Target<'_>,
    size: (u32, u32),
    draw: impl FnOnce(&Area<'_>) -> DrawResult,
) -> Result<Vec<u8>, PlotError> {
    match target {
        Target::File(path) => render_png(path, size, draw).map(|()| Vec::new()),
        Target::Memory => render_png_bytes(size, draw),
    }
}

fn render_png_bytes(
    (width, height): (u32, u32),
    draw: impl FnOnce(&Area<'_>) -> DrawResult,
) -> Result<Vec<u8>, PlotError> {
    let path = Path::new(IN_MEMORY);
    let render_err = |reason: String| PlotError::Render { path: path.to_path_buf(), reason };
    register_font().map_err(render_err)?;
    let mut buf = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| render_err(e.to_string()))?;
        draw(&root).map_err(|e| render_err(e.to_string()))?;
        root.present().map_err(|e| render_err(e.to_string()))?;
    }
    let encode_err = |e: png::EncodingError| PlotError::Encode { path: path.to_path_buf(), reason: e.to_string() };
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(encode_err)?;
    writer.write_image_data(&buf).map_err(encode_err)?;
    writer.finish().map_err(encode_err)?;
    Ok(out)
}
