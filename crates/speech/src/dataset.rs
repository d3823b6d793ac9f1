//! The Speech Commands data set as TensorFlow's `input_data.AudioProcessor` prepares it.
//!
//! Labels are `_silence_`, `_unknown_`, then the wanted words. Every clip under
//! `<word>/*.wav` goes to a split (the shipped lists, or [`which_set`]); clips of wanted words
//! keep their word, the others ("filler" words) become `_unknown_`. Each split then gets
//! `ceil(silence_percentage % of its word clips)` silence examples and as many `_unknown_`
//! examples (`unknown_percentage`), and is shuffled with a fixed seed.
//!
//! One change from TensorFlow, on by default ([`DataOptions::fresh_unknown`]): TensorFlow picks
//! the training `_unknown_` clips once, so a run only ever sees 10 % of the wanted count out of
//! a much larger filler pool, and `_unknown_` ends up the weakest class. Here each training
//! `_unknown_` slot draws a new clip from the whole training filler pool every time it is
//! used: the proportion of `_unknown_` is TensorFlow's, the variety is the whole pool's.
//! Validation and test sets keep TensorFlow's fixed choice. The other default change is in the
//! augmentation: [`Augmentation::recommended`] adds speed and gain perturbation.
//!
//! Clips are decoded once (in parallel), resampled to the front end's rate when needed (said
//! once, in the warnings) and kept as 16-bit values — 32 KB per 1 s clip, 3.4 GB for the whole
//! v0.02 release.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use convnet_audio::{read_wav, resample};
use convnet_tensor::Tensor;
use convnet_tensor::rng::Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::augment::{Augmentation, mask_fingerprint, mix};
use crate::error::{Result, SpeechError};
use crate::front_end::{FeatureNorm, FingerprintTransform, FrontEnd, fit_length};
use crate::split::{Split, SplitLists, which_set};

/// Label of clips with no word.
pub const SILENCE_LABEL: &str = "_silence_";
/// Label of words that are not wanted.
pub const UNKNOWN_LABEL: &str = "_unknown_";
/// Folder of long background-noise recordings.
pub const BACKGROUND_NOISE_DIR: &str = "_background_noise_";
/// The example's default wanted words.
pub const DEFAULT_WANTED_WORDS: [&str; 10] = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"];
/// TensorFlow's `RANDOM_SEED` for the data index.
pub const TENSORFLOW_SEED: u64 = 59185;

/// Data-set options, named as the example's flags.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataOptions {
    /// Words to recognise.
    pub wanted_words: Vec<String>,
    /// Silence examples per split, in percent of its word clips (10).
    pub silence_percentage: f64,
    /// `_unknown_` examples per split, in percent of its word clips (10).
    pub unknown_percentage: f64,
    /// Validation share for [`which_set`] when there are no lists (10).
    pub validation_percentage: f64,
    /// Testing share for [`which_set`] when there are no lists (10).
    pub testing_percentage: f64,
    /// Training augmentation ([`Augmentation::recommended`]: TensorFlow's ±100 ms shift and
    /// noise on 80 % at up to 0.1, plus speed and gain perturbation).
    pub augmentation: Augmentation,
    /// Draw training `_unknown_` clips afresh from the whole filler pool (see the module doc).
    pub fresh_unknown: bool,
    /// `_unknown_` share of the training split only, in percent of its word clips, when it
    /// should differ from `unknown_percentage` (needs `fresh_unknown`; validation and test keep
    /// TensorFlow's proportion, so their scores stay comparable).
    #[serde(default)]
    pub training_unknown_percentage: Option<f64>,
    /// Seed of the index shuffles and the evaluation sets' silence noise.
    pub seed: u64,
    /// Standardise each MFCC coefficient with training-set statistics ([`FeatureNorm`]).
    /// Off by default, as in TensorFlow: on this data set the `conv` model reached lower
    /// validation accuracy with it (0.71-0.76 against 0.88 at step 500, two seeds).
    pub normalize: bool,
    /// The audio front end.
    pub front_end: FrontEnd,
}

