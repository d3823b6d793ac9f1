//! Direct (im2col-free) convolution on AVX-512 for `groups == 1`, the common
//! case of every CNN's dense convolutions.
//!
//! * forward (`stride_w == 1`): each image is copied once into a zero-padded
//!   row-planar buffer (`[rows][channels][cols]`, per-thread scratch) and
//!   [`x86::conv_tile`] computes up to `14 x 32` output tiles from it, bias
//!   and relu fused into the store;
//! * backward, one pass per chunk of [`CHUNK`] images, everything for an
//!   image done while it is in cache: the relu mask, the bias gradient, the
//!   input gradient (stride 1: the forward kernel on the padded output
//!   gradient with flipped, transposed weights, since a transposed conv is a
//!   conv; no col2im, no writes shared between threads) and the weight
//!   gradient into a private partial per chunk: with many input channels, one
//!   GEMM per tap over all the chunk's pixels (the pixels each tap meets
//!   gathered into rows; a 1x1 convolution reads its input in place), else
//!   sums of outer products ([`x86::rank1_tile`]) per image. Partials are
//!   added in chunk order, so the result is bit-identical for any number of
//!   threads.
//!
//! Parallelism is over images (forward) and image chunks (backward); each
//! task owns the output it writes.

use crate::conv::ConvGeometry;
use crate::gemm::{MatMut, MatRef};
use crate::scratch::{self, Scratch};
use crate::x86::{self, ConvTile, MAX_ROWS, Rank1Tile};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Bytes of packed weights one sweep over an image keeps hot in L1.
const L1_WEIGHTS: usize = 16 * 1024;

/// [`L1_WEIGHTS`], or `CONVNET_TAP_CHUNK_BYTES` when set (a tuning knob for
/// CPUs with other L1 sizes; a huge value disables the chunking).
fn l1_weights() -> usize {
    use std::sync::OnceLock;
    static BYTES: OnceLock<usize> = OnceLock::new();
    *BYTES.get_or_init(|| {
        std::env::var("CONVNET_TAP_CHUNK_BYTES").ok().and_then(|v| v.parse().ok()).unwrap_or(L1_WEIGHTS)
    })
}

/// Bytes of padded input rows one weight-gradient band covers.
const BAND_BYTES: usize = 24 * 1024;

/// Images per backward task and weight-gradient partial sum (fixed, so
/// results do not depend on the number of threads).
pub(crate) const CHUNK: usize = 8;

/// Whether [`forward`] handles this geometry.
pub(crate) fn forward_supported(geo: &ConvGeometry) -> bool {
    x86::available() && geo.groups == 1 && geo.stride_w == 1
}

/// Whether [`backward`] can produce the input gradient for this geometry.
pub(crate) fn backward_input_supported(geo: &ConvGeometry) -> bool {
    x86::available()
        && geo.groups == 1
        // the input channels are this pass's output vectors: too few waste lanes
        && geo.in_c >= 8
        && geo.stride_w == 1
        && geo.stride_h == 1
        && geo.pad_top <= (geo.kernel_h - 1) * geo.dilation_h
        && geo.pad_left <= (geo.kernel_w - 1) * geo.dilation_w
}

/// Whether [`backward`] can produce the weight and bias gradients for this geometry.
pub(crate) fn backward_weight_supported(geo: &ConvGeometry) -> bool {
    x86::available() && geo.groups == 1
}

/// Splits `n` into at most 14-long pieces of near-equal length: `(start, len)`.
fn row_tiles(n: usize) -> Vec<(usize, usize)> {
    let count = n.div_ceil(MAX_ROWS);
    let mut out = Vec::with_capacity(count);
    let mut start = 0;
    for i in 0..count {
        let len = (n - start) / (count - i);
        out.push((start, len));
        start += len;
    }
    out
}

/// Channel blocks of up to `block` (16 or 32): `(start, vectors, last-vector mask)`.
fn channel_blocks(channels: usize, block: usize) -> Vec<(usize, usize, u16)> {
    (0..channels.div_ceil(block))
        .map(|b| {
            let start = b * block;
            let n = (channels - start).min(block);
            let nv = n.div_ceil(16);
            (start, nv, x86::lane_mask(n - 16 * (nv - 1)))
        })
        .collect()
}

