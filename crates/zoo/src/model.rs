//! A zoo model: an architecture (one per family file) plus its parameter store, its
//! pretrained config and timm's model API (`forward_features`, `forward_head`,
//! `forward`, `reset_classifier`, state-dict loading and saving).

use crate::checkpoint::{self, LoadOptions, LoadReport, StateDict};
use crate::error::{Result, ZooError};
use crate::pretrained::PretrainedCfg;
use crate::registry;
use convnet_nn::context::{Cx, Mode};
use convnet_nn::store::{Params, Vb};
use convnet_nn::{Loss, NnError, SummaryRow, SummaryTable, Trainable, Trainer};
use convnet_tensor::{Tensor, on_worker, with_pool_awake};
use std::cell::RefCell;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What a family's network does; the [`Model`] around it owns the parameters.
pub trait Architecture: Send + Sync + fmt::Debug {
    /// `x: [n, h, w, in_chans] -> [n, h', w', num_features]` (before pooling).
    fn forward_features(&self, cx: &Cx, x: &Tensor) -> Result<Tensor>;
    /// Pooling, dropout and classifier: `[n, h', w', f] -> [n, classes]`, or the pooled
    /// `[n, f]` when `pre_logits`.
    fn forward_head(&self, cx: &Cx, x: &Tensor, pre_logits: bool) -> Result<Tensor>;
    /// Width of the pooled features.
    fn num_features(&self) -> usize;
    /// Classes of the classifier (0 when there is none).
    fn num_classes(&self) -> usize;
    /// Replaces the classifier by a fresh one for `num_classes` (0 removes it). The old
    /// classifier's parameters have been removed from the store; `vb` is at its root.
    fn reset_classifier(&mut self, vb: &Vb, num_classes: usize);
    /// Renames or reshapes the tensors of a checkpoint saved with other key names (timm's
    /// `checkpoint_filter_fn`: torchvision VGG and DenseNet names, auxiliary heads), in
    /// PyTorch layout, before it is matched against the model. Default: unchanged.
    fn remap_state_dict(&self, _sd: &mut StateDict) {}
    /// Folds training-time branches into single convolutions for inference (timm's
    /// `reparameterize_model`: RepVGG's 3x3, 1x1 and identity branches into one 3x3 conv),
    /// replacing the branches' tensors in `params` by the folded ones. Returns how many
    /// modules were folded. Default: nothing to fold.
    fn reparameterize(&mut self, _params: &mut Params) -> Result<usize> {
        Ok(0)
    }
}

/// Construction options, as `timm.create_model`'s keyword arguments.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ZooOpts {
    /// Classes of the classifier (default: the pretrained config's, usually 1000; 0: none).
    pub num_classes: Option<usize>,
    /// Input channels (default 3).
    pub in_chans: Option<usize>,
    /// Dropout before the classifier (training only).
    pub drop_rate: f32,
    /// Stochastic-depth rate of the last block, linearly scaled from 0 (training only).
    pub drop_path_rate: f32,
    /// A timm `.safetensors` checkpoint to load after construction.
    pub pretrained: Option<PathBuf>,
    /// Pretrained tag (`a1_in1k`); default: the architecture's first.
    pub tag: Option<String>,
    /// Seed of the random initialisation.
    pub seed: u64,
}

impl ZooOpts {
    /// Default options.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the number of classes.
    pub fn with_num_classes(mut self, n: usize) -> Self {
        self.num_classes = Some(n);
        self
    }
    /// Sets the input channels.
    pub fn with_in_chans(mut self, c: usize) -> Self {
        self.in_chans = Some(c);
        self
    }
    /// Sets the classifier dropout.
    pub fn with_drop_rate(mut self, r: f32) -> Self {
        self.drop_rate = r;
        self
    }
    /// Sets the stochastic-depth rate.
    pub fn with_drop_path_rate(mut self, r: f32) -> Self {
        self.drop_path_rate = r;
        self
    }
    /// Loads this checkpoint after construction.
    pub fn with_pretrained(mut self, path: impl Into<PathBuf>) -> Self {
        self.pretrained = Some(path.into());
        self
    }
    /// Sets the initialisation seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}

/// The options a family constructor receives, with defaults resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelArgs {
    /// Classes (0: no classifier).
    pub num_classes: usize,
    /// Input channels.
    pub in_chans: usize,
    /// Dropout before the classifier.
    pub drop_rate: f32,
    /// Stochastic-depth rate.
    pub drop_path_rate: f32,
}

