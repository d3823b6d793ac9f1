//! Big Transfer (BiT) ResNet-V2 (Kolesnikov et al. 2020, "Big Transfer (BiT): General
//! Visual Representation Learning"), as timm's `resnetv2.py` builds its `_bit` variants:
//! pre-activation bottlenecks (He et al. 2016, "Identity Mappings in Deep Residual
//! Networks") whose norms are group norms (32 groups) and whose convolutions are
//! weight-standardised ([`StdConv2d`], Qiao et al. 2019), widened by an integer factor. The
//! stem is a 7x7 stride-2 conv, zero padding of one pixel and an unpadded 3x3 max pool (the
//! "fixed" approximation of TensorFlow's SAME pooling); a final group norm and ReLU precede
//! a 1x1-conv classifier (`head.fc.weight` is `[classes, c, 1, 1]`).

use crate::Model;
use crate::error::{Result, ZooError};
use crate::layers::{Conv2d, ConvClassifierHead, ConvOpts, drop_path, make_divisible, max_pool};
use crate::model::{Architecture, ModelArgs, ZooOpts, build};
use crate::pretrained::PretrainedCfg;
use crate::registry::{ModelEntry, register};
use convnet_nn::context::Cx;
use convnet_nn::store::{Init, Layout, ParamId, Params, Vb};
use convnet_tensor::{Pad2d, PadMode, Tensor};
use std::sync::Mutex;

/// BiT's weight-standardisation epsilon (timm's `StdConv2d` default is 1e-6).
const STD_EPS: f32 = 1e-8;
/// Group norm epsilon (PyTorch's default).
const GN_EPS: f32 = 1e-5;
/// Groups of every group norm.
const GROUPS: usize = 32;

// ---------------------------------------------------------------- layers

/// timm's `StdConv2d`: a bias-free conv whose kernel is standardised per output channel
/// (zero mean, unit biased variance over input channels and taps, plus `eps`) before use.
/// In training the standardisation is part of the graph, so gradients reach the raw
/// kernel; in eval mode the standardised kernel is computed once per store version.
#[derive(Debug)]
pub struct StdConv2d {
    /// The raw convolution (key `weight`).
    pub conv: Conv2d,
    /// Added to each output channel's kernel variance.
    pub eps: f32,
    cache: Mutex<Option<(u64, Tensor)>>,
}

impl StdConv2d {
    /// A `k x k` conv `cin -> cout` under `vb`.
    pub fn new(vb: &Vb, cin: usize, cout: usize, k: usize, o: ConvOpts, eps: f32) -> Self {
        StdConv2d { conv: Conv2d::square(vb, cin, cout, k, o), eps, cache: Mutex::new(None) }
    }

    /// `w: [kh, kw, in, out]` standardised over its first three axes.
    fn standardise(w: &Tensor, eps: f32) -> Result<Tensor> {
        let dims = w.dims().to_vec();
        let out = *dims.last().unwrap_or(&1);
        let k = w.numel() / out.max(1);
        // each output channel's kernel as one row, layer-normalised without affine
        let rows = w.reshape([k, out])?.permute(&[1, 0])?;
        let y = rows.layer_norm(None, None, eps)?.permute(&[1, 0])?;
        Ok(y.reshape(dims)?)
    }

    fn eval_weight(&self, params: &Params) -> Result<Tensor> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((v, w)) = cache.as_ref()
            && *v == params.version()
        {
            return Ok(w.clone());
        }
        let w = Self::standardise(&params.get(self.conv.weight).detach(), self.eps)?;
        *cache = Some((params.version(), w.clone()));
        Ok(w)
    }

    /// `x: [n, h, w, in] -> [n, oh, ow, out]`.
    pub fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let w = if cx.training() {
            Self::standardise(&cx.param(self.conv.weight), self.eps)?
        } else {
            self.eval_weight(cx.params())?
        };
        let y = x.conv2d(&w, None, &self.conv.args)?;
        let per_out: usize = w.dims()[..3].iter().product();
        cx.add_macs((y.numel() * per_out) as u64);
        cx.note_output(y.numel());
        Ok(y)
    }
}

/// timm's `GroupNormAct` with ReLU: keys `weight`, `bias`.
#[derive(Debug)]
struct GroupNormRelu {
    weight: ParamId,
    bias: ParamId,
}

