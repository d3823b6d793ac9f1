//! Building blocks shared by the model families, named and shaped as timm's
//! (`timm/layers`): [`Conv2d`], [`BatchNorm2d`] (with timm's optional fused activation,
//! `BatchNormAct2d`), [`ConvBnAct`] (`ConvNormAct`), [`Linear`], [`ClassifierHead`],
//! drop-path and [`make_divisible`]; channel attention ([`SqueezeExcite`], ECA) lives in
//! [`crate::attention`].
//!
//! Batch norm follows PyTorch: running statistics are constants in eval mode; in training
//! the batch's biased variance normalises and the running variance is updated with the
//! unbiased one, momentum 0.1 ([`RunningStats::TORCH`]). A frozen norm (its scale not
//! trainable) keeps its running statistics even in training, as fine-tuning expects. In eval mode [`ConvBnAct`] folds the norm into the
//! convolution (weights scaled once and cached), so inference runs one fused kernel.

use crate::error::Result;
use convnet_nn::context::{BnUpdate, Cx, RunningStats};
use convnet_nn::store::{Init, Layout, ParamId, Params, Vb};
use convnet_tensor::{Activation, Conv2dArgs, Padding2d, Pool2dArgs, PreparedConv, Tensor};
use std::sync::{Arc, Mutex};

pub use crate::attention::{SeConfig, SqueezeExcite};

/// PyTorch/timm symmetric padding for a kernel `k`, stride `s`, dilation `d`:
/// `((s - 1) + d * (k - 1)) / 2`.
pub fn get_padding(k: usize, s: usize, d: usize) -> usize {
    ((s - 1) + d * (k - 1)) / 2
}

/// Padding of a timm conv: symmetric PyTorch padding, or TensorFlow "SAME" for `tf_` models.
pub fn conv_padding(k: (usize, usize), s: usize, d: usize, tf_same: bool) -> Padding2d {
    if tf_same { Padding2d::Same } else { Padding2d::symmetric(get_padding(k.0, s, d), get_padding(k.1, s, d)) }
}

/// timm's `make_divisible`: `v` rounded to a multiple of `divisor`, never below
/// `min_value` (default `divisor`) nor under 90% of `v`.
pub fn make_divisible(v: f64, divisor: usize, min_value: Option<usize>) -> usize {
    make_divisible_limit(v, divisor, min_value, 0.9)
}

/// [`make_divisible`] with timm's `round_limit`: one `divisor` is added when rounding
/// fell under `round_limit * v` (0 never adds; timm's `SEModule` passes 0).
pub fn make_divisible_limit(v: f64, divisor: usize, min_value: Option<usize>, round_limit: f64) -> usize {
    let divisor = divisor.max(1);
    let min_value = min_value.unwrap_or(divisor);
    let d = divisor as f64;
    let mut new_v = min_value.max(((v + d / 2.0) as usize) / divisor * divisor);
    if (new_v as f64) < round_limit * v {
        new_v += divisor;
    }
    new_v
}

/// Arguments of a [`Conv2d`] beyond its channels and kernel.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConvOpts {
    /// Stride (both axes).
    pub stride: usize,
    /// Padding; `None` picks PyTorch's symmetric `get_padding`.
    pub padding: Option<Padding2d>,
    /// Dilation (both axes).
    pub dilation: usize,
    /// Groups (`in_channels` for depthwise).
    pub groups: usize,
    /// Whether the conv has a bias.
    pub bias: bool,
}

impl Default for ConvOpts {
    fn default() -> Self {
        ConvOpts { stride: 1, padding: None, dilation: 1, groups: 1, bias: false }
    }
}

impl ConvOpts {
    /// Stride `s`, the rest default.
    pub fn stride(s: usize) -> Self {
        ConvOpts { stride: s, ..Self::default() }
    }
    /// Sets the stride.
    pub fn with_stride(mut self, s: usize) -> Self {
        self.stride = s;
        self
    }
    /// Sets the padding.
    pub fn with_padding(mut self, p: Padding2d) -> Self {
        self.padding = Some(p);
        self
    }
    /// Sets the groups.
    pub fn with_groups(mut self, g: usize) -> Self {
        self.groups = g;
        self
    }
    /// Sets the bias.
    pub fn with_bias(mut self, b: bool) -> Self {
        self.bias = b;
        self
    }
    /// TF "SAME" padding when `tf_same`, else PyTorch's symmetric padding.
    pub fn with_tf_same(mut self, tf_same: bool) -> Self {
        if tf_same {
            self.padding = Some(Padding2d::Same);
        }
        self
    }
}

