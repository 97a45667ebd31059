use super::*;
use crate::cache::validity::tests::{promise, server, status};
use std::sync::atomic::AtomicU32;

/// The client's way: stamp, ask, record.
fn fake(coherence: Arc<Coherence>, calls: Arc<AtomicU32>, dv: Arc<AtomicU64>) -> StatusFetcher {
    Arc::new(move |fid| {
        let (coherence, calls, dv) = (coherence.clone(), calls.clone(), dv.clone());
        Box::pin(async move {
            let stamp = coherence.stamp(fid, server(1));
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            let status = status(dv.load(Ordering::SeqCst));
            coherence.record(
                fid,
                server(1),
                stamp,
                status,
                &promise(3600),
                &crate::cache::validity::tests::anon(),
            );
            Ok(status)
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_validations_ask_once() {
    let calls = Arc::new(AtomicU32::new(0));
    let dv = Arc::new(AtomicU64::new(1));
    let c = Arc::new(Coherence::default());
    let v = Arc::new(Validator::new(
        c.clone(),
        anyone(),
        fake(c.clone(), calls.clone(), dv.clone()),
    ));
    let f = Fid::new(7, 2, 1);
    assert_eq!(v.validate(f).await.unwrap().change, DataChange::New);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Valid: no call at all.
    assert_eq!(v.validate(f).await.unwrap().why, None);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // The file changes and the promise breaks: 100 callers, one FetchStatus.
    dv.store(2, Ordering::SeqCst);
    c.with(|t| {
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
    let c = Arc::new(Coherence::default());
    let v = Arc::new(Validator::new(
        c.clone(),
        anyone(),
        fake(c.clone(), calls.clone(), dv),
    ));
    let files: Vec<Fid> = (1..=10).map(|n| Fid::new(7, 2 * n, 1)).collect();
    for f in &files {
        v.validate(*f).await.unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 10);
    c.with(|t| {
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

#[tokio::test]
async fn a_validation_overtaken_by_a_break_asks_again() {
    let c = Arc::new(Coherence::default());
    let calls = Arc::new(AtomicU32::new(0));
    let fetch: StatusFetcher = {
        let (c, calls) = (c.clone(), calls.clone());
        Arc::new(move |fid| {
            let (c, calls) = (c.clone(), calls.clone());
            Box::pin(async move {
                let stamp = c.stamp(fid, server(1));
                let n = calls.fetch_add(1, Ordering::SeqCst);
                if n == 0 {
                    // The break arrives before the (retransmitted) reply.
                    c.apply(&CallbackEvent::Broken {
                        server: server(1),
                        fids: vec![fid],
                        at: Instant::now(),
                    });
                }
                let st = status(1 + u64::from(n));
                c.record(
                    fid,
                    server(1),
                    stamp,
                    st,
                    &promise(3600),
                    &crate::cache::validity::tests::anon(),
                );
                Ok(st)
            })
        })
    };
    let v = Validator::new(c.clone(), anyone(), fetch);
    let f = Fid::new(7, 2, 1);
    assert_eq!(v.validate(f).await.unwrap().status.data_version(), 1);
    assert_ne!(
        c.check(f),
        Check::Valid,
        "the overtaken reply promised nothing"
    );
    let second = v.validate(f).await.unwrap();
    assert_eq!(second.status.data_version(), 2);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(c.check(f), Check::Valid);
    assert_eq!(c.check_cached(f, Some(2)), Check::Valid);
}

/// The identity the fakes record replies for.
fn anyone() -> super::Caller {
    Arc::new(|_| crate::cache::validity::tests::anon())
}
