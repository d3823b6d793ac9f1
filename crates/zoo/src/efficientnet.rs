//! EfficientNet B0-B7 and EfficientNet-Lite (Tan & Le 2019, "EfficientNet: Rethinking
//! Model Scaling for Convolutional Neural Networks"), as timm builds them
//! (`timm/models/efficientnet.py`, `_efficientnet_blocks.py`, `_efficientnet_builder.py`):
//! the same block strings, channel rounding, depth scaling, key names and defaults.
//!
//! `tf_` variants are the ports of Google's TensorFlow checkpoints: TensorFlow "SAME"
//! padding (asymmetric on stride-2 convs) and batch-norm epsilon 1e-3.

use crate::Model;
use crate::error::Result;
use crate::layers::{ClassifierHead, ConvBnAct, ConvOpts, SeConfig, SqueezeExcite, drop_path, make_divisible};
use crate::model::{Architecture, ModelArgs, ZooOpts, build};
use crate::pretrained::PretrainedCfg;
use crate::registry::{ModelEntry, register};
use convnet_nn::context::Cx;
use convnet_nn::store::Vb;
use convnet_tensor::{Activation, Tensor};

// ---------------------------------------------------------------- blocks

/// One stage row of an architecture definition (`ir_r2_k3_s2_e6_c24_se0.25`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StageDef {
    /// Depthwise-separable (`ds`) or inverted residual (`ir`).
    pub kind: BlockKind,
    /// Repeats before depth scaling.
    pub repeats: usize,
    /// Depthwise kernel.
    pub kernel: usize,
    /// Stride of the first block.
    pub stride: usize,
    /// Expansion ratio (`ir` only).
    pub expand: f64,
    /// Output channels before width scaling.
    pub out_chs: usize,
    /// Squeeze-excitation ratio of the block input (0: none).
    pub se_ratio: f64,
}

/// The two block types of EfficientNet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    /// `DepthwiseSeparableConv`: dw conv, (SE), pw conv.
    DepthwiseSeparable,
    /// `InvertedResidual` (MBConv): pw expand, dw conv, (SE), pw project.
    InvertedResidual,
}

const fn stage(
    kind: BlockKind,
    repeats: usize,
    kernel: usize,
    stride: usize,
    expand: f64,
    out_chs: usize,
    se: f64,
) -> StageDef {
    StageDef { kind, repeats, kernel, stride, expand, out_chs, se_ratio: se }
}

use BlockKind::{DepthwiseSeparable as DS, InvertedResidual as IR};

/// EfficientNet-B0's definition (`_gen_efficientnet`).
pub const EFFICIENTNET_DEF: [StageDef; 7] = [
    stage(DS, 1, 3, 1, 1.0, 16, 0.25),
    stage(IR, 2, 3, 2, 6.0, 24, 0.25),
    stage(IR, 2, 5, 2, 6.0, 40, 0.25),
    stage(IR, 3, 3, 2, 6.0, 80, 0.25),
    stage(IR, 3, 5, 1, 6.0, 112, 0.25),
    stage(IR, 4, 5, 2, 6.0, 192, 0.25),
    stage(IR, 1, 3, 1, 6.0, 320, 0.25),
];

/// EfficientNet-Lite's definition: B0 without squeeze-excitation (`_gen_efficientnet_lite`).
pub const EFFICIENTNET_LITE_DEF: [StageDef; 7] = [
    stage(DS, 1, 3, 1, 1.0, 16, 0.0),
    stage(IR, 2, 3, 2, 6.0, 24, 0.0),
    stage(IR, 2, 5, 2, 6.0, 40, 0.0),
    stage(IR, 3, 3, 2, 6.0, 80, 0.0),
    stage(IR, 3, 5, 1, 6.0, 112, 0.0),
    stage(IR, 4, 5, 2, 6.0, 192, 0.0),
    stage(IR, 1, 3, 1, 6.0, 320, 0.0),
];

