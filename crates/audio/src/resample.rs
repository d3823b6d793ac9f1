//! Band-limited resampling with `rubato`'s synchronous FFT resampler, set up to approximate
//! librosa's default `res_type="soxr_hq"` (libsoxr "HQ": linear phase, passband flat to about
//! 91% of the lower Nyquist, -3 dB near 95%, stopband from 100%, about 120 dB rejection).
//!
//! rubato's FFT resampler filters with a BlackmanHarris²-windowed sinc whose length is the FFT
//! block, a multiple of `rate / gcd(from, to)` on each side. The block is the smallest such
//! multiple with at least 320 samples at the lower rate (where rubato's cutoff rule puts the
//! transition band about where soxr HQ has it) and with both blocks even, so that the
//! linear-phase delay is a whole number of output samples and the output lines up with the
//! input exactly. For 16 kHz -> 22.05 kHz that is 640 -> 882: flat (to 1e-3) up to 98% of the
//! 8 kHz Nyquist, half amplitude near 98.9%, below -120 dB from 101%. That is a little wider and
//! steeper than soxr HQ (flat to 91%, -3 dB at 95%); on the speech-commands fixtures the MFCCs
//! after resampling differ from librosa's by under 1% of their largest value. The output length
//! is `ceil(n * to / from)`, as `librosa.resample(..., fix=True)` returns; past the end of the
//! clip the input continues with zeros.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler as _, WindowFunction};

use crate::error::{AudioError, Result};

/// The highest sample rate accepted, in Hz (the highest rate audio interfaces record at). A
/// WAV header can claim any 32-bit rate; the resampler's FFT blocks grow with the rates, so an
/// absurd one would allocate gigabytes.
pub const MAX_SAMPLE_RATE: u32 = 768_000;

/// The longest clip resampled, in seconds (one hour): the output length is `n * to / from`, so
/// a file claiming 1 Hz would otherwise ask for a resampled signal of terabytes. Longer
/// recordings should be split.
pub const MAX_RESAMPLE_SECONDS: u64 = 3600;

/// The largest filter block planned (samples at either rate); see [`Resampler::new`].
const MAX_BLOCK: usize = 1 << 22;

/// Minimum filter length in samples at the lower of the two rates (see the module docs).
const LOWER_RATE_TAPS: usize = 320;

/// A reusable resampler between two fixed rates (building one plans FFTs; reuse it for many
/// clips). Works in `f64` internally.
pub struct Resampler {
    from: u32,
    to: u32,
    inner: Option<Fft<f64>>,
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampler").field("from", &self.from).field("to", &self.to).finish()
    }
}

impl Resampler {
    /// Plans a resampler from `from` Hz to `to` Hz. Equal rates give a pass-through.
    ///
    /// Errors: [`AudioError::Resample`] if a rate is zero.
    pub fn new(from: u32, to: u32) -> Result<Self> {
        let err = |reason: String| AudioError::Resample { path: None, from, to, reason };
        if from == 0 || to == 0 {
            return Err(err("sample rates must be > 0".into()));
        }
        if from > MAX_SAMPLE_RATE || to > MAX_SAMPLE_RATE {
            return Err(err(format!("sample rates above {MAX_SAMPLE_RATE} Hz are not supported")));
        }
        if from == to {
            return Ok(Resampler { from, to, inner: None });
        }
        let (f, t) = (from as usize, to as usize);
        let g = gcd(f, t);
        let (block_in, block_out) = (f / g, t / g);
        // Smallest multiple k of the minimal blocks whose lower-rate block reaches the target
        // length and whose two blocks are both even (whole-sample delay).
        let lower = block_in.min(block_out);
        let mut k = LOWER_RATE_TAPS.div_ceil(lower).max(1);
        while (k * block_in) % 2 == 1 || (k * block_out) % 2 == 1 {
            k += 1;
        }
        let fft_in = k * block_in;
        // rates like 1 Hz -> 22050 Hz need filter blocks of millions of samples
        if fft_in.max(k * block_out) > MAX_BLOCK {
            return Err(err(format!(
                "the rates need filter blocks of {} samples (over {MAX_BLOCK}); resample in two steps",
                fft_in.max(k * block_out)
            )));
        }
        // Two sub-blocks per process call: little call overhead, little zero padding at the end.
        let sub_chunks = 2;
        let inner = Fft::<f64>::new_custom(
            f,
            t,
            fft_in * sub_chunks,
            sub_chunks,
            1,
            WindowFunction::BlackmanHarris2,
            FixedSync::Both,
        )
        .map_err(|e| err(e.to_string()))?;
        Ok(Resampler { from, to, inner: Some(inner) })
    }

