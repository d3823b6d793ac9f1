//! librosa's feature chain (librosa 0.11): `melspectrogram` (power STFT through a mel
//! filterbank), `power_to_db`, and `mfcc` (orthonormal DCT-II of the dB mel spectrogram, the
//! first `n_mfcc` rows), with librosa's defaults: sr 22050, n_fft 2048, hop 512, n_mels 128,
//! fmin 0, fmax sr/2, Slaney mel scale and norm, ref 1.0, amin 1e-10, top_db 80, n_mfcc 20.
//!
//! The pure functions ([`melspectrogram`], [`power_to_db`], [`dct_ortho`], [`mfcc`]) plan
//! everything per call. For throughput use [`MfccExtractor`] (owns the FFT plan, window, banded
//! filterbank, DCT matrix and scratch buffers; one per thread) or [`MfccTransform`] (shareable,
//! keeps a pool of scratch buffers; batches run in parallel over clips with rayon). Their fused
//! path (`MfccPlan::log_mel`) transforms frames in pairs through one complex FFT, applies the
//! filterbank, dB conversion and DCT to blocks of 8 frames, and runs the hand-vectorised AVX2
//! kernels of `fast.rs` where the CPU has AVX2 and FMA.

use std::sync::{Arc, Mutex};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{AudioError, Result};
use crate::fast::{
    Avx2, PAIRS, SymmetricDct, block_max, detect_avx2, pair_power, pairs_to_block, power_to_db_in_place,
};
use crate::features::{Features, Transform};
use crate::mel::{BLOCK, MelNorm, MelScale, SparseFilterbank, mel_filterbank};
use crate::stft::{StftConfig, StftPlan, StftScratch, spectral_power};
use crate::wav::LIBROSA_DEFAULT_SR;

/// `librosa.power_to_db` parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DbConfig {
    /// Reference power mapped to 0 dB (librosa `ref=1.0`).
    pub ref_value: f32,
    /// Floor applied before the logarithm (librosa `amin=1e-10`).
    pub amin: f32,
    /// Clamp to `max - top_db` over the whole spectrogram (librosa `top_db=80`); `None` disables.
    pub top_db: Option<f32>,
}

impl Default for DbConfig {
    fn default() -> Self {
        DbConfig { ref_value: 1.0, amin: 1e-10, top_db: Some(80.0) }
    }
}

impl DbConfig {
    fn validate(&self) -> Result<()> {
        if self.amin.is_nan() || self.amin < f32::MIN_POSITIVE || self.amin.is_infinite() {
            return Err(AudioError::config(format!(
                "amin is {}; it must be a positive normal f32 (>= {:e})",
                self.amin,
                f32::MIN_POSITIVE
            )));
        }
        if let Some(t) = self.top_db
            && (t.is_nan() || t < 0.0)
        {
            return Err(AudioError::config(format!("top_db is {t}; it must be >= 0")));
        }
        Ok(())
    }

    /// `10 log10(max(amin, ref))`, subtracted from every value.
    fn ref_db(&self) -> f32 {
        10.0 * self.amin.max(self.ref_value.abs()).log10()
    }
}

/// `librosa.power_to_db(S, ref, amin, top_db)`: `10 log10(max(amin, S)) - 10 log10(max(amin,
/// |ref|))`, then clamped below at `max - top_db`. Same shape as `s`.
///
/// Errors: [`AudioError::InvalidConfig`] for `amin <= 0` or `top_db < 0`.
pub fn power_to_db(s: &[f32], cfg: &DbConfig) -> Result<Vec<f32>> {
    cfg.validate()?;
    let r = cfg.ref_db();
    let mut out: Vec<f32> = s.iter().map(|&v| 10.0 * v.max(cfg.amin).log10() - r).collect();
    clamp_top_db(&mut out, cfg.top_db);
    Ok(out)
}

/// `x = max(x, max(x) - top_db)`.
#[inline(always)]
fn clamp_top_db(x: &mut [f32], top_db: Option<f32>) {
    if let Some(top) = top_db {
        let floor = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) - top;
        for v in x.iter_mut() {
            *v = v.max(floor);
        }
    }
}

