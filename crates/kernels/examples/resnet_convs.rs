//! Times every convolution of ResNet-50 (and the pointwise convolutions of
//! EfficientNet-B0) at 224x224 through `conv2d_forward_vec`, as the eval-mode
//! zoo runs them (folded bias, fused relu): milliseconds and GFLOP/s per
//! layer and per kind of convolution.
//!
//! `CONV_PASS=dw|dx|train` times the training passes instead: the weight
//! gradient, the input gradient, or one `conv2d_backward` call for every
//! gradient a training step needs (relu mask, dx except for the stem, dw, db;
//! counted as two products).
//!
//! `RAYON_NUM_THREADS=2 cargo run --release -p convnet-kernels --example resnet_convs -- [batch] [reps] [filter]`

use convnet_kernels::conv::{self, ConvAct, ConvGeometry};
use std::collections::BTreeMap;
use std::time::Instant;

/// A square convolution: `(name, in size, cin, cout, kernel, stride, relu)`.
type Layer = (String, usize, usize, usize, usize, usize, bool);

fn geometry(batch: usize, (_, h, c, co, k, s, _): &Layer) -> ConvGeometry {
    let pad = k / 2;
    ConvGeometry::new(batch, (*h, *h, *c), (*k, *k, *co), (*s, *s), (1, 1), (pad, pad, pad, pad))
}

fn resnet50() -> Vec<Layer> {
    let mut v: Vec<Layer> = vec![("stem".into(), 224, 3, 64, 7, 2, true)];
    let mut inpl = 64;
    for (stage, (planes, blocks, hw)) in [(64, 3, 56), (128, 4, 56), (256, 6, 28), (512, 3, 14)].into_iter().enumerate()
    {
        for b in 0..blocks {
            let s = if b == 0 && stage > 0 { 2 } else { 1 };
            let h = if b == 0 { hw } else { hw / if stage > 0 { 2 } else { 1 } };
            let ho = h / s;
            let cin = if b == 0 { inpl } else { planes * 4 };
            let n = format!("l{}.{b}", stage + 1);
            v.push((format!("{n}.c1"), h, cin, planes, 1, 1, true));
            v.push((format!("{n}.c2"), h, planes, planes, 3, s, true));
            v.push((format!("{n}.c3"), ho, planes, planes * 4, 1, 1, false));
            if b == 0 {
                v.push((format!("{n}.ds"), h, inpl, planes * 4, 1, s, false));
            }
        }
        inpl = planes * 4;
    }
    v
}

/// EfficientNet-B0's pointwise convolutions: (expand 1x1, project 1x1) per block, and the head.
fn effnet_pointwise() -> Vec<Layer> {
    // (repeats, kernel, stride, expand, cin, cout) at input size
    let stages = [
        (1, 1, 16, 32, 112),
        (2, 6, 24, 16, 112),
        (2, 6, 40, 24, 56),
        (3, 6, 80, 40, 28),
        (3, 6, 112, 80, 14),
        (4, 6, 192, 112, 14),
        (1, 6, 320, 192, 7),
    ];
    let strides = [1, 2, 2, 2, 1, 2, 1];
    let mut v = Vec::new();
    for (i, &(rep, e, cout, cin0, h0)) in stages.iter().enumerate() {
        for r in 0..rep {
            let cin = if r == 0 { cin0 } else { cout };
            let h = if r == 0 { h0 } else { h0 / strides[i] };
            let ho = if r == 0 { h0 / strides[i] } else { h };
            if e > 1 {
                v.push((format!("e{i}.{r}.expand"), h, cin, cin * e, 1, 1, false));
            }
            v.push((format!("e{i}.{r}.project"), ho, cin * e, cout, 1, 1, false));
        }
    }
    v.push(("e.head".into(), 7, 320, 1280, 1, 1, false));
    v
}

