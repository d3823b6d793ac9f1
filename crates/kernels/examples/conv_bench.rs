//! Times each convolution kernel of the MNIST CNN on preallocated buffers
//! (no tensor layer, no allocation): GFLOP/s per pass.
//!
//! `RAYON_NUM_THREADS=2 cargo run --release -p convnet-kernels --example conv_bench`

use convnet_kernels::conv::{self, ConvAct, ConvGeometry};
use convnet_kernels::gemm::{MatMut, MatRef, sgemm};
use std::time::Instant;

fn geo(c: usize, co: usize, hw: usize) -> ConvGeometry {
    ConvGeometry::new(128, (hw, hw, c), (5, 5, co), (1, 1), (1, 1), (2, 2, 2, 2))
}

fn time(name: &str, flops: f64, reps: usize, mut f: impl FnMut()) {
    if let Ok(only) = std::env::var("BENCH_ONLY")
        && !name.contains(&only)
    {
        return;
    }
    f();
    let mut best = f64::MAX;
    let mut total = 0.0;
    for _ in 0..reps {
        let t = Instant::now();
        f();
        let e = t.elapsed().as_secs_f64();
        best = best.min(e);
        total += e;
    }
    println!(
        "{name:<28} mean {:>8.2} ms  best {:>8.2} ms  {:>7.1} GFLOP/s (best)",
        total / reps as f64 * 1e3,
        best * 1e3,
        flops / best / 1e9
    );
}

fn main() {
    let reps: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    println!("threads: {}", rayon::current_num_threads());
    for (name, g) in [("conv1 1->32 28x28", geo(1, 32, 28)), ("conv2 32->64 14x14", geo(32, 64, 14))] {
        let x: Vec<f32> = (0..g.input_len()).map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0).collect();
        let w: Vec<f32> = (0..g.weight_len()).map(|i| ((i * 5 % 11) as f32 - 5.0) / 50.0).collect();
        let b = vec![0.1; g.out_c];
        let mut y = vec![0.0; g.output_len()];
        let mut dx = vec![0.0; g.input_len()];
        let mut dw = vec![0.0; g.weight_len()];
        let flops = 2.0 * (g.batch * g.out_pixels() * g.patch_len() * g.out_c) as f64;
        time(&format!("{name} fwd+relu"), flops, reps, || {
            conv::conv2d_forward_act(&g, &x, &w, Some(&b), ConvAct::Relu, &mut y)
        });
        let dy = y.clone();
        time(&format!("{name} dx"), flops, reps, || conv::conv2d_backward_input(&g, &dy, &w, &mut dx));
        time(&format!("{name} dw"), flops, reps, || conv::conv2d_backward_weight(&g, &x, &dy, &mut dw));
        // as in training: the first layer's input needs no gradient
        let need_dx = g.in_c > 1;
        let mut db = vec![0.0; g.out_c];
        time(&format!("{name} relu-bwd train"), if need_dx { 2.0 } else { 1.0 } * flops, reps, || {
            let dx = need_dx.then_some(&mut dx[..]);
            conv::conv2d_backward(&g, &x, &w, &dy, ConvAct::Relu, Some(&y), dx, Some(&mut dw), Some(&mut db))
        });
    }
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") {
        let iters = 20_000_000u64;
        let flops = (iters * 24 * 32) as f64;
        time("fma peak 1 thread", flops, 3, || {
            // SAFETY: avx512f detected above
            std::hint::black_box(unsafe { fma_probe(iters) });
        });
        let threads = rayon::current_num_threads();
        time(&format!("fma peak {threads} threads"), flops * threads as f64, 3, || {
            rayon::broadcast(|_| {
                // SAFETY: avx512f detected above
                std::hint::black_box(unsafe { fma_probe(iters) });
            });
        });
    }
    // the MNIST CNN's dense layer: forward, input gradient, weight gradient
    for (name, m, n, k) in [
        ("dense fwd 128x3136 @ 3136x128", 128, 128, 3136),
        ("dense dx 128x128 @ 128x3136", 128, 3136, 128),
        ("dense dw 3136x128 @ 128x128", 3136, 128, 128),
    ] {
        let a = vec![0.5f32; m * k];
        let b = vec![0.25f32; k * n];
        let mut c = vec![0.0f32; m * n];
        time(name, 2.0 * (m * n * k) as f64, reps * 5, || {
            sgemm(MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n), MatMut::row_major(&mut c, m, n), false)
        });
    }
    let n = 1024;
    let a = vec![1.0f32; n * n];
    let bm = vec![1.0f32; n * n];
    let mut c = vec![0.0f32; n * n];
    time("sgemm 1024^3", 2.0 * (n * n * n) as f64, reps, || {
        sgemm(MatRef::row_major(&a, n, n), MatRef::row_major(&bm, n, n), MatMut::row_major(&mut c, n, n), false)
    });
}

/// 24 independent FMA chains: the core's FMA throughput.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_probe(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_set1_ps(0.0); 24];
    for (i, v) in acc.iter_mut().enumerate() {
        *v = _mm512_set1_ps(std::hint::black_box(i as f32));
    }
    let a = _mm512_set1_ps(0.999_999);
    let b = _mm512_set1_ps(1e-7);
    for _ in 0..std::hint::black_box(iters) {
        for v in acc.iter_mut() {
            *v = _mm512_fmadd_ps(*v, a, b);
        }
    }
    let mut s = _mm512_setzero_ps();
    for v in acc {
        s = _mm512_add_ps(s, v);
    }
    _mm512_reduce_add_ps(s)
}
