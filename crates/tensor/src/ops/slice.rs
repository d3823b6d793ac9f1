//! Slicing along one axis: `narrow` (PyTorch's `Tensor.narrow`), `split` with a
//! list of sizes and `chunk` into equal parts (`torch.split`, `torch.chunk`).
//! Res2Net, GhostNet, CSP and Inception-style blocks cut their channels this way.
//!
//! The tensor is viewed as `[outer, axis, inner]`: every outer row keeps one
//! contiguous run of `len * inner` values, copied whole. On the channel (last)
//! axis `inner` is 1 and each pixel's slice is one `memcpy`. The backward writes
//! the gradient back into that run of a zero tensor of the input's shape.

use super::constant;
use crate::{Backward, Result, Tensor, TensorError};

/// `x` viewed as `[outer, axis, inner]`.
fn outer_inner(dims: &[usize], axis: usize) -> (usize, usize) {
    (dims[..axis].iter().product(), dims[axis + 1..].iter().product())
}

/// Copies, from each of the `outer` rows of `x` (each `row` values long), the
/// run `[start, start + len)` into consecutive runs of `y`.
pub(crate) fn gather_runs(x: &[f32], row: usize, start: usize, len: usize, y: &mut [f32]) {
    if len == 0 {
        return;
    }
    for (xr, yr) in x.chunks_exact(row).zip(y.chunks_exact_mut(len)) {
        yr.copy_from_slice(&xr[start..start + len]);
    }
}

/// The inverse of [`gather_runs`]: writes consecutive runs of `y` into the run
/// `[start, start + len)` of each `row`-long row of `x` (the rest untouched).
pub(crate) fn scatter_runs(y: &[f32], row: usize, start: usize, len: usize, x: &mut [f32]) {
    if len == 0 {
        return;
    }
    for (xr, yr) in x.chunks_exact_mut(row).zip(y.chunks_exact(len)) {
        xr[start..start + len].copy_from_slice(yr);
    }
}

struct NarrowBackward {
    axis: usize,
    start: usize,
}

impl Backward for NarrowBackward {
    fn name(&self) -> &'static str {
        "narrow"
    }
    fn backward(&self, inputs: &[Tensor], output: &Tensor, grad: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        let x = &inputs[0];
        if output.dims() == x.dims() {
            return vec![Some(grad.detach())];
        }
        let (_, inner) = outer_inner(x.dims(), self.axis);
        let row = x.dims()[self.axis] * inner;
        let mut dx = vec![0.0; x.numel()];
        let len = output.dims()[self.axis] * inner;
        if row > 0 {
            scatter_runs(grad.data(), row, self.start * inner, len, &mut dx);
        }
        vec![Some(constant(dx, x.dims()))]
    }
}

impl Tensor {
    /// The slice `start..start + len` of `axis`, all other axes whole
    /// (`[.., d, ..] -> [.., len, ..]`); a copy, with a backward that puts the
    /// gradient back into that slice (zeros elsewhere).
    pub fn narrow(&self, axis: usize, start: usize, len: usize) -> Result<Tensor> {
        let Some(&d) = self.dims().get(axis) else {
            return Err(TensorError::invalid("narrow", format!("axis {axis} out of range for {}", self.shape())));
        };
        if start.checked_add(len).is_none_or(|end| end > d) {
            return Err(TensorError::invalid(
                "narrow",
                format!("slice {start}..{start}+{len} out of range for axis {axis} of {}", self.shape()),
            ));
        }
        if start == 0 && len == d {
            // the whole axis: same values, but still its own node so that
            // the gradient reaches the input through `narrow`
            return Ok(self.share_data(self.shape().clone(), &[self], NarrowBackward { axis, start }));
        }
        let (_, inner) = outer_inner(self.dims(), axis);
        let mut shape = self.dims().to_vec();
        shape[axis] = len;
        let mut y = vec![0.0; shape.iter().product()];
        if d * inner > 0 {
            gather_runs(self.data(), d * inner, start * inner, len * inner, &mut y);
        }
        Ok(Tensor::from_op(y, shape, &[self], NarrowBackward { axis, start }))
    }

    /// Cuts `axis` into consecutive parts of the given `sizes`, which must sum
    /// to its length (`torch.split` with a list). Each part is a [`Tensor::narrow`].
    pub fn split(&self, axis: usize, sizes: &[usize]) -> Result<Vec<Tensor>> {
        let Some(&d) = self.dims().get(axis) else {
            return Err(TensorError::invalid("split", format!("axis {axis} out of range for {}", self.shape())));
        };
        let total: usize = sizes.iter().sum();
        if total != d {
            return Err(TensorError::invalid(
                "split",
                format!("sizes {sizes:?} sum to {total}, axis {axis} of {} has {d}", self.shape()),
            ));
        }
        let mut start = 0;
        sizes
            .iter()
            .map(|&len| {
                let part = self.narrow(axis, start, len);
                start += len;
                part
            })
            .collect()
    }

    /// Cuts `axis` into `n` equal parts (`torch.chunk` where the length
    /// divides evenly; an error otherwise, rather than a short last part).
    pub fn chunk(&self, axis: usize, n: usize) -> Result<Vec<Tensor>> {
        let Some(&d) = self.dims().get(axis) else {
            return Err(TensorError::invalid("chunk", format!("axis {axis} out of range for {}", self.shape())));
        };
        if n == 0 || !d.is_multiple_of(n) {
            return Err(TensorError::invalid(
                "chunk",
                format!("axis {axis} of {} ({d}) does not split into {n} equal parts", self.shape()),
            ));
        }
        self.split(axis, &vec![d / n; n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-row run copies against element-by-element index arithmetic on
    /// ragged sizes, on the first, a middle and the last (channel) axis.
    #[test]
    fn run_copies_equal_the_index_reference() {
        for &(a, b, c) in &[(1usize, 1usize, 1usize), (3, 5, 7), (2, 67, 3), (5, 4, 67), (1, 13, 33)] {
            let dims = [a, b, c];
            let x: Vec<f32> = (0..a * b * c).map(|i| i as f32 * 0.5 - 3.0).collect();
            for axis in 0..3 {
                let d = dims[axis];
                for (start, len) in [(0, d), (0, 1.min(d)), (d / 3, d - d / 3), (d / 2, d.div_ceil(2) - d % 2)] {
                    let y = Tensor::from_vec(x.clone(), dims).unwrap().narrow(axis, start, len).unwrap();
                    let mut out = dims;
                    out[axis] = len;
                    let mut want = Vec::new();
                    for i in 0..out[0] {
                        for j in 0..out[1] {
                            for k in 0..out[2] {
                                let mut idx = [i, j, k];
                                idx[axis] += start;
                                want.push(x[(idx[0] * b + idx[1]) * c + idx[2]]);
                            }
                        }
                    }
                    assert_eq!(y.dims(), out);
                    assert_eq!(y.data(), want.as_slice(), "{dims:?} axis {axis} {start}+{len}");
                    // scatter is gather's inverse: back into zeros, then gathered again
                    let (_, inner) = outer_inner(&dims, axis);
                    let mut back = vec![0.0; x.len()];
                    scatter_runs(y.data(), d * inner, start * inner, len * inner, &mut back);
                    let mut again = vec![0.0; y.numel()];
                    gather_runs(&back, d * inner, start * inner, len * inner, &mut again);
                    assert_eq!(again, want);
                    assert_eq!(back.iter().filter(|v| **v != 0.0).count(), want.iter().filter(|v| **v != 0.0).count());
                }
            }
        }
    }
}
