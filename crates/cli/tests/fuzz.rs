//! Mutation fuzzing of every reader of user files, on stable Rust with no extra tools: IDX,
//! WAV, `.npy`, safetensors checkpoints, model files (safetensors + stored architecture, plain
//! and speech models, loaded into a zoo model), PNG/JPEG images and the speech word lists.
//!
//! Each target starts from valid files (built here, plus the files in `tests/fuzz_corpus/<target>/`)
//! and feeds mutated copies to its reader's in-memory entry point, the same code the file
//! readers run, so no input touches the disk. Mutations are byte-level (bit flips,
//! "interesting" integers over header fields, truncation, insertion, splices) and, for
//! safetensors and WAV, structure-aware: edits of the JSON header (shapes, dtypes, offsets,
//! the architecture and speech metadata inside it) and of the RIFF chunks (sizes, `fmt `
//! fields, non-finite float samples), which byte flips rarely reach. Each input must come back
//! (Ok or a typed error) without panicking and without asking for more than 1 GiB in one
//! allocation: the global allocator ([`CappedAlloc`]) refuses such a request, which aborts the
//! test binary with "memory allocation of N bytes failed" after saving the input. The slowest
//! input of each target is timed again at the end and must take under a second: a few hundred
//! bytes that cost seconds are a hang waiting for a bigger file.
//!
//! A normal `cargo test` runs a few thousand inputs per target with a fixed seed (seconds).
//! The long run, every target for a million inputs or ten minutes, whichever comes first, one
//! target after the other:
//!
//! ```text
//! CONVNET_FUZZ_ITERS=1000000 CONVNET_FUZZ_SECONDS=600 \
//!     cargo test --release -p convnet-cli --test fuzz -- --nocapture --test-threads 1
//! ```
//!
//! Add a test name (`fuzz_wav`) to run one target; `CONVNET_FUZZ_SEED` changes the seed. Each
//! target prints its executions, time, accepted inputs and slowest input. A failing input is
//! written to `$CARGO_TARGET_TMPDIR/fuzz-crash-<target>.bin`: fix the reader, then add the file
//! to `tests/fuzz_corpus/<target>/`, where every later run (the short one included) replays it.

use convnet_kernels::alloc_cap::CappedAlloc;
use serde_json::Value;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The largest single allocation a reader may make while parsing hostile bytes.
const MAX_ALLOC: usize = 1 << 30;

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc::new(MAX_ALLOC);

/// The target and input being run, saved by the allocator's refusal hook before the abort.
static CURRENT: Mutex<(String, Vec<u8>)> = Mutex::new((String::new(), Vec::new()));

fn crash_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-crash-{name}.bin"))
}

fn save_current_on_refusal(size: usize) {
    eprintln!("fuzz: refused an allocation of {size} bytes");
    if let Ok(current) = CURRENT.try_lock() {
        let path = crash_path(&current.0);
        if std::fs::write(&path, &current.1).is_ok() {
            eprintln!("fuzz {}: the input is saved to {}", current.0, path.display());
        }
    }
}

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
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

const INTERESTING: [u32; 12] =
    [0, 1, 2, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 0x0100_0000, 0x10000];

