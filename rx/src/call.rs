//! The state machine of one Rx call, free of sockets and clocks.
//!
//! A call is a request stream from the client and a reply stream from the server,
//! each a sequence of DATA packets numbered from 1 whose last carries
//! `LAST_PACKET`. This module decides what to send (data within the peer's window,
//! retransmissions, ACKs, keepalive pings, an ABORT) given the packets received and
//! the time; the endpoint moves the bytes. It is driven the same way in unit tests.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tracing::trace;

use crate::ack::{Ack, AckReason, AckTrailer, MAX_ACKS};
use crate::error::RxError;
use crate::packet::{flags, Header, Packet, PacketType, HEADER_LEN, JUMBO_DATA_LEN};
use crate::rtt::RttEstimator;

/// Which side of the call we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// We started the call: we send the request and receive the reply.
    Client,
    /// The peer started it: we receive the request and send the reply.
    Server,
}

/// Tunables shared by all calls of an endpoint.
#[derive(Debug, Clone)]
pub struct CallConfig {
    /// A call fails when nothing at all was heard from the peer for this long.
    pub dead_time: Duration,
    /// A call waiting on a silent peer pings it this often.
    pub ping_interval: Duration,
    /// A call fails when no progress (data or acks) happened for this long.
    pub idle_dead: Duration,
    pub initial_rto: Duration,
    pub min_rto: Duration,
    pub max_rto: Duration,
    /// Packets we are willing to buffer per call (advertised to the peer).
    pub recv_window: u32,
    /// Packets we send before the peer's first ACK tells us its window.
    pub initial_send_window: u32,
    /// Upper bound on the send window whatever the peer advertises.
    pub max_send_window: u32,
    /// Acknowledge after this many in-order DATA packets.
    pub ack_every: u32,
    /// Otherwise acknowledge received data after this delay.
    pub delayed_ack: Duration,
    /// Packets per jumbogram we accept (advertised; 1 disables jumbograms).
    pub jumbo_max: u32,
    /// Largest datagram we accept (advertised as our interface MTU).
    pub max_mtu: u32,
    /// A server call acknowledges its request this long after it arrived, unless
    /// the reply (which acknowledges it implicitly) goes out first.
    pub reply_ack_delay: Duration,
}

impl Default for CallConfig {
    fn default() -> Self {
        Self {
            dead_time: Duration::from_secs(10),
            ping_interval: Duration::from_secs(1),
            idle_dead: Duration::from_secs(120),
            initial_rto: Duration::from_millis(200),
            min_rto: Duration::from_millis(30),
            max_rto: Duration::from_secs(2),
            recv_window: 255,
            initial_send_window: 16,
            max_send_window: 255,
            ack_every: 4,
            delayed_ack: Duration::from_millis(5),
            jumbo_max: 1,
            max_mtu: (HEADER_LEN + MAX_PACKET_DATA) as u32,
            reply_ack_delay: Duration::from_millis(100),
        }
    }
}

/// Payload bytes per DATA packet we send (the jumbogram subpacket size).
pub const MAX_PACKET_DATA: usize = JUMBO_DATA_LEN;

#[derive(Debug)]
struct TxPacket {
    seq: u32,
    data: Bytes,
    last: bool,
    /// When it was last (re)transmitted; None until first sent.
    sent_at: Option<Instant>,
    serial: u32,
    transmissions: u32,
    soft_acked: bool,
    /// Negatively acknowledged while later packets were received.
    fast_retransmit: bool,
}

/// Where a call is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallState {
    Active,
    /// Both directions finished (client: whole reply received; server: reply acked).
    Complete,
    Failed(RxError),
}

/// What a packet did to the call, for the endpoint to act on.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Events {
    /// New data can be read, or the call ended.
    pub readable: bool,
    /// Send window opened, or the call ended.
    pub writable: bool,
}

