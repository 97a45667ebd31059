//! fs-suite: a guest that exercises `std::fs` on a preopened directory and prints a
//! deterministic transcript, for the tests that compare `wasi:filesystem` over AFS with stock
//! wasmtime-wasi on a local directory. Plain `std`: builds for wasm32-wasip2 and wasm32-wasip1.
//!
//! ```text
//! fs-suite SCENARIO DIR [ARGS]
//! ```
//!
//! DIR is the guest path of a preopened directory (or a path under one). Every step prints one
//! line `STEP: ok [RESULT]` or `STEP: err <ErrorKind:?> <raw os error or ->`; a step whose
//! outcome contradicts what it must do (a write that must work failed, or an exclusive create
//! of an existing file worked) ends with ` UNEXPECTED` and makes the exit code 1. Paths in the
//! step names are relative to DIR (`DIR` stands for DIR itself). The transcript never holds
//! inode or device numbers, access times, sub-second times or directory sizes. It does not
//! depend on DIR itself except through `canonicalize` in `all` (wasi-libc resolves it against
//! the preopens' guest paths): compare runs made with the same guest path.
//!
//! Scenarios:
//! * `all DIR`: every std::fs operation, on an EMPTY DIR (refuses otherwise). Ends with a dump
//!   of the tree it leaves behind. Creates symlinks with the (deprecated but stable)
//!   `std::fs::soft_link`; hard links only within one directory.
//! * `bad DIR`: hostile paths (`..` escapes, absolute paths, over-long names, symlinks leading
//!   out). Expects from the harness: a directory `DIR/sub`, and symlinks `DIR/link-out` ->
//!   `../..`, `DIR/link-abs` -> `/etc`, `DIR/link-in` -> `sub` (prints `setup missing NAME`
//!   for each one that is absent, and goes on).
//! * `ro DIR`: DIR is preopened read-only and holds a file `ro.txt` (any small content): every
//!   kind of write must fail, reads must work.
//! * `xlink DIR`: a hard link across two directories (AFS refuses it, POSIX allows it), and one
//!   within a directory for comparison. Kept out of `all` on purpose.
//! * `read FILE`: reads FILE with `std::fs::read`, prints `len N sum S` (sum of the bytes mod
//!   2^32); the read's time goes to stderr as `read-ms MS`.
//! * `reread FILE N`: reads FILE N times, printing `I len N sum S` each time; stderr
//!   `read-ms I MS` for each.
//! * `watch FILE`: opens FILE once; for each line on stdin, seeks to 0, reads the whole file
//!   through that handle and prints it (as UTF-8, lossy; a newline added if it does not end
//!   with one) followed by a line `--`; exits at EOF on stdin.
//! * `watchdir DIR`: for each line on stdin, prints the sorted names in DIR and a line `--`.
//! * `stat-many DIR N [PASSES]`: opens and stats `DIR/f0` .. `DIR/f{N-1}` PASSES times
//!   (default 1; creates nothing), prints `files N bytes TOTAL`; stderr
//!   `stat-many-ms PASS MS` per pass.
//!
//! Not covered, being unstable on WASI targets in Rust 1.95: `std::os::wasi::fs::FileExt`
//! (`read_at`/`write_at`), `std::os::wasi::fs::symlink_path` (`std::fs::soft_link` does the
//! same), `MetadataExt` (link counts), and non-UTF-8 names (`std::os::wasi::ffi` is unstable on
//! wasm32-wasip2).

use std::fs::{self, File, FileTimes, Metadata, OpenOptions};
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What a step must do.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    Ok,
    Err,
    Any,
}

struct Suite {
    dir: PathBuf,
    failed: bool,
}

impl Suite {
    fn new(dir: &str) -> Self {
        Suite {
            dir: PathBuf::from(dir),
            failed: false,
        }
    }

    /// DIR/rel, keeping rel exactly as written (a trailing slash stays).
    fn p(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.dir.clone()
        } else {
            self.dir.join(rel)
        }
    }

    /// Prints the outcome of a step; returns its value when it worked.
    fn step<T>(
        &mut self,
        want: Want,
        name: &str,
        r: io::Result<T>,
        detail: impl FnOnce(&T) -> String,
    ) -> Option<T> {
        let (text, worked) = match &r {
            Ok(v) => {
                let d = detail(v);
                (
                    if d.is_empty() {
                        "ok".to_string()
                    } else {
                        format!("ok {d}")
                    },
                    true,
                )
            }
            Err(e) => (err_str(e), false),
        };
        let bad = match want {
            Want::Ok => !worked,
            Want::Err => worked,
            Want::Any => false,
        };
        if bad {
            self.failed = true;
        }
        println!("{name}: {text}{}", if bad { " UNEXPECTED" } else { "" });
        r.ok()
    }

    /// A step that must work.
    fn ok<T>(&mut self, name: &str, r: io::Result<T>) -> Option<T> {
        self.step(Want::Ok, name, r, |_| String::new())
    }

    /// A step that must work, printing a result.
    fn okd<T>(&mut self, name: &str, r: io::Result<T>, d: impl FnOnce(&T) -> String) -> Option<T> {
        self.step(Want::Ok, name, r, d)
    }

    /// A step that must fail.
    fn fails<T>(&mut self, name: &str, r: io::Result<T>) -> Option<T> {
        self.step(Want::Err, name, r, |_| String::new())
    }

    /// A step whose outcome is only reported.
    fn any<T>(&mut self, name: &str, r: io::Result<T>, d: impl FnOnce(&T) -> String) -> Option<T> {
        self.step(Want::Any, name, r, d)
    }

    /// A check on values already obtained: `ok DETAIL` or `MISMATCH DETAIL`.
    fn check(&mut self, name: &str, good: bool, detail: String) {
        if !good {
            self.failed = true;
        }
        let sep = if detail.is_empty() { "" } else { " " };
        println!(
            "{name}: {}{sep}{detail}",
            if good { "ok" } else { "MISMATCH" }
        );
    }

    /// Reads DIR/rel whole and prints it (short) or its digest, checking it against `want`.
    fn expect_content(&mut self, rel: &str, want: &[u8]) {
        let name = format!("read {rel}");
        if let Some(data) = self.okd(&name, fs::read(self.p(rel)), |d| show(d)) {
            if data != want {
                self.check(
                    &format!("content {rel}"),
                    false,
                    format!("expected {}", show(want)),
                );
            }
        }
    }

    /// Writes DIR/rel (created or truncated) with `data`; must work.
    fn put(&mut self, rel: &str, data: &[u8]) {
        self.ok(&format!("fs::write {rel}"), fs::write(self.p(rel), data));
    }

    fn exit_code(&self) -> ExitCode {
        if self.failed {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        }
    }
}

fn err_str(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(c) => format!("err {:?} {c}", e.kind()),
        None => format!("err {:?} -", e.kind()),
    }
}

/// Sum of the bytes mod 2^32.
fn sum(b: &[u8]) -> u32 {
    b.iter().fold(0u32, |a, &x| a.wrapping_add(x as u32))
}

/// FNV-1a 32: order-sensitive, unlike `sum`.
fn fnv(b: &[u8]) -> u32 {
    b.iter().fold(0x811c_9dc5u32, |h, &x| {
        (h ^ x as u32).wrapping_mul(0x0100_0193)
    })
}

fn digest(b: &[u8]) -> String {
    format!("len={} sum={} fnv={:08x}", b.len(), sum(b), fnv(b))
}

/// Short contents as an escaped string, longer ones as a digest.
fn show(b: &[u8]) -> String {
    if b.len() <= 64 {
        format!("\"{}\"", b.escape_ascii())
    } else {
        digest(b)
    }
}

fn kind(ft: fs::FileType) -> &'static str {
    if ft.is_symlink() {
        "symlink"
    } else if ft.is_dir() {
        "dir"
    } else if ft.is_file() {
        "file"
    } else {
        "other"
    }
}