/// 1 to 4 random byte-level edits of `b`; `corpus` provides splices.
fn mutate_bytes(mut b: Vec<u8>, corpus: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
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
                let v = rng.pick(&INTERESTING);
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

/// Numbers that break size arithmetic: zero, one, powers of two around the integer widths,
/// the largest integers, floats where integers are expected.
fn interesting_number(rng: &mut Rng, near: Option<f64>) -> Value {
    let ints: [i128; 16] = [
        0,
        1,
        2,
        3,
        -1,
        7,
        255,
        256,
        65535,
        65536,
        1 << 31,
        1 << 32,
        1 << 40,
        1 << 62,
        u64::MAX as i128,
        i64::MIN as i128,
    ];
    match rng.below(4) {
        0 if near.is_some() => {
            let v = near.unwrap_or(0.0);
            let v = match rng.below(4) {
                0 => v + 1.0,
                1 => v - 1.0,
                2 => v * 2.0,
                _ => v * 1000.0,
            };
            serde_json::json!(v as i64)
        }
        1 => serde_json::json!(rng.pick(&[0.5, -0.0, 1e30, -1e30, 1e308, 1.5, 3.0e9])),
        _ => {
            let v = rng.pick(&ints);
            if v > i64::MAX as i128 { serde_json::json!(v as u64) } else { serde_json::json!(v as i64) }
        }
    }
}

/// JSON pointers of every node under `v`.
fn json_nodes(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                json_nodes(item, format!("{at}/{i}"), out);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                json_nodes(item, format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// One structural edit of a JSON document: a number set to an interesting value, a string
/// swapped for another of the document's strings, an array element removed or duplicated, a
/// key removed. JSON held in a string (the metadata's architecture) is edited inside.
fn mutate_json(v: &mut Value, rng: &mut Rng) {
    let mut nodes = Vec::new();
    json_nodes(v, String::new(), &mut nodes);
    let strings: Vec<String> =
        nodes.iter().filter_map(|p| v.pointer(p).and_then(Value::as_str)).map(str::to_string).collect();
    let at = nodes[rng.below(nodes.len())].clone();
    let Some(node) = v.pointer_mut(&at) else { return };
    match node {
        Value::Number(n) => *node = interesting_number(rng, n.as_f64()),
        Value::String(s) => {
            if let Ok(mut inner) = serde_json::from_str::<Value>(s)
                && (inner.is_object() || inner.is_array())
            {
                mutate_json(&mut inner, rng);
                *s = inner.to_string();
            } else if !strings.is_empty() && rng.below(4) > 0 {
                *s = strings[rng.below(strings.len())].clone();
            } else {
                s.push_str(&rng.below(3).to_string());
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let i = rng.below(items.len());
            match rng.below(3) {
                0 => {
                    items.remove(i);
                }
                1 => {
                    let copy = items[i].clone();
                    items.insert(i, copy);
                }
                _ => items.push(interesting_number(rng, None)),
            }
        }
        Value::Object(map) if !map.is_empty() => {
            let key = map.keys().nth(rng.below(map.len())).cloned().unwrap_or_default();
            if rng.below(2) == 0 {
                map.remove(&key);
            } else if let Some(item) = map.get(&key).cloned() {
                map.insert(format!("{key}{}", rng.below(10)), item);
            }
        }
        Value::Bool(b) => *b = !*b,
        _ => *node = interesting_number(rng, None),
    }
}

/// A structural edit of a safetensors file: its JSON header (and the JSON metadata inside it)
/// is parsed, edited, written back with a correct length, before the data, which may also be
/// cut or extended. `None` when `b` is not a readable safetensors file.
fn mutate_safetensors(b: &[u8], rng: &mut Rng) -> Option<Vec<u8>> {
    let n = usize::try_from(u64::from_le_bytes(b.get(..8)?.try_into().ok()?)).ok()?;
    let header = b.get(8..8usize.checked_add(n)?)?;
    let mut v: Value = serde_json::from_slice(header).ok()?;
    let mut data = b[8 + n..].to_vec();
    let tensors: Vec<String> = v.as_object()?.keys().filter(|k| *k != "__metadata__").cloned().collect();
    match rng.below(8) {
        // a field of one tensor: shape, dtype or data offsets
        0..=3 if !tensors.is_empty() => {
            let t = v.get_mut(&tensors[rng.below(tensors.len())])?;
            match rng.below(3) {
                0 => {
                    let dtypes = ["F32", "F16", "BF16", "F64", "I64", "I32", "I8", "U8", "BOOL", "F8_E4M3", "U64", "X"];
                    t["dtype"] = Value::from(rng.pick(&dtypes));
                }
                1 => mutate_json(t.get_mut("shape")?, rng),
                _ => mutate_json(t.get_mut("data_offsets")?, rng),
            }
        }
        // the metadata: the architecture, compile and speech JSON strings
        4..=6 if v.get("__metadata__").is_some() => mutate_json(v.get_mut("__metadata__")?, rng),
        // anything in the header
        7 => mutate_json(&mut v, rng),
        _ => match rng.below(2) {
            0 => data.truncate(rng.below(data.len() + 1)),
            _ => data.extend((0..1 + rng.below(64)).map(|_| rng.next() as u8)),
        },
    }
    let mut header = v.to_string().into_bytes();
    while !header.len().is_multiple_of(8) {
        header.push(b' ');
    }
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&header);
    out.extend_from_slice(&data);
    Some(out)
}

/// A structural edit of a WAV file: a chunk size, a `fmt ` field (tag, channels, rate, block
/// align, bits, the extensible sub-format), the RIFF size, an extra or removed chunk, or a NaN
/// or infinity over a sample. `None` when `b` has no RIFF chunks.
fn mutate_wav(b: &[u8], rng: &mut Rng) -> Option<Vec<u8>> {
    if b.len() < 12 || &b[..4] != b"RIFF" {
        return None;
    }
    // (start of the chunk header, id, body length as stored)
    let mut chunks = Vec::new();
    let mut pos = 12usize;
    while pos + 8 <= b.len() {
        let size = u32::from_le_bytes(b[pos + 4..pos + 8].try_into().ok()?);
        chunks.push((pos, b[pos..pos + 4].to_vec(), size as usize));
        pos = pos.checked_add(8 + size as usize + (size as usize & 1))?;
    }
    let mut out = b.to_vec();
    let set16 = |out: &mut Vec<u8>, at: usize, v: u16| {
        if let Some(s) = out.get_mut(at..at + 2) {
            s.copy_from_slice(&v.to_le_bytes());
        }
    };
    let set32 = |out: &mut Vec<u8>, at: usize, v: u32| {
        if let Some(s) = out.get_mut(at..at + 4) {
            s.copy_from_slice(&v.to_le_bytes());
        }
    };
    let fmt = chunks.iter().find(|c| c.1 == b"fmt ").map(|c| c.0 + 8);
    let data = chunks.iter().find(|c| c.1 == b"data").map(|c| (c.0 + 8, c.2));
    match rng.below(10) {
        0..=3 if fmt.is_some() => {
            let f = fmt.unwrap_or(0);
            match rng.below(8) {
                0 => set16(&mut out, f, rng.pick(&[0, 1, 2, 3, 6, 7, 0xFFFE, 0xFFFF])),
                1 => set16(&mut out, f + 2, rng.pick(&[0, 1, 2, 3, 8, 255, 0x8000, 0xFFFF])),
                2 => set32(
                    &mut out,
                    f + 4,
                    rng.pick(&[0, 1, 7999, 8000, 22050, 384_000, 384_001, 0x7FFF_FFFF, u32::MAX]),
                ),
                3 => set32(&mut out, f + 8, rng.pick(&INTERESTING)),
                4 => set16(&mut out, f + 12, rng.pick(&[0, 1, 2, 3, 4, 6, 8, 0xFFFF])),
                5 => set16(&mut out, f + 14, rng.pick(&[0, 1, 4, 8, 12, 16, 20, 24, 32, 33, 64, 0xFFFF])),
                // WAVE_FORMAT_EXTENSIBLE's cbSize, valid bits and sub-format tag
                6 => set16(&mut out, f + 16, rng.pick(&[0, 22, 0xFFFF])),
                _ => set16(&mut out, f + 18 + 2 * rng.below(4), rng.pick(&[0, 1, 3, 24, 32, 0xFFFE])),
            }
        }
        4 | 5 if !chunks.is_empty() => {
            let c = &chunks[rng.below(chunks.len())];
            let v = match rng.below(4) {
                0 => c.2 as u32 + 1,
                1 => (c.2 as u32).wrapping_sub(1),
                _ => rng.pick(&INTERESTING),
            };
            set32(&mut out, c.0 + 4, v);
        }
        6 => set32(&mut out, 4, rng.pick(&INTERESTING)),
        // NaN, infinities and a huge value over a sample (float files must refuse them)
        7 if data.is_some_and(|(_, n)| n >= 4) => {
            let (d, n) = data.unwrap_or((0, 0));
            let at = d + 4 * rng.below(n / 4);
            let bits =
                rng.pick(&[f32::NAN.to_bits(), f32::INFINITY.to_bits(), f32::NEG_INFINITY.to_bits(), 0x7F7F_FFFF]);
            set32(&mut out, at, bits);
        }
        // an unknown or odd-sized chunk before the others, or a chunk removed
        8 if !chunks.is_empty() => {
            let c = &chunks[rng.below(chunks.len())];
            let end = (c.0 + 8 + c.2 + (c.2 & 1)).min(out.len());
            out.drain(c.0..end);
        }
        _ => {
            let n = rng.below(5);
            let mut chunk = b"LIST".to_vec();
            chunk.extend_from_slice(&(n as u32).to_le_bytes());
            chunk.extend((0..n).map(|_| rng.next() as u8));
            out.splice(12..12, chunk);
        }
    }
    Some(out)
}

/// A structure-aware mutator: `None` when it does not apply to the input.
type Structured = fn(&[u8], &mut Rng) -> Option<Vec<u8>>;

/// One mutated copy of a corpus entry: a structural edit (when the target has a mutator)
/// with byte edits on top now and then, or byte edits alone.
fn mutate(corpus: &[Vec<u8>], structured: Option<Structured>, rng: &mut Rng) -> Vec<u8> {
    let base = &corpus[rng.below(corpus.len())];
    if let Some(f) = structured
        && rng.below(2) == 0
        && let Some(edited) = f(base, rng)
    {
        return if rng.below(4) == 0 { mutate_bytes(edited, corpus, rng) } else { edited };
    }
    mutate_bytes(base.clone(), corpus, rng)
}

fn env_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// The files of `tests/fuzz_corpus/<name>/`, sorted: crash inputs found earlier and seeds.
fn corpus_files(name: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_corpus").join(name);
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect();
    paths.sort();
    paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// Feeds the corpus (built seeds plus `tests/fuzz_corpus/<name>/`), then mutants, to `target`
/// until `CONVNET_FUZZ_ITERS` mutants (3000 by default) or `CONVNET_FUZZ_SECONDS` have passed.
/// `target` says whether the reader accepted the input. A panic fails the test after saving
/// the input.
fn fuzz(name: &str, mut corpus: Vec<Vec<u8>>, structured: Option<Structured>, mut target: impl FnMut(&[u8]) -> bool) {
    ALLOC.on_refusal(save_current_on_refusal);
    corpus.extend(corpus_files(name));
    let mut rng =
        Rng(seed() ^ name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3)));
    let iters: usize = env_number("CONVNET_FUZZ_ITERS").unwrap_or(3000);
    let limit = env_number::<f64>("CONVNET_FUZZ_SECONDS").map(Duration::from_secs_f64);
    let started = Instant::now();
    let (mut runs, mut accepted) = (0usize, 0usize);
    let mut slowest = (Duration::ZERO, Vec::new());
    for i in 0..corpus.len() + iters {
        if i >= corpus.len() && i % 256 == 0 && limit.is_some_and(|l| started.elapsed() >= l) {
            break;
        }
        let input = if i < corpus.len() { corpus[i].clone() } else { mutate(&corpus, structured, &mut rng) };
        {
            let mut current = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
            current.0.clear();
            current.0.push_str(name);
            current.1.clone_from(&input);
        }
        let t = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| target(&input)));
        let took = t.elapsed();
        match result {
            Ok(ok) => accepted += usize::from(ok),
            Err(_) => {
                let crash = crash_path(name);
                std::fs::write(&crash, &input).unwrap();
                panic!("{name}: input {i} panicked; saved to {}", crash.display());
            }
        }
        if took > slowest.0 {
            slowest = (took, input);
        }
        runs += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "fuzz {name}: {runs} executions in {secs:.1}s ({:.0}/s), {accepted} accepted, no panic, no allocation \
         over {MAX_ALLOC} bytes; slowest input {:.1} ms ({} bytes)",
        runs as f64 / secs,
        slowest.0.as_secs_f64() * 1e3,
        slowest.1.len()
    );
    // a reader that takes seconds on a few hundred bytes is a hang waiting for a bigger file;
    // timed again, so that a pause of a loaded machine is not taken for one
    let slow = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-slowest-{name}.bin"));
    std::fs::write(&slow, &slowest.1).unwrap();
    let t = Instant::now();
    target(&slowest.1);
    let again = t.elapsed();
    assert!(again < Duration::from_secs(1), "{name}: one input takes {again:?}; saved to {}", slow.display());
}

