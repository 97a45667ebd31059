//! userfaultfd(2), the few operations the pager needs, as raw ioctls.
//!
//! The `userfaultfd` crate does not build here (its -sys crate runs bindgen) and lacks
//! `UFFDIO_CONTINUE_MODE_WP`, so this module talks to the kernel directly. The numbers are
//! those of linux/userfaultfd.h (x86_64 and aarch64 share them: `_IOWR(0xAA, nr, struct)`).
//! All unsafe code here is the ioctl calls themselves: each passes a pointer to a properly
//! initialised `#[repr(C)]` struct that lives across the call.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const UFFD_API: u64 = 0xAA;

const UFFDIO_API: libc::c_ulong = 0xC018_AA3F;
const UFFDIO_REGISTER: libc::c_ulong = 0xC020_AA00;
const UFFDIO_WAKE: libc::c_ulong = 0x8010_AA02;
const UFFDIO_WRITEPROTECT: libc::c_ulong = 0xC018_AA06;
const UFFDIO_CONTINUE: libc::c_ulong = 0xC020_AA07;

/// Features we ask for: WP fault flags, the faulting thread's id, MINOR faults on shmem
/// (memfd), and WP on shmem.
const FEATURE_PAGEFAULT_FLAG_WP: u64 = 1 << 0;
const FEATURE_THREAD_ID: u64 = 1 << 8;
const FEATURE_MINOR_SHMEM: u64 = 1 << 10;
const FEATURE_WP_HUGETLBFS_SHMEM: u64 = 1 << 12;

const REGISTER_MODE_MISSING: u64 = 1 << 0;
const REGISTER_MODE_WP: u64 = 1 << 1;
const REGISTER_MODE_MINOR: u64 = 1 << 2;

const WRITEPROTECT_MODE_WP: u64 = 1 << 0;
const CONTINUE_MODE_WP: u64 = 1 << 1;

const EVENT_PAGEFAULT: u8 = 0x12;
const PAGEFAULT_FLAG_WRITE: u64 = 1 << 0;
const PAGEFAULT_FLAG_WP: u64 = 1 << 1;
const PAGEFAULT_FLAG_MINOR: u64 = 1 << 2;

#[repr(C)]
#[derive(Default)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct UffdioRange {
    start: u64,
    len: u64,
}

#[repr(C)]
#[derive(Default)]
struct UffdioRegister {
    range: UffdioRange,
    mode: u64,
    ioctls: u64,
}

#[repr(C)]
#[derive(Default)]
struct UffdioWriteprotect {
    range: UffdioRange,
    mode: u64,
}

#[repr(C)]
#[derive(Default)]
struct UffdioContinue {
    range: UffdioRange,
    mode: u64,
    mapped: i64,
}

/// `struct uffd_msg`: 32 bytes, the page-fault variant of its union.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct UffdMsg {
    event: u8,
    reserved1: u8,
    reserved2: u16,
    reserved3: u32,
    flags: u64,
    address: u64,
    feat: u64,
}

/// What kind of fault the kernel reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The memfd has no page there (never fetched, or punched out).
    Missing,
    /// The memfd has the page but this mapping has no PTE for it (after a zap).
    Minor,
    /// A write to a write-protected page: the first write since it was last clean.
    WriteProtect,
}

/// One page fault in a registered range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub address: usize,
    pub kind: FaultKind,
    pub write: bool,
    /// The faulting thread (its kernel thread id).
    pub thread: u32,
}

/// A userfaultfd, non-blocking, for this process's memory.
#[derive(Debug)]
pub struct Uffd {
    fd: OwnedFd,
}

