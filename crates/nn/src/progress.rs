//! Keras-style progress output of `fit`, on stderr:
//!
//! ```text
//! Epoch 1/12
//! 469/469 ━━━━━━━━━━━━━━━━━━━━ 25s 53ms/step - accuracy: 0.9123 - loss: 0.2871 - val_accuracy: 0.9800 - val_loss: 0.0500
//! ```
//!
//! With `verbose = 1` on a terminal an `indicatif` bar shows the running epoch averages;
//! otherwise (not a terminal, or `verbose = 2`) one line per epoch is printed
//! (`469/469 - 25s - 53ms/step - ...`, Keras' `verbose=2` form). `verbose = 0` prints
//! nothing. Numbers are formatted as Keras' progress bar formats them.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::training::Logs;

/// Width of the bar in characters, as Keras'.
const BAR_WIDTH: usize = 20;

/// Progress display of one epoch.
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    lines: bool,
    steps: usize,
    started: Instant,
}

impl Progress {
    /// Starts epoch `epoch` of `epochs` with `steps` steps.
    pub fn new(epoch: usize, epochs: usize, steps: usize, verbose: u8) -> Progress {
        let started = Instant::now();
        if verbose == 0 {
            return Progress { bar: None, lines: false, steps, started };
        }
        eprintln!("Epoch {epoch}/{epochs}");
        let terminal = std::io::stderr().is_terminal();
        if verbose == 1 && terminal {
            let bar = ProgressBar::with_draw_target(Some(steps as u64), ProgressDrawTarget::stderr());
            let template = format!("{{pos}}/{{len}} {{bar:{BAR_WIDTH}.green/white}}{{msg}}");
            if let Ok(style) = ProgressStyle::with_template(&template) {
                bar.set_style(style.progress_chars("━━━"));
            }
            bar.enable_steady_tick(Duration::from_millis(250));
            return Progress { bar: Some(bar), lines: false, steps, started };
        }
        Progress { bar: None, lines: true, steps, started }
    }

    /// After step `done` (1-based): the running averages.
    pub fn step(&mut self, done: usize, loss: f64, accuracy: Option<f64>) {
        let Some(bar) = &self.bar else { return };
        let elapsed = self.started.elapsed().as_secs_f64();
        let per_step = elapsed / done.max(1) as f64;
        let eta = per_step * (self.steps - done.min(self.steps)) as f64;
        let mut msg = format!(" {} {}", format_seconds(eta), format_per_step(per_step));
        if let Some(a) = accuracy {
            msg.push_str(&format!(" - accuracy: {}", format_value(a)));
        }
        msg.push_str(&format!(" - loss: {}", format_value(loss)));
        bar.set_position(done as u64);
        bar.set_message(msg);
    }

    /// Ends the epoch with its final logs (validation included).
    pub fn finish(&mut self, logs: &Logs) {
        let elapsed = self.started.elapsed().as_secs_f64();
        let per_step = elapsed / self.steps.max(1) as f64;
        let metrics: String = logs.iter().map(|(k, v)| format!(" - {k}: {}", format_value(*v))).collect();
        if let Some(bar) = self.bar.take() {
            // replace the live bar by a plain, newline-terminated final line
            bar.finish_and_clear();
            eprintln!(
                "{}/{} {} {} {}{metrics}",
                self.steps,
                self.steps,
                "━".repeat(BAR_WIDTH),
                format_seconds(elapsed),
                format_per_step(per_step)
            );
        } else if self.lines {
            eprintln!(
                "{}/{} - {} - {}{metrics}",
                self.steps,
                self.steps,
                format_seconds(elapsed),
                format_per_step(per_step)
            );
        }
    }
}

/// `25s`.
fn format_seconds(s: f64) -> String {
    format!("{s:.0}s")
}

/// Keras' time per step: `2s/step`, `53ms/step` or `120us/step`.
fn format_per_step(s: f64) -> String {
    if s >= 1.0 || s == 0.0 {
        format!("{s:.0}s/step")
    } else if s >= 1e-3 {
        format!("{:.0}ms/step", s * 1e3)
    } else {
        format!("{:.0}us/step", s * 1e6)
    }
}

/// Keras' metric format: `0.2871`, or `1.2340e-04` below 1e-3.
pub(crate) fn format_value(v: f64) -> String {
    if v.abs() > 1e-3 || !v.is_finite() {
        return format!("{v:.4}");
    }
    // Python's `{:.4e}`: two-digit signed exponent
    let s = format!("{v:.4e}");
    match s.split_once('e') {
        Some((mantissa, exp)) => {
            let (sign, digits) = exp.strip_prefix('-').map_or(("+", exp), |d| ("-", d));
            format!("{mantissa}e{sign}{digits:0>2}")
        }
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_keras() {
        assert_eq!(format_value(0.28714), "0.2871");
        assert_eq!(format_value(0.98), "0.9800");
        assert_eq!(format_value(0.000_123_4), "1.2340e-04");
        assert_eq!(format_value(0.0), "0.0000e+00");
        assert_eq!(format_per_step(0.053), "53ms/step");
        assert_eq!(format_per_step(2.4), "2s/step");
        assert_eq!(format_per_step(0.000_12), "120us/step");
        assert_eq!(format_seconds(25.3), "25s");
    }
}
