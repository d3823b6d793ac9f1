//! Keras' losses by name: `sparse_categorical_crossentropy`, `categorical_crossentropy`,
//! `binary_crossentropy`, each with `from_logits`. All are means over the batch.
//!
//! As in Keras 3, when the model ends with a softmax (sigmoid) and the loss is a
//! categorical (binary) cross-entropy on probabilities, the loss is computed from the
//! pre-activation logits with the fused, numerically stable op; otherwise the probability
//! form clips to `[1e-7, 1 - 1e-7]` as Keras does.
//!
//! The categorical losses take `label_smoothing` (Keras' `CategoricalCrossentropy`
//! argument, PyTorch's `CrossEntropyLoss(label_smoothing=...)`, timm's `--smoothing`):
//! each target row becomes `(1 - eps) * target + eps / classes`.

use convnet_tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::{Activation, NnError, Result, Targets};

/// A loss function, serialized as `{"name": "sparse_categorical_crossentropy",
/// "from_logits": false}`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum Loss {
    /// Cross-entropy against class indices (`Targets::Sparse`).
    SparseCategoricalCrossentropy {
        /// The model outputs logits rather than probabilities.
        #[serde(default)]
        from_logits: bool,
        /// Label smoothing in `[0, 1]`, default 0 (absent from JSON saved before it existed).
        #[serde(default, skip_serializing_if = "is_zero")]
        label_smoothing: f32,
    },
    /// Cross-entropy against one-hot or soft rows (`Targets::Dense`, or sparse indices).
    CategoricalCrossentropy {
        /// The model outputs logits rather than probabilities.
        #[serde(default)]
        from_logits: bool,
        /// Label smoothing in `[0, 1]`, default 0.
        #[serde(default, skip_serializing_if = "is_zero")]
        label_smoothing: f32,
    },
    /// Elementwise binary cross-entropy against 0/1 targets shaped like the output.
    BinaryCrossentropy {
        /// The model outputs logits rather than probabilities.
        #[serde(default)]
        from_logits: bool,
    },
}

impl Loss {
    /// `sparse_categorical_crossentropy` on probabilities.
    pub fn sparse_categorical_crossentropy() -> Loss {
        Loss::SparseCategoricalCrossentropy { from_logits: false, label_smoothing: 0.0 }
    }
    /// `categorical_crossentropy` on probabilities.
    pub fn categorical_crossentropy() -> Loss {
        Loss::CategoricalCrossentropy { from_logits: false, label_smoothing: 0.0 }
    }
    /// `binary_crossentropy` on probabilities.
    pub fn binary_crossentropy() -> Loss {
        Loss::BinaryCrossentropy { from_logits: false }
    }

    /// Parses Keras' name (`"sparse_categorical_crossentropy"`), probabilities form.
    pub fn from_name(name: &str) -> Result<Loss> {
        match name {
            "sparse_categorical_crossentropy" => Ok(Self::sparse_categorical_crossentropy()),
            "categorical_crossentropy" => Ok(Self::categorical_crossentropy()),
            "binary_crossentropy" => Ok(Self::binary_crossentropy()),
            _ => Err(NnError::arg(
                "loss",
                format!(
                    "unknown loss {name:?}; use sparse_categorical_crossentropy, \
                     categorical_crossentropy or binary_crossentropy"
                ),
            )),
        }
    }

