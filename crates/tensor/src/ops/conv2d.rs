//! 2-D convolution, NHWC input and HWIO (`[kh, kw, in/groups, out]`) weights,
//! with stride, dilation, groups (depthwise when `groups == in`) and padding
//! that is valid, Keras/TensorFlow "same" (the extra pixel at the bottom and
//! right) or explicit and possibly asymmetric (PyTorch's symmetric padding is
//! the explicit case).

use super::constant;
use crate::{Activation, Backward, Result, Tensor, TensorError};
use convnet_kernels::conv::{self, ConvAct, ConvGeometry};
use convnet_kernels::prepared::{self, PreparedConv};
use serde::{Deserialize, Serialize};

/// How a convolution or pooling window pads its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Padding2d {
    /// No padding: windows stay inside the input.
    #[default]
    Valid,
    /// Output size `ceil(in / stride)`; the total padding is split with the
    /// odd pixel at the bottom/right (TensorFlow's rule, also timm's `tf_` models).
    Same,
    /// Explicit pixels on each side.
    Explicit { top: usize, bottom: usize, left: usize, right: usize },
}

impl Padding2d {
    /// Symmetric explicit padding (PyTorch's `padding=(ph, pw)`).
    pub fn symmetric(ph: usize, pw: usize) -> Self {
        Padding2d::Explicit { top: ph, bottom: ph, left: pw, right: pw }
    }

    /// `(before, after)` pixels along one axis for an input of `size`, a
    /// window spanning `extent` pixels (`(k - 1) * dilation + 1`) and `stride`.
    pub fn resolve_axis(self, size: usize, extent: usize, stride: usize, vertical: bool) -> (usize, usize) {
        match self {
            Padding2d::Valid => (0, 0),
            Padding2d::Same => {
                let out = size.div_ceil(stride);
                let total = ((out.saturating_sub(1)) * stride + extent).saturating_sub(size);
                (total / 2, total - total / 2)
            }
            Padding2d::Explicit { top, bottom, left, right } => {
                if vertical {
                    (top, bottom)
                } else {
                    (left, right)
                }
            }
        }
    }
}

/// Arguments of [`Tensor::conv2d`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conv2dArgs {
    pub stride: (usize, usize),
    pub padding: Padding2d,
    pub dilation: (usize, usize),
    pub groups: usize,
}

impl Default for Conv2dArgs {
    fn default() -> Self {
        Self { stride: (1, 1), padding: Padding2d::Valid, dilation: (1, 1), groups: 1 }
    }
}

impl Conv2dArgs {
    /// Output `(height, width)` for an input of `(h, w)` and a `(kh, kw)`
    /// kernel, or the reason the combination is impossible.
    pub fn output_hw(&self, (h, w): (usize, usize), (kh, kw): (usize, usize)) -> Result<(usize, usize)> {
        let g = self.geometry_hw(h, w, kh, kw)?;
        Ok((g.0, g.1))
    }

    /// `(out_h, out_w, pad_top, pad_left)`.
    fn geometry_hw(&self, h: usize, w: usize, kh: usize, kw: usize) -> Result<(usize, usize, usize, usize)> {
        let (sh, sw) = self.stride;
        let (dh, dw) = self.dilation;
        if sh == 0 || sw == 0 || dh == 0 || dw == 0 || kh == 0 || kw == 0 {
            return Err(TensorError::invalid(
                "conv2d",
                format!("kernel {kh}x{kw}, strides {sh}x{sw} and dilation {dh}x{dw} must all be positive"),
            ));
        }
        let (eh, ew) = ((kh - 1) * dh + 1, (kw - 1) * dw + 1);
        let (pt, pb) = self.padding.resolve_axis(h, eh, sh, true);
        let (pl, pr) = self.padding.resolve_axis(w, ew, sw, false);
        if h + pt + pb < eh || w + pl + pr < ew {
            return Err(TensorError::invalid(
                "conv2d",
                format!(
                    "kernel {kh}x{kw} (dilation {dh}x{dw}) is larger than the padded input {}x{}; use padding=\"same\" or a smaller kernel",
                    h + pt + pb,
                    w + pl + pr
                ),
            ));
        }
        Ok(((h + pt + pb - eh) / sh + 1, (w + pl + pr - ew) / sw + 1, pt, pl))
    }
}

