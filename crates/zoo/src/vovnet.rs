//! VoVNet (Lee et al. 2019, "An Energy and GPU-Computation Efficient Backbone Network for
//! Real-Time Object Detection") with the residual connections and effective
//! squeeze-excitation of VoVNet-V2 (Lee and Park 2020, "CenterMask"), as timm builds them
//! (`timm/models/vovnet.py`): a three-conv stem, then four stages of one-shot-aggregation
//! blocks, where a chain of 3x3 convs runs once and every intermediate output (with the
//! block's input) is concatenated and mixed by one 1x1 conv. `_dw` variants use separable
//! convs with a 1x1 reduction in front.

use crate::Model;
use crate::error::Result;
use crate::layers::{ClassifierHead, Conv2d, ConvBnAct, ConvOpts, drop_path, max_pool};
use crate::model::{Architecture, ModelArgs, ZooOpts, build};
use crate::pretrained::{INCEPTION_MEAN, INCEPTION_STD, PretrainedCfg};
use crate::registry::{ModelEntry, register};
use convnet_nn::context::Cx;
use convnet_nn::store::Vb;
use convnet_tensor::{Activation, Tensor};

const EPS: f32 = 1e-5;

// ---------------------------------------------------------------- blocks

/// timm's `ConvNormAct` (keys `conv`, `bn`) with ReLU.
fn conv_bn_relu(vb: &Vb, cin: usize, cout: usize, k: usize, stride: usize) -> ConvBnAct {
    ConvBnAct::timm(vb, cin, cout, k, ConvOpts::stride(stride), EPS, Activation::Relu)
}

/// A 3x3 conv-norm-ReLU: dense (`ConvNormAct`) or separable (`SeparableConvNormAct`: a
/// depthwise `conv_dw`, a pointwise `conv_pw`, then `bn` and ReLU).
#[derive(Debug)]
enum Conv3x3 {
    Dense(ConvBnAct),
    Separable { conv_dw: Conv2d, pw: ConvBnAct },
}

impl Conv3x3 {
    fn new(vb: &Vb, cin: usize, cout: usize, stride: usize, separable: bool) -> Self {
        if separable {
            let conv_dw = Conv2d::square(&vb.pp("conv_dw"), cin, cin, 3, ConvOpts::stride(stride).with_groups(cin));
            let pw = ConvBnAct::new(
                &vb.pp("conv_pw"),
                &vb.pp("bn"),
                cin,
                cout,
                (1, 1),
                ConvOpts::default(),
                EPS,
                Activation::Relu,
            );
            Conv3x3::Separable { conv_dw, pw }
        } else {
            Conv3x3::Dense(conv_bn_relu(vb, cin, cout, 3, stride))
        }
    }

    fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        match self {
            Conv3x3::Dense(c) => c.forward(cx, x),
            Conv3x3::Separable { conv_dw, pw } => pw.forward(cx, &conv_dw.forward(cx, x)?),
        }
    }
}

/// Effective squeeze-excitation (timm's `EffectiveSEModule`): one `c -> c` 1x1 conv `fc`
/// (with bias) on the spatial mean, a hard-sigmoid gate, `x * gate`.
#[derive(Debug)]
struct EffectiveSe {
    fc: Conv2d,
}

impl EffectiveSe {
    fn new(vb: &Vb, c: usize) -> Self {
        EffectiveSe { fc: Conv2d::square(&vb.pp("fc"), c, c, 1, ConvOpts::default().with_bias(true)) }
    }

    /// `x: [n, h, w, c] -> [n, h, w, c]`.
    fn forward(&self, cx: &Cx, x: Tensor) -> Result<Tensor> {
        let g = self.fc.forward_pooled(cx, &x.global_avg_pool()?)?;
        Ok(x.mul_channels(&g.activation(Activation::HardSigmoid))?)
    }
}

