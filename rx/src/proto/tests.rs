//! The endpoint state machine driven by hand: time and datagrams are ours.

use super::*;
use crate::ack::{Ack, AckReason};
use crate::packet::{flags, Packet};
use std::net::{Ipv4Addr, SocketAddrV4};

fn addr(host: u8, port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, host), port))
}

fn endpoint() -> Endpoint {
    Endpoint::new(0x8000_0001, 0x100, CallConfig::default(), Limits::default())
}

/// A client-initiated DATA packet: one whole request.
fn request(epoch: u32, cid: u32, call: u32, payload: &[u8]) -> Bytes {
    request_packet(epoch, cid, call, 1, flags::LAST_PACKET, payload)
}

fn request_packet(epoch: u32, cid: u32, call: u32, seq: u32, fl: u8, payload: &[u8]) -> Bytes {
    Packet {
        header: Header {
            epoch,
            cid,
            call_number: call,
            seq,
            serial: seq,
            packet_type: PacketType::Data,
            flags: flags::CLIENT_INITIATED | fl,
            user_status: 0,
            security_index: 0,
            spare: 0,
            service_id: 1,
        },
        payload: Bytes::copy_from_slice(payload),
    }
    .to_datagram()
}

fn drain(ep: &mut Endpoint, now: Instant) -> Vec<(SocketAddr, Bytes)> {
    let mut out = Vec::new();
    ep.drain_transmits(now, &mut out);
    out
}

fn incoming(ep: &mut Endpoint) -> Vec<IncomingRequest> {
    let mut v = Vec::new();
    while let Some(e) = ep.poll_event() {
        if let Event::Incoming(r) = e {
            v.push(r);
        }
    }
    v
}

/// Runs every timer up to `until`, in steps, collecting what is sent.
fn run_until(ep: &mut Endpoint, mut now: Instant, until: Instant) -> Vec<(SocketAddr, Bytes)> {
    let mut sent = Vec::new();
    while let Some(t) = ep.poll_timeout().filter(|t| *t <= until) {
        now = now.max(t);
        ep.handle_timeout(now);
        ep.drain_transmits(now, &mut sent);
    }
    sent
}

#[test]
fn an_idle_endpoint_has_no_deadline() {
    let ep = endpoint();
    assert_eq!(ep.poll_timeout(), None);
}

#[test]
fn a_forged_request_gets_one_datagram_and_nothing_more() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let victim = addr(9, 7000);
    // 32 bytes of Rx request: header and a 4-byte opcode.
    ep.handle(
        t0,
        victim,
        request(0x9000_0001, 0x40, 1, &65538u32.to_be_bytes()),
    );
    assert!(drain(&mut ep, t0).is_empty(), "no ACK before the reply");
    let req = incoming(&mut ep).pop().expect("the request is served");
    ep.reply(req.call, Ok(vec![0u8; 300]), t0);
    let mut sent = drain(&mut ep, t0);
    sent.extend(run_until(&mut ep, t0, t0 + Duration::from_secs(60)));
    assert_eq!(sent.len(), 1, "one reply datagram, never retransmitted");
    assert!(sent[0].1.len() < 400);
    assert_eq!(ep.sizes().1, 0, "the call is gone");
    let late = t0 + Duration::from_secs(61);
    ep.handle_timeout(late);
    assert_eq!(ep.sizes(), (0, 0), "and so is its connection");
    assert_eq!(ep.poll_timeout(), None);
}

#[test]
fn a_peer_that_repeats_its_request_gets_the_reply_again() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let server = addr(1, 7000);
    let dgram = request(0x9000_0001, 0x40, 1, &206u32.to_be_bytes());
    ep.handle(t0, server, dgram.clone());
    let req = incoming(&mut ep).pop().unwrap();
    ep.reply(req.call, Ok(vec![]), t0);
    assert_eq!(drain(&mut ep, t0).len(), 1);
    // The reply was lost; the peer sends its request again.
    let t1 = t0 + Duration::from_millis(300);
    ep.handle(t1, server, dgram);
    let again = drain(&mut ep, t1);
    assert_eq!(again.len(), 1);
    let p = &Packet::parse_datagram(again[0].1.clone()).unwrap()[0];
    assert_eq!(p.header.packet_type, PacketType::Data);
    assert_ne!(p.header.flags & flags::LAST_PACKET, 0);
}

