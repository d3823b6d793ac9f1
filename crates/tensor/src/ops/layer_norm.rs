//! Layer normalisation over the last axis (Ba et al. 2016) and group normalisation
//! (Wu & He 2018) of channels-last data.
//!
//! Layer norm is PyTorch's `F.layer_norm(x, (c,))`: each row of `c` values is normalised
//! by its own mean and biased variance, then scaled and shifted per channel. On NHWC
//! activations the last axis is the channel axis, so this one op is both ConvNeXt's
//! `LayerNorm2d` (which permutes NCHW to channels-last around the same call) and the
//! transformers' `LayerNorm` over tokens. The passes are `convnet_kernels::layer_norm`'s.
//!
//! Group norm (`nn.GroupNorm(groups, c)` on NCHW) normalises each sample's channel
//! groups over all positions; it is composed from layer norm on a permuted view and needs
//! no backward of its own.

use super::constant;
use crate::{Backward, Result, Tensor, TensorError};
use convnet_kernels::layer_norm as kernel;

struct LayerNormBackward {
    /// Each row's mean and `1 / sqrt(var + eps)`.
    stats: Vec<(f32, f32)>,
    has_weight: bool,
    has_bias: bool,
}

impl Backward for LayerNormBackward {
    fn name(&self) -> &'static str {
        "layer_norm"
    }
    fn backward(&self, inputs: &[Tensor], _output: &Tensor, grad: &Tensor, needs: &[bool]) -> Vec<Option<Tensor>> {
        let x = &inputs[0];
        let c = *x.dims().last().expect("layer_norm input has a last axis");
        let weight = self.has_weight.then(|| inputs[1].data());
        let (dx, dw, db) = kernel::backward(x.data(), grad.data(), c, &self.stats, weight);
        let to_t = |v: Vec<f64>| constant(v.into_iter().map(|x| x as f32).collect(), &[c]);
        let mut out = vec![needs[0].then(|| constant(dx, x.dims()))];
        if self.has_weight {
            out.push(needs[1].then(|| to_t(dw)));
        }
        if self.has_bias {
            out.push(needs[out.len()].then(|| to_t(db)));
        }
        out
    }
}

impl Tensor {
    /// Layer norm over the last axis: `x: [.., c] -> [.., c]`, each row
    /// `(x - mean) / sqrt(var + eps) * weight + bias` with its own mean and biased
    /// variance; `weight` and `bias` are `[c]` (absent: 1 and 0).
    pub fn layer_norm(&self, weight: Option<&Tensor>, bias: Option<&Tensor>, eps: f32) -> Result<Tensor> {
        let c = match self.dims().last() {
            Some(&c) if c > 0 => c,
            _ => {
                return Err(TensorError::shape(
                    "layer_norm",
                    format!("needs a non-empty last axis, got {}", self.shape()),
                ));
            }
        };
        for (what, p) in [("weight", weight), ("bias", bias)] {
            if let Some(p) = p
                && p.dims() != [c]
            {
                return Err(TensorError::shape("layer_norm", format!("{what} {} for {c} channels", p.shape())));
            }
        }
        let (y, stats) = kernel::forward(self.data(), c, weight.map(Tensor::data), bias.map(Tensor::data), eps);
        let op = LayerNormBackward { stats, has_weight: weight.is_some(), has_bias: bias.is_some() };
        let mut inputs = vec![self];
        inputs.extend(weight);
        inputs.extend(bias);
        Ok(Tensor::from_op(y, self.shape().clone(), &inputs, op))
    }

    /// Group norm of channels-last `x: [n, .., c]` (PyTorch's `nn.GroupNorm(groups, c)`):
    /// the `c` channels split into `groups` runs of `c / groups`, each sample's group
    /// normalised over all its positions and channels, then `weight` and `bias` (`[c]`)
    /// applied per channel.
    pub fn group_norm(&self, groups: usize, weight: &Tensor, bias: &Tensor, eps: f32) -> Result<Tensor> {
        let dims = self.dims().to_vec();
        let (n, c) = match (dims.first(), dims.last()) {
            (Some(&n), Some(&c)) if dims.len() >= 2 && c > 0 && groups > 0 && c % groups == 0 => (n, c),
            _ => {
                return Err(TensorError::shape(
                    "group_norm",
                    format!("{} into {groups} groups: needs [n, .., c] with c a multiple of the groups", self.shape()),
                ));
            }
        };
        if weight.dims() != [c] || bias.dims() != [c] {
            return Err(TensorError::shape(
                "group_norm",
                format!("weight {} and bias {} for {c} channels", weight.shape(), bias.shape()),
            ));
        }
        let positions = self.numel() / (n * c).max(1);
        let cg = c / groups;
        // [n, positions, groups, cg] -> [n, groups, positions * cg]: one row per (sample, group)
        let rows = self.reshape(vec![n, positions, groups, cg])?.permute(&[0, 2, 1, 3])?;
        let normed = rows.reshape(vec![n * groups, positions * cg])?.layer_norm(None, None, eps)?;
        let back = normed.reshape(vec![n, groups, positions, cg])?.permute(&[0, 2, 1, 3])?.reshape(dims)?;
        back.mul(weight)?.add(bias)
    }
}
