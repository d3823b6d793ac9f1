//! Aligned Xception (Chen et al. 2018, "Encoder-Decoder with Atrous Separable Convolution
//! for Semantic Image Segmentation", DeepLab's modification of Chollet's Xception), as
//! timm's `xception_aligned.py`: every max pool replaced by a strided separable conv,
//! a deeper middle flow, and each separable conv followed by batch norm (and ReLU where
//! the block does not start with one). `xception41/65/71`; the `p` variants are
//! pre-activation (norm and ReLU before each separable conv, plain-conv shortcuts).
//!
//! timm's legacy Keras network lives in [`crate::xception`].

use crate::Model;
use crate::error::Result;
use crate::layers::{BatchNorm2d, ClassifierHead, Conv2d, ConvBnAct, ConvOpts, act, drop_path};
use crate::model::{Architecture, ZooOpts, build};
use crate::pretrained::PretrainedCfg;
use crate::registry::{ModelEntry, register};
use convnet_nn::context::Cx;
use convnet_nn::store::Vb;
use convnet_tensor::{Activation, Tensor};

// ---------------------------------------------------------------- blocks

/// One block of the network: `out` are the three separable convs' widths.
#[derive(Clone, Copy, Debug)]
struct BlockCfg {
    cin: usize,
    out: [usize; 3],
    stride: usize,
    /// No residual at all (the exit flow's last block).
    no_skip: bool,
    /// A ReLU before each separable conv instead of after its norms (post-activation blocks).
    start_with_relu: bool,
}

const fn blk(cin: usize, cout: usize, stride: usize) -> BlockCfg {
    BlockCfg { cin, out: [cout; 3], stride, no_skip: false, start_with_relu: true }
}

/// The exit flow shared by every variant: a strided 728 -> 1024 block, then the
/// skip-free 1536, 1536, 2048 block.
const EXIT: [BlockCfg; 2] = [
    BlockCfg { cin: 728, out: [728, 1024, 1024], stride: 2, no_skip: false, start_with_relu: true },
    BlockCfg { cin: 1024, out: [1536, 1536, 2048], stride: 1, no_skip: true, start_with_relu: false },
];

/// Entry flow, `middle` 728-wide blocks, exit flow.
fn blocks(entry: &[BlockCfg], middle: usize) -> Vec<BlockCfg> {
    let mut v = entry.to_vec();
    v.extend(std::iter::repeat_n(blk(728, 728, 1), middle));
    v.extend(EXIT);
    v
}

/// timm's `SeparableConv2d` (post-activation): depthwise 3x3 `conv_dw`, `bn_dw`, the
/// optional ReLU, pointwise `conv_pw`, `bn_pw`, the optional ReLU.
#[derive(Debug)]
struct SepConv {
    dw: ConvBnAct,
    pw: ConvBnAct,
}

impl SepConv {
    fn new(vb: &Vb, cin: usize, cout: usize, stride: usize, eps: f32, a: Activation) -> Self {
        let dw_opts = ConvOpts::stride(stride).with_groups(cin);
        SepConv {
            dw: ConvBnAct::new(&vb.pp("conv_dw"), &vb.pp("bn_dw"), cin, cin, (3, 3), dw_opts, eps, a),
            pw: ConvBnAct::new(&vb.pp("conv_pw"), &vb.pp("bn_pw"), cin, cout, (1, 1), ConvOpts::default(), eps, a),
        }
    }
}

/// timm's `PreSeparableConv2d`: optional norm + ReLU (`norm`), depthwise `conv_dw`,
/// pointwise `conv_pw` (no norm of their own: the next unit's norm follows).
#[derive(Debug)]
struct PreSepConv {
    norm: Option<BatchNorm2d>,
    dw: Conv2d,
    pw: Conv2d,
}

impl PreSepConv {
    fn new(vb: &Vb, cin: usize, cout: usize, stride: usize, eps: f32, first_act: bool) -> Self {
        PreSepConv {
            norm: first_act.then(|| BatchNorm2d::new(&vb.pp("norm"), cin, eps, Activation::Relu)),
            dw: Conv2d::square(&vb.pp("conv_dw"), cin, cin, 3, ConvOpts::stride(stride).with_groups(cin)),
            pw: Conv2d::square(&vb.pp("conv_pw"), cin, cout, 1, ConvOpts::default()),
        }
    }
    fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let x = match &self.norm {
            Some(n) => n.forward(cx, x)?,
            None => x.clone(),
        };
        self.pw.forward(cx, &self.dw.forward(cx, &x)?)
    }
}

