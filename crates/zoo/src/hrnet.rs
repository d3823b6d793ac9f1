//! HRNet (Wang et al. 2020, "Deep High-Resolution Representation Learning for Visual
//! Recognition"), as timm's `hrnet.py` builds its classification networks. After a
//! stride-4 stem and a bottleneck stage, the network keeps parallel branches at strides 4,
//! 8, 16 and 32 (one more per stage); in each module every branch runs its residual blocks,
//! then every output branch sums all branches brought to its resolution: lower-resolution
//! ones by a 1x1 conv and nearest upsampling by an integer factor, higher-resolution ones by
//! strided 3x3 convs. The classification head widens each branch with a bottleneck
//! (`incre_modules`) and folds them from fine to coarse with strided convs
//! (`downsamp_modules`), then a 1x1 conv to 2048 channels (`final_layer`) and a linear
//! classifier.

use crate::Model;
use crate::error::{Result, ZooError};
use crate::layers::{ClassifierHead, ConvBnAct, ConvOpts};
use crate::model::{Architecture, ModelArgs, ZooOpts, build};
use crate::pretrained::PretrainedCfg;
use crate::registry::{ModelEntry, register};
use convnet_nn::context::Cx;
use convnet_nn::store::Vb;
use convnet_tensor::{Activation, Tensor};

const EPS: f32 = 1e-5;

// ---------------------------------------------------------------- layers

/// Nearest-neighbour upsampling by an integer `factor` (PyTorch's `nn.Upsample(scale_factor,
/// mode='nearest')`): `[n, h, w, c] -> [n, h*f, w*f, c]`, each pixel repeated in an `f x f`
/// block. Built as a broadcast product with ones, so its gradient (the sum over each block)
/// comes from the product's.
pub fn upsample_nearest(x: &Tensor, factor: usize) -> Result<Tensor> {
    let [n, h, w, c] = x.dims()[..] else {
        return Err(ZooError::arg("input", format!("upsampling needs [n, h, w, c], got {:?}", x.dims())));
    };
    if factor == 0 {
        return Err(ZooError::arg("factor", "must be at least 1"));
    }
    if factor == 1 {
        return Ok(x.clone());
    }
    let ones = Tensor::full([1, 1, factor, 1, factor, 1], 1.0);
    let y = x.reshape(vec![n, h, 1, w, 1, c])?.mul(&ones)?;
    Ok(y.reshape(vec![n, h * factor, w * factor, c])?)
}

/// `conv{i}`/`bn{i}` of a residual block, or `{vb}.0`/`{vb}.1` of a `Sequential`.
fn cba(conv: &Vb, bn: &Vb, cin: usize, cout: usize, k: usize, stride: usize, a: Activation) -> ConvBnAct {
    ConvBnAct::new(conv, bn, cin, cout, (k, k), ConvOpts::stride(stride), EPS, a)
}

/// timm's ResNet `BasicBlock` (expansion 1) or `Bottleneck` (expansion 4) with an optional
/// `downsample.{0,1}` projection.
#[derive(Debug)]
struct Block {
    convs: Vec<ConvBnAct>,
    downsample: Option<ConvBnAct>,
}

impl Block {
    fn new(vb: &Vb, bottleneck: bool, cin: usize, planes: usize) -> Self {
        let relu = Activation::Relu;
        let c = |i: usize, ci: usize, co: usize, k: usize, a: Activation| {
            cba(&vb.pp(format!("conv{i}")), &vb.pp(format!("bn{i}")), ci, co, k, 1, a)
        };
        let (convs, cout) = if bottleneck {
            let out = planes * 4;
            (
                vec![
                    c(1, cin, planes, 1, relu),
                    c(2, planes, planes, 3, relu),
                    c(3, planes, out, 1, Activation::Linear),
                ],
                out,
            )
        } else {
            (vec![c(1, cin, planes, 3, relu), c(2, planes, planes, 3, Activation::Linear)], planes)
        };
        let d = vb.pp("downsample");
        let downsample = (cin != cout).then(|| cba(&d.pp(0), &d.pp(1), cin, cout, 1, 1, Activation::Linear));
        Block { convs, downsample }
    }

    fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let shortcut = match &self.downsample {
            Some(d) => d.forward(cx, x)?,
            None => x.clone(),
        };
        let (last, first) = self.convs.split_last().expect("a block has convs");
        let mut y = x.clone();
        for c in first {
            y = c.forward(cx, &y)?;
        }
        last.forward_add(cx, &y, &shortcut, Activation::Relu)
    }
}

/// A run of blocks (`nn.Sequential` of blocks, keys `{vb}.{j}`); the first one projects.
fn layer(vb: &Vb, bottleneck: bool, cin: usize, planes: usize, blocks: usize) -> Vec<Block> {
    let out = if bottleneck { planes * 4 } else { planes };
    (0..blocks).map(|j| Block::new(&vb.pp(j), bottleneck, if j == 0 { cin } else { out }, planes)).collect()
}

fn run(cx: &Cx, blocks: &[Block], x: &Tensor) -> Result<Tensor> {
    let mut y = x.clone();
    for b in blocks {
        y = b.forward(cx, &y)?;
    }
    Ok(y)
}

fn run_seq(cx: &Cx, convs: &[ConvBnAct], x: &Tensor) -> Result<Tensor> {
    let mut y = x.clone();
    for c in convs {
        y = c.forward(cx, &y)?;
    }
    Ok(y)
}

// ---------------------------------------------------------------- modules

/// How branch `j` reaches the resolution of output `i`.
#[derive(Debug)]
enum Fuse {
    /// `j == i`.
    Identity,
    /// `j > i`: 1x1 conv and norm (`.0`, `.1`), nearest upsampling by `2^(j-i)`.
    Up { conv: ConvBnAct, factor: usize },
    /// `j < i`: `i - j` stride-2 3x3 convs with norms (`.{k}.0`, `.{k}.1`), ReLU on all but the last.
    Down(Vec<ConvBnAct>),
}

/// timm's `HighResolutionModule`: `branches.{b}.{j}` and `fuse_layers.{i}.{j}`.
#[derive(Debug)]
struct HrModule {
    path: String,
    branches: Vec<Vec<Block>>,
    fuse: Vec<Vec<Fuse>>,
}

impl HrModule {
    fn new(vb: &Vb, chs: &[usize], blocks: &[usize]) -> Self {
        let branches = chs
            .iter()
            .zip(blocks)
            .enumerate()
            .map(|(b, (&c, &n))| layer(&vb.pp("branches").pp(b), false, c, c, n))
            .collect();
        let nb = chs.len();
        let fl = vb.pp("fuse_layers");
        let fuse = if nb == 1 {
            Vec::new()
        } else {
            (0..nb)
                .map(|i| {
                    (0..nb)
                        .map(|j| {
                            let f = fl.pp(i).pp(j);
                            if j > i {
                                let conv = cba(&f.pp(0), &f.pp(1), chs[j], chs[i], 1, 1, Activation::Linear);
                                Fuse::Up { conv, factor: 1 << (j - i) }
                            } else if j == i {
                                Fuse::Identity
                            } else {
                                let convs = (0..i - j)
                                    .map(|k| {
                                        let last = k == i - j - 1;
                                        let (co, a) = if last {
                                            (chs[i], Activation::Linear)
                                        } else {
                                            (chs[j], Activation::Relu)
                                        };
                                        cba(&f.pp(k).pp(0), &f.pp(k).pp(1), chs[j], co, 3, 2, a)
                                    })
                                    .collect();
                                Fuse::Down(convs)
                            }
                        })
                        .collect()
                })
                .collect()
        };
        HrModule { path: vb.prefix().to_string(), branches, fuse }
    }

