//! `BatchNormalization` (Keras 3 `keras.layers.BatchNormalization`), Ioffe & Szegedy 2015,
//! over the last (channel) axis. Defaults as Keras: `axis=-1`, `momentum=0.99`,
//! `epsilon=1e-3`, `center=True`, `scale=True`.
//!
//! In training the batch's mean and biased variance (as `tf.nn.moments` computes them)
//! normalise it, and the moving statistics are updated as Keras does:
//! `moving = moving * momentum + batch * (1 - momentum)`. In inference the moving
//! statistics normalise. Weights, in Keras order: `gamma`, `beta` (trainable),
//! `moving_mean`, `moving_variance` (not trainable).

use convnet_tensor::Tensor;
use convnet_tensor::rng::Rng;
use serde::{Deserialize, Serialize};

use super::{Meta, layer_common, who};
use crate::layer::{ForwardCtx, Layer, LayerSpec};
use crate::{Initializer, NnError, Param, Result};

/// Arguments of a `BatchNormalization` layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchNormalizationConfig {
    /// Layer name; generated (`batch_normalization`, ...) when `None`.
    #[serde(default)]
    pub name: Option<String>,
    /// The normalised axis, counting the batch axis (Keras' convention); only the last
    /// axis (`-1`, the default) is supported.
    pub axis: i64,
    /// Moving-average momentum, default 0.99.
    pub momentum: f32,
    /// Added to the variance, default 1e-3.
    pub epsilon: f32,
    /// Learn an offset `beta` (default true).
    pub center: bool,
    /// Learn a scale `gamma` (default true).
    pub scale: bool,
    /// Default `zeros`.
    pub beta_initializer: Initializer,
    /// Default `ones`.
    pub gamma_initializer: Initializer,
    /// Default `zeros`.
    pub moving_mean_initializer: Initializer,
    /// Default `ones`.
    pub moving_variance_initializer: Initializer,
}

impl Default for BatchNormalizationConfig {
    fn default() -> Self {
        BatchNormalizationConfig {
            name: None,
            axis: -1,
            momentum: 0.99,
            epsilon: 1e-3,
            center: true,
            scale: true,
            beta_initializer: Initializer::Zeros,
            gamma_initializer: Initializer::Ones,
            moving_mean_initializer: Initializer::Zeros,
            moving_variance_initializer: Initializer::Ones,
        }
    }
}

impl BatchNormalizationConfig {
    /// `BatchNormalization()` with Keras' defaults.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the layer name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// Sets the normalised axis (`-1` or the last axis counting the batch axis).
    pub fn with_axis(mut self, axis: i64) -> Self {
        self.axis = axis;
        self
    }
    /// Sets the momentum.
    pub fn with_momentum(mut self, momentum: f32) -> Self {
        self.momentum = momentum;
        self
    }
    /// Sets epsilon.
    pub fn with_epsilon(mut self, epsilon: f32) -> Self {
        self.epsilon = epsilon;
        self
    }
    /// Sets whether `beta` is learnt.
    pub fn with_center(mut self, center: bool) -> Self {
        self.center = center;
        self
    }
    /// Sets whether `gamma` is learnt.
    pub fn with_scale(mut self, scale: bool) -> Self {
        self.scale = scale;
        self
    }
}

impl LayerSpec for BatchNormalizationConfig {
    fn class_name(&self) -> &'static str {
        "BatchNormalization"
    }
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let who = who(&self.name, "BatchNormalization");
        let rank_with_batch = input.len() as i64 + 1;
        if self.axis != -1 && self.axis != rank_with_batch - 1 {
            return Err(NnError::layer(
                who,
                format!(
                    "axis={} is not supported: only the last (channel) axis, -1 or {}, is",
                    self.axis,
                    rank_with_batch - 1
                ),
            ));
        }
        if input.last().is_none_or(|&c| c == 0) {
            return Err(NnError::layer(who, format!("needs a non-empty channel axis, got {input:?}")));
        }
        if !(0.0..=1.0).contains(&self.momentum) || self.epsilon.is_nan() || self.epsilon < 0.0 {
            return Err(NnError::layer(
                who,
                format!("momentum {} must be in [0, 1] and epsilon {} non-negative", self.momentum, self.epsilon),
            ));
        }
        Ok(input.to_vec())
    }
    fn build(&self, name: &str, input: &[usize], rng: &mut Rng) -> Result<Box<dyn Layer>> {
        let output_shape = self.output_shape(input)?;
        let c = *input.last().expect("checked");
        let mut make = |short: &str, init: Initializer, trainable: bool| -> Result<Param> {
            let t = Tensor::from_vec(init.sample(&[c], rng), [c])?;
            Ok(Param::new(format!("{name}/{short}"), t, trainable))
        };
        let mut params = Vec::new();
        if self.scale {
            params.push(make("gamma", self.gamma_initializer, true)?);
        }
        if self.center {
            params.push(make("beta", self.beta_initializer, true)?);
        }
        params.push(make("moving_mean", self.moving_mean_initializer, false)?);
        params.push(make("moving_variance", self.moving_variance_initializer, false)?);
        Ok(Box::new(BatchNormalization {
            meta: Meta { name: name.to_string(), input_shape: input.to_vec(), output_shape },
            config: BatchNormalizationConfig { name: Some(name.to_string()), ..self.clone() },
            channels: c,
            params,
        }))
    }
}

