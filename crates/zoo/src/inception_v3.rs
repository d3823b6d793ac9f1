//! Inception-v3 (Szegedy et al. 2015, "Rethinking the Inception Architecture for Computer
//! Vision"), as timm's `inception_v3.py` (torchvision's layout, auxiliary head off): a
//! stem of valid 3x3 convs and max pools, Inception A/B/C/D/E blocks of parallel conv
//! branches concatenated on channels, factorised 1x7/7x1 and 1x3/3x1 kernels.

use crate::Model;
use crate::checkpoint::StateDict;
use crate::error::Result;
use crate::layers::{ClassifierHead, ConvBnAct, avg_pool, max_pool};
use crate::model::{Architecture, ZooOpts, build};
use crate::pretrained::PretrainedCfg;
use crate::registry::{ModelEntry, register};
use convnet_nn::context::Cx;
use convnet_nn::store::Vb;
use convnet_tensor::Tensor;

const EPS: f32 = 1e-3;

fn bc(
    vb: &Vb,
    name: &str,
    cin: usize,
    cout: usize,
    k: (usize, usize),
    stride: usize,
    pad: (usize, usize),
) -> ConvBnAct {
    ConvBnAct::basic(&vb.pp(name), cin, cout, k, stride, pad, EPS)
}

fn chain(cx: &Cx, convs: &[ConvBnAct], x: &Tensor) -> Result<Tensor> {
    let mut y = x.clone();
    for c in convs {
        y = c.forward(cx, &y)?;
    }
    Ok(y)
}

fn cat(parts: &[Tensor]) -> Result<Tensor> {
    let refs: Vec<&Tensor> = parts.iter().collect();
    Ok(Tensor::concat(&refs, 3)?)
}

/// The five Inception-v3 block types, each a set of branches (built once, so their
/// differing sizes do not matter).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
enum Mixed {
    /// 35x35: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1.
    A { b1: ConvBnAct, b5: Vec<ConvBnAct>, b3: Vec<ConvBnAct>, pool: ConvBnAct },
    /// 35 -> 17: 3x3/2 | 1x1-3x3-3x3/2 | maxpool.
    B { b3: ConvBnAct, b3dbl: Vec<ConvBnAct> },
    /// 17x17: 1x1 | 1x1-1x7-7x1 | 1x1-7x1-1x7-7x1-1x7 | avgpool-1x1.
    C { b1: ConvBnAct, b7: Vec<ConvBnAct>, b7dbl: Vec<ConvBnAct>, pool: ConvBnAct },
    /// 17 -> 8: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool.
    D { b3: Vec<ConvBnAct>, b7x3: Vec<ConvBnAct> },
    /// 8x8: 1x1 | 1x1-(1x3 | 3x1) | 1x1-3x3-(1x3 | 3x1) | avgpool-1x1.
    E {
        b1: ConvBnAct,
        b3_1: ConvBnAct,
        b3_2a: ConvBnAct,
        b3_2b: ConvBnAct,
        d1: ConvBnAct,
        d2: ConvBnAct,
        d3a: ConvBnAct,
        d3b: ConvBnAct,
        pool: ConvBnAct,
    },
}

