//! Cross-entropy losses, each fused with its final activation where Keras
//! fuses it (a softmax or sigmoid output layer feeds the loss its logits), and
//! the clipped probability forms Keras uses otherwise (epsilon 1e-7).
//! All return the mean over the batch as a scalar.
//!
//! The sparse softmax form also takes label smoothing as PyTorch's
//! `CrossEntropyLoss(label_smoothing=eps)` and Keras' `label_smoothing` define it: the
//! target row is `(1 - eps) * onehot + eps / classes`.

use super::constant;
use crate::{Backward, Result, Tensor, TensorError};
use convnet_kernels::softmax::softmax_rows;
use std::sync::Arc;

/// Keras' `backend.epsilon()`: probabilities are clipped to `[eps, 1 - eps]`.
pub const EPSILON: f32 = 1e-7;

fn rows_classes(x: &Tensor, op: &'static str) -> Result<(usize, usize)> {
    match *x.dims() {
        [n, c] if c > 0 => Ok((n, c)),
        _ => Err(TensorError::shape(op, format!("needs [batch, classes], got {}", x.shape()))),
    }
}

fn check_labels(labels: &[u32], n: usize, c: usize, op: &'static str) -> Result<()> {
    if labels.len() != n {
        return Err(TensorError::shape(op, format!("{} labels for a batch of {n}", labels.len())));
    }
    if let Some((i, l)) = labels.iter().enumerate().find(|(_, l)| **l as usize >= c) {
        return Err(TensorError::invalid(op, format!("label {l} at index {i} is outside 0..{c}")));
    }
    Ok(())
}

/// Targets of a cross-entropy: class indices or one row of probabilities per sample.
#[derive(Clone)]
enum Targets {
    Sparse(Arc<Vec<u32>>),
    /// Class indices with label smoothing `eps`.
    Smoothed(Arc<Vec<u32>>, f32),
    Dense(Tensor),
}

impl Targets {
    /// Target probability of class `j` for sample `i`.
    fn get(&self, i: usize, j: usize, c: usize) -> f32 {
        match self {
            Targets::Sparse(l) => (l[i] as usize == j) as u8 as f32,
            Targets::Smoothed(l, eps) => {
                let off = eps / c as f32;
                if l[i] as usize == j { 1.0 - eps + off } else { off }
            }
            Targets::Dense(t) => t.data()[i * c + j],
        }
    }
}

struct SoftmaxCrossEntropyBackward {
    probs: Vec<f32>,
    targets: Targets,
}

impl Backward for SoftmaxCrossEntropyBackward {
    fn name(&self) -> &'static str {
        "softmax_cross_entropy"
    }
    fn backward(&self, inputs: &[Tensor], _output: &Tensor, grad: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        let [n, c] = *inputs[0].dims() else { unreachable!("checked in forward") };
        let g = grad.data()[0] / n as f32;
        let mut dx = vec![0.0; n * c];
        for i in 0..n {
            let tsum: f32 = (0..c).map(|j| self.targets.get(i, j, c)).sum();
            for j in 0..c {
                dx[i * c + j] = g * (self.probs[i * c + j] * tsum - self.targets.get(i, j, c));
            }
        }
        vec![Some(constant(dx, &[n, c])), None]
    }
}

struct ProbCrossEntropyBackward {
    targets: Targets,
}

impl Backward for ProbCrossEntropyBackward {
    fn name(&self) -> &'static str {
        "categorical_crossentropy"
    }
    fn backward(&self, inputs: &[Tensor], _output: &Tensor, grad: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        let p = &inputs[0];
        let [n, c] = *p.dims() else { unreachable!("checked in forward") };
        let g = grad.data()[0] / n as f32;
        let pd = p.data();
        let mut dp = vec![0.0; n * c];
        for i in 0..n {
            // Keras renormalises rows before clipping: p / sum(p)
            let s: f32 = pd[i * c..(i + 1) * c].iter().sum();
            let mut dot = 0.0;
            let mut local = vec![0.0; c];
            for j in 0..c {
                let q = pd[i * c + j] / s;
                let t = self.targets.get(i, j, c);
                // d/dq of -t*log(clip(q)); zero where the clip is active
                local[j] = if q > EPSILON && q < 1.0 - EPSILON { -t / q } else { 0.0 };
                dot += local[j] * q;
            }
            // chain through q = p / s
            for j in 0..c {
                dp[i * c + j] = g * (local[j] - dot) / s;
            }
        }
        vec![Some(constant(dp, &[n, c])), None]
    }
}

