//! DenseNet-121/161/169/201 (Huang et al. 2016, "Densely Connected Convolutional
//! Networks"), as timm's `densenet.py`: pre-activation dense layers (BN-ReLU-1x1 conv to
//! `bn_size * growth`, BN-ReLU-3x3 conv to `growth`) whose outputs are concatenated onto
//! their block's input, transitions that halve channels and resolution, a final BN-ReLU.

use crate::Model;
use crate::checkpoint::StateDict;
use crate::error::Result;
use crate::layers::{BatchNorm2d, ClassifierHead, Conv2d, ConvBnAct, ConvOpts, avg_pool, dropout, max_pool};
use crate::model::{Architecture, ModelArgs, ZooOpts, build};
use crate::pretrained::PretrainedCfg;
use crate::registry::{ModelEntry, register};
use convnet_nn::context::Cx;
use convnet_nn::store::Vb;
use convnet_tensor::{Activation, Tensor};

const EPS: f32 = 1e-5;

#[derive(Debug)]
struct DenseLayer {
    norm1: BatchNorm2d,
    conv1: Conv2d,
    norm2: BatchNorm2d,
    conv2: Conv2d,
    drop_rate: f32,
}

impl DenseLayer {
    fn new(vb: &Vb, cin: usize, growth: usize, bn_size: usize, drop_rate: f32) -> Self {
        let mid = bn_size * growth;
        DenseLayer {
            norm1: BatchNorm2d::new(&vb.pp("norm1"), cin, EPS, Activation::Relu),
            conv1: Conv2d::square(&vb.pp("conv1"), cin, mid, 1, ConvOpts::default()),
            norm2: BatchNorm2d::new(&vb.pp("norm2"), mid, EPS, Activation::Relu),
            conv2: Conv2d::square(&vb.pp("conv2"), mid, growth, 3, ConvOpts::default()),
            drop_rate,
        }
    }

    /// The new `growth` channels computed from `x` (the concatenation so far).
    fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let y = self.conv1.forward(cx, &self.norm1.forward(cx, x)?)?;
        let y = self.conv2.forward(cx, &self.norm2.forward(cx, &y)?)?;
        dropout(cx, &y, self.drop_rate)
    }
}

#[derive(Debug)]
struct Transition {
    norm: BatchNorm2d,
    conv: Conv2d,
}

/// What distinguishes one DenseNet from another.
#[derive(Clone, Debug, PartialEq)]
pub struct DenseNetConfig {
    /// New channels per dense layer.
    pub growth_rate: usize,
    /// Dense layers per block.
    pub block_config: Vec<usize>,
    /// Bottleneck width multiplier.
    pub bn_size: usize,
    /// Classes (0: no classifier).
    pub num_classes: usize,
    /// Input channels.
    pub in_chans: usize,
    /// Dropout before the classifier.
    pub drop_rate: f32,
    /// Dropout after each dense layer (timm's `proj_drop_rate`).
    pub proj_drop_rate: f32,
}

impl From<&ModelArgs> for DenseNetConfig {
    fn from(a: &ModelArgs) -> Self {
        DenseNetConfig {
            growth_rate: 32,
            block_config: vec![6, 12, 24, 16],
            bn_size: 4,
            num_classes: a.num_classes,
            in_chans: a.in_chans,
            drop_rate: a.drop_rate,
            proj_drop_rate: 0.0,
        }
    }
}

/// DenseNet: `features.{conv0,norm0}`, `features.denseblock{b}.denselayer{l}.*`,
/// `features.transition{t}.{norm,conv}`, `features.norm5`, `classifier`.
#[derive(Debug)]
pub struct DenseNet {
    stem: ConvBnAct,
    blocks: Vec<Vec<DenseLayer>>,
    transitions: Vec<Transition>,
    norm5: BatchNorm2d,
    head: ClassifierHead,
}

impl DenseNet {
    /// Builds the network under `vb`.
    pub fn new(vb: &Vb, cfg: DenseNetConfig) -> Result<Self> {
        let f = vb.pp("features");
        let init = cfg.growth_rate * 2;
        let stem = ConvBnAct::new(
            &f.pp("conv0"),
            &f.pp("norm0"),
            cfg.in_chans,
            init,
            (7, 7),
            ConvOpts::stride(2),
            EPS,
            Activation::Relu,
        );
        let mut c = init;
        let mut blocks = Vec::new();
        let mut transitions = Vec::new();
        for (i, &n) in cfg.block_config.iter().enumerate() {
            let b = f.pp(format!("denseblock{}", i + 1));
            let layers = (0..n)
                .map(|l| {
                    DenseLayer::new(
                        &b.pp(format!("denselayer{}", l + 1)),
                        c + l * cfg.growth_rate,
                        cfg.growth_rate,
                        cfg.bn_size,
                        cfg.proj_drop_rate,
                    )
                })
                .collect();
            blocks.push(layers);
            c += n * cfg.growth_rate;
            if i + 1 != cfg.block_config.len() {
                let t = f.pp(format!("transition{}", i + 1));
                transitions.push(Transition {
                    norm: BatchNorm2d::new(&t.pp("norm"), c, EPS, Activation::Relu),
                    conv: Conv2d::square(&t.pp("conv"), c, c / 2, 1, ConvOpts::default()),
                });
                c /= 2;
            }
        }
        let norm5 = BatchNorm2d::new(&f.pp("norm5"), c, EPS, Activation::Relu);
        let head = ClassifierHead::new(&vb.pp("classifier"), c, cfg.num_classes, cfg.drop_rate);
        Ok(DenseNet { stem, blocks, transitions, norm5, head })
    }
}

