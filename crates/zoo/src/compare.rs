//! The model comparison behind `convnet compare` and the web app's compare tab: one row per
//! registered model with its size (parameters, GMACs, input), the ImageNet-1k accuracy that
//! timm *publishes* for its default pretrained tag, and optionally the latency measured here.
//!
//! The published figures come from timm's `results/results-imagenet.csv` (pytorch-image-models,
//! Apache-2.0), vendored as `data/timm_results_imagenet.csv`. They are quoted, never
//! recomputed: a model whose default tag has no row gets no accuracy at all.

use crate::bench::bench_inference;
use crate::error::{Result, ZooError};
use crate::registry::{ModelEntry, list_models};
use crate::{ZooOpts, create_model};
use convnet_plot::ComparisonPoint;
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

/// timm's published ImageNet-1k validation results (header line plus one row per `arch.tag`
/// and evaluation size).
pub const TIMM_RESULTS_CSV: &str = include_str!("../../../data/timm_results_imagenet.csv");

/// Where [`TIMM_RESULTS_CSV`] comes from, for captions and credits.
pub const TIMM_RESULTS_CREDIT: &str =
    "ImageNet-1k top-1/top-5 as published by timm (pytorch-image-models results-imagenet.csv, Apache-2.0)";

/// One row of timm's results table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PublishedResult {
    /// `arch.tag`.
    pub model: String,
    /// Evaluation image side in pixels.
    pub img_size: usize,
    /// Top-1 accuracy, percent.
    pub top1: f64,
    /// Top-5 accuracy, percent.
    pub top5: f64,
    /// Parameters in millions, as timm printed them.
    pub param_count_m: f64,
    /// Crop fraction of the evaluation.
    pub crop_pct: f64,
}

/// Splits one CSV line into fields; double-quoted fields may hold commas (`"1,014.45"`) and
/// doubled quotes.
fn csv_fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut field)),
            _ => field.push(c),
        }
    }
    out.push(field);
    out
}

/// Parses timm's results CSV (`model,img_size,top1,top1_err,top5,top5_err,param_count,
/// crop_pct,interpolation`). A header that lacks these columns or a row that does not parse
/// is an error naming the line.
pub fn parse_results(text: &str) -> Result<Vec<PublishedResult>> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let bad = |line: usize, reason: String| {
        ZooError::bad_file("timm_results_imagenet.csv", format!("line {}: {reason}", line + 1))
    };
    let (_, header) = lines.next().ok_or_else(|| bad(0, "empty file".into()))?;
    let header = csv_fields(header);
    let col = |name: &str| {
        header.iter().position(|h| h.trim() == name).ok_or_else(|| bad(0, format!("no column {name:?} in the header")))
    };
    let (model, size, top1, top5, params, crop) =
        (col("model")?, col("img_size")?, col("top1")?, col("top5")?, col("param_count")?, col("crop_pct")?);
    lines
        .map(|(i, l)| {
            let f = csv_fields(l);
            let get = |c: usize| f.get(c).map(|s| s.trim()).ok_or_else(|| bad(i, format!("{} fields", f.len())));
            let num = |c: usize| -> Result<f64> {
                let s = get(c)?;
                s.replace(',', "").parse::<f64>().map_err(|_| bad(i, format!("{s:?} is not a number")))
            };
            Ok(PublishedResult {
                model: get(model)?.to_string(),
                img_size: get(size)?.parse().map_err(|_| bad(i, format!("img_size {:?}", f[size])))?,
                top1: num(top1)?,
                top5: num(top5)?,
                param_count_m: num(params)?,
                crop_pct: num(crop)?,
            })
        })
        .collect()
}

/// The vendored table, parsed once and grouped by `arch.tag`.
fn published_table() -> &'static HashMap<String, Vec<PublishedResult>> {
    static TABLE: OnceLock<HashMap<String, Vec<PublishedResult>>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut map: HashMap<String, Vec<PublishedResult>> = HashMap::new();
        // the vendored file is checked by this module's tests; a broken copy lists no figures
        for r in parse_results(TIMM_RESULTS_CSV).unwrap_or_default() {
            map.entry(r.model.clone()).or_default().push(r);
        }
        map
    })
}

/// timm's published result for `entry`'s default pretrained tag at its default input size
/// (the size its GMACs are counted at; timm also publishes some tags at a larger test size,
/// which would not compare like with like). `None` when timm publishes no such row.
pub fn published(entry: &ModelEntry) -> Option<PublishedResult> {
    let cfg = entry.default_cfg();
    let rows = published_table().get(&format!("{}.{}", entry.name, cfg.tag))?;
    let size = cfg.input_size[1];
    rows.iter().find(|r| r.img_size == size).cloned()
}

/// Inference speed of one model, measured here.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Measured {
    /// Images per forward pass.
    pub batch: usize,
    /// Median milliseconds per forward pass.
    pub latency_ms: f64,
    /// `batch / latency`.
    pub images_per_sec: f64,
}

