//! The arithmetic kernels of the fused MFCC path (`MfccPlan` in `mfcc.rs`): windowing two
//! frames into one complex FFT input, splitting that FFT into the two frames' power spectra,
//! interleaving four such pairs into the filterbank's frame-block layout, the banded filterbank
//! on a block, the dB conversion (a branch-free natural logarithm) with the block's maximum for
//! the `top_db` clamp, and a DCT-II that uses the even/odd symmetry of the cosine matrix to
//! halve the multiply-adds. The pure functions in `mfcc.rs` and `stft.rs` keep using `realfft`,
//! `f32::log10` and the full matrix and serve as the reference in tests.
//!
//! Why hand-vectorised: profiling the MFCC extractor (callgrind, 1 s clips at 22050 Hz, n_fft
//! 2048) showed that more instructions went into the work around the FFT than into the FFT:
//! per-element complex interleaving, re/im splitting and scattering of each frame's spectrum
//! into the block layout (LLVM compiles these interleaving loads and stores to scalar code),
//! per-sample edge padding, bounds checks in the filterbank's per-filter setup, and the
//! unfused multiply-adds of the filterbank, logarithm and DCT. Each kernel therefore has an
//! AVX2+FMA form written with `pulp`'s safe intrinsics (module `avx2`; loads and stores are
//! `bytemuck` casts of fixed-size arrays, so no `unsafe`), chosen at run time through [`Avx2`],
//! and a plain loop that is the reference in the tests below and the path on other CPUs. The
//! AVX2 forms of the filterbank, logarithm and DCT fuse multiply-adds, so they round slightly
//! differently (at the level of f32 rounding: the librosa fixtures' MFCC errors stay ~3e-7 of
//! the largest value); the other kernels round identically.

use crate::mel::BLOCK;

/// The instruction set of the hand-vectorised kernels below: `Some` runs their AVX2 form
/// (`pulp`'s x86-64-v3 token, whose intrinsics are safe to call), `None` their plain loops.
/// The AVX2 forms must run inside `V3::vectorize` (see `mfcc.rs`) to be compiled as such.
#[cfg(target_arch = "x86_64")]
pub(crate) type Avx2 = Option<pulp::x86::V3>;
/// The instruction set of the hand-vectorised kernels: none off x86-64.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) type Avx2 = Option<std::convert::Infallible>;

/// The best [`Avx2`] level of this CPU.
pub(crate) fn detect_avx2() -> Avx2 {
    #[cfg(target_arch = "x86_64")]
    return pulp::x86::V3::try_new();
    #[cfg(not(target_arch = "x86_64"))]
    return None;
}

/// `z[2i] = a[i] w[i]`, `z[2i + 1] = b[i] w[i]`: two windowed real frames as one complex signal
/// (interleaved re/im, the layout of `Complex<f32>`), `a, b, w: [n] -> z: [2n]`.
///
/// Hand-vectorised: LLVM compiles the interleaving store of the plain loop to scalar code,
/// which made this loop cost about 40 % of the FFT after it.
#[inline(always)]
pub(crate) fn interleave_windowed(simd: Avx2, a: &[f32], b: &[f32], w: &[f32], z: &mut [f32]) {
    let n = w.len();
    let (a, b, z) = (&a[..n], &b[..n], &mut z[..2 * n]);
    let (a8, a_tail) = a.as_chunks::<8>();
    let (b8, b_tail) = b.as_chunks::<8>();
    let (w8, w_tail) = w.as_chunks::<8>();
    let (z16, z_tail) = z.as_chunks_mut::<16>();
    match simd {
        #[cfg(target_arch = "x86_64")]
        Some(v3) => avx2::interleave_windowed(v3, a8, b8, w8, z16),
        _ => {
            for (((z, a), b), w) in z16.iter_mut().zip(a8).zip(b8).zip(w8) {
                for i in 0..8 {
                    z[2 * i] = a[i] * w[i];
                    z[2 * i + 1] = b[i] * w[i];
                }
            }
        }
    }
    for (((z, &a), &b), &w) in z_tail.as_chunks_mut::<2>().0.iter_mut().zip(a_tail).zip(b_tail).zip(w_tail) {
        *z = [a * w, b * w];
    }
}

