//! Elementwise kernels on the training and inference hot paths, with an
//! AVX-512 fast path and a portable loop: activations (relu, relu6, sigmoid,
//! SiLU: the exponential is vectorised in `x86.rs`, since a libm `expf` per
//! element was 7% of EfficientNet inference), the activation masks of the
//! convolution backward, the relu backward mask and dropout.

use crate::conv::ConvAct;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Elements per parallel task.
const TASK: usize = 1 << 15;

/// The relu backward mask: `out[i] = if y[i] > 0 { g[i] } else { 0 }`, where
/// `y` is the relu's output and `g` the gradient of it. Branch-free: a random
/// sign pattern costs nothing extra.
pub fn relu_backward(g: &[f32], y: &[f32], out: &mut [f32]) {
    assert!(g.len() == out.len() && y.len() == out.len(), "relu_backward: lengths differ");
    if out.len() < TASK {
        relu_backward_serial(g, y, out);
    } else {
        out.par_chunks_mut(TASK)
            .zip(g.par_chunks(TASK).zip(y.par_chunks(TASK)))
            .for_each(|(o, (g, y))| relu_backward_serial(g, y, o));
    }
}

/// [`relu_backward`] on the calling thread only.
pub fn relu_backward_serial(g: &[f32], y: &[f32], out: &mut [f32]) {
    assert!(g.len() == out.len() && y.len() == out.len(), "relu_backward: lengths differ");
    #[cfg(target_arch = "x86_64")]
    if crate::x86::available() {
        // SAFETY: avx512f checked; equal lengths asserted above.
        unsafe { crate::x86::relu_mask(g, y, out) };
        return;
    }
    // a select per element: the reference loop, compiled for AVX2 where there is one
    vectorised(|| relu_backward_reference(g, y, out));
}

/// Plain-loop [`relu_backward`], the reference for tests.
#[inline]
pub fn relu_backward_reference(g: &[f32], y: &[f32], out: &mut [f32]) {
    for ((o, g), y) in out.iter_mut().zip(g).zip(y) {
        *o = if *y > 0.0 { *g } else { 0.0 };
    }
}

/// Calls `f` compiled for AVX-512 when the CPU has it, else for AVX2 when it
/// has that, so that plain loops inlined into it vectorise 16 or 8 lanes wide
/// (the crates are built for the baseline x86-64, where they would run 4
/// wide); else calls it as is. Results are the same on every path: Rust
/// neither reassociates nor contracts `a * b + c` into a fused multiply-add.
#[inline(always)]
pub(crate) fn vectorised<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::x86::available() {
            #[target_feature(enable = "avx512f")]
            unsafe fn run<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            // SAFETY: avx512f checked.
            return unsafe { run(f) };
        }
        if avx2() {
            #[target_feature(enable = "avx2")]
            unsafe fn run2<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            // SAFETY: avx2 checked.
            return unsafe { run2(f) };
        }
    }
    f()
}

/// Whether the CPU has AVX2 (and `CONVNET_NO_SIMD` is unset): the path of
/// [`vectorised`] for CPUs without AVX-512.
#[cfg(target_arch = "x86_64")]
pub(crate) fn avx2() -> bool {
    use std::sync::OnceLock;
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| std::env::var_os("CONVNET_NO_SIMD").is_none() && is_x86_feature_detected!("avx2"))
}

/// `f(x)` elementwise into a new vector: no zeroing pass first, in parallel
/// for large inputs, and the loop compiled for AVX-512 ([`vectorised`]).
pub fn map(x: &[f32], f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    let body = |x: &[f32], out: &mut [MaybeUninit<f32>]| {
        vectorised(|| {
            for (o, v) in out.iter_mut().zip(x) {
                o.write(f(*v));
            }
        })
    };
    // SAFETY: the chunks cover the output and `body` writes every element.
    unsafe {
        crate::alloc::filled_vec(x.len(), |out| {
            if x.len() < TASK {
                body(x, out);
            } else {
                out.par_chunks_mut(TASK / 2).zip(x.par_chunks(TASK / 2)).for_each(|(o, x)| body(x, o));
            }
        })
    }
}

