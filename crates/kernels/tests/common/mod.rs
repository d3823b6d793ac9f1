//! Shared helpers for the kernel tests: a seeded generator (the kernels
//! crate sits below `convnet-tensor` and its `Rng`) and a comparison that
//! scales its tolerance by the magnitude of the terms summed, which bounds
//! f32 rounding error whatever the cancellation.
#![allow(dead_code)] // each test binary uses a different subset

/// SplitMix64, as `convnet_tensor::rng::Rng`.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5851_F42D_4C95_7F2D)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
    /// Uniform in `[-1, 1)`.
    pub fn signed(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    /// `n` values uniform in `[-1, 1)`.
    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.signed()).collect()
    }
    /// `n` small integers in `-3..=3` stored as f32: sums of them are exact
    /// and maxima have ties.
    pub fn ints(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.below(7) as f32 - 3.0).collect()
    }
}

/// Asserts `|got - want| <= tol * (1 + scale)` elementwise, where `scale[i]`
/// is the sum of absolute values of the terms that made `want[i]`.
#[track_caller]
pub fn assert_close_scaled(what: &str, got: &[f32], want: &[f64], scale: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, ((g, w), s)) in got.iter().zip(want).zip(scale).enumerate() {
        let err = (*g as f64 - w).abs();
        assert!(
            err <= tol * (1.0 + s),
            "{what}: element {i}: got {g}, want {w} (err {err:.3e}, term magnitude {s:.3e})"
        );
    }
}