    /// Keras' name.
    pub fn name(&self) -> &'static str {
        match self {
            Loss::SparseCategoricalCrossentropy { .. } => "sparse_categorical_crossentropy",
            Loss::CategoricalCrossentropy { .. } => "categorical_crossentropy",
            Loss::BinaryCrossentropy { .. } => "binary_crossentropy",
        }
    }

    /// The same loss with `from_logits` set.
    pub fn with_from_logits(self, from_logits: bool) -> Loss {
        match self {
            Loss::SparseCategoricalCrossentropy { label_smoothing, .. } => {
                Loss::SparseCategoricalCrossentropy { from_logits, label_smoothing }
            }
            Loss::CategoricalCrossentropy { label_smoothing, .. } => {
                Loss::CategoricalCrossentropy { from_logits, label_smoothing }
            }
            Loss::BinaryCrossentropy { .. } => Loss::BinaryCrossentropy { from_logits },
        }
    }

    /// The same loss with `label_smoothing` set (checked, in `[0, 1]`, when computed). The
    /// binary loss has no smoothing here and is returned unchanged.
    pub fn with_label_smoothing(self, label_smoothing: f32) -> Loss {
        match self {
            Loss::SparseCategoricalCrossentropy { from_logits, .. } => {
                Loss::SparseCategoricalCrossentropy { from_logits, label_smoothing }
            }
            Loss::CategoricalCrossentropy { from_logits, .. } => {
                Loss::CategoricalCrossentropy { from_logits, label_smoothing }
            }
            Loss::BinaryCrossentropy { .. } => self,
        }
    }

    /// The label smoothing (0 for the binary loss).
    pub fn label_smoothing(&self) -> f32 {
        match *self {
            Loss::SparseCategoricalCrossentropy { label_smoothing, .. }
            | Loss::CategoricalCrossentropy { label_smoothing, .. } => label_smoothing,
            Loss::BinaryCrossentropy { .. } => 0.0,
        }
    }

    /// Whether the model output is taken as logits.
    pub fn from_logits(&self) -> bool {
        match *self {
            Loss::SparseCategoricalCrossentropy { from_logits, .. }
            | Loss::CategoricalCrossentropy { from_logits, .. }
            | Loss::BinaryCrossentropy { from_logits } => from_logits,
        }
    }

    /// Whether a model ending in `act` hands this loss its logits instead (softmax for the
    /// categorical losses, sigmoid for binary, and only on probabilities).
    pub fn absorbs(&self, act: Activation) -> bool {
        match self {
            _ if self.from_logits() => false,
            Loss::SparseCategoricalCrossentropy { .. } | Loss::CategoricalCrossentropy { .. } => {
                act == Activation::Softmax
            }
            Loss::BinaryCrossentropy { .. } => act == Activation::Sigmoid,
        }
    }

    /// The mean loss of `out` against `targets` as a scalar tensor (differentiable).
    /// `logits` says that `out` is pre-activation: either the loss is `from_logits` or the
    /// model's final activation was absorbed.
    pub fn compute(&self, out: &Tensor, logits: bool, targets: &Targets) -> Result<Tensor> {
        let logits = logits || self.from_logits();
        check_batch(out, targets)?;
        let eps = self.label_smoothing();
        if !(0.0..=1.0).contains(&eps) {
            return Err(NnError::arg("label_smoothing", format!("{eps} is outside [0, 1]")));
        }
        Ok(match (self, targets) {
            (Loss::SparseCategoricalCrossentropy { .. }, Targets::Dense(_)) => {
                return Err(NnError::targets(
                    "sparse_categorical_crossentropy needs class indices (Targets::Sparse); \
                     use categorical_crossentropy for one-hot targets",
                ));
            }
            (Loss::SparseCategoricalCrossentropy { .. } | Loss::CategoricalCrossentropy { .. }, Targets::Sparse(l)) => {
                let out = as_rows(out)?;
                match (logits, eps > 0.0) {
                    (true, _) => out.softmax_cross_entropy_sparse_smoothed(l, eps)?,
                    (false, false) => out.probs_cross_entropy_sparse(l)?,
                    (false, true) => out.probs_cross_entropy(&smoothed_one_hot(l, out.dims()[1], eps)?)?,
                }
            }
            (Loss::CategoricalCrossentropy { .. }, Targets::Dense(t)) => {
                let out = as_rows(out)?;
                let mut t = t.reshape(out.dims().to_vec()).map_err(|_| {
                    NnError::targets(format!("targets {:?} for predictions {:?}", t.dims(), out.dims()))
                })?;
                if eps > 0.0 {
                    let off = eps / out.dims()[1] as f32;
                    let v = t.data().iter().map(|&y| y * (1.0 - eps) + off).collect();
                    t = Tensor::from_vec(v, out.dims().to_vec())?;
                }
                if logits { out.softmax_cross_entropy(&t)? } else { out.probs_cross_entropy(&t)? }
            }
            (Loss::BinaryCrossentropy { .. }, _) => {
                let t = binary_targets(out, targets)?;
                if logits { out.sigmoid_binary_cross_entropy(&t)? } else { out.probs_binary_cross_entropy(&t)? }
            }
        })
    }
}

