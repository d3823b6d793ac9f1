//! 2-D convolution on NHWC activations with `[kh, kw, in/groups, out]` (HWIO)
//! weights. HWIO is the layout whose `[kh*kw*cin, cout]` matrix view
//! multiplies an NHWC im2col buffer directly, so no weight copy is needed
//! per step.
//!
//! Depthwise convolutions (`groups == in_c == out_c`) go to `depthwise.rs`
//! before anything else. Large stride-1 kernels run by FFT when its cost
//! model says so (`conv_fft.rs`, checked next by every entry point). The other
//! forwards (see [`forward_kernel`]): on AVX-512 CPUs, dense convolutions
//! with a window run as implicit GEMM (`conv_igemm.rs`), or direct
//! (`conv_fast.rs`) when the input has few channels; 1x1 and grouped
//! convolutions, and everything on other CPUs, as im2col + the `gemm` crate
//! (`conv_gemm.rs`). All of them split one image across threads and fuse the
//! bias, a relu and (for residual blocks) a skip connection into the store.
//! The backward passes run direct where supported, else im2col + GEMM per
//! chunk of images. This file keeps the routing, the general backward and
//! plain-loop references for tests.

use crate::conv_fft::{self, ConvPass};
use crate::conv_gemm;
use crate::gemm::{MatMut, MatRef, sgemm_serial};
use rayon::prelude::*;

/// Every size a convolution needs, already validated by the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub batch: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub in_c: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub out_c: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub dilation_h: usize,
    pub dilation_w: usize,
    pub pad_top: usize,
    pub pad_left: usize,
    pub groups: usize,
}

impl ConvGeometry {
    /// `batch` images of `in_h x in_w x in_c` through a `kernel_h x kernel_w` window into
    /// `out_c` channels, with strides, dilations and zero padding `(top, bottom, left, right)`,
    /// in one group; the output size follows as PyTorch and TensorFlow compute it (the bottom
    /// and right padding only shape the output: every tap outside the image reads zero). The
    /// tensor layer derives its geometries from a layer's arguments; this is for callers that
    /// state one directly: tests, examples and benchmarks.
    ///
    /// Panics if a stride is 0 or the padded input is smaller than the dilated window.
    pub fn new(
        batch: usize,
        (in_h, in_w, in_c): (usize, usize, usize),
        (kernel_h, kernel_w, out_c): (usize, usize, usize),
        (stride_h, stride_w): (usize, usize),
        (dilation_h, dilation_w): (usize, usize),
        (top, bottom, left, right): (usize, usize, usize, usize),
    ) -> Self {
        let extent = |k: usize, d: usize| (k - 1) * d + 1;
        ConvGeometry {
            batch,
            in_h,
            in_w,
            in_c,
            out_h: (in_h + top + bottom - extent(kernel_h, dilation_h)) / stride_h + 1,
            out_w: (in_w + left + right - extent(kernel_w, dilation_w)) / stride_w + 1,
            out_c,
            kernel_h,
            kernel_w,
            stride_h,
            stride_w,
            dilation_h,
            dilation_w,
            pad_top: top,
            pad_left: left,
            groups: 1,
        }
    }

    /// The same convolution in `groups` groups (`in_c` and `out_c` must be multiples of it).
    pub fn with_groups(self, groups: usize) -> Self {
        ConvGeometry { groups, ..self }
    }

    /// Input channels per group.
    pub fn group_in(&self) -> usize {
        self.in_c / self.groups
    }
    /// Output channels per group.
    pub fn group_out(&self) -> usize {
        self.out_c / self.groups
    }
    /// Columns of the im2col matrix of one group: `kh * kw * cin/groups`.
    pub fn patch_len(&self) -> usize {
        self.kernel_h * self.kernel_w * self.group_in()
    }
    /// Output pixels per image.
    pub fn out_pixels(&self) -> usize {
        self.out_h * self.out_w
    }
    pub fn input_len(&self) -> usize {
        self.batch * self.in_h * self.in_w * self.in_c
    }
    pub fn output_len(&self) -> usize {
        self.batch * self.out_h * self.out_w * self.out_c
    }
    pub fn weight_len(&self) -> usize {
        self.kernel_h * self.kernel_w * self.group_in() * self.out_c
    }
    /// True when the im2col matrix is the input itself (1x1, stride 1, no padding, one group).
    fn is_pointwise(&self) -> bool {
        self.kernel_h == 1
            && self.kernel_w == 1
            && self.stride_h == 1
            && self.stride_w == 1
            && self.pad_top == 0
            && self.pad_left == 0
            && self.groups == 1
            && self.out_h == self.in_h
            && self.out_w == self.in_w
    }
    pub(crate) fn check(&self, x: usize, w: usize, y: usize) {
        assert!(self.groups > 0 && self.in_c.is_multiple_of(self.groups) && self.out_c.is_multiple_of(self.groups));
        assert_eq!(x, self.input_len(), "conv: input length");
        assert_eq!(w, self.weight_len(), "conv: weight length");
        assert_eq!(y, self.output_len(), "conv: output length");
    }
}

