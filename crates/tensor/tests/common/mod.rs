//! Shared helpers for the tensor crate's integration tests: seeded random
//! data and the gradient check every op test uses.
//!
//! The check ([`check_op`]) compares an f32 op against a *reference forward
//! written in the test in f64 with plain loops*:
//!
//! 1. forward: the op's output against the reference's, to `Tol::forward`
//!    (1e-5) relative to `max(1, max |y_ref|)`; f32 rounding of sums of ~100
//!    terms is ~1e-6.
//! 2. the gradient of the random linear functional `L = sum(r * y)` (r seeded
//!    normal) is taken by central differences of the f64 reference at two
//!    steps, h and 2h with `h = 1e-5 * max(1, |x|)`. The two estimates must
//!    agree to 1e-6 relative to the largest gradient: a smooth op agrees to
//!    ~1e-8 (truncation error ~h^2), so a failure there means the test point
//!    sits within 2h of a kink (relu at 0, a tie in a max, a clip boundary)
//!    and the *test* must pick other points.
//! 3. the op's `backward_with(r)` against that f64 gradient, to `Tol::grad`
//!    (1e-4) relative to the largest |gradient| of that input: f32
//!    accumulation error is ~1e-6 of it, any real mistake (a missing term, a
//!    wrong index, a wrong divisor) is of order one.
//!
//! Seeding backward with `r` instead of building `sum(r * y)` from other ops
//! keeps each test about one op only.
#![allow(dead_code)] // each test binary uses a different subset

use convnet_tensor::rng::Rng;
use convnet_tensor::{Result, Tensor};

/// One input of an op under test.
#[derive(Clone, Debug)]
pub struct Arg {
    pub data: Vec<f32>,
    pub dims: Vec<usize>,
    /// Made a variable and its gradient checked; otherwise a constant.
    pub differentiate: bool,
}

/// A differentiated input.
pub fn var(data: Vec<f32>, dims: &[usize]) -> Arg {
    assert_eq!(data.len(), dims.iter().product::<usize>(), "test setup: data for {dims:?}");
    Arg { data, dims: dims.to_vec(), differentiate: true }
}

/// A constant input (no gradient checked, `needs` is false in backward).
pub fn constant(data: Vec<f32>, dims: &[usize]) -> Arg {
    Arg { differentiate: false, ..var(data, dims) }
}

/// Tolerances of [`check_op`] (see the module docs for why these values).
#[derive(Clone, Copy, Debug)]
pub struct Tol {
    pub forward: f64,
    pub grad: f64,
}

/// The default tolerances.
pub const TOL: Tol = Tol { forward: 1e-5, grad: 1e-4 };

/// Agreement required between the h and 2h finite differences.
const FD_SELF_TOL: f64 = 1e-6;

/// Checks the op's forward against `reference` and its backward against f64
/// central differences of `reference`, for every `differentiate` input.
pub fn check_op<F, R>(name: &str, args: &[Arg], op: F, reference: R)
where
    F: Fn(&[Tensor]) -> Result<Tensor>,
    R: Fn(&[Vec<f64>]) -> Vec<f64>,
{
    check_op_tol(name, args, op, reference, TOL)
}

