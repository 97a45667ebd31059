//! Page-store tests against an in-memory fake fileserver.

use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use super::*;

/// A fileserver holding one file in memory; counts fetches and records stores.
#[derive(Default)]
struct FakeServer {
    data: Mutex<Vec<u8>>,
    dv: AtomicU64,
    fetches: Mutex<Vec<(u64, u64)>>,
    stores: Mutex<Vec<(u64, u64, u64)>>,
    delay: Option<Duration>,
    fail_fetch: AtomicBool,
    fail_store: AtomicBool,
}

fn pattern(i: u64) -> u8 {
    (i % 251) as u8 ^ (i / PAGE_SIZE) as u8
}

impl FakeServer {
    fn new(len: u64) -> Arc<Self> {
        Self::build(len, None)
    }

    fn build(len: u64, delay: Option<Duration>) -> Arc<Self> {
        Arc::new(Self {
            data: Mutex::new((0..len).map(pattern).collect()),
            dv: AtomicU64::new(1),
            delay,
            ..Self::default()
        })
    }

    fn fetch_calls(&self) -> usize {
        self.fetches.lock().unwrap().len()
    }

    fn stores(&self) -> Vec<(u64, u64, u64)> {
        self.stores.lock().unwrap().clone()
    }

    fn bytes(&self, range: std::ops::Range<usize>) -> Vec<u8> {
        self.data.lock().unwrap()[range].to_vec()
    }

    /// Someone else changes the file: new bytes at `offset`, DataVersion + 1.
    fn third_party_write(&self, offset: usize, bytes: &[u8]) {
        self.data.lock().unwrap()[offset..offset + bytes.len()].copy_from_slice(bytes);
        self.dv.fetch_add(1, Ordering::SeqCst);
    }
}

impl Fetcher for FakeServer {
    fn fetch(&self, _fid: Fid, offset: u64, len: u64) -> BoxFuture<'_, Result<Fetched, BoxError>> {
        Box::pin(async move {
            if let Some(d) = self.delay {
                tokio::time::sleep(d).await;
            }
            self.fetches.lock().unwrap().push((offset, len));
            if self.fail_fetch.load(Ordering::SeqCst) {
                return Err("server unreachable".into());
            }
            let data = self.data.lock().unwrap();
            let start = (offset as usize).min(data.len());
            let end = (offset + len).min(data.len() as u64) as usize;
            // Two segments, to exercise reassembly from transport buffers.
            let mid = start + (end - start) / 3;
            Ok(Fetched {
                data: vec![
                    Bytes::copy_from_slice(&data[start..mid]),
                    Bytes::copy_from_slice(&data[mid..end]),
                ],
                data_version: self.dv.load(Ordering::SeqCst),
            })
        })
    }
}

impl Storer for FakeServer {
    fn store(
        &self,
        _fid: Fid,
        offset: u64,
        data: Bytes,
        file_len: u64,
    ) -> BoxFuture<'_, Result<u64, BoxError>> {
        Box::pin(async move {
            self.stores
                .lock()
                .unwrap()
                .push((offset, data.len() as u64, file_len));
            if self.fail_store.load(Ordering::SeqCst) {
                return Err("store refused".into());
            }
            let mut v = self.data.lock().unwrap();
            v.resize(file_len as usize, 0);
            let end = offset as usize + data.len();
            if v.len() < end {
                v.resize(end, 0);
            }
            v[offset as usize..end].copy_from_slice(&data);
            Ok(self.dv.fetch_add(1, Ordering::SeqCst) + 1)
        })
    }
}

const FID: Fid = Fid::new(536870912, 2, 1);
const MIB: u64 = 1 << 20;

fn store_with(budget: u64, chunk: u64) -> PageStore {
    PageStore::new(PageStoreConfig {
        budget_bytes: budget,
        chunk_bytes: chunk,
        ..PageStoreConfig::default()
    })
}

fn expected(range: std::ops::Range<u64>) -> Vec<u8> {
    range.map(pattern).collect()
}

