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

/// The per-channel constants of one batch norm,
/// `y = act((x - mean) * inv_std * gamma + beta)` with `act` a relu or nothing.
///
/// The backward passes take `x` and these, not a saved `xhat`: recomputing
/// `xhat = (x - mean) * inv_std` (and the relu's mask from it) costs less than
/// writing `xhat` in the forward pass and reading it (and a mask) back, and
/// the bits are the same.
#[derive(Clone, Copy, Debug)]
pub struct Affine<'a> {
    pub mean: &'a [f32],
    pub inv_std: &'a [f32],
    pub gamma: &'a [f32],
    pub beta: &'a [f32],
    /// A relu follows (fused: no pass of its own, forward or backward).
    pub relu: bool,
}

impl Affine<'_> {
    fn channels(&self, len: usize, what: &str) -> usize {
        let c = self.mean.len();
        check(len, c, what);
        assert!(
            self.inv_std.len() == c && self.gamma.len() == c && self.beta.len() == c,
            "batch_norm {what}: parameter lengths"
        );
        c
    }
}

/// `xhat` and the gradient reaching the norm's output (`g`, masked where the
/// fused relu was off) at one element of channel `j`: the forward's arithmetic,
/// so the mask is bit-for-bit the forward's.
#[inline(always)]
fn xhat_grad<const RELU: bool>(a: &Affine<'_>, j: usize, x: f32, g: f32) -> (f32, f32) {
    let h = (x - a.mean[j]) * a.inv_std[j];
    let on = !RELU || h * a.gamma[j] + a.beta[j] > 0.0;
    (h, if on { g } else { 0.0 })
}

/// `y = act(xhat * gamma + beta)` with `xhat = (x - mean) * inv_std`, `[rows, c]`.
pub fn normalise(x: &[f32], a: &Affine<'_>) -> Vec<f32> {
    let c = a.channels(x.len(), "normalise");
    let band = band_rows(c) * c;
    let body = |x: &[f32], y: &mut [MaybeUninit<f32>]| {
        vectorised(|| {
            for (xr, yr) in x.chunks_exact(c).zip(y.chunks_exact_mut(c)) {
                for j in 0..c {
                    let o = (xr[j] - a.mean[j]) * a.inv_std[j] * a.gamma[j] + a.beta[j];
                    yr[j].write(if a.relu && (o <= 0.0 || o.is_nan()) { 0.0 } else { o });
                }
            }
        })
    };
    // SAFETY: the chunks cover the output and `body` writes every element.
    unsafe {
        crate::alloc::filled_vec(x.len(), |y| {
            y.par_chunks_mut(band).zip(x.par_chunks(band)).for_each(|(y, x)| body(x, y));
        })
    }
}

/// [`normalise`] in plain loops.
pub fn normalise_reference(x: &[f32], a: &Affine<'_>) -> Vec<f32> {
    let c = a.mean.len();
    let mut y = vec![0.0; x.len()];
    for (xr, yr) in x.chunks_exact(c).zip(y.chunks_exact_mut(c)) {
        for j in 0..c {
            let h = (xr[j] - a.mean[j]) * a.inv_std[j];
            yr[j] = h * a.gamma[j] + a.beta[j];
            if a.relu && yr[j] <= 0.0 {
                yr[j] = 0.0;
            }
        }
    }
    y
}

/// `(dgamma, dbeta) = (sum g' * xhat, sum g')` per channel over rows, in f64, where
/// `g'` is `g` (the gradient of the norm's output `y`) masked by the fused relu.
pub fn backward_sums(g: &[f32], x: &[f32], a: &Affine<'_>) -> (Vec<f64>, Vec<f64>) {
    let c = a.channels(g.len(), "backward");
    assert_eq!(g.len(), x.len(), "batch_norm backward: lengths differ");
    // one pass: both sums side by side in a `2c` accumulator
    let both = if a.relu { band_sums_pairs::<true>(g, x, a) } else { band_sums_pairs::<false>(g, x, a) };
    (both[..c].to_vec(), both[c..].to_vec())
}

