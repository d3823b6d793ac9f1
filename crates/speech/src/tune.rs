//! Chooses [`RecognizeCommands`](crate::RecognizeCommands)' averaging window, threshold and
//! suppression time for one model, on streams made from the validation split.
//!
//! Why: the best settings depend on the model. TensorFlow's defaults (500 ms, 0.7) suit a model
//! that is confident over most of the window positions at which a word is in view; a model
//! trained with larger time shifts is steadier across positions but less sure of itself, and
//! wants a longer average with a lower threshold. Tuning on validation streams (never the test
//! split) keeps the choice honest, and storing the result in the model file lets `listen` use it
//! without flags.

use serde::{Deserialize, Serialize};

use crate::dataset::SpeechCommands;
use crate::error::{Result, SpeechError};
use crate::recognize::{RecognizerConfig, TruthWord, WindowScores, recognize, score_detections, window_scores};
use crate::speech_model::SpeechModel;
use crate::split::Split;
use crate::stream_test::{StreamOptions, make_stream};

/// What to search and what to accept.
#[derive(Clone, Debug, PartialEq)]
pub struct TuneOptions {
    /// Validation streams to build (each another order, gap pattern and noise file).
    pub streams: usize,
    /// Seed of the first stream; the others follow it.
    pub seed: u64,
    /// The most wrong-plus-false detections per minute a setting may make on them.
    pub max_false_per_minute: f64,
    /// Averaging spans tried (ms).
    pub average_window_ms: Vec<u32>,
    /// Detection thresholds tried.
    pub detection_threshold: Vec<f32>,
    /// Suppression times tried (ms).
    pub suppression_ms: Vec<u32>,
    /// A detection counts for a word whose clip ends within this many ms of it.
    pub time_tolerance_ms: i64,
}

impl Default for TuneOptions {
    fn default() -> Self {
        TuneOptions {
            streams: 4,
            seed: 1000,
            max_false_per_minute: 1.0,
            average_window_ms: vec![250, 350, 500, 750, 1000],
            detection_threshold: (8..=18).map(|i| i as f32 * 0.05).collect(),
            suppression_ms: vec![500, 1000],
            time_tolerance_ms: 750,
        }
    }
}

/// The chosen settings with how they did on the validation streams.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TunedRecognizer {
    /// The settings.
    pub config: RecognizerConfig,
    /// Share of the streams' wanted words found.
    pub found_rate: f64,
    /// Wrong and false detections per minute.
    pub false_per_minute: f64,
    /// Minutes of validation audio behind the figures.
    pub minutes: f64,
}

/// A stream's words with its window scores.
#[derive(Clone, Debug)]
pub struct ScoredStream {
    /// The words in it.
    pub truth: Vec<TruthWord>,
    /// Every window's scores.
    pub windows: Vec<WindowScores>,
    /// Its length in minutes.
    pub minutes: f64,
}

/// Scores `model` on `opts.streams` validation streams of `data` and returns [`choose`]'s
/// setting. Errors when the validation split has no clips or no setting fits the budget.
pub fn tune_recognizer(model: &SpeechModel, data: &SpeechCommands, opts: &TuneOptions) -> Result<TunedRecognizer> {
    let rate = f64::from(model.info.front_end.sample_rate);
    let mut streams = Vec::with_capacity(opts.streams);
    for i in 0..opts.streams.max(1) {
        let stream_opts = StreamOptions { split: Split::Validation, seed: opts.seed + i as u64, ..Default::default() };
        let (samples, truth) = make_stream(data, &stream_opts)?;
        let windows = window_scores(model, &samples, RecognizerConfig::default().clip_stride_ms)?;
        streams.push(ScoredStream { truth, windows, minutes: samples.len() as f64 / rate / 60.0 });
    }
    choose(&model.info.labels, i64::from(model.info.front_end.clip_duration_ms), &streams, opts)
}

