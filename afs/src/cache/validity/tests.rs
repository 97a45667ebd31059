use super::*;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

fn server(n: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, n], 7000))
}

fn status(dv: u64) -> FetchStatus {
    let mut s = FetchStatus::default();
    s.set_data_version(dv);
    s
}

fn promise(secs: u32) -> CallBack {
    CallBack {
        version: 1,
        expiration_time: secs,
        cb_type: CallBackType::Shared,
    }
}

#[test]
fn fresh_promise_is_valid_until_the_margin() {
    let mut t = Validity::new();
    let now = Instant::now();
    let f = Fid::new(7, 2, 1);
    assert_eq!(t.check(f, now), Check::Invalid(Why::NoPromise));
    assert_eq!(
        t.record(f, server(1), status(1), &promise(60), now),
        DataChange::New
    );
    assert_eq!(t.check(f, now), Check::Valid);
    assert_eq!(t.check(f, now + Duration::from_secs(49)), Check::Valid);
    assert_eq!(
        t.check(f, now + Duration::from_secs(51)),
        Check::Invalid(Why::Expired)
    );
    t.record(f, server(1), status(1), &promise(0), now);
    assert_eq!(t.check(f, now), Check::Invalid(Why::NoPromise));
}

#[test]
fn breaks_invalidate_exactly_what_they_cover() {
    let mut t = Validity::new();
    let now = Instant::now();
    let (a, b, c) = (Fid::new(7, 2, 1), Fid::new(7, 4, 1), Fid::new(8, 2, 1));
    for f in [a, b] {
        t.record(f, server(1), status(1), &promise(3600), now);
    }
    t.record(c, server(2), status(1), &promise(3600), now);

    let lost = t.apply(&CallbackEvent::Broken {
        server: server(1),
        fids: vec![a],
        at: now,
    });
    assert_eq!(lost, vec![(a, Why::Broken)]);
    assert_eq!(t.check(a, now), Check::Invalid(Why::Broken));
    assert_eq!(t.check(b, now), Check::Valid);

    let mut lost = t.apply(&CallbackEvent::Broken {
        server: server(1),
        fids: vec![Fid::new(7, 0, 0)],
        at: now,
    });
    lost.sort_by_key(|(f, _)| *f);
    assert_eq!(lost, vec![(a, Why::VolumeBroken), (b, Why::VolumeBroken)]);
    assert_eq!(t.check(b, now), Check::Invalid(Why::VolumeBroken));
    assert_eq!(t.check(c, now), Check::Valid, "other volume untouched");
    // A promise granted after the volume break is good again.
    t.record(b, server(1), status(1), &promise(3600), now);
    assert_eq!(t.check(b, now), Check::Valid);

    let lost = t.apply(&CallbackEvent::ServerReset {
        server: server(2),
        uuid: None,
        at: now,
    });
    assert_eq!(lost, vec![(c, Why::ServerReset)]);
    assert_eq!(t.check(c, now), Check::Invalid(Why::ServerReset));
    assert_eq!(t.check(b, now), Check::Valid, "other server untouched");
    assert_eq!(t.servers_with_promises(now), vec![server(1)]);
}

#[test]
fn own_stores_are_not_third_party_changes() {
    let mut t = Validity::new();
    let now = Instant::now();
    let f = Fid::new(7, 2, 1);
    t.record(f, server(1), status(5), &promise(3600), now);
    t.record_own_store(f, status(6));
    assert_eq!(
        t.record(f, server(1), status(6), &promise(3600), now),
        DataChange::Unchanged
    );
    assert_eq!(
        t.record(f, server(1), status(9), &promise(3600), now),
        DataChange::ThirdParty { from: 6, to: 9 }
    );
}

