//! Transfer learning, as timm's `train.py --pretrained --num-classes N` and Keras'
//! `keras.applications` + `fit` do it: a zoo model (optionally from a timm checkpoint,
//! its classifier re-initialised for the new class count) trained on an image folder
//! with the shared training loop of `convnet-nn` ([`convnet_nn::training::fit`]).
//!
//! - [`ImageData`]: an image folder as a [`Dataset`], decoded on worker threads with
//!   prefetch, timm's train transform (RandomResizedCrop, flip), its `--no-aug` train
//!   transform (resize, center crop) or its eval transform.
//! - [`FineTune`]: the whole recipe (optimizer, label smoothing, schedule with warmup,
//!   frozen backbone, checkpoints, resume), what `convnet train images` runs.
//! - Checkpoints: the best weights in timm's layout (they load in timm with the same
//!   `num_classes`) with a JSON sidecar ([`Sidecar`]: class names and data config), and a
//!   training state after every epoch ([`TrainState`]: weights, optimizer state, epoch,
//!   history) from which `--resume` continues bit for bit.

use crate::error::{Result, ZooError};
use crate::model::{Model, ZooOpts};
use crate::registry::create_model;
use convnet_data::{DataConfig, EvalTransform, ImageFolder, Loader, LoaderConfig, TrainTransform, Transform};
use convnet_nn::callbacks::{Callback, Control};
use convnet_nn::saving::{RawTensor, read_safetensors, write_atomic, write_raw_safetensors};
use convnet_nn::schedules::LrSchedule;
use convnet_nn::training::{self, Dataset, Trainable};
use convnet_nn::{
    Adam, AdamW, FitOptions, History, Logs, Loss, Metric, NnError, OptimizerConfig, Sgd, Targets, TrainOptions, Trainer,
};
use convnet_tensor::Tensor;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// An image folder as a [`Dataset`]: samples `(file, class)`, the train and eval
/// transforms, and the decoding threads.
pub struct ImageData {
    samples: Arc<[(PathBuf, usize)]>,
    train: Transform,
    eval: EvalTransform,
    seed: u64,
    threads: usize,
    skipped: Arc<Mutex<Vec<String>>>,
}

impl ImageData {
    /// The samples of `folder`, transformed for a model of data config `cfg`; `seed` seeds
    /// the augmentation (with the epoch and the sample's index). Training batches use
    /// timm's train transform (RandomResizedCrop, flip).
    pub fn new(folder: &ImageFolder, cfg: &DataConfig, seed: u64) -> Self {
        ImageData {
            samples: folder.samples.clone().into(),
            train: Transform::Train(TrainTransform::new(cfg)),
            eval: EvalTransform::new(cfg),
            seed,
            threads: 0,
            skipped: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Decoding threads (0: one per core).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Training batches without augmentation, as timm's `--no-aug`
    /// (`transforms_noaug_train`): resize the short side to the input size, center crop
    /// it, normalise; the eval transform with `crop_pct` 1.
    pub fn without_augmentation(mut self) -> Self {
        self.train = Transform::Eval(EvalTransform { crop_pct: 1.0, ..self.eval.clone() });
        self
    }
}

impl Dataset for ImageData {
    fn len(&self) -> usize {
        self.samples.len()
    }

    fn batches<'a>(
        &'a mut self,
        order: Vec<usize>,
        batch_size: usize,
        epoch: usize,
        train: bool,
    ) -> convnet_nn::Result<training::Batches<'a>> {
        let transform = if train { self.train.clone() } else { Transform::Eval(self.eval.clone()) };
        let config =
            LoaderConfig::new(batch_size).with_threads(self.threads).with_seed(self.seed).with_epoch(epoch as u64);
        let loader = Loader::new(self.samples.clone(), order, transform, config).map_err(NnError::model)?;
        let skipped = self.skipped.clone();
        Ok(Box::new(loader.filter_map(move |batch| {
            if !batch.skipped.is_empty() {
                let mut s = skipped.lock().unwrap_or_else(|e| e.into_inner());
                s.extend(batch.skipped.iter().map(|k| k.reason.clone()));
            }
            if batch.labels.is_empty() {
                return None;
            }
            let x = Tensor::from_vec(batch.images, batch.shape.to_vec()).map_err(NnError::from);
            Some(x.map(|x| (x, Targets::Sparse(batch.labels))))
        })))
    }