    /// Source rate in Hz.
    pub fn from_rate(&self) -> u32 {
        self.from
    }

    /// Target rate in Hz.
    pub fn to_rate(&self) -> u32 {
        self.to
    }

    /// Number of output samples for `n` input samples: `ceil(n * to / from)`.
    pub fn output_len(&self, n: usize) -> usize {
        (n as u128 * u128::from(self.to)).div_ceil(u128::from(self.from)) as usize
    }

    /// Resamples one mono clip `[n] -> [ceil(n * to / from)]`.
    ///
    /// Errors: [`AudioError::NonFinite`] for a NaN or infinite sample (the FFT would spread it
    /// over the whole clip), [`AudioError::TooLarge`] for a clip over [`MAX_RESAMPLE_SECONDS`],
    /// [`AudioError::Resample`] if rubato fails.
    pub fn process(&mut self, samples: &[f32]) -> Result<Vec<f32>> {
        check_finite(samples)?;
        let want = self.output_len(samples.len());
        let Some(inner) = self.inner.as_mut() else {
            return Ok(samples.to_vec());
        };
        if samples.len() as u64 > MAX_RESAMPLE_SECONDS * u64::from(self.from) {
            return Err(too_long(samples.len(), self.from));
        }
        if samples.is_empty() {
            return Ok(Vec::new());
        }
        let (from, to) = (self.from, self.to);
        let err = |reason: String| AudioError::Resample { path: None, from, to, reason };
        // Driven chunk by chunk rather than with rubato's `process_all`, which leaves the
        // start-up delay untrimmed when the clip is shorter than one chunk. Past the end the
        // input continues with zeros (what soxr flushes with); the first `output_delay` output
        // samples are the filter's latency and are dropped.
        inner.reset();
        let delay = inner.output_delay();
        let chunk_in = inner.input_frames_next();
        let mut inbuf = vec![0.0f64; chunk_in];
        let mut outbuf = vec![0.0f64; inner.output_frames_max()];
        let mut out: Vec<f64> = Vec::with_capacity(delay + want + outbuf.len());
        let mut pos = 0;
        while out.len() < delay + want {
            let take = samples.len().saturating_sub(pos).min(chunk_in);
            for (d, &s) in inbuf.iter_mut().zip(&samples[pos..pos + take]) {
                *d = f64::from(s);
            }
            inbuf[take..].fill(0.0);
            pos += take;
            let input = InterleavedSlice::new(&inbuf, 1, chunk_in).map_err(|e| err(e.to_string()))?;
            let cap = outbuf.len();
            let mut output = InterleavedSlice::new_mut(&mut outbuf, 1, cap).map_err(|e| err(e.to_string()))?;
            let (_, n_out) = inner.process_into_buffer(&input, &mut output, None).map_err(|e| err(e.to_string()))?;
            out.extend_from_slice(&outbuf[..n_out]);
        }
        Ok(out[delay..delay + want].iter().map(|&v| v as f32).collect())
    }
}

/// Resamples a mono clip from `from` Hz to `to` Hz (see [`Resampler`]); output length
/// `ceil(n * to / from)`. For many clips, build one [`Resampler`] and reuse it.
pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>> {
    // the cheap checks first: planning the resampler allocates its filter
    check_finite(samples)?;
    if from > 0 && from != to && samples.len() as u64 > MAX_RESAMPLE_SECONDS * u64::from(from) {
        return Err(too_long(samples.len(), from));
    }
    Resampler::new(from, to)?.process(samples)
}

/// [`AudioError::NonFinite`] naming the first NaN or infinite sample, if any.
pub fn check_finite(samples: &[f32]) -> Result<()> {
    match samples.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(AudioError::NonFinite { path: None, index, value: samples[index] }),
        None => Ok(()),
    }
}

