//! Opt-in timing of every forward convolution and GEMM, and the machine's FMA
//! peak, for `convnet bench infer MODEL --layers`: where a forward pass spends
//! its time and how far each layer runs from what the cores can do.
//!
//! While [`start`]ed, each outermost call of a public forward kernel entry
//! point (on the calling thread; the kernels' own nested calls are not
//! counted twice) appends one [`Record`]: what ran, its floating-point
//! operations and its wall time. Off, the cost is one relaxed atomic load per
//! call.

use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// One timed kernel call.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// The path that ran it (`igemm`, `gemm`, `direct`, `depthwise`, `fft`, `winograd`, `matmul`).
    pub kernel: &'static str,
    /// The shape, as `conv 3x3/1 56x56x64 -> 56x56x64, n=1` or `matmul 1x2048 @ 2048x1000`.
    pub what: String,
    /// Floating-point operations (2 per multiply-accumulate), counted at the
    /// direct convolution's figure whatever algorithm ran.
    pub flops: u64,
    /// Wall time, seconds.
    pub seconds: f64,
}

static ON: AtomicBool = AtomicBool::new(false);
static RECORDS: Mutex<Vec<Record>> = Mutex::new(Vec::new());

thread_local! {
    /// Profiled calls open on this thread: only the outermost one is recorded.
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// Starts recording (clearing anything recorded before).
pub fn start() {
    RECORDS.lock().unwrap_or_else(|e| e.into_inner()).clear();
    ON.store(true, Ordering::Relaxed);
}

/// Stops recording and returns the calls recorded since [`start`], in order.
pub fn stop() -> Vec<Record> {
    ON.store(false, Ordering::Relaxed);
    std::mem::take(&mut *RECORDS.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Runs `f`, recording it when profiling is on and no profiled call encloses
/// it on this thread; `describe` gives `(kernel, what, flops)` and runs only then.
pub(crate) fn timed<R>(describe: impl FnOnce() -> (&'static str, String, u64), f: impl FnOnce() -> R) -> R {
    if !ON.load(Ordering::Relaxed) {
        return f();
    }
    let depth = DEPTH.with(|d| d.replace(d.get() + 1));
    let t = Instant::now();
    let out = f();
    let seconds = t.elapsed().as_secs_f64();
    DEPTH.with(|d| d.set(depth));
    if depth == 0 {
        let (kernel, what, flops) = describe();
        RECORDS.lock().unwrap_or_else(|e| e.into_inner()).push(Record { kernel, what, flops, seconds });
    }
    out
}

/// The machine's single-precision FMA peak in GFLOP/s on the current rayon
/// pool: every thread runs a loop of independent fused multiply-adds on the
/// widest vectors the CPU has (AVX-512, else scalar code the compiler
/// vectorises) for about `millis` milliseconds in all, in rounds of 20 ms; the
/// best round counts (on a shared machine, the one least disturbed).
pub fn peak_gflops(millis: u64) -> f64 {
    use rayon::prelude::*;
    let threads = crate::threads();
    let iters = calibrate(20);
    (0..(millis / 20).max(1))
        .map(|_| {
            let t = Instant::now();
            let flops: f64 = (0..threads).into_par_iter().map(|_| fma_loop(iters)).sum();
            flops / t.elapsed().as_secs_f64() / 1e9
        })
        .fold(0.0, f64::max)
}

/// Iterations of [`fma_loop`] that take about `millis` ms on one thread.
fn calibrate(millis: u64) -> u64 {
    let mut iters = 1 << 16;
    loop {
        let t = Instant::now();
        fma_loop(iters);
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if ms >= 10.0 || iters >= 1 << 34 {
            return ((iters as f64 * millis as f64 / ms.max(1e-3)) as u64).max(1);
        }
        iters *= 4;
    }
}

/// Runs `iters` rounds of the FMA loop; returns the floating-point operations done.
fn fma_loop(iters: u64) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::x86::available() {
            // SAFETY: avx512f is available (checked above).
            let (flops, sink) = unsafe { crate::x86::fma_peak_loop(iters) };
            std::hint::black_box(sink);
            return flops;
        }
    }
    // portable: eight independent chains, as wide as the compiler makes them
    let mut acc = [[1.0f32; 8]; 8];
    let (a, b) = (std::hint::black_box(0.999_999f32), std::hint::black_box(1e-7f32));
    for _ in 0..iters {
        for chain in acc.iter_mut() {
            for v in chain.iter_mut() {
                *v = v.mul_add(a, b);
            }
        }
    }
    std::hint::black_box(acc);
    (iters * 64 * 2) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_only_outermost_calls_while_on() {
        let run = || timed(|| ("outer", "a".into(), 10), || timed(|| ("inner", "b".into(), 5), || 3));
        assert_eq!(run(), 3);
        start();
        assert_eq!(run(), 3);
        // other tests' kernels may record meanwhile: look at this test's only
        let mine =
            |recs: Vec<Record>| recs.into_iter().filter(|r| matches!(r.kernel, "outer" | "inner")).collect::<Vec<_>>();
        let recs = mine(stop());
        assert_eq!(recs.len(), 1);
        assert_eq!((recs[0].kernel, recs[0].what.as_str(), recs[0].flops), ("outer", "a", 10));
        assert!(recs[0].seconds >= 0.0);
        assert_eq!(run(), 3);
        assert!(mine(stop()).is_empty());
    }

    #[test]
    fn peak_is_positive_and_finite() {
        let p = peak_gflops(5);
        assert!(p.is_finite() && p > 0.1, "{p}");
    }
}