#[test]
fn a_flood_of_half_open_calls_is_bounded() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let limits = Limits::default();
    for i in 0..40_000u32 {
        let from = addr(66, 1024 + (i % 50_000) as u16);
        // Never the last packet: the call never completes.
        let d = request_packet(0x9000_0000 | i, (i << 2) & 0x3fff_fffc, 1, 1, 0, b"x");
        ep.handle(t0, from, d);
        drain(&mut ep, t0);
    }
    let (conns, calls) = ep.sizes();
    assert!(
        conns <= limits.incoming_conns_per_host,
        "{conns} connections"
    );
    assert!(calls <= 4 * limits.incoming_conns_per_host, "{calls} calls");
    assert!(ep.counters().refused >= 39_000);
    // A real fileserver elsewhere still gets through.
    let real = addr(1, 7000);
    ep.handle(
        t0,
        real,
        request(0xa000_0001, 0x80, 1, &204u32.to_be_bytes()),
    );
    assert_eq!(incoming(&mut ep).len(), 1);
    // Half-open calls die and their connections are forgotten within seconds.
    run_until(&mut ep, t0, t0 + Duration::from_secs(30));
    ep.handle_timeout(t0 + Duration::from_secs(30));
    assert!(ep.sizes().0 <= 1, "{:?}", ep.sizes());
}

#[test]
fn a_forged_call_number_does_not_silence_the_channel() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let server = addr(1, 7000);
    let (epoch, cid) = (0x9000_0001, 0x40);
    ep.handle(t0, server, request(epoch, cid, 5, &206u32.to_be_bytes()));
    let r = incoming(&mut ep).pop().unwrap();
    ep.reply(r.call, Ok(vec![]), t0);
    // Forged: the same connection, call number far ahead.
    ep.handle(
        t0,
        server,
        request(epoch, cid, 5 + 100_000, &204u32.to_be_bytes()),
    );
    assert!(incoming(&mut ep).is_empty());
    ep.handle(t0, server, request(epoch, cid, 6, &204u32.to_be_bytes()));
    assert_eq!(incoming(&mut ep).len(), 1, "the real next call is served");
}

#[test]
fn oversized_data_is_dropped() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let big = vec![0u8; incoming::MAX_DATA_PAYLOAD + 1];
    ep.handle(t0, addr(1, 7000), request(0x9000_0001, 0x40, 1, &big));
    assert!(incoming(&mut ep).is_empty());
    assert_eq!(ep.sizes(), (0, 0));
}

#[test]
fn a_request_larger_than_the_limit_is_aborted() {
    let limits = Limits {
        max_request: 4096,
        ..Limits::default()
    };
    let mut ep = Endpoint::new(0x8000_0001, 0x100, CallConfig::default(), limits);
    let t0 = Instant::now();
    let from = addr(1, 7000);
    let chunk = vec![7u8; 1412];
    let mut aborted = false;
    for seq in 1..=4 {
        ep.handle(
            t0,
            from,
            request_packet(0x9000_0001, 0x40, 1, seq, 0, &chunk),
        );
        for (_, d) in drain(&mut ep, t0) {
            let p = &Packet::parse_datagram(d).unwrap()[0];
            aborted |= p.header.packet_type == PacketType::Abort;
        }
    }
    assert!(aborted);
    assert!(incoming(&mut ep).is_empty());
}

