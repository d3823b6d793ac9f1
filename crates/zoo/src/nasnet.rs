//! NASNet-A Large (Zoph et al. 2018, "Learning Transferable Architectures for Scalable
//! Image Recognition"), as timm's `nasnet.py` (Cadene's port of the TensorFlow-slim
//! weights): a 3x3/2 stem conv, two reduction stem cells, then three stacks of six normal
//! cells separated by reduction cells, a final ReLU and `last_linear`.
//!
//! The cell machinery here (separable branches, the factorized 1x1 reduction, cells as a
//! small graph of pairwise sums) is shared with PNASNet ([`crate::pnasnet`]), which timm
//! also builds from these blocks. Padding is TensorFlow's "SAME" throughout: strided
//! convs and pools pad the odd pixel at the bottom and right, and the stride-2 average
//! pools count that padding (timm's `AvgPool2dSame`); stride-1 average pools exclude it.

use crate::Model;
use crate::error::Result;
use crate::layers::{BatchNorm2d, ClassifierHead, Conv2d, ConvBnAct, ConvOpts, act, avg_pool};
use crate::model::{Architecture, ZooOpts, build};
use crate::pretrained::PretrainedCfg;
use crate::registry::{ModelEntry, register};
use convnet_nn::context::Cx;
use convnet_nn::store::Vb;
use convnet_tensor::{Activation, Pad2d, PadMode, Padding2d, Pool2dArgs, Tensor};

/// Batch-norm epsilon of the TensorFlow-trained NAS networks.
const EPS: f32 = 1e-3;

// ---------------------------------------------------------------- blocks

/// TF "SAME" conv options with `stride` (symmetric for stride 1, as timm resolves it).
fn same(stride: usize) -> ConvOpts {
    ConvOpts::stride(stride).with_tf_same(true)
}

/// timm's `ActConvBn`: ReLU, conv (`conv`), batch norm (`bn`).
#[derive(Debug)]
pub(crate) struct ActConvBn(ConvBnAct);

impl ActConvBn {
    pub(crate) fn new(vb: &Vb, cin: usize, cout: usize, stride: usize) -> Self {
        ActConvBn(ConvBnAct::timm(vb, cin, cout, 1, same(stride), EPS, Activation::Linear))
    }
    fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        self.0.forward(cx, &x.relu())
    }
}

/// timm's `BranchSeparables`: ReLU, separable conv (`separable_1`: depthwise `k`, stride,
/// then pointwise to `mid`), `bn_sep_1`, ReLU, separable conv (`separable_2`, stride 1,
/// pointwise to `cout`), `bn_sep_2`. `mid` is `cout` in stem cells, else `cin`.
#[derive(Debug)]
pub(crate) struct BranchSep {
    dw1: Conv2d,
    pw1: ConvBnAct,
    dw2: Conv2d,
    pw2: ConvBnAct,
}

impl BranchSep {
    pub(crate) fn new(vb: &Vb, cin: usize, mid: usize, cout: usize, k: usize, stride: usize) -> Self {
        let (s1, s2) = (vb.pp("separable_1"), vb.pp("separable_2"));
        let pw = |sep: &Vb, bn: &str, ci: usize, co: usize, a: Activation| {
            ConvBnAct::new(&sep.pp("pointwise_conv2d"), &vb.pp(bn), ci, co, (1, 1), same(1), EPS, a)
        };
        BranchSep {
            dw1: Conv2d::square(&s1.pp("depthwise_conv2d"), cin, cin, k, same(stride).with_groups(cin)),
            // the ReLU before the second separable conv runs in the first one's norm
            pw1: pw(&s1, "bn_sep_1", cin, mid, Activation::Relu),
            dw2: Conv2d::square(&s2.pp("depthwise_conv2d"), mid, mid, k, same(1).with_groups(mid)),
            pw2: pw(&s2, "bn_sep_2", mid, cout, Activation::Linear),
        }
    }
    fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let y = self.pw1.forward(cx, &self.dw1.forward(cx, &x.relu())?)?;
        self.pw2.forward(cx, &self.dw2.forward(cx, &y)?)
    }
}

