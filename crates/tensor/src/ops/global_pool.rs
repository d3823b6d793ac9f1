//! Global average and max pooling: `[n, h, w, c] -> [n, c]`.

use super::constant;
use crate::{Backward, Result, Tensor, TensorError};

struct GlobalAvgBackward;

impl Backward for GlobalAvgBackward {
    fn name(&self) -> &'static str {
        "global_avg_pool"
    }
    fn backward(&self, inputs: &[Tensor], _output: &Tensor, grad: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        let [n, h, w, c] = *inputs[0].dims() else { unreachable!("checked in forward") };
        let inv = 1.0 / (h * w) as f32;
        let mut dx = vec![0.0; n * h * w * c];
        for (b, img) in dx.chunks_exact_mut(h * w * c).enumerate() {
            let g = &grad.data()[b * c..(b + 1) * c];
            for px in img.chunks_exact_mut(c) {
                for (d, g) in px.iter_mut().zip(g) {
                    *d = g * inv;
                }
            }
        }
        vec![Some(constant(dx, inputs[0].dims()))]
    }
}

struct GlobalMaxBackward {
    argmax: Vec<usize>,
}

impl Backward for GlobalMaxBackward {
    fn name(&self) -> &'static str {
        "global_max_pool"
    }
    fn backward(&self, inputs: &[Tensor], _output: &Tensor, grad: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        let mut dx = vec![0.0; inputs[0].numel()];
        for (g, &i) in grad.data().iter().zip(&self.argmax) {
            dx[i] += g;
        }
        vec![Some(constant(dx, inputs[0].dims()))]
    }
}

fn nhwc(x: &Tensor, op: &'static str) -> Result<[usize; 4]> {
    match *x.dims() {
        [n, h, w, c] if h * w * c > 0 => Ok([n, h, w, c]),
        _ => Err(TensorError::shape(op, format!("input must be a non-empty [n, h, w, c], got {}", x.shape()))),
    }
}

impl Tensor {
    /// Mean over height and width: `[n, h, w, c] -> [n, c]`.
    pub fn global_avg_pool(&self) -> Result<Tensor> {
        let [n, h, w, c] = nhwc(self, "global_avg_pool")?;
        let y = convnet_kernels::pool::global_avg_pool(self.data(), n, h * w, c);
        Ok(Tensor::from_op(y, [n, c], &[self], GlobalAvgBackward))
    }

    /// Max over height and width: `[n, h, w, c] -> [n, c]`.
    pub fn global_max_pool(&self) -> Result<Tensor> {
        let [n, h, w, c] = nhwc(self, "global_max_pool")?;
        let mut y = vec![f32::NEG_INFINITY; n * c];
        let mut argmax = vec![0usize; n * c];
        for (b, img) in self.data().chunks_exact(h * w * c).enumerate() {
            for (p, px) in img.chunks_exact(c).enumerate() {
                for (ch, v) in px.iter().enumerate() {
                    if *v > y[b * c + ch] || p == 0 {
                        y[b * c + ch] = *v;
                        argmax[b * c + ch] = b * h * w * c + p * c + ch;
                    }
                }
            }
        }
        Ok(Tensor::from_op(y, [n, c], &[self], GlobalMaxBackward { argmax }))
    }
}
