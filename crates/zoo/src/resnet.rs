//! ResNet (He et al. 2015, "Deep Residual Learning for Image Recognition") and the variants
//! timm's `resnet.py` builds on one network: ResNeXt (Xie et al. 2016, "Aggregated Residual
//! Transformations"), the Gluon / "Bag of Tricks" stems and shortcuts (He et al. 2018:
//! `c` deep stem, `d` deep stem and average-pool shortcut, `s` wide deep stem, `t` tiered
//! stem), SE-ResNe(X)t and SENet-154 (Hu et al. 2018), ECA-ResNet (Wang et al. 2020) and
//! ResNet-RS (Bello et al. 2021, "Revisiting ResNets").
//!
//! As in timm, a variant is data: [`ResNetConfig`] holds the stem, the shortcut, the block
//! type, its attention and widths, and [`ResNet::new`] builds all of them. The block is
//! pluggable ([`BlockType::Custom`] with a [`BlockFactory`]): another family (SKNet,
//! ResNeSt, Res2Net) supplies its own block and reuses the stem, stages, shortcuts and head.

use crate::Model;
use crate::attention::{Attention, AttnLayer, SeConfig};
use crate::error::Result;
use crate::layers::{ClassifierHead, ConvBnAct, ConvOpts, avg_pool, drop_path, max_pool};
use crate::model::{Architecture, ModelArgs, ZooOpts, build};
use crate::pretrained::PretrainedCfg;
use crate::registry::{ModelEntry, register};
use convnet_nn::context::Cx;
use convnet_nn::store::Vb;
use convnet_tensor::{Activation, Tensor};
use std::fmt;
use std::sync::Arc;

const EPS: f32 = 1e-5;

// ---------------------------------------------------------------- blocks

/// One residual block of a [`ResNet`] stage, built by a [`BlockFactory`].
pub trait ResidualBlock: Send + Sync + fmt::Debug {
    /// `x: [n, h, w, inplanes] -> [n, h / stride, w / stride, planes * expansion]`.
    fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor>;
}

/// What a block at one position of the network is built from (timm's `make_blocks`
/// arguments to `block_fn`).
pub struct BlockArgs<'a> {
    /// The block's own prefix (`layer2.0`).
    pub vb: &'a Vb<'a>,
    /// Input channels.
    pub inplanes: usize,
    /// Stage width before expansion (64, 128, 256, 512).
    pub planes: usize,
    /// Stride of the block (2 on the first block of stages 2-4).
    pub stride: usize,
    /// The projection shortcut, when shape changes (built by the network so every block
    /// type shares timm's `downsample` keys and variants).
    pub downsample: Option<Downsample>,
    /// Stochastic-depth rate of this block.
    pub drop_path: f32,
    /// The network's config (cardinality, base width, reduce-first, attention).
    pub cfg: &'a ResNetConfig,
}

/// Builds the blocks of a block type. Families with their own blocks implement it and
/// plug in through [`BlockType::Custom`]; its `Debug` form names the type and its options
/// (two custom block types are equal when their `Debug` forms are).
pub trait BlockFactory: Send + Sync + fmt::Debug {
    /// Output channels per `planes` (timm's `block.expansion`).
    fn expansion(&self) -> usize;
    /// The block at one position.
    fn build(&self, a: BlockArgs<'_>) -> Result<Box<dyn ResidualBlock>>;
}

/// The block of a ResNet: timm's `BasicBlock`, `Bottleneck`, or another family's.
#[derive(Clone, Debug)]
pub enum BlockType {
    /// `BasicBlock` (two 3x3 convs, ResNet-18/34), expansion 1.
    Basic,
    /// `Bottleneck` (1x1, grouped 3x3 with the stride, 1x1; ResNet-50+), expansion 4.
    Bottleneck,
    /// A block supplied by another family.
    Custom(Arc<dyn BlockFactory>),
}

impl PartialEq for BlockType {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (BlockType::Basic, BlockType::Basic) | (BlockType::Bottleneck, BlockType::Bottleneck) => true,
            (BlockType::Custom(a), BlockType::Custom(b)) => format!("{a:?}") == format!("{b:?}"),
            _ => false,
        }
    }
}

impl BlockType {
    /// Output channels per `planes`.
    pub fn expansion(&self) -> usize {
        match self {
            BlockType::Basic => 1,
            BlockType::Bottleneck => 4,
            BlockType::Custom(f) => f.expansion(),
        }
    }

    fn build(&self, a: BlockArgs<'_>) -> Result<Box<dyn ResidualBlock>> {
        match self {
            BlockType::Basic | BlockType::Bottleneck => Ok(Box::new(Block::new(self, a))),
            BlockType::Custom(f) => f.build(a),
        }
    }
}

/// The projection shortcut of a block whose shape changes: timm's `downsample_conv`
/// (keys `downsample.0` conv, `downsample.1` norm; a `down_kernel_size` conv with the
/// stride) or `downsample_avg` (`avg_down`: a 2x2 stride-2 average pool, ceil mode, padding
/// not counted, then a 1x1 conv `downsample.1` and norm `downsample.2`).
#[derive(Debug)]
pub struct Downsample {
    /// Average-pool stride before the conv (`avg_down` with a stride), or none.
    pool: Option<usize>,
    conv: ConvBnAct,
}

