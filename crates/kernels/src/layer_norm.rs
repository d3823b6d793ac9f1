//! Layer normalisation over the last axis of `[rows, c]` data (Ba et al. 2016): each row
//! normalised by its own mean and biased variance, as PyTorch's `F.layer_norm` over the
//! channel axis of NHWC activations (ConvNeXt's `LayerNorm2d`, the transformers'
//! `LayerNorm`), optionally scaled and shifted per channel.
//!
//! Row statistics are summed in f64 (two passes: mean, then squared deviations); rows
//! are independent, so the forward and the input gradient run in parallel bands of rows.
//! The per-channel parameter gradients are band partials added in band order, so results
//! are bit-identical from run to run and for any number of threads. Plain-loop
//! references (`*_reference`) back the tests.

use crate::elementwise::vectorised;
use rayon::prelude::*;

/// Values per band of rows (and per parallel task): 64 KiB of `f32`.
const BAND_FLOATS: usize = 1 << 14;

fn band_rows(c: usize) -> usize {
    (BAND_FLOATS / c.max(1)).max(1)
}

fn check(len: usize, c: usize, affine: (Option<&[f32]>, Option<&[f32]>), what: &str) -> usize {
    assert!(c > 0 && len.is_multiple_of(c), "layer_norm {what}: {len} values are not rows of {c} channels");
    assert!(affine.0.is_none_or(|w| w.len() == c), "layer_norm {what}: weight length");
    assert!(affine.1.is_none_or(|b| b.len() == c), "layer_norm {what}: bias length");
    len / c
}

/// Mean and `1 / sqrt(var + eps)` of one row, in f64.
fn row_stats(r: &[f32], eps: f32) -> (f32, f32) {
    let n = r.len() as f64;
    let mean = r.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = r
        .iter()
        .map(|&v| {
            let d = f64::from(v) - mean;
            d * d
        })
        .sum::<f64>()
        / n;
    (mean as f32, (1.0 / (var + f64::from(eps)).sqrt()) as f32)
}

/// `y = (x - mean) * rstd * weight + bias` per row of `x: [rows, c]`; returns `y` and
/// each row's `(mean, rstd)` (what the backward needs besides `x`).
pub fn forward(
    x: &[f32],
    c: usize,
    weight: Option<&[f32]>,
    bias: Option<&[f32]>,
    eps: f32,
) -> (Vec<f32>, Vec<(f32, f32)>) {
    let rows = check(x.len(), c, (weight, bias), "forward");
    let mut y = vec![0.0f32; x.len()];
    let mut stats = vec![(0.0f32, 0.0f32); rows];
    let band = band_rows(c);
    let body = |xb: &[f32], yb: &mut [f32], sb: &mut [(f32, f32)]| {
        vectorised(|| {
            for ((xr, yr), s) in xb.chunks_exact(c).zip(yb.chunks_exact_mut(c)).zip(sb.iter_mut()) {
                let (mean, rstd) = row_stats(xr, eps);
                *s = (mean, rstd);
                for j in 0..c {
                    let h = (xr[j] - mean) * rstd;
                    let h = match weight {
                        Some(w) => h * w[j],
                        None => h,
                    };
                    yr[j] = match bias {
                        Some(b) => h + b[j],
                        None => h,
                    };
                }
            }
        })
    };
    if rows > band {
        x.par_chunks(band * c)
            .zip(y.par_chunks_mut(band * c).zip(stats.par_chunks_mut(band)))
            .for_each(|(xb, (yb, sb))| body(xb, yb, sb));
    } else {
        body(x, &mut y, &mut stats);
    }
    (y, stats)
}

/// [`forward`] in plain loops.
pub fn forward_reference(
    x: &[f32],
    c: usize,
    weight: Option<&[f32]>,
    bias: Option<&[f32]>,
    eps: f32,
) -> (Vec<f32>, Vec<(f32, f32)>) {
    check(x.len(), c, (weight, bias), "forward");
    let mut y = Vec::with_capacity(x.len());
    let mut stats = Vec::new();
    for r in x.chunks_exact(c) {
        let (mean, rstd) = row_stats(r, eps);
        stats.push((mean, rstd));
        for j in 0..c {
            let h = (r[j] - mean) * rstd;
            y.push(h * weight.map_or(1.0, |w| w[j]) + bias.map_or(0.0, |b| b[j]));
        }
    }
    (y, stats)
}

