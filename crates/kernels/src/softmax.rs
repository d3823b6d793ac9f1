//! Softmax over the last axis, rows in parallel, with the AVX-512 exponential of
//! `x86` (a libm `expf` per element on one thread was the attention's serial
//! bottleneck: vit_small's 197x197 score rows, 12 layers, 6 heads).

use rayon::prelude::*;

/// Rows per parallel task (at least one task's worth of floats).
const TASK_FLOATS: usize = 1 << 14;

/// Softmax of each row of `x` (`[rows, c]` flattened) into `y`: `e^(x - max) / sum`.
///
/// # Panics
/// When the lengths differ or are not a multiple of `c > 0`.
pub fn softmax_rows(x: &[f32], c: usize, y: &mut [f32]) {
    assert!(
        c > 0 && x.len() == y.len() && x.len().is_multiple_of(c),
        "softmax_rows: {} floats in rows of {c}",
        x.len()
    );
    let rows_per_task = TASK_FLOATS.div_ceil(c).max(1);
    if x.len() <= TASK_FLOATS {
        rows(x, c, y);
    } else {
        y.par_chunks_mut(rows_per_task * c).zip(x.par_chunks(rows_per_task * c)).for_each(|(y, x)| rows(x, c, y));
    }
}

fn rows(x: &[f32], c: usize, y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::x86::available() {
        for (xr, yr) in x.chunks_exact(c).zip(y.chunks_exact_mut(c)) {
            // SAFETY: avx512f checked; both rows hold `c` floats.
            unsafe { crate::x86::softmax_row(xr.as_ptr(), yr.as_mut_ptr(), c) };
        }
        return;
    }
    softmax_rows_reference(x, c, y);
}

/// The plain loop (libm `exp`): the portable path and the tests' reference.
pub fn softmax_rows_reference(x: &[f32], c: usize, y: &mut [f32]) {
    for (xr, yr) in x.chunks_exact(c).zip(y.chunks_exact_mut(c)) {
        let m = xr.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let mut s = 0.0;
        for (o, v) in yr.iter_mut().zip(xr) {
            *o = (v - m).exp();
            s += *o;
        }
        let inv = 1.0 / s;
        yr.iter_mut().for_each(|v| *v *= inv);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_rows_match_f64_on_ragged_widths() {
        for c in [1, 7, 16, 17, 197, 1000] {
            let rows = 3 + (1 << 16) / c;
            let x: Vec<f32> = (0..rows * c).map(|i| ((i * 7919) % 2001) as f32 * 0.01 - 10.0).collect();
            let mut y = vec![f32::NAN; x.len()];
            softmax_rows(&x, c, &mut y);
            for (xr, yr) in x.chunks_exact(c).zip(y.chunks_exact(c)) {
                let m = xr.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b as f64));
                let s: f64 = xr.iter().map(|&v| (v as f64 - m).exp()).sum();
                for (&v, &got) in xr.iter().zip(yr) {
                    let want = (v as f64 - m).exp() / s;
                    assert!((got as f64 - want).abs() <= 2e-6 * want + 1e-30, "c {c}: {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn large_logits_do_not_overflow_and_nan_propagates() {
        let x = [1000.0f32, 999.0, -1000.0, 0.0];
        let mut y = [0.0; 4];
        softmax_rows(&x, 4, &mut y);
        let e = (-1.0f64).exp();
        assert!((y[0] as f64 - 1.0 / (1.0 + e)).abs() < 1e-6 && y[2] == 0.0, "{y:?}");
        let x = [1.0f32, f32::NAN, 2.0];
        let mut y = [0.0; 3];
        softmax_rows(&x, 3, &mut y);
        assert!(y.iter().any(|v| v.is_nan()), "{y:?}");
    }
}
