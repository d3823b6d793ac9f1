//! The inverted-residual builder shared by EfficientNet, MobileNet-V2 and MobileNet-V3, as
//! timm builds them (`timm/models/_efficientnet_builder.py`, `_efficientnet_blocks.py`):
//! timm's block strings (`ir_r2_k3_s2_e6_c24_se0.25_nre`) decoded into [`BlockDef`]s,
//! per-stage depth scaling, channel rounding, the squeeze-excitation width rule
//! ([`SeRule`]: from the block input or from the expanded width, Python rounding or
//! `make_divisible`, forced activation, sigmoid or hard-sigmoid gate) and the three block
//! types (`ds`, `ir`, `cn`), keyed `blocks.{stage}.{block}` as timm's state dicts are.
//!
//! Block strings are timm's: the leading block type, then `r` repeats, `k` kernel, `s`
//! stride, `e` expansion, `c` output channels, `se` squeeze-excitation ratio, `n` activation
//! (`nre` ReLU, `nr6` ReLU6, `nhs` hard-swish, `nsw` SiLU; absent: the model's), `noskip`,
//! `skip`. Families keep their definitions as strings so they read as timm's do.

use crate::error::{Result, ZooError};
use crate::layers::{ConvBnAct, ConvOpts, SeConfig, SqueezeExcite, drop_path, make_divisible};
use convnet_nn::context::Cx;
use convnet_nn::store::Vb;
use convnet_tensor::{Activation, Tensor};

// ---------------------------------------------------------------- block definitions

/// An architecture definition: stages of block strings (timm's `arch_def`).
pub type ArchDef = &'static [&'static [&'static str]];

/// The block types this builder makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    /// `ds`, timm's `DepthwiseSeparableConv`: dw conv, (SE), pw conv without activation.
    DepthwiseSeparable,
    /// `ir`, timm's `InvertedResidual` (MBConv): pw expand, dw conv, (SE), pw project.
    InvertedResidual,
    /// `cn`, timm's `ConvBnAct`: one conv, norm and activation (MobileNet-V3's last stage).
    ConvBnAct,
}

impl BlockKind {
    fn name(self) -> &'static str {
        match self {
            BlockKind::DepthwiseSeparable => "DepthwiseSeparable",
            BlockKind::InvertedResidual => "InvertedResidual",
            BlockKind::ConvBnAct => "ConvBnAct",
        }
    }
}

/// One decoded block string (before channel scaling).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockDef {
    /// Block type.
    pub kind: BlockKind,
    /// Repeats (after [`scale_stage_depth`], the scaled count).
    pub repeats: usize,
    /// Kernel of the depthwise conv (`cn`: of its conv).
    pub kernel: usize,
    /// Stride of the first repeat.
    pub stride: usize,
    /// Expansion ratio (`ir`; 1 for the others).
    pub expand: f64,
    /// Output channels before width scaling.
    pub out_chs: usize,
    /// Squeeze-excitation ratio (0: none).
    pub se_ratio: f64,
    /// The block's own activation, overriding the model's.
    pub act: Option<Activation>,
    /// `noskip` (`Some(false)`) or `skip` (`Some(true)`, `cn` only); `None`: the default
    /// (a residual wherever shapes allow it, none for `cn`).
    pub skip: Option<bool>,
}

