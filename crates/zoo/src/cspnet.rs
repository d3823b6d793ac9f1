//! Cross Stage Partial networks (Wang et al. 2019, "CSPNet: A New Backbone that can
//! Enhance Learning Capability of CNN") as timm's `cspnet.py` builds CSPResNet(X)-50 and
//! CSPDarkNet-53: a conv stem, then stages that widen the input with a 1x1 conv, split its
//! channels in two halves, run residual blocks on the second half only, and join both
//! halves again through transition 1x1 convs. Batch norm and leaky ReLU (slope 0.01)
//! throughout. The architectures are data, as timm's `CspModelCfg`.
//!
//! Of timm's stage types only the cross stage (`csp`) is built, with bottleneck (ResNet)
//! or dark (DarkNet) blocks: the plain DarkNets (`dark` stages) and the `cs3` models
//! (`CrossStage3`, edge blocks, squeeze-excitation) are not registered here.

use crate::Model;
use crate::error::{Result, ZooError};
use crate::layers::{ClassifierHead, ConvBnAct, ConvOpts, drop_path, max_pool};
use crate::model::{Architecture, ModelArgs, ZooOpts, build};
use crate::pretrained::PretrainedCfg;
use crate::registry::{ModelEntry, register};
use convnet_nn::context::Cx;
use convnet_nn::store::Vb;
use convnet_tensor::{Activation, Tensor};

const EPS: f32 = 1e-5;

// ---------------------------------------------------------------- config

/// The residual block a stage repeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockType {
    /// timm's `BottleneckBlock`: 1x1, grouped 3x3, linear 1x1, sum, activation.
    Bottle,
    /// timm's `DarkBlock`: 1x1, 3x3, sum (no activation after the sum).
    Dark,
}

/// timm's `CspStemCfg`: one conv per entry of `out_chs`, then an optional max pool.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CspStemCfg {
    /// Width of each stem conv.
    pub out_chs: &'static [usize],
    /// Total stride of the stem (1, 2 or 4).
    pub stride: usize,
    /// Kernel of every stem conv.
    pub kernel_size: usize,
    /// A 3x3 stride-2 max pool after the convs (stride 4 stems).
    pub pool: bool,
}

/// timm's `CspStagesCfg`. A per-stage slice shorter than `depth` is padded with its last
/// value, as timm's `_pad_arg` does (`stride: &[1, 2]` is 1, 2, 2, 2 for four stages).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CspStagesCfg {
    /// Blocks per stage.
    pub depth: &'static [usize],
    /// Output width of each stage.
    pub out_chs: &'static [usize],
    /// Stride of each stage's down-sampling conv (none for stride 1).
    pub stride: &'static [usize],
    /// Groups of the 3x3 convs.
    pub groups: &'static [usize],
    /// Block width over the stage's output width.
    pub block_ratio: &'static [f64],
    /// Bottleneck width over the block width.
    pub bottle_ratio: &'static [f64],
    /// Width of the expansion conv over the stage's output width (split in two halves).
    pub expand_ratio: &'static [f64],
    /// The expansion conv has no activation.
    pub cross_linear: bool,
    /// The down-sampling conv goes straight to the output width (else it keeps the input's).
    pub down_growth: bool,
    /// Block type of every stage.
    pub block_type: BlockType,
}

impl CspStagesCfg {
    /// The defaults of timm's dataclass for the given depths and widths.
    pub const fn new(depth: &'static [usize], out_chs: &'static [usize]) -> Self {
        CspStagesCfg {
            depth,
            out_chs,
            stride: &[2],
            groups: &[1],
            block_ratio: &[1.0],
            bottle_ratio: &[1.0],
            expand_ratio: &[1.0],
            cross_linear: false,
            down_growth: false,
            block_type: BlockType::Bottle,
        }
    }
}

/// timm's `CspModelCfg`: stem, stages and the activation of every conv.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CspModelCfg {
    /// The stem.
    pub stem: CspStemCfg,
    /// The stages.
    pub stages: CspStagesCfg,
    /// Activation after every norm that has one.
    pub act: Activation,
}

/// `v[i]`, or the last value when `v` is shorter (timm's `_pad_arg`).
fn pad<T: Copy>(v: &[T], i: usize, what: &'static str) -> Result<T> {
    v.get(i).or(v.last()).copied().ok_or_else(|| ZooError::arg(what, "needs at least one value"))
}

/// `int(round(c * ratio))` (ties to even as Python's `round`).
fn scaled(c: usize, ratio: f64) -> usize {
    (c as f64 * ratio).round_ties_even() as usize
}

