//! Inverted dropout: zero each value with probability `rate` and scale the
//! survivors by `1 / (1 - rate)`, so inference needs no rescaling. The mask
//! comes from a seeded [`Rng`](crate::rng::Rng): the same seed drops the same units.

use super::constant;
use crate::rng::Rng;
use crate::{Backward, Result, Tensor, TensorError};
use convnet_kernels::elementwise::{apply_mask, dropout_mask};

struct DropoutBackward {
    /// One byte per element, 1 where it was kept.
    mask: Vec<u8>,
    /// `1 / (1 - rate)`.
    scale: f32,
}

impl Backward for DropoutBackward {
    fn name(&self) -> &'static str {
        "dropout"
    }
    fn backward(&self, _inputs: &[Tensor], _output: &Tensor, grad: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        vec![Some(constant(apply_mask(grad.data(), &self.mask, self.scale), grad.dims()))]
    }
}

impl Tensor {
    /// Training-time dropout with drop probability `rate` in `[0, 1)`.
    pub fn dropout(&self, rate: f32, rng: &mut Rng) -> Result<Tensor> {
        if !(0.0..1.0).contains(&rate) {
            return Err(TensorError::invalid("dropout", format!("rate must be in [0, 1), got {rate}")));
        }
        if rate == 0.0 {
            return Ok(self.clone());
        }
        let scale = 1.0 / (1.0 - rate);
        // one draw from the caller's generator is the origin of a counter-based stream, so
        // the mask depends only on the seed, never on the thread count
        let mut mask = vec![0u8; self.numel()];
        dropout_mask(rng.next_u64(), rate, &mut mask);
        let y = apply_mask(self.data(), &mask, scale);
        Ok(Tensor::from_op(y, self.shape().clone(), &[self], DropoutBackward { mask, scale }))
    }
}
