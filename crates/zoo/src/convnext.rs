//! ConvNeXt (Liu et al. 2022, "A ConvNet for the 2020s"), as timm builds it
//! (`timm/models/convnext.py`): a patchify stem (4x4 stride-4 conv and layer norm, or
//! timm's overlapping 3x3 stems), four stages of inverted-bottleneck blocks — 7x7
//! depthwise conv, layer norm over channels, MLP with GELU at 4x width, per-channel layer
//! scale (`gamma`), stochastic depth — joined by a layer norm and a 2x2 stride-2 conv, and
//! a head of global pooling, layer norm and the classifier.
//!
//! Activations are channels-last, so timm's two block forms — `LayerNorm2d` with 1x1
//! convs (`conv_mlp`, the small timm variants) and `LayerNorm` with linear layers (the
//! original models) — are one computation here; they differ only in their checkpoint
//! layouts (`mlp.fc1.weight` `[out, in, 1, 1]` or `[out, in]`).

use crate::Model;
use crate::error::Result;
use crate::layers::{
    ClassifierHead, Conv2d, ConvOpts, LayerNorm, Linear, Mlp, act, drop_path, dropout, make_divisible,
};
use crate::model::{Architecture, ModelArgs, ZooOpts, build};
use crate::pretrained::PretrainedCfg;
use crate::registry::{ModelEntry, register};
use convnet_nn::context::Cx;
use convnet_nn::store::{Init, Layout, ParamId, Vb};
use convnet_tensor::{Activation, Padding2d, Tensor};

// ---------------------------------------------------------------- blocks

/// timm's `ConvNeXtBlock`: `conv_dw` (depthwise, bias), `norm`, `mlp` (`fc1`, GELU,
/// `fc2`), `gamma`, drop path, identity shortcut.
#[derive(Debug)]
struct Block {
    path: String,
    conv_dw: Conv2d,
    norm: LayerNorm,
    mlp: Mlp,
    gamma: Option<ParamId>,
    drop_path: f32,
}

impl Block {
    fn new(vb: &Vb, c: usize, cfg: &ConvNeXtConfig, dpr: f32) -> Self {
        let k = cfg.kernel_size;
        let dw = ConvOpts::default().with_groups(c).with_bias(cfg.conv_bias);
        Block {
            path: vb.prefix().to_string(),
            conv_dw: Conv2d::new(&vb.pp("conv_dw"), c, c, (k, k), dw),
            norm: LayerNorm::new(&vb.pp("norm"), c, cfg.norm_eps),
            mlp: Mlp::new(&vb.pp("mlp"), c, (cfg.mlp_ratio * c as f64) as usize, c, Activation::Gelu, cfg.conv_mlp),
            gamma: cfg.ls_init_value.map(|v| vb.param("gamma", &[c], Layout::Plain, true, Init::Const(v))),
            drop_path: dpr,
        }
    }

    /// `x: [n, h, w, c] -> [n, h, w, c]`.
    fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let y = self.conv_dw.forward(cx, x)?;
        let y = self.mlp.forward(cx, &self.norm.forward(cx, &y)?)?;
        let y = match self.gamma {
            Some(g) => y.mul(&cx.param(g))?,
            None => y,
        };
        let y = drop_path(cx, &y, self.drop_path)?.add(x)?;
        cx.record(&self.path, "ConvNeXtBlock", &y);
        Ok(y)
    }
}

/// timm's `ConvNeXtStage`: `downsample.{0: norm, 1: 2x2 stride-2 conv}` (absent in the
/// first stage), then `blocks`.
#[derive(Debug)]
struct Stage {
    downsample: Option<(LayerNorm, Conv2d)>,
    blocks: Vec<Block>,
}

impl Stage {
    fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let mut x = match &self.downsample {
            Some((norm, conv)) => conv.forward(cx, &norm.forward(cx, x)?)?,
            None => x.clone(),
        };
        for b in &self.blocks {
            x = b.forward(cx, &x)?;
        }
        Ok(x)
    }
}

// ---------------------------------------------------------------- model

