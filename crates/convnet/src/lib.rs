//! convnet: convolutional neural networks in Rust, Keras-simple.
//!
//! This facade re-exports what a user needs: tensors and autograd
//! ([`tensor`]), the Keras-style API ([`nn`]: layers, [`Sequential`], compile,
//! fit, evaluate, save and load), data sets ([`data`]) and charts ([`plot`]),
//! plus ready-made models of the course ([`models`]).

pub mod models;

pub use convnet_audio as audio;
pub use convnet_data as data;
pub use convnet_nn as nn;
pub use convnet_plot as plot;
pub use convnet_speech as speech;
pub use convnet_tensor as tensor;

pub use convnet_nn::{
    Activation, Adam, AveragePooling2dConfig as AveragePooling2D, BatchNormalizationConfig as BatchNormalization,
    Conv2dConfig as Conv2D, DenseConfig as Dense, DropoutConfig as Dropout, EarlyStopping, FitOptions,
    FlattenConfig as Flatten, GlobalAveragePooling2dConfig as GlobalAveragePooling2D, History, Loss,
    MaxPooling2dConfig as MaxPooling2D, Metric, ModelCheckpoint, NnError, Padding, RmsProp, Sequential, Sgd, Targets,
};
pub use convnet_tensor::Tensor;
