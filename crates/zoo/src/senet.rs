//! The legacy squeeze-and-excitation networks (Hu et al. 2018, "Squeeze-and-Excitation
//! Networks") as Cadene's `pretrained-models` port defines them and timm's `senet.py` keeps
//! them for their weights: SE-ResNet, SE-ResNeXt and SENet-154.
//!
//! They differ from timm's own `seresnet50` in ways the old checkpoints fix: the stem lives
//! under `layer0` (one 7x7 conv, or three 3x3 convs for SENet-154), the max pool rounds its
//! output size up (`ceil_mode`, Caffe's rule) instead of padding, SE-ResNet bottlenecks put
//! the stride on their first 1x1 conv (Caffe) rather than on the 3x3, SENet-154's
//! projection shortcuts after `layer1` are 3x3 convs, the squeeze-excitation is
//! `se_module.fc1`/`fc2` and the classifier is `last_linear`.

use crate::Model;
use crate::attention::{SeConfig, SqueezeExcite};
use crate::error::Result;
use crate::layers::{ClassifierHead, ConvBnAct, ConvOpts, max_pool};
use crate::model::{Architecture, ModelArgs, ZooOpts, build};
use crate::pretrained::PretrainedCfg;
use crate::registry::{ModelEntry, register};
use convnet_nn::context::Cx;
use convnet_nn::store::Vb;
use convnet_tensor::{Activation, Padding2d, Tensor};

const EPS: f32 = 1e-5;

/// Squeeze width is the block's output width over this (every legacy SENet uses 16).
const SE_REDUCTION: usize = 16;

// ---------------------------------------------------------------- blocks

/// The residual unit of a legacy SENet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeBlock {
    /// `SEResNetBlock`: two 3x3 convs (the first strided), expansion 1 (SE-ResNet-18/34).
    Basic,
    /// `SEResNetBottleneck`: 1x1 (strided, Caffe style), 3x3, 1x1; expansion 4 (SE-ResNet-50+).
    ResNetBottleneck,
    /// `SEResNeXtBottleneck`: 1x1, grouped 3x3 (strided), 1x1 with `planes * 4 / 64` channels
    /// per group; expansion 4.
    ResNeXtBottleneck,
    /// `SEBottleneck` (SENet-154): 1x1 to `2 * planes`, grouped 3x3 (strided) to `4 * planes`,
    /// 1x1; expansion 4.
    SeNetBottleneck,
}

impl SeBlock {
    fn expansion(self) -> usize {
        match self {
            SeBlock::Basic => 1,
            _ => 4,
        }
    }
}

#[derive(Debug)]
struct Block {
    path: String,
    convs: Vec<ConvBnAct>,
    se: SqueezeExcite,
    downsample: Option<ConvBnAct>,
}

impl Block {
    #[allow(clippy::too_many_arguments)]
    fn new(
        vb: &Vb,
        t: SeBlock,
        inplanes: usize,
        planes: usize,
        groups: usize,
        stride: usize,
        downsample: Option<ConvBnAct>,
    ) -> Self {
        let relu = Activation::Relu;
        let linear = Activation::Linear;
        let cba = |i: usize, cin, cout, k: usize, o: ConvOpts, a| {
            ConvBnAct::new(&vb.pp(format!("conv{i}")), &vb.pp(format!("bn{i}")), cin, cout, (k, k), o, EPS, a)
        };
        let one = ConvOpts::default();
        let s = ConvOpts::stride(stride);
        let out = planes * t.expansion();
        let convs = match t {
            SeBlock::Basic => {
                vec![cba(1, inplanes, planes, 3, s, relu), cba(2, planes, planes, 3, one.with_groups(groups), relu)]
            }
            SeBlock::ResNetBottleneck => vec![
                cba(1, inplanes, planes, 1, s, relu),
                cba(2, planes, planes, 3, one.with_groups(groups), relu),
                cba(3, planes, out, 1, one, linear),
            ],
            SeBlock::ResNeXtBottleneck => {
                let width = planes * 4 / 64 * groups;
                vec![
                    cba(1, inplanes, width, 1, one, relu),
                    cba(2, width, width, 3, s.with_groups(groups), relu),
                    cba(3, width, out, 1, one, linear),
                ]
            }
            SeBlock::SeNetBottleneck => vec![
                cba(1, inplanes, planes * 2, 1, one, relu),
                cba(2, planes * 2, planes * 4, 3, s.with_groups(groups), relu),
                cba(3, planes * 4, out, 1, one, linear),
            ],
        };
        let se = SqueezeExcite::new(&vb.pp("se_module"), out, &SeConfig::legacy(SE_REDUCTION));
        Block { path: vb.prefix().to_string(), convs, se, downsample }
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
        // the excitation scales the residual branch before the sum, so the last conv cannot
        // take the sum in its store; it gives the squeeze its mean instead
        let (y, mean) = last.forward_mean(cx, &y)?;
        let y = self.se.excite(cx, y, &mean)?.add(&shortcut)?.relu();
        cx.record(&self.path, "SEBlock", &y);
        Ok(y)
    }
}

