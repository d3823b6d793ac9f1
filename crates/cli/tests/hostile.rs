//! Hostile input and failure, through the built `convnet` binary: every case ends with a clear
//! one-line error (or a quiet exit), never a panic, an abort, a hang, a silent wrong answer or
//! a half-written file. Every input is a small file generated in a temporary folder.

mod common;

use common::tiny_mnist;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run_with(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_convnet"));
    cmd.args(["--threads", "2"]).args(args).env_remove("RUST_BACKTRACE").env_remove("RUST_LIB_BACKTRACE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out: Output = cmd.output().unwrap();
    let run = Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    // whatever happened, it was not a panic or an abort
    assert!(!run.stderr.contains("panicked"), "convnet {args:?} panicked:\n{}", run.stderr);
    assert!(run.code.is_some(), "convnet {args:?} was killed by a signal:\n{}", run.stderr);
    run
}

fn run(args: &[&str]) -> Run {
    run_with(args, &[])
}

/// Runs a command that must fail with a one-line error containing every one of `needles`.
fn fails(args: &[&str], needles: &[&str]) -> String {
    let r = run(args);
    assert_eq!(r.code, Some(1), "convnet {args:?} should fail:\n{}\n{}", r.stdout, r.stderr);
    let err = r.stderr.lines().filter(|l| l.starts_with("error: ")).collect::<Vec<_>>();
    assert_eq!(err.len(), 1, "one error line expected:\n{}", r.stderr);
    for n in needles {
        assert!(err[0].contains(n), "error of {args:?} lacks {n:?}: {}", err[0]);
    }
    err[0].to_string()
}

fn ok(args: &[&str]) -> Run {
    let r = run(args);
    assert_eq!(r.code, Some(0), "convnet {args:?} failed:\n{}\n{}", r.stdout, r.stderr);
    r
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A RIFF/WAVE file: `tag` 1 (PCM) or 3 (float), mono.
fn wav_bytes(tag: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&tag.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&(rate * u32::from(bits) / 8).to_le_bytes());
    v.extend_from_slice(&(bits / 8).to_le_bytes());
    v.extend_from_slice(&bits.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&(data.len() as u32).to_le_bytes());
    v.extend_from_slice(data);
    v
}

/// One second of a 440 Hz tone as 16-bit PCM at `rate`.
fn tone_wav(path: &Path, rate: u32) {
    let data: Vec<u8> = (0..rate)
        .flat_map(|i| (((i as f32 * 440.0 * std::f32::consts::TAU / rate as f32).sin() * 8000.0) as i16).to_le_bytes())
        .collect();
    std::fs::write(path, wav_bytes(1, rate, 16, &data)).unwrap();
}

fn mnist_model(path: &Path) {
    convnet::models::mnist_cnn(1).unwrap().save(path).unwrap();
}

fn png(path: &Path, w: u32, h: u32) {
    image::GrayImage::from_fn(w, h, |x, y| image::Luma([((x * 7 + y * 3) % 256) as u8])).save(path).unwrap();
}

// ------------------------------------------------------------------ clean exits

/// `convnet models | head -1`: the reader goes away; the program ends quietly (SIGPIPE, as
/// `cat` does), it does not panic in `println!`.
#[test]
fn a_closed_pipe_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    for _ in 0..5 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_convnet"))
            .args(["models", "--tags"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader is gone before the first line
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.is_empty(), "nothing on stderr expected:\n{stderr}");
        assert!(
            out.status.signal() == Some(13) || out.status.success(),
            "status {:?}: expected SIGPIPE (141 in a shell)",
            out.status
        );
    }
}

/// With RUST_BACKTRACE=1 (common in Rust users' shells) a user error is still one line; the
/// chain of causes and a backtrace come with --verbose.
#[test]
fn errors_are_one_line_whatever_rust_backtrace_says() {
    let args = ["forward", "--model", "lenet5", "--input", "/nonexistent/x.npy", "--output", "/tmp/never.npy"];
    let r = run_with(&args, &[("RUST_BACKTRACE", "1")]);
    assert_eq!(r.code, Some(1));
    assert_eq!(r.stderr.trim_end().lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.starts_with("error: ") && r.stderr.contains("/nonexistent/x.npy"), "{}", r.stderr);
    let mut verbose = vec!["--verbose"];
    verbose.extend_from_slice(&args);
    let r = run_with(&verbose, &[("RUST_BACKTRACE", "1")]);
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.lines().count() > 1, "--verbose shows more:\n{}", r.stderr);
}

