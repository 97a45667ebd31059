//! A mapped region of guest memory, and the system calls that change what backs it.
//!
//! Every address range here was checked by [`GuestRegion::find`] to lie inside the
//! accessible bytes of a live guest memory that the host owns: replacing its pages with
//! `MAP_FIXED` can only change what that guest sees, never host memory.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use afs::cache::pages::{FileCache, Hold};
use afs::client::Node;
use afs::types::Fid;

use super::{Access, Reason, PAGE};
use crate::memory::GuestRegion;

/// One file with at least one mapping, shared by all its mappings.
pub(super) struct MappedFile {
    pub fid: Fid,
    /// The path the first mapper named (messages, events).
    pub path: String,
    /// The file's status as last validated (the fetcher needs its server).
    pub node: Mutex<Node>,
    pub cache: Arc<FileCache>,
    /// Keeps mapped pages from eviction.
    pub _hold: Hold,
    /// Moves on every zap: a resolution that started before a zap re-zaps what it
    /// mapped, so a break can never be lost in the gap between check and map.
    pub zap_gen: AtomicU64,
    /// Why the last zap happened, for the revalidate event of the next fault.
    pub zap_reason: Mutex<Option<Reason>>,
}

impl MappedFile {
    pub fn node(&self) -> Node {
        self.node.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// One guest mapping.
pub(super) struct Region {
    pub id: u64,
    pub file: Arc<MappedFile>,
    /// The guest memory range this mapping covers: every system call on the range goes
    /// through [`GuestRegion::with_live`], so none can touch memory that was freed (and
    /// perhaps reused) after the guest's memory went away.
    pub guest: GuestRegion,
    /// Host address of the first mapped byte, page aligned.
    pub addr: usize,
    /// Bytes mapped: the requested length rounded up to whole pages.
    pub len: usize,
    /// The requested length (what the guest sees as the mapping's length).
    pub length: u64,
    /// File offset of `addr`.
    pub offset: u64,
    pub access: Access,
    /// Set when the pager made an access trap on purpose (unreachable server): the
    /// message the trap should carry.
    pub poisoned: Mutex<Option<String>>,
    /// The mapper's identity, and its cache manager: faults revalidate as it, and pages
    /// are mapped only while the server's word lets it read them.
    pub who: Arc<str>,
    pub cache: Arc<afs::cache::manager::CacheManager>,
}

impl Region {
    pub fn contains(&self, addr: usize) -> bool {
        addr >= self.addr && addr < self.addr + self.len
    }

    /// The host addresses of the pages of this region holding file bytes `[start, end)`,
    /// clipped to the region.
    pub fn host_range(&self, start: u64, end: u64) -> Option<(usize, usize)> {
        let r_end = self.offset + self.len as u64;
        let (s, e) = (start.max(self.offset), end.min(r_end));
        (s < e).then(|| (self.addr + (s - self.offset) as usize, (e - s) as usize))
    }

    /// The file offset of host address `addr` in this region.
    pub fn file_offset(&self, addr: usize) -> u64 {
        self.offset + (addr - self.addr) as u64
    }
}

/// Maps `len` bytes of `memfd` at file offset `offset` over `[addr, addr + len)` of
/// `region`, shared, so the guest sees (and writes) the page store's pages. Read-only
/// mappings are writable too: every page is mapped write-protected through userfaultfd,
/// so a write, by guest or by host code, becomes a fault the pager can answer (a
/// PROT_READ page would SIGSEGV host code that writes it).
pub(super) fn map_shared(
    region: &GuestRegion,
    memfd: BorrowedFd<'_>,
    offset: u64,
    (addr, len): (usize, usize),
) -> io::Result<()> {
    debug_assert!(addr >= region.addr() && addr + len <= region.addr() + region.len());
    let offset = libc::off_t::try_from(offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset past off_t"))?;
    let mapped = region.with_live(|| {
        // SAFETY: under `with_live`, the range lies inside the accessible bytes of a live
        // guest memory, which the host reserved and only guest code reads through
        // bounds-checked accesses; MAP_FIXED replaces exactly those pages and no others.
        let p = unsafe {
            libc::mmap(
                addr as *mut libc::c_void,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_FIXED,
                memfd.as_raw_fd(),
                offset,
            )
        };
        os_result(p == libc::MAP_FAILED)
    });
    mapped.unwrap_or_else(|| Err(io::Error::other("the guest memory is gone")))
}

/// Puts a private page at `page` of `region`, in place of the shared one: a
/// copy-on-write view of the memfd's page at `copy_of` (file offset), or zeros. Host code
/// that faulted there may then read or write it without touching the page store.
/// [`map_shared`] puts the shared page back.
pub(super) fn lend_private_page(
    region: &GuestRegion,
    page: usize,
    copy_of: Option<(BorrowedFd<'_>, u64)>,
) -> io::Result<()> {
    debug_assert!(page.is_multiple_of(PAGE) && page >= region.addr());
    debug_assert!(page + PAGE <= region.addr() + region.len());
    let (flags, fd, offset) = match copy_of {
        Some((memfd, offset)) => (
            libc::MAP_PRIVATE,
            memfd.as_raw_fd(),
            libc::off_t::try_from(offset)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset past off_t"))?,
        ),
        None => (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0),
    };
    let done = region.with_live(|| {
        // SAFETY: under `with_live`, the page lies inside a mapped region of a live guest
        // memory; MAP_FIXED replaces exactly that page with private memory, whose
        // writes never reach the memfd.
        let p = unsafe {
            libc::mmap(
                page as *mut libc::c_void,
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                flags | libc::MAP_FIXED,
                fd,
                offset,
            )
        };
        os_result(p == libc::MAP_FAILED)
    });
    done.unwrap_or(Ok(()))
}

/// Makes the page at `addr` read-only, so that the retry of a guest's write there is a
/// memory fault in wasm code: wasmtime's trap, which the pager explains.
pub(super) fn protect_read_only(region: &GuestRegion, addr: usize) -> io::Result<()> {
    protect(region, addr, libc::PROT_READ)
}

/// Gives the region back to the guest as fresh zeroed anonymous memory, as it was before
/// the mapping. Does nothing if the guest memory is gone already (its reservation was
/// unmapped, and the range may belong to someone else now).
pub(super) fn restore_anonymous(region: &GuestRegion) -> io::Result<()> {
    region
        .with_live(|| restore_anonymous_live(region))
        .unwrap_or(Ok(()))
}

fn restore_anonymous_live(region: &GuestRegion) -> io::Result<()> {
    // SAFETY: called under `with_live`: the range is inside a live guest memory that
    // cannot be dropped meanwhile; read-write private anonymous pages are what a guest
    // memory's accessible bytes are made of.
    let p = unsafe {
        libc::mmap(
            region.addr() as *mut libc::c_void,
            region.len(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Drops the page-table entries of `[addr, addr + len)` of a mapped region: the memfd
/// keeps the data, and the guest's next access to each page faults into the pager.
pub(super) fn zap(region: &GuestRegion, addr: usize, len: usize) -> io::Result<()> {
    debug_assert!(addr >= region.addr() && addr + len <= region.addr() + region.len());
    let zapped = region.with_live(|| {
        // SAFETY: under `with_live`, the range lies inside a live guest memory, in a
        // MAP_SHARED memfd mapping of ours; MADV_DONTNEED on a shared mapping discards no
        // data, only page-table entries.
        let rc = unsafe { libc::madvise(addr as *mut libc::c_void, len, libc::MADV_DONTNEED) };
        os_result(rc != 0)
    });
    zapped.unwrap_or(Ok(()))
}

/// [`zap`] for many ranges (region, addr, len): one `process_madvise` per 1,024 ranges
/// where the kernel takes MADV_DONTNEED from a process for itself (Linux 6.13, with one
/// TLB flush per call since 6.16), else one `madvise` each. Ranges whose memory is gone
/// are skipped, as [`zap`] skips them.
pub(super) fn zap_many(ranges: &[(&GuestRegion, usize, usize)]) -> io::Result<()> {
    let regions: Vec<&GuestRegion> = ranges.iter().map(|(r, _, _)| *r).collect();
    GuestRegion::with_all_live(&regions, |live| {
        let live: Vec<(usize, usize)> = ranges
            .iter()
            .zip(live)
            .filter(|(_, &l)| l)
            .map(|(&(_, addr, len), _)| (addr, len))
            .collect();
        for batch in live.chunks(1024) {
            let iov: Vec<libc::iovec> = batch
                .iter()
                .map(|&(addr, len)| libc::iovec {
                    iov_base: addr as *mut libc::c_void,
                    iov_len: len,
                })
                .collect();
            let total: usize = batch.iter().map(|&(_, len)| len).sum();
            // SAFETY: every range lies inside a live guest memory (the registry's lock is
            // held by `with_all_live`), in a MAP_SHARED memfd mapping of ours;
            // MADV_DONTNEED there discards only page-table entries. `iov` outlives the
            // call.
            let advised = unsafe {
                libc::syscall(
                    libc::SYS_process_madvise,
                    PIDFD_SELF,
                    iov.as_ptr(),
                    iov.len(),
                    libc::MADV_DONTNEED,
                    0,
                )
            };
            if advised == total as libc::c_long {
                continue;
            }
            // An older kernel (no PIDFD_SELF, or no MADV_DONTNEED from process_madvise),
            // or a partial result: each range on its own (dropping entries twice is
            // harmless).
            for &(addr, len) in batch {
                // SAFETY: as above, one range at a time.
                let rc =
                    unsafe { libc::madvise(addr as *mut libc::c_void, len, libc::MADV_DONTNEED) };
                os_result(rc != 0)?;
            }
        }
        Ok(())
    })
}

/// The pidfd that names the calling process's own threads (Linux 6.14; `PIDFD_SELF`).
const PIDFD_SELF: libc::c_int = -10000;

/// Makes the page at `addr` inaccessible so the guest's retry of the access traps (the
/// pager then explains the trap with the region's poison message).
pub(super) fn poison_page(region: &GuestRegion, addr: usize) -> io::Result<()> {
    protect(region, addr, libc::PROT_NONE)
}

fn protect(region: &GuestRegion, addr: usize, prot: libc::c_int) -> io::Result<()> {
    let page = addr & !(PAGE - 1);
    let done = region.with_live(|| {
        // SAFETY: under `with_live`, the page lies inside a mapped region of a live guest
        // memory; taking rights away only makes accesses there fault (wasmtime turns a
        // fault in guest code into a trap).
        let rc = unsafe { libc::mprotect(page as *mut libc::c_void, PAGE, prot) };
        os_result(rc != 0)
    });
    done.unwrap_or(Ok(()))
}

/// Allocates zero pages in the memfd for `[offset, offset + len)` where it has holes, so
/// that bytes past what the server has can be mapped (`UFFDIO_CONTINUE` needs a page).
pub(super) fn allocate_zeros(memfd: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    let (Ok(off), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "range past off_t",
        ));
    };
    // SAFETY: fallocate on a descriptor we borrow; KEEP_SIZE never changes the file size
    // and mode allocate never changes existing bytes.
    let rc = unsafe { libc::fallocate(memfd.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, off, len) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The error of the system call just made, if it `failed`.
fn os_result(failed: bool) -> io::Result<()> {
    if failed {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

pub(super) fn bump(gen: &AtomicU64) -> u64 {
    gen.fetch_add(1, Ordering::AcqRel) + 1
}
