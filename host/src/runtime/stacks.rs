//! Fiber stacks that outlive their store.
//!
//! Every guest runs on a fiber (WASI is async), and wasmtime's on-demand allocator maps a
//! fresh stack for every store and unmaps it when the store goes: for a `wasi:http`
//! handler, one `mmap`, a few page faults and one `munmap` (with its TLB shootdown) per
//! request. The pooling allocator keeps its stacks; we cannot use it (our memories are
//! the host's, see [`crate::memory`]), so [`StackPool`] keeps up to [`MAX_FREE`]
//! stacks of the engine's size and hands them out again.
//!
//! A recycled stack holds the native frames of the host code that ran on it last, never
//! anything a guest can address: wasm reaches only its linear memories and tables. It is
//! zeroed when wasmtime asks for zeroed stacks (`Config::async_stack_zeroing`), as the
//! pooling allocator does.

use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use wasmtime::{StackCreator, StackMemory};

use crate::memory::host_page_size;

/// Stacks kept for reuse at most (the rest are unmapped as they are dropped).
pub(crate) const MAX_FREE: usize = 128;

/// Makes [`PooledStack`]s: set it with `Config::with_host_stack`.
#[derive(Debug, Default)]
pub(crate) struct StackPool {
    free: Mutex<Vec<StackMapping>>,
}

/// One stack's mapping: a guard page at `base`, then `len - page` read-write bytes.
#[derive(Debug)]
struct StackMapping {
    base: usize,
    len: usize,
}

impl StackMapping {
    fn new(size: usize) -> std::io::Result<Self> {
        let page = host_page_size();
        let size = size
            .checked_add(page - 1)
            .map(|n| n / page * page)
            .filter(|&n| n > 0)
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        let len = size
            .checked_add(page)
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        // SAFETY: a fresh anonymous mapping at an address the kernel picks; it overlaps
        // nothing we own.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let mapping = StackMapping {
            base: ptr as usize,
            len,
        };
        // SAFETY: the first page of the mapping just made, which nothing uses yet.
        if unsafe { libc::mprotect(ptr, page, libc::PROT_NONE) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(mapping)
    }

    /// Bytes usable as stack (the guard page excluded).
    fn size(&self) -> usize {
        self.len - host_page_size()
    }

    /// Drops the stack's pages: it reads as zeros again.
    fn zero(&self) -> std::io::Result<()> {
        let page = host_page_size();
        // SAFETY: the read-write part of our own private anonymous mapping, which no
        // fiber runs on (it is in the free list, or being handed out); MADV_DONTNEED
        // makes it read as zeros.
        let r = unsafe {
            libc::madvise(
                (self.base + page) as *mut libc::c_void,
                self.len - page,
                libc::MADV_DONTNEED,
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for StackMapping {
    fn drop(&mut self) {
        // SAFETY: the mapping `new` made, owned by this value alone; no fiber runs on it
        // (wasmtime drops a stack only when its fiber is done).
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}

/// A stack from a [`StackPool`], back to it when dropped.
struct PooledStack {
    mapping: Option<StackMapping>,
    pool: Arc<StackPool>,
}

impl PooledStack {
    fn mapping(&self) -> &StackMapping {
        self.mapping.as_ref().expect("a live stack has its mapping")
    }
}

impl Drop for PooledStack {
    fn drop(&mut self) {
        if let Some(mapping) = self.mapping.take() {
            let mut free = self
                .pool
                .free
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if free.len() < MAX_FREE {
                free.push(mapping);
            }
        }
    }
}

// SAFETY: `top` and `range` describe the read-write part of a mapping this value owns
// (page aligned, a whole number of pages), `guard_range` its PROT_NONE first page, below
// the stack, which catches overflows. Nothing else uses the mapping while wasmtime holds
// the stack.
unsafe impl StackMemory for PooledStack {
    fn top(&self) -> *mut u8 {
        let m = self.mapping();
        (m.base + m.len) as *mut u8
    }

    fn range(&self) -> Range<usize> {
        let m = self.mapping();
        m.base + host_page_size()..m.base + m.len
    }

    fn guard_range(&self) -> Range<*mut u8> {
        let m = self.mapping();
        m.base as *mut u8..(m.base + host_page_size()) as *mut u8
    }
}

/// The engine's stack creator: a [`StackPool`] it shares with the stacks it made.
#[derive(Debug, Default, Clone)]
pub(crate) struct PooledStacks(Arc<StackPool>);

// SAFETY: every stack is page aligned, a whole number of pages of at least `size` bytes
// above a guard page, owned by the returned value; fresh ones are zero-filled, reused
// ones are zeroed when `zeroed` asks for it (otherwise they hold only native frames of
// earlier fibers, as the pooling allocator's reused stacks do).
unsafe impl StackCreator for PooledStacks {
    fn new_stack(&self, size: usize, zeroed: bool) -> wasmtime::Result<Box<dyn StackMemory>> {
        let reused = {
            let mut free = self.0.free.lock().unwrap_or_else(PoisonError::into_inner);
            let at = free.iter().rposition(|m| m.size() >= size);
            at.map(|i| free.swap_remove(i))
        };
        let mapping = match reused {
            Some(m) => {
                if zeroed {
                    m.zero()?;
                }
                m
            }
            None => StackMapping::new(size)?,
        };
        Ok(Box::new(PooledStack {
            mapping: Some(mapping),
            pool: self.0.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacks_are_reused_and_zeroed_on_request() {
        let stacks = PooledStacks::default();
        let s = stacks.new_stack(64 << 10, false).unwrap();
        let range = s.range();
        assert!(range.len() >= 64 << 10);
        assert_eq!(s.top() as usize, range.end);
        assert_eq!(s.guard_range().end as usize, range.start);
        // SAFETY: the top word of the stack is ours and read-write.
        unsafe { (range.end as *mut u8).sub(8).write(7) };
        drop(s);
        let again = stacks.new_stack(64 << 10, true).unwrap();
        assert_eq!(again.range(), range);
        // SAFETY: as above.
        assert_eq!(unsafe { (range.end as *const u8).sub(8).read() }, 0);
        // A larger stack is a new one.
        let big = stacks.new_stack(128 << 10, false).unwrap();
        assert_ne!(big.range(), range);
    }
}