impl Default for DataOptions {
    fn default() -> Self {
        let front_end = FrontEnd::default();
        DataOptions {
            wanted_words: DEFAULT_WANTED_WORDS.iter().map(|w| w.to_string()).collect(),
            silence_percentage: 10.0,
            unknown_percentage: 10.0,
            validation_percentage: 10.0,
            testing_percentage: 10.0,
            augmentation: Augmentation::recommended(front_end.sample_rate),
            fresh_unknown: true,
            training_unknown_percentage: None,
            seed: TENSORFLOW_SEED,
            normalize: false,
            front_end,
        }
    }
}

/// Where an example's audio comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A loaded clip (index into [`SpeechCommands::clip`]).
    Clip(usize),
    /// No word: background noise only.
    Silence,
    /// A filler clip drawn afresh from the split's pool each time.
    AnyUnknown,
}

/// One entry of a split's index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Example {
    /// The audio.
    pub source: Source,
    /// Index into [`SpeechCommands::labels`].
    pub label: u32,
}

/// A clip loaded from the data folder.
#[derive(Clone, Debug)]
pub struct Clip {
    /// Path relative to the data folder, `word/speaker_nohash_n.wav`.
    pub relative: String,
    /// Folder name (lower case).
    pub word: String,
    /// Split it belongs to.
    pub split: Split,
    samples: Vec<i16>,
}

impl Clip {
    /// The clip as floats in `[-1, 1)`, `desired_samples` long.
    pub fn samples(&self) -> Vec<f32> {
        self.samples.iter().map(|&v| v as f32 / 32768.0).collect()
    }
}

/// An evaluation set: fixed fingerprints (no augmentation) and labels.
#[derive(Clone, Debug)]
pub struct EvalSet {
    /// `[n, frames, coefficients, 1]`.
    pub x: Tensor,
    /// Label per example.
    pub labels: Vec<u32>,
    /// Relative clip path per example (`_silence_` for silence).
    pub names: Vec<String>,
}

/// The prepared data set.
pub struct SpeechCommands {
    root: PathBuf,
    options: DataOptions,
    labels: Vec<String>,
    clips: Vec<Clip>,
    index: [Vec<Example>; 3],
    unknown_pool: [Vec<usize>; 3],
    noise: Vec<Vec<f32>>,
    warnings: Vec<String>,
    transform: FingerprintTransform,
    norm: Option<FeatureNorm>,
    eval_cache: [OnceLock<EvalSet>; 3],
}

impl std::fmt::Debug for SpeechCommands {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpeechCommands")
            .field("root", &self.root)
            .field("labels", &self.labels)
            .field("clips", &self.clips.len())
            .field("sizes", &self.index.iter().map(Vec::len).collect::<Vec<_>>())
            .finish()
    }
}

/// The label list of a model: `_silence_`, `_unknown_`, then `wanted_words`.
pub fn labels_for(wanted_words: &[String]) -> Vec<String> {
    let mut labels = vec![SILENCE_LABEL.to_string(), UNKNOWN_LABEL.to_string()];
    labels.extend(wanted_words.iter().cloned());
    labels
}

