//! Convolution forward as im2col + GEMM with the `gemm` crate: the path of
//! 1x1 convolutions (the product needs no im2col, or a cheap gather when
//! strided), of grouped convolutions and of CPUs without AVX-512. The bias,
//! a residual and a relu are applied while each block is still in cache.
//!
//! The output is the row-major matrix `[batch * out_h * out_w, out_c]`. It is
//! cut into bands of rows (output pixels, across image boundaries, so one
//! image keeps every thread busy); when there are too few rows for every
//! thread (the 7x7 layers of a ResNet at batch 1) the output channels are cut
//! into panels as well. A task gathers its band's im2col rows into per-thread
//! scratch (a 1x1 stride-1 convolution reads the input in place), runs one
//! single-threaded GEMM into its block of `y` and applies the epilogue. The
//! crate's AVX-512 microkernels run the pointwise shapes of ResNet-50 at about
//! 95% of a core's FMA peak when warm (`examples/gemm_shapes.rs`).
//!
//! Results are bit-identical from run to run for a given thread count; the
//! blocking (and so the crate's summation order) follows the thread count,
//! so they may differ in the last bits between counts.

use crate::conv::ConvGeometry;
use crate::gemm::sgemm_serial_raw;
use crate::scratch;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Floats of im2col rows per band: with the crate's packed panels the band
/// stays in L2 while its GEMM runs.
const BAND_FLOATS: usize = 1 << 17;

/// Up to this many output pixels, tasks split the output channels rather than the pixels.
const SMALL_M: usize = 256;

/// Fewest rows in a band. The crate packs the weights on every call, so with
/// a long reduction (1024 or 2048 input channels) bands of `BAND_FLOATS / k`
/// rows pay for that packing too often: ResNet-50's 1x1 convolutions with
/// 512-2048 input channels ran 2-5% faster at batch 16 with bands of 512
/// rows, and the shorter reductions already have bands that long.
const MIN_BAND_ROWS: usize = 512;

/// Rows per band for a reduction of `k`, before the bands are evened out.
fn band_rows(k: usize) -> usize {
    (BAND_FLOATS / k.max(1)).max(MIN_BAND_ROWS)
}

/// Whether the im2col matrix is the input itself (1x1, stride 1, no padding, one group).
fn reads_input_in_place(geo: &ConvGeometry) -> bool {
    geo.kernel_h == 1
        && geo.kernel_w == 1
        && geo.stride_h == 1
        && geo.stride_w == 1
        && geo.pad_top == 0
        && geo.pad_left == 0
        && geo.groups == 1
        && geo.out_h == geo.in_h
        && geo.out_w == geo.in_w
}

/// The im2col rows `r0..r1` (output pixels numbered across the batch, each
/// `kh * kw * cin/groups` long) of group `group` into `col`.
///
/// With one group and no horizontal dilation the `kw` taps of a kernel row
/// are one contiguous run of the NHWC input, copied at once.
pub(crate) fn im2col_rows(geo: &ConvGeometry, x: &[f32], group: usize, (r0, r1): (usize, usize), col: &mut [f32]) {
    let (cg, k) = (geo.group_in(), geo.patch_len());
    let c0 = group * cg;
    let pixels = geo.out_pixels();
    let img_in = geo.in_h * geo.in_w * geo.in_c;
    let run = geo.kernel_w * cg;
    let whole_runs = geo.dilation_w == 1 && cg == geo.in_c;
    let copy = |dst: &mut [f32], src: &[f32]| {
        if dst.len() < 8 {
            // a memcpy call per pixel costs more than the copy
            for (d, s) in dst.iter_mut().zip(src) {
                *d = *s;
            }
        } else {
            dst.copy_from_slice(src);
        }
    };
    for (row, r) in col[..(r1 - r0) * k].chunks_exact_mut(k.max(1)).zip(r0..r1) {
        let (n, p) = (r / pixels, r % pixels);
        let (oy, ox) = (p / geo.out_w, p % geo.out_w);
        let img = &x[n * img_in..(n + 1) * img_in];
        let ix0 = (ox * geo.stride_w) as isize - geo.pad_left as isize;
        for (ky, dst) in row.chunks_exact_mut(run).enumerate() {
            let iy = (oy * geo.stride_h + ky * geo.dilation_h) as isize - geo.pad_top as isize;
            if iy < 0 || iy as usize >= geo.in_h {
                dst.fill(0.0);
                continue;
            }
            let line = (iy as usize) * geo.in_w;
            if whole_runs && ix0 >= 0 && ix0 as usize + geo.kernel_w <= geo.in_w {
                let s = (line + ix0 as usize) * geo.in_c;
                copy(dst, &img[s..s + run]);
                continue;
            }
            for (kx, d) in dst.chunks_exact_mut(cg).enumerate() {
                let ix = ix0 + (kx * geo.dilation_w) as isize;
                if ix < 0 || ix as usize >= geo.in_w {
                    d.fill(0.0);
                } else {
                    let s = (line + ix as usize) * geo.in_c + c0;
                    copy(d, &img[s..s + cg]);
                }
            }
        }
    }
}