impl Uffd {
    /// Opens a userfaultfd that also catches faults taken by the kernel on our behalf
    /// (a `write(2)` from a mapped guest buffer), and enables MINOR and WP faults on
    /// shmem.
    pub fn open() -> io::Result<Self> {
        // SAFETY: userfaultfd(2) takes only flags and returns a new descriptor or -1.
        let raw =
            unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | libc::O_NONBLOCK) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor the kernel just gave us and nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw as RawFd) };
        let uffd = Self { fd };
        let wanted = FEATURE_PAGEFAULT_FLAG_WP
            | FEATURE_THREAD_ID
            | FEATURE_MINOR_SHMEM
            | FEATURE_WP_HUGETLBFS_SHMEM;
        let mut api = UffdioApi {
            api: UFFD_API,
            features: wanted,
            ioctls: 0,
        };
        uffd.ioctl(UFFDIO_API, &mut api)?;
        if api.features & wanted != wanted {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the kernel lacks userfaultfd MINOR/WP faults on shmem (Linux 5.19 or later needed)",
            ));
        }
        Ok(uffd)
    }

    fn ioctl<T>(&self, request: libc::c_ulong, arg: &mut T) -> io::Result<()> {
        // SAFETY: `arg` is the `#[repr(C)]` struct the kernel expects for `request`
        // (each caller pairs them), initialised, and borrowed mutably for the call.
        let rc = unsafe { libc::ioctl(self.fd.as_raw_fd(), request, arg as *mut T) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Watches `[start, start + len)` for missing, minor and write-protect faults. The
    /// range must be a shmem mapping of this process.
    pub fn register(&self, start: usize, len: usize) -> io::Result<()> {
        let mut reg = UffdioRegister {
            range: range(start, len),
            mode: REGISTER_MODE_MISSING | REGISTER_MODE_MINOR | REGISTER_MODE_WP,
            ioctls: 0,
        };
        self.ioctl(UFFDIO_REGISTER, &mut reg)
    }

    /// Maps the memfd's pages into `[start, start + len)` and wakes the threads waiting
    /// there. With `write_protect`, the PTEs are write-protected so that the first write
    /// to each page faults again (dirty tracking). Pages that already have a PTE, or that
    /// the memfd lacks, are skipped one at a time. Returns the pages mapped.
    pub fn continue_range(&self, start: usize, len: usize, write_protect: bool) -> io::Result<u64> {
        let page = crate::pager::PAGE;
        let (mut at, end) = (start, start + len);
        let mut mapped = 0;
        while at < end {
            let mut c = UffdioContinue {
                range: range(at, end - at),
                mode: if write_protect { CONTINUE_MODE_WP } else { 0 },
                mapped: 0,
            };
            let result = self.ioctl(UFFDIO_CONTINUE, &mut c);
            let done = usize::try_from(c.mapped.max(0)).unwrap_or(0);
            mapped += (done / page) as u64;
            at += done;
            match result {
                Ok(()) => break,
                // Already mapped (another fault won the race): skip that page.
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => at += page,
                // The memfd has no page there (punched meanwhile): leave it to its fault.
                Err(e) if e.raw_os_error() == Some(libc::EFAULT) => at += page,
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => continue,
                Err(e) => return Err(e),
            }
        }
        self.wake(start, len)?;
        Ok(mapped)
    }

    /// Sets or clears write protection on `[start, start + len)`. Clearing also wakes the
    /// threads waiting there.
    pub fn write_protect(&self, start: usize, len: usize, protect: bool) -> io::Result<()> {
        let mut wp = UffdioWriteprotect {
            range: range(start, len),
            mode: if protect { WRITEPROTECT_MODE_WP } else { 0 },
        };
        loop {
            match self.ioctl(UFFDIO_WRITEPROTECT, &mut wp) {
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => continue,
                other => return other,
            }
        }
    }

    /// Wakes threads faulting in `[start, start + len)` so they retry the access.
    pub fn wake(&self, start: usize, len: usize) -> io::Result<()> {
        let mut r = range(start, len);
        self.ioctl(UFFDIO_WAKE, &mut r)
    }

    /// Reads pending faults into `out`; returns how many (0 when none are pending).
    pub fn read_faults(&self, out: &mut Vec<Fault>) -> io::Result<usize> {
        let mut msgs = [UffdMsg::default(); 32];
        let size = std::mem::size_of_val(&msgs);
        // SAFETY: reads at most `size` bytes into `msgs`, a plain-old-data array we own.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), msgs.as_mut_ptr().cast(), size) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        let count = n as usize / std::mem::size_of::<UffdMsg>();
        let before = out.len();
        for m in &msgs[..count] {
            if m.event != EVENT_PAGEFAULT {
                continue;
            }
            let kind = if m.flags & PAGEFAULT_FLAG_WP != 0 {
                FaultKind::WriteProtect
            } else if m.flags & PAGEFAULT_FLAG_MINOR != 0 {
                FaultKind::Minor
            } else {
                FaultKind::Missing
            };
            out.push(Fault {
                address: m.address as usize,
                kind,
                write: m.flags & PAGEFAULT_FLAG_WRITE != 0,
                // `feat.ptid`, the first 4 bytes of the 8-byte union.
                thread: m.feat as u32,
            });
        }
        Ok(out.len() - before)
    }
}

impl AsRawFd for Uffd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn range(start: usize, len: usize) -> UffdioRange {
    UffdioRange {
        start: start as u64,
        len: len as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_sizes_match_the_kernel_abi() {
        assert_eq!(std::mem::size_of::<UffdMsg>(), 32);
        assert_eq!(std::mem::size_of::<UffdioApi>(), 24);
        assert_eq!(std::mem::size_of::<UffdioRegister>(), 32);
        assert_eq!(std::mem::size_of::<UffdioContinue>(), 32);
        assert_eq!(std::mem::size_of::<UffdioWriteprotect>(), 24);
        // The request numbers encode the struct size: _IOWR(0xAA, nr, size).
        assert_eq!((UFFDIO_API >> 16) & 0x3fff, 24);
        assert_eq!((UFFDIO_REGISTER >> 16) & 0x3fff, 32);
        assert_eq!((UFFDIO_CONTINUE >> 16) & 0x3fff, 32);
        assert_eq!((UFFDIO_WRITEPROTECT >> 16) & 0x3fff, 24);
        assert_eq!((UFFDIO_WAKE >> 16) & 0x3fff, 16);
    }

    #[test]
    fn opens_with_minor_and_wp_on_shmem() {
        Uffd::open().expect("userfaultfd with MINOR_SHMEM and WP on shmem");
    }
}