/// The im2col rows (`[oh*ow, patch_len]`) of one image `img` (`[h, w, c]`) for group `group`.
pub(crate) fn im2col_image(geo: &ConvGeometry, img: &[f32], group: usize, col_img: &mut [f32]) {
    let cg = geo.group_in();
    let k = geo.patch_len();
    let c0 = group * cg;
    {
        for oy in 0..geo.out_h {
            for ox in 0..geo.out_w {
                let row = &mut col_img[(oy * geo.out_w + ox) * k..(oy * geo.out_w + ox + 1) * k];
                let mut p = 0;
                for ky in 0..geo.kernel_h {
                    let iy = (oy * geo.stride_h + ky * geo.dilation_h) as isize - geo.pad_top as isize;
                    for kx in 0..geo.kernel_w {
                        let ix = (ox * geo.stride_w + kx * geo.dilation_w) as isize - geo.pad_left as isize;
                        let dst = &mut row[p..p + cg];
                        if iy >= 0 && (iy as usize) < geo.in_h && ix >= 0 && (ix as usize) < geo.in_w {
                            let base = ((iy as usize) * geo.in_w + ix as usize) * geo.in_c + c0;
                            if cg < 8 {
                                // a memcpy call per pixel costs more than the copy
                                for (d, s) in dst.iter_mut().zip(&img[base..base + cg]) {
                                    *d = *s;
                                }
                            } else {
                                dst.copy_from_slice(&img[base..base + cg]);
                            }
                        } else {
                            dst.iter_mut().for_each(|d| *d = 0.0);
                        }
                        p += cg;
                    }
                }
            }
        }
    }
}

/// Scatter-adds one image's im2col rows `col_img` back into its input gradient `img` for group `group`.
fn col2im_image(geo: &ConvGeometry, col_img: &[f32], group: usize, img: &mut [f32]) {
    let cg = geo.group_in();
    let k = geo.patch_len();
    let c0 = group * cg;
    for oy in 0..geo.out_h {
        for ox in 0..geo.out_w {
            let row = &col_img[(oy * geo.out_w + ox) * k..(oy * geo.out_w + ox + 1) * k];
            let mut p = 0;
            for ky in 0..geo.kernel_h {
                let iy = (oy * geo.stride_h + ky * geo.dilation_h) as isize - geo.pad_top as isize;
                for kx in 0..geo.kernel_w {
                    let ix = (ox * geo.stride_w + kx * geo.dilation_w) as isize - geo.pad_left as isize;
                    if iy >= 0 && (iy as usize) < geo.in_h && ix >= 0 && (ix as usize) < geo.in_w {
                        let base = ((iy as usize) * geo.in_w + ix as usize) * geo.in_c + c0;
                        for (d, s) in img[base..base + cg].iter_mut().zip(&row[p..p + cg]) {
                            *d += *s;
                        }
                    }
                    p += cg;
                }
            }
        }
    }
}

/// Images per task of the im2col paths: about 1 MiB of im2col rows. Depends
/// on the geometry only, so that the weight gradient's partial sums (one per
/// chunk, added in order) do not depend on the number of threads.
fn im2col_chunk(geo: &ConvGeometry) -> usize {
    ((1 << 18) / (geo.out_pixels() * geo.patch_len()).max(1)).clamp(1, geo.batch.max(1))
}

/// An activation fused into a convolution's output (and its backward).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ConvAct {
    /// The plain convolution.
    #[default]
    Identity,
    /// `max(0, .)`; the backward pass masks the gradient with `y > 0`.
    Relu,
    /// `min(max(0, .), 6)` (MobileNet, EfficientNet-Lite); the backward pass
    /// masks the gradient with `0 < y < 6`.
    Relu6,
    /// `v * sigmoid(v)` (swish; EfficientNet). Forward only: its derivative
    /// needs the pre-activation, which is not kept, so [`conv2d_backward`]
    /// rejects it (`convnet-tensor` fuses it only when no gradient is wanted).
    Silu,
    /// `v * relu6(v + 3) / 6` (MobileNet-V3). Forward only, as [`ConvAct::Silu`].
    HardSwish,
}

