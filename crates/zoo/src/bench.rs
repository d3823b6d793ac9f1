//! Timing of a zoo model. Inference (what `convnet bench infer` prints): median
//! milliseconds per batch over timed runs after warm-up, images per second, and GFLOP/s
//! from the counted multiply-accumulates (2 FLOPs each). Training (`convnet bench train`):
//! full steps through `convnet_nn::training` on random data, as timm's `train.py` takes
//! them: a train-mode forward, cross-entropy with label smoothing 0.1, backward, and an
//! AdamW update (lr 1e-3, weight decay 0.05 except on biases and norms).

use crate::error::{Result, ZooError};
use crate::model::Model;
use convnet_nn::context::{Cx, Mode};
use convnet_nn::training::{self, StepPlace, TrainOptions, Trainable, Trainer};
use convnet_nn::{AdamW, Loss, Targets};
use convnet_tensor::Tensor;
use convnet_tensor::rng::Rng;
use std::time::Instant;

/// One batch size's timing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BenchRow {
    /// Images per forward pass.
    pub batch: usize,
    /// Median wall time of one forward pass, milliseconds.
    pub median_ms: f64,
    /// `batch / median`.
    pub images_per_sec: f64,
    /// `2 * MACs * batch / median`, in 1e9 per second.
    pub gflops: f64,
}

/// Multiply-accumulates of one `[c, h, w]` image through `model`.
pub fn count_macs(model: &Model, [c, h, w]: [usize; 3]) -> Result<u64> {
    let cx = Cx::new(model.params(), Mode::Eval, 0);
    model.forward_with(&cx, &Tensor::zeros([1, h, w, c]))?;
    Ok(cx.macs())
}

/// Times eval-mode `model.forward` on deterministic inputs of `size` for each batch size.
pub fn bench_inference(
    model: &Model,
    size: [usize; 3],
    batches: &[usize],
    runs: usize,
    warmup: usize,
) -> Result<Vec<BenchRow>> {
    let macs = count_macs(model, size)?;
    let mut rows = Vec::new();
    for &b in batches {
        let x = bench_input(b, size)?;
        for _ in 0..warmup {
            model.forward(&x)?;
        }
        let mut times = Vec::with_capacity(runs.max(1));
        for _ in 0..runs.max(1) {
            let t = Instant::now();
            let y = model.forward(&x)?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
            drop(y);
        }
        times.sort_by(f64::total_cmp);
        let median_ms = times[times.len() / 2];
        let secs = median_ms / 1e3;
        rows.push(BenchRow {
            batch: b,
            median_ms,
            images_per_sec: b as f64 / secs,
            gflops: 2.0 * macs as f64 * b as f64 / secs / 1e9,
        });
    }
    Ok(rows)
}

/// One kernel call of a profiled forward pass ([`profile_layers`]).
#[derive(Clone, Debug, PartialEq)]
pub struct LayerRow {
    /// The kernel that ran it (`igemm`, `gemm`, `depthwise`, `matmul`, ...).
    pub kernel: &'static str,
    /// Its shape (`conv 3x3/1 56x56x64 -> 56x56x64, n=1`).
    pub what: String,
    /// Floating-point operations, at the direct convolution's count.
    pub flops: u64,
    /// Median wall time over the profiled runs, milliseconds.
    pub ms: f64,
}

/// Where one batch size's forward pass spends its time.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerProfile {
    /// Images per forward pass.
    pub batch: usize,
    /// Median wall time of the whole profiled forward pass, milliseconds.
    pub total_ms: f64,
    /// Every convolution and matrix product, in the order they ran.
    pub layers: Vec<LayerRow>,
}

