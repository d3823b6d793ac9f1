//! Dual Path Networks (Chen et al. 2017, "Dual Path Networks"), as timm's `dpn.py` builds
//! them for cypw's MXNet weights: pre-activation (norm, activation, conv) bottlenecks whose
//! output feeds two paths at once, a residual path of fixed width that is summed as in a
//! ResNet and a dense path that grows by `inc` channels per block as in a DenseNet. Both
//! travel as one tensor, residual channels first; the first block of each stage projects
//! the input to the new widths. A final norm and activation, global average and a 1x1
//! convolution as classifier (`classifier.weight` is `[classes, c, 1, 1]`).

use crate::Model;
use crate::error::{Result, ZooError};
use crate::layers::{BatchNorm2d, Conv2d, ConvBnAct, ConvOpts, dropout, max_pool};
use crate::model::{Architecture, ModelArgs, ZooOpts, build};
use crate::pretrained::PretrainedCfg;
use crate::registry::{ModelEntry, register};
use convnet_nn::context::Cx;
use convnet_nn::store::Vb;
use convnet_tensor::{Activation, Tensor};

/// Every norm of a DPN uses the MXNet epsilon.
const EPS: f32 = 1e-3;

// ---------------------------------------------------------------- blocks

/// timm's `BnActConv2d`: norm and activation before the convolution, so the norm cannot be
/// folded into it.
#[derive(Debug)]
struct BnActConv {
    bn: BatchNorm2d,
    conv: Conv2d,
}

impl BnActConv {
    fn new(vb: &Vb, cin: usize, cout: usize, k: usize, o: ConvOpts, act: Activation) -> Self {
        BnActConv {
            bn: BatchNorm2d::new(&vb.pp("bn"), cin, EPS, act),
            conv: Conv2d::square(&vb.pp("conv"), cin, cout, k, o),
        }
    }

    fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        self.conv.forward(cx, &self.bn.forward(cx, x)?)
    }
}

/// How a block's last 1x1 stage makes the residual update and the new dense channels.
#[derive(Debug)]
enum Expand {
    /// One conv to `res + inc` channels, split after (`c1x1_c`).
    Joint(BnActConv),
    /// The `b` variants: one norm (`c1x1_c.bn`), then separate convs for the residual
    /// (`c1x1_c1`) and dense (`c1x1_c2`) outputs.
    Separate { bn: BatchNorm2d, res: Conv2d, dense: Conv2d },
}

/// timm's `DualPathBlock` (its `block_type`: `proj` and `down` have a projection, the
/// latter with stride 2; `normal` takes its input as both paths).
#[derive(Debug)]
struct DualPathBlock {
    path: String,
    /// `c1x1_w_s1` (stride 1) or `c1x1_w_s2` (stride 2): the input to `res + 2 * inc`.
    proj: Option<BnActConv>,
    c1x1_a: BnActConv,
    c3x3_b: BnActConv,
    c1x1_c: Expand,
    /// Width of the residual path (`num_1x1_c`).
    res: usize,
}

/// Widths of one DPN stage's blocks.
#[derive(Clone, Copy, Debug)]
struct StageWidths {
    /// Bottleneck width (`num_1x1_a == num_3x3_b`).
    mid: usize,
    /// Residual path width (`num_1x1_c`).
    res: usize,
    /// Dense channels added per block.
    inc: usize,
    groups: usize,
}

impl DualPathBlock {
    /// `proj_stride`: `Some(1 | 2)` for a stage's first block, `None` for the others.
    fn new(vb: &Vb, cin: usize, w: StageWidths, proj_stride: Option<usize>, b: bool, act: Activation) -> Self {
        let stride = proj_stride.unwrap_or(1);
        let proj = proj_stride.map(|s| {
            let key = if s == 2 { "c1x1_w_s2" } else { "c1x1_w_s1" };
            BnActConv::new(&vb.pp(key), cin, w.res + 2 * w.inc, 1, ConvOpts::stride(s), act)
        });
        let c1x1_a = BnActConv::new(&vb.pp("c1x1_a"), cin, w.mid, 1, ConvOpts::default(), act);
        let c3x3_b =
            BnActConv::new(&vb.pp("c3x3_b"), w.mid, w.mid, 3, ConvOpts::stride(stride).with_groups(w.groups), act);
        let c1x1_c = if b {
            Expand::Separate {
                bn: BatchNorm2d::new(&vb.pp("c1x1_c").pp("bn"), w.mid, EPS, act),
                res: Conv2d::square(&vb.pp("c1x1_c1"), w.mid, w.res, 1, ConvOpts::default()),
                dense: Conv2d::square(&vb.pp("c1x1_c2"), w.mid, w.inc, 1, ConvOpts::default()),
            }
        } else {
            Expand::Joint(BnActConv::new(&vb.pp("c1x1_c"), w.mid, w.res + w.inc, 1, ConvOpts::default(), act))
        };
        DualPathBlock { path: vb.prefix().to_string(), proj, c1x1_a, c3x3_b, c1x1_c, res: w.res }
    }

