//! Elementwise kernels on the training hot path, with an AVX-512 fast path
//! and a portable loop: the relu backward mask and dropout.

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

/// SplitMix64's increment: output `p` of a stream is `mix(origin + (p + 1) * GOLDEN)`.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

#[inline(always)]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Elements per dropout task (even, so a task starts on a whole 64-bit draw).
const DROPOUT_TASK: usize = 1 << 16;

/// Dropout's keep mask: `mask[i] = 1` when element `i` survives a drop probability `rate`.
///
/// Element `i` uses 24 bits of SplitMix64 output `i / 2` of the stream with `origin`, drawn by
/// position (counter-based), so the mask depends on the origin only — not on the thread count or
/// the task split — and every task computes its part independently. Written as a counter hash
/// rather than a sequential generator so the loop vectorises (64-bit multiplies need AVX-512DQ):
/// a sequential generator made dropout a quarter of a speech-commands training step.
pub fn dropout_mask(origin: u64, rate: f32, mask: &mut [u8]) {
    // keep when the 24-bit uniform u satisfies u / 2^24 >= rate
    let threshold = (f64::from(rate.clamp(0.0, 1.0)) * f64::from(1u32 << 24)).ceil() as u64;
    mask.par_chunks_mut(DROPOUT_TASK).enumerate().for_each(|(t, m)| {
        let first_pair = (t * DROPOUT_TASK / 2) as u64;
        #[cfg(target_arch = "x86_64")]
        if crate::x86::available() && std::arch::is_x86_feature_detected!("avx512dq") {
            // SAFETY: avx512f and avx512dq checked.
            unsafe { dropout_mask_avx512(origin, first_pair, threshold, m) };
            return;
        }
        dropout_mask_body(origin, first_pair, threshold, m);
    });
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
unsafe fn dropout_mask_avx512(origin: u64, first_pair: u64, threshold: u64, mask: &mut [u8]) {
    dropout_mask_body(origin, first_pair, threshold, mask);
}

#[inline(always)]
fn dropout_mask_body(origin: u64, first_pair: u64, threshold: u64, mask: &mut [u8]) {
    let mut pairs = mask.chunks_exact_mut(2);
    let mut p = first_pair;
    for pair in &mut pairs {
        let z = mix(origin.wrapping_add((p + 1).wrapping_mul(GOLDEN)));
        pair[0] = u8::from((z >> 8) & 0xFF_FFFF >= threshold);
        pair[1] = u8::from((z >> 40) & 0xFF_FFFF >= threshold);
        p += 1;
    }
    if let [last] = pairs.into_remainder() {
        let z = mix(origin.wrapping_add((p + 1).wrapping_mul(GOLDEN)));
        *last = u8::from((z >> 8) & 0xFF_FFFF >= threshold);
    }
}

/// `out[i] = x[i] * scale` where `mask[i] != 0`, else 0: dropout's forward (and, applied to the
/// gradient, its backward).
pub fn apply_mask(x: &[f32], mask: &[u8], scale: f32) -> Vec<f32> {
    assert_eq!(x.len(), mask.len(), "apply_mask: lengths differ");
    // SAFETY: the chunks cover the whole output and every element is written (no zeroing
    // pass over what can be a 100 MB activation).
    unsafe {
        crate::alloc::filled_vec(x.len(), |out| {
            out.par_chunks_mut(TASK).zip(x.par_chunks(TASK).zip(mask.par_chunks(TASK))).for_each(|(o, (x, m))| {
                for ((o, x), m) in o.iter_mut().zip(x).zip(m) {
                    o.write(x * (f32::from(*m) * scale));
                }
            })
        })
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

    #[test]
    fn dropout_mask_is_independent_of_the_task_split_and_keeps_the_right_share() {
        let n = 3 * DROPOUT_TASK + 7;
        let mut a = vec![9u8; n];
        dropout_mask(42, 0.25, &mut a);
        // the scalar body over the whole range gives the same mask
        let mut b = vec![9u8; n];
        dropout_mask_body(42, 0, (0.25f64 * f64::from(1u32 << 24)).ceil() as u64, &mut b);
        assert_eq!(a, b);
        let kept = a.iter().filter(|&&m| m == 1).count() as f64 / n as f64;
        assert!((kept - 0.75).abs() < 0.005, "{kept}");
        assert!(a.iter().all(|&m| m <= 1));
        let mut c = vec![0u8; n];
        dropout_mask(43, 0.25, &mut c);
        assert_ne!(a, c);
        let y = apply_mask(&[1.0, 2.0, 3.0], &[1, 0, 1], 2.0);
        assert_eq!(y, [2.0, 0.0, 6.0]);
    }
}
