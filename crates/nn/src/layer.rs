//! What every layer shares: the [`Layer`] trait of built layers and the serializable
//! [`LayerConfig`] a layer is built from. A layer's weights live in its model's one
//! parameter store ([`crate::Params`]); the layer keeps their handles and reads them
//! through the forward context ([`Cx`]), as every zoo network does.
//!
//! As in Keras, a layer is a config (every constructor argument, JSON round-trip) plus a
//! built module that owns its weights. `output_shape` is pure, so `summary` and shape errors
//! need no kernels; building happens when a layer is added to a model that knows its input.

use convnet_tensor::Tensor;
use convnet_tensor::rng::Rng;
use serde::{Deserialize, Serialize};
use std::fmt;

use crate::layers::{
    ActivationConfig, AveragePooling2dConfig, BatchNormalizationConfig, Conv2dConfig, DenseConfig, DropoutConfig,
    FlattenConfig, GlobalAveragePooling2dConfig, MaxPooling2dConfig,
};
use crate::{Activation, Cx, NnError, ParamId, Result, Vb};

/// Keras' `padding` argument of convolutions and pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Padding {
    /// No padding.
    #[default]
    Valid,
    /// Output size `ceil(input / stride)`, odd padding pixel at the bottom/right (TensorFlow).
    Same,
}

impl From<Padding> for convnet_tensor::Padding2d {
    fn from(p: Padding) -> Self {
        match p {
            Padding::Valid => convnet_tensor::Padding2d::Valid,
            Padding::Same => convnet_tensor::Padding2d::Same,
        }
    }
}

/// A size given as one number for both axes or as `(height, width)`, like Keras'
/// `kernel_size=5` or `kernel_size=(5, 3)`.
pub trait IntoPair {
    /// `(height, width)`.
    fn into_pair(self) -> (usize, usize);
}
impl IntoPair for usize {
    fn into_pair(self) -> (usize, usize) {
        (self, self)
    }
}
impl IntoPair for (usize, usize) {
    fn into_pair(self) -> (usize, usize) {
        self
    }
}
impl IntoPair for [usize; 2] {
    fn into_pair(self) -> (usize, usize) {
        (self[0], self[1])
    }
}

/// A built layer: its config, its weights and its forward pass.
pub trait Layer: Send + Sync + fmt::Debug {
    /// The layer's name in its model (`conv2d_1`).
    fn name(&self) -> &str;
    /// Keras' class name (`Conv2D`).
    fn class_name(&self) -> &'static str;
    /// The config it was built from, name included.
    fn config(&self) -> LayerConfig;
    /// Per-sample input shape it was built for (no batch axis).
    fn input_shape(&self) -> &[usize];
    /// Per-sample output shape (no batch axis).
    fn output_shape(&self) -> &[usize];
    /// Handles of its weights in the model's store, in Keras order (kernel, bias; gamma,
    /// beta, moving_mean, moving_variance).
    fn params(&self) -> &[ParamId];
    /// `x: [batch, ...input_shape] -> [batch, ...output_shape]`.
    fn forward(&self, x: &Tensor, ctx: &Cx) -> Result<Tensor>;
    /// As `forward`, but when the layer ends with an activation that a cross-entropy can
    /// absorb (softmax, sigmoid), returns the pre-activation values and that activation.
    fn forward_logits(&self, x: &Tensor, ctx: &Cx) -> Result<(Tensor, Option<Activation>)> {
        Ok((self.forward(x, ctx)?, None))
    }
    /// The activation this layer ends with, if any (what `forward_logits` may split off).
    fn final_activation(&self) -> Option<Activation> {
        None
    }
}

/// The serializable description of a layer, tagged with Keras' class name:
/// `{"class_name": "Conv2D", "config": {...}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "class_name", content = "config")]
pub enum LayerConfig {
    /// [`Conv2dConfig`].
    #[serde(rename = "Conv2D")]
    Conv2d(Conv2dConfig),
    /// [`MaxPooling2dConfig`].
    #[serde(rename = "MaxPooling2D")]
    MaxPooling2d(MaxPooling2dConfig),
    /// [`AveragePooling2dConfig`].
    #[serde(rename = "AveragePooling2D")]
    AveragePooling2d(AveragePooling2dConfig),
    /// [`GlobalAveragePooling2dConfig`].
    #[serde(rename = "GlobalAveragePooling2D")]
    GlobalAveragePooling2d(GlobalAveragePooling2dConfig),
    /// [`DropoutConfig`].
    Dropout(DropoutConfig),
    /// [`FlattenConfig`].
    Flatten(FlattenConfig),
    /// [`DenseConfig`].
    Dense(DenseConfig),
    /// [`BatchNormalizationConfig`].
    BatchNormalization(BatchNormalizationConfig),
    /// [`ActivationConfig`].
    Activation(ActivationConfig),
}

/// What each layer config provides; [`LayerConfig`] dispatches to it.
pub trait LayerSpec {
    /// Keras' class name (`MaxPooling2D`).
    fn class_name(&self) -> &'static str;
    /// The user-given name, if any.
    fn name(&self) -> Option<&str>;
    /// Per-sample output shape for a per-sample input shape, or why the arguments are
    /// impossible for it. Pure: runs no kernels.
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>>;
    /// Builds the layer named `name` for `input`, drawing initial weights from `rng` and
    /// creating them in the store under `vb` (the layer's own path, `name/`).
    fn build(&self, name: &str, input: &[usize], rng: &mut Rng, vb: &Vb) -> Result<Box<dyn Layer>>;
    /// The weights `build` would create for `input`, by short name (`kernel`, `bias`) with
    /// their shapes, without creating them: loading a file compares them with the file's
    /// tensors before anything is allocated. Layers without weights keep the default.
    fn weight_shapes(&self, input: &[usize]) -> Result<Vec<(&'static str, Vec<usize>)>> {
        self.output_shape(input)?;
        Ok(Vec::new())
    }
}

