//! The tensor crate's error type.

/// What went wrong in a tensor op: always names the op and the offending values.
#[derive(Debug, thiserror::Error)]
pub enum TensorError {
    /// Operand shapes do not fit together.
    #[error("{op}: shape mismatch: {reason}")]
    ShapeMismatch { op: &'static str, reason: String },
    /// An argument is impossible (kernel larger than the padded input, groups not dividing channels, ...).
    #[error("{op}: invalid argument: {reason}")]
    InvalidArgument { op: &'static str, reason: String },
    /// `backward` was called on a tensor that does not depend on any variable.
    #[error("backward: the tensor does not require a gradient (no variable in its graph)")]
    NoGradient,
}

impl TensorError {
    pub(crate) fn shape(op: &'static str, reason: impl Into<String>) -> Self {
        Self::ShapeMismatch { op, reason: reason.into() }
    }
    pub(crate) fn invalid(op: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidArgument { op, reason: reason.into() }
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, TensorError>;
