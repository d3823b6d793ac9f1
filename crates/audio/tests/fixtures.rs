//! Parity with the reference front ends on the fixtures in `$CONVNET_SHARED/fixtures/audio`
//! (made with librosa 0.11 and TensorFlow 2.21, see that folder's README and `index.json`):
//!
//! - `<name>.librosa.safetensors`: `y`, `mel_db`, `mfcc40` (file's own rate) within 1e-3 of the
//!   max abs value, computed both from the fixture's `y` and from the WAV decoded here;
//!   `mfcc40_22k` (after resampling to 22050 Hz) within 5e-2, since the resamplers differ.
//! - `<name>.tf.safetensors`: `spectrogram` `[1, 98, 257]` and `mfcc` `[1, 98, 40]` within 1e-3.
//!
//! Without `CONVNET_SHARED` the tests print a note and return.

use std::path::{Path, PathBuf};

use convnet_audio::{
    Features, MelSpectrogramConfig, MfccConfig, MfccExtractor, TargetRate, TfMfccConfig, TfMfccTransform,
    TfSpectrogramConfig, Transform, load, read_wav, tf_audio_spectrogram,
};
use safetensors::SafeTensors;

fn shared() -> Option<PathBuf> {
    match std::env::var_os("CONVNET_SHARED") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            eprintln!("CONVNET_SHARED is not set: skipping the audio fixture tests");
            None
        }
    }
}

/// One fixture entry of `index.json`.
struct Entry {
    name: String,
    wav: PathBuf,
    sr: u32,
    has_tf: bool,
}

fn entries(shared: &Path) -> Vec<Entry> {
    let index = shared.join("fixtures/audio/index.json");
    let text = std::fs::read_to_string(&index).unwrap_or_else(|e| panic!("{}: {e}", index.display()));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    for (name, v) in json.as_object().unwrap() {
        let Some(source) = v.get("source").and_then(|s| s.as_str()) else { continue };
        // `source` is relative to `datasets/` or, for speech commands words, to its subfolder.
        let datasets = shared.join("datasets");
        let wav = [datasets.join(source), datasets.join("speech_commands").join(source)]
            .into_iter()
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("{name}: source WAV {source} not found under {}", datasets.display()));
        out.push(Entry {
            name: name.clone(),
            wav,
            sr: v["sr"].as_u64().unwrap() as u32,
            has_tf: v.get("tf").is_some(),
        });
    }
    assert!(out.len() >= 5, "index.json lists {} clips", out.len());
    out
}

/// A tensor from a safetensors file as f32 values and its shape.
fn tensor(path: &Path, key: &str) -> (Vec<f32>, Vec<usize>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor(key).unwrap_or_else(|e| panic!("{}: {key}: {e}", path.display()));
    assert_eq!(t.dtype(), safetensors::Dtype::F32, "{}: {key}", path.display());
    let data = t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    (data, t.shape().to_vec())
}

/// max |got - want| / max |want|.
fn rel_err(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    got.iter().zip(want).fold(0.0f32, |m, (a, b)| m.max((a - b).abs())) / scale
}

fn check(what: &str, got: &Features, want: &[f32], shape: &[usize], tol: f32) -> f32 {
    assert_eq!(shape, [got.n_coeffs, got.frames], "{what}: shape");
    let e = rel_err(&got.data, want);
    eprintln!("{what}: max abs error / max abs value = {e:.2e} (tolerance {tol:.0e})");
    assert!(e <= tol, "{what}: relative error {e} > {tol}");
    e
}

fn extractor(sr: u32) -> MfccExtractor {
    MfccExtractor::new(MfccConfig::new(sr, 40).with_mel(MelSpectrogramConfig::new(sr))).unwrap()
}

