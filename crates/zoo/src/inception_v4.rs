//! Inception-v4 (Szegedy et al. 2016, "Inception-v4, Inception-ResNet and the Impact of
//! Residual Connections on Learning"), as timm's `inception_v4.py` (Cadene's port of the
//! TensorFlow weights): `features.0..21` (stem, Mixed 3a/4a/5a, 4x Inception-A,
//! Reduction-A, 7x Inception-B, Reduction-B, 3x Inception-C), `last_linear`.

use crate::Model;
use crate::branches::{Node, conv as bconv};
use crate::error::Result;
use crate::layers::ClassifierHead;
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

fn maxpool() -> Node {
    Node::MaxPool(3, 2, 0, false)
}
fn avgpool() -> Node {
    Node::AvgPool(3, 1, 1, false)
}

fn mixed3a(vb: &Vb) -> Node {
    Node::Cat(vec![maxpool(), c(&vb.pp("conv"), 64, 96, (3, 3), 2, (0, 0))])
}

fn mixed4a(vb: &Vb) -> Node {
    let b0 = vb.pp("branch0");
    let b1 = vb.pp("branch1");
    Node::Cat(vec![
        Node::Seq(vec![c1(&b0.pp(0), 160, 64), c(&b0.pp(1), 64, 96, (3, 3), 1, (0, 0))]),
        Node::Seq(vec![
            c1(&b1.pp(0), 160, 64),
            c(&b1.pp(1), 64, 64, (1, 7), 1, (0, 3)),
            c(&b1.pp(2), 64, 64, (7, 1), 1, (3, 0)),
            c(&b1.pp(3), 64, 96, (3, 3), 1, (0, 0)),
        ]),
    ])
}

fn mixed5a(vb: &Vb) -> Node {
    Node::Cat(vec![c(&vb.pp("conv"), 192, 192, (3, 3), 2, (0, 0)), maxpool()])
}

fn inception_a(vb: &Vb) -> Node {
    let (b1, b2, b3) = (vb.pp("branch1"), vb.pp("branch2"), vb.pp("branch3"));
    Node::Cat(vec![
        c1(&vb.pp("branch0"), 384, 96),
        Node::Seq(vec![c1(&b1.pp(0), 384, 64), c(&b1.pp(1), 64, 96, (3, 3), 1, (1, 1))]),
        Node::Seq(vec![
            c1(&b2.pp(0), 384, 64),
            c(&b2.pp(1), 64, 96, (3, 3), 1, (1, 1)),
            c(&b2.pp(2), 96, 96, (3, 3), 1, (1, 1)),
        ]),
        Node::Seq(vec![avgpool(), c1(&b3.pp(1), 384, 96)]),
    ])
}

fn reduction_a(vb: &Vb) -> Node {
    let b1 = vb.pp("branch1");
    Node::Cat(vec![
        c(&vb.pp("branch0"), 384, 384, (3, 3), 2, (0, 0)),
        Node::Seq(vec![
            c1(&b1.pp(0), 384, 192),
            c(&b1.pp(1), 192, 224, (3, 3), 1, (1, 1)),
            c(&b1.pp(2), 224, 256, (3, 3), 2, (0, 0)),
        ]),
        maxpool(),
    ])
}

fn inception_b(vb: &Vb) -> Node {
    let (b1, b2, b3) = (vb.pp("branch1"), vb.pp("branch2"), vb.pp("branch3"));
    Node::Cat(vec![
        c1(&vb.pp("branch0"), 1024, 384),
        Node::Seq(vec![
            c1(&b1.pp(0), 1024, 192),
            c(&b1.pp(1), 192, 224, (1, 7), 1, (0, 3)),
            c(&b1.pp(2), 224, 256, (7, 1), 1, (3, 0)),
        ]),
        Node::Seq(vec![
            c1(&b2.pp(0), 1024, 192),
            c(&b2.pp(1), 192, 192, (7, 1), 1, (3, 0)),
            c(&b2.pp(2), 192, 224, (1, 7), 1, (0, 3)),
            c(&b2.pp(3), 224, 224, (7, 1), 1, (3, 0)),
            c(&b2.pp(4), 224, 256, (1, 7), 1, (0, 3)),
        ]),
        Node::Seq(vec![avgpool(), c1(&b3.pp(1), 1024, 128)]),
    ])
}

