//! Stochastic gradient descent as Keras 3 updates it. Without momentum `w -= lr * g`;
//! with momentum `m = momentum * m - lr * g`, then `w += m` or, with Nesterov,
//! `w += momentum * m - lr * g`. Defaults: `learning_rate=0.01, momentum=0.0,
//! nesterov=False`. With `weight_decay` (PyTorch's L2 form) the gradient is `g + weight_decay * w`.

use serde::{Deserialize, Serialize};

use super::UpdateRule;

/// SGD's arguments.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sgd {
    /// Step size, default 0.01.
    pub learning_rate: f64,
    /// Momentum, default 0.
    pub momentum: f64,
    /// Nesterov momentum, default false.
    pub nesterov: bool,
    /// L2 penalty added to the gradient (`g + weight_decay * w`, as PyTorch's
    /// `weight_decay` argument), default 0: the Keras update is unchanged at 0.
    #[serde(default)]
    pub weight_decay: f64,
}

impl Default for Sgd {
    fn default() -> Self {
        Sgd { learning_rate: 0.01, momentum: 0.0, nesterov: false, weight_decay: 0.0 }
    }
}

impl Sgd {
    /// SGD with this learning rate, no momentum.
    pub fn new(learning_rate: f64) -> Self {
        Sgd { learning_rate, ..Self::default() }
    }
    /// Sets the momentum.
    pub fn with_momentum(mut self, momentum: f64) -> Self {
        self.momentum = momentum;
        self
    }
    /// Sets Nesterov momentum.
    pub fn with_nesterov(mut self, nesterov: bool) -> Self {
        self.nesterov = nesterov;
        self
    }
    /// Sets the L2 weight decay.
    pub fn with_weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }
}

impl UpdateRule for Sgd {
    fn slots(&self) -> usize {
        usize::from(self.momentum != 0.0)
    }
    fn update(&self, _step: u64, w: &mut [f32], g: &[f32], slots: &mut [Vec<f32>]) {
        let lr = self.learning_rate as f32;
        let Some(m) = slots.first_mut() else {
            for (w, g) in w.iter_mut().zip(g) {
                *w -= g * lr;
            }
            return;
        };
        let mu = self.momentum as f32;
        for ((w, g), m) in w.iter_mut().zip(g).zip(m.iter_mut()) {
            *m = *m * mu - g * lr;
            if self.nesterov {
                *w += *m * mu - g * lr;
            } else {
                *w += *m;
            }
        }
    }
    fn learning_rate(&self) -> f64 {
        self.learning_rate
    }
    fn set_learning_rate(&mut self, lr: f64) {
        self.learning_rate = lr;
    }
    fn weight_decay(&self) -> f64 {
        self.weight_decay
    }
}