    fn forward(&self, cx: &Cx, xs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let xs: Vec<Tensor> = self.branches.iter().zip(&xs).map(|(b, x)| run(cx, b, x)).collect::<Result<_>>()?;
        if self.fuse.is_empty() {
            return Ok(xs);
        }
        let mut out = Vec::with_capacity(self.fuse.len());
        for (i, row) in self.fuse.iter().enumerate() {
            let mut y: Option<Tensor> = None;
            for (f, x) in row.iter().zip(&xs) {
                let t = match f {
                    Fuse::Identity => x.clone(),
                    Fuse::Up { conv, factor } => upsample_nearest(&conv.forward(cx, x)?, *factor)?,
                    Fuse::Down(convs) => run_seq(cx, convs, x)?,
                };
                y = Some(match y {
                    Some(acc) => acc.add(&t)?,
                    None => t,
                });
            }
            let y = y.expect("a fuse row has branches").relu();
            cx.record(&format!("{}.fuse_layers.{i}", self.path), "Fuse", &y);
            out.push(y);
        }
        Ok(out)
    }
}

/// timm's `_make_transition_layer` entry: keep a branch, re-width it (3x3 conv, `.0`/`.1`),
/// or start a new one from the last branch with stride-2 3x3 convs (`.{k}.0`/`.{k}.1`).
#[derive(Debug)]
enum Transition {
    Keep,
    Rewidth(ConvBnAct),
    New(Vec<ConvBnAct>),
}

fn transitions(vb: &Vb, pre: &[usize], cur: &[usize]) -> Vec<Transition> {
    let relu = Activation::Relu;
    (0..cur.len())
        .map(|i| {
            let t = vb.pp(i);
            if i < pre.len() {
                if cur[i] == pre[i] {
                    Transition::Keep
                } else {
                    Transition::Rewidth(cba(&t.pp(0), &t.pp(1), pre[i], cur[i], 3, 1, relu))
                }
            } else {
                let last = pre[pre.len() - 1];
                Transition::New(
                    (0..=i - pre.len())
                        .map(|k| {
                            let co = if k == i - pre.len() { cur[i] } else { last };
                            cba(&t.pp(k).pp(0), &t.pp(k).pp(1), last, co, 3, 2, relu)
                        })
                        .collect(),
                )
            }
        })
        .collect()
}

// ---------------------------------------------------------------- model

/// One stage after the first: modules, blocks per branch, branch widths.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HrStage {
    /// `HighResolutionModule`s in the stage.
    pub modules: usize,
    /// Basic blocks per branch.
    pub blocks: usize,
}

/// An HRNet: the first stage's bottlenecks, the later stages and the base branch width.
#[derive(Clone, Debug, PartialEq)]
pub struct HrNetConfig {
    /// Bottlenecks of `layer1` and their planes.
    pub stage1: (usize, usize),
    /// Stages 2, 3, 4 (2, 3 and 4 branches).
    pub stages: [HrStage; 3],
    /// Width of the first branch; branch `b` has `width << b`.
    pub width: usize,
    /// Biases on the head's strided and final convs (absent in the SSLD weights).
    pub head_conv_bias: bool,
    /// Classes (0: no classifier).
    pub num_classes: usize,
    /// Input channels.
    pub in_chans: usize,
    /// Dropout before the classifier.
    pub drop_rate: f32,
}

impl From<&ModelArgs> for HrNetConfig {
    fn from(a: &ModelArgs) -> Self {
        let s = |modules| HrStage { modules, blocks: 4 };
        HrNetConfig {
            stage1: (4, 64),
            stages: [s(1), s(4), s(3)],
            width: 18,
            head_conv_bias: true,
            num_classes: a.num_classes,
            in_chans: a.in_chans,
            drop_rate: a.drop_rate,
        }
    }
}

/// Output widths of the head's bottlenecks (`incre_modules`), before expansion.
const HEAD_CHANNELS: [usize; 4] = [32, 64, 128, 256];
/// Width of the head's last conv, the classifier's input.
const NUM_FEATURES: usize = 2048;

/// HRNet: `conv1`/`bn1`, `conv2`/`bn2`, `layer1`, `transition{1,2,3}`, `stage{2,3,4}.{m}`,
/// `incre_modules`, `downsamp_modules`, `final_layer`, `classifier`.
#[derive(Debug)]
pub struct HrNet {
    stem: [ConvBnAct; 2],
    layer1: Vec<Block>,
    /// Each stage's transition and modules.
    stages: Vec<(Vec<Transition>, Vec<HrModule>)>,
    incre: Vec<Vec<Block>>,
    downsamp: Vec<ConvBnAct>,
    final_layer: ConvBnAct,
    head: ClassifierHead,
}

