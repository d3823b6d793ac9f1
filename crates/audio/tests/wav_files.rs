//! WAV files on disk: every bad input is a typed [`AudioError`] that names the file (never a
//! panic), and every supported encoding decodes to librosa's scaling. Files are built in a
//! temporary directory (bad ones by hand, good ones with `hound`'s writer).

use std::path::{Path, PathBuf};

use convnet_audio::{
    AudioError, MfccConfig, MfccTransform, TargetRate, TfMfccConfig, TfMfccTransform, Transform, WavSampleFormat, load,
    read_wav,
};

/// A canonical 44-byte-header WAV: format tag, channels, rate, bits, data, declared data size.
fn raw_wav(tag: u16, channels: u16, rate: u32, bits: u16, data: &[u8], declared: Option<u32>) -> Vec<u8> {
    let block = channels * bits.div_ceil(8);
    let mut v = Vec::new();
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&tag.to_le_bytes());
    v.extend_from_slice(&channels.to_le_bytes());
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
    v.extend_from_slice(&block.to_le_bytes());
    v.extend_from_slice(&bits.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&declared.unwrap_or(data.len() as u32).to_le_bytes());
    v.extend_from_slice(data);
    v
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Asserts the error names `path` in its message and returns it.
fn err_naming(path: &Path, r: Result<impl std::fmt::Debug, AudioError>) -> AudioError {
    let e = r.expect_err("expected an error");
    let msg = e.to_string();
    assert!(msg.contains(&path.display().to_string()), "message does not name the file: {msg}");
    e
}

#[test]
fn bad_files_are_typed_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mfcc = MfccTransform::new(MfccConfig::new(16000, 40)).unwrap();

    let p = write(d, "mp3.wav", b"ID3\x04\x00\x00\x00\x00\x00\x00 not a wave file at all");
    assert!(matches!(err_naming(&p, read_wav(&p)), AudioError::NotWav { .. }));
    assert!(matches!(err_naming(&p, mfcc.apply_file(&p)), AudioError::NotWav { .. }));

    let p = write(d, "empty_file.wav", b"");
    assert!(matches!(err_naming(&p, read_wav(&p)), AudioError::NotWav { .. }));

    let pcm: Vec<u8> = (0..1000i16).flat_map(|s| (s * 30).to_le_bytes()).collect();
    let p = write(d, "truncated.wav", &raw_wav(1, 1, 16000, 16, &pcm, Some(32000)));
    match err_naming(&p, load(&p, TargetRate::Native)) {
        AudioError::Truncated { expected, got, .. } => assert_eq!((expected, got), (16000, 1000)),
        other => panic!("expected Truncated, got {other}"),
    }

    let p = write(d, "alaw.wav", &raw_wav(6, 1, 8000, 8, &[0xd5; 800], None));
    match err_naming(&p, read_wav(&p)) {
        AudioError::Unsupported { encoding, .. } => assert!(encoding.contains("A-law"), "{encoding}"),
        other => panic!("expected Unsupported, got {other}"),
    }

    let p = write(d, "zero_length.wav", &raw_wav(1, 2, 16000, 16, &[], None));
    assert!(matches!(err_naming(&p, load(&p, TargetRate::default())), AudioError::Empty { .. }));

    // Valid but shorter than one analysis window: n_fft 2048 for librosa, 480 for TensorFlow.
    let short: Vec<u8> = (0..400i16).flat_map(|s| (s * 50).to_le_bytes()).collect();
    let p = write(d, "short.wav", &raw_wav(1, 1, 16000, 16, &short, None));
    match err_naming(&p, mfcc.apply_file(&p)) {
        AudioError::TooShort { samples, needed, path } => {
            assert_eq!((samples, needed), (400, 2048));
            assert_eq!(path.as_deref(), Some(p.as_path()));
        }
        other => panic!("expected TooShort, got {other}"),
    }
    let tf = TfMfccTransform::new(TfMfccConfig::default()).unwrap();
    assert!(matches!(err_naming(&p, tf.apply_file(&p)), AudioError::TooShort { needed: 480, .. }));

    let p = d.join("missing.wav");
    assert!(matches!(err_naming(&p, read_wav(&p)), AudioError::Io { .. }));
}

/// Writes `samples` (interleaved) with hound in the given format.
fn hound_file<S: hound::Sample + Copy>(path: &Path, channels: u16, bits: u16, float: bool, samples: &[S]) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: 22050,
        bits_per_sample: bits,
        sample_format: if float { hound::SampleFormat::Float } else { hound::SampleFormat::Int },
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

#[test]
fn encodings_decode_with_librosa_scaling() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let p = d.join("u8.wav");
    hound_file(&p, 1, 8, false, &[-128i8, 0, 64, 127]);
    let w = read_wav(&p).unwrap();
    assert_eq!((w.info.bits_per_sample, w.info.sample_format), (8, WavSampleFormat::Int));
    assert_eq!(w.samples, vec![-1.0, 0.0, 0.5, 127.0 / 128.0]);

    let p = d.join("s24.wav");
    hound_file(&p, 1, 24, false, &[-(1i32 << 23), 1 << 21, (1 << 23) - 1]);
    assert_eq!(read_wav(&p).unwrap().samples, vec![-1.0, 0.25, ((1 << 23) - 1) as f32 / (1 << 23) as f32]);

    let p = d.join("s32.wav");
    hound_file(&p, 1, 32, false, &[i32::MIN, 1 << 29, -(1 << 28)]);
    assert_eq!(read_wav(&p).unwrap().samples, vec![-1.0, 0.25, -0.125]);

    let p = d.join("f32.wav");
    hound_file(&p, 1, 32, true, &[0.5f32, -0.25, 1.25]);
    let w = read_wav(&p).unwrap();
    assert_eq!(w.info.sample_format, WavSampleFormat::Float);
    assert_eq!(w.samples, vec![0.5, -0.25, 1.25]);

    // Stereo 16-bit: mixed to mono as the mean of the channels, then resampled on request.
    let p = d.join("stereo.wav");
    let frames: Vec<i16> = (0..22050).flat_map(|i| [(i % 200) as i16 * 100, -((i % 50) as i16) * 100]).collect();
    hound_file(&p, 2, 16, false, &frames);
    let native = load(&p, TargetRate::Native).unwrap();
    assert_eq!((native.sample_rate, native.samples.len()), (22050, 22050));
    for (i, &v) in native.samples.iter().enumerate().take(500) {
        let want = (f32::from(frames[2 * i]) / 32768.0 + f32::from(frames[2 * i + 1]) / 32768.0) / 2.0;
        assert!((v - want).abs() < 1e-7, "frame {i}: {v} vs {want}");
    }
    let down = load(&p, TargetRate::Hz(16000)).unwrap();
    assert_eq!((down.sample_rate, down.samples.len()), (16000, 16000));
    assert!((down.duration() - 1.0).abs() < 1e-9);
}
