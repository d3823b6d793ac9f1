//! Softmax and log-softmax over the last axis, max-shifted for stability, and
//! softmax over any axis (`softmax_axis`: attention over heads or positions,
//! selective-kernel and split-attention weights over their branches).

use super::constant;
use crate::{Backward, Result, Tensor, TensorError};
use convnet_kernels::softmax::softmax_rows;

fn last_axis(x: &Tensor, op: &'static str) -> Result<usize> {
    match x.dims().last() {
        Some(&c) if c > 0 => Ok(c),
        _ => Err(TensorError::shape(op, format!("needs a non-empty last axis, got {}", x.shape()))),
    }
}

struct SoftmaxBackward;

impl Backward for SoftmaxBackward {
    fn name(&self) -> &'static str {
        "softmax"
    }
    fn backward(&self, _inputs: &[Tensor], output: &Tensor, grad: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        let c = *output.dims().last().expect("softmax output has a last axis");
        let mut dx = vec![0.0; output.numel()];
        for ((y, g), d) in output.data().chunks_exact(c).zip(grad.data().chunks_exact(c)).zip(dx.chunks_exact_mut(c)) {
            let dot: f32 = y.iter().zip(g).map(|(y, g)| y * g).sum();
            for ((d, y), g) in d.iter_mut().zip(y).zip(g) {
                *d = y * (g - dot);
            }
        }
        vec![Some(constant(dx, output.dims()))]
    }
}

/// Softmax along the middle axis of `x` viewed as `[outer, n, inner]` into `y`.
///
/// The `inner` values of one position along the axis are contiguous, so the
/// max, the exponentials and the sum run over whole rows of `inner` values at a
/// time (vectorisable), never striding through memory per element.
pub(crate) fn softmax_mid(x: &[f32], n: usize, inner: usize, y: &mut [f32]) {
    if inner == 0 || n == 0 {
        return;
    }
    let mut m = vec![0.0f32; inner];
    let mut s = vec![0.0f32; inner];
    for (xb, yb) in x.chunks_exact(n * inner).zip(y.chunks_exact_mut(n * inner)) {
        m.fill(f32::NEG_INFINITY);
        for xr in xb.chunks_exact(inner) {
            m.iter_mut().zip(xr).for_each(|(m, &v)| *m = m.max(v));
        }
        s.fill(0.0);
        for (xr, yr) in xb.chunks_exact(inner).zip(yb.chunks_exact_mut(inner)) {
            for (((o, &v), m), s) in yr.iter_mut().zip(xr).zip(&m).zip(s.iter_mut()) {
                *o = (v - m).exp();
                *s += *o;
            }
        }
        s.iter_mut().for_each(|s| *s = 1.0 / *s);
        for yr in yb.chunks_exact_mut(inner) {
            yr.iter_mut().zip(&s).for_each(|(o, inv)| *o *= inv);
        }
    }
}

/// The softmax backward along the middle axis of `[outer, n, inner]`:
/// `dx = y * (g - sum_axis(y * g))`, row-wise as [`softmax_mid`].
fn softmax_mid_backward(y: &[f32], g: &[f32], n: usize, inner: usize, dx: &mut [f32]) {
    if inner == 0 || n == 0 {
        return;
    }
    let mut dot = vec![0.0f32; inner];
    let block = n * inner;
    for ((yb, gb), db) in y.chunks_exact(block).zip(g.chunks_exact(block)).zip(dx.chunks_exact_mut(block)) {
        dot.fill(0.0);
        for (yr, gr) in yb.chunks_exact(inner).zip(gb.chunks_exact(inner)) {
            for ((d, y), g) in dot.iter_mut().zip(yr).zip(gr) {
                *d += y * g;
            }
        }
        for ((yr, gr), dr) in yb.chunks_exact(inner).zip(gb.chunks_exact(inner)).zip(db.chunks_exact_mut(inner)) {
            for (((o, y), g), dot) in dr.iter_mut().zip(yr).zip(gr).zip(&dot) {
                *o = y * (g - dot);
            }
        }
    }
}

struct SoftmaxAxisBackward {
    axis: usize,
}

impl Backward for SoftmaxAxisBackward {
    fn name(&self) -> &'static str {
        "softmax"
    }
    fn backward(&self, _inputs: &[Tensor], output: &Tensor, grad: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        let dims = output.dims();
        let inner: usize = dims[self.axis + 1..].iter().product();
        let mut dx = vec![0.0; output.numel()];
        softmax_mid_backward(output.data(), grad.data(), dims[self.axis], inner, &mut dx);
        vec![Some(constant(dx, dims))]
    }
}

struct LogSoftmaxBackward;

impl Backward for LogSoftmaxBackward {
    fn name(&self) -> &'static str {
        "log_softmax"
    }
    fn backward(&self, _inputs: &[Tensor], output: &Tensor, grad: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        let c = *output.dims().last().expect("log_softmax output has a last axis");
        let mut dx = vec![0.0; output.numel()];
        for ((y, g), d) in output.data().chunks_exact(c).zip(grad.data().chunks_exact(c)).zip(dx.chunks_exact_mut(c)) {
            let gs: f32 = g.iter().sum();
            for ((d, y), g) in d.iter_mut().zip(y).zip(g) {
                *d = g - y.exp() * gs;
            }
        }
        vec![Some(constant(dx, output.dims()))]
    }
}

impl Tensor {
    /// Softmax over the last axis.
    pub fn softmax(&self) -> Result<Tensor> {
        let c = last_axis(self, "softmax")?;
        let mut y = vec![0.0; self.numel()];
        softmax_rows(self.data(), c, &mut y);
        Ok(Tensor::from_op(y, self.shape().clone(), &[self], SoftmaxBackward))
    }

    /// Softmax over `axis` (each line along it sums to one), max-shifted so
    /// that large values do not overflow. The last axis is [`Tensor::softmax`].
    pub fn softmax_axis(&self, axis: usize) -> Result<Tensor> {
        let Some(&n) = self.dims().get(axis) else {
            return Err(TensorError::invalid("softmax", format!("axis {axis} out of range for {}", self.shape())));
        };
        if axis + 1 == self.rank() {
            return self.softmax();
        }
        if n == 0 {
            return Err(TensorError::shape("softmax", format!("axis {axis} of {} is empty", self.shape())));
        }
        let inner: usize = self.dims()[axis + 1..].iter().product();
        let mut y = vec![0.0; self.numel()];
        softmax_mid(self.data(), n, inner, &mut y);
        Ok(Tensor::from_op(y, self.shape().clone(), &[self], SoftmaxAxisBackward { axis }))
    }

    /// `log(softmax(x))` over the last axis, computed without forming the softmax.
    pub fn log_softmax(&self) -> Result<Tensor> {
        let c = last_axis(self, "log_softmax")?;
        let mut y = vec![0.0; self.numel()];
        for (xr, yr) in self.data().chunks_exact(c).zip(y.chunks_exact_mut(c)) {
            let m = xr.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let lse = m + xr.iter().map(|v| (v - m).exp()).sum::<f32>().ln();
            for (o, v) in yr.iter_mut().zip(xr) {
                *o = v - lse;
            }
        }
        Ok(Tensor::from_op(y, self.shape().clone(), &[self], LogSoftmaxBackward))
    }
}
