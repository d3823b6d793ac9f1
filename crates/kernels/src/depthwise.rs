//! Depthwise 2-D convolution (`groups == in_c == out_c`, channel multiplier 1),
//! the spatial half of MobileNet and EfficientNet blocks, on NHWC activations
//! with the `[kh, kw, 1, c]` weights of `conv.rs` (HWIO with one input channel
//! per group: tap `(ky, kx)` of channel `ch` is at `(ky * kw + kx) * c + ch`).
//!
//! Every output channel reads its own input channel only, so im2col + GEMM
//! degenerates into one single-column GEMM per channel whose im2col copy costs
//! far more than the arithmetic (60% of EfficientNet-B0 inference). Here the
//! channel axis, contiguous in NHWC, is the vector axis: 16 channels per
//! AVX-512 register, the last block masked (24, 40, 112, 672 channels occur).
//!
//! * Forward: per block of 16 channels, output row and tile of up to 8
//!   consecutive output pixels, the accumulators stay in registers over every
//!   tap. For undilated 3, 5 and 7 wide kernels with stride 1 or 2 (all of
//!   EfficientNet's), each input vector is loaded once per tap row and used by
//!   every tap that reads it. Taps in the padding load zeros (masked loads,
//!   which never touch masked-out addresses), so any padding works, TensorFlow
//!   "SAME"'s extra bottom/right pixel included; interior tiles skip the checks.
//!   Bias and activation (relu, relu6, SiLU) are applied before the store, and
//!   the stored vectors are summed on the way for squeeze-excitation's mean
//!   ([`forward_with_mean`]). Channel blocks are the outer loop so that a
//!   block's input rows stay in L1 from one output row to the next. Tasks are
//!   bands of output rows across all images, so batch 1 uses every thread.
//! * Input gradient: with stride 1, the forward kernel on the output gradient
//!   with flipped weights (a transposed convolution is a convolution); other
//!   strides gather, per input pixel, the output pixels whose windows hold it
//!   (tables of taps built once per call). No writes are shared between tasks.
//! * Weight and bias gradients: bands of [`PARAM_PIXELS`] output pixels (a
//!   function of the geometry only) sum into private partials that are added
//!   in band order, so results are bit-identical for any number of threads.
//!
//! Hand-written SIMD because no crate offers a depthwise NHWC convolution with
//! a fused epilogue; the portable loops (no AVX-512, or `CONVNET_NO_SIMD`) have
//! the same structure and serve as the fallback.

use crate::conv::{ConvAct, ConvGeometry};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Whether the depthwise kernels handle this geometry: one group per input
/// channel, one output channel per group. (Channel multipliers above 1 stay on
/// the im2col path.)
pub fn supported(geo: &ConvGeometry) -> bool {
    geo.groups > 1 && geo.groups == geo.in_c && geo.out_c == geo.in_c
}

/// Output pixels per weight-gradient band (and partial sum).
const PARAM_PIXELS: usize = 512;

/// Largest output-pixel tile of the forward kernel.
const TILE: usize = 8;

/// Taps `[lo, hi)` of a `kernel`-tap axis whose input position
/// `o * stride + k * dilation - pad` lies in `[0, size)`.
fn tap_range(o: usize, stride: usize, dilation: usize, pad: usize, kernel: usize, size: usize) -> (usize, usize) {
    let base = o * stride;
    let lo = if pad > base { (pad - base).div_ceil(dilation) } else { 0 };
    let hi = if size + pad > base { ((size - 1 + pad - base) / dilation + 1).min(kernel) } else { 0 };
    (lo.min(hi), hi)
}

/// Outputs `[lo, hi)` (of `out`) along one axis whose taps `[k0, k1)` all lie
/// inside `[0, size)`; empty when there are none.
fn inside_range(
    out: usize,
    stride: usize,
    dilation: usize,
    pad: usize,
    (k0, k1): (usize, usize),
    size: usize,
) -> (usize, usize) {
    let (first, last) = (k0 * dilation, (k1 - 1) * dilation);
    let lo = if pad > first { (pad - first).div_ceil(stride) } else { 0 };
    let hi = if size + pad > last { ((size - 1 + pad - last) / stride + 1).min(out) } else { 0 };
    (lo.min(hi), hi)
}

/// `n` split into near-equal pieces of at most `max`: `(start, len)`.
fn split(n: usize, max: usize) -> impl Iterator<Item = (usize, usize)> {
    let count = n.div_ceil(max);
    (0..count).map(move |i| (i * n / count, (i + 1) * n / count - i * n / count))
}

/// Rows per parallel task: about four tasks per thread, none under ~32k
/// multiply-adds (scheduling costs a few microseconds). Only the split of the
/// work depends on it, never a result.
fn rows_per_task(rows: usize, row_work: usize) -> usize {
    let min_rows = (1usize << 15).div_ceil(row_work.max(1));
    rows.div_ceil(4 * crate::threads()).max(min_rows).clamp(1, rows.max(1))
}

/// Forward tasks for `rows` output rows: as many as [`rows_per_task`] gives,
/// rounded up to a multiple of the thread count (at most one per row), so that
/// near-equal bands ([`split_even`]) share out evenly: 14 rows in 7 tasks of 2
/// left one of two threads 8 rows and the other 6 (MobileNet's 7, 14 and 28
/// row maps).
fn task_count(rows: usize, row_work: usize) -> usize {
    let count = rows.div_ceil(rows_per_task(rows, row_work)).max(1);
    let threads = crate::threads();
    if count > 1 && threads > 1 { count.div_ceil(threads).saturating_mul(threads).min(rows) } else { count }
}

