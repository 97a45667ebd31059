//! Packet loss and a stopped fileserver.

// The fault lock is held for a whole test on purpose, across its awaits: it keeps
// cell-breaking tests apart from the others. Each test has its own runtime.
#![allow(clippy::await_holding_lock)]

mod common;

use std::time::{Duration, Instant};

use afs::client::{Client, ClientConfig};
use common::*;

/// Removes loss rules and restarts the fileserver even if a test fails.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = cell_command().args(["loss", "0"]).output();
        let _ = cell_command().arg("fs-start").output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_percent_loss_100mib_both_ways() {
    let _g = exclusive();
    let _restore = Restore;
    let client = client().await;
    let path = unique_path("lossy");
    let data = pattern(100 << 20, 5);
    cell_sh(&["loss", "5"]);
    write_all(&client, &path, &data).await.unwrap();
    let got = read_all(&client, &path).await.unwrap();
    cell_sh(&["loss", "0"]);
    assert_same("read under loss", &got, &data);
    assert_same(
        "afsio read of what we wrote under loss",
        &afsio_read(&path),
        &data,
    );
    client.remove(&path).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_fileserver_gives_clear_error_then_recovers() {
    let _g = exclusive();
    let _restore = Restore;
    let mut cfg: ClientConfig = config();
    cfg.rx.call.dead_time = Duration::from_secs(5);
    let client = Client::new(cfg).await.unwrap();
    let path = unique_path("down");
    write_all(&client, &path, b"still here").await.unwrap();
    let node = client.resolve(&path).await.unwrap();
    cell_sh(&["fs-stop"]);
    let start = Instant::now();
    let err = client.fetch_status(&node.cell, node.fid).await.unwrap_err();
    let took = start.elapsed();
    assert_eq!(err.kind(), afs::ErrorKind::ServerUnreachable, "{err}");
    assert!(
        err.to_string()
            .contains(&format!("server unreachable: {}:7000", cell().server)),
        "{err}"
    );
    assert!(took < Duration::from_secs(8), "error after {took:?}");
    cell_sh(&["fs-start"]);
    assert_eq!(read_all(&client, &path).await.unwrap(), b"still here");
    client.remove(&path).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_longer_than_promises_leads_to_revalidation() {
    use afs::cache::manager::CacheManager;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    struct LinkUp;
    impl Drop for LinkUp {
        fn drop(&mut self) {
            let _ = cell_command().args(["link", "up"]).output();
        }
    }
    let _g = exclusive();
    let _up = LinkUp;
    let mut cfg = config();
    cfg.max_promise = Some(Duration::from_secs(12));
    cfg.probe_interval = None;
    let client = Arc::new(Client::new(cfg).await.unwrap());
    let cache = CacheManager::new(client.clone(), Default::default());
    let path = unique_path("partition");
    write_all(&client, &path, &pattern(10000, 1)).await.unwrap();
    assert_eq!(cached_read(&cache, &path).await, pattern(10000, 1));
    let node = client.resolve(&path).await.unwrap();
    cell_sh(&["link", "down"]);
    // The server cannot tell us of this change: its break does not get through.
    afsio_write(&path, &pattern(10000, 2));
    // Our promise (capped at 12 s, trusted until 10 s before) runs out meanwhile.
    tokio::time::sleep(Duration::from_secs(3)).await;
    cell_sh(&["link", "up"]);
    assert!(
        client.check(node.fid) != afs::cache::validity::Check::Valid,
        "an expired promise is not trusted"
    );
    let before = client.fs_stats().fetch_status.load(Ordering::Relaxed);
    assert_eq!(
        cached_read(&cache, &path).await,
        pattern(10000, 2),
        "the change made during the partition is seen"
    );
    assert!(
        client.fs_stats().fetch_status.load(Ordering::Relaxed) > before,
        "the file was revalidated"
    );
    client.remove(&path).await.unwrap();
}
