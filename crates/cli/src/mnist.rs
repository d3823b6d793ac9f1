//! `convnet mnist train|evaluate|predict` (also spelled `convnet train mnist`, `convnet
//! evaluate`, `convnet predict`): the seed's Keras MNIST script as commands.

use crate::report::{Classification, print_json};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use convnet::data::{Mnist, load_digit_image};
use convnet::nn::{Adam, FitOptions, Loss, Metric, Sequential, Targets};
use convnet::{Tensor, models};
use serde_json::json;
use std::path::{Path, PathBuf};

/// `convnet mnist ...`.
#[derive(Subcommand)]
pub enum MnistCmd {
    /// Train the classic Keras MNIST CNN (the course's first example): summary, fit with
    /// validation, model and history plots in --out, Train and Test Accuracy.
    Train(TrainArgs),
    /// Loss and accuracy of a saved MNIST model on the MNIST train and test sets.
    Evaluate(EvaluateArgs),
    /// Classify digit images (any PNG/JPEG, converted to 28x28 grey) with a saved MNIST model.
    Predict(PredictArgs),
}

/// Runs a `convnet mnist` command.
pub fn mnist(cmd: &MnistCmd) -> Result<()> {
    match cmd {
        MnistCmd::Train(a) => train(a),
        MnistCmd::Evaluate(a) => evaluate(&a.model, a.data.as_deref(), a.json),
        MnistCmd::Predict(a) => predict(a),
    }
}

/// Options of `convnet mnist evaluate`.
#[derive(Args, Debug)]
pub struct EvaluateArgs {
    /// The saved MNIST model (.safetensors).
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long, help = crate::data::MNIST_DATA_HELP)]
    pub data: Option<PathBuf>,
    /// Print one JSON object (train/test loss and accuracy) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Options of `convnet mnist predict`.
#[derive(Args, Debug)]
pub struct PredictArgs {
    /// The saved model (.safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// Digits to list per image in --json, most likely first (10: all of them).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=10))]
    pub top: u16,
    /// Print the classifications as JSON: `[{"file", "top": [{"index", "label", "probability"}]}]`.
    #[arg(long)]
    pub json: bool,
    /// Images to classify.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
}

/// Options of `convnet mnist train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    #[arg(long, help = crate::data::MNIST_DATA_HELP)]
    pub data: Option<PathBuf>,
    /// Passes over the training images.
    #[arg(long, default_value_t = 12)]
    pub epochs: usize,
    /// Images per gradient step.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Seed of the initial weights, the shuffling and the dropout masks.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Folder for the model and the history plots.
    #[arg(long, default_value = "models")]
    pub out: PathBuf,
    /// Train on only the first N training images (quick runs).
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Validate and test on only the first N test images.
    #[arg(long)]
    pub test_limit: Option<usize>,
    /// Print one JSON object (history, epoch_seconds, train/test accuracy) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Images as `[n, 28, 28, 1]` in `[0, 1]` and their labels.
pub fn tensors(images: &convnet::data::Images, labels: &[u8]) -> Result<(Tensor, Targets)> {
    let x = Tensor::from_vec(images.to_f32_nhwc(), images.shape_nhwc())?;
    Ok((x, Targets::Sparse(labels.iter().map(|&l| l as u32).collect())))
}

/// MNIST from `--data`, or from the first folder where [`crate::data::mnist_dir`] finds it.
pub fn load_mnist(data: Option<&Path>, train_limit: Option<usize>, test_limit: Option<usize>) -> Result<Mnist> {
    let dir = crate::data::mnist_dir(data)?;
    let mnist = Mnist::load(&dir).with_context(|| {
        format!("loading MNIST from {} (`convnet data mnist --out DIR` puts the files in DIR)", dir.display())
    })?;
    Ok(match (train_limit, test_limit) {
        (None, None) => mnist,
        (a, b) => {
            let (n_train, n_test) = (mnist.train_labels.len(), mnist.test_labels.len());
            mnist.subset(a.unwrap_or(n_train), b.unwrap_or(n_test))
        }
    })
}

