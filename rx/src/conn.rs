//! Connections, channels and the routing of packets to calls.
//!
//! A connection is (peer, epoch, connection id) and carries up to four calls at once,
//! one per channel; each channel numbers its calls 1, 2, 3... A call on a channel
//! implicitly acknowledges the previous one. Connections we start are *client*
//! connections; the peer's (the fileserver calling us back) are *server* ones.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;
use tracing::{debug, trace};

use crate::ack::{Ack, AckReason, AckTrailer};
use crate::call::{CallConfig, CallMachine, Role, MAX_PACKET_DATA};
use crate::error::codes;
use crate::packet::{flags, Header, Packet, PacketType, HEADER_LEN};
use crate::security::{Null, SecurityClass};

/// Calls a connection carries at once.
pub const CHANNELS: usize = 4;
/// Packets received unacknowledged after which a batch is acknowledged early.
const ACK_WITHIN_BATCH: u32 = 8;
/// Largest request an incoming call may carry (callback requests are tiny).
const MAX_REQUEST: usize = 4 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ConnKey {
    pub peer: SocketAddr,
    pub epoch: u32,
    pub cid: u32,
    pub role: Role,
}

pub(crate) type CallId = u64;

#[derive(Debug, Default)]
struct Channel {
    call_number: u32,
    call: Option<CallId>,
    /// A client channel whose last call ended abnormally is never reused: the
    /// server may still be working on it and would answer BUSY.
    retired: bool,
    /// The last completed call and the first packet its final ACK did not cover.
    completed: Option<(u32, u32)>,
}

#[derive(Debug)]
struct Conn {
    /// Protects every DATA payload of the connection, both ways.
    security: Arc<dyn SecurityClass>,
    serial: u32,
    channels: [Channel; CHANNELS],
    last_used: Instant,
}

impl Conn {
    fn new(security: Arc<dyn SecurityClass>, now: Instant) -> Self {
        Self {
            security,
            serial: 0,
            channels: Default::default(),
            last_used: now,
        }
    }

    fn idle(&self) -> bool {
        self.channels.iter().all(|c| c.call.is_none())
    }
}

/// A call and the task waiting on it.
pub(crate) struct CallSlot {
    pub conn: ConnKey,
    pub channel: usize,
    pub machine: CallMachine,
    pub notify: Arc<Notify>,
    /// Server calls: the request read so far (read eagerly so the window moves).
    pub request: BytesMut,
    /// Server calls: the request was handed to the service.
    pub dispatched: bool,
    /// Client calls: the application dropped its handle.
    pub orphaned: bool,
}

impl CallSlot {
    fn new(conn: ConnKey, channel: usize, machine: CallMachine) -> Self {
        Self {
            conn,
            channel,
            machine,
            notify: Arc::new(Notify::new()),
            request: BytesMut::new(),
            dispatched: false,
            orphaned: false,
        }
    }
}

/// A request that arrived complete and must be handed to a service.
pub(crate) struct Dispatch {
    pub call: CallId,
    pub peer: SocketAddr,
    pub header: Header,
    pub request: Bytes,
}

/// What processing produced: datagrams to send, tasks to wake, requests to serve.
#[derive(Default)]
pub(crate) struct Effects {
    pub out: Vec<(SocketAddr, Bytes)>,
    pub wake: Vec<Arc<Notify>>,
    pub dispatch: Vec<Dispatch>,
    /// Calls that received packets in the current batch.
    pub touched: Vec<CallId>,
}

/// Every connection and call of an endpoint.
pub(crate) struct Table {
    pub epoch: u32,
    next_cid: u32,
    next_call: CallId,
    conns: HashMap<ConnKey, Conn>,
    pools: HashMap<(SocketAddr, u16), Vec<ConnKey>>,
    pub calls: HashMap<CallId, CallSlot>,
    pub cfg: CallConfig,
}

impl Table {
    pub fn new(epoch: u32, first_cid: u32, cfg: CallConfig) -> Self {
        Self {
            epoch,
            next_cid: first_cid & 0x3fff_fffc,
            next_call: 1,
            conns: HashMap::new(),
            pools: HashMap::new(),
            calls: HashMap::new(),
            cfg,
        }
    }

    /// Starts a client call to `peer`, on a free channel of a pooled connection.
    pub fn start_call(&mut self, peer: SocketAddr, service_id: u16, now: Instant) -> CallId {
        let key = self.free_connection(peer, service_id, now);
        let conn = self.conns.get_mut(&key).expect("pooled connection exists");
        let channel = conn
            .channels
            .iter()
            .position(|c| c.call.is_none() && !c.retired)
            .expect("free_connection returns a connection with a free channel");
        let id = self.next_call;
        self.next_call += 1;
        let ch = &mut conn.channels[channel];
        ch.call_number += 1;
        ch.call = Some(id);
        conn.last_used = now;
        let template = Header {
            epoch: key.epoch,
            cid: key.cid | channel as u32,
            call_number: ch.call_number,
            seq: 0,
            serial: 0,
            packet_type: PacketType::Data,
            flags: 0,
            user_status: 0,
            security_index: conn.security.index(),
            spare: 0,
            service_id,
        };
        let machine = CallMachine::new(Role::Client, peer, template, self.cfg.clone(), now);
        self.calls.insert(id, CallSlot::new(key, channel, machine));
        id
    }