/// One Rx call's protocol state.
#[derive(Debug)]
pub struct CallMachine {
    role: Role,
    peer: SocketAddr,
    template: Header,
    cfg: CallConfig,
    state: CallState,
    // Transmit side.
    tx_queue: VecDeque<TxPacket>,
    tx_first: u32,
    tx_next: u32,
    tx_partial: BytesMut,
    tx_done: bool,
    twind: u32,
    rtt: RttEstimator,
    // Receive side.
    rx_next: u32,
    rx_ooo: BTreeMap<u32, Bytes>,
    rx_ready: VecDeque<Bytes>,
    rx_read_seq: u32,
    rx_last: Option<u32>,
    rx_highest: u32,
    rx_since_ack: u32,
    rx_acked_through: u32,
    ack_now: Option<(AckReason, u32)>,
    ack_at: Option<Instant>,
    // Liveness.
    last_heard: Instant,
    last_progress: Instant,
    last_ping: Option<(Instant, u32)>,
    abort_out: Option<i32>,
    /// The peer acknowledged something we sent, so it sees our packets: only then
    /// does a server call retransmit its reply on a timer. Until then a reply
    /// goes out once per request packet received, and a forged source address
    /// gets at most one datagram back for each it sends.
    peer_acked: bool,
    /// User data per DATA packet: MAX_PACKET_DATA less what the security class adds.
    packet_data: usize,
}

