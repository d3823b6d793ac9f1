//! A dense layer on a few rows with f32 weights and f64 inputs, sums and
//! outputs: the two tiny fully-connected maps of a squeeze-excitation gate at
//! inference, which multiplies every activation of its block and so is kept
//! in f64. They were a serial per-row scalar loop (6% of MobileNet-V3 at
//! batch 1 and 16, the other thread idle meanwhile); here each weight row is
//! loaded once per tile of rows, the columns are vectorised (`vectorised`)
//! and wide layers split their columns across threads.
//!
//! Every output is `bias[j]` (or 0) plus `x[r, i] * w[i, j]` for `i` in
//! ascending order, each product rounded then added, exactly as the plain
//! loop: results are bit-identical on every path and for any thread count.

use crate::elementwise::vectorised;
use rayon::prelude::*;

/// Rows sharing one pass over the weights.
const ROWS: usize = 4;
/// Columns of one tile: the sums of `ROWS x COLS` stay in registers.
const COLS: usize = 16;
/// Multiply-adds under which a layer runs on the calling thread.
const SERIAL_MACS: usize = 1 << 15;

/// `out[r, j] = bias[j] + sum_i x[r, i] * w[i, j]` for `x: [rows, cin]`,
/// `w: [cin, cout]` (row-major), `bias: [cout]`, `out: [rows, cout]`.
///
/// # Panics
/// When a slice's length does not match `rows`, `cin` and `cout`.
pub fn dense_f64(x: &[f64], w: &[f32], bias: Option<&[f32]>, cin: usize, cout: usize, out: &mut [f64]) {
    assert_eq!(w.len(), cin * cout, "dense_f64: weight length");
    let rows = x.len().checked_div(cin).unwrap_or(out.len() / cout.max(1));
    assert!(x.len() == rows * cin && out.len() == rows * cout, "dense_f64: input or output length");
    if let Some(b) = bias {
        assert_eq!(b.len(), cout, "dense_f64: bias length");
    }
    if rows == 0 || cout == 0 {
        return;
    }
    let threads = crate::threads();
    let macs = rows * cin * cout;
    if threads < 2 || macs < SERIAL_MACS {
        vectorised(|| columns(x, w, bias, cin, cout, 0..cout, out, cout));
        return;
    }
    // column bands, a multiple of COLS wide, one per thread at most
    let band = cout.div_ceil(threads).div_ceil(COLS) * COLS;
    let parts: Vec<(usize, Vec<f64>)> = (0..cout.div_ceil(band))
        .into_par_iter()
        .map(|t| {
            let (j0, j1) = (t * band, ((t + 1) * band).min(cout));
            let mut part = vec![0.0f64; rows * (j1 - j0)];
            vectorised(|| columns(x, w, bias, cin, cout, j0..j1, &mut part, j1 - j0));
            (j0, part)
        })
        .collect();
    for (j0, part) in parts {
        let width = part.len() / rows;
        for (o, p) in out.chunks_exact_mut(cout).zip(part.chunks_exact(width)) {
            o[j0..j0 + width].copy_from_slice(p);
        }
    }
}

/// Columns `js` of every row into `out` (row stride `ostride`, column `js.start` at 0).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn columns(
    x: &[f64],
    w: &[f32],
    bias: Option<&[f32]>,
    cin: usize,
    cout: usize,
    js: std::ops::Range<usize>,
    out: &mut [f64],
    ostride: usize,
) {
    let rows = x.len().checked_div(cin).unwrap_or(out.len() / ostride.max(1));
    let mut r0 = 0;
    while r0 < rows {
        let nr = (rows - r0).min(ROWS);
        let mut j0 = js.start;
        while j0 < js.end {
            let nc = (js.end - j0).min(COLS);
            if nr == ROWS && nc == COLS {
                tile::<ROWS, COLS>(x, w, bias, cin, cout, r0, j0, out, ostride, js.start);
            } else {
                tile_partial(x, w, bias, cin, cout, (r0, nr), (j0, nc), out, ostride, js.start);
            }
            j0 += nc;
        }
        r0 += nr;
    }
}

