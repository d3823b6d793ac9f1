//! Vision Transformer (Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words"), as
//! timm builds its classic variants (`timm/models/vision_transformer.py`): a patch
//! embedding (a `patch x patch` stride-`patch` conv), a class token, learned absolute
//! position embeddings, pre-norm blocks of multi-head self-attention and a GELU MLP,
//! a final layer norm and a linear head on the class token.
//!
//! The attention reads timm's fused `qkv` projection (`[3 * dim, dim]`: the query, key
//! and value rows one after another, each split into heads of `dim / heads`), and runs
//! both of its products (`q @ k^T`, `attn @ v`) through the batched GEMM, one entry per
//! image and head. At an image size other than the one the position embedding was made
//! for, the embedding's grid is resampled as timm's `resample_abs_pos_embed` does
//! (antialiased bicubic by default), inside the graph, so that it still trains.

use crate::Model;
use crate::error::{Result, ZooError};
use crate::layers::{Conv2d, ConvOpts, LayerNorm, Linear, Mlp, drop_path, dropout};
use crate::model::{Architecture, ModelArgs, ZooOpts, build};
use crate::pretrained::PretrainedCfg;
use crate::registry::{ModelEntry, register};
use convnet_nn::context::Cx;
use convnet_nn::store::{Init, Layout, ParamId, Vb};
use convnet_tensor::{Activation, Padding2d, Tensor};

pub use crate::pretrained::Interpolation;

// ---------------------------------------------------------------- attention

/// timm's `Attention`: `qkv` (one linear layer to queries, keys and values), scaled
/// dot-product attention per head, `proj`.
#[derive(Debug)]
struct Attention {
    qkv: Linear,
    proj: Linear,
    heads: usize,
    dim: usize,
}

impl Attention {
    fn new(vb: &Vb, dim: usize, heads: usize, qkv_bias: bool) -> Self {
        Attention {
            qkv: Linear::new(&vb.pp("qkv"), dim, 3 * dim, qkv_bias),
            proj: Linear::new(&vb.pp("proj"), dim, dim, true),
            heads,
            dim,
        }
    }

    /// `x: [n, tokens, dim] -> [n, tokens, dim]`.
    fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let [n, t, d] = *x.dims() else { unreachable!("blocks take [n, tokens, dim]") };
        let (h, hd) = (self.heads, self.dim / self.heads);
        let qkv = self.qkv.forward(cx, &x.reshape(vec![n * t, d])?)?;
        // [n, t, 3, h, hd] -> [3, n, h, t, hd]
        let qkv = qkv.reshape(vec![n, t, 3, h, hd])?.permute(&[2, 0, 3, 1, 4])?;
        let parts = qkv.chunk(0, 3)?;
        let [q, k, v] = &parts[..] else { unreachable!("three chunks of three") };
        let shape = vec![n, h, t, hd];
        let q = q.reshape(shape.clone())?.scale(1.0 / (hd as f32).sqrt());
        let (k, v) = (k.reshape(shape.clone())?, v.reshape(shape)?);
        let attn = q.batch_matmul(&k, false, true)?.softmax()?;
        let y = attn.batch_matmul(&v, false, false)?;
        cx.add_macs(2 * (n * h * t * t * hd) as u64);
        // [n, h, t, hd] -> [n, t, h * hd]
        let y = y.permute(&[0, 2, 1, 3])?.reshape(vec![n * t, d])?;
        Ok(self.proj.forward(cx, &y)?.reshape(vec![n, t, d])?)
    }
}

/// timm's `Block`: `x + drop_path(ls1(attn(norm1(x))))`, then `x + drop_path(ls2(mlp(norm2(x))))`.
#[derive(Debug)]
struct Block {
    path: String,
    norm1: LayerNorm,
    attn: Attention,
    ls1: Option<ParamId>,
    norm2: LayerNorm,
    mlp: Mlp,
    ls2: Option<ParamId>,
    drop_path: f32,
}

impl Block {
    fn new(vb: &Vb, cfg: &VitConfig, dpr: f32) -> Self {
        let d = cfg.embed_dim;
        let ls =
            |name: &str| cfg.init_values.map(|v| vb.pp(name).param("gamma", &[d], Layout::Plain, true, Init::Const(v)));
        Block {
            path: vb.prefix().to_string(),
            norm1: LayerNorm::new(&vb.pp("norm1"), d, cfg.norm_eps),
            attn: Attention::new(&vb.pp("attn"), d, cfg.num_heads, cfg.qkv_bias),
            ls1: ls("ls1"),
            norm2: LayerNorm::new(&vb.pp("norm2"), d, cfg.norm_eps),
            mlp: Mlp::new(&vb.pp("mlp"), d, (cfg.mlp_ratio * d as f64) as usize, d, Activation::Gelu, false),
            ls2: ls("ls2"),
            drop_path: dpr,
        }
    }

    fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let scaled = |y: Tensor, ls: Option<ParamId>| -> Result<Tensor> {
            let y = match ls {
                Some(g) => y.mul(&cx.param(g))?,
                None => y,
            };
            drop_path(cx, &y, self.drop_path)
        };
        let y = self.attn.forward(cx, &self.norm1.forward(cx, x)?)?;
        let x = scaled(y, self.ls1)?.add(x)?;
        let y = self.mlp.forward(cx, &self.norm2.forward(cx, &x)?)?;
        let x = scaled(y, self.ls2)?.add(&x)?;
        cx.record(&self.path, "Block", &x);
        Ok(x)
    }
}

// ---------------------------------------------------------------- position embedding

/// Weights of resampling `input` samples to `output` (`[output, input]`, rows summing to
/// one) as PyTorch's `F.interpolate(.., align_corners=False, antialias=True)` computes
/// them: a filter centred on `(i + 0.5) * input / output`, stretched by that ratio when
/// shrinking, cut at the borders and renormalised; bicubic uses `a = -0.5`.
pub fn resample_weights(input: usize, output: usize, mode: Interpolation) -> Vec<f64> {
    let scale = input as f64 / output as f64;
    let (support, filter): (f64, fn(f64) -> f64) = match mode {
        Interpolation::Bicubic => (2.0, |x| {
            let (a, x) = (-0.5, x.abs());
            if x < 1.0 {
                ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
            } else if x < 2.0 {
                (((x - 5.0) * x + 8.0) * x - 4.0) * a
            } else {
                0.0
            }
        }),
        _ => (1.0, |x| (1.0 - x.abs()).max(0.0)),
    };
    let (support, inv) = if scale >= 1.0 { (support * scale, 1.0 / scale) } else { (support, 1.0) };
    let mut m = vec![0.0; output * input];
    for i in 0..output {
        let center = scale * (i as f64 + 0.5);
        let lo = ((center - support + 0.5) as i64).max(0) as usize;
        let hi = ((center + support + 0.5) as i64).min(input as i64).max(0) as usize;
        let row = &mut m[i * input..(i + 1) * input];
        for (j, r) in row.iter_mut().enumerate().take(hi).skip(lo) {
            *r = filter((j as f64 - center + 0.5) * inv);
        }
        let total: f64 = row.iter().sum();
        if total != 0.0 {
            row.iter_mut().for_each(|r| *r /= total);
        }
    }
    m
}

/// `grid: [gh, gw, d]` resampled to `[oh, ow, d]`, separably (rows, then columns), as two
/// matrix products with the weights of [`resample_weights`] (differentiable).
pub fn resample_grid(grid: &Tensor, (oh, ow): (usize, usize), mode: Interpolation) -> Result<Tensor> {
    let [gh, gw, d] = *grid.dims() else {
        return Err(ZooError::arg("resample_grid", format!("needs [h, w, d], got {:?}", grid.dims())));
    };
    if (gh, gw) == (oh, ow) {
        return Ok(grid.clone());
    }
    let weights = |i: usize, o: usize| -> Result<Tensor> {
        let w: Vec<f32> = resample_weights(i, o, mode).into_iter().map(|v| v as f32).collect();
        Ok(Tensor::from_vec(w, [o, i])?)
    };
    // rows: [oh, gh] @ [gh, gw * d]
    let y = weights(gh, oh)?.matmul(&grid.reshape(vec![gh, gw * d])?)?;
    // columns: [ow, gw] @ [gw, oh * d]
    let y = y.reshape(vec![oh, gw, d])?.permute(&[1, 0, 2])?.reshape(vec![gw, oh * d])?;
    let y = weights(gw, ow)?.matmul(&y)?;
    Ok(y.reshape(vec![ow, oh, d])?.permute(&[1, 0, 2])?)
}

// ---------------------------------------------------------------- model

