//! Guest linear memories owned by the host.
//!
//! The pager maps file pages into a guest's linear memory with `MAP_FIXED`. That needs
//! two things wasmtime's own memories do not promise:
//!
//! * **A base that never moves.** [`HostMemoryCreator`] reserves the whole reservation
//!   plus the guard region up front (`PROT_NONE`, `MAP_NORESERVE`) and grows by
//!   `mprotect`ing more of it read-write, so `memory.grow` never relocates the memory and
//!   never touches bytes already mapped.
//! * **Knowing what is guest memory.** Every live memory is in a process-wide registry
//!   (base, accessible bytes). A [`GuestRegion`] can only be made by
//!   [`GuestRegion::find`], which checks that the range lies inside the accessible bytes
//!   of one live guest memory: this check is what keeps a guest from making the pager
//!   map over host memory.
//!
//! Memories are unmapped when wasmtime drops them; the registry entry goes first, under
//! the registry's write lock, so [`GuestRegion::with_live`] can make a `MAP_FIXED` over
//! a region that cannot be unmapped (and reused) at the same time.
//!
//! Engines using this creator must set `Config::memory_init_cow(false)`: with a custom
//! memory and copy-on-write initialisation, wasmtime 48 panics at instantiation.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use wasmtime::{LinearMemory, MemoryCreator, MemoryType};

/// The host's page size (4096 on the machines we target; asked once).
pub fn host_page_size() -> usize {
    static SIZE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *SIZE.get_or_init(|| {
        // SAFETY: sysconf has no memory-safety preconditions.
        let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
    })
}

fn round_up_to_page(n: usize) -> Option<usize> {
    let page = host_page_size();
    n.checked_add(page - 1).map(|n| n / page * page)
}

/// One live guest memory, as the registry knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryInfo {
    /// Unique for the life of the process (never reused, unlike addresses).
    pub id: u64,
    /// Host address of wasm address 0.
    pub base: usize,
    /// Bytes the guest can access now (the wasm memory size).
    pub size: usize,
    /// Bytes reserved for the memory, guard region included; `base + span` is the end.
    pub span: usize,
}

/// Live memories by base address.
static REGISTRY: RwLock<BTreeMap<usize, MemoryInfo>> = RwLock::new(BTreeMap::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn registry() -> RwLockReadGuard<'static, BTreeMap<usize, MemoryInfo>> {
    REGISTRY.read().unwrap_or_else(PoisonError::into_inner)
}

fn registry_mut() -> RwLockWriteGuard<'static, BTreeMap<usize, MemoryInfo>> {
    REGISTRY.write().unwrap_or_else(PoisonError::into_inner)
}

fn containing(map: &BTreeMap<usize, MemoryInfo>, addr: usize) -> Option<MemoryInfo> {
    map.range(..=addr)
        .next_back()
        .map(|(_, m)| *m)
        .filter(|m| addr - m.base < m.span)
}

/// The live guest memory whose reservation (guard included) contains host address
/// `addr`.
pub fn memory_containing(addr: usize) -> Option<MemoryInfo> {
    containing(&registry(), addr)
}

/// The live guest memory with this id.
pub fn memory_by_id(id: u64) -> Option<MemoryInfo> {
    registry().values().find(|m| m.id == id).copied()
}

/// The host address of a wasm memory fault (`wasmtime::WasmFault`) in the memory with
/// this base, if that memory is live and the address lies in its reservation.
pub fn fault_address(base: usize, wasm_address: u64) -> Option<usize> {
    let m = registry().get(&base).copied()?;
    let off = usize::try_from(wasm_address).ok()?;
    (off < m.span).then(|| base + off)
}

/// Why a range is not a guest region.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegionError {
    #[error("empty region")]
    Empty,
    #[error("region {addr:#x}+{len:#x} wraps around the address space")]
    Overflow { addr: usize, len: usize },
    #[error("region {addr:#x}+{len:#x} is not in any live guest memory")]
    NotGuestMemory { addr: usize, len: usize },
    #[error(
        "region {addr:#x}+{len:#x} ends past the accessible {size:#x} bytes of its guest memory"
    )]
    PastEnd {
        addr: usize,
        len: usize,
        size: usize,
    },
}

/// A range of bytes inside the accessible part of one live guest memory. Only
/// [`GuestRegion::find`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestRegion {
    addr: usize,
    len: usize,
    memory: u64,
}

