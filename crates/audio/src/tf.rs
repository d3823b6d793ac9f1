//! TensorFlow's speech-commands front end (`tensorflow/examples/speech_commands`): the
//! `AudioSpectrogram` op followed by the `Mfcc` op, reimplemented from TensorFlow's kernels
//! (`spectrogram.cc`, `mfcc.cc`, `mfcc_mel_filterbank.cc`, `mfcc_dct.cc`).
//!
//! - `AudioSpectrogram(window_size=480, stride=160, magnitude_squared=True)`: periodic Hann
//!   window of `window_size`, zero-padded to the next power of two (512), no centring, one frame
//!   wherever a full window fits (`1 + (n - window) / stride`), computed in f64, output f32.
//! - `Mfcc(upper_frequency_limit=4000, lower_frequency_limit=20, filterbank_channel_count=40,
//!   dct_coefficient_count=40)`: HTK-style mel (`1127 ln(1 + f / 700)`) triangles over the FFT
//!   bins applied to the *magnitude* (square root of the input), natural log with a floor of
//!   1e-12, then an unnormalised DCT-II scaled by `sqrt(2 / channels)` for every coefficient.
//!   Computed in f64 from the f32 spectrogram, output f32.
//!
//! TensorFlow returns `[channels, frames, bins]` / `[channels, frames, coefficients]`; here the
//! mono result is a [`Features`] `[bins or coefficients, frames]` like the librosa front end
//! (use [`Features::to_frames_major`] for TensorFlow's order).

use std::sync::{Arc, Mutex};

use rayon::prelude::*;
use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};
use serde::{Deserialize, Serialize};

use crate::error::{AudioError, Result};
use crate::features::{Features, Transform};
use crate::stft::hann_window;

/// Largest window (and so FFT) in samples: 2^16, four seconds at 16 kHz. A front end read
/// from a model file may declare any window; planning a bigger FFT is refused, not allocated.
pub const MAX_TF_WINDOW: usize = 1 << 16;
/// Most mel filterbank channels (and so MFCC coefficients).
pub const MAX_TF_CHANNELS: usize = 1024;

/// `AudioSpectrogram` attributes, with the speech-commands values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TfSpectrogramConfig {
    /// Window length in samples (480 = 30 ms at 16 kHz).
    pub window_size: usize,
    /// Hop in samples (160 = 10 ms at 16 kHz).
    pub stride: usize,
    /// Output `|X|^2` (true) or `|X|`.
    pub magnitude_squared: bool,
}

impl Default for TfSpectrogramConfig {
    fn default() -> Self {
        TfSpectrogramConfig { window_size: 480, stride: 160, magnitude_squared: true }
    }
}

impl TfSpectrogramConfig {
    /// FFT length: the smallest power of two `>= window_size`.
    pub fn fft_length(&self) -> usize {
        self.window_size.max(1).next_power_of_two()
    }

    /// Bins per frame, `fft_length / 2 + 1`.
    pub fn n_bins(&self) -> usize {
        self.fft_length() / 2 + 1
    }

    /// Frames for `n` samples. Errors: [`AudioError::InvalidConfig`] for a window below 2 or a
    /// zero stride; [`AudioError::TooShort`] if `n < window_size`.
    pub fn frames(&self, n: usize) -> Result<usize> {
        if self.window_size < 2 || self.window_size > MAX_TF_WINDOW || self.stride == 0 {
            return Err(AudioError::config(format!(
                "AudioSpectrogram needs window_size in 2..={MAX_TF_WINDOW} and stride >= 1; got {} and {}",
                self.window_size, self.stride
            )));
        }
        if n < self.window_size {
            return Err(AudioError::TooShort { path: None, samples: n, needed: self.window_size });
        }
        Ok(1 + (n - self.window_size) / self.stride)
    }
}

/// `Mfcc` attributes and the sample rate it is given, with the speech-commands values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TfMfccConfig {
    /// Input sample rate in Hz (16000).
    pub sample_rate: u32,
    /// The spectrogram feeding the op.
    pub spectrogram: TfSpectrogramConfig,
    /// Top of the highest filter in Hz (4000).
    pub upper_frequency_limit: f64,
    /// Bottom of the lowest filter in Hz (20).
    pub lower_frequency_limit: f64,
    /// Mel channels (40).
    pub filterbank_channel_count: usize,
    /// Coefficients kept, `<= filterbank_channel_count` (40 in speech_commands; the op's own
    /// default is 13).
    pub dct_coefficient_count: usize,
}