impl BlockDef {
    /// Decodes one of timm's block strings (`_decode_block_str`).
    pub fn parse(s: &str) -> Result<BlockDef> {
        let bad = |why: String| ZooError::arg("block string", format!("{s:?}: {why}"));
        let mut ops = s.split('_');
        let kind = match ops.next().unwrap_or("") {
            "ds" => BlockKind::DepthwiseSeparable,
            "ir" => BlockKind::InvertedResidual,
            "cn" => BlockKind::ConvBnAct,
            t => return Err(bad(format!("block type {t:?} is not one of ds, ir, cn"))),
        };
        let (mut r, mut k, mut st, mut e, mut c, mut se) = (None, None, None, None, None, 0.0);
        let (mut act, mut skip) = (None, None);
        for op in ops {
            if op == "noskip" {
                skip = Some(false);
            } else if op == "skip" {
                skip = Some(true);
            } else if let Some(a) = op.strip_prefix('n') {
                // unknown activation names are ignored, as timm does
                act = match a {
                    "re" => Some(Activation::Relu),
                    "r6" => Some(Activation::Relu6),
                    "hs" => Some(Activation::HardSwish),
                    "sw" => Some(Activation::Silu),
                    _ => act,
                };
            } else if let Some(i) = op.find(|ch: char| ch.is_ascii_digit()) {
                let (key, value) = op.split_at(i);
                let int = || value.parse::<usize>().map_err(|_| bad(format!("{key}{value}: not an integer")));
                let float = || value.parse::<f64>().map_err(|_| bad(format!("{key}{value}: not a number")));
                match key {
                    "r" => r = Some(int()?),
                    "k" => k = Some(int()?),
                    "s" => st = Some(int()?),
                    "e" => e = Some(float()?),
                    "c" => c = Some(int()?),
                    "se" => se = float()?,
                    _ => return Err(bad(format!("option {key:?} is not supported"))),
                }
            }
        }
        let need = |v: Option<usize>, what: &str| v.ok_or_else(|| bad(format!("no {what}")));
        let stride = need(st, "stride (s)")?;
        if !(1..=2).contains(&stride) {
            return Err(bad(format!("stride {stride} is not 1 or 2")));
        }
        let expand = match kind {
            BlockKind::InvertedResidual => e.ok_or_else(|| bad("no expansion (e)".into()))?,
            _ => 1.0,
        };
        if kind == BlockKind::ConvBnAct && se > 0.0 {
            return Err(bad("a cn block has no squeeze-excitation".into()));
        }
        Ok(BlockDef {
            kind,
            repeats: need(r, "repeats (r)")?,
            kernel: need(k, "kernel (k)")?,
            stride,
            expand,
            out_chs: need(c, "output channels (c)")?,
            se_ratio: se,
            act,
            skip,
        })
    }
}

/// Scales the repeats of one stage's definitions by `multiplier` (timm's
/// `_scale_stage_depth`, 'ceil'): the stage's total is scaled and rounded up, then shared
/// out from the last definition back, so the first definition is the last to grow.
pub fn scale_stage_depth(defs: &[BlockDef], multiplier: f64) -> Vec<BlockDef> {
    let mut total: usize = defs.iter().map(|d| d.repeats).sum();
    let mut scaled_total = (total as f64 * multiplier).ceil() as usize;
    let mut out = defs.to_vec();
    for d in out.iter_mut().rev() {
        let r = d.repeats;
        // Python's round: ties to even
        let rs = ((r as f64 / total as f64 * scaled_total as f64).round_ties_even() as usize).max(1);
        d.repeats = rs;
        total -= r;
        scaled_total = scaled_total.saturating_sub(rs);
    }
    out
}

/// Decodes an architecture definition and scales each stage's depth (timm's
/// `decode_arch_def`); with `fix_first_last` the first and last stages keep theirs.
pub fn decode_arch_def(def: ArchDef, depth_multiplier: f64, fix_first_last: bool) -> Result<Vec<Vec<BlockDef>>> {
    let n = def.len();
    def.iter()
        .enumerate()
        .map(|(i, stage)| {
            let defs = stage.iter().map(|s| BlockDef::parse(s)).collect::<Result<Vec<_>>>()?;
            let m = if fix_first_last && (i == 0 || i + 1 == n) { 1.0 } else { depth_multiplier };
            Ok(scale_stage_depth(&defs, m))
        })
        .collect()
}

// ---------------------------------------------------------------- squeeze-excitation rule

/// How a squeeze-excitation's reduced width is rounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeRound {
    /// Python's `round` (timm's default `rd_round_fn`).
    Nearest,
    /// timm's `round_channels`: `make_divisible(v, divisor)` (MobileNet-V3).
    Divisible(usize),
}

/// Which squeeze-excitation the blocks get (timm's `se_layer` partial and `se_from_exp`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SeRule {
    /// Reduced width from the expanded width (`se_from_exp`, MobileNet-V3) or from the
    /// block input (EfficientNet: the ratio is divided by the expansion).
    pub from_exp: bool,
    /// Rounding of the reduced width.
    pub round: SeRound,
    /// Forced activation (`force_act_layer`); `None`: the block's.
    pub act: Option<Activation>,
    /// The gate.
    pub gate: Activation,
}

