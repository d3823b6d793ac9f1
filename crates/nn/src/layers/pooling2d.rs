//! The Keras 2-D pooling layers share everything but the reduction: this
//! macro writes a config (Keras' `pool_size`, `strides`, `padding`) and its
//! built layer for one tensor pooling op, so `MaxPooling2D` and
//! `AveragePooling2D` cannot drift apart.

/// Defines `$config` and `$layer` for the pooling op `Tensor::$method`.
macro_rules! pooling2d_layer {
    ($config:ident, $layer:ident, $class:literal, $snake:literal, $method:ident) => {
        #[doc = concat!("Arguments of a `", $class, "` layer.")]
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        pub struct $config {
            #[doc = concat!("Layer name; generated (`", $snake, "`, `", $snake, "_1`, ...) when `None`.")]
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

        impl $config {
            #[doc = concat!("`", $class, "(pool_size)`, strides equal to the pool size, valid padding.")]
            pub fn new(pool_size: impl IntoPair) -> Self {
                $config { name: None, pool_size: pool_size.into_pair(), strides: None, padding: Padding::Valid }
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

        impl Default for $config {
            /// Keras' default `pool_size=(2, 2)`.
            fn default() -> Self {
                Self::new(2)
            }
        }

        impl LayerSpec for $config {
            fn class_name(&self) -> &'static str {
                $class
            }
            fn name(&self) -> Option<&str> {
                self.name.as_deref()
            }
            fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
                pool_output_shape(who(&self.name, $class), &self.args(), input)
            }
            fn build(&self, name: &str, input: &[usize], _rng: &mut Rng, _vb: &Vb) -> Result<Box<dyn Layer>> {
                let output_shape = self.output_shape(input)?;
                Ok(Box::new($layer {
                    meta: Meta { name: name.to_string(), input_shape: input.to_vec(), output_shape },
                    config: $config { name: Some(name.to_string()), ..self.clone() },
                    args: self.args(),
                    params: Vec::new(),
                }))
            }
        }

        #[doc = concat!("A built `", $class, "`: `[n, h, w, c] -> [n, oh, ow, c]`.")]
        #[derive(Debug)]
        pub struct $layer {
            meta: Meta,
            config: $config,
            args: Pool2dArgs,
            params: Vec<ParamId>,
        }

        impl Layer for $layer {
            $crate::layers::layer_common!($class, $layer);

            fn forward(&self, x: &Tensor, _ctx: &Cx) -> Result<Tensor> {
                Ok(x.$method(&self.args)?)
            }
        }
    };
}
pub(crate) use pooling2d_layer;
