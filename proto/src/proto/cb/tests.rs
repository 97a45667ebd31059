use super::*;
use crate::error::RXGEN_SS_MARSHAL;
use crate::types::{CallBackType, Interface, AFS_NAME_MAX, CLIENT_CAPABILITY_ERRORTRANS};
use crate::xdr::test_util::check_never_panics;
use crate::xdr::XdrEncode;
use std::net::Ipv4Addr;

fn me() -> CmIdentity {
    CmIdentity {
        interfaces: InterfaceAddr {
            uuid: Uuid::from_bytes([0x42; 16]),
            interfaces: vec![Interface {
                addr: Ipv4Addr::new(127, 0, 0, 1),
                netmask: Ipv4Addr::new(255, 0, 0, 0),
                mtu: 1500,
            }],
        },
        capabilities: Capabilities(vec![CLIENT_CAPABILITY_ERRORTRANS]),
    }
}

#[test]
fn callback_request_layout() {
    let req = CbRequest::CallBack {
        fids: vec![Fid::new(1, 2, 3), Fid::new(1, 0, 0)],
        callbacks: vec![
            CallBack {
                version: 1,
                expiration_time: 0,
                cb_type: CallBackType::Dropped,
            };
            2
        ],
    };
    let b = req.encode();
    assert_eq!(&b[..8], &[0, 0, 0, 204, 0, 0, 0, 2]);
    assert_eq!(b.len(), 4 + 4 + 24 + 4 + 24);
    assert_eq!(CbRequest::decode(&b).unwrap(), req);
    check_never_panics(&b, CbRequest::decode);
}

#[test]
fn callback_with_no_callbacks_array() {
    let req = CbRequest::CallBack {
        fids: vec![Fid::new(1, 2, 3)],
        callbacks: vec![],
    };
    assert_eq!(CbRequest::decode(&req.encode()).unwrap(), req);
}

#[test]
fn too_many_fids_rejected() {
    let mut e = Encoder::new();
    e.put_u32(CALLBACK).put_u32(51);
    for _ in 0..51 {
        e.put(&Fid::new(1, 1, 1));
    }
    e.put_u32(0);
    assert!(matches!(
        CbRequest::decode(e.as_bytes()),
        Err(XdrError::TooLong { len: 51, .. })
    ));
}

#[test]
fn simple_requests() {
    for (req, op) in [
        (CbRequest::InitCallBackState, 205u32),
        (CbRequest::Probe, 206),
        (CbRequest::WhoAreYou, 212),
        (CbRequest::TellMeAboutYourself, 65538),
    ] {
        let b = req.encode();
        assert_eq!(b, op.to_be_bytes());
        assert_eq!(CbRequest::decode(&b).unwrap(), req);
        // Extra bytes after an argument-less request are an error.
        let mut longer = b.clone();
        longer.extend_from_slice(&[0; 4]);
        assert!(CbRequest::decode(&longer).is_err());
    }
    assert!(CbRequest::decode(&[]).is_err());
    // GetXStats (210) is not implemented: its arguments are skipped.
    assert_eq!(
        CbRequest::decode(&[0, 0, 0, 210, 0, 0, 0, 1, 0, 0, 0, 0]).unwrap(),
        CbRequest::Unknown(210)
    );
}

#[test]
fn uuid_requests() {
    let u = Uuid::from_bytes([9; 16]);
    for req in [
        CbRequest::InitCallBackState3 { server_uuid: u },
        CbRequest::ProbeUuid { client_uuid: u },
    ] {
        let b = req.encode();
        assert_eq!(b.len(), 48);
        assert_eq!(CbRequest::decode(&b).unwrap(), req);
        check_never_panics(&b, CbRequest::decode);
    }
}

