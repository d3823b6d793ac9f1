//! Every registered model: builds, has the registered parameter count, runs; the model API
//! (features, pre-logits, reset_classifier), checkpoints (round trip, strictness, class
//! count change, input-channel adaptation, bad files) and training (loss falls).

use convnet_tensor::Tensor;
use convnet_tensor::rng::Rng;
use convnet_zoo::{LoadOptions, ZooError, ZooOpts, create_model};

fn input(n: usize, h: usize, w: usize, c: usize, seed: u64) -> Tensor {
    let mut r = Rng::new(seed);
    Tensor::from_vec((0..n * h * w * c).map(|_| r.uniform_range(-1.0, 1.0)).collect::<Vec<_>>(), [n, h, w, c]).unwrap()
}

#[test]
fn classic_counts_equal_torchvision_and_lecun() {
    let count = |n: &str| create_model(n, ZooOpts::default()).unwrap().param_count();
    assert_eq!(count("alexnet"), 61_100_840);
    assert_eq!(count("googlenet"), 6_624_904);
    assert_eq!(count("lenet5"), 61_706);
}

/// `summary` counts every value of the state dict once (a stem's batch norm, which has no row
/// of its own, included; nested rows without double counting), shows NCHW shapes and says so.
#[test]
fn summary_rows_add_up_to_the_total_and_shapes_are_nchw() {
    for (name, size, first_shape) in [
        ("resnet18", [3, 64, 64], "(None, 64, 32, 32)"),
        ("efficientnet_b0", [3, 64, 64], "(None, 32, 32, 32)"),
        ("convnext_atto", [3, 64, 64], "(None, 40, 16, 16)"),
        ("mobilenetv3_small_050", [3, 64, 64], "(None, 16, 32, 32)"),
    ] {
        let m = create_model(name, ZooOpts::default()).unwrap();
        let table = m.summary(size).unwrap();
        let rows: usize = table.rows.iter().map(|r| r.params).sum();
        assert_eq!(rows, table.trainable + table.non_trainable, "{name}: rows and total differ\n{table}");
        let all: usize = m.params().iter().map(|(_, e)| e.value().numel()).sum();
        assert_eq!(rows, all, "{name}");
        let text = table.to_string();
        assert!(text.contains(first_shape), "{name}: no {first_shape}\n{text}");
        assert!(text.contains("Shapes are NCHW, as timm prints them: input (None, 3, 64, 64)"), "{text}");
        assert!(text.starts_with(&format!("Model: \"{}\"\n┏", m.name())), "Keras' table\n{text}");
    }
}

#[test]
fn heads_features_and_reset_classifier() {
    let mut m = create_model("resnet18", ZooOpts::new().with_num_classes(10)).unwrap();
    let x = input(2, 64, 64, 3, 1);
    let f = m.forward_features(&x).unwrap();
    assert_eq!(f.dims(), [2, 2, 2, 512]);
    assert_eq!(m.forward_head(&f, true).unwrap().dims(), [2, 512]);
    let y = m.forward(&x).unwrap();
    assert_eq!(y.dims(), [2, 10]);
    assert_eq!(m.forward_head(&f, false).unwrap().data(), y.data());
    m.reset_classifier(3, 7);
    assert_eq!(m.forward(&x).unwrap().dims(), [2, 3]);
    assert_eq!(m.params().by_key("fc.weight").unwrap().torch_shape(), vec![3, 512]);
    m.reset_classifier(0, 7);
    assert_eq!(m.forward(&x).unwrap().dims(), [2, 512]);
    assert!(m.params().by_key("fc.weight").is_none());
    // wrong layout is a typed error naming the fix
    let err = m.forward(&Tensor::zeros([1, 3, 32, 32])).unwrap_err();
    assert!(err.to_string().contains("NHWC") && err.to_string().contains("transpose"), "{err}");
    // a wrong channel count in the right layout says so, and asks for no transpose
    let err = m.forward(&Tensor::zeros([1, 32, 32, 1])).unwrap_err().to_string();
    assert!(err.contains("1 channels, but the model takes 3") && !err.contains("transpose"), "{err}");
}

