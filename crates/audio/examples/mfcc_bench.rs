//! MFCC throughput: 1 s clips at 22050 Hz, `librosa.feature.mfcc(n_mfcc=40)` defaults (n_fft
//! 2048, hop 512, 128 Slaney mels), on one thread ([`MfccExtractor`]) and on all threads
//! ([`MfccTransform::apply_batch`], rayon over clips), next to librosa's 470 clips/s and the
//! 20x target of 9,400 clips/s. Also the TensorFlow speech-commands front end (1 s at 16 kHz).
//!
//! ```text
//! cargo run --release -p convnet-audio --example mfcc_bench [clips]
//! ```
//! Clips are synthetic (a deterministic chirp plus noise per clip), so no data is needed.
//!
//! Wall-clock rates are noisy on a shared machine; the instruction count of the one-thread
//! path is repeatable (350 clips: 50 warm-up plus 3 x 100; valgrind runs the AVX2 kernels):
//!
//! ```text
//! valgrind --tool=callgrind --toggle-collect='*MfccExtractor*mfcc*' \
//!     target/release/examples/mfcc_bench 100
//! ```

use std::hint::black_box;
use std::time::Instant;

use convnet_audio::{MfccConfig, MfccExtractor, MfccTransform, TfMfccConfig, TfMfccTransform, Transform};

/// librosa 0.11's measured throughput for the same task (from the issue).
const LIBROSA_CLIPS_PER_S: f64 = 470.0;
/// The target: 20x librosa.
const TARGET_CLIPS_PER_S: f64 = 9400.0;

fn clips(n: usize, len: usize, sr: f32) -> Vec<Vec<f32>> {
    (0..n)
        .map(|c| {
            let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ c as u64;
            let f0 = 150.0 + 20.0 * (c % 17) as f32;
            (0..len)
                .map(|i| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let noise = ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.02;
                    let t = i as f32 / sr;
                    0.3 * (2.0 * std::f32::consts::PI * (f0 + 800.0 * t) * t).sin() + noise
                })
                .collect()
        })
        .collect()
}

/// Best of `reps` runs of `f` over all clips, in clips per second.
fn rate(n: usize, reps: usize, mut f: impl FnMut()) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    n as f64 / best
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(4000);
    let threads = rayon::current_num_threads();
    let reps = 3;

    let data = clips(n, 22050, 22050.0);
    let refs: Vec<&[f32]> = data.iter().map(|c| c.as_slice()).collect();
    let cfg = MfccConfig::new(22050, 40);
    let mut ex = MfccExtractor::new(cfg).expect("valid config");
    let tr = MfccTransform::new(cfg).expect("valid config");
    // Warm-up (page in, plan caches).
    for c in refs.iter().take(50) {
        black_box(ex.mfcc(c).expect("1 s clip"));
    }
    let single = rate(n, reps, || {
        for c in &refs {
            black_box(ex.mfcc(c).expect("1 s clip"));
        }
    });
    let all = rate(n, reps, || {
        black_box(tr.apply_batch(&refs));
    });

    let tf_data = clips(n, 16000, 16000.0);
    let tf_refs: Vec<&[f32]> = tf_data.iter().map(|c| c.as_slice()).collect();
    let tf = TfMfccTransform::new(TfMfccConfig::default()).expect("valid config");
    let tf_single = rate(n, reps, || {
        for c in &tf_refs {
            black_box(tf.apply(c).expect("1 s clip"));
        }
    });
    let tf_all = rate(n, reps, || {
        black_box(tf.apply_batch(&tf_refs));
    });

    println!("MFCC throughput, {n} clips of 1 s, best of {reps} runs, {threads} rayon threads");
    println!();
    println!(
        "| front end                                   | threads | clips/s | x librosa (470/s) | target 9,400/s |"
    );
    println!(
        "|---------------------------------------------|---------|---------|-------------------|----------------|"
    );
    let row = |name: &str, t: usize, r: f64, target: bool| {
        let verdict = if !target {
            "-".to_string()
        } else if r >= TARGET_CLIPS_PER_S {
            "met".to_string()
        } else {
            format!("{:.0}%", 100.0 * r / TARGET_CLIPS_PER_S)
        };
        println!("| {name:<43} | {t:>7} | {r:>7.0} | {:>17.1} | {verdict:>14} |", r / LIBROSA_CLIPS_PER_S);
    };
    row("librosa.feature.mfcc (reference)", 1, LIBROSA_CLIPS_PER_S, false);
    row("MfccExtractor, 22050 Hz, n_mfcc 40", 1, single, false);
    row("MfccTransform::apply_batch, 22050 Hz", threads, all, true);
    row("TfMfccTransform (speech commands), 16 kHz", 1, tf_single, false);
    row("TfMfccTransform::apply_batch, 16 kHz", threads, tf_all, false);
}
