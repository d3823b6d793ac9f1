//! "Bring your own blocks" networks, as timm's `timm/models/byobnet.py` builds them: a stem,
//! stages described as data (block type, depth, width, stride, group size, bottleneck
//! ratio), an optional final 1x1 conv and a classifier. Two families use it here:
//!
//! - GENet / GPU-Efficient Networks (Lin et al. 2020, "Neural Architecture Design for
//!   GPU-Efficient Networks"): `gernet_s/m/l`, basic blocks then bottlenecks with
//!   depthwise middles.
//! - RepVGG (Ding et al. 2021, "RepVGG: Making VGG-style ConvNets Great Again"):
//!   `repvgg_*`, blocks of a 3x3 conv, a 1x1 conv and (where shapes allow) a batch-norm
//!   identity, summed. For inference the three branches fold into one 3x3 conv
//!   ([`Model::reparameterize`], timm's `reparameterize_model`); training needs the
//!   branches, so a model is built with them and folded on request.

use crate::Model;
use crate::attention::{Attention, AttnLayer, SeConfig, SeReduce};
use crate::error::Result;
use crate::layers::{BatchNorm2d, ClassifierHead, Conv2d, ConvBnAct, ConvOpts, act, drop_path, make_divisible};
use crate::model::{Architecture, ModelArgs, ZooOpts, build};
use crate::pretrained::PretrainedCfg;
use crate::registry::{ModelEntry, register};
use convnet_nn::context::Cx;
use convnet_nn::store::{Layout, Params, Vb};
use convnet_tensor::{Activation, Tensor};

const EPS: f32 = 1e-5;

// ---------------------------------------------------------------- block definitions

/// The block a stage repeats (timm's `ByoBlockCfg.type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    /// `'basic'`: kxk conv, kxk conv (grouped), residual.
    Basic,
    /// `'bottle'`: 1x1 conv, kxk conv (grouped, strided), 1x1 conv, residual.
    Bottle,
    /// `'rep'`: RepVGG's kxk + 1x1 + identity-norm branches, summed.
    Rep,
}

/// Channels per group of a stage's grouped convs (timm's `gs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupSize {
    /// Ordinary convs (`gs=0`).
    Dense,
    /// This many channels per group (1: depthwise).
    Size(usize),
    /// RepVGG's `gN` variants: `out_chs / groups` channels per group on every second block
    /// of a stage (block index 1, 3, ...), ordinary convs on the others.
    AlternateGroups(usize),
}

impl GroupSize {
    /// Groups of a conv over `channels` in block `idx` of a stage of width `out_chs`
    /// (timm's `num_groups(group_size, channels)`).
    fn groups(self, out_chs: usize, idx: usize, channels: usize) -> usize {
        let size = match self {
            GroupSize::Dense => 0,
            GroupSize::Size(s) => s,
            GroupSize::AlternateGroups(g) if idx % 2 == 1 => out_chs / g.max(1),
            GroupSize::AlternateGroups(_) => 0,
        };
        channels.checked_div(size).unwrap_or(1).max(1)
    }
}

/// One stage of blocks (timm's `ByoBlockCfg`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StageDef {
    /// Block type.
    pub kind: BlockKind,
    /// Blocks in the stage.
    pub depth: usize,
    /// Output channels of every block (before the width factor).
    pub out_chs: usize,
    /// Stride of the first block.
    pub stride: usize,
    /// Group size of the grouped convs.
    pub group_size: GroupSize,
    /// Bottleneck ratio: middle width over output width.
    pub bottle_ratio: f64,
}

impl StageDef {
    /// A stage of `depth` blocks of `kind`, `out_chs` wide, first stride `stride`, dense
    /// convs, bottleneck ratio 1.
    pub const fn new(kind: BlockKind, depth: usize, out_chs: usize, stride: usize) -> Self {
        StageDef { kind, depth, out_chs, stride, group_size: GroupSize::Dense, bottle_ratio: 1.0 }
    }
    /// Sets the group size.
    pub const fn groups(mut self, g: GroupSize) -> Self {
        self.group_size = g;
        self
    }
    /// Sets the bottleneck ratio.
    pub const fn ratio(mut self, r: f64) -> Self {
        self.bottle_ratio = r;
        self
    }
}

