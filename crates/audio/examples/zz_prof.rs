use std::hint::black_box;
use realfft::RealFftPlanner;
fn cpu() -> f64 { let t = std::fs::read_to_string("/proc/thread-self/stat").unwrap(); let f: Vec<&str> = t.rsplit(')').next().unwrap().split_whitespace().collect(); (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0 }
fn main() {
    let n = 4000;
    let x: Vec<f32> = (0..22050).map(|i| ((i as f32) * 0.01).sin() * 0.3).collect();
    let mut ex = convnet_audio::MfccExtractor::new(convnet_audio::MfccConfig::new(22050, 40)).unwrap();
    if std::env::var("ONLY").is_ok() { let t = cpu(); let k: usize = std::env::var("ONLY").unwrap().parse().unwrap(); for _ in 0..k { black_box(ex.mfcc(&x).unwrap()); } println!("only {:.1}", (cpu()-t)/k as f64*1e6); return; }
    for _ in 0..3 {
    let t = cpu(); for _ in 0..n { black_box(ex.mfcc(&x).unwrap()); } let full = (cpu() - t) / n as f64;
    let fft = RealFftPlanner::<f32>::new().plan_fft_forward(2048);
    let mut a = vec![0.0f32; 2048]; let mut b = fft.make_output_vec(); let mut s = fft.make_scratch_vec();
    let t = cpu(); for _ in 0..n { for _ in 0..44 { a.copy_from_slice(&x[..2048]); fft.process_with_scratch(&mut a, &mut b, &mut s).unwrap(); } black_box(&b); } let f = (cpu() - t) / n as f64;
    let cfft = rustfft::FftPlanner::<f32>::new().plan_fft_forward(1024);
    let mut c = vec![rustfft::num_complex::Complex::new(0.1f32, 0.2); 1024]; let mut cs = vec![rustfft::num_complex::Complex::new(0.0f32, 0.0); cfft.get_inplace_scratch_len()];
    let t = cpu(); for _ in 0..n { for _ in 0..44 { cfft.process_with_scratch(&mut c, &mut cs); } black_box(&c); } let cf = (cpu() - t) / n as f64;
    println!("full {:.1} us/clip, 44 real ffts {:.1} us, 44 complex-1024 {:.1} us", full * 1e6, f * 1e6, cf*1e6);
    }
}
