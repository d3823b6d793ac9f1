//! AVX-512 register-tile microkernels for direct convolution.
//!
//! Two shapes of tile, both keeping `R x NV` zmm accumulators (`R` rows of
//! `NV * 16` lanes) in registers for a whole reduction:
//!
//! * [`conv_tile`]: `R` consecutive output pixels of one row times `NV * 16`
//!   output channels, reducing over taps x input channels. The input is a
//!   zero-padded image in *row-planar* layout `[rows][channels][cols]`, so the
//!   `R` pixels of one (tap, channel) are contiguous and one pointer plus
//!   constant displacements addresses them all. Weights are packed
//!   `[tap][channel][NV * 16]`.
//! * [`rank1_tile`]: `acc[r][v] += a[p][r] * b[p][v]` summed over a 2-D grid of
//!   positions `p`: the weight gradient (a sum over output pixels of outer
//!   products).
//!
//! Also the small AVX-512 loops of the training step: the relu backward
//! mask and the 2x2 max pool (forward with a one-byte argmax, backward).
//!
//! Callers must have checked `is_x86_feature_detected!("avx512f")`
//! ([`available`]); every pointer argument must cover what the documented
//! loops touch.

// register tiles read best as explicit `[r][v]` indexing
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

/// Largest number of accumulator rows a tile uses.
pub(crate) const MAX_ROWS: usize = 14;

/// Whether the AVX-512 kernels can run on this CPU (checked once; the
/// `CONVNET_NO_SIMD` environment variable forces the portable paths, for tests).
pub(crate) fn available() -> bool {
    use std::sync::OnceLock;
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| std::env::var_os("CONVNET_NO_SIMD").is_none() && is_x86_feature_detected!("avx512f"))
}

/// Mask selecting the first `n` (1..=16) lanes.
pub(crate) fn lane_mask(n: usize) -> u16 {
    debug_assert!((1..=16).contains(&n));
    if n >= 16 { u16::MAX } else { (1u16 << n) - 1 }
}

/// Arguments of [`conv_tile`] shared by every tile of one call.
#[derive(Clone, Copy)]
pub(crate) struct ConvTile<'a> {
    /// Offset (in floats) of each tap relative to the tile's input pointer.
    pub taps: &'a [usize],
    /// Input channels per tap.
    pub channels: usize,
    /// Floats between consecutive channels of one row (the padded row width).
    pub channel_stride: usize,
    /// Packed weights of this channel block: `[tap][channel][NV * 16]`.
    pub weights: *const f32,
    /// `NV * 16` initial values (the bias), or null for zeros; unused when `accumulate`.
    pub bias: *const f32,
    /// Start from the values already in `out` (a later chunk of taps).
    pub accumulate: bool,
    /// Floats between consecutive output pixels.
    pub out_pixel_stride: usize,
    /// Lanes written of the last vector.
    pub last_mask: u16,
    /// Apply `max(0, .)` before storing.
    pub relu: bool,
}

