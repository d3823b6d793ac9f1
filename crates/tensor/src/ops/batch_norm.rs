//! Batch normalisation over the last (channel) axis of any input
//! (`[n, c]` or NHWC `[n, h, w, c]`), Ioffe & Szegedy 2015.
//!
//! In training the batch's own mean and biased variance normalise it and are
//! returned so the layer can update its running statistics (the layer owns
//! the momentum convention: Keras' 0.99 or PyTorch's 0.1). In inference the
//! running statistics are constants.

use super::constant;
use crate::{Backward, Result, Tensor, TensorError};

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
    /// `(x - mean) * inv_std`
    xhat: Vec<f32>,
    inv_std: Vec<f32>,
    training: bool,
}

impl Backward for BatchNormBackward {
    fn name(&self) -> &'static str {
        "batch_norm"
    }
    fn backward(&self, inputs: &[Tensor], _output: &Tensor, grad: &Tensor, needs: &[bool]) -> Vec<Option<Tensor>> {
        let gamma = inputs[1].data();
        let c = gamma.len();
        let g = grad.data();
        let rows = g.len() / c;
        let mut dgamma = vec![0.0f64; c];
        let mut dbeta = vec![0.0f64; c];
        for (gr, xr) in g.chunks_exact(c).zip(self.xhat.chunks_exact(c)) {
            for j in 0..c {
                dgamma[j] += (gr[j] * xr[j]) as f64;
                dbeta[j] += gr[j] as f64;
            }
        }
        let dx = needs[0].then(|| {
            let mut dx = vec![0.0; g.len()];
            let n = rows as f32;
            for ((d, gr), xr) in dx.chunks_exact_mut(c).zip(g.chunks_exact(c)).zip(self.xhat.chunks_exact(c)) {
                for j in 0..c {
                    let k = gamma[j] * self.inv_std[j];
                    d[j] = if self.training {
                        k * (gr[j] - (dbeta[j] as f32 + xr[j] * dgamma[j] as f32) / n)
                    } else {
                        k * gr[j]
                    };
                }
            }
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

fn normalise(x: &Tensor, gamma: &Tensor, beta: &Tensor, mean: &[f32], inv_std: &[f32], training: bool) -> Tensor {
    let c = mean.len();
    let mut xhat = vec![0.0; x.numel()];
    let mut y = vec![0.0; x.numel()];
    for ((xr, hr), yr) in x.data().chunks_exact(c).zip(xhat.chunks_exact_mut(c)).zip(y.chunks_exact_mut(c)) {
        for j in 0..c {
            hr[j] = (xr[j] - mean[j]) * inv_std[j];
            yr[j] = hr[j] * gamma.data()[j] + beta.data()[j];
        }
    }
    let op = BatchNormBackward { xhat, inv_std: inv_std.to_vec(), training };
    Tensor::from_op(y, x.shape().clone(), &[x, gamma, beta], op)
}

impl Tensor {
    /// Training-mode batch norm: normalises with this batch's statistics and returns them.
    pub fn batch_norm_train(&self, gamma: &Tensor, beta: &Tensor, eps: f32) -> Result<(Tensor, BatchStats)> {
        let c = check(self, gamma, beta)?;
        let rows = self.numel() / c;
        if rows == 0 {
            return Err(TensorError::invalid("batch_norm", "cannot normalise an empty batch"));
        }
        let mut mean = vec![0.0f64; c];
        for r in self.data().chunks_exact(c) {
            for j in 0..c {
                mean[j] += r[j] as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= rows as f64);
        let mut var = vec![0.0f64; c];
        for r in self.data().chunks_exact(c) {
            for j in 0..c {
                let d = r[j] as f64 - mean[j];
                var[j] += d * d;
            }
        }
        var.iter_mut().for_each(|v| *v /= rows as f64);
        let mean: Vec<f32> = mean.into_iter().map(|m| m as f32).collect();
        let var: Vec<f32> = var.into_iter().map(|v| v as f32).collect();
        let inv_std: Vec<f32> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
        let y = normalise(self, gamma, beta, &mean, &inv_std, true);
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
        Ok(normalise(self, gamma, beta, mean, &inv_std, false))
    }
}