#[test]
fn responses() {
    let me = me();
    assert_eq!(
        respond(&CbRequest::Probe, &me),
        CbResponse::Reply(Vec::new())
    );
    assert_eq!(
        respond(
            &CbRequest::ProbeUuid {
                client_uuid: me.interfaces.uuid
            },
            &me
        ),
        CbResponse::Reply(Vec::new())
    );
    assert_eq!(
        respond(
            &CbRequest::ProbeUuid {
                client_uuid: Uuid::default()
            },
            &me
        ),
        CbResponse::Abort(PROBE_UUID_MISMATCH)
    );
    assert_eq!(
        respond(&CbRequest::Unknown(65539), &me),
        CbResponse::Abort(-455)
    );
    let CbResponse::Reply(w) = respond(&CbRequest::WhoAreYou, &me) else {
        panic!("WhoAreYou must reply");
    };
    assert_eq!(w.len(), InterfaceAddr::WIRE_SIZE);
    assert_eq!(decode_who_are_you_reply(&w).unwrap(), me.interfaces);
    check_never_panics(&w, decode_who_are_you_reply);

    let CbResponse::Reply(t) = respond(&CbRequest::TellMeAboutYourself, &me) else {
        panic!("TellMeAboutYourself must reply");
    };
    assert_eq!(t.len(), InterfaceAddr::WIRE_SIZE + 8);
    assert_eq!(&t[t.len() - 8..], &[0, 0, 0, 1, 0, 0, 0, 1]);
    let (ia, caps) = decode_tell_me_about_yourself_reply(&t).unwrap();
    assert_eq!(ia, me.interfaces);
    assert!(caps.has(CLIENT_CAPABILITY_ERRORTRANS));
    check_never_panics(&t, decode_tell_me_about_yourself_reply);
}

/// The big-endian words of `b`.
fn words(b: &[u8]) -> Vec<u32> {
    assert_eq!(b.len() % 4, 0);
    b.chunks(4)
        .map(|w| u32::from_be_bytes(w.try_into().unwrap()))
        .collect()
}

#[test]
fn debugging_requests() {
    // afscbint.xg: each takes one afs_int32 (GetCacheConfig an afs_uint32)
    // or nothing.
    for (req, op, arg) in [
        (CbRequest::GetLock { index: 3 }, 207u32, Some(3u32)),
        (CbRequest::GetCe { index: 0 }, 208, Some(0)),
        (CbRequest::XStatsVersion, 209, None),
        (CbRequest::GetServerPrefs { index: 7 }, 215, Some(7)),
        (CbRequest::GetCellServDb { index: -1 }, 216, Some(u32::MAX)),
        (CbRequest::GetLocalCell, 217, None),
        (
            CbRequest::GetCacheConfig { caller_version: 1 },
            218,
            Some(1),
        ),
        (CbRequest::GetCe64 { index: 12 }, 65536, Some(12)),
        (CbRequest::GetCellByNum { cell: 1 }, 65537, Some(1)),
    ] {
        let b = req.encode();
        let mut want = vec![op];
        want.extend(arg);
        assert_eq!(words(&b), want, "{req:?}");
        assert_eq!(CbRequest::decode(&b).unwrap(), req);
        assert_eq!(req.opcode(), op);
        assert!(req.is_debugging());
        check_never_panics(&b, CbRequest::decode);
    }
    for req in [
        CbRequest::Probe,
        CbRequest::WhoAreYou,
        CbRequest::TellMeAboutYourself,
        CbRequest::InitCallBackState,
        CbRequest::Unknown(210),
    ] {
        assert!(!req.is_debugging(), "{req:?}");
    }
}

fn sample_lock() -> DbLockDesc {
    DbLockDesc {
        wait_states: 0x81,
        excl_locked: 2,
        readers_reading: -3,
        num_waiting: 4,
        spare: 5,
        pid_last_reader: 6,
        pid_writer: -7,
        src_indicator: 8,
    }
}

