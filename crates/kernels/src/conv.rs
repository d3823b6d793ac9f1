//! 2-D convolution on NHWC activations with `[kh, kw, in/groups, out]` (HWIO)
//! weights, as im2col + GEMM. HWIO is the layout whose `[kh*kw*cin, cout]`
//! matrix view multiplies an NHWC im2col buffer directly, so no weight copy
//! is needed per step.

use crate::gemm::{MatMut, MatRef, sgemm};
use rayon::prelude::*;

/// Every size a convolution needs, already validated by the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub batch: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub in_c: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub out_c: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub dilation_h: usize,
    pub dilation_w: usize,
    pub pad_top: usize,
    pub pad_left: usize,
    pub groups: usize,
}

impl ConvGeometry {
    /// Input channels per group.
    pub fn group_in(&self) -> usize {
        self.in_c / self.groups
    }
    /// Output channels per group.
    pub fn group_out(&self) -> usize {
        self.out_c / self.groups
    }
    /// Columns of the im2col matrix of one group: `kh * kw * cin/groups`.
    pub fn patch_len(&self) -> usize {
        self.kernel_h * self.kernel_w * self.group_in()
    }
    /// Output pixels per image.
    pub fn out_pixels(&self) -> usize {
        self.out_h * self.out_w
    }
    pub fn input_len(&self) -> usize {
        self.batch * self.in_h * self.in_w * self.in_c
    }
    pub fn output_len(&self) -> usize {
        self.batch * self.out_h * self.out_w * self.out_c
    }
    pub fn weight_len(&self) -> usize {
        self.kernel_h * self.kernel_w * self.group_in() * self.out_c
    }
    /// True when the im2col matrix is the input itself (1x1, stride 1, no padding, one group).
    fn is_pointwise(&self) -> bool {
        self.kernel_h == 1
            && self.kernel_w == 1
            && self.stride_h == 1
            && self.stride_w == 1
            && self.pad_top == 0
            && self.pad_left == 0
            && self.groups == 1
            && self.out_h == self.in_h
            && self.out_w == self.in_w
    }
    fn check(&self, x: usize, w: usize, y: usize) {
        assert!(self.groups > 0 && self.in_c % self.groups == 0 && self.out_c % self.groups == 0);
        assert_eq!(x, self.input_len(), "conv: input length");
        assert_eq!(w, self.weight_len(), "conv: weight length");
        assert_eq!(y, self.output_len(), "conv: output length");
    }
}

/// Fills `col` (`[batch*oh*ow, patch_len]`, row-major) with the patches of group `g`.
fn im2col(geo: &ConvGeometry, x: &[f32], group: usize, col: &mut [f32]) {
    let cg = geo.group_in();
    let k = geo.patch_len();
    let c0 = group * cg;
    let rows_per_image = geo.out_pixels();
    col.par_chunks_mut(rows_per_image * k).enumerate().for_each(|(b, col_img)| {
        let img = &x[b * geo.in_h * geo.in_w * geo.in_c..(b + 1) * geo.in_h * geo.in_w * geo.in_c];
        for oy in 0..geo.out_h {
            for ox in 0..geo.out_w {
                let row = &mut col_img[(oy * geo.out_w + ox) * k..(oy * geo.out_w + ox + 1) * k];
                let mut p = 0;
                for ky in 0..geo.kernel_h {
                    let iy = (oy * geo.stride_h + ky * geo.dilation_h) as isize - geo.pad_top as isize;
                    for kx in 0..geo.kernel_w {
                        let ix = (ox * geo.stride_w + kx * geo.dilation_w) as isize - geo.pad_left as isize;
                        let dst = &mut row[p..p + cg];
                        if iy >= 0 && (iy as usize) < geo.in_h && ix >= 0 && (ix as usize) < geo.in_w {
                            let base = ((iy as usize) * geo.in_w + ix as usize) * geo.in_c + c0;
                            dst.copy_from_slice(&img[base..base + cg]);
                        } else {
                            dst.fill(0.0);
                        }
                        p += cg;
                    }
                }
            }
        }
    });
}

/// Scatters-adds `col` (layout as [`im2col`]) back into `dx` for group `g`.
fn col2im(geo: &ConvGeometry, col: &[f32], group: usize, dx: &mut [f32]) {
    let cg = geo.group_in();
    let k = geo.patch_len();
    let c0 = group * cg;
    let rows_per_image = geo.out_pixels();
    let img_len = geo.in_h * geo.in_w * geo.in_c;
    dx.par_chunks_mut(img_len).enumerate().for_each(|(b, img)| {
        let col_img = &col[b * rows_per_image * k..(b + 1) * rows_per_image * k];
        for oy in 0..geo.out_h {
            for ox in 0..geo.out_w {
                let row = &col_img[(oy * geo.out_w + ox) * k..(oy * geo.out_w + ox + 1) * k];
                let mut p = 0;
                for ky in 0..geo.kernel_h {
                    let iy = (oy * geo.stride_h + ky * geo.dilation_h) as isize - geo.pad_top as isize;
                    for kx in 0..geo.kernel_w {
                        let ix = (ox * geo.stride_w + kx * geo.dilation_w) as isize - geo.pad_left as isize;
                        if iy >= 0 && (iy as usize) < geo.in_h && ix >= 0 && (ix as usize) < geo.in_w {
                            let base = ((iy as usize) * geo.in_w + ix as usize) * geo.in_c + c0;
                            for (d, s) in img[base..base + cg].iter_mut().zip(&row[p..p + cg]) {
                                *d += *s;
                            }
                        }
                        p += cg;
                    }
                }
            }
        }
    });
}

