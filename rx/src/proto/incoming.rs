//! Received datagrams: parsing, admission and routing to calls.
//!
//! Anyone can send us a datagram, so nothing here keeps state for a packet
//! until it is known to belong to a call of ours or passes the [`Limits`] for a
//! new incoming call. Packets we cannot place get at most one small answer
//! (a ping response, a repeated final ACK), never more than they cost the sender.
//!
//! [`Limits`]: super::Limits

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use tracing::{debug, trace};

use super::{CallId, CallSlot, Endpoint, Event, IncomingRequest, Side};
use crate::ack::AckReason;
use crate::call::{CallMachine, Role};
use crate::conn::{is_ping, standalone_ack, Conn, ConnKey};
use crate::error::codes;
use crate::packet::{Header, Packet, PacketType, HEADER_LEN};
use crate::security::{ConnSecurity, Null};

/// Largest DATA payload accepted: what fits one 1500-byte Ethernet frame after
/// the IP, UDP and Rx headers (OpenAFS's packets are no larger; we accept no
/// jumbograms). Bigger payloads are dropped, so a call buffers at most its
/// window times this.
pub const MAX_DATA_PAYLOAD: usize = 1500 - 20 - 8 - HEADER_LEN;

/// How far past a channel's current call number a new incoming call may be. A
/// peer numbers its calls on a channel 1, 2, 3...; a forged packet with a huge
/// number would otherwise make every later real call look old.
pub const CALL_NUMBER_WINDOW: u32 = 64;

/// Packets kept from a datagram are copied out of the receive buffer when
/// they are this small: a few retained bytes must not pin a whole batch.
const COPY_BELOW: usize = 512;

/// Packets received unacknowledged after which a batch is acknowledged early.
const ACK_WITHIN_BATCH: u32 = 8;

impl Endpoint {
    /// Processes one received datagram.
    pub fn handle(&mut self, now: Instant, from: SocketAddr, datagram: Bytes) {
        match Packet::parse_datagram(datagram) {
            Ok(packets) => {
                for p in packets {
                    self.counters.packets_in += 1;
                    let ty = p.header.packet_type.to_u8();
                    super::count_type(&mut self.counters.in_by_type, Some(ty));
                    self.route(from, p, now);
                }
            }
            Err(e) => {
                self.counters.bad_packets += 1;
                trace!(%from, error = %e, "dropping bad datagram");
            }
        }
    }

    fn route(&mut self, from: SocketAddr, packet: Packet, now: Instant) {
        let h = packet.header;
        match h.packet_type {
            PacketType::Data
            | PacketType::Ack
            | PacketType::Abort
            | PacketType::Busy
            | PacketType::AckAll => {}
            PacketType::Version | PacketType::Debug => {
                self.answer_debug(from, &packet);
                return;
            }
            PacketType::Challenge if !h.is_client_initiated() => {
                self.answer_challenge(from, &packet, now);
                return;
            }
            other => {
                trace!(%from, ?other, "ignoring packet type");
                return;
            }
        }
        if h.packet_type == PacketType::Data && packet.payload.len() > MAX_DATA_PAYLOAD {
            self.counters.bad_packets += 1;
            trace!(%from, len = packet.payload.len(), "DATA larger than our MTU");
            return;
        }
        let key = ConnKey {
            peer: from,
            epoch: h.epoch,
            cid: h.conn_id(),
            role: if h.is_client_initiated() {
                Role::Server
            } else {
                Role::Client
            },
        };
        if key.role == Role::Server && !self.conns.contains_key(&key) {
            if h.packet_type != PacketType::Data {
                self.answer_stray_ping(key, &packet);
                return;
            }
            if !self.admit(key, &h, now) {
                return;
            }
        }
        let Some(conn) = self.conns.get_mut(&key) else {
            trace!(%from, cid = h.cid, "packet for unknown connection");
            return;
        };
        let packet = if h.packet_type == PacketType::Data {
            match conn.security.open(&h, packet.payload) {
                Ok(payload) if payload.len() < COPY_BELOW => Packet {
                    header: h,
                    payload: Bytes::copy_from_slice(&payload),
                },
                Ok(payload) => Packet { header: h, payload },
                Err(e) => {
                    self.counters.bad_packets += 1;
                    trace!(%from, error = %e, "DATA packet failed its security check");
                    return;
                }
            }
        } else {
            packet
        };
        conn.last_used = now;
        if h.packet_type == PacketType::Abort && h.call_number == 0 && key.role == Role::Client {
            self.connection_aborted(key, &packet, now);
            return;
        }
        let ch = &mut conn.channels[h.channel()];
        let target = match ch.call {
            Some(id) if h.call_number == ch.call_number => Some(id),
            _ if key.role == Role::Server
                && h.packet_type == PacketType::Data
                && h.call_number > ch.call_number
                && (ch.call_number == 0
                    || h.call_number - ch.call_number <= CALL_NUMBER_WINDOW) =>
            {
                Some(self.new_incoming_call(key, &h, now))
            }
            _ => None,
        };
        match target {
            Some(id) => self.deliver(id, &packet, now),
            None => self.answer_stray(key, &packet),
        }
    }