/// `nn.Conv2d`: keys `weight` `[out, in/groups, kh, kw]` (stored HWIO) and optional `bias`.
#[derive(Debug)]
pub struct Conv2d {
    /// Kernel, engine layout `[kh, kw, in/groups, out]`.
    pub weight: ParamId,
    /// Bias `[out]`.
    pub bias: Option<ParamId>,
    /// Stride, padding, dilation, groups.
    pub args: Conv2dArgs,
    /// Output channels.
    pub out_ch: usize,
}

impl Conv2d {
    /// A conv `cin -> cout` with a `k` kernel (Kaiming fan-out init as timm/torchvision).
    pub fn new(vb: &Vb, cin: usize, cout: usize, k: (usize, usize), o: ConvOpts) -> Self {
        let g = o.groups.max(1);
        // Kaiming (fan-out, ReLU gain) as timm/torchvision, uniform with the same variance
        let fan_out = (cout * k.0 * k.1) as f32;
        let weight =
            vb.param("weight", &[k.0, k.1, cin / g, cout], Layout::Conv, true, Init::Uniform((6.0 / fan_out).sqrt()));
        let bias = o.bias.then(|| vb.param("bias", &[cout], Layout::Plain, true, Init::Const(0.0)));
        let padding = o.padding.unwrap_or_else(|| {
            Padding2d::symmetric(get_padding(k.0, o.stride, o.dilation), get_padding(k.1, o.stride, o.dilation))
        });
        let args = Conv2dArgs { stride: (o.stride, o.stride), padding, dilation: (o.dilation, o.dilation), groups: g };
        Conv2d { weight, bias, args, out_ch: cout }
    }

    /// A linear layer over NCHW-flattened `[c, h, w]` features (a PyTorch `Linear(c*h*w, out)`
    /// after `flatten`), run as a valid `h x w` conv on the NHWC map: `[n, h, w, c] -> [n, 1, 1, out]`.
    pub fn flat_linear(vb: &Vb, c: usize, h: usize, w: usize, out: usize, bias: bool) -> Self {
        let bound = 1.0 / ((c * h * w).max(1) as f32).sqrt();
        let weight = vb.param("weight", &[h, w, c, out], Layout::FlatConv { h, w }, true, Init::Uniform(bound));
        let bias = bias.then(|| vb.param("bias", &[out], Layout::Plain, true, Init::Uniform(bound)));
        Conv2d { weight, bias, args: Conv2dArgs { padding: Padding2d::Valid, ..Conv2dArgs::default() }, out_ch: out }
    }

    /// A square `k x k` conv.
    pub fn square(vb: &Vb, cin: usize, cout: usize, k: usize, o: ConvOpts) -> Self {
        Self::new(vb, cin, cout, (k, k), o)
    }

    /// `x: [n, h, w, in] -> [n, oh, ow, out]`.
    pub fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let w = cx.param(self.weight);
        let y = x.conv2d(&w, self.bias.map(|b| cx.param(b)).as_ref(), &self.args)?;
        count_conv(cx, &w, &y);
        Ok(y)
    }

    /// This 1x1 conv (grouped or not) on pooled features, as attention modules run it on
    /// their `[n, c, 1, 1]` means: `s: [n, in] -> [n, out]`.
    pub fn forward_pooled(&self, cx: &Cx, s: &Tensor) -> Result<Tensor> {
        let n = s.dims()[0];
        let y = self.forward(cx, &s.reshape(vec![n, 1, 1, s.numel() / n.max(1)])?)?;
        Ok(y.reshape(vec![n, self.out_ch])?)
    }
}

fn count_conv(cx: &Cx, w: &Tensor, y: &Tensor) {
    let per_out: usize = w.dims()[..3].iter().product();
    cx.add_macs((y.numel() * per_out) as u64);
    cx.note_output(y.numel());
}