/// `y = conv(x, w) (+ bias)`. `y` is overwritten.
pub fn conv2d_forward(geo: &ConvGeometry, x: &[f32], w: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    conv2d_forward_act(geo, x, w, bias, ConvAct::Identity, y);
}

/// `y = act(conv(x, w) (+ bias))`, the activation fused into the store. `y` is overwritten.
pub fn conv2d_forward_act(geo: &ConvGeometry, x: &[f32], w: &[f32], bias: Option<&[f32]>, act: ConvAct, y: &mut [f32]) {
    profiled(geo, || forward_act(geo, x, w, bias, act, y))
}

fn forward_act(geo: &ConvGeometry, x: &[f32], w: &[f32], bias: Option<&[f32]>, act: ConvAct, y: &mut [f32]) {
    crate::alloc::configure();
    geo.check(x.len(), w.len(), y.len());
    if let Some(b) = bias {
        assert_eq!(b.len(), geo.out_c, "conv: bias length");
    }
    if geo.output_len() == 0 {
        return;
    }
    if crate::depthwise::supported(geo) {
        crate::depthwise::forward(geo, x, w, bias, act, crate::alloc::as_uninit(y));
        return;
    }
    if let Some(epi) = gemm_fused_act(geo, bias, act) {
        conv_gemm::forward(geo, x, w, epi, crate::alloc::as_uninit(y));
        return;
    }
    if matches!(act, ConvAct::Relu6 | ConvAct::Silu | ConvAct::HardSwish) {
        // the direct, implicit and FFT paths fuse relu only: the other
        // activations are one more in-place pass
        forward_act(geo, x, w, bias, ConvAct::Identity, y);
        crate::elementwise::conv_act_in_place(act, y);
        return;
    }
    if conv_fft::preferred(geo, ConvPass::Forward) {
        conv_fft::forward(geo, x, w, bias, act == ConvAct::Relu, crate::alloc::as_uninit(y));
        return;
    }
    let epi = conv_gemm::Epilogue { bias, residual: None, relu: act == ConvAct::Relu, then: None };
    forward_dense(geo, x, w, epi, crate::alloc::as_uninit(y));
}

/// As [`conv2d_forward_act`] into a new vector, which every path fills
/// without zeroing it first (saving a memset of the whole output).
pub fn conv2d_forward_vec(geo: &ConvGeometry, x: &[f32], w: &[f32], bias: Option<&[f32]>, act: ConvAct) -> Vec<f32> {
    profiled(geo, || forward_vec(geo, x, w, bias, act))
}

fn forward_vec(geo: &ConvGeometry, x: &[f32], w: &[f32], bias: Option<&[f32]>, act: ConvAct) -> Vec<f32> {
    crate::alloc::configure();
    let n = geo.output_len();
    geo.check(x.len(), w.len(), n);
    if let Some(b) = bias {
        assert_eq!(b.len(), geo.out_c, "conv: bias length");
    }
    if n == 0 {
        return Vec::new();
    }
    if crate::depthwise::supported(geo) {
        // SAFETY: the depthwise forward writes every output value.
        return unsafe { crate::alloc::filled_vec(n, |y| crate::depthwise::forward(geo, x, w, bias, act, y)) };
    }
    if let Some(epi) = gemm_fused_act(geo, bias, act) {
        // SAFETY: the GEMM forward writes every output value.
        return unsafe { crate::alloc::filled_vec(n, |y| conv_gemm::forward(geo, x, w, epi, y)) };
    }
    if matches!(act, ConvAct::Relu6 | ConvAct::Silu | ConvAct::HardSwish) {
        // the direct, implicit and FFT paths fuse relu only: the other
        // activations are one more in-place pass
        let mut y = forward_vec(geo, x, w, bias, ConvAct::Identity);
        crate::elementwise::conv_act_in_place(act, &mut y);
        return y;
    }
    if conv_fft::preferred(geo, ConvPass::Forward) {
        // SAFETY: the FFT forward writes every output value.
        return unsafe { crate::alloc::filled_vec(n, |y| conv_fft::forward(geo, x, w, bias, act == ConvAct::Relu, y)) };
    }
    let epi = conv_gemm::Epilogue { bias, residual: None, relu: act == ConvAct::Relu, then: None };
    // SAFETY: every dense forward writes every output value (the direct one
    // all pixels by its row tiles and all channels by its masked channel
    // blocks, the GEMM ones every block of their bands and panels).
    unsafe { crate::alloc::filled_vec(n, |y| forward_dense(geo, x, w, epi, y)) }
}

