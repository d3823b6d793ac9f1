//! The JSON shapes that several commands print, defined once so that a script reads every
//! classifier and every benchmark the same way (issue 22).
//!
//! Classifications (`mnist predict`, `sound-digit predict`, `speech predict`, `images
//! classify`) print a list with one object per input file:
//!
//! ```json
//! [{"file": "seven.png", "top": [{"index": 7, "label": "7", "probability": 0.98}, ...]}]
//! ```
//!
//! `top` is most likely first, `--top N` long. Benchmarks (`bench mnist|infer|train|speech`)
//! print one object: `benchmark`, `model`, `threads`, `peak_rss_bytes`, and `rows`, one per
//! measured configuration, each with `phase` (`inference` or `training`), `batch_size`,
//! `median_ms` (one batch, or one training step) and `examples_per_sec`, plus `gflops` where
//! the benchmark counts operations; fields of one benchmark only follow.

use anyhow::Result;
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::path::Path;

/// One class of a classification.
#[derive(Clone, Debug, Serialize)]
pub struct Scored {
    /// Class index: the position in the model's output.
    pub index: usize,
    /// Class name (`"7"` for a digit, a word, an ImageNet label).
    pub label: String,
    /// Softmax probability, 0 to 1.
    pub probability: f32,
}

/// The classification of one input file.
#[derive(Clone, Debug, Serialize)]
pub struct Classification {
    /// The file as given on the command line.
    pub file: String,
    /// The `k` most likely classes, most likely first.
    pub top: Vec<Scored>,
}

impl Classification {
    /// The `k` most likely of `probabilities`; `label(i)` names class `i`. Ties keep the lower
    /// index first.
    pub fn new(file: &Path, probabilities: &[f32], label: impl Fn(usize) -> String, k: usize) -> Classification {
        let mut order: Vec<usize> = (0..probabilities.len()).collect();
        order.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]));
        let top = order
            .into_iter()
            .take(k)
            .map(|i| Scored { index: i, label: label(i), probability: probabilities[i] })
            .collect();
        Classification { file: file.display().to_string(), top }
    }

    /// The most likely class.
    pub fn best(&self) -> Option<&Scored> {
        self.top.first()
    }
}

/// Prints `value` as one pretty JSON document on stdout (nothing else goes there).
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Whether a benchmark row times inference or training.
#[derive(Clone, Copy, Debug)]
pub enum Phase {
    Inference,
    Training,
}

/// One measured configuration of a benchmark.
#[derive(Clone, Debug)]
pub struct BenchRow {
    pub phase: Phase,
    /// Examples (images, clips) per batch or training step.
    pub batch_size: usize,
    /// Median milliseconds of one batch (inference) or one training step.
    pub median_ms: f64,
    /// Examples per second.
    pub examples_per_sec: f64,
    /// Billions of floating-point operations per second (2 x multiply-accumulates), where counted.
    pub gflops: Option<f64>,
}

/// The one benchmark object: the shared fields, then `extra`'s (an object of fields of this
/// benchmark only).
pub fn bench_json(benchmark: &str, model: &str, rows: &[BenchRow], extra: Value) -> Value {
    let rows: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut row = json!({
                "phase": match r.phase { Phase::Inference => "inference", Phase::Training => "training" },
                "batch_size": r.batch_size,
                "median_ms": r.median_ms,
                "examples_per_sec": r.examples_per_sec,
            });
            if let Some(g) = r.gflops {
                row["gflops"] = json!(g);
            }
            row
        })
        .collect();
    let mut out = Map::new();
    out.insert("benchmark".into(), json!(benchmark));
    out.insert("model".into(), json!(model));
    out.insert("threads".into(), json!(rayon::current_num_threads()));
    out.insert("peak_rss_bytes".into(), json!(crate::bench::peak_rss_bytes()));
    out.insert("rows".into(), Value::Array(rows));
    if let Value::Object(extra) = extra {
        for (k, v) in extra {
            out.entry(k).or_insert(v);
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_is_most_likely_first_with_index_and_label() {
        let c = Classification::new(Path::new("a.wav"), &[0.1, 0.6, 0.3], |i| format!("c{i}"), 2);
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(
            v,
            json!({"file": "a.wav", "top": [
                {"index": 1, "label": "c1", "probability": 0.6f32},
                {"index": 2, "label": "c2", "probability": 0.3f32},
            ]})
        );
        assert_eq!(c.best().unwrap().index, 1);
    }

    #[test]
    fn bench_objects_share_their_fields_and_keep_the_extra_ones() {
        let row =
            BenchRow { phase: Phase::Training, batch_size: 4, median_ms: 2.0, examples_per_sec: 2000.0, gflops: None };
        let v = bench_json("x", "m", &[row], json!({"steps": 3, "model": "ignored"}));
        assert_eq!(v["benchmark"], "x");
        assert_eq!(v["model"], "m", "a shared field is not overwritten");
        assert_eq!(v["steps"], 3);
        assert_eq!(v["rows"][0]["phase"], "training");
        assert_eq!(v["rows"][0]["batch_size"], 4);
        assert!(v["rows"][0].get("gflops").is_none());
    }
}