    /// Whether a new incoming connection may be kept; counts it if so.
    fn admit(&mut self, key: ConnKey, h: &Header, now: Instant) -> bool {
        if h.security_index != ConnSecurity::index(&Null) {
            // Only rxnull is spoken; fileservers call clients back with it.
            debug!(peer = %key.peer, index = h.security_index, "incoming call with unsupported security");
            return false;
        }
        let host = key.peer.ip();
        let from_host = self.incoming_per_host.get(&host).copied().unwrap_or(0);
        if from_host >= self.limits.incoming_conns_per_host
            || self.incoming_total >= self.limits.incoming_conns
        {
            self.counters.refused += 1;
            trace!(peer = %key.peer, from_host, total = self.incoming_total, "incoming connection refused");
            return false;
        }
        *self.incoming_per_host.entry(host).or_default() += 1;
        self.incoming_total += 1;
        self.conns
            .insert(key, Conn::new(Box::new(Null), h.service_id, now));
        self.arm_collection(now);
        true
    }

    /// A new call on an incoming channel; it implicitly ends the channel's previous one.
    fn new_incoming_call(&mut self, key: ConnKey, h: &Header, now: Instant) -> CallId {
        let id = self.call_id();
        let conn = self
            .conns
            .get_mut(&key)
            .expect("routed to a known connection");
        let ch = &mut conn.channels[h.channel()];
        let old = ch.call.replace(id);
        ch.call_number = h.call_number;
        if let Some(old) = old {
            self.calls.remove(&old);
            self.timers.set(old, None);
        }
        let template = Header {
            seq: 0,
            serial: 0,
            flags: 0,
            ..*h
        };
        let machine = CallMachine::new(
            Role::Server,
            key.peer,
            template,
            self.incoming_cfg.clone(),
            now,
        );
        let slot = CallSlot {
            conn: key,
            channel: h.channel(),
            machine,
            side: Side::Reading(Default::default()),
        };
        self.calls.insert(id, slot);
        id
    }

    fn deliver(&mut self, id: CallId, packet: &Packet, now: Instant) {
        let max_request = self.limits.max_request;
        let Some(slot) = self.calls.get_mut(&id) else {
            return;
        };
        let ev = slot.machine.on_packet(&packet.header, &packet.payload, now);
        let client = matches!(slot.side, Side::Client { released: false });
        if client && (ev.readable || ev.writable) {
            self.events.push_back(Event::Wake(id));
        }
        if let Side::Reading(request) = &mut slot.side {
            while let Some(chunk) = slot.machine.read() {
                request.extend_from_slice(&chunk);
            }
            if request.len() > max_request {
                debug!(peer = %slot.conn.peer, "incoming request too large; aborting");
                slot.machine.abort(codes::RX_PROTOCOL_ERROR);
            } else if slot.machine.rx_complete() {
                let request = std::mem::take(request).freeze();
                slot.side = Side::Serving;
                let h = &packet.header;
                self.events.push_back(Event::Incoming(IncomingRequest {
                    call: id,
                    peer: slot.conn.peer,
                    epoch: h.epoch,
                    cid: h.cid,
                    service_id: h.service_id,
                    request,
                }));
            }
        }
        // Transmit once per batch of datagrams (see `drain_transmits`), so a burst
        // of packets that each request an ACK gets one ACK, not one per packet;
        // but within a long batch, ACK every few packets so the sender's window
        // (32 packets at OpenAFS fileservers) never drains while we read.
        if slot.machine.unacked_packets() >= ACK_WITHIN_BATCH {
            self.transmit(id, now);
        } else if !self.touched.contains(&id) {
            self.touched.push(id);
        }
    }

