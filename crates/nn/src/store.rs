//! The one parameter store of every model (a `Sequential` and every zoo network): each
//! tensor under its state-dict path (`layer1.0.conv1.weight` as timm names it,
//! `conv2d/kernel` as Keras does), with a trainable flag, and the builder ([`Vb`]) that
//! layers and model constructors use to create parameters under those names. Optimizers,
//! `fit`, checkpoints, summaries and freezing all work through it.
//!
//! Every tensor is kept in the engine's layout (HWIO conv kernels, `[in, out]` linear
//! weights) and converted from and to PyTorch's (OIHW, `[out, in]`) in exactly one place,
//! [`Layout`], used by the checkpoint reader and writer and by the parity weight formula.
//! Construction names each parameter by its full path (`p.pp("layer1").pp(0).pp("conv1")`),
//! so the same code creates random weights and receives checkpoints.

use crate::{Misshaped, NnError, Result};
use convnet_tensor::Tensor;
use convnet_tensor::rng::Rng;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Display;

/// How a parameter's PyTorch layout maps to the engine's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// The same in both (biases, norm weights, running statistics).
    Plain,
    /// Conv kernel: PyTorch `[out, in/groups, kh, kw]` <-> engine `[kh, kw, in/groups, out]`.
    Conv,
    /// Linear weight: PyTorch `[out, in]` <-> engine `[in, out]`.
    Linear,
    /// A linear layer over a flattened NCHW feature map of `h x w` pixels, run as a
    /// `h x w` valid conv: PyTorch `[out, c * h * w]` (C, H, W order) <-> engine `[h, w, c, out]`.
    FlatConv {
        /// Feature-map height.
        h: usize,
        /// Feature-map width.
        w: usize,
    },
}

impl Layout {
    /// The PyTorch shape of an engine-layout tensor of `dims`.
    pub fn torch_shape(self, dims: &[usize]) -> Vec<usize> {
        match (self, dims) {
            (Layout::Conv, &[kh, kw, i, o]) => vec![o, i, kh, kw],
            (Layout::Linear, &[i, o]) => vec![o, i],
            (Layout::FlatConv { .. }, &[h, w, c, o]) => vec![o, c * h * w],
            _ => dims.to_vec(),
        }
    }

    /// The engine shape of a PyTorch-layout tensor of `torch`.
    pub fn engine_shape(self, torch: &[usize]) -> Vec<usize> {
        match (self, torch) {
            (Layout::Conv, &[o, i, kh, kw]) => vec![kh, kw, i, o],
            (Layout::Linear, &[o, i]) => vec![i, o],
            (Layout::FlatConv { h, w }, &[o, chw]) if h * w > 0 => vec![h, w, chw / (h * w), o],
            _ => torch.to_vec(),
        }
    }

    /// Reorders PyTorch-layout values of shape `torch` into the engine's layout.
    pub fn from_torch(self, data: &[f32], torch: &[usize]) -> Vec<f32> {
        match (self, torch) {
            (Layout::Conv, &[o, i, kh, kw]) => {
                let mut out = vec![0.0; data.len()];
                for oo in 0..o {
                    for ii in 0..i {
                        for y in 0..kh {
                            for x in 0..kw {
                                out[((y * kw + x) * i + ii) * o + oo] = data[((oo * i + ii) * kh + y) * kw + x];
                            }
                        }
                    }
                }
                out
            }
            (Layout::Linear, &[o, i]) => transpose(data, o, i),
            (Layout::FlatConv { h, w }, &[o, chw]) if h * w > 0 => {
                let c = chw / (h * w);
                let mut out = vec![0.0; data.len()];
                for oo in 0..o {
                    for ci in 0..c {
                        for y in 0..h {
                            for x in 0..w {
                                out[((y * w + x) * c + ci) * o + oo] = data[oo * chw + (ci * h + y) * w + x];
                            }
                        }
                    }
                }
                out
            }
            _ => data.to_vec(),
        }
    }

