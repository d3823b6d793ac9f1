//! Short-time Fourier transform as `librosa.stft` computes it (librosa 0.11): periodic Hann
//! window of `win_length` zero-padded to `n_fft` in the centre, frames every `hop_length`
//! samples, `center=True` pads `n_fft / 2` samples on both sides with zeros (`pad_mode`
//! "constant", librosa 0.11's default; "reflect" is available), real FFT with `realfft`.
//! Output is `[1 + n_fft / 2, frames]`, frequency-major like librosa.
//!
//! [`StftPlan`] owns the FFT plans and window so that repeated calls allocate nothing.

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};
use serde::{Deserialize, Serialize};

use crate::error::{AudioError, Result};
use crate::fast::{Avx2, interleave_windowed};
use crate::features::Features;

/// How `center=true` pads the signal (numpy.pad modes, as librosa passes them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum PadMode {
    /// Zeros (librosa >= 0.10 default).
    #[default]
    Constant,
    /// Mirror without repeating the edge sample (librosa < 0.10 default); needs a signal longer
    /// than `n_fft / 2`.
    Reflect,
}

/// STFT framing parameters with librosa's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StftConfig {
    /// FFT length (librosa default 2048).
    pub n_fft: usize,
    /// Samples between frames (librosa default `win_length / 4` = 512).
    pub hop_length: usize,
    /// Window length, `<= n_fft`; `None` means `n_fft`.
    pub win_length: Option<usize>,
    /// Pad `n_fft / 2` on both sides so frame `t` is centred at `t * hop_length`.
    pub center: bool,
    /// Padding used when `center` is true.
    pub pad_mode: PadMode,
}

impl Default for StftConfig {
    fn default() -> Self {
        StftConfig { n_fft: 2048, hop_length: 512, win_length: None, center: true, pad_mode: PadMode::Constant }
    }
}

impl StftConfig {
    /// A config with this FFT size, hop `n_fft / 4` (librosa's default) and the other defaults.
    pub fn new(n_fft: usize) -> Self {
        StftConfig { n_fft, hop_length: (n_fft / 4).max(1), ..Default::default() }
    }

    /// Sets the hop length.
    pub fn with_hop_length(mut self, hop_length: usize) -> Self {
        self.hop_length = hop_length;
        self
    }

    /// Sets the window length.
    pub fn with_win_length(mut self, win_length: usize) -> Self {
        self.win_length = Some(win_length);
        self
    }

    /// Sets centring.
    pub fn with_center(mut self, center: bool) -> Self {
        self.center = center;
        self
    }

    /// Sets the padding mode.
    pub fn with_pad_mode(mut self, pad_mode: PadMode) -> Self {
        self.pad_mode = pad_mode;
        self
    }

    /// Frequency bins per frame, `1 + n_fft / 2`.
    pub fn n_bins(&self) -> usize {
        self.n_fft / 2 + 1
    }

    /// Checks the sizes: `n_fft >= 2`, `hop_length >= 1`, `1 <= win_length <= n_fft`.
    pub fn validate(&self) -> Result<()> {
        if self.n_fft < 2 {
            return Err(AudioError::config(format!("n_fft is {}; it must be >= 2", self.n_fft)));
        }
        if self.hop_length == 0 {
            return Err(AudioError::config("hop_length is 0; it must be >= 1"));
        }
        let w = self.win_length.unwrap_or(self.n_fft);
        if w == 0 || w > self.n_fft {
            return Err(AudioError::config(format!("win_length is {w}; it must be in 1..={}", self.n_fft)));
        }
        Ok(())
    }

    /// Number of frames for a signal of `n` samples.
    ///
    /// Errors: [`AudioError::TooShort`] if `n < n_fft` (also with `center`, where librosa would
    /// only warn: a clip shorter than one window is almost always a data bug), or with reflect
    /// padding when `n <= n_fft / 2`.
    pub fn frames(&self, n: usize) -> Result<usize> {
        self.validate()?;
        if n < self.n_fft {
            return Err(AudioError::TooShort { path: None, samples: n, needed: self.n_fft });
        }
        let padded = if self.center { n + 2 * (self.n_fft / 2) } else { n };
        Ok(1 + (padded - self.n_fft) / self.hop_length)
    }

