//! VGG-11/13/16/19 with and without batch norm (Simonyan & Zisserman 2014, "Very Deep
//! Convolutional Networks for Large-Scale Image Recognition"), as timm's `vgg.py`: the
//! torchvision `features` stack, then `pre_logits` as a conv MLP (`fc1` a 7x7 conv,
//! `fc2` a 1x1 conv, ReLU and dropout) so any input size works, then `head.fc`.

use crate::Model;
use crate::checkpoint::StateDict;
use crate::error::Result;
use crate::layers::{ClassifierHead, Conv2d, ConvBnAct, ConvOpts, adaptive_avg_pool, dropout, max_pool};
use crate::model::{Architecture, ModelArgs, ZooOpts, build};
use crate::pretrained::PretrainedCfg;
use crate::registry::{ModelEntry, register};
use convnet_nn::context::Cx;
use convnet_nn::store::Vb;
use convnet_tensor::{Activation, Tensor};

/// One entry of a VGG feature config: a 3x3 conv of this width, or a 2x2 max pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VggLayer {
    /// 3x3 conv (padding 1) with ReLU, optionally batch-normed.
    Conv(usize),
    /// 2x2 max pool, stride 2.
    Pool,
}

use VggLayer::{Conv as C, Pool as M};

/// VGG-11 (config "A").
pub const VGG11_CFG: &[VggLayer] = &[C(64), M, C(128), M, C(256), C(256), M, C(512), C(512), M, C(512), C(512), M];
/// VGG-13 (config "B").
pub const VGG13_CFG: &[VggLayer] =
    &[C(64), C(64), M, C(128), C(128), M, C(256), C(256), M, C(512), C(512), M, C(512), C(512), M];
/// VGG-16 (config "D").
pub const VGG16_CFG: &[VggLayer] = &[
    C(64),
    C(64),
    M,
    C(128),
    C(128),
    M,
    C(256),
    C(256),
    C(256),
    M,
    C(512),
    C(512),
    C(512),
    M,
    C(512),
    C(512),
    C(512),
    M,
];
/// VGG-19 (config "E").
pub const VGG19_CFG: &[VggLayer] = &[
    C(64),
    C(64),
    M,
    C(128),
    C(128),
    M,
    C(256),
    C(256),
    C(256),
    C(256),
    M,
    C(512),
    C(512),
    C(512),
    C(512),
    M,
    C(512),
    C(512),
    C(512),
    C(512),
    M,
];

#[derive(Debug)]
enum Feature {
    Conv(String, Conv2d),
    ConvBn(String, ConvBnAct),
    Pool,
}

/// What distinguishes one VGG from another.
#[derive(Clone, Debug, PartialEq)]
pub struct VggConfig {
    /// The feature stack.
    pub layers: &'static [VggLayer],
    /// Batch norm after each conv.
    pub batch_norm: bool,
    /// Classes (0: no classifier).
    pub num_classes: usize,
    /// Input channels.
    pub in_chans: usize,
    /// Dropout in the conv MLP and before the classifier.
    pub drop_rate: f32,
}

impl From<&ModelArgs> for VggConfig {
    fn from(a: &ModelArgs) -> Self {
        VggConfig {
            layers: VGG16_CFG,
            batch_norm: false,
            num_classes: a.num_classes,
            in_chans: a.in_chans,
            drop_rate: a.drop_rate,
        }
    }
}

/// VGG: `features.{i}`, `pre_logits.fc1` (7x7 conv), `pre_logits.fc2` (1x1 conv), `head.fc`.
#[derive(Debug)]
pub struct Vgg {
    features: Vec<Feature>,
    fc1: Conv2d,
    fc2: Conv2d,
    drop_rate: f32,
    head: ClassifierHead,
}