    /// Reorders engine-layout values of shape `dims` into PyTorch's layout.
    pub fn to_torch(self, data: &[f32], dims: &[usize]) -> Vec<f32> {
        match (self, dims) {
            (Layout::Conv, &[kh, kw, i, o]) => {
                let mut out = vec![0.0; data.len()];
                for y in 0..kh {
                    for x in 0..kw {
                        for ii in 0..i {
                            for oo in 0..o {
                                out[((oo * i + ii) * kh + y) * kw + x] = data[((y * kw + x) * i + ii) * o + oo];
                            }
                        }
                    }
                }
                out
            }
            (Layout::Linear, &[i, o]) => transpose(data, i, o),
            (Layout::FlatConv { .. }, &[h, w, c, o]) => {
                let chw = c * h * w;
                let mut out = vec![0.0; data.len()];
                for oo in 0..o {
                    for ci in 0..c {
                        for y in 0..h {
                            for x in 0..w {
                                out[oo * chw + (ci * h + y) * w + x] = data[((y * w + x) * c + ci) * o + oo];
                            }
                        }
                    }
                }
                out
            }
            _ => data.to_vec(),
        }
    }
}

/// `[rows, cols]` -> `[cols, rows]`.
fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

/// One tensor of a model's state dict.
#[derive(Clone, Debug)]
pub struct ParamEntry {
    key: String,
    layout: Layout,
    trainable: bool,
    buffer: bool,
    integer: bool,
    value: Tensor,
}

impl ParamEntry {
    /// The state-dict key (`layer1.0.conv1.weight`).
    pub fn key(&self) -> &str {
        &self.key
    }
    /// How it converts to PyTorch's layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }
    /// Whether the optimizer updates it: a parameter that is not frozen.
    pub fn trainable(&self) -> bool {
        self.trainable
    }
    /// A buffer (`running_mean`, `num_batches_tracked`): state, never a parameter, not in
    /// timm's parameter count even when the model is unfrozen.
    pub fn buffer(&self) -> bool {
        self.buffer
    }
    /// Stored as an integer by PyTorch (`num_batches_tracked`, int64).
    pub fn integer(&self) -> bool {
        self.integer
    }
    /// The value in the engine's layout (a variable when trainable).
    pub fn value(&self) -> &Tensor {
        &self.value
    }
    /// The shape in PyTorch's layout.
    pub fn torch_shape(&self) -> Vec<usize> {
        self.layout.torch_shape(self.value.dims())
    }
    /// The values in PyTorch's layout.
    pub fn torch_data(&self) -> Vec<f32> {
        self.layout.to_torch(self.value.data(), self.value.dims())
    }
}

/// Handle of a parameter in a [`Params`] store (stable across loads).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParamId(pub(crate) usize);

/// Every tensor of a model by state-dict key, in creation order.
#[derive(Clone, Debug, Default)]
pub struct Params {
    slots: Vec<Option<ParamEntry>>,
    index: BTreeMap<String, usize>,
    version: u64,
}

impl Params {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tensor (engine layout) under `key`, replacing one of the same key. A tensor
    /// that is not `trainable` is a buffer (running statistics, counters).
    pub fn insert(&mut self, key: String, value: Tensor, layout: Layout, trainable: bool, integer: bool) -> ParamId {
        let value = if trainable { value.var() } else { value.detach() };
        let entry = ParamEntry { key: key.clone(), layout, trainable, buffer: !trainable, integer, value };
        self.version = next_version();
        if let Some(&i) = self.index.get(&key) {
            self.slots[i] = Some(entry);
            return ParamId(i);
        }
        self.slots.push(Some(entry));
        self.index.insert(key, self.slots.len() - 1);
        ParamId(self.slots.len() - 1)
    }

    /// The entry behind `id`. Panics on a removed parameter (a model invariant).
    pub fn entry(&self, id: ParamId) -> &ParamEntry {
        self.slots[id.0].as_ref().expect("parameter was removed from the store but is still used by a layer")
    }

    /// The value behind `id` (engine layout).
    pub fn get(&self, id: ParamId) -> &Tensor {
        &self.entry(id).value
    }