impl SpeechCommands {
    /// Scans `dir`, loads every clip and the background noise, and builds the three indices.
    ///
    /// Errors: a missing or empty folder, wanted words without clips (listing the words that
    /// exist), duplicate or reserved wanted words, invalid front-end settings. Unreadable
    /// clips, list entries naming missing files and noise files shorter than a clip are
    /// warnings ([`SpeechCommands::warnings`]).
    pub fn load(dir: impl AsRef<Path>, options: DataOptions) -> Result<SpeechCommands> {
        let root = dir.as_ref().to_path_buf();
        let transform = options.front_end.transform()?;
        check_words(&options.wanted_words)?;
        let bad = |reason: String| SpeechError::BadDataSet { path: root.clone(), reason };
        if !root.is_dir() {
            return Err(bad("not a folder".into()));
        }
        let lists = SplitLists::read(&root)?;
        let files = scan(&root)?;
        if files.is_empty() {
            return Err(bad("no `<word>/*.wav` clips (expected the Speech Commands layout)".into()));
        }
        let words: BTreeMap<&str, usize> = files.iter().fold(BTreeMap::new(), |mut m, (w, _)| {
            *m.entry(w.as_str()).or_default() += 1;
            m
        });
        for w in &options.wanted_words {
            if !words.contains_key(w.as_str()) {
                let available = words.keys().copied().collect::<Vec<_>>().join(", ");
                return Err(SpeechError::UnknownWord { path: root.clone(), word: w.clone(), available });
            }
        }
        let mut warnings = Vec::new();
        if let Some(lists) = &lists {
            let present: HashSet<String> = files.iter().map(|(w, f)| format!("{w}/{f}")).collect();
            let missing: Vec<&String> = lists.missing(&present).collect();
            if !missing.is_empty() {
                warnings.push(format!(
                    "{} entries of the split lists name missing files (first: {}); they are ignored",
                    missing.len(),
                    missing[0]
                ));
            }
        }
        let fe = options.front_end;
        let desired = fe.desired_samples();
        let loaded: Vec<std::result::Result<(Clip, bool), String>> = files
            .par_iter()
            .map(|(word, file)| {
                let relative = format!("{word}/{file}");
                let path = root.join(word).join(file);
                let (samples, resampled) = load_clip(&path, fe.sample_rate).map_err(|e| e.to_string())?;
                let split = match &lists {
                    Some(l) => l.split_of(&relative),
                    None => which_set(&relative, options.validation_percentage, options.testing_percentage),
                };
                let samples = fit_length(samples, desired).iter().map(|&v| quantize(v)).collect();
                Ok((Clip { relative, word: word.clone(), split, samples }, resampled))
            })
            .collect();
        let mut clips = Vec::with_capacity(loaded.len());
        let (mut failed, mut resampled) = (Vec::new(), 0usize);
        for item in loaded {
            match item {
                Ok((clip, r)) => {
                    resampled += usize::from(r);
                    clips.push(clip);
                }
                Err(e) => failed.push(e),
            }
        }
        if resampled > 0 {
            warnings.push(format!("{resampled} clips are not {} Hz; they were resampled", fe.sample_rate));
        }
        if !failed.is_empty() {
            warnings.push(format!("{} clips could not be read and were skipped (first: {})", failed.len(), failed[0]));
        }
        let noise = load_noise(&root, fe.sample_rate, desired, &mut warnings);

        // TensorFlow's prepare_data_index
        let wanted: BTreeMap<&str, u32> =
            options.wanted_words.iter().enumerate().map(|(i, w)| (w.as_str(), i as u32 + 2)).collect();
        let mut index: [Vec<Example>; 3] = Default::default();
        let mut unknown_pool: [Vec<usize>; 3] = Default::default();
        for (i, clip) in clips.iter().enumerate() {
            match wanted.get(clip.word.as_str()) {
                Some(&label) => index[clip.split.index()].push(Example { source: Source::Clip(i), label }),
                None => unknown_pool[clip.split.index()].push(i),
            }
        }
        if index.iter().all(Vec::is_empty) {
            return Err(bad("none of the wanted words' clips could be read".into()));
        }
        let mut rng = Rng::new(options.seed);
        // TensorFlow's order: validation, testing, then training, so that the training split's
        // options never change what the evaluation splits draw
        let order = [Split::Validation, Split::Testing, Split::Training];
        for split in order {
            let s = split.index();
            let words = index[s].len();
            let silence = (words as f64 * options.silence_percentage / 100.0).ceil() as usize;
            index[s].extend((0..silence).map(|_| Example { source: Source::Silence, label: 0 }));
            rng.shuffle(&mut unknown_pool[s]);
            let unknown =
                ((words as f64 * options.unknown_percentage / 100.0).ceil() as usize).min(unknown_pool[s].len());
            if split == Split::Training && options.fresh_unknown && !unknown_pool[s].is_empty() {
                let share = options.training_unknown_percentage.unwrap_or(options.unknown_percentage);
                let unknown = (words as f64 * share / 100.0).ceil() as usize;
                index[s].extend((0..unknown).map(|_| Example { source: Source::AnyUnknown, label: 1 }));
            } else {
                index[s]
                    .extend(unknown_pool[s][..unknown].iter().map(|&c| Example { source: Source::Clip(c), label: 1 }));
            }
        }
        for split in order {
            rng.shuffle(&mut index[split.index()]);
        }
        if index[Split::Training.index()].is_empty() {
            return Err(bad("the training split is empty".into()));
        }
        let norm = if options.normalize {
            // statistics of the training clips as recorded (no augmentation)
            let prints = clips
                .par_iter()
                .filter(|c| c.split == Split::Training)
                .map(|c| transform.fingerprint(&c.samples()))
                .collect::<Result<Vec<_>>>()?;
            Some(FeatureNorm::fit(&prints, fe.feature_bin_count))
        } else {
            None
        };
        Ok(SpeechCommands {
            root,
            labels: labels_for(&options.wanted_words),
            options,
            clips,
            index,
            unknown_pool,
            noise,
            warnings,
            transform,
            norm,
            eval_cache: Default::default(),
        })
    }