/// Copies an NHWC image (`h x w x c`) into a zeroed row-planar buffer
/// (`[rows][c][cols]`) at offset `(top, left)`, dropping what falls outside.
#[allow(clippy::too_many_arguments)]
fn fill_planar(
    img: &[f32],
    (h, w, c): (usize, usize, usize),
    (top, left): (usize, usize),
    (rows, cols): (usize, usize),
    dst: &mut [f32],
) {
    for iy in 0..h.min(rows.saturating_sub(top)) {
        let py = iy + top;
        for ix in 0..w.min(cols.saturating_sub(left)) {
            let px = ix + left;
            let src = &img[(iy * w + ix) * c..(iy * w + ix + 1) * c];
            let base = py * c * cols + px;
            for (ch, v) in src.iter().enumerate() {
                dst[base + ch * cols] = *v;
            }
        }
    }
}

/// Copies an NHWC image into a zeroed NHWC buffer of `rows x cols` pixels at `(top, left)`.
fn fill_nhwc(
    img: &[f32],
    (h, w, c): (usize, usize, usize),
    (top, left): (usize, usize),
    (rows, cols): (usize, usize),
    dst: &mut [f32],
) {
    let n = w.min(cols.saturating_sub(left));
    for iy in 0..h.min(rows.saturating_sub(top)) {
        let d = ((iy + top) * cols + left) * c;
        dst[d..d + n * c].copy_from_slice(&img[iy * w * c..(iy * w + n) * c]);
    }
}

/// A direct convolution of one image, ready to run: packed weights, tap
/// offsets and tiles. Also serves the input gradient (flipped weights).
struct DirectPlan {
    /// `(out_h, out_w, cout)` of the result.
    out: (usize, usize, usize),
    /// `(rows, cols, cin)` of the padded row-planar input.
    input: (usize, usize, usize),
    /// Input rows between consecutive output rows.
    row_step: usize,
    taps: Vec<usize>,
    block: usize,
    blocks: Vec<(usize, usize, u16)>,
    tiles: Vec<(usize, usize)>,
    packed: Scratch,
    bias: Option<Vec<f32>>,
    relu: bool,
}

impl DirectPlan {
    /// `get(tap, ci, co)` reads the weight; taps are `(ky, kx)` row-major with
    /// input offsets `ky * dil_h` rows and `kx * dil_w` columns.
    #[allow(clippy::too_many_arguments)]
    fn new(
        out: (usize, usize, usize),
        input: (usize, usize, usize),
        row_step: usize,
        (kh, kw, dil_h, dil_w): (usize, usize, usize, usize),
        get: impl Fn(usize, usize, usize) -> f32,
        bias: Option<&[f32]>,
        relu: bool,
    ) -> Self {
        let (cout, cin, cols) = (out.2, input.2, input.1);
        let ntaps = kh * kw;
        let block = if cout > 16 { 32 } else { 16 };
        let blocks = channel_blocks(cout, block);
        // packed as [block][tap][ci][16 * nv] (the last block may be narrower)
        let mut packed = scratch::take(blocks.len() * ntaps * cin * block, true);
        for (b, &(c0, nv, _)) in blocks.iter().enumerate() {
            let lanes = 16 * nv;
            let base = b * ntaps * cin * block;
            for t in 0..ntaps {
                for ci in 0..cin {
                    let row = base + (t * cin + ci) * lanes;
                    for (l, co) in (c0..(c0 + lanes).min(cout)).enumerate() {
                        packed[row + l] = get(t, ci, co);
                    }
                }
            }
        }
        let bias = bias.map(|b| {
            let mut p = vec![0.0; blocks.len() * block];
            p[..cout].copy_from_slice(b);
            p
        });
        let taps = (0..kh).flat_map(|ky| (0..kw).map(move |kx| ky * dil_h * cin * cols + kx * dil_w)).collect();
        Self { out, input, row_step, taps, block, blocks, tiles: row_tiles(out.1), packed, bias, relu }
    }

