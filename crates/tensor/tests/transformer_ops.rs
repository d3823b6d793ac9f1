//! The ops the layer-norm networks and vision transformers add, against f64 references
//! written here, backward against f64 finite differences (method and tolerances in
//! `common/mod.rs`): layer norm over the last axis (with and without its affine), group
//! norm of channels-last maps, and the batched matrix product with either operand
//! transposed.

mod common;

use common::*;
use convnet_tensor::Tensor;
use convnet_tensor::rng::Rng;

/// Layer norm of each row of `c` values in f64.
fn layer_norm_ref(x: &[f64], c: usize, w: Option<&[f64]>, b: Option<&[f64]>, eps: f64) -> Vec<f64> {
    let mut y = Vec::with_capacity(x.len());
    for r in x.chunks(c) {
        let mean = r.iter().sum::<f64>() / c as f64;
        let var = r.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / c as f64;
        for (j, v) in r.iter().enumerate() {
            let h = (v - mean) / (var + eps).sqrt();
            y.push(h * w.map_or(1.0, |w| w[j]) + b.map_or(0.0, |b| b[j]));
        }
    }
    y
}

#[test]
fn layer_norm_over_the_last_axis() {
    let mut rng = Rng::new(31);
    for dims in [vec![2, 3, 5, 7], vec![1, 1], vec![4, 13], vec![3, 67]] {
        let c = *dims.last().unwrap();
        let n: usize = dims.iter().product();
        // rows with an offset and a spread of their own, as activations have
        let x: Vec<f32> = normal(&mut rng, n).iter().enumerate().map(|(i, v)| v * 1.5 + (i / c) as f32 * 0.3).collect();
        let w: Vec<f32> = uniform(&mut rng, c, 0.5, 1.5);
        let b = normal(&mut rng, c);
        if c > 1 {
            check_op(
                &format!("layer_norm {dims:?}"),
                &[var(x.clone(), &dims), var(w.clone(), &[c]), var(b.clone(), &[c])],
                |t| t[0].layer_norm(Some(&t[1]), Some(&t[2]), 1e-6),
                |v| layer_norm_ref(&v[0], c, Some(&v[1]), Some(&v[2]), 1e-6),
            );
            check_op(
                &format!("layer_norm {dims:?} without affine"),
                &[var(x.clone(), &dims)],
                |t| t[0].layer_norm(None, None, 1e-5),
                |v| layer_norm_ref(&v[0], c, None, None, 1e-5),
            );
            check_op(
                &format!("layer_norm {dims:?}, weight only, constant input"),
                &[constant(x.clone(), &dims), var(w, &[c])],
                |t| t[0].layer_norm(Some(&t[1]), None, 1e-6),
                |v| layer_norm_ref(&v[0], c, Some(&v[1]), None, 1e-6),
            );
        } else {
            // one channel: every row normalises to zero, the output is the bias
            let t = Tensor::from_vec(x, dims.clone()).unwrap();
            let bt = Tensor::from_vec(b.clone(), [1]).unwrap();
            let y = t.layer_norm(None, Some(&bt), 1e-6).unwrap();
            assert!(y.data().iter().all(|&v| v == b[0]));
        }
    }
    let t = Tensor::zeros([2, 3]);
    assert!(t.layer_norm(Some(&Tensor::zeros([2])), None, 1e-6).is_err());
    assert!(Tensor::zeros([2, 0]).layer_norm(None, None, 1e-6).is_err());
}

/// Group norm of NHWC `[n, p, c]` (positions flattened) in f64.
fn group_norm_ref(x: &[f64], dims: &[usize], groups: usize, w: &[f64], b: &[f64], eps: f64) -> Vec<f64> {
    let (n, c) = (dims[0], *dims.last().unwrap());
    let p = x.len() / (n * c);
    let cg = c / groups;
    let mut y = vec![0.0; x.len()];
    for s in 0..n {
        for g in 0..groups {
            let at = |q: usize, j: usize| (s * p + q) * c + g * cg + j;
            let vals: Vec<f64> = (0..p).flat_map(|q| (0..cg).map(move |j| (q, j))).map(|(q, j)| x[at(q, j)]).collect();
            let mean = vals.iter().sum::<f64>() / vals.len() as f64;
            let var = vals.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / vals.len() as f64;
            for q in 0..p {
                for j in 0..cg {
                    let ch = g * cg + j;
                    y[at(q, j)] = (x[at(q, j)] - mean) / (var + eps).sqrt() * w[ch] + b[ch];
                }
            }
        }
    }
    y
}

