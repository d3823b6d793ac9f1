//! MNIST IDX reader tests: the vendored dataset in `data/mnist` (fixture: the four standard
//! `.gz` files, checked against the published MD5s) and malformed files built in a temp dir.

use std::io::Write;
use std::path::{Path, PathBuf};

use convnet_data::{DataError, Images, MNIST_FILES, Mnist, idx_md5, read_idx_images, read_idx_labels, verify_mnist};
use flate2::Compression;
use flate2::write::GzEncoder;

const MNIST_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/mnist");

fn images_bytes(n: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    for v in [0x803, n, rows, cols] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    b.extend_from_slice(pixels);
    b
}

fn labels_bytes(labels: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    for v in [0x801, labels.len() as u32] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    b.extend_from_slice(labels);
    b
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// A tiny valid MNIST-shaped set: `n_train` / `n_test` 2x3 images, gzip or raw.
fn write_small_set(dir: &Path, n_train: u32, n_test: u32, gz: bool) {
    let px = |n: u32| (0..n * 6).map(|i| (i % 256) as u8).collect::<Vec<_>>();
    let lb = |n: u32| (0..n).map(|i| (i % 10) as u8).collect::<Vec<_>>();
    let files = [
        images_bytes(n_train, 2, 3, &px(n_train)),
        labels_bytes(&lb(n_train)),
        images_bytes(n_test, 2, 3, &px(n_test)),
        labels_bytes(&lb(n_test)),
    ];
    for (f, bytes) in MNIST_FILES.iter().zip(files) {
        if gz {
            write(dir, &format!("{}.gz", f.name), &gzip(&bytes));
        } else {
            write(dir, f.name, &bytes);
        }
    }
}

#[test]
fn vendored_mnist_loads() {
    let m = Mnist::load(MNIST_DIR).expect("vendored MNIST loads");
    assert_eq!((m.train_images.n, m.train_images.rows, m.train_images.cols), (60000, 28, 28));
    assert_eq!((m.test_images.n, m.test_images.rows, m.test_images.cols), (10000, 28, 28));
    assert_eq!(m.train_labels.len(), 60000);
    assert_eq!(m.test_labels.len(), 10000);
    assert_eq!(&m.train_labels[..5], &[5, 0, 4, 1, 9]);
    assert_eq!(&m.test_labels[..5], &[7, 2, 1, 0, 4]);

    let x = m.train_images.to_f32_nhwc();
    assert_eq!(x.len(), 60000 * 28 * 28);
    assert_eq!(m.train_images.shape_nhwc(), [60000, 28, 28, 1]);
    assert!(x.iter().all(|v| (0.0..=1.0).contains(v)));
    assert!(x.contains(&1.0));

    let s = m.subset(100, 20);
    assert_eq!((s.train_images.n, s.train_labels.len()), (100, 100));
    assert_eq!((s.test_images.n, s.test_labels.len()), (20, 20));
    assert_eq!(s.train_images.image(3), m.train_images.image(3));
    assert_eq!(s.train_images.image(100), None);
}

#[test]
fn vendored_mnist_md5_matches_table() {
    let first = Path::new(MNIST_DIR).join("train-images-idx3-ubyte.gz");
    assert_eq!(idx_md5(&first).unwrap(), "6bbc9ace898e44ae57da46a324031adb");
    verify_mnist(MNIST_DIR).unwrap();
}

#[test]
fn raw_and_gzip_read_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let px: Vec<u8> = (0..2 * 4 * 5).map(|i| i as u8).collect();
    let bytes = images_bytes(2, 4, 5, &px);
    // Detection is by magic bytes: the gzip file has no .gz extension, the raw one has.
    let raw = write(dir.path(), "raw.gz", &bytes);
    let gz = write(dir.path(), "compressed", &gzip(&bytes));
    let want = Images { n: 2, rows: 4, cols: 5, pixels: px };
    assert_eq!(read_idx_images(&raw).unwrap(), want);
    assert_eq!(read_idx_images(&gz).unwrap(), want);
    assert_eq!(want.image(1).unwrap(), &want.pixels[20..40]);
}

#[test]
fn small_set_loads_and_subset_clamps() {
    for gz in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        write_small_set(dir.path(), 7, 3, gz);
        let m = Mnist::load(dir.path()).unwrap();
        assert_eq!((m.train_images.n, m.test_images.n), (7, 3));
        let s = m.subset(100, 1);
        assert_eq!((s.train_images.n, s.train_labels.len()), (7, 7));
        assert_eq!((s.test_images.n, s.test_labels.len()), (1, 1));
    }
}

