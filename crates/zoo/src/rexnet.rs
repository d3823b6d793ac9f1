//! ReXNet (Han et al. 2020, "Rethinking Channel Dimensions for Efficient Model Design"),
//! as timm builds it (`timm/models/rexnet.py`): sixteen MobileNetV2-style linear
//! bottlenecks whose widths grow linearly from 16 to 196 channels, SiLU on the
//! expansion, ReLU6 after the depthwise conv (and after the squeeze-excitation, which
//! carries a batch norm of its own), and a *partial* residual: a block's input is added to
//! the first `in_chs` channels of its wider output, the remaining channels pass unchanged.

use crate::Model;
use crate::attention::{SeConfig, SeReduce, SqueezeExcite};
use crate::error::Result;
use crate::layers::{ClassifierHead, ConvBnAct, ConvOpts, act, drop_path, make_divisible};
use crate::model::{Architecture, ModelArgs, ZooOpts, build};
use crate::pretrained::PretrainedCfg;
use crate::registry::{ModelEntry, register};
use convnet_nn::context::Cx;
use convnet_nn::store::Vb;
use convnet_tensor::{Activation, Tensor};

const EPS: f32 = 1e-5;

// ---------------------------------------------------------------- blocks

/// One block row of the definition: output channels, expansion, stride, SE ratio.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockDef {
    /// Output channels (already scaled and rounded).
    pub out_chs: usize,
    /// Expansion ratio of the 1x1 conv (1: no expansion conv).
    pub exp_ratio: f64,
    /// Stride of the depthwise conv.
    pub stride: usize,
    /// Squeeze-excitation ratio of the expanded width (0: none).
    pub se_ratio: f64,
}

/// timm's `LinearBottleneck`: (`conv_exp` 1x1 + SiLU), `conv_dw` 3x3 depthwise, (SE with
/// norm), ReLU6, `conv_pwl` 1x1 linear, partial residual.
#[derive(Debug)]
struct LinearBottleneck {
    path: String,
    conv_exp: Option<ConvBnAct>,
    conv_dw: ConvBnAct,
    /// timm's `SEModule` with a batch norm after `fc1` (`SEWithNorm`).
    se: Option<SqueezeExcite>,
    dw_act: Activation,
    conv_pwl: ConvBnAct,
    in_chs: usize,
    out_chs: usize,
    use_shortcut: bool,
    drop_path: f32,
}

impl LinearBottleneck {
    fn new(vb: &Vb, in_chs: usize, d: BlockDef, cfg: &RexNetConfig, dpr: f32) -> Self {
        let div = cfg.ch_div;
        let (conv_exp, dw_chs) = if d.exp_ratio != 1.0 {
            let dw = make_divisible((in_chs as f64 * d.exp_ratio).round_ties_even(), div, None);
            (Some(ConvBnAct::timm(&vb.pp("conv_exp"), in_chs, dw, 1, ConvOpts::default(), EPS, cfg.act)), dw)
        } else {
            (None, in_chs)
        };
        let dw_opts = ConvOpts::stride(d.stride).with_groups(dw_chs);
        let conv_dw = ConvBnAct::timm(&vb.pp("conv_dw"), dw_chs, dw_chs, 3, dw_opts, EPS, Activation::Linear);
        // timm: rd = make_divisible(int(dw_chs * se_ratio), ch_div), int() truncating
        let se = (d.se_ratio > 0.0).then(|| {
            let rd = make_divisible((dw_chs as f64 * d.se_ratio).trunc(), div, None);
            SqueezeExcite::new(
                &vb.pp("se"),
                dw_chs,
                &SeConfig::timm().with_reduce(SeReduce::Channels(rd)).with_norm(EPS),
            )
        });
        let conv_pwl =
            ConvBnAct::timm(&vb.pp("conv_pwl"), dw_chs, d.out_chs, 1, ConvOpts::default(), EPS, Activation::Linear);
        LinearBottleneck {
            path: vb.prefix().to_string(),
            conv_exp,
            conv_dw,
            se,
            dw_act: cfg.dw_act,
            conv_pwl,
            in_chs,
            out_chs: d.out_chs,
            use_shortcut: d.stride == 1 && in_chs <= d.out_chs,
            drop_path: dpr,
        }
    }

    fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let y = match &self.conv_exp {
            Some(c) => c.forward(cx, x)?,
            None => x.clone(),
        };
        let y = match &self.se {
            Some(se) => {
                let (y, mean) = self.conv_dw.forward_mean(cx, &y)?;
                se.excite(cx, y, &mean)?
            }
            None => self.conv_dw.forward(cx, &y)?,
        };
        let y = act(&y, self.dw_act);
        let mut y = self.conv_pwl.forward(cx, &y)?;
        if self.use_shortcut {
            y = drop_path(cx, &y, self.drop_path)?;
            y = if self.in_chs == self.out_chs {
                y.add(x)?
            } else {
                // `x[:, :in_chs] += shortcut`: the shortcut padded with zero channels
                // up to the output's width is the same sum, and its gradient reaches
                // only the first `in_chs` channels
                let d = x.dims();
                let zeros = Tensor::zeros([d[0], d[1], d[2], self.out_chs - self.in_chs]);
                y.add(&Tensor::concat(&[x, &zeros], 3)?)?
            };
        }
        cx.record(&self.path, "LinearBottleneck", &y);
        Ok(y)
    }
}

// ---------------------------------------------------------------- model

/// What distinguishes one ReXNet from another.
#[derive(Clone, Debug, PartialEq)]
pub struct RexNetConfig {
    /// Width multiplier (1.0, 1.3, 1.5, 2.0, 3.0).
    pub width_mult: f64,
    /// Depth multiplier of the six stages' `[1, 2, 2, 3, 3, 5]` blocks.
    pub depth_mult: f64,
    /// Width of the first block before scaling.
    pub initial_chs: usize,
    /// Width added over all blocks before scaling.
    pub final_chs: usize,
    /// Squeeze-excitation ratio (from the third stage on).
    pub se_ratio: f64,
    /// Channel divisor (1; 8 or 16 for timm's rounded `rexnetr_*`).
    pub ch_div: usize,
    /// Activation of the stem, expansions and head conv.
    pub act: Activation,
    /// Activation after the depthwise conv.
    pub dw_act: Activation,
    /// Classes (0: no classifier).
    pub num_classes: usize,
    /// Input channels.
    pub in_chans: usize,
    /// Dropout before the classifier.
    pub drop_rate: f32,
    /// Stochastic-depth rate of the last block.
    pub drop_path_rate: f32,
}

impl From<&ModelArgs> for RexNetConfig {
    fn from(a: &ModelArgs) -> Self {
        RexNetConfig {
            width_mult: 1.0,
            depth_mult: 1.0,
            initial_chs: 16,
            final_chs: 180,
            se_ratio: 1.0 / 12.0,
            ch_div: 1,
            act: Activation::Silu,
            dw_act: Activation::Relu6,
            num_classes: a.num_classes,
            in_chans: a.in_chans,
            drop_rate: a.drop_rate,
            drop_path_rate: a.drop_path_rate,
        }
    }
}

impl RexNetConfig {
    /// `make_divisible(round(base * width_mult), ch_div)`, base divided by the width first
    /// when it is below 1 (so narrow models keep the base width).
    fn scaled(&self, base: f64) -> usize {
        let base = if self.width_mult < 1.0 { base / self.width_mult } else { base };
        make_divisible((base * self.width_mult).round_ties_even(), self.ch_div, None)
    }

    /// Stem width.
    pub fn stem_chs(&self) -> usize {
        self.scaled(32.0)
    }

    /// The blocks (timm's `_block_cfg`): widths growing by `final_chs / blocks` per block.
    pub fn blocks(&self) -> Vec<BlockDef> {
        let layers: Vec<usize> =
            [1usize, 2, 2, 3, 3, 5].iter().map(|&l| (l as f64 * self.depth_mult).ceil() as usize).collect();
        let strides = [1, 2, 2, 2, 1, 2];
        let total: usize = layers.iter().sum();
        let mut base =
            if self.width_mult < 1.0 { self.initial_chs as f64 / self.width_mult } else { self.initial_chs as f64 };
        let mut out = Vec::with_capacity(total);
        for (s, (&n, &stride)) in layers.iter().zip(&strides).enumerate() {
            for b in 0..n {
                let out_chs = make_divisible((base * self.width_mult).round_ties_even(), self.ch_div, None);
                base += self.final_chs as f64 / total as f64;
                out.push(BlockDef {
                    out_chs,
                    exp_ratio: if s == 0 { 1.0 } else { 6.0 },
                    stride: if b == 0 { stride } else { 1 },
                    se_ratio: if s < 2 { 0.0 } else { self.se_ratio },
                });
            }
        }
        out
    }

    /// Width of the head conv (`pen_chs`).
    pub fn num_features(&self) -> usize {
        make_divisible(1280.0 * self.width_mult, self.ch_div, None)
    }
}

/// ReXNet: `stem.{conv,bn}`, `features.{0..15}` (blocks), `features.16.{conv,bn}` (head
/// conv), `head.fc`.
#[derive(Debug)]
pub struct RexNet {
    stem: ConvBnAct,
    blocks: Vec<LinearBottleneck>,
    conv_head: ConvBnAct,
    head: ClassifierHead,
}

