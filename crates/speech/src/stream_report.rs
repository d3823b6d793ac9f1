//! Where a streaming run goes wrong: per-word results ([`word_report`]) and the true word's
//! score by window position ([`position_report`]).
//!
//! Why: one found-rate and one false-detection rate say that a model falls short, not where.
//! The per-word table separates words that are never reported from words that are misread as
//! another and from words that fire on fillers or noise; the position profile shows whether a
//! word is recognised only when centred in the window (a narrow plateau, which the averaging
//! in [`crate::RecognizeCommands`] then cannot lift over its threshold) or over the whole span
//! in which it is in view.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::recognize::{Detection, Outcome, TruthWord, WindowScores, match_detections};

/// The streaming result of one wanted word.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WordReport {
    /// The label.
    pub word: String,
    /// Times it is said in the stream.
    pub said: usize,
    /// Of them, reported with this label.
    pub found: usize,
    /// Of them, reported as another wanted word: `(reported label, count)`, most first.
    pub misread_as: Vec<(String, usize)>,
    /// Of them, never reported (`said - found - misread`).
    pub missed: usize,
    /// Detections of this label with no word nearby or on a filler word.
    pub false_alarms: usize,
}

/// One [`WordReport`] per label that is said or reported in the stream, in label order.
/// Detections are matched as [`crate::score_detections`] matches them.
pub fn word_report(truth: &[TruthWord], detections: &[Detection], clip_ms: i64, tolerance_ms: i64) -> Vec<WordReport> {
    #[derive(Default)]
    struct Tally {
        said: usize,
        found: usize,
        misread: BTreeMap<String, usize>,
        false_alarms: usize,
    }
    let mut by_word: BTreeMap<&str, Tally> = BTreeMap::new();
    for t in truth.iter().filter(|t| !t.word.starts_with('_')) {
        by_word.entry(&t.word).or_default().said += 1;
    }
    for (d, o) in detections.iter().zip(match_detections(truth, detections, clip_ms, tolerance_ms)) {
        match o {
            Outcome::Found(i) => by_word.entry(&truth[i].word).or_default().found += 1,
            Outcome::Wrong(i) => {
                *by_word.entry(&truth[i].word).or_default().misread.entry(d.word.clone()).or_default() += 1
            }
            Outcome::False(_) => by_word.entry(&d.word).or_default().false_alarms += 1,
        }
    }
    by_word
        .into_iter()
        .map(|(word, t)| {
            let misread: usize = t.misread.values().sum();
            let mut misread_as: Vec<(String, usize)> = t.misread.into_iter().collect();
            misread_as.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            WordReport {
                word: word.to_string(),
                said: t.said,
                found: t.found,
                misread_as,
                missed: t.said - t.found - misread,
                false_alarms: t.false_alarms,
            }
        })
        .collect()
}

/// The true word's score at one window position.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PositionReport {
    /// Window end minus the end of the word's clip, in ms (0: the clip fills the window).
    pub offset_ms: i64,
    /// Windows scored at this position (one per wanted word that has one).
    pub windows: usize,
    /// Share of them whose top label is the word.
    pub accuracy: f64,
    /// Mean probability of the word.
    pub mean_probability: f64,
}