/// `n` in `count` near-equal pieces: `(start, len)`.
fn split_even(n: usize, count: usize) -> impl Iterator<Item = (usize, usize)> {
    let count = count.max(1);
    (0..count).map(move |i| (i * n / count, (i + 1) * n / count - i * n / count))
}

/// The activation of one value (the portable epilogue).
fn act_scalar(act: ConvAct, v: f32) -> f32 {
    act.unary().map_or(v, |u| u.apply(v))
}

// ---------------------------------------------------------------- forward

/// `y = act(depthwise_conv(x, w) (+ bias))`, every value of `y` written.
///
/// `x: [n, h, w, c]`, `w: [kh, kw, 1, c]`, `bias: [c]`, `y: [n, oh, ow, c]`.
pub(crate) fn forward(
    geo: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    act: ConvAct,
    y: &mut [MaybeUninit<f32>],
) {
    forward_impl(geo, x, w, bias, act, y, None);
}

/// The forward convolution into a new vector together with each image's mean
/// output per channel (`[n, c]`, after the activation): squeeze-excitation's
/// squeeze taken from the registers before the store, not by reading the
/// output back.
///
/// The means are sums per output row (pixels in order) added row by row, so
/// they do not depend on the thread count.
///
/// # Panics
/// When the geometry is not depthwise ([`supported`]) or a length is wrong.
pub fn forward_with_mean(
    geo: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    act: ConvAct,
) -> (Vec<f32>, Vec<f32>) {
    crate::profile::timed(
        || ("depthwise", crate::conv::describe(geo), crate::conv::flops(geo)),
        || forward_mean_impl(geo, x, w, bias, act),
    )
}

fn forward_mean_impl(
    geo: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    act: ConvAct,
) -> (Vec<f32>, Vec<f32>) {
    crate::alloc::configure();
    let c = geo.out_c;
    let mut row_sums = crate::scratch::take(geo.batch * geo.out_h * c, false);
    // SAFETY: `forward_impl` writes every output value.
    let y = unsafe {
        crate::alloc::filled_vec(geo.output_len(), |y| forward_impl(geo, x, w, bias, act, y, Some(&mut row_sums)))
    };
    let mut mean = vec![0.0f32; geo.batch * c];
    let inv = 1.0 / geo.out_pixels().max(1) as f32;
    for (m, rows) in mean.chunks_exact_mut(c.max(1)).zip(row_sums.chunks_exact(geo.out_h * c.max(1))) {
        for r in rows.chunks_exact(c) {
            for (a, v) in m.iter_mut().zip(r) {
                *a += v;
            }
        }
        m.iter_mut().for_each(|a| *a *= inv);
    }
    (y, mean)
}

/// [`forward`], and when `row_sums` (`[n * oh, c]`) is given, the sum over
/// each output row's pixels of the activated output.
fn forward_impl(
    geo: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    act: ConvAct,
    y: &mut [MaybeUninit<f32>],
    row_sums: Option<&mut [f32]>,
) {
    assert!(supported(geo), "depthwise: not a depthwise geometry: {geo:?}");
    assert_eq!(x.len(), geo.input_len(), "depthwise: input length");
    assert_eq!(w.len(), geo.weight_len(), "depthwise: weight length");
    assert_eq!(y.len(), geo.output_len(), "depthwise: output length");
    if let Some(b) = bias {
        assert_eq!(b.len(), geo.out_c, "depthwise: bias length");
    }
    let c = geo.out_c;
    let row = geo.out_w * c;
    let rows = geo.batch * geo.out_h;
    if let Some(s) = &row_sums {
        assert_eq!(s.len(), rows * c, "depthwise: row sums length");
    }
    if rows == 0 || c == 0 {
        return;
    }
    if row == 0 {
        // no output pixels: every row sums to zero
        if let Some(s) = row_sums {
            s.fill(0.0);
        }
        return;
    }
    let count = task_count(rows, row * geo.kernel_h * geo.kernel_w);
    let task = |r0: usize, mut yc: &mut [MaybeUninit<f32>], mut sc: Option<&mut [f32]>| {
        // the task's rows, image by image
        let mut r = r0;
        while !yc.is_empty() {
            let (n, oy) = (r / geo.out_h, r % geo.out_h);
            let count = (geo.out_h - oy).min(yc.len() / row);
            let (out, rest) = yc.split_at_mut(count * row);
            let (sums, srest) = match sc {
                Some(s) => {
                    let (a, b) = s.split_at_mut(count * c);
                    (Some(a), Some(b))
                }
                None => (None, None),
            };
            forward_rows(geo, x, w, bias, act, n, oy, out, sums);
            (yc, sc, r) = (rest, srest, r + count);
        }
    };
    // near-equal bands of rows, `(first row, output, row sums)`
    let mut bands = Vec::with_capacity(count);
    let (mut yrest, mut srest) = (y, row_sums);
    for (r0, len) in split_even(rows, count) {
        let (yb, yr) = std::mem::take(&mut yrest).split_at_mut(len * row);
        let (sb, sr) = match srest.take() {
            Some(s) => {
                let (a, b) = s.split_at_mut(len * c);
                (Some(a), Some(b))
            }
            None => (None, None),
        };
        bands.push((r0, yb, sb));
        (yrest, srest) = (yr, sr);
    }
    bands.into_par_iter().for_each(|(r0, yb, sb)| task(r0, yb, sb));
}

