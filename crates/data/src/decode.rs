//! Image decoding as torchvision's `ImageFolder` loader does it: `PIL.Image.open(f).convert('RGB')`.
//!
//! PNG and JPEG are decoded by the `image` crate and converted to 8-bit RGB: grey is replicated,
//! alpha dropped (not composited, as PIL's `convert('RGB')`), CMYK/YCCK JPEGs converted by the
//! decoder. 16-bit images are scaled to 8 bits (`v / 257`, rounded); PIL instead takes the high
//! byte of 16-bit RGB and *clips* 16-bit grey, so 16-bit inputs may differ by one step from
//! torchvision (16-bit grey very much so, where PIL's answer is mostly white). EXIF orientation is
//! ignored, as PIL's `open` does.
//!
//! Two guards that PIL users get from `Image.MAX_IMAGE_PIXELS` and `LOAD_TRUNCATED_IMAGES=False`:
//! images over [`MAX_PIXELS`] are refused before their pixels are decoded, and a JPEG whose data
//! ends before its end-of-image marker is an error (the decoder would fill the missing rows with
//! grey and report success).

use crate::error::{DataError, Result};
use std::io::Cursor;
use std::path::Path;

/// The largest image decoded: 64 megapixels (PIL warns at 89 and refuses at 179; a training
/// image larger than this is almost surely a mistake or a decompression bomb).
pub const MAX_PIXELS: u64 = 64 * 1024 * 1024;

/// An 8-bit RGB image, row-major, 3 bytes per pixel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rgb8 {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `height * width * 3` bytes.
    pub data: Vec<u8>,
}

/// Why bytes did not decode; [`load_image`] adds the path.
enum Problem {
    Bad(String),
    Truncated(String),
    TooLarge(u32, u32),
}

impl Problem {
    fn into_error(self, path: &Path) -> DataError {
        let path = path.to_path_buf();
        match self {
            Problem::Bad(reason) => DataError::BadImage { path, reason },
            Problem::Truncated(reason) => DataError::TruncatedImage { path, reason },
            Problem::TooLarge(width, height) => {
                DataError::ImageTooLarge { path, width, height, max_pixels: MAX_PIXELS }
            }
        }
    }
}

/// Decodes a PNG or JPEG file to RGB (grey replicated, alpha dropped, 16-bit scaled to 8).
///
/// Errors name the file: unreadable, not PNG/JPEG, corrupt, truncated, over [`MAX_PIXELS`].
pub fn load_image(path: impl AsRef<Path>) -> Result<Rgb8> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| DataError::Io { path: path.to_path_buf(), source })?;
    decode(&bytes).map_err(|p| p.into_error(path))
}

/// Decodes PNG or JPEG bytes to RGB; the error is the reason, for the caller to attach a name to.
pub fn decode_image(bytes: &[u8]) -> std::result::Result<Rgb8, String> {
    decode(bytes).map_err(|p| p.into_error(Path::new("<memory>")).to_string())
}

fn decode(bytes: &[u8]) -> std::result::Result<Rgb8, Problem> {
    let img = decode_guarded(bytes)?;
    let rgb = img.to_rgb8();
    let (w, h) = rgb.dimensions();
    if w == 0 || h == 0 {
        return Err(Problem::Bad("the image is empty".into()));
    }
    Ok(Rgb8 { width: w as usize, height: h as usize, data: rgb.into_raw() })
}

/// Decodes with both guards: the pixel count read from the header before any pixel is
/// decoded, and a JPEG's end-of-image marker. Every image decoder of this crate goes through it.
fn decode_guarded(bytes: &[u8]) -> std::result::Result<image::DynamicImage, Problem> {
    let cannot = |e: &dyn std::fmt::Display| Problem::Bad(format!("cannot decode (PNG and JPEG are supported): {e}"));
    let reader = || image::ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| cannot(&e));
    let format = reader()?.format();
    // the header alone gives the size: refuse bombs before allocating their pixels
    let (w, h) = reader()?.into_dimensions().map_err(|e| cannot(&e))?;
    if w as u64 * h as u64 > MAX_PIXELS {
        return Err(Problem::TooLarge(w, h));
    }
    if format == Some(image::ImageFormat::Jpeg) {
        jpeg_complete(bytes).map_err(Problem::Truncated)?;
    }
    reader()?.decode().map_err(|e| match e {
        image::ImageError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Problem::Truncated(format!("the data ends early ({e})"))
        }
        e => cannot(&e),
    })
}

/// [`decode_guarded`] for a file, with the error naming it: for readers that need the decoded
/// image itself (alpha, grey) rather than [`load_image`]'s RGB.
pub(crate) fn load_dynamic(path: &Path) -> Result<image::DynamicImage> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io { path: path.to_path_buf(), source })?;
    decode_guarded(&bytes).map_err(|p| p.into_error(path))
}

