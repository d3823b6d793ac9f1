//! The audio front end of TensorFlow's speech-commands example: a clip of
//! `clip_duration_ms` at `sample_rate`, TensorFlow's `AudioSpectrogram` (30 ms window,
//! 10 ms stride, magnitude squared) and `Mfcc` op (40 mel channels, 20-4000 Hz, 40
//! coefficients) → a `[frames, coefficients]` "fingerprint" (98 x 40 for 1 s at 16 kHz),
//! the image the models see as `[height, width, 1]`. Saved with every model, so `predict`
//! and `listen` compute exactly what training saw.

use convnet_audio::{Features, MAX_SAMPLE_RATE, TfMfccConfig, TfMfccTransform, TfSpectrogramConfig, Transform};
use serde::{Deserialize, Serialize};

use crate::error::{Result, SpeechError};

/// Front-end settings, named as the example's flags.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrontEnd {
    /// Samples per second every clip is brought to (16000).
    pub sample_rate: u32,
    /// Clip length in ms (1000).
    pub clip_duration_ms: u32,
    /// Analysis window in ms (30).
    pub window_size_ms: f64,
    /// Hop between windows in ms (10).
    pub window_stride_ms: f64,
    /// MFCC coefficients per frame (40).
    pub feature_bin_count: usize,
}

/// Longest clip a front end may declare: a minute (Speech Commands clips are one second).
pub const MAX_CLIP_MS: u32 = 60_000;

impl Default for FrontEnd {
    fn default() -> Self {
        FrontEnd {
            sample_rate: 16000,
            clip_duration_ms: 1000,
            window_size_ms: 30.0,
            window_stride_ms: 10.0,
            feature_bin_count: 40,
        }
    }
}

impl FrontEnd {
    /// Samples per clip (`desired_samples`).
    pub fn desired_samples(&self) -> usize {
        (self.sample_rate as u64 * self.clip_duration_ms as u64 / 1000) as usize
    }

    /// Window length in samples (truncated as TensorFlow's `int(...)`).
    pub fn window_size_samples(&self) -> usize {
        (self.sample_rate as f64 * self.window_size_ms / 1000.0) as usize
    }

    /// Hop in samples.
    pub fn window_stride_samples(&self) -> usize {
        (self.sample_rate as f64 * self.window_stride_ms / 1000.0) as usize
    }

    /// Frames per clip (`spectrogram_length`), 98 by default.
    pub fn frames(&self) -> usize {
        let (n, w, s) = (self.desired_samples(), self.window_size_samples(), self.window_stride_samples());
        if n < w || s == 0 { 0 } else { 1 + (n - w) / s }
    }

    /// The model input shape `[frames, feature_bin_count, 1]`.
    pub fn input_shape(&self) -> [usize; 3] {
        [self.frames(), self.feature_bin_count, 1]
    }

    /// Values per fingerprint.
    pub fn fingerprint_len(&self) -> usize {
        self.frames() * self.feature_bin_count
    }

    /// Checks the settings and plans the transform.
    pub fn transform(&self) -> Result<FingerprintTransform> {
        if self.sample_rate == 0 || self.clip_duration_ms == 0 || self.feature_bin_count == 0 {
            return Err(SpeechError::options("sample rate, clip duration and feature bins must be positive"));
        }
        // a front end read from a model file may declare anything: bound what it makes us allocate
        if self.sample_rate > MAX_SAMPLE_RATE || self.clip_duration_ms > MAX_CLIP_MS {
            return Err(SpeechError::options(format!(
                "a {} ms clip at {} Hz is over the limits ({MAX_CLIP_MS} ms, {MAX_SAMPLE_RATE} Hz)",
                self.clip_duration_ms, self.sample_rate
            )));
        }
        if self.window_size_samples() < 2 || self.window_stride_samples() == 0 || self.frames() == 0 {
            return Err(SpeechError::options(format!(
                "a {} ms window every {} ms does not fit a {} ms clip at {} Hz",
                self.window_size_ms, self.window_stride_ms, self.clip_duration_ms, self.sample_rate
            )));
        }
        let spectrogram = TfSpectrogramConfig {
            window_size: self.window_size_samples(),
            stride: self.window_stride_samples(),
            magnitude_squared: true,
        };
        let cfg = TfMfccConfig::new(self.feature_bin_count)
            .with_sample_rate(self.sample_rate)
            .with_spectrogram(spectrogram)
            .with_filterbank_channels(self.feature_bin_count.max(40));
        Ok(FingerprintTransform { front_end: *self, mfcc: TfMfccTransform::new(cfg)? })
    }
}