/// A depthwise-separable or inverted-residual block.
#[derive(Debug)]
struct Block {
    path: String,
    kind: BlockKind,
    /// IR: `conv_pw`+`bn1` (expand). DS: `conv_dw`+`bn1`.
    first: ConvBnAct,
    /// IR: `conv_dw`+`bn2`. DS: none.
    dw: Option<ConvBnAct>,
    se: Option<SqueezeExcite>,
    /// IR: `conv_pwl`+`bn3`. DS: `conv_pw`+`bn2`. No activation.
    project: ConvBnAct,
    has_skip: bool,
    drop_path: f32,
}

struct BlockArgs {
    in_chs: usize,
    out_chs: usize,
    kernel: usize,
    stride: usize,
    expand: f64,
    se_ratio: f64,
    drop_path: f32,
}

impl Block {
    fn new(vb: &Vb, kind: BlockKind, a: BlockArgs, cfg: &EfficientNetConfig) -> Self {
        let eps = cfg.bn_eps;
        let cba = |conv: &str, bn: &str, cin: usize, cout: usize, k: usize, o: ConvOpts, act: Activation| {
            ConvBnAct::new(&vb.pp(conv), &vb.pp(bn), cin, cout, (k, k), o, eps, act)
        };
        let dw_opts = |c: usize| ConvOpts::stride(a.stride).with_groups(c).with_tf_same(cfg.tf_same);
        let pw = ConvOpts::default();
        // timm: se_ratio /= exp_ratio (SE channels from the block input), rounded with Python's round
        let se = |c: usize| {
            (a.se_ratio > 0.0).then(|| {
                let rd = (c as f64 * (a.se_ratio / a.expand)).round_ties_even() as usize;
                SqueezeExcite::new(&vb.pp("se"), c, &SeConfig::efficientnet(rd, cfg.act))
            })
        };
        let (first, dw, se, project) = match kind {
            BlockKind::DepthwiseSeparable => (
                cba("conv_dw", "bn1", a.in_chs, a.in_chs, a.kernel, dw_opts(a.in_chs), cfg.act),
                None,
                se(a.in_chs),
                cba("conv_pw", "bn2", a.in_chs, a.out_chs, 1, pw, Activation::Linear),
            ),
            BlockKind::InvertedResidual => {
                let mid = make_divisible(a.in_chs as f64 * a.expand, 8, None);
                (
                    cba("conv_pw", "bn1", a.in_chs, mid, 1, pw, cfg.act),
                    Some(cba("conv_dw", "bn2", mid, mid, a.kernel, dw_opts(mid), cfg.act)),
                    se(mid),
                    cba("conv_pwl", "bn3", mid, a.out_chs, 1, pw, Activation::Linear),
                )
            }
        };
        Block {
            path: vb.prefix().to_string(),
            kind,
            first,
            dw,
            se,
            project,
            has_skip: a.stride == 1 && a.in_chs == a.out_chs,
            drop_path: a.drop_path,
        }
    }

    fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        // the depthwise conv before a squeeze-excitation also gives it its input's mean
        let mut y = match (&self.dw, &self.se) {
            (None, Some(se)) => {
                let (y, mean) = self.first.forward_mean(cx, x)?;
                se.excite(cx, y, &mean)?
            }
            _ => self.first.forward(cx, x)?,
        };
        if let Some(dw) = &self.dw {
            y = match &self.se {
                Some(se) => {
                    let (y, mean) = dw.forward_mean(cx, &y)?;
                    se.excite(cx, y, &mean)?
                }
                None => dw.forward(cx, &y)?,
            };
        }
        let mut y = self.project.forward(cx, &y)?;
        if self.has_skip {
            y = drop_path(cx, &y, self.drop_path)?.add(x)?;
        }
        let kind = match self.kind {
            BlockKind::DepthwiseSeparable => "DepthwiseSeparable",
            BlockKind::InvertedResidual => "InvertedResidual",
        };
        cx.record(&self.path, kind, &y);
        Ok(y)
    }
}

// ---------------------------------------------------------------- model