/// Checks that a JPEG's segments and entropy-coded data run to its end-of-image marker, and
/// that the data can hold the image its header declares.
///
/// Walks the marker segments by their lengths (so an EXIF thumbnail's own markers are skipped)
/// and scans each scan's entropy-coded data for the next marker (`FF` followed by neither `00`
/// stuffing nor a restart marker). Garbage after the EOI marker is allowed, as libjpeg does.
///
/// Every 8x8 block of a Huffman-coded JPEG carries at least one bit (its DC code), so the
/// entropy-coded bytes must hold at least one bit per block: a few hundred bytes declaring
/// 8000 x 8000 pixels are refused here instead of decoding 64 megapixels of nothing.
fn jpeg_complete(b: &[u8]) -> std::result::Result<(), String> {
    let eof = |what: &str| Err(format!("the file ends inside {what}, before the JPEG end-of-image marker"));
    let mut i = 2; // after SOI, which format guessing has checked
    let mut blocks = 0u64; // of the (last) Huffman-coded frame header
    let mut frame = (0u16, 0u16);
    let mut entropy_bytes = 0u64;
    loop {
        // libjpeg skips stray bytes and fill bytes before a marker; so do we
        while i < b.len() && b[i] != 0xFF {
            i += 1;
        }
        while i < b.len() && b[i] == 0xFF {
            i += 1;
        }
        let Some(&marker) = b.get(i) else { return eof("the segment list") };
        i += 1;
        match marker {
            0xD9 => {
                if entropy_bytes.saturating_mul(8) < blocks {
                    return Err(format!(
                        "the image data holds {entropy_bytes} bytes, too few for the {blocks} blocks of a {} x {} \
                         JPEG (at least one bit each): a truncated or corrupt file",
                        frame.0, frame.1
                    ));
                }
                return Ok(());
            }
            0x01 | 0xD0..=0xD8 => {}
            _ => {
                let Some(len) = b.get(i..i + 2) else { return eof("a segment header") };
                let len = u16::from_be_bytes([len[0], len[1]]) as usize;
                if len < 2 {
                    return Err(format!("JPEG segment {marker:#04x} at byte {i} has length {len}"));
                }
                let segment = b.get(i + 2..i + len);
                i += len;
                if i > b.len() {
                    return eof("a segment");
                }
                // start of a Huffman-coded frame: baseline, extended, progressive or lossless
                if matches!(marker, 0xC0..=0xC3 | 0xC5..=0xC7)
                    && let Some(seg) = segment
                {
                    (frame, blocks) = frame_blocks(seg);
                }
                if marker == 0xDA {
                    let start = i;
                    loop {
                        let (Some(&x), Some(&y)) = (b.get(i), b.get(i + 1)) else { return eof("the image data") };
                        if x == 0xFF && y != 0x00 && y != 0xFF && !(0xD0..=0xD7).contains(&y) {
                            break;
                        }
                        i += 1;
                    }
                    entropy_bytes += (i - start) as u64;
                }
            }
        }
    }
}

/// `((width, height), blocks)` of a frame header (`SOFn` segment after its length): the 8x8
/// blocks of every component at its sampling factors, as a non-interleaved scan codes them
/// (the fewest any scan layout codes). Zero when the header is short or the height is left to
/// a later DNL marker.
fn frame_blocks(seg: &[u8]) -> ((u16, u16), u64) {
    let &[_, h0, h1, w0, w1, n, ref comps @ ..] = seg else { return ((0, 0), 0) };
    let (w, h) = (u16::from_be_bytes([w0, w1]), u16::from_be_bytes([h0, h1]));
    let factors: Vec<(u64, u64)> =
        comps.chunks_exact(3).take(n as usize).map(|c| (u64::from(c[1] >> 4), u64::from(c[1] & 15))).collect();
    let hmax = factors.iter().map(|f| f.0).max().unwrap_or(0);
    let vmax = factors.iter().map(|f| f.1).max().unwrap_or(0);
    if hmax == 0 || vmax == 0 {
        return ((w, h), 0);
    }
    let blocks = factors
        .iter()
        .map(|&(hi, vi)| {
            let cw = (u64::from(w) * hi).div_ceil(hmax);
            let ch = (u64::from(h) * vi).div_ceil(vmax);
            cw.div_ceil(8) * ch.div_ceil(8)
        })
        .sum();
    ((w, h), blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 5) as u8, (y * 3) as u8, 90]));
        let mut bytes = Cursor::new(Vec::new());
        img.write_to(&mut bytes, image::ImageFormat::Jpeg).unwrap();
        bytes.into_inner()
    }

    /// The frame header's height and width, found by its marker (`FF C0`, baseline).
    fn set_size(b: &mut [u8], w: u16, h: u16) {
        let at = b.windows(2).position(|m| m == [0xFF, 0xC0]).unwrap();
        b[at + 5..at + 7].copy_from_slice(&h.to_be_bytes());
        b[at + 7..at + 9].copy_from_slice(&w.to_be_bytes());
    }

    #[test]
    fn a_jpeg_declaring_more_blocks_than_its_data_holds_is_refused() {
        let good = jpeg(48, 40);
        let img = decode_image(&good).unwrap();
        assert_eq!((img.width, img.height), (48, 40));
        // the same few hundred bytes declaring 8000 x 8000: 64 megapixels of nothing
        let mut bomb = good.clone();
        set_size(&mut bomb, 8000, 8000);
        let e = decode_image(&bomb).unwrap_err();
        assert!(e.contains("too few for the") && e.contains("8000 x 8000"), "{e}");
        // 4:2:0 colour: 6 blocks per 16x16 macroblock, at least 6 bits
        assert_eq!(frame_blocks(&[8, 0, 16, 0, 16, 3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]), ((16, 16), 6));
        // grey 7 x 18697 (the fuzz test's slow input): one column of 2338 blocks
        assert_eq!(frame_blocks(&[8, 0x49, 0x09, 0, 7, 1, 1, 0x11, 0]), ((7, 18697), 2338));
    }
}
