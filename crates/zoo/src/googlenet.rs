//! GoogLeNet / Inception-v1 (Szegedy et al. 2014, "Going Deeper with Convolutions"), as
//! torchvision's `googlenet` (timm has none): batch-normed `BasicConv2d`s, nine Inception
//! modules, ceil-mode max pools, and the auxiliary heads off (6,624,904 parameters).
//! torchvision keeps its "5x5" branch as a 3x3 conv; so does this port, for its weights.
//! torchvision's `transform_input` (re-normalising ImageNet inputs for the ported
//! weights) is not applied: feed inputs as the checkpoint expects them.

use crate::Model;
use crate::branches::{Node, conv as bconv};
use crate::checkpoint::StateDict;
use crate::error::Result;
use crate::layers::{ClassifierHead, ConvBnAct, max_pool};
use crate::model::{Architecture, ZooOpts, build};
use crate::pretrained::PretrainedCfg;
use crate::registry::{ModelEntry, register};
use convnet_nn::context::Cx;
use convnet_nn::store::Vb;
use convnet_tensor::Tensor;

const EPS: f32 = 1e-3;

/// `Inception(in, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj)`.
#[allow(clippy::too_many_arguments)]
fn inception(vb: &Vb, cin: usize, c1: usize, c3r: usize, c3: usize, c5r: usize, c5: usize, pp: usize) -> Node {
    let one = |v: &Vb, i, o| bconv(v, i, o, (1, 1), 1, (0, 0), EPS);
    let three = |v: &Vb, i, o| bconv(v, i, o, (3, 3), 1, (1, 1), EPS);
    let (b2, b3, b4) = (vb.pp("branch2"), vb.pp("branch3"), vb.pp("branch4"));
    Node::Cat(vec![
        one(&vb.pp("branch1"), cin, c1),
        Node::Seq(vec![one(&b2.pp(0), cin, c3r), three(&b2.pp(1), c3r, c3)]),
        Node::Seq(vec![one(&b3.pp(0), cin, c5r), three(&b3.pp(1), c5r, c5)]),
        Node::Seq(vec![Node::MaxPool(3, 1, 1, true), one(&b4.pp(1), cin, pp)]),
    ])
}

#[derive(Debug)]
enum Stage {
    Conv(ConvBnAct),
    /// Max pool `(kernel, stride)`, ceil mode.
    Pool(usize, usize),
    Inception(Node),
}

/// GoogLeNet: `conv1..3` (`.conv`, `.bn`), `inception3a..5b`, `fc`.
#[derive(Debug)]
pub struct GoogLeNet {
    stages: Vec<(&'static str, Stage)>,
    head: ClassifierHead,
}

impl GoogLeNet {
    /// Builds the network under `vb` (`drop_rate` is torchvision's 0.2 dropout before `fc`).
    pub fn new(vb: &Vb, num_classes: usize, in_chans: usize, drop_rate: f32) -> Result<Self> {
        let i = |name: &'static str, cin, a, b, c, d, e, f| {
            (name, Stage::Inception(inception(&vb.pp(name), cin, a, b, c, d, e, f)))
        };
        let stages = vec![
            ("conv1", Stage::Conv(ConvBnAct::basic(&vb.pp("conv1"), in_chans, 64, (7, 7), 2, (3, 3), EPS))),
            ("maxpool1", Stage::Pool(3, 2)),
            ("conv2", Stage::Conv(ConvBnAct::basic(&vb.pp("conv2"), 64, 64, (1, 1), 1, (0, 0), EPS))),
            ("conv3", Stage::Conv(ConvBnAct::basic(&vb.pp("conv3"), 64, 192, (3, 3), 1, (1, 1), EPS))),
            ("maxpool2", Stage::Pool(3, 2)),
            i("inception3a", 192, 64, 96, 128, 16, 32, 32),
            i("inception3b", 256, 128, 128, 192, 32, 96, 64),
            ("maxpool3", Stage::Pool(3, 2)),
            i("inception4a", 480, 192, 96, 208, 16, 48, 64),
            i("inception4b", 512, 160, 112, 224, 24, 64, 64),
            i("inception4c", 512, 128, 128, 256, 24, 64, 64),
            i("inception4d", 512, 112, 144, 288, 32, 64, 64),
            i("inception4e", 528, 256, 160, 320, 32, 128, 128),
            ("maxpool4", Stage::Pool(2, 2)),
            i("inception5a", 832, 256, 160, 320, 32, 128, 128),
            i("inception5b", 832, 384, 192, 384, 48, 128, 128),
        ];
        let head = ClassifierHead::new(&vb.pp("fc"), 1024, num_classes, drop_rate);
        Ok(GoogLeNet { stages, head })
    }
}

impl Architecture for GoogLeNet {
    fn forward_features(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for (name, s) in &self.stages {
            x = match s {
                Stage::Conv(c) => c.forward(cx, &x)?,
                Stage::Pool(k, st) => max_pool(&x, *k, *st, 0, true)?,
                Stage::Inception(n) => n.forward(cx, &x)?,
            };
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
    /// torchvision checkpoints carry the auxiliary heads, which this model leaves out.
    fn remap_state_dict(&self, sd: &mut StateDict) {
        sd.retain(|k, _| !k.starts_with("aux1.") && !k.starts_with("aux2."));
    }
}

/// torchvision's ImageNet weights (`GoogLeNet_Weights.IMAGENET1K_V1`): resize 256, crop 224, bilinear.
pub(crate) static GOOGLENET: &[PretrainedCfg] = &[PretrainedCfg::imagenet("tv_in1k", "conv1.conv", "fc")];

/// GoogLeNet (Inception-v1), torchvision's layout without auxiliary heads.
pub fn googlenet(opts: ZooOpts) -> Result<Model> {
    build("googlenet", opts, |vb, a| Ok(Box::new(GoogLeNet::new(vb, a.num_classes, a.in_chans, a.drop_rate)?)))
}

// ---------------------------------------------------------------- registry

/// The registered variants of this family, each one line (`name`, pretrained configs).
pub(crate) static MODELS: &[ModelEntry] = &[register!(googlenet, GOOGLENET)];
