//! The pooling kernels against plain loops over each window, on ragged
//! random geometries (sizes 1..=13, windows partly or wholly in the padding)
//! and on the exact 2x2 tiling fast path: max pooling with flat and compact
//! argmax (ties: the first maximum in scan order wins, as in PyTorch),
//! inference max pooling, and average pooling with and without the padding
//! in the divisor; global average pooling for any thread count.

mod common;

use common::Rng;
use convnet_kernels::pool::{
    self, NO_INPUT, PoolGeometry, avg_pool_backward, avg_pool_forward, compact_index_fits, max_pool_backward,
    max_pool_backward_compact, max_pool_forward, max_pool_forward_compact, max_pool_forward_inference,
};

/// One window: the flat input pixels it covers (scan order) and its divisor
/// with padding counted (the window clipped to the padded image, which ends
/// `pad_top`/`pad_left` past the input, as in PyTorch).
struct Window {
    out_pixel: usize,
    pixels: Vec<usize>,
    padded_count: usize,
}

fn windows(g: &PoolGeometry) -> Vec<Window> {
    let mut out = Vec::new();
    for b in 0..g.batch {
        for oy in 0..g.out_h {
            for ox in 0..g.out_w {
                let y0 = (oy * g.stride_h) as isize - g.pad_top as isize;
                let x0 = (ox * g.stride_w) as isize - g.pad_left as isize;
                let (y1, x1) = (y0 + g.kernel_h as isize, x0 + g.kernel_w as isize);
                let mut pixels = Vec::new();
                for iy in y0.max(0)..y1.min(g.in_h as isize) {
                    for ix in x0.max(0)..x1.min(g.in_w as isize) {
                        pixels.push((b * g.in_h + iy as usize) * g.in_w + ix as usize);
                    }
                }
                let ph = (g.in_h + g.pad_top) as isize;
                let pw = (g.in_w + g.pad_left) as isize;
                let padded_count = ((y1.min(ph) - y0).max(0) * (x1.min(pw) - x0).max(0)) as usize;
                out.push(Window { out_pixel: (b * g.out_h + oy) * g.out_w + ox, pixels, padded_count });
            }
        }
    }
    out
}

fn random_geometry(rng: &mut Rng) -> PoolGeometry {
    loop {
        let (kernel_h, kernel_w) = (1 + rng.below(4), 1 + rng.below(4));
        let (stride_h, stride_w) = (1 + rng.below(3), 1 + rng.below(3));
        let (in_h, in_w) = (1 + rng.below(13), 1 + rng.below(13));
        let (pad_top, pad_left) = (rng.below(3), rng.below(3));
        let (pad_bottom, pad_right) = (rng.below(3), rng.below(3));
        let (ph, pw) = (in_h + pad_top + pad_bottom, in_w + pad_left + pad_right);
        if ph < kernel_h || pw < kernel_w {
            continue;
        }
        return PoolGeometry {
            batch: 1 + rng.below(2),
            in_h,
            in_w,
            channels: [1, 2, 3, 5, 16, 17][rng.below(6)],
            // sometimes one more window (ceil mode)
            out_h: (ph - kernel_h) / stride_h + 1 + rng.below(2),
            out_w: (pw - kernel_w) / stride_w + 1 + rng.below(2),
            kernel_h,
            kernel_w,
            stride_h,
            stride_w,
            pad_top,
            pad_left,
        };
    }
}

fn tiling(batch: usize, out_h: usize, out_w: usize, channels: usize) -> PoolGeometry {
    PoolGeometry {
        batch,
        in_h: 2 * out_h,
        in_w: 2 * out_w,
        channels,
        out_h,
        out_w,
        kernel_h: 2,
        kernel_w: 2,
        stride_h: 2,
        stride_w: 2,
        pad_top: 0,
        pad_left: 0,
    }
}