fn seed() -> u64 {
    env_number("CONVNET_FUZZ_SEED").unwrap_or(0x5EED_F022)
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

/// A WAVE_FORMAT_EXTENSIBLE file (40-byte `fmt `) with a `LIST` chunk before the data.
fn wav_extensible(bits: u16, data: &[u8]) -> Vec<u8> {
    let mut fmt = Vec::new();
    let (channels, rate) = (1u16, 16000u32);
    let align = bits / 8 * channels;
    fmt.extend_from_slice(&0xFFFEu16.to_le_bytes());
    fmt.extend_from_slice(&channels.to_le_bytes());
    fmt.extend_from_slice(&rate.to_le_bytes());
    fmt.extend_from_slice(&(rate * u32::from(align)).to_le_bytes());
    fmt.extend_from_slice(&align.to_le_bytes());
    fmt.extend_from_slice(&bits.to_le_bytes());
    fmt.extend_from_slice(&22u16.to_le_bytes());
    fmt.extend_from_slice(&bits.to_le_bytes());
    fmt.extend_from_slice(&4u32.to_le_bytes()); // channel mask: front centre
    // KSDATAFORMAT_SUBTYPE_PCM
    fmt.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xAA, 0, 0x38, 0x9B, 0x71]);
    let mut body = b"WAVE".to_vec();
    for (id, chunk) in [(b"fmt ", &fmt[..]), (b"LIST", &b"INFOabc"[..]), (b"data", data)] {
        body.extend_from_slice(id);
        body.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
        body.extend_from_slice(chunk);
        if chunk.len() % 2 == 1 {
            body.push(0);
        }
    }
    let mut v = b"RIFF".to_vec();
    v.extend_from_slice(&(body.len() as u32).to_le_bytes());
    v.extend_from_slice(&body);
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
        wav(1, 1, 16000, 24, &pcm[..300]),
        wav(1, 2, 48000, 32, &pcm[..320]),
        wav_extensible(16, &pcm[..200]),
        wav_extensible(24, &pcm[..303]),
    ];
    let path = Path::new("fuzz.wav");
    fuzz("wav", corpus, Some(mutate_wav), |b| {
        // librosa's load: decode, mono, resample (where NaN used to panic) unless native
        let target = match b.len() % 3 {
            0 => convnet::audio::TargetRate::Native,
            1 => convnet::audio::TargetRate::Hz(16000),
            _ => convnet::audio::TargetRate::Hz(22050),
        };
        convnet::audio::load_bytes(b, path, target).is_ok()
    });
}

