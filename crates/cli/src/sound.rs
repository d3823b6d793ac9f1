//! `convnet sound-digit train|cv|predict` (a CNN over MFCC images of spoken digits, the course's
//! audio example) and `convnet audio waveform|mfcc|melspec` (look at or export one clip).
//!
//! Training augments the cached MFCC arrays afresh every epoch (speed change, time shift,
//! per-coefficient gain, Gaussian noise, SpecAugment time and frequency masks: cheap stand-ins
//! for a new voice) and calls `fit` for one epoch at a time with a per-epoch seed and a cosine
//! learning rate, so a run is reproducible and the DSP runs once. Validation (`--val-split`,
//! `cv`) holds out whole speakers, named by `speech_speakers_digits.tsv`, so it scores voices the
//! model has not heard.

use crate::limits;
use crate::report::{Classification, print_json};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use convnet::audio::{
    self, DbConfig, FrameFit, LogMelTransform, MelSpectrogramConfig, MfccConfig, MfccTransform, RowAxis, SpeakerTable,
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
    /// Speaker-disjoint k-fold cross-validation over DIR/train and DIR/test together.
    Cv(CvArgs),
    /// Classify WAV files with a saved spoken-digit model.
    Predict(PredictArgs),
}

/// The training recipe, shared by `train` and `cv`.
#[derive(Args, Debug, Clone)]
pub struct RecipeArgs {
    /// Epochs (60: in speaker-disjoint 5-fold CV on both shared sets, seeds 1-5 and 42, every
    /// fold passed 50 % validation accuracy by epoch 19 and the mean ended at 92.7-96.1 %).
    #[arg(long, default_value_t = 60)]
    pub epochs: usize,
    /// Clips per gradient step.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Adam learning rate at the start; it decays along a cosine to 1 % of it.
    #[arg(long, default_value_t = 0.003, visible_alias = "learning-rate")]
    pub lr: f64,
    /// Seed of the weights, shuffling, dropout, augmentation and the speaker split.
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
    /// Turn the training augmentation off.
    #[arg(long)]
    pub no_augment: bool,
    /// The speaker of every clip (tab-separated set, nnn, speaker; default:
    /// `speech_speakers_digits.tsv` in the data folder or up to two folders above it).
    #[arg(long)]
    pub speakers: Option<PathBuf>,
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
    #[command(flatten)]
    pub recipe: RecipeArgs,
    /// Hold out this fraction of train's speakers (of its files when no speaker table is found)
    /// for validation instead of test/.
    #[arg(long)]
    pub val_split: Option<f32>,
}

/// Options of `convnet sound-digit cv`.
#[derive(Args, Debug)]
pub struct CvArgs {
    /// Folder with `train/<d>_<nnn>.wav` and `test/...` (both are pooled).
    #[arg(long)]
    pub data: PathBuf,
    /// Number of speaker-disjoint folds.
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    #[command(flatten)]
    pub recipe: RecipeArgs,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
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
    /// Digits to list per file in --json, most likely first (10: all of them).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=10))]
    pub top: u16,
    /// Print the classifications as JSON: `[{"file", "top": [{"index", "label", "probability"}]}]`.
    #[arg(long)]
    pub json: bool,
    /// WAV files to classify.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Runs a `sound-digit` subcommand.
pub fn sound_digit(cmd: &SoundDigitCmd) -> Result<()> {
    match cmd {
        SoundDigitCmd::Train(a) => train(a),
        SoundDigitCmd::Cv(a) => cv(a),
        SoundDigitCmd::Predict(a) => predict(a),
    }
}

/// One augmented copy of `x` (`[n, h, w]` row-major, rows already normalised per clip): a
/// speed change (frames resampled by `U(0.85, 1.15)`, linear interpolation), a time shift by up
/// to w/8 frames (zero fill), a gain of `U(0.8, 1.2)` per coefficient (a different vocal tract
/// weighs the cepstrum differently), Gaussian noise (sigma 0.1), then two time masks of up to
/// w/8 frames and two frequency masks of up to h/8 coefficients (set to 0, the clip mean).
fn augment(x: &[f32], h: usize, w: usize, rng: &mut Rng) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    let max_shift = (w / 8).max(1);
    for (src, dst) in x.chunks(h * w).zip(out.chunks_mut(h * w)) {
        let speed = 0.85 + 0.3 * rng.uniform();
        let shift = rng.below(2 * max_shift + 1) as f32 - max_shift as f32;
        for r in 0..h {
            let gain = 0.8 + 0.4 * rng.uniform();
            let row = &src[r * w..(r + 1) * w];
            for t in 0..w {
                // output frame t shows source position (t - shift) * speed
                let pos = (t as f32 - shift) * speed;
                if pos < 0.0 || pos > (w - 1) as f32 {
                    continue;
                }
                let i = pos.floor() as usize;
                let frac = pos - i as f32;
                let v = if i + 1 < w { row[i] * (1.0 - frac) + row[i + 1] * frac } else { row[i] };
                dst[r * w + t] = gain * v + 0.1 * rng.normal();
            }
        }
        for _ in 0..2 {
            let tw = rng.below(w / 8 + 1);
            let t0 = rng.below(w - tw + 1);
            let fh = rng.below(h / 8 + 1);
            let f0 = rng.below(h - fh + 1);
            for r in 0..h {
                for t in 0..w {
                    if (t0..t0 + tw).contains(&t) || (f0..f0 + fh).contains(&r) {
                        dst[r * w + t] = 0.0;
                    }
                }
            }
        }
    }
    out
}

