//! timm's eval transform (`timm.data.transforms_imagenet_eval`, center-crop mode), pixel
//! for pixel: decode (PNG/JPEG, grey and RGBA converted to RGB as `PIL.Image.convert('RGB')`
//! does), resize the short side to `floor(input_size / crop_pct)` with PIL's resampling
//! (`Resample.c`: separable, antialiased when shrinking, 22-bit fixed-point coefficients,
//! 8-bit intermediate image, horizontal pass first), center crop as torchvision (zero
//! padding when the image is smaller than the crop), scale to [0, 1], normalise.
//!
//! The output is NHWC `[1, h, w, 3]`, convnet's layout; timm's tensor is its transpose.

use crate::error::{Result, ZooError};
use crate::pretrained::{Interpolation, PretrainedCfg};
use convnet_tensor::Tensor;
use std::path::Path;

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

/// Decodes a PNG or JPEG file to RGB (grey replicated, alpha dropped, 16-bit scaled to 8).
pub fn load_image(path: impl AsRef<Path>) -> Result<Rgb8> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| ZooError::io(path, e))?;
    decode_image(&bytes).map_err(|reason| ZooError::BadImage { path: path.display().to_string(), reason })
}

/// Decodes PNG or JPEG bytes to RGB.
pub fn decode_image(bytes: &[u8]) -> std::result::Result<Rgb8, String> {
    let img = image::load_from_memory(bytes).map_err(|e| format!("cannot decode (PNG and JPEG are supported): {e}"))?;
    let rgb = img.to_rgb8();
    let (w, h) = rgb.dimensions();
    if w == 0 || h == 0 {
        return Err("the image is empty".into());
    }
    Ok(Rgb8 { width: w as usize, height: h as usize, data: rgb.into_raw() })
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

fn bicubic(x: f64) -> f64 {
    let a = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * a
    } else {
        0.0
    }
}

fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

/// PIL's `precompute_coeffs` + `normalize_coeffs_8bpc`: per output pixel, the first input
/// pixel and the fixed-point weights.
fn coeffs(in_size: usize, out_size: usize, interp: Interpolation) -> Vec<(usize, Vec<i32>)> {
    let (filter, support): (fn(f64) -> f64, f64) = match interp {
        Interpolation::Bicubic => (bicubic, 2.0),
        _ => (triangle, 1.0),
    };
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = support * filterscale;
    let ss = 1.0 / filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let w: Vec<f64> = (xmin..xmax).map(|x| filter((x as f64 - center + 0.5) * ss)).collect();
            let ww: f64 = w.iter().sum();
            let k = w
                .iter()
                .map(|v| {
                    let v = if ww != 0.0 { v / ww } else { *v };
                    let s = v * (1u32 << PRECISION_BITS) as f64;
                    if v < 0.0 { (-0.5 + s) as i32 } else { (0.5 + s) as i32 }
                })
                .collect();
            (xmin, k)
        })
        .collect()
}

fn clip8(v: i64) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes to `width x height` as `PIL.Image.resize` does (bilinear and bicubic antialiased;
/// nearest samples the pixel under each output centre).
pub fn resize(img: &Rgb8, width: usize, height: usize, interp: Interpolation) -> Rgb8 {
    if (width, height) == (img.width, img.height) || width == 0 || height == 0 {
        return img.clone();
    }
    if interp == Interpolation::Nearest {
        let mut data = Vec::with_capacity(width * height * 3);
        for y in 0..height {
            let sy = (((y as f64 + 0.5) * img.height as f64 / height as f64) as usize).min(img.height - 1);
            for x in 0..width {
                let sx = (((x as f64 + 0.5) * img.width as f64 / width as f64) as usize).min(img.width - 1);
                data.extend_from_slice(&img.data[(sy * img.width + sx) * 3..][..3]);
            }
        }
        return Rgb8 { width, height, data };
    }
    let mut cur = img.clone();
    if width != cur.width {
        let k = coeffs(cur.width, width, interp);
        let mut data = vec![0u8; width * cur.height * 3];
        for y in 0..cur.height {
            let row = &cur.data[y * cur.width * 3..(y + 1) * cur.width * 3];
            for (x, (xmin, w)) in k.iter().enumerate() {
                for c in 0..3 {
                    let mut ss: i64 = 1 << (PRECISION_BITS - 1);
                    for (i, wi) in w.iter().enumerate() {
                        ss += row[(xmin + i) * 3 + c] as i64 * *wi as i64;
                    }
                    data[(y * width + x) * 3 + c] = clip8(ss);
                }
            }
        }
        cur = Rgb8 { width, height: cur.height, data };
    }
    if height != cur.height {
        let k = coeffs(cur.height, height, interp);
        let mut data = vec![0u8; cur.width * height * 3];
        for (y, (ymin, w)) in k.iter().enumerate() {
            for x in 0..cur.width {
                for c in 0..3 {
                    let mut ss: i64 = 1 << (PRECISION_BITS - 1);
                    for (i, wi) in w.iter().enumerate() {
                        ss += cur.data[((ymin + i) * cur.width + x) * 3 + c] as i64 * *wi as i64;
                    }
                    data[(y * cur.width + x) * 3 + c] = clip8(ss);
                }
            }
        }
        cur = Rgb8 { width: cur.width, height, data };
    }
    cur
}

/// torchvision's `Resize(size)` with an int: the short side becomes `size`, the long side
/// `int(size * long / short)`.
pub fn resize_short_side(img: &Rgb8, size: usize, interp: Interpolation) -> Rgb8 {
    let (w, h) = (img.width, img.height);
    let (short, long) = if w <= h { (w, h) } else { (h, w) };
    let new_long = ((size * long) as f64 / short as f64) as usize;
    let (nw, nh) = if w <= h { (size, new_long) } else { (new_long, size) };
    resize(img, nw, nh, interp)
}

/// torchvision's `CenterCrop`: pads with zeros when the image is smaller than the crop,
/// offsets rounded half to even as Python's `round`.
pub fn center_crop(img: &Rgb8, width: usize, height: usize) -> Rgb8 {
    let mut src = img.clone();
    if width > src.width || height > src.height {
        // torchvision pads (crop - size) // 2 on the left/top, the rest right/bottom
        let pw = width.saturating_sub(src.width);
        let ph = height.saturating_sub(src.height);
        let (l, t) = (pw / 2, ph / 2);
        let (nw, nh) = (src.width + pw, src.height + ph);
        let mut data = vec![0u8; nw * nh * 3];
        for y in 0..src.height {
            let d = ((y + t) * nw + l) * 3;
            data[d..d + src.width * 3].copy_from_slice(&src.data[y * src.width * 3..(y + 1) * src.width * 3]);
        }
        src = Rgb8 { width: nw, height: nh, data };
    }
    let top = ((src.height - height) as f64 / 2.0).round_ties_even() as usize;
    let left = ((src.width - width) as f64 / 2.0).round_ties_even() as usize;
    let mut data = Vec::with_capacity(width * height * 3);
    for y in top..top + height {
        data.extend_from_slice(&src.data[(y * src.width + left) * 3..(y * src.width + left + width) * 3]);
    }
    Rgb8 { width, height, data }
}

/// The eval transform of a pretrained config.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalTransform {
    /// Output `(height, width)`.
    pub size: (usize, usize),
    /// Crop fraction.
    pub crop_pct: f64,
    /// Resize filter.
    pub interpolation: Interpolation,
    /// Per-channel mean.
    pub mean: [f64; 3],
    /// Per-channel standard deviation.
    pub std: [f64; 3],
}