/// `nn.BatchNorm2d` (optionally with timm's fused activation, `BatchNormAct2d`):
/// keys `weight`, `bias`, `running_mean`, `running_var`, `num_batches_tracked`.
#[derive(Debug)]
pub struct BatchNorm2d {
    /// Scale (gamma).
    pub weight: ParamId,
    /// Shift (beta).
    pub bias: ParamId,
    /// Running mean (buffer).
    pub running_mean: ParamId,
    /// Running variance (buffer).
    pub running_var: ParamId,
    /// Batches seen in training (buffer, int64 in PyTorch).
    pub num_batches_tracked: ParamId,
    /// Added to the variance (PyTorch 1e-5, TensorFlow ports 1e-3).
    pub eps: f32,
    /// How the running statistics follow the batch's (PyTorch's, momentum 0.1).
    pub running_stats: RunningStats,
    /// Activation applied after the norm.
    pub act: Activation,
}

impl BatchNorm2d {
    /// A batch norm over `c` channels followed by `act`.
    pub fn new(vb: &Vb, c: usize, eps: f32, act: Activation) -> Self {
        BatchNorm2d {
            weight: vb.param("weight", &[c], Layout::Plain, true, Init::Const(1.0)),
            bias: vb.param("bias", &[c], Layout::Plain, true, Init::Const(0.0)),
            running_mean: vb.param("running_mean", &[c], Layout::Plain, false, Init::Const(0.0)),
            running_var: vb.param("running_var", &[c], Layout::Plain, false, Init::Const(1.0)),
            num_batches_tracked: vb.param("num_batches_tracked", &[], Layout::Plain, false, Init::Const(0.0)),
            eps,
            running_stats: RunningStats::TORCH,
            act,
        }
    }

    /// Normalises the last axis of `x`, then applies the activation.
    pub fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let (g, b) = (cx.p(self.weight), cx.p(self.bias));
        if cx.bn_training(Some(self.weight)) {
            // a relu is fused into the training op (no pass of its own)
            let relu = self.act == Activation::Relu;
            let (y, stats) = x.batch_norm_train_act(g, b, self.eps, relu)?;
            cx.push_bn_update(BnUpdate {
                mean: self.running_mean,
                var: self.running_var,
                tracked: Some(self.num_batches_tracked),
                rule: self.running_stats,
                stats,
            });
            return Ok(if relu { y } else { act(&y, self.act) });
        }
        let y = x.batch_norm_infer(g, b, cx.p(self.running_mean).data(), cx.p(self.running_var).data(), self.eps)?;
        Ok(act(&y, self.act))
    }

    /// Per-channel `(scale, shift)` of the eval-mode norm: `y = x * scale + shift`.
    pub fn eval_affine(&self, params: &Params) -> (Vec<f32>, Vec<f32>) {
        let g = params.get(self.weight).data();
        let b = params.get(self.bias).data();
        let m = params.get(self.running_mean).data();
        let v = params.get(self.running_var).data();
        let scale: Vec<f32> =
            g.iter().zip(v).map(|(g, v)| (*g as f64 / (*v as f64 + self.eps as f64).sqrt()) as f32).collect();
        let shift = b.iter().zip(m).zip(&scale).map(|((b, m), s)| b - m * s).collect();
        (scale, shift)
    }
}

/// `x` through an activation (identity for `Linear`).
pub fn act(x: &Tensor, a: Activation) -> Tensor {
    match a {
        Activation::Linear => x.clone(),
        a => x.activation(a),
    }
}

/// A conv, a batch norm and an activation (timm's `ConvNormAct`, torchvision's
/// `BasicConv2d`). The conv and norm keys come from two builders because families name
/// them differently (`conv`/`bn`, `conv1`/`bn1`, `0`/`1`).
#[derive(Debug)]
pub struct ConvBnAct {
    /// The convolution.
    pub conv: Conv2d,
    /// The norm, with the activation.
    pub bn: BatchNorm2d,
    /// Eval-mode folded weights, valid for the store version they were made from.
    folded: Mutex<Option<(u64, Arc<Folded>)>>,
}

/// A [`ConvBnAct`]'s eval-mode convolution: the norm folded into the kernel and bias,
/// and the kernel prepared once for the forward kernels.
#[derive(Debug)]
struct Folded {
    weight: Tensor,
    bias: Tensor,
    prepared: PreparedConv,
}

