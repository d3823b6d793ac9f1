//! The one error type of `convnet-nn`. Every variant names what it is about (a layer, a
//! parameter path, a file, an epoch and step) and, where it can, says how to fix it.

use std::path::PathBuf;

use convnet_tensor::TensorError;

/// Result alias of this crate.
pub type Result<T, E = NnError> = std::result::Result<T, E>;

/// A tensor whose shape differs from the one the model expects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Misshaped {
    /// Parameter path (`conv2d/kernel`).
    pub path: String,
    /// Shape the model has.
    pub expected: Vec<usize>,
    /// Shape the file or caller gave.
    pub got: Vec<usize>,
}

/// Everything that can go wrong building, training, saving or loading a model.
#[derive(Debug, thiserror::Error)]
pub enum NnError {
    /// A tensor op failed (shapes that do not fit, impossible arguments).
    #[error(transparent)]
    Tensor(#[from] TensorError),

    /// A layer's arguments are impossible for its input (kernel larger than the input with
    /// valid padding, groups not dividing the channels, a zero size, ...).
    #[error("layer {layer}: {reason}")]
    InvalidLayer {
        /// The layer's name (or its class name when it has none yet).
        layer: String,
        /// What is wrong and how to fix it.
        reason: String,
    },

    /// An argument outside a layer is invalid (batch size 0, unknown loss name, ...).
    #[error("invalid argument `{name}`: {reason}")]
    InvalidArgument {
        /// The argument.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// The data given to the model does not have the shape it was built for.
    #[error("input of shape {got:?} does not fit the model: expected [batch, {}]", join(expected))]
    InputShape {
        /// Per-sample shape the model expects.
        expected: Vec<usize>,
        /// The whole shape received.
        got: Vec<usize>,
    },

    /// Targets do not fit the predictions or the loss.
    #[error("targets: {reason}")]
    Targets {
        /// What is wrong with them.
        reason: String,
    },

    /// Two layers would have the same name.
    #[error("duplicate layer name `{name}`: names in a model must be unique")]
    DuplicateName {
        /// The repeated name.
        name: String,
    },

    /// `fit`, `evaluate` or `train_on_batch` was called before `compile`.
    #[error("the model must be compiled first: call `compile(loss, optimizer, metrics)`")]
    NotCompiled,

    /// The training loss became NaN or infinite: training stops before the update.
    #[error(
        "loss is {value} at epoch {epoch}, step {step}: training stopped before applying the \
         update; lower the learning rate or check the inputs for NaN"
    )]
    NonFiniteLoss {
        /// Epoch, 1-based.
        epoch: usize,
        /// Step within the epoch, 1-based.
        step: usize,
        /// The loss value.
        value: f32,
    },

    /// No parameter has this path.
    #[error("no parameter `{path}` in the model")]
    UnknownParameter {
        /// The path asked for.
        path: String,
    },

    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// A file is not a model or weights file this crate can read (not safetensors,
    /// truncated, missing or corrupt architecture metadata, wrong dtype, ...).
    #[error("{}: {reason}", path.display())]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The tensors given (from a file or a map) do not match the model's parameters.
    #[error("{}", describe_mismatch(source_name, missing, unexpected, misshaped))]
    WeightsMismatch {
        /// Where the tensors came from (a file path or "weights").
        source_name: String,
        /// Parameters of the model with no tensor.
        missing: Vec<String>,
        /// Tensors with no parameter of that path.
        unexpected: Vec<String>,
        /// Tensors whose shape differs from the parameter's.
        misshaped: Vec<Misshaped>,
    },

    /// A model trained through [`crate::Trainable`] failed in its own code (a zoo model's
    /// forward pass or checkpoint writer).
    #[error("{0}")]
    Model(Box<dyn std::error::Error + Send + Sync>),
}

fn join(dims: &[usize]) -> String {
    dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
}

fn describe_mismatch(source: &str, missing: &[String], unexpected: &[String], misshaped: &[Misshaped]) -> String {
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("missing tensors: {}", missing.join(", ")));
    }
    if !unexpected.is_empty() {
        parts.push(format!("unexpected tensors: {}", unexpected.join(", ")));
    }
    if !misshaped.is_empty() {
        let list: Vec<String> =
            misshaped.iter().map(|m| format!("{} (model {:?}, got {:?})", m.path, m.expected, m.got)).collect();
        parts.push(format!("mis-shaped tensors: {}", list.join(", ")));
    }
    format!("{source}: weights do not match the model: {}", parts.join("; "))
}

impl NnError {
    pub(crate) fn layer(layer: impl Into<String>, reason: impl Into<String>) -> Self {
        NnError::InvalidLayer { layer: layer.into(), reason: reason.into() }
    }
    /// An invalid argument `name`, with what is wrong.
    pub fn arg(name: &'static str, reason: impl Into<String>) -> Self {
        NnError::InvalidArgument { name, reason: reason.into() }
    }
    /// One mis-shaped tensor, from `source`.
    pub fn misshaped(source: impl Into<String>, m: Misshaped) -> Self {
        NnError::WeightsMismatch { source_name: source.into(), missing: vec![], unexpected: vec![], misshaped: vec![m] }
    }
    /// A failure of a trained model's own code.
    pub fn model(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        NnError::Model(Box::new(e))
    }
    pub(crate) fn targets(reason: impl Into<String>) -> Self {
        NnError::Targets { reason: reason.into() }
    }
    /// A file this crate cannot use, with why.
    pub fn bad_file(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        NnError::BadFile { path: path.into(), reason: reason.into() }
    }
}