impl Vgg {
    /// Builds the network under `vb`.
    pub fn new(vb: &Vb, cfg: VggConfig) -> Result<Self> {
        let mut features = Vec::new();
        let mut idx = 0;
        let mut c = cfg.in_chans;
        let f = vb.pp("features");
        for l in cfg.layers {
            match *l {
                VggLayer::Conv(out) => {
                    let o = ConvOpts::default().with_bias(true);
                    if cfg.batch_norm {
                        let cba = ConvBnAct::new(&f.pp(idx), &f.pp(idx + 1), c, out, (3, 3), o, 1e-5, Activation::Relu);
                        features.push(Feature::ConvBn(f.pp(idx).prefix().to_string(), cba));
                        idx += 3;
                    } else {
                        features.push(Feature::Conv(
                            f.pp(idx).prefix().to_string(),
                            Conv2d::square(&f.pp(idx), c, out, 3, o),
                        ));
                        idx += 2;
                    }
                    c = out;
                }
                VggLayer::Pool => {
                    features.push(Feature::Pool);
                    idx += 1;
                }
            }
        }
        let p = vb.pp("pre_logits");
        let fc1 = Conv2d::square(
            &p.pp("fc1"),
            c,
            4096,
            7,
            ConvOpts::default().with_bias(true).with_padding(convnet_tensor::Padding2d::Valid),
        );
        let fc2 = Conv2d::square(&p.pp("fc2"), 4096, 4096, 1, ConvOpts::default().with_bias(true));
        let head = ClassifierHead::new(&vb.pp("head").pp("fc"), 4096, cfg.num_classes, cfg.drop_rate);
        Ok(Vgg { features, fc1, fc2, drop_rate: cfg.drop_rate, head })
    }
}

impl Architecture for Vgg {
    fn forward_features(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for f in &self.features {
            x = match f {
                Feature::Conv(p, c) => {
                    let y = c.forward(cx, &x)?.relu();
                    cx.record(p, "Conv2d+ReLU", &y);
                    y
                }
                Feature::ConvBn(p, c) => {
                    let y = c.forward(cx, &x)?;
                    cx.record(p, "Conv2d+BN+ReLU", &y);
                    y
                }
                Feature::Pool => max_pool(&x, 2, 2, 0, false)?,
            };
        }
        Ok(x)
    }
    fn forward_head(&self, cx: &Cx, x: &Tensor, pre_logits: bool) -> Result<Tensor> {
        // ConvMlp: keep the map at least 7x7
        let (h, w) = (x.dims()[1], x.dims()[2]);
        let x = if h < 7 || w < 7 { adaptive_avg_pool(x, h.max(7), w.max(7))? } else { x.clone() };
        let y = self.fc1.forward(cx, &x)?.relu();
        let y = dropout(cx, &y, self.drop_rate)?;
        let y = self.fc2.forward(cx, &y)?.relu();
        cx.record("pre_logits", "ConvMlp", &y);
        let y = self.head.forward(cx, &y, pre_logits)?;
        cx.record("head.fc", "Linear", &y);
        Ok(y)
    }
    fn num_features(&self) -> usize {
        self.head.num_features
    }
    fn num_classes(&self) -> usize {
        self.head.num_classes
    }
    fn reset_classifier(&mut self, vb: &Vb, num_classes: usize) {
        self.head = ClassifierHead::new(&vb.pp("head").pp("fc"), 4096, num_classes, self.head.drop_rate);
    }
    /// torchvision's names (timm's `_filter_fn`): `classifier.0` (a `[4096, 25088]` linear)
    /// becomes the 7x7 conv `pre_logits.fc1`, `classifier.3` the 1x1 conv `pre_logits.fc2`,
    /// `classifier.6` the head.
    fn remap_state_dict(&self, sd: &mut StateDict) {
        let keys: Vec<String> = sd.keys().filter(|k| k.starts_with("classifier.")).cloned().collect();
        for k in keys {
            let Some((shape, data)) = sd.remove(&k) else { continue };
            let (new, shape) = match (k.as_str(), &shape[..]) {
                (k, &[o, i]) if k.starts_with("classifier.0.") && i % 49 == 0 => {
                    (k.replace("classifier.0.", "pre_logits.fc1."), vec![o, i / 49, 7, 7])
                }
                (k, &[o, i]) if k.starts_with("classifier.3.") => {
                    (k.replace("classifier.3.", "pre_logits.fc2."), vec![o, i, 1, 1])
                }
                (k, _) if k.starts_with("classifier.0.") => (k.replace("classifier.0.", "pre_logits.fc1."), shape),
                (k, _) if k.starts_with("classifier.3.") => (k.replace("classifier.3.", "pre_logits.fc2."), shape),
                (k, _) if k.starts_with("classifier.6.") => (k.replace("classifier.6.", "head.fc."), shape),
                _ => (k.clone(), shape),
            };
            sd.insert(new, (shape, data));
        }
    }
}