#[test]
fn mobilenetv3_pools_before_its_head_conv() {
    // features end at the last block (576 wide); the head conv after pooling gives the
    // 1024-wide pre-logits the classifier reads, and a new classifier keeps that width
    let mut m = create_model("mobilenetv3_small_100", ZooOpts::new().with_num_classes(10)).unwrap();
    let x = input(2, 64, 64, 3, 1);
    let f = m.forward_features(&x).unwrap();
    assert_eq!(f.dims(), [2, 2, 2, 576]);
    assert_eq!(m.forward_head(&f, true).unwrap().dims(), [2, 1024]);
    assert_eq!(m.forward_head(&f, false).unwrap().data(), m.forward(&x).unwrap().data());
    m.reset_classifier(3, 7);
    assert_eq!(m.params().by_key("classifier.weight").unwrap().torch_shape(), vec![3, 1024]);
    assert_eq!(m.params().by_key("conv_head.bias").unwrap().torch_shape(), vec![1024]);
}

#[test]
fn batches_run_in_parts_give_the_whole_batch_logits() {
    // EfficientNet-B0's widest convolution output is the first expansion, 112x112x96 floats
    // at 224x224: 4.8 MB per image, and the model is memory-bound (about 320 multiply-adds
    // per float of it), so 5 images fit its 24 MiB sub-batch budget
    let m = create_model("efficientnet_b0", ZooOpts::new()).unwrap();
    assert_eq!(m.sub_batch(&Tensor::zeros([16, 224, 224, 3])).unwrap(), 5);
    // a single image is never split; the budget scales with the input's area (56x56x96 at 112)
    assert_eq!(m.sub_batch(&Tensor::zeros([1, 224, 224, 3])).unwrap(), 1);
    assert_eq!(m.sub_batch(&Tensor::zeros([4, 112, 112, 3])).unwrap(), 20);
    // ResNet-50 is compute-bound (about 5,000 multiply-adds per float of its widest output,
    // 3.2 MB per image): 64 MiB hold 20 images
    let r = create_model("resnet50", ZooOpts::new()).unwrap();
    assert_eq!(r.sub_batch(&Tensor::zeros([16, 224, 224, 3])).unwrap(), 20);
    // five images in parts of at most two (2 + 1 + 2) give the logits of the whole batch
    let x = input(5, 48, 48, 3, 4);
    let whole = m.forward_in_parts(&x, 5).unwrap();
    let parts = m.forward_in_parts(&x, 2).unwrap();
    assert_eq!(parts.dims(), [5, 1000]);
    for (i, (a, b)) in whole.data().iter().zip(parts.data()).enumerate() {
        assert!((a - b).abs() <= 1e-4 * (1.0 + a.abs()), "logit {i}: {a} whole, {b} in parts");
    }
    assert_eq!(m.forward(&x).unwrap().data(), whole.data(), "a small batch runs whole");
}

#[test]
fn small_inputs_run_through_every_family() {
    for (name, size) in [
        ("efficientnet_b0", 64),
        ("resnet10t", 33),
        ("ecaresnetlight", 47),
        ("resnetrs50", 64),
        ("tf_efficientnet_lite0", 65),
        ("mobilenetv2_050", 47),
        ("tf_mobilenetv3_small_minimal_100", 67),
        ("mobilenetv3_rw", 64),
        ("vgg11_bn", 32),
        ("densenet121", 64),
        ("inception_v3", 75),
        ("inception_v4", 75),
        ("inception_resnet_v2", 75),
        ("legacy_xception", 71),
        ("googlenet", 64),
        ("alexnet", 63),
        ("lenet5", 28),
    ] {
        let m = create_model(name, ZooOpts::new().with_num_classes(5)).unwrap();
        let c = m.in_chans();
        let y = m.forward(&input(1, size, size, c, 2)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(y.dims(), [1, 5], "{name}");
        assert!(y.data().iter().all(|v| v.is_finite()), "{name}");
    }
}

#[test]
fn checkpoints_round_trip_and_fail_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r18.safetensors");
    let mut a = create_model("resnet18", ZooOpts::new().with_seed(1)).unwrap();
    convnet_zoo::parity::fill_parity(a.params_mut(), 3);
    a.save_checkpoint(&path).unwrap();
    let x = input(1, 40, 40, 3, 3);
    let want = a.forward(&x).unwrap();

    let b = create_model("resnet18", ZooOpts::new().with_seed(2).with_pretrained(&path)).unwrap();
    assert_eq!(b.forward(&x).unwrap().data(), want.data());

    // another class count: the classifier is left out, the rest loads
    let c = create_model("resnet18", ZooOpts::new().with_num_classes(7).with_pretrained(&path)).unwrap();
    let fa = a.forward_head(&a.forward_features(&x).unwrap(), true).unwrap();
    let fc = c.forward_head(&c.forward_features(&x).unwrap(), true).unwrap();
    assert_eq!(fa.data(), fc.data());

    // one input channel: the first conv is summed over RGB (timm's adapt_input_conv)
    let g = create_model("resnet18", ZooOpts::new().with_in_chans(1).with_pretrained(&path)).unwrap();
    let grey = input(1, 40, 40, 1, 4);
    let rgb: Vec<f32> = grey.data().iter().flat_map(|v| [*v; 3]).collect();
    let rgb = Tensor::from_vec(rgb, [1, 40, 40, 3]).unwrap();
    let (yg, yr) = (g.forward(&grey).unwrap(), a.forward(&rgb).unwrap());
    for (p, q) in yg.data().iter().zip(yr.data()) {
        assert!((p - q).abs() <= 1e-4 * (1.0 + q.abs()), "{p} vs {q}");
    }

    // another architecture: strict load lists what does not fit
    let mut r34 = create_model("resnet34", ZooOpts::default()).unwrap();
    let err = r34.load_checkpoint(&path, &LoadOptions::default()).unwrap_err();
    let ZooError::CheckpointMismatch { missing, .. } = &err else { panic!("{err}") };
    assert!(missing.iter().any(|k| k == "layer1.2.conv1.weight"), "{missing:?}");
    let mut eff = create_model("efficientnet_b0", ZooOpts::default()).unwrap();
    let err = eff.load_checkpoint(&path, &LoadOptions::default()).unwrap_err();
    assert!(err.to_string().contains("unexpected"), "{err}");

    // a truncated file
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = create_model("resnet18", ZooOpts::new().with_pretrained(&cut)).unwrap_err();
    assert!(matches!(err, ZooError::BadFile { .. }), "{err}");
}