/// Loads a spoken-digit folder with the recipe's front end.
fn load_set(data: &Path, r: &RecipeArgs) -> Result<(SpokenDigits, SpokenDigitOptions)> {
    let options = SpokenDigitOptions {
        sample_rate: r.sr,
        n_mfcc: r.n_mfcc,
        frames: r.frames.unwrap_or_else(|| SpokenDigitOptions::one_second_frames(r.sr)),
        fit: if r.numpy_resize { FrameFit::NumpyResize } else { FrameFit::CropOrPad },
    };
    let set = SpokenDigits::load(data, &options).with_context(|| format!("loading {}", data.display()))?;
    Ok((set, options))
}

/// The speaker of each file, from `--speakers` or the table found near `data`; `None` when no
/// table is found or it names none of the files. Files it does not name count as speakers of
/// their own (so they can never leak across a split).
fn speakers_of(data: &Path, r: &RecipeArgs, files: &[PathBuf]) -> Result<Option<Vec<String>>> {
    let path = match &r.speakers {
        Some(p) => p.clone(),
        None => match SpeakerTable::find_near(data) {
            Some(p) => p,
            None => return Ok(None),
        },
    };
    let table = SpeakerTable::load(&path)?;
    let known: Vec<Option<&str>> = files.iter().map(|f| table.speaker_of(f)).collect();
    let n_known = known.iter().filter(|k| k.is_some()).count();
    if n_known == 0 {
        eprintln!("warning: {} names none of the clips in {}", path.display(), data.display());
        return Ok(None);
    }
    if n_known < files.len() {
        eprintln!(
            "warning: {} names {n_known} of {} clips; the others count as one speaker each",
            path.display(),
            files.len()
        );
    }
    let list = known
        .iter()
        .zip(files)
        .map(|(k, f)| k.map_or_else(|| format!("file:{}", f.display()), str::to_string))
        .collect();
    Ok(Some(list))
}

/// Rows `ids` of `[n, per]` features and their labels.
fn pick(x: &[f32], labels: &[u32], per: usize, ids: &[usize]) -> (Vec<f32>, Vec<u32>) {
    let mut out = Vec::with_capacity(ids.len() * per);
    ids.iter().for_each(|&i| out.extend_from_slice(&x[i * per..(i + 1) * per]));
    (out, ids.iter().map(|&i| labels[i]).collect())
}

/// A trained model with its per-epoch history.
struct Fitted {
    model: Sequential,
    history: History,
    /// First epoch (1-based) whose validation accuracy exceeded 50 %.
    first_above_half: Option<usize>,
}

