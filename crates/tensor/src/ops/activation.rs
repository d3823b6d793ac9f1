//! Pointwise activations: relu, relu6, sigmoid, tanh, silu (swish), gelu
//! (exact, erf form, as Keras' default and PyTorch's `nn.GELU()`), hard-swish
//! (MobileNet-V3's `x * relu6(x + 3) / 6`), hard-sigmoid, leaky relu, ELU and
//! identity. Leaky relu and ELU also take their slope / alpha as an argument
//! ([`Tensor::leaky_relu`], [`Tensor::elu`]); as an [`Activation`] they have
//! PyTorch's defaults.

use super::{constant, map, zip_map};
use crate::{Backward, Tensor};
use convnet_kernels::elementwise::{self, Unary, erf};
use serde::{Deserialize, Serialize};

/// An activation function, named as Keras names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    #[default]
    Linear,
    Relu,
    Relu6,
    Sigmoid,
    Tanh,
    #[serde(alias = "swish")]
    Silu,
    Gelu,
    HardSwish,
    HardSigmoid,
    /// `x` for `x > 0`, else `0.01 x`: PyTorch's `nn.LeakyReLU()` default slope,
    /// the one timm's models use (Keras' `leaky_relu` defaults to 0.2; call
    /// [`Tensor::leaky_relu`] for another slope).
    LeakyRelu,
    /// `x` for `x > 0`, else `e^x - 1` (alpha 1, PyTorch's and Keras' default;
    /// [`Tensor::elu`] takes another).
    Elu,
}

/// The slope of [`Activation::LeakyRelu`] (PyTorch's `nn.LeakyReLU` default).
pub const LEAKY_RELU_SLOPE: f32 = 0.01;
/// The alpha of [`Activation::Elu`] (PyTorch's `nn.ELU` default).
pub const ELU_ALPHA: f32 = 1.0;

/// `x` for `x > 0`, else `slope * x` (NaN propagates).
#[inline]
pub fn leaky_relu(x: f32, slope: f32) -> f32 {
    if x > 0.0 { x } else { x * slope }
}

/// `x` for `x > 0`, else `alpha * (e^x - 1)` (`exp_m1`: exact near zero).
#[inline]
pub fn elu(x: f32, alpha: f32) -> f32 {
    if x > 0.0 { x } else { alpha * x.exp_m1() }
}

impl Activation {
    /// Keras' name of the activation.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Linear => "linear",
            Activation::Relu => "relu",
            Activation::Relu6 => "relu6",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::Silu => "silu",
            Activation::Gelu => "gelu",
            Activation::HardSwish => "hard_swish",
            Activation::HardSigmoid => "hard_sigmoid",
            Activation::LeakyRelu => "leaky_relu",
            Activation::Elu => "elu",
        }
    }

    /// Parses a Keras activation name.
    pub fn from_name(name: &str) -> Option<Activation> {
        Some(match name {
            "linear" | "none" | "identity" => Activation::Linear,
            "relu" => Activation::Relu,
            "relu6" => Activation::Relu6,
            "sigmoid" => Activation::Sigmoid,
            "tanh" => Activation::Tanh,
            "silu" | "swish" => Activation::Silu,
            "gelu" => Activation::Gelu,
            "hard_swish" | "hardswish" => Activation::HardSwish,
            "hard_sigmoid" | "hardsigmoid" => Activation::HardSigmoid,
            "leaky_relu" | "leakyrelu" => Activation::LeakyRelu,
            "elu" => Activation::Elu,
            _ => return None,
        })
    }

    /// f(x).
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Linear => x,
            Activation::Relu => {
                if x < 0.0 {
                    0.0
                } else {
                    x
                }
            } // NaN propagates, as in PyTorch
            Activation::Relu6 => x.clamp(0.0, 6.0),
            Activation::Sigmoid => sigmoid(x),
            Activation::Tanh => x.tanh(),
            Activation::Silu => x * sigmoid(x),
            Activation::Gelu => elementwise::gelu(x),
            Activation::HardSwish => x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
            Activation::HardSigmoid => (x + 3.0).clamp(0.0, 6.0) / 6.0,
            Activation::LeakyRelu => leaky_relu(x, LEAKY_RELU_SLOPE),
            Activation::Elu => elu(x, ELU_ALPHA),
        }
    }

    /// f'(x) given the input `x` and output `y = f(x)`.
    #[inline]
    pub fn derivative(self, x: f32, y: f32) -> f32 {
        match self {
            Activation::Linear => 1.0,
            Activation::Relu => (x > 0.0) as u8 as f32,
            Activation::Relu6 => (x > 0.0 && x < 6.0) as u8 as f32,
            Activation::Sigmoid => y * (1.0 - y),
            Activation::Tanh => 1.0 - y * y,
            Activation::Silu => {
                let s = sigmoid(x);
                s * (1.0 + x * (1.0 - s))
            }
            Activation::Gelu => {
                let cdf = 0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
                let pdf = (-0.5 * x * x).exp() * 0.398_942_3;
                cdf + x * pdf
            }
            Activation::HardSwish => {
                if x <= -3.0 {
                    0.0
                } else if x >= 3.0 {
                    1.0
                } else {
                    (2.0 * x + 3.0) / 6.0
                }
            }
            Activation::HardSigmoid => {
                if x > -3.0 && x < 3.0 {
                    1.0 / 6.0
                } else {
                    0.0
                }
            }
            Activation::LeakyRelu => {
                if x > 0.0 {
                    1.0
                } else {
                    LEAKY_RELU_SLOPE
                }
            }
            // alpha * e^x = y + alpha below zero
            Activation::Elu => {
                if x > 0.0 {
                    1.0
                } else {
                    y + ELU_ALPHA
                }
            }
        }
    }
}

fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Leaky relu's backward: `g` where `x > 0`, `slope * g` elsewhere.
struct LeakyReluBackward(f32);

impl Backward for LeakyReluBackward {
    fn name(&self) -> &'static str {
        "leaky_relu"
    }
    fn backward(&self, inputs: &[Tensor], _output: &Tensor, grad: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        let slope = self.0;
        let dx = zip_map(inputs[0].data(), grad.data(), move |x, g| if x > 0.0 { g } else { g * slope });
        vec![Some(constant(dx, grad.dims()))]
    }
}

/// ELU's backward: `g` where `x > 0`, `g * alpha * e^x = g * (y + alpha)`
/// elsewhere (read from the output: no exponential).
struct EluBackward(f32);

impl Backward for EluBackward {
    fn name(&self) -> &'static str {
        "elu"
    }
    fn backward(&self, inputs: &[Tensor], output: &Tensor, grad: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        let alpha = self.0;
        let d = zip_map(inputs[0].data(), output.data(), move |x, y| if x > 0.0 { 1.0 } else { y + alpha });
        let dx = zip_map(&d, grad.data(), |d, g| d * g);
        vec![Some(constant(dx, grad.dims()))]
    }
}

struct ActivationBackward(Activation);

impl Backward for ActivationBackward {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn backward(&self, inputs: &[Tensor], output: &Tensor, grad: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        let act = self.0;
        let x = inputs[0].data();
        let y = output.data();
        let g = grad.data();
        let dx = match act {
            // derivatives expressible from the output alone: one pass over (y, g)
            Activation::Relu => {
                let mut dx = vec![0.0; g.len()];
                convnet_kernels::elementwise::relu_backward(g, y, &mut dx);
                dx
            }
            Activation::Sigmoid | Activation::Tanh | Activation::Linear => {
                zip_map(y, g, move |y, g| g * act.derivative(0.0, y))
            }
            // the sigmoid from the output, no exponential (`derivative` is the reference)
            Activation::Silu => convnet_kernels::elementwise::silu_backward(x, y, g),
            _ => {
                let d = zip_map(x, y, move |x, y| act.derivative(x, y));
                zip_map(&d, g, |d, g| d * g)
            }
        };
        vec![Some(constant(dx, grad.dims()))]
    }
}