// ------------------------------------------------------------------ limits

#[test]
fn numeric_flags_have_upper_bounds() {
    let d = tempfile::tempdir().unwrap();
    let wav = d.path().join("tone.wav");
    tone_wav(&wav, 8000);
    let out = d.path().join("m.npy");
    fails(&["audio", "mfcc", s(&wav), "--out", s(&out), "--n-fft", "10000000000"], &["--n-fft", "10000000000"]);
    fails(&["audio", "melspec", s(&wav), "--out", s(&out), "--sr", "4000000000"], &["--sr", "4000000000"]);
    fails(&["audio", "melspec", s(&wav), "--out", s(&out), "--hop-length", "0"], &["--hop-length"]);
    fails(&["summary", "lenet5", "--input-size", "1,100000,100000"], &["--input-size", "100000"]);
    fails(&["summary", "lenet5", "--num-classes", "1000000000"], &["--num-classes"]);
    fails(&["bench", "infer", "lenet5", "--batch", "1,100000000"], &["--batch", "100000000"]);
    fails(&["bench", "train", "lenet5", "--batch", "100000000"], &["--batch"]);
    fails(&["bench", "train", "lenet5", "--img-size", "1000000"], &["--img-size"]);
    fails(&["sound-digit", "train", "--data", s(d.path()), "--sr", "0"], &["--sr"]);
    fails(&["train", "mnist", "--data", s(d.path()), "--batch-size", "1000000000"], &["--batch-size"]);
    assert!(!out.exists());
}

/// `--threads 100000` is lowered to a few per core with a warning instead of spending
/// minutes starting threads.
#[test]
fn absurd_thread_counts_are_capped() {
    let out =
        Command::new(env!("CARGO_BIN_EXE_convnet")).args(["--threads", "100000", "models", "lenet*"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("warning: --threads 100000"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("lenet5"));
}

// ------------------------------------------------------------------ audio

/// NaN and inf samples in a float WAV: an error naming the file and the sample, with or
/// without resampling (the resampler used to panic; without it they became silence).
#[test]
fn non_finite_float_wav_is_an_error_naming_the_file() {
    let d = tempfile::tempdir().unwrap();
    let wav = d.path().join("nan.wav");
    let mut samples = vec![0.1f32; 4000];
    samples[1234] = f32::NAN;
    let data: Vec<u8> = samples.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&wav, wav_bytes(3, 8000, 32, &data)).unwrap();
    let out = d.path().join("x.npy");
    for sr in ["22050", "native"] {
        fails(&["audio", "mfcc", s(&wav), "--out", s(&out), "--sr", sr], &["nan.wav", "sample 1234", "NaN"]);
    }
    samples[1234] = f32::INFINITY;
    let data: Vec<u8> = samples.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&wav, wav_bytes(3, 8000, 32, &data)).unwrap();
    fails(&["audio", "waveform", s(&wav), "--png", s(&d.path().join("w.png"))], &["nan.wav", "inf"]);
    assert!(!out.exists());
}

// ------------------------------------------------------------------ .npy and zoo models

#[test]
fn npy_header_shape_overflow_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    let npy = d.path().join("huge.npy");
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296, 1), }";
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(header.len() as u16).to_le_bytes());
    b.extend_from_slice(header.as_bytes());
    b.extend_from_slice(&[0; 64]);
    std::fs::write(&npy, b).unwrap();
    let out = d.path().join("y.npy");
    fails(&["forward", "--model", "lenet5", "--input", s(&npy), "--output", s(&out)], &["huge.npy", "elements"]);
    // a valid header of an enormous image is refused by the input-size limit, before the model runs
    let big = d.path().join("big.npy");
    convnet_zoo::npy::write_npy(&big, &[1, 1, 5000, 1], &vec![0.0; 5000]).unwrap();
    fails(&["forward", "--model", "lenet5", "--input", s(&big), "--output", s(&out)], &["big.npy", "5000"]);
    assert!(!out.exists());
}

