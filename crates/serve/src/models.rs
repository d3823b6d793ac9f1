//! The models the app serves and what each answers, as plain functions over bytes (no HTTP
//! here): the MNIST CNN for drawn digits, zoo models with ImageNet checkpoints for photos, the
//! spoken-digit CNN for WAV clips. They live on the inference thread ([`crate::worker`]).

use crate::Limits;
use crate::error::{Result, ServeError};
use convnet::audio::{self, FrameFit, MfccConfig, MfccTransform, SpokenDigitOptions, Transform};
use convnet::data::{Rgb8, decode_image, digit_from_rgb};
use convnet::nn::Sequential;
use convnet::{Tensor, plot};
use convnet_zoo::transforms::EvalTransform;
use convnet_zoo::{Model, ZooOpts, create_model};
use serde::Serialize;
use std::collections::VecDeque;
use std::io::Cursor;
use std::path::{Path, PathBuf};

/// File name of the MNIST model `convnet train mnist` writes.
pub const MNIST_FILE: &str = "mnist_cnn.safetensors";
/// File name of the spoken-digit model `convnet sound-digit train` writes.
pub const SOUND_FILE: &str = "sound_digit_cnn.safetensors";
/// The model-file metadata key under which `convnet sound-digit train` stores its front end
/// (sample rate, MFCC size, frames, frame fit); the same string as the command's.
pub const SOUND_FRONT_END_KEY: &str = "sound_digit.front_end";
/// Photo models kept loaded at once; the least recently used goes first.
const LOADED_PHOTO_MODELS: usize = 3;

/// One class and its probability.
#[derive(Clone, Debug, Serialize)]
pub struct Scored {
    /// Class index.
    pub index: usize,
    /// Class name.
    pub label: String,
    /// Softmax probability.
    pub prob: f32,
}

/// The answer to a drawn digit.
#[derive(Clone, Debug, Serialize)]
pub struct DigitAnswer {
    /// The most likely digit.
    pub digit: usize,
    /// The ten probabilities, digit 0 first.
    pub probabilities: Vec<f32>,
    /// The 28x28 input the model saw (row-major, white on black, 0..1).
    pub input: Vec<f32>,
}

/// How a photo was prepared (timm's eval transform), for the page to show.
#[derive(Clone, Debug, Serialize)]
pub struct Preprocessing {
    /// Size of the uploaded image `[h, w]`.
    pub original: [usize; 2],
    /// Size after the resize `[h, w]` (shorter side to `crop / crop_pct`).
    pub resized: [usize; 2],
    /// Size of the centre crop `[h, w]`: the model's input.
    pub crop: [usize; 2],
    /// Fraction of the resized image kept.
    pub crop_pct: f64,
    /// Resampling filter.
    pub interpolation: String,
    /// Per-channel mean subtracted.
    pub mean: [f64; 3],
    /// Per-channel standard deviation divided by.
    pub std: [f64; 3],
    /// The centre crop as a PNG, base64 (what the network sees, before normalising).
    pub crop_png: String,
}

/// The answer to a photo.
#[derive(Clone, Debug, Serialize)]
pub struct PhotoAnswer {
    /// The model that answered.
    pub model: String,
    /// The best classes, most likely first.
    pub top: Vec<Scored>,
    /// What was done to the image first.
    pub preprocessing: Preprocessing,
}

/// The answer to a sound clip.
#[derive(Clone, Debug, Serialize)]
pub struct SoundAnswer {
    /// Seconds of audio.
    pub duration: f64,
    /// The file's sample rate.
    pub sample_rate: u32,
    /// The spoken digit, when a spoken-digit model is loaded.
    pub digit: Option<usize>,
    /// Its ten probabilities (empty without a model).
    pub probabilities: Vec<f32>,
    /// Why there is no answer, when there is none.
    pub note: Option<String>,
    /// The waveform chart, PNG base64.
    pub waveform_png: String,
    /// The MFCC chart the model's input is cut from, PNG base64.
    pub mfcc_png: String,
}

/// A photo model that can be served: a registered architecture with a checkpoint.
#[derive(Clone, Debug, Serialize)]
pub struct PhotoModel {
    /// `arch` or `arch.tag`, as named by the checkpoint file.
    pub name: String,
    /// The checkpoint.
    #[serde(skip)]
    pub path: PathBuf,
    /// Input `[c, h, w]`.
    pub input_size: [usize; 3],
}

/// The spoken-digit model and its front end.
pub struct SoundModel {
    net: Sequential,
    options: SpokenDigitOptions,
    mfcc: MfccTransform,
}

/// Everything the inference thread holds.
pub struct Models {
    /// The MNIST CNN.
    pub digits: Sequential,
    /// Photo models found in the models folder.
    pub photos: Vec<PhotoModel>,
    /// Loaded photo models, most recently used last.
    loaded: VecDeque<(String, Model, EvalTransform)>,
    /// The spoken-digit model, if one was found.
    pub sound: Option<SoundModel>,
    limits: Limits,
    labels: Vec<String>,
}