/// Everything that distinguishes one EfficientNet from another.
#[derive(Clone, Debug, PartialEq)]
pub struct EfficientNetConfig {
    /// Stage definitions before scaling.
    pub stages: Vec<StageDef>,
    /// Width multiplier.
    pub channel_multiplier: f64,
    /// Depth multiplier.
    pub depth_multiplier: f64,
    /// Keep the first and last stages' depth (Lite).
    pub fix_first_last: bool,
    /// Stem width before rounding.
    pub stem_size: usize,
    /// Keep the stem width unscaled (Lite).
    pub fix_stem: bool,
    /// Head width (already rounded).
    pub num_features: usize,
    /// Activation (SiLU for B*, ReLU6 for Lite).
    pub act: Activation,
    /// Batch-norm epsilon (1e-5, or 1e-3 for `tf_`).
    pub bn_eps: f32,
    /// TensorFlow "SAME" padding (`tf_` ports).
    pub tf_same: bool,
    /// Classes (0: no classifier).
    pub num_classes: usize,
    /// Input channels.
    pub in_chans: usize,
    /// Dropout before the classifier.
    pub drop_rate: f32,
    /// Stochastic-depth rate of the last block.
    pub drop_path_rate: f32,
}

impl From<&ModelArgs> for EfficientNetConfig {
    fn from(a: &ModelArgs) -> Self {
        EfficientNetConfig {
            stages: EFFICIENTNET_DEF.to_vec(),
            channel_multiplier: 1.0,
            depth_multiplier: 1.0,
            fix_first_last: false,
            stem_size: 32,
            fix_stem: false,
            num_features: 1280,
            act: Activation::Silu,
            bn_eps: 1e-5,
            tf_same: false,
            num_classes: a.num_classes,
            in_chans: a.in_chans,
            drop_rate: a.drop_rate,
            drop_path_rate: a.drop_path_rate,
        }
    }
}

impl EfficientNetConfig {
    /// `round_channels(c, channel_multiplier)`.
    fn round_chs(&self, c: usize) -> usize {
        make_divisible(c as f64 * self.channel_multiplier, 8, None)
    }

    /// Repeats of each stage after depth scaling (`_scale_stage_depth`, 'ceil').
    pub fn stage_repeats(&self) -> Vec<usize> {
        let n = self.stages.len();
        self.stages
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let m = if self.fix_first_last && (i == 0 || i == n - 1) { 1.0 } else { self.depth_multiplier };
                (s.repeats as f64 * m).ceil() as usize
            })
            .collect()
    }
}

/// EfficientNet: `conv_stem`, `bn1`, `blocks.{stage}.{block}`, `conv_head`, `bn2`, `classifier`.
#[derive(Debug)]
pub struct EfficientNet {
    stem: ConvBnAct,
    blocks: Vec<Vec<Block>>,
    conv_head: ConvBnAct,
    head: ClassifierHead,
}

impl EfficientNet {
    /// Builds the network under `vb`.
    pub fn new(vb: &Vb, cfg: EfficientNetConfig) -> Result<Self> {
        let stem = if cfg.fix_stem { cfg.stem_size } else { cfg.round_chs(cfg.stem_size) };
        let stem_opts = ConvOpts::stride(2).with_tf_same(cfg.tf_same);
        let stem_conv = ConvBnAct::new(
            &vb.pp("conv_stem"),
            &vb.pp("bn1"),
            cfg.in_chans,
            stem,
            (3, 3),
            stem_opts,
            cfg.bn_eps,
            cfg.act,
        );
        let repeats = cfg.stage_repeats();
        let total: usize = repeats.iter().sum();
        let mut in_chs = stem;
        let mut idx = 0;
        let mut blocks = Vec::new();
        for (si, (s, &r)) in cfg.stages.iter().zip(&repeats).enumerate() {
            let out = cfg.round_chs(s.out_chs);
            let mut stage = Vec::new();
            for bi in 0..r {
                let a = BlockArgs {
                    in_chs,
                    out_chs: out,
                    kernel: s.kernel,
                    stride: if bi == 0 { s.stride } else { 1 },
                    expand: if s.kind == BlockKind::DepthwiseSeparable { 1.0 } else { s.expand },
                    se_ratio: s.se_ratio,
                    drop_path: cfg.drop_path_rate * idx as f32 / total as f32,
                };
                stage.push(Block::new(&vb.pp("blocks").pp(si).pp(bi), s.kind, a, &cfg));
                in_chs = out;
                idx += 1;
            }
            blocks.push(stage);
        }
        let conv_head = ConvBnAct::new(
            &vb.pp("conv_head"),
            &vb.pp("bn2"),
            in_chs,
            cfg.num_features,
            (1, 1),
            ConvOpts::default(),
            cfg.bn_eps,
            cfg.act,
        );
        let head = ClassifierHead::new(&vb.pp("classifier"), cfg.num_features, cfg.num_classes, cfg.drop_rate);
        Ok(EfficientNet { stem: stem_conv, blocks, conv_head, head })
    }
}

