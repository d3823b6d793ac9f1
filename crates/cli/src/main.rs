//! `convnet`: the command-line program. Thin: parses arguments and calls the libraries.

mod bench;
mod mnist;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "convnet", version, about = "Convolutional neural networks in Rust, Keras-simple")]
struct Cli {
    /// Threads for the compute kernels (default: all cores).
    #[arg(long, global = true, default_value_t = 0)]
    threads: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model of the course.
    Train {
        #[command(subcommand)]
        what: TrainWhat,
    },
    /// Evaluate a saved MNIST model on the MNIST train and test sets.
    Evaluate {
        /// The saved model (.safetensors).
        #[arg(long)]
        model: PathBuf,
        /// Folder with the four MNIST IDX files.
        #[arg(long, default_value = mnist::DEFAULT_DATA)]
        data: PathBuf,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Classify digit images (any PNG/JPEG, converted to 28x28 grey) with a saved MNIST model.
    Predict {
        /// The saved model (.safetensors).
        #[arg(long)]
        model: PathBuf,
        /// Images to classify.
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Benchmarks that print a table.
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
}

#[derive(Subcommand)]
enum TrainWhat {
    /// The classic Keras MNIST CNN (the course's first example).
    Mnist(mnist::TrainArgs),
}

#[derive(Subcommand)]
enum BenchWhat {
    /// Seconds per MNIST training epoch, training and inference images per second, peak memory.
    Mnist(bench::MnistBenchArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if cli.threads > 0 {
        rayon::ThreadPoolBuilder::new()
            .num_threads(cli.threads)
            .build_global()
            .context("setting up the thread pool")?;
    }
    match cli.command {
        Command::Train { what: TrainWhat::Mnist(args) } => mnist::train(&args),
        Command::Evaluate { model, data, json } => mnist::evaluate(&model, &data, json),
        Command::Predict { model, images, json } => mnist::predict(&model, &images, json),
        Command::Bench { what: BenchWhat::Mnist(args) } => bench::mnist(&args),
    }
}
