//! `convnet bench mnist`: the speed of the classic MNIST CNN, as a table.
//!
//! Trains full epochs (60,000 images, batch 128, validation on the 10,000
//! test images, as `convnet train mnist` does), then times inference over the
//! test set, and prints seconds per epoch and images per second next to the
//! reference figures measured on the 2-core AVX-512 development machine.

use crate::mnist::{load_mnist, tensors};
use crate::report::{BenchRow, Phase, bench_json, print_json};
use anyhow::{Result, bail};
use clap::Args;
use convnet::models;
use convnet::nn::{Adam, FitOptions, Loss, Metric};
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

/// Reference seconds per epoch, 2 threads, same network and data (measured on the development machine).
const REFERENCES: [(&str, f64); 4] = [
    ("PyTorch 2.15, channels-last", 27.0),
    ("PyTorch 2.15, NCHW", 30.0),
    ("Keras 3.15 / TensorFlow 2.21", 38.8),
    ("burn 0.22, flex backend", 95.5),
];

/// Options of `convnet bench mnist`.
#[derive(Args, Debug)]
pub struct MnistBenchArgs {
    #[arg(long, help = crate::data::MNIST_DATA_HELP)]
    pub data: Option<PathBuf>,
    /// Epochs to time (the median is reported).
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    /// Images per training step (the references use 128).
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Peak resident memory of this process in bytes (Linux), if known.
pub(crate) fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() { f64::NAN } else { s[s.len() / 2] }
}

/// The workload the [`REFERENCES`] were measured on: the full 60,000 training and 10,000 test
/// images, batch 128, 2 threads. Any other run is printed without the comparison.
const REFERENCE_WORKLOAD: (usize, usize, usize, usize) = (60_000, 10_000, 128, 2);

pub fn mnist(args: &MnistBenchArgs) -> Result<()> {
    if args.epochs == 0 {
        bail!("--epochs must be at least 1: there is nothing to time in zero epochs");
    }
    crate::limits::batch("--batch-size", args.batch_size)?;
    let mnist = load_mnist(args.data.as_deref(), None, None)?;
    let (x_train, y_train) = tensors(&mnist.train_images, &mnist.train_labels)?;
    let (x_test, y_test) = tensors(&mnist.test_images, &mnist.test_labels)?;
    let mut model = models::mnist_cnn(42)?;
    model.compile(Loss::sparse_categorical_crossentropy(), Adam::default(), &[Metric::Accuracy])?;
    let threads = rayon::current_num_threads();
    let workload = (x_train.dims()[0], x_test.dims()[0], args.batch_size, threads);
    let comparable = workload == REFERENCE_WORKLOAD;
    if !args.json {
        eprintln!("training {} epoch(s) of {} images on {threads} thread(s)...", args.epochs, workload.0);
    }
    let options = FitOptions::new(args.batch_size, args.epochs)
        .with_validation_data(x_test.clone(), y_test.clone())
        .with_seed(42)
        .with_verbose(0);
    let history = model.fit(&x_train, &y_train, options)?;
    let epoch_s = median(&history.epoch_seconds);

    // inference alone, over the test set
    let start = Instant::now();
    let probs = model.predict(&x_test, args.batch_size)?;
    let infer_s = start.elapsed().as_secs_f64();
    let n_test = probs.dims()[0] as f64;
    let infer_ips = n_test / infer_s;
    // training throughput: the epoch minus its validation pass
    let train_s = (epoch_s - infer_s).max(f64::EPSILON);
    let train_ips = x_train.dims()[0] as f64 / train_s;
    let peak = peak_rss_bytes();

    if args.json {
        let batches = |n: usize| n.div_ceil(args.batch_size).max(1) as f64;
        let rows = [
            BenchRow {
                phase: Phase::Training,
                batch_size: args.batch_size,
                median_ms: 1e3 * train_s / batches(workload.0),
                examples_per_sec: train_ips,
                gflops: None,
            },
            BenchRow {
                phase: Phase::Inference,
                batch_size: args.batch_size,
                median_ms: 1e3 * infer_s / batches(workload.1),
                examples_per_sec: infer_ips,
                gflops: None,
            },
        ];
        let extra = json!({
            "epoch_seconds": history.epoch_seconds,
            "median_epoch_seconds": epoch_s,
            "val_accuracy": history.val_accuracy,
            "train_images": workload.0,
            "test_images": workload.1,
            // references only for the workload they were measured on
            "references_seconds_per_epoch": if comparable {
                REFERENCES.iter().map(|(name, s)| json!({"engine": name, "seconds_per_epoch": s})).collect::<Vec<_>>()
            } else {
                Vec::new()
            },
        });
        return print_json(&bench_json("mnist", "mnist_cnn", &rows, extra));
    }
    println!(
        "MNIST CNN, {} training / {} test images, batch {}, {threads} thread(s)",
        workload.0, workload.1, args.batch_size
    );
    println!("| engine | s/epoch | vs convnet |");
    println!("| --- | ---: | ---: |");
    println!("| convnet (this run, median of {}) | {epoch_s:.1} | 1.00x |", history.epoch_seconds.len());
    if comparable {
        for (name, s) in REFERENCES {
            println!("| {name} (reference) | {s:.1} | {:.2}x |", s / epoch_s);
        }
    } else {
        let (a, b, c, d) = REFERENCE_WORKLOAD;
        println!(
            "(reference figures were measured on {a} training / {b} test images, batch {c}, {d} threads: \
             not comparable with this run, so not shown)"
        );
    }
    println!();
    println!("| measure | value |");
    println!("| --- | ---: |");
    println!("| training images/s | {train_ips:.0} |");
    println!("| inference images/s | {infer_ips:.0} |");
    if let Some(p) = peak {
        println!("| peak memory | {:.0} MB |", p as f64 / 1e6);
    }
    println!(
        "| validation accuracy after last epoch | {:.4} |",
        history.val_accuracy.last().copied().unwrap_or(f64::NAN)
    );
    Ok(())
}