/// The stem (timm's `stem_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StemKind {
    /// One 3x3 stride-2 conv-norm-act (`'3x3'` without pooling): keys `stem.conv`, `stem.bn`.
    Conv3x3,
    /// A stride-2 RepVGG block (`'rep'`): keys `stem.conv_kxk`, `stem.conv_1x1`.
    Rep,
}

/// Everything that distinguishes one ByobNet from another (timm's `ByoModelCfg` for the
/// options these families use, plus the construction arguments).
#[derive(Clone, Debug, PartialEq)]
pub struct ByobConfig {
    /// Stages in order.
    pub stages: Vec<StageDef>,
    /// Stem type.
    pub stem: StemKind,
    /// Stem width.
    pub stem_chs: usize,
    /// Width multiplier of stem and stages.
    pub width_factor: f64,
    /// Width of a final 1x1 conv-norm-act (0: none).
    pub num_features: usize,
    /// Attention of every block (RepVGG-D2se: squeeze-excitation).
    pub attn: AttnLayer,
    /// Classes (0: no classifier).
    pub num_classes: usize,
    /// Input channels.
    pub in_chans: usize,
    /// Dropout before the classifier.
    pub drop_rate: f32,
    /// Stochastic-depth rate of the last block.
    pub drop_path_rate: f32,
}

impl ByobConfig {
    /// A config with these stages and stem and the construction arguments of `a`.
    pub fn new(a: &ModelArgs, stages: Vec<StageDef>, stem: StemKind, stem_chs: usize, num_features: usize) -> Self {
        ByobConfig {
            stages,
            stem,
            stem_chs,
            width_factor: 1.0,
            num_features,
            attn: AttnLayer::None,
            num_classes: a.num_classes,
            in_chans: a.in_chans,
            drop_rate: a.drop_rate,
            drop_path_rate: a.drop_path_rate,
        }
    }
}

// ---------------------------------------------------------------- blocks

/// What every block is built from.
struct BlockCtx<'a> {
    vb: Vb<'a>,
    in_chs: usize,
    out_chs: usize,
    stride: usize,
    /// Groups of the block's grouped conv(s), from [`GroupSize::groups`].
    group_size: GroupSize,
    idx: usize,
    bottle_ratio: f64,
    attn: AttnLayer,
    drop_path: f32,
}

/// A conv-norm without activation (`apply_act=False`).
fn conv_bn(vb: &Vb, cin: usize, cout: usize, k: usize, o: ConvOpts) -> ConvBnAct {
    ConvBnAct::timm(vb, cin, cout, k, o, EPS, Activation::Linear)
}

/// A conv-norm-ReLU.
fn conv_bn_relu(vb: &Vb, cin: usize, cout: usize, k: usize, o: ConvOpts) -> ConvBnAct {
    ConvBnAct::timm(vb, cin, cout, k, o, EPS, Activation::Relu)
}

/// timm's `create_shortcut('conv1x1', ...)`: a strided 1x1 conv-norm when the shape
/// changes, the identity otherwise.
fn shortcut(b: &BlockCtx) -> Option<ConvBnAct> {
    (b.in_chs != b.out_chs || b.stride != 1)
        .then(|| conv_bn(&b.vb.pp("shortcut"), b.in_chs, b.out_chs, 1, ConvOpts::stride(b.stride)))
}

/// `act(main + shortcut(x))` with the last conv-norm of the main path: in eval mode
/// without attention the sum and ReLU run in the conv's store.
fn finish(
    cx: &Cx,
    last: &ConvBnAct,
    y: &Tensor,
    attn: Option<&Attention>,
    rate: f32,
    short: Option<Tensor>,
) -> Result<Tensor> {
    match (short, attn) {
        (Some(s), None) if !cx.training() => last.forward_add(cx, y, &s, Activation::Relu),
        (s, attn) => {
            let mut y = last.forward(cx, y)?;
            if let Some(a) = attn {
                y = a.forward(cx, y)?;
            }
            let y = drop_path(cx, &y, rate)?;
            let y = match s {
                Some(s) => y.add(&s)?,
                None => y,
            };
            Ok(act(&y, Activation::Relu))
        }
    }
}

