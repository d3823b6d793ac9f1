//! Saving and loading whole models and weights as one `.safetensors` file: bit-identical
//! predictions after a round trip, typed errors for bad files and mismatched tensors.

mod common;

use std::collections::HashMap;

use convnet_nn::saving::{CONFIG_KEY, read_safetensors, write_safetensors};
use convnet_nn::{
    Activation, AveragePooling2dConfig, BatchNormalizationConfig, Conv2dConfig, DenseConfig, FitOptions,
    GlobalAveragePooling2dConfig, Loss, Metric, NnError, Padding, Sequential, Sgd, Targets,
};
use convnet_tensor::Tensor;
use convnet_tensor::rng::Rng;

fn model() -> Sequential {
    let mut m = Sequential::new([9, 9, 3]).with_seed(11);
    m.add(Conv2dConfig::new(6, 3).with_strides(2).with_padding(Padding::Same).with_activation(Activation::Relu))
        .unwrap()
        .add(BatchNormalizationConfig::new())
        .unwrap()
        .add(Conv2dConfig::new(6, 3).with_groups(3).with_dilation_rate(1).with_use_bias(false))
        .unwrap()
        .add(AveragePooling2dConfig::new(2).with_padding(Padding::Same))
        .unwrap()
        .add(GlobalAveragePooling2dConfig::new())
        .unwrap()
        .add(DenseConfig::new(4).with_activation(Activation::Softmax).with_name("head"))
        .unwrap();
    m.compile(Loss::sparse_categorical_crossentropy(), Sgd::new(0.1).with_momentum(0.9), &[Metric::Accuracy]).unwrap();
    m
}

fn data(n: usize) -> (Tensor, Targets) {
    let mut rng = Rng::new(5);
    let x = Tensor::from_vec((0..n * 9 * 9 * 3).map(|_| rng.normal()).collect(), [n, 9, 9, 3]).unwrap();
    (x, Targets::Sparse((0..n).map(|i| (i % 4) as u32).collect()))
}

#[test]
fn a_loaded_model_predicts_bit_identically() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let mut m = model();
    let (x, y) = data(24);
    // train a little so that batch-norm statistics and weights are not their initial values
    m.fit(&x, &y, FitOptions::new(8, 2).with_verbose(0)).unwrap();
    m.save(&path).unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 1, "no temporary file left behind: {leftovers:?}");

    let loaded = Sequential::load(&path).unwrap();
    assert_eq!(loaded.config(), m.config());
    assert_eq!(loaded.compile_config(), m.compile_config());
    // a loaded model has a fresh optimizer: the summary of an untrained one
    assert_eq!(loaded.summary(), model().summary());
    let a = m.predict(&x, 7).unwrap();
    let b = loaded.predict(&x, 7).unwrap();
    assert_eq!(a.dims(), b.dims());
    assert!(a.data().iter().zip(b.data()).all(|(p, q)| p.to_bits() == q.to_bits()));
    let names: Vec<String> = read_safetensors(&path).unwrap().0.into_iter().map(|(k, _)| k).collect();
    assert!(names.contains(&"batch_normalization/moving_mean".to_string()), "{names:?}");
    assert!(names.contains(&"head/kernel".to_string()));
}

#[test]
fn weights_only_files_load_into_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let m = model();
    m.save_weights(&path).unwrap();
    let mut other = Sequential::new([9, 9, 3]).with_seed(99);
    for layer in m.config().layers {
        other.add(layer).unwrap();
    }
    assert_ne!(other.get_weight("head/kernel").unwrap().data(), m.get_weight("head/kernel").unwrap().data());
    other.load_weights(&path).unwrap();
    assert_eq!(other.get_weight("head/kernel").unwrap().data(), m.get_weight("head/kernel").unwrap().data());
    let err = Sequential::load(&path).unwrap_err();
    assert!(matches!(err, NnError::BadFile { .. }), "a weights-only file has no architecture: {err}");
}