    fn skipped(&self) -> Vec<String> {
        let mut s = self.skipped.lock().unwrap_or_else(|e| e.into_inner()).clone();
        s.sort();
        s.dedup();
        s
    }
}

/// The optimizers `convnet train images` offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// SGD with (Nesterov) momentum, timm's `sgd`.
    Sgd,
    /// Adam (L2 weight decay).
    Adam,
    /// AdamW (decoupled weight decay), timm's default for fine-tuning.
    Adamw,
}

/// The learning-rate schedules `convnet train images` offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SchedKind {
    /// Constant after the warmup.
    None,
    /// Step decay (`decay_epochs`, `decay_rate`).
    Step,
    /// Cosine to `lr_min` over the epochs.
    Cosine,
}

/// A transfer-learning recipe (timm's `train.py` arguments).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FineTune {
    /// timm model name (`resnet18`, `tf_efficientnet_lite0`).
    pub model: String,
    /// A timm `.safetensors` checkpoint to start from; its classifier is re-initialised
    /// when the class count differs.
    pub pretrained: Option<PathBuf>,
    /// Epochs.
    pub epochs: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Base learning rate.
    pub lr: f64,
    /// The optimizer.
    pub optimizer: OptimizerKind,
    /// Weight decay (decoupled for AdamW, L2 otherwise); biases and norm parameters are
    /// left out, as timm's `filter_bias_and_bn`.
    pub weight_decay: f64,
    /// SGD momentum (Nesterov, as timm's `sgd`).
    pub momentum: f64,
    /// Cross-entropy label smoothing.
    pub label_smoothing: f32,
    /// The schedule.
    pub sched: SchedKind,
    /// Linear warmup epochs, from `warmup_lr`.
    pub warmup_epochs: usize,
    /// Rate at the start of the warmup (timm's default 1e-5).
    pub warmup_lr: f64,
    /// Floor of the cosine (timm's default 0).
    pub min_lr: f64,
    /// Step schedule period in epochs.
    pub decay_epochs: usize,
    /// Step schedule factor.
    pub decay_rate: f64,
    /// Gradient clipping by global norm.
    pub clip_grad: Option<f32>,
    /// Train only the classifier: the backbone is frozen (its batch norms keep their
    /// running statistics), a linear probe on the pooled features.
    pub freeze_backbone: bool,
    /// Square input size; default the model's pretrained config.
    pub img_size: Option<usize>,
    /// Center-crop fraction of the eval transform (timm's `--crop-pct`); default the
    /// model's pretrained config. 1: validation images are resized to the input size, uncropped.
    #[serde(default)]
    pub crop_pct: Option<f64>,
    /// No training augmentation, as timm's `--no-aug`: training images are resized and
    /// center cropped to the input size (no RandomResizedCrop, no flip), then normalised.
    #[serde(default)]
    pub no_aug: bool,
    /// Validation fraction per class when the data folder has no `train/` and `val/`.
    pub val_split: f64,
    /// Seed of the new classifier, the split, the shuffles, augmentation and dropout.
    pub seed: u64,
    /// Image-decoding threads (0: one per core).
    pub workers: usize,
}