    /// The analysis window, `[n_fft]`: periodic Hann of `win_length`, centred with zeros
    /// (librosa's `get_window("hann", win_length, fftbins=True)` + `pad_center`).
    pub fn window(&self) -> Vec<f64> {
        let w = self.win_length.unwrap_or(self.n_fft);
        let mut out = vec![0.0; self.n_fft];
        let off = (self.n_fft - w) / 2;
        out[off..off + w].copy_from_slice(&hann_window(w, true));
        out
    }
}

/// Hann window of length `n`: periodic (`0.5 - 0.5 cos(2 pi i / n)`, for spectral analysis, as
/// scipy's `fftbins=True` and TensorFlow use) or symmetric (divides by `n - 1`).
pub fn hann_window(n: usize, periodic: bool) -> Vec<f64> {
    if n == 1 {
        return vec![1.0];
    }
    let denom = if periodic { n } else { n - 1 } as f64;
    (0..n).map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / denom).cos()).collect()
}

/// A complex STFT, `[n_bins, frames]` row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct ComplexSpectrogram {
    /// `[n_bins, frames]` values.
    pub data: Vec<Complex<f32>>,
    /// `1 + n_fft / 2`.
    pub n_bins: usize,
    /// Frames.
    pub frames: usize,
}

/// `librosa.stft(y, n_fft, hop_length, win_length, window="hann", center, pad_mode)`:
/// `y: [n] -> [1 + n_fft / 2, frames]`.
pub fn stft(y: &[f32], cfg: &StftConfig) -> Result<ComplexSpectrogram> {
    let plan = StftPlan::new(cfg)?;
    let mut scratch = plan.scratch();
    let frames = cfg.frames(y.len())?;
    let n_bins = cfg.n_bins();
    let mut data = vec![Complex::new(0.0, 0.0); n_bins * frames];
    plan.for_each_frame(y, &mut scratch, |t, spec| {
        for (k, v) in spec.iter().enumerate() {
            data[k * frames + t] = *v;
        }
    })?;
    Ok(ComplexSpectrogram { data, n_bins, frames })
}

/// `|stft(y)|^power` (librosa's `_spectrogram`: power 2 is the power spectrogram, 1 the
/// magnitude): `y: [n] -> [1 + n_fft / 2, frames]`.
pub fn power_spectrogram(y: &[f32], cfg: &StftConfig, power: f32) -> Result<Features> {
    let plan = StftPlan::new(cfg)?;
    let mut scratch = plan.scratch();
    let frames = cfg.frames(y.len())?;
    let n_bins = cfg.n_bins();
    let mut data = vec![0.0f32; n_bins * frames];
    plan.for_each_frame(y, &mut scratch, |t, spec| {
        for (k, v) in spec.iter().enumerate() {
            data[k * frames + t] = spectral_power(*v, power);
        }
    })?;
    Ok(Features { data, n_coeffs: n_bins, frames })
}

/// `|v|^power`, with the common powers computed without `powf`.
#[inline]
pub(crate) fn spectral_power(v: Complex<f32>, power: f32) -> f32 {
    let p2 = v.re * v.re + v.im * v.im;
    if power == 2.0 {
        p2
    } else if power == 1.0 {
        p2.sqrt()
    } else {
        p2.powf(power * 0.5)
    }
}

/// An STFT with its FFT plans and window prepared once; shareable between threads (each thread
/// brings its own [`StftScratch`]).
///
/// Besides the complex spectrum ([`StftPlan::for_each_frame`], `realfft`), it offers power
/// paths that skip the complex output: for even `n_fft` one frame is packed into a half-length
/// complex FFT (`rustfft`, in place) and unpacked straight to `|X_k|^2`
/// ([`StftPlan::for_each_power_frame`]); the MFCC front end goes further and puts two frames
/// into one full-length complex FFT, whose split needs no twiddles (`pair_spectrum`, with the
/// hand-vectorised interleaving and split of `fast.rs`).
#[derive(Clone)]
pub struct StftPlan {
    cfg: StftConfig,
    fft: Arc<dyn RealToComplex<f32>>,
    window: Vec<f32>,
    packed: Option<Packed>,
    /// Full-length complex FFT for two real frames at once (see [`StftPlan::pair_spectrum`]).
    pair_fft: Arc<dyn rustfft::Fft<f32>>,
}