/// `out[r][c] = act(init[r][c] + sum_{t, ci} x[taps[t] + ci * channel_stride + r] * w[t][ci][c])`
/// for `r < R`, `c < NV * 16` (the last vector masked), where `init` is the
/// bias (or zero), or `out` itself when `accumulate`.
///
/// # Safety
/// AVX-512F must be available; `x + taps[t] + ci * channel_stride + r` must be
/// readable for every tap, channel and `r < R`; with `accumulate`, the output
/// lanes must be readable too; `weights` must hold
/// `taps.len() * channels * NV * 16` floats, `bias` (if not null) `NV * 16`;
/// `out + r * out_pixel_stride + c` must be writable for the stored lanes.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn conv_tile<const R: usize, const NV: usize>(a: &ConvTile<'_>, x: *const f32, out: *mut f32) {
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); NV]; R];
        if a.accumulate {
            for (r, row) in acc.iter_mut().enumerate() {
                let o = out.add(r * a.out_pixel_stride);
                for v in 0..NV {
                    row[v] = if v + 1 == NV {
                        _mm512_maskz_loadu_ps(a.last_mask, o.add(16 * v))
                    } else {
                        _mm512_loadu_ps(o.add(16 * v))
                    };
                }
            }
        } else if !a.bias.is_null() {
            let mut b = [_mm512_setzero_ps(); NV];
            for (v, bv) in b.iter_mut().enumerate() {
                *bv = _mm512_loadu_ps(a.bias.add(16 * v));
            }
            for row in acc.iter_mut() {
                *row = b;
            }
        }
        let mut w = a.weights;
        for &t in a.taps {
            let mut p = x.add(t);
            for _ in 0..a.channels {
                let mut b = [_mm512_setzero_ps(); NV];
                for (v, bv) in b.iter_mut().enumerate() {
                    *bv = _mm512_loadu_ps(w.add(16 * v));
                }
                for (r, row) in acc.iter_mut().enumerate() {
                    let s = _mm512_set1_ps(*p.add(r));
                    for v in 0..NV {
                        row[v] = _mm512_fmadd_ps(s, b[v], row[v]);
                    }
                }
                p = p.add(a.channel_stride);
                w = w.add(16 * NV);
            }
        }
        let zero = _mm512_setzero_ps();
        for (r, row) in acc.iter().enumerate() {
            let o = out.add(r * a.out_pixel_stride);
            for v in 0..NV {
                let val = if a.relu { _mm512_max_ps(row[v], zero) } else { row[v] };
                if v + 1 == NV {
                    _mm512_mask_storeu_ps(o.add(16 * v), a.last_mask, val);
                } else {
                    _mm512_storeu_ps(o.add(16 * v), val);
                }
            }
        }
    }
}

/// Largest number of rows of a [`gemm_tile`].
pub(crate) const GEMM_ROWS: usize = 6;

/// How a [`gemm_tile`]'s accumulators start.
#[derive(Clone, Copy)]
pub(crate) enum TileInit {
    /// From zero.
    Zero,
    /// From `NV * 16` values (the bias), the same for every row.
    Bias(*const f32),
    /// From the values already in the output (a later block of the reduction).
    Output,
}

/// Arguments of [`gemm_tile`] shared by every tile of one block of the reduction.
#[derive(Clone, Copy)]
pub(crate) struct GemmTile<'a> {
    /// Runs of the reduction: `(offset, len)` reads `len` consecutive floats
    /// at `a[r] + offset` for each row `r`, against the next `len` weight rows.
    pub runs: &'a [(usize, usize)],
    /// The first weight row (`NV * 16` columns used, the last vector masked).
    pub b: *const f32,
    /// Floats between consecutive weight rows.
    pub ldb: usize,
    /// Lanes used of the last vector.
    pub last_mask: u16,
    pub init: TileInit,
    /// Floats from each output (and residual) row pointer to the tile's first column.
    pub col: usize,
    /// Added on store (one pointer per row, `NV * 16` floats each, the last vector masked), or empty.
    pub residual: &'a [*const f32],
    /// `max(0, .)` on store.
    pub relu: bool,
}

