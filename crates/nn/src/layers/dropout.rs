//! `Dropout` (Keras 3 `keras.layers.Dropout(rate, seed=None)`): in training, zeroes each
//! value with probability `rate` and scales the rest by `1 / (1 - rate)`; the identity in
//! inference. The mask comes from the training run's seeded stream, or from the layer's
//! own `seed` combined with the step number, so runs are reproducible.

use convnet_tensor::Tensor;
use convnet_tensor::rng::Rng;
use serde::{Deserialize, Serialize};

use super::{Meta, layer_common, who};
use crate::layer::{ForwardCtx, Layer, LayerSpec};
use crate::{NnError, Param, Result};

/// Arguments of a `Dropout` layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DropoutConfig {
    /// Layer name; generated (`dropout`, `dropout_1`, ...) when `None`.
    #[serde(default)]
    pub name: Option<String>,
    /// Drop probability in `[0, 1)`.
    pub rate: f32,
    /// A seed of the layer's own; `None` draws from the training run's stream.
    #[serde(default)]
    pub seed: Option<u64>,
}

impl DropoutConfig {
    /// `Dropout(rate)`.
    pub fn new(rate: f32) -> Self {
        DropoutConfig { name: None, rate, seed: None }
    }
    /// Sets the layer name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// Sets the layer's own seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
}

impl LayerSpec for DropoutConfig {
    fn class_name(&self) -> &'static str {
        "Dropout"
    }
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        if !(0.0..1.0).contains(&self.rate) {
            return Err(NnError::layer(
                who(&self.name, "Dropout"),
                format!("rate must be in [0, 1), got {}", self.rate),
            ));
        }
        Ok(input.to_vec())
    }
    fn build(&self, name: &str, input: &[usize], _rng: &mut Rng) -> Result<Box<dyn Layer>> {
        let output_shape = self.output_shape(input)?;
        Ok(Box::new(Dropout {
            meta: Meta { name: name.to_string(), input_shape: input.to_vec(), output_shape },
            config: DropoutConfig { name: Some(name.to_string()), ..self.clone() },
            params: Vec::new(),
        }))
    }
}

/// A built `Dropout`.
#[derive(Debug)]
pub struct Dropout {
    meta: Meta,
    config: DropoutConfig,
    params: Vec<Param>,
}

impl Layer for Dropout {
    layer_common!("Dropout", Dropout);

    fn forward(&self, x: &Tensor, ctx: &mut ForwardCtx<'_>) -> Result<Tensor> {
        if !ctx.training() || self.config.rate == 0.0 {
            return Ok(x.clone());
        }
        Ok(match self.config.seed {
            Some(seed) => x.dropout(self.config.rate, &mut ctx.seeded_rng(seed))?,
            None => x.dropout(self.config.rate, ctx.rng())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::Mode;

    #[test]
    fn drops_only_in_training() {
        let layer = DropoutConfig::new(0.5).build("dropout", &[1000], &mut Rng::new(0)).unwrap();
        let x = Tensor::full([1, 1000], 1.0);
        let mut rng = Rng::new(3);
        let y = layer.forward(&x, &mut ForwardCtx::new(Mode::Infer, false, &mut rng, 0)).unwrap();
        assert_eq!(y.data(), x.data());
        let y = layer.forward(&x, &mut ForwardCtx::new(Mode::Train, false, &mut rng, 0)).unwrap();
        let zeros = y.data().iter().filter(|v| **v == 0.0).count();
        assert!((400..600).contains(&zeros), "{zeros} zeros");
        assert!(y.data().iter().all(|v| *v == 0.0 || *v == 2.0));
        assert!(DropoutConfig::new(1.0).output_shape(&[3]).is_err());
    }

    #[test]
    fn a_seeded_layer_repeats_per_step() {
        let layer = DropoutConfig::new(0.5).with_seed(7).build("d", &[64], &mut Rng::new(0)).unwrap();
        let x = Tensor::full([1, 64], 1.0);
        let run = |step| {
            let mut rng = Rng::new(step);
            layer.forward(&x, &mut ForwardCtx::new(Mode::Train, false, &mut rng, step)).unwrap().to_vec()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }
}