/// Half-length complex FFT and the unpacking twiddles `e^{-2 pi i k / n_fft}`, `k < n_fft / 2`.
#[derive(Clone)]
struct Packed {
    fft: Arc<dyn rustfft::Fft<f32>>,
    tw_re: Vec<f32>,
    tw_im: Vec<f32>,
}

impl std::fmt::Debug for StftPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StftPlan").field("cfg", &self.cfg).finish()
    }
}

/// Per-thread buffers for [`StftPlan`].
#[derive(Debug, Clone)]
pub struct StftScratch {
    /// One frame with padding, for the frames that reach past either end of the signal.
    edge: Vec<f32>,
    frame: Vec<f32>,
    spec: Vec<Complex<f32>>,
    fft_scratch: Vec<Complex<f32>>,
    /// Packed path: the half-length complex buffer, its FFT scratch, the spectrum split into
    /// real and imaginary parts (`n_fft / 2 + 1`, last = first), and the power spectrum.
    packed: Vec<Complex<f32>>,
    packed_scratch: Vec<Complex<f32>>,
    z_re: Vec<f32>,
    z_im: Vec<f32>,
    power: Vec<f32>,
    /// Pair path: the second frame's padding buffer, the full-length complex buffer and its
    /// FFT scratch.
    edge2: Vec<f32>,
    pair: Vec<Complex<f32>>,
    pair_scratch: Vec<Complex<f32>>,
}

impl StftPlan {
    /// Plans the FFTs and builds the window. Errors: [`AudioError::InvalidConfig`].
    pub fn new(cfg: &StftConfig) -> Result<Self> {
        cfg.validate()?;
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(cfg.n_fft);
        let window = cfg.window().into_iter().map(|w| w as f32).collect();
        let packed = cfg.n_fft.is_multiple_of(2).then(|| {
            let m = cfg.n_fft / 2;
            let angle = |k: usize| -2.0 * std::f64::consts::PI * k as f64 / cfg.n_fft as f64;
            Packed {
                fft: rustfft::FftPlanner::<f32>::new().plan_fft_forward(m),
                tw_re: (0..m).map(|k| angle(k).cos() as f32).collect(),
                tw_im: (0..m).map(|k| angle(k).sin() as f32).collect(),
            }
        });
        let pair_fft = rustfft::FftPlanner::<f32>::new().plan_fft_forward(cfg.n_fft);
        Ok(StftPlan { cfg: *cfg, fft, window, packed, pair_fft })
    }

    /// The configuration.
    pub fn config(&self) -> &StftConfig {
        &self.cfg
    }

    /// Fresh buffers for this plan.
    pub fn scratch(&self) -> StftScratch {
        let m = self.cfg.n_fft / 2;
        let (packed, packed_scratch) = match &self.packed {
            Some(p) => (vec![Complex::new(0.0, 0.0); m], vec![Complex::new(0.0, 0.0); p.fft.get_inplace_scratch_len()]),
            None => (Vec::new(), Vec::new()),
        };
        StftScratch {
            edge: vec![0.0; self.cfg.n_fft],
            frame: vec![0.0; self.cfg.n_fft],
            spec: vec![Complex::new(0.0, 0.0); self.cfg.n_bins()],
            fft_scratch: self.fft.make_scratch_vec(),
            packed,
            packed_scratch,
            z_re: vec![0.0; m + 1],
            z_im: vec![0.0; m + 1],
            power: vec![0.0; self.cfg.n_bins()],
            edge2: vec![0.0; self.cfg.n_fft],
            pair: vec![Complex::new(0.0, 0.0); self.cfg.n_fft],
            pair_scratch: vec![Complex::new(0.0, 0.0); self.pair_fft.get_inplace_scratch_len()],
        }
    }

