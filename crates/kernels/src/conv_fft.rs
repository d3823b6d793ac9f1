//! FFT convolution for large kernels: forward, input gradient and weight
//! gradient of dense (`groups == 1`), stride-1, undilated convolutions with
//! any kernel size and any (asymmetric) padding, chosen by a cost model from
//! the routing in `conv.rs`.
//!
//! Every image channel is zero-padded into a `p x q` grid (`2^a 3^b` sizes,
//! just large enough that the circular correlation equals the linear one on
//! every output: `p >= in_h + max(pad_top, pad_bottom)`, `>= out_h`,
//! `>= kernel_h`; the same for columns, `q` even) and transformed to its half
//! spectrum (`p x (q/2 + 1)` bins). Per bin the channels mix as a complex
//! product `[images x cin] x [cin x cout]`, as real GEMMs on the real and
//! imaginary blocks (`gemm::sgemm_serial`, bins in parallel):
//!
//! * forward: `Y = X conj(W)` (the engine's convolution is a correlation),
//! * input gradient: `dX = dY W^T`,
//! * weight gradient: `dW = X^T conj(dY)`, summed over the images inside
//!   the GEMM and over fixed image chunks in order,
//!
//! then inverse transforms give the outputs (bias and relu fused into the
//! store; the weight gradient's are the kernel's taps).
//!
//! The transforms are Stockham FFTs of our own over *vectors of channels*:
//! an NHWC image row is already `[position][channel]`, so every butterfly
//! works on whole channel vectors (AVX-512, radices up to 16 in registers,
//! a portable fallback of radices 2-4) and no layout is ever transposed.
//! `rustfft`/`realfft` were tried first: their transforms are fast, but
//! they need each sequence contiguous, and the transposes into and out of
//! that layout took twice as long as the transforms themselves. Rows go
//! first (two real points packed into one complex point), then columns, a
//! block of channels at a time so that the working set stays in L1.
//!
//! An image's spectrum is laid out `[kx][ky][re c | im c]` (bins
//! `kx * p + ky`), so a column is contiguous and the transforms run in
//! place; a chunk of images is `[image][bin][...]`, each image task owning
//! its block, and each bin task of the products gathers its bin's rows,
//! multiplies and writes them back (in place when `cin == cout`). Chunk
//! sizes minimise memory traffic (this machine streams about 5 GB/s beyond
//! a 16 to 32 MB cache share): small chunks whose spectra stay in cache when
//! the kernel's spectrum is small, else one large chunk whose spectra are
//! streamed out without being read first. The kernel's spectrum is cached
//! for the next call with bit-identical weights (the input gradient of the
//! same training step). Results do not depend on the number of threads:
//! every sum is done by one task in a fixed order.
//!
//! The cost model ([`preferred`]) compares the direct path's multiply-adds
//! at its measured speed with the transforms, products and memory traffic at
//! theirs; `CONVNET_NO_FFT` (any value) turns the FFT path off,
//! `CONVNET_FFT_ALWAYS` forces it wherever it is supported (to run test
//! suites through it) and [`set_routing`] overrides both (benchmarks).

use crate::conv::ConvGeometry;
use crate::gemm::{MatMut, MatRef, sgemm_serial};
use crate::scratch;
use rayon::prelude::*;
use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

// ---------------------------------------------------------------- routing

/// How convolutions choose between the FFT and the direct paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FftRouting {
    /// The cost model decides (the default).
    Auto,
    /// Never the FFT path (the default when `CONVNET_NO_FFT` is set).
    Never,
    /// The FFT path for every geometry it supports (benchmarks, tests).
    Always,
}

/// 0: not read yet; else `FftRouting` as 1, 2, 3.
static ROUTING: AtomicU8 = AtomicU8::new(0);

/// The current routing: [`set_routing`]'s, else `Never` when the
/// `CONVNET_NO_FFT` environment variable is set, `Always` when
/// `CONVNET_FFT_ALWAYS` is (to run test suites through the FFT path), else `Auto`.
pub fn routing() -> FftRouting {
    match ROUTING.load(Ordering::Relaxed) {
        1 => FftRouting::Auto,
        2 => FftRouting::Never,
        3 => FftRouting::Always,
        _ => {
            let r = if std::env::var_os("CONVNET_NO_FFT").is_some() {
                2
            } else if std::env::var_os("CONVNET_FFT_ALWAYS").is_some() {
                3
            } else {
                1
            };
            // a concurrent `set_routing` wins
            let _ = ROUTING.compare_exchange(0, r, Ordering::Relaxed, Ordering::Relaxed);
            routing()
        }
    }
}

/// Overrides the routing for the rest of the process (or until the next call).
pub fn set_routing(r: FftRouting) {
    let code = match r {
        FftRouting::Auto => 1,
        FftRouting::Never => 2,
        FftRouting::Always => 3,
    };
    ROUTING.store(code, Ordering::Relaxed);
}

/// One of the three products of a convolution's training step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvPass {
    /// `y = conv(x, w)`.
    Forward,
    /// `dx` from `dy` and `w`.
    Input,
    /// `dw` from `x` and `dy`.
    Weight,
}

/// Whether the FFT path handles this geometry: one group, stride 1, no
/// dilation, nothing empty, and some input pixel read by some output.
pub fn supported(geo: &ConvGeometry) -> bool {
    geo.groups == 1
        && geo.stride_h == 1
        && geo.stride_w == 1
        && geo.dilation_h == 1
        && geo.dilation_w == 1
        && geo.batch > 0
        && geo.in_c > 0
        && geo.out_c > 0
        && geo.out_h > 0
        && geo.out_w > 0
        && geo.kernel_h > 0
        && geo.kernel_w > 0
        && read_extent(geo.in_h, geo.out_h, geo.kernel_h, geo.pad_top) > 0
        && read_extent(geo.in_w, geo.out_w, geo.kernel_w, geo.pad_left) > 0
}

/// Whether `pass` of this geometry should take the FFT path under the current routing.
pub fn preferred(geo: &ConvGeometry, pass: ConvPass) -> bool {
    match routing() {
        FftRouting::Never => false,
        FftRouting::Always => supported(geo),
        FftRouting::Auto => supported(geo) && fft_wins(geo, pass),
    }
}

/// The cost model's verdict: a kernel of at least [`MIN_TAPS`] taps and an
/// FFT estimate clearly below the direct one.
fn fft_wins(geo: &ConvGeometry, pass: ConvPass) -> bool {
    geo.kernel_h * geo.kernel_w >= MIN_TAPS && estimate_ns(geo) < CLEAR_WIN * direct_estimate_ns(geo, pass)
}

/// Smallest kernel area the cost model considers.
const MIN_TAPS: usize = 9;
/// The FFT path is taken when its estimate is below this fraction of the
/// direct one: the estimates are rough, and a loss on a small layer (the
/// MNIST CNN's 5x5 convolutions on 14x14, which the model puts near 0.65)
/// is not worth a gain on paper.
const CLEAR_WIN: f64 = 0.5;

/// Estimated nanoseconds of the direct path on one core, at the speeds
/// `examples/conv_fft_bench.rs` measures for the AVX-512 kernels.
fn direct_estimate_ns(geo: &ConvGeometry, pass: ConvPass) -> f64 {
    let flops = 2.0 * (geo.batch * geo.out_pixels() * geo.patch_len() * geo.out_c) as f64;
    // GFLOP/s = FLOP/ns
    let speed = match pass {
        ConvPass::Forward => 145.0,
        // the input gradient's vectors run along the input channels
        ConvPass::Input if geo.in_c < 8 => 25.0,
        ConvPass::Input => 130.0,
        ConvPass::Weight => 120.0,
    };
    flops / speed
}

/// Estimated nanoseconds of the FFT path for any of the passes on one core: the 2-D
/// transforms (each image channel once each way, the kernel's channels
/// once), the bin products, and the spectra's trips to memory when a chunk
/// of them does not stay in cache. Fitted to the speech and MNIST layers.
fn estimate_ns(geo: &ConvGeometry) -> f64 {
    let s = Sizes::new(geo);
    let (n, cin, cout) = (geo.batch as f64, geo.in_c as f64, geo.out_c as f64);
    let grid = (s.p * s.q) as f64;
    let bins = s.bins() as f64;
    let channel = TRANSFORM_NS * grid * grid.log2().max(1.0);
    let images = n * (cin + cout) * channel;
    // the kernel's transforms have only kernel_h rows of data
    let kernel = cin * cout * channel * 0.5;
    // 8 real flops per complex multiply-add; thin products run as plain loops
    let thin = (2.0 * cin.min(cout) / 32.0).min(1.0);
    let gemm = 8.0 * bins * n * cin * cout / (GEMM_FLOPS * thin).max(4.0);
    let spectra = n * bins * 2.0 * (cin + cout);
    let traffic = if spectra > CACHE_FLOATS as f64 { 2.0 * spectra * 4.0 * MEMORY_NS } else { 0.0 };
    images + kernel + gemm + traffic
}

/// Nanoseconds per grid point and `log2` of the grid, of one channel's 2-D transform.
const TRANSFORM_NS: f64 = 0.18;
/// Speed of the bin products' GEMMs (FLOP/ns).
const GEMM_FLOPS: f64 = 80.0;
/// Nanoseconds per byte to and from memory.
const MEMORY_NS: f64 = 0.1;

// ---------------------------------------------------------------- sizes

/// Rows (or columns) of the input any output reads: those at or beyond
/// `out + kernel - 1 - pad` are cut off by the geometry.
fn read_extent(input: usize, out: usize, kernel: usize, pad: usize) -> usize {
    input.min((out + kernel - 1).saturating_sub(pad))
}

/// The smallest `2^a 3^b` that is at least `min` (and even when `even`).
fn smooth_len(min: usize, even: bool) -> usize {
    let min = min.max(if even { 2 } else { 1 });
    let mut best = usize::MAX;
    let mut p3 = 1usize;
    while p3 < 2 * min {
        let mut v = if even { 2 * p3 } else { p3 };
        while v < min {
            v *= 2;
        }
        best = best.min(v);
        p3 *= 3;
    }
    best
}

/// The transform grid of one geometry.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    /// Grid rows and (even) columns.
    p: usize,
    q: usize,
    /// Column bins of the half spectrum: `q / 2 + 1`.
    kw: usize,
    /// Input rows and columns any output reads.
    rows_in: usize,
    cols_in: usize,
}

impl Sizes {
    /// Bins of the half spectrum.
    fn bins(&self) -> usize {
        self.p * self.kw
    }

    fn new(geo: &ConvGeometry) -> Self {
        // Input row r sits at grid row (r + pad) mod p and output row a reads
        // grid rows a + u, u < kernel. No wrong row is read when every
        // difference (r + pad) - (a + u) lies strictly between -p and p.
        let dim = |input: usize, out: usize, kernel: usize, pad: usize, even: bool| {
            let read = read_extent(input, out, kernel, pad);
            let span = out + kernel - 1;
            let min = out.max(kernel).max(span - pad.min(span)).max(pad + read);
            (smooth_len(min, even), read)
        };
        let (p, rows_in) = dim(geo.in_h, geo.out_h, geo.kernel_h, geo.pad_top, false);
        let (q, cols_in) = dim(geo.in_w, geo.out_w, geo.kernel_w, geo.pad_left, true);
        Sizes { p, q, kw: q / 2 + 1, rows_in, cols_in }
    }
}

// ---------------------------------------------------------------- FFT over vectors of lanes

/// One radix-`radix` pass of a Stockham FFT: the sub-transforms of length
/// `l` of `radix * m` interleaved subsequences combine into ones of length
/// `l * radix` of `m` subsequences. Element `k * radix * m + m * s + j` (bin
/// `k` of subsequence `j + m s`) feeds outputs `(k + l t) * m + j`.
struct Pass {
    radix: usize,
    /// `radix = r1 * r2`: the butterfly is `r2` DFTs of `r1` points, then `r1` of `r2`.
    r1: usize,
    r2: usize,
    l: usize,
    m: usize,
    /// `w^(s k)` for `k < l`, `1 <= s < radix`, `w = exp(-+ 2 pi i / (l radix))`, as `[k][s - 1]`.
    tw: Vec<[f32; 2]>,
    /// The butterfly's own twiddles `exp(-+ 2 pi i s2 t1 / radix)` as `[s2][t1]`.
    inner: Vec<[f32; 2]>,
}

/// A complex FFT of length `n` (`2^a 3^b`) applied to every lane of a
/// sequence of vectors: element `i` has its real lanes at `re + i * stride`
/// and its imaginary lanes at `im + i * stride`. Unnormalised both ways.
struct VecFft {
    n: usize,
    inverse: bool,
    passes: Vec<Pass>,
}

