//! Per-thread scratch buffers, reused across calls so that hot kernels do not
//! allocate (and page-fault in) fresh megabytes every step.
//!
//! Each thread keeps a small free list of `Vec<f32>`; [`take`] hands out one
//! (grown as needed) and the returned [`Scratch`] gives it back on drop. Rayon
//! worker threads live as long as their pool, so their buffers do too.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

thread_local! {
    static FREE: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// Most buffers a thread keeps between calls.
const KEEP: usize = 16;

/// A borrowed scratch buffer of exactly the requested length.
pub struct Scratch {
    buf: Vec<f32>,
}

/// A buffer of `len` floats. When `zeroed` every value is 0; otherwise the
/// contents are unspecified (left over from earlier use) and must be written
/// before they are read.
pub fn take(len: usize, zeroed: bool) -> Scratch {
    if len == 0 {
        return Scratch { buf: Vec::new() };
    }
    let mut buf = FREE.with(|f| {
        let mut f = f.borrow_mut();
        // the smallest buffer that is already large enough, else the largest (to grow)
        let fits = f.iter().enumerate().filter(|(_, b)| b.capacity() >= len).min_by_key(|(_, b)| b.capacity());
        let pick = fits.or_else(|| f.iter().enumerate().max_by_key(|(_, b)| b.capacity())).map(|(i, _)| i);
        pick.map(|i| f.swap_remove(i)).unwrap_or_default()
    });
    if zeroed {
        buf.clear();
        buf.resize(len, 0.0);
    } else if buf.len() >= len {
        buf.truncate(len);
    } else {
        buf.resize(len, 0.0);
    }
    Scratch { buf }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        if buf.capacity() == 0 {
            return;
        }
        FREE.with(|f| {
            let mut f = f.borrow_mut();
            if f.len() < KEEP {
                f.push(buf);
            }
        });
    }
}

impl Deref for Scratch {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.buf
    }
}

impl DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_buffers_are_zero_after_reuse() {
        {
            let mut a = take(100, false);
            a.fill(3.0);
        }
        let b = take(50, true);
        assert_eq!(b.len(), 50);
        assert!(b.iter().all(|v| *v == 0.0));
        let c = take(200, false);
        assert_eq!(c.len(), 200);
    }
}
