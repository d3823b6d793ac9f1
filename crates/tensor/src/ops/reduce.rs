//! Sums and means, over everything or over chosen axes.

use super::binary::sum_to_shape;
use super::constant;
use crate::{Backward, Result, Tensor, TensorError};

struct ReduceBackward {
    scale: f32,
    /// The input's shape with the reduced axes set to 1. Recorded, not
    /// recovered from the output's sizes: `[2, 2, 3]` summed over axis 0 or
    /// over axis 1 both give `[2, 3]`.
    kept: Vec<usize>,
}

impl Backward for ReduceBackward {
    fn name(&self) -> &'static str {
        "sum"
    }
    fn backward(&self, inputs: &[Tensor], _output: &Tensor, grad: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        // broadcast the (kept-dims) gradient back over the reduced axes
        let x = &inputs[0];
        let g = grad.reshape(self.kept.clone()).expect("same element count").detach();
        let ones = constant(vec![self.scale; x.numel()], x.dims());
        vec![Some(ones.mul(&g).expect("broadcastable").detach())]
    }
}

impl Tensor {
    /// Sum of all values (scalar).
    pub fn sum(&self) -> Tensor {
        let s: f64 = self.data().iter().map(|&v| v as f64).sum();
        Tensor::from_op(vec![s as f32], [], &[self], ReduceBackward { scale: 1.0, kept: vec![1; self.rank()] })
    }

    /// Mean of all values (scalar).
    pub fn mean(&self) -> Tensor {
        let n = self.numel().max(1) as f32;
        let s: f64 = self.data().iter().map(|&v| v as f64).sum();
        Tensor::from_op(
            vec![(s / n as f64) as f32],
            [],
            &[self],
            ReduceBackward { scale: 1.0 / n, kept: vec![1; self.rank()] },
        )
    }

    /// Sum over `axes` (kept as size 1 when `keepdim`).
    pub fn sum_axes(&self, axes: &[usize], keepdim: bool) -> Result<Tensor> {
        self.reduce_axes(axes, keepdim, false)
    }

    /// Mean over `axes` (kept as size 1 when `keepdim`).
    pub fn mean_axes(&self, axes: &[usize], keepdim: bool) -> Result<Tensor> {
        self.reduce_axes(axes, keepdim, true)
    }

    fn reduce_axes(&self, axes: &[usize], keepdim: bool, mean: bool) -> Result<Tensor> {
        if let Some(a) = axes.iter().find(|&&a| a >= self.rank()) {
            return Err(TensorError::invalid("reduce", format!("axis {a} out of range for {}", self.shape())));
        }
        if let Some((i, a)) = axes.iter().enumerate().find(|(i, a)| axes[..*i].contains(a)) {
            return Err(TensorError::invalid("reduce", format!("axis {a} appears twice in {axes:?} (position {i})")));
        }
        let kept: Vec<usize> =
            self.dims().iter().enumerate().map(|(i, &d)| if axes.contains(&i) { 1 } else { d }).collect();
        let count: usize = axes.iter().map(|&a| self.dims()[a]).product::<usize>().max(1);
        let scale = if mean { 1.0 / count as f32 } else { 1.0 };
        let mut y = sum_to_shape(self.data(), self.dims(), &kept);
        if mean {
            y.iter_mut().for_each(|v| *v *= scale);
        }
        let shape: Vec<usize> = if keepdim {
            kept.clone()
        } else {
            self.dims().iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, &d)| d).collect()
        };
        Ok(Tensor::from_op(y, shape, &[self], ReduceBackward { scale, kept }))
    }
}