/// Trains the recipe's CNN on `(train_x, train_y)`, validating every epoch on `val`.
fn fit_recipe(
    r: &RecipeArgs,
    (h, w): (usize, usize),
    train_x: &[f32],
    train_y: &[u32],
    val: &(Tensor, Targets),
    verbose: bool,
) -> Result<Fitted> {
    let n_train = train_y.len();
    let mut model = models::sound_digit_cnn(h, w, r.seed)?;
    if verbose {
        println!("{}", model.summary());
    }
    model.compile(Loss::sparse_categorical_crossentropy(), Adam::new(r.lr), &[Metric::Accuracy])?;
    let mut history = History::default();
    let mut first_above_half = None;
    let mut rng = Rng::new(r.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 1);
    let y = Targets::Sparse(train_y.to_vec());
    for epoch in 0..r.epochs {
        // cosine from lr to lr / 100: the last epochs settle instead of jumping between minima
        let progress = epoch as f64 / r.epochs.max(2).saturating_sub(1) as f64;
        let lr = r.lr * (0.01 + 0.99 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()));
        if let Some(opt) = model.optimizer_mut() {
            opt.set_learning_rate(lr);
        }
        let x = if r.no_augment { train_x.to_vec() } else { augment(train_x, h, w, &mut rng) };
        let x = Tensor::from_vec(x, [n_train, h, w, 1])?;
        let opts = FitOptions::new(r.batch_size, 1)
            .with_seed(r.seed.wrapping_add(epoch as u64))
            .with_verbose(0)
            .with_validation_data(val.0.clone(), val.1.clone());
        let hist = model.fit(&x, &y, opts)?;
        let val_acc = hist.val_accuracy.first().copied().unwrap_or(f64::NAN);
        if first_above_half.is_none() && val_acc > 0.5 {
            first_above_half = Some(epoch + 1);
        }
        history.loss.extend(&hist.loss);
        history.accuracy.extend(&hist.accuracy);
        history.val_loss.extend(&hist.val_loss);
        history.val_accuracy.extend(&hist.val_accuracy);
        history.epoch_seconds.extend(&hist.epoch_seconds);
        if verbose {
            println!(
                "epoch {:>3}/{}: lr {lr:.5} loss {:.4} acc {:.4} val_loss {:.4} val_acc {val_acc:.4}",
                epoch + 1,
                r.epochs,
                hist.loss[0],
                hist.accuracy.first().copied().unwrap_or(f64::NAN),
                hist.val_loss.first().copied().unwrap_or(f64::NAN),
            );
        }
    }
    Ok(Fitted { model, history, first_above_half })
}

fn check_recipe(r: &RecipeArgs) -> Result<()> {
    if r.epochs == 0 || r.batch_size == 0 {
        bail!("--epochs and --batch-size must be positive");
    }
    limits::batch("--batch-size", r.batch_size)?;
    limits::sample_rate("--sr", r.sr)?;
    limits::positive("--n-mfcc", r.n_mfcc, limits::MAX_MEL_BANDS)?;
    if let Some(f) = r.frames {
        limits::positive("--frames", f, limits::MAX_FRAMES)?;
    }
    if !(r.lr.is_finite() && r.lr > 0.0) {
        bail!("--lr must be a positive number, got {}", r.lr);
    }
    Ok(())
}

