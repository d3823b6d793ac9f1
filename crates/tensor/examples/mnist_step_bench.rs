//! Training-step benchmark of the classic Keras MNIST CNN built from raw tensor ops:
//! Conv2D(32, 5x5, same, relu) -> MaxPool 2 -> Conv2D(64, 5x5, same, relu) -> MaxPool 2
//! -> Dropout .25 -> Flatten -> Dense 3136->128 relu -> Dropout .5 -> Dense 128->10
//! -> softmax cross-entropy, NHWC, batch 128.
//!
//! Two measurements:
//! 1. per op: the network is cut after every op (each op's input is a fresh
//!    variable), so each forward and each backward can be timed on its own;
//! 2. whole steps: the ordinary graph, `loss.backward()` and a plain SGD update,
//!    plus inference batches; from these it extrapolates one epoch
//!    (469 training steps and 79 inference batches of 128).
//!
//! Run with `RAYON_NUM_THREADS=2 cargo run --release -p convnet-tensor --example mnist_step_bench [steps]`.

use convnet_tensor::rng::Rng;
use convnet_tensor::{Activation, Conv2dArgs, Padding2d, Pool2dArgs, Tensor};
use std::time::Instant;

const BATCH: usize = 128;
const TRAIN_STEPS_PER_EPOCH: f64 = 469.0;
const INFER_BATCHES_PER_EPOCH: f64 = 79.0;

/// One layer of the network.
enum Stage {
    Conv { w: Tensor, b: Tensor, relu: bool },
    Relu,
    Pool,
    Dropout(f32),
    Flatten,
    Dense { w: Tensor, b: Tensor, relu: bool },
    Loss,
}

impl Stage {
    fn name(&self) -> String {
        match self {
            Stage::Conv { w, relu, .. } => format!(
                "conv2d {}x{}x{}->{}{}",
                w.dims()[0],
                w.dims()[1],
                w.dims()[2],
                w.dims()[3],
                if *relu { " (+relu)" } else { "" }
            ),
            Stage::Relu => "relu".into(),
            Stage::Pool => "max_pool2d 2".into(),
            Stage::Dropout(r) => format!("dropout {r}"),
            Stage::Flatten => "flatten".into(),
            Stage::Dense { w, relu, .. } => {
                format!("linear {}->{}{}", w.dims()[0], w.dims()[1], if *relu { " (+relu)" } else { "" })
            }
            Stage::Loss => "softmax_ce_sparse".into(),
        }
    }

    fn params(&self) -> Vec<&Tensor> {
        match self {
            Stage::Conv { w, b, .. } | Stage::Dense { w, b, .. } => vec![w, b],
            _ => vec![],
        }
    }

    fn params_mut(&mut self) -> Vec<&mut Tensor> {
        match self {
            Stage::Conv { w, b, .. } | Stage::Dense { w, b, .. } => vec![w, b],
            _ => vec![],
        }
    }

    fn forward(&self, x: &Tensor, labels: &[u32], rng: Option<&mut Rng>) -> Tensor {
        let same = Conv2dArgs { padding: Padding2d::Same, ..Default::default() };
        match self {
            Stage::Conv { w, b, relu: true } => x.conv2d_act(w, Some(b), &same, Activation::Relu).unwrap(),
            Stage::Conv { w, b, relu: false } => x.conv2d(w, Some(b), &same).unwrap(),
            Stage::Relu => x.relu(),
            Stage::Pool => x.max_pool2d(&Pool2dArgs::square(2)).unwrap(),
            Stage::Dropout(r) => match rng {
                Some(rng) => x.dropout(*r, rng).unwrap(),
                None => x.clone(),
            },
            Stage::Flatten => x.flatten().unwrap(),
            Stage::Dense { w, b, relu } => {
                let act = if *relu { Activation::Relu } else { Activation::Linear };
                x.linear_act(w, Some(b), act).unwrap()
            }
            Stage::Loss => x.softmax_cross_entropy_sparse(labels).unwrap(),
        }
    }
}

fn uniform(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.uniform_range(-scale, scale)).collect()
}

