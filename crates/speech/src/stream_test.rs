//! Test streams for [`crate::listen`], like TensorFlow's `generate_streaming_test_wav.py`: the
//! clips of one split placed one after another with random gaps over a bed of background noise,
//! with the list of words and their start times. Reading and writing that list (`word,start_ms`
//! per line) and the WAV file are here too.

use std::io::Write;
use std::path::Path;

use convnet_tensor::rng::Rng;

use crate::dataset::{SILENCE_LABEL, Source, SpeechCommands};
use crate::error::{Result, SpeechError};
use crate::recognize::TruthWord;
use crate::split::Split;

/// How a test stream is laid out.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StreamOptions {
    /// Clips are taken from this split (testing: speakers the model never heard).
    pub split: Split,
    /// Silence between the end of one clip and the start of the next, uniform in this range (ms).
    pub gap_ms: (u32, u32),
    /// Volume of the background noise bed.
    pub background_volume: f32,
    /// Use at most this many clips (all of the split's word and filler clips by default).
    pub max_clips: Option<usize>,
    /// Seed of the order, gaps and noise.
    pub seed: u64,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions { split: Split::Testing, gap_ms: (1000, 2000), background_volume: 0.1, max_clips: None, seed: 7 }
    }
}

/// Builds a stream from `data`'s clips of `opts.split` (each once, shuffled; silence examples
/// skipped) and returns its samples with the words it contains.
pub fn make_stream(data: &SpeechCommands, opts: &StreamOptions) -> Result<(Vec<f32>, Vec<TruthWord>)> {
    if opts.gap_ms.0 > opts.gap_ms.1 {
        return Err(SpeechError::options("the gap range is reversed"));
    }
    let fe = data.options().front_end;
    let rate = fe.sample_rate as usize;
    let mut rng = Rng::new(opts.seed);
    let mut clips: Vec<(usize, String)> = data
        .examples(opts.split)
        .iter()
        .filter_map(|e| match e.source {
            Source::Clip(i) => Some((i, data.labels()[e.label as usize].clone())),
            _ => None,
        })
        .filter(|(_, w)| w != SILENCE_LABEL)
        .collect();
    rng.shuffle(&mut clips);
    clips.truncate(opts.max_clips.unwrap_or(usize::MAX));
    if clips.is_empty() {
        return Err(SpeechError::options(format!("the {} split has no clips", opts.split.name())));
    }
    let gap = |rng: &mut Rng| {
        let (lo, hi) = opts.gap_ms;
        (lo + rng.below((hi - lo) as usize + 1) as u32) as usize * rate / 1000
    };
    let mut truth = Vec::with_capacity(clips.len());
    let mut pos = gap(&mut rng);
    let mut words: Vec<(usize, Vec<f32>)> = Vec::with_capacity(clips.len());
    for (i, word) in clips {
        let audio = data.clip(i).samples();
        truth.push(TruthWord { word, start_ms: (pos * 1000 / rate) as i64 });
        let len = audio.len();
        words.push((pos, audio));
        pos += len + gap(&mut rng);
    }
    let mut out = vec![0.0f32; pos];
    if let Some(noise) = (!data.noise().is_empty()).then(|| &data.noise()[rng.below(data.noise().len())]) {
        // the noise file repeated from a random offset
        let mut at = rng.below(noise.len());
        for o in &mut out {
            *o = noise[at] * opts.background_volume;
            at = (at + 1) % noise.len();
        }
    }
    for (start, audio) in words {
        for (o, a) in out[start..].iter_mut().zip(&audio) {
            *o += a;
        }
    }
    for o in &mut out {
        *o = o.clamp(-1.0, 1.0);
    }
    Ok((out, truth))
}

