//! Matrix products `C ← A·B` and `C ← C + A·B` in `f32`: the one GEMM of the training engine.
//!
//! # Method
//! The usual packed design (Goto, BLIS): `A` is copied into panels of `MR` rows and `B`
//! into panels of `NR` columns, `KC` values of the shared dimension at a time, and a
//! register-tiled micro-kernel multiplies one `A` panel by one `B` panel into an `MR × NR`
//! tile of `C` held in registers. The work is split over rayon's pool in blocks of `C`.
//! The micro-kernel is chosen once, at run time, from what the processor has: AVX-512F
//! (12 × 32 tile), AVX2 + FMA (6 × 16) or portable code (4 × 8).
//!
//! # Determinism
//! Every element of `C` is one chain of fused multiply-adds over `k` in ascending order,
//! starting from its old value (`accumulate`) or from zero. Tile and block sizes, the
//! thread count and the instruction set only decide which core computes which element and
//! how fast, never that chain, so every kernel on every thread count gives the same bits
//! (tested below against a naive chain of `f32::mul_add`).
//!
//! # Batched operands
//! An [`Axis`] maps an index `i` to the offset `(i / inner)·outer + (i % inner)·stride`, so
//! a batch of `[c, h·w]` planes reads and writes as one `c × (n·h·w)` matrix without a
//! copy: a convolution over a whole batch is one product.
//!
//! # Safety
//! This module holds the engine's `unsafe` code: the SIMD micro-kernels and the shared
//! pointer to `C`. The invariants, checked by [`gemm`] before any of it runs:
//! - every offset an operand's axes can produce is inside its slice ([`Axis::extent`]);
//! - `C`'s axes map distinct `(i, j)` to distinct offsets ([`injective`]), so tasks that
//!   own disjoint sets of `(i, j)` never write the same element;
//! - packed panels hold exactly `kc·MR` and `kc·NR` values, and a tile is written through
//!   the pointer directly only when all its `MR × NR` elements are in `C` at row stride
//!   `ldc` and unit column stride; every other tile goes through a local buffer.
#![allow(unsafe_code)]

use rayon::prelude::*;
use std::cell::Cell;
use std::sync::OnceLock;

/// Values of the shared dimension packed at a time: MiniLM's 384 in one block, so `C` is
/// loaded once (measured best of 128, 256 and 384 on the MiniLM and MobileNetV2 shapes).
const KC: usize = 384;

/// The largest micro-kernel tile (AVX-512's 12 × 32), the size of the edge-tile buffer.
const TILE_MAX: usize = 12 * 32;

/// Products with fewer multiply-adds than this run on the calling thread.
const PARALLEL_MIN: usize = 1 << 17;

/// One axis of a matrix operand: index `i` lives at `(i / inner)·outer + (i % inner)·stride`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Axis {
    pub len: usize,
    pub stride: usize,
    pub inner: usize,
    pub outer: usize,
}

impl Axis {
    /// `len` indices `stride` apart.
    pub fn new(len: usize, stride: usize) -> Self {
        Axis {
            len,
            stride,
            inner: len.max(1),
            outer: 0,
        }
    }

    /// `len` indices in groups of `inner`, `stride` apart within a group, groups `outer`
    /// apart: the columns of a batch of `[c, h·w]` planes are `batched(n·h·w, h·w, 1, c·h·w)`.
    pub fn batched(len: usize, inner: usize, stride: usize, outer: usize) -> Self {
        Axis {
            len,
            stride,
            inner: inner.max(1),
            outer,
        }
    }

    #[inline(always)]
    fn at(&self, i: usize) -> usize {
        if self.inner >= self.len {
            i * self.stride
        } else {
            (i / self.inner) * self.outer + (i % self.inner) * self.stride
        }
    }

    /// One more than the largest offset of any index (0 for an empty axis).
    pub fn extent(&self) -> usize {
        if self.len == 0 {
            return 0;
        }
        let groups = (self.len - 1) / self.inner;
        groups * self.outer + (self.len.min(self.inner) - 1) * self.stride + 1
    }

    /// `(count, stride)` of the one or two strided ranges this axis is made of.
    fn dims(&self) -> [(usize, usize); 2] {
        if self.inner >= self.len {
            [(self.len, self.stride), (1, 0)]
        } else {
            [
                (self.inner, self.stride),
                (self.len.div_ceil(self.inner), self.outer),
            ]
        }
    }

