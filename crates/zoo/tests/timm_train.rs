//! A zoo model trains exactly as timm's: one training step checked against
//! `fixtures/timm_train/<model>.{json,safetensors}` (timm 1.0.31, float64; see its README).
//! Formula weights (salt 0) and input (salt 1), a train-mode forward, cross-entropy with
//! label smoothing 0.1, backward, and one AdamW step (lr 1e-3, wd 0.05 on every
//! parameter) through `convnet-nn`'s optimizer over the model's store. Checked: the input,
//! the logits and loss (1e-5), the selected gradients (1e-4), every parameter's gradient L2
//! norm (1e-4), the first batch norm's running statistics (1e-6) and the selected
//! parameters after the step (1e-6), each relative to the reference's largest magnitude.
//! Needs `CONVNET_SHARED`; `CONVNET_TRAIN=name,name` restricts the models checked.
//!
//! Gradients get one allowance beyond 1e-4, their float32 diameter, measured only when the
//! plain step misses 1e-4. A ReLU (or a hard-swish / hard-sigmoid corner) whose input lies
//! within float32 rounding of its kink has a derivative that float32 data cannot decide,
//! and every gradient upstream of it jumps with that choice. At the formula weights
//! MobileNet-V3-Large has such inputs in `blocks.2.2` (after `bn1` at NCHW (1, 20, 1, 6),
//! after `bn2` at (1, 74, 4, 3) and (3, 54, 6, 0); |z| 1e-7 to 9e-7 of a unit-scale norm
//! output, against float32 errors of about 1e-6 there): moving every weight by one ulp,
//! the uncertainty of storing the fixture's float64 weights as float32, moves them by up to
//! 3e-6 and flips their signs, and the gradients of everything before `blocks.2.2` by up to
//! 5e-3. No float32 engine can decide those branches (f64 batch-norm sums, which the
//! kernels already use, do not help: the ambiguity is in the data), so the step is rerun
//! [`ULP_RUNS`] times with every weight and input value moved one ulp up or down (fixed
//! streams), and each gradient may differ from timm's by 1e-4 plus its diameter: the
//! largest difference between the gradients of any two of those float32-indistinguishable
//! steps and the plain one. Where that is measured, a gradient far from any kink still has
//! a diameter near 1e-6 (MobileNet-V3's classifier: 1e-5), so a wrong gradient still
//! fails; a diameter over 1e-2 fails by itself. Logits, loss and running statistics are
//! continuous in the weights and keep their tolerances; ResNet-18 and EfficientNet-B0 pass
//! the plain 1e-4.

use convnet_nn::{AdamW, Optimizer, ParamUpdate};
use convnet_zoo::parity::{formula_input, formula_tensor};
use convnet_zoo::{Model, Tensor, ZooOpts, create_model};
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The models checked: all five that the fixtures hold.
const MODELS: &[&str] =
    &["resnet18", "efficientnet_b0", "mobilenetv3_large_100", "convnext_tiny", "vit_small_patch16_224"];

/// Steps run, when the plain step's gradients miss timm's, with every weight and input
/// value moved one float32 ulp (fixed streams; see the module doc).
const ULP_RUNS: u64 = 8;

/// The largest float32 diameter of a gradient (relative to its reference) accepted: past
/// it the fixture cannot check that gradient at all.
const MAX_DIAMETER: f64 = 1e-2;

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

/// One training step's results: logits, loss and every trainable parameter's gradient by
/// key (engine layout), and the keys that got none.
struct Step {
    logits: Vec<f32>,
    loss: f32,
    grads: BTreeMap<String, Vec<f32>>,
    missing: Vec<String>,
}

