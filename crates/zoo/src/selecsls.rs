//! SelecSLS (Mehta et al. 2020, "XNect: Real-time Multi-Person 3D Motion Capture with a
//! Single RGB Camera"), as timm builds it (`timm/models/selecsls.py`): a stride-2 stem,
//! blocks of five alternating 3x3 / 1x1 convs whose three 3x3 outputs are concatenated
//! with a skip carried from the first block of the group (selective long and short range
//! skips), then a head of four plain convs. Every conv is conv, batch norm, ReLU.

use crate::Model;
use crate::error::Result;
use crate::layers::{ClassifierHead, ConvBnAct, ConvOpts};
use crate::model::{Architecture, ModelArgs, ZooOpts, build};
use crate::pretrained::PretrainedCfg;
use crate::registry::{ModelEntry, register};
use convnet_nn::context::Cx;
use convnet_nn::store::Vb;
use convnet_tensor::{Activation, Tensor};

const EPS: f32 = 1e-5;

/// timm's `conv_bn`: an `nn.Sequential` of conv (`{vb}.0`, no bias, PyTorch padding),
/// batch norm (`{vb}.1`) and ReLU.
fn conv_bn(vb: &Vb, cin: usize, cout: usize, k: usize, stride: usize) -> ConvBnAct {
    ConvBnAct::new(&vb.pp(0), &vb.pp(1), cin, cout, (k, k), ConvOpts::stride(stride), EPS, Activation::Relu)
}

// ---------------------------------------------------------------- blocks

/// One row of a SelecSLS definition (timm's block arguments).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockDef {
    /// Input channels.
    pub in_chs: usize,
    /// Channels of the carried skip (0 on a group's first block).
    pub skip_chs: usize,
    /// Width of the inner convs.
    pub mid_chs: usize,
    /// Output channels.
    pub out_chs: usize,
    /// Whether this block starts a group (its output becomes the skip).
    pub is_first: bool,
    /// Stride of its first conv.
    pub stride: usize,
}

/// timm's `SelecSlsBlock`: `conv1` (3x3, strided), `conv2` 1x1, `conv3` 3x3 to half
/// width, `conv4` 1x1, `conv5` 3x3 to half width, `conv6` 1x1 over
/// `[d1, d2, d3, skip]`.
#[derive(Debug)]
struct SelecSlsBlock {
    path: String,
    convs: [ConvBnAct; 6],
    is_first: bool,
}

impl SelecSlsBlock {
    fn new(vb: &Vb, d: BlockDef) -> Self {
        let m = d.mid_chs;
        let cat = 2 * m + if d.is_first { 0 } else { d.skip_chs };
        SelecSlsBlock {
            path: vb.prefix().to_string(),
            convs: [
                conv_bn(&vb.pp("conv1"), d.in_chs, m, 3, d.stride),
                conv_bn(&vb.pp("conv2"), m, m, 1, 1),
                conv_bn(&vb.pp("conv3"), m, m / 2, 3, 1),
                conv_bn(&vb.pp("conv4"), m / 2, m, 1, 1),
                conv_bn(&vb.pp("conv5"), m, m / 2, 3, 1),
                conv_bn(&vb.pp("conv6"), cat, d.out_chs, 1, 1),
            ],
            is_first: d.is_first,
        }
    }

    /// `(x, skip) -> (out, skip')`: a group's first block makes its output the skip.
    fn forward(&self, cx: &Cx, x: &Tensor, skip: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        let [c1, c2, c3, c4, c5, c6] = &self.convs;
        let d1 = c1.forward(cx, x)?;
        let d2 = c3.forward(cx, &c2.forward(cx, &d1)?)?;
        let d3 = c5.forward(cx, &c4.forward(cx, &d2)?)?;
        let out = match (self.is_first, skip) {
            (false, Some(s)) => {
                let y = c6.forward(cx, &Tensor::concat(&[&d1, &d2, &d3, s], 3)?)?;
                (y, s.clone())
            }
            _ => {
                let y = c6.forward(cx, &Tensor::concat(&[&d1, &d2, &d3], 3)?)?;
                (y.clone(), y)
            }
        };
        cx.record(&self.path, "SelecSlsBlock", &out.0);
        Ok(out)
    }
}

