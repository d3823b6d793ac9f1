//! Inverted dropout: zero each value with probability `rate` and scale the
//! survivors by `1 / (1 - rate)`, so inference needs no rescaling. The mask
//! comes from a seeded [`Rng`](crate::rng::Rng): the same seed drops the same units.

use super::{constant, zip_map};
use crate::rng::Rng;
use crate::{Backward, Result, Tensor, TensorError};
use rayon::prelude::*;

/// Elements per independently seeded block of the mask.
const MASK_BLOCK: usize = 1 << 14;

struct DropoutBackward {
    mask: Vec<f32>,
}

impl Backward for DropoutBackward {
    fn name(&self) -> &'static str {
        "dropout"
    }
    fn backward(&self, _inputs: &[Tensor], _output: &Tensor, grad: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        vec![Some(constant(zip_map(grad.data(), &self.mask, |g, m| g * m), grad.dims()))]
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
        let keep = 1.0 / (1.0 - rate);
        // One draw from the caller's generator seeds a stream per fixed-size
        // block, so blocks fill in parallel and the mask depends only on the
        // seed, never on the thread count. One 64-bit draw gives two 24-bit uniforms.
        let base = rng.next_u64();
        let mut mask = vec![0.0f32; self.numel()];
        mask.par_chunks_mut(MASK_BLOCK).enumerate().for_each(|(block, out)| {
            let mut r = Rng::new(base ^ (block as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            for pair in out.chunks_mut(2) {
                let bits = r.next_u64();
                for (k, m) in pair.iter_mut().enumerate() {
                    let u = ((bits >> (k * 32 + 8)) & 0xFF_FFFF) as f32 * (1.0 / (1u32 << 24) as f32);
                    *m = if u >= rate { keep } else { 0.0 };
                }
            }
        });
        let y = zip_map(self.data(), &mask, |x, m| x * m);
        Ok(Tensor::from_op(y, self.shape().clone(), &[self], DropoutBackward { mask }))
    }
}
