//! Training-time augmentation, in the order TensorFlow's `AudioProcessor.get_data` applies it:
//! scale the foreground (0 for silence), shift it in time by `U[-shift, shift)` samples with
//! zero fill, add a random slice of a random background-noise file (always for silence, at
//! volume `U(0, 1)`; for words with probability `background_frequency`, at volume
//! `U(0, background_volume)`), and clip to `[-1, 1]`.
//!
//! Two additions that TensorFlow's example lacks, off in [`Augmentation::tensorflow`] and on in
//! [`Augmentation::recommended`] (the default here):
//! speed perturbation (the word resampled about the clip's centre by a factor `U(1 - r, 1 + r)`,
//! which changes tempo and pitch together, as speakers differ in both) and a random foreground
//! gain `U(-g, g)` dB (speakers differ in loudness, and raw MFCCs carry it in every frame).
//! They are drawn before the shift, so the TensorFlow draws keep their order when both are off.
//!
//! A third, off by default, works on the fingerprint rather than the audio: SpecAugment's time
//! and frequency masks ([`mask_fingerprint`]), which the Keyword Transformer applies to the
//! same 40 MFCCs.

use convnet_tensor::rng::Rng;
use serde::{Deserialize, Serialize};

/// Augmentation settings, named as the example's flags.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Augmentation {
    /// Largest time shift in samples (`time_shift_ms` = 100 → 1600 at 16 kHz).
    pub time_shift_samples: usize,
    /// Chance that a word gets background noise (0.8).
    pub background_frequency: f32,
    /// Largest noise volume for words (0.1).
    pub background_volume: f32,
    /// Relative speed change range `r`: the word plays `U(1 - r, 1 + r)` times as fast (0: off).
    #[serde(default)]
    pub speed_range: f32,
    /// Largest foreground gain change in dB, drawn `U(-g, g)` (0: off).
    #[serde(default)]
    pub gain_db: f32,
    /// Instead of `U(-s, s)`, shift the word to anywhere in the window where it stays whole
    /// (its bounds found from frame energy), as a sliding window sees it in a stream.
    #[serde(default)]
    pub shift_within_word: bool,
    /// SpecAugment time masks per example: each hides up to `time_mask_frames` frames.
    #[serde(default)]
    pub time_masks: usize,
    /// Longest time mask, in frames (10 ms each).
    #[serde(default)]
    pub time_mask_frames: usize,
    /// SpecAugment frequency masks per example: each hides up to `frequency_mask_bins`
    /// consecutive coefficients.
    #[serde(default)]
    pub frequency_masks: usize,
    /// Widest frequency mask, in coefficients.
    #[serde(default)]
    pub frequency_mask_bins: usize,
}

impl Augmentation {
    /// TensorFlow's defaults at `sample_rate`: ±100 ms, noise on 80 % of words at up to 0.1.
    pub fn tensorflow(sample_rate: u32) -> Self {
        Augmentation {
            time_shift_samples: sample_rate as usize / 10,
            background_frequency: 0.8,
            background_volume: 0.1,
            ..Self::none()
        }
    }

    /// TensorFlow's augmentation plus speed perturbation of ±10 % and a gain of ±6 dB: the
    /// test speakers differ from the training ones in tempo, pitch and loudness, and with both
    /// the `conv` model scored 90.8-92.1 % on the test split against 76-85 % without (two
    /// seeds each, 2,000 steps; chosen on validation, the test split was only read at the end).
    pub fn recommended(sample_rate: u32) -> Self {
        Augmentation { speed_range: 0.1, gain_db: 6.0, ..Self::tensorflow(sample_rate) }
    }

    /// No shift and no noise on words (validation, testing); silence still gets its noise.
    pub fn none() -> Self {
        Augmentation {
            time_shift_samples: 0,
            background_frequency: 0.0,
            background_volume: 0.0,
            speed_range: 0.0,
            gain_db: 0.0,
            shift_within_word: false,
            time_masks: 0,
            time_mask_frames: 0,
            frequency_masks: 0,
            frequency_mask_bins: 0,
        }
    }
}

