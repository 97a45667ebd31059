//! Callback breaks and fileserver restarts, with afsio as the third party.

// The fault lock is held for a whole test on purpose, across its awaits: it keeps
// cell-breaking tests apart from the others. Each test has its own runtime.
#![allow(clippy::await_holding_lock)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use afs::cache::pages::FlushMode;
use afs::callback::CallbackEvent;
use common::*;

async fn next_event(
    rx: &mut tokio::sync::broadcast::Receiver<CallbackEvent>,
    want: impl Fn(&CallbackEvent) -> bool,
) -> CallbackEvent {
    let deadline = Instant::now() + SHORT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = tokio::time::timeout(left, rx.recv())
            .await
            .expect("callback event in time")
            .expect("event channel open");
        if want(&ev) {
            return ev;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn afsio_change_breaks_our_promise() {
    let _g = shared();
    let client = client().await;
    let path = unique_path("cb");
    write_all(&client, &path, b"before").await.unwrap();
    let node = client.resolve(&path).await.unwrap();
    assert!(
        client.promise(node.fid).is_some(),
        "FetchStatus gave a promise"
    );
    let mut events = client.subscribe();
    let mut lost = client.subscribe_lost();
    afsio_write(&path, b"after!");
    let ev = next_event(
        &mut events,
        |e| matches!(e, CallbackEvent::Broken { fids, .. } if fids.contains(&node.fid)),
    )
    .await;
    drop(ev);
    assert!(
        client.promise(node.fid).is_none(),
        "the break revoked the promise"
    );
    // The cache layer hears which cached files lost their promise, and why.
    let gone = tokio::time::timeout(SHORT, lost.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(gone.server, node.server);
    assert!(
        gone.files
            .contains(&(node.fid, afs::cache::validity::Why::Broken)),
        "{gone:?}"
    );
    assert_eq!(read_all(&client, &path).await.unwrap(), b"after!");
    client.remove(&path).await.unwrap();
}

#[test]
fn watch_reports_each_change() {
    let _g = shared();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let path = unique_path("watch");
    let client = rt.block_on(client());
    rt.block_on(write_all(&client, &path, b"v0")).unwrap();
    let mut child = afs_wasm()
        .args(["watch", "--count", "3", &path])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it holds its promise.
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.contains("watching 1 file"), "{line}");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    for i in 1..=3u8 {
        afsio_write(&path, &[b'v', b'0' + i]);
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert!(line.starts_with(&path), "{line}");
        assert!(line.contains(" delay="), "{line}");
    }
    assert!(child.wait().unwrap().success());
    rt.block_on(client.remove(&path)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_dropping_state_is_noticed_on_next_call() {
    let _g = exclusive();
    let client = client().await;
    let a = unique_path("rsta");
    let b = unique_path("rstb");
    write_all(&client, &a, b"a").await.unwrap();
    write_all(&client, &b, b"b").await.unwrap();
    let na = client.resolve(&a).await.unwrap();
    let nb = client.resolve(&b).await.unwrap();
    assert!(client.promise(na.fid).is_some() && client.promise(nb.fid).is_some());
    let mut events = client.subscribe();
    cell_sh(&["fs-restart", "drop"]);
    // Our next call makes the forgetful server ask who we are and reset us.
    let _ = client.fetch_status(&na.cell, na.fid).await.unwrap();
    next_event(
        &mut events,
        |e| matches!(e, CallbackEvent::ServerReset { server, .. } if *server == na.server),
    )
    .await;
    assert!(
        client.promise(nb.fid).is_none(),
        "every promise from that server was dropped"
    );
    // New promises work again: a change by afsio is seen.
    let nb = client.fetch_status(&nb.cell, nb.fid).await.unwrap();
    afsio_write(&b, b"B");
    next_event(
        &mut events,
        |e| matches!(e, CallbackEvent::Broken { fids, .. } if fids.contains(&nb.fid)),
    )
    .await;
    client.remove(&a).await.unwrap();
    client.remove(&b).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeping_state_still_delivers_breaks() {
    let _g = exclusive();
    let client = client().await;
    let path = unique_path("keep");
    write_all(&client, &path, b"x").await.unwrap();
    let node = client.resolve(&path).await.unwrap();
    let mut events = client.subscribe();
    cell_sh(&["fs-restart", "keep"]);
    afsio_write(&path, b"y");
    next_event(
        &mut events,
        |e| matches!(e, CallbackEvent::Broken { fids, .. } if fids.contains(&node.fid)),
    )
    .await;
    assert_eq!(read_all(&client, &path).await.unwrap(), b"y");
    client.remove(&path).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_validations_of_a_broken_file_cost_one_fetch_status() {
    use afs::cache::coherence::{StatusFetcher, Validator};
    use afs::cache::validity::DataChange;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    let _g = shared();
    let client = Arc::new(client().await);
    let path = unique_path("single");
    write_all(&client, &path, b"first").await.unwrap();
    let node = client.resolve(&path).await.unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let fetch: StatusFetcher = {
        let (client, calls, cell) = (client.clone(), calls.clone(), node.cell.clone());
        Arc::new(move |fid| {
            let (client, calls, cell) = (client.clone(), calls.clone(), cell.clone());
            Box::pin(async move {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok(client.fetch_status(&cell, fid).await?.status)
            })
        })
    };
    // The client is anonymous: the name its replies are recorded for.
    let caller: afs::cache::coherence::Caller = Arc::new(|_| Arc::from("anonymous"));
    let validator = Arc::new(Validator::new(client.coherence().clone(), caller, fetch));
    // resolve() left a valid promise in the client's table: nothing to ask.
    assert_eq!(validator.validate(node.fid).await.unwrap().why, None);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let mut events = client.subscribe();
    afsio_write(&path, b"other");
    let ev = next_event(
        &mut events,
        |e| matches!(e, CallbackEvent::Broken { fids, .. } if fids.contains(&node.fid)),
    )
    .await;
    // The client's callback service already applied the break to the shared table.
    drop(ev);
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let v = validator.clone();
            let fid = node.fid;
            tokio::spawn(async move { v.validate(fid).await.unwrap() })
        })
        .collect();
    let mut changes = 0;
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status.data_version(), node.status.data_version() + 1);
        changes += matches!(r.change, DataChange::ThirdParty { .. }) as u32;
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one FetchStatus for all 100"
    );
    assert_eq!(changes, 1);
    client.remove(&path).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_client_learns_of_a_forgetful_restart_by_probing() {
    let _g = exclusive();
    let mut cfg = config();
    cfg.probe_interval = Some(Duration::from_secs(2));
    let client = afs::client::Client::new(cfg).await.unwrap();
    let path = unique_path("probe");
    write_all(&client, &path, b"before").await.unwrap();
    let node = client.resolve(&path).await.unwrap();
    assert!(client.promise(node.fid).is_some());
    let mut events = client.subscribe();
    cell_sh(&["fs-restart", "drop"]);
    // No call of ours from here on: only the prober can make the server reset us.
    next_event(
        &mut events,
        |e| matches!(e, CallbackEvent::ServerReset { server, .. } if *server == node.server),
    )
    .await;
    assert!(
        client.promise(node.fid).is_none(),
        "the forgotten promise was dropped"
    );
    // The server resets us before it answers the probe: give the answer a moment.
    let deadline = Instant::now() + SHORT;
    let info = loop {
        let info = client
            .server_info(node.server)
            .expect("the server is known");
        if info.capabilities.is_some() || Instant::now() > deadline {
            break info;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(info.uuid.is_some(), "its UUID came with InitCallBackState3");
    assert!(
        info.capabilities.is_some(),
        "the probe learnt its capabilities"
    );
    afsio_write(&path, b"after!");
    assert_eq!(read_all(&client, &path).await.unwrap(), b"after!");
    client.remove(&path).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_reads_follow_twenty_third_party_changes() {
    use afs::cache::manager::CacheManager;
    use std::sync::Arc;

    let _g = shared();
    let client = Arc::new(client().await);
    let cache = CacheManager::new(client.clone(), Default::default());
    let path = unique_path("cached");
    let len = 3 * 4096 + 100;
    write_all(&client, &path, &pattern(len, 0)).await.unwrap();
    // The file's own fetches (directory reads can come and go as other tests
    // change the shared test directory).
    let fetches = || cache.pages().stats().snapshot().fetch_calls;
    assert_eq!(cached_read(&cache, &path).await, pattern(len, 0));
    let before = fetches();
    assert_eq!(cached_read(&cache, &path).await, pattern(len, 0));
    assert_eq!(
        fetches(),
        before,
        "an unchanged file is read without FetchData"
    );
    for i in 1..=20 {
        let data = pattern(len, i);
        afsio_write(&path, &data);
        assert_same(
            &format!("read after change {i}"),
            &cached_read(&cache, &path).await,
            &data,
        );
    }
    let before = fetches();
    cached_read(&cache, &path).await;
    assert_eq!(fetches(), before, "still no FetchData when nothing changed");
    client.remove(&path).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dirty_pages_survive_a_third_party_change_conflict_and_win_when_told() {
    use afs::cache::manager::CacheManager;
    use std::sync::Arc;

    let _g = shared();
    let client = Arc::new(client().await);
    let cache = CacheManager::new(client.clone(), Default::default());
    let path = unique_path("dirty");
    let page = 4096;
    write_all(&client, &path, &pattern(3 * page, 1))
        .await
        .unwrap();
    assert_eq!(cached_read(&cache, &path).await, pattern(3 * page, 1));
    // Our change to the middle page, not yet stored.
    let ours = vec![0xAB; page];
    let node = cache.write(&path, page as u64, &ours).await.unwrap();
    // Meanwhile a third party rewrites the whole file.
    let theirs = pattern(3 * page, 2);
    afsio_write(&path, &theirs);
    let mut expect = theirs.clone();
    expect[page..2 * page].copy_from_slice(&ours);
    assert_same(
        "clean pages refetched, dirty page kept",
        &cached_read(&cache, &path).await,
        &expect,
    );
    // A plain flush refuses: our page was written on a version that is gone.
    let err = cache.flush(&node, FlushMode::Normal).await.unwrap_err();
    assert_eq!(err.kind(), afs::error::ErrorKind::Conflict, "{err}");
    assert_same("the server keeps theirs", &afsio_read(&path), &theirs);
    // Told to overwrite, our page wins over theirs (last writer wins, page by page).
    let report = cache.flush(&node, FlushMode::Overwrite).await.unwrap();
    assert_eq!(report.store_calls, 1);
    assert_same(
        "the server after our overwriting flush",
        &afsio_read(&path),
        &expect,
    );
    client.remove(&path).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_a_file_larger_than_the_budget_stays_within_it() {
    use afs::cache::manager::CacheManager;
    use afs::cache::pages::PageStoreConfig;
    use std::sync::Arc;

    let _g = shared();
    let client = Arc::new(client().await);
    let budget = 8u64 << 20;
    let config = PageStoreConfig {
        budget_bytes: budget,
        ..PageStoreConfig::default()
    };
    let cache = CacheManager::new(client.clone(), config);
    let path = unique_path("budget");
    let data = pattern(40 << 20, 9);
    write_all(&client, &path, &data).await.unwrap();
    let mut got = Vec::with_capacity(data.len());
    let mut peak = 0;
    cache
        .read(&path, |c| {
            got.extend_from_slice(c);
            peak = peak.max(cache.pages().present_bytes());
            Ok(())
        })
        .await
        .unwrap();
    assert_same("read larger than the budget", &got, &data);
    assert!(peak <= budget, "cache held {peak} bytes, budget {budget}");
    assert!(cache.pages().present_bytes() <= budget);
    assert!(cache.pages().stats().snapshot().pages_evicted > 0);
    client.remove(&path).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volume_wide_break_revalidates_every_cached_file_once() {
    use afs::cache::manager::CacheManager;
    use afs::proto::cb::CbRequest;
    use afs::types::{CallBack, Fid};
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    // Counts every FetchStatus, the shared directory's included: run alone.
    let _g = exclusive();
    let client = Arc::new(client().await);
    let cache = CacheManager::new(client.clone(), Default::default());
    let paths: Vec<String> = (0..3).map(|i| unique_path(&format!("vol{i}"))).collect();
    for (i, p) in paths.iter().enumerate() {
        write_all(&client, p, &pattern(5000, i as u64))
            .await
            .unwrap();
        cached_read(&cache, p).await;
    }
    let node = client.resolve(&paths[0]).await.unwrap();
    let volume = node.fid.volume;
    let stats = client.fs_stats();
    let (status0, data0) = (
        stats.fetch_status.load(Ordering::Relaxed),
        stats.fetch_data.load(Ordering::Relaxed),
    );
    // Deliver a volume-wide break as a fileserver would: an Rx call to our
    // callback service (OpenAFS sends these for read-only volumes).
    let fileserver = rx::Endpoint::bind("0.0.0.0:0".parse().unwrap(), Default::default())
        .await
        .unwrap();
    let break_all = CbRequest::CallBack {
        fids: vec![Fid::new(volume, 0, 0)],
        callbacks: vec![CallBack::default()],
    };
    let port = client.endpoint().local_addr().port();
    let ours = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    // Only a fileserver's breaks count: this one is made another address of the
    // real one (a multihomed server, as the VLDB would list it).
    let here = std::net::SocketAddr::from(([127, 0, 0, 1], fileserver.local_addr().port()));
    client.coherence().learn_server(None, &[node.server, here]);
    fileserver
        .make_call(ours, afs::callback::SERVICE, &break_all.encode())
        .await
        .unwrap();
    for (i, p) in paths.iter().enumerate() {
        assert_eq!(cached_read(&cache, p).await, pattern(5000, i as u64));
    }
    assert_eq!(
        stats.fetch_status.load(Ordering::Relaxed) - status0,
        4,
        "one FetchStatus per cached file of the volume: the three files and their directory"
    );
    assert_eq!(
        stats.fetch_data.load(Ordering::Relaxed),
        data0,
        "unchanged files are not fetched again"
    );
    for p in &paths {
        client.remove(p).await.unwrap();
    }
}
