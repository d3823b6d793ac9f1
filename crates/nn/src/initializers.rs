//! Weight initializers with Keras' names and formulas (`keras.initializers`): fans are
//! computed as Keras' `compute_fans` does (for a `[kh, kw, in, out]` kernel, `fan_in =
//! kh * kw * in`, `fan_out = kh * kw * out`). Random values come from the model's seeded
//! [`Rng`], so the same seed gives the same weights everywhere.

use convnet_tensor::rng::Rng;
use serde::{Deserialize, Serialize};

/// How a parameter's first values are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Initializer {
    /// All zeros (Keras' default for biases).
    Zeros,
    /// All ones.
    Ones,
    /// One value everywhere.
    Constant(f32),
    /// `U(-l, l)` with `l = sqrt(6 / (fan_in + fan_out))` (Keras' default for kernels).
    #[default]
    GlorotUniform,
    /// Truncated normal (within 2 std) with `std = sqrt(2 / (fan_in + fan_out)) / 0.8796`.
    GlorotNormal,
    /// `U(-l, l)` with `l = sqrt(6 / fan_in)`.
    HeUniform,
    /// Truncated normal with `std = sqrt(2 / fan_in) / 0.8796`.
    HeNormal,
    /// `U(-l, l)` with `l = sqrt(3 / fan_in)`.
    LecunUniform,
    /// Truncated normal with `std = sqrt(1 / fan_in) / 0.8796`.
    LecunNormal,
    /// `N(mean, stddev)`.
    RandomNormal {
        /// Mean.
        mean: f32,
        /// Standard deviation.
        stddev: f32,
    },
    /// `U(minval, maxval)`.
    RandomUniform {
        /// Lower bound.
        minval: f32,
        /// Upper bound.
        maxval: f32,
    },
}

/// Std of a standard normal truncated to `[-2, 2]`: Keras divides by it so that
/// the truncated draws keep the wanted variance.
const TRUNCATED_STD: f32 = 0.879_625_7;

/// `(fan_in, fan_out)` of a weight of `shape`, as Keras' `compute_fans`.
pub fn compute_fans(shape: &[usize]) -> (usize, usize) {
    match shape {
        [] => (1, 1),
        [n] => (*n, *n),
        [a, b] => (*a, *b),
        _ => {
            let rf: usize = shape[..shape.len() - 2].iter().product();
            (shape[shape.len() - 2] * rf, shape[shape.len() - 1] * rf)
        }
    }
}

impl Initializer {
    /// Keras' name (`"glorot_uniform"`).
    pub fn name(&self) -> &'static str {
        match self {
            Initializer::Zeros => "zeros",
            Initializer::Ones => "ones",
            Initializer::Constant(_) => "constant",
            Initializer::GlorotUniform => "glorot_uniform",
            Initializer::GlorotNormal => "glorot_normal",
            Initializer::HeUniform => "he_uniform",
            Initializer::HeNormal => "he_normal",
            Initializer::LecunUniform => "lecun_uniform",
            Initializer::LecunNormal => "lecun_normal",
            Initializer::RandomNormal { .. } => "random_normal",
            Initializer::RandomUniform { .. } => "random_uniform",
        }
    }

    /// Draws `prod(shape)` values.
    pub fn sample(&self, shape: &[usize], rng: &mut Rng) -> Vec<f32> {
        let n: usize = shape.iter().product();
        let (fan_in, fan_out) = compute_fans(shape);
        let (fan_in, fan_out) = (fan_in.max(1) as f32, fan_out.max(1) as f32);
        let uniform =
            |rng: &mut Rng, limit: f32| -> Vec<f32> { (0..n).map(|_| rng.uniform_range(-limit, limit)).collect() };
        let truncated = |rng: &mut Rng, std: f32| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    loop {
                        let z = rng.normal();
                        if z.abs() <= 2.0 {
                            break z * std;
                        }
                    }
                })
                .collect()
        };
        match *self {
            Initializer::Zeros => vec![0.0; n],
            Initializer::Ones => vec![1.0; n],
            Initializer::Constant(v) => vec![v; n],
            Initializer::GlorotUniform => uniform(rng, (6.0 / (fan_in + fan_out)).sqrt()),
            Initializer::GlorotNormal => truncated(rng, (2.0 / (fan_in + fan_out)).sqrt() / TRUNCATED_STD),
            Initializer::HeUniform => uniform(rng, (6.0 / fan_in).sqrt()),
            Initializer::HeNormal => truncated(rng, (2.0 / fan_in).sqrt() / TRUNCATED_STD),
            Initializer::LecunUniform => uniform(rng, (3.0 / fan_in).sqrt()),
            Initializer::LecunNormal => truncated(rng, (1.0 / fan_in).sqrt() / TRUNCATED_STD),
            Initializer::RandomNormal { mean, stddev } => (0..n).map(|_| mean + stddev * rng.normal()).collect(),
            Initializer::RandomUniform { minval, maxval } => {
                (0..n).map(|_| rng.uniform_range(minval, maxval)).collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fans_follow_keras() {
        assert_eq!(compute_fans(&[5, 5, 32, 64]), (800, 1600));
        assert_eq!(compute_fans(&[3136, 128]), (3136, 128));
        assert_eq!(compute_fans(&[10]), (10, 10));
    }

    #[test]
    fn glorot_uniform_stays_within_its_limit_and_fills_it() {
        let mut rng = Rng::new(1);
        let v = Initializer::GlorotUniform.sample(&[5, 5, 32, 64], &mut rng);
        let limit = (6.0f32 / 2400.0).sqrt();
        assert!(v.iter().all(|x| x.abs() <= limit));
        let max = v.iter().fold(0.0f32, |a, b| a.max(b.abs()));
        assert!(max > 0.99 * limit, "max {max} limit {limit}");
        let mean: f32 = v.iter().sum::<f32>() / v.len() as f32;
        assert!(mean.abs() < 0.01 * limit);
    }

    #[test]
    fn he_normal_has_the_wanted_std() {
        let mut rng = Rng::new(2);
        let v = Initializer::HeNormal.sample(&[200, 100], &mut rng);
        let var: f32 = v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32;
        let want = 2.0 / 200.0;
        assert!((var / want - 1.0).abs() < 0.05, "var {var} want {want}");
    }
}
