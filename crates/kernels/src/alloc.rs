//! Keeps freed tensor buffers in the process heap instead of returning them
//! to the operating system.
//!
//! glibc serves allocations above its mmap threshold (128 KiB, raised
//! dynamically only up to the largest block freed so far) with fresh `mmap`
//! pages and unmaps them on free, so every training step page-faults its
//! activations back in: for the MNIST CNN (batch 128, 12.8 MB first-layer
//! output) that was a fifth of the step time. Raising the mmap and trim
//! thresholds makes freed blocks reusable, as PyTorch's caching allocator
//! does for the same reason. glibc caps the mmap threshold at 32 MiB, so
//! larger blocks (the 100 MB first-layer output of the speech-commands
//! model at batch 100) would still be mapped and faulted in every step:
//! mmap is switched off altogether (`M_MMAP_MAX = 0`) and every block comes
//! from the heap.
//!
//! The heap is also the only one (`M_ARENA_MAX = 1`): glibc gives every
//! thread that allocates its own arena, whose memory comes from `mmap`ed
//! heaps that the settings above do not keep, so a forward pass run on a
//! pool worker (`convnet_tensor::on_worker`) faulted ten times as many pages
//! as one run from the main thread (EfficientNet-B0 at batch 16: 50k minor
//! faults per process against 580k, and 25-40% slower). Tensors are large
//! and allocated a few hundred times per pass, so one arena's lock costs
//! nothing measurable. The limit counts only for threads that have not
//! allocated yet: call this before starting a thread pool.
//!
//! Called once, on the first kernel call; set `CONVNET_KEEP_MALLOC` to leave
//! the allocator as it is.

use std::mem::MaybeUninit;
use std::sync::Once;

/// `y` viewed as possibly-uninitialised memory, so that an existing output buffer can go to
/// the kernels that write into uninitialised memory (they only ever store floats into it).
pub(crate) fn as_uninit(y: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: same size and alignment; the view is only written with
    // initialised values, so `y` stays initialised.
    unsafe { &mut *(y as *mut [f32] as *mut [MaybeUninit<f32>]) }
}

/// A vector of `len` values, all written by `fill` into uninitialised memory
/// (no zeroing pass).
///
/// # Safety
/// `fill` must write every one of the `len` elements.
pub(crate) unsafe fn filled_vec<T>(len: usize, fill: impl FnOnce(&mut [MaybeUninit<T>])) -> Vec<T> {
    let mut v: Vec<T> = Vec::with_capacity(len);
    fill(&mut v.spare_capacity_mut()[..len]);
    // SAFETY: `fill` initialised all `len` elements (the caller's contract).
    unsafe { v.set_len(len) };
    v
}

/// Blocks up to this size come from the heap (glibc's maximum, 32 MiB on 64-bit).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 32 << 20;
/// The heap is trimmed only when this much is free at its top.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: i32 = 512 << 20;

/// Applies the allocator settings once per process (no-op off glibc).
pub fn configure() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("CONVNET_KEEP_MALLOC").is_some() {
            return;
        }
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            // glibc's <malloc.h> parameter numbers
            const M_TRIM_THRESHOLD: i32 = -1;
            const M_MMAP_THRESHOLD: i32 = -3;
            const M_MMAP_MAX: i32 = -4;
            const M_ARENA_MAX: i32 = -8;
            unsafe extern "C" {
                fn mallopt(param: i32, value: i32) -> i32;
            }
            // SAFETY: mallopt is thread-safe and only changes tuning
            // parameters; a rejected value (return 0) leaves the default.
            unsafe {
                mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD);
                mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD);
                mallopt(M_MMAP_MAX, 0);
                mallopt(M_ARENA_MAX, 1);
            }
        }
    });
}
