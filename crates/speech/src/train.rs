//! Training with the example's schedule: `steps = [15000, 3000]` at
//! `learning_rates = [0.001, 0.0001]`, a fresh augmented batch of 100 every step, validation
//! every `eval_step_interval` steps and at the end, the best validation weights kept (and
//! written as a checkpoint when a path is given), then the test set scored with them.
//!
//! Unlike TensorFlow's example (set `ema_decay` to 0 for its behaviour), validation scores an exponential
//! moving average of the weights instead of the raw ones: on a data set this small the raw
//! weights swing from one evaluation to the next, and the average is both steadier and a
//! better model, so the best-validation pick depends less on luck.

use std::path::Path;
use std::time::Instant;

use convnet_nn::{Adam, Loss, Metric, OptimizerConfig, Sequential, Sgd, Targets};
use convnet_tensor::Tensor;
use convnet_tensor::rng::Rng;
use serde::{Deserialize, Serialize};

use crate::dataset::{EvalSet, SpeechCommands};
use crate::error::{Result, SpeechError};
use crate::models::{Architecture, create_model};
use crate::speech_model::{SpeechModel, SpeechModelInfo};
use crate::split::Split;

/// The update rule (`--optimizer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// Adam with Keras' defaults apart from the learning rate.
    Adam,
    /// Plain SGD (the example's `gradient_descent`).
    GradientDescent,
    /// SGD with Nesterov momentum 0.9 (the example's `momentum`).
    Momentum,
}

impl OptimizerKind {
    fn config(self, lr: f64) -> OptimizerConfig {
        match self {
            OptimizerKind::Adam => Adam::new(lr).into(),
            OptimizerKind::GradientDescent => Sgd::new(lr).into(),
            OptimizerKind::Momentum => Sgd::new(lr).with_momentum(0.9).with_nesterov(true).into(),
        }
    }
}

/// Training settings, named as the example's flags.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The model.
    pub architecture: Architecture,
    /// Steps of each phase (`how_many_training_steps`).
    pub steps: Vec<usize>,
    /// Learning rate of each phase.
    pub learning_rates: Vec<f64>,
    /// Examples per step (100).
    pub batch_size: usize,
    /// Steps between validations (400).
    pub eval_step_interval: usize,
    /// Update rule.
    pub optimizer: OptimizerKind,
    /// Dropout rate of the models (0.5).
    pub dropout_rate: f32,
    /// Seed of the weights, the batches and dropout.
    pub seed: u64,
    /// Decay of the evaluated weight average per step (0.995; 0 evaluates the raw weights).
    #[serde(default)]
    pub ema_decay: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            architecture: Architecture::Conv,
            steps: vec![15000, 3000],
            learning_rates: vec![0.001, 0.0001],
            batch_size: 100,
            eval_step_interval: 400,
            optimizer: OptimizerKind::Adam,
            dropout_rate: 0.5,
            seed: 1,
            ema_decay: 0.995,
        }
    }
}

impl TrainConfig {
    /// Total steps.
    pub fn total_steps(&self) -> usize {
        self.steps.iter().sum()
    }

    /// The learning rate at 0-based `step`.
    pub fn learning_rate_at(&self, step: usize) -> f64 {
        let mut end = 0;
        for (s, lr) in self.steps.iter().zip(&self.learning_rates) {
            end += s;
            if step < end {
                return *lr;
            }
        }
        self.learning_rates.last().copied().unwrap_or(0.0)
    }

    fn check(&self) -> Result<()> {
        if self.steps.is_empty() || self.steps.len() != self.learning_rates.len() {
            return Err(SpeechError::options(format!(
                "--steps has {} phases and --learning-rate {}; give one rate per phase",
                self.steps.len(),
                self.learning_rates.len()
            )));
        }
        if self.total_steps() == 0 || self.batch_size == 0 || self.eval_step_interval == 0 {
            return Err(SpeechError::options("steps, batch size and evaluation interval must be positive"));
        }
        if self.learning_rates.iter().any(|lr| !(lr.is_finite() && *lr > 0.0)) {
            return Err(SpeechError::options("learning rates must be positive"));
        }
        if !(0.0..1.0).contains(&self.ema_decay) {
            return Err(SpeechError::options("the weight-average decay must be in [0, 1)"));
        }
        Ok(())
    }
}

/// Confusion counts of a labelled set: `matrix[truth][predicted]`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Confusion {
    /// Row and column labels.
    pub labels: Vec<String>,
    /// Counts, truth by prediction.
    pub matrix: Vec<Vec<usize>>,
    /// Mean cross-entropy.
    pub loss: f64,
}

