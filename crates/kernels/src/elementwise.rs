//! Elementwise kernels on the training hot path, with an AVX-512 fast path
//! and a portable loop.

use rayon::prelude::*;

/// Elements per parallel task.
const TASK: usize = 1 << 15;

/// The relu backward mask: `out[i] = if y[i] > 0 { g[i] } else { 0 }`, where
/// `y` is the relu's output and `g` the gradient of it. Branch-free: a random
/// sign pattern costs nothing extra.
pub fn relu_backward(g: &[f32], y: &[f32], out: &mut [f32]) {
    assert!(g.len() == out.len() && y.len() == out.len(), "relu_backward: lengths differ");
    if out.len() < TASK {
        relu_backward_serial(g, y, out);
    } else {
        out.par_chunks_mut(TASK)
            .zip(g.par_chunks(TASK).zip(y.par_chunks(TASK)))
            .for_each(|(o, (g, y))| relu_backward_serial(g, y, o));
    }
}

/// [`relu_backward`] on the calling thread only.
pub fn relu_backward_serial(g: &[f32], y: &[f32], out: &mut [f32]) {
    assert!(g.len() == out.len() && y.len() == out.len(), "relu_backward: lengths differ");
    #[cfg(target_arch = "x86_64")]
    if crate::x86::available() {
        // SAFETY: avx512f checked; equal lengths asserted above.
        unsafe { crate::x86::relu_mask(g, y, out) };
        return;
    }
    relu_backward_reference(g, y, out);
}

/// Plain-loop [`relu_backward`], the reference for tests.
pub fn relu_backward_reference(g: &[f32], y: &[f32], out: &mut [f32]) {
    for ((o, g), y) in out.iter_mut().zip(g).zip(y) {
        *o = if *y > 0.0 { *g } else { 0.0 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relu_backward_matches_reference_on_ragged_lengths() {
        for n in [0, 1, 15, 16, 17, 67, 100_003] {
            let g: Vec<f32> = (0..n).map(|i| (i % 13) as f32 - 6.0).collect();
            let y: Vec<f32> = (0..n).map(|i| ((i * 7) % 5) as f32 - 2.0).collect();
            let (mut a, mut b) = (vec![9.0; n], vec![9.0; n]);
            relu_backward(&g, &y, &mut a);
            relu_backward_reference(&g, &y, &mut b);
            assert_eq!(a, b, "n = {n}");
        }
    }
}
