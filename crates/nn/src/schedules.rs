//! Learning-rate schedules with timm's formulas (`timm.scheduler`: `CosineLRScheduler`,
//! `StepLRScheduler`, and the `constant` one of `scheduler_factory`), each with timm's
//! linear warmup. A schedule is a pure function of the base rate and the time `t`, so a
//! resumed run recomputes exactly the rate it would have had.
//!
//! `t` counts epochs, or optimizer updates when `per_step` is set (timm's
//! `sched_on_updates`, whose factory then multiplies every period by the updates per epoch:
//! give `t_initial`, `decay_t` and `warmup_t` in updates in that case).

use serde::{Deserialize, Serialize};

/// timm's linear warmup: for `t < warmup_t` the rate climbs linearly from
/// `warmup_lr_init` (at `t = 0`) towards the base rate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Warmup {
    /// Length of the warmup (epochs or updates), default 0: none.
    #[serde(default)]
    pub warmup_t: usize,
    /// Rate at `t = 0`, default 0.
    #[serde(default)]
    pub warmup_lr_init: f64,
    /// Start the decay after the warmup (`t - warmup_t`) instead of counting the warmup
    /// in it (timm's `warmup_prefix`, default false as in timm's factory).
    #[serde(default)]
    pub warmup_prefix: bool,
}

/// A learning-rate schedule, serialized as `{"sched": "cosine", "t_initial": 300, ...}`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "sched", rename_all = "snake_case")]
pub enum LrSchedule {
    /// The base rate after the warmup (timm's `constant`).
    None {
        /// Warmup.
        #[serde(flatten)]
        warmup: Warmup,
        /// `t` counts updates rather than epochs.
        #[serde(default)]
        per_step: bool,
    },
    /// `base * decay_rate^(t / decay_t)` (integer division): timm's `StepLRScheduler`.
    Step {
        /// Period of the decay in epochs (or updates); 0 counts as 1.
        decay_t: usize,
        /// Factor applied every period.
        decay_rate: f64,
        /// Warmup.
        #[serde(flatten)]
        warmup: Warmup,
        /// `t` counts updates rather than epochs.
        #[serde(default)]
        per_step: bool,
    },
    /// Half a cosine from the base rate down to `lr_min` over `t_initial`, then `lr_min`:
    /// timm's `CosineLRScheduler` (cycle_mul 1, k_decay 1, no noise). With `cycle_limit`
    /// above 1 the cosine restarts, its peak scaled by `cycle_decay` each cycle.
    Cosine {
        /// Length of one cycle in epochs (or updates); 0 counts as 1.
        t_initial: usize,
        /// The floor, default 0.
        #[serde(default)]
        lr_min: f64,
        /// Number of cycles, default 1.
        #[serde(default = "one")]
        cycle_limit: usize,
        /// Peak factor per cycle, default 1.
        #[serde(default = "one_f64")]
        cycle_decay: f64,
        /// Warmup.
        #[serde(flatten)]
        warmup: Warmup,
        /// `t` counts updates rather than epochs.
        #[serde(default)]
        per_step: bool,
    },
}

fn one() -> usize {
    1
}
fn one_f64() -> f64 {
    1.0
}

impl Default for LrSchedule {
    fn default() -> Self {
        LrSchedule::none()
    }
}

impl LrSchedule {
    /// The base rate throughout, per epoch.
    pub fn none() -> Self {
        LrSchedule::None { warmup: Warmup::default(), per_step: false }
    }

    /// Step decay by `decay_rate` every `decay_t`, per epoch, no warmup.
    pub fn step(decay_t: usize, decay_rate: f64) -> Self {
        LrSchedule::Step { decay_t, decay_rate, warmup: Warmup::default(), per_step: false }
    }

    /// One cosine cycle of `t_initial` down to `lr_min`, per epoch, no warmup.
    pub fn cosine(t_initial: usize, lr_min: f64) -> Self {
        LrSchedule::Cosine {
            t_initial,
            lr_min,
            cycle_limit: 1,
            cycle_decay: 1.0,
            warmup: Warmup::default(),
            per_step: false,
        }
    }