/// Radices of the AVX-512 passes, largest first, as `(r1, r2)` factors.
const WIDE_RADICES: [(usize, usize); 8] = [(4, 4), (4, 3), (3, 3), (4, 2), (3, 2), (4, 1), (3, 1), (2, 1)];
/// Radices of the portable passes.
const NARROW_RADICES: [(usize, usize); 3] = [(4, 1), (2, 1), (3, 1)];

impl VecFft {
    /// `wide`: passes for the AVX-512 butterflies (radices up to 16, so
    /// fewer passes over the data), else radices 2, 3 and 4.
    fn new(n: usize, inverse: bool, wide: bool) -> Self {
        let mut radices = Vec::new();
        let mut v = n;
        let choices: &[(usize, usize)] = if wide { &WIDE_RADICES } else { &NARROW_RADICES };
        while v > 1 {
            let Some(&(r1, r2)) = choices.iter().find(|(r1, r2)| v.is_multiple_of(r1 * r2)) else {
                panic!("fft length {n} is not 2^a 3^b");
            };
            radices.push((r1, r2));
            v /= r1 * r2;
        }
        let sign = if inverse { 1.0 } else { -1.0 };
        let angle = |num: usize, den: usize| {
            let a = sign * 2.0 * std::f64::consts::PI * (num % den) as f64 / den as f64;
            [a.cos() as f32, a.sin() as f32]
        };
        let mut passes = Vec::new();
        let mut l = 1;
        for (r1, r2) in radices {
            let radix = r1 * r2;
            let len = l * radix;
            let tw = (0..l).flat_map(|k| (1..radix).map(move |s| (s, k))).map(|(s, k)| angle(s * k, len)).collect();
            let inner =
                (0..r2).flat_map(|s2| (0..r1).map(move |t1| (s2, t1))).map(|(s2, t1)| angle(s2 * t1, radix)).collect();
            passes.push(Pass { radix, r1, r2, l, m: n / len, tw, inner });
            l = len;
        }
        VecFft { n, inverse, passes }
    }
}

/// A sequence of complex vectors to read (see [`VecFft`]).
#[derive(Clone, Copy)]
struct Seq {
    re: *const f32,
    im: *const f32,
    stride: usize,
}

/// A sequence of complex vectors to write.
#[derive(Clone, Copy)]
struct SeqMut {
    re: *mut f32,
    im: *mut f32,
    stride: usize,
}

impl SeqMut {
    fn as_seq(self) -> Seq {
        Seq { re: self.re, im: self.im, stride: self.stride }
    }
}

/// A planar scratch sequence of `n` vectors in `buf` (`2 n lanes` floats).
fn planar(buf: &mut [f32], n: usize, lanes: usize) -> SeqMut {
    assert!(buf.len() >= 2 * n * lanes);
    let re = buf.as_mut_ptr();
    // SAFETY: n * lanes < buf.len()
    SeqMut { re, im: unsafe { re.add(n * lanes) }, stride: lanes }
}

/// `a * b + c`, fused when `F` (compiled with FMA only).
#[inline(always)]
fn fma<const F: bool>(a: f32, b: f32, c: f32) -> f32 {
    if F { a.mul_add(b, c) } else { a * b + c }
}

/// `(xr + i xi) * (w0 + i w1)`.
#[inline(always)]
fn cmul<const F: bool>(xr: f32, xi: f32, w: [f32; 2]) -> (f32, f32) {
    (fma::<F>(xr, w[0], -(xi * w[1])), fma::<F>(xr, w[1], xi * w[0]))
}

/// Radix-2 butterflies over runs of lanes (`y0 = x0 + w x1`, `y1 = x0 - w x1`).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn bfly2<const F: bool, const TW: bool>(
    (x0r, x0i): (&[f32], &[f32]),
    (x1r, x1i): (&[f32], &[f32]),
    y0r: &mut [f32],
    y0i: &mut [f32],
    y1r: &mut [f32],
    y1i: &mut [f32],
    w: [f32; 2],
) {
    let n = y0r.len();
    let (x0r, x0i, x1r, x1i) = (&x0r[..n], &x0i[..n], &x1r[..n], &x1i[..n]);
    let (y0i, y1r, y1i) = (&mut y0i[..n], &mut y1r[..n], &mut y1i[..n]);
    for i in 0..n {
        let (br, bi) = if TW { cmul::<F>(x1r[i], x1i[i], w) } else { (x1r[i], x1i[i]) };
        y0r[i] = x0r[i] + br;
        y0i[i] = x0i[i] + bi;
        y1r[i] = x0r[i] - br;
        y1i[i] = x0i[i] - bi;
    }
}

/// Radix-3 butterflies over runs of lanes; `c` is `sin(2 pi / 3)`, negated for the inverse.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn bfly3<const F: bool, const TW: bool>(
    (x0r, x0i): (&[f32], &[f32]),
    (x1r, x1i): (&[f32], &[f32]),
    (x2r, x2i): (&[f32], &[f32]),
    (y0r, y0i): (&mut [f32], &mut [f32]),
    (y1r, y1i): (&mut [f32], &mut [f32]),
    (y2r, y2i): (&mut [f32], &mut [f32]),
    w: &[[f32; 2]],
    c: f32,
) {
    let n = y0r.len();
    let (x0r, x0i, x1r, x1i, x2r, x2i) = (&x0r[..n], &x0i[..n], &x1r[..n], &x1i[..n], &x2r[..n], &x2i[..n]);
    let (y0i, y1r, y1i, y2r, y2i) = (&mut y0i[..n], &mut y1r[..n], &mut y1i[..n], &mut y2r[..n], &mut y2i[..n]);
    let (w1, w2) = (w[0], w[1]);
    for i in 0..n {
        let (b1r, b1i) = if TW { cmul::<F>(x1r[i], x1i[i], w1) } else { (x1r[i], x1i[i]) };
        let (b2r, b2i) = if TW { cmul::<F>(x2r[i], x2i[i], w2) } else { (x2r[i], x2i[i]) };
        let (sr, si) = (b1r + b2r, b1i + b2i);
        let (dr, di) = (b1r - b2r, b1i - b2i);
        y0r[i] = x0r[i] + sr;
        y0i[i] = x0i[i] + si;
        let (mr, mi) = (fma::<F>(sr, -0.5, x0r[i]), fma::<F>(si, -0.5, x0i[i]));
        y1r[i] = fma::<F>(c, di, mr);
        y1i[i] = fma::<F>(-c, dr, mi);
        y2r[i] = fma::<F>(-c, di, mr);
        y2i[i] = fma::<F>(c, dr, mi);
    }
}

/// Radix-4 butterflies over runs of lanes; `g` is 1 forward, -1 inverse.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn bfly4<const F: bool, const TW: bool>(
    (x0r, x0i): (&[f32], &[f32]),
    (x1r, x1i): (&[f32], &[f32]),
    (x2r, x2i): (&[f32], &[f32]),
    (x3r, x3i): (&[f32], &[f32]),
    (y0r, y0i): (&mut [f32], &mut [f32]),
    (y1r, y1i): (&mut [f32], &mut [f32]),
    (y2r, y2i): (&mut [f32], &mut [f32]),
    (y3r, y3i): (&mut [f32], &mut [f32]),
    w: &[[f32; 2]],
    g: f32,
) {
    let n = y0r.len();
    let (x0r, x0i, x1r, x1i) = (&x0r[..n], &x0i[..n], &x1r[..n], &x1i[..n]);
    let (x2r, x2i, x3r, x3i) = (&x2r[..n], &x2i[..n], &x3r[..n], &x3i[..n]);
    let (y0i, y1r, y1i, y2r) = (&mut y0i[..n], &mut y1r[..n], &mut y1i[..n], &mut y2r[..n]);
    let (y2i, y3r, y3i) = (&mut y2i[..n], &mut y3r[..n], &mut y3i[..n]);
    let (w1, w2, w3) = (w[0], w[1], w[2]);
    for i in 0..n {
        let (b1r, b1i) = if TW { cmul::<F>(x1r[i], x1i[i], w1) } else { (x1r[i], x1i[i]) };
        let (b2r, b2i) = if TW { cmul::<F>(x2r[i], x2i[i], w2) } else { (x2r[i], x2i[i]) };
        let (b3r, b3i) = if TW { cmul::<F>(x3r[i], x3i[i], w3) } else { (x3r[i], x3i[i]) };
        let (t0r, t0i) = (x0r[i] + b2r, x0i[i] + b2i);
        let (t1r, t1i) = (x0r[i] - b2r, x0i[i] - b2i);
        let (t2r, t2i) = (b1r + b3r, b1i + b3i);
        let (t3r, t3i) = (b1r - b3r, b1i - b3i);
        y0r[i] = t0r + t2r;
        y0i[i] = t0i + t2i;
        y2r[i] = t0r - t2r;
        y2i[i] = t0i - t2i;
        y1r[i] = fma::<F>(g, t3i, t1r);
        y1i[i] = fma::<F>(-g, t3r, t1i);
        y3r[i] = fma::<F>(-g, t3i, t1r);
        y3i[i] = fma::<F>(g, t3r, t1i);
    }
}

/// AVX-512 butterflies: the same arithmetic as [`bfly2`], [`bfly3`] and
/// [`bfly4`] on `runs` runs of `len` lanes (run `j` of input / output `s` at
/// `x[s] + j * sx` / `y[s] + j * sy`), sixteen lanes at a time.
#[cfg(target_arch = "x86_64")]
mod zmm {
    use std::arch::x86_64::*;

    /// The first `n` (at most 16) lanes.
    #[inline(always)]
    fn mask(n: usize) -> __mmask16 {
        if n >= 16 { 0xffff } else { ((1u32 << n) - 1) as __mmask16 }
    }

    /// Loads the lanes of `k` (full loads are faster than masked ones).
    #[inline(always)]
    unsafe fn ld(k: __mmask16, p: *const f32) -> __m512 {
        // SAFETY: the caller's contract (avx512f enabled by every caller)
        unsafe { if k == 0xffff { _mm512_loadu_ps(p) } else { _mm512_maskz_loadu_ps(k, p) } }
    }

    /// Stores the lanes of `k`.
    #[inline(always)]
    unsafe fn st(p: *mut f32, k: __mmask16, v: __m512) {
        // SAFETY: as `ld`
        unsafe { if k == 0xffff { _mm512_storeu_ps(p, v) } else { _mm512_mask_storeu_ps(p, k, v) } }
    }

