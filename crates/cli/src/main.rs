//! `convnet`: the command-line program. Thin: parses arguments and calls the libraries.

mod bench;
mod compare;
mod data;
mod images;
mod limits;
mod mnist;
mod serve;
mod sound;
mod speech;
mod zoo;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "convnet", version, about = "Convolutional neural networks in Rust, Keras-simple")]
struct Cli {
    /// Threads for the compute kernels; 0 uses every core.
    #[arg(long, global = true, default_value_t = 0)]
    threads: usize,
    /// On error, print every cause on its own line, and the backtrace when `RUST_BACKTRACE=1`
    /// (by default an error is one line: `error: what failed: why`).
    #[arg(long, global = true)]
    verbose: bool,
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
    /// Evaluate a saved MNIST model on the MNIST train and test sets (`convnet evaluate
    /// --model F`), or a fine-tuned zoo model on an image folder (`convnet evaluate images`).
    #[command(args_conflicts_with_subcommands = true)]
    Evaluate {
        #[command(subcommand)]
        what: Option<EvaluateWhat>,
        /// The saved MNIST model (.safetensors).
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long, help = data::MNIST_DATA_HELP)]
        data: Option<PathBuf>,
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
    /// List the model zoo: name, parameters, GMACs, input size (`convnet models 'resnet*'`).
    Models(zoo::ModelsArgs),
    /// Layer table of a zoo model: output shapes and parameters.
    Summary(zoo::SummaryArgs),
    /// Top-5 ImageNet classes of photos with a zoo model and a timm checkpoint.
    Classify(zoo::ClassifyArgs),
    /// Run a zoo model on an NCHW float32 .npy tensor and write the logits as .npy.
    Forward(zoo::ForwardArgs),
    /// Spoken digits: train a CNN over MFCC images, or classify WAV files.
    SoundDigit {
        #[command(subcommand)]
        what: sound::SoundDigitCmd,
    },
    /// Look at or export one audio clip: waveform, MFCC, log-mel spectrogram.
    Audio {
        #[command(subcommand)]
        what: sound::AudioCmd,
    },
    /// Keyword spotting on Google Speech Commands (TensorFlow's speech_commands example).
    Speech {
        #[command(subcommand)]
        what: speech::SpeechCmd,
    },
    /// Every zoo model side by side: size, timm's published accuracy, latency here; and the chart.
    Compare(compare::CompareArgs),
    /// The local web app: draw digits, classify photos, look at and classify sounds, compare models.
    Serve(serve::ServeArgs),
    /// Put a dataset where the commands find it (`convnet data mnist`).
    Data {
        #[command(subcommand)]
        what: data::DataCmd,
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
    /// Fine-tune (or train from scratch) a zoo model on a folder of images: transfer learning.
    Images(images::TrainImagesArgs),
}

#[derive(Subcommand)]
enum EvaluateWhat {
    /// Accuracy, per-class accuracy and confusion matrix of a `train images` checkpoint on an image folder.
    Images(images::EvaluateImagesArgs),
}

#[derive(Subcommand)]
enum BenchWhat {
    /// Seconds per MNIST training epoch, training and inference images per second, peak memory.
    Mnist(bench::MnistBenchArgs),
    /// Inference speed of a zoo model: median ms per batch, images/s, GFLOP/s.
    Infer(zoo::InferBenchArgs),
    /// Training speed of a zoo model: images/s of full AdamW steps on random data, peak memory.
    Train(zoo::TrainBenchArgs),
    /// Speech-commands training steps per second and streaming real-time factor.
    Speech(speech::SpeechBenchArgs),
}