    /// The offset of index `from` when indices `from..from + count` are consecutive in
    /// memory (unit stride, one group), else `None`.
    #[inline]
    fn run(&self, from: usize, count: usize) -> Option<usize> {
        let one_group = self.inner >= self.len || from % self.inner + count <= self.inner;
        (count > 0 && (self.stride == 1 || count == 1) && one_group).then(|| self.at(from))
    }

    /// Indices `from..from + count` as runs of consecutive offsets, `(position in the
    /// range, first offset, length)`, when the stride is 1 and they span at most
    /// [`MAX_RUNS`] groups.
    fn runs(&self, from: usize, count: usize) -> Option<Runs> {
        if self.stride != 1 {
            return None;
        }
        let mut runs = Runs::default();
        let mut j = from;
        while j < from + count {
            if runs.len == MAX_RUNS {
                return None;
            }
            let r = if self.inner >= self.len {
                j
            } else {
                j % self.inner
            };
            let len = (self.inner - r).min(from + count - j);
            runs.items[runs.len] = (j - from, self.at(j), len);
            runs.len += 1;
            j += len;
        }
        Some(runs)
    }

    /// Offsets of indices `from..from + count`, computed incrementally.
    #[inline(always)]
    fn walk(&self, from: usize, count: usize, mut f: impl FnMut(usize, usize)) {
        let (mut g, mut r) = if self.inner >= self.len {
            (0, from)
        } else {
            (from / self.inner, from % self.inner)
        };
        for t in 0..count {
            f(t, g * self.outer + r * self.stride);
            r += 1;
            if r == self.inner {
                r = 0;
                g += 1;
            }
        }
    }
}

/// Most runs of consecutive offsets a panel or tile is copied in.
const MAX_RUNS: usize = 4;

/// See [`Axis::runs`].
#[derive(Clone, Copy, Debug, Default)]
struct Runs {
    items: [(usize, usize, usize); MAX_RUNS],
    len: usize,
}

impl Runs {
    fn as_slice(&self) -> &[(usize, usize, usize)] {
        &self.items[..self.len]
    }
}

/// A read-only matrix operand.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: Axis,
    pub cols: Axis,
}

impl<'a> MatRef<'a> {
    /// A row-major `rows × cols` matrix.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        MatRef {
            data,
            rows: Axis::new(rows, cols),
            cols: Axis::new(cols, 1),
        }
    }

    /// The transpose (no copy).
    pub fn t(self) -> Self {
        MatRef {
            rows: self.cols,
            cols: self.rows,
            ..self
        }
    }

    /// An ndarray view whose elements are contiguous in memory (any order, e.g. `w.t()`).
    pub fn from_view(v: &'a ndarray::ArrayView2<'a, f32>) -> Self {
        let (rows, cols) = v.dim();
        let s = v.strides();
        let data = v
            .as_slice_memory_order()
            .expect("a GEMM operand is contiguous in memory");
        let stride =
            |i: usize| usize::try_from(s[i]).expect("a GEMM operand has no negative stride");
        MatRef {
            data,
            rows: Axis::new(rows, stride(0)),
            cols: Axis::new(cols, stride(1)),
        }
    }
}

/// A matrix to write.
#[derive(Debug)]
pub struct MatMut<'a> {
    pub data: &'a mut [f32],
    pub rows: Axis,
    pub cols: Axis,
}

impl<'a> MatMut<'a> {
    /// A row-major `rows × cols` matrix.
    pub fn row_major(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        MatMut {
            data,
            rows: Axis::new(rows, cols),
            cols: Axis::new(cols, 1),
        }
    }
}

/// Whether distinct index pairs of `rows × cols` always have distinct offsets: with the
/// strided ranges sorted by stride, each stride exceeds the largest offset the smaller ones
/// reach together (sufficient, and true of every layout the layers use).
pub fn injective(rows: &Axis, cols: &Axis) -> bool {
    let mut dims: Vec<(usize, usize)> = rows
        .dims()
        .into_iter()
        .chain(cols.dims())
        .filter(|&(count, _)| count > 1)
        .map(|(count, stride)| (stride, count))
        .collect();
    dims.sort_unstable();
    let mut reach = 0usize;
    for (stride, count) in dims {
        if stride <= reach {
            return false;
        }
        reach += (count - 1) * stride;
    }
    true
}

