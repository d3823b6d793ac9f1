//! Channel attention shared by the model families, as timm's `timm/layers` builds it:
//! squeeze-and-excitation (Hu et al. 2018, "Squeeze-and-Excitation Networks";
//! `squeeze_excite.py`, `SEModule`) and efficient channel attention (Wang et al. 2020,
//! "ECA-Net"; `eca.py`, `EcaModule`), and [`AttnLayer`], the choice of one as data
//! (timm's `create_attn('se' | 'eca', channels)`).
//!
//! Families name and size the same squeeze-excitation differently: EfficientNet's
//! `conv_reduce`/`conv_expand` with SiLU, timm's `SEModule` `fc1`/`fc2` with ReLU and a
//! width rounded to 8, ReXNet's with a batch norm after `fc1`, legacy SENet's with the
//! channels divided by 16. [`SeConfig`] holds those choices (keys, width rule, activation,
//! gate, optional norm), so one [`SqueezeExcite`] serves every family.

use crate::error::Result;
use crate::layers::{BatchNorm2d, Conv2d, ConvOpts, act, make_divisible_limit};
use convnet_nn::context::Cx;
use convnet_nn::store::{Init, Layout, ParamId, Vb};
use convnet_tensor::{Activation, Conv2dArgs, Padding2d, Tensor};

// ---------------------------------------------------------------- squeeze-excitation

/// Key names of a squeeze-excitation's parts under its own prefix (`layer1.0.se`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeKeys {
    /// The reducing 1x1 conv (`fc1`, `conv_reduce`).
    pub reduce: &'static str,
    /// The expanding 1x1 conv (`fc2`, `conv_expand`).
    pub expand: &'static str,
    /// The optional norm between them (`bn`).
    pub norm: &'static str,
}

impl SeKeys {
    /// timm's `SEModule` and legacy SENet: `fc1`, `bn`, `fc2`.
    pub const TIMM: SeKeys = SeKeys { reduce: "fc1", expand: "fc2", norm: "bn" };
    /// EfficientNet / MobileNet (`_efficientnet_blocks.SqueezeExcite`): `conv_reduce`, `conv_expand`.
    pub const EFFICIENTNET: SeKeys = SeKeys { reduce: "conv_reduce", expand: "conv_expand", norm: "bn" };
}

/// How the squeezed width follows from the gated channels `c`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SeReduce {
    /// Exactly this many channels (timm's `rd_channels`; EfficientNet and RegNet compute
    /// theirs from the block input, not from the gated channels).
    Channels(usize),
    /// `make_divisible(c * ratio, divisor, round_limit)`: timm's `SEModule` takes 1/16, 8
    /// and 0 (no bump for rounding down).
    Ratio {
        /// `rd_ratio`.
        ratio: f64,
        /// `rd_divisor`.
        divisor: usize,
        /// `make_divisible`'s `round_limit`.
        round_limit: f64,
    },
    /// `c / reduction`, rounded down (legacy SENet: 16).
    Divide(usize),
}

/// Everything that distinguishes one squeeze-excitation from another.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SeConfig {
    /// Key names.
    pub keys: SeKeys,
    /// Width rule.
    pub reduce: SeReduce,
    /// Activation after the reduction (and its norm).
    pub act: Activation,
    /// Gate on the expansion (sigmoid; `HardSigmoid` for MobileNet-V3-style gates).
    pub gate: Activation,
    /// Batch norm after the reduction, with this epsilon (ReXNet), or none.
    pub norm_eps: Option<f32>,
    /// Whether the 1x1 convs have biases.
    pub bias: bool,
}

impl SeConfig {
    /// timm's `SEModule` defaults (`create_attn('se', c)`): `fc1`/`fc2` with bias, ReLU,
    /// sigmoid, width `make_divisible(c / 16, 8, round_limit = 0)`, no norm.
    pub const fn timm() -> Self {
        SeConfig {
            keys: SeKeys::TIMM,
            reduce: SeReduce::Ratio { ratio: 1.0 / 16.0, divisor: 8, round_limit: 0.0 },
            act: Activation::Relu,
            gate: Activation::Sigmoid,
            norm_eps: None,
            bias: true,
        }
    }

