//! Optimizers with Keras 3's update formulas and defaults: [`Adam`], [`Sgd`] and
//! [`RmsProp`]. An [`Optimizer`] holds one config plus the state Keras keeps: the iteration
//! count and per-parameter slot buffers (momentums, velocities), keyed by parameter path.
//! Updates happen in place on the parameters' values.

mod adam;
mod rmsprop;
mod sgd;

pub use adam::Adam;
pub use rmsprop::RmsProp;
pub use sgd::Sgd;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{NnError, Result};

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
}

impl OptimizerConfig {
    fn rule(&self) -> &dyn UpdateRule {
        match self {
            OptimizerConfig::Adam(o) => o,
            OptimizerConfig::Sgd(o) => o,
            OptimizerConfig::RmsProp(o) => o,
        }
    }
    fn rule_mut(&mut self) -> &mut dyn UpdateRule {
        match self {
            OptimizerConfig::Adam(o) => o,
            OptimizerConfig::Sgd(o) => o,
            OptimizerConfig::RmsProp(o) => o,
        }
    }

    /// Parses Keras' name with default arguments (`"adam"`, `"sgd"`, `"rmsprop"`).
    pub fn from_name(name: &str) -> Result<OptimizerConfig> {
        match name.to_ascii_lowercase().as_str() {
            "adam" => Ok(Adam::default().into()),
            "sgd" => Ok(Sgd::default().into()),
            "rmsprop" => Ok(RmsProp::default().into()),
            _ => Err(NnError::arg("optimizer", format!("unknown optimizer {name:?}; use adam, sgd or rmsprop"))),
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

/// An optimizer with its state.
#[derive(Clone, Debug)]
pub struct Optimizer {
    config: OptimizerConfig,
    iterations: u64,
    built: bool,
    slots: BTreeMap<String, Vec<Vec<f32>>>,
}

impl Optimizer {
    /// A fresh optimizer (no iterations, no slots yet).
    pub fn new(config: impl Into<OptimizerConfig>) -> Optimizer {
        Optimizer { config: config.into(), iterations: 0, built: false, slots: BTreeMap::new() }
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

    /// One update of every parameter in `updates` (one step: the iteration count grows by
    /// one). Slot buffers are kept by parameter key, so any store can be optimised.
    pub fn apply_updates(&mut self, updates: Vec<ParamUpdate<'_>>) -> Result<()> {
        let step = self.iterations + 1;
        let rule = self.config.rule();
        let n_slots = rule.slots();
        for u in updates {
            let slots = self.slots.entry(u.key.to_string()).or_insert_with(|| vec![vec![0.0; u.grad.len()]; n_slots]);
            rule.update(step, u.value, u.grad, slots);
        }
        self.iterations = step;
        self.built = true;
        Ok(())
    }
}

/// One parameter's part of an optimizer step: its key (naming its slot buffers), its
/// values, updated in place, its gradient, and whether weight decay applies to it.
pub struct ParamUpdate<'a> {
    /// The parameter's key in its store.
    pub key: &'a str,
    /// The values.
    pub value: &'a mut [f32],
    /// The gradient, as long as `value`.
    pub grad: &'a [f32],
    /// Whether weight decay applies.
    pub decay: bool,
}

/// timm's `filter_bias_and_bn` rule: weight decay for weights of two or more axes that
/// are not biases.
pub fn decays(key: &str, dims: &[usize]) -> bool {
    dims.len() > 1 && !key.ends_with("bias")
}

/// Scales the gradients so that their global L2 norm is at most `max_norm` (PyTorch's
/// `clip_grad_norm_`); returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut [&mut [f32]], max_norm: f32) -> f32 {
    let norm = grads.iter().flat_map(|g| g.iter()).map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
    let scale = max_norm as f64 / (norm + 1e-6);
    if scale < 1.0 {
        for g in grads.iter_mut() {
            for v in g.iter_mut() {
                *v = (*v as f64 * scale) as f32;
            }
        }
    }
    norm as f32
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
        let mut w = vec![1.0, -1.0, 0.5];
        let g = vec![0.5, -2.0, 0.0];
        let mut opt = Optimizer::new(Adam::default());
        step(&mut opt, "w", &mut w, &g);
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

    #[test]
    fn configs_round_trip_with_keras_class_names() {
        let c: OptimizerConfig = Sgd::new(0.05).with_momentum(0.9).into();
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.starts_with(r#"{"class_name":"SGD""#), "{json}");
        assert_eq!(serde_json::from_str::<OptimizerConfig>(&json).unwrap(), c);
        assert_eq!(OptimizerConfig::from_name("Adam").unwrap(), OptimizerConfig::Adam(Adam::default()));
    }
}