impl CallMachine {
    /// Creates a call. `template` carries epoch, cid (with channel), call number,
    /// service and security index; seq, serial, type and flags are filled per packet.
    pub fn new(
        role: Role,
        peer: SocketAddr,
        template: Header,
        cfg: CallConfig,
        now: Instant,
    ) -> Self {
        let rtt = RttEstimator::new(cfg.initial_rto, cfg.min_rto, cfg.max_rto);
        let twind = cfg.initial_send_window;
        Self {
            role,
            peer,
            template,
            cfg,
            state: CallState::Active,
            tx_queue: VecDeque::new(),
            tx_first: 1,
            tx_next: 1,
            tx_partial: BytesMut::new(),
            tx_done: false,
            twind,
            rtt,
            rx_next: 1,
            rx_ooo: BTreeMap::new(),
            rx_ready: VecDeque::new(),
            rx_read_seq: 1,
            rx_last: None,
            rx_highest: 0,
            rx_since_ack: 0,
            rx_acked_through: 1,
            ack_now: None,
            ack_at: None,
            last_heard: now,
            last_progress: now,
            last_ping: None,
            abort_out: None,
            peer_acked: role == Role::Client,
            packet_data: MAX_PACKET_DATA,
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn state(&self) -> &CallState {
        &self.state
    }

    /// The first sequence number not yet received in order.
    pub fn rx_next(&self) -> u32 {
        self.rx_next
    }

    pub fn call_number(&self) -> u32 {
        self.template.call_number
    }

    pub fn is_finished(&self) -> bool {
        self.state != CallState::Active
    }

    /// True once the whole incoming stream (request or reply) has arrived.
    pub fn rx_complete(&self) -> bool {
        self.rx_last.is_some_and(|last| self.rx_next > last)
    }

    /// True when the application may queue more data without exceeding the buffer.
    pub fn can_send(&self) -> bool {
        self.tx_queued() < self.tx_capacity()
    }

    fn tx_queued(&self) -> usize {
        self.tx_queue.len() + self.tx_partial.len() / self.packet_data
    }

    /// Packets the application may queue ahead of the window: several windows' worth,
    /// so the writer is woken rarely (see `on_ack`).
    fn tx_capacity(&self) -> usize {
        (4 * self.twind as usize).max(128)
    }

    /// Cuts our packets at `n` bytes of user data, so that what a security class adds to
    /// each still fits the MTU. Set before the first write.
    pub fn set_packet_data(&mut self, n: usize) {
        self.packet_data = n.clamp(1, MAX_PACKET_DATA);
    }

    /// Fails the call when nothing was heard from the peer for `d`, instead of the
    /// configured dead time: a caller with another server to ask gives up on this one sooner.
    pub fn set_dead_time(&mut self, d: Duration) {
        self.cfg.dead_time = d;
    }

    /// Queues request or reply bytes. Packets are cut at `packet_data` bytes.
    pub fn write(&mut self, data: &[u8]) {
        debug_assert!(!self.tx_done, "write after finish");
        if self.tx_done || self.is_finished() {
            return;
        }
        self.tx_partial.extend_from_slice(data);
        // Keep one full packet back so the final packet is never empty.
        while self.tx_partial.len() > self.packet_data {
            let chunk = self.tx_partial.split_to(self.packet_data).freeze();
            self.push_tx(chunk, false);
        }
    }

    /// Marks the end of our stream; the last packet carries LAST_PACKET.
    pub fn finish_sending(&mut self) {
        if self.tx_done || self.is_finished() {
            return;
        }
        let chunk = self.tx_partial.split().freeze();
        self.push_tx(chunk, true);
        self.tx_done = true;
    }

    fn push_tx(&mut self, data: Bytes, last: bool) {
        let seq = self.tx_next;
        self.tx_next += 1;
        self.tx_queue.push_back(TxPacket {
            seq,
            data,
            last,
            sent_at: None,
            serial: 0,
            transmissions: 0,
            soft_acked: false,
            fast_retransmit: false,
        });
    }

    /// Takes the next chunk of received data, in order.
    pub fn read(&mut self) -> Option<Bytes> {
        let chunk = self.rx_ready.pop_front()?;
        self.rx_read_seq += 1;
        // Reading made room in a full buffer: let the peer send again.
        if !self.rx_complete() && self.hard_ack_point() >= self.rx_acked_through + 16 {
            self.want_ack(AckReason::Delay, 0);
        }
        Some(chunk)
    }

    /// DATA packets received since our last ACK.
    pub fn unacked_packets(&self) -> u32 {
        self.rx_since_ack
    }

    /// Bytes received in order and not yet read.
    pub fn readable_len(&self) -> usize {
        self.rx_ready.iter().map(Bytes::len).sum()
    }

    /// True when every received byte was read and no more will come.
    pub fn at_eof(&self) -> bool {
        self.rx_ready.is_empty() && self.rx_complete()
    }

    /// Ends the call locally, sending an ABORT with `code` to the peer.
    pub fn abort(&mut self, code: i32) {
        if self.is_finished() {
            return;
        }
        self.abort_out = Some(code);
        self.state = CallState::Failed(RxError::LocallyAborted { code });
    }

    /// Processes one received packet addressed to this call.
    pub fn on_packet(&mut self, header: &Header, payload: &Bytes, now: Instant) -> Events {
        self.last_heard = now;
        if self.is_finished() && header.packet_type != PacketType::Data {
            return Events::default();
        }
        match header.packet_type {
            PacketType::Data => self.on_data(header, payload, now),
            PacketType::Ack => match Ack::decode(payload) {
                Ok(ack) => self.on_ack(header, &ack, now),
                Err(e) => {
                    trace!(peer = %self.peer, error = %e, "dropping bad ACK");
                    Events::default()
                }
            },
            PacketType::Abort => {
                let code = payload
                    .get(..4)
                    .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                    .unwrap_or(crate::error::codes::RX_PROTOCOL_ERROR);
                self.fail(RxError::Aborted {
                    peer: self.peer,
                    code,
                })
            }
            PacketType::Busy if self.role == Role::Client && self.rx_next == 1 => {
                self.fail(RxError::Busy { peer: self.peer })
            }
            PacketType::AckAll => {
                self.peer_acked = true;
                self.hard_ack_through(self.tx_next, now);
                Events {
                    writable: true,
                    readable: false,
                }
            }
            _ => Events::default(),
        }
    }

    fn fail(&mut self, err: RxError) -> Events {
        if !self.is_finished() {
            self.state = CallState::Failed(err);
        }
        Events {
            readable: true,
            writable: true,
        }
    }

    fn want_ack(&mut self, reason: AckReason, serial: u32) {
        let rank = |r: AckReason| match r {
            AckReason::PingResponse => 4,
            AckReason::Requested => 3,
            AckReason::OutOfSequence | AckReason::Duplicate | AckReason::ExceedsWindow => 2,
            _ => 1,
        };
        match self.ack_now {
            Some((old, _)) if rank(old) > rank(reason) => {}
            _ => self.ack_now = Some((reason, serial)),
        }
    }

    fn on_data(&mut self, header: &Header, payload: &Bytes, now: Instant) -> Events {
        let seq = header.seq;
        if self.role == Role::Client && self.rx_next == 1 && !self.tx_queue.is_empty() {
            // The first reply packet implicitly acknowledges the whole request.
            self.hard_ack_through(self.tx_next, now);
        }
        if self.is_finished() {
            // The peer missed our final ACK: repeat it.
            if self.state == CallState::Complete {
                self.want_ack(AckReason::Duplicate, header.serial);
            }
            return Events::default();
        }
        if seq == 0 || self.rx_last.is_some_and(|last| seq > last) {
            return Events::default();
        }
        if seq < self.rx_next || self.rx_ooo.contains_key(&seq) {
            if let Some(p) = self.reply_outstanding() {
                // The peer repeats its request: it missed our reply, which
                // answers it better than an ACK would.
                p.fast_retransmit = true;
            } else {
                self.want_ack(AckReason::Duplicate, header.serial);
            }
            return Events::default();
        }
        if seq >= self.rx_read_seq + self.cfg.recv_window.min(MAX_ACKS as u32) {
            self.want_ack(AckReason::ExceedsWindow, header.serial);
            return Events::default();
        }
        if header.flags & flags::LAST_PACKET != 0 {
            self.rx_last = Some(seq);
        }
        self.rx_highest = self.rx_highest.max(seq);
        let in_order = seq == self.rx_next;
        self.rx_ooo.insert(seq, payload.clone());
        let mut events = Events::default();
        while let Some(chunk) = self.rx_ooo.remove(&self.rx_next) {
            self.rx_ready.push_back(chunk);
            self.rx_next += 1;
            events.readable = true;
            self.last_progress = now;
        }
        if header.flags & flags::REQUEST_ACK != 0 {
            self.want_ack(AckReason::Requested, header.serial);
        } else if !in_order || !self.rx_ooo.is_empty() {
            self.want_ack(AckReason::OutOfSequence, header.serial);
        }
        self.rx_since_ack += 1;
        if self.rx_complete() && self.role == Role::Server {
            // The reply will acknowledge the request; an ACK goes out only if
            // the service is slow to answer.
            if !matches!(self.ack_now, Some((AckReason::PingResponse, _))) {
                self.ack_now = None;
            }
            self.ack_at = Some(now + self.cfg.reply_ack_delay);
        } else if self.rx_complete() {
            // Acknowledge the whole reply at once so the peer can finish.
            self.want_ack(AckReason::Idle, 0);
            self.state = CallState::Complete;
            events.writable = true;
        } else if self.rx_since_ack >= self.cfg.ack_every {
            self.want_ack(AckReason::Idle, 0);
        } else if self.ack_at.is_none() {
            self.ack_at = Some(now + self.cfg.delayed_ack);
        }
        events
    }

    /// A server call's first reply packet the peer has not acknowledged.
    fn reply_outstanding(&mut self) -> Option<&mut TxPacket> {
        if self.role != Role::Server {
            return None;
        }
        self.tx_queue.iter_mut().find(|p| p.sent_at.is_some())
    }

    fn on_ack(&mut self, header: &Header, ack: &Ack, now: Instant) -> Events {
        if ack.reason != AckReason::Ping {
            // A ping proves nothing (anyone can send one); an ACK of our data does.
            self.peer_acked = true;
        }
        if ack.reason == AckReason::Ping {
            self.want_ack(AckReason::PingResponse, header.serial);
        }
        if let Some(t) = &ack.trailer {
            self.twind = t.rwind.clamp(1, self.cfg.max_send_window);
        }
        self.take_rtt_sample(ack, now);
        let before = self.tx_first;
        if ack.first_packet > self.tx_first {
            self.hard_ack_through(ack.first_packet, now);
        }
        self.apply_soft_acks(ack, now);
        Events {
            readable: self.is_finished(),
            // Wake a blocked writer only once half the buffer drained: one wakeup
            // per many ACKs instead of one per ACK.
            writable: (self.tx_first != before && self.tx_queued() <= self.tx_capacity() / 2)
                || self.is_finished(),
        }
    }

    fn take_rtt_sample(&mut self, ack: &Ack, now: Instant) {
        if ack.serial == 0 {
            return;
        }
        if ack.reason == AckReason::PingResponse {
            if let Some((at, serial)) = self.last_ping {
                if serial == ack.serial {
                    self.rtt.sample(now - at);
                }
            }
            return;
        }
        if ack.reason != AckReason::Requested {
            return;
        }
        let hit = self
            .tx_queue
            .iter()
            .find(|p| p.serial == ack.serial && p.transmissions == 1);
        if let Some(sent) = hit.and_then(|p| p.sent_at) {
            self.rtt.sample(now - sent);
        }
    }

    /// Drops every packet below `first` (never beyond what was sent).
    fn hard_ack_through(&mut self, first: u32, now: Instant) {
        let sent_limit = self
            .tx_queue
            .iter()
            .find(|p| p.sent_at.is_none())
            .map_or(self.tx_next, |p| p.seq);
        let first = first.min(sent_limit);
        while self.tx_queue.front().is_some_and(|p| p.seq < first) {
            self.tx_queue.pop_front();
        }
        if first > self.tx_first {
            self.tx_first = first;
            self.last_progress = now;
        }
        if self.role == Role::Server && self.tx_done && self.tx_queue.is_empty() {
            self.state = CallState::Complete;
        }
    }

    fn apply_soft_acks(&mut self, ack: &Ack, now: Instant) {
        let Some(last_acked) = ack.acks.iter().rposition(|&a| a) else {
            return;
        };
        let srtt = self.rtt.srtt().unwrap_or(self.cfg.min_rto);
        for (i, &acked) in ack.acks.iter().enumerate() {
            let seq = ack.first_packet.wrapping_add(i as u32);
            let Some(idx) = seq.checked_sub(self.tx_first) else {
                continue;
            };
            let Some(p) = self.tx_queue.get_mut(idx as usize) else {
                break;
            };
            if p.sent_at.is_none() {
                break;
            }
            p.soft_acked = acked;
            // A hole before a received packet: resend once it has had time to arrive.
            if !acked && i < last_acked && p.sent_at.is_some_and(|t| now - t >= srtt) {
                p.fast_retransmit = true;
            }
        }
    }

    /// When the endpoint must call `poll_transmit` again at the latest.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.is_finished() {
            return None;
        }
        let mut deadline = self.last_heard + self.cfg.dead_time;
        let mut consider = |t: Instant| deadline = deadline.min(t);
        if let Some(t) = self.ack_at {
            consider(t);
        }
        let rto = self.rtt.rto();
        let retransmits = self
            .tx_queue
            .iter()
            .filter(|p| self.peer_acked && !p.soft_acked);
        for p in retransmits {
            match p.sent_at {
                Some(t) => consider(t + rto),
                None => break,
            }
        }
        if self.wants_keepalive() {
            consider(
                self.last_heard
                    .max(self.last_ping.map_or(self.last_heard, |p| p.0))
                    + self.cfg.ping_interval,
            );
        }
        Some(deadline)
    }