/// One-shot aggregation (timm's `OsaBlock`): optional 1x1 `conv_reduction`, the
/// `conv_mid` chain, `conv_concat` over `[x, mid_0, .., mid_{l-1}]`, optional effective
/// SE, optional residual.
#[derive(Debug)]
struct OsaBlock {
    path: String,
    conv_reduction: Option<ConvBnAct>,
    conv_mid: Vec<Conv3x3>,
    conv_concat: ConvBnAct,
    attn: Option<EffectiveSe>,
    residual: bool,
    drop_path: f32,
}

impl OsaBlock {
    fn new(vb: &Vb, in_chs: usize, cfg: &VovNetConfig, stage: usize, first: bool, last: bool, dpr: f32) -> Self {
        let mid = cfg.stage_conv_chs[stage];
        let out = cfg.stage_out_chs[stage];
        let conv_reduction =
            (cfg.depthwise && in_chs != mid).then(|| conv_bn_relu(&vb.pp("conv_reduction"), in_chs, mid, 1, 1));
        let mut next = if conv_reduction.is_some() { mid } else { in_chs };
        let conv_mid = (0..cfg.layer_per_block)
            .map(|i| {
                let c = Conv3x3::new(&vb.pp("conv_mid").pp(i), next, mid, 1, cfg.depthwise);
                next = mid;
                c
            })
            .collect();
        let cat = in_chs + cfg.layer_per_block * mid;
        OsaBlock {
            path: vb.prefix().to_string(),
            conv_reduction,
            conv_mid,
            conv_concat: conv_bn_relu(&vb.pp("conv_concat"), cat, out, 1, 1),
            attn: (cfg.ese && last).then(|| EffectiveSe::new(&vb.pp("attn"), out)),
            residual: cfg.residual && !first,
            drop_path: dpr,
        }
    }

    fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let mut y = match &self.conv_reduction {
            Some(c) => c.forward(cx, x)?,
            None => x.clone(),
        };
        let mut outs = Vec::with_capacity(self.conv_mid.len() + 1);
        outs.push(x.clone());
        for c in &self.conv_mid {
            y = c.forward(cx, &y)?;
            outs.push(y.clone());
        }
        let refs: Vec<&Tensor> = outs.iter().collect();
        let cat = Tensor::concat(&refs, 3)?;
        drop(outs);
        let mut y = self.conv_concat.forward(cx, &cat)?;
        if let Some(a) = &self.attn {
            y = a.forward(cx, y)?;
        }
        let y = drop_path(cx, &y, self.drop_path)?;
        let y = if self.residual { y.add(x)? } else { y };
        cx.record(&self.path, "OsaBlock", &y);
        Ok(y)
    }
}

// ---------------------------------------------------------------- model

/// What distinguishes one VoVNet from another (timm's `model_cfgs` entries).
#[derive(Clone, Debug, PartialEq)]
pub struct VovNetConfig {
    /// Widths of the three stem convs.
    pub stem_chs: [usize; 3],
    /// Width of each stage's 3x3 convs.
    pub stage_conv_chs: [usize; 4],
    /// Output width of each stage.
    pub stage_out_chs: [usize; 4],
    /// 3x3 convs per block.
    pub layer_per_block: usize,
    /// Blocks per stage.
    pub block_per_stage: [usize; 4],
    /// Residual connections on every block but a stage's first (VoVNet-V2).
    pub residual: bool,
    /// Separable 3x3 convs (and 1x1 reductions).
    pub depthwise: bool,
    /// Effective squeeze-excitation on each stage's last block.
    pub ese: bool,
    /// Classes (0: no classifier).
    pub num_classes: usize,
    /// Input channels.
    pub in_chans: usize,
    /// Dropout before the classifier.
    pub drop_rate: f32,
    /// Stochastic-depth rate of the last block.
    pub drop_path_rate: f32,
}