/// The orthonormal DCT-II matrix `[n_out, n_in]` (scipy `dct(type=2, norm="ortho")`):
/// `D[k, n] = s_k cos(pi k (2n + 1) / (2 n_in))`, `s_0 = sqrt(1 / n_in)`, `s_k = sqrt(2 / n_in)`.
pub fn dct_ortho_matrix(n_out: usize, n_in: usize) -> Vec<f32> {
    let mut d = vec![0.0f32; n_out * n_in];
    let n = n_in as f64;
    for k in 0..n_out {
        let s = if k == 0 { (1.0 / n).sqrt() } else { (2.0 / n).sqrt() };
        for i in 0..n_in {
            d[k * n_in + i] = (s * (std::f64::consts::PI * k as f64 * (2 * i + 1) as f64 / (2.0 * n)).cos()) as f32;
        }
    }
    d
}

/// Orthonormal DCT-II along the rows of `x` (librosa's `axis=-2`), keeping the first `n_out`
/// coefficients: `[n_in, frames] -> [n_out, frames]`.
///
/// Errors: [`AudioError::InvalidConfig`] if `n_out > n_in` or `n_out == 0`.
pub fn dct_ortho(x: &Features, n_out: usize) -> Result<Features> {
    if n_out == 0 || n_out > x.n_coeffs {
        return Err(AudioError::config(format!("n_mfcc is {n_out}; it must be in 1..={}", x.n_coeffs)));
    }
    let d = dct_ortho_matrix(n_out, x.n_coeffs);
    let mut out = vec![0.0; n_out * x.frames];
    dct_apply(&d, &x.data, x.n_coeffs, x.frames, &mut out);
    Ok(Features { data: out, n_coeffs: n_out, frames: x.frames })
}

/// `out[k, :] = sum_n d[k, n] * x[n, :]`, with `x: [n_in, frames]` and `out: [n_out, frames]`.
fn dct_apply(d: &[f32], x: &[f32], n_in: usize, frames: usize, out: &mut [f32]) {
    for (o, drow) in out.chunks_exact_mut(frames).zip(d.chunks_exact(n_in)) {
        o.fill(0.0);
        for (&c, xrow) in drow.iter().zip(x.chunks_exact(frames)) {
            for (a, &b) in o.iter_mut().zip(xrow) {
                *a += c * b;
            }
        }
    }
}

/// `librosa.feature.melspectrogram` parameters, with librosa's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MelSpectrogramConfig {
    /// Input sample rate in Hz (librosa default 22050).
    pub sample_rate: u32,
    /// STFT framing (n_fft 2048, hop 512, centred, zero padding).
    pub stft: StftConfig,
    /// Mel bands (128).
    pub n_mels: usize,
    /// Lowest filter edge in Hz (0).
    pub fmin: f64,
    /// Highest filter edge in Hz; `None` is `sample_rate / 2`.
    pub fmax: Option<f64>,
    /// Mel scale (Slaney).
    pub scale: MelScale,
    /// Filter normalisation (Slaney).
    pub norm: MelNorm,
    /// Exponent of the STFT magnitude (2: power).
    pub power: f32,
}

impl Default for MelSpectrogramConfig {
    fn default() -> Self {
        MelSpectrogramConfig {
            sample_rate: LIBROSA_DEFAULT_SR,
            stft: StftConfig::default(),
            n_mels: 128,
            fmin: 0.0,
            fmax: None,
            scale: MelScale::Slaney,
            norm: MelNorm::Slaney,
            power: 2.0,
        }
    }
}

impl MelSpectrogramConfig {
    /// librosa's defaults at this sample rate.
    pub fn new(sample_rate: u32) -> Self {
        MelSpectrogramConfig { sample_rate, ..Default::default() }
    }

    /// Sets the STFT framing.
    pub fn with_stft(mut self, stft: StftConfig) -> Self {
        self.stft = stft;
        self
    }

    /// Sets the number of mel bands.
    pub fn with_n_mels(mut self, n_mels: usize) -> Self {
        self.n_mels = n_mels;
        self
    }

    /// Sets the filterbank's frequency range in Hz (`fmax = None`: Nyquist).
    pub fn with_freq_range(mut self, fmin: f64, fmax: Option<f64>) -> Self {
        self.fmin = fmin;
        self.fmax = fmax;
        self
    }

    /// Uses the HTK mel scale (librosa `htk=True`).
    pub fn with_htk(mut self, htk: bool) -> Self {
        self.scale = if htk { MelScale::Htk } else { MelScale::Slaney };
        self
    }

    /// Sets the filter normalisation.
    pub fn with_norm(mut self, norm: MelNorm) -> Self {
        self.norm = norm;
        self
    }

