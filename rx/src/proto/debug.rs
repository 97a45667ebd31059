//! What `rxdebug` sees of the endpoint: its counters and connections, read from
//! the state machine as it stands (nothing is kept for the asker).

use std::net::SocketAddr;

use super::{Endpoint, Side};
use crate::call::Role;
use crate::conn::{Conn, ConnKey};
use crate::debug::{
    self, CallMode, CallState, ConnType, DebugCall, DebugConn, DebugPeer, DebugSource, DebugStats,
    RxStats,
};
use crate::packet::Packet;

/// The version `rxdebug -version` prints.
const VERSION: &str = concat!("afs-wasm rx ", env!("CARGO_PKG_VERSION"));

pub(super) fn answer(ep: &Endpoint, packet: &Packet) -> Option<Packet> {
    debug::answer(packet, VERSION, &View(ep))
}

struct View<'a>(&'a Endpoint);

impl View<'_> {
    /// Connections in a stable order (by key), IPv4 only: rxdebug's records
    /// have room for nothing else.
    fn conns(&self) -> impl Iterator<Item = (&ConnKey, &Conn)> {
        let mut v: Vec<_> = self
            .0
            .conns
            .iter()
            .filter(|(k, _)| k.peer.is_ipv4())
            .collect();
        v.sort_by_key(|(k, _)| (k.peer, k.epoch, k.cid, k.role == Role::Server));
        v.into_iter()
    }

    fn describe(&self, key: &ConnKey, conn: &Conn) -> DebugConn {
        let SocketAddr::V4(peer) = key.peer else {
            unreachable!("filtered to IPv4")
        };
        let conn_type = match key.role {
            Role::Client => ConnType::Client,
            Role::Server => ConnType::Server,
        };
        let mut d = DebugConn::new(peer, key.epoch, key.cid, conn_type);
        d.serial = conn.serial;
        d.security_index = conn.security.index();
        for (i, ch) in conn.channels.iter().enumerate() {
            let mut call = DebugCall {
                number: ch.call_number,
                ..DebugCall::default()
            };
            if let Some(slot) = ch.call.and_then(|id| self.0.calls.get(&id)) {
                call.state = if slot.machine.is_finished() {
                    CallState::Dally
                } else {
                    CallState::Active
                };
                call.mode = match (&slot.side, slot.machine.is_finished()) {
                    (_, true) => CallMode::Eof,
                    (Side::Client { .. } | Side::Serving, false) => CallMode::Sending,
                    (Side::Reading(_), false) => CallMode::Receiving,
                };
            }
            d.calls[i] = call;
        }
        d
    }
}

fn low32(n: u64) -> u32 {
    n.min(u64::from(u32::MAX)) as u32
}

impl DebugSource for View<'_> {
    fn stats(&self) -> DebugStats {
        DebugStats {
            calls_executed: low32(self.0.counters.calls_served),
            used_fds: 1,
            ..DebugStats::default()
        }
    }

    fn rx_stats(&self) -> RxStats {
        let c = &self.0.counters;
        let servers = self
            .0
            .conns
            .keys()
            .filter(|k| k.role == Role::Server)
            .count();
        RxStats {
            bogus_packet_on_read: low32(c.bad_packets),
            packets_read: c.in_by_type,
            packets_sent: c.out_by_type,
            n_server_conns: servers as u32,
            n_client_conns: (self.0.conns.len() - servers) as u32,
            n_call_structs: self.0.calls.len() as u32,
            ..RxStats::default()
        }
    }

    fn connection(&self, index: usize) -> Option<DebugConn> {
        let (k, c) = self.conns().nth(index)?;
        Some(self.describe(k, c))
    }

    fn interesting_connection(&self, index: usize) -> Option<DebugConn> {
        self.conns()
            .map(|(k, c)| self.describe(k, c))
            .filter(DebugConn::is_interesting)
            .nth(index)
    }

    fn peer(&self, _index: usize) -> Option<DebugPeer> {
        // Peers are not kept apart from connections: the list is empty.
        None
    }
}