/// Metadata without anything that varies between file systems (no directory size, no
/// inode, no times).
fn md(m: &Metadata) -> String {
    let mut s = format!(
        "type={} is_file={} is_dir={} is_symlink={}",
        kind(m.file_type()),
        m.is_file(),
        m.is_dir(),
        m.is_symlink()
    );
    if !m.is_dir() {
        s.push_str(&format!(" len={}", m.len()));
    }
    s
}

fn secs(t: SystemTime) -> String {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs().to_string(),
        Err(e) => format!("-{}", e.duration().as_secs()),
    }
}

/// The names in a directory in the order read_dir gives them.
fn raw_names(dir: &Path) -> io::Result<Vec<String>> {
    let mut v = Vec::new();
    for e in fs::read_dir(dir)? {
        v.push(e?.file_name().to_string_lossy().into_owned());
    }
    Ok(v)
}

fn sorted_names(dir: &Path) -> io::Result<Vec<String>> {
    let mut v = raw_names(dir)?;
    v.sort();
    Ok(v)
}

/// Sorted entries: `name:type[:len]` from the DirEntry (file type) and its metadata.
fn listing(dir: &Path) -> io::Result<Vec<String>> {
    let mut v = Vec::new();
    for e in fs::read_dir(dir)? {
        let e = e?;
        let ft = e.file_type()?;
        let m = e.metadata()?;
        let mut s = format!("{}:{}", e.file_name().to_string_lossy(), kind(ft));
        if kind(m.file_type()) != kind(ft) {
            s.push_str(&format!("(metadata:{})", kind(m.file_type())));
        }
        if ft.is_file() {
            s.push_str(&format!(":{}", m.len()));
        }
        v.push(s);
    }
    v.sort();
    Ok(v)
}

/// Reads through an open handle from its current position to the end.
fn read_rest(f: &mut File) -> io::Result<Vec<u8>> {
    let mut v = Vec::new();
    f.read_to_end(&mut v)?;
    Ok(v)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let usage = || {
        eprintln!(
            "usage: fs-suite all|bad|ro|xlink DIR | read FILE | reread FILE N | watch FILE | \
             watchdir DIR | stat-many DIR N [PASSES] | rename FROM TO"
        );
        ExitCode::from(2)
    };
    if args.len() < 3 {
        return usage();
    }
    let num = |i: usize| -> Option<u64> { args.get(i).and_then(|s| s.parse().ok()) };
    let target = args[2].as_str();
    match args[1].as_str() {
        "all" => {
            let mut s = Suite::new(target);
            all(&mut s);
            s.exit_code()
        }
        "bad" => {
            let mut s = Suite::new(target);
            bad(&mut s, target);
            s.exit_code()
        }
        "ro" => {
            let mut s = Suite::new(target);
            ro(&mut s);
            s.exit_code()
        }
        "xlink" => {
            let mut s = Suite::new(target);
            xlink(&mut s);
            s.exit_code()
        }
        "read" => read(target),
        "reread" => match num(3) {
            Some(n) => reread(target, n),
            None => usage(),
        },
        "rename" => match args.get(3) {
            Some(to) => match fs::rename(target, to) {
                Ok(()) => {
                    println!("rename: ok");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    println!(
                        "rename: err {:?} {}",
                        e.kind(),
                        e.raw_os_error().unwrap_or(-1)
                    );
                    ExitCode::FAILURE
                }
            },
            None => usage(),
        },
        "watch" => watch(target),
        "watchdir" => watchdir(target),
        "stat-many" => match num(3) {
            Some(n) => stat_many(target, n, num(4).unwrap_or(1)),
            None => usage(),
        },
        _ => usage(),
    }
}

// ---------------------------------------------------------------------------------------
// all

fn all(s: &mut Suite) {
    match raw_names(&s.dir) {
        Ok(v) if v.is_empty() => println!("start: ok empty"),
        Ok(v) => {
            println!("start: DIR is not empty ({} entries) UNEXPECTED", v.len());
            s.failed = true;
            return;
        }
        Err(e) => {
            println!("start: read_dir DIR: {} UNEXPECTED", err_str(&e));
            s.failed = true;
            return;
        }
    }
    dirs(s);
    create_write_read(s);
    truncate_and_options(s);
    append(s);
    offsets(s);
    set_len(s);
    sync_and_metadata(s);
    times(s);
    read_dir(s);
    many(s);
    rename(s);
    remove(s);
    hard_link(s);
    symlinks(s);
    copy(s);
    exists_and_canonicalize(s);
    wrong_kinds(s);
    big(s);
    tree(s);
}

fn dirs(s: &mut Suite) {
    s.ok("create_dir d", fs::create_dir(s.p("d")));
    s.fails("create_dir d (exists)", fs::create_dir(s.p("d")));
    s.fails("create_dir nodir/x", fs::create_dir(s.p("nodir/x")));
    s.ok("create_dir_all a/b/c", fs::create_dir_all(s.p("a/b/c")));
    s.ok(
        "create_dir_all a/b/c (exists)",
        fs::create_dir_all(s.p("a/b/c")),
    );
    s.okd("metadata a/b/c", fs::metadata(s.p("a/b/c")), md);
    s.okd("metadata d/", fs::metadata(s.p("d/")), md);
    s.okd("metadata d/.", fs::metadata(s.p("d/.")), md);
    s.okd("metadata a/b/..", fs::metadata(s.p("a/b/..")), md);
    s.okd("read_dir d (empty)", sorted_names(&s.p("d")), |v| {
        format!("{v:?}")
    });
}

fn create_write_read(s: &mut Suite) {
    if let Some(mut f) = s.ok("File::create f1.txt", File::create(s.p("f1.txt"))) {
        s.ok("write_all f1.txt", f.write_all(b"hello world\n"));
        s.okd("File::metadata f1.txt", f.metadata(), md);
        s.fails("read on write-only handle f1.txt", f.read(&mut [0u8; 4]));
    }
    s.okd("metadata f1.txt", fs::metadata(s.p("f1.txt")), md);
    s.okd(
        "symlink_metadata f1.txt",
        fs::symlink_metadata(s.p("f1.txt")),
        md,
    );
    s.okd(
        "read_to_string f1.txt",
        fs::read_to_string(s.p("f1.txt")),
        |t| format!("{t:?}"),
    );
    if let Some(mut f) = s.ok("File::open f1.txt", File::open(s.p("f1.txt"))) {
        s.fails("write on read-only handle f1.txt", f.write(b"x"));
        s.okd("read_rest f1.txt", read_rest(&mut f), |d| show(d));
        s.okd("read at EOF f1.txt", f.read(&mut [0u8; 4]), |n| {
            format!("n={n}")
        });
    }
    s.expect_content("f1.txt", b"hello world\n");

    if let Some(f) = s.ok("File::create empty", File::create(s.p("empty"))) {
        s.okd("File::metadata empty", f.metadata(), md);
    }
    s.expect_content("empty", b"");
    s.put("unicode-ünï名前 x.txt", "ünïcødé".as_bytes());
    s.expect_content("unicode-ünï名前 x.txt", "ünïcødé".as_bytes());

    let opts = || {
        let mut o = OpenOptions::new();
        o.write(true).create_new(true);
        o
    };
    if let Some(mut f) = s.ok("create_new excl.txt", opts().open(s.p("excl.txt"))) {
        s.ok("write_all excl.txt", f.write_all(b"first"));
    }
    s.fails("create_new excl.txt (exists)", opts().open(s.p("excl.txt")));
    s.fails("create_new d (a dir)", opts().open(s.p("d")));
    s.expect_content("excl.txt", b"first");
}