    /// Length of the padded input buffer.
    fn input_len(&self) -> usize {
        self.input.0 * self.input.1 * self.input.2
    }

    /// Runs on one padded image `xp`, writing every output of `y` (`out_h x out_w x cout`).
    ///
    /// The taps are taken in chunks whose packed weights fit in L1 (about
    /// 16 KiB), each chunk swept over the whole image, the partial sums kept
    /// in `y` between chunks: streaming all the weights from L2 for every
    /// tile instead costs a third of the kernel's speed.
    /// `y` may be uninitialised: every value is written before any is read.
    fn run(&self, xp: &[f32], y: &mut [MaybeUninit<f32>]) {
        let (out_h, out_w, cout) = self.out;
        let (_, cols, cin) = self.input;
        assert!(xp.len() >= self.input_len() && y.len() >= out_h * out_w * cout);
        let ntaps = self.taps.len();
        let per_chunk = (l1_weights() / (cin * self.block * 4)).clamp(1, ntaps);
        let chunks = ntaps.div_ceil(per_chunk);
        for (bi, &(c0, nv, mask)) in self.blocks.iter().enumerate() {
            for chunk in 0..chunks {
                let t0 = chunk * ntaps / chunks;
                let t1 = (chunk + 1) * ntaps / chunks;
                let args = ConvTile {
                    taps: &self.taps[t0..t1],
                    channels: cin,
                    channel_stride: cols,
                    // block bi starts at bi * ntaps * cin * block; its rows have 16 * nv lanes
                    weights: self.packed[bi * ntaps * cin * self.block + t0 * cin * 16 * nv..].as_ptr(),
                    bias: self.bias.as_ref().map_or(std::ptr::null(), |b| b[bi * self.block..].as_ptr()),
                    accumulate: chunk > 0,
                    out_pixel_stride: cout,
                    last_mask: mask,
                    relu: self.relu && chunk + 1 == chunks,
                };
                for oy in 0..out_h {
                    let row = oy * self.row_step * cin * cols;
                    for &(ox0, r) in &self.tiles {
                        let o = (oy * out_w + ox0) * cout + c0;
                        // SAFETY: avx512f was checked by the `*_supported` gates;
                        // the padded input spans every tap of every tile (its
                        // size comes from the same geometry: the last tile reads
                        // up to row `(out_h - 1) * row_step + last tap row`, column
                        // `out_w - 1 + last tap column`), `packed` holds
                        // `blocks * taps * cin * block` floats, and the output
                        // tile (`r` pixels, channels `c0..` masked to `cout`)
                        // lies inside `y` (asserted above).
                        // The first chunk of taps writes every lane of the tile
                        // (masked to cout) before later chunks read them back.
                        unsafe {
                            x86::conv_tile_dyn(
                                r,
                                nv,
                                &args,
                                xp.as_ptr().add(row + ox0),
                                y.as_mut_ptr().add(o).cast::<f32>(),
                            )
                        };
                    }
                }
            }
        }
    }
}

/// `y = act(conv(x, w) + bias)`; see [`forward_supported`].
///
/// `y` may be uninitialised: every value is written.
pub(crate) fn forward(
    geo: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    y: &mut [MaybeUninit<f32>],
) {
    let (c, co) = (geo.in_c, geo.out_c);
    let (kh, kw) = (geo.kernel_h, geo.kernel_w);
    let cols = geo.out_w + (kw - 1) * geo.dilation_w;
    let rows = (geo.out_h - 1) * geo.stride_h + (kh - 1) * geo.dilation_h + 1;
    let plan = DirectPlan::new(
        (geo.out_h, geo.out_w, co),
        (rows, cols, c),
        geo.stride_h,
        (kh, kw, geo.dilation_h, geo.dilation_w),
        |t, ci, o| w[(t * c + ci) * co + o],
        bias,
        relu,
    );
    let img_in = geo.in_h * geo.in_w * c;
    let img_out = geo.out_pixels() * co;
    // a few images per task share one padded buffer, whose zero border stays
    let per_task = (geo.batch / (4 * crate::threads())).clamp(1, 4);
    y.par_chunks_mut(img_out * per_task).enumerate().for_each(|(t, ys)| {
        let mut xp = scratch::take(plan.input_len(), true);
        for (j, yi) in ys.chunks_mut(img_out).enumerate() {
            let n = t * per_task + j;
            fill_planar(
                &x[n * img_in..(n + 1) * img_in],
                (geo.in_h, geo.in_w, c),
                (geo.pad_top, geo.pad_left),
                (rows, cols),
                &mut xp,
            );
            plan.run(&xp, yi);
        }
    });
}