/// ConvNeXt's stems.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stem {
    /// `stem.0`: `patch x patch` conv with stride `patch`, `stem.1`: layer norm.
    Patch,
    /// `stem.0`, `stem.1`: two 3x3 stride-2 convs (the first to the full width), `stem.2`:
    /// layer norm (timm's `overlap`).
    Overlap,
    /// As [`Stem::Overlap`], the first conv to half the width rounded to 8
    /// (`overlap_tiered`).
    OverlapTiered,
}

/// What distinguishes one ConvNeXt from another (timm's `ConvNeXt.__init__` arguments).
#[derive(Clone, Debug, PartialEq)]
pub struct ConvNeXtConfig {
    /// Blocks per stage.
    pub depths: [usize; 4],
    /// Width of each stage.
    pub dims: [usize; 4],
    /// Depthwise kernel size.
    pub kernel_size: usize,
    /// Initial layer-scale value (`None`: no `gamma`).
    pub ls_init_value: Option<f32>,
    /// The stem.
    pub stem: Stem,
    /// Stem patch size ([`Stem::Patch`]).
    pub patch_size: usize,
    /// Norm before pooling (`norm_pre`, timm's `head_norm_first`) instead of after it.
    pub head_norm_first: bool,
    /// A hidden layer with GELU in the head (`head.pre_logits.fc`).
    pub head_hidden_size: Option<usize>,
    /// MLP layers stored as 1x1 convs.
    pub conv_mlp: bool,
    /// Biases on every conv and linear layer.
    pub conv_bias: bool,
    /// MLP width over block width.
    pub mlp_ratio: f64,
    /// Layer-norm epsilon (1e-6).
    pub norm_eps: f32,
    /// Classes (0: no classifier).
    pub num_classes: usize,
    /// Input channels.
    pub in_chans: usize,
    /// Dropout before the classifier.
    pub drop_rate: f32,
    /// Stochastic-depth rate of the last block, linear from 0 over all blocks.
    pub drop_path_rate: f32,
}

impl From<&ModelArgs> for ConvNeXtConfig {
    fn from(a: &ModelArgs) -> Self {
        ConvNeXtConfig {
            depths: [3, 3, 9, 3],
            dims: [96, 192, 384, 768],
            kernel_size: 7,
            ls_init_value: Some(1e-6),
            stem: Stem::Patch,
            patch_size: 4,
            head_norm_first: false,
            head_hidden_size: None,
            conv_mlp: false,
            conv_bias: true,
            mlp_ratio: 4.0,
            norm_eps: 1e-6,
            num_classes: a.num_classes,
            in_chans: a.in_chans,
            drop_rate: a.drop_rate,
            drop_path_rate: a.drop_path_rate,
        }
    }
}

/// timm's head after the stages: `NormMlpClassifierHead` (pool, `head.norm`, optional
/// `head.pre_logits.fc` + GELU, dropout, `head.fc`), or with `head_norm_first` a
/// `norm_pre` on the map and a plain `ClassifierHead` (`head.fc`).
#[derive(Debug)]
enum Head {
    NormMlp { norm: LayerNorm, pre_logits: Option<Linear>, fc: Option<Linear>, drop_rate: f32 },
    NormFirst { norm_pre: LayerNorm, head: ClassifierHead },
}

/// ConvNeXt: `stem`, `stages.{0..3}`, (`norm_pre`), `head`.
#[derive(Debug)]
pub struct ConvNeXt {
    stem: Vec<Conv2d>,
    stem_norm: LayerNorm,
    stages: Vec<Stage>,
    head: Head,
    /// Width of the last stage.
    stage_features: usize,
    /// Width of what the head pools to (`head_hidden_size` when set).
    head_features: usize,
    num_classes: usize,
}

