//! Replicated volumes against two real fileservers (`cell.sh fs2-up`: a second fileserver
//! and volserver, root.cell replicated on both): guests read read-only clones through
//! `/afs/CELL`, changes go through `/afs/.CELL` and reach readers with `vos release`, and a
//! reader goes on from the other site when the one it reads from stops.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use afs_wasm_host::pager::PagerConfig;
use afs_wasm_host::runtime::{Access, CapturedOutput, GuestConfig, Host, HostConfig};
use common::*;

/// The cell with its second fileserver for one test at a time (each stops servers); the
/// one-server cell again when dropped.
struct TwoServers {
    _exclusive: std::sync::RwLockWriteGuard<'static, ()>,
}

impl TwoServers {
    fn up() -> Self {
        let exclusive = exclusive();
        cell_sh(&["fs2-up"]);
        Self {
            _exclusive: exclusive,
        }
    }

    /// A fresh volume on the first server with read-only sites on both, released, and
    /// mounted (`#NAME.`) in root.cell, which is released too.
    fn replicated_volume(&self, tag: &str) -> Volume {
        self.volume(tag, true)
    }

    /// A fresh volume on the first server, mounted as `replicated_volume`'s are; with
    /// read-only sites on both servers if `replicated` (else `ro` reaches the volume
    /// itself, as OpenAFS clients go to a volume without clones from a read-only parent).
    fn volume(&self, tag: &str, replicated: bool) -> Volume {
        let c = cell();
        // Volume names are at most 22 characters before ".readonly".
        let name = format!("{tag}{:06x}", rand::random::<u32>() & 0xff_ffff);
        cell_sh(&["vos", "create", &c.server, "a", &name, "-maxquota", "0"]);
        let volume = Volume {
            rw: format!("/afs/.{}/{name}", c.name),
            ro: format!("/afs/{}/{name}", c.name),
            name,
        };
        if replicated {
            cell_sh(&["vos", "addsite", &c.server, "a", &volume.name]);
            cell_sh(&["vos", "addsite", &c.server2, "a", &volume.name]);
            volume.release();
        }
        let out = afs_wasm()
            .args(["mkmount", &volume.rw, &volume.name])
            .output()
            .unwrap();
        assert!(out.status.success(), "mkmount: {out:?}");
        cell_sh(&["vos", "release", "root.cell"]);
        volume
    }
}

impl Drop for TwoServers {
    fn drop(&mut self) {
        // Both fileservers running again, whatever a test stopped.
        let _ = cell_command().arg("fs-start").status();
        let _ = cell_command().arg("fs2-down").status();
    }
}

/// A replicated test volume: `rw` is its mount point in the read-write root.cell, `ro` the
/// same mount point in root.cell's read-only clone (which leads to the volume's clone).
struct Volume {
    name: String,
    rw: String,
    ro: String,
}

impl Volume {
    /// Stores `data` as `file` in the read-write volume, with `afs-wasm put`.
    fn put(&self, file: &str, data: &[u8]) {
        let dir = tempdir();
        let local = dir.join("data");
        std::fs::write(&local, data).unwrap();
        let out = afs_wasm()
            .arg("put")
            .arg(&local)
            .arg(format!("{}/{file}", self.rw))
            .output()
            .unwrap();
        assert!(out.status.success(), "put: {out:?}");
        let _ = std::fs::remove_dir_all(dir);
    }

    fn release(&self) {
        cell_sh(&["vos", "release", &self.name]);
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        let _ = afs_wasm().args(["rm", &self.rw]).status();
        let c = cell();
        let ro = format!("{}.readonly", self.name);
        let both = [&c.server, &c.server2];
        let sites = both
            .iter()
            .map(|s| (s, &ro))
            .chain(both.iter().map(|s| (s, &self.name)));
        for (server, id) in sites {
            let _ = cell_command()
                .args([
                    "vos",
                    "remove",
                    "-server",
                    server,
                    "-partition",
                    "a",
                    "-id",
                    id,
                ])
                .output();
        }
    }
}

/// FNV-1a of `bytes`, as mmap-reader --sweep prints it.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