/// A checkpoint whose classifier has another class count: `forward` and `classify` refuse it
/// instead of re-initialising the head at random and printing confident answers; an explicit
/// `--num-classes` is needed, and a new count says what was re-initialised.
#[test]
fn a_classifier_of_another_class_count_is_never_silently_replaced() {
    let d = tempfile::tempdir().unwrap();
    let ckpt = d.path().join("five.safetensors");
    let model = convnet_zoo::create_model("lenet5", convnet_zoo::ZooOpts::new().with_num_classes(5)).unwrap();
    model.save_checkpoint(&ckpt).unwrap();
    let x = d.path().join("x.npy");
    convnet_zoo::npy::write_npy(&x, &[2, 1, 32, 32], &vec![0.5; 2 * 32 * 32]).unwrap();
    let y = d.path().join("y.npy");
    let base = ["forward", "--model", "lenet5", "--weights", s(&ckpt), "--input", s(&x), "--output", s(&y)];
    fails(&base, &["five.safetensors", "--num-classes"]);
    assert!(!y.exists());
    let mut five = base.to_vec();
    five.extend(["--num-classes", "5"]);
    ok(&five);
    assert_eq!(convnet_zoo::npy::read_npy(&y).unwrap().shape, vec![2, 5]);
    let mut seven = base.to_vec();
    seven.extend(["--num-classes", "7"]);
    let r = ok(&seven);
    assert!(r.stderr.contains("re-initialised") && r.stderr.contains("fc3.weight"), "{}", r.stderr);
    let img = d.path().join("a.png");
    png(&img, 32, 32);
    fails(&["classify", "--model", "lenet5", "--weights", s(&ckpt), s(&img)], &["five.safetensors", "class count"]);
}

// ------------------------------------------------------------------ nn model files

/// A model file whose stored architecture declares a huge layer: refused by comparing the
/// declared shapes with the file's tensors before building (it used to abort allocating).
#[test]
fn a_model_file_declaring_huge_layers_is_refused_before_building() {
    use convnet::nn::saving::{CONFIG_KEY, read_safetensors, write_safetensors};
    let d = tempfile::tempdir().unwrap();
    let good = d.path().join("good.safetensors");
    mnist_model(&good);
    let (tensors, metadata) = read_safetensors(&good).unwrap();
    let config = &metadata[CONFIG_KEY];
    let img = d.path().join("digit.png");
    png(&img, 28, 28);
    let cases = [
        ("units.safetensors", config.replacen("\"units\":128", "\"units\":16000000", 1), "dense"),
        ("input.safetensors", config.replacen("[28,28,1]", "[16000000,16000000,1]", 1), "over"),
        ("filters.safetensors", config.replacen("\"filters\":32", "\"filters\":16777216", 1), "conv2d"),
        ("number.safetensors", config.replacen("\"units\":128", "\"units\":99999999999999", 1), "over the limit"),
    ];
    for (name, edited, needle) in cases {
        assert_ne!(&edited, config, "{name}: the edit must apply");
        let config = edited;
        let mut m = metadata.clone();
        m.insert(CONFIG_KEY.to_string(), config);
        let path = d.path().join(name);
        write_safetensors(&path, &tensors, m).unwrap();
        fails(&["predict", "--model", s(&path), s(&img)], &[name, needle]);
    }
}

/// `sound-digit predict` runs only spoken-digit models: the MNIST model has the same shapes
/// ([28, 28, 1] in, ten out) but no front end.
#[test]
fn sound_digit_predict_checks_the_model_kind() {
    let d = tempfile::tempdir().unwrap();
    let mnist = d.path().join("mnist.safetensors");
    mnist_model(&mnist);
    let wav = d.path().join("one.wav");
    tone_wav(&wav, 8000);
    fails(
        &["sound-digit", "predict", "--model", s(&mnist), s(&wav)],
        &["mnist.safetensors", "not a spoken-digit model"],
    );
    // a 12-class model is not one either, even with --sr
    let twelve = d.path().join("twelve.safetensors");
    let mut m = convnet::nn::Sequential::new([20, 44, 1]);
    m.add(convnet::nn::FlattenConfig::new()).unwrap();
    m.add(convnet::nn::DenseConfig::new(12)).unwrap();
    m.save(&twelve).unwrap();
    fails(&["sound-digit", "predict", "--model", s(&twelve), "--sr", "22050", s(&wav)], &["12", "10 digits"]);
}

// ------------------------------------------------------------------ images

