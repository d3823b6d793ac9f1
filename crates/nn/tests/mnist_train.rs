//! CI-sized training of the Keras MNIST CNN on the vendored MNIST: one epoch (Adam with
//! Keras' defaults) on the first 6,000 training images, then evaluation on the 10,000 test
//! images.
//!
//! The batch size, 8 (750 steps), was chosen on held-out *training* images (50,000-59,999),
//! never on the test set: one epoch reached 95.2-95.5 % there with batch 32, 95.0-95.8 % with
//! 16 and 95.9-96.4 % with 8 (two seeds each). One epoch of 6,000 images is too little data
//! for batch 128 or 32 to pass 95 % reliably.

mod common;

use convnet_nn::{Adam, FitOptions, Loss, Metric};

#[test]
fn one_epoch_on_6000_images_learns_mnist() {
    let (x, y, xt, yt) = common::mnist(6000, 10_000);
    let mut m = common::mnist_cnn(1);
    m.compile(Loss::sparse_categorical_crossentropy(), Adam::default(), &[Metric::Accuracy]).unwrap();
    let before = m.evaluate(&xt, &yt, 500).unwrap();
    let h = m.fit(&x, &y, FitOptions::new(8, 1).with_seed(1).with_verbose(2)).unwrap();
    assert_eq!(h.loss.len(), 1);
    let ev = m.evaluate(&xt, &yt, 500).unwrap();
    let acc = ev.accuracy.unwrap();
    eprintln!("test loss {:.4} -> {:.4}, accuracy {:.4} -> {acc:.4}", before.loss, ev.loss, before.accuracy.unwrap());
    assert!(before.accuracy.unwrap() < 0.3, "an untrained model guesses");
    assert!(h.loss[0] < 0.8, "mean training loss of the epoch {}", h.loss[0]);
    assert!(ev.loss < 0.3, "test loss {}", ev.loss);
    assert!(acc >= 0.95, "test accuracy {acc}");
    // predict agrees with evaluate's accuracy
    let p = m.predict(&xt, 300).unwrap();
    let labels = yt.as_sparse().unwrap();
    let correct = p
        .data()
        .chunks(10)
        .zip(labels)
        .filter(|(row, l)| {
            let best = row.iter().enumerate().fold(0, |b, (i, v)| if *v > row[b] { i } else { b });
            best == **l as usize
        })
        .count();
    assert!((correct as f64 / 10_000.0 - acc).abs() < 1e-9);
}
