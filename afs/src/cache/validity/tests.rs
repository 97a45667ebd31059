use super::*;

/// A reply recorded with a stamp taken just before: nothing overtook it.
fn grant(
    t: &mut Validity,
    fid: Fid,
    server: SocketAddr,
    status: FetchStatus,
    callback: &CallBack,
    now: Instant,
) -> DataChange {
    let stamp = t.stamp(fid, server);
    t.record(fid, server, stamp, status, callback, now, &anon())
}

pub(crate) fn server(n: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, n], 7000))
}

pub(crate) fn status(dv: u64) -> FetchStatus {
    let mut s = FetchStatus::default();
    s.set_data_version(dv);
    s
}

pub(crate) fn promise(secs: u32) -> CallBack {
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
        grant(&mut t, f, server(1), status(1), &promise(60), now),
        DataChange::New
    );
    assert_eq!(t.check(f, now), Check::Valid);
    assert_eq!(t.check(f, now + Duration::from_secs(49)), Check::Valid);
    assert_eq!(
        t.check(f, now + Duration::from_secs(51)),
        Check::Invalid(Why::Expired)
    );
    grant(&mut t, f, server(1), status(1), &promise(0), now);
    assert_eq!(t.check(f, now), Check::Invalid(Why::NoPromise));
}

#[test]
fn breaks_invalidate_exactly_what_they_cover() {
    let mut t = Validity::new();
    let now = Instant::now();
    let (a, b, c) = (Fid::new(7, 2, 1), Fid::new(7, 4, 1), Fid::new(8, 2, 1));
    for f in [a, b] {
        grant(&mut t, f, server(1), status(1), &promise(3600), now);
    }
    grant(&mut t, c, server(2), status(1), &promise(3600), now);

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
    grant(&mut t, b, server(1), status(1), &promise(3600), now);
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
    grant(&mut t, f, server(1), status(5), &promise(3600), now);
    t.record_own_store(f, status(6));
    assert_eq!(
        grant(&mut t, f, server(1), status(6), &promise(3600), now),
        DataChange::Unchanged
    );
    assert_eq!(
        grant(&mut t, f, server(1), status(9), &promise(3600), now),
        DataChange::ThirdParty { from: 6, to: 9 }
    );
}

#[test]
fn revoked_promises_are_not_reported() {
    let mut t = Validity::new();
    let now = Instant::now();
    let f = Fid::new(7, 2, 1);
    grant(&mut t, f, server(1), status(1), &promise(3600), now);
    assert!(t.promise(f).is_some());
    t.apply(&CallbackEvent::ServerReset {
        server: server(1),
        uuid: None,
        at: now,
    });
    assert!(t.promise(f).is_none());
    grant(&mut t, f, server(1), status(1), &promise(3600), now);
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
    grant(&mut t, f, server(1), status(1), &promise(7200), now);
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
    let note = |t: &mut Validity, volume, date| {
        let mut stamp = t.stamp(Fid::new(volume, 1, 1), server(1));
        t.note_volume(volume, date, std::slice::from_mut(&mut stamp))
    };
    assert!(note(&mut t, 7, 1000).is_empty());
    assert!(note(&mut t, 8, 2000).is_empty());
    grant(&mut t, a, server(1), status(1), &promise(3600), now);
    grant(&mut t, b, server(1), status(1), &promise(3600), now);
    assert!(note(&mut t, 7, 1000).is_empty(), "same volume, same date");
    assert!(note(&mut t, 7, 0).is_empty(), "no date says nothing");
    let voided = note(&mut t, 7, 1001);
    assert!(
        voided.contains(&(a, Why::VolumeBroken)) && !voided.iter().any(|(f, _)| *f == b),
        "restored volume: {voided:?}"
    );
    assert_eq!(t.check(a, now), Check::Invalid(Why::VolumeBroken));
    assert_eq!(t.check(b, now), Check::Valid);
}

#[test]
fn the_reply_that_reveals_a_new_snapshot_keeps_its_promise() {
    let mut t = Validity::new();
    let now = Instant::now();
    let f = Fid::new(9, 2, 1);
    t.note_read_only(9);
    let mut first = t.stamp(f, server(1));
    t.note_volume(9, 1000, std::slice::from_mut(&mut first));
    t.record(f, server(1), first, status(1), &promise(3600), now, &anon());
    assert_eq!(t.check(f, now), Check::Valid);
    // A release: the next reply carries the new clone's date, and its promise stands.
    let mut stamp = t.stamp(f, server(1));
    let voided = t.note_volume(9, 2000, std::slice::from_mut(&mut stamp));
    assert_eq!(voided, [(f, Why::VolumeBroken)]);
    assert_eq!(t.check(f, now), Check::Invalid(Why::VolumeBroken));
    t.record(f, server(1), stamp, status(2), &promise(3600), now, &anon());
    assert_eq!(
        t.check(f, now),
        Check::Valid,
        "its own news did not overtake it"
    );
    // But a break between the call and the reply still does.
    let mut stamp = t.stamp(f, server(1));
    t.apply(&CallbackEvent::Broken {
        server: server(1),
        fids: vec![Fid::new(9, 0, 0)],
        at: now,
    });
    t.note_volume(9, 3000, std::slice::from_mut(&mut stamp));
    t.record(f, server(1), stamp, status(3), &promise(3600), now, &anon());
    assert_ne!(t.check(f, now), Check::Valid, "overtaken by the break");
}