/// The epilogue that fuses ReLU6 or SiLU into the `conv_gemm` store, when that
/// kernel runs this forward (EfficientNet's pointwise convolutions); `None`
/// otherwise, and the activation is applied as a separate pass.
fn gemm_fused_act<'a>(geo: &ConvGeometry, bias: Option<&'a [f32]>, act: ConvAct) -> Option<conv_gemm::Epilogue<'a>> {
    let then = match act {
        ConvAct::Relu6 | ConvAct::Silu | ConvAct::HardSwish => act.unary(),
        _ => None,
    }?;
    (forward_kernel(geo) == Forward::Gemm && !conv_fft::preferred(geo, ConvPass::Forward))
        .then_some(conv_gemm::Epilogue { bias, residual: None, relu: false, then: Some(then) })
}

/// The kernels that compute a dense forward (after the FFT path declined).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
enum Forward {
    /// `conv_fast`: direct, row-planar input (stride_w 1).
    Direct,
    /// `conv_igemm`: implicit GEMM on the NHWC input (groups 1).
    Implicit,
    /// `conv_gemm`: im2col (or the input itself) and the `gemm` crate.
    Gemm,
}

/// `CONVNET_CONV_FORWARD` (`direct`, `implicit` or `gemm`), read once: forces
/// one forward kernel where it applies (for benchmarks and tests).
fn forced_forward() -> Option<Forward> {
    use std::sync::OnceLock;
    static FORCED: OnceLock<Option<Forward>> = OnceLock::new();
    *FORCED.get_or_init(|| match std::env::var("CONVNET_CONV_FORWARD").as_deref() {
        Ok("direct") => Some(Forward::Direct),
        Ok("implicit") => Some(Forward::Implicit),
        Ok("gemm") => Some(Forward::Gemm),
        _ => None,
    })
}

/// Which kernel runs a dense forward.
///
/// 1x1 convolutions are plain products of the NHWC input (or, strided, of a
/// cheap gather of it) with the weights, where the `gemm` crate is 5-15%
/// faster than the implicit GEMM; larger windows run as implicit GEMM, which
/// needs no im2col copy (measured on ResNet-50's layers at batch 1 and 16,
/// `examples/resnet_convs.rs`), except with few input channels (stride 1),
/// where the direct kernel is faster (`examples/conv_bench.rs`).
fn forward_kernel(geo: &ConvGeometry) -> Forward {
    #[cfg(target_arch = "x86_64")]
    {
        let direct = crate::conv_fast::forward_supported(geo);
        let implicit = crate::conv_igemm::supported(geo);
        match forced_forward() {
            Some(Forward::Direct) if direct => return Forward::Direct,
            Some(Forward::Implicit) if implicit => return Forward::Implicit,
            Some(Forward::Gemm) => return Forward::Gemm,
            _ => {}
        }
        let pointwise = geo.kernel_h == 1 && geo.kernel_w == 1;
        // few input channels make short runs, where the direct kernel's
        // channel-planar layout is faster (the MNIST CNN's 1- and 32-channel convs)
        if direct && !pointwise && geo.in_c < 64 {
            return Forward::Direct;
        }
        if implicit && !pointwise {
            return Forward::Implicit;
        }
    }
    let _ = geo;
    Forward::Gemm
}

/// Whether the implicit GEMM on prepacked weights ([`crate::prepared`]) runs
/// this forward: where the implicit GEMM would, and for the 1x1 convolutions
/// the `gemm` crate runs on plain weights (repacking them on every call).
/// `CONVNET_CONV_FORWARD` forcing another kernel turns it off.
#[cfg(target_arch = "x86_64")]
pub(crate) fn prepared_path(geo: &ConvGeometry) -> bool {
    if crate::depthwise::supported(geo) || conv_fft::preferred(geo, ConvPass::Forward) {
        return false;
    }
    if matches!(forced_forward(), Some(Forward::Gemm | Forward::Direct)) {
        return false;
    }
    let pointwise = geo.kernel_h == 1 && geo.kernel_w == 1;
    crate::conv_igemm::supported(geo) && (pointwise || forward_kernel(geo) == Forward::Implicit)
}

/// The kernel that runs this forward, as [`crate::profile`] names it.
pub(crate) fn forward_path(geo: &ConvGeometry) -> &'static str {
    if crate::depthwise::supported(geo) {
        return "depthwise";
    }
    if conv_fft::preferred(geo, ConvPass::Forward) {
        return "fft";
    }
    match forward_kernel(geo) {
        Forward::Direct => "direct",
        Forward::Implicit => "igemm",
        Forward::Gemm => "gemm",
    }
}

