//! WAV decoding with `hound`, scaled and mixed the way `librosa.load` does it (soundfile /
//! libsndfile underneath): integer PCM is divided by `2^(bits-1)` (int16 / 32768, 8-bit unsigned
//! is `(u8 - 128) / 128`), 32-bit float is taken as is, and several channels are mixed to mono as
//! their mean. [`load`] then resamples to a target rate (librosa's default is 22050 Hz).

use std::io::Cursor;
use std::path::Path;

use crate::error::{AudioError, Result};
use crate::resample::{MAX_SAMPLE_RATE, check_finite, resample};

/// librosa.load's default target rate.
pub const LIBROSA_DEFAULT_SR: u32 = 22050;

/// How samples are stored in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WavSampleFormat {
    /// Signed integer PCM (8-bit files are unsigned on disk and shifted to signed).
    Int,
    /// IEEE float.
    Float,
}

/// What the WAV header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WavInfo {
    /// Frames per second.
    pub sample_rate: u32,
    /// Interleaved channels.
    pub channels: u16,
    /// Bits per sample (valid bits for WAVE_FORMAT_EXTENSIBLE).
    pub bits_per_sample: u16,
    /// Integer or float.
    pub sample_format: WavSampleFormat,
    /// Frames (samples per channel).
    pub frames: usize,
}

/// A decoded WAV file: interleaved samples scaled to `[-1, 1)` as librosa / soundfile scale them.
#[derive(Debug, Clone, PartialEq)]
pub struct Wav {
    /// The header.
    pub info: WavInfo,
    /// `[frames, channels]` interleaved samples.
    pub samples: Vec<f32>,
}

impl Wav {
    /// Mixes the channels to mono as `librosa.to_mono` does: the mean of the channels per frame.
    /// `[frames, channels] -> [frames]`.
    pub fn to_mono(&self) -> Vec<f32> {
        let c = usize::from(self.info.channels);
        if c == 1 {
            return self.samples.clone();
        }
        let inv = 1.0 / c as f32;
        self.samples.chunks_exact(c).map(|frame| frame.iter().sum::<f32>() * inv).collect()
    }

    /// One channel, `[frames]`; `None` if `channel >= channels`.
    pub fn channel(&self, channel: usize) -> Option<Vec<f32>> {
        let c = usize::from(self.info.channels);
        (channel < c).then(|| self.samples.iter().skip(channel).step_by(c).copied().collect())
    }
}

/// The rate [`load`] returns samples at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetRate {
    /// Keep the file's own rate (librosa's `sr=None`).
    Native,
    /// Resample to this many Hz.
    Hz(u32),
}

impl Default for TargetRate {
    /// librosa.load's default, 22050 Hz.
    fn default() -> Self {
        TargetRate::Hz(LIBROSA_DEFAULT_SR)
    }
}

/// Mono samples at a known rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Audio {
    /// `[n]` samples.
    pub samples: Vec<f32>,
    /// Samples per second.
    pub sample_rate: u32,
}

impl Audio {
    /// Length in seconds.
    pub fn duration(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.sample_rate.max(1))
    }
}

/// Reads `path` like `librosa.load(path, sr=target, mono=True)`: decode, mix to mono, resample
/// (band-limited, see [`resample`]) unless `target` is `Native` or equals the file's rate.
///
/// Errors: [`AudioError::Io`], [`AudioError::NotWav`], [`AudioError::Unsupported`],
/// [`AudioError::Truncated`], [`AudioError::Empty`], [`AudioError::NonFinite`],
/// [`AudioError::TooLarge`], [`AudioError::Resample`].
pub fn load(path: impl AsRef<Path>, target: TargetRate) -> Result<Audio> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| AudioError::Io { path: path.to_path_buf(), source })?;
    load_bytes(&bytes, path, target)
}

/// [`load`] from the bytes of a WAV file already in memory; `path` only names them in errors.
/// The file loader runs this, so the fuzz test covers it.
pub fn load_bytes(bytes: &[u8], path: &Path, target: TargetRate) -> Result<Audio> {
    let wav = decode_wav(bytes, path)?;
    let mono = wav.to_mono();
    let native = wav.info.sample_rate;
    match target {
        TargetRate::Hz(sr) if sr != native => {
            Ok(Audio { samples: resample(&mono, native, sr).map_err(|e| e.in_file(path))?, sample_rate: sr })
        }
        _ => Ok(Audio { samples: mono, sample_rate: native }),
    }
}

/// Reads and decodes the WAV file at `path` (all channels). See [`decode_wav`].
pub fn read_wav(path: impl AsRef<Path>) -> Result<Wav> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| AudioError::Io { path: path.to_path_buf(), source })?;
    decode_wav(&bytes, path)
}

