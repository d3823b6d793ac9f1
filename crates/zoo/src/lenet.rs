//! LeNet-5 (LeCun et al. 1998, "Gradient-Based Learning Applied to Document
//! Recognition"), the classic network: 5x5 convs C1 (6) and C3 (16, fully connected),
//! average-pool subsampling, tanh, C5 (120), F6 (84) and the output layer; 61,706
//! parameters for 32x32 input. Keys follow the usual PyTorch port (`conv1`, `conv2`,
//! `fc1`, `fc2`, `fc3`; `fc1` reads the NCHW-flattened 16x5x5 map, so it runs as C5, a
//! 5x5 conv). Inputs smaller than 32x32 (MNIST's 28x28) are zero-padded to 32x32, as
//! LeCun padded MNIST.

use crate::Model;
use crate::error::{Result, ZooError};
use crate::layers::{Conv2d, ConvOpts, Linear, avg_pool};
use crate::model::{Architecture, ZooOpts, build};
use crate::pretrained::{Interpolation, PretrainedCfg};
use crate::registry::{ModelEntry, register};
use convnet_nn::context::Cx;
use convnet_nn::store::Vb;
use convnet_tensor::{Padding2d, Tensor};

/// LeNet-5.
#[derive(Debug)]
pub struct LeNet5 {
    conv1: Conv2d,
    conv2: Conv2d,
    fc1: Conv2d,
    fc2: Linear,
    fc3: Option<Linear>,
    num_classes: usize,
}

impl LeNet5 {
    /// Builds the network under `vb`.
    pub fn new(vb: &Vb, num_classes: usize, in_chans: usize) -> Result<Self> {
        let o = ConvOpts::default().with_bias(true).with_padding(Padding2d::Valid);
        Ok(LeNet5 {
            conv1: Conv2d::square(&vb.pp("conv1"), in_chans, 6, 5, o),
            conv2: Conv2d::square(&vb.pp("conv2"), 6, 16, 5, o),
            fc1: Conv2d::flat_linear(&vb.pp("fc1"), 16, 5, 5, 120, true),
            fc2: Linear::new(&vb.pp("fc2"), 120, 84, true),
            fc3: (num_classes > 0).then(|| Linear::new(&vb.pp("fc3"), 84, num_classes, true)),
            num_classes,
        })
    }
}

impl Architecture for LeNet5 {
    fn forward_features(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let (h, w) = (x.dims()[1], x.dims()[2]);
        if h > 32 || w > 32 {
            return Err(ZooError::arg(
                "input",
                format!("LeNet-5 takes 32x32 (or smaller, padded) images, got {h}x{w}"),
            ));
        }
        // pad to 32x32 inside the first conv
        let (pt, pl) = ((32 - h) / 2, (32 - w) / 2);
        let mut args = self.conv1.args;
        args.padding = Padding2d::Explicit { top: pt, bottom: 32 - h - pt, left: pl, right: 32 - w - pl };
        let w1 = cx.p(self.conv1.weight);
        let y = x.conv2d(w1, self.conv1.bias.map(|b| cx.p(b)), &args)?.tanh();
        cx.add_macs((y.numel() * 25 * x.dims()[3]) as u64);
        cx.record("conv1", "Conv2d+Tanh", &y);
        let y = avg_pool(&y, 2, 2, 0, false, true)?;
        let y = self.conv2.forward(cx, &y)?.tanh();
        cx.record("conv2", "Conv2d+Tanh", &y);
        avg_pool(&y, 2, 2, 0, false, true)
    }
    fn forward_head(&self, cx: &Cx, x: &Tensor, pre_logits: bool) -> Result<Tensor> {
        let n = x.dims()[0];
        let y = self.fc1.forward(cx, x)?.reshape(vec![n, 120])?.tanh();
        cx.record("fc1", "Linear+Tanh", &y);
        let y = self.fc2.forward(cx, &y)?.tanh();
        cx.record("fc2", "Linear+Tanh", &y);
        match (&self.fc3, pre_logits) {
            (Some(fc), false) => {
                let y = fc.forward(cx, &y)?;
                cx.record("fc3", "Linear", &y);
                Ok(y)
            }
            _ => Ok(y),
        }
    }
    fn num_features(&self) -> usize {
        84
    }
    fn num_classes(&self) -> usize {
        self.num_classes
    }
    fn reset_classifier(&mut self, vb: &Vb, num_classes: usize) {
        self.fc3 = (num_classes > 0).then(|| Linear::new(&vb.pp("fc3"), 84, num_classes, true));
        self.num_classes = num_classes;
    }
}

/// No pretrained weights: 32x32 grey input scaled to [0, 1], ten classes.
pub(crate) static LENET5: &[PretrainedCfg] = &[PretrainedCfg {
    tag: "untrained",
    input_size: [1, 32, 32],
    test_input_size: None,
    pool_size: None,
    crop_pct: 1.0,
    interpolation: Interpolation::Bilinear,
    mean: [0.0; 3],
    std: [1.0; 3],
    num_classes: 10,
    first_conv: "conv1",
    classifier: "fc3",
}];

/// LeNet-5 (61,706 parameters with 10 classes).
pub fn lenet5(opts: ZooOpts) -> Result<Model> {
    build("lenet5", opts, |vb, a| Ok(Box::new(LeNet5::new(vb, a.num_classes, a.in_chans)?)))
}

// ---------------------------------------------------------------- registry

/// The registered variants of this family, each one line (`name`, pretrained configs).
pub(crate) static MODELS: &[ModelEntry] = &[register!(lenet5, LENET5)];
