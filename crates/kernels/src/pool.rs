//! Max and average pooling over NHWC activations, and global average pooling.

use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Sizes of a pooling window pass, already validated by the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeometry {
    pub batch: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub channels: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub pad_top: usize,
    pub pad_left: usize,
}

impl PoolGeometry {
    pub fn input_len(&self) -> usize {
        self.batch * self.in_h * self.in_w * self.channels
    }
    pub fn output_len(&self) -> usize {
        self.batch * self.out_h * self.out_w * self.channels
    }
    /// A 2x2 window with stride 2, no padding, tiling the input exactly.
    fn is_tiling_2x2(&self) -> bool {
        self.kernel_h == 2
            && self.kernel_w == 2
            && self.stride_h == 2
            && self.stride_w == 2
            && self.pad_top == 0
            && self.pad_left == 0
            && self.in_h == 2 * self.out_h
            && self.in_w == 2 * self.out_w
    }
    /// Input rows and columns covered by output pixel (oy, ox), clipped to the
    /// image, plus the unclipped window size clipped only to the padded image
    /// (PyTorch's divisor with `count_include_pad`).
    fn window(&self, oy: usize, ox: usize) -> (std::ops::Range<usize>, std::ops::Range<usize>, usize) {
        let y0 = (oy * self.stride_h) as isize - self.pad_top as isize;
        let x0 = (ox * self.stride_w) as isize - self.pad_left as isize;
        let y1 = y0 + self.kernel_h as isize;
        let x1 = x0 + self.kernel_w as isize;
        // the padded image ends `pad` past the input (symmetric padding, as in
        // PyTorch); ceil_mode windows running past it are clipped there
        let ph = (self.in_h + self.pad_top) as isize;
        let pw = (self.in_w + self.pad_left) as isize;
        let padded = ((y1.min(ph) - y0) * (x1.min(pw) - x0)) as usize;
        let ys = y0.max(0) as usize..(y1.min(self.in_h as isize)).max(0) as usize;
        let xs = x0.max(0) as usize..(x1.min(self.in_w as isize)).max(0) as usize;
        (ys, xs, padded)
    }
}

/// Max pooling: writes `y` and, for the backward pass, the flat input index of
/// each maximum in `argmax` (first maximum wins, as in PyTorch). Windows that
/// see no input (possible only with extreme padding) give `-inf`-free zero.
pub fn max_pool_forward(geo: &PoolGeometry, x: &[f32], y: &mut [f32], argmax: &mut [u32]) {
    assert_eq!(x.len(), geo.input_len());
    assert_eq!(y.len(), geo.output_len());
    assert_eq!(argmax.len(), geo.output_len());
    let c = geo.channels;
    let img_in = geo.in_h * geo.in_w * c;
    let img_out = geo.out_h * geo.out_w * c;
    y.par_chunks_mut(img_out).zip(argmax.par_chunks_mut(img_out)).enumerate().for_each(|(b, (yi, ai))| {
        let base = b * img_in;
        let xi = &x[base..base + img_in];
        for oy in 0..geo.out_h {
            for ox in 0..geo.out_w {
                let (ys, xs, _) = geo.window(oy, ox);
                let o = (oy * geo.out_w + ox) * c;
                let yo = &mut yi[o..o + c];
                let ao = &mut ai[o..o + c];
                yo.fill(f32::NEG_INFINITY);
                ao.fill(u32::MAX);
                for iy in ys.clone() {
                    for ix in xs.clone() {
                        let p = (iy * geo.in_w + ix) * c;
                        for ch in 0..c {
                            let v = xi[p + ch];
                            if v > yo[ch] || ao[ch] == u32::MAX {
                                yo[ch] = v;
                                ao[ch] = (base + p + ch) as u32;
                            }
                        }
                    }
                }
                for (v, a) in yo.iter_mut().zip(ao.iter()) {
                    if *a == u32::MAX {
                        *v = 0.0;
                    }
                }
            }
        }
    });
}

