//! `convnet images train|evaluate|classify` (also spelled `convnet train images`, `convnet
//! evaluate images`, `convnet classify`): transfer learning on a folder of
//! photos (torchvision's ImageFolder layout), as timm's `train.py --pretrained
//! --num-classes N` does. The recipe and the loop live in `convnet_zoo::finetune`.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use convnet_zoo::finetune::{FineTune, OptimizerKind, SchedKind, Sidecar, evaluate_folder, open_folders};
use convnet_zoo::{LoadOptions, ZooOpts, create_model};
use serde_json::json;
use std::path::PathBuf;

/// `convnet images ...`.
#[derive(Subcommand)]
pub enum ImagesCmd {
    /// Fine-tune (or train from scratch) a zoo model on a folder of images: transfer learning.
    Train(TrainImagesArgs),
    /// Accuracy, per-class accuracy and confusion matrix of a `images train` checkpoint on an
    /// image folder.
    Evaluate(EvaluateImagesArgs),
    /// Top classes of photos with a zoo model and a timm checkpoint: ImageNet's, or those of an
    /// `images train` checkpoint.
    Classify(crate::zoo::ClassifyArgs),
}

/// Runs a `convnet images` command.
pub fn images(cmd: &ImagesCmd) -> Result<()> {
    match cmd {
        ImagesCmd::Train(a) => train(a),
        ImagesCmd::Evaluate(a) => evaluate(a),
        ImagesCmd::Classify(a) => crate::zoo::classify(a),
    }
}

/// `--optimizer`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum OptimizerArg {
    /// SGD with Nesterov momentum (`--momentum`).
    Sgd,
    /// Adam with L2 weight decay.
    Adam,
    /// AdamW, decoupled weight decay (timm's default for fine-tuning).
    Adamw,
}

/// `--sched`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SchedArg {
    /// Half a cosine from the learning rate to `--min-lr` over the epochs.
    Cosine,
    /// Multiply by `--decay-rate` every `--decay-epochs`.
    Step,
    /// Constant.
    None,
}

/// Options of `convnet train images`.
#[derive(Args, Debug)]
pub struct TrainImagesArgs {
    /// Image folder: `DIR/train/<class>/*` and `DIR/val/<class>/*`, or `DIR/<class>/*` split by `--val-split`.
    #[arg(long)]
    pub data: PathBuf,
    /// Zoo model (timm name), e.g. resnet18, tf_efficientnet_lite0.
    #[arg(long)]
    pub model: String,
    /// timm `.safetensors` checkpoint to fine-tune from (its classifier is re-initialised for the new classes).
    #[arg(long)]
    pub pretrained: Option<PathBuf>,
    /// Epochs to train.
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    /// Images per training step.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Base learning rate.
    #[arg(long, default_value_t = 1e-3, visible_alias = "learning-rate")]
    pub lr: f64,
    /// Optimizer.
    #[arg(long, value_enum, default_value_t = OptimizerArg::Adamw)]
    pub optimizer: OptimizerArg,
    /// Weight decay (biases and norm parameters excluded).
    #[arg(long, default_value_t = 0.05)]
    pub weight_decay: f64,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// Cross-entropy label smoothing.
    #[arg(long, default_value_t = 0.1)]
    pub label_smoothing: f32,
    /// Learning-rate schedule.
    #[arg(long, value_enum, default_value_t = SchedArg::Cosine)]
    pub sched: SchedArg,
    /// Linear warmup epochs (from 1e-5).
    #[arg(long, default_value_t = 0)]
    pub warmup_epochs: usize,
    /// Floor of the cosine schedule.
    #[arg(long, default_value_t = 0.0)]
    pub min_lr: f64,
    /// Period of the step schedule, in epochs.
    #[arg(long, default_value_t = 30)]
    pub decay_epochs: usize,
    /// Factor of the step schedule.
    #[arg(long, default_value_t = 0.1)]
    pub decay_rate: f64,
    /// Clip gradients to this global L2 norm.
    #[arg(long)]
    pub clip_grad: Option<f32>,
    /// Train only the classifier (a linear probe: the backbone and its batch norms stay fixed).
    #[arg(long)]
    pub freeze_backbone: bool,
    /// Square input size (default: the model's pretrained input size).
    #[arg(long)]
    pub img_size: Option<usize>,
    /// Eval center-crop fraction (default: the model's; 1 resizes validation images uncropped).
    #[arg(long)]
    pub crop_pct: Option<f64>,
    /// No training augmentation (timm's --no-aug): resize and center crop instead of RandomResizedCrop and flip.
    #[arg(long)]
    pub no_aug: bool,
    /// Validation fraction per class, when the folder has no train/ and val/.
    #[arg(long, default_value_t = 0.2)]
    pub val_split: f64,
    /// Seed of the new classifier, the split, shuffles, augmentation and dropout.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Image-decoding threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// Folder for best.safetensors (timm layout), best.json, last.state.safetensors and the plots.
    #[arg(long, default_value = "runs/images")]
    pub out: PathBuf,
    /// Continue from a training state (`OUT/last.state.safetensors`) with the same flags.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Print one JSON object (history, best epoch, files) instead of text.
    #[arg(long)]
    pub json: bool,
}