/// `f(a, b)` elementwise over two equal-length slices into a new vector, as [`map`].
pub fn zip_map(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    assert_eq!(a.len(), b.len(), "zip_map: lengths differ");
    let body = |a: &[f32], b: &[f32], out: &mut [MaybeUninit<f32>]| {
        vectorised(|| {
            for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
                o.write(f(*x, *y));
            }
        })
    };
    // SAFETY: the chunks cover the output and `body` writes every element.
    unsafe {
        crate::alloc::filled_vec(a.len(), |out| {
            if a.len() < TASK {
                body(a, b, out);
            } else {
                out.par_chunks_mut(TASK / 2)
                    .zip(a.par_chunks(TASK / 2).zip(b.par_chunks(TASK / 2)))
                    .for_each(|(o, (a, b))| body(a, b, o));
            }
        })
    }
}

/// `f(a, b, c)` elementwise over three equal-length slices into a new vector, as [`map`].
pub fn zip3_map(a: &[f32], b: &[f32], c: &[f32], f: impl Fn(f32, f32, f32) -> f32 + Sync) -> Vec<f32> {
    assert!(a.len() == b.len() && a.len() == c.len(), "zip3_map: lengths differ");
    let body = |a: &[f32], b: &[f32], c: &[f32], out: &mut [MaybeUninit<f32>]| {
        vectorised(|| {
            for (((o, x), y), z) in out.iter_mut().zip(a).zip(b).zip(c) {
                o.write(f(*x, *y, *z));
            }
        })
    };
    const PART: usize = TASK / 2;
    // SAFETY: the chunks cover the output and `body` writes every element.
    unsafe {
        crate::alloc::filled_vec(a.len(), |out| {
            if a.len() < TASK {
                body(a, b, c, out);
            } else {
                out.par_chunks_mut(PART)
                    .zip(a.par_chunks(PART).zip(b.par_chunks(PART).zip(c.par_chunks(PART))))
                    .for_each(|(o, (a, (b, c)))| body(a, b, c, o));
            }
        })
    }
}

/// The SiLU backward `g * s * (1 + x (1 - s))` with `s = sigmoid(x)` recovered from the
/// forward's output as `y / x` (`1/2` at `x = 0`): one vectorisable pass over `(x, y, g)`
/// without an exponential. A libm `expf` per element to recompute the sigmoid was 28% of
/// an EfficientNet-B0 training step on a machine without AVX-512.
pub fn silu_backward(x: &[f32], y: &[f32], g: &[f32]) -> Vec<f32> {
    zip3_map(x, y, g, silu_backward_one)
}

/// One element of [`silu_backward`].
#[inline(always)]
pub fn silu_backward_one(x: f32, y: f32, g: f32) -> f32 {
    let s = if x != 0.0 { y / x } else { 0.5 };
    g * (s * (1.0 + x * (1.0 - s)))
}

/// `y[n, p, ch] *= g[n, ch]` in place, for `y: [n, pixels, c]` and `g: [n, c]`:
/// squeeze-excitation's excite (a gate per image and channel) without a new buffer.
pub fn scale_channels_in_place(y: &mut [f32], g: &[f32], pixels: usize, channels: usize) {
    if y.is_empty() {
        return;
    }
    assert!(pixels * channels > 0 && y.len().is_multiple_of(pixels * channels), "scale_channels: input length");
    assert_eq!(g.len(), y.len() / pixels, "scale_channels: one gate per image and channel");
    let rows = (TASK / 2 / channels).max(1);
    y.par_chunks_mut(rows * channels).enumerate().for_each(|(t, chunk)| {
        vectorised(|| {
            for (i, row) in chunk.chunks_exact_mut(channels).enumerate() {
                let n = (t * rows + i) / pixels;
                for (v, s) in row.iter_mut().zip(&g[n * channels..(n + 1) * channels]) {
                    *v *= s;
                }
            }
        })
    });
}

/// The activations with a vectorised kernel (`convnet-tensor` keeps the others scalar).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unary {
    /// `max(v, 0)` (NaN propagates).
    Relu,
    /// `min(max(v, 0), 6)`.
    Relu6,
    /// `1 / (1 + e^-v)`.
    Sigmoid,
    /// `v * sigmoid(v)` (swish).
    Silu,
    /// `v * min(max(v + 3, 0), 6) / 6` (MobileNet-V3's hard-swish).
    HardSwish,
    /// `v * Phi(v)`: the exact (erf) GELU of PyTorch's `nn.GELU()` and Keras' default.
    Gelu,
}