/// The factorized reduction that matches a previous input of twice the resolution:
/// ReLU, then two 1x1 convs (`path_1.conv`, `path_2.conv`, half the width each) on the
/// even pixels and on the input shifted by one pixel (`ZeroPad2d((-1, 1, -1, 1))`),
/// concatenated and normalised (`final_path_bn`). timm runs each as `AvgPool2d(1, 2)`
/// then a 1x1 conv, which is one 1x1 conv of stride 2.
#[derive(Debug)]
pub(crate) struct FactorizedReduction {
    path1: Conv2d,
    path2: Conv2d,
    bn: BatchNorm2d,
}

impl FactorizedReduction {
    pub(crate) fn new(vb: &Vb, cin: usize, cout: usize) -> Self {
        let o = ConvOpts::stride(2).with_padding(Padding2d::Valid);
        FactorizedReduction {
            path1: Conv2d::square(&vb.pp("path_1").pp("conv"), cin, cout / 2, 1, o),
            path2: Conv2d::square(&vb.pp("path_2").pp("conv"), cin, cout / 2, 1, o),
            bn: BatchNorm2d::new(&vb.pp("final_path_bn"), cout, EPS, Activation::Linear),
        }
    }
    fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let x = x.relu();
        let p1 = self.path1.forward(cx, &x)?;
        let shifted = x.pad2d(Pad2d::torch(-1, 1, -1, 1), PadMode::Constant(0.0))?;
        let p2 = self.path2.forward(cx, &shifted)?;
        self.bn.forward(cx, &Tensor::concat(&[&p1, &p2], 3)?)
    }
}

/// One operation of a cell's pairwise sums.
#[derive(Debug)]
pub(crate) enum Op {
    Sep(Box<BranchSep>),
    /// 3x3 max pool, "same" padding, with this stride.
    MaxPool(usize),
    /// 3x3 average pool with this stride: stride 1 excludes its padding, stride 2 is
    /// timm's `AvgPool2dSame` and counts it.
    AvgPool(usize),
    ActConvBn(ActConvBn),
    /// Stride-2 "same" max pool, 1x1 conv and norm (`conv`, `bn`; PNASNet's stem).
    PoolConvBn(ConvBnAct),
    Identity,
}

fn max_pool_same(x: &Tensor, stride: usize) -> Result<Tensor> {
    let args = Pool2dArgs {
        kernel: (3, 3),
        stride: (stride, stride),
        padding: Padding2d::Same,
        ceil_mode: false,
        count_include_pad: false,
    };
    Ok(x.max_pool2d(&args)?)
}

impl Op {
    fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        match self {
            Op::Sep(b) => b.forward(cx, x),
            Op::MaxPool(s) => max_pool_same(x, *s),
            Op::AvgPool(1) => avg_pool(x, 3, 1, 1, false, false),
            Op::AvgPool(s) => Ok(x.avg_pool2d_tf_same((3, 3), (*s, *s))?),
            Op::ActConvBn(a) => a.forward(cx, x),
            Op::PoolConvBn(c) => c.forward(cx, &max_pool_same(x, 2)?),
            Op::Identity => Ok(x.clone()),
        }
    }
}

/// What a term of a cell reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Src {
    /// The current input after its 1x1 (`conv_1x1`).
    Cur,
    /// The previous input after its projection (`conv_prev_1x1`, the factorized paths, or none).
    Prev,
    /// The `i`-th sum of this cell (`x_comb_iter_i`).
    Comb(usize),
}

/// How a cell's input is brought to the cell's width.
#[derive(Debug)]
pub(crate) enum Pre {
    /// Used as it is.
    Raw,
    ActConvBn(ActConvBn),
    Factorized(FactorizedReduction),
}

