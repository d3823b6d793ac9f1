//! Axis permutation (PyTorch's `Tensor.permute`, NumPy's `transpose`): NHWC to
//! NCHW and back, attention's head split, channel shuffle.
//!
//! The permutation is first simplified: size-1 axes are dropped and axes that
//! stay next to each other, in order, are merged (`[n, h, w, c] -> [n, c, h, w]`
//! becomes `[n, hw, c] -> [n, c, hw]`). What is left either keeps the innermost
//! axis, and is a series of contiguous run copies, or moves it, and is a series
//! of 2-D transposes done in 16 x 16 tiles so that reads and writes both stay
//! within a few cache lines. The backward is the inverse permutation.

use super::constant;
use crate::{Backward, Result, Tensor, TensorError};

/// Row-major strides of `dims`.
fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// The same permutation with size-1 axes dropped and runs of consecutive
/// input axes that stay consecutive merged into one: `(input dims, perm)`.
fn simplify(dims: &[usize], perm: &[usize]) -> (Vec<usize>, Vec<usize>) {
    // runs of input axes, in output order: (first, last) input axis
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for &a in perm.iter().filter(|&&a| dims[a] != 1) {
        match runs.last_mut() {
            // `a` follows the run's last axis, skipping only size-1 axes
            Some(run) if a > run.1 && dims[run.1 + 1..a].iter().all(|&d| d == 1) => run.1 = a,
            _ => runs.push((a, a)),
        }
    }
    // the runs in input order are the new input axes
    let mut order: Vec<usize> = (0..runs.len()).collect();
    order.sort_by_key(|&r| runs[r].0);
    let in_dims = order.iter().map(|&r| dims[runs[r].0..=runs[r].1].iter().product()).collect();
    let mut perm = vec![0; runs.len()];
    for (k, &r) in order.iter().enumerate() {
        perm[r] = k;
    }
    (in_dims, perm)
}

/// `x` (row-major, `dims`) with its axes permuted: output axis `j` is input axis `perm[j]`.
pub(crate) fn permute_data(x: &[f32], dims: &[usize], perm: &[usize]) -> Vec<f32> {
    let (d, p) = simplify(dims, perm);
    let r = d.len();
    if r <= 1 || x.is_empty() {
        // nothing moves (an identity after merging, or no values)
        return x.to_vec();
    }
    let in_strides = strides(&d);
    let out_dims: Vec<usize> = p.iter().map(|&a| d[a]).collect();
    let out_strides = strides(&out_dims);
    if p[r - 1] == r - 1 {
        // the innermost axis stays: append its runs in output order (no zeroing pass)
        let run = d[r - 1];
        let mut y = Vec::with_capacity(x.len());
        let mut idx = vec![0; r - 1];
        let mut src = 0;
        for _ in 0..x.len() / run {
            y.extend_from_slice(&x[src..src + run]);
            for j in (0..r - 1).rev() {
                idx[j] += 1;
                src += in_strides[p[j]];
                if idx[j] < out_dims[j] {
                    break;
                }
                src -= in_strides[p[j]] * out_dims[j];
                idx[j] = 0;
            }
        }
        return y;
    }
    // the input's innermost axis (output position q) trades places with the
    // output's innermost (input axis b): one 2-D transpose per other index
    let mut y = vec![0.0; x.len()];
    let q = p.iter().position(|&a| a == r - 1).expect("a permutation holds every axis");
    let b = p[r - 1];
    let (rows, cols) = (d[r - 1], d[b]);
    let outer: Vec<usize> = (0..r - 1).filter(|&j| j != q).collect();
    let count: usize = outer.iter().map(|&j| out_dims[j]).product();
    let mut idx = vec![0; outer.len()];
    let (mut src, mut dst) = (0, 0);
    for _ in 0..count {
        transpose(&x[src..], in_strides[b], &mut y[dst..], out_strides[q], rows, cols);
        for k in (0..outer.len()).rev() {
            let j = outer[k];
            idx[k] += 1;
            src += in_strides[p[j]];
            dst += out_strides[j];
            if idx[k] < out_dims[j] {
                break;
            }
            src -= in_strides[p[j]] * out_dims[j];
            dst -= out_strides[j] * out_dims[j];
            idx[k] = 0;
        }
    }
    y
}