macro_rules! dispatch {
    ($self:ident, $c:ident => $e:expr) => {
        match $self {
            LayerConfig::Conv2d($c) => $e,
            LayerConfig::MaxPooling2d($c) => $e,
            LayerConfig::AveragePooling2d($c) => $e,
            LayerConfig::GlobalAveragePooling2d($c) => $e,
            LayerConfig::Dropout($c) => $e,
            LayerConfig::Flatten($c) => $e,
            LayerConfig::Dense($c) => $e,
            LayerConfig::BatchNormalization($c) => $e,
            LayerConfig::Activation($c) => $e,
        }
    };
}

impl LayerConfig {
    /// The config as the trait every layer config implements.
    pub fn spec(&self) -> &dyn LayerSpec {
        dispatch!(self, c => c)
    }
    /// Keras' class name.
    pub fn class_name(&self) -> &'static str {
        self.spec().class_name()
    }
    /// The user-given name, if any.
    pub fn name(&self) -> Option<&str> {
        self.spec().name()
    }
    /// See [`LayerSpec::output_shape`].
    pub fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.spec().output_shape(input)
    }
    /// See [`LayerSpec::weight_shapes`].
    pub fn weight_shapes(&self, input: &[usize]) -> Result<Vec<(&'static str, Vec<usize>)>> {
        self.spec().weight_shapes(input)
    }
    /// See [`LayerSpec::build`].
    pub fn build(&self, name: &str, input: &[usize], rng: &mut Rng, vb: &Vb) -> Result<Box<dyn Layer>> {
        self.spec().build(name, input, rng, vb)
    }
}

macro_rules! into_config {
    ($($t:ident => $v:ident),*) => {$(
        impl From<$t> for LayerConfig {
            fn from(c: $t) -> Self {
                LayerConfig::$v(c)
            }
        }
    )*};
}
into_config!(
    Conv2dConfig => Conv2d,
    MaxPooling2dConfig => MaxPooling2d,
    AveragePooling2dConfig => AveragePooling2d,
    GlobalAveragePooling2dConfig => GlobalAveragePooling2d,
    DropoutConfig => Dropout,
    FlattenConfig => Flatten,
    DenseConfig => Dense,
    BatchNormalizationConfig => BatchNormalization,
    ActivationConfig => Activation
);

/// Keras' `to_snake_case` of a class name: `Conv2D -> conv2d`,
/// `MaxPooling2D -> max_pooling2d`, `BatchNormalization -> batch_normalization`.
pub fn to_snake_case(name: &str) -> String {
    // re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    let c: Vec<char> = name.chars().collect();
    let mut first = String::new();
    let mut i = 0;
    while i < c.len() {
        first.push(c[i]);
        let starts_word =
            i + 1 < c.len() && c[i + 1].is_ascii_uppercase() && c.get(i + 2).is_some_and(|ch| ch.is_ascii_lowercase());
        if starts_word {
            // consume the word [A-Z][a-z]+ after an underscore
            first.push('_');
            let mut j = i + 1;
            first.push(c[j]);
            j += 1;
            while j < c.len() && c[j].is_ascii_lowercase() {
                first.push(c[j]);
                j += 1;
            }
            i = j;
            continue;
        }
        i += 1;
    }
    // re.sub("([a-z])([A-Z])", r"\1_\2", ...).lower()
    let c: Vec<char> = first.chars().collect();
    let mut out = String::new();
    for (k, ch) in c.iter().enumerate() {
        out.push(ch.to_ascii_lowercase());
        if ch.is_ascii_lowercase() && c.get(k + 1).is_some_and(|n| n.is_ascii_uppercase()) {
            out.push('_');
        }
    }
    out
}

/// Checks that a per-sample shape has `rank` axes, for layer `who`.
pub(crate) fn expect_rank(who: &str, input: &[usize], rank: usize, what: &str) -> Result<()> {
    if input.len() != rank {
        return Err(NnError::layer(who, format!("expects {what} input (per sample {rank} axes), got shape {input:?}")));
    }
    Ok(())
}

/// Builds one layer alone in a fresh store (for tests of a single layer).
#[cfg(test)]
pub(crate) fn build_alone(config: &dyn LayerSpec, name: &str, input: &[usize]) -> (crate::Params, Box<dyn Layer>) {
    let store = std::cell::RefCell::new(crate::Params::new());
    let layer = config.build(name, input, &mut Rng::new(0), &Vb::keras_root(&store, 0).pp(name)).unwrap();
    (store.into_inner(), layer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_matches_keras() {
        assert_eq!(to_snake_case("Conv2D"), "conv2d");
        assert_eq!(to_snake_case("MaxPooling2D"), "max_pooling2d");
        assert_eq!(to_snake_case("AveragePooling2D"), "average_pooling2d");
        assert_eq!(to_snake_case("GlobalAveragePooling2D"), "global_average_pooling2d");
        assert_eq!(to_snake_case("BatchNormalization"), "batch_normalization");
        assert_eq!(to_snake_case("Dense"), "dense");
        assert_eq!(to_snake_case("Dropout"), "dropout");
        assert_eq!(to_snake_case("Activation"), "activation");
        assert_eq!(to_snake_case("DepthwiseConv2D"), "depthwise_conv2d");
    }
}