impl HrNet {
    /// Builds the network under `vb`.
    pub fn new(vb: &Vb, cfg: HrNetConfig) -> Result<Self> {
        if cfg.width == 0 || cfg.stage1.0 == 0 || cfg.stages.iter().any(|s| s.modules == 0 || s.blocks == 0) {
            return Err(ZooError::arg("config", format!("widths, blocks and modules must be positive: {cfg:?}")));
        }
        let relu = Activation::Relu;
        let stem = [
            cba(&vb.pp("conv1"), &vb.pp("bn1"), cfg.in_chans, 64, 3, 2, relu),
            cba(&vb.pp("conv2"), &vb.pp("bn2"), 64, 64, 3, 2, relu),
        ];
        let (n1, p1) = cfg.stage1;
        let layer1 = layer(&vb.pp("layer1"), true, 64, p1, n1);
        let mut pre = vec![p1 * 4];
        let mut stages = Vec::new();
        for (s, st) in cfg.stages.iter().enumerate() {
            let chs: Vec<usize> = (0..s + 2).map(|b| cfg.width << b).collect();
            let trans = transitions(&vb.pp(format!("transition{}", s + 1)), &pre, &chs);
            let blocks = vec![st.blocks; chs.len()];
            let sv = vb.pp(format!("stage{}", s + 2));
            let modules = (0..st.modules).map(|m| HrModule::new(&sv.pp(m), &chs, &blocks)).collect();
            stages.push((trans, modules));
            pre = chs;
        }
        let incre = pre
            .iter()
            .enumerate()
            .map(|(i, &c)| layer(&vb.pp("incre_modules").pp(i), true, c, HEAD_CHANNELS[i], 1))
            .collect();
        let o = ConvOpts::stride(2).with_bias(cfg.head_conv_bias);
        let downsamp = (0..3)
            .map(|i| {
                let d = vb.pp("downsamp_modules").pp(i);
                let (ci, co) = (HEAD_CHANNELS[i] * 4, HEAD_CHANNELS[i + 1] * 4);
                ConvBnAct::new(&d.pp(0), &d.pp(1), ci, co, (3, 3), o, EPS, relu)
            })
            .collect();
        let f = vb.pp("final_layer");
        let fo = ConvOpts::default().with_bias(cfg.head_conv_bias);
        let final_layer = ConvBnAct::new(&f.pp(0), &f.pp(1), HEAD_CHANNELS[3] * 4, NUM_FEATURES, (1, 1), fo, EPS, relu);
        let head = ClassifierHead::new(&vb.pp("classifier"), NUM_FEATURES, cfg.num_classes, cfg.drop_rate);
        Ok(HrNet { stem, layer1, stages, incre, downsamp, final_layer, head })
    }
}

impl Architecture for HrNet {
    fn forward_features(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let x = run_seq(cx, &self.stem, x)?;
        cx.record("stem", "ConvNormAct", &x);
        let x = run(cx, &self.layer1, &x)?;
        let mut ys = vec![x];
        for (trans, modules) in &self.stages {
            let last = ys.last().expect("at least one branch").clone();
            let mut xs = Vec::with_capacity(trans.len());
            for (i, t) in trans.iter().enumerate() {
                xs.push(match t {
                    Transition::Keep => ys[i].clone(),
                    Transition::Rewidth(c) => c.forward(cx, &ys[i])?,
                    Transition::New(convs) => run_seq(cx, convs, &last)?,
                });
            }
            for m in modules {
                xs = m.forward(cx, xs)?;
            }
            ys = xs;
        }
        let mut y: Option<Tensor> = None;
        for (i, (incre, x)) in self.incre.iter().zip(&ys).enumerate() {
            let t = run(cx, incre, x)?;
            y = Some(match y {
                Some(prev) => t.add(&self.downsamp[i - 1].forward(cx, &prev)?)?,
                None => t,
            });
        }
        let y = self.final_layer.forward(cx, &y.expect("four branches"))?;
        cx.record("final_layer", "ConvNormAct", &y);
        Ok(y)
    }
    fn forward_head(&self, cx: &Cx, x: &Tensor, pre_logits: bool) -> Result<Tensor> {
        self.head.forward(cx, x, pre_logits)
    }
    fn num_features(&self) -> usize {
        NUM_FEATURES
    }
    fn num_classes(&self) -> usize {
        self.head.num_classes
    }
    fn reset_classifier(&mut self, vb: &Vb, num_classes: usize) {
        self.head = ClassifierHead::new(&vb.pp("classifier"), NUM_FEATURES, num_classes, self.head.drop_rate);
    }
}

