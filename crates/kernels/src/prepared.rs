//! A convolution's weights prepared once for inference, in the layout the
//! forward microkernel reads (as ONNX Runtime and oneDNN prepack at session
//! creation): the implicit GEMM's panels of 64 output channels, each panel's
//! whole reduction contiguous and 64-byte aligned. Without them the implicit
//! GEMM copies every block of weights into such panels once per band of
//! output pixels, and the `gemm` crate (1x1 convolutions) once per call.
//!
//! A [`PreparedConv`] is built from plain HWIO weights (`[kh, kw, in/groups,
//! out]`), by whoever owns them, once per weight version (a zoo model's
//! eval-mode folded convolution caches one next to its folded weights).
//! Training never sees it: the autograd path takes the plain weights.

use crate::conv::ConvGeometry;
use crate::conv_gemm::Epilogue;

/// Output channels per panel of the implicit GEMM (four zmm vectors).
pub(crate) const PANEL: usize = 64;

/// A 64-byte aligned, zero-initialised buffer of floats.
#[derive(Debug)]
pub(crate) struct Aligned {
    buf: Vec<f32>,
    shift: usize,
}

impl Aligned {
    pub(crate) fn zeroed(len: usize) -> Self {
        let buf = vec![0.0f32; len + 16];
        let shift = buf.as_ptr().align_offset(64).min(16);
        Aligned { buf, shift }
    }
    pub(crate) fn as_slice(&self) -> &[f32] {
        &self.buf[self.shift..]
    }
    pub(crate) fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.buf[self.shift..]
    }
}

/// Convolution weights with the forms the forward kernels read, prepared once.
#[derive(Debug)]
pub struct PreparedConv {
    /// `(kh, kw, in/groups, out, groups)`.
    shape: (usize, usize, usize, usize, usize),
    /// `[panel][kh * kw * in][PANEL]` (zeros past `out`), when the implicit GEMM can run it.
    panels: Option<Aligned>,
    /// Winograd F(2x2, 3x3) transformed weights, for 3x3 dense layers ([`crate::winograd`]).
    winograd: Option<Aligned>,
}

impl PreparedConv {
    /// Prepares HWIO weights `w` of `kh x kw` windows, `in_per_group` input channels per
    /// group, `out` output channels, `groups` groups.
    ///
    /// Panics if `w` does not hold `kh * kw * in_per_group * out` values.
    pub fn new(w: &[f32], (kh, kw, in_per_group, out): (usize, usize, usize, usize), groups: usize) -> Self {
        let k = kh * kw * in_per_group;
        assert_eq!(w.len(), k * out, "prepared conv: weight length");
        let dense = groups == 1 && packs_panels();
        let panels = dense.then(|| {
            let np = out.div_ceil(PANEL);
            let mut p = Aligned::zeroed(np * k * PANEL);
            let dst = p.as_mut_slice();
            for (kk, row) in w.chunks_exact(out.max(1)).enumerate() {
                for (q, src) in row.chunks(PANEL).enumerate() {
                    dst[(q * k + kk) * PANEL..][..src.len()].copy_from_slice(src);
                }
            }
            p
        });
        #[cfg(target_arch = "x86_64")]
        let winograd = crate::winograd::worth_preparing((kh, kw, in_per_group, out), groups)
            .then(|| crate::winograd::transform_weights(w, in_per_group, out));
        #[cfg(not(target_arch = "x86_64"))]
        let winograd = None;
        PreparedConv { shape: (kh, kw, in_per_group, out, groups), panels, winograd }
    }

    /// Whether these weights fit `geo` (its kernel, channels and groups).
    pub fn fits(&self, geo: &ConvGeometry) -> bool {
        self.shape == (geo.kernel_h, geo.kernel_w, geo.group_in(), geo.out_c, geo.groups)
    }

    /// The implicit GEMM's panels, if prepared.
    pub(crate) fn panels(&self) -> Option<&[f32]> {
        self.panels.as_ref().map(Aligned::as_slice)
    }
}

