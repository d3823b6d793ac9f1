//! Inception-ResNet-v2 (Szegedy et al. 2016, "Inception-v4, Inception-ResNet and the
//! Impact of Residual Connections on Learning"), as timm's `inception_resnet_v2.py`
//! (Cadene's port of the TensorFlow weights): Inception branches whose concatenation is
//! projected by a biased 1x1 conv, scaled (0.17, 0.10, 0.20) and added to the input.

use crate::Model;
use crate::branches::{Node, conv as bconv};
use crate::error::Result;
use crate::layers::{ClassifierHead, Conv2d, ConvBnAct, ConvOpts, max_pool};
use crate::model::{Architecture, ZooOpts, build};
use crate::pretrained::PretrainedCfg;
use crate::registry::{ModelEntry, register};
use convnet_nn::context::Cx;
use convnet_nn::store::Vb;
use convnet_tensor::Tensor;

const EPS: f32 = 1e-3;

fn c(vb: &Vb, cin: usize, cout: usize, k: (usize, usize), s: usize, p: (usize, usize)) -> Node {
    bconv(vb, cin, cout, k, s, p, EPS)
}
fn c1(vb: &Vb, cin: usize, cout: usize) -> Node {
    c(vb, cin, cout, (1, 1), 1, (0, 0))
}
fn c3(vb: &Vb, cin: usize, cout: usize, s: usize, p: usize) -> Node {
    c(vb, cin, cout, (3, 3), s, (p, p))
}

/// A residual Inception block: `relu(x + scale * conv2d(cat(branches(x))))`.
#[derive(Debug)]
struct ResBlock {
    branches: Node,
    conv2d: Conv2d,
    scale: f32,
    relu: bool,
}

impl ResBlock {
    fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let y = self.conv2d.forward(cx, &self.branches.forward(cx, x)?)?;
        let y = y.scale(self.scale).add(x)?;
        Ok(if self.relu { y.relu() } else { y })
    }
}

fn proj(vb: &Vb, cin: usize, cout: usize) -> Conv2d {
    Conv2d::square(&vb.pp("conv2d"), cin, cout, 1, ConvOpts::default().with_bias(true))
}

fn block35(vb: &Vb) -> ResBlock {
    let (b1, b2) = (vb.pp("branch1"), vb.pp("branch2"));
    ResBlock {
        branches: Node::Cat(vec![
            c1(&vb.pp("branch0"), 320, 32),
            Node::Seq(vec![c1(&b1.pp(0), 320, 32), c3(&b1.pp(1), 32, 32, 1, 1)]),
            Node::Seq(vec![c1(&b2.pp(0), 320, 32), c3(&b2.pp(1), 32, 48, 1, 1), c3(&b2.pp(2), 48, 64, 1, 1)]),
        ]),
        conv2d: proj(vb, 128, 320),
        scale: 0.17,
        relu: true,
    }
}

fn block17(vb: &Vb) -> ResBlock {
    let b1 = vb.pp("branch1");
    ResBlock {
        branches: Node::Cat(vec![
            c1(&vb.pp("branch0"), 1088, 192),
            Node::Seq(vec![
                c1(&b1.pp(0), 1088, 128),
                c(&b1.pp(1), 128, 160, (1, 7), 1, (0, 3)),
                c(&b1.pp(2), 160, 192, (7, 1), 1, (3, 0)),
            ]),
        ]),
        conv2d: proj(vb, 384, 1088),
        scale: 0.10,
        relu: true,
    }
}

fn block8(vb: &Vb, scale: f32, relu: bool) -> ResBlock {
    let b1 = vb.pp("branch1");
    ResBlock {
        branches: Node::Cat(vec![
            c1(&vb.pp("branch0"), 2080, 192),
            Node::Seq(vec![
                c1(&b1.pp(0), 2080, 192),
                c(&b1.pp(1), 192, 224, (1, 3), 1, (0, 1)),
                c(&b1.pp(2), 224, 256, (3, 1), 1, (1, 0)),
            ]),
        ]),
        conv2d: proj(vb, 448, 2080),
        scale,
        relu,
    }
}

#[derive(Debug)]
enum Stage {
    Conv(ConvBnAct),
    MaxPool,
    Mixed(Node),
    Res(Vec<ResBlock>),
}

