//! Adam (Kingma & Ba 2014) exactly as Keras 3 updates it:
//! `alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)`, `m += (g - m) * (1 - beta_1)`,
//! `v += (g^2 - v) * (1 - beta_2)`, `w -= m * alpha / (sqrt(v) + epsilon)`, all in f32.
//! Defaults: `learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False`.
//! With `weight_decay` (PyTorch's L2 form, not AdamW's) the gradient is `g + weight_decay * w`.

use serde::{Deserialize, Serialize};

use super::UpdateRule;

/// Adam's arguments.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Adam {
    /// Step size, default 0.001.
    pub learning_rate: f64,
    /// Decay of the first moment, default 0.9.
    pub beta_1: f64,
    /// Decay of the second moment, default 0.999.
    pub beta_2: f64,
    /// Added to `sqrt(v)`, default 1e-7.
    pub epsilon: f64,
    /// Use the running maximum of `v` (AMSGrad), default false.
    #[serde(default)]
    pub amsgrad: bool,
    /// L2 penalty added to the gradient (`g + weight_decay * w`, as PyTorch's
    /// `weight_decay` argument), default 0: the Keras update is unchanged at 0.
    #[serde(default)]
    pub weight_decay: f64,
}

impl Default for Adam {
    fn default() -> Self {
        Adam { learning_rate: 1e-3, beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7, amsgrad: false, weight_decay: 0.0 }
    }
}

impl Adam {
    /// Adam with Keras' defaults and this learning rate.
    pub fn new(learning_rate: f64) -> Self {
        Adam { learning_rate, ..Self::default() }
    }
    /// Sets `beta_1`.
    pub fn with_beta_1(mut self, beta_1: f64) -> Self {
        self.beta_1 = beta_1;
        self
    }
    /// Sets `beta_2`.
    pub fn with_beta_2(mut self, beta_2: f64) -> Self {
        self.beta_2 = beta_2;
        self
    }
    /// Sets epsilon.
    pub fn with_epsilon(mut self, epsilon: f64) -> Self {
        self.epsilon = epsilon;
        self
    }
    /// Sets AMSGrad.
    pub fn with_amsgrad(mut self, amsgrad: bool) -> Self {
        self.amsgrad = amsgrad;
        self
    }
    /// Sets the L2 weight decay.
    pub fn with_weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }
}

impl UpdateRule for Adam {
    fn slots(&self) -> usize {
        if self.amsgrad { 3 } else { 2 }
    }
    fn update(&self, step: u64, w: &mut [f32], g: &[f32], slots: &mut [Vec<f32>]) {
        // Keras casts the Python floats to f32; `1 - beta` is taken in f64 first
        let t = step as f32;
        let lr = self.learning_rate as f32;
        let b1_power = (self.beta_1 as f32).powf(t);
        let b2_power = (self.beta_2 as f32).powf(t);
        let alpha = lr * (1.0 - b2_power).sqrt() / (1.0 - b1_power);
        let one_b1 = (1.0 - self.beta_1) as f32;
        let one_b2 = (1.0 - self.beta_2) as f32;
        let eps = self.epsilon as f32;
        let (m, rest) = slots.split_at_mut(1);
        let m = &mut m[0];
        let (v, rest) = rest.split_at_mut(1);
        let v = &mut v[0];
        if self.amsgrad {
            let vhat = &mut rest[0];
            for i in 0..w.len() {
                m[i] += (g[i] - m[i]) * one_b1;
                v[i] += (g[i] * g[i] - v[i]) * one_b2;
                vhat[i] = vhat[i].max(v[i]);
                w[i] -= (m[i] * alpha) / (vhat[i].sqrt() + eps);
            }
            return;
        }
        for (((w, g), m), v) in w.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            *m += (g - *m) * one_b1;
            *v += (g * g - *v) * one_b2;
            *w -= (*m * alpha) / (v.sqrt() + eps);
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
