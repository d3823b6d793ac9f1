//! Image-folder datasets in torchvision's `ImageFolder` layout (`root/<class>/**/<image>`),
//! with a train/val split either from `DIR/train` + `DIR/val` (timm's `train`/`validation`
//! folders) or from one folder and a validation fraction, as Keras'
//! `image_dataset_from_directory(validation_split, seed, subset)` but per class.
//!
//! As torchvision: classes are the sub-folder names sorted (by code point), class `i` is the
//! `i`-th; each class folder is walked recursively and files are listed sorted by folder, then
//! name. Unlike torchvision, hidden entries (`.ipynb_checkpoints`, `.DS_Store`) are skipped, so
//! they never become a class, and only `.jpg`/`.jpeg`/`.png` (any case) are kept: those are the
//! formats this crate decodes. A class folder without images is an error rather than a class
//! with no samples, since it would shift the class count silently.

use crate::error::{DataError, Result};
use crate::rng::SplitMix64;
use std::path::{Path, PathBuf};

/// Extensions kept (compared case-insensitively).
pub const IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// Deepest folder nesting walked inside a class folder (guards against symlink loops).
const MAX_DEPTH: usize = 32;

/// An image-folder dataset: the class names and `(file, class index)` samples.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageFolder {
    /// The folder scanned.
    pub root: PathBuf,
    /// Class names, sorted; a sample's label indexes this list.
    pub classes: Vec<String>,
    /// `(image file, class index)`, by class, then sorted path.
    pub samples: Vec<(PathBuf, usize)>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io { path: path.to_path_buf(), source }
}

fn hidden(name: &std::ffi::OsStr) -> bool {
    name.as_encoded_bytes().first() == Some(&b'.')
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Sorted names of the non-hidden sub-folders of `root`.
fn class_dirs(root: &Path) -> Result<Vec<String>> {
    if !root.is_dir() {
        return Err(DataError::NotADirectory { path: root.to_path_buf() });
    }
    let mut classes = Vec::new();
    for entry in std::fs::read_dir(root).map_err(io_err(root))? {
        let entry = entry.map_err(io_err(root))?;
        let name = entry.file_name();
        if hidden(&name) || !entry.path().is_dir() {
            continue;
        }
        let name = name.into_string().map_err(|n| DataError::BadFile {
            path: root.join(&n),
            reason: "class folder name is not valid UTF-8; rename it".into(),
        })?;
        classes.push(name);
    }
    classes.sort();
    Ok(classes)
}

/// Image files under `dir`, recursively, sorted by folder then name (torchvision's
/// `sorted(os.walk(dir))` with sorted file names).
fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut by_dir: Vec<(PathBuf, Vec<PathBuf>)> = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), 0)];
    while let Some((d, depth)) = stack.pop() {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&d).map_err(io_err(&d))? {
            let entry = entry.map_err(io_err(&d))?;
            let path = entry.path();
            if hidden(&entry.file_name()) {
                continue;
            }
            if path.is_dir() {
                if depth < MAX_DEPTH {
                    stack.push((path, depth + 1));
                }
            } else if is_image(&path) && path.is_file() {
                files.push(path);
            }
        }
        files.sort();
        by_dir.push((d, files));
    }
    // os.walk's roots compare as strings: "a/b" < "a/b/c" < "a/b2"
    by_dir.sort_by(|a, b| a.0.as_os_str().cmp(b.0.as_os_str()));
    Ok(by_dir.into_iter().flat_map(|(_, f)| f).collect())
}

impl ImageFolder {
    /// Scans `root/<class>/**` (see the module docs for the rules).
    ///
    /// Errors, each naming the folder: `root` is not a folder, it has no class folders, it has
    /// one only (classification needs at least 2), a class folder has no images, there are no
    /// images at all.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        let classes = class_dirs(root)?;
        let folder = Self::scan(root, classes)?;
        if folder.classes.len() < 2 {
            return Err(DataError::TooFewClasses { path: root.to_path_buf(), classes: folder.classes });
        }
        Ok(folder)
    }

    /// Samples of `root` labelled by the given class list (which `root`'s folders must be a
    /// subset of). Class folders of the list that are absent from `root` are allowed.
    fn scan(root: &Path, classes: Vec<String>) -> Result<Self> {
        let found = class_dirs(root)?;
        if found.is_empty() {
            return Err(DataError::NoClasses { path: root.to_path_buf() });
        }
        let mut per_class = Vec::new();
        for name in &found {
            let Some(label) = classes.iter().position(|c| c == name) else {
                return Err(DataError::UnknownClass { path: root.join(name), class: name.clone() });
            };
            per_class.push((label, image_files(&root.join(name))?));
        }
        if per_class.iter().all(|(_, f)| f.is_empty()) {
            return Err(DataError::NoImages { path: root.to_path_buf() });
        }
        if let Some((label, _)) = per_class.iter().find(|(_, f)| f.is_empty()) {
            return Err(DataError::EmptyClass { path: root.join(&classes[*label]) });
        }
        per_class.sort_by_key(|(label, _)| *label);
        let samples = per_class.into_iter().flat_map(|(l, files)| files.into_iter().map(move |f| (f, l))).collect();
        Ok(ImageFolder { root: root.to_path_buf(), classes, samples })
    }

    /// `dir/train/<class>/**` and `dir/val/<class>/**`, labelled by train's classes.
    ///
    /// A class folder in `val` that `train` lacks is an error naming it (its label would be
    /// meaningless); `val` may lack some of train's classes.
    pub fn split(dir: impl AsRef<Path>) -> Result<(Self, Self)> {
        let dir = dir.as_ref();
        let train = Self::open(dir.join("train"))?;
        let val = Self::scan(&dir.join("val"), train.classes.clone())?;
        Ok((train, val))
    }

    /// One folder split into `(train, val)`: in each class, a `val_split` fraction of the files
    /// (rounded, and at most all but one) chosen by a shuffle seeded from `seed` and the class
    /// index goes to validation. The same `(root contents, val_split, seed)` always give the
    /// same split; samples stay in `open`'s order within each subset.
    pub fn random_split(root: impl AsRef<Path>, val_split: f64, seed: u64) -> Result<(Self, Self)> {
        if !(0.0..1.0).contains(&val_split) {
            return Err(DataError::InvalidConfig {
                reason: format!("val_split {val_split}: expected a fraction in [0, 1)"),
            });
        }
        let all = Self::open(root)?;
        let mut is_val = vec![false; all.samples.len()];
        let mut start = 0;
        for (label, count) in all.class_counts().into_iter().enumerate() {
            let n_val = ((count as f64 * val_split).round() as usize).min(count - 1);
            let perm = SplitMix64::for_sample(seed, label as u64, u64::MAX - 1).permutation(count);
            for &k in &perm[..n_val] {
                is_val[start + k] = true;
            }
            start += count;
        }
        let subset = |want: bool| ImageFolder {
            root: all.root.clone(),
            classes: all.classes.clone(),
            samples: all.samples.iter().zip(&is_val).filter(|(_, v)| **v == want).map(|(s, _)| s.clone()).collect(),
        };
        Ok((subset(false), subset(true)))
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// Samples per class, indexed by label.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for (_, l) in &self.samples {
            counts[*l] += 1;
        }
        counts
    }
}
