//! Who speaks each spoken-digit clip, and splits that keep a speaker on one side.
//!
//! A spoken-digit folder has 10 clips per speaker (`<d>_<nnn>.wav`, one per digit), so a random
//! file split puts 9 of a voice's digits in training and scores the 10th: it measures how well
//! the model knows the voices it was trained on, not how it does on a new one. The shared sets
//! name each clip's synthetic speaker in `speech_speakers_digits.tsv` (columns `set`, `nnn`,
//! `speakerhash`, ...; `set` is `<folder>/<split>` such as `SoundDigit/train`).
//! [`speaker_folds`] and [`speaker_holdout`] assign whole speakers to folds or to validation.
//!
//! The assignment orders speakers by a seeded hash of their name rather than by a random
//! generator, so it depends only on the seed and the set of names (not on file order), and the
//! crate needs no RNG of its own.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The file name [`SpeakerTable::find_near`] looks for.
pub const SPEAKER_TABLE_NAME: &str = "speech_speakers_digits.tsv";

/// Errors of the speaker table and the speaker splits.
#[derive(Debug, thiserror::Error)]
pub enum SpeakerError {
    /// The table could not be read.
    #[error("{}: cannot read the speaker table: {source}", path.display())]
    Io {
        /// The table.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A line of the table is malformed.
    #[error("{}:{line}: {reason} (expected tab-separated set, nnn, speakerhash, ...)", path.display())]
    BadLine {
        /// The table.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Fewer distinct speakers than folds (or than a train/validation split needs).
    #[error("{speakers} distinct speakers cannot fill {folds} speaker-disjoint folds")]
    TooFewSpeakers {
        /// Distinct speakers.
        speakers: usize,
        /// Folds asked for.
        folds: usize,
    },
    /// A fraction outside (0, 1) or a fold count below 2.
    #[error("invalid split: {0}")]
    BadSplit(String),
}

/// `(set, nnn) -> speaker` from `speech_speakers_digits.tsv`.
#[derive(Debug, Clone, Default)]
pub struct SpeakerTable {
    map: HashMap<(String, String), String>,
}

impl SpeakerTable {
    /// Reads a table file.
    pub fn load(path: impl AsRef<Path>) -> Result<SpeakerTable, SpeakerError> {
        let path = path.as_ref();
        let text =
            std::fs::read_to_string(path).map_err(|source| SpeakerError::Io { path: path.to_path_buf(), source })?;
        Self::parse(&text, path)
    }

    /// Parses the table's text; `path` only names it in errors. A first line starting with
    /// `set` is the header.
    pub fn parse(text: &str, path: &Path) -> Result<SpeakerTable, SpeakerError> {
        let mut map = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || (i == 0 && line.starts_with("set\t")) {
                continue;
            }
            let bad =
                |reason: &str| SpeakerError::BadLine { path: path.to_path_buf(), line: i + 1, reason: reason.into() };
            let mut cols = line.split('\t');
            let (Some(set), Some(nnn), Some(speaker)) = (cols.next(), cols.next(), cols.next()) else {
                return Err(bad("fewer than three columns"));
            };
            if set.is_empty() || nnn.is_empty() || speaker.is_empty() {
                return Err(bad("an empty column"));
            }
            if map.insert((set.to_string(), nnn.to_string()), speaker.to_string()).is_some() {
                return Err(bad(&format!("{set} {nnn} is listed twice")));
            }
        }
        Ok(SpeakerTable { map })
    }

    /// The table file in `data_dir`, its parent or its grandparent (the shared layout keeps it
    /// in `datasets/`, beside `SoundDigit/`). Relative folders such as `.` are resolved first.
    pub fn find_near(data_dir: &Path) -> Option<PathBuf> {
        let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
        dir.ancestors().take(3).map(|d| d.join(SPEAKER_TABLE_NAME)).find(|p| p.is_file())
    }

    /// Number of clips listed.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the table lists no clip.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The speaker of `.../<folder>/<split>/<d>_<nnn>.wav`, looked up as (`<folder>/<split>`, `nnn`);
    /// a relative path that lacks the folders (`./train/3_000.wav`) is resolved on disk first.
    pub fn speaker_of(&self, file: &Path) -> Option<&str> {
        self.lookup(file).or_else(|| self.lookup(&std::fs::canonicalize(file).ok()?))
    }

    fn lookup(&self, file: &Path) -> Option<&str> {
        let stem = file.file_stem()?.to_str()?;
        let nnn = stem.split_once('_')?.1;
        let split_dir = file.parent()?;
        let split = split_dir.file_name()?.to_str()?;
        let folder = split_dir.parent()?.file_name()?.to_str()?;
        self.map.get(&(format!("{folder}/{split}"), nnn.to_string())).map(String::as_str)
    }
}

/// SplitMix64's finaliser: a well-mixed 64-bit hash of `x`.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Distinct speakers with their clip counts, in the seed's order.
fn seeded_speakers<'a>(speakers: &[&'a str], seed: u64) -> Vec<(&'a str, usize)> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for s in speakers {
        *counts.entry(s).or_default() += 1;
    }
    let key = |s: &str| {
        // FNV-1a of the name, then mixed with the seed
        let h = s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
        mix(h ^ mix(seed))
    };
    let mut list: Vec<_> = counts.into_iter().collect();
    list.sort_by_key(|&(s, _)| (key(s), s));
    list
}