    /// Sets the magnitude exponent (2: power, 1: magnitude).
    pub fn with_power(mut self, power: f32) -> Self {
        self.power = power;
        self
    }

    /// The dense filterbank `[n_mels, 1 + n_fft / 2]`.
    pub fn filterbank(&self) -> Result<Vec<f32>> {
        self.stft.validate()?;
        if let Some(fmax) = self.fmax
            && fmax > f64::from(self.sample_rate) / 2.0
        {
            return Err(AudioError::config(format!(
                "fmax {fmax} Hz is above the Nyquist frequency {} Hz",
                f64::from(self.sample_rate) / 2.0
            )));
        }
        if self.power.is_nan() || self.power <= 0.0 {
            return Err(AudioError::config(format!("power is {}; it must be > 0", self.power)));
        }
        mel_filterbank(self.sample_rate, self.stft.n_fft, self.n_mels, self.fmin, self.fmax, self.scale, self.norm)
    }
}

/// `librosa.feature.mfcc` parameters: the mel spectrogram, the dB conversion and `n_mfcc`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MfccConfig {
    /// The mel power spectrogram.
    pub mel: MelSpectrogramConfig,
    /// `power_to_db` applied to it.
    pub db: DbConfig,
    /// Coefficients kept (librosa default 20).
    pub n_mfcc: usize,
}

impl Default for MfccConfig {
    fn default() -> Self {
        MfccConfig { mel: MelSpectrogramConfig::default(), db: DbConfig::default(), n_mfcc: 20 }
    }
}

impl MfccConfig {
    /// librosa's defaults at this sample rate with `n_mfcc` coefficients.
    pub fn new(sample_rate: u32, n_mfcc: usize) -> Self {
        MfccConfig { mel: MelSpectrogramConfig::new(sample_rate), n_mfcc, ..Default::default() }
    }

    /// Sets the mel spectrogram parameters.
    pub fn with_mel(mut self, mel: MelSpectrogramConfig) -> Self {
        self.mel = mel;
        self
    }

    /// Sets the dB conversion.
    pub fn with_db(mut self, db: DbConfig) -> Self {
        self.db = db;
        self
    }

    /// Sets the number of coefficients.
    pub fn with_n_mfcc(mut self, n_mfcc: usize) -> Self {
        self.n_mfcc = n_mfcc;
        self
    }
}

/// `librosa.feature.melspectrogram(y=y, sr, ...)`: `y: [n] -> [n_mels, frames]` (power, not dB).
pub fn melspectrogram(y: &[f32], cfg: &MelSpectrogramConfig) -> Result<Features> {
    let fb = SparseFilterbank::from_dense(&cfg.filterbank()?, cfg.stft.n_bins());
    let plan = StftPlan::new(&cfg.stft)?;
    let mut scratch = plan.scratch();
    let frames = cfg.stft.frames(y.len())?;
    let mut power = vec![0.0f32; cfg.stft.n_bins()];
    let mut data = vec![0.0f32; cfg.n_mels * frames];
    plan.for_each_frame(y, &mut scratch, |t, spec| {
        for (p, &v) in power.iter_mut().zip(spec) {
            *p = spectral_power(v, cfg.power);
        }
        for m in 0..cfg.n_mels {
            data[m * frames + t] = fb.apply_one(m, &power);
        }
    })?;
    Ok(Features { data, n_coeffs: cfg.n_mels, frames })
}

/// `librosa.feature.mfcc(y=y, sr, n_mfcc, ...)`: `y: [n] -> [n_mfcc, frames]`. Plans everything
/// per call; use [`MfccExtractor`] or [`MfccTransform`] for many clips.
pub fn mfcc(y: &[f32], cfg: &MfccConfig) -> Result<Features> {
    MfccExtractor::new(*cfg)?.mfcc(y)
}

/// Everything about an MFCC front end that does not change between clips.
#[derive(Debug)]
struct MfccPlan {
    cfg: MfccConfig,
    stft: StftPlan,
    fb: SparseFilterbank,
    dct: SymmetricDct,
    ref_db: f32,
}