// The point is to see how the nonsensical combinations fail.
#[allow(clippy::nonsensical_open_options)]
fn truncate_and_options(s: &mut Suite) {
    s.put("t.txt", b"abcdef");
    let w = s.ok(
        "open write t.txt",
        OpenOptions::new().write(true).open(s.p("t.txt")),
    );
    if let Some(mut f) = w {
        s.ok("write_all XY t.txt", f.write_all(b"XY"));
    }
    s.expect_content("t.txt", b"XYcdef");
    let w = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(s.p("t.txt"));
    if let Some(mut f) = s.ok("open write+truncate t.txt", w) {
        s.ok("write_all ab t.txt", f.write_all(b"ab"));
    }
    s.expect_content("t.txt", b"ab");
    if let Some(f) = s.ok("File::create t.txt (truncates)", File::create(s.p("t.txt"))) {
        s.okd("File::metadata t.txt", f.metadata(), md);
    }
    s.expect_content("t.txt", b"");
    s.put("t.txt", b"keep");
    let o = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(s.p("t.txt"));
    s.ok("open write+create t.txt (exists, no truncate)", o);
    s.expect_content("t.txt", b"keep");
    let o = OpenOptions::new().read(true).write(true).open(s.p("t.txt"));
    if let Some(mut f) = s.ok("open read+write t.txt", o) {
        s.okd("read_rest t.txt", read_rest(&mut f), |d| show(d));
        s.ok("write_all ! t.txt", f.write_all(b"!"));
        s.okd("seek Start(0) t.txt", f.seek(SeekFrom::Start(0)), |p| {
            format!("pos={p}")
        });
        s.okd("read_rest t.txt", read_rest(&mut f), |d| show(d));
    }
    s.fails(
        "open read+truncate t.txt (no write)",
        OpenOptions::new()
            .read(true)
            .truncate(true)
            .open(s.p("t.txt")),
    );
    let o = OpenOptions::new()
        .create(true)
        .truncate(false)
        .open(s.p("t.txt"));
    s.fails("open create without write", o);
    s.fails(
        "open write missing (no create)",
        OpenOptions::new().write(true).open(s.p("missing")),
    );
    s.fails("open nothing t.txt", OpenOptions::new().open(s.p("t.txt")));
    s.fails("File::open missing", File::open(s.p("missing")));
    s.fails("File::open nodir/missing", File::open(s.p("nodir/missing")));
}

fn append(s: &mut Suite) {
    let o = || {
        let mut o = OpenOptions::new();
        o.append(true);
        o
    };
    if let Some(mut f) = s.ok(
        "open append+create app.txt",
        o().create(true).open(s.p("app.txt")),
    ) {
        s.ok("write_all one app.txt", f.write_all(b"one\n"));
    }
    s.expect_content("app.txt", b"one\n");
    if let Some(mut f) = s.ok("open append app.txt", o().open(s.p("app.txt"))) {
        s.ok("write_all two app.txt", f.write_all(b"two\n"));
        s.okd("seek Start(0) app.txt", f.seek(SeekFrom::Start(0)), |p| {
            format!("pos={p}")
        });
        s.ok(
            "write_all three app.txt (after seek 0)",
            f.write_all(b"three\n"),
        );
    }
    s.expect_content("app.txt", b"one\ntwo\nthree\n");
    if let Some(mut f) = s.ok(
        "open read+append app.txt",
        o().read(true).open(s.p("app.txt")),
    ) {
        s.ok("write_all four app.txt", f.write_all(b"four\n"));
        s.okd("seek Start(4) app.txt", f.seek(SeekFrom::Start(4)), |p| {
            format!("pos={p}")
        });
        s.okd("read_rest app.txt", read_rest(&mut f), |d| show(d));
    }
    s.expect_content("app.txt", b"one\ntwo\nthree\nfour\n");
    let t = o().truncate(true).open(s.p("app.txt"));
    s.fails("open append+truncate app.txt", t);
}

fn offsets(s: &mut Suite) {
    s.put("off.bin", b"0123456789");
    let o = OpenOptions::new()
        .read(true)
        .write(true)
        .open(s.p("off.bin"));
    let Some(mut f) = s.ok("open read+write off.bin", o) else {
        return;
    };
    let pos = |p: &u64| format!("pos={p}");
    let mut buf = [0u8; 4];
    s.okd("seek Start(3)", f.seek(SeekFrom::Start(3)), pos);
    s.okd("read_exact 4", f.read_exact(&mut buf).map(|_| buf), |b| {
        show(b)
    });
    s.okd("seek Current(-2)", f.seek(SeekFrom::Current(-2)), pos);
    let mut b2 = [0u8; 2];
    s.okd("read_exact 2", f.read_exact(&mut b2).map(|_| b2), |b| {
        show(b)
    });
    s.okd("stream_position", f.stream_position(), pos);
    s.okd("seek End(-3)", f.seek(SeekFrom::End(-3)), pos);
    s.okd("read_rest", read_rest(&mut f), |d| show(d));
    s.okd("seek End(0)", f.seek(SeekFrom::End(0)), pos);
    s.okd("read at end", f.read(&mut buf), |n| format!("n={n}"));
    s.okd("seek Start(100)", f.seek(SeekFrom::Start(100)), pos);
    s.okd("read past end", f.read(&mut buf), |n| format!("n={n}"));
    s.fails("seek Current(-1000)", f.seek(SeekFrom::Current(-1000)));
    s.okd(
        "stream_position after failed seek",
        f.stream_position(),
        pos,
    );
    s.okd(
        "metadata len unchanged",
        f.metadata().map(|m| m.len()),
        |l| format!("len={l}"),
    );
    // Writes inside and past the end (a hole).
    s.okd("seek Start(2)", f.seek(SeekFrom::Start(2)), pos);
    s.ok("write_all ab at 2", f.write_all(b"ab"));
    s.okd("stream_position after write", f.stream_position(), pos);
    s.okd("seek Start(15)", f.seek(SeekFrom::Start(15)), pos);
    s.ok("write_all zz at 15", f.write_all(b"zz"));
    s.okd("File::metadata off.bin", f.metadata(), md);
    s.okd("seek Start(0)", f.seek(SeekFrom::Start(0)), pos);
    s.okd("read_rest", read_rest(&mut f), |d| show(d));
    s.okd("seek Start(70000)", f.seek(SeekFrom::Start(70000)), pos);
    s.ok("write_all end at 70000", f.write_all(b"end"));
    s.okd("seek Start(69999)", f.seek(SeekFrom::Start(69999)), pos);
    s.okd("read_rest", read_rest(&mut f), |d| show(d));
    drop(f);
    if let Some(d) = s.okd("fs::read off.bin", fs::read(s.p("off.bin")), |d| digest(d)) {
        let hole_ok = d.len() == 70003 && d[17..70000].iter().all(|&b| b == 0);
        s.check("hole reads as zeros", hole_ok, format!("len={}", d.len()));
        s.check(
            "head",
            d.get(..17) == Some(b"01ab456789\0\0\0\0\0zz"),
            show(&d[..17.min(d.len())]),
        );
    }
    // std::os::wasi::fs::FileExt (read_at/write_at) is unstable (wasi_ext): not covered.
}

fn set_len(s: &mut Suite) {
    s.put("sl.bin", b"0123456789");
    if let Some(f) = s.ok(
        "open write sl.bin",
        OpenOptions::new().write(true).open(s.p("sl.bin")),
    ) {
        s.ok("set_len 4", f.set_len(4));
        s.okd("File::metadata sl.bin", f.metadata(), md);
        s.expect_content("sl.bin", b"0123");
        s.ok("set_len 20", f.set_len(20));
        s.okd("File::metadata sl.bin", f.metadata(), md);
        s.expect_content("sl.bin", b"0123\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0");
        s.ok("set_len 100000", f.set_len(100_000));
        if let Some(d) = s.okd("fs::read sl.bin", fs::read(s.p("sl.bin")), |d| digest(d)) {
            let zeros = d.len() == 100_000 && d[4..].iter().all(|&b| b == 0);
            s.check("grown part reads as zeros", zeros, String::new());
        }
        s.ok("set_len 0", f.set_len(0));
        s.expect_content("sl.bin", b"");
        s.ok("set_len 3", f.set_len(3));
    }
    if let Some(f) = s.ok("File::open sl.bin", File::open(s.p("sl.bin"))) {
        s.fails("set_len 5 on read-only handle", f.set_len(5));
    }
    s.expect_content("sl.bin", b"\0\0\0");
}

