//! Concatenation along one axis (Inception's and DenseNet's channel concat).

use super::constant;
use crate::{Backward, Result, Tensor, TensorError};

struct ConcatBackward {
    axis: usize,
}

impl Backward for ConcatBackward {
    fn name(&self) -> &'static str {
        "concat"
    }
    fn backward(&self, inputs: &[Tensor], output: &Tensor, grad: &Tensor, needs: &[bool]) -> Vec<Option<Tensor>> {
        let outer: usize = output.dims()[..self.axis].iter().product();
        let out_row = grad.numel() / outer.max(1);
        let mut offset = 0;
        inputs
            .iter()
            .zip(needs)
            .map(|(x, &need)| {
                let row = x.numel() / outer.max(1);
                let start = offset;
                offset += row;
                need.then(|| {
                    let mut d = Vec::with_capacity(x.numel());
                    for o in 0..outer {
                        d.extend_from_slice(&grad.data()[o * out_row + start..o * out_row + start + row]);
                    }
                    constant(d, x.dims())
                })
            })
            .collect()
    }
}

impl Tensor {
    /// Joins `tensors` along `axis`; all other dimensions must agree.
    pub fn concat(tensors: &[&Tensor], axis: usize) -> Result<Tensor> {
        let first = tensors.first().ok_or_else(|| TensorError::invalid("concat", "needs at least one tensor"))?;
        if axis >= first.rank() {
            return Err(TensorError::invalid("concat", format!("axis {axis} out of range for {}", first.shape())));
        }
        let mut shape = first.dims().to_vec();
        shape[axis] = 0;
        for t in tensors {
            let ok = t.rank() == first.rank()
                && t.dims().iter().zip(first.dims()).enumerate().all(|(i, (a, b))| i == axis || a == b);
            if !ok {
                return Err(TensorError::shape(
                    "concat",
                    format!("{} and {} differ outside axis {axis}", first.shape(), t.shape()),
                ));
            }
            shape[axis] += t.dims()[axis];
        }
        let outer: usize = shape[..axis].iter().product();
        let mut y = Vec::with_capacity(shape.iter().product());
        for o in 0..outer {
            for t in tensors {
                let row = t.numel() / outer.max(1);
                y.extend_from_slice(&t.data()[o * row..(o + 1) * row]);
            }
        }
        Ok(Tensor::from_op(y, shape, tensors, ConcatBackward { axis }))
    }
}
