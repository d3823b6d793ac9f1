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

    /// An image file did not decode (not PNG/JPEG, corrupt).
    #[error("{}: {reason}", path.display())]
    BadImage {
        /// The image file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// An image file ends early; decoding it would give grey rows where the data is missing.
    #[error("{}: truncated image: {reason}; re-copy or delete the file", path.display())]
    TruncatedImage {
        /// The image file.
        path: PathBuf,
        /// Where the data ends.
        reason: String,
    },

    /// An image is larger than the decoder accepts (a decompression-bomb guard).
    #[error(
        "{}: image is {width} x {height} = {} pixels, over the limit of {max_pixels}; shrink it first",
        path.display(),
        *width as u64 * *height as u64
    )]
    ImageTooLarge {
        /// The image file.
        path: PathBuf,
        /// Width in the header.
        width: u32,
        /// Height in the header.
        height: u32,
        /// The limit, in pixels.
        max_pixels: u64,
    },

    /// Resizing an image as the transform asks would make an enormous one (a thin strip whose
    /// short side is scaled up to the model's input size).
    #[error(
        "{}: a {width} x {height} image would be resized to {resized_width} x {resized_height}, over the \
         limit of {max_pixels} pixels; crop it to a less extreme aspect ratio first",
        path.display()
    )]
    ResizeTooLarge {
        /// The image file.
        path: PathBuf,
        /// Width of the image.
        width: usize,
        /// Height of the image.
        height: usize,
        /// Width the resize would produce.
        resized_width: usize,
        /// Height the resize would produce.
        resized_height: usize,
        /// The limit, in pixels.
        max_pixels: u64,
    },

    /// A dataset root is missing or is not a folder.
    #[error("{}: not a folder; expected an image folder (root/<class>/<image>)", path.display())]
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },

    /// A dataset root has no class sub-folders.
    #[error("{}: no class folders; expected root/<class>/<image>, one sub-folder per class", path.display())]
    NoClasses {
        /// The root.
        path: PathBuf,
    },

    /// A dataset root has fewer than two classes.
    #[error(
        "{}: needs at least 2 classes (one sub-folder per class), found {}: {classes:?}",
        path.display(),
        classes.len()
    )]
    TooFewClasses {
        /// The root.
        path: PathBuf,
        /// The classes found.
        classes: Vec<String>,
    },

    /// A class folder holds no `.jpg`/`.jpeg`/`.png` file.
    #[error("{}: class folder has no images (.jpg, .jpeg, .png); add some or remove the folder", path.display())]
    EmptyClass {
        /// The class folder.
        path: PathBuf,
    },

    /// No class folder of a dataset holds an image.
    #[error("{}: no images (.jpg, .jpeg, .png) in any class folder", path.display())]
    NoImages {
        /// The root.
        path: PathBuf,
    },

    /// A validation class folder that the training set does not have.
    #[error("{}: class {class:?} is not among the training classes; rename or remove it", path.display())]
    UnknownClass {
        /// The class folder.
        path: PathBuf,
        /// Its name.
        class: String,
    },

    /// A transform or loader setting that cannot work (zero batch size, zero size, ...).
    #[error("invalid setting: {reason}")]
    InvalidConfig {
        /// What is wrong, with the value received.
        reason: String,
    },
}
