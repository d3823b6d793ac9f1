//! convnet-audio: audio input and feature front ends for the convnet toolkit.
//!
//! - WAV reading ([`read_wav`], [`load`]): PCM 8/16/24/32-bit and 32-bit float, any channel
//!   count (mixed to mono as their mean) and rate, scaled like `librosa.load`; [`resample()`] /
//!   [`Resampler`] approximate librosa's default soxr "HQ" resampler with `rubato`.
//! - librosa's features (librosa 0.11, its defaults): [`stft()`], [`power_spectrogram`],
//!   [`mel_filterbank`], [`melspectrogram`], [`power_to_db`], [`dct_ortho`], [`mfcc()`]; fast
//!   reusable front ends [`MfccExtractor`] / [`MfccTransform`] / [`LogMelTransform`].
//! - TensorFlow's speech-commands front end: [`tf_audio_spectrogram`] (`AudioSpectrogram`) and
//!   [`tf_mfcc`] / [`TfMfccTransform`] (`Mfcc`).
//! - Spoken digits ([`SpokenDigits`]) and speaker-disjoint splits of them ([`SpeakerTable`],
//!   [`speaker_folds`], [`speaker_holdout`]).
//!
//! Every front end returns [`Features`] `[n_coeffs, frames]` and implements [`Transform`], so a
//! data pipeline can switch between them. Bad input is an [`AudioError`] naming the file.
//! [`save_waveform_png`] and [`save_features_png`] draw them with `convnet-plot`.
//!
//! ```
//! use convnet_audio::{MfccConfig, MfccTransform, Transform};
//! let clip: Vec<f32> = (0..22050).map(|i| (i as f32 * 0.06).sin() * 0.3).collect();
//! let mfcc = MfccTransform::new(MfccConfig::new(22050, 40))?.apply(&clip)?;
//! assert_eq!((mfcc.n_coeffs, mfcc.frames), (40, 44)); // librosa.feature.mfcc(n_mfcc=40)
//! # Ok::<(), convnet_audio::AudioError>(())
//! ```

mod error;
mod fast;
mod features;
mod mel;
mod mfcc;
mod plot;
mod resample;
mod speakers;
mod spoken_digits;
mod stft;
mod tf;
mod wav;

pub use error::{AudioError, Result};
pub use features::{Features, Transform};
pub use mel::{MelNorm, MelScale, SparseFilterbank, hz_to_mel, mel_filterbank, mel_frequencies, mel_to_hz};
pub use mfcc::{
    DbConfig, LogMelTransform, MelSpectrogramConfig, MfccConfig, MfccExtractor, MfccTransform, dct_ortho,
    dct_ortho_matrix, melspectrogram, mfcc, power_to_db,
};
pub use plot::{RowAxis, save_features_png, save_waveform_png};
pub use realfft::num_complex::Complex;
pub use resample::{MAX_RESAMPLE_SECONDS, MAX_SAMPLE_RATE, Resampler, check_finite, resample};
pub use speakers::{SPEAKER_TABLE_NAME, SpeakerError, SpeakerTable, speaker_folds, speaker_holdout};
pub use spoken_digits::{
    DigitSplit, FrameFit, SpokenDigitError, SpokenDigitOptions, SpokenDigits, clip_features, label_of, load_split,
};
pub use stft::{ComplexSpectrogram, PadMode, StftConfig, StftPlan, StftScratch, hann_window, power_spectrogram, stft};
pub use tf::{
    MAX_TF_CHANNELS, MAX_TF_WINDOW, TfMfccConfig, TfMfccTransform, TfSpectrogramConfig, tf_audio_spectrogram, tf_mfcc,
    tf_mfcc_from_spectrogram,
};
pub use wav::{
    Audio, LIBROSA_DEFAULT_SR, TargetRate, Wav, WavInfo, WavSampleFormat, decode_wav, load, load_bytes, read_wav,
};
