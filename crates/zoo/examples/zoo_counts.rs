//! Prints every registered model's parameter count and GMACs at its default input size.
use convnet_zoo::{ZooOpts, registry::MODELS};
fn main() {
    let filter = std::env::args().nth(1).unwrap_or_default();
    for e in MODELS.iter().filter(|e| e.name.contains(&filter)) {
        let t = std::time::Instant::now();
        let m = (e.build)(ZooOpts::default()).unwrap();
        let g = m.gmacs().unwrap();
        println!("{:<24} {:>12} {:>8.3} GMACs  ({:.1}s)", e.name, m.param_count(), g, t.elapsed().as_secs_f64());
    }
}
