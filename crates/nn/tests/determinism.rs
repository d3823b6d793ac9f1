//! Same seed and thread count, bit-identical training: two 1-epoch runs of the MNIST CNN
//! (dropout and shuffling on) on a small subset of the vendored MNIST give the same weights;
//! another seed gives others.

mod common;

use convnet_nn::{Adam, FitOptions, Loss, Metric, Sequential};

fn train(seed: u64) -> Sequential {
    let (x, y, _, _) = common::mnist(512, 0);
    let mut m = common::mnist_cnn(7);
    m.compile(Loss::sparse_categorical_crossentropy(), Adam::default(), &[Metric::Accuracy]).unwrap();
    m.fit(&x, &y, FitOptions::new(128, 1).with_seed(seed).with_verbose(0)).unwrap();
    m
}

#[test]
fn same_seed_same_threads_same_weights() {
    let (a, b, c) = convnet_tensor::with_threads(2, || (train(42), train(42), train(43)));
    let mut differs = false;
    for ((pa, ta), (pc, tc)) in a.weights().iter().zip(c.weights()) {
        assert_eq!(pa, &pc);
        differs |= ta.data() != tc.data();
    }
    for ((pa, ta), (pb, tb)) in a.weights().iter().zip(b.weights()) {
        assert_eq!(pa, &pb);
        let same = ta.data().iter().zip(tb.data()).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{pa} differs between two runs with the same seed");
    }
    assert!(differs, "another seed must give other weights");
}