/// The input-gradient plan: the forward kernel over the output gradient padded
/// by `(k - 1) * dilation - pad` on each leading side, with flipped taps and
/// the channel roles swapped.
fn input_grad_plan(geo: &ConvGeometry, w: &[f32]) -> DirectPlan {
    let (c, co) = (geo.in_c, geo.out_c);
    let (kh, kw) = (geo.kernel_h, geo.kernel_w);
    let ntaps = kh * kw;
    let (rows, cols) = (geo.in_h + (kh - 1) * geo.dilation_h, geo.in_w + (kw - 1) * geo.dilation_w);
    DirectPlan::new(
        (geo.in_h, geo.in_w, c),
        (rows, cols, co),
        1,
        (kh, kw, geo.dilation_h, geo.dilation_w),
        |t, o, ci| w[((ntaps - 1 - t) * c + ci) * co + o],
        None,
        false,
    )
}

/// How the weight gradient of one chunk is accumulated.
#[derive(Clone, Copy, PartialEq, Eq)]
enum WeightGrad {
    /// Vectors along input channels; partial laid out `[tap][co][ci]`.
    Channels,
    /// Vectors along output channels, broadcasting runs of `kw * c`
    /// consecutive inputs straight from the padded image (few input channels,
    /// `dilation_w == 1`); partial laid out `[tap * ci][co]` like the weights.
    Runs,
    /// As `ByRuns` over per-image patches (few input channels, dilated).
    Patches,
}