fn reduction_b(vb: &Vb) -> Node {
    let (b0, b1) = (vb.pp("branch0"), vb.pp("branch1"));
    Node::Cat(vec![
        Node::Seq(vec![c1(&b0.pp(0), 1024, 192), c(&b0.pp(1), 192, 192, (3, 3), 2, (0, 0))]),
        Node::Seq(vec![
            c1(&b1.pp(0), 1024, 256),
            c(&b1.pp(1), 256, 256, (1, 7), 1, (0, 3)),
            c(&b1.pp(2), 256, 320, (7, 1), 1, (3, 0)),
            c(&b1.pp(3), 320, 320, (3, 3), 2, (0, 0)),
        ]),
        maxpool(),
    ])
}

fn inception_c(vb: &Vb) -> Node {
    let b = |n: &str| vb.pp(n);
    Node::Cat(vec![
        c1(&b("branch0"), 1536, 256),
        Node::Seq(vec![
            c1(&b("branch1_0"), 1536, 384),
            Node::Cat(vec![
                c(&b("branch1_1a"), 384, 256, (1, 3), 1, (0, 1)),
                c(&b("branch1_1b"), 384, 256, (3, 1), 1, (1, 0)),
            ]),
        ]),
        Node::Seq(vec![
            c1(&b("branch2_0"), 1536, 384),
            c(&b("branch2_1"), 384, 448, (3, 1), 1, (1, 0)),
            c(&b("branch2_2"), 448, 512, (1, 3), 1, (0, 1)),
            Node::Cat(vec![
                c(&b("branch2_3a"), 512, 256, (1, 3), 1, (0, 1)),
                c(&b("branch2_3b"), 512, 256, (3, 1), 1, (1, 0)),
            ]),
        ]),
        Node::Seq(vec![avgpool(), c1(&vb.pp("branch3").pp(1), 1536, 256)]),
    ])
}

/// Inception-v4.
#[derive(Debug)]
pub struct InceptionV4 {
    features: Vec<(String, Node)>,
    head: ClassifierHead,
}

impl InceptionV4 {
    /// Builds the network under `vb`.
    pub fn new(vb: &Vb, num_classes: usize, in_chans: usize, drop_rate: f32) -> Result<Self> {
        let f = vb.pp("features");
        let mut nodes = vec![
            c(&f.pp(0), in_chans, 32, (3, 3), 2, (0, 0)),
            c(&f.pp(1), 32, 32, (3, 3), 1, (0, 0)),
            c(&f.pp(2), 32, 64, (3, 3), 1, (1, 1)),
            mixed3a(&f.pp(3)),
            mixed4a(&f.pp(4)),
            mixed5a(&f.pp(5)),
        ];
        nodes.extend((6..10).map(|i| inception_a(&f.pp(i))));
        nodes.push(reduction_a(&f.pp(10)));
        nodes.extend((11..18).map(|i| inception_b(&f.pp(i))));
        nodes.push(reduction_b(&f.pp(18)));
        nodes.extend((19..22).map(|i| inception_c(&f.pp(i))));
        let features = nodes.into_iter().enumerate().map(|(i, n)| (format!("features.{i}"), n)).collect();
        let head = ClassifierHead::new(&vb.pp("last_linear"), 1536, num_classes, drop_rate);
        Ok(InceptionV4 { features, head })
    }
}

impl Architecture for InceptionV4 {
    fn forward_features(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for (name, n) in &self.features {
            x = n.forward(cx, &x)?;
            cx.record(name, "Inception", &x);
        }
        Ok(x)
    }
    fn forward_head(&self, cx: &Cx, x: &Tensor, pre_logits: bool) -> Result<Tensor> {
        let y = self.head.forward(cx, x, pre_logits)?;
        cx.record("last_linear", "Linear", &y);
        Ok(y)
    }
    fn num_features(&self) -> usize {
        self.head.num_features
    }
    fn num_classes(&self) -> usize {
        self.head.num_classes
    }
    fn reset_classifier(&mut self, vb: &Vb, num_classes: usize) {
        self.head =
            ClassifierHead::new(&vb.pp("last_linear"), self.head.num_features, num_classes, self.head.drop_rate);
    }
}

pub(crate) static INCEPTION_V4: &[PretrainedCfg] =
    &[PretrainedCfg::imagenet("tf_in1k", "features.0.conv", "last_linear")
        .size(299)
        .pool(8, 8)
        .bicubic()
        .inception_norm()];

/// Inception-v4 (42.7M params, 299x299 input).
pub fn inception_v4(opts: ZooOpts) -> Result<Model> {
    build("inception_v4", opts, |vb, a| Ok(Box::new(InceptionV4::new(vb, a.num_classes, a.in_chans, a.drop_rate)?)))
}

// ---------------------------------------------------------------- registry

/// The registered variants of this family, each one line (`name`, pretrained configs).
pub(crate) static MODELS: &[ModelEntry] = &[register!(inception_v4, INCEPTION_V4)];