/// A short description of a convolution's shape, for profiles.
pub(crate) fn describe(geo: &ConvGeometry) -> String {
    let groups = if geo.groups > 1 { format!(" g{}", geo.groups) } else { String::new() };
    format!(
        "conv {}x{}/{} {}x{}x{} -> {}x{}x{}{groups}, n={}",
        geo.kernel_h,
        geo.kernel_w,
        geo.stride_h,
        geo.in_h,
        geo.in_w,
        geo.in_c,
        geo.out_h,
        geo.out_w,
        geo.out_c,
        geo.batch
    )
}

/// Floating-point operations of a convolution computed directly (2 per multiply-accumulate).
pub(crate) fn flops(geo: &ConvGeometry) -> u64 {
    2 * geo.output_len() as u64 * geo.patch_len() as u64
}

/// Runs one forward entry point under [`crate::profile`].
fn profiled<R>(geo: &ConvGeometry, f: impl FnOnce() -> R) -> R {
    crate::profile::timed(|| (forward_path(geo), describe(geo), flops(geo)), f)
}

/// The forward without the FFT path. `y` may be uninitialised: every value is written.
fn forward_dense(
    geo: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    epi: conv_gemm::Epilogue<'_>,
    y: &mut [std::mem::MaybeUninit<f32>],
) {
    match forward_kernel(geo) {
        #[cfg(target_arch = "x86_64")]
        Forward::Implicit => crate::conv_igemm::forward(geo, x, w, epi, y),
        #[cfg(target_arch = "x86_64")]
        Forward::Direct => {
            crate::conv_fast::forward(geo, x, w, epi.bias, epi.relu && epi.residual.is_none(), y);
            if let Some(r) = epi.residual {
                // SAFETY: the direct forward wrote every value of `y`.
                let y = unsafe { &mut *(y as *mut [std::mem::MaybeUninit<f32>] as *mut [f32]) };
                add_residual(y, r, epi.relu);
            }
        }
        _ => conv_gemm::forward(geo, x, w, epi, y),
    }
}

/// `y = act(y + r)` in place (`relu` for the activation), in parallel.
fn add_residual(y: &mut [f32], r: &[f32], relu: bool) {
    y.par_chunks_mut(1 << 14).zip(r.par_chunks(1 << 14)).for_each(|(y, r)| {
        if relu {
            y.iter_mut().zip(r).for_each(|(v, r)| *v = (*v + r).max(0.0));
        } else {
            y.iter_mut().zip(r).for_each(|(v, r)| *v += r);
        }
    });
}

/// `y = act(conv(x, w) + bias + residual)` into a new vector, with `residual`
/// (the output's shape: a residual block's skip connection) added in the
/// kernel's store where the path allows, else in one pass after it.
///
/// For inference: the backward of the sum is not this function's (training
/// records the convolution and the sum as separate ops).
pub fn conv2d_forward_residual_vec(
    geo: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    residual: &[f32],
    act: ConvAct,
) -> Vec<f32> {
    profiled(geo, || forward_residual_vec(geo, x, w, bias, residual, act))
}

fn forward_residual_vec(
    geo: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    residual: &[f32],
    act: ConvAct,
) -> Vec<f32> {
    crate::alloc::configure();
    let n = geo.output_len();
    geo.check(x.len(), w.len(), n);
    assert_eq!(residual.len(), n, "conv: residual length");
    if let Some(b) = bias {
        assert_eq!(b.len(), geo.out_c, "conv: bias length");
    }
    if n == 0 {
        return Vec::new();
    }
    if matches!(act, ConvAct::Relu6 | ConvAct::Silu | ConvAct::HardSwish) {
        // only identity and relu are fused with the residual
        let mut y = forward_vec(geo, x, w, bias, ConvAct::Identity);
        add_residual(&mut y, residual, false);
        crate::elementwise::conv_act_in_place(act, &mut y);
        return y;
    }
    if crate::depthwise::supported(geo) || conv_fft::preferred(geo, ConvPass::Forward) {
        let mut y = forward_vec(geo, x, w, bias, ConvAct::Identity);
        add_residual(&mut y, residual, act == ConvAct::Relu);
        return y;
    }
    let epi = conv_gemm::Epilogue { bias, residual: Some(residual), relu: act == ConvAct::Relu, then: None };
    // SAFETY: every dense forward writes every output value.
    unsafe { crate::alloc::filled_vec(n, |y| forward_dense(geo, x, w, epi, y)) }
}