impl VovNetConfig {
    /// An ESE-VoVNet-V2 (residual, effective SE) with these widths and depths.
    fn ese(
        a: &ModelArgs,
        stem: [usize; 3],
        conv: [usize; 4],
        out: [usize; 4],
        layers: usize,
        blocks: [usize; 4],
    ) -> Self {
        VovNetConfig {
            stem_chs: stem,
            stage_conv_chs: conv,
            stage_out_chs: out,
            layer_per_block: layers,
            block_per_stage: blocks,
            residual: true,
            depthwise: false,
            ese: true,
            num_classes: a.num_classes,
            in_chans: a.in_chans,
            drop_rate: a.drop_rate,
            drop_path_rate: a.drop_path_rate,
        }
    }
}

/// VoVNet: `stem.{0,1,2}`, `stages.{s}.blocks.{b}`, `head.fc`.
#[derive(Debug)]
pub struct VovNet {
    stem: Vec<Conv3x3>,
    /// Per stage: whether it starts with a 3x3 stride-2 ceil-mode max pool, and its blocks.
    stages: Vec<(bool, Vec<OsaBlock>)>,
    head: ClassifierHead,
}

impl VovNet {
    /// Builds the network under `vb`.
    pub fn new(vb: &Vb, cfg: VovNetConfig) -> Result<Self> {
        let s = cfg.stem_chs;
        let stem_vb = vb.pp("stem");
        let stem = vec![
            Conv3x3::new(&stem_vb.pp(0), cfg.in_chans, s[0], 2, false),
            Conv3x3::new(&stem_vb.pp(1), s[0], s[1], 1, cfg.depthwise),
            Conv3x3::new(&stem_vb.pp(2), s[1], s[2], 2, cfg.depthwise),
        ];
        let total: usize = cfg.block_per_stage.iter().sum();
        let mut index = 0;
        let mut prev = s[2];
        let mut stages = Vec::with_capacity(4);
        for i in 0..4 {
            let n = cfg.block_per_stage[i];
            let blocks_vb = vb.pp("stages").pp(i).pp("blocks");
            let mut blocks = Vec::with_capacity(n);
            for b in 0..n {
                let dpr = cfg.drop_path_rate * index as f32 / (total.max(2) - 1) as f32;
                blocks.push(OsaBlock::new(&blocks_vb.pp(b), prev, &cfg, i, b == 0, b + 1 == n, dpr));
                prev = cfg.stage_out_chs[i];
                index += 1;
            }
            stages.push((i > 0, blocks));
        }
        let head = ClassifierHead::new(&vb.pp("head").pp("fc"), prev, cfg.num_classes, cfg.drop_rate);
        Ok(VovNet { stem, stages, head })
    }
}

