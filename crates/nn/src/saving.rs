//! Saving and loading a whole model as ONE `.safetensors` file: every weight under its
//! Keras path (`conv2d/kernel`, f32, Keras' layout), the architecture as JSON in the
//! header's `__metadata__` under [`CONFIG_KEY`], and the compile arguments (if any) under
//! [`COMPILE_KEY`]. Files are written to a temporary file in the same directory and then
//! renamed over the destination, so a crash never leaves half a model behind.
//!
//! Loading checks the file (safetensors header, f32 dtype, metadata), then every weight:
//! missing, unexpected and mis-shaped tensors are reported together, by path.

use std::collections::HashMap;
use std::path::Path;

use convnet_tensor::Tensor;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::training::CompileConfig;
use crate::{ModelConfig, NnError, Result, Sequential};

/// Metadata key of the architecture JSON.
pub const CONFIG_KEY: &str = "convnet.config";
/// Metadata key of the compile arguments JSON.
pub const COMPILE_KEY: &str = "convnet.compile";
/// Metadata key naming the file format.
pub const FORMAT_KEY: &str = "format";
/// Value of [`FORMAT_KEY`] in files written here.
pub const FORMAT: &str = "convnet";

/// Tensors by name, as files hold them.
pub type NamedTensors = Vec<(String, Tensor)>;

/// Reads a safetensors file into `(name, tensor)` pairs (f32 only) and its metadata.
pub fn read_safetensors(path: &Path) -> Result<(NamedTensors, HashMap<String, String>)> {
    parse_safetensors(&read_file(path)?, path)
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| NnError::Io { path: path.to_path_buf(), source })
}

