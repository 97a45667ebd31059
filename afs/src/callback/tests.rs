use super::debug::unix_secs;
use super::*;
use crate::cache::coherence::Coherence;
use crate::cell::CellServDb;
use crate::proto::cb::{CacheConfig, CellHosts, DbCacheEntry};
use crate::types::{CallBack, CallBackType, FetchStatus, FileType};

fn anyone() -> SenderCheck {
    Arc::new(|_| true)
}

fn incoming(req: &CbRequest) -> IncomingCall {
    IncomingCall {
        peer: "10.0.0.1:7000".parse().unwrap(),
        epoch: 1,
        cid: 4,
        service_id: SERVICE,
        request: req.encode().into(),
    }
}

#[test]
fn break_is_published_after_reply() {
    let svc = CallbackService::new(Uuid::random(), anyone(), Arc::new(|_: &CallbackEvent| None));
    let mut rx = svc.subscribe();
    let fid = Fid::new(536870915, 2, 3);
    let req = CbRequest::CallBack {
        fids: vec![fid],
        callbacks: vec![CallBack::default()],
    };
    let resp = svc.handle(&incoming(&req));
    assert_eq!(resp.reply, Ok(vec![]));
    assert!(rx.try_recv().is_err(), "nothing before the reply is sent");
    (resp.after_reply.unwrap())();
    match rx.try_recv().unwrap() {
        CallbackEvent::Broken { fids, .. } => assert_eq!(fids, vec![fid]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_and_garbage_requests_abort() {
    let svc = CallbackService::new(Uuid::random(), anyone(), Arc::new(|_: &CallbackEvent| None));
    let resp = svc.handle(&incoming(&CbRequest::Unknown(9999)));
    assert_eq!(resp.reply, Err(rx::error::codes::RXGEN_OPCODE));
    let mut call = incoming(&CbRequest::Probe);
    call.request = vec![0, 0, 0, 204, 0xff, 0xff, 0xff, 0xff].into();
    // rxgen's server-side unmarshal failure, as OpenAFS numbers it.
    assert_eq!(svc.handle(&call).reply, Err(-453));
}

#[test]
fn probe_for_another_uuid_is_a_reset() {
    let uuid = Uuid::random();
    let svc = CallbackService::new(uuid, anyone(), Arc::new(|_: &CallbackEvent| None));
    let mut rx = svc.subscribe();
    let ours = svc.handle(&incoming(&CbRequest::ProbeUuid { client_uuid: uuid }));
    (ours.after_reply.unwrap_or_else(|| Box::new(|| {})))();
    assert!(rx.try_recv().is_err(), "our own UUID: nothing lost");
    let other = svc.handle(&incoming(&CbRequest::ProbeUuid {
        client_uuid: Uuid::random(),
    }));
    (other.after_reply.unwrap())();
    assert!(matches!(
        rx.try_recv().unwrap(),
        CallbackEvent::ServerReset { .. }
    ));
}

#[test]
fn identity_answers() {
    let uuid = Uuid::random();
    let svc = CallbackService::new(uuid, anyone(), Arc::new(|_: &CallbackEvent| None));
    let resp = svc.handle(&incoming(&CbRequest::TellMeAboutYourself));
    let body = resp.reply.unwrap();
    let (addr, caps) = p::decode_tell_me_about_yourself_reply(&body).unwrap();
    assert_eq!(addr.uuid, uuid);
    assert!(addr.interfaces.is_empty());
    assert!(caps.has(CLIENT_CAPABILITY_ERRORTRANS));
    let other = svc.handle(&incoming(&CbRequest::ProbeUuid {
        client_uuid: Uuid::random(),
    }));
    assert_eq!(other.reply, Err(p::PROBE_UUID_MISMATCH));
}

#[test]
fn strangers_are_refused_and_leave_nothing() {
    let server: SocketAddr = "10.0.0.1:7000".parse().unwrap();
    let svc = CallbackService::new(
        Uuid::random(),
        Arc::new(move |peer| peer == server),
        Arc::new(|_: &CallbackEvent| panic!("nothing may be revoked")),
    );
    let mut rx = svc.subscribe();
    let requests = [
        CbRequest::CallBack {
            fids: vec![Fid::new(1, 0, 0)],
            callbacks: vec![],
        },
        CbRequest::InitCallBackState,
        CbRequest::InitCallBackState3 {
            server_uuid: Uuid::random(),
        },
        CbRequest::ProbeUuid {
            client_uuid: Uuid::random(),
        },
        CbRequest::TellMeAboutYourself,
        CbRequest::WhoAreYou,
    ];
    for req in &requests {
        let mut call = incoming(req);
        call.peer = "10.0.0.9:7000".parse().unwrap();
        let resp = svc.handle(&call);
        assert_eq!(resp.reply, Err(NOT_A_FILESERVER), "{req:?}");
        assert!(resp.after_reply.is_none());
    }
    assert!(rx.try_recv().is_err());
    assert_eq!(svc.stats.refused.load(Ordering::Relaxed), 6);
    // A probe says nothing about us: anyone gets its empty answer.
    let mut probe = incoming(&CbRequest::Probe);
    probe.peer = "10.0.0.9:7000".parse().unwrap();
    assert_eq!(svc.handle(&probe).reply, Ok(vec![]));
    // Nor do the debugging calls change anything: anyone gets them answered.
    for req in [
        CbRequest::GetLock { index: 0 },
        CbRequest::GetCe64 { index: 0 },
        CbRequest::GetCe { index: 0 },
    ] {
        let mut call = incoming(&req);
        call.peer = "10.0.0.9:7000".parse().unwrap();
        let resp = svc.handle(&call);
        assert_eq!(resp.reply, Err(p::INDEX_PAST_END), "{req:?}");
        assert!(resp.after_reply.is_none());
    }
    let mut call = incoming(&CbRequest::XStatsVersion);
    call.peer = "10.0.0.9:7000".parse().unwrap();
    assert_eq!(svc.handle(&call).reply, Ok(vec![0, 0, 0, 2]));
    assert!(rx.try_recv().is_err());
    assert_eq!(svc.stats.refused.load(Ordering::Relaxed), 6);
    assert_eq!(svc.stats.debug_calls.load(Ordering::Relaxed), 4);
}

const SERVER: &str = "10.254.0.2:7000";

fn status(file_type: FileType, len: u64, dv: u64, mode: u32) -> FetchStatus {
    let mut s = FetchStatus {
        interface_version: 1,
        file_type,
        unix_mode_bits: mode,
        ..FetchStatus::default()
    };
    s.set_length(len);
    s.set_data_version(dv);
    s
}

/// Records `status` for `fid` from SERVER, with a promise for `secs` (none if 0).
fn record(c: &Coherence, fid: Fid, status: FetchStatus, secs: u32) {
    let server: SocketAddr = SERVER.parse().unwrap();
    c.learn_server(None, &[server]);
    let stamp = c.stamp(fid, server);
    let cb = CallBack {
        version: 1,
        expiration_time: secs,
        cb_type: if secs > 0 {
            CallBackType::Shared
        } else {
            CallBackType::Dropped
        },
    };
    c.record(
        fid,
        server,
        stamp,
        status,
        &cb,
        &crate::cache::validity::tests::anon(),
    );
}

fn cells() -> CellServDb {
    CellServDb::parse(
        ">other.example #Other\n192.0.2.1\n>test.example #Test\n10.254.0.2\n10.254.0.3\n",
    )
    .unwrap()
}

/// A service showing `coherence`, asked by a stranger.
fn debug_service(coherence: Arc<Coherence>) -> CallbackService {
    CallbackService::new(
        Uuid::random(),
        Arc::new(|_| false),
        Arc::new(|_: &CallbackEvent| panic!("nothing may be revoked")),
    )
    .with_debug_info(DebugInfo::new(
        coherence,
        &cells(),
        Some("TEST.example"),
        2 << 20,
    ))
}

fn ask(svc: &CallbackService, req: CbRequest) -> Result<Vec<u8>, i32> {
    let mut call = incoming(&req);
    call.peer = "10.254.0.2:40001".parse().unwrap();
    svc.handle(&call).reply
}

fn ce64(svc: &CallbackService, index: i32) -> Result<DbCacheEntry, i32> {
    ask(svc, CbRequest::GetCe64 { index })
        .map(|b| p::decode_get_ce64_reply(&b).expect("a whole AFSDBCacheEntry64"))
}

#[test]
fn cache_entries_are_the_known_files() {
    let coherence = Arc::new(Coherence::default());
    let big = Fid::new(536870918, 4, 9);
    let root = Fid::new(536870918, 1, 1);
    let plain = Fid::new(536870912, 6, 2);
    let mtpt = Fid::new(536870918, 8, 3);
    record(
        &coherence,
        big,
        status(FileType::File, 5 << 32 | 7, 12, 0o644),
        3600,
    );
    record(
        &coherence,
        root,
        status(FileType::Directory, 2048, 3, 0o755),
        3600,
    );
    record(&coherence, plain, status(FileType::File, 10, 1, 0o644), 0);
    record(
        &coherence,
        mtpt,
        status(FileType::Symlink, 13, 1, 0o644),
        3600,
    );
    // Asked about but never answered: nothing to show.
    coherence.stamp(Fid::new(1, 2, 3), SERVER.parse().unwrap());
    let svc = debug_service(coherence);

    let before = unix_secs(Instant::now());
    let entries: Vec<DbCacheEntry> = (0..4).map(|i| ce64(&svc, i).unwrap()).collect();
    assert_eq!(ce64(&svc, 4), Err(p::INDEX_PAST_END));
    assert_eq!(ce64(&svc, -1), Err(p::INDEX_PAST_END));
    // In FID order, each with a nonzero addr, all in the local cell (2).
    let fids: Vec<Fid> = entries.iter().map(|e| e.fid).collect();
    assert_eq!(fids, [plain, root, big, mtpt]);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.addr, i as u32 + 1);
        assert_eq!(e.cell, 2);
        assert_eq!(e.lock, p::DbLockDesc::default());
        assert_eq!((e.ref_count, e.opens, e.writers), (0, 0, 0));
    }
    // No promise: no callback, not stat'd.
    let e = entries[0];
    assert_eq!((e.length, e.data_version), (10, 1));
    assert_eq!((e.callback, e.cb_expires, e.states), (0, 0, 0));
    assert_eq!(e.mvstat, p::MVSTAT_FILE);
    // The volume root, with the promising server and when the promise ends.
    let e = entries[1];
    assert_eq!(e.mvstat, p::MVSTAT_VOLUME_ROOT);
    assert_eq!(e.callback, 0x0afe_0002);
    assert!(
        (before + 3599..=before + 3601).contains(&e.cb_expires),
        "{e:?}"
    );
    assert_eq!(e.states, p::CE_STATD);
    // A 64-bit length and data version: GetCE64 shows it whole, GetCE cut.
    let e = entries[2];
    assert_eq!((e.length, e.data_version), (5 << 32 | 7, 12));
    let short = ask(&svc, CbRequest::GetCe { index: 2 }).unwrap();
    let short = p::decode_get_ce_reply(&short).unwrap();
    assert_eq!(short, p::DbCacheEntry { length: 7, ..e });
    assert_eq!(entries[3].mvstat, p::MVSTAT_MOUNT_POINT);
}

#[test]
fn listing_is_stable_until_refreshed() {
    let coherence = Arc::new(Coherence::default());
    record(
        &coherence,
        Fid::new(5, 2, 2),
        status(FileType::File, 1, 1, 0o644),
        60,
    );
    record(
        &coherence,
        Fid::new(5, 4, 4),
        status(FileType::File, 1, 1, 0o644),
        60,
    );
    let svc = debug_service(coherence.clone());
    assert_eq!(ce64(&svc, 0).unwrap().fid, Fid::new(5, 2, 2));
    // A file that sorts first arrives mid-listing: the indices still walk the
    // listing they started on, and the next entry 0 soon after too.
    record(
        &coherence,
        Fid::new(4, 2, 2),
        status(FileType::File, 1, 1, 0o644),
        60,
    );
    assert_eq!(ce64(&svc, 1).unwrap().fid, Fid::new(5, 4, 4));
    assert_eq!(ce64(&svc, 2), Err(p::INDEX_PAST_END));
    assert_eq!(ce64(&svc, 0).unwrap().fid, Fid::new(5, 2, 2));
    // Once the listing is old, entry 0 starts a new one.
    let view = svc.debug.as_ref().unwrap();
    view.listing.lock().unwrap().taken = Some(Instant::now() - LISTING_REFRESH);
    assert_eq!(ce64(&svc, 0).unwrap().fid, Fid::new(4, 2, 2));
    assert_eq!(ce64(&svc, 2).unwrap().fid, Fid::new(5, 4, 4));
    // A broken promise shows at once (entries are read when asked).
    let server: SocketAddr = SERVER.parse().unwrap();
    coherence.apply(&CallbackEvent::Broken {
        server,
        fids: vec![Fid::new(5, 4, 4)],
        at: Instant::now(),
    });
    let e = ce64(&svc, 2).unwrap();
    assert_eq!((e.callback, e.cb_expires, e.states), (0, 0, 0));
}

#[test]
fn locks_cells_and_configuration() {
    let svc = debug_service(Arc::new(Coherence::default()));
    // We hold no locks: the first index is already past the end.
    assert_eq!(ask(&svc, CbRequest::GetLock { index: 0 }), Err(1));
    assert_eq!(ce64(&svc, 0), Err(1));
    let cell = |req| p::decode_cell_reply(&ask(&svc, req).unwrap()).unwrap();
    let test = CellHosts {
        name: "test.example".into(),
        hosts: vec!["10.254.0.2".parse().unwrap(), "10.254.0.3".parse().unwrap()],
    };
    assert_eq!(cell(CbRequest::GetCellServDb { index: 1 }), test);
    assert_eq!(
        cell(CbRequest::GetCellServDb { index: 0 }).name,
        "other.example"
    );
    assert_eq!(
        cell(CbRequest::GetCellServDb { index: 2 }),
        CellHosts::default()
    );
    assert_eq!(
        cell(CbRequest::GetCellServDb { index: -1 }),
        CellHosts::default()
    );
    assert_eq!(cell(CbRequest::GetCellByNum { cell: 2 }), test);
    assert_eq!(
        cell(CbRequest::GetCellByNum { cell: 0 }),
        CellHosts::default()
    );
    assert_eq!(
        cell(CbRequest::GetCellByNum { cell: 3 }),
        CellHosts::default()
    );
    let local = ask(&svc, CbRequest::GetLocalCell).unwrap();
    assert_eq!(
        p::decode_get_local_cell_reply(&local).unwrap(),
        "TEST.example"
    );
    let config = ask(&svc, CbRequest::GetCacheConfig { caller_version: 1 }).unwrap();
    let (version, bytes, words) = p::decode_get_cache_config_reply(&config).unwrap();
    assert_eq!((version, bytes), (1, 36));
    let config = CacheConfig::from_words(&words).unwrap();
    assert_eq!(config.first_chunk_size, 2 << 20);
    assert_eq!(config.other_chunk_size, 2 << 20);
    assert!(config.mem_cache);
    let prefs = ask(&svc, CbRequest::GetServerPrefs { index: 0 }).unwrap();
    assert_eq!(p::decode_get_server_prefs_reply(&prefs).unwrap(), None);
    assert_eq!(svc.stats.refused.load(Ordering::Relaxed), 0);
}

#[test]
fn entries_of_an_unknown_cell() {
    // ThisCell names no listed cell and there are several: cell 0.
    let info = DebugInfo::new(Arc::new(Coherence::default()), &cells(), Some("x"), 1);
    assert_eq!(info.entry_cell(), 0);
    let one = CellServDb::parse(">only.example\n10.0.0.1\n").unwrap();
    let info = DebugInfo::new(Arc::new(Coherence::default()), &one, None, 1);
    assert_eq!(info.entry_cell(), 1);
}