/// What distinguishes one ViT from another (timm's `VisionTransformer.__init__` arguments
/// for the classic models).
#[derive(Clone, Debug, PartialEq)]
pub struct VitConfig {
    /// Image size the position embedding is made for.
    pub img_size: usize,
    /// Patch size (the embedding conv's kernel and stride).
    pub patch_size: usize,
    /// Token width.
    pub embed_dim: usize,
    /// Blocks.
    pub depth: usize,
    /// Attention heads (dividing `embed_dim`).
    pub num_heads: usize,
    /// MLP width over token width.
    pub mlp_ratio: f64,
    /// A bias on the `qkv` projection.
    pub qkv_bias: bool,
    /// Initial layer-scale value (`None`: no `ls1`/`ls2`).
    pub init_values: Option<f32>,
    /// Layer-norm epsilon (1e-6).
    pub norm_eps: f32,
    /// How the position embedding is resampled at other image sizes.
    pub pos_embed_interpolation: Interpolation,
    /// Classes (0: no classifier).
    pub num_classes: usize,
    /// Input channels.
    pub in_chans: usize,
    /// Dropout before the classifier.
    pub drop_rate: f32,
    /// Stochastic-depth rate of the last block, linear from 0 over the blocks.
    pub drop_path_rate: f32,
}

impl From<&ModelArgs> for VitConfig {
    fn from(a: &ModelArgs) -> Self {
        VitConfig {
            img_size: 224,
            patch_size: 16,
            embed_dim: 768,
            depth: 12,
            num_heads: 12,
            mlp_ratio: 4.0,
            qkv_bias: true,
            init_values: None,
            norm_eps: 1e-6,
            pos_embed_interpolation: Interpolation::Bicubic,
            num_classes: a.num_classes,
            in_chans: a.in_chans,
            drop_rate: a.drop_rate,
            drop_path_rate: a.drop_path_rate,
        }
    }
}

/// ViT: `patch_embed.proj`, `cls_token`, `pos_embed`, `blocks.{i}`, `norm`, `head`.
#[derive(Debug)]
pub struct VisionTransformer {
    patch_embed: Conv2d,
    cls_token: ParamId,
    pos_embed: ParamId,
    /// The position embedding's grid (`img_size / patch_size` each way).
    grid: (usize, usize),
    blocks: Vec<Block>,
    norm: LayerNorm,
    head: Option<Linear>,
    cfg: VitConfig,
}

impl VisionTransformer {
    /// Builds the network under `vb`.
    pub fn new(vb: &Vb, cfg: VitConfig) -> Result<Self> {
        let (d, p) = (cfg.embed_dim, cfg.patch_size);
        if d == 0 || cfg.num_heads == 0 || !d.is_multiple_of(cfg.num_heads) || p == 0 || cfg.img_size < p {
            return Err(ZooError::arg(
                "vit",
                format!(
                    "embed_dim {d} must split into {} heads, and the image ({}) hold a patch ({p})",
                    cfg.num_heads, cfg.img_size
                ),
            ));
        }
        let g = cfg.img_size / p;
        let o = ConvOpts::default().with_stride(p).with_bias(true).with_padding(Padding2d::Valid);
        let patch_embed = Conv2d::new(&vb.pp("patch_embed").pp("proj"), cfg.in_chans, d, (p, p), o);
        let cls_token = vb.param("cls_token", &[1, 1, d], Layout::Plain, true, Init::Normal(1e-6));
        let pos_embed = vb.param("pos_embed", &[1, 1 + g * g, d], Layout::Plain, true, Init::Normal(0.02));
        let last = cfg.depth.saturating_sub(1).max(1);
        let blocks = (0..cfg.depth)
            .map(|i| Block::new(&vb.pp("blocks").pp(i), &cfg, cfg.drop_path_rate * i as f32 / last as f32))
            .collect();
        let norm = LayerNorm::new(&vb.pp("norm"), d, cfg.norm_eps);
        let head = (cfg.num_classes > 0).then(|| Linear::new(&vb.pp("head"), d, cfg.num_classes, true));
        Ok(VisionTransformer { patch_embed, cls_token, pos_embed, grid: (g, g), blocks, norm, head, cfg })
    }

