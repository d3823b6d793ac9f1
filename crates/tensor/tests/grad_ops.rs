//! Every primitive op other than convolution and pooling (see `conv_pool.rs`)
//! against an f64 reference forward written here, its backward against f64
//! finite differences of that reference (see `common/mod.rs` for the method
//! and tolerances): matmul, linear, activations, softmax, log-softmax,
//! dropout, reshape, flatten, concat, narrow / split / chunk, permute,
//! softmax over any axis, broadcasting arithmetic, affine, batch norm,
//! reductions and the cross-entropy losses.

mod common;

use common::*;
use convnet_tensor::rng::Rng;
use convnet_tensor::{Activation, Tensor};

// ---------------------------------------------------------------- matmul, linear

fn matmul_ref(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut y = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            y[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
        }
    }
    y
}

#[test]
fn matmul_and_linear() {
    let mut rng = Rng::new(1);
    for &(m, k, n) in &[(3, 5, 4), (1, 1, 1), (1, 7, 3), (17, 33, 9), (6, 2, 19)] {
        let a = normal(&mut rng, m * k);
        let b = normal(&mut rng, k * n);
        let bias = normal(&mut rng, n);
        let name = format!("matmul {m}x{k} @ {k}x{n}");
        check_op(
            &name,
            &[var(a.clone(), &[m, k]), var(b.clone(), &[k, n])],
            |t| t[0].matmul(&t[1]),
            |v| matmul_ref(&v[0], &v[1], m, k, n),
        );
        let name = format!("linear {m}x{k} @ {k}x{n} + b");
        let args = [var(a.clone(), &[m, k]), var(b.clone(), &[k, n]), var(bias.clone(), &[n])];
        let linear_ref = |v: &[Vec<f64>]| {
            let mut y = matmul_ref(&v[0], &v[1], m, k, n);
            y.iter_mut().enumerate().for_each(|(i, y)| *y += v[2][i % n]);
            y
        };
        check_op(&name, &args, |t| t[0].linear(&t[1], Some(&t[2])), linear_ref);
        // constant weights (inference of a frozen layer): only dx and db
        let args = [var(a, &[m, k]), constant(b, &[k, n]), var(bias, &[n])];
        check_op(&format!("{name}, frozen weight"), &args, |t| t[0].linear(&t[1], Some(&t[2])), linear_ref);
    }
}

// ---------------------------------------------------------------- activations

fn activation_ref(act: Activation, x: f64) -> f64 {
    let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
    match act {
        Activation::Linear => x,
        Activation::Relu => x.max(0.0),
        Activation::Relu6 => x.clamp(0.0, 6.0),
        Activation::Sigmoid => sigmoid(x),
        Activation::Tanh => x.tanh(),
        Activation::Silu => x * sigmoid(x),
        Activation::Gelu => 0.5 * x * (1.0 + erf64(x / std::f64::consts::SQRT_2)),
        Activation::HardSwish => x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
        Activation::HardSigmoid => (x + 3.0).clamp(0.0, 6.0) / 6.0,
        Activation::LeakyRelu => leaky_relu_ref(x, 0.01),
        Activation::Elu => elu_ref(x, 1.0),
    }
}

fn leaky_relu_ref(x: f64, slope: f64) -> f64 {
    if x > 0.0 { x } else { slope * x }
}

fn elu_ref(x: f64, alpha: f64) -> f64 {
    if x > 0.0 { x } else { alpha * x.exp_m1() }
}

#[test]
fn erf_reference_is_accurate() {
    // Abramowitz & Stegun table values
    for (x, want) in [
        (0.5, 0.520_499_877_813_046_5),
        (1.0, 0.842_700_792_949_714_9),
        (2.0, 0.995_322_265_018_952_7),
        (3.0, 0.999_977_909_503_001_4),
    ] {
        assert!((erf64(x) - want).abs() < 1e-14, "erf({x}) = {}", erf64(x));
        assert!((erf64(-x) + want).abs() < 1e-14);
    }
    // both branches agree where they meet
    assert!((erf64(2.5 - 1e-12) - erf64(2.5)).abs() < 1e-13);
}

#[test]
fn activations() {
    let mut rng = Rng::new(2);
    // kinks: relu at 0, relu6 at 0 and 6, hard_swish and hard_sigmoid at -3 and 3
    let x = away_from(&mut rng, 2 * 3 * 9, -7.5, 8.0, &[-3.0, 0.0, 3.0, 6.0], 0.05);
    let all = [
        Activation::Linear,
        Activation::Relu,
        Activation::Relu6,
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Silu,
        Activation::Gelu,
        Activation::HardSwish,
        Activation::HardSigmoid,
        Activation::LeakyRelu,
        Activation::Elu,
    ];
    for act in all {
        check_op(
            act.name(),
            &[var(x.clone(), &[2, 3, 9])],
            |t| Ok(t[0].activation(act)),
            |v| v[0].iter().map(|&x| activation_ref(act, x)).collect(),
        );
        assert_eq!(Activation::from_name(act.name()), Some(act));
    }
    // the named shortcuts are the same functions
    let t = Tensor::from_vec(x.clone(), [2, 3, 9]).unwrap();
    let named: [(Activation, Tensor); 10] = [
        (Activation::Relu, t.relu()),
        (Activation::Relu6, t.relu6()),
        (Activation::Sigmoid, t.sigmoid()),
        (Activation::Tanh, t.tanh()),
        (Activation::Silu, t.silu()),
        (Activation::Gelu, t.gelu()),
        (Activation::HardSwish, t.hard_swish()),
        (Activation::HardSigmoid, t.hard_sigmoid()),
        (Activation::LeakyRelu, t.leaky_relu(0.01)),
        (Activation::Elu, t.elu(1.0)),
    ];
    for (act, y) in named {
        assert_eq!(y.data(), t.activation(act).data(), "{}", act.name());
    }
    // saturated tails: finite, and as accurate as f32 allows
    let tails = Tensor::from_vec(vec![-100.0, -30.0, 30.0, 100.0], [4]).unwrap();
    let s = tails.sigmoid();
    assert!(s.data()[0] >= 0.0 && s.data()[0] < 1e-40, "sigmoid(-100) = {}", s.data()[0]);
    assert!((s.data()[1] as f64 / activation_ref(Activation::Sigmoid, -30.0) - 1.0).abs() < 1e-6);
    assert_eq!(&s.data()[2..], [1.0, 1.0]);
    assert_eq!(tails.gelu().data(), [0.0, 0.0, 30.0, 100.0]);
    assert_eq!(tails.silu().data()[3], 100.0);
    assert_eq!(tails.tanh().data(), [-1.0, -1.0, 1.0, 1.0]);
}

