//! `pad2d` (constant padding, negative amounts cropping; reflect padding) and
//! `avg_pool2d_tf_same` (timm's `AvgPool2dSame`) against plain f64 references
//! written here from PyTorch's definitions, gradients by f64 finite differences
//! on small odd shapes.

mod common;

use common::*;
use convnet_tensor::rng::Rng;
use convnet_tensor::{Pad2d, PadMode, Tensor, TensorError};

/// `F.pad(x, (left, right, top, bottom), mode)` on NHWC data, index by index.
fn pad_ref(x: &[f64], [n, h, w, c]: [usize; 4], p: Pad2d, mode: PadMode) -> Vec<f64> {
    let oh = (h as isize + p.top + p.bottom) as usize;
    let ow = (w as isize + p.left + p.right) as usize;
    let mut y = Vec::with_capacity(n * oh * ow * c);
    let reflect = |i: isize, size: usize| -> isize {
        let last = size as isize - 1;
        if i < 0 {
            -i
        } else if i > last {
            2 * last - i
        } else {
            i
        }
    };
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                let (iy, ix) = (oy as isize - p.top, ox as isize - p.left);
                for ch in 0..c {
                    let v = match mode {
                        PadMode::Constant(v) => {
                            if (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix) {
                                x[((b * h + iy as usize) * w + ix as usize) * c + ch]
                            } else {
                                v as f64
                            }
                        }
                        PadMode::Reflect => {
                            let (ry, rx) = (reflect(iy, h) as usize, reflect(ix, w) as usize);
                            x[((b * h + ry) * w + rx) * c + ch]
                        }
                    };
                    y.push(v);
                }
            }
        }
    }
    y
}

#[test]
fn constant_pad_and_crop_gradients_match_finite_differences() {
    let cases = [
        ([2, 5, 7, 3], Pad2d::uniform(2), 0.0),
        ([1, 5, 6, 2], Pad2d { top: 0, bottom: 1, left: 1, right: 0 }, 0.0),
        // NASNet's shift: ZeroPad2d((-1, 1, -1, 1))
        ([2, 7, 5, 3], Pad2d::torch(-1, 1, -1, 1), 0.0),
        ([1, 6, 7, 2], Pad2d { top: -2, bottom: -1, left: -3, right: 0 }, 0.0),
        ([2, 4, 5, 1], Pad2d { top: 3, bottom: -2, left: -1, right: 4 }, 1.5),
        ([1, 3, 3, 5], Pad2d::default(), 0.0),
    ];
    for (i, (dims, p, value)) in cases.into_iter().enumerate() {
        let mut rng = Rng::new(10 + i as u64);
        let x = normal(&mut rng, dims.iter().product());
        let mode = PadMode::Constant(value);
        check_op(
            &format!("pad2d {dims:?} {p:?} constant {value}"),
            &[var(x, &dims)],
            |t| t[0].pad2d(p, mode),
            |v| pad_ref(&v[0], dims, p, mode),
        );
    }
}

#[test]
fn reflect_pad_gradients_match_finite_differences() {
    let cases = [
        ([2, 5, 7, 3], Pad2d::uniform(2)),
        ([1, 5, 6, 2], Pad2d { top: 4, bottom: 0, left: 1, right: 5 }),
        ([2, 2, 3, 1], Pad2d { top: 1, bottom: 1, left: 2, right: 2 }),
        ([1, 4, 4, 2], Pad2d::default()),
    ];
    for (i, (dims, p)) in cases.into_iter().enumerate() {
        let mut rng = Rng::new(20 + i as u64);
        let x = normal(&mut rng, dims.iter().product());
        check_op(
            &format!("pad2d {dims:?} {p:?} reflect"),
            &[var(x, &dims)],
            |t| t[0].pad2d(p, PadMode::Reflect),
            |v| pad_ref(&v[0], dims, p, PadMode::Reflect),
        );
    }
}

#[test]
fn pads_give_pytorch_values_on_a_small_example() {
    // one channel, rows [1 2 3], [4 5 6]
    let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [1, 2, 3, 1]).unwrap();
    // ZeroPad2d((-1, 1, -1, 1)): drop the first row and column, add zeros after
    let shifted = x.pad2d(Pad2d::torch(-1, 1, -1, 1), PadMode::Constant(0.0)).unwrap();
    assert_eq!(shifted.dims(), [1, 2, 3, 1]);
    assert_eq!(shifted.data(), [5.0, 6.0, 0.0, 0.0, 0.0, 0.0]);
    // ReflectionPad2d((2, 1, 1, 0))
    let r = x.pad2d(Pad2d::torch(2, 1, 1, 0), PadMode::Reflect).unwrap();
    assert_eq!(r.dims(), [1, 3, 6, 1]);
    assert_eq!(r.data(), [6.0, 5.0, 4.0, 5.0, 6.0, 5.0, 3.0, 2.0, 1.0, 2.0, 3.0, 2.0, 6.0, 5.0, 4.0, 5.0, 6.0, 5.0]);
}

