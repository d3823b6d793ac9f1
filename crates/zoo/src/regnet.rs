//! RegNetX and RegNetY (Radosavovic et al. 2020, "Designing Network Design Spaces"), as
//! timm's `regnet.py` builds them: a 3x3 stride-2 stem of 32 channels, four stages of
//! residual bottleneck blocks (1x1, grouped 3x3 with the stage's stride, 1x1; RegNetY adds
//! a squeeze-excitation after the 3x3) and 1x1 strided projection shortcuts.
//!
//! A RegNet is defined by six numbers, not by a table of stages: the block widths follow a
//! quantized linear rule ([`RegNetDesign::stages`], timm's `generate_regnet`), so each
//! variant below is one line of data. The `_tv` variants are torchvision's weights, whose
//! bottleneck widths were rounded to the group width by `make_divisible` instead of to the
//! nearest multiple (`group_min_ratio`), which gives some stages other widths.

use crate::Model;
use crate::attention::{SeConfig, SeReduce, SqueezeExcite};
use crate::error::{Result, ZooError};
use crate::layers::{ClassifierHead, ConvBnAct, ConvOpts, drop_path, make_divisible};
use crate::model::{Architecture, ModelArgs, ZooOpts, build};
use crate::pretrained::PretrainedCfg;
use crate::registry::{ModelEntry, register};
use convnet_nn::context::Cx;
use convnet_nn::store::Vb;
use convnet_tensor::{Activation, Tensor};

const EPS: f32 = 1e-5;

/// Block widths are multiples of this (timm's `quant`).
const WIDTH_QUANTUM: usize = 8;

// ---------------------------------------------------------------- design rule

/// The RegNet design-space parameters of one network (timm's `RegNetCfg`, the fields the
/// X and Y families use).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RegNetDesign {
    /// Width of the first block (`w_0`), a multiple of 8.
    pub w0: usize,
    /// Width slope per block (`w_a`).
    pub wa: f64,
    /// Width multiplier between stages (`w_m`), above 1.
    pub wm: f64,
    /// Total number of blocks (`d`).
    pub depth: usize,
    /// Channels per group of the 3x3 conv (`g`).
    pub group_size: usize,
    /// Bottleneck width over block width (`b`; 1 for X and Y).
    pub bottle_ratio: f64,
    /// Squeeze-excitation width over the block's input width (0: none, RegNetX; 0.25: RegNetY).
    pub se_ratio: f64,
    /// Nonzero: round bottleneck widths to the group size with `make_divisible` (torchvision's
    /// rule, the `_tv` weights) instead of to the nearest multiple.
    pub group_min_ratio: f64,
    /// Stem output channels.
    pub stem_width: usize,
}

/// One stage as the design rule resolves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StageSpec {
    /// Output channels of every block.
    pub width: usize,
    /// Blocks.
    pub depth: usize,
    /// Channels per group of the 3x3 conv.
    pub group_size: usize,
}

/// A RegNetX design: `w0`, `wa`, `wm`, group size, depth.
const fn x(w0: usize, wa: f64, wm: f64, group_size: usize, depth: usize) -> RegNetDesign {
    RegNetDesign {
        w0,
        wa,
        wm,
        depth,
        group_size,
        bottle_ratio: 1.0,
        se_ratio: 0.0,
        group_min_ratio: 0.0,
        stem_width: 32,
    }
}

/// A RegNetY design: RegNetX plus squeeze-excitation at a quarter of the block input width.
const fn y(w0: usize, wa: f64, wm: f64, group_size: usize, depth: usize) -> RegNetDesign {
    let mut d = x(w0, wa, wm, group_size, depth);
    d.se_ratio = 0.25;
    d
}

impl RegNetDesign {
    /// torchvision's width rounding (its weights need it; see the module docs).
    const fn tv(mut self) -> Self {
        self.group_min_ratio = 0.9;
        self
    }