#[test]
fn lock_layout() {
    // AFSDBLockDesc: char, char, short, short, short, int, int, int; each
    // a word, chars sign-extended (xdr_char), shorts widened (xdr_short).
    let mut e = Encoder::new();
    e.put(&sample_lock());
    let b = e.into_bytes();
    assert_eq!(b.len(), DbLockDesc::WIRE_SIZE);
    assert_eq!(
        words(&b),
        [0xffff_ff81, 2, (-3i32) as u32, 4, 5, 6, (-7i32) as u32, 8]
    );
    assert_eq!(
        crate::xdr::decode_exact::<DbLockDesc>(&b).unwrap(),
        sample_lock()
    );

    // AFSDBLock: char name[16] (sixteen xdr_char words), then the lock.
    let lock = DbLock {
        name: "afs_xvcache".into(),
        lock: sample_lock(),
    };
    let b = get_lock_reply(&lock);
    assert_eq!(b.len(), 96);
    let w = words(&b);
    let name: Vec<u32> = b"afs_xvcache\0\0\0\0\0"
        .iter()
        .map(|&c| u32::from(c))
        .collect();
    assert_eq!(&w[..16], &name[..]);
    assert_eq!(&b[64..], &e_bytes(&sample_lock())[..]);
    assert_eq!(decode_get_lock_reply(&b).unwrap(), lock);
    check_never_panics(&b, decode_get_lock_reply);

    // A long name keeps 15 bytes and its NUL.
    let long = DbLock {
        name: "a_very_long_lock_name".into(),
        lock: DbLockDesc::default(),
    };
    let b = get_lock_reply(&long);
    assert_eq!(words(&b)[15], 0);
    assert_eq!(decode_get_lock_reply(&b).unwrap().name, "a_very_long_loc");
}

fn e_bytes<T: XdrEncode>(v: &T) -> Vec<u8> {
    let mut e = Encoder::new();
    e.put(v);
    e.into_bytes()
}

fn sample_entry() -> DbCacheEntry {
    DbCacheEntry {
        addr: 0xdead_beef,
        cell: 1,
        fid: Fid::new(536870915, 2, 3),
        length: 0x1_0000_0005,
        data_version: 9,
        lock: sample_lock(),
        callback: 0x0afe_0002,
        cb_expires: 1_700_000_000,
        ref_count: 1,
        opens: 2,
        writers: -1,
        mvstat: MVSTAT_VOLUME_ROOT,
        states: CE_STATD | CE_READ_ONLY,
    }
}

#[test]
fn cache_entry64_layout() {
    // AFSDBCacheEntry64: addr, cell, netFid (3 words), Length (afs_int64,
    // high word first), DataVersion, lock (8 words), callback, cbExpires,
    // refCount, opens, writers (shorts), mvstat, states (chars).
    let ce = sample_entry();
    let b = get_ce64_reply(&ce);
    assert_eq!(b.len(), DbCacheEntry::WIRE_SIZE_64);
    let w = words(&b);
    assert_eq!(&w[..8], &[0xdead_beef, 1, 536870915, 2, 3, 1, 5, 9]);
    assert_eq!(&b[32..64], &e_bytes(&sample_lock())[..]);
    assert_eq!(
        &w[16..],
        &[0x0afe_0002, 1_700_000_000, 1, 2, u32::MAX, 2, 5]
    );
    assert_eq!(decode_get_ce64_reply(&b).unwrap(), ce);
    check_never_panics(&b, decode_get_ce64_reply);
}

#[test]
fn cache_entry_layout() {
    // AFSDBCacheEntry: the same with a 32-bit Length (its low word, as
    // the OpenAFS CM sends it).
    let ce = sample_entry();
    let b = get_ce_reply(&ce);
    assert_eq!(b.len(), DbCacheEntry::WIRE_SIZE);
    let w = words(&b);
    assert_eq!(&w[..7], &[0xdead_beef, 1, 536870915, 2, 3, 5, 9]);
    assert_eq!(&b[28..60], &e_bytes(&sample_lock())[..]);
    assert_eq!(
        &w[15..],
        &[0x0afe_0002, 1_700_000_000, 1, 2, u32::MAX, 2, 5]
    );
    let back = decode_get_ce_reply(&b).unwrap();
    assert_eq!(back, DbCacheEntry { length: 5, ..ce });
    check_never_panics(&b, decode_get_ce_reply);
}

