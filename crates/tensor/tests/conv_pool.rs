//! `conv2d`, `max_pool2d` and `avg_pool2d` against plain f64 references
//! written here (direct loops, output sizes from TensorFlow's and PyTorch's
//! formulas, not from the crate): gradients by f64 finite differences on
//! small odd shapes with stride, padding, dilation, groups and depthwise
//! multipliers; forward and backward on ragged random geometries (including
//! the 1x1 pointwise fast path and filter counts that are not multiples of
//! 16); output sizes over every small input, kernel and stride.

mod common;

use common::*;
use convnet_tensor::rng::Rng;
use convnet_tensor::{Conv2dArgs, Padding2d, Pool2dArgs, Tensor, TensorError};

// ---------------------------------------------------------------- convolution

#[derive(Clone, Copy, Debug)]
struct ConvCase {
    n: usize,
    h: usize,
    w: usize,
    cin: usize,
    cout: usize,
    kh: usize,
    kw: usize,
    stride: (usize, usize),
    dilation: (usize, usize),
    groups: usize,
    padding: Padding2d,
    bias: bool,
}

impl ConvCase {
    fn new(n: usize, h: usize, w: usize, cin: usize, cout: usize, (kh, kw): (usize, usize)) -> Self {
        Self {
            n,
            h,
            w,
            cin,
            cout,
            kh,
            kw,
            stride: (1, 1),
            dilation: (1, 1),
            groups: 1,
            padding: Padding2d::Valid,
            bias: true,
        }
    }
    fn stride(self, s: (usize, usize)) -> Self {
        Self { stride: s, ..self }
    }
    fn dilation(self, d: (usize, usize)) -> Self {
        Self { dilation: d, ..self }
    }
    fn groups(self, g: usize) -> Self {
        Self { groups: g, ..self }
    }
    fn padding(self, p: Padding2d) -> Self {
        Self { padding: p, ..self }
    }
    fn cout_(self, cout: usize) -> Self {
        Self { cout, ..self }
    }
    fn no_bias(self) -> Self {
        Self { bias: false, ..self }
    }
    fn args(&self) -> Conv2dArgs {
        Conv2dArgs { stride: self.stride, padding: self.padding, dilation: self.dilation, groups: self.groups }
    }
    fn x_dims(&self) -> [usize; 4] {
        [self.n, self.h, self.w, self.cin]
    }
    fn w_dims(&self) -> [usize; 4] {
        [self.kh, self.kw, self.cin / self.groups, self.cout]
    }
    /// `(out_h, out_w, pad_top, pad_left)`, or None when the kernel does not fit.
    fn geometry(&self) -> Option<(usize, usize, usize, usize)> {
        let (oh, pt) = conv_axis(self.h, self.kh, self.stride.0, self.dilation.0, self.padding, true)?;
        let (ow, pl) = conv_axis(self.w, self.kw, self.stride.1, self.dilation.1, self.padding, false)?;
        Some((oh, ow, pt, pl))
    }
}

/// Output size and leading padding along one axis. "same" is TensorFlow's
/// rule (out = ceil(in / stride), the odd padding pixel after); explicit
/// padding uses PyTorch's `floor((in + before + after - extent) / stride) + 1`.
fn conv_axis(size: usize, k: usize, s: usize, d: usize, padding: Padding2d, vertical: bool) -> Option<(usize, usize)> {
    let extent = (k - 1) * d + 1;
    let (before, after) = match padding {
        Padding2d::Valid => (0, 0),
        Padding2d::Same => {
            let out = size.div_ceil(s);
            let total = ((out - 1) * s + extent).saturating_sub(size);
            (total / 2, total - total / 2)
        }
        Padding2d::Explicit { top, bottom, left, right } => {
            if vertical {
                (top, bottom)
            } else {
                (left, right)
            }
        }
    };
    let padded = size + before + after;
    (padded >= extent).then(|| ((padded - extent) / s + 1, before))
}

