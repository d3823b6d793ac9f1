//! Mel filterbanks as `librosa.filters.mel` builds them (librosa 0.11): triangles between
//! `n_mels + 2` points equally spaced on the mel scale from `fmin` to `fmax`, evaluated at the
//! FFT bin frequencies `k * sr / n_fft`, computed in f64 and stored as f32. The default is the
//! Slaney mel scale (linear below 1 kHz, logarithmic above, as in Slaney's Auditory Toolbox)
//! with Slaney's area normalisation (`2 / (f[i+2] - f[i])`); HTK's `2595 log10(1 + f/700)`
//! and no normalisation are options.
//!
//! [`SparseFilterbank`] keeps only each filter's non-zero band, so applying it costs about two
//! multiply-adds per FFT bin instead of `n_mels`.

use serde::{Deserialize, Serialize};

use crate::error::{AudioError, Result};
use crate::fast::{Avx2, sparse_block};

/// Which mel scale maps Hz to mels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum MelScale {
    /// Slaney's Auditory Toolbox scale (librosa's default, `htk=False`).
    #[default]
    Slaney,
    /// HTK's `2595 log10(1 + f / 700)` (`htk=True`).
    Htk,
}

/// How each triangle is scaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum MelNorm {
    /// Divide by the triangle's width in Hz, `2 / (f[i+2] - f[i])` (librosa's `norm="slaney"`).
    #[default]
    Slaney,
    /// Peak 1, no normalisation (`norm=None`).
    None,
}

/// Slaney scale: below this many Hz the scale is linear.
const MIN_LOG_HZ: f64 = 1000.0;
/// Slaney scale: Hz per mel in the linear part.
const F_SP: f64 = 200.0 / 3.0;

/// `librosa.hz_to_mel(f, htk)`.
pub fn hz_to_mel(f: f64, scale: MelScale) -> f64 {
    match scale {
        MelScale::Htk => 2595.0 * (1.0 + f / 700.0).log10(),
        MelScale::Slaney => {
            let min_log_mel = MIN_LOG_HZ / F_SP;
            let logstep = 6.4f64.ln() / 27.0;
            if f >= MIN_LOG_HZ { min_log_mel + (f / MIN_LOG_HZ).ln() / logstep } else { f / F_SP }
        }
    }
}

/// `librosa.mel_to_hz(m, htk)`.
pub fn mel_to_hz(m: f64, scale: MelScale) -> f64 {
    match scale {
        MelScale::Htk => 700.0 * (10f64.powf(m / 2595.0) - 1.0),
        MelScale::Slaney => {
            let min_log_mel = MIN_LOG_HZ / F_SP;
            let logstep = 6.4f64.ln() / 27.0;
            if m >= min_log_mel { MIN_LOG_HZ * (logstep * (m - min_log_mel)).exp() } else { F_SP * m }
        }
    }
}

/// `librosa.mel_frequencies(n, fmin, fmax, htk)`: `n` frequencies in Hz equally spaced in mels.
pub fn mel_frequencies(n: usize, fmin: f64, fmax: f64, scale: MelScale) -> Vec<f64> {
    let (lo, hi) = (hz_to_mel(fmin, scale), hz_to_mel(fmax, scale));
    (0..n)
        .map(|i| {
            // numpy.linspace: lo + i * step, with the last point exactly hi.
            let m = if n > 1 && i == n - 1 { hi } else { lo + i as f64 * (hi - lo) / (n.max(2) - 1) as f64 };
            mel_to_hz(m, scale)
        })
        .collect()
}