/// timm's `BasicBlock`: `conv1_kxk` (strided), `conv2_kxk` (grouped, no activation),
/// attention on the output, residual, ReLU.
#[derive(Debug)]
struct BasicBlock {
    shortcut: Option<ConvBnAct>,
    conv1_kxk: ConvBnAct,
    conv2_kxk: ConvBnAct,
    attn: Option<Attention>,
    drop_path: f32,
}

impl BasicBlock {
    fn new(b: &BlockCtx) -> Self {
        let mid = make_divisible(b.out_chs as f64 * b.bottle_ratio, 8, None);
        let groups = b.group_size.groups(b.out_chs, b.idx, mid);
        BasicBlock {
            shortcut: shortcut(b),
            conv1_kxk: conv_bn_relu(&b.vb.pp("conv1_kxk"), b.in_chs, mid, 3, ConvOpts::stride(b.stride)),
            conv2_kxk: conv_bn(&b.vb.pp("conv2_kxk"), mid, b.out_chs, 3, ConvOpts::default().with_groups(groups)),
            attn: b.attn.build(&b.vb.pp("attn_last"), b.out_chs),
            drop_path: b.drop_path,
        }
    }

    fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let s = match &self.shortcut {
            Some(c) => c.forward(cx, x)?,
            None => x.clone(),
        };
        let y = self.conv1_kxk.forward(cx, x)?;
        finish(cx, &self.conv2_kxk, &y, self.attn.as_ref(), self.drop_path, Some(s))
    }
}

/// timm's `BottleneckBlock`: `conv1_1x1`, `conv2_kxk` (grouped, strided), attention on
/// the middle width, `conv3_1x1` (no activation), residual, ReLU.
#[derive(Debug)]
struct BottleneckBlock {
    shortcut: Option<ConvBnAct>,
    conv1_1x1: ConvBnAct,
    conv2_kxk: ConvBnAct,
    attn: Option<Attention>,
    conv3_1x1: ConvBnAct,
    drop_path: f32,
}

impl BottleneckBlock {
    fn new(b: &BlockCtx) -> Self {
        let mid = make_divisible(b.out_chs as f64 * b.bottle_ratio, 8, None);
        let groups = b.group_size.groups(b.out_chs, b.idx, mid);
        BottleneckBlock {
            shortcut: shortcut(b),
            conv1_1x1: conv_bn_relu(&b.vb.pp("conv1_1x1"), b.in_chs, mid, 1, ConvOpts::default()),
            conv2_kxk: conv_bn_relu(&b.vb.pp("conv2_kxk"), mid, mid, 3, ConvOpts::stride(b.stride).with_groups(groups)),
            attn: b.attn.build(&b.vb.pp("attn"), mid),
            conv3_1x1: conv_bn(&b.vb.pp("conv3_1x1"), mid, b.out_chs, 1, ConvOpts::default()),
            drop_path: b.drop_path,
        }
    }

    fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let s = match &self.shortcut {
            Some(c) => c.forward(cx, x)?,
            None => x.clone(),
        };
        let mut y = self.conv2_kxk.forward(cx, &self.conv1_1x1.forward(cx, x)?)?;
        if let Some(a) = &self.attn {
            y = a.forward(cx, y)?;
        }
        finish(cx, &self.conv3_1x1, &y, None, self.drop_path, Some(s))
    }
}

/// RepVGG's training-time branches.
#[derive(Debug)]
struct RepBranches {
    conv_kxk: ConvBnAct,
    conv_1x1: ConvBnAct,
    /// A batch norm on the input, when input and output shapes agree.
    identity: Option<BatchNorm2d>,
}

/// timm's `RepVggBlock`: `conv_kxk(x) + conv_1x1(x) + identity(x)`, attention, ReLU; or,
/// once re-parameterised, one `reparam_conv` (kxk, with bias) holding all three.
#[derive(Debug)]
struct RepVggBlock {
    path: String,
    branches: Option<RepBranches>,
    reparam_conv: Option<Conv2d>,
    attn: Option<Attention>,
    /// Stochastic depth of the conv branches (only with an identity branch, as timm).
    drop_path: f32,
}

