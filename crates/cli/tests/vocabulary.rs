//! One vocabulary (issue 22), through the built `convnet` binary: every classifying command
//! prints the one classification shape with `--json`, every benchmark the one benchmark shape,
//! and the older spellings give the same answers as the new ones. The models are small ones
//! with random weights, saved by the test (their answers' shape, not their accuracy, is tested).
#![cfg(target_os = "linux")]

mod common;

use common::tiny_mnist;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs `convnet --threads 2 args`, checks that it succeeded, and parses its whole stdout as
/// one JSON document.
fn json_of(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_convnet")).args(["--threads", "2"]).args(args).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "convnet {args:?} failed:\n{stdout}\n{stderr}");
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("convnet {args:?}: stdout is not one JSON document ({e}):\n{stdout}"))
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> =
        v.as_object().unwrap_or_else(|| panic!("not an object: {v}")).keys().map(|k| k.as_str()).collect();
    k.sort_unstable();
    k
}

/// The classification shape: one `{"file", "top"}` per file, in order; `top` has `k` classes
/// `{"index", "label", "probability"}`, most likely first, indices below `classes`, labels
/// from `label`, probabilities that are probabilities.
fn check_classifications(v: &Value, files: &[&Path], k: usize, classes: usize, label: &dyn Fn(u64) -> String) {
    let list = v.as_array().unwrap_or_else(|| panic!("not a list: {v}"));
    assert_eq!(list.len(), files.len(), "{v}");
    for (c, file) in list.iter().zip(files) {
        assert_eq!(keys(c), ["file", "top"], "{c}");
        assert_eq!(c["file"], s(file), "{c}");
        let top = c["top"].as_array().unwrap();
        assert_eq!(top.len(), k, "{c}");
        let mut last = f64::INFINITY;
        let mut total = 0.0;
        for t in top {
            assert_eq!(keys(t), ["index", "label", "probability"], "{t}");
            let (i, p) = (t["index"].as_u64().unwrap(), t["probability"].as_f64().unwrap());
            assert!(i < classes as u64, "{t}");
            assert_eq!(t["label"].as_str().unwrap(), label(i), "{t}");
            assert!((0.0..=1.0).contains(&p) && p <= last, "not most likely first: {c}");
            last = p;
            total += p;
        }
        if k == classes {
            assert!((total - 1.0).abs() < 1e-3, "the probabilities of all classes add up to {total}: {c}");
        }
    }
}

/// One second of a 440 Hz tone.
fn tone_wav(path: &Path, rate: u32) {
    let samples: Vec<f32> =
        (0..rate).map(|i| (i as f32 * 440.0 * std::f32::consts::TAU / rate as f32).sin() * 0.25).collect();
    convnet::speech::write_wav(path, &samples, rate).unwrap();
}

