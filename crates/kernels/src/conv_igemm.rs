//! Dense convolution forward as an implicit GEMM on NHWC activations
//! (AVX-512): the product `[pixels, kh*kw*cin] @ [kh*kw*cin, cout]` computed
//! without forming the im2col matrix.
//!
//! Each output pixel is one row of the left operand, addressed by a pointer
//! to the top-left of its window in the (zero-padded, when the convolution
//! pads) NHWC input; the reduction walks the window as `kh` runs of
//! `kw * cin` contiguous floats. The HWIO weights are the right operand,
//! taken in panels of 64 output channels and blocks of 256 rows, each block
//! copied once per band into an aligned, contiguous buffer (rows `cout`
//! apart would share a few L1 sets).
//! Weights prepared once for inference ([`crate::prepared`]) are already in
//! that panel layout and are read in place, with no copy per band; that path
//! also runs the 1x1 convolutions, and applies ReLU6 and SiLU on the store.
//! [`x86::gemm_tile`] keeps `6 x 64` of output in registers over a block;
//! the bias starts the sum and the residual and relu are applied on the last
//! block's store, so no pass over the output follows.
//!
//! Why not im2col and the `gemm` crate (`conv_gemm`, which still runs the
//! 1x1 convolutions, where it is 5-15% faster than this kernel): the im2col
//! copy is 9x the activation for a 3x3 convolution, and the crate repacks
//! the weights on every call. On ResNet-50 at batch 1 this kernel runs the
//! 3x3 layers about 10% faster than im2col + `gemm` and the 7x7 stem 15%
//! faster; the direct kernel (`conv_fast`) needs `stride_w == 1`, takes one
//! image per thread and repacks its weights on every call (half the speed on
//! the 7x7-pixel layers).
//!
//! Work is split into bands of output pixels (across images, so one image
//! keeps every thread busy) and, when there are few pixels, into groups of
//! channel panels, or (few pixels, long reduction: the late layers at batch
//! 1, where streaming the weights from memory is most of the cost) into four
//! contiguous ranges of weight rows whose partial sums are added in order at
//! the end. The summation order of every output value follows from the
//! geometry alone, so the result does not depend on the number of threads.

use crate::conv::ConvGeometry;
use crate::conv_gemm::Epilogue;
use crate::scratch;
use crate::x86::{self, GEMM_ROWS, GemmTile, TileInit};
use rayon::prelude::*;
use std::mem::MaybeUninit;

// output channels per panel: four zmm vectors
use crate::prepared::PANEL;

