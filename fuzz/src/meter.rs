//! How many bytes are live on the current thread: the memory bound of one fuzz input.
//!
//! A global allocator that forwards every call to the system allocator and counts, per thread,
//! the bytes allocated minus those freed, with the highest value reached. The runner reads the
//! peak around each input, so a parser that allocates in proportion to a size field rather than
//! to the input it was given is caught while the allocation still succeeds. (Memory freed on
//! another thread than the one that allocated it is counted there; parsers do not do that.)
//!
//! This is the crate's only `unsafe`: implementing `GlobalAlloc` is an unsafe trait impl by
//! definition. Each method calls `System` with the arguments it was given and returns its
//! result unchanged.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    // Const-initialised, without destructors: using them never allocates, so the allocator
    // cannot recurse into itself.
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn add(n: isize) {
    let _ = LIVE.try_with(|live| {
        let v = live.get().saturating_add(n);
        live.set(v);
        let _ = PEAK.try_with(|peak| {
            if v > peak.get() {
                peak.set(v);
            }
        });
    });
}

fn size(n: usize) -> isize {
    isize::try_from(n).unwrap_or(isize::MAX)
}

/// Starts a measurement on this thread: returns the bytes live now.
pub fn start() -> isize {
    let live = LIVE.try_with(Cell::get).unwrap_or(0);
    let _ = PEAK.try_with(|p| p.set(live));
    live
}

/// The most bytes live at once on this thread since [`start`] returned `base`, above `base`.
pub fn peak_since(base: isize) -> usize {
    let peak = PEAK.try_with(Cell::get).unwrap_or(base);
    usize::try_from(peak.saturating_sub(base)).unwrap_or(0)
}

/// The counting allocator (installed by this crate as the global allocator).
pub struct Meter;

// SAFETY: every method forwards its arguments to `System` and returns its result unchanged;
// the bookkeeping touches only the thread-locals above, which never allocate.
unsafe impl GlobalAlloc for Meter {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            add(size(layout.size()));
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            add(size(layout.size()));
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator (that is, by `System`) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        add(-size(layout.size()));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`, and `new_size` is passed on as given.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            add(size(new_size) - size(layout.size()));
        }
        p
    }
}