/// `dx = conv_transpose(dy, w)`: the gradient with respect to the input. `dx` is overwritten.
pub fn conv2d_backward_input(geo: &ConvGeometry, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    geo.check(dx.len(), w.len(), dy.len());
    if crate::depthwise::supported(geo) {
        crate::depthwise::backward(geo, &[], w, dy, Some(dx), None, None);
        return;
    }
    if geo.input_len() > 0 && conv_fft::preferred(geo, ConvPass::Input) {
        conv_fft::backward(geo, &[], w, dy, Some(dx), None);
        return;
    }
    backward_input_direct(geo, dy, w, dx);
}

/// The input gradient without the FFT path: direct, else GEMM + col2im.
fn backward_input_direct(geo: &ConvGeometry, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if geo.input_len() > 0 && crate::conv_fast::backward_input_supported(geo) {
        crate::conv_fast::backward(geo, &[], w, dy, None, Some(dx), None, None);
        return;
    }
    backward_input_im2col(geo, dy, w, dx);
}

/// The general GEMM + col2im input gradient.
fn backward_input_im2col(geo: &ConvGeometry, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    // per task: dy rows of a few images times the weights into scratch, then
    // scattered into those images' own gradient (no writes shared between tasks)
    let (k, og, pixels) = (geo.patch_len(), geo.group_out(), geo.out_pixels());
    let img_in = geo.in_h * geo.in_w * geo.in_c;
    let chunk = im2col_chunk(geo);
    if img_in == 0 {
        return;
    }
    dx.par_chunks_mut(chunk * img_in).enumerate().for_each(|(t, dxc)| {
        let images = dxc.len() / img_in;
        let m = images * pixels;
        let dyc = &dy[t * chunk * pixels * geo.out_c..(t * chunk + images) * pixels * geo.out_c];
        if geo.is_pointwise() {
            let b = MatRef { data: w, rows: k, cols: og, row_stride: geo.out_c, col_stride: 1 }.t();
            sgemm_serial(MatRef::row_major(dyc, m, og), b, MatMut::row_major(dxc, m, k), false);
            return;
        }
        dxc.fill(0.0);
        let mut col = crate::scratch::take(m * k, false);
        for g in 0..geo.groups {
            let a = MatRef { data: &dyc[g * og..], rows: m, cols: og, row_stride: geo.out_c, col_stride: 1 };
            let b = MatRef { data: &w[g * og..], rows: k, cols: og, row_stride: geo.out_c, col_stride: 1 }.t();
            sgemm_serial(a, b, MatMut::row_major(&mut col, m, k), false);
            for (i, img) in dxc.chunks_mut(img_in).enumerate() {
                col2im_image(geo, &col[i * pixels * k..(i + 1) * pixels * k], g, img);
            }
        }
    });
}

/// `dw = im2col(x)^T @ dy`: the gradient with respect to the weights. `dw` is overwritten.
pub fn conv2d_backward_weight(geo: &ConvGeometry, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    geo.check(x.len(), dw.len(), dy.len());
    if crate::depthwise::supported(geo) {
        crate::depthwise::backward(geo, x, &[], dy, None, Some(dw), None);
        return;
    }
    if conv_fft::preferred(geo, ConvPass::Weight) {
        conv_fft::backward(geo, x, &[], dy, None, Some(dw));
        return;
    }
    backward_weight_direct(geo, x, dy, dw);
}

/// The weight gradient without the FFT path: direct, else im2col + GEMM.
fn backward_weight_direct(geo: &ConvGeometry, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::conv_fast::backward_weight_supported(geo) {
        crate::conv_fast::backward(geo, x, &[], dy, None, None, Some(dw), None);
        return;
    }
    backward_weight_im2col(geo, x, dy, dw);
}