impl SeRule {
    /// EfficientNet's: width from the block input, Python rounding, the block's
    /// activation, sigmoid gate.
    pub const EFFICIENTNET: SeRule =
        SeRule { from_exp: false, round: SeRound::Nearest, act: None, gate: Activation::Sigmoid };
    /// MobileNet-V3's: width from the expanded width rounded to 8, ReLU, hard-sigmoid gate.
    pub const MOBILENETV3: SeRule = SeRule {
        from_exp: true,
        round: SeRound::Divisible(8),
        act: Some(Activation::Relu),
        gate: Activation::HardSigmoid,
    };
    /// `mobilenetv3_rw`'s: width from the expanded width, Python rounding, the block's
    /// activation, hard-sigmoid gate.
    pub const MOBILENETV3_RW: SeRule =
        SeRule { from_exp: true, round: SeRound::Nearest, act: None, gate: Activation::HardSigmoid };

    /// The reduced width of a squeeze-excitation over `chs` channels in a block with
    /// expansion `expand` (`_make_block` and `SqueezeExcite.__init__`).
    pub fn rd_channels(&self, chs: usize, se_ratio: f64, expand: f64) -> usize {
        let ratio = if self.from_exp { se_ratio } else { se_ratio / expand };
        let v = chs as f64 * ratio;
        match self.round {
            SeRound::Nearest => v.round_ties_even() as usize,
            SeRound::Divisible(d) => make_divisible(v, d, None),
        }
    }
}

// ---------------------------------------------------------------- builder

/// What the builder needs from the model (timm's `EfficientNetBuilder` arguments).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BuilderConfig {
    /// Width multiplier (`round_chs_fn = round_channels(c, multiplier)`).
    pub channel_multiplier: f64,
    /// The model's activation, for blocks without their own.
    pub act: Activation,
    /// Squeeze-excitation rule.
    pub se: SeRule,
    /// Batch-norm epsilon.
    pub bn_eps: f32,
    /// TensorFlow "SAME" padding (`tf_` ports).
    pub tf_same: bool,
    /// Stochastic-depth rate of the last block.
    pub drop_path_rate: f32,
}

impl BuilderConfig {
    /// timm's stem for these networks: a 3x3 stride-2 `conv_stem` + `bn1` with the model's
    /// activation, `stem_size` channels rounded by the width multiplier unless `fix_stem`.
    /// Returns the stem and its output channels.
    pub fn build_stem(&self, vb: &Vb, in_chans: usize, stem_size: usize, fix_stem: bool) -> (ConvBnAct, usize) {
        let chs = if fix_stem { stem_size } else { self.round_chs(stem_size) };
        let opts = ConvOpts::stride(2).with_tf_same(self.tf_same);
        let conv =
            ConvBnAct::new(&vb.pp("conv_stem"), &vb.pp("bn1"), in_chans, chs, (3, 3), opts, self.bn_eps, self.act);
        (conv, chs)
    }

    /// `round_channels(c, channel_multiplier)`: `make_divisible(c * multiplier, 8)`.
    pub fn round_chs(&self, c: usize) -> usize {
        make_divisible(c as f64 * self.channel_multiplier, 8, None)
    }
}

/// One built block of any [`BlockKind`].
#[derive(Debug)]
pub struct MbBlock {
    path: String,
    kind: BlockKind,
    /// `ir`: the expansion (`conv_pw`, `bn1`).
    conv_pw: Option<ConvBnAct>,
    /// `ir`: `conv_dw`, `bn2`; `ds`: `conv_dw`, `bn1`; `cn`: none.
    conv_dw: Option<ConvBnAct>,
    se: Option<SqueezeExcite>,
    /// `ir`: the projection (`conv_pwl`, `bn3`); `ds`: `conv_pw`, `bn2`; both without
    /// activation. `cn`: `conv`, `bn1` with the activation.
    last: ConvBnAct,
    has_skip: bool,
    drop_path: f32,
}

