//! Res2Net and Res2NeXt (Gao et al. 2019, "Res2Net: A New Multi-scale Backbone
//! Architecture") as timm's `res2net.py` builds them: a [`ResNet`] whose bottleneck
//! (`Bottle2neck`) splits the 1x1 conv's output into `scale` groups of `width` channels
//! and runs a chain of 3x3 convs over them, each group added to the previous conv's output
//! before its own conv, so that later groups see ever larger receptive fields. The last
//! group passes unchanged (average-pooled in a stage's first block), and the concatenation
//! goes through the closing 1x1 conv.

use crate::Model;
use crate::attention::Attention;
use crate::error::Result;
use crate::layers::{ConvBnAct, ConvOpts, avg_pool, drop_path};
use crate::model::{ZooOpts, build};
use crate::pretrained::PretrainedCfg;
use crate::registry::{ModelEntry, register};
use crate::resnet::{BlockArgs, BlockFactory, BlockType, Downsample, ResNet, ResNetConfig, ResidualBlock, StemType};
use convnet_nn::context::Cx;
use convnet_tensor::{Activation, Tensor};
use std::sync::Arc;

const EPS: f32 = 1e-5;

// ---------------------------------------------------------------- blocks

/// timm's `Bottle2neck` with `scale` groups (expansion 4); the width per group is the
/// network's `base_width` and `cardinality` (`floor(planes * base_width / 64) * cardinality`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bottle2neckBlock {
    /// Channel groups of the 3x3 stage (timm's `scale`).
    pub scale: usize,
}

#[derive(Debug)]
struct Bottle2neck {
    path: String,
    conv1: ConvBnAct,
    /// `convs.{i}` + `bns.{i}`: `max(1, scale - 1)` 3x3 convs.
    convs: Vec<ConvBnAct>,
    width: usize,
    scale: usize,
    /// A stage's first block: every group starts afresh and the last one is pooled.
    is_first: bool,
    stride: usize,
    conv3: ConvBnAct,
    attn: Option<Attention>,
    downsample: Option<Downsample>,
    drop_path: f32,
}

impl BlockFactory for Bottle2neckBlock {
    fn expansion(&self) -> usize {
        4
    }

    fn build(&self, a: BlockArgs<'_>) -> Result<Box<dyn ResidualBlock>> {
        let (vb, cfg) = (a.vb, a.cfg);
        let scale = self.scale.max(1);
        let width = a.planes * cfg.base_width / 64 * cfg.cardinality;
        let outplanes = a.planes * 4;
        let relu = Activation::Relu;
        let conv1 = ConvBnAct::new(
            &vb.pp("conv1"),
            &vb.pp("bn1"),
            a.inplanes,
            width * scale,
            (1, 1),
            ConvOpts::default(),
            EPS,
            relu,
        );
        let o = ConvOpts::stride(a.stride).with_groups(cfg.cardinality);
        let convs = (0..(scale - 1).max(1))
            .map(|i| ConvBnAct::new(&vb.pp("convs").pp(i), &vb.pp("bns").pp(i), width, width, (3, 3), o, EPS, relu))
            .collect();
        let conv3 = ConvBnAct::new(
            &vb.pp("conv3"),
            &vb.pp("bn3"),
            width * scale,
            outplanes,
            (1, 1),
            ConvOpts::default(),
            EPS,
            Activation::Linear,
        );
        Ok(Box::new(Bottle2neck {
            path: vb.prefix().to_string(),
            conv1,
            convs,
            width,
            scale,
            is_first: a.stride > 1 || a.downsample.is_some(),
            stride: a.stride,
            conv3,
            attn: cfg.attn_layer.build(&vb.pp("se"), outplanes),
            downsample: a.downsample,
            drop_path: a.drop_path,
        }))
    }
}

impl ResidualBlock for Bottle2neck {
    fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let shortcut = match &self.downsample {
            Some(d) => d.forward(cx, x)?,
            None => x.clone(),
        };
        let y = self.conv1.forward(cx, x)?;
        let groups = y.chunk(3, self.scale)?;
        let mut outs = Vec::with_capacity(self.scale);
        let mut prev: Option<Tensor> = None;
        for (i, conv) in self.convs.iter().enumerate() {
            let sp = match (&prev, self.is_first) {
                (Some(p), false) => p.add(&groups[i])?,
                _ => groups[i].clone(),
            };
            let sp = conv.forward(cx, &sp)?;
            prev = Some(sp.clone());
            outs.push(sp);
        }
        if self.scale > 1 {
            let last = &groups[self.scale - 1];
            // timm pools with the padding counted (as the original weights were trained)
            outs.push(if self.is_first { avg_pool(last, 3, self.stride, 1, false, true)? } else { last.clone() });
        }
        let refs: Vec<&Tensor> = outs.iter().collect();
        let y = Tensor::concat(&refs, 3)?;
        debug_assert_eq!(y.dims()[3], self.width * self.scale);
        let drop = cx.training() && self.drop_path > 0.0;
        let y = if self.attn.is_none() && !drop {
            self.conv3.forward_add(cx, &y, &shortcut, Activation::Relu)?
        } else {
            let mut y = self.conv3.forward(cx, &y)?;
            if let Some(attn) = &self.attn {
                y = attn.forward(cx, y)?;
            }
            drop_path(cx, &y, self.drop_path)?.add(&shortcut)?.relu()
        };
        cx.record(&self.path, "Bottle2neck", &y);
        Ok(y)
    }
}

