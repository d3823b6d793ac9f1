//! Optimizers with Keras 3's update formulas and defaults: [`Adam`], [`Sgd`] and
//! [`RmsProp`], plus PyTorch's [`AdamW`]. An [`Optimizer`] holds one config plus the state
//! Keras keeps: the iteration count and per-parameter slot buffers (momentums,
//! velocities), keyed by parameter path. Updates happen in place on the parameters' values.
//!
//! The optimizer does not know any parameter store: a step is a list of [`ParamUpdate`]s
//! (key, values, gradient, whether weight decay applies), so every model's parameter store
//! ([`crate::Params`]) uses the same optimizers. [`Optimizer::state`] and
//! [`Optimizer::set_state`] carry the state through a checkpoint.

mod adam;
mod adamw;
mod clip;
mod rmsprop;
mod sgd;

pub use adam::Adam;
pub use adamw::AdamW;
pub use clip::clip_grad_norm;
pub use rmsprop::RmsProp;
pub use sgd::Sgd;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Misshaped, NnError, Result};

/// One optimizer's update rule.
pub trait UpdateRule {
    /// Buffers kept per parameter, each as long as the parameter.
    fn slots(&self) -> usize;
    /// Updates `w` in place from its gradient `g` at iteration `step` (1-based).
    fn update(&self, step: u64, w: &mut [f32], g: &[f32], slots: &mut [Vec<f32>]);
    /// The learning rate.
    fn learning_rate(&self) -> f64;
    /// Sets the learning rate.
    fn set_learning_rate(&mut self, lr: f64);
    /// Weight decay for parameters whose update has `decay` set (default 0).
    fn weight_decay(&self) -> f64 {
        0.0
    }
    /// Decoupled decay `w *= 1 - lr * wd` before the update (AdamW) instead of the L2
    /// form `g += wd * w` (PyTorch's SGD, Adam, RMSprop). Default false.
    fn decoupled_decay(&self) -> bool {
        false
    }
}

/// An optimizer config, serialized as `{"class_name": "Adam", "config": {...}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "class_name", content = "config")]
pub enum OptimizerConfig {
    /// [`Adam`].
    Adam(Adam),
    /// [`Sgd`].
    #[serde(rename = "SGD")]
    Sgd(Sgd),
    /// [`RmsProp`].
    #[serde(rename = "RMSprop")]
    RmsProp(RmsProp),
    /// [`AdamW`].
    AdamW(AdamW),
}

impl OptimizerConfig {
    fn rule(&self) -> &dyn UpdateRule {
        match self {
            OptimizerConfig::Adam(o) => o,
            OptimizerConfig::Sgd(o) => o,
            OptimizerConfig::RmsProp(o) => o,
            OptimizerConfig::AdamW(o) => o,
        }
    }
    fn rule_mut(&mut self) -> &mut dyn UpdateRule {
        match self {
            OptimizerConfig::Adam(o) => o,
            OptimizerConfig::Sgd(o) => o,
            OptimizerConfig::RmsProp(o) => o,
            OptimizerConfig::AdamW(o) => o,
        }
    }

    /// Parses Keras' name with default arguments (`"adam"`, `"sgd"`, `"rmsprop"`, `"adamw"`).
    pub fn from_name(name: &str) -> Result<OptimizerConfig> {
        match name.to_ascii_lowercase().as_str() {
            "adam" => Ok(Adam::default().into()),
            "sgd" => Ok(Sgd::default().into()),
            "rmsprop" => Ok(RmsProp::default().into()),
            "adamw" => Ok(AdamW::default().into()),
            _ => Err(NnError::arg("optimizer", format!("unknown optimizer {name:?}; use adam, adamw, sgd or rmsprop"))),
        }
    }
}