/// Gradients of [`forward`] given the output gradient `g`: `(dx, dweight, dbias)`, the
/// parameter gradients summed over rows in f64 (empty when there is no weight).
///
/// Per row, with `xhat = (x - mean) * rstd` and `gh = g * weight`:
/// `dx = rstd * (gh - mean(gh) - xhat * mean(gh * xhat))`.
pub fn backward(
    x: &[f32],
    g: &[f32],
    c: usize,
    stats: &[(f32, f32)],
    weight: Option<&[f32]>,
) -> (Vec<f32>, Vec<f64>, Vec<f64>) {
    let rows = check(x.len(), c, (weight, None), "backward");
    assert!(g.len() == x.len() && stats.len() == rows, "layer_norm backward: lengths differ");
    let band = band_rows(c);
    let bands = rows.div_ceil(band).max(1);
    let mut dx = vec![0.0f32; x.len()];
    // per band: dweight (c values) then dbias (c values)
    let mut partials = vec![0.0f64; bands * 2 * c];
    let body = |xb: &[f32], gb: &[f32], sb: &[(f32, f32)], db: &mut [f32], acc: &mut [f64]| {
        let (dw, dbias) = acc.split_at_mut(c);
        vectorised(|| {
            for (((xr, gr), &(mean, rstd)), dr) in
                xb.chunks_exact(c).zip(gb.chunks_exact(c)).zip(sb).zip(db.chunks_exact_mut(c))
            {
                let (mut sg, mut sgh) = (0.0f64, 0.0f64);
                for j in 0..c {
                    let h = (xr[j] - mean) * rstd;
                    let gh = gr[j] * weight.map_or(1.0, |w| w[j]);
                    sg += f64::from(gh);
                    sgh += f64::from(gh * h);
                    dw[j] += f64::from(gr[j] * h);
                    dbias[j] += f64::from(gr[j]);
                }
                let (mg, mgh) = ((sg / c as f64) as f32, (sgh / c as f64) as f32);
                for j in 0..c {
                    let h = (xr[j] - mean) * rstd;
                    let gh = gr[j] * weight.map_or(1.0, |w| w[j]);
                    dr[j] = rstd * (gh - mg - h * mgh);
                }
            }
        })
    };
    let chunks = x
        .par_chunks(band * c)
        .zip(g.par_chunks(band * c))
        .zip(stats.par_chunks(band))
        .zip(dx.par_chunks_mut(band * c).zip(partials.par_chunks_mut(2 * c)));
    if bands > 1 {
        chunks.for_each(|(((xb, gb), sb), (db, acc))| body(xb, gb, sb, db, acc));
    } else {
        body(x, g, stats, &mut dx, &mut partials);
    }
    let mut total = vec![0.0f64; 2 * c];
    for p in partials.chunks_exact(2 * c) {
        for (t, v) in total.iter_mut().zip(p) {
            *t += v;
        }
    }
    let dbias = total.split_off(c);
    (dx, if weight.is_some() { total } else { Vec::new() }, dbias)
}

/// [`backward`] in plain loops, f64 throughout.
pub fn backward_reference(
    x: &[f32],
    g: &[f32],
    c: usize,
    stats: &[(f32, f32)],
    weight: Option<&[f32]>,
) -> (Vec<f32>, Vec<f64>, Vec<f64>) {
    let mut dx = vec![0.0f32; x.len()];
    let mut dw = vec![0.0f64; c];
    let mut db = vec![0.0f64; c];
    for (((xr, gr), &(mean, rstd)), dr) in
        x.chunks_exact(c).zip(g.chunks_exact(c)).zip(stats).zip(dx.chunks_exact_mut(c))
    {
        let h: Vec<f64> = xr.iter().map(|&v| f64::from((v - mean) * rstd)).collect();
        let gh: Vec<f64> = (0..c).map(|j| f64::from(gr[j]) * weight.map_or(1.0, |w| f64::from(w[j]))).collect();
        let mg = gh.iter().sum::<f64>() / c as f64;
        let mgh = gh.iter().zip(&h).map(|(a, b)| a * b).sum::<f64>() / c as f64;
        for j in 0..c {
            dr[j] = (f64::from(rstd) * (gh[j] - mg - h[j] * mgh)) as f32;
            dw[j] += f64::from(gr[j]) * h[j];
            db[j] += f64::from(gr[j]);
        }
    }
    (dx, if weight.is_some() { dw } else { Vec::new() }, db)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, salt: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 7919 + salt * 104_729) % 2003) as f32 / 401.0 - 2.3).collect()
    }

    fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tol * y.abs().max(1.0), "{what}[{i}]: {x} vs {y}");
        }
    }

    #[test]
    fn fast_paths_match_the_references_on_ragged_shapes() {
        for c in [1, 2, 3, 7, 16, 17, 63, 64, 67, 384] {
            for rows in [1, 5, 67, band_rows(c) + 3, 3 * band_rows(c) - 1] {
                let x = data(rows * c, c);
                let g = data(rows * c, c + 1);
                let w = data(c, 3);
                let b = data(c, 4);
                for (wo, bo) in [(Some(&w[..]), Some(&b[..])), (None, None)] {
                    let (y, s) = forward(&x, c, wo, bo, 1e-6);
                    let (yr, sr) = forward_reference(&x, c, wo, bo, 1e-6);
                    assert_eq!(s, sr, "stats c={c} rows={rows}");
                    close(&y, &yr, 1e-6, "y");
                    let (dx, dw, db) = backward(&x, &g, c, &s, wo);
                    let (dxr, dwr, dbr) = backward_reference(&x, &g, c, &s, wo);
                    close(&dx, &dxr, 1e-4, "dx");
                    for (a, b) in dw.iter().zip(&dwr).chain(db.iter().zip(&dbr)) {
                        assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "sums c={c} rows={rows}: {a} vs {b}");
                    }
                    assert_eq!((dw.len(), db.len()), (dwr.len(), dbr.len()));
                }
            }
        }
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let (c, rows) = (24, 5 * band_rows(24) + 11);
        let x = data(rows * c, 9);
        let g = data(rows * c, 10);
        let w = data(c, 1);
        let run = || {
            let (y, s) = forward(&x, c, Some(&w), None, 1e-5);
            (y, backward(&x, &g, c, &s, Some(&w)))
        };
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let three = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        assert_eq!(one.install(run), three.install(run));
    }
}