// ---------------------------------------------------------------- blocks

#[derive(Debug)]
struct Block {
    path: String,
    kind: BlockType,
    /// `conv1`, `conv2` (and `conv3` for bottlenecks); the last one is summed with the input.
    convs: Vec<ConvBnAct>,
    act: Activation,
    drop_path: f32,
}

impl Block {
    #[allow(clippy::too_many_arguments)]
    fn new(
        vb: &Vb,
        kind: BlockType,
        cin: usize,
        cout: usize,
        bottle_ratio: f64,
        groups: usize,
        act: Activation,
        dpr: f32,
    ) -> Self {
        let mid = scaled(cout, bottle_ratio);
        let cna = |i: usize, ci, co, k, o, a| ConvBnAct::timm(&vb.pp(format!("conv{i}")), ci, co, k, o, EPS, a);
        let convs = match kind {
            BlockType::Bottle => vec![
                cna(1, cin, mid, 1, ConvOpts::default(), act),
                cna(2, mid, mid, 3, ConvOpts::default().with_groups(groups), act),
                cna(3, mid, cout, 1, ConvOpts::default(), Activation::Linear),
            ],
            BlockType::Dark => vec![
                cna(1, cin, mid, 1, ConvOpts::default(), act),
                cna(2, mid, cout, 3, ConvOpts::default().with_groups(groups), act),
            ],
        };
        Block { path: vb.prefix().to_string(), kind, convs, act, drop_path: dpr }
    }

    /// `x: [n, h, w, c] -> [n, h, w, c]` (the identity shortcut needs equal widths).
    fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let (last, first) = self.convs.split_last().expect("a block has convs");
        let mut y = x.clone();
        for c in first {
            y = c.forward(cx, &y)?;
        }
        // only the bottleneck activates after the sum
        let after = if self.kind == BlockType::Bottle { self.act } else { Activation::Linear };
        let y = if cx.training() && self.drop_path > 0.0 {
            let y = drop_path(cx, &last.forward(cx, &y)?, self.drop_path)?;
            crate::layers::act(&y.add(x)?, after)
        } else {
            last.forward_add(cx, &y, x, after)?
        };
        let name = if self.kind == BlockType::Bottle { "BottleneckBlock" } else { "DarkBlock" };
        cx.record(&self.path, name, &y);
        Ok(y)
    }
}

/// timm's `CrossStage`: optional down-sampling conv, expansion conv, blocks on the second
/// half of its channels, `conv_transition_b` on them, `conv_transition` on both halves.
#[derive(Debug)]
struct CrossStage {
    path: String,
    conv_down: Option<ConvBnAct>,
    conv_exp: ConvBnAct,
    blocks: Vec<Block>,
    conv_transition_b: ConvBnAct,
    conv_transition: ConvBnAct,
    /// Channels of the expansion conv's output.
    exp_chs: usize,
}

impl CrossStage {
    fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let x = match &self.conv_down {
            Some(c) => c.forward(cx, x)?,
            None => x.clone(),
        };
        let x = self.conv_exp.forward(cx, &x)?;
        let half = self.exp_chs / 2;
        let cross = x.narrow(3, 0, half)?;
        let mut b = x.narrow(3, half, self.exp_chs - half)?;
        for blk in &self.blocks {
            b = blk.forward(cx, &b)?;
        }
        let b = self.conv_transition_b.forward(cx, &b)?;
        let y = self.conv_transition.forward(cx, &Tensor::concat(&[&cross, &b], 3)?)?;
        cx.record(&self.path, "CrossStage", &y);
        Ok(y)
    }
}

// ---------------------------------------------------------------- model

/// What distinguishes one CSPNet from another: the architecture and timm's options.
#[derive(Clone, Debug, PartialEq)]
pub struct CspNetConfig {
    /// The architecture.
    pub model: CspModelCfg,
    /// Classes (0: no classifier).
    pub num_classes: usize,
    /// Input channels.
    pub in_chans: usize,
    /// Dropout before the classifier.
    pub drop_rate: f32,
    /// Stochastic-depth rate of the last block (linear from 0 over all blocks).
    pub drop_path_rate: f32,
}

impl CspNetConfig {
    /// `model` with the options of `a`.
    pub fn new(model: CspModelCfg, a: &ModelArgs) -> Self {
        CspNetConfig {
            model,
            num_classes: a.num_classes,
            in_chans: a.in_chans,
            drop_rate: a.drop_rate,
            drop_path_rate: a.drop_path_rate,
        }
    }
}