impl Pre {
    fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        match self {
            Pre::Raw => Ok(x.clone()),
            Pre::ActConvBn(a) => a.forward(cx, x),
            Pre::Factorized(f) => f.forward(cx, x),
        }
    }
}

/// A NAS cell: both inputs projected, then sums `left_op(src) + right_op(src)`, then the
/// listed tensors concatenated on channels.
#[derive(Debug)]
pub(crate) struct Cell {
    pub(crate) path: String,
    pub(crate) cur: Pre,
    pub(crate) prev: Pre,
    pub(crate) combs: Vec<[(Op, Src); 2]>,
    pub(crate) out: Vec<Src>,
    /// A reduction cell of NASNet: the cell after it reads the same previous input as it did.
    pub(crate) keeps_prev: bool,
}

impl Cell {
    /// `cur`, `prev` (the outputs of the last two cells) -> this cell's output.
    pub(crate) fn forward(&self, cx: &Cx, cur: &Tensor, prev: &Tensor) -> Result<Tensor> {
        let c = self.cur.forward(cx, cur)?;
        let p = self.prev.forward(cx, prev)?;
        let mut sums: Vec<Tensor> = Vec::with_capacity(self.combs.len());
        let pick = |s: Src, sums: &[Tensor]| -> Tensor {
            match s {
                Src::Cur => c.clone(),
                Src::Prev => p.clone(),
                Src::Comb(i) => sums[i].clone(),
            }
        };
        for [(lo, ls), (ro, rs)] in &self.combs {
            let l = lo.forward(cx, &pick(*ls, &sums))?;
            let r = ro.forward(cx, &pick(*rs, &sums))?;
            sums.push(l.add(&r)?);
        }
        let outs: Vec<Tensor> = self.out.iter().map(|s| pick(*s, &sums)).collect();
        let refs: Vec<&Tensor> = outs.iter().collect();
        let y = Tensor::concat(&refs, 3)?;
        cx.record(&self.path, "Cell", &y);
        Ok(y)
    }
}

/// `comb_iter_{i}_{left,right}` under `vb`.
fn side<'a>(vb: &Vb<'a>, i: usize, left: bool) -> Vb<'a> {
    vb.pp(format!("comb_iter_{i}_{}", if left { "left" } else { "right" }))
}

/// The NASNet reduction graph (stem cells and both reduction cells), `w` wide; the
/// separable branches on the previous input take `prev_in` channels (the stem's width
/// in the first stem cell, whose branches widen at once).
fn reduction_combs(vb: &Vb, w: usize, prev_in: usize) -> Vec<[(Op, Src); 2]> {
    // a branch whose input has another width changes it in its first separable conv
    let sep = |i: usize, left: bool, cin: usize, k: usize, s: usize| {
        Op::Sep(Box::new(BranchSep::new(&side(vb, i, left), cin, w, w, k, s)))
    };
    vec![
        [(sep(0, true, w, 5, 2), Src::Cur), (sep(0, false, prev_in, 7, 2), Src::Prev)],
        [(Op::MaxPool(2), Src::Cur), (sep(1, false, prev_in, 7, 2), Src::Prev)],
        [(Op::AvgPool(2), Src::Cur), (sep(2, false, prev_in, 5, 2), Src::Prev)],
        [(Op::AvgPool(1), Src::Comb(0)), (Op::Identity, Src::Comb(1))],
        [(sep(4, true, w, 3, 1), Src::Comb(0)), (Op::MaxPool(2), Src::Cur)],
    ]
}

/// The NASNet normal graph (first and normal cells), `w` wide.
fn normal_combs(vb: &Vb, w: usize) -> Vec<[(Op, Src); 2]> {
    let sep = |i: usize, left: bool, k: usize| Op::Sep(Box::new(BranchSep::new(&side(vb, i, left), w, w, w, k, 1)));
    vec![
        [(sep(0, true, 5), Src::Cur), (sep(0, false, 3), Src::Prev)],
        [(sep(1, true, 5), Src::Prev), (sep(1, false, 3), Src::Prev)],
        [(Op::AvgPool(1), Src::Cur), (Op::Identity, Src::Prev)],
        [(Op::AvgPool(1), Src::Prev), (Op::AvgPool(1), Src::Prev)],
        [(sep(4, true, 3), Src::Cur), (Op::Identity, Src::Cur)],
    ]
}

