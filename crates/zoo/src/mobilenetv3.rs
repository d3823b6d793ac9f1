//! MobileNet-V3 (Howard et al. 2019, "Searching for MobileNetV3"), as timm builds it
//! (`timm/models/mobilenetv3.py`): the shared inverted-residual blocks
//! ([`crate::efficientnet_builder`]) with hard-swish, ReLU in the early blocks (`nre`),
//! squeeze-excitation sized from the expanded width (rounded to 8) with a ReLU and a
//! hard-sigmoid gate, and the "efficient head": global pooling *before* the head conv
//! (`conv_head`, with a bias and no norm) and its activation (`act2`), then the classifier.
//!
//! `tf_` variants are the ports of Google's TensorFlow checkpoints: TensorFlow "SAME"
//! padding and batch-norm epsilon 1e-3. `minimal` variants drop squeeze-excitation,
//! hard-swish and 5x5 kernels; `mobilenetv3_rw` is timm's own early variant.

use crate::Model;
use crate::efficientnet_builder::{
    ArchDef, BuilderConfig, MbBlock, SeRule, build_blocks, decode_arch_def, forward_blocks,
};
use crate::error::Result;
use crate::layers::{ClassifierHead, Conv2d, ConvBnAct, ConvOpts, act};
use crate::model::{Architecture, ModelArgs, ZooOpts, build};
use crate::pretrained::PretrainedCfg;
use crate::registry::{ModelEntry, register};
use convnet_nn::context::Cx;
use convnet_nn::store::Vb;
use convnet_tensor::{Activation, Tensor};

// ---------------------------------------------------------------- definitions

/// MobileNet-V3-Large (`_gen_mobilenet_v3`): ReLU in the first three stages, hard-swish after.
pub const LARGE_DEF: ArchDef = &[
    &["ds_r1_k3_s1_e1_c16_nre"],
    &["ir_r1_k3_s2_e4_c24_nre", "ir_r1_k3_s1_e3_c24_nre"],
    &["ir_r3_k5_s2_e3_c40_se0.25_nre"],
    &["ir_r1_k3_s2_e6_c80", "ir_r1_k3_s1_e2.5_c80", "ir_r2_k3_s1_e2.3_c80"],
    &["ir_r2_k3_s1_e6_c112_se0.25"],
    &["ir_r3_k5_s2_e6_c160_se0.25"],
    &["cn_r1_k1_s1_c960"],
];

/// MobileNet-V3-Large-Minimal: ReLU throughout, 3x3 kernels, no squeeze-excitation.
pub const LARGE_MINIMAL_DEF: ArchDef = &[
    &["ds_r1_k3_s1_e1_c16"],
    &["ir_r1_k3_s2_e4_c24", "ir_r1_k3_s1_e3_c24"],
    &["ir_r3_k3_s2_e3_c40"],
    &["ir_r1_k3_s2_e6_c80", "ir_r1_k3_s1_e2.5_c80", "ir_r2_k3_s1_e2.3_c80"],
    &["ir_r2_k3_s1_e6_c112"],
    &["ir_r3_k3_s2_e6_c160"],
    &["cn_r1_k1_s1_c960"],
];

/// MobileNet-V3-Small.
pub const SMALL_DEF: ArchDef = &[
    &["ds_r1_k3_s2_e1_c16_se0.25_nre"],
    &["ir_r1_k3_s2_e4.5_c24_nre", "ir_r1_k3_s1_e3.67_c24_nre"],
    &["ir_r1_k5_s2_e4_c40_se0.25", "ir_r2_k5_s1_e6_c40_se0.25"],
    &["ir_r2_k5_s1_e3_c48_se0.25"],
    &["ir_r3_k5_s2_e6_c96_se0.25"],
    &["cn_r1_k1_s1_c576"],
];

/// MobileNet-V3-Small-Minimal.
pub const SMALL_MINIMAL_DEF: ArchDef = &[
    &["ds_r1_k3_s2_e1_c16"],
    &["ir_r1_k3_s2_e4.5_c24", "ir_r1_k3_s1_e3.67_c24"],
    &["ir_r1_k3_s2_e4_c40", "ir_r2_k3_s1_e6_c40"],
    &["ir_r2_k3_s1_e3_c48"],
    &["ir_r3_k3_s2_e6_c96"],
    &["cn_r1_k1_s1_c576"],
];