/// Calls `f(y_index, x_index, w_index)` for every multiply of the convolution.
fn conv_taps(c: &ConvCase, mut f: impl FnMut(usize, usize, usize)) {
    let (oh, ow, pt, pl) = c.geometry().expect("kernel fits");
    let (cg, og) = (c.cin / c.groups, c.cout / c.groups);
    for b in 0..c.n {
        for oy in 0..oh {
            for ox in 0..ow {
                for co in 0..c.cout {
                    let yi = ((b * oh + oy) * ow + ox) * c.cout + co;
                    let g = co / og;
                    for ky in 0..c.kh {
                        let iy = (oy * c.stride.0 + ky * c.dilation.0) as isize - pt as isize;
                        if iy < 0 || iy >= c.h as isize {
                            continue;
                        }
                        for kx in 0..c.kw {
                            let ix = (ox * c.stride.1 + kx * c.dilation.1) as isize - pl as isize;
                            if ix < 0 || ix >= c.w as isize {
                                continue;
                            }
                            for ci in 0..cg {
                                let xi = ((b * c.h + iy as usize) * c.w + ix as usize) * c.cin + g * cg + ci;
                                let wi = ((ky * c.kw + kx) * cg + ci) * c.cout + co;
                                f(yi, xi, wi);
                            }
                        }
                    }
                }
            }
        }
    }
}

fn conv_out_len(c: &ConvCase) -> usize {
    let (oh, ow, _, _) = c.geometry().expect("kernel fits");
    c.n * oh * ow * c.cout
}

/// Direct convolution in f64.
fn conv_ref(c: &ConvCase, x: &[f64], w: &[f64], bias: Option<&[f64]>) -> Vec<f64> {
    let mut y = vec![0.0; conv_out_len(c)];
    if let Some(b) = bias {
        for (i, v) in y.iter_mut().enumerate() {
            *v = b[i % c.cout];
        }
    }
    conv_taps(c, |yi, xi, wi| y[yi] += x[xi] * w[wi]);
    y
}

/// Exact f64 gradients `(dx, dw, db)` of `sum(dy * conv(x, w) + b)`.
fn conv_ref_backward(c: &ConvCase, x: &[f64], w: &[f64], dy: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut dx = vec![0.0; x.len()];
    let mut dw = vec![0.0; w.len()];
    let mut db = vec![0.0; c.cout];
    conv_taps(c, |yi, xi, wi| {
        dx[xi] += dy[yi] * w[wi];
        dw[wi] += dy[yi] * x[xi];
    });
    for (i, g) in dy.iter().enumerate() {
        db[i % c.cout] += g;
    }
    (dx, dw, db)
}

fn conv_inputs(c: &ConvCase, rng: &mut Rng) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let x = normal(rng, c.x_dims().iter().product());
    let w = normal(rng, c.w_dims().iter().product()).iter().map(|v| v * 0.5).collect();
    let b = normal(rng, c.cout);
    (x, w, b)
}

/// Finite-difference check of dx, dw and db (those marked differentiable).
fn grad_check_conv(c: ConvCase, diff_x: bool, diff_w: bool, seed: u64) {
    let mut rng = Rng::new(seed);
    let (x, w, b) = conv_inputs(&c, &mut rng);
    let mut args = vec![
        Arg { differentiate: diff_x, ..var(x, &c.x_dims()) },
        Arg { differentiate: diff_w, ..var(w, &c.w_dims()) },
    ];
    if c.bias {
        args.push(var(b, &[c.cout]));
    }
    let conv_args = c.args();
    check_op(
        &format!("conv2d {c:?}"),
        &args,
        |t| t[0].conv2d(&t[1], t.get(2), &conv_args),
        |v| conv_ref(&c, &v[0], &v[1], v.get(2).map(|b| b.as_slice())),
    );
}