#[test]
fn librosa_mel_db_and_mfcc40() {
    let Some(shared) = shared() else { return };
    for e in entries(&shared) {
        let fx = shared.join(format!("fixtures/audio/{}.librosa.safetensors", e.name));
        let (y, y_shape) = tensor(&fx, "y");
        let (mel_db, mel_shape) = tensor(&fx, "mel_db");
        let (mfcc40, mfcc_shape) = tensor(&fx, "mfcc40");

        // The WAV decoded here is librosa's `y` at the native rate.
        let wav = read_wav(&e.wav).unwrap();
        assert_eq!(wav.info.sample_rate, e.sr, "{}", e.name);
        let native = load(&e.wav, TargetRate::Native).unwrap();
        assert_eq!([native.samples.len()], y_shape[..], "{}: y length", e.name);
        let y_err = native.samples.iter().zip(&y).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(y_err == 0.0, "{}: decoded samples differ from librosa's by up to {y_err}", e.name);

        let mut ex = extractor(e.sr);
        for (src, samples) in [("fixture y", &y), ("WAV", &native.samples)] {
            let tag = format!("{} ({src})", e.name);
            check(&format!("{tag} mel_db"), &ex.log_mel(samples).unwrap(), &mel_db, &mel_shape, 1e-3);
            check(&format!("{tag} mfcc40"), &ex.mfcc(samples).unwrap(), &mfcc40, &mfcc_shape, 1e-3);
        }
    }
}

#[test]
fn librosa_mfcc40_after_resampling_to_22050() {
    let Some(shared) = shared() else { return };
    for e in entries(&shared) {
        let fx = shared.join(format!("fixtures/audio/{}.librosa.safetensors", e.name));
        let (want, shape) = tensor(&fx, "mfcc40_22k");
        let audio = load(&e.wav, TargetRate::default()).unwrap();
        assert_eq!(audio.sample_rate, 22050);
        let got = extractor(22050).mfcc(&audio.samples).unwrap();
        let tol = if e.sr == 22050 { 1e-3 } else { 5e-2 };
        check(&format!("{} mfcc40_22k (from {} Hz)", e.name, e.sr), &got, &want, &shape, tol);
    }
}

#[test]
fn tensorflow_spectrogram_and_mfcc() {
    let Some(shared) = shared() else { return };
    let t = TfMfccTransform::new(TfMfccConfig::default()).unwrap();
    let mut n = 0;
    for e in entries(&shared).into_iter().filter(|e| e.has_tf) {
        n += 1;
        let fx = shared.join(format!("fixtures/audio/{}.tf.safetensors", e.name));
        let (y, _) = tensor(&fx, "y");
        let (spec, spec_shape) = tensor(&fx, "spectrogram");
        let (mfcc, mfcc_shape) = tensor(&fx, "mfcc");
        // TensorFlow's layout is [channels, frames, bins]; compare frame-major.
        assert_eq!(spec_shape[0], 1);
        assert_eq!(mfcc_shape[0], 1);
        let spec_t = Features::from_frames_major(&spec, spec_shape[1], spec_shape[2]);
        let mfcc_t = Features::from_frames_major(&mfcc, mfcc_shape[1], mfcc_shape[2]);
        let wav = load(&e.wav, TargetRate::Native).unwrap();
        for (src, samples) in [("fixture y", &y), ("WAV", &wav.samples)] {
            let tag = format!("{} ({src})", e.name);
            let s = tf_audio_spectrogram(samples, &TfSpectrogramConfig::default()).unwrap();
            check(&format!("{tag} tf spectrogram"), &s, &spec_t.data, &[spec_t.n_coeffs, spec_t.frames], 1e-3);
            let m = t.apply(samples).unwrap();
            check(&format!("{tag} tf mfcc"), &m, &mfcc_t.data, &[mfcc_t.n_coeffs, mfcc_t.frames], 1e-3);
        }
        // The file-level entry point gives the same numbers.
        assert_eq!(t.apply_file(&e.wav).unwrap(), t.apply(&wav.samples).unwrap());
    }
    assert!(n >= 2, "expected the two speech-commands TF fixtures, found {n}");
}
