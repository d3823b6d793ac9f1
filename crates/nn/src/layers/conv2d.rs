//! `Conv2D` (Keras 3 `keras.layers.Conv2D`): 2-D convolution of NHWC images with an HWIO
//! kernel `[kh, kw, in / groups, filters]` and an optional bias, then an activation.
//! Same argument names and defaults as Keras: `strides=1`, `padding="valid"`,
//! `dilation_rate=1`, `groups=1`, `activation=None`, `use_bias=True`,
//! `kernel_initializer="glorot_uniform"`, `bias_initializer="zeros"`.

use convnet_tensor::rng::Rng;
use convnet_tensor::{Conv2dArgs, Tensor};
use serde::{Deserialize, Serialize};

use super::{Meta, layer_common, split_activation, who};
use crate::layer::{IntoPair, Layer, LayerSpec, expect_rank};
use crate::{Activation, Cx, Initializer, Layout, NnError, Padding, ParamId, Result, Vb};

/// Arguments of a `Conv2D` layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conv2dConfig {
    /// Layer name; generated (`conv2d`, `conv2d_1`, ...) when `None`.
    #[serde(default)]
    pub name: Option<String>,
    /// Number of output channels.
    pub filters: usize,
    /// `(kh, kw)`.
    pub kernel_size: (usize, usize),
    /// `(sh, sw)`, default `(1, 1)`.
    pub strides: (usize, usize),
    /// `valid` (default) or `same`.
    pub padding: Padding,
    /// `(dh, dw)`, default `(1, 1)`.
    pub dilation_rate: (usize, usize),
    /// Channel groups, default 1; must divide the input channels and `filters`.
    pub groups: usize,
    /// Activation applied after the bias, default linear.
    pub activation: Activation,
    /// Whether a bias is added, default true.
    pub use_bias: bool,
    /// Default `glorot_uniform`.
    pub kernel_initializer: Initializer,
    /// Default `zeros`.
    pub bias_initializer: Initializer,
}

impl Conv2dConfig {
    /// `Conv2D(filters, kernel_size)` with Keras' defaults.
    pub fn new(filters: usize, kernel_size: impl IntoPair) -> Self {
        Conv2dConfig {
            name: None,
            filters,
            kernel_size: kernel_size.into_pair(),
            strides: (1, 1),
            padding: Padding::Valid,
            dilation_rate: (1, 1),
            groups: 1,
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
    /// Sets the strides.
    pub fn with_strides(mut self, strides: impl IntoPair) -> Self {
        self.strides = strides.into_pair();
        self
    }
    /// Sets the padding.
    pub fn with_padding(mut self, padding: Padding) -> Self {
        self.padding = padding;
        self
    }
    /// Sets the dilation.
    pub fn with_dilation_rate(mut self, dilation: impl IntoPair) -> Self {
        self.dilation_rate = dilation.into_pair();
        self
    }
    /// Sets the number of groups.
    pub fn with_groups(mut self, groups: usize) -> Self {
        self.groups = groups;
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

    fn args(&self) -> Conv2dArgs {
        Conv2dArgs {
            stride: self.strides,
            padding: self.padding.into(),
            dilation: self.dilation_rate,
            groups: self.groups,
        }
    }

    /// Checks the arguments against a per-sample `[h, w, c]` input; returns the output shape.
    fn check(&self, input: &[usize]) -> Result<Vec<usize>> {
        let who = who(&self.name, "Conv2D");
        expect_rank(who, input, 3, "an image ([height, width, channels])")?;
        let (h, w, c) = (input[0], input[1], input[2]);
        let err = |reason: String| Err(NnError::layer(who, reason));
        if self.filters == 0 {
            return err("filters must be positive".into());
        }
        if self.groups == 0 || !c.is_multiple_of(self.groups) || !self.filters.is_multiple_of(self.groups) {
            return err(format!(
                "groups={} must divide both the {c} input channels and the {} filters",
                self.groups, self.filters
            ));
        }
        if (self.strides.0 > 1 || self.strides.1 > 1) && (self.dilation_rate.0 > 1 || self.dilation_rate.1 > 1) {
            return err(format!(
                "strides {:?} > 1 together with dilation_rate {:?} > 1 is not supported (as in Keras)",
                self.strides, self.dilation_rate
            ));
        }
        let (oh, ow) =
            self.args().output_hw((h, w), self.kernel_size).map_err(|e| NnError::layer(who, e.to_string()))?;
        Ok(vec![oh, ow, self.filters])
    }

    fn kernel_shape(&self, in_channels: usize) -> [usize; 4] {
        [self.kernel_size.0, self.kernel_size.1, in_channels / self.groups, self.filters]
    }
}

impl LayerSpec for Conv2dConfig {
    fn class_name(&self) -> &'static str {
        "Conv2D"
    }
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.check(input)
    }
    fn weight_shapes(&self, input: &[usize]) -> Result<Vec<(&'static str, Vec<usize>)>> {
        self.check(input)?;
        let mut w = vec![("kernel", self.kernel_shape(input[2]).to_vec())];
        if self.use_bias {
            w.push(("bias", vec![self.filters]));
        }
        Ok(w)
    }
    fn build(&self, name: &str, input: &[usize], rng: &mut Rng, vb: &Vb) -> Result<Box<dyn Layer>> {
        let output_shape = self.check(input)?;
        let kshape = self.kernel_shape(input[2]);
        let kernel = Tensor::from_vec(self.kernel_initializer.sample(&kshape, rng), kshape)?;
        let mut params = vec![vb.tensor("kernel", kernel, Layout::Conv, true)];
        if self.use_bias {
            let b = Tensor::from_vec(self.bias_initializer.sample(&[self.filters], rng), [self.filters])?;
            params.push(vb.tensor("bias", b, Layout::Plain, true));
        }
        Ok(Box::new(Conv2d {
            meta: Meta { name: name.to_string(), input_shape: input.to_vec(), output_shape },
            config: Conv2dConfig { name: Some(name.to_string()), ..self.clone() },
            args: self.args(),
            params,
        }))
    }
}

/// A built `Conv2D`: `[n, h, w, c] -> [n, oh, ow, filters]`.
#[derive(Debug)]
pub struct Conv2d {
    meta: Meta,
    config: Conv2dConfig,
    args: Conv2dArgs,
    params: Vec<ParamId>,
}

impl Conv2d {
    fn pre_activation(&self, x: &Tensor, ctx: &Cx) -> Result<Tensor> {
        let w = ctx.param(self.params[0]);
        let b = self.params.get(1).map(|&p| ctx.param(p));
        Ok(x.conv2d(&w, b.as_ref(), &self.args)?)
    }
}

impl Layer for Conv2d {
    layer_common!("Conv2D", Conv2d);

