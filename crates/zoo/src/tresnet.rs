//! TResNet (Ridnik et al. 2021, "TResNet: High Performance GPU-Dedicated Architecture"), as
//! timm's `tresnet.py` builds it (the form without inplace-ABN: plain batch norm and leaky
//! ReLU of slope 1e-3 in the blocks). The stem folds each 4x4 patch into channels
//! (space-to-depth) before a 3x3 conv; strided convs run at stride 1 and are followed by an
//! anti-aliasing blur pool (Zhang 2019, "Making Convolutional Networks Shift-Invariant
//! Again": reflect padding, a fixed binomial 3x3 filter, stride 2); basic blocks in the
//! first two stages (bottlenecks in `v2`), bottlenecks after, squeeze-excitation in every
//! stage but the last, average-pool shortcuts.

use crate::Model;
use crate::attention::{SeConfig, SeReduce, SqueezeExcite};
use crate::error::{Result, ZooError};
use crate::layers::{ClassifierHead, ConvBnAct, ConvOpts, avg_pool, drop_path};
use crate::model::{Architecture, ModelArgs, ZooOpts, build};
use crate::pretrained::PretrainedCfg;
use crate::registry::{ModelEntry, register};
use convnet_nn::context::Cx;
use convnet_nn::store::Vb;
use convnet_tensor::{Activation, Conv2dArgs, Pad2d, PadMode, Padding2d, Tensor};

const EPS: f32 = 1e-5;
/// The blocks' leaky ReLU slope (the stem uses PyTorch's default, 0.01).
const BLOCK_SLOPE: f32 = 1e-3;

// ---------------------------------------------------------------- layers

/// timm's `SpaceToDepth(4)` on NHWC maps: `[n, h, w, c] -> [n, h/4, w/4, 16c]`, channel
/// `(4 * dy + dx) * c + k` holding pixel `(4i + dy, 4j + dx)` of channel `k`, as timm orders
/// it on NCHW data.
pub fn space_to_depth(x: &Tensor, block: usize) -> Result<Tensor> {
    let [n, h, w, c] = x.dims()[..] else {
        return Err(ZooError::arg("input", format!("space-to-depth needs [n, h, w, c], got {:?}", x.dims())));
    };
    if block == 0 || h % block != 0 || w % block != 0 {
        return Err(ZooError::arg(
            "input",
            format!("space-to-depth by {block} needs height and width divisible by it, got {h}x{w}"),
        ));
    }
    let (oh, ow) = (h / block, w / block);
    let y = x.reshape(vec![n, oh, block, ow, block, c])?.permute(&[0, 1, 3, 2, 4, 5])?;
    Ok(y.reshape(vec![n, oh, ow, block * block * c])?)
}

/// timm's `BlurPool2d` (filter size 3, stride 2): reflect padding of one pixel, then each
/// channel convolved with the fixed `[1, 2, 1]^T [1, 2, 1] / 16` filter at stride 2. The
/// filter is a constant, not a parameter.
pub fn blur_pool(x: &Tensor) -> Result<Tensor> {
    let c = x.dims().last().copied().unwrap_or(0);
    let taps = [1.0f32, 2.0, 1.0];
    // depthwise kernel [3, 3, 1, c]
    let mut k = Vec::with_capacity(9 * c);
    for a in taps {
        for b in taps {
            k.extend(std::iter::repeat_n(a * b / 16.0, c));
        }
    }
    let k = Tensor::from_vec(k, [3, 3, 1, c])?;
    let x = x.pad2d(Pad2d::uniform(1), PadMode::Reflect)?;
    let args = Conv2dArgs { stride: (2, 2), padding: Padding2d::Valid, dilation: (1, 1), groups: c };
    Ok(x.conv2d(&k, None, &args)?)
}

/// timm's `ConvNormAct` inside the blocks, with the anti-aliasing blur pool when strided:
/// the conv runs at stride 1, then norm, leaky ReLU (slope 1e-3) and the blur pool.
#[derive(Debug)]
struct ConvAct {
    cba: ConvBnAct,
    blur: bool,
}

impl ConvAct {
    fn new(vb: &Vb, cin: usize, cout: usize, k: usize, stride: usize) -> Self {
        let cba = ConvBnAct::timm(vb, cin, cout, k, ConvOpts::default(), EPS, Activation::Linear);
        ConvAct { cba, blur: stride > 1 }
    }

    fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let y = self.cba.forward(cx, x)?.leaky_relu(BLOCK_SLOPE);
        if self.blur { blur_pool(&y) } else { Ok(y) }
    }
}

// ---------------------------------------------------------------- blocks

