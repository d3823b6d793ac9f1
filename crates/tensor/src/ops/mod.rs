//! The primitive ops, one file each: forward and backward together.
//!
//! Composite ops (for example squeeze-excitation) are written in terms of
//! these and need no backward of their own.

pub mod activation;
pub mod batch_norm;
pub mod binary;
pub mod concat;
pub mod conv2d;
pub mod cross_entropy;
pub mod dropout;
pub mod global_pool;
pub mod matmul;
pub mod pool;
pub mod reduce;
pub mod reshape;
pub mod softmax;

use crate::Tensor;

/// Elementwise map into a new buffer, in parallel for large tensors.
pub(crate) fn map(x: &[f32], f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    use rayon::prelude::*;
    let mut out = vec![0.0f32; x.len()];
    if x.len() < 1 << 15 {
        for (o, v) in out.iter_mut().zip(x) {
            *o = f(*v);
        }
    } else {
        out.par_chunks_mut(1 << 14).zip(x.par_chunks(1 << 14)).for_each(|(o, x)| {
            for (o, v) in o.iter_mut().zip(x) {
                *o = f(*v);
            }
        });
    }
    out
}

/// Elementwise map of two equal-length buffers into a new one.
pub(crate) fn zip_map(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    use rayon::prelude::*;
    debug_assert_eq!(a.len(), b.len());
    let mut out = vec![0.0f32; a.len()];
    if a.len() < 1 << 15 {
        for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
            *o = f(*x, *y);
        }
    } else {
        out.par_chunks_mut(1 << 14).zip(a.par_chunks(1 << 14).zip(b.par_chunks(1 << 14))).for_each(|(o, (a, b))| {
            for ((o, x), y) in o.iter_mut().zip(a).zip(b) {
                *o = f(*x, *y);
            }
        });
    }
    out
}

/// A constant tensor with the given data and shape (shape known to be right).
pub(crate) fn constant(data: Vec<f32>, shape: &[usize]) -> Tensor {
    Tensor::new_raw(data, crate::Shape(shape.to_vec()), None, false)
}