    /// A client waiting for its reply keeps the peer's attention with pings.
    fn wants_keepalive(&self) -> bool {
        self.role == Role::Client && self.tx_done && !self.rx_complete()
    }

    /// Emits every packet the call should send now.
    pub fn poll_transmit(&mut self, now: Instant, serial: &mut u32, out: &mut Vec<Packet>) {
        if let Some(code) = self.abort_out.take() {
            let payload = Bytes::copy_from_slice(&code.to_be_bytes());
            out.push(self.packet(PacketType::Abort, 0, 0, serial, payload));
            return;
        }
        self.check_timers(now);
        if let Some((reason, s)) = self.ack_now.take() {
            self.emit_ack(reason, s, serial, out);
        } else if self.ack_at.is_some_and(|t| t <= now) {
            self.emit_ack(AckReason::Delay, 0, serial, out);
        }
        if self.is_finished() {
            return;
        }
        self.emit_data(now, serial, out);
        self.emit_keepalive(now, serial, out);
    }

    fn check_timers(&mut self, now: Instant) {
        if self.is_finished() {
            return;
        }
        if now - self.last_heard >= self.cfg.dead_time {
            trace!(peer = %self.peer, call = self.template.call_number, "call dead");
            self.state = match self.role {
                Role::Client => CallState::Failed(RxError::Dead {
                    peer: self.peer,
                    after: self.cfg.dead_time,
                }),
                // A server whose reply nobody acknowledges just gives up.
                Role::Server => CallState::Complete,
            };
        } else if now - self.last_progress >= self.cfg.idle_dead && self.role == Role::Client {
            self.abort_out = Some(crate::error::codes::RX_CALL_TIMEOUT);
            self.state = CallState::Failed(RxError::Dead {
                peer: self.peer,
                after: self.cfg.idle_dead,
            });
        }
    }

