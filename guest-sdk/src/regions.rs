//! Memory for mappings, given without touching it.
//!
//! A mapping's region must be initialized memory (the host takes it as a `list<u8>`), and
//! the host replaces its pages at once. Zeroing it through the allocator would write every
//! page of it first: for a 64 MiB mapping, 64 MiB of anonymous memory faulted in, zeroed,
//! and thrown away, in every instance. Fresh wasm pages are zero by the specification and
//! cost nothing until touched, so large regions come from `memory.grow` instead. The host
//! gives a region back zeroed when it unmaps it, so a region given back can be handed out
//! again as it is: it never returns to the allocator, and the free list is reused first.

use std::cell::RefCell;
use std::ptr::NonNull;

/// The wasm page: regions from `memory.grow` are whole ones.
const WASM_PAGE: usize = 65536;

thread_local! {
    /// Regions the host gave back (zeroed), by address: (address, bytes).
    static FREE: RefCell<Vec<(usize, usize)>> = const { RefCell::new(Vec::new()) };
}

/// A zeroed region of at least `size` bytes, aligned to a wasm page, and its real size;
/// `None` when `size` is small enough for the allocator (or memory cannot grow).
pub(crate) fn take(size: usize) -> Option<(NonNull<u8>, usize)> {
    if size < WASM_PAGE || !cfg!(target_arch = "wasm32") {
        return None;
    }
    let size = size.checked_next_multiple_of(WASM_PAGE)?;
    let reused = FREE.with_borrow_mut(|free| {
        let i = free.iter().position(|&(_, n)| n >= size)?;
        let (addr, n) = free[i];
        if n == size {
            free.swap_remove(i);
        } else {
            free[i] = (addr + size, n - size);
        }
        Some(addr)
    });
    let addr = match reused {
        Some(addr) => addr,
        None => grow(size / WASM_PAGE)?,
    };
    Some((NonNull::new(addr as *mut u8)?, size))
}

/// Takes back a region from [`take`], which the host has unmapped (and so zeroed).
pub(crate) fn give_back(ptr: NonNull<u8>, size: usize) {
    FREE.with_borrow_mut(|free| free.push((ptr.as_ptr() as usize, size)));
}

#[cfg(target_arch = "wasm32")]
fn grow(pages: usize) -> Option<usize> {
    let old = core::arch::wasm32::memory_grow::<0>(pages);
    (old != usize::MAX).then(|| old * WASM_PAGE)
}

#[cfg(not(target_arch = "wasm32"))]
fn grow(_pages: usize) -> Option<usize> {
    None
}