/// Where the right operand comes from.
#[derive(Clone, Copy)]
pub(crate) enum Weights<'a> {
    /// Plain HWIO weights (`[k, oc]` row-major): each band packs the blocks it uses.
    Plain(&'a [f32]),
    /// Prepacked `[panel][k][PANEL]`, 64-byte aligned ([`crate::prepared`]): read in place.
    Panels(&'a [f32]),
}

/// Weight rows in one block of the reduction (64 KiB of a panel; 256 measured
/// faster than 64 or 128: fewer reloads of the output tile, and the block
/// streams from L2 well enough).
const KC: usize = 256;

/// Panels whose blocks are packed together (512 KiB, in L2): each weight row
/// is read in runs of up to 2 KiB.
const CHUNK: usize = 8;

/// About how many floats of (virtual) left operand one band covers: its
/// input windows stay in L2 while every panel runs over them.
const BAND_FLOATS: usize = 1 << 17;

/// Fewest output pixels in a band (unless that leaves a thread without work).
/// Every band packs the weight blocks it uses, so bands cut by the L2 budget
/// alone were too short where the input is wide per pixel: ResNet-50's
/// stride-2 3x3 layers at batch 16 had bands of 64 and 128 pixels, and with
/// 256 the whole network ran 1-2% faster at batch 16 (batch 1 is unchanged).
const MIN_BAND_ROWS: usize = 256;

/// Up to this many output pixels, tasks split the output channels rather than the pixels.
const SMALL_M: usize = 256;

/// Up to this many output pixels, tasks split the reduction instead (ResNet-50's
/// 7x7 layers at batch 1, 49 pixels: each weight row is read by one task). At
/// 14x14 (196 pixels) splitting the output channels measured 7% faster: the
/// partial sums and their reduction pass cost more than they save there.
const SPLIT_K_M: usize = 64;

/// Whether [`forward`] handles this geometry.
pub(crate) fn supported(geo: &ConvGeometry) -> bool {
    x86::available() && geo.groups == 1
}

/// A raw pointer that tasks writing disjoint parts of one buffer may share.
#[derive(Clone, Copy)]
struct Shared<T>(T);
// SAFETY: used only for the output and inputs of `forward`, whose tasks write
// disjoint blocks and only read the inputs.
unsafe impl<T> Send for Shared<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for Shared<T> {}

impl<T: Copy> Shared<T> {
    /// The pointer (a method, so closures capture the whole wrapper).
    fn get(self) -> T {
        self.0
    }
}

/// The reduction cut into blocks of at most `kc` weight rows: `(runs, first weight row)`.
fn blocks(runs: &[(usize, usize)], kc: usize) -> Vec<(Vec<(usize, usize)>, usize)> {
    let mut out: Vec<(Vec<(usize, usize)>, usize)> = Vec::new();
    let (mut cur, mut k0, mut filled) = (Vec::new(), 0, 0);
    for &(off, len) in runs {
        let mut done = 0;
        while done < len {
            let take = (len - done).min(kc - filled);
            cur.push((off + done, take));
            done += take;
            filled += take;
            if filled == kc {
                out.push((std::mem::take(&mut cur), k0));
                k0 += filled;
                filled = 0;
            }
        }
    }
    if filled > 0 {
        out.push((cur, k0));
    }
    out
}

/// `(start, len)` pieces of `n` of at most `max` each, as even as possible.
fn split(n: usize, max: usize) -> Vec<(usize, usize)> {
    let count = n.div_ceil(max.max(1));
    (0..count).map(|i| (i * n / count, (i + 1) * n / count - i * n / count)).collect()
}

/// `y = act(conv(x, w) + bias + residual)`; see [`supported`].
/// `y` may be uninitialised: every value is written.
pub(crate) fn forward(geo: &ConvGeometry, x: &[f32], w: &[f32], epi: Epilogue<'_>, y: &mut [MaybeUninit<f32>]) {
    forward_weights(geo, x, Weights::Plain(w), epi, y);
}

/// [`forward`] with the weights plain or prepacked; also applies `epi.then`
/// (ReLU6, SiLU) to each tile as it is stored.
pub(crate) fn forward_weights(
    geo: &ConvGeometry,
    x: &[f32],
    w: Weights<'_>,
    epi: Epilogue<'_>,
    y: &mut [MaybeUninit<f32>],
) {
    assert!(supported(geo));
    let (m, k, oc, c) = (geo.batch * geo.out_pixels(), geo.patch_len(), geo.out_c, geo.in_c);
    let wlen = match w {
        Weights::Plain(w) => w.len() >= k * oc,
        Weights::Panels(p) => p.len() >= oc.div_ceil(PANEL) * k * PANEL && p.as_ptr().align_offset(64) == 0,
    };
    assert!(x.len() >= geo.input_len() && wlen && y.len() >= m * oc);
    assert!(epi.bias.is_none_or(|b| b.len() == oc) && epi.residual.is_none_or(|r| r.len() == m * oc));
    if m == 0 || oc == 0 {
        return;
    }
    // the input rows and columns the windows reach, from the padded origin
    let rows = (geo.out_h - 1) * geo.stride_h + (geo.kernel_h - 1) * geo.dilation_h + 1;
    let cols = (geo.out_w - 1) * geo.stride_w + (geo.kernel_w - 1) * geo.dilation_w + 1;
    let pads = geo.pad_top > 0 || geo.pad_left > 0 || rows > geo.in_h || cols > geo.in_w;
    let padded;
    let (xp, hp, wp): (&[f32], usize, usize) = if pads {
        padded = pad_input(geo, x, rows, cols);
        (&padded, rows, cols)
    } else {
        (x, geo.in_h, geo.in_w)
    };
    // the window of a pixel as runs of contiguous input floats
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for ky in 0..geo.kernel_h {
        for kx in 0..geo.kernel_w {
            let off = (ky * geo.dilation_h * wp + kx * geo.dilation_w) * c;
            match runs.last_mut() {
                Some(last) if last.0 + last.1 == off => last.1 += c,
                _ => runs.push((off, c)),
            }
        }
    }
    let panels = oc.div_ceil(PANEL);
    let blocks = blocks(&runs, KC);
    let pixel_offset = |r: usize| {
        let (n, p) = (r / geo.out_pixels(), r % geo.out_pixels());
        let (oy, ox) = (p / geo.out_w, p % geo.out_w);
        ((n * hp + oy * geo.stride_h) * wp + ox * geo.stride_w) * c
    };
    // SAFETY (for every job below): every pixel offset is inside the
    // (padded) input, whose every window lies within its image (the last
    // pixel's window ends at row `rows - 1`, column `cols - 1`, and
    // `hp >= rows`, `wp >= cols`); `y` (and the residual, and the partial
    // sums) hold `m * oc` floats; jobs write disjoint parts of them.
    let src = Source { x: Shared(xp.as_ptr()), w, k, oc, pixel_offset: &pixel_offset };
    let splits = k_splits(m, blocks.len());
    if splits > 1 {
        // few pixels, long reduction (late layers at batch 1): the weights
        // outweigh the pixels, so each job reads a contiguous range of weight
        // rows once, into its own partial sums, added in order at the end
        let mut partial = scratch::take(splits * m * oc, false);
        let parts = Shared(partial.as_mut_ptr());
        (0..splits).into_par_iter().for_each(|s| {
            let b = &blocks[s * blocks.len() / splits..(s + 1) * blocks.len() / splits];
            let out = Shared(parts.get().wrapping_add(s * m * oc));
            let epi = Epilogue { bias: None, residual: None, relu: false, then: None };
            // SAFETY: see above; partial `s` is written by job `s` only.
            unsafe { job(&src, (0, m), (0, panels), b, out, epi) };
        });
        y[..m * oc].par_chunks_mut(oc).enumerate().for_each(|(r, row)| {
            for (j, v) in row.iter_mut().enumerate() {
                let mut sum = epi.bias.map_or(0.0, |b| b[j]);
                for p in 0..splits {
                    sum += partial[(p * m + r) * oc + j];
                }
                if let Some(res) = epi.residual {
                    sum += res[r * oc + j];
                }
                v.write(if epi.relu { sum.max(0.0) } else { sum });
            }
            if let Some(op) = epi.then {
                // SAFETY: every value of the row was written just above.
                let row = unsafe { &mut *(row as *mut [MaybeUninit<f32>] as *mut [f32]) };
                crate::elementwise::unary_in_place_serial(op, row);
            }
        });
        return;
    }
    let (bands, groups) = blocking(geo, panels, crate::threads());
    let out = Shared(y.as_mut_ptr().cast::<f32>());
    (0..bands.len() * groups).into_par_iter().for_each(|t| {
        let g = t % groups;
        // SAFETY: see above; bands and panel groups are disjoint.
        unsafe { job(&src, bands[t / groups], (g * panels / groups, (g + 1) * panels / groups), &blocks, out, epi) };
    });
}

/// The operands of one convolution, as the jobs read them.
struct Source<'a> {
    /// The (padded) input.
    x: Shared<*const f32>,
    w: Weights<'a>,
    /// Length of the reduction (`kh * kw * cin`).
    k: usize,
    oc: usize,
    /// Offset in `x` of the top-left of an output pixel's window.
    pixel_offset: &'a (dyn Fn(usize) -> usize + Sync),
}