/// Routes each output gradient to its window's maximum. `dx` is overwritten.
pub fn max_pool_backward(geo: &PoolGeometry, dy: &[f32], argmax: &[u32], dx: &mut [f32]) {
    assert_eq!(dx.len(), geo.input_len());
    assert_eq!(dy.len(), geo.output_len());
    let img_in = geo.in_h * geo.in_w * geo.channels;
    let img_out = geo.out_h * geo.out_w * geo.channels;
    dx.par_chunks_mut(img_in).enumerate().for_each(|(b, dxi)| {
        dxi.fill(0.0);
        let base = b * img_in;
        for (g, &a) in dy[b * img_out..(b + 1) * img_out].iter().zip(&argmax[b * img_out..(b + 1) * img_out]) {
            if a != u32::MAX {
                dxi[a as usize - base] += *g;
            }
        }
    });
}

/// Average pooling. The divisor is the window's size inside the padded image
/// when `count_include_pad`, else the number of real input pixels it covers.
pub fn avg_pool_forward(geo: &PoolGeometry, x: &[f32], y: &mut [f32], count_include_pad: bool) {
    assert_eq!(x.len(), geo.input_len());
    assert_eq!(y.len(), geo.output_len());
    let c = geo.channels;
    let img_in = geo.in_h * geo.in_w * c;
    let img_out = geo.out_h * geo.out_w * c;
    y.par_chunks_mut(img_out).enumerate().for_each(|(b, yi)| {
        let xi = &x[b * img_in..(b + 1) * img_in];
        for oy in 0..geo.out_h {
            for ox in 0..geo.out_w {
                let (ys, xs, padded) = geo.window(oy, ox);
                let count = if count_include_pad { padded } else { ys.len() * xs.len() };
                let o = (oy * geo.out_w + ox) * c;
                let yo = &mut yi[o..o + c];
                yo.fill(0.0);
                for iy in ys.clone() {
                    for ix in xs.clone() {
                        let p = (iy * geo.in_w + ix) * c;
                        for (v, s) in yo.iter_mut().zip(&xi[p..p + c]) {
                            *v += *s;
                        }
                    }
                }
                let inv = if count > 0 { 1.0 / count as f32 } else { 0.0 };
                yo.iter_mut().for_each(|v| *v *= inv);
            }
        }
    });
}

/// Spreads each output gradient evenly over its window. `dx` is overwritten.
pub fn avg_pool_backward(geo: &PoolGeometry, dy: &[f32], dx: &mut [f32], count_include_pad: bool) {
    assert_eq!(dx.len(), geo.input_len());
    assert_eq!(dy.len(), geo.output_len());
    let c = geo.channels;
    let img_in = geo.in_h * geo.in_w * c;
    let img_out = geo.out_h * geo.out_w * c;
    dx.par_chunks_mut(img_in).enumerate().for_each(|(b, dxi)| {
        dxi.fill(0.0);
        let dyi = &dy[b * img_out..(b + 1) * img_out];
        for oy in 0..geo.out_h {
            for ox in 0..geo.out_w {
                let (ys, xs, padded) = geo.window(oy, ox);
                let count = if count_include_pad { padded } else { ys.len() * xs.len() };
                if count == 0 {
                    continue;
                }
                let inv = 1.0 / count as f32;
                let o = (oy * geo.out_w + ox) * c;
                for iy in ys.clone() {
                    for ix in xs.clone() {
                        let p = (iy * geo.in_w + ix) * c;
                        for (d, g) in dxi[p..p + c].iter_mut().zip(&dyi[o..o + c]) {
                            *d += *g * inv;
                        }
                    }
                }
            }
        }
    });
}

/// Max pooling without recording where the maxima were (inference).
pub fn max_pool_forward_inference(geo: &PoolGeometry, x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), geo.input_len());
    assert_eq!(y.len(), geo.output_len());
    max_pool_pass(geo, x, y, None);
}

/// Marks a window that saw no input in the compact index of [`max_pool_forward_compact`].
pub const NO_INPUT: u8 = u8::MAX;

/// Whether the compact (one byte per output) max-pool index can describe
/// this geometry's windows: at most 255 positions per window.
pub fn compact_index_fits(geo: &PoolGeometry) -> bool {
    geo.kernel_h * geo.kernel_w < NO_INPUT as usize
}