#[test]
fn saved_files_use_pytorch_layouts_and_dtypes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lenet.safetensors");
    let mut m = create_model("lenet5", ZooOpts::default()).unwrap();
    convnet_zoo::parity::fill_parity(m.params_mut(), 0);
    m.save_checkpoint(&path).unwrap();
    let sd = convnet_zoo::checkpoint::read_state_dict(&path).unwrap();
    assert_eq!(sd["conv1.weight"].0, vec![6, 1, 5, 5]);
    assert_eq!(sd["fc1.weight"].0, vec![120, 400]);
    assert_eq!(sd["fc3.weight"].0, vec![10, 84]);
    // values in PyTorch order are the formula's, exactly
    let want = convnet_zoo::parity::formula_tensor("fc1.weight", &[120, 400], 0);
    assert_eq!(sd["fc1.weight"].1, want);
}

/// `steps` plain-SGD steps through the shared training path (`convnet_nn::training`).
fn train_steps(name: &str, size: usize, steps: usize, lr: f32) -> (f32, f32) {
    use convnet_nn::{Loss, Sgd, Targets, Trainable, Trainer, training};
    let mut m = create_model(name, ZooOpts::new().with_num_classes(10).with_seed(5)).unwrap();
    let c = m.in_chans();
    let x = input(4, size, size, c, 9);
    let y = Targets::Sparse(vec![1, 7, 3, 9]);
    m.set_trainer(Some(Trainer::new(Loss::sparse_categorical_crossentropy(), Sgd::new(lr as f64), &[])));
    let mut losses = Vec::new();
    for _ in 0..steps {
        losses.push(training::train_on_batch(&mut m, &x, &y).unwrap().0);
    }
    assert_eq!(m.trainer().unwrap().optimizer().iterations(), steps as u64);
    (losses[0], *losses.last().unwrap())
}

#[test]
fn lenet5_trains() {
    let (first, last) = train_steps("lenet5", 32, 15, 0.3);
    assert!(last < 0.7 * first, "loss {first} -> {last}");
}

#[test]
fn resnet18_trains_and_tracks_batch_statistics() {
    let (first, last) = train_steps("resnet18", 32, 6, 0.05);
    assert!(last < 0.7 * first, "loss {first} -> {last}");
    let mut m = create_model("resnet18", ZooOpts::new().with_num_classes(10)).unwrap();
    let _ = m.forward_train(&input(4, 32, 32, 3, 1), 0).unwrap();
    let bn = m.params().by_key("bn1.num_batches_tracked").unwrap();
    assert_eq!(bn.value().data(), [1.0]);
    let rv = m.params().by_key("bn1.running_var").unwrap().value().data().to_vec();
    assert!(rv.iter().any(|v| (v - 1.0).abs() > 1e-3), "running_var was not updated");
}