#[test]
fn a_stray_ping_is_answered_and_not_remembered() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let ping = Ack {
        buffer_space: 0,
        max_skew: 0,
        first_packet: 1,
        previous_packet: 0,
        serial: 0,
        reason: AckReason::Ping,
        acks: vec![],
        trailer: None,
    };
    let mut body = BytesMut::new();
    ping.encode(&mut body);
    let d = Packet {
        header: Header {
            epoch: 0x9000_0001,
            cid: 0x40,
            call_number: 0,
            seq: 0,
            serial: 1,
            packet_type: PacketType::Ack,
            flags: flags::CLIENT_INITIATED | flags::REQUEST_ACK,
            user_status: 0,
            security_index: 0,
            spare: 0,
            service_id: 1,
        },
        payload: body.freeze(),
    }
    .to_datagram();
    ep.handle(t0, addr(9, 1), d);
    assert_eq!(drain(&mut ep, t0).len(), 1);
    assert_eq!(ep.sizes(), (0, 0));
}

/// Two endpoints joined by a lossless wire that we run by hand.
#[test]
fn a_call_between_two_state_machines() {
    let (ca, sa) = (addr(2, 7001), addr(1, 7000));
    let mut client = endpoint();
    let mut server = Endpoint::new(0x8000_0002, 0x200, CallConfig::default(), Limits::default());
    let mut now = Instant::now();
    let id = client.start_call(sa, 1, &crate::security::Security::null(), now);
    let req = vec![1u8; 3000];
    client.with_call(id, now, |m| {
        m.write(&req);
        m.finish_sending();
    });
    let mut reply = Vec::new();
    for _ in 0..100 {
        for (to, d) in drain(&mut client, now) {
            assert_eq!(to, sa);
            server.handle(now, ca, d);
        }
        for r in incoming(&mut server) {
            assert_eq!(r.request.len(), 3000);
            server.reply(r.call, Ok(vec![2u8; 5000]), now);
        }
        for (to, d) in drain(&mut server, now) {
            assert_eq!(to, ca);
            client.handle(now, sa, d);
        }
        client.with_call(id, now, |m| {
            while let Some(c) = m.read() {
                reply.extend_from_slice(&c);
            }
        });
        if client.call_state(id) == Some(&CallState::Complete) {
            break;
        }
        now += Duration::from_millis(10);
        client.handle_timeout(now);
        server.handle_timeout(now);
    }
    assert_eq!(reply, vec![2u8; 5000]);
    client.release(id, now);
    assert_eq!(client.sizes().1, 0);
}

/// Random datagrams, most with a plausible header, from a peer we call and
/// from strangers: nothing panics and what is kept stays within the limits.
#[test]
fn random_datagrams_never_panic_and_stay_bounded() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let server = addr(1, 7000);
    let id = ep.start_call(server, 1, &crate::security::Security::null(), t0);
    ep.with_call(id, t0, |m| {
        m.write(b"request");
        m.finish_sending();
    });
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..20_000u32 {
        let len = (next() % 120) as usize;
        let mut d: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if d.len() >= 28 && i % 2 == 0 {
            d[20] = 1 + (next() % 5) as u8; // a known packet type
            d[26] = 0;
            d[27] = 1;
        }
        let from = if i % 3 == 0 {
            server
        } else {
            addr(9, (i % 5000) as u16)
        };
        let now = t0 + Duration::from_millis(u64::from(i));
        ep.handle(now, from, Bytes::from(d));
        drain(&mut ep, now);
        for r in incoming(&mut ep) {
            ep.reply(r.call, Ok(vec![1; 10]), now);
        }
        if i % 1000 == 0 {
            ep.handle_timeout(now);
        }
    }
    let (conns, calls) = ep.sizes();
    assert!(
        conns <= 1 + 2 * Limits::default().incoming_conns_per_host,
        "{conns}"
    );
    assert!(calls <= 4 * conns + 1, "{calls}");
}

fn rxkad(key_seed: u8) -> crate::security::Security {
    use crate::rxkad::{kdf, Credential, Level, Rxkad, KVNO_KERBEROS_V5};
    crate::security::Security::new(Rxkad::new(
        Credential {
            kvno: KVNO_KERBEROS_V5,
            ticket: std::sync::Arc::from(vec![key_seed; 100]),
            key: kdf(&[key_seed; 32]).unwrap(),
        },
        Level::Crypt,
    ))
}