// ---------------------------------------------------------------- pretrained configs

const fn tv() -> PretrainedCfg {
    PretrainedCfg::imagenet("tv_in1k", "features.0", "head.fc")
}
pub(crate) static VGG11: &[PretrainedCfg] = &[tv()];
pub(crate) static VGG11_BN: &[PretrainedCfg] = &[tv()];
pub(crate) static VGG13: &[PretrainedCfg] = &[tv()];
pub(crate) static VGG13_BN: &[PretrainedCfg] = &[tv()];
pub(crate) static VGG16: &[PretrainedCfg] = &[tv()];
pub(crate) static VGG16_BN: &[PretrainedCfg] = &[tv()];
pub(crate) static VGG19: &[PretrainedCfg] = &[tv()];
pub(crate) static VGG19_BN: &[PretrainedCfg] = &[tv()];

// ---------------------------------------------------------------- entry points

fn vgg(arch: &'static str, opts: ZooOpts, layers: &'static [VggLayer], batch_norm: bool) -> Result<Model> {
    build(arch, opts, |vb, a| Ok(Box::new(Vgg::new(vb, VggConfig { layers, batch_norm, ..a.into() })?)))
}

/// VGG-11.
pub fn vgg11(opts: ZooOpts) -> Result<Model> {
    vgg("vgg11", opts, VGG11_CFG, false)
}
/// VGG-11 with batch norm.
pub fn vgg11_bn(opts: ZooOpts) -> Result<Model> {
    vgg("vgg11_bn", opts, VGG11_CFG, true)
}
/// VGG-13.
pub fn vgg13(opts: ZooOpts) -> Result<Model> {
    vgg("vgg13", opts, VGG13_CFG, false)
}
/// VGG-13 with batch norm.
pub fn vgg13_bn(opts: ZooOpts) -> Result<Model> {
    vgg("vgg13_bn", opts, VGG13_CFG, true)
}
/// VGG-16 (138M params).
pub fn vgg16(opts: ZooOpts) -> Result<Model> {
    vgg("vgg16", opts, VGG16_CFG, false)
}
/// VGG-16 with batch norm.
pub fn vgg16_bn(opts: ZooOpts) -> Result<Model> {
    vgg("vgg16_bn", opts, VGG16_CFG, true)
}
/// VGG-19.
pub fn vgg19(opts: ZooOpts) -> Result<Model> {
    vgg("vgg19", opts, VGG19_CFG, false)
}
/// VGG-19 with batch norm.
pub fn vgg19_bn(opts: ZooOpts) -> Result<Model> {
    vgg("vgg19_bn", opts, VGG19_CFG, true)
}

// ---------------------------------------------------------------- registry

/// The registered variants of this family, each one line (`name`, pretrained configs).
pub(crate) static MODELS: &[ModelEntry] = &[
    register!(vgg11, VGG11),
    register!(vgg11_bn, VGG11_BN),
    register!(vgg13, VGG13),
    register!(vgg13_bn, VGG13_BN),
    register!(vgg16, VGG16),
    register!(vgg16_bn, VGG16_BN),
    register!(vgg19, VGG19),
    register!(vgg19_bn, VGG19_BN),
];