fn train(a: &TrainArgs) -> Result<()> {
    let r = &a.recipe;
    check_recipe(r)?;
    // before the epochs, not after them
    convnet::nn::fsio::ensure_writable_dir(&a.out)
        .with_context(|| format!("cannot write to --out {}", a.out.display()))?;
    let start = Instant::now();
    let (set, options) = load_set(&a.data, r)?;
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
            let n = set.train.len();
            let is_val = match speakers_of(&a.data, r, &set.train.files)? {
                Some(speakers) => {
                    let refs: Vec<&str> = speakers.iter().map(String::as_str).collect();
                    let is_val = audio::speaker_holdout(&refs, f, r.seed ^ 0x5eed)?;
                    let held: std::collections::BTreeSet<&str> =
                        refs.iter().zip(&is_val).filter(|p| *p.1).map(|p| *p.0).collect();
                    println!(
                        "validating on the {} clips of {} held-out speakers",
                        is_val.iter().filter(|v| **v).count(),
                        held.len()
                    );
                    is_val
                }
                None => {
                    eprintln!(
                        "warning: no speaker table found: validating on random files, whose speakers are also in training"
                    );
                    let mut idx: Vec<usize> = (0..n).collect();
                    Rng::new(r.seed ^ 0x5eed).shuffle(&mut idx);
                    let n_val = ((n as f32 * f).round() as usize).clamp(1, n - 1);
                    let mut is_val = vec![false; n];
                    idx[..n_val].iter().for_each(|&i| is_val[i] = true);
                    println!("validating on {n_val} held-out train clips (test/ untouched)");
                    is_val
                }
            };
            let val_ids: Vec<usize> = (0..n).filter(|&i| is_val[i]).collect();
            let train_ids: Vec<usize> = (0..n).filter(|&i| !is_val[i]).collect();
            let (vx, vy) = pick(&set.train.x, &set.train.labels, per, &val_ids);
            let (tx, ty) = pick(&set.train.x, &set.train.labels, per, &train_ids);
            (tx, ty, vx, vy)
        }
        Some(f) => bail!("--val-split must be in (0, 1), got {f}"),
        None => (set.train.x.clone(), set.train.labels.clone(), set.test.x.clone(), set.test.labels.clone()),
    };
    let val = (Tensor::from_vec(val_x, [val_y.len(), h, w, 1])?, Targets::Sparse(val_y.clone()));
    let Fitted { model, history, first_above_half } = fit_recipe(r, (h, w), &train_x, &train_y, &val, true)?;
    match first_above_half {
        Some(e) => println!("validation accuracy first above 50 % at epoch {e}"),
        None => println!("validation accuracy never exceeded 50 %"),
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let model_path = a.out.join("sound_digit_cnn.safetensors");
    // the front end goes with the weights, so `predict` computes the same features
    let front_end = json!({"sample_rate": r.sr, "n_mfcc": h, "frames": w, "numpy_resize": r.numpy_resize});
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
    let matrix = confusion(&model, &val.0, &val_y)?;
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

/// `matrix[true][predicted]` counts of `model` on `x`.
fn confusion(model: &Sequential, x: &Tensor, labels: &[u32]) -> Result<Vec<Vec<u64>>> {
    let probs = model.predict(x, 64)?;
    let mut matrix = vec![vec![0u64; 10]; 10];
    for (row, &label) in probs.data().chunks(10).zip(labels) {
        matrix[label as usize][argmax(row)] += 1;
    }
    Ok(matrix)
}

/// Mean and (population) standard deviation.
fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    (mean, (v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n).sqrt())
}