fn network(rng: &mut Rng) -> Vec<Stage> {
    let mut param = |dims: &[usize], fan_in: usize| {
        let n = dims.iter().product();
        let s = (6.0 / fan_in as f32).sqrt();
        Tensor::from_vec(uniform(rng, n, s), dims).unwrap().var()
    };
    let mut layers = vec![
        Stage::Conv { w: param(&[5, 5, 1, 32], 25), b: param(&[32], 1_000_000), relu: true },
        Stage::Pool,
        Stage::Conv { w: param(&[5, 5, 32, 64], 800), b: param(&[64], 1_000_000), relu: true },
        Stage::Pool,
        Stage::Dropout(0.25),
        Stage::Flatten,
        Stage::Dense { w: param(&[3136, 128], 3136), b: param(&[128], 1_000_000), relu: true },
        Stage::Dropout(0.5),
        Stage::Dense { w: param(&[128, 10], 128), b: param(&[10], 1_000_000), relu: false },
        Stage::Loss,
    ];
    if std::env::var("BENCH_UNFUSED").is_ok_and(|v| !v.is_empty()) {
        // conv/linear then a separate relu op
        let mut out = Vec::new();
        for l in layers.drain(..) {
            match l {
                Stage::Conv { w, b, .. } => {
                    out.push(Stage::Conv { w, b, relu: false });
                    out.push(Stage::Relu);
                }
                Stage::Dense { w, b, relu: true } => {
                    out.push(Stage::Dense { w, b, relu: false });
                    out.push(Stage::Relu);
                }
                l => out.push(l),
            }
        }
        layers = out;
    }
    layers
}

fn batch(rng: &mut Rng) -> (Tensor, Vec<u32>) {
    let x: Vec<f32> = (0..BATCH * 28 * 28).map(|_| if rng.uniform() < 0.2 { 0.0 } else { rng.uniform() }).collect();
    let labels = (0..BATCH).map(|_| rng.below(10) as u32).collect();
    (Tensor::from_vec(x, [BATCH, 28, 28, 1]).unwrap(), labels)
}

fn sgd(layers: &mut [Stage], grads: &convnet_tensor::Gradients, lr: f32) {
    for l in layers.iter_mut() {
        for p in l.params_mut() {
            let g = grads.get(p).expect("every parameter gets a gradient").clone();
            for (v, d) in p.data_mut().iter_mut().zip(g.data()) {
                *v -= lr * d;
            }
        }
    }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// CPU time of this process (all threads) in ms, from /proc (Linux; 0 elsewhere).
/// On a machine shared with other work, CPU time per step divided by the
/// thread count estimates the step time an idle machine would give.
fn cpu_ms() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // fields after the parenthesised command name: utime and stime are the 12th and 13th
    let Some(rest) = stat.rsplit(')').next() else { return 0.0 };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 =
        f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0) + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks * 10.0 // USER_HZ is 100 on Linux
}

