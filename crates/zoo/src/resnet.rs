//! ResNet (He et al. 2015, "Deep Residual Learning for Image Recognition") and ResNeXt
//! (Xie et al. 2016, "Aggregated Residual Transformations"), as timm's `resnet.py` builds
//! the torchvision-style variants: 7x7 stem, max pool, four stages of basic or bottleneck
//! blocks with the stride on the 3x3 conv, 1x1 strided projection shortcuts.

use crate::Model;
use crate::error::Result;
use crate::layers::{ClassifierHead, ConvBnAct, ConvOpts, drop_path, max_pool};
use crate::model::{Architecture, ModelArgs, ZooOpts, build};
use crate::pretrained::PretrainedCfg;
use crate::registry::{ModelEntry, register};
use convnet_nn::context::Cx;
use convnet_nn::store::Vb;
use convnet_tensor::{Activation, Tensor};

const EPS: f32 = 1e-5;

// ---------------------------------------------------------------- blocks

/// Basic (two 3x3 convs, ResNet-18/34) or bottleneck (1x1, 3x3, 1x1; ResNet-50+) block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockType {
    /// `BasicBlock`, expansion 1.
    Basic,
    /// `Bottleneck`, expansion 4.
    Bottleneck,
}

impl BlockType {
    fn expansion(self) -> usize {
        match self {
            BlockType::Basic => 1,
            BlockType::Bottleneck => 4,
        }
    }
}

#[derive(Debug)]
struct Block {
    path: String,
    convs: Vec<ConvBnAct>,
    downsample: Option<ConvBnAct>,
    drop_path: f32,
}

impl Block {
    #[allow(clippy::too_many_arguments)]
    fn new(
        vb: &Vb,
        t: BlockType,
        inplanes: usize,
        planes: usize,
        stride: usize,
        cardinality: usize,
        base_width: usize,
        dpr: f32,
    ) -> Self {
        let relu = Activation::Relu;
        let outplanes = planes * t.expansion();
        let cba = |i: usize, cin, cout, k, o: ConvOpts, a| {
            ConvBnAct::new(&vb.pp(format!("conv{i}")), &vb.pp(format!("bn{i}")), cin, cout, (k, k), o, EPS, a)
        };
        let convs = match t {
            BlockType::Basic => vec![
                cba(1, inplanes, planes, 3, ConvOpts::stride(stride), relu),
                cba(2, planes, outplanes, 3, ConvOpts::default(), Activation::Linear),
            ],
            BlockType::Bottleneck => {
                let width = planes * base_width / 64 * cardinality;
                vec![
                    cba(1, inplanes, width, 1, ConvOpts::default(), relu),
                    cba(2, width, width, 3, ConvOpts::stride(stride).with_groups(cardinality), relu),
                    cba(3, width, outplanes, 1, ConvOpts::default(), Activation::Linear),
                ]
            }
        };
        let downsample = (stride != 1 || inplanes != outplanes).then(|| {
            let d = vb.pp("downsample");
            ConvBnAct::new(
                &d.pp(0),
                &d.pp(1),
                inplanes,
                outplanes,
                (1, 1),
                ConvOpts::stride(stride),
                EPS,
                Activation::Linear,
            )
        });
        Block { path: vb.prefix().to_string(), convs, downsample, drop_path: dpr }
    }

    fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let shortcut = match &self.downsample {
            Some(d) => d.forward(cx, x)?,
            None => x.clone(),
        };
        let (last, first) = self.convs.split_last().expect("a block has convs");
        let mut y = x.clone();
        for c in first {
            y = c.forward(cx, &y)?;
        }
        let y = if cx.training() && self.drop_path > 0.0 {
            let y = drop_path(cx, &last.forward(cx, &y)?, self.drop_path)?;
            y.add(&shortcut)?.relu()
        } else {
            // the skip sum and relu fused into the last conv's store (eval mode)
            last.forward_add(cx, &y, &shortcut, Activation::Relu)?
        };
        cx.record(&self.path, if self.convs.len() == 2 { "BasicBlock" } else { "Bottleneck" }, &y);
        Ok(y)
    }
}

// ---------------------------------------------------------------- model

/// What distinguishes one ResNet from another.
#[derive(Clone, Debug, PartialEq)]
pub struct ResNetConfig {
    /// Blocks per stage.
    pub layers: [usize; 4],
    /// Block type.
    pub block: BlockType,
    /// Groups of the 3x3 conv (ResNeXt's cardinality).
    pub cardinality: usize,
    /// Width per group (64 for ResNet).
    pub base_width: usize,
    /// Classes (0: no classifier).
    pub num_classes: usize,
    /// Input channels.
    pub in_chans: usize,
    /// Dropout before the classifier.
    pub drop_rate: f32,
    /// Stochastic-depth rate of the last block.
    pub drop_path_rate: f32,
}