    /// EfficientNet's squeeze-excitation: `conv_reduce`/`conv_expand` to `rd` channels, `act`.
    pub const fn efficientnet(rd: usize, act: Activation) -> Self {
        SeConfig {
            keys: SeKeys::EFFICIENTNET,
            reduce: SeReduce::Channels(rd),
            act,
            gate: Activation::Sigmoid,
            norm_eps: None,
            bias: true,
        }
    }

    /// Legacy SENet's (Cadene's `SEModule`): `fc1`/`fc2`, `c / reduction` channels, ReLU.
    pub const fn legacy(reduction: usize) -> Self {
        SeConfig { reduce: SeReduce::Divide(reduction), ..Self::timm() }
    }

    /// Sets timm's `rd_ratio` (divisor 8, round limit 0, as `SEModule`).
    pub const fn with_ratio(mut self, ratio: f64) -> Self {
        self.reduce = SeReduce::Ratio { ratio, divisor: 8, round_limit: 0.0 };
        self
    }
    /// Sets the width rule.
    pub const fn with_reduce(mut self, r: SeReduce) -> Self {
        self.reduce = r;
        self
    }
    /// Sets the key names.
    pub const fn with_keys(mut self, k: SeKeys) -> Self {
        self.keys = k;
        self
    }
    /// Sets the activation.
    pub const fn with_act(mut self, a: Activation) -> Self {
        self.act = a;
        self
    }
    /// Sets the gate.
    pub const fn with_gate(mut self, g: Activation) -> Self {
        self.gate = g;
        self
    }
    /// Adds a batch norm (epsilon `eps`) after the reduction.
    pub const fn with_norm(mut self, eps: f32) -> Self {
        self.norm_eps = Some(eps);
        self
    }

    /// The squeezed width for `c` gated channels (at least 1).
    pub fn rd_channels(&self, c: usize) -> usize {
        match self.reduce {
            SeReduce::Channels(rd) => rd,
            SeReduce::Ratio { ratio, divisor, round_limit } => {
                make_divisible_limit(c as f64 * ratio, divisor, None, round_limit)
            }
            SeReduce::Divide(r) => c / r.max(1),
        }
        .max(1)
    }
}

/// Squeeze-and-excitation: global average, reducing 1x1 conv, (norm), activation,
/// expanding 1x1 conv, gate, `x * gate`. The 1x1 convs run as linear maps on the pooled
/// `[n, c]` vector (their kernels stay in the conv layout, so checkpoints load as they are).
#[derive(Debug)]
pub struct SqueezeExcite {
    /// `[c -> rd]` 1x1 conv.
    pub reduce: Conv2d,
    /// Norm after the reduction, carrying the activation (ReXNet).
    pub norm: Option<BatchNorm2d>,
    /// `[rd -> c]` 1x1 conv.
    pub expand: Conv2d,
    /// Activation between them.
    pub act: Activation,
    /// The gate.
    pub gate: Activation,
}

impl SqueezeExcite {
    /// A squeeze-excitation over `c` channels under `vb` (its own prefix, `...se`).
    pub fn new(vb: &Vb, c: usize, cfg: &SeConfig) -> Self {
        let rd = cfg.rd_channels(c);
        let o = ConvOpts::default().with_bias(cfg.bias);
        SqueezeExcite {
            reduce: Conv2d::square(&vb.pp(cfg.keys.reduce), c, rd, 1, o),
            norm: cfg.norm_eps.map(|eps| BatchNorm2d::new(&vb.pp(cfg.keys.norm), rd, eps, cfg.act)),
            expand: Conv2d::square(&vb.pp(cfg.keys.expand), rd, c, 1, o),
            act: cfg.act,
            gate: cfg.gate,
        }
    }