/// CSPNet: `stem.conv{i}.{conv,bn}`, `stages.{s}.{conv_down,conv_exp,conv_transition_b,
/// conv_transition}.{conv,bn}`, `stages.{s}.blocks.{b}.conv{1,2,3}.{conv,bn}`, `head.fc`.
#[derive(Debug)]
pub struct CspNet {
    stem: Vec<ConvBnAct>,
    stem_pool: bool,
    stages: Vec<CrossStage>,
    head: ClassifierHead,
}

impl CspNet {
    /// Builds the network under `vb`.
    pub fn new(vb: &Vb, cfg: CspNetConfig) -> Result<Self> {
        let m = &cfg.model;
        let act = m.act;
        // the stem: the first conv strides 2; a stride-4 stem without pool strides its last too
        let st = &m.stem;
        if !matches!(st.stride, 1 | 2 | 4) || st.out_chs.is_empty() || (st.pool && st.stride < 4) {
            return Err(ZooError::arg("stem", format!("unsupported stem {st:?}")));
        }
        let last = st.out_chs.len() - 1;
        let mut c = cfg.in_chans;
        let mut stem = Vec::new();
        for (i, &chs) in st.out_chs.iter().enumerate() {
            let s = if (i == 0 && st.stride > 1) || (i == last && st.stride > 2 && !st.pool) { 2 } else { 1 };
            let v = vb.pp("stem").pp(format!("conv{}", i + 1));
            stem.push(ConvBnAct::timm(&v, c, chs, st.kernel_size, ConvOpts::stride(s), EPS, act));
            c = chs;
        }

        let sc = &m.stages;
        if sc.out_chs.len() != sc.depth.len() {
            return Err(ZooError::arg("stages", "depth and out_chs need one value per stage"));
        }
        let total: usize = sc.depth.iter().sum();
        let mut idx = 0;
        let mut stages = Vec::new();
        for (s, (&depth, &out)) in sc.depth.iter().zip(sc.out_chs).enumerate() {
            let v = vb.pp("stages").pp(s);
            let stride = pad(sc.stride, s, "stride")?;
            let groups = pad(sc.groups, s, "groups")?;
            let exp_chs = scaled(out, pad(sc.expand_ratio, s, "expand_ratio")?);
            let block_chs = scaled(out, pad(sc.block_ratio, s, "block_ratio")?);
            let bottle_ratio = pad(sc.bottle_ratio, s, "bottle_ratio")?;
            if groups == 0 || exp_chs < 2 || !exp_chs.is_multiple_of(2) {
                return Err(ZooError::arg(
                    "stages",
                    format!("stage {s}: {exp_chs} expanded channels, {groups} groups"),
                ));
            }
            let conv_down = (stride != 1).then(|| {
                let down = if sc.down_growth { out } else { c };
                let o = ConvOpts::stride(stride).with_groups(groups);
                let conv = ConvBnAct::timm(&v.pp("conv_down"), c, down, 3, o, EPS, act);
                c = down;
                conv
            });
            let exp_act = if sc.cross_linear { Activation::Linear } else { act };
            let conv_exp = ConvBnAct::timm(&v.pp("conv_exp"), c, exp_chs, 1, ConvOpts::default(), EPS, exp_act);
            let half = exp_chs / 2;
            let mut bc = exp_chs - half;
            let mut blocks = Vec::new();
            for b in 0..depth {
                if bc != block_chs {
                    return Err(ZooError::arg(
                        "stages",
                        format!("stage {s}: blocks of {block_chs} channels cannot take {bc} (no shortcut projection)"),
                    ));
                }
                let dpr = cfg.drop_path_rate * idx as f32 / (total - 1).max(1) as f32;
                let vbb = v.pp("blocks").pp(b);
                blocks.push(Block::new(&vbb, sc.block_type, bc, block_chs, bottle_ratio, groups, act, dpr));
                bc = block_chs;
                idx += 1;
            }
            let o = ConvOpts::default();
            let conv_transition_b = ConvBnAct::timm(&v.pp("conv_transition_b"), bc, half, 1, o, EPS, act);
            let conv_transition = ConvBnAct::timm(&v.pp("conv_transition"), exp_chs, out, 1, o, EPS, act);
            stages.push(CrossStage {
                path: v.prefix().to_string(),
                conv_down,
                conv_exp,
                blocks,
                conv_transition_b,
                conv_transition,
                exp_chs,
            });
            c = out;
        }
        let head = ClassifierHead::new(&vb.pp("head").pp("fc"), c, cfg.num_classes, cfg.drop_rate);
        Ok(CspNet { stem, stem_pool: st.pool, stages, head })
    }
}