    /// Sets a linear warmup of `warmup_t` from `warmup_lr_init`.
    pub fn with_warmup(mut self, warmup_t: usize, warmup_lr_init: f64) -> Self {
        let w = self.warmup_mut();
        w.warmup_t = warmup_t;
        w.warmup_lr_init = warmup_lr_init;
        self
    }

    /// Sets timm's `warmup_prefix`.
    pub fn with_warmup_prefix(mut self, prefix: bool) -> Self {
        self.warmup_mut().warmup_prefix = prefix;
        self
    }

    /// Sets whether `t` counts updates (true) or epochs.
    pub fn with_per_step(mut self, per_step: bool) -> Self {
        match &mut self {
            LrSchedule::None { per_step: p, .. }
            | LrSchedule::Step { per_step: p, .. }
            | LrSchedule::Cosine { per_step: p, .. } => *p = per_step,
        }
        self
    }

    /// The warmup.
    pub fn warmup(&self) -> Warmup {
        match *self {
            LrSchedule::None { warmup, .. } | LrSchedule::Step { warmup, .. } | LrSchedule::Cosine { warmup, .. } => {
                warmup
            }
        }
    }

    fn warmup_mut(&mut self) -> &mut Warmup {
        match self {
            LrSchedule::None { warmup, .. } | LrSchedule::Step { warmup, .. } | LrSchedule::Cosine { warmup, .. } => {
                warmup
            }
        }
    }

    /// Whether `t` counts optimizer updates (timm's `sched_on_updates`) rather than epochs.
    pub fn per_step(&self) -> bool {
        match *self {
            LrSchedule::None { per_step, .. }
            | LrSchedule::Step { per_step, .. }
            | LrSchedule::Cosine { per_step, .. } => per_step,
        }
    }

    /// The rate at `t` for a base rate `base_lr`. timm evaluates epoch schedules at the
    /// epoch index (0 for the first) and update schedules at the count of updates done.
    pub fn lr_at(&self, base_lr: f64, t: usize) -> f64 {
        let w = self.warmup();
        if t < w.warmup_t {
            // timm's order of operations: a per-step increment, then init + t * increment
            let inc = (base_lr - w.warmup_lr_init) / w.warmup_t as f64;
            return w.warmup_lr_init + t as f64 * inc;
        }
        let t = if w.warmup_prefix { t - w.warmup_t } else { t };
        match *self {
            LrSchedule::None { .. } => base_lr,
            LrSchedule::Step { decay_t, decay_rate, .. } => base_lr * decay_rate.powf((t / decay_t.max(1)) as f64),
            LrSchedule::Cosine { t_initial, lr_min, cycle_limit, cycle_decay, .. } => {
                let t_i = t_initial.max(1);
                let cycle = t / t_i;
                if cycle >= cycle_limit {
                    return lr_min;
                }
                let t_curr = t - t_i * cycle;
                let lr_max = base_lr * cycle_decay.powf(cycle as f64);
                let cos = (std::f64::consts::PI * t_curr as f64 / t_i as f64).cos();
                lr_min + 0.5 * (lr_max - lr_min) * (1.0 + cos)
            }
        }
    }

