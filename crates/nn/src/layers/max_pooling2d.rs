//! `MaxPooling2D` (Keras 3 `keras.layers.MaxPooling2D`): the maximum over windows of NHWC images.
//! Keras' arguments and defaults: `pool_size=(2, 2)`, `strides=None` (= `pool_size`),
//! `padding="valid"`.
//! With `same` padding the padded pixels never win (they are -inf, as in TensorFlow).

use convnet_tensor::rng::Rng;
use convnet_tensor::{Pool2dArgs, Tensor};
use serde::{Deserialize, Serialize};

use super::pooling2d::pooling2d_layer;
use super::{Meta, pool_args, pool_output_shape, who};
use crate::layer::{IntoPair, Layer, LayerSpec};
use crate::{Cx, Padding, ParamId, Result, Vb};

pooling2d_layer!(MaxPooling2dConfig, MaxPooling2d, "MaxPooling2D", "max_pooling2d", max_pool2d);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Mode;
    use crate::NnError;
    use crate::layer::build_alone;

    #[test]
    fn shapes_follow_keras() {
        assert_eq!(MaxPooling2dConfig::new(2).output_shape(&[28, 28, 32]).unwrap(), vec![14, 14, 32]);
        assert_eq!(MaxPooling2dConfig::new(2).output_shape(&[7, 7, 3]).unwrap(), vec![3, 3, 3]);
        let same = MaxPooling2dConfig::new(2).with_padding(Padding::Same);
        assert_eq!(same.output_shape(&[7, 7, 3]).unwrap(), vec![4, 4, 3]);
        let strided = MaxPooling2dConfig::new(3).with_strides(1);
        assert_eq!(strided.output_shape(&[5, 6, 2]).unwrap(), vec![3, 4, 2]);
        let too_big = MaxPooling2dConfig::new(4).with_name("p");
        assert!(matches!(too_big.output_shape(&[3, 3, 1]), Err(NnError::InvalidLayer { .. })));
        assert!(matches!(MaxPooling2dConfig::new(2).output_shape(&[4, 4]), Err(NnError::InvalidLayer { .. })));
    }

    #[test]
    fn pools_values() {
        let (store, layer) = build_alone(&MaxPooling2dConfig::new(2), "max_pooling2d", &[2, 2, 1]);
        let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 6.0], [1, 2, 2, 1]).unwrap();
        let ctx = Cx::new(&store, Mode::Eval, 0);
        let y = layer.forward(&x, &ctx).unwrap();
        assert_eq!(y.dims(), [1, 1, 1, 1]);
        assert_eq!(y.data()[0], 6.0);
    }
}