fn cv(a: &CvArgs) -> Result<()> {
    let r = &a.recipe;
    check_recipe(r)?;
    let start = Instant::now();
    let (set, options) = load_set(&a.data, r)?;
    let (h, w) = (options.n_mfcc, options.frames);
    let per = h * w;
    // train/ and test/ pooled: every speaker is scored once
    let files: Vec<PathBuf> = set.train.files.iter().chain(&set.test.files).cloned().collect();
    let x: Vec<f32> = set.train.x.iter().chain(&set.test.x).copied().collect();
    let labels: Vec<u32> = set.train.labels.iter().chain(&set.test.labels).copied().collect();
    let Some(speakers) = speakers_of(&a.data, r, &files)? else {
        bail!(
            "no speaker table for {}: give --speakers FILE (tab-separated set, nnn, speaker), or put {} beside the data",
            a.data.display(),
            audio::SPEAKER_TABLE_NAME
        );
    };
    let refs: Vec<&str> = speakers.iter().map(String::as_str).collect();
    let fold_of = audio::speaker_folds(&refs, a.folds, r.seed)?;
    if !a.json {
        let n_speakers = refs.iter().collect::<std::collections::HashSet<_>>().len();
        println!(
            "{} clips of {n_speakers} speakers in {} speaker-disjoint folds; {} epochs, seed {}",
            files.len(),
            a.folds,
            r.epochs,
            r.seed
        );
    }
    let mut rows = Vec::new();
    for fold in 0..a.folds {
        let val_ids: Vec<usize> = (0..files.len()).filter(|&i| fold_of[i] == fold).collect();
        let train_ids: Vec<usize> = (0..files.len()).filter(|&i| fold_of[i] != fold).collect();
        let (tx, ty) = pick(&x, &labels, per, &train_ids);
        let (vx, vy) = pick(&x, &labels, per, &val_ids);
        let val = (Tensor::from_vec(vx, [vy.len(), h, w, 1])?, Targets::Sparse(vy.clone()));
        let fitted = fit_recipe(r, (h, w), &tx, &ty, &val, false)?;
        let matrix = confusion(&fitted.model, &val.0, &vy)?;
        let correct: u64 = (0..10).map(|d| matrix[d][d]).sum();
        let accuracy = correct as f64 / vy.len().max(1) as f64;
        let best = fitted.history.val_accuracy.iter().copied().fold(0.0, f64::max);
        if !a.json {
            println!(
                "fold {}/{}: {} clips, accuracy {:.4} ({correct}/{}), best epoch {:.4}, first above 50 % at epoch {}",
                fold + 1,
                a.folds,
                vy.len(),
                accuracy,
                vy.len(),
                best,
                fitted.first_above_half.map_or_else(|| "never".to_string(), |e| e.to_string())
            );
        }
        rows.push(json!({
            "fold": fold,
            "clips": vy.len(),
            "accuracy": accuracy,
            "best_epoch_accuracy": best,
            "first_epoch_above_half": fitted.first_above_half,
        }));
    }
    let accs: Vec<f64> = rows.iter().filter_map(|r| r["accuracy"].as_f64()).collect();
    let (mean, std) = mean_std(&accs);
    let slowest = rows.iter().map(|r| r["first_epoch_above_half"].as_u64()).try_fold(0, |m, e| e.map(|e| m.max(e)));
    if a.json {
        let out = json!({
            "data": a.data.display().to_string(),
            "folds": rows,
            "mean_accuracy": mean,
            "std_accuracy": std,
            "seed": r.seed,
            "epochs": r.epochs,
            "slowest_first_epoch_above_half": slowest,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "accuracy {:.2} ± {:.2} % over {} folds (min {:.2} %); wall time {:.1}s",
            100.0 * mean,
            100.0 * std,
            a.folds,
            100.0 * accs.iter().copied().fold(f64::INFINITY, f64::min),
            start.elapsed().as_secs_f64()
        );
    }
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
    let list: Vec<Classification> = a
        .files
        .iter()
        .zip(probs.data().chunks_exact(10))
        .map(|(f, p)| Classification::new(f, p, |i| i.to_string(), usize::from(a.top)))
        .collect();
    if a.json {
        return print_json(&list);
    }
    for c in &list {
        if let Some(best) = c.best() {
            println!("{}: {} ({:.1}%)", c.file, best.index, 100.0 * best.probability);
        }
    }
    Ok(())
}

/// `convnet audio ...`.
#[derive(Subcommand)]
pub enum AudioCmd {
    /// Draw the waveform of a WAV file.
    Waveform(WaveformArgs),
    /// MFCC of a WAV file as a PNG heatmap and/or a float32 .npy `[n_mfcc, frames]`.
    Mfcc(MfccArgs),
    /// Log-mel spectrogram (dB) as a PNG heatmap and/or a float32 .npy `[n_mels, frames]`.
    Melspec(MelspecArgs),
}

/// The clip every `audio` subcommand reads.
#[derive(Args, Debug)]
pub struct ClipArgs {
    /// The WAV file.
    pub file: PathBuf,
    /// Sample rate in Hz the clip is resampled to, or `native` to keep the file's.
    #[arg(long, default_value = "22050")]
    pub sr: String,
}

/// Options of `convnet audio waveform`.
#[derive(Args, Debug)]
pub struct WaveformArgs {
    #[command(flatten)]
    pub clip: ClipArgs,
    /// The PNG file to write.
    #[arg(long)]
    pub png: PathBuf,
}

/// The frames and mel bands of `mfcc` and `melspec` (librosa's defaults), and where they go.
#[derive(Args, Debug)]
pub struct SpectralArgs {
    #[command(flatten)]
    pub clip: ClipArgs,
    /// Write the features as a heatmap PNG to this file.
    #[arg(long)]
    pub png: Option<PathBuf>,
    /// Write the features as a float32 .npy `[rows, frames]` to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// FFT window length, in samples.
    #[arg(long, default_value_t = 2048)]
    pub n_fft: usize,
    /// Samples between the starts of consecutive frames.
    #[arg(long, default_value_t = 512)]
    pub hop_length: usize,
    /// Mel bands (the rows of melspec; mfcc is computed from them).
    #[arg(long, default_value_t = 128)]
    pub n_mels: usize,
}

/// Options of `convnet audio mfcc`.
#[derive(Args, Debug)]
pub struct MfccArgs {
    #[command(flatten)]
    pub spectral: SpectralArgs,
    /// MFCC coefficients per frame (the rows of the output).
    #[arg(long, default_value_t = 20)]
    pub n_mfcc: usize,
}

/// Options of `convnet audio melspec`.
#[derive(Args, Debug)]
pub struct MelspecArgs {
    #[command(flatten)]
    pub spectral: SpectralArgs,
}

/// `--sr`: a rate in Hz or `native`.
fn target_rate(sr: &str) -> Result<TargetRate> {
    if sr.eq_ignore_ascii_case("native") {
        return Ok(TargetRate::Native);
    }
    let hz = sr.parse().with_context(|| format!("--sr must be a number or `native`, got {sr}"))?;
    Ok(TargetRate::Hz(limits::sample_rate("--sr", hz)?))
}

/// The clip's file name, as a chart title.
fn title_of(file: &Path) -> String {
    file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Runs an `audio` subcommand.
pub fn audio_cmd(cmd: &AudioCmd) -> Result<()> {
    let (a, n_mfcc) = match cmd {
        AudioCmd::Waveform(w) => {
            let clip = audio::load(&w.clip.file, target_rate(&w.clip.sr)?)?;
            audio::save_waveform_png(&w.png, &clip, &title_of(&w.clip.file))?;
            println!("wrote {}", w.png.display());
            return Ok(());
        }
        AudioCmd::Mfcc(m) => (&m.spectral, Some(m.n_mfcc)),
        AudioCmd::Melspec(m) => (&m.spectral, None),
    };
    if a.png.is_none() && a.out.is_none() {
        bail!("nothing to do: give --png and/or --out");
    }
    let target = target_rate(&a.clip.sr)?;
    limits::positive("--n-fft", a.n_fft, limits::MAX_N_FFT)?;
    limits::positive("--hop-length", a.hop_length, limits::MAX_N_FFT)?;
    limits::positive("--n-mels", a.n_mels, limits::MAX_MEL_BANDS)?;
    if let Some(n) = n_mfcc {
        limits::positive("--n-mfcc", n, limits::MAX_MEL_BANDS)?;
    }
    let clip = audio::load(&a.clip.file, target)?;
    let title = title_of(&a.clip.file);
    let mel = MelSpectrogramConfig::new(clip.sample_rate)
        .with_stft(StftConfig::new(a.n_fft).with_hop_length(a.hop_length))
        .with_n_mels(a.n_mels);
    let (features, rows, label) = match n_mfcc {
        Some(n) => {
            let cfg = MfccConfig::new(clip.sample_rate, n).with_mel(mel);
            (MfccTransform::new(cfg)?.apply(&clip.samples)?, RowAxis::Coefficient, "MFCC")
        }
        None => (LogMelTransform::new(mel, DbConfig::default())?.apply(&clip.samples)?, RowAxis::MelBand, "dB"),
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
    fn mean_std_is_the_population_formula() {
        let (m, s) = mean_std(&[0.8, 0.9, 1.0]);
        assert!((m - 0.9).abs() < 1e-12 && (s - (0.02f64 / 3.0).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn argmax_picks_the_largest() {
        assert_eq!(argmax(&[0.1, 0.7, 0.2]), 1);
    }
}