fn sync_and_metadata(s: &mut Suite) {
    if let Some(mut f) = s.ok("File::create sync.txt", File::create(s.p("sync.txt"))) {
        s.ok("write_all sync.txt", f.write_all(b"synced"));
        s.ok("sync_data sync.txt", f.sync_data());
        s.ok("sync_all sync.txt", f.sync_all());
        s.ok("flush sync.txt", f.flush());
    }
    if let Some(f) = s.ok("File::open sync.txt", File::open(s.p("sync.txt"))) {
        s.any("sync_all on read-only handle", f.sync_all(), |_| {
            String::new()
        });
        s.any("sync_data on read-only handle", f.sync_data(), |_| {
            String::new()
        });
    }
    s.expect_content("sync.txt", b"synced");
    s.okd("metadata d", fs::metadata(s.p("d")), md);
    s.okd("symlink_metadata d", fs::symlink_metadata(s.p("d")), md);
    s.okd("metadata DIR", fs::metadata(s.p("")), md);
    if let Some(f) = s.ok("File::open d", File::open(s.p("d"))) {
        s.okd("File::metadata d", f.metadata(), md);
    }
    let perm = fs::metadata(s.p("sync.txt")).map(|m| m.permissions());
    s.okd("permissions sync.txt", perm, |p| {
        format!("readonly={}", p.readonly())
    });
    if let Ok(m) = fs::metadata(s.p("sync.txt")) {
        let mut p = m.permissions();
        p.set_readonly(true);
        s.any(
            "set_permissions readonly sync.txt",
            fs::set_permissions(s.p("sync.txt"), p),
            |_| String::new(),
        );
        let after = fs::metadata(s.p("sync.txt")).map(|m| m.permissions().readonly());
        s.any("permissions sync.txt after", after, |r| {
            format!("readonly={r}")
        });
    }
    s.fails("metadata missing", fs::metadata(s.p("missing")));
    s.fails("metadata nodir/x", fs::metadata(s.p("nodir/x")));
    s.fails("metadata f1.txt/x", fs::metadata(s.p("f1.txt/x")));
    s.fails(
        "symlink_metadata missing",
        fs::symlink_metadata(s.p("missing")),
    );
}

fn times(s: &mut Suite) {
    let t1 = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    let t2 = UNIX_EPOCH + Duration::from_millis(1_100_000_000_500);
    let t3 = UNIX_EPOCH + Duration::from_secs(1_200_000_000);
    let mtime = |m: &Metadata| m.modified().map(secs).unwrap_or_else(|e| err_str(&e));
    s.put("time.txt", b"time");
    let o = OpenOptions::new().write(true).open(s.p("time.txt"));
    if let Some(f) = s.ok("open write time.txt", o) {
        s.ok("set_modified 1000000000", f.set_modified(t1));
        s.okd("File::metadata modified", f.metadata(), |m| {
            format!("modified={}", mtime(m))
        });
        let times = FileTimes::new().set_modified(t2).set_accessed(t3);
        s.ok("set_times modified=1100000000.5", f.set_times(times));
        s.okd("File::metadata modified", f.metadata(), |m| {
            format!("modified={}", mtime(m))
        });
    }
    s.okd(
        "metadata time.txt modified",
        fs::metadata(s.p("time.txt")),
        |m| format!("modified={}", mtime(m)),
    );
    s.okd(
        "File::open time.txt modified",
        File::open(s.p("time.txt")).and_then(|f| f.metadata()),
        |m| format!("modified={}", mtime(m)),
    );
    // A write after set_modified: the time is the present again.
    let o = OpenOptions::new().write(true).open(s.p("time.txt"));
    if let Some(mut f) = s.ok("open write time.txt", o) {
        s.ok("set_modified 1000000000", f.set_modified(t1));
        s.ok("write_all TIME", f.write_all(b"TIME"));
    }
    let recent = |m: &Metadata| -> String {
        match (m.modified(), SystemTime::now().duration_since(UNIX_EPOCH)) {
            (Ok(t), Ok(now)) => match t.duration_since(UNIX_EPOCH) {
                Ok(t) => format!("recent={}", now.as_secs().abs_diff(t.as_secs()) < 600),
                Err(_) => "recent=false".into(),
            },
            (Err(e), _) => err_str(&e),
            (_, Err(_)) => "clock before 1970".into(),
        }
    };
    s.okd(
        "metadata time.txt after write",
        fs::metadata(s.p("time.txt")),
        recent,
    );
    // On a read-only handle.
    if let Some(f) = s.ok("File::open time.txt", File::open(s.p("time.txt"))) {
        s.any(
            "set_modified on read-only handle",
            f.set_modified(t1),
            |_| String::new(),
        );
    }
    // On a directory.
    s.ok("create_dir td", fs::create_dir(s.p("td")));
    if let Some(f) = s.ok("File::open td", File::open(s.p("td"))) {
        s.any("set_modified td", f.set_modified(t1), |_| String::new());
        let set = fs::metadata(s.p("td")).and_then(|m| m.modified());
        s.okd("metadata td modified", set, |t| {
            format!("is-1000000000={}", *t == t1)
        });
    }
    if let Ok(m) = fs::metadata(s.p("time.txt")) {
        s.any("accessed time.txt (value not shown)", m.accessed(), |_| {
            String::new()
        });
        s.any("created time.txt (value not shown)", m.created(), |_| {
            String::new()
        });
    }
}

fn read_dir(s: &mut Suite) {
    s.ok("create_dir ls", fs::create_dir(s.p("ls")));
    s.put("ls/b.txt", b"bbb");
    s.put("ls/a.txt", b"a");
    s.put("ls/Z", b"zz");
    s.put("ls/.hidden", b"");
    s.put("ls/ünï", b"u");
    s.ok("create_dir ls/c", fs::create_dir(s.p("ls/c")));
    s.put("ls/c/inner", b"x");
    s.okd("listing ls", listing(&s.p("ls")), |v| v.join(" "));
    s.okd("listing ls/", listing(&s.p("ls/")), |v| v.join(" "));
    s.okd("listing ls/c", listing(&s.p("ls/c")), |v| v.join(" "));
    let one = raw_names(&s.p("ls"));
    let two = raw_names(&s.p("ls"));
    if let (Ok(a), Ok(b)) = (&one, &two) {
        println!("read_dir ls twice: ok same-order={}", a == b);
    } else {
        s.ok("read_dir ls twice", one.and(two));
    }
    if let Ok(mut it) = fs::read_dir(s.p("ls")) {
        let e = it
            .next()
            .map(|e| e.map(|e| e.path().strip_prefix(&s.dir).map(Path::to_owned)));
        let ok = matches!(&e, Some(Ok(Ok(p))) if p.parent() == Some(Path::new("ls")));
        s.check("DirEntry::path is under DIR/ls", ok, String::new());
    }
    s.fails("read_dir f1.txt", fs::read_dir(s.p("f1.txt")));
    s.fails("read_dir missing", fs::read_dir(s.p("missing")));
}

fn many(s: &mut Suite) {
    s.ok("create_dir many", fs::create_dir(s.p("many")));
    let mut failed = None;
    for i in 0..300 {
        let name = format!("e{i:03}");
        if let Err(e) = fs::write(s.p(&format!("many/{name}")), name.as_bytes()) {
            failed.get_or_insert((name, e));
        }
    }
    s.ok(
        "fs::write many/e000..e299",
        failed.map_or(Ok(()), |(_, e)| Err(e)),
    );
    let show_many = |v: &Vec<String>| {
        let mut u = v.clone();
        u.dedup();
        format!(
            "count={} unique={} first={} last={}",
            v.len(),
            u.len(),
            v.first().map_or("-", |s| s.as_str()),
            v.last().map_or("-", |s| s.as_str())
        )
    };
    s.okd("read_dir many", sorted_names(&s.p("many")), show_many);
    let one = raw_names(&s.p("many"));
    let two = raw_names(&s.p("many"));
    if let (Ok(a), Ok(b)) = (&one, &two) {
        println!("read_dir many twice: ok same-order={}", a == b);
    }
    let mut failed = None;
    for i in (0..300).step_by(3) {
        if let Err(e) = fs::remove_file(s.p(&format!("many/e{i:03}"))) {
            failed.get_or_insert(e);
        }
    }
    s.ok(
        "remove_file every third of many",
        failed.map_or(Ok(()), Err),
    );
    s.okd("read_dir many", sorted_names(&s.p("many")), show_many);
    s.expect_content("many/e299", b"e299");
}

