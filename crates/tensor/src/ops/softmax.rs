//! Softmax and log-softmax over the last axis, max-shifted for stability.

use super::constant;
use crate::{Backward, Result, Tensor, TensorError};

fn last_axis(x: &Tensor, op: &'static str) -> Result<usize> {
    match x.dims().last() {
        Some(&c) if c > 0 => Ok(c),
        _ => Err(TensorError::shape(op, format!("needs a non-empty last axis, got {}", x.shape()))),
    }
}

/// Softmax of each row of `x` (`[rows, c]` flattened) into `y`.
pub(crate) fn softmax_rows(x: &[f32], c: usize, y: &mut [f32]) {
    for (xr, yr) in x.chunks_exact(c).zip(y.chunks_exact_mut(c)) {
        let m = xr.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let mut s = 0.0;
        for (o, v) in yr.iter_mut().zip(xr) {
            *o = (v - m).exp();
            s += *o;
        }
        let inv = 1.0 / s;
        yr.iter_mut().for_each(|v| *v *= inv);
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
