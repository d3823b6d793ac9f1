//! Turning any picture of a handwritten digit into an MNIST-style input.
//!
//! MNIST digits are white on black, fitted into a 20x20 box and centred by
//! their centre of mass in a 28x28 field (LeCun et al.). A photo or a drawing
//! is usually dark on light and of any size, so this module: decodes PNG/JPEG
//! (grey, RGB and RGBA; transparency is composited over white), inverts the
//! image when its border is light, crops to the ink, scales the longer side to
//! 20 pixels and centres the result by mass. A 28x28 image is taken as already
//! prepared (only the polarity check applies).

use crate::{DataError, Result};
use image::imageops::FilterType;
use image::{GrayImage, Luma};
use std::path::Path;

/// Side of an MNIST image.
pub const MNIST_SIDE: usize = 28;

/// Loads `path` as a `28 * 28` row-major grey image in `[0, 1]`, white digit on black.
pub fn load_digit_image(path: impl AsRef<Path>) -> Result<Vec<f32>> {
    let path = path.as_ref();
    // the guarded decoder: pixel limit from the header, truncated JPEGs refused
    let img = crate::decode::load_dynamic(path)?;
    let rgba = img.to_rgba8();
    let (w, h) = rgba.dimensions();
    if w == 0 || h == 0 {
        return Err(DataError::BadFile { path: path.into(), reason: "the image is empty".into() });
    }
    // luminance (ITU-R 601, as PIL's "L"), alpha composited over white
    let mut grey: Vec<f32> = rgba
        .pixels()
        .map(|p| {
            let [r, g, b, a] = p.0.map(|v| v as f32 / 255.0);
            let l = 0.299 * r + 0.587 * g + 0.114 * b;
            l * a + (1.0 - a)
        })
        .collect();
    if border_mean(&grey, w as usize, h as usize) > 0.5 {
        grey.iter_mut().for_each(|v| *v = 1.0 - *v);
    }
    if w as usize == MNIST_SIDE && h as usize == MNIST_SIDE {
        return Ok(grey);
    }
    Ok(fit_like_mnist(&grey, w as usize, h as usize))
}

fn border_mean(g: &[f32], w: usize, h: usize) -> f32 {
    let mut sum = 0.0;
    let mut n = 0usize;
    for y in 0..h {
        for x in 0..w {
            if y == 0 || x == 0 || y == h - 1 || x == w - 1 {
                sum += g[y * w + x];
                n += 1;
            }
        }
    }
    sum / n as f32
}

/// Crops to the ink, scales into 20x20 and centres by mass in 28x28.
fn fit_like_mnist(g: &[f32], w: usize, h: usize) -> Vec<f32> {
    let threshold = 0.2;
    let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
    for y in 0..h {
        for x in 0..w {
            if g[y * w + x] > threshold {
                x0 = x0.min(x);
                y0 = y0.min(y);
                x1 = x1.max(x);
                y1 = y1.max(y);
            }
        }
    }
    if x0 > x1 {
        // no ink at all: a blank input
        return vec![0.0; MNIST_SIDE * MNIST_SIDE];
    }
    let (cw, ch) = (x1 - x0 + 1, y1 - y0 + 1);
    let crop = GrayImage::from_fn(cw as u32, ch as u32, |x, y| {
        Luma([(g[(y0 + y as usize) * w + x0 + x as usize] * 255.0).round() as u8])
    });
    let scale = 20.0 / cw.max(ch) as f32;
    let (nw, nh) = (((cw as f32 * scale).round() as u32).max(1), ((ch as f32 * scale).round() as u32).max(1));
    let small = image::imageops::resize(&crop, nw, nh, FilterType::Triangle);
    // centre of mass of the scaled digit
    let (mut mx, mut my, mut mass) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y, p) in small.enumerate_pixels() {
        let v = p.0[0] as f32;
        mx += v * x as f32;
        my += v * y as f32;
        mass += v;
    }
    let (cx, cy) = if mass > 0.0 { (mx / mass, my / mass) } else { (nw as f32 / 2.0, nh as f32 / 2.0) };
    let off_x = (14.0 - cx).round() as i64;
    let off_y = (14.0 - cy).round() as i64;
    let mut out = vec![0.0f32; MNIST_SIDE * MNIST_SIDE];
    for (x, y, p) in small.enumerate_pixels() {
        let (tx, ty) = (x as i64 + off_x, y as i64 + off_y);
        if (0..MNIST_SIDE as i64).contains(&tx) && (0..MNIST_SIDE as i64).contains(&ty) {
            out[ty as usize * MNIST_SIDE + tx as usize] = p.0[0] as f32 / 255.0;
        }
    }
    out
}

