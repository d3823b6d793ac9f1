//! `convnet speech train|predict|listen|make-stream`: TensorFlow's speech-commands example
//! (keyword spotting on Google Speech Commands) as one command each.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::report::{BenchRow, Classification, Phase, bench_json, print_json};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use convnet::speech::{
    Architecture, Confusion, DataOptions, OptimizerKind, PositionReport, RecognizerConfig, SpeechCommands, SpeechModel,
    StreamOptions, TrainConfig, TrainEvent, TuneOptions, WindowScores, WordReport, evaluate, listen, make_stream,
    position_report, read_truth, score_detections, tune_recognizer, word_report, write_truth, write_wav,
};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

/// `convnet speech ...`.
#[derive(Subcommand)]
pub enum SpeechCmd {
    /// Train a keyword model on a Speech Commands folder (TensorFlow's train.py).
    Train(TrainArgs),
    /// Top-3 labels of WAV files with a trained model.
    Predict(PredictArgs),
    /// Detect keywords in a long recording with a sliding window (TensorFlow's RecognizeCommands).
    Listen(ListenArgs),
    /// Build a long test recording from a split's clips, with its word list (for `listen --truth`).
    MakeStream(MakeStreamArgs),
    /// Choose a model's streaming settings on validation streams and store them in the model
    /// file (`train` does this at its end).
    Tune(TuneArgs),
    /// Clip accuracy, per-class accuracy and the confusion matrix of a trained model on one
    /// split (the figures `train` prints at its end, for any saved model).
    Evaluate(EvaluateArgs),
}

/// Update rules of `--optimizer`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum OptimizerArg {
    Adam,
    GradientDescent,
    Momentum,
}

/// Options of `convnet speech train`, named as train.py's flags.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// The Speech Commands folder (`<word>/*.wav`, `_background_noise_/`, split lists).
    #[arg(long)]
    pub data: PathBuf,
    /// Folder for the best checkpoint, plots and the confusion matrix.
    #[arg(long, default_value = "models/speech")]
    pub out: PathBuf,
    /// Words to recognise, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "yes,no,up,down,left,right,on,off,stop,go")]
    pub wanted_words: Vec<String>,
    /// conv, low_latency_conv, single_fc or tiny_conv.
    #[arg(long, default_value = "conv")]
    pub model: String,
    /// Steps of each training phase, comma-separated (the example's 15000,3000).
    #[arg(long, value_delimiter = ',', default_value = "15000,3000")]
    pub steps: Vec<usize>,
    /// Learning rate of each phase, comma-separated (train.py's --learning_rate).
    #[arg(long, value_delimiter = ',', default_value = "0.001,0.0001", visible_alias = "learning-rate")]
    pub lr: Vec<f64>,
    /// Clips per training step.
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// Steps between validations.
    #[arg(long, default_value_t = 400)]
    pub eval_step_interval: usize,
    /// Update rule: adam, gradient-descent (the example's) or momentum.
    #[arg(long, value_enum, default_value = "adam")]
    pub optimizer: OptimizerArg,
    /// Fraction of activations dropped in training (0 to 1).
    #[arg(long, default_value_t = 0.5)]
    pub dropout_rate: f32,
    /// Share of each split made of silence clips, in percent.
    #[arg(long, default_value_t = 10.0)]
    pub silence_percentage: f64,
    /// Share of each split made of words outside --wanted-words (_unknown_), in percent.
    #[arg(long, default_value_t = 10.0)]
    pub unknown_percentage: f64,
    /// Largest random time shift in ms.
    #[arg(long, default_value_t = 100)]
    pub time_shift_ms: u32,
    /// Chance of background noise on a word.
    #[arg(long, default_value_t = 0.8)]
    pub background_frequency: f32,
    /// Largest background-noise volume on a word.
    #[arg(long, default_value_t = 0.1)]
    pub background_volume: f32,
    /// Speed perturbation: each training word plays U(1-r, 1+r) times as fast (0: off, as TensorFlow).
    #[arg(long, default_value_t = 0.1)]
    pub speed_range: f32,
    /// Random training gain on words, U(-g, g) dB (0: off, as TensorFlow).
    #[arg(long, default_value_t = 6.0)]
    pub gain_db: f32,
    /// Shift each word anywhere in the window where it stays whole, instead of by up to
    /// `--time-shift-ms`: what a sliding window sees in a stream.
    #[arg(long)]
    pub shift_within_word: bool,
    /// SpecAugment time masks per training example (0: off, as TensorFlow).
    #[arg(long, default_value_t = 0)]
    pub time_masks: usize,
    /// Longest time mask, in 10 ms frames.
    #[arg(long, default_value_t = 10)]
    pub time_mask_frames: usize,
    /// SpecAugment frequency masks per training example (0: off, as TensorFlow).
    #[arg(long, default_value_t = 0)]
    pub frequency_masks: usize,
    /// Widest frequency mask, in MFCC coefficients.
    #[arg(long, default_value_t = 5)]
    pub frequency_mask_bins: usize,
    /// Use TensorFlow's fixed choice of training `_unknown_` clips instead of drawing them
    /// afresh from the whole filler pool.
    #[arg(long)]
    pub fixed_unknown: bool,
    /// `_unknown_` share of the training examples only, in percent of the word clips
    /// (default: --unknown-percentage); validation and test keep --unknown-percentage.
    #[arg(long)]
    pub training_unknown_percentage: Option<f64>,
    /// Standardise each MFCC coefficient with training-set statistics (saved with the model)
    /// instead of feeding TensorFlow's raw MFCCs.
    #[arg(long)]
    pub normalize: bool,
    /// Seed of the weights, batches, dropout and augmentation.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Validate and keep an exponential moving average of the weights with this decay per
    /// step (0: the raw weights, as TensorFlow).
    #[arg(long, default_value_t = 0.995)]
    pub ema_decay: f64,
    #[command(flatten)]
    pub tuning: TuningArgs,
}