impl ConvBnAct {
    /// Conv under `conv_vb`, norm under `bn_vb`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        conv_vb: &Vb,
        bn_vb: &Vb,
        cin: usize,
        cout: usize,
        k: (usize, usize),
        o: ConvOpts,
        eps: f32,
        a: Activation,
    ) -> Self {
        ConvBnAct {
            conv: Conv2d::new(conv_vb, cin, cout, k, o),
            bn: BatchNorm2d::new(bn_vb, cout, eps, a),
            folded: Mutex::new(None),
        }
    }

    /// timm's `ConvNormAct` naming: `{vb}.conv`, `{vb}.bn`.
    pub fn timm(vb: &Vb, cin: usize, cout: usize, k: usize, o: ConvOpts, eps: f32, a: Activation) -> Self {
        Self::new(&vb.pp("conv"), &vb.pp("bn"), cin, cout, (k, k), o, eps, a)
    }

    /// torchvision's / Cadene's `BasicConv2d` (keys `{vb}.conv`, `{vb}.bn`): a bias-free conv
    /// with explicit `(ph, pw)` padding, batch norm with `eps`, ReLU.
    pub fn basic(
        vb: &Vb,
        cin: usize,
        cout: usize,
        k: (usize, usize),
        stride: usize,
        pad: (usize, usize),
        eps: f32,
    ) -> Self {
        let o = ConvOpts::stride(stride).with_padding(Padding2d::symmetric(pad.0, pad.1));
        Self::new(&vb.pp("conv"), &vb.pp("bn"), cin, cout, k, o, eps, Activation::Relu)
    }

    /// The kernel and bias with the eval-mode norm folded in (cached per store version).
    fn folded(&self, params: &Params) -> Result<Arc<Folded>> {
        let mut cache = self.folded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((v, f)) = cache.as_ref()
            && *v == params.version()
        {
            return Ok(Arc::clone(f));
        }
        let (scale, shift) = self.bn.eval_affine(params);
        let w = params.get(self.conv.weight);
        let out = self.conv.out_ch;
        let mut wd = w.data().to_vec();
        for row in wd.chunks_exact_mut(out) {
            for (x, s) in row.iter_mut().zip(&scale) {
                *x *= s;
            }
        }
        let mut bd = shift;
        if let Some(b) = self.conv.bias {
            for ((o, cb), s) in bd.iter_mut().zip(params.get(b).data()).zip(&scale) {
                *o += cb * s;
            }
        }
        let d = w.dims();
        let prepared = PreparedConv::new(&wd, (d[0], d[1], d[2], d[3]), self.conv.args.groups);
        let f = Arc::new(Folded {
            weight: Tensor::from_vec(wd, d.to_vec())?,
            bias: Tensor::from_vec(bd, [out])?,
            prepared,
        });
        *cache = Some((params.version(), Arc::clone(&f)));
        Ok(f)
    }

    /// `x: [n, h, w, in] -> [n, oh, ow, out]`.
    pub fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        if cx.training() {
            let y = self.conv.forward(cx, x)?;
            return self.bn.forward(cx, &y);
        }
        let f = self.folded(cx.params())?;
        let y = x.conv2d_prepared(&f.weight, &f.prepared, Some(&f.bias), &self.conv.args, None, self.bn.act)?;
        count_conv(cx, &f.weight, &y);
        Ok(y)
    }

    /// `act(self.forward(x) + residual)`: the last conv of a residual block, its skip
    /// connection and the block's activation. In eval mode (norm folded, no activation of
    /// its own) the sum and a relu run in the convolution's store.
    pub fn forward_add(&self, cx: &Cx, x: &Tensor, residual: &Tensor, a: Activation) -> Result<Tensor> {
        if cx.training() || self.bn.act != Activation::Linear {
            return Ok(act(&self.forward(cx, x)?.add(residual)?, a));
        }
        let f = self.folded(cx.params())?;
        let y = x.conv2d_prepared(&f.weight, &f.prepared, Some(&f.bias), &self.conv.args, Some(residual), a)?;
        count_conv(cx, &f.weight, &y);
        Ok(y)
    }
}

