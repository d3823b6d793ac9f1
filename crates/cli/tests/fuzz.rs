//! Mutation fuzzing of every reader of user files, on stable Rust with no extra tools: IDX,
//! WAV, `.npy`, safetensors checkpoints, model files (safetensors + stored architecture),
//! speech models, PNG/JPEG images and the speech word lists.
//!
//! Each target starts from valid files and feeds mutated copies (bit flips, "interesting"
//! integers over header fields, truncation, insertion, splices) to its reader, asserting that
//! the reader returns (Ok or a typed error) without panicking and without asking for more than
//! 1 GiB in one allocation (the global allocator below refuses such a request, which aborts the
//! test binary with "memory allocation of N bytes failed").
//!
//! A normal `cargo test` runs a few thousand inputs per target with a fixed seed. The long run:
//!
//! ```text
//! CONVNET_FUZZ_ITERS=1000000 cargo test --release -p convnet-cli --test fuzz -- --nocapture --test-threads 1
//! ```
//!
//! `CONVNET_FUZZ_SEED` changes the seed. A failing input is written to
//! `$CARGO_TARGET_TMPDIR/fuzz-crash-<target>.bin`; add it to the corpus below as a regression
//! case.

use std::alloc::{GlobalAlloc, Layout, System};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// The largest single allocation a reader may make while parsing hostile bytes.
const MAX_ALLOC: usize = 1 << 30;

struct Capped;

// SAFETY: forwards to the system allocator; a request over MAX_ALLOC gets null, which the
// standard library reports as an allocation failure (and aborts), as the contract allows.
unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MAX_ALLOC {
            return std::ptr::null_mut();
        }
        // SAFETY: same layout contract as the caller's
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr came from System.alloc with this layout
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MAX_ALLOC {
            return std::ptr::null_mut();
        }
        // SAFETY: as alloc
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > MAX_ALLOC {
            return std::ptr::null_mut();
        }
        // SAFETY: ptr came from this allocator with `layout`
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Capped = Capped;

/// xorshift64*: a fixed, dependency-free generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }
}

const INTERESTING: [u32; 12] =
    [0, 1, 2, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 0x0100_0000, 0x10000];

/// One mutated copy of a corpus entry: 1 to 4 random edits.
fn mutate(corpus: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
    let mut b = corpus[rng.below(corpus.len())].clone();
    for _ in 0..1 + rng.below(4) {
        let len = b.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                b[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                b[i] = rng.next() as u8;
            }
            // an interesting 32-bit value over a (possible) header field, either endianness
            2 if len >= 4 => {
                let i = rng.below(len - 3);
                let v = INTERESTING[rng.below(INTERESTING.len())];
                let bytes = if rng.below(2) == 0 { v.to_le_bytes() } else { v.to_be_bytes() };
                b[i..i + 4].copy_from_slice(&bytes);
            }
            3 if len > 0 => b.truncate(rng.below(len)),
            4 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let fill: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                b.splice(i..i, fill);
            }
            5 if len > 1 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                b.drain(i..i + n);
            }
            // a decimal digit run made long (text headers: .npy shapes, JSON metadata)
            6 => {
                if let Some(i) =
                    (0..8).map(|_| rng.below(len.max(1))).find(|&i| b.get(i).is_some_and(u8::is_ascii_digit))
                {
                    let digits: Vec<u8> = (0..1 + rng.below(20)).map(|_| b'0' + rng.below(10) as u8).collect();
                    b.splice(i..i, digits);
                }
            }
            // splice in a piece of another corpus entry
            _ => {
                let other = &corpus[rng.below(corpus.len())];
                if !other.is_empty() {
                    let a = rng.below(other.len());
                    let n = 1 + rng.below((other.len() - a).min(256));
                    let at = rng.below(len + 1);
                    b.splice(at..at, other[a..a + n].iter().copied());
                }
            }
        }
    }
    b
}

fn iterations() -> usize {
    std::env::var("CONVNET_FUZZ_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(3000)
}

fn seed() -> u64 {
    std::env::var("CONVNET_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5EED_F022)
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Feeds the corpus itself, then `iterations()` mutants, to `target`; a panic fails the test
/// after saving the input.
fn fuzz(name: &str, corpus: Vec<Vec<u8>>, mut target: impl FnMut(&[u8])) {
    let mut rng =
        Rng(seed() ^ name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3)));
    let n = iterations();
    let started = std::time::Instant::now();
    for i in 0..corpus.len() + n {
        let input = if i < corpus.len() { corpus[i].clone() } else { mutate(&corpus, &mut rng) };
        if catch_unwind(AssertUnwindSafe(|| target(&input))).is_err() {
            let crash = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-crash-{name}.bin"));
            std::fs::write(&crash, &input).unwrap();
            panic!("{name}: input {i} panicked; saved to {}", crash.display());
        }
    }
    eprintln!("fuzz {name}: {} executions in {:.1}s, no panic", corpus.len() + n, started.elapsed().as_secs_f64());
}

fn wav(tag: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&tag.to_le_bytes());
    v.extend_from_slice(&channels.to_le_bytes());
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&(rate * u32::from(bits / 8) * u32::from(channels)).to_le_bytes());
    v.extend_from_slice(&(bits / 8 * channels).to_le_bytes());
    v.extend_from_slice(&bits.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&(data.len() as u32).to_le_bytes());
    v.extend_from_slice(data);
    v
}