impl Architecture for DenseNet {
    fn forward_features(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let x = self.stem.forward(cx, x)?;
        let mut x = max_pool(&x, 3, 2, 1, false)?;
        cx.record("features.conv0", "Conv2d+BN+ReLU+MaxPool", &x);
        for (i, block) in self.blocks.iter().enumerate() {
            let mut feats = vec![x.clone()];
            let mut cat = x.clone();
            for l in block {
                feats.push(l.forward(cx, &cat)?);
                let refs: Vec<&Tensor> = feats.iter().collect();
                cat = Tensor::concat(&refs, 3)?;
            }
            x = cat;
            cx.record(&format!("features.denseblock{}", i + 1), "DenseBlock", &x);
            if let Some(t) = self.transitions.get(i) {
                let y = t.conv.forward(cx, &t.norm.forward(cx, &x)?)?;
                x = avg_pool(&y, 2, 2, 0, false, true)?;
                cx.record(&format!("features.transition{}", i + 1), "Transition", &x);
            }
        }
        let x = self.norm5.forward(cx, &x)?;
        cx.record("features.norm5", "BatchNorm2d+ReLU", &x);
        Ok(x)
    }
    fn forward_head(&self, cx: &Cx, x: &Tensor, pre_logits: bool) -> Result<Tensor> {
        let y = self.head.forward(cx, x, pre_logits)?;
        cx.record("classifier", "Linear", &y);
        Ok(y)
    }
    fn num_features(&self) -> usize {
        self.head.num_features
    }
    fn num_classes(&self) -> usize {
        self.head.num_classes
    }
    fn reset_classifier(&mut self, vb: &Vb, num_classes: usize) {
        self.head = ClassifierHead::new(&vb.pp("classifier"), self.head.num_features, num_classes, self.head.drop_rate);
    }
    /// Old torchvision names (`denselayer1.norm.1.weight` for `denselayer1.norm1.weight`),
    /// as timm's `_filter_torchvision_pretrained`.
    fn remap_state_dict(&self, sd: &mut StateDict) {
        let old: Vec<String> = sd.keys().filter(|k| k.contains(".denselayer")).cloned().collect();
        for k in old {
            let mut parts: Vec<&str> = k.split('.').collect();
            let n = parts.len();
            if n >= 3 && matches!(parts[n - 3], "norm" | "relu" | "conv") && matches!(parts[n - 2], "1" | "2") {
                let joined = format!("{}{}", parts[n - 3], parts[n - 2]);
                parts.splice(n - 3..n - 1, [joined.as_str()]);
                let new = parts.join(".");
                if let Some(v) = sd.remove(&k) {
                    sd.insert(new, v);
                }
            }
        }
    }
}

// ---------------------------------------------------------------- pretrained configs

const fn cfg(tag: &'static str) -> PretrainedCfg {
    PretrainedCfg::imagenet(tag, "features.conv0", "classifier").bicubic()
}
pub(crate) static DENSENET121: &[PretrainedCfg] = &[cfg("ra_in1k").test_size(288), cfg("tv_in1k")];
pub(crate) static DENSENET161: &[PretrainedCfg] = &[cfg("tv_in1k")];
pub(crate) static DENSENET169: &[PretrainedCfg] = &[cfg("tv_in1k")];
pub(crate) static DENSENET201: &[PretrainedCfg] = &[cfg("tv_in1k")];

// ---------------------------------------------------------------- entry points

fn densenet(arch: &'static str, opts: ZooOpts, growth_rate: usize, blocks: [usize; 4]) -> Result<Model> {
    build(arch, opts, |vb, a| {
        Ok(Box::new(DenseNet::new(vb, DenseNetConfig { growth_rate, block_config: blocks.to_vec(), ..a.into() })?))
    })
}

/// DenseNet-121 (8.0M params).
pub fn densenet121(opts: ZooOpts) -> Result<Model> {
    densenet("densenet121", opts, 32, [6, 12, 24, 16])
}
/// DenseNet-161.
pub fn densenet161(opts: ZooOpts) -> Result<Model> {
    densenet("densenet161", opts, 48, [6, 12, 36, 24])
}
/// DenseNet-169.
pub fn densenet169(opts: ZooOpts) -> Result<Model> {
    densenet("densenet169", opts, 32, [6, 12, 32, 32])
}
/// DenseNet-201.
pub fn densenet201(opts: ZooOpts) -> Result<Model> {
    densenet("densenet201", opts, 32, [6, 12, 48, 32])
}

// ---------------------------------------------------------------- registry

/// The registered variants of this family, each one line (`name`, pretrained configs).
pub(crate) static MODELS: &[ModelEntry] = &[
    register!(densenet121, DENSENET121),
    register!(densenet161, DENSENET161),
    register!(densenet169, DENSENET169),
    register!(densenet201, DENSENET201),
];