/// One model of the comparison.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CompareRow {
    /// timm's architecture name.
    pub name: &'static str,
    /// The family file (`resnet`).
    pub family: &'static str,
    /// The default pretrained tag.
    pub tag: &'static str,
    /// Parameters (from the generated stats table).
    pub params: Option<usize>,
    /// GMACs of one image at `input_size`.
    pub gmacs: Option<f64>,
    /// The default input `[c, h, w]`.
    pub input_size: [usize; 3],
    /// timm's published figures (`None`: not published; never estimated).
    pub published: Option<PublishedResult>,
    /// Latency measured by [`measure`], if it ran.
    pub measured: Option<Measured>,
}

impl CompareRow {
    /// The row of `entry`, without measurements.
    pub fn of(entry: &'static ModelEntry) -> Self {
        let stats = entry.stats();
        CompareRow {
            name: entry.name,
            family: entry.family(),
            tag: entry.default_cfg().tag,
            params: stats.map(|s| s.params),
            gmacs: stats.map(|s| s.gmacs),
            input_size: entry.default_cfg().input_size,
            published: published(entry),
            measured: None,
        }
    }
    /// Published top-1, percent.
    pub fn top1(&self) -> Option<f64> {
        self.published.as_ref().map(|p| p.top1)
    }
    /// Published top-5, percent.
    pub fn top5(&self) -> Option<f64> {
        self.published.as_ref().map(|p| p.top5)
    }
}

/// Rows for every registered model matching any of `patterns` (all models when empty), in
/// registry order, each model once.
pub fn compare_rows(patterns: &[String]) -> Vec<CompareRow> {
    let mut entries: Vec<&'static ModelEntry> = Vec::new();
    if patterns.is_empty() {
        entries = list_models("");
    } else {
        for p in patterns {
            for e in list_models(p) {
                if !entries.iter().any(|x| std::ptr::eq(*x, e)) {
                    entries.push(e);
                }
            }
        }
        let order: Vec<&'static str> = list_models("").iter().map(|e| e.name).collect();
        entries.sort_by_key(|e| order.iter().position(|n| *n == e.name));
    }
    entries.into_iter().map(CompareRow::of).collect()
}

/// Times eval-mode inference of the row's model (random weights: speed does not depend on
/// them) at its default input size: the median of `runs` passes of `batch` images after one
/// warm-up pass.
pub fn measure(row: &CompareRow, batch: usize, runs: usize) -> Result<Measured> {
    let model = create_model(row.name, ZooOpts::default())?;
    let r = bench_inference(&model, row.input_size, &[batch], runs.max(1), 1)?;
    let r = r.first().ok_or_else(|| ZooError::arg("batch", "no timing was taken"))?;
    Ok(Measured { batch, latency_ms: r.median_ms, images_per_sec: r.images_per_sec })
}

/// The chart's points: the rows with a published top-1 (the others have no y).
pub fn chart_points(rows: &[CompareRow]) -> Vec<ComparisonPoint> {
    rows.iter()
        .filter_map(|r| {
            Some(ComparisonPoint {
                label: r.name.to_string(),
                family: r.family.to_string(),
                params: r.params? as f64,
                gmacs: r.gmacs?,
                top1: r.top1()?,
                latency_ms: r.measured.map(|m| m.latency_ms / m.batch as f64),
            })
        })
        .collect()
}

/// The right panel's x-axis description for rows measured at `batch` on `threads` threads.
pub fn latency_desc(batch: usize, threads: usize) -> String {
    format!("ms per image, batch {batch}, {threads} threads, this machine (log scale)")
}

/// The chart's caption: where the accuracies come from and how many models have none.
pub fn caption(rows: &[CompareRow]) -> String {
    let missing = rows.iter().filter(|r| r.top1().is_none()).count();
    let mut c = format!("{TIMM_RESULTS_CREDIT}, default tag at default input size");
    if missing > 0 {
        c.push_str(&format!("; {missing} of {} models have no published figure and are not drawn", rows.len()));
    }
    c
}

/// Writes the comparison chart of `rows` to `path` (see [`convnet_plot::plot_comparison`]).
pub fn write_chart(path: impl AsRef<Path>, rows: &[CompareRow], latency_desc: &str) -> Result<()> {
    convnet_plot::plot_comparison(path, &chart_points(rows), latency_desc, &caption(rows))?;
    Ok(())
}

/// The comparison chart of `rows` as PNG bytes.
pub fn chart_png(rows: &[CompareRow], latency_desc: &str) -> Result<Vec<u8>> {
    Ok(convnet_plot::comparison_png(&chart_points(rows), latency_desc, &caption(rows))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_keep_quoted_commas() {
        assert_eq!(csv_fields(r#"a,"1,014.45",b"#), ["a", "1,014.45", "b"]);
        assert_eq!(csv_fields(r#""x""y",,"#), [r#"x"y"#, "", ""]);
    }

    #[test]
    fn parse_rejects_broken_rows() {
        let head = "model,img_size,top1,top1_err,top5,top5_err,param_count,crop_pct,interpolation\n";
        let ok = parse_results(&format!("{head}m.t,224,80.1,19.9,95.0,5.0,\"1,000.5\",0.9,bicubic\n")).unwrap();
        assert_eq!(ok[0].param_count_m, 1000.5);
        let e = parse_results(&format!("{head}m.t,224,eighty,19.9,95.0,5.0,1,0.9,bicubic\n")).unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        assert!(parse_results("name,size\n").is_err());
    }
}