/// The power spectra of two real frames `a`, `b` from the FFT `Z` of `a + i b`:
/// `z: [2n]` (interleaved re/im) -> `out: [2 nb]` with `out[2k] = |X_a[k]|^2` and
/// `out[2k + 1] = |X_b[k]|^2` for `k < nb <= n / 2 + 1`.
///
/// `X_a[k] = (Z_k + conj Z_{n-k}) / 2` and `X_b[k] = (Z_k - conj Z_{n-k}) / 2i`, so with
/// `s = Z_k + Z_{n-k}` and `d = Z_k - Z_{n-k}`: `|X_a|^2 = (s_re^2 + d_im^2) / 4`,
/// `|X_b|^2 = (s_im^2 + d_re^2) / 4`. Both come out side by side (one frame pair per 8 bytes),
/// which is the unit [`pairs_to_block`] moves. Hand-vectorised (the reversed reads of
/// `Z_{n-k}` are one lane permute per four bins); both forms round identically.
#[inline(always)]
pub(crate) fn pair_power(simd: Avx2, z: &[f32], out: &mut [f32]) {
    let n = z.len() / 2;
    let nb = out.len() / 2;
    debug_assert!(nb >= 1 && nb <= n / 2 + 1, "{nb} bins of a {n}-point FFT");
    // k = 0: Z_0 = X_a[0] + i X_b[0], both real.
    out[0] = z[0] * z[0];
    out[1] = z[1] * z[1];
    // k = 1..nb pairs with n - k = n - 1 down to n + 1 - nb.
    let fwd = &z[2..2 * nb];
    let rev = &z[2 * (n + 1 - nb)..2 * n];
    let out = &mut out[2..2 * nb];
    // Bins done after k = 0.
    let done = match simd {
        #[cfg(target_arch = "x86_64")]
        Some(v3) => avx2::pair_power(v3, fwd, rev, out),
        _ => 0,
    };
    let m = nb - 1;
    for k in done..m {
        let (f, r) = (&fwd[2 * k..2 * k + 2], &rev[2 * (m - 1 - k)..2 * (m - k)]);
        let (sr, si, dr, di) = (f[0] + r[0], f[1] + r[1], f[0] - r[0], f[1] - r[1]);
        out[2 * k] = 0.25 * (sr * sr + di * di);
        out[2 * k + 1] = 0.25 * (si * si + dr * dr);
    }
}

/// Frame pairs per filterbank block (`BLOCK / 2`).
pub(crate) const PAIRS: usize = BLOCK / 2;

/// Interleaves [`PAIRS`] pair spectra from [`pair_power`] (`pairs: [PAIRS, stride]`, each
/// `[nb, 2]`) into the filterbank's block layout `block: [nb, BLOCK]`:
/// `block[k * BLOCK + 2p + c] = pairs[p * stride + 2k + c]`, a transpose of 8-byte units
/// (hand-vectorised as 4x4 transposes of 64-bit lanes).
#[inline(always)]
pub(crate) fn pairs_to_block(simd: Avx2, pairs: &[f32], stride: usize, nb: usize, block: &mut [f32]) {
    const { assert!(BLOCK == 8, "pairs_to_block is written for four pairs") };
    let rows = block[..nb * BLOCK].as_chunks_mut::<BLOCK>().0;
    let pair = |p: usize| &pairs[p * stride..p * stride + 2 * nb];
    let (p0, p1, p2, p3) = (pair(0), pair(1), pair(2), pair(3));
    let done = match simd {
        #[cfg(target_arch = "x86_64")]
        Some(v3) => avx2::pairs_to_block(v3, [p0, p1, p2, p3], rows),
        _ => 0,
    };
    for (k, r) in rows.iter_mut().enumerate().skip(done) {
        let i = 2 * k;
        *r = [p0[i], p0[i + 1], p1[i], p1[i + 1], p2[i], p2[i + 1], p3[i], p3[i + 1]];
    }
}

