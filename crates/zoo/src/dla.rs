//! Deep Layer Aggregation (Yu et al. 2018, "Deep Layer Aggregation"), as timm's `dla.py`
//! builds it, with the Res2Net bottleneck of Gao et al. 2019 for `dla60_res2net/next`.
//! After a stride-1 stem and two plain conv levels, each level is a tree: its leaves are
//! residual blocks, and each leaf pair is merged by a root node, a 1x1 conv over the
//! concatenation of the pair and of the earlier outputs handed down the tree (hierarchical
//! aggregation); a level's downsampled input joins its first root (`level_root`). The
//! classifier is a 1x1 conv on the pooled features (`fc.weight` is `[classes, c, 1, 1]`).

use crate::Model;
use crate::error::{Result, ZooError};
use crate::layers::{ConvBnAct, ConvClassifierHead, ConvOpts, avg_pool, max_pool};
use crate::model::{Architecture, ModelArgs, ZooOpts, build};
use crate::pretrained::PretrainedCfg;
use crate::registry::{ModelEntry, register};
use convnet_nn::context::Cx;
use convnet_nn::store::Vb;
use convnet_tensor::{Activation, Tensor};

const EPS: f32 = 1e-5;

// ---------------------------------------------------------------- blocks

/// The residual block at a tree's leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DlaBlockType {
    /// Two 3x3 convs (`DlaBasic`).
    Basic,
    /// 1x1, grouped 3x3, 1x1 with a width of `out * base_width / 64 * cardinality / 2`
    /// (`DlaBottleneck`).
    Bottleneck,
    /// The Res2Net bottleneck with `scale` channel groups (`DlaBottle2neck`).
    Bottle2neck {
        /// Channel groups of the 3x3 stage.
        scale: usize,
    },
}

#[derive(Debug)]
enum Block {
    Basic { conv1: ConvBnAct, conv2: ConvBnAct },
    Bottleneck { conv1: ConvBnAct, conv2: ConvBnAct, conv3: ConvBnAct },
    Bottle2neck { conv1: ConvBnAct, convs: Vec<ConvBnAct>, conv3: ConvBnAct, width: usize, stride: usize },
}

/// Widths shared by every block of a network.
#[derive(Clone, Copy, Debug)]
struct BlockCfg {
    kind: DlaBlockType,
    cardinality: usize,
    base_width: usize,
}

impl Block {
    fn new(vb: &Vb, c: BlockCfg, cin: usize, cout: usize, stride: usize) -> Self {
        let cba = |n: usize, ci: usize, co: usize, k: usize, o: ConvOpts, a: Activation| {
            ConvBnAct::new(&vb.pp(format!("conv{n}")), &vb.pp(format!("bn{n}")), ci, co, (k, k), o, EPS, a)
        };
        let (relu, lin) = (Activation::Relu, Activation::Linear);
        // timm: floor(out * base_width / 64) * cardinality, halved (the bottleneck expansion)
        let mid = cout * c.base_width / 64 * c.cardinality / 2;
        let grouped = ConvOpts::stride(stride).with_groups(c.cardinality);
        match c.kind {
            DlaBlockType::Basic => Block::Basic {
                conv1: cba(1, cin, cout, 3, ConvOpts::stride(stride), relu),
                conv2: cba(2, cout, cout, 3, ConvOpts::default(), lin),
            },
            DlaBlockType::Bottleneck => Block::Bottleneck {
                conv1: cba(1, cin, mid, 1, ConvOpts::default(), relu),
                conv2: cba(2, mid, mid, 3, grouped, relu),
                conv3: cba(3, mid, cout, 1, ConvOpts::default(), lin),
            },
            DlaBlockType::Bottle2neck { scale } => {
                let scale = scale.max(1);
                let convs = (0..(scale - 1).max(1))
                    .map(|i| {
                        let (cv, bn) = (vb.pp("convs").pp(i), vb.pp("bns").pp(i));
                        ConvBnAct::new(&cv, &bn, mid, mid, (3, 3), grouped, EPS, relu)
                    })
                    .collect();
                Block::Bottle2neck {
                    conv1: cba(1, cin, mid * scale, 1, ConvOpts::default(), relu),
                    convs,
                    conv3: cba(3, mid * scale, cout, 1, ConvOpts::default(), lin),
                    width: mid,
                    stride,
                }
            }
        }
    }

