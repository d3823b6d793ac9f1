//! Commands that work from any folder, and `--json` that is JSON (issue 22), through the built
//! `convnet` binary: MNIST is found above the executable of a checkout, in the user data folder
//! and in `$CONVNET_DATA`; without it the error names every folder looked at and the command
//! that gets it; `convnet data mnist` puts it there; every `--json` output parses on its own.
#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The MNIST vendored in this repository.
fn repo_mnist() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist").canonicalize().unwrap()
}

/// The built binary at `root/target/debug/convnet` (a hard link where possible), so that it runs
/// from a folder layout the test chooses, as in a fresh clone.
fn place_binary(root: &Path) -> PathBuf {
    let dir = root.join("target/debug");
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("convnet");
    if std::fs::hard_link(env!("CARGO_BIN_EXE_convnet"), &exe).is_err() {
        std::fs::copy(env!("CARGO_BIN_EXE_convnet"), &exe).unwrap();
    }
    exe
}

/// A clone-like folder: the binary under `target/debug` and `data/mnist` linked to the real one.
fn checkout(root: &Path) -> PathBuf {
    std::fs::create_dir_all(root.join("data")).unwrap();
    std::os::unix::fs::symlink(repo_mnist(), root.join("data/mnist")).unwrap();
    place_binary(root)
}