/// A model of the zoo with its weights.
#[derive(Debug)]
pub struct Model {
    arch: &'static str,
    cfg: PretrainedCfg,
    in_chans: usize,
    params: Params,
    net: Box<dyn Architecture>,
    /// What `compile` set, for [`convnet_nn::training::fit`].
    trainer: Option<Trainer>,
    /// Images per sub-batch of [`Model::forward`], by input size `[h, w, c]`.
    sub_batches: Mutex<Vec<([usize; 3], usize)>>,
}

/// The most activation memory one inference sub-batch may stream through at its widest
/// convolution output: 64 MiB. ResNet-50's widest output (3.2 MB per image) keeps batch
/// 16 whole: its layers are compute-bound, and split into two or four parts batch 16
/// ran 2-6% slower.
const SUB_BATCH_BYTES: usize = 64 << 20;

/// The budget of [`SUB_BATCH_BYTES`] for memory-bound models (fewer than
/// [`MEMORY_BOUND_MACS`] multiply-adds per float of their widest output): 24 MiB.
/// EfficientNet-B0's widest output is 4.8 MB per image (112x112x96), so batch 16 runs as
/// four sub-batches of 4, whose expansions and depthwise outputs stay in the last-level
/// cache from one layer to the next: against two sub-batches of 8, 3-10% faster at batch
/// 16 for EfficientNet-B0 and -Lite0 (alternating passes in one process, and paired runs,
/// on the 2-core machine).
const MEMORY_BOUND_SUB_BATCH_BYTES: usize = 24 << 20;

/// Multiply-adds per image per float of the widest output below which a model counts as
/// memory-bound: EfficientNet-B0 and -Lite0 do about 320, ResNet-50 about 5,000.
const MEMORY_BOUND_MACS: usize = 1000;

/// Builds `arch` from `opts` with a family constructor (used by the registered entry points).
pub(crate) fn build(
    arch: &'static str,
    opts: ZooOpts,
    f: impl FnOnce(&Vb, &ModelArgs) -> Result<Box<dyn Architecture>>,
) -> Result<Model> {
    let cfg = registry::pretrained_cfg(arch, opts.tag.as_deref())?;
    let args = ModelArgs {
        num_classes: opts.num_classes.unwrap_or(cfg.num_classes),
        in_chans: opts.in_chans.unwrap_or(cfg.input_size[0]),
        drop_rate: opts.drop_rate,
        drop_path_rate: opts.drop_path_rate,
    };
    if args.in_chans == 0 {
        return Err(ZooError::arg("in_chans", "must be at least 1"));
    }
    let store = RefCell::new(Params::new());
    let net = f(&Vb::root(&store, opts.seed), &args)?;
    let mut model = Model {
        arch,
        cfg,
        in_chans: args.in_chans,
        params: store.into_inner(),
        net,
        trainer: None,
        sub_batches: Mutex::new(Vec::new()),
    };
    if let Some(path) = &opts.pretrained {
        model.load_pretrained(path)?;
    }
    Ok(model)
}

