//! The arithmetic kernels of the fused MFCC path, written as plain safe loops that the compiler
//! vectorises: a branch-free natural logarithm for the dB conversion, and a DCT-II that uses the
//! even/odd symmetry of the cosine matrix to halve the multiply-adds. The pure functions in
//! `mfcc.rs` keep using `f32::log10` and the full matrix and serve as the reference in tests.

/// `10 / ln(10)`: converts a natural log to decibels of power.
const DB_PER_NEPER: f32 = 4.342_944_8;

/// Natural log of a positive, normal, finite `x` to about 2 ulp (Cephes' `logf` polynomial on
/// the mantissa reduced to `[sqrt(1/2), sqrt(2))`), with no branches so loops over it vectorise.
/// `+inf` maps to `+inf`; zero, subnormal, negative and NaN inputs are not supported.
#[inline(always)]
pub(crate) fn ln_positive(x: f32) -> f32 {
    let bits = x.to_bits();
    let e = ((bits >> 23) as i32) - 127;
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000); // [1, 2)
    let big = m > std::f32::consts::SQRT_2;
    let m = if big { m * 0.5 } else { m };
    let e = (e + i32::from(big)) as f32;
    let f = m - 1.0;
    let z = f * f;
    let mut p = 7.037_683_6e-2_f32;
    p = p * f - 1.151_461e-1;
    p = p * f + 1.167_699_9e-1;
    p = p * f - 1.242_014_1e-1;
    p = p * f + 1.424_932_3e-1;
    p = p * f - 1.666_805_8e-1;
    p = p * f + 2.000_071_4e-1;
    p = p * f - 2.499_999_4e-1;
    p = p * f + 3.333_333e-1;
    let y = p * f * z - 2.121_944_4e-4 * e - 0.5 * z;
    let r = f + y + 0.693_359_4 * e;
    if x > f32::MAX { f32::INFINITY } else { r }
}

/// In place: `x = 10 log10(max(amin, x)) - ref_db` (librosa's `power_to_db` before the top_db
/// clamp). `amin` must be a normal f32 (checked by `DbConfig`).
#[inline(always)]
pub(crate) fn power_to_db_in_place(x: &mut [f32], amin: f32, ref_db: f32) {
    for v in x.iter_mut() {
        *v = DB_PER_NEPER * ln_positive(v.max(amin)) - ref_db;
    }
}

/// Orthonormal DCT-II over the rows of a `[n_in, frames]` matrix, keeping `n_out` rows.
///
/// `D[k, n_in - 1 - n] = (-1)^k D[k, n]`, so even coefficients only need the row sums
/// `x[n] + x[n_in - 1 - n]` and odd ones the differences: half the multiply-adds of the full
/// matrix product.
#[derive(Debug, Clone)]
pub(crate) struct SymmetricDct {
    n_in: usize,
    n_out: usize,
    /// `n_in / 2`.
    half: usize,
    /// Columns per coefficient: `half`, plus the middle row when `n_in` is odd.
    cols: usize,
    /// `[n_out, cols]`: the first `cols` entries of each row of the orthonormal DCT matrix.
    coef: Vec<f32>,
}

impl SymmetricDct {
    /// Plans the transform from the full matrix `dct: [n_out, n_in]`.
    pub(crate) fn new(dct: &[f32], n_out: usize, n_in: usize) -> Self {
        let half = n_in / 2;
        let cols = half + n_in % 2;
        let mut coef = Vec::with_capacity(n_out * cols);
        for row in dct.chunks_exact(n_in).take(n_out) {
            coef.extend_from_slice(&row[..cols]);
        }
        SymmetricDct { n_in, n_out, half, cols, coef }
    }