impl ConvBnAct {
    /// [`forward`](Self::forward) and the output's mean over height and width
    /// (`[n, out]`), for a squeeze-excitation that follows: in eval mode a
    /// depthwise kernel takes the mean as it stores the output.
    pub fn forward_mean(&self, cx: &Cx, x: &Tensor) -> Result<(Tensor, Tensor)> {
        if cx.training() {
            let y = self.forward(cx, x)?;
            let m = y.global_avg_pool()?;
            return Ok((y, m));
        }
        let f = self.folded(cx.params())?;
        let (y, m) = x.conv2d_act_mean(&f.weight, Some(&f.bias), &self.conv.args, self.bn.act)?;
        count_conv(cx, &f.weight, &y);
        Ok((y, m))
    }
}

/// `nn.Linear`: keys `weight` `[out, in]` (stored `[in, out]`) and optional `bias`.
#[derive(Debug)]
pub struct Linear {
    /// Weight, engine layout `[in, out]`.
    pub weight: ParamId,
    /// Bias `[out]`.
    pub bias: Option<ParamId>,
}

impl Linear {
    /// A linear map `fin -> fout` (PyTorch's default uniform init).
    pub fn new(vb: &Vb, fin: usize, fout: usize, bias: bool) -> Self {
        let bound = 1.0 / (fin.max(1) as f32).sqrt();
        Linear {
            weight: vb.param("weight", &[fin, fout], Layout::Linear, true, Init::Uniform(bound)),
            bias: bias.then(|| vb.param("bias", &[fout], Layout::Plain, true, Init::Uniform(bound))),
        }
    }

    /// `x: [n, in] -> [n, out]`.
    pub fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let w = cx.param(self.weight);
        cx.add_macs((x.dims()[0] * w.numel()) as u64);
        Ok(x.linear(&w, self.bias.map(|b| cx.param(b)).as_ref())?)
    }
}

/// Stochastic depth (Huang et al. 2016): in training, zeroes whole samples of a residual
/// branch with probability `rate` and scales the rest by `1 / (1 - rate)`.
pub fn drop_path(cx: &Cx, x: &Tensor, rate: f32) -> Result<Tensor> {
    if !cx.training() || rate <= 0.0 {
        return Ok(x.clone());
    }
    let n = x.dims()[0];
    let keep = 1.0 - rate;
    let mask: Vec<f32> =
        cx.with_rng_mut(|r| (0..n).map(|_| if r.uniform() < keep { 1.0 / keep } else { 0.0 }).collect());
    let mut shape = vec![1; x.rank()];
    shape[0] = n;
    Ok(x.mul(&Tensor::from_vec(mask, shape)?)?)
}

/// Dropout in training mode only.
pub fn dropout(cx: &Cx, x: &Tensor, rate: f32) -> Result<Tensor> {
    if !cx.training() || rate <= 0.0 {
        return Ok(x.clone());
    }
    Ok(cx.with_rng_mut(|r| x.dropout(rate, r))?)
}

/// Max pool with PyTorch arguments (symmetric padding, optional ceil mode).
pub fn max_pool(x: &Tensor, k: usize, s: usize, p: usize, ceil_mode: bool) -> Result<Tensor> {
    let args = Pool2dArgs {
        kernel: (k, k),
        stride: (s, s),
        padding: Padding2d::symmetric(p, p),
        ceil_mode,
        count_include_pad: true,
    };
    Ok(x.max_pool2d(&args)?)
}

/// Average pool with PyTorch arguments.
pub fn avg_pool(x: &Tensor, k: usize, s: usize, p: usize, ceil_mode: bool, count_include_pad: bool) -> Result<Tensor> {
    let args = Pool2dArgs {
        kernel: (k, k),
        stride: (s, s),
        padding: Padding2d::symmetric(p, p),
        ceil_mode,
        count_include_pad,
    };
    Ok(x.avg_pool2d(&args)?)
}

/// `[start, end)` of adaptive-pooling window `i` of `out` over `size` (PyTorch's rule).
fn adaptive_window(i: usize, out: usize, size: usize) -> (usize, usize) {
    ((i * size) / out, ((i + 1) * size).div_ceil(out))
}

struct AdaptiveAvgBackward {
    out: (usize, usize),
}