impl Architecture for EfficientNet {
    fn forward_features(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let mut x = self.stem.forward(cx, x)?;
        cx.record("conv_stem", "Conv2d+BN", &x);
        for stage in &self.blocks {
            for b in stage {
                x = b.forward(cx, &x)?;
            }
        }
        let x = self.conv_head.forward(cx, &x)?;
        cx.record("conv_head", "Conv2d+BN", &x);
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
}

// ---------------------------------------------------------------- pretrained configs

const fn effnet_cfg(tag: &'static str) -> PretrainedCfg {
    PretrainedCfg::imagenet(tag, "conv_stem", "classifier").bicubic()
}

pub(crate) static EFFICIENTNET_B0: &[PretrainedCfg] =
    &[effnet_cfg("ra_in1k"), effnet_cfg("ra4_e3600_r224_in1k").inception_norm().crop(0.9).test_size(256)];
pub(crate) static EFFICIENTNET_B1: &[PretrainedCfg] = &[
    effnet_cfg("ra4_e3600_r240_in1k").inception_norm().size(240).crop(0.9).test_size(288),
    effnet_cfg("ft_in1k").test_size(256),
];
pub(crate) static EFFICIENTNET_B2: &[PretrainedCfg] = &[effnet_cfg("ra_in1k").size(256).test_size(288)];
pub(crate) static EFFICIENTNET_B3: &[PretrainedCfg] = &[effnet_cfg("ra2_in1k").size(288).test_size(320)];
pub(crate) static EFFICIENTNET_B4: &[PretrainedCfg] = &[effnet_cfg("ra2_in1k").size(320).test_size(384)];
pub(crate) static EFFICIENTNET_B5: &[PretrainedCfg] =
    &[effnet_cfg("sw_in12k_ft_in1k").size(448).crop(1.0), effnet_cfg("sw_in12k").size(416).crop(0.95).classes(11821)];
pub(crate) static EFFICIENTNET_B6: &[PretrainedCfg] = &[effnet_cfg("untrained").size(528).crop(0.942)];
pub(crate) static EFFICIENTNET_B7: &[PretrainedCfg] = &[effnet_cfg("untrained").size(600).crop(0.949)];
pub(crate) static EFFICIENTNET_LITE0: &[PretrainedCfg] = &[effnet_cfg("ra_in1k")];

const fn tf_cfgs(s: usize, crop: f64) -> [PretrainedCfg; 4] {
    [
        effnet_cfg("ns_jft_in1k").size(s).crop(crop),
        effnet_cfg("ap_in1k").size(s).crop(crop).inception_norm(),
        effnet_cfg("aa_in1k").size(s).crop(crop),
        effnet_cfg("in1k").size(s).crop(crop),
    ]
}
pub(crate) static TF_EFFICIENTNET_B0: &[PretrainedCfg] = &tf_cfgs(224, 0.875);
pub(crate) static TF_EFFICIENTNET_B1: &[PretrainedCfg] = &tf_cfgs(240, 0.882);
pub(crate) static TF_EFFICIENTNET_B2: &[PretrainedCfg] = &tf_cfgs(260, 0.890);
pub(crate) static TF_EFFICIENTNET_B3: &[PretrainedCfg] = &tf_cfgs(300, 0.904);
pub(crate) static TF_EFFICIENTNET_B4: &[PretrainedCfg] = &tf_cfgs(380, 0.922);
pub(crate) static TF_EFFICIENTNET_B5: &[PretrainedCfg] = &tf_cfgs(456, 0.934);
pub(crate) static TF_EFFICIENTNET_B6: &[PretrainedCfg] = &[
    effnet_cfg("ns_jft_in1k").size(528).crop(0.942),
    effnet_cfg("ap_in1k").size(528).crop(0.942).inception_norm(),
    effnet_cfg("aa_in1k").size(528).crop(0.942),
];
pub(crate) static TF_EFFICIENTNET_B7: &[PretrainedCfg] = &[
    effnet_cfg("ns_jft_in1k").size(600).crop(0.949),
    effnet_cfg("ap_in1k").size(600).crop(0.949).inception_norm(),
    effnet_cfg("ra_in1k").size(600).crop(0.949),
    effnet_cfg("aa_in1k").size(600).crop(0.949),
];
pub(crate) static TF_EFFICIENTNET_LITE0: &[PretrainedCfg] = &[effnet_cfg("in1k").inception_norm()];

// ---------------------------------------------------------------- entry points

fn efficientnet(arch: &'static str, opts: ZooOpts, ch: f64, depth: f64, tf: bool) -> Result<Model> {
    build(arch, opts, |vb, a| {
        let cfg = EfficientNetConfig {
            channel_multiplier: ch,
            depth_multiplier: depth,
            num_features: make_divisible(1280.0 * ch, 8, None),
            bn_eps: if tf { 1e-3 } else { 1e-5 },
            tf_same: tf,
            ..a.into()
        };
        Ok(Box::new(EfficientNet::new(vb, cfg)?))
    })
}

fn efficientnet_lite(arch: &'static str, opts: ZooOpts, ch: f64, depth: f64, tf: bool) -> Result<Model> {
    build(arch, opts, |vb, a| {
        let cfg = EfficientNetConfig {
            stages: EFFICIENTNET_LITE_DEF.to_vec(),
            channel_multiplier: ch,
            depth_multiplier: depth,
            fix_first_last: true,
            fix_stem: true,
            num_features: 1280,
            act: Activation::Relu6,
            bn_eps: if tf { 1e-3 } else { 1e-5 },
            tf_same: tf,
            ..a.into()
        };
        Ok(Box::new(EfficientNet::new(vb, cfg)?))
    })
}

/// EfficientNet-B0 (5.3M params).
pub fn efficientnet_b0(opts: ZooOpts) -> Result<Model> {
    efficientnet("efficientnet_b0", opts, 1.0, 1.0, false)
}
/// EfficientNet-B1.
pub fn efficientnet_b1(opts: ZooOpts) -> Result<Model> {
    efficientnet("efficientnet_b1", opts, 1.0, 1.1, false)
}
/// EfficientNet-B2.
pub fn efficientnet_b2(opts: ZooOpts) -> Result<Model> {
    efficientnet("efficientnet_b2", opts, 1.1, 1.2, false)
}
/// EfficientNet-B3.
pub fn efficientnet_b3(opts: ZooOpts) -> Result<Model> {
    efficientnet("efficientnet_b3", opts, 1.2, 1.4, false)
}
/// EfficientNet-B4.
pub fn efficientnet_b4(opts: ZooOpts) -> Result<Model> {
    efficientnet("efficientnet_b4", opts, 1.4, 1.8, false)
}
/// EfficientNet-B5.
pub fn efficientnet_b5(opts: ZooOpts) -> Result<Model> {
    efficientnet("efficientnet_b5", opts, 1.6, 2.2, false)
}
/// EfficientNet-B6.
pub fn efficientnet_b6(opts: ZooOpts) -> Result<Model> {
    efficientnet("efficientnet_b6", opts, 1.8, 2.6, false)
}
/// EfficientNet-B7.
pub fn efficientnet_b7(opts: ZooOpts) -> Result<Model> {
    efficientnet("efficientnet_b7", opts, 2.0, 3.1, false)
}
/// EfficientNet-B0, TensorFlow port (SAME padding, BN eps 1e-3).
pub fn tf_efficientnet_b0(opts: ZooOpts) -> Result<Model> {
    efficientnet("tf_efficientnet_b0", opts, 1.0, 1.0, true)
}
/// EfficientNet-B1, TensorFlow port.
pub fn tf_efficientnet_b1(opts: ZooOpts) -> Result<Model> {
    efficientnet("tf_efficientnet_b1", opts, 1.0, 1.1, true)
}
/// EfficientNet-B2, TensorFlow port.
pub fn tf_efficientnet_b2(opts: ZooOpts) -> Result<Model> {
    efficientnet("tf_efficientnet_b2", opts, 1.1, 1.2, true)
}
/// EfficientNet-B3, TensorFlow port.
pub fn tf_efficientnet_b3(opts: ZooOpts) -> Result<Model> {
    efficientnet("tf_efficientnet_b3", opts, 1.2, 1.4, true)
}
/// EfficientNet-B4, TensorFlow port.
pub fn tf_efficientnet_b4(opts: ZooOpts) -> Result<Model> {
    efficientnet("tf_efficientnet_b4", opts, 1.4, 1.8, true)
}
/// EfficientNet-B5, TensorFlow port.
pub fn tf_efficientnet_b5(opts: ZooOpts) -> Result<Model> {
    efficientnet("tf_efficientnet_b5", opts, 1.6, 2.2, true)
}
/// EfficientNet-B6, TensorFlow port.
pub fn tf_efficientnet_b6(opts: ZooOpts) -> Result<Model> {
    efficientnet("tf_efficientnet_b6", opts, 1.8, 2.6, true)
}
/// EfficientNet-B7, TensorFlow port.
pub fn tf_efficientnet_b7(opts: ZooOpts) -> Result<Model> {
    efficientnet("tf_efficientnet_b7", opts, 2.0, 3.1, true)
}
/// EfficientNet-Lite0 (ReLU6, no SE; PyTorch padding).
pub fn efficientnet_lite0(opts: ZooOpts) -> Result<Model> {
    efficientnet_lite("efficientnet_lite0", opts, 1.0, 1.0, false)
}
/// EfficientNet-Lite0, TensorFlow port (SAME padding, BN eps 1e-3).
pub fn tf_efficientnet_lite0(opts: ZooOpts) -> Result<Model> {
    efficientnet_lite("tf_efficientnet_lite0", opts, 1.0, 1.0, true)
}

// ---------------------------------------------------------------- registry

/// The registered variants of this family, each one line (`name`, pretrained configs).
pub(crate) static MODELS: &[ModelEntry] = &[
    register!(efficientnet_b0, EFFICIENTNET_B0),
    register!(efficientnet_b1, EFFICIENTNET_B1),
    register!(efficientnet_b2, EFFICIENTNET_B2),
    register!(efficientnet_b3, EFFICIENTNET_B3),
    register!(efficientnet_b4, EFFICIENTNET_B4),
    register!(efficientnet_b5, EFFICIENTNET_B5),
    register!(efficientnet_b6, EFFICIENTNET_B6),
    register!(efficientnet_b7, EFFICIENTNET_B7),
    register!(tf_efficientnet_b0, TF_EFFICIENTNET_B0),
    register!(tf_efficientnet_b1, TF_EFFICIENTNET_B1),
    register!(tf_efficientnet_b2, TF_EFFICIENTNET_B2),
    register!(tf_efficientnet_b3, TF_EFFICIENTNET_B3),
    register!(tf_efficientnet_b4, TF_EFFICIENTNET_B4),
    register!(tf_efficientnet_b5, TF_EFFICIENTNET_B5),
    register!(tf_efficientnet_b6, TF_EFFICIENTNET_B6),
    register!(tf_efficientnet_b7, TF_EFFICIENTNET_B7),
    register!(efficientnet_lite0, EFFICIENTNET_LITE0),
    register!(tf_efficientnet_lite0, TF_EFFICIENTNET_LITE0),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_scaling_follows_timm() {
        let a = ModelArgs { num_classes: 1000, in_chans: 3, drop_rate: 0.0, drop_path_rate: 0.0 };
        let b7 = EfficientNetConfig { channel_multiplier: 2.0, depth_multiplier: 3.1, ..(&a).into() };
        assert_eq!(b7.stage_repeats(), vec![4, 7, 7, 10, 10, 13, 4]);
        let lite4 = EfficientNetConfig {
            stages: EFFICIENTNET_LITE_DEF.to_vec(),
            depth_multiplier: 1.8,
            fix_first_last: true,
            ..(&a).into()
        };
        assert_eq!(lite4.stage_repeats(), vec![1, 4, 4, 6, 6, 8, 1]);
    }
}
