//! The feature matrix every front end returns, and the [`Transform`] trait that lets a data
//! pipeline treat the librosa and TensorFlow front ends alike (one clip, a batch in parallel, or
//! a WAV file loaded at the transform's rate).

use std::path::Path;

use rayon::prelude::*;

use crate::error::Result;
use crate::wav::{TargetRate, load};

/// A `[n_coeffs, frames]` row-major feature matrix: row `i` is one coefficient, frequency bin or
/// mel band over time, as librosa lays out `S`, `mel` and `mfcc` (time is the last axis).
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    /// `[n_coeffs, frames]` values, row-major.
    pub data: Vec<f32>,
    /// Rows: coefficients, frequency bins or mel bands.
    pub n_coeffs: usize,
    /// Columns: analysis frames.
    pub frames: usize,
}

impl Features {
    /// Value of coefficient `c` at frame `t`.
    ///
    /// Panics if `c >= n_coeffs` or `t >= frames`.
    pub fn get(&self, c: usize, t: usize) -> f32 {
        assert!(c < self.n_coeffs && t < self.frames, "({c}, {t}) outside {}x{}", self.n_coeffs, self.frames);
        self.data[c * self.frames + t]
    }

    /// One coefficient over time, `[frames]`.
    pub fn row(&self, c: usize) -> &[f32] {
        &self.data[c * self.frames..(c + 1) * self.frames]
    }

    /// The same values frame-major, `[frames, n_coeffs]` (TensorFlow's layout: one row per frame,
    /// the "image" a speech-commands CNN sees as `[height = frames, width = coefficients]`).
    pub fn to_frames_major(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.data.len()];
        for c in 0..self.n_coeffs {
            for t in 0..self.frames {
                out[t * self.n_coeffs + c] = self.data[c * self.frames + t];
            }
        }
        out
    }

    /// Builds a `[n_coeffs, frames]` matrix from frame-major `[frames, n_coeffs]` values.
    ///
    /// Panics if `data.len() != frames * n_coeffs`.
    pub fn from_frames_major(data: &[f32], frames: usize, n_coeffs: usize) -> Self {
        assert_eq!(data.len(), frames * n_coeffs, "data is not [{frames}, {n_coeffs}]");
        let mut out = vec![0.0; data.len()];
        for t in 0..frames {
            for c in 0..n_coeffs {
                out[c * frames + t] = data[t * n_coeffs + c];
            }
        }
        Features { data: out, n_coeffs, frames }
    }
}

/// A feature front end usable in a data pipeline: immutable, shareable between threads, with
/// its scratch memory managed inside.
pub trait Transform: Send + Sync {
    /// The sample rate the transform expects its input at.
    fn sample_rate(&self) -> u32;

    /// `(n_coeffs, frames)` for a clip of `n_samples`; errors like [`Transform::apply`] would.
    fn output_shape(&self, n_samples: usize) -> Result<(usize, usize)>;

    /// Features of one mono clip at [`Transform::sample_rate`].
    fn apply(&self, samples: &[f32]) -> Result<Features>;

    /// Features of many clips, in parallel over clips (rayon).
    fn apply_batch(&self, clips: &[&[f32]]) -> Vec<Result<Features>> {
        clips.par_iter().map(|c| self.apply(c)).collect()
    }

    /// Loads `path` (mixed to mono, resampled to [`Transform::sample_rate`]) and applies the
    /// transform; every error names the file.
    fn apply_file(&self, path: &Path) -> Result<Features> {
        let audio = load(path, TargetRate::Hz(self.sample_rate()))?;
        self.apply(&audio.samples).map_err(|e| e.in_file(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_round_trip() {
        let f = Features { data: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], n_coeffs: 2, frames: 3 };
        assert_eq!(f.get(1, 0), 4.0);
        assert_eq!(f.row(0), &[1.0, 2.0, 3.0]);
        let fm = f.to_frames_major();
        assert_eq!(fm, vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        assert_eq!(Features::from_frames_major(&fm, 3, 2), f);
    }
}
