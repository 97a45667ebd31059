//! mmap-reader: maps an AFS file read-only and prints its first byte every interval.
//!
//! ```text
//! mmap-reader PATH [--interval-ms N] [--count N] [--changes-only]
//! mmap-reader PATH --sweep PAGES [--interval-ms N]
//! ```
//!
//! Prints the byte as two lowercase hex digits, one per line, flushed at once. `--count N`
//! stops after N printed lines (default: never); `--changes-only` prints a value only when it
//! differs from the last printed one (the first is always printed). The guest makes no host
//! call to notice a change: the host keeps the mapped page coherent with the fileserver.
//!
//! `--sweep PAGES` maps the whole file instead and reads it through once, PAGES pages every
//! interval, printing `MIB HASH` after each MiB (its index, and the FNV-1a hash of its
//! bytes as eight hex digits): a reader that keeps faulting on pages it has not read yet.

use afs_guest::{File, PAGE_SIZE};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: mmap-reader PATH [--interval-ms N (default 1000)] [--count N (default: forever)] [--changes-only]
       mmap-reader PATH --sweep PAGES [--interval-ms N]";

struct Args {
    path: String,
    interval: Duration,
    count: Option<u64>,
    changes_only: bool,
    sweep: Option<u64>,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut path = None;
    let mut interval_ms = 1000u64;
    let mut count = None;
    let mut changes_only = false;
    let mut sweep = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            let v = args.next().ok_or(format!("{name} needs a value"))?;
            v.parse()
                .map_err(|_| format!("{name}: not a number: {v:?}"))
        };
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--interval-ms" => interval_ms = number("--interval-ms")?,
            "--count" => count = Some(number("--count")?),
            "--changes-only" => changes_only = true,
            "--sweep" => sweep = Some(number("--sweep")?.max(1)),
            a if a.starts_with('-') => return Err(format!("unknown option {a:?}")),
            _ if path.is_some() => return Err(format!("unexpected argument {arg:?}")),
            _ => path = Some(arg),
        }
    }
    Ok(Some(Args {
        path: path.ok_or("missing PATH")?,
        interval: Duration::from_millis(interval_ms),
        count,
        changes_only,
        sweep,
    }))
}

/// FNV-1a, 32 bits (a hash the tests compute too): the hash of nothing, and `h` extended
/// by `bytes`.
const FNV_EMPTY: u32 = 0x811c_9dc5;

fn fnv1a(h: u32, bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .fold(h, |h, &b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

fn sweep(args: &Args, pages: u64) -> Result<(), Box<dyn std::error::Error>> {
    const MIB: usize = 1 << 20;
    let file = File::open(&args.path)?;
    let len = file.stat()?.length;
    if len == 0 {
        return Ok(());
    }
    let mapping = file.map_read(0..len)?;
    let mut out = std::io::stdout().lock();
    let step = pages as usize * PAGE_SIZE as usize;
    let mut hash = FNV_EMPTY;
    let mut at = 0usize;
    while at < mapping.len() {
        let end = (at + step).min(mapping.len());
        // Hash MiB by MiB: a step may end inside one.
        let mut i = at;
        while i < end {
            let mib_end = ((i / MIB + 1) * MIB).min(end);
            hash = fnv1a(hash, &mapping[i..mib_end]);
            if mib_end % MIB == 0 || mib_end == mapping.len() {
                writeln!(out, "{} {hash:08x}", i / MIB)?;
                out.flush()?;
                hash = FNV_EMPTY;
            }
            i = mib_end;
        }
        at = end;
        std::thread::sleep(args.interval);
    }
    Ok(())
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(pages) = args.sweep {
        return sweep(args, pages);
    }
    let file = File::open(&args.path)?;
    let mapping = file.map_read(0..PAGE_SIZE)?;
    let mut out = std::io::stdout().lock();
    let mut printed = 0u64;
    let mut last = None;
    if args.count == Some(0) {
        return Ok(());
    }
    loop {
        // A volatile load: the host changes this byte behind our back (after a callback
        // break); make sure every round really reads memory.
        let byte = mapping.read_volatile(0);
        if !args.changes_only || last != Some(byte) {
            writeln!(out, "{byte:02x}")?;
            out.flush()?;
            last = Some(byte);
            printed += 1;
            if args.count.is_some_and(|n| printed >= n) {
                return Ok(());
            }
        }
        std::thread::sleep(args.interval);
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("mmap-reader: {e}\n{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mmap-reader: {e}");
            ExitCode::FAILURE
        }
    }
}
