//! Any datagram, fed to the packet parser, to client and server calls, and to a
//! whole endpoint state machine (from a peer it has a call with and from a
//! stranger), must never panic.
#![no_main]

use std::time::{Duration, Instant};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rx::call::{CallConfig, CallMachine, Role};
use rx::packet::{Header, Packet, PacketType};

fuzz_target!(|data: &[u8]| {
    endpoint(data);
    let Ok(packets) = Packet::parse_datagram(Bytes::copy_from_slice(data)) else {
        return;
    };
    let _ = rx::ack::Ack::decode(data);
    let now = Instant::now();
    let template = Header {
        epoch: 0x8000_0001,
        cid: 4,
        call_number: 1,
        seq: 0,
        serial: 0,
        packet_type: PacketType::Data,
        flags: 0,
        user_status: 0,
        security_index: 0,
        spare: 0,
        service_id: 1,
    };
    let peer = "127.0.0.1:7000".parse().unwrap();
    for role in [Role::Client, Role::Server] {
        let mut call = CallMachine::new(role, peer, template, CallConfig::default(), now);
        call.write(b"request");
        call.finish_sending();
        let mut serial = 0;
        let mut out = Vec::new();
        call.poll_transmit(now, &mut serial, &mut out);
        for (i, p) in packets.iter().enumerate() {
            let t = now + Duration::from_millis(i as u64 * 7);
            call.on_packet(&p.header, &p.payload, t);
            call.poll_transmit(t, &mut serial, &mut out);
            while call.read().is_some() {}
        }
    }
});

fn endpoint(data: &[u8]) {
    use rx::proto::{Endpoint, Limits};
    let now = Instant::now();
    let server = "127.0.0.1:7000".parse().unwrap();
    let stranger = "10.0.0.9:1234".parse().unwrap();
    let mut ep = Endpoint::new(0x8000_0001, 0x100, CallConfig::default(), Limits::default());
    let id = ep.start_call(server, 1, now);
    ep.with_call(id, now, |m| {
        m.write(b"request");
        m.finish_sending();
    });
    let mut out = Vec::new();
    ep.drain_transmits(now, &mut out);
    for from in [server, stranger] {
        ep.handle(now, from, Bytes::copy_from_slice(data));
        ep.drain_transmits(now, &mut out);
        while let Some(ev) = ep.poll_event() {
            if let rx::proto::Event::Incoming(req) = ev {
                ep.reply(req.call, Ok(b"reply".to_vec()), now);
            }
        }
    }
    ep.handle_timeout(now + Duration::from_secs(30));
    ep.drain_transmits(now, &mut out);
}
