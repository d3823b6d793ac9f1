//! Keras' training API for any model: a [`Trainable`] model (a [`Sequential`] or a zoo
//! network) holds its parameters in one store and, once compiled, a [`Trainer`] (loss,
//! optimizer with its state, metrics, clipping, weight-decay rule); [`fit`],
//! [`evaluate`], [`train_on_batch`] and the two halves of a step ([`compute_gradients`],
//! [`apply_gradients`]) work on every such model, over any [`Dataset`] (tensors in memory,
//! or an image folder decoded on worker threads).
//!
//! A training step gathers the batch, records the graph against the parameter variables,
//! takes the loss from the logits when the model ends in a softmax, runs `backward`,
//! drops the graph, and lets the optimizer update the parameters in place. Evaluation
//! and prediction record nothing. Each epoch's shuffle and dropout masks come from a
//! generator derived from [`FitOptions::seed`] and the epoch number alone, so the same
//! seed and thread count give bit-identical weights, and a run resumed after epoch `k`
//! ([`FitOptions::initial_epoch`]) continues exactly as the uninterrupted one.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use convnet_tensor::Tensor;
use convnet_tensor::rng::Rng;
use serde::{Deserialize, Serialize};

use crate::callbacks::{Callback, Control};
use crate::metrics::accuracy_sum;
use crate::optimizers::{Optimizer, OptimizerConfig, ParamUpdate};
use crate::progress::Progress;
use crate::schedules::LrSchedule;
use crate::targets::{gather_rows, slice_rows};
use crate::{Cx, Loss, Metric, Mode, NnError, Params, Result, Sequential, Targets};

/// A model that `fit` can train: one parameter store, a forward pass through it, and
/// room for the compiled training state.
pub trait Trainable {
    /// The parameter store.
    fn params(&self) -> &Params;
    /// The store and the compiled training state, borrowed together (an optimizer step
    /// updates one from the other).
    fn parts_mut(&mut self) -> (&mut Params, Option<&mut Trainer>);
    /// The compiled training state, if compiled.
    fn trainer(&self) -> Option<&Trainer>;
    /// Sets (or removes) the training state: what `compile` does.
    fn set_trainer(&mut self, trainer: Option<Trainer>);
    /// Checks that `x` is a batch the model takes.
    fn check_input(&self, x: &Tensor) -> Result<()>;
    /// The model's output for `x` under `cx`. With `loss`, a final activation that the
    /// loss absorbs (softmax, sigmoid) may be left out; the flag then says the output is
    /// logits.
    fn forward_cx(&self, x: &Tensor, cx: &Cx, loss: Option<&Loss>) -> Result<(Tensor, bool)>;
    /// Saves the whole model (what `ModelCheckpoint` writes), atomically.
    fn save_model(&self, path: &Path) -> Result<()>;
    /// Saves only the weights, atomically.
    fn save_model_weights(&self, path: &Path) -> Result<()>;
    /// Seed of training-mode passes outside `fit` (`train_on_batch`, `compute_gradients`),
    /// mixed with the optimizer's step count.
    fn train_seed(&self) -> u64 {
        0
    }
}

/// The batches of a [`Dataset`]: `(x, targets)` pairs, or the error that stopped one.
pub type Batches<'a> = Box<dyn Iterator<Item = Result<(Tensor, Targets)>> + 'a>;

/// Samples a model trains or is evaluated on, in batches.
pub trait Dataset {
    /// Number of samples.
    fn len(&self) -> usize;
    /// True when there are no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The samples `order` (indices below `len`) in batches of `batch_size`, in that
    /// order, for epoch `epoch` (1-based; 0 outside training). `train` asks for the
    /// training transform (random augmentation seeded by the epoch and sample), else the
    /// evaluation one.
    fn batches<'a>(
        &'a mut self,
        order: Vec<usize>,
        batch_size: usize,
        epoch: usize,
        train: bool,
    ) -> Result<Batches<'a>>;
    /// Files or samples the dataset skipped so far (undecodable images), with why.
    fn skipped(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Samples held in memory: `x: [n, ...]` with `n` targets.
pub struct TensorData<'a> {
    x: &'a Tensor,
    y: &'a Targets,
}

impl<'a> TensorData<'a> {
    /// The pairs `(x[i], y[i])`; errors when the counts differ.
    pub fn new(x: &'a Tensor, y: &'a Targets) -> Result<Self> {
        let n = x.dims().first().copied().unwrap_or(0);
        if y.len() != n {
            return Err(NnError::targets(format!("{} targets for {n} samples", y.len())));
        }
        Ok(TensorData { x, y })
    }
}

impl Dataset for TensorData<'_> {
    fn len(&self) -> usize {
        self.y.len()
    }
    fn batches<'b>(
        &'b mut self,
        order: Vec<usize>,
        batch_size: usize,
        _epoch: usize,
        _train: bool,
    ) -> Result<Batches<'b>> {
        let (x, y) = (self.x, self.y);
        let contiguous = order.iter().enumerate().all(|(i, &j)| i == j);
        let n = order.len();
        Ok(Box::new((0..n.div_ceil(batch_size.max(1))).map(move |b| {
            let (start, end) = (b * batch_size, ((b + 1) * batch_size).min(n));
            if contiguous {
                Ok((slice_rows(x, start, end)?, y.range(start, end)?))
            } else {
                let idx = &order[start..end];
                Ok((gather_rows(x, idx)?, y.gather(idx)?))
            }
        })))
    }
}

