//! Where the datasets are found from any working folder, and `convnet data mnist`, which puts
//! MNIST where the commands look (Keras' `mnist.load_data()` works from anywhere; so should we).
//!
//! MNIST is looked for, first folder holding the four IDX files winning:
//! 1. `--data DIR` when given (used as is, nothing else is tried);
//! 2. `$CONVNET_DATA/mnist` ([`DATA_ENV`]: a folder of dataset folders);
//! 3. `data/mnist` in the current folder or any folder above it (a checkout, from a subfolder);
//! 4. `data/mnist` above the executable (`target/release/convnet` inside a checkout);
//! 5. the user data folder: `$XDG_DATA_HOME/convnet/mnist`, else `~/.local/share/convnet/mnist`
//!    (macOS: `~/Library/Application Support/convnet/mnist`, Windows: `%APPDATA%\convnet\mnist`).

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use convnet::data::{MNIST_FILES, verify_mnist};
use convnet_data::{MNIST_MIRROR, download_mnist};
use serde_json::json;
use std::path::{Path, PathBuf};

/// Environment variable naming a folder of dataset folders (`$CONVNET_DATA/mnist`).
pub const DATA_ENV: &str = "CONVNET_DATA";

/// Help of every `--data` option that reads MNIST.
pub const MNIST_DATA_HELP: &str = "Folder with the four MNIST IDX files (.gz or raw) [default: $CONVNET_DATA/mnist, \
     else data/mnist in this folder or above it or above the executable, else the user data folder; \
     `convnet data mnist` puts it there]";

/// `convnet data ...`.
#[derive(Subcommand, Debug)]
pub enum DataCmd {
    /// Put MNIST where the commands find it: copied from a checkout's data/mnist, else downloaded
    /// (about 11 MB); checksums verified.
    Mnist(MnistDataArgs),
}

/// Options of `convnet data mnist`.
#[derive(Args, Debug)]
pub struct MnistDataArgs {
    /// Folder for the four files [default: $CONVNET_DATA/mnist, else the user data folder, e.g.
    /// ~/.local/share/convnet/mnist].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Fetch every missing file from the mirror instead of copying a local copy.
    #[arg(long)]
    pub download: bool,
    /// Print one JSON object (`dir`, `source`, `files`) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The per-user data folder of this platform, `convnet` inside it.
pub fn user_data_dir() -> Option<PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let base = if cfg!(windows) {
        env("APPDATA")
    } else if cfg!(target_os = "macos") {
        env("HOME").map(|h| h.join("Library/Application Support"))
    } else {
        env("XDG_DATA_HOME").or_else(|| env("HOME").map(|h| h.join(".local/share")))
    };
    base.map(|b| b.join("convnet"))
}

/// Where `convnet data mnist` puts MNIST by default: `$CONVNET_DATA/mnist`, else the user folder.
fn default_store() -> Option<PathBuf> {
    match std::env::var_os(DATA_ENV).filter(|v| !v.is_empty()) {
        Some(d) => Some(PathBuf::from(d).join("mnist")),
        None => user_data_dir().map(|d| d.join("mnist")),
    }
}

/// Whether `dir` holds each of the four files, compressed or not (cheap: no checksum).
fn has_mnist(dir: &Path) -> bool {
    MNIST_FILES.iter().all(|f| dir.join(format!("{}.gz", f.name)).is_file() || dir.join(f.name).is_file())
}

/// The folders searched when `--data` is not given, in order, without repeats.
fn candidates() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    let mut push = |p: PathBuf| {
        if !out.contains(&p) {
            out.push(p);
        }
    };
    if let Some(d) = std::env::var_os(DATA_ENV).filter(|v| !v.is_empty()) {
        push(PathBuf::from(d).join("mnist"));
    }
    if let Ok(cwd) = std::env::current_dir() {
        for dir in cwd.ancestors() {
            push(dir.join("data/mnist"));
        }
    }
    // through symlinks (`~/.cargo/bin/convnet` -> the checkout's build)
    if let Ok(exe) = std::env::current_exe().and_then(|e| e.canonicalize())
        && let Some(exe_dir) = exe.parent()
    {
        for dir in exe_dir.ancestors() {
            push(dir.join("data/mnist"));
        }
    }
    if let Some(d) = user_data_dir() {
        push(d.join("mnist"));
    }
    out
}

/// The MNIST folder to read: `explicit` when given, else the first searched folder holding the
/// files; the error lists every folder looked at and how to get the data.
pub fn mnist_dir(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(dir) = explicit {
        return Ok(dir.to_path_buf());
    }
    let looked = candidates();
    if let Some(found) = looked.iter().find(|d| has_mnist(d)) {
        return Ok(found.clone());
    }
    let env_note = if std::env::var_os(DATA_ENV).is_some_and(|v| !v.is_empty()) {
        ""
    } else {
        "$CONVNET_DATA/mnist ($CONVNET_DATA not set), "
    };
    let store = default_store().map_or_else(|| "a folder".to_string(), |d| d.display().to_string());
    bail!(
        "MNIST not found: looked for the four IDX files (train-images-idx3-ubyte.gz, ...) in {env_note}{}; \
         run `convnet data mnist` to put them in {store} (about 11 MB, checksums verified), \
         or pass --data DIR, or set {DATA_ENV}=DIR with the files in DIR/mnist",
        looked.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )
}

/// `convnet data mnist`.
pub fn data_cmd(cmd: &DataCmd) -> Result<()> {
    match cmd {
        DataCmd::Mnist(args) => mnist(args),
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn mnist(args: &MnistDataArgs) -> Result<()> {
    let out = match &args.out {
        Some(d) => d.clone(),
        None => default_store().context("no user data folder (HOME is not set): pass --out DIR")?,
    };
    let mut source = "already there".to_string();
    if verify_mnist(&out).is_err() {
        let local =
            if args.download { None } else { candidates().into_iter().find(|d| has_mnist(d) && !same_dir(d, &out)) };
        match local {
            Some(from) => {
                copy_mnist(&from, &out)?;
                source = format!("copied from {}", from.display());
            }
            None => source = format!("downloaded from {MNIST_MIRROR}"),
        }
    }
    // keeps every file whose checksum matches, fetches (and verifies) the rest
    let files = download_mnist(&out).with_context(|| format!("putting MNIST in {}", out.display()))?;
    let found_there = args.out.is_none() || candidates().iter().any(|d| same_dir(d, &out));
    if args.json {
        println!("{}", serde_json::to_string_pretty(&json!({ "dir": out, "source": source, "files": files }))?);
    } else {
        println!("MNIST is in {} ({source}; checksums verified)", out.display());
        if !found_there {
            println!("Commands find it there with --data {}", out.display());
        }
    }
    Ok(())
}

/// Copies the four files (as they are, `.gz` or raw) into `to`, each through a temporary name.
fn copy_mnist(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for f in MNIST_FILES {
        let gz = format!("{}.gz", f.name);
        let name = if from.join(&gz).is_file() { gz } else { f.name.to_string() };
        let tmp = to.join(format!(".{name}.{}.part", std::process::id()));
        let dest = to.join(&name);
        let copied = std::fs::copy(from.join(&name), &tmp).and_then(|_| std::fs::rename(&tmp, &dest));
        if copied.is_err() {
            // best effort: the temporary file is ours and useless now
            let _ = std::fs::remove_file(&tmp);
        }
        copied.with_context(|| format!("copying {} to {}", from.join(&name).display(), dest.display()))?;
    }
    Ok(())
}