/// Per-thread buffers.
#[derive(Debug, Clone)]
struct MfccScratch {
    stft: StftScratch,
    /// `[PAIRS, 2 n_bins]`: power spectra of the current block's frame pairs, each pair
    /// interleaved (`|X_t[k]|^2, |X_{t+1}[k]|^2` side by side).
    pairs: Vec<f32>,
    /// `[n_bins, BLOCK]`: power spectra of the current block of frames, bin-major.
    power: Vec<f32>,
    /// `[n_mels, BLOCK]`: their mel energies, then dB.
    mel_block: Vec<f32>,
    /// `[n_mels, frames rounded up to BLOCK]` dB; the padding columns hold finite junk.
    mel: Vec<f32>,
    /// DCT scratch.
    sym: Vec<f32>,
}

impl MfccPlan {
    fn new(cfg: MfccConfig) -> Result<Self> {
        cfg.db.validate()?;
        let dense = cfg.mel.filterbank()?;
        if cfg.n_mfcc == 0 || cfg.n_mfcc > cfg.mel.n_mels {
            return Err(AudioError::config(format!("n_mfcc is {}; it must be in 1..={}", cfg.n_mfcc, cfg.mel.n_mels)));
        }
        let dct = dct_ortho_matrix(cfg.n_mfcc, cfg.mel.n_mels);
        Ok(MfccPlan {
            stft: StftPlan::new(&cfg.mel.stft)?,
            fb: SparseFilterbank::from_dense(&dense, cfg.mel.stft.n_bins()),
            dct: SymmetricDct::new(&dct, cfg.n_mfcc, cfg.mel.n_mels),
            ref_db: cfg.db.ref_db(),
            cfg,
        })
    }

    fn scratch(&self) -> MfccScratch {
        let n_bins = self.cfg.mel.stft.n_bins();
        MfccScratch {
            stft: self.stft.scratch(),
            pairs: vec![0.0; PAIRS * 2 * n_bins],
            power: vec![0.0; n_bins * BLOCK],
            mel_block: vec![0.0; self.cfg.mel.n_mels * BLOCK],
            mel: Vec::new(),
            sym: Vec::new(),
        }
    }

    /// Fills `s.mel` with the clamped dB mel spectrogram `[n_mels, stride]` (`stride`: `frames`
    /// rounded up to [`BLOCK`]); returns `(frames, stride)`.
    ///
    /// Frames go through the FFT two at a time ([`StftPlan::pair_spectrum`], split by
    /// [`pair_power`]) and through the filterbank [`BLOCK`] at a time: the four pairs' power
    /// spectra are interleaved bin-major ([`pairs_to_block`]) so that the filterbank is a
    /// sequence of short vector multiply-adds, and each block is converted to dB while it is
    /// still in cache. Only the `top_db` clamp needs the whole clip.
    #[inline(always)]
    fn log_mel(&self, simd: Avx2, y: &[f32], s: &mut MfccScratch) -> Result<(usize, usize)> {
        let frames = self.stft.check(y)?;
        let n_mels = self.cfg.mel.n_mels;
        let power = self.cfg.mel.power;
        let pair_len = 2 * self.cfg.mel.stft.n_bins();
        let stride = frames.next_multiple_of(BLOCK);
        // Every column is overwritten below, so a reused buffer needs no clearing.
        s.mel.resize(n_mels * stride, 0.0);
        let mut max = f32::NEG_INFINITY;
        for t0 in (0..frames).step_by(BLOCK) {
            // Pairs past the last frame keep the previous block's (finite) values; their
            // columns are padding.
            for (p, t) in (t0..frames.min(t0 + BLOCK)).step_by(2).enumerate() {
                let z = self.stft.pair_spectrum(y, t, t + 1 < frames, &mut s.stft, simd);
                let pp = &mut s.pairs[p * pair_len..(p + 1) * pair_len];
                pair_power(simd, pulp::bytemuck::cast_slice(z), pp);
                if power != 2.0 {
                    for v in pp.iter_mut() {
                        *v = if power == 1.0 { v.sqrt() } else { v.powf(power * 0.5) };
                    }
                }
            }
            pairs_to_block(simd, &s.pairs, pair_len, pair_len / 2, &mut s.power);
            self.fb.apply_block(simd, &s.power, &mut s.mel_block);
            power_to_db_in_place(simd, &mut s.mel_block, self.cfg.db.amin, self.ref_db);
            if self.cfg.db.top_db.is_some() {
                max = max.max(block_max(simd, &s.mel_block, (frames - t0).min(BLOCK)));
            }
            for (row, blk) in s.mel.chunks_exact_mut(stride).zip(s.mel_block.chunks_exact(BLOCK)) {
                row[t0..t0 + BLOCK].copy_from_slice(blk);
            }
        }
        if let Some(top) = self.cfg.db.top_db {
            // `max` is over the real frames only; the clamp may touch the padding too.
            let floor = max - top;
            for v in s.mel.iter_mut() {
                *v = if *v > floor { *v } else { floor };
            }
        }
        Ok((frames, stride))
    }