/// [`read_safetensors`] from bytes already in memory; `path` only names them in errors.
pub fn parse_safetensors(bytes: &[u8], path: &Path) -> Result<(NamedTensors, HashMap<String, String>)> {
    let (_, metadata) = SafeTensors::read_metadata(bytes)
        .map_err(|e| NnError::bad_file(path, format!("not a safetensors file: {e}")))?;
    let st =
        SafeTensors::deserialize(bytes).map_err(|e| NnError::bad_file(path, format!("not a safetensors file: {e}")))?;
    let mut tensors = Vec::new();
    for (name, view) in st.iter() {
        if view.dtype() != Dtype::F32 {
            return Err(NnError::bad_file(path, format!("tensor {name} is {:?}; only F32 is supported", view.dtype())));
        }
        let data: Vec<f32> =
            view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        tensors.push((name.to_string(), Tensor::from_vec(data, view.shape().to_vec())?));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((tensors, metadata.metadata().clone().unwrap_or_default()))
}

/// One tensor as a file stores it: name, element type, shape and little-endian bytes.
#[derive(Clone, Debug)]
pub struct RawTensor {
    /// The tensor's name in the file.
    pub name: String,
    /// Element type (`F32`; `I64` for PyTorch's integer buffers such as `num_batches_tracked`).
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<usize>,
    /// Little-endian values.
    pub bytes: Vec<u8>,
}

impl RawTensor {
    /// An f32 tensor.
    pub fn f32(name: impl Into<String>, shape: Vec<usize>, values: &[f32]) -> Self {
        RawTensor {
            name: name.into(),
            dtype: Dtype::F32,
            shape,
            bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
    /// An i64 tensor from integral f32 values (PyTorch's counters).
    pub fn i64(name: impl Into<String>, shape: Vec<usize>, values: &[f32]) -> Self {
        let bytes = values.iter().flat_map(|v| (*v as i64).to_le_bytes()).collect();
        RawTensor { name: name.into(), dtype: Dtype::I64, shape, bytes }
    }
}

/// Writes `tensors` and `metadata` to `path` atomically (f32 tensors).
pub fn write_safetensors(path: &Path, tensors: &[(String, Tensor)], metadata: HashMap<String, String>) -> Result<()> {
    let raw = tensors.iter().map(|(name, t)| RawTensor::f32(name.clone(), t.dims().to_vec(), t.data())).collect();
    write_raw_safetensors(path, raw, metadata)
}

/// The one safetensors writer of convnet (models, zoo checkpoints, training states):
/// serialises to a temporary file in the destination's folder, syncs it, then renames it
/// over `path`, so that a crash or a kill at any moment leaves either the old file or the
/// new one, never half of one.
pub fn write_raw_safetensors(path: &Path, tensors: Vec<RawTensor>, metadata: HashMap<String, String>) -> Result<()> {
    let views = tensors
        .iter()
        .map(|t| {
            TensorView::new(t.dtype, t.shape.clone(), &t.bytes)
                .map(|v| (t.name.clone(), v))
                .map_err(|e| NnError::bad_file(path, format!("tensor {}: {e}", t.name)))
        })
        .collect::<Result<Vec<_>>>()?;
    let buffer = safetensors::serialize(views, Some(metadata))
        .map_err(|e| NnError::bad_file(path, format!("cannot serialize: {e}")))?;
    write_atomic(path, &buffer)
}

/// Writes `bytes` over `path` atomically (see [`crate::fsio`]): a crash or a kill at any
/// moment leaves either the old file or the new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::fsio::write_file_atomic(path, bytes).map_err(|source| NnError::Io { path: path.to_path_buf(), source })
}

/// The largest integer a stored architecture may hold (input sizes, units, filters, kernel
/// sizes, strides): 2^24. Real models stay far below; a larger value is a corrupt or hostile
/// file, refused before any arithmetic on it could overflow.
pub const MAX_ARCH_INT: u64 = 1 << 24;

/// The most values the input or one layer's output may hold per example in a loaded model:
/// 2^28 (1 GiB of f32). The weights are bounded by the file itself; activations are not.
pub const MAX_ACTIVATION_ELEMENTS: usize = 1 << 28;

/// Refuses numbers over [`MAX_ARCH_INT`] anywhere in the architecture JSON (seeds excepted),
/// naming where.
fn check_numbers(v: &serde_json::Value, at: &mut String) -> std::result::Result<(), String> {
    match v {
        serde_json::Value::Number(n) => {
            let too_big = match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => u > MAX_ARCH_INT,
                (None, Some(i), _) => i.unsigned_abs() > MAX_ARCH_INT,
                (_, _, Some(f)) => !f.is_finite() || f.abs() > MAX_ARCH_INT as f64,
                _ => true,
            };
            if too_big {
                return Err(format!("{at} is {n}, over the limit of {MAX_ARCH_INT}: a corrupt or hostile file"));
            }
        }
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = at.len();
                at.push_str(&format!("[{i}]"));
                check_numbers(item, at)?;
                at.truncate(len);
            }
        }
        serde_json::Value::Object(map) => {
            for (k, item) in map {
                // a random seed is any 64-bit value, never a size
                if k == "seed" {
                    continue;
                }
                let len = at.len();
                at.push_str(&format!(".{k}"));
                check_numbers(item, at)?;
                at.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Walks `config`'s layers without building them: every shape within
/// [`MAX_ACTIVATION_ELEMENTS`], and every weight the layers would create present in `tensors`
/// with the declared shape (missing, unexpected and mis-shaped tensors reported together).
fn check_declared(config: &ModelConfig, tensors: &[(String, Tensor)], path: &Path) -> Result<()> {
    let elements = |shape: &[usize], what: &str| -> Result<()> {
        match shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) {
            Some(n) if n <= MAX_ACTIVATION_ELEMENTS => Ok(()),
            _ => Err(NnError::bad_file(
                path,
                format!("{what} has shape {shape:?}, over {MAX_ACTIVATION_ELEMENTS} values per example"),
            )),
        }
    };
    let mut shape = config.input_shape.clone();
    elements(&shape, "the input")?;
    let mut expected: HashMap<String, Vec<usize>> = HashMap::new();
    let mut used: Vec<String> = Vec::new();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for layer in &config.layers {
        let name = match layer.name() {
            Some(n) => n.to_string(),
            None => {
                // the automatic names `Sequential::add` gives (`dense`, `dense_1`, ...)
                let base = crate::layer::to_snake_case(layer.class_name());
                let count = counts.entry(base.clone()).or_insert(0);
                let mut c = *count;
                let name = loop {
                    let n = if c == 0 { base.clone() } else { format!("{base}_{c}") };
                    if !used.contains(&n) {
                        break n;
                    }
                    c += 1;
                };
                *count += 1;
                name
            }
        };
        let named = |e: NnError| match e {
            NnError::InvalidLayer { reason, .. } => NnError::InvalidLayer { layer: name.clone(), reason },
            other => other,
        };
        for (short, w) in layer.weight_shapes(&shape).map_err(named)? {
            expected.insert(format!("{name}/{short}"), w);
        }
        shape = layer.output_shape(&shape).map_err(named)?;
        elements(&shape, &format!("layer {name}'s output"))?;
        used.push(name);
    }
    let given: HashMap<&str, &Tensor> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    let mut missing = Vec::new();
    let mut misshaped = Vec::new();
    for (key, want) in &expected {
        match given.get(key.as_str()) {
            None => missing.push(key.clone()),
            Some(t) if t.dims() != want.as_slice() => {
                misshaped.push(crate::Misshaped { path: key.clone(), expected: want.clone(), got: t.dims().to_vec() })
            }
            Some(_) => {}
        }
    }
    let mut unexpected: Vec<String> =
        given.keys().filter(|k| !expected.contains_key(**k)).map(|k| k.to_string()).collect();
    if missing.is_empty() && unexpected.is_empty() && misshaped.is_empty() {
        return Ok(());
    }
    missing.sort();
    unexpected.sort();
    misshaped.sort_by(|a, b| a.path.cmp(&b.path));
    Err(NnError::WeightsMismatch { source_name: path.display().to_string(), missing, unexpected, misshaped })
}

impl Sequential {
    /// Saves architecture, weights and compile arguments to one `.safetensors` file.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        self.save_with_metadata(path, HashMap::new())
    }

    /// As [`Sequential::save`], with extra `metadata` entries stored next to the
    /// architecture (e.g. the labels and front end an application needs to use the model).
    /// Keys must not start with `convnet.` or be `format`.
    pub fn save_with_metadata(&self, path: impl AsRef<Path>, extra: HashMap<String, String>) -> Result<()> {
        let path = path.as_ref();
        if let Some(k) = extra.keys().find(|k| k.starts_with("convnet.") || *k == FORMAT_KEY) {
            return Err(NnError::bad_file(path, format!("metadata key `{k}` is reserved")));
        }
        let mut metadata = extra;
        metadata.insert(FORMAT_KEY.to_string(), FORMAT.to_string());
        let config = serde_json::to_string(&self.config()).map_err(|e| NnError::bad_file(path, e.to_string()))?;
        metadata.insert(CONFIG_KEY.to_string(), config);
        if let Some(c) = self.compile_config() {
            let json = serde_json::to_string(&c).map_err(|e| NnError::bad_file(path, e.to_string()))?;
            metadata.insert(COMPILE_KEY.to_string(), json);
        }
        write_safetensors(path, &self.weights(), metadata)
    }

    /// Loads a model saved by [`Sequential::save`]: same layers, names and weights (bit
    /// for bit), compiled again with a fresh optimizer when the file has compile arguments.
    pub fn load(path: impl AsRef<Path>) -> Result<Sequential> {
        Self::load_with_metadata(path).map(|(model, _)| model)
    }

    /// As [`Sequential::load`], also returning the file's metadata (including entries
    /// given to [`Sequential::save_with_metadata`]).
    pub fn load_with_metadata(path: impl AsRef<Path>) -> Result<(Sequential, HashMap<String, String>)> {
        let path = path.as_ref();
        Self::from_bytes_with_metadata(&read_file(path)?, path)
    }

    /// [`Sequential::load_with_metadata`] from the bytes of a model file already in memory;
    /// `path` only names them in errors. The file loader runs this, so the fuzz test covers it.
    pub fn from_bytes_with_metadata(bytes: &[u8], path: &Path) -> Result<(Sequential, HashMap<String, String>)> {
        let (tensors, metadata) = parse_safetensors(bytes, path)?;
        let config = metadata.get(CONFIG_KEY).ok_or_else(|| {
            NnError::bad_file(
                path,
                format!("no `{CONFIG_KEY}` architecture in the metadata; is it a weights-only file?"),
            )
        })?;
        let value: serde_json::Value = serde_json::from_str(config)
            .map_err(|e| NnError::bad_file(path, format!("architecture metadata is not valid: {e}")))?;
        check_numbers(&value, &mut String::from("architecture")).map_err(|reason| NnError::bad_file(path, reason))?;
        let config: ModelConfig = serde_json::from_value(value)
            .map_err(|e| NnError::bad_file(path, format!("architecture metadata is not valid: {e}")))?;
        // one loading rule: the declared shapes must match the file's tensors before the
        // network is built and its weights drawn (a hostile file may declare huge layers)
        check_declared(&config, &tensors, path)?;
        let mut model = Sequential::from_config(&config)?;
        model.set_weights_from(&path.display().to_string(), &tensors)?;
        if let Some(compile) = metadata.get(COMPILE_KEY) {
            let c: CompileConfig = serde_json::from_str(compile)
                .map_err(|e| NnError::bad_file(path, format!("compile metadata is not valid: {e}")))?;
            model.compile(c.loss, c.optimizer, &c.metrics)?;
        }
        Ok((model, metadata))
    }

    /// Saves only the weights (by Keras path) to a `.safetensors` file.
    pub fn save_weights(&self, path: impl AsRef<Path>) -> Result<()> {
        let mut metadata = HashMap::new();
        metadata.insert(FORMAT_KEY.to_string(), FORMAT.to_string());
        write_safetensors(path.as_ref(), &self.weights(), metadata)
    }

    /// Loads weights by path from a `.safetensors` file (one written by `save` or
    /// `save_weights`, or any file with Keras' names and layouts).
    pub fn load_weights(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let (tensors, _) = read_safetensors(path)?;
        self.set_weights_from(&path.display().to_string(), &tensors)
    }
}