impl convnet_tensor::Backward for AdaptiveAvgBackward {
    fn name(&self) -> &'static str {
        "adaptive_avg_pool2d"
    }
    fn backward(&self, inputs: &[Tensor], _output: &Tensor, grad: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        let [n, h, w, c] = *inputs[0].dims() else { unreachable!("checked in forward") };
        let (oh, ow) = self.out;
        let g = grad.data();
        let mut dx = vec![0.0f32; n * h * w * c];
        for b in 0..n {
            for oy in 0..oh {
                let (y0, y1) = adaptive_window(oy, oh, h);
                for ox in 0..ow {
                    let (x0, x1) = adaptive_window(ox, ow, w);
                    let inv = 1.0 / ((y1 - y0) * (x1 - x0)) as f32;
                    let go = &g[((b * oh + oy) * ow + ox) * c..][..c];
                    for y in y0..y1 {
                        for x in x0..x1 {
                            let d = &mut dx[((b * h + y) * w + x) * c..][..c];
                            for (d, g) in d.iter_mut().zip(go) {
                                *d += g * inv;
                            }
                        }
                    }
                }
            }
        }
        vec![Some(Tensor::from_vec(dx, [n, h, w, c]).expect("input shape"))]
    }
}

/// PyTorch's `adaptive_avg_pool2d`: `[n, h, w, c] -> [n, oh, ow, c]`, window `i` spanning
/// `[floor(i * h / oh), ceil((i + 1) * h / oh))` (windows overlap or repeat when upsampling).
pub fn adaptive_avg_pool(x: &Tensor, oh: usize, ow: usize) -> Result<Tensor> {
    let [n, h, w, c] = *x.dims() else {
        return Err(crate::ZooError::arg(
            "adaptive_avg_pool",
            format!("input must be [n, h, w, c], got {:?}", x.dims()),
        ));
    };
    if (h, w) == (oh, ow) {
        return Ok(x.clone());
    }
    if h == 0 || w == 0 || oh == 0 || ow == 0 {
        return Err(crate::ZooError::arg("adaptive_avg_pool", format!("cannot pool {h}x{w} to {oh}x{ow}")));
    }
    let xd = x.data();
    let mut y = vec![0.0f32; n * oh * ow * c];
    for b in 0..n {
        for oy in 0..oh {
            let (y0, y1) = adaptive_window(oy, oh, h);
            for ox in 0..ow {
                let (x0, x1) = adaptive_window(ox, ow, w);
                let inv = 1.0 / ((y1 - y0) * (x1 - x0)) as f32;
                let acc = &mut y[((b * oh + oy) * ow + ox) * c..][..c];
                for yy in y0..y1 {
                    for xx in x0..x1 {
                        for (a, v) in acc.iter_mut().zip(&xd[((b * h + yy) * w + xx) * c..][..c]) {
                            *a += v;
                        }
                    }
                }
                acc.iter_mut().for_each(|a| *a *= inv);
            }
        }
    }
    Ok(Tensor::from_op(y, [n, oh, ow, c], &[x], AdaptiveAvgBackward { out: (oh, ow) }))
}

/// timm's `ClassifierHead` with average pooling: global average, dropout, `fc`
/// (absent when `num_classes == 0`). The fc's key is given by the family (`fc`,
/// `classifier`, `last_linear`, `head.fc`).
#[derive(Debug)]
pub struct ClassifierHead {
    /// The linear classifier.
    pub fc: Option<Linear>,
    /// Dropout before it.
    pub drop_rate: f32,
    /// Input features.
    pub num_features: usize,
    /// Classes (0: no classifier).
    pub num_classes: usize,
}

impl ClassifierHead {
    /// A head `num_features -> num_classes` under `vb` (the classifier's own key).
    pub fn new(vb: &Vb, num_features: usize, num_classes: usize, drop_rate: f32) -> Self {
        ClassifierHead {
            fc: (num_classes > 0).then(|| Linear::new(vb, num_features, num_classes, true)),
            drop_rate,
            num_features,
            num_classes,
        }
    }