    /// `(x * w)` for a broadcast complex `w`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn cmul(xr: __m512, xi: __m512, wr: __m512, wi: __m512) -> (__m512, __m512) {
        (_mm512_fmsub_ps(xr, wr, _mm512_mul_ps(xi, wi)), _mm512_fmadd_ps(xr, wi, _mm512_mul_ps(xi, wr)))
    }

    /// A complex vector: sixteen lanes of real and imaginary parts.
    #[derive(Clone, Copy)]
    struct Cv {
        r: __m512,
        i: __m512,
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn zero() -> Cv {
        Cv { r: _mm512_setzero_ps(), i: _mm512_setzero_ps() }
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn add(a: Cv, b: Cv) -> Cv {
        Cv { r: _mm512_add_ps(a.r, b.r), i: _mm512_add_ps(a.i, b.i) }
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn sub(a: Cv, b: Cv) -> Cv {
        Cv { r: _mm512_sub_ps(a.r, b.r), i: _mm512_sub_ps(a.i, b.i) }
    }

    /// `a * w` for a complex constant `w`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn mulc(a: Cv, w: [f32; 2]) -> Cv {
        let (r, i) = cmul(a.r, a.i, _mm512_set1_ps(w[0]), _mm512_set1_ps(w[1]));
        Cv { r, i }
    }

    /// The `N`-point DFT (`N` at most 4) of `v`, in place; `g` is 1 forward, -1 inverse.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn dft_small<const N: usize>(v: &mut [Cv; N], g: f32) {
        match N {
            1 => {}
            2 => {
                let (a, b) = (v[0], v[1]);
                v[0] = add(a, b);
                v[1] = sub(a, b);
            }
            3 => {
                let c = _mm512_set1_ps(g * 0.866_025_4);
                let (s, d) = (add(v[1], v[2]), sub(v[1], v[2]));
                let half = _mm512_set1_ps(-0.5);
                let m = Cv { r: _mm512_fmadd_ps(s.r, half, v[0].r), i: _mm512_fmadd_ps(s.i, half, v[0].i) };
                v[0] = add(v[0], s);
                v[1] = Cv { r: _mm512_fmadd_ps(c, d.i, m.r), i: _mm512_fnmadd_ps(c, d.r, m.i) };
                v[2] = Cv { r: _mm512_fnmadd_ps(c, d.i, m.r), i: _mm512_fmadd_ps(c, d.r, m.i) };
            }
            4 => {
                let gv = _mm512_set1_ps(g);
                let (t0, t1, t2, t3) = (add(v[0], v[2]), sub(v[0], v[2]), add(v[1], v[3]), sub(v[1], v[3]));
                v[0] = add(t0, t2);
                v[2] = sub(t0, t2);
                v[1] = Cv { r: _mm512_fmadd_ps(gv, t3.i, t1.r), i: _mm512_fnmadd_ps(gv, t3.r, t1.i) };
                v[3] = Cv { r: _mm512_fnmadd_ps(gv, t3.i, t1.r), i: _mm512_fmadd_ps(gv, t3.r, t1.i) };
            }
            _ => unreachable!("small dft {N}"),
        }
    }

    /// One whole Stockham pass of radix `R1 * R2` (at most 16) from `src` to
    /// `dst`: for each `k < l` the inputs `k r m + m s + j` (times the pass
    /// twiddles `tw[k][s - 1]`), the `R1 * R2`-point DFT in registers as `R2`
    /// DFTs of `R1` points, the twiddles `inner[s2][t1]` and `R1` DFTs of `R2`
    /// points, into outputs `(k + l t) m + j`; `runs` runs of `len` lanes per
    /// `k` (`j` runs of `lanes`, or one run of `m lanes` when compact).
    ///
    /// # Safety
    /// As [`super::run_pass`].
    #[inline]
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
    pub(super) unsafe fn pass<const R1: usize, const R2: usize>(
        src: super::Seq,
        dst: super::SeqMut,
        (l, m, runs, len): (usize, usize, usize, usize),
        tw: &[[f32; 2]],
        inner: &[[f32; 2]],
        g: f32,
    ) {
        let r = R1 * R2;
        let (sx, sy) = (src.stride, dst.stride);
        for k in 0..l {
            let w = &tw[k * (r - 1)..(k + 1) * (r - 1)];
            for j in 0..runs {
                let (ox, oy) = ((k * r * m + j) * sx, (k * m + j) * sy);
                let mut i = 0;
                while i < len {
                    let mk = mask(len - i);
                    // z[s2][s1] = input R2 s1 + s2, then the R1-point DFTs in place
                    let mut z = [[zero(); R1]; R2];
                    for (s2, zs) in z.iter_mut().enumerate() {
                        for (s1, v) in zs.iter_mut().enumerate() {
                            let s = R2 * s1 + s2;
                            let at = ox + m * s * sx + i;
                            // SAFETY: lanes i.. of input element k r m + m s + j, masked to len
                            let e = unsafe { Cv { r: ld(mk, src.re.add(at)), i: ld(mk, src.im.add(at)) } };
                            *v = if k > 0 && s > 0 { mulc(e, w[s - 1]) } else { e };
                        }
                        dft_small::<R1>(zs, g);
                        if s2 > 0 {
                            for (t1, v) in zs.iter_mut().enumerate().skip(1) {
                                *v = mulc(*v, inner[s2 * R1 + t1]);
                            }
                        }
                    }
                    for t1 in 0..R1 {
                        let mut v = [zero(); R2];
                        for (s2, e) in v.iter_mut().enumerate() {
                            *e = z[s2][t1];
                        }
                        dft_small::<R2>(&mut v, g);
                        for (t2, e) in v.iter().enumerate() {
                            let at = oy + l * (t1 + R1 * t2) * m * sy + i;
                            // SAFETY: lanes i.. of output element (k + l t) m + j, masked to len
                            unsafe {
                                st(dst.re.add(at), mk, e.r);
                                st(dst.im.add(at), mk, e.i);
                            }
                        }
                    }
                    i += 16;
                }
            }
        }
    }

    /// The separation / packing step of the real transforms over `n` lanes:
    /// `s = half (a + conj c)`, `d = a - conj c`, `out = s + w d`.
    ///
    /// # Safety
    /// Every run holds `n` floats; the outputs overlap nothing else.
    #[inline]
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn combine(
        (or, oi): (*mut f32, *mut f32),
        (ar, ai): (*const f32, *const f32),
        (cr, ci): (*const f32, *const f32),
        w: [f32; 2],
        half: f32,
        n: usize,
    ) {
        let (w0, w1, h) = (_mm512_set1_ps(w[0]), _mm512_set1_ps(w[1]), _mm512_set1_ps(half));
        let mut i = 0;
        while i < n {
            let k = mask(n - i);
            // SAFETY: lanes i.. masked to n (the caller's contract)
            unsafe {
                let (xr, xi, yr, yi) = (ld(k, ar.add(i)), ld(k, ai.add(i)), ld(k, cr.add(i)), ld(k, ci.add(i)));
                let (sr, si) = (_mm512_mul_ps(h, _mm512_add_ps(xr, yr)), _mm512_mul_ps(h, _mm512_sub_ps(xi, yi)));
                let (dr, di) = (_mm512_sub_ps(xr, yr), _mm512_add_ps(xi, yi));
                st(or.add(i), k, _mm512_fmadd_ps(w0, dr, _mm512_fnmadd_ps(w1, di, sr)));
                st(oi.add(i), k, _mm512_fmadd_ps(w0, di, _mm512_fmadd_ps(w1, dr, si)));
            }
            i += 16;
        }
    }

    /// `o = act(v * scale + bias)` over `n` lanes (`bias` may be null; `relu` clamps at 0).
    ///
    /// # Safety
    /// `o`, `v` (and `bias` unless null) hold `n` floats; `o` overlaps nothing else.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn store(o: *mut f32, v: *const f32, scale: f32, bias: *const f32, relu: bool, n: usize) {
        let s = _mm512_set1_ps(scale);
        let mut i = 0;
        while i < n {
            let k = mask(n - i);
            // SAFETY: lanes i.. masked to n (the caller's contract)
            unsafe {
                let b = if bias.is_null() { _mm512_setzero_ps() } else { ld(k, bias.add(i)) };
                let mut r = _mm512_fmadd_ps(ld(k, v.add(i)), s, b);
                if relu {
                    r = _mm512_max_ps(r, _mm512_setzero_ps());
                }
                st(o.add(i), k, r);
            }
            i += 16;
        }
    }

    /// Copies `len` floats with non-temporal stores (no read of the
    /// destination's cache lines), then fences them.
    ///
    /// # Safety
    /// Both runs hold `len` floats and do not overlap.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn stream(dst: *mut f32, src: *const f32, len: usize) {
        // unaligned head up to a 64-byte boundary
        let head = ((64 - (dst as usize) % 64) % 64 / 4).min(len);
        let mut i = 0;
        // SAFETY: the caller's contract; the middle stores are 64-byte aligned
        unsafe {
            if head > 0 {
                st(dst, mask(head), ld(mask(head), src));
                i = head;
            }
            while i + 16 <= len {
                _mm512_stream_ps(dst.add(i), _mm512_loadu_ps(src.add(i)));
                i += 16;
            }
            if i < len {
                let k = mask(len - i);
                st(dst.add(i), k, ld(k, src.add(i)));
            }
            _mm_sfence();
        }
    }

    /// Copies `len` floats.
    ///
    /// # Safety
    /// Both runs hold `len` floats and do not overlap.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn copy(dst: *mut f32, src: *const f32, len: usize) {
        let mut i = 0;
        while i < len {
            let k = mask(len - i);
            // SAFETY: the caller's contract
            unsafe { st(dst.add(i), k, ld(k, src.add(i))) };
            i += 16;
        }
    }
}

/// `len` floats at `p` to read.
///
/// # Safety
/// They must be readable and not written while the slice lives.
#[inline(always)]
unsafe fn run<'a>(p: *const f32, len: usize) -> &'a [f32] {
    // SAFETY: the caller's contract.
    unsafe { std::slice::from_raw_parts(p, len) }
}

/// `len` floats at `p` to write.
///
/// # Safety
/// They must be writable and accessed through nothing else while the slice lives.
#[inline(always)]
unsafe fn run_mut<'a>(p: *mut f32, len: usize) -> &'a mut [f32] {
    // SAFETY: the caller's contract.
    unsafe { std::slice::from_raw_parts_mut(p, len) }
}

/// One pass from `src` to `dst` (`lanes` lanes per element).
///
/// # Safety
/// Both sequences must hold `n` elements of `lanes` real and `lanes`
/// imaginary lanes each, and no lane of `dst` may be a lane of `src` or of
/// another element of `dst`.
#[inline(always)]
unsafe fn run_pass<const F: bool>(p: &Pass, inverse: bool, lanes: usize, src: Seq, dst: SeqMut) {
    let (r, l, m) = (p.radix, p.l, p.m);
    // consecutive elements are contiguous on both sides: one run per butterfly group
    let compact = src.stride == lanes && dst.stride == lanes;
    let (runs, len) = if compact { (1, m * lanes) } else { (m, lanes) };
    let g = if inverse { -1.0 } else { 1.0 };
    let c3 = g * (3.0f32).sqrt() * 0.5;
    #[cfg(target_arch = "x86_64")]
    if F {
        // F is only set in the AVX-512 builds
        let geom = (l, m, runs, len);
        let (tw, inner) = (&p.tw[..], &p.inner[..]);
        macro_rules! go {
            ($($r1:literal, $r2:literal);*) => {
                match (p.r1, p.r2) {
                    // SAFETY: the caller's contract (see below for the indices)
                    $(($r1, $r2) => unsafe { zmm::pass::<$r1, $r2>(src, dst, geom, tw, inner, g) },)*
                    _ => unreachable!("radix {r}"),
                }
            };
        }
        go!(4, 4; 4, 3; 3, 3; 4, 2; 3, 2; 4, 1; 3, 1; 2, 1);
        return;
    }
    for k in 0..l {
        let w = &p.tw[k * (r - 1)..(k + 1) * (r - 1)];
        // SAFETY: input element k r m + m s + j (s < r, j < m) and output
        // element (k + l t) m + j (t < r) are below n = l r m; runs of `len`
        // lanes stay inside one element (strided) or span `m` elements
        // (compact); the caller keeps outputs apart from inputs and from each other.
        unsafe {
            let xp = |s: usize| {
                let e = (k * r * m + m * s) * src.stride;
                (src.re.add(e), src.im.add(e))
            };
            let yp = |t: usize| {
                let e = (k + l * t) * m * dst.stride;
                (dst.re.add(e), dst.im.add(e))
            };
            for j in 0..runs {
                let x = |s: usize| {
                    let (re, im) = xp(s);
                    (run(re.add(j * src.stride), len), run(im.add(j * src.stride), len))
                };
                let y = |t: usize| {
                    let (re, im) = yp(t);
                    (run_mut(re.add(j * dst.stride), len), run_mut(im.add(j * dst.stride), len))
                };
                match (r, k > 0) {
                    (2, false) => {
                        let ((y0r, y0i), (y1r, y1i)) = (y(0), y(1));
                        bfly2::<F, false>(x(0), x(1), y0r, y0i, y1r, y1i, [1.0, 0.0])
                    }
                    (2, true) => {
                        let ((y0r, y0i), (y1r, y1i)) = (y(0), y(1));
                        bfly2::<F, true>(x(0), x(1), y0r, y0i, y1r, y1i, w[0])
                    }
                    (3, false) => bfly3::<F, false>(x(0), x(1), x(2), y(0), y(1), y(2), w, c3),
                    (3, true) => bfly3::<F, true>(x(0), x(1), x(2), y(0), y(1), y(2), w, c3),
                    (4, false) => bfly4::<F, false>(x(0), x(1), x(2), x(3), y(0), y(1), y(2), y(3), w, g),
                    (4, true) => bfly4::<F, true>(x(0), x(1), x(2), x(3), y(0), y(1), y(2), y(3), w, g),
                    _ => unreachable!("radix {r}"),
                }
            }
        }
    }
}

/// Copies `n` elements of `lanes` lanes from `src` to `dst`.
///
/// # Safety
/// As [`run_pass`].
#[inline(always)]
unsafe fn copy_seq<const F: bool>(n: usize, lanes: usize, src: Seq, dst: SeqMut) {
    for i in 0..n {
        // SAFETY: the caller's contract.
        unsafe {
            #[cfg(target_arch = "x86_64")]
            if F {
                zmm::copy(dst.re.add(i * dst.stride), src.re.add(i * src.stride), lanes);
                zmm::copy(dst.im.add(i * dst.stride), src.im.add(i * src.stride), lanes);
                continue;
            }
            run_mut(dst.re.add(i * dst.stride), lanes).copy_from_slice(run(src.re.add(i * src.stride), lanes));
            run_mut(dst.im.add(i * dst.stride), lanes).copy_from_slice(run(src.im.add(i * src.stride), lanes));
        }
    }
}