#[test]
fn fuzz_npy() {
    let corpus = vec![
        convnet_zoo::npy::npy_bytes(&[2, 3, 4], &(0..24).map(|v| v as f32).collect::<Vec<_>>()),
        convnet_zoo::npy::npy_bytes(&[5], &[1.0; 5]),
        convnet_zoo::npy::npy_bytes(&[1, 1, 2, 2], &[0.5; 4]),
    ];
    fuzz("npy", corpus, None, |b| convnet_zoo::npy::parse_npy(b).is_ok());
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
    // gzip-compressed copies are in tests/fuzz_corpus/idx
    let path = Path::new("fuzz-idx3-ubyte");
    fuzz("idx", vec![images, labels], None, |b| {
        let images = convnet::data::parse_idx_images(b, path).is_ok();
        convnet::data::parse_idx_labels(b, path).is_ok() || images
    });
}

/// A tiny keyword model: a 100 ms clip at 8 kHz, 8 coefficients, flatten + dense over 3 labels.
fn tiny_speech_model() -> convnet::speech::SpeechModel {
    use convnet::speech::{Architecture, FrontEnd, SpeechModel, SpeechModelInfo};
    let front_end = FrontEnd {
        sample_rate: 8000,
        clip_duration_ms: 100,
        window_size_ms: 30.0,
        window_stride_ms: 20.0,
        feature_bin_count: 8,
    };
    let mut net = convnet::nn::Sequential::new(front_end.input_shape());
    net.add(convnet::nn::FlattenConfig::new()).unwrap();
    net.add(convnet::nn::DenseConfig::new(3).with_activation(convnet::Activation::Softmax)).unwrap();
    let info = SpeechModelInfo {
        architecture: Architecture::SingleFc,
        labels: vec!["_silence_".into(), "_unknown_".into(), "yes".into()],
        front_end,
        trained_steps: 1,
        validation_accuracy: Some(0.5),
        feature_norm: None,
        recognizer: None,
    };
    SpeechModel::new(net, info).unwrap()
}