impl GuestRegion {
    /// Checks that `[ptr, ptr + len)` lies inside the accessible bytes of one live guest
    /// memory.
    pub fn find(ptr: *const u8, len: usize) -> Result<GuestRegion, RegionError> {
        let addr = ptr as usize;
        if len == 0 {
            return Err(RegionError::Empty);
        }
        let end = addr
            .checked_add(len)
            .ok_or(RegionError::Overflow { addr, len })?;
        let m = memory_containing(addr).ok_or(RegionError::NotGuestMemory { addr, len })?;
        if end > m.base + m.size {
            return Err(RegionError::PastEnd {
                addr,
                len,
                size: m.size,
            });
        }
        Ok(GuestRegion {
            addr,
            len,
            memory: m.id,
        })
    }

    /// Host address of the first byte.
    pub fn addr(&self) -> usize {
        self.addr
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true: [`GuestRegion::find`] refuses empty regions.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The guest memory the region is in (see [`MemoryInfo::id`]).
    pub fn memory_id(&self) -> u64 {
        self.memory
    }

    /// Whether the region's memory is still live (guest memories never shrink, so the
    /// region is then still inside it).
    pub fn is_live(&self) -> bool {
        memory_by_id(self.memory).is_some()
    }

    /// Runs `f` while the region's memory is guaranteed to stay mapped (the registry's
    /// read lock is held: a memory being dropped waits for `f`). Returns `None`, without
    /// running `f`, if the memory is gone: then the range may belong to something else
    /// and must not be touched. Keep `f` short (a `mmap`, an `madvise`): it holds up
    /// every memory's growth and drop, and it must not call back into this module
    /// (a recursive read lock can deadlock behind a waiting writer) nor drop a memory.
    ///
    /// Use this, not a new [`GuestRegion::find`] on the same address, for work on a
    /// region long after it was found (unmap, zap): the address may belong to another
    /// guest's memory by then, and only the memory id tells them apart.
    pub fn with_live<R>(&self, f: impl FnOnce() -> R) -> Option<R> {
        let map = registry();
        map.values().any(|m| m.id == self.memory).then(f)
    }

    /// [`GuestRegion::with_live`] for many regions under one hold of the lock: `f` is
    /// told which of `regions` are live (and stay so while it runs), in their order. For
    /// one system call over many ranges (zapping the mappings of thousands of files).
    pub fn with_all_live<R>(regions: &[&GuestRegion], f: impl FnOnce(&[bool]) -> R) -> R {
        let map = registry();
        let ids: std::collections::HashSet<u64> = map.values().map(|m| m.id).collect();
        let live: Vec<bool> = regions.iter().map(|r| ids.contains(&r.memory)).collect();
        f(&live)
    }
}

/// Makes [`HostLinearMemory`]s: set it with `Config::with_host_memory`.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostMemoryCreator;

/// A guest linear memory at a fixed base, its whole reservation mapped up front.
#[derive(Debug)]
pub struct HostLinearMemory {
    id: u64,
    base: usize,
    /// Bytes accessible to the guest.
    size: usize,
    /// Bytes `PROT_READ|PROT_WRITE` from the base (`size` rounded up to pages).
    rw: usize,
    /// Most bytes the memory may grow to.
    reservation: usize,
    /// `reservation` plus the guard region: the whole mapping.
    span: usize,
}

impl HostLinearMemory {
    /// Reserves `reservation + guard` bytes and makes the first `minimum` accessible.
    pub fn new(minimum: usize, reservation: usize, guard: usize) -> std::io::Result<Self> {
        let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, what);
        let reservation = round_up_to_page(reservation.max(minimum))
            .ok_or_else(|| invalid("reservation too large"))?;
        let span = round_up_to_page(guard)
            .and_then(|g| g.checked_add(reservation))
            .ok_or_else(|| invalid("reservation plus guard too large"))?;
        if span == 0 {
            return Err(invalid("empty reservation"));
        }
        // SAFETY: a fresh anonymous mapping at an address the kernel picks; it
        // overlaps nothing we own. PROT_NONE + NORESERVE commits no memory.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                span,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let mut mem = HostLinearMemory {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            base: ptr as usize,
            size: 0,
            rw: 0,
            reservation,
            span,
        };
        // From here on, dropping `mem` unmaps the reservation.
        mem.make_accessible(minimum)?;
        registry_mut().insert(mem.base, mem.info());
        Ok(mem)
    }

    pub fn info(&self) -> MemoryInfo {
        MemoryInfo {
            id: self.id,
            base: self.base,
            size: self.size,
            span: self.span,
        }
    }

    /// Opens `[0, new_size)` for reading and writing (new bytes read as zeros).
    fn make_accessible(&mut self, new_size: usize) -> std::io::Result<()> {
        if new_size > self.reservation {
            return Err(std::io::Error::new(
                std::io::ErrorKind::OutOfMemory,
                format!(
                    "memory of {new_size} bytes exceeds its reservation of {} bytes",
                    self.reservation
                ),
            ));
        }
        let rw = round_up_to_page(new_size).unwrap_or(self.reservation);
        if rw > self.rw {
            // SAFETY: [base + self.rw, base + rw) lies inside our own PROT_NONE
            // reservation (rw <= reservation < span), which nothing else maps: the
            // pager only maps over accessible bytes, below self.rw. Making it
            // read-write changes no byte anyone can see.
            let r = unsafe {
                libc::mprotect(
                    (self.base + self.rw) as *mut libc::c_void,
                    rw - self.rw,
                    libc::PROT_READ | libc::PROT_WRITE,
                )
            };
            if r != 0 {
                return Err(std::io::Error::last_os_error());
            }
            self.rw = rw;
        }
        self.size = self.size.max(new_size);
        Ok(())
    }
}