#[test]
fn cache_config_layout() {
    // serverVersion, configCount (bytes, as OpenAFS fills it), then the
    // cacheConfig array: a count and cm_initparams_v1's nine words.
    let c = CacheConfig {
        n_chunk_files: 1,
        n_stat_caches: 2,
        n_data_caches: 3,
        n_volume_caches: 4,
        first_chunk_size: 1 << 21,
        other_chunk_size: 1 << 20,
        cache_size: 7,
        set_time: false,
        mem_cache: true,
    };
    let b = get_cache_config_reply(&c);
    assert_eq!(words(&b), [1, 36, 9, 1, 2, 3, 4, 1 << 21, 1 << 20, 7, 0, 1]);
    let (version, count, w) = decode_get_cache_config_reply(&b).unwrap();
    assert_eq!((version, count), (AFS_CLIENT_RETRIEVAL_FIRST_EDITION, 36));
    assert_eq!(CacheConfig::from_words(&w), Some(c));
    assert_eq!(CacheConfig::from_words(&w[1..]), None);
    check_never_panics(&b, decode_get_cache_config_reply);
}

#[test]
fn cell_layouts() {
    // string cellName<AFSNAMEMAX>, then serverList<AFSMAXCELLHOSTS> of
    // afs_int32 addresses in host order (dotted order on the wire).
    let cell = CellHosts {
        name: "cell.example".into(),
        hosts: vec![Ipv4Addr::new(10, 254, 0, 2), Ipv4Addr::new(192, 0, 2, 1)],
    };
    let b = cell_reply(&cell).unwrap();
    assert_eq!(&b[..4], &[0, 0, 0, 12]);
    assert_eq!(&b[4..16], b"cell.example");
    assert_eq!(&b[16..], &[0, 0, 0, 2, 10, 254, 0, 2, 192, 0, 2, 1]);
    assert_eq!(decode_cell_reply(&b).unwrap(), cell);
    check_never_panics(&b, decode_cell_reply);
    // No such cell: an empty name and no servers.
    assert_eq!(cell_reply(&CellHosts::default()).unwrap(), [0; 8]);
    // Servers past eight are left out; names past AFSNAMEMAX fail.
    let many = CellHosts {
        name: "c".into(),
        hosts: vec![Ipv4Addr::LOCALHOST; 9],
    };
    assert_eq!(
        decode_cell_reply(&cell_reply(&many).unwrap())
            .unwrap()
            .hosts
            .len(),
        8
    );
    let long = CellHosts {
        name: "x".repeat(AFS_NAME_MAX + 1),
        hosts: vec![],
    };
    assert!(cell_reply(&long).is_err());

    let b = get_local_cell_reply("abcde").unwrap();
    assert_eq!(b, [0, 0, 0, 5, b'a', b'b', b'c', b'd', b'e', 0, 0, 0]);
    assert_eq!(decode_get_local_cell_reply(&b).unwrap(), "abcde");
    check_never_panics(&b, decode_get_local_cell_reply);
}

#[test]
fn small_debugging_replies() {
    assert_eq!(xstats_version_reply(AFSCB_XSTAT_VERSION), [0, 0, 0, 2]);
    assert_eq!(decode_xstats_version_reply(&[0, 0, 0, 2]).unwrap(), 2);
    let end = get_server_prefs_reply(None);
    assert_eq!(end, [0xff; 8]);
    assert_eq!(decode_get_server_prefs_reply(&end).unwrap(), None);
    let one = get_server_prefs_reply(Some((Ipv4Addr::new(10, 254, 0, 2), 5000)));
    assert_eq!(words(&one), [0x0afe_0002, 5000]);
    assert_eq!(
        decode_get_server_prefs_reply(&one).unwrap(),
        Some((Ipv4Addr::new(10, 254, 0, 2), 5000))
    );
    check_never_panics(&one, decode_get_server_prefs_reply);
}

/// A cache manager with two entries, one lock and one cell.
struct Two;