/// `y = conv(x, w) (+ bias)`. `y` is overwritten.
pub fn conv2d_forward(geo: &ConvGeometry, x: &[f32], w: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    geo.check(x.len(), w.len(), y.len());
    let m = geo.batch * geo.out_pixels();
    let k = geo.patch_len();
    let og = geo.group_out();
    let mut col = Vec::new();
    for g in 0..geo.groups {
        let a = if geo.is_pointwise() {
            MatRef::row_major(x, m, k)
        } else {
            col.resize(m * k, 0.0);
            im2col(geo, x, g, &mut col);
            MatRef::row_major(&col, m, k)
        };
        let b = MatRef { data: &w[g * og..], rows: k, cols: og, row_stride: geo.out_c, col_stride: 1 };
        let c = MatMut { data: &mut y[g * og..], rows: m, cols: og, row_stride: geo.out_c, col_stride: 1 };
        sgemm(a, b, c, false);
    }
    if let Some(bias) = bias {
        assert_eq!(bias.len(), geo.out_c);
        y.par_chunks_mut(geo.out_c * 64).for_each(|rows| {
            for row in rows.chunks_exact_mut(geo.out_c) {
                for (v, b) in row.iter_mut().zip(bias) {
                    *v += *b;
                }
            }
        });
    }
}

/// `dx = conv_transpose(dy, w)`: the gradient with respect to the input. `dx` is overwritten.
pub fn conv2d_backward_input(geo: &ConvGeometry, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    geo.check(dx.len(), w.len(), dy.len());
    let m = geo.batch * geo.out_pixels();
    let k = geo.patch_len();
    let og = geo.group_out();
    if geo.is_pointwise() {
        let a = MatRef::row_major(dy, m, og);
        let b = MatRef { data: w, rows: k, cols: og, row_stride: geo.out_c, col_stride: 1 }.t();
        sgemm(a, b, MatMut::row_major(dx, m, k), false);
        return;
    }
    dx.fill(0.0);
    let mut col = vec![0.0; m * k];
    for g in 0..geo.groups {
        let a = MatRef { data: &dy[g * og..], rows: m, cols: og, row_stride: geo.out_c, col_stride: 1 };
        let b = MatRef { data: &w[g * og..], rows: k, cols: og, row_stride: geo.out_c, col_stride: 1 }.t();
        sgemm(a, b, MatMut::row_major(&mut col, m, k), false);
        col2im(geo, &col, g, dx);
    }
}

/// `dw = im2col(x)^T @ dy`: the gradient with respect to the weights. `dw` is overwritten.
pub fn conv2d_backward_weight(geo: &ConvGeometry, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    geo.check(x.len(), dw.len(), dy.len());
    let m = geo.batch * geo.out_pixels();
    let k = geo.patch_len();
    let og = geo.group_out();
    let mut col = Vec::new();
    for g in 0..geo.groups {
        let a = if geo.is_pointwise() {
            MatRef::row_major(x, m, k).t()
        } else {
            col.resize(m * k, 0.0);
            im2col(geo, x, g, &mut col);
            MatRef::row_major(&col, m, k).t()
        };
        let b = MatRef { data: &dy[g * og..], rows: m, cols: og, row_stride: geo.out_c, col_stride: 1 };
        let c = MatMut { data: &mut dw[g * og..], rows: k, cols: og, row_stride: geo.out_c, col_stride: 1 };
        sgemm(a, b, c, false);
    }
}

/// Sum of `dy` (`[rows, channels]`) over rows: the bias gradient.
///
/// Partial sums over fixed-size row blocks are combined in order, so the
/// result is bit-identical for any thread count and schedule.
pub fn bias_grad(dy: &[f32], channels: usize) -> Vec<f32> {
    assert!(channels > 0 && dy.len() % channels == 0);
    let partials: Vec<Vec<f32>> = dy
        .par_chunks(channels * 256)
        .map(|rows| {
            let mut acc = vec![0.0f32; channels];
            for row in rows.chunks_exact(channels) {
                for (a, v) in acc.iter_mut().zip(row) {
                    *a += *v;
                }
            }
            acc
        })
        .collect();
    let mut total = vec![0.0f32; channels];
    for p in &partials {
        for (t, v) in total.iter_mut().zip(p) {
            *t += *v;
        }
    }
    total
}