    /// The stages this design gives (timm's `generate_regnet` followed by
    /// `adjust_widths_groups_comp`).
    ///
    /// Block `j` has continuous width `u_j = w0 + wa * j`; it is snapped to the nearest
    /// power of `wm` times `w0`, `w0 * wm^round(log_wm(u_j / w0))`, and rounded to a multiple
    /// of 8; runs of equal widths are the stages. The arithmetic is done in `f32` as timm does
    /// it with float32 tensors, so the rounding at ties falls the same way. Each stage's
    /// bottleneck width is then made a multiple of its group size (the group size capped at
    /// the width).
    pub fn stages(&self) -> Result<Vec<StageSpec>> {
        let bad = |reason: String| Err(ZooError::arg("RegNetDesign", reason));
        if self.wa < 0.0 || self.w0 == 0 || self.wm <= 1.0 || !self.w0.is_multiple_of(WIDTH_QUANTUM) {
            return bad(format!(
                "need wa >= 0, wm > 1 and w0 a positive multiple of {WIDTH_QUANTUM}; got wa {}, wm {}, w0 {}",
                self.wa, self.wm, self.w0
            ));
        }
        if self.depth == 0 || self.group_size == 0 || self.bottle_ratio <= 0.0 {
            return bad(format!(
                "need depth, group size and bottle ratio above 0; got {}, {}, {}",
                self.depth, self.group_size, self.bottle_ratio
            ));
        }
        let (w0, wa, wm, q) = (self.w0 as f32, self.wa as f32, self.wm as f32, WIDTH_QUANTUM as f32);
        let ln_wm = self.wm.ln() as f32;
        let mut stages: Vec<StageSpec> = Vec::new();
        for j in 0..self.depth {
            let cont = j as f32 * wa + w0;
            let exp = ((cont / w0).ln() / ln_wm).round_ties_even();
            let width = ((w0 * wm.powf(exp)) / q).round_ties_even() * q;
            let width = width as usize;
            match stages.last_mut() {
                Some(s) if s.width == width => s.depth += 1,
                _ => stages.push(StageSpec { width, depth: 1, group_size: self.group_size }),
            }
        }
        for s in &mut stages {
            let bottleneck = (s.width as f64 * self.bottle_ratio) as usize;
            s.group_size = s.group_size.min(bottleneck).max(1);
            let g = s.group_size;
            let bottleneck = if self.group_min_ratio > 0.0 {
                make_divisible(bottleneck as f64, g, Some(1))
            } else {
                ((bottleneck as f64 / g as f64).round_ties_even() * g as f64) as usize
            };
            s.width = (bottleneck as f64 / self.bottle_ratio) as usize;
        }
        if stages.len() != 4 {
            let widths: Vec<usize> = stages.iter().map(|s| s.width).collect();
            return bad(format!("the rule must give 4 stages, gave {} (widths {widths:?})", stages.len()));
        }
        Ok(stages)
    }
}

// ---------------------------------------------------------------- blocks

/// RegNet's bottleneck: `conv1` (1x1), `conv2` (grouped 3x3, the stride), optional `se`,
/// `conv3` (1x1, no activation), the shortcut (`downsample`, a 1x1 strided conv and norm,
/// where the shape changes) added, ReLU.
#[derive(Debug)]
struct Bottleneck {
    path: String,
    conv1: ConvBnAct,
    conv2: ConvBnAct,
    se: Option<SqueezeExcite>,
    conv3: ConvBnAct,
    downsample: Option<ConvBnAct>,
    drop_path: f32,
}

impl Bottleneck {
    fn new(vb: &Vb, cin: usize, cout: usize, stride: usize, d: &RegNetDesign, group_size: usize, dpr: f32) -> Self {
        let relu = Activation::Relu;
        let mid = (cout as f64 * d.bottle_ratio).round_ties_even() as usize;
        let groups = (mid / group_size).max(1);
        let cba = |name: &str, cin, cout, k, o, a| ConvBnAct::timm(&vb.pp(name), cin, cout, k, o, EPS, a);
        // timm sizes the squeeze from the block's input width, not the bottleneck's
        let se = (d.se_ratio > 0.0).then(|| {
            let rd = (cin as f64 * d.se_ratio).round_ties_even() as usize;
            SqueezeExcite::new(&vb.pp("se"), mid, &SeConfig::timm().with_reduce(SeReduce::Channels(rd)))
        });
        Bottleneck {
            path: vb.prefix().to_string(),
            conv1: cba("conv1", cin, mid, 1, ConvOpts::default(), relu),
            conv2: cba("conv2", mid, mid, 3, ConvOpts::stride(stride).with_groups(groups), relu),
            se,
            conv3: cba("conv3", mid, cout, 1, ConvOpts::default(), Activation::Linear),
            downsample: (cin != cout || stride != 1)
                .then(|| cba("downsample", cin, cout, 1, ConvOpts::stride(stride), Activation::Linear)),
            drop_path: dpr,
        }
    }

    fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let shortcut = match &self.downsample {
            Some(d) => d.forward(cx, x)?,
            None => x.clone(),
        };
        let y = self.conv1.forward(cx, x)?;
        let y = match &self.se {
            Some(se) => {
                // the 3x3 conv also gives the squeeze its input's mean
                let (y, mean) = self.conv2.forward_mean(cx, &y)?;
                se.excite(cx, y, &mean)?
            }
            None => self.conv2.forward(cx, &y)?,
        };
        let y = if cx.training() && self.drop_path > 0.0 {
            let y = drop_path(cx, &self.conv3.forward(cx, &y)?, self.drop_path)?;
            y.add(&shortcut)?.relu()
        } else {
            // the skip sum and relu fused into the last conv's store (eval mode)
            self.conv3.forward_add(cx, &y, &shortcut, Activation::Relu)?
        };
        cx.record(&self.path, "Bottleneck", &y);
        Ok(y)
    }
}

// ---------------------------------------------------------------- model

/// What distinguishes one RegNet from another.
#[derive(Clone, Debug, PartialEq)]
pub struct RegNetConfig {
    /// The design-space parameters.
    pub design: RegNetDesign,
    /// Classes (0: no classifier).
    pub num_classes: usize,
    /// Input channels.
    pub in_chans: usize,
    /// Dropout before the classifier.
    pub drop_rate: f32,
    /// Stochastic-depth rate of the last block.
    pub drop_path_rate: f32,
}

impl RegNetConfig {
    fn new(design: RegNetDesign, a: &ModelArgs) -> Self {
        RegNetConfig {
            design,
            num_classes: a.num_classes,
            in_chans: a.in_chans,
            drop_rate: a.drop_rate,
            drop_path_rate: a.drop_path_rate,
        }
    }
}

/// RegNet: `stem.{conv,bn}`, `s1..4.b{j}.{conv1,conv2,conv3,downsample}.{conv,bn}`
/// (+ `se.fc1`, `se.fc2` for RegNetY), `head.fc`.
#[derive(Debug)]
pub struct RegNet {
    stem: ConvBnAct,
    stages: Vec<Vec<Bottleneck>>,
    head: ClassifierHead,
}

impl RegNet {
    /// Builds the network under `vb`: `x: [n, h, w, in_chans] -> [n, classes]`.
    pub fn new(vb: &Vb, cfg: RegNetConfig) -> Result<Self> {
        let d = cfg.design;
        let specs = d.stages()?;
        let stem =
            ConvBnAct::timm(&vb.pp("stem"), cfg.in_chans, d.stem_width, 3, ConvOpts::stride(2), EPS, Activation::Relu);
        let total: usize = specs.iter().map(|s| s.depth).sum();
        let mut cin = d.stem_width;
        let mut idx = 0;
        let mut stages = Vec::new();
        for (si, s) in specs.iter().enumerate() {
            let mut blocks = Vec::new();
            for b in 0..s.depth {
                let stride = if b == 0 { 2 } else { 1 };
                let dpr = cfg.drop_path_rate * idx as f32 / (total - 1).max(1) as f32;
                let vbb = vb.pp(format!("s{}", si + 1)).pp(format!("b{}", b + 1));
                blocks.push(Bottleneck::new(&vbb, cin, s.width, stride, &d, s.group_size, dpr));
                cin = s.width;
                idx += 1;
            }
            stages.push(blocks);
        }
        let head = ClassifierHead::new(&vb.pp("head").pp("fc"), cin, cfg.num_classes, cfg.drop_rate);
        Ok(RegNet { stem, stages, head })
    }
}