/// The AVX2 forms of the kernels above, with `pulp`'s safe intrinsics; loads and stores are
/// `bytemuck` casts of fixed-size arrays.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use core::arch::x86_64::{__m256, __m256d};

    use pulp::bytemuck::cast;
    use pulp::x86::V3;

    #[inline(always)]
    pub(super) fn interleave_windowed(v3: V3, a: &[[f32; 8]], b: &[[f32; 8]], w: &[[f32; 8]], z: &mut [[f32; 16]]) {
        /// Eight samples of each frame.
        #[inline(always)]
        fn eight(v3: V3, z: &mut [f32; 16], a: [f32; 8], b: [f32; 8], w: [f32; 8]) {
            let avx = v3.avx;
            let w: __m256 = cast(w);
            let aw = avx._mm256_mul_ps(cast(a), w);
            let bw = avx._mm256_mul_ps(cast(b), w);
            // [a0 b0 a1 b1 | a4 b4 a5 b5] and [a2 b2 a3 b3 | a6 b6 a7 b7]
            let lo = avx._mm256_unpacklo_ps(aw, bw);
            let hi = avx._mm256_unpackhi_ps(aw, bw);
            let z0 = avx._mm256_permute2f128_ps::<0x20>(lo, hi);
            let z1 = avx._mm256_permute2f128_ps::<0x31>(lo, hi);
            *z = cast([z0, z1]);
        }
        // Two chunks per iteration: LLVM does not unroll this loop by itself.
        let n = z.len().min(a.len()).min(b.len()).min(w.len());
        let (z2, z_tail) = z[..n].as_chunks_mut::<2>();
        let (a2, a_tail) = a[..n].as_chunks::<2>();
        let (b2, b_tail) = b[..n].as_chunks::<2>();
        let (w2, w_tail) = w[..n].as_chunks::<2>();
        for (((z, a), b), w) in z2.iter_mut().zip(a2).zip(b2).zip(w2) {
            let [z0, z1] = z;
            eight(v3, z0, a[0], b[0], w[0]);
            eight(v3, z1, a[1], b[1], w[1]);
        }
        if let (Some(z), Some(a), Some(b), Some(w)) =
            (z_tail.first_mut(), a_tail.first(), b_tail.first(), w_tail.first())
        {
            eight(v3, z, *a, *b, *w);
        }
    }

    /// Bins `1..` four at a time (see [`super::pair_power`]; `fwd`, `rev`, `out` start at bin
    /// 1, `rev` is read backwards); returns how many bins it did.
    #[inline(always)]
    pub(super) fn pair_power(v3: V3, fwd: &[f32], rev: &[f32], out: &mut [f32]) -> usize {
        /// Four bins from `Z_k..Z_{k+4}` and `Z_{n-k-3}..=Z_{n-k}`.
        #[inline(always)]
        fn four(v3: V3, f: [f32; 8], r: [f32; 8]) -> [f32; 8] {
            let (avx, avx2) = (v3.avx, v3.avx2);
            // Z_{n-k} for k..k+4: four complex numbers read backwards.
            let r = avx._mm256_castpd_ps(avx2._mm256_permute4x64_pd::<0b00_01_10_11>(cast::<[f32; 8], __m256d>(r)));
            let f: __m256 = cast(f);
            let s = avx._mm256_add_ps(f, r);
            let d = avx._mm256_sub_ps(f, r);
            let s2 = avx._mm256_mul_ps(s, s);
            let d2 = avx._mm256_mul_ps(d, d);
            // [d_im^2, d_re^2] per bin
            let d2 = avx._mm256_permute_ps::<0b10_11_00_01>(d2);
            cast(avx._mm256_mul_ps(avx._mm256_set1_ps(0.25), avx._mm256_add_ps(s2, d2)))
        }
        let m = out.len().min(fwd.len()).min(rev.len()) / 2; // bins
        let (fwd, out) = (&fwd[..2 * m], &mut out[..2 * m]);
        let rev = &rev[rev.len() - 2 * m..];
        // Eight bins per iteration (LLVM does not unroll this loop by itself), then four.
        let (f16, f_tail) = fwd.as_chunks::<16>();
        let (o16, o_tail) = out.as_chunks_mut::<16>();
        let mut r16 = rev.rchunks_exact(16);
        for ((o, f), r) in o16.iter_mut().zip(f16).zip(&mut r16) {
            let (f0, f1) = f.split_at(8);
            let (r1, r0) = r.split_at(8);
            let o: &mut [[f32; 8]; 2] = pulp::bytemuck::cast_mut(o);
            o[0] = four(v3, f0.try_into().expect("8"), r0.try_into().expect("8"));
            o[1] = four(v3, f1.try_into().expect("8"), r1.try_into().expect("8"));
        }
        let r_tail = r16.remainder();
        if f_tail.len() >= 8 {
            let o: &mut [f32; 8] = (&mut o_tail[..8]).try_into().expect("8");
            let r = &r_tail[r_tail.len() - 8..];
            *o = four(v3, f_tail[..8].try_into().expect("8"), r.try_into().expect("8"));
        }
        (fwd.len() - f_tail.len() + if f_tail.len() >= 8 { 8 } else { 0 }) / 2
    }

    /// Rows four at a time (see [`super::pairs_to_block`]); returns how many rows it did.
    #[inline(always)]
    pub(super) fn pairs_to_block(v3: V3, pairs: [&[f32]; 4], rows: &mut [[f32; 8]]) -> usize {
        let avx = v3.avx;
        let [p0, p1, p2, p3] = pairs.map(|p| p.as_chunks::<8>().0);
        let (r4, _) = rows.as_chunks_mut::<4>();
        for ((((r, a), b), c), d) in r4.iter_mut().zip(p0).zip(p1).zip(p2).zip(p3) {
            let (a, b, c, d): (__m256d, __m256d, __m256d, __m256d) = (cast(*a), cast(*b), cast(*c), cast(*d));
            let (ab_lo, ab_hi) = (avx._mm256_unpacklo_pd(a, b), avx._mm256_unpackhi_pd(a, b));
            let (cd_lo, cd_hi) = (avx._mm256_unpacklo_pd(c, d), avx._mm256_unpackhi_pd(c, d));
            *r = cast([
                avx._mm256_permute2f128_pd::<0x20>(ab_lo, cd_lo),
                avx._mm256_permute2f128_pd::<0x20>(ab_hi, cd_hi),
                avx._mm256_permute2f128_pd::<0x31>(ab_lo, cd_lo),
                avx._mm256_permute2f128_pd::<0x31>(ab_hi, cd_hi),
            ]);
        }
        4 * r4.len().min(p0.len())
    }

    /// See [`super::power_to_db_in_place`]; the same reduction and polynomial as
    /// [`super::ln_positive`], evaluated with fused multiply-adds.
    #[inline(always)]
    pub(super) fn power_to_db(v3: V3, x: &mut [[f32; 8]], amin: f32, ref_db: f32) {
        let (avx, avx2, fma) = (v3.avx, v3.avx2, v3.fma);
        let amin = avx._mm256_set1_ps(amin);
        let ref_db = avx._mm256_set1_ps(ref_db);
        let one = avx._mm256_set1_ps(1.0);
        let half = avx._mm256_set1_ps(0.5);
        let sqrt2 = avx._mm256_set1_ps(std::f32::consts::SQRT_2);
        let max = avx._mm256_set1_ps(f32::MAX);
        let inf = avx._mm256_set1_ps(f32::INFINITY);
        let mant = avx._mm256_set1_epi32(0x007f_ffff);
        let exp1 = avx._mm256_set1_epi32(0x3f80_0000);
        let bias = avx._mm256_set1_epi32(127);
        let poly = super::LN_POLY.map(|c| avx._mm256_set1_ps(c));
        let (ln2_hi, ln2_lo) = (avx._mm256_set1_ps(super::LN2_HI), avx._mm256_set1_ps(super::LN2_LO));
        let db = avx._mm256_set1_ps(super::DB_PER_NEPER);
        for v in x.iter_mut() {
            // max(x, amin), NaN -> amin like f32::max
            let x = avx._mm256_max_ps(cast(*v), amin);
            let bits = avx._mm256_castps_si256(x);
            let e = avx2._mm256_sub_epi32(avx2._mm256_srli_epi32::<23>(bits), bias);
            let m = avx._mm256_castsi256_ps(avx2._mm256_or_si256(avx2._mm256_and_si256(bits, mant), exp1));
            let big = avx._mm256_cmp_ps::<0x1e>(m, sqrt2); // _CMP_GT_OQ
            let m = avx._mm256_blendv_ps(m, avx._mm256_mul_ps(m, half), big);
            let e = avx._mm256_cvtepi32_ps(avx2._mm256_sub_epi32(e, avx._mm256_castps_si256(big)));
            let f = avx._mm256_sub_ps(m, one);
            let z = avx._mm256_mul_ps(f, f);
            let mut p = poly[0];
            for &c in &poly[1..] {
                p = fma._mm256_fmadd_ps(p, f, c);
            }
            let y = avx._mm256_mul_ps(avx._mm256_mul_ps(p, f), z);
            let y = fma._mm256_fnmadd_ps(half, z, fma._mm256_fmadd_ps(ln2_lo, e, y));
            let r = fma._mm256_fmadd_ps(ln2_hi, e, avx._mm256_add_ps(f, y));
            let r = avx._mm256_blendv_ps(r, inf, avx._mm256_cmp_ps::<0x1e>(x, max));
            *v = cast(fma._mm256_fmsub_ps(db, r, ref_db));
        }
    }

    /// The maximum of each column of `rows` (NaNs skipped).
    #[inline(always)]
    pub(super) fn lane_max(v3: V3, rows: &[[f32; 8]]) -> [f32; 8] {
        let avx = v3.avx;
        let mut m = avx._mm256_set1_ps(f32::NEG_INFINITY);
        for r in rows {
            // max_ps returns its second operand when either is NaN.
            m = avx._mm256_max_ps(cast(*r), m);
        }
        cast(m)
    }

    /// See [`super::sparse_block`]: two accumulators per filter (even and odd weights) halve
    /// the chain of dependent additions.
    #[inline(always)]
    pub(super) fn sparse_block(
        v3: V3,
        bands: &[(usize, usize)],
        weights: &[f32],
        rows: &[[f32; 8]],
        out: &mut [[f32; 8]],
    ) {
        let (avx, fma) = (v3.avx, v3.fma);
        let mut weights = weights;
        for (o, &(start, len)) in out.iter_mut().zip(bands) {
            let (w, rest) = weights.split_at(len);
            weights = rest;
            let (w2, w_tail) = w.as_chunks::<2>();
            let (b2, b_tail) = rows[start..start + len].as_chunks::<2>();
            let (mut a0, mut a1) = (avx._mm256_setzero_ps(), avx._mm256_setzero_ps());
            for (w, b) in w2.iter().zip(b2) {
                a0 = fma._mm256_fmadd_ps(avx._mm256_set1_ps(w[0]), cast(b[0]), a0);
                a1 = fma._mm256_fmadd_ps(avx._mm256_set1_ps(w[1]), cast(b[1]), a1);
            }
            if let (Some(&w), Some(b)) = (w_tail.first(), b_tail.first()) {
                a0 = fma._mm256_fmadd_ps(avx._mm256_set1_ps(w), cast(*b), a0);
            }
            *o = cast(avx._mm256_add_ps(a0, a1));
        }
    }

    /// `sum_n c[n] * src[n * stride + c0..][..8 V]` over the rows of `src`, with the `V`
    /// accumulators in registers.
    #[inline(always)]
    pub(super) fn weighted_rows<const V: usize>(
        v3: V3,
        c: &[f32],
        src: &[f32],
        stride: usize,
        c0: usize,
    ) -> [[f32; 8]; V] {
        let (avx, fma) = (v3.avx, v3.fma);
        let mut acc = [avx._mm256_setzero_ps(); V];
        for (&w, row) in c.iter().zip(src.chunks_exact(stride)) {
            let r: &[[f32; 8]; V] = row[c0..c0 + 8 * V].as_chunks::<8>().0.try_into().expect("V vectors");
            let w = avx._mm256_set1_ps(w);
            for (a, &r) in acc.iter_mut().zip(r) {
                *a = fma._mm256_fmadd_ps(w, cast(r), *a);
            }
        }
        acc.map(cast)
    }
}