impl GroupNormRelu {
    fn new(vb: &Vb, c: usize) -> Self {
        GroupNormRelu {
            weight: vb.param("weight", &[c], Layout::Plain, true, Init::Const(1.0)),
            bias: vb.param("bias", &[c], Layout::Plain, true, Init::Const(0.0)),
        }
    }

    fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        Ok(x.group_norm(GROUPS, &cx.param(self.weight), &cx.param(self.bias), GN_EPS)?.relu())
    }
}

// ---------------------------------------------------------------- blocks

/// timm's `PreActBottleneck`: `x + conv3(gn3(conv2(gn2(conv1(gn1(x))))))`, the shortcut
/// projected from the pre-activated input in a stage's first block (`downsample.conv`).
#[derive(Debug)]
struct PreActBottleneck {
    path: String,
    downsample: Option<StdConv2d>,
    norm1: GroupNormRelu,
    conv1: StdConv2d,
    norm2: GroupNormRelu,
    conv2: StdConv2d,
    norm3: GroupNormRelu,
    conv3: StdConv2d,
    drop_path: f32,
}

impl PreActBottleneck {
    fn new(vb: &Vb, cin: usize, cout: usize, stride: usize, project: bool, drop_path: f32) -> Self {
        let mid = make_divisible(cout as f64 * 0.25, 8, None);
        let d = ConvOpts::default();
        PreActBottleneck {
            path: vb.prefix().to_string(),
            downsample: project.then(|| {
                StdConv2d::new(&vb.pp("downsample").pp("conv"), cin, cout, 1, ConvOpts::stride(stride), STD_EPS)
            }),
            norm1: GroupNormRelu::new(&vb.pp("norm1"), cin),
            conv1: StdConv2d::new(&vb.pp("conv1"), cin, mid, 1, d, STD_EPS),
            norm2: GroupNormRelu::new(&vb.pp("norm2"), mid),
            conv2: StdConv2d::new(&vb.pp("conv2"), mid, mid, 3, ConvOpts::stride(stride), STD_EPS),
            norm3: GroupNormRelu::new(&vb.pp("norm3"), mid),
            conv3: StdConv2d::new(&vb.pp("conv3"), mid, cout, 1, d, STD_EPS),
            drop_path,
        }
    }

    fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let pre = self.norm1.forward(cx, x)?;
        let shortcut = match &self.downsample {
            Some(d) => d.forward(cx, &pre)?,
            None => x.clone(),
        };
        let y = self.conv1.forward(cx, &pre)?;
        let y = self.conv2.forward(cx, &self.norm2.forward(cx, &y)?)?;
        let y = self.conv3.forward(cx, &self.norm3.forward(cx, &y)?)?;
        let y = drop_path(cx, &y, self.drop_path)?.add(&shortcut)?;
        cx.record(&self.path, "PreActBottleneck", &y);
        Ok(y)
    }
}

// ---------------------------------------------------------------- model

/// A BiT ResNet-V2: blocks per stage and the width factor.
#[derive(Clone, Debug, PartialEq)]
pub struct ResNetV2Config {
    /// Bottlenecks per stage.
    pub layers: [usize; 4],
    /// Width multiplier of the stem and every stage (BiT's `x1`, `x3`, ...).
    pub width_factor: usize,
    /// Classes (0: no classifier).
    pub num_classes: usize,
    /// Input channels.
    pub in_chans: usize,
    /// Dropout before the classifier.
    pub drop_rate: f32,
    /// Stochastic depth, constant within a stage and rising linearly from stage to stage
    /// (timm's `stagewise` rates).
    pub drop_path_rate: f32,
}

impl From<&ModelArgs> for ResNetV2Config {
    fn from(a: &ModelArgs) -> Self {
        ResNetV2Config {
            layers: [3, 4, 6, 3],
            width_factor: 1,
            num_classes: a.num_classes,
            in_chans: a.in_chans,
            drop_rate: a.drop_rate,
            drop_path_rate: a.drop_path_rate,
        }
    }
}

/// ResNet-V2: `stem.conv`, `stages.{i}.blocks.{j}`, `norm`, `head.fc`.
#[derive(Debug)]
pub struct ResNetV2 {
    stem: StdConv2d,
    blocks: Vec<PreActBottleneck>,
    norm: GroupNormRelu,
    head: ConvClassifierHead,
}