/// Gradients of `y = act(conv(x, w) + b)` given `dy = dL/dy` (and `y` when the
/// activation is relu). Each of `dx`, `dw`, `db` is overwritten when given;
/// `dx` requires [`backward_input_supported`], the others
/// [`backward_weight_supported`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    geo: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    relu_y: Option<&[f32]>,
    dx: Option<&mut [f32]>,
    mut dw: Option<&mut [f32]>,
    mut db: Option<&mut [f32]>,
) {
    let (c, co) = (geo.in_c, geo.out_c);
    let (kh, kw) = (geo.kernel_h, geo.kernel_w);
    let ntaps = kh * kw;
    let wlen = geo.weight_len();
    let img_in = geo.in_h * geo.in_w * c;
    let img_out = geo.out_pixels() * co;
    let chunks = geo.batch.div_ceil(CHUNK);
    if chunks == 0 || img_out == 0 || img_in == 0 {
        dw.iter_mut().for_each(|d| d.fill(0.0));
        db.iter_mut().for_each(|d| d.fill(0.0));
        if let Some(d) = dx {
            d.fill(0.0);
        }
        return;
    }
    let dx_plan = dx.as_ref().map(|_| input_grad_plan(geo, w));
    let mode = if c >= 16 {
        WeightGrad::Channels
    } else if geo.dilation_w == 1 {
        WeightGrad::Runs
    } else {
        WeightGrad::Patches
    };
    let want_w = dw.is_some();
    let want_b = db.is_some();
    // weight-gradient geometry: the padded NHWC input
    let cols = (geo.out_w - 1) * geo.stride_w + (kw - 1) * geo.dilation_w + 1;
    let rows = (geo.out_h - 1) * geo.stride_h + (kh - 1) * geo.dilation_h + 1;
    let oblocks = channel_blocks(co, if co > 16 { 32 } else { 16 });
    let k_tiles = row_tiles(geo.patch_len());
    let run_tiles = row_tiles(kw * c);
    // output-row bands whose padded input rows take about 24 KiB, so that a
    // band's input and gradient stay in L1 across all taps
    let band_rows = ((BAND_BYTES / (cols * c * 4).max(1)).saturating_sub((kh - 1) * geo.dilation_h) / geo.stride_h)
        .clamp(1, geo.out_h);
    let bands: Vec<(usize, usize)> = {
        let count = geo.out_h.div_ceil(band_rows);
        (0..count).map(|i| (i * geo.out_h / count, (i + 1) * geo.out_h / count - i * geo.out_h / count)).collect()
    };

    // Channels: the weight gradient runs once per chunk over all its images,
    // as products `[co][ci] = G^T X` (the gemm crate's packed kernel) over the
    // chunk's pixels, one per tap; `x` is read in place when no padding is needed
    let batched = want_w && mode == WeightGrad::Channels;
    let direct_x = batched && geo.pad_top == 0 && geo.pad_left == 0 && rows <= geo.in_h && cols <= geo.in_w;
    // a 1x1 convolution over every pixel: the input rows are the gradient's rows
    let pointwise = direct_x && kh == 1 && kw == 1 && geo.stride_h == 1 && geo.stride_w == 1 && cols == geo.in_w;
    let (x_cols, x_img) = if direct_x { (geo.in_w, img_in) } else { (cols, rows * cols * c) };

    let plen = wlen + co;
    let mut partials = scratch::take(if want_w || want_b { chunks * plen } else { 0 }, false);
    let dx_chunks: Vec<Option<&mut [f32]>> = match dx {
        Some(d) => d.chunks_mut(CHUNK * img_in).map(Some).collect(),
        None => (0..chunks).map(|_| None).collect(),
    };
    let part_chunks: Vec<&mut [f32]> = if partials.is_empty() {
        (0..chunks).map(|_| <&mut [f32]>::default()).collect()
    } else {
        partials.chunks_mut(plen).collect()
    };
    part_chunks.into_par_iter().zip(dx_chunks).enumerate().for_each(|(ch, (part, mut dxc))| {
        part.fill(0.0);
        let first = ch * CHUNK;
        let imgs = CHUNK.min(geo.batch - first);
        let per_image_g = if batched { imgs * img_out } else { img_out };
        let mut gm = scratch::take(if relu_y.is_some() { per_image_g } else { 0 }, false);
        let mut pad = scratch::take(dx_plan.as_ref().map_or(0, |p| p.input_len()), true);
        let xp_len = match (want_w, batched) {
            (false, _) => 0,
            (true, true) if direct_x => 0,
            (true, true) => imgs * x_img,
            (true, false) => x_img,
        };
        let mut xp = scratch::take(xp_len, true);
        let mut col = scratch::take(
            if want_w && mode == WeightGrad::Patches { geo.out_pixels() * geo.patch_len() } else { 0 },
            false,
        );
        for (j, n) in (first..first + imgs).enumerate() {
            let g: &[f32] = match relu_y {
                Some(y) => {
                    let gj = if batched { &mut gm[j * img_out..(j + 1) * img_out] } else { &mut gm[..] };
                    crate::elementwise::relu_backward_serial(
                        &dy[n * img_out..(n + 1) * img_out],
                        &y[n * img_out..(n + 1) * img_out],
                        gj,
                    );
                    gj
                }
                None => &dy[n * img_out..(n + 1) * img_out],
            };
            if want_b {
                let acc = &mut part[wlen..];
                for px in g.chunks_exact(co) {
                    for (a, v) in acc.iter_mut().zip(px) {
                        *a += *v;
                    }
                }
            }
            if let (Some(plan), Some(dxc)) = (&dx_plan, dxc.as_deref_mut()) {
                let (eh, ew) = ((kh - 1) * geo.dilation_h, (kw - 1) * geo.dilation_w);
                fill_planar(
                    g,
                    (geo.out_h, geo.out_w, co),
                    (eh - geo.pad_top, ew - geo.pad_left),
                    (plan.input.0, plan.input.1),
                    &mut pad,
                );
                plan.run(&pad, crate::alloc::as_uninit(&mut dxc[j * img_in..(j + 1) * img_in]));
            }
            if !want_w || direct_x {
                continue;
            }
            // the next image rewrites the interior of its padded copy; the zero border stays
            let xj = if batched { &mut xp[j * x_img..(j + 1) * x_img] } else { &mut xp[..] };
            fill_nhwc(
                &x[n * img_in..(n + 1) * img_in],
                (geo.in_h, geo.in_w, c),
                (geo.pad_top, geo.pad_left),
                (rows, cols),
                xj,
            );
            match mode {
                // after the loop, over all the chunk's images at once
                WeightGrad::Channels => {}
                WeightGrad::Runs => {
                    let run = kw * c;
                    for &(y0, band) in &bands {
                        let (ga, xb) = (y0 * geo.out_w * co, y0 * geo.stride_h * cols * c);
                        for ky in 0..kh {
                            for &(r0, r) in &run_tiles {
                                for &(c0, nv, mask) in &oblocks {
                                    let t = Rank1Tile {
                                        a: xp[xb + ky * geo.dilation_h * cols * c + r0..].as_ptr(),
                                        a_row: geo.stride_h * cols * c,
                                        a_col: geo.stride_w * c,
                                        b: g[ga + c0..].as_ptr(),
                                        b_row: geo.out_w * co,
                                        b_col: co,
                                        rows: band,
                                        cols: geo.out_w,
                                        out: part[(ky * run + r0) * co + c0..].as_mut_ptr(),
                                        out_stride: co,
                                        last_mask: mask,
                                    };
                                    // SAFETY: avx512f checked by `backward_weight_supported`;
                                    // `a` reads, for each pixel of the band, values r0..r0+r
                                    // of the kw * c run its row ky of taps covers in the
                                    // padded image (dilation_w == 1, so contiguous), `b`
                                    // reads channels c0.. (masked to co) of the band's
                                    // gradient pixels, `out` writes rows of `part` (layout
                                    // [tap * ci][co]), masked to co.
                                    unsafe { x86::rank1_tile_dyn(r, nv, &t) };
                                }
                            }
                        }
                    }
                }
                WeightGrad::Patches => {
                    patches_from_padded(geo, &xp, cols, &mut col);
                    let k = geo.patch_len();
                    for &(k0, r) in &k_tiles {
                        for &(c0, nv, mask) in &oblocks {
                            let t = Rank1Tile {
                                a: col[k0..].as_ptr(),
                                a_row: 0,
                                a_col: k,
                                b: g[c0..].as_ptr(),
                                b_row: 0,
                                b_col: co,
                                rows: 1,
                                cols: geo.out_pixels(),
                                out: part[k0 * co + c0..].as_mut_ptr(),
                                out_stride: co,
                                last_mask: mask,
                            };
                            // SAFETY: avx512f checked by `backward_weight_supported`;
                            // `a` reads columns k0..k0+r of every patch row, `b`
                            // reads channels c0.. (masked to co) of every gradient
                            // pixel, `out` writes rows k0..k0+r of `part`, masked to co.
                            unsafe { x86::rank1_tile_dyn(r, nv, &t) };
                        }
                    }
                }
            }
        }
        if !batched {
            return;
        }
        // the chunk's gradients and (padded) inputs, image after image
        let gs: &[f32] = if relu_y.is_some() { &gm } else { &dy[first * img_out..(first + imgs) * img_out] };
        let xs: &[f32] = if direct_x { &x[first * img_in..(first + imgs) * img_in] } else { &xp };
        let pixels = imgs * geo.out_pixels();
        // `part[tap]` is `[co][ci]`: written as the transposed view of `X^T G`, the
        // orientation the gemm crate runs faster here (the gradient's channels as columns)
        let product = |xm: &[f32], out: &mut [f32]| {
            let o = MatMut { data: out, rows: c, cols: co, row_stride: 1, col_stride: c };
            crate::gemm::sgemm_serial(
                MatRef::row_major(xm, pixels, c).t(),
                MatRef::row_major(gs, pixels, co),
                o,
                false,
            );
        };
        if pointwise {
            // the input rows are the gradient's rows: one product
            product(xs, &mut part[..wlen]);
            return;
        }
        // per tap, the input pixels it meets gathered into rows, then the product
        let mut xt = scratch::take(pixels * c, false);
        let (out_h, out_w) = (geo.out_h, geo.out_w);
        for ky in 0..kh {
            for kx in 0..kw {
                for (m, oy) in (0..imgs).flat_map(|m| (0..out_h).map(move |oy| (m, oy))) {
                    let src =
                        m * x_img + ((oy * geo.stride_h + ky * geo.dilation_h) * x_cols + kx * geo.dilation_w) * c;
                    let dst = &mut xt[(m * out_h + oy) * out_w * c..(m * out_h + oy + 1) * out_w * c];
                    if geo.stride_w == 1 {
                        dst.copy_from_slice(&xs[src..src + out_w * c]);
                    } else {
                        for (ox, d) in dst.chunks_exact_mut(c).enumerate() {
                            let s = src + ox * geo.stride_w * c;
                            d.copy_from_slice(&xs[s..s + c]);
                        }
                    }
                }
                let tap = ky * kw + kx;
                product(&xt, &mut part[tap * co * c..(tap + 1) * co * c]);
            }
        }
    });
    let sum_into =
        |out: &mut [f32], offset: usize| crate::elementwise::sum_partials(out, &partials, plen, chunks, offset);
    if let Some(db) = db {
        sum_into(db, wlen);
    }
    if let Some(dw) = dw {
        sum_into(dw, 0);
        if mode == WeightGrad::Channels {
            let mut t = scratch::take(wlen, false);
            t.copy_from_slice(dw);
            for tap in 0..ntaps {
                for o in 0..co {
                    for ci in 0..c {
                        dw[(tap * c + ci) * co + o] = t[(tap * co + o) * c + ci];
                    }
                }
            }
        }
    }
}