impl Architecture for CspNet {
    fn forward_features(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for (i, c) in self.stem.iter().enumerate() {
            x = c.forward(cx, &x)?;
            cx.record(&format!("stem.conv{}", i + 1), "ConvNormAct", &x);
        }
        if self.stem_pool {
            x = max_pool(&x, 3, 2, 1, false)?;
            cx.record("stem.pool", "MaxPool2d", &x);
        }
        for s in &self.stages {
            x = s.forward(cx, &x)?;
        }
        Ok(x)
    }
    fn forward_head(&self, cx: &Cx, x: &Tensor, pre_logits: bool) -> Result<Tensor> {
        let y = self.head.forward(cx, x, pre_logits)?;
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
        self.head =
            ClassifierHead::new(&vb.pp("head").pp("fc"), self.head.num_features, num_classes, self.head.drop_rate);
    }
}

// ---------------------------------------------------------------- architectures

const RESNET_DEPTHS: &[usize] = &[3, 3, 5, 2];
const LEAKY: Activation = Activation::LeakyRelu;

/// CSPResNet-50: 7x7 stem and max pool, bottlenecks at half width, expansion x2.
pub const CSPRESNET50_ARCH: CspModelCfg = CspModelCfg {
    stem: CspStemCfg { out_chs: &[64], stride: 4, kernel_size: 7, pool: true },
    stages: CspStagesCfg {
        stride: &[1, 2],
        expand_ratio: &[2.0],
        bottle_ratio: &[0.5],
        cross_linear: true,
        ..CspStagesCfg::new(RESNET_DEPTHS, &[128, 256, 512, 1024])
    },
    act: LEAKY,
};

/// CSPResNet-50-D: CSPResNet-50 with a deep stem of three 3x3 convs.
pub const CSPRESNET50D_ARCH: CspModelCfg = CspModelCfg {
    stem: CspStemCfg { out_chs: &[32, 32, 64], stride: 4, kernel_size: 3, pool: true },
    ..CSPRESNET50_ARCH
};

/// CSPResNet-50-W: deep stem, twice the stage widths, no expansion, quarter-width bottlenecks.
pub const CSPRESNET50W_ARCH: CspModelCfg = CspModelCfg {
    stem: CspStemCfg { out_chs: &[32, 32, 64], stride: 4, kernel_size: 3, pool: true },
    stages: CspStagesCfg {
        stride: &[1, 2],
        expand_ratio: &[1.0],
        bottle_ratio: &[0.25],
        block_ratio: &[0.5],
        cross_linear: true,
        ..CspStagesCfg::new(RESNET_DEPTHS, &[256, 512, 1024, 2048])
    },
    act: LEAKY,
};

/// CSPResNeXt-50: CSPResNet-50-W's widths with 32-group 3x3 convs at full bottleneck width.
pub const CSPRESNEXT50_ARCH: CspModelCfg = CspModelCfg {
    stem: CspStemCfg { out_chs: &[64], stride: 4, kernel_size: 7, pool: true },
    stages: CspStagesCfg {
        stride: &[1, 2],
        groups: &[32],
        expand_ratio: &[1.0],
        bottle_ratio: &[1.0],
        block_ratio: &[0.5],
        cross_linear: true,
        ..CspStagesCfg::new(RESNET_DEPTHS, &[256, 512, 1024, 2048])
    },
    act: LEAKY,
};

/// CSPDarkNet-53: one 3x3 stem conv at stride 1, five cross stages of dark blocks, the
/// first expanded x2 with half-width bottlenecks.
pub const CSPDARKNET53_ARCH: CspModelCfg = CspModelCfg {
    stem: CspStemCfg { out_chs: &[32], stride: 1, kernel_size: 3, pool: false },
    stages: CspStagesCfg {
        expand_ratio: &[2.0, 1.0],
        bottle_ratio: &[0.5, 1.0],
        block_ratio: &[1.0, 0.5],
        down_growth: true,
        block_type: BlockType::Dark,
        ..CspStagesCfg::new(&[1, 2, 8, 8, 4], &[64, 128, 256, 512, 1024])
    },
    act: LEAKY,
};

// ---------------------------------------------------------------- pretrained configs