fn rename(s: &mut Suite) {
    s.put("r1", b"r");
    s.ok("rename r1 r2", fs::rename(s.p("r1"), s.p("r2")));
    s.okd("exists r1", fs::exists(s.p("r1")), |b| format!("{b}"));
    s.expect_content("r2", b"r");
    s.ok("rename r2 d/r3", fs::rename(s.p("r2"), s.p("d/r3")));
    s.expect_content("d/r3", b"r");
    s.ok("rename d/r3 r4", fs::rename(s.p("d/r3"), s.p("r4")));
    s.ok("rename r4 r4 (itself)", fs::rename(s.p("r4"), s.p("r4")));
    s.expect_content("r4", b"r");
    s.put("o1", b"new");
    s.put("o2", b"old");
    s.ok(
        "rename o1 o2 (over a file)",
        fs::rename(s.p("o1"), s.p("o2")),
    );
    s.okd("exists o1", fs::exists(s.p("o1")), |b| format!("{b}"));
    s.expect_content("o2", b"new");
    // An open handle survives renames.
    let o = OpenOptions::new().read(true).write(true).open(s.p("o2"));
    if let Some(mut f) = s.ok("open read+write o2", o) {
        s.ok("rename o2 o3 (open)", fs::rename(s.p("o2"), s.p("o3")));
        s.ok("write_all NEW via old handle", f.write_all(b"NEW"));
        s.okd("seek Start(0)", f.seek(SeekFrom::Start(0)), |p| {
            format!("pos={p}")
        });
        s.okd("read_rest via old handle", read_rest(&mut f), |d| show(d));
    }
    s.expect_content("o3", b"NEW");
    s.ok("rename a a2 (dir)", fs::rename(s.p("a"), s.p("a2")));
    s.okd("metadata a2/b/c", fs::metadata(s.p("a2/b/c")), md);
    s.okd("exists a", fs::exists(s.p("a")), |b| format!("{b}"));
    s.fails(
        "rename a2 a2/b/inside (into itself)",
        fs::rename(s.p("a2"), s.p("a2/b/inside")),
    );
    s.ok("create_dir e1", fs::create_dir(s.p("e1")));
    s.ok("create_dir e2", fs::create_dir(s.p("e2")));
    s.any(
        "rename e1 e2 (dir over empty dir)",
        fs::rename(s.p("e1"), s.p("e2")),
        |_| String::new(),
    );
    s.okd("exists e1", fs::exists(s.p("e1")), |b| format!("{b}"));
    s.okd("exists e2", fs::exists(s.p("e2")), |b| format!("{b}"));
    s.fails(
        "rename e2 a2 (dir over non-empty dir)",
        fs::rename(s.p("e2"), s.p("a2")),
    );
    s.fails(
        "rename f1.txt d (file over dir)",
        fs::rename(s.p("f1.txt"), s.p("d")),
    );
    s.fails(
        "rename d o3 (dir over file)",
        fs::rename(s.p("d"), s.p("o3")),
    );
    s.fails("rename missing x", fs::rename(s.p("missing"), s.p("x")));
    s.fails("rename r4 nodir/r4", fs::rename(s.p("r4"), s.p("nodir/r4")));
    s.okd("listing d", listing(&s.p("d")), |v| v.join(" "));
}

fn remove(s: &mut Suite) {
    s.put("rm.txt", b"x");
    s.ok("remove_file rm.txt", fs::remove_file(s.p("rm.txt")));
    s.fails("remove_file rm.txt (gone)", fs::remove_file(s.p("rm.txt")));
    s.fails("remove_file d (a dir)", fs::remove_file(s.p("d")));
    s.fails("remove_dir a2 (not empty)", fs::remove_dir(s.p("a2")));
    s.fails("remove_dir o3 (a file)", fs::remove_dir(s.p("o3")));
    s.fails("remove_dir missing", fs::remove_dir(s.p("missing")));
    s.ok("create_dir empty-dir", fs::create_dir(s.p("empty-dir")));
    s.ok("remove_dir empty-dir", fs::remove_dir(s.p("empty-dir")));
    s.ok("create_dir_all rt/x/y", fs::create_dir_all(s.p("rt/x/y")));
    s.put("rt/f", b"f");
    s.put("rt/x/g", b"g");
    s.put("rt/x/y/h", b"h");
    s.ok("remove_dir_all rt", fs::remove_dir_all(s.p("rt")));
    s.okd("exists rt", fs::exists(s.p("rt")), |b| format!("{b}"));
    s.fails("remove_dir_all missing", fs::remove_dir_all(s.p("missing")));
    // A removed file stays readable through an open handle.
    s.put("unlinked", b"still here");
    if let Some(mut f) = s.ok("File::open unlinked", File::open(s.p("unlinked"))) {
        s.ok(
            "remove_file unlinked (open)",
            fs::remove_file(s.p("unlinked")),
        );
        // POSIX keeps the data readable; AFS may not (the vnode is gone on the server).
        s.any("read_rest via handle", read_rest(&mut f), |d| show(d));
    }
    s.okd("exists unlinked", fs::exists(s.p("unlinked")), |b| {
        format!("{b}")
    });
}

fn hard_link(s: &mut Suite) {
    s.put("h1", b"link me");
    s.ok("hard_link h1 h2", fs::hard_link(s.p("h1"), s.p("h2")));
    let o = OpenOptions::new().append(true).open(s.p("h2"));
    if let Some(mut f) = s.ok("open append h2", o) {
        s.ok("write_all ! h2", f.write_all(b"!"));
    }
    s.expect_content("h1", b"link me!");
    s.fails(
        "hard_link h1 h2 (exists)",
        fs::hard_link(s.p("h1"), s.p("h2")),
    );
    s.fails(
        "hard_link d dlink (a dir)",
        fs::hard_link(s.p("d"), s.p("dlink")),
    );
    s.fails(
        "hard_link missing h3",
        fs::hard_link(s.p("missing"), s.p("h3")),
    );
    s.ok("remove_file h1", fs::remove_file(s.p("h1")));
    s.expect_content("h2", b"link me!");
    s.put("d/hs1", b"in d");
    s.ok(
        "hard_link d/hs1 d/hs2",
        fs::hard_link(s.p("d/hs1"), s.p("d/hs2")),
    );
    s.expect_content("d/hs2", b"in d");
}

#[allow(deprecated)] // std::fs::soft_link is the only stable way to make a symlink on WASI.
fn soft_link(original: &str, link: &Path) -> io::Result<()> {
    fs::soft_link(original, link)
}

