//! What the family test modules share: a reproducible random image batch, a short SGD run
//! whose loss must fall (the cheapest check that every op on the path has a gradient that
//! points the right way), and one train-mode step on formula weights that every trainable
//! tensor must get a finite gradient from (for networks too big to train in a test).

use crate::model::{Architecture, Model};
use crate::parity::{fill_parity, formula_input};
use convnet_nn::context::Cx;
use convnet_nn::context::Mode;
use convnet_nn::store::Params;
use convnet_nn::{Loss, Sgd, Targets, Trainable, Trainer, training};
use convnet_tensor::Tensor;
use convnet_tensor::rng::Rng;
use std::cell::RefCell;

/// `n` RGB images of `size`×`size`, NHWC, uniform in [-1, 1).
pub(crate) fn random_images(n: usize, size: usize, seed: u64) -> Tensor {
    let mut r = Rng::new(seed);
    let v: Vec<f32> = (0..n * size * size * 3).map(|_| r.uniform_range(-1.0, 1.0)).collect();
    Tensor::from_vec(v, [n, size, size, 3]).unwrap()
}

/// Six SGD steps (lr 0.05) on four 32×32 images of classes 1, 7, 3, 9 (the model needs at
/// least ten classes) must take the loss below 70 % of its first value.
pub(crate) fn assert_sgd_lowers_loss(model: &mut Model) {
    let x = random_images(4, 32, 9);
    let y = Targets::Sparse(vec![1, 7, 3, 9]);
    model.set_trainer(Some(Trainer::new(Loss::sparse_categorical_crossentropy(), Sgd::new(0.05), &[])));
    let losses: Vec<f32> = (0..6).map(|_| training::train_on_batch(model, &x, &y).unwrap().0).collect();
    assert!(losses[5] < 0.7 * losses[0], "loss {losses:?}");
}

/// One train-mode forward and backward of `net` on the formula weights: finite logits
/// of `[n, classes]`, a finite gradient of its own shape for every trainable tensor,
/// and a non-zero one for each of `probes` (keys the test wants reached).
pub(crate) fn assert_trains(net: &dyn Architecture, store: RefCell<Params>, nhwc: [usize; 4], probes: &[&str]) {
    let mut params = store.into_inner();
    fill_parity(&mut params, 11);
    let x = Tensor::from_vec(formula_input(nhwc, 3), nhwc).unwrap();
    let cx = Cx::new(&params, Mode::Train, 0);
    let y = net.forward_head(&cx, &net.forward_features(&cx, &x).unwrap(), false).unwrap();
    assert_eq!(y.dims(), [nhwc[0], net.num_classes()]);
    assert!(y.data().iter().all(|v| v.is_finite()), "logits {y:?}");
    let seed: Vec<f32> = (0..y.numel()).map(|i| ((i * 7 % 5) as f32 - 2.0) * 0.1).collect();
    let grads = y.backward_with(Tensor::from_vec(seed, y.dims().to_vec()).unwrap()).unwrap();
    for (id, e) in params.iter().filter(|(_, e)| e.trainable()) {
        let g = grads.get(params.get(id)).unwrap_or_else(|| panic!("{}: no gradient", e.key()));
        assert_eq!(g.dims(), e.value().dims(), "{}", e.key());
        assert!(g.data().iter().all(|v| v.is_finite()), "{}: non-finite gradient", e.key());
    }
    for key in probes {
        let id = params.id(key).unwrap_or_else(|| panic!("no tensor {key}"));
        let g = grads.get(params.get(id)).unwrap();
        assert!(g.data().iter().any(|v| *v != 0.0), "{key}: zero gradient");
    }
}