/// Output rows `r0..r0 + len`, panels `p0..p1`, summed over `blocks` of the
/// reduction into `out` (`[m, oc]`): the first block starts from the bias,
/// the last applies the residual and relu.
///
/// # Safety
/// The pixel offsets and every window must lie in `x`; `out` (and the
/// residual) must hold the rows' `oc` floats, written by no one else meanwhile.
unsafe fn job(
    src: &Source<'_>,
    (r0, len): (usize, usize),
    (p0, p1): (usize, usize),
    blocks: &[(Vec<(usize, usize)>, usize)],
    out: Shared<*mut f32>,
    epi: Epilogue<'_>,
) {
    let oc = src.oc;
    // SAFETY (pointer arithmetic): the caller's contract.
    let a: Vec<*const f32> = (r0..r0 + len).map(|r| unsafe { src.x.0.add((src.pixel_offset)(r)) }).collect();
    let cp: Vec<*mut f32> = (r0..r0 + len).map(|r| unsafe { out.0.add(r * oc) }).collect();
    let rp: Vec<*const f32> =
        epi.residual.map_or(Vec::new(), |res| (r0..r0 + len).map(|r| res[r * oc..].as_ptr()).collect());
    let tiles = split(len, GEMM_ROWS);
    // a block of the reduction for up to CHUNK panels, packed [panel][KC][PANEL], 64-byte aligned
    let plain = matches!(src.w, Weights::Plain(_));
    let mut buf = scratch::take(if plain { CHUNK * KC * PANEL + 16 } else { 0 }, false);
    let packed: &mut [f32] = if plain {
        let shift = buf.as_ptr().align_offset(64);
        &mut buf[shift..shift + CHUNK * KC * PANEL]
    } else {
        &mut []
    };
    for q0 in (p0..p1).step_by(CHUNK) {
        let q1 = (q0 + CHUNK).min(p1);
        let (n0, n1) = (q0 * PANEL, (q1 * PANEL).min(oc));
        for (bi, (block, k0)) in blocks.iter().enumerate() {
            let kb: usize = block.iter().map(|r| r.1).sum();
            // one pass along each weight row; packed, each panel's block is
            // contiguous (rows `oc` apart would share a few L1 sets)
            if let Weights::Plain(w) = src.w {
                for kk in 0..kb {
                    let src = &w[(k0 + kk) * oc + n0..(k0 + kk) * oc + n1];
                    for (q, s) in src.chunks(PANEL).enumerate() {
                        packed[(q * KC + kk) * PANEL..][..s.len()].copy_from_slice(s);
                    }
                }
            }
            let last = bi + 1 == blocks.len();
            for panel in q0..q1 {
                let col = panel * PANEL;
                let width = PANEL.min(oc - col);
                let nv = width.div_ceil(16);
                let init = match (bi, epi.bias) {
                    (0, Some(b)) => TileInit::Bias(b[col..].as_ptr()),
                    (0, None) => TileInit::Zero,
                    _ => TileInit::Output,
                };
                let b = match src.w {
                    Weights::Plain(_) => packed[(panel - q0) * KC * PANEL..].as_ptr(),
                    Weights::Panels(p) => p[(panel * src.k + k0) * PANEL..].as_ptr(),
                };
                for &(t0, rows) in &tiles {
                    let args = GemmTile {
                        runs: block,
                        b,
                        ldb: PANEL,
                        last_mask: x86::lane_mask(width - 16 * (nv - 1)),
                        init,
                        col,
                        residual: if last && !rp.is_empty() { &rp[t0..] } else { &[] },
                        relu: last && epi.relu,
                    };
                    // SAFETY: avx512f checked by `supported`; each row
                    // pointer plus every run offset and length of the block
                    // stays in its window (the caller's contract); the packed
                    // panel holds the block's `kb` weight rows of PANEL floats
                    // (the first `width` written, the masked lanes beyond
                    // them never loaded); output and residual rows have
                    // columns col..col + width, written by this job only; the
                    // bias has `oc` values. A block after the first reads
                    // back only lanes the first one wrote.
                    unsafe { x86::gemm_tile_dyn(rows, nv, &args, &a[t0..], &cp[t0..]) };
                    if let (true, Some(op)) = (last, epi.then) {
                        for &row in &cp[t0..t0 + rows] {
                            // SAFETY: the tile just stored columns col..col + width of its rows.
                            let v = unsafe { std::slice::from_raw_parts_mut(row.add(col), width) };
                            crate::elementwise::unary_in_place_serial(op, v);
                        }
                    }
                }
            }
        }
    }
}

