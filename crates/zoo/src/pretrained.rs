//! Pretrained configs with timm's fields and values (`timm/models/_pretrained.py`):
//! the input size a checkpoint was trained at, the eval transform (crop fraction,
//! interpolation, mean, std) and where its first conv and classifier live.

use convnet_data::DataConfig;
use serde::Serialize;

pub use convnet_data::Interpolation;

/// `IMAGENET_DEFAULT_MEAN`.
pub const IMAGENET_MEAN: [f64; 3] = convnet_data::IMAGENET_MEAN;
/// `IMAGENET_DEFAULT_STD`.
pub const IMAGENET_STD: [f64; 3] = convnet_data::IMAGENET_STD;
/// `IMAGENET_INCEPTION_MEAN` (and its std): 0.5.
pub const INCEPTION_MEAN: [f64; 3] = [0.5, 0.5, 0.5];
/// `IMAGENET_INCEPTION_STD`.
pub const INCEPTION_STD: [f64; 3] = [0.5, 0.5, 0.5];

/// timm's pretrained config of one `arch.tag`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PretrainedCfg {
    /// The tag after the dot (`a1_in1k`, `tv_in1k`; empty for untrained configs).
    pub tag: &'static str,
    /// `[channels, height, width]` the weights were trained at.
    pub input_size: [usize; 3],
    /// A larger size that tests better, if timm lists one.
    pub test_input_size: Option<[usize; 3]>,
    /// Feature-map size before pooling at `input_size`.
    pub pool_size: Option<[usize; 2]>,
    /// Center-crop fraction: the short side is resized to `input_size / crop_pct`.
    pub crop_pct: f64,
    /// Resize filter.
    pub interpolation: Interpolation,
    /// Per-channel mean subtracted after scaling to [0, 1].
    pub mean: [f64; 3],
    /// Per-channel standard deviation divided by.
    pub std: [f64; 3],
    /// Classes of the pretrained classifier.
    pub num_classes: usize,
    /// Key prefix of the first conv (adapted when `in_chans` differs).
    pub first_conv: &'static str,
    /// Key prefix of the classifier (dropped when `num_classes` differs).
    pub classifier: &'static str,
}

impl PretrainedCfg {
    /// The preprocessing fields timm's `resolve_data_config` takes from this config.
    pub fn data_config(&self) -> DataConfig {
        DataConfig {
            input_size: self.input_size,
            crop_pct: self.crop_pct,
            interpolation: self.interpolation,
            mean: self.mean,
            std: self.std,
        }
    }

    /// ImageNet-1k defaults at 224 (timm's `_cfg`): crop 0.875, bilinear, ImageNet mean/std.
    pub const fn imagenet(tag: &'static str, first_conv: &'static str, classifier: &'static str) -> Self {
        PretrainedCfg {
            tag,
            input_size: [3, 224, 224],
            test_input_size: None,
            pool_size: Some([7, 7]),
            crop_pct: 0.875,
            interpolation: Interpolation::Bilinear,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
            num_classes: 1000,
            first_conv,
            classifier,
        }
    }

    /// The same config at another square input size (and matching pool size `size / 32`).
    pub const fn size(mut self, s: usize) -> Self {
        self.input_size = [3, s, s];
        self.pool_size = Some([s.div_ceil(32), s.div_ceil(32)]);
        self
    }
    /// Sets `test_input_size`.
    pub const fn test_size(mut self, s: usize) -> Self {
        self.test_input_size = Some([3, s, s]);
        self
    }
    /// Sets `pool_size`.
    pub const fn pool(mut self, h: usize, w: usize) -> Self {
        self.pool_size = Some([h, w]);
        self
    }
    /// No `pool_size` (token models: timm's ViT configs).
    pub const fn no_pool(mut self) -> Self {
        self.pool_size = None;
        self
    }
    /// Sets `crop_pct`.
    pub const fn crop(mut self, c: f64) -> Self {
        self.crop_pct = c;
        self
    }
    /// Bicubic resize.
    pub const fn bicubic(mut self) -> Self {
        self.interpolation = Interpolation::Bicubic;
        self
    }
    /// Inception mean/std (0.5, 0.5).
    pub const fn inception_norm(mut self) -> Self {
        self.mean = INCEPTION_MEAN;
        self.std = INCEPTION_STD;
        self
    }
    /// Sets mean and std.
    pub const fn norm(mut self, mean: [f64; 3], std: [f64; 3]) -> Self {
        self.mean = mean;
        self.std = std;
        self
    }
    /// Sets the number of classes.
    pub const fn classes(mut self, n: usize) -> Self {
        self.num_classes = n;
        self
    }
}
