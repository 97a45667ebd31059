//! No write is lost without an error, against the real cell: store-on-close, writes past
//! the end of a file through a mapping, another client's change under our unstored
//! writes (a conflict), and stores while the fileserver is down. The guest is
//! examples/mmap-abuse run by `afs-wasm run`; afsio is the other client and the judge.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// `afs-wasm run --grant TEST_DIR:rw [OPTS] mmap-abuse ARGS`.
fn abuse_command(opts: &[&str], args: &[&str]) -> Command {
    let mut cmd = afs_wasm();
    cmd.arg("run")
        .arg("--grant")
        .arg(format!("{}:rw", cell().test_dir))
        .args(opts)
        .arg(guest("mmap-abuse"))
        .args(args);
    cmd
}

/// [`abuse_command`], to completion.
fn abuse(opts: &[&str], args: &[&str]) -> Output {
    abuse_command(opts, args).output().expect("run afs-wasm")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A guest that stops after its writes until told to go on (a line on its stdin).
struct Paused {
    child: Child,
    stdin: ChildStdin,
}

impl Paused {
    fn start(opts: &[&str], args: &[&str]) -> Self {
        let mut child = abuse_command(opts, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run afs-wasm");
        let stdin = child.stdin.take().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(
            line.trim(),
            "written",
            "the guest did not get to its writes"
        );
        // The rest of stdout comes back with `finish`.
        child.stdout = Some(out.into_inner());
        Paused { child, stdin }
    }

    fn finish(mut self) -> Output {
        writeln!(self.stdin).unwrap();
        drop(self.stdin);
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the guest did not finish");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child.wait_with_output().unwrap()
    }
}

#[test]
fn bytes_written_by_copy_are_stored_at_close_and_at_exit_without_sync() {
    let _g = shared();
    for case in ["write-close", "write-exit", "map-write-exit"] {
        let path = unique_path(case);
        afsio_write(&path, b"................");
        let out = abuse(&[], &[case, &path, "stored-on-close"]);
        assert!(out.status.success(), "{case}: {}", text(&out.stderr));
        assert_eq!(
            afsio_read(&path),
            b"stored-on-close.",
            "{case}: afsio reads what the guest wrote"
        );
    }
}

#[test]
fn writes_past_the_end_through_a_mapping_fail_visibly_until_the_file_is_extended() {
    let _g = shared();
    let path = unique_path("past-end");
    afsio_write(&path, &[b'a'; 100]);
    let out = abuse(&[], &["write-past-end", &path, "5000"]);
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("sync: refused InvalidArgument")
            && lines[0].contains("offset 5000, past the end of the file (100 bytes)"),
        "{stdout}"
    );
    assert_eq!(lines[1..], ["set-length: ok", "sync: ok"], "{stdout}");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let data = afsio_read(&path);
    assert_eq!(data.len(), 5001);
    assert_eq!(data[..100], [b'a'; 100]);
    assert_eq!(data[5000], b'x');
    assert!(data[100..5000].iter().all(|&b| b == 0));
}

#[test]
fn another_clients_change_under_unstored_writes_is_a_conflict() {
    let _g = shared();
    // sync reports the conflict and stores nothing; sync-overwrite stores ours.
    let path = unique_path("conflict");
    afsio_write(&path, b"original");
    let guest = Paused::start(&[], &["conflict", &path, "OURS", "overwrite"]);
    afsio_write(&path, b"theirs!!");
    let out = guest.finish();
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("sync: refused Conflict")
            && lines[0].contains("changed on the fileserver"),
        "{stdout}"
    );
    assert_eq!(lines[1], "sync-overwrite: ok", "{stdout}");
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Last writer wins, page by page: our page, as we had it, over theirs.
    assert_eq!(afsio_read(&path), b"OURSinal");

    // Left to the exit: the run fails, naming the file, and the other change stays.
    let path = unique_path("conflict-exit");
    afsio_write(&path, b"original");
    let guest = Paused::start(&[], &["conflict", &path, "OURS", "exit"]);
    afsio_write(&path, b"theirs!!");
    let out = guest.finish();
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "a lost write must fail the run");
    assert!(
        stderr.contains(&path) && stderr.contains("not stored"),
        "{stderr}"
    );
    assert!(stderr.contains("changed on the fileserver"), "{stderr}");
    assert_eq!(afsio_read(&path), b"theirs!!");
}

/// A guest writes `text` through a mapping, the fileserver stops, and the guest exits
/// (so its store is due) with `--store-retry retry`; the fileserver starts again after
/// `back_after`, or after the guest ended. The path and the run's output.
fn exit_with_the_server_down(
    text: &str,
    retry: &str,
    back_after: Option<Duration>,
) -> (String, Output) {
    let path = unique_path("retry");
    afsio_write(&path, b"........");
    let guest = Paused::start(
        &["--store-retry", retry],
        &["conflict", &path, text, "exit"],
    );
    cell_sh(&["fs-stop"]);
    let restart = back_after.map(|after| {
        std::thread::spawn(move || {
            std::thread::sleep(after);
            cell_sh(&["fs-start"]);
        })
    });
    let out = guest.finish();
    match restart {
        Some(r) => r.join().unwrap(),
        None => drop(cell_sh(&["fs-start"])),
    }
    (path, out)
}

#[test]
fn a_store_at_exit_waits_for_the_fileserver_within_the_bound_then_fails_naming_the_file() {
    let _g = exclusive();
    // The server comes back within the bound: stored.
    let (path, out) = exit_with_the_server_down("KEPT", "120s", Some(Duration::from_secs(3)));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(afsio_read(&path), b"KEPT....");

    // It does not: the run fails, naming the file and the reason.
    let (path, out) = exit_with_the_server_down("LOST", "2s", None);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "a lost write must fail the run");
    assert!(
        stderr.contains(&path) && stderr.contains("not stored"),
        "{stderr}"
    );
    assert_eq!(afsio_read(&path), b"........");
}