/// One `R x NV*16` block of a matrix product whose left rows are given by
/// pointer (any stride, even overlapping: the windows of an NHWC image):
/// `c[r][col..] = act(init + sum_runs sum_j a[r][off + j] * b[row + j][..] + residual[r][col..])`.
///
/// The left operand is broadcast one float at a time from `R` row pointers
/// (each row's floats contiguous), the weights loaded as `NV` vectors per
/// reduction step, so neither is packed: an NHWC activation is read in
/// place (for a 1x1 convolution) or through its `kh` row runs per pixel
/// (the implicit im2col of a padded image), and HWIO weights are the right
/// operand as stored. `R * NV <= 24` accumulators, `NV` weight vectors and
/// one broadcast stay in the 32 zmm registers.
///
/// # Safety
/// AVX-512F must be available; `a.len() >= R` and `c.len() >= R` (and
/// `residual`, if not empty); every `a[r] + off + j` of the runs must be
/// readable, `b` must hold as many rows (stride `ldb`) as the runs' total
/// length, each with the tile's columns; `c[r] + col` (and `residual[r] + col`) must
/// cover the stored lanes, and `TileInit::Bias` the `NV * 16` bias lanes.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn gemm_tile<const R: usize, const NV: usize>(t: &GemmTile<'_>, a: &[*const f32], c: &[*mut f32]) {
    unsafe {
        let lanes = |v: usize| if v + 1 == NV { t.last_mask } else { u16::MAX };
        let mut acc = [[_mm512_setzero_ps(); NV]; R];
        match t.init {
            TileInit::Zero => {}
            TileInit::Bias(bias) => {
                for v in 0..NV {
                    let bv = _mm512_maskz_loadu_ps(lanes(v), bias.add(16 * v));
                    for row in acc.iter_mut() {
                        row[v] = bv;
                    }
                }
            }
            TileInit::Output => {
                for (r, row) in acc.iter_mut().enumerate() {
                    for v in 0..NV {
                        row[v] = _mm512_maskz_loadu_ps(lanes(v), c[r].add(t.col + 16 * v));
                    }
                }
            }
        }
        // one reduction step: weight row `b`, column `j` of every left row
        let step = |acc: &mut [[__m512; NV]; R], p: &[*const f32; R], j: usize, b: *const f32| {
            let mut bv = [_mm512_setzero_ps(); NV];
            for (v, x) in bv.iter_mut().enumerate() {
                *x = _mm512_maskz_loadu_ps(lanes(v), b.add(16 * v));
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let s = _mm512_set1_ps(*p[r].add(j));
                for v in 0..NV {
                    row[v] = _mm512_fmadd_ps(s, bv[v], row[v]);
                }
            }
        };
        let mut b = t.b;
        for &(off, len) in t.runs {
            let p: [*const f32; R] = std::array::from_fn(|r| a[r].add(off));
            let mut j = 0;
            // four steps per iteration: fewer loop instructions between the FMAs
            while j + 4 <= len {
                for u in 0..4 {
                    step(&mut acc, &p, j + u, b.add(u * t.ldb));
                }
                j += 4;
                b = b.add(4 * t.ldb);
            }
            while j < len {
                step(&mut acc, &p, j, b);
                j += 1;
                b = b.add(t.ldb);
            }
        }
        let zero = _mm512_setzero_ps();
        for (r, row) in acc.iter().enumerate() {
            for v in 0..NV {
                let mut val = row[v];
                if !t.residual.is_empty() {
                    val = _mm512_add_ps(val, _mm512_maskz_loadu_ps(lanes(v), t.residual[r].add(t.col + 16 * v)));
                }
                if t.relu {
                    val = _mm512_max_ps(val, zero);
                }
                _mm512_mask_storeu_ps(c[r].add(t.col + 16 * v), lanes(v), val);
            }
        }
    }
}

/// Calls `$f::<R, $nv>($args...)` for a run-time `R` in `1..=GEMM_ROWS`.
macro_rules! dispatch_gemm_rows {
    ($rows:expr, $nv:literal, $f:ident, $($arg:expr),*) => {
        match $rows {
            1 => $f::<1, $nv>($($arg),*),
            2 => $f::<2, $nv>($($arg),*),
            3 => $f::<3, $nv>($($arg),*),
            4 => $f::<4, $nv>($($arg),*),
            5 => $f::<5, $nv>($($arg),*),
            6 => $f::<6, $nv>($($arg),*),
            r => unreachable!("gemm tile of {r} rows"),
        }
    };
}

/// [`gemm_tile`] with run-time `rows` (1..=6) and `nv` (1..=4).
///
/// # Safety
/// As [`gemm_tile`], with `R = rows`, `NV = nv`.
pub(crate) unsafe fn gemm_tile_dyn(rows: usize, nv: usize, t: &GemmTile<'_>, a: &[*const f32], c: &[*mut f32]) {
    unsafe {
        match nv {
            1 => dispatch_gemm_rows!(rows, 1, gemm_tile, t, a, c),
            2 => dispatch_gemm_rows!(rows, 2, gemm_tile, t, a, c),
            3 => dispatch_gemm_rows!(rows, 3, gemm_tile, t, a, c),
            4 => dispatch_gemm_rows!(rows, 4, gemm_tile, t, a, c),
            _ => unreachable!("nv {nv}"),
        }
    }
}

