//! The timm parity weight formula of `fixtures/timm_parity/README.md`: every state-dict
//! tensor filled from its key by FNV-1a and SplitMix64, in PyTorch's layout, so that timm
//! and convnet build the same weights without shipping them; and the README's comparison
//! rule (relative to the largest reference logit, on the logits and on the row difference).

pub use convnet_nn::store::fnv1a64;
use convnet_nn::store::{ParamId, Params};

/// Fills every tensor of `params` with the formula, in PyTorch's layout, then converts it
/// as a checkpoint would be.
pub fn fill_parity(params: &mut Params, salt: u64) {
    let ids: Vec<ParamId> = params.iter().map(|(id, _)| id).collect();
    for id in ids {
        let e = params.entry(id);
        let shape = e.torch_shape();
        let data = formula_tensor(e.key(), &shape, salt);
        params.set_torch(id, &data, &shape).expect("the formula fills the store's own shapes");
    }
}

/// One SplitMix64 output for state `x`.
pub fn splitmix64(x: u64) -> u64 {
    let x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let z = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `u(key, i, salt)`, uniform in `[-1, 1)`.
pub fn unit(key_hash: u64, i: u64, salt: u64) -> f64 {
    let r = splitmix64((key_hash ^ salt).wrapping_add(i)) >> 11;
    r as f64 * (1.0 / (1u64 << 53) as f64) * 2.0 - 1.0
}

/// The formula's values for the tensor `key` of PyTorch shape `shape`, row-major.
pub fn formula_tensor(key: &str, shape: &[usize], salt: u64) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let h = fnv1a64(key);
    let u = |i: usize| unit(h, i as u64, salt);
    let f = |i: usize| -> f64 {
        if key.ends_with("num_batches_tracked") {
            0.0
        } else if key.ends_with("running_var") {
            1.0 + 0.5 * u(i)
        } else if key.ends_with("running_mean") {
            0.01 * u(i)
        } else if shape.len() >= 2 {
            let fan_in: usize = shape[1..].iter().product();
            u(i) * (6.0 / fan_in as f64).sqrt()
        } else if key.ends_with("weight") {
            1.0 + 0.1 * u(i)
        } else {
            0.01 * u(i)
        }
    };
    (0..n).map(|i| f(i) as f32).collect()
}

/// The fixture input: `u("input", i, salt)` over a flat NCHW tensor of `nchw`.
pub fn formula_input(nchw: [usize; 4], salt: u64) -> Vec<f32> {
    let h = fnv1a64("input");
    (0..nchw.iter().product::<usize>()).map(|i| unit(h, i as u64, salt) as f32).collect()
}

/// How far convnet's logits are from a reference, as the parity README measures it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ParityError {
    /// `max |ours - ref| / max |ref|` over all logits.
    pub logits: f64,
    /// The same for `row0 - row1` (0 with a single row).
    pub row_difference: f64,
}

impl ParityError {
    /// Both within `tol` (the README's is 1e-3).
    pub fn within(&self, tol: f64) -> bool {
        self.logits <= tol && self.row_difference <= tol
    }
}

/// Compares `ours` to `reference` (both `rows x classes`, row-major).
pub fn compare_logits(ours: &[f32], reference: &[f64], classes: usize) -> ParityError {
    let rel = |a: &[f64], b: &[f64]| {
        let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let err = a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
        if scale == 0.0 { err } else { err / scale }
    };
    let ours: Vec<f64> = ours.iter().map(|&v| v as f64).collect();
    let logits = if ours.len() == reference.len() { rel(&ours, reference) } else { f64::INFINITY };
    let row_difference = if reference.len() >= 2 * classes && ours.len() == reference.len() {
        let d = |v: &[f64]| -> Vec<f64> { (0..classes).map(|j| v[j] - v[classes + j]).collect() };
        rel(&d(&ours), &d(reference))
    } else {
        0.0
    };
    ParityError { logits, row_difference }
}

/// The outcome of checking a model against its `timm_parity` fixture.
#[derive(Clone, Debug, PartialEq)]
pub struct FixtureReport {
    /// timm name.
    pub model: String,
    /// Our trainable parameter count.
    pub param_count: usize,
    /// timm's.
    pub expected_param_count: usize,
    /// Lines `key:shape` only we have, then lines only timm has (empty when the lists agree).
    pub key_diff: Vec<String>,
    /// Logit error.
    pub error: ParityError,
}