#[test]
fn a_mapped_reader_follows_three_releases() {
    let cell2 = TwoServers::up();
    let volume = cell2.replicated_volume("rel");
    volume.put("f", &[0x10]);
    volume.release();
    let path = format!("{}/f", volume.ro);
    let mut reader = GuestProcess::run(
        "mmap-reader",
        &format!("{}:ro", volume.ro),
        &[
            &path,
            "--interval-ms",
            "20",
            "--changes-only",
            "--count",
            "4",
        ],
    );
    assert_eq!(reader.wait_for_lines(1, SHORT), ["10"]);
    for byte in [0x11u8, 0x12, 0x13] {
        let before = reader.lines();
        volume.put("f", &[byte]);
        // The clone is a snapshot: the read-write change is not in it until the release.
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(reader.lines(), before, "a change seen before its release");
        volume.release();
        let want = format!("{byte:02x}");
        assert!(
            reader.wait_for_last(&want, SHORT).is_some(),
            "the release of {want} was not seen: {:?}",
            reader.lines()
        );
    }
    assert!(reader.wait().success());
    assert_eq!(reader.lines(), ["10", "11", "12", "13"]);
}

/// A host that fetches little ahead of a reader (64 KiB around a fault, 128 KiB of
/// read-ahead), so that a reader keeps asking its fileserver for more as it goes.
fn host_fetching_little_ahead() -> Arc<Host> {
    let pager = PagerConfig {
        fault_around: 64 << 10,
        ..PagerConfig::default()
    };
    let mut config = HostConfig::new(config(), pager);
    config.page_store.chunk_bytes = 64 << 10;
    config.page_store.readahead_max_bytes = 128 << 10;
    Arc::new(Host::new(config).expect("start the host"))
}

#[test]
fn a_reader_keeps_reading_while_the_server_it_reads_from_stops() {
    const MIB: usize = 1 << 20;
    let cell2 = TwoServers::up();
    let volume = cell2.replicated_volume("fo");
    let data = pattern(64 * MIB, 14);
    volume.put("big", &data);
    volume.release();
    let want: Vec<String> = data
        .chunks(MIB)
        .enumerate()
        .map(|(i, c)| format!("{i} {:08x}", fnv1a(c)))
        .collect();
    let host = host_fetching_little_ahead();
    let grant = host.grant(&volume.ro, Access::Read).unwrap();
    // 32 KiB every 10 ms: about 20 s to read it all, faulting all the way.
    let path = format!("{}/big", volume.ro);
    let mut config = GuestConfig::new("mmap-reader").grant(grant);
    for a in [path.as_str(), "--sweep", "8", "--interval-ms", "10"] {
        config = config.arg(a);
    }
    let out = config.capture_stdout(1 << 16);
    let reader = {
        let host = host.clone();
        std::thread::spawn(move || host.run_command(&guest("mmap-reader"), config))
    };
    let lines = LineWatch::new(out);
    // Each server stops in turn under the reader (one of them is the one it reads from),
    // and starts again once the reader has read on for 8 MiB.
    for (stop, start) in [("fs-stop", "fs-start"), ("fs2-stop", "fs2-start")] {
        lines.wait_for(lines.count() + 2);
        let stopped = Instant::now();
        cell_sh(&[stop]);
        let n = lines.count();
        assert!(
            lines.wait_for(n + 8),
            "the reader stopped reading after {stop}: {} MiB read",
            lines.count()
        );
        eprintln!("{stop}: read on {:?} after the stop", stopped.elapsed());
        cell_sh(&[start]);
    }
    let code = reader.join().unwrap().expect("the reader runs");
    assert_eq!(code, 0, "the reader failed");
    let got = lines.lines();
    assert_eq!(got.len(), want.len(), "{got:?}");
    for (i, (got, want)) in got.iter().zip(&want).enumerate() {
        assert_eq!(got, want, "MiB {i}");
    }
    // The longest a MiB took: a failover, bounded by FAILOVER_DEAD_TIME plus the call to
    // the next site (not the 10 s a call waits for a server that has no stand-in).
    let longest = lines.longest_gap();
    eprintln!("longest wait between MiBs: {longest:?}");
    assert!(
        longest < afs::client::FAILOVER_DEAD_TIME + Duration::from_secs(4),
        "a fault waited {longest:?}"
    );
}

