//! Errors of the speech-commands pipeline. Problems with single files in a data-set scan
//! (unreadable clips, missing list entries, short noise files) are warnings, not errors: they
//! are collected in [`crate::SpeechCommands::warnings`] and the file is skipped.

use std::path::PathBuf;

/// Result with [`SpeechError`].
pub type Result<T, E = SpeechError> = std::result::Result<T, E>;

/// What can go wrong in the speech-commands pipeline.
#[derive(Debug, thiserror::Error)]
pub enum SpeechError {
    /// A file or folder could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The data folder does not look like Speech Commands.
    #[error("{}: {reason}", path.display())]
    BadDataSet {
        /// The data folder.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A wanted word has no folder (or no clips) in the data set.
    #[error("{}: no clips for the wanted word `{word}`; words in this folder: {available}", path.display())]
    UnknownWord {
        /// The data folder.
        path: PathBuf,
        /// The word asked for.
        word: String,
        /// The words that exist, comma-separated.
        available: String,
    },
    /// Options that cannot work together.
    #[error("invalid speech options: {0}")]
    BadOptions(String),
    /// A saved model is not a speech-commands model.
    #[error("{}: {reason}", path.display())]
    BadModel {
        /// The model file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Audio decoding or feature extraction failed.
    #[error(transparent)]
    Audio(#[from] convnet_audio::AudioError),
    /// The network failed (shapes, files).
    #[error(transparent)]
    Nn(#[from] convnet_nn::NnError),
    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(#[from] convnet_tensor::TensorError),
}

impl SpeechError {
    pub(crate) fn options(reason: impl Into<String>) -> Self {
        SpeechError::BadOptions(reason.into())
    }
}