#[test]
fn impossible_pads_are_errors() {
    let x = Tensor::zeros([1, 3, 4, 2]);
    let bad = |r: convnet_tensor::Result<Tensor>| matches!(r, Err(TensorError::InvalidArgument { .. }));
    // a mirror needs a pixel beyond the edge one
    assert!(bad(x.pad2d(Pad2d { top: 3, ..Pad2d::default() }, PadMode::Reflect)));
    assert!(bad(x.pad2d(Pad2d { left: -1, ..Pad2d::default() }, PadMode::Reflect)));
    // cropping everything (or more)
    assert!(bad(x.pad2d(Pad2d { top: -2, bottom: -1, ..Pad2d::default() }, PadMode::Constant(0.0))));
    assert!(bad(x.pad2d(Pad2d { left: -5, ..Pad2d::default() }, PadMode::Constant(0.0))));
    assert!(matches!(
        Tensor::zeros([3, 4]).pad2d(Pad2d::uniform(1), PadMode::Constant(0.0)),
        Err(TensorError::ShapeMismatch { .. })
    ));
}

/// timm's `AvgPool2dSame`: `pad_same` with zeros (TensorFlow's split, odd pixel
/// after), then `avg_pool2d` without padding: every window divides by `kh * kw`.
fn avg_same_ref(x: &[f64], [n, h, w, c]: [usize; 4], k: (usize, usize), s: (usize, usize)) -> Vec<f64> {
    let same = |size: usize, k: usize, s: usize| {
        let out = size.div_ceil(s);
        let total = ((out - 1) * s + k).saturating_sub(size);
        (out, total / 2)
    };
    let ((oh, pt), (ow, pl)) = (same(h, k.0, s.0), same(w, k.1, s.1));
    let mut y = vec![0.0; n * oh * ow * c];
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                for ch in 0..c {
                    let mut sum = 0.0;
                    for dy in 0..k.0 {
                        for dx in 0..k.1 {
                            let iy = (oy * s.0 + dy) as isize - pt as isize;
                            let ix = (ox * s.1 + dx) as isize - pl as isize;
                            if (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix) {
                                sum += x[((b * h + iy as usize) * w + ix as usize) * c + ch];
                            }
                        }
                    }
                    y[((b * oh + oy) * ow + ox) * c + ch] = sum / (k.0 * k.1) as f64;
                }
            }
        }
    }
    y
}

#[test]
fn tf_same_avg_pool_counts_padding_and_matches_finite_differences() {
    let cases = [
        ([2, 7, 7, 3], (3, 3), (2, 2)),
        ([1, 8, 6, 2], (3, 3), (2, 2)),
        ([2, 5, 6, 2], (3, 2), (1, 2)),
        ([1, 6, 9, 3], (2, 4), (2, 3)),
        ([1, 4, 4, 2], (1, 1), (2, 2)),
        ([1, 5, 5, 1], (5, 5), (3, 3)),
    ];
    for (i, (dims, k, s)) in cases.into_iter().enumerate() {
        let mut rng = Rng::new(30 + i as u64);
        let x = normal(&mut rng, dims.iter().product());
        check_op(
            &format!("avg_pool2d_tf_same {dims:?} k {k:?} s {s:?}"),
            &[var(x, &dims)],
            |t| {
                let y = t[0].avg_pool2d_tf_same(k, s)?;
                assert_eq!(y.dims(), [dims[0], dims[1].div_ceil(s.0), dims[2].div_ceil(s.1), dims[3]]);
                Ok(y)
            },
            |v| avg_same_ref(&v[0], dims, k, s),
        );
    }
    // a corner window of ones over a 4x4 input, 3x3 stride 2: padding only after
    // (total 1), so the last window holds 4 ones of 9
    let ones = Tensor::full([1, 4, 4, 1], 1.0);
    let y = ones.avg_pool2d_tf_same((3, 3), (2, 2)).unwrap();
    assert_eq!(y.dims(), [1, 2, 2, 1]);
    let want = [1.0, 6.0 / 9.0, 6.0 / 9.0, 4.0 / 9.0];
    for (a, b) in y.data().iter().zip(want) {
        assert!((a - b).abs() < 1e-6, "{:?}", y.data());
    }
}
