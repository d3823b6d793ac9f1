//! timm's eval transform (`timm.data.transforms_imagenet_eval`, center-crop mode), pixel
//! for pixel: resize the short side to `floor(input_size / crop_pct)` with PIL's resampling
//! (`Resample.c`: separable, antialiased when shrinking, 22-bit fixed-point coefficients,
//! 8-bit intermediate image, horizontal pass first), center crop as torchvision (zero
//! padding when the image is smaller than the crop), scale to [0, 1], normalise.
//! Decoding (PNG/JPEG to RGB as `PIL.Image.convert('RGB')`) is in [`crate::decode`].
//!
//! The output is HWC `[h, w, 3]` `f32` ([`ImageF32`]), one image of convnet's NHWC batches;
//! timm's tensor is its transpose. [`DataConfig`] holds the fields of timm's
//! `resolve_data_config` that these transforms read.

use crate::decode::{MAX_PIXELS, Rgb8, load_image};
use crate::error::{DataError, Result};
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::path::Path;

/// Resampling filter of the transforms' resize.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    /// Nearest neighbour.
    Nearest,
    /// Triangle filter (PIL's `BILINEAR`, antialiased when shrinking).
    Bilinear,
    /// Keys' cubic, a = -0.5 (PIL's `BICUBIC`, antialiased when shrinking).
    Bicubic,
}

impl Interpolation {
    /// timm's name (`bilinear`, `bicubic`, `nearest`).
    pub fn name(self) -> &'static str {
        match self {
            Interpolation::Nearest => "nearest",
            Interpolation::Bilinear => "bilinear",
            Interpolation::Bicubic => "bicubic",
        }
    }
    /// Parses timm's name.
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "nearest" => Some(Interpolation::Nearest),
            "bilinear" => Some(Interpolation::Bilinear),
            "bicubic" => Some(Interpolation::Bicubic),
            _ => None,
        }
    }
}

/// `IMAGENET_DEFAULT_MEAN`.
pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
/// `IMAGENET_DEFAULT_STD`.
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// The preprocessing fields of timm's `resolve_data_config`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataConfig {
    /// `[channels, height, width]` of the model input (channels is 3: images are RGB).
    pub input_size: [usize; 3],
    /// Eval center-crop fraction: the short side is resized to `floor(size / crop_pct)`.
    pub crop_pct: f64,
    /// Resize filter (eval and train).
    pub interpolation: Interpolation,
    /// Per-channel mean subtracted after scaling to [0, 1].
    pub mean: [f64; 3],
    /// Per-channel standard deviation divided by.
    pub std: [f64; 3],
}

impl Default for DataConfig {
    /// timm's defaults for a model without a pretrained config: 224, crop 0.875, bicubic,
    /// ImageNet mean and std.
    fn default() -> Self {
        DataConfig {
            input_size: [3, 224, 224],
            crop_pct: 0.875,
            interpolation: Interpolation::Bicubic,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        }
    }
}

impl DataConfig {
    /// `(height, width)` of the transforms' output.
    pub fn size(&self) -> (usize, usize) {
        (self.input_size[1], self.input_size[2])
    }

    /// Checks the values a transform would otherwise divide by or allocate from.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| Err(crate::DataError::InvalidConfig { reason });
        if self.input_size[0] != 3 || self.input_size[1] == 0 || self.input_size[2] == 0 {
            return bad(format!("input_size {:?}: expected [3, h, w] with h, w > 0", self.input_size));
        }
        if !(self.crop_pct > 0.0 && self.crop_pct.is_finite()) {
            return bad(format!("crop_pct {}: expected a fraction > 0 (timm uses 0.875-1.0)", self.crop_pct));
        }
        if self.std.iter().any(|s| !(*s > 0.0 && s.is_finite())) || self.mean.iter().any(|m| !m.is_finite()) {
            return bad(format!("mean {:?} / std {:?}: std must be > 0 and both finite", self.mean, self.std));
        }
        Ok(())
    }
}

/// A normalised HWC image: `data` holds `shape = [h, w, 3]` values, channels last.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageF32 {
    /// `h * w * 3` values.
    pub data: Vec<f32>,
    /// `[h, w, 3]`.
    pub shape: [usize; 3],
}

