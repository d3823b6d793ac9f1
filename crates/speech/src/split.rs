//! Which clips are for training, validation and testing.
//!
//! Speech Commands assigns every *speaker* to one split, so a speaker's voice is never in
//! both training and test. The data set ships the result as `validation_list.txt` and
//! `testing_list.txt`; TensorFlow's `input_data.which_set()` computes the same assignment from
//! the file name alone, which is what a loader falls back to when the lists are missing (and
//! what new clips get): the SHA-1 of the name up to `_nohash_` (the speaker), taken modulo
//! 2^27 (`MAX_NUM_WAVS_PER_CLASS + 1`), scaled to a percentage of `2^27 - 1`, and compared with the
//! validation and testing percentages.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::error::{Result, SpeechError};

/// The three sets of TensorFlow's example.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Fitting the weights.
    Training,
    /// Choosing the checkpoint.
    Validation,
    /// The final figure.
    Testing,
}

impl Split {
    /// All three, in TensorFlow's order.
    pub const ALL: [Split; 3] = [Split::Training, Split::Validation, Split::Testing];

    /// TensorFlow's name (`training`, `validation`, `testing`).
    pub fn name(self) -> &'static str {
        match self {
            Split::Training => "training",
            Split::Validation => "validation",
            Split::Testing => "testing",
        }
    }

    /// Position in [`Split::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// TensorFlow's `MAX_NUM_WAVS_PER_CLASS`: `2^27 - 1`.
pub const MAX_NUM_WAVS_PER_CLASS: u64 = (1 << 27) - 1;

/// The split TensorFlow's `which_set(filename, validation_percentage, testing_percentage)`
/// gives a clip, from its file name only (the folder is ignored).
pub fn which_set(file_name: &str, validation_percentage: f64, testing_percentage: f64) -> Split {
    let base = file_name.rsplit(['/', '\\']).next().unwrap_or(file_name);
    let speaker = match base.find("_nohash_") {
        Some(i) => &base[..i],
        None => base,
    };
    let digest = sha1_smol::Sha1::from(speaker.as_bytes()).digest().bytes();
    // int(hexdigest, 16) % 2^27 is the low 27 bits of the big-endian digest
    let low = u32::from_be_bytes([digest[16], digest[17], digest[18], digest[19]]) as u64;
    let bucket = low % (MAX_NUM_WAVS_PER_CLASS + 1);
    let percentage = bucket as f64 * (100.0 / MAX_NUM_WAVS_PER_CLASS as f64);
    if percentage < validation_percentage {
        Split::Validation
    } else if percentage < testing_percentage + validation_percentage {
        Split::Testing
    } else {
        Split::Training
    }
}

/// The `validation_list.txt` and `testing_list.txt` of a data folder: relative paths
/// (`word/speaker_nohash_n.wav`, forward slashes) in each list.
#[derive(Clone, Debug, Default)]
pub struct SplitLists {
    /// Entries of `validation_list.txt`.
    pub validation: HashSet<String>,
    /// Entries of `testing_list.txt`.
    pub testing: HashSet<String>,
}

impl SplitLists {
    /// Reads both lists from `dir`; `None` when neither exists (use [`which_set`] then).
    /// One list without the other is an error, since every clip would silently land in the
    /// other two sets.
    pub fn read(dir: &Path) -> Result<Option<SplitLists>> {
        let (v, t) = (dir.join("validation_list.txt"), dir.join("testing_list.txt"));
        match (v.is_file(), t.is_file()) {
            (false, false) => Ok(None),
            (true, true) => Ok(Some(SplitLists { validation: read_list(&v)?, testing: read_list(&t)? })),
            (has_v, _) => Err(SpeechError::BadDataSet {
                path: dir.to_path_buf(),
                reason: format!(
                    "has {} but not {}; give both split lists or neither",
                    if has_v { "validation_list.txt" } else { "testing_list.txt" },
                    if has_v { "testing_list.txt" } else { "validation_list.txt" }
                ),
            }),
        }
    }

    /// The split of a clip by its relative path.
    pub fn split_of(&self, relative: &str) -> Split {
        if self.validation.contains(relative) {
            Split::Validation
        } else if self.testing.contains(relative) {
            Split::Testing
        } else {
            Split::Training
        }
    }

    /// Entries of both lists whose file is not in `present`: the list names clips that are
    /// missing from the folder.
    pub fn missing<'a>(&'a self, present: &'a HashSet<String>) -> impl Iterator<Item = &'a String> + 'a {
        self.validation.iter().chain(&self.testing).filter(move |e| !present.contains(*e))
    }
}

fn read_list(path: &PathBuf) -> Result<HashSet<String>> {
    let text = std::fs::read_to_string(path).map_err(|source| SpeechError::Io { path: path.clone(), source })?;
    Ok(text.lines().map(|l| l.trim().replace('\\', "/")).filter(|l| !l.is_empty()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speaker_hash_ignores_folder_and_utterance_number() {
        let a = which_set("yes/0a7c2a8d_nohash_0.wav", 10.0, 10.0);
        assert_eq!(a, which_set("no/0a7c2a8d_nohash_3.wav", 10.0, 10.0));
        assert_eq!(a, which_set("0a7c2a8d_nohash_1.wav", 10.0, 10.0));
    }

    #[test]
    fn percentages_partition_the_speakers() {
        // with no validation and no testing share everything is training, with 100 % all validation
        for name in ["a_nohash_0.wav", "b_nohash_0.wav", "c9_nohash_2.wav"] {
            assert_eq!(which_set(name, 0.0, 0.0), Split::Training);
            assert_eq!(which_set(name, 100.0, 0.0), Split::Validation);
            assert_eq!(which_set(name, 0.0, 100.0), Split::Testing);
        }
        // 10/10 over many synthetic speakers gives roughly 10 % each
        let mut counts = [0usize; 3];
        for i in 0..20_000 {
            counts[which_set(&format!("{i:08x}_nohash_0.wav"), 10.0, 10.0).index()] += 1;
        }
        assert!((1_700..2_300).contains(&counts[1]), "{counts:?}");
        assert!((1_700..2_300).contains(&counts[2]), "{counts:?}");
    }

    /// The lists in the shared data set were written with TensorFlow's rule: every clip in
    /// them, and every clip not in them, must get the same split from `which_set`.
    #[test]
    fn which_set_reproduces_the_shipped_lists() {
        let Some(root) = std::env::var_os("CONVNET_SHARED") else {
            eprintln!("CONVNET_SHARED is not set; skipping the list check");
            return;
        };
        let dir = Path::new(&root).join("datasets/speech_commands");
        let lists = SplitLists::read(&dir).unwrap().expect("the shared set has both lists");
        assert!(lists.validation.len() > 50 && lists.testing.len() > 50);
        let mut checked = [0usize; 3];
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let word = entry.file_name().to_string_lossy().to_string();
            if !entry.path().is_dir() || word.starts_with('_') {
                continue;
            }
            for clip in std::fs::read_dir(entry.path()).unwrap() {
                let name = clip.unwrap().file_name().to_string_lossy().to_string();
                let relative = format!("{word}/{name}");
                let expected = lists.split_of(&relative);
                assert_eq!(which_set(&relative, 10.0, 10.0), expected, "{relative}");
                checked[expected.index()] += 1;
            }
        }
        assert_eq!(checked[1], lists.validation.len());
        assert_eq!(checked[2], lists.testing.len());
        assert!(checked[0] > 500, "{checked:?}");
    }
}
