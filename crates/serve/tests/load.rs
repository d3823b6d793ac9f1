//! Load test: 2,000 mixed requests from 32 concurrent clients against an in-process server —
//! drawn digits, photos (EfficientNet-Lite0 when `CONVNET_SHARED` has its checkpoint), WAV
//! clips, and bad ones: oversized bodies, garbage, truncated WAVs, images over the pixel limit,
//! clips over the duration limit, unknown models. Every well-formed request must succeed,
//! every bad one must get a 4xx, and memory must stay bounded. Latency percentiles are printed
//! (`--nocapture`), not asserted.

use convnet_serve::api::Server;
use convnet_serve::models::{Models, SOUND_FILE};
use convnet_serve::{Limits, ServeConfig};
use std::io::Cursor;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const REQUESTS: usize = 2000;
const CLIENTS: usize = 32;
const LITE0: &str = "fixtures/pretrained/tf_efficientnet_lite0.safetensors";

/// The server's limits in this test: small, so that bad requests are cheap to make.
const LIMITS: Limits = Limits { max_upload_bytes: 1 << 20, max_pixels: 1_000_000, max_audio_seconds: 2.0, queue: 64 };

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok());
    kb.unwrap_or(0) * 1024
}

fn png(w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb(f(x, y)));
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
    out
}

/// 16-bit mono PCM WAV of a tone.
fn wav(seconds: f64, rate: u32) -> Vec<u8> {
    let n = (seconds * f64::from(rate)) as usize;
    let data: Vec<u8> = (0..n)
        .flat_map(|i| {
            (((i as f64 * 440.0 * std::f64::consts::TAU / f64::from(rate)).sin() * 8000.0) as i16).to_le_bytes()
        })
        .collect();
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(2 * rate).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&data);
    out
}

/// One request of the mix: path, body, whether it is well-formed.
struct Req {
    path: String,
    body: Arc<Vec<u8>>,
    good: bool,
}