    fn free_connection(&mut self, peer: SocketAddr, service_id: u16, now: Instant) -> ConnKey {
        let pool = self.pools.entry((peer, service_id)).or_default();
        pool.retain(|k| self.conns.contains_key(k));
        let has_free = |k: &ConnKey| {
            self.conns[k]
                .channels
                .iter()
                .any(|c| c.call.is_none() && !c.retired)
        };
        if let Some(k) = pool.iter().find(|k| has_free(k)) {
            return *k;
        }
        let key = ConnKey {
            peer,
            epoch: self.epoch,
            cid: self.next_cid,
            role: Role::Client,
        };
        self.next_cid = self.next_cid.wrapping_add(CHANNELS as u32) & 0x3fff_fffc;
        self.conns.insert(key, Conn::new(Arc::new(Null), now));
        pool.push(key);
        key
    }

    /// Routes one received packet.
    pub fn route(&mut self, from: SocketAddr, packet: Packet, now: Instant, fx: &mut Effects) {
        let h = packet.header;
        match h.packet_type {
            PacketType::Data
            | PacketType::Ack
            | PacketType::Abort
            | PacketType::Busy
            | PacketType::AckAll => {}
            other => {
                trace!(%from, ?other, "ignoring packet type");
                return;
            }
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
                self.answer_stray_ping(key, &packet, fx);
                return;
            }
            if h.security_index != Null.index() {
                // Only rxnull is spoken; fileservers call clients back with it.
                debug!(%from, index = h.security_index, "incoming call with unsupported security");
                return;
            }
            self.conns.insert(key, Conn::new(Arc::new(Null), now));
        }
        let Some(conn) = self.conns.get_mut(&key) else {
            trace!(%from, cid = h.cid, "packet for unknown connection");
            return;
        };
        conn.last_used = now;
        let packet = if h.packet_type == PacketType::Data {
            match conn.security.open(&h, packet.payload) {
                Some(payload) => Packet { header: h, payload },
                None => {
                    trace!(%from, "DATA packet failed its security check");
                    return;
                }
            }
        } else {
            packet
        };
        let ch = &mut conn.channels[h.channel()];
        let target = match ch.call {
            Some(id) if h.call_number == ch.call_number => Some(id),
            _ if key.role == Role::Server
                && h.call_number > ch.call_number
                && h.packet_type == PacketType::Data =>
            {
                // A new incoming call; it implicitly acknowledges the previous one.
                if let Some(old) = ch.call.take() {
                    self.calls.remove(&old);
                }
                ch.call_number = h.call_number;
                let id = self.next_call;
                self.next_call += 1;
                ch.call = Some(id);
                let template = Header {
                    seq: 0,
                    serial: 0,
                    flags: 0,
                    ..h
                };
                let machine = CallMachine::new(Role::Server, from, template, self.cfg.clone(), now);
                self.calls
                    .insert(id, CallSlot::new(key, h.channel(), machine));
                Some(id)
            }
            _ => None,
        };
        match target {
            Some(id) => self.deliver(id, &packet, now, fx),
            None => self.answer_stray(key, &packet, fx),
        }
    }

    fn deliver(&mut self, id: CallId, packet: &Packet, now: Instant, fx: &mut Effects) {
        let Some(slot) = self.calls.get_mut(&id) else {
            return;
        };
        let ev = slot.machine.on_packet(&packet.header, &packet.payload, now);
        if ev.readable || ev.writable {
            fx.wake.push(slot.notify.clone());
        }
        if slot.machine.role() == Role::Server && !slot.dispatched {
            while let Some(chunk) = slot.machine.read() {
                slot.request.extend_from_slice(&chunk);
            }
            if slot.request.len() > MAX_REQUEST {
                debug!(peer = %slot.conn.peer, "incoming request too large; aborting");
                slot.machine.abort(codes::RX_PROTOCOL_ERROR);
            } else if slot.machine.rx_complete() {
                slot.dispatched = true;
                fx.dispatch.push(Dispatch {
                    call: id,
                    peer: slot.conn.peer,
                    header: packet.header,
                    request: std::mem::take(&mut slot.request).freeze(),
                });
            }
        }
        // Transmit once per batch of datagrams (see `flush`), so a burst of
        // packets that each request an ACK gets one ACK, not one per packet; but
        // within a long batch, ACK every few packets so the sender's window (32
        // packets at OpenAFS fileservers) never drains while we read.
        if slot.machine.unacked_packets() >= ACK_WITHIN_BATCH {
            self.transmit(id, now, fx);
        } else if !fx.touched.contains(&id) {
            fx.touched.push(id);
        }
    }

    /// Lets every call touched by the routed batch send what it now wants to.
    pub fn flush(&mut self, now: Instant, fx: &mut Effects) {
        for id in std::mem::take(&mut fx.touched) {
            self.transmit(id, now, fx);
        }
    }

    /// Lets a call emit what it wants to send, then tidies it up if it ended.
    pub fn transmit(&mut self, id: CallId, now: Instant, fx: &mut Effects) {
        let Some(slot) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(conn) = self.conns.get_mut(&slot.conn) else {
            return;
        };
        let was_finished = slot.machine.is_finished();
        let mut packets = Vec::new();
        slot.machine
            .poll_transmit(now, &mut conn.serial, &mut packets);
        for mut p in packets {
            if p.header.packet_type == PacketType::Data {
                p.payload = conn.security.seal(&p.header, p.payload);
            }
            fx.out.push((slot.conn.peer, p.to_datagram()));
        }
        if slot.machine.is_finished() {
            if !was_finished {
                fx.wake.push(slot.notify.clone());
            }
            self.settle(id);
        }
    }

    /// Detaches a finished call from its channel and frees it when nobody needs it.
    fn settle(&mut self, id: CallId) {
        let Some(slot) = self.calls.get(&id) else {
            return;
        };
        let role = slot.machine.role();
        let complete = *slot.machine.state() == crate::call::CallState::Complete;
        let remove = role == Role::Server || slot.orphaned;
        if let Some(conn) = self.conns.get_mut(&slot.conn) {
            let ch = &mut conn.channels[slot.channel];
            if ch.call == Some(id) {
                ch.call = None;
                if role == Role::Client {
                    if complete {
                        ch.completed = Some((ch.call_number, slot.machine.rx_next()));
                    } else {
                        ch.retired = true;
                    }
                }
            }
        }
        if remove {
            self.calls.remove(&id);
        }
    }

    /// Answers a packet for a call we no longer have, where an answer helps the peer.
    fn answer_stray(&mut self, key: ConnKey, packet: &Packet, fx: &mut Effects) {
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
            conn.serial = conn.serial.wrapping_add(1).max(1);
            fx.out
                .push((key.peer, standalone_ack(key, h, conn.serial, reason, first)));
        } else {
            trace!(peer = %key.peer, call = h.call_number, ty = ?h.packet_type, "stray packet");
        }
    }

    fn answer_stray_ping(&mut self, key: ConnKey, packet: &Packet, fx: &mut Effects) {
        if is_ping(packet) {
            fx.out.push((
                key.peer,
                standalone_ack(key, &packet.header, 1, AckReason::PingResponse, 1),
            ));
        }
    }

    /// Runs every call's timers; returns whether any call is still active.
    pub fn tick(&mut self, now: Instant, fx: &mut Effects) -> bool {
        let ids: Vec<CallId> = self.calls.keys().copied().collect();
        for id in ids {
            self.transmit(id, now, fx);
        }
        self.collect_idle_conns(now);
        self.calls.values().any(|s| !s.machine.is_finished())
    }

    fn collect_idle_conns(&mut self, now: Instant) {
        const SERVER_CONN_IDLE: Duration = Duration::from_secs(600);
        self.conns.retain(|key, conn| {
            let keep = !conn.idle()
                || match key.role {
                    Role::Server => now - conn.last_used < SERVER_CONN_IDLE,
                    Role::Client => !conn.channels.iter().all(|c| c.retired),
                };
            if !keep {
                debug!(peer = %key.peer, cid = key.cid, "dropping idle connection");
            }
            keep
        });
    }

    /// The application dropped a client call: abort it if unfinished, free it.
    pub fn release(&mut self, id: CallId, now: Instant, fx: &mut Effects) {
        let Some(slot) = self.calls.get_mut(&id) else {
            return;
        };
        slot.orphaned = true;
        if !slot.machine.is_finished() {
            slot.machine.abort(codes::RX_USER_ABORT);
        }
        self.transmit(id, now, fx);
        self.settle(id);
    }
}