/// The compile arguments, as `save` writes them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompileConfig {
    /// The loss.
    pub loss: Loss,
    /// The optimizer's config (its state is not saved).
    pub optimizer: OptimizerConfig,
    /// The metrics.
    pub metrics: Vec<Metric>,
    /// Training options beyond Keras' three.
    #[serde(default)]
    pub options: TrainOptions,
}

/// What a trainer does besides the optimizer's own rule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    /// Scale the gradients so that their global L2 norm is at most this (PyTorch's
    /// `clip_grad_norm_`).
    #[serde(default)]
    pub clip_grad_norm: Option<f32>,
    /// Leave biases and 1-D parameters (norm scales and shifts) out of weight decay, as
    /// timm's `filter_bias_and_bn` does.
    #[serde(default)]
    pub no_decay_bias_and_norm: bool,
    /// The learning rate over training, relative to the optimizer's own (the base rate),
    /// applied by [`fit`] before every update.
    #[serde(default)]
    pub schedule: Option<LrSchedule>,
}

/// What `compile` sets: the loss, the optimizer with its state, the metrics and the
/// training options.
#[derive(Clone, Debug)]
pub struct Trainer {
    pub(crate) loss: Loss,
    pub(crate) optimizer: Optimizer,
    pub(crate) metrics: Vec<Metric>,
    pub(crate) options: TrainOptions,
    /// The optimizer's learning rate at compile time: what the schedule scales.
    base_lr: f64,
}

impl Trainer {
    /// A trainer with a fresh optimizer state.
    pub fn new(loss: Loss, optimizer: impl Into<OptimizerConfig>, metrics: &[Metric]) -> Trainer {
        let mut metrics = metrics.to_vec();
        metrics.dedup();
        let optimizer = Optimizer::new(optimizer);
        let base_lr = optimizer.learning_rate();
        Trainer { loss, optimizer, metrics, options: TrainOptions::default(), base_lr }
    }

    /// The learning rate the schedule starts from.
    pub fn base_lr(&self) -> f64 {
        self.base_lr
    }

    /// Sets the optimizer's learning rate for an update in epoch `epoch` (1-based) from the
    /// schedule, if there is one; returns the rate in use.
    pub fn schedule_lr(&mut self, epoch: usize) -> f64 {
        if let Some(s) = &self.options.schedule {
            let lr = s.lr_for(self.base_lr, epoch.saturating_sub(1), self.optimizer.iterations() as usize);
            self.optimizer.set_learning_rate(lr);
        }
        self.optimizer.learning_rate()
    }

    /// Sets the training options.
    pub fn with_options(mut self, options: TrainOptions) -> Self {
        self.options = options;
        self
    }

    /// From saved compile arguments.
    pub fn from_config(c: CompileConfig) -> Trainer {
        Trainer::new(c.loss, c.optimizer, &c.metrics).with_options(c.options)
    }

    /// The compile arguments.
    pub fn config(&self) -> CompileConfig {
        CompileConfig {
            loss: self.loss,
            optimizer: self.optimizer.config().clone(),
            metrics: self.metrics.clone(),
            options: self.options.clone(),
        }
    }

    /// The loss.
    pub fn loss(&self) -> &Loss {
        &self.loss
    }

    /// The optimizer with its state.
    pub fn optimizer(&self) -> &Optimizer {
        &self.optimizer
    }

    /// The optimizer, to change its learning rate or restore its state.
    pub fn optimizer_mut(&mut self) -> &mut Optimizer {
        &mut self.optimizer
    }

    /// The training options.
    pub fn options(&self) -> &TrainOptions {
        &self.options
    }

    fn accuracy(&self) -> bool {
        self.metrics.contains(&Metric::Accuracy)
    }
}

/// Metric values by Keras' log names (`loss`, `accuracy`, `val_loss`, `val_accuracy`),
/// sorted by name as Keras prints them.
pub type Logs = BTreeMap<String, f64>;

/// Arguments of [`fit`]; `Default` gives Keras' defaults (batch 32, 1 epoch, shuffled,
/// verbose 1).
pub struct FitOptions {
    /// Samples per step.
    pub batch_size: usize,
    /// The epoch to stop after (Keras' `epochs`: with `initial_epoch` 3 and `epochs` 5,
    /// epochs 4 and 5 run).
    pub epochs: usize,
    /// Epochs already done by an earlier run being resumed (Keras' `initial_epoch`).
    pub initial_epoch: usize,
    /// Data evaluated after each epoch (takes precedence over `validation_split`).
    pub validation_data: Option<(Tensor, Targets)>,
    /// Fraction of the samples, taken from the end before shuffling, held out for
    /// validation (Keras' rule; in-memory data only).
    pub validation_split: f32,
    /// Shuffle the training samples before each epoch.
    pub shuffle: bool,
    /// Seed of the shuffles, dropout masks and augmentation.
    pub seed: u64,
    /// 0: silent; 1: a progress bar on a terminal (one line per epoch otherwise); 2: one
    /// line per epoch.
    pub verbose: u8,
    /// Called after each epoch.
    pub callbacks: Vec<Box<dyn Callback>>,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            batch_size: 32,
            epochs: 1,
            initial_epoch: 0,
            validation_data: None,
            validation_split: 0.0,
            shuffle: true,
            seed: 0,
            verbose: 1,
            callbacks: Vec::new(),
        }
    }
}

