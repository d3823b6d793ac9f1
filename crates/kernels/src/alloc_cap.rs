//! A global allocator that refuses any single allocation over a limit: the fuzz tests install
//! it to prove that no reader asks for more than the limit while parsing hostile bytes (a
//! lying header must be checked against the file before anything is allocated).
//!
//! A refused request returns null, which the standard library reports as an allocation failure
//! and aborts the process, as `GlobalAlloc`'s contract allows; a hook registered with
//! [`CappedAlloc::on_refusal`] runs first, so the harness can save the input that caused it.
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: CappedAlloc = CappedAlloc::new(1 << 30);
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// The system allocator with a per-allocation size cap.
pub struct CappedAlloc {
    limit: usize,
    hook: AtomicPtr<()>,
    refused: AtomicUsize,
}

impl CappedAlloc {
    /// Refuses any single allocation (or reallocation) of more than `limit` bytes.
    pub const fn new(limit: usize) -> Self {
        CappedAlloc { limit, hook: AtomicPtr::new(std::ptr::null_mut()), refused: AtomicUsize::new(0) }
    }

    /// The cap in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Sets the function called with the requested size before a request is refused. It runs
    /// inside the allocator: it may allocate (small requests), but must not request more than
    /// the limit itself. Only the first refusal calls it.
    pub fn on_refusal(&self, hook: fn(usize)) {
        self.hook.store(hook as *mut (), Ordering::SeqCst);
    }

    fn allowed(&self, size: usize) -> bool {
        if size <= self.limit {
            return true;
        }
        let hook = self.hook.load(Ordering::SeqCst);
        if !hook.is_null() && self.refused.fetch_add(1, Ordering::SeqCst) == 0 {
            // SAFETY: the pointer was stored from a `fn(usize)` in `on_refusal`
            let hook: fn(usize) = unsafe { std::mem::transmute::<*mut (), fn(usize)>(hook) };
            hook(size);
        }
        false
    }
}

// SAFETY: forwards to the system allocator; a request over the limit gets null, which the
// contract allows (the caller treats it as an allocation failure).
unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !self.allowed(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: same layout contract as the caller's
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr came from System.alloc with this layout
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !self.allowed(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: as alloc
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !self.allowed(new_size) {
            return std::ptr::null_mut();
        }
        // SAFETY: ptr came from this allocator with `layout`
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_only_over_the_limit_and_calls_the_hook_once() {
        static SEEN: AtomicUsize = AtomicUsize::new(0);
        let a = CappedAlloc::new(1024);
        a.on_refusal(|size| {
            SEEN.fetch_add(size, Ordering::SeqCst);
        });
        let ok = Layout::from_size_align(1024, 8).unwrap();
        let big = Layout::from_size_align(1025, 8).unwrap();
        // SAFETY: the layouts are valid and non-zero; what is allocated is freed with its layout
        unsafe {
            let p = a.alloc(ok);
            assert!(!p.is_null());
            assert!(a.realloc(p, ok, 4096).is_null());
            a.dealloc(p, ok);
            assert!(a.alloc(big).is_null());
            assert!(a.alloc_zeroed(big).is_null());
        }
        assert_eq!(SEEN.load(Ordering::SeqCst), 4096, "the hook runs for the first refusal only");
    }
}
