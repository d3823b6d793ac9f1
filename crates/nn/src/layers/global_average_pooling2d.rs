//! `GlobalAveragePooling2D` (Keras 3 `keras.layers.GlobalAveragePooling2D`): the mean over
//! height and width, `[n, h, w, c] -> [n, c]` (or `[n, 1, 1, c]` with `keepdims=True`).

use convnet_tensor::Tensor;
use convnet_tensor::rng::Rng;
use serde::{Deserialize, Serialize};

use super::{Meta, layer_common, who};
use crate::layer::{Layer, LayerSpec, expect_rank};
use crate::{Cx, NnError, ParamId, Result, Vb};

/// Arguments of a `GlobalAveragePooling2D` layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct GlobalAveragePooling2dConfig {
    /// Layer name; generated (`global_average_pooling2d`, ...) when `None`.
    #[serde(default)]
    pub name: Option<String>,
    /// Keep the pooled axes as size 1 (default false).
    #[serde(default)]
    pub keepdims: bool,
}

impl GlobalAveragePooling2dConfig {
    /// `GlobalAveragePooling2D()`.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the layer name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// Sets `keepdims`.
    pub fn with_keepdims(mut self, keepdims: bool) -> Self {
        self.keepdims = keepdims;
        self
    }
}

impl LayerSpec for GlobalAveragePooling2dConfig {
    fn class_name(&self) -> &'static str {
        "GlobalAveragePooling2D"
    }
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let who = who(&self.name, "GlobalAveragePooling2D");
        expect_rank(who, input, 3, "an image ([height, width, channels])")?;
        if input[0] * input[1] == 0 {
            return Err(NnError::layer(who, format!("cannot average an empty {input:?} image")));
        }
        Ok(if self.keepdims { vec![1, 1, input[2]] } else { vec![input[2]] })
    }
    fn build(&self, name: &str, input: &[usize], _rng: &mut Rng, _vb: &Vb) -> Result<Box<dyn Layer>> {
        let output_shape = self.output_shape(input)?;
        Ok(Box::new(GlobalAveragePooling2d {
            meta: Meta { name: name.to_string(), input_shape: input.to_vec(), output_shape },
            config: GlobalAveragePooling2dConfig { name: Some(name.to_string()), ..self.clone() },
            params: Vec::new(),
        }))
    }
}

/// A built `GlobalAveragePooling2D`.
#[derive(Debug)]
pub struct GlobalAveragePooling2d {
    meta: Meta,
    config: GlobalAveragePooling2dConfig,
    params: Vec<ParamId>,
}

impl Layer for GlobalAveragePooling2d {
    layer_common!("GlobalAveragePooling2D", GlobalAveragePooling2d);

    fn forward(&self, x: &Tensor, _ctx: &Cx) -> Result<Tensor> {
        let y = x.global_avg_pool()?;
        if self.config.keepdims {
            let (n, c) = (y.dims()[0], y.dims()[1]);
            return Ok(y.reshape([n, 1, 1, c])?);
        }
        Ok(y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Mode;
    use crate::layer::build_alone;

    #[test]
    fn averages_each_channel() {
        let cfg = GlobalAveragePooling2dConfig::new();
        assert_eq!(cfg.output_shape(&[3, 4, 5]).unwrap(), vec![5]);
        assert_eq!(cfg.clone().with_keepdims(true).output_shape(&[3, 4, 5]).unwrap(), vec![1, 1, 5]);
        let (store, layer) = build_alone(&cfg, "global_average_pooling2d", &[2, 1, 2]);
        let x = Tensor::from_vec(vec![1.0, 10.0, 3.0, 30.0], [1, 2, 1, 2]).unwrap();
        let y = layer.forward(&x, &Cx::new(&store, Mode::Eval, 0)).unwrap();
        assert_eq!(y.dims(), [1, 2]);
        assert_eq!(y.data(), [2.0, 20.0]);
    }
}
