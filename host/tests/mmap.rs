//! Guests mapping AFS files, against the real cell, with afsio as the third party.

mod common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use afs_wasm_host::pager::{
    Access, OnUnreachable, PagerConfig, Reason, RevalidateEvent, RevalidateObserver,
};
use afs_wasm_host::runtime::{CapturedOutput, GuestConfig, Host, HostConfig};
use common::*;

fn host() -> Host {
    host_with(PagerConfig::default())
}

fn host_with(pager: PagerConfig) -> Host {
    Host::new(HostConfig::new(config(), pager)).expect("start the host")
}

fn run_captured(host: &Host, wasm: &str, args: &[&str], access: Access) -> (i32, String) {
    let grant = host.grant(&cell().test_dir, access).unwrap();
    let mut config = GuestConfig::new(wasm).grant(grant);
    for a in args {
        config = config.arg(*a);
    }
    let out = config.capture_stdout(1 << 20);
    let code = host.run_command(&guest(wasm), config).expect("guest runs");
    (code, String::from_utf8_lossy(&out.contents()).into_owned())
}

#[test]
fn a_guest_reads_a_mapped_file() {
    let _g = shared();
    let host = host();
    let path = unique_path("map");
    let data = pattern(3 * 4096 + 17, 7);
    put(&host, &path, &data);
    let (code, out) = run_captured(&host, "plugin-guest", &[&path], Access::Read);
    assert_eq!(code, 0, "{out}");
    let sum: u64 = data.iter().map(|&b| b as u64).sum();
    assert!(
        out.contains(&format!("bytes={} sum={sum}", data.len())),
        "{out}"
    );
}

/// A guest running on its own thread, its stdout captured.
struct Running {
    out: CapturedOutput,
    done: std::thread::JoinHandle<anyhow::Result<i32>>,
}

