//! Model parameters: a Keras path name (`conv2d/kernel`, `batch_normalization/moving_mean`),
//! a trainable flag, and a tensor in Keras' own layout (HWIO conv kernels, `[in, out]`
//! Dense kernels), so checkpoints need no conversion.
//!
//! A trainable parameter's tensor is kept as an autograd *variable* whose identity never
//! changes: a training step records the graph against it, `backward` returns its gradient
//! by that identity, and the optimizer then updates the values in place once the graph is
//! dropped (no copy, as the variable is the only owner of its data by then).

use convnet_tensor::Tensor;

use crate::{Misshaped, NnError, Result};

/// One weight of a layer.
#[derive(Clone, Debug)]
pub struct Param {
    path: String,
    trainable: bool,
    value: Tensor,
}

impl Param {
    /// A parameter named `path` holding `value`.
    pub fn new(path: impl Into<String>, value: Tensor, trainable: bool) -> Param {
        let value = if trainable { value.var() } else { value.detach() };
        Param { path: path.into(), trainable, value }
    }

    /// Keras path name, `layer/weight`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The last part of the path (`kernel`, `bias`, `gamma`, `moving_mean`, ...).
    pub fn short_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }

    /// Whether the optimizer updates it.
    pub fn trainable(&self) -> bool {
        self.trainable
    }

    /// The current value (for a trainable parameter, the graph variable itself).
    pub fn value(&self) -> &Tensor {
        &self.value
    }

    /// The shape.
    pub fn dims(&self) -> &[usize] {
        self.value.dims()
    }

    /// Number of values.
    pub fn numel(&self) -> usize {
        self.value.numel()
    }

    /// Replaces the value; the shape must stay the same.
    pub fn set(&mut self, value: &Tensor) -> Result<()> {
        if value.dims() != self.value.dims() {
            return Err(NnError::WeightsMismatch {
                source_name: "set_weight".into(),
                missing: vec![],
                unexpected: vec![],
                misshaped: vec![Misshaped {
                    path: self.path.clone(),
                    expected: self.dims().to_vec(),
                    got: value.dims().to_vec(),
                }],
            });
        }
        self.value = if self.trainable { value.var() } else { value.detach() };
        Ok(())
    }

    /// Overwrites the values in place (same length, checked by the caller).
    pub(crate) fn assign(&mut self, values: &[f32]) {
        self.value.data_mut().copy_from_slice(values);
    }

    /// Mutable values for an in-place update (copies only if the data is shared,
    /// e.g. with a snapshot kept by a callback).
    pub(crate) fn data_mut(&mut self) -> &mut [f32] {
        self.value.data_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trainable_params_are_stable_variables() {
        let mut p = Param::new("dense/kernel", Tensor::zeros([2, 3]), true);
        assert!(p.value().is_var());
        let id = p.value().id();
        p.data_mut()[0] = 1.0;
        assert_eq!(p.value().id(), id, "in-place updates keep the identity gradients use");
        assert_eq!(p.value().data()[0], 1.0);
        assert_eq!(p.short_name(), "kernel");
        let err = p.set(&Tensor::zeros([3, 2])).unwrap_err();
        assert!(err.to_string().contains("dense/kernel"), "{err}");
        let frozen = Param::new("bn/moving_mean", Tensor::zeros([3]), false);
        assert!(!frozen.value().requires_grad());
    }
}
