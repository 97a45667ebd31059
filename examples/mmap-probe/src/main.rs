//! mmap-probe: asks the host for mappings it must refuse, and reports what it answered.
//!
//! ```text
//! mmap-probe CASE PATH
//! ```
//!
//! Each case prints one line: `refused <error-code>: <message>` when the host refused the
//! request with an error, or `accepted` when it did not (a host bug, for the cases below but
//! `write-read-only`, which must trap: the guest dies with the host's message).
//!
//! Cases: `unaligned-region`, `unaligned-offset`, `region-too-short`, `length-over-4g`,
//! `zero-length`, `directory` (PATH is a directory), `not-granted`, `read-write-of-read-only`
//! (PATH opened read-only, mapped read-write), `overlap` (two mappings on one region),
//! `write-read-only` (writes through a read-only mapping: traps), `copy-out` (maps the file
//! read-only and, every 10 ms for a minute, has the host copy the first byte to stderr,
//! then reads the first byte itself and prints it as `%02x`), `copy-out-later` (the same,
//! but prints `mapped` and waits 5 s before the first access), `host-writes-read-only` (has
//! the host's `read` return its bytes into a read-only mapping, through a diverting
//! allocator: must trap).
//!
//! Cases that open PATH and report what they got (for the grant tests): `read` (opens
//! read-only, prints `read <bytes>`: the first 4 KiB, as text), `open-read-write`
//! (prints `accepted` or the refusal), `write:TEXT` (opens read-write, writes TEXT at
//! offset 0 by copy, syncs, prints `wrote <n>`), `map-write:TEXT` (opens read-write,
//! maps the first page read-write, puts TEXT at its start, syncs the mapping, prints
//! `wrote <n>`).

use std::alloc::{alloc_zeroed, GlobalAlloc, Layout, System};
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};

use afs_guest::raw::afs::client::files::{Access, Error, File};
use afs_guest::raw::afs::client::mmap;

const PAGE: usize = 4096;

/// When set, the next allocation (the host's `cabi_realloc` for a returned list among
/// them) gets this address: what a hostile guest can do.
static DIVERT: AtomicUsize = AtomicUsize::new(0);

struct Diverting;

// SAFETY: defers to the system allocator, except that one allocation is pointed at
// memory the guest owns and never frees (the `host-writes-read-only` case).
unsafe impl GlobalAlloc for Diverting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match DIVERT.swap(0, Ordering::SeqCst) {
            // SAFETY: the caller's contract, passed on.
            0 => unsafe { System.alloc(layout) },
            p => p as *mut u8,
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Diverting = Diverting;

/// A page-aligned, zeroed buffer of `len` bytes that lives until the guest exits (the host
/// may map over it).
fn buffer(len: usize) -> &'static mut [u8] {
    let layout = Layout::from_size_align(len.max(PAGE), PAGE).expect("layout");
    // SAFETY: the layout has a non-zero size; the allocation is leaked, so the slice never
    // dangles, and zeroed memory is a valid [u8].
    unsafe { std::slice::from_raw_parts_mut(alloc_zeroed(layout), layout.size()) }
}

fn report(result: Result<impl Sized, Error>) {
    match result {
        Ok(_) => println!("accepted"),
        Err(e) => println!("refused {:?}: {}", e.code, e.message),
    }
}

fn open(path: &str, access: Access) -> Result<File, Error> {
    File::open(path, access)
}