    /// The position embedding for a `gh x gw` patch grid: `[1, 1 + gh * gw, dim]`, the
    /// stored one or its grid resampled (the class token's entry kept).
    fn pos_embed(&self, cx: &Cx, (gh, gw): (usize, usize)) -> Result<Tensor> {
        let pos = cx.param(self.pos_embed);
        if (gh, gw) == self.grid {
            return Ok(pos);
        }
        let d = self.cfg.embed_dim;
        let (h, w) = self.grid;
        let grid = pos.narrow(1, 1, h * w)?.reshape(vec![h, w, d])?;
        let grid = resample_grid(&grid, (gh, gw), self.cfg.pos_embed_interpolation)?;
        let cls = pos.narrow(1, 0, 1)?;
        Ok(Tensor::concat(&[&cls, &grid.reshape(vec![1, gh * gw, d])?], 1)?)
    }
}

impl Architecture for VisionTransformer {
    /// `x: [n, h, w, c] -> [n, 1 + tokens, dim]` (the class token first).
    fn forward_features(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let p = self.cfg.patch_size;
        let [n, h, w, _] = *x.dims() else { unreachable!("the model checks NHWC input") };
        if h < p || w < p {
            return Err(ZooError::arg("input", format!("{h}x{w} images are smaller than one {p}x{p} patch")));
        }
        let d = self.cfg.embed_dim;
        let tokens = self.patch_embed.forward(cx, x)?;
        let (gh, gw) = (tokens.dims()[1], tokens.dims()[2]);
        let tokens = tokens.reshape(vec![n, gh * gw, d])?;
        let cls = cx.param(self.cls_token);
        let cls = Tensor::concat(&vec![&cls; n], 0)?;
        let mut x = Tensor::concat(&[&cls, &tokens], 1)?.add(&self.pos_embed(cx, (gh, gw))?)?;
        cx.record("patch_embed", "PatchEmbed", &x);
        for b in &self.blocks {
            x = b.forward(cx, &x)?;
        }
        let x = self.norm.forward(cx, &x)?;
        cx.record("norm", "LayerNorm", &x);
        Ok(x)
    }

    /// The class token (`[n, dim]`), dropout, `head`.
    fn forward_head(&self, cx: &Cx, x: &Tensor, pre_logits: bool) -> Result<Tensor> {
        let x = match *x.dims() {
            [n, _, d] => x.narrow(1, 0, 1)?.reshape(vec![n, d])?,
            _ => x.clone(),
        };
        let x = dropout(cx, &x, self.cfg.drop_rate)?;
        let y = match (&self.head, pre_logits) {
            (Some(fc), false) => fc.forward(cx, &x)?,
            _ => x,
        };
        cx.record("head", "Linear", &y);
        Ok(y)
    }

    fn num_features(&self) -> usize {
        self.cfg.embed_dim
    }

    fn num_classes(&self) -> usize {
        self.cfg.num_classes
    }

    fn reset_classifier(&mut self, vb: &Vb, num_classes: usize) {
        self.head = (num_classes > 0).then(|| Linear::new(&vb.pp("head"), self.cfg.embed_dim, num_classes, true));
        self.cfg.num_classes = num_classes;
    }
}

// ---------------------------------------------------------------- pretrained configs

/// timm's `_cfg` for ViT: 224, crop 0.9, bicubic, mean and std 0.5, no pool size.
const fn vit(tag: &'static str) -> PretrainedCfg {
    PretrainedCfg::imagenet(tag, "patch_embed.proj", "head").bicubic().crop(0.9).inception_norm().no_pool()
}

pub(crate) static VIT_TINY_PATCH16_224: &[PretrainedCfg] = &[vit("augreg_in21k_ft_in1k")];
pub(crate) static VIT_SMALL_PATCH16_224: &[PretrainedCfg] = &[vit("augreg_in21k_ft_in1k")];
pub(crate) static VIT_BASE_PATCH16_224: &[PretrainedCfg] = &[vit("augreg2_in21k_ft_in1k"), vit("augreg_in21k_ft_in1k")];
pub(crate) static VIT_BASE_PATCH32_224: &[PretrainedCfg] = &[vit("augreg_in21k_ft_in1k")];
pub(crate) static VIT_LARGE_PATCH16_224: &[PretrainedCfg] = &[vit("augreg_in21k_ft_in1k")];

// ---------------------------------------------------------------- entry points

fn vision_transformer(
    arch: &'static str,
    opts: ZooOpts,
    patch: usize,
    dim: usize,
    depth: usize,
    heads: usize,
) -> Result<Model> {
    build(arch, opts, |vb, a| {
        let cfg = VitConfig { patch_size: patch, embed_dim: dim, depth, num_heads: heads, ..a.into() };
        Ok(Box::new(VisionTransformer::new(vb, cfg)?))
    })
}