/// How the output is cut: `bands` of `rows` rows, `panels` of `cols` output channels.
#[derive(Clone, Copy, Debug)]
struct Blocking {
    rows: usize,
    bands: usize,
    cols: usize,
    panels: usize,
}

fn blocking(geo: &ConvGeometry, threads: usize) -> Blocking {
    let m = geo.batch * geo.out_pixels();
    let (k, og) = (geo.patch_len(), geo.group_out());
    let (cols, panels) = if geo.groups == 1 && m <= SMALL_M && og >= 64 * threads {
        // few pixels (late layers at batch 1): the weights outweigh the pixels,
        // so each is packed by one task only; two panels of output channels
        // (a multiple of 16) per thread
        let cols = og.div_ceil(2 * threads).next_multiple_of(16);
        (cols, og.div_ceil(cols))
    } else {
        (og, 1)
    };
    let want = threads.div_ceil(panels);
    // bands of about `band_rows` rows, at least `want` of them, and a multiple of
    // `want` of near-equal size: 7 full bands on 2 threads take as long as 8,
    // and 3 full bands and a sliver (784 rows of 256) as long as 4
    let cache_rows = band_rows(k);
    let bands = m.div_ceil(cache_rows).max(want).next_multiple_of(want).clamp(1, m);
    let rows = m.div_ceil(bands);
    Blocking { rows, bands: m.div_ceil(rows), cols, panels }
}

/// A raw pointer shared by tasks that write disjoint blocks.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: tasks write disjoint blocks of the output (see `forward`).
unsafe impl Send for Out {}
// SAFETY: as above.
unsafe impl Sync for Out {}

impl Out {
    /// The pointer `offset` floats on (a method, so closures capture the
    /// whole `Send` wrapper rather than its raw field).
    ///
    /// # Safety
    /// The result must stay inside the output.
    unsafe fn at(self, offset: usize) -> *mut f32 {
        // SAFETY: the caller's contract.
        unsafe { self.0.add(offset) }
    }
}

/// What is applied to each block of the product before it is stored:
/// `y = act(conv + bias + residual)`.
#[derive(Clone, Copy, Default)]
pub(crate) struct Epilogue<'a> {
    /// One value per output channel.
    pub bias: Option<&'a [f32]>,
    /// A tensor of the output's shape (a residual block's skip connection).
    pub residual: Option<&'a [f32]>,
    /// Clamp at zero last.
    pub relu: bool,
    /// Another activation applied last (ReLU6, SiLU), while the block is in cache; only
    /// this file's kernels honour it, so the routing sets it for them alone.
    pub then: Option<crate::elementwise::Unary>,
}

