//! The one error type of `convnet-data`: every variant names the file it is about.

use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = DataError> = std::result::Result<T, E>;

/// Everything that can go wrong reading or fetching a dataset.
///
/// Each variant carries the path of the file concerned, and its message says what was expected
/// and what was found.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened or read (missing, permissions, I/O error).
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        /// The file being read.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// The file could not be written (download or cache).
    #[error("{}: cannot write: {source}", path.display())]
    Write {
        /// The file being written.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// The file is not what it should be: wrong magic number, zero dimension, corrupt gzip, ...
    #[error("{}: {reason}", path.display())]
    BadFile {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The file ends before the payload its header announces.
    #[error(
        "{}: truncated: header announces {expected} bytes (header + payload) but the {} has only {got}; \
         re-download the file",
        path.display(),
        if *gzip { "decompressed stream" } else { "file" }
    )]
    Truncated {
        /// The offending file.
        path: PathBuf,
        /// Bytes the header announces (header included, after decompression).
        expected: u64,
        /// Bytes actually present (after decompression).
        got: u64,
        /// Whether the file was gzip-compressed.
        gzip: bool,
    },

    /// The file has bytes after the payload its header announces.
    #[error(
        "{}: {} trailing bytes: header announces {expected} bytes (header + payload) but the file has {got}",
        path.display(),
        got - expected
    )]
    TrailingData {
        /// The offending file.
        path: PathBuf,
        /// Bytes the header announces (header included, after decompression).
        expected: u64,
        /// Bytes actually present (after decompression).
        got: u64,
    },

    /// A label file holds a value outside `0..=9`.
    #[error("{}: label {index} is {value}, expected a digit 0..=9", path.display())]
    LabelOutOfRange {
        /// The label file.
        path: PathBuf,
        /// Position of the first bad label.
        index: usize,
        /// Its value.
        value: u8,
    },

    /// An image file and its label file disagree on the number of examples.
    #[error(
        "{} holds {images} images but {} holds {labels} labels",
        images_path.display(),
        labels_path.display()
    )]
    CountMismatch {
        /// The image file.
        images_path: PathBuf,
        /// The label file.
        labels_path: PathBuf,
        /// Number of images.
        images: usize,
        /// Number of labels.
        labels: usize,
    },

    /// A dataset file is not in the directory under any of the accepted names.
    #[error(
        "{}: not found (also tried {}); download MNIST there or pass the right directory",
        path.display(),
        tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    MissingFile {
        /// The first name looked for.
        path: PathBuf,
        /// The other names looked for.
        tried: Vec<PathBuf>,
    },

    /// The decompressed content does not have the published MD5 digest.
    #[error("{}: MD5 of the decompressed content is {got}, expected {expected}", path.display())]
    ChecksumMismatch {
        /// The file checked.
        path: PathBuf,
        /// The published digest (lowercase hex).
        expected: String,
        /// The digest found (lowercase hex).
        got: String,
    },

    /// An HTTP download failed.
    #[error("{}: download from {url} failed: {reason}", path.display())]
    Download {
        /// Where the file was to be written.
        path: PathBuf,
        /// The URL fetched.
        url: String,
        /// What went wrong.
        reason: String,
    },
}
