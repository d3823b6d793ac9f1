//! The primitive ops, one file each: forward and backward together.
//!
//! Composite ops (for example squeeze-excitation) are written in terms of
//! these and need no backward of their own.

pub mod activation;
pub mod batch_matmul;
pub mod batch_norm;
pub mod binary;
pub mod concat;
pub mod conv2d;
pub mod cross_entropy;
pub mod dropout;
pub mod global_pool;
pub mod layer_norm;
pub mod matmul;
pub mod pad;
pub mod permute;
pub mod pool;
pub mod pool_same;
pub mod reduce;
pub mod reshape;
pub mod slice;
pub mod softmax;

use crate::Tensor;

/// Elementwise map into a new buffer (the kernels' loop: parallel for large
/// tensors, no zeroing pass, AVX-512 where available).
pub(crate) fn map(x: &[f32], f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    convnet_kernels::elementwise::map(x, f)
}

/// Elementwise map of two equal-length buffers into a new one (as [`map`]).
pub(crate) fn zip_map(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    convnet_kernels::elementwise::zip_map(a, b, f)
}

/// A constant tensor with the given data and shape (shape known to be right).
pub(crate) fn constant(data: Vec<f32>, shape: &[usize]) -> Tensor {
    Tensor::new_raw(data, crate::Shape(shape.to_vec()), None, false)
}