    fn emit_data(&mut self, now: Instant, serial: &mut u32, out: &mut Vec<Packet>) {
        let rto = self.rtt.rto();
        // Until the peer shows it receives what we send, one packet at a time.
        let window = if self.peer_acked { self.twind } else { 1 };
        let window_end = self.tx_first.saturating_add(window);
        let mut timed_out = false;
        let start = out.len();
        let client = self.role == Role::Client;
        for i in 0..self.tx_queue.len() {
            let p = &self.tx_queue[i];
            if p.seq >= window_end {
                break;
            }
            let due = match p.sent_at {
                None => true,
                Some(_) if p.fast_retransmit => true,
                Some(t) if self.peer_acked && !p.soft_acked && now - t >= rto => {
                    timed_out = true;
                    true
                }
                Some(_) => false,
            };
            if !due {
                continue;
            }
            let p = &mut self.tx_queue[i];
            let mut fl = if client { flags::CLIENT_INITIATED } else { 0 };
            if p.last {
                fl |= flags::LAST_PACKET | flags::REQUEST_ACK;
            } else {
                fl |= flags::MORE_PACKETS;
            }
            if p.transmissions > 0 || p.seq.is_multiple_of(16) {
                fl |= flags::REQUEST_ACK;
            }
            *serial = serial.wrapping_add(1).max(1);
            p.serial = *serial;
            p.sent_at = Some(now);
            p.transmissions += 1;
            p.fast_retransmit = false;
            let header = Header {
                seq: p.seq,
                serial: p.serial,
                packet_type: PacketType::Data,
                flags: fl,
                ..self.template
            };
            out.push(Packet {
                header,
                payload: p.data.clone(),
            });
        }
        // Ask for an ACK when the window is full, so it keeps moving even if the
        // peer acks lazily. (OpenAFS acks every second packet anyway; asking on
        // every burst only adds ACKs for the peer to send and us to process.)
        let window_full = self
            .tx_queue
            .iter()
            .take_while(|p| p.seq < window_end)
            .all(|p| p.sent_at.is_some());
        if window_full {
            if let Some(last) = out[start..].last_mut() {
                last.header.flags |= flags::REQUEST_ACK;
            }
        }
        if timed_out {
            self.rtt.on_timeout();
        }
        if self.role == Role::Server && out.len() > start {
            // The reply acknowledges the request: no separate ACK for it.
            if !matches!(self.ack_now, Some((AckReason::PingResponse, _))) {
                self.ack_now = None;
            }
            self.ack_at = None;
        }
    }