fn main() {
    let steps: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(20);
    let warmup = 3;
    let mut rng = Rng::new(7);
    let mut layers = network(&mut rng);
    let (x, labels) = batch(&mut rng);
    println!("threads: {}  batch: {BATCH}  steps: {steps} (+{warmup} warm-up)", rayon::current_num_threads());

    // 1. per op: every op's input is a fresh variable, so forward and backward are separable
    let n = layers.len();
    let mut fwd = vec![0.0f64; n];
    let mut bwd = vec![0.0f64; n];
    for step in 0..steps + warmup {
        let mut drop_rng = Rng::new(step as u64);
        let mut inputs = Vec::with_capacity(n);
        let mut outputs = Vec::with_capacity(n);
        let mut cur = x.clone();
        for (i, l) in layers.iter().enumerate() {
            let t = Instant::now();
            let y = l.forward(&cur, &labels, Some(&mut drop_rng));
            if step >= warmup {
                fwd[i] += ms(t);
            }
            inputs.push(cur);
            cur = y.detach().var();
            outputs.push(y);
        }
        let mut g = Tensor::scalar(1.0);
        for i in (0..n).rev() {
            let t = Instant::now();
            let grads = outputs[i].backward_with(g.clone()).unwrap();
            if step >= warmup {
                bwd[i] += ms(t);
            }
            if i > 0 {
                g = grads.get(&inputs[i]).expect("input gradient").clone();
            }
        }
    }
    println!("\nper op (ms per step, each op timed on its own)");
    println!("{:<28} {:>9} {:>9} {:>9}", "op", "forward", "backward", "total");
    let (mut tf, mut tb) = (0.0, 0.0);
    for (i, l) in layers.iter().enumerate() {
        let (f, b) = (fwd[i] / steps as f64, bwd[i] / steps as f64);
        tf += f;
        tb += b;
        println!("{:<28} {:>9.2} {:>9.2} {:>9.2}", l.name(), f, b, f + b);
    }
    println!("{:<28} {:>9.2} {:>9.2} {:>9.2}", "sum", tf, tb, tf + tb);

    // 2. whole training steps through the ordinary graph
    let (mut t_fwd, mut t_bwd, mut t_upd) = (0.0, 0.0, 0.0);
    let mut cpu_train = 0.0;
    let mut last_loss = 0.0;
    for step in 0..steps + warmup {
        let mut drop_rng = Rng::new(1000 + step as u64);
        if step == warmup {
            cpu_train = cpu_ms();
        }
        let t = Instant::now();
        let mut cur = x.clone();
        for l in &layers {
            cur = l.forward(&cur, &labels, Some(&mut drop_rng));
        }
        let f = ms(t);
        let t = Instant::now();
        let grads = cur.backward().unwrap();
        let b = ms(t);
        last_loss = cur.item().unwrap();
        drop(cur);
        let t = Instant::now();
        sgd(&mut layers, &grads, 0.01);
        drop(grads);
        let u = ms(t);
        if step >= warmup {
            t_fwd += f;
            t_bwd += b;
            t_upd += u;
        }
    }
    let cpu_train = (cpu_ms() - cpu_train) / steps as f64;
    let (t_fwd, t_bwd, t_upd) = (t_fwd / steps as f64, t_bwd / steps as f64, t_upd / steps as f64);
    let step_ms = t_fwd + t_bwd + t_upd;

    // inference: parameters as constants, no dropout, no graph
    let consts: Vec<Vec<Tensor>> = layers.iter().map(|l| l.params().iter().map(|p| p.detach()).collect()).collect();
    let mut t_inf = 0.0;
    let mut cpu_inf = 0.0;
    for step in 0..steps + warmup {
        if step == warmup {
            cpu_inf = cpu_ms();
        }
        let t = Instant::now();
        let mut cur = x.clone();
        for (l, p) in layers.iter().zip(&consts) {
            let l = match l {
                Stage::Conv { relu, .. } => Stage::Conv { w: p[0].clone(), b: p[1].clone(), relu: *relu },
                Stage::Dense { relu, .. } => Stage::Dense { w: p[0].clone(), b: p[1].clone(), relu: *relu },
                Stage::Loss => continue,
                Stage::Relu => Stage::Relu,
                Stage::Pool => Stage::Pool,
                Stage::Dropout(_) | Stage::Flatten => Stage::Flatten,
            };
            cur = l.forward(&cur, &labels, None);
        }
        std::hint::black_box(cur.data()[0]);
        if step >= warmup {
            t_inf += ms(t);
        }
    }
    let t_inf = t_inf / steps as f64;
    let cpu_inf = (cpu_ms() - cpu_inf) / steps as f64;
    let threads = rayon::current_num_threads() as f64;
    let cpu_epoch = (TRAIN_STEPS_PER_EPOCH * cpu_train + INFER_BATCHES_PER_EPOCH * cpu_inf) / 1e3 / threads;
    let epoch = (TRAIN_STEPS_PER_EPOCH * step_ms + INFER_BATCHES_PER_EPOCH * t_inf) / 1e3;
    println!(
        "\nwhole steps (ms): forward {t_fwd:.2}  backward {t_bwd:.2}  update {t_upd:.2}  step {step_ms:.2}  (loss {last_loss:.4})"
    );
    println!("inference batch (ms): {t_inf:.2}");
    println!("steps/s: {:.2}", 1e3 / step_ms);
    println!("epoch estimate (469 steps + 79 inference batches): {epoch:.2} s");
    println!(
        "cpu time (ms): {cpu_train:.1} per step, {cpu_inf:.1} per inference batch; epoch at full use of {threads} threads: {cpu_epoch:.2} s"
    );
}
