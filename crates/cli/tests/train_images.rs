//! `convnet train images` end to end, on a folder of synthetic photos it writes itself:
//! resnet18 from scratch learns (loss falls, accuracy far above chance), the checkpoint
//! works in `classify`, `forward` and `evaluate images`, and a run stopped after epoch 1
//! and resumed ends bit for bit where the uninterrupted run ends.

use std::path::Path;
use std::process::Command;

const CLASSES: [&str; 3] = ["circle", "square", "stripes"];

/// A 40x40 image of class `c`: a reddish disc, a greenish square or bluish stripes on a
/// random grey background, at a random place and size (the colour survives any crop).
fn draw(c: usize, seed: u64) -> image::RgbImage {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut fg = [(next() % 80) as u8, (next() % 80) as u8, (next() % 80) as u8];
    fg[c] = 160 + (next() % 96) as u8;
    let (fg, grey) = (image::Rgb(fg), (next() % 256) as u8);
    let bg = image::Rgb([grey; 3]);
    let (cx, cy, r) = (12 + next() % 16, 12 + next() % 16, 6 + next() % 6);
    image::RgbImage::from_fn(40, 40, |x, y| {
        let (dx, dy) = (x as i64 - cx as i64, y as i64 - cy as i64);
        let inside = match c {
            0 => dx * dx + dy * dy <= (r * r) as i64,
            1 => dx.abs() <= r as i64 && dy.abs() <= r as i64,
            _ => (y / 4) % 2 == 0,
        };
        if inside { fg } else { bg }
    })
}

fn write_folder(root: &Path, per_class: usize, offset: u64) {
    for (c, name) in CLASSES.iter().enumerate() {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..per_class {
            draw(c, offset + (c * 1000 + i) as u64).save(dir.join(format!("{i:03}.png"))).unwrap();
        }
    }
}

fn convnet(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_convnet")).args(["--threads", "2"]).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "convnet {args:?} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

fn train(data: &Path, out: &Path, epochs: usize, resume: Option<&Path>) -> serde_json::Value {
    let (data, out) = (data.to_str().unwrap(), out.to_str().unwrap());
    let epochs = epochs.to_string();
    let mut args = vec![
        "train",
        "images",
        "--data",
        data,
        "--model",
        "resnet18",
        "--img-size",
        "32",
        "--epochs",
        &epochs,
        "--batch-size",
        "16",
        "--lr",
        "0.002",
        "--seed",
        "7",
        "--out",
        out,
        "--json",
    ];
    let resume = resume.map(|p| p.to_str().unwrap().to_string());
    if let Some(r) = &resume {
        args.extend(["--resume", r.as_str()]);
    }
    serde_json::from_str(&convnet(&args)).unwrap()
}

fn tensors(path: &Path) -> Vec<(String, Vec<f32>)> {
    let (t, _) = convnet::nn::saving::read_safetensors(path).unwrap();
    t.into_iter().map(|(k, v)| (k, v.to_vec())).collect()
}

#[test]
fn resnet18_learns_from_scratch_and_its_checkpoint_works_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("shapes");
    write_folder(&data.join("train"), 40, 0);
    write_folder(&data.join("val"), 12, 500);

    let out = tmp.path().join("run");
    let report = train(&data, &out, 4, None);
    let loss: Vec<f64> = serde_json::from_value(report["history"]["loss"].clone()).unwrap();
    let best = report["best_val_accuracy"].as_f64().unwrap();
    assert!(loss[3] < loss[0], "training loss does not fall: {loss:?}");
    assert!(best >= 0.75, "validation accuracy {best} is not far above chance (1/3): {report}");
    assert_eq!(report["classes"], serde_json::json!(CLASSES));

    let weights = out.join("best.safetensors");
    let w = weights.to_str().unwrap();
    // evaluate images: the same accuracy as the best epoch's validation
    let ev: serde_json::Value = serde_json::from_str(&convnet(&[
        "evaluate",
        "images",
        "--model",
        "resnet18",
        "--weights",
        w,
        "--data",
        data.to_str().unwrap(),
        "--json",
    ]))
    .unwrap();
    assert!((ev["accuracy"].as_f64().unwrap() - best).abs() < 1e-9, "{ev} vs {best}");
    assert!(Path::new(ev["confusion_png"].as_str().unwrap()).is_file());
    // classify prints the sidecar's class names
    let img = data.join("val/square/000.png");
    let top: serde_json::Value = serde_json::from_str(&convnet(&[
        "classify",
        "--model",
        "resnet18",
        "--weights",
        w,
        "--json",
        img.to_str().unwrap(),
    ]))
    .unwrap();
    let label = top[0]["top"][0]["label"].as_str().unwrap();
    assert!(CLASSES.contains(&label), "{top}");
    // forward takes the class count from the sidecar
    let npy = tmp.path().join("x.npy");
    convnet_zoo::npy::write_npy(&npy, &[1, 3, 32, 32], &vec![0.1; 3 * 32 * 32]).unwrap();
    let logits = tmp.path().join("y.npy");
    convnet(&[
        "forward",
        "--model",
        "resnet18",
        "--weights",
        w,
        "--input",
        npy.to_str().unwrap(),
        "--output",
        logits.to_str().unwrap(),
    ]);
    assert_eq!(convnet_zoo::npy::read_npy(&logits).unwrap().shape, vec![1, 3]);
}

#[test]
fn a_resumed_run_equals_the_uninterrupted_one() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("shapes");
    write_folder(&data.join("train"), 10, 0);
    write_folder(&data.join("val"), 4, 500);
    let whole = tmp.path().join("whole");
    let split = tmp.path().join("split");
    let a = train(&data, &whole, 2, None);
    // stopped after epoch 1, then resumed with more epochs (the per-epoch cosine starts at
    // the base rate whatever its length)
    train(&data, &split, 1, None);
    let b = train(&data, &split, 2, Some(&split.join("last.state.safetensors")));
    assert_eq!(a["history"]["loss"], b["history"]["loss"]);
    assert_eq!(a["history"]["val_accuracy"], b["history"]["val_accuracy"]);
    let (ta, tb) = (tensors(&whole.join("last.state.safetensors")), tensors(&split.join("last.state.safetensors")));
    assert_eq!(ta.len(), tb.len());
    for ((ka, va), (kb, vb)) in ta.iter().zip(&tb) {
        assert_eq!(ka, kb);
        assert!(va.iter().zip(vb).all(|(x, y)| x.to_bits() == y.to_bits()), "{ka} differs after resuming");
    }
    // a state from another model is refused with a message naming the file
    let other = Command::new(env!("CARGO_BIN_EXE_convnet"))
        .args(["train", "images", "--data", data.to_str().unwrap(), "--model", "lenet5", "--epochs", "2"])
        .args(["--out", tmp.path().join("other").to_str().unwrap(), "--resume"])
        .arg(split.join("last.state.safetensors"))
        .output()
        .unwrap();
    assert!(!other.status.success());
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(err.contains("last.state.safetensors"), "{err}");
}