// ---------------------------------------------------------------- pretrained configs

/// timm's `_cfg` for Res2Nets: bilinear, crop 0.875.
const fn r2(tag: &'static str) -> PretrainedCfg {
    PretrainedCfg::imagenet(tag, "conv1", "fc")
}
/// A deep-stem variant's config: its first conv is `conv1.0`.
const fn deep(mut c: PretrainedCfg) -> PretrainedCfg {
    c.first_conv = "conv1.0";
    c
}

pub(crate) static RES2NET50_26W_4S: &[PretrainedCfg] = &[r2("in1k")];
pub(crate) static RES2NET50_48W_2S: &[PretrainedCfg] = &[r2("in1k")];
pub(crate) static RES2NET50_14W_8S: &[PretrainedCfg] = &[r2("in1k")];
pub(crate) static RES2NET50_26W_6S: &[PretrainedCfg] = &[r2("in1k")];
pub(crate) static RES2NET50_26W_8S: &[PretrainedCfg] = &[r2("in1k")];
pub(crate) static RES2NET101_26W_4S: &[PretrainedCfg] = &[r2("in1k")];
pub(crate) static RES2NEXT50: &[PretrainedCfg] = &[r2("in1k")];
pub(crate) static RES2NET50D: &[PretrainedCfg] = &[deep(r2("in1k"))];
pub(crate) static RES2NET101D: &[PretrainedCfg] = &[deep(r2("in1k"))];

// ---------------------------------------------------------------- entry points

/// A Res2Net of `layers` with `scale` groups of `base_width` (per 64 planes) and
/// `cardinality`; `deep`: the `d` variants' deep 32-wide stem and average-pool shortcuts.
fn res2net(
    arch: &'static str,
    opts: ZooOpts,
    layers: [usize; 4],
    base_width: usize,
    scale: usize,
    cardinality: usize,
    deep: bool,
) -> Result<Model> {
    build(arch, opts, |vb, a| {
        let mut cfg = ResNetConfig {
            layers,
            block: BlockType::Custom(Arc::new(Bottle2neckBlock { scale })),
            base_width,
            cardinality,
            ..a.into()
        };
        if deep {
            cfg.stem_type = StemType::Deep;
            cfg.stem_width = 32;
            cfg.avg_down = true;
        }
        Ok(Box::new(ResNet::new(vb, cfg)?))
    })
}

/// Res2Net-50 26w4s (25.7M params).
pub fn res2net50_26w_4s(opts: ZooOpts) -> Result<Model> {
    res2net("res2net50_26w_4s", opts, [3, 4, 6, 3], 26, 4, 1, false)
}
/// Res2Net-101 26w4s.
pub fn res2net101_26w_4s(opts: ZooOpts) -> Result<Model> {
    res2net("res2net101_26w_4s", opts, [3, 4, 23, 3], 26, 4, 1, false)
}
/// Res2Net-50 26w6s.
pub fn res2net50_26w_6s(opts: ZooOpts) -> Result<Model> {
    res2net("res2net50_26w_6s", opts, [3, 4, 6, 3], 26, 6, 1, false)
}
/// Res2Net-50 26w8s.
pub fn res2net50_26w_8s(opts: ZooOpts) -> Result<Model> {
    res2net("res2net50_26w_8s", opts, [3, 4, 6, 3], 26, 8, 1, false)
}
/// Res2Net-50 48w2s.
pub fn res2net50_48w_2s(opts: ZooOpts) -> Result<Model> {
    res2net("res2net50_48w_2s", opts, [3, 4, 6, 3], 48, 2, 1, false)
}
/// Res2Net-50 14w8s.
pub fn res2net50_14w_8s(opts: ZooOpts) -> Result<Model> {
    res2net("res2net50_14w_8s", opts, [3, 4, 6, 3], 14, 8, 1, false)
}
/// Res2NeXt-50 (4 groups of 8x4d).
pub fn res2next50(opts: ZooOpts) -> Result<Model> {
    res2net("res2next50", opts, [3, 4, 6, 3], 4, 4, 8, false)
}
/// Res2Net-50-D: deep stem, average-pool shortcuts.
pub fn res2net50d(opts: ZooOpts) -> Result<Model> {
    res2net("res2net50d", opts, [3, 4, 6, 3], 26, 4, 1, true)
}
/// Res2Net-101-D: deep stem, average-pool shortcuts.
pub fn res2net101d(opts: ZooOpts) -> Result<Model> {
    res2net("res2net101d", opts, [3, 4, 23, 3], 26, 4, 1, true)
}

// ---------------------------------------------------------------- registry

/// The registered variants of this family, each one line (`name`, pretrained configs).
pub(crate) static MODELS: &[ModelEntry] = &[
    register!(res2net50_26w_4s, RES2NET50_26W_4S),
    register!(res2net101_26w_4s, RES2NET101_26W_4S),
    register!(res2net50_26w_6s, RES2NET50_26W_6S),
    register!(res2net50_26w_8s, RES2NET50_26W_8S),
    register!(res2net50_48w_2s, RES2NET50_48W_2S),
    register!(res2net50_14w_8s, RES2NET50_14W_8S),
    register!(res2next50, RES2NEXT50),
    register!(res2net50d, RES2NET50D),
    register!(res2net101d, RES2NET101D),
];
