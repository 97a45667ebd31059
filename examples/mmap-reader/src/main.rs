//! mmap-reader: maps an AFS file read-only and prints its first byte every interval.
//!
//! ```text
//! mmap-reader PATH [--interval-ms N] [--count N] [--changes-only]
//! ```
//!
//! Prints the byte as two lowercase hex digits, one per line, flushed at once. `--count N`
//! stops after N printed lines (default: never); `--changes-only` prints a value only when it
//! differs from the last printed one (the first is always printed). The guest makes no host
//! call to notice a change: the host keeps the mapped page coherent with the fileserver.

use afs_guest::{File, PAGE_SIZE};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str =
    "usage: mmap-reader PATH [--interval-ms N (default 1000)] [--count N (default: forever)] [--changes-only]";

struct Args {
    path: String,
    interval: Duration,
    count: Option<u64>,
    changes_only: bool,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut path = None;
    let mut interval_ms = 1000u64;
    let mut count = None;
    let mut changes_only = false;
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
    }))
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
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