struct SigmoidBceBackward {
    targets: Tensor,
}

impl Backward for SigmoidBceBackward {
    fn name(&self) -> &'static str {
        "sigmoid_binary_cross_entropy"
    }
    fn backward(&self, inputs: &[Tensor], _output: &Tensor, grad: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        let x = &inputs[0];
        let g = grad.data()[0] / x.numel() as f32;
        let dx = x
            .data()
            .iter()
            .zip(self.targets.data())
            .map(|(&x, &t)| g * (crate::Activation::Sigmoid.apply(x) - t))
            .collect();
        vec![Some(constant(dx, x.dims())), None]
    }
}

struct ProbBceBackward {
    targets: Tensor,
}

impl Backward for ProbBceBackward {
    fn name(&self) -> &'static str {
        "binary_crossentropy"
    }
    fn backward(&self, inputs: &[Tensor], _output: &Tensor, grad: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        let p = &inputs[0];
        let g = grad.data()[0] / p.numel() as f32;
        let dp = p
            .data()
            .iter()
            .zip(self.targets.data())
            .map(|(&p, &t)| if p > EPSILON && p < 1.0 - EPSILON { g * (-t / p + (1.0 - t) / (1.0 - p)) } else { 0.0 })
            .collect();
        vec![Some(constant(dp, p.dims())), None]
    }
}

impl Tensor {
    fn softmax_ce(&self, targets: Targets, extra: Option<&Tensor>) -> Result<Tensor> {
        let (n, c) = rows_classes(self, "softmax_cross_entropy")?;
        let mut probs = vec![0.0; n * c];
        softmax_rows(self.data(), c, &mut probs);
        let mut loss = 0.0f64;
        for (i, xr) in self.data().chunks_exact(c).enumerate() {
            let m = xr.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let lse = m + xr.iter().map(|v| (v - m).exp()).sum::<f32>().ln();
            for (j, v) in xr.iter().enumerate() {
                let t = targets.get(i, j, c);
                if t != 0.0 {
                    loss -= (t * (v - lse)) as f64;
                }
            }
        }
        let loss = if n > 0 { (loss / n as f64) as f32 } else { 0.0 };
        let op = SoftmaxCrossEntropyBackward { probs, targets };
        let dummy;
        let inputs: [&Tensor; 2] = match extra {
            Some(t) => [self, t],
            None => {
                dummy = Tensor::scalar(0.0);
                [self, &dummy]
            }
        };
        Ok(Tensor::from_op(vec![loss], [], &inputs, op))
    }

    /// Mean cross-entropy of `softmax(self)` (`self: [n, classes]` logits)
    /// against class indices.
    pub fn softmax_cross_entropy_sparse(&self, labels: &[u32]) -> Result<Tensor> {
        let (n, c) = rows_classes(self, "sparse_categorical_crossentropy")?;
        check_labels(labels, n, c, "sparse_categorical_crossentropy")?;
        self.softmax_ce(Targets::Sparse(Arc::new(labels.to_vec())), None)
    }

    /// Mean cross-entropy of `softmax(self)` (`self: [n, classes]` logits) against class
    /// indices smoothed by `smoothing` in `[0, 1]`: each target row is
    /// `(1 - smoothing) * onehot + smoothing / classes` (PyTorch's
    /// `CrossEntropyLoss(label_smoothing=smoothing)`). The gradient is
    /// `(softmax(self) - target) / n`. `smoothing = 0` is
    /// [`Tensor::softmax_cross_entropy_sparse`].
    pub fn softmax_cross_entropy_sparse_smoothed(&self, labels: &[u32], smoothing: f32) -> Result<Tensor> {
        let op = "sparse_categorical_crossentropy";
        let (n, c) = rows_classes(self, op)?;
        check_labels(labels, n, c, op)?;
        if !(0.0..=1.0).contains(&smoothing) {
            return Err(TensorError::invalid(op, format!("label smoothing {smoothing} is outside [0, 1]")));
        }
        if smoothing == 0.0 {
            return self.softmax_ce(Targets::Sparse(Arc::new(labels.to_vec())), None);
        }
        self.softmax_ce(Targets::Smoothed(Arc::new(labels.to_vec()), smoothing), None)
    }