    /// A server asks one of our connections to prove its identity: answer with a RESPONSE
    /// if the connection has a call waiting (otherwise the challenge is stale or forged and
    /// costs us nothing). A challenge the class cannot meet fails the connection's calls.
    fn answer_challenge(&mut self, from: SocketAddr, packet: &Packet, now: Instant) {
        let h = &packet.header;
        let key = ConnKey {
            peer: from,
            epoch: h.epoch,
            cid: h.conn_id(),
            role: Role::Client,
        };
        let Some(conn) = self.conns.get_mut(&key) else {
            trace!(%from, "challenge for an unknown connection");
            return;
        };
        if conn.idle() {
            trace!(%from, cid = key.cid, "challenge without a waiting call");
            return;
        }
        match conn.security.respond(&packet.payload, conn.call_numbers()) {
            Ok(payload) => {
                let header = Header {
                    epoch: key.epoch,
                    cid: key.cid,
                    call_number: 0,
                    seq: 0,
                    serial: conn.next_serial(),
                    packet_type: PacketType::Response,
                    flags: crate::packet::flags::CLIENT_INITIATED,
                    user_status: 0,
                    security_index: conn.security.index(),
                    spare: 0,
                    service_id: conn.service_id,
                };
                self.transmits
                    .push((from, Packet { header, payload }.to_datagram()));
            }
            Err(e) => {
                debug!(%from, cid = key.cid, error = %e, "cannot answer the challenge");
                let calls: Vec<CallId> = conn.channels.iter().filter_map(|c| c.call).collect();
                for id in calls {
                    if let Some(slot) = self.calls.get_mut(&id) {
                        slot.machine.abort(e.code);
                        if matches!(slot.side, Side::Client { released: false }) {
                            self.events.push_back(Event::Wake(id));
                        }
                    }
                    self.transmit(id, now);
                }
            }
        }
    }

    /// An ABORT for call 0 aborts the whole connection (a server does this when our
    /// RESPONSE fails its checks): every call on it fails with the code, and the connection
    /// is never used again.
    fn connection_aborted(&mut self, key: ConnKey, packet: &Packet, now: Instant) {
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        debug!(peer = %key.peer, cid = key.cid, "connection aborted by the peer");
        let calls: Vec<(CallId, u32)> = conn
            .channels
            .iter()
            .filter_map(|c| c.call.map(|id| (id, c.call_number)))
            .collect();
        for ch in &mut conn.channels {
            ch.retired = true;
        }
        self.arm_collection(now);
        for (id, call_number) in calls {
            let header = Header {
                call_number,
                ..packet.header
            };
            if let Some(slot) = self.calls.get_mut(&id) {
                let ev = slot.machine.on_packet(&header, &packet.payload, now);
                if ev.readable && matches!(slot.side, Side::Client { released: false }) {
                    self.events.push_back(Event::Wake(id));
                }
            }
            self.transmit(id, now);
        }
    }

    /// Answers a packet for a call we no longer have, where an answer helps the peer.
    fn answer_stray(&mut self, key: ConnKey, packet: &Packet) {
        let h = &packet.header;
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        let ch = &conn.channels[h.channel()];
        let finished = ch.completed.filter(|(n, _)| *n == h.call_number);
        let reply = match (h.packet_type, finished) {
            // The peer missed the final ACK of a call we completed: ack everything.
            (PacketType::Data, Some((_, first))) => Some((AckReason::Duplicate, first)),
            (PacketType::Ack, _) if is_ping(packet) => Some((AckReason::PingResponse, 1)),
            _ => None,
        };
        if let Some((reason, first)) = reply {
            let serial = conn.next_serial();
            let ack = standalone_ack(key.role, h, serial, reason, first);
            self.transmits.push((key.peer, ack));
        } else {
            trace!(peer = %key.peer, call = h.call_number, ty = ?h.packet_type, "stray packet");
        }
    }

    /// A ping on a connection we do not know: answered (one datagram for one),
    /// remembered not.
    fn answer_stray_ping(&mut self, key: ConnKey, packet: &Packet) {
        if is_ping(packet) {
            let ack = standalone_ack(key.role, &packet.header, 1, AckReason::PingResponse, 1);
            self.transmits.push((key.peer, ack));
        }
    }

    /// rxdebug's VERSION and DEBUG packets: answered statelessly.
    fn answer_debug(&mut self, from: SocketAddr, packet: &Packet) {
        if let Some(reply) = super::debug::answer(self, packet) {
            self.transmits.push((from, reply.to_datagram()));
        }
    }
}