/// ViT-Ti/16 (5.7M params).
pub fn vit_tiny_patch16_224(opts: ZooOpts) -> Result<Model> {
    vision_transformer("vit_tiny_patch16_224", opts, 16, 192, 12, 3)
}
/// ViT-S/16 (22.1M).
pub fn vit_small_patch16_224(opts: ZooOpts) -> Result<Model> {
    vision_transformer("vit_small_patch16_224", opts, 16, 384, 12, 6)
}
/// ViT-B/16 (86.6M).
pub fn vit_base_patch16_224(opts: ZooOpts) -> Result<Model> {
    vision_transformer("vit_base_patch16_224", opts, 16, 768, 12, 12)
}
/// ViT-B/32 (88.2M).
pub fn vit_base_patch32_224(opts: ZooOpts) -> Result<Model> {
    vision_transformer("vit_base_patch32_224", opts, 32, 768, 12, 12)
}
/// ViT-L/16 (304.3M).
pub fn vit_large_patch16_224(opts: ZooOpts) -> Result<Model> {
    vision_transformer("vit_large_patch16_224", opts, 16, 1024, 24, 16)
}

// ---------------------------------------------------------------- registry

/// The registered variants of this family, each one line (`name`, pretrained configs).
pub(crate) static MODELS: &[ModelEntry] = &[
    register!(vit_tiny_patch16_224, VIT_TINY_PATCH16_224),
    register!(vit_small_patch16_224, VIT_SMALL_PATCH16_224),
    register!(vit_base_patch16_224, VIT_BASE_PATCH16_224),
    register!(vit_base_patch32_224, VIT_BASE_PATCH32_224),
    register!(vit_large_patch16_224, VIT_LARGE_PATCH16_224),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resampling_keeps_constants_and_interior_ramps() {
        for mode in [Interpolation::Bicubic, Interpolation::Bilinear] {
            for (i, o) in [(14, 24), (14, 7), (7, 7), (3, 10)] {
                let m = resample_weights(i, o, mode);
                for row in m.chunks(i) {
                    assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{mode:?} {i}->{o}");
                }
            }
            // upsampling: a ramp is reproduced wherever every tap is inside the grid
            let (i, o) = (8, 20);
            let m = resample_weights(i, o, mode);
            let scale = i as f64 / o as f64;
            for (k, row) in m.chunks(i).enumerate() {
                let src = scale * (k as f64 + 0.5) - 0.5;
                if src >= 1.0 && src <= i as f64 - 2.0 {
                    let got: f64 = row.iter().enumerate().map(|(j, w)| w * j as f64).sum();
                    assert!((got - src).abs() < 1e-12, "{mode:?} output {k}: {got} vs {src}");
                }
            }
        }
        // the same size is the identity
        let m = resample_weights(5, 5, Interpolation::Bicubic);
        for (k, row) in m.chunks(5).enumerate() {
            for (j, w) in row.iter().enumerate() {
                assert!((w - f64::from(u8::from(j == k))).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn resampled_grid_is_separable_and_differentiable() {
        let (gh, gw, d) = (3, 4, 2);
        let data: Vec<f32> = (0..gh * gw * d).map(|i| (i as f32 * 0.37).sin()).collect();
        let grid = Tensor::from_vec(data.clone(), [gh, gw, d]).unwrap().var();
        let (oh, ow) = (5, 6);
        let y = resample_grid(&grid, (oh, ow), Interpolation::Bicubic).unwrap();
        assert_eq!(y.dims(), [oh, ow, d]);
        let (ry, rx) =
            (resample_weights(gh, oh, Interpolation::Bicubic), resample_weights(gw, ow, Interpolation::Bicubic));
        for a in 0..oh {
            for b in 0..ow {
                for c in 0..d {
                    let mut want = 0.0;
                    for i in 0..gh {
                        for j in 0..gw {
                            want += ry[a * gh + i] * rx[b * gw + j] * f64::from(data[(i * gw + j) * d + c]);
                        }
                    }
                    let got = f64::from(y.data()[(a * ow + b) * d + c]);
                    assert!((got - want).abs() < 1e-5, "({a}, {b}, {c}): {got} vs {want}");
                }
            }
        }
        let g = y.sum().backward().unwrap();
        assert_eq!(g.get(&grid).unwrap().dims(), [gh, gw, d]);
    }
}