/// Speaker-disjoint `k`-fold assignment: `speakers[i]` names the speaker of item `i`; the result
/// gives each item's fold (0..k). Every speaker's items share one fold; speakers go, in the
/// seed's order and largest first, to the fold with the fewest items so far, so folds differ in
/// size by at most one speaker's clips. Deterministic for a seed.
pub fn speaker_folds(speakers: &[&str], k: usize, seed: u64) -> Result<Vec<usize>, SpeakerError> {
    if k < 2 {
        return Err(SpeakerError::BadSplit(format!("cross-validation needs at least 2 folds, got {k}")));
    }
    let mut order = seeded_speakers(speakers, seed);
    if order.len() < k {
        return Err(SpeakerError::TooFewSpeakers { speakers: order.len(), folds: k });
    }
    // stable: equal sizes keep the seeded order
    order.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
    let mut sizes = vec![0usize; k];
    let mut fold_of: HashMap<&str, usize> = HashMap::new();
    for (s, n) in order {
        let f = (0..k).min_by_key(|&f| (sizes[f], f)).unwrap_or(0);
        sizes[f] += n;
        fold_of.insert(s, f);
    }
    Ok(speakers.iter().map(|s| fold_of[s]).collect())
}

/// A speaker-disjoint validation hold-out: `round(fraction * speakers)` speakers (at least one,
/// and at least one left for training), chosen by the seed; `true` marks a validation item.
pub fn speaker_holdout(speakers: &[&str], fraction: f32, seed: u64) -> Result<Vec<bool>, SpeakerError> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(SpeakerError::BadSplit(format!("the validation fraction must be in (0, 1), got {fraction}")));
    }
    let order = seeded_speakers(speakers, seed);
    if order.len() < 2 {
        return Err(SpeakerError::TooFewSpeakers { speakers: order.len(), folds: 2 });
    }
    let n_val = ((order.len() as f32 * fraction).round() as usize).clamp(1, order.len() - 1);
    let val: std::collections::HashSet<&str> = order[..n_val].iter().map(|&(s, _)| s).collect();
    Ok(speakers.iter().map(|s| val.contains(s)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// `n` speakers with 10 clips each, plus one with 3 (unequal groups).
    fn synthetic(n: usize) -> Vec<String> {
        let mut v: Vec<String> = (0..n * 10).map(|i| format!("spk{}", i % n)).collect();
        v.extend((0..3).map(|_| "odd".to_string()));
        v
    }

    #[test]
    fn folds_are_speaker_disjoint_complete_and_balanced() {
        let names = synthetic(22);
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        for seed in [0, 1, 42] {
            let folds = speaker_folds(&refs, 5, seed).unwrap();
            assert_eq!(folds.len(), refs.len(), "every item gets exactly one fold");
            let mut fold_of: HashMap<&str, usize> = HashMap::new();
            for (s, &f) in refs.iter().zip(&folds) {
                assert!(f < 5);
                assert_eq!(*fold_of.entry(s).or_insert(f), f, "speaker {s} in two folds");
            }
            let sizes: Vec<usize> = (0..5).map(|f| folds.iter().filter(|&&x| x == f).count()).collect();
            assert_eq!(sizes.iter().sum::<usize>(), refs.len());
            assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 10, "{sizes:?}");
            assert_eq!(folds, speaker_folds(&refs, 5, seed).unwrap(), "deterministic for a seed");
        }
        assert_ne!(speaker_folds(&refs, 5, 1).unwrap(), speaker_folds(&refs, 5, 2).unwrap());
    }

    #[test]
    fn folds_ignore_item_order() {
        let names = synthetic(7);
        let mut refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let a = speaker_folds(&refs, 3, 9).unwrap();
        let fold_a: HashMap<&str, usize> = refs.iter().copied().zip(a).collect();
        refs.reverse();
        let b = speaker_folds(&refs, 3, 9).unwrap();
        assert!(refs.iter().zip(&b).all(|(s, f)| fold_a[s] == *f));
    }

    #[test]
    fn holdout_keeps_speakers_whole() {
        let names = synthetic(20);
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let val = speaker_holdout(&refs, 0.2, 42).unwrap();
        let val_spk: HashSet<&str> = refs.iter().zip(&val).filter(|p| *p.1).map(|p| *p.0).collect();
        let train_spk: HashSet<&str> = refs.iter().zip(&val).filter(|p| !*p.1).map(|p| *p.0).collect();
        assert!(val_spk.is_disjoint(&train_spk));
        assert_eq!(val_spk.len(), 4, "round(0.2 * 21 speakers)");
        assert_eq!(val, speaker_holdout(&refs, 0.2, 42).unwrap());
    }

    #[test]
    fn bad_splits_are_errors() {
        let refs = ["a", "a", "b"];
        assert!(matches!(speaker_folds(&refs, 3, 0), Err(SpeakerError::TooFewSpeakers { speakers: 2, folds: 3 })));
        assert!(matches!(speaker_folds(&refs, 1, 0), Err(SpeakerError::BadSplit(_))));
        assert!(matches!(speaker_holdout(&refs, 1.0, 0), Err(SpeakerError::BadSplit(_))));
        assert!(matches!(speaker_holdout(&["a"], 0.5, 0), Err(SpeakerError::TooFewSpeakers { .. })));
    }

    #[test]
    fn table_parses_and_looks_up_by_folder_and_number() {
        let text = "set\tnnn\tspeakerhash\tspeaker_id\tnoise\nSoundDigit/train\t000\tcbf8\tx\tn\nSoundDigit/test\t000\t3f7e\ty\tn\n";
        let t = SpeakerTable::parse(text, Path::new("t.tsv")).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t.speaker_of(Path::new("/d/SoundDigit/train/7_000.wav")), Some("cbf8"));
        assert_eq!(t.speaker_of(Path::new("/d/SoundDigit/test/7_000.wav")), Some("3f7e"));
        assert_eq!(t.speaker_of(Path::new("/d/SoundDigit/train/7_001.wav")), None);
        let e = SpeakerTable::parse("set\tnnn\tspeakerhash\nA/train\t000\n", Path::new("t.tsv")).unwrap_err();
        assert!(matches!(e, SpeakerError::BadLine { line: 2, .. }), "{e}");
        let dup = "A/train\t000\tx\nA/train\t000\ty\n";
        assert!(matches!(SpeakerTable::parse(dup, Path::new("t")), Err(SpeakerError::BadLine { line: 2, .. })));
    }

    /// The shared sets (`CONVNET_SHARED`): every clip has a speaker, and 5 folds over train and
    /// test together keep each speaker in one fold.
    #[test]
    fn shared_sets_split_speaker_disjointly() {
        let Some(shared) = shared_dir() else {
            return;
        };
        let datasets = shared.join("datasets");
        let table = SpeakerTable::load(SpeakerTable::find_near(&datasets.join("SoundDigit")).unwrap()).unwrap();
        for set in ["SoundDigit", "SoundDigitZH"] {
            let mut files = Vec::new();
            for split in ["train", "test"] {
                for e in std::fs::read_dir(datasets.join(set).join(split)).unwrap() {
                    files.push(e.unwrap().path());
                }
            }
            files.sort();
            let speakers: Vec<&str> = files.iter().map(|f| table.speaker_of(f).expect("every clip listed")).collect();
            assert_eq!(speakers.iter().collect::<HashSet<_>>().len(), 22, "{set}: 20 train + 2 test speakers");
            let folds = speaker_folds(&speakers, 5, 42).unwrap();
            let mut fold_of: HashMap<&str, usize> = HashMap::new();
            for (s, &f) in speakers.iter().zip(&folds) {
                assert_eq!(*fold_of.entry(s).or_insert(f), f, "{set}: speaker {s} in two folds");
            }
            for f in 0..5 {
                let n = folds.iter().filter(|&&x| x == f).count();
                assert!((40..=50).contains(&n), "{set}: fold {f} has {n} clips");
            }
        }
    }

    /// `CONVNET_SHARED`, as the other fixture tests; skips when unset unless
    /// `CONVNET_REQUIRE_FIXTURES=1`.
    fn shared_dir() -> Option<PathBuf> {
        match std::env::var_os("CONVNET_SHARED") {
            Some(s) => Some(PathBuf::from(s)),
            None => {
                assert!(
                    std::env::var("CONVNET_REQUIRE_FIXTURES").as_deref() != Ok("1"),
                    "CONVNET_REQUIRE_FIXTURES=1 but CONVNET_SHARED is not set"
                );
                eprintln!("CONVNET_SHARED is not set: skipping the speaker-split test on the shared sets");
                None
            }
        }
    }
}
