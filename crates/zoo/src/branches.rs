//! A small tree of convs, pools, sequences and channel concatenations: the shape of every
//! Inception-style block (Inception-v4, Inception-ResNet-v2, GoogLeNet), so each family
//! file only states its branches and their timm key names.

use crate::error::Result;
use crate::layers::{ConvBnAct, avg_pool, max_pool};
use convnet_nn::context::Cx;
use convnet_nn::store::Vb;
use convnet_tensor::Tensor;

/// One node of an Inception block.
#[derive(Debug)]
pub enum Node {
    /// `BasicConv2d`: conv, batch norm, ReLU.
    Conv(ConvBnAct),
    /// Max pool `(kernel, stride, padding, ceil_mode)`.
    MaxPool(usize, usize, usize, bool),
    /// Average pool `(kernel, stride, padding, count_include_pad)`.
    AvgPool(usize, usize, usize, bool),
    /// Children applied in order.
    Seq(Vec<Node>),
    /// Children applied to the same input, outputs concatenated on channels.
    Cat(Vec<Node>),
}

impl Node {
    /// `x -> node(x)`.
    pub fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        match self {
            Node::Conv(c) => c.forward(cx, x),
            Node::MaxPool(k, s, p, ceil) => max_pool(x, *k, *s, *p, *ceil),
            Node::AvgPool(k, s, p, inc) => avg_pool(x, *k, *s, *p, false, *inc),
            Node::Seq(v) => {
                let mut y = x.clone();
                for n in v {
                    y = n.forward(cx, &y)?;
                }
                Ok(y)
            }
            Node::Cat(v) => {
                let outs = v.iter().map(|n| n.forward(cx, x)).collect::<Result<Vec<_>>>()?;
                let refs: Vec<&Tensor> = outs.iter().collect();
                Ok(Tensor::concat(&refs, 3)?)
            }
        }
    }
}

/// A `BasicConv2d` node under `vb`: `k` kernel, `stride`, `(ph, pw)` padding, BN `eps`.
pub fn conv(vb: &Vb, cin: usize, cout: usize, k: (usize, usize), stride: usize, pad: (usize, usize), eps: f32) -> Node {
    Node::Conv(ConvBnAct::basic(vb, cin, cout, k, stride, pad, eps))
}