impl Unary {
    /// The scalar definition (libm `exp`): the portable path and the tests' reference.
    #[inline]
    pub fn apply(self, v: f32) -> f32 {
        match self {
            Unary::Relu => {
                if v < 0.0 {
                    0.0
                } else {
                    v
                }
            }
            Unary::Relu6 => v.clamp(0.0, 6.0),
            Unary::Sigmoid => sigmoid(v),
            Unary::Silu => v * sigmoid(v),
            Unary::HardSwish => v * (v + 3.0).clamp(0.0, 6.0) / 6.0,
            Unary::Gelu => gelu(v),
        }
    }
}

/// `erfc(z)` for `z >= 0` with fractional error < 1.2e-7 (Numerical Recipes' Chebyshev
/// fit), in f64. The AVX-512 GELU evaluates the same fit in f32 (`x86::gelu_ps`).
fn erfc_fit(z: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.5 * z);
    t * (-z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
        .exp()
}

/// erf with |error| < 1.2e-7, computed in f64 so that GELU's derivative matches
/// PyTorch's exact form to f32 precision.
pub fn erf(x: f32) -> f32 {
    let r = erfc_fit((x as f64).abs());
    (if x >= 0.0 { 1.0 - r } else { r - 1.0 }) as f32
}

/// The exact GELU `x * Phi(x)`, with `Phi` read from erfc on the negative side
/// (`x/2 * erfc(|x|/sqrt 2)`) so that the tail keeps its relative accuracy, where
/// `1 + erf` would cancel.
pub fn gelu(x: f32) -> f32 {
    let x = x as f64;
    let r = erfc_fit(x.abs() * std::f64::consts::FRAC_1_SQRT_2);
    (0.5 * x * if x < 0.0 { r } else { 2.0 - r }) as f32
}

/// `erfc(z)` for `z >= 0` in f64 to about 1e-15 relative (the Maclaurin series of erf
/// below 2.5, the continued fraction of erfc above): slow, the reference that the
/// fast forms are tested against (std has no erf).
pub fn erfc_reference(z: f64) -> f64 {
    if z < 2.5 {
        let (mut term, mut sum, mut n) = (z, z, 0.0);
        while term.abs() > 1e-17 * sum.abs() {
            n += 1.0;
            term *= -z * z / n;
            sum += term / (2.0 * n + 1.0);
        }
        1.0 - sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // erfc(z) = exp(-z^2)/sqrt(pi) / (z + (1/2)/(z + 1/(z + (3/2)/(z + ...))))
        let mut t = z;
        for k in (1..=120).rev() {
            t = z + (k as f64 / 2.0) / t;
        }
        (-z * z).exp() / std::f64::consts::PI.sqrt() / t
    }
}

/// `1 / (1 + e^-v)` without overflow for either sign.
#[inline]
pub fn sigmoid(v: f32) -> f32 {
    if v >= 0.0 {
        1.0 / (1.0 + (-v).exp())
    } else {
        let e = v.exp();
        e / (1.0 + e)
    }
}

/// `op(x)` elementwise into a new vector (in parallel for large inputs, no zeroing pass).
pub fn unary(op: Unary, x: &[f32]) -> Vec<f32> {
    // SAFETY: every chunk of the output is written by `unary_into`.
    unsafe {
        crate::alloc::filled_vec(x.len(), |out| {
            if x.len() < TASK {
                unary_into(op, x, out);
            } else {
                out.par_chunks_mut(TASK).zip(x.par_chunks(TASK)).for_each(|(o, x)| unary_into(op, x, o));
            }
        })
    }
}

/// `y = op(y)` elementwise, in place.
pub fn unary_in_place(op: Unary, y: &mut [f32]) {
    if y.len() < TASK {
        unary_in_place_serial(op, y);
    } else {
        y.par_chunks_mut(TASK).for_each(|c| unary_in_place_serial(op, c));
    }
}

pub(crate) fn unary_in_place_serial(op: Unary, y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::x86::available() {
        let p = y.as_mut_ptr();
        // SAFETY: avx512f checked; the same buffer is read and written in place, vector by vector.
        unsafe { crate::x86::unary(op, p, p, y.len()) };
        return;
    }
    y.iter_mut().for_each(|v| *v = op.apply(*v));
}