/// `y = act(conv(x, w) + bias + residual)` for any geometry (strides,
/// dilation, padding, groups). `y` may be uninitialised: every value is written.
pub(crate) fn forward(geo: &ConvGeometry, x: &[f32], w: &[f32], epi: Epilogue<'_>, y: &mut [MaybeUninit<f32>]) {
    let m = geo.batch * geo.out_pixels();
    let (k, og, oc) = (geo.patch_len(), geo.group_out(), geo.out_c);
    assert!(y.len() >= m * oc && w.len() >= k * oc);
    assert!(epi.bias.is_none_or(|b| b.len() == oc) && epi.residual.is_none_or(|r| r.len() == m * oc));
    if m == 0 || oc == 0 {
        return;
    }
    let b = blocking(geo, crate::threads());
    let in_place = reads_input_in_place(geo);
    // with panels the tasks of a band share its im2col rows: gather all of them first
    let shared = if b.panels > 1 && !in_place {
        let mut col = scratch::take(m * k, false);
        col.par_chunks_mut(b.rows * k).enumerate().for_each(|(i, c)| {
            let r0 = i * b.rows;
            im2col_rows(geo, x, 0, (r0, r0 + c.len() / k), c);
        });
        Some(col)
    } else {
        None
    };
    let out = Out(y.as_mut_ptr().cast::<f32>());
    (0..b.bands * b.panels).into_par_iter().for_each(|t| {
        let (band, panel) = (t / b.panels, t % b.panels);
        let (r0, r1) = (band * b.rows, ((band + 1) * b.rows).min(m));
        let (n0, n1) = (panel * b.cols, ((panel + 1) * b.cols).min(og));
        let rows = r1 - r0;
        let mut col = scratch::take(if in_place || shared.is_some() { 0 } else { rows * k }, false);
        for g in 0..geo.groups {
            let a: &[f32] = if in_place {
                &x[r0 * k..r1 * k]
            } else if let Some(s) = &shared {
                &s[r0 * k..r1 * k]
            } else {
                im2col_rows(geo, x, g, (r0, r1), &mut col);
                &col
            };
            let c0 = g * og + n0;
            // SAFETY: `a` holds `rows` rows of `k`; the weights of group g,
            // columns n0..n1, are rows of `oc` floats (`w.len() >= k * oc`,
            // checked above); the block rows r0..r1, columns c0..c0 + n1 - n0
            // lies in `y` (length checked above) and no other task writes it
            // (bands are disjoint row ranges, panels disjoint column ranges,
            // groups disjoint columns within the task).
            unsafe {
                let c = out.at(r0 * oc + c0);
                sgemm_serial_raw((rows, n1 - n0, k), c, oc, a.as_ptr(), k, w.as_ptr().add(c0), oc);
                epilogue(c, (rows, n1 - n0), oc, epi, (r0, c0));
            }
        }
    });
}