/// `C ← A·B` (or `C ← C + A·B` with `accumulate`), `A` `m × k`, `B` `k × n`, `C` `m × n`.
///
/// # Panics
/// If the shapes disagree, an operand's axes reach outside its slice, or `C`'s axes map
/// two elements to one offset: these are bugs of the calling layer, not of user input.
pub fn gemm(a: MatRef<'_>, b: MatRef<'_>, c: MatMut<'_>, accumulate: bool) {
    product(a, b, c, accumulate, true)
}

/// [`gemm`] on the calling thread alone, for callers that are already one of many parallel
/// tasks (attention's (sample, head) pairs). The same bits as [`gemm`].
pub fn gemm_serial(a: MatRef<'_>, b: MatRef<'_>, c: MatMut<'_>, accumulate: bool) {
    product(a, b, c, accumulate, false)
}

fn product(a: MatRef<'_>, b: MatRef<'_>, c: MatMut<'_>, accumulate: bool, may_thread: bool) {
    let (m, k, n) = (a.rows.len, a.cols.len, b.cols.len);
    assert!(
        b.rows.len == k && c.rows.len == m && c.cols.len == n,
        "gemm shapes: A {m}×{k}, B {}×{n}, C {}×{}",
        b.rows.len,
        c.rows.len,
        c.cols.len
    );
    if m == 0 || n == 0 {
        return;
    }
    for (name, data, rows, cols) in [
        ("A", a.data.len(), a.rows, a.cols),
        ("B", b.data.len(), b.rows, b.cols),
        ("C", c.data.len(), c.rows, c.cols),
    ] {
        let reach = rows.extent() + cols.extent() - 1;
        assert!(
            rows.len == 0 || cols.len == 0 || reach <= data,
            "gemm operand {name} reaches offset {reach} of a slice of {data}"
        );
    }
    assert!(injective(&c.rows, &c.cols), "gemm output axes overlap");
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                c.cols.walk(0, n, |_, off| c.data[c.rows.at(i) + off] = 0.0);
            }
        }
        return;
    }
    match isa() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => run::<Avx512>(a, b, c, accumulate, may_thread),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => run::<Avx2>(a, b, c, accumulate, may_thread),
        Isa::Portable => run::<Portable>(a, b, c, accumulate, may_thread),
    }
}

/// `A·B` of two ndarray views, as a new standard-layout array.
pub fn matmul(
    a: &ndarray::ArrayView2<'_, f32>,
    b: &ndarray::ArrayView2<'_, f32>,
) -> ndarray::Array2<f32> {
    let (a, b) = (a.as_standard_layout(), b.as_standard_layout());
    let (m, n) = (a.nrows(), b.ncols());
    let mut out = vec![0.0f32; m * n];
    let (av, bv) = (a.view(), b.view());
    gemm(
        MatRef::from_view(&av),
        MatRef::from_view(&bv),
        MatMut::row_major(&mut out, m, n),
        false,
    );
    ndarray::Array2::from_shape_vec((m, n), out).expect("sizes")
}

/// The micro-kernels this build can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Portable,
}

static ISA: OnceLock<Isa> = OnceLock::new();

thread_local! {
    /// Forces a kernel on this thread (tests compare them); `None` uses [`ISA`].
    static FORCED: Cell<Option<Isa>> = const { Cell::new(None) };
}

/// The micro-kernel in use: the widest the processor supports.
pub fn isa() -> Isa {
    if let Some(forced) = FORCED.with(Cell::get) {
        return forced;
    }
    *ISA.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx2;
            }
        }
        Isa::Portable
    })
}

/// Runs `f` with the micro-kernel `isa` on this thread (its rayon tasks too: the product
/// runs on the calling thread when the kernel is forced). For tests and benchmarks.
pub fn with_isa<T>(isa: Isa, f: impl FnOnce() -> T) -> T {
    let old = FORCED.with(|c| c.replace(Some(isa)));
    let out = f();
    FORCED.with(|c| c.set(old));
    out
}