impl Architecture for VovNet {
    fn forward_features(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for (i, c) in self.stem.iter().enumerate() {
            x = c.forward(cx, &x)?;
            cx.record(&format!("stem.{i}"), "ConvNormAct", &x);
        }
        for (pool, blocks) in &self.stages {
            if *pool {
                x = max_pool(&x, 3, 2, 0, true)?;
            }
            for b in blocks {
                x = b.forward(cx, &x)?;
            }
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

// ---------------------------------------------------------------- pretrained configs

/// timm's `_cfg` for VoVNet: 224, crop 0.875, bicubic, ImageNet mean and std.
const fn vov(tag: &'static str) -> PretrainedCfg {
    PretrainedCfg::imagenet(tag, "stem.0.conv", "head.fc").bicubic()
}

pub(crate) static ESE_VOVNET19B_SLIM_DW: &[PretrainedCfg] = &[vov("untrained")];
pub(crate) static ESE_VOVNET19B_DW: &[PretrainedCfg] = &[vov("ra_in1k").test_size(288)];
pub(crate) static ESE_VOVNET19B_SLIM: &[PretrainedCfg] = &[vov("untrained")];
pub(crate) static ESE_VOVNET39B: &[PretrainedCfg] = &[vov("ra_in1k").test_size(288)];
pub(crate) static ESE_VOVNET57B: &[PretrainedCfg] =
    &[vov("ra4_e3600_r256_in1k").norm(INCEPTION_MEAN, INCEPTION_STD).crop(0.95).size(256).test_size(320)];
pub(crate) static ESE_VOVNET99B: &[PretrainedCfg] = &[vov("untrained")];

// ---------------------------------------------------------------- entry points

const WIDE_CONV: [usize; 4] = [128, 160, 192, 224];
const WIDE_OUT: [usize; 4] = [256, 512, 768, 1024];
const SLIM_CONV: [usize; 4] = [64, 80, 96, 112];
const SLIM_OUT: [usize; 4] = [112, 256, 384, 512];

fn vovnet(arch: &'static str, opts: ZooOpts, f: impl FnOnce(&ModelArgs) -> VovNetConfig) -> Result<Model> {
    build(arch, opts, |vb, a| Ok(Box::new(VovNet::new(vb, f(a))?)))
}

/// ESE-VoVNet-19-slim with separable convs (untrained in timm).
pub fn ese_vovnet19b_slim_dw(opts: ZooOpts) -> Result<Model> {
    vovnet("ese_vovnet19b_slim_dw", opts, |a| VovNetConfig {
        depthwise: true,
        ..VovNetConfig::ese(a, [64, 64, 64], SLIM_CONV, SLIM_OUT, 3, [1, 1, 1, 1])
    })
}
/// ESE-VoVNet-19 with separable convs.
pub fn ese_vovnet19b_dw(opts: ZooOpts) -> Result<Model> {
    vovnet("ese_vovnet19b_dw", opts, |a| VovNetConfig {
        depthwise: true,
        ..VovNetConfig::ese(a, [64, 64, 64], WIDE_CONV, WIDE_OUT, 3, [1, 1, 1, 1])
    })
}
/// ESE-VoVNet-19-slim (untrained in timm).
pub fn ese_vovnet19b_slim(opts: ZooOpts) -> Result<Model> {
    vovnet("ese_vovnet19b_slim", opts, |a| VovNetConfig::ese(a, [64, 64, 128], SLIM_CONV, SLIM_OUT, 3, [1, 1, 1, 1]))
}
/// ESE-VoVNet-39 (24.6M params).
pub fn ese_vovnet39b(opts: ZooOpts) -> Result<Model> {
    vovnet("ese_vovnet39b", opts, |a| VovNetConfig::ese(a, [64, 64, 128], WIDE_CONV, WIDE_OUT, 5, [1, 1, 2, 2]))
}
/// ESE-VoVNet-57.
pub fn ese_vovnet57b(opts: ZooOpts) -> Result<Model> {
    vovnet("ese_vovnet57b", opts, |a| VovNetConfig::ese(a, [64, 64, 128], WIDE_CONV, WIDE_OUT, 5, [1, 1, 4, 3]))
}
/// ESE-VoVNet-99 (untrained in timm).
pub fn ese_vovnet99b(opts: ZooOpts) -> Result<Model> {
    vovnet("ese_vovnet99b", opts, |a| VovNetConfig::ese(a, [64, 64, 128], WIDE_CONV, WIDE_OUT, 5, [1, 3, 9, 3]))
}

// ---------------------------------------------------------------- registry

/// The registered variants of this family, each one line (`name`, pretrained configs).
pub(crate) static MODELS: &[ModelEntry] = &[
    register!(ese_vovnet19b_slim_dw, ESE_VOVNET19B_SLIM_DW),
    register!(ese_vovnet19b_dw, ESE_VOVNET19B_DW),
    register!(ese_vovnet19b_slim, ESE_VOVNET19B_SLIM),
    register!(ese_vovnet39b, ESE_VOVNET39B),
    register!(ese_vovnet57b, ESE_VOVNET57B),
    register!(ese_vovnet99b, ESE_VOVNET99B),
];
