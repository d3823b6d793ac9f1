//! Spatial padding of NHWC tensors: constant padding whose negative amounts crop
//! (PyTorch's `F.pad` / `nn.ZeroPad2d`; NASNet shifts its input by one pixel with
//! `ZeroPad2d((-1, 1, -1, 1))`) and reflect padding (`nn.ReflectionPad2d`, the
//! border mirrored without repeating the edge pixel).
//!
//! Both are one gather: each output row and column reads one input row and column
//! (or none: the constant). The backward scatters the gradient back along the same
//! map, adding where reflection reads a pixel twice.

use super::constant;
use crate::{Backward, Result, Tensor, TensorError};

/// Pixels added on each side of the height and width axes; a negative amount
/// removes that many pixels from that side instead (PyTorch's convention).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pad2d {
    pub top: isize,
    pub bottom: isize,
    pub left: isize,
    pub right: isize,
}

impl Pad2d {
    /// PyTorch's argument order for the last two axes: `(left, right, top, bottom)`.
    pub fn torch(left: isize, right: isize, top: isize, bottom: isize) -> Self {
        Pad2d { top, bottom, left, right }
    }

    /// The same amount on every side.
    pub fn uniform(p: isize) -> Self {
        Pad2d { top: p, bottom: p, left: p, right: p }
    }
}

/// What the added pixels hold.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PadMode {
    /// A constant value (zero in `ZeroPad2d`).
    Constant(f32),
    /// The input mirrored about its edge pixel (`[a b c]` padded by 2: `c b [a b c] b a`).
    Reflect,
}

/// For each output index along one axis of length `size` padded by
/// `(before, after)`, the input index it reads (`None`: the constant).
fn axis_map(size: usize, before: isize, after: isize, mode: PadMode) -> Option<Vec<Option<usize>>> {
    let out = size as isize + before + after;
    if out < 0 {
        return None;
    }
    let last = size as isize - 1;
    Some(
        (0..out)
            .map(|o| {
                let i = o - before;
                match mode {
                    PadMode::Constant(_) => (0..=last).contains(&i).then_some(i as usize),
                    PadMode::Reflect => {
                        // amounts are checked to be under `size`, so one reflection suffices
                        let r = if i < 0 {
                            -i
                        } else if i > last {
                            2 * last - i
                        } else {
                            i
                        };
                        Some(r as usize)
                    }
                }
            })
            .collect(),
    )
}

struct PadBackward {
    rows: Vec<Option<usize>>,
    cols: Vec<Option<usize>>,
}

impl Backward for PadBackward {
    fn name(&self) -> &'static str {
        "pad2d"
    }
    fn backward(&self, inputs: &[Tensor], _output: &Tensor, grad: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        let x = &inputs[0];
        let [n, h, w, c] = *x.dims() else { unreachable!("checked in forward") };
        let (oh, ow) = (self.rows.len(), self.cols.len());
        let g = grad.data();
        let mut dx = vec![0.0f32; x.numel()];
        for b in 0..n {
            for (oy, iy) in self.rows.iter().enumerate() {
                let Some(iy) = *iy else { continue };
                for (ox, ix) in self.cols.iter().enumerate() {
                    let Some(ix) = *ix else { continue };
                    let src = &g[((b * oh + oy) * ow + ox) * c..][..c];
                    let dst = &mut dx[((b * h + iy) * w + ix) * c..][..c];
                    for (d, s) in dst.iter_mut().zip(src) {
                        *d += s;
                    }
                }
            }
        }
        vec![Some(constant(dx, x.dims()))]
    }
}

impl Tensor {
    /// Pads (or, with negative amounts, crops) the height and width of
    /// `[n, h, w, c]`: `-> [n, h + top + bottom, w + left + right, c]`.
    ///
    /// Reflect padding needs non-negative amounts smaller than the axis it
    /// pads (PyTorch's rule: there must be a pixel to mirror).
    pub fn pad2d(&self, pad: Pad2d, mode: PadMode) -> Result<Tensor> {
        let [n, h, w, c] = *self.dims() else {
            return Err(TensorError::shape("pad2d", format!("input must be [n, h, w, c], got {}", self.shape())));
        };
        if mode == PadMode::Reflect {
            let fits = |p: isize, size: usize| p >= 0 && (p as usize) < size;
            if !(fits(pad.top, h) && fits(pad.bottom, h) && fits(pad.left, w) && fits(pad.right, w)) {
                return Err(TensorError::invalid(
                    "pad2d",
                    format!(
                        "reflect padding {pad:?} must be non-negative and smaller than the padded axis of {}",
                        self.shape()
                    ),
                ));
            }
        }
        let maps = axis_map(h, pad.top, pad.bottom, mode).zip(axis_map(w, pad.left, pad.right, mode));
        let Some((rows, cols)) = maps.filter(|(r, c)| !r.is_empty() && !c.is_empty()) else {
            return Err(TensorError::invalid("pad2d", format!("cropping {pad:?} leaves nothing of {}", self.shape())));
        };
        let fill = match mode {
            PadMode::Constant(v) => v,
            PadMode::Reflect => 0.0,
        };
        let (oh, ow) = (rows.len(), cols.len());
        let xd = self.data();
        let mut y = vec![fill; n * oh * ow * c];
        for b in 0..n {
            for (oy, iy) in rows.iter().enumerate() {
                let Some(iy) = *iy else { continue };
                let out_row = &mut y[(b * oh + oy) * ow * c..][..ow * c];
                let in_row = &xd[(b * h + iy) * w * c..][..w * c];
                for (ox, ix) in cols.iter().enumerate() {
                    if let Some(ix) = *ix {
                        out_row[ox * c..(ox + 1) * c].copy_from_slice(&in_row[ix * c..(ix + 1) * c]);
                    }
                }
            }
        }
        Ok(Tensor::from_op(y, [n, oh, ow, c], &[self], PadBackward { rows, cols }))
    }
}