impl EvalTransform {
    /// The transform timm's `resolve_data_config` + `create_transform` build for `cfg`.
    pub fn from_cfg(cfg: &PretrainedCfg) -> Self {
        EvalTransform {
            size: (cfg.input_size[1], cfg.input_size[2]),
            crop_pct: cfg.crop_pct,
            interpolation: cfg.interpolation,
            mean: cfg.mean,
            std: cfg.std,
        }
    }

    /// The resized (pre-crop) size: `floor(size / crop_pct)` per axis.
    pub fn scale_size(&self) -> (usize, usize) {
        ((self.size.0 as f64 / self.crop_pct).floor() as usize, (self.size.1 as f64 / self.crop_pct).floor() as usize)
    }

    /// Resize and crop, before normalisation.
    pub fn crop(&self, img: &Rgb8) -> Rgb8 {
        let (sh, sw) = self.scale_size();
        let resized = if sh == sw {
            resize_short_side(img, sh, self.interpolation)
        } else {
            // ResizeKeepRatio: scale so both sides cover the target, keeping the aspect
            let ratio = (img.height as f64 / sh as f64).min(img.width as f64 / sw as f64);
            let (nh, nw) = ((img.height as f64 / ratio).round() as usize, (img.width as f64 / ratio).round() as usize);
            resize(img, nw, nh, self.interpolation)
        };
        center_crop(&resized, self.size.1, self.size.0)
    }

    /// `img` as a normalised NHWC tensor `[1, h, w, 3]`.
    pub fn apply(&self, img: &Rgb8) -> Result<Tensor> {
        let c = self.crop(img);
        let mean = self.mean.map(|m| m as f32);
        let std = self.std.map(|s| s as f32);
        let data: Vec<f32> =
            c.data.iter().enumerate().map(|(i, &v)| (v as f32 / 255.0 - mean[i % 3]) / std[i % 3]).collect();
        Ok(Tensor::from_vec(data, [1, c.height, c.width, 3])?)
    }

    /// Loads and transforms an image file.
    pub fn load(&self, path: impl AsRef<Path>) -> Result<Tensor> {
        self.apply(&load_image(path)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(w: usize, h: usize) -> Rgb8 {
        Rgb8 { width: w, height: h, data: (0..w * h * 3).map(|i| (i * 37 % 251) as u8).collect() }
    }

    #[test]
    fn constant_images_stay_constant_and_sizes_follow_torchvision() {
        let flat = Rgb8 { width: 40, height: 30, data: vec![77; 40 * 30 * 3] };
        for interp in [Interpolation::Bilinear, Interpolation::Bicubic, Interpolation::Nearest] {
            let r = resize(&flat, 17, 23, interp);
            assert!(r.data.iter().all(|&v| v == 77), "{interp:?}");
        }
        let r = resize_short_side(&img(451, 300), 256, Interpolation::Bicubic);
        assert_eq!((r.width, r.height), (384, 256));
        let c = center_crop(&r, 224, 224);
        assert_eq!((c.width, c.height), (224, 224));
        assert_eq!(c.data[..3], r.data[(16 * 384 + 80) * 3..][..3]);
    }

    #[test]
    fn small_images_are_padded_and_garbage_is_an_error() {
        let c = center_crop(&img(3, 2), 5, 4);
        assert_eq!((c.width, c.height), (5, 4));
        assert_eq!(c.data[..3], [0, 0, 0]);
        assert_eq!(c.data[(5 + 1) * 3..][..3], img(3, 2).data[..3]); // pixel (1, 1)
        assert!(decode_image(b"not an image").is_err());
    }
}