    /// `x * gate(x)`, `x: [n, h, w, c]` (taken by value: without autograd the gate is
    /// applied in place).
    pub fn forward(&self, cx: &Cx, x: Tensor) -> Result<Tensor> {
        if exact(cx, self.act) && exact(cx, self.gate) {
            let (n, c, mean) = mean_f64(&x)?;
            let g = self.gate_f64(cx, &mean, n, c)?;
            return Ok(x.mul_channels(&g)?);
        }
        let s = x.global_avg_pool()?;
        self.excite(cx, x, &s)
    }

    /// [`forward`](Self::forward) given the mean of `x` over height and width
    /// (`mean: [n, c]`, from [`crate::layers::ConvBnAct::forward_mean`]).
    pub fn excite(&self, cx: &Cx, x: Tensor, mean: &Tensor) -> Result<Tensor> {
        let g = if exact(cx, self.act) && exact(cx, self.gate) {
            let m: Vec<f64> = mean.data().iter().map(|&v| v as f64).collect();
            self.gate_f64(cx, &m, mean.dims()[0], mean.dims()[1])?
        } else {
            self.gate_of(cx, mean)?
        };
        Ok(x.mul_channels(&g)?)
    }

    /// The gate `[n, c]` for a pooled `[n, c]`, through autograd ops.
    fn gate_of(&self, cx: &Cx, s: &Tensor) -> Result<Tensor> {
        let n = s.dims()[0];
        let fc = |conv: &Conv2d, s: &Tensor| -> Result<Tensor> {
            let w = cx.param(conv.weight);
            let w = w.reshape(vec![w.dims()[2], w.dims()[3]])?;
            cx.add_macs((n * w.numel()) as u64);
            Ok(s.linear(&w, conv.bias.map(|b| cx.param(b)).as_ref())?)
        };
        let r = fc(&self.reduce, s)?;
        let r = match &self.norm {
            Some(bn) => bn.forward(cx, &r)?,
            None => act(&r, self.act),
        };
        Ok(act(&fc(&self.expand, &r)?, self.gate))
    }

    /// The gate `[n, c]` computed in f64 from an f64 mean (inference only). The gate
    /// multiplies every activation, and with large activations its inputs are large sums:
    /// rounded to f32 on the way (mean, both maps) it moved SE-ResNet-50's logits by 1e-4
    /// of their scale, against 1e-5 for an f64 gate.
    fn gate_f64(&self, cx: &Cx, mean: &[f64], n: usize, c: usize) -> Result<Tensor> {
        let params = cx.params();
        let fc = |conv: &Conv2d, s: &[f64]| -> Vec<f64> {
            let w = params.get(conv.weight);
            let (cin, cout) = (w.dims()[2], w.dims()[3]);
            let w = w.data();
            let b = conv.bias.map(|b| params.get(b).data());
            cx.add_macs((n * cin * cout) as u64);
            let mut out = vec![0.0f64; n * cout];
            convnet_tensor::dense_f64(s, w, b, cin, cout, &mut out);
            out
        };
        let mut r = fc(&self.reduce, mean);
        let rd = r.len() / n.max(1);
        if let Some(bn) = &self.norm {
            let p = |id| params.get(id).data();
            let (g, b, m, v) = (p(bn.weight), p(bn.bias), p(bn.running_mean), p(bn.running_var));
            for row in r.chunks_exact_mut(rd) {
                for (i, x) in row.iter_mut().enumerate() {
                    let scale = g[i] as f64 / (v[i] as f64 + bn.eps as f64).sqrt();
                    *x = (*x - m[i] as f64) * scale + b[i] as f64;
                }
            }
        }
        r.iter_mut().for_each(|x| *x = act64(*x, self.act));
        let mut e = fc(&self.expand, &r);
        e.iter_mut().for_each(|x| *x = act64(*x, self.gate));
        Ok(Tensor::from_vec(e.into_iter().map(|v| v as f32).collect::<Vec<_>>(), [n, c])?)
    }
}

/// Whether the gate may be computed outside autograd in f64: an inference pass (no graph,
/// running statistics) with an activation [`act64`] has.
fn exact(cx: &Cx, a: Activation) -> bool {
    use Activation::*;
    let known = matches!(a, Linear | Relu | Relu6 | Sigmoid | Tanh | Silu | HardSwish | HardSigmoid);
    known && !cx.is_recording() && !cx.training()
}

