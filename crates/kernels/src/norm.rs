//! Batch normalisation over the channel axis of `[rows, c]` data (NHWC activations
//! flattened to rows of `c` channels), Ioffe & Szegedy 2015: the training statistics,
//! the normalisation and the two backward passes, as PyTorch's `batch_norm` computes
//! them (biased variance for normalising).
//!
//! Each pass has a plain-loop reference (`*_reference`: rows in order, f64 accumulators,
//! one thread) and a fast path: rows cut into bands of [`BAND_FLOATS`] values (a function
//! of the shape only), band sums in f64 added in band order, elementwise passes in
//! parallel, the loops compiled for the widest vector unit the CPU has
//! ([`crate::elementwise::vectorised`]). Results are bit-identical from run to run and for
//! any number of threads; they differ from the reference's by the f64 rounding of the
//! regrouped sums (far below f32's resolution, so usually not at all).

use crate::elementwise::vectorised;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Values per band of rows (and per parallel task): 64 KiB of `f32`.
const BAND_FLOATS: usize = 1 << 14;

fn band_rows(c: usize) -> usize {
    (BAND_FLOATS / c.max(1)).max(1)
}

fn check(len: usize, c: usize, what: &str) -> usize {
    assert!(c > 0 && len.is_multiple_of(c), "batch_norm {what}: {len} values are not rows of {c} channels");
    len / c
}

/// Per-channel sums over rows in bands: `f(acc, row_a, row_b)` adds one row's terms into
/// `acc` (`c` f64 values). Band partials are added in band order.
fn band_sums(a: &[f32], b: &[f32], c: usize, f: impl Fn(&mut [f64], &[f32], &[f32]) + Sync) -> Vec<f64> {
    let band = band_rows(c) * c;
    let bands = a.len().div_ceil(band);
    let mut partials = vec![0.0f64; bands * c];
    let body = |(t, acc): (usize, &mut [f64])| {
        let end = ((t + 1) * band).min(a.len());
        let (ab, bb) = (&a[t * band..end], if b.is_empty() { &[][..] } else { &b[t * band..end] });
        vectorised(|| {
            for (i, ra) in ab.chunks_exact(c).enumerate() {
                let rb = if bb.is_empty() { ra } else { &bb[i * c..(i + 1) * c] };
                f(acc, ra, rb);
            }
        })
    };
    if bands > 1 {
        partials.par_chunks_mut(c).enumerate().for_each(body);
    } else {
        partials.chunks_mut(c).enumerate().for_each(body);
    }
    let mut total = vec![0.0f64; c];
    for p in partials.chunks_exact(c) {
        for (t, v) in total.iter_mut().zip(p) {
            *t += v;
        }
    }
    total
}

/// The batch's per-channel mean and biased variance (f64 sums, rounded to f32):
/// `x: [rows, c]` with `rows > 0`.
pub fn batch_stats(x: &[f32], c: usize) -> (Vec<f32>, Vec<f32>) {
    let rows = check(x.len(), c, "statistics");
    assert!(rows > 0, "batch_norm statistics: no rows");
    let sum = band_sums(x, &[], c, |acc, r, _| {
        for (a, v) in acc.iter_mut().zip(r) {
            *a += f64::from(*v);
        }
    });
    let mean: Vec<f64> = sum.iter().map(|s| s / rows as f64).collect();
    let sq = band_sums(x, &[], c, |acc, r, _| {
        for ((a, v), m) in acc.iter_mut().zip(r).zip(&mean) {
            let d = f64::from(*v) - m;
            *a += d * d;
        }
    });
    (mean.iter().map(|&m| m as f32).collect(), sq.iter().map(|&s| (s / rows as f64) as f32).collect())
}