impl VecFft {
    /// Transforms `src` into `dst`, which may be the same sequence; `a` and
    /// `b` are scratch of at least `2 n lanes` floats each.
    ///
    /// # Safety
    /// `src` and `dst` must hold `n` elements of `lanes` lanes (real and
    /// imaginary) each, `dst`'s lanes all distinct, and neither may overlap
    /// `a` or `b`; unless they are the same sequence, `dst` must not overlap `src`.
    #[inline(always)]
    unsafe fn run<const F: bool>(&self, lanes: usize, src: Seq, dst: SeqMut, a: &mut [f32], b: &mut [f32]) {
        let n = self.n;
        let (sa, sb) = (planar(a, n, lanes), planar(b, n, lanes));
        let count = self.passes.len();
        // SAFETY: the caller's contract; scratch sequences hold n elements and
        // each pass goes between two different buffers.
        unsafe {
            match count {
                0 => {
                    if !std::ptr::eq(src.re, dst.re) {
                        copy_seq::<F>(n, lanes, src, dst);
                    }
                }
                1 => {
                    copy_seq::<F>(n, lanes, src, sa);
                    run_pass::<F>(&self.passes[0], self.inverse, lanes, sa.as_seq(), dst);
                }
                _ => {
                    run_pass::<F>(&self.passes[0], self.inverse, lanes, src, sa);
                    let (mut from, mut to) = (sa, sb);
                    for p in &self.passes[1..count - 1] {
                        run_pass::<F>(p, self.inverse, lanes, from.as_seq(), to);
                        std::mem::swap(&mut from, &mut to);
                    }
                    run_pass::<F>(&self.passes[count - 1], self.inverse, lanes, from.as_seq(), dst);
                }
            }
        }
    }
}

// ---------------------------------------------------------------- plans

/// Everything the transforms of a `p x q` grid need, made once per process.
struct Plan2d {
    p: usize,
    q: usize,
    /// `q / 2 + 1` column bins; `q / 2` complex points per packed row.
    kw: usize,
    half: usize,
    bins: usize,
    col_fwd: VecFft,
    col_inv: VecFft,
    row_fwd: VecFft,
    row_inv: VecFft,
    /// Forward: `X[k] = (Z[k] + conj Z[h - k]) / 2 + post[k] (Z[k] - conj Z[h - k])`, `post[k] = -i w^k / 2`.
    post: Vec<[f32; 2]>,
    /// Inverse: `Z[k] = (X[k] + conj X[h - k]) + pre[k] (X[k] - conj X[h - k])`, `pre[k] = i conj(w^k)`.
    pre: Vec<[f32; 2]>,
}

/// The plan for a `p x q` grid (`q` even), cached.
fn plan(p: usize, q: usize) -> Arc<Plan2d> {
    static CACHE: Mutex<Vec<Arc<Plan2d>>> = Mutex::new(Vec::new());
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(found) = cache.iter().find(|pl| pl.p == p && pl.q == q) {
        return found.clone();
    }
    let half = q / 2;
    let angle = |k: usize| 2.0 * std::f64::consts::PI * k as f64 / q as f64;
    let post = (0..=half).map(|k| [(-0.5 * angle(k).sin()) as f32, (-0.5 * angle(k).cos()) as f32]).collect();
    let pre = (0..half).map(|k| [(-angle(k).sin()) as f32, angle(k).cos() as f32]).collect();
    let made = Arc::new(Plan2d {
        p,
        q,
        kw: half + 1,
        half,
        bins: p * (half + 1),
        col_fwd: VecFft::new(p, false, wide()),
        col_inv: VecFft::new(p, true, wide()),
        row_fwd: VecFft::new(half, false, wide()),
        row_inv: VecFft::new(half, true, wide()),
        post,
        pre,
    });
    cache.push(made.clone());
    made
}

// ---------------------------------------------------------------- one image's transforms

/// Per-thread buffers of the transforms (grown, never shrunk).
#[derive(Default)]
struct Work {
    row: Vec<f32>,
    a: Vec<f32>,
    b: Vec<f32>,
    grid: Vec<f32>,
}

thread_local! {
    static WORK: RefCell<Work> = RefCell::new(Work::default());
}

/// Runs `f` with this thread's transform buffers.
fn with_work<R>(f: impl FnOnce(&mut Work) -> R) -> R {
    WORK.with(|w| f(&mut w.borrow_mut()))
}

/// The first `n` values of `v`, growing it if needed (contents unspecified).
fn grow(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if v.len() < n {
        v.resize(n, 0.0);
    }
    &mut v[..n]
}

/// Complex values of a transform's working sequence (`length x lanes`): two
/// scratch copies of it (12 KB each) stay in L1 with room to stream the rest.
const BLOCK_VALUES: usize = 1536;

/// Lanes per block of a length-`n` transform: a multiple of 16 (unless
/// `lanes` is smaller), at most `lanes`.
fn lane_block(n: usize, lanes: usize) -> usize {
    ((BLOCK_VALUES / n) / 16 * 16).max(16).min(lanes)
}

/// The part of an image that is transformed and where it sits in the grid.
#[derive(Clone, Copy, Debug)]
struct Window {
    rows: usize,
    cols: usize,
    /// Grid row and column of the window's first pixel (already reduced mod p, q).
    top: usize,
    left: usize,
}

/// Channels `0..cb` of an image: channel `c` of pixel `(h, w)` at `h * row_stride + w * pix + c`.
#[derive(Clone, Copy)]
struct Src<'a> {
    data: &'a [f32],
    row_stride: usize,
    pix: usize,
}

/// A half spectrum of channels `0..cb` to read: bin `b` of channel `c` is
/// `(data[b * bin_stride + c], data[b * bin_stride + im + c])`.
#[derive(Clone, Copy)]
struct Spec<'a> {
    data: &'a [f32],
    bin_stride: usize,
    im: usize,
}

/// The spectrum an inverse transform starts from.
enum SpecIn<'a> {
    /// One image's own spectrum, `[bin][re cb | im cb]`, transformed in place (and so destroyed).
    Own(&'a mut [f32]),
    /// Channels of a spectrum other tasks read too.
    Shared(Spec<'a>),
}

/// Where a forward transform writes its half spectrum (channels `0..cb`).
#[derive(Clone, Copy)]
enum Out {
    /// One image's spectrum, `[bin][re cb | im cb]`: the `dst` slice given
    /// with it; built in place, or in the per-thread grid and streamed out
    /// (`stream`, for spectra that do not stay in cache).
    Image { stream: bool },
    /// Kernel channels `c = (ci - ci0) * cout + co` of a `cin x cout` kernel,
    /// scaled by `scale`, as `[bin][ci][Wr | Wi]` (`cin x 2 cout` per bin).
    /// Other tasks write other rows `ci` of the same buffer.
    Kernel { ptr: SendPtr, len: usize, cin: usize, cout: usize, ci0: usize, scale: f32 },
}

/// A raw pointer to a buffer that parallel tasks write disjoint parts of.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: only used to write disjoint parts of one buffer from rayon tasks
// while nothing else accesses it.
unsafe impl Send for SendPtr {}
// SAFETY: as above.
unsafe impl Sync for SendPtr {}

/// What is done to each value an inverse transform writes.
#[derive(Clone, Copy)]
struct Epilogue<'a> {
    scale: f32,
    /// Added per channel after scaling.
    bias: Option<&'a [f32]>,
    relu: bool,
}

/// Whether the AVX-512 builds of the transforms run.
fn wide() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        crate::x86::available() && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `dst = src` for `n` floats, vectorised in the AVX-512 builds.
///
/// # Safety
/// Both runs hold `n` floats and do not overlap.
#[inline(always)]
unsafe fn copy_run<const F: bool>(dst: *mut f32, src: *const f32, n: usize) {
    // SAFETY: the caller's contract
    unsafe {
        #[cfg(target_arch = "x86_64")]
        if F {
            zmm::copy(dst, src, n);
            return;
        }
        std::ptr::copy_nonoverlapping(src, dst, n);
    }
}

/// The half spectrum of the window of `src` (channels `0..cb`) into `out`,
/// bins `kx * p + ky`.
///
/// The spectrum is built in place when `out` is an image's own buffer
/// (`[kx][ky][re cb | im cb]`), else in the per-thread grid of that layout and
/// copied: rows of the window in blocks (two real points packed into one
/// complex one, separated after the transform), then each column, a block of
/// its channels at a time.
///
/// # Safety
/// For [`Out::Kernel`], nothing else may access the floats it writes while
/// this runs (other tasks may write other rows).
unsafe fn forward_image(plan: &Plan2d, src: Src<'_>, cb: usize, win: Window, out: Out, dst: &mut [f32], wk: &mut Work) {
    if win.rows > 0 && win.cols > 0 {
        let last = (win.rows - 1) * src.row_stride + (win.cols - 1) * src.pix + cb;
        assert!(src.data.len() >= last, "conv fft: image view out of bounds");
    }
    match out {
        Out::Image { .. } => assert!(dst.len() >= plan.bins * 2 * cb, "conv fft: spectrum too short"),
        Out::Kernel { len, cin, cout, ci0, .. } => {
            assert!(cb.is_multiple_of(cout) && ci0 + cb / cout <= cin && len >= plan.bins * cin * 2 * cout)
        }
    }
    #[cfg(target_arch = "x86_64")]
    if wide() {
        // SAFETY: avx512f and fma were detected; the caller's contract.
        unsafe { forward_image_avx512(plan, src, cb, win, out, dst, wk) };
        return;
    }
    // SAFETY: the caller's contract.
    unsafe { forward_image_impl::<false>(plan, src, cb, win, out, dst, wk) };
}

/// [`forward_image`] with AVX-512 and FMA.
///
/// # Safety
/// As [`forward_image`]; the CPU must have both.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn forward_image_avx512(
    plan: &Plan2d,
    src: Src<'_>,
    cb: usize,
    win: Window,
    out: Out,
    dst: &mut [f32],
    wk: &mut Work,
) {
    // SAFETY: the caller's contract.
    unsafe { forward_image_impl::<true>(plan, src, cb, win, out, dst, wk) };
}