    /// Frame `t` (before windowing), `[n_fft]`: a slice of `y` where the frame lies inside it,
    /// otherwise assembled with the padding in `edge` (only the first and last few frames of a
    /// centred STFT), so the signal is never copied as a whole.
    #[inline(always)]
    fn frame<'a>(&self, y: &'a [f32], t: usize, edge: &'a mut [f32]) -> &'a [f32] {
        let cfg = &self.cfg;
        let (n, n_fft, start) = (y.len() as isize, cfg.n_fft, (t * cfg.hop_length) as isize);
        let first = if cfg.center { start - (n_fft / 2) as isize } else { start };
        if first >= 0 && first + n_fft as isize <= n {
            return &y[first as usize..first as usize + n_fft];
        }
        if cfg.pad_mode == PadMode::Constant {
            // Zeros, then the part of the signal the frame overlaps as one copy (a per-sample
            // loop here cost as much as the window multiply of all frames of a 1 s clip).
            let lo = first.clamp(0, n);
            let hi = (first + n_fft as isize).clamp(lo, n);
            let (off, len) = ((lo - first) as usize, (hi - lo) as usize);
            edge[..off].fill(0.0);
            edge[off..off + len].copy_from_slice(&y[lo as usize..hi as usize]);
            edge[off + len..].fill(0.0);
            return edge;
        }
        for (i, e) in edge.iter_mut().enumerate() {
            let j = first + i as isize;
            let j = match cfg.pad_mode {
                PadMode::Constant => j,
                PadMode::Reflect if j < 0 => -j,
                PadMode::Reflect if j >= n => 2 * (n - 1) - j,
                PadMode::Reflect => j,
            };
            *e = if (0..n).contains(&j) { y[j as usize] } else { 0.0 };
        }
        edge
    }

    /// Checks `y` against the frame count and padding mode; returns the number of frames.
    pub(crate) fn check(&self, y: &[f32]) -> Result<usize> {
        let frames = self.cfg.frames(y.len())?;
        let pad = self.cfg.n_fft / 2;
        if self.cfg.center && self.cfg.pad_mode == PadMode::Reflect && y.len() <= pad {
            return Err(AudioError::TooShort { path: None, samples: y.len(), needed: pad + 1 });
        }
        Ok(frames)
    }

    /// Calls `f(t, spectrum)` for every frame `t` of `y`, with `spectrum: [1 + n_fft / 2]`.
    ///
    /// Errors: [`AudioError::TooShort`] (see [`StftConfig::frames`]).
    pub fn for_each_frame(
        &self,
        y: &[f32],
        scratch: &mut StftScratch,
        mut f: impl FnMut(usize, &[Complex<f32>]),
    ) -> Result<usize> {
        let frames = self.check(y)?;
        for t in 0..frames {
            let src = self.frame(y, t, &mut scratch.edge);
            for ((o, &s), &w) in scratch.frame.iter_mut().zip(src).zip(&self.window) {
                *o = s * w;
            }
            self.fft
                .process_with_scratch(&mut scratch.frame, &mut scratch.spec, &mut scratch.fft_scratch)
                .expect("buffer sizes come from the plan");
            f(t, &scratch.spec);
        }
        Ok(frames)
    }

    /// Calls `f(t, power)` for every frame `t` of `y`, with `power: [1 + n_fft / 2]` holding
    /// `|X_k|^power` (`power = 2`: the power spectrum).
    ///
    /// Errors: [`AudioError::TooShort`] (see [`StftConfig::frames`]).
    pub fn for_each_power_frame(
        &self,
        y: &[f32],
        scratch: &mut StftScratch,
        power: f32,
        mut f: impl FnMut(usize, &[f32]),
    ) -> Result<usize> {
        let frames = self.check(y)?;
        for t in 0..frames {
            f(t, self.power_frame(y, t, scratch, power));
        }
        Ok(frames)
    }

