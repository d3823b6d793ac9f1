//! Times the depthwise convolutions of EfficientNet-B0 (224x224 input) on
//! preallocated buffers, forward with each fused activation and the backward
//! passes: milliseconds per whole network's depthwise layers, and GFLOP/s.
//!
//! `RAYON_NUM_THREADS=2 cargo run --release -p convnet-kernels --example depthwise_bench -- [batch] [reps]`

use convnet_kernels::conv::{self, ConvAct, ConvGeometry};
use std::time::Instant;

/// `(input size, channels, kernel, stride, repeats)` of B0's depthwise layers.
const LAYERS: [(usize, usize, usize, usize, usize); 12] = [
    (112, 32, 3, 1, 1),
    (112, 96, 3, 2, 1),
    (56, 144, 3, 1, 1),
    (56, 144, 5, 2, 1),
    (28, 240, 5, 1, 1),
    (28, 240, 3, 2, 1),
    (14, 480, 3, 1, 2),
    (14, 480, 5, 1, 1),
    (14, 672, 5, 1, 2),
    (14, 672, 5, 2, 1),
    (7, 1152, 5, 1, 3),
    (7, 1152, 3, 1, 1),
];

/// A layer's geometry, repeats, input, weights and bias.
type Layer = (ConvGeometry, usize, Vec<f32>, Vec<f32>, Vec<f32>);

fn geo(batch: usize, hw: usize, c: usize, k: usize, s: usize) -> ConvGeometry {
    let p = ((s - 1) + (k - 1)) / 2;
    ConvGeometry::new(batch, (hw, hw, c), (k, k, c), (s, s), (1, 1), (p, p, p, p)).with_groups(c)
}

fn main() {
    // run on a pool worker, as a model's forward should: calls from outside
    // the pool hand every parallel loop over with a sleep and a wake-up
    rayon::ThreadPoolBuilder::new().build().unwrap().install(run);
}

fn run() {
    let batch: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let reps: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(20);
    println!("threads: {}, batch {batch}", rayon::current_num_threads());
    // BENCH_LAYER=i times layer i alone
    let only: Option<usize> = std::env::var("BENCH_LAYER").ok().and_then(|v| v.parse().ok());
    // BENCH_GEO=size,channels,kernel,stride,repeats times that layer instead
    let custom: Vec<(usize, usize, usize, usize, usize)> = std::env::var("BENCH_GEO")
        .ok()
        .and_then(|v| {
            let p: Vec<usize> = v.split(',').filter_map(|t| t.parse().ok()).collect();
            (p.len() == 5).then(|| vec![(p[0], p[1], p[2], p[3], p[4])])
        })
        .unwrap_or_default();
    let table: Vec<_> = if custom.is_empty() { LAYERS.to_vec() } else { custom };
    let layers: Vec<Layer> = table
        .iter()
        .enumerate()
        .filter(|(i, _)| only.is_none_or(|o| o == *i))
        .map(|(_, l)| l)
        .map(|&(hw, c, k, s, r)| {
            let g = geo(batch, hw, c, k, s);
            let x = (0..g.input_len()).map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0).collect();
            let w = (0..g.weight_len()).map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0).collect();
            let b = (0..c).map(|i| i as f32 / c as f32).collect();
            (g, r, x, w, b)
        })
        .collect();
    let macs: usize = layers.iter().map(|(g, r, ..)| r * g.output_len() * g.kernel_h * g.kernel_w).sum();
    let time = |name: &str, f: &mut dyn FnMut()| {
        f();
        let mut best = f64::MAX;
        for _ in 0..reps {
            let t = Instant::now();
            f();
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!("{name:<24} best {:>8.3} ms  {:>6.1} GFLOP/s", best * 1e3, 2.0 * macs as f64 / best / 1e9);
    };
    let mut outs: Vec<Vec<f32>> = layers.iter().map(|(g, ..)| vec![0.0; g.output_len()]).collect();
    for act in [ConvAct::Identity, ConvAct::Relu6, ConvAct::Silu] {
        time(&format!("forward {act:?}"), &mut || {
            for ((g, r, x, w, b), y) in layers.iter().zip(outs.iter_mut()) {
                for _ in 0..*r {
                    conv::conv2d_forward_act(g, x, w, Some(b), act, y);
                }
            }
        });
    }
    let mut dxs: Vec<Vec<f32>> = layers.iter().map(|(g, ..)| vec![0.0; g.input_len()]).collect();
    let mut dws: Vec<Vec<f32>> = layers.iter().map(|(g, ..)| vec![0.0; g.weight_len()]).collect();
    time("backward input", &mut || {
        for (((g, r, _, w, _), dy), dx) in layers.iter().zip(&outs).zip(dxs.iter_mut()) {
            for _ in 0..*r {
                conv::conv2d_backward_input(g, dy, w, dx);
            }
        }
    });
    time("backward weight", &mut || {
        for (((g, r, x, ..), dy), dw) in layers.iter().zip(&outs).zip(dws.iter_mut()) {
            for _ in 0..*r {
                conv::conv2d_backward_weight(g, x, dy, dw);
            }
        }
    });
}
