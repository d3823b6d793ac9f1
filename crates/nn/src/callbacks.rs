//! Callbacks run by `fit` after each epoch, with Keras 3's logic and defaults:
//! [`EarlyStopping`] and [`ModelCheckpoint`].

use std::path::PathBuf;

use convnet_tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::training::Logs;
use crate::training::Trainable;
use crate::{NnError, Result};

/// Whether training goes on after a callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Keep training.
    Continue,
    /// Stop after this epoch (Keras' `model.stop_training = True`).
    Stop,
}

/// Something `fit` calls at the start, after each epoch and at the end of training.
pub trait Callback {
    /// Before the first epoch.
    fn on_train_begin(&mut self, _model: &mut dyn Trainable) -> Result<()> {
        Ok(())
    }
    /// After epoch `epoch` (1-based) with its logs (`loss`, `accuracy`, `val_loss`, ...).
    fn on_epoch_end(&mut self, epoch: usize, logs: &Logs, model: &mut dyn Trainable) -> Result<Control>;
    /// After the last epoch (also after an early stop).
    fn on_train_end(&mut self, _model: &mut dyn Trainable) -> Result<()> {
        Ok(())
    }
}

/// Whether a monitored value should fall or rise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MonitorMode {
    /// `max` when the name contains `acc`, otherwise `min` (Keras' guess).
    #[default]
    Auto,
    /// Lower is better.
    Min,
    /// Higher is better.
    Max,
}

impl MonitorMode {
    fn maximize(self, monitor: &str) -> bool {
        match self {
            MonitorMode::Auto => monitor.contains("acc") || monitor.contains("auc"),
            MonitorMode::Min => false,
            MonitorMode::Max => true,
        }
    }
}

/// Stops training when a monitored value has stopped improving (Keras' `EarlyStopping`).
#[derive(Clone, Debug)]
pub struct EarlyStopping {
    /// Log name to watch, default `val_loss`.
    pub monitor: String,
    /// Smallest change that counts as an improvement, default 0.
    pub min_delta: f64,
    /// Epochs without improvement before stopping, default 0.
    pub patience: usize,
    /// Direction, default auto.
    pub mode: MonitorMode,
    /// Put back the best epoch's weights at the end, default false.
    pub restore_best_weights: bool,
    /// Print a line when stopping, default false.
    pub verbose: bool,
    wait: usize,
    best: Option<f64>,
    best_weights: Option<Vec<(String, Tensor)>>,
    /// Epoch (1-based) at which training was stopped, if it was.
    pub stopped_epoch: Option<usize>,
    /// Epoch (1-based) with the best value so far.
    pub best_epoch: Option<usize>,
}

impl Default for EarlyStopping {
    fn default() -> Self {
        EarlyStopping {
            monitor: "val_loss".into(),
            min_delta: 0.0,
            patience: 0,
            mode: MonitorMode::Auto,
            restore_best_weights: false,
            verbose: false,
            wait: 0,
            best: None,
            best_weights: None,
            stopped_epoch: None,
            best_epoch: None,
        }
    }
}

impl EarlyStopping {
    /// Watches `monitor` with Keras' defaults.
    pub fn new(monitor: impl Into<String>) -> Self {
        EarlyStopping { monitor: monitor.into(), ..Self::default() }
    }
    /// Sets the patience.
    pub fn with_patience(mut self, patience: usize) -> Self {
        self.patience = patience;
        self
    }
    /// Sets `min_delta`.
    pub fn with_min_delta(mut self, min_delta: f64) -> Self {
        self.min_delta = min_delta;
        self
    }
    /// Sets the mode.
    pub fn with_mode(mut self, mode: MonitorMode) -> Self {
        self.mode = mode;
        self
    }
    /// Sets `restore_best_weights`.
    pub fn with_restore_best_weights(mut self, restore: bool) -> Self {
        self.restore_best_weights = restore;
        self
    }
    /// Sets verbosity.
    pub fn with_verbose(mut self, verbose: bool) -> Self {
        self.verbose = verbose;
        self
    }