impl FineTune {
    /// timm-like defaults for `model`: AdamW lr 1e-3, weight decay 0.05, label smoothing
    /// 0.1, cosine schedule, batch 32, 10 epochs.
    pub fn new(model: impl Into<String>) -> Self {
        FineTune {
            model: model.into(),
            pretrained: None,
            epochs: 10,
            batch_size: 32,
            lr: 1e-3,
            optimizer: OptimizerKind::Adamw,
            weight_decay: 0.05,
            momentum: 0.9,
            label_smoothing: 0.1,
            sched: SchedKind::Cosine,
            warmup_epochs: 0,
            warmup_lr: 1e-5,
            min_lr: 0.0,
            decay_epochs: 30,
            decay_rate: 0.1,
            clip_grad: None,
            freeze_backbone: false,
            img_size: None,
            crop_pct: None,
            no_aug: false,
            val_split: 0.2,
            seed: 42,
            workers: 0,
        }
    }

    fn check(&self) -> Result<()> {
        let bad = |what, reason: String| Err(ZooError::arg(what, reason));
        if self.epochs == 0 {
            return bad("epochs", "must be at least 1".into());
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", format!("{} must be a positive number", self.lr));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad("weight_decay", format!("{} must be >= 0", self.weight_decay));
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad("label_smoothing", format!("{} must be in [0, 1)", self.label_smoothing));
        }
        if !(self.val_split > 0.0 && self.val_split < 1.0) {
            return bad("val_split", format!("{} must be in (0, 1)", self.val_split));
        }
        if let Some(s) = self.img_size
            && !(8..=2048).contains(&s)
        {
            return bad("img_size", format!("{s} must be in 8..=2048"));
        }
        if let Some(c) = self.crop_pct
            && !(c > 0.0 && c <= 1.0)
        {
            return bad("crop_pct", format!("{c} must be in (0, 1]"));
        }
        Ok(())
    }

    /// The optimizer config of the recipe.
    pub fn optimizer_config(&self) -> OptimizerConfig {
        match self.optimizer {
            OptimizerKind::Adamw => {
                AdamW { learning_rate: self.lr, weight_decay: self.weight_decay, ..AdamW::default() }.into()
            }
            OptimizerKind::Adam => Adam::new(self.lr).with_weight_decay(self.weight_decay).into(),
            OptimizerKind::Sgd => Sgd::new(self.lr)
                .with_momentum(self.momentum)
                .with_nesterov(self.momentum > 0.0)
                .with_weight_decay(self.weight_decay)
                .into(),
        }
    }

    /// The schedule of the recipe (per epoch, as timm's default).
    pub fn schedule(&self) -> LrSchedule {
        let s = match self.sched {
            SchedKind::None => LrSchedule::none(),
            SchedKind::Step => LrSchedule::step(self.decay_epochs, self.decay_rate),
            SchedKind::Cosine => LrSchedule::cosine(self.epochs, self.min_lr),
        };
        if self.warmup_epochs > 0 { s.with_warmup(self.warmup_epochs, self.warmup_lr) } else { s }
    }

    /// The trainer of the recipe: sparse cross-entropy on logits with label smoothing,
    /// accuracy, the optimizer, the schedule, clipping, no decay of biases and norms.
    pub fn trainer(&self) -> Trainer {
        let loss =
            Loss::sparse_categorical_crossentropy().with_from_logits(true).with_label_smoothing(self.label_smoothing);
        let options = TrainOptions {
            clip_grad_norm: self.clip_grad,
            no_decay_bias_and_norm: true,
            schedule: Some(self.schedule()),
        };
        Trainer::new(loss, self.optimizer_config(), &[Metric::Accuracy]).with_options(options)
    }

    /// The model for `num_classes`: fresh, or from the pretrained checkpoint (classifier
    /// re-initialised when its class count differs, which the returned note says).
    pub fn build_model(&self, num_classes: usize) -> Result<(Model, Option<String>)> {
        let opts = ZooOpts::new().with_num_classes(num_classes).with_seed(self.seed);
        let mut model = create_model(&self.model, opts)?;
        let mut note = None;
        if let Some(path) = &self.pretrained {
            let report = model.load_pretrained(path)?;
            if report.dropped_classifier {
                note = Some(format!(
                    "{}: the classifier ({}) has another class count; it was re-initialised for {num_classes} classes",
                    path.display(),
                    model.pretrained_cfg().classifier
                ));
            }
        }
        if self.freeze_backbone {
            model.freeze_backbone();
        }
        Ok((model, note))
    }