/// [`batch_stats`] in plain loops.
pub fn batch_stats_reference(x: &[f32], c: usize) -> (Vec<f32>, Vec<f32>) {
    let rows = check(x.len(), c, "statistics");
    assert!(rows > 0, "batch_norm statistics: no rows");
    let mut mean = vec![0.0f64; c];
    for r in x.chunks_exact(c) {
        for j in 0..c {
            mean[j] += r[j] as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= rows as f64);
    let mut var = vec![0.0f64; c];
    for r in x.chunks_exact(c) {
        for j in 0..c {
            let d = r[j] as f64 - mean[j];
            var[j] += d * d;
        }
    }
    (mean.iter().map(|&m| m as f32).collect(), var.iter().map(|&v| (v / rows as f64) as f32).collect())
}

/// `xhat = (x - mean) * inv_std` and `y = xhat * gamma + beta`, both `[rows, c]`.
pub fn normalise(x: &[f32], mean: &[f32], inv_std: &[f32], gamma: &[f32], beta: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let c = mean.len();
    check(x.len(), c, "normalise");
    assert!(inv_std.len() == c && gamma.len() == c && beta.len() == c, "batch_norm normalise: parameter lengths");
    let band = band_rows(c) * c;
    let body = |x: &[f32], h: &mut [MaybeUninit<f32>], y: &mut [MaybeUninit<f32>]| {
        vectorised(|| {
            for ((xr, hr), yr) in x.chunks_exact(c).zip(h.chunks_exact_mut(c)).zip(y.chunks_exact_mut(c)) {
                for j in 0..c {
                    let v = (xr[j] - mean[j]) * inv_std[j];
                    hr[j].write(v);
                    yr[j].write(v * gamma[j] + beta[j]);
                }
            }
        })
    };
    let mut y = Vec::new();
    // SAFETY: the chunks cover both outputs and `body` writes every element of each.
    let xhat = unsafe {
        crate::alloc::filled_vec(x.len(), |h| {
            y = crate::alloc::filled_vec(x.len(), |yo| {
                h.par_chunks_mut(band)
                    .zip(yo.par_chunks_mut(band))
                    .zip(x.par_chunks(band))
                    .for_each(|((h, yo), x)| body(x, h, yo));
            });
        })
    };
    (xhat, y)
}

/// [`normalise`] in plain loops.
pub fn normalise_reference(
    x: &[f32],
    mean: &[f32],
    inv_std: &[f32],
    gamma: &[f32],
    beta: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let c = mean.len();
    let mut xhat = vec![0.0; x.len()];
    let mut y = vec![0.0; x.len()];
    for ((xr, hr), yr) in x.chunks_exact(c).zip(xhat.chunks_exact_mut(c)).zip(y.chunks_exact_mut(c)) {
        for j in 0..c {
            hr[j] = (xr[j] - mean[j]) * inv_std[j];
            yr[j] = hr[j] * gamma[j] + beta[j];
        }
    }
    (xhat, y)
}

/// `(dgamma, dbeta) = (sum g * xhat, sum g)` per channel over rows, in f64.
pub fn backward_sums(g: &[f32], xhat: &[f32], c: usize) -> (Vec<f64>, Vec<f64>) {
    check(g.len(), c, "backward");
    assert_eq!(g.len(), xhat.len(), "batch_norm backward: lengths differ");
    // one pass: both sums side by side in a `2c` accumulator
    let both = band_sums_pairs(g, xhat, c);
    (both[..c].to_vec(), both[c..].to_vec())
}

fn band_sums_pairs(g: &[f32], xhat: &[f32], c: usize) -> Vec<f64> {
    let band = band_rows(c) * c;
    let bands = g.len().div_ceil(band);
    let mut partials = vec![0.0f64; bands * 2 * c];
    partials.par_chunks_mut(2 * c).enumerate().for_each(|(t, acc)| {
        let end = ((t + 1) * band).min(g.len());
        let (gb, hb) = (&g[t * band..end], &xhat[t * band..end]);
        let (dgamma, dbeta) = acc.split_at_mut(c);
        vectorised(|| {
            for (gr, hr) in gb.chunks_exact(c).zip(hb.chunks_exact(c)) {
                for j in 0..c {
                    dgamma[j] += (gr[j] * hr[j]) as f64;
                    dbeta[j] += gr[j] as f64;
                }
            }
        })
    });
    let mut total = vec![0.0f64; 2 * c];
    for p in partials.chunks_exact(2 * c) {
        for (t, v) in total.iter_mut().zip(p) {
            *t += v;
        }
    }
    total
}

/// [`backward_sums`] in plain loops.
pub fn backward_sums_reference(g: &[f32], xhat: &[f32], c: usize) -> (Vec<f64>, Vec<f64>) {
    let mut dgamma = vec![0.0f64; c];
    let mut dbeta = vec![0.0f64; c];
    for (gr, xr) in g.chunks_exact(c).zip(xhat.chunks_exact(c)) {
        for j in 0..c {
            dgamma[j] += (gr[j] * xr[j]) as f64;
            dbeta[j] += gr[j] as f64;
        }
    }
    (dgamma, dbeta)
}

/// The input gradient: `gamma * inv_std * (g - (dbeta + xhat * dgamma) / rows)` with the
/// batch's statistics (`training`), else `gamma * inv_std * g`.
pub fn backward_input(
    g: &[f32],
    xhat: &[f32],
    gamma: &[f32],
    inv_std: &[f32],
    dgamma: &[f64],
    dbeta: &[f64],
    training: bool,
) -> Vec<f32> {
    let c = gamma.len();
    let rows = check(g.len(), c, "backward");
    assert_eq!(g.len(), xhat.len(), "batch_norm backward: lengths differ");
    let k: Vec<f32> = gamma.iter().zip(inv_std).map(|(a, b)| a * b).collect();
    let (dg, db): (Vec<f32>, Vec<f32>) = dgamma.iter().zip(dbeta).map(|(&a, &b)| (a as f32, b as f32)).unzip();
    let n = rows as f32;
    let band = band_rows(c) * c;
    let body = |g: &[f32], h: &[f32], d: &mut [MaybeUninit<f32>]| {
        vectorised(|| {
            for ((dr, gr), hr) in d.chunks_exact_mut(c).zip(g.chunks_exact(c)).zip(h.chunks_exact(c)) {
                for j in 0..c {
                    dr[j].write(if training { k[j] * (gr[j] - (db[j] + hr[j] * dg[j]) / n) } else { k[j] * gr[j] });
                }
            }
        })
    };
    // SAFETY: the chunks cover the output and `body` writes every element.
    unsafe {
        crate::alloc::filled_vec(g.len(), |d| {
            d.par_chunks_mut(band)
                .zip(g.par_chunks(band).zip(xhat.par_chunks(band)))
                .for_each(|(d, (g, h))| body(g, h, d))
        })
    }
}

/// [`backward_input`] in plain loops.
pub fn backward_input_reference(
    g: &[f32],
    xhat: &[f32],
    gamma: &[f32],
    inv_std: &[f32],
    dgamma: &[f64],
    dbeta: &[f64],
    training: bool,
) -> Vec<f32> {
    let c = gamma.len();
    let n = (g.len() / c) as f32;
    let mut dx = vec![0.0; g.len()];
    for ((d, gr), xr) in dx.chunks_exact_mut(c).zip(g.chunks_exact(c)).zip(xhat.chunks_exact(c)) {
        for j in 0..c {
            let k = gamma[j] * inv_std[j];
            d[j] = if training { k * (gr[j] - (dbeta[j] as f32 + xr[j] * dgamma[j] as f32) / n) } else { k * gr[j] };
        }
    }
    dx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, salt: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 7919 + salt * 104_729) % 2003) as f32 / 401.0 - 2.3).collect()
    }

    /// `|a - b| <= tol * max(1, |b|)` elementwise.
    fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tol * y.abs().max(1.0), "{what}[{i}]: {x} vs {y}");
        }
    }

    #[test]
    fn fast_paths_match_the_references_on_ragged_shapes() {
        // channels 1..=67 (odd ones included), rows from one to several bands
        for c in [1, 2, 3, 7, 16, 17, 24, 63, 64, 67] {
            for rows in [1, 5, 67, band_rows(c) + 3, 3 * band_rows(c) - 1] {
                let x = data(rows * c, c);
                let g = data(rows * c, c + 1);
                let (m, v) = batch_stats(&x, c);
                let (mr, vr) = batch_stats_reference(&x, c);
                close(&m, &mr, 1e-6, "mean");
                close(&v, &vr, 1e-6, "var");
                let inv: Vec<f32> = v.iter().map(|v| 1.0 / (v + 1e-5).sqrt()).collect();
                let gamma = data(c, 3);
                let beta = data(c, 4);
                let (h, y) = normalise(&x, &m, &inv, &gamma, &beta);
                let (hr, yr) = normalise_reference(&x, &m, &inv, &gamma, &beta);
                assert_eq!(h, hr, "xhat c={c} rows={rows}");
                assert_eq!(y, yr, "y c={c} rows={rows}");
                let (dg, db) = backward_sums(&g, &h, c);
                let (dgr, dbr) = backward_sums_reference(&g, &h, c);
                for (a, b) in dg.iter().zip(&dgr).chain(db.iter().zip(&dbr)) {
                    assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "sums c={c} rows={rows}: {a} vs {b}");
                }
                for training in [true, false] {
                    let d = backward_input(&g, &h, &gamma, &inv, &dgr, &dbr, training);
                    let dr = backward_input_reference(&g, &h, &gamma, &inv, &dgr, &dbr, training);
                    assert_eq!(d, dr, "dx c={c} rows={rows} training={training}");
                }
            }
        }
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let (c, rows) = (24, 5 * band_rows(24) + 11);
        let x = data(rows * c, 9);
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let three = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        assert_eq!(one.install(|| batch_stats(&x, c)), three.install(|| batch_stats(&x, c)));
        let g = data(rows * c, 10);
        assert_eq!(one.install(|| backward_sums(&g, &x, c)), three.install(|| backward_sums(&g, &x, c)));
    }
}