impl From<&ModelArgs> for ResNetConfig {
    fn from(a: &ModelArgs) -> Self {
        ResNetConfig {
            layers: [2, 2, 2, 2],
            block: BlockType::Basic,
            cardinality: 1,
            base_width: 64,
            num_classes: a.num_classes,
            in_chans: a.in_chans,
            drop_rate: a.drop_rate,
            drop_path_rate: a.drop_path_rate,
        }
    }
}

/// ResNet: `conv1`, `bn1`, `layer1..4.{i}.{conv,bn}{1,2,3}` (+ `downsample.{0,1}`), `fc`.
#[derive(Debug)]
pub struct ResNet {
    stem: ConvBnAct,
    layers: Vec<Vec<Block>>,
    head: ClassifierHead,
}

impl ResNet {
    /// Builds the network under `vb`.
    pub fn new(vb: &Vb, cfg: ResNetConfig) -> Result<Self> {
        let stem = ConvBnAct::new(
            &vb.pp("conv1"),
            &vb.pp("bn1"),
            cfg.in_chans,
            64,
            (7, 7),
            ConvOpts::stride(2),
            EPS,
            Activation::Relu,
        );
        let total: usize = cfg.layers.iter().sum();
        let mut inplanes = 64;
        let mut idx = 0;
        let mut layers = Vec::new();
        for (s, &n) in cfg.layers.iter().enumerate() {
            let planes = 64 << s;
            let mut stage = Vec::new();
            for b in 0..n {
                let stride = if b == 0 && s > 0 { 2 } else { 1 };
                let dpr = cfg.drop_path_rate * idx as f32 / (total - 1).max(1) as f32;
                let vbb = vb.pp(format!("layer{}", s + 1)).pp(b);
                stage.push(Block::new(&vbb, cfg.block, inplanes, planes, stride, cfg.cardinality, cfg.base_width, dpr));
                inplanes = planes * cfg.block.expansion();
                idx += 1;
            }
            layers.push(stage);
        }
        let head = ClassifierHead::new(&vb.pp("fc"), inplanes, cfg.num_classes, cfg.drop_rate);
        Ok(ResNet { stem, layers, head })
    }
}

impl Architecture for ResNet {
    fn forward_features(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let x = self.stem.forward(cx, x)?;
        cx.record("conv1", "Conv2d+BN+ReLU", &x);
        let mut x = max_pool(&x, 3, 2, 1, false)?;
        cx.record("maxpool", "MaxPool2d", &x);
        for stage in &self.layers {
            for b in stage {
                x = b.forward(cx, &x)?;
            }
        }
        Ok(x)
    }
    fn forward_head(&self, cx: &Cx, x: &Tensor, pre_logits: bool) -> Result<Tensor> {
        let y = self.head.forward(cx, x, pre_logits)?;
        cx.record("fc", "Linear", &y);
        Ok(y)
    }
    fn num_features(&self) -> usize {
        self.head.num_features
    }
    fn num_classes(&self) -> usize {
        self.head.num_classes
    }
    fn reset_classifier(&mut self, vb: &Vb, num_classes: usize) {
        self.head = ClassifierHead::new(&vb.pp("fc"), self.head.num_features, num_classes, self.head.drop_rate);
    }
}

// ---------------------------------------------------------------- pretrained configs

/// timm's `_cfg` for ResNets: bilinear, crop 0.875 (torchvision weights).
const fn tv(tag: &'static str) -> PretrainedCfg {
    PretrainedCfg::imagenet(tag, "conv1", "fc")
}
/// timm's `_rcfg` (ResNet strikes back): bicubic, crop 0.95, test 288.
const fn rsb(tag: &'static str) -> PretrainedCfg {
    tv(tag).bicubic().crop(0.95).test_size(288)
}
/// timm's `_ttcfg`: bicubic, test 288.
const fn tt(tag: &'static str) -> PretrainedCfg {
    tv(tag).bicubic().test_size(288)
}