    /// `x: [n, h, w, res + d]` (`d` dense channels so far) -> `[n, h', w', res + d + inc]`:
    /// `[residual + update, dense, new dense]`.
    fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let paths = match &self.proj {
            Some(p) => p.forward(cx, x)?,
            None => x.clone(),
        };
        let y = self.c3x3_b.forward(cx, &self.c1x1_a.forward(cx, x)?)?;
        let r = self.res;
        let (update, new_dense) = match &self.c1x1_c {
            Expand::Joint(c) => {
                let y = c.forward(cx, &y)?;
                let c = y.dims()[3];
                (y.narrow(3, 0, r)?, y.narrow(3, r, c - r)?)
            }
            Expand::Separate { bn, res, dense } => {
                let y = bn.forward(cx, &y)?;
                (res.forward(cx, &y)?, dense.forward(cx, &y)?)
            }
        };
        let c = paths.dims()[3];
        let residual = paths.narrow(3, 0, r)?.add(&update)?;
        let dense = paths.narrow(3, r, c - r)?;
        let y = Tensor::concat(&[&residual, &dense, &new_dense], 3)?;
        cx.record(&self.path, "DualPathBlock", &y);
        Ok(y)
    }
}

// ---------------------------------------------------------------- model

/// What distinguishes one DPN from another (timm's `DPN` arguments).
#[derive(Clone, Debug, PartialEq)]
pub struct DpnConfig {
    /// Blocks per stage (`k_sec`).
    pub k_sec: [usize; 4],
    /// Dense channels added per block, per stage (`inc_sec`).
    pub inc_sec: [usize; 4],
    /// Bottleneck width of the first stage (`k_r`; doubles per stage).
    pub k_r: usize,
    /// Groups of the 3x3 convs.
    pub groups: usize,
    /// Small stem (3x3 instead of 7x7) and residual widths a quarter as wide (DPN-68, -48).
    pub small: bool,
    /// Stem width.
    pub num_init_features: usize,
    /// Separate residual and dense output convs (the `b` variants).
    pub b: bool,
    /// Activation of every norm.
    pub act: Activation,
    /// Classes (0: no classifier).
    pub num_classes: usize,
    /// Input channels.
    pub in_chans: usize,
    /// Dropout before the classifier.
    pub drop_rate: f32,
}

impl From<&ModelArgs> for DpnConfig {
    fn from(a: &ModelArgs) -> Self {
        DpnConfig {
            k_sec: [3, 4, 20, 3],
            inc_sec: [16, 32, 24, 128],
            k_r: 96,
            groups: 32,
            small: false,
            num_init_features: 64,
            b: false,
            act: Activation::Relu,
            num_classes: a.num_classes,
            in_chans: a.in_chans,
            drop_rate: a.drop_rate,
        }
    }
}

/// DPN: `features.conv1_1.{conv,bn}`, `features.conv{s}_{j}.*` (stages 2..5),
/// `features.conv5_bn_ac.bn`, `classifier` (a 1x1 conv with bias).
#[derive(Debug)]
pub struct Dpn {
    stem: ConvBnAct,
    blocks: Vec<DualPathBlock>,
    final_norm: BatchNorm2d,
    classifier: Option<Conv2d>,
    drop_rate: f32,
    num_features: usize,
    num_classes: usize,
}

impl Dpn {
    /// Builds the network under `vb`.
    pub fn new(vb: &Vb, cfg: DpnConfig) -> Result<Self> {
        if cfg.groups == 0 {
            return Err(ZooError::arg("groups", "must be at least 1"));
        }
        let f = vb.pp("features");
        let stem_k = if cfg.small { 3 } else { 7 };
        let stem = ConvBnAct::timm(
            &f.pp("conv1_1"),
            cfg.in_chans,
            cfg.num_init_features,
            stem_k,
            ConvOpts::stride(2),
            EPS,
            cfg.act,
        );
        let bw_factor = if cfg.small { 1 } else { 4 };
        let mut cin = cfg.num_init_features;
        let mut blocks = Vec::new();
        for (s, (&depth, &inc)) in cfg.k_sec.iter().zip(&cfg.inc_sec).enumerate() {
            let base = 64 << s;
            let mid = cfg.k_r * base / 64;
            if !mid.is_multiple_of(cfg.groups) {
                return Err(ZooError::arg(
                    "k_r",
                    format!("width {mid} of stage {} not divisible by {} groups", s + 2, cfg.groups),
                ));
            }
            let w = StageWidths { mid, res: base * bw_factor, inc, groups: cfg.groups };
            for j in 1..=depth {
                let proj = (j == 1).then_some(if s == 0 { 1 } else { 2 });
                let vbb = f.pp(format!("conv{}_{j}", s + 2));
                blocks.push(DualPathBlock::new(&vbb, cin, w, proj, cfg.b, cfg.act));
                cin = if j == 1 { w.res + 3 * inc } else { cin + inc };
            }
        }
        let final_norm = BatchNorm2d::new(&f.pp("conv5_bn_ac").pp("bn"), cin, EPS, cfg.act);
        let classifier = Self::classifier(vb, cin, cfg.num_classes);
        Ok(Dpn {
            stem,
            blocks,
            final_norm,
            classifier,
            drop_rate: cfg.drop_rate,
            num_features: cin,
            num_classes: cfg.num_classes,
        })
    }

