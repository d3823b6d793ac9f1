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
use crate::context::{BnUpdate, RunningStats};
use crate::layer::{Layer, LayerSpec};
use crate::{Cx, Initializer, Layout, NnError, ParamId, Result, Vb};

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
    fn weight_shapes(&self, input: &[usize]) -> Result<Vec<(&'static str, Vec<usize>)>> {
        self.output_shape(input)?;
        let c = *input.last().expect("checked");
        let names = [("gamma", self.scale), ("beta", self.center), ("moving_mean", true), ("moving_variance", true)];
        Ok(names.into_iter().filter(|(_, on)| *on).map(|(n, _)| (n, vec![c])).collect())
    }
    fn build(&self, name: &str, input: &[usize], rng: &mut Rng, vb: &Vb) -> Result<Box<dyn Layer>> {
        let output_shape = self.output_shape(input)?;
        let c = *input.last().expect("checked");
        let mut make = |short: &str, init: Initializer, trainable: bool| -> Result<ParamId> {
            let t = Tensor::from_vec(init.sample(&[c], rng), [c])?;
            Ok(vb.tensor(short, t, Layout::Plain, trainable))
        };
        let gamma = if self.scale { Some(make("gamma", self.gamma_initializer, true)?) } else { None };
        let beta = if self.center { Some(make("beta", self.beta_initializer, true)?) } else { None };
        let moving_mean = make("moving_mean", self.moving_mean_initializer, false)?;
        let moving_variance = make("moving_variance", self.moving_variance_initializer, false)?;
        let params = gamma.into_iter().chain(beta).chain([moving_mean, moving_variance]).collect();
        Ok(Box::new(BatchNormalization {
            meta: Meta { name: name.to_string(), input_shape: input.to_vec(), output_shape },
            config: BatchNormalizationConfig { name: Some(name.to_string()), ..self.clone() },
            channels: c,
            gamma,
            beta,
            moving_mean,
            moving_variance,
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
    gamma: Option<ParamId>,
    beta: Option<ParamId>,
    moving_mean: ParamId,
    moving_variance: ParamId,
    params: Vec<ParamId>,
}

impl Layer for BatchNormalization {
    layer_common!("BatchNormalization", BatchNormalization);

    fn forward(&self, x: &Tensor, ctx: &Cx) -> Result<Tensor> {
        let c = self.channels;
        let gamma = self.gamma.map_or_else(|| Tensor::full([c], 1.0), |p| ctx.param(p));
        let beta = self.beta.map_or_else(|| Tensor::zeros([c]), |p| ctx.param(p));
        let eps = self.config.epsilon;
        if !ctx.bn_training(self.gamma.or(self.beta)) {
            let (mean, var) = (ctx.p(self.moving_mean).data(), ctx.p(self.moving_variance).data());
            return Ok(x.batch_norm_infer(&gamma, &beta, mean, var, eps)?);
        }
        let (y, stats) = x.batch_norm_train(&gamma, &beta, eps)?;
        ctx.push_bn_update(BnUpdate {
            mean: self.moving_mean,
            var: self.moving_variance,
            tracked: None,
            rule: RunningStats::Keras { momentum: self.config.momentum },
            stats,
        });
        Ok(y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Mode;
    use crate::layer::build_alone;

    #[test]
    fn trains_on_batch_statistics_and_updates_moving_ones() {
        let (mut store, layer) = build_alone(&BatchNormalizationConfig::new(), "batch_normalization", &[2]);
        let names: Vec<&str> = layer.params().iter().map(|&p| store.entry(p).key()).collect();
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
        let ctx = Cx::new(&store, Mode::Train, 0);
        let y = layer.forward(&x, &ctx).unwrap();
        // channel 0: mean 2, var 1 -> (+-1) / sqrt(1 + 1e-3)
        let s = 1.0 / (1.0f32 + 1e-3).sqrt();
        assert!((y.data()[0] + s).abs() < 1e-6 && (y.data()[2] - s).abs() < 1e-6);
        let updates = ctx.take_bn_updates();
        drop(ctx);
        crate::context::apply_bn_updates(&mut store, updates);
        let moving = |k: &str| store.by_key(k).unwrap().value().to_vec();
        let mean = moving("batch_normalization/moving_mean");
        assert!((mean[0] - 0.02).abs() < 1e-7 && (mean[1] - 0.2).abs() < 1e-6);
        // biased variance of channel 1 is 100: 0.99 * 1 + 0.01 * 100
        assert!((moving("batch_normalization/moving_variance")[1] - 1.99).abs() < 1e-5);
        let (store, layer) = build_alone(&BatchNormalizationConfig::new(), "batch_normalization", &[2]);
        // inference uses the moving statistics (0 and 1 at first)
        let y = layer.forward(&x, &Cx::new(&store, Mode::Eval, 0)).unwrap();
        let s = 1.0 / (1.0f32 + 1e-3).sqrt();
        assert!((y.data()[1] - 10.0 * s).abs() < 1e-5);
    }

    #[test]
    fn only_the_channel_axis_is_supported() {
        assert!(BatchNormalizationConfig::new().with_axis(3).output_shape(&[4, 4, 2]).is_ok());
        assert!(BatchNormalizationConfig::new().with_axis(1).output_shape(&[4, 4, 2]).is_err());
        let no_affine = BatchNormalizationConfig::new().with_center(false).with_scale(false);
        assert_eq!(build_alone(&no_affine, "bn", &[3]).1.params().len(), 2);
    }
}
