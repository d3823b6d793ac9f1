//! The forward-pass context: the parameter store, train or eval [`Mode`], the random
//! stream for dropout and drop-path, the batch-norm statistics a training pass produces,
//! and optional tracing (output shapes for `summary`, multiply-accumulate counts).

use crate::params::{ParamId, Params};
use convnet_tensor::ops::batch_norm::BatchStats;
use convnet_tensor::rng::Rng;
use std::cell::{Cell, RefCell};

/// Training or inference: never global state, always an argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// Inference: batch norm uses running statistics, dropout and drop-path are off.
    #[default]
    Eval,
    /// Training: batch norm normalises with the batch, dropout and drop-path are on.
    Train,
}

/// Running-statistics update that a training-mode batch norm asks for.
#[derive(Clone, Debug)]
pub(crate) struct BnUpdate {
    pub mean: ParamId,
    pub var: ParamId,
    pub tracked: ParamId,
    pub momentum: f32,
    pub stats: BatchStats,
}

/// One row of a layer trace: module path, type and output shape (NHWC).
#[derive(Clone, Debug, PartialEq)]
pub struct TraceRow {
    /// State-dict prefix of the module (`layer1.0`).
    pub path: String,
    /// What it is (`Bottleneck`, `Conv2d`, ...).
    pub kind: &'static str,
    /// Output shape.
    pub shape: Vec<usize>,
}

/// What a forward pass reads and records besides its input.
pub struct Cx<'a> {
    params: &'a Params,
    mode: Mode,
    rng: RefCell<Rng>,
    pub(crate) bn_updates: RefCell<Vec<BnUpdate>>,
    trace: Option<RefCell<Vec<TraceRow>>>,
    macs: Cell<u64>,
    largest_output: Cell<usize>,
}

impl<'a> Cx<'a> {
    /// A context over `params` in `mode`, with a seeded random stream.
    pub fn new(params: &'a Params, mode: Mode, seed: u64) -> Self {
        Cx {
            params,
            mode,
            rng: RefCell::new(Rng::new(seed)),
            bn_updates: RefCell::new(Vec::new()),
            trace: None,
            macs: Cell::new(0),
            largest_output: Cell::new(0),
        }
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

    /// The value of a parameter.
    pub fn p(&self, id: ParamId) -> &'a convnet_tensor::Tensor {
        self.params.get(id)
    }

    /// A parameter as a layer should use it: the autograd variable in training, a
    /// constant in eval mode, so an inference pass records no graph (one parameter
    /// variable, such as a squeeze-excitation weight, would otherwise make every later
    /// activation a graph node kept alive until the output is dropped, and rule out
    /// the forward-only fused kernels). Eval mode already folds batch norms into
    /// constant kernels.
    pub fn param(&self, id: ParamId) -> convnet_tensor::Tensor {
        let p = self.params.get(id);
        if self.training() { p.clone() } else { p.detach() }
    }

    /// Runs `f` with the random stream.
    pub fn with_rng<R>(&self, f: impl FnOnce(&mut Rng) -> R) -> R {
        f(&mut self.rng.borrow_mut())
    }

    /// Records a module output when tracing.
    pub fn record(&self, path: &str, kind: &'static str, y: &convnet_tensor::Tensor) {
        if let Some(t) = &self.trace {
            t.borrow_mut().push(TraceRow { path: path.to_string(), kind, shape: y.dims().to_vec() });
        }
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