impl Architecture for RegNet {
    fn forward_features(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let mut x = self.stem.forward(cx, x)?;
        cx.record("stem", "ConvNormAct", &x);
        for stage in &self.stages {
            for b in stage {
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
        let fc = vb.pp("head").pp("fc");
        self.head = ClassifierHead::new(&fc, self.head.num_features, num_classes, self.head.drop_rate);
    }
}

// ---------------------------------------------------------------- pretrained configs

/// timm's `_cfgpyc`: the original pycls weights (bicubic, crop 0.875).
const fn pycls() -> PretrainedCfg {
    PretrainedCfg::imagenet("pycls_in1k", "stem.conv", "head.fc").bicubic()
}
/// timm's `_cfgtv2`: torchvision's v2 recipe weights (bicubic, crop 0.965).
const fn tv2(tag: &'static str) -> PretrainedCfg {
    PretrainedCfg::imagenet(tag, "stem.conv", "head.fc").bicubic().crop(0.965)
}
/// timm's `_cfg`: timm-trained weights (bicubic, crop 0.95, tested at 288).
const fn timm(tag: &'static str) -> PretrainedCfg {
    PretrainedCfg::imagenet(tag, "stem.conv", "head.fc").bicubic().crop(0.95).test_size(288)
}
/// SWAG / SEER fine-tunes at 384 (crop 1.0).
const fn at384(tag: &'static str) -> PretrainedCfg {
    tv2(tag).size(384).crop(1.0)
}

pub(crate) static PYCLS: &[PretrainedCfg] = &[pycls()];
pub(crate) static TV2: &[PretrainedCfg] = &[tv2("tv2_in1k")];
pub(crate) static TV2_PYCLS: &[PretrainedCfg] = &[tv2("tv2_in1k"), pycls()];
pub(crate) static REGNETY_032: &[PretrainedCfg] = &[timm("ra_in1k"), tv2("tv2_in1k"), pycls()];
pub(crate) static RA3_PYCLS: &[PretrainedCfg] = &[timm("ra3_in1k"), pycls()];
pub(crate) static REGNETY_120: &[PretrainedCfg] = &[timm("sw_in12k_ft_in1k"), timm("sw_in12k").classes(11821), pycls()];
pub(crate) static REGNETY_160: &[PretrainedCfg] = &[
    timm("sw_in12k_ft_in1k"),
    timm("lion_in12k_ft_in1k"),
    timm("sw_in12k").classes(11821),
    timm("deit_in1k"),
    tv2("tv2_in1k"),
    at384("swag_ft_in1k"),
    tv2("swag_lc_in1k"),
    pycls(),
];
pub(crate) static REGNETY_320: &[PretrainedCfg] = &[
    tv2("tv2_in1k"),
    at384("swag_ft_in1k"),
    tv2("swag_lc_in1k"),
    at384("seer_ft_in1k"),
    tv2("seer").classes(0),
    pycls(),
];

// ---------------------------------------------------------------- entry points

fn regnet(arch: &'static str, opts: ZooOpts, design: RegNetDesign) -> Result<Model> {
    build(arch, opts, |vb, a| Ok(Box::new(RegNet::new(vb, RegNetConfig::new(design, a))?)))
}

/// RegNetX-200MF.
pub fn regnetx_002(opts: ZooOpts) -> Result<Model> {
    regnet("regnetx_002", opts, x(24, 36.44, 2.49, 8, 13))
}
/// RegNetX-400MF.
pub fn regnetx_004(opts: ZooOpts) -> Result<Model> {
    regnet("regnetx_004", opts, x(24, 24.48, 2.54, 16, 22))
}
/// RegNetX-400MF with torchvision's width rounding.
pub fn regnetx_004_tv(opts: ZooOpts) -> Result<Model> {
    regnet("regnetx_004_tv", opts, x(24, 24.48, 2.54, 16, 22).tv())
}
/// RegNetX-600MF.
pub fn regnetx_006(opts: ZooOpts) -> Result<Model> {
    regnet("regnetx_006", opts, x(48, 36.97, 2.24, 24, 16))
}
/// RegNetX-800MF.
pub fn regnetx_008(opts: ZooOpts) -> Result<Model> {
    regnet("regnetx_008", opts, x(56, 35.73, 2.28, 16, 16))
}
/// RegNetX-1.6GF.
pub fn regnetx_016(opts: ZooOpts) -> Result<Model> {
    regnet("regnetx_016", opts, x(80, 34.01, 2.25, 24, 18))
}
/// RegNetX-3.2GF.
pub fn regnetx_032(opts: ZooOpts) -> Result<Model> {
    regnet("regnetx_032", opts, x(88, 26.31, 2.25, 48, 25))
}
/// RegNetX-4.0GF.
pub fn regnetx_040(opts: ZooOpts) -> Result<Model> {
    regnet("regnetx_040", opts, x(96, 38.65, 2.43, 40, 23))
}
/// RegNetX-6.4GF.
pub fn regnetx_064(opts: ZooOpts) -> Result<Model> {
    regnet("regnetx_064", opts, x(184, 60.83, 2.07, 56, 17))
}
/// RegNetX-8.0GF.
pub fn regnetx_080(opts: ZooOpts) -> Result<Model> {
    regnet("regnetx_080", opts, x(80, 49.56, 2.88, 120, 23))
}
/// RegNetX-12GF.
pub fn regnetx_120(opts: ZooOpts) -> Result<Model> {
    regnet("regnetx_120", opts, x(168, 73.36, 2.37, 112, 19))
}
/// RegNetX-16GF.
pub fn regnetx_160(opts: ZooOpts) -> Result<Model> {
    regnet("regnetx_160", opts, x(216, 55.59, 2.1, 128, 22))
}
/// RegNetX-32GF.
pub fn regnetx_320(opts: ZooOpts) -> Result<Model> {
    regnet("regnetx_320", opts, x(320, 69.86, 2.0, 168, 23))
}
/// RegNetY-200MF.
pub fn regnety_002(opts: ZooOpts) -> Result<Model> {
    regnet("regnety_002", opts, y(24, 36.44, 2.49, 8, 13))
}
/// RegNetY-400MF.
pub fn regnety_004(opts: ZooOpts) -> Result<Model> {
    regnet("regnety_004", opts, y(48, 27.89, 2.09, 8, 16))
}
/// RegNetY-600MF.
pub fn regnety_006(opts: ZooOpts) -> Result<Model> {
    regnet("regnety_006", opts, y(48, 32.54, 2.32, 16, 15))
}
/// RegNetY-800MF.
pub fn regnety_008(opts: ZooOpts) -> Result<Model> {
    regnet("regnety_008", opts, y(56, 38.84, 2.4, 16, 14))
}
/// RegNetY-800MF with torchvision's width rounding.
pub fn regnety_008_tv(opts: ZooOpts) -> Result<Model> {
    regnet("regnety_008_tv", opts, y(56, 38.84, 2.4, 16, 14).tv())
}
/// RegNetY-1.6GF.
pub fn regnety_016(opts: ZooOpts) -> Result<Model> {
    regnet("regnety_016", opts, y(48, 20.71, 2.65, 24, 27))
}
/// RegNetY-3.2GF.
pub fn regnety_032(opts: ZooOpts) -> Result<Model> {
    regnet("regnety_032", opts, y(80, 42.63, 2.66, 24, 21))
}
/// RegNetY-4.0GF.
pub fn regnety_040(opts: ZooOpts) -> Result<Model> {
    regnet("regnety_040", opts, y(96, 31.41, 2.24, 64, 22))
}
/// RegNetY-6.4GF.
pub fn regnety_064(opts: ZooOpts) -> Result<Model> {
    regnet("regnety_064", opts, y(112, 33.22, 2.27, 72, 25))
}
/// RegNetY-8.0GF.
pub fn regnety_080(opts: ZooOpts) -> Result<Model> {
    regnet("regnety_080", opts, y(192, 76.82, 2.19, 56, 17))
}
/// RegNetY-8.0GF with torchvision's width rounding.
pub fn regnety_080_tv(opts: ZooOpts) -> Result<Model> {
    regnet("regnety_080_tv", opts, y(192, 76.82, 2.19, 56, 17).tv())
}
/// RegNetY-12GF.
pub fn regnety_120(opts: ZooOpts) -> Result<Model> {
    regnet("regnety_120", opts, y(168, 73.36, 2.37, 112, 19))
}
/// RegNetY-16GF.
pub fn regnety_160(opts: ZooOpts) -> Result<Model> {
    regnet("regnety_160", opts, y(200, 106.23, 2.48, 112, 18))
}
/// RegNetY-32GF.
pub fn regnety_320(opts: ZooOpts) -> Result<Model> {
    regnet("regnety_320", opts, y(232, 115.89, 2.53, 232, 20))
}

// ---------------------------------------------------------------- registry

/// The registered variants of this family, each one line (`name`, pretrained configs).
/// Not registered: `regnety_040_sgn` (group norm, which the engine lacks) and
/// `regnety_640`/`1280`/`2560` (281M to 1.3B parameters, too large to test here).
pub(crate) static MODELS: &[ModelEntry] = &[
    register!(regnetx_002, PYCLS),
    register!(regnetx_004, PYCLS),
    register!(regnetx_004_tv, TV2),
    register!(regnetx_006, PYCLS),
    register!(regnetx_008, TV2_PYCLS),
    register!(regnetx_016, TV2_PYCLS),
    register!(regnetx_032, TV2_PYCLS),
    register!(regnetx_040, PYCLS),
    register!(regnetx_064, PYCLS),
    register!(regnetx_080, TV2_PYCLS),
    register!(regnetx_120, PYCLS),
    register!(regnetx_160, TV2_PYCLS),
    register!(regnetx_320, TV2_PYCLS),
    register!(regnety_002, PYCLS),
    register!(regnety_004, TV2_PYCLS),
    register!(regnety_006, PYCLS),
    register!(regnety_008, PYCLS),
    register!(regnety_008_tv, TV2),
    register!(regnety_016, TV2_PYCLS),
    register!(regnety_032, REGNETY_032),
    register!(regnety_040, RA3_PYCLS),
    register!(regnety_064, RA3_PYCLS),
    register!(regnety_080, RA3_PYCLS),
    register!(regnety_080_tv, TV2),
    register!(regnety_120, REGNETY_120),
    register!(regnety_160, REGNETY_160),
    register!(regnety_320, REGNETY_320),
];

// ---------------------------------------------------------------- tests

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_sgd_lowers_loss, random_images};