#[test]
fn fuzz_model_files() {
    use convnet::nn::{Conv2dConfig, DenseConfig, FlattenConfig, MaxPooling2dConfig, Sequential};
    let dir = tempfile::tempdir().unwrap();
    let saved = |name: &str, save: &dyn Fn(&Path)| {
        let p = dir.path().join(name);
        save(&p);
        std::fs::read(&p).unwrap()
    };
    // zoo checkpoints (timm layout): the whole LeNet-5, and its first conv and classifier alone
    let lenet = || convnet_zoo::create_model("lenet5", convnet_zoo::ZooOpts::new().with_num_classes(3)).unwrap();
    let full = saved("lenet.safetensors", &|p| lenet().save_checkpoint(p).unwrap());
    let mut sd = convnet_zoo::checkpoint::parse_state_dict(&full, Path::new("lenet")).unwrap();
    let first_conv = lenet().pretrained_cfg().first_conv.to_string();
    let classifier = lenet().pretrained_cfg().classifier.to_string();
    sd.retain(|k, _| k.starts_with(&first_conv) || k.starts_with(&classifier));
    let part = saved("part.safetensors", &|p| convnet_zoo::checkpoint::write_state_dict(&sd, "lenet5", p).unwrap());
    // model files with their architecture: a tiny Sequential, compiled and not, and a speech model
    let seq = |compiled: bool| {
        let mut m = Sequential::new([6, 5, 1]);
        m.add(Conv2dConfig::new(2, (3, 3))).unwrap();
        m.add(MaxPooling2dConfig::new((2, 2))).unwrap();
        m.add(FlattenConfig::new()).unwrap();
        m.add(DenseConfig::new(3)).unwrap();
        if compiled {
            m.compile(convnet::Loss::sparse_categorical_crossentropy(), convnet::Adam::default(), &[]).unwrap();
        }
        m
    };
    let corpus = vec![
        full,
        part,
        saved("seq.safetensors", &|p| seq(false).save(p).unwrap()),
        saved("compiled.safetensors", &|p| seq(true).save(p).unwrap()),
        saved("speech.safetensors", &|p| tiny_speech_model().save(p).unwrap()),
    ];
    let path = Path::new("fuzz.safetensors");
    let mut zoo = lenet();
    let (pretrained, lenient) =
        (zoo.pretrained_options(), convnet_zoo::checkpoint::LoadOptions { strict: false, ..zoo.pretrained_options() });
    fuzz("model-files", corpus, Some(mutate_safetensors), |b| {
        let a = convnet_zoo::checkpoint::parse_state_dict(b, path).is_ok();
        let opts = if b.len() % 2 == 0 { &pretrained } else { &lenient };
        let c = zoo.load_checkpoint_bytes(b, path, opts).is_ok();
        let s = match Sequential::from_bytes_with_metadata(b, path) {
            Ok((net, _)) => {
                // a small network runs: what a loaded architecture declares must also work
                let widest = net.layers().iter().map(|l| l.output_shape().iter().product::<usize>()).max();
                if net.input_shape().iter().product::<usize>() <= 1 << 12
                    && widest.unwrap_or(0) <= 1 << 16
                    && net.count_params() <= 1 << 16
                {
                    let mut shape = vec![1];
                    shape.extend_from_slice(net.input_shape());
                    let _ = net.predict(&convnet::Tensor::zeros(shape), 1);
                }
                true
            }
            Err(_) => false,
        };
        let m = match convnet::speech::SpeechModel::from_bytes(b, path) {
            Ok(model) => {
                // its front end and feature standardisation run on a clip
                let n = model.info.front_end.desired_samples();
                if n <= 1 << 14 {
                    let clip: Vec<f32> = (0..n).map(|i| (i as f32 * 0.1).sin() * 0.3).collect();
                    let _ = model.classify(&clip, 3);
                }
                true
            }
            Err(_) => false,
        };
        a && (c || s || m)
    });
}

