//! `convnet sound-digit train|predict` (a CNN over MFCC images of spoken digits, the course's
//! audio example) and `convnet audio waveform|mfcc|melspec` (look at or export one clip).
//!
//! Training augments the cached MFCC arrays afresh every epoch (time shift, Gaussian noise,
//! SpecAugment time and frequency masks) and calls `fit` for one epoch at a time with a
//! per-epoch seed, so a run is reproducible and the DSP runs once.

use crate::limits;
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use convnet::audio::{
    self, DbConfig, FrameFit, LogMelTransform, MelSpectrogramConfig, MfccConfig, MfccTransform, RowAxis,
    SpokenDigitOptions, SpokenDigits, StftConfig, TargetRate, Transform,
};
use convnet::nn::{Adam, FitOptions, History, Loss, Metric, Sequential, Targets};
use convnet::tensor::rng::Rng;
use convnet::{Tensor, models};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// `convnet sound-digit ...`.
#[derive(Subcommand)]
pub enum SoundDigitCmd {
    /// Train the spoken-digit CNN on DIR/train, validating on DIR/test (or a split of train).
    Train(TrainArgs),
    /// Classify WAV files with a saved spoken-digit model.
    Predict(PredictArgs),
}

/// Options of `convnet sound-digit train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Folder with `train/<d>_<nnn>.wav` and `test/...`.
    #[arg(long)]
    pub data: PathBuf,
    /// Folder for the model, plots and confusion matrix.
    #[arg(long, default_value = "models/sound_digit")]
    pub out: PathBuf,
    /// Epochs (250 chosen on a 20 % validation split of SoundDigit/train).
    #[arg(long, default_value_t = 250)]
    pub epochs: usize,
    /// Clips per gradient step.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 0.003)]
    pub lr: f64,
    /// Seed of the weights, shuffling, dropout and augmentation.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Sample rate the clips are resampled to.
    #[arg(long, default_value_t = 22050)]
    pub sr: u32,
    /// MFCC coefficients per frame (the image's height).
    #[arg(long, default_value_t = 40)]
    pub n_mfcc: usize,
    /// Frames per example (default: a 1 s clip, 1 + sr / 512).
    #[arg(long)]
    pub frames: Option<usize>,
    /// Fit clips to `frames` with the seed's `np.resize` repeat-fill instead of crop/zero-pad.
    #[arg(long)]
    pub numpy_resize: bool,
    /// Hold out this fraction of train for validation (for choosing settings) instead of test/.
    #[arg(long)]
    pub val_split: Option<f32>,
    /// Turn the training augmentation off.
    #[arg(long)]
    pub no_augment: bool,
}

/// Model-file metadata key of the spoken-digit front end (sample rate, MFCC size, frame fit).
const FRONT_END_KEY: &str = "sound_digit.front_end";

/// Options of `convnet sound-digit predict`.
#[derive(Args, Debug)]
pub struct PredictArgs {
    /// The saved model (.safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// Sample rate the model was trained at (default: the one saved with the model; required
    /// for a model saved without its front end).
    #[arg(long)]
    pub sr: Option<u32>,
    /// WAV files to classify.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Print a JSON list of {"file","digit","probabilities"}.
    #[arg(long)]
    pub json: bool,
}

/// Runs a `sound-digit` subcommand.
pub fn sound_digit(cmd: &SoundDigitCmd) -> Result<()> {
    match cmd {
        SoundDigitCmd::Train(a) => train(a),
        SoundDigitCmd::Predict(a) => predict(a),
    }
}

/// One augmented copy of `x` (`[n, h, w]` row-major): circular-free time shift by up to
/// w/8 frames (zero fill), Gaussian noise (sigma 0.1), one time mask of up to w/6 frames and one
/// frequency mask of up to h/6 coefficients (set to 0, the normalised mean).
fn augment(x: &[f32], h: usize, w: usize, rng: &mut Rng) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    let max_shift = (w / 8).max(1);
    for (src, dst) in x.chunks(h * w).zip(out.chunks_mut(h * w)) {
        let shift = rng.below(2 * max_shift + 1) as isize - max_shift as isize;
        for r in 0..h {
            for t in 0..w {
                let s = t as isize - shift;
                if (0..w as isize).contains(&s) {
                    dst[r * w + t] = src[r * w + s as usize] + 0.1 * rng.normal();
                }
            }
        }
        let tw = rng.below(w / 6 + 1);
        let t0 = rng.below(w - tw + 1);
        let fh = rng.below(h / 6 + 1);
        let f0 = rng.below(h - fh + 1);
        for r in 0..h {
            for t in 0..w {
                if (t0..t0 + tw).contains(&t) || (f0..f0 + fh).contains(&r) {
                    dst[r * w + t] = 0.0;
                }
            }
        }
    }
    out
}