impl Default for TfMfccConfig {
    fn default() -> Self {
        TfMfccConfig {
            sample_rate: 16000,
            spectrogram: TfSpectrogramConfig::default(),
            upper_frequency_limit: 4000.0,
            lower_frequency_limit: 20.0,
            filterbank_channel_count: 40,
            dct_coefficient_count: 40,
        }
    }
}

impl TfMfccConfig {
    /// The speech-commands defaults with this many coefficients.
    pub fn new(dct_coefficient_count: usize) -> Self {
        TfMfccConfig { dct_coefficient_count, ..Default::default() }
    }

    /// Sets the sample rate.
    pub fn with_sample_rate(mut self, sample_rate: u32) -> Self {
        self.sample_rate = sample_rate;
        self
    }

    /// Sets the spectrogram framing.
    pub fn with_spectrogram(mut self, spectrogram: TfSpectrogramConfig) -> Self {
        self.spectrogram = spectrogram;
        self
    }

    /// Sets the filterbank's frequency range in Hz.
    pub fn with_freq_range(mut self, lower: f64, upper: f64) -> Self {
        self.lower_frequency_limit = lower;
        self.upper_frequency_limit = upper;
        self
    }

    /// Sets the number of mel channels.
    pub fn with_filterbank_channels(mut self, n: usize) -> Self {
        self.filterbank_channel_count = n;
        self
    }
}

/// TensorFlow's `MfccMelFilterbank`: for each FFT bin in `start..=end`, the channel whose
/// triangle it descends (`band[i]`, may be -1) gets `weight[i] * |X|`, the next channel the rest.
#[derive(Debug, Clone)]
struct TfMelFilterbank {
    channels: usize,
    start: usize,
    end: usize,
    band: Vec<isize>,
    weight: Vec<f64>,
}

impl TfMelFilterbank {
    fn new(input_length: usize, sample_rate: f64, channels: usize, lower: f64, upper: f64) -> Result<Self> {
        let bad = |reason: String| Err(AudioError::config(reason));
        if !(1..=MAX_TF_CHANNELS).contains(&channels) {
            return bad(format!("filterbank_channel_count is {channels}; it must be in 1..={MAX_TF_CHANNELS}"));
        }
        if sample_rate.is_nan() || sample_rate <= 0.0 || input_length < 2 {
            return bad(format!(
                "Mfcc needs a sample rate > 0 and >= 2 bins; got {sample_rate} Hz, {input_length} bins"
            ));
        }
        if !(lower >= 0.0 && upper > lower) {
            return bad(format!("Mfcc needs 0 <= lower_frequency_limit < upper; got {lower} and {upper}"));
        }
        let mel = |f: f64| 1127.0 * (f / 700.0).ln_1p();
        let (mel_lo, mel_hi) = (mel(lower), mel(upper));
        let spacing = (mel_hi - mel_lo) / (channels + 1) as f64;
        // channels + 1 centres: the extra one closes the last triangle.
        let centres: Vec<f64> = (0..=channels).map(|i| mel_lo + spacing * (i + 1) as f64).collect();
        let hz_per_bin = 0.5 * sample_rate / (input_length - 1) as f64;
        // DC is always excluded, as HTK does; the C++ truncates toward zero.
        let start = (1.5 + lower / hz_per_bin) as usize;
        let end = (upper / hz_per_bin) as usize;
        if end >= input_length {
            return bad(format!(
                "upper_frequency_limit {upper} Hz is above the spectrogram's top bin ({} Hz)",
                hz_per_bin * (input_length - 1) as f64
            ));
        }
        let mut band = vec![-2isize; input_length];
        let mut weight = vec![0.0f64; input_length];
        let mut ch = 0usize;
        for i in start..=end {
            let m = mel(i as f64 * hz_per_bin);
            while ch < channels && centres[ch] < m {
                ch += 1;
            }
            let b = ch as isize - 1;
            band[i] = b;
            weight[i] = if b >= 0 {
                let b = b as usize;
                (centres[b + 1] - m) / (centres[b + 1] - centres[b])
            } else {
                (centres[0] - m) / (centres[0] - mel_lo)
            };
        }
        Ok(TfMelFilterbank { channels, start, end, band, weight })
    }

    /// `power: [bins]` (squared magnitudes) -> `out: [channels]` sums of magnitudes.
    fn apply(&self, power: &[f32], out: &mut [f64]) {
        out.fill(0.0);
        let range = self.start..=self.end;
        for ((&p, &weight), &b) in power[range.clone()].iter().zip(&self.weight[range.clone()]).zip(&self.band[range]) {
            let v = f64::from(p).sqrt();
            let w = v * weight;
            if b >= 0 {
                out[b as usize] += w;
            }
            if b + 1 < self.channels as isize {
                out[(b + 1) as usize] += v - w;
            }
        }
    }
}