#[test]
fn hostile_images_are_errors_not_allocations_or_grey_fills() {
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("mnist.safetensors");
    mnist_model(&model);
    // 12000 x 12000: a file of a few hundred kB, 144 megapixels decoded
    let bomb = d.path().join("bomb.png");
    let mut bytes = Vec::new();
    let enc = image::codecs::png::PngEncoder::new(&mut bytes);
    image::ImageEncoder::write_image(enc, &vec![0u8; 12000 * 12000], 12000, 12000, image::ExtendedColorType::L8)
        .unwrap();
    std::fs::write(&bomb, bytes).unwrap();
    fails(&["predict", "--model", s(&model), s(&bomb)], &["bomb.png", "12000 x 12000"]);
    // a truncated JPEG: the decoder alone would fill the rest with grey
    let jpg = d.path().join("cut.jpg");
    let img = image::RgbImage::from_fn(64, 64, |x, y| image::Rgb([(x * 4) as u8, (y * 4) as u8, 128]));
    img.save(&jpg).unwrap();
    let full = std::fs::read(&jpg).unwrap();
    // cut inside the entropy-coded data, where the decoder alone reports success
    std::fs::write(&jpg, &full[..full.len() * 9 / 10]).unwrap();
    fails(&["predict", "--model", s(&model), s(&jpg)], &["cut.jpg", "end-of-image"]);
    // cut inside the headers: an error too
    std::fs::write(&jpg, &full[..full.len() / 2]).unwrap();
    fails(&["predict", "--model", s(&model), s(&jpg)], &["cut.jpg"]);
}

/// A 60000 x 1 PNG would be resized to 15 million pixels wide by the eval transform.
#[test]
fn extreme_aspect_ratio_is_refused_before_the_resize() {
    let d = tempfile::tempdir().unwrap();
    let ckpt = d.path().join("r.safetensors");
    // the smallest RGB model of the zoo (2.7 M parameters), random weights
    let model = convnet_zoo::create_model("regnetx_002", convnet_zoo::ZooOpts::new()).unwrap();
    model.save_checkpoint(&ckpt).unwrap();
    let strip = d.path().join("strip.png");
    image::RgbImage::from_pixel(60000, 1, image::Rgb([1, 2, 3])).save(&strip).unwrap();
    fails(&["classify", "--model", "regnetx_002", "--weights", s(&ckpt), s(&strip)], &["strip.png", "resized"]);
}

// ------------------------------------------------------------------ benchmarks

/// A reference ratio only for the workload it was measured on; `--epochs 0` is an error.
#[test]
fn mnist_benchmark_compares_only_like_with_like() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("mnist");
    tiny_mnist(&data, 64, 16);
    fails(&["bench", "mnist", "--data", s(&data), "--epochs", "0"], &["--epochs"]);
    let r = ok(&["bench", "mnist", "--data", s(&data), "--batch-size", "32"]);
    assert!(!r.stdout.contains("(reference) |"), "{}", r.stdout);
    assert!(r.stdout.contains("not comparable"), "{}", r.stdout);
    let r = ok(&["bench", "mnist", "--data", s(&data), "--batch-size", "32", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("--json prints JSON only");
    assert_eq!(v["references_seconds_per_epoch"], serde_json::json!([]));
    assert_eq!(v["train_images"], 64);
}

// ------------------------------------------------------------------ output files

/// A 12-epoch training with an unwritable --out is refused before the first epoch.
#[test]
fn an_unwritable_out_folder_is_refused_before_training() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("mnist");
    tiny_mnist(&data, 64, 16);
    let blocker = d.path().join("blocker");
    std::fs::write(&blocker, b"a file, not a folder").unwrap();
    let out = blocker.join("models");
    let r = run(&["train", "mnist", "--data", s(&data), "--epochs", "12", "--out", s(&out)]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("--out") && r.stderr.contains("blocker"), "{}", r.stderr);
    assert!(!r.stderr.contains("Epoch 1/12") && !r.stdout.contains("Epoch 1/12"), "trained first:\n{}", r.stderr);
    assert!(!r.stdout.contains("Total params"), "built the model first:\n{}", r.stdout);
    let wav_dir = d.path().join("sd");
    std::fs::create_dir_all(&wav_dir).unwrap();
    fails(&["sound-digit", "train", "--data", s(&wav_dir), "--epochs", "250", "--out", s(&out)], &["--out", "blocker"]);
    fails(&["speech", "train", "--data", s(&wav_dir), "--out", s(&out)], &["--out", "blocker"]);
}