/// Arguments of [`rank1_tile`].
#[derive(Clone, Copy)]
pub(crate) struct Rank1Tile {
    /// Broadcast operand: element `r` of position `(i, j)` at `a + i * a_row + j * a_col + r`.
    pub a: *const f32,
    pub a_row: usize,
    pub a_col: usize,
    /// Vector operand: lanes of position `(i, j)` at `b + i * b_row + j * b_col`.
    pub b: *const f32,
    pub b_row: usize,
    pub b_col: usize,
    pub rows: usize,
    pub cols: usize,
    /// Accumulator rows at `out + r * out_stride` (read, added to, written back).
    pub out: *mut f32,
    pub out_stride: usize,
    /// Lanes used of the last vector.
    pub last_mask: u16,
}

/// `out[r][c] += sum_{i < rows, j < cols} a[i, j][r] * b[i, j][c]` for `r < R`,
/// `c < NV * 16` (the last vector masked: its other lanes are neither read nor written).
///
/// # Safety
/// AVX-512F must be available and every address the loops touch (see
/// [`Rank1Tile`]) must be valid; masked-off lanes are not accessed.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn rank1_tile<const R: usize, const NV: usize>(t: &Rank1Tile) {
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); NV]; R];
        for (r, row) in acc.iter_mut().enumerate() {
            let o = t.out.add(r * t.out_stride);
            for v in 0..NV {
                row[v] = if v + 1 == NV {
                    _mm512_maskz_loadu_ps(t.last_mask, o.add(16 * v))
                } else {
                    _mm512_loadu_ps(o.add(16 * v))
                };
            }
        }
        for i in 0..t.rows {
            let mut ap = t.a.add(i * t.a_row);
            let mut bp = t.b.add(i * t.b_row);
            for _ in 0..t.cols {
                let mut b = [_mm512_setzero_ps(); NV];
                for (v, bv) in b.iter_mut().enumerate() {
                    *bv = if v + 1 == NV {
                        _mm512_maskz_loadu_ps(t.last_mask, bp.add(16 * v))
                    } else {
                        _mm512_loadu_ps(bp.add(16 * v))
                    };
                }
                for (r, row) in acc.iter_mut().enumerate() {
                    let s = _mm512_set1_ps(*ap.add(r));
                    for v in 0..NV {
                        row[v] = _mm512_fmadd_ps(s, b[v], row[v]);
                    }
                }
                ap = ap.add(t.a_col);
                bp = bp.add(t.b_col);
            }
        }
        for (r, row) in acc.iter().enumerate() {
            let o = t.out.add(r * t.out_stride);
            for v in 0..NV {
                if v + 1 == NV {
                    _mm512_mask_storeu_ps(o.add(16 * v), t.last_mask, row[v]);
                } else {
                    _mm512_storeu_ps(o.add(16 * v), row[v]);
                }
            }
        }
    }
}

/// Calls `$f::<R, $nv>($args...)` for a run-time `R` in `1..=MAX_ROWS`.
macro_rules! dispatch_rows {
    ($rows:expr, $nv:literal, $f:ident, $($arg:expr),*) => {
        match $rows {
            1 => $f::<1, $nv>($($arg),*),
            2 => $f::<2, $nv>($($arg),*),
            3 => $f::<3, $nv>($($arg),*),
            4 => $f::<4, $nv>($($arg),*),
            5 => $f::<5, $nv>($($arg),*),
            6 => $f::<6, $nv>($($arg),*),
            7 => $f::<7, $nv>($($arg),*),
            8 => $f::<8, $nv>($($arg),*),
            9 => $f::<9, $nv>($($arg),*),
            10 => $f::<10, $nv>($($arg),*),
            11 => $f::<11, $nv>($($arg),*),
            12 => $f::<12, $nv>($($arg),*),
            13 => $f::<13, $nv>($($arg),*),
            14 => $f::<14, $nv>($($arg),*),
            r => unreachable!("tile of {r} rows"),
        }
    };
}