    #[test]
    fn regnety_squeezes_from_the_block_input_and_trains() {
        // s1.b1: 32 channels in, 24 out; the squeeze has round(32 * 0.25) = 8 channels
        let mut m = regnety_002(ZooOpts::new().with_num_classes(10).with_seed(3)).unwrap();
        assert_eq!(m.params().by_key("s1.b1.se.fc1.weight").unwrap().torch_shape(), vec![8, 24, 1, 1]);
        assert_eq!(m.num_features(), 368);
        let x = random_images(4, 32, 9);
        assert_eq!(m.forward_features(&x).unwrap().dims(), [4, 1, 1, 368]);
        assert_sgd_lowers_loss(&mut m);
        m.reset_classifier(0, 1);
        assert_eq!(m.forward(&x).unwrap().dims(), [4, 368]);
        assert!(m.params().by_key("head.fc.weight").is_none());
    }

    fn widths(d: RegNetDesign) -> Vec<(usize, usize, usize)> {
        d.stages().unwrap().iter().map(|s| (s.width, s.depth, s.group_size)).collect()
    }

    #[test]
    fn design_rule_gives_timms_stages() {
        // (width, depth, group size) per stage, as timm's RegNet builds them
        assert_eq!(widths(x(24, 36.44, 2.49, 8, 13)), [(24, 1, 8), (56, 1, 8), (152, 4, 8), (368, 7, 8)]);
        assert_eq!(widths(y(96, 31.41, 2.24, 64, 22)), [(128, 2, 64), (192, 6, 64), (512, 12, 64), (1088, 2, 64)]);
        // torchvision's rounding (make_divisible) rounds 392 up to 400 where the nearest multiple is 384
        assert_eq!(widths(x(24, 24.48, 2.54, 16, 22)), [(32, 1, 16), (64, 2, 16), (160, 7, 16), (384, 12, 16)]);
        assert_eq!(widths(x(24, 24.48, 2.54, 16, 22).tv()), [(32, 1, 16), (64, 2, 16), (160, 7, 16), (400, 12, 16)]);
        assert_eq!(widths(y(192, 76.82, 2.19, 56, 17).tv())[0], (224, 2, 56));
    }

    #[test]
    fn bad_designs_are_errors() {
        assert!(x(20, 36.44, 2.49, 8, 13).stages().is_err()); // w0 not a multiple of 8
        assert!(x(24, 36.44, 1.0, 8, 13).stages().is_err());
        assert!(x(24, 36.44, 2.49, 8, 2).stages().is_err()); // too shallow for four stages
    }
}