/// A built `BatchNormalization`.
#[derive(Debug)]
pub struct BatchNormalization {
    meta: Meta,
    config: BatchNormalizationConfig,
    channels: usize,
    params: Vec<Param>,
}

impl BatchNormalization {
    fn find(&self, short: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.short_name() == short)
    }
}

impl Layer for BatchNormalization {
    layer_common!("BatchNormalization", BatchNormalization);

    fn forward(&self, x: &Tensor, ctx: &mut ForwardCtx<'_>) -> Result<Tensor> {
        let c = self.channels;
        let gamma = self.find("gamma").map_or_else(|| Tensor::full([c], 1.0), |p| ctx.param(p));
        let beta = self.find("beta").map_or_else(|| Tensor::zeros([c]), |p| ctx.param(p));
        let mean = self.find("moving_mean").expect("built with moving_mean");
        let var = self.find("moving_variance").expect("built with moving_variance");
        let eps = self.config.epsilon;
        if !ctx.training() {
            return Ok(x.batch_norm_infer(&gamma, &beta, mean.value().data(), var.value().data(), eps)?);
        }
        let (y, stats) = x.batch_norm_train(&gamma, &beta, eps)?;
        let m = self.config.momentum;
        let blend = |moving: &[f32], batch: &[f32]| -> Vec<f32> {
            moving.iter().zip(batch).map(|(a, b)| a * m + b * (1.0 - m)).collect()
        };
        let new_mean = blend(mean.value().data(), &stats.mean);
        let new_var = blend(var.value().data(), &stats.var);
        ctx.update_state(mean.path(), new_mean);
        ctx.update_state(var.path(), new_var);
        Ok(y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::Mode;

    #[test]
    fn trains_on_batch_statistics_and_updates_moving_ones() {
        let layer = BatchNormalizationConfig::new().build("batch_normalization", &[2], &mut Rng::new(0)).unwrap();
        let names: Vec<&str> = layer.params().iter().map(|p| p.path()).collect();
        assert_eq!(
            names,
            [
                "batch_normalization/gamma",
                "batch_normalization/beta",
                "batch_normalization/moving_mean",
                "batch_normalization/moving_variance"
            ]
        );
        let x = Tensor::from_vec(vec![1.0, 10.0, 3.0, 30.0], [2, 2]).unwrap();
        let mut rng = Rng::new(0);
        let mut ctx = ForwardCtx::new(Mode::Train, false, &mut rng, 0);
        let y = layer.forward(&x, &mut ctx).unwrap();
        // channel 0: mean 2, var 1 -> (+-1) / sqrt(1 + 1e-3)
        let s = 1.0 / (1.0f32 + 1e-3).sqrt();
        assert!((y.data()[0] + s).abs() < 1e-6 && (y.data()[2] - s).abs() < 1e-6);
        let updates = ctx.take_updates();
        assert_eq!(updates[0].0, "batch_normalization/moving_mean");
        assert!((updates[0].1[0] - 0.02).abs() < 1e-7 && (updates[0].1[1] - 0.2).abs() < 1e-6);
        // variance of channel 1 is 100: 0.99 * 1 + 0.01 * 100
        assert!((updates[1].1[1] - 1.99).abs() < 1e-5);
        // inference uses the moving statistics (0 and 1 at first)
        let y = layer.forward(&x, &mut ForwardCtx::new(Mode::Infer, false, &mut rng, 0)).unwrap();
        let s = 1.0 / (1.0f32 + 1e-3).sqrt();
        assert!((y.data()[1] - 10.0 * s).abs() < 1e-5);
    }

    #[test]
    fn only_the_channel_axis_is_supported() {
        assert!(BatchNormalizationConfig::new().with_axis(3).output_shape(&[4, 4, 2]).is_ok());
        assert!(BatchNormalizationConfig::new().with_axis(1).output_shape(&[4, 4, 2]).is_err());
        let no_affine = BatchNormalizationConfig::new().with_center(false).with_scale(false);
        assert_eq!(no_affine.build("bn", &[3], &mut Rng::new(0)).unwrap().params().len(), 2);
    }
}
