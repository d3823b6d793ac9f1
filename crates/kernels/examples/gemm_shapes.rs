//! GFLOP/s of `sgemm_serial` on the pointwise-convolution shapes of ResNet-50
//! and EfficientNet-B0 (row-major `[m, k] @ [k, n]`), single thread.
//!
//! `cargo run --release -p convnet-kernels --example gemm_shapes -- [reps]`

use convnet_kernels::gemm::{MatMut, MatRef, sgemm_serial};
use std::time::Instant;

fn main() {
    let reps: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let shapes: Vec<(usize, usize, usize)> = if let Ok(list) = std::env::var("SHAPES") {
        list.split(';')
            .map(|t| {
                let v: Vec<usize> = t.split(',').map(|x| x.trim().parse().unwrap()).collect();
                (v[0], v[1], v[2])
            })
            .collect()
    } else {
        vec![
            (1024, 1024, 1024),
            (3136, 576, 64),
            (784, 1152, 128),
            (196, 2304, 256),
            (49, 4608, 512),
            (12544, 147, 64),
            (3136, 64, 64),
            (3136, 64, 256),
            (3136, 256, 64),
            (3136, 256, 128),
            (784, 128, 512),
            (784, 512, 128),
            (196, 256, 1024),
            (196, 1024, 256),
            (49, 512, 2048),
            (49, 2048, 512),
            (12544, 32, 16),
            (12544, 16, 96),
            (3136, 144, 24),
            (3136, 24, 144),
            (196, 672, 112),
            (49, 1152, 192),
        ]
    };
    for (m, k, n) in shapes {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
        let mut c = vec![0.0f32; m * n];
        let mut best = f64::MAX;
        for _ in 0..reps {
            let t = Instant::now();
            sgemm_serial(
                MatRef::row_major(&a, m, k),
                MatRef::row_major(&b, k, n),
                MatMut::row_major(&mut c, m, n),
                false,
            );
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!(
            "{m:>6} x {k:>5} x {n:>5}  {:>8.3} ms {:>7.1} GFLOP/s",
            best * 1e3,
            2.0 * (m * n * k) as f64 / best / 1e9
        );
    }
}