/// Jobs that split the reduction: with very few pixels, enough for two per
/// thread of a two-thread machine (a fixed number, so results do not depend
/// on the thread count), at least two blocks each; else 1.
fn k_splits(m: usize, blocks: usize) -> usize {
    if m > SPLIT_K_M { 1 } else { (blocks / 2).clamp(1, 4) }
}

/// Bands of output pixels (`(first, count)`) and the number of panel groups:
/// at least two tasks per thread (for balance), bands whose input windows
/// fit in L2, and with few pixels panel groups instead of bands, so that each
/// weight is read from memory once.
fn blocking(geo: &ConvGeometry, panels: usize, threads: usize) -> (Vec<(usize, usize)>, usize) {
    let m = geo.batch * geo.out_pixels();
    let want = 2 * threads;
    if m <= SMALL_M {
        // few pixels and a short reduction: tasks split the panels, so that
        // each weight is read by one task only
        let groups = panels.min(want);
        let bands = want.div_ceil(groups).min(m.div_ceil(2 * GEMM_ROWS));
        return (split(m, m.div_ceil(bands)), groups);
    }
    // input floats per output pixel (a 3x3 stride-1 window shares all but one pixel with its neighbour)
    let per_row = geo.in_c * geo.stride_h * geo.stride_w;
    let mut bands = m.div_ceil((BAND_FLOATS / per_row.max(1)).clamp(MIN_BAND_ROWS, 1024)).max(want);
    if bands < 8 * threads {
        bands = bands.next_multiple_of(threads);
    }
    (split(m, m.div_ceil(bands.min(m.div_ceil(GEMM_ROWS)))), 1)
}