#[test]
fn torchvision_names_are_remapped() {
    use convnet_zoo::checkpoint::{read_state_dict, write_state_dict};
    let dir = tempfile::tempdir().unwrap();
    let x = input(1, 32, 32, 3, 5);
    // DenseNet: torchvision's old `norm.1` / `conv.2` names
    let mut d = create_model("densenet121", ZooOpts::new().with_num_classes(4)).unwrap();
    convnet_zoo::parity::fill_parity(d.params_mut(), 1);
    let timm_file = dir.path().join("d.safetensors");
    d.save_checkpoint(&timm_file).unwrap();
    let tv: convnet_zoo::checkpoint::StateDict = read_state_dict(&timm_file)
        .unwrap()
        .into_iter()
        .map(|(k, v)| {
            let k = ["norm1", "norm2", "conv1", "conv2"].iter().fold(k, |k, p| {
                if k.contains(".denselayer") {
                    k.replace(&format!(".{p}."), &format!(".{}.{}.", &p[..4], &p[4..]))
                } else {
                    k
                }
            });
            (k, v)
        })
        .collect();
    assert!(tv.contains_key("features.denseblock1.denselayer1.norm.1.weight"));
    let tv_file = dir.path().join("d_tv.safetensors");
    write_state_dict(&tv, "densenet121", &tv_file).unwrap();
    let d2 = create_model("densenet121", ZooOpts::new().with_num_classes(4).with_pretrained(&tv_file)).unwrap();
    assert_eq!(d2.forward(&x).unwrap().data(), d.forward(&x).unwrap().data());

    // VGG: torchvision's `classifier.{0,3,6}` linear layers
    let mut v = create_model("vgg11", ZooOpts::new().with_num_classes(4)).unwrap();
    convnet_zoo::parity::fill_parity(v.params_mut(), 2);
    let vf = dir.path().join("v.safetensors");
    v.save_checkpoint(&vf).unwrap();
    let tv: convnet_zoo::checkpoint::StateDict = read_state_dict(&vf)
        .unwrap()
        .into_iter()
        .map(|(k, (shape, data))| match k.as_str() {
            "pre_logits.fc1.weight" => ("classifier.0.weight".to_string(), (vec![4096, 512 * 49], data)),
            "pre_logits.fc1.bias" => ("classifier.0.bias".to_string(), (shape, data)),
            "pre_logits.fc2.weight" => ("classifier.3.weight".to_string(), (vec![4096, 4096], data)),
            "pre_logits.fc2.bias" => ("classifier.3.bias".to_string(), (shape, data)),
            k if k.starts_with("head.fc.") => (k.replace("head.fc.", "classifier.6."), (shape, data)),
            _ => (k, (shape, data)),
        })
        .collect();
    let vtv = dir.path().join("v_tv.safetensors");
    write_state_dict(&tv, "vgg11", &vtv).unwrap();
    let v2 = create_model("vgg11", ZooOpts::new().with_num_classes(4).with_pretrained(&vtv)).unwrap();
    assert_eq!(v2.forward(&x).unwrap().data(), v.forward(&x).unwrap().data());
}

/// A frozen backbone is a fixed feature extractor: in training its weights and batch-norm
/// running statistics stay as they are and only the classifier moves; unfrozen, all move.
#[test]
fn a_frozen_backbone_keeps_its_weights_and_statistics() {
    use convnet_nn::{Loss, Sgd, Targets, Trainable, Trainer, training};
    let mut m = create_model("resnet18", ZooOpts::new().with_num_classes(3).with_seed(2)).unwrap();
    let frozen = m.freeze_backbone();
    assert_eq!(frozen, m.params().iter().filter(|(_, e)| !e.buffer() && !e.key().starts_with("fc.")).count());
    assert_eq!(m.params().trainable_count(), 512 * 3 + 3);
    assert_eq!(m.param_count(), 11_178_051, "timm's count includes frozen parameters");
    let loss = Loss::sparse_categorical_crossentropy().with_from_logits(true);
    m.set_trainer(Some(Trainer::new(loss, Sgd::new(0.1), &[])));
    let before = m.params().snapshot();
    let (x, y) = (input(4, 32, 32, 3, 3), Targets::Sparse(vec![0, 1, 2, 1]));
    training::train_on_batch(&mut m, &x, &y).unwrap();
    let changed: Vec<String> = before
        .iter()
        .zip(m.params().snapshot())
        .filter(|((_, a), (_, b))| a.data() != b.data())
        .map(|((k, _), _)| k.clone())
        .collect();
    assert_eq!(changed, ["fc.weight", "fc.bias"], "only the classifier trains");
    let summary = m.summary([3, 32, 32]).unwrap().to_string();
    assert!(summary.contains(" Trainable params: 1,539 "), "{summary}");

    m.unfreeze();
    training::train_on_batch(&mut m, &x, &y).unwrap();
    let after = m.params().snapshot();
    let moved = |k: &str| before.iter().zip(&after).any(|((a, va), (_, vb))| a == k && va.data() != vb.data());
    assert!(moved("conv1.weight") && moved("bn1.running_mean") && moved("layer4.1.bn2.weight"));
}

