//! Guests mapping AFS files, against the real cell, with afsio as the third party.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use afs_wasm_host::pager::{Access, PagerConfig};
use afs_wasm_host::runtime::{GuestConfig, Host, HostConfig};
use common::*;

fn guest(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    assert!(
        p.exists(),
        "{} is missing: run examples/build-guests.sh first (testcell/test.sh does)",
        p.display()
    );
    p
}

fn host() -> Host {
    Host::new(HostConfig::new(config(), PagerConfig::default())).expect("start the host")
}

/// Writes `data` as a new file with our own client (on the host's runtime).
fn put(host: &Host, path: &str, data: &[u8]) {
    let client = host.client().clone();
    let (path, data) = (path.to_string(), data.to_vec());
    host.afs_runtime()
        .block_on(async move { write_all(&client, &path, &data).await })
        .unwrap()
        .unwrap();
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
    let _ = Arc::strong_count(host.pager());
}
