//! One forward, backward and Adam step of the Keras MNIST CNN against Keras 3.15 /
//! TensorFlow 2.21 (`fixtures/keras_mnist/mnist_cnn_step.safetensors`): probabilities and
//! loss within 1e-5, every gradient within 1e-4 of its largest magnitude, the weights
//! after the step within 1e-6. Dropout is off (Keras' `training=False`), as in the fixture.

mod common;

use std::collections::HashMap;

use convnet_nn::{Adam, Loss, Metric, Mode, Targets};
use convnet_tensor::Tensor;
use safetensors::SafeTensors;

fn load(path: &std::path::Path) -> HashMap<String, Tensor> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.iter()
        .map(|(name, v)| {
            let data: Vec<f32> = match v.dtype() {
                safetensors::Dtype::F32 => {
                    v.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
                }
                safetensors::Dtype::I64 => {
                    v.data().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f32).collect()
                }
                other => panic!("{name}: unexpected dtype {other:?}"),
            };
            (name.to_string(), Tensor::from_vec(data, v.shape().to_vec()).unwrap())
        })
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn one_adam_step_matches_keras() {
    let Ok(shared) = std::env::var("CONVNET_SHARED") else {
        eprintln!("CONVNET_SHARED unset: skipping the keras_mnist/mnist_cnn_step fixture test");
        return;
    };
    let dir = std::path::Path::new(&shared).join("fixtures/keras_mnist");
    let f = load(&dir.join("mnist_cnn_step.safetensors"));
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("mnist_cnn_step.json")).unwrap()).unwrap();
    let keras_loss = meta["loss"].as_f64().unwrap();

    let mut model = common::mnist_cnn(0);
    let w0: Vec<(String, Tensor)> =
        f.iter().filter_map(|(k, v)| k.strip_prefix("w0/sequential/").map(|p| (p.to_string(), v.clone()))).collect();
    assert_eq!(w0.len(), 8);
    model.set_weights(&w0).unwrap();
    model.compile(Loss::sparse_categorical_crossentropy(), Adam::default(), &[Metric::Accuracy]).unwrap();

    let x = &f["x"];
    let y = Targets::Sparse(f["y"].data().iter().map(|&v| v as u32).collect());

    let probs = model.predict(x, 128).unwrap();
    let d = max_abs_diff(probs.data(), f["probs"].data());
    eprintln!("probs: max diff {d:.2e}");
    assert!(d < 1e-5, "probs differ by {d}");

    let out = model.compute_gradients(x, &y, Mode::Eval).unwrap();
    eprintln!("loss {} vs keras {keras_loss}", out.loss);
    assert!((out.loss as f64 - keras_loss).abs() < 1e-5, "loss {} vs keras {keras_loss}", out.loss);
    assert_eq!(out.gradients.len(), 8);
    for (path, g) in &out.gradients {
        let want = &f[&format!("grad/sequential/{path}")];
        let scale = want.data().iter().fold(0.0f32, |a, b| a.max(b.abs()));
        let d = max_abs_diff(g.data(), want.data());
        eprintln!("grad {path}: max diff {:.2e} of max |g|", d / scale);
        assert!(d <= 1e-4 * scale, "gradient {path}: max diff {d}, max |g| {scale}");
    }

    model.apply_gradients(&out.gradients).unwrap();
    for (path, w) in model.weights() {
        let want = &f[&format!("w1/sequential/{path}")];
        let d = max_abs_diff(w.data(), want.data());
        eprintln!("w1 {path}: max diff {d:.2e}");
        assert!(d < 1e-6, "weights {path} after one Adam step differ by {d}");
    }
}