#[test]
fn conv2d_gradients_match_finite_differences() {
    let base3 = ConvCase::new(2, 7, 5, 3, 4, (3, 3));
    let base4 = ConvCase::new(2, 7, 5, 4, 6, (3, 3));
    let cases = [
        base3,
        base4.stride((2, 2)).padding(Padding2d::Same),
        // 1x1 stride 1: the pointwise fast path (no im2col)
        ConvCase::new(2, 7, 5, 3, 4, (1, 1)).no_bias(),
        ConvCase::new(2, 7, 5, 4, 6, (1, 1)),
        // 1x1 with stride: im2col path
        ConvCase::new(2, 7, 5, 3, 4, (1, 1)).stride((2, 2)).no_bias(),
        // 2x3 kernel, asymmetric explicit padding, unequal strides
        ConvCase::new(2, 7, 5, 4, 6, (2, 3)).stride((2, 1)).padding(Padding2d::Explicit {
            top: 1,
            bottom: 0,
            left: 2,
            right: 1,
        }),
        ConvCase::new(2, 7, 5, 3, 4, (2, 3)).padding(Padding2d::Same),
        // dilation
        base3.dilation((2, 2)).padding(Padding2d::Same),
        base4.dilation((2, 1)).no_bias(),
        ConvCase::new(2, 7, 5, 4, 6, (2, 3)).dilation((2, 2)).padding(Padding2d::symmetric(1, 2)),
        // groups
        base4.groups(2).stride((2, 2)).padding(Padding2d::symmetric(1, 1)),
        ConvCase::new(2, 7, 5, 4, 6, (2, 3)).groups(2).dilation((2, 1)).no_bias(),
        // depthwise, channel multiplier 1 and 2
        base3.groups(3).padding(Padding2d::Same).cout_(3),
        base4.groups(4).cout_(8).stride((2, 2)).no_bias(),
        ConvCase::new(2, 7, 5, 3, 6, (2, 3)).groups(3).padding(Padding2d::Explicit {
            top: 0,
            bottom: 1,
            left: 1,
            right: 0,
        }),
        // even sizes with "same" and stride 2: TensorFlow puts the odd pixel after
        ConvCase::new(2, 6, 8, 3, 4, (2, 2)).stride((2, 2)).padding(Padding2d::Same),
        ConvCase::new(1, 6, 8, 3, 4, (4, 3)).stride((2, 3)).padding(Padding2d::Same),
    ];
    for (i, c) in cases.iter().enumerate() {
        grad_check_conv(*c, true, true, 100 + i as u64);
    }
    // one input constant: the backward must skip it and still get the other right
    grad_check_conv(base4.groups(2).padding(Padding2d::Same), false, true, 7);
    grad_check_conv(base4.groups(2).padding(Padding2d::Same), true, false, 8);
    grad_check_conv(ConvCase::new(2, 7, 5, 3, 4, (1, 1)), false, true, 9);
    grad_check_conv(ConvCase::new(2, 7, 5, 3, 4, (1, 1)), true, false, 10);
}

/// A random convolution with every size in 1..=13 (filters up to 20, so
/// counts that are not multiples of 16 are common).
fn random_conv_case(rng: &mut Rng) -> ConvCase {
    let groups = match rng.below(4) {
        0 | 1 => 1,
        2 => 2 + rng.below(2),
        _ => 0, // depthwise, set below
    };
    let (cin, cout, groups) = if groups == 0 {
        let cin = 1 + rng.below(13);
        (cin, cin * (1 + rng.below(2)), cin)
    } else {
        let cin = groups * (1 + rng.below(13 / groups));
        let cout = groups * (1 + rng.below(20 / groups));
        (cin, cout, groups)
    };
    let pad = |rng: &mut Rng| rng.below(3);
    let padding = match rng.below(3) {
        0 => Padding2d::Valid,
        1 => Padding2d::Same,
        _ => Padding2d::Explicit { top: pad(rng), bottom: pad(rng), left: pad(rng), right: pad(rng) },
    };
    ConvCase {
        n: 1 + rng.below(3),
        h: 1 + rng.below(13),
        w: 1 + rng.below(13),
        cin,
        cout,
        kh: 1 + rng.below(5),
        kw: 1 + rng.below(5),
        stride: (1 + rng.below(3), 1 + rng.below(3)),
        dilation: (1 + rng.below(2), 1 + rng.below(2)),
        groups,
        padding,
        bias: rng.below(2) == 0,
    }
}