    /// The handle of `key`, if the model has it.
    pub fn id(&self, key: &str) -> Option<ParamId> {
        self.index.get(key).map(|&i| ParamId(i))
    }

    /// The entry of `key`, if the model has it.
    pub fn by_key(&self, key: &str) -> Option<&ParamEntry> {
        self.id(key).map(|id| self.entry(id))
    }

    /// Live entries with their handles, in creation order.
    pub fn iter(&self) -> impl Iterator<Item = (ParamId, &ParamEntry)> {
        self.slots.iter().enumerate().filter_map(|(i, e)| e.as_ref().map(|e| (ParamId(i), e)))
    }

    /// Number of tensors in the state dict (parameters and buffers).
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when the store is empty.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Number of parameter values, frozen or not (timm's parameter count: buffers excluded).
    pub fn param_count(&self) -> usize {
        self.iter().filter(|(_, e)| !e.buffer).map(|(_, e)| e.value.numel()).sum()
    }

    /// Number of values the optimizer updates (frozen parameters and buffers excluded).
    pub fn trainable_count(&self) -> usize {
        self.iter().filter(|(_, e)| e.trainable).map(|(_, e)| e.value.numel()).sum()
    }

    /// Parameter values (frozen or not, buffers excluded) under `prefix` (`layer1` counts
    /// `layer1.*`, `conv2d` counts `conv2d/*`; "" counts all).
    pub fn count_under(&self, prefix: &str) -> usize {
        self.iter().filter(|(_, e)| !e.buffer && under(&e.key, prefix)).map(|(_, e)| e.value.numel()).sum()
    }

    /// Every value under `prefix`, buffers included (Keras' per-layer `Param #`).
    pub fn count_all_under(&self, prefix: &str) -> usize {
        self.iter().filter(|(_, e)| under(&e.key, prefix)).map(|(_, e)| e.value.numel()).sum()
    }

    /// Every value of the store, buffers included, counted once under one of `owners`
    /// (module paths, as a summary's rows): under the longest owner whose path holds the key
    /// (the first of equal paths), so nested rows do not count their children twice; a key
    /// under no owner (a stem's `bn1` beside the `conv1` row) goes to the owner of the key
    /// created before it. The counts add up to the store's total.
    pub fn counts_by_owner(&self, owners: &[&str]) -> Vec<usize> {
        let mut counts = vec![0; owners.len()];
        if owners.is_empty() {
            return counts;
        }
        let mut previous = 0;
        for (_, e) in self.iter() {
            let owner = owners
                .iter()
                .enumerate()
                .filter(|(_, p)| !p.is_empty() && under(&e.key, p))
                .fold(None, |best: Option<(usize, usize)>, (i, p)| match best {
                    Some((_, len)) if len >= p.len() => best,
                    _ => Some((i, p.len())),
                })
                .map_or(previous, |(i, _)| i);
            counts[owner] += e.value.numel();
            previous = owner;
        }
        counts
    }

    /// Makes the parameter `id` trainable (an autograd variable the optimizer updates) or
    /// frozen (a constant; a frozen batch norm normalises with its running statistics).
    /// Buffers (`running_mean`, integer counters) are never trainable: `trainable` is ignored
    /// for them.
    pub fn set_trainable(&mut self, id: ParamId, trainable: bool) {
        let e = self.slots[id.0].as_mut().expect("parameter was removed from the store");
        if e.buffer || e.trainable == trainable {
            return;
        }
        e.trainable = trainable;
        e.value = if trainable { e.value.detach().var() } else { e.value.detach() };
        self.version = next_version();
    }

    /// Freezes (`trainable = false`) or unfreezes every parameter for which `select(key)`
    /// holds; returns how many changed.
    pub fn set_trainable_where(&mut self, trainable: bool, select: impl Fn(&str) -> bool) -> usize {
        let ids: Vec<ParamId> = self
            .iter()
            .filter(|(_, e)| !e.buffer && e.trainable != trainable && select(&e.key))
            .map(|(id, _)| id)
            .collect();
        for &id in &ids {
            self.set_trainable(id, trainable);
        }
        ids.len()
    }

    /// Incremented by every change of any value: caches derived from weights compare it.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Removes every tensor whose key is `prefix` or starts with `prefix.` (or `prefix/`).
    pub fn remove_prefix(&mut self, prefix: &str) {
        let keys: Vec<String> =
            self.index.keys().filter(|k| k.as_str() == prefix || under(k, prefix)).cloned().collect();
        for k in keys {
            if let Some(i) = self.index.remove(&k) {
                self.slots[i] = None;
            }
        }
        self.version = next_version();
    }

    /// Every tensor by key in creation order, as values detached from any graph (cheap
    /// aliases: an update afterwards copies rather than changing them). Keras'
    /// `get_weights`, PyTorch's `state_dict` in the engine's layouts.
    pub fn snapshot(&self) -> Vec<(String, Tensor)> {
        self.iter().map(|(_, e)| (e.key.clone(), e.value.detach())).collect()
    }

    /// Sets every tensor from `(key, tensor)` pairs in the engine's layouts. All keys must
    /// be given, none unknown, every shape equal; otherwise nothing changes and the error
    /// (naming `source`) lists every missing, unexpected and mis-shaped tensor.
    pub fn restore(&mut self, source: &str, values: &[(String, Tensor)]) -> Result<()> {
        let given: BTreeMap<&str, &Tensor> = values.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let mut missing = Vec::new();
        let mut misshaped = Vec::new();
        for (_, e) in self.iter() {
            match given.get(e.key.as_str()) {
                None => missing.push(e.key.clone()),
                Some(t) if t.dims() != e.value.dims() => misshaped.push(Misshaped {
                    path: e.key.clone(),
                    expected: e.value.dims().to_vec(),
                    got: t.dims().to_vec(),
                }),
                Some(_) => {}
            }
        }
        let mut unexpected: Vec<String> =
            values.iter().filter(|(k, _)| !self.index.contains_key(k)).map(|(k, _)| k.clone()).collect();
        unexpected.sort();
        if !missing.is_empty() || !unexpected.is_empty() || !misshaped.is_empty() {
            return Err(NnError::WeightsMismatch { source_name: source.to_string(), missing, unexpected, misshaped });
        }
        let ids: Vec<ParamId> = self.iter().map(|(id, _)| id).collect();
        for id in ids {
            let t = given[self.entry(id).key.as_str()];
            self.set(id, t)?;
        }
        Ok(())
    }

    /// The lines `key:d0,d1,...` (PyTorch shapes), sorted: the format of
    /// `fixtures/timm_keys/<model>.txt`.
    pub fn key_shape_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .iter()
            .map(|(_, e)| {
                let dims: Vec<String> = e.torch_shape().iter().map(|d| d.to_string()).collect();
                format!("{}:{}", e.key, dims.join(","))
            })
            .collect();
        lines.sort();
        lines
    }