fn train(a: &TrainArgs) -> Result<()> {
    if a.epochs == 0 || a.batch_size == 0 {
        bail!("--epochs and --batch-size must be positive");
    }
    limits::batch("--batch-size", a.batch_size)?;
    limits::sample_rate("--sr", a.sr)?;
    limits::positive("--n-mfcc", a.n_mfcc, limits::MAX_MEL_BANDS)?;
    if let Some(f) = a.frames {
        limits::positive("--frames", f, limits::MAX_FRAMES)?;
    }
    // before the epochs, not after them
    convnet::nn::fsio::ensure_writable_dir(&a.out)
        .with_context(|| format!("cannot write to --out {}", a.out.display()))?;
    let start = Instant::now();
    let options = SpokenDigitOptions {
        sample_rate: a.sr,
        n_mfcc: a.n_mfcc,
        frames: a.frames.unwrap_or_else(|| SpokenDigitOptions::one_second_frames(a.sr)),
        fit: if a.numpy_resize { FrameFit::NumpyResize } else { FrameFit::CropOrPad },
    };
    let set = SpokenDigits::load(&a.data, &options).with_context(|| format!("loading {}", a.data.display()))?;
    let (h, w) = (options.n_mfcc, options.frames);
    println!(
        "loaded {} train / {} test clips as [{h}, {w}, 1] MFCC images in {:.1}s",
        set.train.len(),
        set.test.len(),
        start.elapsed().as_secs_f64()
    );
    let per = h * w;
    // training examples and validation data: test/, or a seeded split of train
    let (train_x, train_y, val_x, val_y) = match a.val_split {
        Some(f) if f > 0.0 && f < 1.0 => {
            let mut idx: Vec<usize> = (0..set.train.len()).collect();
            Rng::new(a.seed ^ 0x5eed).shuffle(&mut idx);
            let n_val = ((set.train.len() as f32 * f).round() as usize).clamp(1, set.train.len() - 1);
            let pick = |ids: &[usize]| -> (Vec<f32>, Vec<u32>) {
                let mut x = Vec::with_capacity(ids.len() * per);
                ids.iter().for_each(|&i| x.extend_from_slice(&set.train.x[i * per..(i + 1) * per]));
                (x, ids.iter().map(|&i| set.train.labels[i]).collect())
            };
            let (vx, vy) = pick(&idx[..n_val]);
            let (tx, ty) = pick(&idx[n_val..]);
            println!("validating on {n_val} held-out train clips (test/ untouched)");
            (tx, ty, vx, vy)
        }
        Some(f) => bail!("--val-split must be in (0, 1), got {f}"),
        None => (set.train.x.clone(), set.train.labels.clone(), set.test.x.clone(), set.test.labels.clone()),
    };
    let n_train = train_y.len();
    let val = (Tensor::from_vec(val_x, [val_y.len(), h, w, 1])?, Targets::Sparse(val_y.clone()));

    let mut model = models::sound_digit_cnn(h, w, a.seed)?;
    println!("{}", model.summary());
    model.compile(Loss::sparse_categorical_crossentropy(), Adam::new(a.lr), &[Metric::Accuracy])?;
    let mut history = History::default();
    let mut rng = Rng::new(a.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 1);
    let y = Targets::Sparse(train_y);
    for epoch in 0..a.epochs {
        let x = if a.no_augment { train_x.clone() } else { augment(&train_x, h, w, &mut rng) };
        let x = Tensor::from_vec(x, [n_train, h, w, 1])?;
        let opts = FitOptions::new(a.batch_size, 1)
            .with_seed(a.seed.wrapping_add(epoch as u64))
            .with_verbose(0)
            .with_validation_data(val.0.clone(), val.1.clone());
        let hist = model.fit(&x, &y, opts)?;
        history.loss.extend(&hist.loss);
        history.accuracy.extend(&hist.accuracy);
        history.val_loss.extend(&hist.val_loss);
        history.val_accuracy.extend(&hist.val_accuracy);
        history.epoch_seconds.extend(&hist.epoch_seconds);
        println!(
            "epoch {:>3}/{}: loss {:.4} acc {:.4} val_loss {:.4} val_acc {:.4}",
            epoch + 1,
            a.epochs,
            hist.loss[0],
            hist.accuracy.first().copied().unwrap_or(f64::NAN),
            hist.val_loss.first().copied().unwrap_or(f64::NAN),
            hist.val_accuracy.first().copied().unwrap_or(f64::NAN),
        );
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let model_path = a.out.join("sound_digit_cnn.safetensors");
    // the front end goes with the weights, so `predict` computes the same features
    let front_end = json!({"sample_rate": a.sr, "n_mfcc": h, "frames": w, "numpy_resize": a.numpy_resize});
    model.save_with_metadata(&model_path, [(FRONT_END_KEY.to_string(), front_end.to_string())].into())?;
    convnet::plot::plot_history_pair(
        &a.out,
        "sound_digit",
        &history.loss,
        &history.val_loss,
        &history.accuracy,
        &history.val_accuracy,
    )?;

    // per-class accuracy and confusion matrix on the validation data
    let probs = model.predict(&val.0, 64)?;
    let mut matrix = vec![vec![0u64; 10]; 10];
    for (row, &label) in probs.data().chunks(10).zip(&val_y) {
        matrix[label as usize][argmax(row)] += 1;
    }
    let total: u64 = matrix.iter().flatten().sum();
    let correct: u64 = (0..10).map(|d| matrix[d][d]).sum();
    let which = if a.val_split.is_some() { "validation" } else { "test" };
    println!("\n{which} accuracy: {:.4} ({correct}/{total})", correct as f64 / total.max(1) as f64);
    println!("digit  clips  accuracy");
    for (d, row) in matrix.iter().enumerate() {
        let n: u64 = row.iter().sum();
        if n > 0 {
            println!("{d:>5}  {n:>5}  {:>8.3}", row[d] as f64 / n as f64);
        }
    }
    let labels: Vec<String> = (0..10).map(|d| d.to_string()).collect();
    let cm_path = a.out.join("sound_digit_confusion.png");
    convnet::plot::plot_confusion_matrix(&cm_path, &labels, &matrix, &format!("Spoken digits ({which})"))?;
    println!(
        "saved {} and plots in {}; wall time {:.1}s",
        model_path.display(),
        a.out.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().fold(0, |best, (i, &v)| if v > row[best] { i } else { best })
}

fn predict(a: &PredictArgs) -> Result<()> {
    let (model, metadata) =
        Sequential::load_with_metadata(&a.model).with_context(|| format!("loading the model {}", a.model.display()))?;
    // the model must be a spoken-digit model: [n_mfcc, frames, 1] in, ten digits out, and
    // the front end it was trained with (a MNIST model has the same shapes but no front end)
    let &[h, w, 1] = model.input_shape() else {
        bail!(
            "{}: not a spoken-digit model: its input is {:?}, not [n_mfcc, frames, 1]",
            a.model.display(),
            model.input_shape()
        );
    };
    if model.output_shape() != [10] {
        bail!(
            "{}: not a spoken-digit model: it has {:?} outputs, not the 10 digits",
            a.model.display(),
            model.output_shape()
        );
    }
    let saved: serde_json::Value = match metadata.get(FRONT_END_KEY) {
        Some(text) => serde_json::from_str(text)
            .with_context(|| format!("{}: `{FRONT_END_KEY}` metadata is not JSON", a.model.display()))?,
        None if a.sr.is_some() => serde_json::Value::Null,
        None => bail!(
            "{}: not a spoken-digit model: it has no `{FRONT_END_KEY}` front end (models from `convnet sound-digit \
             train` have one); for an older spoken-digit model give its --sr",
            a.model.display()
        ),
    };
    let declared = (saved["n_mfcc"].as_u64(), saved["frames"].as_u64());
    if !saved.is_null() && declared != (Some(h as u64), Some(w as u64)) {
        bail!(
            "{}: its front end declares {:?} MFCCs x {:?} frames but the network takes [{h}, {w}, 1]",
            a.model.display(),
            declared.0,
            declared.1
        );
    }
    let saved_sr = saved["sample_rate"].as_u64().and_then(|v| u32::try_from(v).ok());
    let sr = match a.sr.or(saved_sr) {
        Some(sr) => limits::sample_rate("the model's sample rate (--sr)", sr)?,
        None => bail!("{}: the front end has no valid sample_rate; give --sr", a.model.display()),
    };
    let fit = if saved["numpy_resize"].as_bool() == Some(true) { FrameFit::NumpyResize } else { FrameFit::CropOrPad };
    let options = SpokenDigitOptions { sample_rate: sr, n_mfcc: h, frames: w, fit };
    let transform = MfccTransform::new(MfccConfig::new(sr, h))?;
    let mut x = Vec::with_capacity(a.files.len() * h * w);
    for f in &a.files {
        let m = transform.apply_file(f)?;
        x.extend(audio::clip_features(&m, &options));
    }
    let probs = model.predict(&Tensor::from_vec(x, [a.files.len(), h, w, 1])?, 64)?;
    let rows: Vec<&[f32]> = probs.data().chunks_exact(10).collect();
    if a.json {
        let list: Vec<_> = a
            .files
            .iter()
            .zip(&rows)
            .map(|(f, p)| json!({"file": f.display().to_string(), "digit": argmax(p), "probabilities": p}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        for (f, p) in a.files.iter().zip(&rows) {
            let d = argmax(p);
            println!("{}: {d} ({:.1}%)", f.display(), 100.0 * p[d]);
        }
    }
    Ok(())
}

/// `convnet audio ...`.
#[derive(Subcommand)]
pub enum AudioCmd {
    /// Draw the waveform of a WAV file.
    Waveform(AudioArgs),
    /// MFCC of a WAV file as a PNG heatmap and/or a float32 .npy `[n_mfcc, frames]`.
    Mfcc(AudioArgs),
    /// Log-mel spectrogram (dB) as a PNG heatmap and/or a float32 .npy `[n_mels, frames]`.
    Melspec(AudioArgs),
}

/// Options shared by the `audio` subcommands (librosa's defaults).
#[derive(Args, Debug)]
pub struct AudioArgs {
    /// The WAV file.
    pub file: PathBuf,
    /// Write a PNG here.
    #[arg(long)]
    pub png: Option<PathBuf>,
    /// Write the features as .npy here (mfcc, melspec).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Sample rate in Hz, or `native` to keep the file's.
    #[arg(long, default_value = "22050")]
    pub sr: String,
    /// MFCC coefficients per frame (mfcc).
    #[arg(long, default_value_t = 20)]
    pub n_mfcc: usize,
    /// FFT window length in samples.
    #[arg(long, default_value_t = 2048)]
    pub n_fft: usize,
    /// Samples between the starts of consecutive frames.
    #[arg(long, default_value_t = 512)]
    pub hop_length: usize,
    /// Mel bands (melspec; mfcc is computed from them).
    #[arg(long, default_value_t = 128)]
    pub n_mels: usize,
}

/// Runs an `audio` subcommand.
pub fn audio_cmd(cmd: &AudioCmd) -> Result<()> {
    let (a, kind) = match cmd {
        AudioCmd::Waveform(a) => (a, "waveform"),
        AudioCmd::Mfcc(a) => (a, "mfcc"),
        AudioCmd::Melspec(a) => (a, "melspec"),
    };
    if a.png.is_none() && a.out.is_none() {
        bail!("nothing to do: give --png and/or --out");
    }
    let target = if a.sr.eq_ignore_ascii_case("native") {
        TargetRate::Native
    } else {
        let sr = a.sr.parse().with_context(|| format!("--sr must be a number or `native`, got {}", a.sr))?;
        TargetRate::Hz(limits::sample_rate("--sr", sr)?)
    };
    limits::positive("--n-fft", a.n_fft, limits::MAX_N_FFT)?;
    limits::positive("--hop-length", a.hop_length, limits::MAX_N_FFT)?;
    limits::positive("--n-mels", a.n_mels, limits::MAX_MEL_BANDS)?;
    limits::positive("--n-mfcc", a.n_mfcc, limits::MAX_MEL_BANDS)?;
    let clip = audio::load(&a.file, target)?;
    let title = a.file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if kind == "waveform" {
        if a.out.is_some() {
            bail!("--out is for mfcc and melspec");
        }
        if let Some(png) = &a.png {
            audio::save_waveform_png(png, &clip, &title)?;
            println!("wrote {}", png.display());
        }
        return Ok(());
    }
    let mel = MelSpectrogramConfig::new(clip.sample_rate)
        .with_stft(StftConfig::new(a.n_fft).with_hop_length(a.hop_length))
        .with_n_mels(a.n_mels);
    let (features, rows, label) = if kind == "mfcc" {
        let cfg = MfccConfig::new(clip.sample_rate, a.n_mfcc).with_mel(mel);
        (MfccTransform::new(cfg)?.apply(&clip.samples)?, RowAxis::Coefficient, "MFCC")
    } else {
        (LogMelTransform::new(mel, DbConfig::default())?.apply(&clip.samples)?, RowAxis::MelBand, "dB")
    };
    if let Some(png) = &a.png {
        let frame_s = a.hop_length as f64 / f64::from(clip.sample_rate);
        audio::save_features_png(png, &features, frame_s, rows, &title, label)?;
        println!("wrote {}", png.display());
    }
    if let Some(out) = &a.out {
        write_npy(out, &[features.n_coeffs, features.frames], &features.data)?;
        println!("wrote {} [{}, {}] float32", out.display(), features.n_coeffs, features.frames);
    }
    Ok(())
}

fn write_npy(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    convnet_zoo::npy::write_npy(path, shape, data).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn augment_keeps_shape_and_masks() {
        let x = vec![1.0; 2 * 12 * 16];
        let mut rng = Rng::new(3);
        let y = augment(&x, 12, 16, &mut rng);
        assert_eq!(y.len(), x.len());
        assert_ne!(y, x);
        assert!(y.iter().all(|v| v.is_finite() && v.abs() < 2.0));
    }

    #[test]
    fn argmax_picks_the_largest() {
        assert_eq!(argmax(&[0.1, 0.7, 0.2]), 1);
    }
}