#[test]
fn fuzz_images() {
    let mut corpus = Vec::new();
    let rgb = image::RgbImage::from_fn(24, 16, |x, y| image::Rgb([(x * 9) as u8, (y * 13) as u8, 77]));
    let grey = image::GrayAlphaImage::from_fn(7, 9, |x, y| image::LumaA([(x * y * 4) as u8, 200]));
    let images: [(image::DynamicImage, image::ImageFormat); 4] = [
        (rgb.clone().into(), image::ImageFormat::Png),
        (rgb.into(), image::ImageFormat::Jpeg),
        (grey.clone().into(), image::ImageFormat::Png),
        (image::DynamicImage::from(grey).to_luma8().into(), image::ImageFormat::Jpeg),
    ];
    for (img, format) in images {
        let mut bytes = std::io::Cursor::new(Vec::new());
        img.write_to(&mut bytes, format).unwrap();
        corpus.push(bytes.into_inner());
    }
    // timm's eval transform at a small input size: the same code as at 224, less arithmetic
    let config = convnet::data::DataConfig { input_size: [3, 32, 32], ..Default::default() };
    let t = convnet::data::EvalTransform::new(&config);
    let path = Path::new("fuzz.png");
    fuzz("images", corpus, None, |b| match convnet::data::decode_image(b) {
        Ok(img) => {
            // `predict`'s MNIST-style digit and `classify`'s transform
            let _ = convnet::data::digit_from_rgb(&img);
            if t.check(&img, path).is_ok() {
                let _ = t.apply(&img);
            }
            true
        }
        Err(_) => false,
    });
}

#[test]
fn fuzz_speech_lists() {
    let corpus = vec![
        b"yes,1000\nno,2500\n# comment\n\nup,40000\n".to_vec(),
        b"_silence_,0\n".to_vec(),
        b"set\tnnn\tspeaker\ntrain\t0001\tjackson\ntest\t0002\ttheo\r\n".to_vec(),
    ];
    let path = Path::new("truth.txt");
    fuzz("speech-lists", corpus, None, |b| {
        // the file readers take text: bytes that are not UTF-8 stop at `read_to_string`
        let Ok(text) = std::str::from_utf8(b) else { return false };
        let truth = convnet::speech::parse_truth(text, path).is_ok();
        convnet::audio::SpeakerTable::parse(text, path).is_ok() || truth
    });
}