impl std::fmt::Debug for FitOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FitOptions")
            .field("batch_size", &self.batch_size)
            .field("epochs", &self.epochs)
            .field("initial_epoch", &self.initial_epoch)
            .field("validation_data", &self.validation_data.as_ref().map(|(x, _)| x.dims().to_vec()))
            .field("validation_split", &self.validation_split)
            .field("shuffle", &self.shuffle)
            .field("seed", &self.seed)
            .field("verbose", &self.verbose)
            .field("callbacks", &self.callbacks.len())
            .finish()
    }
}

impl FitOptions {
    /// `batch_size` and `epochs`, the rest Keras' defaults.
    pub fn new(batch_size: usize, epochs: usize) -> Self {
        FitOptions { batch_size, epochs, ..Self::default() }
    }
    /// Sets the validation data.
    pub fn with_validation_data(mut self, x: Tensor, y: Targets) -> Self {
        self.validation_data = Some((x, y));
        self
    }
    /// Sets the validation split.
    pub fn with_validation_split(mut self, split: f32) -> Self {
        self.validation_split = split;
        self
    }
    /// Sets shuffling.
    pub fn with_shuffle(mut self, shuffle: bool) -> Self {
        self.shuffle = shuffle;
        self
    }
    /// Sets the seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Sets the epochs already done (resuming).
    pub fn with_initial_epoch(mut self, epoch: usize) -> Self {
        self.initial_epoch = epoch;
        self
    }
    /// Sets the verbosity.
    pub fn with_verbose(mut self, verbose: u8) -> Self {
        self.verbose = verbose;
        self
    }
    /// Adds a callback.
    pub fn with_callback(mut self, callback: impl Callback + 'static) -> Self {
        self.callbacks.push(Box::new(callback));
        self
    }
}

/// Per-epoch results of `fit` (Keras' `History.history`), plus wall time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// Mean training loss of each epoch (weighted by batch size).
    pub loss: Vec<f64>,
    /// Training accuracy of each epoch (empty without the accuracy metric).
    pub accuracy: Vec<f64>,
    /// Validation loss (empty without validation data).
    pub val_loss: Vec<f64>,
    /// Validation accuracy.
    pub val_accuracy: Vec<f64>,
    /// Wall seconds of each epoch, validation included.
    pub epoch_seconds: Vec<f64>,
    /// The epoch (1-based) after which a callback stopped training, if one did.
    pub stopped_epoch: Option<usize>,
}

impl History {
    /// Epochs run.
    pub fn epochs(&self) -> usize {
        self.loss.len()
    }
    /// A series by Keras' name (`"loss"`, `"val_accuracy"`, ...).
    pub fn get(&self, name: &str) -> Option<&[f64]> {
        match name {
            "loss" => Some(&self.loss),
            "accuracy" => Some(&self.accuracy),
            "val_loss" => Some(&self.val_loss),
            "val_accuracy" => Some(&self.val_accuracy),
            "epoch_seconds" => Some(&self.epoch_seconds),
            _ => None,
        }
    }
    /// Appends the epochs of `later` (a resumed run) to these.
    pub fn extend(&mut self, later: &History) {
        self.loss.extend(&later.loss);
        self.accuracy.extend(&later.accuracy);
        self.val_loss.extend(&later.val_loss);
        self.val_accuracy.extend(&later.val_accuracy);
        self.epoch_seconds.extend(&later.epoch_seconds);
        self.stopped_epoch = later.stopped_epoch;
    }
    fn push(&mut self, logs: &Logs, seconds: f64) {
        let put = |v: &mut Vec<f64>, k: &str| {
            if let Some(x) = logs.get(k) {
                v.push(*x);
            }
        };
        put(&mut self.loss, "loss");
        put(&mut self.accuracy, "accuracy");
        put(&mut self.val_loss, "val_loss");
        put(&mut self.val_accuracy, "val_accuracy");
        self.epoch_seconds.push(seconds);
    }
}

/// Loss and accuracy over a dataset.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evaluation {
    /// Mean loss.
    pub loss: f64,
    /// Accuracy, when the model was compiled with it.
    pub accuracy: Option<f64>,
}

/// Result of one forward and backward pass.
#[derive(Clone, Debug)]
pub struct StepOutput {
    /// The batch's mean loss.
    pub loss: f32,
    /// The batch's accuracy, when compiled with it.
    pub accuracy: Option<f64>,
    /// Gradient of the loss for each trainable parameter, by path.
    pub gradients: Vec<(String, Tensor)>,
}

/// Where a step is, for error messages and seeded layers.
#[derive(Clone, Copy, Debug)]
pub struct StepPlace {
    /// Epoch, 1-based (0 outside `fit`).
    pub epoch: usize,
    /// Step within the epoch, 1-based.
    pub step: usize,
}

fn trainer(net: &dyn Trainable) -> Result<&Trainer> {
    net.trainer().ok_or(NnError::NotCompiled)
}

