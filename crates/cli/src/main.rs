//! `convnet`: the command-line program. Thin: parses arguments and calls the libraries.

mod bench;
mod compare;
mod data;
mod images;
mod limits;
mod mnist;
mod report;
mod serve;
mod shell;
mod sound;
mod speech;
mod zoo;

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser, Subcommand};
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

/// The commands, in the order a course meets them (`convnet help` lists them so): data, the
/// MNIST CNN, sound, keyword spotting, the zoo and transfer learning, then speed, the web app
/// and the shell helpers. Hidden at the end: today's older spellings, kept working.
#[derive(Subcommand)]
enum Command {
    /// Put a dataset where the commands find it (`convnet data mnist`).
    Data {
        #[command(subcommand)]
        what: data::DataCmd,
    },
    /// The classic Keras MNIST CNN: train it, evaluate it, classify digit images.
    Mnist {
        #[command(subcommand)]
        what: mnist::MnistCmd,
    },
    /// Look at or export one audio clip: waveform, MFCC, log-mel spectrogram.
    Audio {
        #[command(subcommand)]
        what: sound::AudioCmd,
    },
    /// Spoken digits: train a CNN over MFCC images, cross-validate it, classify WAV files.
    SoundDigit {
        #[command(subcommand)]
        what: sound::SoundDigitCmd,
    },
    /// Keyword spotting on Google Speech Commands (TensorFlow's speech_commands example).
    Speech {
        #[command(subcommand)]
        what: speech::SpeechCmd,
    },
    /// The timm-named model zoo: list, summarise, run and compare architectures.
    Zoo {
        #[command(subcommand)]
        what: zoo::ZooCmd,
    },
    /// Transfer learning on a folder of photos with a zoo model: train, evaluate, classify.
    Images {
        #[command(subcommand)]
        what: images::ImagesCmd,
    },
    /// Benchmarks that print a table (or one JSON object).
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
    /// The local web app: draw digits, classify photos, look at and classify sounds, compare models.
    Serve(serve::ServeArgs),
    /// Print a shell completion script (`convnet completions bash > ~/.local/share/bash-completion/completions/convnet`).
    Completions(shell::CompletionsArgs),
    /// Print the manual page convnet(1), or write one page per command to a folder.
    Man(shell::ManArgs),

    // today's spellings, hidden from the help but kept working (the README's and scripts')
    /// Train a model of the course (`mnist train`, `images train`).
    #[command(hide = true)]
    Train {
        #[command(subcommand)]
        what: TrainWhat,
    },
    /// Evaluate a saved MNIST model (`mnist evaluate`), or a fine-tuned zoo model on an image
    /// folder (`images evaluate`).
    #[command(hide = true, args_conflicts_with_subcommands = true)]
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
    /// Classify digit images with a saved MNIST model (`mnist predict`).
    #[command(hide = true)]
    Predict(mnist::PredictArgs),
    /// List the model zoo (`zoo models`).
    #[command(hide = true)]
    Models(zoo::ModelsArgs),
    /// Layer table of a zoo model (`zoo summary`).
    #[command(hide = true)]
    Summary(zoo::SummaryArgs),
    /// Top classes of photos (`images classify`).
    #[command(hide = true)]
    Classify(zoo::ClassifyArgs),
    /// Run a zoo model on an NCHW .npy tensor (`zoo forward`).
    #[command(hide = true)]
    Forward(zoo::ForwardArgs),
    /// Every zoo model side by side (`zoo compare`).
    #[command(hide = true)]
    Compare(compare::CompareArgs),
}

#[derive(Subcommand)]
enum TrainWhat {
    /// The classic Keras MNIST CNN (`mnist train`).
    Mnist(mnist::TrainArgs),
    /// Fine-tune a zoo model on a folder of images (`images train`).
    Images(images::TrainImagesArgs),
}