    /// The data config: the model's pretrained config, at `img_size` and with `crop_pct`
    /// when set.
    pub fn data_config(&self, model: &Model) -> DataConfig {
        let mut cfg = model.pretrained_cfg().data_config();
        if let Some(s) = self.img_size {
            cfg.input_size = [cfg.input_size[0], s, s];
        }
        if let Some(c) = self.crop_pct {
            cfg.crop_pct = c;
        }
        cfg
    }
}

/// The train and validation folders of `dir`: `dir/train` and `dir/val` when both exist,
/// else `dir` split per class (`val_split`, seeded).
pub fn open_folders(dir: &Path, val_split: f64, seed: u64) -> Result<(ImageFolder, ImageFolder)> {
    if dir.join("train").is_dir() && dir.join("val").is_dir() {
        Ok(ImageFolder::split(dir)?)
    } else {
        Ok(ImageFolder::random_split(dir, val_split, seed)?)
    }
}

/// What a fine-tuned checkpoint needs besides its weights to be used: written as
/// `<checkpoint>.json` next to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sidecar {
    /// timm model name.
    pub model: String,
    /// Classes of the classifier.
    pub num_classes: usize,
    /// Class names, index order.
    pub classes: Vec<String>,
    /// The eval transform's config.
    pub data_config: DataConfig,
    /// The epoch the weights are from.
    pub epoch: usize,
    /// Validation accuracy at that epoch.
    pub val_accuracy: Option<f64>,
}

impl Sidecar {
    /// The sidecar path of a checkpoint: `best.safetensors` -> `best.json`.
    pub fn path_for(checkpoint: &Path) -> PathBuf {
        checkpoint.with_extension("json")
    }

    /// Reads the sidecar of `checkpoint`, if there is one.
    pub fn read_for(checkpoint: &Path) -> Result<Option<Sidecar>> {
        let path = Self::path_for(checkpoint);
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| ZooError::io(&path, e))?;
        let s: Sidecar = serde_json::from_str(&text)
            .map_err(|e| ZooError::bad_file(&path, format!("not a convnet checkpoint sidecar: {e}")))?;
        if s.classes.len() != s.num_classes {
            return Err(ZooError::bad_file(
                &path,
                format!("{} class names for {} classes", s.classes.len(), s.num_classes),
            ));
        }
        Ok(Some(s))
    }

    /// Writes it next to `checkpoint` (temporary file, then rename).
    pub fn write_for(&self, checkpoint: &Path) -> Result<()> {
        let path = Self::path_for(checkpoint);
        let json = serde_json::to_string_pretty(self).map_err(|e| ZooError::bad_file(&path, e.to_string()))?;
        Ok(write_atomic(&path, json.as_bytes())?)
    }
}

/// Metadata key of a training state's JSON.
const STATE_KEY: &str = "convnet.train_state";

/// Everything a resumed run needs, besides the weights and optimizer buffers stored as
/// tensors next to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// The recipe (a resumed run must use the same).
    pub recipe: FineTune,
    /// Class names.
    pub classes: Vec<String>,
    /// Epochs completed.
    pub epoch: usize,
    /// Optimizer updates done.
    pub iterations: u64,
    /// History of the completed epochs.
    pub history: History,
    /// Best validation accuracy so far and its epoch.
    pub best: Option<(usize, f64)>,
}

