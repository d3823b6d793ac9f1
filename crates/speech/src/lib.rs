//! Keyword spotting on Google Speech Commands, as TensorFlow's `examples/speech_commands`
//! does it: the same data handling (labels, splits, silence and unknown shares,
//! augmentation), the same front end (98 x 40 MFCC fingerprints), the same models by name and
//! size, the same training schedule, and the same streaming recogniser.
//!
//! ```no_run
//! use convnet_speech::{DataOptions, SpeechCommands, TrainConfig, train};
//! let data = SpeechCommands::load("speech_commands", DataOptions::default())?;
//! let cfg = TrainConfig { steps: vec![2000, 500], ..Default::default() };
//! let out = train(&data, &cfg, Some("best.safetensors".as_ref()), |_| {})?;
//! println!("test accuracy {:.3}", out.test.accuracy());
//! # Ok::<(), convnet_speech::SpeechError>(())
//! ```

pub mod augment;
pub mod dataset;
pub mod error;
pub mod front_end;
pub mod models;
pub mod recognize;
pub mod speech_model;
pub mod split;
pub mod stream_report;
pub mod stream_test;
pub mod train;
pub mod tune;

pub use augment::{Augmentation, MixDraw, mix};
pub use dataset::{
    BACKGROUND_NOISE_DIR, Clip, DEFAULT_WANTED_WORDS, DataOptions, EvalSet, Example, SILENCE_LABEL, Source,
    SpeechCommands, TENSORFLOW_SEED, UNKNOWN_LABEL, labels_for,
};
pub use error::{Result, SpeechError};
pub use front_end::{FeatureNorm, FingerprintTransform, FrontEnd, MAX_CLIP_MS};
pub use models::{Architecture, create_model};
pub use recognize::{
    Detection, Listening, Outcome, Recognition, RecognizeCommands, RecognizerConfig, StreamingStats, TruthWord,
    WindowScores, listen, match_detections, recognize, score_detections, window_scores,
};
pub use speech_model::{Prediction, SpeechModel, SpeechModelInfo};
pub use split::{Split, SplitLists, which_set};
pub use stream_report::{PositionReport, WordReport, position_report, word_report};
pub use stream_test::{StreamOptions, make_stream, parse_truth, read_truth, write_truth, write_wav};
pub use train::{Confusion, EvalPoint, OptimizerKind, TrainConfig, TrainEvent, TrainOutcome, evaluate, train};
pub use tune::{TuneOptions, TunedRecognizer, tune_recognizer};
