//! convnet-tensor: f32 tensors and a reverse-mode autograd tape.
//!
//! A [`Tensor`] is an immutable, reference-counted n-d array (row-major;
//! activations are NHWC). Every op returns a new tensor and, when one of its
//! inputs requires a gradient, records a backward closure pointing at its
//! inputs: the graph *is* the tape, built as the forward pass runs (define by
//! run, as in PyTorch). [`Tensor::backward`] walks it in reverse topological
//! order. In inference nothing requires a gradient, nothing is recorded, and
//! intermediate activations are freed as soon as they are no longer used.
//!
//! Each primitive op lives in one file of [`ops`] with its forward and backward.

mod autograd;
mod error;
pub mod ops;
pub mod rng;
mod shape;
mod tensor;

pub use autograd::{Backward, Gradients};
pub use error::{Result, TensorError};
pub use ops::activation::Activation;
pub use ops::conv2d::{Conv2dArgs, Padding2d};
pub use ops::pool::Pool2dArgs;
pub use shape::Shape;
pub use tensor::{Tensor, TensorId};

/// Runs `f` inside a rayon pool of `threads` threads (0 = all cores): the
/// kernels' parallelism follows the pool they are called from.
pub fn with_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    if threads == 0 {
        return f();
    }
    match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
        Ok(pool) => pool.install(f),
        Err(_) => f(),
    }
}
