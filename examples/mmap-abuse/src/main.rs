//! mmap-abuse: a guest that tries to exhaust its host and to lose data, for the tests of
//! the host's per-guest limits and of store-on-close.
//!
//! ```text
//! mmap-abuse CASE [ARGS]
//! ```
//!
//! Limits (each prints `refused <code>: <message>` when the host refused a request, or
//! dies with the host's trap):
//! * `grow-memory`: allocates and touches 16 MiB blocks until the host stops it.
//! * `spin`: loops forever.
//! * `map-many PATH`: maps one page of PATH again and again (prints the count reached).
//! * `map-past-end PATH BYTES`: maps BYTES of PATH (a small file) and reads every page,
//!   then prints `touched N pages`.
//! * `read-huge PATH BYTES`: asks the host for BYTES by copy.
//!
//! Writes (print the result of each step, `ok` or `refused <code>: <message>`):
//! * `write-close PATH TEXT`: writes TEXT at 0 by copy and closes the file without `sync`.
//! * `write-exit PATH TEXT`: writes TEXT at 0 by copy and exits without closing or `sync`.
//! * `map-write-exit PATH TEXT`: writes TEXT at 0 through a mapping, exits without `sync`.
//! * `write-past-end PATH OFFSET`: maps the first 2 pages read-write, writes `x` at
//!   OFFSET (past the end of the file), syncs; then extends the file over OFFSET with
//!   `set-length` and syncs again.
//! * `conflict PATH TEXT [overwrite|exit]`: writes TEXT at 0 through a mapping, prints
//!   `written` and waits for a line on stdin (the test changes the file meanwhile), then
//!   syncs; with `overwrite`, then `sync-overwrite`s; with `exit`, exits without more.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use afs_guest::{Error, File};

fn report<T>(what: &str, r: Result<T, Error>) -> Option<T> {
    let mut out = std::io::stdout().lock();
    match r {
        Ok(v) => {
            let _ = writeln!(out, "{what}: ok");
            Some(v)
        }
        Err(e) => {
            let _ = writeln!(out, "{what}: refused {:?}: {}", e.code(), e.message());
            None
        }
    }
}

fn arg(args: &[String], i: usize) -> &str {
    args.get(i).map(String::as_str).unwrap_or_else(|| {
        eprintln!("mmap-abuse: missing argument {i}");
        std::process::exit(2)
    })
}

fn num(s: &str) -> u64 {
    s.parse().unwrap_or_else(|_| {
        eprintln!("mmap-abuse: {s:?} is not a number");
        std::process::exit(2)
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match arg(&args, 1) {
        "grow-memory" => {
            let mut blocks: Vec<Vec<u8>> = Vec::new();
            loop {
                let mut b = vec![0u8; 16 << 20];
                for i in (0..b.len()).step_by(4096) {
                    b[i] = 1;
                }
                blocks.push(b);
                println!("{} MiB", blocks.len() * 16);
            }
        }
        "spin" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "map-many" => {
            let file = File::open(arg(&args, 2)).expect("open");
            let mut held = Vec::new();
            loop {
                match file.map_read(0..4096) {
                    Ok(m) => held.push(m),
                    Err(e) => {
                        println!(
                            "refused {:?} after {}: {}",
                            e.code(),
                            held.len(),
                            e.message()
                        );
                        return ExitCode::SUCCESS;
                    }
                }
            }
        }
        "map-past-end" => {
            let file = File::open(arg(&args, 2)).expect("open");
            let bytes = num(arg(&args, 3));
            let Some(m) = report("map", file.map_read(0..bytes)) else {
                return ExitCode::SUCCESS;
            };
            let mut sum = 0u64;
            for i in (0..m.len()).step_by(4096) {
                sum += u64::from(m.read_volatile(i));
            }
            println!("touched {} pages (sum {sum})", m.len().div_ceil(4096));
        }
        "read-huge" => {
            let file = File::open(arg(&args, 2)).expect("open");
            let bytes = num(arg(&args, 3));
            if let Some(v) = report("read", file.read_at(0, bytes)) {
                println!("read {} bytes", v.len());
            }
        }
        "write-close" | "write-exit" => {
            let file = File::open_rw(arg(&args, 2)).expect("open");
            report("write", file.write_at(0, arg(&args, 3).as_bytes()));
            if args[1] == "write-exit" {
                std::process::exit(0);
            }
            drop(file);
        }
        "map-write-exit" => {
            let file = File::open_rw(arg(&args, 2)).expect("open");
            let text = arg(&args, 3).as_bytes();
            let mut m = file.map_write(0..text.len() as u64).expect("map");
            m[..text.len()].copy_from_slice(text);
            std::process::exit(0);
        }
        "write-past-end" => {
            let file = File::open_rw(arg(&args, 2)).expect("open");
            let offset = num(arg(&args, 3));
            let mut m = file.map_write(0..8192).expect("map");
            m[offset as usize] = b'x';
            report("sync", file.sync());
            report("set-length", file.set_len(offset + 1));
            report("sync", file.sync());
        }
        "conflict" => {
            let file = File::open_rw(arg(&args, 2)).expect("open");
            let text = arg(&args, 3).as_bytes();
            let mut m = file.map_write(0..text.len() as u64).expect("map");
            m[..text.len()].copy_from_slice(text);
            println!("written");
            let _ = std::io::stdout().flush();
            let mut line = String::new();
            let _ = std::io::stdin().lock().read_line(&mut line);
            let then = args.get(4).map(String::as_str);
            if then == Some("exit") {
                std::process::exit(0);
            }
            report("sync", m.sync());
            if then == Some("overwrite") {
                report("sync-overwrite", file.sync_overwrite());
            }
        }
        other => {
            eprintln!("mmap-abuse: unknown case {other:?}");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}
