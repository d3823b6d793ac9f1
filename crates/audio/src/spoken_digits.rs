//! The spoken-digit data set of the course (`train/<d>_<nnn>.wav`, `test/...`): one MFCC image
//! per clip, fixed to a number of frames, standardised, computed once in parallel and kept in
//! memory so every epoch (and every augmentation pass) reuses it without redoing the DSP.
//!
//! Normalisation is per clip and per coefficient ("cepstral mean and variance normalisation"):
//! each MFCC row is shifted to mean 0 and scaled to standard deviation 1 over the clip's real
//! frames, then padding frames are zeros. It needs no statistics from the training set, so a
//! saved model needs no extra metadata and `predict` on one file gives the same input as training.

use crate::{MfccConfig, MfccTransform, Transform};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Errors of [`SpokenDigits::load`]. A single unreadable clip is not one of them: it is
/// reported on stderr and counted in [`DigitSplit::skipped`].
#[derive(Debug, thiserror::Error)]
pub enum SpokenDigitError {
    /// The split folder could not be listed.
    #[error("{}: cannot list the folder: {source}", path.display())]
    Io {
        /// The folder.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The folder holds no `.wav` file.
    #[error("{}: no .wav files (expected <digit>_<nnn>.wav)", path.display())]
    Empty {
        /// The folder.
        path: PathBuf,
    },
    /// A file name does not start with a digit 0-9.
    #[error("{}: the file name does not start with a digit 0-9 (expected <digit>_<nnn>.wav)", path.display())]
    BadLabel {
        /// The file.
        path: PathBuf,
    },
    /// Every file in the folder failed to load.
    #[error("{}: none of the {count} .wav files could be read", path.display())]
    AllFailed {
        /// The folder.
        path: PathBuf,
        /// How many files were tried.
        count: usize,
    },
    /// The MFCC configuration is invalid.
    #[error(transparent)]
    Audio(#[from] crate::AudioError),
    /// `frames` or `n_mfcc` is zero.
    #[error("invalid spoken-digit options: {0}")]
    BadOptions(String),
}

/// How a clip's MFCC is brought to a fixed number of frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FrameFit {
    /// Keep the first `frames` frames; pad shorter clips with zeros (after normalisation).
    #[default]
    CropOrPad,
    /// The seed's `np.resize(mfcc, (n_mfcc, frames))`: the flat `[n_mfcc, t]` array is read in
    /// row-major order and repeated (or cut) to fill `n_mfcc * frames` values, so short clips
    /// wrap around and rows mix. Kept for comparison with the seed's numbers.
    NumpyResize,
}

/// Options of [`SpokenDigits::load`].
#[derive(Debug, Clone)]
pub struct SpokenDigitOptions {
    /// Sample rate the clips are resampled to (default 22050, librosa's).
    pub sample_rate: u32,
    /// MFCC coefficients (default 40).
    pub n_mfcc: usize,
    /// Frames per example (default 44: a 1 s clip at 22050 Hz, hop 512, `1 + 22050 / 512`).
    pub frames: usize,
    /// How clips are fitted to `frames`.
    pub fit: FrameFit,
}

impl Default for SpokenDigitOptions {
    fn default() -> Self {
        SpokenDigitOptions { sample_rate: 22050, n_mfcc: 40, frames: 1 + 22050 / 512, fit: FrameFit::CropOrPad }
    }
}

impl SpokenDigitOptions {
    /// The frame count of a 1 s clip at `sample_rate` with librosa's hop of 512.
    pub fn one_second_frames(sample_rate: u32) -> usize {
        1 + sample_rate as usize / 512
    }
}

/// One split: `x` is `[n, n_mfcc, frames, 1]` (NHWC, row-major) and `labels[i]` is 0..=9.
#[derive(Debug, Clone)]
pub struct DigitSplit {
    /// Features, `n * n_mfcc * frames` values.
    pub x: Vec<f32>,
    /// Digit of each example.
    pub labels: Vec<u32>,
    /// Source file of each example.
    pub files: Vec<PathBuf>,
    /// Files skipped because they could not be read.
    pub skipped: usize,
    /// MFCC coefficients (height).
    pub n_mfcc: usize,
    /// Frames (width).
    pub frames: usize,
}

impl DigitSplit {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split holds no example.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// NHWC shape `[n, n_mfcc, frames, 1]`.
    pub fn shape(&self) -> [usize; 4] {
        [self.len(), self.n_mfcc, self.frames, 1]
    }
}

/// The train and test splits of a spoken-digit folder.
#[derive(Debug, Clone)]
pub struct SpokenDigits {
    /// `DIR/train`.
    pub train: DigitSplit,
    /// `DIR/test`.
    pub test: DigitSplit,
}

impl SpokenDigits {
    /// Loads `dir/train` and `dir/test` (label = first character of each file name).
    pub fn load(dir: impl AsRef<Path>, options: &SpokenDigitOptions) -> Result<SpokenDigits, SpokenDigitError> {
        let dir = dir.as_ref();
        let transform = MfccTransform::new(MfccConfig::new(options.sample_rate, options.n_mfcc))?;
        Ok(SpokenDigits {
            train: load_split(&dir.join("train"), &transform, options)?,
            test: load_split(&dir.join("test"), &transform, options)?,
        })
    }
}

/// The digit a file name starts with.
pub fn label_of(path: &Path) -> Option<u32> {
    path.file_name()?.to_str()?.chars().next()?.to_digit(10)
}

/// Loads every `.wav` of one folder (sorted by name), MFCCs in parallel.
pub fn load_split(
    dir: &Path,
    transform: &MfccTransform,
    options: &SpokenDigitOptions,
) -> Result<DigitSplit, SpokenDigitError> {
    if options.frames == 0 || options.n_mfcc == 0 {
        return Err(SpokenDigitError::BadOptions("frames and n_mfcc must be positive".into()));
    }
    let io = |source| SpokenDigitError::Io { path: dir.to_path_buf(), source };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("wav")) {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(SpokenDigitError::Empty { path: dir.to_path_buf() });
    }
    let mut labels = Vec::with_capacity(files.len());
    for f in &files {
        labels.push(label_of(f).ok_or_else(|| SpokenDigitError::BadLabel { path: f.clone() })?);
    }
    let results: Vec<_> =
        files.par_iter().map(|f| transform.apply_file(f).map(|m| clip_features(&m, options))).collect();
    let per = options.n_mfcc * options.frames;
    let mut split = DigitSplit {
        x: Vec::with_capacity(files.len() * per),
        labels: Vec::new(),
        files: Vec::new(),
        skipped: 0,
        n_mfcc: options.n_mfcc,
        frames: options.frames,
    };
    for ((file, label), result) in files.iter().zip(labels).zip(results) {
        match result {
            Ok(x) => {
                split.x.extend_from_slice(&x);
                split.labels.push(label);
                split.files.push(file.clone());
            }
            Err(e) => {
                eprintln!("warning: skipping {e}");
                split.skipped += 1;
            }
        }
    }
    if split.is_empty() {
        return Err(SpokenDigitError::AllFailed { path: dir.to_path_buf(), count: files.len() });
    }
    if split.skipped > 0 {
        eprintln!("warning: {}: skipped {} of {} files", dir.display(), split.skipped, files.len());
    }
    Ok(split)
}

