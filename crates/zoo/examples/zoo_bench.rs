//! `cargo run --release -p convnet-zoo --example zoo_bench -- MODEL [BATCHES] [THREADS]`:
//! the table of `convnet bench infer` without the CLI.
use convnet_zoo::bench::bench_inference;
use convnet_zoo::{ZooOpts, create_model};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "resnet50".into());
    let batches: Vec<usize> =
        args.next().unwrap_or_else(|| "1,16".into()).split(',').map(|s| s.parse()).collect::<Result<_, _>>()?;
    let threads: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(2);
    let model = create_model(&name, ZooOpts::default())?;
    let size = model.pretrained_cfg().input_size;
    let rows = convnet_tensor::with_threads(threads, || bench_inference(&model, size, &batches, 5, 1))?;
    println!("{name} {size:?}, {threads} threads");
    for r in rows {
        println!(
            "batch {:>3}: {:>9.1} ms  {:>8.1} img/s  {:>7.1} GFLOP/s",
            r.batch, r.median_ms, r.images_per_sec, r.gflops
        );
    }
    Ok(())
}
