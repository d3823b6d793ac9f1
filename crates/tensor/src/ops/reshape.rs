//! Reshape and flatten: a new shape over the same data (no copy).

use crate::{Backward, Result, Shape, Tensor, TensorError};

struct ReshapeBackward;

impl Backward for ReshapeBackward {
    fn name(&self) -> &'static str {
        "reshape"
    }
    fn backward(&self, inputs: &[Tensor], _output: &Tensor, grad: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        vec![Some(grad.share_data(inputs[0].shape().clone(), &[], ReshapeBackward))]
    }
}

impl Tensor {
    /// The same values with another shape; one dimension may be `usize::MAX`
    /// ("infer it", like `-1` in NumPy).
    pub fn reshape(&self, shape: impl Into<Shape>) -> Result<Tensor> {
        let mut dims = shape.into().0;
        let known: usize = dims.iter().filter(|&&d| d != usize::MAX).product();
        let inferred = dims.iter().filter(|&&d| d == usize::MAX).count();
        if inferred > 1 {
            return Err(TensorError::invalid("reshape", "at most one dimension can be inferred"));
        }
        if inferred == 1 {
            if known == 0 || !self.numel().is_multiple_of(known) {
                return Err(TensorError::shape(
                    "reshape",
                    format!("cannot infer a dimension of {dims:?} from {}", self.shape()),
                ));
            }
            for d in dims.iter_mut().filter(|d| **d == usize::MAX) {
                *d = self.numel() / known;
            }
        }
        let shape = Shape(dims);
        if shape.numel() != self.numel() {
            return Err(TensorError::shape(
                "reshape",
                format!("{} has {} values, {shape} needs {}", self.shape(), self.numel(), shape.numel()),
            ));
        }
        Ok(self.share_data(shape, &[self], ReshapeBackward))
    }

    /// `[n, ...] -> [n, prod(...)]` (Keras' Flatten).
    pub fn flatten(&self) -> Result<Tensor> {
        let Some(&n) = self.dims().first() else {
            return Err(TensorError::shape("flatten", "cannot flatten a scalar"));
        };
        let rest = self.numel().checked_div(n).unwrap_or_else(|| self.dims()[1..].iter().product());
        self.reshape([n, rest])
    }
}