/// An activation in f64, as the tensor op defines it (those [`exact`] accepts).
fn act64(x: f64, a: Activation) -> f64 {
    let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
    match a {
        Activation::Relu => x.max(0.0),
        Activation::Relu6 => x.clamp(0.0, 6.0),
        Activation::Sigmoid => sigmoid(x),
        Activation::Tanh => x.tanh(),
        Activation::Silu => x * sigmoid(x),
        Activation::HardSwish => x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
        Activation::HardSigmoid => (x + 3.0).clamp(0.0, 6.0) / 6.0,
        _ => x,
    }
}

/// `x: [n, h, w, c]`'s mean over height and width, accumulated in f64: `(n, c, [n * c])`.
fn mean_f64(x: &Tensor) -> Result<(usize, usize, Vec<f64>)> {
    let [n, h, w, c] = *x.dims() else {
        return Err(crate::ZooError::arg(
            "channel attention",
            format!("input must be [n, h, w, c], got {:?}", x.dims()),
        ));
    };
    let mut m = vec![0.0f64; n * c];
    if h * w * c == 0 {
        return Ok((n, c, m));
    }
    for (acc, img) in m.chunks_exact_mut(c).zip(x.data().chunks_exact(h * w * c)) {
        for px in img.chunks_exact(c) {
            acc.iter_mut().zip(px).for_each(|(a, v)| *a += *v as f64);
        }
        let inv = 1.0 / (h * w) as f64;
        acc.iter_mut().for_each(|a| *a *= inv);
    }
    Ok((n, c, m))
}

// ---------------------------------------------------------------- ECA

/// Efficient channel attention's kernel size rule and gate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EcaConfig {
    /// A fixed kernel size, or `None` to derive it from the channels.
    pub kernel: Option<usize>,
    /// `gamma` of the kernel rule.
    pub gamma: f64,
    /// `beta` of the kernel rule.
    pub beta: f64,
    /// The gate.
    pub gate: Activation,
}

impl EcaConfig {
    /// timm's `EcaModule` defaults: kernel from the channels with gamma 2, beta 1, sigmoid.
    pub const fn timm() -> Self {
        EcaConfig { kernel: None, gamma: 2.0, beta: 1.0, gate: Activation::Sigmoid }
    }

    /// The kernel size for `c` channels: `t = |log2(c) + beta| / gamma` rounded down, made
    /// odd by adding one, at least 3 (the paper's adaptive size).
    pub fn kernel_size(&self, c: usize) -> usize {
        if let Some(k) = self.kernel {
            return k;
        }
        let t = ((c.max(1) as f64).log2() + self.beta).abs() / self.gamma;
        let t = t as usize;
        (if t % 2 == 1 { t } else { t + 1 }).max(3)
    }
}

/// ECA: global average, a 1-D convolution (no bias) of odd size `k` across the channel axis
/// of the pooled vector with zero padding, gate, `x * gate`. Key `conv.weight`, `[1, 1, k]`
/// as timm's `nn.Conv1d` stores it.
#[derive(Debug)]
pub struct Eca {
    /// The 1-D kernel, `[1, 1, k]` in both layouts.
    pub weight: ParamId,
    /// Kernel size.
    pub kernel: usize,
    /// The gate.
    pub gate: Activation,
}

impl Eca {
    /// ECA over `c` channels under `vb` (its own prefix, `...se`).
    pub fn new(vb: &Vb, c: usize, cfg: &EcaConfig) -> Self {
        let k = cfg.kernel_size(c);
        let bound = 1.0 / (k as f32).sqrt();
        Eca {
            weight: vb.pp("conv").param("weight", &[1, 1, k], Layout::Plain, true, Init::Uniform(bound)),
            kernel: k,
            gate: cfg.gate,
        }
    }