/// A planned [`FrontEnd`]: clip samples → frame-major fingerprint. Shareable between threads.
#[derive(Debug)]
pub struct FingerprintTransform {
    front_end: FrontEnd,
    mfcc: TfMfccTransform,
}

impl FingerprintTransform {
    /// The settings.
    pub fn front_end(&self) -> &FrontEnd {
        &self.front_end
    }

    /// The `[frames * coefficients]` fingerprint of one clip of exactly `desired_samples`.
    pub fn fingerprint(&self, clip: &[f32]) -> Result<Vec<f32>> {
        let expected = self.front_end.desired_samples();
        if clip.len() != expected {
            return Err(SpeechError::options(format!("a clip must have {expected} samples, got {}", clip.len())));
        }
        let features: Features = self.mfcc.apply(clip)?;
        Ok(features.to_frames_major())
    }
}

/// Per-coefficient standardisation of fingerprints: `(v - mean[c]) / std[c]` for coefficient
/// `c` of every frame. The statistics come from the training clips and are saved with the
/// model. TensorFlow feeds the raw MFCCs, whose first coefficient is two orders of magnitude
/// larger than the last ones (and near -170 over zero padding). Optional
/// ([`crate::DataOptions::normalize`]): the raw features generalised better here.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureNorm {
    /// Mean per coefficient.
    pub mean: Vec<f32>,
    /// Standard deviation per coefficient (at least 1e-3).
    pub std: Vec<f32>,
}

impl FeatureNorm {
    /// Statistics over frame-major fingerprints of `coefficients` values per frame.
    pub fn fit(prints: &[Vec<f32>], coefficients: usize) -> FeatureNorm {
        let (mut sum, mut sq, mut n) = (vec![0.0f64; coefficients], vec![0.0f64; coefficients], 0usize);
        for p in prints {
            for frame in p.chunks_exact(coefficients) {
                for ((s, q), &v) in sum.iter_mut().zip(&mut sq).zip(frame) {
                    *s += f64::from(v);
                    *q += f64::from(v) * f64::from(v);
                }
                n += 1;
            }
        }
        let n = n.max(1) as f64;
        let mean: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
        let std =
            sum.iter().zip(&sq).map(|(s, q)| ((q / n - (s / n).powi(2)).max(0.0).sqrt() as f32).max(1e-3)).collect();
        FeatureNorm { mean, std }
    }

    /// Standardises one frame-major fingerprint in place.
    pub fn apply(&self, print: &mut [f32]) {
        for frame in print.chunks_exact_mut(self.mean.len()) {
            for ((v, m), s) in frame.iter_mut().zip(&self.mean).zip(&self.std) {
                *v = (*v - m) / s;
            }
        }
    }
}

/// `samples` cut or zero-padded to `n` (as TensorFlow's `decode_wav(desired_samples=n)`).
pub fn fit_length(mut samples: Vec<f32>, n: usize) -> Vec<f32> {
    samples.resize(n, 0.0);
    samples
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_fingerprint_is_98_by_40() {
        let fe = FrontEnd::default();
        assert_eq!((fe.desired_samples(), fe.window_size_samples(), fe.window_stride_samples()), (16000, 480, 160));
        assert_eq!(fe.input_shape(), [98, 40, 1]);
        let t = fe.transform().unwrap();
        let clip: Vec<f32> = (0..16000).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
        let fp = t.fingerprint(&clip).unwrap();
        assert_eq!(fp.len(), 98 * 40);
        assert!(fp.iter().all(|v| v.is_finite()));
        assert!(t.fingerprint(&clip[..100]).is_err());
    }

    #[test]
    fn feature_norm_standardises_each_coefficient() {
        let prints = vec![vec![1.0, 10.0, 3.0, 30.0], vec![2.0, 20.0]];
        let norm = FeatureNorm::fit(&prints, 2);
        assert_eq!(norm.mean, [2.0, 20.0]);
        let mut p = prints[0].clone();
        norm.apply(&mut p);
        let sd = (2.0f32 / 3.0).sqrt();
        for (a, b) in p.iter().zip([-1.0 / sd, -1.0 / sd, 1.0 / sd, 1.0 / sd]) {
            assert!((a - b).abs() < 1e-5, "{p:?}");
        }
    }
}