    /// `[n, h, w, c]` (or already pooled `[n, c]`) -> `[n, classes]`, or `[n, c]` with `pre_logits`.
    pub fn forward(&self, cx: &Cx, x: &Tensor, pre_logits: bool) -> Result<Tensor> {
        let x = if x.rank() == 4 { x.global_avg_pool()? } else { x.clone() };
        let x = dropout(cx, &x, self.drop_rate)?;
        match (&self.fc, pre_logits) {
            (Some(fc), false) => fc.forward(cx, &x),
            _ => Ok(x),
        }
    }
}

/// timm's `ClassifierHead` with `use_conv=True` (DLA, BiT): global average, dropout, and a
/// 1x1 conv with bias as classifier, so the key `{vb}.weight` is `[classes, c, 1, 1]`.
#[derive(Debug)]
pub struct ConvClassifierHead {
    /// The 1x1 conv classifier (absent when `num_classes == 0`).
    pub fc: Option<Conv2d>,
    /// Dropout before it.
    pub drop_rate: f32,
    /// Input features.
    pub num_features: usize,
    /// Classes (0: no classifier).
    pub num_classes: usize,
}

impl ConvClassifierHead {
    /// A head `num_features -> num_classes` under `vb` (the classifier's own key).
    pub fn new(vb: &Vb, num_features: usize, num_classes: usize, drop_rate: f32) -> Self {
        let fc = (num_classes > 0)
            .then(|| Conv2d::square(vb, num_features, num_classes, 1, ConvOpts::default().with_bias(true)));
        ConvClassifierHead { fc, drop_rate, num_features, num_classes }
    }

    /// `[n, h, w, c]` (or already pooled `[n, c]`) -> `[n, classes]`, or `[n, c]` with `pre_logits`.
    pub fn forward(&self, cx: &Cx, x: &Tensor, pre_logits: bool) -> Result<Tensor> {
        let x = if x.rank() == 4 { x.global_avg_pool()? } else { x.clone() };
        let x = dropout(cx, &x, self.drop_rate)?;
        match (&self.fc, pre_logits) {
            (Some(fc), false) => fc.forward_pooled(cx, &x),
            _ => Ok(x),
        }
    }
}

/// `nn.LayerNorm(c)` over the last axis, timm's `LayerNorm` and `LayerNorm2d` alike (on
/// NHWC maps the channel axis is the last): keys `weight`, `bias`.
#[derive(Debug)]
pub struct LayerNorm {
    /// Scale `[c]`.
    pub weight: ParamId,
    /// Shift `[c]`.
    pub bias: ParamId,
    /// Added to the variance (timm's ConvNeXt and ViT: 1e-6).
    pub eps: f32,
}

impl LayerNorm {
    /// A layer norm over `c` channels.
    pub fn new(vb: &Vb, c: usize, eps: f32) -> Self {
        LayerNorm {
            weight: vb.param("weight", &[c], Layout::Plain, true, Init::Const(1.0)),
            bias: vb.param("bias", &[c], Layout::Plain, true, Init::Const(0.0)),
            eps,
        }
    }

    /// `x: [.., c] -> [.., c]`.
    pub fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        Ok(x.layer_norm(Some(&cx.param(self.weight)), Some(&cx.param(self.bias)), self.eps)?)
    }
}

/// One of an [`Mlp`]'s two layers: `nn.Linear` (weight `[out, in]`) or, for timm's
/// `use_conv` MLPs, a 1x1 `nn.Conv2d` (weight `[out, in, 1, 1]`). On channels-last data
/// both are the same product; only the checkpoint layout differs.
#[derive(Debug)]
enum MlpLayer {
    Linear(Linear),
    Conv(Conv2d),
}

impl MlpLayer {
    fn new(vb: &Vb, fin: usize, fout: usize, conv: bool) -> Self {
        if conv {
            MlpLayer::Conv(Conv2d::new(vb, fin, fout, (1, 1), ConvOpts::default().with_bias(true)))
        } else {
            MlpLayer::Linear(Linear::new(vb, fin, fout, true))
        }
    }

    /// `x: [rows, in] -> [rows, out]`.
    fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        match self {
            MlpLayer::Linear(l) => l.forward(cx, x),
            MlpLayer::Conv(c) => c.forward_pooled(cx, x),
        }
    }
}

/// timm's `Mlp` (transformer feed-forward): `fc1`, activation, `fc2`, over the last axis of
/// any input (`[n, tokens, c]` or NHWC `[n, h, w, c]`).
#[derive(Debug)]
pub struct Mlp {
    fc1: MlpLayer,
    fc2: MlpLayer,
    act: Activation,
    out: usize,
}