    /// Replaces the value of `id` from PyTorch-layout `data` of shape `torch`.
    pub fn set_torch(&mut self, id: ParamId, data: &[f32], torch: &[usize]) -> Result<()> {
        let e = self.slots[id.0].as_mut().ok_or_else(|| NnError::arg("set_torch", "removed parameter"))?;
        let expected = e.layout.torch_shape(e.value.dims());
        if expected != torch || data.len() != torch.iter().product::<usize>() {
            return Err(NnError::misshaped(
                "set_torch",
                Misshaped { path: e.key.clone(), expected, got: torch.to_vec() },
            ));
        }
        let engine = e.layout.engine_shape(torch);
        let t = Tensor::from_vec(e.layout.from_torch(data, torch), engine)?;
        e.value = if e.trainable { t.var() } else { t };
        self.version = next_version();
        Ok(())
    }

    /// Replaces the value of `id` with an engine-layout tensor of the same shape.
    pub fn set(&mut self, id: ParamId, value: &Tensor) -> Result<()> {
        let e = self.slots[id.0].as_mut().ok_or_else(|| NnError::arg("set", "removed parameter"))?;
        if e.value.dims() != value.dims() {
            let got = value.dims().to_vec();
            return Err(NnError::misshaped(
                "set",
                Misshaped { path: e.key.clone(), expected: e.value.dims().to_vec(), got },
            ));
        }
        e.value = if e.trainable { value.detach().var() } else { value.detach() };
        self.version = next_version();
        Ok(())
    }