/// `fit` with its callbacks trains a zoo model as it trains a `Sequential`: history,
/// validation, `ModelCheckpoint(save_best_only)` writing a checkpoint that loads.
#[test]
fn fit_and_callbacks_train_a_zoo_model() {
    use convnet_nn::{Adam, FitOptions, Loss, Metric, ModelCheckpoint, TensorData, Trainable, Trainer, training};
    let dir = tempfile::tempdir().unwrap();
    let mut m = create_model("lenet5", ZooOpts::new().with_num_classes(2).with_seed(1)).unwrap();
    let c = m.in_chans();
    // class = whether the image is bright or dark
    let mut x = input(32, 32, 32, c, 4).to_vec();
    let labels: Vec<u32> = (0..32).map(|i| (i % 2) as u32).collect();
    for (i, px) in x.chunks_mut(32 * 32 * c).enumerate() {
        let shift = if labels[i] == 1 { 1.0 } else { -1.0 };
        px.iter_mut().for_each(|v| *v = *v * 0.3 + shift);
    }
    let x = Tensor::from_vec(x, [32, 32, 32, c]).unwrap();
    let y = convnet_nn::Targets::Sparse(labels);
    let loss = Loss::sparse_categorical_crossentropy().with_from_logits(true);
    m.set_trainer(Some(Trainer::new(loss, Adam::new(0.01), &[Metric::Accuracy])));
    let best = dir.path().join("best.safetensors");
    let checkpoint =
        ModelCheckpoint::new(best.to_str().unwrap()).with_monitor("val_accuracy").with_save_best_only(true);
    let options = FitOptions::new(8, 4).with_seed(3).with_verbose(0).with_callback(checkpoint);
    let (mut train, mut val) = (TensorData::new(&x, &y).unwrap(), TensorData::new(&x, &y).unwrap());
    let h = training::fit(&mut m, &mut train, Some(&mut val), options).unwrap();
    assert_eq!(h.epochs(), 4);
    assert!(h.loss[3] < h.loss[0], "{h:?}");
    assert!(*h.val_accuracy.last().unwrap() > 0.9, "{h:?}");
    assert_eq!(m.trainer().unwrap().optimizer().iterations(), 16);
    let mut back = create_model("lenet5", ZooOpts::new().with_num_classes(2)).unwrap();
    back.load_checkpoint(&best, &LoadOptions::default()).unwrap();
    assert_eq!(back.params().len(), m.params().len());
}

/// One training step of ReXNet-1.0 at 64x64: the forward and backward pass run through
/// the partial residual (`x[:, :in_chs] += shortcut`) and the squeeze-excitations' batch
/// norms, every trainable tensor gets a finite gradient, and the optimizer steps.
#[test]
fn rexnet_100_takes_a_training_step_with_finite_gradients() {
    use convnet_nn::{Loss, Mode, Sgd, Targets, Trainable, Trainer, training};
    let mut m = create_model("rexnet_100", ZooOpts::new().with_num_classes(10).with_seed(3)).unwrap();
    let loss = Loss::sparse_categorical_crossentropy().with_from_logits(true);
    m.set_trainer(Some(Trainer::new(loss, Sgd::new(0.01), &[])));
    let (x, y) = (input(2, 64, 64, 3, 6), Targets::Sparse(vec![4, 8]));
    let out = training::compute_gradients(&mut m, &x, &y, Mode::Train).unwrap();
    assert!(out.loss.is_finite(), "loss {}", out.loss);
    assert_eq!(out.gradients.len(), m.params().iter().filter(|(_, e)| e.trainable()).count());
    for (k, g) in &out.gradients {
        assert!(g.data().iter().all(|v| v.is_finite()), "{k}: non-finite gradient");
    }
    let norm = |k: &str| {
        let g = &out.gradients.iter().find(|(p, _)| p == k).unwrap_or_else(|| panic!("no gradient for {k}")).1;
        g.data().iter().map(|v| v * v).sum::<f32>().sqrt()
    };
    // the stem sits below every partial residual, the SE norm inside the last block
    for k in ["stem.conv.weight", "features.1.conv_exp.conv.weight", "features.15.se.bn.weight", "head.fc.weight"] {
        assert!(norm(k) > 0.0, "{k}: zero gradient");
    }
    training::apply_gradients(&mut m, out.gradients).unwrap();
    assert_eq!(m.trainer().unwrap().optimizer().iterations(), 1);
}

