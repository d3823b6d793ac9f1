//! Chart smoke tests: each chart function writes a PNG that decodes to the expected size and is
//! not blank. Set `CONVNET_PLOT_TEST_DIR=/some/dir` to keep the PNGs for a look.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use convnet_plot::{
    PlotError, plot_confusion_matrix, plot_heatmap, plot_history_pair, plot_train_history, plot_waveform,
};

/// Output directory for one test: `$CONVNET_PLOT_TEST_DIR/<test>` if that variable is set, else
/// a fresh temp dir (kept alive by the returned guard).
fn out_dir(test: &str) -> (PathBuf, Option<tempfile::TempDir>) {
    match std::env::var_os("CONVNET_PLOT_TEST_DIR") {
        Some(d) => {
            let d = PathBuf::from(d).join(test);
            std::fs::create_dir_all(&d).unwrap();
            (d, None)
        }
        None => {
            let t = tempfile::tempdir().unwrap();
            (t.path().to_path_buf(), Some(t))
        }
    }
}

/// Decodes `path` and returns `(width, height)` after checking the image is not blank.
fn check_png(path: &Path) -> (u32, u32) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb, "{}", path.display());
    let px: Vec<[u8; 3]> = buf[..info.buffer_size()].chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect();
    let distinct: HashSet<[u8; 3]> = px.iter().copied().collect();
    let non_white = px.iter().filter(|p| **p != [255, 255, 255]).count();
    assert!(distinct.len() >= 8, "{}: only {} colours", path.display(), distinct.len());
    assert!(non_white * 100 > px.len(), "{}: {non_white} non-white pixels", path.display());
    // No stray temporary files next to the output.
    let dir = path.parent().unwrap();
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.ends_with(".tmp"), "leftover temp file {name}");
    }
    (info.width, info.height)
}

#[test]
fn train_history_png() {
    let (dir, _guard) = out_dir("train_history_png");
    let loss = [0.52, 0.21, 0.15, 0.12, 0.10, 0.085, 0.075, 0.066, 0.06, 0.055];
    let val_loss = [0.25, 0.16, 0.13, 0.11, 0.10, 0.095, 0.092, 0.091, 0.093, 0.095];
    let p = dir.join("history_loss.png");
    plot_train_history(&p, "Train History", &loss, &val_loss, "train", "validation", "loss").unwrap();
    assert_eq!(check_png(&p), (640, 480));

    // Validation empty: only the train line.
    let p = dir.join("history_train_only.png");
    plot_train_history(&p, "Train History", &[0.9, 0.95, 0.97], &[], "train", "validation", "accuracy").unwrap();
    assert_eq!(check_png(&p), (640, 480));

    // One epoch, a NaN, a constant series: no panic, still a chart.
    let p = dir.join("history_edge.png");
    plot_train_history(&p, "Edge", &[0.5], &[f64::NAN], "train", "validation", "loss").unwrap();
    check_png(&p);
    let p = dir.join("history_flat.png");
    plot_train_history(&p, "Flat", &[1.0; 30], &[1.0, f64::INFINITY, 1.0], "a", "b", "c").unwrap();
    check_png(&p);

    let err = plot_train_history(dir.join("none.png"), "t", &[], &[], "a", "b", "c").unwrap_err();
    assert!(matches!(err, PlotError::InvalidInput { .. }), "{err}");
    assert!(err.to_string().contains("none.png"), "{err}");
}

#[test]
fn history_pair_writes_two_files() {
    let (dir, _guard) = out_dir("history_pair_writes_two_files");
    let sub = dir.join("pair");
    let loss = [0.4, 0.2, 0.1];
    let acc = [0.88, 0.94, 0.97];
    let paths = plot_history_pair(&sub, "mnist_mlp", &loss, &[0.3, 0.2, 0.15], &acc, &[0.91, 0.95, 0.96]).unwrap();
    assert_eq!(paths, vec![sub.join("mnist_mlp_loss.png"), sub.join("mnist_mlp_accuracy.png")]);
    for p in &paths {
        assert_eq!(check_png(p), (640, 480));
    }
    // No accuracy series: only the loss chart.
    let paths = plot_history_pair(&sub, "regression", &loss, &[], &[], &[]).unwrap();
    assert_eq!(paths, vec![sub.join("regression_loss.png")]);
}