/// Writes mono 16-bit PCM.
pub fn write_wav(path: &Path, samples: &[f32], sample_rate: u32) -> Result<()> {
    let spec =
        hound::WavSpec { channels: 1, sample_rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let hound_io = |e: hound::Error| match e {
        hound::Error::IoError(e) => e,
        other => std::io::Error::other(other),
    };
    // atomic: a full disk or a kill leaves the previous file, never a truncated WAV
    convnet_nn::fsio::write_atomic_with(path, |f| {
        let mut w = hound::WavWriter::new(f, spec).map_err(hound_io)?;
        for &s in samples {
            w.write_sample((s * 32767.0).round().clamp(-32768.0, 32767.0) as i16).map_err(hound_io)?;
        }
        w.finalize().map_err(hound_io)
    })
    .map_err(|source| SpeechError::Io { path: path.to_path_buf(), source })
}

/// Writes `word,start_ms` lines.
pub fn write_truth(path: &Path, truth: &[TruthWord]) -> Result<()> {
    convnet_nn::fsio::write_atomic_with(path, |f| {
        for t in truth {
            writeln!(f, "{},{}", t.word, t.start_ms)?;
        }
        Ok(())
    })
    .map_err(|source| SpeechError::Io { path: path.to_path_buf(), source })
}

/// Reads `word,start_ms` lines (blank lines and `#` comments skipped).
pub fn read_truth(path: &Path) -> Result<Vec<TruthWord>> {
    let text = std::fs::read_to_string(path).map_err(|source| SpeechError::Io { path: path.to_path_buf(), source })?;
    parse_truth(&text, path)
}

/// [`read_truth`] from text already in memory; `path` only names it in errors.
pub fn parse_truth(text: &str, path: &Path) -> Result<Vec<TruthWord>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = line.split_once(',').and_then(|(w, t)| Some((w.trim(), t.trim().parse::<f64>().ok()?)));
        match parsed {
            Some((w, t)) if !w.is_empty() => out.push(TruthWord { word: w.to_string(), start_ms: t.round() as i64 }),
            _ => {
                return Err(SpeechError::BadDataSet {
                    path: path.to_path_buf(),
                    reason: format!("line {}: expected `word,start_ms`, got `{line}`", n + 1),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truth_files_round_trip_and_reject_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.txt");
        let truth = vec![
            TruthWord { word: "yes".into(), start_ms: 1200 },
            TruthWord { word: "_unknown_".into(), start_ms: 4000 },
        ];
        write_truth(&p, &truth).unwrap();
        assert_eq!(read_truth(&p).unwrap(), truth);
        std::fs::write(&p, "yes,12\nno 14\n").unwrap();
        assert!(read_truth(&p).unwrap_err().to_string().contains("line 2"));
    }

    #[test]
    fn stream_holds_every_test_clip_at_its_time() {
        let Some(root) = std::env::var_os("CONVNET_SHARED") else {
            eprintln!("CONVNET_SHARED is not set; skipping");
            return;
        };
        let data = SpeechCommands::load(Path::new(&root).join("datasets/speech_commands"), Default::default()).unwrap();
        let opts = StreamOptions { background_volume: 0.0, ..Default::default() };
        let (audio, truth) = make_stream(&data, &opts).unwrap();
        let clips = data.examples(Split::Testing).iter().filter(|e| e.label != 0).count();
        assert_eq!(truth.len(), clips);
        // with no noise, each clip sits exactly at its start time: the second of audio there
        // is one of the split's clips of that word (or a filler clip for `_unknown_`)
        let candidates = |word: &str| -> Vec<Vec<f32>> {
            data.examples(Split::Testing)
                .iter()
                .filter(|e| data.labels()[e.label as usize] == word)
                .filter_map(|e| match e.source {
                    Source::Clip(i) => Some(data.clip(i).samples()),
                    _ => None,
                })
                .collect()
        };
        for t in &truth {
            let at = t.start_ms as usize * 16;
            let heard = &audio[at..at + 16000];
            assert!(candidates(&t.word).iter().any(|c| c.as_slice() == heard), "{} at {} ms", t.word, t.start_ms);
        }
        for w in truth.windows(2) {
            let gap = w[1].start_ms - w[0].start_ms;
            assert!((2000..=3001).contains(&gap), "{gap}");
        }
        let total_ms = audio.len() as i64 * 1000 / 16000;
        assert!(truth.last().unwrap().start_ms + 1000 < total_ms);
        // nothing between the clips
        let first = truth[0].start_ms as usize * 16;
        assert!(audio[..first].iter().all(|&v| v == 0.0));
    }
}
