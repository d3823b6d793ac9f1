//! The one forward-pass context of every model: the parameter store, train or eval
//! [`Mode`], whether a graph is recorded, the random stream for dropout and drop-path, the
//! batch-norm statistics a training pass produces (applied by one rule,
//! [`apply_bn_updates`], whose momentum convention is a field), and optional tracing
//! (output shapes for `summary`, multiply-accumulate counts).

use crate::store::{ParamId, Params};
use convnet_tensor::Tensor;
use convnet_tensor::ops::batch_norm::BatchStats;
use convnet_tensor::rng::Rng;
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};

/// Training or inference: never global state, always an argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Mode {
    /// Inference (Keras' `training=False`, PyTorch's `eval()`): batch norm uses running
    /// statistics, dropout and drop-path are off.
    #[default]
    Eval,
    /// Training: batch norm normalises with the batch and updates its running statistics,
    /// dropout and drop-path are on.
    Train,
}

/// How a batch norm's running statistics follow the batch's: the two conventions differ
/// in the meaning of "momentum" and in the variance they keep.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum RunningStats {
    /// Keras: `moving = moving * momentum + batch * (1 - momentum)` (momentum 0.99), with
    /// the batch's biased variance.
    Keras {
        /// Weight of the old value.
        momentum: f32,
    },
    /// PyTorch: `running = (1 - momentum) * running + momentum * batch` (momentum 0.1), with
    /// the batch's unbiased variance, and `num_batches_tracked` counted.
    Torch {
        /// Weight of the new value.
        momentum: f32,
    },
}

impl RunningStats {
    /// PyTorch's default, momentum 0.1.
    pub const TORCH: RunningStats = RunningStats::Torch { momentum: 0.1 };

    /// `(weight of the old value, weight of the new one, whether the variance is unbiased)`.
    fn weights(self) -> (f32, f32, bool) {
        match self {
            RunningStats::Keras { momentum } => (momentum, 1.0 - momentum, false),
            RunningStats::Torch { momentum } => (1.0 - momentum, momentum, true),
        }
    }
}

/// Running-statistics update that a training-mode batch norm asks for.
#[derive(Clone, Debug)]
pub struct BnUpdate {
    /// Running mean.
    pub mean: ParamId,
    /// Running variance.
    pub var: ParamId,
    /// Batch counter (PyTorch's `num_batches_tracked`), if the layer has one.
    pub tracked: Option<ParamId>,
    /// The update rule.
    pub rule: RunningStats,
    /// The batch's statistics.
    pub stats: BatchStats,
}

/// Applies the running-statistics updates recorded by a training pass, each by its rule.
pub fn apply_bn_updates(params: &mut Params, updates: Vec<BnUpdate>) {
    for u in updates {
        let (old, new, unbiased) = u.rule.weights();
        let n = u.stats.count as f32;
        let unbias = if unbiased && n > 1.0 { n / (n - 1.0) } else { 1.0 };
        for (r, b) in params.data_mut(u.mean).iter_mut().zip(&u.stats.mean) {
            *r = old * *r + new * b;
        }
        for (r, b) in params.data_mut(u.var).iter_mut().zip(&u.stats.var) {
            *r = old * *r + new * b * unbias;
        }
        if let Some(t) = u.tracked {
            params.data_mut(t)[0] += 1.0;
        }
    }
}

/// One row of a layer trace: module path, type and output shape (NHWC).
#[derive(Clone, Debug, PartialEq)]
pub struct TraceRow {
    /// State-dict prefix of the module (`layer1.0`, `conv2d`).
    pub path: String,
    /// What it is (`Bottleneck`, `Conv2D`, ...).
    pub kind: &'static str,
    /// Output shape.
    pub shape: Vec<usize>,
}

/// What a forward pass reads and records besides its input.
pub struct Cx<'a> {
    params: &'a Params,
    mode: Mode,
    record: bool,
    step: u64,
    rng: RefCell<Rng>,
    bn_updates: RefCell<Vec<BnUpdate>>,
    trace: Option<RefCell<Vec<TraceRow>>>,
    macs: Cell<u64>,
    largest_output: Cell<usize>,
}

impl<'a> Cx<'a> {
    /// A context over `params` in `mode`, with a seeded random stream. A training pass
    /// records the graph against the trainable parameters; an eval pass records none.
    pub fn new(params: &'a Params, mode: Mode, seed: u64) -> Self {
        Cx {
            params,
            mode,
            record: mode == Mode::Train,
            step: 0,
            rng: RefCell::new(Rng::new(seed)),
            bn_updates: RefCell::new(Vec::new()),
            trace: None,
            macs: Cell::new(0),
            largest_output: Cell::new(0),
        }
    }

    /// The same, with the random stream `rng` (a fork of the training loop's) and the
    /// training step `step`, for layers that derive their own seeded stream.
    pub fn with_rng(mut self, rng: Rng, step: u64) -> Self {
        self.rng = RefCell::new(rng);
        self.step = step;
        self
    }

    /// Records a graph (or not) regardless of the mode: Keras' `training=False` gradients
    /// are an eval pass that records.
    pub fn recording(mut self, record: bool) -> Self {
        self.record = record;
        self
    }

    /// Whether this pass records an autograd graph (layers may take exact, non-differentiable
    /// shortcuts when it does not).
    pub fn is_recording(&self) -> bool {
        self.record
    }