fn band_sums_pairs<const RELU: bool>(g: &[f32], x: &[f32], a: &Affine<'_>) -> Vec<f64> {
    let c = a.mean.len();
    let band = band_rows(c) * c;
    let bands = g.len().div_ceil(band);
    let mut partials = vec![0.0f64; bands * 2 * c];
    partials.par_chunks_mut(2 * c).enumerate().for_each(|(t, acc)| {
        let end = ((t + 1) * band).min(g.len());
        let (gb, xb) = (&g[t * band..end], &x[t * band..end]);
        let (dgamma, dbeta) = acc.split_at_mut(c);
        vectorised(|| {
            for (gr, xr) in gb.chunks_exact(c).zip(xb.chunks_exact(c)) {
                for j in 0..c {
                    let (h, gj) = xhat_grad::<RELU>(a, j, xr[j], gr[j]);
                    dgamma[j] += (gj * h) as f64;
                    dbeta[j] += gj as f64;
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

/// `g` masked by the fused relu (unchanged without one), in plain loops.
fn masked_reference(g: &[f32], x: &[f32], a: &Affine<'_>) -> Vec<f32> {
    let y = normalise_reference(x, &Affine { relu: false, ..*a });
    g.iter().zip(&y).map(|(g, y)| if a.relu && *y <= 0.0 { 0.0 } else { *g }).collect()
}

/// `xhat` in plain loops.
fn xhat_reference(x: &[f32], a: &Affine<'_>) -> Vec<f32> {
    let c = a.mean.len();
    x.chunks_exact(c).flat_map(|r| r.iter().enumerate().map(|(j, v)| (v - a.mean[j]) * a.inv_std[j])).collect()
}

/// [`backward_sums`] in plain loops.
pub fn backward_sums_reference(g: &[f32], x: &[f32], a: &Affine<'_>) -> (Vec<f64>, Vec<f64>) {
    let c = a.mean.len();
    let (g, xhat) = (masked_reference(g, x, a), xhat_reference(x, a));
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

/// The input gradient: `gamma * inv_std * (g' - (dbeta + xhat * dgamma) / rows)` with the
/// batch's statistics (`training`), else `gamma * inv_std * g'` (`g'` as in [`backward_sums`]).
pub fn backward_input(g: &[f32], x: &[f32], a: &Affine<'_>, dgamma: &[f64], dbeta: &[f64], training: bool) -> Vec<f32> {
    let c = a.channels(g.len(), "backward");
    let rows = g.len() / c;
    assert_eq!(g.len(), x.len(), "batch_norm backward: lengths differ");
    let k: Vec<f32> = a.gamma.iter().zip(a.inv_std).map(|(a, b)| a * b).collect();
    let (dg, db): (Vec<f32>, Vec<f32>) = dgamma.iter().zip(dbeta).map(|(&a, &b)| (a as f32, b as f32)).unzip();
    let n = rows as f32;
    let band = band_rows(c) * c;
    let body = |g: &[f32], x: &[f32], d: &mut [MaybeUninit<f32>]| {
        fn rows<const RELU: bool>(
            (g, x, d): (&[f32], &[f32], &mut [MaybeUninit<f32>]),
            a: &Affine<'_>,
            (k, dg, db): (&[f32], &[f32], &[f32]),
            n: f32,
            training: bool,
        ) {
            let c = k.len();
            for ((dr, gr), xr) in d.chunks_exact_mut(c).zip(g.chunks_exact(c)).zip(x.chunks_exact(c)) {
                for j in 0..c {
                    let (h, gj) = xhat_grad::<RELU>(a, j, xr[j], gr[j]);
                    dr[j].write(if training { k[j] * (gj - (db[j] + h * dg[j]) / n) } else { k[j] * gj });
                }
            }
        }
        vectorised(|| {
            if a.relu {
                rows::<true>((g, x, d), a, (&k, &dg, &db), n, training)
            } else {
                rows::<false>((g, x, d), a, (&k, &dg, &db), n, training)
            }
        })
    };
    // SAFETY: the chunks cover the output and `body` writes every element.
    unsafe {
        crate::alloc::filled_vec(g.len(), |d| {
            d.par_chunks_mut(band).zip(g.par_chunks(band).zip(x.par_chunks(band))).for_each(|(d, (g, x))| body(g, x, d))
        })
    }
}

/// [`backward_input`] in plain loops.
pub fn backward_input_reference(
    g: &[f32],
    x: &[f32],
    a: &Affine<'_>,
    dgamma: &[f64],
    dbeta: &[f64],
    training: bool,
) -> Vec<f32> {
    let c = a.mean.len();
    let n = (g.len() / c) as f32;
    let (g, xhat) = (masked_reference(g, x, a), xhat_reference(x, a));
    let mut dx = vec![0.0; g.len()];
    for ((d, gr), xr) in dx.chunks_exact_mut(c).zip(g.chunks_exact(c)).zip(xhat.chunks_exact(c)) {
        for j in 0..c {
            let k = a.gamma[j] * a.inv_std[j];
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
                for relu in [false, true] {
                    let a = Affine { mean: &m, inv_std: &inv, gamma: &gamma, beta: &beta, relu };
                    let y = normalise(&x, &a);
                    assert_eq!(y, normalise_reference(&x, &a), "y c={c} rows={rows} relu={relu}");
                    let (dg, db) = backward_sums(&g, &x, &a);
                    let (dgr, dbr) = backward_sums_reference(&g, &x, &a);
                    for (p, q) in dg.iter().zip(&dgr).chain(db.iter().zip(&dbr)) {
                        assert!((p - q).abs() <= 1e-9 * q.abs().max(1.0), "sums c={c} rows={rows}: {p} vs {q}");
                    }
                    for training in [true, false] {
                        let d = backward_input(&g, &x, &a, &dgr, &dbr, training);
                        let dr = backward_input_reference(&g, &x, &a, &dgr, &dbr, training);
                        assert_eq!(d, dr, "dx c={c} rows={rows} relu={relu} training={training}");
                    }
                    if relu {
                        // the fused mask is the forward output's: y > 0
                        let pre = normalise(&x, &Affine { relu: false, ..a });
                        assert_eq!(y, pre.iter().map(|v| v.max(0.0)).collect::<Vec<_>>(), "relu c={c} rows={rows}");
                        let masked: Vec<f32> = g.iter().zip(&y).map(|(g, y)| if *y > 0.0 { *g } else { 0.0 }).collect();
                        let plain = Affine { relu: false, ..a };
                        assert_eq!(backward_sums(&masked, &x, &plain), (dg, db), "premasked c={c} rows={rows}");
                        assert_eq!(
                            backward_input(&masked, &x, &plain, &dgr, &dbr, true),
                            backward_input(&g, &x, &a, &dgr, &dbr, true),
                            "premasked dx c={c} rows={rows}"
                        );
                    }
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
        let p = vec![0.5; c];
        let a = Affine { mean: &p, inv_std: &p, gamma: &p, beta: &p, relu: true };
        assert_eq!(one.install(|| backward_sums(&g, &x, &a)), three.install(|| backward_sums(&g, &x, &a)));
    }
}