impl RepVggBlock {
    fn new(b: &BlockCtx) -> Self {
        let groups = b.group_size.groups(b.out_chs, b.idx, b.in_chs);
        let use_ident = b.in_chs == b.out_chs && b.stride == 1;
        let o = ConvOpts::stride(b.stride).with_groups(groups);
        RepVggBlock {
            path: b.vb.prefix().to_string(),
            branches: Some(RepBranches {
                identity: use_ident.then(|| BatchNorm2d::new(&b.vb.pp("identity"), b.out_chs, EPS, Activation::Linear)),
                conv_kxk: conv_bn(&b.vb.pp("conv_kxk"), b.in_chs, b.out_chs, 3, o),
                conv_1x1: conv_bn(&b.vb.pp("conv_1x1"), b.in_chs, b.out_chs, 1, o),
            }),
            reparam_conv: None,
            attn: b.attn.build(&b.vb.pp("attn"), b.out_chs),
            drop_path: if use_ident { b.drop_path } else { 0.0 },
        }
    }

    fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let y = match (&self.reparam_conv, &self.branches) {
            (Some(conv), _) => {
                let w = cx.param(conv.weight);
                let b = conv.bias.map(|b| cx.param(b));
                let a = if self.attn.is_none() { Activation::Relu } else { Activation::Linear };
                let y = x.conv2d_act(&w, b.as_ref(), &conv.args, a)?;
                cx.add_macs((y.numel() * w.dims()[..3].iter().product::<usize>()) as u64);
                cx.note_output(y.numel());
                match &self.attn {
                    Some(attn) => act(&attn.forward(cx, y)?, Activation::Relu),
                    None => y,
                }
            }
            (None, Some(br)) => {
                let one = br.conv_1x1.forward(cx, x)?;
                if !cx.training() && self.attn.is_none() {
                    // eval: the 1x1 and identity branches are the residual of the kxk conv
                    let r = match &br.identity {
                        Some(id) => one.add(&id.forward(cx, x)?)?,
                        None => one,
                    };
                    br.conv_kxk.forward_add(cx, x, &r, Activation::Relu)?
                } else {
                    let mut y = br.conv_kxk.forward(cx, x)?.add(&one)?;
                    if let Some(id) = &br.identity {
                        y = drop_path(cx, &y, self.drop_path)?.add(&id.forward(cx, x)?)?;
                    }
                    if let Some(attn) = &self.attn {
                        y = attn.forward(cx, y)?;
                    }
                    act(&y, Activation::Relu)
                }
            }
            (None, None) => unreachable!("a RepVGG block keeps its branches until it has a reparam_conv"),
        };
        cx.record(&self.path, "RepVggBlock", &y);
        Ok(y)
    }

    /// Folds the branches into `reparam_conv` (timm's `RepVggBlock.reparameterize`): each
    /// branch's eval-mode norm scales its kernel and gives a bias, the 1x1 kernel sits at
    /// the centre of the kxk one and the identity is a centred one-hot kernel (within each
    /// group). The branch tensors leave the store; `{path}.reparam_conv.{weight,bias}`
    /// enter it. Returns whether anything was folded.
    fn reparameterize(&mut self, params: &mut Params) -> Result<bool> {
        let Some(br) = self.branches.take() else { return Ok(false) };
        let kxk = &br.conv_kxk.conv;
        let dims = params.get(kxk.weight).dims().to_vec();
        let [kh, kw, cin_g, cout] = dims[..] else { unreachable!("conv kernels are stored [kh, kw, in/groups, out]") };
        let (sk, bk) = br.conv_kxk.bn.eval_affine(params);
        let (s1, b1) = br.conv_1x1.bn.eval_affine(params);
        let wk = params.get(kxk.weight).data();
        let w1 = params.get(br.conv_1x1.conv.weight).data();
        // engine layout: index ((y * kw + x) * cin_g + i) * cout + o
        let mut w: Vec<f64> = wk.iter().enumerate().map(|(j, &v)| v as f64 * sk[j % cout] as f64).collect();
        let centre = (kh / 2) * kw + kw / 2;
        for (j, &v) in w1.iter().enumerate() {
            w[centre * cin_g * cout + j] += v as f64 * s1[j % cout] as f64;
        }
        let mut bias: Vec<f64> = bk.iter().zip(&b1).map(|(a, b)| *a as f64 + *b as f64).collect();
        if let Some(id) = &br.identity {
            let (si, bi) = id.eval_affine(params);
            for o in 0..cout {
                w[(centre * cin_g + o % cin_g) * cout + o] += si[o] as f64;
                bias[o] += bi[o] as f64;
            }
        }
        let args = kxk.args;
        let to_f32 = |v: Vec<f64>| -> Vec<f32> { v.into_iter().map(|x| x as f32).collect() };
        let w = Tensor::from_vec(to_f32(w), dims)?;
        let b = Tensor::from_vec(to_f32(bias), [cout])?;
        for branch in ["conv_kxk", "conv_1x1", "identity"] {
            params.remove_prefix(&format!("{}.{branch}", self.path));
        }
        let key = |name: &str| format!("{}.reparam_conv.{name}", self.path);
        let weight = params.insert(key("weight"), w, Layout::Conv, true, false);
        let bias = params.insert(key("bias"), b, Layout::Plain, true, false);
        self.reparam_conv = Some(Conv2d { weight, bias: Some(bias), args, out_ch: cout });
        Ok(true)
    }
}