/// The residual branch of a block (one per block, so the variants' size difference is moot).
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Branch {
    /// `conv1` (3x3, leaky, blurred when strided), `conv2` (3x3), `se`.
    Basic { conv1: ConvAct, conv2: ConvBnAct, se: Option<SqueezeExcite> },
    /// `conv1` (1x1, leaky), `conv2` (3x3, leaky, blurred when strided), `se`, `conv3` (1x1).
    Bottleneck { conv1: ConvAct, conv2: ConvAct, se: Option<SqueezeExcite>, conv3: ConvBnAct },
}

/// A block's shortcut projection: `downsample.0` a 2x2 average pool when strided, then a
/// 1x1 conv and norm (`downsample.{0|1}.{conv,bn}`).
#[derive(Debug)]
struct Downsample {
    pool: bool,
    conv: ConvBnAct,
}

#[derive(Debug)]
struct Block {
    path: String,
    branch: Branch,
    downsample: Option<Downsample>,
    drop_path: f32,
}

impl Block {
    fn new(vb: &Vb, bottleneck: bool, cin: usize, planes: usize, stride: usize, se: bool, dp: f32) -> Self {
        let expansion = if bottleneck { 4 } else { 1 };
        let cout = planes * expansion;
        let lin = Activation::Linear;
        let se_of = |c: usize, rd: usize| {
            se.then(|| {
                SqueezeExcite::new(&vb.pp("se"), c, &SeConfig { reduce: SeReduce::Channels(rd), ..SeConfig::timm() })
            })
        };
        let branch = if bottleneck {
            Branch::Bottleneck {
                conv1: ConvAct::new(&vb.pp("conv1"), cin, planes, 1, 1),
                conv2: ConvAct::new(&vb.pp("conv2"), planes, planes, 3, stride),
                se: se_of(planes, (planes * 4 / 8).max(64)),
                conv3: ConvBnAct::timm(&vb.pp("conv3"), planes, cout, 1, ConvOpts::default(), EPS, lin),
            }
        } else {
            Branch::Basic {
                conv1: ConvAct::new(&vb.pp("conv1"), cin, planes, 3, stride),
                conv2: ConvBnAct::timm(&vb.pp("conv2"), planes, planes, 3, ConvOpts::default(), EPS, lin),
                se: se_of(planes, (planes / 4).max(64)),
            }
        };
        let downsample = (stride != 1 || cin != cout).then(|| {
            let pool = stride == 2;
            let d = vb.pp("downsample").pp(usize::from(pool));
            Downsample { pool, conv: ConvBnAct::timm(&d, cin, cout, 1, ConvOpts::default(), EPS, lin) }
        });
        Block { path: vb.prefix().to_string(), branch, downsample, drop_path: dp }
    }

    fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let shortcut = match &self.downsample {
            Some(d) => {
                let s = if d.pool { avg_pool(x, 2, 2, 0, true, false)? } else { x.clone() };
                d.conv.forward(cx, &s)?
            }
            None => x.clone(),
        };
        let se = |se: &Option<SqueezeExcite>, y: Tensor| match se {
            Some(s) => s.forward(cx, y),
            None => Ok(y),
        };
        let relu = Activation::Relu;
        let plain = !(cx.training() && self.drop_path > 0.0);
        let y = match &self.branch {
            Branch::Basic { conv1, conv2, se: s } => {
                let y = conv1.forward(cx, x)?;
                if s.is_none() && plain {
                    conv2.forward_add(cx, &y, &shortcut, relu)?
                } else {
                    let y = se(s, conv2.forward(cx, &y)?)?;
                    drop_path(cx, &y, self.drop_path)?.add(&shortcut)?.relu()
                }
            }
            Branch::Bottleneck { conv1, conv2, se: s, conv3 } => {
                let y = se(s, conv2.forward(cx, &conv1.forward(cx, x)?)?)?;
                if plain {
                    conv3.forward_add(cx, &y, &shortcut, relu)?
                } else {
                    drop_path(cx, &conv3.forward(cx, &y)?, self.drop_path)?.add(&shortcut)?.relu()
                }
            }
        };
        cx.record(
            &self.path,
            if matches!(self.branch, Branch::Basic { .. }) { "BasicBlock" } else { "Bottleneck" },
            &y,
        );
        Ok(y)
    }
}

// ---------------------------------------------------------------- model

/// A TResNet: blocks per stage, width factor, and the `v2` (all-bottleneck) layout.
#[derive(Clone, Debug, PartialEq)]
pub struct TResNetConfig {
    /// Blocks per stage.
    pub layers: [usize; 4],
    /// Multiplies the base width 64 (truncated, as timm's `int`).
    pub width_factor: f64,
    /// Bottlenecks in every stage and widths rounded down to a multiple of 8.
    pub v2: bool,
    /// Classes (0: no classifier).
    pub num_classes: usize,
    /// Input channels.
    pub in_chans: usize,
    /// Dropout before the classifier.
    pub drop_rate: f32,
    /// Stochastic depth, per stage (timm's `stagewise` rates).
    pub drop_path_rate: f32,
}

