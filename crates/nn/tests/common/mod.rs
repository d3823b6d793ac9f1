//! Shared helpers of the integration tests: the classic Keras MNIST CNN and the vendored
//! MNIST data (`data/mnist`, read with `convnet-data`).

#![allow(dead_code)]

use convnet_nn::{
    Activation, Conv2dConfig, DenseConfig, DropoutConfig, FlattenConfig, MaxPooling2dConfig, Padding, Sequential,
    Targets,
};
use convnet_tensor::Tensor;

/// The Keras course's MNIST CNN (uncompiled).
pub fn mnist_cnn(seed: u64) -> Sequential {
    let mut m = Sequential::new([28, 28, 1]).with_seed(seed);
    m.add(Conv2dConfig::new(32, 5).with_padding(Padding::Same).with_activation(Activation::Relu))
        .unwrap()
        .add(MaxPooling2dConfig::new(2))
        .unwrap()
        .add(Conv2dConfig::new(64, 5).with_padding(Padding::Same).with_activation(Activation::Relu))
        .unwrap()
        .add(MaxPooling2dConfig::new(2))
        .unwrap()
        .add(DropoutConfig::new(0.25))
        .unwrap()
        .add(FlattenConfig::new())
        .unwrap()
        .add(DenseConfig::new(128).with_activation(Activation::Relu))
        .unwrap()
        .add(DropoutConfig::new(0.5))
        .unwrap()
        .add(DenseConfig::new(10).with_activation(Activation::Softmax))
        .unwrap();
    m
}

/// The repository's vendored MNIST folder.
pub fn mnist_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist")
}

/// `(x_train, y_train, x_test, y_test)` limited to the first `n_train` / `n_test` images,
/// NHWC `/255` as in the Keras course.
pub fn mnist(n_train: usize, n_test: usize) -> (Tensor, Targets, Tensor, Targets) {
    let data = convnet_data::Mnist::load(mnist_dir()).expect("vendored MNIST in data/mnist").subset(n_train, n_test);
    let x = Tensor::from_vec(data.train_images.to_f32_nhwc(), data.train_images.shape_nhwc()).unwrap();
    let xt = Tensor::from_vec(data.test_images.to_f32_nhwc(), data.test_images.shape_nhwc()).unwrap();
    (x, Targets::from_labels(&data.train_labels), xt, Targets::from_labels(&data.test_labels))
}

/// Keras' `summary()` of [`mnist_cnn`], as in `fixtures/keras_mnist/summary.txt`.
pub const KERAS_SUMMARY: &str = "\
Model: \"sequential\"
┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┓
┃ Layer (type)                      ┃ Output Shape             ┃       Param # ┃
┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━┩
│ conv2d (Conv2D)                   │ (None, 28, 28, 32)       │           832 │
├───────────────────────────────────┼──────────────────────────┼───────────────┤
│ max_pooling2d (MaxPooling2D)      │ (None, 14, 14, 32)       │             0 │
├───────────────────────────────────┼──────────────────────────┼───────────────┤
│ conv2d_1 (Conv2D)                 │ (None, 14, 14, 64)       │        51,264 │
├───────────────────────────────────┼──────────────────────────┼───────────────┤
│ max_pooling2d_1 (MaxPooling2D)    │ (None, 7, 7, 64)         │             0 │
├───────────────────────────────────┼──────────────────────────┼───────────────┤
│ dropout (Dropout)                 │ (None, 7, 7, 64)         │             0 │
├───────────────────────────────────┼──────────────────────────┼───────────────┤
│ flatten (Flatten)                 │ (None, 3136)             │             0 │
├───────────────────────────────────┼──────────────────────────┼───────────────┤
│ dense (Dense)                     │ (None, 128)              │       401,536 │
├───────────────────────────────────┼──────────────────────────┼───────────────┤
│ dropout_1 (Dropout)               │ (None, 128)              │             0 │
├───────────────────────────────────┼──────────────────────────┼───────────────┤
│ dense_1 (Dense)                   │ (None, 10)               │         1,290 │
└───────────────────────────────────┴──────────────────────────┴───────────────┘
 Total params: 454,922 (1.74 MB)
 Trainable params: 454,922 (1.74 MB)
 Non-trainable params: 0 (0.00 B)
";
