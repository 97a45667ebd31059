//! Answers OpenAFS `rxdebug` from a fixed sample snapshot, to check `rx::debug`
//! against the real tool.
//!
//! `cargo run -p rx --example debug_responder [PORT] [MAX_DATAGRAMS]`, then e.g.
//! `rxdebug 127.0.0.1 PORT -version`, `-noconns`, `-rxstats`, `-allconnections`,
//! `-peers`. Listens on 127.0.0.1:PORT (default 7199); exits after MAX_DATAGRAMS
//! datagrams if given.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use bytes::Bytes;
use rx::debug::{
    answer, call_flags, conn_flags, sec_type, CallMode, CallState, ConnType, DebugCall, DebugConn,
    DebugPeer, DebugStats, RxStats, SecStats, Snapshot,
};
use rx::packet::{Packet, PacketType, MAX_DATAGRAM};

const VERSION: &str = "afs-wasm rx 0.1.0 debug_responder";

fn snapshot() -> Snapshot {
    let mut rx_stats = RxStats {
        packet_requests: 5001,
        bogus_packet_on_read: 3,
        data_packets_read: 4100,
        ack_packets_read: 2050,
        dup_packets_read: 12,
        data_packets_sent: 3900,
        data_packets_resent: 21,
        ack_packets_sent: 1990,
        total_rtt: Duration::from_millis(1500),
        min_rtt: Duration::from_micros(250),
        max_rtt: Duration::from_millis(95),
        n_rtt_samples: 300,
        n_server_conns: 1,
        n_client_conns: 2,
        n_peer_structs: 2,
        n_call_structs: 4,
        n_free_call_structs: 1,
        n_busies: 7,
        ..Default::default()
    };
    rx_stats.packets_read[rx::debug::packet_type_slot(PacketType::Data)] = 4112;
    rx_stats.packets_read[rx::debug::packet_type_slot(PacketType::Ack)] = 2050;
    rx_stats.packets_read[rx::debug::packet_type_slot(PacketType::Debug)] = 9;
    rx_stats.packets_sent[rx::debug::packet_type_slot(PacketType::Data)] = 3921;
    rx_stats.packets_sent[rx::debug::packet_type_slot(PacketType::Ack)] = 1990;
    rx_stats.packets_sent[rx::debug::packet_type_slot(PacketType::Abort)] = 2;

    // A server connection with a call in progress: "interesting".
    let mut served = DebugConn::new(
        SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 10), 7001),
        0x6543_2100,
        0x0000_1000,
        ConnType::Server,
    );
    served.serial = 321;
    served.nat_mtu = 1444;
    served.flags = conn_flags::KNOW_WINDOW;
    served.calls[0] = DebugCall {
        number: 41,
        state: CallState::Active,
        mode: CallMode::Receiving,
        flags: call_flags::READER_WAIT,
        has_input: true,
        has_output: false,
    };
    served.calls[1] = DebugCall {
        number: 40,
        state: CallState::Dally,
        mode: CallMode::Eof,
        ..Default::default()
    };

    // A client connection whose calls are done: shown only with -allconnections.
    let mut to_fs = DebugConn::new(
        SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 7), 7000),
        0x6543_2101,
        0x0000_2004,
        ConnType::Client,
    );
    to_fs.serial = 1234;
    to_fs.nat_mtu = 1444;
    to_fs.security_index = 2;
    to_fs.sec_stats = SecStats {
        sec_type: sec_type::KAD,
        level: 2,
        flags: 2,
        expires: 0,
        packets_received: 500,
        packets_sent: 480,
        bytes_received: 600_000,
        bytes_sent: 70_000,
    };
    to_fs.calls[0] = DebugCall {
        number: 17,
        state: CallState::Dally,
        mode: CallMode::Eof,
        ..Default::default()
    };

    // A client connection that was aborted.
    let mut aborted = DebugConn::new(
        SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 8), 7003),
        0x6543_2101,
        0x0000_2008,
        ConnType::Client,
    );
    aborted.error = -1;
    aborted.calls[3] = DebugCall {
        number: 2,
        state: CallState::Hold,
        mode: CallMode::Error,
        ..Default::default()
    };

    let mut fs = DebugPeer::new(SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 7), 7000));
    fs.if_mtu = 1444;
    fs.nat_mtu = 1444;
    fs.max_mtu = 1444;
    fs.mtu = 1444;
    fs.ref_count = 1;
    fs.rtt = Duration::from_millis(23);
    fs.rtt_dev = Duration::from_millis(4);
    fs.n_sent = 3921;
    fs.re_sends = 21;
    fs.cwind = 32;
    fs.n_dgram_packets = 1;
    fs.if_dgram_packets = 1;
    fs.max_dgram_packets = 3;
    fs.bytes_sent = 5_000_000_123;
    fs.bytes_received = 600_000;

    let mut client = DebugPeer::new(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 10), 7001));
    client.if_mtu = 1444;
    client.nat_mtu = 1200;
    client.max_mtu = 1200;
    client.ref_count = 1;
    client.rtt = Duration::from_millis(2);
    client.n_sent = 77;
    client.bytes_sent = 8_800;
    client.bytes_received = 99_000;

    Snapshot {
        stats: DebugStats {
            n_free_packets: 123,
            n_packets: 456,
            packet_reclaims: 0,
            calls_executed: 789,
            waiting_for_packets: false,
            used_fds: 1,
            n_waiting: 0,
            idle_threads: 3,
            n_waited: 2,
        },
        rx_stats,
        conns: vec![served, to_fs, aborted],
        peers: vec![fs, client],
    }
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|a| a.parse().ok()).unwrap_or(7199);
    let max: Option<usize> = args.next().and_then(|a| a.parse().ok());
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, port))?;
    eprintln!("debug_responder listening on {}", socket.local_addr()?);
    let snap = snapshot();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut seen = 0usize;
    while max.is_none_or(|m| seen < m) {
        let (n, from) = socket.recv_from(&mut buf)?;
        seen += 1;
        let packets = match Packet::parse_datagram(Bytes::copy_from_slice(&buf[..n])) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("{from}: {n} bytes, not Rx: {e}");
                continue;
            }
        };
        for packet in packets {
            match answer(&packet, VERSION, &snap) {
                Some(reply) => {
                    let out = reply.to_datagram();
                    eprintln!(
                        "{from}: {:?} call {} payload {:02x?} -> {} bytes",
                        packet.header.packet_type,
                        packet.header.call_number,
                        &packet.payload[..packet.payload.len().min(8)],
                        out.len()
                    );
                    socket.send_to(&out, from)?;
                }
                None => eprintln!(
                    "{from}: {:?} call {}: no answer",
                    packet.header.packet_type, packet.header.call_number
                ),
            }
        }
    }
    Ok(())
}