/// [`forward_image`]'s body (views checked by it).
#[inline(always)]
unsafe fn forward_image_impl<const F: bool>(
    plan: &Plan2d,
    src: Src<'_>,
    cb: usize,
    win: Window,
    out: Out,
    dst: &mut [f32],
    wk: &mut Work,
) {
    let (p, q, kw, half) = (plan.p, plan.q, plan.kw, plan.half);
    let e2 = 2 * cb;
    let rb = (lane_block(half, cb) / cb).clamp(1, win.rows.max(1));
    let lb = lane_block(p, cb);
    let n = p.max(half);
    let Work { row, a, b, grid } = wk;
    // where a streamed spectrum goes (`dst` is not borrowed then)
    let dst_ptr = dst.as_mut_ptr();
    let g: &mut [f32] = match out {
        Out::Image { stream: false } => &mut dst[..plan.bins * e2],
        _ => grow(grid, plan.bins * e2),
    };
    let zbuf = grow(row, 2 * half * rb * cb);
    let scratch = 2 * n * (rb * cb).max(lb);
    let (a, b) = (grow(a, scratch), grow(b, scratch));
    // grid rows without data (the window's rows are consecutive mod p)
    for i in win.rows..p {
        let r = (win.top + i) % p;
        for kx in 0..kw {
            g[(kx * p + r) * e2..(kx * p + r + 1) * e2].fill(0.0);
        }
    }
    for h0 in (0..win.rows).step_by(rb) {
        let nr = rb.min(win.rows - h0);
        let zl = nr * cb;
        // even columns as the real part, odd as the imaginary part: [m][row][c]
        let z = &mut zbuf[..2 * half * zl];
        // grid columns without data (the window's columns are consecutive mod q)
        for j in win.cols..q {
            let col = (win.left + j) % q;
            let at = (col % 2) * half * zl + (col / 2) * zl;
            z[at..at + zl].fill(0.0);
        }
        for i in 0..nr {
            let line = &src.data[(h0 + i) * src.row_stride..];
            let mut col = win.left;
            for w in 0..win.cols {
                let at = (col % 2) * half * zl + (col / 2) * zl + i * cb;
                let px = &line[w * src.pix..w * src.pix + cb];
                // SAFETY: both runs hold cb floats (bounds checked just above)
                unsafe { copy_run::<F>(z[at..at + cb].as_mut_ptr(), px.as_ptr(), cb) };
                col += 1;
                if col == q {
                    col = 0;
                }
            }
        }
        let zs = planar(z, half, zl);
        // SAFETY: `z` holds `half` elements of `zl` lanes, transformed in
        // place with `a` and `b` (large enough, separate) as scratch.
        unsafe { plan.row_fwd.run::<F>(zl, zs.as_seq(), zs, a, b) };
        // X[k] = (Z[k] + conj Z[h - k]) / 2 + post[k] (Z[k] - conj Z[h - k])
        let (zr, zi) = z.split_at(half * zl);
        for k in 0..kw {
            let (k1, k2) = (k % half, (half - k % half) % half);
            let w = plan.post[k];
            for i in 0..nr {
                let r = (win.top + h0 + i) % p;
                let (o1, o2) = (k1 * zl + i * cb, k2 * zl + i * cb);
                let (ar, ai, cr, ci) = (&zr[o1..o1 + cb], &zi[o1..o1 + cb], &zr[o2..o2 + cb], &zi[o2..o2 + cb]);
                let (gr, gi) = g[(k * p + r) * e2..(k * p + r + 1) * e2].split_at_mut(cb);
                #[cfg(target_arch = "x86_64")]
                if F {
                    // SAFETY: every run holds cb floats (sliced above); F only in AVX-512 builds
                    unsafe {
                        let (a2, c2) = ((ar.as_ptr(), ai.as_ptr()), (cr.as_ptr(), ci.as_ptr()));
                        zmm::combine((gr.as_mut_ptr(), gi.as_mut_ptr()), a2, c2, w, 0.5, cb);
                    }
                    continue;
                }
                for c in 0..cb {
                    let (sr, si) = (0.5 * (ar[c] + cr[c]), 0.5 * (ai[c] - ci[c]));
                    let (dr, di) = (ar[c] - cr[c], ai[c] + ci[c]);
                    gr[c] = fma::<F>(w[0], dr, fma::<F>(-w[1], di, sr));
                    gi[c] = fma::<F>(w[0], di, fma::<F>(w[1], dr, si));
                }
            }
        }
    }
    // columns, in place, a block of channels at a time
    let gp = g.as_mut_ptr();
    for kx in 0..kw {
        for c0 in (0..cb).step_by(lb) {
            let nl = lb.min(cb - c0);
            // SAFETY: element ky of the block is lanes c0.. of grid entry (kx, ky),
            // inside `g` (bins * 2cb floats); the scratch holds 2 p nl floats.
            unsafe {
                let col = SeqMut { re: gp.add(kx * p * e2 + c0), im: gp.add(kx * p * e2 + cb + c0), stride: e2 };
                plan.col_fwd.run::<F>(nl, col.as_seq(), col, a, b);
            }
        }
    }
    if let Out::Image { stream: true } = out {
        let n = plan.bins * e2;
        // SAFETY: `dst` holds n floats (checked by `forward_image`) and `g`
        // is the per-thread grid, not `dst`; F only in AVX-512 builds
        unsafe {
            #[cfg(target_arch = "x86_64")]
            if F {
                zmm::stream(dst_ptr, g.as_ptr(), n);
                return;
            }
            std::ptr::copy_nonoverlapping(g.as_ptr(), dst_ptr, n);
        }
        return;
    }
    if let Out::Kernel { ptr, cin, cout, ci0, scale, .. } = out {
        for bin in 0..plan.bins {
            let (vr, vi) = g[bin * e2..(bin + 1) * e2].split_at(cb);
            for (j, (vr, vi)) in vr.chunks_exact(cout).zip(vi.chunks_exact(cout)).enumerate() {
                // SAFETY: row ci0 + j of bin `bin` lies inside the buffer
                // (checked by `forward_image`) and is this task's alone.
                unsafe {
                    let o = ptr.0.add((bin * cin + ci0 + j) * 2 * cout);
                    let (wr, wi) = (run_mut(o, cout), run_mut(o.add(cout), cout));
                    for c in 0..cout {
                        wr[c] = vr[c] * scale;
                        wi[c] = vi[c] * scale;
                    }
                }
            }
        }
    }
}

/// The window of the image whose half spectrum (channels `0..cb`, bins
/// `kx * p + ky`) is `spec`, written through `epi` to `dst` (channel `c` of
/// window pixel `(a, w)` at `a * row_stride + w * pix + c`). Every value of
/// the window is written.
#[allow(clippy::too_many_arguments)]
fn inverse_image(
    plan: &Plan2d,
    spec: SpecIn<'_>,
    cb: usize,
    win: Window,
    dst: &mut [MaybeUninit<f32>],
    row_stride: usize,
    pix: usize,
    epi: Epilogue<'_>,
    wk: &mut Work,
) {
    match &spec {
        SpecIn::Own(s) => assert!(s.len() >= plan.bins * 2 * cb, "conv fft: spectrum too short"),
        SpecIn::Shared(s) => {
            assert!(s.im >= cb && s.bin_stride >= cb);
            assert!(
                s.data.len() >= (plan.bins - 1) * s.bin_stride + s.im + cb,
                "conv fft: spectrum view out of bounds"
            );
        }
    }
    if win.rows > 0 && win.cols > 0 {
        assert!(
            dst.len() >= (win.rows - 1) * row_stride + (win.cols - 1) * pix + cb,
            "conv fft: output view out of bounds"
        );
    }
    if let Some(b) = epi.bias {
        assert!(b.len() >= cb);
    }
    #[cfg(target_arch = "x86_64")]
    if wide() {
        // SAFETY: avx512f and fma were detected.
        unsafe { inverse_image_avx512(plan, spec, cb, win, dst, row_stride, pix, epi, wk) };
        return;
    }
    inverse_image_impl::<false>(plan, spec, cb, win, dst, row_stride, pix, epi, wk);
}

/// [`inverse_image`] with AVX-512 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[allow(clippy::too_many_arguments)]
fn inverse_image_avx512(
    plan: &Plan2d,
    spec: SpecIn<'_>,
    cb: usize,
    win: Window,
    dst: &mut [MaybeUninit<f32>],
    row_stride: usize,
    pix: usize,
    epi: Epilogue<'_>,
    wk: &mut Work,
) {
    inverse_image_impl::<true>(plan, spec, cb, win, dst, row_stride, pix, epi, wk);
}

/// [`inverse_image`]'s body (views checked by it): the columns from the
/// spectrum into the per-thread grid (`[kx][ky][re cb | im cb]`), then the
/// window's rows in blocks.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn inverse_image_impl<const F: bool>(
    plan: &Plan2d,
    spec: SpecIn<'_>,
    cb: usize,
    win: Window,
    dst: &mut [MaybeUninit<f32>],
    row_stride: usize,
    pix: usize,
    epi: Epilogue<'_>,
    wk: &mut Work,
) {
    let (p, q, kw, half) = (plan.p, plan.q, plan.kw, plan.half);
    let e2 = 2 * cb;
    let rb = (lane_block(half, cb) / cb).clamp(1, win.rows.max(1));
    let lb = lane_block(p, cb);
    let n = p.max(half);
    let Work { row, a, b, grid } = wk;
    let zbuf = grow(row, 2 * half * rb * cb);
    let scratch = 2 * n * (rb * cb).max(lb);
    let (a, b) = (grow(a, scratch), grow(b, scratch));
    let (g, shared): (&mut [f32], Option<Spec<'_>>) = match spec {
        SpecIn::Own(s) => (&mut s[..plan.bins * e2], None),
        SpecIn::Shared(s) => (grow(grid, plan.bins * e2), Some(s)),
    };
    let gp = g.as_mut_ptr();
    for kx in 0..kw {
        for c0 in (0..cb).step_by(lb) {
            let nl = lb.min(cb - c0);
            // SAFETY: element ky of the block is channels c0.. of bin kx p + ky
            // of the spectrum (in bounds, asserted by `inverse_image`) and
            // lanes c0.. of grid entry (kx, ky) (the same when in place).
            unsafe {
                let to = SeqMut { re: gp.add(kx * p * e2 + c0), im: gp.add(kx * p * e2 + cb + c0), stride: e2 };
                let from = match &shared {
                    None => to.as_seq(),
                    Some(s) => {
                        let (sp, at) = (s.data.as_ptr(), kx * p * s.bin_stride + c0);
                        Seq { re: sp.add(at), im: sp.add(at + s.im), stride: s.bin_stride }
                    }
                };
                plan.col_inv.run::<F>(nl, from, to, a, b);
            }
        }
    }
    let g = &*g;
    let store = |o: &mut [MaybeUninit<f32>], v: &[f32]| {
        let (o, v) = (&mut o[..cb], &v[..cb]);
        #[cfg(target_arch = "x86_64")]
        if F {
            let bias = epi.bias.map_or(std::ptr::null(), |b| b[..cb].as_ptr());
            // SAFETY: o, v, bias hold cb floats (sliced above); F only in AVX-512 builds
            unsafe { zmm::store(o.as_mut_ptr().cast(), v.as_ptr(), epi.scale, bias, epi.relu, cb) };
            return;
        }
        match (epi.bias, epi.relu) {
            (Some(bias), true) => {
                let bias = &bias[..cb];
                for c in 0..cb {
                    o[c] = MaybeUninit::new(fma::<F>(v[c], epi.scale, bias[c]).max(0.0));
                }
            }
            (Some(bias), false) => {
                let bias = &bias[..cb];
                for c in 0..cb {
                    o[c] = MaybeUninit::new(fma::<F>(v[c], epi.scale, bias[c]));
                }
            }
            (None, true) => {
                for c in 0..cb {
                    o[c] = MaybeUninit::new((v[c] * epi.scale).max(0.0));
                }
            }
            (None, false) => {
                for c in 0..cb {
                    o[c] = MaybeUninit::new(v[c] * epi.scale);
                }
            }
        }
    };
    for a0 in (0..win.rows).step_by(rb) {
        let nr = rb.min(win.rows - a0);
        let zl = nr * cb;
        let z = &mut zbuf[..2 * half * zl];
        {
            // Z[k] = (X[k] + conj X[h - k]) + pre[k] (X[k] - conj X[h - k])
            let (zr, zi) = z.split_at_mut(half * zl);
            for k in 0..half {
                let w = plan.pre[k];
                for i in 0..nr {
                    let r = (win.top + a0 + i) % p;
                    let (x, y) = (
                        &g[(k * p + r) * e2..(k * p + r + 1) * e2],
                        &g[((half - k) * p + r) * e2..((half - k) * p + r + 1) * e2],
                    );
                    let (xr, xi, yr, yi) = (&x[..cb], &x[cb..], &y[..cb], &y[cb..]);
                    let o = k * zl + i * cb;
                    let (or, oi) = (&mut zr[o..o + cb], &mut zi[o..o + cb]);
                    #[cfg(target_arch = "x86_64")]
                    if F {
                        // SAFETY: every run holds cb floats (sliced above); F only in AVX-512 builds
                        unsafe {
                            let (x2, y2) = ((xr.as_ptr(), xi.as_ptr()), (yr.as_ptr(), yi.as_ptr()));
                            zmm::combine((or.as_mut_ptr(), oi.as_mut_ptr()), x2, y2, w, 1.0, cb);
                        }
                        continue;
                    }
                    for c in 0..cb {
                        let (sr, si) = (xr[c] + yr[c], xi[c] - yi[c]);
                        let (dr, di) = (xr[c] - yr[c], xi[c] + yi[c]);
                        or[c] = fma::<F>(w[0], dr, fma::<F>(-w[1], di, sr));
                        oi[c] = fma::<F>(w[0], di, fma::<F>(w[1], dr, si));
                    }
                }
            }
        }
        let zs = planar(z, half, zl);
        // SAFETY: `z` holds `half` elements of `zl` lanes, transformed in
        // place with `a` and `b` (large enough, separate) as scratch.
        unsafe { plan.row_inv.run::<F>(zl, zs.as_seq(), zs, a, b) };
        for i in 0..nr {
            let o = &mut dst[(a0 + i) * row_stride..];
            let mut col = win.left;
            for w in 0..win.cols {
                let at = (col % 2) * half * zl + (col / 2) * zl + i * cb;
                store(&mut o[w * pix..w * pix + cb], &z[at..at + cb]);
                col += 1;
                if col == q {
                    col = 0;
                }
            }
        }
    }
}

// ---------------------------------------------------------------- bin products

/// Input channels up to which the bin products are plain loops rather than GEMMs.
const SMALL_CIN: usize = 4;