    /// `x * gate(x)`, `x: [n, h, w, c]`.
    pub fn forward(&self, cx: &Cx, x: Tensor) -> Result<Tensor> {
        let [n, _, _, c] = *x.dims() else {
            return Err(crate::ZooError::arg("eca", format!("input must be [n, h, w, c], got {:?}", x.dims())));
        };
        let pad = (self.kernel - 1) / 2;
        cx.add_macs((n * c * self.kernel) as u64);
        if exact(cx, self.gate) {
            // inference: the mean, the correlation and the gate in f64, as the SE gate
            let (_, _, mean) = mean_f64(&x)?;
            let k: Vec<f64> = cx.params().get(self.weight).data().iter().map(|&v| v as f64).collect();
            let mut g = vec![0.0f32; n * c];
            for (gs, ms) in g.chunks_exact_mut(c).zip(mean.chunks_exact(c)) {
                for (i, gi) in gs.iter_mut().enumerate() {
                    let z: f64 = k
                        .iter()
                        .enumerate()
                        .filter_map(|(j, w)| (i + j).checked_sub(pad).and_then(|t| ms.get(t)).map(|m| w * m))
                        .sum();
                    *gi = act64(z, self.gate) as f32;
                }
            }
            return Ok(x.mul_channels(&Tensor::from_vec(g, [n, c])?)?);
        }
        // the pooled vector as an `[n, 1, c, 1]` image and the kernel as a `1 x k` conv
        // from one channel to one: a cross-correlation along the channels, as Conv1d
        let s = x.global_avg_pool()?.reshape(vec![n, 1, c, 1])?;
        let w = cx.param(self.weight).reshape(vec![1, self.kernel, 1, 1])?;
        let args = Conv2dArgs { padding: Padding2d::symmetric(0, pad), ..Conv2dArgs::default() };
        let g = act(&s.conv2d(&w, None, &args)?.reshape(vec![n, c])?, self.gate);
        Ok(x.mul_channels(&g)?)
    }
}

// ---------------------------------------------------------------- choice as data

/// The attention a block applies to its output (timm's `attn_layer`).
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum AttnLayer {
    /// None.
    #[default]
    None,
    /// Squeeze-excitation (`'se'`).
    Se(SeConfig),
    /// Efficient channel attention (`'eca'`).
    Eca(EcaConfig),
}

impl AttnLayer {
    /// timm's `'se'` with `SEModule`'s defaults.
    pub const SE: AttnLayer = AttnLayer::Se(SeConfig::timm());
    /// timm's `'eca'` with `EcaModule`'s defaults.
    pub const ECA: AttnLayer = AttnLayer::Eca(EcaConfig::timm());

    /// The module over `c` channels under `vb` (the attention's own prefix), or `None`.
    pub fn build(&self, vb: &Vb, c: usize) -> Option<Attention> {
        match self {
            AttnLayer::None => None,
            AttnLayer::Se(cfg) => Some(Attention::Se(Box::new(SqueezeExcite::new(vb, c, cfg)))),
            AttnLayer::Eca(cfg) => Some(Attention::Eca(Eca::new(vb, c, cfg))),
        }
    }
}

/// A built channel attention.
#[derive(Debug)]
pub enum Attention {
    /// Squeeze-excitation (boxed: the norm makes it several times ECA's size).
    Se(Box<SqueezeExcite>),
    /// Efficient channel attention.
    Eca(Eca),
}

impl Attention {
    /// `x * gate(x)`, `x: [n, h, w, c]`.
    pub fn forward(&self, cx: &Cx, x: Tensor) -> Result<Tensor> {
        match self {
            Attention::Se(m) => m.forward(cx, x),
            Attention::Eca(m) => m.forward(cx, x),
        }
    }