impl ConvNeXt {
    /// Builds the network under `vb`.
    pub fn new(vb: &Vb, cfg: ConvNeXtConfig) -> Result<Self> {
        if cfg.depths.contains(&0) || cfg.dims.contains(&0) || cfg.kernel_size.is_multiple_of(2) {
            return Err(crate::ZooError::arg(
                "convnext",
                format!(
                    "depths {:?}, dims {:?} and an odd kernel ({}) are needed",
                    cfg.depths, cfg.dims, cfg.kernel_size
                ),
            ));
        }
        let d0 = cfg.dims[0];
        let bias = ConvOpts::default().with_bias(cfg.conv_bias);
        let s = vb.pp("stem");
        let (stem, stem_norm) = match cfg.stem {
            Stem::Patch => {
                let p = cfg.patch_size;
                let o = bias.with_stride(p).with_padding(Padding2d::Valid);
                (vec![Conv2d::new(&s.pp(0), cfg.in_chans, d0, (p, p), o)], LayerNorm::new(&s.pp(1), d0, cfg.norm_eps))
            }
            Stem::Overlap | Stem::OverlapTiered => {
                let mid = if cfg.stem == Stem::OverlapTiered { make_divisible((d0 / 2) as f64, 8, None) } else { d0 };
                let o = bias.with_stride(2);
                let convs = vec![
                    Conv2d::new(&s.pp(0), cfg.in_chans, mid, (3, 3), o),
                    Conv2d::new(&s.pp(1), mid, d0, (3, 3), o),
                ];
                (convs, LayerNorm::new(&s.pp(2), d0, cfg.norm_eps))
            }
        };
        let total: usize = cfg.depths.iter().sum();
        let mut idx = 0;
        let mut prev = d0;
        let mut stages = Vec::with_capacity(4);
        for (i, (&depth, &c)) in cfg.depths.iter().zip(&cfg.dims).enumerate() {
            let st = vb.pp("stages").pp(i);
            let downsample = (i > 0).then(|| {
                let ds = st.pp("downsample");
                let o = bias.with_stride(2).with_padding(Padding2d::Valid);
                (LayerNorm::new(&ds.pp(0), prev, cfg.norm_eps), Conv2d::new(&ds.pp(1), prev, c, (2, 2), o))
            });
            let blocks = (0..depth)
                .map(|b| {
                    let dpr = cfg.drop_path_rate * idx as f32 / (total - 1).max(1) as f32;
                    idx += 1;
                    Block::new(&st.pp("blocks").pp(b), c, &cfg, dpr)
                })
                .collect();
            stages.push(Stage { downsample, blocks });
            prev = c;
        }
        let nf = prev;
        let (head, head_features) = if cfg.head_norm_first {
            let head = ClassifierHead::new(&vb.pp("head").pp("fc"), nf, cfg.num_classes, cfg.drop_rate);
            (Head::NormFirst { norm_pre: LayerNorm::new(&vb.pp("norm_pre"), nf, cfg.norm_eps), head }, nf)
        } else {
            let h = vb.pp("head");
            let pre_logits = cfg.head_hidden_size.map(|hs| Linear::new(&h.pp("pre_logits").pp("fc"), nf, hs, true));
            let hf = cfg.head_hidden_size.unwrap_or(nf);
            let fc = (cfg.num_classes > 0).then(|| Linear::new(&h.pp("fc"), hf, cfg.num_classes, true));
            (
                Head::NormMlp {
                    norm: LayerNorm::new(&h.pp("norm"), nf, cfg.norm_eps),
                    pre_logits,
                    fc,
                    drop_rate: cfg.drop_rate,
                },
                hf,
            )
        };
        Ok(ConvNeXt { stem, stem_norm, stages, head, stage_features: nf, head_features, num_classes: cfg.num_classes })
    }
}

impl Architecture for ConvNeXt {
    fn forward_features(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for conv in &self.stem {
            x = conv.forward(cx, &x)?;
        }
        let mut x = self.stem_norm.forward(cx, &x)?;
        cx.record("stem", "Sequential", &x);
        for (i, s) in self.stages.iter().enumerate() {
            x = s.forward(cx, &x)?;
            cx.record(&format!("stages.{i}"), "ConvNeXtStage", &x);
        }
        if let Head::NormFirst { norm_pre, .. } = &self.head {
            x = norm_pre.forward(cx, &x)?;
        }
        Ok(x)
    }