#[test]
fn leaky_relu_and_elu_with_parameters() {
    let mut rng = Rng::new(21);
    let x = away_from(&mut rng, 3 * 5 * 7, -6.0, 4.0, &[0.0], 0.05);
    for slope in [0.0f32, 0.2, -0.3, 1.5] {
        check_op(
            &format!("leaky_relu {slope}"),
            &[var(x.clone(), &[3, 5, 7])],
            |t| Ok(t[0].leaky_relu(slope)),
            |v| v[0].iter().map(|&x| leaky_relu_ref(x, slope as f64)).collect(),
        );
    }
    for alpha in [1.0f32, 0.5, 2.0] {
        check_op(
            &format!("elu {alpha}"),
            &[var(x.clone(), &[3, 5, 7])],
            |t| Ok(t[0].elu(alpha)),
            |v| v[0].iter().map(|&x| elu_ref(x, alpha as f64)).collect(),
        );
    }
    // NaN propagates; tails stay finite
    let t = Tensor::from_vec(vec![f32::NAN, -100.0, 100.0], [3]).unwrap();
    assert!(t.leaky_relu(0.01).data()[0].is_nan() && t.elu(1.0).data()[0].is_nan());
    assert_eq!(t.elu(1.0).data()[1..], [-1.0, 100.0]);
    assert_eq!(t.leaky_relu(0.01).data()[1..], [-1.0, 100.0]);
}

// ---------------------------------------------------------------- softmax

fn log_softmax_ref(x: &[f64], c: usize) -> Vec<f64> {
    let mut y = Vec::with_capacity(x.len());
    for row in x.chunks(c) {
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        y.extend(row.iter().map(|v| v - lse));
    }
    y
}

#[test]
fn softmax_and_log_softmax() {
    let mut rng = Rng::new(3);
    for dims in [vec![2, 3, 5], vec![4, 1], vec![1, 11]] {
        let c = *dims.last().unwrap();
        let x: Vec<f32> = normal(&mut rng, dims.iter().product()).iter().map(|v| v * 2.0).collect();
        check_op(
            &format!("softmax {dims:?}"),
            &[var(x.clone(), &dims)],
            |t| t[0].softmax(),
            |v| log_softmax_ref(&v[0], c).iter().map(|v| v.exp()).collect(),
        );
        check_op(
            &format!("log_softmax {dims:?}"),
            &[var(x, &dims)],
            |t| t[0].log_softmax(),
            |v| log_softmax_ref(&v[0], c),
        );
    }
    // large logits do not overflow
    let big = Tensor::from_vec(vec![1000.0, 0.0, -1000.0], [1, 3]).unwrap();
    assert_eq!(big.softmax().unwrap().data(), [1.0, 0.0, 0.0]);
    assert_eq!(big.log_softmax().unwrap().data(), [0.0, -1000.0, -2000.0]);
}

/// Softmax along `axis` in f64, by explicit `[outer, n, inner]` indices.
fn softmax_axis_ref(x: &[f64], dims: &[usize], axis: usize) -> Vec<f64> {
    let n = dims[axis];
    let inner: usize = dims[axis + 1..].iter().product();
    let mut y = vec![0.0; x.len()];
    for o in 0..x.len() / (n * inner) {
        for i in 0..inner {
            let at = |k: usize| o * n * inner + k * inner + i;
            let m = (0..n).map(|k| x[at(k)]).fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = (0..n).map(|k| (x[at(k)] - m).exp()).sum();
            for k in 0..n {
                y[at(k)] = (x[at(k)] - m).exp() / s;
            }
        }
    }
    y
}

#[test]
fn softmax_over_any_axis() {
    let mut rng = Rng::new(22);
    for dims in [vec![2, 3, 5], vec![3, 1, 4, 5], vec![5], vec![1, 7, 2]] {
        let x: Vec<f32> = normal(&mut rng, dims.iter().product()).iter().map(|v| v * 2.0).collect();
        for axis in 0..dims.len() {
            check_op(
                &format!("softmax_axis {dims:?} axis {axis}"),
                &[var(x.clone(), &dims)],
                |t| t[0].softmax_axis(axis),
                |v| softmax_axis_ref(&v[0], &dims, axis),
            );
        }
    }
    // the last axis is softmax(); another axis is softmax of the permuted tensor
    let t = Tensor::from_vec(normal(&mut rng, 2 * 67 * 3), [2, 67, 3]).unwrap();
    assert_eq!(t.softmax_axis(2).unwrap().data(), t.softmax().unwrap().data());
    let via = t.permute(&[0, 2, 1]).unwrap().softmax().unwrap().permute(&[0, 2, 1]).unwrap();
    let direct = t.softmax_axis(1).unwrap();
    assert_close(
        "softmax_axis 1 vs permuted",
        direct.data(),
        &via.data().iter().map(|&v| v as f64).collect::<Vec<_>>(),
        1e-6,
    );
    // large values do not overflow
    let big = Tensor::from_vec(vec![1000.0, 0.0, -1000.0], [3, 1]).unwrap();
    assert_eq!(big.softmax_axis(0).unwrap().data(), [1.0, 0.0, 0.0]);
    assert!(t.softmax_axis(3).is_err());
    assert!(Tensor::zeros([2, 0, 3]).softmax_axis(1).is_err());
}

