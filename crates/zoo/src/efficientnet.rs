//! EfficientNet B0-B7 and EfficientNet-Lite (Tan & Le 2019, "EfficientNet: Rethinking
//! Model Scaling for Convolutional Neural Networks"), as timm builds them
//! (`timm/models/efficientnet.py`, `_efficientnet_blocks.py`, `_efficientnet_builder.py`):
//! the same block strings, channel rounding, depth scaling, key names and defaults.
//!
//! MobileNet-V2 lives here too, as in timm: it is an EfficientNet-class network (head conv
//! and norm before pooling) with its own block strings and ReLU6. The blocks come from the
//! shared builder, [`crate::efficientnet_builder`].
//!
//! `tf_` variants are the ports of Google's TensorFlow checkpoints: TensorFlow "SAME"
//! padding (asymmetric on stride-2 convs) and batch-norm epsilon 1e-3.

use crate::Model;
use crate::efficientnet_builder::{
    ArchDef, BuilderConfig, MbBlock, SeRule, build_blocks, decode_arch_def, forward_blocks,
};
use crate::error::Result;
use crate::layers::{ClassifierHead, ConvBnAct, ConvOpts, make_divisible};
use crate::model::{Architecture, ModelArgs, ZooOpts, build};
use crate::pretrained::PretrainedCfg;
use crate::registry::{ModelEntry, register};
use convnet_nn::context::Cx;
use convnet_nn::store::Vb;
use convnet_tensor::{Activation, Tensor};

// ---------------------------------------------------------------- definitions

/// EfficientNet-B0's definition (`_gen_efficientnet`).
pub const EFFICIENTNET_DEF: ArchDef = &[
    &["ds_r1_k3_s1_e1_c16_se0.25"],
    &["ir_r2_k3_s2_e6_c24_se0.25"],
    &["ir_r2_k5_s2_e6_c40_se0.25"],
    &["ir_r3_k3_s2_e6_c80_se0.25"],
    &["ir_r3_k5_s1_e6_c112_se0.25"],
    &["ir_r4_k5_s2_e6_c192_se0.25"],
    &["ir_r1_k3_s1_e6_c320_se0.25"],
];

/// EfficientNet-Lite's definition: B0 without squeeze-excitation (`_gen_efficientnet_lite`).
pub const EFFICIENTNET_LITE_DEF: ArchDef = &[
    &["ds_r1_k3_s1_e1_c16"],
    &["ir_r2_k3_s2_e6_c24"],
    &["ir_r2_k5_s2_e6_c40"],
    &["ir_r3_k3_s2_e6_c80"],
    &["ir_r3_k5_s1_e6_c112"],
    &["ir_r4_k5_s2_e6_c192"],
    &["ir_r1_k3_s1_e6_c320"],
];

/// MobileNet-V2's definition (`_gen_mobilenet_v2`; Sandler et al. 2018, "MobileNetV2:
/// Inverted Residuals and Linear Bottlenecks"): ReLU6, no squeeze-excitation.
pub const MOBILENETV2_DEF: ArchDef = &[
    &["ds_r1_k3_s1_c16"],
    &["ir_r2_k3_s2_e6_c24"],
    &["ir_r3_k3_s2_e6_c32"],
    &["ir_r4_k3_s2_e6_c64"],
    &["ir_r3_k3_s1_e6_c96"],
    &["ir_r3_k3_s2_e6_c160"],
    &["ir_r1_k3_s1_e6_c320"],
];

// ---------------------------------------------------------------- model

/// Everything that distinguishes one EfficientNet (or MobileNet-V2) from another.
#[derive(Clone, Debug, PartialEq)]
pub struct EfficientNetConfig {
    /// Block strings before scaling.
    pub arch_def: ArchDef,
    /// Width multiplier.
    pub channel_multiplier: f64,
    /// Depth multiplier.
    pub depth_multiplier: f64,
    /// Keep the first and last stages' depth (Lite, MobileNet-V2 `d` variants).
    pub fix_first_last: bool,
    /// Stem width before rounding.
    pub stem_size: usize,
    /// Keep the stem width unscaled (Lite).
    pub fix_stem: bool,
    /// Head width (already rounded).
    pub num_features: usize,
    /// Activation (SiLU for B*, ReLU6 for Lite and MobileNet-V2).
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
            arch_def: EFFICIENTNET_DEF,
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
    /// The builder's view of this config (EfficientNet's squeeze-excitation rule).
    pub fn builder(&self) -> BuilderConfig {
        BuilderConfig {
            channel_multiplier: self.channel_multiplier,
            act: self.act,
            se: SeRule::EFFICIENTNET,
            bn_eps: self.bn_eps,
            tf_same: self.tf_same,
            drop_path_rate: self.drop_path_rate,
        }
    }

    /// Blocks per stage after depth scaling.
    pub fn stage_repeats(&self) -> Result<Vec<usize>> {
        let stages = decode_arch_def(self.arch_def, self.depth_multiplier, self.fix_first_last)?;
        Ok(stages.iter().map(|s| s.iter().map(|d| d.repeats).sum()).collect())
    }
}

/// EfficientNet: `conv_stem`, `bn1`, `blocks.{stage}.{block}`, `conv_head`, `bn2`, `classifier`.
#[derive(Debug)]
pub struct EfficientNet {
    stem: ConvBnAct,
    blocks: Vec<Vec<MbBlock>>,
    conv_head: ConvBnAct,
    head: ClassifierHead,
}

