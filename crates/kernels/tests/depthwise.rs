//! The depthwise kernels (`groups == in_c == out_c`, routed from every entry
//! point of `conv`) against `conv2d_forward_reference` / `conv2d_backward_reference`
//! on EfficientNet-like geometries: 3x3, 5x5 and 7x7 kernels, stride 1 and 2,
//! PyTorch and TensorFlow "SAME" (asymmetric) padding, dilation, ragged channel
//! counts (24, 37, 672: masked vector tails), batch 1 and 3; every fused
//! activation; and results independent of the number of threads.

mod common;

use common::{Rng, assert_close_scaled};
use convnet_kernels::conv::{
    ConvAct, ConvGeometry, conv2d_backward, conv2d_backward_input, conv2d_backward_reference, conv2d_backward_weight,
    conv2d_forward_act, conv2d_forward_reference, conv2d_forward_vec,
};
use convnet_kernels::depthwise;

/// A depthwise geometry; `same` picks TensorFlow "SAME" padding (the odd pixel
/// at the bottom/right), otherwise PyTorch's symmetric `((s - 1) + d (k - 1)) / 2`.
fn dw_geo(
    batch: usize,
    (h, w): (usize, usize),
    c: usize,
    k: usize,
    stride: usize,
    dilation: usize,
    same: bool,
) -> ConvGeometry {
    let extent = (k - 1) * dilation + 1;
    let pads = if same {
        // the total padding that makes the output ceil(in / stride), the odd pixel after
        let total = |n: usize| ((n.div_ceil(stride) - 1) * stride + extent).saturating_sub(n);
        let (th, tw) = (total(h), total(w));
        (th / 2, th - th / 2, tw / 2, tw - tw / 2)
    } else {
        let p = ((stride - 1) + dilation * (k - 1)) / 2;
        (p, p, p, p)
    };
    ConvGeometry::new(batch, (h, w, c), (k, k, c), (stride, stride), (dilation, dilation), pads).with_groups(c)
}

fn abs(v: &[f32]) -> Vec<f32> {
    v.iter().map(|v| v.abs()).collect()
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|v| *v as f64).collect()
}

fn silu(v: f64) -> f64 {
    v / (1.0 + (-v).exp())
}

