use super::*;
use std::net::{Ipv4Addr, SocketAddrV4};

fn addr(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

fn template() -> Header {
    Header {
        epoch: 0x8000_0001,
        cid: 0x40,
        call_number: 1,
        seq: 0,
        serial: 0,
        packet_type: PacketType::Data,
        flags: 0,
        user_status: 0,
        security_index: 0,
        spare: 0,
        service_id: 1,
    }
}

/// A client and a server call joined by a link that drops the packets `lose` picks.
struct Link {
    client: CallMachine,
    server: CallMachine,
    now: Instant,
    client_serial: u32,
    server_serial: u32,
    sent: usize,
    delivered: usize,
}

impl Link {
    fn new(cfg: CallConfig) -> Self {
        let now = Instant::now();
        Self {
            client: CallMachine::new(Role::Client, addr(7000), template(), cfg.clone(), now),
            server: CallMachine::new(Role::Server, addr(7001), template(), cfg, now),
            now,
            client_serial: 0,
            server_serial: 0,
            sent: 0,
            delivered: 0,
        }
    }

    /// Moves packets both ways until quiet, then advances the clock by `step`.
    fn run(&mut self, step: Duration, lose: &mut impl FnMut(usize, &Packet) -> bool) {
        loop {
            let mut out = Vec::new();
            self.client
                .poll_transmit(self.now, &mut self.client_serial, &mut out);
            let mut back = Vec::new();
            self.server
                .poll_transmit(self.now, &mut self.server_serial, &mut back);
            if out.is_empty() && back.is_empty() {
                break;
            }
            for p in out {
                self.sent += 1;
                if !lose(self.sent, &p) {
                    self.delivered += 1;
                    self.server.on_packet(&p.header, &p.payload, self.now);
                }
            }
            for p in back {
                self.sent += 1;
                if !lose(self.sent, &p) {
                    self.delivered += 1;
                    self.client.on_packet(&p.header, &p.payload, self.now);
                }
            }
        }
        self.now += step;
    }
}

fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt))
        .collect()
}

fn drain(call: &mut CallMachine) -> Vec<u8> {
    let mut v = Vec::new();
    while let Some(c) = call.read() {
        v.extend_from_slice(&c);
    }
    v
}

fn exchange(req_len: usize, reply_len: usize, lose: impl FnMut(usize, &Packet) -> bool) -> Link {
    exchange_with(CallConfig::default(), req_len, reply_len, lose)
}

fn exchange_with(
    cfg: CallConfig,
    req_len: usize,
    reply_len: usize,
    mut lose: impl FnMut(usize, &Packet) -> bool,
) -> Link {
    let mut link = Link::new(cfg);
    let request = pattern(req_len, 1);
    let reply = pattern(reply_len, 2);
    let mut got_request = Vec::new();
    let mut got_reply = Vec::new();
    let mut written = 0;
    let mut replied = false;
    for _ in 0..100_000 {
        while written < request.len() && link.client.can_send() {
            let end = (written + 4096).min(request.len());
            link.client.write(&request[written..end]);
            written = end;
        }
        if written == request.len() {
            link.client.finish_sending();
        }
        got_request.extend(drain(&mut link.server));
        if link.server.rx_complete() && !replied {
            link.server.write(&reply);
            link.server.finish_sending();
            replied = true;
        }
        got_reply.extend(drain(&mut link.client));
        if link.client.is_finished() && link.server.is_finished() {
            break;
        }
        link.run(Duration::from_millis(10), &mut lose);
    }
    assert_eq!(link.client.state(), &CallState::Complete);
    assert_eq!(link.server.state(), &CallState::Complete);
    assert_eq!(got_request, request);
    assert_eq!(got_reply, reply);
    link
}

#[test]
fn small_call_completes() {
    exchange(12, 100, |_, _| false);
}

#[test]
fn empty_request_and_reply() {
    exchange(0, 0, |_, _| false);
}

#[test]
fn packet_boundaries() {
    for n in [1, 1411, 1412, 1413, 2824, 2825, 65536] {
        exchange(n, n, |_, _| false);
    }
}

#[test]
fn large_transfer_both_ways() {
    exchange(3 << 20, 3 << 20, |_, _| false);
}

#[test]
fn survives_periodic_loss() {
    exchange(1 << 20, 1 << 20, |n, _| n % 7 == 0);
}

#[test]
fn survives_pseudo_random_loss() {
    let mut x: u32 = 12345;
    exchange(2 << 20, 2 << 20, move |_, _| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x % 100 < 20
    });
}

#[test]
fn survives_loss_of_every_ack_but_some() {
    exchange(200_000, 200_000, |n, p| {
        p.header.packet_type == PacketType::Ack && n % 3 != 0
    });
}