fn check(g: &PoolGeometry, rng: &mut Rng, ties: bool) {
    let c = g.channels;
    let x = if ties { rng.ints(g.input_len()) } else { rng.vec(g.input_len()) };
    let dy = rng.vec(g.output_len());
    let ws = windows(g);

    // references: max with the first maximum winning, its flat index, and both averages
    let mut y_max = vec![0.0f32; g.output_len()];
    let mut arg = vec![u32::MAX; g.output_len()];
    let mut dx_max = vec![0.0f64; g.input_len()];
    let mut y_avg = [vec![0.0f64; g.output_len()], vec![0.0f64; g.output_len()]];
    let mut dx_avg = [vec![0.0f64; g.input_len()], vec![0.0f64; g.input_len()]];
    for w in &ws {
        for ch in 0..c {
            let o = w.out_pixel * c + ch;
            let mut best: Option<usize> = None;
            for &p in &w.pixels {
                if best.is_none_or(|b| x[p * c + ch] > x[b * c + ch]) {
                    best = Some(p);
                }
            }
            if let Some(b) = best {
                y_max[o] = x[b * c + ch];
                arg[o] = (b * c + ch) as u32;
                dx_max[b * c + ch] += dy[o] as f64;
            }
            let sum: f64 = w.pixels.iter().map(|&p| x[p * c + ch] as f64).sum();
            for (include, count) in [(0, w.pixels.len()), (1, w.padded_count)] {
                if count > 0 {
                    y_avg[include][o] = sum / count as f64;
                    for &p in &w.pixels {
                        dx_avg[include][p * c + ch] += dy[o] as f64 / count as f64;
                    }
                }
            }
        }
    }
    let close = |what: &str, got: &[f32], want: &[f64]| {
        for (i, (g_, w)) in got.iter().zip(want).enumerate() {
            assert!((*g_ as f64 - w).abs() <= 1e-5 * w.abs().max(1.0), "{what} {g:?}: element {i}: got {g_}, want {w}");
        }
    };

    // max, flat argmax
    let (mut y, mut a) = (vec![f32::NAN; g.output_len()], vec![7u32; g.output_len()]);
    max_pool_forward(g, &x, &mut y, &mut a);
    assert_eq!(y, y_max, "max forward {g:?}");
    assert_eq!(a, arg, "max argmax (first maximum wins) {g:?}");
    let mut dx = vec![f32::NAN; g.input_len()];
    max_pool_backward(g, &dy, &a, &mut dx);
    close("max backward", &dx, &dx_max);
    // max, inference
    let mut y = vec![f32::NAN; g.output_len()];
    max_pool_forward_inference(g, &x, &mut y);
    assert_eq!(y, y_max, "max inference {g:?}");
    // max, compact index
    if compact_index_fits(g) {
        let (mut y, mut idx) = (vec![f32::NAN; g.output_len()], vec![7u8; g.output_len()]);
        max_pool_forward_compact(g, &x, &mut y, &mut idx);
        assert_eq!(y, y_max, "max compact forward {g:?}");
        for (i, a) in arg.iter().enumerate() {
            assert_eq!(*a == u32::MAX, idx[i] == NO_INPUT, "{g:?}: output {i}: empty windows are marked");
        }
        let mut dx = vec![f32::NAN; g.input_len()];
        max_pool_backward_compact(g, &dy, &idx, &mut dx);
        close("max compact backward", &dx, &dx_max);
    }
    // average, divisor with and without padding
    for (include, flag) in [(0, false), (1, true)] {
        let mut y = vec![f32::NAN; g.output_len()];
        avg_pool_forward(g, &x, &mut y, flag);
        close(&format!("avg forward (count_include_pad {flag})"), &y, &y_avg[include]);
        let mut dx = vec![f32::NAN; g.input_len()];
        avg_pool_backward(g, &dy, &mut dx, flag);
        close(&format!("avg backward (count_include_pad {flag})"), &dx, &dx_avg[include]);
    }
}

#[test]
fn pool_kernels_match_reference_on_ragged_geometries() {
    let mut rng = Rng::new(21);
    let mut empty_windows = 0;
    for i in 0..400 {
        let g = random_geometry(&mut rng);
        empty_windows += windows(&g).iter().any(|w| w.pixels.is_empty()) as usize;
        check(&g, &mut rng, i % 2 == 0);
    }
    assert!(empty_windows > 10, "windows wholly in the padding were exercised ({empty_windows} geometries)");
}

#[test]
fn pool_kernels_on_the_2x2_tiling_path() {
    let mut rng = Rng::new(22);
    for &(b, oh, ow, c) in &[(1, 1, 1, 1), (2, 3, 5, 3), (1, 7, 7, 16), (3, 4, 2, 17), (1, 14, 14, 32), (2, 6, 13, 5)] {
        check(&tiling(b, oh, ow, c), &mut rng, true);
        check(&tiling(b, oh, ow, c), &mut rng, false);
    }
    // odd inputs: a 2x2/2 window that does not tile (the last row/column is dropped or padded)
    let g = PoolGeometry { in_h: 7, in_w: 5, ..tiling(2, 3, 2, 3) };
    check(&g, &mut rng, true);
    let g = PoolGeometry { in_h: 7, in_w: 5, out_h: 4, out_w: 3, ..tiling(2, 3, 2, 3) };
    check(&g, &mut rng, false);
}

#[test]
fn large_windows_use_the_flat_index() {
    // 16x16 = 256 positions do not fit a byte; the flat index still works
    let mut rng = Rng::new(23);
    let g = PoolGeometry {
        batch: 1,
        in_h: 17,
        in_w: 16,
        channels: 2,
        out_h: 2,
        out_w: 1,
        kernel_h: 16,
        kernel_w: 16,
        stride_h: 1,
        stride_w: 1,
        pad_top: 0,
        pad_left: 0,
    };
    assert!(!compact_index_fits(&g));
    check(&g, &mut rng, true);
}

#[test]
fn global_average_matches_a_plain_loop_for_any_thread_count() {
    let mut rng = Rng::new(41);
    for &(batch, pixels, c) in &[(1, 49, 1152), (3, 7, 17), (1, 1, 67), (2, 196, 40), (1, 3136, 24), (5, 2, 1)] {
        let x = rng.vec(batch * pixels * c);
        // the plain loop: channels summed over pixels in order in f64, then scaled
        let mut sum = vec![0.0f64; batch * c];
        for (b, img) in x.chunks_exact(pixels * c).enumerate() {
            for px in img.chunks_exact(c) {
                for (a, v) in sum[b * c..(b + 1) * c].iter_mut().zip(px) {
                    *a += f64::from(*v);
                }
            }
        }
        let want: Vec<f32> = sum.iter().map(|a| (a * (1.0 / pixels as f64)) as f32).collect();
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let got = pool.install(|| pool::global_avg_pool(&x, batch, pixels, c));
            assert_eq!(got, want, "batch {batch} pixels {pixels} channels {c}, {threads} threads");
        }
    }
}
