//! A batch loader in the spirit of `torch.utils.data.DataLoader(num_workers, prefetch_factor)`:
//! worker threads decode and transform whole batches ahead of the consumer, a bounded number
//! ahead, and batches come out in order.
//!
//! Every sample's augmentation draws come from `SplitMix64::for_sample(seed, epoch, index)`,
//! so a batch depends only on `(samples, order, transform, seed, epoch)`: bit-identical for any
//! thread count. Files that fail to load (unreadable, corrupt, truncated, too large) are left
//! out of their batch and reported in [`Batch::skipped`] and [`Loader::skipped`], never replaced
//! by a blank image; a batch can therefore be shorter than the batch size.

use crate::augment::TrainTransform;
use crate::decode::{Rgb8, load_image};
use crate::error::{DataError, Result};
use crate::rng::SplitMix64;
use crate::transforms::{EvalTransform, ImageF32};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// The per-sample transform of a [`Loader`].
#[derive(Clone, Debug, PartialEq)]
pub enum Transform {
    /// Random crop and flip, seeded per sample.
    Train(TrainTransform),
    /// Resize and center crop (deterministic).
    Eval(EvalTransform),
}

impl Transform {
    /// Output `(height, width)`.
    pub fn size(&self) -> (usize, usize) {
        match self {
            Transform::Train(t) => t.size,
            Transform::Eval(t) => t.size,
        }
    }

    /// Transforms sample `index` of epoch `epoch`; the eval transform ignores the seed.
    pub fn apply(&self, img: &Rgb8, seed: u64, epoch: u64, index: usize) -> ImageF32 {
        match self {
            Transform::Train(t) => t.apply(img, &mut SplitMix64::for_sample(seed, epoch, index as u64)),
            Transform::Eval(t) => t.apply(img),
        }
    }

    fn check(&self) -> Result<()> {
        let bad = |reason: String| Err(DataError::InvalidConfig { reason });
        let (size, mean, std) = match self {
            Transform::Train(t) => (t.size, t.mean, t.std),
            Transform::Eval(t) => (t.size, t.mean, t.std),
        };
        if size.0 == 0 || size.1 == 0 {
            return bad(format!("output size {size:?}: both sides must be > 0"));
        }
        if std.iter().any(|s| !(*s > 0.0 && s.is_finite())) || mean.iter().any(|m| !m.is_finite()) {
            return bad(format!("mean {mean:?} / std {std:?}: std must be > 0 and both finite"));
        }
        match self {
            Transform::Train(t) => {
                let ok = |(lo, hi): (f64, f64)| lo > 0.0 && lo <= hi && hi.is_finite();
                if !ok(t.scale) || !ok(t.ratio) {
                    return bad(format!("scale {:?} / ratio {:?}: expected 0 < lo <= hi", t.scale, t.ratio));
                }
            }
            Transform::Eval(t) => {
                if !(t.crop_pct > 0.0 && t.crop_pct.is_finite()) {
                    return bad(format!("crop_pct {}: expected > 0", t.crop_pct));
                }
            }
        }
        Ok(())
    }
}

/// Settings of a [`Loader`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoaderConfig {
    /// Samples per batch (the last batch may be shorter).
    pub batch_size: usize,
    /// Worker threads; 0 means one per available core.
    pub threads: usize,
    /// Batches decoded ahead of the consumer (in flight or waiting); 0 means `2 * threads`.
    pub prefetch: usize,
    /// Seed of the train transform's draws.
    pub seed: u64,
    /// Epoch, mixed into the draws so each epoch sees other crops.
    pub epoch: u64,
}

impl LoaderConfig {
    /// `batch_size` with defaults: threads and prefetch automatic, seed 0, epoch 0.
    pub fn new(batch_size: usize) -> Self {
        LoaderConfig { batch_size, threads: 0, prefetch: 0, seed: 0, epoch: 0 }
    }
    /// Sets `threads`.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }
    /// Sets `prefetch`.
    pub fn with_prefetch(mut self, prefetch: usize) -> Self {
        self.prefetch = prefetch;
        self
    }
    /// Sets `seed`.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Sets `epoch`.
    pub fn with_epoch(mut self, epoch: u64) -> Self {
        self.epoch = epoch;
        self
    }
}

/// A file left out of a batch, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// Its index in the samples.
    pub index: usize,
    /// The file.
    pub path: PathBuf,
    /// The error, naming the file.
    pub reason: String,
}

/// One batch: `images` is NHWC `shape = [n, h, w, 3]`, `labels[i]` the class of image `i`.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// `n * h * w * 3` normalised values.
    pub images: Vec<f32>,
    /// `[n, h, w, 3]`.
    pub shape: [usize; 4],
    /// Class indices, `n` of them.
    pub labels: Vec<u32>,
    /// Sample indices of the images, `n` of them.
    pub indices: Vec<usize>,
    /// Files of this batch that failed to load.
    pub skipped: Vec<Skipped>,
}

struct State {
    /// Next batch a worker will take.
    next_issue: usize,
    /// Batches handed to the consumer.
    consumed: usize,
    stop: bool,
}