impl From<Adam> for OptimizerConfig {
    fn from(o: Adam) -> Self {
        OptimizerConfig::Adam(o)
    }
}
impl From<Sgd> for OptimizerConfig {
    fn from(o: Sgd) -> Self {
        OptimizerConfig::Sgd(o)
    }
}
impl From<RmsProp> for OptimizerConfig {
    fn from(o: RmsProp) -> Self {
        OptimizerConfig::RmsProp(o)
    }
}
impl From<AdamW> for OptimizerConfig {
    fn from(o: AdamW) -> Self {
        OptimizerConfig::AdamW(o)
    }
}

/// One parameter's part of an optimizer step, from any parameter store.
#[derive(Debug)]
pub struct ParamUpdate<'a> {
    /// The parameter's name; its slot buffers are kept under it (`conv2d/kernel`,
    /// `layer1.0.conv1.weight`).
    pub key: &'a str,
    /// The values, updated in place (any layout: every rule is elementwise).
    pub value: &'a mut [f32],
    /// The gradient, as long as `value` and in the same layout.
    pub grad: &'a [f32],
    /// Whether weight decay applies (see [`decays`]).
    pub decay: bool,
}

/// Whether a parameter gets weight decay, as timm's `param_groups_weight_decay`
/// (`filter_bias_and_bn`): not for 1-D tensors (norm scales and shifts, biases) nor for any
/// key ending in `bias` (`fc.bias`, `dense/bias`), since decaying them only hurts.
/// `dims` is the parameter's shape.
pub fn decays(key: &str, dims: &[usize]) -> bool {
    dims.len() > 1 && !key.ends_with("bias")
}

/// What [`Optimizer::state`] returns: the iteration count and, per parameter key, its slot
/// buffers in the rule's order (Adam's `[m, v]`).
pub type OptimizerState = (u64, Vec<(String, Vec<Vec<f32>>)>);

/// An optimizer with its state.
#[derive(Clone, Debug)]
pub struct Optimizer {
    config: OptimizerConfig,
    iterations: u64,
    built: bool,
    slots: BTreeMap<String, Vec<Vec<f32>>>,
    /// Reused buffer for L2-decayed gradients.
    scratch: Vec<f32>,
}

impl Optimizer {
    /// A fresh optimizer (no iterations, no slots yet).
    pub fn new(config: impl Into<OptimizerConfig>) -> Optimizer {
        Optimizer { config: config.into(), iterations: 0, built: false, slots: BTreeMap::new(), scratch: Vec::new() }
    }

    /// The config.
    pub fn config(&self) -> &OptimizerConfig {
        &self.config
    }

    /// Updates applied so far (Keras' `optimizer.iterations`).
    pub fn iterations(&self) -> u64 {
        self.iterations
    }

    /// The learning rate.
    pub fn learning_rate(&self) -> f64 {
        self.config.rule().learning_rate()
    }

    /// Sets the learning rate (takes effect at the next update).
    pub fn set_learning_rate(&mut self, lr: f64) {
        self.config.rule_mut().set_learning_rate(lr);
    }

    /// The slot buffers of parameter `path` (e.g. Adam's `[m, v]`), once it was updated.
    pub fn slots(&self, path: &str) -> Option<&[Vec<f32>]> {
        self.slots.get(path).map(|s| s.as_slice())
    }

    /// Whether a first update created the state (Keras' `optimizer.built`).
    pub fn built(&self) -> bool {
        self.built
    }

    /// Keras' count of optimizer variables for `trainable` values: the iteration counter,
    /// the learning rate and the slots, with their size in bytes (int64 counter, f32 rest).
    pub fn variable_count(&self, trainable: usize) -> (usize, usize) {
        let slot_values = self.config.rule().slots() * trainable;
        (2 + slot_values, 8 + 4 + 4 * slot_values)
    }