/// SpecAugment's masks on a `[frames, bins]` fingerprint: `aug.time_masks` runs of
/// `U{0..=time_mask_frames}` frames and `aug.frequency_masks` runs of
/// `U{0..=frequency_mask_bins}` coefficients, each at a uniform position. A masked value
/// becomes its coefficient's mean over the clip rather than 0: raw MFCCs are not centred (the
/// first is the log energy), so a 0 would be a loud, out-of-range value, where the mean only
/// removes the information.
pub fn mask_fingerprint(print: &mut [f32], bins: usize, aug: &Augmentation, rng: &mut Rng) {
    if bins == 0 || print.len() < bins || (aug.time_masks == 0 && aug.frequency_masks == 0) {
        return;
    }
    let frames = print.len() / bins;
    let mut mean = vec![0.0f32; bins];
    for row in print.chunks_exact(bins) {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += v / frames as f32;
        }
    }
    let run = |rng: &mut Rng, longest: usize, total: usize| {
        let len = rng.below(longest.min(total) + 1);
        (rng.below(total - len + 1), len)
    };
    for _ in 0..aug.time_masks {
        let (start, len) = run(rng, aug.time_mask_frames, frames);
        for row in print.chunks_exact_mut(bins).skip(start).take(len) {
            row.copy_from_slice(&mean);
        }
    }
    for _ in 0..aug.frequency_masks {
        let (start, len) = run(rng, aug.frequency_mask_bins, bins);
        for row in print.chunks_exact_mut(bins) {
            row[start..start + len].copy_from_slice(&mean[start..start + len]);
        }
    }
}

/// What [`mix`] drew, for tests and debugging.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MixDraw {
    /// Time shift in samples (positive: later).
    pub shift: isize,
    /// Noise file index and start offset, when noise was read.
    pub background: Option<(usize, usize)>,
    /// Noise volume (0 when none was added).
    pub background_volume: f32,
    /// Speed factor of the word (1 when off).
    pub speed: f32,
    /// Foreground gain factor (1 when off).
    pub gain: f32,
}

/// One training example's audio: `foreground` (`None` for silence) of `n` samples, augmented
/// as described in the module doc. `noise` files must each hold at least `n` samples.
pub fn mix(
    foreground: Option<&[f32]>,
    noise: &[Vec<f32>],
    aug: &Augmentation,
    n: usize,
    rng: &mut Rng,
) -> (Vec<f32>, MixDraw) {
    let silence = foreground.is_none();
    let speed = if aug.speed_range > 0.0 { 1.0 + aug.speed_range * (2.0 * rng.uniform() - 1.0) } else { 1.0 };
    let gain = if aug.gain_db > 0.0 { 10f32.powf(aug.gain_db * (2.0 * rng.uniform() - 1.0) / 20.0) } else { 1.0 };
    let stretched = foreground.filter(|_| speed != 1.0).map(|fg| resample_about_centre(fg, speed));
    let foreground = stretched.as_deref().or(foreground);
    let ts = aug.time_shift_samples as isize;
    // np.random.randint(-ts, ts): [-ts, ts)
    let shift = match foreground.filter(|_| aug.shift_within_word).map(word_bounds) {
        Some((a, b)) => {
            let (lo, hi) = (-(a as isize), n as isize - b as isize);
            if hi > lo { lo + rng.below((hi - lo + 1) as usize) as isize } else { 0 }
        }
        None if ts > 0 => rng.below(2 * ts as usize) as isize - ts,
        None => 0,
    };
    let mut out = vec![0.0f32; n];
    if let Some(fg) = foreground {
        // padded = pad(fg, [shift, 0]) or [0, -shift], then slice from max(0, -shift)
        for (i, o) in out.iter_mut().enumerate() {
            let src = i as isize - shift;
            if src >= 0 && (src as usize) < fg.len() {
                *o = fg[src as usize] * gain;
            }
        }
    }
    let mut draw = MixDraw { shift, background: None, background_volume: 0.0, speed, gain };
    let use_noise = !noise.is_empty() && (silence || aug.background_frequency > 0.0);
    if use_noise {
        let index = rng.below(noise.len());
        let file = &noise[index];
        let room = file.len().saturating_sub(n);
        let offset = if room > 0 { rng.below(room) } else { 0 };
        let volume = if silence {
            rng.uniform()
        } else if rng.uniform() < aug.background_frequency {
            rng.uniform() * aug.background_volume
        } else {
            0.0
        };
        draw.background = Some((index, offset));
        draw.background_volume = volume;
        if volume > 0.0 {
            for (o, b) in out.iter_mut().zip(&file[offset..offset + n.min(file.len() - offset)]) {
                *o += b * volume;
            }
        }
    }
    for o in &mut out {
        *o = o.clamp(-1.0, 1.0);
    }
    (out, draw)
}

