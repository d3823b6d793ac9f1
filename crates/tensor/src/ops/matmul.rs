//! Matrix product `[m, k] @ [k, n]`, and `linear` (`x @ w + b`, Keras' Dense
//! with `[in, out]` kernels) with the bias added in the same pass.

use super::constant;
use crate::{Activation, Backward, Result, Tensor, TensorError};
use convnet_kernels::conv::bias_grad;
use convnet_kernels::gemm::{MatMut, MatRef, sgemm};

struct MatmulBackward {
    m: usize,
    k: usize,
    n: usize,
    has_bias: bool,
    /// A relu fused into the output: the gradient is masked by `output > 0` first.
    relu: bool,
}

impl Backward for MatmulBackward {
    fn name(&self) -> &'static str {
        "matmul"
    }
    fn backward(&self, inputs: &[Tensor], output: &Tensor, grad: &Tensor, needs: &[bool]) -> Vec<Option<Tensor>> {
        let (m, k, n) = (self.m, self.k, self.n);
        let (a, b) = (&inputs[0], &inputs[1]);
        let masked;
        let grad = if self.relu {
            let mut m = vec![0.0; grad.numel()];
            convnet_kernels::elementwise::relu_backward(grad.data(), output.data(), &mut m);
            masked = constant(m, grad.dims());
            &masked
        } else {
            grad
        };
        let g = MatRef::row_major(grad.data(), m, n);
        let da = needs[0].then(|| {
            let mut da = vec![0.0; m * k];
            sgemm(g, MatRef::row_major(b.data(), k, n).t(), MatMut::row_major(&mut da, m, k), false);
            constant(da, a.dims())
        });
        let db = needs[1].then(|| {
            let mut db = vec![0.0; k * n];
            sgemm(MatRef::row_major(a.data(), m, k).t(), g, MatMut::row_major(&mut db, k, n), false);
            constant(db, b.dims())
        });
        let mut grads = vec![da, db];
        if self.has_bias {
            grads.push(needs[2].then(|| constant(if n == 0 { Vec::new() } else { bias_grad(grad.data(), n) }, &[n])));
        }
        grads
    }
}

impl Tensor {
    /// `self: [m, k] @ other: [k, n] -> [m, n]`.
    pub fn matmul(&self, other: &Tensor) -> Result<Tensor> {
        self.linear_impl(other, None, "matmul")
    }

    /// `self: [batch, in] @ weight: [in, out] + bias: [out] -> [batch, out]`.
    pub fn linear(&self, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        self.linear_impl(weight, bias, "linear")
    }

    /// `act(self @ weight + bias)`: Dense with a fused activation. Relu is
    /// applied in place on the product and its mask read back from the output
    /// in the backward pass; other activations run as a separate op.
    pub fn linear_act(&self, weight: &Tensor, bias: Option<&Tensor>, act: Activation) -> Result<Tensor> {
        match act {
            Activation::Linear => self.linear(weight, bias),
            Activation::Relu => self.linear_fused(weight, bias, "linear", true),
            _ => Ok(self.linear(weight, bias)?.activation(act)),
        }
    }

    fn linear_impl(&self, w: &Tensor, bias: Option<&Tensor>, op: &'static str) -> Result<Tensor> {
        self.linear_fused(w, bias, op, false)
    }

    fn linear_fused(&self, w: &Tensor, bias: Option<&Tensor>, op: &'static str, relu: bool) -> Result<Tensor> {
        let (&[m, k], &[k2, n]) = (self.dims(), w.dims()) else {
            return Err(TensorError::shape(op, format!("needs two matrices, got {} and {}", self.shape(), w.shape())));
        };
        if k != k2 {
            return Err(TensorError::shape(
                op,
                format!("{} @ {}: inner sizes {k} and {k2} differ", self.shape(), w.shape()),
            ));
        }
        let mut y = vec![0.0; m * n];
        if let Some(b) = bias {
            if b.dims() != [n] {
                return Err(TensorError::shape(op, format!("bias {} for {n} outputs", b.shape())));
            }
            // start from the bias and accumulate the product onto it
            for row in y.chunks_exact_mut(n.max(1)) {
                row.copy_from_slice(b.data());
            }
        }
        sgemm(
            MatRef::row_major(self.data(), m, k),
            MatRef::row_major(w.data(), k, n),
            MatMut::row_major(&mut y, m, n),
            bias.is_some(),
        );
        if relu {
            y.iter_mut().for_each(|v| *v = v.max(0.0));
        }
        let back = MatmulBackward { m, k, n, has_bias: bias.is_some(), relu };
        Ok(match bias {
            Some(b) => Tensor::from_op(y, [m, n], &[self, w, b], back),
            None => Tensor::from_op(y, [m, n], &[self, w], back),
        })
    }
}
