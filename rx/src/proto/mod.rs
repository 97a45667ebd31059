//! The Rx endpoint as a state machine: no sockets, no clocks, no runtime.
//!
//! In the shape of quinn-proto: feed it datagrams ([`Endpoint::handle`]) and time
//! ([`Endpoint::handle_timeout`]); poll it for datagrams to send
//! ([`Endpoint::drain_transmits`]), the next deadline ([`Endpoint::poll_timeout`])
//! and events ([`Endpoint::poll_event`]). Connections, channels, the calls we
//! make, the calls peers make to us, timers and security all live here, so every
//! adversarial timing can be replayed in a test. The tokio endpoint
//! (`crate::Endpoint`) only moves bytes and sleeps until the next deadline.
//!
//! What a peer can make us keep is bounded ([`Limits`]): connections per host and
//! in all, calls per connection (four), bytes per incoming request, and how long
//! an idle incoming connection is remembered.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tracing::debug;

use crate::call::{CallConfig, CallMachine, CallState, Role};
use crate::conn::{Conn, ConnKey, CHANNELS};
use crate::error::codes;
use crate::packet::{Header, PacketType};
use crate::security::Security;

pub use crate::conn::CallId;

mod debug;
mod incoming;
mod timers;

use timers::Timers;

/// What peers calling us may make the endpoint keep.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Incoming connections in all.
    pub incoming_conns: usize,
    /// Incoming connections from one IP address (any port): one host flooding
    /// us cannot take the room real fileservers need.
    pub incoming_conns_per_host: usize,
    /// Bytes a request may have; larger ones are aborted. Also bounds what an
    /// incoming call buffers out of order.
    pub max_request: usize,
    /// An idle incoming connection is forgotten after this long.
    pub incoming_idle: Duration,
    /// An incoming call that hears nothing for this long is dropped.
    pub incoming_dead: Duration,
}

impl Default for Limits {
    /// Limits for a cache manager, whose only service is the callback service:
    /// its requests are at most a few KiB (50 FIDs and 50 promises).
    fn default() -> Self {
        Self {
            incoming_conns: 1024,
            incoming_conns_per_host: 16,
            max_request: 64 << 10,
            incoming_idle: Duration::from_secs(10),
            incoming_dead: Duration::from_secs(5),
        }
    }
}

/// Something the application must act on.
#[derive(Debug)]
pub enum Event {
    /// A call can be read or written again, or it ended: wake whoever waits on it.
    Wake(CallId),
    /// A request arrived complete: answer it with [`Endpoint::reply`].
    Incoming(IncomingRequest),
}

/// A complete request from a peer, waiting for the service's answer.
#[derive(Debug, Clone)]
pub struct IncomingRequest {
    pub call: CallId,
    pub peer: SocketAddr,
    pub epoch: u32,
    pub cid: u32,
    pub service_id: u16,
    pub request: Bytes,
}

/// Which side of a call we are, and what that side still owes.
#[derive(Debug)]
enum Side {
    /// Our call: the application holds a handle until it releases it.
    Client { released: bool },
    /// The peer's call, reading its request.
    Reading(BytesMut),
    /// The peer's call, request handed to the application.
    Serving,
}

struct CallSlot {
    conn: ConnKey,
    channel: usize,
    machine: CallMachine,
    side: Side,
}

/// Counters an operator can read (rxdebug reports them).
#[derive(Debug, Default, Clone, Copy)]
pub struct Counters {
    pub packets_in: u64,
    pub packets_out: u64,
    /// Packets in and out by type (slot `type - 1`, as rxdebug shows them).
    pub in_by_type: [u32; 13],
    pub out_by_type: [u32; 13],
    pub bad_packets: u64,
    /// Incoming connections or calls refused by [`Limits`].
    pub refused: u64,
    pub calls_started: u64,
    pub calls_served: u64,
}

/// One endpoint's connections, calls and timers.
pub struct Endpoint {
    epoch: u32,
    next_cid: u32,
    next_call: CallId,
    call_cfg: CallConfig,
    /// Incoming calls use a small window and a short dead time.
    incoming_cfg: CallConfig,
    limits: Limits,
    conns: HashMap<ConnKey, Conn>,
    /// Client connections by peer, service and security class: an identity's calls never
    /// travel on another's connection.
    pools: HashMap<(SocketAddr, u16, Security), Vec<ConnKey>>,
    calls: HashMap<CallId, CallSlot>,
    incoming_per_host: HashMap<IpAddr, usize>,
    incoming_total: usize,
    timers: Timers,
    /// When idle connections are next looked at (None: none could be idle).
    collect_at: Option<Instant>,
    transmits: Vec<(SocketAddr, Bytes)>,
    events: VecDeque<Event>,
    /// Calls that received packets since the last drain: they send once per
    /// batch, so a burst that asks for many ACKs gets one.
    touched: Vec<CallId>,
    counters: Counters,
}

