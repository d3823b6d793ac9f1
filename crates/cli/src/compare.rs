//! `convnet compare`: every registered model side by side (size, timm's published ImageNet
//! accuracy, latency measured here) as a table, JSON or CSV, and the comparison chart.
//! Thin: the rows, the figures and the chart come from `convnet_zoo::compare`.

use anyhow::{Context, Result, bail};
use clap::Args;
use convnet::nn::summary::thousands as group_digits;
use convnet_zoo::compare::{self, CompareRow, TIMM_RESULTS_CREDIT};
use indicatif::{ProgressBar, ProgressStyle};
use std::fmt::Write as _;
use std::path::PathBuf;

/// Options of `convnet compare`.
#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Shell-style patterns or substrings (`resnet*`, `lite0`); all models when absent.
    pub patterns: Vec<String>,
    /// Images per timed forward pass.
    #[arg(long, default_value_t = 1, alias = "batch")]
    pub batch_size: usize,
    /// Timed runs per model (the median is reported), after one warm-up run.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Do not measure latency (the table and chart show only published figures and sizes).
    #[arg(long)]
    pub no_bench: bool,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also write the table as CSV here.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Where the chart goes.
    #[arg(long, default_value = "models/compare.png")]
    pub png: PathBuf,
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|v| format!("{v:.digits$}")).unwrap_or_default()
}

/// `convnet zoo compare [PATTERN...]`.
pub fn compare(a: &CompareArgs) -> Result<()> {
    if a.batch_size == 0 || a.runs == 0 {
        bail!("--batch-size and --runs must be positive");
    }
    crate::limits::batch("--batch-size", a.batch_size)?;
    let mut rows = compare::compare_rows(&a.patterns);
    if rows.is_empty() {
        bail!("no model matches {:?}; `convnet models` lists all of them", a.patterns.join(" "));
    }
    // the outputs are checked before minutes of measuring, not after
    for path in std::iter::once(&a.png).chain(&a.csv) {
        convnet::nn::fsio::ensure_writable_file(path).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let threads = rayon::current_num_threads();
    if !a.no_bench {
        let bar = ProgressBar::new(rows.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("measuring {bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}")
                .context("progress bar template")?,
        );
        for row in &mut rows {
            bar.set_message(row.name);
            row.measured =
                Some(compare::measure(row, a.batch_size, a.runs).with_context(|| format!("measuring {}", row.name))?);
            bar.inc(1);
        }
        bar.finish_and_clear();
    }
    let desc = compare::latency_desc(a.batch_size, threads);
    compare::write_chart(&a.png, &rows, &desc).with_context(|| format!("writing {}", a.png.display()))?;
    if let Some(path) = &a.csv {
        convnet::nn::fsio::write_file_atomic(path, csv(&rows).as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if a.json {
        let out = serde_json::json!({
            "source": TIMM_RESULTS_CREDIT,
            "batch_size": a.batch_size,
            "threads": threads,
            "models": rows,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        eprintln!("wrote {}", a.png.display());
        return Ok(());
    }
    println!(
        "{:<30} {:<20} {:>13} {:>9} {:>11} {:>7} {:>7} {:>10} {:>9}",
        "model", "family", "params", "GMACs", "input", "top-1", "top-5", "ms/batch", "images/s"
    );
    for r in &rows {
        let size = format!("{}x{}x{}", r.input_size[0], r.input_size[1], r.input_size[2]);
        println!(
            "{:<30} {:<20} {:>13} {:>9} {:>11} {:>7} {:>7} {:>10} {:>9}",
            r.name,
            r.family,
            r.params.map(group_digits).unwrap_or_default(),
            opt(r.gmacs, 3),
            size,
            opt(r.top1(), 2),
            opt(r.top5(), 2),
            opt(r.measured.map(|m| m.latency_ms), 1),
            opt(r.measured.map(|m| m.images_per_sec), 1),
        );
    }
    println!("top-1/top-5: {TIMM_RESULTS_CREDIT}; default tag at default input size, empty where timm publishes none");
    if !a.no_bench {
        println!("latency: median of {} runs at batch {}, {threads} threads, random weights", a.runs, a.batch_size);
    }
    println!("wrote {}", a.png.display());
    if let Some(p) = &a.csv {
        println!("wrote {}", p.display());
    }
    Ok(())
}

/// The table as CSV, one header line; empty fields where a figure is unknown.
fn csv(rows: &[CompareRow]) -> String {
    let mut out = String::from("model,family,tag,params,gmacs,input_size,top1,top5,latency_ms,images_per_sec\n");
    for r in rows {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{}x{}x{},{},{},{},{}",
            r.name,
            r.family,
            r.tag,
            r.params.map(|p| p.to_string()).unwrap_or_default(),
            opt(r.gmacs, 6),
            r.input_size[0],
            r.input_size[1],
            r.input_size[2],
            opt(r.top1(), 3),
            opt(r.top5(), 3),
            opt(r.measured.map(|m| m.latency_ms), 3),
            opt(r.measured.map(|m| m.images_per_sec), 3),
        );
    }
    out
}