/// `[coefficients, channels]` cosines of TensorFlow's `MfccDct`: `sqrt(2 / N) cos(pi i (j + 0.5) / N)`.
fn tf_dct_matrix(coefficients: usize, channels: usize) -> Vec<f64> {
    let fnorm = (2.0 / channels as f64).sqrt();
    let arg = std::f64::consts::PI / channels as f64;
    let mut d = vec![0.0; coefficients * channels];
    for i in 0..coefficients {
        for j in 0..channels {
            d[i * channels + j] = fnorm * (i as f64 * arg * (j as f64 + 0.5)).cos();
        }
    }
    d
}

/// TensorFlow's `AudioSpectrogram` prepared once.
struct TfSpectrogramPlan {
    cfg: TfSpectrogramConfig,
    fft: Arc<dyn RealToComplex<f64>>,
    window: Vec<f64>,
}

struct TfScratch {
    frame: Vec<f64>,
    spec: Vec<Complex<f64>>,
    fft_scratch: Vec<Complex<f64>>,
    row: Vec<f32>,
    mel: Vec<f64>,
}

impl TfSpectrogramPlan {
    fn new(cfg: TfSpectrogramConfig) -> Result<Self> {
        cfg.frames(cfg.window_size)?; // validates the sizes
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(cfg.fft_length());
        Ok(TfSpectrogramPlan { cfg, fft, window: hann_window(cfg.window_size, true) })
    }

    fn scratch(&self, channels: usize) -> TfScratch {
        TfScratch {
            frame: vec![0.0; self.cfg.fft_length()],
            spec: vec![Complex::new(0.0, 0.0); self.cfg.n_bins()],
            fft_scratch: self.fft.make_scratch_vec(),
            row: vec![0.0; self.cfg.n_bins()],
            mel: vec![0.0; channels],
        }
    }

    /// Calls `f(t, row, scratch)` with each frame's f32 spectrogram row `[bins]`.
    fn for_each_frame(
        &self,
        y: &[f32],
        s: &mut TfScratch,
        mut f: impl FnMut(usize, &[f32], &mut [f64]),
    ) -> Result<usize> {
        let frames = self.cfg.frames(y.len())?;
        let w = self.cfg.window_size;
        for t in 0..frames {
            let src = &y[t * self.cfg.stride..t * self.cfg.stride + w];
            for ((o, &x), &win) in s.frame.iter_mut().zip(src).zip(&self.window) {
                *o = f64::from(x) * win;
            }
            s.frame[w..].fill(0.0);
            self.fft
                .process_with_scratch(&mut s.frame, &mut s.spec, &mut s.fft_scratch)
                .expect("buffer sizes come from the plan");
            for (r, c) in s.row.iter_mut().zip(&s.spec) {
                let p = c.re * c.re + c.im * c.im;
                *r = if self.cfg.magnitude_squared { p } else { p.sqrt() } as f32;
            }
            f(t, &s.row, &mut s.mel);
        }
        Ok(frames)
    }
}

/// TensorFlow's `AudioSpectrogram` on a mono clip: `y: [n] -> [fft_length / 2 + 1, frames]`.
///
/// Errors: [`AudioError::TooShort`] if `n < window_size`; [`AudioError::InvalidConfig`].
pub fn tf_audio_spectrogram(y: &[f32], cfg: &TfSpectrogramConfig) -> Result<Features> {
    let plan = TfSpectrogramPlan::new(*cfg)?;
    let mut s = plan.scratch(0);
    let frames = cfg.frames(y.len())?;
    let bins = cfg.n_bins();
    let mut data = vec![0.0f32; bins * frames];
    plan.for_each_frame(y, &mut s, |t, row, _| {
        for (k, &v) in row.iter().enumerate() {
            data[k * frames + t] = v;
        }
    })?;
    Ok(Features { data, n_coeffs: bins, frames })
}