    /// timm's `create_classifier(use_conv=True)`: a 1x1 conv with bias.
    fn classifier(vb: &Vb, c: usize, num_classes: usize) -> Option<Conv2d> {
        (num_classes > 0)
            .then(|| Conv2d::square(&vb.pp("classifier"), c, num_classes, 1, ConvOpts::default().with_bias(true)))
    }
}

impl Architecture for Dpn {
    fn forward_features(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let x = self.stem.forward(cx, x)?;
        cx.record("features.conv1_1", "ConvNormAct", &x);
        let mut x = max_pool(&x, 3, 2, 1, false)?;
        cx.record("features.conv1_pool", "MaxPool2d", &x);
        for b in &self.blocks {
            x = b.forward(cx, &x)?;
        }
        let x = self.final_norm.forward(cx, &x)?;
        cx.record("features.conv5_bn_ac", "BatchNormAct2d", &x);
        Ok(x)
    }
    fn forward_head(&self, cx: &Cx, x: &Tensor, pre_logits: bool) -> Result<Tensor> {
        let x = if x.rank() == 4 { x.global_avg_pool()? } else { x.clone() };
        let x = dropout(cx, &x, self.drop_rate)?;
        let Some(fc) = self.classifier.as_ref().filter(|_| !pre_logits) else { return Ok(x) };
        let n = x.dims()[0];
        let y = fc.forward(cx, &x.reshape([n, 1, 1, self.num_features])?)?;
        let y = y.reshape([n, self.num_classes])?;
        cx.record("classifier", "Conv2d", &y);
        Ok(y)
    }
    fn num_features(&self) -> usize {
        self.num_features
    }
    fn num_classes(&self) -> usize {
        self.num_classes
    }
    fn reset_classifier(&mut self, vb: &Vb, num_classes: usize) {
        self.classifier = Self::classifier(vb, self.num_features, num_classes);
        self.num_classes = num_classes;
    }
}

// ---------------------------------------------------------------- pretrained configs

/// timm's `IMAGENET_DPN_MEAN`: MXNet's 0-255 means (124, 117, 104) over 255.
const DPN_MEAN: [f64; 3] = [124.0 / 255.0, 117.0 / 255.0, 104.0 / 255.0];
/// timm's `IMAGENET_DPN_STD`: MXNet's scale 0.0167 on the 0-255 input.
const DPN_STD: [f64; 3] = [1.0 / (0.0167 * 255.0); 3];

/// timm's `_cfg` for DPNs: bicubic, crop 0.875, ImageNet mean/std.
const fn cfg(tag: &'static str) -> PretrainedCfg {
    PretrainedCfg::imagenet(tag, "features.conv1_1.conv", "classifier").bicubic()
}
/// The MXNet weights' normalisation.
const fn mx(tag: &'static str) -> PretrainedCfg {
    cfg(tag).norm(DPN_MEAN, DPN_STD)
}

pub(crate) static DPN48B: &[PretrainedCfg] = &[cfg("untrained")];
pub(crate) static DPN68: &[PretrainedCfg] = &[mx("mx_in1k")];
pub(crate) static DPN68B: &[PretrainedCfg] = &[cfg("ra_in1k").crop(0.95).test_size(288), mx("mx_in1k")];
pub(crate) static DPN92: &[PretrainedCfg] = &[mx("mx_in1k")];
pub(crate) static DPN98: &[PretrainedCfg] = &[mx("mx_in1k")];
pub(crate) static DPN131: &[PretrainedCfg] = &[mx("mx_in1k")];
pub(crate) static DPN107: &[PretrainedCfg] = &[mx("mx_in1k")];

// ---------------------------------------------------------------- entry points

fn dpn(arch: &'static str, opts: ZooOpts, f: impl FnOnce(DpnConfig) -> DpnConfig) -> Result<Model> {
    build(arch, opts, |vb, a| Ok(Box::new(Dpn::new(vb, f(a.into()))?)))
}

