//! Ready-made models of the Keras course.

use crate::nn::{Activation, Conv2dConfig, DenseConfig, DropoutConfig, FlattenConfig, MaxPooling2dConfig, Padding};
use crate::nn::{Result, Sequential};

/// The classic Keras MNIST CNN (28x28x1 -> 10 probabilities, 454,922 parameters):
/// Conv2D(32, 5x5, same, relu) / MaxPooling2D(2) / Conv2D(64, 5x5, same, relu) /
/// MaxPooling2D(2) / Dropout(0.25) / Flatten / Dense(128, relu) / Dropout(0.5) /
/// Dense(10, softmax). `seed` fixes the initial weights.
pub fn mnist_cnn(seed: u64) -> Result<Sequential> {
    let mut model = Sequential::new([28, 28, 1]).with_seed(seed);
    model
        .add(Conv2dConfig::new(32, 5).with_padding(Padding::Same).with_activation(Activation::Relu))?
        .add(MaxPooling2dConfig::new(2))?
        .add(Conv2dConfig::new(64, 5).with_padding(Padding::Same).with_activation(Activation::Relu))?
        .add(MaxPooling2dConfig::new(2))?
        .add(DropoutConfig::new(0.25))?
        .add(FlattenConfig::new())?
        .add(DenseConfig::new(128).with_activation(Activation::Relu))?
        .add(DropoutConfig::new(0.5))?
        .add(DenseConfig::new(10).with_activation(Activation::Softmax))?;
    Ok(model)
}

/// A small CNN for spoken digits over an `[n_mfcc, frames, 1]` MFCC image -> 10 probabilities:
/// three Conv2D(3x3, same, no bias) / BatchNormalization / ReLU blocks (32, 64, 128 filters, the
/// first two followed by MaxPooling2D(2)), then GlobalAveragePooling2D / Dropout(0.3) /
/// Dense(10, softmax). `seed` fixes the initial weights and the dropout masks.
///
/// Batch norm is what lets training leave chance within a few epochs: without it the default
/// recipe sat at loss ln 10 for ~110 of 250 epochs on some seeds. Its moving statistics use
/// momentum 0.9 (Keras: 0.99), since 200 clips make only ~7 steps an epoch and the statistics
/// that validation uses must have caught up after a few epochs.
pub fn sound_digit_cnn(n_mfcc: usize, frames: usize, seed: u64) -> Result<Sequential> {
    use crate::nn::{ActivationConfig, BatchNormalizationConfig, GlobalAveragePooling2dConfig};
    let mut model = Sequential::new([n_mfcc, frames, 1]).with_seed(seed).with_name("sound_digit_cnn");
    for (i, filters) in [32, 64, 128].into_iter().enumerate() {
        model
            .add(Conv2dConfig::new(filters, 3).with_padding(Padding::Same).with_use_bias(false))?
            .add(BatchNormalizationConfig::new().with_momentum(0.9))?
            .add(ActivationConfig::new(Activation::Relu))?;
        if i < 2 {
            model.add(MaxPooling2dConfig::new(2))?;
        }
    }
    model
        .add(GlobalAveragePooling2dConfig::new())?
        .add(DropoutConfig::new(0.3))?
        .add(DenseConfig::new(10).with_activation(Activation::Softmax))?;
    Ok(model)
}

#[cfg(test)]
mod tests {
    #[test]
    fn mnist_cnn_has_kerass_parameter_count() {
        let model = super::mnist_cnn(0).unwrap();
        assert_eq!(model.count_params(), 454_922);
        assert_eq!(model.output_shape(), [10]);
    }

    #[test]
    fn sound_digit_cnn_shapes() {
        let model = super::sound_digit_cnn(40, 44, 0).unwrap();
        assert_eq!(model.output_shape(), [10]);
        // convs without bias 288 + 18432 + 73728, batch norms 4 * (32 + 64 + 128), dense 1290
        assert_eq!(model.count_params(), 288 + 18_432 + 73_728 + 896 + 1290);
    }
}
