//! A small deterministic random number generator: SplitMix64 (Steele, Lea and Flood,
//! "Fast splittable pseudorandom number generators", OOPSLA 2014; the constants of
//! `java.util.SplittableRandom`).
//!
//! Augmentation draws must depend only on `(seed, epoch, sample index)`, never on which
//! worker thread decoded the sample, so every sample gets its own generator
//! ([`SplitMix64::for_sample`]). Written here rather than taken from `rand` to keep the
//! crate's dependencies lean; the streams are stable across versions of this crate.

/// SplitMix64: 64 bits of state, one add and a mixing function per draw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// The SplitMix64 finaliser (a bijection on `u64` with good avalanche).
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl SplitMix64 {
    /// A generator whose first output is `mix64(seed + gamma)`, as `SplittableRandom(seed)`.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The generator of one sample in one epoch: independent streams for every
    /// `(seed, epoch, index)`, so results never depend on thread scheduling or batch order.
    pub fn for_sample(seed: u64, epoch: u64, index: u64) -> Self {
        let a = mix64(seed.wrapping_add(GOLDEN_GAMMA));
        let b = mix64(a ^ mix64(epoch.wrapping_add(2u64.wrapping_mul(GOLDEN_GAMMA))));
        SplitMix64::new(mix64(b ^ mix64(index.wrapping_add(3u64.wrapping_mul(GOLDEN_GAMMA)))))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix64(self.state)
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[lo, hi)`, computed as `lo + (hi - lo) * u` like `torch.Tensor.uniform_`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next_f64()
    }

    /// Uniform integer in `lo..=hi` (unbiased: rejection sampling). `lo > hi` returns `lo`.
    pub fn int_inclusive(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        let span = hi - lo;
        if span == u64::MAX {
            return self.next_u64();
        }
        let n = span + 1;
        // reject the top partial bucket so every value is equally likely
        let zone = u64::MAX - (u64::MAX - n + 1) % n;
        loop {
            let r = self.next_u64();
            if r <= zone {
                return lo + r % n;
            }
        }
    }

    /// A uniformly random permutation of `0..n` (Fisher-Yates, drawing from the end).
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.int_inclusive(0, i as u64) as usize;
            v.swap(i, j);
        }
        v
    }
}

/// The order of one epoch: a permutation of `0..n` that depends only on `(seed, epoch)`.
pub fn shuffled_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    SplitMix64::for_sample(seed, epoch, u64::MAX).permutation(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_published_stream() {
        // SplittableRandom / the reference C code with seed 1234567
        let mut r = SplitMix64::new(1234567);
        let got: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
        assert_eq!(got, [6457827717110365317, 3203168211198807973, 9817491932198370423]);
    }

    #[test]
    fn ranges_and_permutations() {
        let mut r = SplitMix64::new(7);
        for _ in 0..1000 {
            let u = r.uniform(0.08, 1.0);
            assert!((0.08..1.0).contains(&u));
            assert!(r.int_inclusive(3, 5) >= 3 && r.int_inclusive(3, 5) <= 5);
        }
        assert_eq!(r.int_inclusive(4, 4), 4);
        let mut p = shuffled_order(50, 1, 2);
        assert_eq!(p, shuffled_order(50, 1, 2));
        assert_ne!(p, shuffled_order(50, 1, 3));
        p.sort_unstable();
        assert_eq!(p, (0..50).collect::<Vec<_>>());
        assert_ne!(SplitMix64::for_sample(1, 0, 5), SplitMix64::for_sample(1, 0, 6));
    }
}