/// Outputs replace the destination by renaming a finished file over it, never by writing into
/// it: a hard link to the previous file keeps the previous bytes (an in-place write, which a
/// full disk leaves half done, would change them too).
#[test]
fn outputs_replace_the_previous_file_instead_of_writing_into_it() {
    let d = tempfile::tempdir().unwrap();
    let wav = d.path().join("tone.wav");
    tone_wav(&wav, 8000);
    let x = d.path().join("x.npy");
    convnet_zoo::npy::write_npy(&x, &[1, 1, 32, 32], &vec![0.5; 32 * 32]).unwrap();
    let out = |name: &str| d.path().join(name);
    let chart = out("c.png");
    let cases: [(&str, Vec<&str>); 4] = [
        ("y.npy", vec!["forward", "--model", "lenet5", "--input", s(&x), "--output"]),
        ("mfcc.npy", vec!["audio", "mfcc", s(&wav), "--out"]),
        ("wave.png", vec!["audio", "waveform", s(&wav), "--png"]),
        ("table.csv", vec!["compare", "mobilenetv3_small_050", "--no-bench", "--png", s(&chart), "--csv"]),
    ];
    for (name, args) in cases {
        let dest = out(name);
        std::fs::write(&dest, b"previous").unwrap();
        let keep = out(&format!("{name}.link"));
        std::fs::hard_link(&dest, &keep).unwrap();
        let mut args = args.clone();
        args.push(s(&dest));
        ok(&args);
        assert_eq!(std::fs::read(&keep).unwrap(), b"previous", "{name} was written in place");
        assert_ne!(std::fs::read(&dest).unwrap(), b"previous", "{name} was not written");
        assert_eq!(temp_files(d.path(), ".tmp-"), Vec::<PathBuf>::new());
    }
}

/// A tiny Speech Commands folder: two one-second clips of each default word (the second in
/// the test split), a noise file.
fn tiny_speech_commands(dir: &Path) {
    let words = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"];
    let mut testing = String::new();
    for (w, word) in words.iter().enumerate() {
        std::fs::create_dir_all(dir.join(word)).unwrap();
        for n in 0..2 {
            let rate = 16000;
            let f = 200.0 + 50.0 * w as f32 + 20.0 * n as f32;
            let data: Vec<u8> = (0..rate)
                .flat_map(|i| {
                    ((((i as f32) * f * std::f32::consts::TAU / 16000.0).sin() * 8000.0) as i16).to_le_bytes()
                })
                .collect();
            let name = format!("{word}/{:08x}_nohash_0.wav", 16 * w + n);
            std::fs::write(dir.join(&name), wav_bytes(1, rate, 16, &data)).unwrap();
            if n == 1 {
                testing.push_str(&format!("{name}\n"));
            }
        }
    }
    std::fs::create_dir_all(dir.join("_background_noise_")).unwrap();
    let noise: Vec<u8> =
        (0..32000u32).flat_map(|i| ((i.wrapping_mul(2_654_435_761) >> 20) as i16 - 2048).to_le_bytes()).collect();
    std::fs::write(dir.join("_background_noise_/noise.wav"), wav_bytes(1, 16000, 16, &noise)).unwrap();
    std::fs::write(dir.join("testing_list.txt"), testing).unwrap();
    std::fs::write(dir.join("validation_list.txt"), "yes/00000000_nohash_0.wav\n").unwrap();
}

/// `speech make-stream`'s WAV and word list and `speech listen --scores` replace their files as
/// the other outputs do, and `bench speech --json` prints JSON only (it used to print the data
/// set's summary line first).
#[test]
fn speech_outputs_replace_their_files_and_bench_json_is_json() {
    use convnet::speech::{Architecture, FrontEnd, SpeechModel, SpeechModelInfo};
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("speech");
    tiny_speech_commands(&data);
    let r = ok(&["bench", "speech", "--data", s(&data), "--model", "tiny_conv", "--steps", "1", "--batch-size", "2"]
        .into_iter()
        .chain(["--stream-seconds", "2", "--json"])
        .collect::<Vec<_>>());
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("bench speech --json prints JSON only");
    assert!(v["steps_per_sec"].as_f64().is_some_and(|x| x > 0.0), "{v}");
    let keep = |dest: &Path| {
        std::fs::write(dest, b"previous").unwrap();
        let link = PathBuf::from(format!("{}.link", dest.display()));
        std::fs::hard_link(dest, &link).unwrap();
        link
    };
    let check = |dest: &Path, link: &Path| {
        assert_eq!(std::fs::read(link).unwrap(), b"previous", "{} was written in place", dest.display());
        assert_ne!(std::fs::read(dest).unwrap(), b"previous", "{} was not written", dest.display());
    };
    let long = d.path().join("long.wav");
    let list = d.path().join("long.txt");
    let (long_link, list_link) = (keep(&long), keep(&list));
    ok(&["speech", "make-stream", "--data", s(&data), "--out", s(&long)]);
    check(&long, &long_link);
    check(&list, &list_link);
    // an untrained keyword model of the default front end: listen only needs its scores
    let front_end = FrontEnd::default();
    let mut net = convnet::nn::Sequential::new(front_end.input_shape());
    net.add(convnet::nn::FlattenConfig::new()).unwrap();
    net.add(convnet::nn::DenseConfig::new(3).with_activation(convnet::Activation::Softmax)).unwrap();
    let info = SpeechModelInfo {
        architecture: Architecture::SingleFc,
        labels: vec!["_silence_".into(), "_unknown_".into(), "yes".into()],
        front_end,
        trained_steps: 0,
        validation_accuracy: None,
        feature_norm: None,
        recognizer: None,
    };
    let model = d.path().join("kws.safetensors");
    SpeechModel::new(net, info).unwrap().save(&model).unwrap();
    let scores = d.path().join("scores.csv");
    let scores_link = keep(&scores);
    ok(&["speech", "listen", "--model", s(&model), s(&long), "--scores", s(&scores)]);
    check(&scores, &scores_link);
    assert_eq!(temp_files(d.path(), ".tmp-"), Vec::<PathBuf>::new());
}