#[test]
fn fuzz_wav() {
    let pcm: Vec<u8> = (0..400i16).flat_map(|i| (i * 37).to_le_bytes()).collect();
    let float: Vec<u8> = (0..200).flat_map(|i| (i as f32 / 200.0 - 0.5).to_le_bytes()).collect();
    let corpus = vec![
        wav(1, 1, 16000, 16, &pcm),
        wav(1, 2, 8000, 16, &pcm),
        wav(3, 1, 22050, 32, &float),
        wav(1, 1, 44100, 8, &pcm[..100]),
    ];
    let path = Path::new("fuzz.wav");
    fuzz("wav", corpus, |b| {
        if let Ok(w) = convnet::audio::decode_wav(b, path) {
            // resampling is where NaN used to panic: run it on what decodes
            let mono = w.to_mono();
            if mono.len() < 1 << 16 {
                let _ = convnet::audio::resample(&mono, w.info.sample_rate, 22050);
            }
        }
    });
}

#[test]
fn fuzz_npy() {
    let corpus = vec![
        convnet_zoo::npy::npy_bytes(&[2, 3, 4], &(0..24).map(|v| v as f32).collect::<Vec<_>>()),
        convnet_zoo::npy::npy_bytes(&[5], &[1.0; 5]),
        convnet_zoo::npy::npy_bytes(&[1, 1, 2, 2], &[0.5; 4]),
    ];
    fuzz("npy", corpus, |b| {
        let _ = convnet_zoo::npy::parse_npy(b);
    });
}

#[test]
fn fuzz_idx() {
    let mut images = Vec::new();
    for v in [0x803u32, 3, 4, 5] {
        images.extend_from_slice(&v.to_be_bytes());
    }
    images.extend((0..60).map(|v| v as u8));
    let mut labels = Vec::new();
    for v in [0x801u32, 6] {
        labels.extend_from_slice(&v.to_be_bytes());
    }
    labels.extend([1, 2, 3, 4, 5, 6]);
    let dir = scratch("idx");
    let file = dir.join("fuzz-idx3-ubyte");
    fuzz("idx", vec![images, labels], |b| {
        std::fs::write(&file, b).unwrap();
        let _ = convnet::data::read_idx_images(&file);
        let _ = convnet::data::read_idx_labels(&file);
    });
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn fuzz_checkpoints_and_model_files() {
    let dir = scratch("models");
    // a zoo checkpoint (timm layout), a model file with its architecture, a speech model
    let ckpt = dir.join("lenet.safetensors");
    convnet_zoo::create_model("lenet5", convnet_zoo::ZooOpts::new().with_num_classes(3))
        .unwrap()
        .save_checkpoint(&ckpt)
        .unwrap();
    let seq = dir.join("seq.safetensors");
    let mut m = convnet::nn::Sequential::new([6, 5, 1]);
    m.add(convnet::nn::Conv2dConfig::new(2, (3, 3))).unwrap();
    m.add(convnet::nn::FlattenConfig::new()).unwrap();
    m.add(convnet::nn::DenseConfig::new(3)).unwrap();
    m.save(&seq).unwrap();
    let corpus = vec![std::fs::read(&ckpt).unwrap(), std::fs::read(&seq).unwrap()];
    let file = dir.join("fuzz.safetensors");
    fuzz("model-files", corpus, |b| {
        let _ = convnet_zoo::checkpoint::parse_state_dict(b, Path::new("fuzz.safetensors"));
        std::fs::write(&file, b).unwrap();
        let _ = convnet::nn::Sequential::load(&file);
        let _ = convnet::speech::SpeechModel::load(&file);
    });
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn fuzz_images() {
    let mut corpus = Vec::new();
    let img = image::RgbImage::from_fn(24, 16, |x, y| image::Rgb([(x * 9) as u8, (y * 13) as u8, 77]));
    for format in [image::ImageFormat::Png, image::ImageFormat::Jpeg] {
        let mut bytes = std::io::Cursor::new(Vec::new());
        img.write_to(&mut bytes, format).unwrap();
        corpus.push(bytes.into_inner());
    }
    let t = convnet::data::EvalTransform::new(&convnet::data::DataConfig::default());
    fuzz("images", corpus, |b| {
        if let Ok(img) = convnet::data::decode_image(b)
            && t.check(&img, Path::new("fuzz.png")).is_ok()
        {
            let _ = t.apply(&img);
        }
    });
}

#[test]
fn fuzz_speech_word_lists() {
    let corpus = vec![b"yes,1000\nno,2500\n# comment\n\nup,40000\n".to_vec(), b"_silence_,0\n".to_vec()];
    let dir = scratch("lists");
    let file = dir.join("truth.txt");
    fuzz("speech-lists", corpus, |b| {
        std::fs::write(&file, b).unwrap();
        let _ = convnet::speech::read_truth(&file);
    });
    let _ = std::fs::remove_dir_all(dir);
}