/// Forward, dx, dw and db of one case against the f64 reference (exact
/// adjoint loops, no finite differences, so any size is cheap).
fn check_conv_against_reference(c: &ConvCase, rng: &mut Rng) {
    let (x, w, b) = conv_inputs(c, rng);
    let xt = Tensor::from_vec(x.clone(), c.x_dims()).unwrap().var();
    let wt = Tensor::from_vec(w.clone(), c.w_dims()).unwrap().var();
    let bt = Tensor::from_vec(b.clone(), [c.cout]).unwrap().var();
    let result = xt.conv2d(&wt, c.bias.then_some(&bt), &c.args());
    if c.geometry().is_none() {
        assert!(
            matches!(result, Err(TensorError::InvalidArgument { .. })),
            "{c:?}: kernel larger than the padded input must be InvalidArgument, got {result:?}"
        );
        return;
    }
    let y = result.unwrap_or_else(|e| panic!("{c:?}: {e}"));
    let (oh, ow, _, _) = c.geometry().unwrap();
    assert_eq!(y.dims(), [c.n, oh, ow, c.cout], "{c:?}: output shape");
    let to64 = |v: &[f32]| v.iter().map(|&v| v as f64).collect::<Vec<f64>>();
    let (x64, w64, b64) = (to64(&x), to64(&w), to64(&b));
    let want = conv_ref(c, &x64, &w64, c.bias.then_some(b64.as_slice()));
    assert_close(&format!("conv2d forward {c:?}"), y.data(), &want, 1e-5);

    let dy = normal(rng, y.numel());
    let grads = y.backward_with(Tensor::from_vec(dy.clone(), y.dims().to_vec()).unwrap()).unwrap();
    let (dx, dw, db) = conv_ref_backward(c, &x64, &w64, &to64(&dy));
    assert_close(&format!("conv2d dx {c:?}"), grads.get(&xt).unwrap().data(), &dx, 1e-4);
    assert_close(&format!("conv2d dw {c:?}"), grads.get(&wt).unwrap().data(), &dw, 1e-4);
    if c.bias {
        assert_close(&format!("conv2d db {c:?}"), grads.get(&bt).unwrap().data(), &db, 1e-4);
    } else {
        assert!(grads.get(&bt).is_none());
    }
}

#[test]
fn conv2d_matches_direct_convolution_on_ragged_shapes() {
    let mut rng = Rng::new(2024);
    // the pointwise fast path (1x1, stride 1, no padding, one group), ragged channel counts
    for (i, &(cin, cout)) in [(1, 1), (3, 17), (13, 5), (16, 16), (7, 20), (2, 33)].iter().enumerate() {
        let c = ConvCase::new(1 + i % 3, 1 + (i * 5) % 13, 1 + (i * 7) % 13, cin, cout, (1, 1));
        check_conv_against_reference(&c, &mut rng);
        check_conv_against_reference(&c.no_bias(), &mut rng);
    }
    // 1x1 kernels that must leave the fast path: padding, stride, groups
    for c in [
        ConvCase::new(2, 5, 6, 4, 6, (1, 1)).padding(Padding2d::symmetric(1, 0)),
        ConvCase::new(2, 5, 6, 4, 6, (1, 1)).stride((1, 2)),
        ConvCase::new(2, 5, 6, 4, 6, (1, 1)).groups(2),
        ConvCase::new(2, 5, 6, 4, 6, (1, 1)).padding(Padding2d::Same),
    ] {
        check_conv_against_reference(&c, &mut rng);
    }
    let mut rejected = 0;
    for _ in 0..400 {
        let c = random_conv_case(&mut rng);
        rejected += c.geometry().is_none() as usize;
        check_conv_against_reference(&c, &mut rng);
    }
    // both branches were exercised
    assert!(rejected > 5 && rejected < 200, "{rejected} of 400 random cases had a kernel larger than the input");
}