/// Fills the model with the formula weights and runs a train-mode forward on `x`, the
/// smoothed cross-entropy and its backward (running statistics updated in the store, as
/// timm's step does). With `ulp_run = Some(k)` every weight and input value is first moved
/// one float32 ulp up or down, as stream `k` decides.
fn run_step(m: &mut Model, x: &[f32], dims: [usize; 4], r: &Reference, ulp_run: Option<u64>) -> Step {
    let weight_salt = r.json["weight_salt"].as_u64().unwrap_or(0);
    let labels: Vec<u32> = serde_json::from_value(r.json["labels"].clone()).expect("labels");
    let smoothing = r.json["label_smoothing"].as_f64().expect("label_smoothing") as f32;
    convnet_zoo::parity::fill_parity(m.params_mut(), weight_salt);
    let mut x = x.to_vec();
    if let Some(k) = ulp_run {
        let mut stream = 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(k) | 1;
        let ids: Vec<_> = m.params().iter().map(|(id, _)| id).collect();
        for id in ids {
            nudge_ulps(m.params_mut().data_mut(id), &mut stream);
        }
        nudge_ulps(&mut x, &mut stream);
    }
    let x = Tensor::from_vec(x, dims.to_vec()).unwrap();
    let logits = m.forward_train(&x, 0).unwrap();
    let loss = logits.softmax_cross_entropy_sparse_smoothed(&labels, smoothing).unwrap();
    let grads = loss.backward().unwrap();
    let (mut out, mut missing) = (BTreeMap::new(), Vec::new());
    for (_, e) in m.params().iter().filter(|(_, e)| e.trainable()) {
        match grads.get(e.value()) {
            Some(g) => {
                out.insert(e.key().to_string(), g.data().to_vec());
            }
            None => missing.push(e.key().to_string()),
        }
    }
    Step { logits: logits.data().to_vec(), loss: loss.item().unwrap(), grads: out, missing }
}

/// Moves every nonzero value one float32 ulp up or down, as a xorshift stream decides.
fn nudge_ulps(values: &mut [f32], stream: &mut u64) {
    for v in values.iter_mut().filter(|v| **v != 0.0 && v.is_finite()) {
        *stream ^= *stream << 13;
        *stream ^= *stream >> 7;
        *stream ^= *stream << 17;
        let bits = v.to_bits();
        *v = f32::from_bits(if *stream & 1 == 0 { bits + 1 } else { bits - 1 });
    }
}

/// L2 norm, summed in f64.
fn l2(g: &[f32]) -> f64 {
    g.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>().sqrt()
}

/// How far apart the gradients of float32-indistinguishable steps land: for each selected
/// key the largest difference of any value between two steps (over the reference's largest
/// magnitude), for each key the spread of the gradient L2 norm (over the reference norm).
#[derive(Default)]
struct Diameter {
    selected: BTreeMap<String, f64>,
    norms: BTreeMap<String, f64>,
}

impl Diameter {
    /// The diameters over `steps` (the plain step and the ulp-moved ones).
    fn of(r: &Reference, steps: &[Step]) -> Diameter {
        let mut d = Diameter::default();
        for key in r.strings("selected") {
            let scale = r.tensor(&format!("grad/{key}")).1.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let grads: Vec<&Vec<f32>> = steps.iter().filter_map(|s| s.grads.get(&key)).collect();
            let mut widest = 0.0f64;
            for (i, a) in grads.iter().enumerate() {
                for b in &grads[i + 1..] {
                    let diff =
                        a.iter().zip(b.iter()).fold(0.0f64, |m, (x, y)| m.max((f64::from(*x) - f64::from(*y)).abs()));
                    widest = widest.max(diff);
                }
            }
            d.selected.insert(key, if scale > 0.0 { widest / scale } else { widest });
        }
        let norms: BTreeMap<String, f64> =
            serde_json::from_value(r.json["grad_l2_norms"].clone()).expect("grad_l2_norms");
        let max_norm = norms.values().fold(0.0f64, |m, v| m.max(*v));
        for (key, want) in norms {
            if want <= 1e-12 * max_norm {
                // analytically zero: checked against the largest norm, no diameter
                continue;
            }
            let ours: Vec<f64> = steps.iter().filter_map(|s| s.grads.get(&key)).map(|g| l2(g)).collect();
            let (lo, hi) = ours.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
            d.norms.insert(key, if ours.is_empty() { 0.0 } else { (hi - lo) / want });
        }
        d
    }
}