/// The lines a guest printed to captured stdout, and when each was first seen.
struct LineWatch {
    seen: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl LineWatch {
    fn new(out: CapturedOutput) -> Self {
        let seen: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
        let sink = Arc::downgrade(&seen);
        std::thread::spawn(move || {
            while let Some(seen) = sink.upgrade() {
                let text = String::from_utf8_lossy(&out.contents()).into_owned();
                let mut seen = seen.lock().unwrap();
                for line in text.lines().skip(seen.len()) {
                    seen.push((Instant::now(), line.to_string()));
                }
                drop(seen);
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Self { seen }
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn lines(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(_, l)| l.clone())
            .collect()
    }

    /// Waits up to [`SHORT`] for `n` lines; whether they came.
    fn wait_for(&self, n: usize) -> bool {
        let deadline = Instant::now() + SHORT;
        while self.count() < n {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    fn longest_gap(&self) -> Duration {
        let seen = self.seen.lock().unwrap();
        seen.windows(2)
            .map(|w| w[1].0 - w[0].0)
            .max()
            .unwrap_or_default()
    }
}

#[test]
fn a_vos_move_under_a_reader_and_a_writer_loses_nothing() {
    let cell2 = TwoServers::up();
    let c = cell();
    let volume = cell2.volume("mv", false);
    volume.put("f", &[0x40]);
    let path = format!("{}/f", volume.ro);
    let grant = |access: &str| format!("{}:{access}", volume.ro);
    let reader = GuestProcess::run(
        "mmap-reader",
        &grant("ro"),
        &[&path, "--interval-ms", "20", "--changes-only"],
    );
    assert_eq!(reader.wait_for_lines(1, SHORT), ["40"]);
    let mut writer = GuestProcess::run(
        "mmap-writer",
        &grant("rw"),
        &[&path, "--interval-ms", "400", "--count", "12"],
    );
    writer.wait_for_lines(3, SHORT);
    // A client of our own that knew where the volume was changes its directory after.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = rt.block_on(afs::client::Client::new(config())).unwrap();
    let dir = rt.block_on(client.resolve(&volume.ro)).unwrap();
    rt.block_on(client.create_in(&dir, "before", 0o644))
        .expect("create before the move");
    cell_sh(&[
        "vos",
        "move",
        "-id",
        &volume.name,
        "-fromserver",
        &c.server,
        "-frompartition",
        "a",
        "-toserver",
        &c.server2,
        "-topartition",
        "a",
    ]);
    let examined =
        String::from_utf8(cell_sh(&["vos", "examine", &volume.name, "-noresolve"]).stdout).unwrap();
    assert!(
        examined.contains(&format!("server {} partition /vicepa RW Site", c.server2)),
        "the volume did not move: {examined}"
    );
    rt.block_on(client.create_in(&dir, "after", 0o644))
        .expect("create after the move, at the volume's new site");
    rt.block_on(client.give_up_callbacks());
    let status = writer.wait();
    assert!(status.success(), "the writer failed: {status}");
    let written = writer.lines();
    assert_eq!(written.len(), 12, "{written:?}");
    let last = written.last().unwrap().clone();
    assert!(
        reader.wait_for_last(&last, SHORT).is_some(),
        "the reader did not see the last write {last}: {:?}",
        reader.lines()
    );
    // Every value the reader saw was written, in order (it may miss one written while it
    // was revalidating).
    let seen = reader.lines();
    let order: Vec<usize> = seen[1..]
        .iter()
        .map(|v| {
            written
                .iter()
                .position(|w| w == v)
                .expect("a value nobody wrote")
        })
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "{seen:?} vs {written:?}"
    );
    // A third party reads what the writer stored last, from the volume's new home.
    let out = afs_wasm().args(["cat", &path]).output().unwrap();
    assert!(out.status.success(), "cat: {out:?}");
    assert_eq!(format!("{:02x}", out.stdout[0]), last);
}

#[test]
fn a_volume_gone_from_its_server_is_a_clear_no_such_volume() {
    let cell2 = TwoServers::up();
    let c = cell();
    let volume = cell2.volume("gone", false);
    volume.put("f", b"here");
    let path = format!("{}/f", volume.ro);
    let cat = || afs_wasm().args(["cat", &path]).output().unwrap();
    assert_eq!(cat().stdout, b"here");
    // Gone from the server, still in the VLDB: the server answers VNOVOL, the VLDB
    // sends us back, and that is the answer.
    cell_sh(&[
        "vos",
        "zap",
        "-server",
        &c.server,
        "-partition",
        "a",
        "-id",
        &volume.name,
        "-force",
    ]);
    let out = cat();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(err.contains("no such volume"), "{err}");
    // Gone from the VLDB too.
    let _ = cell_command()
        .args(["vos", "delentry", "-id", &volume.name])
        .output();
    let out = cat();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no such volume"),
        "{err}"
    );
}
