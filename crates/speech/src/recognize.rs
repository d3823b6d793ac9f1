//! Streaming keyword recognition, as TensorFlow's `RecognizeCommands`: a one-clip window slides
//! over long audio every `clip_stride_ms`; each window's label probabilities are averaged over
//! the last `average_window_ms`; a word is reported when the average's top label scores above
//! `detection_threshold`, differs from the previously reported label, and the previous report
//! (unless it was `_silence_`) is more than `suppression_ms` old. Averages over fewer than
//! `minimum_count` windows (or a quarter of the averaging window) report nothing.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::dataset::SILENCE_LABEL;
use crate::error::{Result, SpeechError};
use crate::speech_model::SpeechModel;

/// Detection settings, named as the example's flags.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecognizerConfig {
    /// Hop between windows in ms (TensorFlow's test uses 30).
    pub clip_stride_ms: u32,
    /// Averaging span in ms (500).
    pub average_window_ms: u32,
    /// Smallest averaged score that counts (0.7).
    pub detection_threshold: f32,
    /// Quiet time after a report in ms (500).
    pub suppression_ms: u32,
    /// Fewest windows in an average (3).
    pub minimum_count: usize,
}

impl Default for RecognizerConfig {
    fn default() -> Self {
        RecognizerConfig {
            clip_stride_ms: 30,
            average_window_ms: 500,
            detection_threshold: 0.7,
            suppression_ms: 500,
            minimum_count: 3,
        }
    }
}

/// One result of [`RecognizeCommands::process`].
#[derive(Clone, Debug, PartialEq)]
pub struct Recognition {
    /// Top label of the average (or the previous label while too few results are in).
    pub label: usize,
    /// Its averaged score (0 while too few results are in).
    pub score: f32,
    /// Whether this is a new detection.
    pub is_new_command: bool,
}

/// The smoothing state machine.
#[derive(Clone, Debug)]
pub struct RecognizeCommands {
    labels: Vec<String>,
    cfg: RecognizerConfig,
    results: VecDeque<(i64, Vec<f32>)>,
    previous_label: Option<usize>,
    previous_time: Option<i64>,
}

impl RecognizeCommands {
    /// A recogniser over `labels`.
    pub fn new(labels: Vec<String>, cfg: RecognizerConfig) -> RecognizeCommands {
        RecognizeCommands { labels, cfg, results: VecDeque::new(), previous_label: None, previous_time: None }
    }

    /// Adds the scores of the window ending at `time_ms`. Errors: wrong score count, or
    /// time going backwards.
    pub fn process(&mut self, scores: &[f32], time_ms: i64) -> Result<Recognition> {
        if scores.len() != self.labels.len() {
            return Err(SpeechError::options(format!("{} scores for {} labels", scores.len(), self.labels.len())));
        }
        if self.results.back().is_some_and(|(t, _)| time_ms < *t) {
            return Err(SpeechError::options(format!("time went backwards to {time_ms} ms")));
        }
        self.results.push_back((time_ms, scores.to_vec()));
        let limit = time_ms - i64::from(self.cfg.average_window_ms);
        while self.results.front().is_some_and(|(t, _)| *t < limit) {
            self.results.pop_front();
        }
        let count = self.results.len();
        let span = time_ms - self.results.front().map_or(time_ms, |(t, _)| *t);
        if count < self.cfg.minimum_count || (span as f64) < f64::from(self.cfg.average_window_ms) / 4.0 {
            return Ok(Recognition { label: self.previous_label.unwrap_or(0), score: 0.0, is_new_command: false });
        }
        let mut avg = vec![0.0f32; scores.len()];
        for (_, s) in &self.results {
            for (a, v) in avg.iter_mut().zip(s) {
                *a += v / count as f32;
            }
        }
        let (top, score) = avg.iter().enumerate().fold((0, f32::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b });
        let since_last = match (self.previous_label, self.previous_time) {
            (Some(l), Some(t)) if self.labels[l] != SILENCE_LABEL => time_ms - t,
            _ => i64::MAX,
        };
        let is_new = score > self.cfg.detection_threshold
            && Some(top) != self.previous_label
            && since_last > i64::from(self.cfg.suppression_ms);
        if is_new {
            self.previous_label = Some(top);
            self.previous_time = Some(time_ms);
        }
        Ok(Recognition { label: top, score, is_new_command: is_new })
    }
}

/// A word heard in a stream.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Detection {
    /// The label.
    pub word: String,
    /// End of the window in which it was detected, in ms from the start.
    pub time_ms: i64,
    /// Averaged score.
    pub score: f32,
}

/// The result of [`listen`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Listening {
    /// Detected wanted words (labels starting with `_` are not reported).
    pub detections: Vec<Detection>,
    /// Windows scored.
    pub windows: usize,
    /// Every window's scores (for `listen --scores`; left out of the JSON form).
    #[serde(skip)]
    pub window_scores: Vec<WindowScores>,
    /// Audio length in seconds.
    pub audio_seconds: f64,
}