    fn emit_keepalive(&mut self, now: Instant, serial: &mut u32, out: &mut Vec<Packet>) {
        if !self.wants_keepalive() || now - self.last_heard < self.cfg.ping_interval {
            return;
        }
        if self
            .last_ping
            .is_some_and(|(t, _)| now - t < self.cfg.ping_interval)
        {
            return;
        }
        self.emit_ack(AckReason::Ping, 0, serial, out);
        self.last_ping = Some((now, *serial));
    }

    /// The first packet we do not hard-acknowledge. Everything received in order is
    /// acknowledged while at most `recv_window` packets wait unread; beyond that the
    /// peer's window stops moving until the application reads (flow control).
    fn hard_ack_point(&self) -> u32 {
        if self.rx_complete() {
            self.rx_next
        } else {
            self.rx_next.min(self.rx_read_seq + self.cfg.recv_window)
        }
    }

    fn emit_ack(&mut self, reason: AckReason, cause: u32, serial: &mut u32, out: &mut Vec<Packet>) {
        let first = self.hard_ack_point();
        let n = (self.rx_highest + 1)
            .saturating_sub(first)
            .min(MAX_ACKS as u32);
        let acks = (0..n)
            .map(|i| {
                let seq = first + i;
                seq < self.rx_next || self.rx_ooo.contains_key(&seq)
            })
            .collect();
        let ack = Ack {
            buffer_space: 0,
            max_skew: 0,
            first_packet: first,
            previous_packet: self.rx_highest,
            serial: cause,
            reason,
            acks,
            trailer: Some(AckTrailer {
                rx_mtu: (HEADER_LEN + MAX_PACKET_DATA) as u32,
                max_mtu: self.cfg.max_mtu,
                rwind: self.cfg.recv_window,
                jumbo_max: self.cfg.jumbo_max,
            }),
        };
        let mut body = BytesMut::with_capacity(64);
        ack.encode(&mut body);
        let mut pkt = self.packet(PacketType::Ack, 0, 0, serial, body.freeze());
        if reason == AckReason::Ping {
            pkt.header.flags |= flags::REQUEST_ACK;
        }
        out.push(pkt);
        self.rx_since_ack = 0;
        self.rx_acked_through = first;
        self.ack_at = None;
    }

    fn packet(&self, ty: PacketType, seq: u32, fl: u8, serial: &mut u32, payload: Bytes) -> Packet {
        *serial = serial.wrapping_add(1).max(1);
        let client = if self.role == Role::Client {
            flags::CLIENT_INITIATED
        } else {
            0
        };
        Packet {
            header: Header {
                seq,
                serial: *serial,
                packet_type: ty,
                flags: fl | client,
                ..self.template
            },
            payload,
        }
    }
}

#[cfg(test)]
mod tests;
