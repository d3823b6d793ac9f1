//! AdamW (Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization") exactly as
//! PyTorch's `torch.optim.AdamW` updates it (timm's default for fine-tuning):
//! `w *= 1 - lr * weight_decay` (only for parameters that decay), `m = b1 m + (1 - b1) g`,
//! `v = b2 v + (1 - b2) g^2`, `w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`.
//! Defaults as PyTorch's: `lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01`.
//! The decay itself is applied by [`super::Optimizer`], which knows each parameter's
//! `decay` flag; this rule does the moment update.

use serde::{Deserialize, Serialize};

use super::UpdateRule;

/// AdamW's arguments.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamW {
    /// Step size, default 0.001.
    pub learning_rate: f64,
    /// Decay of the first moment, default 0.9.
    pub beta_1: f64,
    /// Decay of the second moment, default 0.999.
    pub beta_2: f64,
    /// Added to the bias-corrected `sqrt(v)`, default 1e-8.
    pub epsilon: f64,
    /// Decoupled weight decay, default 0.01: `w *= 1 - lr * weight_decay` each step.
    pub weight_decay: f64,
}

impl Default for AdamW {
    fn default() -> Self {
        AdamW { learning_rate: 1e-3, beta_1: 0.9, beta_2: 0.999, epsilon: 1e-8, weight_decay: 0.01 }
    }
}

impl AdamW {
    /// AdamW with PyTorch's defaults and this learning rate.
    pub fn new(learning_rate: f64) -> Self {
        AdamW { learning_rate, ..Self::default() }
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
    /// Sets the decoupled weight decay.
    pub fn with_weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }
}

impl UpdateRule for AdamW {
    fn slots(&self) -> usize {
        2
    }
    fn update(&self, step: u64, w: &mut [f32], g: &[f32], slots: &mut [Vec<f32>]) {
        // the per-step scalars in f64, as PyTorch computes them in Python floats
        let t = step as f64;
        let step_size = (self.learning_rate / (1.0 - self.beta_1.powf(t))) as f32;
        let bc2_sqrt = (1.0 - self.beta_2.powf(t)).sqrt() as f32;
        let (b1, b2) = (self.beta_1 as f32, self.beta_2 as f32);
        let (one_b1, one_b2) = ((1.0 - self.beta_1) as f32, (1.0 - self.beta_2) as f32);
        let eps = self.epsilon as f32;
        let [m, v] = slots else { unreachable!("AdamW keeps two slots") };
        for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            *m = b1 * *m + one_b1 * g;
            *v = b2 * *v + one_b2 * g * g;
            *w -= step_size * *m / (v.sqrt() / bc2_sqrt + eps);
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
    fn decoupled_decay(&self) -> bool {
        true
    }
}
