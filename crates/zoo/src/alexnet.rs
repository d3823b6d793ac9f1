//! AlexNet (Krizhevsky et al. 2012, "ImageNet Classification with Deep Convolutional
//! Neural Networks"), as torchvision's `alexnet` (timm has none; the one-GPU variant of
//! "One weird trick", without local response norm): five convs, three max pools,
//! adaptive average pool to 6x6, three fully connected layers (61,100,840 parameters).
//! `classifier.1` consumes the NCHW-flattened 256x6x6 map and runs here as a 6x6 conv
//! over the NHWC map, its weight reordered at the checkpoint boundary.

use crate::Model;
use crate::error::Result;
use crate::layers::{Conv2d, ConvOpts, Linear, adaptive_avg_pool, dropout, max_pool};
use crate::model::{Architecture, ZooOpts, build};
use crate::pretrained::PretrainedCfg;
use crate::registry::{ModelEntry, register};
use convnet_nn::context::Cx;
use convnet_nn::store::Vb;
use convnet_tensor::{Activation, Padding2d, Tensor};

/// AlexNet: `features.{0,3,6,8,10}`, `classifier.{1,4,6}`.
#[derive(Debug)]
pub struct AlexNet {
    convs: Vec<(String, Conv2d, bool)>,
    fc1: Conv2d,
    fc2: Linear,
    fc3: Option<Linear>,
    drop_rate: f32,
    num_classes: usize,
}

impl AlexNet {
    /// Builds the network under `vb` (`drop_rate`: torchvision's 0.5 dropouts; 0 by default here).
    pub fn new(vb: &Vb, num_classes: usize, in_chans: usize, drop_rate: f32) -> Result<Self> {
        let f = vb.pp("features");
        let o = |s: usize, p: usize| ConvOpts::stride(s).with_bias(true).with_padding(Padding2d::symmetric(p, p));
        let spec = [
            (0, in_chans, 64, 11, 4, 2, true),
            (3, 64, 192, 5, 1, 2, true),
            (6, 192, 384, 3, 1, 1, false),
            (8, 384, 256, 3, 1, 1, false),
            (10, 256, 256, 3, 1, 1, true),
        ];
        let convs = spec
            .iter()
            .map(|&(i, cin, cout, k, s, p, pool)| {
                (f.pp(i).prefix().to_string(), Conv2d::square(&f.pp(i), cin, cout, k, o(s, p)), pool)
            })
            .collect();
        let c = vb.pp("classifier");
        Ok(AlexNet {
            convs,
            fc1: Conv2d::flat_linear(&c.pp(1), 256, 6, 6, 4096, true),
            fc2: Linear::new(&c.pp(4), 4096, 4096, true),
            fc3: (num_classes > 0).then(|| Linear::new(&c.pp(6), 4096, num_classes, true)),
            drop_rate,
            num_classes,
        })
    }
}

impl Architecture for AlexNet {
    fn forward_features(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for (path, conv, pool) in &self.convs {
            x = conv.forward(cx, &x)?.relu();
            if *pool {
                x = max_pool(&x, 3, 2, 0, false)?;
            }
            cx.record(path, if *pool { "Conv2d+ReLU+MaxPool" } else { "Conv2d+ReLU" }, &x);
        }
        Ok(x)
    }
    fn forward_head(&self, cx: &Cx, x: &Tensor, pre_logits: bool) -> Result<Tensor> {
        let x = adaptive_avg_pool(x, 6, 6)?;
        let x = dropout(cx, &x, self.drop_rate)?;
        let n = x.dims()[0];
        let y = self.fc1.forward(cx, &x)?.reshape(vec![n, 4096])?.activation(Activation::Relu);
        let y = dropout(cx, &y, self.drop_rate)?;
        let y = self.fc2.forward(cx, &y)?.relu();
        cx.record("classifier.4", "Linear+ReLU", &y);
        match (&self.fc3, pre_logits) {
            (Some(fc), false) => {
                let y = fc.forward(cx, &y)?;
                cx.record("classifier.6", "Linear", &y);
                Ok(y)
            }
            _ => Ok(y),
        }
    }
    fn num_features(&self) -> usize {
        4096
    }
    fn num_classes(&self) -> usize {
        self.num_classes
    }
    fn reset_classifier(&mut self, vb: &Vb, num_classes: usize) {
        self.fc3 = (num_classes > 0).then(|| Linear::new(&vb.pp("classifier").pp(6), 4096, num_classes, true));
        self.num_classes = num_classes;
    }
}

/// torchvision's ImageNet weights: resize 256, crop 224, bilinear.
pub(crate) static ALEXNET: &[PretrainedCfg] =
    &[PretrainedCfg::imagenet("tv_in1k", "features.0", "classifier.6").pool(6, 6)];

/// AlexNet, torchvision's layout.
pub fn alexnet(opts: ZooOpts) -> Result<Model> {
    build("alexnet", opts, |vb, a| Ok(Box::new(AlexNet::new(vb, a.num_classes, a.in_chans, a.drop_rate)?)))
}

// ---------------------------------------------------------------- registry

/// The registered variants of this family, each one line (`name`, pretrained configs).
pub(crate) static MODELS: &[ModelEntry] = &[register!(alexnet, ALEXNET)];