// ---------------------------------------------------------------- dropout

#[test]
fn dropout_with_a_fixed_mask() {
    let mut rng = Rng::new(4);
    let rate = 0.3;
    let dims = [2, 3, 4, 5];
    let n: usize = dims.iter().product();
    // the mask a seed draws, read off by dropping out ones
    let mask: Vec<f64> =
        Tensor::full(dims, 1.0).dropout(rate, &mut Rng::new(42)).unwrap().data().iter().map(|&v| v as f64).collect();
    let keep = 1.0 / (1.0 - rate as f64);
    assert!(mask.iter().all(|&m| m == 0.0 || (m - keep).abs() < 1e-6), "mask values are 0 or 1/(1-rate)");
    assert!(mask.contains(&0.0) && mask.iter().any(|&m| m > 0.0));
    let x = normal(&mut rng, n);
    check_op(
        "dropout",
        &[var(x, &dims)],
        |t| t[0].dropout(rate, &mut Rng::new(42)),
        |v| v[0].iter().zip(&mask).map(|(x, m)| x * m).collect(),
    );

    // the drop fraction is the rate; another seed drops other units
    let big = Tensor::full([100_000], 1.0);
    let a = big.dropout(rate, &mut Rng::new(1)).unwrap();
    let dropped = a.data().iter().filter(|&&v| v == 0.0).count() as f64 / 100_000.0;
    assert!((dropped - rate as f64).abs() < 0.01, "dropped fraction {dropped}");
    let b = big.dropout(rate, &mut Rng::new(2)).unwrap();
    assert_ne!(a.data(), b.data());
    assert_eq!(a.data(), big.dropout(rate, &mut Rng::new(1)).unwrap().data(), "same seed, same mask");
    // rate 0 is the identity
    assert_eq!(big.dropout(0.0, &mut Rng::new(1)).unwrap().data(), big.data());
}

// ---------------------------------------------------------------- reshape, concat

#[test]
fn reshape_and_flatten() {
    let mut rng = Rng::new(5);
    let x = normal(&mut rng, 2 * 3 * 4 * 5);
    let id = |v: &[Vec<f64>]| v[0].clone();
    check_op("reshape", &[var(x.clone(), &[2, 3, 4, 5])], |t| t[0].reshape([6, usize::MAX]), id);
    check_op("flatten", &[var(x.clone(), &[2, 3, 4, 5])], |t| t[0].flatten(), id);
    let t = Tensor::from_vec(x, [2, 3, 4, 5]).unwrap();
    assert_eq!(t.reshape([6, usize::MAX]).unwrap().dims(), [6, 20]);
    assert_eq!(t.flatten().unwrap().dims(), [2, 60]);
    assert_eq!(t.reshape([120]).unwrap().dims(), [120]);
    // a reshape between two ops: the gradient reaches the input in its own shape
    let v = t.var();
    let y = v.reshape([6, 20]).unwrap().softmax().unwrap();
    let g = y.backward_with(Tensor::full([6, 20], 1.0)).unwrap();
    assert_eq!(g.get(&v).unwrap().dims(), [2, 3, 4, 5]);
}

/// Concatenation in f64: for each outer index, every input's row in turn.
fn concat_ref(parts: &[Vec<f64>], dims: &[Vec<usize>], axis: usize) -> Vec<f64> {
    let outer: usize = dims[0][..axis].iter().product();
    let mut y = Vec::new();
    for o in 0..outer {
        for (p, d) in parts.iter().zip(dims) {
            let row: usize = d[axis..].iter().product();
            y.extend_from_slice(&p[o * row..(o + 1) * row]);
        }
    }
    y
}

#[test]
fn concat_on_channels_and_rows() {
    let mut rng = Rng::new(6);
    let cases: [(usize, Vec<Vec<usize>>); 4] = [
        (1, vec![vec![2, 3, 4, 2], vec![2, 1, 4, 2]]),
        (3, vec![vec![2, 3, 4, 2], vec![2, 3, 4, 3], vec![2, 3, 4, 1]]),
        (0, vec![vec![2, 3], vec![1, 3]]),
        (3, vec![vec![1, 2, 2, 5]]),
    ];
    for (axis, dims) in cases {
        let mut args: Vec<Arg> = dims.iter().map(|d| var(normal(&mut rng, d.iter().product()), d)).collect();
        check_op(
            &format!("concat axis {axis} {dims:?}"),
            &args,
            |t| Tensor::concat(&t.iter().collect::<Vec<_>>(), axis),
            |v| concat_ref(v, &dims, axis),
        );
        if args.len() == 1 {
            continue;
        }
        // one part constant: gradients for the others only
        args[0].differentiate = false;
        check_op(
            &format!("concat axis {axis} {dims:?}, first constant"),
            &args,
            |t| Tensor::concat(&t.iter().collect::<Vec<_>>(), axis),
            |v| concat_ref(v, &dims, axis),
        );
    }
}

/// `x[.., start..start + len, ..]` on `axis`, in f64, by explicit indices.
fn narrow_ref(x: &[f64], dims: &[usize], axis: usize, start: usize, len: usize) -> Vec<f64> {
    let n = dims[axis];
    let inner: usize = dims[axis + 1..].iter().product();
    let outer: usize = dims[..axis].iter().product();
    let mut y = Vec::new();
    for o in 0..outer {
        for k in start..start + len {
            for i in 0..inner {
                y.push(x[(o * n + k) * inner + i]);
            }
        }
    }
    y
}