    /// The dB mel spectrogram left in `s.mel` by [`MfccPlan::log_mel`], without its padding.
    fn mel_features(&self, s: &MfccScratch, frames: usize, stride: usize) -> Features {
        let mut data = Vec::with_capacity(self.cfg.mel.n_mels * frames);
        for row in s.mel.chunks_exact(stride) {
            data.extend_from_slice(&row[..frames]);
        }
        Features { data, n_coeffs: self.cfg.mel.n_mels, frames }
    }

    /// MFCCs of one clip. The whole per-clip computation runs inside `pulp`'s run-time CPU
    /// dispatch, so the loops below (all inlined into it) are compiled for AVX2/FMA where the
    /// CPU has it, using the hand-vectorised kernels of `fast.rs`, and for the baseline
    /// instruction set elsewhere; the arithmetic and its order are the same.
    fn mfcc(&self, y: &[f32], s: &mut MfccScratch) -> Result<Features> {
        Dispatched { plan: self, y, s, dct: true, simd: None }.run()
    }

    /// The dB mel spectrogram `[n_mels, frames]` ([`MfccPlan::log_mel`] inside the CPU
    /// dispatch).
    fn log_mel_features(&self, y: &[f32], s: &mut MfccScratch) -> Result<Features> {
        Dispatched { plan: self, y, s, dct: false, simd: None }.run()
    }

    #[inline(always)]
    fn mfcc_impl(&self, simd: Avx2, y: &[f32], s: &mut MfccScratch) -> Result<Features> {
        let (frames, stride) = self.log_mel(simd, y, s)?;
        let n = self.cfg.n_mfcc;
        let mut data = vec![0.0; n * frames];
        self.dct.apply(simd, &s.mel, stride, frames, &mut s.sym, &mut data);
        Ok(Features { data, n_coeffs: n, frames })
    }

    fn output_shape(&self, n_samples: usize, n_coeffs: usize) -> Result<(usize, usize)> {
        Ok((n_coeffs, self.cfg.mel.stft.frames(n_samples)?))
    }
}

/// One clip's work as a `pulp` operation: `with_simd` is compiled once per instruction set and
/// everything it calls is inlined into it.
struct Dispatched<'a> {
    plan: &'a MfccPlan,
    y: &'a [f32],
    s: &'a mut MfccScratch,
    /// Also take the DCT (MFCC) rather than stopping at the dB mel spectrogram.
    dct: bool,
    /// The hand-vectorised kernels' level, set by [`Dispatched::run`].
    simd: Avx2,
}

impl Dispatched<'_> {
    /// Runs inside `V3::vectorize` with the AVX2 kernels where the CPU has AVX2 and FMA,
    /// otherwise through `pulp`'s generic dispatch with the plain loops.
    fn run(self) -> Result<Features> {
        match detect_avx2() {
            #[cfg(target_arch = "x86_64")]
            Some(v3) => pulp::Simd::vectorize(v3, Dispatched { simd: Some(v3), ..self }),
            _ => pulp::Arch::new().dispatch(self),
        }
    }
}

impl pulp::WithSimd for Dispatched<'_> {
    type Output = Result<Features>;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> Self::Output {
        if self.dct {
            self.plan.mfcc_impl(self.simd, self.y, self.s)
        } else {
            let (frames, stride) = self.plan.log_mel(self.simd, self.y, self.s)?;
            Ok(self.plan.mel_features(self.s, frames, stride))
        }
    }
}

/// A reusable MFCC front end for one thread: owns the FFT plan, window, banded filterbank, DCT
/// matrix and scratch buffers, so each clip costs only the arithmetic.
#[derive(Debug)]
pub struct MfccExtractor {
    plan: Arc<MfccPlan>,
    scratch: MfccScratch,
}

impl MfccExtractor {
    /// Plans the front end. Errors: [`AudioError::InvalidConfig`].
    pub fn new(cfg: MfccConfig) -> Result<Self> {
        let plan = Arc::new(MfccPlan::new(cfg)?);
        let scratch = plan.scratch();
        Ok(MfccExtractor { plan, scratch })
    }