/// CPU seconds used by this process (all threads): with one worker thread,
/// a measure that time slices taken by other processes do not inflate.
fn cpu_seconds() -> f64 {
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    unsafe extern "C" {
        fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
    }
    const CLOCK_PROCESS_CPUTIME_ID: i32 = 2;
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: clock_gettime writes one timespec.
    unsafe { clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.sec as f64 + ts.nsec as f64 * 1e-9
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let batch: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let reps: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let filter = args.get(3).cloned().unwrap_or_default();
    println!("threads {}, batch {batch}, median of {reps} passes over all layers", rayon::current_num_threads());
    // every layer has its own input and weights, run in model order, so
    // weights stream from memory as in a real forward pass (inputs are
    // touched first: in a model they were just written)
    let layers: Vec<Layer> =
        resnet50().into_iter().chain(effnet_pointwise()).filter(|l| l.0.contains(&filter)).collect();
    let data: Vec<_> = layers
        .iter()
        .map(|layer| {
            let g = geometry(batch, layer);
            let x: Vec<f32> = (0..g.input_len()).map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0).collect();
            let w: Vec<f32> = (0..g.weight_len()).map(|i| ((i * 5 % 11) as f32 - 5.0) / 50.0).collect();
            (g, x, w, vec![0.1f32; g.out_c])
        })
        .collect();
    let pass = std::env::var("CONV_PASS").unwrap_or_default();
    // output-sized gradient and relu output, and the gradient buffers, for the training passes
    let grads: Vec<_> = data
        .iter()
        .map(|(g, ..)| {
            if pass.is_empty() {
                return Default::default();
            }
            let dy: Vec<f32> = (0..g.output_len()).map(|i| ((i * 3 % 17) as f32 - 8.0) / 9.0).collect();
            let y: Vec<f32> = (0..g.output_len()).map(|i| ((i * 5 % 7) as f32 - 3.0) / 4.0).collect();
            (dy, y, vec![0.0f32; g.input_len()], vec![0.0f32; g.weight_len()], vec![0.0f32; g.out_c])
        })
        .collect::<Vec<(Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>)>>();
    let mut grads = grads;
    let mut times = vec![Vec::new(); layers.len()];
    // CONV_CPU_TIME=1: CPU time instead of wall time (meaningful with one thread)
    let use_cpu = std::env::var_os("CONV_CPU_TIME").is_some();
    for _ in 0..reps + 1 {
        for (i, (layer, (g, x, w, b))) in layers.iter().zip(&data).enumerate() {
            let act = if layer.6 { ConvAct::Relu } else { ConvAct::Identity };
            // in a model the input was just written by the layer before: bring it into cache
            std::hint::black_box(x.iter().step_by(16).sum::<f32>());
            let (t, c) = (Instant::now(), cpu_seconds());
            let (dy, y, dx, dw, db) = &mut grads[i];
            match pass.as_str() {
                "dw" => conv::conv2d_backward_weight(g, x, dy, dw),
                "dx" => conv::conv2d_backward_input(g, dy, w, dx),
                "train" => {
                    let dx = (g.in_c > 3).then_some(&mut dx[..]);
                    conv::conv2d_backward(g, x, w, dy, act, Some(y), dx, Some(dw), Some(db))
                }
                _ => {
                    std::hint::black_box(conv::conv2d_forward_vec(g, x, w, Some(b), act));
                }
            }
            times[i].push(if use_cpu { cpu_seconds() - c } else { t.elapsed().as_secs_f64() });
        }
    }
    let mut kinds: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    let (mut total_t, mut total_f) = (0.0, 0.0);
    for (layer, ((g, ..), t)) in layers.iter().zip(data.iter().zip(&mut times)) {
        t.remove(0);
        t.sort_by(f64::total_cmp);
        let med = t[t.len() / 2];
        let products = if pass == "train" && g.in_c > 3 { 2.0 } else { 1.0 };
        let flops = products * 2.0 * (g.batch * g.out_pixels() * g.patch_len() * g.out_c) as f64;
        let (name, h, c, co, k, s, _) = layer;
        println!(
            "{name:<14} {h:>3}x{h:<3} {c:>4}->{co:<4} k{k} s{s}  {:>8.3} ms {:>7.1} GFLOP/s",
            med * 1e3,
            flops / med / 1e9
        );
        let kind = if name.starts_with('e') { format!("effnet k{k}s{s}") } else { format!("resnet k{k}s{s}") };
        let e = kinds.entry(kind).or_default();
        e.0 += med;
        e.1 += flops;
        if !name.starts_with('e') {
            total_t += med;
            total_f += flops;
        }
    }
    for (k, (t, f)) in &kinds {
        println!("{k:<16} {:>9.2} ms {:>7.1} GFLOP/s", t * 1e3, f / t / 1e9);
    }
    println!("resnet50 convs   {:>9.2} ms {:>7.1} GFLOP/s", total_t * 1e3, total_f / total_t / 1e9);
}
