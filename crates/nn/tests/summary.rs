//! `Sequential::summary` against Keras 3's own table for the MNIST CNN
//! (`fixtures/keras_mnist/summary.txt`), byte for byte.

mod common;

use convnet_nn::{Adam, BatchNormalizationConfig, DenseConfig, Loss, Metric, Sequential};

#[test]
fn mnist_summary_equals_the_embedded_keras_table() {
    assert_eq!(common::mnist_cnn(0).summary(), common::KERAS_SUMMARY);
}

#[test]
fn mnist_summary_equals_the_keras_fixture_file() {
    let Ok(shared) = std::env::var("CONVNET_SHARED") else {
        eprintln!("CONVNET_SHARED unset: skipping the keras_mnist/summary.txt comparison");
        return;
    };
    let path = std::path::Path::new(&shared).join("fixtures/keras_mnist/summary.txt");
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let got = common::mnist_cnn(0).summary();
    assert_eq!(got, want, "\n--- got ---\n{got}\n--- keras ---\n{want}");
}

#[test]
fn non_trainable_and_optimizer_params_are_counted_like_keras() {
    let mut m = Sequential::new([3]).with_name("tiny");
    m.add(DenseConfig::new(4)).unwrap().add(BatchNormalizationConfig::new()).unwrap();
    let s = m.summary();
    assert!(s.starts_with("Model: \"tiny\"\n"), "{s}");
    // too long for its column: wrapped at the space, as rich wraps it
    assert!(s.contains("│ batch_normalization               │ (None, 4)                │            16 │\n│ (BatchNormalization)              │                          │               │\n"), "{s}");
    // 16 dense + 8 gamma/beta trainable, 8 moving statistics
    assert!(s.contains(" Total params: 32 (128.00 B)\n"), "{s}");
    assert!(s.contains(" Trainable params: 24 (96.00 B)\n"), "{s}");
    assert!(s.contains(" Non-trainable params: 8 (32.00 B)\n"), "{s}");
    let loss = Loss::sparse_categorical_crossentropy().with_from_logits(true);
    m.compile(loss, Adam::default(), &[Metric::Accuracy]).unwrap();
    let x = convnet_tensor::Tensor::from_vec(vec![0.5, -1.0, 2.0, 1.5, 0.0, -0.5], [2, 3]).unwrap();
    m.train_on_batch(&x, &convnet_nn::Targets::Sparse(vec![0, 1])).unwrap();
    let s = m.summary();
    // iteration + learning rate + m and v for 24 trainable values
    assert!(s.contains(" Optimizer params: 50 (204.00 B)\n"), "{s}");
    assert!(s.contains(" Total params: 82 (332.00 B)\n"), "{s}");
}