/// A full `R x C` tile, its sums in a fixed-size array the compiler keeps in registers.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn tile<const R: usize, const C: usize>(
    x: &[f64],
    w: &[f32],
    bias: Option<&[f32]>,
    cin: usize,
    cout: usize,
    r0: usize,
    j0: usize,
    out: &mut [f64],
    ostride: usize,
    oj: usize,
) {
    let mut acc = [[0.0f64; C]; R];
    if let Some(b) = bias {
        let b: &[f32; C] = b[j0..j0 + C].try_into().expect("tile width");
        for a in acc.iter_mut() {
            for (a, b) in a.iter_mut().zip(b) {
                *a = *b as f64;
            }
        }
    }
    for i in 0..cin {
        let wi: &[f32; C] = w[i * cout + j0..i * cout + j0 + C].try_into().expect("tile width");
        let wd: [f64; C] = std::array::from_fn(|j| wi[j] as f64);
        for (r, a) in acc.iter_mut().enumerate() {
            let s = x[(r0 + r) * cin + i];
            for (a, w) in a.iter_mut().zip(&wd) {
                *a += s * *w;
            }
        }
    }
    for (r, a) in acc.iter().enumerate() {
        let o = (r0 + r) * ostride + (j0 - oj);
        out[o..o + C].copy_from_slice(a);
    }
}

/// An edge tile (`nr` rows, `nc` columns), summed in place in `out`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn tile_partial(
    x: &[f64],
    w: &[f32],
    bias: Option<&[f32]>,
    cin: usize,
    cout: usize,
    (r0, nr): (usize, usize),
    (j0, nc): (usize, usize),
    out: &mut [f64],
    ostride: usize,
    oj: usize,
) {
    for r in r0..r0 + nr {
        let o = &mut out[r * ostride + (j0 - oj)..][..nc];
        match bias {
            Some(b) => o.iter_mut().zip(&b[j0..j0 + nc]).for_each(|(o, b)| *o = *b as f64),
            None => o.fill(0.0),
        }
        for i in 0..cin {
            let s = x[r * cin + i];
            o.iter_mut().zip(&w[i * cout + j0..][..nc]).for_each(|(o, w)| *o += s * *w as f64);
        }
    }
}

/// Plain-loop [`dense_f64`], the reference for tests.
pub fn dense_f64_reference(x: &[f64], w: &[f32], bias: Option<&[f32]>, cin: usize, cout: usize, out: &mut [f64]) {
    for (r, o) in out.chunks_exact_mut(cout).enumerate() {
        for (j, o) in o.iter_mut().enumerate() {
            let mut acc = bias.map_or(0.0, |b| b[j] as f64);
            for i in 0..cin {
                acc += x[r * cin + i] * w[i * cout + j] as f64;
            }
            *o = acc;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn matches_the_plain_loop_bit_for_bit() {
        // full tiles, edge rows and columns, serial and threaded sizes, no bias
        for &(rows, cin, cout, bias) in &[
            (1, 72, 24, true),
            (1, 960, 240, true),
            (3, 240, 960, true),
            (16, 672, 168, true),
            (5, 17, 37, false),
            (9, 1, 1, true),
            (2, 0, 8, true),
        ] {
            let x: Vec<f64> = data(rows * cin, 1).iter().map(|&v| v as f64 * 3.0).collect();
            let w = data(cin * cout, 2);
            let b = data(cout, 3);
            let b = bias.then_some(&b[..]);
            let mut want = vec![0.0; rows * cout];
            dense_f64_reference(&x, &w, b, cin, cout, &mut want);
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let mut got = vec![f64::NAN; rows * cout];
                pool.install(|| dense_f64(&x, &w, b, cin, cout, &mut got));
                let same = got.iter().zip(&want).all(|(g, w)| g.to_bits() == w.to_bits());
                assert!(same, "{rows}x{cin}->{cout} on {threads} threads: {:?} vs {:?}", &got[..2], &want[..2]);
            }
        }
        // a known value: [1, 2] . [[1, 2], [3, 4]] + [0.5, -0.5]
        let mut out = [0.0; 2];
        dense_f64(&[1.0, 2.0], &[1.0, 2.0, 3.0, 4.0], Some(&[0.5, -0.5]), 2, 2, &mut out);
        assert_eq!(out, [7.5, 9.5]);
    }
}