impl TrainImagesArgs {
    fn recipe(&self) -> FineTune {
        FineTune {
            pretrained: self.pretrained.clone(),
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            optimizer: match self.optimizer {
                OptimizerArg::Sgd => OptimizerKind::Sgd,
                OptimizerArg::Adam => OptimizerKind::Adam,
                OptimizerArg::Adamw => OptimizerKind::Adamw,
            },
            weight_decay: self.weight_decay,
            momentum: self.momentum,
            label_smoothing: self.label_smoothing,
            sched: match self.sched {
                SchedArg::Cosine => SchedKind::Cosine,
                SchedArg::Step => SchedKind::Step,
                SchedArg::None => SchedKind::None,
            },
            warmup_epochs: self.warmup_epochs,
            min_lr: self.min_lr,
            decay_epochs: self.decay_epochs,
            decay_rate: self.decay_rate,
            clip_grad: self.clip_grad,
            freeze_backbone: self.freeze_backbone,
            img_size: self.img_size,
            crop_pct: self.crop_pct,
            no_aug: self.no_aug,
            val_split: self.val_split,
            seed: self.seed,
            workers: self.workers,
            ..FineTune::new(self.model.clone())
        }
    }
}

/// `convnet train images`.
pub fn train(args: &TrainImagesArgs) -> Result<()> {
    crate::limits::batch("--batch-size", args.batch_size)?;
    if let Some(s) = args.img_size {
        crate::limits::input_size("--img-size", [3, s, s])?;
    }
    if args.workers > 0 {
        crate::limits::positive("--workers", args.workers, crate::limits::THREADS_PER_CORE * num_cores())?;
    }
    // before the epochs, not after them
    convnet::nn::fsio::ensure_writable_dir(&args.out)
        .with_context(|| format!("cannot write to --out {}", args.out.display()))?;
    let recipe = args.recipe();
    let (train_folder, _) = open_folders(&args.data, recipe.val_split, recipe.seed)?;
    // the summary needs the architecture only: the checkpoint is read once, by `run`
    let shape_only = FineTune { pretrained: None, ..recipe.clone() };
    let (model, _) =
        shape_only.build_model(train_folder.num_classes()).with_context(|| format!("building {}", args.model))?;
    let cfg = recipe.data_config(&model);
    let summary = model.summary(cfg.input_size)?;
    if args.json {
        eprintln!("{summary}");
    } else {
        println!("{summary}");
    }
    drop(model);
    let report = recipe
        .run(&args.data, &args.out, args.resume.as_deref(), if args.json { 0 } else { 1 })
        .with_context(|| format!("training {} on {}", args.model, args.data.display()))?;
    let h = &report.history;
    let plots =
        convnet::plot::plot_history_pair(&args.out, "images", &h.loss, &h.val_loss, &h.accuracy, &h.val_accuracy)?;
    if args.json {
        let out = json!({
            "model": args.model,
            "classes": report.classes,
            "train_images": report.sizes.0,
            "val_images": report.sizes.1,
            "history": {"loss": h.loss, "accuracy": h.accuracy, "val_loss": h.val_loss, "val_accuracy": h.val_accuracy},
            "epoch_seconds": h.epoch_seconds,
            "best_epoch": report.best.map(|b| b.0),
            "best_val_accuracy": report.best.map(|b| b.1),
            "checkpoint": report.checkpoint,
            "state": report.state,
            "plots": plots,
            "notes": report.notes,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    for note in &report.notes {
        eprintln!("note: {note}");
    }
    println!("{} classes, {} training and {} validation images", report.classes.len(), report.sizes.0, report.sizes.1);
    if let Some((epoch, acc)) = report.best {
        println!("Best validation accuracy: {acc:.4} (epoch {epoch})");
    }
    println!(
        "Saved checkpoint {} (timm layout) and {}",
        report.checkpoint.display(),
        Sidecar::path_for(&report.checkpoint).display()
    );
    println!("Saved training state {} (for --resume)", report.state.display());
    for p in &plots {
        println!("Saved plot {}", p.display());
    }
    Ok(())
}

fn num_cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Options of `convnet evaluate images`.
#[derive(Args, Debug)]
pub struct EvaluateImagesArgs {
    /// Zoo model (timm name).
    #[arg(long)]
    pub model: String,
    /// Checkpoint written by `train images` (its `.json` sidecar gives the classes and transform).
    #[arg(long)]
    pub weights: PathBuf,
    /// Image folder `DIR/<class>/*`, or one with `val/` (evaluated) .
    #[arg(long)]
    pub data: PathBuf,
    /// Images per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Confusion matrix PNG (default: next to the checkpoint, `<name>_confusion.png`).
    #[arg(long)]
    pub png: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `convnet evaluate images`: accuracy, per-class accuracy and the confusion matrix.
pub fn evaluate(args: &EvaluateImagesArgs) -> Result<()> {
    crate::limits::batch("--batch-size", args.batch_size)?;
    let sidecar = Sidecar::read_for(&args.weights)?.with_context(|| {
        format!(
            "{} has no sidecar {}: evaluate images needs the class names that train images writes",
            args.weights.display(),
            Sidecar::path_for(&args.weights).display()
        )
    })?;
    if sidecar.model != args.model {
        bail!("{} was trained as {}, not {}", args.weights.display(), sidecar.model, args.model);
    }
    let mut model = create_model(&args.model, ZooOpts::new().with_num_classes(sidecar.num_classes))?;
    let strict = LoadOptions { strict: true, classifier: None, first_conv: None };
    model.load_checkpoint(&args.weights, &strict).with_context(|| format!("loading {}", args.weights.display()))?;
    let root = if args.data.join("val").is_dir() { args.data.join("val") } else { args.data.clone() };
    let folder = convnet::data::ImageFolder::open(&root)?;
    if folder.classes != sidecar.classes {
        bail!(
            "{} has classes {:?}; the model was trained on {:?}",
            folder.root.display(),
            folder.classes,
            sidecar.classes
        );
    }
    let ev = evaluate_folder(&model, &folder, &sidecar.data_config, args.batch_size)?;
    let png = args.png.clone().unwrap_or_else(|| {
        let stem = args.weights.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
        args.weights.with_file_name(format!("{stem}_confusion.png"))
    });
    let matrix: Vec<Vec<u64>> = ev.confusion.iter().map(|r| r.iter().map(|&v| v as u64).collect()).collect();
    convnet::plot::plot_confusion_matrix(
        &png,
        &sidecar.classes,
        &matrix,
        &format!("{} on {}", args.model, folder.root.display()),
    )?;
    for s in &ev.skipped {
        eprintln!("skipped: {s}");
    }
    if args.json {
        let per_class: Vec<_> = sidecar
            .classes
            .iter()
            .zip(&ev.per_class)
            .map(|(c, (n, a))| json!({"class": c, "images": n, "accuracy": a}))
            .collect();
        let out = json!({
            "model": args.model, "weights": args.weights, "data": folder.root,
            "accuracy": ev.accuracy, "per_class": per_class, "confusion": ev.confusion,
            "confusion_png": png, "skipped": ev.skipped,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "Accuracy: {:.4} on {} images of {}",
        ev.accuracy,
        ev.per_class.iter().map(|p| p.0).sum::<usize>(),
        folder.root.display()
    );
    println!("{:<24} {:>8} {:>9}", "class", "images", "accuracy");
    for (c, (n, a)) in sidecar.classes.iter().zip(&ev.per_class) {
        println!("{c:<24} {n:>8} {a:>9.4}");
    }
    println!("Saved confusion matrix {}", png.display());
    Ok(())
}