/// [`conv_tile`] with run-time `rows` (1..=14) and `nv` (1 or 2).
///
/// # Safety
/// As [`conv_tile`].
pub(crate) unsafe fn conv_tile_dyn(rows: usize, nv: usize, a: &ConvTile<'_>, x: *const f32, out: *mut f32) {
    unsafe {
        match nv {
            1 => dispatch_rows!(rows, 1, conv_tile, a, x, out),
            2 => dispatch_rows!(rows, 2, conv_tile, a, x, out),
            _ => unreachable!("nv {nv}"),
        }
    }
}

/// [`rank1_tile`] with run-time `rows` (1..=14) and `nv` (1 or 2).
///
/// # Safety
/// As [`rank1_tile`].
pub(crate) unsafe fn rank1_tile_dyn(rows: usize, nv: usize, t: &Rank1Tile) {
    unsafe {
        match nv {
            1 => dispatch_rows!(rows, 1, rank1_tile, t),
            2 => dispatch_rows!(rows, 2, rank1_tile, t),
            _ => unreachable!("nv {nv}"),
        }
    }
}

/// `out[i] = if y[i] > 0 { g[i] } else { 0 }` (the relu backward mask).
///
/// # Safety
/// AVX-512F must be available; the three slices must have equal lengths.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn relu_mask(g: &[f32], y: &[f32], out: &mut [f32]) {
    unsafe {
        let n = out.len();
        debug_assert!(g.len() == n && y.len() == n);
        let zero = _mm512_setzero_ps();
        let mut i = 0;
        while i < n {
            let k = if n - i >= 16 { u16::MAX } else { lane_mask(n - i) };
            let yv = _mm512_maskz_loadu_ps(k, y.as_ptr().add(i));
            let gv = _mm512_maskz_loadu_ps(k, g.as_ptr().add(i));
            let pos = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(yv, zero);
            _mm512_mask_storeu_ps(out.as_mut_ptr().add(i), k, _mm512_maskz_mov_ps(pos, gv));
            i += 16;
        }
    }
}

/// One output pixel of a 2x2 max pool over `c` channels: the maximum of
/// `x0..x3` (first maximum wins) into `y` and, when `idx` is not null, the
/// winner's window position (0..=3) into `idx`.
///
/// # Safety
/// AVX-512F must be available; `x0..x3` and `y` must hold `c` floats, `idx`
/// (if not null) `c` bytes.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn max_pool_2x2(x: [*const f32; 4], c: usize, y: *mut f32, idx: *mut u8) {
    unsafe {
        let mut i = 0;
        while i < c {
            let k = if c - i >= 16 { u16::MAX } else { lane_mask(c - i) };
            let mut m = _mm512_maskz_loadu_ps(k, x[0].add(i));
            let mut at = _mm512_setzero_si512();
            for (w, p) in x.iter().enumerate().skip(1) {
                let v = _mm512_maskz_loadu_ps(k, p.add(i));
                let gt = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, m);
                m = _mm512_mask_mov_ps(m, gt, v);
                at = _mm512_mask_mov_epi32(at, gt, _mm512_set1_epi32(w as i32));
            }
            _mm512_mask_storeu_ps(y.add(i), k, m);
            if !idx.is_null() {
                _mm512_mask_cvtepi32_storeu_epi8(idx.add(i) as *mut _, k, at);
            }
            i += 16;
        }
    }
}

/// Backward of [`max_pool_2x2`]: `dx[w][ch] = if idx[ch] == w { g[ch] } else { 0 }`
/// for the four window positions `w`.
///
/// # Safety
/// AVX-512F must be available; `g` and `dx[w]` must hold `c` floats, `idx` `c` bytes.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn max_pool_2x2_backward(g: *const f32, idx: *const u8, c: usize, dx: [*mut f32; 4]) {
    unsafe {
        let mut i = 0;
        while i < c {
            let n = (c - i).min(16);
            let k = lane_mask(n);
            let gv = _mm512_maskz_loadu_ps(k, g.add(i));
            let mut bytes = [0u8; 16];
            std::ptr::copy_nonoverlapping(idx.add(i), bytes.as_mut_ptr(), n);
            let at = _mm512_cvtepu8_epi32(_mm_loadu_si128(bytes.as_ptr() as *const _));
            for (w, d) in dx.iter().enumerate() {
                let hit = _mm512_cmpeq_epi32_mask(at, _mm512_set1_epi32(w as i32));
                _mm512_mask_storeu_ps(d.add(i), k, _mm512_maskz_mov_ps(hit, gv));
            }
            i += 16;
        }
    }
}