/// The patches (`[out_pixels, kh * kw * c]`) of a padded NHWC image with
/// `cols` pixels per row: each `(pixel, ky)` is one run of `kw * c` values when
/// `dilation_w == 1`.
fn patches_from_padded(geo: &ConvGeometry, xp: &[f32], cols: usize, col: &mut [f32]) {
    let c = geo.in_c;
    let k = geo.patch_len();
    let run = geo.kernel_w * c;
    for oy in 0..geo.out_h {
        for ox in 0..geo.out_w {
            let dst = &mut col[(oy * geo.out_w + ox) * k..(oy * geo.out_w + ox + 1) * k];
            for ky in 0..geo.kernel_h {
                let py = oy * geo.stride_h + ky * geo.dilation_h;
                if geo.dilation_w == 1 {
                    let s = (py * cols + ox * geo.stride_w) * c;
                    let (d, src) = (&mut dst[ky * run..(ky + 1) * run], &xp[s..s + run]);
                    if run < 16 {
                        for (d, s) in d.iter_mut().zip(src) {
                            *d = *s;
                        }
                    } else {
                        d.copy_from_slice(src);
                    }
                } else {
                    for kx in 0..geo.kernel_w {
                        let s = (py * cols + ox * geo.stride_w + kx * geo.dilation_w) * c;
                        dst[(ky * geo.kernel_w + kx) * c..(ky * geo.kernel_w + kx + 1) * c]
                            .copy_from_slice(&xp[s..s + c]);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::conv::{self, ConvAct, ConvGeometry};

    #[allow(clippy::too_many_arguments)]
    fn geometry(
        n: usize,
        h: usize,
        w: usize,
        c: usize,
        co: usize,
        k: (usize, usize),
        s: (usize, usize),
        d: (usize, usize),
        pad: (usize, usize),
    ) -> ConvGeometry {
        ConvGeometry::new(n, (h, w, c), (k.0, k.1, co), s, d, (pad.0, pad.0, pad.1, pad.1))
    }

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.0 - 1.0).collect()
    }

    fn close(a: &[f32], b: &[f32], what: &str) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{what}[{i}]: {x} vs {y}");
        }
    }

    #[test]
    fn matches_reference_on_ragged_geometries() {
        let cases = [
            geometry(2, 7, 9, 1, 5, (3, 3), (1, 1), (1, 1), (1, 1)),
            geometry(3, 28, 28, 1, 32, (5, 5), (1, 1), (1, 1), (2, 2)),
            geometry(9, 14, 14, 32, 64, (5, 5), (1, 1), (1, 1), (2, 2)),
            geometry(2, 11, 17, 19, 37, (3, 2), (1, 1), (1, 1), (1, 0)),
            geometry(2, 10, 13, 33, 17, (3, 3), (2, 1), (1, 2), (2, 2)),
            geometry(2, 9, 31, 16, 67, (1, 1), (1, 1), (1, 1), (0, 0)),
            geometry(1, 9, 9, 20, 8, (3, 3), (2, 2), (1, 1), (1, 1)),
            // few input channels: runs of kw * c split across tiles, and the dilated patch path
            geometry(2, 12, 12, 3, 16, (5, 5), (1, 1), (1, 1), (2, 2)),
            geometry(2, 9, 10, 3, 20, (3, 3), (1, 1), (1, 2), (1, 2)),
            geometry(17, 6, 5, 2, 33, (2, 3), (2, 1), (1, 1), (0, 1)),
        ];
        for geo in cases {
            let x = values(geo.input_len(), 1);
            let w = values(geo.weight_len(), 2);
            let b = values(geo.out_c, 3);
            let dy = values(geo.output_len(), 4);
            let mut want = vec![0.0; geo.output_len()];
            conv::conv2d_forward_reference(&geo, &x, &w, Some(&b), &mut want);
            let mut got = vec![f32::NAN; geo.output_len()];
            conv::conv2d_forward_act(&geo, &x, &w, Some(&b), ConvAct::Identity, &mut got);
            close(&got, &want, &format!("{geo:?} forward"));
            conv::conv2d_forward_act(&geo, &x, &w, Some(&b), ConvAct::Relu, &mut got);
            let relu: Vec<f32> = want.iter().map(|v| v.max(0.0)).collect();
            close(&got, &relu, &format!("{geo:?} forward relu"));
            assert_eq!(conv::conv2d_forward_vec(&geo, &x, &w, Some(&b), ConvAct::Relu), got, "{geo:?} forward vec");

            let (dx_want, dw_want) = conv::conv2d_backward_reference(&geo, &x, &w, &dy);
            let mut dx = vec![f32::NAN; geo.input_len()];
            let mut dw = vec![f32::NAN; geo.weight_len()];
            let mut db = vec![f32::NAN; geo.out_c];
            conv::conv2d_backward(
                &geo,
                &x,
                &w,
                &dy,
                ConvAct::Identity,
                None,
                Some(&mut dx),
                Some(&mut dw),
                Some(&mut db),
            );
            close(&dx, &dx_want, &format!("{geo:?} dx"));
            close(&dw, &dw_want, &format!("{geo:?} dw"));
            close(&db, &conv::bias_grad(&dy, geo.out_c), &format!("{geo:?} db"));

            // relu: the gradient is masked by y > 0 before both products
            let masked: Vec<f32> = dy.iter().zip(&got).map(|(g, y)| if *y > 0.0 { *g } else { 0.0 }).collect();
            let (dx_want, dw_want) = conv::conv2d_backward_reference(&geo, &x, &w, &masked);
            conv::conv2d_backward(&geo, &x, &w, &dy, ConvAct::Relu, Some(&got), Some(&mut dx), Some(&mut dw), None);
            close(&dx, &dx_want, &format!("{geo:?} relu dx"));
            close(&dw, &dw_want, &format!("{geo:?} relu dw"));
        }
    }

    #[test]
    fn weight_gradient_is_deterministic_across_thread_counts() {
        let geo = geometry(20, 14, 14, 32, 64, (5, 5), (1, 1), (1, 1), (2, 2));
        let x = values(geo.input_len(), 5);
        let dy = values(geo.output_len(), 6);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut dw = vec![0.0; geo.weight_len()];
            pool.install(|| conv::conv2d_backward_weight(&geo, &x, &dy, &mut dw));
            dw
        };
        let one = run(1);
        assert_eq!(one, run(2));
        assert_eq!(one, run(3));
    }
}
