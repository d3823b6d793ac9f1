//! `Dense` (Keras 3 `keras.layers.Dense`): `y = activation(x @ kernel + bias)` with a
//! `[in, units]` kernel (Keras' layout). Inputs of higher rank are multiplied along their
//! last axis, as in Keras. Defaults: `activation=None`, `use_bias=True`,
//! `kernel_initializer="glorot_uniform"`, `bias_initializer="zeros"`.

use convnet_tensor::Tensor;
use convnet_tensor::rng::Rng;
use serde::{Deserialize, Serialize};

use super::{Meta, layer_common, split_activation, who};
use crate::layer::{Layer, LayerSpec};
use crate::{Activation, Cx, Initializer, Layout, NnError, ParamId, Result, Vb};

/// Arguments of a `Dense` layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DenseConfig {
    /// Layer name; generated (`dense`, `dense_1`, ...) when `None`.
    #[serde(default)]
    pub name: Option<String>,
    /// Output size.
    pub units: usize,
    /// Activation after the bias, default linear.
    pub activation: Activation,
    /// Whether a bias is added, default true.
    pub use_bias: bool,
    /// Default `glorot_uniform`.
    pub kernel_initializer: Initializer,
    /// Default `zeros`.
    pub bias_initializer: Initializer,
}

impl DenseConfig {
    /// `Dense(units)` with Keras' defaults.
    pub fn new(units: usize) -> Self {
        DenseConfig {
            name: None,
            units,
            activation: Activation::Linear,
            use_bias: true,
            kernel_initializer: Initializer::GlorotUniform,
            bias_initializer: Initializer::Zeros,
        }
    }
    /// Sets the layer name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// Sets the activation.
    pub fn with_activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }
    /// Sets whether a bias is used.
    pub fn with_use_bias(mut self, use_bias: bool) -> Self {
        self.use_bias = use_bias;
        self
    }
    /// Sets the kernel initializer.
    pub fn with_kernel_initializer(mut self, init: Initializer) -> Self {
        self.kernel_initializer = init;
        self
    }
    /// Sets the bias initializer.
    pub fn with_bias_initializer(mut self, init: Initializer) -> Self {
        self.bias_initializer = init;
        self
    }
}

impl LayerSpec for DenseConfig {
    fn class_name(&self) -> &'static str {
        "Dense"
    }
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let who = who(&self.name, "Dense");
        if self.units == 0 {
            return Err(NnError::layer(who, "units must be positive"));
        }
        match input.last() {
            Some(&d) if d > 0 => {
                let mut out = input.to_vec();
                *out.last_mut().expect("non-empty") = self.units;
                Ok(out)
            }
            _ => Err(NnError::layer(
                who,
                format!("needs inputs with a non-empty last axis, got {input:?}; add a Flatten first"),
            )),
        }
    }
    fn weight_shapes(&self, input: &[usize]) -> Result<Vec<(&'static str, Vec<usize>)>> {
        self.output_shape(input)?;
        let fan_in = *input.last().expect("checked");
        let mut w = vec![("kernel", vec![fan_in, self.units])];
        if self.use_bias {
            w.push(("bias", vec![self.units]));
        }
        Ok(w)
    }
    fn build(&self, name: &str, input: &[usize], rng: &mut Rng, vb: &Vb) -> Result<Box<dyn Layer>> {
        let output_shape = self.output_shape(input)?;
        let fan_in = *input.last().expect("checked");
        let kshape = [fan_in, self.units];
        let kernel = Tensor::from_vec(self.kernel_initializer.sample(&kshape, rng), kshape)?;
        let mut params = vec![vb.tensor("kernel", kernel, Layout::Linear, true)];
        if self.use_bias {
            let b = Tensor::from_vec(self.bias_initializer.sample(&[self.units], rng), [self.units])?;
            params.push(vb.tensor("bias", b, Layout::Plain, true));
        }
        Ok(Box::new(Dense {
            meta: Meta { name: name.to_string(), input_shape: input.to_vec(), output_shape },
            config: DenseConfig { name: Some(name.to_string()), ..self.clone() },
            params,
        }))
    }
}