/// Output rows `oy ..` of image `n` (as many as `out` holds), with their row sums.
#[allow(clippy::too_many_arguments)]
fn forward_rows(
    geo: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    act: ConvAct,
    n: usize,
    oy: usize,
    out: &mut [MaybeUninit<f32>],
    mut sums: Option<&mut [f32]>,
) {
    #[cfg(target_arch = "x86_64")]
    if crate::x86::available() {
        // SAFETY: avx512f checked; lengths asserted by `forward_impl`; `out`
        // is whole output rows of image `n` from row `oy`, `sums` one `c` per row.
        unsafe { avx::forward_rows(geo, x, w, bias, act, n, oy, out, sums) };
        return;
    }
    let (c, row) = (geo.out_c, geo.out_w * geo.out_c);
    for (i, o) in out.chunks_mut(row).enumerate() {
        forward_row_portable(geo, x, w, bias, act, n, oy + i, o);
        if let Some(s) = sums.as_deref_mut() {
            let s = &mut s[i * c..(i + 1) * c];
            s.fill(0.0);
            for px in o.chunks_exact(c) {
                for (a, v) in s.iter_mut().zip(px) {
                    // SAFETY: the row was just written.
                    *a += unsafe { v.assume_init() };
                }
            }
        }
    }
}

/// One output row `(n, oy)` of [`forward`], plain loops.
#[allow(clippy::too_many_arguments)]
fn forward_row_portable(
    geo: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    act: ConvAct,
    n: usize,
    oy: usize,
    out: &mut [MaybeUninit<f32>],
) {
    let c = geo.in_c;
    let (ky0, ky1) = tap_range(oy, geo.stride_h, geo.dilation_h, geo.pad_top, geo.kernel_h, geo.in_h);
    let mut acc = crate::scratch::take(c, false);
    for (ox, o) in out.chunks_exact_mut(c).enumerate() {
        match bias {
            Some(b) => acc.copy_from_slice(b),
            None => acc.fill(0.0),
        }
        let (kx0, kx1) = tap_range(ox, geo.stride_w, geo.dilation_w, geo.pad_left, geo.kernel_w, geo.in_w);
        for ky in ky0..ky1 {
            let iy = oy * geo.stride_h + ky * geo.dilation_h - geo.pad_top;
            for kx in kx0..kx1 {
                let ix = ox * geo.stride_w + kx * geo.dilation_w - geo.pad_left;
                let xp = &x[((n * geo.in_h + iy) * geo.in_w + ix) * c..][..c];
                let wp = &w[(ky * geo.kernel_w + kx) * c..][..c];
                for ((a, xv), wv) in acc.iter_mut().zip(xp).zip(wp) {
                    *a += xv * wv;
                }
            }
        }
        for (o, a) in o.iter_mut().zip(acc.iter()) {
            o.write(act_scalar(act, *a));
        }
    }
}

// ---------------------------------------------------------------- backward

/// The gradients of a depthwise convolution from the gradient `dy` of its
/// output (any activation mask already applied): `dx` (needs `w`), `dw`
/// (needs `x`) and `db`, each overwritten when given.
pub(crate) fn backward(
    geo: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    dx: Option<&mut [f32]>,
    dw: Option<&mut [f32]>,
    db: Option<&mut [f32]>,
) {
    assert!(supported(geo), "depthwise: not a depthwise geometry: {geo:?}");
    assert_eq!(dy.len(), geo.output_len(), "depthwise: output length");
    if let Some(dx) = dx {
        assert_eq!(w.len(), geo.weight_len(), "depthwise: weight length");
        assert_eq!(dx.len(), geo.input_len(), "depthwise: input length");
        backward_input(geo, dy, w, dx);
    }
    if let Some(d) = &dw {
        assert_eq!(x.len(), geo.input_len(), "depthwise: input length");
        assert_eq!(d.len(), geo.weight_len(), "depthwise: weight length");
    }
    if let Some(d) = &db {
        assert_eq!(d.len(), geo.out_c, "depthwise: bias length");
    }
    if dw.is_some() || db.is_some() {
        backward_params(geo, x, dy, dw, db);
    }
}

/// `dx = conv_transpose(dy, w)`.
fn backward_input(geo: &ConvGeometry, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    if dx.is_empty() {
        return;
    }
    let c = geo.in_c;
    let (eh, ew) = ((geo.kernel_h - 1) * geo.dilation_h, (geo.kernel_w - 1) * geo.dilation_w);
    if geo.stride_h == 1 && geo.stride_w == 1 && geo.pad_top <= eh && geo.pad_left <= ew {
        // dx[i] = sum_k dy[i + pad - k d] w[k] = sum_k' dy[i + k' d - (e - pad)] w[K-1-k']:
        // the forward pass over dy with flipped weights and the complementary padding
        let t = ConvGeometry {
            in_h: geo.out_h,
            in_w: geo.out_w,
            out_h: geo.in_h,
            out_w: geo.in_w,
            pad_top: eh - geo.pad_top,
            pad_left: ew - geo.pad_left,
            ..*geo
        };
        let mut flipped = crate::scratch::take(w.len(), false);
        let (kh, kw) = (geo.kernel_h, geo.kernel_w);
        for ky in 0..kh {
            for kx in 0..kw {
                let src = ((kh - 1 - ky) * kw + (kw - 1 - kx)) * c;
                flipped[(ky * kw + kx) * c..][..c].copy_from_slice(&w[src..src + c]);
            }
        }
        forward(&t, dy, &flipped, None, ConvAct::Identity, crate::alloc::as_uninit(dx));
        return;
    }
    // the general case: per input pixel, the (tap, output) pairs that read it
    let rows = Taps::new(geo.in_h, geo.out_h, geo.kernel_h, geo.stride_h, geo.dilation_h, geo.pad_top);
    let cols = Taps::new(geo.in_w, geo.out_w, geo.kernel_w, geo.stride_w, geo.dilation_w, geo.pad_left);
    let row = geo.in_w * c;
    let per = rows_per_task(geo.batch * geo.in_h, row * geo.kernel_h * geo.kernel_w);
    dx.par_chunks_mut(per * row).enumerate().for_each(|(t, dxc)| {
        for (i, out) in dxc.chunks_mut(row).enumerate() {
            let r = t * per + i;
            let (n, iy) = (r / geo.in_h, r % geo.in_h);
            #[cfg(target_arch = "x86_64")]
            if crate::x86::available() {
                // SAFETY: avx512f checked; the tables hold in-range outputs and taps only.
                unsafe { avx::gather_row(geo, dy, w, n, rows.of(iy), &cols, out) };
                continue;
            }
            gather_row_portable(geo, dy, w, n, rows.of(iy), &cols, out);
        }
    });
}

