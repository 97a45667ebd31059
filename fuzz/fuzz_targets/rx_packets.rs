//! Any datagram, fed to the packet parser and then to client and server calls,
//! must never panic.
#![no_main]

use std::time::{Duration, Instant};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rx::call::{CallConfig, CallMachine, Role};
use rx::packet::{Header, Packet, PacketType};

fuzz_target!(|data: &[u8]| {
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