/// timm's `mobilenetv3_rw` (`_gen_mobilenet_v3_rw`): Large with a plain first block.
pub const RW_DEF: ArchDef = &[
    &["ds_r1_k3_s1_e1_c16_nre_noskip"],
    &["ir_r1_k3_s2_e4_c24_nre", "ir_r1_k3_s1_e3_c24_nre"],
    &["ir_r3_k5_s2_e3_c40_se0.25_nre"],
    &["ir_r1_k3_s2_e6_c80", "ir_r1_k3_s1_e2.5_c80", "ir_r2_k3_s1_e2.3_c80"],
    &["ir_r2_k3_s1_e6_c112_se0.25"],
    &["ir_r3_k5_s2_e6_c160_se0.25"],
    &["cn_r1_k1_s1_c960"],
];

// ---------------------------------------------------------------- model

/// Everything that distinguishes one MobileNet-V3 from another.
#[derive(Clone, Debug, PartialEq)]
pub struct MobileNetV3Config {
    /// Block strings before scaling.
    pub arch_def: ArchDef,
    /// Width multiplier.
    pub channel_multiplier: f64,
    /// Depth multiplier.
    pub depth_multiplier: f64,
    /// Stem width before rounding.
    pub stem_size: usize,
    /// Keep the stem width unscaled (timm: multipliers under 0.75).
    pub fix_stem: bool,
    /// Width of the head conv after pooling (`head_hidden_size`, never scaled).
    pub num_features: usize,
    /// Whether the head conv has a bias.
    pub head_bias: bool,
    /// The model's activation (hard-swish, or ReLU for the minimal variants).
    pub act: Activation,
    /// Squeeze-excitation rule.
    pub se: SeRule,
    /// Batch-norm epsilon (1e-5, or 1e-3 for `tf_` and `rw`).
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

impl From<&ModelArgs> for MobileNetV3Config {
    fn from(a: &ModelArgs) -> Self {
        MobileNetV3Config {
            arch_def: LARGE_DEF,
            channel_multiplier: 1.0,
            depth_multiplier: 1.0,
            stem_size: 16,
            fix_stem: false,
            num_features: 1280,
            head_bias: true,
            act: Activation::HardSwish,
            se: SeRule::MOBILENETV3,
            bn_eps: 1e-5,
            tf_same: false,
            num_classes: a.num_classes,
            in_chans: a.in_chans,
            drop_rate: a.drop_rate,
            drop_path_rate: a.drop_path_rate,
        }
    }
}

impl MobileNetV3Config {
    /// The builder's view of this config.
    pub fn builder(&self) -> BuilderConfig {
        BuilderConfig {
            channel_multiplier: self.channel_multiplier,
            act: self.act,
            se: self.se,
            bn_eps: self.bn_eps,
            tf_same: self.tf_same,
            drop_path_rate: self.drop_path_rate,
        }
    }
}

/// MobileNet-V3: `conv_stem`, `bn1`, `blocks.{stage}.{block}`, `conv_head`, `classifier`.
#[derive(Debug)]
pub struct MobileNetV3 {
    stem: ConvBnAct,
    blocks: Vec<Vec<MbBlock>>,
    /// The 1x1 conv on the pooled features.
    conv_head: Conv2d,
    act: Activation,
    head: ClassifierHead,
}

impl MobileNetV3 {
    /// Builds the network under `vb`.
    pub fn new(vb: &Vb, cfg: MobileNetV3Config) -> Result<Self> {
        let b = cfg.builder();
        let (stem_conv, stem) = b.build_stem(vb, cfg.in_chans, cfg.stem_size, cfg.fix_stem);
        let stages = decode_arch_def(cfg.arch_def, cfg.depth_multiplier, false)?;
        let (blocks, out_chs) = build_blocks(&vb.pp("blocks"), stem, &stages, &b);
        let conv_head = Conv2d::square(
            &vb.pp("conv_head"),
            out_chs,
            cfg.num_features,
            1,
            ConvOpts::default().with_bias(cfg.head_bias),
        );
        let head = ClassifierHead::new(&vb.pp("classifier"), cfg.num_features, cfg.num_classes, cfg.drop_rate);
        Ok(MobileNetV3 { stem: stem_conv, blocks, conv_head, act: cfg.act, head })
    }
}

impl Architecture for MobileNetV3 {
    fn forward_features(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let x = self.stem.forward(cx, x)?;
        cx.record("conv_stem", "Conv2d+BN", &x);
        forward_blocks(cx, &self.blocks, x)
    }
    /// Pooling, `conv_head` and its activation on the pooled `[n, c]`, dropout, classifier.
    fn forward_head(&self, cx: &Cx, x: &Tensor, pre_logits: bool) -> Result<Tensor> {
        let x = if x.rank() == 4 { x.global_avg_pool()? } else { x.clone() };
        let x = act(&self.conv_head.forward_pooled(cx, &x)?, self.act);
        cx.record("conv_head", "Conv2d", &x);
        let y = self.head.forward(cx, &x, pre_logits)?;
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

/// timm's `_cfg` of this file: bilinear, ImageNet mean/std.
const fn mnv3_cfg(tag: &'static str) -> PretrainedCfg {
    PretrainedCfg::imagenet(tag, "conv_stem", "classifier")
}

pub(crate) static MOBILENETV3_LARGE_075: &[PretrainedCfg] = &[mnv3_cfg("untrained")];
pub(crate) static MOBILENETV3_LARGE_100: &[PretrainedCfg] = &[
    mnv3_cfg("ra_in1k").bicubic(),
    mnv3_cfg("ra4_e3600_r224_in1k").bicubic().inception_norm().crop(0.95).test_size(256),
    mnv3_cfg("miil_in21k_ft_in1k").norm([0.0; 3], [1.0; 3]),
    mnv3_cfg("miil_in21k").norm([0.0; 3], [1.0; 3]).classes(11221),
];
pub(crate) static MOBILENETV3_LARGE_150D: &[PretrainedCfg] =
    &[mnv3_cfg("ra4_e3600_r256_in1k").inception_norm().size(256).crop(0.95).test_size(320)];
pub(crate) static MOBILENETV3_SMALL: &[PretrainedCfg] = &[mnv3_cfg("lamb_in1k").bicubic()];
pub(crate) static MOBILENETV3_RW: &[PretrainedCfg] = &[mnv3_cfg("rmsp_in1k").bicubic()];
pub(crate) static TF_MOBILENETV3: &[PretrainedCfg] = &[mnv3_cfg("in1k").inception_norm()];

// ---------------------------------------------------------------- entry points

/// `_gen_mobilenet_v3`: width `ch`, depth `depth`; `tf` selects the TensorFlow port's
/// padding and epsilon. Small variants have a 1024-wide head, Large 1280; the stem keeps
/// 16 channels under width 0.75.
fn mobilenet_v3(arch: &'static str, opts: ZooOpts, def: ArchDef, ch: f64, depth: f64, tf: bool) -> Result<Model> {
    let small = arch.contains("small");
    let minimal = arch.contains("minimal");
    build(arch, opts, |vb, a| {
        let cfg = MobileNetV3Config {
            arch_def: def,
            channel_multiplier: ch,
            depth_multiplier: depth,
            fix_stem: ch < 0.75,
            num_features: if small { 1024 } else { 1280 },
            act: if minimal { Activation::Relu } else { Activation::HardSwish },
            bn_eps: if tf { 1e-3 } else { 1e-5 },
            tf_same: tf,
            ..a.into()
        };
        Ok(Box::new(MobileNetV3::new(vb, cfg)?))
    })
}

/// MobileNet-V3-Large, width 0.75.
pub fn mobilenetv3_large_075(opts: ZooOpts) -> Result<Model> {
    mobilenet_v3("mobilenetv3_large_075", opts, LARGE_DEF, 0.75, 1.0, false)
}
/// MobileNet-V3-Large (5.5M params).
pub fn mobilenetv3_large_100(opts: ZooOpts) -> Result<Model> {
    mobilenet_v3("mobilenetv3_large_100", opts, LARGE_DEF, 1.0, 1.0, false)
}
/// MobileNet-V3-Large, width 1.5, depth 1.2.
pub fn mobilenetv3_large_150d(opts: ZooOpts) -> Result<Model> {
    mobilenet_v3("mobilenetv3_large_150d", opts, LARGE_DEF, 1.5, 1.2, false)
}
/// MobileNet-V3-Small, width 0.5.
pub fn mobilenetv3_small_050(opts: ZooOpts) -> Result<Model> {
    mobilenet_v3("mobilenetv3_small_050", opts, SMALL_DEF, 0.5, 1.0, false)
}
/// MobileNet-V3-Small, width 0.75.
pub fn mobilenetv3_small_075(opts: ZooOpts) -> Result<Model> {
    mobilenet_v3("mobilenetv3_small_075", opts, SMALL_DEF, 0.75, 1.0, false)
}
/// MobileNet-V3-Small (2.5M params).
pub fn mobilenetv3_small_100(opts: ZooOpts) -> Result<Model> {
    mobilenet_v3("mobilenetv3_small_100", opts, SMALL_DEF, 1.0, 1.0, false)
}
/// timm's MobileNet-V3 (`_gen_mobilenet_v3_rw`): no head bias, a squeeze-excitation with
/// the block's activation and Python-rounded width, batch-norm epsilon 1e-3.
pub fn mobilenetv3_rw(opts: ZooOpts) -> Result<Model> {
    build("mobilenetv3_rw", opts, |vb, a| {
        let cfg = MobileNetV3Config {
            arch_def: RW_DEF,
            head_bias: false,
            se: SeRule::MOBILENETV3_RW,
            bn_eps: 1e-3,
            ..a.into()
        };
        Ok(Box::new(MobileNetV3::new(vb, cfg)?))
    })
}
/// MobileNet-V3-Large, width 0.75, TensorFlow port.
pub fn tf_mobilenetv3_large_075(opts: ZooOpts) -> Result<Model> {
    mobilenet_v3("tf_mobilenetv3_large_075", opts, LARGE_DEF, 0.75, 1.0, true)
}
/// MobileNet-V3-Large, TensorFlow port.
pub fn tf_mobilenetv3_large_100(opts: ZooOpts) -> Result<Model> {
    mobilenet_v3("tf_mobilenetv3_large_100", opts, LARGE_DEF, 1.0, 1.0, true)
}
/// MobileNet-V3-Large-Minimal, TensorFlow port.
pub fn tf_mobilenetv3_large_minimal_100(opts: ZooOpts) -> Result<Model> {
    mobilenet_v3("tf_mobilenetv3_large_minimal_100", opts, LARGE_MINIMAL_DEF, 1.0, 1.0, true)
}
/// MobileNet-V3-Small, width 0.75, TensorFlow port.
pub fn tf_mobilenetv3_small_075(opts: ZooOpts) -> Result<Model> {
    mobilenet_v3("tf_mobilenetv3_small_075", opts, SMALL_DEF, 0.75, 1.0, true)
}
/// MobileNet-V3-Small, TensorFlow port.
pub fn tf_mobilenetv3_small_100(opts: ZooOpts) -> Result<Model> {
    mobilenet_v3("tf_mobilenetv3_small_100", opts, SMALL_DEF, 1.0, 1.0, true)
}
/// MobileNet-V3-Small-Minimal, TensorFlow port.
pub fn tf_mobilenetv3_small_minimal_100(opts: ZooOpts) -> Result<Model> {
    mobilenet_v3("tf_mobilenetv3_small_minimal_100", opts, SMALL_MINIMAL_DEF, 1.0, 1.0, true)
}

// ---------------------------------------------------------------- registry

/// The registered variants of this family, each one line (`name`, pretrained configs).
pub(crate) static MODELS: &[ModelEntry] = &[
    register!(mobilenetv3_large_075, MOBILENETV3_LARGE_075),
    register!(mobilenetv3_large_100, MOBILENETV3_LARGE_100),
    register!(mobilenetv3_large_150d, MOBILENETV3_LARGE_150D),
    register!(mobilenetv3_small_050, MOBILENETV3_SMALL),
    register!(mobilenetv3_small_075, MOBILENETV3_SMALL),
    register!(mobilenetv3_small_100, MOBILENETV3_SMALL),
    register!(mobilenetv3_rw, MOBILENETV3_RW),
    register!(tf_mobilenetv3_large_075, TF_MOBILENETV3),
    register!(tf_mobilenetv3_large_100, TF_MOBILENETV3),
    register!(tf_mobilenetv3_large_minimal_100, TF_MOBILENETV3),
    register!(tf_mobilenetv3_small_075, TF_MOBILENETV3),
    register!(tf_mobilenetv3_small_100, TF_MOBILENETV3),
    register!(tf_mobilenetv3_small_minimal_100, TF_MOBILENETV3),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::efficientnet_builder::BlockKind;

    #[test]
    fn large_150d_scales_its_head_stage_too() {
        // timm scales every stage, the single `cn` one included: ceil(1 * 1.2) = 2
        let stages = decode_arch_def(LARGE_DEF, 1.2, false).unwrap();
        let last = &stages[6];
        assert_eq!((last[0].kind, last[0].repeats), (BlockKind::ConvBnAct, 2));
    }
}
