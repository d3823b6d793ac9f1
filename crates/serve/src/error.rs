//! The server's one error type. Each variant is an HTTP status: the client's mistakes are 4xx
//! with a message saying what was wrong and what is accepted, the server's own trouble 5xx.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// What a request can run into.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The upload is larger than the configured limit (413).
    #[error("the upload is {got} bytes or more; the limit is {limit} bytes (--max-upload-mb)")]
    TooLarge {
        /// Bytes seen (at least).
        got: u64,
        /// The limit.
        limit: u64,
    },
    /// The request cannot be used: not an image, too many pixels, audio too long... (400).
    #[error("{0}")]
    BadRequest(String),
    /// A name that is not served (404).
    #[error("{0}")]
    NotFound(String),
    /// Every queue slot is taken: try again shortly (503).
    #[error("the server is busy ({queued} requests queued); try again in a moment")]
    Busy {
        /// The queue's capacity.
        queued: usize,
    },
    /// A model this request needs is not available (503: the server runs, the feature does not).
    #[error("{0}")]
    Unavailable(String),
    /// Something failed on the server's side (500).
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServeError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ServeError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ServeError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ServeError::NotFound(_) => StatusCode::NOT_FOUND,
            ServeError::Busy { .. } | ServeError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ServeError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ServeError {
    /// `{"error": message}` with the variant's status.
    fn into_response(self) -> Response {
        (self.status(), Json(serde_json::json!({ "error": self.to_string() }))).into_response()
    }
}

/// Shorthand for handler results.
pub type Result<T, E = ServeError> = std::result::Result<T, E>;
