//! The MNIST handwritten-digit dataset (LeCun, Cortes, Burges): the four standard IDX files,
//! loaded like `keras.datasets.mnist.load_data()` (60000 train / 10000 test, 28x28, `uint8`).

use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};
use crate::idx::{Images, read_decompressed, read_idx_images, read_idx_labels};

/// One of the four MNIST files: its standard name (without `.gz`) and the MD5 of its
/// uncompressed content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MnistFile {
    /// Standard file name without the `.gz` suffix, e.g. `train-images-idx3-ubyte`.
    pub name: &'static str,
    /// MD5 of the uncompressed IDX content, lowercase hex.
    pub md5: &'static str,
}

/// The four MNIST files, in the order train images, train labels, test images, test labels.
pub const MNIST_FILES: [MnistFile; 4] = [
    MnistFile { name: "train-images-idx3-ubyte", md5: "6bbc9ace898e44ae57da46a324031adb" },
    MnistFile { name: "train-labels-idx1-ubyte", md5: "a25bea736e30d166cdddb491f175f624" },
    MnistFile { name: "t10k-images-idx3-ubyte", md5: "2646ac647ad5339dbf082846283269ea" },
    MnistFile { name: "t10k-labels-idx1-ubyte", md5: "27ae3e4e09519cfbb04c329615203637" },
];

/// MNIST in memory: images `[n, 28, 28]` `u8` and labels `0..=9`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mnist {
    /// Training images (60000 in the full set).
    pub train_images: Images,
    /// Training labels, one per training image.
    pub train_labels: Vec<u8>,
    /// Test images (10000 in the full set).
    pub test_images: Images,
    /// Test labels, one per test image.
    pub test_labels: Vec<u8>,
}

impl Mnist {
    /// Loads the four standard files from `dir`.
    ///
    /// Each file may be gzip-compressed (`name.gz`, preferred when both exist) or raw (`name`).
    /// Errors: [`DataError::MissingFile`] if a file is absent, [`DataError::CountMismatch`] if
    /// images and labels disagree, [`DataError::BadFile`] if train and test image sizes differ,
    /// plus every error of [`read_idx_images`] / [`read_idx_labels`].
    pub fn load(dir: impl AsRef<Path>) -> Result<Mnist> {
        let dir = dir.as_ref();
        let [train_x, train_y, test_x, test_y] = MNIST_FILES.map(|f| find_file(dir, f.name));
        let (train_x, train_y, test_x, test_y) = (train_x?, train_y?, test_x?, test_y?);

        let train_images = read_idx_images(&train_x)?;
        let train_labels = read_idx_labels(&train_y)?;
        check_counts(&train_x, &train_y, &train_images, &train_labels)?;
        let test_images = read_idx_images(&test_x)?;
        let test_labels = read_idx_labels(&test_y)?;
        check_counts(&test_x, &test_y, &test_images, &test_labels)?;

        if (test_images.rows, test_images.cols) != (train_images.rows, train_images.cols) {
            return Err(DataError::BadFile {
                path: test_x,
                reason: format!(
                    "images are {}x{} but the training images are {}x{}",
                    test_images.rows, test_images.cols, train_images.rows, train_images.cols
                ),
            });
        }
        Ok(Mnist { train_images, train_labels, test_images, test_labels })
    }

    /// The first `n_train` training and `n_test` test examples (fewer if the set is smaller),
    /// for quick experiments.
    pub fn subset(&self, n_train: usize, n_test: usize) -> Mnist {
        let train_images = self.train_images.first(n_train);
        let test_images = self.test_images.first(n_test);
        Mnist {
            train_labels: self.train_labels[..train_images.n.min(self.train_labels.len())].to_vec(),
            test_labels: self.test_labels[..test_images.n.min(self.test_labels.len())].to_vec(),
            train_images,
            test_images,
        }
    }
}

/// MD5 of a file's content, decompressed first if it is gzip; lowercase hex.
///
/// Compare with [`MnistFile::md5`].
pub fn idx_md5(path: impl AsRef<Path>) -> Result<String> {
    let bytes = read_decompressed(path.as_ref())?;
    Ok(format!("{:x}", md5::compute(&bytes)))
}

/// Checks the MD5 of each of the four MNIST files in `dir` against [`MNIST_FILES`].
///
/// Errors: [`DataError::MissingFile`], [`DataError::ChecksumMismatch`], or a read error.
pub fn verify_mnist(dir: impl AsRef<Path>) -> Result<()> {
    for f in MNIST_FILES {
        let path = find_file(dir.as_ref(), f.name)?;
        let got = idx_md5(&path)?;
        if got != f.md5 {
            return Err(DataError::ChecksumMismatch { path, expected: f.md5.to_string(), got });
        }
    }
    Ok(())
}

/// `dir/name.gz` if it exists, else `dir/name`, else [`DataError::MissingFile`].
pub(crate) fn find_file(dir: &Path, name: &str) -> Result<PathBuf> {
    let gz = dir.join(format!("{name}.gz"));
    let raw = dir.join(name);
    if gz.is_file() {
        Ok(gz)
    } else if raw.is_file() {
        Ok(raw)
    } else {
        Err(DataError::MissingFile { path: gz, tried: vec![raw] })
    }
}

fn check_counts(images_path: &Path, labels_path: &Path, images: &Images, labels: &[u8]) -> Result<()> {
    if images.n != labels.len() {
        return Err(DataError::CountMismatch {
            images_path: images_path.to_path_buf(),
            labels_path: labels_path.to_path_buf(),
            images: images.n,
            labels: labels.len(),
        });
    }
    Ok(())
}
