//! timm's eval transform for zoo models: [`convnet_data::EvalTransform`] (where the decoding,
//! PIL-exact resize and center crop live) built from a [`PretrainedCfg`], returning a
//! [`Tensor`] `[1, h, w, 3]` ready for `Model::forward`.

use crate::error::Result;
use crate::pretrained::PretrainedCfg;
use convnet_tensor::Tensor;
use std::path::Path;

pub use convnet_data::decode::{Rgb8, decode_image};
pub use convnet_data::transforms::{center_crop, resize, resize_short_side};

/// Decodes a PNG or JPEG file to RGB (grey replicated, alpha dropped, 16-bit scaled to 8).
pub fn load_image(path: impl AsRef<Path>) -> Result<Rgb8> {
    Ok(convnet_data::load_image(path)?)
}

/// The eval transform of a pretrained config; dereferences to [`convnet_data::EvalTransform`]
/// (`size`, `crop_pct`, `scale_size()`, `crop()`).
#[derive(Clone, Debug, PartialEq)]
pub struct EvalTransform(pub convnet_data::EvalTransform);

impl std::ops::Deref for EvalTransform {
    type Target = convnet_data::EvalTransform;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl EvalTransform {
    /// The transform timm's `resolve_data_config` + `create_transform` build for `cfg`.
    pub fn from_cfg(cfg: &PretrainedCfg) -> Self {
        EvalTransform(convnet_data::EvalTransform::new(&cfg.data_config()))
    }

    /// `img` as a normalised NHWC tensor `[1, h, w, 3]`.
    pub fn apply(&self, img: &Rgb8) -> Result<Tensor> {
        self.0.check(img, Path::new("<image>"))?;
        let x = self.0.apply(img);
        Ok(Tensor::from_vec(x.data, [1, x.shape[0], x.shape[1], 3])?)
    }

    /// Loads and transforms an image file.
    pub fn load(&self, path: impl AsRef<Path>) -> Result<Tensor> {
        let img = load_image(path.as_ref())?;
        self.0.check(&img, path.as_ref()).map_err(crate::ZooError::from)?;
        self.apply(&img)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_is_the_data_crates_output_as_nhwc() {
        let cfg = PretrainedCfg::imagenet("", "conv1", "fc").size(32);
        let img = Rgb8 { width: 45, height: 30, data: (0..45 * 30 * 3).map(|i| (i * 37 % 251) as u8).collect() };
        let t = EvalTransform::from_cfg(&cfg);
        assert_eq!(t.scale_size(), (36, 36));
        let x = t.apply(&img).unwrap();
        assert_eq!(x.dims(), [1, 32, 32, 3]);
        assert_eq!(x.data(), &convnet_data::EvalTransform::new(&cfg.data_config()).apply(&img).data[..]);
        assert!(matches!(load_image("/nonexistent.png"), Err(crate::ZooError::Data(_))));
    }
}