/// TensorFlow's `Mfcc` op on a spectrogram `[bins, frames]` (squared magnitudes) at
/// `cfg.sample_rate`: `-> [dct_coefficient_count, frames]`. `cfg.spectrogram` is not used.
///
/// Errors: [`AudioError::InvalidConfig`] (no channels, more coefficients than channels, a
/// frequency range outside the spectrogram).
pub fn tf_mfcc_from_spectrogram(spectrogram: &Features, cfg: &TfMfccConfig) -> Result<Features> {
    let plan = TfMfccPlan::new_for_bins(*cfg, spectrogram.n_coeffs)?;
    let frames = spectrogram.frames;
    let n = cfg.dct_coefficient_count;
    let mut data = vec![0.0f32; n * frames];
    let mut row = vec![0.0f32; spectrogram.n_coeffs];
    let mut mel = vec![0.0f64; cfg.filterbank_channel_count];
    for t in 0..frames {
        for (k, r) in row.iter_mut().enumerate() {
            *r = spectrogram.data[k * frames + t];
        }
        plan.mfcc_frame(&row, &mut mel, |i, v| data[i * frames + t] = v);
    }
    Ok(Features { data, n_coeffs: n, frames })
}

/// `AudioSpectrogram` then `Mfcc` on a mono clip: `y: [n] -> [dct_coefficient_count, frames]`.
pub fn tf_mfcc(y: &[f32], cfg: &TfMfccConfig) -> Result<Features> {
    TfMfccTransform::new(*cfg)?.apply(y)
}

/// The whole TensorFlow MFCC front end prepared once.
struct TfMfccPlan {
    cfg: TfMfccConfig,
    spectrogram: Option<TfSpectrogramPlan>,
    fb: TfMelFilterbank,
    /// `[coefficients, channels]`.
    dct: Vec<f64>,
}

impl TfMfccPlan {
    fn new_for_bins(cfg: TfMfccConfig, bins: usize) -> Result<Self> {
        let fb = TfMelFilterbank::new(
            bins,
            f64::from(cfg.sample_rate),
            cfg.filterbank_channel_count,
            cfg.lower_frequency_limit,
            cfg.upper_frequency_limit,
        )?;
        let (n, c) = (cfg.dct_coefficient_count, cfg.filterbank_channel_count);
        if n == 0 || n > c {
            return Err(AudioError::config(format!("dct_coefficient_count is {n}; it must be in 1..={c}")));
        }
        Ok(TfMfccPlan { cfg, spectrogram: None, fb, dct: tf_dct_matrix(n, c) })
    }

    fn new(cfg: TfMfccConfig) -> Result<Self> {
        let spec = TfSpectrogramPlan::new(cfg.spectrogram)?;
        let mut plan = Self::new_for_bins(cfg, cfg.spectrogram.n_bins())?;
        plan.spectrogram = Some(spec);
        Ok(plan)
    }

    /// One frame: filterbank, log with floor 1e-12, DCT; `out(i, value)` per coefficient.
    fn mfcc_frame(&self, row: &[f32], mel: &mut [f64], mut out: impl FnMut(usize, f32)) {
        self.fb.apply(row, mel);
        for v in mel.iter_mut() {
            *v = v.max(1e-12).ln();
        }
        let c = self.cfg.filterbank_channel_count;
        for (i, d) in self.dct.chunks_exact(c).enumerate() {
            out(i, d.iter().zip(mel.iter()).map(|(a, b)| a * b).sum::<f64>() as f32);
        }
    }

    fn scratch(&self) -> TfScratch {
        self.spectrogram.as_ref().expect("built by new").scratch(self.cfg.filterbank_channel_count)
    }

    fn mfcc(&self, y: &[f32], s: &mut TfScratch) -> Result<Features> {
        let spec = self.spectrogram.as_ref().expect("built by new");
        let frames = self.cfg.spectrogram.frames(y.len())?;
        let n = self.cfg.dct_coefficient_count;
        let mut data = vec![0.0f32; n * frames];
        spec.for_each_frame(y, s, |t, row, mel| self.mfcc_frame(row, mel, |i, v| data[i * frames + t] = v))?;
        Ok(Features { data, n_coeffs: n, frames })
    }
}

/// TensorFlow's speech-commands MFCC front end as a shareable [`Transform`]:
/// `TfMfccTransform::new(TfMfccConfig::default())?.apply(&samples)` gives `[40, 98]` for a
/// one-second 16 kHz clip.
pub struct TfMfccTransform {
    plan: Arc<TfMfccPlan>,
    pool: Mutex<Vec<TfScratch>>,
}

impl std::fmt::Debug for TfMfccTransform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TfMfccTransform").field("cfg", &self.plan.cfg).finish()
    }
}

impl TfMfccTransform {
    /// Plans the front end. Errors: [`AudioError::InvalidConfig`].
    pub fn new(cfg: TfMfccConfig) -> Result<Self> {
        Ok(TfMfccTransform { plan: Arc::new(TfMfccPlan::new(cfg)?), pool: Mutex::new(Vec::new()) })
    }

    /// The configuration.
    pub fn config(&self) -> &TfMfccConfig {
        &self.plan.cfg
    }
}