#[test]
fn a_read_only_volume_promise_covers_its_files() {
    let mut t = Validity::new();
    let now = Instant::now();
    let (a, b) = (Fid::new(9, 2, 1), Fid::new(9, 4, 1));
    t.note_read_only(9);
    grant(&mut t, a, server(1), status(1), &promise(7200), now);
    // b's status is known but it came without a promise of its own.
    grant(&mut t, b, server(1), status(1), &promise(0), now);
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
    grant(
        &mut t,
        Fid::new(10, 4, 1),
        server(1),
        status(1),
        &promise(7200),
        now,
    );
    grant(&mut t, c, server(1), status(1), &promise(0), now);
    assert_eq!(t.check(c, now), Check::Invalid(Why::NoPromise));
}

#[test]
fn a_break_that_overtakes_the_reply_leaves_no_promise() {
    let mut t = Validity::new();
    let now = Instant::now();
    let f = Fid::new(7, 2, 1);
    grant(&mut t, f, server(1), status(3), &promise(3600), now);
    // The promise breaks; we ask again; the server breaks the new promise (a
    // third party stored) while our reply, for data version 3, is still on its way.
    t.apply(&CallbackEvent::Broken {
        server: server(1),
        fids: vec![f],
        at: now,
    });
    let stamp = t.stamp(f, server(1));
    t.apply(&CallbackEvent::Broken {
        server: server(1),
        fids: vec![f],
        at: now,
    });
    t.record(f, server(1), stamp, status(3), &promise(3600), now, &anon());
    assert_eq!(t.check(f, now), Check::Invalid(Why::Broken));
    assert_eq!(t.status(f).unwrap().data_version(), 3, "the status is kept");
    assert!(t.promise(f).is_none());
    // Asking again, with nothing in between, grants it.
    grant(&mut t, f, server(1), status(4), &promise(3600), now);
    assert_eq!(t.check(f, now), Check::Valid);
}

#[test]
fn a_break_during_the_first_call_counts() {
    let mut t = Validity::new();
    let now = Instant::now();
    let f = Fid::new(7, 2, 1);
    let stamp = t.stamp(f, server(1));
    let lost = t.apply(&CallbackEvent::Broken {
        server: server(1),
        fids: vec![f],
        at: now,
    });
    assert_eq!(lost, vec![(f, Why::Broken)]);
    t.record(f, server(1), stamp, status(1), &promise(3600), now, &anon());
    assert_ne!(t.check(f, now), Check::Valid);
}

#[test]
fn volume_breaks_and_resets_overtake_replies_too() {
    let mut t = Validity::new();
    let now = Instant::now();
    let (a, b) = (Fid::new(7, 2, 1), Fid::new(7, 4, 1));
    grant(&mut t, a, server(1), status(1), &promise(3600), now);
    let stamp = t.stamp(b, server(1));
    t.apply(&CallbackEvent::Broken {
        server: server(1),
        fids: vec![Fid::new(7, 0, 0)],
        at: now,
    });
    t.record(b, server(1), stamp, status(1), &promise(3600), now, &anon());
    assert_ne!(t.check(b, now), Check::Valid);

    let stamp = t.stamp(b, server(1));
    t.apply(&CallbackEvent::ServerReset {
        server: server(1),
        uuid: None,
        at: now,
    });
    t.record(b, server(1), stamp, status(1), &promise(3600), now, &anon());
    assert_ne!(t.check(b, now), Check::Valid);
}