// ---------------------------------------------------------------- pretrained configs

/// timm's `_cfg` for HRNets: bilinear, crop 0.875, first conv `conv1`.
const fn cfg(tag: &'static str) -> PretrainedCfg {
    PretrainedCfg::imagenet(tag, "conv1", "classifier")
}
/// The PaddlePaddle SSLD weights: crop 0.95, tested at 288.
const fn ssld(tag: &'static str) -> PretrainedCfg {
    cfg(tag).crop(0.95).test_size(288)
}

pub(crate) static HRNET_W18_SMALL: &[PretrainedCfg] = &[cfg("gluon_in1k").bicubic(), cfg("ms_in1k")];
pub(crate) static HRNET_W18_SMALL_V2: &[PretrainedCfg] = &[cfg("gluon_in1k").bicubic(), cfg("ms_in1k")];
pub(crate) static HRNET_W18: &[PretrainedCfg] = &[cfg("ms_aug_in1k").crop(0.95), cfg("ms_in1k")];
pub(crate) static HRNET_W30: &[PretrainedCfg] = &[cfg("ms_in1k")];
pub(crate) static HRNET_W32: &[PretrainedCfg] = &[cfg("ms_in1k")];
pub(crate) static HRNET_W40: &[PretrainedCfg] = &[cfg("ms_in1k")];
pub(crate) static HRNET_W44: &[PretrainedCfg] = &[cfg("ms_in1k")];
pub(crate) static HRNET_W48: &[PretrainedCfg] = &[cfg("ms_in1k")];
pub(crate) static HRNET_W64: &[PretrainedCfg] = &[cfg("ms_in1k")];
pub(crate) static HRNET_W18_SSLD: &[PretrainedCfg] = &[ssld("paddle_in1k")];
pub(crate) static HRNET_W48_SSLD: &[PretrainedCfg] = &[ssld("paddle_in1k")];

// ---------------------------------------------------------------- entry points

fn hrnet(arch: &'static str, opts: ZooOpts, f: impl FnOnce(HrNetConfig) -> HrNetConfig) -> Result<Model> {
    build(arch, opts, |vb, a| Ok(Box::new(HrNet::new(vb, f(a.into()))?)))
}

/// The full-size HRNets of branch width `width`.
fn wide(arch: &'static str, opts: ZooOpts, width: usize, head_conv_bias: bool) -> Result<Model> {
    hrnet(arch, opts, |c| HrNetConfig { width, head_conv_bias, ..c })
}