impl Endpoint {
    /// An endpoint whose connections carry `epoch` (random, high bit set) and
    /// whose connection ids start near `first_cid`.
    pub fn new(epoch: u32, first_cid: u32, call_cfg: CallConfig, limits: Limits) -> Self {
        let window = (limits.max_request / crate::call::MAX_PACKET_DATA).clamp(4, 255) as u32;
        let incoming_cfg = CallConfig {
            recv_window: call_cfg.recv_window.min(window),
            dead_time: limits.incoming_dead,
            idle_dead: limits.incoming_dead,
            ..call_cfg.clone()
        };
        Self {
            epoch,
            next_cid: first_cid & 0x3fff_fffc,
            next_call: 1,
            call_cfg,
            incoming_cfg,
            limits,
            conns: HashMap::new(),
            pools: HashMap::new(),
            calls: HashMap::new(),
            incoming_per_host: HashMap::new(),
            incoming_total: 0,
            timers: Timers::default(),
            collect_at: None,
            transmits: Vec::new(),
            events: VecDeque::new(),
            touched: Vec::new(),
            counters: Counters::default(),
        }
    }

    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Connections and calls held, for diagnostics and bounds checks.
    pub fn sizes(&self) -> (usize, usize) {
        (self.conns.len(), self.calls.len())
    }

    fn call_id(&mut self) -> CallId {
        let id = self.next_call;
        self.next_call += 1;
        id
    }

    /// Starts a client call to `service_id` at `peer`, on a connection of `security`.
    /// Nothing is sent until the application writes.
    pub fn start_call(
        &mut self,
        peer: SocketAddr,
        service_id: u16,
        security: &Security,
        now: Instant,
    ) -> CallId {
        let key = self.free_connection(peer, service_id, security, now);
        let id = self.call_id();
        let conn = self.conns.get_mut(&key).expect("pooled connection exists");
        let channel = conn
            .channels
            .iter()
            .position(|c| c.is_free())
            .expect("free_connection returns a connection with a free channel");
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
        let mut machine =
            CallMachine::new(Role::Client, peer, template, self.call_cfg.clone(), now);
        machine.set_packet_data(crate::call::MAX_PACKET_DATA - conn.security.overhead());
        let slot = CallSlot {
            conn: key,
            channel,
            machine,
            side: Side::Client { released: false },
        };
        self.calls.insert(id, slot);
        self.counters.calls_started += 1;
        id
    }

    fn free_connection(
        &mut self,
        peer: SocketAddr,
        service_id: u16,
        security: &Security,
        now: Instant,
    ) -> ConnKey {
        let pool = self
            .pools
            .entry((peer, service_id, security.clone()))
            .or_default();
        pool.retain(|k| self.conns.contains_key(k));
        let has_free = |k: &ConnKey| self.conns[k].channels.iter().any(|c| c.is_free());
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
        let conn_security = security.class().client_conn(key.epoch, key.cid);
        self.conns
            .insert(key, Conn::new(conn_security, service_id, now));
        pool.push(key);
        key
    }

    /// Runs `f` on a call's state machine, then lets the call send what it wants.
    /// None if the call is gone.
    pub fn with_call<R>(
        &mut self,
        id: CallId,
        now: Instant,
        f: impl FnOnce(&mut CallMachine) -> R,
    ) -> Option<R> {
        let r = f(&mut self.calls.get_mut(&id)?.machine);
        self.transmit(id, now);
        Some(r)
    }

    /// Answers an incoming call: reply bytes, or an abort code.
    pub fn reply(&mut self, id: CallId, reply: Result<Vec<u8>, i32>, now: Instant) {
        let Some(slot) = self.calls.get_mut(&id) else {
            return;
        };
        match reply {
            Ok(data) => {
                slot.machine.write(&data);
                slot.machine.finish_sending();
            }
            Err(code) => slot.machine.abort(code),
        }
        self.counters.calls_served += 1;
        self.transmit(id, now);
    }

    /// The application let go of a client call: abort it if unfinished, free it.
    pub fn release(&mut self, id: CallId, now: Instant) {
        let Some(slot) = self.calls.get_mut(&id) else {
            return;
        };
        slot.side = Side::Client { released: true };
        if !slot.machine.is_finished() {
            slot.machine.abort(codes::RX_USER_ABORT);
        }
        // The call is finished now: transmit sends its ABORT, if any, and settles
        // it, which frees a released call and its timer.
        self.transmit(id, now);
    }