    /// The configuration.
    pub fn config(&self) -> &MfccConfig {
        &self.plan.cfg
    }

    /// MFCCs of one clip, `y: [n] -> [n_mfcc, frames]`.
    ///
    /// Errors: [`AudioError::TooShort`] if `y` is shorter than `n_fft`.
    pub fn mfcc(&mut self, y: &[f32]) -> Result<Features> {
        self.plan.mfcc(y, &mut self.scratch)
    }

    /// The dB mel spectrogram the MFCCs are computed from, `y: [n] -> [n_mels, frames]`
    /// (`power_to_db(melspectrogram(y))`).
    pub fn log_mel(&mut self, y: &[f32]) -> Result<Features> {
        self.plan.log_mel_features(y, &mut self.scratch)
    }

    /// MFCCs of many clips in parallel (rayon, tasks of at least 4 clips, one scratch per
    /// task).
    pub fn mfcc_batch(&self, clips: &[&[f32]]) -> Vec<Result<Features>> {
        let plan = &self.plan;
        clips.par_iter().with_min_len(CLIPS_PER_TASK).map_init(|| plan.scratch(), |s, y| plan.mfcc(y, s)).collect()
    }
}

/// [`MfccExtractor`] as a shareable [`Transform`]: `MfccTransform::new(cfg)?.apply(&samples)`.
/// Scratch buffers are kept in a small pool, so concurrent `apply` calls do not allocate
/// after warm-up.
#[derive(Debug)]
pub struct MfccTransform {
    plan: Arc<MfccPlan>,
    pool: Mutex<Vec<MfccScratch>>,
}

impl MfccTransform {
    /// Plans the front end. Errors: [`AudioError::InvalidConfig`].
    pub fn new(cfg: MfccConfig) -> Result<Self> {
        Ok(MfccTransform { plan: Arc::new(MfccPlan::new(cfg)?), pool: Mutex::new(Vec::new()) })
    }

    /// The configuration.
    pub fn config(&self) -> &MfccConfig {
        &self.plan.cfg
    }

    /// Scratch buffers from the pool (or new ones), returned to it when dropped.
    fn scratch(&self) -> Pooled<'_> {
        let taken = self.pool.lock().map(|mut p| p.pop()).unwrap_or(None);
        Pooled { pool: &self.pool, s: Some(taken.unwrap_or_else(|| self.plan.scratch())) }
    }

    fn with_scratch<T>(&self, f: impl FnOnce(&mut MfccScratch) -> T) -> T {
        f(self.scratch().get())
    }
}

/// Clips per rayon task at least in [`MfccTransform::apply_batch`]: a clip takes about 0.1 ms,
/// so this keeps task splitting and scratch hand-outs well below 1 % of the work while still
/// balancing small batches over two cores.
const CLIPS_PER_TASK: usize = 4;

/// Scratch buffers borrowed from a [`MfccTransform`]'s pool; dropping returns them.
struct Pooled<'a> {
    pool: &'a Mutex<Vec<MfccScratch>>,
    s: Option<MfccScratch>,
}

impl Pooled<'_> {
    fn get(&mut self) -> &mut MfccScratch {
        self.s.as_mut().expect("present until dropped")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let (Some(s), Ok(mut p)) = (self.s.take(), self.pool.lock()) {
            p.push(s);
        }
    }
}

impl Transform for MfccTransform {
    fn sample_rate(&self) -> u32 {
        self.plan.cfg.mel.sample_rate
    }

    fn output_shape(&self, n_samples: usize) -> Result<(usize, usize)> {
        self.plan.output_shape(n_samples, self.plan.cfg.n_mfcc)
    }

    fn apply(&self, samples: &[f32]) -> Result<Features> {
        self.with_scratch(|s| self.plan.mfcc(samples, s))
    }

    /// In parallel over clips (rayon, tasks of at least 4 clips), each task with scratch
    /// buffers from the pool, so a warm transform allocates only the outputs.
    fn apply_batch(&self, clips: &[&[f32]]) -> Vec<Result<Features>> {
        clips
            .par_iter()
            .with_min_len(CLIPS_PER_TASK)
            .map_init(|| self.scratch(), |s, y| self.plan.mfcc(y, s.get()))
            .collect()
    }
}