#[test]
fn narrow_split_and_chunk() {
    let mut rng = Rng::new(23);
    let dims = vec![2, 3, 5, 7];
    let x = normal(&mut rng, dims.iter().product());
    for axis in 0..4 {
        let d = dims[axis];
        for (start, len) in [(0, d), (1, d - 1), (d / 2, 1), (0, 1)] {
            check_op(
                &format!("narrow axis {axis} {start}+{len}"),
                &[var(x.clone(), &dims)],
                |t| t[0].narrow(axis, start, len),
                |v| narrow_ref(&v[0], &dims, axis, start, len),
            );
        }
    }
    // split: every part's gradient lands in its own slice; all parts together
    // (joined back with concat) give the input's gradient in full
    for (axis, sizes) in [(3, vec![2, 4, 1]), (1, vec![1, 2]), (0, vec![2]), (2, vec![0, 5])] {
        check_op(
            &format!("split axis {axis} {sizes:?}, joined"),
            &[var(x.clone(), &dims)],
            |t| {
                let parts = t[0].split(axis, &sizes)?;
                Tensor::concat(&parts.iter().collect::<Vec<_>>(), axis)
            },
            |v| v[0].clone(),
        );
        let mut start = 0;
        for (k, &len) in sizes.iter().enumerate() {
            let s0 = start;
            check_op(
                &format!("split axis {axis} {sizes:?}, part {k}"),
                &[var(x.clone(), &dims)],
                |t| Ok(t[0].split(axis, &sizes)?.swap_remove(k)),
                |v| narrow_ref(&v[0], &dims, axis, s0, len),
            );
            start += len;
        }
    }
    // parts used differently: 2 * a + b^2 through chunk on channels
    check_op(
        "chunk axis 2 then 2a + b*b",
        &[var(normal(&mut rng, 3 * 2 * 6), &[3, 2, 6])],
        |t| {
            let p = t[0].chunk(2, 2)?;
            p[0].add(&p[0])?.add(&p[1].mul(&p[1])?)
        },
        |v| v[0].chunks(6).flat_map(|r| (0..3).map(move |i| 2.0 * r[i] + r[3 + i] * r[3 + i])).collect(),
    );
    let t = Tensor::from_vec(x, dims.clone()).unwrap();
    let parts = t.chunk(1, 3).unwrap();
    assert_eq!(parts.len(), 3);
    assert!(parts.iter().all(|p| p.dims() == [2, 1, 5, 7]));
    assert!(t.chunk(3, 2).is_err(), "7 channels into 2");
    assert!(t.chunk(3, 0).is_err());
    assert!(t.split(3, &[3, 3]).is_err(), "sizes short of the axis");
    assert!(t.split(4, &[1]).is_err());
    assert!(t.narrow(2, 3, 3).is_err() && t.narrow(2, usize::MAX, 2).is_err());
    assert_eq!(t.narrow(2, 5, 0).unwrap().dims(), [2, 3, 0, 7]);
}

/// Axis permutation in f64, by explicit multi-indices.
fn permute_ref(x: &[f64], dims: &[usize], perm: &[usize]) -> Vec<f64> {
    let strides: Vec<usize> = (0..dims.len()).map(|a| dims[a + 1..].iter().product()).collect();
    let out: Vec<usize> = perm.iter().map(|&a| dims[a]).collect();
    let mut idx = vec![0; out.len()];
    let mut y = Vec::with_capacity(x.len());
    for _ in 0..x.len() {
        y.push(x[idx.iter().zip(perm).map(|(&i, &a)| i * strides[a]).sum::<usize>()]);
        for j in (0..out.len()).rev() {
            idx[j] += 1;
            if idx[j] < out[j] {
                break;
            }
            idx[j] = 0;
        }
    }
    y
}

#[test]
fn permute_any_rank() {
    let mut rng = Rng::new(24);
    let cases: [(Vec<usize>, Vec<usize>); 8] = [
        (vec![2, 3, 5, 7], vec![0, 3, 1, 2]), // NHWC -> NCHW
        (vec![2, 7, 3, 5], vec![0, 2, 3, 1]), // and back
        (vec![3, 5], vec![1, 0]),
        (vec![2, 3, 5, 7], vec![3, 2, 1, 0]),
        (vec![2, 3, 5, 7], vec![1, 0, 2, 3]), // innermost axis stays
        (vec![3, 1, 5], vec![1, 2, 0]),
        (vec![2, 3, 1, 5, 3], vec![4, 1, 3, 0, 2]),
        (vec![7], vec![0]),
    ];
    for (dims, perm) in cases {
        check_op(
            &format!("permute {dims:?} by {perm:?}"),
            &[var(normal(&mut rng, dims.iter().product()), &dims)],
            |t| t[0].permute(&perm),
            |v| permute_ref(&v[0], &dims, &perm),
        );
    }
    let t = Tensor::zeros([2, 3, 4]);
    assert_eq!(t.permute(&[2, 0, 1]).unwrap().dims(), [4, 2, 3]);
    assert!(t.permute(&[0, 1]).is_err());
    assert!(t.permute(&[0, 1, 1]).is_err());
    assert!(t.permute(&[0, 1, 3]).is_err());
}

// ---------------------------------------------------------------- broadcasting arithmetic