// ---------------------------------------------------------------- exp, sigmoid, silu
//
// Hand-written because the activations must run inside the convolution
// epilogues (on registers, before the store) and no crate offers an AVX-512
// `exp` that inlines there. `e^x = 2^n * e^r` with `n = round(x / ln 2)`,
// `r = x - n ln 2` (ln 2 split in two so that `r` is exact, as in Cephes'
// `expf`), a degree-6 polynomial for `e^r` on `|r| <= ln(2)/2` (fitted for
// relative error, 1e-7 in f32 Horner) and `vscalefps` for `2^n`, which also
// produces the denormals and zero at the bottom of the range. NaN propagates.
// SiLU sits in every EfficientNet block twice, so the operation count matters:
// 21 vector operations per 16 values.

/// `e^x` for `x <= 0` (or NaN) in every lane: the only range sigmoid needs.
#[inline]
#[target_feature(enable = "avx512f")]
fn exp_nonpositive_ps(x: __m512) -> __m512 {
    // below -104 the result is 0 (max keeps a NaN `x`)
    let x = _mm512_max_ps(_mm512_set1_ps(-104.0), x);
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(
        x,
        _mm512_set1_ps(std::f32::consts::LOG2_E),
    ));
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm512_set1_ps(1.383_684_2e-3);
    for c in [8.374_816e-3, 4.166_822_5e-2, 1.666_642e-1, 4.999_999e-1, 1.0, 1.0] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    _mm512_scalef_ps(p, n)
}

/// `1 / (1 + e^-x)` in every lane, as `e / (1 + e)` with `e = e^-|x|` for
/// negative `x` (no cancellation, no overflow: the denominator is in (1, 2],
/// where `rcp14` plus one Newton step is exact to about 2^-28).
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn sigmoid_ps(x: __m512) -> __m512 {
    // -|x|: the sign bit set
    let nx = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(x), _mm512_set1_epi32(i32::MIN)));
    let e = exp_nonpositive_ps(nx);
    let d = _mm512_add_ps(e, _mm512_set1_ps(1.0));
    let r = _mm512_rcp14_ps(d);
    // Newton: r' = r * (2 - d r)
    let r = _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.0)));
    let neg = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, _mm512_setzero_ps());
    _mm512_mask_mul_ps(r, neg, r, e)
}

/// `x * sigmoid(x)` (SiLU, swish) in every lane.
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn silu_ps(x: __m512) -> __m512 {
    _mm512_mul_ps(x, sigmoid_ps(x))
}

/// `min(max(x, 0), 6)`; NaN propagates.
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn relu6_ps(x: __m512) -> __m512 {
    _mm512_min_ps(_mm512_set1_ps(6.0), _mm512_max_ps(_mm512_setzero_ps(), x))
}

/// `x * min(max(x + 3, 0), 6) / 6` (hard-swish), rounded as the scalar form: the
/// division is a true division, so both paths give the same bits.
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn hard_swish_ps(x: __m512) -> __m512 {
    let gate = relu6_ps(_mm512_add_ps(x, _mm512_set1_ps(3.0)));
    _mm512_div_ps(_mm512_mul_ps(x, gate), _mm512_set1_ps(6.0))
}

/// `max(x, 0)`; NaN propagates.
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn relu_ps(x: __m512) -> __m512 {
    _mm512_max_ps(_mm512_setzero_ps(), x)
}

