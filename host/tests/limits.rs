//! Per-guest limits, against the real cell: a hostile guest (examples/mmap-abuse) runs
//! into each limit and fails alone, with a message naming it, while another guest on the
//! same host keeps following its file; the host's memory stays bounded.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use afs_wasm_host::pager::{Access, PagerConfig};
use afs_wasm_host::runtime::{CapturedOutput, GuestConfig, GuestLimits, Host, HostConfig};
use common::*;

/// Runs mmap-abuse CASE ARGS with `limits`; its exit (or failure) and its stdout.
fn abuse(host: &Host, limits: GuestLimits, args: &[&str]) -> (anyhow::Result<i32>, String) {
    let grant = host.grant(&cell().test_dir, Access::Read).unwrap();
    let mut config = GuestConfig::new("mmap-abuse").grant(grant).limits(limits);
    for a in args {
        config = config.arg(*a);
    }
    let out = config.capture_stdout(1 << 20);
    let result = host.run_command(&guest("mmap-abuse"), config);
    (
        result,
        String::from_utf8_lossy(&out.contents()).into_owned(),
    )
}

fn error_text(result: anyhow::Result<i32>) -> String {
    match result {
        Ok(code) => panic!("the guest should have failed; it exited with {code}"),
        Err(e) => format!("{e:#}"),
    }
}

/// A well-behaved guest following a file while the hostile one runs.
struct Follower {
    out: CapturedOutput,
    done: std::thread::JoinHandle<anyhow::Result<i32>>,
}

impl Follower {
    fn start(host: &Arc<Host>, path: &str) -> Self {
        let grant = host.grant(&cell().test_dir, Access::Read).unwrap();
        let mut config = GuestConfig::new("mmap-reader")
            .grant(grant)
            .arg(path)
            .arg("--interval-ms")
            .arg("20")
            .arg("--changes-only");
        config.limits.timeout = Some(Duration::from_secs(600));
        let out = config.capture_stdout(1 << 16);
        let (host, wasm) = (host.clone(), guest("mmap-reader"));
        let done = std::thread::spawn(move || host.run_command(&wasm, config));
        Follower { out, done }
    }

    fn last(&self) -> Option<String> {
        String::from_utf8_lossy(&self.out.contents())
            .lines()
            .last()
            .map(str::to_string)
    }