#[test]
fn group_norm_of_channels_last_maps() {
    let mut rng = Rng::new(32);
    for (dims, groups) in [(vec![2, 3, 5, 6], 3), (vec![1, 2, 2, 8], 8), (vec![3, 1, 3, 4], 1), (vec![2, 7, 9], 3)] {
        let c = *dims.last().unwrap();
        let x = normal(&mut rng, dims.iter().product());
        let w = uniform(&mut rng, c, 0.5, 1.5);
        let b = normal(&mut rng, c);
        check_op(
            &format!("group_norm {dims:?} in {groups} groups"),
            &[var(x, &dims), var(w, &[c]), var(b, &[c])],
            |t| t[0].group_norm(groups, &t[1], &t[2], 1e-5),
            |v| group_norm_ref(&v[0], &dims, groups, &v[1], &v[2], 1e-5),
        );
    }
    let t = Tensor::zeros([1, 2, 2, 6]);
    assert!(t.group_norm(4, &Tensor::zeros([6]), &Tensor::zeros([6]), 1e-5).is_err());
    assert!(t.group_norm(3, &Tensor::zeros([3]), &Tensor::zeros([6]), 1e-5).is_err());
}

/// `op(a) @ op(b)` per batch entry in f64, from stored layouts.
#[allow(clippy::too_many_arguments)]
fn batch_matmul_ref(a: &[f64], b: &[f64], batch: usize, m: usize, k: usize, n: usize, ta: bool, tb: bool) -> Vec<f64> {
    let mut y = vec![0.0; batch * m * n];
    for e in 0..batch {
        let ae = &a[e * m * k..];
        let be = &b[e * k * n..];
        for i in 0..m {
            for j in 0..n {
                y[(e * m + i) * n + j] = (0..k)
                    .map(|p| {
                        let av = if ta { ae[p * m + i] } else { ae[i * k + p] };
                        let bv = if tb { be[j * k + p] } else { be[p * n + j] };
                        av * bv
                    })
                    .sum();
            }
        }
    }
    y
}

#[test]
fn batched_matmul_with_transposed_operands() {
    let mut rng = Rng::new(33);
    // (batch axes, m, k, n): odd sizes, one entry, many small entries (attention heads)
    let cases: [(Vec<usize>, usize, usize, usize); 5] =
        [(vec![2], 3, 5, 4), (vec![1], 1, 1, 1), (vec![2, 3], 7, 4, 9), (vec![1, 6], 17, 8, 17), (vec![3], 33, 2, 19)];
    for (lead, m, k, n) in cases {
        let batch: usize = lead.iter().product();
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            let mut ad = lead.clone();
            ad.extend(if ta { [k, m] } else { [m, k] });
            let mut bd = lead.clone();
            bd.extend(if tb { [n, k] } else { [k, n] });
            let a = normal(&mut rng, batch * m * k);
            let b = normal(&mut rng, batch * k * n);
            check_op(
                &format!("batch_matmul {lead:?} {m}x{k}x{n} ta={ta} tb={tb}"),
                &[var(a.clone(), &ad), var(b.clone(), &bd)],
                |t| t[0].batch_matmul(&t[1], ta, tb),
                |v| batch_matmul_ref(&v[0], &v[1], batch, m, k, n, ta, tb),
            );
            check_op(
                &format!("batch_matmul {lead:?} {m}x{k}x{n} ta={ta} tb={tb}, constant left"),
                &[constant(a, &ad), var(b, &bd)],
                |t| t[0].batch_matmul(&t[1], ta, tb),
                |v| batch_matmul_ref(&v[0], &v[1], batch, m, k, n, ta, tb),
            );
        }
    }
    let a = Tensor::zeros([2, 3, 4]);
    assert!(a.batch_matmul(&Tensor::zeros([2, 5, 4]), false, false).is_err(), "inner sizes");
    assert!(a.batch_matmul(&Tensor::zeros([3, 4, 4]), false, false).is_err(), "batch axes");
    assert!(Tensor::zeros([3, 4]).batch_matmul(&Tensor::zeros([4, 3]), false, false).is_err(), "rank 2");
    assert_eq!(a.batch_matmul(&Tensor::zeros([2, 5, 4]), false, true).unwrap().dims(), [2, 3, 5]);
}
