//! timm checkpoints: `.safetensors` state dicts read by key name and written back.
//!
//! This is the one place where PyTorch layouts meet the engine's: conv kernels are OIHW in
//! the file and HWIO in memory, linear weights `[out, in]` and `[in, out]` (see
//! [`Layout`](convnet_nn::Layout)). Loading is strict by default and lists every
//! missing, unexpected and mis-shaped key by path; as timm's `load_pretrained`, it leaves
//! out a classifier trained for another class count and adapts the first conv to other
//! input channels (`adapt_input_conv`). Saving writes float32 tensors (int64
//! `num_batches_tracked`) in PyTorch layout with `format: pt` metadata, which
//! `safetensors.torch.load_file` and timm read as they are.

use crate::error::{Misshaped, Result, ZooError};
use convnet_nn::saving::{RawTensor, write_raw_safetensors};
use convnet_nn::store::Params;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// A state dict as read from a file: key -> (PyTorch shape, values as f32).
pub type StateDict = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// How to load a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    /// Fail on any missing or unexpected key (mis-shaped keys always fail).
    pub strict: bool,
    /// Classifier key prefix: its tensors are left out when their shapes differ from the
    /// model's (another class count), and may then be missing.
    pub classifier: Option<String>,
    /// First-conv key prefix: its kernel is adapted when the input channels differ.
    pub first_conv: Option<String>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { strict: true, classifier: None, first_conv: None }
    }
}

/// What a load did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadReport {
    /// Tensors copied into the model.
    pub loaded: usize,
    /// Model keys the file lacked (non-strict loads only, or a dropped classifier).
    pub missing: Vec<String>,
    /// File keys the model lacks (non-strict loads only).
    pub unexpected: Vec<String>,
    /// True when the file's classifier was left out.
    pub dropped_classifier: bool,
    /// True when the first conv was adapted to other input channels.
    pub adapted_first_conv: bool,
}

/// `key` lies under the module `prefix` (`fc` holds `fc.weight`).
pub(crate) fn is_under(key: &str, prefix: &str) -> bool {
    key == prefix || key.strip_prefix(prefix).is_some_and(|r| r.starts_with('.'))
}

/// Reads every tensor of a `.safetensors` file, converting any float or integer dtype to f32.
pub fn read_state_dict(path: &Path) -> Result<StateDict> {
    let bytes = std::fs::read(path).map_err(|e| ZooError::io(path, e))?;
    parse_state_dict(&bytes, path)
}

/// [`read_state_dict`] from bytes already in memory (`path` names them in errors).
pub fn parse_state_dict(bytes: &[u8], path: &Path) -> Result<StateDict> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| ZooError::bad_file(path, format!("not a readable safetensors file (truncated?): {e}")))?;
    let mut out = StateDict::new();
    for (name, view) in st.tensors() {
        let data = to_f32(&view).ok_or_else(|| {
            ZooError::bad_file(
                path,
                format!("tensor {name}: dtype {:?} is not a number type convnet reads", view.dtype()),
            )
        })?;
        out.insert(name, (view.shape().to_vec(), data));
    }
    Ok(out)
}

fn to_f32(v: &TensorView) -> Option<Vec<f32>> {
    let b = v.data();
    fn chunks<const N: usize>(b: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
        b.chunks_exact(N).map(|c| c.try_into().expect("exact chunk"))
    }
    Some(match v.dtype() {
        Dtype::F32 => chunks::<4>(b).map(f32::from_le_bytes).collect(),
        Dtype::F64 => chunks::<8>(b).map(|c| f64::from_le_bytes(c) as f32).collect(),
        Dtype::F16 => chunks::<2>(b).map(|c| f16_to_f32(u16::from_le_bytes(c))).collect(),
        Dtype::BF16 => chunks::<2>(b).map(|c| f32::from_bits((u16::from_le_bytes(c) as u32) << 16)).collect(),
        Dtype::I64 => chunks::<8>(b).map(|c| i64::from_le_bytes(c) as f32).collect(),
        Dtype::I32 => chunks::<4>(b).map(|c| i32::from_le_bytes(c) as f32).collect(),
        Dtype::I16 => chunks::<2>(b).map(|c| i16::from_le_bytes(c) as f32).collect(),
        Dtype::I8 => b.iter().map(|&x| x as i8 as f32).collect(),
        Dtype::U8 => b.iter().map(|&x| x as f32).collect(),
        Dtype::BOOL => b.iter().map(|&x| (x != 0) as u8 as f32).collect(),
        _ => return None,
    })
}

/// IEEE half to single precision.
fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // subnormal: value = f * 2^-24
            let v = f as f32 * (1.0 / (1u32 << 24) as f32);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 127 - 15) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

/// timm's `adapt_input_conv`: a kernel `[o, 3, kh, kw]` for `in_chans` inputs (summed
/// over channels for 1; tiled and scaled by `3 / in_chans` otherwise).
fn adapt_input_conv(shape: &[usize], data: &[f32], in_chans: usize) -> Option<(Vec<usize>, Vec<f32>)> {
    let &[o, i, kh, kw] = shape else { return None };
    let k = kh * kw;
    if in_chans == 1 {
        let mut out = vec![0.0; o * k];
        for oo in 0..o {
            for ii in 0..i {
                for p in 0..k {
                    out[oo * k + p] += data[(oo * i + ii) * k + p];
                }
            }
        }
        return Some((vec![o, 1, kh, kw], out));
    }
    if i != 3 {
        return None;
    }
    let scale = 3.0 / in_chans as f32;
    let mut out = vec![0.0; o * in_chans * k];
    for oo in 0..o {
        for ii in 0..in_chans {
            for p in 0..k {
                out[(oo * in_chans + ii) * k + p] = data[(oo * i + ii % 3) * k + p] * scale;
            }
        }
    }
    Some((vec![o, in_chans, kh, kw], out))
}