    fn wait_for(&self, want: &str) {
        let deadline = Instant::now() + SHORT;
        while self.last().as_deref() != Some(want) {
            assert!(
                !self.done.is_finished(),
                "the follower stopped: {:?}",
                self.last()
            );
            assert!(
                Instant::now() < deadline,
                "the follower never printed {want}; last {:?}",
                self.last()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[test]
fn a_hostile_guest_meets_every_limit_and_the_host_serves_another_guest_meanwhile() {
    let _g = shared();
    let host = Arc::new(Host::new(HostConfig::new(config(), PagerConfig::default())).unwrap());
    let followed = unique_path("limits-followed");
    let small = unique_path("limits-small");
    put(&host, &followed, &[0x01; 100]);
    put(&host, &small, &pattern(5000, 3));
    let follower = Follower::start(&host, &followed);
    follower.wait_for("01");
    let rss_before = vm_rss_kib() / 1024;
    let mut next = 1u8;
    // Another client (afsio) changes the followed file; the follower must see it.
    let mut change_followed = |_: &Host| {
        next += 1;
        afsio_write(&followed, &[next; 100]);
        follower.wait_for(&format!("{next:02x}"));
    };

    // Linear memory: growth past 64 MiB is denied and the trap says why.
    let limits = GuestLimits {
        max_memory_bytes: 64 << 20,
        ..GuestLimits::default()
    };
    let (result, out) = abuse(&host, limits, &["grow-memory"]);
    let err = error_text(result);
    assert!(
        err.contains("linear memory reached its limit of 67108864 bytes"),
        "{err}"
    );
    assert!(out.lines().count() <= 4, "grew past the limit: {out}");
    change_followed(&host);

    // Time: a spinning guest is stopped at its deadline.
    let limits = GuestLimits {
        timeout: Some(Duration::from_millis(300)),
        ..GuestLimits::default()
    };
    let started = Instant::now();
    let (result, _) = abuse(&host, limits, &["spin"]);
    let err = error_text(result);
    assert!(err.contains("time limit of 300ms"), "{err}");
    println!("spin stopped after {:?} (limit 300ms)", started.elapsed());
    change_followed(&host);

    // Mappings: the 9th is refused.
    let limits = GuestLimits {
        max_mappings: 8,
        ..GuestLimits::default()
    };
    let (result, out) = abuse(&host, limits, &["map-many", &small]);
    assert_eq!(result.unwrap(), 0);
    assert!(out.starts_with("refused LimitExceeded after 8:"), "{out}");
    assert!(out.contains("--max-mappings"), "{out}");

    // Mapped bytes: 32 MiB past the end of a 5000-byte file is refused up front...
    let limits = GuestLimits {
        max_mapped_bytes: 16 << 20,
        ..GuestLimits::default()
    };
    let (result, out) = abuse(
        &host,
        limits.clone(),
        &["map-past-end", &small, &(32u64 << 20).to_string()],
    );
    assert_eq!(result.map_err(|e| format!("{e:#}")), Ok(0), "{out}");
    assert!(out.starts_with("map: refused LimitExceeded"), "{out}");
    assert!(out.contains("--max-mapped-bytes"), "{out}");
    // ...a 1 GiB region is more than wasmtime lets a guest pass: a trap that says why...
    let gib = (1u64 << 30).to_string();
    let limits_1g = GuestLimits {
        max_memory_bytes: 2 << 30,
        ..limits.clone()
    };
    let err = error_text(abuse(&host, limits_1g, &["map-past-end", &small, &gib]).0);
    assert!(err.contains("a list longer than its limits allow"), "{err}");
    // ...and 16 MiB of zero pages past the end, faulted in, go with the mapping.
    let (result, out) = abuse(
        &host,
        limits,
        &["map-past-end", &small, &(16u64 << 20).to_string()],
    );
    assert_eq!(result.unwrap(), 0, "{out}");
    assert!(out.contains("touched 4096 pages"), "{out}");
    // The page store keeps the small file cached; the zero pages faulted in past its
    // end went with the mapping (they were the guest's, not the file's).
    let client = host.client().clone();
    let p = small.clone();
    let node = host
        .afs_runtime()
        .block_on(async move { client.resolve(&p).await })
        .unwrap()
        .unwrap();
    let cached = host.cache().pages().get(node.fid).expect("still cached");
    let kept =
        std::os::unix::fs::MetadataExt::blocks(&cached.memfd_file().metadata().unwrap()) * 512;
    println!("page store keeps {kept} bytes for the 5000-byte file after 16 MiB were mapped");
    assert!(
        kept <= 2 * 4096,
        "{kept} bytes kept past the end of the file"
    );
    change_followed(&host);

    // Bytes per copy: a 1 GiB read is refused before the host allocates it.
    let (result, out) = abuse(&host, GuestLimits::default(), &["read-huge", &small, &gib]);
    assert_eq!(result.unwrap(), 0);
    assert!(out.starts_with("read: refused LimitExceeded"), "{out}");
    assert!(out.contains("67108864"), "{out}");
    let (result, out) = abuse(
        &host,
        GuestLimits::default(),
        &["read-huge", &small, "10000"],
    );
    assert_eq!(result.unwrap(), 0);
    assert!(out.contains("read 5000 bytes"), "{out}");

    change_followed(&host);
    let rss_after = vm_rss_kib() / 1024;
    println!("host RSS: {rss_before} MiB before the hostile guests, {rss_after} MiB after");
    // The guests' memories and mapped zero pages are gone with them: what stays is
    // compiled code and allocator slack, far below one guest's 64 MiB memory limit.
    assert!(
        rss_after < rss_before + 64,
        "host RSS grew from {rss_before} to {rss_after} MiB"
    );
    assert!(!follower.done.is_finished(), "the follower stopped");
}

#[test]
fn the_cli_takes_limits_as_wasmtime_run_does() {
    let _g = shared();
    let out = afs_wasm()
        .args(["run", "-W", "timeout=200ms,max-memory-size=32M"])
        .arg(guest("mmap-abuse"))
        .arg("spin")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("time limit of 200ms (-W timeout)"), "{err}");

    let out = afs_wasm()
        .args(["run", "-W", "max-memory-size=32M"])
        .arg(guest("mmap-abuse"))
        .arg("grow-memory")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("limit of 33554432 bytes"), "{err}");

    let out = afs_wasm()
        .args(["run", "-W", "fuel=10"])
        .arg(guest("mmap-abuse"))
        .arg("spin")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("-W fuel: unknown"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