// ---------------------------------------------------------------- model

/// What distinguishes one SelecSLS from another.
#[derive(Clone, Debug, PartialEq)]
pub struct SelecSlsConfig {
    /// The blocks (`features.{i}`).
    pub features: Vec<BlockDef>,
    /// The head convs `(in, out, kernel, stride)` (`head.{j}`).
    pub head: Vec<(usize, usize, usize, usize)>,
    /// Classes (0: no classifier).
    pub num_classes: usize,
    /// Input channels.
    pub in_chans: usize,
    /// Dropout before the classifier.
    pub drop_rate: f32,
}

/// SelecSLS: `stem`, `features.{i}`, `head.{j}`, `fc`.
#[derive(Debug)]
pub struct SelecSls {
    stem: ConvBnAct,
    features: Vec<SelecSlsBlock>,
    head_convs: Vec<ConvBnAct>,
    head: ClassifierHead,
}

impl SelecSls {
    /// Builds the network under `vb`.
    pub fn new(vb: &Vb, cfg: SelecSlsConfig) -> Result<Self> {
        let stem = conv_bn(&vb.pp("stem"), cfg.in_chans, 32, 3, 2);
        let features =
            cfg.features.iter().enumerate().map(|(i, d)| SelecSlsBlock::new(&vb.pp("features").pp(i), *d)).collect();
        let head_convs: Vec<ConvBnAct> = cfg
            .head
            .iter()
            .enumerate()
            .map(|(j, &(cin, cout, k, s))| conv_bn(&vb.pp("head").pp(j), cin, cout, k, s))
            .collect();
        let nf = cfg.head.last().map_or(32, |h| h.1);
        let head = ClassifierHead::new(&vb.pp("fc"), nf, cfg.num_classes, cfg.drop_rate);
        Ok(SelecSls { stem, features, head_convs, head })
    }
}