/// Loads an in-memory state dict (`source` names it in errors).
pub fn load_state_dict(
    params: &mut Params,
    model: &str,
    source: &str,
    mut sd: StateDict,
    opts: &LoadOptions,
) -> Result<LoadReport> {
    let mut report = LoadReport::default();
    if let Some(cls) = &opts.classifier {
        let differs = sd.iter().filter(|(k, _)| is_under(k, cls)).any(|(k, (shape, _))| match params.by_key(k) {
            Some(e) => e.torch_shape() != *shape,
            None => true,
        });
        if differs {
            sd.retain(|k, _| !is_under(k, cls));
            report.dropped_classifier = true;
        }
    }
    if let Some(fc) = &opts.first_conv {
        let key = format!("{fc}.weight");
        if let (Some(e), Some((shape, data))) = (params.by_key(&key), sd.get(&key)) {
            let want = e.torch_shape();
            if want.len() == 4
                && shape.len() == 4
                && want[1] != shape[1]
                && want[0] == shape[0]
                && let Some(adapted) = adapt_input_conv(shape, data, want[1])
            {
                sd.insert(key, adapted);
                report.adapted_first_conv = true;
            }
        }
    }
    let mut missing = Vec::new();
    let mut misshaped = Vec::new();
    for (_, e) in params.iter() {
        match sd.get(e.key()) {
            None => {
                let allowed =
                    report.dropped_classifier && opts.classifier.as_deref().is_some_and(|c| is_under(e.key(), c));
                if !allowed {
                    missing.push(e.key().to_string());
                } else {
                    report.missing.push(e.key().to_string());
                }
            }
            Some((shape, _)) if *shape != e.torch_shape() => {
                misshaped.push(Misshaped { path: e.key().to_string(), expected: e.torch_shape(), got: shape.clone() })
            }
            Some(_) => {}
        }
    }
    let unexpected: Vec<String> = sd.keys().filter(|k| params.id(k).is_none()).cloned().collect();
    if !misshaped.is_empty() || (opts.strict && (!missing.is_empty() || !unexpected.is_empty())) {
        return Err(ZooError::CheckpointMismatch {
            source_name: source.to_string(),
            model: model.to_string(),
            missing,
            unexpected,
            misshaped,
        });
    }
    for (key, (shape, data)) in &sd {
        if let Some(id) = params.id(key) {
            params.set_torch(id, data, shape)?;
            report.loaded += 1;
        }
    }
    report.missing.extend(missing);
    report.unexpected = unexpected;
    Ok(report)
}

/// The state dict of `params` in PyTorch layout.
pub fn state_dict(params: &Params) -> StateDict {
    params.iter().map(|(_, e)| (e.key().to_string(), (e.torch_shape(), e.torch_data()))).collect()
}

/// Writes `params` as a timm `.safetensors` file.
pub fn save(params: &Params, model: &str, path: &Path) -> Result<()> {
    write_state_dict(&state_dict(params), model, path)
}

/// Writes a state dict (PyTorch layouts) as `.safetensors`: float32, except
/// `num_batches_tracked` as int64 like PyTorch's; metadata `format: pt`. Atomic (the one
/// writer of `convnet-nn`): a crash or kill leaves the previous file whole.
pub fn write_state_dict(sd: &StateDict, model: &str, path: &Path) -> Result<()> {
    let tensors = sd
        .iter()
        .map(|(k, (shape, data))| {
            if k.ends_with("num_batches_tracked") {
                RawTensor::i64(k.clone(), shape.clone(), data)
            } else {
                RawTensor::f32(k.clone(), shape.clone(), data)
            }
        })
        .collect();
    let metadata: HashMap<String, String> =
        [("format".to_string(), "pt".to_string()), ("convnet_model".to_string(), model.to_string())].into();
    Ok(write_raw_safetensors(path, tensors, metadata)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_converts() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert!(f16_to_f32(0x7c00).is_infinite());
    }

    #[test]
    fn input_conv_adapts_to_one_and_six_channels() {
        let w: Vec<f32> = (0..2 * 3).map(|v| v as f32).collect(); // [2, 3, 1, 1]
        let (s, d) = adapt_input_conv(&[2, 3, 1, 1], &w, 1).unwrap();
        assert_eq!((s, d), (vec![2, 1, 1, 1], vec![3.0, 12.0]));
        let (s, d) = adapt_input_conv(&[2, 3, 1, 1], &w, 6).unwrap();
        assert_eq!(s, vec![2, 6, 1, 1]);
        assert_eq!(d, vec![0.0, 0.5, 1.0, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 1.5, 2.0, 2.5]);
    }

    #[test]
    fn truncated_file_is_a_typed_error() {
        let err = parse_state_dict(&[1, 2, 3], Path::new("x.safetensors")).unwrap_err();
        assert!(matches!(err, ZooError::BadFile { .. }), "{err}");
    }
}