/// The dB mel spectrogram as a [`Transform`] (`power_to_db(melspectrogram(y))`, `[n_mels,
/// frames]`), for CNNs that take log-mel "images" rather than MFCCs.
#[derive(Debug)]
pub struct LogMelTransform {
    inner: MfccTransform,
}

impl LogMelTransform {
    /// Plans the front end. Errors: [`AudioError::InvalidConfig`].
    pub fn new(mel: MelSpectrogramConfig, db: DbConfig) -> Result<Self> {
        Ok(LogMelTransform { inner: MfccTransform::new(MfccConfig { mel, db, n_mfcc: 1 })? })
    }
}

impl Transform for LogMelTransform {
    fn sample_rate(&self) -> u32 {
        self.inner.sample_rate()
    }

    fn output_shape(&self, n_samples: usize) -> Result<(usize, usize)> {
        self.inner.plan.output_shape(n_samples, self.inner.plan.cfg.mel.n_mels)
    }

    fn apply(&self, samples: &[f32]) -> Result<Features> {
        let plan = &self.inner.plan;
        self.inner.with_scratch(|s| plan.log_mel_features(samples, s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chirp(n: usize, sr: f32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let t = i as f32 / sr;
                0.3 * (2.0 * std::f32::consts::PI * (200.0 + 1500.0 * t) * t).sin()
                    + 0.01 * ((i * 7919) % 13) as f32 / 13.0
            })
            .collect()
    }

    #[test]
    fn power_to_db_matches_librosa_formula() {
        let s = [1.0, 0.1, 1e-12, 100.0];
        let db = power_to_db(&s, &DbConfig::default()).unwrap();
        assert_eq!(db, vec![0.0, -10.0, -60.0, 20.0]); // -100 clamped to 20 - 80
        let raw = power_to_db(&s, &DbConfig { top_db: None, ref_value: 10.0, ..Default::default() }).unwrap();
        assert!((raw[2] + 110.0).abs() < 1e-4 && (raw[3] - 10.0).abs() < 1e-5);
        assert!(power_to_db(&s, &DbConfig { amin: 0.0, ..Default::default() }).is_err());
    }

    #[test]
    fn dct_is_orthonormal() {
        let n = 13;
        let d = dct_ortho_matrix(n, n);
        for a in 0..n {
            for b in 0..n {
                let dot: f32 = (0..n).map(|i| d[a * n + i] * d[b * n + i]).sum();
                assert!((dot - if a == b { 1.0 } else { 0.0 }).abs() < 1e-6, "{a},{b}: {dot}");
            }
        }
        // A constant signal has only a DC coefficient, sqrt(n) * c.
        let x = Features { data: vec![2.0; 3 * 5], n_coeffs: 5, frames: 3 };
        let y = dct_ortho(&x, 4).unwrap();
        assert!((y.get(0, 1) - 2.0 * 5f32.sqrt()).abs() < 1e-5);
        assert!((1..4).all(|k| y.get(k, 2).abs() < 1e-5));
        assert!(dct_ortho(&x, 6).is_err());
    }

    /// The fused extractor equals the chain of pure functions.
    #[test]
    fn extractor_equals_pure_chain() {
        let y = chirp(9001, 16000.0);
        let cfg = MfccConfig::new(16000, 40).with_mel(MelSpectrogramConfig::new(16000).with_n_mels(64));
        let mel = melspectrogram(&y, &cfg.mel).unwrap();
        let db = power_to_db(&mel.data, &cfg.db).unwrap();
        let want = dct_ortho(&Features { data: db.clone(), n_coeffs: 64, frames: mel.frames }, 40).unwrap();
        let mut ex = MfccExtractor::new(cfg).unwrap();
        let got = ex.mfcc(&y).unwrap();
        assert_eq!((got.n_coeffs, got.frames), (40, 1 + 9001 / 512));
        let scale = want.data.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (a, b) in got.data.iter().zip(&want.data) {
            assert!((a - b).abs() <= 1e-5 * scale, "{a} vs {b}");
        }
        let lm = ex.log_mel(&y).unwrap();
        let e = lm.data.iter().zip(&db).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        // Frames share FFTs in pairs: rounding of the louder frame leaks into the quieter one's
        // faintest bins (about 4e-4 dB here, near the 80 dB floor).
        assert!(e < 2e-3, "log-mel differs by {e} dB");

        let t = MfccTransform::new(cfg).unwrap();
        assert_eq!(t.apply(&y).unwrap(), got);
        assert_eq!(t.output_shape(9001).unwrap(), (40, 18));
        let short = vec![0.0; 100];
        let batch = t.apply_batch(&[&y, &short, &y]);
        assert_eq!(batch[0].as_ref().unwrap(), &got);
        assert!(matches!(batch[1], Err(AudioError::TooShort { samples: 100, needed: 2048, .. })));
        assert_eq!(ex.mfcc_batch(&[&y])[0].as_ref().unwrap(), &got);
        let lmt = LogMelTransform::new(cfg.mel, cfg.db).unwrap();
        assert_eq!(lmt.apply(&y).unwrap(), lm);
        assert_eq!(lmt.output_shape(9001).unwrap(), (64, 18));
    }

    /// The fused path on shapes the 1 s default never takes: odd frame counts (a lone last
    /// frame in its FFT pair and a part-filled last block), odd `n_fft`, reflect padding,
    /// magnitude instead of power, and no `top_db` clamp.
    #[test]
    fn extractor_equals_pure_chain_on_odd_shapes() {
        let y = chirp(3001, 8000.0);
        let stft = |n_fft: usize, hop: usize| StftConfig::new(n_fft).with_hop_length(hop);
        // Frames share FFTs in pairs, so rounding of the louder frame leaks into the quieter
        // one's faintest bins; unclamped magnitudes (second case) show it most, at 0.017 dB 53 dB
        // below the top (the same before and after the kernels of `fast.rs`).
        for (mel, db, tol_db) in [
            (MelSpectrogramConfig::new(8000).with_stft(stft(256, 100)).with_n_mels(40), DbConfig::default(), 2e-3),
            (
                MelSpectrogramConfig::new(8000)
                    .with_stft(stft(255, 64).with_pad_mode(crate::PadMode::Reflect))
                    .with_n_mels(24)
                    .with_power(1.0),
                DbConfig { top_db: None, ..Default::default() },
                0.05,
            ),
            (
                MelSpectrogramConfig::new(8000).with_stft(stft(200, 77).with_center(false)).with_n_mels(33),
                DbConfig { top_db: Some(30.0), ..Default::default() },
                2e-3,
            ),
        ] {
            let cfg = MfccConfig::new(8000, 13).with_mel(mel).with_db(db);
            let m = melspectrogram(&y, &cfg.mel).unwrap();
            let want_db = power_to_db(&m.data, &cfg.db).unwrap();
            let want =
                dct_ortho(&Features { data: want_db.clone(), n_coeffs: mel.n_mels, frames: m.frames }, 13).unwrap();
            let mut ex = MfccExtractor::new(cfg).unwrap();
            let lm = ex.log_mel(&y).unwrap();
            assert_eq!((lm.n_coeffs, lm.frames), (mel.n_mels, m.frames));
            let e = lm.data.iter().zip(&want_db).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(e < tol_db, "{mel:?}: log-mel differs by {e} dB");
            let got = ex.mfcc(&y).unwrap();
            assert_eq!((got.n_coeffs, got.frames), (13, m.frames));
            let scale = want.data.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            for (a, b) in got.data.iter().zip(&want.data) {
                assert!((a - b).abs() <= 1e-4 * scale, "{mel:?}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn bad_configs_are_errors() {
        assert!(MfccExtractor::new(MfccConfig::new(22050, 0)).is_err());
        assert!(MfccExtractor::new(MfccConfig::new(22050, 129)).is_err());
        let mel = MelSpectrogramConfig::new(16000).with_freq_range(0.0, Some(9000.0));
        assert!(MfccTransform::new(MfccConfig::default().with_mel(mel)).is_err());
        let e = mfcc(&[0.0; 10], &MfccConfig::default()).unwrap_err();
        assert!(e.to_string().contains("10 samples is shorter than one analysis window of 2048"), "{e}");
    }

    #[test]
    fn htk_and_unnormalised_options_change_the_result() {
        let y = chirp(4096, 22050.0);
        let base = mfcc(&y, &MfccConfig::new(22050, 13)).unwrap();
        let htk =
            mfcc(&y, &MfccConfig::new(22050, 13).with_mel(MelSpectrogramConfig::new(22050).with_htk(true))).unwrap();
        assert_eq!((base.n_coeffs, base.frames), (htk.n_coeffs, htk.frames));
        assert!(base.data.iter().zip(&htk.data).any(|(a, b)| (a - b).abs() > 1e-2));
    }
}