/// Every depthwise entry point on one geometry against the references.
fn check(g: &ConvGeometry, rng: &mut Rng) {
    assert!(depthwise::supported(g));
    let (x, w, bias, dy) = (rng.vec(g.input_len()), rng.vec(g.weight_len()), rng.vec(g.out_c), rng.vec(g.output_len()));
    let what = |op: &str| format!("{op} {g:?}");

    // the reference on |x|, |w| bounds the rounding error of each sum
    let mut want = vec![0.0; g.output_len()];
    conv2d_forward_reference(g, &x, &w, Some(&bias), &mut want);
    let mut scale = vec![0.0; g.output_len()];
    conv2d_forward_reference(g, &abs(&x), &abs(&w), Some(&abs(&bias)), &mut scale);
    let (want, scale) = (f64s(&want), f64s(&scale));
    for (act, f) in [
        (ConvAct::Identity, (|v| v) as fn(f64) -> f64),
        (ConvAct::Relu, |v: f64| v.max(0.0)),
        (ConvAct::Relu6, |v: f64| v.clamp(0.0, 6.0)),
        (ConvAct::Silu, silu),
        (ConvAct::HardSwish, |v: f64| v * (v + 3.0).clamp(0.0, 6.0) / 6.0),
    ] {
        let mut y = vec![f32::NAN; g.output_len()];
        conv2d_forward_act(g, &x, &w, Some(&bias), act, &mut y);
        let want: Vec<f64> = want.iter().map(|v| f(*v)).collect();
        assert_close_scaled(&what(&format!("forward {act:?}")), &y, &want, &scale, 1e-5);
        let yv = conv2d_forward_vec(g, &x, &w, Some(&bias), act);
        assert_eq!(yv, y, "{}", what("forward vec"));
    }
    let mut y0 = vec![f32::NAN; g.output_len()];
    conv2d_forward_act(g, &x, &w, None, ConvAct::Identity, &mut y0);
    let no_bias: Vec<f64> = want.iter().enumerate().map(|(i, v)| v - bias[i % g.out_c] as f64).collect();
    assert_close_scaled(&what("forward without bias"), &y0, &no_bias, &scale, 1e-5);

    let (dx_want, dw_want) = conv2d_backward_reference(g, &x, &w, &dy);
    let (dx_scale, dw_scale) = conv2d_backward_reference(g, &abs(&x), &abs(&w), &abs(&dy));
    let (dx_want, dw_want, dx_scale, dw_scale) = (f64s(&dx_want), f64s(&dw_want), f64s(&dx_scale), f64s(&dw_scale));
    let mut db_want = vec![0.0f64; g.out_c];
    let mut db_scale = vec![0.0f64; g.out_c];
    for (i, d) in dy.iter().enumerate() {
        db_want[i % g.out_c] += *d as f64;
        db_scale[i % g.out_c] += d.abs() as f64;
    }
    let mut dx = vec![f32::NAN; g.input_len()];
    conv2d_backward_input(g, &dy, &w, &mut dx);
    assert_close_scaled(&what("backward input"), &dx, &dx_want, &dx_scale, 1e-5);
    let mut dw = vec![f32::NAN; g.weight_len()];
    conv2d_backward_weight(g, &x, &dy, &mut dw);
    assert_close_scaled(&what("backward weight"), &dw, &dw_want, &dw_scale, 1e-5);
    let (mut dx, mut dw, mut db) =
        (vec![f32::NAN; g.input_len()], vec![f32::NAN; g.weight_len()], vec![f32::NAN; g.out_c]);
    conv2d_backward(g, &x, &w, &dy, ConvAct::Identity, None, Some(&mut dx), Some(&mut dw), Some(&mut db));
    assert_close_scaled(&what("fused backward dx"), &dx, &dx_want, &dx_scale, 1e-5);
    assert_close_scaled(&what("fused backward dw"), &dw, &dw_want, &dw_scale, 1e-5);
    assert_close_scaled(&what("fused backward db"), &db, &db_want, &db_scale, 1e-5);
    // the bias gradient alone
    let mut db_only = vec![f32::NAN; g.out_c];
    conv2d_backward(g, &x, &w, &dy, ConvAct::Identity, None, None, None, Some(&mut db_only));
    assert_eq!(db_only, db, "{}", what("db alone"));

    // relu6: the gradient masked by 0 < y < 6 (outputs scaled up so both ends occur)
    let big: Vec<f32> = w.iter().map(|v| v * 8.0).collect();
    let mut y6 = vec![0.0; g.output_len()];
    conv2d_forward_act(g, &x, &big, Some(&bias), ConvAct::Relu6, &mut y6);
    let masked: Vec<f32> = dy.iter().zip(&y6).map(|(d, y)| if *y > 0.0 && *y < 6.0 { *d } else { 0.0 }).collect();
    let (mdx, mdw) = conv2d_backward_reference(g, &x, &big, &masked);
    let (sdx, sdw) = conv2d_backward_reference(g, &abs(&x), &abs(&big), &abs(&masked));
    let (mut dx, mut dw) = (vec![f32::NAN; g.input_len()], vec![f32::NAN; g.weight_len()]);
    conv2d_backward(g, &x, &big, &dy, ConvAct::Relu6, Some(&y6), Some(&mut dx), Some(&mut dw), None);
    assert_close_scaled(&what("relu6 backward dx"), &dx, &f64s(&mdx), &f64s(&sdx), 1e-5);
    assert_close_scaled(&what("relu6 backward dw"), &dw, &f64s(&mdw), &f64s(&sdw), 1e-5);
}

#[test]
fn depthwise_matches_reference_on_efficientnet_geometries() {
    let mut rng = Rng::new(21);
    for &(batch, hw, c, k, stride, same) in &[
        (1, (9, 9), 24, 3, 1, false),
        (3, (9, 9), 24, 3, 2, false),
        (1, (10, 10), 37, 3, 2, true),
        (3, (11, 10), 37, 5, 1, false),
        (1, (11, 12), 24, 5, 2, true),
        (3, (12, 11), 40, 5, 2, false),
        (1, (7, 7), 672, 5, 1, true),
        (2, (14, 14), 32, 3, 1, true),
        (1, (9, 13), 17, 7, 1, false),
        (2, (15, 8), 16, 7, 2, true),
        (1, (3, 2), 5, 5, 1, false),
        (1, (20, 20), 48, 3, 1, false),
        // interiors of exactly two or four 8-pixel tiles
        (1, (6, 34), 20, 3, 2, false),
        (1, (5, 38), 19, 7, 2, false),
        (2, (6, 20), 33, 5, 1, false),
        (1, (3, 34), 16, 3, 1, false),
    ] {
        check(&dw_geo(batch, hw, c, k, stride, 1, same), &mut rng);
    }
    // dilation, 1x1 and wide kernels, stride 3
    check(&dw_geo(2, (11, 13), 24, 3, 1, 2, false), &mut rng);
    check(&dw_geo(1, (13, 9), 19, 3, 2, 2, true), &mut rng);
    check(&dw_geo(1, (5, 6), 20, 1, 1, 1, false), &mut rng);
    check(&dw_geo(1, (12, 21), 18, 9, 1, 1, false), &mut rng);
    check(&dw_geo(2, (13, 14), 33, 3, 3, 1, true), &mut rng);
}

