//! The layers, one file each, named and configured as in Keras 3. Each file holds the
//! serializable config (`new(required)` plus `with_*` setters) and the built layer.

mod activation;
mod average_pooling2d;
mod batch_normalization;
mod conv2d;
mod dense;
mod dropout;
mod flatten;
mod global_average_pooling2d;
mod max_pooling2d;
mod pooling2d;

pub use activation::{ActivationConfig, ActivationLayer};
pub use average_pooling2d::{AveragePooling2d, AveragePooling2dConfig};
pub use batch_normalization::{BatchNormalization, BatchNormalizationConfig};
pub use conv2d::{Conv2d, Conv2dConfig};
pub use dense::{Dense, DenseConfig};
pub use dropout::{Dropout, DropoutConfig};
pub use flatten::{Flatten, FlattenConfig};
pub use global_average_pooling2d::{GlobalAveragePooling2d, GlobalAveragePooling2dConfig};
pub use max_pooling2d::{MaxPooling2d, MaxPooling2dConfig};

use convnet_tensor::{Padding2d, Pool2dArgs, Tensor};

use crate::layer::expect_rank;
use crate::{Activation, NnError, Padding, Result};

/// Name, shapes and config shared by every built layer.
#[derive(Clone, Debug)]
pub(crate) struct Meta {
    pub name: String,
    pub input_shape: Vec<usize>,
    pub output_shape: Vec<usize>,
}

/// The `Layer` methods every built layer implements the same way; expects fields
/// `meta: Meta`, `config` (with a `name: Option<String>`) and `params: Vec<ParamId>`.
macro_rules! layer_common {
    ($class:literal, $variant:ident) => {
        fn name(&self) -> &str {
            &self.meta.name
        }
        fn class_name(&self) -> &'static str {
            $class
        }
        fn config(&self) -> $crate::LayerConfig {
            $crate::LayerConfig::$variant(self.config.clone())
        }
        fn input_shape(&self) -> &[usize] {
            &self.meta.input_shape
        }
        fn output_shape(&self) -> &[usize] {
            &self.meta.output_shape
        }
        fn params(&self) -> &[$crate::ParamId] {
            &self.params
        }
    };
}
pub(crate) use layer_common;

/// Applies `act` to `z`, or hands back `z` and `act` when a loss can absorb it.
pub(crate) fn split_activation(z: Tensor, act: Activation) -> Result<(Tensor, Option<Activation>)> {
    if act.fuses_with_loss() { Ok((z, Some(act))) } else { Ok((act.apply(&z)?, None)) }
}

/// The name a config reports before it is built: its own or its class name.
pub(crate) fn who<'a>(name: &'a Option<String>, class: &'a str) -> &'a str {
    name.as_deref().unwrap_or(class)
}

/// Keras-style 2-D pooling arguments: `strides` defaults to `pool_size`, padding is never
/// counted in averages.
pub(crate) fn pool_args(pool_size: (usize, usize), strides: Option<(usize, usize)>, padding: Padding) -> Pool2dArgs {
    Pool2dArgs {
        kernel: pool_size,
        stride: strides.unwrap_or(pool_size),
        padding: Padding2d::from(padding),
        ceil_mode: false,
        count_include_pad: false,
    }
}

/// Output shape of a 2-D pooling layer for a per-sample `[h, w, c]` input.
pub(crate) fn pool_output_shape(who: &str, args: &Pool2dArgs, input: &[usize]) -> Result<Vec<usize>> {
    expect_rank(who, input, 3, "an image ([height, width, channels])")?;
    let (oh, ow) = args.output_hw(input[0], input[1]).map_err(|e| NnError::layer(who, pool_reason(e, args, input)))?;
    Ok(vec![oh, ow, input[2]])
}

fn pool_reason(e: convnet_tensor::TensorError, args: &Pool2dArgs, input: &[usize]) -> String {
    match e {
        convnet_tensor::TensorError::InvalidArgument { .. } if args.kernel.0 > 0 && args.kernel.1 > 0 => {
            format!(
                "pool_size {:?} with strides {:?} does not fit the {}x{} input ({e}); use \
                 padding=\"same\" or a smaller pool",
                args.kernel, args.stride, input[0], input[1]
            )
        }
        other => other.to_string(),
    }
}