/// NumPy broadcasting in f64, by explicit multi-indices.
fn broadcast_ref(a: &[f64], ad: &[usize], b: &[f64], bd: &[usize], f: impl Fn(f64, f64) -> f64) -> Vec<f64> {
    let rank = ad.len().max(bd.len());
    let pad = |d: &[usize]| [vec![1; rank - d.len()], d.to_vec()].concat();
    let (ad, bd) = (pad(ad), pad(bd));
    let out: Vec<usize> = ad.iter().zip(&bd).map(|(&x, &y)| x.max(y)).collect();
    let flat =
        |d: &[usize], idx: &[usize]| idx.iter().zip(d).fold(0, |acc, (&i, &n)| acc * n + if n == 1 { 0 } else { i });
    let total: usize = out.iter().product();
    let mut idx = vec![0; rank];
    let mut y = Vec::with_capacity(total);
    for _ in 0..total {
        y.push(f(a[flat(&ad, &idx)], b[flat(&bd, &idx)]));
        for d in (0..rank).rev() {
            idx[d] += 1;
            if idx[d] < out[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    y
}

#[test]
fn add_sub_mul_div_with_broadcasting() {
    let mut rng = Rng::new(7);
    let big = vec![2, 3, 4, 5];
    let pairs: Vec<(Vec<usize>, Vec<usize>)> = vec![
        (big.clone(), big.clone()),
        (big.clone(), vec![5]),
        (big.clone(), vec![2, 1, 1, 5]),
        (big.clone(), vec![1, 3, 1, 1]),
        (big.clone(), vec![]),
        (vec![5], big.clone()),
        (vec![1, 3, 1, 1], big.clone()),
        (vec![], big.clone()),
        (vec![3, 1, 5], vec![4, 1]), // both sides broadcast
        (vec![], vec![]),
    ];
    type F = fn(f64, f64) -> f64;
    let ops: [(&str, F); 4] =
        [("add", |a, b| a + b), ("sub", |a, b| a - b), ("mul", |a, b| a * b), ("div", |a, b| a / b)];
    for (ad, bd) in &pairs {
        for (name, f) in ops {
            let a = normal(&mut rng, ad.iter().product());
            // denominators kept away from zero: magnitude in [0.5, 1.5]
            let b: Vec<f32> = uniform(&mut rng, bd.iter().product(), 0.5, 1.5)
                .into_iter()
                .map(|v| if rng.below(2) == 0 { v } else { -v })
                .collect();
            let op = |t: &[Tensor]| match name {
                "add" => t[0].add(&t[1]),
                "sub" => t[0].sub(&t[1]),
                "mul" => t[0].mul(&t[1]),
                _ => t[0].div(&t[1]),
            };
            let reference = |v: &[Vec<f64>]| broadcast_ref(&v[0], ad, &v[1], bd, f);
            let what = format!("{name} {ad:?} {bd:?}");
            check_op(&what, &[var(a.clone(), ad), var(b.clone(), bd)], op, reference);
            check_op(&format!("{what}, rhs constant"), &[var(a.clone(), ad), constant(b.clone(), bd)], op, reference);
            check_op(&format!("{what}, lhs constant"), &[constant(a, ad), var(b, bd)], op, reference);
        }
    }
}

#[test]
fn broadcasting_on_the_parallel_path() {
    // outputs over 32k values are split across threads by rows: every row kind
    let mut rng = Rng::new(17);
    let big = vec![3, 37, 41, 24];
    for bd in [vec![3, 1, 1, 24], vec![41, 1], vec![37, 1, 24], vec![]] {
        let a = normal(&mut rng, big.iter().product());
        let b = normal(&mut rng, bd.iter().product());
        let (ta, tb) =
            (Tensor::from_vec(a.clone(), big.clone()).unwrap(), Tensor::from_vec(b.clone(), bd.clone()).unwrap());
        let (a64, b64): (Vec<f64>, Vec<f64>) =
            (a.iter().map(|v| *v as f64).collect(), b.iter().map(|v| *v as f64).collect());
        let want = broadcast_ref(&a64, &big, &b64, &bd, |a, b| a * b);
        assert_eq!(ta.mul(&tb).unwrap().data(), want.iter().map(|v| *v as f32).collect::<Vec<_>>(), "{bd:?}");
        let want = broadcast_ref(&b64, &bd, &a64, &big, |b, a| b - a);
        assert_eq!(tb.sub(&ta).unwrap().data(), want.iter().map(|v| *v as f32).collect::<Vec<_>>(), "{bd:?}");
    }
}

#[test]
fn mul_channels_equals_the_broadcast_product() {
    let mut rng = Rng::new(18);
    let (n, h, w, c) = (3, 5, 7, 19);
    let x = normal(&mut rng, n * h * w * c);
    let g = normal(&mut rng, n * c);
    let xt = Tensor::from_vec(x.clone(), [n, h, w, c]).unwrap();
    let gt = Tensor::from_vec(g.clone(), [n, c]).unwrap();
    let want = xt.mul(&gt.reshape(vec![n, 1, 1, c]).unwrap()).unwrap();
    // a shared buffer is copied, not overwritten
    let kept = xt.clone();
    assert_eq!(xt.mul_channels(&gt).unwrap().data(), want.data());
    assert_eq!(kept.data(), &x[..]);
    // an unshared one is scaled in place
    let own = Tensor::from_vec(x.clone(), [n, h, w, c]).unwrap();
    assert_eq!(own.mul_channels(&gt).unwrap().data(), want.data());
    // with autograd, the broadcast product and its gradients
    let reference = |v: &[Vec<f64>]| broadcast_ref(&v[0], &[n, h, w, c], &v[1], &[n, 1, 1, c], |a, b| a * b);
    let op = |t: &[Tensor]| t[0].clone().mul_channels(&t[1].reshape(vec![n, c]).unwrap());
    check_op("mul_channels", &[var(x.clone(), &[n, h, w, c]), var(g.clone(), &[n, 1, 1, c])], op, reference);
    // shape errors
    assert!(Tensor::from_vec(x, [n, h * w, c]).unwrap().mul_channels(&gt).is_err());
    assert!(Tensor::zeros([n, h, w, c]).mul_channels(&Tensor::zeros([n, c + 1])).is_err());
}

#[test]
fn affine_scale_add_scalar() {
    let mut rng = Rng::new(8);
    let x = normal(&mut rng, 3 * 7);
    let args = [var(x, &[3, 7])];
    check_op(
        "affine",
        &args,
        |t| Ok(t[0].affine(1.7, -0.3)),
        |v| v[0].iter().map(|x| x * 1.7f32 as f64 - 0.3f32 as f64).collect(),
    );
    check_op("scale", &args, |t| Ok(t[0].scale(-2.5)), |v| v[0].iter().map(|x| x * -2.5).collect());
    check_op("add_scalar", &args, |t| Ok(t[0].add_scalar(0.25)), |v| v[0].iter().map(|x| x + 0.25).collect());
}

// ---------------------------------------------------------------- batch norm

const BN_EPS: f32 = 1e-3;

/// `(x - mean) / sqrt(var + eps) * gamma + beta` per channel (last axis).
fn bn_apply(x: &[f64], gamma: &[f64], beta: &[f64], mean: &[f64], var: &[f64]) -> Vec<f64> {
    let c = gamma.len();
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let j = i % c;
            (v - mean[j]) / (var[j] + BN_EPS as f64).sqrt() * gamma[j] + beta[j]
        })
        .collect()
}

/// Per-channel mean and biased variance.
fn bn_stats(x: &[f64], c: usize) -> (Vec<f64>, Vec<f64>) {
    let rows = (x.len() / c) as f64;
    let mut mean = vec![0.0; c];
    let mut var = vec![0.0; c];
    for (i, v) in x.iter().enumerate() {
        mean[i % c] += v / rows;
    }
    for (i, v) in x.iter().enumerate() {
        var[i % c] += (v - mean[i % c]).powi(2) / rows;
    }
    (mean, var)
}

#[test]
fn batch_norm_train_and_infer() {
    let mut rng = Rng::new(9);
    for dims in [vec![2, 3, 5, 4], vec![7, 3], vec![3, 1, 2, 6]] {
        let c = *dims.last().unwrap();
        let n: usize = dims.iter().product();
        // per-channel offsets and scales, so the statistics matter
        let x: Vec<f32> =
            normal(&mut rng, n).iter().enumerate().map(|(i, v)| v * (1.0 + (i % c) as f32) + (i % c) as f32).collect();
        let gamma = uniform(&mut rng, c, 0.5, 1.5);
        let beta = normal(&mut rng, c);
        let args = [var(x.clone(), &dims), var(gamma.clone(), &[c]), var(beta.clone(), &[c])];
        check_op(
            &format!("batch_norm_train {dims:?}"),
            &args,
            |t| Ok(t[0].batch_norm_train(&t[1], &t[2], BN_EPS)?.0),
            |v| {
                let (mean, var) = bn_stats(&v[0], c);
                bn_apply(&v[0], &v[1], &v[2], &mean, &var)
            },
        );
        // with the relu fused in: the same values and gradients as the norm then a relu
        let fused_and_plain: Vec<Vec<Vec<f32>>> = [true, false]
            .iter()
            .map(|&fused| {
                let t = [
                    Tensor::from_vec(x.clone(), dims.clone()).unwrap().var(),
                    Tensor::from_vec(gamma.clone(), [c]).unwrap().var(),
                    Tensor::from_vec(beta.clone(), [c]).unwrap().var(),
                ];
                let y = if fused {
                    t[0].batch_norm_train_act(&t[1], &t[2], BN_EPS, true).unwrap().0
                } else {
                    t[0].batch_norm_train(&t[1], &t[2], BN_EPS).unwrap().0.relu()
                };
                let seed = Tensor::from_vec(normal(&mut Rng::new(3), n), dims.clone()).unwrap();
                let grads = y.backward_with(seed).unwrap();
                let mut out = vec![y.data().to_vec()];
                out.extend(t.iter().map(|v| grads.get(v).unwrap().data().to_vec()));
                out
            })
            .collect();
        assert!(fused_and_plain[0][0].contains(&0.0) && fused_and_plain[0][0].iter().any(|v| *v > 0.0));
        assert_eq!(fused_and_plain[0], fused_and_plain[1], "batch_norm_train_act relu {dims:?}");
        // the returned statistics are the batch's (biased variance)
        let xt = Tensor::from_vec(x.clone(), dims.clone()).unwrap();
        let (_, stats) = xt.batch_norm_train(&Tensor::full([c], 1.0), &Tensor::zeros([c]), BN_EPS).unwrap();
        let (mean, var) = bn_stats(&x.iter().map(|&v| v as f64).collect::<Vec<_>>(), c);
        assert_close("batch stats mean", &stats.mean, &mean, 1e-6);
        assert_close("batch stats var", &stats.var, &var, 1e-5);
        assert_eq!(stats.count, n / c);

        let run_mean: Vec<f32> = normal(&mut rng, c);
        let run_var = uniform(&mut rng, c, 0.5, 2.0);
        let (m64, v64): (Vec<f64>, Vec<f64>) =
            (run_mean.iter().map(|&v| v as f64).collect(), run_var.iter().map(|&v| v as f64).collect());
        check_op(
            &format!("batch_norm_infer {dims:?}"),
            &args,
            |t| t[0].batch_norm_infer(&t[1], &t[2], &run_mean, &run_var, BN_EPS),
            |v| bn_apply(&v[0], &v[1], &v[2], &m64, &v64),
        );
    }
}

// ---------------------------------------------------------------- reductions

/// Sum over `axes` in f64; the values come out in row-major order of the kept axes.
fn reduce_ref(x: &[f64], dims: &[usize], axes: &[usize], mean: bool) -> Vec<f64> {
    let kept: Vec<usize> = dims.iter().enumerate().map(|(i, &d)| if axes.contains(&i) { 1 } else { d }).collect();
    let count: usize = axes.iter().map(|&a| dims[a]).product();
    let mut y = vec![0.0; kept.iter().product()];
    let mut idx = vec![0; dims.len()];
    for v in x {
        let o = idx.iter().zip(&kept).fold(0, |acc, (&i, &k)| acc * k + if k == 1 { 0 } else { i });
        y[o] += if mean { v / count as f64 } else { *v };
        for d in (0..dims.len()).rev() {
            idx[d] += 1;
            if idx[d] < dims[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    y
}

#[test]
fn sum_mean_and_axis_reductions() {
    let mut rng = Rng::new(10);
    let x = normal(&mut rng, 2 * 3 * 4 * 5);
    let args = [var(x, &[2, 3, 4, 5])];
    check_op("sum", &args, |t| Ok(t[0].sum()), |v| vec![v[0].iter().sum()]);
    check_op("mean", &args, |t| Ok(t[0].mean()), |v| vec![v[0].iter().sum::<f64>() / 120.0]);
    // [2, 2, 3] reduced over axis 0 or 1 gives [2, 3] either way: the
    // backward must know which axis went, not guess it from the sizes
    let cases: [(Vec<usize>, Vec<usize>); 7] = [
        (vec![2, 3, 4, 5], vec![1, 2]),
        (vec![2, 3, 4, 5], vec![0, 3]),
        (vec![2, 3, 4, 5], vec![3]),
        (vec![2, 3, 4, 5], vec![0, 1, 2, 3]),
        (vec![2, 2, 3], vec![0]),
        (vec![2, 2, 3], vec![1]),
        (vec![3, 1, 3], vec![0]),
    ];
    for (dims, axes) in cases {
        let x = normal(&mut rng, dims.iter().product());
        for keepdim in [true, false] {
            for mean in [false, true] {
                let name = format!("{} axes {axes:?} of {dims:?} keepdim {keepdim}", if mean { "mean" } else { "sum" });
                let op = |t: &[Tensor]| {
                    let y = if mean { t[0].mean_axes(&axes, keepdim)? } else { t[0].sum_axes(&axes, keepdim)? };
                    let want: Vec<usize> = dims
                        .iter()
                        .enumerate()
                        .filter_map(|(i, &d)| if axes.contains(&i) { keepdim.then_some(1) } else { Some(d) })
                        .collect();
                    assert_eq!(y.dims(), want, "{name}: output shape");
                    Ok(y)
                };
                check_op(&name, &[var(x.clone(), &dims)], op, |v| reduce_ref(&v[0], &dims, &axes, mean));
            }
        }
    }
}

// ---------------------------------------------------------------- losses

fn mean_rows(per_row: impl Iterator<Item = f64>, n: usize) -> Vec<f64> {
    vec![per_row.sum::<f64>() / n as f64]
}

#[test]
fn softmax_cross_entropy_sparse_and_dense() {
    let mut rng = Rng::new(11);
    let (n, c) = (5, 7);
    let x: Vec<f32> = normal(&mut rng, n * c).iter().map(|v| v * 2.0).collect();
    let labels: Vec<u32> = (0..n).map(|_| rng.below(c) as u32).collect();
    check_op(
        "softmax_cross_entropy_sparse",
        &[var(x.clone(), &[n, c])],
        |t| t[0].softmax_cross_entropy_sparse(&labels),
        |v| {
            let ls = log_softmax_ref(&v[0], c);
            mean_rows((0..n).map(|i| -ls[i * c + labels[i] as usize]), n)
        },
    );
    // one-hot, soft (rows summing to one) and unnormalised targets (rows summing to 1.7)
    let one_hot: Vec<f32> = (0..n * c).map(|i| (labels[i / c] as usize == i % c) as u8 as f32).collect();
    let soft = normalise_rows(uniform(&mut rng, n * c, 0.0, 1.0), c, 1.0);
    let unnormalised = normalise_rows(uniform(&mut rng, n * c, 0.0, 1.0), c, 1.7);
    for (what, t) in [("one-hot", one_hot), ("soft", soft), ("unnormalised", unnormalised)] {
        let args = [var(x.clone(), &[n, c]), constant(t, &[n, c])];
        check_op(
            &format!("softmax_cross_entropy {what}"),
            &args,
            |t| t[0].softmax_cross_entropy(&t[1]),
            |v| {
                let ls = log_softmax_ref(&v[0], c);
                mean_rows((0..n).map(|i| -(0..c).map(|j| v[1][i * c + j] * ls[i * c + j]).sum::<f64>()), n)
            },
        );
    }
}

#[test]
fn softmax_cross_entropy_with_label_smoothing() {
    let mut rng = Rng::new(13);
    for &(n, c, eps) in &[(5, 7, 0.1f32), (3, 2, 0.25), (1, 1, 0.1), (4, 11, 1.0), (2, 3, 0.0)] {
        let x: Vec<f32> = normal(&mut rng, n * c).iter().map(|v| v * 2.0).collect();
        let labels: Vec<u32> = (0..n).map(|_| rng.below(c) as u32).collect();
        check_op(
            &format!("softmax_cross_entropy_sparse_smoothed {n}x{c} eps {eps}"),
            &[var(x, &[n, c])],
            |t| t[0].softmax_cross_entropy_sparse_smoothed(&labels, eps),
            |v| {
                let ls = log_softmax_ref(&v[0], c);
                let e = eps as f64;
                let target = |i: usize, j: usize| (1.0 - e) * f64::from(labels[i] as usize == j) + e / c as f64;
                mean_rows((0..n).map(|i| -(0..c).map(|j| target(i, j) * ls[i * c + j]).sum::<f64>()), n)
            },
        );
    }
}

#[test]
fn label_smoothing_matches_hand_computed_values() {
    // logits [[1, 2, 0.5], [-1, 0, 3]], labels [1, 2], eps 0.3: targets 0.1 off, 0.8 on
    let z = Tensor::from_vec(vec![1.0, 2.0, 0.5, -1.0, 0.0, 3.0], [2, 3]).unwrap().var();
    let loss = z.softmax_cross_entropy_sparse_smoothed(&[1, 2], 0.3).unwrap();
    let lse0 = (1f64.exp() + 2f64.exp() + 0.5f64.exp()).ln();
    let lse1 = ((-1f64).exp() + 1.0 + 3f64.exp()).ln();
    let row0 = 0.1 * (lse0 - 1.0) + 0.8 * (lse0 - 2.0) + 0.1 * (lse0 - 0.5);
    let row1 = 0.1 * (lse1 + 1.0) + 0.1 * lse1 + 0.8 * (lse1 - 3.0);
    let want = (row0 + row1) / 2.0;
    let got = loss.item().unwrap() as f64;
    assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    let g = loss.backward().unwrap();
    let dz = g.get(&z).unwrap().data().to_vec();
    // (softmax - target) / 2 for sample 0, class 1
    let want = ((2f64 - lse0).exp() - 0.8) / 2.0;
    assert!((dz[1] as f64 - want).abs() < 1e-6, "{} vs {want}", dz[1]);
    // bad smoothing and labels are errors, not panics
    assert!(z.softmax_cross_entropy_sparse_smoothed(&[1, 2], 1.5).is_err());
    assert!(z.softmax_cross_entropy_sparse_smoothed(&[1, 2], f32::NAN).is_err());
    assert!(z.softmax_cross_entropy_sparse_smoothed(&[1, 3], 0.1).is_err());
}

fn normalise_rows(mut v: Vec<f32>, c: usize, total: f32) -> Vec<f32> {
    for row in v.chunks_mut(c) {
        let s: f32 = row.iter().sum();
        row.iter_mut().for_each(|x| *x *= total / s);
    }
    v
}

#[test]
fn probability_cross_entropies() {
    let mut rng = Rng::new(12);
    let (n, c) = (5, 7);
    // not normalised: Keras divides each row by its sum first; q = p / sum stays inside the clip
    let p = uniform(&mut rng, n * c, 0.1, 1.0);
    let labels: Vec<u32> = (0..n).map(|_| rng.below(c) as u32).collect();
    let q = |v: &[f64], i: usize, j: usize| v[i * c + j] / v[i * c..(i + 1) * c].iter().sum::<f64>();
    check_op(
        "probs_cross_entropy_sparse",
        &[var(p.clone(), &[n, c])],
        |t| t[0].probs_cross_entropy_sparse(&labels),
        |v| mean_rows((0..n).map(|i| -q(&v[0], i, labels[i] as usize).ln()), n),
    );
    let targets = normalise_rows(uniform(&mut rng, n * c, 0.0, 1.0), c, 1.0);
    let args = [var(p, &[n, c]), constant(targets, &[n, c])];
    check_op(
        "probs_cross_entropy",
        &args,
        |t| t[0].probs_cross_entropy(&t[1]),
        |v| mean_rows((0..n).map(|i| -(0..c).map(|j| v[1][i * c + j] * q(&v[0], i, j).ln()).sum::<f64>()), n),
    );

    // binary forms over any shape, mean over every element
    let dims = [4, 3, 2];
    let logits: Vec<f32> = normal(&mut rng, 24).iter().map(|v| v * 3.0).collect();
    let t = uniform(&mut rng, 24, 0.0, 1.0);
    let args = [var(logits, &dims), constant(t.clone(), &dims)];
    check_op(
        "sigmoid_binary_cross_entropy",
        &args,
        |t| t[0].sigmoid_binary_cross_entropy(&t[1]),
        |v| mean_rows(v[0].iter().zip(&v[1]).map(|(&x, &t)| (1.0 + x.exp()).ln() - x * t), 24),
    );
    let probs = uniform(&mut rng, 24, 0.05, 0.95);
    let args = [var(probs, &dims), constant(t, &dims)];
    check_op(
        "probs_binary_cross_entropy",
        &args,
        |t| t[0].probs_binary_cross_entropy(&t[1]),
        |v| mean_rows(v[0].iter().zip(&v[1]).map(|(&p, &t)| -(t * p.ln() + (1.0 - t) * (1.0 - p).ln())), 24),
    );
}

#[test]
fn losses_clip_and_stay_finite() {
    // probabilities of exactly 0 and 1 are clipped to [1e-7, 1 - 1e-7], as in Keras
    let p = Tensor::from_vec(vec![0.0, 1.0], [2]).unwrap().var();
    let t = Tensor::from_vec(vec![1.0, 1.0], [2]).unwrap();
    let loss = p.probs_binary_cross_entropy(&t).unwrap();
    let want = -(1e-7f64).ln() / 2.0; // the second term is -ln(1 - 1e-7) ~ 1e-7
    assert!((loss.item().unwrap() as f64 - want).abs() < 1e-4, "{}", loss.item().unwrap());
    let g = loss.backward().unwrap();
    assert_eq!(g.get(&p).unwrap().data(), [0.0, 0.0], "no gradient through an active clip");
    // a one-hot probability row: the loss of the right class is ~0, of the wrong one -ln(1e-7)
    let p = Tensor::from_vec(vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0], [2, 3]).unwrap();
    let loss = p.probs_cross_entropy_sparse(&[0, 0]).unwrap().item().unwrap() as f64;
    assert!((loss - (-(1e-7f64).ln()) / 2.0).abs() < 1e-4, "{loss}");
    // huge logits: the fused forms use log-sum-exp and do not overflow
    let x = Tensor::from_vec(vec![1000.0, -1000.0, 0.0], [1, 3]).unwrap();
    assert_eq!(x.softmax_cross_entropy_sparse(&[0]).unwrap().item().unwrap(), 0.0);
    assert_eq!(x.softmax_cross_entropy_sparse(&[1]).unwrap().item().unwrap(), 2000.0);
    let x = Tensor::from_vec(vec![1000.0, -1000.0], [2]).unwrap();
    let t = Tensor::from_vec(vec![0.0, 1.0], [2]).unwrap();
    assert_eq!(x.sigmoid_binary_cross_entropy(&t).unwrap().item().unwrap(), 1000.0);
}

#[test]
fn loss_targets_receive_no_gradient() {
    let x = Tensor::from_vec(vec![0.5, -1.0, 2.0, 0.0], [2, 2]).unwrap().var();
    let t = Tensor::from_vec(vec![0.3, 0.7, 1.0, 0.0], [2, 2]).unwrap().var();
    for loss in [
        x.softmax_cross_entropy(&t).unwrap(),
        x.sigmoid().probs_cross_entropy(&t).unwrap(),
        x.sigmoid_binary_cross_entropy(&t).unwrap(),
        x.sigmoid().probs_binary_cross_entropy(&t).unwrap(),
    ] {
        let g = loss.backward().unwrap();
        assert!(g.get(&x).is_some());
        assert!(g.get(&t).is_none(), "targets are data, not parameters");
        assert_eq!(g.len(), 1);
    }
}