/// Times each convolution and matrix product of eval-mode `model.forward` at each batch
/// size (median of `runs` after `warmup` passes), through [`convnet_tensor::profile`].
/// What the table leaves out (pooling, activations that did not fuse, additions, the
/// squeeze-excitation's gates) is `total_ms` minus the rows' sum.
pub fn profile_layers(
    model: &Model,
    size: [usize; 3],
    batches: &[usize],
    runs: usize,
    warmup: usize,
) -> Result<Vec<LayerProfile>> {
    use convnet_tensor::profile;
    let mut out = Vec::new();
    for &b in batches {
        let x = bench_input(b, size)?;
        for _ in 0..warmup {
            model.forward(&x)?;
        }
        let mut totals = Vec::new();
        let mut passes: Vec<Vec<profile::Record>> = Vec::new();
        for _ in 0..runs.max(1) {
            profile::start();
            let t = Instant::now();
            let y = model.forward(&x);
            totals.push(t.elapsed().as_secs_f64() * 1e3);
            passes.push(profile::stop());
            drop(y?);
        }
        let first = &passes[0];
        if passes.iter().any(|p| p.len() != first.len()) {
            return Err(ZooError::arg("model", "the forward pass ran a different number of kernels from run to run"));
        }
        let layers = (0..first.len())
            .map(|i| {
                let times: Vec<f64> = passes.iter().map(|p| p[i].seconds * 1e3).collect();
                LayerRow {
                    kernel: first[i].kernel,
                    what: first[i].what.clone(),
                    flops: first[i].flops,
                    ms: median_of(&times),
                }
            })
            .collect();
        out.push(LayerProfile { batch: b, total_ms: median_of(&totals), layers });
    }
    Ok(out)
}

/// The largest image side [`train_step_bench`] takes: far above any zoo model's input.
pub const MAX_TRAIN_SIDE: usize = 2048;

/// The most input floats of one training batch [`train_step_bench`] takes (2^28, 1 GiB):
/// the activations kept for backward are tens of times larger.
pub const MAX_TRAIN_INPUT: usize = 1 << 28;

/// Timing of full training steps: forward in train mode, loss, backward, optimizer update.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainBench {
    /// Images per step.
    pub batch: usize,
    /// Input size `[c, h, w]`.
    pub size: [usize; 3],
    /// Classes of the classifier (the random labels' range).
    pub num_classes: usize,
    /// Trainable parameters the optimizer updates.
    pub trainable_params: usize,
    /// Wall time of each timed step, seconds, in order.
    pub step_s: Vec<f64>,
    /// Median of `step_s`.
    pub median_s: f64,
    /// Fastest step.
    pub min_s: f64,
    /// Slowest step.
    pub max_s: f64,
    /// `batch / median_s`.
    pub images_per_s: f64,
    /// Median seconds of the forward and backward pass (`compute_gradients_with`).
    pub median_gradients_s: f64,
    /// Median seconds of the optimizer update (`apply_gradients`).
    pub median_update_s: f64,
    /// Loss of the last step (finite, or the step would have failed).
    pub last_loss: f32,
}