/// `y = x conj(W)` for one bin. Row `n` of `x3` is `[xr | xi | -xr]`
/// (`3 cin`), `t` is the kernel as `[ci][Wr | Wi]`, row `n` of `y` is
/// `[yr | yi]`: `yr = xr Wr + xi Wi`, `yi = xi Wr + (-xr) Wi`.
fn bin_forward(m: usize, cin: usize, cout: usize, x3: &[f32], t: &[f32], y: &mut [f32]) {
    if cin <= SMALL_CIN {
        for (xn, yn) in x3.chunks_exact(3 * cin).zip(y.chunks_exact_mut(2 * cout)).take(m) {
            let (yr, yi) = yn.split_at_mut(cout);
            yr.fill(0.0);
            yi.fill(0.0);
            for ci in 0..cin {
                let (xr, xi) = (xn[ci], xn[cin + ci]);
                let (wr, wi) = t[ci * 2 * cout..(ci + 1) * 2 * cout].split_at(cout);
                axpy2(yr, xr, wr, xi, wi);
                axpy2(yi, xi, wr, -xr, wi);
            }
        }
        return;
    }
    let a = |c0: usize| MatRef { data: &x3[c0..], rows: m, cols: cin, row_stride: 3 * cin, col_stride: 1 };
    let wr = MatRef { data: t, rows: cin, cols: cout, row_stride: 2 * cout, col_stride: 1 };
    let wi = MatRef { data: &t[cout..], ..wr };
    sgemm_serial(a(0), wr, half_of(y, 0, m, cout), false);
    sgemm_serial(a(cin), wi, half_of(y, 0, m, cout), true);
    sgemm_serial(a(cin), wr, half_of(y, cout, m, cout), false);
    sgemm_serial(a(2 * cin), wi, half_of(y, cout, m, cout), true);
}

/// Columns `c0..c0 + cols` of a `rows x 2 cols` row-major matrix.
fn half_of(y: &mut [f32], c0: usize, rows: usize, cols: usize) -> MatMut<'_> {
    MatMut { data: &mut y[c0..], rows, cols, row_stride: 2 * cols, col_stride: 1 }
}

/// `dx = dy W^T` for one bin. Row `n` of `dy3` is `[dyi | dyr | -dyi]`
/// (`3 cout`), `t` as in [`bin_forward`], row `n` of `dx` is `[dxr | dxi]`:
/// with `V = [Wr^T; Wi^T]` (a strided view of `t`), `dxr = [dyr | -dyi] V`
/// and `dxi = [dyi | dyr] V`.
fn bin_input(m: usize, cin: usize, cout: usize, dy3: &[f32], t: &[f32], dx: &mut [f32]) {
    let v = MatRef { data: t, rows: 2 * cout, cols: cin, row_stride: 1, col_stride: 2 * cout };
    let a = |c0: usize| MatRef { data: &dy3[c0..], rows: m, cols: 2 * cout, row_stride: 3 * cout, col_stride: 1 };
    sgemm_serial(a(cout), v, half_of(dx, 0, m, cin), false);
    sgemm_serial(a(0), v, half_of(dx, cin, m, cin), false);
}

/// `dw += x^T conj(dy)` for one bin (`dw = ` when `first`): rows of `x` and
/// `dy` are `[re | im]` at the given strides, `dw` is `[re cin*cout | im
/// cin*cout]`; `tb` is scratch of `4 cin cout` floats.
fn bin_weight(x: MatRef<'_>, dy: MatRef<'_>, cin: usize, cout: usize, first: bool, dw: &mut [f32], tb: &mut [f32]) {
    let (m, cc) = (x.rows, cin * cout);
    let (re, im) = dw.split_at_mut(cc);
    if cin <= SMALL_CIN {
        if first {
            re.fill(0.0);
            im.fill(0.0);
        }
        // re += xr dyr + xi dyi, im += xi dyr - xr dyi, a row of cout at a time
        for n in 0..m {
            let xn = &x.data[n * x.row_stride..n * x.row_stride + 2 * cin];
            let (dr, di) = dy.data[n * dy.row_stride..n * dy.row_stride + 2 * cout].split_at(cout);
            for ci in 0..cin {
                let (xr, xi) = (xn[ci], xn[cin + ci]);
                axpy2(&mut re[ci * cout..(ci + 1) * cout], xr, dr, xi, di);
                axpy2(&mut im[ci * cout..(ci + 1) * cout], xi, dr, -xr, di);
            }
        }
        return;
    }
    // [2cin x m] @ [m x 2cout] = [[XrDr, XrDi], [XiDr, XiDi]]
    sgemm_serial(x.t(), dy, MatMut::row_major(tb, 2 * cin, 2 * cout), false);
    for ci in 0..cin {
        let tr = &tb[ci * 2 * cout..(ci + 1) * 2 * cout];
        let ti = &tb[(cin + ci) * 2 * cout..(cin + ci + 1) * 2 * cout];
        let (re, im) = (&mut re[ci * cout..(ci + 1) * cout], &mut im[ci * cout..(ci + 1) * cout]);
        if first {
            for co in 0..cout {
                re[co] = tr[co] + ti[cout + co];
                im[co] = ti[co] - tr[cout + co];
            }
        } else {
            for co in 0..cout {
                re[co] += tr[co] + ti[cout + co];
                im[co] += ti[co] - tr[cout + co];
            }
        }
    }
}

/// `y += a u + b v` elementwise (AVX-512 when available).
fn axpy2(y: &mut [f32], a: f32, u: &[f32], b: f32, v: &[f32]) {
    let n = y.len();
    let (u, v) = (&u[..n], &v[..n]);
    #[cfg(target_arch = "x86_64")]
    if wide() {
        // SAFETY: avx512f and fma were detected
        unsafe { axpy2_avx512(y, a, u, b, v) };
        return;
    }
    for i in 0..n {
        y[i] += a * u[i] + b * v[i];
    }
}

/// [`axpy2`] with AVX-512.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn axpy2_avx512(y: &mut [f32], a: f32, u: &[f32], b: f32, v: &[f32]) {
    let n = y.len();
    let (u, v) = (&u[..n], &v[..n]);
    for i in 0..n {
        y[i] += a.mul_add(u[i], b * v[i]);
    }
}

/// Image-major spectra of one chunk, `[image][bin][re c | im c]`, that
/// per-bin tasks read and overwrite in parallel (each task only bin `b`'s rows).
#[derive(Clone, Copy)]
struct BinRows {
    ptr: SendPtr,
    images: usize,
    bins: usize,
    c: usize,
}

impl BinRows {
    fn new(buf: &mut [f32], images: usize, bins: usize, c: usize) -> Self {
        assert!(buf.len() >= images * bins * 2 * c, "conv fft: spectra too short");
        BinRows { ptr: SendPtr(buf.as_mut_ptr()), images, bins, c }
    }

    /// Copies bin `b` of every image into `out` (`images x 3c`) as
    /// `[first | second | -third]`, each a choice of the real (`false`) or
    /// imaginary (`true`) parts.
    ///
    /// # Safety
    /// Nothing may write bin `b`'s rows meanwhile.
    unsafe fn gather(&self, b: usize, (first, second, third): (bool, bool, bool), out: &mut [f32]) {
        let c = self.c;
        for (n, o) in out.chunks_exact_mut(3 * c).take(self.images).enumerate() {
            // SAFETY: row (n, b) lies inside the buffer (checked by `new`) and is not written meanwhile
            let row = unsafe { run(self.ptr.0.add((n * self.bins + b) * 2 * c), 2 * c) };
            let part = |im: bool| if im { &row[c..] } else { &row[..c] };
            o[..c].copy_from_slice(part(first));
            o[c..2 * c].copy_from_slice(part(second));
            for (d, v) in o[2 * c..].iter_mut().zip(part(third)) {
                *d = -v;
            }
        }
    }

    /// Writes `rows` (`images x 2c`) as bin `b` of every image.
    ///
    /// # Safety
    /// Bin `b`'s rows must be this caller's alone meanwhile.
    unsafe fn scatter(&self, b: usize, rows: &[f32]) {
        let c = self.c;
        for (n, r) in rows.chunks_exact(2 * c).take(self.images).enumerate() {
            // SAFETY: as in `gather`, and the rows are ours to write
            unsafe { run_mut(self.ptr.0.add((n * self.bins + b) * 2 * c), 2 * c).copy_from_slice(r) };
        }
    }
}

/// For every bin in parallel: gathers bin `b` of `src` with `pattern` (see
/// [`BinRows::gather`]), applies `f(b, gathered, result)` and writes the
/// result as bin `b` of `dst` (which may be `src`: each task only touches its bins).
fn per_bin(src: BinRows, dst: BinRows, pattern: (bool, bool, bool), f: impl Fn(usize, &[f32], &mut [f32]) + Sync) {
    assert!(src.images == dst.images && src.bins == dst.bins);
    (0..src.bins.div_ceil(BIN_GROUP)).into_par_iter().for_each(|g| {
        let mut gathered = scratch::take(src.images * 3 * src.c, false);
        let mut result = scratch::take(dst.images * 2 * dst.c, false);
        for b in g * BIN_GROUP..((g + 1) * BIN_GROUP).min(src.bins) {
            // SAFETY: bin b's rows of both buffers are this task's alone
            unsafe {
                src.gather(b, pattern, &mut gathered);
                f(b, &gathered, &mut result);
                dst.scatter(b, &result);
            }
        }
    });
}

// ---------------------------------------------------------------- whole passes

/// Bins per GEMM task.
const BIN_GROUP: usize = 8;
/// Kernel channels per task of the kernel's transforms (rounded to whole `cout` rows).
const WEIGHT_BLOCK: usize = 64;
/// Most floats of one spectrum buffer (48 MB): images are processed in
/// chunks this fits.
const SPEC_BUDGET: usize = 12 << 20;
/// Floats of the spectra of one image chunk that stay in cache (8 MB; the
/// last-level cache share this machine gives a core is 16 to 32 MB).
const CACHE_FLOATS: usize = 2 << 20;

/// What every pass of one geometry shares.
struct Setup {
    plan: Arc<Plan2d>,
    /// The input's read part, the output, the kernel.
    x_win: Window,
    y_win: Window,
    k_win: Window,
    /// Images per chunk.
    chunk: usize,
    /// Whether a chunk's spectra stay in cache: inverse transforms then work
    /// in place; else they read the spectrum and work in per-thread buffers,
    /// so that it is not written back to memory.
    in_cache: bool,
    /// `1 / (p q)`: the inverse transforms are unnormalised.
    scale: f32,
}

impl Setup {
    /// `shared`: floats every image chunk streams once (the kernel's spectrum,
    /// or the weight gradient's twice: read and written).
    fn new(geo: &ConvGeometry, shared: usize) -> Self {
        let s = Sizes::new(geo);
        let plan = plan(s.p, s.q);
        let n = geo.batch;
        // the two spectra of one image a pass holds at once
        let per_image = plan.bins * 2 * (geo.in_c + geo.out_c);
        let balanced = |most: usize| {
            let most = most.clamp(1, n);
            n.div_ceil(n.div_ceil(most))
        };
        // memory traffic (floats): chunks that fit in cache stream only the
        // shared data per chunk; larger ones also write their spectra out
        // and read them back
        let small = balanced(CACHE_FLOATS / per_image);
        let large = balanced(SPEC_BUDGET / (plan.bins * 2 * geo.in_c.max(geo.out_c)));
        let traffic = |m: usize| {
            let spill = if m * per_image > CACHE_FLOATS { 2 * n * per_image } else { 0 };
            n.div_ceil(m) * shared + spill
        };
        let chunk = if traffic(small) <= traffic(large) { small } else { large };
        #[cfg(test)]
        let chunk = tests::CHUNK.with(|c| c.get()).map_or(chunk, balanced);
        let in_cache = chunk * per_image <= CACHE_FLOATS;
        #[cfg(test)]
        let in_cache = tests::IN_CACHE.with(|c| c.get()).unwrap_or(in_cache);
        Setup {
            in_cache,
            x_win: Window { rows: s.rows_in, cols: s.cols_in, top: geo.pad_top % s.p, left: geo.pad_left % s.q },
            y_win: Window { rows: geo.out_h, cols: geo.out_w, top: 0, left: 0 },
            k_win: Window { rows: geo.kernel_h, cols: geo.kernel_w, top: 0, left: 0 },
            chunk,
            scale: 1.0 / (s.p * s.q) as f32,
            plan,
        }
    }
}

/// Kernel spectra kept for reuse: the forward pass computes one and the
/// input gradient of the same step, with the same weights, finds it.
const KERNEL_CACHE: usize = 2;

/// A kernel spectrum and what it was computed from.
struct KernelEntry {
    /// `p, q, cin, cout, kernel_h, kernel_w`.
    key: [usize; 6],
    weights: Vec<f32>,
    spec: Arc<Vec<f32>>,
}