/// The input with the convolution's zero padding: `batch` images of
/// `rows x cols` pixels, the original at `(pad_top, pad_left)`.
fn pad_input(geo: &ConvGeometry, x: &[f32], rows: usize, cols: usize) -> scratch::Scratch {
    let c = geo.in_c;
    let mut xp = scratch::take(geo.batch * rows * cols * c, false);
    let img_in = geo.in_h * geo.in_w * c;
    let line = cols * c;
    let (pl, nx) = (geo.pad_left, geo.in_w.min(cols.saturating_sub(geo.pad_left)));
    xp.par_chunks_mut(line).enumerate().for_each(|(i, dst)| {
        let (n, py) = (i / rows, i % rows);
        let iy = py.wrapping_sub(geo.pad_top);
        if iy >= geo.in_h {
            dst.fill(0.0);
            return;
        }
        let src = &x[n * img_in + iy * geo.in_w * c..][..nx * c];
        dst[..pl * c].fill(0.0);
        dst[pl * c..(pl + nx) * c].copy_from_slice(src);
        dst[(pl + nx) * c..].fill(0.0);
    });
    xp
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
        (kh, kw): (usize, usize),
        (sh, sw): (usize, usize),
        (dh, dw): (usize, usize),
        (pt, pb, pl, pr): (usize, usize, usize, usize),
    ) -> ConvGeometry {
        ConvGeometry::new(n, (h, w, c), (kh, kw, co), (sh, sw), (dh, dw), (pt, pb, pl, pr))
    }

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.0 - 1.0).collect()
    }

    #[test]
    fn matches_reference_with_bias_residual_and_relu() {
        if !x86::available() {
            return;
        }
        let cases = [
            // 1x1 read in place (many bands), strided 1x1, ragged channels
            geometry(3, (23, 19), 37, 67, (1, 1), (1, 1), (1, 1), (0, 0, 0, 0)),
            geometry(2, (15, 14), 24, 130, (1, 1), (2, 2), (1, 1), (0, 0, 0, 0)),
            // 3x3 stride 1 and 2, padded; asymmetric padding; dilation in both axes
            geometry(2, (13, 11), 19, 20, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),
            geometry(1, (14, 14), 64, 64, (3, 3), (2, 2), (1, 1), (1, 1, 1, 1)),
            geometry(2, (9, 10), 5, 33, (3, 2), (1, 2), (1, 1), (2, 0, 0, 1)),
            geometry(1, (12, 13), 8, 17, (3, 3), (1, 1), (2, 2), (2, 2, 2, 2)),
            // a stem: few input channels, 7x7 stride 2
            geometry(1, (30, 28), 3, 64, (7, 7), (2, 2), (1, 1), (3, 3, 3, 3)),
            // few pixels, many channels and a long reduction: panel groups, several blocks
            geometry(1, (7, 7), 300, 520, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),
            geometry(1, (1, 1), 700, 16, (1, 1), (1, 1), (1, 1), (0, 0, 0, 0)),
        ];
        for geo in cases {
            let x = values(geo.input_len(), 1);
            let w = values(geo.weight_len(), 2);
            let b = values(geo.out_c, 3);
            let r = values(geo.output_len(), 4);
            let mut plain = vec![0.0; geo.output_len()];
            conv::conv2d_forward_reference(&geo, &x, &w, Some(&b), &mut plain);
            let mut nobias = vec![0.0; geo.output_len()];
            conv::conv2d_forward_reference(&geo, &x, &w, None, &mut nobias);
            let run = |threads: usize, epi: Epilogue<'_>| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let mut y = vec![f32::NAN; geo.output_len()];
                pool.install(|| forward(&geo, &x, &w, epi, crate::alloc::as_uninit(&mut y)));
                y
            };
            let epis = [
                (Epilogue { bias: Some(&b), residual: None, relu: false, then: None }, &plain, false, false),
                (Epilogue { bias: None, residual: None, relu: true, then: None }, &nobias, false, true),
                (Epilogue { bias: Some(&b), residual: Some(&r), relu: true, then: None }, &plain, true, true),
            ];
            for (epi, base, add, relu) in epis {
                let want: Vec<f32> = base
                    .iter()
                    .zip(&r)
                    .map(|(v, s)| if add { v + s } else { *v })
                    .map(|v| if relu { v.max(0.0) } else { v })
                    .collect();
                let one = run(1, epi);
                for (i, (g, e)) in one.iter().zip(&want).enumerate() {
                    assert!((g - e).abs() <= 1e-4 * (1.0 + e.abs()), "{geo:?} [{i}]: {g} vs {e}");
                }
                // the same sums in the same order whatever the split
                assert_eq!(one, run(2, epi), "{geo:?}: 1 vs 2 threads");
                assert_eq!(one, run(3, epi), "{geo:?}: 1 vs 3 threads");
            }
        }
    }
}