/// Every gradient of a convolution with a fused activation, in one call.
///
/// `dy` is the gradient of the activation's output `y` (`y` is needed only for
/// [`ConvAct::Relu`] and [`ConvAct::Relu6`], whose masks `y > 0`, `0 < y < 6`
/// are applied first; a fused [`ConvAct::Silu`] has no backward and panics).
/// `dx`, `dw` and `db` are overwritten when given.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_backward(
    geo: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    act: ConvAct,
    y: Option<&[f32]>,
    dx: Option<&mut [f32]>,
    dw: Option<&mut [f32]>,
    db: Option<&mut [f32]>,
) {
    geo.check(x.len(), w.len(), dy.len());
    if let Some(y) = y {
        assert_eq!(y.len(), dy.len(), "conv: output length");
    }
    if let Some(d) = &dx {
        assert_eq!(d.len(), geo.input_len(), "conv: input length");
    }
    if let Some(d) = &dw {
        assert_eq!(d.len(), geo.weight_len(), "conv: weight length");
    }
    if act != ConvAct::Identity && (act != ConvAct::Relu || crate::depthwise::supported(geo)) {
        // relu6 (and relu for depthwise): mask the gradient first, then the plain backward
        let y = y.expect("conv2d_backward: the activation's mask needs the forward output");
        let mut g = crate::scratch::take(dy.len(), false);
        crate::elementwise::conv_act_backward(act, dy, y, &mut g);
        return conv2d_backward(geo, x, w, &g, ConvAct::Identity, None, dx, dw, db);
    }
    if crate::depthwise::supported(geo) {
        crate::depthwise::backward(geo, x, w, dy, dx, dw, db);
        return;
    }
    let fft_dx = dx.is_some() && geo.input_len() > 0 && conv_fft::preferred(geo, ConvPass::Input);
    let fft_dw = dw.is_some() && conv_fft::preferred(geo, ConvPass::Weight);
    #[cfg(target_arch = "x86_64")]
    if !fft_dx
        && !fft_dw
        && crate::conv_fast::backward_weight_supported(geo)
        && (dx.is_none() || crate::conv_fast::backward_input_supported(geo))
    {
        let relu_y = match act {
            ConvAct::Identity => None,
            ConvAct::Relu => Some(y.expect("conv2d_backward: relu needs the forward output")),
            ConvAct::Relu6 | ConvAct::Silu | ConvAct::HardSwish => unreachable!("masked above"),
        };
        if let Some(db) = &db {
            assert_eq!(db.len(), geo.out_c, "conv: bias length");
        }
        crate::conv_fast::backward(geo, x, w, dy, relu_y, dx, dw, db);
        return;
    }
    let masked;
    let g: &[f32] = match act {
        ConvAct::Identity => dy,
        ConvAct::Relu => {
            let y = y.expect("conv2d_backward: relu needs the forward output");
            assert_eq!(y.len(), dy.len(), "conv: output length");
            let mut m = crate::scratch::take(dy.len(), false);
            crate::elementwise::relu_backward(dy, y, &mut m);
            masked = m;
            &masked
        }
        ConvAct::Relu6 | ConvAct::Silu | ConvAct::HardSwish => unreachable!("masked above"),
    };
    // the FFT passes share the transform of the gradient; the others run direct
    let (mut dx, mut dw) = (dx, dw);
    if fft_dx || fft_dw {
        let fx = if fft_dx { dx.take() } else { None };
        let fw = if fft_dw { dw.take() } else { None };
        conv_fft::backward(geo, x, w, g, fx, fw);
    }
    if let Some(dx) = dx {
        backward_input_direct(geo, g, w, dx);
    }
    if let Some(dw) = dw {
        backward_weight_direct(geo, x, g, dw);
    }
    if let Some(db) = db {
        assert_eq!(db.len(), geo.out_c, "conv: bias length");
        db.copy_from_slice(&bias_grad(g, geo.out_c));
    }
}

/// The general im2col + GEMM weight gradient.
fn backward_weight_im2col(geo: &ConvGeometry, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    // per task: a private partial dW from a few images; partials added in
    // chunk order, so the result is the same for any number of threads
    let (k, og, pixels) = (geo.patch_len(), geo.group_out(), geo.out_pixels());
    let img_in = geo.in_h * geo.in_w * geo.in_c;
    let wlen = dw.len();
    let chunk = im2col_chunk(geo);
    let chunks = geo.batch.div_ceil(chunk);
    if chunks == 0 || pixels == 0 || wlen == 0 {
        dw.fill(0.0);
        return;
    }
    let mut partials = crate::scratch::take(chunks * wlen, false);
    partials.par_chunks_mut(wlen).enumerate().for_each(|(t, part)| {
        let images = chunk.min(geo.batch - t * chunk);
        let m = images * pixels;
        let xc = &x[t * chunk * img_in..(t * chunk + images) * img_in];
        let dyc = &dy[t * chunk * pixels * geo.out_c..(t * chunk + images) * pixels * geo.out_c];
        let mut col = crate::scratch::take(if geo.is_pointwise() { 0 } else { m * k }, false);
        for g in 0..geo.groups {
            let a = if geo.is_pointwise() {
                MatRef::row_major(xc, m, k).t()
            } else {
                for (i, ci) in col.chunks_mut(pixels * k).enumerate() {
                    im2col_image(geo, &xc[i * img_in..(i + 1) * img_in], g, ci);
                }
                MatRef::row_major(&col, m, k).t()
            };
            let b = MatRef { data: &dyc[g * og..], rows: m, cols: og, row_stride: geo.out_c, col_stride: 1 };
            let c = MatMut { data: &mut part[g * og..], rows: k, cols: og, row_stride: geo.out_c, col_stride: 1 };
            sgemm_serial(a, b, c, false);
        }
    });
    dw.par_chunks_mut(4096).enumerate().for_each(|(i, out)| {
        let s = i * 4096;
        out.copy_from_slice(&partials[s..s + out.len()]);
        for p in 1..chunks {
            for (o, v) in out.iter_mut().zip(&partials[p * wlen + s..]) {
                *o += *v;
            }
        }
    });
}

