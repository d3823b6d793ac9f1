//! Single-precision GEMM through the `gemm` crate (AVX-512 microkernels with
//! run-time dispatch and a portable fallback), wrapped with shape checks.
//!
//! Threading is ours, not the crate's: the larger output dimension is cut
//! into one panel per thread and each panel is a single-threaded GEMM over
//! the full depth, so every output element is computed the same way in
//! every run (for a given thread count) and the short, wide products of
//! dense layers scale (the crate's own threading barely did at 128 rows).

use rayon::prelude::*;

/// A read-only matrix view: `rows x cols`, element `(i, j)` at `i * row_stride + j * col_stride`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// Row-major `rows x cols` view of `data`.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self { data, rows, cols, row_stride: cols, col_stride: 1 }
    }

    /// The transposed view (no copy).
    pub fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    fn check(&self, what: &str) {
        if self.rows > 0 && self.cols > 0 {
            let last = (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride;
            assert!(last < self.data.len(), "gemm: {what} view out of bounds");
        }
    }
}

/// A mutable row-major-with-stride matrix view (`col_stride` is 1 unless set).
#[derive(Debug)]
pub struct MatMut<'a> {
    pub data: &'a mut [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> MatMut<'a> {
    /// Row-major `rows x cols` view of `data`.
    pub fn row_major(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        Self { data, rows, cols, row_stride: cols, col_stride: 1 }
    }
}

/// `c = a @ b` (or `c += a @ b` when `accumulate`).
///
/// Panics if the views do not fit their slices (an internal invariant: the
/// tensor layer checks user-facing shapes before calling).
pub fn sgemm(a: MatRef<'_>, b: MatRef<'_>, c: MatMut<'_>, accumulate: bool) {
    let (m, n, k) = (a.rows, b.cols, a.cols);
    crate::profile::timed(
        || ("matmul", format!("matmul {m}x{k} @ {k}x{n}"), 2 * (m * n * k) as u64),
        || sgemm_impl(a, b, c, accumulate, true),
    );
}

/// [`sgemm`] on the calling thread only, for kernels that parallelise
/// outside (one GEMM per task).
pub fn sgemm_serial(a: MatRef<'_>, b: MatRef<'_>, c: MatMut<'_>, accumulate: bool) {
    sgemm_impl(a, b, c, accumulate, false);
}

fn sgemm_impl(a: MatRef<'_>, b: MatRef<'_>, c: MatMut<'_>, accumulate: bool, threaded: bool) {
    crate::alloc::configure();
    assert_eq!(a.cols, b.rows, "gemm: inner dimensions differ");
    assert_eq!(a.rows, c.rows, "gemm: output rows differ");
    assert_eq!(b.cols, c.cols, "gemm: output cols differ");
    a.check("lhs");
    b.check("rhs");
    if c.rows > 0 && c.cols > 0 {
        let last = (c.rows - 1) * c.row_stride + (c.cols - 1) * c.col_stride;
        assert!(last < c.data.len(), "gemm: dst view out of bounds");
    }
    let (m, n, k) = (c.rows, c.cols, a.cols);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    c.data[i * c.row_stride + j * c.col_stride] = 0.0;
                }
            }
        }
        return;
    }
    let flops = 2 * m * n * k;
    let threads = if threaded { crate::threads() } else { 1 };
    let (cs, ars, acs, brs, bcs) = (c.col_stride, a.row_stride, a.col_stride, b.row_stride, b.col_stride);
    let crs = c.row_stride;
    let (cp, ap, bp) =
        (SendPtr(c.data.as_mut_ptr()), SendPtr(a.data.as_ptr().cast_mut()), SendPtr(b.data.as_ptr().cast_mut()));
    if flops < 1 << 17 || threads == 1 {
        // SAFETY: every view was bounds-checked above.
        unsafe {
            gemm_raw(
                (m, n, k),
                cp,
                (crs, cs),
                accumulate,
                ap,
                (ars, acs),
                bp,
                (brs, bcs),
                gemm::Parallelism::None,
                CRATE_PACKING,
            )
        };
        return;
    }
    // Split the larger output dimension into one panel per thread, each a
    // single-threaded GEMM over the full depth: for the short, wide products
    // of dense layers (128 x 3136 x 128) this is up to 1.5x faster than the
    // gemm crate's own threading, and as fast for large squares.
    let by_rows = m >= n;
    let len = if by_rows { m } else { n };
    let panels = threads.min(len.div_ceil(16));
    (0..panels).into_par_iter().for_each(|p| {
        let (lo, hi) = (p * len / panels, (p + 1) * len / panels);
        let (cp, ap, bp) = (cp, ap, bp);
        // SAFETY: the views were bounds-checked above; a panel is the
        // sub-view of rows (or columns) lo..hi of c and of a (or b), and the
        // panels write disjoint parts of c.
        unsafe {
            if by_rows {
                gemm_raw(
                    (hi - lo, n, k),
                    cp.add(lo * crs),
                    (crs, cs),
                    accumulate,
                    ap.add(lo * ars),
                    (ars, acs),
                    bp,
                    (brs, bcs),
                    gemm::Parallelism::None,
                    CRATE_PACKING,
                );
            } else {
                gemm_raw(
                    (m, hi - lo, k),
                    cp.add(lo * cs),
                    (crs, cs),
                    accumulate,
                    ap,
                    (ars, acs),
                    bp.add(lo * bcs),
                    (brs, bcs),
                    gemm::Parallelism::None,
                    CRATE_PACKING,
                );
            }
        }
    });
}