#[test]
fn depthwise_handles_asymmetric_and_large_padding() {
    let mut rng = Rng::new(22);
    for &(pt, pl, extra_h, extra_w) in &[(0, 0, 2, 2), (2, 0, 0, 1), (0, 2, 1, 0), (3, 3, 3, 3), (1, 2, 2, 0)] {
        // 3x3 kernel, stride 1: out = in + pad_top + pad_bottom - 2
        let (h, w, c) = (6, 7, 21);
        let g = ConvGeometry::new(2, (h, w, c), (3, 3, c), (1, 1), (1, 1), (pt, extra_h, pl, extra_w)).with_groups(c);
        check(&g, &mut rng);
    }
}

#[test]
fn depthwise_results_do_not_depend_on_the_thread_count() {
    let mut rng = Rng::new(23);
    for g in [dw_geo(3, (23, 19), 40, 5, 2, 1, true), dw_geo(2, (37, 31), 24, 3, 1, 1, false)] {
        let (x, w, b, dy) =
            (rng.vec(g.input_len()), rng.vec(g.weight_len()), rng.vec(g.out_c), rng.vec(g.output_len()));
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let y = conv2d_forward_vec(&g, &x, &w, Some(&b), ConvAct::Silu);
                let (mut dx, mut dw, mut db) =
                    (vec![0.0; g.input_len()], vec![0.0; g.weight_len()], vec![0.0; g.out_c]);
                conv2d_backward(&g, &x, &w, &dy, ConvAct::Identity, None, Some(&mut dx), Some(&mut dw), Some(&mut db));
                (y, dx, dw, db)
            })
        };
        let one = run(1);
        for threads in [2, 3] {
            assert!(one == run(threads), "{threads} threads differ from one on {g:?}");
        }
    }
}

#[test]
fn channel_multipliers_stay_on_the_general_path() {
    let mut g = dw_geo(1, (5, 5), 4, 3, 1, 1, false);
    assert!(depthwise::supported(&g));
    g.out_c = 8;
    assert!(!depthwise::supported(&g));
    g.out_c = 4;
    g.groups = 2;
    assert!(!depthwise::supported(&g));
}

#[test]
fn forward_with_mean_matches_the_output_mean_for_any_thread_count() {
    let mut rng = Rng::new(24);
    for g in [
        dw_geo(3, (23, 19), 40, 5, 2, 1, true),
        dw_geo(1, (56, 56), 24, 3, 1, 1, false),
        dw_geo(2, (7, 7), 37, 5, 1, 1, true),
    ] {
        let (x, w, b) = (rng.vec(g.input_len()), rng.vec(g.weight_len()), rng.vec(g.out_c));
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| depthwise::forward_with_mean(&g, &x, &w, Some(&b), ConvAct::Silu))
        };
        let (y, mean) = run(1);
        assert_eq!(y, conv2d_forward_vec(&g, &x, &w, Some(&b), ConvAct::Silu), "{g:?}: output");
        let pixels = g.out_h * g.out_w;
        for n in 0..g.batch {
            for ch in 0..g.out_c {
                let want: f64 =
                    (0..pixels).map(|p| y[(n * pixels + p) * g.out_c + ch] as f64).sum::<f64>() / pixels as f64;
                let scale: f64 =
                    (0..pixels).map(|p| y[(n * pixels + p) * g.out_c + ch].abs() as f64).sum::<f64>() / pixels as f64;
                let got = mean[n * g.out_c + ch] as f64;
                assert!((got - want).abs() <= 1e-6 * (1.0 + scale), "{g:?} image {n} channel {ch}: {got} vs {want}");
            }
        }
        for threads in [2, 3] {
            assert!(run(threads) == (y.clone(), mean.clone()), "{threads} threads differ from one on {g:?}");
        }
    }
}