    /// Module name for traces.
    pub fn kind(&self) -> &'static str {
        match self {
            Attention::Se(_) => "SEModule",
            Attention::Eca(_) => "EcaModule",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use convnet_nn::context::Mode;
    use convnet_nn::store::Params;
    use std::cell::RefCell;

    #[test]
    fn widths_follow_timm() {
        let se = SeConfig::timm();
        // make_divisible(c / 16, 8, round_limit=0)
        assert_eq!(se.rd_channels(64), 8);
        assert_eq!(se.rd_channels(256), 16);
        assert_eq!(se.rd_channels(2048), 128);
        assert_eq!(se.with_ratio(0.25).rd_channels(256), 64);
        assert_eq!(SeConfig::legacy(16).rd_channels(2048), 128);
        assert_eq!(SeConfig::legacy(16).rd_channels(72), 4);
        // ECA: int(|log2(c) + 1| / 2), odd, at least 3
        let eca = EcaConfig::timm();
        assert_eq!(eca.kernel_size(64), 3);
        assert_eq!(eca.kernel_size(256), 5);
        assert_eq!(eca.kernel_size(512), 5);
        assert_eq!(eca.kernel_size(1024), 5);
        assert_eq!(eca.kernel_size(2048), 7);
    }

    #[test]
    fn eca_is_a_zero_padded_correlation_over_channels_with_a_gradient() {
        let store = RefCell::new(Params::new());
        let vb = Vb::root(&store, 3);
        let eca = Eca::new(&vb.pp("se"), 5, &EcaConfig { kernel: Some(3), ..EcaConfig::timm() });
        let mut params = store.into_inner();
        let id = params.id("se.conv.weight").unwrap();
        params.set_torch(id, &[0.5, -1.0, 2.0], &[1, 1, 3]).unwrap();
        // x: one image of 1x2 pixels, 5 channels; the pooled means are 1..=5
        let xs: Vec<f32> = (1..=5).flat_map(|v| [v as f32]).chain((1..=5).map(|v| v as f32)).collect();
        let x = Tensor::from_vec(xs, [1, 1, 2, 5]).unwrap().var();
        let sig = |v: f32| 1.0 / (1.0 + (-v).exp());
        let m = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 0.0];
        // inference (the f64 gate) and a recorded pass (autograd ops) agree with Conv1d
        for record in [false, true] {
            let cx = Cx::new(&params, Mode::Eval, 0).recording(record);
            let y = eca.forward(&cx, x.clone()).unwrap();
            for c in 0..5 {
                let z = 0.5 * m[c] - m[c + 1] + 2.0 * m[c + 2];
                let want = (c + 1) as f32 * sig(z);
                assert!((y.data()[c] - want).abs() < 1e-5, "channel {c}: {} vs {want}", y.data()[c]);
            }
            if record {
                let g = y.sum().backward().unwrap();
                assert!(g.get(&x).unwrap().data().iter().all(|v| v.is_finite()));
            }
        }
    }

    #[test]
    fn se_gate_in_f64_equals_the_autograd_gate() {
        let store = RefCell::new(Params::new());
        let vb = Vb::root(&store, 1);
        let se = SqueezeExcite::new(&vb.pp("se"), 24, &SeConfig::timm().with_norm(1e-5));
        let mut params = store.into_inner();
        crate::parity::fill_parity(&mut params, 5);
        let x = Tensor::from_vec(crate::parity::formula_input([2, 24, 3, 5], 2), [2, 3, 5, 24]).unwrap();
        let exact = se.forward(&Cx::new(&params, Mode::Eval, 0), x.clone()).unwrap();
        let graph = se.forward(&Cx::new(&params, Mode::Eval, 0).recording(true), x).unwrap();
        for (a, b) in exact.data().iter().zip(graph.data()) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    #[test]
    fn se_keys_and_norm_are_data() {
        let store = RefCell::new(Params::new());
        let vb = Vb::root(&store, 1);
        let _ = SqueezeExcite::new(&vb.pp("a"), 64, &SeConfig::timm().with_norm(1e-5));
        let _ = SqueezeExcite::new(&vb.pp("b"), 64, &SeConfig::efficientnet(4, Activation::Silu));
        let params = store.into_inner();
        let keys: Vec<String> = params.key_shape_lines();
        for k in ["a.fc1.weight:8,64,1,1", "a.bn.running_var:8", "a.fc2.bias:64", "b.conv_reduce.weight:4,64,1,1"] {
            assert!(keys.iter().any(|l| l == k), "{k} not in {keys:?}");
        }
    }
}