    /// One optimizer step over `updates`: the iteration count goes up once, each
    /// parameter's slots are found (or created) under its key. Everything is checked before
    /// any value changes: a gradient of another length, a key given twice, or slots of
    /// another size (a parameter reshaped since) are errors and leave the state as it was.
    pub fn apply_updates(&mut self, updates: Vec<ParamUpdate<'_>>) -> Result<()> {
        let rule = self.config.rule();
        let n_slots = rule.slots();
        let mut misshaped = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for u in &updates {
            if !seen.insert(u.key) {
                return Err(NnError::arg("optimizer", format!("parameter {:?} appears twice in one step", u.key)));
            }
            let held = self.slots.get(u.key).and_then(|s| s.first()).map(Vec::len);
            if u.grad.len() != u.value.len() || held.is_some_and(|h| h != u.value.len()) {
                misshaped.push(Misshaped {
                    path: u.key.to_string(),
                    expected: vec![held.unwrap_or(u.value.len())],
                    got: vec![u.grad.len()],
                });
            }
        }
        if !misshaped.is_empty() {
            return Err(NnError::WeightsMismatch {
                source_name: "gradients".into(),
                missing: vec![],
                unexpected: vec![],
                misshaped,
            });
        }
        let step = self.iterations + 1;
        let wd = rule.weight_decay();
        let decoupled = rule.decoupled_decay();
        let lr = rule.learning_rate();
        for u in updates {
            let slots = self.slots.entry(u.key.to_string()).or_insert_with(|| vec![vec![0.0; u.value.len()]; n_slots]);
            let decay = u.decay && wd != 0.0;
            if decay && decoupled {
                let keep = (1.0 - lr * wd) as f32;
                u.value.iter_mut().for_each(|w| *w *= keep);
                rule.update(step, u.value, u.grad, slots);
            } else if decay {
                let wd = wd as f32;
                self.scratch.clear();
                self.scratch.extend(u.grad.iter().zip(u.value.iter()).map(|(g, w)| g + wd * w));
                rule.update(step, u.value, &self.scratch, slots);
            } else {
                rule.update(step, u.value, u.grad, slots);
            }
        }
        self.iterations = step;
        self.built = true;
        Ok(())
    }