/// How a block projects its input for the residual sum.
#[derive(Debug)]
enum Shortcut {
    /// No residual (`no_skip`).
    None,
    /// The input itself.
    Identity,
    /// `shortcut.conv` + `shortcut.bn` (post-activation blocks).
    ConvBn(ConvBnAct),
    /// A plain 1x1 conv `shortcut` (pre-activation blocks).
    Conv(Conv2d),
}

impl Shortcut {
    fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Option<Tensor>> {
        Ok(match self {
            Shortcut::None => None,
            Shortcut::Identity => Some(x.clone()),
            Shortcut::ConvBn(c) => Some(c.forward(cx, x)?),
            Shortcut::Conv(c) => Some(c.forward(cx, x)?),
        })
    }
}

/// The three separable convs of a block, post- or pre-activation.
#[derive(Debug)]
enum Stack {
    /// timm's `XceptionModule.stack`: `conv1..3` (`act1..3` before them when starting with ReLU).
    Post { start_with_relu: bool, convs: Vec<SepConv> },
    /// timm's `PreXceptionModule`: `norm` (BN + ReLU on the block input), `stack.conv1..3`.
    Pre { norm: BatchNorm2d, convs: Vec<PreSepConv> },
}

/// timm's `XceptionModule` / `PreXceptionModule`.
#[derive(Debug)]
struct Block {
    path: String,
    stack: Stack,
    shortcut: Shortcut,
    drop_path: f32,
}

impl Block {
    fn new(vb: &Vb, b: &BlockCfg, preact: bool, eps: f32, drop_path: f32) -> Self {
        let cout = b.out[2];
        let project = !b.no_skip && (cout != b.cin || b.stride != 1);
        let stack_vb = vb.pp("stack");
        let widths =
            |i: usize| (if i == 0 { b.cin } else { b.out[i - 1] }, b.out[i], if i == 2 { b.stride } else { 1 });
        let (stack, shortcut) = if preact {
            let shortcut = if b.no_skip {
                Shortcut::None
            } else if project {
                Shortcut::Conv(Conv2d::square(&vb.pp("shortcut"), b.cin, cout, 1, ConvOpts::stride(b.stride)))
            } else {
                Shortcut::Identity
            };
            let convs = (0..3)
                .map(|i| {
                    let (cin, co, s) = widths(i);
                    PreSepConv::new(&stack_vb.pp(format!("conv{}", i + 1)), cin, co, s, eps, i > 0)
                })
                .collect();
            (Stack::Pre { norm: BatchNorm2d::new(&vb.pp("norm"), b.cin, eps, Activation::Relu), convs }, shortcut)
        } else {
            let shortcut = if b.no_skip {
                Shortcut::None
            } else if project {
                let o = ConvOpts::stride(b.stride);
                Shortcut::ConvBn(ConvBnAct::timm(&vb.pp("shortcut"), b.cin, cout, 1, o, eps, Activation::Linear))
            } else {
                Shortcut::Identity
            };
            let a = if b.start_with_relu { Activation::Linear } else { Activation::Relu };
            let convs = (0..3)
                .map(|i| {
                    let (cin, co, s) = widths(i);
                    SepConv::new(&stack_vb.pp(format!("conv{}", i + 1)), cin, co, s, eps, a)
                })
                .collect();
            (Stack::Post { start_with_relu: b.start_with_relu, convs }, shortcut)
        };
        Block { path: vb.prefix().to_string(), stack, shortcut, drop_path }
    }

    fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let y = match &self.stack {
            Stack::Post { start_with_relu, convs } => {
                let skip = self.shortcut.forward(cx, x)?;
                let mut y = x.clone();
                let last = convs.len() - 1;
                for (i, c) in convs.iter().enumerate() {
                    if *start_with_relu {
                        y = y.relu();
                    }
                    y = c.dw.forward(cx, &y)?;
                    y = match (&skip, i == last) {
                        // eval, no drop path: the residual sum runs in the last conv's store
                        (Some(s), true) if !cx.training() || self.drop_path <= 0.0 => {
                            c.pw.forward_add(cx, &y, s, Activation::Linear)?
                        }
                        (Some(s), true) => drop_path(cx, &c.pw.forward(cx, &y)?, self.drop_path)?.add(s)?,
                        _ => c.pw.forward(cx, &y)?,
                    };
                }
                y
            }
            Stack::Pre { norm, convs } => {
                let x = norm.forward(cx, x)?;
                let mut y = x.clone();
                for c in convs {
                    y = c.forward(cx, &y)?;
                }
                match self.shortcut.forward(cx, &x)? {
                    Some(s) => drop_path(cx, &y, self.drop_path)?.add(&s)?,
                    None => y,
                }
            }
        };
        cx.record(&self.path, "XceptionModule", &y);
        Ok(y)
    }
}

// ---------------------------------------------------------------- model

/// Aligned Xception: `stem.0` (3x3/2 conv, norm, ReLU), `stem.1` (3x3 conv, with norm
/// and ReLU unless pre-activation), `blocks.*`, a final ReLU (pre-activation only),
/// `head.fc`.
#[derive(Debug)]
pub struct XceptionAligned {
    stem0: ConvBnAct,
    stem1: Stem1,
    blocks: Vec<Block>,
    preact: bool,
    head: ClassifierHead,
}

#[derive(Debug)]
enum Stem1 {
    ConvBnAct(ConvBnAct),
    Conv(Conv2d),
}

/// What distinguishes the variants.
#[derive(Clone, Debug)]
pub(crate) struct XceptionAlignedConfig {
    blocks: Vec<BlockCfg>,
    preact: bool,
    /// Batch-norm epsilon: 1e-3 for the TensorFlow-trained variants, PyTorch's 1e-5 for xception41p.
    eps: f32,
}

impl XceptionAligned {
    /// Builds the network under `vb`.
    pub(crate) fn new(
        vb: &Vb,
        cfg: &XceptionAlignedConfig,
        num_classes: usize,
        in_chans: usize,
        drop_rate: f32,
        drop_path_rate: f32,
    ) -> Self {
        let (eps, relu) = (cfg.eps, Activation::Relu);
        let stem = vb.pp("stem");
        let stem0 = ConvBnAct::timm(&stem.pp(0), in_chans, 32, 3, ConvOpts::stride(2), eps, relu);
        let stem1 = if cfg.preact {
            Stem1::Conv(Conv2d::square(&stem.pp(1), 32, 64, 3, ConvOpts::default()))
        } else {
            Stem1::ConvBnAct(ConvBnAct::timm(&stem.pp(1), 32, 64, 3, ConvOpts::default(), eps, relu))
        };
        let n = cfg.blocks.len();
        let blocks_vb = vb.pp("blocks");
        let blocks = cfg
            .blocks
            .iter()
            .enumerate()
            .map(|(i, b)| {
                // stochastic depth grows linearly from 0 at the first block to the rate at the last
                let dpr = drop_path_rate * i as f32 / (n - 1).max(1) as f32;
                Block::new(&blocks_vb.pp(i), b, cfg.preact, eps, dpr)
            })
            .collect();
        let num_features = cfg.blocks[n - 1].out[2];
        let head = ClassifierHead::new(&vb.pp("head").pp("fc"), num_features, num_classes, drop_rate);
        XceptionAligned { stem0, stem1, blocks, preact: cfg.preact, head }
    }
}

impl Architecture for XceptionAligned {
    fn forward_features(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let x = self.stem0.forward(cx, x)?;
        let mut x = match &self.stem1 {
            Stem1::ConvBnAct(c) => c.forward(cx, &x)?,
            Stem1::Conv(c) => c.forward(cx, &x)?,
        };
        cx.record("stem", "ConvNormAct", &x);
        for b in &self.blocks {
            x = b.forward(cx, &x)?;
        }
        Ok(if self.preact { act(&x, Activation::Relu) } else { x })
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
        let h = &self.head;
        self.head = ClassifierHead::new(&vb.pp("head").pp("fc"), h.num_features, num_classes, h.drop_rate);
    }
}

// ---------------------------------------------------------------- pretrained configs

const fn cfg(tag: &'static str) -> PretrainedCfg {
    PretrainedCfg::imagenet(tag, "stem.0.conv", "head.fc").size(299).pool(10, 10).crop(0.903).bicubic().inception_norm()
}

