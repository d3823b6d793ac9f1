//! `Dropout` (Keras 3 `keras.layers.Dropout(rate, seed=None)`): in training, zeroes each
//! value with probability `rate` and scales the rest by `1 / (1 - rate)`; the identity in
//! inference. The mask comes from the training run's seeded stream, or from the layer's
//! own `seed` combined with the step number, so runs are reproducible.

use convnet_tensor::Tensor;
use convnet_tensor::rng::Rng;
use serde::{Deserialize, Serialize};

use super::{Meta, layer_common, who};
use crate::layer::{Layer, LayerSpec};
use crate::{Cx, NnError, ParamId, Result, Vb};

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
    fn build(&self, name: &str, input: &[usize], _rng: &mut Rng, _vb: &Vb) -> Result<Box<dyn Layer>> {
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
    params: Vec<ParamId>,
}

impl Layer for Dropout {
    layer_common!("Dropout", Dropout);

    fn forward(&self, x: &Tensor, ctx: &Cx) -> Result<Tensor> {
        if !ctx.training() || self.config.rate == 0.0 {
            return Ok(x.clone());
        }
        Ok(match self.config.seed {
            Some(seed) => x.dropout(self.config.rate, &mut ctx.seeded_rng(seed))?,
            None => ctx.with_rng_mut(|rng| x.dropout(self.config.rate, rng))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Mode;
    use crate::layer::build_alone;

    #[test]
    fn drops_only_in_training() {
        let (store, layer) = build_alone(&DropoutConfig::new(0.5), "dropout", &[1000]);
        let x = Tensor::full([1, 1000], 1.0);
        let y = layer.forward(&x, &Cx::new(&store, Mode::Eval, 0)).unwrap();
        assert_eq!(y.data(), x.data());
        let y = layer.forward(&x, &Cx::new(&store, Mode::Train, 3)).unwrap();
        let zeros = y.data().iter().filter(|v| **v == 0.0).count();
        assert!((400..600).contains(&zeros), "{zeros} zeros");
        assert!(y.data().iter().all(|v| *v == 0.0 || *v == 2.0));
        assert!(DropoutConfig::new(1.0).output_shape(&[3]).is_err());
    }

    #[test]
    fn a_seeded_layer_repeats_per_step() {
        let (store, layer) = build_alone(&DropoutConfig::new(0.5).with_seed(7), "d", &[64]);
        let x = Tensor::full([1, 64], 1.0);
        let run = |step| {
            let ctx = Cx::new(&store, Mode::Train, step).with_rng(Rng::new(step), step);
            layer.forward(&x, &ctx).unwrap().to_vec()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }
}