#[test]
fn silent_peer_makes_call_dead() {
    let cfg = CallConfig {
        dead_time: Duration::from_secs(3),
        ..CallConfig::default()
    };
    let mut link = Link::new(cfg);
    link.client.write(b"hello");
    link.client.finish_sending();
    let mut pings = 0;
    for _ in 0..1000 {
        link.run(Duration::from_millis(100), &mut |_, p| {
            if p.header.packet_type == PacketType::Ack {
                pings += 1;
            }
            true
        });
        if link.client.is_finished() {
            break;
        }
    }
    match link.client.state() {
        CallState::Failed(RxError::Dead { .. }) => {}
        other => panic!("expected dead, got {other:?}"),
    }
    assert!(pings >= 1, "keepalive pings were sent");
    let elapsed = link.now - link.client.last_progress;
    assert!(elapsed <= Duration::from_secs(4), "dead after {elapsed:?}");
}

#[test]
fn a_calls_own_dead_time_overrides_the_configured_one() {
    let mut link = Link::new(CallConfig::default());
    link.client.set_dead_time(Duration::from_secs(2));
    link.client.write(b"hello");
    link.client.finish_sending();
    let start = link.now;
    while !link.client.is_finished() && link.now - start < Duration::from_secs(20) {
        // The server hears nothing: every packet is lost.
        link.run(Duration::from_millis(100), &mut |_, _| true);
    }
    assert!(
        matches!(link.client.state(), CallState::Failed(RxError::Dead { .. })),
        "{:?}",
        link.client.state()
    );
    let took = link.now - start;
    assert!(
        took < Duration::from_secs(3),
        "dead after {took:?}, not after the configured 10 s"
    );
}

#[test]
fn ping_is_answered_with_first_packet_one() {
    let mut link = Link::new(CallConfig::default());
    let ack = Ack {
        buffer_space: 0,
        max_skew: 0,
        first_packet: 0,
        previous_packet: 0,
        serial: 0,
        reason: AckReason::Ping,
        acks: vec![],
        trailer: None,
    };
    let mut body = BytesMut::new();
    ack.encode(&mut body);
    let header = Header {
        packet_type: PacketType::Ack,
        serial: 77,
        ..template()
    };
    link.client.on_packet(&header, &body.freeze(), link.now);
    let mut out = Vec::new();
    link.client
        .poll_transmit(link.now, &mut link.client_serial, &mut out);
    let reply = Ack::decode(&out[0].payload).unwrap();
    assert_eq!(reply.reason, AckReason::PingResponse);
    assert_eq!(reply.first_packet, 1);
    assert_eq!(reply.serial, 77);
}

#[test]
fn abort_from_peer_fails_call() {
    let mut link = Link::new(CallConfig::default());
    link.client.write(b"x");
    link.client.finish_sending();
    let header = Header {
        packet_type: PacketType::Abort,
        ..template()
    };
    let ev = link
        .client
        .on_packet(&header, &Bytes::from_static(&[0, 0, 0, 2]), link.now);
    assert!(ev.readable);
    assert_eq!(
        link.client.state(),
        &CallState::Failed(RxError::Aborted {
            peer: addr(7000),
            code: 2
        })
    );
}

#[test]
fn hostile_packets_do_not_panic() {
    let mut link = Link::new(CallConfig::default());
    let mut x: u64 = 99;
    for i in 0..20_000u32 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let ty = [
            PacketType::Data,
            PacketType::Ack,
            PacketType::Busy,
            PacketType::AckAll,
        ][(x % 4) as usize];
        let header = Header {
            packet_type: ty,
            seq: (x >> 8) as u32 % 600,
            serial: i,
            flags: (x >> 40) as u8,
            ..template()
        };
        let len = (x >> 16) as usize % 300;
        let payload: Vec<u8> = (0..len).map(|j| (x >> (j % 56)) as u8).collect();
        link.client
            .on_packet(&header, &Bytes::from(payload.clone()), link.now);
        link.server
            .on_packet(&header, &Bytes::from(payload), link.now);
        let mut out = Vec::new();
        link.client
            .poll_transmit(link.now, &mut link.client_serial, &mut out);
        link.server
            .poll_transmit(link.now, &mut link.server_serial, &mut out);
        let _ = link.client.read();
        let _ = link.server.read();
    }
}

#[test]
fn small_send_window_never_waits_for_keepalives() {
    // OpenAFS fileservers send at most 32 packets beyond our hard ack: the window
    // must keep moving on acks alone, without pings (1 s apart) to unstick it.
    let cfg = CallConfig {
        max_send_window: 32,
        ..CallConfig::default()
    };
    let start = Instant::now();
    let link = exchange_with(cfg, 100, 4 << 20, |_, _| false);
    let simulated = link.now - start;
    assert!(
        simulated < Duration::from_millis(500),
        "took {simulated:?} of simulated time"
    );
}
