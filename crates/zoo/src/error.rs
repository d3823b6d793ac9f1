//! The zoo's error type: every failure names what it got and, where it can, the fix.

pub use convnet_nn::Misshaped;
use convnet_nn::NnError;
use convnet_tensor::TensorError;

/// What went wrong in the zoo.
#[derive(Debug, thiserror::Error)]
pub enum ZooError {
    /// No registered model has this name.
    #[error("unknown model {name:?}{}", suggest(.suggestions))]
    UnknownModel {
        /// The name asked for.
        name: String,
        /// Registered names closest to it.
        suggestions: Vec<String>,
    },
    /// The model exists but has no pretrained config with this tag.
    #[error("model {arch} has no pretrained tag {tag:?}; known tags: {}", .known.join(", "))]
    UnknownTag {
        /// Architecture name.
        arch: String,
        /// The tag asked for.
        tag: String,
        /// Tags it has.
        known: Vec<String>,
    },
    /// A checkpoint does not fit the model.
    #[error("{}", mismatch_message(.source_name, .model, .missing, .unexpected, .misshaped))]
    CheckpointMismatch {
        /// Where the weights came from.
        source_name: String,
        /// The model they were loaded into.
        model: String,
        /// Keys the model has and the checkpoint lacks.
        missing: Vec<String>,
        /// Keys the checkpoint has and the model lacks.
        unexpected: Vec<String>,
        /// Keys present in both with different shapes.
        misshaped: Vec<Misshaped>,
    },
    /// A file that cannot be used (truncated, wrong format, wrong dtype, ...).
    #[error("{path}: {reason}")]
    BadFile {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An image that cannot be decoded or used.
    #[error("image {path}: {reason}")]
    BadImage {
        /// The image file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An argument out of range.
    #[error("{what}: {reason}")]
    InvalidArgument {
        /// Which argument.
        what: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Reading or decoding an image failed (the message names the file).
    #[error(transparent)]
    Data(#[from] convnet_data::DataError),
    /// A tensor op failed (shapes that do not fit, usually an input of the wrong size).
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// The layer foundation (parameter store, training, checkpoint writer) failed.
    #[error(transparent)]
    Nn(#[from] NnError),
    /// Drawing a chart failed (the comparison chart).
    #[error(transparent)]
    Plot(#[from] convnet_plot::PlotError),
}

impl ZooError {
    pub(crate) fn arg(what: &'static str, reason: impl Into<String>) -> Self {
        ZooError::InvalidArgument { what, reason: reason.into() }
    }
    pub(crate) fn bad_file(path: impl AsRef<std::path::Path>, reason: impl Into<String>) -> Self {
        ZooError::BadFile { path: path.as_ref().display().to_string(), reason: reason.into() }
    }
    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        ZooError::Io { path: path.as_ref().display().to_string(), source }
    }
}

fn suggest(s: &[String]) -> String {
    if s.is_empty() {
        "; `convnet models` lists the registered names".into()
    } else {
        format!("; did you mean {}?", s.join(", "))
    }
}

fn mismatch_message(
    source: &str,
    model: &str,
    missing: &[String],
    unexpected: &[String],
    misshaped: &[Misshaped],
) -> String {
    const SHOW: usize = 12;
    let list = |v: &[String]| {
        let mut s = v.iter().take(SHOW).cloned().collect::<Vec<_>>().join(", ");
        if v.len() > SHOW {
            s.push_str(&format!(", ... ({} more)", v.len() - SHOW));
        }
        s
    };
    let mut parts = vec![format!("weights from {source} do not fit {model}")];
    if !missing.is_empty() {
        parts.push(format!("missing {} key(s): {}", missing.len(), list(missing)));
    }
    if !unexpected.is_empty() {
        parts.push(format!("unexpected {} key(s): {}", unexpected.len(), list(unexpected)));
    }
    if !misshaped.is_empty() {
        let m: Vec<String> =
            misshaped.iter().map(|m| format!("{} (model {:?}, file {:?})", m.path, m.expected, m.got)).collect();
        parts.push(format!("{} mis-shaped: {}", misshaped.len(), list(&m)));
    }
    parts.join("; ")
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, ZooError>;