/// One training step of SE-ResNet-50 and ECA-ResNet-50-D (squeeze-excitation, ECA's
/// channel conv, deep stem and average-pool shortcuts) at 64x64: the train-mode forward
/// and the backward run, every trainable tensor gets a finite gradient of its own shape,
/// and the attention's weights get a non-zero one.
#[test]
fn se_and_eca_resnets_train_one_step() {
    use convnet_nn::{Loss, Mode, Sgd, Targets, Trainable, Trainer, training};
    for (name, attn_key) in [("seresnet50", "layer4.2.se.fc1.weight"), ("ecaresnet50d", "layer4.2.se.conv.weight")] {
        let mut m = create_model(name, ZooOpts::new().with_num_classes(4).with_seed(3)).unwrap();
        let x = input(2, 64, 64, 3, 8);
        let logits = m.forward_train(&x, 1).unwrap();
        assert_eq!(logits.dims(), [2, 4], "{name}");
        assert!(logits.data().iter().all(|v| v.is_finite()), "{name}");
        let loss = Loss::sparse_categorical_crossentropy().with_from_logits(true);
        m.set_trainer(Some(Trainer::new(loss, Sgd::new(0.01), &[])));
        let out = training::compute_gradients(&mut m, &x, &Targets::Sparse(vec![1, 3]), Mode::Train).unwrap();
        assert!(out.loss.is_finite(), "{name}: loss {}", out.loss);
        let trainable = m.params().iter().filter(|(_, e)| e.trainable()).count();
        assert_eq!(out.gradients.len(), trainable, "{name}: every trainable tensor has a gradient");
        for (k, g) in &out.gradients {
            assert_eq!(g.dims(), m.params().by_key(k).unwrap().value().dims(), "{name} {k}");
            assert!(g.data().iter().all(|v| v.is_finite()), "{name}: {k} has a non-finite gradient");
        }
        let (_, g) = out.gradients.iter().find(|(k, _)| k == attn_key).unwrap();
        assert!(g.data().iter().any(|v| *v != 0.0), "{name}: {attn_key} gets no gradient");
    }
}

/// One training step of each family built on ResNet with its own block (split attention,
/// Res2Net's group chain, selective kernels): every trainable tensor gets a finite gradient
/// and the attention layers' are not all zero.
#[test]
fn resnet_block_families_take_a_training_step_with_finite_gradients() {
    use convnet_nn::{Loss, Mode, Sgd, Targets, Trainable, Trainer, training};
    for (name, probe) in [
        ("resnest14d", "layer2.0.conv2.fc2.weight"),
        ("resnest50d_4s2x40d", "layer1.0.conv2.fc1.weight"),
        ("res2net50_26w_4s", "layer1.1.convs.2.weight"),
        ("skresnet18", "layer2.0.conv1.attn.fc_select.weight"),
    ] {
        let mut m = create_model(name, ZooOpts::new().with_num_classes(5).with_seed(2)).unwrap();
        let loss = Loss::sparse_categorical_crossentropy().with_from_logits(true);
        m.set_trainer(Some(Trainer::new(loss, Sgd::new(0.01), &[])));
        let (x, y) = (input(2, 48, 48, 3, 8), Targets::Sparse(vec![1, 3]));
        let out = training::compute_gradients(&mut m, &x, &y, Mode::Train).unwrap();
        assert!(out.loss.is_finite(), "{name}: loss {}", out.loss);
        assert_eq!(out.gradients.len(), m.params().iter().filter(|(_, e)| e.trainable()).count(), "{name}");
        for (k, g) in &out.gradients {
            assert!(g.data().iter().all(|v| v.is_finite()), "{name} {k}: non-finite gradient");
        }
        let g = &out.gradients.iter().find(|(k, _)| k == probe).unwrap_or_else(|| panic!("{name}: no {probe}")).1;
        assert!(g.data().iter().any(|v| *v != 0.0), "{name} {probe}: zero gradient");
    }
}