/// `layer0`: one 7x7 stride-2 conv to `inplanes`, or (SENet-154) three 3x3 convs, the first
/// strided; each with batch norm and ReLU.
#[derive(Debug)]
struct Layer0 {
    convs: Vec<ConvBnAct>,
}

impl Layer0 {
    fn new(vb: &Vb, in_chans: usize, inplanes: usize, input_3x3: bool) -> Self {
        let cba = |i: usize, cin, cout, k, stride| {
            let o = ConvOpts::stride(stride).with_padding(Padding2d::symmetric(k / 2, k / 2));
            let (c, b) = (vb.pp(format!("conv{i}")), vb.pp(format!("bn{i}")));
            ConvBnAct::new(&c, &b, cin, cout, (k, k), o, EPS, Activation::Relu)
        };
        let convs = if input_3x3 {
            vec![cba(1, in_chans, 64, 3, 2), cba(2, 64, 64, 3, 1), cba(3, 64, inplanes, 3, 1)]
        } else {
            vec![cba(1, in_chans, inplanes, 7, 2)]
        };
        Layer0 { convs }
    }
}

// ---------------------------------------------------------------- model

/// What distinguishes one legacy SENet from another.
#[derive(Clone, Debug, PartialEq)]
pub struct SeNetConfig {
    /// The residual unit.
    pub block: SeBlock,
    /// Blocks per stage.
    pub layers: [usize; 4],
    /// Groups of the 3x3 convs (1 for SE-ResNet, 32 for SE-ResNeXt, 64 for SENet-154).
    pub groups: usize,
    /// Channels out of `layer0` (64; 128 for SENet-154).
    pub inplanes: usize,
    /// Three 3x3 convs in `layer0` instead of one 7x7 (SENet-154).
    pub input_3x3: bool,
    /// Kernel of the projection shortcuts of `layer2..4` (padding `k / 2`; 3 for SENet-154).
    pub downsample_kernel: usize,
    /// Classes (0: no classifier).
    pub num_classes: usize,
    /// Input channels.
    pub in_chans: usize,
    /// Dropout before the classifier.
    pub drop_rate: f32,
}

impl SeNetConfig {
    fn new(block: SeBlock, layers: [usize; 4], groups: usize, a: &ModelArgs) -> Self {
        SeNetConfig {
            block,
            layers,
            groups,
            inplanes: 64,
            input_3x3: false,
            downsample_kernel: 1,
            num_classes: a.num_classes,
            in_chans: a.in_chans,
            drop_rate: a.drop_rate,
        }
    }
}

/// Legacy SENet: `layer0.{conv,bn}{1..3}`, `layer1..4.{i}.{conv,bn}{1,2,3}`
/// (+ `downsample.{0,1}`, `se_module.{fc1,fc2}`), `last_linear`.
#[derive(Debug)]
pub struct SeNet {
    layer0: Layer0,
    layers: Vec<Vec<Block>>,
    head: ClassifierHead,
}

