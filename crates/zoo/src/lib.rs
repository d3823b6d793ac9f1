//! convnet-zoo: timm-compatible models with timm's names, configs and checkpoints.
//!
//! `create_model("resnet50.a1_in1k", opts)` builds a [`Model`] from an explicit registry
//! ([`registry::models`]) of entry points, one file per family. Parameter paths are timm's
//! state-dict keys, so timm `.safetensors` checkpoints load as they are (PyTorch layouts
//! are converted once, at the checkpoint boundary) and checkpoints saved here load in timm.
//! Activations are NHWC.
//!
//! ```
//! use convnet_zoo::{create_model, ZooOpts};
//! use convnet_tensor::Tensor;
//!
//! let model = create_model("lenet5", ZooOpts::new().with_num_classes(10))?;
//! let logits = model.forward(&Tensor::zeros([2, 32, 32, 1]))?;
//! assert_eq!(logits.dims(), [2, 10]);
//! assert_eq!(model.param_count(), 61_706);
//! # Ok::<(), convnet_zoo::ZooError>(())
//! ```

#![warn(missing_docs)]

pub mod attention;
pub mod bench;
pub mod checkpoint;
pub mod compare;
mod error;
pub mod finetune;
pub mod labels;
pub mod layers;
mod model;
pub mod npy;
pub mod parity;
pub mod pretrained;
pub mod registry;
#[cfg(test)]
mod test_util;
pub mod transforms;

pub mod alexnet;
mod branches;
pub mod byobnet;
pub mod convnext;
pub mod cspnet;
pub mod densenet;
pub mod dla;
pub mod dpn;
pub mod efficientnet;
pub mod efficientnet_builder;
pub mod googlenet;
pub mod hrnet;
pub mod inception_resnet_v2;
pub mod inception_v3;
pub mod inception_v4;
pub mod lenet;
pub mod mobilenetv3;
pub mod nasnet;
pub mod pnasnet;
pub mod regnet;
pub mod res2net;
pub mod resnest;
pub mod resnet;
pub mod resnetv2;
pub mod rexnet;
pub mod selecsls;
pub mod senet;
pub mod sknet;
pub mod tresnet;
pub mod vgg;
pub mod vision_transformer;
pub mod vovnet;
pub mod xception;
pub mod xception_aligned;

pub use checkpoint::{LoadOptions, LoadReport};
pub use convnet_nn::{Cx, Init, Layout, Mode, ParamEntry, ParamId, Params, TraceRow, Vb};
pub use convnet_tensor::Tensor;
pub use error::{Misshaped, Result, ZooError};
pub use model::{Architecture, Model, ModelArgs, ZooOpts};
pub use pretrained::{Interpolation, PretrainedCfg};
pub use registry::{ModelEntry, create_model, list_models};