impl Mlp {
    /// `fin -> hidden -> fout` with `act` between; `conv` stores the layers as 1x1 convs
    /// (timm's `Mlp(use_conv=True)`, ConvNeXt's `conv_mlp`).
    pub fn new(vb: &Vb, fin: usize, hidden: usize, fout: usize, act: Activation, conv: bool) -> Self {
        Mlp {
            fc1: MlpLayer::new(&vb.pp("fc1"), fin, hidden, conv),
            fc2: MlpLayer::new(&vb.pp("fc2"), hidden, fout, conv),
            act,
            out: fout,
        }
    }

    /// `x: [.., in] -> [.., out]`.
    pub fn forward(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let c = *dims.last().unwrap_or(&0);
        let rows = x.reshape(vec![x.numel() / c.max(1), c])?;
        let h = act(&self.fc1.forward(cx, &rows)?, self.act);
        let y = self.fc2.forward(cx, &h)?;
        let mut out = dims;
        if let Some(last) = out.last_mut() {
            *last = self.out;
        }
        Ok(y.reshape(out)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use convnet_nn::context::Mode;
    use std::cell::RefCell;

    #[test]
    fn make_divisible_matches_timm() {
        assert_eq!(make_divisible(32.0, 8, None), 32);
        assert_eq!(make_divisible(32.0 * 1.1, 8, None), 32);
        assert_eq!(make_divisible(11.0, 8, None), 16); // 8 is under 90% of 11
        assert_eq!(make_divisible(16.0 * 0.5, 8, None), 8);
        assert_eq!(make_divisible(1280.0 * 1.4, 8, None), 1792);
    }

    #[test]
    fn adaptive_pool_matches_pytorch_windows_and_gradient() {
        // 5 -> 3 windows: [0,2) [1,4) [3,5)
        assert_eq!(adaptive_window(0, 3, 5), (0, 2));
        assert_eq!(adaptive_window(1, 3, 5), (1, 4));
        assert_eq!(adaptive_window(2, 3, 5), (3, 5));
        let x = Tensor::from_vec((0..20).map(|v| v as f32).collect::<Vec<_>>(), [2, 5, 1, 2]).unwrap().var();
        let y = adaptive_avg_pool(&x, 3, 1).unwrap();
        assert_eq!(y.dims(), [2, 3, 1, 2]);
        assert_eq!(y.data()[..2], [1.0, 2.0]); // mean of rows 0,1: (0+2)/2, (1+3)/2
        // the gradient of the sum: each input counted once per window it is in, over the window size
        let g = y.sum().backward().unwrap();
        let gx = g.get(&x).unwrap();
        assert!((gx.data()[2] - (0.5 + 1.0 / 3.0)).abs() < 1e-6, "{:?}", gx.data());
        // upsampling a 1x1 map repeats it
        let one = Tensor::from_vec(vec![3.0, 4.0], [1, 1, 1, 2]).unwrap();
        assert_eq!(adaptive_avg_pool(&one, 2, 2).unwrap().data(), [3.0, 4.0, 3.0, 4.0, 3.0, 4.0, 3.0, 4.0]);
    }

    #[test]
    fn folded_conv_bn_equals_conv_then_bn() {
        let store = RefCell::new(Params::new());
        let vb = Vb::root(&store, 3);
        let cba = ConvBnAct::timm(&vb, 3, 5, 3, ConvOpts::stride(2).with_bias(true), 1e-3, Activation::Relu);
        let mut params = store.into_inner();
        crate::parity::fill_parity(&mut params, 7);
        let x = Tensor::from_vec(crate::parity::formula_input([2, 7, 9, 3], 1), [2, 7, 9, 3]).unwrap();
        let cx = Cx::new(&params, Mode::Eval, 0);
        let fused = cba.forward(&cx, &x).unwrap();
        let plain = cba.bn.forward(&cx, &cba.conv.forward(&cx, &x).unwrap()).unwrap();
        assert_eq!(fused.dims(), [2, 4, 5, 5]);
        for (a, b) in fused.data().iter().zip(plain.data()) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }
}