struct Shared {
    samples: Arc<[(PathBuf, usize)]>,
    order: Vec<usize>,
    transform: Transform,
    config: LoaderConfig,
    window: usize,
    n_batches: usize,
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn make_batch(&self, k: usize) -> Batch {
        let (h, w) = self.transform.size();
        let bs = self.config.batch_size;
        let positions = &self.order[k * bs..((k + 1) * bs).min(self.order.len())];
        let mut batch = Batch {
            images: Vec::with_capacity(positions.len() * h * w * 3),
            shape: [0, h, w, 3],
            labels: Vec::with_capacity(positions.len()),
            indices: Vec::with_capacity(positions.len()),
            skipped: Vec::new(),
        };
        for &index in positions {
            let (path, label) = &self.samples[index];
            // a decoder bug on a hostile file must cost one sample, not the whole run
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                load_image(path).and_then(|img| {
                    if let Transform::Eval(t) = &self.transform {
                        t.check(&img, path)?;
                    }
                    Ok(self.transform.apply(&img, self.config.seed, self.config.epoch, index))
                })
            }));
            match result {
                Ok(Ok(img)) => {
                    batch.images.extend_from_slice(&img.data);
                    batch.labels.push(*label as u32);
                    batch.indices.push(index);
                }
                Ok(Err(e)) => batch.skipped.push(Skipped { index, path: path.clone(), reason: e.to_string() }),
                Err(_) => batch.skipped.push(Skipped {
                    index,
                    path: path.clone(),
                    reason: format!("{}: the image decoder panicked on this file", path.display()),
                }),
            }
        }
        batch.shape[0] = batch.labels.len();
        batch
    }

    fn work(&self, tx: Sender<(usize, Batch)>) {
        loop {
            let k = {
                let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
                while !s.stop && s.next_issue < self.n_batches && s.next_issue >= s.consumed + self.window {
                    s = self.wake.wait(s).unwrap_or_else(|e| e.into_inner());
                }
                if s.stop || s.next_issue >= self.n_batches {
                    return;
                }
                s.next_issue += 1;
                s.next_issue - 1
            };
            if tx.send((k, self.make_batch(k))).is_err() {
                return;
            }
        }
    }
}

/// Batches of `samples` in the given order, decoded on worker threads (see the module docs).
///
/// ```no_run
/// use convnet_data::{DataConfig, ImageFolder, Loader, LoaderConfig, TrainTransform, Transform, shuffled_order};
/// let folder = ImageFolder::open("data/flowers")?;
/// let order = shuffled_order(folder.len(), 42, 0);
/// let transform = Transform::Train(TrainTransform::new(&DataConfig::default()));
/// let mut loader = Loader::new(folder.samples, order, transform, LoaderConfig::new(32).with_seed(42))?;
/// for batch in &mut loader {
///     assert_eq!(batch.shape[1..], [224, 224, 3]); // batch.images: [n, 224, 224, 3]
/// }
/// for s in loader.skipped() {
///     eprintln!("warning: skipped {}", s.reason);
/// }
/// # Ok::<(), convnet_data::DataError>(())
/// ```
pub struct Loader {
    shared: Arc<Shared>,
    rx: Option<Receiver<(usize, Batch)>>,
    ready: BTreeMap<usize, Batch>,
    next: usize,
    workers: Vec<JoinHandle<()>>,
    skipped: Vec<Skipped>,
}

impl Loader {
    /// Starts the workers. `order` lists sample indices (a permutation, a subset, or repeats);
    /// errors if an index is out of range, the batch size is 0 or the transform is invalid.
    pub fn new(
        samples: impl Into<Arc<[(PathBuf, usize)]>>,
        order: Vec<usize>,
        transform: Transform,
        config: LoaderConfig,
    ) -> Result<Self> {
        let samples = samples.into();
        if config.batch_size == 0 {
            return Err(DataError::InvalidConfig { reason: "batch_size 0: expected at least 1".into() });
        }
        if let Some(&i) = order.iter().find(|&&i| i >= samples.len()) {
            return Err(DataError::InvalidConfig {
                reason: format!("order holds sample index {i} but there are {} samples", samples.len()),
            });
        }
        transform.check()?;
        let threads = match config.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            t => t,
        };
        let window = if config.prefetch == 0 { 2 * threads } else { config.prefetch };
        let n_batches = order.len().div_ceil(config.batch_size);
        let shared = Arc::new(Shared {
            samples,
            order,
            transform,
            config,
            window,
            n_batches,
            state: Mutex::new(State { next_issue: 0, consumed: 0, stop: false }),
            wake: Condvar::new(),
        });
        let (tx, rx) = channel();
        let mut workers = Vec::new();
        for i in 0..threads.min(n_batches) {
            let (shared, tx) = (Arc::clone(&shared), tx.clone());
            let spawned = std::thread::Builder::new().name(format!("convnet-data-{i}")).spawn(move || shared.work(tx));
            match spawned {
                Ok(handle) => workers.push(handle),
                // fewer threads only means slower; none at all is an error
                Err(source) if workers.is_empty() => {
                    return Err(DataError::InvalidConfig { reason: format!("cannot start a worker thread: {source}") });
                }
                Err(_) => break,
            }
        }
        Ok(Loader { shared, rx: Some(rx), ready: BTreeMap::new(), next: 0, workers, skipped: Vec::new() })
    }

    /// Number of batches the loader yields in all.
    pub fn num_batches(&self) -> usize {
        self.shared.n_batches
    }

    /// Every file skipped so far, in batch order.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }
}

impl Iterator for Loader {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.next >= self.shared.n_batches {
            return None;
        }
        let batch = loop {
            if let Some(b) = self.ready.remove(&self.next) {
                break b;
            }
            // workers only exit early when told to stop, so a closed channel means a bug
            let (k, b) = self.rx.as_ref()?.recv().ok()?;
            self.ready.insert(k, b);
        };
        self.next += 1;
        let mut s = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        s.consumed = self.next;
        drop(s);
        self.shared.wake.notify_all();
        self.skipped.extend(batch.skipped.iter().cloned());
        Some(batch)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.shared.n_batches - self.next;
        (left, Some(left))
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        self.shared.wake.notify_all();
        self.rx = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}
