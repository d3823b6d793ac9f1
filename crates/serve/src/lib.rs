//! convnet-serve: the local web app behind `convnet serve`. One page (plain HTML, CSS and
//! JavaScript compiled into the binary: no build step, no CDN, works offline) over a JSON API:
//!
//! | route | body | answer |
//! | --- | --- | --- |
//! | `GET /api/models` | | the models served and the limits |
//! | `POST /api/digit` | PNG/JPEG of a drawing | the MNIST CNN's ten probabilities |
//! | `POST /api/classify?model=NAME&top=5` | PNG/JPEG photo | top-k ImageNet classes, timm's preprocessing |
//! | `POST /api/audio` | WAV | waveform and MFCC charts, the spoken digit |
//! | `GET /api/compare` | | the `convnet compare` table (published figures, sizes) |
//! | `GET /api/compare.png` | | its chart |
//!
//! Layers: [`api`] (HTTP: routes, body limits, status codes) → [`worker`] (a bounded queue in
//! front of one inference thread) → [`models`] (plain functions from bytes to answers).
//! Errors are [`ServeError`]s, each one status code; nothing a client sends can panic the
//! server (and a bug that would is caught per request on the inference thread).

#![warn(missing_docs)]

pub mod api;
mod error;
pub mod models;
pub mod worker;

pub use error::{Result, ServeError};

use std::net::SocketAddr;
use std::path::PathBuf;

/// What the server accepts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// The largest request body, bytes (413 above).
    pub max_upload_bytes: u64,
    /// The most pixels of an uploaded image (400 above), checked from its header.
    pub max_pixels: u64,
    /// The longest audio clip, seconds (400 above).
    pub max_audio_seconds: f64,
    /// Requests waiting for the inference thread before new ones get 503.
    pub queue: usize,
}

impl Default for Limits {
    /// 10 MB, 40 megapixels, 30 s, 64 waiting requests.
    fn default() -> Self {
        Limits { max_upload_bytes: 10 * 1024 * 1024, max_pixels: 40_000_000, max_audio_seconds: 30.0, queue: 64 }
    }
}

/// How to run the server.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Where to listen (localhost by default: the app is for this machine).
    pub addr: SocketAddr,
    /// Folder with the models: `mnist_cnn.safetensors`, `sound_digit_cnn.safetensors`, zoo
    /// checkpoints named `<arch>[.<tag>].safetensors`.
    pub models: PathBuf,
    /// The limits.
    pub limits: Limits,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            models: PathBuf::from("models"),
            limits: Limits::default(),
        }
    }
}