/// timm's `_cfg` for CSPNets: 256x256 input, crop 0.887, bilinear, ImageNet mean/std.
const fn cfg(tag: &'static str) -> PretrainedCfg {
    PretrainedCfg::imagenet(tag, "stem.conv1.conv", "head.fc").size(256).crop(0.887)
}

pub(crate) static CSPRESNET50: &[PretrainedCfg] = &[cfg("ra_in1k")];
pub(crate) static CSPRESNET50D: &[PretrainedCfg] = &[cfg("untrained")];
pub(crate) static CSPRESNET50W: &[PretrainedCfg] = &[cfg("untrained")];
pub(crate) static CSPRESNEXT50: &[PretrainedCfg] = &[cfg("ra_in1k")];
pub(crate) static CSPDARKNET53: &[PretrainedCfg] = &[cfg("ra_in1k")];

// ---------------------------------------------------------------- entry points

fn cspnet(arch: &'static str, opts: ZooOpts, model: CspModelCfg) -> Result<Model> {
    build(arch, opts, |vb, a| Ok(Box::new(CspNet::new(vb, CspNetConfig::new(model, a))?)))
}

/// CSPResNet-50.
pub fn cspresnet50(opts: ZooOpts) -> Result<Model> {
    cspnet("cspresnet50", opts, CSPRESNET50_ARCH)
}
/// CSPResNet-50-D (untrained in timm).
pub fn cspresnet50d(opts: ZooOpts) -> Result<Model> {
    cspnet("cspresnet50d", opts, CSPRESNET50D_ARCH)
}
/// CSPResNet-50-W (untrained in timm).
pub fn cspresnet50w(opts: ZooOpts) -> Result<Model> {
    cspnet("cspresnet50w", opts, CSPRESNET50W_ARCH)
}
/// CSPResNeXt-50.
pub fn cspresnext50(opts: ZooOpts) -> Result<Model> {
    cspnet("cspresnext50", opts, CSPRESNEXT50_ARCH)
}
/// CSPDarkNet-53.
pub fn cspdarknet53(opts: ZooOpts) -> Result<Model> {
    cspnet("cspdarknet53", opts, CSPDARKNET53_ARCH)
}

// ---------------------------------------------------------------- registry

/// The registered variants of this family, each one line (`name`, pretrained configs).
pub(crate) static MODELS: &[ModelEntry] = &[
    register!(cspresnet50, CSPRESNET50),
    register!(cspresnet50d, CSPRESNET50D),
    register!(cspresnet50w, CSPRESNET50W),
    register!(cspresnext50, CSPRESNEXT50),
    register!(cspdarknet53, CSPDARKNET53),
];

// ---------------------------------------------------------------- tests

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_sgd_lowers_loss, random_images};

    #[test]
    fn stage_arguments_pad_with_their_last_value() {
        let s = CSPDARKNET53_ARCH.stages;
        assert_eq!(pad(s.expand_ratio, 0, "e").unwrap(), 2.0);
        assert_eq!(pad(s.expand_ratio, 4, "e").unwrap(), 1.0);
        assert_eq!(pad(s.stride, 3, "s").unwrap(), 2);
        assert!(pad::<usize>(&[], 0, "s").is_err());
        // Python's round: halves go to the even neighbour
        assert_eq!(scaled(5, 0.5), 2);
        assert_eq!(scaled(7, 0.5), 4);
    }

    #[test]
    fn cspresnet50_trains() {
        // leaky relu, the split and the concatenation all have gradients
        let mut m = cspresnet50(ZooOpts::new().with_num_classes(10).with_seed(5)).unwrap();
        assert_sgd_lowers_loss(&mut m);
    }

    #[test]
    fn darknet_features_and_bad_configs() {
        let m = cspdarknet53(ZooOpts::new().with_num_classes(3)).unwrap();
        let f = m.forward_features(&random_images(1, 64, 2)).unwrap();
        assert_eq!(f.dims(), [1, 2, 2, 1024]);
        // blocks whose width differs from the split half have no shortcut to add to
        let a = ModelArgs { num_classes: 10, in_chans: 3, drop_rate: 0.0, drop_path_rate: 0.0 };
        let bad = CspModelCfg {
            stages: CspStagesCfg { block_ratio: &[1.0], ..CSPRESNEXT50_ARCH.stages },
            ..CSPRESNEXT50_ARCH
        };
        let store = std::cell::RefCell::new(convnet_nn::store::Params::new());
        let err = CspNet::new(&Vb::root(&store, 0), CspNetConfig::new(bad, &a)).unwrap_err();
        assert!(err.to_string().contains("no shortcut"), "{err}");
    }
}
