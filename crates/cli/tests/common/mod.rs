//! Helpers shared by the command-line tests.

use std::path::Path;

/// A tiny MNIST folder (raw IDX files): `n_train` and `n_test` 28x28 images of noise.
pub fn tiny_mnist(dir: &Path, n_train: u32, n_test: u32) {
    std::fs::create_dir_all(dir).unwrap();
    let mut seed = 7u32;
    let mut next = move || {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (seed >> 24) as u8
    };
    for (images, labels, n) in [
        ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", n_train),
        ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", n_test),
    ] {
        let mut b = Vec::new();
        for v in [0x803u32, n, 28, 28] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.extend((0..n * 784).map(|_| next()));
        std::fs::write(dir.join(images), b).unwrap();
        let mut l = Vec::new();
        for v in [0x801u32, n] {
            l.extend_from_slice(&v.to_be_bytes());
        }
        l.extend((0..n).map(|i| (i % 10) as u8));
        std::fs::write(dir.join(labels), l).unwrap();
    }
}