/// Whether this CPU runs the implicit GEMM, the only reader of the panels.
fn packs_panels() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        crate::x86::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `y = act(conv(x, w) + bias (+ residual))` into a new vector, reading `prep`
/// (prepared from `w`'s values) where its kernel runs, `w` elsewhere.
///
/// Panics if `prep` does not [`fit`](PreparedConv::fits) `geo` or a length is wrong.
pub fn conv2d_forward_prepared(
    geo: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    prep: &PreparedConv,
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    act: crate::conv::ConvAct,
) -> Vec<f32> {
    assert!(prep.fits(geo), "prepared conv: weights of another shape");
    let relu = act == crate::conv::ConvAct::Relu;
    let epi = Epilogue { bias, residual, relu, then: if relu { None } else { act.unary() } };
    #[cfg(target_arch = "x86_64")]
    if let Some(u) = &prep.winograd
        && crate::winograd::preferred(geo)
    {
        crate::alloc::configure();
        let n = geo.output_len();
        check(geo, x, w, epi);
        return crate::profile::timed(
            || ("winograd", crate::conv::describe(geo), crate::conv::flops(geo)),
            // SAFETY: the Winograd forward writes every output value.
            || unsafe { crate::alloc::filled_vec(n, |y| crate::winograd::forward(geo, x, u.as_slice(), epi, y)) },
        );
    }
    #[cfg(target_arch = "x86_64")]
    if let Some(panels) = prep.panels()
        && crate::conv::prepared_path(geo)
    {
        crate::alloc::configure();
        let n = geo.output_len();
        check(geo, x, w, epi);
        return crate::profile::timed(
            || ("igemm+pk", crate::conv::describe(geo), crate::conv::flops(geo)),
            // SAFETY: the implicit GEMM writes every output value.
            || unsafe {
                crate::alloc::filled_vec(n, |y| {
                    crate::conv_igemm::forward_weights(geo, x, crate::conv_igemm::Weights::Panels(panels), epi, y)
                })
            },
        );
    }
    match residual {
        Some(r) => crate::conv::conv2d_forward_residual_vec(geo, x, w, bias, r, act),
        None => crate::conv::conv2d_forward_vec(geo, x, w, bias, act),
    }
}

/// The length checks every forward makes.
fn check(geo: &ConvGeometry, x: &[f32], w: &[f32], epi: Epilogue<'_>) {
    geo.check(x.len(), w.len(), geo.output_len());
    assert!(epi.bias.is_none_or(|b| b.len() == geo.out_c), "conv: bias length");
    assert!(epi.residual.is_none_or(|r| r.len() == geo.output_len()), "conv: residual length");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::{self, ConvAct};

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.0 - 1.0).collect()
    }

    /// The plain-loop reference, then the residual and the activation.
    fn reference(geo: &ConvGeometry, x: &[f32], w: &[f32], b: &[f32], r: Option<&[f32]>, act: ConvAct) -> Vec<f32> {
        let mut y = vec![0.0; geo.output_len()];
        conv::conv2d_forward_reference(geo, x, w, Some(b), &mut y);
        if let Some(r) = r {
            y.iter_mut().zip(r).for_each(|(v, r)| *v += r);
        }
        let op = act.unary();
        y.iter().map(|&v| op.map_or(v, |u| u.apply(v))).collect()
    }

    #[test]
    fn prepared_weights_match_the_reference() {
        let g = |n, (h, w), c, co, k: usize, s: usize, p: usize| {
            ConvGeometry::new(n, (h, w, c), (k, k, co), (s, s), (1, 1), (p, p, p, p))
        };
        let cases = [
            // 1x1 (the gemm crate's, on plain weights), ragged channels and strided
            g(2, (9, 11), 37, 67, 1, 1, 0),
            g(1, (14, 13), 24, 130, 1, 2, 0),
            // 3x3, padded; few pixels with a long reduction (split over the reduction)
            g(2, (13, 11), 19, 20, 3, 1, 1),
            g(1, (7, 7), 300, 520, 3, 1, 1),
            g(1, (1, 1), 700, 16, 1, 1, 0),
            // enough 2x2 tiles for the Winograd path
            g(2, (30, 29), 16, 24, 3, 1, 1),
            // grouped: no panels, the plain path
            g(2, (6, 5), 8, 12, 3, 1, 1).with_groups(4),
        ];
        for geo in cases {
            let x = values(geo.input_len(), 1);
            let w = values(geo.weight_len(), 2);
            let b = values(geo.out_c, 3);
            let r = values(geo.output_len(), 4);
            let prep = PreparedConv::new(&w, (geo.kernel_h, geo.kernel_w, geo.group_in(), geo.out_c), geo.groups);
            assert!(prep.fits(&geo));
            for act in [ConvAct::Identity, ConvAct::Relu, ConvAct::Relu6, ConvAct::Silu] {
                for res in [None, Some(r.as_slice())] {
                    let want = reference(&geo, &x, &w, &b, res, act);
                    let got = conv2d_forward_prepared(&geo, &x, &w, &prep, Some(&b), res, act);
                    for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                        assert!((g - e).abs() <= 1e-4 * (1.0 + e.abs()), "{geo:?} {act:?} [{i}]: {g} vs {e}");
                    }
                }
            }
        }
    }

    #[test]
    fn panels_hold_each_weight_once_at_its_place() {
        let (k, out) = (5, 70);
        let w = values(k * out, 9);
        let prep = PreparedConv::new(&w, (1, 1, k, out), 1);
        let Some(p) = prep.panels() else { return };
        assert_eq!(p.as_ptr().align_offset(64), 0);
        for kk in 0..k {
            for o in 0..out {
                assert_eq!(p[((o / PANEL) * k + kk) * PANEL + o % PANEL], w[kk * out + o]);
            }
            // the second panel's lanes past `out` are zero
            assert!(p[(k + kk) * PANEL + out - PANEL..(k + kk + 1) * PANEL].iter().all(|v| *v == 0.0));
        }
    }
}