impl Tensor {
    /// `f(x)` elementwise.
    pub fn activation(&self, act: Activation) -> Tensor {
        if act == Activation::Linear {
            return self.clone();
        }
        // one monomorphised loop per activation: a `match` per element keeps
        // the loop from vectorising (relu was 3x slower that way)
        // (relu, relu6, sigmoid and silu: the kernels' vectorised loops)
        let x = self.data();
        let y = match act {
            Activation::Linear => x.to_vec(),
            Activation::Relu => elementwise::unary(Unary::Relu, x),
            Activation::Relu6 => elementwise::unary(Unary::Relu6, x),
            Activation::Sigmoid => elementwise::unary(Unary::Sigmoid, x),
            Activation::Tanh => map(x, |v| Activation::Tanh.apply(v)),
            Activation::Silu => elementwise::unary(Unary::Silu, x),
            Activation::Gelu => elementwise::unary(Unary::Gelu, x),
            Activation::HardSwish => elementwise::unary(Unary::HardSwish, x),
            Activation::HardSigmoid => map(x, |v| Activation::HardSigmoid.apply(v)),
            // their own ops, which take the parameter
            Activation::LeakyRelu => return self.leaky_relu(LEAKY_RELU_SLOPE),
            Activation::Elu => return self.elu(ELU_ALPHA),
        };
        Tensor::from_op(y, self.shape().clone(), &[self], ActivationBackward(act))
    }
    /// `max(x, 0)`.
    pub fn relu(&self) -> Tensor {
        self.activation(Activation::Relu)
    }
    /// `min(max(x, 0), 6)`.
    pub fn relu6(&self) -> Tensor {
        self.activation(Activation::Relu6)
    }
    /// `1 / (1 + e^-x)`.
    pub fn sigmoid(&self) -> Tensor {
        self.activation(Activation::Sigmoid)
    }
    /// `tanh(x)`.
    pub fn tanh(&self) -> Tensor {
        self.activation(Activation::Tanh)
    }
    /// `x * sigmoid(x)` (swish).
    pub fn silu(&self) -> Tensor {
        self.activation(Activation::Silu)
    }
    /// `x * Phi(x)` (exact GELU).
    pub fn gelu(&self) -> Tensor {
        self.activation(Activation::Gelu)
    }
    /// `x * relu6(x + 3) / 6`.
    pub fn hard_swish(&self) -> Tensor {
        self.activation(Activation::HardSwish)
    }
    /// `relu6(x + 3) / 6`.
    pub fn hard_sigmoid(&self) -> Tensor {
        self.activation(Activation::HardSigmoid)
    }
    /// `x` for `x > 0`, else `slope * x` (PyTorch's `F.leaky_relu`;
    /// [`Activation::LeakyRelu`] is slope 0.01).
    pub fn leaky_relu(&self, slope: f32) -> Tensor {
        let y = map(self.data(), move |v| leaky_relu(v, slope));
        Tensor::from_op(y, self.shape().clone(), &[self], LeakyReluBackward(slope))
    }
    /// `x` for `x > 0`, else `alpha * (e^x - 1)` (PyTorch's `F.elu`;
    /// [`Activation::Elu`] is alpha 1).
    pub fn elu(&self, alpha: f32) -> Tensor {
        let y = map(self.data(), move |v| elu(v, alpha));
        Tensor::from_op(y, self.shape().clone(), &[self], EluBackward(alpha))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exponential-free SiLU backward against the derivative computed from the input,
    /// on ragged sizes (the serial, vectorised and parallel paths) and values from deep in
    /// both tails through zero.
    #[test]
    fn silu_backward_from_the_output_equals_the_derivative() {
        for n in [1usize, 7, 16, 67, 40_000, 70_001] {
            let x: Vec<f32> = (0..n)
                .map(|i| match i % 7 {
                    0 => 0.0,
                    1 => -90.0 + (i % 13) as f32,
                    2 => 40.0 + (i % 5) as f32,
                    _ => ((i * 37 % 1000) as f32 - 500.0) / 40.0,
                })
                .collect();
            let g: Vec<f32> = (0..n).map(|i| ((i * 11 % 17) as f32 - 8.0) / 8.0).collect();
            let xt = Tensor::from_vec(x.clone(), [n]).unwrap().var();
            let y = xt.silu();
            let loss = y.mul(&Tensor::from_vec(g.clone(), [n]).unwrap()).unwrap().sum();
            let grads = loss.backward().unwrap();
            let dx = grads.get(&xt).unwrap().to_vec();
            for i in 0..n {
                let want = g[i] * Activation::Silu.derivative(x[i], y.data()[i]);
                let err = (dx[i] - want).abs();
                assert!(err <= 1e-6 + 2e-6 * want.abs(), "n {n}, x {}: {} vs {want}", x[i], dx[i]);
            }
        }
    }
}