impl Model {
    /// The architecture's registered name (`resnet50`).
    pub fn arch(&self) -> &'static str {
        self.arch
    }
    /// `arch.tag` (`resnet50.a1_in1k`), or the bare name for untagged configs.
    pub fn name(&self) -> String {
        if self.cfg.tag.is_empty() { self.arch.to_string() } else { format!("{}.{}", self.arch, self.cfg.tag) }
    }
    /// The pretrained config (input size, eval transform, first conv, classifier).
    pub fn pretrained_cfg(&self) -> &PretrainedCfg {
        &self.cfg
    }
    /// Input channels.
    pub fn in_chans(&self) -> usize {
        self.in_chans
    }
    /// Classes of the classifier (0 when removed).
    pub fn num_classes(&self) -> usize {
        self.net.num_classes()
    }
    /// Width of the pooled features (what `forward_head(.., true)` returns).
    pub fn num_features(&self) -> usize {
        self.net.num_features()
    }
    /// The state dict in the engine's layouts.
    pub fn params(&self) -> &Params {
        &self.params
    }
    /// Mutable state dict (for optimizers).
    pub fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }
    /// Trainable values (timm's parameter count).
    pub fn param_count(&self) -> usize {
        self.params.param_count()
    }
    /// The architecture.
    pub fn net(&self) -> &dyn Architecture {
        self.net.as_ref()
    }

    fn check_input(&self, x: &Tensor) -> Result<()> {
        let why = match *x.dims() {
            [_, h, w, c] if c == self.in_chans && h > 0 && w > 0 => return Ok(()),
            // channels where NCHW has them and not where NHWC does: the layout is what is wrong
            [_, c, _, w] if c == self.in_chans && w != self.in_chans => {
                "this looks like an NCHW array, as timm takes them: transpose it to NHWC".to_string()
            }
            [_, _, _, c] if c != self.in_chans => format!("{c} channels, but the model takes {}", self.in_chans),
            [_, _, _, _] => "an empty image".to_string(),
            _ => "not a batch of images".to_string(),
        };
        Err(ZooError::arg(
            "input",
            format!("{} takes NHWC images [n, h, w, {}], got {:?}: {why}", self.arch, self.in_chans, x.dims()),
        ))
    }

    /// Features before pooling, eval mode: `[n, h, w, in_chans] -> [n, h', w', num_features]`.
    pub fn forward_features(&self, x: &Tensor) -> Result<Tensor> {
        self.check_input(x)?;
        self.eval_pass(|cx| self.net.forward_features(cx, x))
    }

    /// Head, eval mode: logits `[n, classes]`, or pooled features `[n, num_features]` with `pre_logits`.
    pub fn forward_head(&self, features: &Tensor, pre_logits: bool) -> Result<Tensor> {
        self.eval_pass(|cx| self.net.forward_head(cx, features, pre_logits))
    }

    /// Logits in eval mode: `x: [n, h, w, in_chans] -> [n, classes]`. Runs on a
    /// worker of the current thread pool ([`on_worker`]), in sub-batches when the batch's
    /// widest activation would outgrow the cache ([`Model::sub_batch`]).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // both check the input
        self.forward_in_parts(x, self.sub_batch(x)?)
    }

    /// Logits in eval mode as [`Model::forward`], the batch run in near-equal parts of at
    /// most `images` images each (16 images at most 13 per part run as 8 + 8).
    pub fn forward_in_parts(&self, x: &Tensor, images: usize) -> Result<Tensor> {
        self.check_input(x)?;
        let n = x.dims()[0];
        if images >= n || images == 0 {
            return self.eval_pass(|cx| self.forward_with(cx, x));
        }
        let parts = n.div_ceil(images);
        let image = x.numel() / n;
        let mut logits = Vec::with_capacity(parts);
        for i in 0..parts {
            let (a, b) = (i * n / parts, (i + 1) * n / parts);
            let mut dims = x.dims().to_vec();
            dims[0] = b - a;
            let part = Tensor::from_vec(x.data()[a * image..b * image].to_vec(), dims)?;
            logits.push(self.eval_pass(|cx| self.forward_with(cx, &part))?);
        }
        let refs: Vec<&Tensor> = logits.iter().collect();
        Ok(Tensor::concat(&refs, 0)?)
    }

    /// `f` with an eval-mode context, as a forward pass should run: on a worker of the
    /// current pool ([`on_worker`]), whose other workers stay awake meanwhile
    /// ([`with_pool_awake`]).
    fn eval_pass<R: Send>(&self, f: impl FnOnce(&Cx) -> R + Send) -> R {
        on_worker(|| with_pool_awake(|| f(&Cx::new(&self.params, Mode::Eval, 0))))
    }

    /// Images per sub-batch of [`Model::forward`] for inputs shaped as `x`: as many as keep
    /// the widest convolution output under [`SUB_BATCH_BYTES`], or under
    /// [`MEMORY_BOUND_SUB_BATCH_BYTES`] for a memory-bound model (at least one). The widest
    /// output and the multiply-adds per image are measured once per input size, by a
    /// forward pass of one image.
    pub fn sub_batch(&self, x: &Tensor) -> Result<usize> {
        self.check_input(x)?;
        let d = x.dims();
        let (n, h, w, c) = (d[0], d[1], d[2], d[3]);
        if n <= 1 {
            return Ok(1);
        }
        let key = [h, w, c];
        let mut cache = self.sub_batches.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&(_, per)) = cache.iter().find(|(k, _)| *k == key) {
            return Ok(per);
        }
        let one = Tensor::zeros([1, h, w, c]);
        let (widest, macs) =
            self.eval_pass(|cx| self.forward_with(cx, &one).map(|_| (cx.largest_output(), cx.macs())))?;
        let memory_bound = (macs as usize) < MEMORY_BOUND_MACS * widest;
        let budget = if memory_bound { MEMORY_BOUND_SUB_BATCH_BYTES } else { SUB_BATCH_BYTES };
        let per = (budget / (widest * std::mem::size_of::<f32>()).max(1)).max(1);
        cache.push((key, per));
        Ok(per)
    }

    /// Logits with a caller-made context (tracing, MAC counting, a train-mode pass that
    /// leaves the running statistics alone).
    pub fn forward_with(&self, cx: &Cx, x: &Tensor) -> Result<Tensor> {
        self.check_input(x)?;
        let f = self.net.forward_features(cx, x)?;
        self.net.forward_head(cx, &f, false)
    }

    /// Logits in training mode (dropout, drop-path, batch statistics), then updates the
    /// batch norms' running statistics as PyTorch does. Gradients flow to the trainable
    /// parameters, which are autograd variables. [`convnet_nn::training::fit`] and the
    /// optimizers of `convnet-nn` train the model through [`Trainable`].
    pub fn forward_train(&mut self, x: &Tensor, seed: u64) -> Result<Tensor> {
        self.check_input(x)?;
        let (y, updates) = {
            let cx = Cx::new(&self.params, Mode::Train, seed);
            let y = self.forward_with(&cx, x)?;
            (y, cx.take_bn_updates())
        };
        convnet_nn::apply_bn_updates(&mut self.params, updates);
        Ok(y)
    }

    /// Freezes every parameter outside the classifier (`trainable = false`): the backbone
    /// becomes a fixed feature extractor whose batch norms keep their running statistics
    /// in training, as a linear probe or the first phase of fine-tuning wants. Returns how
    /// many tensors were frozen.
    pub fn freeze_backbone(&mut self) -> usize {
        let head = self.cfg.classifier;
        self.params.set_trainable_where(false, |k| !checkpoint::is_under(k, head))
    }

    /// Makes every parameter trainable again.
    pub fn unfreeze(&mut self) -> usize {
        self.params.set_trainable_where(true, |_| true)
    }

    /// Replaces the classifier with a new one for `num_classes` (0 removes it), as timm's
    /// `reset_classifier`.
    pub fn reset_classifier(&mut self, num_classes: usize, seed: u64) {
        self.params.remove_prefix(self.cfg.classifier);
        let store = RefCell::new(std::mem::take(&mut self.params));
        self.net.reset_classifier(&Vb::root(&store, seed), num_classes);
        self.params = store.into_inner();
        // the optimizer's state belongs to the old head: a recompile starts fresh
        self.trainer = None;
    }

    /// Re-parameterises the model for inference, as timm's `reparameterize_model`: modules
    /// with training-time branches (RepVGG blocks) become one convolution each, with the
    /// same eval-mode logits and less work. The state dict changes with them (timm's
    /// `reparam_conv` keys), so load checkpoints first; training afterwards trains the
    /// folded convolutions, not the branches. Returns how many modules were folded (0 for
    /// families without branches, and on a second call).
    pub fn reparameterize(&mut self) -> Result<usize> {
        let n = self.net.reparameterize(&mut self.params)?;
        if n > 0 {
            // the optimizer's state and the sub-batch plan belong to the old layers
            self.trainer = None;
            self.sub_batches.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
        Ok(n)
    }

    /// Loads a timm `.safetensors` state dict (PyTorch layouts converted once, here).
    pub fn load_checkpoint(&mut self, path: impl AsRef<Path>, opts: &LoadOptions) -> Result<LoadReport> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| ZooError::io(path, e))?;
        self.load_checkpoint_bytes(&bytes, path, opts)
    }

    /// [`Model::load_checkpoint`] from the bytes of a `.safetensors` file already in memory;
    /// `path` only names them in errors. The file loader runs this, so the fuzz test covers it.
    pub fn load_checkpoint_bytes(&mut self, bytes: &[u8], path: &Path, opts: &LoadOptions) -> Result<LoadReport> {
        let mut sd = checkpoint::parse_state_dict(bytes, path)?;
        self.net.remap_state_dict(&mut sd);
        let name = self.name();
        checkpoint::load_state_dict(&mut self.params, &name, &path.display().to_string(), sd, opts)
    }

    /// Loads pretrained weights as `create_model(pretrained=True)` does: strict, except
    /// that a classifier of another class count is left out (and stays freshly
    /// initialised) and a first conv of other input channels is adapted.
    pub fn load_pretrained(&mut self, path: impl AsRef<Path>) -> Result<LoadReport> {
        let opts = self.pretrained_options();
        self.load_checkpoint(path, &opts)
    }

    /// The options of [`Model::load_pretrained`]: strict, with this model's classifier and
    /// first conv.
    pub fn pretrained_options(&self) -> LoadOptions {
        LoadOptions {
            strict: true,
            classifier: Some(self.cfg.classifier.to_string()),
            first_conv: Some(self.cfg.first_conv.to_string()),
        }
    }

    /// Saves the state dict as timm's `.safetensors` (PyTorch layouts and key names, so
    /// `timm.create_model(name, pretrained_cfg_overlay=dict(file=...))` loads it).
    /// Written atomically: a crash or kill leaves the previous file whole.
    pub fn save_checkpoint(&self, path: impl AsRef<Path>) -> Result<()> {
        checkpoint::save(&self.params, &self.name(), path.as_ref())
    }

    /// Traces one image of `[c, h, w]` through the model: each module's output shape and
    /// values, and the multiply-accumulates of the whole pass, as the one summary table of
    /// convnet (Keras' table). Shapes are NCHW after the batch axis, as timm prints them and
    /// as the command line takes tensors (the engine runs NHWC inside); every value of the
    /// state dict, running statistics included, is counted in exactly one row, so the rows add
    /// up to the total ([`Params::counts_by_owner`]).
    pub fn summary(&self, input_size: [usize; 3]) -> Result<SummaryTable> {
        let [c, h, w] = input_size;
        let x = Tensor::zeros([1, h, w, c]);
        let cx = Cx::new(&self.params, Mode::Eval, 0).tracing();
        let y = self.forward_with(&cx, &x)?;
        let trace = cx.take_trace();
        let paths: Vec<&str> = trace.iter().map(|r| r.path.as_str()).collect();
        let counts = self.params.counts_by_owner(&paths);
        let rows = trace
            .iter()
            .zip(counts)
            .map(|(r, params)| SummaryRow {
                layer: format!("{} ({})", r.path, r.kind),
                shape: nchw(&r.shape[1..]),
                params,
            })
            .collect();
        let mut table = SummaryTable::of(self, self.name(), rows);
        let macs = cx.macs();
        let out: Vec<String> = nchw(&y.dims()[1..]).iter().map(|d| d.to_string()).collect();
        table.notes.push(format!(
            "Shapes are NCHW, as timm prints them: input (None, {c}, {h}, {w}), output (None, {})",
            out.join(", ")
        ));
        table.notes.push(if macs >= 10_000_000 {
            format!("GMACs: {:.3}", macs as f64 / 1e9)
        } else {
            format!("MMACs: {:.3}", macs as f64 / 1e6)
        });
        Ok(table)
    }

    /// Multiply-accumulates of one image at the default input size, in billions (GMACs).
    pub fn gmacs(&self) -> Result<f64> {
        let [c, h, w] = self.cfg.input_size;
        let cx = Cx::new(&self.params, Mode::Eval, 0);
        self.forward_with(&cx, &Tensor::zeros([1, h, w, c]))?;
        Ok(cx.macs() as f64 / 1e9)
    }
}