impl MbBlock {
    /// Builds one block under `vb` (its own prefix, `blocks.2.1`).
    fn new(vb: &Vb, d: &BlockDef, in_chs: usize, out_chs: usize, stride: usize, dpr: f32, cfg: &BuilderConfig) -> Self {
        let act = d.act.unwrap_or(cfg.act);
        let eps = cfg.bn_eps;
        let cba = |conv: &str, bn: &str, cin: usize, cout: usize, k: usize, o: ConvOpts, a: Activation| {
            ConvBnAct::new(&vb.pp(conv), &vb.pp(bn), cin, cout, (k, k), o, eps, a)
        };
        let spatial = |groups: usize| ConvOpts::stride(stride).with_groups(groups).with_tf_same(cfg.tf_same);
        let pw = ConvOpts::default();
        let se = |c: usize| {
            (d.se_ratio > 0.0).then(|| {
                let rd = cfg.se.rd_channels(c, d.se_ratio, d.expand);
                let se_cfg = SeConfig::efficientnet(rd, cfg.se.act.unwrap_or(act)).with_gate(cfg.se.gate);
                SqueezeExcite::new(&vb.pp("se"), c, &se_cfg)
            })
        };
        let (conv_pw, conv_dw, se, last, has_skip) = match d.kind {
            BlockKind::DepthwiseSeparable => (
                None,
                Some(cba("conv_dw", "bn1", in_chs, in_chs, d.kernel, spatial(in_chs), act)),
                se(in_chs),
                cba("conv_pw", "bn2", in_chs, out_chs, 1, pw, Activation::Linear),
                d.skip != Some(false),
            ),
            BlockKind::InvertedResidual => {
                let mid = make_divisible(in_chs as f64 * d.expand, 8, None);
                (
                    Some(cba("conv_pw", "bn1", in_chs, mid, 1, pw, act)),
                    Some(cba("conv_dw", "bn2", mid, mid, d.kernel, spatial(mid), act)),
                    se(mid),
                    cba("conv_pwl", "bn3", mid, out_chs, 1, pw, Activation::Linear),
                    d.skip != Some(false),
                )
            }
            BlockKind::ConvBnAct => {
                (None, None, None, cba("conv", "bn1", in_chs, out_chs, d.kernel, spatial(1), act), d.skip == Some(true))
            }
        };
        MbBlock {
            path: vb.prefix().to_string(),
            kind: d.kind,
            conv_pw,
            conv_dw,
            se,
            last,
            has_skip: has_skip && stride == 1 && in_chs == out_chs,
            drop_path: dpr,
        }
    }

    /// `x: [n, h, w, in] -> [n, h / stride, w / stride, out]`.
    pub fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let mut y = match &self.conv_pw {
            Some(c) => c.forward(cx, x)?,
            None => x.clone(),
        };
        if let Some(dw) = &self.conv_dw {
            y = match &self.se {
                // the depthwise conv also gives the squeeze-excitation its input's mean
                Some(se) => {
                    let (y, mean) = dw.forward_mean(cx, &y)?;
                    se.excite(cx, y, &mean)?
                }
                None => dw.forward(cx, &y)?,
            };
        }
        let y = if !self.has_skip {
            self.last.forward(cx, &y)?
        } else if cx.training() && self.drop_path > 0.0 {
            drop_path(cx, &self.last.forward(cx, &y)?, self.drop_path)?.add(x)?
        } else {
            // in eval mode the residual is added in the projection's store
            self.last.forward_add(cx, &y, x, Activation::Linear)?
        };
        cx.record(&self.path, self.kind.name(), &y);
        Ok(y)
    }
}

/// The blocks of a decoded definition under `vb` (the `blocks` prefix) from `in_chs`
/// input channels: `blocks[stage][block]` and the last block's output channels. Block
/// `i` of `total` gets stochastic depth `drop_path_rate * i / total`, as timm's builder.
pub fn build_blocks(
    vb: &Vb,
    in_chs: usize,
    stages: &[Vec<BlockDef>],
    cfg: &BuilderConfig,
) -> (Vec<Vec<MbBlock>>, usize) {
    let total: usize = stages.iter().flatten().map(|d| d.repeats).sum();
    let mut in_chs = in_chs;
    let mut idx = 0;
    let mut blocks = Vec::with_capacity(stages.len());
    for (si, defs) in stages.iter().enumerate() {
        let mut stage = Vec::new();
        for d in defs {
            let out = cfg.round_chs(d.out_chs);
            for _ in 0..d.repeats {
                // only a stage's first block strides
                let stride = if stage.is_empty() { d.stride } else { 1 };
                let dpr = cfg.drop_path_rate * idx as f32 / total.max(1) as f32;
                stage.push(MbBlock::new(&vb.pp(si).pp(stage.len()), d, in_chs, out, stride, dpr, cfg));
                in_chs = out;
                idx += 1;
            }
        }
        blocks.push(stage);
    }
    (blocks, in_chs)
}