/// For every wanted word of `truth` (with a label in `labels`) and every offset, the window
/// whose end lies nearest `start + clip_ms + offset`; words with no window within one hop of
/// that time are left out at that offset. `windows` must be in time order, as
/// [`crate::window_scores`] returns them.
pub fn position_report(
    labels: &[String],
    truth: &[TruthWord],
    windows: &[WindowScores],
    clip_ms: i64,
    offsets_ms: &[i64],
) -> Vec<PositionReport> {
    let hop = match windows {
        [a, b, ..] => (b.time_ms - a.time_ms).max(1),
        _ => 1,
    };
    offsets_ms
        .iter()
        .map(|&offset_ms| {
            let (mut n, mut right, mut prob) = (0usize, 0usize, 0.0f64);
            for t in truth.iter().filter(|t| !t.word.starts_with('_')) {
                let Some(k) = labels.iter().position(|l| *l == t.word) else { continue };
                let at = t.start_ms + clip_ms + offset_ms;
                let i = windows.partition_point(|w| w.time_ms < at);
                let nearest = [i.checked_sub(1), Some(i)]
                    .into_iter()
                    .flatten()
                    .filter_map(|j| windows.get(j))
                    .min_by_key(|w| (w.time_ms - at).abs());
                let Some(w) = nearest.filter(|w| (w.time_ms - at).abs() <= hop) else { continue };
                let top = w.scores.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(j, _)| j);
                n += 1;
                right += usize::from(top == Some(k));
                prob += f64::from(w.scores[k]);
            }
            let share = |v: f64| if n == 0 { 0.0 } else { v / n as f64 };
            PositionReport { offset_ms, windows: n, accuracy: share(right as f64), mean_probability: share(prob) }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(w: &str, start_ms: i64) -> TruthWord {
        TruthWord { word: w.into(), start_ms }
    }

    fn det(w: &str, time_ms: i64) -> Detection {
        Detection { word: w.into(), time_ms, score: 0.9 }
    }

    #[test]
    fn words_are_split_into_found_misread_missed_and_false() {
        let truth = vec![
            word("yes", 1000),
            word("no", 4000),
            word("yes", 7000),
            word("_unknown_", 10_000),
            word("no", 13_000),
            word("no", 16_000),
        ];
        // yes found; no misread as go; second yes missed; filler read as yes; no found;
        // last no misread as go; a go out of nowhere
        let dets = [det("yes", 2100), det("go", 5000), det("yes", 11_000), det("no", 14_100), det("go", 17_000)];
        let mut more = dets.to_vec();
        more.push(det("go", 30_000));
        let r = word_report(&truth, &more, 1000, 750);
        let get = |w: &str| r.iter().find(|x| x.word == w).unwrap().clone();
        assert_eq!(r.iter().map(|x| x.word.as_str()).collect::<Vec<_>>(), ["go", "no", "yes"]);
        assert_eq!(
            get("yes"),
            WordReport { word: "yes".into(), said: 2, found: 1, misread_as: vec![], missed: 1, false_alarms: 1 }
        );
        assert_eq!(
            get("no"),
            WordReport {
                word: "no".into(),
                said: 3,
                found: 1,
                misread_as: vec![("go".into(), 2)],
                missed: 0,
                false_alarms: 0
            }
        );
        assert_eq!((get("go").said, get("go").found, get("go").false_alarms), (0, 0, 1));
        // the totals agree with score_detections
        let s = crate::score_detections(&truth, &more, 1000, 750, 1.0);
        let found: usize = r.iter().map(|x| x.found).sum();
        let misread: usize = r.iter().flat_map(|x| &x.misread_as).map(|m| m.1).sum();
        let false_alarms: usize = r.iter().map(|x| x.false_alarms).sum();
        assert_eq!((found, misread, false_alarms), (s.found, s.wrong, s.false_alarms));
    }

    #[test]
    fn positions_read_the_window_nearest_each_offset() {
        let labels: Vec<String> = ["_silence_", "_unknown_", "yes", "no"].iter().map(|s| s.to_string()).collect();
        // two words; windows every 30 ms; "yes" on top (0.8) only while the window end is
        // within 200 ms after its clip's end, 0.3 otherwise; "no" never on top
        let truth = vec![word("yes", 1000), word("no", 5000), word("_unknown_", 8000)];
        let windows: Vec<WindowScores> = (980..10_000)
            .step_by(30)
            .map(|t| {
                let yes_end = 2000;
                let p = if (yes_end..=yes_end + 200).contains(&t) { 0.8 } else { 0.3 };
                WindowScores { time_ms: t, scores: vec![1.0 - p - 0.1, 0.0, p, 0.1] }
            })
            .collect();
        let r = position_report(&labels, &truth, &windows, 1000, &[-300, 0, 100, 400, 20_000]);
        assert_eq!(r.len(), 5);
        // offset 0 (2000 is a window end): yes right (0.8), no wrong (silence 0.6 on top)
        assert_eq!(r[1].windows, 2);
        assert!((r[1].accuracy - 0.5).abs() < 1e-12, "{:?}", r[1]);
        assert!((r[1].mean_probability - (0.8 + 0.1) / 2.0).abs() < 1e-6, "{:?}", r[1]);
        // +100: nearest window end 2110 is inside the plateau
        assert!((r[2].accuracy - 0.5).abs() < 1e-12);
        // -300 and +400 fall outside it
        assert_eq!((r[0].accuracy, r[3].accuracy), (0.0, 0.0));
        assert!((r[0].mean_probability - (0.3 + 0.1) / 2.0).abs() < 1e-6);
        // past the end of the stream: no window within a hop
        assert_eq!((r[4].windows, r[4].accuracy), (0, 0.0));
    }
}