#[test]
fn two_thousand_mixed_requests_from_32_clients() {
    let dir = tempfile::tempdir().unwrap();
    let photo = std::env::var_os("CONVNET_SHARED").map(|s| PathBuf::from(s).join(LITE0)).filter(|p| p.is_file());
    match &photo {
        Some(p) => std::os::unix::fs::symlink(p, dir.path().join("tf_efficientnet_lite0.safetensors")).unwrap(),
        None => eprintln!("CONVNET_SHARED lacks {LITE0}: the mix has no photo requests"),
    }
    // untrained models answer as fast as trained ones
    let sound = convnet::models::sound_digit_cnn(40, 44, 1).unwrap();
    sound.save(dir.path().join(SOUND_FILE)).unwrap();
    let digits = convnet::models::mnist_cnn(1).unwrap();
    let models = Models::load(digits, dir.path(), LIMITS).unwrap();
    assert_eq!(models.photos.len(), usize::from(photo.is_some()));

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let config = ServeConfig { addr: "127.0.0.1:0".parse().unwrap(), models: dir.path().into(), limits: LIMITS };
    let server = runtime.block_on(Server::bind(&config, models)).unwrap();
    let base = format!("http://{}", server.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = runtime.spawn(server.run(async {
        let _ = stopped.await;
    }));

    let digit =
        Arc::new(png(
            200,
            200,
            |x, y| if (90..110).contains(&x) && (30..170).contains(&y) { [0; 3] } else { [255; 3] },
        ));
    let photo_bytes = Arc::new(png(160, 120, |x, y| [(x * 3 % 256) as u8, (y * 5 % 256) as u8, 128]));
    let clip = Arc::new(wav(0.6, 16000));
    let oversized = Arc::new(vec![0u8; (LIMITS.max_upload_bytes + (1 << 19)) as usize]);
    let garbage = Arc::new(b"this is not an image, nor a sound".repeat(20));
    let truncated_wav = Arc::new(clip[..30].to_vec());
    let too_many_pixels = Arc::new(png(1200, 1000, |_, _| [200; 3]));
    let too_long = Arc::new(wav(3.0, 8000));
    let mix = |i: usize| -> Req {
        let r = |path: &str, body: &Arc<Vec<u8>>, good: bool| Req { path: path.to_string(), body: body.clone(), good };
        match i % 20 {
            0..=5 => r("/api/digit", &digit, true),
            6..=8 if photo.is_some() => r("/api/classify?model=tf_efficientnet_lite0", &photo_bytes, true),
            6..=8 => r("/api/digit", &digit, true),
            9..=12 => r("/api/audio", &clip, true),
            13 => r(["/api/digit", "/api/audio", "/api/classify"][i / 20 % 3], &oversized, false),
            14 => r("/api/digit", &garbage, false),
            15 => r("/api/audio", &truncated_wav, false),
            16 => r("/api/digit", &too_many_pixels, false),
            17 => r("/api/audio", &too_long, false),
            18 => r("/api/classify?model=no_such_model", &photo_bytes, false),
            _ => r("/api/audio", &garbage, false),
        }
    };
    let requests: Arc<Vec<Req>> = Arc::new((0..REQUESTS).map(mix).collect());

    let rss_before = rss_bytes();
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let requests = requests.clone();
            let base = base.clone();
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .proxy(None)
                    .timeout_global(Some(Duration::from_secs(300)))
                    .build()
                    .into();
                let mut out = Vec::new();
                for i in (c..REQUESTS).step_by(CLIENTS) {
                    let req = &requests[i];
                    let t = Instant::now();
                    let status = match agent.post(format!("{base}{}", req.path)).send(&req.body[..]) {
                        Ok(mut resp) => {
                            let _ = resp.body_mut().read_to_vec();
                            resp.status().as_u16()
                        }
                        Err(e) => panic!("request {i} ({}) failed without an answer: {e}", req.path),
                    };
                    out.push((i, status, t.elapsed()));
                }
                out
            })
        })
        .collect();
    let mut results: Vec<(usize, u16, Duration)> = clients.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let wall = started.elapsed();
    let rss_after = rss_bytes();
    let _ = stop.send(());
    runtime.block_on(serving).unwrap().unwrap();

    results.sort_by_key(|r| r.0);
    assert_eq!(results.len(), REQUESTS);
    let failed_good: Vec<_> = results.iter().filter(|(i, s, _)| requests[*i].good && *s != 200).collect();
    let bad_not_4xx: Vec<_> =
        results.iter().filter(|(i, s, _)| !requests[*i].good && !(400..500).contains(s)).collect();
    let mut lat: Vec<f64> = results.iter().map(|r| r.2.as_secs_f64() * 1e3).collect();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize];
    let good = results.iter().filter(|(i, ..)| requests[*i].good).count();
    eprintln!(
        "{REQUESTS} requests ({good} well-formed) from {CLIENTS} clients in {:.1} s: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
         RSS {:.0} MB before, {:.0} MB after",
        wall.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        pct(1.0),
        rss_before as f64 / 1e6,
        rss_after as f64 / 1e6
    );
    let statuses = |v: &[&(usize, u16, Duration)]| -> Vec<String> {
        v.iter().take(10).map(|(i, s, _)| format!("#{i} {} -> {s}", requests[*i].path)).collect()
    };
    assert!(failed_good.is_empty(), "well-formed requests failed: {:?}", statuses(&failed_good));
    assert!(bad_not_4xx.is_empty(), "bad requests without a 4xx: {:?}", statuses(&bad_not_4xx));
    let oversized_413 = results.iter().filter(|(i, s, _)| i % 20 == 13 && *s == 413).count();
    assert_eq!(oversized_413, REQUESTS / 20, "every oversized upload gets 413");
    // 32 clients each holding at most one 1.5 MB upload, plus the models: far below 1 GB of growth
    assert!(rss_after < rss_before + (1 << 30), "memory grew from {rss_before} to {rss_after} bytes");
}