    /// The data folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The options it was loaded with.
    pub fn options(&self) -> &DataOptions {
        &self.options
    }

    /// `_silence_`, `_unknown_`, then the wanted words.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Every loaded clip.
    pub fn clips(&self) -> &[Clip] {
        &self.clips
    }

    /// One loaded clip.
    pub fn clip(&self, i: usize) -> &Clip {
        &self.clips[i]
    }

    /// The examples of a split (TensorFlow's `data_index[split]`).
    pub fn examples(&self, split: Split) -> &[Example] {
        &self.index[split.index()]
    }

    /// The filler clips of a split (before TensorFlow's 10 % choice).
    pub fn unknown_pool(&self, split: Split) -> &[usize] {
        &self.unknown_pool[split.index()]
    }

    /// The background-noise recordings (at least one clip long each).
    pub fn noise(&self) -> &[Vec<f32>] {
        &self.noise
    }

    /// Problems met while loading (skipped files, resampled clips).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The front end's transform.
    pub fn transform(&self) -> &FingerprintTransform {
        &self.transform
    }

    /// The feature standardisation applied to every example, when [`DataOptions::normalize`].
    pub fn feature_norm(&self) -> Option<&FeatureNorm> {
        self.norm.as_ref()
    }

    /// The audio of one example after mixing with `aug`; `rng` draws the fresh unknown clip,
    /// the shift and the noise.
    pub fn example_audio(&self, split: Split, example: Example, aug: &Augmentation, rng: &mut Rng) -> Vec<f32> {
        let n = self.options.front_end.desired_samples();
        let clip = match example.source {
            Source::Clip(i) => Some(i),
            Source::Silence => None,
            Source::AnyUnknown => {
                let pool = &self.unknown_pool[split.index()];
                Some(pool[rng.below(pool.len())])
            }
        };
        let foreground = clip.map(|i| self.clips[i].samples());
        mix(foreground.as_deref(), &self.noise, aug, n, rng).0
    }

    /// A training batch as TensorFlow's `get_data(batch, 0, ..., 'training')` draws it:
    /// `batch` examples chosen uniformly with replacement, augmented, fingerprinted in
    /// parallel. Deterministic for a given `rng` state (and any thread count).
    pub fn training_batch(&self, batch: usize, rng: &mut Rng) -> Result<(Tensor, Vec<u32>)> {
        let set = &self.index[Split::Training.index()];
        let picks: Vec<(Example, u64)> = (0..batch).map(|_| (set[rng.below(set.len())], rng.next_u64())).collect();
        let aug = self.options.augmentation;
        let prints = picks
            .par_iter()
            .map(|&(example, seed)| {
                let mut rng = Rng::new(seed);
                let audio = self.example_audio(Split::Training, example, &aug, &mut rng);
                let mut print = self.transform.fingerprint(&audio)?;
                mask_fingerprint(&mut print, self.options.front_end.feature_bin_count, &aug, &mut rng);
                Ok(print)
            })
            .collect::<Result<Vec<_>>>()?;
        let labels = picks.iter().map(|(e, _)| e.label).collect();
        Ok((self.stack(prints)?, labels))
    }

