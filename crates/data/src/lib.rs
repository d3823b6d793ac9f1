//! convnet-data: datasets and image preprocessing for the convnet toolkit.
//!
//! - MNIST IDX ([`read_idx_images`], [`read_idx_labels`], [`Mnist`]), matching the file format
//!   described by LeCun et al. at the MNIST page and what `keras.datasets.mnist.load_data()`
//!   returns: `uint8` pixels `[n, 28, 28]`, labels `0..=9`. With the `download` cargo feature,
//!   `download_mnist` fetches the four files.
//! - Image folders in torchvision's `ImageFolder` layout ([`ImageFolder`]), timm's eval and
//!   train transforms ([`EvalTransform`], [`TrainTransform`], configured by a [`DataConfig`]),
//!   and a threaded, deterministic batch [`Loader`] producing NHWC `f32` batches.
//!
//! ```no_run
//! let mnist = convnet_data::Mnist::load("data/mnist")?;
//! let x = mnist.train_images.to_f32_nhwc(); // [60000, 28, 28, 1], values in [0, 1]
//! assert_eq!(x.len(), mnist.train_images.n * 28 * 28);
//! # Ok::<(), convnet_data::DataError>(())
//! ```

#![warn(missing_docs)]

mod augment;
pub mod decode;
mod digit_image;
mod error;
mod folder;
mod idx;
mod loader;
mod mnist;
mod rng;
pub mod transforms;

#[cfg(feature = "download")]
mod download;

pub use augment::{CropBox, TrainTransform, random_resized_crop_params};
pub use decode::{MAX_PIXELS, Rgb8, decode_image, load_image};
pub use digit_image::{MNIST_SIDE, digit_from_rgb, load_digit_image};
pub use error::{DataError, Result};
pub use folder::{IMAGE_EXTENSIONS, ImageFolder};
pub use idx::{Images, parse_idx_images, parse_idx_labels, read_idx_images, read_idx_labels};
pub use loader::{Batch, Loader, LoaderConfig, Skipped, Transform};
pub use mnist::{MNIST_FILES, Mnist, MnistFile, idx_md5, verify_mnist};
pub use rng::{SplitMix64, shuffled_order};
pub use transforms::{DataConfig, EvalTransform, IMAGENET_MEAN, IMAGENET_STD, ImageF32, Interpolation};

#[cfg(feature = "download")]
pub use download::{MNIST_MIRROR, download_mnist};
