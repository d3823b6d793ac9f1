//! Batched matrix product `[.., m, k] @ [.., k, n] -> [.., m, n]`, either operand read
//! transposed in place (attention's `q @ k^T` and `attn @ v`), through the same GEMM as
//! the convolutions (`convnet_kernels::gemm::sgemm_batched`). The leading axes are the
//! batch and must be equal. The backward is two more batched products on transposed
//! views: no operand is ever copied to transpose it.

use super::constant;
use crate::{Backward, Result, Tensor, TensorError};
use convnet_kernels::gemm::{MatRef, sgemm_batched};

/// Sizes of one product: `batch` entries of `(m x k) @ (k x n)`, and whether each
/// operand is stored transposed (`a` as `[k, m]`, `b` as `[n, k]`).
#[derive(Clone, Copy)]
struct Dims {
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
    ta: bool,
    tb: bool,
}

/// The view of one entry of a stored `rows x cols` matrix, transposed when `t`.
fn view(data: &[f32], rows: usize, cols: usize, t: bool) -> MatRef<'_> {
    let v = MatRef::row_major(data, rows, cols);
    if t { v.t() } else { v }
}

impl Dims {
    /// `op(a)`, `m x k`.
    fn a<'a>(&self, a: &'a [f32]) -> MatRef<'a> {
        if self.ta { view(a, self.k, self.m, true) } else { view(a, self.m, self.k, false) }
    }
    /// `op(b)`, `k x n`.
    fn b<'a>(&self, b: &'a [f32]) -> MatRef<'a> {
        if self.tb { view(b, self.n, self.k, true) } else { view(b, self.k, self.n, false) }
    }
}

struct BatchMatmulBackward(Dims);

impl Backward for BatchMatmulBackward {
    fn name(&self) -> &'static str {
        "batch_matmul"
    }
    fn backward(&self, inputs: &[Tensor], _output: &Tensor, grad: &Tensor, needs: &[bool]) -> Vec<Option<Tensor>> {
        let d = self.0;
        let (a, b, g) = (inputs[0].data(), inputs[1].data(), grad.data());
        let (mk, kn, mn) = (d.m * d.k, d.k * d.n, d.m * d.n);
        let gv = view(g, d.m, d.n, false);
        // C = op(A) op(B): d op(A) = G op(B)^T, d op(B) = op(A)^T G; a transposed operand's
        // gradient is the transpose of that, computed directly in its stored layout
        let da = needs[0].then(|| {
            let mut da = vec![0.0; a.len()];
            if d.ta {
                sgemm_batched(d.batch, d.b(b), kn, gv.t(), mn, &mut da, false);
            } else {
                sgemm_batched(d.batch, gv, mn, d.b(b).t(), kn, &mut da, false);
            }
            constant(da, inputs[0].dims())
        });
        let db = needs[1].then(|| {
            let mut db = vec![0.0; b.len()];
            if d.tb {
                sgemm_batched(d.batch, gv.t(), mn, d.a(a), mk, &mut db, false);
            } else {
                sgemm_batched(d.batch, d.a(a).t(), mk, gv, mn, &mut db, false);
            }
            constant(db, inputs[1].dims())
        });
        vec![da, db]
    }
}

impl Tensor {
    /// `op(self) @ op(other)` for each entry of the leading (batch) axes, `op` the
    /// transpose of the last two axes where `transpose_self` / `transpose_other` is set:
    /// `[.., m, k] @ [.., k, n] -> [.., m, n]` (`self` stored `[.., k, m]` when
    /// transposed, `other` `[.., n, k]`). Both operands need rank 3 or more and equal
    /// leading axes.
    pub fn batch_matmul(&self, other: &Tensor, transpose_self: bool, transpose_other: bool) -> Result<Tensor> {
        let (ad, bd) = (self.dims(), other.dims());
        let r = ad.len();
        if r < 3 || bd.len() != r || ad[..r - 2] != bd[..r - 2] {
            return Err(TensorError::shape(
                "batch_matmul",
                format!("needs equal batch axes and two matrix axes, got {} and {}", self.shape(), other.shape()),
            ));
        }
        let (m, k) = if transpose_self { (ad[r - 1], ad[r - 2]) } else { (ad[r - 2], ad[r - 1]) };
        let (k2, n) = if transpose_other { (bd[r - 1], bd[r - 2]) } else { (bd[r - 2], bd[r - 1]) };
        if k != k2 {
            return Err(TensorError::shape(
                "batch_matmul",
                format!("{} @ {}: inner sizes {k} and {k2} differ", self.shape(), other.shape()),
            ));
        }
        let batch: usize = ad[..r - 2].iter().product();
        let d = Dims { batch, m, k, n, ta: transpose_self, tb: transpose_other };
        let mut y = vec![0.0; batch * m * n];
        sgemm_batched(batch, d.a(self.data()), m * k, d.b(other.data()), k * n, &mut y, false);
        let mut shape = ad[..r - 2].to_vec();
        shape.extend([m, n]);
        Ok(Tensor::from_op(y, shape, &[self, other], BatchMatmulBackward(d)))
    }
}
