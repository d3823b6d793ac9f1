//! Elementwise add, sub, mul and div with NumPy broadcasting, and the
//! scalar forms. Broadcast gradients are summed back to each input's shape.

use super::{constant, zip_map};
use crate::{Backward, Result, Shape, Tensor, TensorError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl BinaryOp {
    fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
        }
    }
    fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
        }
    }
}

/// NumPy's broadcast of two shapes.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i + a.len() >= rank { a[i + a.len() - rank] } else { 1 };
        let db = if i + b.len() >= rank { b[i + b.len() - rank] } else { 1 };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

/// Strides of `shape` seen as a broadcast to `out` (0 along broadcast axes).
fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let own = Shape(shape.to_vec()).strides();
    let offset = out.len() - shape.len();
    (0..out.len()).map(|i| if i < offset || shape[i - offset] == 1 { 0 } else { own[i - offset] }).collect()
}

/// `f(a, b)` over the broadcast of the two shapes.
fn broadcast_zip(a: &Tensor, b: &Tensor, out: &[usize], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    if a.dims() == b.dims() {
        return zip_map(a.data(), b.data(), f);
    }
    let n: usize = out.iter().product();
    let mut y = vec![0.0f32; n];
    if n == 0 {
        return y;
    }
    let sa = broadcast_strides(a.dims(), out);
    let sb = broadcast_strides(b.dims(), out);
    let (ad, bd) = (a.data(), b.data());
    let inner = *out.last().unwrap_or(&1);
    let rank = out.len();
    let (ia, ib) = if rank > 0 { (sa[rank - 1], sb[rank - 1]) } else { (0, 0) };
    let mut index = vec![0usize; rank.saturating_sub(1)];
    for row in y.chunks_exact_mut(inner.max(1)) {
        let oa: usize = index.iter().zip(&sa).map(|(i, s)| i * s).sum();
        let ob: usize = index.iter().zip(&sb).map(|(i, s)| i * s).sum();
        for (j, v) in row.iter_mut().enumerate() {
            *v = f(ad[oa + j * ia], bd[ob + j * ib]);
        }
        for d in (0..index.len()).rev() {
            index[d] += 1;
            if index[d] < out[d] {
                break;
            }
            index[d] = 0;
        }
    }
    y
}

/// Sums `grad` (of shape `out`) down to `shape` over the broadcast axes.
pub(crate) fn sum_to_shape(grad: &[f32], out: &[usize], shape: &[usize]) -> Vec<f32> {
    if out == shape {
        return grad.to_vec();
    }
    let mut acc = vec![0.0f32; shape.iter().product()];
    let s = broadcast_strides(shape, out);
    let rank = out.len();
    let inner = *out.last().unwrap_or(&1);
    let is = if rank > 0 { s[rank - 1] } else { 0 };
    let mut index = vec![0usize; rank.saturating_sub(1)];
    for row in grad.chunks_exact(inner.max(1)) {
        let o: usize = index.iter().zip(&s).map(|(i, s)| i * s).sum();
        if is == 0 {
            acc[o] += row.iter().sum::<f32>();
        } else {
            for (j, v) in row.iter().enumerate() {
                acc[o + j * is] += *v;
            }
        }
        for d in (0..index.len()).rev() {
            index[d] += 1;
            if index[d] < out[d] {
                break;
            }
            index[d] = 0;
        }
    }
    acc
}

struct BinaryBackward(BinaryOp);

impl Backward for BinaryBackward {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn backward(&self, inputs: &[Tensor], output: &Tensor, grad: &Tensor, needs: &[bool]) -> Vec<Option<Tensor>> {
        let (a, b) = (&inputs[0], &inputs[1]);
        let out = output.dims();
        let g = grad.data();
        let reduce = |full: Vec<f32>, t: &Tensor| constant(sum_to_shape(&full, out, t.dims()), t.dims());
        let da = needs[0].then(|| match self.0 {
            BinaryOp::Add | BinaryOp::Sub => constant(sum_to_shape(g, out, a.dims()), a.dims()),
            BinaryOp::Mul => reduce(broadcast_zip(grad, b, out, |g, b| g * b), a),
            BinaryOp::Div => reduce(broadcast_zip(grad, b, out, |g, b| g / b), a),
        });
        let db = needs[1].then(|| match self.0 {
            BinaryOp::Add => constant(sum_to_shape(g, out, b.dims()), b.dims()),
            BinaryOp::Sub => constant(sum_to_shape(g, out, b.dims()).into_iter().map(|v| -v).collect(), b.dims()),
            BinaryOp::Mul => reduce(broadcast_zip(grad, a, out, |g, a| g * a), b),
            // d(a/b)/db = -a/b^2 = -(a/b)/b = -y/b
            BinaryOp::Div => {
                let gy = zip_map(g, output.data(), |g, y| g * y);
                let gy = constant(gy, out);
                let full = broadcast_zip(&gy, b, out, |gy, b| -gy / b);
                reduce(full, b)
            }
        });
        vec![da, db]
    }
}

impl Tensor {
    fn binary(&self, other: &Tensor, op: BinaryOp) -> Result<Tensor> {
        let out = broadcast_shape(self.dims(), other.dims()).ok_or_else(|| {
            TensorError::shape(op.name(), format!("shapes {} and {} do not broadcast", self.shape(), other.shape()))
        })?;
        let y = broadcast_zip(self, other, &out, move |a, b| op.apply(a, b));
        Ok(Tensor::from_op(y, out, &[self, other], BinaryBackward(op)))
    }
    /// `self + other` with broadcasting.
    pub fn add(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(other, BinaryOp::Add)
    }
    /// `self - other` with broadcasting.
    pub fn sub(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(other, BinaryOp::Sub)
    }
    /// `self * other` with broadcasting.
    pub fn mul(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(other, BinaryOp::Mul)
    }
    /// `self / other` with broadcasting.
    pub fn div(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(other, BinaryOp::Div)
    }
    /// `self * s`.
    pub fn scale(&self, s: f32) -> Tensor {
        self.affine(s, 0.0)
    }
    /// `self + s`.
    pub fn add_scalar(&self, s: f32) -> Tensor {
        self.affine(1.0, s)
    }
    /// `self * scale + shift`.
    pub fn affine(&self, scale: f32, shift: f32) -> Tensor {
        let y = super::map(self.data(), move |v| v * scale + shift);
        Tensor::from_op(y, self.shape().clone(), &[self], AffineBackward(scale))
    }
}

struct AffineBackward(f32);

impl Backward for AffineBackward {
    fn name(&self) -> &'static str {
        "affine"
    }
    fn backward(&self, _inputs: &[Tensor], _output: &Tensor, grad: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        let s = self.0;
        vec![Some(constant(super::map(grad.data(), move |g| g * s), grad.dims()))]
    }
}