/// One call of a micro-kernel: `C[MR × NR] (+)= A[MR × kc] · B[kc × NR]`.
#[derive(Clone, Copy)]
struct Tile {
    kc: usize,
    /// `MR` rows of `kc` values: row `r`, step `kk` at `a + r·ars + kk·aks` (a packed
    /// panel has `ars = 1`, `aks = MR`; a row-major A read in place `ars = lda`, `aks = 1`).
    a: *const f32,
    ars: usize,
    aks: usize,
    /// `kc` rows of `NR` contiguous values, `ldb` apart (a packed panel has `ldb = NR`).
    b: *const f32,
    ldb: usize,
    /// `MR` rows of `NR` contiguous values, `ldc` apart.
    c: *mut f32,
    ldc: usize,
    /// Start from `C`'s values (else from zero).
    load: bool,
}

/// A register-tiled micro-kernel.
trait Micro {
    const MR: usize;
    const NR: usize;
    /// # Safety
    /// The pointers of `t` are valid as its fields describe (reads of `a` and `b`, reads
    /// and writes of `c`), and the CPU has the kernel's features.
    unsafe fn tile(t: Tile);
}

struct Portable;

impl Micro for Portable {
    const MR: usize = 4;
    const NR: usize = 8;
    unsafe fn tile(t: Tile) {
        let Tile {
            kc,
            a,
            ars,
            aks,
            b,
            ldb,
            c,
            ldc,
            load,
        } = t;
        let mut acc = [[0.0f32; 8]; 4];
        // SAFETY: the caller's contract (see `Micro::tile`).
        unsafe {
            if load {
                for (r, row) in acc.iter_mut().enumerate() {
                    for (j, v) in row.iter_mut().enumerate() {
                        *v = *c.add(r * ldc + j);
                    }
                }
            }
            for kk in 0..kc {
                let (ap, bp) = (a.add(kk * aks), b.add(kk * ldb));
                for (r, row) in acc.iter_mut().enumerate() {
                    let av = *ap.add(r * ars);
                    for (j, v) in row.iter_mut().enumerate() {
                        *v = av.mul_add(*bp.add(j), *v);
                    }
                }
            }
            for (r, row) in acc.iter().enumerate() {
                for (j, v) in row.iter().enumerate() {
                    *c.add(r * ldc + j) = *v;
                }
            }
        }
    }
}