impl Downsample {
    /// The shortcut `inplanes -> outplanes` with `stride`, under the block's `downsample`.
    pub fn new(vb: &Vb, inplanes: usize, outplanes: usize, stride: usize, cfg: &ResNetConfig) -> Self {
        let d = vb.pp("downsample");
        if cfg.avg_down {
            let conv = ConvBnAct::new(
                &d.pp(1),
                &d.pp(2),
                inplanes,
                outplanes,
                (1, 1),
                ConvOpts::default(),
                EPS,
                Activation::Linear,
            );
            return Downsample { pool: (stride > 1).then_some(stride), conv };
        }
        // timm: a 1x1 kernel whenever the shortcut keeps the resolution
        let k = if stride == 1 { 1 } else { cfg.down_kernel_size };
        let o = ConvOpts::stride(stride); // timm's get_padding(k, stride)
        let conv = ConvBnAct::new(&d.pp(0), &d.pp(1), inplanes, outplanes, (k, k), o, EPS, Activation::Linear);
        Downsample { pool: None, conv }
    }

    /// `x: [n, h, w, in] -> [n, ceil(h / s), ceil(w / s), out]`.
    pub fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        match self.pool {
            Some(s) => self.conv.forward(cx, &avg_pool(x, 2, s, 0, true, false)?),
            None => self.conv.forward(cx, x),
        }
    }
}

/// timm's `BasicBlock` and `Bottleneck`: convs with norms, the attention on the last
/// norm's output, drop-path, the shortcut sum and a ReLU.
#[derive(Debug)]
struct Block {
    path: String,
    kind: &'static str,
    convs: Vec<ConvBnAct>,
    attn: Option<Attention>,
    downsample: Option<Downsample>,
    drop_path: f32,
}

impl Block {
    fn new(t: &BlockType, a: BlockArgs<'_>) -> Self {
        let (vb, cfg) = (a.vb, a.cfg);
        let relu = Activation::Relu;
        let outplanes = a.planes * t.expansion();
        let cba = |i: usize, cin, cout, k, o: ConvOpts, act| {
            ConvBnAct::new(&vb.pp(format!("conv{i}")), &vb.pp(format!("bn{i}")), cin, cout, (k, k), o, EPS, act)
        };
        let reduce = cfg.block_reduce_first.max(1);
        let (kind, convs) = if *t == BlockType::Basic {
            let first = a.planes / reduce;
            let convs = vec![
                cba(1, a.inplanes, first, 3, ConvOpts::stride(a.stride), relu),
                cba(2, first, outplanes, 3, ConvOpts::default(), Activation::Linear),
            ];
            ("BasicBlock", convs)
        } else {
            let width = a.planes * cfg.base_width / 64 * cfg.cardinality;
            let first = width / reduce;
            let convs = vec![
                cba(1, a.inplanes, first, 1, ConvOpts::default(), relu),
                cba(2, first, width, 3, ConvOpts::stride(a.stride).with_groups(cfg.cardinality), relu),
                cba(3, width, outplanes, 1, ConvOpts::default(), Activation::Linear),
            ];
            ("Bottleneck", convs)
        };
        Block {
            path: vb.prefix().to_string(),
            kind,
            convs,
            attn: cfg.attn_layer.build(&vb.pp("se"), outplanes),
            downsample: a.downsample,
            drop_path: a.drop_path,
        }
    }
}

impl ResidualBlock for Block {
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
        let drop = cx.training() && self.drop_path > 0.0;
        let y = if self.attn.is_none() && !drop {
            // the skip sum and relu fused into the last conv's store (eval mode)
            last.forward_add(cx, &y, &shortcut, Activation::Relu)?
        } else {
            let mut y = last.forward(cx, &y)?;
            if let Some(attn) = &self.attn {
                y = attn.forward(cx, y)?;
            }
            drop_path(cx, &y, self.drop_path)?.add(&shortcut)?.relu()
        };
        cx.record(&self.path, self.kind, &y);
        Ok(y)
    }
}

// ---------------------------------------------------------------- model

/// The stem of a ResNet (timm's `stem_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StemType {
    /// One 7x7 stride-2 conv of 64 channels (`''`, torchvision).
    #[default]
    Plain,
    /// `'deep'`: three 3x3 convs of `stem_width`, `stem_width`, `2 * stem_width` (keys
    /// `conv1.0`, `conv1.1`, `conv1.3`, `conv1.4`, `conv1.6`, then `bn1`).
    Deep,
    /// `'deep_tiered'`: as `Deep` with widths `3 * (stem_width / 4)`, `stem_width`,
    /// `2 * stem_width` (the `t` variants: 24, 32, 64).
    DeepTiered,
}

