//! Times the FFT convolution against the direct path on preallocated
//! buffers: forward (bias + relu fused), input gradient and weight gradient
//! of the speech-commands `conv` model's two layers at batch 100, and of the
//! MNIST CNN's 5x5 layers at batch 128 (which must stay direct unless FFT
//! wins there). GFLOP/s counts the direct convolution's FLOPs.
//!
//! `cargo run --release -p convnet-kernels --example conv_fft_bench [reps]`
//! (`BENCH_ONLY=conv2` picks layers by name, `BENCH_SKIP_DIRECT=1` times the FFT path only)

use convnet_kernels::conv::{self, ConvAct, ConvGeometry};
use convnet_kernels::conv_fft::{self, ConvPass, FftRouting};
use std::time::Instant;

/// A stride-1 geometry with TF "SAME" padding (the odd pixel at the bottom and right).
fn same(batch: usize, (h, w, c): (usize, usize, usize), (kh, kw, co): (usize, usize, usize)) -> ConvGeometry {
    ConvGeometry::new(batch, (h, w, c), (kh, kw, co), (1, 1), (1, 1), ((kh - 1) / 2, kh / 2, (kw - 1) / 2, kw / 2))
}

/// Best of `reps` runs (after one warm-up), in seconds.
fn best(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min)
}

fn main() {
    let reps: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    let only = std::env::var("BENCH_ONLY").ok();
    // profiling aid: time the FFT path only
    let skip_direct = std::env::var_os("BENCH_SKIP_DIRECT").is_some();
    println!("threads: {}, best of {reps}", rayon::current_num_threads());
    println!(
        "{:<26} {:>5} {:>10} {:>9} {:>10} {:>9} {:>8} {:>6}",
        "layer", "pass", "direct ms", "GFLOP/s", "fft ms", "GFLOP/s", "speedup", "auto"
    );
    let layers = [
        ("speech conv1 1->64", same(100, (98, 40, 1), (20, 8, 64)), false),
        ("speech conv2 64->64", same(100, (49, 20, 64), (10, 4, 64)), true),
        ("mnist conv1 1->32", same(128, (28, 28, 1), (5, 5, 32)), false),
        ("mnist conv2 32->64", same(128, (14, 14, 32), (5, 5, 64)), true),
    ];
    let mut totals = [0.0f64; 2];
    for (name, g, need_dx) in layers {
        if only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        let x: Vec<f32> = (0..g.input_len()).map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0).collect();
        let w: Vec<f32> = (0..g.weight_len()).map(|i| ((i * 5 % 11) as f32 - 5.0) / 50.0).collect();
        let b = vec![0.1; g.out_c];
        let mut y = vec![0.0; g.output_len()];
        let mut dx = vec![0.0; g.input_len()];
        let mut dw = vec![0.0; g.weight_len()];
        let dy: Vec<f32> = (0..g.output_len()).map(|i| ((i * 3 % 17) as f32 - 8.0) / 9.0).collect();
        let flops = 2.0 * (g.batch * g.out_pixels() * g.patch_len() * g.out_c) as f64;
        let passes: &[ConvPass] = if need_dx {
            &[ConvPass::Forward, ConvPass::Input, ConvPass::Weight]
        } else {
            &[ConvPass::Forward, ConvPass::Weight]
        };
        for &pass in passes {
            conv_fft::set_routing(FftRouting::Auto);
            let auto = conv_fft::preferred(&g, pass);
            let mut run = |routing| {
                conv_fft::set_routing(routing);
                best(reps, || match pass {
                    ConvPass::Forward => conv::conv2d_forward_act(&g, &x, &w, Some(&b), ConvAct::Relu, &mut y),
                    ConvPass::Input => conv::conv2d_backward_input(&g, &dy, &w, &mut dx),
                    ConvPass::Weight => conv::conv2d_backward_weight(&g, &x, &dy, &mut dw),
                })
            };
            let direct = if skip_direct { f64::NAN } else { run(FftRouting::Never) };
            let fft = run(FftRouting::Always);
            if name.starts_with("speech") {
                totals[0] += direct;
                totals[1] += fft;
            }
            let label = match pass {
                ConvPass::Forward => "fwd",
                ConvPass::Input => "dx",
                ConvPass::Weight => "dw",
            };
            println!(
                "{name:<26} {label:>5} {:>10.2} {:>9.1} {:>10.2} {:>9.1} {:>7.2}x {:>6}",
                direct * 1e3,
                flops / direct / 1e9,
                fft * 1e3,
                flops / fft / 1e9,
                direct / fft,
                if auto { "fft" } else { "direct" }
            );
        }
        // as in training: one backward call for every gradient the layer needs
        let mut db = vec![0.0; g.out_c];
        let mut run = |routing| {
            conv_fft::set_routing(routing);
            best(reps, || {
                let dx = need_dx.then_some(&mut dx[..]);
                conv::conv2d_backward(&g, &x, &w, &dy, ConvAct::Relu, Some(&y), dx, Some(&mut dw), Some(&mut db))
            })
        };
        let direct = if skip_direct { f64::NAN } else { run(FftRouting::Never) };
        let fft = run(FftRouting::Always);
        let bwd_flops = if need_dx { 2.0 } else { 1.0 } * flops;
        println!(
            "{name:<26} {:>5} {:>10.2} {:>9.1} {:>10.2} {:>9.1} {:>7.2}x",
            "bwd",
            direct * 1e3,
            bwd_flops / direct / 1e9,
            fft * 1e3,
            bwd_flops / fft / 1e9,
            direct / fft
        );
    }
    conv_fft::set_routing(FftRouting::Auto);
    if totals[0] > 0.0 {
        println!(
            "speech conv1 fwd+dw + conv2 fwd+dx+dw: direct {:.1} ms, fft {:.1} ms",
            totals[0] * 1e3,
            totals[1] * 1e3
        );
    }
}
