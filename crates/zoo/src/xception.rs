//! Xception (Chollet 2016, "Xception: Deep Learning with Depthwise Separable
//! Convolutions"), the original Keras network as timm's `legacy_xception` (Cadene's port,
//! `xception.py`): entry flow, eight middle-flow blocks of three ReLU-separable-conv-BN
//! units, exit flow; residual 1x1 strided projections where the shape changes.

use crate::Model;
use crate::error::Result;
use crate::layers::{ClassifierHead, Conv2d, ConvBnAct, ConvOpts, max_pool};
use crate::model::{Architecture, ZooOpts, build};
use crate::pretrained::PretrainedCfg;
use crate::registry::{ModelEntry, register};
use convnet_nn::context::Cx;
use convnet_nn::store::Vb;
use convnet_tensor::{Activation, Padding2d, Tensor};

const EPS: f32 = 1e-5;

/// `SeparableConv2d` (depthwise 3x3 `conv1`, pointwise `pointwise`) followed by a batch
/// norm that lives under another key (`rep.{i+1}` or `bn{n}`).
#[derive(Debug)]
struct SepConvBn {
    depthwise: Conv2d,
    pointwise: ConvBnAct,
}

impl SepConvBn {
    fn new(vb: &Vb, bn: &Vb, cin: usize, cout: usize, act: Activation) -> Self {
        SepConvBn {
            depthwise: Conv2d::square(&vb.pp("conv1"), cin, cin, 3, ConvOpts::default().with_groups(cin)),
            pointwise: ConvBnAct::new(&vb.pp("pointwise"), bn, cin, cout, (1, 1), ConvOpts::default(), EPS, act),
        }
    }
    fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        self.pointwise.forward(cx, &self.depthwise.forward(cx, x)?)
    }
}

#[derive(Debug)]
struct Block {
    path: String,
    start_with_relu: bool,
    units: Vec<SepConvBn>,
    pool: bool,
    skip: Option<ConvBnAct>,
}

impl Block {
    fn new(
        vb: &Vb,
        cin: usize,
        cout: usize,
        reps: usize,
        stride: usize,
        start_with_relu: bool,
        grow_first: bool,
    ) -> Self {
        let skip = (cout != cin || stride != 1).then(|| {
            ConvBnAct::new(
                &vb.pp("skip"),
                &vb.pp("skipbn"),
                cin,
                cout,
                (1, 1),
                ConvOpts::stride(stride),
                EPS,
                Activation::Linear,
            )
        });
        let rep = vb.pp("rep");
        // torch indices: [ReLU, Sep, BN] per unit, the first ReLU dropped without start_with_relu
        let mut idx = if start_with_relu { 1 } else { 0 };
        let mut units = Vec::new();
        for i in 0..reps {
            let (inc, outc) = if grow_first {
                (if i == 0 { cin } else { cout }, cout)
            } else {
                (cin, if i < reps - 1 { cin } else { cout })
            };
            units.push(SepConvBn::new(&rep.pp(idx), &rep.pp(idx + 1), inc, outc, Activation::Linear));
            idx += 3;
        }
        Block { path: vb.prefix().to_string(), start_with_relu, units, pool: stride != 1, skip }
    }

    fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let mut y = x.clone();
        for (i, u) in self.units.iter().enumerate() {
            if i > 0 || self.start_with_relu {
                y = y.relu();
            }
            y = u.forward(cx, &y)?;
        }
        if self.pool {
            y = max_pool(&y, 3, 2, 1, false)?;
        }
        let skip = match &self.skip {
            Some(s) => s.forward(cx, x)?,
            None => x.clone(),
        };
        let y = y.add(&skip)?;
        cx.record(&self.path, "XceptionBlock", &y);
        Ok(y)
    }
}

/// Xception: `conv1`, `bn1`, `conv2`, `bn2`, `block1..12`, `conv3`, `bn3`, `conv4`, `bn4`, `fc`.
#[derive(Debug)]
pub struct Xception {
    conv1: ConvBnAct,
    conv2: ConvBnAct,
    blocks: Vec<Block>,
    conv3: SepConvBn,
    conv4: SepConvBn,
    head: ClassifierHead,
}

impl Xception {
    /// Builds the network under `vb`.
    pub fn new(vb: &Vb, num_classes: usize, in_chans: usize, drop_rate: f32) -> Result<Self> {
        let valid = ConvOpts::default().with_padding(Padding2d::Valid);
        let relu = Activation::Relu;
        let conv1 =
            ConvBnAct::new(&vb.pp("conv1"), &vb.pp("bn1"), in_chans, 32, (3, 3), valid.with_stride(2), EPS, relu);
        let conv2 = ConvBnAct::new(&vb.pp("conv2"), &vb.pp("bn2"), 32, 64, (3, 3), valid, EPS, relu);
        let mut blocks = vec![
            Block::new(&vb.pp("block1"), 64, 128, 2, 2, false, true),
            Block::new(&vb.pp("block2"), 128, 256, 2, 2, true, true),
            Block::new(&vb.pp("block3"), 256, 728, 2, 2, true, true),
        ];
        for i in 4..12 {
            blocks.push(Block::new(&vb.pp(format!("block{i}")), 728, 728, 3, 1, true, true));
        }
        blocks.push(Block::new(&vb.pp("block12"), 728, 1024, 2, 2, true, false));
        let conv3 = SepConvBn::new(&vb.pp("conv3"), &vb.pp("bn3"), 1024, 1536, relu);
        let conv4 = SepConvBn::new(&vb.pp("conv4"), &vb.pp("bn4"), 1536, 2048, relu);
        let head = ClassifierHead::new(&vb.pp("fc"), 2048, num_classes, drop_rate);
        Ok(Xception { conv1, conv2, blocks, conv3, conv4, head })
    }
}

impl Architecture for Xception {
    fn forward_features(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let mut x = self.conv2.forward(cx, &self.conv1.forward(cx, x)?)?;
        cx.record("conv2", "Conv2d+BN+ReLU", &x);
        for b in &self.blocks {
            x = b.forward(cx, &x)?;
        }
        let x = self.conv3.forward(cx, &x)?;
        cx.record("conv3", "SeparableConv2d+BN+ReLU", &x);
        let x = self.conv4.forward(cx, &x)?;
        cx.record("conv4", "SeparableConv2d+BN+ReLU", &x);
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
}

pub(crate) static LEGACY_XCEPTION: &[PretrainedCfg] =
    &[PretrainedCfg::imagenet("tf_in1k", "conv1", "fc").size(299).pool(10, 10).crop(0.8975).bicubic().inception_norm()];

/// Xception, the original (Keras) network; timm's `legacy_xception` (22.9M params).
pub fn legacy_xception(opts: ZooOpts) -> Result<Model> {
    build("legacy_xception", opts, |vb, a| Ok(Box::new(Xception::new(vb, a.num_classes, a.in_chans, a.drop_rate)?)))
}

// ---------------------------------------------------------------- registry

/// The registered variants of this family, each one line (`name`, pretrained configs).
pub(crate) static MODELS: &[ModelEntry] = &[register!(legacy_xception, LEGACY_XCEPTION)];
