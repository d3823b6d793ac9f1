//! convnet-kernels: the only crate with `unsafe`, SIMD and threads.
//!
//! Every kernel works on plain slices with explicit shapes and strides, checks
//! them in a safe wrapper, and picks its fast path once at run time. Layout is
//! NHWC (channels last) throughout, as Keras and fast CPU kernels want.
//!
//! * [`conv`]: convolution forward and backward. Forward: implicit GEMM on
//!   the NHWC input (`conv_igemm`) or direct (`conv_fast`) AVX-512
//!   register-tile kernels (`x86`) for dense windows, im2col + GEMM
//!   (`conv_gemm`) for 1x1 and grouped convolutions, each splitting one image
//!   across threads, with bias, relu and a residual fused into the store.
//!   Backward: direct kernels, else im2col + GEMM per chunk of images.
//!   Plain-loop references.
//! * [`depthwise`]: depthwise convolution (`groups == in_c == out_c`) with
//!   channels as the vector axis and the activation fused into the store.
//! * [`dense64`]: a dense layer on a few rows with f64 sums (the gate of a
//!   squeeze-excitation at inference), tiles of rows sharing each weight row.
//! * [`conv_fft`]: FFT convolution for large kernels (stride 1), chosen by a
//!   cost model from the routing in [`conv`]; `CONVNET_NO_FFT` turns it off.
//! * [`gemm`]: `sgemm` over the `gemm` crate, one panel per thread.
//! * [`pool`]: max and average pooling, with a one-byte argmax and an
//!   AVX-512 2x2 path.
//! * [`elementwise`]: activations (AVX-512 exp for sigmoid and SiLU), the
//!   relu backward mask, per-channel scaling, dropout.
//! * [`norm`]: batch-norm statistics, normalisation and backward, in bands of
//!   rows with f64 partial sums.
//! * [`layer_norm`]: layer norm over the last axis, forward and backward, rows in
//!   parallel bands.
//! * [`softmax`]: softmax over the last axis, rows in parallel (AVX-512 exp).
//! * [`prepared`]: convolution weights packed once for inference, in the
//!   implicit GEMM's panel layout, and for 3x3 layers Winograd F(2x2, 3x3)
//!   transformed (`winograd`), chosen per call by a cost model.
//! * [`profile`]: opt-in per-call timing of the forward kernels, and the
//!   machine's FMA peak (`convnet bench infer --layers`).
//! * [`scratch`]: per-thread reusable buffers; [`alloc`]: allocator settings
//!   and uninitialised output vectors; [`alloc_cap`]: a size-capped global
//!   allocator for the fuzz tests.
//!
//! Fast paths are chosen at run time (`is_x86_feature_detected!`); setting
//! `CONVNET_NO_SIMD` forces the portable paths (for tests). Every parallel
//! reduction adds per-chunk partials in a fixed order, so results are
//! bit-identical from run to run for a given number of threads (and the
//! convolutions' for any number, except the forward through `conv_gemm`,
//! whose blocking follows the thread count).

pub mod alloc;
pub mod alloc_cap;
pub mod conv;
#[cfg(target_arch = "x86_64")]
mod conv_fast;
pub mod conv_fft;
mod conv_gemm;
#[cfg(target_arch = "x86_64")]
mod conv_igemm;
pub mod dense64;
pub mod depthwise;
pub mod elementwise;
pub mod gemm;
pub mod layer_norm;
pub mod norm;
pub mod pool;
pub mod prepared;
pub mod process;
pub mod profile;
pub mod scratch;
pub mod softmax;
#[cfg(target_arch = "x86_64")]
mod winograd;
#[cfg(target_arch = "x86_64")]
mod x86;

/// Number of threads kernels may use: the size of the current rayon pool.
pub fn threads() -> usize {
    rayon::current_num_threads()
}