/// Decodes WAV bytes; `path` is only used in error messages.
///
/// Accepts PCM 8/16/24/32-bit (plain or WAVE_FORMAT_EXTENSIBLE) and 32-bit float, any rate and
/// channel count. Never panics on malformed input.
pub fn decode_wav(bytes: &[u8], path: &Path) -> Result<Wav> {
    let not_wav = |reason: &str| AudioError::NotWav { path: path.to_path_buf(), reason: reason.to_string() };
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(not_wav("no RIFF/WAVE header (the file does not start with `RIFF....WAVE`)"));
    }
    let fmt = scan_fmt(bytes);
    let reader = hound::WavReader::new(Cursor::new(bytes)).map_err(|e| match e {
        hound::Error::Unsupported => unsupported(path, fmt),
        hound::Error::FormatError(reason) => match fmt {
            // hound only knows 32-bit float; name the real encoding instead of its message.
            Some(f) if f.tag == WAVE_FORMAT_IEEE_FLOAT && f.bits != 32 => unsupported(path, fmt),
            _ => not_wav(reason),
        },
        // The bytes are in memory: the only I/O failure left is running out of them.
        hound::Error::IoError(_) => not_wav("the file ends inside the header or before a `data` chunk"),
        other => not_wav(&other.to_string()),
    })?;
    let spec = reader.spec();
    let channels = spec.channels;
    if channels == 0 {
        return Err(not_wav("the header declares zero channels"));
    }
    if spec.sample_rate == 0 || spec.sample_rate > MAX_SAMPLE_RATE {
        return Err(not_wav(&format!(
            "the header declares a sample rate of {} Hz (supported: 1 to {MAX_SAMPLE_RATE} Hz)",
            spec.sample_rate
        )));
    }
    let expected = reader.len() as usize;
    let sample_format = match spec.sample_format {
        hound::SampleFormat::Int => WavSampleFormat::Int,
        hound::SampleFormat::Float => WavSampleFormat::Float,
    };
    let bits = spec.bits_per_sample;
    let samples = match sample_format {
        WavSampleFormat::Float => {
            if bits != 32 {
                return Err(unsupported(path, fmt));
            }
            let samples = collect(reader.into_samples::<f32>(), expected, bytes.len(), path, |v| v)?;
            // only float files can hold NaN or inf; refuse them here, naming the file
            check_finite(&samples).map_err(|e| e.in_file(path))?;
            samples
        }
        WavSampleFormat::Int => {
            if !(1..=32).contains(&bits) {
                return Err(unsupported(path, fmt));
            }
            let scale = 1.0 / (1u64 << (bits - 1)) as f64;
            collect(reader.into_samples::<i32>(), expected, bytes.len(), path, |v| (f64::from(v) * scale) as f32)?
        }
    };
    if samples.is_empty() {
        return Err(AudioError::Empty { path: path.to_path_buf() });
    }
    Ok(Wav {
        info: WavInfo {
            sample_rate: spec.sample_rate,
            channels,
            bits_per_sample: bits,
            sample_format,
            frames: samples.len() / usize::from(channels),
        },
        samples,
    })
}

/// Reads every sample, turning an early end of data into [`AudioError::Truncated`].
fn collect<S: hound::Sample>(
    iter: hound::WavIntoSamples<Cursor<&[u8]>, S>,
    expected: usize,
    available_bytes: usize,
    path: &Path,
    convert: impl Fn(S) -> f32,
) -> Result<Vec<f32>> {
    // A lying header must not make us reserve more than the bytes could hold.
    let mut out = Vec::with_capacity(expected.min(available_bytes));
    for s in iter {
        match s {
            Ok(v) => out.push(convert(v)),
            // In-memory bytes: an I/O error means the data ran out.
            Err(hound::Error::IoError(_)) => {
                return Err(AudioError::Truncated { path: path.to_path_buf(), expected, got: out.len() });
            }
            Err(e) => return Err(AudioError::NotWav { path: path.to_path_buf(), reason: e.to_string() }),
        }
    }
    Ok(out)
}

const WAVE_FORMAT_IEEE_FLOAT: u16 = 0x0003;
const WAVE_FORMAT_EXTENSIBLE: u16 = 0xfffe;

/// The format tag and bits per sample of the `fmt ` chunk (the sub-format's tag for
/// WAVE_FORMAT_EXTENSIBLE), for error messages.
#[derive(Debug, Clone, Copy)]
struct FmtTag {
    tag: u16,
    bits: u16,
}