/// An x86-64 micro-kernel: `MR` rows of two vectors of `LANES` values (`NR = 2·LANES`),
/// written once for both instruction sets, which differ only in the vector width and the
/// intrinsics that name it.
macro_rules! x86_kernel {
    ($kernel:ident, $tile:ident, $features:literal, $mr:literal, $lanes:literal,
     $setzero:ident, $loadu:ident, $storeu:ident, $set1:ident, $fmadd:ident) => {
        #[cfg(target_arch = "x86_64")]
        struct $kernel;

        #[cfg(target_arch = "x86_64")]
        impl Micro for $kernel {
            const MR: usize = $mr;
            const NR: usize = 2 * $lanes;
            unsafe fn tile(t: Tile) {
                // SAFETY: `isa()` chose this kernel only where its features are detected.
                unsafe { $tile(t) }
            }
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        unsafe fn $tile(t: Tile) {
            use std::arch::x86_64::*;
            let Tile {
                kc,
                a,
                ars,
                aks,
                b,
                ldb,
                c,
                ldc,
                load,
            } = t;
            let mut acc = [[$setzero(); 2]; $mr];
            // SAFETY: the caller's contract (see `Micro::tile`).
            unsafe {
                if load {
                    for (r, row) in acc.iter_mut().enumerate() {
                        row[0] = $loadu(c.add(r * ldc));
                        row[1] = $loadu(c.add(r * ldc + $lanes));
                    }
                }
                for kk in 0..kc {
                    let b0 = $loadu(b.add(kk * ldb));
                    let b1 = $loadu(b.add(kk * ldb + $lanes));
                    let ap = a.add(kk * aks);
                    for (r, row) in acc.iter_mut().enumerate() {
                        let av = $set1(*ap.add(r * ars));
                        row[0] = $fmadd(av, b0, row[0]);
                        row[1] = $fmadd(av, b1, row[1]);
                    }
                }
                for (r, row) in acc.iter().enumerate() {
                    $storeu(c.add(r * ldc), row[0]);
                    $storeu(c.add(r * ldc + $lanes), row[1]);
                }
            }
        }
    };
}

x86_kernel!(
    Avx512,
    avx512_tile,
    "avx512f",
    12,
    16,
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_storeu_ps,
    _mm512_set1_ps,
    _mm512_fmadd_ps
);
x86_kernel!(
    Avx2,
    avx2_tile,
    "avx2,fma",
    6,
    8,
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    _mm256_storeu_ps,
    _mm256_set1_ps,
    _mm256_fmadd_ps
);

/// `C`'s data shared by the tasks, each of which writes only its own elements.
#[derive(Clone, Copy)]
struct Shared(*mut f32);
// SAFETY: tasks write disjoint elements of `C` (its axes are injective and the tasks'
// blocks of (i, j) are disjoint), and `run` outlives them all.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

thread_local! {
    /// Reused packing buffers (taken while in use, so a nested product allocates its own).
    static PACK_A: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    static PACK_B: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// This thread's packing buffer, at least `len` long; it only grows, so a warm training
/// step allocates and clears nothing here.
fn take(buf: &'static std::thread::LocalKey<Cell<Vec<f32>>>, len: usize) -> Vec<f32> {
    // Every value read is first written by packing, so old values need not be cleared.
    let mut v = buf.with(Cell::take);
    if v.len() < len {
        v.resize(len, 0.0);
    }
    v
}

/// Packs one panel: `out[kk][r] = M(from + r, k0 + kk)` for `r < width`, zero past the
/// end of `across`, where `across` is the panel's axis (A's rows, B's columns) and `along`
/// the shared dimension.
#[allow(clippy::too_many_arguments)]
fn pack(
    data: &[f32],
    across: &Axis,
    along: &Axis,
    from: usize,
    width: usize,
    (k0, kc): (usize, usize),
    out: &mut [f32],
) {
    let count = width.min(across.len - from);
    if count < width {
        out.fill(0.0);
    }
    // Runs of consecutive values (one per group the panel spans): copied.
    let runs = across.runs(from, count);
    if let Some(runs) = runs {
        along.walk(k0, kc, |kk, koff| {
            let row = &mut out[kk * width..(kk + 1) * width];
            for &(d, src, len) in runs.as_slice() {
                for (o, &v) in row[d..d + len].iter_mut().zip(&data[src + koff..][..len]) {
                    *o = v;
                }
            }
        });
    } else {
        // A transpose: `count` strided streams, written in order.
        let mut offs = [0usize; 32];
        across.walk(from, count, |r, off| offs[r] = off);
        along.walk(k0, kc, |kk, koff| {
            let row = &mut out[kk * width..kk * width + count];
            for (o, &off) in row.iter_mut().zip(&offs[..count]) {
                *o = data[off + koff];
            }
        });
    }
}

fn run<K: Micro>(a: MatRef<'_>, b: MatRef<'_>, c: MatMut<'_>, accumulate: bool, may_thread: bool) {
    let (m, k, n) = (a.rows.len, a.cols.len, b.cols.len);
    let (mr, nr) = (K::MR, K::NR);
    let (mp, np) = (m.div_ceil(mr), n.div_ceil(nr));
    let kb = k.div_ceil(KC);
    assert!(
        mr * nr <= TILE_MAX,
        "micro-kernel tile larger than TILE_MAX"
    );
    let parallel = may_thread && m * n * k >= PARALLEL_MIN && FORCED.with(Cell::get).is_none();
    // Panels read in place (their offset) rather than packed: MR whole rows of a
    // row-major A; NR whole consecutive columns of a B whose rows are evenly spaced.
    let a_row_major =
        a.rows.inner >= a.rows.len && a.cols.inner >= a.cols.len && a.cols.stride == 1;
    let a_direct = |p: usize| (a_row_major && (p + 1) * mr <= m).then(|| p * mr * a.rows.stride);
    let b_even_rows = b.rows.inner >= b.rows.len;
    let b_direct = |q: usize| {
        let whole = (q + 1) * nr <= n && b_even_rows;
        whole.then(|| b.cols.run(q * nr, nr)).flatten()
    };
    // A and B packed once each: block `blk` of the shared dimension at `blk·KC·panels·width`.
    let (mut apack, mut bpack) = (take(&PACK_A, mp * mr * k), take(&PACK_B, np * nr * k));
    for blk in 0..kb {
        let (k0, kc) = (blk * KC, KC.min(k - blk * KC));
        let ablk = &mut apack[k0 * mp * mr..(k0 + kc) * mp * mr];
        let bblk = &mut bpack[k0 * np * nr..(k0 + kc) * np * nr];
        let pa = |(p, out): (usize, &mut [f32])| {
            if a_direct(p).is_none() {
                pack(a.data, &a.rows, &a.cols, p * mr, mr, (k0, kc), out)
            }
        };
        let pb = |(q, out): (usize, &mut [f32])| {
            if b_direct(q).is_none() {
                pack(b.data, &b.cols, &b.rows, q * nr, nr, (k0, kc), out)
            }
        };
        if parallel {
            ablk.par_chunks_mut(kc * mr).enumerate().for_each(pa);
            bblk.par_chunks_mut(kc * nr).enumerate().for_each(pb);
        } else {
            ablk.chunks_mut(kc * mr).enumerate().for_each(pa);
            bblk.chunks_mut(kc * nr).enumerate().for_each(pb);
        }
    }
    // Blocks of C: at most 32 × 8 tiles, fewer when that leaves a thread idle.
    let threads = if parallel {
        rayon::current_num_threads()
    } else {
        1
    };
    let (mut mcp, mut ncp) = (mp.min(32), np.min(8));
    while mp.div_ceil(mcp) * np.div_ceil(ncp) < 4 * threads && (mcp > 1 || ncp > 1) {
        if ncp >= mcp && ncp > 1 {
            ncp = ncp.div_ceil(2);
        } else {
            mcp = mcp.div_ceil(2);
        }
    }
    let (mblocks, nblocks) = (mp.div_ceil(mcp), np.div_ceil(ncp));
    let cptr = Shared(c.data.as_mut_ptr());
    let (crows, ccols) = (c.rows, c.cols);
    let direct_rows = crows.inner >= crows.len;
    let (apack_ref, bpack_ref) = (&apack, &bpack);
    let block = |task: usize| {
        let (ib, jb) = (task / nblocks, task % nblocks);
        let (p0, p1) = (ib * mcp, ((ib + 1) * mcp).min(mp));
        let (q0, q1) = (jb * ncp, ((jb + 1) * ncp).min(np));
        let mut tmp = [0.0f32; TILE_MAX];
        let cp = cptr;
        for blk in 0..kb {
            let (k0, kc) = (blk * KC, KC.min(k - blk * KC));
            let (ablk, bblk) = (&apack_ref[k0 * mp * mr..], &bpack_ref[k0 * np * nr..]);
            let load = accumulate || blk > 0;
            for q in q0..q1 {
                let (bp, ldb) = match b_direct(q) {
                    // SAFETY: rows k0.. k0 + kc of NR consecutive columns of B, all inside
                    // its slice (extent checked in `gemm`).
                    Some(first) => (
                        unsafe { b.data.as_ptr().add(first + k0 * b.rows.stride) },
                        b.rows.stride,
                    ),
                    None => (bblk[q * kc * nr..].as_ptr(), nr),
                };
                let j0 = q * nr;
                let cols = nr.min(n - j0);
                // (`run` of more than one index implies unit stride.)
                let contiguous = cols == nr && ccols.run(j0, nr).is_some();
                let cruns = ccols.runs(j0, cols);
                for p in p0..p1 {
                    let (ap, ars, aks) = match a_direct(p) {
                        // SAFETY: MR whole rows of A from column k0, kc long, inside its
                        // slice (extent checked in `gemm`).
                        Some(first) => {
                            (unsafe { a.data.as_ptr().add(first + k0) }, a.rows.stride, 1)
                        }
                        None => (ablk[p * kc * mr..].as_ptr(), 1, mr),
                    };
                    let tile = |c, ldc| Tile {
                        kc,
                        a: ap,
                        ars,
                        aks,
                        b: bp,
                        ldb,
                        c,
                        ldc,
                        load,
                    };
                    let i0 = p * mr;
                    let rows = mr.min(m - i0);
                    if contiguous && direct_rows && rows == mr {
                        // SAFETY: the tile's MR rows (row stride `crows.stride`) of NR
                        // contiguous columns are all elements of C (checked above), which
                        // this task alone writes; the panels hold kc·MR and kc·NR values.
                        unsafe {
                            let base = cp.0.add(crows.at(i0) + ccols.at(j0));
                            K::tile(tile(base, crows.stride));
                        }
                    } else {
                        // SAFETY: offsets come from C's axes for in-range (i, j) only
                        // (extent checked in `gemm`); `tmp` holds at least MR × NR values.
                        unsafe {
                            if load {
                                for r in 0..rows {
                                    let (roff, row) = (crows.at(i0 + r), &mut tmp[r * nr..]);
                                    if let Some(runs) = &cruns {
                                        for &(d, src, len) in runs.as_slice() {
                                            let from = cp.0.add(roff + src);
                                            std::ptr::copy_nonoverlapping(
                                                from,
                                                row[d..d + len].as_mut_ptr(),
                                                len,
                                            );
                                        }
                                    } else {
                                        ccols.walk(j0, cols, |j, off| {
                                            row[j] = *cp.0.add(roff + off)
                                        });
                                    }
                                }
                            }
                            K::tile(tile(tmp.as_mut_ptr(), nr));
                            for r in 0..rows {
                                let (roff, row) = (crows.at(i0 + r), &tmp[r * nr..]);
                                if let Some(runs) = &cruns {
                                    for &(d, src, len) in runs.as_slice() {
                                        let to = cp.0.add(roff + src);
                                        std::ptr::copy_nonoverlapping(
                                            row[d..d + len].as_ptr(),
                                            to,
                                            len,
                                        );
                                    }
                                } else {
                                    ccols.walk(j0, cols, |j, off| *cp.0.add(roff + off) = row[j]);
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    if parallel {
        (0..mblocks * nblocks).into_par_iter().for_each(block);
    } else {
        (0..mblocks * nblocks).for_each(block);
    }
    PACK_A.with(|c| c.set(apack));
    PACK_B.with(|c| c.set(bpack));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The reference: each element one `mul_add` chain over `k` in order, as documented.
    fn naive(a: &MatRef<'_>, b: &MatRef<'_>, c: &mut MatMut<'_>, accumulate: bool) {
        for i in 0..a.rows.len {
            for j in 0..b.cols.len {
                let off = c.rows.at(i) + c.cols.at(j);
                let mut v = if accumulate { c.data[off] } else { 0.0 };
                for kk in 0..a.cols.len {
                    let x = a.data[a.rows.at(i) + a.cols.at(kk)];
                    let y = b.data[b.rows.at(kk) + b.cols.at(j)];
                    v = x.mul_add(y, v);
                }
                c.data[off] = v;
            }
        }
    }

    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| (((i * 7919 + seed * 104729) % 2003) as f32 - 1001.0) / 337.0)
            .collect()
    }

    fn kernels() -> Vec<Isa> {
        let mut all = vec![Isa::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                all.push(Isa::Avx2);
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                all.push(Isa::Avx512);
            }
        }
        all
    }

    /// Every kernel and the threaded path give the naive chain's bits, row-major,
    /// transposed and batched, on every remainder of the tile sizes.
    #[test]
    fn products_equal_the_naive_chain_bit_for_bit() {
        let shapes = [
            (1, 1, 1),
            (3, 5, 7),
            (12, 128, 32),
            (13, 129, 33),
            (25, 130, 65),
            (37, 257, 100),
            (64, 300, 3),
            (5, 1, 200),
        ];
        for &(m, k, n) in &shapes {
            let (av, bv) = (values(m * k, 1), values(k * n, 2));
            let layouts: [(MatRef<'_>, MatRef<'_>); 3] = [
                (MatRef::row_major(&av, m, k), MatRef::row_major(&bv, k, n)),
                (
                    MatRef::row_major(&av, k, m).t(),
                    MatRef::row_major(&bv, n, k).t(),
                ),
                (
                    MatRef::row_major(&av, m, k),
                    MatRef::row_major(&bv, n, k).t(),
                ),
            ];
            for (li, (a, b)) in layouts.iter().enumerate() {
                for accumulate in [false, true] {
                    let init = values(m * n, 3);
                    let mut want = init.clone();
                    naive(a, b, &mut MatMut::row_major(&mut want, m, n), accumulate);
                    let mut runs = vec![];
                    for isa in kernels() {
                        let mut got = init.clone();
                        with_isa(isa, || {
                            gemm(*a, *b, MatMut::row_major(&mut got, m, n), accumulate)
                        });
                        runs.push((format!("{isa:?}"), got));
                    }
                    let mut got = init.clone();
                    gemm(*a, *b, MatMut::row_major(&mut got, m, n), accumulate);
                    runs.push(("default, threaded".into(), got));
                    for (name, got) in runs {
                        assert!(
                            got.iter()
                                .zip(&want)
                                .all(|(g, w)| g.to_bits() == w.to_bits()),
                            "{name}: {m}×{k}×{n}, layout {li}, accumulate {accumulate}"
                        );
                    }
                }
            }
        }
    }

    /// A pointwise convolution over a batch as one product: `[n, o, hw] = W[o, c] ·
    /// [n, c, hw]`, against the naive chain.
    #[test]
    fn batched_operands_address_every_sample() {
        let (batch, c, o, hw) = (3, 20, 14, 37);
        let w = values(o * c, 4);
        let x = values(batch * c * hw, 5);
        let a = MatRef::row_major(&w, o, c);
        let b = MatRef {
            data: &x,
            rows: Axis::new(c, hw),
            cols: Axis::batched(batch * hw, hw, 1, c * hw),
        };
        fn out(data: &mut [f32], (batch, o, hw): (usize, usize, usize)) -> MatMut<'_> {
            MatMut {
                data,
                rows: Axis::new(o, hw),
                cols: Axis::batched(batch * hw, hw, 1, o * hw),
            }
        }
        let dims = (batch, o, hw);
        let mut want = vec![0.0f32; batch * o * hw];
        naive(&a, &b, &mut out(&mut want, dims), false);
        for s in 0..batch {
            for oo in 0..o {
                for p in 0..hw {
                    let direct = (0..c).fold(0.0f32, |v, cc| {
                        w[oo * c + cc].mul_add(x[s * c * hw + cc * hw + p], v)
                    });
                    assert_eq!(want[s * o * hw + oo * hw + p], direct);
                }
            }
        }
        for isa in kernels() {
            let mut got = vec![f32::NAN; batch * o * hw];
            with_isa(isa, || gemm(a, b, out(&mut got, dims), false));
            assert_eq!(got, want, "{isa:?}");
        }
        let mut got = vec![f32::NAN; batch * o * hw];
        gemm(a, b, out(&mut got, dims), false);
        assert_eq!(got, want, "threaded");
    }

    #[test]
    fn an_empty_shared_dimension_zeroes_or_keeps_c() {
        let mut c = vec![5.0f32; 6];
        gemm(
            MatRef::row_major(&[], 2, 0),
            MatRef::row_major(&[], 0, 3),
            MatMut::row_major(&mut c, 2, 3),
            true,
        );
        assert_eq!(c, vec![5.0; 6]);
        gemm(
            MatRef::row_major(&[], 2, 0),
            MatRef::row_major(&[], 0, 3),
            MatMut::row_major(&mut c, 2, 3),
            false,
        );
        assert_eq!(c, vec![0.0; 6]);
    }

    #[test]
    #[should_panic(expected = "gemm output axes overlap")]
    fn overlapping_output_axes_are_refused() {
        let mut c = vec![0.0f32; 8];
        let a = values(4, 1);
        gemm(
            MatRef::row_major(&a, 2, 2),
            MatRef::row_major(&a, 2, 2),
            MatMut {
                data: &mut c,
                rows: Axis::new(2, 1),
                cols: Axis::new(2, 1),
            },
            false,
        );
    }

    #[test]
    #[should_panic(expected = "reaches offset")]
    fn operands_outside_their_slice_are_refused() {
        let mut c = vec![0.0f32; 4];
        let a = values(3, 1);
        gemm(
            MatRef::row_major(&a, 2, 2),
            MatRef::row_major(&a, 2, 2),
            MatMut::row_major(&mut c, 2, 2),
            false,
        );
    }

    proptest! {
        /// The injectivity test never accepts two index pairs with one offset.
        #[test]
        fn injective_accepts_only_distinct_offsets(
            rl in 1usize..5, rs in 0usize..9, cl in 1usize..7, ci in 1usize..4,
            cs in 0usize..5, co in 0usize..30,
        ) {
            let (rows, cols) = (Axis::new(rl, rs), Axis::batched(cl, ci, cs, co));
            if injective(&rows, &cols) {
                let mut seen = std::collections::HashSet::new();
                for i in 0..rl {
                    for j in 0..cl {
                        prop_assert!(seen.insert(rows.at(i) + cols.at(j)));
                    }
                }
            }
        }
    }
}