    /// `|X_k|^power` of frame `t`, `[1 + n_fft / 2]`, in `scratch`; `y` must have passed
    /// [`StftPlan::check`]. Inlined into its callers so that they can run it under a CPU-feature
    /// dispatch.
    #[inline(always)]
    pub(crate) fn power_frame<'s>(&self, y: &[f32], t: usize, scratch: &'s mut StftScratch, power: f32) -> &'s [f32] {
        let StftScratch { edge, frame, spec, fft_scratch, packed, packed_scratch, z_re, z_im, power: pw, .. } = scratch;
        let src = self.frame(y, t, edge);
        match &self.packed {
            Some(p) => {
                let m = self.cfg.n_fft / 2;
                // z[n] = x[2n] w[2n] + i x[2n + 1] w[2n + 1]
                for ((z, s), w) in packed.iter_mut().zip(src.chunks_exact(2)).zip(self.window.chunks_exact(2)) {
                    *z = Complex::new(s[0] * w[0], s[1] * w[1]);
                }
                p.fft.process_with_scratch(packed, packed_scratch);
                for ((r, i), z) in z_re.iter_mut().zip(z_im.iter_mut()).zip(packed.iter()) {
                    *r = z.re;
                    *i = z.im;
                }
                z_re[m] = z_re[0];
                z_im[m] = z_im[0];
                unpack_power(&z_re[..=m], &z_im[..=m], &p.tw_re, &p.tw_im, pw);
                if power != 2.0 {
                    for v in pw.iter_mut() {
                        *v = if power == 1.0 { v.sqrt() } else { v.powf(power * 0.5) };
                    }
                }
            }
            None => {
                for ((o, &s), &w) in frame.iter_mut().zip(src).zip(&self.window) {
                    *o = s * w;
                }
                self.fft.process_with_scratch(frame, spec, fft_scratch).expect("buffer sizes come from the plan");
                for (o, &v) in pw.iter_mut().zip(spec.iter()) {
                    *o = spectral_power(v, power);
                }
            }
        }
        pw
    }

    /// The complex FFT `Z`, `[n_fft]`, of frames `t` and `t + 1` packed into one complex signal,
    /// the first frame (windowed) in the real part and the second in the imaginary part; with
    /// `second = false` the imaginary part is zero. `y` must have passed [`StftPlan::check`].
    ///
    /// Each frame's spectrum follows from `Z` without twiddles: `X_a[k] = (Z_k + conj Z_{n-k})
    /// / 2`, `X_b[k] = (Z_k - conj Z_{n-k}) / 2i` (see [`crate::fast::pair_power`]), so two
    /// frames cost one complex FFT of length `n_fft`, cheaper than two real FFTs.
    #[inline(always)]
    pub(crate) fn pair_spectrum<'s>(
        &self,
        y: &[f32],
        t: usize,
        second: bool,
        scratch: &'s mut StftScratch,
        simd: Avx2,
    ) -> &'s [Complex<f32>] {
        let StftScratch { edge, edge2, pair, pair_scratch, .. } = scratch;
        let a = self.frame(y, t, edge);
        let b: &[f32] = if second {
            self.frame(y, t + 1, edge2)
        } else {
            edge2.fill(0.0);
            edge2
        };
        interleave_windowed(simd, a, b, &self.window, pulp::bytemuck::cast_slice_mut(pair.as_mut_slice()));
        self.pair_fft.process_with_scratch(pair, pair_scratch);
        pair
    }
}