struct Conv2dBackward {
    geo: ConvGeometry,
    has_bias: bool,
    /// Activation fused into the output (its mask is read from the output).
    act: ConvAct,
}

impl Backward for Conv2dBackward {
    fn name(&self) -> &'static str {
        "conv2d"
    }
    fn backward(&self, inputs: &[Tensor], output: &Tensor, grad: &Tensor, needs: &[bool]) -> Vec<Option<Tensor>> {
        let (x, w) = (&inputs[0], &inputs[1]);
        let mut dx = needs[0].then(|| vec![0.0; x.numel()]);
        let mut dw = needs[1].then(|| vec![0.0; w.numel()]);
        let mut db = (self.has_bias && needs[2]).then(|| vec![0.0; self.geo.out_c]);
        conv::conv2d_backward(
            &self.geo,
            x.data(),
            w.data(),
            grad.data(),
            self.act,
            Some(output.data()),
            dx.as_deref_mut(),
            dw.as_deref_mut(),
            db.as_deref_mut(),
        );
        let mut grads = vec![dx.map(|d| constant(d, x.dims())), dw.map(|d| constant(d, w.dims()))];
        if self.has_bias {
            grads.push(db.map(|d| constant(d, &[self.geo.out_c])));
        }
        grads
    }
}

impl Tensor {
    /// 2-D convolution. `self: [n, h, w, cin]`, `weight: [kh, kw, cin/groups, cout]`,
    /// `bias: [cout]` -> `[n, oh, ow, cout]`.
    pub fn conv2d(&self, weight: &Tensor, bias: Option<&Tensor>, args: &Conv2dArgs) -> Result<Tensor> {
        self.conv2d_fused(weight, bias, args, ConvAct::Identity)
    }

    fn conv2d_fused(&self, weight: &Tensor, bias: Option<&Tensor>, args: &Conv2dArgs, act: ConvAct) -> Result<Tensor> {
        let geo = conv_geometry(self, weight, args)?;
        if let Some(b) = bias
            && b.dims() != [geo.out_c]
        {
            return Err(TensorError::shape("conv2d", format!("bias {} for {} filters", b.shape(), geo.out_c)));
        }
        let y = conv::conv2d_forward_vec(&geo, self.data(), weight.data(), bias.map(|b| b.data()), act);
        let shape = [geo.batch, geo.out_h, geo.out_w, geo.out_c];
        let op = Conv2dBackward { geo, has_bias: bias.is_some(), act };
        Ok(match bias {
            Some(b) => Tensor::from_op(y, shape, &[self, weight, b], op),
            None => Tensor::from_op(y, shape, &[self, weight], op),
        })
    }

    /// `act(conv2d(self, weight, bias))`: convolution with a fused activation.
    /// Relu and relu6 are applied in the kernel's store and their masks read
    /// back from the output in the backward pass (no extra tensor); SiLU is
    /// fused when no gradient is wanted (inference: its derivative needs the
    /// pre-activation); other activations run as a separate op.
    pub fn conv2d_act(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        args: &Conv2dArgs,
        act: Activation,
    ) -> Result<Tensor> {
        let needs_grad = self.requires_grad() || weight.requires_grad() || bias.is_some_and(|b| b.requires_grad());
        match act {
            Activation::Linear => self.conv2d_fused(weight, bias, args, ConvAct::Identity),
            Activation::Relu => self.conv2d_fused(weight, bias, args, ConvAct::Relu),
            Activation::Relu6 => self.conv2d_fused(weight, bias, args, ConvAct::Relu6),
            Activation::Silu if !needs_grad => self.conv2d_fused(weight, bias, args, ConvAct::Silu),
            Activation::HardSwish if !needs_grad => self.conv2d_fused(weight, bias, args, ConvAct::HardSwish),
            _ => Ok(self.conv2d(weight, bias, args)?.activation(act)),
        }
    }
}

