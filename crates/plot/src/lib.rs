//! convnet-plot: PNG charts for training runs and audio, drawn with `plotters` into an RGB
//! buffer and encoded with `png`.
//!
//! - [`plot_train_history`] / [`plot_history_pair`]: loss and accuracy per epoch, like the
//!   Keras course's `show_train_history` (matplotlib).
//! - [`plot_confusion_matrix`]: counts heatmap, like scikit-learn's `ConfusionMatrixDisplay`.
//! - [`plot_heatmap`]: a grid with a colour bar (spectrogram, MFCC), like `librosa.display.specshow`.
//! - [`plot_waveform`]: amplitude against seconds, like `librosa.display.waveshow`.
//! - [`plot_comparison`]: model accuracy against operations and latency, bubbles sized by
//!   parameters (the seed's architecture chart).
//!
//! `*_png` variants return the PNG bytes instead of writing a file (for the web app).
//!
//! Text uses an embedded DejaVu Sans, so output never depends on the host's fonts. Every file is
//! written to a temporary file in the destination directory and renamed into place.
//!
//! ```no_run
//! let loss = [0.9, 0.5, 0.3];
//! let val_loss = [1.0, 0.6, 0.45];
//! convnet_plot::plot_train_history(
//!     "history_loss.png", "Train History", &loss, &val_loss, "train", "validation", "loss",
//! )?;
//! # Ok::<(), convnet_plot::PlotError>(())
//! ```

#![warn(missing_docs)]

mod colormap;
mod comparison;
mod confusion;
mod error;
mod heatmap;
mod history;
mod output;
mod render;
mod waveform;

pub use comparison::{ComparisonPoint, comparison_png, plot_comparison};
pub use confusion::plot_confusion_matrix;
pub use error::PlotError;
pub use heatmap::{heatmap_png, plot_heatmap};
pub use history::{plot_history_pair, plot_train_history};
pub use waveform::{plot_waveform, waveform_png};