const REDUCTION_OUT: [Src; 4] = [Src::Comb(1), Src::Comb(2), Src::Comb(3), Src::Comb(4)];
const NORMAL_OUT: [Src; 6] = [Src::Prev, Src::Comb(0), Src::Comb(1), Src::Comb(2), Src::Comb(3), Src::Comb(4)];

/// A NASNet cell of width `w` reading `cur_in` and `prev_in` channels: `reduction` or
/// normal; `factorized` when the previous input has twice the resolution.
fn nasnet_cell(vb: &Vb, cur_in: usize, prev_in: usize, w: usize, reduction: bool, factorized: bool) -> Cell {
    // a factorized previous input is `w` wide after its paths
    let prev = if factorized {
        Pre::Factorized(FactorizedReduction::new(vb, prev_in, w))
    } else {
        Pre::ActConvBn(ActConvBn::new(&vb.pp("conv_prev_1x1"), prev_in, w, 1))
    };
    let (combs, out) = if reduction {
        (reduction_combs(vb, w, w), REDUCTION_OUT.to_vec())
    } else {
        (normal_combs(vb, w), NORMAL_OUT.to_vec())
    };
    Cell {
        path: vb.prefix().to_string(),
        cur: Pre::ActConvBn(ActConvBn::new(&vb.pp("conv_1x1"), cur_in, w, 1)),
        prev,
        combs,
        out,
        keeps_prev: reduction,
    }
}

// ---------------------------------------------------------------- model

/// A NAS network: stem conv (no activation), cells, final ReLU, classifier. Shared with
/// PNASNet, which differs only in its cells and key names.
#[derive(Debug)]
pub struct NasNet {
    pub(crate) stem: ConvBnAct,
    pub(crate) stem_key: &'static str,
    pub(crate) cells: Vec<Cell>,
    pub(crate) head: ClassifierHead,
}

impl NasNet {
    /// The 3x3/2 unpadded stem conv and norm (`{key}.conv`, `{key}.bn`) to `width`.
    pub(crate) fn stem(vb: &Vb, key: &'static str, in_chans: usize, width: usize) -> ConvBnAct {
        let o = ConvOpts::stride(2).with_padding(Padding2d::Valid);
        ConvBnAct::timm(&vb.pp(key), in_chans, width, 3, o, EPS, Activation::Linear)
    }