/// What distinguishes one ResNet from another (timm's `ResNet` arguments).
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
    /// Stem type.
    pub stem_type: StemType,
    /// Width of the deep stems' convs (the plain stem is always 64 wide).
    pub stem_width: usize,
    /// A 3x3 stride-2 conv, norm and ReLU (`maxpool.0`, `maxpool.1`) instead of the stem's
    /// max pool (ResNet-RS).
    pub replace_stem_pool: bool,
    /// Divides the width of each block's first conv (SENet-154: 2).
    pub block_reduce_first: usize,
    /// Kernel of the projection shortcut's strided conv (SENet-154: 3).
    pub down_kernel_size: usize,
    /// Average-pool then 1x1 conv in the projection shortcut (`d` / `t` variants).
    pub avg_down: bool,
    /// Channel attention on each block's output, before the residual sum.
    pub attn_layer: AttnLayer,
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
            stem_type: StemType::Plain,
            stem_width: 64,
            replace_stem_pool: false,
            block_reduce_first: 1,
            down_kernel_size: 1,
            avg_down: false,
            attn_layer: AttnLayer::None,
            num_classes: a.num_classes,
            in_chans: a.in_chans,
            drop_rate: a.drop_rate,
            drop_path_rate: a.drop_path_rate,
        }
    }
}

/// ResNet: `conv1` (or `conv1.{0,1,3,4,6}`), `bn1`, optional `maxpool.{0,1}`,
/// `layer1..4.{i}` blocks (`downsample.*`, `se.*`), `fc`.
#[derive(Debug)]
pub struct ResNet {
    stem: Vec<ConvBnAct>,
    stem_pool: Option<ConvBnAct>,
    layers: Vec<Vec<Box<dyn ResidualBlock>>>,
    head: ClassifierHead,
}

impl ResNet {
    /// Builds the network under `vb`.
    pub fn new(vb: &Vb, cfg: ResNetConfig) -> Result<Self> {
        let relu = Activation::Relu;
        let conv1 = vb.pp("conv1");
        let (stem, mut inplanes) = match cfg.stem_type {
            StemType::Plain => {
                let c = ConvBnAct::new(&conv1, &vb.pp("bn1"), cfg.in_chans, 64, (7, 7), ConvOpts::stride(2), EPS, relu);
                (vec![c], 64)
            }
            StemType::Deep | StemType::DeepTiered => {
                let w = cfg.stem_width;
                let (a, b) = if cfg.stem_type == StemType::Deep { (w, w) } else { (3 * (w / 4), w) };
                let k = |i: usize| conv1.pp(i);
                let s2 = ConvOpts::stride(2);
                let s1 = ConvOpts::default();
                let stem = vec![
                    ConvBnAct::new(&k(0), &k(1), cfg.in_chans, a, (3, 3), s2, EPS, relu),
                    ConvBnAct::new(&k(3), &k(4), a, b, (3, 3), s1, EPS, relu),
                    ConvBnAct::new(&k(6), &vb.pp("bn1"), b, 2 * w, (3, 3), s1, EPS, relu),
                ];
                (stem, 2 * w)
            }
        };
        let stem_pool = cfg.replace_stem_pool.then(|| {
            let p = vb.pp("maxpool");
            ConvBnAct::new(&p.pp(0), &p.pp(1), inplanes, inplanes, (3, 3), ConvOpts::stride(2), EPS, relu)
        });
        let expansion = cfg.block.expansion();
        let total: usize = cfg.layers.iter().sum();
        let mut idx = 0;
        let mut layers = Vec::new();
        for (s, &n) in cfg.layers.iter().enumerate() {
            let planes = 64 << s;
            let mut stage = Vec::new();
            for b in 0..n {
                let stride = if b == 0 && s > 0 { 2 } else { 1 };
                let vbb = vb.pp(format!("layer{}", s + 1)).pp(b);
                let outplanes = planes * expansion;
                let downsample = (b == 0 && (stride != 1 || inplanes != outplanes))
                    .then(|| Downsample::new(&vbb, inplanes, outplanes, stride, &cfg));
                let args = BlockArgs {
                    vb: &vbb,
                    inplanes,
                    planes,
                    stride,
                    downsample,
                    drop_path: cfg.drop_path_rate * idx as f32 / (total - 1).max(1) as f32,
                    cfg: &cfg,
                };
                stage.push(cfg.block.build(args)?);
                inplanes = outplanes;
                idx += 1;
            }
            layers.push(stage);
        }
        let head = ClassifierHead::new(&vb.pp("fc"), inplanes, cfg.num_classes, cfg.drop_rate);
        Ok(ResNet { stem, stem_pool, layers, head })
    }
}

