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
/// Convolution weights packed once for inference.
pub use convnet_kernels::prepared::PreparedConv;
/// Per-call timing of the forward kernels (for layer profiles).
pub use convnet_kernels::profile;
pub use error::{Result, TensorError};
pub use ops::activation::Activation;
pub use ops::conv2d::{Conv2dArgs, Padding2d};
pub use ops::pad::{Pad2d, PadMode};
pub use ops::pool::Pool2dArgs;
pub use shape::Shape;
pub use tensor::{Tensor, TensorId};

/// Runs `f` on a worker thread of the current rayon pool (at once when
/// already on one), blocking the caller until it returns.
///
/// A model's forward pass is hundreds of parallel loops. Started from a
/// thread outside the pool, each loop hands all its work to the pool and puts
/// the caller to sleep until the last piece is done: a futex wake-up and two
/// context switches per loop, 18% of EfficientNet-B0's time at batch 1 in the
/// scheduler. Started on a worker, the caller takes part in its own loops and
/// the other workers steal what they can. Zoo models' inference and the
/// command-line program run through here.
pub fn on_worker<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    // before the pool's threads first allocate (see `configure_allocator`)
    configure_allocator();
    if rayon::current_thread_index().is_some() {
        return f();
    }
    // `scope` called from outside the pool runs its body on a worker
    rayon::scope(|_| f())
}

/// Runs `f` (on the current thread) while the pool's other workers stay awake:
/// each spins, running any pool work it can steal, until `f` returns.
///
/// Between two parallel loops, an idle rayon worker yields a few dozen times
/// and then sleeps; the next loop then waits for a futex wake-up before the
/// sleeper takes its share. A model's forward pass at batch 1 is a few hundred
/// loops of tens of microseconds each, with serial work in between (ONNX
/// Runtime's pool spins between operators for the same reason). The spinning
/// costs the other cores' idle time while `f` runs, nothing after.
pub fn with_pool_awake<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    use std::sync::atomic::{AtomicBool, Ordering};
    let threads = rayon::current_num_threads();
    if threads < 2 {
        return f();
    }
    let done = AtomicBool::new(false);
    let done = &done;
    rayon::scope(|s| {
        let caller = rayon::current_thread_index();
        for _ in 1..threads {
            s.spawn(move |_| {
                // a helper the caller's own thread picks up (while it waits in a
                // join of `f`) must not spin there: `f` could not go on below it
                if rayon::current_thread_index() == caller {
                    return;
                }
                while !done.load(Ordering::Acquire) {
                    if rayon::yield_now() != Some(rayon::Yield::Executed) {
                        std::hint::spin_loop();
                    }
                }
            });
        }
        let r = f();
        done.store(true, Ordering::Release);
        r
    })
}

/// `out[r, j] = bias[j] + sum_i x[r, i] * w[i, j]` with f64 inputs and sums and f32
/// weights (`x: [rows, cin]`, `w: [cin, cout]`): the exact small dense maps of an
/// inference-time squeeze-excitation gate, outside autograd. Bit-identical to the plain
/// loop for any thread count (`convnet_kernels::dense64`).
///
/// # Panics
/// When a slice's length does not match `rows`, `cin` and `cout`.
pub fn dense_f64(x: &[f64], w: &[f32], bias: Option<&[f32]>, cin: usize, cout: usize, out: &mut [f64]) {
    convnet_kernels::dense64::dense_f64(x, w, bias, cin, cout, out);
}

/// Applies the allocator settings the kernels rely on (freed buffers kept for
/// reuse, one heap shared by all threads; `convnet_kernels::alloc`). The
/// kernels do it on their first call; a program that builds its own thread
/// pool calls this first, so that the pool's threads share the main heap.
pub fn configure_allocator() {
    convnet_kernels::alloc::configure();
}

/// Lets a program end quietly when its output pipe closes (`convnet models | head`); see
/// `convnet_kernels::process::restore_default_sigpipe`. For binaries only.
pub fn restore_default_sigpipe() {
    convnet_kernels::process::restore_default_sigpipe();
}

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