impl CmDebugState for Two {
    fn cache_entry(&self, index: u32) -> Option<DbCacheEntry> {
        (index < 2).then(|| DbCacheEntry {
            addr: index + 1,
            ..sample_entry()
        })
    }
    fn lock(&self, index: u32) -> Option<DbLock> {
        (index == 0).then(|| DbLock {
            name: "only".into(),
            lock: DbLockDesc::default(),
        })
    }
    fn cell(&self, index: u32) -> Option<CellHosts> {
        (index == 0).then(|| CellHosts {
            name: "x".repeat(AFS_NAME_MAX + 1),
            hosts: vec![],
        })
    }
    fn local_cell(&self) -> Option<String> {
        Some("here".into())
    }
}

#[test]
fn debugging_responses() {
    let me = me();
    let reply = |req: CbRequest, state: &dyn CmDebugState| match respond_with(&req, &me, state) {
        CbResponse::Reply(b) => Ok(b),
        CbResponse::Abort(code) => Err(code),
    };
    // Holding nothing: no entries and no locks (abort 1, where cmdebug
    // stops), no cells (an empty answer), version-1 zero configuration.
    for req in [
        CbRequest::GetLock { index: 0 },
        CbRequest::GetCe { index: 0 },
        CbRequest::GetCe64 { index: 0 },
    ] {
        assert_eq!(reply(req.clone(), &NothingCached), Err(INDEX_PAST_END));
        assert_eq!(respond(&req, &me), CbResponse::Abort(1));
    }
    assert_eq!(
        reply(CbRequest::GetCellServDb { index: 0 }, &NothingCached),
        Ok(vec![0; 8])
    );
    assert_eq!(
        reply(CbRequest::GetCellByNum { cell: 1 }, &NothingCached),
        Ok(vec![0; 8])
    );
    assert_eq!(
        reply(CbRequest::GetLocalCell, &NothingCached),
        Ok(vec![0; 4])
    );
    assert_eq!(
        reply(CbRequest::XStatsVersion, &NothingCached),
        Ok(vec![0, 0, 0, 2])
    );
    assert_eq!(
        reply(CbRequest::GetServerPrefs { index: 0 }, &NothingCached),
        Ok(vec![0xff; 8])
    );
    let config = reply(
        CbRequest::GetCacheConfig { caller_version: 7 },
        &NothingCached,
    );
    assert_eq!(
        decode_get_cache_config_reply(&config.unwrap()).unwrap(),
        (1, 36, vec![0; 9])
    );

    // With entries: each index until the end, never a negative one.
    let ce = decode_get_ce64_reply(&reply(CbRequest::GetCe64 { index: 1 }, &Two).unwrap());
    assert_eq!(ce.unwrap().addr, 2);
    let ce = decode_get_ce_reply(&reply(CbRequest::GetCe { index: 0 }, &Two).unwrap());
    assert_eq!(ce.unwrap().length, 5);
    assert_eq!(reply(CbRequest::GetCe64 { index: 2 }, &Two), Err(1));
    assert_eq!(reply(CbRequest::GetCe64 { index: -1 }, &Two), Err(1));
    assert_eq!(reply(CbRequest::GetLock { index: -1 }, &Two), Err(1));
    let lock = reply(CbRequest::GetLock { index: 0 }, &Two).unwrap();
    assert_eq!(decode_get_lock_reply(&lock).unwrap().name, "only");
    assert_eq!(reply(CbRequest::GetLock { index: 1 }, &Two), Err(1));
    assert_eq!(
        decode_get_local_cell_reply(&reply(CbRequest::GetLocalCell, &Two).unwrap()).unwrap(),
        "here"
    );
    // A name that cannot be sent aborts as an rxgen stub would.
    assert_eq!(
        reply(CbRequest::GetCellServDb { index: 0 }, &Two),
        Err(RXGEN_SS_MARSHAL)
    );
    // The identity calls are answered as before.
    assert_eq!(
        respond_with(&CbRequest::Probe, &me, &Two),
        CbResponse::Reply(vec![])
    );
}