/// Walks the RIFF chunks looking for `fmt `; `None` if it is missing or cut short.
fn scan_fmt(bytes: &[u8]) -> Option<FmtTag> {
    let le16 = |at: usize| bytes.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let le32 = |at: usize| bytes.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let mut pos = 12usize;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let len = le32(pos + 4)? as usize;
        if id == b"fmt " {
            let mut tag = le16(pos + 8)?;
            let bits = le16(pos + 22)?;
            if tag == WAVE_FORMAT_EXTENSIBLE {
                // The sub-format GUID starts 24 bytes into the chunk; its first two bytes are the tag.
                tag = le16(pos + 8 + 24).unwrap_or(tag);
            }
            return Some(FmtTag { tag, bits });
        }
        pos = pos.checked_add(8)?.checked_add(len + (len & 1))?;
    }
    None
}

/// [`AudioError::Unsupported`] naming the encoding found in the header.
fn unsupported(path: &Path, fmt: Option<FmtTag>) -> AudioError {
    let encoding = match fmt {
        Some(FmtTag { tag, bits }) => {
            let name = match tag {
                0x0001 => "PCM",
                0x0002 => "Microsoft ADPCM",
                0x0003 => "IEEE float",
                0x0006 => "A-law",
                0x0007 => "mu-law",
                0x0011 => "IMA ADPCM",
                0x0031 => "GSM 6.10",
                0x0050 => "MPEG",
                0x0055 => "MPEG layer 3",
                _ => "unknown",
            };
            format!("format tag {tag:#06x} ({name}), {bits} bits per sample")
        }
        None => "unknown (no readable `fmt ` chunk)".to_string(),
    };
    AudioError::Unsupported { path: path.to_path_buf(), encoding }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A canonical 44-byte-header WAV with the given format fields and raw data bytes.
    fn wav_bytes(tag: u16, channels: u16, rate: u32, bits: u16, data: &[u8], declared: Option<u32>) -> Vec<u8> {
        let block = channels * bits.div_ceil(8);
        let mut v = Vec::new();
        v.extend_from_slice(b"RIFF");
        v.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
        v.extend_from_slice(b"WAVEfmt ");
        v.extend_from_slice(&16u32.to_le_bytes());
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&channels.to_le_bytes());
        v.extend_from_slice(&rate.to_le_bytes());
        v.extend_from_slice(&rate.wrapping_mul(u32::from(block)).to_le_bytes());
        v.extend_from_slice(&block.to_le_bytes());
        v.extend_from_slice(&bits.to_le_bytes());
        v.extend_from_slice(b"data");
        v.extend_from_slice(&declared.unwrap_or(data.len() as u32).to_le_bytes());
        v.extend_from_slice(data);
        v
    }

    fn p() -> &'static Path {
        Path::new("mem.wav")
    }

    #[test]
    fn pcm16_scaling_and_stereo_mix() {
        let frames: [[i16; 2]; 3] = [[16384, -16384], [-32768, -32768], [32767, 1]];
        let data: Vec<u8> = frames.iter().flatten().flat_map(|s| s.to_le_bytes()).collect();
        let wav = decode_wav(&wav_bytes(1, 2, 8000, 16, &data, None), p()).unwrap();
        assert_eq!(wav.info.channels, 2);
        assert_eq!(wav.info.frames, 3);
        assert_eq!(wav.samples, vec![0.5, -0.5, -1.0, -1.0, 32767.0 / 32768.0, 1.0 / 32768.0]);
        assert_eq!(wav.to_mono(), vec![0.0, -1.0, (32767.0 / 32768.0 + 1.0 / 32768.0) / 2.0]);
        assert_eq!(wav.channel(1).unwrap(), vec![-0.5, -1.0, 1.0 / 32768.0]);
        assert!(wav.channel(2).is_none());
    }

    #[test]
    fn pcm8_is_unsigned_on_disk() {
        let wav = decode_wav(&wav_bytes(1, 1, 8000, 8, &[0, 128, 255, 64], None), p()).unwrap();
        assert_eq!(wav.samples, vec![-1.0, 0.0, 127.0 / 128.0, -0.5]);
        assert_eq!(wav.info.bits_per_sample, 8);
    }

    #[test]
    fn pcm24_and_pcm32() {
        let s24: [i32; 3] = [1 << 22, -(1 << 23), (1 << 23) - 1];
        let data: Vec<u8> = s24.iter().flat_map(|s| s.to_le_bytes()[..3].to_vec()).collect();
        let wav = decode_wav(&wav_bytes(1, 1, 44100, 24, &data, None), p()).unwrap();
        assert_eq!(wav.samples, vec![0.5, -1.0, ((1 << 23) - 1) as f32 / (1 << 23) as f32]);

        let s32: [i32; 3] = [1 << 30, i32::MIN, -(1 << 29)];
        let data: Vec<u8> = s32.iter().flat_map(|s| s.to_le_bytes()).collect();
        let wav = decode_wav(&wav_bytes(1, 1, 48000, 32, &data, None), p()).unwrap();
        assert_eq!(wav.samples, vec![0.5, -1.0, -0.25]);
        assert_eq!(wav.info.sample_rate, 48000);
    }

    #[test]
    fn float32_taken_as_is_and_three_channels_mixed() {
        let s: [f32; 6] = [0.25, -0.75, 1.5, 0.1, 0.2, 0.3];
        let data: Vec<u8> = s.iter().flat_map(|v| v.to_le_bytes()).collect();
        let wav = decode_wav(&wav_bytes(3, 3, 16000, 32, &data, None), p()).unwrap();
        assert_eq!(wav.info.sample_format, WavSampleFormat::Float);
        assert_eq!(wav.samples, s.to_vec());
        let mono = wav.to_mono();
        assert!((mono[0] - 1.0 / 3.0).abs() < 1e-7 && (mono[1] - 0.2).abs() < 1e-7);
    }

    #[test]
    fn not_riff_wave() {
        let e = decode_wav(b"ID3\x03 this is an mp3", p()).unwrap_err();
        assert!(matches!(e, AudioError::NotWav { .. }), "{e}");
        assert!(e.to_string().starts_with("mem.wav: not a valid WAV file"), "{e}");
        let mut riff_avi = wav_bytes(1, 1, 8000, 16, &[0, 0], None);
        riff_avi[8..12].copy_from_slice(b"AVI ");
        assert!(matches!(decode_wav(&riff_avi, p()), Err(AudioError::NotWav { .. })));
        // Header cut inside the fmt chunk.
        let cut = &wav_bytes(1, 1, 8000, 16, &[0, 0], None)[..20];
        assert!(matches!(decode_wav(cut, p()), Err(AudioError::NotWav { .. })));
    }

    #[test]
    fn alaw_mulaw_and_f64_are_unsupported() {
        for (tag, bits, name) in [(6u16, 8u16, "A-law"), (7, 8, "mu-law"), (3, 64, "IEEE float")] {
            let e = decode_wav(&wav_bytes(tag, 1, 8000, bits, &[0; 16], None), p()).unwrap_err();
            match &e {
                AudioError::Unsupported { encoding, .. } => assert!(encoding.contains(name), "{encoding}"),
                other => panic!("expected Unsupported for tag {tag}, got {other}"),
            }
        }
    }

    #[test]
    fn truncated_data_chunk() {
        let data: Vec<u8> = (0..100i16).flat_map(|s| s.to_le_bytes()).collect();
        let e = decode_wav(&wav_bytes(1, 1, 8000, 16, &data, Some(400)), p()).unwrap_err();
        match e {
            AudioError::Truncated { expected, got, .. } => assert_eq!((expected, got), (200, 100)),
            other => panic!("expected Truncated, got {other}"),
        }
    }

    #[test]
    fn zero_length_audio() {
        let e = decode_wav(&wav_bytes(1, 1, 8000, 16, &[], None), p()).unwrap_err();
        assert!(matches!(e, AudioError::Empty { .. }), "{e}");
    }

    /// NaN and inf in a float WAV are an error naming the file and the first bad sample,
    /// whether or not the clip is resampled (the resampler used to panic on them).
    #[test]
    fn non_finite_float_samples_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let data: Vec<u8> = [0.25f32, -0.5, bad, 0.0].iter().flat_map(|v| v.to_le_bytes()).collect();
            let path = dir.path().join("bad.wav");
            std::fs::write(&path, wav_bytes(3, 1, 16000, 32, &data, None)).unwrap();
            for target in [TargetRate::Native, TargetRate::Hz(22050)] {
                match load(&path, target).unwrap_err() {
                    AudioError::NonFinite { path: Some(p), index: 2, value } => {
                        assert_eq!(p, path);
                        assert_eq!(value.to_bits(), bad.to_bits());
                    }
                    other => panic!("expected NonFinite at sample 2, got {other}"),
                }
            }
        }
        let e = resample(&[0.0, f32::NAN], 16000, 22050).unwrap_err();
        assert!(matches!(e, AudioError::NonFinite { path: None, index: 1, .. }), "{e}");
    }

    /// Absurd sample rates in a header are refused before the resampler plans its blocks.
    #[test]
    fn absurd_sample_rates_are_refused() {
        let data = [0u8; 64];
        for rate in [0, 1_000_000, 4_000_000_000] {
            let e = decode_wav(&wav_bytes(1, 1, rate, 16, &data, None), p()).unwrap_err();
            assert!(matches!(e, AudioError::NotWav { .. }), "{e}");
        }
        let e = decode_wav(&wav_bytes(1, 1, 1_000_000, 16, &data, None), p()).unwrap_err();
        assert!(e.to_string().contains("sample rate of 1000000 Hz"), "{e}");
        // 1 Hz is a valid header, but resampling it to 22050 Hz would allocate terabytes
        let e = resample(&vec![0.0; 1 << 16], 1, 22050).unwrap_err();
        assert!(matches!(e, AudioError::TooLarge { .. }), "{e}");
    }
}
