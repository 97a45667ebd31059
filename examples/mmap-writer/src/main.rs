//! mmap-writer: maps the first page of an AFS file read-write and increments its first byte
//! every interval.
//!
//! ```text
//! mmap-writer PATH [--interval-ms N] [--count N]
//! ```
//!
//! Each round increments byte 0 (wrapping) through the mapping, stores it on the fileserver
//! (`sync` on the mapping), and prints the new value as two lowercase hex digits, one per line,
//! flushed at once. `--count N` stops after N rounds (default: never). An empty file is first
//! extended to one byte.

use afs_guest::{File, PAGE_SIZE};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str =
    "usage: mmap-writer PATH [--interval-ms N (default 1000)] [--count N (default: forever)]";

struct Args {
    path: String,
    interval: Duration,
    count: Option<u64>,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut path = None;
    let mut interval_ms = 1000u64;
    let mut count = None;
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
            a if a.starts_with('-') => return Err(format!("unknown option {a:?}")),
            _ if path.is_some() => return Err(format!("unexpected argument {arg:?}")),
            _ => path = Some(arg),
        }
    }
    Ok(Some(Args {
        path: path.ok_or("missing PATH")?,
        interval: Duration::from_millis(interval_ms),
        count,
    }))
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let file = File::open_rw(&args.path)?;
    let length = file.stat()?.length;
    if length == 0 {
        file.set_len(1)?;
    }
    // The first page, or as much of it as the file has (a mapping past the end of the file
    // would only show zeros).
    let mut mapping = file.map_write(0..length.clamp(1, PAGE_SIZE))?;
    let mut out = std::io::stdout().lock();
    let mut round = 0u64;
    while args.count.is_none_or(|n| round < n) {
        if round > 0 {
            std::thread::sleep(args.interval);
        }
        // Read the byte afresh each round: another client may have changed it meanwhile.
        let byte = mapping.read_volatile(0).wrapping_add(1);
        mapping[0] = byte;
        mapping.sync()?;
        writeln!(out, "{byte:02x}")?;
        out.flush()?;
        round += 1;
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("mmap-writer: {e}\n{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mmap-writer: {e}");
            ExitCode::FAILURE
        }
    }
}
