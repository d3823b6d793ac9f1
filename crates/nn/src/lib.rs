//! convnet-nn: a Keras-style API over `convnet-tensor`.
//!
//! Layers with Keras' names, arguments and defaults ([`Conv2dConfig`], [`DenseConfig`],
//! ...), a [`Sequential`] model whose [`summary`](Sequential::summary) prints Keras 3's
//! table, `compile` with Keras' losses ([`Loss`]), optimizers ([`Adam`], [`Sgd`],
//! [`RmsProp`], with Keras' exact update formulas, and PyTorch's [`AdamW`]), timm's
//! learning-rate schedules ([`LrSchedule`]) and the `"accuracy"` [`Metric`],
//! `fit` / `evaluate` / `predict`, [callbacks](EarlyStopping), and one-file `.safetensors`
//! save/load. Weights use Keras' paths (`conv2d/kernel`) and layouts (HWIO conv kernels,
//! `[in, out]` Dense kernels), so Keras weights load without conversion.
//!
//! ```
//! use convnet_nn::{Activation, Adam, DenseConfig, FitOptions, Loss, Metric, Sequential, Targets};
//! use convnet_tensor::Tensor;
//!
//! let mut model = Sequential::new([2]).with_seed(1);
//! model.add(DenseConfig::new(8).with_activation(Activation::Relu))?
//!     .add(DenseConfig::new(2).with_activation(Activation::Softmax))?;
//! model.compile(Loss::sparse_categorical_crossentropy(), Adam::new(0.05), &[Metric::Accuracy])?;
//! // XOR-free toy data: the class is the sign of the first coordinate
//! let x = Tensor::from_vec(vec![1.0, 0.2, -1.0, 0.1, 0.8, -0.3, -0.7, -0.2], [4, 2])?;
//! let y = Targets::Sparse(vec![1, 0, 1, 0]);
//! let history = model.fit(&x, &y, FitOptions::new(4, 50).with_verbose(0))?;
//! assert!(history.loss[49] < history.loss[0]);
//! assert_eq!(model.predict(&x, 32)?.dims(), [4, 2]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

mod activation;
pub mod callbacks;
pub mod context;
mod error;
pub mod fsio;
mod initializers;
pub mod layer;
pub mod layers;
pub mod losses;
pub mod metrics;
pub mod optimizers;
mod progress;
pub mod saving;
pub mod schedules;
mod sequential;
pub mod store;
pub mod summary;
mod targets;
pub mod training;

pub use activation::Activation;
pub use callbacks::{Callback, Control, EarlyStopping, ModelCheckpoint, MonitorMode};
pub use context::{BnUpdate, Cx, Mode, RunningStats, TraceRow, apply_bn_updates};
pub use error::{Misshaped, NnError, Result};
pub use initializers::{Initializer, compute_fans};
pub use layer::{IntoPair, Layer, LayerConfig, LayerSpec, Padding};
pub use layers::{
    ActivationConfig, AveragePooling2dConfig, BatchNormalizationConfig, Conv2dConfig, DenseConfig, DropoutConfig,
    FlattenConfig, GlobalAveragePooling2dConfig, MaxPooling2dConfig,
};
pub use losses::Loss;
pub use metrics::Metric;
pub use optimizers::{
    Adam, AdamW, Optimizer, OptimizerConfig, OptimizerState, ParamUpdate, RmsProp, Sgd, UpdateRule, clip_grad_norm,
    decays,
};
pub use schedules::{LrSchedule, Warmup};
pub use sequential::{DEFAULT_SEED, ModelConfig, Sequential};
pub use store::{Init, Layout, ParamEntry, ParamId, Params, Vb};
pub use summary::{SummaryRow, SummaryTable};
pub use targets::Targets;
pub use training::{
    CompileConfig, Dataset, Evaluation, FitOptions, History, Logs, StepOutput, TensorData, TrainOptions, Trainable,
    Trainer,
};
