//! ConvNeXt and ViT beyond their timm fixtures: the variants without a parity fixture
//! run and expose timm's feature shapes, ViT runs at image sizes other than its position
//! embedding's (resampled in the graph) and trains there, and both families train with
//! stochastic depth on.

use convnet_nn::{Loss, Mode, Sgd, Targets, Trainable, Trainer, training};
use convnet_tensor::Tensor;
use convnet_tensor::rng::Rng;
use convnet_zoo::{ZooOpts, create_model};

fn input(n: usize, h: usize, w: usize, seed: u64) -> Tensor {
    let mut r = Rng::new(seed);
    Tensor::from_vec((0..n * h * w * 3).map(|_| r.uniform_range(-1.0, 1.0)).collect::<Vec<_>>(), [n, h, w, 3]).unwrap()
}

#[test]
fn variants_run_with_timm_feature_shapes() {
    // (name, input size, features shape after forward_features, pooled width)
    let cases: [(&str, usize, &[usize], usize); 5] = [
        ("convnext_atto_ols", 64, &[1, 2, 2, 320], 320),
        ("convnext_nano_ols", 64, &[1, 2, 2, 640], 640),
        ("convnext_tiny_hnf", 64, &[1, 2, 2, 768], 768),
        ("vit_tiny_patch16_224", 224, &[1, 197, 192], 192),
        ("vit_base_patch32_224", 224, &[1, 50, 768], 768),
    ];
    for (name, size, feats, width) in cases {
        let m = create_model(name, ZooOpts::new().with_num_classes(7)).unwrap();
        let x = input(1, size, size, 3);
        let f = m.forward_features(&x).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(f.dims(), feats, "{name}");
        assert_eq!(m.forward_head(&f, true).unwrap().dims(), [1, width], "{name}");
        let y = m.forward(&x).unwrap();
        assert_eq!(y.dims(), [1, 7], "{name}");
        assert!(y.data().iter().all(|v| v.is_finite()), "{name}");
    }
}

#[test]
fn convnext_head_options_reset_and_pre_logits() {
    // the MLP head's hidden layer is what pre-logits returns; a new classifier keeps it
    let mut m = create_model("convnext_atto", ZooOpts::new().with_num_classes(3)).unwrap();
    let x = input(2, 32, 32, 5);
    assert_eq!(m.forward(&x).unwrap().dims(), [2, 3]);
    m.reset_classifier(0, 1);
    assert_eq!(m.forward(&x).unwrap().dims(), [2, 320]);
    assert!(m.params().by_key("head.fc.weight").is_none() && m.params().by_key("head.norm.weight").is_some());
    m.reset_classifier(4, 1);
    assert_eq!(m.forward(&x).unwrap().dims(), [2, 4]);
}

#[test]
fn vit_resamples_its_position_embedding_for_other_sizes() {
    let m = create_model("vit_tiny_patch16_224", ZooOpts::new().with_num_classes(5)).unwrap();
    // 96x128: a 6x8 patch grid from the 14x14 embedding; 40x40 floors to 2x2 as the conv does
    for (h, w, tokens) in [(96, 128, 1 + 6 * 8), (40, 40, 1 + 4)] {
        let f = m.forward_features(&input(2, h, w, 4)).unwrap();
        assert_eq!(f.dims(), [2, tokens, 192]);
        assert!(f.data().iter().all(|v| v.is_finite()));
    }
    assert!(m.forward(&input(1, 8, 8, 4)).is_err(), "an image smaller than a patch is an error");
}

/// `steps` SGD steps on one fixed batch, with stochastic depth on; returns the first and
/// last loss and the gradient norms of `probes` at the first step.
fn train(name: &str, size: usize, steps: usize, lr: f64, probes: &[&str]) -> (f32, f32, Vec<f32>) {
    let opts = ZooOpts::new().with_num_classes(4).with_seed(3).with_drop_path_rate(0.1);
    let mut m = create_model(name, opts).unwrap();
    let loss = Loss::sparse_categorical_crossentropy().with_from_logits(true);
    m.set_trainer(Some(Trainer::new(loss, Sgd::new(lr), &[])));
    let (x, y) = (input(4, size, size, 6), Targets::Sparse(vec![0, 3, 1, 2]));
    let mut losses = Vec::new();
    let mut norms = Vec::new();
    for step in 0..steps {
        let out = training::compute_gradients(&mut m, &x, &y, Mode::Train).unwrap();
        assert!(out.loss.is_finite(), "{name}: loss {}", out.loss);
        if step == 0 {
            assert_eq!(out.gradients.len(), m.params().iter().filter(|(_, e)| e.trainable()).count(), "{name}");
            for p in probes {
                let g = &out.gradients.iter().find(|(k, _)| k == p).unwrap_or_else(|| panic!("{name}: no {p}")).1;
                norms.push(g.data().iter().map(|v| v * v).sum::<f32>().sqrt());
            }
        }
        losses.push(out.loss);
        training::apply_gradients(&mut m, out.gradients).unwrap();
    }
    (losses[0], *losses.last().unwrap(), norms)
}

#[test]
fn convnext_and_vit_train_on_a_fixed_batch() {
    let (first, last, norms) = train(
        "convnext_atto",
        32,
        4,
        0.05,
        &["stem.0.weight", "stages.2.blocks.5.gamma", "stages.3.downsample.1.weight"],
    );
    assert!(last < first, "convnext_atto: loss {first} -> {last}");
    assert!(norms.iter().all(|n| *n > 0.0 && n.is_finite()), "convnext_atto gradients {norms:?}");
    // at 48x48 the position embedding is resampled inside the graph: its gradient flows back
    let (first, last, norms) =
        train("vit_tiny_patch16_224", 48, 4, 0.05, &["pos_embed", "cls_token", "blocks.11.attn.qkv.weight"]);
    assert!(last < first, "vit_tiny: loss {first} -> {last}");
    assert!(norms.iter().all(|n| *n > 0.0 && n.is_finite()), "vit_tiny gradients {norms:?}");
}