fn is_zero(v: &f32) -> bool {
    *v == 0.0
}

/// `[n, classes]` rows `(1 - eps) * onehot(label) + eps / classes`; labels out of range
/// are left to the loss op to report.
fn smoothed_one_hot(labels: &[u32], classes: usize, eps: f32) -> Result<Tensor> {
    if let Some(l) = labels.iter().find(|&&l| l as usize >= classes) {
        return Err(NnError::targets(format!("label {l} is outside 0..{classes}")));
    }
    let off = eps / classes as f32;
    let mut v = vec![off; labels.len() * classes];
    for (i, &l) in labels.iter().enumerate() {
        v[i * classes + l as usize] += 1.0 - eps;
    }
    Ok(Tensor::from_vec(v, [labels.len(), classes])?)
}

impl std::str::FromStr for Loss {
    type Err = NnError;
    fn from_str(s: &str) -> Result<Self> {
        Loss::from_name(s)
    }
}

fn check_batch(out: &Tensor, targets: &Targets) -> Result<()> {
    let n = out.dims().first().copied().unwrap_or(0);
    if targets.len() != n {
        return Err(NnError::targets(format!("{} targets for a batch of {n} predictions", targets.len())));
    }
    Ok(())
}

/// `[n, classes]` view of the predictions.
fn as_rows(out: &Tensor) -> Result<Tensor> {
    if out.rank() == 2 {
        return Ok(out.clone());
    }
    Err(NnError::targets(format!(
        "categorical losses need predictions of shape [batch, classes], got {:?}; add a Flatten",
        out.dims()
    )))
}

