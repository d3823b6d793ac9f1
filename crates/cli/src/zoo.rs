//! The model-zoo commands: `convnet zoo models|summary|forward`, `convnet images classify`,
//! `convnet bench infer|train` (also spelled `convnet models`, `summary`, `forward`,
//! `classify`). Thin wrappers over `convnet-zoo`. Tensors on the command line are NCHW, as
//! timm takes them; the engine runs NHWC inside.

use crate::limits;
use crate::report::{BenchRow, Classification, Phase, bench_json, print_json};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use convnet::nn::summary::thousands as group_digits;
use convnet_zoo::finetune::Sidecar;
use convnet_zoo::npy::{nchw_to_nhwc, nhwc_to_nchw, read_npy, write_npy};
use convnet_zoo::transforms::EvalTransform;
use convnet_zoo::{LoadOptions, Model, ZooOpts, create_model, list_models};
use serde_json::json;
use std::path::PathBuf;

/// `convnet zoo ...`.
#[derive(Subcommand)]
pub enum ZooCmd {
    /// List the model zoo: name, parameters, GMACs, input size (`convnet zoo models 'resnet*'`).
    Models(ModelsArgs),
    /// Layer table of a zoo model: output shapes (NCHW) and every parameter.
    Summary(SummaryArgs),
    /// Run a zoo model on an NCHW float32 .npy tensor and write the logits as .npy.
    Forward(ForwardArgs),
    /// Every zoo model side by side: size, timm's published accuracy, latency here; and the chart.
    Compare(crate::compare::CompareArgs),
}

/// Runs a `convnet zoo` command.
pub fn zoo(cmd: &ZooCmd) -> Result<()> {
    match cmd {
        ZooCmd::Models(a) => models(a),
        ZooCmd::Summary(a) => summary(a),
        ZooCmd::Forward(a) => forward(a),
        ZooCmd::Compare(a) => crate::compare::compare(a),
    }
}