fn is_ping(packet: &Packet) -> bool {
    packet.header.packet_type == PacketType::Ack
        && Ack::decode(&packet.payload).is_ok_and(|a| a.reason == AckReason::Ping)
}

/// An ACK sent outside any call's state (ping responses, repeated final acks).
fn standalone_ack(key: ConnKey, h: &Header, serial: u32, reason: AckReason, first: u32) -> Bytes {
    let ack = Ack {
        buffer_space: 0,
        max_skew: 0,
        first_packet: first,
        previous_packet: first.saturating_sub(1),
        serial: h.serial,
        reason,
        acks: vec![],
        trailer: Some(AckTrailer {
            rx_mtu: (HEADER_LEN + MAX_PACKET_DATA) as u32,
            max_mtu: (HEADER_LEN + MAX_PACKET_DATA) as u32,
            rwind: 32,
            jumbo_max: 1,
        }),
    };
    let mut body = BytesMut::new();
    ack.encode(&mut body);
    let header = Header {
        seq: 0,
        serial,
        packet_type: PacketType::Ack,
        flags: if key.role == Role::Client {
            flags::CLIENT_INITIATED
        } else {
            0
        },
        ..*h
    };
    Packet {
        header,
        payload: body.freeze(),
    }
    .to_datagram()
}