/// The generator of epoch `epoch`'s shuffle and dropout masks: a function of the seed and
/// the epoch only, so a resumed run draws what the uninterrupted one drew.
pub fn epoch_rng(seed: u64, epoch: usize) -> Rng {
    Rng::new(seed ^ (epoch as u64).wrapping_mul(0xD1B5_4A32_D192_ED03)).fork()
}

/// Forward with a recorded graph and backward on one batch in `mode`; applies the
/// running-statistics updates of a training pass. Nothing else changes: the gradients are
/// returned. The graph is gone on return.
pub fn compute_gradients_with(
    net: &mut dyn Trainable,
    x: &Tensor,
    y: &Targets,
    mode: Mode,
    rng: Rng,
    place: StepPlace,
) -> Result<StepOutput> {
    let t = trainer(net)?;
    net.check_input(x)?;
    let n = x.dims()[0];
    if y.len() != n {
        return Err(NnError::targets(format!("{} targets for {n} samples", y.len())));
    }
    let with_accuracy = t.accuracy();
    let loss_fn = t.loss;
    let iteration = t.optimizer.iterations();
    let (value, correct, gradients, updates) = {
        let cx = Cx::new(net.params(), mode, 0).with_rng(rng, iteration).recording(true);
        let (out, logits) = net.forward_cx(x, &cx, Some(&loss_fn))?;
        let loss = loss_fn.compute(&out, logits, y)?;
        let value = loss.item()?;
        if !value.is_finite() {
            return Err(NnError::NonFiniteLoss { epoch: place.epoch, step: place.step, value });
        }
        let correct = with_accuracy.then(|| accuracy_sum(&loss_fn, &out, logits, y));
        drop(out);
        let mut grads = if loss.requires_grad() { Some(loss.backward()?) } else { None };
        let gradients: Vec<(String, Tensor)> = net
            .params()
            .iter()
            .filter(|(_, e)| e.trainable())
            .filter_map(|(_, e)| Some((e.key().to_string(), grads.as_mut()?.take(e.value())?)))
            .collect();
        (value, correct, gradients, cx.take_bn_updates())
    };
    crate::context::apply_bn_updates(net.parts_mut().0, updates);
    Ok(StepOutput { loss: value, accuracy: correct.map(|c| c / n.max(1) as f64), gradients })
}

/// The loss and the gradient of every trainable parameter on one batch, without updating
/// anything but batch-norm running statistics (in [`Mode::Train`]). [`Mode::Eval`] gives
/// Keras' `training=False` gradients (dropout off, running statistics).
pub fn compute_gradients(net: &mut dyn Trainable, x: &Tensor, y: &Targets, mode: Mode) -> Result<StepOutput> {
    let step = trainer(net)?.optimizer.iterations();
    let rng = epoch_rng(net.train_seed() ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15), 0);
    compute_gradients_with(net, x, y, mode, rng, StepPlace { epoch: 0, step: step as usize + 1 })
}

/// One optimizer update from gradients by parameter path (Keras' `apply_gradients`):
/// clipped by global norm and filtered for weight decay as the trainer's options say.
pub fn apply_gradients(net: &mut dyn Trainable, gradients: Vec<(String, Tensor)>) -> Result<()> {
    let (store, trainer) = net.parts_mut();
    let trainer = trainer.ok_or(NnError::NotCompiled)?;
    if let Some((path, _)) = gradients.iter().find(|(k, _)| store.by_key(k).is_none_or(|e| !e.trainable())) {
        return Err(NnError::UnknownParameter { path: path.clone() });
    }
    let mut gradients = gradients;
    if let Some(max_norm) = trainer.options.clip_grad_norm {
        let mut slices: Vec<&mut [f32]> = gradients.iter_mut().map(|(_, g)| g.data_mut()).collect();
        crate::optimizers::clip_grad_norm(&mut slices, max_norm);
    }
    let by_path: BTreeMap<&str, &Tensor> = gradients.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let filter = trainer.options.no_decay_bias_and_norm;
    let mut updates = Vec::with_capacity(by_path.len());
    for (key, dims, value) in store.trainable_values_mut() {
        let Some(g) = by_path.get(key) else { continue };
        if g.dims() != dims.as_slice() {
            return Err(NnError::misshaped(
                "gradients",
                crate::Misshaped { path: key.to_string(), expected: dims, got: g.dims().to_vec() },
            ));
        }
        let decay = !filter || crate::optimizers::decays(key, &dims);
        updates.push(ParamUpdate { key, value, grad: g.data(), decay });
    }
    trainer.optimizer.apply_updates(updates)
}

/// One training step on one batch; returns its loss and accuracy (Keras'
/// `train_on_batch`). A non-finite loss is an error and nothing is updated.
pub fn train_on_batch(net: &mut dyn Trainable, x: &Tensor, y: &Targets) -> Result<(f32, Option<f64>)> {
    let out = compute_gradients(net, x, y, Mode::Train)?;
    apply_gradients(net, out.gradients)?;
    Ok((out.loss, out.accuracy))
}