#[test]
fn conv2d_output_sizes_follow_tensorflow_and_pytorch() {
    for size in 1..=13 {
        for k in 1..=5 {
            for s in 1..=4 {
                for d in 1..=3 {
                    let extent = (k - 1) * d + 1;
                    let args = |padding| Conv2dArgs { stride: (s, 1), padding, dilation: (d, 1), groups: 1 };
                    // TensorFlow "same": ceil(in / stride), whatever the kernel
                    let got = args(Padding2d::Same).output_hw((size, 3), (k, 1)).unwrap();
                    assert_eq!(got, (size.div_ceil(s), 3), "same: in {size} k {k} s {s} d {d}");
                    // PyTorch: floor((in + 2p - d(k-1) - 1) / s) + 1, an error when negative
                    for p in 0..=2 {
                        let got = args(Padding2d::symmetric(p, 0)).output_hw((size, 3), (k, 1));
                        let padded = size + 2 * p;
                        if padded >= extent {
                            assert_eq!(
                                got.unwrap(),
                                ((padded - d * (k - 1) - 1) / s + 1, 3),
                                "in {size} k {k} s {s} d {d} p {p}"
                            );
                        } else {
                            assert!(
                                matches!(got, Err(TensorError::InvalidArgument { .. })),
                                "in {size} k {k} d {d} p {p}: {got:?}"
                            );
                        }
                    }
                    // the same along the width, with asymmetric padding
                    let got = Conv2dArgs {
                        stride: (1, s),
                        padding: Padding2d::Explicit { top: 0, bottom: 0, left: 2, right: 1 },
                        dilation: (1, d),
                        groups: 1,
                    }
                    .output_hw((3, size), (1, k));
                    if size + 3 >= extent {
                        assert_eq!(got.unwrap(), (3, (size + 3 - extent) / s + 1));
                    } else {
                        assert!(got.is_err());
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- pooling

/// `(out, pad_before, pad_after)` along one axis.
type PoolAxis = (usize, usize, usize);

#[derive(Clone, Copy, Debug)]
struct PoolCase {
    n: usize,
    h: usize,
    w: usize,
    c: usize,
    k: (usize, usize),
    s: (usize, usize),
    padding: Padding2d,
    ceil: bool,
    include_pad: bool,
}

impl PoolCase {
    fn new(k: (usize, usize), s: (usize, usize), padding: Padding2d, ceil: bool) -> Self {
        Self { n: 2, h: 7, w: 5, c: 3, k, s, padding, ceil, include_pad: true }
    }
    fn exclude_pad(self) -> Self {
        Self { include_pad: false, ..self }
    }
    fn args(&self) -> Pool2dArgs {
        Pool2dArgs {
            kernel: self.k,
            stride: self.s,
            padding: self.padding,
            ceil_mode: self.ceil,
            count_include_pad: self.include_pad,
        }
    }
    fn dims(&self) -> [usize; 4] {
        [self.n, self.h, self.w, self.c]
    }
    /// `((out_h, pad_top, pad_bottom), (out_w, pad_left, pad_right))`.
    fn geometry(&self) -> Option<(PoolAxis, PoolAxis)> {
        Some((
            pool_axis(self.h, self.k.0, self.s.0, self.padding, self.ceil, true)?,
            pool_axis(self.w, self.k.1, self.s.1, self.padding, self.ceil, false)?,
        ))
    }
    fn out_len(&self) -> usize {
        let ((oh, _, _), (ow, _, _)) = self.geometry().expect("window fits");
        self.n * oh * ow * self.c
    }
}

/// Output size and padding of one axis: TensorFlow's rule for "same"
/// (ceil(in / stride)), PyTorch's `pooling_output_shape_pad_lr` otherwise,
/// including its rule that in ceil mode the last window must start inside
/// the input or the leading padding.
fn pool_axis(size: usize, k: usize, s: usize, padding: Padding2d, ceil: bool, vertical: bool) -> Option<PoolAxis> {
    let (before, after) = match padding {
        Padding2d::Valid => (0, 0),
        Padding2d::Same => {
            let out = size.div_ceil(s);
            let total = ((out - 1) * s + k).saturating_sub(size);
            return Some((out, total / 2, total - total / 2));
        }
        Padding2d::Explicit { top, bottom, left, right } => {
            if vertical {
                (top, bottom)
            } else {
                (left, right)
            }
        }
    };
    if size + before + after < k {
        return None;
    }
    let mut out = (size + before + after - k + if ceil { s - 1 } else { 0 }) / s + 1;
    if ceil && (out - 1) * s >= size + before {
        out -= 1;
    }
    Some((out, before, after))
}

/// Calls `f(y_pixel, x_pixels, divisor)` for every output pixel: `y_pixel`
/// and `x_pixels` are flat pixel indices (multiply by channels), `divisor`
/// the average's divisor (PyTorch's: the window clipped to the padded image
/// when counting padding, else the input pixels it covers; TensorFlow's
/// "same" never counts padding).
fn pool_windows(p: &PoolCase, mut f: impl FnMut(usize, &[usize], usize)) {
    let ((oh, pt, pb), (ow, pl, pr)) = p.geometry().expect("window fits");
    let include = p.include_pad && p.padding != Padding2d::Same;
    let mut pixels = Vec::new();
    for b in 0..p.n {
        for oy in 0..oh {
            for ox in 0..ow {
                let y0 = (oy * p.s.0) as isize - pt as isize;
                let x0 = (ox * p.s.1) as isize - pl as isize;
                let y1 = (y0 + p.k.0 as isize).min((p.h + pb) as isize);
                let x1 = (x0 + p.k.1 as isize).min((p.w + pr) as isize);
                pixels.clear();
                for iy in y0.max(0)..y1.min(p.h as isize) {
                    for ix in x0.max(0)..x1.min(p.w as isize) {
                        pixels.push((b * p.h + iy as usize) * p.w + ix as usize);
                    }
                }
                let divisor = if include { ((y1 - y0) * (x1 - x0)) as usize } else { pixels.len() };
                f((b * oh + oy) * ow + ox, &pixels, divisor);
            }
        }
    }
}

fn max_pool_ref(p: &PoolCase, x: &[f64]) -> Vec<f64> {
    let mut y = vec![0.0; p.out_len()];
    pool_windows(p, |o, pixels, _| {
        for ch in 0..p.c {
            let m = pixels.iter().map(|&i| x[i * p.c + ch]).fold(f64::NEG_INFINITY, f64::max);
            y[o * p.c + ch] = if pixels.is_empty() { 0.0 } else { m };
        }
    });
    y
}

fn avg_pool_ref(p: &PoolCase, x: &[f64]) -> Vec<f64> {
    let mut y = vec![0.0; p.out_len()];
    pool_windows(p, |o, pixels, divisor| {
        for ch in 0..p.c {
            let s: f64 = pixels.iter().map(|&i| x[i * p.c + ch]).sum();
            y[o * p.c + ch] = if divisor > 0 { s / divisor as f64 } else { 0.0 };
        }
    });
    y
}

/// Exact gradient of `sum(dy * pool(x))`: to each window's maximum, or spread over it.
fn pool_ref_backward(p: &PoolCase, x: &[f64], dy: &[f64], max: bool) -> Vec<f64> {
    let mut dx = vec![0.0; x.len()];
    pool_windows(p, |o, pixels, divisor| {
        for ch in 0..p.c {
            let g = dy[o * p.c + ch];
            if max {
                if let Some(&best) = pixels.iter().max_by(|&&a, &&b| x[a * p.c + ch].total_cmp(&x[b * p.c + ch])) {
                    dx[best * p.c + ch] += g;
                }
            } else if divisor > 0 {
                for &i in pixels {
                    dx[i * p.c + ch] += g / divisor as f64;
                }
            }
        }
    });
    dx
}

fn grad_check_pool(p: PoolCase, max: bool, seed: u64) {
    let mut rng = Rng::new(seed);
    // distinct values 0.05 apart: no ties, and no finite-difference step crosses one
    let x = distinct(&mut rng, p.dims().iter().product());
    let args = p.args();
    if max {
        check_op(
            &format!("max_pool2d {p:?}"),
            &[var(x, &p.dims())],
            |t| t[0].max_pool2d(&args),
            |v| max_pool_ref(&p, &v[0]),
        );
    } else {
        check_op(
            &format!("avg_pool2d {p:?}"),
            &[var(x, &p.dims())],
            |t| t[0].avg_pool2d(&args),
            |v| avg_pool_ref(&p, &v[0]),
        );
    }
}

#[test]
fn pool_gradients_match_finite_differences() {
    use Padding2d::{Explicit, Same, Valid};
    let sym = Padding2d::symmetric;
    let cases = [
        PoolCase::new((3, 3), (2, 2), Valid, false),
        PoolCase::new((3, 3), (2, 2), Valid, true),
        // ceil mode: the last window runs past the input (7 and 5 are odd)
        PoolCase::new((2, 2), (2, 2), Valid, true),
        PoolCase::new((2, 2), (2, 2), Valid, false),
        PoolCase::new((3, 3), (2, 2), sym(1, 1), true),
        PoolCase::new((3, 3), (2, 2), sym(1, 1), false),
        PoolCase::new((3, 3), (1, 1), sym(1, 1), false),
        PoolCase::new((3, 3), (3, 3), sym(1, 1), true),
        // PyTorch's rule drops a last window that would start in the trailing padding
        PoolCase::new((2, 2), (2, 2), sym(1, 1), true),
        PoolCase::new((2, 3), (2, 1), sym(1, 0), true),
        PoolCase::new((3, 3), (2, 2), Same, false),
        PoolCase::new((2, 2), (2, 2), Same, false),
        PoolCase::new((3, 2), (1, 2), Same, false),
        PoolCase::new((2, 3), (2, 1), Explicit { top: 0, bottom: 1, left: 1, right: 0 }, false).exclude_pad(),
        PoolCase::new((3, 3), (2, 2), Explicit { top: 1, bottom: 0, left: 0, right: 1 }, true).exclude_pad(),
    ];
    for (i, p) in cases.iter().enumerate() {
        grad_check_pool(*p, true, 200 + i as u64);
        grad_check_pool(*p, false, 300 + i as u64);
        grad_check_pool(p.exclude_pad(), false, 400 + i as u64);
    }
}

fn random_pool_case(rng: &mut Rng) -> PoolCase {
    let k = (1 + rng.below(4), 1 + rng.below(4));
    let half = |rng: &mut Rng, k: usize| rng.below(k / 2 + 1);
    let (padding, symmetric) = match rng.below(4) {
        0 => (Padding2d::Valid, true),
        1 => (Padding2d::Same, true),
        2 => (Padding2d::symmetric(half(rng, k.0), half(rng, k.1)), true),
        _ => (
            Padding2d::Explicit {
                top: half(rng, k.0),
                bottom: half(rng, k.0),
                left: half(rng, k.1),
                right: half(rng, k.1),
            },
            false,
        ),
    };
    PoolCase {
        n: 1 + rng.below(2),
        h: 1 + rng.below(13),
        w: 1 + rng.below(13),
        c: [1, 2, 3, 5, 17][rng.below(5)],
        k,
        s: (1 + rng.below(3), 1 + rng.below(3)),
        padding,
        ceil: rng.below(2) == 0 && padding != Padding2d::Same,
        // counting asymmetric padding is not PyTorch-defined (see pool_windows)
        include_pad: symmetric && rng.below(2) == 0,
    }
}

#[test]
fn pools_match_reference_on_ragged_shapes() {
    let mut rng = Rng::new(77);
    let mut rejected = 0;
    for i in 0..400 {
        let p = random_pool_case(&mut rng);
        let max = i % 2 == 0;
        let x = distinct(&mut rng, p.dims().iter().product());
        let xt = Tensor::from_vec(x.clone(), p.dims()).unwrap().var();
        let result = if max { xt.max_pool2d(&p.args()) } else { xt.avg_pool2d(&p.args()) };
        let Some(((oh, _, _), (ow, _, _))) = p.geometry() else {
            rejected += 1;
            assert!(
                matches!(result, Err(TensorError::InvalidArgument { .. })),
                "{p:?}: window larger than the input: {result:?}"
            );
            continue;
        };
        let y = result.unwrap_or_else(|e| panic!("{p:?}: {e}"));
        assert_eq!(y.dims(), [p.n, oh, ow, p.c], "{p:?}: output shape");
        let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let want = if max { max_pool_ref(&p, &x64) } else { avg_pool_ref(&p, &x64) };
        assert_close(&format!("pool forward (max {max}) {p:?}"), y.data(), &want, 1e-5);
        let dy = normal(&mut rng, y.numel());
        let grads = y.backward_with(Tensor::from_vec(dy.clone(), y.dims().to_vec()).unwrap()).unwrap();
        let dy64: Vec<f64> = dy.iter().map(|&v| v as f64).collect();
        let want = pool_ref_backward(&p, &x64, &dy64, max);
        assert_close(&format!("pool backward (max {max}) {p:?}"), grads.get(&xt).unwrap().data(), &want, 1e-5);
        // inference (no variable) takes another path for max pooling
        let yc = if max { xt.detach().max_pool2d(&p.args()) } else { xt.detach().avg_pool2d(&p.args()) }.unwrap();
        assert_eq!(yc.data(), y.data(), "{p:?}: inference and training forward differ");
    }
    assert!(rejected > 0 && rejected < 100, "{rejected} of 400 random pooling cases were rejected");
}

#[test]
fn pool_output_sizes_follow_tensorflow_and_pytorch() {
    for size in 1..=13 {
        for k in 1..=4 {
            for s in 1..=3 {
                // TensorFlow "same": ceil(in / stride)
                let same = Pool2dArgs {
                    kernel: (k, 1),
                    stride: (s, 1),
                    padding: Padding2d::Same,
                    ceil_mode: false,
                    count_include_pad: false,
                };
                assert_eq!(same.output_hw(size, 4).unwrap(), (size.div_ceil(s), 4), "same: in {size} k {k} s {s}");
                // ceil_mode changes nothing for "same"
                let same_ceil = Pool2dArgs { ceil_mode: true, ..same };
                assert_eq!(same_ceil.output_hw(size, 4).unwrap(), (size.div_ceil(s), 4));
                for p in 0..=k / 2 {
                    for ceil in [false, true] {
                        let args = Pool2dArgs {
                            kernel: (1, k),
                            stride: (1, s),
                            padding: Padding2d::symmetric(0, p),
                            ceil_mode: ceil,
                            count_include_pad: true,
                        };
                        let got = args.output_hw(4, size);
                        // PyTorch: div_rtn(in + 2p - (k - 1) - 1 + (ceil ? s - 1 : 0), s) + 1,
                        // minus one when the last window would start past in + p
                        if size + 2 * p < k {
                            assert!(
                                matches!(got, Err(TensorError::InvalidArgument { .. })),
                                "in {size} k {k} p {p}: {got:?}"
                            );
                            continue;
                        }
                        let mut out = (size + 2 * p - k + if ceil { s - 1 } else { 0 }) / s + 1;
                        if ceil && (out - 1) * s >= size + p {
                            out -= 1;
                        }
                        assert_eq!(got.unwrap(), (4, out), "in {size} k {k} s {s} p {p} ceil {ceil}");
                    }
                }
            }
        }
    }
    // PyTorch refuses padding over half the window
    let bad = Pool2dArgs {
        kernel: (3, 3),
        stride: (1, 1),
        padding: Padding2d::symmetric(2, 1),
        ceil_mode: false,
        count_include_pad: true,
    };
    assert!(matches!(bad.output_hw(7, 7), Err(TensorError::InvalidArgument { .. })));
}

// ---------------------------------------------------------------- global pooling

#[test]
fn global_pool_gradients_match_finite_differences() {
    let mut rng = Rng::new(5);
    let dims = [2, 3, 5, 4];
    let (n, h, w, c) = (2, 3, 5, 4);
    let global = |x: &[f64], max: bool| -> Vec<f64> {
        let mut y = vec![if max { f64::NEG_INFINITY } else { 0.0 }; n * c];
        for b in 0..n {
            for p in 0..h * w {
                for ch in 0..c {
                    let v = x[(b * h * w + p) * c + ch];
                    let o = &mut y[b * c + ch];
                    *o = if max { o.max(v) } else { *o + v / (h * w) as f64 };
                }
            }
        }
        y
    };
    let x = distinct(&mut rng, n * h * w * c);
    check_op("global_avg_pool", &[var(x.clone(), &dims)], |t| t[0].global_avg_pool(), |v| global(&v[0], false));
    check_op("global_max_pool", &[var(x, &dims)], |t| t[0].global_max_pool(), |v| global(&v[0], true));
    // a single pixel: the max is the pixel itself
    let x = normal(&mut rng, 3 * 2);
    check_op("global_max_pool 1x1", &[var(x, &[3, 1, 1, 2])], |t| t[0].global_max_pool(), |v| v[0].clone());
}
