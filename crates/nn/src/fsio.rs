//! Output files that are never half-written, and output folders checked before long work.
//!
//! Every file convnet writes goes through [`write_atomic_with`]: the bytes go to a temporary
//! file `.<name>.tmp-<pid>-<n>` in the destination's folder, which is flushed and synced, then
//! renamed over the destination, and the folder itself is synced so the rename survives a power
//! cut. A full disk, a crash or a `kill -9` at any moment therefore leaves either the previous
//! file or the new one, never a truncated mix. A process killed between creating and renaming
//! its temporary file leaves that file behind; the next write to the same destination removes
//! the temporary files of processes that no longer run ([`clean_stale_temps`]).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Temporary files of one process get distinct names even when threads write the same path.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The folder of `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The prefix of the temporary files for `file_name`: `.<name>.tmp-`.
fn temp_prefix(file_name: &str) -> String {
    format!(".{file_name}.tmp-")
}

/// True when process `pid` may still be running (Linux: `/proc/<pid>` exists; elsewhere we
/// cannot tell, so every process counts as running and nothing is removed).
fn maybe_running(pid: u32) -> bool {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return true;
    }
    proc.join(pid.to_string()).exists()
}

/// Removes the temporary files that an interrupted write of `path` left behind: those named
/// `.<name>.tmp-<pid>[-<n>]` whose process is gone. Errors are ignored (best effort: a stale
/// temporary file wastes space but never replaces the destination).
pub fn clean_stale_temps(path: &Path) {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else { return };
    let prefix = temp_prefix(&name);
    let Ok(entries) = std::fs::read_dir(parent_dir(path)) else { return };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(rest) = file.to_str().and_then(|f| f.strip_prefix(&prefix)) else { continue };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid
            && pid != std::process::id()
            && !maybe_running(pid)
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Writes `path` atomically: `write` fills a buffered temporary file in the same folder, which
/// is then synced and renamed over `path`, and the folder synced. On any error the temporary
/// file is removed and `path` is untouched.
pub fn write_atomic_with<F>(path: &Path, write: F) -> std::io::Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
{
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"))?
        .to_string_lossy()
        .into_owned();
    clean_stale_temps(path);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!("{}{}-{n}", temp_prefix(&name), std::process::id()));
    let result = (|| {
        let mut w = BufWriter::new(File::create(&tmp)?);
        write(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        sync_dir(&dir);
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// [`write_atomic_with`] for bytes already in memory.
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// Syncs a folder so that a rename in it is durable. Not every platform or file system can
/// open or sync a folder; the data itself is already synced, so failures are ignored.
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Makes sure `dir` exists (creating it) and that a file can be created in it, by creating and
/// removing a probe file: commands call this before hours of training, not after.
pub fn ensure_writable_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let probe = dir.join(format!(".convnet-write-test.tmp-{}", std::process::id()));
    File::create(&probe)?;
    std::fs::remove_file(&probe)
}

/// Checks before long work that `file` can later be written: its folder exists (or is
/// created) and is writable, and `file` is not a folder.
pub fn ensure_writable_file(file: &Path) -> std::io::Result<()> {
    if file.is_dir() {
        return Err(std::io::Error::new(std::io::ErrorKind::IsADirectory, "is a folder, not a file"));
    }
    ensure_writable_dir(&parent_dir(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.bin");
        write_file_atomic(&p, b"first").unwrap();
        write_file_atomic(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("out.bin")]);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.bin");
        write_file_atomic(&p, b"good").unwrap();
        let e = write_atomic_with(&p, |w| {
            w.write_all(b"half")?;
            Err(std::io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "disk full");
        assert_eq!(std::fs::read(&p).unwrap(), b"good");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn stale_temporary_files_of_dead_processes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        // pid 0 is never a user process; the live one is ours, which is kept
        let dead = dir.path().join(".m.safetensors.tmp-0");
        let other_name = dir.path().join(".other.tmp-0");
        std::fs::write(&dead, b"partial").unwrap();
        std::fs::write(&other_name, b"x").unwrap();
        write_file_atomic(&p, b"new").unwrap();
        if Path::new("/proc/self").exists() {
            assert!(!dead.exists());
        }
        assert!(other_name.exists(), "temporary files of other destinations are left alone");
    }

    #[test]
    fn unwritable_folders_are_found_before_work() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"").unwrap();
        assert!(ensure_writable_dir(&blocker.join("sub")).is_err());
        assert!(ensure_writable_file(dir.path()).is_err());
        ensure_writable_dir(&dir.path().join("a/b")).unwrap();
        assert!(dir.path().join("a/b").is_dir());
    }
}