/// `y = op(y + bias)` in one pass, on the calling thread (`bias` as long as `y`).
pub(crate) fn bias_unary_in_place_serial(op: Unary, y: &mut [f32], bias: &[f32]) {
    assert_eq!(y.len(), bias.len(), "bias_unary: lengths");
    #[cfg(target_arch = "x86_64")]
    if crate::x86::available() {
        let p = y.as_mut_ptr();
        // SAFETY: avx512f checked; `y` and `bias` hold `y.len()` floats, `y` read and
        // written in place, vector by vector.
        unsafe { crate::x86::bias_unary(op, p, bias.as_ptr(), p, y.len()) };
        return;
    }
    y.iter_mut().zip(bias).for_each(|(v, b)| *v = op.apply(*v + b));
}

fn unary_into(op: Unary, x: &[f32], out: &mut [MaybeUninit<f32>]) {
    debug_assert_eq!(x.len(), out.len());
    #[cfg(target_arch = "x86_64")]
    if crate::x86::available() {
        // SAFETY: avx512f checked; `out` holds `x.len()` floats (written only).
        unsafe { crate::x86::unary(op, x.as_ptr(), out.as_mut_ptr().cast(), x.len()) };
        return;
    }
    for (o, v) in out.iter_mut().zip(x) {
        o.write(op.apply(*v));
    }
}

impl ConvAct {
    /// The same activation as a [`Unary`] (`None` for the identity).
    pub fn unary(self) -> Option<Unary> {
        match self {
            ConvAct::Identity => None,
            ConvAct::Relu => Some(Unary::Relu),
            ConvAct::Relu6 => Some(Unary::Relu6),
            ConvAct::Silu => Some(Unary::Silu),
            ConvAct::HardSwish => Some(Unary::HardSwish),
        }
    }
}

/// Applies a convolution's activation to its already computed output, in place.
pub(crate) fn conv_act_in_place(act: ConvAct, y: &mut [f32]) {
    if let Some(op) = act.unary() {
        unary_in_place(op, y);
    }
}

/// The gradient of a convolution's pre-activation from that of its output
/// `dy` and the output `y`: `dy` where relu's `y > 0` or relu6's `0 < y < 6`.
///
/// # Panics
/// For [`ConvAct::Silu`], whose derivative needs the pre-activation (the fused
/// SiLU is forward only).
pub(crate) fn conv_act_backward(act: ConvAct, dy: &[f32], y: &[f32], out: &mut [f32]) {
    assert!(dy.len() == out.len() && y.len() == out.len(), "conv_act_backward: lengths differ");
    match act {
        ConvAct::Identity => out.copy_from_slice(dy),
        ConvAct::Relu => relu_backward(dy, y, out),
        ConvAct::Relu6 => {
            out.par_chunks_mut(TASK).zip(dy.par_chunks(TASK).zip(y.par_chunks(TASK))).for_each(|(o, (g, y))| {
                for ((o, g), y) in o.iter_mut().zip(g).zip(y) {
                    *o = if *y > 0.0 && *y < 6.0 { *g } else { 0.0 };
                }
            })
        }
        ConvAct::Silu | ConvAct::HardSwish => {
            panic!("conv2d_backward: a fused {act:?} has no backward (run the activation as its own op)")
        }
    }
}

/// SplitMix64's increment: output `p` of a stream is `mix(origin + (p + 1) * GOLDEN)`.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

#[inline(always)]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Elements per dropout task (even, so a task starts on a whole 64-bit draw).
const DROPOUT_TASK: usize = 1 << 16;