impl Confusion {
    /// Share of correct predictions.
    pub fn accuracy(&self) -> f64 {
        let total: usize = self.matrix.iter().flatten().sum();
        let right: usize = (0..self.matrix.len()).map(|i| self.matrix[i][i]).sum();
        if total == 0 { 0.0 } else { right as f64 / total as f64 }
    }

    /// `(label, accuracy, examples)` per true label.
    pub fn per_class(&self) -> Vec<(String, f64, usize)> {
        self.matrix
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let n: usize = row.iter().sum();
                (self.labels[i].clone(), if n == 0 { 0.0 } else { row[i] as f64 / n as f64 }, n)
            })
            .collect()
    }

    /// The matrix as an aligned text table (rows: truth, columns: prediction).
    pub fn to_text(&self) -> String {
        let width = self.labels.iter().map(String::len).max().unwrap_or(1).max(5);
        let mut s = format!("{:>width$}", "truth\\pred");
        for l in &self.labels {
            s += &format!(" {l:>width$}");
        }
        s.push('\n');
        for (l, row) in self.labels.iter().zip(&self.matrix) {
            s += &format!("{l:>width$}");
            for v in row {
                s += &format!(" {v:>width$}");
            }
            s.push('\n');
        }
        s
    }
}

/// Scores `model` on a fixed set.
pub fn evaluate(model: &Sequential, set: &EvalSet, labels: &[String]) -> Result<Confusion> {
    let k = labels.len();
    let p = model.predict(&set.x, 100)?;
    let mut matrix = vec![vec![0usize; k]; k];
    let mut loss = 0.0f64;
    for (row, &truth) in p.data().chunks_exact(k).zip(&set.labels) {
        let pred = row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i);
        matrix[truth as usize][pred] += 1;
        loss -= (row[truth as usize].max(1e-7) as f64).ln();
    }
    Ok(Confusion { labels: labels.to_vec(), matrix, loss: loss / set.labels.len().max(1) as f64 })
}

/// A validation point.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EvalPoint {
    /// Steps done (1-based).
    pub step: usize,
    /// Mean training loss since the previous point.
    pub train_loss: f64,
    /// Training accuracy since the previous point.
    pub train_accuracy: f64,
    /// Validation cross-entropy.
    pub val_loss: f64,
    /// Validation accuracy.
    pub val_accuracy: f64,
}

/// What the training loop reports as it goes.
#[derive(Debug)]
pub enum TrainEvent<'a> {
    /// A step finished.
    Step {
        /// Steps done.
        step: usize,
        /// Of this many.
        total: usize,
        /// The batch's loss.
        loss: f32,
        /// The batch's accuracy.
        accuracy: f64,
        /// Learning rate used.
        learning_rate: f64,
    },
    /// A validation ran.
    Evaluated {
        /// The figures.
        point: &'a EvalPoint,
        /// Whether it is the best so far (and was checkpointed).
        best: bool,
    },
}

/// The result of [`train`].
#[derive(Debug)]
pub struct TrainOutcome {
    /// The model with the best validation weights.
    pub model: SpeechModel,
    /// Every validation point.
    pub history: Vec<EvalPoint>,
    /// Step of the best validation accuracy.
    pub best_step: usize,
    /// Validation results of the returned weights.
    pub validation: Confusion,
    /// Test results of the returned weights.
    pub test: Confusion,
    /// Wall time of the steps and validations, in seconds.
    pub seconds: f64,
}