fn median_of(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

/// The trainer [`train_step_bench`] compiles the model with: AdamW (lr 1e-3, weight
/// decay 0.05, none on biases and norms, as timm's `create_optimizer_v2`), sparse
/// cross-entropy on logits with label smoothing 0.1, no metric.
pub fn train_bench_trainer() -> Trainer {
    let loss = Loss::sparse_categorical_crossentropy().with_from_logits(true).with_label_smoothing(0.1);
    let options = TrainOptions { clip_grad_norm: None, no_decay_bias_and_norm: true, schedule: None };
    Trainer::new(loss, AdamW::new(1e-3).with_weight_decay(0.05), &[]).with_options(options)
}

/// Times `steps` full training steps of `model` (after `warmup` untimed ones) on one
/// random batch `x: [batch, h, w, c]` (uniform in [-1, 1)) with random labels below the
/// model's class count. Compiles `model` with [`train_bench_trainer`] (replacing any
/// trainer it had) and trains it: its weights change.
pub fn train_step_bench(
    model: &mut Model,
    batch: usize,
    size: [usize; 3],
    steps: usize,
    warmup: usize,
) -> Result<TrainBench> {
    let [c, h, w] = size;
    if batch == 0 {
        return Err(ZooError::arg("batch", "must be at least 1 (a training step needs images)"));
    }
    if steps == 0 {
        return Err(ZooError::arg("steps", "must be at least 1 (the timed steps)"));
    }
    if c != model.in_chans() {
        return Err(ZooError::arg(
            "input size",
            format!("{} takes {} channels, got {c}", model.name(), model.in_chans()),
        ));
    }
    if h == 0 || w == 0 || h > MAX_TRAIN_SIDE || w > MAX_TRAIN_SIDE {
        return Err(ZooError::arg(
            "image size",
            format!(
                "{h}x{w} is outside 1..={MAX_TRAIN_SIDE} pixels a side; the model's own is {:?}",
                model.pretrained_cfg().input_size
            ),
        ));
    }
    let floats = batch.checked_mul(c * h * w).filter(|&n| n <= MAX_TRAIN_INPUT).ok_or_else(|| {
        ZooError::arg(
            "batch",
            format!(
                "{batch} images of {c}x{h}x{w} exceed {MAX_TRAIN_INPUT} input floats (1 GiB) per step; use a smaller --batch or --img-size"
            ),
        )
    })?;
    let num_classes = model.num_classes();
    if num_classes == 0 {
        return Err(ZooError::arg("model", format!("{} has no classifier (num_classes 0) to train", model.name())));
    }
    let mut rng = Rng::new(0x74_7261_696e);
    let data: Vec<f32> = (0..floats).map(|_| rng.uniform_range(-1.0, 1.0)).collect();
    let x = Tensor::from_vec(data, [batch, h, w, c])?;
    let y = Targets::Sparse((0..batch).map(|_| rng.below(num_classes) as u32).collect());
    model.set_trainer(Some(train_bench_trainer()));
    let trainable_params = model.params().iter().filter(|(_, e)| e.trainable()).map(|(_, e)| e.value().numel()).sum();

    let (mut step_s, mut grad_s, mut update_s) = (Vec::new(), Vec::new(), Vec::new());
    let mut last_loss = f32::NAN;
    for i in 0..warmup + steps {
        let place = StepPlace { epoch: 1, step: i + 1 };
        let t0 = Instant::now();
        let out = training::compute_gradients_with(model, &x, &y, Mode::Train, rng.fork(), place)?;
        let t1 = Instant::now();
        training::apply_gradients(model, out.gradients)?;
        let t2 = Instant::now();
        last_loss = out.loss;
        if i >= warmup {
            step_s.push((t2 - t0).as_secs_f64());
            grad_s.push((t1 - t0).as_secs_f64());
            update_s.push((t2 - t1).as_secs_f64());
        }
    }
    let median_s = median_of(&step_s);
    Ok(TrainBench {
        batch,
        size,
        num_classes,
        trainable_params,
        min_s: step_s.iter().copied().fold(f64::INFINITY, f64::min),
        max_s: step_s.iter().copied().fold(0.0, f64::max),
        median_s,
        images_per_s: batch as f64 / median_s,
        median_gradients_s: median_of(&grad_s),
        median_update_s: median_of(&update_s),
        step_s,
        last_loss,
    })
}

/// The deterministic NHWC input batch every inference benchmark times (values in [-1, 1)).
fn bench_input(b: usize, [c, h, w]: [usize; 3]) -> Result<Tensor> {
    if b == 0 {
        return Err(ZooError::arg("batch", "batch sizes must be positive"));
    }
    let data: Vec<f32> = (0..b * h * w * c).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
    Ok(Tensor::from_vec(data, [b, h, w, c])?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ZooOpts, create_model};

    fn tiny() -> Model {
        create_model("resnet18", ZooOpts::new().with_num_classes(3)).unwrap()
    }

    #[test]
    fn train_bench_times_every_step_and_trains() {
        let mut m = tiny();
        let r = train_step_bench(&mut m, 2, [3, 32, 32], 3, 1).unwrap();
        assert_eq!(r.step_s.len(), 3);
        assert!(r.min_s <= r.median_s && r.median_s <= r.max_s);
        assert!(r.images_per_s > 0.0 && r.last_loss.is_finite());
        assert_eq!(r.num_classes, 3);
        assert_eq!(m.trainer().unwrap().optimizer().iterations(), 4);
    }

    #[test]
    fn train_bench_rejects_bad_inputs() {
        let mut m = tiny();
        let msg = |r: Result<TrainBench>| r.unwrap_err().to_string();
        assert!(msg(train_step_bench(&mut m, 0, [3, 32, 32], 1, 0)).contains("at least 1"));
        assert!(msg(train_step_bench(&mut m, 1, [3, 32, 32], 0, 0)).contains("steps"));
        assert!(msg(train_step_bench(&mut m, 1, [1, 32, 32], 1, 0)).contains("3 channels"));
        assert!(msg(train_step_bench(&mut m, 1, [3, 100_000, 32], 1, 0)).contains("outside"));
        assert!(msg(train_step_bench(&mut m, 100_000, [3, 224, 224], 1, 0)).contains("smaller --batch"));
    }
}
