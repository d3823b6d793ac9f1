//! Winograd convolution F(2x2, 3x3) for 3x3 stride-1 dense layers at inference
//! (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016):
//! each 2x2 block of output pixels comes from a 4x4 block of input through 16
//! products of `cin x cout` matrices instead of 36, 2.25x fewer
//! multiply-accumulates than the direct convolution.
//!
//! * weights, once ([`transform_weights`], held by [`crate::prepared`]):
//!   `U = G g G^T` per (input, output) channel pair, stored per element `e`
//!   of the 4x4 transform in the implicit GEMM's panels of 64 output channels;
//! * per call, in blocks of output tiles sized so that a block's transformed
//!   input and products stay in L2: the input transform `V = B^T d B`
//!   (channels as the vector axis), 16 products `M[e] = V[e] @ U[e]` by the
//!   implicit GEMM's register tile ([`x86::gemm_tile`]), and the output
//!   transform `Y = A^T M A` with the bias, a residual and the activation
//!   applied as each pixel is stored.
//!
//! The transforms' coefficients are 0, ±1 and ±1/2, so the rounding error
//! stays close to the direct sum's; the test states the measured bound.

// the transforms read best as explicit `[i][j]` indexing
#![allow(clippy::needless_range_loop)]

use crate::conv::ConvGeometry;
use crate::conv_gemm::Epilogue;
use crate::prepared::{Aligned, PANEL};
use crate::scratch;
use crate::x86::{self, GEMM_ROWS, GemmTile, TileInit};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Floats of transformed input and products one block of tiles keeps (1 MiB, L2).
const BLOCK_FLOATS: usize = 1 << 18;

/// Most tiles in one block.
const MAX_TILES: usize = 120;

/// Whether the weights of a `3x3`, `cin -> cout` convolution are worth
/// transforming: a dense layer wide enough for the products to run near peak.
pub(crate) fn worth_preparing((kh, kw, cin, cout): (usize, usize, usize, usize), groups: usize) -> bool {
    x86::available() && groups == 1 && (kh, kw) == (3, 3) && cin >= 16 && cout >= 16 && enabled() != Some(false)
}

/// `CONVNET_WINOGRAD` (`0` off, `1` wherever it applies), read once: for benchmarks and tests.
fn enabled() -> Option<bool> {
    use std::sync::OnceLock;
    static ON: OnceLock<Option<bool>> = OnceLock::new();
    *ON.get_or_init(|| match std::env::var("CONVNET_WINOGRAD").as_deref() {
        Ok("0") => Some(false),
        Ok("1") => Some(true),
        _ => None,
    })
}

/// Whether [`forward`] can run `geo`.
pub(crate) fn supported(geo: &ConvGeometry) -> bool {
    x86::available()
        && geo.groups == 1
        && (geo.kernel_h, geo.kernel_w) == (3, 3)
        && (geo.stride_h, geo.stride_w) == (1, 1)
        && (geo.dilation_h, geo.dilation_w) == (1, 1)
}

/// The cost model: Winograd where it applies and every thread gets at least
/// two blocks of tiles (fewer, and the implicit GEMM's finer split of the
/// work wins: ResNet-50's 7x7 layers at batch 1 have 16 tiles).
pub(crate) fn preferred(geo: &ConvGeometry) -> bool {
    if !supported(geo) || enabled() == Some(false) {
        return false;
    }
    enabled() == Some(true) || blocks(geo).0 >= 2 * crate::threads()
}

/// `(number of blocks, tiles per block)` of a forward.
fn blocks(geo: &ConvGeometry) -> (usize, usize) {
    let total = geo.batch * geo.out_h.div_ceil(2) * geo.out_w.div_ceil(2);
    let per = (BLOCK_FLOATS / (16 * (geo.in_c + geo.out_c))).clamp(GEMM_ROWS, MAX_TILES);
    let count = total.div_ceil(per);
    (count, total.div_ceil(count.max(1)))
}