/// The gemm crate's own threshold for copying its left operand into packed
/// panels on a single thread (it copies when the product has more than this
/// many times 6 columns): what every product but [`sgemm_serial_raw`]'s uses.
const CRATE_PACKING: usize = 8;

/// The packing threshold for [`sgemm_serial_raw`]'s products, whose right
/// operand (the crate's left one, once it has transposed the row-major
/// product) is a convolution's weights, `ldb` floats per row.
///
/// The crate copies the weights into panels on every call once a band has
/// more than 48 pixels. For the small layers of a batch-1 pass (EfficientNet's
/// 7x7 and 14x14 pointwise convolutions: 49 and 196 pixels against up to
/// 1152 x 192 weights) the copy costs about as much as the product. It is
/// needed only when rows `ldb` floats apart fall into few of the 64 sets of
/// L1 and evict each other, as with strides that are multiples of 1 KiB
/// (ResNet's 256 to 2048 channels). Other strides read the weights in place
/// up to 384-pixel bands: EfficientNet-B0 and -Lite0 ran 2-6% faster at
/// batch 1 and 1-5% at batch 16, ResNet-50 unchanged.
///
/// The threshold is a global of the crate, set before each product: a
/// product running at the same time on another thread may see the other
/// setting, which changes its speed, never its result.
fn weight_packing(ldb: usize) -> usize {
    let lines = ldb / 16;
    let sets = if !ldb.is_multiple_of(16) || lines == 0 { 64 } else { 64 / gcd(lines, 64) };
    if sets >= 16 { 64 } else { CRATE_PACKING }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// A raw pointer that may cross threads (the callers guarantee disjoint writes).
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: used only to hand disjoint panels of checked views to rayon tasks.
unsafe impl Send for SendPtr {}
// SAFETY: as above.
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// The pointer `offset` elements on.
    ///
    /// # Safety
    /// The result must stay inside the allocation.
    unsafe fn add(self, offset: usize) -> SendPtr {
        // SAFETY: the caller's contract.
        SendPtr(unsafe { self.0.add(offset) })
    }
}

/// `c = a @ b` (or `+=`) on raw views: `(m, n, k)`, each matrix with `(row, col)` strides.
///
/// # Safety
/// Every element `(i, j)` with `i < rows`, `j < cols` of the three views must
/// be in bounds, and `c` must not overlap `a` or `b`.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_raw(
    (m, n, k): (usize, usize, usize),
    c: SendPtr,
    (crs, ccs): (usize, usize),
    accumulate: bool,
    a: SendPtr,
    (ars, acs): (usize, usize),
    b: SendPtr,
    (brs, bcs): (usize, usize),
    par: gemm::Parallelism,
    packing: usize,
) {
    gemm::set_lhs_packing_threshold_single_thread(packing);
    // SAFETY: the caller's contract; the gemm crate reads and writes only
    // elements (i, j) with i < rows and j < cols of each view.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.0,
            ccs as isize,
            crs as isize,
            accumulate,
            a.0.cast_const(),
            acs as isize,
            ars as isize,
            b.0.cast_const(),
            bcs as isize,
            brs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

/// `c = a @ b` on the calling thread, on raw row-major views with row
/// strides `ldc`, `lda`, `ldb` (unit column strides): for kernels that split
/// one output into blocks written by different threads.
///
/// # Safety
/// `a` must be readable for `m` rows of `k` floats at stride `lda`, `b` for
/// `k` rows of `n` at `ldb`, `c` writable for `m` rows of `n` at `ldc` (it is
/// only written, never read), and `c` must not overlap `a` or `b`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn sgemm_serial_raw(
    (m, n, k): (usize, usize, usize),
    c: *mut f32,
    ldc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for i in 0..m {
            // SAFETY: row i of c is writable for n floats (the caller's contract).
            unsafe { std::slice::from_raw_parts_mut(c.add(i * ldc), n).fill(0.0) };
        }
        return;
    }
    // SAFETY: the caller's contract covers every element the views name.
    unsafe {
        gemm_raw(
            (m, n, k),
            SendPtr(c),
            (ldc, 1),
            false,
            SendPtr(a.cast_mut()),
            (lda, 1),
            SendPtr(b.cast_mut()),
            (ldb, 1),
            gemm::Parallelism::None,
            weight_packing(ldb),
        )
    };
}

