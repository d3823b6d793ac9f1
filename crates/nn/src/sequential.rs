//! [`Sequential`]: Keras' linear stack of layers, with an input shape known up front so
//! that every layer is built (weights created, shapes checked) as it is added.
//!
//! Layers are named per model as Keras names them (snake_case of the class name, then
//! `_1`, `_2`, ...), and their weights carry Keras paths (`conv2d/kernel`), so Keras
//! checkpoints load by name. Training lives in `training.rs`, the summary table in
//! `summary.rs`, files in `saving.rs`.

use std::collections::HashMap;

use convnet_tensor::Tensor;
use convnet_tensor::rng::Rng;
use serde::{Deserialize, Serialize};

use std::cell::RefCell;

use crate::layer::{Layer, LayerConfig, to_snake_case};
use crate::targets::slice_rows;
use crate::training::Trainer;
use crate::{Cx, Loss, Mode, NnError, Params, Result, Vb};

/// The architecture of a [`Sequential`] model: what `save` writes as JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Model name (`sequential`).
    pub name: String,
    /// Per-sample input shape (`[28, 28, 1]`).
    pub input_shape: Vec<usize>,
    /// Layer configs in order, each with its name.
    pub layers: Vec<LayerConfig>,
}

/// A linear stack of layers (Keras' `Sequential`).
///
/// Builds the classic Keras MNIST CNN and prints Keras' own summary table:
///
/// ```
/// use convnet_nn::{
///     Activation, Conv2dConfig, DenseConfig, DropoutConfig, FlattenConfig,
///     MaxPooling2dConfig, Padding, Sequential,
/// };
///
/// let mut model = Sequential::new([28, 28, 1]);
/// model
///     .add(Conv2dConfig::new(32, 5).with_padding(Padding::Same).with_activation(Activation::Relu))?
///     .add(MaxPooling2dConfig::new(2))?
///     .add(Conv2dConfig::new(64, 5).with_padding(Padding::Same).with_activation(Activation::Relu))?
///     .add(MaxPooling2dConfig::new(2))?
///     .add(DropoutConfig::new(0.25))?
///     .add(FlattenConfig::new())?
///     .add(DenseConfig::new(128).with_activation(Activation::Relu))?
///     .add(DropoutConfig::new(0.5))?
///     .add(DenseConfig::new(10).with_activation(Activation::Softmax))?;
///
/// let summary = model.summary();
/// print!("{summary}");
/// assert!(summary.contains("│ conv2d_1 (Conv2D)                 │ (None, 14, 14, 64)       │        51,264 │"));
/// assert!(summary.ends_with(" Total params: 454,922 (1.74 MB)\n Trainable params: 454,922 (1.74 MB)\n Non-trainable params: 0 (0.00 B)\n"));
/// assert_eq!(model.output_shape(), [10]);
/// # Ok::<(), convnet_nn::NnError>(())
/// ```
pub struct Sequential {
    pub(crate) name: String,
    pub(crate) input_shape: Vec<usize>,
    pub(crate) layers: Vec<Box<dyn Layer>>,
    /// Every weight of every layer, under Keras paths, in creation (Keras) order.
    pub(crate) store: Params,
    init_rng: Rng,
    name_counts: HashMap<String, usize>,
    /// The loss, optimizer, metrics and training state that `compile` set.
    pub(crate) compiled: Option<Trainer>,
    /// Seed of training-mode passes outside `fit` (`train_on_batch`, `compute_gradients`).
    pub(crate) train_seed: u64,
}

impl std::fmt::Debug for Sequential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sequential")
            .field("name", &self.name)
            .field("input_shape", &self.input_shape)
            .field("layers", &self.layers.iter().map(|l| l.name()).collect::<Vec<_>>())
            .finish()
    }
}

/// Seed of a model's weight initialisation unless `with_seed` sets another.
pub const DEFAULT_SEED: u64 = 0;

impl Sequential {
    /// An empty model taking samples of `input_shape` (no batch axis), e.g. `[28, 28, 1]`.
    /// Weights are drawn from a generator seeded with [`DEFAULT_SEED`].
    pub fn new(input_shape: impl Into<Vec<usize>>) -> Sequential {
        Sequential {
            name: "sequential".into(),
            input_shape: input_shape.into(),
            layers: Vec::new(),
            store: Params::new(),
            init_rng: Rng::new(DEFAULT_SEED),
            name_counts: HashMap::new(),
            compiled: None,
            train_seed: DEFAULT_SEED ^ 0x7261_696E,
        }
    }