/// Max pooling that records, for the backward pass, the position of each
/// maximum inside its window (`ky * kernel_w + kx`, first maximum wins, as in
/// PyTorch) in one byte: a quarter of the memory of [`max_pool_forward`]'s
/// flat indices. Windows that see no input give 0 and [`NO_INPUT`].
///
/// Panics unless [`compact_index_fits`].
pub fn max_pool_forward_compact(geo: &PoolGeometry, x: &[f32], y: &mut [f32], index: &mut [u8]) {
    assert!(compact_index_fits(geo), "max pool: window too large for a compact index");
    assert_eq!(x.len(), geo.input_len());
    assert_eq!(y.len(), geo.output_len());
    assert_eq!(index.len(), geo.output_len());
    max_pool_pass(geo, x, y, Some(index));
}

/// Routes each output gradient to its window's maximum recorded by
/// [`max_pool_forward_compact`]. `dx` is overwritten.
pub fn max_pool_backward_compact(geo: &PoolGeometry, dy: &[f32], index: &[u8], dx: &mut [f32]) {
    assert!(compact_index_fits(geo), "max pool: window too large for a compact index");
    assert_eq!(dx.len(), geo.input_len());
    assert_eq!(dy.len(), geo.output_len());
    assert_eq!(index.len(), geo.output_len());
    let c = geo.channels;
    let img_in = geo.in_h * geo.in_w * c;
    let img_out = geo.out_h * geo.out_w * c;
    if img_in == 0 {
        return;
    }
    if geo.is_tiling_2x2() {
        // every input pixel lies in exactly one window: write each once
        dx.par_chunks_mut(img_in).enumerate().for_each(|(b, dxi)| {
            let (dyi, ii) = (&dy[b * img_out..(b + 1) * img_out], &index[b * img_out..(b + 1) * img_out]);
            let row = geo.in_w * c;
            for oy in 0..geo.out_h {
                let (top, bottom) = dxi[2 * oy * row..(2 * oy + 2) * row].split_at_mut(row);
                for ox in 0..geo.out_w {
                    let o = (oy * geo.out_w + ox) * c;
                    let (g, id) = (&dyi[o..o + c], &ii[o..o + c]);
                    let p = 2 * ox * c;
                    let (t0, t1) = top[p..p + 2 * c].split_at_mut(c);
                    let (b0, b1) = bottom[p..p + 2 * c].split_at_mut(c);
                    #[cfg(target_arch = "x86_64")]
                    if crate::x86::available() {
                        let dst = [t0.as_mut_ptr(), t1.as_mut_ptr(), b0.as_mut_ptr(), b1.as_mut_ptr()];
                        // SAFETY: avx512f checked; g, id and the four
                        // destinations are slices of exactly c elements.
                        unsafe { crate::x86::max_pool_2x2_backward(g.as_ptr(), id.as_ptr(), c, dst) };
                        continue;
                    }
                    for ch in 0..c {
                        let (v, i) = (g[ch], id[ch]);
                        t0[ch] = if i == 0 { v } else { 0.0 };
                        t1[ch] = if i == 1 { v } else { 0.0 };
                        b0[ch] = if i == 2 { v } else { 0.0 };
                        b1[ch] = if i == 3 { v } else { 0.0 };
                    }
                }
            }
        });
        return;
    }
    dx.par_chunks_mut(img_in).enumerate().for_each(|(b, dxi)| {
        dxi.fill(0.0);
        let (dyi, ii) = (&dy[b * img_out..(b + 1) * img_out], &index[b * img_out..(b + 1) * img_out]);
        for oy in 0..geo.out_h {
            for ox in 0..geo.out_w {
                let (ys, xs, _) = geo.window(oy, ox);
                let o = (oy * geo.out_w + ox) * c;
                for ch in 0..c {
                    let i = ii[o + ch];
                    if i == NO_INPUT {
                        continue;
                    }
                    let (wy, wx) = (i as usize / geo.kernel_w, i as usize % geo.kernel_w);
                    // the window's first row and column (before clipping)
                    let y0 = (oy * geo.stride_h) as isize - geo.pad_top as isize;
                    let x0 = (ox * geo.stride_w) as isize - geo.pad_left as isize;
                    let (iy, ix) = ((y0 + wy as isize) as usize, (x0 + wx as isize) as usize);
                    debug_assert!(ys.contains(&iy) && xs.contains(&ix));
                    dxi[(iy * geo.in_w + ix) * c + ch] += dyi[o + ch];
                }
            }
        }
    });
}