/// A convolution's fused activation on one vector: the epilogue of the
/// direct kernels, applied to the accumulators before the store.
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn activate(act: crate::conv::ConvAct, v: __m512) -> __m512 {
    use crate::conv::ConvAct;
    match act {
        ConvAct::Identity => v,
        ConvAct::Relu => relu_ps(v),
        ConvAct::Relu6 => relu6_ps(v),
        ConvAct::Silu => silu_ps(v),
        ConvAct::HardSwish => hard_swish_ps(v),
    }
}

/// The exact (erf) GELU `x * Phi(x)` in every lane, from the same erfc fit as the
/// scalar [`crate::elementwise::erf`] (Numerical Recipes' Chebyshev form,
/// `erfc(z) = t * e^(-z^2 + P(t))`, `t = 1 / (1 + z/2)`, fractional error < 1.2e-7), in
/// f32: `-z^2` is formed from an exact FMA split of `x^2` so the tail keeps its relative accuracy, and
/// the negative side is read from `erfc` directly (`x/2 * erfc(|x|/sqrt 2)`), never as
/// `1 + erf` with its cancellation. A libm `exp` per element through the scalar form was
/// 13% of vit_small's inference.
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn gelu_ps(x: __m512) -> __m512 {
    // beyond |x| = 26 erfc is far below f32's range: clamp so that x^2 stays finite
    // (the final product with the unclamped x keeps infinities and NaN)
    let xc = _mm512_min_ps(_mm512_set1_ps(26.0), _mm512_max_ps(_mm512_set1_ps(-26.0), x));
    let z = _mm512_mul_ps(_mm512_abs_ps(xc), _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
    let one = _mm512_set1_ps(1.0);
    let t = _mm512_div_ps(one, _mm512_fmadd_ps(z, _mm512_set1_ps(0.5), one));
    // the published coefficients (f64 literals, rounded once to f32)
    let mut p = _mm512_set1_ps(0.170_872_77);
    let coefficients: [f64; 9] = [
        -0.822_152_23,
        1.488_515_87,
        -1.135_203_98,
        0.278_868_07,
        -0.186_288_06,
        0.096_784_18,
        0.374_091_96,
        1.000_023_68,
        -1.265_512_23,
    ];
    for c in coefficients {
        p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(c as f32));
    }
    // The exponent `P - x^2/2` reaches -70 in the tail, where one f32 rounding of it is
    // 4e-6 relative after the exponential: carry it as hi + lo. x^2 = xx + sq_lo exactly
    // (FMA), halved exactly; hi = P - xx/2 with its rounding error from TwoSum; then
    // e^(hi + lo) = e^hi * (1 + lo). At 0 the exponent is ~1e-8 (clamped to 0).
    let half = _mm512_set1_ps(0.5);
    let xx = _mm512_mul_ps(xc, xc);
    let sq_lo = _mm512_fmsub_ps(xc, xc, xx);
    let b = _mm512_mul_ps(xx, _mm512_set1_ps(-0.5));
    let hi = _mm512_add_ps(p, b);
    let bb = _mm512_sub_ps(hi, p);
    let sum_err = _mm512_add_ps(_mm512_sub_ps(p, _mm512_sub_ps(hi, bb)), _mm512_sub_ps(b, bb));
    let lo = _mm512_fnmadd_ps(sq_lo, half, sum_err);
    let e = exp_nonpositive_ps(_mm512_min_ps(hi, _mm512_setzero_ps()));
    let erfc = _mm512_mul_ps(t, _mm512_fmadd_ps(e, lo, e));
    // x >= 0: x/2 * (2 - erfc); x < 0: x/2 * erfc
    let neg = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, _mm512_setzero_ps());
    let phi2 = _mm512_mask_blend_ps(neg, _mm512_sub_ps(_mm512_set1_ps(2.0), erfc), erfc);
    _mm512_mul_ps(_mm512_mul_ps(x, _mm512_set1_ps(0.5)), phi2)
}

/// `op` on every lane of `v`.
#[inline]
#[target_feature(enable = "avx512f")]
fn unary_ps(op: crate::elementwise::Unary, v: __m512) -> __m512 {
    use crate::elementwise::Unary;
    match op {
        Unary::Relu => relu_ps(v),
        Unary::Relu6 => relu6_ps(v),
        Unary::Sigmoid => sigmoid_ps(v),
        Unary::Silu => silu_ps(v),
        Unary::HardSwish => hard_swish_ps(v),
        Unary::Gelu => gelu_ps(v),
    }
}