fn symlinks(s: &mut Suite) {
    let target = |p: &PathBuf| format!("{:?}", p.to_string_lossy());
    s.ok("symlink sl -> f1.txt", soft_link("f1.txt", &s.p("sl")));
    s.okd("read_link sl", fs::read_link(s.p("sl")), target);
    s.okd("symlink_metadata sl", fs::symlink_metadata(s.p("sl")), md);
    s.okd("metadata sl", fs::metadata(s.p("sl")), md);
    s.okd("read_to_string sl", fs::read_to_string(s.p("sl")), |t| {
        format!("{t:?}")
    });
    s.fails(
        "symlink sl -> other (exists)",
        soft_link("other", &s.p("sl")),
    );
    s.fails(
        "symlink f1.txt -> x (a file exists)",
        soft_link("x", &s.p("f1.txt")),
    );
    s.ok("symlink dangle -> nope", soft_link("nope", &s.p("dangle")));
    s.fails("metadata dangle", fs::metadata(s.p("dangle")));
    s.okd(
        "symlink_metadata dangle",
        fs::symlink_metadata(s.p("dangle")),
        md,
    );
    s.okd("exists dangle", fs::exists(s.p("dangle")), |b| {
        format!("{b}")
    });
    s.fails("File::open dangle", File::open(s.p("dangle")));
    s.ok("symlink sld -> d", soft_link("d", &s.p("sld")));
    s.okd("metadata sld", fs::metadata(s.p("sld")), md);
    s.okd("listing sld", listing(&s.p("sld")), |v| v.join(" "));
    s.okd("listing sld/", listing(&s.p("sld/")), |v| v.join(" "));
    s.expect_content("sld/hs1", b"in d");
    s.ok(
        "symlink d/up -> ../f1.txt",
        soft_link("../f1.txt", &s.p("d/up")),
    );
    s.okd(
        "read_to_string d/up",
        fs::read_to_string(s.p("d/up")),
        |t| format!("{t:?}"),
    );
    s.ok("symlink chain -> sl", soft_link("sl", &s.p("chain")));
    s.okd(
        "read_to_string chain",
        fs::read_to_string(s.p("chain")),
        |t| format!("{t:?}"),
    );
    s.ok("symlink loop1 -> loop2", soft_link("loop2", &s.p("loop1")));
    s.ok("symlink loop2 -> loop1", soft_link("loop1", &s.p("loop2")));
    s.fails("File::open loop1", File::open(s.p("loop1")));
    s.fails("metadata loop1", fs::metadata(s.p("loop1")));
    s.fails("read_link f1.txt (a file)", fs::read_link(s.p("f1.txt")));
    s.fails("read_link d (a dir)", fs::read_link(s.p("d")));
    s.fails("read_link missing", fs::read_link(s.p("missing")));
    let o = OpenOptions::new().append(true).open(s.p("sl"));
    if let Some(mut f) = s.ok("open append sl", o) {
        s.ok("write_all via sl", f.write_all(b"via link\n"));
    }
    s.expect_content("f1.txt", b"hello world\nvia link\n");
    s.ok("rename sl sl2", fs::rename(s.p("sl"), s.p("sl2")));
    s.okd("read_link sl2", fs::read_link(s.p("sl2")), target);
    s.ok("remove_file sl2", fs::remove_file(s.p("sl2")));
    s.okd("exists f1.txt", fs::exists(s.p("f1.txt")), |b| {
        format!("{b}")
    });
    s.fails(
        "remove_dir sld (a link to a dir)",
        fs::remove_dir(s.p("sld")),
    );
    s.ok("symlink sld2 -> d", soft_link("d", &s.p("sld2")));
    s.ok("remove_file sld2", fs::remove_file(s.p("sld2")));
    s.okd("metadata d", fs::metadata(s.p("d")), md);
    let long = "t".repeat(200);
    s.ok("symlink long -> t*200", soft_link(&long, &s.p("long")));
    s.okd("read_link long", fs::read_link(s.p("long")), |p| {
        format!(
            "len={} same={}",
            p.as_os_str().len(),
            p.as_os_str() == long.as_str()
        )
    });
}

fn copy(s: &mut Suite) {
    s.okd(
        "copy f1.txt cp.txt",
        fs::copy(s.p("f1.txt"), s.p("cp.txt")),
        |n| format!("bytes={n}"),
    );
    s.expect_content("cp.txt", b"hello world\nvia link\n");
    s.okd(
        "copy off.bin cp.txt (over)",
        fs::copy(s.p("off.bin"), s.p("cp.txt")),
        |n| format!("bytes={n}"),
    );
    let same = fs::read(s.p("off.bin")).and_then(|a| fs::read(s.p("cp.txt")).map(|b| a == b));
    s.okd("cp.txt == off.bin", same, |b| format!("{b}"));
    s.fails("copy missing x", fs::copy(s.p("missing"), s.p("x")));
    s.fails("copy d dcopy (a dir)", fs::copy(s.p("d"), s.p("dcopy")));
    s.fails(
        "copy f1.txt d (onto a dir)",
        fs::copy(s.p("f1.txt"), s.p("d")),
    );
    s.okd("exists dcopy", fs::exists(s.p("dcopy")), |b| format!("{b}"));
}

fn exists_and_canonicalize(s: &mut Suite) {
    for rel in ["f1.txt", "d", "missing", "dangle", "sld", "nodir/x"] {
        s.okd(&format!("exists {rel}"), fs::exists(s.p(rel)), |b| {
            format!("{b}")
        });
    }
    s.any("exists f1.txt/x", fs::exists(s.p("f1.txt/x")), |b| {
        format!("{b}")
    });
    for rel in ["f1.txt", "d", "missing"] {
        // Under DIR: printed relative to it (the transcript must not depend on DIR).
        let c = fs::canonicalize(s.p(rel)).map(|p| match p.strip_prefix(&s.dir) {
            Ok(r) => format!("DIR/{}", r.to_string_lossy()),
            Err(_) => format!("{:?} (not under DIR)", p.to_string_lossy()),
        });
        s.any(&format!("canonicalize {rel}"), c, |t| t.clone());
    }
}

fn wrong_kinds(s: &mut Suite) {
    s.fails(
        "open write d (a dir)",
        OpenOptions::new().write(true).open(s.p("d")),
    );
    s.fails(
        "open append d (a dir)",
        OpenOptions::new().append(true).open(s.p("d")),
    );
    s.fails("File::create d (a dir)", File::create(s.p("d")));
    if let Some(mut f) = s.any("File::open d (a dir)", File::open(s.p("d")), |_| {
        String::new()
    }) {
        s.any("read_to_end d", read_rest(&mut f), |d| show(d));
    }
    s.fails("fs::read d", fs::read(s.p("d")));
    s.fails("fs::write d", fs::write(s.p("d"), b"x"));
    s.fails("create_dir f1.txt (a file)", fs::create_dir(s.p("f1.txt")));
    s.fails(
        "create_dir_all f1.txt/x",
        fs::create_dir_all(s.p("f1.txt/x")),
    );
    s.fails(
        "File::open f1.txt/ (trailing slash)",
        File::open(s.p("f1.txt/")),
    );
    s.fails(
        "metadata f1.txt/ (trailing slash)",
        fs::metadata(s.p("f1.txt/")),
    );
    s.fails(
        "File::create newfile/ (trailing slash)",
        File::create(s.p("newfile/")),
    );
    s.okd("exists newfile", fs::exists(s.p("newfile")), |b| {
        format!("{b}")
    });
    s.ok(
        "create_dir newdir/ (trailing slash)",
        fs::create_dir(s.p("newdir/")),
    );
    s.okd("metadata newdir", fs::metadata(s.p("newdir")), md);
    s.okd("metadata ./f1.txt", fs::metadata(s.p("./f1.txt")), md);
    s.okd("metadata d/../f1.txt", fs::metadata(s.p("d/../f1.txt")), md);
    s.okd("metadata d//hs1", fs::metadata(s.p("d//hs1")), md);
    s.fails("File::open nul\\0name", File::open(s.p("nul\0name")));
}

