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
//! read-only and, every 10 ms for a minute, has the host copy the mapped bytes to stderr,
//! then reads the first byte itself and prints it as `%02x`).

use std::alloc::{alloc_zeroed, Layout};
use std::io::Write;
use std::process::ExitCode;

use afs_guest::raw::afs::client::files::{Access, Error, File};
use afs_guest::raw::afs::client::mmap;

const PAGE: usize = 4096;

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
        "copy-out" => {
            let f = open(path, Access::Read)?;
            let buf = buffer(PAGE);
            let ptr = buf.as_ptr();
            let _m = mmap::map(&f, 0, PAGE as u64, buf, Access::Read)?;
            for _ in 0..6000 {
                // SAFETY: `ptr` points at our own live buffer, which the host mapped
                // read-only; we only read it.
                let head = unsafe { std::slice::from_raw_parts(ptr, 16) };
                // The host's code reads these bytes from our memory, not ours.
                let _ = std::io::stderr().write_all(head);
                // SAFETY: as above; volatile, as the host changes the page behind us.
                let byte = unsafe { ptr.read_volatile() };
                println!("{byte:02x}");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
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
