//! NumPy `.npy` files (format versions 1-3): read float32/float64/integer arrays as f32,
//! write little-endian float32, C order. Enough for `convnet forward` to exchange NCHW
//! tensors with timm scripts (`np.load`, `np.save`).

use crate::error::{Result, ZooError};
use std::path::Path;

const MAGIC: &[u8] = b"\x93NUMPY";

/// An array read from a `.npy` file: shape and values (row-major), as f32.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Values in C order.
    pub data: Vec<f32>,
}

/// Reads a `.npy` file.
pub fn read_npy(path: impl AsRef<Path>) -> Result<NpyArray> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| ZooError::io(path, e))?;
    parse_npy(&bytes).map_err(|reason| ZooError::bad_file(path, reason))
}

/// Parses `.npy` bytes.
pub fn parse_npy(bytes: &[u8]) -> std::result::Result<NpyArray, String> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("not a .npy file (no \\x93NUMPY magic)".into());
    }
    let major = bytes[6];
    let (hlen, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err("truncated header".into());
            }
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = bytes.get(start..start + hlen).ok_or("truncated header")?;
    let header = std::str::from_utf8(header).map_err(|_| "header is not text")?;
    let descr = dict_value(header, "descr").ok_or("header lacks 'descr'")?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    if dict_value(header, "fortran_order").is_some_and(|v| v.starts_with("True")) {
        return Err("Fortran-order arrays are not supported; save with np.ascontiguousarray".into());
    }
    let shape_s = dict_value(header, "shape").ok_or("header lacks 'shape'")?;
    let inner = shape_s.trim_start_matches('(').trim_end_matches(')');
    let shape: Vec<usize> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| format!("bad dimension {s:?}")))
        .collect::<std::result::Result<_, _>>()?;
    // a hostile header may declare any shape: the product must not overflow, and the body
    // must hold it before anything is allocated
    let n = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("shape {shape:?} has more elements than memory can address"))?;
    let body = &bytes[start + hlen..];
    let (little, kind) = match descr.as_bytes() {
        [b'<' | b'|' | b'=', rest @ ..] => (true, rest),
        [b'>', rest @ ..] => (false, rest),
        rest => (true, rest),
    };
    let kind = std::str::from_utf8(kind).map_err(|_| "bad descr")?;
    let width = match kind {
        "f4" | "i4" | "u4" => 4,
        "f8" | "i8" | "u8" => 8,
        "f2" | "i2" | "u2" => 2,
        "u1" | "i1" | "b1" => 1,
        k => return Err(format!("dtype {k:?} is not supported (use float32)")),
    };
    if n.checked_mul(width).is_none_or(|need| body.len() < need) {
        return Err(format!("truncated data: {} bytes for {n} values of {width} bytes", body.len()));
    }
    let get = |i: usize| -> [u8; 8] {
        let mut b = [0u8; 8];
        let src = &body[i * width..(i + 1) * width];
        if little {
            b[..width].copy_from_slice(src);
        } else {
            for (d, s) in b[..width].iter_mut().zip(src.iter().rev()) {
                *d = *s;
            }
        }
        b
    };
    let data = (0..n)
        .map(|i| {
            let b = get(i);
            match kind {
                "f4" => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                "f8" => f64::from_le_bytes(b) as f32,
                "f2" => half(u16::from_le_bytes([b[0], b[1]])),
                "i4" => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
                "u4" => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
                "i8" => i64::from_le_bytes(b) as f32,
                "u8" => u64::from_le_bytes(b) as f32,
                "i2" => i16::from_le_bytes([b[0], b[1]]) as f32,
                "u2" => u16::from_le_bytes([b[0], b[1]]) as f32,
                "i1" => b[0] as i8 as f32,
                _ => b[0] as f32,
            }
        })
        .collect();
    Ok(NpyArray { shape, data })
}

fn half(h: u16) -> f32 {
    let s = if h >> 15 == 1 { -1.0 } else { 1.0 };
    let e = ((h >> 10) & 0x1f) as i32;
    let f = (h & 0x3ff) as f32;
    match e {
        0 => s * f * 2f32.powi(-24),
        31 => {
            if f == 0.0 {
                s * f32::INFINITY
            } else {
                f32::NAN
            }
        }
        e => s * (1.0 + f / 1024.0) * 2f32.powi(e - 15),
    }
}

