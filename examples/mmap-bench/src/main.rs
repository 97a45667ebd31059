//! mmap-bench: times scans of a mapped AFS file, inside the guest.
//!
//! ```text
//! mmap-bench PATH [--rounds N] [--after-change GO_PATH] [--after-break-ms N]
//! ```
//!
//! Maps the whole file read-only and prints, one `key=value` per line:
//! * `cold_ns`: the first scan (every page faults in, fetched from the fileserver if the
//!   host has not cached it);
//! * `warm_mapped_ns`, `warm_plain_ns`: the medians of N (default 11) scans of the mapping
//!   and of a copy of the file in ordinary guest memory (the same scan function),
//!   alternating;
//! * with `--after-change GO_PATH`: prints `ready dv=<dv>`, waits for the file GO_PATH to
//!   change (the signal that a writer finished changing PATH), then scans the mapping
//!   once more (`after_change_ns`): the faults of that scan are the host's revalidate
//!   path, refetching what changed;
//! * with `--after-break-ms N`: prints `ready-break`, sleeps N ms (time for the host to be
//!   sent a callback break on the unchanged file), and scans once more (`after_break_ns`).
//!
//! The scan sums the bytes as u64 words, so the figures are bandwidth, not arithmetic.

use std::hint::black_box;
use std::time::{Duration, Instant};

use afs_guest::File;

fn scan(bytes: &[u8]) -> u64 {
    let (head, words, tail) = {
        // SAFETY: every bit pattern is a valid u64; align_to keeps the parts in bounds.
        unsafe { bytes.align_to::<u64>() }
    };
    let mut sum = 0u64;
    for &w in words {
        sum = sum.wrapping_add(w);
    }
    for &b in head.iter().chain(tail) {
        sum = sum.wrapping_add(b as u64);
    }
    sum
}

fn timed(bytes: &[u8]) -> (u64, u64) {
    let t = Instant::now();
    let sum = black_box(scan(black_box(bytes)));
    (t.elapsed().as_nanos() as u64, sum)
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// The value after `flag`, if the flag is there.
fn option<'a>(args: &'a [String], flag: &str) -> Result<Option<&'a str>, String> {
    match args.iter().position(|a| a == flag) {
        Some(i) => match args.get(i + 1) {
            Some(v) => Ok(Some(v)),
            None => Err(format!("{flag} needs a value")),
        },
        None => Ok(None),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).ok_or(
        "usage: mmap-bench PATH [--rounds N] [--after-change GO_PATH] [--after-break-ms N]",
    )?;
    let rounds: usize = option(&args, "--rounds")?.unwrap_or("11").parse()?;
    let go_path = option(&args, "--after-change")?;
    let after_break_ms: Option<u64> = option(&args, "--after-break-ms")?
        .map(str::parse)
        .transpose()?;
    let file = File::open(path)?;
    let len = file.stat()?.length;
    let mapping = file.map_read(0..len)?;
    let (cold, sum) = timed(&mapping);
    println!("bytes={len}");
    println!("cold_ns={cold}");
    let mut plain = Vec::with_capacity(len as usize);
    let piece = 16 << 20;
    while (plain.len() as u64) < len {
        let got = file.read_at(plain.len() as u64, piece)?;
        if got.is_empty() {
            break;
        }
        plain.extend_from_slice(&got);
    }
    if timed(&plain).1 != sum {
        return Err("the mapping and the copy differ".into());
    }
    // Alternate the two scans, so that whatever else the machine does hits both alike.
    let (mut mapped_ns, mut plain_ns) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        mapped_ns.push(timed(&mapping).0);
        plain_ns.push(timed(&plain).0);
    }
    println!("warm_mapped_ns={}", median(mapped_ns));
    println!("warm_plain_ns={}", median(plain_ns));
    drop(plain);
    if let Some(go_path) = go_path {
        // A writer may store a big file in many calls, each a new data version (afsio
        // does): the go file says when it is done.
        let go = File::open(go_path)?;
        let go_dv = go.stat()?.data_version;
        println!("ready dv={}", mapping.data_version());
        go.wait_for_change(go_dv, Duration::from_secs(300))?
            .ok_or("the go file did not change within 300 s")?;
        let (t, _) = timed(&mapping);
        println!("after_change_ns={t}");
    }
    if let Some(ms) = after_break_ms {
        println!("ready-break");
        std::thread::sleep(Duration::from_millis(ms));
        let (t, _) = timed(&mapping);
        println!("after_break_ns={t}");
    }
    Ok(())
}
