//! userfaultfd(2), the few operations the pager needs, as raw ioctls.
//!
//! The `userfaultfd` crate does not build here (its -sys crate runs bindgen) and lacks
//! `UFFDIO_CONTINUE_MODE_WP`, so this module talks to the kernel directly. The numbers are
//! those of linux/userfaultfd.h (x86_64 and aarch64 share them: `_IOWR(0xAA, nr, struct)`).
//! All unsafe code here is the system calls themselves: each ioctl passes a pointer to a
//! properly initialised `#[repr(C)]` struct that lives across the call.
//!
//! # Who may open one
//!
//! [`Uffd::open`] tries three routes, in this order, and keeps the first that works
//! ([`Uffd::mode`] tells which; it is logged at debug level):
//!
//! 1. `/dev/userfaultfd` (`USERFAULTFD_IOC_NEW`), when this process may open it (root only
//!    by default): [`UffdMode::Device`], which also catches faults the kernel takes on our
//!    behalf (a `write(2)` from a mapped guest buffer).
//! 2. `userfaultfd(2)` without `UFFD_USER_MODE_ONLY`: the same, allowed with
//!    `CAP_SYS_PTRACE` or `vm.unprivileged_userfaultfd = 1` ([`UffdMode::Syscall`]).
//! 3. `userfaultfd(2)` with `UFFD_USER_MODE_ONLY`, which any process may open (Linux 5.11+),
//!    with MISSING, MINOR and WP faults on shmem all the same ([`UffdMode::UserModeOnly`]).
//!    Only faults taken in user mode reach the handler: a system call that touches a page
//!    of a registered range that is not resolved yet fails with `EFAULT` instead of
//!    waiting for it. That is how an ordinary user runs the host (Debian's default is
//!    `vm.unprivileged_userfaultfd = 0` and a root-only `/dev/userfaultfd`), so no host
//!    code may hand guest memory that may be mapped to a system call: it copies it in user
//!    mode first (wasmtime's canonical ABI and WASI p2 copy lists with `memcpy`, which
//!    faults into the pager like the guest's own accesses).
//!
//! When none works, the error names each route's errno and how to allow one.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const UFFD_API: u64 = 0xAA;

/// `UFFD_USER_MODE_ONLY` (linux/userfaultfd.h): handle faults taken in user mode only.
const UFFD_USER_MODE_ONLY: libc::c_int = 1;
/// `USERFAULTFD_IOC_NEW = _IO(0xAA, 0x00)`, on `/dev/userfaultfd`: a new userfaultfd.
const USERFAULTFD_IOC_NEW: libc::c_ulong = 0xAA00;
const DEVICE: &str = "/dev/userfaultfd";

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

/// How a `Uffd` was opened, and so which faults it catches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UffdMode {
    /// Through `/dev/userfaultfd`: catches faults taken in kernel mode too.
    Device,
    /// Through `userfaultfd(2)` without `UFFD_USER_MODE_ONLY` (root, `CAP_SYS_PTRACE`, or
    /// `vm.unprivileged_userfaultfd = 1`): catches faults taken in kernel mode too.
    Syscall,
    /// Through `userfaultfd(2)` with `UFFD_USER_MODE_ONLY`: user-mode faults only; a
    /// system call touching an unresolved page of a registered range fails with `EFAULT`.
    UserModeOnly,
}

impl UffdMode {
    /// Whether faults the kernel takes on our behalf (in a system call) reach the handler.
    pub fn catches_kernel_faults(self) -> bool {
        self != Self::UserModeOnly
    }
}

/// `device`, `syscall` or `user-mode-only`.
impl fmt::Display for UffdMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Device => "device",
            Self::Syscall => "syscall",
            Self::UserModeOnly => "user-mode-only",
        })
    }
}

/// Why no userfaultfd could be opened: each route tried and the kernel's answer.
#[derive(Debug)]
struct Unavailable(Vec<(&'static str, io::Error)>);

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("this process may not open one (")?;
        for (i, (route, e)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{route}: {e}")?;
        }
        write!(
            f,
            "). The pager serves mapped files' page faults through it. Allow it with \
             `sysctl -w vm.unprivileged_userfaultfd=1`, or give this user read-write access \
             to {DEVICE}, or run as root; in a container, its seccomp profile must also allow \
             the userfaultfd system call"
        )
    }
}

impl std::error::Error for Unavailable {}