fn big(s: &mut Suite) {
    let data: Vec<u8> = (0..(1usize << 20) + 123)
        .map(|i| (i.wrapping_mul(7) ^ (i >> 9)) as u8)
        .collect();
    println!("big data: {}", digest(&data));
    s.ok("fs::write big.bin", fs::write(s.p("big.bin"), &data));
    if let Some(d) = s.okd("fs::read big.bin", fs::read(s.p("big.bin")), |d| digest(d)) {
        s.check("big.bin == data", d == data, String::new());
    }
    if let Some(mut f) = s.ok("File::create big2.bin", File::create(s.p("big2.bin"))) {
        let mut r = Ok(());
        for c in data.chunks(999) {
            r = f.write_all(c);
            if r.is_err() {
                break;
            }
        }
        s.ok("write_all big2.bin in 999-byte chunks", r);
    }
    if let Some(mut f) = s.ok("File::open big2.bin", File::open(s.p("big2.bin"))) {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 4096];
        let r = loop {
            match f.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => break Err(e),
            }
        };
        s.ok("read big2.bin in 4096-byte reads", r);
        s.check("big2.bin == data", got == data, digest(&got));
        // Random-ish positioned reads.
        let mut bad = 0;
        for k in 0..64u64 {
            let off = (k * 104_729) % data.len() as u64;
            let mut b = [0u8; 100];
            let r = f.seek(SeekFrom::Start(off)).and_then(|_| f.read(&mut b));
            match r {
                Ok(n)
                    if b[..n] == data[off as usize..(off as usize + n).min(data.len())]
                        && n > 0 => {}
                _ => bad += 1,
            }
        }
        s.check(
            "64 seek+read at scattered offsets",
            bad == 0,
            format!("bad={bad}"),
        );
    }
}