    fn forward_head(&self, cx: &Cx, x: &Tensor, pre_logits: bool) -> Result<Tensor> {
        let y = match &self.head {
            Head::NormFirst { head, .. } => head.forward(cx, x, pre_logits)?,
            Head::NormMlp { norm, pre_logits: hidden, fc, drop_rate } => {
                let x = if x.rank() == 4 { x.global_avg_pool()? } else { x.clone() };
                let mut x = norm.forward(cx, &x)?;
                if let Some(h) = hidden {
                    x = act(&h.forward(cx, &x)?, Activation::Gelu);
                }
                let x = dropout(cx, &x, *drop_rate)?;
                match (fc, pre_logits) {
                    (Some(fc), false) => fc.forward(cx, &x)?,
                    _ => x,
                }
            }
        };
        cx.record("head.fc", "Linear", &y);
        Ok(y)
    }

    fn num_features(&self) -> usize {
        self.head_features
    }

    fn num_classes(&self) -> usize {
        self.num_classes
    }

    fn reset_classifier(&mut self, vb: &Vb, num_classes: usize) {
        let hf = self.head_features;
        match &mut self.head {
            Head::NormFirst { head, .. } => {
                *head = ClassifierHead::new(&vb.pp("head").pp("fc"), self.stage_features, num_classes, head.drop_rate);
            }
            Head::NormMlp { fc, .. } => {
                *fc = (num_classes > 0).then(|| Linear::new(&vb.pp("head").pp("fc"), hf, num_classes, true));
            }
        }
        self.num_classes = num_classes;
    }
}

// ---------------------------------------------------------------- pretrained configs

/// timm's `_cfg` for ConvNeXt: 224, crop 0.875, bicubic, ImageNet mean and std.
const fn cnx(tag: &'static str) -> PretrainedCfg {
    PretrainedCfg::imagenet(tag, "stem.0", "head.fc").bicubic()
}

/// OpenAI CLIP's mean and std (`OPENAI_CLIP_MEAN`, `OPENAI_CLIP_STD`).
const CLIP_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
const CLIP_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];

pub(crate) static CONVNEXT_ATTO: &[PretrainedCfg] = &[cnx("d2_in1k").test_size(288)];
pub(crate) static CONVNEXT_ATTO_OLS: &[PretrainedCfg] = &[cnx("a2_in1k").test_size(288)];
pub(crate) static CONVNEXT_FEMTO: &[PretrainedCfg] = &[cnx("d1_in1k").test_size(288)];
pub(crate) static CONVNEXT_FEMTO_OLS: &[PretrainedCfg] = &[cnx("d1_in1k").test_size(288)];
pub(crate) static CONVNEXT_PICO: &[PretrainedCfg] = &[cnx("d1_in1k").test_size(288)];
pub(crate) static CONVNEXT_PICO_OLS: &[PretrainedCfg] = &[cnx("d1_in1k").crop(0.95).test_size(288)];
pub(crate) static CONVNEXT_NANO: &[PretrainedCfg] =
    &[cnx("in12k_ft_in1k").crop(0.95).test_size(288), cnx("d1h_in1k").crop(0.95).test_size(288)];
pub(crate) static CONVNEXT_NANO_OLS: &[PretrainedCfg] = &[cnx("d1h_in1k").crop(0.95).test_size(288)];
pub(crate) static CONVNEXT_TINY_HNF: &[PretrainedCfg] = &[cnx("a2h_in1k").crop(0.95).test_size(288)];
pub(crate) static CONVNEXT_TINY: &[PretrainedCfg] = &[
    cnx("in12k_ft_in1k").crop(0.95).test_size(288),
    cnx("fb_in22k_ft_in1k").test_size(288),
    cnx("fb_in1k").test_size(288),
];
pub(crate) static CONVNEXT_SMALL: &[PretrainedCfg] = &[
    cnx("in12k_ft_in1k").crop(0.95).test_size(288),
    cnx("fb_in22k_ft_in1k").test_size(288),
    cnx("fb_in1k").test_size(288),
];
pub(crate) static CONVNEXT_BASE: &[PretrainedCfg] =
    &[cnx("fb_in22k_ft_in1k").test_size(288), cnx("fb_in1k").test_size(288)];
pub(crate) static CONVNEXT_LARGE: &[PretrainedCfg] =
    &[cnx("fb_in22k_ft_in1k").test_size(288), cnx("fb_in1k").test_size(288)];