    /// Every trainable parameter's key, shape and mutable values, for one optimizer step
    /// (in place: the variables keep the identity gradients find them by).
    pub fn trainable_values_mut(&mut self) -> Vec<(&str, Vec<usize>, &mut [f32])> {
        self.version = next_version();
        self.slots
            .iter_mut()
            .flatten()
            .filter(|e| e.trainable)
            .map(|e| {
                let dims = e.value.dims().to_vec();
                (e.key.as_str(), dims, e.value.data_mut())
            })
            .collect()
    }

    /// Mutable values of `id` for in-place updates (optimizers), keeping the
    /// variable's identity so gradients keep finding it.
    pub fn data_mut(&mut self, id: ParamId) -> &mut [f32] {
        self.version = next_version();
        let e = self.slots[id.0].as_mut().expect("parameter was removed from the store");
        e.value.data_mut()
    }
}

/// `key` lies under the module `prefix`: `prefix.rest` (timm) or `prefix/rest` (Keras);
/// every key lies under "".
fn under(key: &str, prefix: &str) -> bool {
    prefix.is_empty() || key.strip_prefix(prefix).is_some_and(|r| r.starts_with('.') || r.starts_with('/'))
}

/// FNV-1a, 64 bit, over the UTF-8 bytes of `s`: the per-key seed of random
/// initialisation (and of the timm parity formula).
pub fn fnv1a64(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A fresh, process-wide unique version number: two stores only share a version when
/// one is an unmodified clone of the other.
fn next_version() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// How a new parameter is initialised.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// A constant.
    Const(f32),
    /// Normal with mean 0 and this standard deviation.
    Normal(f32),
    /// Uniform in `[-bound, bound)`.
    Uniform(f32),
}

/// Builder that creates parameters under a path prefix (candle's `VarBuilder`).
pub struct Vb<'a> {
    store: &'a RefCell<Params>,
    prefix: String,
    separator: char,
    seed: u64,
}

impl<'a> Vb<'a> {
    /// A builder at the root of `store`; `seed` makes the random init reproducible.
    pub fn root(store: &'a RefCell<Params>, seed: u64) -> Self {
        Vb { store, prefix: String::new(), separator: '.', seed }
    }

    /// A builder whose paths join with `/`, as Keras names weights (`conv2d/kernel`).
    pub fn keras_root(store: &'a RefCell<Params>, seed: u64) -> Self {
        Vb { store, prefix: String::new(), separator: '/', seed }
    }

