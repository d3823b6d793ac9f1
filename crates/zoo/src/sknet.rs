//! Selective Kernel Networks (Li et al. 2019, "Selective Kernel Networks") as timm's
//! `sknet.py` builds them: a [`ResNet`] whose blocks replace a 3x3 conv by a selective
//! kernel conv (timm's `layers/selective_kernel.py`). Two paths, a 3x3 conv and a 3x3 conv
//! of dilation 2 (a 5x5 field), each with its norm and ReLU; their sum is pooled, squeezed
//! through a bias-free 1x1 conv, a norm and a ReLU, and expanded to one logit per path and
//! channel; a softmax over the paths weights the paths' outputs, which are summed. With
//! `split_input` (timm's default) each path sees only its share of the input channels.

use crate::Model;
use crate::attention::Attention;
use crate::error::Result;
use crate::layers::{BatchNorm2d, Conv2d, ConvBnAct, ConvOpts, drop_path, make_divisible};
use crate::model::{ZooOpts, build};
use crate::pretrained::PretrainedCfg;
use crate::registry::{ModelEntry, register};
use crate::resnet::{BlockArgs, BlockFactory, BlockType, Downsample, ResNet, ResNetConfig, ResidualBlock, StemType};
use convnet_nn::context::Cx;
use convnet_nn::store::Vb;
use convnet_tensor::{Activation, Tensor};
use std::sync::Arc;

const EPS: f32 = 1e-5;

// ---------------------------------------------------------------- selective kernel

/// The options of timm's `SelectiveKernel` that the variants set (`sk_kwargs`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SkArgs {
    /// Attention width per output channel (`rd_ratio`).
    pub rd_ratio: f64,
    /// The attention width is rounded to a multiple of this (`rd_divisor`).
    pub rd_divisor: usize,
    /// Each path convolves its own share of the input channels.
    pub split_input: bool,
}

impl SkArgs {
    /// timm's `SelectiveKernel` defaults: ratio 1/16, divisor 8, split input.
    pub const DEFAULT: SkArgs = SkArgs { rd_ratio: 1.0 / 16.0, rd_divisor: 8, split_input: true };
}

/// timm's `SelectiveKernel` with its `SelectiveKernelAttn` (keys `paths.{0,1}.{conv,bn}`,
/// `attn.fc_reduce`, `attn.bn`, `attn.fc_select`).
#[derive(Debug)]
struct SelectiveKernel {
    paths: Vec<ConvBnAct>,
    split_input: bool,
    fc_reduce: Conv2d,
    bn: BatchNorm2d,
    fc_select: Conv2d,
    out: usize,
}

impl SelectiveKernel {
    fn new(vb: &Vb, cin: usize, out: usize, stride: usize, groups: usize, sk: SkArgs) -> Result<Self> {
        const PATHS: usize = 2;
        if sk.split_input && !cin.is_multiple_of(PATHS) {
            return Err(crate::ZooError::arg(
                "SelectiveKernel",
                format!("{cin} input channels do not split evenly over {PATHS} paths"),
            ));
        }
        let path_in = if sk.split_input { cin / PATHS } else { cin };
        // kernels [3, 5] kept as 3x3 with dilations [1, 2] (timm's keep_3x3)
        let paths = (0..PATHS)
            .map(|i| {
                let o = ConvOpts { dilation: i + 1, ..ConvOpts::stride(stride).with_groups(groups.min(out)) };
                ConvBnAct::timm(&vb.pp("paths").pp(i), path_in, out, 3, o, EPS, Activation::Relu)
            })
            .collect();
        let rd = make_divisible(out as f64 * sk.rd_ratio, sk.rd_divisor, None);
        let a = vb.pp("attn");
        Ok(SelectiveKernel {
            paths,
            split_input: sk.split_input,
            fc_reduce: Conv2d::square(&a.pp("fc_reduce"), out, rd, 1, ConvOpts::default()),
            bn: BatchNorm2d::new(&a.pp("bn"), rd, EPS, Activation::Relu),
            fc_select: Conv2d::square(&a.pp("fc_select"), rd, out * PATHS, 1, ConvOpts::default()),
            out,
        })
    }