/// Runs every block in order.
pub fn forward_blocks(cx: &Cx, blocks: &[Vec<MbBlock>], x: Tensor) -> Result<Tensor> {
    let mut x = x;
    for b in blocks.iter().flatten() {
        x = b.forward(cx, &x)?;
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_strings_decode_as_timm() {
        let d = BlockDef::parse("ir_r2_k5_s2_e4.5_c40_se0.25_nre").unwrap();
        assert_eq!(d.kind, BlockKind::InvertedResidual);
        assert_eq!((d.repeats, d.kernel, d.stride, d.out_chs), (2, 5, 2, 40));
        assert_eq!((d.expand, d.se_ratio, d.act, d.skip), (4.5, 0.25, Some(Activation::Relu), None));
        // ds ignores `e`; noskip is not an activation
        let d = BlockDef::parse("ds_r1_k3_s1_e1_c16_nre_noskip").unwrap();
        assert_eq!((d.kind, d.expand, d.skip), (BlockKind::DepthwiseSeparable, 1.0, Some(false)));
        assert_eq!(BlockDef::parse("cn_r1_k1_s1_c960").unwrap().kind, BlockKind::ConvBnAct);
        for bad in
            ["er_r1_k3_s1_e4_c24", "ir_r1_k3_s1_c24", "ir_r1_k3_s3_e6_c24", "ir_r1_k3.5_s1_e6_c24", "ds_k3_s1_c8"]
        {
            assert!(BlockDef::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stage_depth_scaling_follows_timm() {
        // mobilenetv3_large_150d's stage 3 (1 + 1 + 2 repeats, x1.2): ceil(4.8) = 5 shared
        // from the back: round(2 / 4 * 5) = 2, round(1 / 2 * 3) = 2, then 1
        let defs: Vec<BlockDef> = ["ir_r1_k3_s2_e6_c80", "ir_r1_k3_s1_e2.5_c80", "ir_r2_k3_s1_e2.3_c80"]
            .iter()
            .map(|s| BlockDef::parse(s).unwrap())
            .collect();
        let r: Vec<usize> = scale_stage_depth(&defs, 1.2).iter().map(|d| d.repeats).collect();
        assert_eq!(r, [1, 2, 2]);
        const B0: ArchDef = &[
            &["ds_r1_k3_s1_e1_c16_se0.25"],
            &["ir_r2_k3_s2_e6_c24_se0.25"],
            &["ir_r2_k5_s2_e6_c40_se0.25"],
            &["ir_r3_k3_s2_e6_c80_se0.25"],
            &["ir_r3_k5_s1_e6_c112_se0.25"],
            &["ir_r4_k5_s2_e6_c192_se0.25"],
            &["ir_r1_k3_s1_e6_c320_se0.25"],
        ];
        let count = |m: f64, fix: bool| -> Vec<usize> {
            decode_arch_def(B0, m, fix).unwrap().iter().map(|s| s.iter().map(|d| d.repeats).sum()).collect()
        };
        assert_eq!(count(3.1, false), [4, 7, 7, 10, 10, 13, 4]);
        assert_eq!(count(1.8, true), [1, 4, 4, 6, 6, 8, 1]);
    }

    #[test]
    fn se_width_rules() {
        // EfficientNet: from the block input (mid 96 = 16 x 6, ratio 0.25 / 6): 4
        assert_eq!(SeRule::EFFICIENTNET.rd_channels(96, 0.25, 6.0), 4);
        // MobileNet-V3: from the expanded width, rounded to 8 (16 is under 90% of 18, so 24)
        assert_eq!(SeRule::MOBILENETV3.rd_channels(72, 0.25, 3.0), 24);
        assert_eq!(SeRule::MOBILENETV3.rd_channels(120, 0.25, 3.0), 32);
        assert_eq!(SeRule::MOBILENETV3.rd_channels(16, 0.25, 1.0), 8);
        assert_eq!(SeRule::MOBILENETV3_RW.rd_channels(72, 0.25, 3.0), 18);
    }
}
