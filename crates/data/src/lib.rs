//! convnet-data: datasets for the convnet toolkit.
//!
//! Today this is the MNIST IDX reader ([`read_idx_images`], [`read_idx_labels`], [`Mnist`]),
//! matching the file format described by LeCun et al. at the MNIST page and what
//! `keras.datasets.mnist.load_data()` returns: `uint8` pixels `[n, 28, 28]`, labels `0..=9`.
//! With the `download` cargo feature, `download_mnist` fetches the four files.
//!
//! ```no_run
//! let mnist = convnet_data::Mnist::load("data/mnist")?;
//! let x = mnist.train_images.to_f32_nhwc(); // [60000, 28, 28, 1], values in [0, 1]
//! assert_eq!(x.len(), mnist.train_images.n * 28 * 28);
//! # Ok::<(), convnet_data::DataError>(())
//! ```

#![warn(missing_docs)]

mod digit_image;
mod error;
mod idx;
mod mnist;

#[cfg(feature = "download")]
mod download;

pub use digit_image::{MNIST_SIDE, load_digit_image};
pub use error::{DataError, Result};
pub use idx::{Images, read_idx_images, read_idx_labels};
pub use mnist::{MNIST_FILES, Mnist, MnistFile, idx_md5, verify_mnist};

#[cfg(feature = "download")]
pub use download::{MNIST_MIRROR, download_mnist};