#[test]
fn bad_files_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    model().save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();

    let truncated = dir.path().join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() - 10]).unwrap();
    let err = Sequential::load(&truncated).unwrap_err();
    assert!(matches!(&err, NnError::BadFile { path, .. } if path == &truncated), "{err}");

    let text = dir.path().join("text.safetensors");
    std::fs::write(&text, b"hello, this is not a model").unwrap();
    assert!(matches!(Sequential::load(&text), Err(NnError::BadFile { .. })));

    let missing = dir.path().join("missing.safetensors");
    assert!(matches!(Sequential::load(&missing), Err(NnError::Io { .. })));

    // drop one tensor, add an unknown one, reshape another
    let (mut tensors, metadata) = read_safetensors(&path).unwrap();
    tensors.retain(|(k, _)| k != "conv2d/bias");
    tensors.push(("extra/kernel".into(), Tensor::zeros([2])));
    for (k, t) in tensors.iter_mut() {
        if k == "head/bias" {
            *t = Tensor::zeros([5]);
        }
    }
    let edited = dir.path().join("edited.safetensors");
    write_safetensors(&edited, &tensors, metadata.clone()).unwrap();
    let err = Sequential::load(&edited).unwrap_err();
    let NnError::WeightsMismatch { missing, unexpected, misshaped, .. } = &err else { panic!("{err}") };
    assert_eq!(missing, &["conv2d/bias"]);
    assert_eq!(unexpected, &["extra/kernel"]);
    assert_eq!(misshaped.len(), 1);
    assert_eq!(
        (misshaped[0].path.as_str(), misshaped[0].expected.as_slice(), misshaped[0].got.as_slice()),
        ("head/bias", &[4][..], &[5][..])
    );

    let mut bad_meta: HashMap<String, String> = metadata;
    bad_meta.insert(CONFIG_KEY.into(), "{not json".into());
    let corrupt = dir.path().join("corrupt.safetensors");
    write_safetensors(&corrupt, &read_safetensors(&path).unwrap().0, bad_meta).unwrap();
    assert!(matches!(Sequential::load(&corrupt), Err(NnError::BadFile { .. })));
}

#[test]
fn the_mnist_model_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mnist.safetensors");
    let m = common::mnist_cnn(3);
    m.save(&path).unwrap();
    let loaded = Sequential::load(&path).unwrap();
    assert_eq!(loaded.summary(), common::KERAS_SUMMARY);
    let mut rng = Rng::new(1);
    let x = Tensor::from_vec((0..3 * 784).map(|_| rng.uniform()).collect(), [3, 28, 28, 1]).unwrap();
    let (a, b) = (m.predict(&x, 2).unwrap(), loaded.predict(&x, 2).unwrap());
    assert!(a.data().iter().zip(b.data()).all(|(p, q)| p.to_bits() == q.to_bits()));
}

/// A stored architecture declaring huge layers or inputs is checked against the file's
/// tensors before the network is built: a typed error, not an abort allocating the weights.
#[test]
fn declared_shapes_are_checked_before_building() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    model().save(&path).unwrap();
    let (tensors, metadata) = read_safetensors(&path).unwrap();
    let config = metadata[CONFIG_KEY].clone();
    let write = |name: &str, config: String| {
        assert_ne!(config, metadata[CONFIG_KEY], "{name}: the edit must apply");
        let mut m = metadata.clone();
        m.insert(CONFIG_KEY.into(), config);
        let p = dir.path().join(name);
        write_safetensors(&p, &tensors, m).unwrap();
        p
    };
    // 2^24 units: a [6, 2^24] kernel the file does not hold
    let units = write("units.safetensors", config.replacen("\"units\":4", "\"units\":16777216", 1));
    let err = Sequential::load(&units).unwrap_err();
    let NnError::WeightsMismatch { misshaped, missing, unexpected, .. } = &err else { panic!("{err}") };
    assert!(missing.is_empty() && unexpected.is_empty(), "{err}");
    let shapes: Vec<_> = misshaped.iter().map(|m| (m.path.as_str(), m.expected.clone())).collect();
    assert_eq!(shapes, [("head/bias", vec![16777216]), ("head/kernel", vec![6, 16777216])]);
    // an input of 2^24 x 2^24 pixels: over the per-example limit
    let input = write("input.safetensors", config.replacen("[9,9,3]", "[16777216,16777216,3]", 1));
    let err = Sequential::load(&input).unwrap_err();
    assert!(matches!(&err, NnError::BadFile { reason, .. } if reason.contains("the input")), "{err}");
    // numbers beyond any real model are refused before arithmetic on them can overflow
    let huge = write("huge.safetensors", config.replacen("\"units\":4", "\"units\":18446744073709551615", 1));
    let err = Sequential::load(&huge).unwrap_err();
    assert!(matches!(&err, NnError::BadFile { reason, .. } if reason.contains("over the limit")), "{err}");
}