    /// The fixed validation or test set (no augmentation; silence is noise at a seeded random
    /// volume), computed once and cached.
    pub fn eval_set(&self, split: Split) -> Result<&EvalSet> {
        if let Some(set) = self.eval_cache[split.index()].get() {
            return Ok(set);
        }
        let examples = &self.index[split.index()];
        let seed = self.options.seed ^ (0x5EED_0000 + split.index() as u64);
        let aug = Augmentation::none();
        let prints = examples
            .par_iter()
            .enumerate()
            .map(|(i, &e)| {
                let audio = self.example_audio(split, e, &aug, &mut Rng::new(seed.wrapping_add(i as u64)));
                self.transform.fingerprint(&audio)
            })
            .collect::<Result<Vec<_>>>()?;
        let names = examples
            .iter()
            .map(|e| match e.source {
                Source::Clip(i) => self.clips[i].relative.clone(),
                Source::Silence => SILENCE_LABEL.to_string(),
                Source::AnyUnknown => UNKNOWN_LABEL.to_string(),
            })
            .collect();
        let set = EvalSet { x: self.stack(prints)?, labels: examples.iter().map(|e| e.label).collect(), names };
        Ok(self.eval_cache[split.index()].get_or_init(|| set))
    }

    fn stack(&self, mut prints: Vec<Vec<f32>>) -> Result<Tensor> {
        let [h, w, c] = self.options.front_end.input_shape();
        let n = prints.len();
        if let Some(norm) = &self.norm {
            prints.par_iter_mut().for_each(|p| norm.apply(p));
        }
        Ok(Tensor::from_vec(prints.concat(), [n, h, w, c])?)
    }
}

fn check_words(words: &[String]) -> Result<()> {
    if words.is_empty() {
        return Err(SpeechError::options("give at least one wanted word"));
    }
    let mut seen = HashSet::new();
    for w in words {
        if w.is_empty() || w.starts_with('_') {
            return Err(SpeechError::options(format!("`{w}` cannot be a wanted word (empty or reserved `_` name)")));
        }
        if !seen.insert(w) {
            return Err(SpeechError::options(format!("`{w}` is given twice in the wanted words")));
        }
    }
    Ok(())
}

