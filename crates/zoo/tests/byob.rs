//! The byobnet, VoVNet and SelecSLS families beyond the parity fixtures: RepVGG's
//! re-parameterisation keeps the logits (timm's `reparameterize_model`), and each family
//! takes a training step through its branches.

use convnet_tensor::Tensor;
use convnet_tensor::rng::Rng;
use convnet_zoo::parity::fill_parity;
use convnet_zoo::{ZooOpts, create_model};

fn input(n: usize, h: usize, w: usize, c: usize, seed: u64) -> Tensor {
    let mut r = Rng::new(seed);
    Tensor::from_vec((0..n * h * w * c).map(|_| r.uniform_range(-1.0, 1.0)).collect::<Vec<_>>(), [n, h, w, c]).unwrap()
}

/// `max |a - b| / max |b|`.
fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64));
    let err = a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((*x as f64 - *y as f64).abs()));
    err / scale.max(f64::MIN_POSITIVE)
}

/// RepVGG-A0 and -B1g4 (grouped blocks, whose identity kernels are one-hot within each
/// group) with the parity formula's weights (every norm away from the identity): folding
/// every block's 3x3, 1x1 and identity branches into one 3x3 conv keeps the logits within
/// 1e-4 of their scale, removes the branch tensors, adds timm's `reparam_conv` keys, and a
/// second call folds nothing.
#[test]
fn repvgg_reparameterisation_keeps_the_logits() {
    for (name, blocks, folded_params) in [("repvgg_a0", 22, 8_309_384), ("repvgg_b1g4", 28, 36_125_416)] {
        let mut m = create_model(name, ZooOpts::default()).unwrap();
        fill_parity(m.params_mut(), 0);
        let x = input(2, 64, 64, 3, 5);
        let before = m.forward(&x).unwrap();
        assert_eq!(m.reparameterize().unwrap(), blocks, "{name}: blocks folded (stem included)");
        let after = m.forward(&x).unwrap();
        let err = rel_err(after.data(), before.data());
        eprintln!("{name}: reparameterised logits differ by {err:.2e} of their scale");
        assert!(err <= 1e-4, "{name}: {err}");
        let keys: Vec<&str> = m.params().iter().map(|(_, e)| e.key()).collect();
        assert!(keys.contains(&"stages.2.3.reparam_conv.weight") && keys.contains(&"stem.reparam_conv.bias"));
        assert!(!keys.iter().any(|k| k.contains("conv_1x1") || k.contains("identity")), "{name}");
        // timm's reparameterised count: one biased 3x3 conv per block instead of the branches
        assert_eq!(m.param_count(), folded_params, "{name}");
        assert_eq!(m.reparameterize().unwrap(), 0);
    }
    // families without branches have nothing to fold
    let mut g = create_model("gernet_s", ZooOpts::new().with_num_classes(3)).unwrap();
    assert_eq!(g.reparameterize().unwrap(), 0);
}

/// One training step of a model of each family at 64x64 (RepVGG with its branches: the 1x1
/// and identity norms get gradients): the loss and every gradient are finite, each
/// trainable tensor has one, and the probed tensors' are not all zero.
#[test]
fn byob_vovnet_selecsls_take_a_training_step() {
    use convnet_nn::{Loss, Mode, Sgd, Targets, Trainable, Trainer, training};
    for (name, probes) in [
        ("repvgg_a0", &["stages.1.1.conv_1x1.conv.weight", "stages.1.1.identity.weight", "stem.conv_kxk.bn.bias"][..]),
        ("gernet_s", &["stages.3.0.conv2_kxk.conv.weight", "stages.0.0.shortcut.bn.weight"][..]),
        ("ese_vovnet19b_dw", &["stages.1.blocks.0.attn.fc.weight", "stem.1.conv_dw.weight"][..]),
        ("selecsls42b", &["features.1.conv6.0.weight", "head.3.1.weight"][..]),
    ] {
        let mut m = create_model(name, ZooOpts::new().with_num_classes(5).with_seed(2)).unwrap();
        let loss = Loss::sparse_categorical_crossentropy().with_from_logits(true);
        m.set_trainer(Some(Trainer::new(loss, Sgd::new(0.01), &[])));
        let (x, y) = (input(2, 64, 64, 3, 8), Targets::Sparse(vec![1, 3]));
        let out = training::compute_gradients(&mut m, &x, &y, Mode::Train).unwrap();
        assert!(out.loss.is_finite(), "{name}: loss {}", out.loss);
        assert_eq!(out.gradients.len(), m.params().iter().filter(|(_, e)| e.trainable()).count(), "{name}");
        for (k, g) in &out.gradients {
            assert!(g.data().iter().all(|v| v.is_finite()), "{name} {k}: non-finite gradient");
        }
        for probe in probes {
            let g = &out.gradients.iter().find(|(k, _)| k == probe).unwrap_or_else(|| panic!("{name}: no {probe}")).1;
            assert!(g.data().iter().any(|v| *v != 0.0), "{name} {probe}: zero gradient");
        }
        training::apply_gradients(&mut m, out.gradients).unwrap();
    }
}