/// Runs `exe args` from `/` with its own HOME and none of the variables that point at data.
fn run(exe: &Path, home: &Path, env: &[(&str, &Path)], args: &[&str]) -> Output {
    let mut cmd = Command::new(exe);
    cmd.current_dir("/")
        .args(["--threads", "2"])
        .args(args)
        .env("HOME", home)
        .env_remove("CONVNET_DATA")
        .env_remove("XDG_DATA_HOME")
        .env_remove("RUST_BACKTRACE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "convnet {args:?} panicked:\n{stderr}");
    out
}

/// The whole of stdout as one JSON document, after checking that the command succeeded.
fn json_of(out: &Output, what: &str) -> serde_json::Value {
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{what} failed:\n{stdout}\n{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{what}: stdout is not one JSON document ({e}):\n{stdout}"))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The quick run: one epoch on 500 training and 100 test images.
const QUICK: [&str; 8] = ["train", "mnist", "--epochs", "1", "--train-limit", "500", "--test-limit", "100"];

#[test]
fn a_checkout_trains_and_predicts_from_the_root_folder() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path().canonicalize().unwrap();
    let exe = checkout(&root.join("clone"));
    let home = root.join("home");
    let out = root.join("out");
    let trained = json_of(&run(&exe, &home, &[], &[&QUICK[..], &["--out", s(&out), "--json"]].concat()), "train");
    let acc = trained["test_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc), "{trained}");
    assert_eq!(trained["history"]["loss"].as_array().unwrap().len(), 1, "{trained}");

    // predict --json: one document, the classification of each file
    let img = root.join("seven.png");
    let mut pixels = image::GrayImage::new(28, 28);
    for y in 4..24 {
        pixels.put_pixel(8 + (24 - y) / 3, y, image::Luma([255]));
    }
    for x in 6..22 {
        pixels.put_pixel(x, 4, image::Luma([255]));
    }
    pixels.save(&img).unwrap();
    let model = out.join("mnist_cnn.safetensors");
    let predicted = json_of(&run(&exe, &home, &[], &["predict", "--model", s(&model), "--json", s(&img)]), "predict");
    let rows = predicted.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{predicted}");
    let top = rows[0]["top"].as_array().unwrap();
    assert!(top[0]["index"].as_u64().unwrap() < 10, "{predicted}");
    let p: f64 = top.iter().map(|v| v["probability"].as_f64().unwrap()).sum();
    assert!((p - 1.0).abs() < 1e-4, "{predicted}");
}

#[test]
fn without_mnist_the_error_says_where_it_looked_and_data_mnist_fixes_it() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path().canonicalize().unwrap();
    let bare = place_binary(&root.join("bare"));
    let home = root.join("home");
    let out = root.join("out");
    let quick = [&QUICK[..], &["--out", s(&out)]].concat();

    let failed = run(&bare, &home, &[], &quick);
    assert_eq!(failed.status.code(), Some(1));
    let err = String::from_utf8_lossy(&failed.stderr);
    let user_dir = home.join(".local/share/convnet/mnist");
    for needle in [
        "MNIST not found",
        "/data/mnist",
        s(&root.join("bare/data/mnist")),
        s(&user_dir),
        "$CONVNET_DATA not set",
        "convnet data mnist",
        "--data DIR",
    ] {
        assert!(err.contains(needle), "the error lacks {needle:?}: {err}");
    }
    assert_eq!(err.lines().count(), 1, "{err}");

    // `data mnist` from a checkout copies its files to the user data folder (no network)
    let exe = checkout(&root.join("clone"));
    let put = json_of(&run(&exe, &home, &[], &["data", "mnist", "--json"]), "data mnist");
    assert_eq!(put["dir"].as_str().unwrap(), s(&user_dir), "{put}");
    assert!(put["source"].as_str().unwrap().starts_with("copied from"), "{put}");
    assert_eq!(put["files"].as_array().unwrap().len(), 4, "{put}");
    // a second run finds it there
    let again = json_of(&run(&exe, &home, &[], &["data", "mnist", "--json"]), "data mnist again");
    assert_eq!(again["source"], "already there", "{again}");

    // the bare binary now finds it in the user folder ...
    let r = run(&bare, &home, &[], &quick);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    // ... and through $CONVNET_DATA with another HOME
    let data_root = home.join(".local/share/convnet");
    let r = run(&bare, &root.join("other-home"), &[("CONVNET_DATA", &data_root)], &quick);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
}

#[test]
fn every_json_output_is_one_document() {
    let exe = Path::new(env!("CARGO_BIN_EXE_convnet"));
    let home = tempfile::tempdir().unwrap();
    // no match: the same exit code and error as the text mode, nothing on stdout
    for json in [false, true] {
        let args: &[&str] = if json { &["models", "zzz", "--json"] } else { &["models", "zzz"] };
        let r = run(exe, home.path(), &[], args);
        assert_eq!(r.status.code(), Some(1), "{args:?}");
        assert!(r.stdout.is_empty(), "{args:?}: {}", String::from_utf8_lossy(&r.stdout));
        assert!(String::from_utf8_lossy(&r.stderr).starts_with("error: no model matches"), "{args:?}");
    }
    let models = json_of(&run(exe, home.path(), &[], &["models", "lenet*", "--json"]), "models");
    assert!(models.as_array().unwrap().iter().any(|m| m["name"] == "lenet5"), "{models}");

    let bench = json_of(
        &run(exe, home.path(), &[], &["bench", "infer", "lenet5", "--batch-size", "1", "--runs", "1", "--json"]),
        "bench infer",
    );
    let row = &bench["rows"][0];
    assert_eq!(row["batch_size"], 1, "{bench}");
    for key in ["median_ms", "examples_per_sec", "gflops"] {
        assert!(row[key].as_f64().is_some_and(|v| v > 0.0), "{key}: {bench}");
    }

    // classify: a random-weight timm checkpoint of a small ImageNet model
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("mobilenetv3_small_050.safetensors");
    let model = convnet_zoo::create_model("mobilenetv3_small_050", convnet_zoo::ZooOpts::default()).unwrap();
    model.save_checkpoint(&weights).unwrap();
    let img = dir.path().join("photo.png");
    image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([(x * 6) as u8, (y * 8) as u8, 90])).save(&img).unwrap();
    let args =
        ["classify", "--model", "mobilenetv3_small_050", "--weights", s(&weights), "--top", "3", "--json", s(&img)];
    let classified = json_of(&run(exe, home.path(), &[], &args), "classify");
    let rows = classified.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{classified}");
    assert_eq!(rows[0]["top"].as_array().unwrap().len(), 3, "{classified}");
}