pub fn train(args: &TrainArgs) -> Result<()> {
    if args.epochs == 0 || args.batch_size == 0 {
        bail!("--epochs and --batch-size must be positive");
    }
    crate::limits::batch("--batch-size", args.batch_size)?;
    // before the epochs, not after them
    convnet::nn::fsio::ensure_writable_dir(&args.out)
        .with_context(|| format!("cannot write to --out {}", args.out.display()))?;
    let mnist = load_mnist(args.data.as_deref(), args.train_limit, args.test_limit)?;
    let (x_train, y_train) = tensors(&mnist.train_images, &mnist.train_labels)?;
    let (x_test, y_test) = tensors(&mnist.test_images, &mnist.test_labels)?;

    let mut model = models::mnist_cnn(args.seed)?;
    if args.json {
        eprintln!("{}", model.summary());
    } else {
        println!("{}", model.summary());
    }
    model.compile(Loss::sparse_categorical_crossentropy(), Adam::default(), &[Metric::Accuracy])?;
    let options = FitOptions::new(args.batch_size, args.epochs)
        .with_validation_data(x_test.clone(), y_test.clone())
        .with_seed(args.seed)
        .with_verbose(if args.json { 0 } else { 1 });
    let history = model.fit(&x_train, &y_train, options)?;

    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let model_path = args.out.join("mnist_cnn.safetensors");
    model.save(&model_path).with_context(|| format!("saving {}", model_path.display()))?;
    let plots = convnet::plot::plot_history_pair(
        &args.out,
        "mnist_cnn",
        &history.loss,
        &history.val_loss,
        &history.accuracy,
        &history.val_accuracy,
    )?;

    let train_eval = model.evaluate(&x_train, &y_train, 1024)?;
    let test_eval = model.evaluate(&x_test, &y_test, 1024)?;
    let train_acc = train_eval.accuracy.unwrap_or(f64::NAN);
    let test_acc = test_eval.accuracy.unwrap_or(f64::NAN);
    if args.json {
        let out = json!({
            "history": {
                "loss": history.loss,
                "accuracy": history.accuracy,
                "val_loss": history.val_loss,
                "val_accuracy": history.val_accuracy,
            },
            "epoch_seconds": history.epoch_seconds,
            "train_accuracy": train_acc,
            "test_accuracy": test_acc,
            "model": model_path,
            "plots": plots,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("Saved model to {}", model_path.display());
        for p in &plots {
            println!("Saved plot {}", p.display());
        }
        println!("Train Accuracy: {train_acc:.4}");
        println!("Test Accuracy: {test_acc:.4}");
    }
    Ok(())
}

fn load_model(path: &Path) -> Result<Sequential> {
    Sequential::load(path).with_context(|| format!("loading model {}", path.display()))
}

pub fn evaluate(model_path: &Path, data: Option<&Path>, json: bool) -> Result<()> {
    let mut model = load_model(model_path)?;
    if model.compile_config().is_none() {
        model.compile(Loss::sparse_categorical_crossentropy(), Adam::default(), &[Metric::Accuracy])?;
    }
    let mnist = load_mnist(data, None, None)?;
    let (x_train, y_train) = tensors(&mnist.train_images, &mnist.train_labels)?;
    let (x_test, y_test) = tensors(&mnist.test_images, &mnist.test_labels)?;
    let train = model.evaluate(&x_train, &y_train, 1024)?;
    let test = model.evaluate(&x_test, &y_test, 1024)?;
    if json {
        let out = json!({
            "train_loss": train.loss, "train_accuracy": train.accuracy,
            "test_loss": test.loss, "test_accuracy": test.accuracy,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("Train Loss: {:.4}  Train Accuracy: {:.4}", train.loss, train.accuracy.unwrap_or(f64::NAN));
        println!("Test Loss: {:.4}  Test Accuracy: {:.4}", test.loss, test.accuracy.unwrap_or(f64::NAN));
    }
    Ok(())
}

pub fn predict(args: &PredictArgs) -> Result<()> {
    let (model_path, images) = (&args.model, &args.images);
    let model = load_model(model_path)?;
    if model.input_shape() != [28, 28, 1] || model.output_shape() != [10] {
        bail!(
            "{}: expected an MNIST model (input [28, 28, 1], 10 outputs), got input {:?} and output {:?}",
            model_path.display(),
            model.input_shape(),
            model.output_shape()
        );
    }
    let mut pixels = Vec::with_capacity(images.len() * 784);
    for path in images {
        pixels.extend(load_digit_image(path)?);
    }
    let x = Tensor::from_vec(pixels, [images.len(), 28, 28, 1])?;
    let probs = model.predict(&x, 256)?;
    let mut results = Vec::new();
    for (path, p) in images.iter().zip(probs.data().chunks_exact(10)) {
        let c = Classification::new(path, p, |i| i.to_string(), usize::from(args.top));
        if !args.json {
            let digit = c.best().map_or(0, |s| s.index);
            let ps: Vec<String> = p.iter().map(|v| format!("{v:.4}")).collect();
            println!("{}: {digit}  [{}]", path.display(), ps.join(", "));
        }
        results.push(c);
    }
    if args.json {
        print_json(&results)?;
    }
    Ok(())
}
