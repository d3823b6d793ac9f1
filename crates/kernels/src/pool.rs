//! Max and average pooling over NHWC activations.

use rayon::prelude::*;

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
    let mut argmax = vec![0u32; geo.output_len()];
    max_pool_forward(geo, x, y, &mut argmax);
}