/// Applies `epi` to the block of rows `r0..r0 + rows`, columns
/// `c0..c0 + cols` of the output, at `c` with row stride `ldc`.
///
/// # Safety
/// `c` must point to `rows` rows of `cols` initialised floats at stride `ldc`,
/// not accessed by anyone else meanwhile.
unsafe fn epilogue(c: *mut f32, (rows, cols): (usize, usize), ldc: usize, epi: Epilogue<'_>, (r0, c0): (usize, usize)) {
    if epi.bias.is_none() && epi.residual.is_none() && !epi.relu && epi.then.is_none() {
        return;
    }
    let bias = epi.bias.map(|b| &b[c0..c0 + cols]);
    for r in 0..rows {
        // SAFETY: the caller's contract.
        let row = unsafe { std::slice::from_raw_parts_mut(c.add(r * ldc), cols) };
        if let (Some(op), Some(b), None, false) = (epi.then, bias, epi.residual, epi.relu) {
            // bias and activation in one pass (EfficientNet's SiLU expansions)
            crate::elementwise::bias_unary_in_place_serial(op, row, b);
            continue;
        }
        let res = epi.residual.map(|s| &s[(r0 + r) * ldc + c0..(r0 + r) * ldc + c0 + cols]);
        // one loop per case, so that each vectorises
        match (bias, res, epi.relu) {
            (Some(b), None, true) => row.iter_mut().zip(b).for_each(|(v, b)| *v = (*v + b).max(0.0)),
            (Some(b), None, false) => row.iter_mut().zip(b).for_each(|(v, b)| *v += b),
            (Some(b), Some(s), true) => row.iter_mut().zip(b).zip(s).for_each(|((v, b), s)| *v = (*v + b + s).max(0.0)),
            (Some(b), Some(s), false) => row.iter_mut().zip(b).zip(s).for_each(|((v, b), s)| *v = *v + b + s),
            (None, Some(s), true) => row.iter_mut().zip(s).for_each(|(v, s)| *v = (*v + s).max(0.0)),
            (None, Some(s), false) => row.iter_mut().zip(s).for_each(|(v, s)| *v += s),
            (None, None, true) => row.iter_mut().for_each(|v| *v = v.max(0.0)),
            (None, None, false) => {}
        }
        if let Some(op) = epi.then {
            crate::elementwise::unary_in_place_serial(op, row);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::{self, ConvGeometry};

    #[allow(clippy::too_many_arguments)]
    fn geometry(
        n: usize,
        (h, w): (usize, usize),
        c: usize,
        co: usize,
        k: usize,
        s: usize,
        pad: usize,
        groups: usize,
    ) -> ConvGeometry {
        ConvGeometry::new(n, (h, w, c), (k, k, co), (s, s), (1, 1), (pad, pad, pad, pad)).with_groups(groups)
    }

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.0 - 1.0).collect()
    }

    #[test]
    fn blocking_gives_every_thread_the_same_share() {
        // ResNet-50's pointwise layers at batch 1 and 16, on 1, 2 and 4 threads
        for (n, hw, c, co) in
            [(1, 56, 64, 256), (1, 56, 256, 64), (1, 28, 512, 128), (1, 14, 1024, 256), (16, 28, 512, 256)]
        {
            let geo = geometry(n, (hw, hw), c, co, 1, 1, 0, 1);
            let m = n * hw * hw;
            for threads in [1, 2, 4] {
                let b = blocking(&geo, threads);
                let tasks = b.bands * b.panels;
                assert!(b.bands * b.rows >= m && (b.bands - 1) * b.rows < m, "{b:?}");
                assert!(b.panels * b.cols >= co && (b.panels - 1) * b.cols < co, "{b:?}");
                assert_eq!(tasks % threads, 0, "{n}x{hw}x{hw}x{c}->{co} on {threads}: {b:?}");
                // the last band is at most a few rows short of the others
                assert!(m - (b.bands - 1) * b.rows + b.bands >= b.rows, "{b:?}");
                // and a band stays within its row budget
                assert!(b.rows <= band_rows(geo.patch_len()), "{b:?}");
            }
        }
    }

    #[test]
    fn bands_panels_and_epilogues_match_reference() {
        let cases = [
            // 1x1 read in place, many bands
            geometry(3, (29, 23), 37, 67, 1, 1, 0, 1),
            // strided 1x1 (gathered rows)
            geometry(2, (15, 14), 24, 40, 1, 2, 0, 1),
            // few pixels, many channels: panels of output channels
            geometry(1, (7, 7), 96, 200, 1, 1, 0, 1),
            geometry(1, (5, 4), 33, 130, 3, 1, 1, 1),
            // groups, padding, stride
            geometry(2, (11, 9), 12, 18, 3, 2, 1, 3),
        ];
        for geo in cases {
            let x = values(geo.input_len(), 1);
            let w = values(geo.weight_len(), 2);
            let b = values(geo.out_c, 3);
            let r = values(geo.output_len(), 4);
            let mut plain = vec![0.0; geo.output_len()];
            conv::conv2d_forward_reference(&geo, &x, &w, Some(&b), &mut plain);
            let want: Vec<f32> = plain.iter().zip(&r).map(|(v, s)| (v + s).max(0.0)).collect();
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let mut y = vec![f32::NAN; geo.output_len()];
                pool.install(|| {
                    forward(
                        &geo,
                        &x,
                        &w,
                        Epilogue { bias: Some(&b), residual: None, relu: false, then: None },
                        crate::alloc::as_uninit(&mut y),
                    )
                });
                for (i, (g, e)) in y.iter().zip(&plain).enumerate() {
                    assert!((g - e).abs() <= 1e-4 * (1.0 + e.abs()), "{geo:?} {threads} threads [{i}]: {g} vs {e}");
                }
                let epi = Epilogue { bias: Some(&b), residual: Some(&r), relu: true, then: None };
                pool.install(|| forward(&geo, &x, &w, epi, crate::alloc::as_uninit(&mut y)));
                for (i, (g, e)) in y.iter().zip(&want).enumerate() {
                    assert!(
                        (g - e).abs() <= 1e-4 * (1.0 + e.abs()),
                        "{geo:?} residual {threads} threads [{i}]: {g} vs {e}"
                    );
                }
            }
        }
    }
}