/// `10 / ln(10)`: converts a natural log to decibels of power.
const DB_PER_NEPER: f32 = 4.342_944_8;

/// Cephes' `logf` polynomial, highest power first.
const LN_POLY: [f32; 9] = [
    7.037_683_6e-2,
    -1.151_461e-1,
    1.167_699_9e-1,
    -1.242_014_1e-1,
    1.424_932_3e-1,
    -1.666_805_8e-1,
    2.000_071_4e-1,
    -2.499_999_4e-1,
    3.333_333e-1,
];
/// `ln 2` split into a part exact in f32 and the rest.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

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
    let mut p = LN_POLY[0];
    for &c in &LN_POLY[1..] {
        p = p * f + c;
    }
    let y = p * f * z + LN2_LO * e - 0.5 * z;
    let r = f + y + LN2_HI * e;
    if x > f32::MAX { f32::INFINITY } else { r }
}

/// In place: `x = 10 log10(max(amin, x)) - ref_db` (librosa's `power_to_db` before the top_db
/// clamp). `amin` must be a normal f32 (checked by `DbConfig`).
#[inline(always)]
pub(crate) fn power_to_db_in_place(simd: Avx2, x: &mut [f32], amin: f32, ref_db: f32) {
    let (x8, tail) = x.as_chunks_mut::<8>();
    match simd {
        #[cfg(target_arch = "x86_64")]
        Some(v3) => avx2::power_to_db(v3, x8, amin, ref_db),
        _ => power_to_db_plain(x8.as_flattened_mut(), amin, ref_db),
    }
    power_to_db_plain(tail, amin, ref_db);
}