    /// `relu(block(x) + shortcut)`.
    fn forward(&self, cx: &Cx, x: &Tensor, shortcut: &Tensor) -> Result<Tensor> {
        let relu = Activation::Relu;
        match self {
            Block::Basic { conv1, conv2 } => conv2.forward_add(cx, &conv1.forward(cx, x)?, shortcut, relu),
            Block::Bottleneck { conv1, conv2, conv3 } => {
                let y = conv2.forward(cx, &conv1.forward(cx, x)?)?;
                conv3.forward_add(cx, &y, shortcut, relu)
            }
            Block::Bottle2neck { conv1, convs, conv3, width, stride } => {
                let y = conv1.forward(cx, x)?;
                let scale = y.dims()[3] / width;
                let groups = y.chunk(3, scale)?;
                // a strided block starts every group afresh and pools the last one
                let is_first = *stride > 1;
                let mut outs: Vec<Tensor> = Vec::with_capacity(scale);
                for (i, conv) in convs.iter().enumerate() {
                    let sp = match outs.last() {
                        Some(prev) if !is_first => prev.add(&groups[i])?,
                        _ => groups[i].clone(),
                    };
                    outs.push(conv.forward(cx, &sp)?);
                }
                if scale > 1 {
                    let last = &groups[scale - 1];
                    outs.push(if is_first { avg_pool(last, 3, *stride, 1, false, true)? } else { last.clone() });
                }
                let refs: Vec<&Tensor> = outs.iter().collect();
                conv3.forward_add(cx, &Tensor::concat(&refs, 3)?, shortcut, relu)
            }
        }
    }
}

/// `DlaRoot`: a 1x1 conv and norm over the concatenated children, plus the first child
/// when `shortcut` (the deeper DLAs), then ReLU.
#[derive(Debug)]
struct Root {
    conv: ConvBnAct,
    shortcut: bool,
}

impl Root {
    fn new(vb: &Vb, cin: usize, cout: usize, shortcut: bool) -> Self {
        let a = if shortcut { Activation::Linear } else { Activation::Relu };
        Root { conv: ConvBnAct::timm(vb, cin, cout, 1, ConvOpts::default(), EPS, a), shortcut }
    }

    fn forward(&self, cx: &Cx, children: &[&Tensor]) -> Result<Tensor> {
        let x = Tensor::concat(children, 3)?;
        if self.shortcut {
            self.conv.forward_add(cx, &x, children[0], Activation::Relu)
        } else {
            self.conv.forward(cx, &x)
        }
    }
}

/// A leaf tree's two blocks and their root.
#[derive(Debug)]
struct Leaf {
    tree1: Block,
    tree2: Block,
    root: Root,
}

#[derive(Debug)]
enum TreeKind {
    /// `levels == 1`: two blocks and their root.
    Leaf(Box<Leaf>),
    /// `levels > 1`: two subtrees; the second one's root takes the first one's output.
    Node { tree1: Box<Tree>, tree2: Box<Tree> },
}

/// `DlaTree`: `level{i}` and its subtrees `tree1`, `tree2`.
#[derive(Debug)]
struct Tree {
    path: String,
    stride: usize,
    /// `project.{0,1}`: a 1x1 conv and norm onto the leaf width (leaf trees whose width changes).
    project: Option<ConvBnAct>,
    level_root: bool,
    kind: TreeKind,
}

/// How a tree is built (timm's `DlaTree` arguments).
#[derive(Clone, Copy, Debug)]
struct TreeArgs {
    levels: usize,
    cin: usize,
    cout: usize,
    stride: usize,
    level_root: bool,
    /// Input width of the root (0: twice `cout`).
    root_dim: usize,
    root_shortcut: bool,
}