impl SeNet {
    /// Builds the network under `vb`: `x: [n, h, w, in_chans] -> [n, classes]`.
    pub fn new(vb: &Vb, cfg: SeNetConfig) -> Result<Self> {
        let layer0 = Layer0::new(&vb.pp("layer0"), cfg.in_chans, cfg.inplanes, cfg.input_3x3);
        let t = cfg.block;
        let mut inplanes = cfg.inplanes;
        let mut layers = Vec::new();
        for (s, &n) in cfg.layers.iter().enumerate() {
            let planes = 64 << s;
            let stride = if s == 0 { 1 } else { 2 };
            let out = planes * t.expansion();
            let vbl = vb.pp(format!("layer{}", s + 1));
            let mut stage = Vec::new();
            for b in 0..n {
                let vbb = vbl.pp(b);
                let (cin, stride) = if b == 0 { (inplanes, stride) } else { (out, 1) };
                let downsample = (b == 0 && (stride != 1 || inplanes != out)).then(|| {
                    // layer1 always projects with a 1x1 conv; the others with the family's kernel
                    let k = if s == 0 { 1 } else { cfg.downsample_kernel };
                    let o = ConvOpts::stride(stride).with_padding(Padding2d::symmetric(k / 2, k / 2));
                    let d = vbb.pp("downsample");
                    ConvBnAct::new(&d.pp(0), &d.pp(1), cin, out, (k, k), o, EPS, Activation::Linear)
                });
                stage.push(Block::new(&vbb, t, cin, planes, cfg.groups, stride, downsample));
            }
            inplanes = out;
            layers.push(stage);
        }
        let head = ClassifierHead::new(&vb.pp("last_linear"), inplanes, cfg.num_classes, cfg.drop_rate);
        Ok(SeNet { layer0, layers, head })
    }
}

impl Architecture for SeNet {
    fn forward_features(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for c in &self.layer0.convs {
            x = c.forward(cx, &x)?;
        }
        cx.record("layer0", "Conv2d+BN+ReLU", &x);
        // Caffe's pooling: no padding, the output size rounded up
        let mut x = max_pool(&x, 3, 2, 0, true)?;
        cx.record("pool0", "MaxPool2d", &x);
        for stage in &self.layers {
            for b in stage {
                x = b.forward(cx, &x)?;
            }
        }
        Ok(x)
    }
    fn forward_head(&self, cx: &Cx, x: &Tensor, pre_logits: bool) -> Result<Tensor> {
        let y = self.head.forward(cx, x, pre_logits)?;
        cx.record("last_linear", "Linear", &y);
        Ok(y)
    }
    fn num_features(&self) -> usize {
        self.head.num_features
    }
    fn num_classes(&self) -> usize {
        self.head.num_classes
    }
    fn reset_classifier(&mut self, vb: &Vb, num_classes: usize) {
        let fc = vb.pp("last_linear");
        self.head = ClassifierHead::new(&fc, self.head.num_features, num_classes, self.head.drop_rate);
    }
}

// ---------------------------------------------------------------- pretrained configs

/// timm's `_cfg` for the legacy SENets: bilinear, crop 0.875 (Cadene's weights).
const fn cadene() -> PretrainedCfg {
    PretrainedCfg::imagenet("in1k", "layer0.conv1", "last_linear")
}

/// Cadene's weights (bilinear).
pub(crate) static BILINEAR: &[PretrainedCfg] = &[cadene()];
/// Weights Ross Wightman trained himself (SE-ResNet-18, SE-ResNeXt-26): bicubic.
pub(crate) static BICUBIC: &[PretrainedCfg] = &[cadene().bicubic()];

// ---------------------------------------------------------------- entry points

fn senet(
    arch: &'static str,
    opts: ZooOpts,
    block: SeBlock,
    layers: [usize; 4],
    groups: usize,
    tweak: fn(SeNetConfig) -> SeNetConfig,
) -> Result<Model> {
    build(arch, opts, |vb, a| Ok(Box::new(SeNet::new(vb, tweak(SeNetConfig::new(block, layers, groups, a)))?)))
}

fn plain(c: SeNetConfig) -> SeNetConfig {
    c
}

/// SENet-154's stem and shortcuts: three 3x3 convs to 128 channels, 3x3 projections.
fn senet154_stem(c: SeNetConfig) -> SeNetConfig {
    SeNetConfig { inplanes: 128, input_3x3: true, downsample_kernel: 3, ..c }
}