/// Maps the file read-only and, every 10 ms for a minute, has the host copy the first
/// mapped byte to stderr, then reads it itself and prints it as `%02x`. With `delay`,
/// prints `mapped` and waits that long before the first access.
fn copy_out(path: &str, delay: Option<std::time::Duration>) -> Result<(), Error> {
    let f = open(path, Access::Read)?;
    let buf = buffer(PAGE);
    let ptr = buf.as_ptr();
    let _m = mmap::map(&f, 0, PAGE as u64, buf, Access::Read)?;
    if let Some(delay) = delay {
        println!("mapped");
        std::thread::sleep(delay);
    }
    for _ in 0..6000 {
        // SAFETY: `ptr` points at our own live buffer, which the host mapped read-only;
        // we only read it.
        let head = unsafe { std::slice::from_raw_parts(ptr, 1) };
        // The host's code reads this byte from our memory, not ours.
        let _ = std::io::stderr().write_all(head);
        // SAFETY: as above; volatile, as the host changes the page behind us.
        let byte = unsafe { ptr.read_volatile() };
        println!("{byte:02x}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Ok(())
}

fn run(case: &str, path: &str) -> Result<(), Error> {
    match case {
        "unaligned-region" => {
            let f = open(path, Access::Read)?;
            let buf = buffer(2 * PAGE);
            report(mmap::map(
                &f,
                0,
                PAGE as u64,
                &buf[1..PAGE + 1],
                Access::Read,
            ));
        }
        "unaligned-offset" => {
            let f = open(path, Access::Read)?;
            report(mmap::map(&f, 100, PAGE as u64, buffer(PAGE), Access::Read));
        }
        "region-too-short" => {
            let f = open(path, Access::Read)?;
            let buf = buffer(PAGE);
            report(mmap::map(&f, 0, 2 * PAGE as u64, buf, Access::Read));
        }
        "length-over-4g" => {
            let f = open(path, Access::Read)?;
            report(mmap::map(&f, 0, 5 << 30, buffer(PAGE), Access::Read));
        }
        "zero-length" => {
            let f = open(path, Access::Read)?;
            report(mmap::map(&f, 0, 0, &buffer(PAGE)[..0], Access::Read));
        }
        "directory" => {
            let f = open(path, Access::Read)?;
            report(mmap::map(&f, 0, PAGE as u64, buffer(PAGE), Access::Read));
        }
        "not-granted" => report(open(path, Access::Read)),
        "read-write-of-read-only" => {
            let f = open(path, Access::Read)?;
            report(mmap::map(
                &f,
                0,
                PAGE as u64,
                buffer(PAGE),
                Access::ReadWrite,
            ));
        }
        "overlap" => {
            let f = open(path, Access::Read)?;
            let buf = buffer(PAGE);
            let first = mmap::map(&f, 0, PAGE as u64, buf, Access::Read)?;
            report(mmap::map(&f, 0, PAGE as u64, buf, Access::Read));
            drop(first);
        }
        "write-read-only" => {
            let f = open(path, Access::Read)?;
            let buf = buffer(PAGE);
            let ptr = buf.as_mut_ptr();
            let _m = mmap::map(&f, 0, PAGE as u64, buf, Access::Read)?;
            println!("mapped; writing");
            // SAFETY: `ptr` points at our own live buffer; the host mapped it read-only, so
            // this store traps (which is what this case checks).
            unsafe { ptr.write_volatile(1) };
            println!("accepted");
        }
        "copy-out" => copy_out(path, None)?,
        "copy-out-later" => copy_out(path, Some(std::time::Duration::from_secs(5)))?,
        "host-writes-read-only" => {
            let f = open(path, Access::Read)?;
            let buf = buffer(PAGE);
            let ptr = buf.as_mut_ptr();
            let _m = mmap::map(&f, 0, PAGE as u64, buf, Access::Read)?;
            println!("mapped; reading into the mapping");
            // The host puts the bytes it returns where our allocator says: inside the
            // read-only mapping. The call must fail (trap), and the page stay as it is.
            DIVERT.store(ptr as usize, Ordering::SeqCst);
            let got = f.read(0, 10);
            DIVERT.store(0, Ordering::SeqCst);
            let len = got.as_ref().map_or(0, Vec::len);
            // Never free memory the allocator did not hand out.
            std::mem::forget(got);
            println!("accepted {len} bytes");
        }
        "read" => {
            let f = open(path, Access::Read)?;
            let bytes = f.read(0, PAGE as u64)?;
            println!("read {}", String::from_utf8_lossy(&bytes));
        }
        "open-read-write" => report(open(path, Access::ReadWrite)),
        c if c.starts_with("write:") => {
            let text = &c["write:".len()..];
            let f = open(path, Access::ReadWrite)?;
            let n = f.write(0, text.as_bytes())?;
            f.sync()?;
            println!("wrote {n}");
        }
        c if c.starts_with("map-write:") => {
            let text = &c["map-write:".len()..];
            let f = open(path, Access::ReadWrite)?;
            let buf = buffer(PAGE);
            let ptr = buf.as_mut_ptr();
            let m = mmap::map(&f, 0, PAGE as u64, buf, Access::ReadWrite)?;
            // SAFETY: `ptr` points at our own live buffer of PAGE bytes, which the host
            // mapped read-write; TEXT is shorter than a page (checked by the slice).
            unsafe {
                std::slice::from_raw_parts_mut(ptr, PAGE)[..text.len()]
                    .copy_from_slice(text.as_bytes())
            };
            m.sync()?;
            println!("wrote {}", text.len());
        }
        other => {
            eprintln!("mmap-probe: unknown case {other:?}");
            std::process::exit(2);
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, case, path] = &args[..] else {
        eprintln!("usage: mmap-probe CASE PATH");
        return ExitCode::from(2);
    };
    match run(case, path) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("refused {:?}: {}", e.code, e.message);
            ExitCode::SUCCESS
        }
    }
}