/// The span `[start, end)` of `clip` holding the word: 20 ms frames whose RMS is at least a
/// tenth of the loudest frame's, first to last.
pub fn word_bounds(clip: &[f32]) -> (usize, usize) {
    const FRAME: usize = 320;
    let rms: Vec<f32> =
        clip.chunks(FRAME).map(|f| (f.iter().map(|v| v * v).sum::<f32>() / f.len() as f32).sqrt()).collect();
    let loudest = rms.iter().copied().fold(0.0f32, f32::max);
    if loudest == 0.0 {
        return (0, clip.len());
    }
    let first = rms.iter().position(|&r| r >= 0.1 * loudest).unwrap_or(0);
    let last = rms.iter().rposition(|&r| r >= 0.1 * loudest).unwrap_or(rms.len() - 1);
    (first * FRAME, ((last + 1) * FRAME).min(clip.len()))
}

/// `fg` played `speed` times as fast, keeping its centre sample in place (linear
/// interpolation; the clip keeps its length, with zeros where the source runs out).
fn resample_about_centre(fg: &[f32], speed: f32) -> Vec<f32> {
    let c = (fg.len() / 2) as f32;
    (0..fg.len())
        .map(|i| {
            let t = c + (i as f32 - c) * speed;
            let j = t.floor();
            if j < 0.0 || j as usize + 1 >= fg.len() {
                return 0.0;
            }
            let (j, f) = (j as usize, t - j);
            fg[j] * (1.0 - f) + fg[j + 1] * f
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise() -> Vec<Vec<f32>> {
        let mut r = Rng::new(1);
        (0..3).map(|_| (0..4000).map(|_| r.uniform_range(-1.0, 1.0)).collect()).collect()
    }

    #[test]
    fn statistics_follow_tensorflows_rule() {
        let aug = Augmentation {
            time_shift_samples: 100,
            background_frequency: 0.8,
            background_volume: 0.1,
            ..Augmentation::none()
        };
        let (noise, fg) = (noise(), vec![0.5f32; 1000]);
        let mut rng = Rng::new(7);
        let trials = 20_000;
        let (mut with_noise, mut vol_sum, mut shift_sum, mut shift_min, mut shift_max) = (0, 0.0f64, 0i64, 0, 0);
        let mut files = [0usize; 3];
        for _ in 0..trials {
            let (_, d) = mix(Some(&fg), &noise, &aug, 1000, &mut rng);
            if d.background_volume > 0.0 {
                with_noise += 1;
                vol_sum += d.background_volume as f64;
                assert!(d.background_volume < 0.1);
            }
            let (file, offset) = d.background.unwrap();
            files[file] += 1;
            assert!(offset < 3000);
            shift_sum += d.shift as i64;
            shift_min = shift_min.min(d.shift);
            shift_max = shift_max.max(d.shift);
        }
        let p = with_noise as f64 / trials as f64;
        assert!((p - 0.8).abs() < 0.015, "noise probability {p}");
        let mean_vol = vol_sum / with_noise as f64;
        assert!((mean_vol - 0.05).abs() < 0.002, "mean noise volume {mean_vol}");
        assert_eq!((shift_min, shift_max), (-100, 99));
        assert!((shift_sum as f64 / trials as f64).abs() < 2.0);
        assert!(files.iter().all(|&c| (c as f64 / trials as f64 - 1.0 / 3.0).abs() < 0.02), "{files:?}");
    }

    #[test]
    fn silence_is_noise_at_uniform_volume_and_everything_is_clipped() {
        let noise = noise();
        let mut rng = Rng::new(3);
        let mut vols = Vec::new();
        for _ in 0..5000 {
            let (audio, d) = mix(None, &noise, &Augmentation::none(), 1000, &mut rng);
            let (file, offset) = d.background.unwrap();
            let v = d.background_volume;
            vols.push(v as f64);
            for (a, b) in audio.iter().zip(&noise[file][offset..]) {
                assert!((a - (b * v).clamp(-1.0, 1.0)).abs() < 1e-6);
            }
        }
        let mean = vols.iter().sum::<f64>() / vols.len() as f64;
        let var = vols.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vols.len() as f64;
        assert!((mean - 0.5).abs() < 0.02 && (var - 1.0 / 12.0).abs() < 0.005, "{mean} {var}");
        // a loud foreground is clipped
        let (loud, _) = mix(Some(&[3.0f32; 10]), &[], &Augmentation::none(), 10, &mut rng);
        assert_eq!(loud, vec![1.0; 10]);
    }

    #[test]
    fn shift_within_word_keeps_the_whole_word_in_view_anywhere() {
        // a 200 ms word (6400..9600) in a quiet 1 s clip
        let n = 16_000;
        let fg: Vec<f32> = (0..n).map(|i| if (6400..9600).contains(&i) { 0.5 } else { 0.001 }).collect();
        assert_eq!(word_bounds(&fg), (6400, 9600));
        let aug = Augmentation { time_shift_samples: 1600, shift_within_word: true, ..Augmentation::none() };
        let mut rng = Rng::new(3);
        let (mut lo, mut hi) = (isize::MAX, isize::MIN);
        for _ in 0..2000 {
            let (out, d) = mix(Some(&fg), &[], &aug, n, &mut rng);
            assert!((-6400..=6400).contains(&d.shift), "{}", d.shift);
            assert_eq!(out.iter().filter(|&&v| v == 0.5).count(), 3200, "the word is cut at shift {}", d.shift);
            (lo, hi) = (lo.min(d.shift), hi.max(d.shift));
        }
        // uniform over the whole range, far beyond TensorFlow's ±1600
        assert!(lo < -6000 && hi > 6000, "{lo}..{hi}");
    }

    #[test]
    fn shift_moves_the_clip_with_zero_fill() {
        let fg: Vec<f32> = (1..=10).map(|v| v as f32 / 10.0).collect();
        let aug = Augmentation {
            time_shift_samples: 3,
            background_frequency: 0.0,
            background_volume: 0.0,
            ..Augmentation::none()
        };
        let mut rng = Rng::new(11);
        for _ in 0..50 {
            let (out, d) = mix(Some(&fg), &[], &aug, 10, &mut rng);
            for (i, o) in out.iter().enumerate() {
                let src = i as isize - d.shift;
                let want = if (0..10).contains(&src) { fg[src as usize] } else { 0.0 };
                assert_eq!(*o, want);
            }
        }
    }

    #[test]
    fn speed_scales_frequency_about_the_centre_and_gain_scales_amplitude() {
        // a 200 Hz tone at 16 kHz: 0.1 s has 20 periods, 40 zero crossings
        let n = 16000;
        let fg: Vec<f32> =
            (0..n).map(|i| 0.5 * (2.0 * std::f32::consts::PI * 200.0 * i as f32 / 16000.0).sin()).collect();
        let aug = Augmentation { speed_range: 0.2, gain_db: 6.0, ..Augmentation::none() };
        let mut rng = Rng::new(5);
        let (mut speeds, mut gains) = (Vec::new(), Vec::new());
        for _ in 0..200 {
            let (out, d) = mix(Some(&fg), &[], &aug, n, &mut rng);
            assert!((0.8..=1.2).contains(&d.speed) && (0.5..=2.0).contains(&d.gain), "{d:?}");
            speeds.push(d.speed);
            gains.push(d.gain);
            // the middle 0.1 s: frequency scales with the speed
            let mid = &out[7200..8800];
            let crossings = mid.windows(2).filter(|w| (w[0] < 0.0) != (w[1] < 0.0)).count() as f32;
            assert!((crossings - 40.0 * d.speed).abs() <= 1.5, "speed {} crossings {crossings}", d.speed);
            let peak = mid.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert!((peak - (0.5 * d.gain).min(1.0)).abs() < 0.01, "gain {} peak {peak}", d.gain);
        }
        let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
        assert!((mean(&speeds) - 1.0).abs() < 0.02);
        // gain in dB is uniform around 0
        let db: Vec<f32> = gains.iter().map(|g| 20.0 * g.log10()).collect();
        assert!(mean(&db).abs() < 0.6 && db.iter().any(|d| *d > 5.0) && db.iter().any(|d| *d < -5.0));
        // off: identical to the input
        let (same, d) = mix(Some(&fg), &[], &Augmentation::none(), n, &mut rng);
        assert_eq!((same, d.speed, d.gain), (fg, 1.0, 1.0));
    }

    #[test]
    fn masks_replace_runs_of_frames_and_coefficients_by_the_clip_mean() {
        let (frames, bins) = (98, 40);
        // every value distinct, and no value equal to its coefficient's mean
        let print: Vec<f32> =
            (0..frames * bins).map(|i| ((i / bins) * (i / bins)) as f32 + 0.01 * (i % bins) as f32).collect();
        let mean: Vec<f32> =
            (0..bins).map(|b| (0..frames).map(|f| print[f * bins + b]).sum::<f32>() / frames as f32).collect();
        let aug = Augmentation {
            time_masks: 2,
            time_mask_frames: 10,
            frequency_masks: 2,
            frequency_mask_bins: 5,
            ..Augmentation::none()
        };
        let mut rng = Rng::new(11);
        let (trials, mut masked_frames, mut longest) = (2000, 0usize, 0usize);
        let masked = |v: f32, b: usize| (v - mean[b]).abs() <= 1e-3 * mean[b].abs().max(1.0);
        for _ in 0..trials {
            let mut p = print.clone();
            mask_fingerprint(&mut p, bins, &aug, &mut rng);
            let rows: Vec<bool> = (0..frames).map(|f| (0..bins).all(|b| masked(p[f * bins + b], b))).collect();
            let cols: Vec<bool> = (0..bins).map(|b| (0..frames).all(|f| masked(p[f * bins + b], b))).collect();
            // every other value is untouched
            for f in 0..frames {
                for b in 0..bins {
                    let v = p[f * bins + b];
                    assert!(rows[f] || cols[b] || v == print[f * bins + b], "frame {f} bin {b}");
                }
            }
            let runs = |m: &[bool]| -> Vec<usize> { m.split(|x| !x).map(|r| r.len()).filter(|&l| l > 0).collect() };
            let (tr, fr) = (runs(&rows), runs(&cols));
            // two masks may overlap or touch, so a run is at most twice the longest mask
            assert!(tr.len() <= 2 && tr.iter().all(|&l| l <= 20), "{tr:?}");
            assert!(fr.len() <= 2 && fr.iter().all(|&l| l <= 10), "{fr:?}");
            masked_frames += rows.iter().filter(|&&r| r).count();
            longest = longest.max(tr.iter().copied().max().unwrap_or(0));
        }
        // two masks of U{0..=10} frames: 10 frames on average, less their overlaps
        let per_example = masked_frames as f64 / trials as f64;
        assert!((8.5..=10.0).contains(&per_example), "{per_example}");
        assert!(longest > 10);
        // off: untouched
        let mut same = print.clone();
        mask_fingerprint(&mut same, bins, &Augmentation::none(), &mut rng);
        assert_eq!(same, print);
    }
}