/// The gradient comparisons of one step: `(what, error, tolerance)` for the selected
/// gradients, the worst gradient L2 norm and the analytically zero norms. Each tolerance
/// is 1e-4 plus the gradient's float32 diameter, if one was measured.
fn grad_checks(m: &Model, r: &Reference, grads: &BTreeMap<String, Vec<f32>>, d: &Diameter) -> Vec<(String, f64, f64)> {
    let mut out = Vec::new();
    for key in r.strings("selected") {
        let e = m.params().by_key(&key).unwrap_or_else(|| panic!("no parameter {key}"));
        let Some(g) = grads.get(&key) else { continue };
        let torch = e.layout().to_torch(g, e.value().dims());
        let tol = 1e-4 + d.selected.get(&key).copied().unwrap_or(0.0);
        out.push((format!("grad/{key}"), rel_err(&torch, &r.tensor(&format!("grad/{key}")).1), tol));
    }
    let norms: BTreeMap<String, f64> = serde_json::from_value(r.json["grad_l2_norms"].clone()).expect("grad_l2_norms");
    // Some gradients are zero analytically: the shift of a norm whose output reaches the
    // loss only through 1x1 convs into train-mode batch norms (EfficientNet's `bn3.bias`),
    // which remove any per-channel constant. timm's float64 gives ~1e-16 there, float32
    // gives its own rounding noise; those are checked against the largest norm instead.
    let max_norm = norms.values().fold(0.0f64, |m, v| m.max(*v));
    let (mut worst, mut worst_key, mut worst_tol) = (0.0f64, String::new(), 1e-4);
    let (mut zeros, mut worst_zero, mut widened) = (0usize, 0.0f64, 0usize);
    for (key, want) in &norms {
        let Some(g) = grads.get(key) else { continue };
        let got = l2(g);
        if *want <= 1e-12 * max_norm {
            zeros += 1;
            worst_zero = worst_zero.max(got / max_norm);
            continue;
        }
        let err = (got - want).abs() / want;
        let diameter = d.norms.get(key).copied().unwrap_or(0.0);
        widened += usize::from(diameter > 1e-4);
        let tol = 1e-4 + diameter;
        if err / tol > worst / worst_tol {
            (worst, worst_key, worst_tol) = (err, key.clone(), tol);
        }
    }
    out.push((
        format!("grad L2 norms ({} tensors, {widened} widened; worst {worst_key})", norms.len() - zeros),
        worst,
        worst_tol,
    ));
    if zeros > 0 {
        out.push((format!("zero grad L2 norms ({zeros} tensors) / largest norm"), worst_zero, 1e-6));
    }
    out
}

/// The largest `error / tolerance` of a set of checks.
fn worst_ratio(checks: &[(String, f64, f64)]) -> f64 {
    checks.iter().map(|(_, err, tol)| err / tol).fold(0.0, f64::max)
}