    /// The same, recording every traced module's output shape.
    pub fn tracing(mut self) -> Self {
        self.trace = Some(RefCell::new(Vec::new()));
        self
    }

    /// The parameter store.
    pub fn params(&self) -> &'a Params {
        self.params
    }

    /// Train or eval.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// True in training mode.
    pub fn training(&self) -> bool {
        self.mode == Mode::Train
    }

    /// Whether a batch norm whose scale is `weight` normalises with the batch: in
    /// training, unless it is frozen (a frozen norm keeps its running statistics, as
    /// fine-tuning with a frozen backbone expects).
    pub fn bn_training(&self, weight: Option<ParamId>) -> bool {
        self.training() && weight.is_none_or(|w| self.params.entry(w).trainable())
    }

    /// The value of a parameter.
    pub fn p(&self, id: ParamId) -> &'a Tensor {
        self.params.get(id)
    }

    /// A parameter as a layer should use it: the autograd variable when recording and the
    /// parameter is trainable, a constant otherwise, so an inference pass records no
    /// graph (one parameter variable, such as a squeeze-excitation weight, would otherwise
    /// make every later activation a graph node kept alive until the output is dropped,
    /// and rule out the forward-only fused kernels).
    pub fn param(&self, id: ParamId) -> Tensor {
        let p = self.params.get(id);
        if self.record { p.clone() } else { p.detach() }
    }

    /// Runs `f` with the random stream.
    pub fn with_rng_mut<R>(&self, f: impl FnOnce(&mut Rng) -> R) -> R {
        f(&mut self.rng.borrow_mut())
    }

    /// A stream for a layer with its own seed: a function of the seed and the step, so
    /// that it is reproducible and differs from step to step.
    pub fn seeded_rng(&self, seed: u64) -> Rng {
        Rng::new(seed.wrapping_add(self.step.wrapping_mul(0x9E37_79B9_7F4A_7C15))).fork()
    }

    /// Asks for a running-statistics update after the pass.
    pub fn push_bn_update(&self, update: BnUpdate) {
        self.bn_updates.borrow_mut().push(update);
    }

    /// The running-statistics updates collected so far.
    pub fn take_bn_updates(&self) -> Vec<BnUpdate> {
        self.bn_updates.take()
    }

    /// Records a module output when tracing.
    pub fn record(&self, path: &str, kind: &'static str, y: &Tensor) {
        if let Some(t) = &self.trace {
            t.borrow_mut().push(TraceRow { path: path.to_string(), kind, shape: y.dims().to_vec() });
        }
    }

    /// Whether module outputs are being traced.
    pub fn is_tracing(&self) -> bool {
        self.trace.is_some()
    }

    /// Notes the size (values) of a convolution's output, for [`Cx::largest_output`].
    pub fn note_output(&self, numel: usize) {
        self.largest_output.set(self.largest_output.get().max(numel));
    }

    /// The largest convolution output noted so far, in values: the activation memory a
    /// forward pass streams through at its widest.
    pub fn largest_output(&self) -> usize {
        self.largest_output.get()
    }

    /// Adds multiply-accumulates done by a conv or linear layer.
    pub fn add_macs(&self, n: u64) {
        self.macs.set(self.macs.get() + n);
    }

    /// Multiply-accumulates counted so far (convolutions and linear layers).
    pub fn macs(&self) -> u64 {
        self.macs.get()
    }

    /// The recorded trace (empty unless [`Cx::tracing`]).
    pub fn take_trace(&self) -> Vec<TraceRow> {
        self.trace.as_ref().map(|t| t.take()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Init, Layout, Vb};

    #[test]
    fn both_momentum_conventions_follow_their_frameworks() {
        let store = RefCell::new(Params::new());
        let vb = Vb::root(&store, 0);
        let mean = vb.param("running_mean", &[1], Layout::Plain, false, Init::Const(0.0));
        let var = vb.param("running_var", &[1], Layout::Plain, false, Init::Const(1.0));
        let tracked = vb.param("num_batches_tracked", &[], Layout::Plain, false, Init::Const(0.0));
        let mut p = store.into_inner();
        // a batch of 4 with mean 2 and biased variance 3 (unbiased 4)
        let stats = BatchStats { mean: vec![2.0], var: vec![3.0], count: 4 };
        let torch = BnUpdate { mean, var, tracked: Some(tracked), rule: RunningStats::TORCH, stats: stats.clone() };
        apply_bn_updates(&mut p, vec![torch]);
        assert!((p.get(mean).data()[0] - 0.2).abs() < 1e-7);
        assert!((p.get(var).data()[0] - (0.9 + 0.1 * 4.0)).abs() < 1e-6);
        assert_eq!(p.get(tracked).data()[0], 1.0);
        let keras = BnUpdate { mean, var, tracked: None, rule: RunningStats::Keras { momentum: 0.99 }, stats };
        apply_bn_updates(&mut p, vec![keras]);
        assert!((p.get(mean).data()[0] - (0.2 * 0.99 + 0.02)).abs() < 1e-7);
        assert!((p.get(var).data()[0] - (1.3 * 0.99 + 0.03)).abs() < 1e-6);
        assert_eq!(p.get(tracked).data()[0], 1.0);
    }
}