impl RexNet {
    /// Builds the network under `vb`.
    pub fn new(vb: &Vb, cfg: RexNetConfig) -> Result<Self> {
        let stem_chs = cfg.stem_chs();
        let stem = ConvBnAct::timm(&vb.pp("stem"), cfg.in_chans, stem_chs, 3, ConvOpts::stride(2), EPS, cfg.act);
        let defs = cfg.blocks();
        let last = defs.len().saturating_sub(1).max(1);
        let features = vb.pp("features");
        let mut prev = stem_chs;
        let mut blocks = Vec::with_capacity(defs.len());
        for (i, d) in defs.iter().enumerate() {
            let dpr = cfg.drop_path_rate * i as f32 / last as f32;
            blocks.push(LinearBottleneck::new(&features.pp(i), prev, *d, &cfg, dpr));
            prev = d.out_chs;
        }
        let nf = cfg.num_features();
        let conv_head = ConvBnAct::timm(&features.pp(defs.len()), prev, nf, 1, ConvOpts::default(), EPS, cfg.act);
        let head = ClassifierHead::new(&vb.pp("head").pp("fc"), nf, cfg.num_classes, cfg.drop_rate);
        Ok(RexNet { stem, blocks, conv_head, head })
    }
}

impl Architecture for RexNet {
    fn forward_features(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let mut x = self.stem.forward(cx, x)?;
        cx.record("stem", "ConvNormAct", &x);
        for b in &self.blocks {
            x = b.forward(cx, &x)?;
        }
        let x = self.conv_head.forward(cx, &x)?;
        cx.record(&format!("features.{}", self.blocks.len()), "ConvNormAct", &x);
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

// ---------------------------------------------------------------- pretrained configs

/// timm's `_cfg` for ReXNet: bicubic, crop 0.875, ImageNet mean and std.
const fn rex(tag: &'static str) -> PretrainedCfg {
    PretrainedCfg::imagenet(tag, "stem.conv", "head.fc").bicubic()
}

pub(crate) static REXNET_100: &[PretrainedCfg] = &[rex("nav_in1k")];
pub(crate) static REXNET_130: &[PretrainedCfg] = &[rex("nav_in1k")];
pub(crate) static REXNET_150: &[PretrainedCfg] = &[rex("nav_in1k")];
pub(crate) static REXNET_200: &[PretrainedCfg] = &[rex("nav_in1k")];
pub(crate) static REXNET_300: &[PretrainedCfg] = &[rex("nav_in1k")];

// ---------------------------------------------------------------- entry points

fn rexnet(arch: &'static str, opts: ZooOpts, width_mult: f64) -> Result<Model> {
    build(arch, opts, |vb, a| Ok(Box::new(RexNet::new(vb, RexNetConfig { width_mult, ..a.into() })?)))
}

/// ReXNet 1.0x (4.8M params).
pub fn rexnet_100(opts: ZooOpts) -> Result<Model> {
    rexnet("rexnet_100", opts, 1.0)
}
/// ReXNet 1.3x.
pub fn rexnet_130(opts: ZooOpts) -> Result<Model> {
    rexnet("rexnet_130", opts, 1.3)
}
/// ReXNet 1.5x.
pub fn rexnet_150(opts: ZooOpts) -> Result<Model> {
    rexnet("rexnet_150", opts, 1.5)
}
/// ReXNet 2.0x.
pub fn rexnet_200(opts: ZooOpts) -> Result<Model> {
    rexnet("rexnet_200", opts, 2.0)
}
/// ReXNet 3.0x.
pub fn rexnet_300(opts: ZooOpts) -> Result<Model> {
    rexnet("rexnet_300", opts, 3.0)
}

// ---------------------------------------------------------------- registry

/// The registered variants of this family, each one line (`name`, pretrained configs).
pub(crate) static MODELS: &[ModelEntry] = &[
    register!(rexnet_100, REXNET_100),
    register!(rexnet_130, REXNET_130),
    register!(rexnet_150, REXNET_150),
    register!(rexnet_200, REXNET_200),
    register!(rexnet_300, REXNET_300),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(width_mult: f64) -> RexNetConfig {
        let a = ModelArgs { num_classes: 1000, in_chans: 3, drop_rate: 0.0, drop_path_rate: 0.0 };
        RexNetConfig { width_mult, ..(&a).into() }
    }

    #[test]
    fn widths_follow_timm() {
        // timm's rexnet_100: features.1.conv_pwl is 27 wide, features.15's 185, SE 87 of 1044
        let c = cfg(1.0);
        let outs: Vec<usize> = c.blocks().iter().map(|d| d.out_chs).collect();
        assert_eq!(outs, [16, 27, 38, 50, 61, 72, 84, 95, 106, 117, 128, 140, 151, 162, 174, 185]);
        assert_eq!((c.stem_chs(), c.num_features()), (32, 1280));
        let c = cfg(1.3);
        assert_eq!((c.stem_chs(), c.num_features()), (42, 1664));
    }
}
