//! IDX file reader (the MNIST container format), raw or gzip-compressed.
//!
//! Format (big-endian): a 4-byte magic `0x00 0x00 type ndim`, then `ndim` u32 dimensions, then
//! the payload, row-major. MNIST uses type `0x08` (unsigned byte): images are `0x00000803`
//! (`[n, rows, cols]`), labels `0x00000801` (`[n]`). Compression is detected by the gzip magic
//! bytes `1f 8b`, not by the file extension.
//!
//! Every malformed input (wrong magic, zero dimension, truncated or over-long payload, corrupt
//! gzip, label outside `0..=9`) is reported as a [`DataError`] naming the file; nothing panics.

use std::fs::File;
use std::io::{self, BufReader, Cursor, Read};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use crate::error::{DataError, Result};

/// Magic number of an IDX file of unsigned-byte 3-D data (MNIST images).
const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned-byte 1-D data (MNIST labels).
const LABELS_MAGIC: u32 = 0x0000_0801;
/// Never reserve more than this up front: a lying header must not trigger a huge allocation.
const MAX_RESERVE: u64 = 64 << 20;

/// A stack of 8-bit greyscale images, as stored in an IDX3 file.
///
/// `pixels` has `n * rows * cols` bytes, image-major then row-major: pixel `(i, r, c)` is at
/// `pixels[(i * rows + r) * cols + c]`; `0` is background, `255` is full ink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Images {
    /// Number of images.
    pub n: usize,
    /// Rows (height) of each image.
    pub rows: usize,
    /// Columns (width) of each image.
    pub cols: usize,
    /// Raw pixels, `[n, rows, cols]` row-major.
    pub pixels: Vec<u8>,
}

impl Images {
    /// Number of pixels in one image (`rows * cols`).
    pub fn image_len(&self) -> usize {
        self.rows * self.cols
    }

    /// The pixels of image `i` (`[rows, cols]` row-major), or `None` if `i >= n`.
    pub fn image(&self, i: usize) -> Option<&[u8]> {
        if i >= self.n {
            return None;
        }
        let len = self.image_len();
        self.pixels.get(i * len..(i + 1) * len)
    }

    /// NHWC shape of [`Images::to_f32_nhwc`]: `[n, rows, cols, 1]`.
    pub fn shape_nhwc(&self) -> [usize; 4] {
        [self.n, self.rows, self.cols, 1]
    }

    /// Pixels as `f32` in `[0, 1]` (divided by 255), shape `[n, rows, cols, 1]` (NHWC), the
    /// usual Keras preprocessing `x.reshape(-1, 28, 28, 1).astype("float32") / 255`.
    pub fn to_f32_nhwc(&self) -> Vec<f32> {
        self.pixels.iter().map(|&p| f32::from(p) / 255.0).collect()
    }

    /// The first `n` images (all of them if `n >= self.n`).
    pub fn first(&self, n: usize) -> Images {
        let n = n.min(self.n);
        Images {
            n,
            rows: self.rows,
            cols: self.cols,
            pixels: self.pixels[..(n * self.image_len()).min(self.pixels.len())].to_vec(),
        }
    }
}

/// Reads an IDX3 unsigned-byte image file (`train-images-idx3-ubyte[.gz]`), raw or gzip.
///
/// Checks the magic `0x00000803`, that rows and cols are non-zero, and that the payload holds
/// exactly `n * rows * cols` bytes: a short file is [`DataError::Truncated`] (with expected and
/// actual byte counts), extra bytes are [`DataError::TrailingData`].
pub fn read_idx_images(path: impl AsRef<Path>) -> Result<Images> {
    let path = path.as_ref();
    images_from(IdxSource::new(path, open(path)?)?)
}

/// [`read_idx_images`] from bytes already in memory (raw or gzip); `path` only names them in
/// errors. The file reader runs the same code, so the fuzz test covers it.
pub fn parse_idx_images(bytes: &[u8], path: &Path) -> Result<Images> {
    images_from(IdxSource::new(path, bytes)?)
}

/// Reads an IDX1 unsigned-byte label file (`train-labels-idx1-ubyte[.gz]`), raw or gzip.
///
/// Checks the magic `0x00000801`, the exact payload length (as [`read_idx_images`]) and that
/// every label is a digit `0..=9` ([`DataError::LabelOutOfRange`] names the first bad one).
pub fn read_idx_labels(path: impl AsRef<Path>) -> Result<Vec<u8>> {
    let path = path.as_ref();
    labels_from(IdxSource::new(path, open(path)?)?)
}

/// [`read_idx_labels`] from bytes already in memory (raw or gzip); `path` only names them in
/// errors.
pub fn parse_idx_labels(bytes: &[u8], path: &Path) -> Result<Vec<u8>> {
    labels_from(IdxSource::new(path, bytes)?)
}

fn images_from(mut src: IdxSource) -> Result<Images> {
    let dims = src.header(IMAGES_MAGIC, "images (IDX3, unsigned byte)")?;
    let [n, rows, cols] = [dims[0], dims[1], dims[2]];
    if rows == 0 || cols == 0 {
        return Err(src.bad(format!("image size is {rows}x{cols}; rows and cols must be > 0")));
    }
    let payload = [n, rows, cols].iter().try_fold(1u64, |acc, &d| acc.checked_mul(u64::from(d)));
    let Some(payload) = payload else {
        return Err(src.bad(format!("header dimensions {n}x{rows}x{cols} overflow")));
    };
    let pixels = src.payload(payload)?;
    Ok(Images { n: n as usize, rows: rows as usize, cols: cols as usize, pixels })
}

