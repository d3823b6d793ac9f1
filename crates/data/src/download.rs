//! MNIST download (cargo feature `download`): fetches the four `.gz` files over HTTPS with
//! `ureq` + rustls, checks the MD5 of the decompressed content against [`MNIST_FILES`], and
//! writes each file through a temporary file renamed into place, so a failed or interrupted
//! download never leaves a partial file under the final name.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use flate2::read::GzDecoder;

use crate::error::{DataError, Result};
use crate::mnist::{MNIST_FILES, MnistFile, find_file, idx_md5};

/// Base URL the files are fetched from (the PyTorch/torchvision mirror of MNIST).
pub const MNIST_MIRROR: &str = "https://ossci-datasets.s3.amazonaws.com/mnist/";

/// Largest response accepted; the biggest file (train images) is about 9.9 MB compressed.
const MAX_BYTES: u64 = 64 << 20;

/// Downloads the four MNIST files into `dir` (created if missing) as `name.gz`.
///
/// Files already present whose decompressed MD5 matches are kept; others are fetched from
/// [`MNIST_MIRROR`], verified ([`DataError::ChecksumMismatch`] on a bad digest) and renamed into
/// place. Returns the paths of the four files, in [`MNIST_FILES`] order.
pub fn download_mnist(dir: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
    let dir = dir.as_ref();
    fs::create_dir_all(dir).map_err(|source| DataError::Write { path: dir.to_path_buf(), source })?;
    let agent: ureq::Agent =
        ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(300))).build().into();
    let mut paths = Vec::with_capacity(MNIST_FILES.len());
    for file in MNIST_FILES {
        if let Ok(existing) = find_file(dir, file.name)
            && idx_md5(&existing).is_ok_and(|md5| md5 == file.md5)
        {
            paths.push(existing);
            continue;
        }
        paths.push(fetch(&agent, dir, file)?);
    }
    Ok(paths)
}

fn fetch(agent: &ureq::Agent, dir: &Path, file: MnistFile) -> Result<PathBuf> {
    let path = dir.join(format!("{}.gz", file.name));
    let url = format!("{MNIST_MIRROR}{}.gz", file.name);
    let fail = |reason: String| DataError::Download { path: path.clone(), url: url.clone(), reason };
    let mut response = agent.get(&url).call().map_err(|e| fail(e.to_string()))?;
    let body = response.body_mut().with_config().limit(MAX_BYTES).read_to_vec().map_err(|e| fail(e.to_string()))?;

    let mut content = Vec::new();
    GzDecoder::new(body.as_slice())
        .read_to_end(&mut content)
        .map_err(|e| fail(format!("response is not valid gzip: {e}")))?;
    let got = format!("{:x}", md5::compute(&content));
    if got != file.md5 {
        return Err(DataError::ChecksumMismatch { path, expected: file.md5.to_string(), got });
    }

    let tmp = dir.join(format!(".{}.gz.{}.part", file.name, std::process::id()));
    let written = fs::File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(&body)?;
            f.sync_all()
        })
        .and_then(|()| fs::rename(&tmp, &path));
    if let Err(source) = written {
        // Best effort: the temporary file is ours and useless now.
        let _ = fs::remove_file(&tmp);
        return Err(DataError::Write { path, source });
    }
    Ok(path)
}