/// `(word, file name)` of every `<word>/*.wav`, sorted, skipping `_background_noise_`.
fn scan(root: &Path) -> Result<Vec<(String, String)>> {
    let io = |path: &Path, source| SpeechError::Io { path: path.to_path_buf(), source };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root).map_err(|e| io(root, e))? {
        let entry = entry.map_err(|e| io(root, e))?;
        let path = entry.path();
        let word = entry.file_name().to_string_lossy().to_lowercase();
        if !path.is_dir() || word == BACKGROUND_NOISE_DIR {
            continue;
        }
        for f in std::fs::read_dir(&path).map_err(|e| io(&path, e))? {
            let f = f.map_err(|e| io(&path, e))?;
            let name = f.file_name().to_string_lossy().to_string();
            if name.to_lowercase().ends_with(".wav") && f.path().is_file() {
                out.push((word.clone(), name));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Decodes a clip to mono at `rate`; the flag says whether it had to be resampled.
pub(crate) fn load_clip(path: &Path, rate: u32) -> Result<(Vec<f32>, bool)> {
    let wav = read_wav(path)?;
    let mono = wav.to_mono();
    if wav.info.sample_rate == rate {
        return Ok((mono, false));
    }
    let samples = resample(&mono, wav.info.sample_rate, rate).map_err(|e| e.in_file(path))?;
    Ok((samples, true))
}

fn load_noise(root: &Path, rate: u32, min_len: usize, warnings: &mut Vec<String>) -> Vec<Vec<f32>> {
    let dir = root.join(BACKGROUND_NOISE_DIR);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        warnings.push(format!("{}: no background noise; silence examples are all zeros", dir.display()));
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("wav")))
        .collect();
    paths.sort();
    let mut noise = Vec::new();
    for p in paths {
        match load_clip(&p, rate) {
            Ok((s, _)) if s.len() >= min_len => noise.push(s),
            Ok((s, _)) => warnings.push(format!(
                "{}: {} samples is shorter than one clip ({min_len}); not used as background noise",
                p.display(),
                s.len()
            )),
            Err(e) => warnings.push(format!("{e}; not used as background noise")),
        }
    }
    if noise.is_empty() {
        warnings.push(format!("{}: no usable background noise; silence examples are all zeros", dir.display()));
    }
    noise
}

fn quantize(v: f32) -> i16 {
    (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Option<PathBuf> {
        match std::env::var_os("CONVNET_SHARED") {
            Some(r) => Some(Path::new(&r).join("datasets/speech_commands")),
            None => {
                eprintln!("CONVNET_SHARED is not set; skipping");
                None
            }
        }
    }

    #[test]
    fn silence_and_unknown_are_ten_percent_of_the_words() {
        let Some(dir) = shared() else { return };
        for fresh in [true, false] {
            let data = SpeechCommands::load(&dir, DataOptions { fresh_unknown: fresh, ..Default::default() }).unwrap();
            assert_eq!(data.labels()[..3], ["_silence_", "_unknown_", "yes"]);
            for split in Split::ALL {
                let ex = data.examples(split);
                let count = |l: u32| ex.iter().filter(|e| e.label == l).count();
                let words = ex.len() - count(0) - count(1);
                assert!(words > 30, "{split:?} has {words} word clips");
                let ten = (words as f64 * 0.1).ceil() as usize;
                assert_eq!(count(0), ten, "{split:?} silence");
                assert_eq!(count(1), ten.min(data.unknown_pool(split).len()), "{split:?} unknown");
                assert!(ex.iter().all(|e| e.label < 2 || matches!(e.source, Source::Clip(_))));
                let fresh_slots = ex.iter().filter(|e| e.source == Source::AnyUnknown).count();
                assert_eq!(fresh_slots, if fresh && split == Split::Training { count(1) } else { 0 });
            }
            // every clip's split agrees with the lists, word clips keep their word
            for e in data.examples(Split::Testing) {
                if let Source::Clip(i) = e.source {
                    assert_eq!(data.clip(i).split, Split::Testing);
                    if e.label >= 2 {
                        assert_eq!(data.labels()[e.label as usize], data.clip(i).word);
                    }
                }
            }
        }
        // a larger training-only unknown share leaves validation and test as they were
        let base = SpeechCommands::load(&dir, DataOptions::default()).unwrap();
        let more =
            SpeechCommands::load(&dir, DataOptions { training_unknown_percentage: Some(25.0), ..Default::default() })
                .unwrap();
        let unknown = |d: &SpeechCommands, s: Split| d.examples(s).iter().filter(|e| e.label == 1).count();
        let words = more.examples(Split::Training).iter().filter(|e| e.label >= 2).count();
        assert_eq!(unknown(&more, Split::Training), (words as f64 * 0.25).ceil() as usize);
        for s in [Split::Validation, Split::Testing] {
            assert_eq!(more.examples(s), base.examples(s), "{s:?}");
        }
    }

    #[test]
    fn batches_are_deterministic_and_shaped() {
        let Some(dir) = shared() else { return };
        let data = SpeechCommands::load(&dir, DataOptions::default()).unwrap();
        let (x1, y1) = data.training_batch(16, &mut Rng::new(5)).unwrap();
        let (x2, y2) = data.training_batch(16, &mut Rng::new(5)).unwrap();
        assert_eq!(x1.dims(), [16, 98, 40, 1]);
        assert_eq!((x1.data(), &y1), (x2.data(), &y2));
        let test = data.eval_set(Split::Testing).unwrap();
        assert_eq!(test.x.dims()[0], data.examples(Split::Testing).len());
        assert_eq!(test.labels.len(), test.names.len());
    }

    #[test]
    fn normalized_features_are_standardised() {
        let Some(dir) = shared() else { return };
        let data = SpeechCommands::load(&dir, DataOptions { normalize: true, ..Default::default() }).unwrap();
        let norm = data.feature_norm().unwrap();
        assert_eq!(norm.mean.len(), 40);
        // the training clips as recorded are exactly standardised; check the validation set is close
        let x = &data.eval_set(Split::Validation).unwrap().x;
        let (mut sum, mut sq) = (vec![0.0f64; 40], vec![0.0f64; 40]);
        for frame in x.data().chunks_exact(40) {
            for (c, &v) in frame.iter().enumerate() {
                sum[c] += v as f64;
                sq[c] += (v as f64).powi(2);
            }
        }
        let n = (x.numel() / 40) as f64;
        for c in 0..40 {
            let mean = sum[c] / n;
            let sd = (sq[c] / n - mean * mean).sqrt();
            assert!(mean.abs() < 0.6 && (0.5..2.0).contains(&sd), "coefficient {c}: mean {mean}, sd {sd}");
        }
        assert!(SpeechCommands::load(&dir, DataOptions::default()).unwrap().feature_norm().is_none());
    }

    #[test]
    fn bad_words_and_folders_are_clear_errors() {
        let Some(dir) = shared() else { return };
        let opts =
            |w: &[&str]| DataOptions { wanted_words: w.iter().map(|s| s.to_string()).collect(), ..Default::default() };
        let e = SpeechCommands::load(&dir, opts(&["yes", "banana"])).unwrap_err().to_string();
        assert!(e.contains("banana") && e.contains("marvin"), "{e}");
        assert!(SpeechCommands::load(&dir, opts(&["yes", "yes"])).is_err());
        assert!(SpeechCommands::load(&dir, opts(&["_silence_"])).is_err());
        let empty = tempfile::tempdir().unwrap();
        let e = SpeechCommands::load(empty.path(), DataOptions::default()).unwrap_err().to_string();
        assert!(e.contains("no `<word>/*.wav` clips"), "{e}");
    }

    #[test]
    fn short_noise_missing_list_entries_and_other_rates_are_warnings() {
        let dir = tempfile::tempdir().unwrap();
        let write = |rel: &str, rate: u32, n: usize| {
            let path = dir.path().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let spec = hound::WavSpec {
                channels: 1,
                sample_rate: rate,
                bits_per_sample: 16,
                sample_format: hound::SampleFormat::Int,
            };
            let mut w = hound::WavWriter::create(path, spec).unwrap();
            for i in 0..n {
                w.write_sample(((i as f32 * 0.03).sin() * 8000.0) as i16).unwrap();
            }
            w.finalize().unwrap();
        };
        for s in 0..12 {
            write(&format!("yes/{s:08x}_nohash_0.wav"), 16000, 16000);
            write(&format!("cat/{s:08x}_nohash_0.wav"), 8000, 8000);
        }
        write("_background_noise_/short.wav", 16000, 8000);
        write("_background_noise_/long.wav", 16000, 40000);
        std::fs::write(dir.path().join("validation_list.txt"), "yes/00000000_nohash_0.wav\nyes/gone_nohash_0.wav\n")
            .unwrap();
        std::fs::write(dir.path().join("testing_list.txt"), "yes/00000001_nohash_0.wav\n").unwrap();
        std::fs::write(dir.path().join("yes/broken_nohash_0.wav"), b"RIFF").unwrap();
        let opts = DataOptions { wanted_words: vec!["yes".into()], ..Default::default() };
        let data = SpeechCommands::load(dir.path(), opts).unwrap();
        let w = data.warnings().join("\n");
        assert!(w.contains("1 entries of the split lists name missing files"), "{w}");
        assert!(w.contains("12 clips are not 16000 Hz"), "{w}");
        assert!(w.contains("short.wav") && w.contains("shorter than one clip"), "{w}");
        assert!(w.contains("1 clips could not be read"), "{w}");
        assert_eq!(data.noise().len(), 1);
        assert_eq!(data.examples(Split::Validation).iter().filter(|e| e.label == 2).count(), 1);
        assert_eq!(data.clip(0).samples().len(), 16000);
    }
}