impl Tensor {
    /// `act(conv2d(self, weight, bias) + residual)`: a residual block's last
    /// convolution, its skip connection `residual` (`[n, oh, ow, cout]`) and
    /// activation. Without gradients (inference) the sum and a relu are fused
    /// into the convolution's store, saving two passes over the output; with
    /// gradients, or another activation, it records the three ops separately.
    pub fn conv2d_add_act(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        args: &Conv2dArgs,
        residual: &Tensor,
        act: Activation,
    ) -> Result<Tensor> {
        let geo = conv_geometry(self, weight, args)?;
        if let Some(b) = bias
            && b.dims() != [geo.out_c]
        {
            return Err(TensorError::shape("conv2d", format!("bias {} for {} filters", b.shape(), geo.out_c)));
        }
        let shape = [geo.batch, geo.out_h, geo.out_w, geo.out_c];
        if residual.dims() != shape {
            return Err(TensorError::shape(
                "conv2d_add_act",
                format!(
                    "residual {} for a convolution output of [{}, {}, {}, {}]",
                    residual.shape(),
                    shape[0],
                    shape[1],
                    shape[2],
                    shape[3]
                ),
            ));
        }
        let grad = self.requires_grad()
            || weight.requires_grad()
            || bias.is_some_and(|b| b.requires_grad())
            || residual.requires_grad();
        let fused = match act {
            Activation::Linear => Some(ConvAct::Identity),
            Activation::Relu => Some(ConvAct::Relu),
            _ => None,
        };
        match fused {
            Some(fused) if !grad => {
                let y = conv::conv2d_forward_residual_vec(
                    &geo,
                    self.data(),
                    weight.data(),
                    bias.map(|b| b.data()),
                    residual.data(),
                    fused,
                );
                Ok(constant(y, &shape))
            }
            _ => Ok(self.conv2d(weight, bias, args)?.add(residual)?.activation(act)),
        }
    }

    /// `act(conv2d(self, weight, bias))` and its mean over height and width
    /// (`[n, cout]`): a convolution followed by squeeze-excitation's squeeze.
    /// Without autograd, a depthwise convolution sums its outputs as it stores
    /// them (no second pass over the output); otherwise this is
    /// [`Tensor::conv2d_act`] then [`Tensor::global_avg_pool`].
    pub fn conv2d_act_mean(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        args: &Conv2dArgs,
        act: Activation,
    ) -> Result<(Tensor, Tensor)> {
        let needs_grad = self.requires_grad() || weight.requires_grad() || bias.is_some_and(|b| b.requires_grad());
        let fused = fused_act(act);
        let geo = conv_geometry(self, weight, args)?;
        if let Some(ca) = fused
            && !needs_grad
            && convnet_kernels::depthwise::supported(&geo)
            && geo.batch > 0
        {
            if let Some(b) = bias
                && b.dims() != [geo.out_c]
            {
                return Err(TensorError::shape("conv2d", format!("bias {} for {} filters", b.shape(), geo.out_c)));
            }
            let (y, m) = convnet_kernels::depthwise::forward_with_mean(
                &geo,
                self.data(),
                weight.data(),
                bias.map(|b| b.data()),
                ca,
            );
            return Ok((
                constant(y, &[geo.batch, geo.out_h, geo.out_w, geo.out_c]),
                constant(m, &[geo.batch, geo.out_c]),
            ));
        }
        let y = self.conv2d_act(weight, bias, args, act)?;
        let m = y.global_avg_pool()?;
        Ok((y, m))
    }
}