/// Scores of one window of a stream.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WindowScores {
    /// End of the window in ms from the start (the time [`RecognizeCommands`] sees).
    pub time_ms: i64,
    /// One probability per label, in the model's label order.
    pub scores: Vec<f32>,
}

/// Scores every clip-long window of `samples` (at the model's rate), one every
/// `clip_stride_ms`, in batches. What [`listen`] smooths; kept separate so the raw posteriors
/// can be written out to choose the recogniser's settings.
pub fn window_scores(model: &SpeechModel, samples: &[f32], clip_stride_ms: u32) -> Result<Vec<WindowScores>> {
    let fe = model.info.front_end;
    let clip = fe.desired_samples();
    let stride = (fe.sample_rate as u64 * u64::from(clip_stride_ms) / 1000) as usize;
    if stride == 0 {
        return Err(SpeechError::options("clip stride must be at least one sample"));
    }
    let starts: Vec<usize> =
        if samples.len() <= clip { vec![0] } else { (0..=samples.len() - clip).step_by(stride).collect() };
    let mut out = Vec::with_capacity(starts.len());
    for block in starts.chunks(256) {
        let windows: Vec<&[f32]> = block.iter().map(|&s| &samples[s..(s + clip).min(samples.len())]).collect();
        let scores = model.probabilities(&windows, 128)?;
        for (&start, scores) in block.iter().zip(scores) {
            let time_ms = ((start + clip) as u64 * 1000 / u64::from(fe.sample_rate)) as i64;
            out.push(WindowScores { time_ms, scores });
        }
    }
    Ok(out)
}

/// Runs [`RecognizeCommands`] over window scores in time order and keeps the new detections
/// of wanted words.
pub fn recognize(labels: &[String], windows: &[WindowScores], cfg: &RecognizerConfig) -> Result<Vec<Detection>> {
    let mut recognizer = RecognizeCommands::new(labels.to_vec(), *cfg);
    let mut detections = Vec::new();
    for w in windows {
        let r = recognizer.process(&w.scores, w.time_ms)?;
        let word = &labels[r.label];
        if r.is_new_command && !word.starts_with('_') {
            detections.push(Detection { word: word.clone(), time_ms: w.time_ms, score: r.score });
        }
    }
    Ok(detections)
}

/// Runs `model` over `samples` (at the model's rate) as a stream: [`window_scores`], then
/// [`recognize`].
pub fn listen(model: &SpeechModel, samples: &[f32], cfg: &RecognizerConfig) -> Result<Listening> {
    let audio_seconds = samples.len() as f64 / f64::from(model.info.front_end.sample_rate);
    let windows = window_scores(model, samples, cfg.clip_stride_ms)?;
    let detections = recognize(&model.info.labels, &windows, cfg)?;
    Ok(Listening { detections, windows: windows.len(), audio_seconds, window_scores: windows })
}

/// A word placed in a test stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TruthWord {
    /// Its label (`_unknown_` for filler words).
    pub word: String,
    /// Start of its clip in ms.
    pub start_ms: i64,
}

/// How well detections match the words of a stream.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StreamingStats {
    /// Wanted words in the stream.
    pub words: usize,
    /// Of them, detected with the right label.
    pub found: usize,
    /// Detections near a word but with the wrong label.
    pub wrong: usize,
    /// Detections with no word nearby (or a filler word).
    pub false_alarms: usize,
    /// Stream length in minutes.
    pub minutes: f64,
}

impl StreamingStats {
    /// Share of wanted words found.
    pub fn found_rate(&self) -> f64 {
        if self.words == 0 { 0.0 } else { self.found as f64 / self.words as f64 }
    }

    /// Wrong and false detections per minute.
    pub fn false_per_minute(&self) -> f64 {
        (self.wrong + self.false_alarms) as f64 / self.minutes.max(1e-9)
    }
}

/// How [`match_detections`] placed one detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The right label for the truth word at this index.
    Found(usize),
    /// Another wanted word's label for the (wanted) truth word at this index.
    Wrong(usize),
    /// A false detection: no unused word nearby (`None`) or a filler word (its index).
    False(Option<usize>),
}

/// Matches detections to the stream's words: a detection belongs to a word whose clip ends
/// within `tolerance_ms` of it (the window end at which the whole clip is in view), each word
/// matched at most once, nearest first. One outcome per detection, in order.
pub fn match_detections(
    truth: &[TruthWord],
    detections: &[Detection],
    clip_ms: i64,
    tolerance_ms: i64,
) -> Vec<Outcome> {
    let mut used = vec![false; truth.len()];
    detections
        .iter()
        .map(|d| {
            let near = truth
                .iter()
                .enumerate()
                .filter(|(i, t)| !used[*i] && (d.time_ms - (t.start_ms + clip_ms)).abs() <= tolerance_ms)
                .min_by_key(|(_, t)| (d.time_ms - (t.start_ms + clip_ms)).abs());
            match near {
                Some((i, t)) if t.word == d.word => {
                    used[i] = true;
                    Outcome::Found(i)
                }
                Some((i, t)) if !t.word.starts_with('_') => {
                    used[i] = true;
                    Outcome::Wrong(i)
                }
                Some((i, _)) => Outcome::False(Some(i)),
                None => Outcome::False(None),
            }
        })
        .collect()
}