/// Dropout's keep mask: `mask[i] = 1` when element `i` survives a drop probability `rate`.
///
/// Element `i` uses 24 bits of SplitMix64 output `i / 2` of the stream with `origin`, drawn by
/// position (counter-based), so the mask depends on the origin only — not on the thread count or
/// the task split — and every task computes its part independently. Written as a counter hash
/// rather than a sequential generator so the loop vectorises (64-bit multiplies need AVX-512DQ):
/// a sequential generator made dropout a quarter of a speech-commands training step.
pub fn dropout_mask(origin: u64, rate: f32, mask: &mut [u8]) {
    // keep when the 24-bit uniform u satisfies u / 2^24 >= rate
    let threshold = (f64::from(rate.clamp(0.0, 1.0)) * f64::from(1u32 << 24)).ceil() as u64;
    mask.par_chunks_mut(DROPOUT_TASK).enumerate().for_each(|(t, m)| {
        let first_pair = (t * DROPOUT_TASK / 2) as u64;
        #[cfg(target_arch = "x86_64")]
        if crate::x86::available() && std::arch::is_x86_feature_detected!("avx512dq") {
            // SAFETY: avx512f and avx512dq checked.
            unsafe { dropout_mask_avx512(origin, first_pair, threshold, m) };
            return;
        }
        dropout_mask_body(origin, first_pair, threshold, m);
    });
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
unsafe fn dropout_mask_avx512(origin: u64, first_pair: u64, threshold: u64, mask: &mut [u8]) {
    dropout_mask_body(origin, first_pair, threshold, mask);
}

#[inline(always)]
fn dropout_mask_body(origin: u64, first_pair: u64, threshold: u64, mask: &mut [u8]) {
    let mut pairs = mask.chunks_exact_mut(2);
    let mut p = first_pair;
    for pair in &mut pairs {
        let z = mix(origin.wrapping_add((p + 1).wrapping_mul(GOLDEN)));
        pair[0] = u8::from((z >> 8) & 0xFF_FFFF >= threshold);
        pair[1] = u8::from((z >> 40) & 0xFF_FFFF >= threshold);
        p += 1;
    }
    if let [last] = pairs.into_remainder() {
        let z = mix(origin.wrapping_add((p + 1).wrapping_mul(GOLDEN)));
        *last = u8::from((z >> 8) & 0xFF_FFFF >= threshold);
    }
}

/// `out[i] = x[i] * scale` where `mask[i] != 0`, else 0: dropout's forward (and, applied to the
/// gradient, its backward).
pub fn apply_mask(x: &[f32], mask: &[u8], scale: f32) -> Vec<f32> {
    assert_eq!(x.len(), mask.len(), "apply_mask: lengths differ");
    // SAFETY: the chunks cover the whole output and every element is written (no zeroing
    // pass over what can be a 100 MB activation).
    unsafe {
        crate::alloc::filled_vec(x.len(), |out| {
            out.par_chunks_mut(TASK).zip(x.par_chunks(TASK).zip(mask.par_chunks(TASK))).for_each(|(o, (x, m))| {
                for ((o, x), m) in o.iter_mut().zip(x).zip(m) {
                    o.write(x * (f32::from(*m) * scale));
                }
            })
        })
    }
}

/// `out[i] = sum over p < chunks of partials[p * plen + offset + i]`, added in chunk order:
/// the fixed-order reduction of per-chunk gradient partials that keeps weight gradients
/// independent of the number of threads (each output element is summed on its own).
pub(crate) fn sum_partials(out: &mut [f32], partials: &[f32], plen: usize, chunks: usize, offset: usize) {
    out.par_chunks_mut(4096).enumerate().for_each(|(i, o)| {
        let s = offset + i * 4096;
        o.copy_from_slice(&partials[s..s + o.len()]);
        for p in 1..chunks {
            for (o, v) in o.iter_mut().zip(&partials[p * plen + s..]) {
                *o += *v;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relu_backward_matches_reference_on_ragged_lengths() {
        for n in [0, 1, 15, 16, 17, 67, 100_003] {
            let g: Vec<f32> = (0..n).map(|i| (i % 13) as f32 - 6.0).collect();
            let y: Vec<f32> = (0..n).map(|i| ((i * 7) % 5) as f32 - 2.0).collect();
            let (mut a, mut b) = (vec![9.0; n], vec![9.0; n]);
            relu_backward(&g, &y, &mut a);
            relu_backward_reference(&g, &y, &mut b);
            assert_eq!(a, b, "n = {n}");
        }
    }

    #[test]
    fn vector_activations_match_f64_to_a_few_ulp() {
        // a dense sweep of [-100, 100] plus the ends of the exponential's range
        let mut xs: Vec<f32> = (-40_000..=40_000).map(|i| i as f32 * 0.0025).collect();
        xs.extend([0.0, -0.0, 1e-30, -1e-30, 5.9, 6.0, 6.1, 87.0, 88.7, 89.5, -87.0, -103.0, -110.0, 200.0, -200.0]);
        xs.extend([f32::INFINITY, f32::MIN_POSITIVE, -f32::MIN_POSITIVE, f32::MAX, f32::MIN]);
        let n = xs.len();
        let exact = |op: Unary, x: f64| -> f64 {
            let s = 1.0 / (1.0 + (-x).exp());
            match op {
                Unary::Relu => x.max(0.0),
                Unary::Relu6 => x.clamp(0.0, 6.0),
                Unary::Sigmoid => s,
                Unary::Silu => x * s,
                Unary::HardSwish => x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
                // Phi(x) = erfc(-x / sqrt 2) / 2, without cancellation on either side
                Unary::Gelu if x < 0.0 => 0.5 * x * erfc_reference(-x * std::f64::consts::FRAC_1_SQRT_2),
                Unary::Gelu => 0.5 * x * (2.0 - erfc_reference(x * std::f64::consts::FRAC_1_SQRT_2)),
            }
        };
        for op in [Unary::Relu, Unary::Relu6, Unary::Sigmoid, Unary::Silu, Unary::HardSwish, Unary::Gelu] {
            let got = unary(op, &xs);
            let mut in_place = xs.clone();
            unary_in_place(op, &mut in_place);
            assert_eq!(got, in_place, "{op:?}: in place");
            let mut worst = 0.0f64;
            for (x, g) in xs.iter().zip(&got) {
                let want = exact(op, *x as f64);
                if *g as f64 == want {
                    continue; // (infinities)
                }
                if op == Unary::HardSwish && x.abs() > f32::MAX / 6.0 {
                    // `x * 6` overflows first, as in PyTorch's float32 hardswish
                    assert!(g.is_infinite(), "{op:?}({x}) = {g}");
                    continue;
                }
                let err = (*g as f64 - want).abs();
                // relative 1e-6, or absolute below the normal range (denormal results)
                assert!(err <= 1e-6 * want.abs() || err < 1e-37, "{op:?}({x}) = {g}, want {want}");
                if want.abs() > 1e-30 {
                    worst = worst.max(err / want.abs());
                }
            }
            assert!(worst < 5e-7, "{op:?}: worst relative error {worst:.2e}");
            // the scalar definitions agree too (the portable path)
            for (x, g) in xs.iter().zip(&got).filter(|(_, g)| g.is_finite()) {
                let s = op.apply(*x);
                assert!((s - g).abs() <= 1e-6 * s.abs() || (s - g).abs() < 1e-37, "{op:?}({x}): {g} vs scalar {s}");
            }
            // NaN in, NaN out (as PyTorch), also on the parallel path
            let mut big = vec![0.5f32; 3 * TASK + 5];
            big[2 * TASK + 1] = f32::NAN;
            let y = unary(op, &big);
            assert!(y[2 * TASK + 1].is_nan(), "{op:?}(NaN)");
            assert!((y[0] - op.apply(0.5)).abs() <= 1e-6 * op.apply(0.5).abs(), "{op:?}(0.5) = {}", y[0]);
            assert_eq!(y.len(), big.len());
        }
        assert_eq!(n, xs.len());
    }

    #[test]
    fn dropout_mask_is_independent_of_the_task_split_and_keeps_the_right_share() {
        let n = 3 * DROPOUT_TASK + 7;
        let mut a = vec![9u8; n];
        dropout_mask(42, 0.25, &mut a);
        // the scalar body over the whole range gives the same mask
        let mut b = vec![9u8; n];
        dropout_mask_body(42, 0, (0.25f64 * f64::from(1u32 << 24)).ceil() as u64, &mut b);
        assert_eq!(a, b);
        let kept = a.iter().filter(|&&m| m == 1).count() as f64 / n as f64;
        assert!((kept - 0.75).abs() < 0.005, "{kept}");
        assert!(a.iter().all(|&m| m <= 1));
        let mut c = vec![0u8; n];
        dropout_mask(43, 0.25, &mut c);
        assert_ne!(a, c);
        let y = apply_mask(&[1.0, 2.0, 3.0], &[1, 0, 1], 2.0);
        assert_eq!(y, [2.0, 0.0, 6.0]);
    }
}