/// An rxkad call: the server's CHALLENGE gets a RESPONSE on the call's connection; an
/// ABORT of the whole connection (call 0) fails the call with the server's code.
#[test]
fn rxkad_challenge_response_and_connection_abort() {
    use crate::rxkad::{codes, Fcrypt, INDEX};
    let mut ep = endpoint();
    let t0 = Instant::now();
    let server = addr(1, 7000);
    let alice = rxkad(1);
    let id = ep.start_call(server, 1, &alice, t0);
    ep.with_call(id, t0, |m| {
        m.write(b"request");
        m.finish_sending();
    });
    let sent = drain(&mut ep, t0);
    let data = Packet::parse_datagram(sent[0].1.clone()).unwrap().remove(0);
    assert_eq!(data.header.security_index, INDEX);
    assert_ne!(
        data.header.spare, 0,
        "the first DATA packet carries a checksum"
    );
    assert_ne!(&data.payload[..], b"request", "crypt level");

    // A stray challenge on a connection we do not have gets nothing.
    let challenge = |cid: u32| {
        let mut payload = Vec::new();
        for w in [2u32, 0x1234_5678, 0, 0] {
            payload.extend_from_slice(&w.to_be_bytes());
        }
        Packet {
            header: Header {
                call_number: 0,
                seq: 0,
                serial: 1,
                packet_type: PacketType::Challenge,
                flags: 0,
                cid,
                ..data.header
            },
            payload: payload.into(),
        }
        .to_datagram()
    };
    ep.handle(t0, server, challenge(data.header.cid ^ 0x40));
    assert!(drain(&mut ep, t0).is_empty());

    ep.handle(t0, server, challenge(data.header.cid & !3));
    let sent = drain(&mut ep, t0);
    assert_eq!(sent.len(), 1);
    let resp = Packet::parse_datagram(sent[0].1.clone()).unwrap().remove(0);
    assert_eq!(resp.header.packet_type, PacketType::Response);
    assert!(resp.header.is_client_initiated());
    let key = crate::rxkad::kdf(&[1; 32]).unwrap();
    let mut sealed = resp.payload[8..48].to_vec();
    Fcrypt::new(&key).pcbc_decrypt(key, &mut sealed);
    let word = |i: usize| u32::from_be_bytes(sealed[i * 4..i * 4 + 4].try_into().unwrap());
    assert_eq!(word(1), data.header.cid & !3);
    assert_eq!([word(4), word(5), word(6), word(7)], [1, 0, 0, 0]);
    assert_eq!(word(8), 0x1234_5679);

    // Another identity gets a connection of its own.
    let bob = rxkad(2);
    let other = ep.start_call(server, 1, &bob, t0);
    ep.with_call(other, t0, |m| m.write(b"x"));
    assert_eq!(ep.sizes(), (2, 2));

    let abort = Packet {
        header: Header {
            call_number: 0,
            seq: 0,
            serial: 2,
            packet_type: PacketType::Abort,
            flags: 0,
            cid: data.header.cid & !3,
            ..data.header
        },
        payload: Bytes::copy_from_slice(&codes::RXKADSEALEDINCON.to_be_bytes()),
    };
    ep.handle(t0, server, abort.to_datagram());
    assert!(matches!(
        ep.call_state(id),
        Some(CallState::Failed(crate::RxError::Aborted { code, .. })) if *code == codes::RXKADSEALEDINCON
    ));
    assert!(ep
        .call_state(other)
        .is_some_and(|s| *s == CallState::Active));
    // The aborted connection is not used again.
    ep.release(id, t0);
    let again = ep.start_call(server, 1, &alice, t0);
    ep.with_call(again, t0, |m| {
        m.write(b"again");
        m.finish_sending();
    });
    let sent = drain(&mut ep, t0);
    let p = Packet::parse_datagram(sent.last().unwrap().1.clone())
        .unwrap()
        .remove(0);
    assert_ne!(p.header.cid & !3, data.header.cid & !3);
}