/// Softmax of one row of `c` floats from `x` into `y` (may alias): the max, then
/// `e^(x - max)` (always <= 0: the exponential that sigmoid uses) with its sum in 16
/// lanes, then one scaling pass.
///
/// # Safety
/// AVX-512F must be available; `x` readable and `y` writable for `c > 0` floats.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn softmax_row(x: *const f32, y: *mut f32, c: usize) {
    unsafe {
        let mut m = _mm512_set1_ps(f32::NEG_INFINITY);
        let mut i = 0;
        while i < c {
            let k = lane_mask((c - i).min(16));
            m = _mm512_mask_max_ps(m, k, m, _mm512_maskz_loadu_ps(k, x.add(i)));
            i += 16;
        }
        let m = _mm512_set1_ps(_mm512_reduce_max_ps(m));
        let mut s = _mm512_setzero_ps();
        i = 0;
        while i < c {
            let k = lane_mask((c - i).min(16));
            let e = exp_nonpositive_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x.add(i)), m));
            s = _mm512_mask_add_ps(s, k, s, e);
            _mm512_mask_storeu_ps(y.add(i), k, e);
            i += 16;
        }
        let inv = _mm512_set1_ps(1.0 / _mm512_reduce_add_ps(s));
        i = 0;
        while i < c {
            let k = lane_mask((c - i).min(16));
            _mm512_mask_storeu_ps(y.add(i), k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, y.add(i)), inv));
            i += 16;
        }
    }
}

/// `out[i] = op(x[i])` for `i < n`; `x` and `out` may be the same buffer.
///
/// # Safety
/// AVX-512F must be available; `x` must be readable and `out` writable for `n` floats.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn unary(op: crate::elementwise::Unary, x: *const f32, out: *mut f32, n: usize) {
    // SAFETY: the caller's contract; no bias is read.
    unsafe { bias_unary(op, x, std::ptr::null(), out, n) }
}

/// `out[i] = op(x[i] + bias[i])` for `i < n` (`bias` may be null: none): a
/// convolution block's bias and activation in one pass over it (EfficientNet's
/// SiLU expansions). `x` and `out` may be the same buffer.
///
/// # Safety
/// AVX-512F must be available; `x` (and a non-null `bias`) must be readable and
/// `out` writable for `n` floats.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn bias_unary(
    op: crate::elementwise::Unary,
    x: *const f32,
    bias: *const f32,
    out: *mut f32,
    n: usize,
) {
    unsafe {
        let mut i = 0;
        while i < n {
            let k = if n - i >= 16 { u16::MAX } else { lane_mask(n - i) };
            let mut v = _mm512_maskz_loadu_ps(k, x.add(i));
            if !bias.is_null() {
                v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, bias.add(i)));
            }
            let v = unary_ps(op, v);
            _mm512_mask_storeu_ps(out.add(i), k, v);
            i += 16;
        }
    }
}

/// `iters` rounds of 16 independent 16-lane fused multiply-adds (enough chains
/// to cover the FMA latency on two ports): the peak the GEMM tiles aim at.
/// Returns the floating-point operations done and a value that depends on
/// every chain (so the loop is not optimised away).
///
/// # Safety
/// AVX-512F must be available.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn fma_peak_loop(iters: u64) -> (f64, f32) {
    const CHAINS: usize = 16;
    let a = _mm512_set1_ps(std::hint::black_box(0.999_999));
    let b = _mm512_set1_ps(std::hint::black_box(1e-7));
    let mut acc = [_mm512_set1_ps(1.0); CHAINS];
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm512_fmadd_ps(*v, a, b);
        }
    }
    let mut sum = _mm512_setzero_ps();
    for v in acc {
        sum = _mm512_add_ps(sum, v);
    }
    ((iters as usize * CHAINS * 16 * 2) as f64, _mm512_reduce_add_ps(sum))
}