/// Most recently used first.
static KERNELS: Mutex<Vec<KernelEntry>> = Mutex::new(Vec::new());

/// The kernel's half spectrum scaled by `1 / (p q)`, laid out `[bin][ci][Wr | Wi]`;
/// reused while the weights are bit-identical to a recent call's.
fn kernel_spectrum(st: &Setup, geo: &ConvGeometry, w: &[f32]) -> Arc<Vec<f32>> {
    let key = [st.plan.p, st.plan.q, geo.in_c, geo.out_c, geo.kernel_h, geo.kernel_w];
    let same = |e: &KernelEntry| {
        e.key == key && e.weights.len() == w.len() && e.weights.iter().zip(w).all(|(a, b)| a.to_bits() == b.to_bits())
    };
    let mut spare = None;
    {
        let mut cache = KERNELS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = cache.iter().position(same) {
            let hit = cache.remove(i);
            let spec = hit.spec.clone();
            cache.insert(0, hit);
            return spec;
        }
        if cache.len() >= KERNEL_CACHE {
            // reuse the least recent buffer when no caller holds it any more
            spare = cache.pop().and_then(|e| Arc::try_unwrap(e.spec).ok());
        }
    }
    let (cin, cout, cc) = (geo.in_c, geo.out_c, geo.in_c * geo.out_c);
    let len = st.plan.bins * cin * 2 * cout;
    let mut t = spare.unwrap_or_default();
    t.clear();
    t.reserve(len);
    let rows = (WEIGHT_BLOCK / cout).clamp(1, cin);
    let ptr = SendPtr(t.as_mut_ptr());
    (0..cin.div_ceil(rows)).into_par_iter().for_each(|i| {
        let ci0 = i * rows;
        let nr = rows.min(cin - ci0);
        let src = Src { data: &w[ci0 * cout..], row_stride: geo.kernel_w * cc, pix: cc };
        let out = Out::Kernel { ptr, len, cin, cout, ci0, scale: st.scale };
        // SAFETY: task i alone writes rows ci0..ci0 + nr of every bin of the
        // reserved `len` floats, and nothing reads them until all tasks are done.
        with_work(|wk| unsafe { forward_image(&st.plan, src, nr * cout, st.k_win, out, &mut [], wk) });
    });
    // SAFETY: the tasks wrote every (bin, ci, co) real and imaginary part: all `len` floats.
    unsafe { t.set_len(len) };
    let spec = Arc::new(t);
    let mut cache = KERNELS.lock().unwrap_or_else(|e| e.into_inner());
    cache.insert(0, KernelEntry { key, weights: w.to_vec(), spec: spec.clone() });
    cache.truncate(KERNEL_CACHE);
    spec
}

/// The spectra of images `n0..` of `x` (`[n, h, w, c]`) into `out`, laid out
/// `[image][bin][re c | im c]`.
fn image_spectra(st: &Setup, x: &[f32], (h, w, c): (usize, usize, usize), n0: usize, win: Window, out: &mut [f32]) {
    let img = h * w * c;
    let per = st.plan.bins * 2 * c;
    out.par_chunks_mut(per).enumerate().for_each(|(i, o)| {
        let src = Src { data: &x[(n0 + i) * img..(n0 + i + 1) * img], row_stride: w * c, pix: c };
        // SAFETY: an image's own buffer needs no exclusivity beyond `o`.
        let out = Out::Image { stream: !st.in_cache };
        with_work(|wk| unsafe { forward_image(&st.plan, src, c, win, out, o, wk) });
    });
}

/// Inverse transforms of the `[image][bin][re c | im c]` spectra `spec`
/// (destroyed) into the images of `dst` (`[images, h, w, c]`), windows `win`
/// (the rest of each image is zeroed).
fn image_outputs(
    st: &Setup,
    spec: &mut [f32],
    (h, w, c): (usize, usize, usize),
    win: Window,
    epi: Epilogue<'_>,
    dst: &mut [MaybeUninit<f32>],
) {
    let img = h * w * c;
    let per = st.plan.bins * 2 * c;
    let partial = win.rows < h || win.cols < w;
    dst.par_chunks_mut(img).zip(spec.par_chunks_mut(per)).for_each(|(d, s)| {
        if partial {
            d.fill(MaybeUninit::new(0.0));
        }
        let s = if st.in_cache { SpecIn::Own(s) } else { SpecIn::Shared(Spec { data: s, bin_stride: 2 * c, im: c }) };
        with_work(|wk| inverse_image(&st.plan, s, c, win, d, w * c, c, epi, wk));
    });
}

/// `y = act(conv(x, w) + bias)` by FFT for a [`supported`] geometry; every value of `y` is written.
pub(crate) fn forward(
    geo: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    y: &mut [MaybeUninit<f32>],
) {
    let (cin, cout) = (geo.in_c, geo.out_c);
    let st = Setup::new(geo, Sizes::new(geo).bins() * cin * 2 * cout);
    let bins = st.plan.bins;
    let t = kernel_spectrum(&st, geo, w);
    let img_out = geo.out_pixels() * cout;
    let mut xs = scratch::take(st.chunk * bins * 2 * cin, false);
    // the products overwrite the input spectra when the row sizes agree
    let mut ys = scratch::take(if cin == cout { 0 } else { st.chunk * bins * 2 * cout }, false);
    for (i, yc) in y.chunks_mut(st.chunk * img_out).enumerate() {
        let m = yc.len() / img_out;
        let xs = &mut xs[..m * bins * 2 * cin];
        image_spectra(&st, x, (geo.in_h, geo.in_w, cin), i * st.chunk, st.x_win, xs);
        let src = BinRows::new(xs, m, bins, cin);
        let ys: &mut [f32] = if cin == cout { xs } else { &mut ys[..m * bins * 2 * cout] };
        let dst = if cin == cout { src } else { BinRows::new(ys, m, bins, cout) };
        // per bin: rows [xr | xi | -xr] times the kernel
        per_bin(src, dst, (false, true, false), |b, x3, yb| {
            bin_forward(m, cin, cout, x3, &t[b * cin * 2 * cout..(b + 1) * cin * 2 * cout], yb)
        });
        let epi = Epilogue { scale: 1.0, bias, relu };
        image_outputs(&st, ys, (geo.out_h, geo.out_w, cout), st.y_win, epi, yc);
    }
}