/// torchvision's `ToTensor` + `Normalize(mean, std)`: `(v / 255 - mean) / std` per channel,
/// in `f32` as torch computes it.
pub fn normalize(img: &Rgb8, mean: [f64; 3], std: [f64; 3]) -> ImageF32 {
    let mean = mean.map(|m| m as f32);
    let std = std.map(|s| s as f32);
    let data: Vec<f32> =
        img.data.iter().enumerate().map(|(i, &v)| (v as f32 / 255.0 - mean[i % 3]) / std[i % 3]).collect();
    ImageF32 { data, shape: [img.height, img.width, 3] }
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

/// PIL's `precompute_coeffs` + `normalize_coeffs_8bpc` for the output pixels `outputs` of an
/// `in_size -> out_size` resize: per output pixel, the first input pixel and the fixed-point
/// weights.
fn coeffs(in_size: usize, out_size: usize, interp: Interpolation, outputs: Range<usize>) -> Vec<(usize, Vec<i32>)> {
    let (filter, support): (fn(f64) -> f64, f64) = match interp {
        Interpolation::Bicubic => (bicubic, 2.0),
        _ => (triangle, 1.0),
    };
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = support * filterscale;
    let ss = 1.0 / filterscale;
    outputs
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
    if width == 0 || height == 0 {
        return img.clone();
    }
    resize_window(img, (width, height), interp, 0..width, 0..height)
}

/// The columns `xs` and rows `ys` of [`resize`]`(img, width, height, interp)`, computing only
/// those pixels (bit for bit the same values): the eval transform crops 224 x 224 out of a
/// resize that a long thin image makes millions of pixels tall. As PIL's `ImagingResample`,
/// the horizontal pass runs only over the input rows the vertical pass reads.
fn resize_window(
    img: &Rgb8,
    (width, height): (usize, usize),
    interp: Interpolation,
    xs: Range<usize>,
    ys: Range<usize>,
) -> Rgb8 {
    let (cw, ch) = (xs.len(), ys.len());
    if interp == Interpolation::Nearest && (width, height) != (img.width, img.height) {
        let mut data = Vec::with_capacity(cw * ch * 3);
        for y in ys {
            let sy = (((y as f64 + 0.5) * img.height as f64 / height as f64) as usize).min(img.height - 1);
            for x in xs.clone() {
                let sx = (((x as f64 + 0.5) * img.width as f64 / width as f64) as usize).min(img.width - 1);
                data.extend_from_slice(&img.data[(sy * img.width + sx) * 3..][..3]);
            }
        }
        return Rgb8 { width: cw, height: ch, data };
    }
    let ky = (height != img.height).then(|| coeffs(img.height, height, interp, ys.clone()));
    // the input rows the vertical pass reads
    let rows = match &ky {
        Some(k) => {
            let first = k.iter().map(|(m, _)| *m).min().unwrap_or(0);
            let end = k.iter().map(|(m, w)| m + w.len()).max().unwrap_or(first);
            first..end.max(first)
        }
        None => ys.clone(),
    };
    // horizontal pass: `cw` columns of the rows `rows`
    let (r0, nrows) = (rows.start, rows.len());
    let mut cur = vec![0u8; cw * nrows * 3];
    if width != img.width {
        let k = coeffs(img.width, width, interp, xs.clone());
        for (r, y) in rows.enumerate() {
            let row = &img.data[y * img.width * 3..(y + 1) * img.width * 3];
            for (x, (xmin, w)) in k.iter().enumerate() {
                for c in 0..3 {
                    let mut ss: i64 = 1 << (PRECISION_BITS - 1);
                    for (i, wi) in w.iter().enumerate() {
                        ss += row[(xmin + i) * 3 + c] as i64 * *wi as i64;
                    }
                    cur[(r * cw + x) * 3 + c] = clip8(ss);
                }
            }
        }
    } else {
        for (r, y) in rows.enumerate() {
            let start = (y * img.width + xs.start) * 3;
            cur[r * cw * 3..(r + 1) * cw * 3].copy_from_slice(&img.data[start..start + cw * 3]);
        }
    }
    let Some(ky) = ky else { return Rgb8 { width: cw, height: ch, data: cur } };
    // vertical pass over the rows kept
    let mut data = vec![0u8; cw * ch * 3];
    for (y, (ymin, w)) in ky.iter().enumerate() {
        for x in 0..cw {
            for c in 0..3 {
                let mut ss: i64 = 1 << (PRECISION_BITS - 1);
                for (i, wi) in w.iter().enumerate() {
                    ss += cur[((ymin - r0 + i) * cw + x) * 3 + c] as i64 * *wi as i64;
                }
                data[(y * cw + x) * 3 + c] = clip8(ss);
            }
        }
    }
    Rgb8 { width: cw, height: ch, data }
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

/// torchvision's `F.crop` inside the image: rows `top..top + height`, columns
/// `left..left + width`, clipped to the image (torchvision would pad; the random crop never
/// leaves the image).
pub fn crop(img: &Rgb8, top: usize, left: usize, height: usize, width: usize) -> Rgb8 {
    let (top, left) = (top.min(img.height), left.min(img.width));
    let (height, width) = (height.min(img.height - top), width.min(img.width - left));
    let mut data = Vec::with_capacity(width * height * 3);
    for y in top..top + height {
        data.extend_from_slice(&img.data[(y * img.width + left) * 3..(y * img.width + left + width) * 3]);
    }
    Rgb8 { width, height, data }
}

/// `PIL.Image.transpose(FLIP_LEFT_RIGHT)`: mirrors each row.
pub fn hflip(img: &Rgb8) -> Rgb8 {
    if img.width == 0 {
        return img.clone();
    }
    let mut data = Vec::with_capacity(img.data.len());
    for row in img.data.chunks_exact(img.width * 3) {
        for px in row.chunks_exact(3).rev() {
            data.extend_from_slice(px);
        }
    }
    Rgb8 { width: img.width, height: img.height, data }
}

/// timm's eval transform of a [`DataConfig`].
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
    /// The transform timm's `create_transform(**data_config, is_training=False)` builds.
    pub fn new(cfg: &DataConfig) -> Self {
        EvalTransform {
            size: cfg.size(),
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

    /// `(width, height)` of the resized image before the center crop, for a `width x height` input.
    pub fn resized_size(&self, width: usize, height: usize) -> (usize, usize) {
        let (sh, sw) = self.scale_size();
        if sh == sw {
            let (short, long) = if width <= height { (width, height) } else { (height, width) };
            let new_long = ((sh as f64 * long as f64) / short.max(1) as f64) as usize;
            if width <= height { (sh, new_long) } else { (new_long, sh) }
        } else {
            // ResizeKeepRatio: scale so both sides cover the target, keeping the aspect
            let ratio = (height as f64 / sh as f64).min(width as f64 / sw as f64);
            ((width as f64 / ratio).round() as usize, (height as f64 / ratio).round() as usize)
        }
    }

    /// Refuses images whose resize (before the crop) would exceed [`MAX_PIXELS`]: a small file
    /// of 60000 x 1 pixels would otherwise become 15 million pixels wide. `path` names the
    /// image in the error.
    pub fn check(&self, img: &Rgb8, path: &Path) -> Result<()> {
        let (rw, rh) = self.resized_size(img.width, img.height);
        if (rw as u64).saturating_mul(rh as u64) > MAX_PIXELS {
            return Err(DataError::ResizeTooLarge {
                path: path.to_path_buf(),
                width: img.width,
                height: img.height,
                resized_width: rw,
                resized_height: rh,
                max_pixels: MAX_PIXELS,
            });
        }
        Ok(())
    }

    /// Resize and crop, before normalisation. Callers with untrusted images call
    /// [`EvalTransform::check`] first ([`EvalTransform::load`] and the loader do).
    pub fn crop(&self, img: &Rgb8) -> Rgb8 {
        let (rw, rh) = self.resized_size(img.width, img.height);
        if rw == 0 || rh == 0 {
            return center_crop(img, self.size.1, self.size.0);
        }
        // only the pixels the center crop keeps are resized; an axis shorter than the crop is
        // resized whole and padded by `center_crop`, as torchvision pads
        let window = |resized: usize, crop: usize| {
            if crop <= resized {
                let start = ((resized - crop) as f64 / 2.0).round_ties_even() as usize;
                start..start + crop
            } else {
                0..resized
            }
        };
        let (xs, ys) = (window(rw, self.size.1), window(rh, self.size.0));
        let resized = resize_window(img, (rw, rh), self.interpolation, xs, ys);
        center_crop(&resized, self.size.1, self.size.0)
    }

    /// `img` normalised, `[h, w, 3]`.
    pub fn apply(&self, img: &Rgb8) -> ImageF32 {
        normalize(&self.crop(img), self.mean, self.std)
    }

    /// Loads and transforms an image file.
    pub fn load(&self, path: impl AsRef<Path>) -> Result<ImageF32> {
        let img = load_image(path.as_ref())?;
        self.check(&img, path.as_ref())?;
        Ok(self.apply(&img))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(w: usize, h: usize) -> Rgb8 {
        Rgb8 { width: w, height: h, data: (0..w * h * 3).map(|i| (i * 37 % 251) as u8).collect() }
    }

    /// The eval crop resizes only the pixels it keeps: the same bytes as resizing the whole
    /// image and cropping it, for shapes that pad, crop one axis or both, and every filter.
    #[test]
    fn eval_crop_equals_the_whole_resize_cropped() {
        for (w, h) in [(451, 300), (7, 300), (300, 7), (40, 41), (5, 5), (1, 97), (33, 1)] {
            for interp in [Interpolation::Bilinear, Interpolation::Bicubic, Interpolation::Nearest] {
                for (size, crop_pct) in [((32, 32), 0.875), ((24, 40), 0.9), ((16, 16), 1.2)] {
                    let t = EvalTransform { size, crop_pct, interpolation: interp, mean: [0.5; 3], std: [0.5; 3] };
                    let image = img(w, h);
                    let (rw, rh) = t.resized_size(w, h);
                    let whole = center_crop(&resize(&image, rw, rh, interp), size.1, size.0);
                    assert_eq!(t.crop(&image), whole, "{w}x{h} {interp:?} {size:?} {crop_pct}");
                }
            }
        }
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
        assert!(crate::decode_image(b"not an image").is_err());
    }
}
