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
///
/// Row by row along the last axis, where each operand is either a contiguous
/// row or one value repeated (squeeze-excitation's `[n, h, w, c] * [n, 1, 1, c]`
/// is the first kind on both sides), so the inner loops are plain slice loops
/// that vectorise; rows are split over threads for large outputs.
fn broadcast_zip(a: &Tensor, b: &Tensor, out: &[usize], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    use rayon::prelude::*;
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
    let rank = out.len();
    let inner = if rank > 0 { out[rank - 1] } else { 1 };
    let (ia, ib) = if rank > 0 { (sa[rank - 1], sb[rank - 1]) } else { (0, 0) };
    // the offsets of row `r` (an index over every axis but the last)
    let offsets = |mut r: usize| -> (usize, usize) {
        let (mut oa, mut ob) = (0, 0);
        for d in (0..rank.saturating_sub(1)).rev() {
            let i = r % out[d];
            r /= out[d];
            oa += i * sa[d];
            ob += i * sb[d];
        }
        (oa, ob)
    };
    let fill = |first_row: usize, rows: &mut [f32]| {
        for (i, row) in rows.chunks_exact_mut(inner).enumerate() {
            let (oa, ob) = offsets(first_row + i);
            match (ia, ib) {
                (0, 0) => row.fill(f(ad[oa], bd[ob])),
                (0, _) => {
                    let av = ad[oa];
                    for (v, bv) in row.iter_mut().zip(&bd[ob..ob + inner]) {
                        *v = f(av, *bv);
                    }
                }
                (_, 0) => {
                    let bv = bd[ob];
                    for (v, av) in row.iter_mut().zip(&ad[oa..oa + inner]) {
                        *v = f(*av, bv);
                    }
                }
                _ => {
                    for ((v, av), bv) in row.iter_mut().zip(&ad[oa..oa + inner]).zip(&bd[ob..ob + inner]) {
                        *v = f(*av, *bv);
                    }
                }
            }
        }
    };
    let rows_per_task = ((1usize << 14) / inner).max(1);
    if n < 1 << 15 {
        fill(0, &mut y);
    } else {
        y.par_chunks_mut(rows_per_task * inner).enumerate().for_each(|(t, c)| fill(t * rows_per_task, c));
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
        // an unbroadcast operand of a sum takes the gradient as it is: shared, not copied
        let pass = |t: &Tensor| {
            if t.dims() == out { grad.detach() } else { constant(sum_to_shape(g, out, t.dims()), t.dims()) }
        };
        let da = needs[0].then(|| match self.0 {
            BinaryOp::Add | BinaryOp::Sub => pass(a),
            BinaryOp::Mul => reduce(broadcast_zip(grad, b, out, |g, b| g * b), a),
            BinaryOp::Div => reduce(broadcast_zip(grad, b, out, |g, b| g / b), a),
        });
        let db = needs[1].then(|| match self.0 {
            BinaryOp::Add => pass(b),
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
        // one monomorphised loop per op (a `match` per element would not vectorise)
        let y = match op {
            BinaryOp::Add => broadcast_zip(self, other, &out, |a, b| a + b),
            BinaryOp::Sub => broadcast_zip(self, other, &out, |a, b| a - b),
            BinaryOp::Mul => broadcast_zip(self, other, &out, |a, b| a * b),
            BinaryOp::Div => broadcast_zip(self, other, &out, |a, b| a / b),
        };
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
    /// `self * g` with one factor per image and channel: `self: [n, h, w, c]`,
    /// `g: [n, c]` (squeeze-excitation's excite). Takes `self` by value: when no
    /// gradient is wanted and nothing else holds its buffer, the product is
    /// written in place instead of into a new activation-sized buffer.
    pub fn mul_channels(self, g: &Tensor) -> Result<Tensor> {
        let [n, h, w, c] = *self.dims() else {
            return Err(TensorError::shape(
                "mul_channels",
                format!("input must be [n, h, w, c], got {}", self.shape()),
            ));
        };
        if g.dims() != [n, c] {
            return Err(TensorError::shape(
                "mul_channels",
                format!("gates {} for an input of {}: expected [{n}, {c}]", g.shape(), self.shape()),
            ));
        }
        if self.requires_grad() || g.requires_grad() {
            return self.mul(&g.reshape(vec![n, 1, 1, c])?);
        }
        let mut y = self;
        convnet_kernels::elementwise::scale_channels_in_place(y.data_mut(), g.data(), h * w, c);
        Ok(y)
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