/// `G g G^T` of HWIO `3x3` weights `w` (`[3, 3, cin, cout]`), laid out
/// `[e][panel][cin][PANEL]` (zeros past `cout`), 64-byte aligned.
pub(crate) fn transform_weights(w: &[f32], cin: usize, cout: usize) -> Aligned {
    assert_eq!(w.len(), 9 * cin * cout, "winograd: weight length");
    const G: [[f64; 3]; 4] = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]];
    let np = cout.div_ceil(PANEL);
    let mut out = Aligned::zeroed(16 * np * cin * PANEL);
    let u = out.as_mut_slice();
    for ci in 0..cin {
        for co in 0..cout {
            let g = |ky: usize, kx: usize| w[((ky * 3 + kx) * cin + ci) * cout + co] as f64;
            // t = G g (4x3), then U = t G^T (4x4)
            let t: [[f64; 3]; 4] =
                std::array::from_fn(|i| std::array::from_fn(|x| (0..3).map(|k| G[i][k] * g(k, x)).sum()));
            for i in 0..4 {
                for j in 0..4 {
                    let v: f64 = (0..3).map(|k| t[i][k] * G[j][k]).sum();
                    let e = i * 4 + j;
                    u[((e * np + co / PANEL) * cin + ci) * PANEL + co % PANEL] = v as f32;
                }
            }
        }
    }
    out
}

/// A raw pointer tasks writing disjoint parts of one buffer may share.
#[derive(Clone, Copy)]
struct Shared(*mut f32);
// SAFETY: tasks write disjoint output pixels (each belongs to one tile).
unsafe impl Send for Shared {}
// SAFETY: as above.
unsafe impl Sync for Shared {}