impl Drop for HostLinearMemory {
    fn drop(&mut self) {
        // The write lock waits for every `GuestRegion::with_live` on this memory.
        let mut map = registry_mut();
        map.remove(&self.base);
        // SAFETY: [base, base + span) is the mapping `new` made, owned by this value
        // alone; wasmtime drops a memory only when no code can use it any more, and
        // the registry entry is gone, so no new GuestRegion can point into it.
        let r = unsafe { libc::munmap(self.base as *mut libc::c_void, self.span) };
        drop(map);
        if r != 0 {
            tracing::error!(
                base = self.base,
                span = self.span,
                error = %std::io::Error::last_os_error(),
                "munmap of a guest memory failed"
            );
        }
    }
}

// SAFETY: the base never moves (the whole reservation is mapped up front), byte_size
// bytes from the base are readable and writable, byte_capacity bytes can be made so
// without moving, and the guard region after the reservation stays PROT_NONE, as
// wasmtime's static bounds checks require.
unsafe impl LinearMemory for HostLinearMemory {
    fn byte_size(&self) -> usize {
        self.size
    }

    fn byte_capacity(&self) -> usize {
        self.reservation
    }

    fn grow_to(&mut self, new_size: usize) -> wasmtime::Result<()> {
        self.make_accessible(new_size)?;
        if let Some(entry) = registry_mut().get_mut(&self.base) {
            entry.size = self.size;
        }
        Ok(())
    }

    fn as_ptr(&self) -> *mut u8 {
        self.base as *mut u8
    }
}