/// The tree left behind: sorted, with file digests and link targets. Directories of more
/// than 20 entries, all files, are summarized.
fn tree(s: &mut Suite) {
    fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) -> io::Result<()> {
        let names = sorted_names(dir)?;
        let mut all_files = true;
        for n in &names {
            all_files &= fs::symlink_metadata(dir.join(n))?.is_file();
        }
        if names.len() > 20 && all_files {
            let mut all = Vec::new();
            for n in &names {
                all.extend_from_slice(n.as_bytes());
                all.push(0);
                all.extend_from_slice(&fs::read(dir.join(n))?);
                all.push(0);
            }
            out.push(format!("{rel}/ {} entries, {}", names.len(), digest(&all)));
            return Ok(());
        }
        for n in names {
            let p = dir.join(&n);
            let r = if rel.is_empty() {
                n.clone()
            } else {
                format!("{rel}/{n}")
            };
            let m = fs::symlink_metadata(&p)?;
            if m.is_symlink() {
                out.push(format!("{r} -> {}", fs::read_link(&p)?.to_string_lossy()));
            } else if m.is_dir() {
                out.push(format!("{r}/"));
                walk(&p, &r, out)?;
            } else {
                out.push(format!("{r} {}", show(&fs::read(&p)?)));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    let r = walk(&s.dir, "", &mut out);
    for l in &out {
        println!("tree: {l}");
    }
    s.ok("tree", r);
}

// ---------------------------------------------------------------------------------------
// bad

fn bad(s: &mut Suite, dir: &str) {
    let dir = dir.trim_end_matches('/');
    let at = |rel: &str| PathBuf::from(format!("{dir}/{rel}"));
    let target = |p: &PathBuf| format!("{:?}", p.to_string_lossy());
    for (name, want_dir) in [
        ("sub", true),
        ("link-out", false),
        ("link-abs", false),
        ("link-in", false),
    ] {
        let present = match fs::symlink_metadata(at(name)) {
            Ok(m) => m.is_dir() == want_dir && m.is_symlink() != want_dir,
            Err(_) => false,
        };
        if !present {
            println!("setup missing {name}");
        }
    }
    s.put("bad.txt", b"bad");
    // Escapes by `..` and absolute paths.
    s.fails("File::create DIR/../x", File::create(at("../x")));
    s.fails("metadata DIR/../x", fs::metadata(at("../x")));
    s.fails("metadata DIR/..", fs::metadata(at("..")));
    s.fails("read_dir DIR/..", fs::read_dir(at("..")));
    s.fails(
        "read DIR/../../etc/passwd",
        fs::read(at("../../etc/passwd")),
    );
    s.fails("read /etc/passwd", fs::read("/etc/passwd"));
    s.fails("metadata /etc", fs::metadata("/etc"));
    s.fails(
        "File::create /tmp/fs-suite-escape",
        File::create("/tmp/fs-suite-escape"),
    );
    s.fails("metadata DIR/a/../../..", fs::metadata(at("a/../../..")));
    s.fails(
        "metadata DIR/sub/../../..",
        fs::metadata(at("sub/../../..")),
    );
    s.fails("metadata DIR/sub/../..", fs::metadata(at("sub/../..")));
    s.okd("metadata DIR/sub/..", fs::metadata(at("sub/..")), md);
    s.okd("metadata DIR/./sub/.", fs::metadata(at("./sub/.")), md);
    s.okd("metadata DIR//sub", fs::metadata(at("/sub")), md);
    let base = Path::new(dir)
        .file_name()
        .map(|b| b.to_string_lossy().into_owned());
    if let Some(base) = base {
        let p = at(&format!("../{base}/bad.txt"));
        s.fails("read DIR/../BASENAME/bad.txt", fs::read(p));
    }
    s.fails(
        "rename DIR/bad.txt DIR/../bad.txt",
        fs::rename(at("bad.txt"), at("../bad.txt")),
    );
    s.fails(
        "hard_link DIR/bad.txt DIR/../bad.txt",
        fs::hard_link(at("bad.txt"), at("../bad.txt")),
    );
    s.fails("create_dir DIR/../newdir", fs::create_dir(at("../newdir")));
    s.fails(
        "remove_file DIR/../bad.txt",
        fs::remove_file(at("../bad.txt")),
    );
    s.fails(
        "symlink DIR/../sl -> bad.txt",
        soft_link("bad.txt", &at("../sl")),
    );
    // Long names.
    for (len, want) in [(255, Want::Any), (256, Want::Err), (1000, Want::Err)] {
        let name = "n".repeat(len);
        s.step(
            want,
            &format!("File::create name of {len} bytes"),
            File::create(at(&name)),
            |_| String::new(),
        );
        s.step(
            want,
            &format!("File::open name of {len} bytes"),
            File::open(at(&name)),
            |_| String::new(),
        );
        s.step(
            want,
            &format!("create_dir name of {len} bytes"),
            fs::create_dir(at(&"m".repeat(len))),
            |_| String::new(),
        );
        let _ = fs::remove_dir(at(&"m".repeat(len)));
        let _ = fs::remove_file(at(&name));
    }
    let long_path = (0..200).map(|_| "x").collect::<Vec<_>>().join("/");
    s.fails(
        "metadata a path of 200 missing components",
        fs::metadata(at(&long_path)),
    );
    let long_path = format!("sub{}", "/.".repeat(3000));
    s.any(
        "metadata a path of 6003 bytes (sub/./././...)",
        fs::metadata(at(&long_path)),
        md,
    );
    s.fails("File::create name with NUL", File::create(at("nul\0x")));
    // Symlinks the harness made.
    s.any("read_link link-out", fs::read_link(at("link-out")), target);
    s.fails("metadata link-out", fs::metadata(at("link-out")));
    s.fails("read_dir link-out", fs::read_dir(at("link-out")));
    s.fails("read DIR/link-out/x", fs::read(at("link-out/x")));
    s.fails(
        "File::create DIR/link-out/x",
        File::create(at("link-out/x")),
    );
    s.fails(
        "read DIR/link-out/etc/passwd",
        fs::read(at("link-out/etc/passwd")),
    );
    s.any("read_link link-abs", fs::read_link(at("link-abs")), target);
    s.fails("metadata link-abs", fs::metadata(at("link-abs")));
    s.fails("read DIR/link-abs/passwd", fs::read(at("link-abs/passwd")));
    s.fails(
        "File::open DIR/link-abs/passwd",
        File::open(at("link-abs/passwd")),
    );
    s.fails(
        "File::create DIR/link-abs/x",
        File::create(at("link-abs/x")),
    );
    s.any(
        "symlink_metadata link-in",
        fs::symlink_metadata(at("link-in")),
        md,
    );
    s.okd("metadata link-in", fs::metadata(at("link-in")), md);
    s.ok(
        "fs::write DIR/link-in/x",
        fs::write(at("link-in/x"), b"through link-in"),
    );
    s.okd("read DIR/sub/x", fs::read(at("sub/x")), |d| show(d));
    s.okd("read_dir link-in", sorted_names(&at("link-in")), |v| {
        format!("{v:?}")
    });
    s.fails(
        "metadata DIR/link-in/../link-out/x",
        fs::metadata(at("link-in/../link-out/x")),
    );
    s.fails(
        "metadata DIR/link-in/../..",
        fs::metadata(at("link-in/../..")),
    );
    // Links made by the guest that lead out: making them may work, following them must not.
    let r = soft_link("/etc/passwd", &at("mk-abs"));
    s.any("symlink mk-abs -> /etc/passwd", r, |_| String::new());
    s.fails("read DIR/mk-abs", fs::read(at("mk-abs")));
    let r = soft_link("../../../../etc/passwd", &at("mk-out"));
    s.any("symlink mk-out -> ../../../../etc/passwd", r, |_| {
        String::new()
    });
    s.fails("read DIR/mk-out", fs::read(at("mk-out")));
    s.fails("fs::write DIR/mk-out", fs::write(at("mk-out"), b"x"));
    let _ = fs::remove_file(at("mk-abs"));
    let _ = fs::remove_file(at("mk-out"));
    s.okd("listing DIR", listing(Path::new(dir)), |v| v.join(" "));
}

// ---------------------------------------------------------------------------------------
// ro

fn ro(s: &mut Suite) {
    let Ok(before) = fs::read(s.p("ro.txt")) else {
        println!("setup missing ro.txt");
        s.failed = true;
        return;
    };
    s.okd("read ro.txt", fs::read(s.p("ro.txt")), |d| show(d));
    s.okd("metadata ro.txt", fs::metadata(s.p("ro.txt")), md);
    s.okd("read_dir DIR", sorted_names(&s.dir), |v| format!("{v:?}"));
    s.fails("File::create new.txt", File::create(s.p("new.txt")));
    s.fails(
        "create_new new.txt",
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(s.p("new.txt")),
    );
    s.fails("File::create ro.txt", File::create(s.p("ro.txt")));
    s.fails(
        "open write ro.txt",
        OpenOptions::new().write(true).open(s.p("ro.txt")),
    );
    s.fails(
        "open read+write ro.txt",
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(s.p("ro.txt")),
    );
    s.fails(
        "open append ro.txt",
        OpenOptions::new().append(true).open(s.p("ro.txt")),
    );
    s.fails("fs::write ro.txt", fs::write(s.p("ro.txt"), b"x"));
    s.fails("create_dir newdir", fs::create_dir(s.p("newdir")));
    s.fails("remove_file ro.txt", fs::remove_file(s.p("ro.txt")));
    s.fails(
        "rename ro.txt renamed.txt",
        fs::rename(s.p("ro.txt"), s.p("renamed.txt")),
    );
    s.fails(
        "hard_link ro.txt ro2.txt",
        fs::hard_link(s.p("ro.txt"), s.p("ro2.txt")),
    );
    s.fails(
        "symlink ro-link -> ro.txt",
        soft_link("ro.txt", &s.p("ro-link")),
    );
    s.fails(
        "copy ro.txt copy.txt",
        fs::copy(s.p("ro.txt"), s.p("copy.txt")),
    );
    if let Some(mut f) = s.ok("File::open ro.txt", File::open(s.p("ro.txt"))) {
        s.fails("set_len 0", f.set_len(0));
        s.fails(
            "set_modified",
            f.set_modified(UNIX_EPOCH + Duration::from_secs(1_000_000_000)),
        );
        s.fails("write", f.write(b"x"));
        s.any("sync_all", f.sync_all(), |_| String::new());
        s.okd("read_rest", read_rest(&mut f), |d| show(d));
    }
    let unchanged = fs::read(s.p("ro.txt")).map(|d| d == before);
    s.okd("ro.txt unchanged", unchanged, |b| format!("{b}"));
    s.okd("read_dir DIR", sorted_names(&s.dir), |v| format!("{v:?}"));
}

// ---------------------------------------------------------------------------------------
// xlink

fn xlink(s: &mut Suite) {
    s.ok("create_dir x1", fs::create_dir(s.p("x1")));
    s.ok("create_dir x2", fs::create_dir(s.p("x2")));
    s.put("x1/f", b"cross");
    s.ok(
        "hard_link x1/f x1/g (same dir)",
        fs::hard_link(s.p("x1/f"), s.p("x1/g")),
    );
    s.any(
        "hard_link x1/f x2/f (across dirs)",
        fs::hard_link(s.p("x1/f"), s.p("x2/f")),
        |_| String::new(),
    );
    s.any(
        "hard_link x1/f f (into the parent)",
        fs::hard_link(s.p("x1/f"), s.p("f")),
        |_| String::new(),
    );
    s.okd("listing x1", listing(&s.p("x1")), |v| v.join(" "));
    s.okd("listing x2", listing(&s.p("x2")), |v| v.join(" "));
}

// ---------------------------------------------------------------------------------------
// read, reread, watch, watchdir, stat-many

fn read(file: &str) -> ExitCode {
    let t = Instant::now();
    match fs::read(file) {
        Ok(d) => {
            eprintln!("read-ms {:.3}", t.elapsed().as_secs_f64() * 1e3);
            println!("len {} sum {}", d.len(), sum(&d));
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("read: {}", err_str(&e));
            ExitCode::from(1)
        }
    }
}

fn reread(file: &str, n: u64) -> ExitCode {
    for i in 0..n {
        let t = Instant::now();
        match fs::read(file) {
            Ok(d) => {
                eprintln!("read-ms {i} {:.3}", t.elapsed().as_secs_f64() * 1e3);
                println!("{i} len {} sum {}", d.len(), sum(&d));
            }
            Err(e) => {
                println!("{i} read: {}", err_str(&e));
                return ExitCode::from(1);
            }
        }
    }
    ExitCode::SUCCESS
}

fn watch(file: &str) -> ExitCode {
    let mut f = match File::open(file) {
        Ok(f) => f,
        Err(e) => {
            println!("open: {}", err_str(&e));
            return ExitCode::from(1);
        }
    };
    let mut out = io::stdout();
    for line in io::stdin().lock().lines() {
        if line.is_err() {
            break;
        }
        let r = f.seek(SeekFrom::Start(0)).and_then(|_| read_rest(&mut f));
        let _ = match r {
            Ok(d) => {
                let mut t = String::from_utf8_lossy(&d).into_owned();
                if !t.is_empty() && !t.ends_with('\n') {
                    t.push('\n');
                }
                writeln!(out, "{t}--")
            }
            Err(e) => writeln!(out, "read: {}\n--", err_str(&e)),
        };
        let _ = out.flush();
    }
    ExitCode::SUCCESS
}

fn watchdir(dir: &str) -> ExitCode {
    let mut out = io::stdout();
    for line in io::stdin().lock().lines() {
        if line.is_err() {
            break;
        }
        let _ = match sorted_names(Path::new(dir)) {
            Ok(v) => v
                .iter()
                .try_for_each(|n| writeln!(out, "{n}"))
                .and_then(|_| writeln!(out, "--")),
            Err(e) => writeln!(out, "read_dir: {}\n--", err_str(&e)),
        };
        let _ = out.flush();
    }
    ExitCode::SUCCESS
}

fn stat_many(dir: &str, n: u64, passes: u64) -> ExitCode {
    let mut total = 0u64;
    // The first pass finds the files; the later ones have them cached (benchmarks).
    for pass in 1..=passes.max(1) {
        let t = Instant::now();
        total = 0;
        for i in 0..n {
            let p = Path::new(dir).join(format!("f{i}"));
            match File::open(&p).and_then(|f| f.metadata()) {
                Ok(m) => total += m.len(),
                Err(e) => {
                    println!("f{i}: {}", err_str(&e));
                    return ExitCode::from(1);
                }
            }
        }
        eprintln!("stat-many-ms {pass} {:.3}", t.elapsed().as_secs_f64() * 1e3);
    }
    println!("files {n} bytes {total}");
    ExitCode::SUCCESS
}