#[derive(Subcommand)]
enum EvaluateWhat {
    /// A `train images` checkpoint on an image folder (`images evaluate`).
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
        Command::Data { what } => data::data_cmd(&what),
        Command::Mnist { what } => mnist::mnist(&what),
        Command::Audio { what } => sound::audio_cmd(&what),
        Command::SoundDigit { what } => sound::sound_digit(&what),
        Command::Speech { what } => speech::speech(&what),
        Command::Zoo { what } => zoo::zoo(&what),
        Command::Images { what } => images::images(&what),
        Command::Bench { what: BenchWhat::Mnist(args) } => bench::mnist(&args),
        Command::Bench { what: BenchWhat::Infer(args) } => zoo::bench_infer(&args),
        Command::Bench { what: BenchWhat::Train(args) } => zoo::bench_train(&args),
        Command::Bench { what: BenchWhat::Speech(args) } => speech::bench(&args),
        Command::Serve(args) => serve::serve(&args),
        Command::Completions(args) => shell::completions(&mut Cli::command(), &args),
        Command::Man(args) => shell::man(Cli::command(), &args),
        Command::Train { what: TrainWhat::Mnist(args) } => mnist::train(&args),
        Command::Train { what: TrainWhat::Images(args) } => images::train(&args),
        Command::Evaluate { what: Some(EvaluateWhat::Images(args)), .. } => images::evaluate(&args),
        Command::Evaluate { what: None, model, data, json } => {
            let model = model.context("--model is required: the saved MNIST model (or use `images evaluate`)")?;
            mnist::evaluate(&model, data.as_deref(), json)
        }
        Command::Predict(args) => mnist::predict(&args),
        Command::Models(args) => zoo::models(&args),
        Command::Summary(args) => zoo::summary(&args),
        Command::Classify(args) => zoo::classify(&args),
        Command::Forward(args) => zoo::forward(&args),
        Command::Compare(args) => compare::compare(&args),
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::{CommandFactory, Parser};
    use std::collections::BTreeSet;