#[inline(always)]
fn power_to_db_plain(x: &mut [f32], amin: f32, ref_db: f32) {
    for v in x.iter_mut() {
        *v = DB_PER_NEPER * ln_positive(v.max(amin)) - ref_db;
    }
}

/// The largest of the first `valid` columns of a block `x: [rows, BLOCK]` (`-inf` if none;
/// NaNs are skipped, as `f32::max` does).
#[inline(always)]
pub(crate) fn block_max(simd: Avx2, x: &[f32], valid: usize) -> f32 {
    let rows = x.as_chunks::<BLOCK>().0;
    let lanes: [f32; BLOCK] = match simd {
        #[cfg(target_arch = "x86_64")]
        Some(v3) => avx2::lane_max(v3, rows),
        _ => rows.iter().fold([f32::NEG_INFINITY; BLOCK], |mut m, r| {
            for (m, &v) in m.iter_mut().zip(r) {
                *m = if v > *m { v } else { *m };
            }
            m
        }),
    };
    lanes[..valid].iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v))
}

/// The banded filterbank on a block of frames: filter `m` has the weights that follow those of
/// filters `0..m` in `weights`, one per bin of its band `bands[m] = (first bin, length)`;
/// `spectra: [n_bins, BLOCK]` -> `out: [n_filters, BLOCK]` (see
/// `SparseFilterbank::apply_block`).
#[inline(always)]
pub(crate) fn sparse_block(simd: Avx2, bands: &[(usize, usize)], weights: &[f32], spectra: &[f32], out: &mut [f32]) {
    let rows = spectra.as_chunks::<BLOCK>().0;
    let out = out.as_chunks_mut::<BLOCK>().0;
    match simd {
        #[cfg(target_arch = "x86_64")]
        Some(v3) => avx2::sparse_block(v3, bands, weights, rows, out),
        _ => {
            let mut weights = weights;
            for (o, &(start, len)) in out.iter_mut().zip(bands) {
                let (w, rest) = weights.split_at(len);
                weights = rest;
                let mut acc = [0.0f32; BLOCK];
                for (&wk, s) in w.iter().zip(&rows[start..start + len]) {
                    for j in 0..BLOCK {
                        acc[j] += wk * s[j];
                    }
                }
                *o = acc;
            }
        }
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

    /// `x: [n_in, stride] -> out: [n_out, frames]`, the first `frames <= stride` columns of
    /// each row of `x` (the rest is padding, transformed and dropped); `sym` is scratch.
    ///
    /// Columns go in chunks of [`DCT_CHUNK`] (then 8, then 1) whose accumulators stay in vector
    /// registers for a whole coefficient: one broadcast weight and `DCT_CHUNK / 8` multiply-adds
    /// per input row, the same summation order as a plain row-by-row product.
    #[inline(always)]
    pub(crate) fn apply(
        &self,
        simd: Avx2,
        x: &[f32],
        stride: usize,
        frames: usize,
        sym: &mut Vec<f32>,
        out: &mut [f32],
    ) {
        debug_assert_eq!(x.len(), self.n_in * stride);
        debug_assert!(frames <= stride);
        debug_assert_eq!(out.len(), self.n_out * frames);
        let (half, cols) = (self.half, self.cols);
        // sym = [sums (half rows) | middle row (if odd) | differences (half rows)]
        sym.resize((cols + half) * stride, 0.0);
        let (sums, diffs) = sym.split_at_mut(cols * stride);
        for n in 0..half {
            let a = &x[n * stride..(n + 1) * stride];
            let b = &x[(self.n_in - 1 - n) * stride..(self.n_in - n) * stride];
            let s = &mut sums[n * stride..(n + 1) * stride];
            let d = &mut diffs[n * stride..(n + 1) * stride];
            for i in 0..stride {
                s[i] = a[i] + b[i];
                d[i] = a[i] - b[i];
            }
        }
        if cols > half {
            sums[half * stride..cols * stride].copy_from_slice(&x[half * stride..(half + 1) * stride]);
        }
        let (sums, diffs) = (&*sums, &*diffs);
        let mut c0 = 0;
        while c0 + DCT_CHUNK <= stride && c0 < frames {
            self.chunk::<DCT_CHUNK, { DCT_CHUNK / 8 }>(simd, sums, diffs, stride, c0, frames, out);
            c0 += DCT_CHUNK;
        }
        while c0 + 8 <= stride && c0 < frames {
            self.chunk::<8, 1>(simd, sums, diffs, stride, c0, frames, out);
            c0 += 8;
        }
        while c0 < frames {
            self.chunk::<1, 0>(None, sums, diffs, stride, c0, frames, out);
            c0 += 1;
        }
    }

    /// Columns `c0..c0 + W` (those below `frames` are written) of every coefficient; `V` is
    /// `W / 8`, the AVX2 registers per accumulator row.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn chunk<const W: usize, const V: usize>(
        &self,
        simd: Avx2,
        sums: &[f32],
        diffs: &[f32],
        stride: usize,
        c0: usize,
        frames: usize,
        out: &mut [f32],
    ) {
        let cols = self.cols;
        let valid = (frames - c0).min(W);
        for (k, c) in self.coef.chunks_exact(cols).enumerate() {
            // Odd coefficients take the differences; the middle row's cosine is 0 for them.
            let (src, c) = if k % 2 == 0 { (sums, c) } else { (diffs, &c[..self.half]) };
            let o = &mut out[k * frames + c0..k * frames + c0 + valid];
            match simd {
                #[cfg(target_arch = "x86_64")]
                Some(v3) if V * 8 == W && V > 0 => {
                    let acc = avx2::weighted_rows::<V>(v3, c, src, stride, c0);
                    o.copy_from_slice(&acc.as_flattened()[..valid]);
                }
                _ => {
                    let mut acc = [0.0f32; W];
                    for (&w, row) in c.iter().zip(src.chunks_exact(stride)) {
                        for (a, &b) in acc.iter_mut().zip(&row[c0..c0 + W]) {
                            *a += w * b;
                        }
                    }
                    o.copy_from_slice(&acc[..valid]);
                }
            }
        }
    }
}

