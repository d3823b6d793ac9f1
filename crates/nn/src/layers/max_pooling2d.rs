//! `MaxPooling2D` (Keras 3 `keras.layers.MaxPooling2D`): the maximum over windows of NHWC images.
//! Keras' arguments and defaults: `pool_size=(2, 2)`, `strides=None` (= `pool_size`),
//! `padding="valid"`.
//! With `same` padding the padded pixels never win (they are -inf, as in TensorFlow).

use convnet_tensor::rng::Rng;
use convnet_tensor::{Pool2dArgs, Tensor};
use serde::{Deserialize, Serialize};

use super::{Meta, layer_common, pool_args, pool_output_shape, who};
use crate::layer::{ForwardCtx, IntoPair, Layer, LayerSpec};
use crate::{Padding, Param, Result};

/// Arguments of a `MaxPooling2D` layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MaxPooling2dConfig {
    /// Layer name; generated (`max_pooling2d`, `max_pooling2d_1`, ...) when `None`.
    #[serde(default)]
    pub name: Option<String>,
    /// Window `(height, width)`.
    pub pool_size: (usize, usize),
    /// Step between windows; `None` means `pool_size`.
    #[serde(default)]
    pub strides: Option<(usize, usize)>,
    /// `valid` (default) or `same`.
    pub padding: Padding,
}

impl MaxPooling2dConfig {
    /// `MaxPooling2D(pool_size)`, strides equal to the pool size, valid padding.
    pub fn new(pool_size: impl IntoPair) -> Self {
        MaxPooling2dConfig { name: None, pool_size: pool_size.into_pair(), strides: None, padding: Padding::Valid }
    }
    /// Sets the layer name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// Sets the strides.
    pub fn with_strides(mut self, strides: impl IntoPair) -> Self {
        self.strides = Some(strides.into_pair());
        self
    }
    /// Sets the padding.
    pub fn with_padding(mut self, padding: Padding) -> Self {
        self.padding = padding;
        self
    }
    fn args(&self) -> Pool2dArgs {
        pool_args(self.pool_size, self.strides, self.padding)
    }
}

impl Default for MaxPooling2dConfig {
    /// Keras' default `pool_size=(2, 2)`.
    fn default() -> Self {
        Self::new(2)
    }
}

impl LayerSpec for MaxPooling2dConfig {
    fn class_name(&self) -> &'static str {
        "MaxPooling2D"
    }
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        pool_output_shape(who(&self.name, "MaxPooling2D"), &self.args(), input)
    }
    fn build(&self, name: &str, input: &[usize], _rng: &mut Rng) -> Result<Box<dyn Layer>> {
        let output_shape = self.output_shape(input)?;
        Ok(Box::new(MaxPooling2d {
            meta: Meta { name: name.to_string(), input_shape: input.to_vec(), output_shape },
            config: MaxPooling2dConfig { name: Some(name.to_string()), ..self.clone() },
            args: self.args(),
            params: Vec::new(),
        }))
    }
}

/// A built `MaxPooling2D`: `[n, h, w, c] -> [n, oh, ow, c]`.
#[derive(Debug)]
pub struct MaxPooling2d {
    meta: Meta,
    config: MaxPooling2dConfig,
    args: Pool2dArgs,
    params: Vec<Param>,
}

impl Layer for MaxPooling2d {
    layer_common!("MaxPooling2D", MaxPooling2d);

    fn forward(&self, x: &Tensor, _ctx: &mut ForwardCtx<'_>) -> Result<Tensor> {
        Ok(x.max_pool2d(&self.args)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NnError;
    use crate::layer::Mode;

    #[test]
    fn shapes_follow_keras() {
        assert_eq!(MaxPooling2dConfig::new(2).output_shape(&[28, 28, 32]).unwrap(), vec![14, 14, 32]);
        assert_eq!(MaxPooling2dConfig::new(2).output_shape(&[7, 7, 3]).unwrap(), vec![3, 3, 3]);
        let same = MaxPooling2dConfig::new(2).with_padding(Padding::Same);
        assert_eq!(same.output_shape(&[7, 7, 3]).unwrap(), vec![4, 4, 3]);
        let strided = MaxPooling2dConfig::new(3).with_strides(1);
        assert_eq!(strided.output_shape(&[5, 6, 2]).unwrap(), vec![3, 4, 2]);
        let too_big = MaxPooling2dConfig::new(4).with_name("p");
        assert!(matches!(too_big.output_shape(&[3, 3, 1]), Err(NnError::InvalidLayer { .. })));
        assert!(matches!(MaxPooling2dConfig::new(2).output_shape(&[4, 4]), Err(NnError::InvalidLayer { .. })));
    }

    #[test]
    fn pools_values() {
        let layer = MaxPooling2dConfig::new(2).build("max_pooling2d", &[2, 2, 1], &mut Rng::new(0)).unwrap();
        let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 6.0], [1, 2, 2, 1]).unwrap();
        let mut rng = Rng::new(0);
        let mut ctx = ForwardCtx::new(Mode::Infer, false, &mut rng, 0);
        let y = layer.forward(&x, &mut ctx).unwrap();
        assert_eq!(y.dims(), [1, 1, 1, 1]);
        assert_eq!(y.data()[0], 6.0);
    }
}