impl FixtureReport {
    /// Parameter count, key list and logits (at `tol`) all agree.
    pub fn passes(&self, tol: f64) -> bool {
        self.param_count == self.expected_param_count && self.key_diff.is_empty() && self.error.within(tol)
    }
}

/// Checks `model` against `fixtures/timm_parity/<model>.json` and `fixtures/timm_keys/<model>.txt`
/// (`fixtures` is the folder holding both): builds it, fills the formula weights, runs the
/// fixture input (NCHW, transposed to NHWC) and compares.
pub fn check_fixture(fixtures: &std::path::Path, model: &str) -> crate::Result<FixtureReport> {
    use crate::error::ZooError;
    let jpath = fixtures.join("timm_parity").join(format!("{model}.json"));
    let text = std::fs::read_to_string(&jpath).map_err(|e| ZooError::io(&jpath, e))?;
    let j: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| ZooError::bad_file(&jpath, format!("not JSON: {e}")))?;
    let field = |k: &str| j.get(k).ok_or_else(|| ZooError::bad_file(&jpath, format!("no field {k:?}")));
    let shape: Vec<usize> = serde_json::from_value(field("input_shape")?.clone())
        .map_err(|e| ZooError::bad_file(&jpath, format!("input_shape: {e}")))?;
    let [n, c, h, w] = shape[..] else {
        return Err(ZooError::bad_file(&jpath, format!("input_shape {shape:?} is not [N, C, H, W]")));
    };
    let weight_salt = field("weight_salt")?.as_u64().unwrap_or(0);
    let input_salt = field("input_salt")?.as_u64().unwrap_or(1);
    let expected_param_count = field("param_count")?.as_u64().unwrap_or(0) as usize;
    let logits: Vec<Vec<f64>> = serde_json::from_value(field("logits")?.clone())
        .map_err(|e| ZooError::bad_file(&jpath, format!("logits: {e}")))?;
    let classes = logits.first().map_or(0, Vec::len);
    let reference: Vec<f64> = logits.concat();

    let mut m = crate::create_model(model, crate::ZooOpts::default())?;
    let kpath = fixtures.join("timm_keys").join(format!("{model}.txt"));
    let theirs: Vec<String> = std::fs::read_to_string(&kpath)
        .map_err(|e| ZooError::io(&kpath, e))?
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    let ours = m.params().key_shape_lines();
    let mut key_diff: Vec<String> = ours.iter().filter(|l| !theirs.contains(l)).map(|l| format!("+ {l}")).collect();
    key_diff.extend(theirs.iter().filter(|l| !ours.contains(l)).map(|l| format!("- {l}")));

    fill_parity(m.params_mut(), weight_salt);
    let x = nchw_to_nhwc_input(&formula_input([n, c, h, w], input_salt), [n, c, h, w]);
    let x = convnet_tensor::Tensor::from_vec(x, [n, h, w, c])?;
    let y = m.forward(&x)?;
    Ok(FixtureReport {
        model: model.to_string(),
        param_count: m.param_count(),
        expected_param_count,
        key_diff,
        error: compare_logits(y.data(), &reference, classes),
    })
}

fn nchw_to_nhwc_input(x: &[f32], dims: [usize; 4]) -> Vec<f32> {
    crate::npy::nchw_to_nhwc(x, dims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_follows_the_readme() {
        // FNV-1a of "" is the offset basis; of "a" the published value
        assert_eq!(fnv1a64(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64("a"), 0xaf63_dc4c_8601_ec8c);
        // SplitMix64 seeded with 0: first output of the reference generator
        assert_eq!(splitmix64(0), 0xe220_a839_7b1d_cdaf);
        let v = formula_tensor("bn1.running_var", &[64], 0);
        assert!(v.iter().all(|x| (0.5..=1.5).contains(x)));
        let w = formula_tensor("conv1.weight", &[64, 3, 7, 7], 0);
        let bound = (6.0f32 / 147.0).sqrt();
        assert!(w.iter().all(|x| x.abs() <= bound));
        assert!(w.iter().any(|x| x.abs() > bound * 0.9));
        assert_eq!(formula_tensor("bn1.num_batches_tracked", &[], 0), vec![0.0]);
    }

    #[test]
    fn comparison_is_relative_to_the_reference_scale() {
        let r = [10.0, -20.0, 5.0, 0.0];
        let e = compare_logits(&[10.01, -20.0, 5.0, 0.0], &r, 2);
        assert!((e.logits - 0.01 / 20.0).abs() < 1e-6);
        assert!(!compare_logits(&[11.0, -20.0, 5.0, 0.0], &r, 2).within(1e-3));
    }
}