impl Tree {
    fn new(vb: &Vb, c: BlockCfg, t: TreeArgs) -> Self {
        let mut root_dim = if t.root_dim == 0 { 2 * t.cout } else { t.root_dim };
        if t.level_root {
            root_dim += t.cin;
        }
        let (project, kind) = if t.levels <= 1 {
            let project = (t.cin != t.cout).then(|| {
                let (cv, bn) = (vb.pp("project").pp(0), vb.pp("project").pp(1));
                ConvBnAct::new(&cv, &bn, t.cin, t.cout, (1, 1), ConvOpts::default(), EPS, Activation::Linear)
            });
            let kind = TreeKind::Leaf(Box::new(Leaf {
                tree1: Block::new(&vb.pp("tree1"), c, t.cin, t.cout, t.stride),
                tree2: Block::new(&vb.pp("tree2"), c, t.cout, t.cout, 1),
                root: Root::new(&vb.pp("root"), root_dim, t.cout, t.root_shortcut),
            }));
            (project, kind)
        } else {
            let sub = TreeArgs { levels: t.levels - 1, level_root: false, ..t };
            let tree1 = Tree::new(&vb.pp("tree1"), c, TreeArgs { root_dim: 0, ..sub });
            let tree2 =
                Tree::new(&vb.pp("tree2"), c, TreeArgs { cin: t.cout, stride: 1, root_dim: root_dim + t.cout, ..sub });
            (None, TreeKind::Node { tree1: Box::new(tree1), tree2: Box::new(tree2) })
        };
        Tree { path: vb.prefix().to_string(), stride: t.stride, project, level_root: t.level_root, kind }
    }

    /// `x: [n, h, w, cin] -> [n, h/stride, w/stride, cout]`; `children`: the outputs handed
    /// down to this tree's last root.
    fn forward(&self, cx: &Cx, x: &Tensor, mut children: Vec<Tensor>) -> Result<Tensor> {
        let bottom = if self.stride > 1 { max_pool(x, self.stride, self.stride, 0, false)? } else { x.clone() };
        if self.level_root {
            children.push(bottom.clone());
        }
        let y = match &self.kind {
            TreeKind::Leaf(leaf) => {
                let Leaf { tree1, tree2, root } = leaf.as_ref();
                let shortcut = match &self.project {
                    Some(p) => p.forward(cx, &bottom)?,
                    None => bottom,
                };
                let x1 = tree1.forward(cx, x, &shortcut)?;
                let x2 = tree2.forward(cx, &x1, &x1)?;
                let mut all = vec![&x2, &x1];
                all.extend(children.iter());
                root.forward(cx, &all)?
            }
            TreeKind::Node { tree1, tree2 } => {
                let x1 = tree1.forward(cx, x, Vec::new())?;
                children.push(x1.clone());
                tree2.forward(cx, &x1, children)?
            }
        };
        cx.record(&self.path, "DlaTree", &y);
        Ok(y)
    }
}

// ---------------------------------------------------------------- model

/// A DLA: the depth of each level's tree, the widths, and the leaf block.
#[derive(Clone, Debug, PartialEq)]
pub struct DlaConfig {
    /// Convs of `level0`, `level1`, then the tree depth of `level2..=level5`.
    pub levels: [usize; 6],
    /// Output width of the stem and of each level.
    pub channels: [usize; 6],
    /// The leaf block.
    pub block: DlaBlockType,
    /// Groups of the bottleneck's 3x3 conv.
    pub cardinality: usize,
    /// Bottleneck width per 64 output channels (before the halving).
    pub base_width: usize,
    /// Roots add their first child (`shortcut_root`).
    pub shortcut_root: bool,
    /// Classes (0: no classifier).
    pub num_classes: usize,
    /// Input channels.
    pub in_chans: usize,
    /// Dropout before the classifier.
    pub drop_rate: f32,
}

impl From<&ModelArgs> for DlaConfig {
    fn from(a: &ModelArgs) -> Self {
        DlaConfig {
            levels: [1, 1, 1, 2, 2, 1],
            channels: [16, 32, 64, 128, 256, 512],
            block: DlaBlockType::Basic,
            cardinality: 1,
            base_width: 64,
            shortcut_root: false,
            num_classes: a.num_classes,
            in_chans: a.in_chans,
            drop_rate: a.drop_rate,
        }
    }
}

/// DLA: `base_layer.{0,1}`, `level0`, `level1` (conv levels, `level{i}.{3j,3j+1}`),
/// `level2..5` (trees), `fc` (1x1 conv with bias).
#[derive(Debug)]
pub struct Dla {
    stem: ConvBnAct,
    conv_levels: [Vec<ConvBnAct>; 2],
    trees: Vec<Tree>,
    head: ConvClassifierHead,
}