    /// The builder one level down: `vb.pp("layer1").pp(0)` is `layer1.0`.
    pub fn pp(&self, name: impl Display) -> Vb<'a> {
        Vb { store: self.store, prefix: self.key(&name.to_string()), separator: self.separator, seed: self.seed }
    }

    /// The current path (`layer1.0`; empty at the root).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full key of `name` under this prefix.
    pub fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() { name.to_string() } else { format!("{}{}{name}", self.prefix, self.separator) }
    }

    /// Adds the given tensor (engine layout) as parameter `name` (layers with their own
    /// initialisers, such as Keras').
    pub fn tensor(&self, name: &str, value: Tensor, layout: Layout, trainable: bool) -> ParamId {
        self.store.borrow_mut().insert(self.key(name), value, layout, trainable, false)
    }

    /// Creates parameter `name` with engine shape `dims`.
    pub fn param(&self, name: &str, dims: &[usize], layout: Layout, trainable: bool, init: Init) -> ParamId {
        let key = self.key(name);
        let n: usize = dims.iter().product();
        let data = match init {
            Init::Const(c) => vec![c; n],
            Init::Normal(std) => {
                let mut rng = Rng::new(self.seed ^ fnv1a64(&key));
                (0..n).map(|_| rng.normal() * std).collect()
            }
            Init::Uniform(b) => {
                let mut rng = Rng::new(self.seed ^ fnv1a64(&key));
                (0..n).map(|_| rng.uniform_range(-b, b)).collect()
            }
        };
        let t = Tensor::from_vec(data, dims.to_vec()).expect("length computed from dims");
        self.store.borrow_mut().insert(key, t, layout, trainable, name == "num_batches_tracked")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv_and_linear_layouts_round_trip() {
        let torch: Vec<f32> = (0..2 * 3 * 2 * 2).map(|v| v as f32).collect();
        let e = Layout::Conv.from_torch(&torch, &[2, 3, 2, 2]);
        assert_eq!(Layout::Conv.engine_shape(&[2, 3, 2, 2]), vec![2, 2, 3, 2]);
        // engine [y=0, x=1, i=2, o=1] is torch [o=1, i=2, y=0, x=1]
        assert_eq!(e[(3 + 2) * 2 + 1], torch[(3 + 2) * 4 + 1]);
        assert_eq!(Layout::Conv.to_torch(&e, &[2, 2, 3, 2]), torch);
        let lin: Vec<f32> = (0..6).map(|v| v as f32).collect();
        let l = Layout::Linear.from_torch(&lin, &[2, 3]);
        assert_eq!(l, vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        assert_eq!(Layout::Linear.to_torch(&l, &[3, 2]), lin);
        // a [2, 3*2*2] linear over NCHW-flattened features, as a 2x2 conv
        let fc = Layout::FlatConv { h: 2, w: 2 };
        assert_eq!(fc.engine_shape(&[2, 12]), vec![2, 2, 3, 2]);
        let e = fc.from_torch(&torch, &[2, 12]);
        // engine [y=1, x=0, c=2, o=1] is torch [o=1, (c=2 * 2 + y=1) * 2 + x=0]
        assert_eq!(e[((2) * 3 + 2) * 2 + 1], torch[12 + (2 * 2 + 1) * 2]);
        assert_eq!(fc.to_torch(&e, &[2, 2, 3, 2]), torch);
    }

    #[test]
    fn store_counts_keys_and_removes_prefixes() {
        let store = RefCell::new(Params::new());
        let vb = Vb::root(&store, 0);
        vb.pp("fc").param("weight", &[4, 3], Layout::Linear, true, Init::Normal(1.0));
        vb.pp("fc").param("bias", &[3], Layout::Plain, true, Init::Const(0.0));
        vb.pp("bn").param("running_mean", &[4], Layout::Plain, false, Init::Const(0.0));
        let mut p = store.into_inner();
        assert_eq!(p.param_count(), 15);
        assert_eq!(p.key_shape_lines(), vec!["bn.running_mean:4", "fc.bias:3", "fc.weight:3,4"]);
        assert_eq!(p.count_under("fc"), 15);
        p.remove_prefix("fc");
        assert_eq!(p.len(), 1);
        assert_eq!(p.param_count(), 0);
    }

    /// A summary's rows count every value once: `bn1` (no row of its own) goes to `conv1`'s
    /// row, created just before it; `stage.0.block` is counted by its own row, not again by
    /// the enclosing `stage.0`.
    #[test]
    fn counts_by_owner_count_every_value_once() {
        let mut p = Params::new();
        for (key, n, trainable) in [
            ("conv1.weight", 27, true),
            ("bn1.weight", 3, true),
            ("bn1.running_var", 3, false),
            ("stage.0.block.weight", 10, true),
            ("stage.0.down.weight", 5, true),
            ("fc.weight", 7, true),
        ] {
            p.insert(key.into(), Tensor::zeros([n]), Layout::Plain, trainable, false);
        }
        let counts = p.counts_by_owner(&["conv1", "stage.0.block", "stage.0", "fc"]);
        assert_eq!(counts, vec![33, 10, 5, 7]);
        assert_eq!(counts.iter().sum::<usize>(), p.iter().map(|(_, e)| e.value().numel()).sum::<usize>());
        assert_eq!(p.counts_by_owner(&[]), Vec::<usize>::new());
    }
}