#[test]
fn every_classifier_prints_the_one_shape() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let digit = |i: u64| i.to_string();

    // mnist predict: the MNIST CNN, two images
    let mnist = dir.join("mnist_cnn.safetensors");
    convnet::models::mnist_cnn(1).unwrap().save(&mnist).unwrap();
    let (a, b) = (dir.join("a.png"), dir.join("b.png"));
    image::GrayImage::from_fn(28, 28, |x, y| image::Luma([((x * 9 + y) % 256) as u8])).save(&a).unwrap();
    image::GrayImage::from_fn(40, 30, |x, _| image::Luma([if x > 20 { 255 } else { 0 }])).save(&b).unwrap();
    let images = [a.as_path(), b.as_path()];
    let new = json_of(&["mnist", "predict", "--model", s(&mnist), "--json", s(&a), s(&b)]);
    check_classifications(&new, &images, 10, 10, &digit);
    assert_eq!(new, json_of(&["predict", "--model", s(&mnist), "--json", s(&a), s(&b)]), "the older spelling");
    let top3 = json_of(&["mnist", "predict", "--model", s(&mnist), "--top", "3", "--json", s(&a), s(&b)]);
    check_classifications(&top3, &images, 3, 10, &digit);
    assert_eq!(top3[1]["top"][0], new[1]["top"][0]);

    // sound-digit predict: the spoken-digit CNN with its front end (8 kHz, 20 MFCCs, 16 frames)
    let sound = dir.join("sound_digit_cnn.safetensors");
    let front_end = r#"{"sample_rate": 8000, "n_mfcc": 20, "frames": 16, "numpy_resize": false}"#;
    convnet::models::sound_digit_cnn(20, 16, 1)
        .unwrap()
        .save_with_metadata(&sound, [("sound_digit.front_end".to_string(), front_end.to_string())].into())
        .unwrap();
    let wav = dir.join("tone.wav");
    tone_wav(&wav, 8000);
    let v = json_of(&["sound-digit", "predict", "--model", s(&sound), "--json", s(&wav)]);
    check_classifications(&v, &[&wav], 10, 10, &digit);

    // speech predict: a tiny_conv keyword model over TensorFlow's front end
    use convnet::speech::{Architecture, FrontEnd, SpeechModel, SpeechModelInfo};
    let speech = dir.join("tiny_conv.safetensors");
    let labels: Vec<String> = ["_silence_", "_unknown_", "yes", "no"].map(String::from).to_vec();
    let fe = FrontEnd::default();
    let net = convnet::speech::create_model(Architecture::TinyConv, fe.input_shape(), labels.len(), 0.0, 1).unwrap();
    let info = SpeechModelInfo {
        architecture: Architecture::TinyConv,
        labels: labels.clone(),
        front_end: fe,
        trained_steps: 0,
        validation_accuracy: None,
        feature_norm: None,
        recognizer: None,
    };
    SpeechModel::new(net, info).unwrap().save(&speech).unwrap();
    let word = dir.join("word.wav");
    tone_wav(&word, 16000);
    let v = json_of(&["speech", "predict", "--model", s(&speech), "--json", s(&word), s(&wav)]);
    check_classifications(&v, &[&word, &wav], 3, 4, &|i| labels[i as usize].clone());
    let all = json_of(&["speech", "predict", "--model", s(&speech), "--top", "4", "--json", s(&word)]);
    check_classifications(&all, &[&word], 4, 4, &|i| labels[i as usize].clone());

    // images classify: a random-weight timm checkpoint of a small ImageNet model
    let weights = dir.join("mobilenetv3_small_050.safetensors");
    let model = convnet_zoo::create_model("mobilenetv3_small_050", convnet_zoo::ZooOpts::default()).unwrap();
    model.save_checkpoint(&weights).unwrap();
    let photo = dir.join("photo.png");
    image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([(x * 6) as u8, (y * 8) as u8, 90])).save(&photo).unwrap();
    let imagenet = convnet_zoo::labels::imagenet_classes();
    let args = ["--model", "mobilenetv3_small_050", "--weights", s(&weights), "--top", "3", "--json", s(&photo)];
    let v = json_of(&[&["images", "classify"][..], &args].concat());
    check_classifications(&v, &[&photo], 3, 1000, &|i| imagenet[i as usize].label.to_string());
    assert_eq!(v, json_of(&[&["classify"][..], &args].concat()), "the older spelling");
}

/// The benchmark shape: the shared fields, and rows that each say what they timed.
fn check_bench(v: &Value, benchmark: &str, model: &str, batch_sizes: &[u64], phases: &[&str]) {
    assert_eq!(v["benchmark"], benchmark, "{v}");
    // the architecture, with its pretrained tag where the zoo names one (`lenet5.untrained`)
    assert!(v["model"].as_str().is_some_and(|m| m.split('.').next() == Some(model)), "{v}");
    assert_eq!(v["threads"], 2, "{v}");
    assert!(v["peak_rss_bytes"].as_u64().is_some_and(|b| b > 1_000_000), "{v}");
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), batch_sizes.len(), "{v}");
    for ((row, &b), &phase) in rows.iter().zip(batch_sizes).zip(phases) {
        assert_eq!(row["phase"], phase, "{row}");
        assert_eq!(row["batch_size"], b, "{row}");
        let (ms, per_sec) = (row["median_ms"].as_f64().unwrap(), row["examples_per_sec"].as_f64().unwrap());
        assert!(ms > 0.0 && per_sec > 0.0, "{row}");
        // a row of the training phase of `bench mnist` divides an epoch by its batches; every
        // other row is one batch: either way examples per second and ms per batch agree
        assert!((per_sec * ms / 1e3 / b as f64 - 1.0).abs() < 0.05, "examples_per_sec and median_ms disagree: {row}");
    }
}