impl Dla {
    /// Builds the network under `vb`.
    pub fn new(vb: &Vb, cfg: DlaConfig) -> Result<Self> {
        let ch = cfg.channels;
        let c = BlockCfg { kind: cfg.block, cardinality: cfg.cardinality.max(1), base_width: cfg.base_width };
        if let DlaBlockType::Bottleneck | DlaBlockType::Bottle2neck { .. } = c.kind {
            for &w in &ch[2..] {
                let mid = w * c.base_width / 64 * c.cardinality / 2;
                if mid == 0 || !mid.is_multiple_of(c.cardinality) {
                    return Err(ZooError::arg(
                        "cardinality",
                        format!(
                            "bottleneck width {mid} of a {w}-channel level is not a positive multiple of {}",
                            c.cardinality
                        ),
                    ));
                }
            }
        }
        if cfg.levels[..2].contains(&0) {
            return Err(ZooError::arg("levels", "level0 and level1 need at least one conv each"));
        }
        let relu = Activation::Relu;
        let stem_o = ConvOpts::default();
        let stem = ConvBnAct::new(
            &vb.pp("base_layer").pp(0),
            &vb.pp("base_layer").pp(1),
            cfg.in_chans,
            ch[0],
            (7, 7),
            stem_o,
            EPS,
            relu,
        );
        let conv_level = |i: usize, cin: usize, cout: usize, stride: usize| -> Vec<ConvBnAct> {
            let lv = vb.pp(format!("level{i}"));
            (0..cfg.levels[i])
                .map(|j| {
                    let o = ConvOpts::stride(if j == 0 { stride } else { 1 });
                    let ci = if j == 0 { cin } else { cout };
                    ConvBnAct::new(&lv.pp(3 * j), &lv.pp(3 * j + 1), ci, cout, (3, 3), o, EPS, relu)
                })
                .collect()
        };
        let conv_levels = [conv_level(0, ch[0], ch[0], 1), conv_level(1, ch[0], ch[1], 2)];
        let trees = (2..6)
            .map(|i| {
                let t = TreeArgs {
                    levels: cfg.levels[i],
                    cin: ch[i - 1],
                    cout: ch[i],
                    stride: 2,
                    level_root: i > 2,
                    root_dim: 0,
                    root_shortcut: cfg.shortcut_root,
                };
                Tree::new(&vb.pp(format!("level{i}")), c, t)
            })
            .collect();
        let head = ConvClassifierHead::new(&vb.pp("fc"), ch[5], cfg.num_classes, cfg.drop_rate);
        Ok(Dla { stem, conv_levels, trees, head })
    }
}

impl Architecture for Dla {
    fn forward_features(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let mut x = self.stem.forward(cx, x)?;
        cx.record("base_layer", "Sequential", &x);
        for (i, level) in self.conv_levels.iter().enumerate() {
            for conv in level {
                x = conv.forward(cx, &x)?;
            }
            cx.record(&format!("level{i}"), "Sequential", &x);
        }
        for t in &self.trees {
            x = t.forward(cx, &x, Vec::new())?;
        }
        Ok(x)
    }
    fn forward_head(&self, cx: &Cx, x: &Tensor, pre_logits: bool) -> Result<Tensor> {
        self.head.forward(cx, x, pre_logits)
    }
    fn num_features(&self) -> usize {
        self.head.num_features
    }
    fn num_classes(&self) -> usize {
        self.head.num_classes
    }
    fn reset_classifier(&mut self, vb: &Vb, num_classes: usize) {
        self.head = ConvClassifierHead::new(&vb.pp("fc"), self.head.num_features, num_classes, self.head.drop_rate);
    }
}

// ---------------------------------------------------------------- pretrained configs

/// timm's `_cfg` for DLAs: bilinear, crop 0.875, first conv `base_layer.0`.
const fn cfg(tag: &'static str) -> PretrainedCfg {
    PretrainedCfg::imagenet(tag, "base_layer.0", "fc")
}