/// Normalises (per coefficient over the clip's frames) and fits one MFCC `[n_mfcc, t]` to
/// `[n_mfcc, frames]`, row-major (which is also `[H, W, 1]` NHWC for one example).
pub fn clip_features(m: &crate::Features, options: &SpokenDigitOptions) -> Vec<f32> {
    let (c, t, frames) = (m.n_coeffs, m.frames, options.frames);
    let mut norm = m.data.clone();
    for row in norm.chunks_mut(t.max(1)) {
        let n = row.len().max(1) as f32;
        let mean = row.iter().sum::<f32>() / n;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
        let inv = 1.0 / (var.sqrt() + 1e-5);
        row.iter_mut().for_each(|v| *v = (*v - mean) * inv);
    }
    let mut out = vec![0.0; options.n_mfcc * frames];
    match options.fit {
        FrameFit::CropOrPad => {
            for r in 0..c.min(options.n_mfcc) {
                let keep = t.min(frames);
                out[r * frames..r * frames + keep].copy_from_slice(&norm[r * t..r * t + keep]);
            }
        }
        FrameFit::NumpyResize => {
            if !norm.is_empty() {
                for (i, v) in out.iter_mut().enumerate() {
                    *v = norm[i % norm.len()];
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Features;

    #[test]
    fn crop_pad_and_numpy_resize() {
        let m = Features { data: vec![1.0, 3.0, 10.0, 30.0], n_coeffs: 2, frames: 2 };
        let o = SpokenDigitOptions { n_mfcc: 2, frames: 3, ..Default::default() };
        let x = clip_features(&m, &o);
        let a = 1.0 / (1.0 + 1e-5);
        assert!((x[0] + a).abs() < 1e-4 && (x[1] - a).abs() < 1e-4 && x[2] == 0.0);
        assert!((x[3] + a).abs() < 1e-4 && x[5] == 0.0);
        let r = clip_features(&m, &SpokenDigitOptions { fit: FrameFit::NumpyResize, ..o });
        assert!((r[2] + a).abs() < 1e-4 && (r[3] - a).abs() < 1e-4 && (r[4] + a).abs() < 1e-4);
    }

    #[test]
    fn empty_and_mislabelled_folders_are_errors() {
        let t = MfccTransform::new(MfccConfig::new(22050, 40)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let o = SpokenDigitOptions::default();
        assert!(matches!(load_split(dir.path(), &t, &o), Err(SpokenDigitError::Empty { .. })));
        std::fs::write(dir.path().join("x_001.wav"), b"junk").unwrap();
        assert!(matches!(load_split(dir.path(), &t, &o), Err(SpokenDigitError::BadLabel { .. })));
        std::fs::remove_file(dir.path().join("x_001.wav")).unwrap();
        std::fs::write(dir.path().join("3_001.wav"), b"junk").unwrap();
        assert!(matches!(load_split(dir.path(), &t, &o), Err(SpokenDigitError::AllFailed { count: 1, .. })));
    }

    #[test]
    fn loads_the_shared_sound_digit_set() {
        let Ok(shared) = std::env::var("CONVNET_SHARED") else {
            eprintln!("CONVNET_SHARED unset: skipping the SoundDigit loading test");
            return;
        };
        let set = SpokenDigits::load(Path::new(&shared).join("datasets/SoundDigit"), &Default::default()).unwrap();
        assert_eq!(set.train.shape(), [200, 40, 44, 1]);
        assert_eq!(set.test.shape(), [20, 40, 44, 1]);
        assert_eq!(set.train.skipped, 0);
        assert_eq!(set.train.x.len(), 200 * 40 * 44);
        for (f, &l) in set.train.files.iter().zip(&set.train.labels) {
            assert_eq!(label_of(f), Some(l));
        }
        assert_eq!((0..10).map(|d| set.test.labels.iter().filter(|&&l| l == d).count()).sum::<usize>(), 20);
        assert!(set.train.x.iter().all(|v| v.is_finite()));
    }
}