/// A fake server: counts FetchStatus calls, answers after a short delay.
fn fake(calls: Arc<AtomicU32>, dv: Arc<AtomicU64>) -> StatusFetcher {
    Arc::new(move |_fid| {
        let calls = calls.clone();
        let dv = dv.clone();
        Box::pin(async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok((server(1), status(dv.load(Ordering::SeqCst)), promise(3600)))
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_validations_ask_once() {
    let calls = Arc::new(AtomicU32::new(0));
    let dv = Arc::new(AtomicU64::new(1));
    let v = Arc::new(Validator::new(
        Arc::default(),
        fake(calls.clone(), dv.clone()),
    ));
    let f = Fid::new(7, 2, 1);
    assert_eq!(v.validate(f).await.unwrap().change, DataChange::New);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Valid: no call at all.
    assert_eq!(v.validate(f).await.unwrap().why, None);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // The file changes and the promise breaks: 100 callers, one FetchStatus.
    dv.store(2, Ordering::SeqCst);
    v.with(|t| {
        t.apply(&CallbackEvent::Broken {
            server: server(1),
            fids: vec![f],
            at: Instant::now(),
        })
    });
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let v = v.clone();
            tokio::spawn(async move { v.validate(f).await.unwrap() })
        })
        .collect();
    let mut third_party = 0;
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status.data_version(), 2);
        if let DataChange::ThirdParty { from: 1, to: 2 } = r.change {
            third_party += 1;
        }
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "one FetchStatus for 100 callers"
    );
    assert_eq!(v.validations.load(Ordering::Relaxed), 102);
    assert_eq!(v.fetches.load(Ordering::Relaxed), 2);
    assert_eq!(
        third_party, 1,
        "the change is reported once, by the caller that asked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volume_break_costs_one_call_per_used_file() {
    let calls = Arc::new(AtomicU32::new(0));
    let dv = Arc::new(AtomicU64::new(1));
    let v = Arc::new(Validator::new(Arc::default(), fake(calls.clone(), dv)));
    let files: Vec<Fid> = (1..=10).map(|n| Fid::new(7, 2 * n, 1)).collect();
    for f in &files {
        v.validate(*f).await.unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 10);
    v.with(|t| {
        t.apply(&CallbackEvent::Broken {
            server: server(1),
            fids: vec![Fid::new(7, 0, 0)],
            at: Instant::now(),
        })
    });
    // Only three of the ten files are used afterwards, each by many callers.
    let mut tasks = Vec::new();
    for f in &files[..3] {
        for _ in 0..20 {
            let v = v.clone();
            let f = *f;
            tasks.push(tokio::spawn(async move { v.validate(f).await.unwrap() }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 13);
}

#[test]
fn revoked_promises_are_not_reported() {
    let mut t = Validity::new();
    let now = Instant::now();
    let f = Fid::new(7, 2, 1);
    t.record(f, server(1), status(1), &promise(3600), now);
    assert!(t.promise(f).is_some());
    t.apply(&CallbackEvent::ServerReset {
        server: server(1),
        uuid: None,
        at: now,
    });
    assert!(t.promise(f).is_none());
    t.record(f, server(1), status(1), &promise(3600), now);
    t.apply(&CallbackEvent::Broken {
        server: server(1),
        fids: vec![Fid::new(7, 0, 0)],
        at: now,
    });
    assert!(t.promise(f).is_none());
}

#[test]
fn promises_are_capped_by_the_client() {
    let mut t = Validity::with_max_promise(Some(Duration::from_secs(30)));
    let now = Instant::now();
    let f = Fid::new(7, 2, 1);
    t.record(f, server(1), status(1), &promise(7200), now);
    assert_eq!(t.check(f, now + Duration::from_secs(19)), Check::Valid);
    assert_eq!(
        t.check(f, now + Duration::from_secs(21)),
        Check::Invalid(Why::Expired)
    );
}

#[test]
fn a_replaced_volume_voids_its_files() {
    let mut t = Validity::new();
    let now = Instant::now();
    let (a, b) = (Fid::new(7, 2, 1), Fid::new(8, 2, 1));
    assert!(!t.note_volume(7, 1000));
    assert!(!t.note_volume(8, 2000));
    t.record(a, server(1), status(1), &promise(3600), now);
    t.record(b, server(1), status(1), &promise(3600), now);
    assert!(!t.note_volume(7, 1000), "same volume, same date");
    assert!(!t.note_volume(7, 0), "no date says nothing");
    assert!(t.note_volume(7, 1001), "restored volume");
    assert_eq!(t.check(a, now), Check::Invalid(Why::VolumeBroken));
    assert_eq!(t.check(b, now), Check::Valid);
}

#[test]
fn a_read_only_volume_promise_covers_its_files() {
    let mut t = Validity::new();
    let now = Instant::now();
    let (a, b) = (Fid::new(9, 2, 1), Fid::new(9, 4, 1));
    t.note_read_only(9);
    t.record(a, server(1), status(1), &promise(7200), now);
    // b's status is known but it came without a promise of its own.
    t.record(b, server(1), status(1), &promise(0), now);
    assert_eq!(
        t.check(b, now),
        Check::Valid,
        "the volume's promise covers it"
    );
    // A release breaks the volume: both lose it.
    t.apply(&CallbackEvent::Broken {
        server: server(1),
        fids: vec![Fid::new(9, 0, 0)],
        at: now,
    });
    assert_eq!(t.check(a, now), Check::Invalid(Why::VolumeBroken));
    assert_eq!(t.check(b, now), Check::Invalid(Why::VolumeBroken));
    // Not so in a read-write volume.
    let c = Fid::new(10, 2, 1);
    t.record(
        Fid::new(10, 4, 1),
        server(1),
        status(1),
        &promise(7200),
        now,
    );
    t.record(c, server(1), status(1), &promise(0), now);
    assert_eq!(t.check(c, now), Check::Invalid(Why::NoPromise));
}
