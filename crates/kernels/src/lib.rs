//! convnet-kernels: the only crate with `unsafe`, SIMD and threads.
//!
//! Every kernel works on plain slices with explicit shapes and strides, checks
//! them in a safe wrapper, and picks its fast path once at run time. Layout is
//! NHWC (channels last) throughout, as Keras and fast CPU kernels want.

pub mod conv;
pub mod gemm;
pub mod pool;

/// Number of threads kernels may use: the size of the current rayon pool.
pub fn threads() -> usize {
    rayon::current_num_threads()
}