    /// Datagrams to send, in order; call after every operation. Calls that
    /// received packets since the last drain send their ACKs and data first.
    pub fn drain_transmits(&mut self, now: Instant, out: &mut Vec<(SocketAddr, Bytes)>) {
        for id in std::mem::take(&mut self.touched) {
            self.transmit(id, now);
        }
        self.counters.packets_out += self.transmits.len() as u64;
        for (_, d) in &self.transmits {
            count_type(&mut self.counters.out_by_type, d.get(20).copied());
        }
        out.append(&mut self.transmits);
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Endpoint::handle_timeout`] must run next (None: nothing to do until a
    /// datagram arrives or the application acts).
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.timers.next(), self.collect_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs the timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        for id in self.timers.expired(now) {
            self.transmit(id, now);
        }
        if self.collect_at.is_some_and(|t| t <= now) {
            self.collect_idle(now);
        }
    }

    /// Lets a call emit what it wants to send, re-arms its timer, and tidies it up
    /// if it ended.
    fn transmit(&mut self, id: CallId, now: Instant) {
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
                p.payload = conn.security.seal(&mut p.header, p.payload);
            }
            self.transmits.push((slot.conn.peer, p.to_datagram()));
        }
        self.timers.set(id, slot.machine.next_deadline());
        if slot.machine.is_finished() {
            if !was_finished && matches!(slot.side, Side::Client { released: false }) {
                self.events.push_back(Event::Wake(id));
            }
            self.settle(id, now);
        }
    }

    /// Detaches a finished call from its channel and frees it when nobody needs it.
    fn settle(&mut self, id: CallId, now: Instant) {
        let Some(slot) = self.calls.get(&id) else {
            return;
        };
        let complete = *slot.machine.state() == CallState::Complete;
        let (remove, client) = match slot.side {
            Side::Client { released } => (released, true),
            Side::Reading(_) | Side::Serving => (true, false),
        };
        if let Some(conn) = self.conns.get_mut(&slot.conn) {
            let ch = &mut conn.channels[slot.channel];
            if ch.call == Some(id) {
                ch.call = None;
                if client && complete {
                    ch.completed = Some((ch.call_number, slot.machine.rx_next()));
                } else if client {
                    ch.retired = true;
                    self.arm_collection(now);
                }
            }
        }
        if remove {
            self.calls.remove(&id);
            self.timers.set(id, None);
        }
    }

    fn arm_collection(&mut self, now: Instant) {
        if self.collect_at.is_none() {
            self.collect_at = Some(now + self.limits.incoming_idle);
        }
    }

    /// Forgets idle incoming connections and client connections that can carry
    /// no more calls.
    fn collect_idle(&mut self, now: Instant) {
        let idle = self.limits.incoming_idle;
        let mut dropped = Vec::new();
        self.conns.retain(|key, conn| {
            let keep = !conn.idle()
                || match key.role {
                    Role::Server => now.saturating_duration_since(conn.last_used) < idle,
                    Role::Client => !conn.channels.iter().all(|c| c.retired),
                };
            if !keep {
                dropped.push(*key);
            }
            keep
        });
        let conns = &self.conns;
        self.pools.retain(|_, pool| {
            pool.retain(|k| conns.contains_key(k));
            !pool.is_empty()
        });
        for key in dropped {
            debug!(peer = %key.peer, cid = key.cid, "forgetting idle connection");
            if key.role == Role::Server {
                self.forget_incoming(key.peer.ip());
            }
        }
        let collectible = self.conns.keys().any(|k| k.role == Role::Server)
            || self
                .conns
                .values()
                .any(|c| c.channels.iter().any(|ch| ch.retired));
        self.collect_at = collectible.then(|| now + idle / 2);
    }

    fn forget_incoming(&mut self, host: IpAddr) {
        self.incoming_total = self.incoming_total.saturating_sub(1);
        if let Some(n) = self.incoming_per_host.get_mut(&host) {
            *n -= 1;
            if *n == 0 {
                self.incoming_per_host.remove(&host);
            }
        }
    }

    /// The state of a call, for the application's reads and writes.
    pub fn call_state(&self, id: CallId) -> Option<&CallState> {
        self.calls.get(&id).map(|s| s.machine.state())
    }
}

/// Counts a packet of wire type `ty` in `slots`.
fn count_type(slots: &mut [u32; 13], ty: Option<u8>) {
    if let Some(n) = ty.and_then(|t| slots.get_mut(usize::from(t).wrapping_sub(1))) {
        *n = n.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests;
