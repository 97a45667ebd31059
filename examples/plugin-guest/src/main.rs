//! plugin-guest: a small "plugin" for afs-wasm's plugin example.
//!
//! ```text
//! plugin-guest PATH [--watch N]
//! plugin-guest PATH --write-byte OFFSET VALUE
//! ```
//!
//! The first form maps the whole file read-only and prints one line
//! `bytes=<length> sum=<wrapping u64 sum of the bytes> dv=<data version>`; with `--watch N` it
//! then waits N times for the file to change (10 s each at most: a timeout is an error) and
//! prints the same line after each change, summing through the same mapping when the length is
//! unchanged (the host refreshed its pages) and mapping the file anew otherwise.
//!
//! The second form maps the page holding byte OFFSET read-write (extending the file to
//! OFFSET + 1 bytes if it is shorter), sets that byte to VALUE, stores it (`sync`), and prints
//! `wrote <OFFSET>=<VALUE> dv=<data version after the store>` (decimal numbers). OFFSET and
//! VALUE are decimal or `0x` hexadecimal.

use afs_guest::{page_range, File, Mapping};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str =
    "usage: plugin-guest PATH [--watch N]\n       plugin-guest PATH --write-byte OFFSET VALUE";

/// How long one `--watch` round waits for a change.
const WATCH_TIMEOUT: Duration = Duration::from_secs(10);

type BoxError = Box<dyn std::error::Error>;

enum Mode {
    Sum { watch: u64 },
    WriteByte { offset: u64, value: u8 },
}

fn parse_number(name: &str, v: &str) -> Result<u64, String> {
    let parsed = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    parsed.map_err(|_| format!("{name}: not a number: {v:?}"))
}

fn parse_args() -> Result<Option<(String, Mode)>, String> {
    let mut path = None;
    let mut watch = None;
    let mut write = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--watch" => watch = Some(parse_number("--watch", &value("--watch")?)?),
            "--write-byte" => {
                let offset = parse_number("--write-byte OFFSET", &value("--write-byte")?)?;
                let v = value("--write-byte VALUE")?;
                let value = u8::try_from(parse_number("--write-byte VALUE", &v)?)
                    .map_err(|_| format!("--write-byte VALUE: {v:?} is not a byte (0-255)"))?;
                write = Some((offset, value));
            }
            a if a.starts_with('-') => return Err(format!("unknown option {a:?}")),
            _ if path.is_some() => return Err(format!("unexpected argument {arg:?}")),
            _ => path = Some(arg),
        }
    }
    let path = path.ok_or("missing PATH")?;
    let mode = match (watch, write) {
        (Some(_), Some(_)) => return Err("--watch and --write-byte exclude each other".into()),
        (watch, None) => Mode::Sum {
            watch: watch.unwrap_or(0),
        },
        (None, Some((offset, value))) => Mode::WriteByte { offset, value },
    };
    Ok(Some((path, mode)))
}

fn print_line(out: &mut impl Write, line: std::fmt::Arguments) -> Result<(), BoxError> {
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

fn sum(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0u64, |s, &b| s.wrapping_add(u64::from(b)))
}

/// The whole file mapped read-only, or `None` for an empty file (mappings are never empty).
fn map_whole(file: &File) -> Result<(Option<Mapping>, u64), BoxError> {
    let stat = file.stat()?;
    if stat.length == 0 {
        return Ok((None, stat.data_version));
    }
    let mapping = file.map_read(0..stat.length)?;
    let dv = mapping.data_version();
    Ok((Some(mapping), dv))
}

fn summary(mapping: &Option<Mapping>) -> (u64, u64) {
    match mapping {
        Some(m) => (m.len() as u64, sum(m)),
        None => (0, 0),
    }
}

fn run_sum(path: &str, watch: u64) -> Result<(), BoxError> {
    let file = File::open(path)?;
    let mut out = std::io::stdout().lock();
    let (mut mapping, mut dv) = map_whole(&file)?;
    let (bytes, total) = summary(&mapping);
    print_line(&mut out, format_args!("bytes={bytes} sum={total} dv={dv}"))?;
    for _ in 0..watch {
        let Some(new_dv) = file.wait_for_change(dv, WATCH_TIMEOUT)? else {
            return Err(format!("{path}: no change within {WATCH_TIMEOUT:?}").into());
        };
        let length = file.stat()?.length;
        match &mapping {
            // Same length: read the new bytes through the same mapping. Revalidating first
            // makes the printed data version the one the summed bytes belong to.
            Some(m) if m.len() as u64 == length => dv = m.revalidate_now()?,
            _ => {
                // Unmap the old mapping before mapping again (one region at a time).
                drop(mapping.take());
                (mapping, dv) = map_whole(&file)?;
            }
        }
        dv = dv.max(new_dv);
        let (bytes, total) = summary(&mapping);
        print_line(&mut out, format_args!("bytes={bytes} sum={total} dv={dv}"))?;
    }
    Ok(())
}

fn run_write_byte(path: &str, offset: u64, value: u8) -> Result<(), BoxError> {
    let file = File::open_rw(path)?;
    let end = offset.checked_add(1).ok_or("OFFSET too large")?;
    if file.stat()?.length < end {
        file.set_len(end)?;
    }
    let range = page_range(offset..end);
    let mut mapping = file.map_write(range.start..end)?;
    mapping[(offset - range.start) as usize] = value;
    mapping.sync()?;
    drop(mapping);
    let dv = file.stat()?.data_version;
    print_line(
        &mut std::io::stdout().lock(),
        format_args!("wrote {offset}={value} dv={dv}"),
    )
}

fn main() -> ExitCode {
    let (path, mode) = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("plugin-guest: {e}\n{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    let result = match mode {
        Mode::Sum { watch } => run_sum(&path, watch),
        Mode::WriteByte { offset, value } => run_write_byte(&path, offset, value),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("plugin-guest: {e}");
            ExitCode::FAILURE
        }
    }
}