    fn is_improvement(&self, current: f64, reference: Option<f64>) -> bool {
        let Some(reference) = reference else { return true };
        let delta = self.min_delta.abs();
        if self.mode.maximize(&self.monitor) { current - delta > reference } else { current + delta < reference }
    }
}

impl Callback for EarlyStopping {
    fn on_train_begin(&mut self, _model: &mut dyn Trainable) -> Result<()> {
        self.wait = 0;
        self.best = None;
        self.best_weights = None;
        self.stopped_epoch = None;
        self.best_epoch = None;
        Ok(())
    }

    fn on_epoch_end(&mut self, epoch: usize, logs: &Logs, model: &mut dyn Trainable) -> Result<Control> {
        let Some(&current) = logs.get(&self.monitor) else {
            return Err(NnError::arg(
                "monitor",
                format!(
                    "EarlyStopping watches {:?} but the logs only have {:?}",
                    self.monitor,
                    logs.keys().collect::<Vec<_>>()
                ),
            ));
        };
        if self.restore_best_weights && self.best_weights.is_none() {
            self.best_weights = Some(model.params().snapshot());
            self.best_epoch = Some(epoch);
        }
        self.wait += 1;
        if self.is_improvement(current, self.best) {
            self.best = Some(current);
            self.best_epoch = Some(epoch);
            if self.restore_best_weights {
                self.best_weights = Some(model.params().snapshot());
            }
            self.wait = 0;
            return Ok(Control::Continue);
        }
        if self.wait >= self.patience && epoch > 1 {
            self.stopped_epoch = Some(epoch);
            if self.verbose {
                eprintln!("Epoch {epoch}: early stopping");
            }
            return Ok(Control::Stop);
        }
        Ok(Control::Continue)
    }

    fn on_train_end(&mut self, model: &mut dyn Trainable) -> Result<()> {
        if self.restore_best_weights
            && let Some(w) = self.best_weights.take()
        {
            if self.verbose {
                eprintln!("Restoring model weights from the end of the best epoch: {}.", self.best_epoch.unwrap_or(0));
            }
            model.parts_mut().0.restore("best weights", &w)?;
        }
        Ok(())
    }
}

/// Saves the model after epochs (Keras' `ModelCheckpoint`). The path may contain
/// `{epoch}`, `{epoch:02d}` or a log value like `{val_loss:.2f}`.
#[derive(Clone, Debug)]
pub struct ModelCheckpoint {
    /// Destination (a `.safetensors` file), possibly with placeholders.
    pub path: String,
    /// Log name to watch for `save_best_only`, default `val_loss`.
    pub monitor: String,
    /// Save only when the monitored value improves, default false.
    pub save_best_only: bool,
    /// Save the weights alone rather than the whole model, default false.
    pub save_weights_only: bool,
    /// Direction, default auto.
    pub mode: MonitorMode,
    /// Print a line for each save, default false.
    pub verbose: bool,
    best: Option<f64>,
    /// Files written so far.
    pub saved: Vec<PathBuf>,
}

impl ModelCheckpoint {
    /// Saves to `path` after every epoch, watching `val_loss`.
    pub fn new(path: impl Into<String>) -> Self {
        ModelCheckpoint {
            path: path.into(),
            monitor: "val_loss".into(),
            save_best_only: false,
            save_weights_only: false,
            mode: MonitorMode::Auto,
            verbose: false,
            best: None,
            saved: Vec::new(),
        }
    }
    /// Sets the monitored log name.
    pub fn with_monitor(mut self, monitor: impl Into<String>) -> Self {
        self.monitor = monitor.into();
        self
    }
    /// Sets `save_best_only`.
    pub fn with_save_best_only(mut self, best_only: bool) -> Self {
        self.save_best_only = best_only;
        self
    }
    /// Sets `save_weights_only`.
    pub fn with_save_weights_only(mut self, weights_only: bool) -> Self {
        self.save_weights_only = weights_only;
        self
    }
    /// Sets the mode.
    pub fn with_mode(mut self, mode: MonitorMode) -> Self {
        self.mode = mode;
        self
    }
    /// Sets verbosity.
    pub fn with_verbose(mut self, verbose: bool) -> Self {
        self.verbose = verbose;
        self
    }
}