/// Sum of `dy` (`[rows, channels]`) over rows: the bias gradient.
///
/// Partial sums over fixed-size row blocks are combined in order, so the
/// result is bit-identical for any thread count and schedule.
pub fn bias_grad(dy: &[f32], channels: usize) -> Vec<f32> {
    assert!(channels > 0 && dy.len().is_multiple_of(channels));
    let partials: Vec<Vec<f32>> = dy
        .par_chunks(channels * 256)
        .map(|rows| {
            let mut acc = vec![0.0f32; channels];
            for row in rows.chunks_exact(channels) {
                for (a, v) in acc.iter_mut().zip(row) {
                    *a += *v;
                }
            }
            acc
        })
        .collect();
    let mut total = vec![0.0f32; channels];
    for p in &partials {
        for (t, v) in total.iter_mut().zip(p) {
            *t += *v;
        }
    }
    total
}

/// Plain-loop forward convolution (with bias), the reference for tests.
pub fn conv2d_forward_reference(geo: &ConvGeometry, x: &[f32], w: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    geo.check(x.len(), w.len(), y.len());
    let (cg, og) = (geo.group_in(), geo.group_out());
    for n in 0..geo.batch {
        for oy in 0..geo.out_h {
            for ox in 0..geo.out_w {
                for o in 0..geo.out_c {
                    let g = o / og;
                    let mut s = bias.map_or(0.0, |b| b[o] as f64);
                    for ky in 0..geo.kernel_h {
                        for kx in 0..geo.kernel_w {
                            let Some((iy, ix)) = geo.input_pos(oy, ox, ky, kx) else { continue };
                            for ci in 0..cg {
                                let xv = x[((n * geo.in_h + iy) * geo.in_w + ix) * geo.in_c + g * cg + ci];
                                let wv = w[((ky * geo.kernel_w + kx) * cg + ci) * geo.out_c + o];
                                s += xv as f64 * wv as f64;
                            }
                        }
                    }
                    y[((n * geo.out_h + oy) * geo.out_w + ox) * geo.out_c + o] = s as f32;
                }
            }
        }
    }
}

/// Plain-loop input and weight gradients `(dx, dw)`, the reference for tests.
pub fn conv2d_backward_reference(geo: &ConvGeometry, x: &[f32], w: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
    geo.check(x.len(), w.len(), dy.len());
    let (cg, og) = (geo.group_in(), geo.group_out());
    let mut dx = vec![0.0f64; x.len()];
    let mut dw = vec![0.0f64; w.len()];
    for n in 0..geo.batch {
        for oy in 0..geo.out_h {
            for ox in 0..geo.out_w {
                for o in 0..geo.out_c {
                    let g = o / og;
                    let d = dy[((n * geo.out_h + oy) * geo.out_w + ox) * geo.out_c + o] as f64;
                    for ky in 0..geo.kernel_h {
                        for kx in 0..geo.kernel_w {
                            let Some((iy, ix)) = geo.input_pos(oy, ox, ky, kx) else { continue };
                            for ci in 0..cg {
                                let xi = ((n * geo.in_h + iy) * geo.in_w + ix) * geo.in_c + g * cg + ci;
                                let wi = ((ky * geo.kernel_w + kx) * cg + ci) * geo.out_c + o;
                                dx[xi] += d * w[wi] as f64;
                                dw[wi] += d * x[xi] as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    (dx.into_iter().map(|v| v as f32).collect(), dw.into_iter().map(|v| v as f32).collect())
}

impl ConvGeometry {
    /// The input pixel tap `(ky, kx)` of output pixel `(oy, ox)` reads, if inside the image.
    fn input_pos(&self, oy: usize, ox: usize, ky: usize, kx: usize) -> Option<(usize, usize)> {
        let iy = (oy * self.stride_h + ky * self.dilation_h).checked_sub(self.pad_top)?;
        let ix = (ox * self.stride_w + kx * self.dilation_w).checked_sub(self.pad_left)?;
        (iy < self.in_h && ix < self.in_w).then_some((iy, ix))
    }
}
