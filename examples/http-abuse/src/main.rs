//! http-abuse: a `wasi:http` handler that fails the way handlers do, or holds mappings, on
//! request, so that tests can check what `afs-wasm serve` answers and that it goes on
//! serving, and benchmarks can hold many mappings in many instances:
//!
//! * `GET /ok`: 200 `ok`.
//! * `GET /trap`: panics (a trap, `unreachable`).
//! * `GET /spin`: loops forever (until the time limit, `-W timeout`).
//! * `GET /grow`: allocates until the memory limit (`-W max-memory-size`) refuses.
//! * `GET /stat/PATH`: opens the AFS file `/PATH` and answers its length (the host then
//!   holds its status, but none of its pages).
//! * `GET /map/PATH`: maps the AFS file `/PATH` and answers its first byte as two hex
//!   digits (a fault the host cannot serve traps). Errors of open and map are answered
//!   with a 502 naming them, as a handler would.
//! * `GET /watch/PATH`: maps the AFS file `/PATH`, reads its first byte, and reads it
//!   again every 10 ms until it changes (or 10 s pass): answers both, in hex. A change
//!   made by someone else meanwhile reaches this instance through its mapping.
//! * `GET /silent`: returns without setting a response.
//! * `GET /hold/PATH?ms=N`: maps all of the AFS file `/PATH`, reads a byte of every page,
//!   keeps the mapping N ms, and answers the bytes' sum. `GET /sleep?ms=N`: the same
//!   instance, without the mapping.
//! * `GET /rounds/DIR?n=N&control=PATH`: maps `DIR/f0` .. `DIR/f{N-1}` (a page each) and
//!   the control file, then, each time the control file's first byte changes, reads the
//!   first byte of every file again, until that byte is `z`. Answers a line per round:
//!   the control byte, then each distinct first byte seen, with how many files showed it.

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Handler;

impl Guest for Handler {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        match path.as_str() {
            "/ok" => send(out, 200, b"ok\n"),
            "/trap" => panic!("asked to trap"),
            "/spin" => {
                let mut x = 0u64;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "/grow" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 16 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "/silent" => drop(out),
            p if p.starts_with("/stat/") => match stat(&p["/stat".len()..]) {
                Ok(len) => send(out, 200, format!("{len}\n").as_bytes()),
                Err(e) => send(out, 502, format!("{e}\n").as_bytes()),
            },
            p if p.starts_with("/map/") => match first_byte(&p["/map".len()..]) {
                Ok(b) => send(out, 200, format!("{b:02x}\n").as_bytes()),
                Err(e) => send(out, 502, format!("{e}\n").as_bytes()),
            },
            p if p.starts_with("/watch/") => match watch(&p["/watch".len()..]) {
                Ok((was, now)) => send(out, 200, format!("{was:02x} {now:02x}\n").as_bytes()),
                Err(e) => send(out, 502, format!("{e}\n").as_bytes()),
            },
            p if p.starts_with("/hold/") => {
                let (path, query) = split_query(&p["/hold".len()..]);
                match hold(path, param(query, "ms")) {
                    Ok(sum) => send(out, 200, format!("{sum:x}\n").as_bytes()),
                    Err(e) => send(out, 502, format!("{e}\n").as_bytes()),
                }
            }
            p if p.starts_with("/sleep") => {
                let ms = param(split_query(p).1, "ms");
                std::thread::sleep(std::time::Duration::from_millis(ms));
                send(out, 200, b"ok\n")
            }
            p if p.starts_with("/rounds/") => {
                let (dir, query) = split_query(&p["/rounds".len()..]);
                let control = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("control="))
                    .unwrap_or_default();
                match rounds(dir, param(query, "n"), control) {
                    Ok(report) => send(out, 200, report.as_bytes()),
                    Err(e) => send(out, 502, format!("{e}\n").as_bytes()),
                }
            }
            _ => send(out, 404, b"no such route\n"),
        }
    }
}

wasip2::http::proxy::export!(Handler);

fn stat(path: &str) -> afs_guest::Result<u64> {
    Ok(afs_guest::File::open(path)?.stat()?.length)
}

fn first_byte(path: &str) -> afs_guest::Result<u8> {
    let mapping = afs_guest::File::open(path)?.map_read(0..1)?;
    Ok(mapping[0])
}

fn watch(path: &str) -> afs_guest::Result<(u8, u8)> {
    let mapping = afs_guest::File::open(path)?.map_read(0..1)?;
    let was = mapping.read_volatile(0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = mapping.read_volatile(0);
        if now != was || std::time::Instant::now() > deadline {
            return Ok((was, now));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// `(path, query)` of a request target.
fn split_query(target: &str) -> (&str, &str) {
    target.split_once('?').unwrap_or((target, ""))
}

/// The numeric query parameter `name` (0 if absent or not a number).
fn param(query: &str, name: &str) -> u64 {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

fn hold(path: &str, ms: u64) -> afs_guest::Result<u64> {
    let file = afs_guest::File::open(path)?;
    let len = file.stat()?.length;
    let mapping = file.map_read(0..len)?;
    let sum = (0..mapping.len())
        .step_by(4096)
        .map(|i| u64::from(mapping.read_volatile(i)))
        .sum();
    std::thread::sleep(std::time::Duration::from_millis(ms));
    Ok(sum)
}

fn rounds(dir: &str, n: u64, control: &str) -> afs_guest::Result<String> {
    let control = afs_guest::File::open(control)?.map_read(0..1)?;
    let files = (0..n)
        .map(|i| afs_guest::File::open(&format!("{dir}/f{i}"))?.map_read(0..1))
        .collect::<afs_guest::Result<Vec<_>>>()?;
    let mut report = String::new();
    let mut last = control.read_volatile(0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    loop {
        let mut seen = std::collections::BTreeMap::<u8, u32>::new();
        for f in &files {
            *seen.entry(f.read_volatile(0)).or_default() += 1;
        }
        report.push(last as char);
        for (byte, count) in seen {
            report.push_str(&format!(" {}:{count}", byte as char));
        }
        report.push('\n');
        loop {
            if std::time::Instant::now() > deadline {
                return Ok(report + "timed out\n");
            }
            let now = control.read_volatile(0);
            if now != last {
                last = now;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        if last == b'z' {
            return Ok(report);
        }
    }
}

fn send(out: ResponseOutparam, status: u16, body: &[u8]) {
    let response = OutgoingResponse::new(Fields::new());
    let _ = response.set_status_code(status);
    let outgoing = response.body().expect("the body, taken once");
    ResponseOutparam::set(out, Ok(response));
    let stream = outgoing.write().expect("the body's stream, taken once");
    let _ = stream.blocking_write_and_flush(body);
    drop(stream);
    let _ = OutgoingBody::finish(outgoing, None);
}

fn main() {}