/// For each input position along one axis, the `(tap, output)` pairs with
/// `output * stride + tap * dilation - pad == position`.
struct Taps {
    start: Vec<usize>,
    pairs: Vec<(usize, usize)>,
}

impl Taps {
    fn new(size: usize, out: usize, kernel: usize, stride: usize, dilation: usize, pad: usize) -> Self {
        let mut start = Vec::with_capacity(size + 1);
        let mut pairs = Vec::new();
        for i in 0..size {
            start.push(pairs.len());
            for k in 0..kernel {
                let Some(u) = (i + pad).checked_sub(k * dilation) else { break };
                if u % stride == 0 && u / stride < out {
                    pairs.push((k, u / stride));
                }
            }
        }
        start.push(pairs.len());
        Taps { start, pairs }
    }

    fn of(&self, i: usize) -> &[(usize, usize)] {
        &self.pairs[self.start[i]..self.start[i + 1]]
    }
}

/// Input-gradient row `(n, iy)` by gathering, plain loops.
fn gather_row_portable(
    geo: &ConvGeometry,
    dy: &[f32],
    w: &[f32],
    n: usize,
    row_taps: &[(usize, usize)],
    cols: &Taps,
    out: &mut [f32],
) {
    let c = geo.in_c;
    for (ix, o) in out.chunks_exact_mut(c).enumerate() {
        o.fill(0.0);
        for &(ky, oy) in row_taps {
            for &(kx, ox) in cols.of(ix) {
                let d = &dy[((n * geo.out_h + oy) * geo.out_w + ox) * c..][..c];
                let wp = &w[(ky * geo.kernel_w + kx) * c..][..c];
                for ((a, d), wv) in o.iter_mut().zip(d).zip(wp) {
                    *a += d * wv;
                }
            }
        }
    }
}

/// `dw[ky, kx, ch] = sum dy[.., ch] x[.., ch]` over every output pixel, and
/// `db = sum dy`: per-band partials added in band order.
fn backward_params(geo: &ConvGeometry, x: &[f32], dy: &[f32], dw: Option<&mut [f32]>, db: Option<&mut [f32]>) {
    let c = geo.in_c;
    let wlen = geo.weight_len();
    let plen = wlen + c;
    let band = PARAM_PIXELS.div_ceil(geo.out_w.max(1)).clamp(1, geo.out_h.max(1));
    let per_image = geo.out_h.div_ceil(band);
    let chunks = geo.batch * per_image;
    if chunks == 0 || geo.out_w == 0 {
        if let Some(dw) = dw {
            dw.fill(0.0);
        }
        if let Some(db) = db {
            db.fill(0.0);
        }
        return;
    }
    let want_dw = dw.is_some();
    let mut partials = crate::scratch::take(chunks * plen, false);
    partials.par_chunks_mut(plen).enumerate().for_each(|(t, part)| {
        let (n, b) = (t / per_image, t % per_image);
        let oys = (b * band, ((b + 1) * band).min(geo.out_h));
        #[cfg(target_arch = "x86_64")]
        if crate::x86::available() {
            // SAFETY: avx512f checked; lengths asserted by `backward`, `part` holds `wlen + c`.
            unsafe { avx::params_band(geo, x, dy, n, oys, want_dw, part) };
            return;
        }
        params_band_portable(geo, x, dy, n, oys, want_dw, part);
    });
    let sum_into =
        |out: &mut [f32], offset: usize| crate::elementwise::sum_partials(out, &partials, plen, chunks, offset);
    if let Some(dw) = dw {
        sum_into(dw, 0);
    }
    if let Some(db) = db {
        sum_into(db, wlen);
    }
}