/// `librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax, htk, norm)`: `[n_mels, 1 + n_fft / 2]`
/// row-major. `fmax = None` means `sr / 2`.
///
/// Errors: [`AudioError::InvalidConfig`] for `n_mels == 0`, `n_fft < 2`, `sr == 0`, or not
/// `0 <= fmin < fmax`.
pub fn mel_filterbank(
    sr: u32,
    n_fft: usize,
    n_mels: usize,
    fmin: f64,
    fmax: Option<f64>,
    scale: MelScale,
    norm: MelNorm,
) -> Result<Vec<f32>> {
    let fmax = fmax.unwrap_or(f64::from(sr) / 2.0);
    if sr == 0 || n_fft < 2 || n_mels == 0 {
        return Err(AudioError::config(format!(
            "mel filterbank needs sr > 0, n_fft >= 2, n_mels > 0; got sr={sr}, n_fft={n_fft}, n_mels={n_mels}"
        )));
    }
    if !(0.0 <= fmin && fmin < fmax && fmax.is_finite()) {
        return Err(AudioError::config(format!("mel filterbank needs 0 <= fmin < fmax; got fmin={fmin}, fmax={fmax}")));
    }
    let n_bins = n_fft / 2 + 1;
    let fftfreqs: Vec<f64> = (0..n_bins).map(|k| k as f64 * f64::from(sr) / n_fft as f64).collect();
    let mel_f = mel_frequencies(n_mels + 2, fmin, fmax, scale);
    let mut weights = vec![0.0f32; n_mels * n_bins];
    for i in 0..n_mels {
        let (d0, d1) = (mel_f[i + 1] - mel_f[i], mel_f[i + 2] - mel_f[i + 1]);
        let enorm = match norm {
            MelNorm::Slaney => 2.0 / (mel_f[i + 2] - mel_f[i]),
            MelNorm::None => 1.0,
        };
        for (k, &f) in fftfreqs.iter().enumerate() {
            let lower = -(mel_f[i] - f) / d0;
            let upper = (mel_f[i + 2] - f) / d1;
            let w = lower.min(upper).max(0.0);
            // librosa stores the triangle as f32, then scales it by the f64 norm in place.
            weights[i * n_bins + k] = (f64::from(w as f32) * enorm) as f32;
        }
    }
    Ok(weights)
}

/// Frames processed together by [`SparseFilterbank::apply_block`].
pub(crate) const BLOCK: usize = 8;

/// A filterbank stored as one contiguous band of non-zero weights per filter.
#[derive(Debug, Clone, PartialEq)]
pub struct SparseFilterbank {
    /// First bin of each filter's band.
    starts: Vec<usize>,
    /// Offsets of each filter's weights in `weights` (`n_filters + 1` entries).
    offsets: Vec<usize>,
    /// All bands' weights back to back.
    weights: Vec<f32>,
    /// `(first bin, length)` of each band, for the block kernel (whose per-filter setup was
    /// as costly as its multiply-adds when it went through `starts` and `offsets`).
    bands: Vec<(usize, usize)>,
    n_bins: usize,
}

impl SparseFilterbank {
    /// Compresses a dense `[n_filters, n_bins]` matrix (zeros outside each row's first..last
    /// non-zero entry are dropped; zeros inside are kept).
    ///
    /// Panics if `dense.len()` is not a multiple of `n_bins`.
    pub fn from_dense(dense: &[f32], n_bins: usize) -> Self {
        assert!(n_bins > 0 && dense.len().is_multiple_of(n_bins), "dense is not [_, {n_bins}]");
        let mut starts = Vec::new();
        let mut offsets = vec![0];
        let mut weights = Vec::new();
        for row in dense.chunks_exact(n_bins) {
            let first = row.iter().position(|&w| w != 0.0);
            let last = row.iter().rposition(|&w| w != 0.0);
            match (first, last) {
                (Some(a), Some(b)) => {
                    starts.push(a);
                    weights.extend_from_slice(&row[a..=b]);
                }
                _ => starts.push(0),
            }
            offsets.push(weights.len());
        }
        let bands = starts.iter().zip(offsets.windows(2)).map(|(&s, o)| (s, o[1] - o[0])).collect();
        SparseFilterbank { starts, offsets, weights, bands, n_bins }
    }

    /// Number of filters (output channels).
    pub fn n_filters(&self) -> usize {
        self.starts.len()
    }

    /// Number of input bins.
    pub fn n_bins(&self) -> usize {
        self.n_bins
    }

    /// Stored (non-zero band) weights in total.
    pub fn nnz(&self) -> usize {
        self.weights.len()
    }

    /// `out[m] = sum_k W[m, k] * spectrum[k]`: `spectrum: [n_bins] -> out: [n_filters]`.
    ///
    /// Panics if the lengths differ from the filterbank's.
    pub fn apply(&self, spectrum: &[f32], out: &mut [f32]) {
        assert_eq!(spectrum.len(), self.n_bins, "spectrum length");
        assert_eq!(out.len(), self.n_filters(), "output length");
        for (m, o) in out.iter_mut().enumerate() {
            *o = self.apply_one(m, spectrum);
        }
    }

    /// The filterbank applied to [`BLOCK`] frames at once: `spectra[k * BLOCK + j]` is bin `k` of
    /// frame `j`, `out[m * BLOCK + j]` receives filter `m` of frame `j`. Each weight is applied to
    /// all frames of the block in one short vector operation (no reductions), which is what
    /// makes the fused MFCC path fast; `simd` picks the AVX2 kernel (see `fast.rs`).
    #[inline(always)]
    pub(crate) fn apply_block(&self, simd: Avx2, spectra: &[f32], out: &mut [f32]) {
        debug_assert_eq!(spectra.len(), self.n_bins * BLOCK);
        debug_assert_eq!(out.len(), self.n_filters() * BLOCK);
        sparse_block(simd, &self.bands, &self.weights, spectra, out);
    }

