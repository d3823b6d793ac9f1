//! Saving and loading a whole model as ONE `.safetensors` file: every weight under its
//! Keras path (`conv2d/kernel`, f32, Keras' layout), the architecture as JSON in the
//! header's `__metadata__` under [`CONFIG_KEY`], and the compile arguments (if any) under
//! [`COMPILE_KEY`]. Files are written to a temporary file in the same directory and then
//! renamed over the destination, so a crash never leaves half a model behind.
//!
//! Loading checks the file (safetensors header, f32 dtype, metadata), then every weight:
//! missing, unexpected and mis-shaped tensors are reported together, by path.

use std::collections::HashMap;
use std::io::Write;
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
    let bytes = std::fs::read(path).map_err(|source| NnError::Io { path: path.to_path_buf(), source })?;
    let (_, metadata) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| NnError::bad_file(path, format!("not a safetensors file: {e}")))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| NnError::bad_file(path, format!("not a safetensors file: {e}")))?;
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

/// Writes `bytes` to a temporary file in `path`'s folder, syncs it, then renames it over
/// `path`: a crash or a kill at any moment leaves either the old file or the new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let file_name = path.file_name().ok_or_else(|| NnError::bad_file(path, "not a file path"))?;
    let tmp = dir.join(format!(".{}.tmp-{}", file_name.to_string_lossy(), std::process::id()));
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(source) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(NnError::Io { path: path.to_path_buf(), source });
    }
    Ok(())
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
        let (tensors, metadata) = read_safetensors(path)?;
        let config = metadata.get(CONFIG_KEY).ok_or_else(|| {
            NnError::bad_file(
                path,
                format!("no `{CONFIG_KEY}` architecture in the metadata; is it a weights-only file?"),
            )
        })?;
        let config: ModelConfig = serde_json::from_str(config)
            .map_err(|e| NnError::bad_file(path, format!("architecture metadata is not valid: {e}")))?;
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