    /// `x: [n, h, w, in] -> [n, h / stride, w / stride, out]`.
    fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let p = self.paths.len();
        let inputs = if self.split_input { x.chunk(3, p)? } else { vec![x.clone(); p] };
        let ys = self.paths.iter().zip(&inputs).map(|(c, x)| c.forward(cx, x)).collect::<Result<Vec<_>>>()?;
        // the mean of the paths' sum is the sum of their means
        let mut s = ys[0].global_avg_pool()?;
        for y in &ys[1..] {
            s = s.add(&y.global_avg_pool()?)?;
        }
        let s = self.bn.forward(cx, &self.fc_reduce.forward_pooled(cx, &s)?)?;
        // logits `[n, paths * out]` in (path, channel) order, a softmax over the paths
        let n = s.dims()[0];
        let a = self.fc_select.forward_pooled(cx, &s)?.reshape(vec![n, p, self.out])?.softmax_axis(1)?;
        let a = a.reshape(vec![n, p * self.out])?;
        let mut out: Option<Tensor> = None;
        for (i, y) in ys.into_iter().enumerate() {
            let w = y.mul_channels(&a.narrow(1, i * self.out, self.out)?)?;
            out = Some(match out {
                Some(o) => o.add(&w)?,
                None => w,
            });
        }
        Ok(out.expect("two paths"))
    }
}

// ---------------------------------------------------------------- blocks

/// timm's `SelectiveKernelBasic` (`conv1` selective kernel, `conv2` 3x3) or
/// `SelectiveKernelBottleneck` (`conv1` 1x1, `conv2` selective kernel, `conv3` 1x1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SkBlock {
    /// Bottleneck (expansion 4) rather than basic (expansion 1).
    pub bottleneck: bool,
    /// The selective kernel's options.
    pub sk: SkArgs,
}

#[derive(Debug)]
struct SkResidual {
    path: String,
    kind: &'static str,
    pre: Option<ConvBnAct>,
    sk: SelectiveKernel,
    last: ConvBnAct,
    attn: Option<Attention>,
    downsample: Option<Downsample>,
    drop_path: f32,
}

impl BlockFactory for SkBlock {
    fn expansion(&self) -> usize {
        if self.bottleneck { 4 } else { 1 }
    }

    fn build(&self, a: BlockArgs<'_>) -> Result<Box<dyn ResidualBlock>> {
        let (vb, cfg) = (a.vb, a.cfg);
        let outplanes = a.planes * self.expansion();
        let reduce = cfg.block_reduce_first.max(1);
        let lin = Activation::Linear;
        let (kind, pre, sk, last) = if self.bottleneck {
            let width = a.planes * cfg.base_width / 64 * cfg.cardinality;
            let first = width / reduce;
            let pre =
                ConvBnAct::timm(&vb.pp("conv1"), a.inplanes, first, 1, ConvOpts::default(), EPS, Activation::Relu);
            let sk = SelectiveKernel::new(&vb.pp("conv2"), first, width, a.stride, cfg.cardinality, self.sk)?;
            let last = ConvBnAct::timm(&vb.pp("conv3"), width, outplanes, 1, ConvOpts::default(), EPS, lin);
            ("SelectiveKernelBottleneck", Some(pre), sk, last)
        } else {
            if cfg.cardinality != 1 || cfg.base_width != 64 {
                return Err(crate::ZooError::arg(
                    "SelectiveKernelBasic",
                    format!("takes cardinality 1 and base width 64, got {} and {}", cfg.cardinality, cfg.base_width),
                ));
            }
            let first = a.planes / reduce;
            let sk = SelectiveKernel::new(&vb.pp("conv1"), a.inplanes, first, a.stride, 1, self.sk)?;
            let last = ConvBnAct::timm(&vb.pp("conv2"), first, outplanes, 3, ConvOpts::default(), EPS, lin);
            ("SelectiveKernelBasic", None, sk, last)
        };
        Ok(Box::new(SkResidual {
            path: vb.prefix().to_string(),
            kind,
            pre,
            sk,
            last,
            attn: cfg.attn_layer.build(&vb.pp("se"), outplanes),
            downsample: a.downsample,
            drop_path: a.drop_path,
        }))
    }
}