impl Shared {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// `y = act(conv(x, w) + bias + residual)` from transformed weights `u`
/// ([`transform_weights`] of `w`); see [`supported`]. `y` may be
/// uninitialised: every value is written.
pub(crate) fn forward(geo: &ConvGeometry, x: &[f32], u: &[f32], epi: Epilogue<'_>, y: &mut [MaybeUninit<f32>]) {
    assert!(supported(geo));
    let (c, oc) = (geo.in_c, geo.out_c);
    let np = oc.div_ceil(PANEL);
    assert!(x.len() >= geo.input_len() && y.len() >= geo.output_len());
    assert!(u.len() >= 16 * np * c * PANEL && u.as_ptr().align_offset(64) == 0, "winograd: transformed weights");
    assert!(epi.bias.is_none_or(|b| b.len() == oc) && epi.residual.is_none_or(|r| r.len() == geo.output_len()));
    if geo.output_len() == 0 {
        return;
    }
    let (th, tw) = (geo.out_h.div_ceil(2), geo.out_w.div_ceil(2));
    let total = geo.batch * th * tw;
    let (count, per) = blocks(geo);
    let out = Shared(y.as_mut_ptr().cast::<f32>());
    (0..count).into_par_iter().for_each(|bi| {
        let (t0, t1) = (bi * per, ((bi + 1) * per).min(total));
        if t0 >= t1 {
            return;
        }
        let nt = t1 - t0;
        let mut v = scratch::take(16 * nt * c, false);
        let mut m = scratch::take(16 * nt * oc, false);
        let zero = vec![0.0f32; c];
        let mut tmp = scratch::take(16 * c, false);
        // input transform: V[e][t] = (B^T d B)[e], channels innermost
        for t in 0..nt {
            let (n, ty, tx) = tile_of(t0 + t, th, tw);
            let d = |i: usize, j: usize| -> &[f32] {
                let iy = (2 * ty + i).wrapping_sub(geo.pad_top);
                let ix = (2 * tx + j).wrapping_sub(geo.pad_left);
                if iy < geo.in_h && ix < geo.in_w {
                    &x[((n * geo.in_h + iy) * geo.in_w + ix) * c..][..c]
                } else {
                    &zero
                }
            };
            // along the rows: tmp[r][j] = (B^T d)[r][j]
            for j in 0..4 {
                let (d0, d1, d2, d3) = (d(0, j), d(1, j), d(2, j), d(3, j));
                combine(&mut tmp[j * c..][..c], d0, d2, -1.0);
                combine(&mut tmp[(4 + j) * c..][..c], d1, d2, 1.0);
                combine(&mut tmp[(8 + j) * c..][..c], d2, d1, -1.0);
                combine(&mut tmp[(12 + j) * c..][..c], d1, d3, -1.0);
            }
            // along the columns: V[r * 4 + s] = (tmp B)[r][s]
            for r in 0..4 {
                let row = &tmp[r * 4 * c..(r + 1) * 4 * c];
                let (q0, q1, q2, q3) = (&row[..c], &row[c..2 * c], &row[2 * c..3 * c], &row[3 * c..]);
                let at = |s: usize| ((r * 4 + s) * nt + t) * c;
                combine(&mut v[at(0)..][..c], q0, q2, -1.0);
                combine(&mut v[at(1)..][..c], q1, q2, 1.0);
                combine(&mut v[at(2)..][..c], q2, q1, -1.0);
                combine(&mut v[at(3)..][..c], q1, q3, -1.0);
            }
        }
        // the 16 products M[e] = V[e] @ U[e]
        let runs = [(0usize, c)];
        for e in 0..16 {
            let a: Vec<*const f32> = (0..nt).map(|t| v[(e * nt + t) * c..].as_ptr()).collect();
            let cp: Vec<*mut f32> = (0..nt).map(|t| m[(e * nt + t) * oc..].as_mut_ptr()).collect();
            for p in 0..np {
                let col = p * PANEL;
                let width = PANEL.min(oc - col);
                let nv = width.div_ceil(16);
                let args = GemmTile {
                    runs: &runs,
                    b: u[(e * np + p) * c * PANEL..].as_ptr(),
                    ldb: PANEL,
                    last_mask: x86::lane_mask(width - 16 * (nv - 1)),
                    init: TileInit::Zero,
                    col,
                    residual: &[],
                    relu: false,
                };
                for r0 in (0..nt).step_by(GEMM_ROWS) {
                    let rows = GEMM_ROWS.min(nt - r0);
                    // SAFETY: avx512f checked by `supported`; each row of V[e]
                    // holds `c` floats, the panel `c` rows of PANEL floats (the
                    // masked lanes past `width` never loaded), each row of M[e]
                    // has columns col..col + width.
                    unsafe { x86::gemm_tile_dyn(rows, nv, &args, &a[r0..], &cp[r0..]) };
                }
            }
        }
        // output transform: Y = A^T M A, then bias, residual and activation per pixel
        let mut acc = scratch::take(oc, false);
        for t in 0..nt {
            let (n, ty, tx) = tile_of(t0 + t, th, tw);
            let me = |e: usize| &m[(e * nt + t) * oc..][..oc];
            // each output pixel from the (up to 9) elements A^T weighs in
            for a in 0..2 {
                for b in 0..2 {
                    let (oy, ox) = (2 * ty + a, 2 * tx + b);
                    if oy >= geo.out_h || ox >= geo.out_w {
                        continue;
                    }
                    let px = (n * geo.out_h + oy) * geo.out_w + ox;
                    let dst = &mut acc[..oc];
                    dst.fill(0.0);
                    for r in 0..4 {
                        let wr = A_T[a][r];
                        if wr == 0.0 {
                            continue;
                        }
                        for s in 0..4 {
                            let w = wr * A_T[b][s];
                            if w == 0.0 {
                                continue;
                            }
                            for (o, mv) in dst.iter_mut().zip(me(r * 4 + s)) {
                                *o += w * mv;
                            }
                        }
                    }
                    if let Some(bias) = epi.bias {
                        dst.iter_mut().zip(bias).for_each(|(o, b)| *o += b);
                    }
                    if let Some(res) = epi.residual {
                        dst.iter_mut().zip(&res[px * oc..(px + 1) * oc]).for_each(|(o, r)| *o += r);
                    }
                    if epi.relu {
                        dst.iter_mut().for_each(|o| *o = o.max(0.0));
                    }
                    if let Some(op) = epi.then {
                        crate::elementwise::unary_in_place_serial(op, dst);
                    }
                    // SAFETY: pixel `px` belongs to this tile only, and lies in `y`
                    // (its length was checked above).
                    unsafe { std::ptr::copy_nonoverlapping(dst.as_ptr(), out.get().add(px * oc), oc) };
                }
            }
        }
    });
}

/// `dst = a + sign * b`, elementwise (a loop the compiler vectorises).
fn combine(dst: &mut [f32], a: &[f32], b: &[f32], sign: f32) {
    for ((o, a), b) in dst.iter_mut().zip(a).zip(b) {
        *o = a + sign * b;
    }
}

/// `A^T` of F(2x2, 3x3).
const A_T: [[f32; 4]; 2] = [[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, -1.0, -1.0]];

/// `(image, tile row, tile column)` of tile number `t`.
fn tile_of(t: usize, th: usize, tw: usize) -> (usize, usize, usize) {
    (t / (th * tw), t / tw % th, t % tw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv;

    /// Deterministic values in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// Max |winograd - direct| over the direct output's largest magnitude, with
    /// weights at Kaiming scale (what trained networks have, ±sqrt(6 / fan_in))
    /// and relu-like non-negative inputs.
    fn relative_error(geo: &ConvGeometry, epi_relu: bool, residual: bool) -> f32 {
        let x: Vec<f32> = values(geo.input_len(), 1).iter().map(|v| v.abs()).collect();
        let bound = (6.0 / (9 * geo.in_c) as f32).sqrt();
        let w: Vec<f32> = values(geo.weight_len(), 2).iter().map(|v| v * bound).collect();
        let b = values(geo.out_c, 3);
        let r = values(geo.output_len(), 4);
        let mut want = vec![0.0; geo.output_len()];
        conv::conv2d_forward_reference(geo, &x, &w, Some(&b), &mut want);
        if residual {
            want.iter_mut().zip(&r).for_each(|(v, r)| *v += r);
        }
        if epi_relu {
            want.iter_mut().for_each(|v| *v = v.max(0.0));
        }
        let u = transform_weights(&w, geo.in_c, geo.out_c);
        let epi = Epilogue { bias: Some(&b), residual: residual.then_some(r.as_slice()), relu: epi_relu, then: None };
        let mut y = vec![f32::NAN; geo.output_len()];
        forward(geo, &x, u.as_slice(), epi, crate::alloc::as_uninit(&mut y));
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        y.iter().zip(&want).fold(0.0f32, |m, (g, e)| m.max((g - e).abs())) / scale
    }

    #[test]
    fn matches_the_direct_convolution_within_1e5_of_the_output_scale() {
        if !x86::available() {
            return;
        }
        let g = |n, (h, w), c, co, p: (usize, usize, usize, usize)| {
            ConvGeometry::new(n, (h, w, c), (3, 3, co), (1, 1), (1, 1), p)
        };
        let cases = [
            // odd sizes (ragged last tiles), ragged channels, several blocks
            (g(2, (13, 11), 19, 37, (1, 1, 1, 1)), false, false),
            (g(1, (7, 9), 16, 70, (0, 0, 0, 0)), true, true),
            (g(3, (6, 5), 33, 17, (2, 0, 1, 1)), true, false),
            // a ResNet stage at real width: 256 channels (reduction 2304)
            (g(1, (14, 14), 256, 256, (1, 1, 1, 1)), false, true),
        ];
        for (geo, relu, res) in cases {
            let err = relative_error(&geo, relu, res);
            // measured: up to about 1e-6; the bound is 1e-4
            assert!(err <= 1e-5, "{geo:?}: max error {err:e} of the output scale");
        }
    }

    #[test]
    fn the_cost_model_leaves_few_tiles_to_the_implicit_gemm() {
        if !x86::available() || crate::threads() < 2 {
            return;
        }
        let g = |n, hw, c| ConvGeometry::new(n, (hw, hw, c), (3, 3, c), (1, 1), (1, 1), (1, 1, 1, 1));
        // ResNet-50's 7x7 stage at batch 1: 16 tiles in one block
        assert!(!preferred(&g(1, 7, 512)) || enabled() == Some(true));
        // its 56x56 stage: 784 tiles
        assert!(preferred(&g(1, 56, 64)) || enabled() == Some(false));
        // strided or grouped: not supported
        let s2 = ConvGeometry::new(1, (56, 56, 64), (3, 3, 64), (2, 2), (1, 1), (1, 1, 1, 1));
        assert!(!supported(&s2) && !supported(&g(1, 56, 64).with_groups(2)));
    }
}