/// `|X_k|^2` for `k = 0..=m` of a real signal of length `2m` from `Z`, the length-`m` FFT of its
/// even/odd samples packed as complex numbers (`z_re`, `z_im`: `m + 1` values, `Z[m] = Z[0]`):
/// `X_k = E_k + W^k O_k` with `E_k = (Z_k + conj Z_{m-k}) / 2`, `O_k = (Z_k - conj Z_{m-k}) / 2i`,
/// `W = e^{-2 pi i / 2m}`. Split real/imaginary arrays and one output per pass keep the loop
/// simple enough to vectorise (the paired form that halves the arithmetic does not).
#[inline(always)]
fn unpack_power(z_re: &[f32], z_im: &[f32], tw_re: &[f32], tw_im: &[f32], out: &mut [f32]) {
    let m = tw_re.len();
    let (r0, i0) = (z_re[0], z_im[0]);
    out[0] = (r0 + i0) * (r0 + i0);
    out[m] = (r0 - i0) * (r0 - i0);
    for k in 1..m {
        let (ar, ai) = (z_re[k], z_im[k]);
        let (br, bi) = (z_re[m - k], z_im[m - k]);
        let (er, ei) = (0.5 * (ar + br), 0.5 * (ai - bi));
        let (or, oi) = (0.5 * (ai + bi), -0.5 * (ar - br));
        let (wr, wi) = (tw_re[k], tw_im[k]);
        let (xr, xi) = (er + wr * or - wi * oi, ei + wr * oi + wi * or);
        out[k] = xr * xr + xi * xi;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_counts_match_librosa() {
        let c = StftConfig::default();
        assert_eq!(c.frames(22050).unwrap(), 44);
        assert_eq!(c.frames(16000).unwrap(), 32);
        assert_eq!(c.frames(2048).unwrap(), 5);
        assert!(matches!(c.frames(2047), Err(AudioError::TooShort { samples: 2047, needed: 2048, .. })));
        let nc = c.with_center(false);
        assert_eq!(nc.frames(2048).unwrap(), 1);
        assert_eq!(nc.frames(2048 + 511).unwrap(), 1);
        assert_eq!(nc.frames(2048 + 512).unwrap(), 2);
        assert!(StftConfig::new(0).validate().is_err());
        assert!(StftConfig::default().with_win_length(4096).validate().is_err());
    }

    #[test]
    fn window_is_periodic_hann_centred() {
        let w = hann_window(4, true);
        let want = [0.0, 0.5, 1.0, 0.5];
        assert!(w.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12), "{w:?}");
        let s = hann_window(5, false);
        assert!((s[2] - 1.0).abs() < 1e-12 && s[4].abs() < 1e-12);
        let c = StftConfig::new(8).with_win_length(4).window();
        assert_eq!(c.len(), 8);
        assert!(c[..2].iter().chain(&c[6..]).all(|&v| v == 0.0));
        assert!((c[4] - 1.0).abs() < 1e-12);
    }

    /// Direct O(n^2) DFT of frame `t` against the FFT path, constant and reflect padding,
    /// odd lengths and a short window.
    #[test]
    fn stft_matches_direct_dft() {
        let y: Vec<f32> = (0..203).map(|i| ((i as f32 * 0.37).sin() + 0.1 * (i % 7) as f32) * 0.5).collect();
        for cfg in [
            StftConfig::new(64).with_hop_length(17),
            StftConfig::new(64).with_hop_length(16).with_win_length(40).with_pad_mode(PadMode::Reflect),
            StftConfig::new(51).with_hop_length(13).with_center(false),
            StftConfig::new(50).with_hop_length(7),
            StftConfig::new(2).with_hop_length(1),
        ] {
            let s = stft(&y, &cfg).unwrap();
            let n = cfg.n_fft;
            let pad = if cfg.center { n / 2 } else { 0 };
            let sample = |i: isize| -> f64 {
                let j = i - pad as isize;
                let len = y.len() as isize;
                let j = match cfg.pad_mode {
                    _ if !cfg.center => j,
                    PadMode::Constant => j,
                    PadMode::Reflect if j < 0 => -j,
                    PadMode::Reflect if j >= len => 2 * (len - 1) - j,
                    PadMode::Reflect => j,
                };
                if j < 0 || j >= len { 0.0 } else { f64::from(y[j as usize]) }
            };
            let w = cfg.window();
            assert_eq!(s.frames, cfg.frames(y.len()).unwrap());
            for t in [0, s.frames / 2, s.frames - 1] {
                for k in [0, 1, 5, n / 2].into_iter().filter(|&k| k <= n / 2) {
                    let (mut re, mut im) = (0.0, 0.0);
                    for (i, &wi) in w.iter().enumerate() {
                        let x = sample((t * cfg.hop_length + i) as isize) * wi;
                        let ph = -2.0 * std::f64::consts::PI * (k * i) as f64 / n as f64;
                        re += x * ph.cos();
                        im += x * ph.sin();
                    }
                    let got = s.data[k * s.frames + t];
                    assert!(
                        (f64::from(got.re) - re).abs() < 1e-4 && (f64::from(got.im) - im).abs() < 1e-4,
                        "{cfg:?} t={t} k={k}: {got} vs {re}+{im}i"
                    );
                }
            }
            // The packed power path (even n_fft) and the realfft path (odd) agree with |X|^2.
            let plan = StftPlan::new(&cfg).unwrap();
            let mut sc = plan.scratch();
            for pw in [2.0f32, 1.0, 0.5] {
                plan.for_each_power_frame(&y, &mut sc, pw, |t, p| {
                    for (k, &v) in p.iter().enumerate() {
                        let want = s.data[k * s.frames + t].norm_sqr().powf(pw / 2.0);
                        assert!((v - want).abs() <= 2e-5 * want.max(1.0), "{cfg:?} p={pw} t={t} k={k}: {v} vs {want}");
                    }
                })
                .unwrap();
            }
            let p = power_spectrogram(&y, &cfg, 2.0).unwrap();
            let m = power_spectrogram(&y, &cfg, 1.0).unwrap();
            for i in [0, 7, p.data.len() - 1] {
                assert!((p.data[i] - s.data[i].norm_sqr()).abs() <= 1e-6 * p.data[i].max(1.0));
                assert!((m.data[i] - s.data[i].norm()).abs() <= 1e-5 * m.data[i].max(1.0));
            }
        }
    }
}
