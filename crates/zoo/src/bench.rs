//! Inference timing of a zoo model (what `convnet bench infer` prints): median
//! milliseconds per batch over timed runs after warm-up, images per second, and GFLOP/s
//! from the counted multiply-accumulates (2 FLOPs each).

use crate::error::{Result, ZooError};
use crate::model::Model;
use convnet_nn::context::{Cx, Mode};
use convnet_tensor::Tensor;
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
    let [c, h, w] = size;
    let mut rows = Vec::new();
    for &b in batches {
        if b == 0 {
            return Err(ZooError::arg("batch", "batch sizes must be positive"));
        }
        let data: Vec<f32> = (0..b * h * w * c).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
        let x = Tensor::from_vec(data, [b, h, w, c])?;
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