/// SE-ResNet-18.
pub fn legacy_seresnet18(opts: ZooOpts) -> Result<Model> {
    senet("legacy_seresnet18", opts, SeBlock::Basic, [2, 2, 2, 2], 1, plain)
}
/// SE-ResNet-34.
pub fn legacy_seresnet34(opts: ZooOpts) -> Result<Model> {
    senet("legacy_seresnet34", opts, SeBlock::Basic, [3, 4, 6, 3], 1, plain)
}
/// SE-ResNet-50.
pub fn legacy_seresnet50(opts: ZooOpts) -> Result<Model> {
    senet("legacy_seresnet50", opts, SeBlock::ResNetBottleneck, [3, 4, 6, 3], 1, plain)
}
/// SE-ResNet-101.
pub fn legacy_seresnet101(opts: ZooOpts) -> Result<Model> {
    senet("legacy_seresnet101", opts, SeBlock::ResNetBottleneck, [3, 4, 23, 3], 1, plain)
}
/// SE-ResNet-152.
pub fn legacy_seresnet152(opts: ZooOpts) -> Result<Model> {
    senet("legacy_seresnet152", opts, SeBlock::ResNetBottleneck, [3, 8, 36, 3], 1, plain)
}
/// SENet-154 (the ILSVRC 2017 winner's network).
pub fn legacy_senet154(opts: ZooOpts) -> Result<Model> {
    senet("legacy_senet154", opts, SeBlock::SeNetBottleneck, [3, 8, 36, 3], 64, senet154_stem)
}
/// SE-ResNeXt-26 32x4d.
pub fn legacy_seresnext26_32x4d(opts: ZooOpts) -> Result<Model> {
    senet("legacy_seresnext26_32x4d", opts, SeBlock::ResNeXtBottleneck, [2, 2, 2, 2], 32, plain)
}
/// SE-ResNeXt-50 32x4d.
pub fn legacy_seresnext50_32x4d(opts: ZooOpts) -> Result<Model> {
    senet("legacy_seresnext50_32x4d", opts, SeBlock::ResNeXtBottleneck, [3, 4, 6, 3], 32, plain)
}
/// SE-ResNeXt-101 32x4d.
pub fn legacy_seresnext101_32x4d(opts: ZooOpts) -> Result<Model> {
    senet("legacy_seresnext101_32x4d", opts, SeBlock::ResNeXtBottleneck, [3, 4, 23, 3], 32, plain)
}

// ---------------------------------------------------------------- registry

/// The registered variants of this family, each one line (`name`, pretrained configs).
pub(crate) static MODELS: &[ModelEntry] = &[
    register!(legacy_seresnet18, BICUBIC),
    register!(legacy_seresnet34, BILINEAR),
    register!(legacy_seresnet50, BILINEAR),
    register!(legacy_seresnet101, BILINEAR),
    register!(legacy_seresnet152, BILINEAR),
    register!(legacy_senet154, BILINEAR),
    register!(legacy_seresnext26_32x4d, BICUBIC),
    register!(legacy_seresnext50_32x4d, BILINEAR),
    register!(legacy_seresnext101_32x4d, BILINEAR),
];

// ---------------------------------------------------------------- tests

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_sgd_lowers_loss, random_images};

    #[test]
    fn pool0_rounds_up_and_the_head_is_last_linear() {
        // 67 -> 34 after the stem; Caffe's pool gives 17 (PyTorch's floor would give 16),
        // then 17 -> 9 -> 5 -> 3 through the strided stages
        let mut m = legacy_seresnet18(ZooOpts::new().with_num_classes(5)).unwrap();
        let x = random_images(2, 67, 1);
        let f = m.forward_features(&x).unwrap();
        assert_eq!(f.dims(), [2, 3, 3, 512]);
        assert_eq!(m.forward(&x).unwrap().dims(), [2, 5]);
        assert_eq!(m.params().by_key("last_linear.weight").unwrap().torch_shape(), vec![5, 512]);
        assert_eq!(m.params().by_key("layer1.0.se_module.fc1.weight").unwrap().torch_shape(), vec![4, 64, 1, 1]);
        m.reset_classifier(0, 3);
        assert_eq!(m.forward(&x).unwrap().dims(), [2, 512]);
        assert!(m.params().by_key("last_linear.weight").is_none());
    }

    #[test]
    fn senet154_has_a_three_conv_stem_and_3x3_shortcuts() {
        let m = legacy_senet154(ZooOpts::new()).unwrap();
        let shape = |k: &str| m.params().by_key(k).unwrap().torch_shape();
        assert_eq!(shape("layer0.conv3.weight"), vec![128, 64, 3, 3]);
        assert_eq!(shape("layer1.0.downsample.0.weight"), vec![256, 128, 1, 1]);
        assert_eq!(shape("layer2.0.downsample.0.weight"), vec![512, 256, 3, 3]);
        assert_eq!(shape("layer2.0.conv2.weight"), vec![512, 4, 3, 3]); // 64 groups
    }

    #[test]
    fn an_se_resnext_trains() {
        // the excitation scales the residual branch before the sum; gradients flow through
        // the gate and the grouped convs
        let mut m = legacy_seresnext26_32x4d(ZooOpts::new().with_num_classes(10).with_seed(5)).unwrap();
        assert_sgd_lowers_loss(&mut m);
    }
}