/// The small DPNs' common settings (DPN-48b, -68, -68b): 3x3 stem of 10 channels,
/// quarter-width residual paths.
fn small(c: DpnConfig) -> DpnConfig {
    DpnConfig { small: true, num_init_features: 10, k_r: 128, groups: 32, inc_sec: [16, 32, 32, 64], ..c }
}

/// DPN-48b (SiLU activations; untrained in timm).
pub fn dpn48b(opts: ZooOpts) -> Result<Model> {
    dpn("dpn48b", opts, |c| DpnConfig { b: true, k_sec: [3, 4, 6, 3], act: Activation::Silu, ..small(c) })
}
/// DPN-68.
pub fn dpn68(opts: ZooOpts) -> Result<Model> {
    dpn("dpn68", opts, |c| DpnConfig { k_sec: [3, 4, 12, 3], ..small(c) })
}
/// DPN-68b: DPN-68 with separate residual and dense output convs.
pub fn dpn68b(opts: ZooOpts) -> Result<Model> {
    dpn("dpn68b", opts, |c| DpnConfig { b: true, k_sec: [3, 4, 12, 3], ..small(c) })
}
/// DPN-92.
pub fn dpn92(opts: ZooOpts) -> Result<Model> {
    dpn("dpn92", opts, |c| DpnConfig {
        num_init_features: 64,
        k_r: 96,
        groups: 32,
        k_sec: [3, 4, 20, 3],
        inc_sec: [16, 32, 24, 128],
        ..c
    })
}
/// DPN-98.
pub fn dpn98(opts: ZooOpts) -> Result<Model> {
    dpn("dpn98", opts, |c| DpnConfig {
        num_init_features: 96,
        k_r: 160,
        groups: 40,
        k_sec: [3, 6, 20, 3],
        inc_sec: [16, 32, 32, 128],
        ..c
    })
}
/// DPN-107.
pub fn dpn107(opts: ZooOpts) -> Result<Model> {
    dpn("dpn107", opts, |c| DpnConfig {
        num_init_features: 128,
        k_r: 200,
        groups: 50,
        k_sec: [4, 8, 20, 3],
        inc_sec: [20, 64, 64, 128],
        ..c
    })
}
/// DPN-131.
pub fn dpn131(opts: ZooOpts) -> Result<Model> {
    dpn("dpn131", opts, |c| DpnConfig {
        num_init_features: 128,
        k_r: 160,
        groups: 40,
        k_sec: [4, 8, 28, 3],
        inc_sec: [16, 32, 32, 128],
        ..c
    })
}

// ---------------------------------------------------------------- registry

/// The registered variants of this family, each one line (`name`, pretrained configs).
pub(crate) static MODELS: &[ModelEntry] = &[
    register!(dpn48b, DPN48B),
    register!(dpn68, DPN68),
    register!(dpn68b, DPN68B),
    register!(dpn92, DPN92),
    register!(dpn98, DPN98),
    register!(dpn107, DPN107),
    register!(dpn131, DPN131),
];

// ---------------------------------------------------------------- tests

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_sgd_lowers_loss, random_images};

    #[test]
    fn paths_grow_by_inc_and_the_head_is_a_1x1_conv() {
        let mut m = dpn68(ZooOpts::new().with_num_classes(7)).unwrap();
        // the last stage (3 blocks): residual 512, dense 3 * 64 from its projection + 64 per later block
        assert_eq!(m.num_features(), 512 + 3 * 64 + 2 * 64);
        let x = random_images(2, 64, 1);
        let f = m.forward_features(&x).unwrap();
        assert_eq!(f.dims(), [2, 2, 2, 832]);
        assert_eq!(m.forward_head(&f, true).unwrap().dims(), [2, 832]);
        assert_eq!(m.forward(&x).unwrap().dims(), [2, 7]);
        assert_eq!(m.params().by_key("classifier.weight").unwrap().torch_shape(), vec![7, 832, 1, 1]);
        m.reset_classifier(0, 3);
        assert_eq!(m.forward(&x).unwrap().dims(), [2, 832]);
        assert!(m.params().by_key("classifier.weight").is_none());
    }

    #[test]
    fn the_b_variant_trains() {
        // dpn48b: separate residual and dense convs, SiLU; gradients flow through the
        // channel slices of both paths
        let mut m = dpn48b(ZooOpts::new().with_num_classes(10).with_seed(5)).unwrap();
        assert_sgd_lowers_loss(&mut m);
    }

    #[test]
    fn bad_widths_are_errors() {
        let a = ModelArgs { num_classes: 10, in_chans: 3, drop_rate: 0.0, drop_path_rate: 0.0 };
        let store = std::cell::RefCell::new(convnet_nn::store::Params::new());
        let vb = Vb::root(&store, 0);
        let err = Dpn::new(&vb, DpnConfig { groups: 7, ..(&a).into() }).unwrap_err();
        assert!(err.to_string().contains("groups"), "{err}");
    }
}