pub(crate) static CONVNEXT_LARGE_MLP: &[PretrainedCfg] =
    &[cnx("clip_laion2b_soup_ft_in12k_in1k_320").size(320).crop(1.0).norm(CLIP_MEAN, CLIP_STD)];
pub(crate) static CONVNEXT_XLARGE: &[PretrainedCfg] = &[cnx("fb_in22k_ft_in1k").test_size(288)];

// ---------------------------------------------------------------- entry points

fn convnext(arch: &'static str, opts: ZooOpts, f: impl FnOnce(&mut ConvNeXtConfig)) -> Result<Model> {
    build(arch, opts, |vb, a| {
        let mut cfg = ConvNeXtConfig::from(a);
        f(&mut cfg);
        Ok(Box::new(ConvNeXt::new(vb, cfg)?))
    })
}

/// timm's small variants: 1x1-conv MLPs, optionally an overlapping stem.
fn small(arch: &'static str, opts: ZooOpts, depths: [usize; 4], dims: [usize; 4], stem: Stem) -> Result<Model> {
    convnext(arch, opts, |c| {
        (c.depths, c.dims, c.conv_mlp, c.stem) = (depths, dims, true, stem);
    })
}

/// ConvNeXt-Atto (3.7M params, timm's).
pub fn convnext_atto(opts: ZooOpts) -> Result<Model> {
    small("convnext_atto", opts, [2, 2, 6, 2], [40, 80, 160, 320], Stem::Patch)
}
/// ConvNeXt-Atto with an overlapping tiered stem.
pub fn convnext_atto_ols(opts: ZooOpts) -> Result<Model> {
    small("convnext_atto_ols", opts, [2, 2, 6, 2], [40, 80, 160, 320], Stem::OverlapTiered)
}
/// ConvNeXt-Femto (5.2M).
pub fn convnext_femto(opts: ZooOpts) -> Result<Model> {
    small("convnext_femto", opts, [2, 2, 6, 2], [48, 96, 192, 384], Stem::Patch)
}
/// ConvNeXt-Femto with an overlapping tiered stem.
pub fn convnext_femto_ols(opts: ZooOpts) -> Result<Model> {
    small("convnext_femto_ols", opts, [2, 2, 6, 2], [48, 96, 192, 384], Stem::OverlapTiered)
}
/// ConvNeXt-Pico (9.0M).
pub fn convnext_pico(opts: ZooOpts) -> Result<Model> {
    small("convnext_pico", opts, [2, 2, 6, 2], [64, 128, 256, 512], Stem::Patch)
}
/// ConvNeXt-Pico with an overlapping tiered stem.
pub fn convnext_pico_ols(opts: ZooOpts) -> Result<Model> {
    small("convnext_pico_ols", opts, [2, 2, 6, 2], [64, 128, 256, 512], Stem::OverlapTiered)
}
/// ConvNeXt-Nano (15.6M).
pub fn convnext_nano(opts: ZooOpts) -> Result<Model> {
    small("convnext_nano", opts, [2, 2, 8, 2], [80, 160, 320, 640], Stem::Patch)
}
/// ConvNeXt-Nano with an overlapping stem.
pub fn convnext_nano_ols(opts: ZooOpts) -> Result<Model> {
    small("convnext_nano_ols", opts, [2, 2, 8, 2], [80, 160, 320, 640], Stem::Overlap)
}
/// ConvNeXt-Tiny with the norm before pooling (`head_norm_first`) and 1x1-conv MLPs.
pub fn convnext_tiny_hnf(opts: ZooOpts) -> Result<Model> {
    convnext("convnext_tiny_hnf", opts, |c| (c.head_norm_first, c.conv_mlp) = (true, true))
}
/// ConvNeXt-Tiny (28.6M).
pub fn convnext_tiny(opts: ZooOpts) -> Result<Model> {
    convnext("convnext_tiny", opts, |_| {})
}
/// ConvNeXt-Small (50.2M).
pub fn convnext_small(opts: ZooOpts) -> Result<Model> {
    convnext("convnext_small", opts, |c| c.depths = [3, 3, 27, 3])
}
/// ConvNeXt-Base (88.6M).
pub fn convnext_base(opts: ZooOpts) -> Result<Model> {
    convnext("convnext_base", opts, |c| (c.depths, c.dims) = ([3, 3, 27, 3], [128, 256, 512, 1024]))
}
/// ConvNeXt-Large (197.8M).
pub fn convnext_large(opts: ZooOpts) -> Result<Model> {
    convnext("convnext_large", opts, |c| (c.depths, c.dims) = ([3, 3, 27, 3], [192, 384, 768, 1536]))
}
/// ConvNeXt-Large with a 1536-wide hidden layer in the head (CLIP-trained).
pub fn convnext_large_mlp(opts: ZooOpts) -> Result<Model> {
    convnext("convnext_large_mlp", opts, |c| {
        (c.depths, c.dims, c.head_hidden_size) = ([3, 3, 27, 3], [192, 384, 768, 1536], Some(1536));
    })
}
/// ConvNeXt-XLarge (350.2M).
pub fn convnext_xlarge(opts: ZooOpts) -> Result<Model> {
    convnext("convnext_xlarge", opts, |c| (c.depths, c.dims) = ([3, 3, 27, 3], [256, 512, 1024, 2048]))
}