    fn forward(&self, x: &Tensor, ctx: &Cx) -> Result<Tensor> {
        // pointwise activations go into the convolution's epilogue (relu is
        // applied as the kernel stores its output)
        match self.config.activation.pointwise() {
            Some(act) => {
                let w = ctx.param(self.params[0]);
                let b = self.params.get(1).map(|&p| ctx.param(p));
                Ok(x.conv2d_act(&w, b.as_ref(), &self.args, act)?)
            }
            None => self.config.activation.apply(&self.pre_activation(x, ctx)?),
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
    use crate::layer::build_alone;

    #[test]
    fn shapes_follow_keras() {
        let c = Conv2dConfig::new(32, 5).with_padding(Padding::Same);
        assert_eq!(c.output_shape(&[28, 28, 1]).unwrap(), vec![28, 28, 32]);
        let c = Conv2dConfig::new(8, (3, 2)).with_strides(2);
        assert_eq!(c.output_shape(&[9, 8, 3]).unwrap(), vec![4, 4, 8]);
        let c = Conv2dConfig::new(8, 3).with_dilation_rate(2);
        assert_eq!(c.output_shape(&[9, 9, 3]).unwrap(), vec![5, 5, 8]);
        let c = Conv2dConfig::new(8, 3).with_strides(2).with_padding(Padding::Same);
        assert_eq!(c.output_shape(&[7, 7, 3]).unwrap(), vec![4, 4, 8]);
    }

    #[test]
    fn impossible_arguments_are_typed_errors() {
        let big = Conv2dConfig::new(4, 7).with_name("c");
        let e = big.output_shape(&[5, 5, 1]).unwrap_err();
        assert!(matches!(&e, NnError::InvalidLayer { layer, .. } if layer == "c"), "{e}");
        let grouped = Conv2dConfig::new(6, 3).with_groups(4);
        assert!(matches!(grouped.output_shape(&[8, 8, 6]), Err(NnError::InvalidLayer { .. })));
        let flat = Conv2dConfig::new(6, 3);
        assert!(matches!(flat.output_shape(&[8, 6]), Err(NnError::InvalidLayer { .. })));
        let both = Conv2dConfig::new(6, 3).with_strides(2).with_dilation_rate(2);
        assert!(matches!(both.output_shape(&[9, 9, 3]), Err(NnError::InvalidLayer { .. })));
    }

    #[test]
    fn config_round_trips_through_json() {
        let c =
            Conv2dConfig::new(32, 5).with_padding(Padding::Same).with_activation(Activation::Relu).with_name("conv");
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains("\"padding\":\"same\""), "{json}");
        assert_eq!(serde_json::from_str::<Conv2dConfig>(&json).unwrap(), c);
    }

    #[test]
    fn builds_keras_shaped_weights() {
        let c = Conv2dConfig::new(6, 3).with_groups(2);
        let (store, layer) = build_alone(&c, "conv2d_3", &[8, 8, 4]);
        let p: Vec<_> = layer.params().iter().map(|&id| store.entry(id)).collect();
        assert_eq!(p[0].key(), "conv2d_3/kernel");
        assert_eq!(p[0].value().dims(), [3, 3, 2, 6]);
        assert_eq!(p[0].torch_shape(), [6, 2, 3, 3], "Keras' HWIO kernel is PyTorch's OIHW");
        assert_eq!(p[1].key(), "conv2d_3/bias");
        assert!(p[1].value().data().iter().all(|v| *v == 0.0));
        assert_eq!(layer.config().name(), Some("conv2d_3"));
    }
}