/// Loss and accuracy over `data` in batches, in inference mode, recording no graph.
pub fn evaluate(net: &dyn Trainable, data: &mut dyn Dataset, batch_size: usize) -> Result<Evaluation> {
    let t = trainer(net)?;
    if batch_size == 0 {
        return Err(NnError::arg("batch_size", "must be positive"));
    }
    let n = data.len();
    if n == 0 {
        return Err(NnError::arg("x", "cannot evaluate on an empty dataset"));
    }
    let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0.0f64, 0usize);
    for batch in data.batches((0..n).collect(), batch_size, 0, false)? {
        let (xb, yb) = batch?;
        let m = yb.len();
        let cx = Cx::new(net.params(), Mode::Eval, 0);
        let (out, logits) = net.forward_cx(&xb, &cx, Some(&t.loss))?;
        loss_sum += t.loss.compute(&out, logits, &yb)?.item()? as f64 * m as f64;
        if t.accuracy() {
            correct += accuracy_sum(&t.loss, &out, logits, &yb);
        }
        seen += m;
    }
    let seen = seen.max(1) as f64;
    Ok(Evaluation { loss: loss_sum / seen, accuracy: t.accuracy().then(|| correct / seen) })
}

/// Trains for epochs `initial_epoch + 1 ..= epochs` (Keras' `fit`) on `train`,
/// evaluating `validation` after each. Stops with [`NnError::NonFiniteLoss`] (before the
/// update) when the loss becomes NaN or infinite, or early when a callback asks.
/// `options.validation_data` and `validation_split` are for in-memory data
/// ([`Sequential::fit`]); here the validation set is the argument.
pub fn fit(
    net: &mut dyn Trainable,
    train: &mut dyn Dataset,
    mut validation: Option<&mut dyn Dataset>,
    mut options: FitOptions,
) -> Result<History> {
    let with_accuracy = trainer(net)?.accuracy();
    if options.batch_size == 0 {
        return Err(NnError::arg("batch_size", "must be positive"));
    }
    let n = train.len();
    if n == 0 {
        return Err(NnError::arg("x", "no training samples"));
    }
    if validation.as_ref().is_some_and(|v| v.is_empty()) {
        return Err(NnError::arg("validation_data", "has no samples"));
    }
    let mut callbacks = std::mem::take(&mut options.callbacks);
    for cb in callbacks.iter_mut() {
        cb.on_train_begin(net)?;
    }
    let mut history = History::default();
    let steps = n.div_ceil(options.batch_size);
    for epoch in options.initial_epoch + 1..=options.epochs {
        let started = Instant::now();
        let mut progress = Progress::new(epoch, options.epochs, steps, options.verbose);
        let mut rng = epoch_rng(options.seed, epoch);
        let mut order: Vec<usize> = (0..n).collect();
        if options.shuffle {
            rng.shuffle(&mut order);
        }
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0.0f64, 0usize);
        for (step, batch) in train.batches(order, options.batch_size, epoch, true)?.enumerate() {
            let (xb, yb) = batch?;
            let m = yb.len();
            let place = StepPlace { epoch, step: step + 1 };
            let out = compute_gradients_with(net, &xb, &yb, Mode::Train, rng.fork(), place)?;
            drop(xb);
            if let Some(t) = net.parts_mut().1 {
                t.schedule_lr(epoch);
            }
            apply_gradients(net, out.gradients)?;
            loss_sum += out.loss as f64 * m as f64;
            correct += out.accuracy.unwrap_or(0.0) * m as f64;
            seen += m;
            let accuracy = out.accuracy.map(|_| correct / seen as f64);
            progress.step(step + 1, loss_sum / seen as f64, accuracy);
        }
        if seen == 0 {
            return Err(NnError::arg("x", "no training sample could be read"));
        }
        let mut logs = Logs::new();
        logs.insert("loss".into(), loss_sum / seen as f64);
        if with_accuracy {
            logs.insert("accuracy".into(), correct / seen as f64);
        }
        if let Some(v) = validation.as_deref_mut() {
            let ev = evaluate(net, v, options.batch_size)?;
            logs.insert("val_loss".into(), ev.loss);
            if let Some(a) = ev.accuracy {
                logs.insert("val_accuracy".into(), a);
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        progress.finish(&logs);
        history.push(&logs, seconds);
        let mut stop = false;
        for cb in callbacks.iter_mut() {
            stop |= cb.on_epoch_end(epoch, &logs, net)? == Control::Stop;
        }
        if stop {
            history.stopped_epoch = Some(epoch);
            break;
        }
    }
    for cb in callbacks.iter_mut() {
        cb.on_train_end(net)?;
    }
    Ok(history)
}

impl Trainable for Sequential {
    fn params(&self) -> &Params {
        &self.store
    }
    fn parts_mut(&mut self) -> (&mut Params, Option<&mut Trainer>) {
        (&mut self.store, self.compiled.as_mut())
    }
    fn trainer(&self) -> Option<&Trainer> {
        self.compiled.as_ref()
    }
    fn set_trainer(&mut self, trainer: Option<Trainer>) {
        self.compiled = trainer;
    }
    fn check_input(&self, x: &Tensor) -> Result<()> {
        Sequential::check_input(self, x)
    }
    fn forward_cx(&self, x: &Tensor, cx: &Cx, loss: Option<&Loss>) -> Result<(Tensor, bool)> {
        self.run(x, cx, loss)
    }
    fn save_model(&self, path: &Path) -> Result<()> {
        self.save(path)
    }
    fn save_model_weights(&self, path: &Path) -> Result<()> {
        self.save_weights(path)
    }
    fn train_seed(&self) -> u64 {
        self.train_seed
    }
}

impl Sequential {
    /// Sets the loss, the optimizer (fresh state) and the metrics.
    pub fn compile(&mut self, loss: Loss, optimizer: impl Into<OptimizerConfig>, metrics: &[Metric]) -> Result<()> {
        self.compiled = Some(Trainer::new(loss, optimizer, metrics));
        Ok(())
    }

    /// The compile arguments, if compiled.
    pub fn compile_config(&self) -> Option<CompileConfig> {
        self.compiled.as_ref().map(Trainer::config)
    }

    /// The optimizer, if compiled.
    pub fn optimizer(&self) -> Option<&Optimizer> {
        self.compiled.as_ref().map(|c| &c.optimizer)
    }

    /// The optimizer, to change its learning rate.
    pub fn optimizer_mut(&mut self) -> Option<&mut Optimizer> {
        self.compiled.as_mut().map(|c| &mut c.optimizer)
    }

    /// See [`compute_gradients`].
    pub fn compute_gradients(&mut self, x: &Tensor, y: &Targets, mode: Mode) -> Result<StepOutput> {
        compute_gradients(self, x, y, mode)
    }

    /// One optimizer update from gradients by parameter path (Keras' `apply_gradients`).
    pub fn apply_gradients(&mut self, gradients: &[(String, Tensor)]) -> Result<()> {
        apply_gradients(self, gradients.to_vec())
    }

    /// One training step on one batch; returns its loss and accuracy (Keras'
    /// `train_on_batch`). A non-finite loss is an error and nothing is updated.
    pub fn train_on_batch(&mut self, x: &Tensor, y: &Targets) -> Result<(f32, Option<f64>)> {
        train_on_batch(self, x, y)
    }

    /// Loss and accuracy over `x` in batches, in inference mode, recording no graph.
    pub fn evaluate(&self, x: &Tensor, y: &Targets, batch_size: usize) -> Result<Evaluation> {
        trainer(self)?;
        self.check_input(x)?;
        evaluate(self, &mut TensorData::new(x, y)?, batch_size)
    }

    /// Trains for `options.epochs` epochs (Keras' `fit`), validating on
    /// `options.validation_data` or on the last `validation_split` of the samples.
    pub fn fit(&mut self, x: &Tensor, y: &Targets, mut options: FitOptions) -> Result<History> {
        trainer(self)?;
        self.check_input(x)?;
        let n = x.dims()[0];
        if y.len() != n {
            return Err(NnError::targets(format!("{} targets for {n} samples", y.len())));
        }
        if options.batch_size == 0 {
            return Err(NnError::arg("batch_size", "must be positive"));
        }
        if !(0.0..1.0).contains(&options.validation_split) {
            return Err(NnError::arg(
                "validation_split",
                format!("must be in [0, 1), got {}", options.validation_split),
            ));
        }
        // Keras holds out the last samples, before any shuffling
        let (train_n, validation) = match options.validation_data.take() {
            Some((vx, vy)) => {
                self.check_input(&vx)?;
                TensorData::new(&vx, &vy)?;
                (n, Some((vx, vy)))
            }
            None if options.validation_split > 0.0 => {
                let split = ((n as f64) * (1.0 - options.validation_split as f64)).floor() as usize;
                (split, Some((slice_rows(x, split, n)?, y.range(split, n)?)))
            }
            None => (n, None),
        };
        if train_n == 0 {
            return Err(NnError::arg("x", "no training samples"));
        }
        if let Some((vx, _)) = &validation
            && vx.dims()[0] == 0
        {
            return Err(NnError::arg("validation_split", "leaves no validation samples"));
        }
        let (x_train, y_train) =
            if train_n == n { (x.clone(), y.clone()) } else { (slice_rows(x, 0, train_n)?, y.range(0, train_n)?) };
        let mut train = TensorData::new(&x_train, &y_train)?;
        match &validation {
            Some((vx, vy)) => {
                let mut val = TensorData::new(vx, vy)?;
                fit(self, &mut train, Some(&mut val), options)
            }
            None => fit(self, &mut train, None, options),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Activation, Adam, DenseConfig, DropoutConfig, Sgd};

    /// Two blobs in 2-D, labels 0 and 1.
    fn blobs(n: usize, seed: u64) -> (Tensor, Targets) {
        let mut rng = Rng::new(seed);
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..n {
            let c = (i % 2) as u32;
            let centre = if c == 0 { -1.0 } else { 1.0 };
            x.push(centre + 0.5 * rng.normal());
            x.push(-centre + 0.5 * rng.normal());
            y.push(c);
        }
        (Tensor::from_vec(x, [n, 2]).unwrap(), Targets::Sparse(y))
    }

    fn small_model(seed: u64) -> Sequential {
        let mut m = Sequential::new([2]).with_seed(seed);
        m.add(DenseConfig::new(8).with_activation(Activation::Relu))
            .unwrap()
            .add(DropoutConfig::new(0.2))
            .unwrap()
            .add(DenseConfig::new(2).with_activation(Activation::Softmax))
            .unwrap();
        m.compile(Loss::sparse_categorical_crossentropy(), Adam::new(0.05), &[Metric::Accuracy]).unwrap();
        m
    }

    #[test]
    fn fit_learns_separable_blobs_and_reports_history() {
        let (x, y) = blobs(200, 1);
        let mut m = small_model(3);
        let opts = FitOptions::new(16, 5).with_validation_split(0.25).with_verbose(0);
        let h = m.fit(&x, &y, opts).unwrap();
        assert_eq!(h.epochs(), 5);
        assert_eq!(h.val_accuracy.len(), 5);
        assert_eq!(h.epoch_seconds.len(), 5);
        assert!(h.loss[4] < h.loss[0], "{:?}", h.loss);
        assert!(h.val_accuracy[4] > 0.9, "{:?}", h.val_accuracy);
        let ev = m.evaluate(&x, &y, 64).unwrap();
        assert!(ev.accuracy.unwrap() > 0.9);
        assert_eq!(m.optimizer().unwrap().iterations(), 5 * 150usize.div_ceil(16) as u64);
    }

    #[test]
    fn evaluate_matches_a_single_batch_loss() {
        let (x, y) = blobs(10, 2);
        let m = small_model(4);
        let a = m.evaluate(&x, &y, 3).unwrap();
        let b = m.evaluate(&x, &y, 10).unwrap();
        assert!((a.loss - b.loss).abs() < 1e-6);
        assert_eq!(a.accuracy, b.accuracy);
        // the loss is the cross-entropy of the predicted probabilities
        let p = m.predict(&x, 4).unwrap();
        let labels = y.as_sparse().unwrap();
        let want: f64 = p.data().chunks(2).zip(labels).map(|(r, &l)| -(r[l as usize] as f64).ln()).sum::<f64>() / 10.0;
        assert!((a.loss - want).abs() < 1e-5, "{} vs {want}", a.loss);
    }

    #[test]
    fn nan_loss_stops_with_the_epoch_and_step() {
        let (x, y) = blobs(64, 3);
        let mut m = small_model(5);
        m.compile(Loss::sparse_categorical_crossentropy(), Sgd::new(1e30), &[]).unwrap();
        let err = m.fit(&x, &y, FitOptions::new(8, 3).with_verbose(0)).unwrap_err();
        let NnError::NonFiniteLoss { epoch, step, .. } = err else { panic!("{err}") };
        assert!(epoch >= 1 && step >= 1);
        let mut bad = x.to_vec();
        bad[0] = f32::NAN;
        let xb = Tensor::from_vec(bad, [64, 2]).unwrap();
        let mut m = Sequential::new([2]);
        m.add(DenseConfig::new(2).with_activation(Activation::Softmax)).unwrap();
        m.compile(Loss::sparse_categorical_crossentropy(), Adam::default(), &[]).unwrap();
        let before = m.weights();
        let err = m.fit(&xb, &y, FitOptions::new(64, 1).with_shuffle(false).with_verbose(0)).unwrap_err();
        assert!(matches!(err, NnError::NonFiniteLoss { epoch: 1, step: 1, .. }), "{err}");
        for ((_, a), (_, b)) in before.iter().zip(m.weights()) {
            assert_eq!(a.data(), b.data(), "no update after a NaN loss");
        }
    }

    #[test]
    fn uncompiled_and_mismatched_calls_are_typed_errors() {
        let (x, y) = blobs(8, 4);
        let mut m = Sequential::new([2]);
        m.add(DenseConfig::new(2)).unwrap();
        assert!(matches!(m.fit(&x, &y, FitOptions::default()), Err(NnError::NotCompiled)));
        assert!(matches!(m.evaluate(&x, &y, 4), Err(NnError::NotCompiled)));
        let mut m = small_model(1);
        let short = Targets::Sparse(vec![0; 3]);
        assert!(matches!(m.fit(&x, &short, FitOptions::default()), Err(NnError::Targets { .. })));
        assert!(matches!(m.fit(&x, &y, FitOptions::new(0, 1)), Err(NnError::InvalidArgument { .. })));
    }

    #[test]
    fn apply_gradients_is_one_adam_step() {
        let (x, y) = blobs(8, 6);
        let mut m = small_model(2);
        let before = m.get_weight("dense_1/bias").unwrap().to_vec();
        let out = m.compute_gradients(&x, &y, Mode::Eval).unwrap();
        assert_eq!(out.gradients.len(), 4);
        let g = out.gradients.iter().find(|(k, _)| k == "dense_1/bias").unwrap().1.to_vec();
        m.apply_gradients(&out.gradients).unwrap();
        let after = m.get_weight("dense_1/bias").unwrap().to_vec();
        for ((b, a), g) in before.iter().zip(&after).zip(&g) {
            // first Adam step: lr * g / (|g| + eps / sqrt(1 - beta_2))
            let want = b - 0.05 * g / (g.abs() + 1e-7 / 0.001f32.sqrt());
            assert!((a - want).abs() < 1e-6, "{a} vs {want}");
        }
        let unknown = vec![("nope".to_string(), Tensor::zeros([1]))];
        assert!(matches!(m.apply_gradients(&unknown), Err(NnError::UnknownParameter { .. })));
    }

    #[test]
    fn fused_softmax_gives_the_gradients_of_the_probability_form() {
        use crate::ActivationConfig;
        let (x, y) = blobs(12, 7);
        let build = |softmax_in_dense: bool, extra: Option<Activation>, loss: Loss| {
            let mut m = Sequential::new([2]).with_seed(9);
            let act = if softmax_in_dense { Activation::Softmax } else { Activation::Linear };
            m.add(DenseConfig::new(3).with_activation(act)).unwrap();
            if let Some(a) = extra {
                m.add(ActivationConfig::new(a)).unwrap();
            }
            m.compile(loss, Adam::default(), &[Metric::Accuracy]).unwrap();
            m
        };
        let probs = Loss::sparse_categorical_crossentropy();
        let logits = probs.with_from_logits(true);
        let reference = build(true, None, probs).compute_gradients(&x, &y, Mode::Eval).unwrap();
        let variants = [
            build(false, Some(Activation::Softmax), probs), // Activation layer absorbed
            build(false, None, logits),                     // from_logits
            build(true, Some(Activation::Linear), probs),   // not absorbed: clipped probability form
        ];
        for mut m in variants {
            let out = m.compute_gradients(&x, &y, Mode::Eval).unwrap();
            assert!((out.loss - reference.loss).abs() < 1e-6, "{} vs {}", out.loss, reference.loss);
            assert_eq!(out.accuracy, reference.accuracy);
            for ((pa, ga), (pb, gb)) in out.gradients.iter().zip(&reference.gradients) {
                assert_eq!(pa, pb);
                for (a, b) in ga.data().iter().zip(gb.data()) {
                    assert!((a - b).abs() < 1e-6, "{pa}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn binary_and_one_hot_targets_train() {
        let (x, y) = blobs(64, 8);
        let labels = y.as_sparse().unwrap().to_vec();
        // binary: one sigmoid unit, 0/1 targets as a tensor
        let mut m = Sequential::new([2]).with_seed(1);
        m.add(DenseConfig::new(1).with_activation(Activation::Sigmoid)).unwrap();
        m.compile(Loss::binary_crossentropy(), Adam::new(0.1), &[Metric::Accuracy]).unwrap();
        let t = Tensor::from_vec(labels.iter().map(|&l| l as f32).collect(), [64, 1]).unwrap();
        let h = m.fit(&x, &Targets::Dense(t), FitOptions::new(16, 10).with_verbose(0)).unwrap();
        assert!(h.accuracy[9] > 0.9 && h.loss[9] < h.loss[0], "{h:?}");
        // categorical: one-hot rows
        let mut onehot = vec![0.0; 64 * 2];
        for (i, &l) in labels.iter().enumerate() {
            onehot[i * 2 + l as usize] = 1.0;
        }
        let mut m = small_model(1);
        m.compile(Loss::categorical_crossentropy(), Adam::new(0.05), &[Metric::Accuracy]).unwrap();
        let t = Targets::Dense(Tensor::from_vec(onehot, [64, 2]).unwrap());
        let h = m.fit(&x, &t, FitOptions::new(16, 10).with_verbose(0)).unwrap();
        assert!(h.accuracy[9] > 0.9, "{h:?}");
        assert!(m.evaluate(&x, &t, 64).unwrap().accuracy.unwrap() > 0.9);
    }

    #[test]
    fn a_final_softmax_is_fused_with_the_loss() {
        use crate::ActivationConfig;
        // logits so confident and wrong that the probability form hits Keras' 1e-7 clip
        let x = Tensor::from_vec(vec![1.0, 0.0], [1, 2]).unwrap();
        let y = Targets::Sparse(vec![1]);
        let kernel = Tensor::from_vec(vec![40.0, -40.0, 0.0, 0.0], [2, 2]).unwrap();
        let loss_of = |extra: bool| {
            let mut m = Sequential::new([2]);
            m.add(DenseConfig::new(2).with_activation(Activation::Softmax)).unwrap();
            if extra {
                m.add(ActivationConfig::new(Activation::Linear)).unwrap();
            }
            m.set_weight("dense/kernel", &kernel).unwrap();
            m.compile(Loss::sparse_categorical_crossentropy(), Adam::default(), &[]).unwrap();
            m.evaluate(&x, &y, 1).unwrap().loss
        };
        assert!((loss_of(false) - 80.0).abs() < 1e-3, "fused: log-sum-exp of the logits");
        assert!((loss_of(true) + (1e-7f64).ln()).abs() < 1e-3, "probabilities: clipped at 1e-7");
    }

    #[test]
    fn training_steps_update_parameters_in_place() {
        let (x, y) = blobs(16, 9);
        let mut m = small_model(1);
        let ptrs = |m: &Sequential| m.params().iter().map(|(_, e)| e.value().data().as_ptr()).collect::<Vec<_>>();
        let before = ptrs(&m);
        m.train_on_batch(&x, &y).unwrap();
        m.fit(&x, &y, FitOptions::new(4, 1).with_verbose(0)).unwrap();
        assert_eq!(ptrs(&m), before, "no parameter buffer was copied or reallocated");
        // a snapshot keeps its values: the next update copies instead of writing through
        let snapshot = m.weights();
        m.train_on_batch(&x, &y).unwrap();
        assert_ne!(snapshot[0].1.data(), m.params().iter().next().unwrap().1.value().data());
    }
}
