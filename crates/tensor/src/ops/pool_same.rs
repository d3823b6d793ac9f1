//! TensorFlow-"SAME" average pooling as timm's `AvgPool2dSame` computes it: the input
//! is zero-padded to the "same" size first (odd pixel at the bottom and right), then
//! pooled without padding, so every window divides by its full `kh * kw` and the
//! padded zeros count. (Keras' own "same" pooling, [`Tensor::avg_pool2d`] with
//! [`Padding2d::Same`], excludes them; NASNet-A's stride-2 average pools were trained
//! with the former.)
//!
//! A composite of [`Tensor::pad2d`] and [`Tensor::avg_pool2d`]: no backward of its own.

use super::pad::{Pad2d, PadMode};
use crate::{Padding2d, Pool2dArgs, Result, Tensor, TensorError};

impl Tensor {
    /// timm's `AvgPool2dSame(kernel, stride)`: `[n, h, w, c] -> [n, ceil(h / sh), ceil(w / sw), c]`,
    /// the "same" zero padding counted in every window's divisor.
    pub fn avg_pool2d_tf_same(&self, kernel: (usize, usize), stride: (usize, usize)) -> Result<Tensor> {
        let [_, h, w, _] = *self.dims() else {
            return Err(TensorError::shape(
                "avg_pool2d_tf_same",
                format!("input must be [n, h, w, c], got {}", self.shape()),
            ));
        };
        if stride.0 == 0 || stride.1 == 0 {
            return Err(TensorError::invalid("avg_pool2d_tf_same", format!("strides {stride:?} must be positive")));
        }
        let (top, bottom) = Padding2d::Same.resolve_axis(h, kernel.0, stride.0, true);
        let (left, right) = Padding2d::Same.resolve_axis(w, kernel.1, stride.1, false);
        let as_i = |v: usize| v as isize;
        let padded = if top + bottom + left + right == 0 {
            self.clone()
        } else {
            self.pad2d(
                Pad2d { top: as_i(top), bottom: as_i(bottom), left: as_i(left), right: as_i(right) },
                PadMode::Constant(0.0),
            )?
        };
        padded.avg_pool2d(&Pool2dArgs {
            kernel,
            stride,
            padding: Padding2d::Valid,
            ceil_mode: false,
            count_include_pad: true,
        })
    }
}