/// A block of any kind.
#[derive(Debug)]
enum Block {
    Basic(BasicBlock),
    Bottle(BottleneckBlock),
    Rep(RepVggBlock),
}

impl Block {
    fn new(kind: BlockKind, b: &BlockCtx) -> Self {
        match kind {
            BlockKind::Basic => Block::Basic(BasicBlock::new(b)),
            BlockKind::Bottle => Block::Bottle(BottleneckBlock::new(b)),
            BlockKind::Rep => Block::Rep(RepVggBlock::new(b)),
        }
    }

    fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        match self {
            Block::Basic(b) => b.forward(cx, x),
            Block::Bottle(b) => b.forward(cx, x),
            Block::Rep(b) => b.forward(cx, x),
        }
    }
}

// ---------------------------------------------------------------- model

/// The stem.
#[derive(Debug)]
enum Stem {
    Conv(ConvBnAct),
    Rep(Box<RepVggBlock>),
}

/// A ByobNet: `stem`, `stages.{s}.{b}`, optional `final_conv`, `head.fc`.
#[derive(Debug)]
pub struct ByobNet {
    stem: Stem,
    stages: Vec<Vec<Block>>,
    final_conv: Option<ConvBnAct>,
    head: ClassifierHead,
}

impl ByobNet {
    /// Builds the network under `vb`.
    pub fn new(vb: &Vb, cfg: ByobConfig) -> Result<Self> {
        let stem_chs = (cfg.stem_chs as f64 * cfg.width_factor).round() as usize;
        let stem = match cfg.stem {
            StemKind::Conv3x3 => {
                Stem::Conv(conv_bn_relu(&vb.pp("stem"), cfg.in_chans, stem_chs, 3, ConvOpts::stride(2)))
            }
            StemKind::Rep => Stem::Rep(Box::new(RepVggBlock::new(&BlockCtx {
                vb: vb.pp("stem"),
                in_chs: cfg.in_chans,
                out_chs: stem_chs,
                stride: 2,
                group_size: GroupSize::Dense,
                idx: 0,
                bottle_ratio: 1.0,
                attn: cfg.attn,
                drop_path: 0.0,
            }))),
        };
        // timm's drop-path schedule: linear over all blocks, from 0 to the rate
        let total: usize = cfg.stages.iter().map(|s| s.depth).sum();
        let mut prev = stem_chs;
        let mut index = 0;
        let mut stages = Vec::with_capacity(cfg.stages.len());
        for (si, s) in cfg.stages.iter().enumerate() {
            let out_chs = make_divisible(s.out_chs as f64 * cfg.width_factor, 8, None);
            let mut blocks = Vec::with_capacity(s.depth);
            for bi in 0..s.depth {
                let ctx = BlockCtx {
                    vb: vb.pp("stages").pp(si).pp(bi),
                    in_chs: prev,
                    out_chs,
                    stride: if bi == 0 { s.stride } else { 1 },
                    group_size: s.group_size,
                    idx: bi,
                    bottle_ratio: s.bottle_ratio,
                    attn: cfg.attn,
                    drop_path: cfg.drop_path_rate * index as f32 / (total.max(2) - 1) as f32,
                };
                blocks.push(Block::new(s.kind, &ctx));
                prev = out_chs;
                index += 1;
            }
            stages.push(blocks);
        }
        let (final_conv, nf) = if cfg.num_features > 0 {
            let nf = (cfg.num_features as f64 * cfg.width_factor).round() as usize;
            (Some(conv_bn_relu(&vb.pp("final_conv"), prev, nf, 1, ConvOpts::default())), nf)
        } else {
            (None, prev)
        };
        let head = ClassifierHead::new(&vb.pp("head").pp("fc"), nf, cfg.num_classes, cfg.drop_rate);
        Ok(ByobNet { stem, stages, final_conv, head })
    }
}