impl TrainState {
    /// Writes the state of `net` after `self.epoch` epochs: weights (`model/<key>`, engine
    /// layout, buffers included), optimizer buffers (`optimizer/<key>/<slot>`) and this
    /// JSON, atomically.
    pub fn save(&self, net: &dyn Trainable, path: &Path) -> Result<()> {
        let mut tensors: Vec<RawTensor> = net
            .params()
            .iter()
            .map(|(_, e)| RawTensor::f32(format!("model/{}", e.key()), e.value().dims().to_vec(), e.value().data()))
            .collect();
        if let Some(t) = net.trainer() {
            let (_, slots) = t.optimizer().state();
            for (key, bufs) in slots {
                for (i, b) in bufs.iter().enumerate() {
                    tensors.push(RawTensor::f32(format!("optimizer/{key}/{i}"), vec![b.len()], b));
                }
            }
        }
        let json = serde_json::to_string(self).map_err(|e| ZooError::bad_file(path, e.to_string()))?;
        let metadata: HashMap<String, String> = [(STATE_KEY.to_string(), json)].into();
        Ok(write_raw_safetensors(path, tensors, metadata)?)
    }

    /// Reads a state written by [`TrainState::save`] and restores its weights and
    /// optimizer state into `net` (whose trainer must be compiled from the same recipe).
    pub fn load_into(path: &Path, net: &mut dyn Trainable) -> Result<TrainState> {
        let (tensors, metadata) = read_safetensors(path)?;
        let json = metadata.get(STATE_KEY).ok_or_else(|| {
            ZooError::bad_file(path, "not a training state (no `convnet.train_state` metadata); pass the state file `last.state.safetensors` written by `train images`")
        })?;
        let state: TrainState = serde_json::from_str(json)
            .map_err(|e| ZooError::bad_file(path, format!("training state metadata is not valid: {e}")))?;
        let mut weights = Vec::new();
        // optimizer buffers by parameter key, then slot index
        let mut slots: BTreeMap<String, BTreeMap<usize, Vec<f32>>> = BTreeMap::new();
        for (name, t) in tensors {
            if let Some(key) = name.strip_prefix("model/") {
                weights.push((key.to_string(), t));
            } else if let Some(rest) = name.strip_prefix("optimizer/") {
                let (key, i) = rest
                    .rsplit_once('/')
                    .and_then(|(k, i)| Some((k.to_string(), i.parse::<usize>().ok()?)))
                    .ok_or_else(|| ZooError::bad_file(path, format!("bad optimizer tensor name {name:?}")))?;
                slots.entry(key).or_default().insert(i, t.to_vec());
            } else {
                return Err(ZooError::bad_file(path, format!("unexpected tensor {name:?} in a training state")));
            }
        }
        let (store, trainer) = net.parts_mut();
        store.restore(&path.display().to_string(), &weights)?;
        let trainer = trainer.ok_or(NnError::NotCompiled)?;
        let slots = slots.into_iter().map(|(k, v)| (k, v.into_values().collect())).collect();
        trainer.optimizer_mut().set_state(state.iterations, slots)?;
        Ok(state)
    }
}

/// What [`FineTune::run`] did.
#[derive(Clone, Debug)]
pub struct FineTuneReport {
    /// Every epoch, resumed ones included.
    pub history: History,
    /// Class names.
    pub classes: Vec<String>,
    /// Training and validation images.
    pub sizes: (usize, usize),
    /// The best epoch and its validation accuracy.
    pub best: Option<(usize, f64)>,
    /// The best checkpoint (timm layout) and the state of the last epoch.
    pub checkpoint: PathBuf,
    /// The training state written after the last epoch.
    pub state: PathBuf,
    /// Notes for the user (a re-initialised classifier, a resumed run, skipped files).
    pub notes: Vec<String>,
}

/// After every epoch: the best checkpoint and its sidecar when validation accuracy
/// improves, and the training state.
struct EpochCheckpoints {
    state: TrainState,
    sidecar: Sidecar,
    best_path: PathBuf,
    state_path: PathBuf,
}