impl Callback for ModelCheckpoint {
    fn on_train_begin(&mut self, _model: &mut dyn Trainable) -> Result<()> {
        self.best = None;
        Ok(())
    }

    fn on_epoch_end(&mut self, epoch: usize, logs: &Logs, model: &mut dyn Trainable) -> Result<Control> {
        if self.save_best_only {
            let Some(&current) = logs.get(&self.monitor) else {
                return Err(NnError::arg(
                    "monitor",
                    format!(
                        "ModelCheckpoint watches {:?} but the logs only have {:?}",
                        self.monitor,
                        logs.keys().collect::<Vec<_>>()
                    ),
                ));
            };
            let better = match self.best {
                None => true,
                Some(b) if self.mode.maximize(&self.monitor) => current > b,
                Some(b) => current < b,
            };
            if !better {
                return Ok(Control::Continue);
            }
            self.best = Some(current);
        }
        let path = PathBuf::from(format_path(&self.path, epoch, logs)?);
        if self.save_weights_only {
            model.save_model_weights(std::path::Path::new(&path))?;
        } else {
            model.save_model(std::path::Path::new(&path))?;
        }
        if self.verbose {
            eprintln!("Epoch {epoch}: saving model to {}", path.display());
        }
        self.saved.push(path);
        Ok(Control::Continue)
    }
}

/// Fills `{epoch}`, `{epoch:02d}`, `{name}` and `{name:.Nf}` placeholders (Python's
/// `str.format` subset ModelCheckpoint paths use); the epoch is 1-based as in Keras.
pub(crate) fn format_path(template: &str, epoch: usize, logs: &Logs) -> Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or_else(|| NnError::arg("path", format!("unclosed '{{' in {template:?}")))?;
        let field = &after[..close];
        let (name, spec) = field.split_once(':').unwrap_or((field, ""));
        let value = if name == "epoch" {
            epoch as f64
        } else {
            *logs
                .get(name)
                .ok_or_else(|| NnError::arg("path", format!("unknown placeholder {{{name}}} in {template:?}")))?
        };
        let text = if let Some(width) = spec.strip_suffix('d') {
            let width: usize = width.trim_start_matches('0').parse().unwrap_or(0);
            format!("{:0width$}", value.round() as i64)
        } else if let Some(prec) = spec.strip_prefix('.').and_then(|s| s.strip_suffix('f')) {
            let prec: usize = prec.parse().unwrap_or(6);
            format!("{value:.prec$}")
        } else if name == "epoch" {
            epoch.to_string()
        } else {
            value.to_string()
        };
        out.push_str(&text);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Sequential;

    #[test]
    fn paths_are_formatted_like_python() {
        let mut logs = Logs::new();
        logs.insert("val_loss".into(), 0.123_456);
        assert_eq!(format_path("m-{epoch:02d}-{val_loss:.2f}.safetensors", 3, &logs).unwrap(), "m-03-0.12.safetensors");
        assert_eq!(format_path("m{epoch}.st", 12, &logs).unwrap(), "m12.st");
        assert!(format_path("m{nope}.st", 1, &logs).is_err());
    }

    #[test]
    fn early_stopping_waits_for_patience() {
        let mut model = Sequential::new([1]);
        let mut es = EarlyStopping::new("val_loss").with_patience(2);
        es.on_train_begin(&mut model).unwrap();
        let mut run = |epoch, v: f64| {
            let mut logs = Logs::new();
            logs.insert("val_loss".into(), v);
            es.on_epoch_end(epoch, &logs, &mut model).unwrap()
        };
        assert_eq!(run(1, 1.0), Control::Continue);
        assert_eq!(run(2, 0.5), Control::Continue);
        assert_eq!(run(3, 0.6), Control::Continue);
        assert_eq!(run(4, 0.7), Control::Stop);
        assert!(MonitorMode::Auto.maximize("val_accuracy") && !MonitorMode::Auto.maximize("val_loss"));
    }
}
