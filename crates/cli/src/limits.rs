//! Upper bounds of the numeric flags, in one place.
//!
//! A flag such as `--n-fft 10000000000` or `--batch 1e9` is not a request anyone means: it
//! makes the program abort on an allocation of many gigabytes, or start 100000 threads. Each
//! limit is a named constant far above any real use, and a flag over it is an error that names
//! the flag, the value and the limit, before any work starts.

use anyhow::{Result, bail};

/// Largest batch (images, clips or examples per step or forward pass).
pub const MAX_BATCH: usize = 1 << 16;
/// Largest image side in pixels (`--input-size`, `--img-size`, an input `.npy`).
pub const MAX_INPUT_SIDE: usize = 4096;
/// Most input channels of an image model.
pub const MAX_INPUT_CHANNELS: usize = 64;
/// Largest FFT (`--n-fft`): 2^16 samples, about 3 s at 22050 Hz.
pub const MAX_N_FFT: usize = 1 << 16;
/// Most mel bands or MFCC coefficients.
pub const MAX_MEL_BANDS: usize = 1024;
/// Most MFCC frames per example (`--frames`): about 25 minutes of audio at librosa's hop.
pub const MAX_FRAMES: usize = 1 << 16;
/// Highest sample rate (`--sr`), the audio crate's limit.
pub const MAX_SAMPLE_RATE: u32 = convnet::audio::MAX_SAMPLE_RATE;
/// Longest generated benchmark stream (`--stream-seconds`).
pub const MAX_STREAM_SECONDS: usize = 3600;
/// `--threads` above this many per core only slows every parallel loop (and a pool of 100000
/// threads takes minutes to start): such requests are lowered to it, with a warning.
pub const THREADS_PER_CORE: usize = 4;

/// `value` of `flag` is in `1..=max`.
pub fn positive(flag: &str, value: usize, max: usize) -> Result<usize> {
    if value == 0 {
        bail!("{flag} must be at least 1");
    }
    if value > max {
        bail!("{flag} {value} is over the limit of {max}");
    }
    Ok(value)
}

/// A batch size flag.
pub fn batch(flag: &str, value: usize) -> Result<usize> {
    positive(flag, value, MAX_BATCH)
}

/// An image input size `[c, h, w]` (from `--input-size`, `--img-size` or a file).
pub fn input_size(flag: &str, [c, h, w]: [usize; 3]) -> Result<[usize; 3]> {
    positive(&format!("{flag} (channels)"), c, MAX_INPUT_CHANNELS)?;
    positive(&format!("{flag} (height)"), h, MAX_INPUT_SIDE)?;
    positive(&format!("{flag} (width)"), w, MAX_INPUT_SIDE)?;
    Ok([c, h, w])
}

/// A sample rate flag.
pub fn sample_rate(flag: &str, value: u32) -> Result<u32> {
    if value == 0 || value > MAX_SAMPLE_RATE {
        bail!("{flag} {value} Hz is outside 1..={MAX_SAMPLE_RATE} Hz");
    }
    Ok(value)
}

/// The thread count to use for `--threads N` (N > 0): N, or at most [`THREADS_PER_CORE`] per
/// core with a warning.
pub fn threads(requested: usize) -> usize {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let max = THREADS_PER_CORE * cores;
    if requested > max {
        eprintln!("warning: --threads {requested} is over {THREADS_PER_CORE} per core ({cores} cores); using {max}");
        return max;
    }
    requested
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_name_the_flag_and_value() {
        assert_eq!(batch("--batch-size", 32).unwrap(), 32);
        let e = batch("--batch-size", MAX_BATCH + 1).unwrap_err().to_string();
        assert!(e.contains("--batch-size") && e.contains(&(MAX_BATCH + 1).to_string()), "{e}");
        assert!(batch("--batch-size", 0).is_err());
        assert!(input_size("--input-size", [3, 224, 224]).is_ok());
        assert!(input_size("--input-size", [3, 100_000, 224]).unwrap_err().to_string().contains("height"));
        assert!(sample_rate("--sr", 0).is_err() && sample_rate("--sr", 4_000_000_000).is_err());
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        assert_eq!(threads(100_000), THREADS_PER_CORE * cores);
        assert_eq!(threads(1), 1);
    }
}