    /// The visible commands that run something (no subcommands of their own), as paths
    /// (`mnist train`, `serve`), in `--help`'s order.
    fn leaves(cmd: &clap::Command, prefix: &str, out: &mut Vec<String>) {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
            let path =
                if prefix.is_empty() { sub.get_name().to_string() } else { format!("{prefix} {}", sub.get_name()) };
            if sub.has_subcommands() {
                leaves(sub, &path, out);
            } else {
                out.push(path);
            }
        }
    }

    fn visible_leaves() -> Vec<String> {
        let mut out = Vec::new();
        leaves(&Cli::command(), "", &mut out);
        out
    }

    /// The commands of the README's command table: each `` `convnet A B ...` `` span in a
    /// row's first cell, following the words that name subcommands (`a\|b` names two).
    fn readme_commands() -> Vec<String> {
        let readme = include_str!("../../../README.md");
        let section =
            readme.split("## Command-line reference").nth(1).expect("the README has a command-line reference");
        let cli = Cli::command();
        let mut out = Vec::new();
        for row in section.lines().take_while(|l| !l.starts_with("## ")).filter(|l| l.starts_with("| `convnet ")) {
            let first_cell = row.replace("\\|", "\u{1}");
            let first_cell = first_cell.split(" | ").next().unwrap_or_default().replace('\u{1}', "|");
            for span in first_cell.split('`').skip(1).step_by(2).filter(|s| s.starts_with("convnet ")) {
                let mut paths = vec![(String::new(), &cli)];
                for word in span.split_whitespace().skip(1) {
                    let mut next = Vec::new();
                    for (path, cmd) in &paths {
                        for alt in word.split('|') {
                            if let Some(sub) = cmd.find_subcommand(alt) {
                                let p = if path.is_empty() { alt.to_string() } else { format!("{path} {alt}") };
                                next.push((p, sub));
                            }
                        }
                    }
                    if next.is_empty() {
                        break;
                    }
                    paths = next;
                }
                out.extend(paths.into_iter().map(|(p, _)| p).filter(|p| !p.is_empty()));
            }
        }
        out
    }

    /// The README's command table lists exactly the commands `--help` lists, none hidden, and
    /// in `convnet help`'s order (the order a course uses them).
    #[test]
    fn the_readme_command_table_matches_help() {
        let (readme, help) = (readme_commands(), visible_leaves());
        let (r, h): (BTreeSet<_>, BTreeSet<_>) = (readme.iter().collect(), help.iter().collect());
        assert!(
            r == h,
            "README table and --help differ:\n only in the README: {:?}\n only in --help: {:?}",
            r.difference(&h).collect::<Vec<_>>(),
            h.difference(&r).collect::<Vec<_>>()
        );
        let mut first_seen: Vec<&str> = Vec::new();
        for c in &readme {
            let top = c.split(' ').next().unwrap_or_default();
            if !first_seen.contains(&top) {
                first_seen.push(top);
            }
        }
        let order: Vec<String> = Cli::command()
            .get_subcommands()
            .filter(|s| !s.is_hide_set() && s.get_name() != "help")
            .map(|s| s.get_name().to_string())
            .collect();
        assert_eq!(first_seen, order, "the README's table is not in `convnet help`'s order");
    }

    /// Older spellings still parse, as the README and scripts wrote them.
    #[test]
    fn older_spellings_still_parse() {
        for args in [
            &["convnet", "train", "mnist", "--epochs", "1"][..],
            &["convnet", "train", "images", "--data", "d", "--model", "resnet18"],
            &["convnet", "evaluate", "--model", "m.safetensors"],
            &["convnet", "evaluate", "images", "--model", "resnet18", "--weights", "w", "--data", "d"],
            &["convnet", "predict", "--model", "m.safetensors", "a.png"],
            &["convnet", "models", "resnet*"],
            &["convnet", "summary", "resnet18"],
            &["convnet", "classify", "--model", "resnet18", "--weights", "w", "a.png"],
            &["convnet", "forward", "--model", "lenet5", "--input", "x.npy", "--output", "y.npy"],
            &["convnet", "compare", "--batch", "2", "--no-bench"],
            &["convnet", "bench", "infer", "lenet5", "--batch", "1,2"],
            &["convnet", "bench", "train", "lenet5", "--batch", "2"],
            &["convnet", "speech", "train", "--data", "d", "--learning-rate", "0.1,0.01"],
            &["convnet", "sound-digit", "train", "--data", "d", "--learning-rate", "0.01"],
            &["convnet", "images", "train", "--data", "d", "--model", "resnet18", "--learning-rate", "0.01"],
        ] {
            if let Err(e) = Cli::try_parse_from(args) {
                panic!("{args:?} no longer parses: {e}");
            }
        }
    }

    /// Options a command cannot use are not offered: `audio waveform` draws a waveform only.
    #[test]
    fn audio_waveform_offers_only_its_own_options() {
        let cli = Cli::command();
        let waveform = cli.find_subcommand("audio").and_then(|a| a.find_subcommand("waveform")).unwrap();
        let longs: BTreeSet<&str> = waveform.get_arguments().filter_map(|a| a.get_long()).collect();
        for unusable in ["out", "n-mfcc", "n-fft", "hop-length", "n-mels"] {
            assert!(!longs.contains(unusable), "audio waveform offers --{unusable}");
        }
        assert!(longs.contains("png") && longs.contains("sr"), "{longs:?}");
    }

    /// The completion scripts and the manual pages are generated from the same definitions:
    /// each names every command.
    #[test]
    fn completions_and_manual_pages_name_every_command() {
        let help = visible_leaves();
        for shell in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh, clap_complete::Shell::Fish] {
            let script = String::from_utf8(crate::shell::completion_script(shell, &mut Cli::command())).unwrap();
            for path in &help {
                for word in path.split(' ') {
                    assert!(script.contains(word), "the {shell} completions lack `{word}` ({path})");
                }
            }
        }
        let mut pages = Vec::new();
        crate::shell::pages(&crate::shell::for_manual(Cli::command()), &mut pages).unwrap();
        let names: BTreeSet<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        for path in &help {
            let page = format!("convnet-{}.1", path.replace(' ', "-"));
            assert!(names.contains(page.as_str()), "no manual page {page}: {names:?}");
        }
        let (_, top) = pages.iter().find(|(n, _)| n == "convnet.1").expect("convnet.1");
        // roff writes a hyphen as `\-`
        let top = String::from_utf8_lossy(top).replace("\\-", "-");
        for path in &help {
            let first = path.split(' ').next().unwrap();
            assert!(top.contains(first), "convnet(1) does not name `{first}`");
        }
    }

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
