//! `convnet serve`: the local web app (digits, photos, sound, model comparison). Thin: the
//! server is `convnet-serve`; this parses the options and loads or trains the digit model.

use anyhow::{Context, Result, bail};
use clap::Args;
use convnet_serve::models::{Models, load_or_train_mnist};
use convnet_serve::{Limits, ServeConfig};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Options of `convnet serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on; the default answers only this machine.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Folder with mnist_cnn.safetensors, sound_digit_cnn.safetensors (or sound_digit/...) and
    /// zoo checkpoints named <arch>[.<tag>].safetensors.
    #[arg(long, default_value = "models")]
    pub models: PathBuf,
    /// Largest upload, megabytes (413 above).
    #[arg(long, default_value_t = 10.0)]
    pub max_upload_mb: f64,
    /// Most pixels of an uploaded image (400 above).
    #[arg(long, default_value_t = 40_000_000)]
    pub max_pixels: u64,
    /// Longest audio clip, seconds (400 above).
    #[arg(long, default_value_t = 30.0)]
    pub max_audio_seconds: f64,
    /// Requests that may wait for the model before new ones get 503.
    #[arg(long, default_value_t = 64)]
    pub queue: usize,
    /// MNIST files for training the digit model on a first start without one.
    #[arg(long, help = crate::data::MNIST_DATA_HELP)]
    pub mnist_data: Option<PathBuf>,
    /// Epochs of that first-start training.
    #[arg(long, default_value_t = 1)]
    pub first_start_epochs: usize,
    /// Train on only the first N MNIST images on a first start (quick runs).
    #[arg(long)]
    pub first_start_limit: Option<usize>,
}

/// `convnet serve`.
pub fn serve(a: &ServeArgs) -> Result<()> {
    if !(a.max_upload_mb > 0.0 && a.max_audio_seconds > 0.0) || a.max_pixels == 0 || a.queue == 0 {
        bail!("--max-upload-mb, --max-pixels, --max-audio-seconds and --queue must be positive");
    }
    let limits = Limits {
        max_upload_bytes: (a.max_upload_mb * 1024.0 * 1024.0) as u64,
        max_pixels: a.max_pixels,
        max_audio_seconds: a.max_audio_seconds,
        queue: a.queue,
    };
    // the data is looked for only when the digit model has to be trained
    let mnist_data = match &a.mnist_data {
        Some(d) => d.clone(),
        None if a.models.join(convnet_serve::models::MNIST_FILE).is_file() => PathBuf::from("data/mnist"),
        None => crate::data::mnist_dir(None)?,
    };
    let digits = load_or_train_mnist(&a.models, &mnist_data, a.first_start_epochs, a.first_start_limit)?;
    let models = Models::load(digits, &a.models, limits)?;
    let photos: Vec<&str> = models.photos.iter().map(|m| m.name.as_str()).collect();
    println!(
        "convnet serve: digits: {}; photos: {}; sound: {}",
        a.models.join(convnet_serve::models::MNIST_FILE).display(),
        if photos.is_empty() {
            "none (put a timm checkpoint such as tf_efficientnet_lite0.safetensors in --models)".to_string()
        } else {
            photos.join(", ")
        },
        if models.sound.is_some() { "spoken-digit model" } else { "charts only (no sound_digit_cnn.safetensors)" },
    );
    let config = ServeConfig { addr: a.addr, models: a.models.clone(), limits };
    convnet_serve::api::run_blocking(&config, models).with_context(|| format!("serving on {}", a.addr))
}
