//! The one error type of `convnet-plot`: every variant names the output file.

use std::path::PathBuf;

/// Everything that can go wrong producing a chart.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The data cannot be plotted (empty series, wrong matrix shape, zero sample rate, ...).
    #[error("{}: cannot plot: {reason}", path.display())]
    InvalidInput {
        /// The PNG that was to be written.
        path: PathBuf,
        /// What is wrong with the input.
        reason: String,
    },

    /// Drawing failed inside `plotters` (also: the embedded font failed to load).
    #[error("{}: drawing failed: {reason}", path.display())]
    Render {
        /// The PNG that was to be written.
        path: PathBuf,
        /// The renderer's message.
        reason: String,
    },

    /// The PNG could not be written or renamed into place.
    #[error("{}: cannot write: {source}", path.display())]
    Io {
        /// The PNG that was to be written.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// PNG encoding failed.
    #[error("{}: PNG encoding failed: {reason}", path.display())]
    Encode {
        /// The PNG that was to be written.
        path: PathBuf,
        /// The encoder's message.
        reason: String,
    },
}
