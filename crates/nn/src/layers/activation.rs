//! `Activation` (Keras 3 `keras.layers.Activation(activation)`): applies one activation,
//! softmax included. A final softmax or sigmoid is handed to a cross-entropy loss as logits.

use convnet_tensor::Tensor;
use convnet_tensor::rng::Rng;
use serde::{Deserialize, Serialize};

use super::{Meta, layer_common, split_activation};
use crate::layer::{Layer, LayerSpec};
use crate::{Activation, Cx, ParamId, Result, Vb};

/// Arguments of an `Activation` layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActivationConfig {
    /// Layer name; generated (`activation`, `activation_1`, ...) when `None`.
    #[serde(default)]
    pub name: Option<String>,
    /// The function.
    pub activation: Activation,
}

impl ActivationConfig {
    /// `Activation(activation)`.
    pub fn new(activation: Activation) -> Self {
        ActivationConfig { name: None, activation }
    }
    /// Sets the layer name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

impl LayerSpec for ActivationConfig {
    fn class_name(&self) -> &'static str {
        "Activation"
    }
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(input.to_vec())
    }
    fn build(&self, name: &str, input: &[usize], _rng: &mut Rng, _vb: &Vb) -> Result<Box<dyn Layer>> {
        Ok(Box::new(ActivationLayer {
            meta: Meta { name: name.to_string(), input_shape: input.to_vec(), output_shape: input.to_vec() },
            config: ActivationConfig { name: Some(name.to_string()), ..self.clone() },
            params: Vec::new(),
        }))
    }
}

/// A built `Activation` layer.
#[derive(Debug)]
pub struct ActivationLayer {
    meta: Meta,
    config: ActivationConfig,
    params: Vec<ParamId>,
}

impl Layer for ActivationLayer {
    layer_common!("Activation", Activation);

    fn forward(&self, x: &Tensor, _ctx: &Cx) -> Result<Tensor> {
        self.config.activation.apply(x)
    }
    fn forward_logits(&self, x: &Tensor, _ctx: &Cx) -> Result<(Tensor, Option<Activation>)> {
        split_activation(x.clone(), self.config.activation)
    }
    fn final_activation(&self) -> Option<Activation> {
        Some(self.config.activation)
    }
}