/// Counts [`match_detections`]' outcomes.
pub fn score_detections(
    truth: &[TruthWord],
    detections: &[Detection],
    clip_ms: i64,
    tolerance_ms: i64,
    minutes: f64,
) -> StreamingStats {
    let words = truth.iter().filter(|t| !t.word.starts_with('_')).count();
    let (mut found, mut wrong, mut false_alarms) = (0, 0, 0);
    for o in match_detections(truth, detections, clip_ms, tolerance_ms) {
        match o {
            Outcome::Found(_) => found += 1,
            Outcome::Wrong(_) => wrong += 1,
            Outcome::False(_) => false_alarms += 1,
        }
    }
    StreamingStats { words, found, wrong, false_alarms, minutes }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<String> {
        ["_silence_", "_unknown_", "yes", "no"].iter().map(|s| s.to_string()).collect()
    }

    fn scores(top: usize, p: f32) -> Vec<f32> {
        let mut s = vec![(1.0 - p) / 3.0; 4];
        s[top] = p;
        s
    }

    #[test]
    fn averaging_threshold_and_suppression() {
        let cfg = RecognizerConfig { average_window_ms: 100, suppression_ms: 200, ..Default::default() };
        let mut r = RecognizeCommands::new(labels(), cfg);
        let mut events = Vec::new();
        // silence, then "yes" for 300 ms, then "no" right after (suppressed), then "no" later
        let plan = [(0, 0), (300, 2), (600, 3), (700, 0), (1000, 3)];
        for t in (0..1400).step_by(30) {
            let top = plan.iter().rev().find(|(s, _)| t >= *s).unwrap().1;
            let rec = r.process(&scores(top, 0.9), t).unwrap();
            if rec.is_new_command {
                events.push((labels()[rec.label].clone(), t));
            }
        }
        let words: Vec<&str> = events.iter().map(|(w, _)| w.as_str()).collect();
        // "no" at 600 comes within 200 ms of... no: yes was detected at ~360, no at ~660 is
        // 300 ms later and allowed; the second "no" needs another label in between (silence)
        assert_eq!(words, ["_silence_", "yes", "no", "_silence_", "no"], "{events:?}");
        // the first detection waits for minimum_count results
        assert!(events[0].1 >= 60);
        // scores below the threshold never fire
        let mut quiet = RecognizeCommands::new(labels(), RecognizerConfig::default());
        for t in (0..2000).step_by(30) {
            assert!(!quiet.process(&scores(2, 0.6), t).unwrap().is_new_command);
        }
        assert!(quiet.process(&[0.5; 3], 2000).is_err());
        assert!(quiet.process(&scores(2, 0.6), 10).is_err());
    }

    #[test]
    fn suppression_blocks_quick_changes() {
        let cfg =
            RecognizerConfig { average_window_ms: 60, suppression_ms: 500, minimum_count: 1, ..Default::default() };
        let mut r = RecognizeCommands::new(labels(), cfg);
        let mut fired = Vec::new();
        for (t, top) in [(0, 2), (30, 2), (60, 2), (90, 3), (120, 3), (150, 3), (700, 3), (730, 3)] {
            if r.process(&scores(top, 0.95), t).unwrap().is_new_command {
                fired.push((top, t));
            }
        }
        // "yes" fires once its average is in; "no" is suppressed until 500 ms after it
        assert_eq!(fired.iter().map(|f| f.0).collect::<Vec<_>>(), [2, 3]);
        assert!(fired[1].1 >= 500);
    }

    #[test]
    fn detections_are_matched_once_within_tolerance() {
        let truth = vec![
            TruthWord { word: "yes".into(), start_ms: 1000 },
            TruthWord { word: "no".into(), start_ms: 4000 },
            TruthWord { word: "_unknown_".into(), start_ms: 7000 },
        ];
        let d = |w: &str, t| Detection { word: w.into(), time_ms: t, score: 0.9 };
        let dets = [d("yes", 2200), d("yes", 2400), d("up", 5100), d("go", 8000), d("no", 12000)];
        let s = score_detections(&truth, &dets, 1000, 750, 0.5);
        assert_eq!((s.words, s.found, s.wrong, s.false_alarms), (2, 1, 1, 3));
        assert_eq!(s.found_rate(), 0.5);
        assert_eq!(s.false_per_minute(), 8.0);
    }
}