/// One band's partial `[dw (if wanted), db]`, plain loops.
fn params_band_portable(
    geo: &ConvGeometry,
    x: &[f32],
    dy: &[f32],
    n: usize,
    (oy0, oy1): (usize, usize),
    want_dw: bool,
    part: &mut [f32],
) {
    let c = geo.in_c;
    let wlen = geo.weight_len();
    part.fill(0.0);
    for oy in oy0..oy1 {
        let (ky0, ky1) = tap_range(oy, geo.stride_h, geo.dilation_h, geo.pad_top, geo.kernel_h, geo.in_h);
        for ox in 0..geo.out_w {
            let d = &dy[((n * geo.out_h + oy) * geo.out_w + ox) * c..][..c];
            for (b, d) in part[wlen..].iter_mut().zip(d) {
                *b += d;
            }
            if !want_dw {
                continue;
            }
            let (kx0, kx1) = tap_range(ox, geo.stride_w, geo.dilation_w, geo.pad_left, geo.kernel_w, geo.in_w);
            for ky in ky0..ky1 {
                let iy = oy * geo.stride_h + ky * geo.dilation_h - geo.pad_top;
                for kx in kx0..kx1 {
                    let ix = ox * geo.stride_w + kx * geo.dilation_w - geo.pad_left;
                    let xp = &x[((n * geo.in_h + iy) * geo.in_w + ix) * c..][..c];
                    let acc = &mut part[(ky * geo.kernel_w + kx) * c..][..c];
                    for ((a, d), xv) in acc.iter_mut().zip(d).zip(xp) {
                        *a += d * xv;
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- AVX-512

#[cfg(target_arch = "x86_64")]
mod avx {
    // register tiles read best as explicit `[r]` / `[t]` indexing
    #![allow(clippy::needless_range_loop)]

    use super::{Taps, inside_range, split, tap_range};
    use crate::conv::{ConvAct, ConvGeometry};
    use crate::x86::{activate, lane_mask};
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    /// What the forward tiles of one output row and channel block share.
    struct Tile {
        /// Input at (first valid tap row, column 0, the block's first channel).
        x: *const f32,
        /// Floats between the input rows of consecutive tap rows.
        x_row: usize,
        /// Weights at (first valid tap row, tap column 0, the block's first channel).
        w: *const f32,
        /// Floats between tap rows of the weights (`kw * c`).
        w_row: usize,
        /// Valid tap rows.
        rows: usize,
        kw: usize,
        /// Channels: the stride between pixels.
        c: usize,
        stride: usize,
        dilation: usize,
        pad: usize,
        in_w: usize,
        /// The block's bias, or null.
        bias: *const f32,
        act: ConvAct,
        /// Channels of this block.
        mask: u16,
    }

    /// Stores `act(acc[r])` at `out + r * c` (the block's lanes) and evaluates to
    /// their sum (zero in the other lanes: every load was masked). A macro, not a
    /// function: `#[inline]` on a `#[target_feature]` function is only a hint,
    /// and the compiler kept this one out of line, passing the accumulators
    /// through memory (and `#[inline(always)]` is not allowed there).
    ///
    /// Safety: used inside `unsafe`, in AVX-512F code; `out + r * c` must be
    /// writable for the block's lanes.
    macro_rules! store {
        ($a:expr, $acc:expr, $out:expr) => {{
            let (a, acc, mut out): (&Tile, _, *mut f32) = ($a, $acc, $out);
            let mut sum = _mm512_setzero_ps();
            for v in acc {
                let v = activate(a.act, v);
                _mm512_mask_storeu_ps(out, a.mask, v);
                out = out.add(a.c);
                sum = _mm512_add_ps(sum, v);
            }
            sum
        }};
    }

    /// Output pixels `ox0 .. ox0 + R` of one row and channel block:
    /// `out[r] = act(bias + sum_{ky, kx} x[iy(ky), ix(ox0 + r, kx)] * w[ky, kx])`.
    /// `BORDER` checks every tap's column (zeros outside the image); without it
    /// every tap must be inside. `FULL` (all 16 lanes, no border) uses plain
    /// loads, which fold into the FMAs. Returns the sum of the stored vectors.
    ///
    /// # Safety
    /// AVX-512F; `a` must describe valid rows of the input and weights, and
    /// `out + r * c` must be writable for the block's lanes.
    #[target_feature(enable = "avx512f")]
    unsafe fn tile<const R: usize, const BORDER: bool, const FULL: bool>(
        a: &Tile,
        ox0: usize,
        out: *mut f32,
    ) -> __m512 {
        unsafe {
            let init = if a.bias.is_null() { _mm512_setzero_ps() } else { _mm512_maskz_loadu_ps(a.mask, a.bias) };
            let mut acc = [init; R];
            let ix0 = (ox0 * a.stride) as isize - a.pad as isize;
            let step = a.stride * a.c;
            for ky in 0..a.rows {
                let xr = a.x.wrapping_add(ky * a.x_row);
                let wr = a.w.add(ky * a.w_row);
                for kx in 0..a.kw {
                    let ix = ix0 + (kx * a.dilation) as isize;
                    // may point into the padding (then every lane is masked off)
                    let xp = xr.wrapping_offset(ix * a.c as isize);
                    if FULL && !BORDER {
                        let wv = _mm512_loadu_ps(wr.add(kx * a.c));
                        for r in 0..R {
                            acc[r] = _mm512_fmadd_ps(_mm512_loadu_ps(xp.add(r * step)), wv, acc[r]);
                        }
                        continue;
                    }
                    let wv = _mm512_maskz_loadu_ps(a.mask, wr.add(kx * a.c));
                    for r in 0..R {
                        let m = if BORDER {
                            let i = ix + (r * a.stride) as isize;
                            if i >= 0 && i < a.in_w as isize { a.mask } else { 0 }
                        } else {
                            a.mask
                        };
                        let xv = _mm512_maskz_loadu_ps(m, xp.wrapping_add(r * step));
                        acc[r] = _mm512_fmadd_ps(xv, wv, acc[r]);
                    }
                }
            }
            store!(a, acc, out)
        }
    }

    /// [`tile`] for an undilated row with stride `S` and a `KW`-wide kernel:
    /// each input vector is loaded once per tap row and used by every tap that
    /// reads it (`(R - 1) * S + KW` loads instead of `R * KW`). With `BORDER`,
    /// inputs outside the image load as zeros (one mask per input column).
    ///
    /// # Safety
    /// As [`tile`].
    #[target_feature(enable = "avx512f")]
    unsafe fn tile_shared<const R: usize, const KW: usize, const S: usize, const BORDER: bool>(
        a: &Tile,
        ox0: usize,
        out: *mut f32,
    ) -> __m512 {
        unsafe {
            let init = if a.bias.is_null() { _mm512_setzero_ps() } else { _mm512_maskz_loadu_ps(a.mask, a.bias) };
            let mut acc = [init; R];
            let ix0 = (ox0 * S) as isize - a.pad as isize;
            // per input column of the window: the lanes to load (none in the padding)
            let mut masks = [a.mask; (super::TILE - 1) * 2 + 7];
            // (only border tiles read them)
            if BORDER {
                for (j, m) in masks.iter_mut().enumerate().take((R - 1) * S + KW) {
                    let i = ix0 + j as isize;
                    if i < 0 || i >= a.in_w as isize {
                        *m = 0;
                    }
                }
            }
            for ky in 0..a.rows {
                // may point into the padding (then those columns are masked off)
                let xp = a.x.wrapping_add(ky * a.x_row).wrapping_offset(ix0 * a.c as isize);
                let wr = a.w.add(ky * a.w_row);
                let mut wv = [_mm512_setzero_ps(); KW];
                for (kx, v) in wv.iter_mut().enumerate() {
                    *v = _mm512_maskz_loadu_ps(a.mask, wr.add(kx * a.c));
                }
                // output r's tap kx reads column r * S + kx: by column phase p
                // (kx = q * S + p), column e * S + p serves the outputs r = e - q
                // (loops with simple bounds, so that they unroll completely)
                for p in 0..S {
                    let taps = (KW - p).div_ceil(S);
                    for e in 0..R + taps - 1 {
                        let j = e * S + p;
                        let m = if BORDER { masks[j] } else { a.mask };
                        let xv = _mm512_maskz_loadu_ps(m, xp.wrapping_add(j * a.c));
                        for q in 0..taps {
                            if e >= q && e - q < R {
                                acc[e - q] = _mm512_fmadd_ps(xv, wv[q * S + p], acc[e - q]);
                            }
                        }
                    }
                }
            }
            store!(a, acc, out)
        }
    }

    /// Calls `tile_shared::<R, $kw, $s, $border>` for a run-time `R` in `1..=8`.
    macro_rules! tile_shared_dyn {
        ($r:expr, $kw:literal, $s:literal, $border:literal, $($arg:expr),*) => {
            match $r {
                1 => tile_shared::<1, $kw, $s, $border>($($arg),*),
                2 => tile_shared::<2, $kw, $s, $border>($($arg),*),
                3 => tile_shared::<3, $kw, $s, $border>($($arg),*),
                4 => tile_shared::<4, $kw, $s, $border>($($arg),*),
                5 => tile_shared::<5, $kw, $s, $border>($($arg),*),
                6 => tile_shared::<6, $kw, $s, $border>($($arg),*),
                7 => tile_shared::<7, $kw, $s, $border>($($arg),*),
                8 => tile_shared::<8, $kw, $s, $border>($($arg),*),
                r => unreachable!("tile of {r} pixels"),
            }
        };
    }

    /// Calls `tile_shared` for a run-time kernel width (3, 5 or 7) and stride (1 or 2).
    macro_rules! tile_shared_kw {
        ($kw:expr, $s:expr, $r:expr, $border:literal, $($arg:expr),*) => {
            match ($kw, $s) {
                (3, 1) => tile_shared_dyn!($r, 3, 1, $border, $($arg),*),
                (5, 1) => tile_shared_dyn!($r, 5, 1, $border, $($arg),*),
                (7, 1) => tile_shared_dyn!($r, 7, 1, $border, $($arg),*),
                (3, 2) => tile_shared_dyn!($r, 3, 2, $border, $($arg),*),
                (5, 2) => tile_shared_dyn!($r, 5, 2, $border, $($arg),*),
                (7, 2) => tile_shared_dyn!($r, 7, 2, $border, $($arg),*),
                (kw, s) => unreachable!("no shared-load tile for kernel width {kw}, stride {s}"),
            }
        };
    }

    /// Calls `tile::<R, $border, $full>` for a run-time `R` in `1..=8`.
    macro_rules! tile_dyn {
        ($r:expr, $border:literal, $full:literal, $($arg:expr),*) => {
            match $r {
                1 => tile::<1, $border, $full>($($arg),*),
                2 => tile::<2, $border, $full>($($arg),*),
                3 => tile::<3, $border, $full>($($arg),*),
                4 => tile::<4, $border, $full>($($arg),*),
                5 => tile::<5, $border, $full>($($arg),*),
                6 => tile::<6, $border, $full>($($arg),*),
                7 => tile::<7, $border, $full>($($arg),*),
                8 => tile::<8, $border, $full>($($arg),*),
                r => unreachable!("tile of {r} pixels"),
            }
        };
    }

    /// Output rows `oy0 ..` of image `n` (as many as `out` holds) of the forward pass.
    ///
    /// Channel blocks outer, rows and tiles inner: one block's input rows
    /// (`in_w` lines of 64 bytes each) stay in L1 from one output row to the
    /// next, so each input line comes from L2 about once per block.
    ///
    /// # Safety
    /// AVX-512F; slice lengths as [`super::forward`] asserts them; `out` is
    /// whole output rows of one image, starting at row `oy0`.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn forward_rows(
        geo: &ConvGeometry,
        x: &[f32],
        w: &[f32],
        bias: Option<&[f32]>,
        act: ConvAct,
        n: usize,
        oy0: usize,
        out: &mut [MaybeUninit<f32>],
        mut sums: Option<&mut [f32]>,
    ) {
        unsafe {
            let c = geo.in_c;
            let row = geo.out_w * c;
            let (lo, hi) =
                inside_range(geo.out_w, geo.stride_w, geo.dilation_w, geo.pad_left, (0, geo.kernel_w), geo.in_w);
            let tiles: Vec<(usize, usize, bool)> = split(lo, super::TILE)
                .map(|(s, len)| (s, len, true))
                .chain(split(hi - lo, super::TILE).map(|(s, len)| (lo + s, len, false)))
                .chain(split(geo.out_w - hi, super::TILE).map(|(s, len)| (hi + s, len, true)))
                .collect();
            let image = x.as_ptr().add(n * geo.in_h * geo.in_w * c);
            let o = out.as_mut_ptr().cast::<f32>();
            // kernels whose taps share loads: undilated 3, 5 or 7 wide, stride 1 or 2
            let shared = geo.dilation_w == 1 && matches!(geo.kernel_w, 3 | 5 | 7) && matches!(geo.stride_w, 1 | 2);
            let (kw, sw) = (geo.kernel_w, geo.stride_w);
            for cb in (0..c).step_by(16) {
                let mask = lane_mask((c - cb).min(16));
                let full = mask == u16::MAX;
                for i in 0..out.len() / row {
                    let oy = oy0 + i;
                    let (ky0, ky1) = tap_range(oy, geo.stride_h, geo.dilation_h, geo.pad_top, geo.kernel_h, geo.in_h);
                    let first_row = if ky1 > ky0 { oy * geo.stride_h + ky0 * geo.dilation_h - geo.pad_top } else { 0 };
                    let a = Tile {
                        x: image.add(first_row * geo.in_w * c + cb),
                        x_row: geo.dilation_h * geo.in_w * c,
                        w: w.as_ptr().add(ky0 * geo.kernel_w * c + cb),
                        w_row: geo.kernel_w * c,
                        rows: ky1 - ky0,
                        kw: geo.kernel_w,
                        c,
                        stride: geo.stride_w,
                        dilation: geo.dilation_w,
                        pad: geo.pad_left,
                        in_w: geo.in_w,
                        bias: bias.map_or(std::ptr::null(), |b| b.as_ptr().add(cb)),
                        act,
                        mask,
                    };
                    let orow = o.add(i * row + cb);
                    let mut sum = _mm512_setzero_ps();
                    for &(ox0, len, border) in &tiles {
                        let ob = orow.add(ox0 * c);
                        let s = match (shared, border, full) {
                            (true, true, _) => tile_shared_kw!(kw, sw, len, true, &a, ox0, ob),
                            (true, false, _) => tile_shared_kw!(kw, sw, len, false, &a, ox0, ob),
                            (false, true, _) => tile_dyn!(len, true, false, &a, ox0, ob),
                            (false, false, true) => tile_dyn!(len, false, true, &a, ox0, ob),
                            (false, false, false) => tile_dyn!(len, false, false, &a, ox0, ob),
                        };
                        sum = _mm512_add_ps(sum, s);
                    }
                    if let Some(sums) = sums.as_deref_mut() {
                        _mm512_mask_storeu_ps(sums.as_mut_ptr().add(i * c + cb), mask, sum);
                    }
                }
            }
        }
    }

    /// Input-gradient row `(n, iy)` by gathering: every pixel's sum over the
    /// `(tap, output)` pairs of its row (`row_taps`) and column (`cols`).
    ///
    /// # Safety
    /// AVX-512F; the tables must come from this geometry; `out` is one input row.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn gather_row(
        geo: &ConvGeometry,
        dy: &[f32],
        w: &[f32],
        n: usize,
        row_taps: &[(usize, usize)],
        cols: &Taps,
        out: &mut [f32],
    ) {
        unsafe {
            let c = geo.in_c;
            let dyp = dy.as_ptr().add(n * geo.out_h * geo.out_w * c);
            for ix in 0..geo.in_w {
                let col_taps = cols.of(ix);
                for cb in (0..c).step_by(16) {
                    let mask = lane_mask((c - cb).min(16));
                    let mut acc = _mm512_setzero_ps();
                    for &(ky, oy) in row_taps {
                        let drow = dyp.add(oy * geo.out_w * c + cb);
                        let wrow = w.as_ptr().add(ky * geo.kernel_w * c + cb);
                        for &(kx, ox) in col_taps {
                            let d = _mm512_maskz_loadu_ps(mask, drow.add(ox * c));
                            acc = _mm512_fmadd_ps(d, _mm512_maskz_loadu_ps(mask, wrow.add(kx * c)), acc);
                        }
                    }
                    _mm512_mask_storeu_ps(out.as_mut_ptr().add(ix * c + cb), mask, acc);
                }
            }
        }
    }

    /// What the weight-gradient tiles of one band, tap row and channel block share.
    struct Grad {
        /// Input of the image at (row 0, column 0, the block's first channel).
        x: *const f32,
        /// Output gradient of the image at (row 0, column 0, the block's first channel).
        dy: *const f32,
        geo: ConvGeometry,
        mask: u16,
    }

    /// `out[t] = sum_{oy in band, ox} dy[oy, ox] * x[iy(oy, ky), ix(ox, kx0 + t)]`
    /// for taps `kx0 .. kx0 + KT` of tap row `ky`; two accumulator sets over
    /// alternate pixels hide the FMA latency (added in a fixed order).
    ///
    /// # Safety
    /// AVX-512F; `g` must point at a whole image of `x` and `dy`; `out + t * c`
    /// must be writable for the block's lanes.
    #[target_feature(enable = "avx512f")]
    unsafe fn weight_tile<const KT: usize>(g: &Grad, ky: usize, kx0: usize, (oy0, oy1): (usize, usize), out: *mut f32) {
        unsafe {
            let geo = &g.geo;
            let (c, m) = (geo.in_c, g.mask);
            let mut acc = [[_mm512_setzero_ps(); KT]; 2];
            let (lo, hi) =
                inside_range(geo.out_w, geo.stride_w, geo.dilation_w, geo.pad_left, (kx0, kx0 + KT), geo.in_w);
            let dstep = geo.dilation_w * c;
            for oy in oy0..oy1 {
                let Some(iy) = (oy * geo.stride_h + ky * geo.dilation_h).checked_sub(geo.pad_top) else { continue };
                if iy >= geo.in_h {
                    continue;
                }
                let xr = g.x.add(iy * geo.in_w * c);
                let dr = g.dy.add(oy * geo.out_w * c);
                for ox in (0..lo).chain(hi..geo.out_w) {
                    let d = _mm512_maskz_loadu_ps(m, dr.add(ox * c));
                    for t in 0..KT {
                        let ix = (ox * geo.stride_w + (kx0 + t) * geo.dilation_w) as isize - geo.pad_left as isize;
                        if ix >= 0 && ix < geo.in_w as isize {
                            let xv = _mm512_maskz_loadu_ps(m, xr.add(ix as usize * c));
                            acc[0][t] = _mm512_fmadd_ps(d, xv, acc[0][t]);
                        }
                    }
                }
                let mut ox = lo;
                while ox < hi {
                    let p = (ox - lo) & 1;
                    let d = _mm512_maskz_loadu_ps(m, dr.add(ox * c));
                    let xp = xr.add((ox * geo.stride_w + kx0 * geo.dilation_w - geo.pad_left) * c);
                    for t in 0..KT {
                        let xv = _mm512_maskz_loadu_ps(m, xp.add(t * dstep));
                        acc[p][t] = _mm512_fmadd_ps(d, xv, acc[p][t]);
                    }
                    ox += 1;
                }
            }
            for t in 0..KT {
                _mm512_mask_storeu_ps(out.add(t * c), m, _mm512_add_ps(acc[0][t], acc[1][t]));
            }
        }
    }

    /// One band's partial `[dw (if wanted), db]` (`part` fully written).
    ///
    /// # Safety
    /// AVX-512F; slice lengths as [`super::backward`] asserts them; `part`
    /// holds `weight_len + c` floats.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn params_band(
        geo: &ConvGeometry,
        x: &[f32],
        dy: &[f32],
        n: usize,
        (oy0, oy1): (usize, usize),
        want_dw: bool,
        part: &mut [f32],
    ) {
        unsafe {
            let c = geo.in_c;
            let (kh, kw) = (geo.kernel_h, geo.kernel_w);
            let wlen = kh * kw * c;
            if !want_dw {
                part[..wlen].fill(0.0);
            }
            let dyi = dy.as_ptr().add(n * geo.out_h * geo.out_w * c);
            let p = part.as_mut_ptr();
            for cb in (0..c).step_by(16) {
                let mask = lane_mask((c - cb).min(16));
                // bias: the band's sum of dy
                let mut s = [_mm512_setzero_ps(); 2];
                let first = dyi.add(oy0 * geo.out_w * c + cb);
                for i in 0..(oy1 - oy0) * geo.out_w {
                    s[i & 1] = _mm512_add_ps(s[i & 1], _mm512_maskz_loadu_ps(mask, first.add(i * c)));
                }
                _mm512_mask_storeu_ps(p.add(wlen + cb), mask, _mm512_add_ps(s[0], s[1]));
                if !want_dw {
                    continue;
                }
                let g = Grad { x: x.as_ptr().add(n * geo.in_h * geo.in_w * c + cb), dy: dyi.add(cb), geo: *geo, mask };
                for ky in 0..kh {
                    for kx0 in (0..kw).step_by(8) {
                        let o = p.add((ky * kw + kx0) * c + cb);
                        let band = (oy0, oy1);
                        match (kw - kx0).min(8) {
                            1 => weight_tile::<1>(&g, ky, kx0, band, o),
                            2 => weight_tile::<2>(&g, ky, kx0, band, o),
                            3 => weight_tile::<3>(&g, ky, kx0, band, o),
                            4 => weight_tile::<4>(&g, ky, kx0, band, o),
                            5 => weight_tile::<5>(&g, ky, kx0, band, o),
                            6 => weight_tile::<6>(&g, ky, kx0, band, o),
                            7 => weight_tile::<7>(&g, ky, kx0, band, o),
                            _ => weight_tile::<8>(&g, ky, kx0, band, o),
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_and_inside_ranges_match_a_brute_force_count() {
        for size in 1..9 {
            for k in 1..5 {
                for s in 1..4 {
                    for d in 1..3 {
                        for p in 0..4 {
                            let out = 9;
                            for o in 0..out {
                                let valid: Vec<usize> = (0..k)
                                    .filter(|&t| {
                                        let i = (o * s + t * d) as isize - p as isize;
                                        i >= 0 && i < size as isize
                                    })
                                    .collect();
                                let (lo, hi) = tap_range(o, s, d, p, k, size);
                                assert_eq!((lo..hi).collect::<Vec<_>>(), valid, "size {size} k {k} s {s} d {d} p {p}");
                                let (a, b) = inside_range(out, s, d, p, (0, k), size);
                                assert_eq!(
                                    (a..b).contains(&o),
                                    valid.len() == k,
                                    "o {o} size {size} k {k} s {s} p {p}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