pub(crate) static RESNET18: &[PretrainedCfg] = &[rsb("a1_in1k"), rsb("a2_in1k"), tv("tv_in1k")];
pub(crate) static RESNET34: &[PretrainedCfg] = &[rsb("a1_in1k"), rsb("a2_in1k"), tv("tv_in1k")];
pub(crate) static RESNET50: &[PretrainedCfg] = &[rsb("a1_in1k"), rsb("a2_in1k"), tt("ra_in1k"), tv("tv_in1k")];
pub(crate) static RESNET101: &[PretrainedCfg] = &[rsb("a1h_in1k"), rsb("a1_in1k"), tv("tv_in1k")];
pub(crate) static RESNET152: &[PretrainedCfg] = &[rsb("a1h_in1k"), rsb("a1_in1k"), tv("tv_in1k")];
pub(crate) static RESNEXT50_32X4D: &[PretrainedCfg] = &[rsb("a1h_in1k"), rsb("a1_in1k"), tt("ra_in1k"), tv("tv_in1k")];
pub(crate) static RESNEXT101_32X4D: &[PretrainedCfg] = &[tv("fb_ssl_yfcc100m_ft_in1k"), tt("untrained")];
pub(crate) static RESNEXT101_32X8D: &[PretrainedCfg] = &[tv("tv_in1k"), tv("fb_wsl_ig1b_ft_in1k")];
pub(crate) static RESNEXT101_64X4D: &[PretrainedCfg] = &[rsb("c1_in1k"), tv("tv_in1k")];

// ---------------------------------------------------------------- entry points

fn resnet(
    arch: &'static str,
    opts: ZooOpts,
    layers: [usize; 4],
    block: BlockType,
    card: usize,
    width: usize,
) -> Result<Model> {
    build(arch, opts, |vb, a| {
        let cfg = ResNetConfig { layers, block, cardinality: card, base_width: width, ..a.into() };
        Ok(Box::new(ResNet::new(vb, cfg)?))
    })
}

/// ResNet-18 (11.7M params).
pub fn resnet18(opts: ZooOpts) -> Result<Model> {
    resnet("resnet18", opts, [2, 2, 2, 2], BlockType::Basic, 1, 64)
}
/// ResNet-34.
pub fn resnet34(opts: ZooOpts) -> Result<Model> {
    resnet("resnet34", opts, [3, 4, 6, 3], BlockType::Basic, 1, 64)
}
/// ResNet-50 (25.6M params).
pub fn resnet50(opts: ZooOpts) -> Result<Model> {
    resnet("resnet50", opts, [3, 4, 6, 3], BlockType::Bottleneck, 1, 64)
}
/// ResNet-101.
pub fn resnet101(opts: ZooOpts) -> Result<Model> {
    resnet("resnet101", opts, [3, 4, 23, 3], BlockType::Bottleneck, 1, 64)
}
/// ResNet-152.
pub fn resnet152(opts: ZooOpts) -> Result<Model> {
    resnet("resnet152", opts, [3, 8, 36, 3], BlockType::Bottleneck, 1, 64)
}
/// ResNeXt-50 32x4d.
pub fn resnext50_32x4d(opts: ZooOpts) -> Result<Model> {
    resnet("resnext50_32x4d", opts, [3, 4, 6, 3], BlockType::Bottleneck, 32, 4)
}
/// ResNeXt-101 32x4d.
pub fn resnext101_32x4d(opts: ZooOpts) -> Result<Model> {
    resnet("resnext101_32x4d", opts, [3, 4, 23, 3], BlockType::Bottleneck, 32, 4)
}
/// ResNeXt-101 32x8d (torchvision's).
pub fn resnext101_32x8d(opts: ZooOpts) -> Result<Model> {
    resnet("resnext101_32x8d", opts, [3, 4, 23, 3], BlockType::Bottleneck, 32, 8)
}
/// ResNeXt-101 64x4d.
pub fn resnext101_64x4d(opts: ZooOpts) -> Result<Model> {
    resnet("resnext101_64x4d", opts, [3, 4, 23, 3], BlockType::Bottleneck, 64, 4)
}

// ---------------------------------------------------------------- registry

/// The registered variants of this family, each one line (`name`, pretrained configs).
pub(crate) static MODELS: &[ModelEntry] = &[
    register!(resnet18, RESNET18),
    register!(resnet34, RESNET34),
    register!(resnet50, RESNET50),
    register!(resnet101, RESNET101),
    register!(resnet152, RESNET152),
    register!(resnext50_32x4d, RESNEXT50_32X4D),
    register!(resnext101_32x4d, RESNEXT101_32X4D),
    register!(resnext101_32x8d, RESNEXT101_32X8D),
    register!(resnext101_64x4d, RESNEXT101_64X4D),
];