#[test]
fn truncated_gzip_is_truncated_error() {
    let dir = tempfile::tempdir().unwrap();
    let px: Vec<u8> = (0..10 * 28 * 28).map(|i| (i * 7 % 251) as u8).collect();
    let gz = gzip(&images_bytes(10, 28, 28, &px));
    let p = write(dir.path(), "cut.gz", &gz[..gz.len() / 2]);
    match read_idx_images(&p) {
        Err(DataError::Truncated { path, expected, got, gzip: true }) => {
            assert_eq!(path, p);
            assert_eq!(expected, 16 + 10 * 28 * 28);
            assert!(got < expected, "got {got}");
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
}

#[test]
fn truncated_raw_is_truncated_error() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = images_bytes(3, 2, 2, &[1; 12]);
    let p = write(dir.path(), "cut", &bytes[..bytes.len() - 5]);
    let err = read_idx_images(&p).unwrap_err();
    match &err {
        DataError::Truncated { expected, got, gzip: false, .. } => {
            assert_eq!((*expected, *got), (28, 23));
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("cut") && msg.contains("28") && msg.contains("23"), "{msg}");

    // Cut inside the header.
    let p = write(dir.path(), "stub", &bytes[..6]);
    assert!(matches!(read_idx_images(&p), Err(DataError::BadFile { .. })));
    let p = write(dir.path(), "empty", &[]);
    assert!(matches!(read_idx_labels(&p), Err(DataError::BadFile { .. })));
}

#[test]
fn trailing_bytes_are_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = labels_bytes(&[1, 2, 3]);
    bytes.extend_from_slice(&[0, 0]);
    let p = write(dir.path(), "long", &bytes);
    match read_idx_labels(&p) {
        Err(DataError::TrailingData { expected, got, .. }) => assert_eq!((expected, got), (11, 13)),
        other => panic!("expected TrailingData, got {other:?}"),
    }
    let p = write(dir.path(), "long.gz", &gzip(&bytes));
    assert!(matches!(read_idx_labels(&p), Err(DataError::TrailingData { .. })));
}

#[test]
fn wrong_magic_is_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    // A label file read as images.
    let p = write(dir.path(), "labels", &labels_bytes(&[1, 2]));
    let err = read_idx_images(&p).unwrap_err();
    assert!(matches!(err, DataError::BadFile { .. }), "{err:?}");
    assert!(err.to_string().contains("0x00000801"), "{err}");
    // Garbage.
    let p = write(dir.path(), "junk", b"hello world, not an idx file");
    assert!(matches!(read_idx_labels(&p), Err(DataError::BadFile { .. })));
    // Corrupt gzip body.
    let mut gz = gzip(&labels_bytes(&[1, 2, 3, 4]));
    let mid = gz.len() / 2;
    gz[mid] ^= 0xff;
    gz[mid + 1] ^= 0xff;
    let p = write(dir.path(), "corrupt.gz", &gz);
    let err = read_idx_labels(&p).unwrap_err();
    assert!(matches!(err, DataError::BadFile { .. } | DataError::Truncated { .. }), "{err:?}");
}

#[test]
fn zero_dimension_and_overflow_are_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "zero", &images_bytes(1, 0, 28, &[]));
    assert!(matches!(read_idx_images(&p), Err(DataError::BadFile { .. })));
    // A huge header on a tiny file: must fail cleanly, not allocate or panic.
    let p = write(dir.path(), "huge", &images_bytes(u32::MAX, u32::MAX, u32::MAX, &[0; 8]));
    assert!(matches!(read_idx_images(&p), Err(DataError::BadFile { .. })));
    let p = write(dir.path(), "big", &images_bytes(u32::MAX, 65536, 65536, &[0; 8]));
    assert!(matches!(read_idx_images(&p), Err(DataError::Truncated { .. })));
}

#[test]
fn label_out_of_range_names_index_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "labels.gz", &gzip(&labels_bytes(&[0, 9, 3, 11, 12])));
    let err = read_idx_labels(&p).unwrap_err();
    match &err {
        DataError::LabelOutOfRange { path, index, value } => {
            assert_eq!((path, *index, *value), (&p, 3, 11));
        }
        other => panic!("expected LabelOutOfRange, got {other:?}"),
    }
    assert!(err.to_string().contains("label 3 is 11"), "{err}");
}

#[test]
fn count_mismatch_is_typed() {
    let dir = tempfile::tempdir().unwrap();
    write_small_set(dir.path(), 5, 2, false);
    // Replace the test labels with 3 labels for 2 images.
    write(dir.path(), MNIST_FILES[3].name, &labels_bytes(&[1, 2, 3]));
    match Mnist::load(dir.path()) {
        Err(DataError::CountMismatch { images_path, labels_path, images, labels }) => {
            assert_eq!((images, labels), (2, 3));
            assert!(images_path.ends_with(MNIST_FILES[2].name));
            assert!(labels_path.ends_with(MNIST_FILES[3].name));
        }
        other => panic!("expected CountMismatch, got {other:?}"),
    }
}

#[test]
fn missing_file_is_typed() {
    let dir = tempfile::tempdir().unwrap();
    write_small_set(dir.path(), 5, 2, true);
    std::fs::remove_file(dir.path().join("t10k-images-idx3-ubyte.gz")).unwrap();
    let err = Mnist::load(dir.path()).unwrap_err();
    match &err {
        DataError::MissingFile { path, tried } => {
            assert!(path.ends_with("t10k-images-idx3-ubyte.gz"));
            assert!(tried[0].ends_with("t10k-images-idx3-ubyte"));
        }
        other => panic!("expected MissingFile, got {other:?}"),
    }
    assert!(err.to_string().contains("t10k-images-idx3-ubyte"), "{err}");

    let nowhere = dir.path().join("nope");
    assert!(matches!(read_idx_labels(&nowhere), Err(DataError::Io { .. })));
    assert!(matches!(Mnist::load(&nowhere), Err(DataError::MissingFile { .. })));
}

#[test]
fn checksum_mismatch_is_typed() {
    let dir = tempfile::tempdir().unwrap();
    write_small_set(dir.path(), 5, 2, true);
    match verify_mnist(dir.path()) {
        Err(DataError::ChecksumMismatch { path, expected, .. }) => {
            assert!(path.ends_with("train-images-idx3-ubyte.gz"));
            assert_eq!(expected, MNIST_FILES[0].md5);
        }
        other => panic!("expected ChecksumMismatch, got {other:?}"),
    }
}