impl ResNetV2 {
    /// Builds the network under `vb`.
    pub fn new(vb: &Vb, cfg: ResNetV2Config) -> Result<Self> {
        if cfg.width_factor == 0 {
            return Err(ZooError::arg("width_factor", "must be at least 1"));
        }
        let wf = cfg.width_factor as f64;
        let stem_chs = make_divisible(64.0 * wf, 8, None);
        let stem = StdConv2d::new(&vb.pp("stem").pp("conv"), cfg.in_chans, stem_chs, 7, ConvOpts::stride(2), STD_EPS);
        let total = cfg.layers.iter().sum::<usize>().max(1);
        let mut blocks = Vec::new();
        let mut cin = stem_chs;
        for (s, (&depth, base)) in cfg.layers.iter().zip([256.0, 512.0, 1024.0, 2048.0]).enumerate() {
            let cout = make_divisible(base * wf, 8, None);
            // timm's stagewise rates: every block of stage s gets the rate of the stage's first block index
            let first: usize = cfg.layers[..s].iter().sum();
            let dpr = if total > 1 { cfg.drop_path_rate * first as f32 / (total - 1) as f32 } else { 0.0 };
            let st = vb.pp("stages").pp(s).pp("blocks");
            for j in 0..depth {
                let stride = if s > 0 && j == 0 { 2 } else { 1 };
                blocks.push(PreActBottleneck::new(&st.pp(j), cin, cout, stride, j == 0, dpr));
                cin = cout;
            }
        }
        let norm = GroupNormRelu::new(&vb.pp("norm"), cin);
        let head = ConvClassifierHead::new(&vb.pp("head").pp("fc"), cin, cfg.num_classes, cfg.drop_rate);
        Ok(ResNetV2 { stem, blocks, norm, head })
    }
}

impl Architecture for ResNetV2 {
    fn forward_features(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let x = self.stem.forward(cx, x)?;
        let x = x.pad2d(Pad2d::uniform(1), PadMode::Constant(0.0))?;
        let mut x = max_pool(&x, 3, 2, 0, false)?;
        cx.record("stem", "Sequential", &x);
        for b in &self.blocks {
            x = b.forward(cx, &x)?;
        }
        let x = self.norm.forward(cx, &x)?;
        cx.record("norm", "GroupNormAct", &x);
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
        self.head = ConvClassifierHead::new(&vb.pp("head").pp("fc"), h.num_features, num_classes, h.drop_rate);
    }
}

// ---------------------------------------------------------------- pretrained configs

/// timm's `_cfg` for ResNet-V2: Inception mean/std, crop 0.875, bilinear.
const fn cfg(tag: &'static str) -> PretrainedCfg {
    PretrainedCfg::imagenet(tag, "stem.conv", "head.fc").inception_norm()
}
/// The in21k fine-tunes: 448 pixels (480 for 152x4), full crop.
const fn ft(tag: &'static str, size: usize) -> PretrainedCfg {
    cfg(tag).size(size).crop(1.0)
}
/// The in21k backbones (21843 classes).
const fn in21k(tag: &'static str) -> PretrainedCfg {
    cfg(tag).classes(21843)
}

pub(crate) static RESNETV2_50X1_BIT: &[PretrainedCfg] =
    &[cfg("goog_distilled_in1k").bicubic(), ft("goog_in21k_ft_in1k", 448), in21k("goog_in21k")];
pub(crate) static RESNETV2_50X3_BIT: &[PretrainedCfg] = &[ft("goog_in21k_ft_in1k", 448), in21k("goog_in21k")];
pub(crate) static RESNETV2_101X1_BIT: &[PretrainedCfg] = &[ft("goog_in21k_ft_in1k", 448), in21k("goog_in21k")];
pub(crate) static RESNETV2_152X2_BIT: &[PretrainedCfg] = &[
    cfg("goog_teacher_in21k_ft_in1k").bicubic(),
    cfg("goog_teacher_in21k_ft_in1k_384").bicubic().size(384).crop(1.0),
    ft("goog_in21k_ft_in1k", 448),
    in21k("goog_in21k"),
];

// ---------------------------------------------------------------- entry points