    /// Mean cross-entropy of `softmax(self)` against target distributions
    /// (`targets: [n, classes]`, one-hot or soft). Targets get no gradient.
    pub fn softmax_cross_entropy(&self, targets: &Tensor) -> Result<Tensor> {
        rows_classes(self, "categorical_crossentropy")?;
        if targets.dims() != self.dims() {
            return Err(TensorError::shape(
                "categorical_crossentropy",
                format!("targets {} for logits {}", targets.shape(), self.shape()),
            ));
        }
        let t = targets.detach();
        self.softmax_ce(Targets::Dense(t.clone()), Some(&t))
    }

    /// Keras' categorical cross-entropy on probabilities (`from_logits=False`
    /// with an output that is not a softmax): rows renormalised, clipped to
    /// `[1e-7, 1 - 1e-7]`. `labels` sparse.
    pub fn probs_cross_entropy_sparse(&self, labels: &[u32]) -> Result<Tensor> {
        let (n, c) = rows_classes(self, "sparse_categorical_crossentropy")?;
        check_labels(labels, n, c, "sparse_categorical_crossentropy")?;
        self.probs_ce(Targets::Sparse(Arc::new(labels.to_vec())), None)
    }

    /// As [`Tensor::probs_cross_entropy_sparse`] with target distributions.
    pub fn probs_cross_entropy(&self, targets: &Tensor) -> Result<Tensor> {
        rows_classes(self, "categorical_crossentropy")?;
        if targets.dims() != self.dims() {
            return Err(TensorError::shape(
                "categorical_crossentropy",
                format!("targets {} for probabilities {}", targets.shape(), self.shape()),
            ));
        }
        let t = targets.detach();
        self.probs_ce(Targets::Dense(t.clone()), Some(&t))
    }

    fn probs_ce(&self, targets: Targets, extra: Option<&Tensor>) -> Result<Tensor> {
        let (n, c) = rows_classes(self, "categorical_crossentropy")?;
        let mut loss = 0.0f64;
        for (i, pr) in self.data().chunks_exact(c).enumerate() {
            let s: f32 = pr.iter().sum();
            for (j, p) in pr.iter().enumerate() {
                let t = targets.get(i, j, c);
                if t != 0.0 {
                    loss -= (t * (p / s).clamp(EPSILON, 1.0 - EPSILON).ln()) as f64;
                }
            }
        }
        let loss = if n > 0 { (loss / n as f64) as f32 } else { 0.0 };
        let dummy;
        let inputs: [&Tensor; 2] = match extra {
            Some(t) => [self, t],
            None => {
                dummy = Tensor::scalar(0.0);
                [self, &dummy]
            }
        };
        Ok(Tensor::from_op(vec![loss], [], &inputs, ProbCrossEntropyBackward { targets }))
    }

    /// Mean binary cross-entropy of `sigmoid(self)` (logits) against `targets` in [0, 1].
    pub fn sigmoid_binary_cross_entropy(&self, targets: &Tensor) -> Result<Tensor> {
        if targets.dims() != self.dims() {
            return Err(TensorError::shape(
                "binary_crossentropy",
                format!("targets {} for logits {}", targets.shape(), self.shape()),
            ));
        }
        let loss: f64 = self
            .data()
            .iter()
            .zip(targets.data())
            .map(|(&x, &t)| (x.max(0.0) - x * t + (-x.abs()).exp().ln_1p()) as f64)
            .sum();
        let loss = (loss / self.numel().max(1) as f64) as f32;
        let t = targets.detach();
        Ok(Tensor::from_op(vec![loss], [], &[self, &t], SigmoidBceBackward { targets: t.clone() }))
    }

    /// Keras' binary cross-entropy on probabilities, clipped to `[1e-7, 1 - 1e-7]`.
    pub fn probs_binary_cross_entropy(&self, targets: &Tensor) -> Result<Tensor> {
        if targets.dims() != self.dims() {
            return Err(TensorError::shape(
                "binary_crossentropy",
                format!("targets {} for probabilities {}", targets.shape(), self.shape()),
            ));
        }
        let loss: f64 = self
            .data()
            .iter()
            .zip(targets.data())
            .map(|(&p, &t)| {
                let p = p.clamp(EPSILON, 1.0 - EPSILON);
                -(t * p.ln() + (1.0 - t) * (1.0 - p).ln()) as f64
            })
            .sum();
        let loss = (loss / self.numel().max(1) as f64) as f32;
        let t = targets.detach();
        Ok(Tensor::from_op(vec![loss], [], &[self, &t], ProbBceBackward { targets: t.clone() }))
    }
}