/// A per-sample NHWC shape `[h, w, c]` as NCHW `[c, h, w]`; other ranks as they are.
fn nchw(shape: &[usize]) -> Vec<usize> {
    match *shape {
        [h, w, c] => vec![c, h, w],
        _ => shape.to_vec(),
    }
}

impl Trainable for Model {
    fn params(&self) -> &Params {
        &self.params
    }
    fn parts_mut(&mut self) -> (&mut Params, Option<&mut Trainer>) {
        (&mut self.params, self.trainer.as_mut())
    }
    fn trainer(&self) -> Option<&Trainer> {
        self.trainer.as_ref()
    }
    fn set_trainer(&mut self, trainer: Option<Trainer>) {
        self.trainer = trainer;
    }
    fn check_input(&self, x: &Tensor) -> std::result::Result<(), NnError> {
        Model::check_input(self, x).map_err(NnError::model)
    }
    fn forward_cx(&self, x: &Tensor, cx: &Cx, _loss: Option<&Loss>) -> std::result::Result<(Tensor, bool), NnError> {
        // timm's heads end in a linear layer: the output is already logits
        Ok((self.forward_with(cx, x).map_err(NnError::model)?, true))
    }
    fn save_model(&self, path: &Path) -> std::result::Result<(), NnError> {
        self.save_checkpoint(path).map_err(NnError::model)
    }
    fn save_model_weights(&self, path: &Path) -> std::result::Result<(), NnError> {
        self.save_checkpoint(path).map_err(NnError::model)
    }
}
