//! Times one epoch of the Keras MNIST CNN (batch 128, Adam) on the vendored MNIST with a
//! given number of threads, then evaluates on the test set.
//!
//!     cargo run --release -p convnet-nn --example mnist_epoch -- [threads=2] [train_images=60000]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use convnet_nn::{Adam, FitOptions, Loss, Metric};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let threads: usize = args.next().map_or(Ok(2), |a| a.parse())?;
    let n_train: usize = args.next().map_or(Ok(60_000), |a| a.parse())?;
    let (x, y, xt, yt) = common::mnist(n_train, 10_000);
    let mut model = common::mnist_cnn(1);
    model.compile(Loss::sparse_categorical_crossentropy(), Adam::default(), &[Metric::Accuracy])?;
    let (history, eval_s, ev) = convnet_tensor::with_threads(threads, || -> convnet_nn::Result<_> {
        let h = model.fit(&x, &y, FitOptions::new(128, 1).with_seed(1))?;
        let t = Instant::now();
        let ev = model.evaluate(&xt, &yt, 256)?;
        Ok((h, t.elapsed().as_secs_f64(), ev))
    })?;
    println!(
        "threads {threads}: {} training images, epoch {:.2} s ({:.1} ms/step), test evaluation {:.2} s, \
         test loss {:.4}, test accuracy {:.4}",
        x.dims()[0],
        history.epoch_seconds[0],
        1e3 * history.epoch_seconds[0] / x.dims()[0].div_ceil(128) as f64,
        eval_s,
        ev.loss,
        ev.accuracy.unwrap_or(f64::NAN)
    );
    Ok(())
}