fn bit(arch: &'static str, opts: ZooOpts, layers: [usize; 4], width_factor: usize) -> Result<Model> {
    build(arch, opts, |vb, a| Ok(Box::new(ResNetV2::new(vb, ResNetV2Config { layers, width_factor, ..a.into() })?)))
}

/// BiT-M ResNet-50x1 (the default weights: distilled from the 152x2 teacher).
pub fn resnetv2_50x1_bit(opts: ZooOpts) -> Result<Model> {
    bit("resnetv2_50x1_bit", opts, [3, 4, 6, 3], 1)
}
/// BiT-M ResNet-50x3.
pub fn resnetv2_50x3_bit(opts: ZooOpts) -> Result<Model> {
    bit("resnetv2_50x3_bit", opts, [3, 4, 6, 3], 3)
}
/// BiT-M ResNet-101x1.
pub fn resnetv2_101x1_bit(opts: ZooOpts) -> Result<Model> {
    bit("resnetv2_101x1_bit", opts, [3, 4, 23, 3], 1)
}
/// BiT-M ResNet-152x2.
pub fn resnetv2_152x2_bit(opts: ZooOpts) -> Result<Model> {
    bit("resnetv2_152x2_bit", opts, [3, 8, 36, 3], 2)
}

// ---------------------------------------------------------------- registry

/// The registered variants of this family, each one line (`name`, pretrained configs).
pub(crate) static MODELS: &[ModelEntry] = &[
    register!(resnetv2_50x1_bit, RESNETV2_50X1_BIT),
    register!(resnetv2_50x3_bit, RESNETV2_50X3_BIT),
    register!(resnetv2_101x1_bit, RESNETV2_101X1_BIT),
    register!(resnetv2_152x2_bit, RESNETV2_152X2_BIT),
];

// ---------------------------------------------------------------- tests

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_trains, random_images};
    use convnet_nn::context::Mode;

    #[test]
    fn standardised_kernel_has_zero_mean_and_unit_variance_per_output() {
        // [kh, kw, in, out] = [3, 3, 2, 5]: each of the 5 kernels over 18 taps
        let w = Tensor::from_vec((0..90).map(|i| ((i * 37 % 23) as f32 - 7.0) * 0.1).collect(), [3, 3, 2, 5]).unwrap();
        let s = StdConv2d::standardise(&w, 0.0).unwrap();
        let (wd, sd) = (w.data(), s.data());
        for o in 0..5 {
            let raw: Vec<f64> = (0..18).map(|k| wd[k * 5 + o] as f64).collect();
            let mean = raw.iter().sum::<f64>() / 18.0;
            let var = raw.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 18.0;
            for (k, r) in raw.iter().enumerate() {
                let want = (r - mean) / var.sqrt();
                assert!((sd[k * 5 + o] as f64 - want).abs() < 1e-5, "out {o} tap {k}");
            }
        }
    }

    #[test]
    fn cached_eval_kernels_agree_with_the_graph_path() {
        let mut m = resnetv2_50x1_bit(ZooOpts::new().with_num_classes(5)).unwrap();
        let x = random_images(1, 32, 2);
        let eval = m.forward(&x).unwrap();
        // the graph path (train mode without batch statistics: group norm has none)
        let cx = Cx::new(m.params(), Mode::Train, 0);
        let train = m.forward_with(&cx, &x).unwrap();
        for (a, b) in eval.data().iter().zip(train.data()) {
            assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
        }
        m.reset_classifier(3, 1);
        assert_eq!(m.forward(&x).unwrap().dims(), [1, 3]);
        assert_eq!(m.params().by_key("head.fc.weight").unwrap().torch_shape(), vec![3, 2048, 1, 1]);
    }

    /// One block per stage takes a training step: every raw kernel gets its gradient
    /// through the standardisation, the stem's through the zero padding and pool.
    #[test]
    fn a_shallow_bit_trains() {
        let a = ModelArgs { num_classes: 10, in_chans: 3, drop_rate: 0.0, drop_path_rate: 0.0 };
        let store = std::cell::RefCell::new(Params::new());
        let net = ResNetV2::new(&Vb::root(&store, 1), ResNetV2Config { layers: [1, 1, 1, 1], ..(&a).into() }).unwrap();
        assert_trains(&net, store, [2, 33, 33, 3], &["stem.conv.weight", "stages.3.blocks.0.downsample.conv.weight"]);
    }
}
