//! A counting allocator for tests and measurements: the system allocator, plus per-thread
//! counts of the bytes live and their peak.
//!
//! A test binary installs it with
//! `#[global_allocator] static A: tl_core::alloc::Counting = tl_core::alloc::Counting;`
//! and measures a piece of work on its own thread with [`measure`]: the largest number of
//! bytes the work held at once beyond what was live before it, and how many allocations it
//! made. Counts are per thread, so tests running in parallel do not disturb each other;
//! memory a thread frees that another allocated counts against the freeing thread.
#![allow(unsafe_code)]

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
};

/// The system allocator, counting (see the module's documentation).
#[derive(Debug, Clone, Copy, Default)]
pub struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

fn note(delta: isize, new_block: bool) {
    // `try_with`: during a thread's teardown its counters may be gone; nothing is counted.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
    if new_block {
        let _ = COUNT.try_with(|c| c.set(c.get() + 1));
    }
}

// SAFETY: every method forwards its arguments unchanged to `System`, which upholds
// `GlobalAlloc`'s contract; the counting touches only `const`-initialised thread-locals
// of `Cell`s, which never allocate, so it cannot recurse into the allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as isize, true);
        // SAFETY: the caller's layout, forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as isize, true);
        // SAFETY: the caller's layout, forwarded.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(-(layout.size() as isize), false);
        // SAFETY: `ptr` was allocated by `System` (through this type) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size as isize - layout.size() as isize, true);
        // SAFETY: as for `dealloc`; `new_size` is the caller's, forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// What a piece of work allocated on this thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// The most bytes held at once beyond those live when it started (0 if none).
    pub peak_bytes: usize,
    /// Allocations and reallocations made.
    pub allocations: u64,
}

/// Runs `work` and reports what it allocated on this thread (all zeros unless
/// [`Counting`] is the global allocator).
pub fn measure<T>(work: impl FnOnce() -> T) -> (T, Usage) {
    let before = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(before));
    let count = COUNT.with(Cell::get);
    let out = work();
    let usage = Usage {
        peak_bytes: (PEAK.with(Cell::get) - before).max(0) as usize,
        allocations: COUNT.with(Cell::get) - count,
    };
    (out, usage)
}

/// Peak resident set size of this process, from `/proc/self/status` (Linux only).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}