#[test]
fn confusion_matrix_png() {
    let (dir, _guard) = out_dir("confusion_matrix_png");
    let labels: Vec<String> = (0..10).map(|d| d.to_string()).collect();
    let matrix: Vec<Vec<u64>> = (0..10u64)
        .map(|i| (0..10u64).map(|j| if i == j { 950 + i * 5 } else { (i * 7 + j * 3) % 9 }).collect())
        .collect();
    let p = dir.join("confusion.png");
    plot_confusion_matrix(&p, &labels, &matrix, "Confusion matrix").unwrap();
    let (w, h) = check_png(&p);
    assert!(w >= 400 && h >= 400, "{w}x{h}");

    // Long class names are rotated on the x axis; small matrix.
    let labels: Vec<String> = ["airplane", "automobile", "bird"].map(String::from).to_vec();
    let p = dir.join("confusion_names.png");
    plot_confusion_matrix(&p, &labels, &[vec![50, 2, 0], vec![3, 40, 7], vec![0, 0, 0]], "CIFAR").unwrap();
    check_png(&p);

    // Many classes (speech commands): small cells, small count font, vertical names.
    let words = ["backward", "bed", "bird", "cat", "dog", "down", "eight", "five", "follow", "forward", "four", "go"];
    let many: Vec<String> = (0..35).map(|i| words[i % words.len()].to_string()).collect();
    let matrix: Vec<Vec<u64>> =
        (0..35u64).map(|i| (0..35u64).map(|j| if i == j { 300 + i } else { (i + 2 * j) % 4 }).collect()).collect();
    let p = dir.join("confusion_many.png");
    plot_confusion_matrix(&p, &many, &matrix, "Speech commands").unwrap();
    check_png(&p);

    let bad = plot_confusion_matrix(dir.join("bad.png"), &labels, &[vec![1, 2], vec![3]], "x").unwrap_err();
    assert!(matches!(bad, PlotError::InvalidInput { .. }), "{bad}");
    let bad = plot_confusion_matrix(dir.join("bad.png"), &labels[..2], &vec![vec![1; 3]; 3], "x").unwrap_err();
    assert!(matches!(bad, PlotError::InvalidInput { .. }), "{bad}");
    assert!(!dir.join("bad.png").exists());
}

#[test]
fn heatmap_png() {
    let (dir, _guard) = out_dir("heatmap_png");
    // A fake dB spectrogram (all <= 0): 128 frequency rows x 200 frames, a rising tone.
    let (rows, cols) = (128, 200);
    let data: Vec<f32> = (0..rows * cols)
        .map(|k| {
            let (r, c) = (k / cols, k % cols);
            let tone = 20 + c * 80 / cols;
            -80.0 + 80.0 * (-((r as f32 - tone as f32) / 4.0).powi(2)).exp() - r as f32 * 0.1
        })
        .collect();
    let p = dir.join("spectrogram.png");
    plot_heatmap(&p, &data, rows, cols, ("Time (s)", 0.0, 2.0), ("Hz", 0.0, 8000.0), "Spectrogram", "dB").unwrap();
    assert_eq!(check_png(&p), (800, 480));

    // MFCC-like: both signs, tiny grid.
    let mfcc: Vec<f32> = (0..13 * 44).map(|k| ((k % 13) as f32 - 6.0) * ((k / 13) as f32 * 0.3).sin()).collect();
    let p = dir.join("mfcc.png");
    plot_heatmap(&p, &mfcc, 13, 44, ("Time (s)", 0.0, 1.0), ("MFCC", 0.0, 13.0), "MFCC", "").unwrap();
    check_png(&p);

    // Constant data with a NaN: still renders.
    let p = dir.join("flat.png");
    plot_heatmap(&p, &[1.0, f32::NAN, 1.0, 1.0], 2, 2, ("x", 0.0, 1.0), ("y", 0.0, 1.0), "Flat", "v").unwrap();
    check_png(&p);

    let bad =
        plot_heatmap(dir.join("bad.png"), &[1.0; 5], 2, 3, ("x", 0.0, 1.0), ("y", 0.0, 1.0), "t", "").unwrap_err();
    assert!(matches!(bad, PlotError::InvalidInput { .. }), "{bad}");
    let bad =
        plot_heatmap(dir.join("bad.png"), &[1.0; 6], 2, 3, ("x", 1.0, 1.0), ("y", 0.0, 1.0), "t", "").unwrap_err();
    assert!(matches!(bad, PlotError::InvalidInput { .. }), "{bad}");
}

#[test]
fn waveform_png() {
    let (dir, _guard) = out_dir("waveform_png");
    let sr = 16_000;
    // One second: a decaying 440 Hz tone (envelope path: many samples per pixel).
    let long: Vec<f32> = (0..sr)
        .map(|i| {
            let t = i as f32 / sr as f32;
            0.8 * (-3.0 * t).exp() * (2.0 * std::f32::consts::PI * 440.0 * t).sin()
        })
        .collect();
    let p = dir.join("waveform.png");
    plot_waveform(&p, &long, sr as u32, "Waveform").unwrap();
    assert_eq!(check_png(&p), (800, 320));

    // Short: a line through every sample.
    let short: Vec<f32> = (0..200).map(|i| (i as f32 * 0.1).sin() * 0.3).collect();
    let p = dir.join("waveform_short.png");
    plot_waveform(&p, &short, 8000, "Short").unwrap();
    check_png(&p);

    // Silence.
    let p = dir.join("silence.png");
    plot_waveform(&p, &[0.0; 1000], 8000, "Silence").unwrap();
    check_png(&p);

    let bad = plot_waveform(dir.join("bad.png"), &[], 8000, "t").unwrap_err();
    assert!(matches!(bad, PlotError::InvalidInput { .. }), "{bad}");
    let bad = plot_waveform(dir.join("bad.png"), &[0.1], 0, "t").unwrap_err();
    assert!(matches!(bad, PlotError::InvalidInput { .. }), "{bad}");
}

#[test]
fn unwritable_path_is_io_error() {
    let (dir, _guard) = out_dir("unwritable_path_is_io_error");
    let file = dir.join("not_a_dir");
    std::fs::write(&file, b"x").unwrap();
    let err = plot_waveform(file.join("w.png"), &[0.1, 0.2], 10, "t").unwrap_err();
    assert!(matches!(err, PlotError::Io { .. }), "{err}");
    assert!(err.to_string().contains("w.png"), "{err}");
}