/// Options of `convnet speech predict`.
#[derive(Args, Debug)]
pub struct PredictArgs {
    /// A model written by `convnet speech train`.
    #[arg(long)]
    pub model: PathBuf,
    /// Labels to list per file, most likely first.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..))]
    pub top: u16,
    /// Print the classifications as JSON: `[{"file", "top": [{"index", "label", "probability"}]}]`.
    #[arg(long)]
    pub json: bool,
    /// WAV files to classify (one word each, 1 s at 16 kHz as trained).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Options of `convnet speech listen`.
#[derive(Args, Debug)]
pub struct ListenArgs {
    /// A model written by `convnet speech train`.
    #[arg(long)]
    pub model: PathBuf,
    /// The recording.
    pub file: PathBuf,
    /// Hop between windows in ms.
    #[arg(long, default_value_t = 30)]
    pub clip_stride_ms: u32,
    /// Averaging span in ms [default: the model's tuned setting, else TensorFlow's 500].
    #[arg(long)]
    pub average_window_ms: Option<u32>,
    /// Smallest averaged score reported [default: the model's tuned setting, else 0.7].
    #[arg(long)]
    pub detection_threshold: Option<f32>,
    /// Quiet time after a detection in ms [default: the model's tuned setting, else 500].
    #[arg(long)]
    pub suppression_ms: Option<u32>,
    /// Fewest windows inside the averaging span for a detection to be reported.
    #[arg(long, default_value_t = 3)]
    pub minimum_count: usize,
    /// `word,start_ms` list of the words in the file (from `make-stream`): score the detections.
    #[arg(long)]
    pub truth: Option<PathBuf>,
    /// A detection counts for a word whose clip ends within this many ms of it.
    #[arg(long, default_value_t = 750)]
    pub time_tolerance_ms: i64,
    /// Write every window's scores to this CSV file (`time_ms` and one column per label), to
    /// look at the raw posteriors or choose the recogniser's settings.
    #[arg(long)]
    pub scores: Option<PathBuf>,
    /// Print one JSON object (detections, audio_seconds, windows, real_time_factor, settings, stats) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Options of `convnet speech tune`.
#[derive(Args, Debug)]
pub struct TuneArgs {
    /// A model written by `convnet speech train`; rewritten with the chosen settings.
    #[arg(long)]
    pub model: PathBuf,
    /// The Speech Commands folder the model was trained on (its validation split is used).
    #[arg(long)]
    pub data: PathBuf,
    #[command(flatten)]
    pub tuning: TuningArgs,
}

/// Options of `convnet speech evaluate`.
#[derive(Args, Debug)]
pub struct EvaluateArgs {
    /// A model written by `convnet speech train`.
    #[arg(long)]
    pub model: PathBuf,
    /// The Speech Commands folder the model was trained on.
    #[arg(long)]
    pub data: PathBuf,
    /// training, validation or testing.
    #[arg(long, default_value = "testing")]
    pub split: String,
    /// Print one JSON object (accuracy, loss, per_class, labels, matrix) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// How `train` and `tune` choose the streaming settings.
#[derive(Args, Debug)]
pub struct TuningArgs {
    /// Validation streams to tune on (0: keep TensorFlow's settings).
    #[arg(long, default_value_t = 4)]
    pub tune_streams: usize,
    /// The most wrong or false detections per minute a setting may make on them.
    #[arg(long, default_value_t = 1.0)]
    pub tune_max_false_per_minute: f64,
}

/// Options of `convnet speech make-stream`.
#[derive(Args, Debug)]
pub struct MakeStreamArgs {
    /// The Speech Commands folder (with _background_noise_).
    #[arg(long)]
    pub data: PathBuf,
    /// The WAV file to write; the word list goes next to it as `<name>.txt`.
    #[arg(long)]
    pub out: PathBuf,
    /// training, validation or testing.
    #[arg(long, default_value = "testing")]
    pub split: String,
    /// At most this many clips.
    #[arg(long)]
    pub max_clips: Option<usize>,
    /// Loudness of the background noise, as a fraction of full scale (0 to 1).
    #[arg(long, default_value_t = 0.1)]
    pub background_volume: f32,
    /// Seed of the clip order, gaps and noise.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

/// Runs a `convnet speech` command.
pub fn speech(cmd: &SpeechCmd) -> Result<()> {
    match cmd {
        SpeechCmd::Train(a) => train(a),
        SpeechCmd::Predict(a) => predict(a),
        SpeechCmd::Listen(a) => listen_cmd(a),
        SpeechCmd::MakeStream(a) => make_stream_cmd(a),
        SpeechCmd::Tune(a) => tune_cmd(a),
        SpeechCmd::Evaluate(a) => evaluate_cmd(a),
    }
}

fn data_options(a: &TrainArgs) -> DataOptions {
    let mut o = DataOptions { wanted_words: a.wanted_words.clone(), ..Default::default() };
    o.silence_percentage = a.silence_percentage;
    o.unknown_percentage = a.unknown_percentage;
    o.augmentation.time_shift_samples = (o.front_end.sample_rate as u64 * a.time_shift_ms as u64 / 1000) as usize;
    o.augmentation.background_frequency = a.background_frequency;
    o.augmentation.background_volume = a.background_volume;
    o.augmentation.speed_range = a.speed_range;
    o.augmentation.gain_db = a.gain_db;
    o.augmentation.shift_within_word = a.shift_within_word;
    o.augmentation.time_masks = a.time_masks;
    o.augmentation.time_mask_frames = a.time_mask_frames;
    o.augmentation.frequency_masks = a.frequency_masks;
    o.augmentation.frequency_mask_bins = a.frequency_mask_bins;
    o.fresh_unknown = !a.fixed_unknown;
    o.training_unknown_percentage = a.training_unknown_percentage;
    o.normalize = a.normalize;
    o
}

/// Loads a data folder and prints its warnings and sizes (the sizes on stderr when `quiet`:
/// stdout then holds only a command's JSON).
pub fn load_data(dir: &Path, options: DataOptions, quiet: bool) -> Result<SpeechCommands> {
    let start = Instant::now();
    let data = SpeechCommands::load(dir, options).with_context(|| format!("loading {}", dir.display()))?;
    for w in data.warnings() {
        eprintln!("warning: {w}");
    }
    let sizes: Vec<String> =
        convnet::speech::Split::ALL.iter().map(|s| format!("{} {}", data.examples(*s).len(), s.name())).collect();
    let line = format!(
        "loaded {} clips, {} noise files from {} in {:.1}s: {} examples; labels {}",
        data.clips().len(),
        data.noise().len(),
        dir.display(),
        start.elapsed().as_secs_f64(),
        sizes.join(" / "),
        data.labels().join(",")
    );
    if quiet {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
    Ok(data)
}

fn train(a: &TrainArgs) -> Result<()> {
    let arch = Architecture::from_name(&a.model)?;
    crate::limits::batch("--batch-size", a.batch_size)?;
    // before loading and training, not after them
    convnet::nn::fsio::ensure_writable_dir(&a.out)
        .with_context(|| format!("cannot write to --out {}", a.out.display()))?;
    let data = load_data(&a.data, data_options(a), false)?;
    let cfg = TrainConfig {
        architecture: arch,
        steps: a.steps.clone(),
        learning_rates: a.lr.clone(),
        batch_size: a.batch_size,
        eval_step_interval: a.eval_step_interval,
        optimizer: match a.optimizer {
            OptimizerArg::Adam => OptimizerKind::Adam,
            OptimizerArg::GradientDescent => OptimizerKind::GradientDescent,
            OptimizerArg::Momentum => OptimizerKind::Momentum,
        },
        dropout_rate: a.dropout_rate,
        seed: a.seed,
        ema_decay: a.ema_decay,
    };
    let net = convnet::speech::create_model(
        arch,
        data.options().front_end.input_shape(),
        data.labels().len(),
        cfg.dropout_rate,
        cfg.seed,
    )?;
    println!("{}", net.summary());
    let ckpt = a.out.join(format!("{}.safetensors", arch.name()));
    let bar = ProgressBar::new(cfg.total_steps() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}, {per_sec}] {msg}")
            .expect("static template"),
    );
    // indicatif drops println when stdout is not a terminal; validation lines must still show
    let say = |line: String| if bar.is_hidden() { println!("{line}") } else { bar.println(line) };
    let out = convnet::speech::train(&data, &cfg, Some(&ckpt), |e| match e {
        TrainEvent::Step { step, loss, accuracy, learning_rate, .. } => {
            bar.set_position(step as u64);
            if step % 10 == 0 {
                bar.set_message(format!("lr {learning_rate:.0e} loss {loss:.4} acc {accuracy:.3}"));
            }
        }
        TrainEvent::Evaluated { point, best } => say(format!(
            "step {}: train loss {:.4} acc {:.4}, validation loss {:.4} acc {:.4}{}",
            point.step,
            point.train_loss,
            point.train_accuracy,
            point.val_loss,
            point.val_accuracy,
            if best { " (best, saved)" } else { "" }
        )),
    })?;
    bar.finish_and_clear();
    println!(
        "trained {} steps in {:.1}s ({:.2} steps/s); best validation accuracy {:.4} at step {}",
        cfg.total_steps(),
        out.seconds,
        cfg.total_steps() as f64 / out.seconds,
        out.validation.accuracy(),
        out.best_step
    );
    println!(
        "Final test accuracy = {:.4} (N={})",
        out.test.accuracy(),
        out.test.matrix.iter().flatten().sum::<usize>()
    );
    report(&out.test);
    let text = a.out.join("confusion_test.txt");
    convnet::nn::fsio::write_file_atomic(&text, out.test.to_text().as_bytes())
        .with_context(|| format!("writing {}", text.display()))?;
    let png = a.out.join("confusion_test.png");
    let counts: Vec<Vec<u64>> = out.test.matrix.iter().map(|r| r.iter().map(|&v| v as u64).collect()).collect();
    convnet::plot::plot_confusion_matrix(&png, &out.test.labels, &counts, "Speech commands: test confusion matrix")?;
    let h = &out.history;
    let written = convnet::plot::plot_history_pair(
        &a.out,
        "history",
        &h.iter().map(|p| p.train_loss).collect::<Vec<_>>(),
        &h.iter().map(|p| p.val_loss).collect::<Vec<_>>(),
        &h.iter().map(|p| p.train_accuracy).collect::<Vec<_>>(),
        &h.iter().map(|p| p.val_accuracy).collect::<Vec<_>>(),
    )?;
    let mut model = out.model;
    // the trained weights matter more than the tuning: keep TensorFlow's settings if it fails
    if let Err(e) = tune_model(&mut model, &data, &a.tuning) {
        eprintln!("warning: streaming settings not tuned, TensorFlow's are kept: {e:#}");
    }
    model.save(&ckpt).with_context(|| format!("saving {}", ckpt.display()))?;
    println!(
        "model (best validation weights): {}\nconfusion matrix: {}, {}\nhistory (one point per {} steps): {}",
        ckpt.display(),
        text.display(),
        png.display(),
        cfg.eval_step_interval,
        written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    );
    Ok(())
}

fn report(c: &Confusion) {
    println!("{:>12} {:>8} {:>6}", "label", "accuracy", "n");
    for (label, acc, n) in c.per_class() {
        println!("{label:>12} {acc:>8.3} {n:>6}");
    }
    println!("confusion matrix (rows: truth, columns: prediction)\n{}", c.to_text());
}

fn load_model(path: &Path) -> Result<SpeechModel> {
    SpeechModel::load(path).with_context(|| format!("loading {}", path.display()))
}

fn predict(a: &PredictArgs) -> Result<()> {
    let model = load_model(&a.model)?;
    let mut results = Vec::new();
    let mut said = false;
    for f in &a.files {
        let (audio, resampled) = model.read_audio(f)?;
        if resampled && !said {
            eprintln!("note: resampling input to {} Hz", model.info.front_end.sample_rate);
            said = true;
        }
        let p = model.classify(&audio, 1)?;
        let labels = &model.info.labels;
        let c = Classification::new(f, &p.probabilities, |i| labels[i].clone(), usize::from(a.top));
        if !a.json {
            let top: Vec<String> = c.top.iter().map(|s| format!("{} ({:.3})", s.label, s.probability)).collect();
            println!("{}: {}", c.file, top.join(", "));
        }
        results.push(c);
    }
    if a.json {
        print_json(&results)?;
    }
    Ok(())
}

fn listen_cmd(a: &ListenArgs) -> Result<()> {
    if let Some(path) = &a.scores {
        convnet::nn::fsio::ensure_writable_file(path).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let model = load_model(&a.model)?;
    let (audio, resampled) = model.read_audio(&a.file)?;
    if resampled {
        eprintln!("note: resampled {} to {} Hz", a.file.display(), model.info.front_end.sample_rate);
    }
    let tuned = model.info.recognizer.map(|t| t.config).unwrap_or_default();
    let cfg = RecognizerConfig {
        clip_stride_ms: a.clip_stride_ms,
        average_window_ms: a.average_window_ms.unwrap_or(tuned.average_window_ms),
        detection_threshold: a.detection_threshold.unwrap_or(tuned.detection_threshold),
        suppression_ms: a.suppression_ms.unwrap_or(tuned.suppression_ms),
        minimum_count: a.minimum_count,
    };
    let start = Instant::now();
    let heard = listen(&model, &audio, &cfg)?;
    let seconds = start.elapsed().as_secs_f64();
    let rtf = seconds / heard.audio_seconds.max(1e-9);
    if let Some(path) = &a.scores {
        write_scores(path, &model.info.labels, &heard.window_scores)?;
    }
    let scored = match &a.truth {
        Some(t) => {
            let truth = read_truth(t)?;
            let clip_ms = i64::from(model.info.front_end.clip_duration_ms);
            let (d, tol) = (&heard.detections, a.time_tolerance_ms);
            Some((
                score_detections(&truth, d, clip_ms, tol, heard.audio_seconds / 60.0),
                word_report(&truth, d, clip_ms, tol),
                position_report(&model.info.labels, &truth, &heard.window_scores, clip_ms, &POSITIONS_MS),
            ))
        }
        None => None,
    };
    if a.json {
        let v = json!({
            "detections": heard.detections,
            "audio_seconds": heard.audio_seconds,
            "windows": heard.windows,
            "real_time_factor": rtf,
            "settings": cfg,
            "stats": scored.as_ref().map(|s| &s.0),
            "words": scored.as_ref().map(|s| &s.1),
            "positions": scored.as_ref().map(|s| &s.2),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "settings: average {} ms, threshold {:.2}, suppression {} ms ({})",
        cfg.average_window_ms,
        cfg.detection_threshold,
        cfg.suppression_ms,
        if a.average_window_ms.is_some() || a.detection_threshold.is_some() || a.suppression_ms.is_some() {
            "partly from the flags"
        } else if model.info.recognizer.is_some() {
            "tuned for this model on validation streams"
        } else {
            "TensorFlow's"
        }
    );
    for d in &heard.detections {
        println!("{:>9.3}s {} ({:.3})", d.time_ms as f64 / 1000.0, d.word, d.score);
    }
    println!(
        "{} detections in {:.1}s of audio; {} windows scored in {:.2}s (real-time factor {:.4})",
        heard.detections.len(),
        heard.audio_seconds,
        heard.windows,
        seconds,
        rtf
    );
    if let Some((s, words, positions)) = scored {
        println!(
            "found {}/{} words ({:.1}%), {} wrong, {} false alarms: {:.2} false detections per minute",
            s.found,
            s.words,
            100.0 * s.found_rate(),
            s.wrong,
            s.false_alarms,
            s.false_per_minute()
        );
        print_stream_report(&words, &positions);
    }
    Ok(())
}

/// Window positions of `listen --truth`'s position table: window end minus clip end, in ms.
const POSITIONS_MS: [i64; 9] = [-400, -300, -200, -100, 0, 100, 200, 300, 400];

/// The per-word and per-position tables of `listen --truth`, as Markdown.
fn print_stream_report(words: &[WordReport], positions: &[PositionReport]) {
    println!(
        "\n| word | said | found | missed | misread as | false detections |\n| --- | --- | --- | --- | --- | --- |"
    );
    for w in words {
        let misread: Vec<String> = w.misread_as.iter().map(|(l, n)| format!("{l} {n}")).collect();
        let found =
            if w.said == 0 { "-".to_string() } else { format!("{:.1}%", 100.0 * w.found as f64 / w.said as f64) };
        println!(
            "| {} | {} | {} ({found}) | {} | {} | {} |",
            w.word,
            w.said,
            w.found,
            w.missed,
            if misread.is_empty() { "-".to_string() } else { misread.join(", ") },
            w.false_alarms
        );
    }
    let head: Vec<String> = positions.iter().map(|p| format!("{:+}", p.offset_ms)).collect();
    println!("\n| window end - clip end (ms) | {} |\n| --- |{}", head.join(" | "), " --- |".repeat(positions.len()));
    let row = |f: fn(&PositionReport) -> f64| positions.iter().map(|p| format!("{:.2}", f(p))).collect::<Vec<_>>();
    println!("| top label is the word | {} |", row(|p| p.accuracy).join(" | "));
    println!("| mean probability of the word | {} |", row(|p| p.mean_probability).join(" | "));
}

/// Writes window scores as CSV: a header `time_ms,<label>...`, then one row per window.
fn write_scores(path: &Path, labels: &[String], windows: &[WindowScores]) -> Result<()> {
    let mut out = String::with_capacity(windows.len() * labels.len() * 8);
    out.push_str("time_ms");
    for l in labels {
        out.push(',');
        out.push_str(l);
    }
    out.push('\n');
    for w in windows {
        out.push_str(&w.time_ms.to_string());
        for s in &w.scores {
            out.push_str(&format!(",{s:.5}"));
        }
        out.push('\n');
    }
    convnet::nn::fsio::write_file_atomic(path, out.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Tunes `model`'s streaming settings on `data`'s validation split (unless asked not to) and
/// prints them.
fn tune_model(model: &mut SpeechModel, data: &SpeechCommands, t: &TuningArgs) -> Result<()> {
    if t.tune_streams == 0 {
        return Ok(());
    }
    let opts = TuneOptions {
        streams: t.tune_streams,
        max_false_per_minute: t.tune_max_false_per_minute,
        ..Default::default()
    };
    let start = Instant::now();
    let tuned = tune_recognizer(model, data, &opts)?;
    let c = tuned.config;
    println!(
        "streaming settings (tuned on {:.1} min of validation streams in {:.1}s): average {} ms, threshold {:.2}, \
         suppression {} ms: found {:.1}% of the words, {:.2} false detections per minute",
        tuned.minutes,
        start.elapsed().as_secs_f64(),
        c.average_window_ms,
        c.detection_threshold,
        c.suppression_ms,
        100.0 * tuned.found_rate,
        tuned.false_per_minute
    );
    model.info.recognizer = Some(tuned);
    Ok(())
}

/// Loads `dir` with the labels, front end and feature standardisation `model` was trained
/// with (stderr only when `quiet`).
fn load_data_for(model: &SpeechModel, model_path: &Path, dir: &Path, quiet: bool) -> Result<SpeechCommands> {
    let options = DataOptions {
        wanted_words: model.info.labels.get(2..).unwrap_or_default().to_vec(),
        front_end: model.info.front_end,
        normalize: model.info.feature_norm.is_some(),
        ..DataOptions::default()
    };
    let data = load_data(dir, options, quiet)?;
    if data.labels() != model.info.labels.as_slice() {
        bail!("{} has labels {:?} but the data gives {:?}", model_path.display(), model.info.labels, data.labels());
    }
    Ok(data)
}

fn tune_cmd(a: &TuneArgs) -> Result<()> {
    let mut model = load_model(&a.model)?;
    let data = load_data_for(&model, &a.model, &a.data, false)?;
    tune_model(&mut model, &data, &a.tuning)?;
    model.save(&a.model).with_context(|| format!("saving {}", a.model.display()))
}

fn evaluate_cmd(a: &EvaluateArgs) -> Result<()> {
    let split = parse_split(&a.split)?;
    let model = load_model(&a.model)?;
    let data = load_data_for(&model, &a.model, &a.data, a.json)?;
    let c = evaluate(&model.model, data.eval_set(split)?, data.labels())?;
    let n: usize = c.matrix.iter().flatten().sum();
    if a.json {
        let per_class: Vec<_> =
            c.per_class().into_iter().map(|(l, acc, n)| json!({"label": l, "accuracy": acc, "n": n})).collect();
        let v = json!({"split": split.name(), "accuracy": c.accuracy(), "loss": c.loss, "n": n,
            "per_class": per_class, "labels": c.labels, "matrix": c.matrix});
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("{} accuracy = {:.4} (N={n}), loss {:.4}", split.name(), c.accuracy(), c.loss);
    report(&c);
    Ok(())
}

fn parse_split(name: &str) -> Result<convnet::speech::Split> {
    Ok(match name {
        "training" => convnet::speech::Split::Training,
        "validation" => convnet::speech::Split::Validation,
        "testing" => convnet::speech::Split::Testing,
        s => bail!("--split must be training, validation or testing, not `{s}`"),
    })
}

fn make_stream_cmd(a: &MakeStreamArgs) -> Result<()> {
    let split = parse_split(&a.split)?;
    let data = load_data(&a.data, DataOptions::default(), false)?;
    let opts = StreamOptions {
        split,
        background_volume: a.background_volume,
        max_clips: a.max_clips,
        seed: a.seed,
        ..Default::default()
    };
    let (audio, truth) = make_stream(&data, &opts)?;
    let rate = data.options().front_end.sample_rate;
    write_wav(&a.out, &audio, rate)?;
    let labels = a.out.with_extension("txt");
    write_truth(&labels, &truth)?;
    println!(
        "wrote {} ({:.1}s, {} clips) and {}",
        a.out.display(),
        audio.len() as f64 / rate as f64,
        truth.len(),
        labels.display()
    );
    Ok(())
}

/// TensorFlow 2.21's training speed for the `conv` model, batch 100, 2 threads, measured on the
/// development machine.
const TENSORFLOW_STEPS_PER_SEC: f64 = 1.43;

/// Options of `convnet bench speech`.
#[derive(Args, Debug)]
pub struct SpeechBenchArgs {
    /// The Speech Commands folder.
    #[arg(long)]
    pub data: PathBuf,
    /// conv, low_latency_conv, single_fc or tiny_conv.
    #[arg(long, default_value = "conv")]
    pub model: String,
    /// Timed training steps (after 2 warm-up steps).
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Clips per training step (TensorFlow's reference is measured at 100).
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// Seconds of audio for the streaming measurement.
    #[arg(long, default_value_t = 60)]
    pub stream_seconds: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `convnet bench speech`: training steps per second (data pipeline included) and the
/// streaming recogniser's real-time factor.
pub fn bench(a: &SpeechBenchArgs) -> Result<()> {
    use convnet::nn::{Adam, Loss, Metric, Targets};
    use convnet::tensor::rng::Rng;
    let arch = Architecture::from_name(&a.model)?;
    if a.steps == 0 || a.batch_size == 0 {
        bail!("--steps and --batch-size must be positive");
    }
    crate::limits::batch("--batch-size", a.batch_size)?;
    crate::limits::positive("--stream-seconds", a.stream_seconds, crate::limits::MAX_STREAM_SECONDS)?;
    let data = load_data(&a.data, DataOptions::default(), a.json)?;
    let fe = data.options().front_end;
    let mut net = convnet::speech::create_model(arch, fe.input_shape(), data.labels().len(), 0.5, 1)?;
    net.compile(Loss::sparse_categorical_crossentropy(), Adam::new(1e-3), &[Metric::Accuracy])?;
    let mut rng = Rng::new(3);
    let (mut batch_s, mut step_s) = (Vec::new(), Vec::new());
    for i in 0..a.steps + 2 {
        let t0 = Instant::now();
        let (x, y) = data.training_batch(a.batch_size, &mut rng)?;
        let t1 = Instant::now();
        net.train_on_batch(&x, &Targets::Sparse(y))?;
        if i >= 2 {
            batch_s.push((t1 - t0).as_secs_f64());
            step_s.push(t1.elapsed().as_secs_f64());
        }
    }
    let (batch_total, step_total): (f64, f64) = (batch_s.iter().sum(), step_s.iter().sum());
    let steps_per_sec = a.steps as f64 / (batch_total + step_total);
    // streaming: a fresh model is as fast as a trained one
    let model = SpeechModel::new(
        net,
        convnet::speech::SpeechModelInfo {
            architecture: arch,
            labels: data.labels().to_vec(),
            front_end: fe,
            trained_steps: 0,
            validation_accuracy: None,
            feature_norm: data.feature_norm().cloned(),
            recognizer: None,
        },
    )?;
    let (mut audio, _) = make_stream(&data, &StreamOptions::default())?;
    let want = a.stream_seconds.max(2) * fe.sample_rate as usize;
    let base = audio.clone();
    while audio.len() < want {
        audio.extend_from_slice(&base);
    }
    audio.truncate(want);
    let t = Instant::now();
    let heard = listen(&model, &audio, &RecognizerConfig::default())?;
    let listen_s = t.elapsed().as_secs_f64();
    let rtf = listen_s / heard.audio_seconds;
    let threads = rayon::current_num_threads();
    // the reference was measured on one workload: compare only with that one
    let reference =
        (arch == Architecture::Conv && a.batch_size == 100 && threads == 2).then_some(TENSORFLOW_STEPS_PER_SEC);
    if a.json {
        // a step is batch preparation plus the update: the row times both, as steps_per_sec does
        let mut totals: Vec<f64> = batch_s.iter().zip(&step_s).map(|(b, s)| b + s).collect();
        totals.sort_by(f64::total_cmp);
        let median_s = totals[totals.len() / 2];
        let row = BenchRow {
            phase: Phase::Training,
            batch_size: a.batch_size,
            median_ms: 1e3 * median_s,
            examples_per_sec: a.batch_size as f64 / median_s,
            gflops: None,
        };
        let v = bench_json(
            "speech",
            arch.name(),
            &[row],
            json!({
                "steps": a.steps,
                "steps_per_sec": steps_per_sec,
                "batch_ms": 1e3 * batch_total / a.steps as f64,
                "train_step_ms": 1e3 * step_total / a.steps as f64,
                "tensorflow_steps_per_sec": reference,
                "stream_seconds": heard.audio_seconds,
                "windows": heard.windows,
                "real_time_factor": rtf,
            }),
        );
        return print_json(&v);
    }
    println!("speech commands `{}` model, batch {}, {threads} threads", arch.name(), a.batch_size);
    println!("| measure | value |\n| --- | --- |");
    println!("| training steps/s (data pipeline included) | {steps_per_sec:.2} |");
    println!("| batch preparation (augment + MFCC), ms/step | {:.1} |", 1e3 * batch_total / a.steps as f64);
    println!("| forward + backward + Adam, ms/step | {:.1} |", 1e3 * step_total / a.steps as f64);
    match reference {
        Some(r) => println!("| TensorFlow 2.21 (reference), steps/s | {r:.2} (convnet: {:.2}x) |", steps_per_sec / r),
        None => {
            println!("| TensorFlow 2.21 (reference) | measured for `conv`, batch 100, 2 threads only: not comparable |")
        }
    }
    println!(
        "| streaming: {:.0} s of audio, {} windows every 30 ms | {listen_s:.2} s, real-time factor {rtf:.4} |",
        heard.audio_seconds, heard.windows
    );
    Ok(())
}