impl Running {
    fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.out.contents())
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Waits until the guest printed `line` (panics after 20 s).
    fn wait_for_line(&self, line: &str) {
        let deadline = Instant::now() + SHORT;
        while !self.lines().iter().any(|l| l == line) {
            assert!(
                Instant::now() < deadline,
                "the guest never printed {line:?}; it printed {:?}",
                self.lines()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn finish(self) -> (anyhow::Result<i32>, Vec<String>) {
        let code = self.done.join().expect("guest thread");
        let lines = String::from_utf8_lossy(&self.out.contents())
            .lines()
            .map(str::to_string)
            .collect();
        (code, lines)
    }
}

fn spawn_guest(host: &Arc<Host>, wasm: &str, args: &[&str], access: Access) -> Running {
    let grant = host.grant(&cell().test_dir, access).unwrap();
    let mut config = GuestConfig::new(wasm).grant(grant);
    for a in args {
        config = config.arg(*a);
    }
    let out = config.capture_stdout(1 << 20);
    let (host, wasm) = (host.clone(), guest(wasm));
    let done = std::thread::spawn(move || host.run_command(&wasm, config));
    Running { out, done }
}

/// Records every run of the revalidate hook.
#[derive(Default)]
struct Events(Mutex<Vec<RevalidateEvent>>);

impl RevalidateObserver for Events {
    fn revalidated(&self, event: &RevalidateEvent) {
        self.0.lock().unwrap().push(event.clone());
    }
}

impl Events {
    fn of(&self, path: &str) -> Vec<RevalidateEvent> {
        let all = self.0.lock().unwrap();
        all.iter().filter(|e| e.path == path).cloned().collect()
    }
}

/// Sends CB.CallBack for `fid` to the host's callback service, as a fileserver would.
/// Only fileservers are believed: the sending endpoint is made another address of
/// the server that holds the promise (a multihomed server, as the VLDB lists them).
fn break_callback(host: &Host, fid: afs::Fid) {
    use afs::proto::cb::CbRequest;
    let port = host.client().endpoint().local_addr().port();
    let (server, _) = host.client().promise(fid).expect("a promise to break");
    let client = host.client().clone();
    host.afs_runtime()
        .block_on(async move {
            let fileserver = rx::Endpoint::bind("0.0.0.0:0".parse().unwrap(), Default::default())
                .await
                .unwrap();
            let here = std::net::SocketAddr::from(([127, 0, 0, 1], fileserver.local_addr().port()));
            client.coherence().learn_server(None, &[server, here]);
            let request = CbRequest::CallBack {
                fids: vec![fid],
                callbacks: vec![afs::CallBack::default()],
            };
            let ours = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            fileserver
                .make_call(ours, afs::callback::SERVICE, &request.encode())
                .await
                .unwrap();
        })
        .unwrap();
}

fn fid_of(host: &Host, path: &str) -> afs::Fid {
    let client = host.client().clone();
    let path = path.to_string();
    host.afs_runtime()
        .block_on(async move { client.resolve(&path).await })
        .unwrap()
        .unwrap()
        .fid
}

#[test]
fn a_mapped_reader_sees_each_afsio_write_after_its_break() {
    let _g = shared();
    let host = Arc::new(host());
    let events = Arc::new(Events::default());
    host.pager().observe(events.clone());
    let path = unique_path("seed");
    put(&host, &path, &[0u8; 100]);
    let reader = spawn_guest(
        &host,
        "mmap-reader",
        &[
            &path,
            "--interval-ms",
            "10",
            "--changes-only",
            "--count",
            "4",
        ],
        Access::Read,
    );
    reader.wait_for_line("00");
    for v in 1u8..=3 {
        let mut data = vec![0u8; 100];
        data[0] = v;
        afsio_write(&path, &data);
        reader.wait_for_line(&format!("{v:02x}"));
    }
    let (code, lines) = reader.finish();
    assert_eq!(code.unwrap(), 0);
    assert_eq!(lines, ["00", "01", "02", "03"]);
    let seen = events.of(&path);
    let breaks = seen.iter().filter(|e| e.reason == Reason::Break).count();
    assert!(breaks >= 3, "each write revalidated on a break: {seen:?}");
    assert!(
        seen.iter().filter(|e| e.data_changed).count() >= 3,
        "{seen:?}"
    );
}

#[test]
fn two_guests_in_one_host_see_each_others_writes_at_once() {
    let _g = shared();
    let host = Arc::new(host());
    let path = unique_path("two");
    put(&host, &path, &[7u8; 10]);
    let reader = spawn_guest(
        &host,
        "mmap-reader",
        &[
            &path,
            "--interval-ms",
            "5",
            "--changes-only",
            "--count",
            "4",
        ],
        Access::Read,
    );
    reader.wait_for_line("07");
    let writer = spawn_guest(
        &host,
        "mmap-writer",
        &[&path, "--interval-ms", "300", "--count", "3"],
        Access::ReadWrite,
    );
    let (wcode, written) = writer.finish();
    assert_eq!(wcode.unwrap(), 0);
    assert_eq!(written, ["08", "09", "0a"]);
    let (rcode, read) = reader.finish();
    assert_eq!(rcode.unwrap(), 0);
    assert_eq!(read, ["07", "08", "09", "0a"]);
    assert_eq!(
        afsio_read(&path)[0],
        0x0a,
        "the writer's syncs reached the server"
    );
    let stats = host.pager().stats();
    assert_eq!(
        stats.zaps, 0,
        "our own stores break no promise: the reader saw the writes through the shared pages"
    );
}

#[test]
fn a_break_on_unchanged_data_costs_one_fetch_status_and_no_fetch_data() {
    let _g = shared();
    let host = Arc::new(host());
    let events = Arc::new(Events::default());
    host.pager().observe(events.clone());
    let path = unique_path("unchanged");
    let data = pattern(64 << 10, 3);
    put(&host, &path, &data);
    let fid = fid_of(&host, &path);
    // The guest maps the whole file and sums it after each change; here it is woken by
    // its own wait timing out... so use the reader, which touches the page every 10 ms.
    let reader = spawn_guest(
        &host,
        "mmap-reader",
        &[&path, "--interval-ms", "10", "--count", "150"],
        Access::Read,
    );
    reader.wait_for_line(&format!("{:02x}", data[0]));
    std::thread::sleep(Duration::from_millis(100));
    let fs = host.client().fs_stats();
    let (status0, data0) = (
        fs.fetch_status.load(Ordering::Relaxed),
        fs.fetch_data.load(Ordering::Relaxed),
    );
    let zaps0 = host.pager().stats().zaps;
    break_callback(&host, fid);
    let (code, lines) = reader.finish();
    assert_eq!(code.unwrap(), 0);
    assert!(lines.iter().all(|l| *l == format!("{:02x}", data[0])));
    assert_eq!(
        host.pager().stats().zaps - zaps0,
        1,
        "the break zapped the mapping"
    );
    let revalidated = events.of(&path);
    let after_break: Vec<_> = revalidated
        .iter()
        .filter(|e| e.reason == Reason::Break)
        .collect();
    assert_eq!(after_break.len(), 1, "{revalidated:?}");
    assert!(!after_break[0].data_changed);
    assert_eq!(fs.fetch_status.load(Ordering::Relaxed) - status0, 1);
    assert_eq!(fs.fetch_data.load(Ordering::Relaxed) - data0, 0);
}

#[test]
fn bad_mapping_requests_get_clear_errors_and_the_host_keeps_serving() {
    let _g = shared();
    let host = host();
    let path = unique_path("bad");
    put(&host, &path, &pattern(10_000, 1));
    let dir = cell().test_dir.clone();
    let outside = format!("/afs/{}/elsewhere", cell().name);
    let cases: [(&str, &str, &str); 9] = [
        (
            "unaligned-region",
            &path,
            "refused ErrorCode::InvalidArgument",
        ),
        (
            "unaligned-offset",
            &path,
            "refused ErrorCode::InvalidArgument",
        ),
        (
            "region-too-short",
            &path,
            "refused ErrorCode::InvalidArgument",
        ),
        (
            "length-over-4g",
            &path,
            "refused ErrorCode::InvalidArgument",
        ),
        ("zero-length", &path, "refused ErrorCode::InvalidArgument"),
        ("directory", &dir, "refused ErrorCode::IsDirectory"),
        ("not-granted", &outside, "refused ErrorCode::AccessDenied"),
        (
            "read-write-of-read-only",
            &path,
            "refused ErrorCode::ReadOnly",
        ),
        ("overlap", &path, "refused ErrorCode::InvalidArgument"),
    ];
    for (case, target, want) in cases {
        let (code, out) = run_captured(&host, "mmap-probe", &[case, target], Access::Read);
        assert_eq!(code, 0, "{case}: {out}");
        assert!(out.starts_with(want), "{case}: {out}");
        assert!(
            out.len() > want.len() + 4,
            "{case}: the error has a message: {out}"
        );
    }
    // A write through a read-only mapping traps, and the trap names the file: by the
    // guest's own code, and by the host's, writing a returned list where the guest's
    // allocator put it (inside the mapping).
    let lent = host.pager().stats().lent_to_host;
    for case in ["write-read-only", "host-writes-read-only"] {
        let grant = host.grant(&dir, Access::Read).unwrap();
        let config = GuestConfig::new("mmap-probe")
            .grant(grant)
            .arg(case)
            .arg(&path);
        let err = host
            .run_command(&guest("mmap-probe"), config)
            .expect_err("the write traps");
        let msg = format!("{err:#}");
        assert!(
            msg.contains(&format!("write to a read-only mapping of {path}")),
            "{case}: {msg}"
        );
    }
    assert_eq!(
        host.pager().stats().lent_to_host - lent,
        1,
        "the host's write went to a private page"
    );
    // The same host goes on serving guests.
    let (code, out) = run_captured(&host, "plugin-guest", &[&path], Access::Read);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("bytes=10000 "), "{out}");
}

#[test]
fn after_a_fileserver_restart_that_drops_callbacks_later_writes_are_still_seen() {
    let _g = exclusive();
    // A restarted fileserver that forgot us breaks nothing: the client's prober is what
    // notices (the server answers the probe with InitCallBackState3), so probe often here.
    let mut client = config();
    client.probe_interval = Some(Duration::from_secs(2));
    let host = Arc::new(
        Host::new(HostConfig::new(client, PagerConfig::default())).expect("start the host"),
    );
    let path = unique_path("restart");
    put(&host, &path, &[0u8; 10]);
    let reader = spawn_guest(
        &host,
        "mmap-reader",
        &[
            &path,
            "--interval-ms",
            "10",
            "--changes-only",
            "--count",
            "3",
        ],
        Access::Read,
    );
    reader.wait_for_line("00");
    afsio_write(&path, &[1u8; 10]);
    reader.wait_for_line("01");
    cell_sh(&["fs-restart", "drop"]);
    afsio_write(&path, &[2u8; 10]);
    reader.wait_for_line("02");
    let (code, lines) = reader.finish();
    assert_eq!(code.unwrap(), 0);
    assert_eq!(lines, ["00", "01", "02"]);
}

#[test]
fn a_guest_on_a_single_threaded_async_runtime_faults_without_deadlock() {
    let _g = shared();
    let host = host();
    let path = unique_path("async");
    put(&host, &path, &[1u8; 10]);
    let grant = host.grant(&cell().test_dir, Access::Read).unwrap();
    let mut config = GuestConfig::new("mmap-reader").grant(grant);
    for a in [
        path.as_str(),
        "--interval-ms",
        "10",
        "--changes-only",
        "--count",
        "2",
    ] {
        config = config.arg(a);
    }
    let out = config.capture_stdout(1 << 16);
    // The third party writes once the guest has printed the first value; the guest's next
    // read faults while it occupies the runtime's only thread.
    let writer = {
        let (path, out) = (path.clone(), out.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + SHORT;
            while !String::from_utf8_lossy(&out.contents()).contains("01") {
                assert!(Instant::now() < deadline, "the guest printed nothing");
                std::thread::sleep(Duration::from_millis(5));
            }
            afsio_write(&path, &[2u8; 10]);
        })
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let code = runtime
        .block_on(host.run_command_async(&guest("mmap-reader"), config))
        .expect("the guest runs");
    writer.join().unwrap();
    assert_eq!(code, 0);
    assert_eq!(String::from_utf8_lossy(&out.contents()), "01\n02\n");
}

/// A reader guest that maps a 10-byte file of `byte`s under `policy` and reads it every
/// 10 ms; then the fileserver stops and the file's callback is broken, so the reader's
/// next access faults while the server cannot be reached. The test starts it again.
struct Outage {
    host: Arc<Host>,
    path: String,
    reader: Running,
    zaps_before: u64,
    stopped: Instant,
}

impl Outage {
    fn begin(policy: OnUnreachable, tag: &str, byte: u8, count: Option<&str>) -> Outage {
        Outage::begin_with(policy, tag, byte, |path| {
            let mut args = vec![path.to_string(), "--interval-ms".into(), "10".into()];
            if let Some(count) = count {
                args.extend(["--count".into(), count.into()]);
            }
            ("mmap-reader", args)
        })
    }

    /// [`Outage::begin`] with another guest: `guest(path)` names it and its arguments; it
    /// must print the mapped byte as `%02x` lines.
    fn begin_with(
        policy: OnUnreachable,
        tag: &str,
        byte: u8,
        guest: impl FnOnce(&str) -> (&'static str, Vec<String>),
    ) -> Outage {
        let host = Arc::new(host_with(PagerConfig {
            on_unreachable: policy,
            ..PagerConfig::default()
        }));
        let path = unique_path(tag);
        put(&host, &path, &[byte; 10]);
        let fid = fid_of(&host, &path);
        let (wasm, args) = guest(&path);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let reader = spawn_guest(&host, wasm, &args, Access::Read);
        reader.wait_for_line(&format!("{byte:02x}"));
        cell_sh(&["fs-stop"]);
        let (stopped, zaps_before) = (Instant::now(), host.pager().stats().zaps);
        break_callback(&host, fid);
        Outage {
            host,
            path,
            reader,
            zaps_before,
            stopped,
        }
    }
}

#[test]
fn a_fault_while_the_server_is_down_traps_naming_the_file_under_the_trap_policy() {
    let _g = exclusive();
    let Outage {
        host, path, reader, ..
    } = Outage::begin(OnUnreachable::Trap, "down", 5, None);
    let (result, lines) = reader.finish();
    cell_sh(&["fs-start"]);
    let err = result.expect_err("the access traps");
    let msg = format!("{err:#}");
    assert!(
        msg.contains(&format!("AFS server unreachable: {path}")),
        "{msg}"
    );
    assert!(lines.iter().all(|l| l == "05"), "{lines:?}");
    // The host still serves once the server is back.
    let (code, out) = run_captured(&host, "plugin-guest", &[&path], Access::Read);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("bytes=10 sum=50 "), "{out}");
}

#[test]
fn a_fault_while_the_server_is_down_serves_the_cached_bytes_under_the_stale_policy() {
    let _g = exclusive();
    let outage = Outage::begin(OnUnreachable::Stale, "stale", 6, Some("200"));
    let (result, lines) = outage.reader.finish();
    cell_sh(&["fs-start"]);
    assert_eq!(result.expect("the guest goes on with the cached bytes"), 0);
    assert_eq!(lines.len(), 200);
    assert!(lines.iter().all(|l| l == "06"), "{lines:?}");
    assert!(
        outage.host.pager().stats().zaps > outage.zaps_before,
        "the break zapped the mapping"
    );
}

#[test]
fn a_fault_while_the_server_is_down_waits_for_it_under_the_wait_policy() {
    let _g = exclusive();
    let wait = OnUnreachable::Wait(Duration::from_secs(60));
    let Outage { reader, .. } = Outage::begin(wait, "wait", 7, Some("600"));
    // The reader's next access faults and stays in the fault while the server is down.
    std::thread::sleep(Duration::from_millis(500));
    let blocked_at = reader.lines().len();
    std::thread::sleep(Duration::from_secs(3));
    let still_at = reader.lines().len();
    cell_sh(&["fs-start"]);
    let (result, lines) = reader.finish();
    assert_eq!(
        still_at, blocked_at,
        "the guest went on while the server was down"
    );
    assert!(blocked_at < 600, "the guest finished before the break");
    assert_eq!(
        result.expect("the guest goes on once the server is back"),
        0
    );
    assert_eq!(lines.len(), 600);
    assert!(lines.iter().all(|l| l == "07"), "{lines:?}");
}

#[test]
fn a_fault_under_the_wait_policy_traps_when_the_wait_runs_out() {
    let _g = exclusive();
    let bound = Duration::from_secs(2);
    let outage = Outage::begin(OnUnreachable::Wait(bound), "waitout", 8, None);
    let (result, _) = outage.reader.finish();
    let waited = outage.stopped.elapsed();
    cell_sh(&["fs-start"]);
    let msg = format!("{:#}", result.expect_err("the access traps"));
    assert!(
        msg.contains(&format!("AFS server unreachable: {}", outage.path)),
        "{msg}"
    );
    assert!(
        waited >= bound,
        "trapped after {waited:?}, before the bound"
    );
}

#[test]
fn host_code_copying_a_page_that_must_trap_gets_the_cached_bytes_and_the_guest_traps() {
    let _g = exclusive();
    // The guest has the host copy its mapped bytes out (WASI stderr) before it reads them
    // itself: the host's copy faults first, in host code, where a trap would end the
    // process.
    // A '.' per copy on stderr.
    let outage = Outage::begin_with(OnUnreachable::Trap, "copyout", b'.', |path| {
        ("mmap-probe", vec!["copy-out".into(), path.into()])
    });
    let (result, lines) = outage.reader.finish();
    cell_sh(&["fs-start"]);
    let msg = format!("{:#}", result.expect_err("the guest's own access traps"));
    assert!(
        msg.contains(&format!("AFS server unreachable: {}", outage.path)),
        "{msg}"
    );
    assert!(lines.iter().all(|l| l == "2e"), "{lines:?}");
    let stats = outage.host.pager().stats();
    assert!(
        stats.lent_to_host >= 1,
        "the host's copy was lent the cached bytes"
    );
    assert!(stats.poisoned >= 1, "the guest's own access trapped");
    // The process is alive and the host serves the file again.
    let (code, out) = run_captured(&outage.host, "plugin-guest", &[&outage.path], Access::Read);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("bytes=10 sum=460 "), "{out}");
}

#[test]
fn host_code_touching_an_uncached_page_that_must_trap_gets_zeros_and_the_guest_traps() {
    let _g = exclusive();
    let host = Arc::new(host_with(PagerConfig {
        on_unreachable: OnUnreachable::Trap,
        ..PagerConfig::default()
    }));
    // Written by afsio, so that nothing of it is in this host's page store.
    let path = unique_path("uncached");
    afsio_write(&path, b"..........");
    let probe = spawn_guest(
        &host,
        "mmap-probe",
        &["copy-out-later", &path],
        Access::Read,
    );
    probe.wait_for_line("mapped");
    cell_sh(&["fs-stop"]);
    let (result, lines) = probe.finish();
    cell_sh(&["fs-start"]);
    let msg = format!("{:#}", result.expect_err("the guest's own access traps"));
    assert!(
        msg.contains(&format!("AFS server unreachable: {path}")),
        "{msg}"
    );
    // The host's copy got a page of zeros; the guest never read a byte.
    assert_eq!(lines, ["mapped"]);
    assert!(host.pager().stats().lent_to_host >= 1);
    let (code, out) = run_captured(&host, "plugin-guest", &[&path], Access::Read);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("bytes=10 sum=460 "), "{out}");
}