    /// The state a resumed run needs besides the config: the iteration count and every
    /// parameter's slot buffers by key (sorted by key). Store it with the weights (e.g. as
    /// safetensors `optimizer/<key>/<slot index>`) and give it to [`Optimizer::set_state`].
    pub fn state(&self) -> OptimizerState {
        (self.iterations, self.slots.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    /// Restores what [`Optimizer::state`] returned, replacing the current state, so the
    /// next step is bit-identical to the one the saved run would have taken. Each key must
    /// hold as many buffers as this config keeps ([`UpdateRule::slots`]), all of one length.
    pub fn set_state(&mut self, iterations: u64, slots: Vec<(String, Vec<Vec<f32>>)>) -> Result<()> {
        let want = self.config.rule().slots();
        for (key, bufs) in &slots {
            if bufs.len() != want {
                return Err(NnError::arg(
                    "optimizer state",
                    format!("{key:?} has {} slot buffers; this optimizer keeps {want}", bufs.len()),
                ));
            }
            if bufs.windows(2).any(|w| w[0].len() != w[1].len()) {
                return Err(NnError::arg("optimizer state", format!("{key:?} has slot buffers of different lengths")));
            }
        }
        self.iterations = iterations;
        self.built = iterations > 0 || !slots.is_empty();
        self.slots = slots.into_iter().collect();
        Ok(())
    }
}

impl<T: Into<OptimizerConfig>> From<T> for Optimizer {
    fn from(c: T) -> Self {
        Optimizer::new(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(opt: &mut Optimizer, key: &str, w: &mut [f32], g: &[f32]) {
        opt.apply_updates(vec![ParamUpdate { key, value: w, grad: g, decay: true }]).unwrap();
    }

    #[test]
    fn adam_first_step_moves_by_the_learning_rate() {
        let mut p = vec![1.0, -1.0, 0.5];
        let g = vec![0.5, -2.0, 0.0];
        let mut opt = Optimizer::new(Adam::default());
        step(&mut opt, "w", &mut p, &g);
        let w = &p;
        // m = 0.1 g, v = 0.001 g^2, alpha = lr sqrt(0.001) / 0.1: update ~ lr * sign(g)
        assert!((w[0] - (1.0 - 1e-3)).abs() < 1e-6, "{}", w[0]);
        assert!((w[1] - (-1.0 + 1e-3)).abs() < 1e-6);
        assert_eq!(w[2], 0.5);
        assert_eq!(opt.iterations(), 1);
        assert_eq!(opt.slots("w").unwrap().len(), 2);
        assert_eq!(opt.variable_count(3), (8, 8 + 4 + 24));
    }

    #[test]
    fn sgd_with_momentum_follows_keras() {
        let mut p = vec![1.0];
        let g = vec![1.0];
        let mut opt = Optimizer::new(Sgd::new(0.1).with_momentum(0.9));
        step(&mut opt, "w", &mut p, &g); // m = -0.1, w = 0.9
        step(&mut opt, "w", &mut p, &g); // m = -0.09 - 0.1 = -0.19, w = 0.71
        assert!((p[0] - 0.71).abs() < 1e-6);
        let mut q = vec![1.0];
        let mut nesterov = Optimizer::new(Sgd::new(0.1).with_momentum(0.9).with_nesterov(true));
        step(&mut nesterov, "q", &mut q, &g); // m = -0.1; w += 0.9 * -0.1 - 0.1 = 0.81
        assert!((q[0] - 0.81).abs() < 1e-6);
    }

    #[test]
    fn rmsprop_follows_keras() {
        let mut p = vec![1.0];
        let g = vec![2.0];
        let mut opt = Optimizer::new(RmsProp::default());
        step(&mut opt, "w", &mut p, &g);
        // v = 0.1 * 4 = 0.4; w -= 1e-3 * 2 / sqrt(0.4 + 1e-7)
        let want = 1.0 - 1e-3 * 2.0 / (0.4f32 + 1e-7).sqrt();
        assert!((p[0] - want).abs() < 1e-7);
        let mut c = vec![1.0];
        let mut centered = Optimizer::new(RmsProp::default().with_centered(true).with_momentum(0.5));
        step(&mut centered, "c", &mut c, &g);
        // avg = 0.2, denom = 0.4 - 0.04 + 1e-7; mom = incr
        let want = 1.0 - 1e-3 * 2.0 / (0.36f32 + 1e-7).sqrt();
        assert!((c[0] - want).abs() < 1e-6);
        assert_eq!(centered.slots("c").unwrap().len(), 3);
    }

    /// PyTorch's AdamW in f64 on one value, the reference for the f32 rule.
    fn adamw_ref(w: &mut f64, m: &mut f64, v: &mut f64, g: f64, t: i32, lr: f64, wd: f64) {
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
        *w *= 1.0 - lr * wd;
        *m = b1 * *m + (1.0 - b1) * g;
        *v = b2 * *v + (1.0 - b2) * g * g;
        *w -= lr / (1.0 - b1.powi(t)) * *m / (v.sqrt() / (1.0 - b2.powi(t)).sqrt() + eps);
    }

    #[test]
    fn adamw_follows_pytorch_over_steps() {
        let w0 = [0.5f32, -1.5, 0.02, 3.0, 0.0];
        let grads = [[0.1f32, -0.3, 2.0, 1e-3, -0.7], [-0.2, -0.1, 1.0, 5e-4, 0.7], [0.05, 0.4, -3.0, 0.0, 0.1]];
        let mut w = w0.to_vec();
        let mut opt = Optimizer::new(AdamW::new(0.01).with_weight_decay(0.05));
        let (mut rw, mut rm, mut rv) = (w0.map(f64::from), [0.0f64; 5], [0.0f64; 5]);
        for (t, g) in grads.iter().enumerate() {
            opt.apply_updates(vec![ParamUpdate { key: "w", value: &mut w, grad: g, decay: true }]).unwrap();
            for i in 0..5 {
                adamw_ref(&mut rw[i], &mut rm[i], &mut rv[i], f64::from(g[i]), t as i32 + 1, 0.01, 0.05);
            }
            for i in 0..5 {
                assert!((f64::from(w[i]) - rw[i]).abs() < 1e-6, "step {t} value {i}: {} vs {}", w[i], rw[i]);
            }
        }
        assert_eq!(opt.iterations(), 3);
        // without decay only the moments move it: a zero gradient leaves the value alone
        let mut b = vec![0.25f32];
        let mut plain = Optimizer::new(AdamW::default());
        plain.apply_updates(vec![ParamUpdate { key: "b", value: &mut b, grad: &[0.0], decay: false }]).unwrap();
        assert_eq!(b, vec![0.25]);
        let mut c = vec![0.25f32];
        plain.apply_updates(vec![ParamUpdate { key: "c", value: &mut c, grad: &[0.0], decay: true }]).unwrap();
        assert_eq!(c, vec![0.25 * (1.0 - 1e-3 * 0.01) as f32]);
        let json = serde_json::to_string(&OptimizerConfig::from(AdamW::default())).unwrap();
        assert!(json.starts_with(r#"{"class_name":"AdamW","config":{"learning_rate":0.001"#), "{json}");
        assert_eq!(OptimizerConfig::from_name("adamw").unwrap(), AdamW::default().into());
    }

    #[test]
    fn l2_weight_decay_adds_to_the_gradient() {
        // torch SGD: g' = g + wd * w = 1 + 0.1 * 2 = 1.2; w = 2 - 0.1 * 1.2
        let mut w = vec![2.0f32];
        let mut opt = Optimizer::new(Sgd::new(0.1).with_weight_decay(0.1));
        opt.apply_updates(vec![ParamUpdate { key: "w", value: &mut w, grad: &[1.0], decay: true }]).unwrap();
        assert!((w[0] - (2.0 - 0.1 * 1.2)).abs() < 1e-7, "{}", w[0]);
        // decay false: the Keras update as before
        let mut b = vec![2.0f32];
        opt.apply_updates(vec![ParamUpdate { key: "b", value: &mut b, grad: &[1.0], decay: false }]).unwrap();
        assert_eq!(b, vec![2.0 - 0.1]);
        // Adam and RMSprop see the decayed gradient too: same step as a plain run on g'
        for cfg in [OptimizerConfig::from(Adam::default()), RmsProp::default().into()] {
            let with: OptimizerConfig = match cfg {
                OptimizerConfig::Adam(a) => a.with_weight_decay(0.5).into(),
                OptimizerConfig::RmsProp(r) => r.with_weight_decay(0.5).into(),
                _ => unreachable!(),
            };
            let (mut a, mut b) = (vec![1.0f32], vec![1.0f32]);
            Optimizer::new(with)
                .apply_updates(vec![ParamUpdate { key: "a", value: &mut a, grad: &[0.3], decay: true }])
                .unwrap();
            Optimizer::new(cfg)
                .apply_updates(vec![ParamUpdate { key: "b", value: &mut b, grad: &[0.8], decay: true }])
                .unwrap();
            assert_eq!(a, b);
        }
        // old JSON without the field loads with no decay
        let old: OptimizerConfig = serde_json::from_str(
            r#"{"class_name":"SGD","config":{"learning_rate":0.1,"momentum":0.0,"nesterov":false}}"#,
        )
        .unwrap();
        assert_eq!(old, Sgd::new(0.1).into());
    }

    #[test]
    fn decay_skips_biases_and_vectors() {
        assert!(decays("layer1.0.conv1.weight", &[64, 64, 3, 3]));
        assert!(decays("conv2d/kernel", &[3, 3, 1, 8]));
        assert!(!decays("fc.bias", &[10]));
        assert!(!decays("bn1.weight", &[64]));
        assert!(!decays("dense/bias", &[4, 4]));
        assert!(!decays("pos_embed.bias", &[1, 4]));
        assert!(!decays("scalar", &[]));
    }

    #[test]
    fn bad_steps_are_errors_and_change_nothing() {
        let mut opt = Optimizer::new(AdamW::default());
        let (mut a, mut b) = (vec![1.0f32; 3], vec![1.0f32; 2]);
        let err = opt
            .apply_updates(vec![
                ParamUpdate { key: "a", value: &mut a, grad: &[0.1; 3], decay: true },
                ParamUpdate { key: "b", value: &mut b, grad: &[0.1; 3], decay: true },
            ])
            .unwrap_err();
        assert!(err.to_string().contains('b'), "{err}");
        assert_eq!((a.as_slice(), opt.iterations()), (&[1.0f32; 3][..], 0));
        let twice = opt.apply_updates(vec![
            ParamUpdate { key: "a", value: &mut a, grad: &[0.1; 3], decay: true },
            ParamUpdate { key: "a", value: &mut b, grad: &[0.1; 2], decay: true },
        ]);
        assert!(matches!(twice, Err(NnError::InvalidArgument { .. })));
        opt.apply_updates(vec![ParamUpdate { key: "a", value: &mut a, grad: &[0.1; 3], decay: true }]).unwrap();
        // the same key with another length later: the slots no longer fit
        let mut c = vec![1.0f32; 4];
        assert!(
            opt.apply_updates(vec![ParamUpdate { key: "a", value: &mut c, grad: &[0.1; 4], decay: true }]).is_err()
        );
        assert!(opt.set_state(1, vec![("a".into(), vec![vec![0.0; 3]])]).is_err());
        assert!(opt.set_state(1, vec![("a".into(), vec![vec![0.0; 3], vec![0.0; 2]])]).is_err());
    }

    #[test]
    fn resumed_state_continues_bit_identically() {
        let grads: Vec<Vec<f32>> =
            (0..5).map(|s| (0..7).map(|i| ((s * 7 + i) as f32 * 0.37).sin()).collect()).collect();
        let w0: Vec<f32> = (0..7).map(|i| i as f32 * 0.1 - 0.3).collect();
        let cfg = AdamW::new(3e-3).with_weight_decay(0.05);
        let mut whole = Optimizer::new(cfg);
        let mut w = w0.clone();
        for g in &grads {
            whole.apply_updates(vec![ParamUpdate { key: "w", value: &mut w, grad: g, decay: true }]).unwrap();
        }
        let mut first = Optimizer::new(cfg);
        let mut r = w0;
        for g in &grads[..2] {
            first.apply_updates(vec![ParamUpdate { key: "w", value: &mut r, grad: g, decay: true }]).unwrap();
        }
        let (iterations, slots) = first.state();
        assert_eq!((iterations, slots.len(), slots[0].1.len()), (2, 1, 2));
        let mut resumed = Optimizer::new(cfg);
        resumed.set_state(iterations, slots).unwrap();
        for g in &grads[2..] {
            resumed.apply_updates(vec![ParamUpdate { key: "w", value: &mut r, grad: g, decay: true }]).unwrap();
        }
        assert_eq!(
            r.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            w.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        assert_eq!(resumed.state(), whole.state());
    }

    #[test]
    fn configs_round_trip_with_keras_class_names() {
        let c: OptimizerConfig = Sgd::new(0.05).with_momentum(0.9).into();
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.starts_with(r#"{"class_name":"SGD""#), "{json}");
        assert_eq!(serde_json::from_str::<OptimizerConfig>(&json).unwrap(), c);
        assert_eq!(OptimizerConfig::from_name("Adam").unwrap(), OptimizerConfig::Adam(Adam::default()));
    }
}
