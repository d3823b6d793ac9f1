//! The convolution kernels (whatever fast path the CPU selects: direct
//! AVX-512, pointwise GEMM or im2col) against a plain f64 loop over every
//! tap, on ragged random geometries with every size in 1..=13, strides,
//! dilations, asymmetric padding, groups and depthwise multipliers: forward,
//! forward with fused relu, input and weight gradients, and the fused backward.

mod common;

use common::{Rng, assert_close_scaled};
use convnet_kernels::conv::{
    ConvAct, ConvGeometry, conv2d_backward, conv2d_backward_input, conv2d_backward_weight, conv2d_forward,
    conv2d_forward_act, conv2d_forward_reference, conv2d_forward_vec,
};

/// Calls `f(y_index, x_index, w_index)` for every multiply of the convolution.
fn taps(g: &ConvGeometry, mut f: impl FnMut(usize, usize, usize)) {
    let (cg, og) = (g.in_c / g.groups, g.out_c / g.groups);
    for b in 0..g.batch {
        for oy in 0..g.out_h {
            for ox in 0..g.out_w {
                for co in 0..g.out_c {
                    let yi = ((b * g.out_h + oy) * g.out_w + ox) * g.out_c + co;
                    for ky in 0..g.kernel_h {
                        let iy = (oy * g.stride_h + ky * g.dilation_h) as isize - g.pad_top as isize;
                        if iy < 0 || iy >= g.in_h as isize {
                            continue;
                        }
                        for kx in 0..g.kernel_w {
                            let ix = (ox * g.stride_w + kx * g.dilation_w) as isize - g.pad_left as isize;
                            if ix < 0 || ix >= g.in_w as isize {
                                continue;
                            }
                            for ci in 0..cg {
                                let xi =
                                    ((b * g.in_h + iy as usize) * g.in_w + ix as usize) * g.in_c + (co / og) * cg + ci;
                                let wi = ((ky * g.kernel_w + kx) * cg + ci) * g.out_c + co;
                                f(yi, xi, wi);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A random valid geometry: sizes 1..=13, filters up to 20 (rarely a multiple of 16).
fn random_geometry(rng: &mut Rng) -> ConvGeometry {
    loop {
        let groups = [1, 1, 1, 2, 3, 0][rng.below(6)];
        let (in_c, out_c, groups) = if groups == 0 {
            let c = 1 + rng.below(13);
            (c, c * (1 + rng.below(2)), c) // depthwise, multiplier 1 or 2
        } else {
            (groups * (1 + rng.below(13 / groups)), groups * (1 + rng.below(20 / groups)), groups)
        };
        let (kernel_h, kernel_w) = (1 + rng.below(5), 1 + rng.below(5));
        let (stride_h, stride_w) = (1 + rng.below(3), 1 + rng.below(3));
        let (dilation_h, dilation_w) = (1 + rng.below(2), 1 + rng.below(2));
        let (in_h, in_w) = (1 + rng.below(13), 1 + rng.below(13));
        let (pad_top, pad_bottom, pad_left, pad_right) = (rng.below(3), rng.below(3), rng.below(3), rng.below(3));
        let (eh, ew) = ((kernel_h - 1) * dilation_h + 1, (kernel_w - 1) * dilation_w + 1);
        if in_h + pad_top + pad_bottom < eh || in_w + pad_left + pad_right < ew {
            continue;
        }
        return ConvGeometry::new(
            1 + rng.below(3),
            (in_h, in_w, in_c),
            (kernel_h, kernel_w, out_c),
            (stride_h, stride_w),
            (dilation_h, dilation_w),
            (pad_top, pad_bottom, pad_left, pad_right),
        )
        .with_groups(groups);
    }
}

/// A geometry without padding or dilation, `(h, w)` in, `k x k` kernel, `stride`.
fn plain(
    batch: usize,
    (h, w): (usize, usize),
    in_c: usize,
    out_c: usize,
    k: usize,
    stride: usize,
    pad: usize,
) -> ConvGeometry {
    ConvGeometry::new(batch, (h, w, in_c), (k, k, out_c), (stride, stride), (1, 1), (pad, pad, pad, pad))
}

/// Every kernel entry point on one geometry, against the f64 loops.
fn check(g: &ConvGeometry, rng: &mut Rng) {
    let x = rng.vec(g.input_len());
    let w = rng.vec(g.weight_len());
    let bias = rng.vec(g.out_c);
    let dy = rng.vec(g.output_len());
    let what = |op: &str| format!("{op} {g:?}");

    let mut want = vec![0.0f64; g.output_len()];
    let mut scale = vec![0.0f64; g.output_len()];
    let mut dx_want = vec![0.0f64; g.input_len()];
    let mut dx_scale = vec![0.0f64; g.input_len()];
    let mut dw_want = vec![0.0f64; g.weight_len()];
    let mut dw_scale = vec![0.0f64; g.weight_len()];
    taps(g, |yi, xi, wi| {
        let (xv, wv, d) = (x[xi] as f64, w[wi] as f64, dy[yi] as f64);
        want[yi] += xv * wv;
        scale[yi] += (xv * wv).abs();
        dx_want[xi] += d * wv;
        dx_scale[xi] += (d * wv).abs();
        dw_want[wi] += d * xv;
        dw_scale[wi] += (d * xv).abs();
    });
    for (i, (v, s)) in want.iter_mut().zip(&mut scale).enumerate() {
        *v += bias[i % g.out_c] as f64;
        *s += (bias[i % g.out_c] as f64).abs();
    }
    let mut db_want = vec![0.0f64; g.out_c];
    let mut db_scale = vec![0.0f64; g.out_c];
    for (i, d) in dy.iter().enumerate() {
        db_want[i % g.out_c] += *d as f64;
        db_scale[i % g.out_c] += d.abs() as f64;
    }

    // forward, with and without bias, and with fused relu (y is overwritten: start from garbage)
    let mut y = vec![f32::NAN; g.output_len()];
    conv2d_forward(g, &x, &w, Some(&bias), &mut y);
    assert_close_scaled(&what("forward"), &y, &want, &scale, 1e-5);
    let mut y0 = vec![f32::NAN; g.output_len()];
    conv2d_forward(g, &x, &w, None, &mut y0);
    let no_bias: Vec<f64> = want.iter().enumerate().map(|(i, v)| v - bias[i % g.out_c] as f64).collect();
    assert_close_scaled(&what("forward without bias"), &y0, &no_bias, &scale, 1e-5);
    let mut yr = vec![f32::NAN; g.output_len()];
    conv2d_forward_act(g, &x, &w, Some(&bias), ConvAct::Relu, &mut yr);
    let relu: Vec<f64> = want.iter().map(|v| v.max(0.0)).collect();
    assert_close_scaled(&what("forward relu"), &yr, &relu, &scale, 1e-5);

    // separate gradients (outputs start as garbage: they must be overwritten)
    let mut dx = vec![f32::NAN; g.input_len()];
    conv2d_backward_input(g, &dy, &w, &mut dx);
    assert_close_scaled(&what("backward input"), &dx, &dx_want, &dx_scale, 1e-5);
    let mut dw = vec![f32::NAN; g.weight_len()];
    conv2d_backward_weight(g, &x, &dy, &mut dw);
    assert_close_scaled(&what("backward weight"), &dw, &dw_want, &dw_scale, 1e-5);

    // the fused backward, identity: every gradient at once
    let (mut dx, mut dw, mut db) =
        (vec![f32::NAN; g.input_len()], vec![f32::NAN; g.weight_len()], vec![f32::NAN; g.out_c]);
    conv2d_backward(g, &x, &w, &dy, ConvAct::Identity, None, Some(&mut dx), Some(&mut dw), Some(&mut db));
    assert_close_scaled(&what("fused backward dx"), &dx, &dx_want, &dx_scale, 1e-5);
    assert_close_scaled(&what("fused backward dw"), &dw, &dw_want, &dw_scale, 1e-5);
    assert_close_scaled(&what("fused backward db"), &db, &db_want, &db_scale, 1e-5);
    // only the weights
    let mut dw = vec![f32::NAN; g.weight_len()];
    conv2d_backward(g, &x, &w, &dy, ConvAct::Identity, None, None, Some(&mut dw), None);
    assert_close_scaled(&what("fused backward dw only"), &dw, &dw_want, &dw_scale, 1e-5);

    // the fused backward through relu: the gradient is masked by y > 0 first
    let masked: Vec<f32> = dy.iter().zip(&yr).map(|(d, y)| if *y > 0.0 { *d } else { 0.0 }).collect();
    let (mut mdx, mut mdw, mut mdb) =
        (vec![0.0f64; g.input_len()], vec![0.0f64; g.weight_len()], vec![0.0f64; g.out_c]);
    taps(g, |yi, xi, wi| {
        mdx[xi] += masked[yi] as f64 * w[wi] as f64;
        mdw[wi] += masked[yi] as f64 * x[xi] as f64;
    });
    for (i, d) in masked.iter().enumerate() {
        mdb[i % g.out_c] += *d as f64;
    }
    let (mut dx, mut dw, mut db) =
        (vec![f32::NAN; g.input_len()], vec![f32::NAN; g.weight_len()], vec![f32::NAN; g.out_c]);
    conv2d_backward(g, &x, &w, &dy, ConvAct::Relu, Some(&yr), Some(&mut dx), Some(&mut dw), Some(&mut db));
    assert_close_scaled(&what("relu backward dx"), &dx, &mdx, &dx_scale, 1e-5);
    assert_close_scaled(&what("relu backward dw"), &dw, &mdw, &dw_scale, 1e-5);
    assert_close_scaled(&what("relu backward db"), &db, &mdb, &db_scale, 1e-5);
}

#[test]
fn geometry_constructor_derives_pytorch_and_tensorflow_output_sizes() {
    // ResNet's stem: 7x7, stride 2, padding 3 on 224 -> 112
    let stem = ConvGeometry::new(1, (224, 224, 3), (7, 7, 64), (2, 2), (1, 1), (3, 3, 3, 3));
    assert_eq!((stem.out_h, stem.out_w, stem.pad_top, stem.groups), (112, 112, 3, 1));
    // TensorFlow "SAME", 3x3 stride 2 on 225 x 224: the odd padding pixel goes after
    let same = ConvGeometry::new(2, (225, 224, 8), (3, 3, 8), (2, 2), (1, 1), (1, 1, 0, 1)).with_groups(8);
    assert_eq!((same.out_h, same.out_w, same.groups), (113, 112, 8));
    assert_eq!((same.weight_len(), same.output_len()), (3 * 3 * 8, 2 * 113 * 112 * 8));
    // dilation 2 widens a 3x3 window to 5x5
    let dilated = ConvGeometry::new(1, (10, 9, 4), (3, 3, 4), (1, 1), (2, 1), (0, 0, 0, 0));
    assert_eq!((dilated.out_h, dilated.out_w), (6, 7));
}

#[test]
fn conv_kernels_match_reference_on_ragged_geometries() {
    let mut rng = Rng::new(11);
    for _ in 0..300 {
        let g = random_geometry(&mut rng);
        check(&g, &mut rng);
    }
}

#[test]
fn conv_kernels_on_the_fast_path_shapes() {
    let mut rng = Rng::new(12);
    // pointwise (1x1, stride 1, no padding) with channel counts around the SIMD width
    for &(cin, cout) in &[(1, 1), (3, 16), (16, 17), (17, 15), (32, 33), (7, 64), (64, 7)] {
        check(&plain(2, (5, 7), cin, cout, 1, 1, 0), &mut rng);
    }
    // dense 3x3 with and without padding/stride, ragged widths and channels
    for &(h, w, cin, cout, stride, pad) in &[
        (8, 8, 3, 16, 1, 1),
        (9, 13, 5, 17, 1, 1),
        (13, 1, 4, 31, 1, 1),
        (1, 13, 2, 33, 2, 1),
        (12, 12, 16, 32, 2, 1),
        (7, 11, 3, 48, 2, 0),
        (28, 28, 1, 8, 1, 0),
        (6, 6, 64, 5, 1, 1),
    ] {
        check(&plain(2, (h, w), cin, cout, 3, stride, pad), &mut rng);
    }
    // 5x5 and 7x7 stems, batch 1 and 3
    check(&plain(1, (13, 13), 3, 16, 5, 2, 2), &mut rng);
    check(&plain(3, (11, 9), 3, 20, 7, 2, 3), &mut rng);
}

#[test]
fn conv_kernels_agree_across_thread_counts() {
    let mut rng = Rng::new(13);
    let g = plain(4, (13, 13), 8, 24, 3, 1, 1);
    let (x, w, dy) = (rng.vec(g.input_len()), rng.vec(g.weight_len()), rng.vec(g.output_len()));
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let mut y = vec![0.0; g.output_len()];
            conv2d_forward(&g, &x, &w, None, &mut y);
            let (mut dx, mut dw, mut db) = (vec![0.0; g.input_len()], vec![0.0; g.weight_len()], vec![0.0; g.out_c]);
            conv2d_backward(&g, &x, &w, &dy, ConvAct::Identity, None, Some(&mut dx), Some(&mut dw), Some(&mut db));
            (y, dx, dw, db)
        })
    };
    let (a, b) = (run(1), run(2));
    for (what, p, q) in [("forward", &a.0, &b.0), ("dx", &a.1, &b.1), ("dw", &a.2, &b.2), ("db", &a.3, &b.3)] {
        for (p, q) in p.iter().zip(q) {
            assert!((p - q).abs() <= 1e-5 * p.abs().max(1.0), "{what}: {p} on one thread, {q} on two");
        }
    }
}

/// ReLU6 and SiLU after dense convolutions (fused into the GEMM path's store for 1x1
/// convolutions, a separate pass after the others) against the reference.
#[test]
fn dense_convs_apply_relu6_and_silu() {
    let mut rng = Rng::new(31);
    let geo = |batch, hw: usize, (cin, cout), k: usize, stride: usize| {
        let pad = ((stride - 1) + (k - 1)) / 2;
        ConvGeometry::new(batch, (hw, hw, cin), (k, k, cout), (stride, stride), (1, 1), (pad, pad, pad, pad))
    };
    let silu = |v: f64| v / (1.0 + (-v).exp());
    let relu6 = |v: f64| v.clamp(0.0, 6.0);
    let hard_swish = |v: f64| v * (v + 3.0).clamp(0.0, 6.0) / 6.0;
    // pointwise (EfficientNet's expand/head convs), strided pointwise, 3x3 with many and few channels
    for g in
        [geo(2, 9, (24, 40), 1, 1), geo(1, 13, (16, 96), 1, 2), geo(1, 11, (64, 48), 3, 1), geo(2, 8, (8, 20), 3, 2)]
    {
        let (x, w, b) = (rng.vec(g.input_len()), rng.vec(g.weight_len()), rng.vec(g.out_c));
        let mut want = vec![0.0; g.output_len()];
        conv2d_forward_reference(&g, &x, &w, Some(&b), &mut want);
        let abs = |v: &[f32]| v.iter().map(|a| a.abs()).collect::<Vec<_>>();
        let mut scale = vec![0.0; g.output_len()];
        conv2d_forward_reference(&g, &abs(&x), &abs(&w), Some(&abs(&b)), &mut scale);
        for (act, f) in
            [(ConvAct::Silu, &silu as &dyn Fn(f64) -> f64), (ConvAct::Relu6, &relu6), (ConvAct::HardSwish, &hard_swish)]
        {
            let want: Vec<f64> = want.iter().map(|&v| f(v as f64)).collect();
            let scale: Vec<f64> = scale.iter().map(|&v| v as f64).collect();
            let got = conv2d_forward_vec(&g, &x, &w, Some(&b), act);
            assert_close_scaled(&format!("{act:?} vec {g:?}"), &got, &want, &scale, 1e-5);
            let mut got = vec![f32::NAN; g.output_len()];
            conv2d_forward_act(&g, &x, &w, Some(&b), act, &mut got);
            assert_close_scaled(&format!("{act:?} act {g:?}"), &got, &want, &scale, 1e-5);
        }
    }
}