impl Callback for EpochCheckpoints {
    fn on_epoch_end(&mut self, epoch: usize, logs: &Logs, model: &mut dyn Trainable) -> convnet_nn::Result<Control> {
        let acc = logs.get("val_accuracy").copied();
        self.state.history.loss.push(logs.get("loss").copied().unwrap_or(f64::NAN));
        if let Some(a) = logs.get("accuracy") {
            self.state.history.accuracy.push(*a);
        }
        if let Some(l) = logs.get("val_loss") {
            self.state.history.val_loss.push(*l);
        }
        if let Some(a) = acc {
            self.state.history.val_accuracy.push(a);
        }
        let better = match (acc, self.state.best) {
            (Some(a), Some((_, b))) => a > b,
            (Some(_), None) => true,
            (None, _) => true,
        };
        if better {
            model.save_model(&self.best_path)?;
            self.sidecar.epoch = epoch;
            self.sidecar.val_accuracy = acc;
            self.sidecar.write_for(&self.best_path).map_err(NnError::model)?;
            self.state.best = Some((epoch, acc.unwrap_or(f64::NAN)));
        }
        self.state.epoch = epoch;
        self.state.iterations = model.trainer().map_or(0, |t| t.optimizer().iterations());
        self.state.save(model, &self.state_path).map_err(NnError::model)?;
        Ok(Control::Continue)
    }
}

impl FineTune {
    /// Trains on the image folder `data` (`train/` + `val/`, or one folder split by
    /// `val_split`), writing `out/best.safetensors` (timm layout) with `out/best.json`, and
    /// `out/last.state.safetensors` after every epoch. With `resume`, continues from such a
    /// state (same recipe and data; only `epochs` may be larger): the result equals the
    /// uninterrupted run's, bit for bit, for the same thread count, as long as the schedule
    /// of the epochs already done does not depend on `epochs` (per-epoch cosine and step
    /// schedules start the same for any count). `verbose` as `fit`'s.
    pub fn run(&self, data: &Path, out: &Path, resume: Option<&Path>, verbose: u8) -> Result<FineTuneReport> {
        self.check()?;
        let (train_folder, val_folder) = open_folders(data, self.val_split, self.seed)?;
        let classes = train_folder.classes.clone();
        let (mut model, note) = self.build_model(classes.len())?;
        let mut notes: Vec<String> = note.into_iter().collect();
        let cfg = self.data_config(&model);
        model.set_trainer(Some(self.trainer()));
        let mut initial_epoch = 0;
        let mut previous = History::default();
        let mut best = None;
        if let Some(state_path) = resume {
            let state = TrainState::load_into(state_path, &mut model)?;
            // `epochs` may grow: a run stopped after epoch k continues with more epochs (the
            // schedule is rebuilt for the new count, as timm's `--resume` does)
            if (FineTune { epochs: self.epochs, ..state.recipe.clone() }) != *self {
                return Err(ZooError::bad_file(
                    state_path,
                    format!(
                        "was written by another recipe ({} with other settings); resume with the same flags \
                         (only --epochs may change)",
                        state.recipe.model
                    ),
                ));
            }
            if state.classes != classes {
                return Err(ZooError::bad_file(state_path, "was trained on other classes than this data folder's"));
            }
            if state.epoch >= self.epochs {
                return Err(ZooError::arg(
                    "epochs",
                    format!(
                        "{} leaves nothing to do: {} was written after epoch {}; pass more epochs to continue",
                        self.epochs,
                        state_path.display(),
                        state.epoch
                    ),
                ));
            }
            initial_epoch = state.epoch;
            previous = state.history;
            best = state.best;
            notes.push(format!("resumed from {} after epoch {initial_epoch}", state_path.display()));
        }
        // created and probed before the first epoch: an unwritable folder fails now, not at the end
        convnet_nn::fsio::ensure_writable_dir(out).map_err(|e| ZooError::io(out, e))?;
        let best_path = out.join("best.safetensors");
        let state_path = out.join("last.state.safetensors");
        let checkpoints = EpochCheckpoints {
            state: TrainState {
                recipe: self.clone(),
                classes: classes.clone(),
                epoch: initial_epoch,
                iterations: 0,
                history: previous.clone(),
                best,
            },
            sidecar: Sidecar {
                model: self.model.clone(),
                num_classes: classes.len(),
                classes: classes.clone(),
                data_config: cfg.clone(),
                epoch: 0,
                val_accuracy: None,
            },
            best_path: best_path.clone(),
            state_path: state_path.clone(),
        };
        let mut train = ImageData::new(&train_folder, &cfg, self.seed).with_threads(self.workers);
        if self.no_aug {
            train = train.without_augmentation();
        }
        let mut val = ImageData::new(&val_folder, &cfg, self.seed).with_threads(self.workers);
        let options = FitOptions::new(self.batch_size, self.epochs)
            .with_initial_epoch(initial_epoch)
            .with_seed(self.seed)
            .with_verbose(verbose)
            .with_callback(checkpoints);
        let val_set: Option<&mut dyn Dataset> = if val.is_empty() { None } else { Some(&mut val) };
        let history = training::fit(&mut model, &mut train, val_set, options)?;
        let mut all = previous;
        all.extend(&history);
        let skipped: Vec<String> = train.skipped().into_iter().chain(val.skipped()).collect();
        if !skipped.is_empty() {
            notes.push(format!("skipped {} unreadable image(s): {}", skipped.len(), skipped.join("; ")));
        }
        let best = best_of(&all);
        Ok(FineTuneReport {
            history: all,
            classes,
            sizes: (train_folder.len(), val_folder.len()),
            best,
            checkpoint: best_path,
            state: state_path,
            notes,
        })
    }
}