/// A userfaultfd, non-blocking, for this process's memory.
#[derive(Debug)]
pub struct Uffd {
    fd: OwnedFd,
    mode: UffdMode,
}

impl Uffd {
    /// Opens a userfaultfd by the first route this process is allowed (see the module
    /// docs: `/dev/userfaultfd`, then `userfaultfd(2)`, then `userfaultfd(2)` for
    /// user-mode faults only), and enables MINOR and WP faults on shmem.
    pub fn open() -> io::Result<Self> {
        let mut failed = Vec::new();
        let opened = open_device()
            .map(|fd| (fd, UffdMode::Device))
            .or_else(|e| {
                failed.push((DEVICE, e));
                open_syscall(0).map(|fd| (fd, UffdMode::Syscall))
            })
            .or_else(|e| {
                failed.push(("userfaultfd(2)", e));
                open_syscall(UFFD_USER_MODE_ONLY).map(|fd| (fd, UffdMode::UserModeOnly))
            });
        let (fd, mode) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                failed.push(("userfaultfd(2) with UFFD_USER_MODE_ONLY", e));
                return Err(unavailable(failed));
            }
        };
        let uffd = Self { fd, mode };
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
        tracing::debug!(
            mode = %uffd.mode(),
            kernel_faults = uffd.mode().catches_kernel_faults(),
            passed_over = ?failed.iter().map(|(route, e)| format!("{route}: {e}")).collect::<Vec<_>>(),
            "userfaultfd opened"
        );
        Ok(uffd)
    }

    /// How this userfaultfd was opened: whether faults taken in kernel mode reach it.
    pub fn mode(&self) -> UffdMode {
        self.mode
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

/// A userfaultfd from `/dev/userfaultfd` (`USERFAULTFD_IOC_NEW`), for faults in user and
/// kernel mode.
fn open_device() -> io::Result<OwnedFd> {
    let dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(DEVICE)?;
    let flags = libc::O_CLOEXEC | libc::O_NONBLOCK;
    // SAFETY: USERFAULTFD_IOC_NEW takes its flags by value (no pointer) and returns a new
    // descriptor or -1; `dev` stays open across the call.
    let raw = unsafe { libc::ioctl(dev.as_raw_fd(), USERFAULTFD_IOC_NEW, flags) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a descriptor the kernel just gave us and nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// A userfaultfd from the `userfaultfd(2)` system call, with `extra` flags.
fn open_syscall(extra: libc::c_int) -> io::Result<OwnedFd> {
    let flags = libc::O_CLOEXEC | libc::O_NONBLOCK | extra;
    // SAFETY: userfaultfd(2) takes only flags and returns a new descriptor or -1.
    let raw = unsafe { libc::syscall(libc::SYS_userfaultfd, flags) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a descriptor the kernel just gave us and nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw as RawFd) })
}

/// The error for no route working: `PermissionDenied` when a permission stood in the way
/// of the last route, `Unsupported` when the kernel has no userfaultfd at all.
fn unavailable(failed: Vec<(&'static str, io::Error)>) -> io::Error {
    // The last route is open to anybody unless a policy (seccomp, an LSM) forbids it.
    let last = failed.last().and_then(|(_, e)| e.raw_os_error());
    let kind = if matches!(last, Some(libc::EPERM | libc::EACCES)) {
        io::ErrorKind::PermissionDenied
    } else {
        io::ErrorKind::Unsupported
    };
    io::Error::new(kind, Unavailable(failed))
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

    /// Also proves which route works for whoever runs the tests: testcell/test.sh runs
    /// them as an unprivileged user and sets `AFS_WASM_TEST_UFFD_MODE=user-mode-only`.
    #[test]
    fn opens_with_minor_and_wp_on_shmem() {
        let uffd = Uffd::open().expect("userfaultfd with MINOR_SHMEM and WP on shmem");
        if let Ok(want) = std::env::var("AFS_WASM_TEST_UFFD_MODE") {
            assert_eq!(uffd.mode().to_string(), want);
        }
        assert_eq!(
            uffd.mode().catches_kernel_faults(),
            uffd.mode() != UffdMode::UserModeOnly
        );
    }

    /// A user-mode-only userfaultfd serves a fault taken by wasm-like user code on a memfd
    /// mapping, while a system call reading from the unresolved range fails with EFAULT
    /// (what the host must never do). Runs with any route: the syscall's answer is checked
    /// only for user-mode-only.
    #[test]
    fn user_mode_faults_are_served_and_kernel_ones_fail_in_user_mode_only() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let uffd = Arc::new(Uffd::open().unwrap());
        let page = crate::pager::PAGE;
        // SAFETY: memfd_create takes a C string and flags and returns a new fd or -1.
        let raw = unsafe { libc::memfd_create(c"uffd-test".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(raw >= 0, "{}", io::Error::last_os_error());
        // SAFETY: a new descriptor that nothing else owns.
        let memfd = unsafe { OwnedFd::from_raw_fd(raw) };
        let file = std::fs::File::from(memfd);
        file.set_len(page as u64).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&file, &[7u8; 64], 0).unwrap();
        // SAFETY: a new shared mapping of our own memfd, `page` bytes, owned by this test.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        assert_ne!(addr, libc::MAP_FAILED, "{}", io::Error::last_os_error());
        let addr = addr as usize;
        uffd.register(addr, page).unwrap();

        if uffd.mode() == UffdMode::UserModeOnly {
            // The kernel reads the unresolved page for write(2): EFAULT, no fault event.
            let mut pipe = [0; 2];
            // SAFETY: pipe2 fills the two-element array we own.
            assert_eq!(
                unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) },
                0
            );
            // SAFETY: the pipe's descriptors, new and ours.
            let (r, w) = unsafe { (OwnedFd::from_raw_fd(pipe[0]), OwnedFd::from_raw_fd(pipe[1])) };
            // SAFETY: reads at most 64 bytes at `addr`, a mapping of ours; the kernel
            // checks the access and fails it with EFAULT rather than faulting for us.
            let n = unsafe { libc::write(w.as_raw_fd(), addr as *const libc::c_void, 64) };
            let err = io::Error::last_os_error();
            assert_eq!(n, -1, "a system call read an unresolved page");
            assert_eq!(err.raw_os_error(), Some(libc::EFAULT), "{err}");
            drop((r, w));
        }

        // A user-mode read faults into a handler thread, which maps the page (MINOR).
        let done = Arc::new(AtomicBool::new(false));
        let handler = {
            let (uffd, done) = (uffd.clone(), done.clone());
            std::thread::spawn(move || {
                let mut faults = Vec::new();
                while !done.load(Ordering::Acquire) {
                    faults.clear();
                    uffd.read_faults(&mut faults).unwrap();
                    for f in &faults {
                        assert_eq!(f.kind, FaultKind::Minor);
                        uffd.continue_range(f.address & !(page - 1), page, false)
                            .unwrap();
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            })
        };
        // SAFETY: `addr` is a readable mapping of ours, `page` bytes long.
        let byte = unsafe { std::ptr::read_volatile(addr as *const u8) };
        done.store(true, Ordering::Release);
        handler.join().unwrap();
        assert_eq!(byte, 7);
        // SAFETY: unmaps the mapping this test made; nothing refers to it any more.
        unsafe { libc::munmap(addr as *mut libc::c_void, page) };
    }

    #[test]
    fn unavailable_names_every_route_and_the_ways_to_allow_one() {
        let e = unavailable(vec![
            (DEVICE, io::Error::from_raw_os_error(libc::EACCES)),
            ("userfaultfd(2)", io::Error::from_raw_os_error(libc::EPERM)),
            (
                "userfaultfd(2) with UFFD_USER_MODE_ONLY",
                io::Error::from_raw_os_error(libc::EPERM),
            ),
        ]);
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        let text = e.to_string();
        for want in [
            "/dev/userfaultfd: Permission denied (os error 13)",
            "userfaultfd(2): Operation not permitted (os error 1)",
            "userfaultfd(2) with UFFD_USER_MODE_ONLY: Operation not permitted (os error 1)",
            "vm.unprivileged_userfaultfd=1",
            "access to /dev/userfaultfd",
        ] {
            assert!(text.contains(want), "{want:?} missing from: {text}");
        }
        let e = unavailable(vec![
            (DEVICE, io::Error::from_raw_os_error(libc::ENOENT)),
            ("userfaultfd(2)", io::Error::from_raw_os_error(libc::ENOSYS)),
            (
                "userfaultfd(2) with UFFD_USER_MODE_ONLY",
                io::Error::from_raw_os_error(libc::ENOSYS),
            ),
        ]);
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
    }
}
