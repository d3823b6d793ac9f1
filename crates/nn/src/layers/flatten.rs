//! `Flatten` (Keras 3 `keras.layers.Flatten`): `[n, d1, d2, ...] -> [n, d1 * d2 * ...]`,
//! in NHWC order, so a Dense kernel after it has Keras' row order. No copy.

use convnet_tensor::Tensor;
use convnet_tensor::rng::Rng;
use serde::{Deserialize, Serialize};

use super::{Meta, layer_common, who};
use crate::layer::{Layer, LayerSpec};
use crate::{Cx, NnError, ParamId, Result, Vb};

/// Arguments of a `Flatten` layer (only its name).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct FlattenConfig {
    /// Layer name; generated (`flatten`, `flatten_1`, ...) when `None`.
    #[serde(default)]
    pub name: Option<String>,
}

impl FlattenConfig {
    /// `Flatten()`.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the layer name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

impl LayerSpec for FlattenConfig {
    fn class_name(&self) -> &'static str {
        "Flatten"
    }
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        if input.is_empty() {
            return Err(NnError::layer(who(&self.name, "Flatten"), "cannot flatten scalar samples"));
        }
        Ok(vec![input.iter().product()])
    }
    fn build(&self, name: &str, input: &[usize], _rng: &mut Rng, _vb: &Vb) -> Result<Box<dyn Layer>> {
        let output_shape = self.output_shape(input)?;
        Ok(Box::new(Flatten {
            meta: Meta { name: name.to_string(), input_shape: input.to_vec(), output_shape },
            config: FlattenConfig { name: Some(name.to_string()) },
            params: Vec::new(),
        }))
    }
}

/// A built `Flatten`.
#[derive(Debug)]
pub struct Flatten {
    meta: Meta,
    config: FlattenConfig,
    params: Vec<ParamId>,
}

impl Layer for Flatten {
    layer_common!("Flatten", Flatten);

    fn forward(&self, x: &Tensor, _ctx: &Cx) -> Result<Tensor> {
        Ok(x.flatten()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattens_per_sample() {
        assert_eq!(FlattenConfig::new().output_shape(&[7, 7, 64]).unwrap(), vec![3136]);
        assert_eq!(FlattenConfig::new().output_shape(&[5]).unwrap(), vec![5]);
        assert!(FlattenConfig::new().output_shape(&[]).is_err());
    }
}
