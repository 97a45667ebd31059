//! The seed scenario across processes: two `afs-wasm run` processes (two AFS clients) run
//! the mmap-writer and mmap-reader guests against one file; the reader prints every value
//! the writer wrote.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// `afs-wasm run` of a guest, its stdout collected line by line as it comes.
struct Guest {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

fn run(wasm: &str, grant: &str, args: &[&str]) -> Guest {
    let mut child = afs_wasm()
        .arg("run")
        .arg("--grant")
        .arg(grant)
        .arg(guest(wasm))
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start afs-wasm run");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let out = child.stdout.take().unwrap();
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    Guest { child, lines }
}

impl Guest {
    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn wait_for_lines(&self, n: usize, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        loop {
            let lines = self.lines();
            if lines.len() >= n || Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn wait(mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }
}

#[test]
fn a_reader_process_follows_a_writer_process() {
    let _g = shared();
    let path = unique_path("seed-procs");
    afsio_write(&path, &[0x40]);
    let dir = &cell().test_dir;
    let reader = run(
        "mmap-reader",
        &format!("{dir}:ro"),
        &[
            &path,
            "--interval-ms",
            "20",
            "--changes-only",
            "--count",
            "6",
        ],
    );
    assert_eq!(reader.wait_for_lines(1, SHORT), ["40"]);
    let writer = run(
        "mmap-writer",
        &format!("{dir}:rw"),
        &[&path, "--interval-ms", "700", "--count", "5"],
    );
    let status = writer.wait();
    assert!(status.success());
    let seen = reader.wait_for_lines(6, SHORT);
    assert_eq!(seen, ["40", "41", "42", "43", "44", "45"]);
    assert!(reader.wait().success());
    assert_eq!(afsio_read(&path), [0x45]);
}