/// [`check_op`] with explicit tolerances.
pub fn check_op_tol<F, R>(name: &str, args: &[Arg], op: F, reference: R, tol: Tol)
where
    F: Fn(&[Tensor]) -> Result<Tensor>,
    R: Fn(&[Vec<f64>]) -> Vec<f64>,
{
    let tensors: Vec<Tensor> = args
        .iter()
        .map(|a| {
            let t = Tensor::from_vec(a.data.clone(), a.dims.clone()).expect("test setup: shape");
            if a.differentiate { t.var() } else { t }
        })
        .collect();
    let y = op(&tensors).unwrap_or_else(|e| panic!("{name}: forward failed: {e}"));
    let x64: Vec<Vec<f64>> = args.iter().map(|a| a.data.iter().map(|&v| v as f64).collect()).collect();
    let y_ref = reference(&x64);
    assert_eq!(y.numel(), y_ref.len(), "{name}: output has {} values, reference {}", y.numel(), y_ref.len());
    assert_close(&format!("{name}: forward"), y.data(), &y_ref, tol.forward);

    let mut rng = Rng::new(0x5eed);
    let r: Vec<f64> = (0..y.numel()).map(|_| rng.normal() as f64).collect();
    let seed = Tensor::from_vec(r.iter().map(|&v| v as f32).collect(), y.dims().to_vec()).expect("seed shape");
    // the seed as the f32 backward sees it, so both sides differentiate the same functional
    let r: Vec<f64> = seed.data().iter().map(|&v| v as f64).collect();
    let grads = y.backward_with(seed).unwrap_or_else(|e| panic!("{name}: backward failed: {e}"));

    let functional = |x: &[Vec<f64>]| -> f64 { reference(x).iter().zip(&r).map(|(a, b)| a * b).sum() };
    for (i, (arg, t)) in args.iter().zip(&tensors).enumerate() {
        if !arg.differentiate {
            assert!(grads.get(t).is_none(), "{name}: constant input {i} received a gradient");
            continue;
        }
        let g = grads.get(t).unwrap_or_else(|| panic!("{name}: no gradient for input {i}"));
        assert_eq!(g.dims(), t.dims(), "{name}: gradient shape of input {i}");
        let fd = finite_difference(&functional, &x64, i);
        let fd2 = finite_difference_step(&functional, &x64, i, 2.0);
        let scale = max_abs(&fd).max(1e-12);
        let (j, err) = worst(&fd2, &fd);
        assert!(
            err <= FD_SELF_TOL * scale,
            "{name}: input {i}[{j}]: finite differences at h and 2h disagree ({} vs {}): the test point is too close to a kink",
            fd[j],
            fd2[j]
        );
        let got: Vec<f64> = g.data().iter().map(|&v| v as f64).collect();
        let (j, err) = worst(&got, &fd);
        assert!(
            err <= tol.grad * scale,
            "{name}: d/d input {i}[{j}] (of {:?}): backward {} vs finite difference {} (max |grad| {scale}, rel err {:.2e})",
            arg.dims,
            got[j],
            fd[j],
            err / scale
        );
    }
}

/// Central difference of `f` with respect to every element of input `i`.
pub fn finite_difference(f: &dyn Fn(&[Vec<f64>]) -> f64, x: &[Vec<f64>], i: usize) -> Vec<f64> {
    finite_difference_step(f, x, i, 1.0)
}

/// Central difference with step `mult * 1e-5 * max(1, |x|)`.
pub fn finite_difference_step(f: &dyn Fn(&[Vec<f64>]) -> f64, x: &[Vec<f64>], i: usize, mult: f64) -> Vec<f64> {
    let mut x = x.to_vec();
    (0..x[i].len())
        .map(|j| {
            let v = x[i][j];
            let h = mult * 1e-5 * v.abs().max(1.0);
            x[i][j] = v + h;
            let up = f(&x);
            x[i][j] = v - h;
            let down = f(&x);
            x[i][j] = v;
            (up - down) / (2.0 * h)
        })
        .collect()
}

/// Asserts `got` (f32) equals `want` (f64) to `tol * max(1, max |want|)`.
pub fn assert_close(what: &str, got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let got: Vec<f64> = got.iter().map(|&v| v as f64).collect();
    let scale = max_abs(want).max(1.0);
    let (j, err) = worst(&got, want);
    assert!(
        err <= tol * scale,
        "{what}: element {j}: got {} want {} (abs err {err:.3e}, allowed {:.3e})",
        got[j],
        want[j],
        tol * scale
    );
}

/// Index and size of the largest absolute difference (NaN counts as infinite).
pub fn worst(a: &[f64], b: &[f64]) -> (usize, f64) {
    assert_eq!(a.len(), b.len());
    let mut out = (0, 0.0);
    for (j, (x, y)) in a.iter().zip(b).enumerate() {
        let d = (x - y).abs();
        let d = if d.is_nan() { f64::INFINITY } else { d };
        if d > out.1 {
            out = (j, d);
        }
    }
    out
}

/// Largest absolute value.
pub fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

/// `n` standard normal values.
pub fn normal(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.normal()).collect()
}

/// `n` uniform values in `[lo, hi)`.
pub fn uniform(rng: &mut Rng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.uniform_range(lo, hi)).collect()
}

/// `n` values, pairwise at least 0.05 apart (no ties for a max to break):
/// a shuffled ramp centred on zero.
pub fn distinct(rng: &mut Rng, n: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..n).map(|i| (i as f32 - n as f32 / 2.0) * 0.05).collect();
    rng.shuffle(&mut v);
    v
}

/// `n` values in `[lo, hi)` at least `gap` away from every point of `kinks`.
pub fn away_from(rng: &mut Rng, n: usize, lo: f32, hi: f32, kinks: &[f32], gap: f32) -> Vec<f32> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let v = rng.uniform_range(lo, hi);
        if kinks.iter().all(|k| (v - k).abs() >= gap) {
            out.push(v);
        }
    }
    out
}

/// f64 `erf`, to ~1e-15 (std's is not stable), from the kernels' reference erfc.
pub fn erf64(x: f64) -> f64 {
    (1.0 - convnet_kernels::elementwise::erfc_reference(x.abs())).copysign(x)
}
