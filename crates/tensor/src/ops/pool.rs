//! Max and average pooling over NHWC input with stride, padding (valid, same
//! or explicit), PyTorch's `ceil_mode` and `count_include_pad`.
//! Padding never wins a max (it is -inf, as in both PyTorch and TensorFlow).

use super::constant;
use crate::{Backward, Padding2d, Result, Tensor, TensorError};
use convnet_kernels::pool::{self, PoolGeometry};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Arguments of [`Tensor::max_pool2d`] and [`Tensor::avg_pool2d`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool2dArgs {
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub padding: Padding2d,
    /// Round the output size up, letting the last window run past the input (PyTorch).
    pub ceil_mode: bool,
    /// Average pooling divides by the full window including padding (PyTorch's default);
    /// Keras "same" pooling excludes it.
    pub count_include_pad: bool,
}

impl Pool2dArgs {
    /// A `k x k` window with stride `k` and no padding (Keras' `MaxPooling2D(k)`).
    pub fn square(k: usize) -> Self {
        Self { kernel: (k, k), stride: (k, k), padding: Padding2d::Valid, ceil_mode: false, count_include_pad: true }
    }

    /// Output `(height, width)` for an input of `(h, w)`.
    pub fn output_hw(&self, h: usize, w: usize) -> Result<(usize, usize)> {
        let g = self.geometry(1, h, w, 1)?;
        Ok((g.out_h, g.out_w))
    }

    fn geometry(&self, n: usize, h: usize, w: usize, c: usize) -> Result<PoolGeometry> {
        let (kh, kw) = self.kernel;
        let (sh, sw) = self.stride;
        if kh == 0 || kw == 0 || sh == 0 || sw == 0 {
            return Err(TensorError::invalid(
                "pool2d",
                format!("pool size {kh}x{kw} and strides {sh}x{sw} must be positive"),
            ));
        }
        let (pt, pb) = self.padding.resolve_axis(h, kh, sh, true);
        let (pl, pr) = self.padding.resolve_axis(w, kw, sw, false);
        // every side: more than half a window of padding makes windows that see no input
        if (pt.max(pb) * 2 > kh || pl.max(pr) * 2 > kw)
            && let Padding2d::Explicit { .. } = self.padding
        {
            return Err(TensorError::invalid(
                "pool2d",
                format!(
                    "padding (top {pt}, bottom {pb}, left {pl}, right {pr}) must be at most half the pool size {kh}x{kw}"
                ),
            ));
        }
        let axis = |size: usize, k: usize, s: usize, before: usize, after: usize| -> Result<usize> {
            let padded = size + before + after;
            if padded < k {
                return Err(TensorError::invalid(
                    "pool2d",
                    format!("pool size {kh}x{kw} is larger than the padded input {}x{}", h + pt + pb, w + pl + pr),
                ));
            }
            let span = padded - k;
            let mut out = if self.ceil_mode { span.div_ceil(s) + 1 } else { span / s + 1 };
            // the last window must start inside the input or its leading padding
            if self.ceil_mode && (out - 1) * s >= size + before {
                out -= 1;
            }
            Ok(out)
        };
        Ok(PoolGeometry {
            batch: n,
            in_h: h,
            in_w: w,
            channels: c,
            out_h: axis(h, kh, sh, pt, pb)?,
            out_w: axis(w, kw, sw, pl, pr)?,
            kernel_h: kh,
            kernel_w: kw,
            stride_h: sh,
            stride_w: sw,
            pad_top: pt,
            pad_left: pl,
        })
    }
}

fn pool_geometry(x: &Tensor, args: &Pool2dArgs) -> Result<PoolGeometry> {
    let [n, h, w, c] = *x.dims() else {
        return Err(TensorError::shape("pool2d", format!("input must be [n, h, w, c], got {}", x.shape())));
    };
    // as PyTorch: only the batch may be empty
    if h == 0 || w == 0 || c == 0 {
        return Err(TensorError::shape(
            "pool2d",
            format!("input {} has an empty height, width or channel axis", x.shape()),
        ));
    }
    args.geometry(n, h, w, c)
}

/// Where each window's maximum was: one byte per output (position inside the
/// window) when the window is small enough, else flat input indices.
enum ArgMax {
    Compact(Vec<u8>),
    Flat(Vec<u32>),
}

struct MaxPoolBackward {
    geo: PoolGeometry,
    argmax: Arc<ArgMax>,
}

impl Backward for MaxPoolBackward {
    fn name(&self) -> &'static str {
        "max_pool2d"
    }
    fn backward(&self, inputs: &[Tensor], _output: &Tensor, grad: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        let dx = match &*self.argmax {
            ArgMax::Compact(i) => pool::max_pool_backward_compact_vec(&self.geo, grad.data(), i),
            ArgMax::Flat(i) => {
                let mut dx = vec![0.0; self.geo.input_len()];
                pool::max_pool_backward(&self.geo, grad.data(), i, &mut dx);
                dx
            }
        };
        vec![Some(constant(dx, inputs[0].dims()))]
    }
}

struct AvgPoolBackward {
    geo: PoolGeometry,
    count_include_pad: bool,
}

impl Backward for AvgPoolBackward {
    fn name(&self) -> &'static str {
        "avg_pool2d"
    }
    fn backward(&self, inputs: &[Tensor], _output: &Tensor, grad: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        let mut dx = vec![0.0; self.geo.input_len()];
        pool::avg_pool_backward(&self.geo, grad.data(), &mut dx, self.count_include_pad);
        vec![Some(constant(dx, inputs[0].dims()))]
    }
}

impl Tensor {
    /// Max pooling: `[n, h, w, c] -> [n, oh, ow, c]`.
    pub fn max_pool2d(&self, args: &Pool2dArgs) -> Result<Tensor> {
        let geo = pool_geometry(self, args)?;
        let (y, argmax) = if !self.requires_grad() || pool::compact_index_fits(&geo) {
            let (y, i) = pool::max_pool_forward_vec(&geo, self.data(), self.requires_grad());
            (y, ArgMax::Compact(i))
        } else {
            let mut y = vec![0.0; geo.output_len()];
            let mut i = vec![0u32; geo.output_len()];
            pool::max_pool_forward(&geo, self.data(), &mut y, &mut i);
            (y, ArgMax::Flat(i))
        };
        let shape = [geo.batch, geo.out_h, geo.out_w, geo.channels];
        Ok(Tensor::from_op(y, shape, &[self], MaxPoolBackward { geo, argmax: Arc::new(argmax) }))
    }

    /// Average pooling: `[n, h, w, c] -> [n, oh, ow, c]`.
    pub fn avg_pool2d(&self, args: &Pool2dArgs) -> Result<Tensor> {
        let geo = pool_geometry(self, args)?;
        // Keras/TensorFlow "same" average pooling never counts the padding
        let include = args.count_include_pad && args.padding != Padding2d::Same;
        let mut y = vec![0.0; geo.output_len()];
        pool::avg_pool_forward(&geo, self.data(), &mut y, include);
        let shape = [geo.batch, geo.out_h, geo.out_w, geo.channels];
        Ok(Tensor::from_op(y, shape, &[self], AvgPoolBackward { geo, count_include_pad: include }))
    }
}
