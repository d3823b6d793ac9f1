//! A zoo model trains exactly as timm's: one training step checked against
//! `fixtures/timm_train/<model>.{json,safetensors}` (timm 1.0.31, float64; see its README).
//! Formula weights (salt 0) and input (salt 1), a train-mode forward, cross-entropy with
//! label smoothing 0.1, backward, and one AdamW step (lr 1e-3, wd 0.05 on every
//! parameter) through `convnet-nn`'s optimizer over the model's store. Checked: the input,
//! the logits and loss (1e-5), the selected gradients (1e-4), every parameter's gradient L2
//! norm (1e-4), the first batch norm's running statistics (1e-6) and the selected
//! parameters after the step (1e-6), each relative to the reference's largest magnitude.
//! Needs `CONVNET_SHARED`; `CONVNET_TRAIN=name,name` restricts the models checked.

use convnet_nn::{AdamW, Optimizer, ParamUpdate};
use convnet_zoo::parity::{formula_input, formula_tensor};
use convnet_zoo::{Tensor, ZooOpts, create_model};
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The models checked: add a name once the zoo has it (the fixtures also hold
/// convnext_tiny and vit_small_patch16_224).
const MODELS: &[&str] = &["resnet18", "efficientnet_b0", "mobilenetv3_large_100"];

fn fixtures() -> Option<PathBuf> {
    match std::env::var_os("CONVNET_SHARED") {
        Some(s) => Some(PathBuf::from(s).join("fixtures").join("timm_train")),
        None => {
            eprintln!("CONVNET_SHARED is not set: skipping the timm training-step fixtures");
            None
        }
    }
}

/// The reference tensors of one model (float64, labels int64 as f64).
struct Reference {
    json: serde_json::Value,
    tensors: BTreeMap<String, (Vec<usize>, Vec<f64>)>,
}

impl Reference {
    fn load(dir: &Path, model: &str) -> Reference {
        let jpath = dir.join(format!("{model}.json"));
        let text = std::fs::read_to_string(&jpath).unwrap_or_else(|e| panic!("{}: {e}", jpath.display()));
        let json: serde_json::Value = serde_json::from_str(&text).expect("fixture JSON");
        let spath = dir.join(format!("{model}.safetensors"));
        let bytes = std::fs::read(&spath).unwrap_or_else(|e| panic!("{}: {e}", spath.display()));
        let st = SafeTensors::deserialize(&bytes).expect("fixture safetensors");
        let mut tensors = BTreeMap::new();
        for (name, view) in st.tensors() {
            let values: Vec<f64> = match view.dtype() {
                Dtype::F64 => view.data().chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap())).collect(),
                Dtype::I64 => {
                    view.data().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f64).collect()
                }
                Dtype::F32 => {
                    view.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64).collect()
                }
                d => panic!("{name}: unexpected dtype {d:?}"),
            };
            tensors.insert(name, (view.shape().to_vec(), values));
        }
        Reference { json, tensors }
    }

    fn tensor(&self, name: &str) -> &(Vec<usize>, Vec<f64>) {
        self.tensors.get(name).unwrap_or_else(|| panic!("fixture has no tensor {name:?}"))
    }

    fn strings(&self, field: &str) -> Vec<String> {
        serde_json::from_value(self.json[field].clone()).unwrap_or_else(|e| panic!("{field}: {e}"))
    }
}

/// `max |ours - ref| / max |ref|` (absolute when the reference is all zeros).
fn rel_err(ours: &[f32], reference: &[f64]) -> f64 {
    if ours.len() != reference.len() {
        return f64::INFINITY;
    }
    let scale = reference.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let err = ours.iter().zip(reference).fold(0.0f64, |m, (a, b)| m.max((f64::from(*a) - b).abs()));
    if scale == 0.0 { err } else { err / scale }
}

/// Records one comparison: prints it, and keeps it as a failure above `tol`.
struct Checks {
    model: String,
    failures: Vec<String>,
}

impl Checks {
    fn check(&mut self, what: &str, err: f64, tol: f64) {
        let ok = err <= tol;
        eprintln!("  {:<48} {err:.2e} (tol {tol:.0e}){}", what, if ok { "" } else { "  FAIL" });
        if !ok {
            self.failures.push(format!("{}: {what}: {err:.3e} > {tol:.0e}", self.model));
        }
    }
}

