//! The architectures of TensorFlow's `speech_commands/models.py`, by their names there, as
//! Keras-style [`Sequential`] models over the `[frames, coefficients, 1]` fingerprint. Shapes,
//! padding and parameter counts are TensorFlow's (`conv`: 926,860 for 12 labels); the final
//! layer outputs softmax probabilities (TensorFlow outputs logits and applies the softmax in
//! its loss). Kernels use Keras' glorot-uniform initialisation rather than TensorFlow's
//! truncated normal with standard deviation 0.01, which trains slowly with Adam.

use convnet_nn::{
    Activation, Conv2dConfig, DenseConfig, DropoutConfig, FlattenConfig, MaxPooling2dConfig, Padding, Sequential,
};
use serde::{Deserialize, Serialize};

use crate::error::{Result, SpeechError};

/// A model of the example, by its `--model_architecture` name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    /// "cnn-trad-fpool3" (Sainath & Parada 2015): conv 20x8x64, max-pool 2x2, conv 10x4x64, dense.
    Conv,
    /// "cnn-one-fstride4"-like: one conv spanning all 98 frames (98x8x186, valid), then three
    /// dense layers (128, 128, labels) without activations, as in TensorFlow.
    LowLatencyConv,
    /// A single dense layer over the fingerprint.
    SingleFc,
    /// conv 10x8x8 with stride 2, then dense: small enough for microcontrollers.
    TinyConv,
}

impl Architecture {
    /// Every architecture.
    pub const ALL: [Architecture; 4] =
        [Architecture::Conv, Architecture::LowLatencyConv, Architecture::SingleFc, Architecture::TinyConv];

    /// TensorFlow's name.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Conv => "conv",
            Architecture::LowLatencyConv => "low_latency_conv",
            Architecture::SingleFc => "single_fc",
            Architecture::TinyConv => "tiny_conv",
        }
    }

    /// The architecture called `name`.
    pub fn from_name(name: &str) -> Result<Architecture> {
        Architecture::ALL.into_iter().find(|a| a.name() == name).ok_or_else(|| {
            let names: Vec<&str> = Architecture::ALL.iter().map(|a| a.name()).collect();
            SpeechError::options(format!("unknown model architecture `{name}`; choose one of {}", names.join(", ")))
        })
    }
}

/// Builds `arch` for `input_shape = [frames, coefficients, 1]` and `label_count` outputs, with
/// dropout `dropout_rate` (TensorFlow's default 0.5) and weights from `seed`.
pub fn create_model(
    arch: Architecture,
    input_shape: [usize; 3],
    label_count: usize,
    dropout_rate: f32,
    seed: u64,
) -> Result<Sequential> {
    if label_count < 2 {
        return Err(SpeechError::options(format!("a model needs at least 2 labels, got {label_count}")));
    }
    let [frames, _, _] = input_shape;
    let mut m = Sequential::new(input_shape.to_vec()).with_seed(seed).with_name(arch.name());
    let relu = Activation::Relu;
    let out = DenseConfig::new(label_count).with_activation(Activation::Softmax);
    match arch {
        Architecture::Conv => {
            m.add(Conv2dConfig::new(64, (20, 8)).with_padding(Padding::Same).with_activation(relu))?
                .add(DropoutConfig::new(dropout_rate))?
                .add(MaxPooling2dConfig::new(2).with_padding(Padding::Same))?
                .add(Conv2dConfig::new(64, (10, 4)).with_padding(Padding::Same).with_activation(relu))?
                .add(DropoutConfig::new(dropout_rate))?
                .add(FlattenConfig::new())?
                .add(out)?;
        }
        Architecture::LowLatencyConv => {
            m.add(Conv2dConfig::new(186, (frames, 8)).with_activation(relu))?
                .add(DropoutConfig::new(dropout_rate))?
                .add(FlattenConfig::new())?
                .add(DenseConfig::new(128))?
                .add(DropoutConfig::new(dropout_rate))?
                .add(DenseConfig::new(128))?
                .add(DropoutConfig::new(dropout_rate))?
                .add(out)?;
        }
        Architecture::SingleFc => {
            m.add(FlattenConfig::new())?.add(out)?;
        }
        Architecture::TinyConv => {
            m.add(Conv2dConfig::new(8, (10, 8)).with_strides(2).with_padding(Padding::Same).with_activation(relu))?
                .add(DropoutConfig::new(dropout_rate))?
                .add(FlattenConfig::new())?
                .add(out)?;
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parameter counts of TensorFlow's models.py for 12 labels and a 98x40 fingerprint.
    #[test]
    fn parameter_counts_equal_tensorflows() {
        let expect = [
            (Architecture::Conv, 926_860, vec![12]),
            // 98*8*186+186, 33*186*128+128, 128*128+128, 128*12+12
            (Architecture::LowLatencyConv, 146_010 + 785_792 + 16_512 + 1_548, vec![12]),
            (Architecture::SingleFc, 98 * 40 * 12 + 12, vec![12]),
            // 10*8*8+8, 49*20*8*12+12
            (Architecture::TinyConv, 648 + 94_092, vec![12]),
        ];
        for (arch, params, shape) in expect {
            let m = create_model(arch, [98, 40, 1], 12, 0.5, 0).unwrap();
            assert_eq!(m.count_params(), params, "{}", arch.name());
            assert_eq!(m.output_shape(), shape.as_slice());
            assert_eq!(Architecture::from_name(arch.name()).unwrap(), arch);
        }
        assert!(Architecture::from_name("lstm").unwrap_err().to_string().contains("tiny_conv"));
    }
}