/// Wait until no fetch is in flight (read-ahead runs in the background).
async fn settle(file: &FileCache) {
    for _ in 0..1000 {
        if file.lock().inflight.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("fetches did not finish");
}

#[tokio::test]
async fn first_read_fetches_second_read_hits() {
    let server = FakeServer::new(MIB);
    let store = PageStore::new(PageStoreConfig::default());
    store.open(FID, MIB).unwrap();
    let got = store.read(FID, 0, 100_000, &server).await.unwrap();
    assert_eq!(got, expected(0..100_000));
    assert_eq!(server.fetch_calls(), 1);
    let s = store.stats().snapshot();
    assert_eq!(s.fetch_calls, 1);
    assert_eq!(
        s.pages_fetched, 256,
        "the whole 1 MiB chunk came in one fetch"
    );
    assert_eq!(s.hits, 0);

    let again = store.read(FID, 0, 100_000, &server).await.unwrap();
    assert_eq!(again, got);
    assert_eq!(server.fetch_calls(), 1, "a re-read fetches nothing");
    assert_eq!(store.stats().snapshot().hits, 25);
    let file = store.get(FID).unwrap();
    assert_eq!(file.page_version(0), Some(1));
}

#[tokio::test]
async fn sequential_scan_uses_large_fetches_and_read_ahead() {
    let len = 64 * MIB;
    let server = FakeServer::new(len);
    let store = PageStore::new(PageStoreConfig::default());
    let file = store.open(FID, len).unwrap();
    let mut buf = vec![0; 64 << 10];
    let mut offset = 0;
    while offset < len {
        let n = file.read_at(offset, &mut buf, &server).await.unwrap();
        assert_eq!(n, buf.len());
        assert!(
            buf[..n] == expected(offset..offset + n as u64)[..],
            "bytes at {offset}"
        );
        offset += n as u64;
    }
    settle(&file).await;
    let calls = server.fetch_calls();
    assert!(calls < 100, "{calls} fetch calls for a 64 MiB scan");
    let s = store.stats().snapshot();
    assert_eq!(s.pages_fetched, len / PAGE_SIZE);
    assert_eq!(s.bytes_fetched, len);
    assert!(
        s.hits > s.pages_fetched / 2,
        "read-ahead made most reads hits: {s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_readers_of_a_missing_page_cause_one_fetch() {
    let server = FakeServer::build(4 * MIB, Some(Duration::from_millis(50)));
    let store = PageStore::new(PageStoreConfig::default());
    store.open(FID, 4 * MIB).unwrap();
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (store, server) = (store.clone(), server.clone());
        tasks.push(tokio::spawn(async move {
            store.read(FID, 8192, 4096, &server).await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), expected(8192..12288));
    }
    let covering = server
        .fetches
        .lock()
        .unwrap()
        .iter()
        .filter(|(off, len)| *off <= 8192 && 8192 < off + len)
        .count();
    assert_eq!(covering, 1, "fetches: {:?}", server.fetches.lock().unwrap());
}

#[tokio::test]
async fn flush_coalesces_adjacent_dirty_pages() {
    let server = FakeServer::new(MIB);
    let store = PageStore::new(PageStoreConfig::default());
    let file = store.open(FID, MIB).unwrap();
    let page = |b: u8, n: u64| vec![b; (n * PAGE_SIZE) as usize];

    // Whole pages need no fetch.
    file.write_at(0, &page(0xaa, 16), &server).await.unwrap();
    assert_eq!(server.fetch_calls(), 0);
    assert_eq!(store.stats().snapshot().pages_dirty, 16);
    assert!(file.is_dirty(15) && !file.is_dirty(16));

    let report = file.flush(&*server, FlushMode::Normal).await.unwrap();
    assert_eq!(server.stores(), vec![(0, 16 * PAGE_SIZE, MIB)]);
    assert_eq!(report.store_calls, 1);
    assert_eq!(report.pages_flushed, 16);
    assert_eq!(report.data_version, Some(2));
    assert!(!report.third_party_change);
    assert_eq!(store.stats().snapshot().pages_dirty, 0);
    assert_eq!(file.page_version(3), Some(2));
    assert_eq!(server.bytes(0..65536), page(0xaa, 16));

    // Two runs with a gap: two stores.
    file.write_at(20 * PAGE_SIZE, &page(1, 4), &server)
        .await
        .unwrap();
    file.write_at(30 * PAGE_SIZE, &page(2, 2), &server)
        .await
        .unwrap();
    let report = file.flush(&*server, FlushMode::Normal).await.unwrap();
    assert_eq!(report.store_calls, 2);
    assert_eq!(
        server.stores()[1..],
        [
            (20 * PAGE_SIZE, 4 * PAGE_SIZE, MIB),
            (30 * PAGE_SIZE, 2 * PAGE_SIZE, MIB)
        ]
    );
    let s = store.stats().snapshot();
    assert_eq!(
        (s.store_calls, s.pages_flushed, s.bytes_stored),
        (3, 22, 22 * PAGE_SIZE)
    );
    assert_eq!(
        file.flush(&*server, FlushMode::Normal)
            .await
            .unwrap()
            .store_calls,
        0,
        "nothing left"
    );
}

#[tokio::test]
async fn partial_write_fetches_the_page_first() {
    let server = FakeServer::new(MIB);
    let store = PageStore::new(PageStoreConfig::default());
    let file = store.open(FID, MIB).unwrap();
    file.write_at(5000, b"0123456789", &server).await.unwrap();
    assert_eq!(server.fetch_calls(), 1);
    let got = store.read(FID, 4096, 4096, &server).await.unwrap();
    let mut want = expected(4096..8192);
    want[904..914].copy_from_slice(b"0123456789");
    assert_eq!(got, want);
    file.flush(&*server, FlushMode::Normal).await.unwrap();
    assert_eq!(server.stores(), vec![(4096, 4096, MIB)]);
    assert_eq!(server.bytes(4096..8192), want);
}

#[tokio::test]
async fn invalidate_clean_keeps_dirty_pages_and_refetches_clean_ones() {
    let server = FakeServer::new(MIB);
    let store = PageStore::new(PageStoreConfig::default());
    let file = store.open(FID, MIB).unwrap();
    store.read(FID, 0, MIB, &server).await.unwrap();
    let mine = vec![0x5a; PAGE_SIZE as usize];
    file.write_at(3 * PAGE_SIZE, &mine, &server).await.unwrap();
    server.third_party_write(0, b"changed elsewhere");

    let dropped = store.invalidate_clean(FID).unwrap();
    assert_eq!(dropped, 255);
    assert!(!file.is_present(0) && file.is_present(3) && file.is_dirty(3));
    assert_eq!(store.stats().snapshot().pages_present, 1);

    // The punched pages really are zeros in the memfd.
    let mut raw = vec![1u8; 8192];
    file.memfd_file().read_exact_at(&mut raw, 0).unwrap();
    assert!(raw.iter().all(|&b| b == 0));

    let calls = server.fetch_calls();
    let head = store.read(FID, 0, 17, &server).await.unwrap();
    assert_eq!(head, b"changed elsewhere");
    assert_eq!(server.fetch_calls(), calls + 1, "clean data is refetched");
    assert_eq!(file.page_version(0), Some(2));
    let page3 = store
        .read(FID, 3 * PAGE_SIZE, PAGE_SIZE, &server)
        .await
        .unwrap();
    assert_eq!(page3, mine, "the dirty page survived");

    let report = file.flush(&*server, FlushMode::Normal).await.unwrap();
    assert!(!report.third_party_change, "dv 2 was seen by the refetch");
    assert_eq!(server.bytes(3 * 4096..4 * 4096), mine);
}

#[tokio::test]
async fn invalidate_stale_drops_only_old_versions() {
    let server = FakeServer::new(2 * MIB);
    let store = PageStore::new(PageStoreConfig::default());
    let file = store.open(FID, 2 * MIB).unwrap();
    // Neither read looks sequential, so no read-ahead blurs the versions.
    store.read(FID, MIB + 100, 10, &server).await.unwrap();
    server.third_party_write(0, b"x");
    store.read(FID, 0, 10, &server).await.unwrap();
    settle(&file).await;
    assert_eq!(
        (file.page_version(0), file.page_version(256)),
        (Some(2), Some(1))
    );
    assert_eq!(file.invalidate_stale(2).unwrap(), 256);
    assert!(file.is_present(0) && !file.is_present(256));
    assert_eq!(server.fetch_calls(), 2);
}

#[tokio::test]
async fn eviction_keeps_a_large_scan_within_budget() {
    let (budget, len) = (4 * MIB, 16 * MIB);
    let server = FakeServer::new(len);
    let store = store_with(budget, 256 << 10);
    let file = store.open(FID, len).unwrap();
    let mut buf = vec![0; 64 << 10];
    let mut max_present = 0;
    for pass in 0..2 {
        let mut offset = 0;
        while offset < len {
            let n = file.read_at(offset, &mut buf, &server).await.unwrap();
            assert!(
                buf[..n] == expected(offset..offset + n as u64)[..],
                "pass {pass} at {offset}"
            );
            max_present = max_present.max(store.present_bytes());
            offset += n as u64;
        }
    }
    settle(&file).await;
    let s = store.stats().snapshot();
    assert!(
        max_present <= budget,
        "{max_present} bytes present, budget {budget}"
    );
    assert!(s.pages_evicted > 0);
    assert_eq!(s.over_budget, 0);
    assert_eq!(s.pages_present, file.page_counts().0);
    assert!(
        server.fetch_calls() < 200,
        "{} fetches",
        server.fetch_calls()
    );
}

#[tokio::test]
async fn dirty_pages_are_never_evicted() {
    let server = FakeServer::new(4 * MIB);
    let store = store_with(MIB, 256 << 10);
    let file = store.open(FID, 4 * MIB).unwrap();
    let data = vec![7u8; (2 * MIB) as usize];
    file.write_at(0, &data, &server).await.unwrap();
    let s = store.stats().snapshot();
    assert_eq!(s.pages_dirty, 512);
    assert!(s.over_budget > 0, "over budget is reported");
    // Reading elsewhere must not push the dirty pages out.
    store.read(FID, 3 * MIB, 64 << 10, &server).await.unwrap();
    assert_eq!(file.page_counts().1, 512);
    assert!((0..512).all(|p| file.is_dirty(p)));
    let report = file.flush(&*server, FlushMode::Normal).await.unwrap();
    assert_eq!(report.pages_flushed, 512);
    assert_eq!(server.bytes(0..(2 * MIB) as usize), data);
    // Once clean, they can go.
    store.evict();
    assert!(store.present_bytes() <= MIB);
}

#[tokio::test]
async fn held_files_are_not_evicted() {
    let server = FakeServer::new(8 * MIB);
    let store = store_with(2 * MIB, 256 << 10);
    let held_fid = Fid::new(1, 2, 3);
    let held = store.open(held_fid, MIB).unwrap();
    store.read(held_fid, 0, MIB, &server).await.unwrap();
    settle(&held).await;
    let _hold = store.hold(held_fid).unwrap();
    let file = store.open(FID, 8 * MIB).unwrap();
    let mut buf = vec![0; 64 << 10];
    for off in (0..8 * MIB).step_by(buf.len()) {
        file.read_at(off, &mut buf, &server).await.unwrap();
    }
    settle(&file).await;
    assert_eq!(held.page_counts().0, 256, "the held file kept every page");
    assert!(store.present_bytes() <= 2 * MIB);
}

#[tokio::test]
async fn bad_offsets_are_errors_and_eof_reads_are_short() {
    let server = FakeServer::new(10_000);
    let store = PageStore::new(PageStoreConfig::default());
    let file = store.open(FID, 10_000).unwrap();
    assert_eq!(
        store.read(FID, 9_000, 5_000, &server).await.unwrap(),
        expected(9_000..10_000)
    );
    assert!(store
        .read(FID, 10_000, 10, &server)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .read(FID, MAX_FILE_SIZE - 1, 1, &server)
        .await
        .unwrap()
        .is_empty());
    let too_far = [u64::MAX, u64::MAX - 10, MAX_FILE_SIZE];
    for off in too_far {
        let err = store.read(FID, off, 100, &server).await.unwrap_err();
        assert!(matches!(err, PageError::OutOfRange { .. }), "{err}");
        let err = file.write_at(off, b"x", &server).await.unwrap_err();
        assert!(matches!(err, PageError::OutOfRange { .. }), "{err}");
    }
    let mut buf = [0u8; 16];
    assert!(file.read_at(u64::MAX, &mut buf, &server).await.is_err());
    assert!(file.set_len(u64::MAX).is_err());
    assert!(store.open(Fid::new(9, 9, 9), u64::MAX).is_err());
    assert!(matches!(
        store.read(Fid::new(7, 7, 7), 0, 1, &server).await,
        Err(PageError::NotOpen(_))
    ));
}

#[tokio::test]
async fn writes_past_the_end_extend_with_zeros_and_no_fetch() {
    let server = FakeServer::new(10_000);
    let store = PageStore::new(PageStoreConfig::default());
    let file = store.open(FID, 10_000).unwrap();
    file.write_at(100_000, b"tail", &server).await.unwrap();
    assert_eq!(
        server.fetch_calls(),
        0,
        "nothing past the server's end is fetched"
    );
    assert_eq!(file.len(), 100_004);
    let hole = store.read(FID, 20_000, 80_000, &server).await.unwrap();
    assert!(hole.iter().all(|&b| b == 0));
    let head = store.read(FID, 0, 10_000, &server).await.unwrap();
    assert_eq!(head, expected(0..10_000));
    let report = file.flush(&*server, FlushMode::Normal).await.unwrap();
    assert_eq!(report.store_calls, 1);
    assert_eq!(server.stores(), vec![(98_304, 1_700, 100_004)]);
    assert_eq!(server.bytes(100_000..100_004), b"tail");
    assert!(server.bytes(10_000..100_000).iter().all(|&b| b == 0));
}

#[tokio::test]
async fn set_len_shrink_then_extend_stores_a_truncation_first() {
    let len = 65_536;
    let server = FakeServer::new(len);
    let store = PageStore::new(PageStoreConfig::default());
    let file = store.open(FID, len).unwrap();
    store.read(FID, 0, len, &server).await.unwrap();
    store.set_len(FID, 5_000).unwrap();
    assert_eq!(
        store.read(FID, 0, len, &server).await.unwrap(),
        expected(0..5_000)
    );
    store.set_len(FID, 20_000).unwrap();
    let calls = server.fetch_calls();
    let got = store.read(FID, 0, len, &server).await.unwrap();
    assert_eq!(got.len(), 20_000);
    assert_eq!(got[..5_000], expected(0..5_000)[..]);
    assert!(
        got[5_000..].iter().all(|&b| b == 0),
        "old bytes must not come back"
    );
    assert_eq!(server.fetch_calls(), calls);
    assert!(file.has_unflushed());

    file.flush(&*server, FlushMode::Normal).await.unwrap();
    assert_eq!(
        server.stores(),
        vec![(5_000, 0, 5_000), (20_000, 0, 20_000)]
    );
    assert_eq!(server.bytes(0..5_000), expected(0..5_000));
    assert!(server.bytes(5_000..20_000).iter().all(|&b| b == 0));
    assert_eq!(server.data.lock().unwrap().len(), 20_000);
    assert!(!file.has_unflushed());
}

#[tokio::test]
async fn own_stores_are_told_from_third_party_changes() {
    let server = FakeServer::new(MIB);
    let store = PageStore::new(PageStoreConfig::default());
    let file = store.open(FID, MIB).unwrap();
    store.read(FID, 0, 10, &server).await.unwrap();
    assert_eq!(file.data_version(), Some(1));
    file.write_at(0, &[1; 4096], &server).await.unwrap();
    let report = file.flush(&*server, FlushMode::Normal).await.unwrap();
    assert_eq!(report.data_version, Some(2));
    assert!(!report.third_party_change);
    assert_eq!(
        file.page_version(100),
        Some(2),
        "clean pages restamped after our own store"
    );

    server.third_party_write(8192, b"z");
    file.write_at(0, &[2; 4096], &server).await.unwrap();
    let report = file.flush(&*server, FlushMode::Normal).await.unwrap();
    assert_eq!(report.data_version, Some(4));
    assert!(report.third_party_change);
    assert_eq!(
        file.page_version(100),
        Some(2),
        "not restamped: it may be stale"
    );
}

#[tokio::test]
async fn truncate_to_applies_a_third_party_shrink() {
    let len = 65_536;
    let server = FakeServer::new(len);
    let store = PageStore::new(PageStoreConfig::default());
    let file = store.open(FID, len).unwrap();
    store.read(FID, 0, len, &server).await.unwrap();
    server.data.lock().unwrap().truncate(6_000);
    store.truncate_to(FID, 6_000).unwrap();
    assert_eq!(file.len(), 6_000);
    assert!(!file.is_present(2));
    let mut raw = vec![1u8; 4096 - 1904];
    file.memfd_file().read_exact_at(&mut raw, 6_000).unwrap();
    assert!(raw.iter().all(|&b| b == 0), "tail of the last page zeroed");
    assert_eq!(
        store.read(FID, 0, len, &server).await.unwrap(),
        expected(0..6_000)
    );
    assert!(!file.has_unflushed());
    store.set_len(FID, 8_000).unwrap();
    let got = store.read(FID, 0, len, &server).await.unwrap();
    assert!(got[6_000..].iter().all(|&b| b == 0));
}

#[tokio::test]
async fn failed_fetches_reach_every_waiter_and_can_be_retried() {
    let server = FakeServer::new(MIB);
    server.fail_fetch.store(true, Ordering::SeqCst);
    let store = PageStore::new(PageStoreConfig::default());
    store.open(FID, MIB).unwrap();
    let err = store.read(FID, 0, 10, &server).await.unwrap_err();
    assert!(matches!(err, PageError::Fetch { .. }), "{err}");
    assert!(err.to_string().contains("server unreachable"));
    server.fail_fetch.store(false, Ordering::SeqCst);
    assert_eq!(
        store.read(FID, 0, 10, &server).await.unwrap(),
        expected(0..10)
    );
}

#[tokio::test]
async fn failed_stores_keep_pages_dirty() {
    let server = FakeServer::new(MIB);
    let store = PageStore::new(PageStoreConfig::default());
    let file = store.open(FID, MIB).unwrap();
    file.write_at(0, &[3; 8192], &server).await.unwrap();
    server.fail_store.store(true, Ordering::SeqCst);
    let err = file.flush(&*server, FlushMode::Normal).await.unwrap_err();
    assert!(matches!(err, PageError::Store { .. }), "{err}");
    assert_eq!(file.page_counts().1, 2);
    store.evict();
    assert!(file.is_present(0) && file.is_present(1));
    server.fail_store.store(false, Ordering::SeqCst);
    assert_eq!(
        file.flush(&*server, FlushMode::Normal)
            .await
            .unwrap()
            .pages_flushed,
        2
    );
    assert_eq!(server.bytes(0..8192), vec![3; 8192]);
}

#[tokio::test]
async fn stores_are_capped_in_size() {
    let server = FakeServer::new(MIB);
    let store = PageStore::new(PageStoreConfig {
        max_store_bytes: 256 << 10,
        ..PageStoreConfig::default()
    });
    let file = store.open(FID, MIB).unwrap();
    file.write_at(0, &vec![9; MIB as usize], &server)
        .await
        .unwrap();
    let report = file.flush(&*server, FlushMode::Normal).await.unwrap();
    assert_eq!(report.store_calls, 4);
    assert_eq!(report.bytes_stored, MIB);
}

#[tokio::test]
async fn forget_and_prune_release_idle_files() {
    let server = FakeServer::new(MIB);
    let store = store_with(MIB, 256 << 10);
    let file = store.open(FID, MIB).unwrap();
    file.write_at(0, &[1; 4096], &server).await.unwrap();
    drop(file);
    assert!(!store.forget(FID), "unflushed changes keep it");
    store.flush(FID, &*server, FlushMode::Normal).await.unwrap();
    store.evict();
    assert_eq!(store.prune_idle(), 0, "still has a clean page");
    store.invalidate_clean(FID).unwrap();
    assert_eq!(store.prune_idle(), 1);
    assert!(store.get(FID).is_none());
    assert_eq!(store.stats().snapshot().pages_present, 0);
}

#[tokio::test]
async fn a_cancelled_reader_does_not_strand_the_fetch() {
    let server = FakeServer::build(MIB, Some(Duration::from_millis(30)));
    let store = PageStore::new(PageStoreConfig::default());
    store.open(FID, MIB).unwrap();
    let (s2, srv2) = (store.clone(), server.clone());
    let first = tokio::spawn(async move { s2.read(FID, 0, 10, &srv2).await });
    tokio::time::sleep(Duration::from_millis(5)).await;
    first.abort();
    assert_eq!(
        store.read(FID, 0, 10, &server).await.unwrap(),
        expected(0..10)
    );
    assert_eq!(
        server.fetch_calls(),
        1,
        "the second reader joined the running fetch"
    );
}

#[tokio::test]
async fn populate_fetches_only_missing_pages_and_copies_nothing_out() {
    let server = FakeServer::new(4 * MIB);
    let store = PageStore::new(PageStoreConfig::default());
    let file = store.open(FID, 4 * MIB).unwrap();
    file.populate(MIB, 2 * MIB, &server).await.unwrap();
    assert_eq!(server.fetch_calls(), 1, "one chunk");
    assert!(file.all_present(256..512));
    assert!(!file.all_present(0..256));
    let mut page = vec![0; PAGE_SIZE as usize];
    file.memfd_file().read_exact_at(&mut page, MIB).unwrap();
    assert_eq!(
        page,
        expected(MIB..MIB + PAGE_SIZE),
        "the memfd holds the bytes"
    );
    file.populate(MIB, 2 * MIB, &server).await.unwrap();
    assert_eq!(server.fetch_calls(), 1, "nothing fetched twice");
}

#[tokio::test]
async fn pages_written_through_a_mapping_are_stored_and_mapped_memfd_never_shrinks() {
    let server = FakeServer::new(3 * PAGE_SIZE);
    let store = PageStore::new(PageStoreConfig::default());
    let file = store.open(FID, 3 * PAGE_SIZE).unwrap();
    file.reserve_mapped(16 * PAGE_SIZE).unwrap();
    assert_eq!(file.memfd_file().metadata().unwrap().len(), 16 * PAGE_SIZE);
    file.populate(0, 3 * PAGE_SIZE, &server).await.unwrap();
    // A guest writes page 1 through its mapping: the bytes land in the memfd directly.
    file.memfd_file()
        .write_all_at(b"mapped", PAGE_SIZE)
        .unwrap();
    assert_eq!(file.mark_dirty(1..2), 1);
    assert_eq!(
        file.mark_dirty(5..9),
        0,
        "pages past the end are not part of the file"
    );
    file.flush(&*server, FlushMode::Normal).await.unwrap();
    assert_eq!(
        server.bytes(PAGE_SIZE as usize..PAGE_SIZE as usize + 6),
        b"mapped"
    );
    assert_eq!(server.stores().len(), 1, "only the written page is stored");
    file.set_len(PAGE_SIZE).unwrap();
    assert_eq!(
        file.memfd_file().metadata().unwrap().len(),
        16 * PAGE_SIZE,
        "a shrink never cuts a mapping (its accesses would SIGBUS)"
    );
    assert_eq!(file.zeros_from(), PAGE_SIZE);
}

#[tokio::test]
async fn populate_exact_fetches_only_the_missing_pages_asked_for() {
    let server = FakeServer::new(4 * MIB);
    let store = PageStore::new(PageStoreConfig::default());
    let file = store.open(FID, 4 * MIB).unwrap();
    file.populate_exact(MIB, MIB + 1, &*server).await.unwrap();
    assert_eq!(*server.fetches.lock().unwrap(), [(MIB, PAGE_SIZE)]);
    assert!(file.all_present(256..257));
    assert!(!file.all_present(257..258));
    file.populate_exact(MIB, MIB + 10, &*server).await.unwrap();
    assert_eq!(
        server.fetch_calls(),
        1,
        "present pages are not fetched again"
    );
}

#[tokio::test]
async fn a_change_under_unstored_writes_is_a_conflict_until_overwritten() {
    let server = FakeServer::new(MIB);
    let store = PageStore::new(PageStoreConfig::default());
    let file = store.open(FID, MIB).unwrap();
    store.read(FID, 0, 10, &server).await.unwrap();
    file.write_at(0, &[7; 4096], &server).await.unwrap();

    // Validation finds the server at version 2, not by a store of ours.
    server.third_party_write(8192, b"theirs");
    file.note_remote_version(2);
    assert_eq!(file.conflict(), Some(Conflict { ours: 1, theirs: 2 }));
    let err = file.flush(&*server, FlushMode::Normal).await.unwrap_err();
    assert!(
        matches!(
            err,
            PageError::Conflict {
                ours: 1,
                theirs: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(server.stores().is_empty(), "nothing stored");
    assert!(file.is_dirty(0), "our bytes are kept");

    let report = file.flush(&*server, FlushMode::Overwrite).await.unwrap();
    assert_eq!(report.pages_flushed, 1);
    assert_eq!(server.bytes(0..4096), vec![7; 4096]);
    assert_eq!(
        server.bytes(8192..8198),
        b"theirs",
        "their other pages stay"
    );
    assert_eq!(file.conflict(), None);
}

#[tokio::test]
async fn a_version_change_without_unstored_writes_is_no_conflict() {
    let server = FakeServer::new(MIB);
    let store = PageStore::new(PageStoreConfig::default());
    let file = store.open(FID, MIB).unwrap();
    store.read(FID, 0, 10, &server).await.unwrap();
    file.note_remote_version(5);
    assert_eq!(file.conflict(), None);
    file.note_data_version(5);
    // Our own store moves the version by one: no conflict either.
    file.write_at(0, &[1; 4096], &server).await.unwrap();
    server.dv.store(5, Ordering::SeqCst);
    file.flush(&*server, FlushMode::Normal).await.unwrap();
    file.note_remote_version(6);
    assert_eq!(file.conflict(), None);
}

#[tokio::test]
async fn bytes_written_past_the_end_through_a_mapping_are_reported_or_kept_by_extending() {
    let len = PAGE_SIZE + 100;
    let server = FakeServer::new(len);
    let store = PageStore::new(PageStoreConfig::default());
    let file = store.open(FID, len).unwrap();
    file.reserve_mapped(4 * PAGE_SIZE).unwrap();
    file.populate(0, len, &server).await.unwrap();

    // Inside the file (page 0) and past its end in the page holding the end.
    file.memfd_file().write_all_at(b"in", 0).unwrap();
    file.memfd_file().write_all_at(b"out", len + 10).unwrap();
    file.mark_dirty(0..2);
    let err = file.flush(&*server, FlushMode::Normal).await.unwrap_err();
    match err {
        PageError::WrittenPastEnd { len: l, offset, .. } => {
            assert_eq!((l, offset), (len, len + 10));
        }
        e => panic!("{e}"),
    }
    assert_eq!(server.bytes(0..2), b"in", "the bytes inside were stored");
    // Reported at every flush while the bytes are there: they are still not stored.
    assert!(matches!(
        file.flush(&*server, FlushMode::Normal).await,
        Err(PageError::WrittenPastEnd { .. })
    ));

    // A whole page past the end, then the file grows over it: stored.
    file.memfd_file()
        .write_all_at(b"later", 3 * PAGE_SIZE)
        .unwrap();
    file.mark_dirty(3..4);
    file.set_len(3 * PAGE_SIZE + 5).unwrap();
    file.flush(&*server, FlushMode::Normal).await.unwrap();
    let data = server.data.lock().unwrap().clone();
    assert_eq!(data.len() as u64, 3 * PAGE_SIZE + 5);
    assert_eq!(&data[3 * PAGE_SIZE as usize..], b"later");
    let out = (len + 10) as usize;
    assert_eq!(
        &data[out..out + 3],
        b"out",
        "grown over: part of the file now"
    );
}
