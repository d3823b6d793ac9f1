//! Keras' `"accuracy"` metric, resolved from the loss as Keras does:
//! sparse categorical accuracy (`argmax(pred) == label`), categorical accuracy
//! (`argmax(pred) == argmax(target)`) or binary accuracy (`(pred > 0.5) == target`, mean
//! over the last axis). The argmax of logits equals that of their softmax, so a fused
//! softmax needs no probabilities.

use convnet_tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::{Loss, NnError, Result, Targets};

/// A metric reported during training and evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Fraction of correct predictions (`"accuracy"`, `"acc"`).
    #[serde(alias = "acc")]
    Accuracy,
}

impl Metric {
    /// Parses Keras' name.
    pub fn from_name(name: &str) -> Result<Metric> {
        match name {
            "accuracy" | "acc" => Ok(Metric::Accuracy),
            _ => Err(NnError::arg("metrics", format!("unknown metric {name:?}; use \"accuracy\""))),
        }
    }
    /// Keras' name (the key in logs and history).
    pub fn name(&self) -> &'static str {
        "accuracy"
    }
}

impl std::str::FromStr for Metric {
    type Err = NnError;
    fn from_str(s: &str) -> Result<Self> {
        Metric::from_name(s)
    }
}

/// Index of the first maximum of `row`.
fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best
}

/// Sum over the batch of each sample's accuracy (0 or 1, or a fraction for multi-output
/// binary accuracy). `logits` says `out` is pre-activation (fused softmax or sigmoid).
pub(crate) fn accuracy_sum(loss: &Loss, out: &Tensor, logits: bool, targets: &Targets) -> f64 {
    let n = out.dims().first().copied().unwrap_or(0);
    if n == 0 {
        return 0.0;
    }
    let per = out.numel() / n;
    let data = out.data();
    match (loss, targets) {
        (Loss::BinaryCrossentropy { .. }, _) => {
            // Keras thresholds the model output at 0.5; a fused sigmoid's logit at 0
            let threshold = if logits && !loss.from_logits() { 0.0 } else { 0.5 };
            let truth: Vec<f32> = match targets {
                Targets::Sparse(l) => l.iter().map(|&v| v as f32).collect(),
                Targets::Dense(t) => t.data().to_vec(),
            };
            if truth.len() != data.len() {
                return 0.0;
            }
            data.chunks_exact(per)
                .zip(truth.chunks_exact(per))
                .map(|(p, t)| {
                    let hits = p.iter().zip(t).filter(|(p, t)| ((**p > threshold) as u8 as f32) == **t).count();
                    hits as f64 / per as f64
                })
                .sum()
        }
        (_, Targets::Sparse(l)) => {
            data.chunks_exact(per).zip(l).filter(|(row, l)| argmax(row) == **l as usize).count() as f64
        }
        (_, Targets::Dense(t)) => {
            if t.numel() != out.numel() {
                return 0.0;
            }
            data.chunks_exact(per).zip(t.data().chunks_exact(per)).filter(|(p, t)| argmax(p) == argmax(t)).count()
                as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_follows_the_loss() {
        let out = Tensor::from_vec(vec![0.1, 0.7, 0.2, 0.5, 0.2, 0.3], [2, 3]).unwrap();
        let sparse = Loss::sparse_categorical_crossentropy();
        assert_eq!(accuracy_sum(&sparse, &out, false, &Targets::Sparse(vec![1, 2])), 1.0);
        let onehot = Tensor::from_vec(vec![0.0, 1.0, 0.0, 1.0, 0.0, 0.0], [2, 3]).unwrap();
        assert_eq!(accuracy_sum(&Loss::categorical_crossentropy(), &out, false, &Targets::Dense(onehot)), 2.0);
        let p = Tensor::from_vec(vec![0.9, 0.2, 0.6], [3, 1]).unwrap();
        let bce = Loss::binary_crossentropy();
        assert_eq!(accuracy_sum(&bce, &p, false, &Targets::Sparse(vec![1, 1, 1])), 2.0);
        let z = Tensor::from_vec(vec![0.3, -0.2, -4.0], [3, 1]).unwrap();
        assert_eq!(accuracy_sum(&bce, &z, true, &Targets::Sparse(vec![1, 0, 1])), 2.0);
        assert_eq!(Metric::from_name("acc").unwrap(), Metric::Accuracy);
    }
}