/// A built `Dense`: `[n, ..., in] -> [n, ..., units]`.
#[derive(Debug)]
pub struct Dense {
    meta: Meta,
    config: DenseConfig,
    params: Vec<ParamId>,
}

impl Dense {
    fn pre_activation(&self, x: &Tensor, ctx: &Cx) -> Result<Tensor> {
        let w = ctx.param(self.params[0]);
        let b = self.params.get(1).map(|&p| ctx.param(p));
        if x.rank() == 2 {
            return Ok(x.linear(&w, b.as_ref())?);
        }
        // apply along the last axis: [..., in] -> [rows, in] -> [..., units]
        let fan_in = *x.dims().last().unwrap_or(&0);
        let rows = x.reshape([usize::MAX, fan_in])?;
        let y = rows.linear(&w, b.as_ref())?;
        let mut shape = x.dims().to_vec();
        if let Some(last) = shape.last_mut() {
            *last = self.config.units;
        }
        Ok(y.reshape(shape)?)
    }
}

impl Layer for Dense {
    layer_common!("Dense", Dense);

    fn forward(&self, x: &Tensor, ctx: &Cx) -> Result<Tensor> {
        // a pointwise activation on a matrix input is fused into the product's epilogue
        match self.config.activation.pointwise() {
            Some(act) if x.rank() == 2 => {
                let w = ctx.param(self.params[0]);
                let b = self.params.get(1).map(|&p| ctx.param(p));
                Ok(x.linear_act(&w, b.as_ref(), act)?)
            }
            _ => self.config.activation.apply(&self.pre_activation(x, ctx)?),
        }
    }
    fn forward_logits(&self, x: &Tensor, ctx: &Cx) -> Result<(Tensor, Option<Activation>)> {
        split_activation(self.pre_activation(x, ctx)?, self.config.activation)
    }
    fn final_activation(&self) -> Option<Activation> {
        Some(self.config.activation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Mode;
    use crate::layer::build_alone;

    #[test]
    fn computes_x_at_kernel_plus_bias() {
        let cfg = DenseConfig::new(2).with_bias_initializer(Initializer::Constant(0.5));
        let (mut store, layer) = build_alone(&cfg, "dense", &[3]);
        store.set(layer.params()[0], &Tensor::from_vec(vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0], [3, 2]).unwrap()).unwrap();
        let x = Tensor::from_vec(vec![1.0, 2.0, 3.0], [1, 3]).unwrap();
        let y = layer.forward(&x, &Cx::new(&store, Mode::Eval, 0)).unwrap();
        assert_eq!(y.data(), [4.5, 5.5]);
        // rank 3: along the last axis
        let x3 = Tensor::from_vec(vec![1.0, 2.0, 3.0, 0.0, 0.0, 0.0], [1, 2, 3]).unwrap();
        let y3 = layer.forward(&x3, &Cx::new(&store, Mode::Eval, 0)).unwrap();
        assert_eq!(y3.dims(), [1, 2, 2]);
        assert_eq!(y3.data(), [4.5, 5.5, 0.5, 0.5]);
        assert_eq!(cfg.output_shape(&[4, 3]).unwrap(), vec![4, 2]);
        assert!(DenseConfig::new(0).output_shape(&[3]).is_err());
    }

    #[test]
    fn softmax_is_split_off_for_the_loss() {
        let (store, layer) = build_alone(&DenseConfig::new(3).with_activation(Activation::Softmax), "d", &[2]);
        let x = Tensor::from_vec(vec![1.0, -1.0], [1, 2]).unwrap();
        let ctx = Cx::new(&store, Mode::Eval, 0);
        let (z, act) = layer.forward_logits(&x, &ctx).unwrap();
        assert_eq!(act, Some(Activation::Softmax));
        let p = layer.forward(&x, &ctx).unwrap();
        assert_eq!(z.softmax().unwrap().data(), p.data());
    }
}