    /// NASNet-A with a `stem_size`-wide stem conv and `num_features` final features
    /// (timm's arguments; a multiple of 96): its three stacks of cells are
    /// `num_features / 24`, twice and four times that wide. NASNet-A Large is (96, 4032).
    pub fn nasnet_a(
        vb: &Vb,
        stem_size: usize,
        num_features: usize,
        num_classes: usize,
        in_chans: usize,
        drop_rate: f32,
    ) -> Result<Self> {
        if num_features == 0 || !num_features.is_multiple_of(96) {
            return Err(crate::ZooError::arg(
                "num_features",
                format!(
                    "NASNet-A needs a positive multiple of 96 (the stem cells are a 96th wide), got {num_features}"
                ),
            ));
        }
        let c = num_features / 24;
        let stem = Self::stem(vb, "conv0", in_chans, stem_size);
        let mut cells = Vec::new();
        // first stem cell: both inputs are the stem conv's output
        let s0 = vb.pp("cell_stem_0");
        cells.push(Cell {
            path: "cell_stem_0".into(),
            cur: Pre::ActConvBn(ActConvBn::new(&s0.pp("conv_1x1"), stem_size, c / 4, 1)),
            prev: Pre::Raw,
            combs: reduction_combs(&s0, c / 4, stem_size),
            out: REDUCTION_OUT.to_vec(),
            keeps_prev: false,
        });
        cells.push(Cell { keeps_prev: false, ..nasnet_cell(&vb.pp("cell_stem_1"), c, stem_size, c / 2, true, true) });
        // input widths of the next cell
        let mut cur_in = 2 * c;
        let mut prev_in = c;
        let mut index = 0;
        for (stack, w) in [c, 2 * c, 4 * c].into_iter().enumerate() {
            if stack > 0 {
                let r = nasnet_cell(&vb.pp(format!("reduction_cell_{}", stack - 1)), cur_in, cur_in, w, true, false);
                cells.push(r);
                // the first cell of the stack reads the reduction's output and its previous input
                cur_in = 4 * w;
            }
            for i in 0..6 {
                let first = i == 0;
                let cell = nasnet_cell(&vb.pp(format!("cell_{index}")), cur_in, prev_in, w, false, first);
                cells.push(cell);
                prev_in = if first && stack > 0 { 4 * w } else { cur_in };
                cur_in = 6 * w;
                index += 1;
            }
        }
        let head = ClassifierHead::new(&vb.pp("last_linear"), num_features, num_classes, drop_rate);
        Ok(NasNet { stem, stem_key: "conv0", cells, head })
    }
}

impl Architecture for NasNet {
    fn forward_features(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let x = self.stem.forward(cx, x)?;
        cx.record(self.stem_key, "ConvNormAct", &x);
        let (mut cur, mut prev) = (x.clone(), x);
        for cell in &self.cells {
            let y = cell.forward(cx, &cur, &prev)?;
            if !cell.keeps_prev {
                prev = cur;
            }
            cur = y;
        }
        Ok(act(&cur, Activation::Relu))
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
        let h = &self.head;
        self.head = ClassifierHead::new(&vb.pp("last_linear"), h.num_features, num_classes, h.drop_rate);
    }
}

// ---------------------------------------------------------------- pretrained configs

static NASNETALARGE: &[PretrainedCfg] = &[PretrainedCfg::imagenet("tf_in1k", "conv0.conv", "last_linear")
    .size(331)
    .pool(11, 11)
    .crop(0.911)
    .bicubic()
    .inception_norm()];

// ---------------------------------------------------------------- entry points

/// NASNet-A Large, 331x331 (88.8M params).
pub fn nasnetalarge(opts: ZooOpts) -> Result<Model> {
    build("nasnetalarge", opts, |vb, a| {
        Ok(Box::new(NasNet::nasnet_a(vb, 96, 4032, a.num_classes, a.in_chans, a.drop_rate)?))
    })
}

// ---------------------------------------------------------------- registry

/// The registered variants of this family, each one line (`name`, pretrained configs).
pub(crate) static MODELS: &[ModelEntry] = &[register!(nasnetalarge, NASNETALARGE)];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::assert_trains;
    use convnet_nn::store::Params;
    use std::cell::RefCell;

    /// A NASNet-A 1/21 the width of the large one (every cell kind, the factorized
    /// reductions and both kinds of average pool) takes a training step at 33x33, where
    /// the last stack is 2x2 and the odd sizes put "same" padding on one side only.
    #[test]
    fn a_narrow_nasnet_a_trains() {
        let store = RefCell::new(Params::new());
        let net = NasNet::nasnet_a(&Vb::root(&store, 1), 8, 192, 7, 3, 0.0).unwrap();
        assert_eq!(net.cells.len(), 2 + 18 + 2);
        assert_trains(
            &net,
            store,
            [2, 33, 33, 3],
            &["cell_stem_1.path_2.conv.weight", "cell_6.path_2.conv.weight", "conv0.conv.weight"],
        );
        let store = RefCell::new(Params::new());
        assert!(NasNet::nasnet_a(&Vb::root(&store, 1), 8, 100, 7, 3, 0.0).is_err());
    }
}