fn main() -> ExitCode {
    // `convnet models | head` must end quietly, as any Unix tool does, not panic in println!
    convnet::tensor::restore_default_sigpipe();
    let cli = Cli::parse();
    let verbose = cli.verbose;
    match start(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // one readable chain whatever RUST_BACKTRACE says; --verbose shows the rest
            if verbose {
                eprintln!("error: {e:?}");
            } else {
                eprintln!("error: {}", one_line(&e));
            }
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes joined by `: `, leaving out a cause whose text the message before
/// it already includes (library errors often print their source themselves).
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line.replace('\n', " ")
}

fn start(cli: Cli) -> Result<()> {
    // before the pool's threads start, so that they share the main heap
    convnet::tensor::configure_allocator();
    if cli.threads > 0 {
        rayon::ThreadPoolBuilder::new()
            .num_threads(limits::threads(cli.threads))
            .build_global()
            .context("setting up the thread pool")?;
    }
    // the server keeps its own threads: async ones for HTTP, one for inference (which uses the pool)
    if let Command::Serve(args) = &cli.command {
        return serve::serve(args);
    }
    // the command itself runs on a pool worker, which then takes part in
    // every parallel loop of the kernels instead of sleeping through each
    // (`on_worker`): training steps and forward passes alike
    convnet::tensor::on_worker(|| run(cli.command))
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Train { what: TrainWhat::Mnist(args) } => mnist::train(&args),
        Command::Train { what: TrainWhat::Images(args) } => images::train(&args),
        Command::Evaluate { what: Some(EvaluateWhat::Images(args)), .. } => images::evaluate(&args),
        Command::Evaluate { what: None, model, data, json } => {
            let model = model.context("--model is required: the saved MNIST model (or use `evaluate images`)")?;
            mnist::evaluate(&model, data.as_deref(), json)
        }
        Command::Predict { model, images, json } => mnist::predict(&model, &images, json),
        Command::Bench { what: BenchWhat::Mnist(args) } => bench::mnist(&args),
        Command::Bench { what: BenchWhat::Infer(args) } => zoo::bench_infer(&args),
        Command::Bench { what: BenchWhat::Train(args) } => zoo::bench_train(&args),
        Command::Bench { what: BenchWhat::Speech(args) } => speech::bench(&args),
        Command::Data { what } => data::data_cmd(&what),
        Command::Models(args) => zoo::models(&args),
        Command::SoundDigit { what } => sound::sound_digit(&what),
        Command::Audio { what } => sound::audio_cmd(&what),
        Command::Speech { what } => speech::speech(&what),
        Command::Summary(args) => zoo::summary(&args),
        Command::Classify(args) => zoo::classify(&args),
        Command::Forward(args) => zoo::forward(&args),
        Command::Compare(args) => compare::compare(&args),
        Command::Serve(args) => serve::serve(&args),
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Every option and argument of every (sub)command, as `path: --name`, that `--help` shows
    /// without a description.
    fn undocumented(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let builtin = matches!(arg.get_id().as_str(), "help" | "version");
            if !builtin && !arg.is_hide_set() && arg.get_help().is_none() && arg.get_long_help().is_none() {
                let name = arg.get_long().map_or_else(|| arg.get_id().to_string(), |l| format!("--{l}"));
                out.push(format!("{path}: {name}"));
            }
        }
        for sub in cmd.get_subcommands() {
            if sub.get_about().is_none() && sub.get_name() != "help" {
                out.push(format!("{path} {}: no description", sub.get_name()));
            }
            undocumented(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn every_option_has_help() {
        let cmd = Cli::command();
        cmd.clone().debug_assert();
        let mut missing = Vec::new();
        undocumented(&cmd, "convnet", &mut missing);
        assert!(missing.is_empty(), "options without a help line:\n{}", missing.join("\n"));
    }

    /// A default shown twice (`(default: all cores) [default: 0]`) reads as a contradiction.
    #[test]
    fn no_default_said_twice() {
        fn walk(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                if !arg.get_default_values().is_empty() && help.contains("(default") {
                    out.push(format!("{path}: --{}: {help}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), out);
            }
        }
        let mut twice = Vec::new();
        walk(&Cli::command(), "convnet", &mut twice);
        assert!(twice.is_empty(), "defaults said in the help text and by clap:\n{}", twice.join("\n"));
    }
}
