//! A trained keyword model together with what it needs to be used: its labels and the front
//! end it was trained with. Saved as one convnet model file whose metadata holds
//! [`SpeechModelInfo`] under [`INFO_KEY`], so `predict` and `listen` need only the file.

use std::collections::HashMap;
use std::path::Path;

use convnet_nn::Sequential;
use convnet_tensor::Tensor;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Result, SpeechError};
use crate::front_end::{FeatureNorm, FingerprintTransform, FrontEnd, fit_length};
use crate::models::Architecture;
use crate::tune::TunedRecognizer;

/// Metadata key of [`SpeechModelInfo`].
pub const INFO_KEY: &str = "speech.model";

/// What a saved keyword model carries besides its weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpeechModelInfo {
    /// The architecture's TensorFlow name.
    pub architecture: Architecture,
    /// Output labels, `_silence_`, `_unknown_`, then the wanted words.
    pub labels: Vec<String>,
    /// The front end the model was trained with.
    pub front_end: FrontEnd,
    /// Training steps behind these weights.
    pub trained_steps: usize,
    /// Validation accuracy of these weights.
    pub validation_accuracy: Option<f64>,
    /// Feature standardisation the model was trained with (none: raw MFCCs).
    #[serde(default)]
    pub feature_norm: Option<FeatureNorm>,
    /// Streaming settings chosen for this model on validation streams (none: TensorFlow's).
    #[serde(default)]
    pub recognizer: Option<TunedRecognizer>,
}

/// A keyword model ready to classify audio.
#[derive(Debug)]
pub struct SpeechModel {
    /// The network.
    pub model: Sequential,
    /// Labels and front end.
    pub info: SpeechModelInfo,
    transform: FingerprintTransform,
}

/// A clip's most likely labels.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Prediction {
    /// `(label, probability)`, most likely first.
    pub top: Vec<(String, f32)>,
    /// Probability of every label, in label order.
    pub probabilities: Vec<f32>,
}

impl SpeechModel {
    /// Wraps a network. Errors when the network's input or output does not fit `info`.
    pub fn new(model: Sequential, info: SpeechModelInfo) -> Result<SpeechModel> {
        let bad = |reason: String| SpeechError::options(reason);
        if model.input_shape() != info.front_end.input_shape() {
            return Err(bad(format!(
                "the network takes {:?} but the front end gives {:?}",
                model.input_shape(),
                info.front_end.input_shape()
            )));
        }
        if model.output_shape() != [info.labels.len()] {
            return Err(bad(format!(
                "the network outputs {:?} for {} labels",
                model.output_shape(),
                info.labels.len()
            )));
        }
        if let Some(norm) = &info.feature_norm {
            let bins = info.front_end.feature_bin_count;
            let usable = |v: &[f32], min: f32| v.len() == bins && v.iter().all(|x| x.is_finite() && *x >= min);
            if !usable(&norm.mean, f32::MIN) || !usable(&norm.std, 1e-6) {
                return Err(bad(format!(
                    "the feature standardisation needs {bins} finite means and positive deviations; it has {} and {}",
                    norm.mean.len(),
                    norm.std.len()
                )));
            }
        }
        // planned last: the shapes above are cheap to compare, the transform allocates
        let transform = info.front_end.transform()?;
        Ok(SpeechModel { model, info, transform })
    }

    /// Saves the network and its info (temporary file, then rename).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let json = serde_json::to_string(&self.info).map_err(|e| SpeechError::options(e.to_string()))?;
        Ok(self.model.save_with_metadata(path, HashMap::from([(INFO_KEY.to_string(), json)]))?)
    }

    /// Loads a model written by [`SpeechModel::save`].
    pub fn load(path: impl AsRef<Path>) -> Result<SpeechModel> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| SpeechError::Io { path: path.to_path_buf(), source })?;
        Self::from_bytes(&bytes, path)
    }

    /// [`SpeechModel::load`] from the bytes of a model file already in memory; `path` only
    /// names them in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<SpeechModel> {
        let (model, metadata) = Sequential::from_bytes_with_metadata(bytes, path)?;
        let bad = |reason: String| SpeechError::BadModel { path: path.to_path_buf(), reason };
        let json = metadata
            .get(INFO_KEY)
            .ok_or_else(|| bad(format!("no `{INFO_KEY}` metadata: not a model saved by `convnet speech train`")))?;
        let info: SpeechModelInfo =
            serde_json::from_str(json).map_err(|e| bad(format!("`{INFO_KEY}` metadata is not valid: {e}")))?;
        SpeechModel::new(model, info).map_err(|e| bad(e.to_string()))
    }

    /// The front end's transform.
    pub fn transform(&self) -> &FingerprintTransform {
        &self.transform
    }

    /// Reads a WAV file as the model's front end expects it: mono, resampled to its rate (the
    /// flag says whether that was needed), not cut.
    pub fn read_audio(&self, path: impl AsRef<Path>) -> Result<(Vec<f32>, bool)> {
        crate::dataset::load_clip(path.as_ref(), self.info.front_end.sample_rate)
    }

    /// Label probabilities of each window in `clips` (each cut or zero-padded to one clip),
    /// computed in batches of `batch`.
    pub fn probabilities(&self, clips: &[&[f32]], batch: usize) -> Result<Vec<Vec<f32>>> {
        let n = self.info.front_end.desired_samples();
        let [h, w, c] = self.info.front_end.input_shape();
        let mut out = Vec::with_capacity(clips.len());
        for chunk in clips.chunks(batch.max(1)) {
            let prints = chunk
                .par_iter()
                .map(|clip| {
                    let mut p = self.transform.fingerprint(&fit_length(clip.to_vec(), n))?;
                    if let Some(norm) = &self.info.feature_norm {
                        norm.apply(&mut p);
                    }
                    Ok(p)
                })
                .collect::<Result<Vec<_>>>()?;
            let x = Tensor::from_vec(prints.concat(), [chunk.len(), h, w, c])?;
            let p = self.model.predict(&x, chunk.len())?;
            out.extend(p.data().chunks_exact(self.info.labels.len()).map(|r| r.to_vec()));
        }
        Ok(out)
    }

    /// The `k` most likely labels of one clip.
    pub fn classify(&self, clip: &[f32], k: usize) -> Result<Prediction> {
        let probabilities = self.probabilities(&[clip], 1)?.remove(0);
        let mut order: Vec<usize> = (0..probabilities.len()).collect();
        order.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]));
        let top = order.iter().take(k).map(|&i| (self.info.labels[i].clone(), probabilities[i])).collect();
        Ok(Prediction { top, probabilities })
    }
}