/// Builds `cfg.architecture` for `data` and trains it (see the module doc). `checkpoint`, when
/// given, is rewritten with the best weights each time validation improves.
pub fn train(
    data: &SpeechCommands,
    cfg: &TrainConfig,
    checkpoint: Option<&Path>,
    mut on_event: impl FnMut(TrainEvent),
) -> Result<TrainOutcome> {
    cfg.check()?;
    let fe = data.options().front_end;
    let labels = data.labels().to_vec();
    let mut net = create_model(cfg.architecture, fe.input_shape(), labels.len(), cfg.dropout_rate, cfg.seed)?;
    net.compile(
        Loss::sparse_categorical_crossentropy(),
        cfg.optimizer.config(cfg.learning_rates[0]),
        &[Metric::Accuracy],
    )?;
    let info = |steps: usize, acc: Option<f64>| SpeechModelInfo {
        architecture: cfg.architecture,
        labels: labels.clone(),
        front_end: fe,
        trained_steps: steps,
        validation_accuracy: acc,
        feature_norm: data.feature_norm().cloned(),
        recognizer: None,
    };
    let validation = data.eval_set(Split::Validation)?;
    let start = Instant::now();
    let total = cfg.total_steps();
    let mut rng = Rng::new(cfg.seed ^ 0xBA7C4);
    let mut history: Vec<EvalPoint> = Vec::new();
    let mut best: Option<Best> = None;
    let (mut loss_sum, mut acc_sum, mut since) = (0.0f64, 0.0f64, 0usize);
    let mut average = (cfg.ema_decay > 0.0).then(|| WeightAverage::new(&net.weights(), cfg.ema_decay));
    for step in 0..total {
        let lr = cfg.learning_rate_at(step);
        if let Some(opt) = net.optimizer_mut() {
            opt.set_learning_rate(lr);
        }
        let (x, y) = data.training_batch(cfg.batch_size, &mut rng)?;
        let (loss, acc) = net.train_on_batch(&x, &Targets::Sparse(y))?;
        let acc = acc.unwrap_or(0.0);
        (loss_sum, acc_sum, since) = (loss_sum + loss as f64, acc_sum + acc, since + 1);
        if let Some(avg) = &mut average {
            avg.update(&net.weights());
        }
        on_event(TrainEvent::Step { step: step + 1, total, loss, accuracy: acc, learning_rate: lr });
        if (step + 1) % cfg.eval_step_interval == 0 || step + 1 == total {
            // the averaged weights stand in for the raw ones while they are scored and kept
            let raw = match &average {
                Some(avg) => Some((net.weights(), avg.weights()?)),
                None => None,
            };
            if let Some((_, averaged)) = &raw {
                net.set_weights(averaged)?;
            }
            let c = evaluate(&net, validation, &labels)?;
            let point = EvalPoint {
                step: step + 1,
                train_loss: loss_sum / since as f64,
                train_accuracy: acc_sum / since as f64,
                val_loss: c.loss,
                val_accuracy: c.accuracy(),
            };
            (loss_sum, acc_sum, since) = (0.0, 0.0, 0);
            let improved = best.as_ref().is_none_or(|b| point.val_accuracy > b.accuracy);
            if improved {
                best = Some(Best { accuracy: point.val_accuracy, step: step + 1, weights: net.weights() });
                if let Some(path) = checkpoint {
                    SpeechModel::new(net.clone_for_checkpoint()?, info(step + 1, Some(point.val_accuracy)))?
                        .save(path)?;
                }
            }
            if let Some((raw, _)) = &raw {
                net.set_weights(raw)?;
            }
            on_event(TrainEvent::Evaluated { point: &point, best: improved });
            history.push(point);
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let Best { accuracy: best_acc, step: best_step, weights } = best.expect("at least one validation ran");
    net.set_weights(&weights)?;
    let validation = evaluate(&net, validation, &labels)?;
    let test = evaluate(&net, data.eval_set(Split::Testing)?, &labels)?;
    let model = SpeechModel::new(net, info(best_step, Some(best_acc)))?;
    Ok(TrainOutcome { model, history, best_step, validation, test, seconds })
}

/// An exponential moving average of the weights, `a = d a + (1 - d) w` after every step, with
/// TensorFlow's `ExponentialMovingAverage` warm-up (`d = min(decay, (1 + n) / (10 + n))`) so
/// the first steps' random weights fade quickly.
struct WeightAverage {
    decay: f64,
    updates: usize,
    names: Vec<String>,
    shapes: Vec<Vec<usize>>,
    values: Vec<Vec<f32>>,
}

impl WeightAverage {
    fn new(weights: &[(String, Tensor)], decay: f64) -> Self {
        WeightAverage {
            decay,
            updates: 0,
            names: weights.iter().map(|(n, _)| n.clone()).collect(),
            shapes: weights.iter().map(|(_, t)| t.dims().to_vec()).collect(),
            values: weights.iter().map(|(_, t)| t.data().to_vec()).collect(),
        }
    }

    fn update(&mut self, weights: &[(String, Tensor)]) {
        self.updates += 1;
        let n = self.updates as f64;
        let d = self.decay.min((1.0 + n) / (10.0 + n)) as f32;
        for (avg, (_, w)) in self.values.iter_mut().zip(weights) {
            for (a, v) in avg.iter_mut().zip(w.data()) {
                *a = d * *a + (1.0 - d) * v;
            }
        }
    }

    fn weights(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::with_capacity(self.names.len());
        for ((n, s), v) in self.names.iter().zip(&self.shapes).zip(&self.values) {
            out.push((n.clone(), Tensor::from_vec(v.clone(), s.clone())?));
        }
        Ok(out)
    }
}

/// The best validation point so far and its weights.
struct Best {
    accuracy: f64,
    step: usize,
    weights: Vec<(String, Tensor)>,
}

trait CloneForCheckpoint {
    fn clone_for_checkpoint(&self) -> Result<Sequential>;
}

impl CloneForCheckpoint for Sequential {
    /// A copy with the same architecture and weights (the optimizer state is not needed in a
    /// checkpoint of the best weights).
    fn clone_for_checkpoint(&self) -> Result<Sequential> {
        let mut copy = Sequential::from_config(&self.config())?;
        copy.set_weights(&self.weights())?;
        Ok(copy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_follows_the_phases() {
        let cfg = TrainConfig { steps: vec![3, 2], learning_rates: vec![0.1, 0.01], ..Default::default() };
        let lrs: Vec<f64> = (0..6).map(|s| cfg.learning_rate_at(s)).collect();
        assert_eq!(lrs, [0.1, 0.1, 0.1, 0.01, 0.01, 0.01]);
        assert_eq!(cfg.total_steps(), 5);
        assert!(TrainConfig { learning_rates: vec![0.1], ..cfg.clone() }.check().is_err());
        assert!(TrainConfig { batch_size: 0, ..cfg }.check().is_err());
    }

    #[test]
    fn weight_average_warms_up_then_decays() {
        let w = |v: f32| vec![("a".to_string(), Tensor::from_vec(vec![v, 2.0 * v], [2]).unwrap())];
        let mut avg = WeightAverage::new(&w(0.0), 0.9);
        avg.update(&w(1.0));
        // first update: d = min(0.9, 2/11)
        let d = 2.0f32 / 11.0;
        let got = avg.weights().unwrap()[0].1.data().to_vec();
        assert!((got[0] - (1.0 - d)).abs() < 1e-6 && (got[1] - 2.0 * (1.0 - d)).abs() < 1e-6, "{got:?}");
        // later updates use the full decay: the average approaches a constant input geometrically
        for _ in 0..200 {
            avg.update(&w(3.0));
        }
        let got = avg.weights().unwrap()[0].1.data().to_vec();
        assert!((got[0] - 3.0).abs() < 1e-4 && (got[1] - 6.0).abs() < 1e-4, "{got:?}");
        let before = got[0];
        avg.update(&w(13.0));
        assert!((avg.weights().unwrap()[0].1.data()[0] - (0.9 * before + 0.1 * 13.0)).abs() < 1e-5);
        assert!(TrainConfig { ema_decay: 1.0, ..Default::default() }.check().is_err());
    }

    #[test]
    fn confusion_counts() {
        let c = Confusion { labels: vec!["a".into(), "b".into()], matrix: vec![vec![3, 1], vec![0, 4]], loss: 0.0 };
        assert_eq!(c.accuracy(), 7.0 / 8.0);
        assert_eq!(c.per_class()[0], ("a".to_string(), 0.75, 4));
        assert!(c.to_text().lines().count() == 3);
    }

    /// A short run on the shared set: the loss falls, the checkpoint loads and classifies as
    /// the returned model does.
    #[test]
    fn short_training_learns_and_checkpoints() {
        let Some(root) = std::env::var_os("CONVNET_SHARED") else {
            eprintln!("CONVNET_SHARED is not set; skipping");
            return;
        };
        let data = SpeechCommands::load(Path::new(&root).join("datasets/speech_commands"), Default::default()).unwrap();
        let cfg = TrainConfig {
            architecture: Architecture::TinyConv,
            steps: vec![120],
            learning_rates: vec![0.002],
            batch_size: 50,
            eval_step_interval: 60,
            ..Default::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let ckpt = dir.path().join("best.safetensors");
        let mut losses = Vec::new();
        let out = train(&data, &cfg, Some(&ckpt), |e| {
            if let TrainEvent::Step { loss, .. } = e {
                losses.push(loss)
            }
        })
        .unwrap();
        let first: f32 = losses[..10].iter().sum::<f32>() / 10.0;
        let last: f32 = losses[losses.len() - 10..].iter().sum::<f32>() / 10.0;
        assert!(last < 0.7 * first, "loss {first} -> {last}");
        assert_eq!(out.history.len(), 2);
        // 12 labels: chance is ~1/12
        assert!(out.validation.accuracy() > 0.3, "{}", out.validation.accuracy());
        let loaded = SpeechModel::load(&ckpt).unwrap();
        assert_eq!(loaded.info.labels, data.labels());
        assert_eq!(loaded.info.trained_steps, out.best_step);
        let clip = data.clip(0).samples();
        let (a, b) = (loaded.classify(&clip, 3).unwrap(), out.model.classify(&clip, 3).unwrap());
        assert_eq!(a, b);
    }
}