#[test]
fn every_benchmark_prints_the_one_shape() {
    let v = json_of(&["bench", "infer", "lenet5", "--batch-size", "1,2", "--runs", "1", "--warmup", "0", "--json"]);
    check_bench(&v, "infer", "lenet5", &[1, 2], &["inference", "inference"]);
    for row in v["rows"].as_array().unwrap() {
        assert!(row["gflops"].as_f64().is_some_and(|g| g > 0.0), "the table's GFLOP/s: {row}");
    }
    assert_eq!(v["input_size"], serde_json::json!([1, 32, 32]), "{v}");

    let v = json_of(&["bench", "train", "lenet5", "--batch-size", "2", "--steps", "2", "--warmup", "0", "--json"]);
    check_bench(&v, "train", "lenet5", &[2], &["training"]);
    assert_eq!(v["step_ms"].as_array().unwrap().len(), 2, "{v}");

    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("mnist");
    tiny_mnist(&data, 64, 32);
    let v = json_of(&["bench", "mnist", "--data", s(&data), "--batch-size", "32", "--json"]);
    check_bench(&v, "mnist", "mnist_cnn", &[32, 32], &["training", "inference"]);

    if let Some(speech) = shared("every_benchmark_prints_the_one_shape", "datasets/speech_commands") {
        let args =
            ["bench", "speech", "--data", s(&speech), "--steps", "2", "--batch-size", "4", "--stream-seconds", "2"];
        let v = json_of(&[&args[..], &["--json"]].concat());
        check_bench(&v, "speech", "conv", &[4], &["training"]);
    }
}

/// `$CONVNET_SHARED/needed` when it exists; otherwise `None` with a note, or a panic under
/// `CONVNET_REQUIRE_FIXTURES` (CI must not pass by skipping).
fn shared(test: &str, needed: &str) -> Option<PathBuf> {
    let required = std::env::var("CONVNET_REQUIRE_FIXTURES").is_ok_and(|v| !v.is_empty() && v != "0");
    let found = std::env::var_os("CONVNET_SHARED").map(|r| PathBuf::from(r).join(needed)).filter(|p| p.exists());
    if found.is_none() {
        assert!(!required, "{test}: $CONVNET_SHARED/{needed} is missing, and CONVNET_REQUIRE_FIXTURES is set");
        eprintln!("$CONVNET_SHARED/{needed} is missing: skipping that part of {test}");
    }
    found
}

/// `zoo summary` says which layout its shapes are in (NCHW, as the command line takes tensors),
/// its rows add up to the total, and a wrong channel count is not mistaken for a wrong layout.
#[test]
fn zoo_summary_is_nchw_and_counts_every_parameter() {
    let v = json_of(&["zoo", "summary", "resnet18", "--input-size", "3,64,64", "--json"]);
    let rows = v["rows"].as_array().unwrap();
    let sum: u64 = rows.iter().map(|r| r["params"].as_u64().unwrap()).sum();
    assert_eq!(sum, v["total_params"].as_u64().unwrap(), "{v}");
    // conv1 with the stem's batch norm: 64x3x7x7 weights, 4 x 64 norm values, its step counter
    assert_eq!(rows[0]["layer"], "conv1 (Conv2d+BN+ReLU)", "{v}");
    assert_eq!(rows[0]["params"], 64 * 3 * 7 * 7 + 4 * 64 + 1, "{v}");
    assert_eq!(rows[0]["shape"], serde_json::json!([64, 32, 32]), "NCHW: {v}");
    assert!(v["notes"][0].as_str().unwrap().starts_with("Shapes are NCHW"), "{v}");

    let out = Command::new(env!("CARGO_BIN_EXE_convnet"))
        .args(["zoo", "summary", "resnet18", "--input-size", "1,64,64"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("1 channels, but the model takes 3") && !err.contains("transpose"), "{err}");
}