/// Options of `convnet models`.
#[derive(Args, Debug)]
pub struct ModelsArgs {
    /// Shell-style pattern (`resnet*`, `*lite*`) or a substring; all models when absent.
    pub pattern: Option<String>,
    /// List every pretrained tag (`arch.tag`) instead of one line per architecture.
    #[arg(long)]
    pub tags: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `convnet models [pattern]`: name, parameters, GMACs, input size, default tag.
pub fn models(args: &ModelsArgs) -> Result<()> {
    let entries = list_models(args.pattern.as_deref().unwrap_or(""));
    // no match is an error in both modes, so that scripts see the same exit code as people
    if entries.is_empty() {
        let p = args.pattern.as_deref().unwrap_or("");
        let close = convnet_zoo::registry::suggestions(p.trim_matches('*'));
        if close.is_empty() {
            bail!("no model matches {p:?}; `convnet models` lists all of them");
        }
        bail!("no model matches {p:?}; did you mean {}?", close.join(", "));
    }
    if args.json {
        let rows: Vec<_> = entries
            .iter()
            .map(|e| {
                let c = e.default_cfg();
                let s = e.stats();
                json!({"name": e.name, "family": e.family(), "params": s.map(|s| s.params), "gmacs": s.map(|s| s.gmacs),
                       "input_size": c.input_size, "default_tag": c.tag, "tags": e.cfgs.iter().map(|c| c.tag).collect::<Vec<_>>()})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!("{:<34} {:>13} {:>9} {:>13}  family", "model", "params", "GMACs", "input");
    for e in entries {
        let c = e.default_cfg();
        let size = format!("{}x{}x{}", c.input_size[0], c.input_size[1], c.input_size[2]);
        let names = if args.tags { e.tagged_names() } else { vec![e.name.to_string()] };
        for n in names {
            let (params, gmacs) = match e.stats() {
                Some(s) => (group_digits(s.params), format!("{:.3}", s.gmacs)),
                None => ("?".to_string(), "?".to_string()),
            };
            println!("{:<34} {:>13} {:>9} {:>13}  {}", n, params, gmacs, size, e.family());
        }
    }
    Ok(())
}

/// Options of `convnet summary`.
#[derive(Args, Debug)]
pub struct SummaryArgs {
    /// Model name (`resnet50`, `resnet50.a1_in1k`).
    pub model: String,
    /// Input size `C,H,W` (default: the model's pretrained input size).
    #[arg(long)]
    pub input_size: Option<String>,
    /// Classes of the classifier.
    #[arg(long)]
    pub num_classes: Option<usize>,
    /// Print one JSON object (`model`, `rows` of `layer`, `shape` (NCHW), `params`, the totals
    /// and `notes`) instead of the table.
    #[arg(long)]
    pub json: bool,
}

fn parse_list(s: &str, what: &str) -> Result<Vec<usize>> {
    s.split(',')
        .map(|v| v.trim().parse::<usize>().with_context(|| format!("{what}: {v:?} is not a positive integer")))
        .collect()
}

fn input_size(model: &Model, arg: Option<&str>) -> Result<[usize; 3]> {
    let size = match arg {
        None => return Ok(model.pretrained_cfg().input_size),
        Some(s) => match parse_list(s, "--input-size")?[..] {
            [c, h, w] => [c, h, w],
            [h, w] => [model.in_chans(), h, w],
            [s] => [model.in_chans(), s, s],
            _ => bail!("--input-size takes C,H,W (or H,W or S), got {s:?}"),
        },
    };
    limits::input_size("--input-size", size)
}

/// The most classes a classifier may have (ImageNet-22k has 21843): `--num-classes` sizes a
/// weight matrix, and a mistyped count must not allocate gigabytes.
const MAX_CLASSES: usize = 1 << 17;

fn opts(num_classes: Option<usize>) -> Result<ZooOpts> {
    if let Some(n) = num_classes {
        limits::positive("--num-classes", n, MAX_CLASSES)?;
    }
    Ok(ZooOpts { num_classes, ..ZooOpts::default() })
}

/// `convnet summary MODEL`: the layer table.
pub fn summary(args: &SummaryArgs) -> Result<()> {
    let model = create_model(&args.model, opts(args.num_classes)?)?;
    let size = input_size(&model, args.input_size.as_deref())?;
    let table = model.summary(size)?;
    if args.json {
        let rows: Vec<_> =
            table.rows.iter().map(|r| json!({"layer": r.layer, "shape": r.shape, "params": r.params})).collect();
        return print_json(&json!({
            "model": table.name,
            "input_size": size,
            "rows": rows,
            "total_params": table.trainable + table.non_trainable,
            "trainable_params": table.trainable,
            "non_trainable_params": table.non_trainable,
            "notes": table.notes,
        }));
    }
    println!("{table}");
    Ok(())
}

/// Options of `convnet classify`.
#[derive(Args, Debug)]
pub struct ClassifyArgs {
    /// Model name.
    #[arg(long)]
    pub model: String,
    /// timm `.safetensors` checkpoint.
    #[arg(long)]
    pub weights: PathBuf,
    /// Classes to print per image, most likely first.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..))]
    pub top: u16,
    /// Print the classifications as JSON: `[{"file", "top": [{"index", "label", "probability"}]}]`.
    #[arg(long)]
    pub json: bool,
    /// Run the training-time branches instead of folding them into single convs
    /// (RepVGG; the logits agree within 1e-4, the folded model is faster).
    #[arg(long)]
    pub no_reparam: bool,
    /// PNG or JPEG images.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
}

/// `convnet classify`: top-k classes of each image, with timm's eval transform: ImageNet's,
/// or those of a `train images` checkpoint (its `.json` sidecar).
pub fn classify(args: &ClassifyArgs) -> Result<()> {
    let sidecar = Sidecar::read_for(&args.weights)?;
    let (mut model, classes, transform) = match &sidecar {
        Some(s) => {
            if s.model != args.model {
                bail!("{} was trained as {}, not {}", args.weights.display(), s.model, args.model);
            }
            let mut model = create_model(&args.model, ZooOpts::new().with_num_classes(s.num_classes))?;
            let strict = LoadOptions { strict: true, classifier: None, first_conv: None };
            model
                .load_checkpoint(&args.weights, &strict)
                .with_context(|| format!("loading {} from {}", args.model, args.weights.display()))?;
            let t = EvalTransform(convnet::data::EvalTransform::new(&s.data_config));
            (model, s.classes.clone(), t)
        }
        None => {
            let mut model = create_model(&args.model, ZooOpts::default())?;
            let report = model
                .load_pretrained(&args.weights)
                .with_context(|| format!("loading {} from {}", args.model, args.weights.display()))?;
            if report.dropped_classifier {
                bail!(
                    "{}: its classifier has another class count than ImageNet's 1000 and there is no sidecar {} \
                     naming its classes (checkpoints from `convnet train images` have one)",
                    args.weights.display(),
                    Sidecar::path_for(&args.weights).display()
                );
            }
            let labels = convnet_zoo::labels::imagenet_classes().iter().map(|c| c.label.to_string()).collect();
            let t = EvalTransform::from_cfg(model.pretrained_cfg());
            (model, labels, t)
        }
    };
    if model.in_chans() != 3 {
        bail!("{} takes {} input channels; classify reads RGB images", args.model, model.in_chans());
    }
    if !args.no_reparam {
        model.reparameterize()?;
    }
    let mut out = Vec::new();
    for path in &args.images {
        let x = transform.load(path)?;
        let probs = model.forward(&x)?.softmax()?;
        let p = probs.data();
        let label = |i: usize| if p.len() == classes.len() { classes[i].clone() } else { String::new() };
        let c = Classification::new(path, p, label, usize::from(args.top));
        if !args.json {
            println!("{}", c.file);
            for (rank, s) in c.top.iter().enumerate() {
                println!("  {}. {:>4}  {:<40} {:>6.2}%", rank + 1, s.index, s.label, s.probability * 100.0);
            }
        }
        out.push(c);
    }
    if args.json {
        print_json(&out)?;
    }
    Ok(())
}

/// Options of `convnet forward`.
#[derive(Args, Debug)]
pub struct ForwardArgs {
    /// Model name.
    #[arg(long)]
    pub model: String,
    /// timm `.safetensors` checkpoint (default: random initialisation).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Input `.npy`: float32 NCHW `[n, c, h, w]`, as timm takes it.
    #[arg(long)]
    pub input: PathBuf,
    /// The `.npy` file to write: logits `[n, classes]` (NCHW for --features).
    #[arg(long, alias = "output")]
    pub out: PathBuf,
    /// Write the unpooled features (`forward_features`) instead of logits.
    #[arg(long, conflicts_with = "pre_logits")]
    pub features: bool,
    /// Write the pooled features (`forward_head(pre_logits=True)`).
    #[arg(long)]
    pub pre_logits: bool,
    /// Classes of the classifier.
    #[arg(long)]
    pub num_classes: Option<usize>,
    /// Load the checkpoint even if some keys are missing or unexpected.
    #[arg(long)]
    pub non_strict: bool,
}

/// `convnet forward`: runs a model on an NCHW `.npy` tensor. A `train images` checkpoint's
/// sidecar gives the class count.
pub fn forward(args: &ForwardArgs) -> Result<()> {
    let sidecar = match &args.weights {
        Some(w) => Sidecar::read_for(w)?,
        None => None,
    };
    let num_classes = args.num_classes.or(sidecar.as_ref().map(|s| s.num_classes));
    let mut model = create_model(&args.model, opts(num_classes)?)?;
    if let Some(w) = &args.weights {
        let o = LoadOptions {
            strict: !args.non_strict,
            classifier: Some(model.pretrained_cfg().classifier.to_string()),
            first_conv: Some(model.pretrained_cfg().first_conv.to_string()),
        };
        let r = model.load_checkpoint(w, &o).with_context(|| format!("loading {}", w.display()))?;
        if r.dropped_classifier {
            // strict means strict: a random head is only for who asked for a new class count
            let classes = model.num_classes();
            if args.num_classes.is_none() {
                bail!(
                    "{}: its classifier `{}` has another class count than {}'s {classes}; pass --num-classes with \
                     the checkpoint's count, or a new count to re-initialise the classifier at random",
                    w.display(),
                    model.pretrained_cfg().classifier,
                    args.model
                );
            }
            eprintln!(
                "note: the checkpoint's classifier has another class count; re-initialised at random for \
                 --num-classes {classes}: {}",
                r.missing.join(", ")
            );
        } else if !r.missing.is_empty() || !r.unexpected.is_empty() {
            eprintln!(
                "note: --non-strict: {} missing keys left at random initialisation ({}) and {} unexpected keys ignored",
                r.missing.len(),
                r.missing.join(", "),
                r.unexpected.len()
            );
        }
    }
    let a = read_npy(&args.input)?;
    let [n, c, h, w] = a.shape[..] else {
        bail!("{}: expected an NCHW array [n, c, h, w], got shape {:?}", args.input.display(), a.shape);
    };
    let what = args.input.display().to_string();
    limits::batch(&format!("{what} (batch axis)"), n)?;
    limits::input_size(&what, [c, h, w])?;
    if c != model.in_chans() {
        bail!("{what}: {c} channels, but {} takes {}", args.model, model.in_chans());
    }
    // fail now, not after a long forward pass
    convnet::nn::fsio::ensure_writable_file(&args.out)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    let x = convnet_zoo::Tensor::from_vec(nchw_to_nhwc(&a.data, [n, c, h, w]), [n, h, w, c])?;
    let y = if args.features {
        let f = model.forward_features(&x)?;
        let [n, h, w, c] = f.dims()[..] else { bail!("unexpected feature shape {:?}", f.dims()) };
        write_npy(&args.out, &[n, c, h, w], &nhwc_to_nchw(f.data(), [n, h, w, c]))?;
        eprintln!("wrote {} [{n}, {c}, {h}, {w}]", args.out.display());
        return Ok(());
    } else if args.pre_logits {
        model.forward_head(&model.forward_features(&x)?, true)?
    } else {
        model.forward(&x)?
    };
    write_npy(&args.out, y.dims(), y.data())?;
    eprintln!("wrote {} {:?}", args.out.display(), y.dims());
    Ok(())
}

/// Options of `convnet bench infer`.
#[derive(Args, Debug)]
pub struct InferBenchArgs {
    /// Model name.
    pub model: String,
    /// Batch sizes to time, comma-separated.
    #[arg(long, default_value = "1,16", alias = "batch")]
    pub batch_size: String,
    /// Timed runs per batch size (the median is reported).
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// Untimed warm-up runs per batch size.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Input size `C,H,W` (default: the model's pretrained input size).
    #[arg(long)]
    pub input_size: Option<String>,
    /// Print one JSON object (the benchmark shape: `rows` of `batch_size`, `median_ms`,
    /// `examples_per_sec`, `gflops`) instead of a table; with `--layers` it also holds
    /// `peak_gflops` and per-batch `profiles`.
    #[arg(long)]
    pub json: bool,
    /// Time the training-time branches instead of the folded inference convs (RepVGG).
    #[arg(long)]
    pub no_reparam: bool,
    /// Also print each convolution's and matrix product's time, GFLOP/s and share of
    /// the machine's FMA peak (measured first).
    #[arg(long)]
    pub layers: bool,
}

/// `convnet bench infer MODEL --batch-size 1,16`: median milliseconds per batch, images per
/// second and GFLOP/s (2 x multiply-accumulates) of eval-mode inference.
pub fn bench_infer(args: &InferBenchArgs) -> Result<()> {
    let mut model = create_model(&args.model, ZooOpts::default())?;
    let folded = if args.no_reparam { 0 } else { model.reparameterize()? };
    let size = input_size(&model, args.input_size.as_deref())?;
    let batches = parse_list(&args.batch_size, "--batch-size")?;
    for &b in &batches {
        limits::batch("--batch-size", b)?;
    }
    let rows = convnet_zoo::bench::bench_inference(&model, size, &batches, args.runs, args.warmup)?;
    let macs = convnet_zoo::bench::count_macs(&model, size)?;
    if args.json {
        let shared: Vec<BenchRow> = rows
            .iter()
            .map(|r| BenchRow {
                phase: Phase::Inference,
                batch_size: r.batch,
                median_ms: r.median_ms,
                examples_per_sec: r.images_per_sec,
                gflops: Some(r.gflops),
            })
            .collect();
        let mut extra = json!({
            "input_size": size,
            "gmacs_per_image": macs as f64 / 1e9,
            "runs": args.runs.max(1),
            "warmup": args.warmup,
            "reparameterized_blocks": folded,
        });
        if args.layers {
            let peak = convnet::tensor::profile::peak_gflops(300);
            let profiles = convnet_zoo::bench::profile_layers(&model, size, &batches, args.runs, args.warmup)?;
            let layers: Vec<_> = profiles
                .iter()
                .map(|p| {
                    let rows: Vec<_> = p
                        .layers
                        .iter()
                        .map(|l| json!({"kernel": l.kernel, "layer": l.what, "flops": l.flops, "ms": l.ms}))
                        .collect();
                    json!({"batch_size": p.batch, "total_ms": p.total_ms, "layers": rows})
                })
                .collect();
            extra["peak_gflops"] = json!(peak);
            extra["profiles"] = json!(layers);
        }
        return print_json(&bench_json("infer", &model.name(), &shared, extra));
    }
    let [c, h, w] = size;
    println!(
        "{} at {c}x{h}x{w}, {} threads, {:.3} GMACs/image, median of {} runs{}",
        model.name(),
        rayon::current_num_threads(),
        macs as f64 / 1e9,
        args.runs.max(1),
        if folded > 0 { format!(", {folded} blocks re-parameterised") } else { String::new() }
    );
    println!("{:>6} {:>12} {:>12} {:>10}", "batch", "ms/batch", "images/s", "GFLOP/s");
    for r in rows {
        println!("{:>6} {:>12.2} {:>12.1} {:>10.1}", r.batch, r.median_ms, r.images_per_sec, r.gflops);
    }
    if args.layers {
        let peak = convnet::tensor::profile::peak_gflops(300);
        let profiles = convnet_zoo::bench::profile_layers(&model, size, &batches, args.runs, args.warmup)?;
        print_layers(peak, &profiles);
    }
    Ok(())
}

/// The `--layers` tables: one row per kernel call, then the time per kernel and the rest.
fn print_layers(peak: f64, profiles: &[convnet_zoo::bench::LayerProfile]) {
    let pct = |gf: f64| 100.0 * gf / peak;
    println!();
    println!("measured FMA peak: {peak:.1} GFLOP/s on {} threads", rayon::current_num_threads());
    for p in profiles {
        println!();
        println!("batch {}: {:.2} ms per pass while profiled", p.batch, p.total_ms);
        println!(
            "{:>4} {:<10} {:<46} {:>9} {:>9} {:>7} {:>7}",
            "#", "kernel", "layer", "ms", "GFLOP/s", "% peak", "% time"
        );
        let gflops = |flops: u64, ms: f64| flops as f64 / (ms * 1e6).max(f64::MIN_POSITIVE);
        for (i, l) in p.layers.iter().enumerate() {
            let g = gflops(l.flops, l.ms);
            println!(
                "{i:>4} {:<10} {:<46} {:>9.3} {:>9.1} {:>6.1}% {:>6.1}%",
                l.kernel,
                l.what,
                l.ms,
                g,
                pct(g),
                100.0 * l.ms / p.total_ms
            );
        }
        let mut kernels: Vec<&str> = p.layers.iter().map(|l| l.kernel).collect();
        kernels.sort_unstable();
        kernels.dedup();
        println!("{:<10} {:>6} {:>9} {:>9} {:>7} {:>7}", "kernel", "calls", "ms", "GFLOP/s", "% peak", "% time");
        let mut counted = 0.0;
        for k in kernels {
            let of: Vec<_> = p.layers.iter().filter(|l| l.kernel == k).collect();
            let ms: f64 = of.iter().map(|l| l.ms).sum();
            let g = gflops(of.iter().map(|l| l.flops).sum(), ms);
            counted += ms;
            println!("{k:<10} {:>6} {ms:>9.3} {g:>9.1} {:>6.1}% {:>6.1}%", of.len(), pct(g), 100.0 * ms / p.total_ms);
        }
        let rest = (p.total_ms - counted).max(0.0);
        println!("{:<10} {:>6} {rest:>9.3} {:>9} {:>7} {:>6.1}%", "the rest", "", "", "", 100.0 * rest / p.total_ms);
    }
}

/// Options of `convnet bench train`.
#[derive(Args, Debug)]
pub struct TrainBenchArgs {
    /// Model name.
    pub model: String,
    /// Images per training step.
    #[arg(long, default_value_t = 32, alias = "batch")]
    pub batch_size: usize,
    /// Image side in pixels (default: the model's pretrained input size).
    #[arg(long)]
    pub img_size: Option<usize>,
    /// Timed steps (the median is reported).
    #[arg(long, default_value_t = 4)]
    pub steps: usize,
    /// Untimed warm-up steps.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Classes of the classifier (default: the model's, usually 1000).
    #[arg(long)]
    pub num_classes: Option<usize>,
    /// Print one JSON object (the benchmark shape, with the step times apart) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `convnet bench train MODEL --batch-size 32 --img-size 224`: images per second of full
/// training steps (train-mode forward, label-smoothed cross-entropy, backward, AdamW) on
/// random data, and peak memory.
pub fn bench_train(args: &TrainBenchArgs) -> Result<()> {
    limits::batch("--batch-size", args.batch_size)?;
    let mut model = create_model(&args.model, opts(args.num_classes)?)?;
    let size = match args.img_size {
        None => model.pretrained_cfg().input_size,
        Some(s) => limits::input_size("--img-size", [model.in_chans(), s, s])?,
    };
    let threads = rayon::current_num_threads();
    if !args.json {
        eprintln!("timing {} step(s) after {} warm-up step(s)...", args.steps, args.warmup);
    }
    let r = convnet_zoo::bench::train_step_bench(&mut model, args.batch_size, size, args.steps, args.warmup)?;
    let peak = crate::bench::peak_rss_bytes();
    if args.json {
        let row = BenchRow {
            phase: Phase::Training,
            batch_size: r.batch,
            median_ms: 1e3 * r.median_s,
            examples_per_sec: r.images_per_s,
            gflops: None,
        };
        let ms = |s: f64| 1e3 * s;
        let extra = json!({
            "input_size": r.size,
            "num_classes": r.num_classes,
            "trainable_params": r.trainable_params,
            "steps": r.step_s.len(),
            "warmup": args.warmup,
            "step_ms": r.step_s.iter().map(|&s| ms(s)).collect::<Vec<_>>(),
            "min_ms": ms(r.min_s),
            "max_ms": ms(r.max_s),
            "gradients_ms": ms(r.median_gradients_s),
            "update_ms": ms(r.median_update_s),
            "last_loss": r.last_loss,
        });
        return print_json(&bench_json("train", &model.name(), &[row], extra));
    }
    let [c, h, w] = r.size;
    println!(
        "{} training at {c}x{h}x{w}, {threads} threads, {} trainable parameters, AdamW, label smoothing 0.1, median of {} steps",
        model.name(),
        group_digits(r.trainable_params),
        r.step_s.len()
    );
    println!(
        "{:>6} {:>10} {:>10} {:>10} {:>10} {:>12} {:>10}",
        "batch", "s/step", "min s", "max s", "images/s", "fwd+bwd s", "update s"
    );
    println!(
        "{:>6} {:>10.3} {:>10.3} {:>10.3} {:>10.2} {:>12.3} {:>10.3}",
        r.batch, r.median_s, r.min_s, r.max_s, r.images_per_s, r.median_gradients_s, r.median_update_s
    );
    if let Some(p) = peak {
        println!("peak memory {:.0} MB", p as f64 / 1e6);
    }
    Ok(())
}