pub(crate) static DLA34: &[PretrainedCfg] = &[cfg("in1k")];
pub(crate) static DLA46_C: &[PretrainedCfg] = &[cfg("in1k")];
pub(crate) static DLA46X_C: &[PretrainedCfg] = &[cfg("in1k")];
pub(crate) static DLA60X_C: &[PretrainedCfg] = &[cfg("in1k")];
pub(crate) static DLA60: &[PretrainedCfg] = &[cfg("in1k")];
pub(crate) static DLA60X: &[PretrainedCfg] = &[cfg("in1k")];
pub(crate) static DLA102: &[PretrainedCfg] = &[cfg("in1k")];
pub(crate) static DLA102X: &[PretrainedCfg] = &[cfg("in1k")];
pub(crate) static DLA102X2: &[PretrainedCfg] = &[cfg("in1k")];
pub(crate) static DLA169: &[PretrainedCfg] = &[cfg("in1k")];
pub(crate) static DLA60_RES2NET: &[PretrainedCfg] = &[cfg("in1k")];
pub(crate) static DLA60_RES2NEXT: &[PretrainedCfg] = &[cfg("in1k")];

// ---------------------------------------------------------------- entry points

/// The wide DLAs' level widths.
const WIDE: [usize; 6] = [16, 32, 128, 256, 512, 1024];
/// The compact (`_c`) DLAs' level widths.
const COMPACT: [usize; 6] = [16, 32, 64, 64, 128, 256];

fn dla(arch: &'static str, opts: ZooOpts, f: impl FnOnce(DlaConfig) -> DlaConfig) -> Result<Model> {
    build(arch, opts, |vb, a| Ok(Box::new(Dla::new(vb, f(a.into()))?)))
}

/// A bottleneck DLA of `levels` and `channels` with `cardinality` groups of `base_width`.
fn bottleneck(
    arch: &'static str,
    opts: ZooOpts,
    levels: [usize; 6],
    channels: [usize; 6],
    cardinality: usize,
    base_width: usize,
    shortcut_root: bool,
) -> Result<Model> {
    dla(arch, opts, |c| DlaConfig {
        levels,
        channels,
        block: DlaBlockType::Bottleneck,
        cardinality,
        base_width,
        shortcut_root,
        ..c
    })
}

/// DLA-34: basic blocks.
pub fn dla34(opts: ZooOpts) -> Result<Model> {
    dla("dla34", opts, |c| c)
}
/// DLA-46-C: compact bottlenecks.
pub fn dla46_c(opts: ZooOpts) -> Result<Model> {
    bottleneck("dla46_c", opts, [1, 1, 1, 2, 2, 1], COMPACT, 1, 64, false)
}
/// DLA-X-46-C: compact 32-group bottlenecks.
pub fn dla46x_c(opts: ZooOpts) -> Result<Model> {
    bottleneck("dla46x_c", opts, [1, 1, 1, 2, 2, 1], COMPACT, 32, 4, false)
}
/// DLA-X-60-C: compact 32-group bottlenecks.
pub fn dla60x_c(opts: ZooOpts) -> Result<Model> {
    bottleneck("dla60x_c", opts, [1, 1, 1, 2, 3, 1], COMPACT, 32, 4, false)
}
/// DLA-60.
pub fn dla60(opts: ZooOpts) -> Result<Model> {
    bottleneck("dla60", opts, [1, 1, 1, 2, 3, 1], WIDE, 1, 64, false)
}
/// DLA-X-60: 32-group bottlenecks.
pub fn dla60x(opts: ZooOpts) -> Result<Model> {
    bottleneck("dla60x", opts, [1, 1, 1, 2, 3, 1], WIDE, 32, 4, false)
}
/// DLA-102: roots with a shortcut.
pub fn dla102(opts: ZooOpts) -> Result<Model> {
    bottleneck("dla102", opts, [1, 1, 1, 3, 4, 1], WIDE, 1, 64, true)
}
/// DLA-X-102: 32-group bottlenecks, roots with a shortcut.
pub fn dla102x(opts: ZooOpts) -> Result<Model> {
    bottleneck("dla102x", opts, [1, 1, 1, 3, 4, 1], WIDE, 32, 4, true)
}
/// DLA-X-102 64: 64-group bottlenecks, roots with a shortcut.
pub fn dla102x2(opts: ZooOpts) -> Result<Model> {
    bottleneck("dla102x2", opts, [1, 1, 1, 3, 4, 1], WIDE, 64, 4, true)
}
/// DLA-169: roots with a shortcut.
pub fn dla169(opts: ZooOpts) -> Result<Model> {
    bottleneck("dla169", opts, [1, 1, 2, 3, 5, 1], WIDE, 1, 64, true)
}
/// DLA-60 with Res2Net bottlenecks (scale 4, width 28).
pub fn dla60_res2net(opts: ZooOpts) -> Result<Model> {
    dla("dla60_res2net", opts, |c| DlaConfig {
        levels: [1, 1, 1, 2, 3, 1],
        channels: WIDE,
        block: DlaBlockType::Bottle2neck { scale: 4 },
        cardinality: 1,
        base_width: 28,
        ..c
    })
}
/// DLA-60 with Res2NeXt bottlenecks (scale 4, 8 groups of 4).
pub fn dla60_res2next(opts: ZooOpts) -> Result<Model> {
    dla("dla60_res2next", opts, |c| DlaConfig {
        levels: [1, 1, 1, 2, 3, 1],
        channels: WIDE,
        block: DlaBlockType::Bottle2neck { scale: 4 },
        cardinality: 8,
        base_width: 4,
        ..c
    })
}