static XCEPTION41: &[PretrainedCfg] = &[cfg("tf_in1k")];
static XCEPTION65: &[PretrainedCfg] = &[cfg("ra3_in1k").crop(0.94), cfg("tf_in1k")];
static XCEPTION71: &[PretrainedCfg] = &[cfg("tf_in1k")];
static XCEPTION41P: &[PretrainedCfg] = &[cfg("ra3_in1k").crop(0.94)];
static XCEPTION65P: &[PretrainedCfg] = &[cfg("ra3_in1k").crop(0.94)];

// ---------------------------------------------------------------- entry points

fn xception(name: &'static str, opts: ZooOpts, cfg: XceptionAlignedConfig) -> Result<Model> {
    build(name, opts, move |vb, a| {
        Ok(Box::new(XceptionAligned::new(vb, &cfg, a.num_classes, a.in_chans, a.drop_rate, a.drop_path_rate)))
    })
}

/// The entry flow of Xception-41 and -65: three strided blocks, 64 -> 128 -> 256 -> 728.
const ENTRY: [BlockCfg; 3] = [blk(64, 128, 2), blk(128, 256, 2), blk(256, 728, 2)];

/// Aligned Xception-41 (27.0M params).
pub fn xception41(opts: ZooOpts) -> Result<Model> {
    xception("xception41", opts, XceptionAlignedConfig { blocks: blocks(&ENTRY, 8), preact: false, eps: 1e-3 })
}

/// Aligned Xception-65 (39.9M params).
pub fn xception65(opts: ZooOpts) -> Result<Model> {
    xception("xception65", opts, XceptionAlignedConfig { blocks: blocks(&ENTRY, 16), preact: false, eps: 1e-3 })
}

/// Aligned Xception-71 (42.3M params): the entry flow doubles its blocks at two strides.
pub fn xception71(opts: ZooOpts) -> Result<Model> {
    let entry = [blk(64, 128, 2), blk(128, 256, 1), blk(256, 256, 2), blk(256, 728, 1), blk(728, 728, 2)];
    xception("xception71", opts, XceptionAlignedConfig { blocks: blocks(&entry, 16), preact: false, eps: 1e-3 })
}

/// Aligned Xception-41, pre-activation (26.9M params; PyTorch's batch-norm epsilon).
pub fn xception41p(opts: ZooOpts) -> Result<Model> {
    xception("xception41p", opts, XceptionAlignedConfig { blocks: blocks(&ENTRY, 8), preact: true, eps: 1e-5 })
}

/// Aligned Xception-65, pre-activation (39.8M params).
pub fn xception65p(opts: ZooOpts) -> Result<Model> {
    xception("xception65p", opts, XceptionAlignedConfig { blocks: blocks(&ENTRY, 16), preact: true, eps: 1e-3 })
}

// ---------------------------------------------------------------- registry

/// The registered variants of this family, each one line (`name`, pretrained configs).
pub(crate) static MODELS: &[ModelEntry] = &[
    register!(xception41, XCEPTION41),
    register!(xception65, XCEPTION65),
    register!(xception71, XCEPTION71),
    register!(xception41p, XCEPTION41P),
    register!(xception65p, XCEPTION65P),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::assert_trains;
    use convnet_nn::store::Params;
    use std::cell::RefCell;

    /// Narrow post- and pre-activation networks (a strided projecting block, an identity
    /// block and the skip-free exit block) take a training step with stochastic depth on.
    #[test]
    fn narrow_aligned_xceptions_train() {
        let blocks = vec![
            blk(64, 16, 2),
            blk(16, 16, 1),
            BlockCfg { cin: 16, out: [16, 24, 32], stride: 1, no_skip: true, start_with_relu: false },
        ];
        for preact in [false, true] {
            let cfg = XceptionAlignedConfig { blocks: blocks.clone(), preact, eps: 1e-3 };
            let store = RefCell::new(Params::new());
            let net = XceptionAligned::new(&Vb::root(&store, 1), &cfg, 4, 3, 0.0, 0.2);
            let probe = if preact { "blocks.0.shortcut.weight" } else { "blocks.0.shortcut.conv.weight" };
            assert_trains(&net, store, [2, 19, 19, 3], &[probe, "blocks.1.stack.conv1.conv_dw.weight"]);
        }
    }
}