impl Architecture for ByobNet {
    fn forward_features(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let mut x = match &self.stem {
            Stem::Conv(c) => {
                let y = c.forward(cx, x)?;
                cx.record("stem", "ConvNormAct", &y);
                y
            }
            Stem::Rep(b) => b.forward(cx, x)?,
        };
        for (si, stage) in self.stages.iter().enumerate() {
            for b in stage {
                x = b.forward(cx, &x)?;
            }
            cx.record(&format!("stages.{si}"), "Sequential", &x);
        }
        if let Some(c) = &self.final_conv {
            x = c.forward(cx, &x)?;
            cx.record("final_conv", "ConvNormAct", &x);
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
    fn reparameterize(&mut self, params: &mut Params) -> Result<usize> {
        let mut n = 0;
        if let Stem::Rep(b) = &mut self.stem {
            n += usize::from(b.reparameterize(params)?);
        }
        for b in self.stages.iter_mut().flatten() {
            if let Block::Rep(b) = b {
                n += usize::from(b.reparameterize(params)?);
            }
        }
        Ok(n)
    }
}

// ---------------------------------------------------------------- variants

/// GENet stages: two basic stages, a bottleneck stage, two depthwise-bottleneck stages.
fn gernet_stages(w: [usize; 5], d: [usize; 5]) -> Vec<StageDef> {
    use BlockKind::{Basic, Bottle};
    vec![
        StageDef::new(Basic, d[0], w[0], 2),
        StageDef::new(Basic, d[1], w[1], 2),
        StageDef::new(Bottle, d[2], w[2], 2).ratio(0.25),
        StageDef::new(Bottle, d[3], w[3], 2).groups(GroupSize::Size(1)).ratio(3.0),
        StageDef::new(Bottle, d[4], w[4], 1).groups(GroupSize::Size(1)).ratio(3.0),
    ]
}

/// RepVGG stages (timm's `_rep_vgg_bcfg`): depths `d`, widths 64/128/256/512 times `wf`,
/// every second block grouped into `groups` groups when `groups > 0`.
fn repvgg_stages(d: [usize; 4], wf: [f64; 4], groups: usize) -> Vec<StageDef> {
    let gs = if groups > 0 { GroupSize::AlternateGroups(groups) } else { GroupSize::Dense };
    [64.0, 128.0, 256.0, 512.0]
        .iter()
        .zip(d.iter().zip(wf))
        .map(|(c, (&d, wf))| StageDef::new(BlockKind::Rep, d, (c * wf) as usize, 2).groups(gs))
        .collect()
}

const REPVGG_A: [usize; 4] = [2, 4, 14, 1];
const REPVGG_B: [usize; 4] = [4, 6, 16, 1];

// ---------------------------------------------------------------- pretrained configs

/// timm's `_cfg` for byobnet: 224, crop 0.875, bilinear, ImageNet mean and std.
const fn ge(tag: &'static str) -> PretrainedCfg {
    PretrainedCfg::imagenet(tag, "stem.conv", "head.fc")
}
/// RepVGG's: the first conv is the stem's kxk branch (timm lists the 1x1 branch too).
const fn rvgg(tag: &'static str) -> PretrainedCfg {
    PretrainedCfg::imagenet(tag, "stem.conv_kxk.conv", "head.fc")
}

pub(crate) static GERNET_S: &[PretrainedCfg] = &[ge("idstcv_in1k")];
pub(crate) static GERNET_M: &[PretrainedCfg] = &[ge("idstcv_in1k")];
pub(crate) static GERNET_L: &[PretrainedCfg] = &[ge("idstcv_in1k").size(256)];
pub(crate) static REPVGG: &[PretrainedCfg] = &[rvgg("rvgg_in1k")];
pub(crate) static REPVGG_D2SE: &[PretrainedCfg] = &[rvgg("rvgg_in1k").size(320).crop(1.0)];

// ---------------------------------------------------------------- entry points

fn byob(arch: &'static str, opts: ZooOpts, f: impl FnOnce(&ModelArgs) -> ByobConfig) -> Result<Model> {
    build(arch, opts, |vb, a| Ok(Box::new(ByobNet::new(vb, f(a))?)))
}

fn repvgg(arch: &'static str, opts: ZooOpts, d: [usize; 4], wf: [f64; 4], groups: usize, stem: usize) -> Result<Model> {
    byob(arch, opts, |a| ByobConfig::new(a, repvgg_stages(d, wf, groups), StemKind::Rep, stem, 0))
}

/// GENet-S (GPU-Efficient Network, small; 8.2M params).
pub fn gernet_s(opts: ZooOpts) -> Result<Model> {
    byob("gernet_s", opts, |a| {
        ByobConfig::new(a, gernet_stages([48, 48, 384, 560, 256], [1, 3, 7, 2, 1]), StemKind::Conv3x3, 13, 1920)
    })
}
/// GENet-M (21.1M params).
pub fn gernet_m(opts: ZooOpts) -> Result<Model> {
    byob("gernet_m", opts, |a| {
        ByobConfig::new(a, gernet_stages([128, 192, 640, 640, 640], [1, 2, 6, 4, 1]), StemKind::Conv3x3, 32, 2560)
    })
}
/// GENet-L (31.1M params, 256x256 input).
pub fn gernet_l(opts: ZooOpts) -> Result<Model> {
    byob("gernet_l", opts, |a| {
        ByobConfig::new(a, gernet_stages([128, 192, 640, 640, 640], [1, 2, 6, 5, 4]), StemKind::Conv3x3, 32, 2560)
    })
}
/// RepVGG-A0.
pub fn repvgg_a0(opts: ZooOpts) -> Result<Model> {
    repvgg("repvgg_a0", opts, REPVGG_A, [0.75, 0.75, 0.75, 2.5], 0, 48)
}
/// RepVGG-A1.
pub fn repvgg_a1(opts: ZooOpts) -> Result<Model> {
    repvgg("repvgg_a1", opts, REPVGG_A, [1.0, 1.0, 1.0, 2.5], 0, 64)
}
/// RepVGG-A2.
pub fn repvgg_a2(opts: ZooOpts) -> Result<Model> {
    repvgg("repvgg_a2", opts, REPVGG_A, [1.5, 1.5, 1.5, 2.75], 0, 64)
}
/// RepVGG-B0.
pub fn repvgg_b0(opts: ZooOpts) -> Result<Model> {
    repvgg("repvgg_b0", opts, REPVGG_B, [1.0, 1.0, 1.0, 2.5], 0, 64)
}
/// RepVGG-B1.
pub fn repvgg_b1(opts: ZooOpts) -> Result<Model> {
    repvgg("repvgg_b1", opts, REPVGG_B, [2.0, 2.0, 2.0, 4.0], 0, 64)
}
/// RepVGG-B1g4 (every second block in 4 groups).
pub fn repvgg_b1g4(opts: ZooOpts) -> Result<Model> {
    repvgg("repvgg_b1g4", opts, REPVGG_B, [2.0, 2.0, 2.0, 4.0], 4, 64)
}
/// RepVGG-B2.
pub fn repvgg_b2(opts: ZooOpts) -> Result<Model> {
    repvgg("repvgg_b2", opts, REPVGG_B, [2.5, 2.5, 2.5, 5.0], 0, 64)
}
/// RepVGG-B2g4.
pub fn repvgg_b2g4(opts: ZooOpts) -> Result<Model> {
    repvgg("repvgg_b2g4", opts, REPVGG_B, [2.5, 2.5, 2.5, 5.0], 4, 64)
}
/// RepVGG-B3.
pub fn repvgg_b3(opts: ZooOpts) -> Result<Model> {
    repvgg("repvgg_b3", opts, REPVGG_B, [3.0, 3.0, 3.0, 5.0], 0, 64)
}
/// RepVGG-B3g4.
pub fn repvgg_b3g4(opts: ZooOpts) -> Result<Model> {
    repvgg("repvgg_b3g4", opts, REPVGG_B, [3.0, 3.0, 3.0, 5.0], 4, 64)
}
/// RepVGG-D2se: deeper B2 widths with squeeze-excitation (`rd_ratio` 1/16, divisor 1) in
/// every block, 320x320 input.
pub fn repvgg_d2se(opts: ZooOpts) -> Result<Model> {
    byob("repvgg_d2se", opts, |a| {
        let stages = repvgg_stages([8, 14, 24, 1], [2.5, 2.5, 2.5, 5.0], 0);
        let se = SeConfig::timm().with_reduce(SeReduce::Ratio { ratio: 0.0625, divisor: 1, round_limit: 0.0 });
        ByobConfig { attn: AttnLayer::Se(se), ..ByobConfig::new(a, stages, StemKind::Rep, 64, 0) }
    })
}

// ---------------------------------------------------------------- registry

/// The registered variants of this family, each one line (`name`, pretrained configs).
pub(crate) static MODELS: &[ModelEntry] = &[
    register!(gernet_s, GERNET_S),
    register!(gernet_m, GERNET_M),
    register!(gernet_l, GERNET_L),
    register!(repvgg_a0, REPVGG),
    register!(repvgg_a1, REPVGG),
    register!(repvgg_a2, REPVGG),
    register!(repvgg_b0, REPVGG),
    register!(repvgg_b1, REPVGG),
    register!(repvgg_b1g4, REPVGG),
    register!(repvgg_b2, REPVGG),
    register!(repvgg_b2g4, REPVGG),
    register!(repvgg_b3, REPVGG),
    register!(repvgg_b3g4, REPVGG),
    register!(repvgg_d2se, REPVGG_D2SE),
];

#[cfg(test)]
mod tests {
    use super::*;
    use convnet_nn::context::Mode;
    use std::cell::RefCell;

    /// A small RepVGG-D2se-like net (squeeze-excitation in every block, grouped blocks,
    /// identity branches): folding keeps the eval-mode logits, the attention included.
    #[test]
    fn reparameterisation_with_attention_and_groups_keeps_the_logits() {
        let a = ModelArgs { num_classes: 7, in_chans: 3, drop_rate: 0.0, drop_path_rate: 0.0 };
        let stages = vec![
            StageDef::new(BlockKind::Rep, 3, 16, 2).groups(GroupSize::AlternateGroups(4)),
            StageDef::new(BlockKind::Rep, 2, 32, 2),
        ];
        let se = SeConfig::timm().with_reduce(SeReduce::Ratio { ratio: 0.0625, divisor: 1, round_limit: 0.0 });
        let cfg = ByobConfig { attn: AttnLayer::Se(se), ..ByobConfig::new(&a, stages, StemKind::Rep, 8, 0) };
        let store = RefCell::new(Params::new());
        let mut net = ByobNet::new(&Vb::root(&store, 1), cfg).unwrap();
        let mut params = store.into_inner();
        crate::parity::fill_parity(&mut params, 3);
        let x = Tensor::from_vec(crate::parity::formula_input([2, 19, 17, 3], 1), [2, 19, 17, 3]).unwrap();
        let run = |net: &ByobNet, params: &Params| {
            let cx = Cx::new(params, Mode::Eval, 0);
            let f = net.forward_features(&cx, &x).unwrap();
            net.forward_head(&cx, &f, false).unwrap()
        };
        let before = run(&net, &params);
        assert_eq!(net.reparameterize(&mut params).unwrap(), 6);
        let after = run(&net, &params);
        let scale = before.data().iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (a, b) in after.data().iter().zip(before.data()) {
            assert!((a - b).abs() <= 1e-5 * scale, "{a} vs {b}");
        }
        // grouped block 1 of stage 0: kernel [3, 3, 16 / 4, 16]
        let w = params.by_key("stages.0.1.reparam_conv.weight").unwrap();
        assert_eq!(w.value().dims(), [3, 3, 4, 16]);
        assert!(params.by_key("stages.0.1.attn.fc1.weight").is_some());
    }
}
