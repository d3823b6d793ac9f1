//! PNASNet-5 Large (Liu et al. 2018, "Progressive Neural Architecture Search"), as timm's
//! `pnasnet.py` (Cadene's port of the TensorFlow-slim weights): a 3x3/2 stem conv, a stem
//! cell, then twelve cells of five pairwise sums (every fourth one a reduction), a final
//! ReLU and `last_linear`.
//!
//! Built from NASNet's blocks ([`crate::nasnet`]): the same separable branches, "SAME"
//! padding and factorized reduction; each cell reads the outputs of the two cells before it.

use crate::Model;
use crate::error::Result;
use crate::layers::{ClassifierHead, ConvBnAct, ConvOpts};
use crate::model::{ZooOpts, build};
use crate::nasnet::{ActConvBn, BranchSep, Cell, FactorizedReduction, NasNet, Op, Pre, Src};
use crate::pretrained::PretrainedCfg;
use crate::registry::{ModelEntry, register};
use convnet_nn::store::Vb;
use convnet_tensor::Activation;

/// The five sums of a PNASNet cell `w` wide, stride 2 when `reduction`. The stem cell
/// (`stem_in`: its input width) reads its raw input as the previous one: its branches on
/// it widen at once and its max-pool branch is followed by a 1x1 conv and norm.
fn combs(vb: &Vb, w: usize, reduction: bool, stem_in: Option<usize>) -> Vec<[(Op, Src); 2]> {
    let s = if reduction { 2 } else { 1 };
    let side = |i: usize, left: bool| vb.pp(format!("comb_iter_{i}_{}", if left { "left" } else { "right" }));
    let sep = |i: usize, left: bool, cin: usize, k: usize, s: usize| {
        Op::Sep(Box::new(BranchSep::new(&side(i, left), cin, w, w, k, s)))
    };
    let prev_in = stem_in.unwrap_or(w);
    let pool_prev = match stem_in {
        Some(cin) => {
            let o = ConvOpts::stride(1).with_tf_same(true);
            Op::PoolConvBn(ConvBnAct::timm(&side(0, false), cin, w, 1, o, 1e-3, Activation::Linear))
        }
        None => Op::MaxPool(s),
    };
    let last = if reduction { Op::ActConvBn(ActConvBn::new(&side(4, false), w, w, s)) } else { Op::Identity };
    vec![
        [(sep(0, true, prev_in, 5, s), Src::Prev), (pool_prev, Src::Prev)],
        [(sep(1, true, w, 7, s), Src::Cur), (Op::MaxPool(s), Src::Cur)],
        [(sep(2, true, w, 5, s), Src::Cur), (sep(2, false, w, 3, s), Src::Cur)],
        [(sep(3, true, w, 3, 1), Src::Comb(2)), (Op::MaxPool(s), Src::Cur)],
        [(sep(4, true, prev_in, 3, s), Src::Prev), (last, Src::Cur)],
    ]
}

const OUT: [Src; 5] = [Src::Comb(0), Src::Comb(1), Src::Comb(2), Src::Comb(3), Src::Comb(4)];

/// PNASNet-5 with a `stem_size`-wide stem conv and cells whose widths are multiples of
/// `w0` (the stem cell's): 2, 4, 8 and 16 times it, each cell's output five times its
/// width. PNASNet-5 Large is (96, 54): 4320 features.
fn pnasnet5(vb: &Vb, stem_size: usize, w0: usize, num_classes: usize, in_chans: usize, drop_rate: f32) -> NasNet {
    let stem = NasNet::stem(vb, "conv_0", in_chans, stem_size);
    let s0 = vb.pp("cell_stem_0");
    let mut cells = vec![Cell {
        path: "cell_stem_0".into(),
        cur: Pre::ActConvBn(ActConvBn::new(&s0.pp("conv_1x1"), stem_size, w0, 1)),
        prev: Pre::Raw,
        combs: combs(&s0, w0, true, Some(stem_size)),
        out: OUT.to_vec(),
        keeps_prev: false,
    }];
    // (key, previous input's width, current input's width, cell width, reduction,
    // factorized), widths in units of `w0`; the first cell reads the stem conv
    let table: [(&str, usize, usize, usize, bool, bool); 13] = [
        ("cell_stem_1", 0, 5, 2, true, true),
        ("cell_0", 5, 10, 4, false, true),
        ("cell_1", 10, 20, 4, false, false),
        ("cell_2", 20, 20, 4, false, false),
        ("cell_3", 20, 20, 4, false, false),
        ("cell_4", 20, 20, 8, true, false),
        ("cell_5", 20, 40, 8, false, true),
        ("cell_6", 40, 40, 8, false, false),
        ("cell_7", 40, 40, 8, false, false),
        ("cell_8", 40, 40, 16, true, false),
        ("cell_9", 40, 80, 16, false, true),
        ("cell_10", 80, 80, 16, false, false),
        ("cell_11", 80, 80, 16, false, false),
    ];
    for (key, prev_in, cur_in, w, reduction, factorized) in table {
        let vb = vb.pp(key);
        let (prev_in, cur_in, w) = (if prev_in == 0 { stem_size } else { prev_in * w0 }, cur_in * w0, w * w0);
        let prev = if factorized {
            Pre::Factorized(FactorizedReduction::new(&vb.pp("conv_prev_1x1"), prev_in, w))
        } else {
            Pre::ActConvBn(ActConvBn::new(&vb.pp("conv_prev_1x1"), prev_in, w, 1))
        };
        cells.push(Cell {
            path: key.into(),
            cur: Pre::ActConvBn(ActConvBn::new(&vb.pp("conv_1x1"), cur_in, w, 1)),
            prev,
            combs: combs(&vb, w, reduction, None),
            out: OUT.to_vec(),
            keeps_prev: false,
        });
    }
    let head = ClassifierHead::new(&vb.pp("last_linear"), 80 * w0, num_classes, drop_rate);
    NasNet { stem, stem_key: "conv_0", cells, head }
}

// ---------------------------------------------------------------- pretrained configs

static PNASNET5LARGE: &[PretrainedCfg] = &[PretrainedCfg::imagenet("tf_in1k", "conv_0.conv", "last_linear")
    .size(331)
    .pool(11, 11)
    .crop(0.911)
    .bicubic()
    .inception_norm()];

// ---------------------------------------------------------------- entry points

/// PNASNet-5 Large, 331x331 (86.1M params).
pub fn pnasnet5large(opts: ZooOpts) -> Result<Model> {
    build("pnasnet5large", opts, |vb, a| Ok(Box::new(pnasnet5(vb, 96, 54, a.num_classes, a.in_chans, a.drop_rate))))
}

// ---------------------------------------------------------------- registry

/// The registered variants of this family, each one line (`name`, pretrained configs).
pub(crate) static MODELS: &[ModelEntry] = &[register!(pnasnet5large, PNASNET5LARGE)];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::assert_trains;
    use convnet_nn::store::Params;
    use std::cell::RefCell;

    /// A PNASNet-5 27 times narrower than the large one takes a training step at 35x35
    /// (all three reductions, the factorized paths and the stem cell's pooled 1x1 conv).
    #[test]
    fn a_narrow_pnasnet5_trains() {
        let store = RefCell::new(Params::new());
        let net = pnasnet5(&Vb::root(&store, 1), 6, 2, 5, 3, 0.0);
        assert_eq!(net.head.num_features, 160);
        assert_trains(
            &net,
            store,
            [2, 35, 35, 3],
            &["cell_stem_0.comb_iter_0_right.conv.weight", "cell_9.conv_prev_1x1.path_2.conv.weight"],
        );
    }
}