/// The text after `'key':` in a Python dict literal, up to the next top-level comma.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header.find(&format!("'{key}'")).or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = &header[at + key.len() + 2..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let end = match rest.as_bytes().first()? {
        q @ (b'\'' | b'"') => rest[1..].find(*q as char)? + 2,
        b'(' => rest.find(')')? + 1,
        _ => rest.find([',', '}']).unwrap_or(rest.len()),
    };
    Some(&rest[..end])
}

/// Writes a float32 C-order `.npy` (version 1.0), atomically (a crash leaves the old file).
pub fn write_npy(path: impl AsRef<Path>, shape: &[usize], data: &[f32]) -> Result<()> {
    let path = path.as_ref();
    if shape.iter().product::<usize>() != data.len() {
        return Err(ZooError::arg("write_npy", format!("shape {shape:?} does not hold {} values", data.len())));
    }
    convnet_nn::fsio::write_file_atomic(path, &npy_bytes(shape, data)).map_err(|e| ZooError::io(path, e))
}

/// The bytes of a float32 `.npy` file.
pub fn npy_bytes(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let dims = match shape {
        [d] => format!("({d},)"),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {dims}, }}");
    // magic (6) + version (2) + length (2) + header + '\n' is a multiple of 64
    let pad = (64 - (10 + header.len() + 1) % 64) % 64;
    header.push_str(&" ".repeat(pad));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// `[n, c, h, w]` -> `[n, h, w, c]` values (timm's layout to convnet's).
pub fn nchw_to_nhwc(data: &[f32], [n, c, h, w]: [usize; 4]) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for b in 0..n {
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    out[((b * h + y) * w + x) * c + ch] = data[((b * c + ch) * h + y) * w + x];
                }
            }
        }
    }
    out
}

/// `[n, h, w, c]` -> `[n, c, h, w]` values.
pub fn nhwc_to_nchw(data: &[f32], [n, h, w, c]: [usize; 4]) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for b in 0..n {
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c {
                    out[((b * c + ch) * h + y) * w + x] = data[((b * h + y) * w + x) * c + ch];
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let data: Vec<f32> = (0..24).map(|v| v as f32 * 0.5).collect();
        let bytes = npy_bytes(&[2, 3, 4], &data);
        assert_eq!((bytes.len() - data.len() * 4) % 64, 0);
        let a = parse_npy(&bytes).unwrap();
        assert_eq!(a.shape, vec![2, 3, 4]);
        assert_eq!(a.data, data);
        assert!(parse_npy(b"hello").is_err());
        assert!(parse_npy(&bytes[..bytes.len() - 4]).unwrap_err().contains("truncated"));
        let one = parse_npy(&npy_bytes(&[3], &[1.0, 2.0, 3.0])).unwrap();
        assert_eq!(one.shape, vec![3]);
    }

    /// A header whose shape product overflows `usize`, or whose data would not fit the body,
    /// is an error before anything is allocated (it used to panic on the multiplication).
    #[test]
    fn hostile_shapes_are_errors() {
        let header = |shape: &str| {
            let h = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
            let mut b = b"\x93NUMPY\x01\x00".to_vec();
            b.extend_from_slice(&(h.len() as u16).to_le_bytes());
            b.extend_from_slice(h.as_bytes());
            b.extend_from_slice(&[0u8; 16]);
            b
        };
        let e = parse_npy(&header("(4294967296, 4294967296, 4294967296)")).unwrap_err();
        assert!(e.contains("more elements"), "{e}");
        let e = parse_npy(&header(&format!("({},)", usize::MAX / 2))).unwrap_err();
        assert!(e.contains("truncated"), "{e}");
        assert_eq!(parse_npy(&header("(2, 2)")).unwrap().data, vec![0.0; 4]);
    }

    #[test]
    fn layouts_transpose() {
        let x: Vec<f32> = (0..2 * 3 * 2 * 2).map(|v| v as f32).collect();
        let y = nchw_to_nhwc(&x, [2, 3, 2, 2]);
        assert_eq!(y[..3], [0.0, 4.0, 8.0]);
        assert_eq!(nhwc_to_nchw(&y, [2, 2, 2, 3]), x);
    }
}