#[test]
fn callbacks_from_strangers_change_nothing() {
    let mut t = Validity::new();
    let now = Instant::now();
    let (a, b) = (Fid::new(7, 2, 1), Fid::new(8, 2, 1));
    grant(&mut t, a, server(1), status(1), &promise(3600), now);
    grant(&mut t, b, server(2), status(1), &promise(3600), now);
    let stranger = SocketAddr::from(([10, 0, 0, 99], 7000));
    assert!(!t.is_fileserver(stranger));
    assert!(t.is_fileserver(server(1)));
    let forged = [
        CallbackEvent::Broken {
            server: stranger,
            fids: vec![a, Fid::new(7, 0, 0)],
            at: now,
        },
        CallbackEvent::ServerReset {
            server: stranger,
            uuid: None,
            at: now,
        },
        // The same host, another port: not the fileserver's socket.
        CallbackEvent::Broken {
            server: SocketAddr::from(([10, 0, 0, 1], 7001)),
            fids: vec![a],
            at: now,
        },
        // A real fileserver, but for files another server promised.
        CallbackEvent::Broken {
            server: server(2),
            fids: vec![a, Fid::new(7, 0, 0)],
            at: now,
        },
    ];
    for e in &forged {
        assert_eq!(t.apply(e), vec![], "{e:?}");
    }
    assert_eq!(t.check(a, now), Check::Valid);
    assert_eq!(t.check(b, now), Check::Valid);
    assert!(!t.is_fileserver(stranger), "no state kept for strangers");
}

#[test]
fn any_address_of_a_server_speaks_for_it() {
    let mut t = Validity::new();
    let now = Instant::now();
    let uuid = Uuid::from_bytes([5; 16]);
    let (home, other) = (server(1), SocketAddr::from(([10, 0, 1, 1], 7000)));
    t.learn_server(Some(uuid), &[home, other]);
    let f = Fid::new(7, 2, 1);
    grant(&mut t, f, home, status(1), &promise(3600), now);
    let lost = t.apply(&CallbackEvent::ServerReset {
        server: other,
        uuid: Some(uuid),
        at: now,
    });
    assert_eq!(lost, vec![(f, Why::ServerReset)]);
    assert_eq!(t.check(f, now), Check::Invalid(Why::ServerReset));
    grant(&mut t, f, home, status(1), &promise(3600), now);
    t.apply(&CallbackEvent::Broken {
        server: other,
        fids: vec![f],
        at: now,
    });
    assert_eq!(t.check(f, now), Check::Invalid(Why::Broken));
}

#[test]
fn cached_bytes_of_an_older_version_are_superseded() {
    let mut t = Validity::new();
    let now = Instant::now();
    let f = Fid::new(7, 2, 1);
    grant(&mut t, f, server(1), status(2), &promise(3600), now);
    assert_eq!(t.check_cached(f, Some(2), now), Check::Valid);
    assert_eq!(
        t.check_cached(f, Some(1), now),
        Check::Invalid(Why::Superseded)
    );
    assert_eq!(
        t.check_cached(f, None, now),
        Check::Invalid(Why::Superseded)
    );
}

/// The identity most tests record replies for.
pub(crate) fn anon() -> std::sync::Arc<str> {
    std::sync::Arc::from(super::ANONYMOUS)
}

/// Rights are per identity: a reply to alice tells bob nothing, and a break voids both.
#[test]
fn rights_are_kept_per_identity_and_void_with_the_promise() {
    let now = Instant::now();
    let mut t = Validity::new();
    let f = Fid::new(7, 2, 1);
    let alice: std::sync::Arc<str> = "alice@R".into();
    let mut st = status(1);
    st.caller_access = 0x7f;
    st.anonymous_access = 0;
    let stamp = t.stamp(f, server(1));
    t.record(f, server(1), stamp, st, &promise(3600), now, &alice);
    assert_eq!(t.check(f, now), Check::Valid);
    assert_eq!(t.access(f, "alice@R", now), Some(0x7f));
    assert_eq!(
        t.access(f, "bob@R", now),
        None,
        "bob must ask the server himself"
    );
    assert_eq!(
        t.access(f, ANONYMOUS, now),
        Some(0),
        "AnonymousAccess came along"
    );
    let bob: std::sync::Arc<str> = "bob@R".into();
    let mut st2 = st;
    st2.caller_access = 0;
    let stamp = t.stamp(f, server(1));
    t.record(f, server(1), stamp, st2, &promise(3600), now, &bob);
    assert_eq!(t.access(f, "bob@R", now), Some(0));
    assert_eq!(t.access(f, "alice@R", now), Some(0x7f), "alice keeps hers");
    t.apply(&CallbackEvent::Broken {
        server: server(1),
        fids: vec![f],
        at: now,
    });
    assert_eq!(t.access(f, "alice@R", now), None);
    assert_eq!(t.access(f, "bob@R", now), None);
    // A new promise to alice does not bring bob's old answer back.
    let stamp = t.stamp(f, server(1));
    t.record(f, server(1), stamp, st, &promise(3600), now, &alice);
    assert_eq!(t.access(f, "alice@R", now), Some(0x7f));
    assert_eq!(t.access(f, "bob@R", now), None);
}