impl Tensor {
    /// [`Tensor::conv2d_act`] (or, with `residual`, [`Tensor::conv2d_add_act`]) through
    /// weights prepared once for inference (`prep`, made from `weight`'s values): the
    /// kernels read its packed form instead of repacking `weight` on every call. With
    /// autograd (any input needing a gradient) this is the plain op on `weight`.
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d_prepared(
        &self,
        weight: &Tensor,
        prep: &PreparedConv,
        bias: Option<&Tensor>,
        args: &Conv2dArgs,
        residual: Option<&Tensor>,
        act: Activation,
    ) -> Result<Tensor> {
        let grad = self.requires_grad()
            || weight.requires_grad()
            || bias.is_some_and(|b| b.requires_grad())
            || residual.is_some_and(|r| r.requires_grad());
        let fused = fused_act(act);
        let geo = conv_geometry(self, weight, args)?;
        let (Some(fused), false, true) = (fused, grad, prep.fits(&geo)) else {
            return match residual {
                Some(r) => self.conv2d_add_act(weight, bias, args, r, act),
                None => self.conv2d_act(weight, bias, args, act),
            };
        };
        let shape = [geo.batch, geo.out_h, geo.out_w, geo.out_c];
        if let Some(b) = bias
            && b.dims() != [geo.out_c]
        {
            return Err(TensorError::shape("conv2d", format!("bias {} for {} filters", b.shape(), geo.out_c)));
        }
        if let Some(r) = residual
            && r.dims() != shape
        {
            return Err(TensorError::shape(
                "conv2d_prepared",
                format!("residual {} for a convolution output of {:?}", r.shape(), shape),
            ));
        }
        let y = prepared::conv2d_forward_prepared(
            &geo,
            self.data(),
            weight.data(),
            prep,
            bias.map(|b| b.data()),
            residual.map(|r| r.data()),
            fused,
        );
        Ok(constant(y, &shape))
    }
}

/// Checks shapes and builds the kernel geometry.
pub(crate) fn conv_geometry(x: &Tensor, weight: &Tensor, args: &Conv2dArgs) -> Result<ConvGeometry> {
    let [n, h, w, c] = *x.dims() else {
        return Err(TensorError::shape("conv2d", format!("input must be [n, h, w, c], got {}", x.shape())));
    };
    let [kh, kw, cg, oc] = *weight.dims() else {
        return Err(TensorError::shape(
            "conv2d",
            format!("weight must be [kh, kw, in/groups, out], got {}", weight.shape()),
        ));
    };
    // as PyTorch: only the batch may be empty
    if h == 0 || w == 0 || c == 0 {
        return Err(TensorError::shape(
            "conv2d",
            format!("input {} has an empty height, width or channel axis", x.shape()),
        ));
    }
    let groups = args.groups;
    if groups == 0 || c % groups != 0 || oc % groups != 0 {
        return Err(TensorError::invalid(
            "conv2d",
            format!("groups={groups} must divide both the {c} input channels and the {oc} filters"),
        ));
    }
    if cg * groups != c {
        return Err(TensorError::shape(
            "conv2d",
            format!(
                "weight {} expects {} input channels with groups={groups}, input has {c}",
                weight.shape(),
                cg * groups
            ),
        ));
    }
    let (oh, ow, pt, pl) = args.geometry_hw(h, w, kh, kw)?;
    Ok(ConvGeometry {
        batch: n,
        in_h: h,
        in_w: w,
        in_c: c,
        out_h: oh,
        out_w: ow,
        out_c: oc,
        kernel_h: kh,
        kernel_w: kw,
        stride_h: args.stride.0,
        stride_w: args.stride.1,
        dilation_h: args.dilation.0,
        dilation_w: args.dilation.1,
        pad_top: pt,
        pad_left: pl,
        groups,
    })
}

/// The activation as the kernels apply it in a convolution's store (`None`: not fusable).
fn fused_act(act: Activation) -> Option<ConvAct> {
    match act {
        Activation::Linear => Some(ConvAct::Identity),
        Activation::Relu => Some(ConvAct::Relu),
        Activation::Relu6 => Some(ConvAct::Relu6),
        Activation::Silu => Some(ConvAct::Silu),
        Activation::HardSwish => Some(ConvAct::HardSwish),
        _ => None,
    }
}