impl Architecture for ResNet {
    fn forward_features(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for c in &self.stem {
            x = c.forward(cx, &x)?;
        }
        cx.record("conv1", "Conv2d+BN+ReLU", &x);
        let mut x = match &self.stem_pool {
            Some(p) => p.forward(cx, &x)?,
            None => max_pool(&x, 3, 2, 1, false)?,
        };
        cx.record("maxpool", if self.stem_pool.is_some() { "Conv2d+BN+ReLU" } else { "MaxPool2d" }, &x);
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
/// timm's `_gcfg` (Gluon weights) and `_tcfg`: bicubic.
const fn bic(tag: &'static str) -> PretrainedCfg {
    tv(tag).bicubic()
}
/// The config of a deep-stem model: its first conv is `conv1.0`.
const fn deep(mut c: PretrainedCfg) -> PretrainedCfg {
    c.first_conv = "conv1.0";
    c
}

pub(crate) static RESNET10T: &[PretrainedCfg] = &[deep(tt("c3_in1k").size(176).test_size(224))];
pub(crate) static RESNET14T: &[PretrainedCfg] = &[deep(tt("c3_in1k").size(176).test_size(224))];
pub(crate) static RESNET18: &[PretrainedCfg] = &[rsb("a1_in1k"), rsb("a2_in1k"), tv("tv_in1k")];
pub(crate) static RESNET18D: &[PretrainedCfg] = &[deep(tt("ra2_in1k"))];
pub(crate) static RESNET26: &[PretrainedCfg] = &[tt("bt_in1k")];
pub(crate) static RESNET26D: &[PretrainedCfg] = &[deep(tt("bt_in1k"))];
pub(crate) static RESNET26T: &[PretrainedCfg] = &[deep(tt("ra2_in1k").size(256).crop(0.94).test_size(320))];
pub(crate) static RESNET34: &[PretrainedCfg] = &[rsb("a1_in1k"), rsb("a2_in1k"), tv("tv_in1k")];
pub(crate) static RESNET34D: &[PretrainedCfg] = &[deep(tt("ra2_in1k"))];
pub(crate) static RESNET50: &[PretrainedCfg] = &[rsb("a1_in1k"), rsb("a2_in1k"), tt("ra_in1k"), tv("tv_in1k")];
pub(crate) static RESNET50C: &[PretrainedCfg] = &[deep(bic("gluon_in1k"))];
pub(crate) static RESNET50D: &[PretrainedCfg] = &[deep(tt("ra2_in1k")), deep(bic("gluon_in1k"))];
pub(crate) static RESNET50S: &[PretrainedCfg] = &[deep(bic("gluon_in1k"))];
pub(crate) static RESNET50T: &[PretrainedCfg] = &[deep(tt("untrained"))];
pub(crate) static RESNET101: &[PretrainedCfg] = &[rsb("a1h_in1k"), rsb("a1_in1k"), tv("tv_in1k")];
pub(crate) static RESNET101C: &[PretrainedCfg] = &[deep(bic("gluon_in1k"))];
pub(crate) static RESNET101D: &[PretrainedCfg] =
    &[deep(tt("ra2_in1k").size(256).crop(0.95).test_size(320)), deep(bic("gluon_in1k"))];
pub(crate) static RESNET101S: &[PretrainedCfg] = &[deep(bic("gluon_in1k"))];
pub(crate) static RESNET152: &[PretrainedCfg] = &[rsb("a1h_in1k"), rsb("a1_in1k"), tv("tv_in1k")];
pub(crate) static RESNET152C: &[PretrainedCfg] = &[deep(bic("gluon_in1k"))];
pub(crate) static RESNET152D: &[PretrainedCfg] =
    &[deep(tt("ra2_in1k").size(256).crop(0.95).test_size(320)), deep(bic("gluon_in1k"))];
pub(crate) static RESNET152S: &[PretrainedCfg] = &[deep(bic("gluon_in1k"))];
pub(crate) static RESNET200: &[PretrainedCfg] = &[tt("untrained")];
pub(crate) static RESNET200D: &[PretrainedCfg] = &[deep(tt("ra2_in1k").size(256).crop(0.95).test_size(320))];
pub(crate) static RESNEXT50_32X4D: &[PretrainedCfg] = &[rsb("a1h_in1k"), rsb("a1_in1k"), tt("ra_in1k"), tv("tv_in1k")];
pub(crate) static RESNEXT50D_32X4D: &[PretrainedCfg] = &[deep(tt("bt_in1k"))];
pub(crate) static RESNEXT101_32X4D: &[PretrainedCfg] = &[tv("fb_ssl_yfcc100m_ft_in1k"), tt("untrained")];
pub(crate) static RESNEXT101_32X8D: &[PretrainedCfg] = &[tv("tv_in1k"), tv("fb_wsl_ig1b_ft_in1k")];
pub(crate) static RESNEXT101_32X16D: &[PretrainedCfg] = &[tv("fb_wsl_ig1b_ft_in1k")];
pub(crate) static RESNEXT101_32X32D: &[PretrainedCfg] = &[tv("fb_wsl_ig1b_ft_in1k")];
pub(crate) static RESNEXT101_64X4D: &[PretrainedCfg] = &[rsb("c1_in1k"), tv("tv_in1k")];

pub(crate) static SERESNET18: &[PretrainedCfg] = &[tt("untrained")];
pub(crate) static SERESNET34: &[PretrainedCfg] = &[tt("untrained")];
pub(crate) static SERESNET50: &[PretrainedCfg] = &[rsb("a1_in1k"), rsb("a2_in1k"), tt("ra2_in1k")];
pub(crate) static SERESNET50T: &[PretrainedCfg] = &[deep(tt("untrained"))];
pub(crate) static SERESNET101: &[PretrainedCfg] = &[tt("untrained")];
pub(crate) static SERESNET152: &[PretrainedCfg] = &[tt("untrained")];
pub(crate) static SERESNET152D: &[PretrainedCfg] = &[deep(tt("ra2_in1k").size(256).crop(0.95).test_size(320))];
pub(crate) static SERESNET200D: &[PretrainedCfg] = &[deep(tt("untrained").size(256))];
pub(crate) static SERESNET269D: &[PretrainedCfg] = &[deep(tt("untrained").size(256))];
pub(crate) static SERESNEXT26D_32X4D: &[PretrainedCfg] = &[deep(tt("bt_in1k"))];
pub(crate) static SERESNEXT26T_32X4D: &[PretrainedCfg] = &[deep(tt("bt_in1k"))];
pub(crate) static SERESNEXT50_32X4D: &[PretrainedCfg] = &[tt("racm_in1k"), bic("gluon_in1k")];
pub(crate) static SERESNEXT101_32X4D: &[PretrainedCfg] = &[bic("gluon_in1k")];
pub(crate) static SERESNEXT101_32X8D: &[PretrainedCfg] = &[rsb("ah_in1k")];
pub(crate) static SERESNEXT101D_32X8D: &[PretrainedCfg] = &[deep(rsb("ah_in1k"))];
pub(crate) static SERESNEXT101_64X4D: &[PretrainedCfg] = &[bic("gluon_in1k")];
pub(crate) static SENET154: &[PretrainedCfg] = &[deep(bic("gluon_in1k"))];

pub(crate) static ECARESNET26T: &[PretrainedCfg] = &[deep(bic("ra2_in1k").size(256).test_size(320))];
pub(crate) static ECARESNET50D: &[PretrainedCfg] = &[deep(bic("miil_in1k").test_size(288))];
pub(crate) static ECARESNET50T: &[PretrainedCfg] = &[deep(bic("ra2_in1k").size(256).test_size(320))];
pub(crate) static ECARESNET101D: &[PretrainedCfg] = &[deep(bic("miil_in1k").test_size(288))];
pub(crate) static ECARESNET200D: &[PretrainedCfg] = &[deep(tt("untrained").size(256).crop(0.95))];
pub(crate) static ECARESNET269D: &[PretrainedCfg] = &[deep(tt("ra2_in1k").size(320).crop(0.95).test_size(352))];
pub(crate) static ECARESNEXT26T_32X4D: &[PretrainedCfg] = &[deep(bic("untrained"))];
pub(crate) static ECARESNEXT50T_32X4D: &[PretrainedCfg] = &[deep(bic("untrained"))];
pub(crate) static ECARESNETLIGHT: &[PretrainedCfg] = &[bic("miil_in1k").test_size(288)];

/// timm's ResNet-RS configs (`_cfg`, bicubic, TF ports).
const fn rs(size: usize, crop: f64, test: usize) -> PretrainedCfg {
    deep(bic("tf_in1k").size(size).crop(crop).test_size(test))
}
pub(crate) static RESNETRS50: &[PretrainedCfg] = &[rs(160, 0.91, 224)];
pub(crate) static RESNETRS101: &[PretrainedCfg] = &[rs(192, 0.94, 288)];
pub(crate) static RESNETRS152: &[PretrainedCfg] = &[rs(256, 1.0, 320)];
pub(crate) static RESNETRS200: &[PretrainedCfg] = &[rs(256, 1.0, 320)];
pub(crate) static RESNETRS270: &[PretrainedCfg] = &[rs(256, 1.0, 352)];
pub(crate) static RESNETRS350: &[PretrainedCfg] = &[rs(288, 1.0, 384)];
pub(crate) static RESNETRS420: &[PretrainedCfg] = &[rs(320, 1.0, 416)];

// ---------------------------------------------------------------- entry points

/// The options of one registered variant, applied over [`ResNetConfig`]'s defaults.
#[derive(Clone, Copy)]
struct V {
    layers: [usize; 4],
    bottleneck: bool,
    card: usize,
    width: usize,
    stem: StemType,
    stem_width: usize,
    avg_down: bool,
    attn: AttnLayer,
}

/// A plain (torchvision) ResNet with `layers` of basic or bottleneck blocks.
const fn v(layers: [usize; 4], bottleneck: bool) -> V {
    V {
        layers,
        bottleneck,
        card: 1,
        width: 64,
        stem: StemType::Plain,
        stem_width: 64,
        avg_down: false,
        attn: AttnLayer::None,
    }
}

impl V {
    /// ResNeXt `card x width d`.
    const fn x(mut self, card: usize, width: usize) -> Self {
        self.card = card;
        self.base(width)
    }
    const fn base(mut self, width: usize) -> Self {
        self.width = width;
        self
    }
    /// `c`: deep stem 32-32-64.
    const fn c(mut self) -> Self {
        self.stem = StemType::Deep;
        self.stem_width = 32;
        self
    }
    /// `d`: deep stem 32-32-64 and average-pool shortcuts.
    const fn d(mut self) -> Self {
        self.avg_down = true;
        self.c()
    }
    /// `s`: deep stem 64-64-128.
    const fn s(mut self) -> Self {
        self.stem = StemType::Deep;
        self
    }
    /// `t`: tiered deep stem 24-32-64 and average-pool shortcuts.
    const fn t(mut self) -> Self {
        self.stem = StemType::DeepTiered;
        self.stem_width = 32;
        self.avg_down = true;
        self
    }
    const fn se(mut self) -> Self {
        self.attn = AttnLayer::SE;
        self
    }
    const fn eca(mut self) -> Self {
        self.attn = AttnLayer::ECA;
        self
    }

    fn build(self, arch: &'static str, opts: ZooOpts, tweak: impl FnOnce(&mut ResNetConfig)) -> Result<Model> {
        build(arch, opts, |vb, a| {
            let mut cfg = ResNetConfig {
                layers: self.layers,
                block: if self.bottleneck { BlockType::Bottleneck } else { BlockType::Basic },
                cardinality: self.card,
                base_width: self.width,
                stem_type: self.stem,
                stem_width: self.stem_width,
                avg_down: self.avg_down,
                attn_layer: self.attn,
                ..a.into()
            };
            tweak(&mut cfg);
            Ok(Box::new(ResNet::new(vb, cfg)?))
        })
    }
}

const R18: [usize; 4] = [2, 2, 2, 2];
const R34: [usize; 4] = [3, 4, 6, 3];
const R101: [usize; 4] = [3, 4, 23, 3];
const R152: [usize; 4] = [3, 8, 36, 3];
const R200: [usize; 4] = [3, 24, 36, 3];
const R269: [usize; 4] = [3, 30, 48, 8];

macro_rules! variants {
    ($($(#[$doc:meta])* $name:ident => $v:expr;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(opts: ZooOpts) -> Result<Model> {
                $v.build(stringify!($name), opts, |_| {})
            }
        )*
    };
}

variants! {
    /// ResNet-10-T: tiered deep stem, average-pool shortcuts, one basic block per stage.
    resnet10t => v([1, 1, 1, 1], false).t();
    /// ResNet-14-T: as ResNet-10-T with bottlenecks.
    resnet14t => v([1, 1, 1, 1], true).t();
    /// ResNet-18 (11.7M params).
    resnet18 => v(R18, false);
    /// ResNet-18-D.
    resnet18d => v(R18, false).d();
    /// ResNet-26 (bottlenecks, two per stage).
    resnet26 => v(R18, true);
    /// ResNet-26-D.
    resnet26d => v(R18, true).d();
    /// ResNet-26-T.
    resnet26t => v(R18, true).t();
    /// ResNet-34.
    resnet34 => v(R34, false);
    /// ResNet-34-D.
    resnet34d => v(R34, false).d();
    /// ResNet-50 (25.6M params).
    resnet50 => v(R34, true);
    /// ResNet-50-C (deep stem).
    resnet50c => v(R34, true).c();
    /// ResNet-50-D (deep stem, average-pool shortcuts).
    resnet50d => v(R34, true).d();
    /// ResNet-50-S (wide deep stem).
    resnet50s => v(R34, true).s();
    /// ResNet-50-T (tiered deep stem, average-pool shortcuts).
    resnet50t => v(R34, true).t();
    /// ResNet-101.
    resnet101 => v(R101, true);
    /// ResNet-101-C.
    resnet101c => v(R101, true).c();
    /// ResNet-101-D.
    resnet101d => v(R101, true).d();
    /// ResNet-101-S.
    resnet101s => v(R101, true).s();
    /// ResNet-152.
    resnet152 => v(R152, true);
    /// ResNet-152-C.
    resnet152c => v(R152, true).c();
    /// ResNet-152-D.
    resnet152d => v(R152, true).d();
    /// ResNet-152-S.
    resnet152s => v(R152, true).s();
    /// ResNet-200.
    resnet200 => v(R200, true);
    /// ResNet-200-D.
    resnet200d => v(R200, true).d();
    /// ResNeXt-50 32x4d.
    resnext50_32x4d => v(R34, true).x(32, 4);
    /// ResNeXt-50-D 32x4d.
    resnext50d_32x4d => v(R34, true).x(32, 4).d();
    /// ResNeXt-101 32x4d.
    resnext101_32x4d => v(R101, true).x(32, 4);
    /// ResNeXt-101 32x8d (torchvision's).
    resnext101_32x8d => v(R101, true).x(32, 8);
    /// ResNeXt-101 32x16d (Facebook's weakly supervised).
    resnext101_32x16d => v(R101, true).x(32, 16);
    /// ResNeXt-101 32x32d (Facebook's weakly supervised).
    resnext101_32x32d => v(R101, true).x(32, 32);
    /// ResNeXt-101 64x4d.
    resnext101_64x4d => v(R101, true).x(64, 4);
    /// SE-ResNet-18.
    seresnet18 => v(R18, false).se();
    /// SE-ResNet-34.
    seresnet34 => v(R34, false).se();
    /// SE-ResNet-50.
    seresnet50 => v(R34, true).se();
    /// SE-ResNet-50-T.
    seresnet50t => v(R34, true).t().se();
    /// SE-ResNet-101.
    seresnet101 => v(R101, true).se();
    /// SE-ResNet-152.
    seresnet152 => v(R152, true).se();
    /// SE-ResNet-152-D.
    seresnet152d => v(R152, true).d().se();
    /// SE-ResNet-200-D.
    seresnet200d => v(R200, true).d().se();
    /// SE-ResNet-269-D.
    seresnet269d => v(R269, true).d().se();
    /// SE-ResNeXt-26-D 32x4d.
    seresnext26d_32x4d => v(R18, true).x(32, 4).d().se();
    /// SE-ResNeXt-26-T 32x4d.
    seresnext26t_32x4d => v(R18, true).x(32, 4).t().se();
    /// SE-ResNeXt-50 32x4d.
    seresnext50_32x4d => v(R34, true).x(32, 4).se();
    /// SE-ResNeXt-101 32x4d.
    seresnext101_32x4d => v(R101, true).x(32, 4).se();
    /// SE-ResNeXt-101 32x8d.
    seresnext101_32x8d => v(R101, true).x(32, 8).se();
    /// SE-ResNeXt-101-D 32x8d.
    seresnext101d_32x8d => v(R101, true).x(32, 8).d().se();
    /// SE-ResNeXt-101 64x4d.
    seresnext101_64x4d => v(R101, true).x(64, 4).se();
    /// ECA-ResNet-26-T.
    ecaresnet26t => v(R18, true).t().eca();
    /// ECA-ResNet-50-D.
    ecaresnet50d => v(R34, true).d().eca();
    /// ECA-ResNet-50-T.
    ecaresnet50t => v(R34, true).t().eca();
    /// ECA-ResNet-101-D.
    ecaresnet101d => v(R101, true).d().eca();
    /// ECA-ResNet-200-D.
    ecaresnet200d => v(R200, true).d().eca();
    /// ECA-ResNet-269-D.
    ecaresnet269d => v(R269, true).d().eca();
    /// ECA-ResNeXt-26-T 32x4d.
    ecaresnext26t_32x4d => v(R18, true).x(32, 4).t().eca();
    /// ECA-ResNeXt-50-T 32x4d.
    ecaresnext50t_32x4d => v(R34, true).x(32, 4).t().eca();
    /// ECA-ResNet-Light: the plain 7x7 stem, average-pool shortcuts, stages of 1, 1, 11, 3.
    ecaresnetlight => { let mut r = v([1, 1, 11, 3], true).eca(); r.avg_down = true; r };
}

/// SENet-154 as timm's `resnet.py` builds it (Gluon weights): ResNeXt-152 64x4d with a
/// 64-64-128 deep stem, each block's first conv at half width, 3x3 strided shortcut convs
/// and squeeze-excitation.
pub fn senet154(opts: ZooOpts) -> Result<Model> {
    v(R152, true).x(64, 4).s().se().build("senet154", opts, |c| {
        c.down_kernel_size = 3;
        c.block_reduce_first = 2;
    })
}

/// ResNet-RS (Bello et al. 2021): `d` shortcuts, a 32-32-64 deep stem whose max pool is a
/// strided conv, squeeze-excitation at a quarter of the width.
fn resnetrs(arch: &'static str, layers: [usize; 4], opts: ZooOpts) -> Result<Model> {
    let mut r = v(layers, true).d();
    r.attn = AttnLayer::Se(SeConfig::timm().with_ratio(0.25));
    r.build(arch, opts, |c| c.replace_stem_pool = true)
}

/// ResNet-RS-50.
pub fn resnetrs50(opts: ZooOpts) -> Result<Model> {
    resnetrs("resnetrs50", R34, opts)
}
/// ResNet-RS-101.
pub fn resnetrs101(opts: ZooOpts) -> Result<Model> {
    resnetrs("resnetrs101", R101, opts)
}
/// ResNet-RS-152.
pub fn resnetrs152(opts: ZooOpts) -> Result<Model> {
    resnetrs("resnetrs152", R152, opts)
}
/// ResNet-RS-200.
pub fn resnetrs200(opts: ZooOpts) -> Result<Model> {
    resnetrs("resnetrs200", R200, opts)
}
/// ResNet-RS-270.
pub fn resnetrs270(opts: ZooOpts) -> Result<Model> {
    resnetrs("resnetrs270", [4, 29, 53, 4], opts)
}
/// ResNet-RS-350.
pub fn resnetrs350(opts: ZooOpts) -> Result<Model> {
    resnetrs("resnetrs350", [4, 36, 72, 4], opts)
}
/// ResNet-RS-420.
pub fn resnetrs420(opts: ZooOpts) -> Result<Model> {
    resnetrs("resnetrs420", [4, 44, 87, 4], opts)
}

// ---------------------------------------------------------------- registry

/// The registered variants of this family, each one line (`name`, pretrained configs).
pub(crate) static MODELS: &[ModelEntry] = &[
    register!(resnet10t, RESNET10T),
    register!(resnet14t, RESNET14T),
    register!(resnet18, RESNET18),
    register!(resnet18d, RESNET18D),
    register!(resnet26, RESNET26),
    register!(resnet26d, RESNET26D),
    register!(resnet26t, RESNET26T),
    register!(resnet34, RESNET34),
    register!(resnet34d, RESNET34D),
    register!(resnet50, RESNET50),
    register!(resnet50c, RESNET50C),
    register!(resnet50d, RESNET50D),
    register!(resnet50s, RESNET50S),
    register!(resnet50t, RESNET50T),
    register!(resnet101, RESNET101),
    register!(resnet101c, RESNET101C),
    register!(resnet101d, RESNET101D),
    register!(resnet101s, RESNET101S),
    register!(resnet152, RESNET152),
    register!(resnet152c, RESNET152C),
    register!(resnet152d, RESNET152D),
    register!(resnet152s, RESNET152S),
    register!(resnet200, RESNET200),
    register!(resnet200d, RESNET200D),
    register!(resnext50_32x4d, RESNEXT50_32X4D),
    register!(resnext50d_32x4d, RESNEXT50D_32X4D),
    register!(resnext101_32x4d, RESNEXT101_32X4D),
    register!(resnext101_32x8d, RESNEXT101_32X8D),
    register!(resnext101_32x16d, RESNEXT101_32X16D),
    register!(resnext101_32x32d, RESNEXT101_32X32D),
    register!(resnext101_64x4d, RESNEXT101_64X4D),
    register!(seresnet18, SERESNET18),
    register!(seresnet34, SERESNET34),
    register!(seresnet50, SERESNET50),
    register!(seresnet50t, SERESNET50T),
    register!(seresnet101, SERESNET101),
    register!(seresnet152, SERESNET152),
    register!(seresnet152d, SERESNET152D),
    register!(seresnet200d, SERESNET200D),
    register!(seresnet269d, SERESNET269D),
    register!(seresnext26d_32x4d, SERESNEXT26D_32X4D),
    register!(seresnext26t_32x4d, SERESNEXT26T_32X4D),
    register!(seresnext50_32x4d, SERESNEXT50_32X4D),
    register!(seresnext101_32x4d, SERESNEXT101_32X4D),
    register!(seresnext101_32x8d, SERESNEXT101_32X8D),
    register!(seresnext101d_32x8d, SERESNEXT101D_32X8D),
    register!(seresnext101_64x4d, SERESNEXT101_64X4D),
    register!(ecaresnet26t, ECARESNET26T),
    register!(ecaresnet50d, ECARESNET50D),
    register!(ecaresnet50t, ECARESNET50T),
    register!(ecaresnet101d, ECARESNET101D),
    register!(ecaresnet200d, ECARESNET200D),
    register!(ecaresnet269d, ECARESNET269D),
    register!(ecaresnext26t_32x4d, ECARESNEXT26T_32X4D),
    register!(ecaresnext50t_32x4d, ECARESNEXT50T_32X4D),
    register!(ecaresnetlight, ECARESNETLIGHT),
    register!(senet154, SENET154),
    register!(resnetrs50, RESNETRS50),
    register!(resnetrs101, RESNETRS101),
    register!(resnetrs152, RESNETRS152),
    register!(resnetrs200, RESNETRS200),
    register!(resnetrs270, RESNETRS270),
    register!(resnetrs350, RESNETRS350),
    register!(resnetrs420, RESNETRS420),
];

// ---------------------------------------------------------------- tests

#[cfg(test)]
mod tests {
    use super::*;
    use convnet_nn::context::Mode;
    use convnet_nn::store::Params;
    use std::cell::RefCell;

    /// A block another family might plug in: one conv-norm-ReLU of twice `planes`, plus
    /// the network's shortcut.
    #[derive(Debug)]
    struct Wide;

    #[derive(Debug)]
    struct WideBlock {
        conv: ConvBnAct,
        downsample: Option<Downsample>,
    }

    impl ResidualBlock for WideBlock {
        fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
            let s = match &self.downsample {
                Some(d) => d.forward(cx, x)?,
                None => x.clone(),
            };
            Ok(self.conv.forward(cx, x)?.add(&s)?)
        }
    }

    impl BlockFactory for Wide {
        fn expansion(&self) -> usize {
            2
        }
        fn build(&self, a: BlockArgs<'_>) -> Result<Box<dyn ResidualBlock>> {
            let o = ConvOpts::stride(a.stride);
            let conv = ConvBnAct::new(
                &a.vb.pp("conv"),
                &a.vb.pp("bn"),
                a.inplanes,
                a.planes * 2,
                (3, 3),
                o,
                EPS,
                Activation::Relu,
            );
            Ok(Box::new(WideBlock { conv, downsample: a.downsample }))
        }
    }

    #[test]
    fn another_family_plugs_its_block_into_the_resnet() {
        let args = ModelArgs { num_classes: 5, in_chans: 3, drop_rate: 0.0, drop_path_rate: 0.0 };
        let cfg = ResNetConfig {
            layers: [1, 2, 1, 1],
            block: BlockType::Custom(Arc::new(Wide)),
            stem_type: StemType::DeepTiered,
            stem_width: 32,
            avg_down: true,
            ..ResNetConfig::from(&args)
        };
        assert_eq!(cfg.block, BlockType::Custom(Arc::new(Wide)));
        assert_ne!(cfg.block, BlockType::Basic);
        let store = RefCell::new(Params::new());
        let net = ResNet::new(&Vb::root(&store, 1), cfg).unwrap();
        let params = store.into_inner();
        let keys = params.key_shape_lines();
        for k in
            ["conv1.0.weight:24,3,3,3", "layer2.0.conv.weight:256,128,3,3", "layer2.0.downsample.1.weight:256,128,1,1"]
        {
            assert!(keys.iter().any(|l| l == k), "{k}");
        }
        assert!(!keys.iter().any(|l| l.starts_with("layer2.1.downsample")), "only a block that changes shape projects");
        let cx = Cx::new(&params, Mode::Eval, 0);
        let f = net.forward_features(&cx, &Tensor::zeros([1, 65, 65, 3])).unwrap();
        assert_eq!(f.dims(), [1, 3, 3, 1024]);
        assert_eq!(net.forward_head(&cx, &f, false).unwrap().dims(), [1, 5]);
    }
}