// ---------------------------------------------------------------- registry

/// The registered variants of this family, each one line (`name`, pretrained configs).
pub(crate) static MODELS: &[ModelEntry] = &[
    register!(dla34, DLA34),
    register!(dla46_c, DLA46_C),
    register!(dla46x_c, DLA46X_C),
    register!(dla60x_c, DLA60X_C),
    register!(dla60, DLA60),
    register!(dla60x, DLA60X),
    register!(dla102, DLA102),
    register!(dla102x, DLA102X),
    register!(dla102x2, DLA102X2),
    register!(dla169, DLA169),
    register!(dla60_res2net, DLA60_RES2NET),
    register!(dla60_res2next, DLA60_RES2NEXT),
];

// ---------------------------------------------------------------- tests

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_sgd_lowers_loss, random_images};

    #[test]
    fn levels_halve_the_map_and_the_head_is_a_1x1_conv() {
        let mut m = dla46_c(ZooOpts::new().with_num_classes(7)).unwrap();
        let x = random_images(2, 64, 1);
        let f = m.forward_features(&x).unwrap();
        assert_eq!(f.dims(), [2, 2, 2, 256]);
        assert_eq!(m.forward(&x).unwrap().dims(), [2, 7]);
        assert_eq!(m.params().by_key("fc.weight").unwrap().torch_shape(), vec![7, 256, 1, 1]);
        // level3 (2 levels deep, level root): its last root sees both leaves, the first
        // subtree's output and the pooled input: 64 + 64 + 64 + 64 channels
        assert_eq!(m.params().by_key("level3.tree2.root.conv.weight").unwrap().torch_shape(), vec![64, 256, 1, 1]);
        m.reset_classifier(0, 3);
        assert_eq!(m.forward(&x).unwrap().dims(), [2, 256]);
    }

    #[test]
    fn shortcut_roots_and_res2net_leaves_train() {
        let mut m = dla60_res2next(ZooOpts::new().with_num_classes(10).with_seed(5)).unwrap();
        assert_sgd_lowers_loss(&mut m);
        let mut m = dla102x(ZooOpts::new().with_num_classes(10).with_seed(5)).unwrap();
        assert_sgd_lowers_loss(&mut m);
    }

    #[test]
    fn bad_widths_are_errors() {
        let a = ModelArgs { num_classes: 10, in_chans: 3, drop_rate: 0.0, drop_path_rate: 0.0 };
        let store = std::cell::RefCell::new(convnet_nn::store::Params::new());
        let vb = Vb::root(&store, 0);
        // 64 * 1 / 64 / 2 rounds to an empty bottleneck
        let cfg = DlaConfig { block: DlaBlockType::Bottleneck, base_width: 1, ..(&a).into() };
        let err = Dla::new(&vb, cfg).unwrap_err();
        assert!(err.to_string().contains("bottleneck width 0"), "{err}");
    }
}
