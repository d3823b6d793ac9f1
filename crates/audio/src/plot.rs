//! PNG pictures of audio and features through `convnet-plot`, laid out like
//! `librosa.display.waveshow` and `librosa.display.specshow(..., x_axis="time")` + colour bar:
//! time in seconds across, frequency (Hz), mel band or coefficient index up.

use std::path::Path;

use crate::error::Result;
use crate::features::Features;
use crate::wav::Audio;

/// What the rows of a [`Features`] matrix are, for the vertical axis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RowAxis {
    /// Linear frequency bins from 0 Hz up to this many Hz (a spectrogram: `sr / 2`).
    Hz(f64),
    /// Mel bands, labelled by index.
    MelBand,
    /// Cepstral coefficients, labelled by index.
    Coefficient,
}

/// Writes the waveform of `audio` to `path` (amplitude against seconds).
///
/// Errors: [`crate::AudioError::Plot`] (empty audio, I/O).
pub fn save_waveform_png(path: impl AsRef<Path>, audio: &Audio, title: &str) -> Result<()> {
    convnet_plot::plot_waveform(path, &audio.samples, audio.sample_rate, title)?;
    Ok(())
}

/// Writes `features` as a heatmap with a colour bar to `path`; frame `t` spans
/// `t * frame_seconds .. (t + 1) * frame_seconds` (`hop_length / sample_rate`).
///
/// Errors: [`crate::AudioError::Plot`] (empty matrix, non-positive `frame_seconds`, I/O).
pub fn save_features_png(
    path: impl AsRef<Path>,
    features: &Features,
    frame_seconds: f64,
    rows: RowAxis,
    title: &str,
    colorbar_label: &str,
) -> Result<()> {
    let y_axis = match rows {
        RowAxis::Hz(top) => ("Hz", 0.0, top),
        RowAxis::MelBand => ("mel band", 0.0, features.n_coeffs as f64),
        RowAxis::Coefficient => ("coefficient", 0.0, features.n_coeffs as f64),
    };
    convnet_plot::plot_heatmap(
        path,
        &features.data,
        features.n_coeffs,
        features.frames,
        ("Time (s)", 0.0, features.frames as f64 * frame_seconds),
        y_axis,
        title,
        colorbar_label,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AudioError, MfccConfig, MfccTransform, Transform};

    #[test]
    fn writes_pngs_and_reports_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let samples: Vec<f32> = (0..22050).map(|i| (i as f32 * 0.05).sin() * 0.4).collect();
        let audio = Audio { samples, sample_rate: 22050 };
        let wave = dir.path().join("wave.png");
        save_waveform_png(&wave, &audio, "waveform").unwrap();
        let mfcc = MfccTransform::new(MfccConfig::new(22050, 20)).unwrap().apply(&audio.samples).unwrap();
        let img = dir.path().join("mfcc.png");
        save_features_png(&img, &mfcc, 512.0 / 22050.0, RowAxis::Coefficient, "MFCC", "").unwrap();
        for p in [&wave, &img] {
            let bytes = std::fs::read(p).unwrap();
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", p.display());
        }
        let empty = Features { data: vec![], n_coeffs: 0, frames: 0 };
        let e = save_features_png(dir.path().join("x.png"), &empty, 0.01, RowAxis::MelBand, "", "").unwrap_err();
        assert!(matches!(e, AudioError::Plot(_)), "{e}");
    }
}