impl Transform for TfMfccTransform {
    fn sample_rate(&self) -> u32 {
        self.plan.cfg.sample_rate
    }

    fn output_shape(&self, n_samples: usize) -> Result<(usize, usize)> {
        Ok((self.plan.cfg.dct_coefficient_count, self.plan.cfg.spectrogram.frames(n_samples)?))
    }

    fn apply(&self, samples: &[f32]) -> Result<Features> {
        let taken = self.pool.lock().map(|mut p| p.pop()).unwrap_or(None);
        let mut s = taken.unwrap_or_else(|| self.plan.scratch());
        let out = self.plan.mfcc(samples, &mut s);
        if let Ok(mut p) = self.pool.lock() {
            p.push(s);
        }
        out
    }

    fn apply_batch(&self, clips: &[&[f32]]) -> Vec<Result<Features>> {
        let plan = &self.plan;
        clips.par_iter().map_init(|| plan.scratch(), |s, y| plan.mfcc(y, s)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speech_commands_shapes() {
        let cfg = TfSpectrogramConfig::default();
        assert_eq!(cfg.fft_length(), 512);
        assert_eq!(cfg.n_bins(), 257);
        assert_eq!(cfg.frames(16000).unwrap(), 98);
        assert!(matches!(cfg.frames(479), Err(AudioError::TooShort { needed: 480, .. })));
        let y: Vec<f32> = (0..16000).map(|i| (i as f32 * 0.05).sin() * 0.2).collect();
        let s = tf_audio_spectrogram(&y, &cfg).unwrap();
        assert_eq!((s.n_coeffs, s.frames), (257, 98));
        let t = TfMfccTransform::new(TfMfccConfig::default()).unwrap();
        let m = t.apply(&y).unwrap();
        assert_eq!((m.n_coeffs, m.frames), (40, 98));
        assert_eq!(t.output_shape(16000).unwrap(), (40, 98));
        // The two-step path equals the fused one.
        let m2 = tf_mfcc_from_spectrogram(&s, &TfMfccConfig::default()).unwrap();
        assert_eq!(m, m2);
        assert_eq!(t.apply_batch(&[&y])[0].as_ref().unwrap(), &m);
    }

    #[test]
    fn spectrogram_of_a_bin_centred_tone() {
        // A cosine on bin 32 of a 512-point FFT; periodic Hann of 480 taps zero-padded to 512.
        let k = 32.0;
        let y: Vec<f32> = (0..480).map(|i| (2.0 * std::f64::consts::PI * k * i as f64 / 512.0).cos() as f32).collect();
        let s = tf_audio_spectrogram(&y, &TfSpectrogramConfig::default()).unwrap();
        let w = hann_window(480, true);
        let (mut re, mut im) = (0.0, 0.0);
        for (i, &wi) in w.iter().enumerate() {
            let ph = 2.0 * std::f64::consts::PI * k * i as f64 / 512.0;
            re += f64::from(y[i]) * wi * ph.cos();
            im -= f64::from(y[i]) * wi * ph.sin();
        }
        let want = (re * re + im * im) as f32;
        assert!((s.get(32, 0) - want).abs() < 1e-4 * want, "{} vs {want}", s.get(32, 0));
    }

    #[test]
    fn filterbank_weights_sum_to_one_per_bin() {
        let fb = TfMelFilterbank::new(257, 16000.0, 40, 20.0, 4000.0).unwrap();
        assert_eq!((fb.start, fb.end), (2, 128));
        // Unit magnitude in every bin: each bin in start..=end contributes w + (1 - w) = 1 except
        // at the edges, so the channel sums add up to the number of bins minus the edge halves.
        let mut out = vec![0.0; 40];
        fb.apply(&[1.0; 257], &mut out);
        let total: f64 = out.iter().sum();
        assert!(total > 120.0 && total < 127.0, "{total}");
        assert!(out.iter().all(|&v| v > 0.0));
        assert!(TfMelFilterbank::new(257, 16000.0, 40, 20.0, 9000.0).is_err());
        assert!(TfMfccTransform::new(TfMfccConfig::new(41)).is_err());
    }

    #[test]
    fn dct_matches_tensorflow_definition() {
        let d = tf_dct_matrix(3, 4);
        let s = (2.0f64 / 4.0).sqrt();
        assert!((d[0] - s).abs() < 1e-15); // no 1/sqrt(2) on the DC row, unlike "ortho"
        assert!((d[4 + 1] - s * (std::f64::consts::PI / 4.0 * 1.5).cos()).abs() < 1e-15);
    }
}
