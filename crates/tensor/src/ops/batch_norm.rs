//! Batch normalisation over the last (channel) axis of any input
//! (`[n, c]` or NHWC `[n, h, w, c]`), Ioffe & Szegedy 2015.
//!
//! In training the batch's own mean and biased variance normalise it and are
//! returned so the layer can update its running statistics (the layer owns
//! the momentum convention: Keras' 0.99 or PyTorch's 0.1). In inference the
//! running statistics are constants. The passes over the data are
//! `convnet_kernels::norm`'s (parallel, vectorised, f64 sums).

use super::constant;
use crate::{Backward, Result, Tensor, TensorError};
use convnet_kernels::norm;

/// Per-channel statistics of a training batch.
#[derive(Clone, Debug)]
pub struct BatchStats {
    pub mean: Vec<f32>,
    /// Biased (divide by N) variance.
    pub var: Vec<f32>,
    /// Values per channel (N).
    pub count: usize,
}

struct BatchNormBackward {
    /// The statistics the input was normalised with (the backward recomputes
    /// `xhat = (x - mean) * inv_std` from the input rather than keeping it).
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    training: bool,
    /// A relu is fused into the output.
    relu: bool,
}

impl Backward for BatchNormBackward {
    fn name(&self) -> &'static str {
        "batch_norm"
    }
    fn backward(&self, inputs: &[Tensor], _output: &Tensor, grad: &Tensor, needs: &[bool]) -> Vec<Option<Tensor>> {
        let (x, gamma, beta) = (inputs[0].data(), inputs[1].data(), inputs[2].data());
        let c = gamma.len();
        let g = grad.data();
        let a = norm::Affine { mean: &self.mean, inv_std: &self.inv_std, gamma, beta, relu: self.relu };
        let (dgamma, dbeta) = norm::backward_sums(g, x, &a);
        let dx = needs[0].then(|| {
            let dx = norm::backward_input(g, x, &a, &dgamma, &dbeta, self.training);
            constant(dx, inputs[0].dims())
        });
        let to_t = |v: Vec<f64>| constant(v.into_iter().map(|x| x as f32).collect(), &[c]);
        vec![dx, needs[1].then(|| to_t(dgamma)), needs[2].then(|| to_t(dbeta))]
    }
}

fn check(x: &Tensor, gamma: &Tensor, beta: &Tensor) -> Result<usize> {
    let c = *x.dims().last().unwrap_or(&0);
    if c == 0 || gamma.dims() != [c] || beta.dims() != [c] {
        return Err(TensorError::shape(
            "batch_norm",
            format!("input {} needs gamma and beta of [{c}], got {} and {}", x.shape(), gamma.shape(), beta.shape()),
        ));
    }
    Ok(c)
}

fn normalise(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    mean: &[f32],
    inv_std: &[f32],
    training: bool,
    relu: bool,
) -> Tensor {
    let a = norm::Affine { mean, inv_std, gamma: gamma.data(), beta: beta.data(), relu };
    let y = norm::normalise(x.data(), &a);
    let op = BatchNormBackward { mean: mean.to_vec(), inv_std: inv_std.to_vec(), training, relu };
    Tensor::from_op(y, x.shape().clone(), &[x, gamma, beta], op)
}

impl Tensor {
    /// Training-mode batch norm: normalises with this batch's statistics and returns them.
    pub fn batch_norm_train(&self, gamma: &Tensor, beta: &Tensor, eps: f32) -> Result<(Tensor, BatchStats)> {
        self.batch_norm_train_act(gamma, beta, eps, false)
    }

    /// [`Tensor::batch_norm_train`] followed by a relu when `relu`, in one op:
    /// the relu costs no pass of its own over the activations, forward or backward.
    pub fn batch_norm_train_act(
        &self,
        gamma: &Tensor,
        beta: &Tensor,
        eps: f32,
        relu: bool,
    ) -> Result<(Tensor, BatchStats)> {
        let c = check(self, gamma, beta)?;
        let rows = self.numel() / c;
        if rows == 0 {
            return Err(TensorError::invalid("batch_norm", "cannot normalise an empty batch"));
        }
        let (mean, var) = norm::batch_stats(self.data(), c);
        let inv_std: Vec<f32> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
        let y = normalise(self, gamma, beta, &mean, &inv_std, true, relu);
        Ok((y, BatchStats { mean, var, count: rows }))
    }

    /// Inference-mode batch norm with fixed running statistics.
    pub fn batch_norm_infer(
        &self,
        gamma: &Tensor,
        beta: &Tensor,
        mean: &[f32],
        var: &[f32],
        eps: f32,
    ) -> Result<Tensor> {
        let c = check(self, gamma, beta)?;
        if mean.len() != c || var.len() != c {
            return Err(TensorError::shape(
                "batch_norm",
                format!("running statistics of {} and {} for {c} channels", mean.len(), var.len()),
            ));
        }
        let inv_std: Vec<f32> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
        Ok(normalise(self, gamma, beta, mean, &inv_std, false, false))
    }
}