/// As [`max_pool_forward_compact`] (`index: Some`) or
/// [`max_pool_forward_inference`] (`None`) into new vectors: `(y, index)`,
/// the index empty for inference. The AVX-512 2x2 path fills them without
/// zeroing them first.
pub fn max_pool_forward_vec(geo: &PoolGeometry, x: &[f32], with_index: bool) -> (Vec<f32>, Vec<u8>) {
    assert_eq!(x.len(), geo.input_len());
    assert!(!with_index || compact_index_fits(geo), "max pool: window too large for a compact index");
    let n = geo.output_len();
    #[cfg(target_arch = "x86_64")]
    if geo.is_tiling_2x2() && crate::x86::available() && n > 0 {
        let c = geo.channels;
        let (img_in, img_out) = (geo.in_h * geo.in_w * c, geo.out_h * geo.out_w * c);
        let row = geo.in_w * c;
        let run = |yi: &mut [MaybeUninit<f32>], mut ii: Option<&mut [MaybeUninit<u8>]>, b: usize| {
            let xi = &x[b * img_in..(b + 1) * img_in];
            for oy in 0..geo.out_h {
                for ox in 0..geo.out_w {
                    let p = 2 * oy * row + 2 * ox * c;
                    let src = [
                        &xi[p..p + c],
                        &xi[p + c..p + 2 * c],
                        &xi[p + row..p + row + c],
                        &xi[p + row + c..p + row + 2 * c],
                    ];
                    let o = (oy * geo.out_w + ox) * c;
                    let yo = &mut yi[o..o + c];
                    let idx =
                        ii.as_deref_mut().map_or(std::ptr::null_mut(), |ii| ii[o..o + c].as_mut_ptr().cast::<u8>());
                    // SAFETY: avx512f checked; the four sources are c floats,
                    // yo c (uninitialised) floats and idx, if any, c bytes,
                    // all written.
                    unsafe { crate::x86::max_pool_2x2(src.map(|s| s.as_ptr()), c, yo.as_mut_ptr().cast::<f32>(), idx) };
                }
            }
        };
        // SAFETY (both): the 2x2 tiling covers every output pixel, and
        // max_pool_2x2 writes all c channels of each (and its index).
        let mut index = Vec::new();
        let y = unsafe {
            crate::alloc::filled_vec(n, |y| {
                if with_index {
                    index = crate::alloc::filled_vec(n, |ii| {
                        y.par_chunks_mut(img_out)
                            .zip(ii.par_chunks_mut(img_out))
                            .enumerate()
                            .for_each(|(b, (yi, ii))| run(yi, Some(ii), b));
                    });
                } else {
                    y.par_chunks_mut(img_out).enumerate().for_each(|(b, yi)| run(yi, None, b));
                }
            })
        };
        return (y, index);
    }
    let mut y = vec![0.0; n];
    if with_index {
        let mut index = vec![0u8; n];
        max_pool_forward_compact(geo, x, &mut y, &mut index);
        (y, index)
    } else {
        max_pool_forward_inference(geo, x, &mut y);
        (y, Vec::new())
    }
}