impl EfficientNet {
    /// Builds the network under `vb`.
    pub fn new(vb: &Vb, cfg: EfficientNetConfig) -> Result<Self> {
        let b = cfg.builder();
        let (stem_conv, stem) = b.build_stem(vb, cfg.in_chans, cfg.stem_size, cfg.fix_stem);
        let stages = decode_arch_def(cfg.arch_def, cfg.depth_multiplier, cfg.fix_first_last)?;
        let (blocks, head_chs) = build_blocks(&vb.pp("blocks"), stem, &stages, &b);
        let conv_head = ConvBnAct::new(
            &vb.pp("conv_head"),
            &vb.pp("bn2"),
            head_chs,
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
        let x = self.stem.forward(cx, x)?;
        cx.record("conv_stem", "Conv2d+BN", &x);
        let x = forward_blocks(cx, &self.blocks, x)?;
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

pub(crate) static MOBILENETV2_035: &[PretrainedCfg] = &[effnet_cfg("untrained")];
pub(crate) static MOBILENETV2_050: &[PretrainedCfg] = &[effnet_cfg("lamb_in1k")];
pub(crate) static MOBILENETV2_075: &[PretrainedCfg] = &[effnet_cfg("untrained")];
pub(crate) static MOBILENETV2_RA: &[PretrainedCfg] = &[effnet_cfg("ra_in1k")];

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
            arch_def: EFFICIENTNET_LITE_DEF,
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

/// MobileNet-V2 (`_gen_mobilenet_v2`) as an EfficientNet: 32-wide stem, ReLU6, a 1280-wide
/// head conv (wider when the multiplier makes it so). `fix_stem_head` (the `d` variants)
/// keeps the stem, the head and the first and last stages' depth unscaled.
fn mobilenet_v2(arch: &'static str, opts: ZooOpts, ch: f64, depth: f64, fix_stem_head: bool) -> Result<Model> {
    build(arch, opts, |vb, a| {
        let head = make_divisible(1280.0 * ch, 8, None);
        let cfg = EfficientNetConfig {
            arch_def: MOBILENETV2_DEF,
            channel_multiplier: ch,
            depth_multiplier: depth,
            fix_first_last: fix_stem_head,
            fix_stem: fix_stem_head,
            num_features: if fix_stem_head { 1280 } else { head.max(1280) },
            act: Activation::Relu6,
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

/// MobileNet-V2, width 0.35.
pub fn mobilenetv2_035(opts: ZooOpts) -> Result<Model> {
    mobilenet_v2("mobilenetv2_035", opts, 0.35, 1.0, false)
}
/// MobileNet-V2, width 0.5.
pub fn mobilenetv2_050(opts: ZooOpts) -> Result<Model> {
    mobilenet_v2("mobilenetv2_050", opts, 0.5, 1.0, false)
}
/// MobileNet-V2, width 0.75.
pub fn mobilenetv2_075(opts: ZooOpts) -> Result<Model> {
    mobilenet_v2("mobilenetv2_075", opts, 0.75, 1.0, false)
}
/// MobileNet-V2 (3.5M params).
pub fn mobilenetv2_100(opts: ZooOpts) -> Result<Model> {
    mobilenet_v2("mobilenetv2_100", opts, 1.0, 1.0, false)
}
/// MobileNet-V2, width 1.4.
pub fn mobilenetv2_140(opts: ZooOpts) -> Result<Model> {
    mobilenet_v2("mobilenetv2_140", opts, 1.4, 1.0, false)
}
/// MobileNet-V2, width 1.1, depth 1.2 (stem, head, first and last stages fixed).
pub fn mobilenetv2_110d(opts: ZooOpts) -> Result<Model> {
    mobilenet_v2("mobilenetv2_110d", opts, 1.1, 1.2, true)
}
/// MobileNet-V2, width 1.2, depth 1.4 (stem, head, first and last stages fixed).
pub fn mobilenetv2_120d(opts: ZooOpts) -> Result<Model> {
    mobilenet_v2("mobilenetv2_120d", opts, 1.2, 1.4, true)
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
    register!(mobilenetv2_035, MOBILENETV2_035),
    register!(mobilenetv2_050, MOBILENETV2_050),
    register!(mobilenetv2_075, MOBILENETV2_075),
    register!(mobilenetv2_100, MOBILENETV2_RA),
    register!(mobilenetv2_110d, MOBILENETV2_RA),
    register!(mobilenetv2_120d, MOBILENETV2_RA),
    register!(mobilenetv2_140, MOBILENETV2_RA),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_scaling_follows_timm() {
        let a = ModelArgs { num_classes: 1000, in_chans: 3, drop_rate: 0.0, drop_path_rate: 0.0 };
        let b7 = EfficientNetConfig { channel_multiplier: 2.0, depth_multiplier: 3.1, ..(&a).into() };
        assert_eq!(b7.stage_repeats().unwrap(), vec![4, 7, 7, 10, 10, 13, 4]);
        let lite4 = EfficientNetConfig {
            arch_def: EFFICIENTNET_LITE_DEF,
            depth_multiplier: 1.8,
            fix_first_last: true,
            ..(&a).into()
        };
        assert_eq!(lite4.stage_repeats().unwrap(), vec![1, 4, 4, 6, 6, 8, 1]);
        // mobilenetv2_120d: x1.4 with the first and last stages fixed
        let mnv2 = EfficientNetConfig {
            arch_def: MOBILENETV2_DEF,
            depth_multiplier: 1.4,
            fix_first_last: true,
            ..(&a).into()
        };
        assert_eq!(mnv2.stage_repeats().unwrap(), vec![1, 3, 5, 6, 5, 5, 1]);
    }
}
