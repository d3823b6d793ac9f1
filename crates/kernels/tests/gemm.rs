//! `sgemm` against a plain f64 triple loop for every `(m, n, k)` in a ragged
//! set of sizes from 1 to 67 (below, at and past the microkernel and SIMD
//! widths), with transposed operands, strided submatrix views, and the
//! accumulate flag; also `sgemm_reference` and `bias_grad`.

mod common;

use common::{Rng, assert_close_scaled};
use convnet_kernels::conv::bias_grad;
use convnet_kernels::gemm::{MatMut, MatRef, sgemm, sgemm_reference};

const SIZES: [usize; 20] = [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 48, 63, 64, 65, 67];

/// How the operands are laid out in memory.
#[derive(Clone, Copy, Debug)]
struct Layout {
    /// `a` stored as its transpose (`[k, m]` row-major) and viewed through `.t()`.
    a_t: bool,
    b_t: bool,
    /// `c += a @ b` instead of `c = a @ b`.
    accumulate: bool,
    /// Extra elements at the end of every row of `c` (a view into a wider matrix).
    c_pad: usize,
}

impl Layout {
    fn all() -> Vec<Layout> {
        let mut v = Vec::new();
        for i in 0..16 {
            v.push(Layout {
                a_t: i & 1 != 0,
                b_t: i & 2 != 0,
                accumulate: i & 4 != 0,
                c_pad: if i & 8 != 0 { 3 } else { 0 },
            });
        }
        v
    }
}

/// Logical `a[i][p]` stored per the layout.
fn store(logical: &[f32], rows: usize, cols: usize, transposed: bool) -> Vec<f32> {
    if !transposed {
        return logical.to_vec();
    }
    let mut t = vec![0.0; logical.len()];
    for i in 0..rows {
        for j in 0..cols {
            t[j * rows + i] = logical[i * cols + j];
        }
    }
    t
}

fn view(data: &[f32], rows: usize, cols: usize, transposed: bool) -> MatRef<'_> {
    if transposed { MatRef::row_major(data, cols, rows).t() } else { MatRef::row_major(data, rows, cols) }
}

