//! `fit` with callbacks: EarlyStopping (patience, restore_best_weights) and
//! ModelCheckpoint (every epoch with a formatted path, or only on improvement), plus
//! batch-norm moving statistics updated by training.

use convnet_nn::{
    Activation, Adam, BatchNormalizationConfig, Callback, Control, DenseConfig, EarlyStopping, FitOptions, Logs, Loss,
    Metric, ModelCheckpoint, Result, Sequential, Sgd, Targets,
};
use convnet_tensor::Tensor;
use convnet_tensor::rng::Rng;

fn blobs(n: usize, seed: u64) -> (Tensor, Targets) {
    let mut rng = Rng::new(seed);
    let mut x = Vec::new();
    let mut y = Vec::new();
    for i in 0..n {
        let c = (i % 2) as u32;
        let centre = if c == 0 { -1.0 } else { 1.0 };
        x.push(3.0 + centre + 0.8 * rng.normal());
        x.push(-2.0 - centre + 0.8 * rng.normal());
        y.push(c);
    }
    (Tensor::from_vec(x, [n, 2]).unwrap(), Targets::Sparse(y))
}

fn model(lr: f64) -> Sequential {
    let mut m = Sequential::new([2]).with_seed(2);
    m.add(BatchNormalizationConfig::new())
        .unwrap()
        .add(DenseConfig::new(8).with_activation(Activation::Relu))
        .unwrap()
        .add(DenseConfig::new(2).with_activation(Activation::Softmax))
        .unwrap();
    m.compile(Loss::sparse_categorical_crossentropy(), Adam::new(lr), &[Metric::Accuracy]).unwrap();
    m
}

/// Stops training after a given epoch.
struct StopAfter(usize);

impl Callback for StopAfter {
    fn on_epoch_end(&mut self, epoch: usize, logs: &Logs, _model: &mut dyn convnet_nn::Trainable) -> Result<Control> {
        assert!(logs.contains_key("loss") && logs.contains_key("accuracy"));
        Ok(if epoch >= self.0 { Control::Stop } else { Control::Continue })
    }
}

#[test]
fn a_custom_callback_can_stop_training() {
    let (x, y) = blobs(32, 6);
    let mut m = model(0.01);
    let h = m.fit(&x, &y, FitOptions::new(8, 10).with_verbose(0).with_callback(StopAfter(2))).unwrap();
    assert_eq!(h.epochs(), 2);
    assert_eq!(h.stopped_epoch, Some(2));
    assert_eq!(m.optimizer().unwrap().iterations(), 8);
}

#[test]
fn batch_norm_moving_statistics_follow_the_data() {
    let (x, y) = blobs(256, 1);
    let mut m = model(0.01);
    m.fit(&x, &y, FitOptions::new(32, 5).with_verbose(0)).unwrap();
    let mean = m.get_weight("batch_normalization/moving_mean").unwrap().to_vec();
    let var = m.get_weight("batch_normalization/moving_variance").unwrap().to_vec();
    // 40 updates with momentum 0.99: 1 - 0.99^40 = 33 % of the way from (0, 1) to the data's
    // (3, -2) mean and ~1.64 variance
    let frac = 1.0 - 0.99f32.powi(40);
    assert!((mean[0] - 3.0 * frac).abs() < 0.1, "{mean:?}");
    assert!((mean[1] + 2.0 * frac).abs() < 0.1, "{mean:?}");
    assert!(var.iter().all(|v| (*v - (1.0 + 0.64 * frac)).abs() < 0.15), "{var:?}");
    // inference uses them: predictions do not depend on the batch
    let one = m.predict(&x, 1).unwrap();
    let all = m.predict(&x, 256).unwrap();
    assert!(one.data().iter().zip(all.data()).all(|(a, b)| (a - b).abs() < 1e-6));
}

#[test]
fn early_stopping_stops_and_restores_the_best_weights() {
    let (x, y) = blobs(200, 2);
    let (vx, vy) = blobs(100, 3);
    // a learning rate high enough to make the validation loss bounce
    let mut m = model(0.0);
    m.compile(Loss::sparse_categorical_crossentropy(), Sgd::new(2.0), &[Metric::Accuracy]).unwrap();
    let opts = FitOptions::new(200, 30)
        .with_validation_data(vx, vy)
        .with_verbose(0)
        .with_callback(EarlyStopping::new("val_loss").with_patience(2).with_restore_best_weights(true));
    let h = m.fit(&x, &y, opts).unwrap();
    let stopped = h.stopped_epoch.expect("the validation loss stops improving within 30 epochs");
    assert_eq!(h.val_loss.len(), stopped);
    let best = h.val_loss.iter().cloned().fold(f64::INFINITY, f64::min);
    let best_epoch = h.val_loss.iter().position(|v| *v == best).unwrap() + 1;
    assert_eq!(stopped, best_epoch + 2, "patience 2: {:?}", h.val_loss);
    let now = m.evaluate(&blobs(100, 3).0, &blobs(100, 3).1, 100).unwrap();
    assert!((now.loss - best).abs() < 1e-6, "restored weights give the best val_loss {best}, got {}", now.loss);
}

#[test]
fn model_checkpoint_saves_each_epoch_or_only_the_best() {
    let dir = tempfile::tempdir().unwrap();
    let (x, y) = blobs(64, 4);
    let (vx, vy) = blobs(32, 5);
    let every = dir.path().join("m-{epoch:02d}.safetensors").display().to_string();
    let best = dir.path().join("best.safetensors").display().to_string();
    let mut m = model(0.05);
    let opts = FitOptions::new(16, 3)
        .with_validation_data(vx.clone(), vy.clone())
        .with_verbose(0)
        .with_callback(ModelCheckpoint::new(every))
        .with_callback(ModelCheckpoint::new(best.clone()).with_save_best_only(true).with_monitor("val_accuracy"));
    let h = m.fit(&x, &y, opts).unwrap();
    for e in 1..=3 {
        assert!(dir.path().join(format!("m-{e:02}.safetensors")).is_file());
    }
    // the last epoch's file is the model as it ended
    let last = Sequential::load(dir.path().join("m-03.safetensors")).unwrap();
    assert_eq!(last.predict(&vx, 32).unwrap().data(), m.predict(&vx, 32).unwrap().data());
    // the best file holds the epoch with the highest val_accuracy (first one on ties)
    let best_acc = h.val_accuracy.iter().cloned().fold(0.0, f64::max);
    let loaded = Sequential::load(&best).unwrap();
    let ev = loaded.evaluate(&vx, &vy, 32).unwrap();
    assert!((ev.accuracy.unwrap() - best_acc).abs() < 1e-9, "{:?} vs {best_acc}", ev.accuracy);
}