    /// `x: [n_in, frames] -> out: [n_out, frames]`; `sym` is scratch.
    #[inline(always)]
    pub(crate) fn apply(&self, x: &[f32], frames: usize, sym: &mut Vec<f32>, out: &mut [f32]) {
        debug_assert_eq!(x.len(), self.n_in * frames);
        debug_assert_eq!(out.len(), self.n_out * frames);
        let (half, cols) = (self.half, self.cols);
        // sym = [sums (half rows) | middle row (if odd) | differences (half rows)]
        sym.clear();
        sym.resize((cols + half) * frames, 0.0);
        let (sums, diffs) = sym.split_at_mut(cols * frames);
        for n in 0..half {
            let a = &x[n * frames..(n + 1) * frames];
            let b = &x[(self.n_in - 1 - n) * frames..(self.n_in - n) * frames];
            let s = &mut sums[n * frames..(n + 1) * frames];
            let d = &mut diffs[n * frames..(n + 1) * frames];
            for i in 0..frames {
                s[i] = a[i] + b[i];
                d[i] = a[i] - b[i];
            }
        }
        if cols > half {
            sums[half * frames..cols * frames].copy_from_slice(&x[half * frames..(half + 1) * frames]);
        }
        for (k, (o, c)) in out.chunks_exact_mut(frames).zip(self.coef.chunks_exact(cols)).enumerate() {
            o.fill(0.0);
            // Odd coefficients take the differences; the middle row's cosine is 0 for them.
            let src: &[f32] = if k % 2 == 0 { sums } else { diffs };
            for (&w, row) in c[..half].iter().zip(src.chunks_exact(frames)) {
                for (a, &b) in o.iter_mut().zip(row) {
                    *a += w * b;
                }
            }
            if cols > half && k % 2 == 0 {
                let w = c[half];
                for (a, &b) in o.iter_mut().zip(&sums[half * frames..cols * frames]) {
                    *a += w * b;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mfcc::dct_ortho_matrix;

    #[test]
    fn ln_matches_std_to_a_few_ulp() {
        let mut worst = 0.0f64;
        let mut x = 1.0e-10f32;
        while x < 1.0e30 {
            let got = f64::from(ln_positive(x));
            let want = f64::from(x).ln();
            worst = worst.max((got - want).abs() / want.abs().max(1.0));
            x *= 1.000_37;
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        for x in [f32::MIN_POSITIVE, 1.0, std::f32::consts::SQRT_2, 2.0, f32::MAX] {
            assert!((f64::from(ln_positive(x)) - f64::from(x).ln()).abs() < 1e-5 * f64::from(x).ln().abs().max(1.0));
        }
        assert_eq!(ln_positive(1.0), 0.0);
        assert_eq!(ln_positive(f32::INFINITY), f32::INFINITY);
        let mut v = [1.0, 0.0, 100.0];
        power_to_db_in_place(&mut v, 1e-10, 0.0);
        assert!(v[0].abs() < 1e-6 && (v[1] + 100.0).abs() < 1e-4 && (v[2] - 20.0).abs() < 1e-5, "{v:?}");
    }

    #[test]
    fn symmetric_dct_equals_full_matrix() {
        for (n_in, n_out, frames) in [(128, 40, 44), (7, 7, 3), (40, 13, 1), (2, 1, 5), (1, 1, 2)] {
            let d = dct_ortho_matrix(n_out, n_in);
            let x: Vec<f32> = (0..n_in * frames).map(|i| ((i * 31 % 17) as f32 - 8.0) * 0.7).collect();
            let mut want = vec![0.0f32; n_out * frames];
            for k in 0..n_out {
                for t in 0..frames {
                    want[k * frames + t] = (0..n_in).map(|n| d[k * n_in + n] * x[n * frames + t]).sum();
                }
            }
            let mut got = vec![0.0; n_out * frames];
            SymmetricDct::new(&d, n_out, n_in).apply(&x, frames, &mut Vec::new(), &mut got);
            for (a, b) in got.iter().zip(&want) {
                assert!((a - b).abs() < 1e-4, "{n_in}x{n_out}: {a} vs {b}");
            }
        }
    }
}