    /// Filter `m` applied to `spectrum`.
    #[inline]
    pub(crate) fn apply_one(&self, m: usize, spectrum: &[f32]) -> f32 {
        let w = &self.weights[self.offsets[m]..self.offsets[m + 1]];
        let s = &spectrum[self.starts[m]..self.starts[m] + w.len()];
        w.iter().zip(s).map(|(a, b)| a * b).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_invert_and_match_known_points() {
        for scale in [MelScale::Slaney, MelScale::Htk] {
            for f in [0.0, 440.0, 999.0, 1000.0, 4000.0, 11025.0] {
                assert!((mel_to_hz(hz_to_mel(f, scale), scale) - f).abs() < 1e-9);
            }
        }
        // librosa.hz_to_mel(1000) = 15, hz_to_mel(440) = 6.6, htk: 1000 Hz = 999.985...
        assert!((hz_to_mel(1000.0, MelScale::Slaney) - 15.0).abs() < 1e-12);
        assert!((hz_to_mel(440.0, MelScale::Slaney) - 6.6).abs() < 1e-12);
        assert!((hz_to_mel(1000.0, MelScale::Htk) - 999.9855371).abs() < 1e-6);
    }

    #[test]
    fn filterbank_shape_peaks_and_area() {
        let fb = mel_filterbank(22050, 2048, 128, 0.0, None, MelScale::Slaney, MelNorm::Slaney).unwrap();
        assert_eq!(fb.len(), 128 * 1025);
        // Every filter is non-empty and non-negative.
        for row in fb.chunks(1025) {
            assert!(row.iter().all(|&w| w >= 0.0) && row.iter().any(|&w| w > 0.0));
        }
        // Slaney norm: each triangle's integral over Hz is ~1 (area = 1/2 * width * 2/width).
        let hz_per_bin = 22050.0 / 2048.0;
        let area: f32 = fb[100 * 1025..101 * 1025].iter().sum::<f32>() * hz_per_bin;
        assert!((area - 1.0).abs() < 0.02, "area {area}");
        let un = mel_filterbank(16000, 512, 40, 20.0, Some(4000.0), MelScale::Htk, MelNorm::None).unwrap();
        let peak = un.iter().fold(0.0f32, |m, &w| m.max(w));
        assert!(peak <= 1.0 && peak > 0.9);
        assert!(mel_filterbank(16000, 512, 40, 5000.0, Some(4000.0), MelScale::Htk, MelNorm::None).is_err());
        assert!(mel_filterbank(16000, 512, 0, 0.0, None, MelScale::Htk, MelNorm::None).is_err());
    }

    #[test]
    fn sparse_equals_dense() {
        let n_bins = 257;
        let fb = mel_filterbank(16000, 512, 40, 0.0, None, MelScale::Slaney, MelNorm::Slaney).unwrap();
        let sp = SparseFilterbank::from_dense(&fb, n_bins);
        assert!(sp.nnz() < fb.len() / 10, "{} stored of {}", sp.nnz(), fb.len());
        let spec: Vec<f32> = (0..n_bins).map(|k| ((k * 37) % 11) as f32 * 0.25 + 0.01).collect();
        let mut out = vec![0.0; 40];
        sp.apply(&spec, &mut out);
        for (m, &o) in out.iter().enumerate() {
            let dense: f32 = fb[m * n_bins..(m + 1) * n_bins].iter().zip(&spec).map(|(a, b)| a * b).sum();
            assert!((o - dense).abs() <= 1e-6 * dense.abs().max(1.0), "filter {m}: {o} vs {dense}");
        }
        // The block form gives the same numbers for each of its frames.
        let block: Vec<f32> = (0..n_bins * BLOCK).map(|i| spec[i / BLOCK] * (1.0 + (i % BLOCK) as f32)).collect();
        for simd in [None, crate::fast::detect_avx2()] {
            let mut out_b = vec![0.0; 40 * BLOCK];
            sp.apply_block(simd, &block, &mut out_b);
            for m in 0..40 {
                for j in 0..BLOCK {
                    let want = out[m] * (1.0 + j as f32);
                    assert!((out_b[m * BLOCK + j] - want).abs() <= 1e-5 * want.abs().max(1.0), "{m},{j}");
                }
            }
        }
    }
}