/// HRNet-W18-Small: one module per stage, two blocks per branch, 16-wide.
pub fn hrnet_w18_small(opts: ZooOpts) -> Result<Model> {
    let s = HrStage { modules: 1, blocks: 2 };
    hrnet("hrnet_w18_small", opts, |c| HrNetConfig { stage1: (1, 32), stages: [s; 3], width: 16, ..c })
}
/// HRNet-W18-Small-V2.
pub fn hrnet_w18_small_v2(opts: ZooOpts) -> Result<Model> {
    let s = |modules| HrStage { modules, blocks: 2 };
    hrnet("hrnet_w18_small_v2", opts, |c| HrNetConfig { stage1: (2, 64), stages: [s(1), s(3), s(2)], ..c })
}
/// HRNet-W18.
pub fn hrnet_w18(opts: ZooOpts) -> Result<Model> {
    wide("hrnet_w18", opts, 18, true)
}
/// HRNet-W30.
pub fn hrnet_w30(opts: ZooOpts) -> Result<Model> {
    wide("hrnet_w30", opts, 30, true)
}
/// HRNet-W32.
pub fn hrnet_w32(opts: ZooOpts) -> Result<Model> {
    wide("hrnet_w32", opts, 32, true)
}
/// HRNet-W40.
pub fn hrnet_w40(opts: ZooOpts) -> Result<Model> {
    wide("hrnet_w40", opts, 40, true)
}
/// HRNet-W44.
pub fn hrnet_w44(opts: ZooOpts) -> Result<Model> {
    wide("hrnet_w44", opts, 44, true)
}
/// HRNet-W48.
pub fn hrnet_w48(opts: ZooOpts) -> Result<Model> {
    wide("hrnet_w48", opts, 48, true)
}
/// HRNet-W64.
pub fn hrnet_w64(opts: ZooOpts) -> Result<Model> {
    wide("hrnet_w64", opts, 64, true)
}
/// HRNet-W18 for PaddlePaddle's SSLD weights (no biases in the head convs).
pub fn hrnet_w18_ssld(opts: ZooOpts) -> Result<Model> {
    wide("hrnet_w18_ssld", opts, 18, false)
}
/// HRNet-W48 for PaddlePaddle's SSLD weights (no biases in the head convs).
pub fn hrnet_w48_ssld(opts: ZooOpts) -> Result<Model> {
    wide("hrnet_w48_ssld", opts, 48, false)
}

// ---------------------------------------------------------------- registry

/// The registered variants of this family, each one line (`name`, pretrained configs).
pub(crate) static MODELS: &[ModelEntry] = &[
    register!(hrnet_w18_small, HRNET_W18_SMALL),
    register!(hrnet_w18_small_v2, HRNET_W18_SMALL_V2),
    register!(hrnet_w18, HRNET_W18),
    register!(hrnet_w30, HRNET_W30),
    register!(hrnet_w32, HRNET_W32),
    register!(hrnet_w40, HRNET_W40),
    register!(hrnet_w44, HRNET_W44),
    register!(hrnet_w48, HRNET_W48),
    register!(hrnet_w64, HRNET_W64),
    register!(hrnet_w18_ssld, HRNET_W18_SSLD),
    register!(hrnet_w48_ssld, HRNET_W48_SSLD),
];

// ---------------------------------------------------------------- tests

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_sgd_lowers_loss, random_images};

    #[test]
    fn upsampling_repeats_pixels_and_sums_gradients_over_blocks() {
        let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [1, 1, 3, 2]).unwrap().var();
        let y = upsample_nearest(&x, 2).unwrap();
        assert_eq!(y.dims(), [1, 2, 6, 2]);
        // row 0 and row 1 both read input row 0; columns 2w, 2w+1 read column w
        let want = [1.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 4.0, 5.0, 6.0, 5.0, 6.0];
        assert_eq!(y.data()[..12], want);
        assert_eq!(y.data()[12..], want);
        // loss = sum(y * r): the gradient of input pixel p is the sum of r over its 2x2 block
        let r = Tensor::from_vec((0..24).map(|i| i as f32 * 0.5).collect(), [1, 2, 6, 2]).unwrap();
        let g = y.mul(&r).unwrap().sum().backward().unwrap();
        let gx = g.get(&x).unwrap();
        for w in 0..3 {
            for c in 0..2 {
                let s: f32 = [(0, 2 * w), (0, 2 * w + 1), (1, 2 * w), (1, 2 * w + 1)]
                    .iter()
                    .map(|&(yy, xx)| r.data()[(yy * 6 + xx) * 2 + c])
                    .sum();
                assert!((gx.data()[w * 2 + c] - s).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn branches_fuse_and_the_small_net_trains() {
        let mut m = hrnet_w18_small(ZooOpts::new().with_num_classes(10).with_seed(4)).unwrap();
        let x = random_images(1, 64, 1);
        assert_eq!(m.forward_features(&x).unwrap().dims(), [1, 2, 2, 2048]);
        // the stride-32 branch reaches the stride-4 output through an 8x upsampling
        assert_eq!(m.params().by_key("stage4.0.fuse_layers.0.3.0.weight").unwrap().torch_shape(), vec![16, 128, 1, 1]);
        assert_sgd_lowers_loss(&mut m);
    }
}
