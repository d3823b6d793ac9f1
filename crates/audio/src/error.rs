//! The one error type of `convnet-audio`. Errors about a file name it; errors raised by the pure
//! feature functions (which only see samples) carry `path: None` until a file-level caller fills
//! it in with [`AudioError::in_file`].

use std::path::{Path, PathBuf};

/// Result alias for this crate.
pub type Result<T, E = AudioError> = std::result::Result<T, E>;

/// Everything that can go wrong reading, resampling or featurising audio.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// The file could not be opened or read.
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        /// The file being read.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// The file is not a RIFF/WAVE file, or its header is malformed.
    #[error("{}: not a valid WAV file: {reason}", path.display())]
    NotWav {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The WAV file uses an encoding this crate does not decode (A-law, mu-law, ADPCM, 64-bit
    /// float, ...).
    #[error(
        "{}: unsupported WAV encoding: {encoding}; convert it to PCM 8/16/24/32-bit or 32-bit \
         float (e.g. `sox in.wav -e signed-integer -b 16 out.wav`)",
        path.display()
    )]
    Unsupported {
        /// The offending file.
        path: PathBuf,
        /// The encoding found (format tag and name where known).
        encoding: String,
    },

    /// The data chunk ends before the number of samples its header announces.
    #[error(
        "{}: truncated: the data chunk announces {expected} samples but only {got} are present",
        path.display()
    )]
    Truncated {
        /// The offending file.
        path: PathBuf,
        /// Samples (all channels) announced by the header.
        expected: usize,
        /// Complete samples actually present.
        got: usize,
    },

    /// The file holds no audio samples.
    #[error("{}: the WAV file holds no audio samples", path.display())]
    Empty {
        /// The offending file.
        path: PathBuf,
    },

    /// The signal is shorter than one analysis window.
    #[error(
        "{}: {samples} samples is shorter than one analysis window of {needed} samples; \
         pad the clip or use a smaller window",
        display_opt(path)
    )]
    TooShort {
        /// The file the samples came from, when known.
        path: Option<PathBuf>,
        /// Number of samples given.
        samples: usize,
        /// The window length needed.
        needed: usize,
    },

    /// A sample is NaN or infinite (a float WAV can hold them). librosa refuses such audio
    /// ("Audio buffer is not finite everywhere"); so do we, before any resampling or feature
    /// computation would turn it into silence or garbage.
    #[error(
        "{}: sample {index} (of channel-interleaved data) is {value}: audio must be finite; \
         repair or re-export the file",
        display_opt(path)
    )]
    NonFinite {
        /// The file the samples came from, when known.
        path: Option<PathBuf>,
        /// Index of the first bad sample.
        index: usize,
        /// Its value (NaN, inf or -inf).
        value: f32,
    },

    /// A header or a request asks for more than this crate will allocate (sample rate, length).
    #[error("{}: {reason}", display_opt(path))]
    TooLarge {
        /// The file, when known.
        path: Option<PathBuf>,
        /// What is too large, the limit and how to get under it.
        reason: String,
    },

    /// A configuration value is out of range (zero FFT size, `fmax > sr / 2`, ...).
    #[error("invalid configuration: {reason}")]
    InvalidConfig {
        /// What is wrong and how to fix it.
        reason: String,
    },

    /// The resampler failed (bad rates, internal error).
    #[error("{}: resampling from {from} Hz to {to} Hz failed: {reason}", display_opt(path))]
    Resample {
        /// The file the samples came from, when known.
        path: Option<PathBuf>,
        /// Source rate in Hz.
        from: u32,
        /// Target rate in Hz.
        to: u32,
        /// The resampler's message.
        reason: String,
    },

    /// Drawing a waveform or feature PNG failed (the message names the PNG).
    #[error(transparent)]
    Plot(#[from] convnet_plot::PlotError),
}

impl AudioError {
    /// Attaches `path` to an error raised on in-memory samples (`TooShort`, `Resample`) that does
    /// not name its file yet (`NonFinite`, `TooLarge` too); other errors are returned unchanged.
    pub fn in_file(self, path: &Path) -> Self {
        match self {
            AudioError::TooShort { path: None, samples, needed } => {
                AudioError::TooShort { path: Some(path.to_path_buf()), samples, needed }
            }
            AudioError::Resample { path: None, from, to, reason } => {
                AudioError::Resample { path: Some(path.to_path_buf()), from, to, reason }
            }
            AudioError::NonFinite { path: None, index, value } => {
                AudioError::NonFinite { path: Some(path.to_path_buf()), index, value }
            }
            AudioError::TooLarge { path: None, reason } => {
                AudioError::TooLarge { path: Some(path.to_path_buf()), reason }
            }
            other => other,
        }
    }

    /// Shorthand for [`AudioError::InvalidConfig`].
    pub(crate) fn config(reason: impl Into<String>) -> Self {
        AudioError::InvalidConfig { reason: reason.into() }
    }
}

/// `path` for messages, or `<samples>` for in-memory input.
fn display_opt(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => p.display().to_string(),
        None => "<samples>".to_string(),
    }
}
