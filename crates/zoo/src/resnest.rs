//! ResNeSt (Zhang et al. 2020, "ResNeSt: Split-Attention Networks") as timm's
//! `resnest.py` builds it: a [`ResNet`] with a deep stem and average-pool shortcuts whose
//! bottleneck (`ResNestBottleneck`) replaces the 3x3 conv by split attention (timm's
//! `layers/split_attn.py`): one grouped conv makes `radix` versions of every channel,
//! their sum is pooled, squeezed and expanded (grouped 1x1 convs with a norm between) to
//! one logit per version and channel, and a softmax over the `radix` versions (a sigmoid
//! when `radix` is 1) weights them before they are summed. On a strided block the stride
//! moves to a 3x3 average pool after the attention (`avd`) or before it (`avd_first`).

use crate::Model;
use crate::attention::AttnLayer;
use crate::error::Result;
use crate::layers::{BatchNorm2d, Conv2d, ConvBnAct, ConvOpts, act, avg_pool, drop_path, make_divisible};
use crate::model::{ZooOpts, build};
use crate::pretrained::PretrainedCfg;
use crate::registry::{ModelEntry, register};
use crate::resnet::{BlockArgs, BlockFactory, BlockType, Downsample, ResNet, ResNetConfig, ResidualBlock, StemType};
use convnet_nn::context::Cx;
use convnet_nn::store::Vb;
use convnet_tensor::{Activation, Tensor};
use std::sync::Arc;

const EPS: f32 = 1e-5;

// ---------------------------------------------------------------- split attention

/// timm's `SplitAttn` (keys `conv`, `bn0`, `fc1`, `bn1`, `fc2`) with a 3x3 kernel.
#[derive(Debug)]
struct SplitAttn {
    /// `[c -> c * radix]`, groups `cardinality * radix`, norm `bn0`, ReLU.
    conv: ConvBnAct,
    /// `[c -> attn]`, groups `cardinality`, bias.
    fc1: Conv2d,
    bn1: BatchNorm2d,
    /// `[attn -> c * radix]`, groups `cardinality`, bias.
    fc2: Conv2d,
    radix: usize,
    cardinality: usize,
    out: usize,
}

impl SplitAttn {
    fn new(vb: &Vb, c: usize, stride: usize, cardinality: usize, radix: usize) -> Self {
        let mid = c * radix;
        let attn = make_divisible(c as f64 * radix as f64 * 0.25, 8, Some(32));
        let o = ConvOpts::stride(stride).with_groups(cardinality * radix);
        let fc = ConvOpts::default().with_groups(cardinality).with_bias(true);
        SplitAttn {
            conv: ConvBnAct::new(&vb.pp("conv"), &vb.pp("bn0"), c, mid, (3, 3), o, EPS, Activation::Relu),
            fc1: Conv2d::square(&vb.pp("fc1"), c, attn, 1, fc),
            bn1: BatchNorm2d::new(&vb.pp("bn1"), attn, EPS, Activation::Relu),
            fc2: Conv2d::square(&vb.pp("fc2"), attn, mid, 1, fc),
            radix,
            cardinality,
            out: c,
        }
    }

    /// `x: [n, h, w, c] -> [n, h / stride, w / stride, c]`.
    fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let (r, c) = (self.radix, self.out);
        let y = self.conv.forward(cx, x)?;
        let n = y.dims()[0];
        // the versions are `radix` runs of `c` channels; the mean of their sum is the
        // sum of their means
        let mean = y.global_avg_pool()?;
        let gap = if r > 1 {
            let parts = mean.chunk(1, r)?;
            parts[1..].iter().try_fold(parts[0].clone(), |s, p| s.add(p))?
        } else {
            mean
        };
        let s = self.bn1.forward(cx, &self.fc1.forward_pooled(cx, &gap)?)?;
        let logits = self.fc2.forward_pooled(cx, &s)?;
        if r == 1 {
            return Ok(y.mul_channels(&act(&logits, Activation::Sigmoid))?);
        }
        // fc2's outputs run (group, version, channel-in-group); the softmax is over the
        // versions, and the weights come back in (version, channel) order as `y`'s
        let g = self.cardinality;
        let a = logits.reshape(vec![n, g, r, c / g])?.permute(&[0, 2, 1, 3])?.softmax_axis(1)?;
        let a = a.reshape(vec![n, r * c])?;
        let mut out: Option<Tensor> = None;
        for (i, part) in y.chunk(3, r)?.into_iter().enumerate() {
            let w = part.mul_channels(&a.narrow(1, i * c, c)?)?;
            out = Some(match out {
                Some(o) => o.add(&w)?,
                None => w,
            });
        }
        Ok(out.expect("radix > 1"))
    }
}