fn labels_from(mut src: IdxSource) -> Result<Vec<u8>> {
    let dims = src.header(LABELS_MAGIC, "labels (IDX1, unsigned byte)")?;
    let labels = src.payload(u64::from(dims[0]))?;
    if let Some((index, &value)) = labels.iter().enumerate().find(|&(_, &v)| v > 9) {
        return Err(DataError::LabelOutOfRange { path: src.path.clone(), index, value });
    }
    Ok(labels)
}

/// Reads a whole file, decompressing it if it starts with the gzip magic. Used for checksums.
pub(crate) fn read_decompressed(path: &Path) -> Result<Vec<u8>> {
    let mut src = IdxSource::new(path, open(path)?)?;
    let mut out = Vec::new();
    if let Err(e) = src.reader.read_to_end(&mut out) {
        return Err(src.read_error(e));
    }
    Ok(out)
}

fn open(path: &Path) -> Result<BufReader<File>> {
    File::open(path).map(BufReader::new).map_err(|source| DataError::Io { path: path.to_path_buf(), source })
}

/// An IDX stream (a file or bytes in memory), positioned after whatever has been consumed so far.
struct IdxSource<'a> {
    path: PathBuf,
    reader: Box<dyn Read + 'a>,
    gzip: bool,
    /// Decompressed bytes consumed so far (the header, once read).
    consumed: u64,
}

impl<'a> IdxSource<'a> {
    /// Looks at the first two bytes for the gzip magic, then reads the stream from its start.
    fn new(path: &Path, mut input: impl Read + 'a) -> Result<Self> {
        let mut magic = [0u8; 2];
        let got =
            read_full(&mut input, &mut magic).map_err(|source| DataError::Io { path: path.to_path_buf(), source })?;
        let gzip = got == 2 && magic == [0x1f, 0x8b];
        let whole = Cursor::new(magic).take(got as u64).chain(input);
        let reader: Box<dyn Read + 'a> = if gzip { Box::new(GzDecoder::new(whole)) } else { Box::new(whole) };
        Ok(Self { path: path.to_path_buf(), reader, gzip, consumed: 0 })
    }

    fn bad(&self, reason: String) -> DataError {
        DataError::BadFile { path: self.path.clone(), reason }
    }

    /// Maps a read error: inside a gzip stream it means corrupt or cut-off compressed data.
    fn read_error(&self, e: io::Error) -> DataError {
        let corrupt =
            matches!(e.kind(), io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput | io::ErrorKind::UnexpectedEof);
        if self.gzip && corrupt {
            self.bad(format!("corrupt gzip stream: {e}"))
        } else {
            DataError::Io { path: self.path.clone(), source: e }
        }
    }

    /// Reads and checks the magic and the dimensions; returns the dimensions.
    fn header(&mut self, want_magic: u32, what: &str) -> Result<Vec<u32>> {
        let ndim = (want_magic & 0xff) as usize;
        let header_len = 4 + 4 * ndim;
        let mut buf = vec![0u8; header_len];
        let got = read_full(&mut self.reader, &mut buf).map_err(|e| self.read_error(e))?;
        if got >= 4 {
            let magic = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
            if magic != want_magic {
                let hint = match magic {
                    IMAGES_MAGIC => " (that is an IDX3 image file)",
                    LABELS_MAGIC => " (that is an IDX1 label file)",
                    _ if magic >> 16 != 0 => " (not an IDX file)",
                    _ => "",
                };
                return Err(
                    self.bad(format!("bad magic number 0x{magic:08x}{hint}; expected 0x{want_magic:08x} for {what}"))
                );
            }
        }
        if got < header_len {
            let what = if self.gzip { "decompressed data" } else { "file" };
            return Err(self.bad(format!(
                "too short for an IDX header: need {header_len} bytes, the {what} has {got} \
                 (truncated or empty file?)"
            )));
        }
        self.consumed = header_len as u64;
        Ok(buf[4..].chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect())
    }

    /// Reads exactly `len` payload bytes and checks that nothing follows.
    fn payload(&mut self, len: u64) -> Result<Vec<u8>> {
        let expected = self.consumed + len;
        let mut out = Vec::with_capacity(len.min(MAX_RESERVE) as usize);
        let mut limited = (&mut self.reader).take(len);
        let result = limited.read_to_end(&mut out);
        let got = self.consumed + out.len() as u64;
        match result {
            Ok(_) if got == expected => {}
            // A clean EOF, or a gzip stream cut off mid-way: either way the data is short.
            Ok(_) => return Err(self.truncated(expected, got)),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(self.truncated(expected, got));
            }
            Err(e) => return Err(self.read_error(e)),
        }
        let extra = match io::copy(&mut self.reader, &mut io::sink()) {
            Ok(extra) => extra,
            Err(e) => return Err(self.read_error(e)),
        };
        if extra > 0 {
            return Err(DataError::TrailingData { path: self.path.clone(), expected, got: expected + extra });
        }
        Ok(out)
    }

    fn truncated(&self, expected: u64, got: u64) -> DataError {
        DataError::Truncated { path: self.path.clone(), expected, got, gzip: self.gzip }
    }
}

/// Reads until `buf` is full or EOF; returns the number of bytes read.
///
/// A gzip stream cut off mid-way reports `UnexpectedEof`; that counts as EOF here, so the caller
/// sees a short read and can say how many bytes were there.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Ok(k) => filled += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