/// The setting that finds the most words of `streams` within the false-detection budget (ties:
/// fewer false detections, then the setting nearest TensorFlow's defaults). `clip_ms` is the
/// length of the clips placed in the streams.
pub fn choose(
    labels: &[String],
    clip_ms: i64,
    streams: &[ScoredStream],
    opts: &TuneOptions,
) -> Result<TunedRecognizer> {
    let base = RecognizerConfig::default();
    let mut best: Option<(TunedRecognizer, f64)> = None;
    for &average_window_ms in &opts.average_window_ms {
        for &detection_threshold in &opts.detection_threshold {
            for &suppression_ms in &opts.suppression_ms {
                let config = RecognizerConfig { average_window_ms, detection_threshold, suppression_ms, ..base };
                let (mut words, mut found, mut bad, mut minutes) = (0, 0, 0, 0.0);
                for s in streams {
                    let detections = recognize(labels, &s.windows, &config)?;
                    let stats = score_detections(&s.truth, &detections, clip_ms, opts.time_tolerance_ms, s.minutes);
                    words += stats.words;
                    found += stats.found;
                    bad += stats.wrong + stats.false_alarms;
                    minutes += s.minutes;
                }
                let tuned = TunedRecognizer {
                    config,
                    found_rate: found as f64 / words.max(1) as f64,
                    false_per_minute: bad as f64 / f64::max(minutes, 1e-9),
                    minutes,
                };
                if tuned.false_per_minute > opts.max_false_per_minute {
                    continue;
                }
                let distance = (f64::from(average_window_ms) / f64::from(base.average_window_ms)).ln().abs()
                    + f64::from((detection_threshold - base.detection_threshold).abs())
                    + (f64::from(suppression_ms) / f64::from(base.suppression_ms)).ln().abs();
                let key = |t: &TunedRecognizer, d: f64| (t.found_rate, -t.false_per_minute, -d);
                if best.as_ref().is_none_or(|(b, d)| key(&tuned, distance) > key(b, *d)) {
                    best = Some((tuned, distance));
                }
            }
        }
    }
    best.map(|(t, _)| t).ok_or_else(|| {
        SpeechError::options(format!(
            "no recogniser setting stays within {} false detections per minute on the validation streams",
            opts.max_false_per_minute
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<String> {
        ["_silence_", "_unknown_", "yes", "no"].iter().map(|s| s.to_string()).collect()
    }

    /// A stream of `n` words "yes" (clip starts 3 s apart) whose windows score `yes` at
    /// `p` for 600 ms after each clip has fully come into view, and silence elsewhere;
    /// `spikes` adds a 90 ms burst of "no" at 0.9 in the middle of each gap.
    fn stream(n: usize, p: f32, spikes: bool) -> ScoredStream {
        let mut windows = Vec::new();
        let truth: Vec<TruthWord> =
            (0..n).map(|i| TruthWord { word: "yes".into(), start_ms: 1000 + 3000 * i as i64 }).collect();
        let end = 1000 + 3000 * n as i64 + 1000;
        for t in (1000..end).step_by(30) {
            let mut s = vec![0.9, 0.04, 0.03, 0.03];
            let in_word = truth.iter().any(|w| t >= w.start_ms + 1000 && t < w.start_ms + 1600);
            let in_spike = truth.iter().any(|w| t >= w.start_ms + 2400 && t < w.start_ms + 2490);
            if in_word {
                s = vec![1.0 - p - 0.02, 0.02, p, 0.0];
            } else if spikes && in_spike {
                s = vec![0.05, 0.03, 0.02, 0.9];
            }
            windows.push(WindowScores { time_ms: t, scores: s });
        }
        ScoredStream { truth, windows, minutes: (end as f64) / 60_000.0 }
    }

    #[test]
    fn a_hesitant_model_gets_a_lower_threshold_than_tensorflows() {
        let streams = [stream(10, 0.6, false)];
        // TensorFlow's defaults miss every word: the average never passes 0.7
        let tf = recognize(&labels(), &streams[0].windows, &RecognizerConfig::default()).unwrap();
        assert!(tf.is_empty());
        let t = choose(&labels(), 1000, &streams, &TuneOptions::default()).unwrap();
        assert_eq!(t.found_rate, 1.0);
        assert_eq!(t.false_per_minute, 0.0);
        assert!(t.config.detection_threshold < 0.6, "{:?}", t.config);
    }

    #[test]
    fn short_spikes_are_averaged_away_within_the_budget() {
        let streams = [stream(10, 0.95, true)];
        // with a short average and a low threshold every spike would be a false detection
        let twitchy = RecognizerConfig { average_window_ms: 100, detection_threshold: 0.4, ..Default::default() };
        assert_eq!(recognize(&labels(), &streams[0].windows, &twitchy).unwrap().len(), 20);
        let t = choose(&labels(), 1000, &streams, &TuneOptions::default()).unwrap();
        assert_eq!((t.found_rate, t.false_per_minute), (1.0, 0.0), "{t:?}");
        // the nearest such setting to TensorFlow's is TensorFlow's own
        assert_eq!(t.config, RecognizerConfig::default());
    }

    #[test]
    fn no_setting_within_the_budget_is_an_error() {
        let mut s = stream(3, 0.95, true);
        s.truth.clear();
        let opts = TuneOptions { max_false_per_minute: 0.0, average_window_ms: vec![250], ..Default::default() };
        // every word is now a false detection and every setting fires on some
        assert!(choose(&labels(), 1000, &[s], &opts).is_err());
    }
}