// ---------------------------------------------------------------- blocks

/// timm's `ResNestBottleneck` options (`block_args`): expansion 4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResNestBlock {
    /// Versions per channel in the split attention (0: a plain 3x3 conv, norm and ReLU).
    pub radix: usize,
    /// On strided blocks, a 3x3 average pool takes the stride from the conv (`avd`).
    pub avd: bool,
    /// The pool goes before the split attention rather than after it.
    pub avd_first: bool,
}

#[derive(Debug)]
enum Conv2 {
    Split(Box<SplitAttn>),
    Plain(ConvBnAct),
}

#[derive(Debug)]
struct ResNestBottleneck {
    path: String,
    conv1: ConvBnAct,
    /// The average pool's stride when `avd` moved the stride to it.
    avd_stride: Option<usize>,
    avd_first: bool,
    conv2: Conv2,
    conv3: ConvBnAct,
    downsample: Option<Downsample>,
    drop_path: f32,
}

impl BlockFactory for ResNestBlock {
    fn expansion(&self) -> usize {
        4
    }

    fn build(&self, a: BlockArgs<'_>) -> Result<Box<dyn ResidualBlock>> {
        let (vb, cfg) = (a.vb, a.cfg);
        if cfg.block_reduce_first > 1 || !matches!(cfg.attn_layer, AttnLayer::None) {
            return Err(crate::ZooError::arg(
                "ResNestBottleneck",
                "takes neither block_reduce_first nor an attention layer (as timm's)",
            ));
        }
        let gw = a.planes * cfg.base_width / 64 * cfg.cardinality;
        let relu = Activation::Relu;
        let (avd_stride, stride) = if self.avd && a.stride > 1 { (Some(a.stride), 1) } else { (None, a.stride) };
        let conv1 =
            ConvBnAct::new(&vb.pp("conv1"), &vb.pp("bn1"), a.inplanes, gw, (1, 1), ConvOpts::default(), EPS, relu);
        let conv2 = if self.radix >= 1 {
            Conv2::Split(Box::new(SplitAttn::new(&vb.pp("conv2"), gw, stride, cfg.cardinality, self.radix)))
        } else {
            let o = ConvOpts::stride(stride).with_groups(cfg.cardinality);
            Conv2::Plain(ConvBnAct::new(&vb.pp("conv2"), &vb.pp("bn2"), gw, gw, (3, 3), o, EPS, relu))
        };
        let out = a.planes * 4;
        let conv3 = ConvBnAct::new(
            &vb.pp("conv3"),
            &vb.pp("bn3"),
            gw,
            out,
            (1, 1),
            ConvOpts::default(),
            EPS,
            Activation::Linear,
        );
        Ok(Box::new(ResNestBottleneck {
            path: vb.prefix().to_string(),
            conv1,
            avd_stride,
            avd_first: self.avd_first,
            conv2,
            conv3,
            downsample: a.downsample,
            drop_path: a.drop_path,
        }))
    }
}

impl ResidualBlock for ResNestBottleneck {
    fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let shortcut = match &self.downsample {
            Some(d) => d.forward(cx, x)?,
            None => x.clone(),
        };
        // PyTorch's AvgPool2d(3, stride, padding=1): the padding counted
        let avd = |y: Tensor| -> Result<Tensor> {
            match self.avd_stride {
                Some(s) => avg_pool(&y, 3, s, 1, false, true),
                None => Ok(y),
            }
        };
        let mut y = self.conv1.forward(cx, x)?;
        if self.avd_first {
            y = avd(y)?;
        }
        y = match &self.conv2 {
            Conv2::Split(s) => s.forward(cx, &y)?,
            Conv2::Plain(c) => c.forward(cx, &y)?,
        };
        if !self.avd_first {
            y = avd(y)?;
        }
        // timm applies its drop-path to the block's input (before the shortcut's
        // projection); here, as in every other residual block, it drops the residual branch
        let y = if cx.training() && self.drop_path > 0.0 {
            drop_path(cx, &self.conv3.forward(cx, &y)?, self.drop_path)?.add(&shortcut)?.relu()
        } else {
            self.conv3.forward_add(cx, &y, &shortcut, Activation::Relu)?
        };
        cx.record(&self.path, "ResNestBottleneck", &y);
        Ok(y)
    }
}

// ---------------------------------------------------------------- pretrained configs

/// timm's `_cfg` for ResNeSt: bilinear, crop 0.875, deep stem (`conv1.0`).
const fn rs(tag: &'static str) -> PretrainedCfg {
    PretrainedCfg::imagenet(tag, "conv1.0", "fc")
}

