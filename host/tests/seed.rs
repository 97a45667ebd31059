//! The seed scenario across processes: two `afs-wasm run` processes (two AFS clients) run
//! the mmap-writer and mmap-reader guests against one file; the reader prints every value
//! the writer wrote.

mod common;

use common::*;

#[test]
fn a_reader_process_follows_a_writer_process() {
    let _g = shared();
    let path = unique_path("seed-procs");
    afsio_write(&path, &[0x40]);
    let dir = &cell().test_dir;
    let mut reader = GuestProcess::run(
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
    let mut writer = GuestProcess::run(
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