impl ResidualBlock for SkResidual {
    fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let shortcut = match &self.downsample {
            Some(d) => d.forward(cx, x)?,
            None => x.clone(),
        };
        let y = match &self.pre {
            Some(c) => c.forward(cx, x)?,
            None => x.clone(),
        };
        let y = self.sk.forward(cx, &y)?;
        let drop = cx.training() && self.drop_path > 0.0;
        let y = if self.attn.is_none() && !drop {
            self.last.forward_add(cx, &y, &shortcut, Activation::Relu)?
        } else {
            let mut y = self.last.forward(cx, &y)?;
            if let Some(attn) = &self.attn {
                y = attn.forward(cx, y)?;
            }
            drop_path(cx, &y, self.drop_path)?.add(&shortcut)?.relu()
        };
        cx.record(&self.path, self.kind, &y);
        Ok(y)
    }
}

// ---------------------------------------------------------------- pretrained configs

/// timm's `_cfg` for SKNets: bicubic, crop 0.875.
const fn sk(tag: &'static str) -> PretrainedCfg {
    PretrainedCfg::imagenet(tag, "conv1", "fc").bicubic()
}

pub(crate) static SKRESNET18: &[PretrainedCfg] = &[sk("ra_in1k")];
pub(crate) static SKRESNET34: &[PretrainedCfg] = &[sk("ra_in1k")];
pub(crate) static SKRESNET50: &[PretrainedCfg] = &[sk("untrained")];
pub(crate) static SKRESNET50D: &[PretrainedCfg] = &[{
    let mut c = sk("untrained");
    c.first_conv = "conv1.0";
    c
}];
pub(crate) static SKRESNEXT50_32X4D: &[PretrainedCfg] = &[sk("ra_in1k")];

// ---------------------------------------------------------------- entry points

/// The split-input attention of the basic variants: ratio 1/8, divisor 16.
const BASIC_SK: SkArgs = SkArgs { rd_ratio: 1.0 / 8.0, rd_divisor: 16, split_input: true };

fn skresnet(
    arch: &'static str,
    opts: ZooOpts,
    layers: [usize; 4],
    block: SkBlock,
    f: fn(&mut ResNetConfig),
) -> Result<Model> {
    build(arch, opts, |vb, a| {
        let mut cfg = ResNetConfig { layers, block: BlockType::Custom(Arc::new(block)), ..a.into() };
        f(&mut cfg);
        Ok(Box::new(ResNet::new(vb, cfg)?))
    })
}

/// SK-ResNet-18 (11.96M params): basic blocks with split-input selective kernels.
pub fn skresnet18(opts: ZooOpts) -> Result<Model> {
    skresnet("skresnet18", opts, [2, 2, 2, 2], SkBlock { bottleneck: false, sk: BASIC_SK }, |_| ())
}
/// SK-ResNet-34.
pub fn skresnet34(opts: ZooOpts) -> Result<Model> {
    skresnet("skresnet34", opts, [3, 4, 6, 3], SkBlock { bottleneck: false, sk: BASIC_SK }, |_| ())
}
/// SK-ResNet-50 (bottleneck blocks, split-input selective kernels).
pub fn skresnet50(opts: ZooOpts) -> Result<Model> {
    skresnet("skresnet50", opts, [3, 4, 6, 3], SkBlock { bottleneck: true, sk: SkArgs::DEFAULT }, |_| ())
}
/// SK-ResNet-50-D: deep 32-wide stem and average-pool shortcuts.
pub fn skresnet50d(opts: ZooOpts) -> Result<Model> {
    skresnet("skresnet50d", opts, [3, 4, 6, 3], SkBlock { bottleneck: true, sk: SkArgs::DEFAULT }, |c| {
        c.stem_type = StemType::Deep;
        c.stem_width = 32;
        c.avg_down = true;
    })
}
/// SK-ResNeXt-50 32x4d: the SKNet-50 of the paper (whole input to both paths).
pub fn skresnext50_32x4d(opts: ZooOpts) -> Result<Model> {
    let sk = SkArgs { rd_ratio: 1.0 / 16.0, rd_divisor: 32, split_input: false };
    skresnet("skresnext50_32x4d", opts, [3, 4, 6, 3], SkBlock { bottleneck: true, sk }, |c| {
        c.cardinality = 32;
        c.base_width = 4;
    })
}

// ---------------------------------------------------------------- registry

/// The registered variants of this family, each one line (`name`, pretrained configs).
pub(crate) static MODELS: &[ModelEntry] = &[
    register!(skresnet18, SKRESNET18),
    register!(skresnet34, SKRESNET34),
    register!(skresnet50, SKRESNET50),
    register!(skresnet50d, SKRESNET50D),
    register!(skresnext50_32x4d, SKRESNEXT50_32X4D),
];
