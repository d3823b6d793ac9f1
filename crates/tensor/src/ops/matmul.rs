//! Matrix product `[m, k] @ [k, n]`, and `linear` (`x @ w + b`, Keras' Dense
//! with `[in, out]` kernels) with the bias added in the same pass.

use super::constant;
use crate::{Backward, Result, Tensor, TensorError};
use convnet_kernels::conv::bias_grad;
use convnet_kernels::gemm::{MatMut, MatRef, sgemm};

struct MatmulBackward {
    m: usize,
    k: usize,
    n: usize,
    has_bias: bool,
}

impl Backward for MatmulBackward {
    fn name(&self) -> &'static str {
        "matmul"
    }
    fn backward(&self, inputs: &[Tensor], _output: &Tensor, grad: &Tensor, needs: &[bool]) -> Vec<Option<Tensor>> {
        let (m, k, n) = (self.m, self.k, self.n);
        let (a, b) = (&inputs[0], &inputs[1]);
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
            grads.push(needs[2].then(|| constant(bias_grad(grad.data(), n), &[n])));
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

    fn linear_impl(&self, w: &Tensor, bias: Option<&Tensor>, op: &'static str) -> Result<Tensor> {
        let (&[m, k], &[k2, n]) = (self.dims(), w.dims()) else {
            return Err(TensorError::shape(op, format!("needs two matrices, got {} and {}", self.shape(), w.shape())));
        };
        if k != k2 {
            return Err(TensorError::shape(op, format!("{} @ {}: inner sizes {k} and {k2} differ", self.shape(), w.shape())));
        }
        let mut y = vec![0.0; m * n];
        if let Some(b) = bias {
            if b.dims() != [n] {
                return Err(TensorError::shape(op, format!("bias {} for {n} outputs", b.shape())));
            }
            // start from the bias and accumulate the product onto it
            for row in y.chunks_exact_mut(n) {
                row.copy_from_slice(b.data());
            }
        }
        sgemm(
            MatRef::row_major(self.data(), m, k),
            MatRef::row_major(w.data(), k, n),
            MatMut::row_major(&mut y, m, n),
            bias.is_some(),
        );
        let back = MatmulBackward { m, k, n, has_bias: bias.is_some() };
        Ok(match bias {
            Some(b) => Tensor::from_op(y, [m, n], &[self, w, b], back),
            None => Tensor::from_op(y, [m, n], &[self, w], back),
        })
    }
}
