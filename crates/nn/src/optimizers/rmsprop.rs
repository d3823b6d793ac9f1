//! RMSprop (Hinton's lecture 6e) as Keras 3 updates it:
//! `v = rho * v + (1 - rho) * g^2`; centered: `a = rho * a + (1 - rho) * g` and the
//! denominator `v - a^2 + eps`, else `v + eps`; `inc = lr * g / sqrt(denominator)`; with
//! momentum `m = momentum * m + inc; w -= m`, else `w -= inc`. Defaults:
//! `learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False`.
//! With `weight_decay` (PyTorch's L2 form) the gradient is `g + weight_decay * w`.

use serde::{Deserialize, Serialize};

use super::UpdateRule;

/// RMSprop's arguments.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RmsProp {
    /// Step size, default 0.001.
    pub learning_rate: f64,
    /// Decay of the squared-gradient average, default 0.9.
    pub rho: f64,
    /// Momentum, default 0.
    pub momentum: f64,
    /// Added inside the square root, default 1e-7.
    pub epsilon: f64,
    /// Divide by the gradient's variance instead of its second moment, default false.
    pub centered: bool,
    /// L2 penalty added to the gradient (`g + weight_decay * w`, as PyTorch's
    /// `weight_decay` argument), default 0: the Keras update is unchanged at 0.
    #[serde(default)]
    pub weight_decay: f64,
}

impl Default for RmsProp {
    fn default() -> Self {
        RmsProp { learning_rate: 1e-3, rho: 0.9, momentum: 0.0, epsilon: 1e-7, centered: false, weight_decay: 0.0 }
    }
}

impl RmsProp {
    /// RMSprop with Keras' defaults and this learning rate.
    pub fn new(learning_rate: f64) -> Self {
        RmsProp { learning_rate, ..Self::default() }
    }
    /// Sets rho.
    pub fn with_rho(mut self, rho: f64) -> Self {
        self.rho = rho;
        self
    }
    /// Sets the momentum.
    pub fn with_momentum(mut self, momentum: f64) -> Self {
        self.momentum = momentum;
        self
    }
    /// Sets epsilon.
    pub fn with_epsilon(mut self, epsilon: f64) -> Self {
        self.epsilon = epsilon;
        self
    }
    /// Sets centered.
    pub fn with_centered(mut self, centered: bool) -> Self {
        self.centered = centered;
        self
    }
    /// Sets the L2 weight decay.
    pub fn with_weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }
}

impl UpdateRule for RmsProp {
    fn slots(&self) -> usize {
        1 + usize::from(self.momentum > 0.0) + usize::from(self.centered)
    }
    fn update(&self, _step: u64, w: &mut [f32], g: &[f32], slots: &mut [Vec<f32>]) {
        let (lr, rho, eps, mu) =
            (self.learning_rate as f32, self.rho as f32, self.epsilon as f32, self.momentum as f32);
        // Keras takes `1 - rho` in f64 before the cast
        let one_rho = (1.0 - self.rho) as f32;
        // slot order: velocity, momentum (if any), average gradient (if centered)
        let (velocity, rest) = slots.split_first_mut().expect("at least the velocity slot");
        let (mut momentum, rest) = if mu > 0.0 {
            let (m, rest) = rest.split_first_mut().expect("momentum slot");
            (Some(m), rest)
        } else {
            (None, rest)
        };
        let mut average = if self.centered { rest.first_mut() } else { None };
        for i in 0..w.len() {
            let gi = g[i];
            velocity[i] = rho * velocity[i] + one_rho * (gi * gi);
            let denominator = match average.as_deref_mut() {
                Some(a) => {
                    a[i] = rho * a[i] + one_rho * gi;
                    velocity[i] - a[i] * a[i] + eps
                }
                None => velocity[i] + eps,
            };
            let increment = (lr * gi) / denominator.sqrt();
            match momentum.as_deref_mut() {
                Some(m) => {
                    m[i] = mu * m[i] + increment;
                    w[i] -= m[i];
                }
                None => w[i] -= increment,
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