impl Mixed {
    fn a(vb: &Vb, cin: usize, pool_features: usize) -> Self {
        Mixed::A {
            b1: bc(vb, "branch1x1", cin, 64, (1, 1), 1, (0, 0)),
            b5: vec![
                bc(vb, "branch5x5_1", cin, 48, (1, 1), 1, (0, 0)),
                bc(vb, "branch5x5_2", 48, 64, (5, 5), 1, (2, 2)),
            ],
            b3: vec![
                bc(vb, "branch3x3dbl_1", cin, 64, (1, 1), 1, (0, 0)),
                bc(vb, "branch3x3dbl_2", 64, 96, (3, 3), 1, (1, 1)),
                bc(vb, "branch3x3dbl_3", 96, 96, (3, 3), 1, (1, 1)),
            ],
            pool: bc(vb, "branch_pool", cin, pool_features, (1, 1), 1, (0, 0)),
        }
    }
    fn b(vb: &Vb, cin: usize) -> Self {
        Mixed::B {
            b3: bc(vb, "branch3x3", cin, 384, (3, 3), 2, (0, 0)),
            b3dbl: vec![
                bc(vb, "branch3x3dbl_1", cin, 64, (1, 1), 1, (0, 0)),
                bc(vb, "branch3x3dbl_2", 64, 96, (3, 3), 1, (1, 1)),
                bc(vb, "branch3x3dbl_3", 96, 96, (3, 3), 2, (0, 0)),
            ],
        }
    }
    fn c(vb: &Vb, cin: usize, c7: usize) -> Self {
        Mixed::C {
            b1: bc(vb, "branch1x1", cin, 192, (1, 1), 1, (0, 0)),
            b7: vec![
                bc(vb, "branch7x7_1", cin, c7, (1, 1), 1, (0, 0)),
                bc(vb, "branch7x7_2", c7, c7, (1, 7), 1, (0, 3)),
                bc(vb, "branch7x7_3", c7, 192, (7, 1), 1, (3, 0)),
            ],
            b7dbl: vec![
                bc(vb, "branch7x7dbl_1", cin, c7, (1, 1), 1, (0, 0)),
                bc(vb, "branch7x7dbl_2", c7, c7, (7, 1), 1, (3, 0)),
                bc(vb, "branch7x7dbl_3", c7, c7, (1, 7), 1, (0, 3)),
                bc(vb, "branch7x7dbl_4", c7, c7, (7, 1), 1, (3, 0)),
                bc(vb, "branch7x7dbl_5", c7, 192, (1, 7), 1, (0, 3)),
            ],
            pool: bc(vb, "branch_pool", cin, 192, (1, 1), 1, (0, 0)),
        }
    }
    fn d(vb: &Vb, cin: usize) -> Self {
        Mixed::D {
            b3: vec![
                bc(vb, "branch3x3_1", cin, 192, (1, 1), 1, (0, 0)),
                bc(vb, "branch3x3_2", 192, 320, (3, 3), 2, (0, 0)),
            ],
            b7x3: vec![
                bc(vb, "branch7x7x3_1", cin, 192, (1, 1), 1, (0, 0)),
                bc(vb, "branch7x7x3_2", 192, 192, (1, 7), 1, (0, 3)),
                bc(vb, "branch7x7x3_3", 192, 192, (7, 1), 1, (3, 0)),
                bc(vb, "branch7x7x3_4", 192, 192, (3, 3), 2, (0, 0)),
            ],
        }
    }
    fn e(vb: &Vb, cin: usize) -> Self {
        Mixed::E {
            b1: bc(vb, "branch1x1", cin, 320, (1, 1), 1, (0, 0)),
            b3_1: bc(vb, "branch3x3_1", cin, 384, (1, 1), 1, (0, 0)),
            b3_2a: bc(vb, "branch3x3_2a", 384, 384, (1, 3), 1, (0, 1)),
            b3_2b: bc(vb, "branch3x3_2b", 384, 384, (3, 1), 1, (1, 0)),
            d1: bc(vb, "branch3x3dbl_1", cin, 448, (1, 1), 1, (0, 0)),
            d2: bc(vb, "branch3x3dbl_2", 448, 384, (3, 3), 1, (1, 1)),
            d3a: bc(vb, "branch3x3dbl_3a", 384, 384, (1, 3), 1, (0, 1)),
            d3b: bc(vb, "branch3x3dbl_3b", 384, 384, (3, 1), 1, (1, 0)),
            pool: bc(vb, "branch_pool", cin, 192, (1, 1), 1, (0, 0)),
        }
    }

    fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        match self {
            Mixed::A { b1, b5, b3, pool } => cat(&[
                b1.forward(cx, x)?,
                chain(cx, b5, x)?,
                chain(cx, b3, x)?,
                pool.forward(cx, &avg_pool(x, 3, 1, 1, false, true)?)?,
            ]),
            Mixed::B { b3, b3dbl } => cat(&[b3.forward(cx, x)?, chain(cx, b3dbl, x)?, max_pool(x, 3, 2, 0, false)?]),
            Mixed::C { b1, b7, b7dbl, pool } => cat(&[
                b1.forward(cx, x)?,
                chain(cx, b7, x)?,
                chain(cx, b7dbl, x)?,
                pool.forward(cx, &avg_pool(x, 3, 1, 1, false, true)?)?,
            ]),
            Mixed::D { b3, b7x3 } => cat(&[chain(cx, b3, x)?, chain(cx, b7x3, x)?, max_pool(x, 3, 2, 0, false)?]),
            Mixed::E { b1, b3_1, b3_2a, b3_2b, d1, d2, d3a, d3b, pool } => {
                let t = b3_1.forward(cx, x)?;
                let b3 = cat(&[b3_2a.forward(cx, &t)?, b3_2b.forward(cx, &t)?])?;
                let d = d2.forward(cx, &d1.forward(cx, x)?)?;
                let dbl = cat(&[d3a.forward(cx, &d)?, d3b.forward(cx, &d)?])?;
                cat(&[b1.forward(cx, x)?, b3, dbl, pool.forward(cx, &avg_pool(x, 3, 1, 1, false, true)?)?])
            }
        }
    }
}