fn check_model(dir: &Path, model: &str) -> Vec<String> {
    let r = Reference::load(dir, model);
    let mut c = Checks { model: model.to_string(), failures: Vec::new() };
    eprintln!("{model}");
    let shape: Vec<usize> = serde_json::from_value(r.json["input_shape"].clone()).expect("input_shape");
    let [n, ch, h, w] = shape[..] else { panic!("input_shape {shape:?}") };
    let classes = r.json["num_classes"].as_u64().expect("num_classes") as usize;
    let labels: Vec<u32> = serde_json::from_value(r.json["labels"].clone()).expect("labels");
    let smoothing = r.json["label_smoothing"].as_f64().expect("label_smoothing") as f32;
    let adamw = &r.json["adamw"];
    let betas: [f64; 2] = serde_json::from_value(adamw["betas"].clone()).expect("betas");
    let weight_salt = r.json["weight_salt"].as_u64().unwrap_or(0);
    let input_salt = r.json["input_salt"].as_u64().unwrap_or(1);

    let mut m =
        create_model(model, ZooOpts::new().with_num_classes(classes).with_drop_rate(0.0).with_drop_path_rate(0.0))
            .unwrap_or_else(|e| panic!("{model}: {e}"));
    convnet_zoo::parity::fill_parity(m.params_mut(), weight_salt);

    // the formula input against the fixture's copy (f32 rounding of values in [-1, 1))
    let x = formula_input([n, ch, h, w], input_salt);
    c.check("input (formula vs fixture)", rel_err(&x, &r.tensor("input").1), 1e-7);
    let labels_ref: Vec<u32> = r.tensor("labels").1.iter().map(|&v| v as u32).collect();
    assert_eq!(labels, labels_ref, "{model}: labels in the JSON and the tensors differ");
    let x = Tensor::from_vec(convnet_zoo::npy::nchw_to_nhwc(&x, [n, ch, h, w]), [n, h, w, ch]).unwrap();

    let logits = m.forward_train(&x, 0).unwrap();
    c.check("logits", rel_err(logits.data(), &r.tensor("logits").1), 1e-5);
    let loss = logits.softmax_cross_entropy_sparse_smoothed(&labels, smoothing).unwrap();
    let loss_ref = r.json["loss"].as_f64().expect("loss");
    c.check("loss", rel_err(&[loss.item().unwrap()], &[loss_ref]), 1e-5);
    let grads = loss.backward().unwrap();

    // every trainable parameter's gradient, by key, in the engine's layout
    let mut grad_of: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    for (_, e) in m.params().iter().filter(|(_, e)| e.trainable()) {
        match grads.get(e.value()) {
            Some(g) => {
                grad_of.insert(e.key().to_string(), g.data().to_vec());
            }
            None => c.failures.push(format!("{model}: {} has no gradient", e.key())),
        }
    }
    drop((grads, loss, logits));

    for key in r.strings("selected") {
        let e = m.params().by_key(&key).unwrap_or_else(|| panic!("{model}: no parameter {key}"));
        let Some(g) = grad_of.get(&key) else { continue };
        let torch = e.layout().to_torch(g, e.value().dims());
        c.check(&format!("grad/{key}"), rel_err(&torch, &r.tensor(&format!("grad/{key}")).1), 1e-4);
    }

    let norms: BTreeMap<String, f64> = serde_json::from_value(r.json["grad_l2_norms"].clone()).expect("grad_l2_norms");
    let ours: Vec<&str> = grad_of.keys().map(String::as_str).collect();
    let theirs: Vec<&str> = norms.keys().map(String::as_str).collect();
    if ours != theirs {
        c.failures.push(format!(
            "{model}: trainable keys differ from timm's: ours {} timm {}",
            ours.len(),
            theirs.len()
        ));
    }
    // Some gradients are zero analytically: the shift of a norm whose output reaches the
    // loss only through 1x1 convs into train-mode batch norms (EfficientNet's `bn3.bias`),
    // which remove any per-channel constant. timm's float64 gives ~1e-16 there, float32
    // gives its own rounding noise; those are checked against the largest norm instead.
    let max_norm = norms.values().fold(0.0f64, |m, v| m.max(*v));
    let (mut worst, mut worst_key) = (0.0f64, String::new());
    let (mut zeros, mut worst_zero) = (0usize, 0.0f64);
    for (key, want) in &norms {
        let Some(g) = grad_of.get(key) else { continue };
        let got = g.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>().sqrt();
        if *want <= 1e-12 * max_norm {
            zeros += 1;
            worst_zero = worst_zero.max(got / max_norm);
            continue;
        }
        let err = (got - want).abs() / want;
        if err > worst {
            (worst, worst_key) = (err, key.clone());
        }
    }
    c.check(&format!("grad L2 norms ({} tensors, worst {worst_key})", norms.len() - zeros), worst, 1e-4);
    if zeros > 0 {
        c.check(&format!("zero grad L2 norms ({zeros} tensors) / largest norm"), worst_zero, 1e-6);
    }

    for key in r.strings("bn_selected") {
        let e = m.params().by_key(&key).unwrap_or_else(|| panic!("{model}: no buffer {key}"));
        c.check(
            &format!("after_forward/{key}"),
            rel_err(&e.torch_data(), &r.tensor(&format!("after_forward/{key}")).1),
            1e-6,
        );
    }

    // one AdamW step, weight decay on every parameter as the fixture's script applies it
    let cfg = AdamW {
        learning_rate: adamw["lr"].as_f64().expect("lr"),
        beta_1: betas[0],
        beta_2: betas[1],
        epsilon: adamw["eps"].as_f64().expect("eps"),
        weight_decay: adamw["weight_decay"].as_f64().expect("weight_decay"),
    };
    // (a) the optimizer alone: the selected parameters' formula values stepped with timm's
    // own gradients must land on timm's values
    let selected = r.strings("selected");
    let mut before: Vec<Vec<f32>> = Vec::new();
    let mut grad_ref: Vec<Vec<f32>> = Vec::new();
    for key in &selected {
        let e = m.params().by_key(key).unwrap();
        before.push(formula_tensor(key, &e.torch_shape(), weight_salt));
        grad_ref.push(r.tensor(&format!("grad/{key}")).1.iter().map(|&v| v as f32).collect());
    }
    let updates = selected
        .iter()
        .zip(before.iter_mut())
        .zip(&grad_ref)
        .map(|((key, value), grad)| ParamUpdate { key, value, grad, decay: true })
        .collect();
    Optimizer::new(cfg).apply_updates(updates).unwrap();
    for (key, after) in selected.iter().zip(&before) {
        c.check(
            &format!("after_step/{key}, timm's gradient"),
            rel_err(after, &r.tensor(&format!("after_step/{key}")).1),
            1e-6,
        );
    }

    // (b) the whole model stepped with its own gradients, through the store
    let mut opt = Optimizer::new(cfg);
    let mut params = m.params_mut().trainable_values_mut();
    let updates = params
        .iter_mut()
        .filter_map(|(key, _, value)| {
            let grad = grad_of.get(*key)?;
            Some(ParamUpdate { key, value, grad, decay: true })
        })
        .collect();
    opt.apply_updates(updates).unwrap();
    drop(params);
    assert_eq!(opt.iterations(), 1);
    // AdamW's first step is `lr * g / (|g| + eps)` per value: for |g| near 1e-6 a float32
    // gradient error far inside the 1e-4 gradient tolerance moves it by a visible part of
    // lr. So each value may differ by 1e-6 of the scale plus the gradient tolerance
    // (1e-4 of the largest gradient) carried through that derivative, `lr eps / (|g| + eps)^2`;
    // elsewhere that term is below 1e-12.
    for (key, g_ref) in selected.iter().zip(&grad_ref) {
        let e = m.params().by_key(key).unwrap();
        let ours = e.torch_data();
        let want = &r.tensor(&format!("after_step/{key}")).1;
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let dg = 1e-4 * g_ref.iter().fold(0.0f64, |m, v| m.max(f64::from(v.abs())));
        let (lr, eps) = (cfg.learning_rate, cfg.epsilon);
        let (mut ratio, mut above) = (0.0f64, 0usize);
        for ((o, w), g) in ours.iter().zip(want).zip(g_ref) {
            let err = (f64::from(*o) - w).abs();
            let carried = lr * eps * dg / (f64::from(g.abs()) + eps).powi(2);
            ratio = ratio.max(err / (1e-6 * scale + carried));
            above += usize::from(err > 1e-6 * scale);
        }
        c.check(&format!("after_step/{key} / bound ({above} of {} values past 1e-6)", ours.len()), ratio, 1.0);
    }
    c.failures
}

#[test]
fn zoo_models_take_one_training_step_as_timm() {
    let Some(dir) = fixtures() else { return };
    let only: Option<Vec<String>> =
        std::env::var("CONVNET_TRAIN").ok().map(|s| s.split(',').map(|x| x.trim().to_string()).collect());
    let mut failures = Vec::new();
    for &model in MODELS {
        if only.as_ref().is_some_and(|o| !o.iter().any(|n| n == model)) {
            continue;
        }
        assert!(dir.join(format!("{model}.json")).exists(), "no fixture for {model} in {}", dir.display());
        failures.extend(check_model(&dir, model));
    }
    assert!(failures.is_empty(), "training-step mismatches:\n{}", failures.join("\n"));
}