/// A decoded picture of a digit (a canvas drawing, an upload) as a `28 * 28` row-major grey
/// image in `[0, 1]`, white on black, prepared as [`load_digit_image`] prepares files:
/// luminance, inverted when the border is light, cropped to the ink, fitted and centred.
pub fn digit_from_rgb(img: &crate::Rgb8) -> Vec<f32> {
    let (w, h) = (img.width, img.height);
    if w == 0 || h == 0 || img.data.len() != w * h * 3 {
        return vec![0.0; MNIST_SIDE * MNIST_SIDE];
    }
    let mut grey: Vec<f32> = img
        .data
        .chunks_exact(3)
        .map(|p| 0.299 * f32::from(p[0]) / 255.0 + 0.587 * f32::from(p[1]) / 255.0 + 0.114 * f32::from(p[2]) / 255.0)
        .collect();
    if border_mean(&grey, w, h) > 0.5 {
        grey.iter_mut().for_each(|v| *v = 1.0 - *v);
    }
    if w == MNIST_SIDE && h == MNIST_SIDE {
        return grey;
    }
    fit_like_mnist(&grey, w, h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn save(img: &GrayImage, dir: &Path, name: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        img.save(&p).unwrap();
        p
    }

    #[test]
    fn dark_on_light_drawing_is_inverted_fitted_and_centred() {
        let dir = tempfile::tempdir().unwrap();
        // a black vertical bar on white, off-centre, in a 100x60 picture
        let img = GrayImage::from_fn(100, 60, |x, y| {
            if (70..80).contains(&x) && (10..50).contains(&y) { Luma([0]) } else { Luma([255]) }
        });
        let v = load_digit_image(save(&img, dir.path(), "bar.png")).unwrap();
        assert_eq!(v.len(), 784);
        // background black, ink white
        assert_eq!(v[0], 0.0);
        let ink: f32 = v.iter().sum();
        assert!(ink > 20.0, "ink {ink}");
        // 20 px tall, centred: rows 4..24 carry the ink
        let row_ink = |r: usize| v[r * 28..(r + 1) * 28].iter().sum::<f32>();
        assert!(row_ink(14) > 1.0 && row_ink(1) == 0.0 && row_ink(26) == 0.0);
        let col_ink = |c: usize| (0..28).map(|r| v[r * 28 + c]).sum::<f32>();
        assert!(col_ink(14) > 1.0 || col_ink(13) > 1.0);
    }

    #[test]
    fn mnist_sized_image_is_taken_as_is() {
        let dir = tempfile::tempdir().unwrap();
        let img = GrayImage::from_fn(28, 28, |x, _| Luma([if x == 10 { 255 } else { 0 }]));
        let v = load_digit_image(save(&img, dir.path(), "m.png")).unwrap();
        assert_eq!(v[10], 1.0);
        assert_eq!(v[11], 0.0);
    }

    #[test]
    fn undecodable_file_is_a_bad_file_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.png");
        std::fs::write(&p, b"not an image").unwrap();
        let err = load_digit_image(&p).unwrap_err();
        assert!(matches!(err, DataError::BadImage { .. }), "{err}");
        assert!(err.to_string().contains("x.png"));
    }

    #[test]
    fn decoded_drawings_match_the_file_loader() {
        let dir = tempfile::tempdir().unwrap();
        let img = GrayImage::from_fn(90, 70, |x, y| {
            if (30..40).contains(&x) && (10..60).contains(&y) || (20..60).contains(&x) && (10..18).contains(&y) {
                Luma([20])
            } else {
                Luma([240])
            }
        });
        let path = save(&img, dir.path(), "seven.png");
        let rgb = crate::load_image(&path).unwrap();
        assert_eq!(digit_from_rgb(&rgb), load_digit_image(&path).unwrap());
        let empty = crate::Rgb8 { width: 0, height: 0, data: vec![] };
        assert_eq!(digit_from_rgb(&empty), vec![0.0; 784]);
    }
}