/// The best epoch (1-based) by validation accuracy, the first of equals.
fn best_of(h: &History) -> Option<(usize, f64)> {
    h.val_accuracy.iter().enumerate().fold(None, |best, (i, &a)| match best {
        Some((_, b)) if b >= a => best,
        _ => Some((i + 1, a)),
    })
}

/// Accuracy of a model on an image folder: overall, per class, and the confusion matrix
/// (`[true][predicted]` counts).
#[derive(Clone, Debug, PartialEq)]
pub struct FolderEvaluation {
    /// Correct / total.
    pub accuracy: f64,
    /// Images per class and the accuracy of each class.
    pub per_class: Vec<(usize, f64)>,
    /// `confusion[t][p]`: images of class `t` predicted as `p`.
    pub confusion: Vec<Vec<usize>>,
    /// Files that could not be read.
    pub skipped: Vec<String>,
}

/// Evaluates `model` on every image of `folder` with the eval transform of `cfg`.
pub fn evaluate_folder(
    model: &Model,
    folder: &ImageFolder,
    cfg: &DataConfig,
    batch_size: usize,
) -> Result<FolderEvaluation> {
    let k = model.num_classes();
    if k != folder.num_classes() {
        return Err(ZooError::arg(
            "data",
            format!("the model has {k} classes, the folder {} ({})", folder.num_classes(), folder.root.display()),
        ));
    }
    let mut data = ImageData::new(folder, cfg, 0);
    let mut confusion = vec![vec![0usize; k]; k];
    for batch in data.batches((0..folder.len()).collect(), batch_size.max(1), 0, false)? {
        let (x, y) = batch?;
        let logits = model.forward(&x)?;
        let labels = y.as_sparse().unwrap_or_default();
        for (row, &t) in logits.data().chunks(k).zip(labels) {
            let p = row.iter().enumerate().fold(0, |b, (i, v)| if *v > row[b] { i } else { b });
            confusion[t as usize][p] += 1;
        }
    }
    let total: usize = confusion.iter().flatten().sum();
    let correct: usize = (0..k).map(|i| confusion[i][i]).sum();
    let per_class = confusion
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let n: usize = row.iter().sum();
            (n, if n == 0 { 0.0 } else { row[i] as f64 / n as f64 })
        })
        .collect();
    Ok(FolderEvaluation {
        accuracy: if total == 0 { 0.0 } else { correct as f64 / total as f64 },
        per_class,
        confusion,
        skipped: data.skipped(),
    })
}