impl From<&ModelArgs> for TResNetConfig {
    fn from(a: &ModelArgs) -> Self {
        TResNetConfig {
            layers: [3, 4, 11, 3],
            width_factor: 1.0,
            v2: false,
            num_classes: a.num_classes,
            in_chans: a.in_chans,
            drop_rate: a.drop_rate,
            drop_path_rate: a.drop_path_rate,
        }
    }
}

/// TResNet: `body.conv1` (after space-to-depth), `body.layer{1..4}.{j}`, `head.fc`.
#[derive(Debug)]
pub struct TResNet {
    stem: ConvBnAct,
    blocks: Vec<Block>,
    head: ClassifierHead,
}

impl TResNet {
    /// Builds the network under `vb`.
    pub fn new(vb: &Vb, cfg: TResNetConfig) -> Result<Self> {
        let mut planes = (64.0 * cfg.width_factor) as usize;
        if cfg.v2 {
            planes = planes / 8 * 8;
        }
        if planes == 0 {
            return Err(ZooError::arg("width_factor", format!("{} leaves no channels", cfg.width_factor)));
        }
        let body = vb.pp("body");
        let stem = ConvBnAct::timm(
            &body.pp("conv1"),
            cfg.in_chans * 16,
            planes,
            3,
            ConvOpts::default(),
            EPS,
            Activation::LeakyRelu,
        );
        let total = cfg.layers.iter().sum::<usize>().max(1);
        let mut cin = planes;
        let mut blocks = Vec::new();
        for (s, &depth) in cfg.layers.iter().enumerate() {
            let bottleneck = s >= 2 || cfg.v2;
            let p = planes << s;
            let first: usize = cfg.layers[..s].iter().sum();
            let dpr = if total > 1 { cfg.drop_path_rate * first as f32 / (total - 1) as f32 } else { 0.0 };
            let lv = body.pp(format!("layer{}", s + 1));
            for j in 0..depth {
                let stride = if s > 0 && j == 0 { 2 } else { 1 };
                blocks.push(Block::new(&lv.pp(j), bottleneck, cin, p, stride, s < 3, dpr));
                cin = p * if bottleneck { 4 } else { 1 };
            }
        }
        let head = ClassifierHead::new(&vb.pp("head").pp("fc"), cin, cfg.num_classes, cfg.drop_rate);
        Ok(TResNet { stem, blocks, head })
    }
}

impl Architecture for TResNet {
    fn forward_features(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let x = space_to_depth(x, 4)?;
        let mut x = self.stem.forward(cx, &x)?;
        cx.record("body.conv1", "ConvNormAct", &x);
        for b in &self.blocks {
            x = b.forward(cx, &x)?;
        }
        Ok(x)
    }
    fn forward_head(&self, cx: &Cx, x: &Tensor, pre_logits: bool) -> Result<Tensor> {
        self.head.forward(cx, x, pre_logits)
    }
    fn num_features(&self) -> usize {
        self.head.num_features
    }
    fn num_classes(&self) -> usize {
        self.head.num_classes
    }
    fn reset_classifier(&mut self, vb: &Vb, num_classes: usize) {
        let h = &self.head;
        self.head = ClassifierHead::new(&vb.pp("head").pp("fc"), h.num_features, num_classes, h.drop_rate);
    }
}

// ---------------------------------------------------------------- pretrained configs

/// timm's `_cfg` for TResNets: inputs in [0, 1] (mean 0, std 1), bilinear, crop 0.875.
const fn cfg(tag: &'static str) -> PretrainedCfg {
    PretrainedCfg::imagenet(tag, "body.conv1.conv", "head.fc").norm([0.0; 3], [1.0; 3])
}

pub(crate) static TRESNET_M: &[PretrainedCfg] =
    &[cfg("miil_in21k_ft_in1k"), cfg("miil_in21k").classes(11221), cfg("miil_in1k"), cfg("miil_in1k_448").size(448)];
pub(crate) static TRESNET_L: &[PretrainedCfg] = &[cfg("miil_in1k"), cfg("miil_in1k_448").size(448)];
pub(crate) static TRESNET_XL: &[PretrainedCfg] = &[cfg("miil_in1k"), cfg("miil_in1k_448").size(448)];
pub(crate) static TRESNET_V2_L: &[PretrainedCfg] = &[cfg("miil_in21k_ft_in1k"), cfg("miil_in21k").classes(11221)];

// ---------------------------------------------------------------- entry points

fn tresnet(arch: &'static str, opts: ZooOpts, layers: [usize; 4], width_factor: f64, v2: bool) -> Result<Model> {
    build(arch, opts, |vb, a| Ok(Box::new(TResNet::new(vb, TResNetConfig { layers, width_factor, v2, ..a.into() })?)))
}