// SAFETY: every memory made here is zero-filled (fresh anonymous pages), owned by the
// returned value and reserved with `reserved_size_in_bytes + guard_size_in_bytes`
// bytes, as the trait asks.
unsafe impl MemoryCreator for HostMemoryCreator {
    fn new_memory(
        &self,
        ty: MemoryType,
        minimum: usize,
        maximum: Option<usize>,
        reserved_size_in_bytes: Option<usize>,
        guard_size_in_bytes: usize,
    ) -> Result<Box<dyn LinearMemory>, String> {
        if ty.is_shared() {
            return Err("shared memories are not supported".into());
        }
        // Without a reservation from wasmtime, reserve the maximum (the memory must
        // still never move), or 4 GiB for an unbounded 32-bit memory.
        let reservation = match (reserved_size_in_bytes, maximum) {
            (Some(r), _) => r,
            (None, Some(max)) => max,
            (None, None) if !ty.is_64() => 1 << 32,
            (None, None) => return Err("an unbounded 64-bit memory needs a reservation".into()),
        };
        if maximum.is_some_and(|max| max > reservation) && reserved_size_in_bytes.is_none() {
            return Err("memory maximum exceeds its reservation".into());
        }
        HostLinearMemory::new(minimum, reservation, guard_size_in_bytes)
            .map(|m| Box::new(m) as Box<dyn LinearMemory>)
            .map_err(|e| format!("cannot reserve guest memory: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WASM_PAGE: usize = 65536;

    fn memory(pages: usize, reserve_pages: usize) -> HostLinearMemory {
        HostLinearMemory::new(pages * WASM_PAGE, reserve_pages * WASM_PAGE, WASM_PAGE).unwrap()
    }

    #[test]
    fn grow_keeps_base_and_contents() {
        let mut m = memory(1, 16);
        let base = m.as_ptr();
        // SAFETY: the first page is accessible.
        unsafe { base.write(42) };
        m.grow_to(4 * WASM_PAGE).unwrap();
        assert_eq!(m.as_ptr(), base);
        assert_eq!(m.byte_size(), 4 * WASM_PAGE);
        // SAFETY: 4 pages are accessible now.
        unsafe {
            assert_eq!(base.read(), 42);
            assert_eq!(base.add(4 * WASM_PAGE - 1).read(), 0);
            base.add(4 * WASM_PAGE - 1).write(7);
        }
        assert_eq!(
            memory_containing(base as usize).unwrap().size,
            4 * WASM_PAGE
        );
        assert!(m.grow_to(17 * WASM_PAGE).is_err());
        assert_eq!(m.byte_size(), 4 * WASM_PAGE);
    }

    #[test]
    fn regions_inside_accessible_bytes_only() {
        let mut m = memory(2, 16);
        let base = m.as_ptr() as *const u8;
        let r = GuestRegion::find(base.wrapping_add(4096), 8192).unwrap();
        assert_eq!((r.addr(), r.len()), (base as usize + 4096, 8192));
        assert!(r.is_live());
        assert_eq!(r.with_live(|| 5), Some(5));
        // The whole accessible memory is fine, one byte more is not.
        GuestRegion::find(base, 2 * WASM_PAGE).unwrap();
        assert!(matches!(
            GuestRegion::find(base, 2 * WASM_PAGE + 1),
            Err(RegionError::PastEnd { .. })
        ));
        // Reserved but not yet accessible, and the guard region.
        assert!(matches!(
            GuestRegion::find(base.wrapping_add(3 * WASM_PAGE), 4096),
            Err(RegionError::PastEnd { .. })
        ));
        assert!(GuestRegion::find(base.wrapping_add(16 * WASM_PAGE), 1).is_err());
        // Before the memory, and host memory.
        assert!(GuestRegion::find(base.wrapping_sub(4096), 4096).is_err());
        let host = [0u8; 64];
        assert!(matches!(
            GuestRegion::find(host.as_ptr(), host.len()),
            Err(RegionError::NotGuestMemory { .. })
        ));
        assert_eq!(GuestRegion::find(base, 0), Err(RegionError::Empty));
        assert!(matches!(
            GuestRegion::find(base, usize::MAX),
            Err(RegionError::Overflow { .. })
        ));
        // Growing makes more accessible.
        m.grow_to(3 * WASM_PAGE).unwrap();
        GuestRegion::find(base.wrapping_add(2 * WASM_PAGE), WASM_PAGE).unwrap();
    }

    #[test]
    fn regions_die_with_their_memory() {
        let m = memory(1, 4);
        let base = m.as_ptr() as *const u8;
        let r = GuestRegion::find(base, 4096).unwrap();
        let info = memory_containing(base as usize).unwrap();
        assert_eq!(fault_address(info.base, 100), Some(base as usize + 100));
        drop(m);
        assert!(!r.is_live());
        assert_eq!(r.with_live(|| ()), None);
        assert!(memory_by_id(info.id).is_none());
        // Tests run in parallel: another test's memory may take the freed addresses,
        // but never this memory's identity.
        match GuestRegion::find(base, 4096) {
            Err(_) => assert_eq!(fault_address(info.base, 100), None),
            Ok(other) => assert_ne!(other.memory_id(), info.id),
        }
    }

    #[test]
    fn creator_reserves_what_wasmtime_asks() {
        let ty = MemoryType::new(1, Some(8));
        let m = HostMemoryCreator
            .new_memory(ty, WASM_PAGE, Some(8 * WASM_PAGE), Some(1 << 32), 1 << 21)
            .unwrap();
        assert_eq!(m.byte_size(), WASM_PAGE);
        assert_eq!(m.byte_capacity(), 1 << 32);
        let info = memory_containing(m.as_ptr() as usize).unwrap();
        assert_eq!(info.span, (1 << 32) + (1 << 21));
    }
}