// ---------------------------------------------------------------- registry

/// The registered variants of this family, each one line (`name`, pretrained configs).
pub(crate) static MODELS: &[ModelEntry] = &[
    register!(convnext_atto, CONVNEXT_ATTO),
    register!(convnext_atto_ols, CONVNEXT_ATTO_OLS),
    register!(convnext_femto, CONVNEXT_FEMTO),
    register!(convnext_femto_ols, CONVNEXT_FEMTO_OLS),
    register!(convnext_pico, CONVNEXT_PICO),
    register!(convnext_pico_ols, CONVNEXT_PICO_OLS),
    register!(convnext_nano, CONVNEXT_NANO),
    register!(convnext_nano_ols, CONVNEXT_NANO_OLS),
    register!(convnext_tiny_hnf, CONVNEXT_TINY_HNF),
    register!(convnext_tiny, CONVNEXT_TINY),
    register!(convnext_small, CONVNEXT_SMALL),
    register!(convnext_base, CONVNEXT_BASE),
    register!(convnext_large, CONVNEXT_LARGE),
    register!(convnext_large_mlp, CONVNEXT_LARGE_MLP),
    register!(convnext_xlarge, CONVNEXT_XLARGE),
];

#[cfg(test)]
mod tests {
    use super::*;
    use convnet_nn::context::Mode;
    use convnet_nn::store::Params;
    use std::cell::RefCell;

    /// The 1x1-conv MLP (`conv_mlp`) and the linear MLP are the same computation on
    /// channels-last data: with the formula weights (equal in both layouts, the conv's
    /// `[out, in, 1, 1]` and the linear's `[out, in]` have the same fan-in) the logits agree.
    #[test]
    fn conv_mlp_equals_the_linear_mlp() {
        let logits = |conv_mlp: bool| {
            let store = RefCell::new(Params::new());
            let a = ModelArgs { num_classes: 5, in_chans: 3, drop_rate: 0.0, drop_path_rate: 0.0 };
            let cfg = ConvNeXtConfig { depths: [1, 1, 2, 1], dims: [8, 16, 24, 32], conv_mlp, ..(&a).into() };
            let net = ConvNeXt::new(&Vb::root(&store, 0), cfg).unwrap();
            let mut params = store.into_inner();
            crate::parity::fill_parity(&mut params, 2);
            assert_eq!(
                params.by_key("stages.1.blocks.0.mlp.fc1.weight").unwrap().torch_shape().len(),
                if conv_mlp { 4 } else { 2 }
            );
            let x = Tensor::from_vec(crate::parity::formula_input([2, 40, 40, 3], 1), [2, 40, 40, 3]).unwrap();
            let cx = Cx::new(&params, Mode::Eval, 0);
            let f = net.forward_features(&cx, &x).unwrap();
            net.forward_head(&cx, &f, false).unwrap().to_vec()
        };
        let (a, b) = (logits(true), logits(false));
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{x} vs {y}");
        }
    }
}