fn too_long(n: usize, from: u32) -> AudioError {
    AudioError::TooLarge {
        path: None,
        reason: format!(
            "{n} samples at {from} Hz is over the {MAX_RESAMPLE_SECONDS} s resampled at once; split the recording"
        ),
    }
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    fn sine(freq: f64, rate: u32, n: usize) -> Vec<f32> {
        (0..n).map(|i| (2.0 * PI * freq * i as f64 / f64::from(rate)).sin() as f32).collect()
    }

    /// Amplitude of `freq` in `y` (least squares against sin and cos over the middle half).
    fn amplitude(y: &[f32], freq: f64, rate: u32) -> f64 {
        let (a, b) = (y.len() / 4, 3 * y.len() / 4);
        let (mut s, mut c) = (0.0, 0.0);
        for (i, &v) in y.iter().enumerate().take(b).skip(a) {
            let ph = 2.0 * PI * freq * i as f64 / f64::from(rate);
            s += f64::from(v) * ph.sin();
            c += f64::from(v) * ph.cos();
        }
        2.0 * (s * s + c * c).sqrt() / (b - a) as f64
    }

    #[test]
    fn lengths_follow_librosa() {
        let r = Resampler::new(16000, 22050).unwrap();
        assert_eq!(r.output_len(16000), 22050);
        assert_eq!(r.output_len(1), 2);
        let y = resample(&vec![0.1; 16001], 16000, 22050).unwrap();
        assert_eq!(y.len(), 22052); // ceil(16001 * 1.378125) = 22052
        assert_eq!(resample(&[0.5; 10], 8000, 8000).unwrap(), vec![0.5; 10]);
        assert!(resample(&[], 8000, 16000).unwrap().is_empty());
        assert!(matches!(Resampler::new(0, 16000), Err(AudioError::Resample { .. })));
    }

    #[test]
    fn upsampled_sine_is_aligned_and_exact() {
        for (from, to) in [(16000u32, 22050u32), (8000, 22050), (44100, 22050), (22050, 16000)] {
            let f = 1000.0;
            let x = sine(f, from, from as usize / 2);
            let y = resample(&x, from, to).unwrap();
            let expected = sine(f, to, y.len());
            let (a, b) = (y.len() / 8, 7 * y.len() / 8);
            let err = y[a..b].iter().zip(&expected[a..b]).map(|(p, q)| (p - q).abs()).fold(0.0f32, f32::max);
            assert!(err < 1e-4, "{from}->{to}: max error {err}");
        }
    }

    #[test]
    fn short_clips_are_aligned_too() {
        // Shorter than one processing chunk, and a single impulse: its peak must stay in place.
        let mut x = vec![0.0f32; 300];
        x[100] = 1.0;
        let y = resample(&x, 16000, 32000).unwrap();
        assert_eq!(y.len(), 600);
        let peak = (0..y.len()).max_by(|&a, &b| y[a].abs().total_cmp(&y[b].abs())).unwrap();
        assert_eq!(peak, 200);
        assert!((y[200] - 1.0).abs() < 0.05, "{}", y[200]);
        // A Hann-tapered 440 Hz burst (band-limited, no edges) resampled everywhere exactly.
        let burst = |i: f64, rate: f64, n: f64| {
            let t = i / rate;
            let env = 0.5 - 0.5 * (2.0 * PI * t * 8000.0 / n).cos();
            (env * (2.0 * PI * 440.0 * t).sin()) as f32
        };
        let x: Vec<f32> = (0..400).map(|i| burst(i as f64, 8000.0, 400.0)).collect();
        let y = resample(&x, 8000, 22050).unwrap();
        assert_eq!(y.len(), 1103);
        let err = (0..y.len()).map(|i| (y[i] - burst(i as f64, 22050.0, 400.0)).abs()).fold(0.0f32, f32::max);
        assert!(err < 1e-4, "max error {err}");
    }

    #[test]
    fn response_resembles_soxr_hq() {
        // Upsampling 16 kHz -> 22.05 kHz: the lower Nyquist is 8 kHz.
        let (from, to) = (16000u32, 22050u32);
        for (rel, lo, hi) in
            [(0.5, 0.999, 1.001), (0.9, 0.999, 1.001), (0.98, 0.95, 1.001), (0.99, 0.2, 0.6), (1.01, 0.0, 1e-6)]
        {
            let f = rel * 8000.0;
            let y = resample(&sine(f, from, 16000), from, to).unwrap();
            let a = amplitude(&y, f, to);
            assert!(a >= lo && a <= hi, "gain at {rel} x Nyquist is {a}, expected {lo}..{hi}");
        }
        // Downsampling 22.05 kHz -> 16 kHz: a tone above the new Nyquist must vanish.
        let y = resample(&sine(9000.0, 22050, 22050), 22050, 16000).unwrap();
        let peak = y[2000..14000].iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(peak < 1e-5, "9 kHz leaked into 16 kHz output at {peak}");
    }
}