impl Checks {
    /// [`Checks::check`] with a computed tolerance, printed to three digits.
    fn check_tol(&mut self, what: &str, err: f64, tol: f64) {
        let ok = err <= tol;
        eprintln!("  {:<48} {err:.2e} (tol {tol:.2e}){}", what, if ok { "" } else { "  FAIL" });
        if !ok {
            self.failures.push(format!("{}: {what}: {err:.3e} > {tol:.2e}", self.model));
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
    let adamw = &r.json["adamw"];
    let betas: [f64; 2] = serde_json::from_value(adamw["betas"].clone()).expect("betas");
    let weight_salt = r.json["weight_salt"].as_u64().unwrap_or(0);
    let input_salt = r.json["input_salt"].as_u64().unwrap_or(1);

    let mut m =
        create_model(model, ZooOpts::new().with_num_classes(classes).with_drop_rate(0.0).with_drop_path_rate(0.0))
            .unwrap_or_else(|e| panic!("{model}: {e}"));

    // the formula input against the fixture's copy (f32 rounding of values in [-1, 1))
    let x = formula_input([n, ch, h, w], input_salt);
    c.check("input (formula vs fixture)", rel_err(&x, &r.tensor("input").1), 1e-7);
    let labels_ref: Vec<u32> = r.tensor("labels").1.iter().map(|&v| v as u32).collect();
    assert_eq!(labels, labels_ref, "{model}: labels in the JSON and the tensors differ");
    let x = convnet_zoo::npy::nchw_to_nhwc(&x, [n, ch, h, w]);
    let dims = [n, h, w, ch];

    // the plain step: forward values, key set and running statistics
    let step = run_step(&mut m, &x, dims, &r, None);
    c.check("logits", rel_err(&step.logits, &r.tensor("logits").1), 1e-5);
    let loss_ref = r.json["loss"].as_f64().expect("loss");
    c.check("loss", rel_err(&[step.loss], &[loss_ref]), 1e-5);
    c.failures.extend(step.missing.iter().map(|k| format!("{model}: {k} has no gradient")));
    let norms: BTreeMap<String, f64> = serde_json::from_value(r.json["grad_l2_norms"].clone()).expect("grad_l2_norms");
    let ours: Vec<&str> = step.grads.keys().map(String::as_str).collect();
    let theirs: Vec<&str> = norms.keys().map(String::as_str).collect();
    if ours != theirs {
        c.failures.push(format!(
            "{model}: trainable keys differ from timm's: ours {} timm {}",
            ours.len(),
            theirs.len()
        ));
    }
    for key in r.strings("bn_selected") {
        let e = m.params().by_key(&key).unwrap_or_else(|| panic!("{model}: no buffer {key}"));
        c.check(
            &format!("after_forward/{key}"),
            rel_err(&e.torch_data(), &r.tensor(&format!("after_forward/{key}")).1),
            1e-6,
        );
    }

    // the gradients: at 1e-4, or, when the plain step misses that, at 1e-4 plus their
    // float32 diameter over the plain and ulp-moved steps (see the module doc)
    let mut diameter = Diameter::default();
    let mut checks = grad_checks(&m, &r, &step.grads, &diameter);
    let grad_of = if worst_ratio(&checks) <= 1.0 {
        step.grads
    } else {
        eprintln!(
            "  plain step: gradients {:.1} x their tolerance; measuring their float32 diameter",
            worst_ratio(&checks)
        );
        let mut steps: Vec<Step> = (1..=ULP_RUNS).map(|k| run_step(&mut m, &x, dims, &r, Some(k))).collect();
        // the plain step last, so that the store ends in its state
        steps.push(run_step(&mut m, &x, dims, &r, None));
        diameter = Diameter::of(&r, &steps);
        if let Some((key, d)) = diameter.selected.iter().chain(&diameter.norms).find(|(_, d)| **d > MAX_DIAMETER) {
            c.failures.push(format!("{model}: {key}: float32 diameter {d:.2e} > {MAX_DIAMETER:.0e}"));
        }
        let plain = steps.pop().expect("the plain step").grads;
        checks = grad_checks(&m, &r, &plain, &diameter);
        plain
    };
    for (what, err, tol) in &checks {
        c.check_tol(what, *err, *tol);
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
    // gradient error far inside the gradient tolerance moves it by a visible part of lr,
    // and where the error can reach past zero it flips the step's sign. So each value may
    // differ by 1e-6 of the scale plus the most the step can change while the gradient
    // moves within its tolerance (1e-4 of the largest gradient, plus its float32 diameter
    // where measured): `max |f(g +- dg) - f(g)|`, f increasing (`lr eps dg / (|g| + eps)^2`
    // for small dg, below 1e-12 for most values).
    for (key, g_ref) in selected.iter().zip(&grad_ref) {
        let e = m.params().by_key(key).unwrap();
        let ours = e.torch_data();
        let want = &r.tensor(&format!("after_step/{key}")).1;
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let widened = 1e-4 + diameter.selected.get(key.as_str()).copied().unwrap_or(0.0);
        let dg = widened * g_ref.iter().fold(0.0f64, |m, v| m.max(f64::from(v.abs())));
        let (lr, eps) = (cfg.learning_rate, cfg.epsilon);
        let step_of = |g: f64| lr * g / (g.abs() + eps);
        let (mut ratio, mut above) = (0.0f64, 0usize);
        for ((o, w), g) in ours.iter().zip(want).zip(g_ref) {
            let err = (f64::from(*o) - w).abs();
            let g = f64::from(*g);
            let carried = (step_of(g + dg) - step_of(g)).abs().max((step_of(g - dg) - step_of(g)).abs());
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