/// As [`max_pool_backward_compact`] into a new vector, which the AVX-512 2x2
/// path fills without zeroing it first.
pub fn max_pool_backward_compact_vec(geo: &PoolGeometry, dy: &[f32], index: &[u8]) -> Vec<f32> {
    assert!(compact_index_fits(geo), "max pool: window too large for a compact index");
    assert_eq!(dy.len(), geo.output_len());
    assert_eq!(index.len(), geo.output_len());
    let n = geo.input_len();
    #[cfg(target_arch = "x86_64")]
    if geo.is_tiling_2x2() && crate::x86::available() && n > 0 {
        let c = geo.channels;
        let (img_in, img_out) = (geo.in_h * geo.in_w * c, geo.out_h * geo.out_w * c);
        let row = geo.in_w * c;
        // SAFETY: every input pixel lies in exactly one 2x2 window, and
        // max_pool_2x2_backward writes all c channels of its four pixels.
        return unsafe {
            crate::alloc::filled_vec(n, |dx: &mut [MaybeUninit<f32>]| {
                dx.par_chunks_mut(img_in).enumerate().for_each(|(b, dxi)| {
                    let (g, ii) = (&dy[b * img_out..(b + 1) * img_out], &index[b * img_out..(b + 1) * img_out]);
                    for oy in 0..geo.out_h {
                        for ox in 0..geo.out_w {
                            let o = (oy * geo.out_w + ox) * c;
                            let p = 2 * oy * row + 2 * ox * c;
                            assert!(p + row + 2 * c <= dxi.len());
                            let d = dxi.as_mut_ptr().cast::<f32>();
                            // SAFETY: avx512f checked; g and ii hold c values
                            // at o, and the four destinations (c floats each)
                            // lie inside this image's slice (asserted).
                            crate::x86::max_pool_2x2_backward(
                                g[o..o + c].as_ptr(),
                                ii[o..o + c].as_ptr(),
                                c,
                                [d.add(p), d.add(p + c), d.add(p + row), d.add(p + row + c)],
                            );
                        }
                    }
                });
            })
        };
    }
    let mut dx = vec![0.0; n];
    max_pool_backward_compact(geo, dy, index, &mut dx);
    dx
}

/// Output rows per parallel task of the max-pool forward: about four tasks
/// per thread, none under ~16k comparisons (scheduling costs a few
/// microseconds). Tasks are rows across the batch, not images, so that batch 1
/// (ResNet's stem pool at inference) uses every thread.
fn pool_rows_per_task(rows: usize, row_work: usize) -> usize {
    let min_rows = (1usize << 14).div_ceil(row_work.max(1));
    rows.div_ceil(4 * crate::threads()).max(min_rows).clamp(1, rows.max(1))
}