/// Runs `gemm` (the fast one or the reference) for one shape and layout and checks it.
fn check(m: usize, n: usize, k: usize, l: Layout, rng: &mut Rng, gemm: fn(MatRef<'_>, MatRef<'_>, MatMut<'_>, bool)) {
    let a = rng.vec(m * k);
    let b = rng.vec(k * n);
    let (a_s, b_s) = (store(&a, m, k, l.a_t), store(&b, k, n, l.b_t));
    let ldc = n + l.c_pad;
    let c0 = rng.vec(m * ldc);
    let mut c = c0.clone();
    gemm(
        view(&a_s, m, k, l.a_t),
        view(&b_s, k, n, l.b_t),
        MatMut { data: &mut c, rows: m, cols: n, row_stride: ldc, col_stride: 1 },
        l.accumulate,
    );
    let mut want = Vec::with_capacity(m * n);
    let mut scale = Vec::with_capacity(m * n);
    let mut got = Vec::with_capacity(m * n);
    for i in 0..m {
        for j in 0..n {
            let mut s: f64 = (0..k).map(|p| a[i * k + p] as f64 * b[p * n + j] as f64).sum();
            let mut mag: f64 = (0..k).map(|p| (a[i * k + p] as f64 * b[p * n + j] as f64).abs()).sum();
            if l.accumulate {
                s += c0[i * ldc + j] as f64;
                mag += (c0[i * ldc + j] as f64).abs();
            }
            want.push(s);
            scale.push(mag);
            got.push(c[i * ldc + j]);
        }
        // the padding past each row is not touched
        assert_eq!(
            c[i * ldc + n..(i + 1) * ldc],
            c0[i * ldc + n..(i + 1) * ldc],
            "{m}x{n}x{k} {l:?}: wrote outside the view"
        );
    }
    assert_close_scaled(&format!("gemm {m}x{n}x{k} {l:?}"), &got, &want, &scale, 1e-6);
}

#[test]
fn sgemm_matches_reference_on_every_ragged_shape() {
    let mut rng = Rng::new(1);
    let layouts = Layout::all();
    // every (m, n, k) of the ragged set, the layout cycling through all 16
    let mut count = 0;
    for &m in &SIZES {
        for &n in &SIZES {
            for &k in &SIZES {
                check(m, n, k, layouts[count % layouts.len()], &mut rng, sgemm);
                count += 1;
            }
        }
    }
    // and every layout on shapes around the register-tile edges
    for &(m, n, k) in &[(1, 1, 1), (17, 33, 9), (48, 16, 64), (67, 65, 63), (3, 67, 2), (64, 1, 67)] {
        for l in &layouts {
            check(m, n, k, *l, &mut rng, sgemm);
        }
    }
}

#[test]
fn sgemm_reference_is_a_plain_product() {
    let mut rng = Rng::new(2);
    for l in Layout::all() {
        for &(m, n, k) in &[(1, 1, 1), (5, 3, 7), (16, 17, 4)] {
            check(m, n, k, l, &mut rng, sgemm_reference);
        }
    }
}

#[test]
fn sgemm_degenerate_sizes() {
    // k = 0: c = 0, or c unchanged when accumulating
    let mut c = vec![5.0; 6];
    sgemm(MatRef::row_major(&[], 2, 0), MatRef::row_major(&[], 0, 3), MatMut::row_major(&mut c, 2, 3), true);
    assert_eq!(c, [5.0; 6]);
    sgemm(MatRef::row_major(&[], 2, 0), MatRef::row_major(&[], 0, 3), MatMut::row_major(&mut c, 2, 3), false);
    assert_eq!(c, [0.0; 6]);
    // m = 0 or n = 0: nothing to write
    let mut empty: Vec<f32> = Vec::new();
    sgemm(
        MatRef::row_major(&[], 0, 4),
        MatRef::row_major(&[1.0; 12], 4, 3),
        MatMut::row_major(&mut empty, 0, 3),
        false,
    );
    sgemm(MatRef::row_major(&[1.0; 8], 2, 4), MatRef::row_major(&[], 4, 0), MatMut::row_major(&mut empty, 2, 0), false);
}

#[test]
fn sgemm_is_the_same_on_one_thread_and_many() {
    let mut rng = Rng::new(3);
    let (m, n, k) = (67, 65, 63);
    let (a, b) = (rng.vec(m * k), rng.vec(k * n));
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let mut c = vec![0.0; m * n];
        pool.install(|| {
            sgemm(MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n), MatMut::row_major(&mut c, m, n), false)
        });
        c
    };
    let (one, two) = (run(1), run(2));
    for (x, y) in one.iter().zip(&two) {
        assert!((x - y).abs() <= 1e-5, "{x} vs {y}");
    }
}

#[test]
fn bias_grad_sums_rows() {
    let mut rng = Rng::new(4);
    for &channels in &[1, 3, 16, 17, 67] {
        // around the 256-row blocks it sums in parallel
        for &rows in &[1, 2, 255, 256, 257, 1000] {
            let dy = rng.vec(rows * channels);
            let got = bias_grad(&dy, channels);
            let want: Vec<f64> = (0..channels).map(|c| (0..rows).map(|r| dy[r * channels + c] as f64).sum()).collect();
            let scale: Vec<f64> =
                (0..channels).map(|c| (0..rows).map(|r| (dy[r * channels + c] as f64).abs()).sum()).collect();
            assert_close_scaled(&format!("bias_grad {rows}x{channels}"), &got, &want, &scale, 1e-6);
            // deterministic whatever the schedule
            assert_eq!(got, bias_grad(&dy, channels));
        }
    }
}