/// `c[i] = a[i] @ b[i]` (or `+=`) for `i < batch`: batch entry `i` of `a` is the view `a`
/// moved `a_step` floats on (0 broadcasts one matrix to every entry), likewise `b`; `c`
/// holds the products contiguously, `[batch, a.rows, b.cols]` row-major.
///
/// Attention's products are many small ones (a head's `tokens x head_dim` by
/// `head_dim x tokens`): with at least as many entries as threads, each entry runs on
/// one thread ([`sgemm_serial`]); fewer, larger entries run one after the other, each
/// split across the threads ([`sgemm`]).
#[allow(clippy::too_many_arguments)]
pub fn sgemm_batched(
    batch: usize,
    a: MatRef<'_>,
    a_step: usize,
    b: MatRef<'_>,
    b_step: usize,
    c: &mut [f32],
    accumulate: bool,
) {
    let (m, n) = (a.rows, b.cols);
    assert_eq!(c.len(), batch * m * n, "gemm batched: output length");
    if batch == 0 || m * n == 0 {
        return;
    }
    fn entry(v: MatRef<'_>, step: usize, i: usize) -> MatRef<'_> {
        let off = i * step;
        assert!(off <= v.data.len(), "gemm batched: entry {i} out of bounds");
        MatRef { data: &v.data[off..], ..v }
    }
    let threads = crate::threads();
    if batch >= threads || 2 * m * n * a.cols < 1 << 17 {
        c.par_chunks_mut(m * n).enumerate().for_each(|(i, ci)| {
            sgemm_serial(entry(a, a_step, i), entry(b, b_step, i), MatMut::row_major(ci, m, n), accumulate)
        });
    } else {
        for (i, ci) in c.chunks_mut(m * n).enumerate() {
            sgemm(entry(a, a_step, i), entry(b, b_step, i), MatMut::row_major(ci, m, n), accumulate);
        }
    }
}

/// Plain triple-loop reference used by tests.
pub fn sgemm_reference(a: MatRef<'_>, b: MatRef<'_>, c: MatMut<'_>, accumulate: bool) {
    for i in 0..c.rows {
        for j in 0..c.cols {
            let mut s = 0.0f64;
            for p in 0..a.cols {
                s += a.data[i * a.row_stride + p * a.col_stride] as f64
                    * b.data[p * b.row_stride + j * b.col_stride] as f64;
            }
            let dst = &mut c.data[i * c.row_stride + j * c.col_stride];
            *dst = if accumulate { *dst + s as f32 } else { s as f32 };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batched_products_match_one_product_per_entry() {
        for &(batch, m, n, k) in &[(1, 3, 5, 7), (2, 1, 1, 1), (5, 17, 33, 9), (3, 67, 13, 65), (12, 64, 64, 8)] {
            let a: Vec<f32> = (0..batch * m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0).collect();
            let b: Vec<f32> = (0..batch * k * n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 3.0).collect();
            // b stored transposed per entry ([batch, n, k]) and read through a transposed view
            let mut bt = vec![0.0; b.len()];
            for e in 0..batch {
                for p in 0..k {
                    for j in 0..n {
                        bt[e * n * k + j * k + p] = b[e * k * n + p * n + j];
                    }
                }
            }
            let mut c = vec![0.5; batch * m * n];
            let view = MatRef::row_major(&bt, n, k).t();
            sgemm_batched(batch, MatRef::row_major(&a, m, k), m * k, view, n * k, &mut c, true);
            // a broadcast (step 0) against every entry of b
            let mut cb = vec![0.0; batch * m * n];
            sgemm_batched(batch, MatRef::row_major(&a, m, k), 0, MatRef::row_major(&b, k, n), k * n, &mut cb, false);
            for e in 0..batch {
                let mut want = vec![0.5; m * n];
                let ae = &a[e * m * k..(e + 1) * m * k];
                let be = &b[e * k * n..(e + 1) * k * n];
                sgemm_reference(
                    MatRef::row_major(ae, m, k),
                    MatRef::row_major(be, k, n),
                    MatMut::row_major(&mut want, m, n),
                    true,
                );
                let mut want_b = vec![0.0; m * n];
                sgemm_reference(
                    MatRef::row_major(&a[..m * k], m, k),
                    MatRef::row_major(be, k, n),
                    MatMut::row_major(&mut want_b, m, n),
                    false,
                );
                for (x, y) in c[e * m * n..(e + 1) * m * n]
                    .iter()
                    .zip(&want)
                    .chain(cb[e * m * n..(e + 1) * m * n].iter().zip(&want_b))
                {
                    assert!((x - y).abs() < 1e-4 * (1.0 + y.abs()), "{batch}x{m}x{n}x{k}: {x} vs {y}");
                }
            }
        }
    }

    #[test]
    fn matches_reference_on_ragged_sizes() {
        for &(m, n, k) in &[(1, 1, 1), (3, 5, 7), (17, 33, 9), (67, 13, 65), (64, 64, 64)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 3.0).collect();
            let mut c1 = vec![1.0; m * n];
            let mut c2 = c1.clone();
            // b given transposed in memory: exercise strides
            let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
            let bt_view = MatRef::row_major(&bt, n, k).t();
            sgemm(MatRef::row_major(&a, m, k), bt_view, MatMut::row_major(&mut c1, m, n), true);
            sgemm_reference(
                MatRef::row_major(&a, m, k),
                MatRef::row_major(&b, k, n),
                MatMut::row_major(&mut c2, m, n),
                true,
            );
            for (x, y) in c1.iter().zip(&c2) {
                assert!((x - y).abs() < 1e-4 * (1.0 + y.abs()), "{m}x{n}x{k}: {x} vs {y}");
            }
        }
    }

    #[test]
    fn weights_are_packed_only_when_their_rows_alias_in_l1() {
        // ResNet's channel counts (strides of 1-8 KiB: four sets or fewer) and
        // EfficientNet's widest (1152: eight sets; the head's 1280: four)
        for ldb in [256, 512, 1024, 2048, 1152, 1280] {
            assert_eq!(weight_packing(ldb), CRATE_PACKING, "{ldb}");
        }
        // EfficientNet's others: 16 sets or more, or rows not a whole number of lines
        for ldb in [64, 96, 192, 320, 480, 672, 24, 40] {
            assert_eq!(weight_packing(ldb), 64, "{ldb}");
        }
    }

    #[test]
    fn packed_and_unpacked_weights_give_the_same_bits() {
        // a batch-1 pointwise layer: 49 pixels, a panel of 288 of 1152 output channels
        let (m, n, k, ldb) = (49, 288, 192, 1152);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0).collect();
        let b: Vec<f32> = (0..k * ldb).map(|i| ((i * 5 % 11) as f32 - 5.0) / 3.0).collect();
        let run = |packing: usize| {
            let mut c = vec![0.0f32; m * n];
            let (cp, ap, bp) =
                (SendPtr(c.as_mut_ptr()), SendPtr(a.as_ptr().cast_mut()), SendPtr(b.as_ptr().cast_mut()));
            // SAFETY: c is m x n, a is m x k, b is k rows of ldb >= n floats.
            unsafe {
                gemm_raw((m, n, k), cp, (n, 1), false, ap, (k, 1), bp, (ldb, 1), gemm::Parallelism::None, packing)
            };
            c
        };
        let (packed, unpacked) = (run(1), run(256));
        assert_eq!(packed, unpacked);
        let mut want = vec![0.0f32; m * n];
        let bv: Vec<f32> = (0..k * n).map(|i| b[(i / n) * ldb + i % n]).collect();
        sgemm_reference(
            MatRef::row_major(&a, m, k),
            MatRef::row_major(&bv, k, n),
            MatMut::row_major(&mut want, m, n),
            false,
        );
        for (x, y) in packed.iter().zip(&want) {
            assert!((x - y).abs() < 1e-4 * (1.0 + y.abs()), "{x} vs {y}");
        }
    }
}