/// Inception-ResNet-v2: `conv2d_1a` ... `conv2d_7b`, `repeat*`, `block8`, `classif`.
#[derive(Debug)]
pub struct InceptionResnetV2 {
    stages: Vec<(&'static str, Stage)>,
    head: ClassifierHead,
}

fn basic(vb: &Vb, cin: usize, cout: usize, k: usize, s: usize, p: usize) -> ConvBnAct {
    ConvBnAct::basic(vb, cin, cout, (k, k), s, (p, p), EPS)
}

impl InceptionResnetV2 {
    /// Builds the network under `vb`.
    pub fn new(vb: &Vb, num_classes: usize, in_chans: usize, drop_rate: f32) -> Result<Self> {
        let m5 = vb.pp("mixed_5b");
        let (m5b1, m5b2, m5b3) = (m5.pp("branch1"), m5.pp("branch2"), m5.pp("branch3"));
        let mixed_5b = Node::Cat(vec![
            c1(&m5.pp("branch0"), 192, 96),
            Node::Seq(vec![c1(&m5b1.pp(0), 192, 48), c(&m5b1.pp(1), 48, 64, (5, 5), 1, (2, 2))]),
            Node::Seq(vec![c1(&m5b2.pp(0), 192, 64), c3(&m5b2.pp(1), 64, 96, 1, 1), c3(&m5b2.pp(2), 96, 96, 1, 1)]),
            Node::Seq(vec![Node::AvgPool(3, 1, 1, false), c1(&m5b3.pp(1), 192, 64)]),
        ]);
        let m6 = vb.pp("mixed_6a");
        let m6b1 = m6.pp("branch1");
        let mixed_6a = Node::Cat(vec![
            c3(&m6.pp("branch0"), 320, 384, 2, 0),
            Node::Seq(vec![
                c1(&m6b1.pp(0), 320, 256),
                c3(&m6b1.pp(1), 256, 256, 1, 1),
                c3(&m6b1.pp(2), 256, 384, 2, 0),
            ]),
            Node::MaxPool(3, 2, 0, false),
        ]);
        let m7 = vb.pp("mixed_7a");
        let (m7b0, m7b1, m7b2) = (m7.pp("branch0"), m7.pp("branch1"), m7.pp("branch2"));
        let mixed_7a = Node::Cat(vec![
            Node::Seq(vec![c1(&m7b0.pp(0), 1088, 256), c3(&m7b0.pp(1), 256, 384, 2, 0)]),
            Node::Seq(vec![c1(&m7b1.pp(0), 1088, 256), c3(&m7b1.pp(1), 256, 288, 2, 0)]),
            Node::Seq(vec![
                c1(&m7b2.pp(0), 1088, 256),
                c3(&m7b2.pp(1), 256, 288, 1, 1),
                c3(&m7b2.pp(2), 288, 320, 2, 0),
            ]),
            Node::MaxPool(3, 2, 0, false),
        ]);
        let stages = vec![
            ("conv2d_1a", Stage::Conv(basic(&vb.pp("conv2d_1a"), in_chans, 32, 3, 2, 0))),
            ("conv2d_2a", Stage::Conv(basic(&vb.pp("conv2d_2a"), 32, 32, 3, 1, 0))),
            ("conv2d_2b", Stage::Conv(basic(&vb.pp("conv2d_2b"), 32, 64, 3, 1, 1))),
            ("maxpool_3a", Stage::MaxPool),
            ("conv2d_3b", Stage::Conv(basic(&vb.pp("conv2d_3b"), 64, 80, 1, 1, 0))),
            ("conv2d_4a", Stage::Conv(basic(&vb.pp("conv2d_4a"), 80, 192, 3, 1, 0))),
            ("maxpool_5a", Stage::MaxPool),
            ("mixed_5b", Stage::Mixed(mixed_5b)),
            ("repeat", Stage::Res((0..10).map(|i| block35(&vb.pp("repeat").pp(i))).collect())),
            ("mixed_6a", Stage::Mixed(mixed_6a)),
            ("repeat_1", Stage::Res((0..20).map(|i| block17(&vb.pp("repeat_1").pp(i))).collect())),
            ("mixed_7a", Stage::Mixed(mixed_7a)),
            ("repeat_2", Stage::Res((0..9).map(|i| block8(&vb.pp("repeat_2").pp(i), 0.20, true)).collect())),
            ("block8", Stage::Res(vec![block8(&vb.pp("block8"), 1.0, false)])),
            ("conv2d_7b", Stage::Conv(basic(&vb.pp("conv2d_7b"), 2080, 1536, 1, 1, 0))),
        ];
        let head = ClassifierHead::new(&vb.pp("classif"), 1536, num_classes, drop_rate);
        Ok(InceptionResnetV2 { stages, head })
    }
}

impl Architecture for InceptionResnetV2 {
    fn forward_features(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for (name, s) in &self.stages {
            x = match s {
                Stage::Conv(c) => c.forward(cx, &x)?,
                Stage::MaxPool => max_pool(&x, 3, 2, 0, false)?,
                Stage::Mixed(n) => n.forward(cx, &x)?,
                Stage::Res(blocks) => {
                    for b in blocks {
                        x = b.forward(cx, &x)?;
                    }
                    x
                }
            };
            cx.record(name, "Inception-ResNet", &x);
        }
        Ok(x)
    }
    fn forward_head(&self, cx: &Cx, x: &Tensor, pre_logits: bool) -> Result<Tensor> {
        let y = self.head.forward(cx, x, pre_logits)?;
        cx.record("classif", "Linear", &y);
        Ok(y)
    }
    fn num_features(&self) -> usize {
        self.head.num_features
    }
    fn num_classes(&self) -> usize {
        self.head.num_classes
    }
    fn reset_classifier(&mut self, vb: &Vb, num_classes: usize) {
        self.head = ClassifierHead::new(&vb.pp("classif"), self.head.num_features, num_classes, self.head.drop_rate);
    }
}

const fn cfg(tag: &'static str) -> PretrainedCfg {
    PretrainedCfg::imagenet(tag, "conv2d_1a.conv", "classif")
        .size(299)
        .pool(8, 8)
        .crop(0.8975)
        .bicubic()
        .inception_norm()
}
pub(crate) static INCEPTION_RESNET_V2: &[PretrainedCfg] = &[cfg("tf_in1k"), cfg("tf_ens_adv_in1k")];

/// Inception-ResNet-v2 (55.8M params, 299x299 input).
pub fn inception_resnet_v2(opts: ZooOpts) -> Result<Model> {
    build("inception_resnet_v2", opts, |vb, a| {
        Ok(Box::new(InceptionResnetV2::new(vb, a.num_classes, a.in_chans, a.drop_rate)?))
    })
}

// ---------------------------------------------------------------- registry

/// The registered variants of this family, each one line (`name`, pretrained configs).
pub(crate) static MODELS: &[ModelEntry] = &[register!(inception_resnet_v2, INCEPTION_RESNET_V2)];