/// Shared max-pool forward: values into `y` and, when given, compact indices.
fn max_pool_pass(geo: &PoolGeometry, x: &[f32], y: &mut [f32], index: Option<&mut [u8]>) {
    let c = geo.channels;
    let img_in = geo.in_h * geo.in_w * c;
    let row_out = geo.out_w * c;
    if row_out == 0 || geo.out_h == 0 {
        return;
    }
    // output row `r` (numbered across the batch) into `yo`, its indices into `io`
    let row = |r: usize, yo: &mut [f32], mut io: Option<&mut [u8]>| {
        let (b, oy) = (r / geo.out_h, r % geo.out_h);
        let xi = &x[b * img_in..(b + 1) * img_in];
        if geo.is_tiling_2x2() {
            let line = geo.in_w * c;
            let (top, bottom) =
                (&xi[2 * oy * line..(2 * oy + 1) * line], &xi[(2 * oy + 1) * line..(2 * oy + 2) * line]);
            for ox in 0..geo.out_w {
                let (o, p) = (ox * c, 2 * ox * c);
                let (x0, x1, x2, x3) =
                    (&top[p..p + c], &top[p + c..p + 2 * c], &bottom[p..p + c], &bottom[p + c..p + 2 * c]);
                let yp = &mut yo[o..o + c];
                #[cfg(target_arch = "x86_64")]
                if crate::x86::available() {
                    let idx = io.as_deref_mut().map_or(std::ptr::null_mut(), |ii| ii[o..o + c].as_mut_ptr());
                    let src = [x0.as_ptr(), x1.as_ptr(), x2.as_ptr(), x3.as_ptr()];
                    // SAFETY: avx512f checked; the four sources and yp are
                    // slices of exactly c floats, idx (if any) of c bytes.
                    unsafe { crate::x86::max_pool_2x2(src, c, yp.as_mut_ptr(), idx) };
                    continue;
                }
                match io.as_deref_mut() {
                    Some(ii) => {
                        let ip = &mut ii[o..o + c];
                        for ch in 0..c {
                            let (mut m, mut i) = (x0[ch], 0u8);
                            if x1[ch] > m {
                                (m, i) = (x1[ch], 1);
                            }
                            if x2[ch] > m {
                                (m, i) = (x2[ch], 2);
                            }
                            if x3[ch] > m {
                                (m, i) = (x3[ch], 3);
                            }
                            yp[ch] = m;
                            ip[ch] = i;
                        }
                    }
                    None => {
                        for ch in 0..c {
                            let mut m = x0[ch];
                            for v in [x1[ch], x2[ch], x3[ch]] {
                                if v > m {
                                    m = v;
                                }
                            }
                            yp[ch] = m;
                        }
                    }
                }
            }
            return;
        }
        for ox in 0..geo.out_w {
            let (ys, xs, _) = geo.window(oy, ox);
            let y0 = (oy * geo.stride_h) as isize - geo.pad_top as isize;
            let x0 = (ox * geo.stride_w) as isize - geo.pad_left as isize;
            let o = ox * c;
            let yp = &mut yo[o..o + c];
            if ys.is_empty() || xs.is_empty() {
                // a window that sees no input
                yp.fill(0.0);
                if let Some(ii) = io.as_deref_mut() {
                    ii[o..o + c].fill(NO_INPUT);
                }
                continue;
            }
            // the first tap in the window starts the maximum, later ones
            // replace it only when greater (the first maximum wins, as in PyTorch)
            let at = |iy: usize, ix: usize| (iy * geo.in_w + ix) * c;
            let tap =
                |iy: usize, ix: usize| ((iy as isize - y0) as usize * geo.kernel_w + (ix as isize - x0) as usize) as u8;
            let first = at(ys.start, xs.start);
            yp.copy_from_slice(&xi[first..first + c]);
            match io.as_deref_mut() {
                Some(ii) => {
                    let ip = &mut ii[o..o + c];
                    ip.fill(tap(ys.start, xs.start));
                    for iy in ys.clone() {
                        for ix in xs.clone() {
                            let (p, pos) = (at(iy, ix), tap(iy, ix));
                            for ((m, i), v) in yp.iter_mut().zip(ip.iter_mut()).zip(&xi[p..p + c]) {
                                if *v > *m {
                                    (*m, *i) = (*v, pos);
                                }
                            }
                        }
                    }
                }
                None => {
                    // without indices the loop is a vector max
                    for iy in ys.clone() {
                        for ix in xs.clone() {
                            let p = at(iy, ix);
                            for (m, v) in yp.iter_mut().zip(&xi[p..p + c]) {
                                if *v > *m {
                                    *m = *v;
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    let rows = geo.batch * geo.out_h;
    let per = pool_rows_per_task(rows, row_out * geo.kernel_h * geo.kernel_w);
    match index {
        Some(index) => y.par_chunks_mut(per * row_out).zip(index.par_chunks_mut(per * row_out)).enumerate().for_each(
            |(t, (yc, ic))| {
                for (i, (yo, io)) in yc.chunks_mut(row_out).zip(ic.chunks_mut(row_out)).enumerate() {
                    row(t * per + i, yo, Some(io));
                }
            },
        ),
        None => y.par_chunks_mut(per * row_out).enumerate().for_each(|(t, yc)| {
            for (i, yo) in yc.chunks_mut(row_out).enumerate() {
                row(t * per + i, yo, None);
            }
        }),
    }
}

/// Mean over the pixels of each image: `x: [n, pixels, c] -> [n, c]`
/// (global average pooling, squeeze-excitation's squeeze).
///
/// Tasks are (image, block of channels), each summing its channels over the
/// pixels in order: batch 1 splits its channels across threads, and the result
/// is the same for any thread count (and equal to the plain loop's).
///
/// The sums are kept in f64: a squeeze-excitation's gate multiplies the error of
/// this mean into every later block, and an f32 running sum over a 56x56 map
/// made RegNetY-4.0GF's logits 3.5x and legacy SE-ResNet-50's 10x further from
/// timm's float64 reference than PyTorch's own float32 (which sums pairwise).
pub fn global_avg_pool(x: &[f32], batch: usize, pixels: usize, channels: usize) -> Vec<f32> {
    assert_eq!(x.len(), batch * pixels * channels, "global_avg_pool: input length");
    let mut y = vec![0.0f32; batch * channels];
    if batch == 0 || pixels == 0 || channels == 0 {
        return y;
    }
    let inv = 1.0 / pixels as f64;
    // blocks of whole cache lines, about four tasks per thread
    let per_image = (4 * crate::threads()).div_ceil(batch).clamp(1, channels.div_ceil(16));
    let block = channels.div_ceil(per_image).next_multiple_of(16).min(channels);
    y.par_chunks_mut(channels).enumerate().for_each(|(n, yn)| {
        let img = &x[n * pixels * channels..(n + 1) * pixels * channels];
        yn.par_chunks_mut(block).enumerate().for_each(|(b, acc)| {
            let (c0, len) = (b * block, acc.len());
            crate::elementwise::vectorised(|| {
                let mut sum = vec![0.0f64; len];
                for px in img.chunks_exact(channels) {
                    for (a, v) in sum.iter_mut().zip(&px[c0..c0 + len]) {
                        *a += f64::from(*v);
                    }
                }
                for (a, s) in acc.iter_mut().zip(&sum) {
                    *a = (s * inv) as f32;
                }
            })
        });
    });
    y
}

#[cfg(test)]
mod compact_tests {
    use super::*;

    #[test]
    fn global_mean_does_not_drift_over_many_pixels() {
        // an f32 running sum of 0.1 over 200k pixels drifts by about 1%
        let (pixels, channels) = (200_000, 3);
        let x = vec![0.1f32; pixels * channels];
        let y = global_avg_pool(&x, 1, pixels, channels);
        for v in y {
            assert!((v - 0.1).abs() <= 1e-7, "{v}");
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn geometry(
        n: usize,
        h: usize,
        w: usize,
        c: usize,
        k: usize,
        s: usize,
        pad: usize,
        out: (usize, usize),
    ) -> PoolGeometry {
        PoolGeometry {
            batch: n,
            in_h: h,
            in_w: w,
            channels: c,
            out_h: out.0,
            out_w: out.1,
            kernel_h: k,
            kernel_w: k,
            stride_h: s,
            stride_w: s,
            pad_top: pad,
            pad_left: pad,
        }
    }

    #[test]
    fn compact_index_matches_flat_index() {
        for geo in [
            geometry(3, 28, 28, 32, 2, 2, 0, (14, 14)),
            geometry(2, 6, 8, 17, 2, 2, 0, (3, 4)),
            geometry(2, 7, 7, 5, 2, 2, 0, (3, 3)),
            geometry(2, 9, 8, 3, 3, 2, 1, (5, 4)),
            geometry(1, 6, 6, 17, 3, 1, 1, (6, 6)),
        ] {
            // ties on purpose: values repeat so "first maximum wins" is exercised
            let x: Vec<f32> = (0..geo.input_len()).map(|i| ((i * 37 % 11) as f32 - 5.0) / 3.0).collect();
            let dy: Vec<f32> = (0..geo.output_len()).map(|i| (i % 7) as f32 - 3.0).collect();
            let (mut y1, mut y2, mut y3) =
                (vec![0.0; geo.output_len()], vec![0.0; geo.output_len()], vec![0.0; geo.output_len()]);
            let mut flat = vec![0u32; geo.output_len()];
            let mut compact = vec![0u8; geo.output_len()];
            max_pool_forward(&geo, &x, &mut y1, &mut flat);
            max_pool_forward_compact(&geo, &x, &mut y2, &mut compact);
            max_pool_forward_inference(&geo, &x, &mut y3);
            assert_eq!(y1, y2, "{geo:?}");
            assert_eq!(y1, y3, "{geo:?}");
            let (mut dx1, mut dx2) = (vec![9.0; geo.input_len()], vec![9.0; geo.input_len()]);
            max_pool_backward(&geo, &dy, &flat, &mut dx1);
            max_pool_backward_compact(&geo, &dy, &compact, &mut dx2);
            assert_eq!(dx1, dx2, "{geo:?}");
            // the allocating forms (uninitialised fill on the 2x2 path)
            assert_eq!(max_pool_forward_vec(&geo, &x, true), (y1.clone(), compact.clone()), "{geo:?}");
            assert_eq!(max_pool_forward_vec(&geo, &x, false), (y1.clone(), Vec::new()), "{geo:?}");
            assert_eq!(max_pool_backward_compact_vec(&geo, &dy, &compact), dx1, "{geo:?}");
        }
    }
}