    /// Sets the model name (Keras' `name=`, shown by `summary`).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Seeds the initialisation of the layers added from now on (and training-mode passes
    /// outside `fit`).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.init_rng = Rng::new(seed);
        self.train_seed = seed ^ 0x7261_696E;
        self
    }

    /// Builds from an architecture: same layers and names, fresh weights.
    pub fn from_config(config: &ModelConfig) -> Result<Sequential> {
        let mut model = Sequential::new(config.input_shape.clone()).with_name(config.name.clone());
        for layer in &config.layers {
            model.add(layer.clone())?;
        }
        Ok(model)
    }

    /// The architecture (input shape and layer configs with their names).
    pub fn config(&self) -> ModelConfig {
        ModelConfig {
            name: self.name.clone(),
            input_shape: self.input_shape.clone(),
            layers: self.layers.iter().map(|l| l.config()).collect(),
        }
    }

    /// Appends a layer, building it for the current output shape. Errors (and leaves the
    /// model unchanged) when its arguments do not fit that shape or its name is taken.
    pub fn add(&mut self, layer: impl Into<LayerConfig>) -> Result<&mut Self> {
        let config = layer.into();
        let input = self.output_shape().to_vec();
        let class = config.class_name();
        let name = match config.name() {
            Some(n) => {
                if self.layers.iter().any(|l| l.name() == n) {
                    return Err(NnError::DuplicateName { name: n.to_string() });
                }
                n.to_string()
            }
            None => self.fresh_name(class),
        };
        // check before drawing weights so a failed add leaves the generator untouched;
        // errors name the layer as it would have been called
        config.output_shape(&input).map_err(|e| match e {
            NnError::InvalidLayer { reason, .. } => NnError::InvalidLayer { layer: name.clone(), reason },
            other => other,
        })?;
        let store = RefCell::new(std::mem::take(&mut self.store));
        let built = config.build(&name, &input, &mut self.init_rng, &Vb::keras_root(&store, 0).pp(&name));
        self.store = store.into_inner();
        let built = built.inspect_err(|_| self.store.remove_prefix(&name))?;
        if config.name().is_none() {
            *self.name_counts.entry(to_snake_case(class)).or_insert(0) += 1;
        }
        self.layers.push(built);
        Ok(self)
    }

    /// The next free automatic name for `class` (`conv2d`, `conv2d_1`, ...).
    fn fresh_name(&self, class: &str) -> String {
        let base = to_snake_case(class);
        let mut count = self.name_counts.get(&base).copied().unwrap_or(0);
        loop {
            let name = if count == 0 { base.clone() } else { format!("{base}_{count}") };
            if !self.layers.iter().any(|l| l.name() == name) {
                return name;
            }
            count += 1;
        }
    }

    /// The model name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Per-sample input shape.
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// Per-sample output shape (the input shape while there are no layers).
    pub fn output_shape(&self) -> &[usize] {
        self.layers.last().map_or(&self.input_shape, |l| l.output_shape())
    }

    /// The built layers, in order.
    pub fn layers(&self) -> &[Box<dyn Layer>] {
        &self.layers
    }

    /// The layer called `name`.
    pub fn get_layer(&self, name: &str) -> Option<&dyn Layer> {
        self.layers.iter().find(|l| l.name() == name).map(|l| l.as_ref())
    }

    /// The parameter store: every weight by Keras path, in layer order.
    pub fn params(&self) -> &Params {
        &self.store
    }

    /// The store, to freeze weights or update them in place.
    pub fn params_mut(&mut self) -> &mut Params {
        &mut self.store
    }

    /// Freezes (`false`) or unfreezes the weights of layer `name`, as Keras'
    /// `layer.trainable = ...`: the optimizer leaves frozen weights alone, and a frozen
    /// `BatchNormalization` normalises with its moving statistics even in training.
    /// Returns how many weights changed.
    pub fn set_trainable(&mut self, name: &str, trainable: bool) -> Result<usize> {
        let layer = self.get_layer(name).ok_or_else(|| NnError::arg("layer", format!("no layer named {name:?}")))?;
        let ids = layer.params().to_vec();
        let changed = ids.iter().filter(|&&id| self.store.entry(id).trainable() != trainable).count();
        for id in ids {
            self.store.set_trainable(id, trainable);
        }
        Ok(changed)
    }

    /// Total number of weights (trainable and not).
    pub fn count_params(&self) -> usize {
        self.store.iter().map(|(_, e)| e.value().numel()).sum()
    }

    /// The current value of parameter `path` (`dense/kernel`).
    pub fn get_weight(&self, path: &str) -> Option<&Tensor> {
        self.store.by_key(path).map(|e| e.value())
    }

    /// Replaces parameter `path` (same shape).
    pub fn set_weight(&mut self, path: &str, value: &Tensor) -> Result<()> {
        let id = self.store.id(path).ok_or_else(|| NnError::UnknownParameter { path: path.to_string() })?;
        self.store.set(id, value)
    }

    /// Every weight by path, as values detached from any graph (cheap aliases: an
    /// update afterwards copies rather than changing them). Keras' `get_weights`.
    pub fn weights(&self) -> Vec<(String, Tensor)> {
        self.store.snapshot()
    }

    /// Sets every weight from `(path, tensor)` pairs. All paths must be given, none
    /// unknown, every shape equal; otherwise nothing changes and the error lists every
    /// missing, unexpected and mis-shaped tensor.
    pub fn set_weights(&mut self, weights: &[(String, Tensor)]) -> Result<()> {
        self.set_weights_from("weights", weights)
    }

    pub(crate) fn set_weights_from(&mut self, source: &str, weights: &[(String, Tensor)]) -> Result<()> {
        self.store.restore(source, weights)
    }

    /// Checks that `x` is `[batch, ...input_shape]`.
    pub(crate) fn check_input(&self, x: &Tensor) -> Result<()> {
        if x.rank() != self.input_shape.len() + 1 || x.dims()[1..] != self.input_shape[..] {
            return Err(NnError::InputShape { expected: self.input_shape.clone(), got: x.dims().to_vec() });
        }
        Ok(())
    }

    /// Runs the layers. With `loss`, a final activation that loss absorbs is left out and
    /// the second result is true (the output is logits).
    pub(crate) fn run(&self, x: &Tensor, ctx: &Cx, loss: Option<&Loss>) -> Result<(Tensor, bool)> {
        self.check_input(x)?;
        let mut h = x.clone();
        let last = self.layers.len().saturating_sub(1);
        for (i, layer) in self.layers.iter().enumerate() {
            if i == last
                && let (Some(loss), Some(act)) = (loss, layer.final_activation())
                && loss.absorbs(act)
            {
                let (z, split) = layer.forward_logits(&h, ctx)?;
                return Ok((z, split.is_some()));
            }
            h = layer.forward(&h, ctx)?;
        }
        Ok((h, false))
    }

    /// Inference on one batch (`[n, ...input_shape] -> [n, ...output_shape]`), no graph
    /// recorded: Keras' `model(x, training=False)`.
    pub fn call(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.run(x, &Cx::new(&self.store, Mode::Eval, 0), None)?.0)
    }

    /// Inference in batches of `batch_size`: the model's outputs for every sample
    /// (probabilities when the last activation is a softmax). Keras' `predict`.
    pub fn predict(&self, x: &Tensor, batch_size: usize) -> Result<Tensor> {
        self.check_input(x)?;
        if batch_size == 0 {
            return Err(NnError::arg("batch_size", "must be positive"));
        }
        let n = x.dims()[0];
        let per: usize = self.output_shape().iter().product();
        let mut out = Vec::with_capacity(n * per);
        let mut start = 0;
        while start < n {
            let end = (start + batch_size).min(n);
            let y = self.call(&slice_rows(x, start, end)?)?;
            out.extend_from_slice(y.data());
            start = end;
        }
        let mut shape = vec![n];
        shape.extend_from_slice(self.output_shape());
        Ok(Tensor::from_vec(out, shape)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Activation, BatchNormalizationConfig, Conv2dConfig, DenseConfig, DropoutConfig, FlattenConfig,
        MaxPooling2dConfig,
    };

    #[test]
    fn names_layers_as_keras_does() {
        let mut m = Sequential::new([8, 8, 2]);
        m.add(Conv2dConfig::new(4, 3))
            .unwrap()
            .add(Conv2dConfig::new(4, 3).with_name("conv2d_1"))
            .unwrap()
            .add(Conv2dConfig::new(4, 1))
            .unwrap()
            .add(BatchNormalizationConfig::new())
            .unwrap()
            .add(MaxPooling2dConfig::new(2))
            .unwrap()
            .add(DropoutConfig::new(0.1))
            .unwrap()
            .add(DropoutConfig::new(0.1))
            .unwrap()
            .add(FlattenConfig::new())
            .unwrap()
            .add(DenseConfig::new(3))
            .unwrap();
        let names: Vec<&str> = m.layers().iter().map(|l| l.name()).collect();
        assert_eq!(
            names,
            [
                "conv2d",
                "conv2d_1",
                "conv2d_2",
                "batch_normalization",
                "max_pooling2d",
                "dropout",
                "dropout_1",
                "flatten",
                "dense"
            ]
        );
        let paths: Vec<&str> = m.params().iter().map(|(_, e)| e.key()).collect();
        assert!(paths.contains(&"batch_normalization/moving_variance"));
        assert!(paths.contains(&"dense/kernel"));
        let dup = m.add(DenseConfig::new(3).with_name("dense"));
        assert!(matches!(dup, Err(NnError::DuplicateName { .. })));
    }

    #[test]
    fn a_failed_add_leaves_the_model_unchanged() {
        let mut m = Sequential::new([4, 4, 1]);
        let err = m.add(Conv2dConfig::new(2, 5)).unwrap_err();
        assert!(matches!(err, NnError::InvalidLayer { .. }), "{err}");
        assert!(m.layers().is_empty());
        m.add(Conv2dConfig::new(2, 3)).unwrap();
        assert_eq!(m.layers()[0].name(), "conv2d");
    }

    #[test]
    fn predicts_in_batches_like_one_call() {
        let mut m = Sequential::new([3]).with_seed(5);
        m.add(DenseConfig::new(4).with_activation(Activation::Relu))
            .unwrap()
            .add(DenseConfig::new(2).with_activation(Activation::Softmax))
            .unwrap();
        let x = Tensor::from_vec((0..15).map(|v| v as f32 / 7.0 - 1.0).collect(), [5, 3]).unwrap();
        let whole = m.call(&x).unwrap();
        let batched = m.predict(&x, 2).unwrap();
        assert_eq!(whole.dims(), [5, 2]);
        assert_eq!(whole.data(), batched.data());
        assert!(matches!(m.call(&Tensor::zeros([2, 4])), Err(NnError::InputShape { .. })));
    }

    #[test]
    fn frozen_layers_are_left_alone_by_training() {
        use crate::{Adam, FitOptions, Loss, Metric, Targets};
        let mut m = Sequential::new([3]).with_seed(2);
        m.add(DenseConfig::new(4).with_activation(Activation::Relu))
            .unwrap()
            .add(BatchNormalizationConfig::new())
            .unwrap()
            .add(DenseConfig::new(2).with_activation(Activation::Softmax))
            .unwrap();
        assert_eq!(m.set_trainable("dense", false).unwrap(), 2);
        assert_eq!(
            m.set_trainable("batch_normalization", false).unwrap(),
            2,
            "gamma and beta; moving stats are buffers"
        );
        assert!(m.set_trainable("nope", false).is_err());
        assert!(m.summary().contains(" Trainable params: 10 (40.00 B)"), "{}", m.summary());
        m.compile(Loss::sparse_categorical_crossentropy(), Adam::new(0.1), &[Metric::Accuracy]).unwrap();
        let before = m.weights();
        let x = Tensor::from_vec((0..24).map(|v| v as f32 / 10.0 - 1.0).collect(), [8, 3]).unwrap();
        let y = Targets::Sparse(vec![0, 1, 0, 1, 1, 0, 1, 0]);
        m.fit(&x, &y, FitOptions::new(4, 2).with_verbose(0)).unwrap();
        for ((k, a), (_, b)) in before.iter().zip(m.weights()) {
            let moved = a.data() != b.data();
            assert_eq!(moved, k.starts_with("dense_1/"), "{k}: only the trainable layer moves");
        }
        m.set_trainable("dense", true).unwrap();
        m.fit(&x, &y, FitOptions::new(4, 1).with_verbose(0)).unwrap();
        assert_ne!(m.get_weight("dense/kernel").unwrap().data(), before[0].1.data());
    }

    #[test]
    fn set_weights_lists_every_problem() {
        let mut m = Sequential::new([3]);
        m.add(DenseConfig::new(2)).unwrap();
        let w =
            vec![("dense/kernel".to_string(), Tensor::zeros([2, 3])), ("dense/extra".to_string(), Tensor::zeros([1]))];
        let err = m.set_weights(&w).unwrap_err();
        let NnError::WeightsMismatch { missing, unexpected, misshaped, .. } = &err else { panic!("{err}") };
        assert_eq!(missing, &["dense/bias"]);
        assert_eq!(unexpected, &["dense/extra"]);
        assert_eq!(misshaped[0].path, "dense/kernel");
        let msg = err.to_string();
        assert!(msg.contains("dense/bias") && msg.contains("dense/extra") && msg.contains("dense/kernel"), "{msg}");
        let ok = m.weights();
        m.set_weights(&ok).unwrap();
    }
}