/// TResNet-M.
pub fn tresnet_m(opts: ZooOpts) -> Result<Model> {
    tresnet("tresnet_m", opts, [3, 4, 11, 3], 1.0, false)
}
/// TResNet-L (width 1.2).
pub fn tresnet_l(opts: ZooOpts) -> Result<Model> {
    tresnet("tresnet_l", opts, [4, 5, 18, 3], 1.2, false)
}
/// TResNet-XL (width 1.3).
pub fn tresnet_xl(opts: ZooOpts) -> Result<Model> {
    tresnet("tresnet_xl", opts, [4, 5, 24, 3], 1.3, false)
}
/// TResNet-L v2: bottlenecks in every stage.
pub fn tresnet_v2_l(opts: ZooOpts) -> Result<Model> {
    tresnet("tresnet_v2_l", opts, [3, 4, 23, 3], 1.0, true)
}

// ---------------------------------------------------------------- registry

/// The registered variants of this family, each one line (`name`, pretrained configs).
pub(crate) static MODELS: &[ModelEntry] = &[
    register!(tresnet_m, TRESNET_M),
    register!(tresnet_l, TRESNET_L),
    register!(tresnet_xl, TRESNET_XL),
    register!(tresnet_v2_l, TRESNET_V2_L),
];

// ---------------------------------------------------------------- tests

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_trains, random_images};
    use convnet_nn::store::Params;

    #[test]
    fn space_to_depth_orders_channels_as_timm() {
        // [1, 4, 4, 2]: value = 100 * y + 10 * x + k
        let v: Vec<f32> =
            (0..4).flat_map(|y| (0..4).flat_map(move |x| (0..2).map(move |k| (100 * y + 10 * x + k) as f32))).collect();
        let t = Tensor::from_vec(v, [1, 4, 4, 2]).unwrap();
        let s = space_to_depth(&t, 4).unwrap();
        assert_eq!(s.dims(), [1, 1, 1, 32]);
        for dy in 0..4 {
            for dx in 0..4 {
                for k in 0..2 {
                    assert_eq!(s.data()[(4 * dy + dx) * 2 + k], (100 * dy + 10 * dx + k) as f32);
                }
            }
        }
        assert!(space_to_depth(&Tensor::zeros([1, 6, 4, 1]), 4).is_err());
    }

    #[test]
    fn blur_pool_reflects_and_averages_with_the_binomial_filter() {
        // one channel, 4x4 ramp x + 4y; reflect padding, stride 2 -> 2x2
        let t = Tensor::from_vec((0..16).map(|i| i as f32).collect(), [1, 4, 4, 1]).unwrap();
        let y = blur_pool(&t).unwrap();
        assert_eq!(y.dims(), [1, 2, 2, 1]);
        // reference: padded row/column -1 -> 1 (reflect), weights [1,2,1]/4 per axis
        let px = |i: isize| -> f64 { i.unsigned_abs() as f64 };
        for (oy, ox) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            let mut want = 0.0;
            for (dy, wy) in [(-1isize, 1.0), (0, 2.0), (1, 1.0)] {
                for (dx, wx) in [(-1isize, 1.0), (0, 2.0), (1, 1.0)] {
                    let (yy, xx) = (px(2 * oy + dy), px(2 * ox + dx));
                    want += wy * wx / 16.0 * (xx + 4.0 * yy);
                }
            }
            assert!((y.data()[oy as usize * 2 + ox as usize] as f64 - want).abs() < 1e-5);
        }
    }

    #[test]
    fn tresnet_resets_its_classifier() {
        let mut m = tresnet_m(ZooOpts::new().with_num_classes(10).with_seed(2)).unwrap();
        assert_eq!(m.forward(&random_images(1, 64, 1)).unwrap().dims(), [1, 10]);
        m.reset_classifier(0, 1);
        assert_eq!(m.forward(&random_images(1, 64, 1)).unwrap().dims(), [1, 2048]);
    }

    /// A narrow one-block-per-stage TResNet (and its v2 form) takes a training step: the
    /// gradient reaches the stem through space-to-depth and the blocks through the blur pools.
    #[test]
    fn narrow_tresnets_train() {
        let a = ModelArgs { num_classes: 10, in_chans: 3, drop_rate: 0.0, drop_path_rate: 0.0 };
        for v2 in [false, true] {
            let store = std::cell::RefCell::new(Params::new());
            let cfg = TResNetConfig { layers: [1, 1, 1, 1], width_factor: 0.25, v2, ..(&a).into() };
            let net = TResNet::new(&Vb::root(&store, 1), cfg).unwrap();
            assert_trains(&net, store, [2, 64, 64, 3], &["body.conv1.conv.weight", "body.layer2.0.conv1.conv.weight"]);
        }
    }
}