/// Binary targets shaped like `out`: a dense tensor with the same element count, or
/// indices 0/1 for a `[n, 1]` (or `[n]`) output.
fn binary_targets(out: &Tensor, targets: &Targets) -> Result<Tensor> {
    match targets {
        Targets::Dense(t) if t.numel() == out.numel() => Ok(t.reshape(out.dims().to_vec())?),
        Targets::Sparse(l) if l.len() == out.numel() => {
            Ok(Tensor::from_vec(l.iter().map(|&v| v as f32).collect(), out.dims().to_vec())?)
        }
        Targets::Dense(t) => {
            Err(NnError::targets(format!("binary targets {:?} for predictions {:?}", t.dims(), out.dims())))
        }
        Targets::Sparse(_) => Err(NnError::targets(format!(
            "binary_crossentropy with class indices needs a [batch, 1] output, got {:?}",
            out.dims()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fused_and_probability_forms_agree() {
        let z = Tensor::from_vec(vec![1.0, 2.0, 0.5, -1.0, 0.0, 3.0], [2, 3]).unwrap();
        let y = Targets::Sparse(vec![1, 2]);
        let loss = Loss::sparse_categorical_crossentropy();
        let fused = loss.compute(&z, true, &y).unwrap().item().unwrap();
        let probs = loss.compute(&z.softmax().unwrap(), false, &y).unwrap().item().unwrap();
        assert!((fused - probs).abs() < 1e-6, "{fused} vs {probs}");
        // by hand: -(log softmax(z0)[1] + log softmax(z1)[2]) / 2
        let lse0 = (1f32.exp() + 2f32.exp() + 0.5f32.exp()).ln();
        let lse1 = ((-1f32).exp() + 1.0 + 3f32.exp()).ln();
        let want = ((lse0 - 2.0) + (lse1 - 3.0)) / 2.0;
        assert!((fused - want).abs() < 1e-6);
        let onehot = Tensor::from_vec(vec![0.0, 1.0, 0.0, 0.0, 0.0, 1.0], [2, 3]).unwrap();
        let cce = Loss::categorical_crossentropy().compute(&z, true, &Targets::Dense(onehot)).unwrap();
        assert!((cce.item().unwrap() - want).abs() < 1e-6);
        let from_logits = loss.with_from_logits(true).compute(&z, false, &y).unwrap().item().unwrap();
        assert_eq!(from_logits, fused);
    }

    #[test]
    fn label_smoothing_mixes_in_the_uniform_distribution() {
        let z = Tensor::from_vec(vec![1.0, 2.0, 0.5, -1.0, 0.0, 3.0], [2, 3]).unwrap();
        let y = Targets::Sparse(vec![1, 2]);
        let loss = Loss::sparse_categorical_crossentropy().with_from_logits(true).with_label_smoothing(0.3);
        let got = loss.compute(&z, false, &y).unwrap().item().unwrap();
        // hand-computed: targets 0.1 off the label, 0.8 on it
        let lse0 = (1f32.exp() + 2f32.exp() + 0.5f32.exp()).ln();
        let lse1 = ((-1f32).exp() + 1.0 + 3f32.exp()).ln();
        let want = (0.1 * (lse0 - 1.0)
            + 0.8 * (lse0 - 2.0)
            + 0.1 * (lse0 - 0.5)
            + 0.1 * (lse1 + 1.0)
            + 0.1 * lse1
            + 0.8 * (lse1 - 3.0))
            / 2.0;
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        // the same from one-hot rows, from probabilities, and through the categorical loss
        let onehot = Targets::Dense(Tensor::from_vec(vec![0.0, 1.0, 0.0, 0.0, 0.0, 1.0], [2, 3]).unwrap());
        let cce = Loss::categorical_crossentropy().with_label_smoothing(0.3);
        assert!((cce.compute(&z, true, &onehot).unwrap().item().unwrap() - want).abs() < 1e-6);
        assert!((cce.compute(&z, true, &y).unwrap().item().unwrap() - want).abs() < 1e-6);
        let p = z.softmax().unwrap();
        assert!((loss.with_from_logits(false).compute(&p, false, &y).unwrap().item().unwrap() - want).abs() < 1e-5);
        // saved without the field, loaded as 0; bad values are typed errors
        let old: Loss = serde_json::from_str(r#"{"name":"categorical_crossentropy","from_logits":true}"#).unwrap();
        assert_eq!(old.label_smoothing(), 0.0);
        let json = serde_json::to_string(&cce).unwrap();
        assert_eq!(serde_json::from_str::<Loss>(&json).unwrap(), cce);
        assert!(matches!(
            Loss::categorical_crossentropy().with_label_smoothing(1.5).compute(&z, true, &y),
            Err(NnError::InvalidArgument { .. })
        ));
    }

    #[test]
    fn absorbs_only_the_matching_activation() {
        let l = Loss::sparse_categorical_crossentropy();
        assert!(l.absorbs(Activation::Softmax) && !l.absorbs(Activation::Sigmoid));
        assert!(!l.with_from_logits(true).absorbs(Activation::Softmax));
        assert!(Loss::binary_crossentropy().absorbs(Activation::Sigmoid));
    }

    #[test]
    fn bad_targets_are_typed_errors() {
        let z = Tensor::zeros([2, 3]);
        let l = Loss::sparse_categorical_crossentropy();
        assert!(matches!(l.compute(&z, true, &Targets::Sparse(vec![0])), Err(NnError::Targets { .. })));
        assert!(matches!(l.compute(&z, true, &Targets::Dense(Tensor::zeros([2, 3]))), Err(NnError::Targets { .. })));
        assert!(l.compute(&z, true, &Targets::Sparse(vec![0, 3])).is_err());
        let b = Loss::binary_crossentropy();
        let p = Tensor::full([2, 1], 0.25);
        let v = b.compute(&p, false, &Targets::Sparse(vec![1, 0])).unwrap().item().unwrap();
        let want = -(0.25f32.ln() + 0.75f32.ln()) / 2.0;
        assert!((v - want).abs() < 1e-6);
        assert_eq!(Loss::from_name("binary_crossentropy").unwrap(), b);
        let json = serde_json::to_string(&l).unwrap();
        assert_eq!(json, r#"{"name":"sparse_categorical_crossentropy","from_logits":false}"#);
    }
}