/// The input gradient `dx` and/or weight gradient `dw` (both overwritten)
/// from the output gradient `dy` (already masked by any activation), by FFT
/// for a [`supported`] geometry. The transform of `dy` is shared.
pub(crate) fn backward(
    geo: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    mut dx: Option<&mut [f32]>,
    dw: Option<&mut [f32]>,
) {
    assert!(dx.as_ref().is_none_or(|d| d.len() == geo.input_len()), "conv fft: input gradient length");
    assert!(dw.as_ref().is_none_or(|d| d.len() == geo.weight_len()), "conv fft: weight gradient length");
    assert_eq!(dy.len(), geo.output_len(), "conv fft: output gradient length");
    let (cin, cout, cc) = (geo.in_c, geo.out_c, geo.in_c * geo.out_c);
    let bins = Sizes::new(geo).bins();
    let shared =
        if dx.is_some() { bins * cin * 2 * cout } else { 0 } + if dw.is_some() { 2 * bins * 2 * cc } else { 0 };
    let st = Setup::new(geo, shared);
    let t = dx.is_some().then(|| kernel_spectrum(&st, geo, w));
    // [bin][re cc | im cc], summed over the chunks in order
    let mut dws = scratch::take(if dw.is_some() { bins * 2 * cc } else { 0 }, false);
    let img_in = geo.in_h * geo.in_w * cin;
    let mut ds = scratch::take(st.chunk * bins * 2 * cout, false);
    // the input spectra (weight gradient), then the input gradient's unless
    // it overwrites `ds` (cin == cout)
    let need_other = dw.is_some() || cin != cout;
    let mut other = scratch::take(if need_other { st.chunk * bins * 2 * cin } else { 0 }, false);
    for i in 0..geo.batch.div_ceil(st.chunk) {
        let n0 = i * st.chunk;
        let m = st.chunk.min(geo.batch - n0);
        let ds = &mut ds[..m * bins * 2 * cout];
        image_spectra(&st, dy, (geo.out_h, geo.out_w, cout), n0, st.y_win, ds);
        if dw.is_some() {
            let xs = &mut other[..m * bins * 2 * cin];
            image_spectra(&st, x, (geo.in_h, geo.in_w, cin), n0, st.x_win, xs);
            let (xs, dsr) = (&*xs, &*ds);
            dws.par_chunks_mut(BIN_GROUP * 2 * cc).enumerate().for_each(|(g, wg)| {
                let mut tb = scratch::take(if cin <= SMALL_CIN { 0 } else { 4 * cc }, false);
                for (k, wb) in wg.chunks_exact_mut(2 * cc).enumerate() {
                    let b = g * BIN_GROUP + k;
                    let a = MatRef {
                        data: &xs[b * 2 * cin..],
                        rows: m,
                        cols: 2 * cin,
                        row_stride: bins * 2 * cin,
                        col_stride: 1,
                    };
                    let d = MatRef {
                        data: &dsr[b * 2 * cout..],
                        rows: m,
                        cols: 2 * cout,
                        row_stride: bins * 2 * cout,
                        col_stride: 1,
                    };
                    bin_weight(a, d, cin, cout, i == 0, wb, &mut tb);
                }
            });
        }
        if let (Some(dx), Some(t)) = (dx.as_deref_mut(), &t) {
            let src = BinRows::new(ds, m, bins, cout);
            let dxs: &mut [f32] = if cin == cout { ds } else { &mut other[..m * bins * 2 * cin] };
            let dst = if cin == cout { src } else { BinRows::new(dxs, m, bins, cin) };
            // per bin: rows [dyi | dyr | -dyi] times the kernel's transpose
            per_bin(src, dst, (true, false, true), |b, dy3, xb| {
                bin_input(m, cin, cout, dy3, &t[b * cin * 2 * cout..(b + 1) * cin * 2 * cout], xb)
            });
            let epi = Epilogue { scale: 1.0, bias: None, relu: false };
            let dxc = &mut dx[n0 * img_in..(n0 + m) * img_in];
            image_outputs(&st, dxs, (geo.in_h, geo.in_w, cin), st.x_win, epi, crate::alloc::as_uninit(dxc));
        }
    }
    if let Some(dw) = dw {
        // inverse transforms of the kernel channels, a block per task, then into [kh][kw][cc]
        let block = cc.min(WEIGHT_BLOCK);
        let taps = geo.kernel_h * geo.kernel_w;
        let mut tmp = scratch::take(cc.div_ceil(block) * taps * block, false);
        let epi = Epilogue { scale: st.scale, bias: None, relu: false };
        tmp.par_chunks_mut(taps * block).enumerate().for_each(|(i, out)| {
            let c0 = i * block;
            let cb = block.min(cc - c0);
            let s = SpecIn::Shared(Spec { data: &dws[c0..], bin_stride: 2 * cc, im: cc });
            with_work(|wk| {
                inverse_image(&st.plan, s, cb, st.k_win, crate::alloc::as_uninit(out), geo.kernel_w * cb, cb, epi, wk)
            });
        });
        for (i, out) in tmp.chunks(taps * block).enumerate() {
            let c0 = i * block;
            let cb = block.min(cc - c0);
            for t in 0..taps {
                dw[t * cc + c0..t * cc + c0 + cb].copy_from_slice(&out[t * cb..(t + 1) * cb]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::{conv2d_backward_reference, conv2d_forward_reference};

    /// A stride-1 geometry with padding `(top, bottom, left, right)`.
    fn geometry(
        batch: usize,
        (in_h, in_w, in_c): (usize, usize, usize),
        (kh, kw, out_c): (usize, usize, usize),
        (top, bottom, left, right): (usize, usize, usize, usize),
    ) -> ConvGeometry {
        ConvGeometry::new(batch, (in_h, in_w, in_c), (kh, kw, out_c), (1, 1), (1, 1), (top, bottom, left, right))
    }

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

    /// `|got - want| <= tol * max |want|` elementwise.
    #[track_caller]
    fn close(got: &[f32], want: &[f32], tol: f32, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-30);
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= tol * scale, "{what}: element {i}: got {g}, want {w} (scale {scale})");
        }
    }

    fn run_forward(g: &ConvGeometry, x: &[f32], w: &[f32], bias: Option<&[f32]>, relu: bool) -> Vec<f32> {
        let mut y = vec![f32::NAN; g.output_len()];
        forward(g, x, w, bias, relu, crate::alloc::as_uninit(&mut y));
        y
    }

    fn run_backward(g: &ConvGeometry, x: &[f32], w: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let (mut dx, mut dw) = (vec![f32::NAN; g.input_len()], vec![f32::NAN; g.weight_len()]);
        backward(g, x, w, dy, Some(&mut dx), Some(&mut dw));
        (dx, dw)
    }

    /// Forward (plain, with bias, relu fused), dx and dw against the f64 references.
    fn check(g: &ConvGeometry, seed: u64) {
        assert!(supported(g), "{g:?}");
        let x = values(g.input_len(), seed);
        let w = values(g.weight_len(), seed + 1);
        let bias = values(g.out_c, seed + 2);
        let dy = values(g.output_len(), seed + 3);
        let what = |op: &str| format!("{op} {g:?}");

        let mut want = vec![0.0; g.output_len()];
        conv2d_forward_reference(g, &x, &w, None, &mut want);
        close(&run_forward(g, &x, &w, None, false), &want, 1e-5, &what("forward"));
        conv2d_forward_reference(g, &x, &w, Some(&bias), &mut want);
        close(&run_forward(g, &x, &w, Some(&bias), false), &want, 1e-5, &what("forward bias"));
        let relu: Vec<f32> = want.iter().map(|v| v.max(0.0)).collect();
        close(&run_forward(g, &x, &w, Some(&bias), true), &relu, 1e-5, &what("forward relu"));

        let (dx_want, dw_want) = conv2d_backward_reference(g, &x, &w, &dy);
        let (dx, dw) = run_backward(g, &x, &w, &dy);
        close(&dx, &dx_want, 1e-5, &what("dx"));
        close(&dw, &dw_want, 1e-5, &what("dw"));
        // each alone
        let mut dx1 = vec![f32::NAN; g.input_len()];
        backward(g, &x, &w, &dy, Some(&mut dx1), None);
        assert_eq!(dx1, dx, "{}", what("dx alone"));
        let mut dw1 = vec![f32::NAN; g.weight_len()];
        backward(g, &x, &w, &dy, None, Some(&mut dw1));
        assert_eq!(dw1, dw, "{}", what("dw alone"));
    }

    #[test]
    fn matches_reference_on_small_odd_shapes() {
        // (batch, input, kernel, padding)
        let cases = [
            (1, (7, 5, 1), (3, 3, 1), (1, 1, 1, 1)),
            (3, (9, 7, 3), (4, 3, 5), (1, 2, 0, 2)),  // asymmetric SAME-like
            (1, (11, 6, 2), (5, 6, 3), (0, 0, 0, 0)), // valid, kernel = width
            (3, (6, 9, 5), (5, 7, 2), (2, 2, 3, 3)),  // kernel larger than half the input
            (2, (5, 5, 4), (5, 5, 7), (4, 4, 4, 4)),  // outputs reading only padding at the corners
            (1, (13, 3, 6), (8, 2, 1), (3, 4, 1, 0)), // one output channel
            (3, (4, 17, 1), (2, 9, 4), (1, 0, 4, 4)), // one input channel, odd channel counts
            (2, (10, 8, 3), (7, 3, 3), (6, 0, 0, 2)), // padding only on one side
            (1, (3, 3, 2), (3, 3, 2), (5, 1, 0, 6)),  // padding larger than the kernel
        ];
        for (i, &(n, input, kernel, pad)) in cases.iter().enumerate() {
            check(&geometry(n, input, kernel, pad), 10 * i as u64);
        }
    }

    thread_local! {
        /// Images per chunk for this thread's calls, when set.
        pub(super) static CHUNK: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
        /// Whether spectra count as staying in cache, when set.
        pub(super) static IN_CACHE: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
    }

    #[test]
    fn chunked_batches_match_reference() {
        // several image chunks (the weight gradient is summed over them),
        // spectra streamed out and read back without being overwritten
        for in_cache in [true, false] {
            CHUNK.with(|c| c.set(Some(2)));
            IN_CACHE.with(|c| c.set(Some(in_cache)));
            check(&geometry(5, (7, 6, 3), (4, 3, 5), (1, 2, 1, 1)), 91);
            check(&geometry(3, (6, 5, 1), (3, 3, 4), (1, 1, 1, 1)), 92);
            check(&geometry(4, (9, 8, 6), (5, 3, 6), (2, 2, 1, 1)), 93);
        }
        CHUNK.with(|c| c.set(None));
        IN_CACHE.with(|c| c.set(None));
    }

    #[test]
    fn cropping_geometries_match_reference() {
        // out_h smaller than `in + pads - k + 1`: the last rows are never read
        let mut g = geometry(2, (9, 8, 3), (3, 4, 2), (1, 1, 0, 1));
        g.out_h -= 2;
        g.out_w -= 1;
        check(&g, 77);
    }

    #[test]
    fn speech_shapes_match_direct_path() {
        // TensorFlow's speech-commands `conv` model (batch 2): conv1 and conv2
        for (g, seed) in [
            (geometry(2, (98, 40, 1), (20, 8, 64), (9, 10, 3, 4)), 1),
            (geometry(2, (49, 20, 64), (10, 4, 64), (4, 5, 1, 2)), 2),
        ] {
            let x = values(g.input_len(), seed);
            let w: Vec<f32> = values(g.weight_len(), seed + 1).iter().map(|v| v * 0.1).collect();
            let bias = values(g.out_c, seed + 2);
            let dy = values(g.output_len(), seed + 3);
            let mut want = vec![0.0; g.output_len()];
            crate::conv::conv2d_forward_reference(&g, &x, &w, Some(&bias), &mut want);
            close(&run_forward(&g, &x, &w, Some(&bias), false), &want, 1e-5, "speech forward");
            let (dx_want, dw_want) = conv2d_backward_reference(&g, &x, &w, &dy);
            let (dx, dw) = run_backward(&g, &x, &w, &dy);
            close(&dx, &dx_want, 1e-5, "speech dx");
            close(&dw, &dw_want, 1e-5, "speech dw");
        }
    }

    #[test]
    fn results_are_deterministic() {
        let g = geometry(5, (12, 10, 6), (6, 5, 9), (2, 3, 2, 2));
        let x = values(g.input_len(), 5);
        let w = values(g.weight_len(), 6);
        let dy = values(g.output_len(), 7);
        let y1 = run_forward(&g, &x, &w, None, true);
        let (dx1, dw1) = run_backward(&g, &x, &w, &dy);
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let (y2, (dx2, dw2)) =
                pool.install(|| (run_forward(&g, &x, &w, None, true), run_backward(&g, &x, &w, &dy)));
            assert_eq!(y1, y2, "forward, {threads} threads");
            assert_eq!(dx1, dx2, "dx, {threads} threads");
            assert_eq!(dw1, dw2, "dw, {threads} threads");
        }
    }

    /// [`VecFft::run`] with the AVX-512 passes.
    ///
    /// # Safety
    /// As `run`; the CPU must have avx512f and fma.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn run_wide(fft: &VecFft, lanes: usize, src: Seq, dst: SeqMut, a: &mut [f32], b: &mut [f32]) {
        // SAFETY: the caller's contract
        unsafe { fft.run::<true>(lanes, src, dst, a, b) };
    }

    /// Every lane of a [`VecFft`] against a plain f64 DFT, strided input,
    /// both directions, portable and AVX-512 passes.
    #[test]
    fn vector_fft_matches_dft() {
        for (n, lanes, inverse, wide) in (0..120)
            .map(|i| {
                (
                    [1, 2, 3, 4, 6, 8, 9, 12, 16, 18, 24, 27, 32, 54, 108][i % 15],
                    [1, 3, 17, 40][i / 15 % 4],
                    i / 60 % 2 == 1,
                    false,
                )
            })
            .chain((0..120).map(|i| {
                (
                    [1, 2, 3, 4, 6, 8, 9, 12, 16, 18, 24, 27, 32, 54, 108][i % 15],
                    [1, 3, 17, 40][i / 15 % 4],
                    i / 60 % 2 == 1,
                    true,
                )
            }))
        {
            {
                {
                    if wide && !super::wide() {
                        continue;
                    }
                    let fft = VecFft::new(n, inverse, wide);
                    // strided input: element i at i * (2 lanes + 1), imaginary lanes after the real ones
                    let stride = 2 * lanes + 1;
                    let data = values(n * stride, (n * 100 + lanes) as u64);
                    let mut out = vec![0.0f32; 2 * n * lanes];
                    let (mut a, mut b) = (vec![0.0; 2 * n * lanes], vec![0.0; 2 * n * lanes]);
                    let src = Seq { re: data.as_ptr(), im: data[lanes..].as_ptr(), stride };
                    let dst = planar(&mut out, n, lanes);
                    // SAFETY: both sequences hold n elements; out, a, b are separate
                    unsafe {
                        if wide {
                            #[cfg(target_arch = "x86_64")]
                            run_wide(&fft, lanes, src, dst, &mut a, &mut b);
                        } else {
                            fft.run::<false>(lanes, src, dst, &mut a, &mut b);
                        }
                    }
                    let sign = if inverse { 1.0 } else { -1.0 };
                    for lane in 0..lanes {
                        for k in 0..n {
                            let (mut wr, mut wi) = (0.0f64, 0.0f64);
                            for j in 0..n {
                                let (xr, xi) = (data[j * stride + lane] as f64, data[j * stride + lanes + lane] as f64);
                                let t = sign * 2.0 * std::f64::consts::PI * ((j * k) % n) as f64 / n as f64;
                                wr += xr * t.cos() - xi * t.sin();
                                wi += xr * t.sin() + xi * t.cos();
                            }
                            let (gr, gi) = (out[k * lanes + lane] as f64, out[n * lanes + k * lanes + lane] as f64);
                            let tol = 1e-5 * (n as f64).sqrt() * 4.0;
                            assert!(
                                (gr - wr).abs() < tol && (gi - wi).abs() < tol,
                                "n {n} lanes {lanes} inverse {inverse} wide {wide} bin {k}: ({gr}, {gi}) vs ({wr}, {wi})"
                            );
                        }
                    }
                }
            }
        }
    }

    /// A stride-1 geometry with TF "SAME" padding.
    fn same(batch: usize, (h, w, c): (usize, usize, usize), (kh, kw, co): (usize, usize, usize)) -> ConvGeometry {
        geometry(batch, (h, w, c), (kh, kw, co), ((kh - 1) / 2, kh / 2, (kw - 1) / 2, kw / 2))
    }

    #[test]
    fn cost_model_routes_only_clear_wins() {
        let all = [ConvPass::Forward, ConvPass::Input, ConvPass::Weight];
        // speech conv2: about 4x faster by FFT in every pass
        let conv2 = same(100, (49, 20, 64), (10, 4, 64));
        assert!(all.iter().all(|&p| fft_wins(&conv2, p)), "{conv2:?}");
        // speech conv1 (one input channel): about as fast as direct, so direct
        let conv1 = same(100, (98, 40, 1), (20, 8, 64));
        assert!(!fft_wins(&conv1, ConvPass::Forward) && !fft_wins(&conv1, ConvPass::Weight));
        // the MNIST CNN keeps its direct kernels
        for g in [same(128, (28, 28, 1), (5, 5, 32)), same(128, (14, 14, 32), (5, 5, 64))] {
            assert!(all.iter().all(|&p| !fft_wins(&g, p)), "{g:?}");
        }
        // 3x3 kernels never
        assert!(!fft_wins(&same(100, (56, 56, 64), (3, 3, 64)), ConvPass::Forward));
        // and strided ones are not supported
        let mut strided = conv2;
        strided.stride_h = 2;
        strided.out_h = 25;
        assert!(!supported(&strided));
    }

    #[test]
    fn grid_sizes_cover_the_reads() {
        assert_eq!(smooth_len(1, false), 1);
        assert_eq!(smooth_len(1, true), 2);
        assert_eq!(smooth_len(5, false), 6);
        assert_eq!(smooth_len(7, true), 8);
        assert_eq!(smooth_len(9, true), 12);
        assert_eq!(smooth_len(22, true), 24);
        assert_eq!(smooth_len(54, false), 54);
        assert_eq!(smooth_len(100, false), 108);
        // speech conv2: 49 + max(4, 5) rows, 20 + max(1, 2) columns
        let s = Sizes::new(&geometry(1, (49, 20, 64), (10, 4, 64), (4, 5, 1, 2)));
        assert_eq!((s.p, s.q, s.kw, s.rows_in, s.cols_in), (54, 24, 13, 49, 20));
        let s = Sizes::new(&geometry(1, (98, 40, 1), (20, 8, 64), (9, 10, 3, 4)));
        assert_eq!((s.p, s.q), (108, 48));
    }
}