/// Inception-v3: `Conv2d_1a_3x3` ... `Mixed_7c` (each `{name}.conv`, `{name}.bn`), `fc`.
#[derive(Debug)]
pub struct InceptionV3 {
    stem: Vec<(&'static str, ConvBnAct)>,
    mixed: Vec<(&'static str, Mixed)>,
    head: ClassifierHead,
}

impl InceptionV3 {
    /// Builds the network under `vb`.
    pub fn new(vb: &Vb, num_classes: usize, in_chans: usize, drop_rate: f32) -> Result<Self> {
        let stem = vec![
            ("Conv2d_1a_3x3", bc(vb, "Conv2d_1a_3x3", in_chans, 32, (3, 3), 2, (0, 0))),
            ("Conv2d_2a_3x3", bc(vb, "Conv2d_2a_3x3", 32, 32, (3, 3), 1, (0, 0))),
            ("Conv2d_2b_3x3", bc(vb, "Conv2d_2b_3x3", 32, 64, (3, 3), 1, (1, 1))),
            ("Conv2d_3b_1x1", bc(vb, "Conv2d_3b_1x1", 64, 80, (1, 1), 1, (0, 0))),
            ("Conv2d_4a_3x3", bc(vb, "Conv2d_4a_3x3", 80, 192, (3, 3), 1, (0, 0))),
        ];
        let mixed = vec![
            ("Mixed_5b", Mixed::a(&vb.pp("Mixed_5b"), 192, 32)),
            ("Mixed_5c", Mixed::a(&vb.pp("Mixed_5c"), 256, 64)),
            ("Mixed_5d", Mixed::a(&vb.pp("Mixed_5d"), 288, 64)),
            ("Mixed_6a", Mixed::b(&vb.pp("Mixed_6a"), 288)),
            ("Mixed_6b", Mixed::c(&vb.pp("Mixed_6b"), 768, 128)),
            ("Mixed_6c", Mixed::c(&vb.pp("Mixed_6c"), 768, 160)),
            ("Mixed_6d", Mixed::c(&vb.pp("Mixed_6d"), 768, 160)),
            ("Mixed_6e", Mixed::c(&vb.pp("Mixed_6e"), 768, 192)),
            ("Mixed_7a", Mixed::d(&vb.pp("Mixed_7a"), 768)),
            ("Mixed_7b", Mixed::e(&vb.pp("Mixed_7b"), 1280)),
            ("Mixed_7c", Mixed::e(&vb.pp("Mixed_7c"), 2048)),
        ];
        let head = ClassifierHead::new(&vb.pp("fc"), 2048, num_classes, drop_rate);
        Ok(InceptionV3 { stem, mixed, head })
    }
}

impl Architecture for InceptionV3 {
    fn forward_features(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for (i, (name, c)) in self.stem.iter().enumerate() {
            x = c.forward(cx, &x)?;
            cx.record(name, "BasicConv2d", &x);
            if i == 2 || i == 4 {
                x = max_pool(&x, 3, 2, 0, false)?;
            }
        }
        for (name, m) in &self.mixed {
            x = m.forward(cx, &x)?;
            cx.record(name, "Inception", &x);
        }
        Ok(x)
    }
    fn forward_head(&self, cx: &Cx, x: &Tensor, pre_logits: bool) -> Result<Tensor> {
        let y = self.head.forward(cx, x, pre_logits)?;
        cx.record("fc", "Linear", &y);
        Ok(y)
    }
    fn num_features(&self) -> usize {
        self.head.num_features
    }
    fn num_classes(&self) -> usize {
        self.head.num_classes
    }
    fn reset_classifier(&mut self, vb: &Vb, num_classes: usize) {
        self.head = ClassifierHead::new(&vb.pp("fc"), self.head.num_features, num_classes, self.head.drop_rate);
    }
    /// torchvision checkpoints carry the auxiliary head, which this model leaves out.
    fn remap_state_dict(&self, sd: &mut StateDict) {
        sd.retain(|k, _| !k.starts_with("AuxLogits."));
    }
}

const fn cfg(tag: &'static str) -> PretrainedCfg {
    PretrainedCfg::imagenet(tag, "Conv2d_1a_3x3.conv", "fc").size(299).pool(8, 8).bicubic().inception_norm()
}
pub(crate) static INCEPTION_V3: &[PretrainedCfg] =
    &[cfg("tv_in1k"), cfg("tf_in1k"), cfg("tf_adv_in1k"), cfg("gluon_in1k")];

/// Inception-v3 (23.8M params, 299x299 input).
pub fn inception_v3(opts: ZooOpts) -> Result<Model> {
    build("inception_v3", opts, |vb, a| Ok(Box::new(InceptionV3::new(vb, a.num_classes, a.in_chans, a.drop_rate)?)))
}

// ---------------------------------------------------------------- registry

/// The registered variants of this family, each one line (`name`, pretrained configs).
pub(crate) static MODELS: &[ModelEntry] = &[register!(inception_v3, INCEPTION_V3)];