fn argmax(p: &[f32]) -> usize {
    p.iter().enumerate().fold(0, |best, (i, v)| if *v > p[best] { i } else { best })
}

/// Minimal standard base64 (RFC 4648, with padding), for images inside JSON.
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for k in 0..4 {
            if k <= c.len() {
                out.push(A[(n >> (18 - 6 * k)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The pixel count in an image's header, without decoding its pixels.
fn image_dimensions(bytes: &[u8]) -> Result<(u32, u32)> {
    let reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ServeError::BadRequest(format!("not an image: {e}")))?;
    reader.into_dimensions().map_err(|e| ServeError::BadRequest(format!("not a PNG or JPEG image: {e}")))
}

impl Models {
    /// The MNIST model, the photo checkpoints found in `dir` (`<arch>.safetensors` or
    /// `<arch>.<tag>.safetensors` for registered architectures), and the spoken-digit model
    /// (`dir/sound_digit_cnn.safetensors` or `dir/sound_digit/…`, as `sound-digit train`
    /// writes it) if present.
    pub fn load(digits: Sequential, dir: &Path, limits: Limits) -> Result<Self> {
        if digits.input_shape() != [28, 28, 1] || digits.output_shape() != [10] {
            return Err(ServeError::Internal(format!(
                "the digit model takes {:?} and gives {:?}; an MNIST model takes [28, 28, 1] and gives [10]",
                digits.input_shape(),
                digits.output_shape()
            )));
        }
        let photos = find_photo_models(dir);
        let sound = [dir.join(SOUND_FILE), dir.join("sound_digit").join(SOUND_FILE)]
            .into_iter()
            .find(|p| p.is_file())
            .map(|p| SoundModel::load(&p))
            .transpose()?;
        let labels = convnet_zoo::labels::imagenet_classes().iter().map(|c| c.label.to_string()).collect();
        Ok(Models { digits, photos, loaded: VecDeque::new(), sound, limits, labels })
    }

    /// Decodes an image upload, refusing more pixels than the limit before decoding them.
    fn decode(&self, bytes: &[u8]) -> Result<Rgb8> {
        let (w, h) = image_dimensions(bytes)?;
        let pixels = u64::from(w) * u64::from(h);
        if pixels > self.limits.max_pixels {
            return Err(ServeError::BadRequest(format!(
                "the image is {w}x{h} = {pixels} pixels; the limit is {} pixels",
                self.limits.max_pixels
            )));
        }
        decode_image(bytes).map_err(ServeError::BadRequest)
    }

    /// The digit drawn in a PNG/JPEG image (dark on light or light on dark).
    pub fn digit(&self, bytes: &[u8]) -> Result<DigitAnswer> {
        let input = digit_from_rgb(&self.decode(bytes)?);
        let x = Tensor::from_vec(input.clone(), [1, 28, 28, 1]).map_err(internal)?;
        let p = self.digits.predict(&x, 1).map_err(internal)?.data().to_vec();
        Ok(DigitAnswer { digit: argmax(&p), probabilities: p, input })
    }

    /// The top-`k` ImageNet classes of a photo with the photo model `name`.
    pub fn classify(&mut self, name: &str, bytes: &[u8], k: usize) -> Result<PhotoAnswer> {
        let img = self.decode(bytes)?;
        let pos = match self.loaded.iter().position(|(n, ..)| n == name) {
            Some(pos) => pos,
            None => {
                let entry = self.photos.iter().find(|m| m.name == name).ok_or_else(|| {
                    let known: Vec<&str> = self.photos.iter().map(|m| m.name.as_str()).collect();
                    ServeError::NotFound(format!("no photo model {name:?}; served: {}", known.join(", ")))
                })?;
                let mut model = create_model(&entry.name, ZooOpts::default()).map_err(internal)?;
                model.load_pretrained(&entry.path).map_err(|e| ServeError::Unavailable(format!("{name}: {e}")))?;
                let t = EvalTransform::from_cfg(model.pretrained_cfg());
                if self.loaded.len() >= LOADED_PHOTO_MODELS {
                    self.loaded.pop_front();
                }
                self.loaded.push_back((name.to_string(), model, t));
                self.loaded.len() - 1
            }
        };
        let item = self.loaded.remove(pos).ok_or_else(|| ServeError::Internal("model cache".into()))?;
        self.loaded.push_back(item);
        let (_, model, t) = self.loaded.back().ok_or_else(|| ServeError::Internal("model cache".into()))?;
        // resize and crop once: the crop is both the input and what the page shows
        let crop = t.crop(&img);
        let f = convnet::data::transforms::normalize(&crop, t.mean, t.std);
        let x = Tensor::from_vec(f.data, [1, f.shape[0], f.shape[1], 3]).map_err(internal)?;
        let p = model.forward(&x).and_then(|y| Ok(y.softmax()?)).map_err(internal)?;
        let p = p.data();
        let mut idx: Vec<usize> = (0..p.len()).collect();
        idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
        let label = |i: usize| self.labels.get(i).cloned().unwrap_or_default();
        let top = idx.iter().take(k).map(|&i| Scored { index: i, label: label(i), prob: p[i] }).collect();
        let (sh, sw) = t.scale_size();
        let cfg = model.pretrained_cfg();
        let preprocessing = Preprocessing {
            original: [img.height, img.width],
            resized: resized_size(img.width, img.height, sw, sh),
            crop: [crop.height, crop.width],
            crop_pct: cfg.crop_pct,
            interpolation: cfg.interpolation.name().to_string(),
            mean: cfg.mean,
            std: cfg.std,
            crop_png: base64(&rgb_png(&crop)?),
        };
        Ok(PhotoAnswer { model: name.to_string(), top, preprocessing })
    }

    /// The waveform and MFCC charts of a WAV clip, and the spoken digit if a model is loaded.
    pub fn sound(&self, bytes: &[u8]) -> Result<SoundAnswer> {
        let wav = audio::decode_wav(bytes, Path::new("upload.wav"))
            .map_err(|e| ServeError::BadRequest(format!("not a usable WAV file: {e}")))?;
        let sr = wav.info.sample_rate;
        let duration = wav.info.frames as f64 / f64::from(sr.max(1));
        if duration > self.limits.max_audio_seconds {
            return Err(ServeError::BadRequest(format!(
                "the clip lasts {duration:.1} s; the limit is {} s",
                self.limits.max_audio_seconds
            )));
        }
        let mono = wav.to_mono();
        let waveform_png = plot::waveform_png(&mono, sr, "Waveform").map_err(internal)?;
        // features at the model's rate (or librosa's default without a model)
        let target = self.sound.as_ref().map_or(audio::LIBROSA_DEFAULT_SR, |s| s.options.sample_rate);
        let samples = if sr == target {
            mono
        } else {
            audio::resample(&mono, sr, target).map_err(|e| ServeError::BadRequest(format!("cannot resample: {e}")))?
        };
        let n_mfcc = self.sound.as_ref().map_or(20, |s| s.options.n_mfcc);
        let fallback;
        let mfcc = match &self.sound {
            Some(s) => &s.mfcc,
            None => {
                fallback = MfccTransform::new(MfccConfig::new(target, n_mfcc)).map_err(internal)?;
                &fallback
            }
        };
        let m = mfcc.apply(&samples).map_err(|e| ServeError::BadRequest(format!("cannot compute the MFCC: {e}")))?;
        let frame_s = 512.0 / f64::from(target);
        let mfcc_png = plot::heatmap_png(
            &m.data,
            m.n_coeffs,
            m.frames,
            ("Time (s)", 0.0, m.frames as f64 * frame_s),
            ("coefficient", 0.0, m.n_coeffs as f64),
            "MFCC",
            "",
        )
        .map_err(internal)?;
        let (digit, probabilities, note) = match &self.sound {
            Some(s) => {
                let x = audio::clip_features(&m, &s.options);
                let shape = [1, s.options.n_mfcc, s.options.frames, 1];
                let p = s.net.predict(&Tensor::from_vec(x, shape).map_err(internal)?, 1).map_err(internal)?;
                let p = p.data().to_vec();
                (Some(argmax(&p)), p, None)
            }
            None => (
                None,
                Vec::new(),
                Some(format!(
                    "no spoken-digit model: train one with `convnet sound-digit train` into the models folder ({SOUND_FILE})"
                )),
            ),
        };
        Ok(SoundAnswer {
            duration,
            sample_rate: sr,
            digit,
            probabilities,
            note,
            waveform_png: base64(&waveform_png),
            mfcc_png: base64(&mfcc_png),
        })
    }
}

impl SoundModel {
    /// Loads a `sound-digit train` model with the front end saved beside its weights.
    pub fn load(path: &Path) -> Result<Self> {
        let fail = |e: String| ServeError::Internal(format!("{}: {e}", path.display()));
        let (net, meta) = Sequential::load_with_metadata(path).map_err(|e| fail(e.to_string()))?;
        let &[h, w, 1] = net.input_shape() else {
            return Err(fail(format!("expected an [n_mfcc, frames, 1] input, found {:?}", net.input_shape())));
        };
        if net.output_shape() != [10] {
            return Err(fail(format!("expected 10 outputs (digits), found {:?}", net.output_shape())));
        }
        let saved: serde_json::Value =
            meta.get(SOUND_FRONT_END_KEY).and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default();
        let sample_rate =
            saved["sample_rate"].as_u64().and_then(|v| u32::try_from(v).ok()).unwrap_or(audio::LIBROSA_DEFAULT_SR);
        let fit =
            if saved["numpy_resize"].as_bool() == Some(true) { FrameFit::NumpyResize } else { FrameFit::CropOrPad };
        let options = SpokenDigitOptions { sample_rate, n_mfcc: h, frames: w, fit };
        let mfcc = MfccTransform::new(MfccConfig::new(sample_rate, h)).map_err(|e| fail(e.to_string()))?;
        Ok(SoundModel { net, options, mfcc })
    }
}

/// `[h, w]` after timm's resize of the shorter side, as the data crate's transform does it.
fn resized_size(w: usize, h: usize, sw: usize, sh: usize) -> [usize; 2] {
    if sw != sh {
        return [sh, sw];
    }
    let s = sw as f64;
    if w <= h { [((h as f64) * s / w as f64) as usize, sw] } else { [sh, ((w as f64) * s / h as f64) as usize] }
}

fn rgb_png(img: &Rgb8) -> Result<Vec<u8>> {
    let buf = image::RgbImage::from_raw(img.width as u32, img.height as u32, img.data.clone())
        .ok_or_else(|| ServeError::Internal("crop buffer size".into()))?;
    let mut out = Vec::new();
    buf.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png).map_err(internal)?;
    Ok(out)
}

/// The MNIST CNN from `dir/mnist_cnn.safetensors`, or, on a first start without one, trained
/// on the MNIST files in `data` (`epochs` epochs over the first `limit` training images, all
/// when `None`), saved there for the next start. Progress goes to the terminal.
pub fn load_or_train_mnist(dir: &Path, data: &Path, epochs: usize, limit: Option<usize>) -> Result<Sequential> {
    use convnet::nn::{Adam, FitOptions, Loss, Metric, Targets};
    let path = dir.join(MNIST_FILE);
    if path.is_file() {
        return Sequential::load(&path).map_err(|e| ServeError::Internal(format!("{}: {e}", path.display())));
    }
    let fail = |e: String| ServeError::Unavailable(format!("training the digit model: {e}"));
    let mnist = convnet::data::Mnist::load(data)
        .map_err(|e| fail(format!("{e} (--mnist-data names the folder with the four MNIST files)")))?;
    let n = limit.unwrap_or(usize::MAX).min(mnist.train_labels.len());
    let mnist = mnist.subset(n, 0);
    println!(
        "convnet serve: no {} yet: training the MNIST CNN first ({epochs} epoch(s) on {n} images), once",
        path.display()
    );
    let x = Tensor::from_vec(mnist.train_images.to_f32_nhwc(), mnist.train_images.shape_nhwc()).map_err(internal)?;
    let y = Targets::Sparse(mnist.train_labels.iter().map(|&l| u32::from(l)).collect());
    let mut model = convnet::models::mnist_cnn(42).map_err(internal)?;
    model.compile(Loss::sparse_categorical_crossentropy(), Adam::default(), &[Metric::Accuracy]).map_err(internal)?;
    let history = model
        .fit(&x, &y, FitOptions::new(128, epochs.max(1)).with_seed(42).with_verbose(1))
        .map_err(|e| fail(e.to_string()))?;
    std::fs::create_dir_all(dir).map_err(|e| fail(format!("{}: {e}", dir.display())))?;
    model.save(&path).map_err(|e| fail(format!("{}: {e}", path.display())))?;
    println!(
        "convnet serve: saved {} (training accuracy {:.3})",
        path.display(),
        history.accuracy.last().copied().unwrap_or(f64::NAN)
    );
    Ok(model)
}

fn internal(e: impl std::fmt::Display) -> ServeError {
    ServeError::Internal(e.to_string())
}

/// Checkpoints in `dir` named after a registered architecture (`tf_efficientnet_lite0.safetensors`,
/// `resnet50.a1_in1k.safetensors`), sorted by name.
pub fn find_photo_models(dir: &Path) -> Vec<PhotoModel> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<PhotoModel> = entries
        .flatten()
        .filter_map(|e| {
            let path = e.path();
            let stem = path.file_name()?.to_str()?.strip_suffix(".safetensors")?.to_string();
            let (arch, tag) = convnet_zoo::registry::split_model_name(&stem);
            let cfg = convnet_zoo::registry::pretrained_cfg(arch, tag).ok()?;
            (cfg.num_classes == 1000).then_some(PhotoModel { name: stem, path, input_size: cfg.input_size })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let cases =
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("foobar", "Zm9vYmFy")];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn resized_size_keeps_the_aspect() {
        assert_eq!(resized_size(400, 300, 256, 256), [256, 341]);
        assert_eq!(resized_size(300, 400, 256, 256), [341, 256]);
    }
}