    /// The rate for `epoch` (0-based) after `updates` optimizer updates: [`Self::lr_at`]
    /// of whichever one [`Self::per_step`] selects.
    pub fn lr_for(&self, base_lr: f64, epoch: usize, updates: usize) -> f64 {
        self.lr_at(base_lr, if self.per_step() { updates } else { epoch })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() <= 1e-15 * b.abs().max(1e-300), "{a} vs {b}");
    }

    #[test]
    fn cosine_with_warmup_follows_timm() {
        // timm: CosineLRScheduler(t_initial=10, lr_min=1e-5, warmup_t=2, warmup_lr_init=1e-4)
        let s = LrSchedule::cosine(10, 1e-5).with_warmup(2, 1e-4);
        close(s.lr_at(0.1, 0), 1e-4);
        // 1e-4 + 1 * (0.1 - 1e-4) / 2
        close(s.lr_at(0.1, 1), 0.05005);
        // t = 2: 1e-5 + 0.5 * (0.1 - 1e-5) * (1 + cos(0.2 pi)), cos(0.2 pi) = 0.80901699437494745
        close(s.lr_at(0.1, 2), 1e-5 + 0.5 * 0.09999 * 1.809_016_994_374_947_4);
        // t = 5: the middle, cos(pi / 2) = 6.1e-17
        assert!((s.lr_at(0.1, 5) - 0.050005).abs() < 1e-15);
        // after the only cycle: the floor
        assert_eq!(s.lr_at(0.1, 10), 1e-5);
        assert_eq!(s.lr_at(0.1, 1000), 1e-5);
        // warmup_prefix shifts the cosine by warmup_t
        let p = s.with_warmup_prefix(true);
        assert_eq!(p.lr_at(0.1, 2), 0.1);
        close(p.lr_at(0.1, 4), s.lr_at(0.1, 2));
        // two cycles, the second peak halved: t = 10 starts at 0.5 * base
        let LrSchedule::Cosine { t_initial, lr_min, .. } = s else { unreachable!() };
        let two = LrSchedule::Cosine {
            t_initial,
            lr_min,
            cycle_limit: 2,
            cycle_decay: 0.5,
            warmup: Warmup::default(),
            per_step: false,
        };
        close(two.lr_at(0.1, 10), 1e-5 + 0.5 * (0.05 - 1e-5) * 2.0);
        assert_eq!(two.lr_at(0.1, 20), 1e-5);
    }

    #[test]
    fn step_and_constant_follow_timm() {
        let s = LrSchedule::step(3, 0.5);
        assert_eq!([0, 2, 3, 5, 6, 7].map(|t| s.lr_at(0.1, t)), [0.1, 0.1, 0.05, 0.05, 0.025, 0.025]);
        // warmup 2 from 0 with the prefix: 0, 0.05, then 0.1 for three steps
        let w = s.with_warmup(2, 0.0).with_warmup_prefix(true);
        assert_eq!([0, 1, 2, 4, 5].map(|t| w.lr_at(0.1, t)), [0.0, 0.05, 0.1, 0.1, 0.05]);
        let c = LrSchedule::none().with_warmup(4, 0.02);
        // 0.02 + 1 * (0.1 - 0.02) / 4, exactly as timm rounds it
        assert_eq!(c.lr_at(0.1, 1), 0.02 + (0.1 - 0.02) / 4.0);
        assert_eq!(c.lr_at(0.1, 4), 0.1);
        // per step: the update count picks the rate
        let u = LrSchedule::step(100, 0.1).with_per_step(true);
        assert!(u.per_step());
        assert_eq!(u.lr_for(1.0, 0, 250), 1.0 * 0.1f64.powf(2.0));
        assert_eq!(LrSchedule::step(100, 0.1).lr_for(1.0, 0, 250), 1.0);
    }

    #[test]
    fn schedules_round_trip_through_json() {
        let s = LrSchedule::cosine(300, 1e-6).with_warmup(5, 1e-5).with_per_step(true);
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.starts_with(r#"{"sched":"cosine","t_initial":300"#), "{json}");
        assert_eq!(serde_json::from_str::<LrSchedule>(&json).unwrap(), s);
        // omitted fields take timm's defaults
        let short: LrSchedule = serde_json::from_str(r#"{"sched":"step","decay_t":30,"decay_rate":0.1}"#).unwrap();
        assert_eq!(short, LrSchedule::step(30, 0.1));
        let c: LrSchedule = serde_json::from_str(r#"{"sched":"cosine","t_initial":10}"#).unwrap();
        assert_eq!(c, LrSchedule::cosine(10, 0.0));
        assert!(serde_json::from_str::<LrSchedule>(r#"{"sched":"linear"}"#).is_err());
    }
}