/// `compare` checks where its chart and table go before it spends minutes measuring.
#[test]
fn compare_checks_its_outputs_before_measuring() {
    let d = tempfile::tempdir().unwrap();
    let blocker = d.path().join("blocker");
    std::fs::write(&blocker, b"a file, not a folder").unwrap();
    let csv = blocker.join("table.csv");
    let png = d.path().join("c.png");
    // a model with a published top-1, so that the old order wrote its chart before failing
    let r = run(&["compare", "mobilenetv3_small_050", "--runs", "1", "--png", s(&png), "--csv", s(&csv)]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("blocker") && !r.stderr.contains("measuring"), "{}", r.stderr);
    assert!(!png.exists(), "the chart was written before the table's folder was checked");
}

/// Temporary files in `dir` whose name contains `what` (`.tmp-` for all of them).
fn temp_files(dir: &Path, what: &str) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.to_string_lossy().contains(what)).collect())
        .unwrap_or_default()
}

/// A save killed with SIGKILL mid-write leaves the previous model whole; the next run removes
/// the temporary file the killed one left.
#[test]
fn a_save_killed_mid_write_leaves_the_previous_file_and_the_next_run_cleans_up() {
    // on disk next to the build, where syncing a file takes real time
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let d = tempfile::tempdir_in(base).unwrap();
    let data = d.path().join("mnist");
    tiny_mnist(&data, 32, 8);
    let out = d.path().join("models");
    let model = out.join("mnist_cnn.safetensors");
    let train = |seed: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_convnet"));
        cmd.args(["--threads", "2", "train", "mnist", "--data", s(&data), "--epochs", "1", "--batch-size", "32"])
            .args(["--seed", seed, "--out", s(&out)])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    };
    assert!(train("1").status().unwrap().success());
    let previous = std::fs::read(&model).unwrap();
    let mut caught = 0;
    for attempt in 0..40 {
        let mut child = train(&(attempt + 2).to_string()).spawn().unwrap();
        let killed = loop {
            if !temp_files(&out, ".mnist_cnn.safetensors.tmp-").is_empty() {
                child.kill().unwrap(); // SIGKILL
                break true;
            }
            if child.try_wait().unwrap().is_some() {
                break false;
            }
        };
        child.wait().unwrap();
        let now = std::fs::read(&model).unwrap();
        if killed && !temp_files(&out, ".mnist_cnn.safetensors.tmp-").is_empty() {
            caught += 1;
            // the kill came before the rename: the previous model is there, whole
            assert_eq!(now, previous, "attempt {attempt}: the model file changed under a killed save");
            assert!(convnet::nn::Sequential::load(&model).is_ok());
            break;
        }
        // the save finished (or the plots were being written): a complete new file
        assert!(convnet::nn::Sequential::load(&model).is_ok(), "attempt {attempt}: a broken model file");
        let _ = std::fs::remove_file(&model);
        std::fs::write(&model, &previous).unwrap();
    }
    assert!(caught > 0, "never caught a save mid-write in 40 tries");
    assert!(train("99").status().unwrap().success());
    assert_eq!(temp_files(&out, ".tmp-"), Vec::<PathBuf>::new(), "the next run removes stale temporary files");
    assert!(convnet::nn::Sequential::load(&model).is_ok());
}
