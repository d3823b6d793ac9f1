//! timm's train transform (`timm.data.transforms_factory.transforms_imagenet_train` with
//! no auto-augment, colour jitter or random erasing): `RandomResizedCropAndInterpolation`
//! (torchvision's `RandomResizedCrop.get_params` algorithm, then PIL's resize of the crop),
//! `RandomHorizontalFlip(0.5)`, `ToTensor`, `Normalize(mean, std)`.
//!
//! The draws come from a [`SplitMix64`] the caller seeds per sample
//! ([`SplitMix64::for_sample`]), not from torch's generator, so crops are distributed as
//! torchvision's but are not the same crops for the same seed.

use crate::decode::Rgb8;
use crate::rng::SplitMix64;
use crate::transforms::{DataConfig, ImageF32, Interpolation, crop, hflip, normalize, resize};

/// A crop box in pixels: rows `top..top + height`, columns `left..left + width`
/// (torchvision's `i, j, h, w`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropBox {
    /// First row (`i`).
    pub top: usize,
    /// First column (`j`).
    pub left: usize,
    /// Rows (`h`).
    pub height: usize,
    /// Columns (`w`).
    pub width: usize,
}

/// torchvision's `RandomResizedCrop.get_params` for a `width x height` image.
///
/// Up to 10 attempts: area fraction uniform in `scale`, aspect ratio log-uniform in `ratio`,
/// `w = round(sqrt(area * r))`, `h = round(sqrt(area / r))` (half to even, as Python's
/// `round`), accepted if `0 < w <= width` and `0 < h <= height`, then `top` uniform in
/// `0..=height - h` and `left` in `0..=width - w`. Draw order per attempt: scale, log-ratio;
/// then top, left. If no attempt fits, the central crop with the aspect ratio clamped to
/// `ratio`. A `0 x 0` image gives an empty box.
pub fn random_resized_crop_params(
    width: usize,
    height: usize,
    scale: (f64, f64),
    ratio: (f64, f64),
    rng: &mut SplitMix64,
) -> CropBox {
    let area = (width * height) as f64;
    let (log_lo, log_hi) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target_area = area * rng.uniform(scale.0, scale.1);
        let aspect = rng.uniform(log_lo, log_hi).exp();
        let w = (target_area * aspect).sqrt().round_ties_even();
        let h = (target_area / aspect).sqrt().round_ties_even();
        // compare as floats first: a NaN or huge value must not wrap when cast
        if w > 0.0 && w <= width as f64 && h > 0.0 && h <= height as f64 {
            let (w, h) = (w as usize, h as usize);
            let top = rng.int_inclusive(0, (height - h) as u64) as usize;
            let left = rng.int_inclusive(0, (width - w) as u64) as usize;
            return CropBox { top, left, height: h, width: w };
        }
    }
    let in_ratio = width as f64 / height as f64;
    let (lo, hi) = (ratio.0.min(ratio.1), ratio.0.max(ratio.1));
    let (w, h) = if in_ratio < lo {
        (width, ((width as f64 / lo).round_ties_even() as usize).min(height))
    } else if in_ratio > hi {
        (((height as f64 * hi).round_ties_even() as usize).min(width), height)
    } else {
        (width, height)
    };
    CropBox { top: (height - h) / 2, left: (width - w) / 2, height: h, width: w }
}

/// timm's train transform of a [`DataConfig`] (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct TrainTransform {
    /// Output `(height, width)`.
    pub size: (usize, usize),
    /// Range of the crop's area as a fraction of the image's; timm's default `(0.08, 1.0)`.
    pub scale: (f64, f64),
    /// Range of the crop's aspect ratio `w / h`; default `(3/4, 4/3)`.
    pub ratio: (f64, f64),
    /// Resize filter of the crop.
    pub interpolation: Interpolation,
    /// Probability of a horizontal flip; default 0.5.
    pub hflip: f64,
    /// Per-channel mean.
    pub mean: [f64; 3],
    /// Per-channel standard deviation.
    pub std: [f64; 3],
}

impl TrainTransform {
    /// timm's defaults for `cfg`: `scale (0.08, 1)`, `ratio (3/4, 4/3)`, flip 0.5, the
    /// config's size, interpolation, mean and std.
    pub fn new(cfg: &DataConfig) -> Self {
        TrainTransform {
            size: cfg.size(),
            scale: (0.08, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
            interpolation: cfg.interpolation,
            hflip: 0.5,
            mean: cfg.mean,
            std: cfg.std,
        }
    }

    /// Crop, resize and flip, before normalisation. Draws: the crop (see
    /// [`random_resized_crop_params`]), then one uniform for the flip (flip if `< hflip`).
    pub fn augment(&self, img: &Rgb8, rng: &mut SplitMix64) -> Rgb8 {
        let b = random_resized_crop_params(img.width, img.height, self.scale, self.ratio, rng);
        let c = crop(img, b.top, b.left, b.height, b.width);
        let r = resize(&c, self.size.1, self.size.0, self.interpolation);
        if rng.next_f64() < self.hflip { hflip(&r) } else { r }
    }

    /// `img` augmented and normalised, `[h, w, 3]`.
    pub fn apply(&self, img: &Rgb8, rng: &mut SplitMix64) -> ImageF32 {
        normalize(&self.augment(img, rng), self.mean, self.std)
    }
}