pub(crate) static RESNEST14D: &[PretrainedCfg] = &[rs("gluon_in1k")];
pub(crate) static RESNEST26D: &[PretrainedCfg] = &[rs("gluon_in1k")];
pub(crate) static RESNEST50D: &[PretrainedCfg] = &[rs("in1k")];
pub(crate) static RESNEST101E: &[PretrainedCfg] = &[rs("in1k").size(256).pool(8, 8)];
pub(crate) static RESNEST200E: &[PretrainedCfg] = &[rs("in1k").size(320).pool(10, 10).crop(0.909).bicubic()];
pub(crate) static RESNEST269E: &[PretrainedCfg] = &[rs("in1k").size(416).pool(13, 13).crop(0.928).bicubic()];
pub(crate) static RESNEST50D_4S2X40D: &[PretrainedCfg] = &[rs("in1k").bicubic()];
pub(crate) static RESNEST50D_1S4X24D: &[PretrainedCfg] = &[rs("in1k").bicubic()];

// ---------------------------------------------------------------- entry points

/// A ResNeSt: deep stem of `stem_width`, average-pool shortcuts, `layers` of split-attention
/// bottlenecks with `radix`, `cardinality` groups of `base_width` (per 64 planes).
#[allow(clippy::too_many_arguments)]
fn resnest(
    arch: &'static str,
    opts: ZooOpts,
    layers: [usize; 4],
    stem_width: usize,
    base_width: usize,
    cardinality: usize,
    radix: usize,
    avd_first: bool,
) -> Result<Model> {
    build(arch, opts, |vb, a| {
        let cfg = ResNetConfig {
            layers,
            block: BlockType::Custom(Arc::new(ResNestBlock { radix, avd: true, avd_first })),
            stem_type: StemType::Deep,
            stem_width,
            avg_down: true,
            base_width,
            cardinality,
            ..a.into()
        };
        Ok(Box::new(ResNet::new(vb, cfg)?))
    })
}

/// ResNeSt-14d (Gluon weights).
pub fn resnest14d(opts: ZooOpts) -> Result<Model> {
    resnest("resnest14d", opts, [1, 1, 1, 1], 32, 64, 1, 2, false)
}
/// ResNeSt-26d (Gluon weights).
pub fn resnest26d(opts: ZooOpts) -> Result<Model> {
    resnest("resnest26d", opts, [2, 2, 2, 2], 32, 64, 1, 2, false)
}
/// ResNeSt-50d (27.5M params), the paper's ResNeSt-50.
pub fn resnest50d(opts: ZooOpts) -> Result<Model> {
    resnest("resnest50d", opts, [3, 4, 6, 3], 32, 64, 1, 2, false)
}
/// ResNeSt-101e: 64-wide deep stem, 256x256 input.
pub fn resnest101e(opts: ZooOpts) -> Result<Model> {
    resnest("resnest101e", opts, [3, 4, 23, 3], 64, 64, 1, 2, false)
}
/// ResNeSt-200e: 320x320 input (70M params; heavy).
pub fn resnest200e(opts: ZooOpts) -> Result<Model> {
    resnest("resnest200e", opts, [3, 24, 36, 3], 64, 64, 1, 2, false)
}
/// ResNeSt-269e: 416x416 input (111M params; heavy).
pub fn resnest269e(opts: ZooOpts) -> Result<Model> {
    resnest("resnest269e", opts, [3, 30, 48, 8], 64, 64, 1, 2, false)
}
/// ResNeSt-50d 4s2x40d: radix 4, 2 groups of 40, pool before the attention.
pub fn resnest50d_4s2x40d(opts: ZooOpts) -> Result<Model> {
    resnest("resnest50d_4s2x40d", opts, [3, 4, 6, 3], 32, 40, 2, 4, true)
}
/// ResNeSt-50d 1s4x24d: radix 1 (sigmoid gate), 4 groups of 24, pool before the attention.
pub fn resnest50d_1s4x24d(opts: ZooOpts) -> Result<Model> {
    resnest("resnest50d_1s4x24d", opts, [3, 4, 6, 3], 32, 24, 4, 1, true)
}

// ---------------------------------------------------------------- registry

/// The registered variants of this family, each one line (`name`, pretrained configs).
pub(crate) static MODELS: &[ModelEntry] = &[
    register!(resnest14d, RESNEST14D),
    register!(resnest26d, RESNEST26D),
    register!(resnest50d, RESNEST50D),
    register!(resnest101e, RESNEST101E),
    register!(resnest200e, RESNEST200E),
    register!(resnest269e, RESNEST269E),
    register!(resnest50d_4s2x40d, RESNEST50D_4S2X40D),
    register!(resnest50d_1s4x24d, RESNEST50D_1S4X24D),
];