impl Architecture for SelecSls {
    fn forward_features(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let mut x = self.stem.forward(cx, x)?;
        cx.record("stem", "Sequential", &x);
        let mut skip: Option<Tensor> = None;
        for b in &self.features {
            let (y, s) = b.forward(cx, &x, skip.as_ref())?;
            x = y;
            skip = Some(s);
        }
        drop(skip);
        for (j, c) in self.head_convs.iter().enumerate() {
            x = c.forward(cx, &x)?;
            cx.record(&format!("head.{j}"), "Sequential", &x);
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

// ---------------------------------------------------------------- variants

/// Blocks from rows `(in, skip, mid, out, is_first, stride)`.
fn blocks(rows: &[(usize, usize, usize, usize, bool, usize)]) -> Vec<BlockDef> {
    rows.iter()
        .map(|&(in_chs, skip_chs, mid_chs, out_chs, is_first, stride)| BlockDef {
            in_chs,
            skip_chs,
            mid_chs,
            out_chs,
            is_first,
            stride,
        })
        .collect()
}

fn selecsls42_blocks() -> Vec<BlockDef> {
    blocks(&[
        (32, 0, 64, 64, true, 2),
        (64, 64, 64, 128, false, 1),
        (128, 0, 144, 144, true, 2),
        (144, 144, 144, 288, false, 1),
        (288, 0, 304, 304, true, 2),
        (304, 304, 304, 480, false, 1),
    ])
}

fn selecsls60_blocks() -> Vec<BlockDef> {
    blocks(&[
        (32, 0, 64, 64, true, 2),
        (64, 64, 64, 128, false, 1),
        (128, 0, 128, 128, true, 2),
        (128, 128, 128, 128, false, 1),
        (128, 128, 128, 288, false, 1),
        (288, 0, 288, 288, true, 2),
        (288, 288, 288, 288, false, 1),
        (288, 288, 288, 288, false, 1),
        (288, 288, 288, 416, false, 1),
    ])
}

fn selecsls84_blocks() -> Vec<BlockDef> {
    let mut rows = vec![(32, 0, 64, 64, true, 2), (64, 64, 64, 144, false, 1), (144, 0, 144, 144, true, 2)];
    rows.extend([(144, 144, 144, 144, false, 1); 3]);
    rows.extend([(144, 144, 144, 304, false, 1), (304, 0, 304, 304, true, 2)]);
    rows.extend([(304, 304, 304, 304, false, 1); 4]);
    rows.push((304, 304, 304, 512, false, 1));
    blocks(&rows)
}

/// The head of the original variants (ending in a 1x1 conv to 1280) or of the `b`
/// variants (a 3x3 conv to 1280, then a 1x1 conv to 1024), after `cin` channels.
fn head(cin: usize, mid: usize, b: bool) -> Vec<(usize, usize, usize, usize)> {
    if b {
        vec![(cin, mid, 3, 2), (mid, 1024, 3, 1), (1024, 1280, 3, 2), (1280, 1024, 1, 1)]
    } else {
        vec![(cin, mid, 3, 2), (mid, 1024, 3, 1), (1024, 1024, 3, 2), (1024, 1280, 1, 1)]
    }
}

// ---------------------------------------------------------------- pretrained configs

/// timm's `_cfg` for SelecSLS: 224, crop 0.875, bicubic, ImageNet mean and std, pool 4x4.
const fn sls(tag: &'static str) -> PretrainedCfg {
    PretrainedCfg::imagenet(tag, "stem.0", "fc").bicubic().pool(4, 4)
}

pub(crate) static SELECSLS42: &[PretrainedCfg] = &[sls("untrained")];
pub(crate) static SELECSLS42B: &[PretrainedCfg] = &[sls("in1k")];
pub(crate) static SELECSLS60: &[PretrainedCfg] = &[sls("in1k")];
pub(crate) static SELECSLS60B: &[PretrainedCfg] = &[sls("in1k")];
pub(crate) static SELECSLS84: &[PretrainedCfg] = &[sls("untrained")];

// ---------------------------------------------------------------- entry points

fn selecsls(
    arch: &'static str,
    opts: ZooOpts,
    features: fn() -> Vec<BlockDef>,
    head: Vec<(usize, usize, usize, usize)>,
) -> Result<Model> {
    build(arch, opts, |vb, a: &ModelArgs| {
        let cfg = SelecSlsConfig {
            features: features(),
            head,
            num_classes: a.num_classes,
            in_chans: a.in_chans,
            drop_rate: a.drop_rate,
        };
        Ok(Box::new(SelecSls::new(vb, cfg)?))
    })
}

/// SelecSLS-42 (untrained in timm).
pub fn selecsls42(opts: ZooOpts) -> Result<Model> {
    selecsls("selecsls42", opts, selecsls42_blocks, head(480, 960, false))
}
/// SelecSLS-42B.
pub fn selecsls42b(opts: ZooOpts) -> Result<Model> {
    selecsls("selecsls42b", opts, selecsls42_blocks, head(480, 960, true))
}
/// SelecSLS-60.
pub fn selecsls60(opts: ZooOpts) -> Result<Model> {
    selecsls("selecsls60", opts, selecsls60_blocks, head(416, 756, false))
}
/// SelecSLS-60B.
pub fn selecsls60b(opts: ZooOpts) -> Result<Model> {
    selecsls("selecsls60b", opts, selecsls60_blocks, head(416, 756, true))
}
/// SelecSLS-84 (untrained in timm): its head ends in a 3x3 conv to 1280.
pub fn selecsls84(opts: ZooOpts) -> Result<Model> {
    let head = vec![(512, 960, 3, 2), (960, 1024, 3, 1), (1024, 1024, 3, 2), (1024, 1280, 3, 1)];
    selecsls("selecsls84", opts, selecsls84_blocks, head)
}

// ---------------------------------------------------------------- registry

/// The registered variants of this family, each one line (`name`, pretrained configs).
pub(crate) static MODELS: &[ModelEntry] = &[
    register!(selecsls42, SELECSLS42),
    register!(selecsls42b, SELECSLS42B),
    register!(selecsls60, SELECSLS60),
    register!(selecsls60b, SELECSLS60B),
    register!(selecsls84, SELECSLS84),
];
