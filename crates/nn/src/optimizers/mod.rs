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

use convnet_tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::{Misshaped, NnError, Param, Result};

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

    /// One update of every parameter that has a gradient: Keras' `apply_gradients`.
    pub fn apply<'a>(&mut self, updates: impl IntoIterator<Item = (&'a mut Param, &'a Tensor)>) -> Result<()> {
        let step = self.iterations + 1;
        let rule = self.config.rule();
        let n_slots = rule.slots();
        let mut pending = Vec::new();
        for (p, g) in updates {
            if g.dims() != p.dims() {
                return Err(NnError::WeightsMismatch {
                    source_name: "gradients".into(),
                    missing: vec![],
                    unexpected: vec![],
                    misshaped: vec![Misshaped {
                        path: p.path().into(),
                        expected: p.dims().to_vec(),
                        got: g.dims().to_vec(),
                    }],
                });
            }
            pending.push((p, g));
        }
        for (p, g) in pending {
            let slots = self.slots.entry(p.path().to_string()).or_insert_with(|| vec![vec![0.0; g.numel()]; n_slots]);
            rule.update(step, p.data_mut(), g.data(), slots);
        }
        self.iterations = step;
        self.built = true;
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

    #[test]
    fn adam_first_step_moves_by_the_learning_rate() {
        let mut p = Param::new("w", Tensor::from_vec(vec![1.0, -1.0, 0.5], [3]).unwrap(), true);
        let g = Tensor::from_vec(vec![0.5, -2.0, 0.0], [3]).unwrap();
        let mut opt = Optimizer::new(Adam::default());
        opt.apply([(&mut p, &g)]).unwrap();
        let w = p.value().data();
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
        let mut p = Param::new("w", Tensor::from_vec(vec![1.0], [1]).unwrap(), true);
        let g = Tensor::from_vec(vec![1.0], [1]).unwrap();
        let mut opt = Optimizer::new(Sgd::new(0.1).with_momentum(0.9));
        opt.apply([(&mut p, &g)]).unwrap(); // m = -0.1, w = 0.9
        opt.apply([(&mut p, &g)]).unwrap(); // m = -0.09 - 0.1 = -0.19, w = 0.71
        assert!((p.value().data()[0] - 0.71).abs() < 1e-6);
        let mut q = Param::new("q", Tensor::from_vec(vec![1.0], [1]).unwrap(), true);
        let mut nesterov = Optimizer::new(Sgd::new(0.1).with_momentum(0.9).with_nesterov(true));
        nesterov.apply([(&mut q, &g)]).unwrap(); // m = -0.1; w += 0.9 * -0.1 - 0.1 = 0.81
        assert!((q.value().data()[0] - 0.81).abs() < 1e-6);
    }

    #[test]
    fn rmsprop_follows_keras() {
        let mut p = Param::new("w", Tensor::from_vec(vec![1.0], [1]).unwrap(), true);
        let g = Tensor::from_vec(vec![2.0], [1]).unwrap();
        let mut opt = Optimizer::new(RmsProp::default());
        opt.apply([(&mut p, &g)]).unwrap();
        // v = 0.1 * 4 = 0.4; w -= 1e-3 * 2 / sqrt(0.4 + 1e-7)
        let want = 1.0 - 1e-3 * 2.0 / (0.4f32 + 1e-7).sqrt();
        assert!((p.value().data()[0] - want).abs() < 1e-7);
        let mut c = Param::new("c", Tensor::from_vec(vec![1.0], [1]).unwrap(), true);
        let mut centered = Optimizer::new(RmsProp::default().with_centered(true).with_momentum(0.5));
        centered.apply([(&mut c, &g)]).unwrap();
        // avg = 0.2, denom = 0.4 - 0.04 + 1e-7; mom = incr
        let want = 1.0 - 1e-3 * 2.0 / (0.36f32 + 1e-7).sqrt();
        assert!((c.value().data()[0] - want).abs() < 1e-6);
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