/// `y[i * ys + j] = x[j * xs + i]` for `i < rows`, `j < cols`, in square tiles:
/// each tile's input rows are read whole (contiguous) into a local block, whose
/// columns are then written as whole output rows.
fn transpose(x: &[f32], xs: usize, y: &mut [f32], ys: usize, rows: usize, cols: usize) {
    const TILE: usize = 16;
    let mut block = [[0.0f32; TILE]; TILE];
    for i0 in (0..rows).step_by(TILE) {
        let ni = TILE.min(rows - i0);
        for j0 in (0..cols).step_by(TILE) {
            let nj = TILE.min(cols - j0);
            for (jj, b) in block.iter_mut().enumerate().take(nj) {
                let src = (j0 + jj) * xs + i0;
                b[..ni].copy_from_slice(&x[src..src + ni]);
            }
            for ii in 0..ni {
                let dst = (i0 + ii) * ys + j0;
                for (o, b) in y[dst..dst + nj].iter_mut().zip(&block) {
                    *o = b[ii];
                }
            }
        }
    }
}

struct PermuteBackward {
    /// The inverse permutation.
    inverse: Vec<usize>,
}

impl Backward for PermuteBackward {
    fn name(&self) -> &'static str {
        "permute"
    }
    fn backward(&self, inputs: &[Tensor], _output: &Tensor, grad: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        let dx = permute_data(grad.data(), grad.dims(), &self.inverse);
        vec![Some(constant(dx, inputs[0].dims()))]
    }
}

impl Tensor {
    /// The tensor with its axes reordered: output axis `j` is input axis
    /// `axes[j]` (`[n, h, w, c].permute(&[0, 3, 1, 2]) -> [n, c, h, w]`). A copy;
    /// `axes` must name every axis once.
    pub fn permute(&self, axes: &[usize]) -> Result<Tensor> {
        let r = self.rank();
        let mut seen = vec![false; r];
        let ok = axes.len() == r && axes.iter().all(|&a| a < r && !std::mem::replace(&mut seen[a], true));
        if !ok {
            return Err(TensorError::invalid(
                "permute",
                format!("axes {axes:?} are not a permutation of the {r} axes of {}", self.shape()),
            ));
        }
        let shape: Vec<usize> = axes.iter().map(|&a| self.dims()[a]).collect();
        let mut inverse = vec![0; r];
        for (j, &a) in axes.iter().enumerate() {
            inverse[a] = j;
        }
        let y = permute_data(self.data(), self.dims(), axes);
        Ok(Tensor::from_op(y, shape, &[self], PermuteBackward { inverse }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Element-by-element multi-index reference.
    fn permute_ref(x: &[f32], dims: &[usize], perm: &[usize]) -> Vec<f32> {
        let s = strides(dims);
        let out: Vec<usize> = perm.iter().map(|&a| dims[a]).collect();
        let mut idx = vec![0; out.len()];
        let mut y = Vec::with_capacity(x.len());
        for _ in 0..x.len() {
            y.push(x[idx.iter().zip(perm).map(|(&i, &a)| i * s[a]).sum::<usize>()]);
            for j in (0..out.len()).rev() {
                idx[j] += 1;
                if idx[j] < out[j] {
                    break;
                }
                idx[j] = 0;
            }
        }
        y
    }

    /// Every permutation of `0..n`.
    fn permutations(n: usize) -> Vec<Vec<usize>> {
        if n == 0 {
            return vec![vec![]];
        }
        let mut out = Vec::new();
        for p in permutations(n - 1) {
            for k in 0..=p.len() {
                let mut q = p.clone();
                q.insert(k, n - 1);
                out.push(q);
            }
        }
        out
    }

    /// The run-copy and tiled-transpose paths against the reference: every
    /// permutation of ranks 1 to 4 on ragged sizes (1..=67, size-1 axes that the
    /// simplification drops, tiles with partial edges), and some of rank 5.
    #[test]
    fn fast_paths_equal_the_index_reference() {
        let shapes: [&[usize]; 10] = [
            &[7],
            &[3, 5],
            &[17, 33],
            &[1, 67],
            &[2, 3, 5],
            &[1, 19, 1],
            &[2, 17, 3, 5],
            &[3, 1, 40, 33],
            &[1, 5, 4, 67],
            &[2, 3, 1, 5, 7],
        ];
        for dims in shapes {
            let n: usize = dims.iter().product();
            let x: Vec<f32> = (0..n).map(|i| i as f32).collect();
            for perm in permutations(dims.len()) {
                let got = permute_data(&x, dims, &perm);
                assert_eq!(got, permute_ref(&x, dims, &perm), "{dims:?} by {perm:?}");
            }
        }
    }

    #[test]
    fn simplify_drops_unit_axes_and_merges_runs() {
        assert_eq!(simplify(&[2, 3, 4, 5], &[0, 3, 1, 2]), (vec![2, 12, 5], vec![0, 2, 1]));
        assert_eq!(simplify(&[2, 3, 4, 5], &[0, 1, 2, 3]), (vec![120], vec![0]));
        assert_eq!(simplify(&[2, 1, 4, 5], &[0, 2, 1, 3]), (vec![40], vec![0]));
        assert_eq!(simplify(&[1, 1], &[1, 0]), (vec![], vec![]));
    }
}
