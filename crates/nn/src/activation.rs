//! Keras' activation names, as layers take them (`activation="relu"`): the pointwise
//! functions of `convnet_tensor` plus softmax, which acts on a whole row.
//!
//! A softmax (or sigmoid) that ends a model is special: Keras 3 hands the loss the
//! pre-activation logits when the loss is a cross-entropy, and so does this crate (see
//! [`crate::Loss`]).

use convnet_tensor::{Activation as Pointwise, Tensor};
use serde::{Deserialize, Serialize};

use crate::{NnError, Result};

/// An activation function, serialized with Keras' name (`"relu"`, `"softmax"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// Identity (Keras' `None` / `"linear"`).
    #[default]
    Linear,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)`.
    Relu6,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
    /// `x * sigmoid(x)` (also called swish).
    #[serde(alias = "swish")]
    Silu,
    /// Exact (erf) GELU.
    Gelu,
    /// `x * relu6(x + 3) / 6`.
    HardSwish,
    /// `relu6(x + 3) / 6`.
    HardSigmoid,
    /// `x` for `x > 0`, else `0.01 x`. The slope is PyTorch's default (timm's
    /// models use it), not Keras' 0.2.
    LeakyRelu,
    /// `x` for `x > 0`, else `e^x - 1` (alpha 1).
    Elu,
    /// Softmax over the last axis.
    Softmax,
}

impl Activation {
    /// Keras' name of the activation.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Softmax => "softmax",
            other => other.pointwise().map_or("linear", Pointwise::name),
        }
    }

    /// Parses a Keras activation name (`"relu"`, `"softmax"`, `"swish"`, ...).
    pub fn from_name(name: &str) -> Result<Activation> {
        if name == "softmax" {
            return Ok(Activation::Softmax);
        }
        let p = Pointwise::from_name(name).ok_or_else(|| {
            NnError::arg(
                "activation",
                format!(
                    "unknown activation {name:?}; use one of linear, relu, relu6, sigmoid, tanh, \
                     silu, gelu, hard_swish, hard_sigmoid, leaky_relu, elu, softmax"
                ),
            )
        })?;
        Ok(Self::from_pointwise(p))
    }

    /// The elementwise function, or `None` for softmax.
    pub fn pointwise(self) -> Option<Pointwise> {
        Some(match self {
            Activation::Linear => Pointwise::Linear,
            Activation::Relu => Pointwise::Relu,
            Activation::Relu6 => Pointwise::Relu6,
            Activation::Sigmoid => Pointwise::Sigmoid,
            Activation::Tanh => Pointwise::Tanh,
            Activation::Silu => Pointwise::Silu,
            Activation::Gelu => Pointwise::Gelu,
            Activation::HardSwish => Pointwise::HardSwish,
            Activation::HardSigmoid => Pointwise::HardSigmoid,
            Activation::LeakyRelu => Pointwise::LeakyRelu,
            Activation::Elu => Pointwise::Elu,
            Activation::Softmax => return None,
        })
    }

    fn from_pointwise(p: Pointwise) -> Activation {
        match p {
            Pointwise::Linear => Activation::Linear,
            Pointwise::Relu => Activation::Relu,
            Pointwise::Relu6 => Activation::Relu6,
            Pointwise::Sigmoid => Activation::Sigmoid,
            Pointwise::Tanh => Activation::Tanh,
            Pointwise::Silu => Activation::Silu,
            Pointwise::Gelu => Activation::Gelu,
            Pointwise::HardSwish => Activation::HardSwish,
            Pointwise::HardSigmoid => Activation::HardSigmoid,
            Pointwise::LeakyRelu => Activation::LeakyRelu,
            Pointwise::Elu => Activation::Elu,
        }
    }

    /// Whether a cross-entropy loss can take the pre-activation values instead
    /// (softmax for categorical, sigmoid for binary cross-entropy).
    pub fn fuses_with_loss(self) -> bool {
        matches!(self, Activation::Softmax | Activation::Sigmoid)
    }

    /// `f(x)`; softmax is over the last axis.
    pub fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self.pointwise() {
            Some(p) => Ok(x.activation(p)),
            None => Ok(x.softmax()?),
        }
    }
}

impl std::str::FromStr for Activation {
    type Err = NnError;
    fn from_str(s: &str) -> Result<Self> {
        Activation::from_name(s)
    }
}

impl From<Pointwise> for Activation {
    fn from(p: Pointwise) -> Self {
        Activation::from_pointwise(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for a in [
            Activation::Linear,
            Activation::Relu,
            Activation::Relu6,
            Activation::Sigmoid,
            Activation::Tanh,
            Activation::Silu,
            Activation::Gelu,
            Activation::HardSwish,
            Activation::HardSigmoid,
            Activation::LeakyRelu,
            Activation::Elu,
            Activation::Softmax,
        ] {
            assert_eq!(Activation::from_name(a.name()).unwrap(), a);
            let json = serde_json::to_string(&a).unwrap();
            assert_eq!(json, format!("\"{}\"", a.name()));
        }
        assert_eq!(Activation::from_name("swish").unwrap(), Activation::Silu);
        assert!(matches!(Activation::from_name("nope"), Err(NnError::InvalidArgument { .. })));
    }

    #[test]
    fn softmax_rows_sum_to_one() {
        let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, -1.0, 0.0, 1.0], [2, 3]).unwrap();
        let y = Activation::Softmax.apply(&x).unwrap();
        for row in y.data().chunks(3) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        assert!((y.data()[2] - 0.665_240_9).abs() < 1e-6);
    }
}