/// Columns per register-resident chunk of [`SymmetricDct::apply`]: six AVX2 (three AVX-512)
/// accumulators, and exactly the 48 padded frames of a 1 s clip at librosa's defaults.
pub(crate) const DCT_CHUNK: usize = 48;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mfcc::dct_ortho_matrix;

    /// Deterministic values in `[-1, 1)`.
    fn noise(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..n)
            .map(|_| {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// The levels to compare: the plain loops, and AVX2 where this CPU has it.
    fn levels() -> Vec<Avx2> {
        let mut l = vec![None];
        if detect_avx2().is_some() {
            l.push(detect_avx2());
        } else {
            eprintln!("no AVX2/FMA on this CPU: only the plain kernels are tested");
        }
        l
    }

    #[test]
    fn interleave_windowed_on_ragged_lengths() {
        for n in (1..=67).chain([2048]) {
            let (a, b, w) = (noise(n, 1), noise(n, 2), noise(n, 3));
            for simd in levels() {
                let mut z = vec![f32::NAN; 2 * n];
                interleave_windowed(simd, &a, &b, &w, &mut z);
                for i in 0..n {
                    assert_eq!([z[2 * i], z[2 * i + 1]], [a[i] * w[i], b[i] * w[i]], "n={n} i={i}");
                }
            }
        }
    }

    /// Against the two frames' spectra from a direct DFT in f64, for even and odd lengths and
    /// fewer bins than `n / 2 + 1`; the AVX2 and plain forms round identically.
    #[test]
    fn pair_power_splits_two_real_frames() {
        for n in (2..=67).chain([256, 2048]) {
            let (xa, xb) = (noise(n, 10 + n as u64), noise(n, 20 + n as u64));
            let dft = |x: &[f32], k: usize| -> (f64, f64) {
                x.iter().enumerate().fold((0.0, 0.0), |(re, im), (i, &v)| {
                    let ph = -2.0 * std::f64::consts::PI * ((k * i) % n) as f64 / n as f64;
                    (re + f64::from(v) * ph.cos(), im + f64::from(v) * ph.sin())
                })
            };
            // Z = DFT(a + ib), computed in f64 and rounded.
            let z: Vec<f32> = (0..n)
                .flat_map(|k| {
                    let ((ar, ai), (br, bi)) = (dft(&xa, k), dft(&xb, k));
                    [(ar - bi) as f32, (ai + br) as f32]
                })
                .collect();
            let full = n / 2 + 1;
            for nb in [full, full.div_ceil(2), 1] {
                let mut got = Vec::new();
                for simd in levels() {
                    let mut out = vec![f32::NAN; 2 * nb];
                    pair_power(simd, &z, &mut out);
                    got.push(out);
                }
                assert!(got.iter().all(|g| g == &got[0]), "n={n} nb={nb}: AVX2 and plain differ");
                let scale: f64 = xa.iter().chain(&xb).map(|&v| f64::from(v).abs()).sum::<f64>().powi(2);
                for k in 0..nb {
                    let ((ar, ai), (br, bi)) = (dft(&xa, k), dft(&xb, k));
                    let (pa, pb) = (ar * ar + ai * ai, br * br + bi * bi);
                    let (ga, gb) = (f64::from(got[0][2 * k]), f64::from(got[0][2 * k + 1]));
                    assert!((ga - pa).abs() <= 1e-6 * scale && (gb - pb).abs() <= 1e-6 * scale, "n={n} k={k}");
                }
            }
        }
    }

    #[test]
    fn pairs_to_block_on_ragged_lengths() {
        for nb in 1..=67 {
            let stride = 2 * nb + 3;
            let pairs = noise(PAIRS * stride, nb as u64);
            for simd in levels() {
                let mut block = vec![f32::NAN; nb * BLOCK];
                pairs_to_block(simd, &pairs, stride, nb, &mut block);
                for k in 0..nb {
                    for p in 0..PAIRS {
                        for c in 0..2 {
                            assert_eq!(block[k * BLOCK + 2 * p + c], pairs[p * stride + 2 * k + c], "nb={nb} k={k}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn power_to_db_and_block_max_on_ragged_lengths() {
        for n in (1..=67).chain([1024]) {
            // Powers from 1e-14 to 1e6, with the special values first.
            let mut x: Vec<f32> = noise(n, n as u64).iter().map(|&v| 10f32.powf(10.0 * v - 4.0)).collect();
            for (v, s) in x.iter_mut().zip([0.0, f32::INFINITY, 1e-40, f32::NAN, f32::MAX]) {
                *v = s;
            }
            for simd in levels() {
                let mut y = x.clone();
                power_to_db_in_place(simd, &mut y, 1e-10, 3.0);
                for (&a, &b) in x.iter().zip(&y) {
                    let want = if a.is_nan() { -100.0 } else { 10.0 * f64::from(a.max(1e-10)).log10() };
                    let want = want - 3.0;
                    assert!(
                        (f64::from(b) - want).abs() <= 2e-6 * want.abs().max(1.0)
                            || (b.is_infinite() && want.is_infinite()),
                        "{a}: {b} vs {want}"
                    );
                }
            }
        }
        for rows in [1, 2, 7, 128] {
            let mut x = noise(rows * BLOCK, rows as u64);
            x[3] = f32::NAN;
            x[BLOCK * (rows - 1) + 7] = 5.0; // only counted when all columns are
            for valid in 1..=BLOCK {
                let want = x.chunks_exact(BLOCK).flat_map(|r| &r[..valid]).fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                for simd in levels() {
                    assert_eq!(block_max(simd, &x, valid), want, "rows={rows} valid={valid}");
                }
            }
        }
    }

    #[test]
    fn sparse_block_equals_dense_product() {
        let n_bins = 67;
        // Bands of every length from 0 to 9 at varying starts, including the last bin.
        let bands: Vec<(usize, usize)> =
            (0..10).map(|len| ((len * 7) % (n_bins - len), len)).chain([(60, 7)]).collect();
        let mut offsets = vec![0];
        for b in &bands {
            offsets.push(offsets.last().unwrap() + b.1);
        }
        let weights = noise(*offsets.last().unwrap(), 5);
        let spectra = noise(n_bins * BLOCK, 6);
        for simd in levels() {
            let mut out = vec![f32::NAN; bands.len() * BLOCK];
            sparse_block(simd, &bands, &weights, &spectra, &mut out);
            for (m, &(start, len)) in bands.iter().enumerate() {
                for j in 0..BLOCK {
                    let want: f64 = (0..len)
                        .map(|i| f64::from(weights[offsets[m] + i]) * f64::from(spectra[(start + i) * BLOCK + j]))
                        .sum();
                    let got = f64::from(out[m * BLOCK + j]);
                    assert!(
                        (got - want).abs() <= 1e-6 * (len as f64).max(1.0),
                        "filter {m} frame {j}: {got} vs {want}"
                    );
                }
            }
        }
    }

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
        power_to_db_in_place(None, &mut v, 1e-10, 0.0);
        assert!(v[0].abs() < 1e-6 && (v[1] + 100.0).abs() < 1e-4 && (v[2] - 20.0).abs() < 1e-5, "{v:?}");
    }

    #[test]
    fn symmetric_dct_equals_full_matrix() {
        for (n_in, n_out, frames, stride) in [
            (128, 40, 44, 48),
            (128, 40, 44, 44),
            (7, 7, 3, 8),
            (40, 13, 1, 1),
            (2, 1, 5, 5),
            (1, 1, 2, 8),
            (64, 20, 101, 104),
        ] {
            let d = dct_ortho_matrix(n_out, n_in);
            let x: Vec<f32> = (0..n_in * stride).map(|i| ((i * 31 % 17) as f32 - 8.0) * 0.7).collect();
            let mut want = vec![0.0f32; n_out * frames];
            for k in 0..n_out {
                for t in 0..frames {
                    want[k * frames + t] = (0..n_in).map(|n| d[k * n_in + n] * x[n * stride + t]).sum();
                }
            }
            for simd in levels() {
                let mut got = vec![f32::NAN; n_out * frames];
                SymmetricDct::new(&d, n_out, n_in).apply(simd, &x, stride, frames, &mut Vec::new(), &mut got);
                for (a, b) in got.iter().zip(&want) {
                    assert!((a - b).abs() < 1e-4, "{n_in}x{n_out}, {frames} of {stride}: {a} vs {b}");
                }
            }
        }
    }
}
