//! Answers to the connectionless probes of OpenAFS's `rxdebug`.
//!
//! Besides calls, an Rx endpoint receives two kinds of packets that belong to no
//! connection: VERSION (type 13) asks for a version string, DEBUG (type 8) carries
//! a request for one record of the endpoint's state. OpenAFS answers both before it
//! looks for a connection; operators point `rxdebug HOST PORT` at any Rx port
//! (`-version`, `-rxstats`, `-peers`, `-allconnections`, `-noconns`).
//!
//! This module is pure: [`answer`] turns one request [`Packet`] into at most one
//! reply [`Packet`], asking a [`DebugSource`] only for the record the request needs.
//! The endpoint sends the reply to the request's source address.
//!
//! # Wire format (OpenAFS `src/rx/rx.h`, `rx_packet.c`, `rx.c`)
//!
//! * A request is only answered if its header has the client-initiated flag. The
//!   reply repeats the request's header (same call number, which is how `rxdebug`
//!   matches replies) with that flag cleared. OpenAFS peers send VERSION packets
//!   *without* the flag as NAT keep-alives; those get no reply.
//! * VERSION: any payload; the reply payload is 65 bytes, a NUL-padded string.
//! * DEBUG: the payload starts with `struct rx_debugIn` (big-endian `type`,
//!   `index`, both 32-bit signed). The reply is one C struct in network byte
//!   order: `rx_debugStats` (56 bytes) for GETSTATS, `rx_debugConn` (176) for
//!   GETCONN/GETALLCONN, `rx_statistics` (284) for RXSTATS, `rx_debugPeer` (132)
//!   for GETPEER, and for any other type an `rx_debugIn` of two `-8`s
//!   (`RX_DEBUGI_BADTYPE`). Past the last connection the reply is a connection
//!   whose `cid` is `0xffffffff`; past the last peer, a peer whose host is
//!   `0xffffffff`.
//! * Addresses and ports in `rx_debugConn`/`rx_debugPeer` are in network order,
//!   as `rxdebug` expects.
//!
//! Every request gets at most one reply datagram, of a fixed size that does not
//! depend on the request: at most 28 + 284 bytes for a DEBUG request of at least
//! 28 + 8 (under 9x), 28 + 65 for a VERSION request of at least 28 (3.3x). These
//! are the sizes OpenAFS sends. An endpoint exposed to the Internet may still want
//! to rate-limit these answers.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::packet::{flags, Packet, PacketType, HEADER_LEN};

/// The debug protocol version we report (`RX_DEBUGI_VERSION`, 'S'): the latest,
/// which tells `rxdebug` that every request type and every field below is valid.
pub const DEBUG_VERSION: u8 = b'S';
/// Size of a VERSION reply payload.
pub const VERSION_REPLY_LEN: usize = 65;
/// Size of `struct rx_debugIn`, the DEBUG request payload.
pub const DEBUG_IN_LEN: usize = 8;
/// Size of `struct rx_debugStats`.
pub const DEBUG_STATS_LEN: usize = 56;
/// Size of `struct rx_debugConn`.
pub const DEBUG_CONN_LEN: usize = 176;
/// Size of `struct rx_debugPeer`.
pub const DEBUG_PEER_LEN: usize = 132;
/// Size of `struct rx_statistics`.
pub const RX_STATS_LEN: usize = 284;
/// Largest reply datagram [`answer`] produces.
pub const MAX_REPLY_DATAGRAM: usize = HEADER_LEN + RX_STATS_LEN;
/// Packet types counted in [`RxStats::packets_read`] and `packets_sent`
/// (`RX_N_PACKET_TYPES`): slot `type - 1`.
pub const N_PACKET_TYPES: usize = 13;
/// Calls per connection (`RX_MAXCALLS`).
pub const CHANNELS: usize = 4;

/// Request types of `struct rx_debugIn` (`RX_DEBUGI_*`).
pub mod request_type {
    /// Basic statistics: `rx_debugStats`.
    pub const GET_STATS: i32 = 1;
    /// The index-th "interesting" connection: `rx_debugConn`.
    pub const GET_CONN: i32 = 2;
    /// The index-th connection: `rx_debugConn`.
    pub const GET_ALL_CONN: i32 = 3;
    /// All counters: `rx_statistics`.
    pub const RX_STATS: i32 = 4;
    /// The index-th peer: `rx_debugPeer`.
    pub const GET_PEER: i32 = 5;
    /// Sent back (as type and index) for a type we do not know.
    pub const BAD_TYPE: i32 = -8;
}

/// Connection flag bits shown by `rxdebug` (`RX_CONN_*`).
pub mod conn_flags {
    pub const MAKECALL_WAITING: u8 = 1;
    pub const DESTROY_ME: u8 = 2;
    pub const USING_PACKET_CKSUM: u8 = 4;
    pub const KNOW_WINDOW: u8 = 8;
    pub const RESET: u8 = 16;
    pub const BUSY: u8 = 32;
    pub const ATTACH_WAIT: u8 = 64;
}

/// Call flag bits shown by `rxdebug` (the low byte of `RX_CALL_*`).
pub mod call_flags {
    pub const READER_WAIT: u8 = 1;
    pub const WAIT_WINDOW_ALLOC: u8 = 2;
    pub const WAIT_WINDOW_SEND: u8 = 4;
    pub const WAIT_PACKETS: u8 = 8;
    pub const WAIT_PROC: u8 = 16;
    pub const RECEIVE_DONE: u8 = 32;
    pub const CLEARED: u8 = 64;
}

/// Security statistics types (`RX_SECTYPE_*`), for [`SecStats::sec_type`].
pub mod sec_type {
    /// No statistics (`rxdebug` prints nothing, or a note for rxkad).
    pub const UNKNOWN: u8 = 0;
    /// rxnull.
    pub const NULL: u8 = 1;
    pub const VAB: u8 = 2;
    /// rxkad.
    pub const KAD: u8 = 3;
}

/// Basic statistics, the GETSTATS answer (`struct rx_debugStats`).
///
/// `rxdebug` prints these on every run except `-version`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DebugStats {
    /// Packet buffers free (`nFreePackets`).
    pub n_free_packets: u32,
    /// Packet buffers in all (`nPackets`).
    pub n_packets: u32,
    pub packet_reclaims: u32,
    /// Incoming calls served so far (`callsExecuted`).
    pub calls_executed: u32,
    /// Some thread waits for a packet buffer.
    pub waiting_for_packets: bool,
    /// Open file descriptors (sockets), as OpenAFS counts them up to 64.
    pub used_fds: u8,
    /// Incoming calls waiting for a thread (`nWaiting`).
    pub n_waiting: u32,
    /// Server threads idle.
    pub idle_threads: u32,
    /// Incoming calls that ever had to wait for a thread (`nWaited`).
    pub n_waited: u32,
}

/// Endpoint-wide counters, the RXSTATS answer (`struct rx_statistics`), shown by
/// `rxdebug -rxstats`.
///
/// Counters are 32 bits on the wire (`rxdebug` prints most with `%u`, some with
/// `%d`); callers truncate wider counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RxStats {
    /// Packet buffer allocations.
    pub packet_requests: u32,
    pub receive_pkt_alloc_failures: u32,
    pub send_pkt_alloc_failures: u32,
    pub special_pkt_alloc_failures: u32,
    pub socket_greedy: u32,
    /// Datagrams too short or otherwise unparsable.
    pub bogus_packet_on_read: u32,
    /// Address of the last bogus datagram's sender, as a raw 32-bit value.
    pub bogus_host: u32,
    pub no_packet_on_read: u32,
    pub no_packet_buffers_on_read: u32,
    pub selects: u32,
    pub send_selects: u32,
    /// Packets read, per type: slot [`packet_type_slot`].
    pub packets_read: [u32; N_PACKET_TYPES],
    /// Unique DATA packets read.
    pub data_packets_read: u32,
    pub ack_packets_read: u32,
    pub dup_packets_read: u32,
    pub spurious_packets_read: u32,
    /// Packets sent, per type: slot [`packet_type_slot`].
    pub packets_sent: [u32; N_PACKET_TYPES],
    pub ack_packets_sent: u32,
    pub ping_packets_sent: u32,
    pub abort_packets_sent: u32,
    pub busy_packets_sent: u32,
    /// Unique DATA packets sent.
    pub data_packets_sent: u32,
    /// DATA packets retransmitted.
    pub data_packets_resent: u32,
    pub data_packets_pushed: u32,
    pub ignore_acked_packet: u32,
    /// Sum of all round-trip samples; `rxdebug` divides by `n_rtt_samples`.
    pub total_rtt: Duration,
    pub min_rtt: Duration,
    pub max_rtt: Duration,
    pub n_rtt_samples: u32,
    pub n_server_conns: u32,
    pub n_client_conns: u32,
    pub n_peer_structs: u32,
    pub n_call_structs: u32,
    pub n_free_call_structs: u32,
    pub net_send_failures: u32,
    pub fatal_errors: u32,
    /// Packets dropped because their call was dallying.
    pub ignore_packet_dally: u32,
    pub receive_cbuf_pkt_alloc_failures: u32,
    pub send_cbuf_pkt_alloc_failures: u32,
    pub n_busies: u32,
}

/// The slot of `ty` in [`RxStats::packets_read`] and [`RxStats::packets_sent`]
/// (OpenAFS counts type `t` in slot `t - 1`).
pub fn packet_type_slot(ty: PacketType) -> usize {
    usize::from(ty.to_u8()) - 1
}

/// Which side started the connection (`RX_CLIENT_CONNECTION`, `RX_SERVER_CONNECTION`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ConnType {
    /// We make calls on it.
    #[default]
    Client,
    /// The peer makes calls on it.
    Server,
}

/// The state of one channel's call (`RX_STATE_*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CallState {
    /// No call has used the channel (`rxdebug`: "not initialized").
    #[default]
    NotInit,
    /// Server side: packets arrived, no thread yet.
    Precall,
    Active,
    /// Finished; lingering to answer retransmissions.
    Dally,
    /// Waiting for the reply to be acknowledged.
    Hold,
    Reset,
}

/// The mode of an active call (`RX_MODE_*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CallMode {
    /// No mode (`rxdebug`: "unknown").
    #[default]
    None,
    Sending,
    Receiving,
    Error,
    Eof,
}

/// One channel of a connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DebugCall {
    /// The channel's current (or last) call number; 0 if never used.
    pub number: u32,
    pub state: CallState,
    pub mode: CallMode,
    /// [`call_flags`] bits.
    pub flags: u8,
    /// Received packets wait to be read (`RX_OTHER_IN`).
    pub has_input: bool,
    /// Sent packets wait for acknowledgement (`RX_OTHER_OUT`).
    pub has_output: bool,
}

/// A security class's statistics for one connection (`struct rx_securityObjectStats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SecStats {
    /// A [`sec_type`] value; [`sec_type::UNKNOWN`] if the class keeps none.
    pub sec_type: u8,
    /// rxkad: 0 clear, 1 auth, 2 crypt.
    pub level: u8,
    /// rxkad: 1 unallocated, 2 authenticated, 4 expired, 8 packet checksums.
    pub flags: u32,
    /// rxkad: ticket expiry, seconds since the Unix epoch (0: none).
    pub expires: u32,
    pub packets_received: u32,
    pub packets_sent: u32,
    pub bytes_received: u32,
    pub bytes_sent: u32,
}

impl SecStats {
    /// What OpenAFS's rxnull class reports.
    pub fn rxnull() -> Self {
        SecStats {
            sec_type: sec_type::NULL,
            ..Default::default()
        }
    }
}

/// One connection, a GETCONN/GETALLCONN answer (`struct rx_debugConn`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebugConn {
    /// The peer's address.
    pub peer: SocketAddrV4,
    pub epoch: u32,
    /// Connection id; its channel bits are ignored (sent as zero).
    pub cid: u32,
    /// Last serial number sent.
    pub serial: u32,
    /// The four channels.
    pub calls: [DebugCall; CHANNELS],
    /// The connection's error (an abort code), 0 if none.
    pub error: i32,
    /// [`conn_flags`] bits.
    pub flags: u8,
    pub conn_type: ConnType,
    pub security_index: u8,
    pub sec_stats: SecStats,
    /// The peer's MTU as negotiated (`natMTU`).
    pub nat_mtu: u32,
}

impl DebugConn {
    /// A connection with no calls yet.
    pub fn new(peer: SocketAddrV4, epoch: u32, cid: u32, conn_type: ConnType) -> Self {
        DebugConn {
            peer,
            epoch,
            cid,
            serial: 0,
            calls: [DebugCall::default(); CHANNELS],
            error: 0,
            flags: 0,
            conn_type,
            security_index: 0,
            sec_stats: SecStats::rxnull(),
            nat_mtu: 0,
        }
    }

    /// Whether plain `rxdebug` (GETCONN) shows the connection: a thread waits for
    /// a channel, the connection is being destroyed, or a call is in progress
    /// (OpenAFS `rxi_IsConnInteresting`).
    pub fn is_interesting(&self) -> bool {
        self.flags & (conn_flags::MAKECALL_WAITING | conn_flags::DESTROY_ME) != 0
            || self.calls.iter().any(|c| {
                matches!(c.state, CallState::Precall | CallState::Active)
                    || matches!(c.mode, CallMode::Sending | CallMode::Receiving)
            })
    }
}

/// One peer (remote host and port), a GETPEER answer (`struct rx_debugPeer`),
/// shown by `rxdebug -peers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebugPeer {
    pub addr: SocketAddrV4,
    /// MTU of our interface towards the peer.
    pub if_mtu: u16,
    /// When the peer became idle, seconds (0 if in use).
    pub idle_when: u32,
    /// Connections using the peer.
    pub ref_count: u16,
    /// Smoothed round-trip time (`rxdebug` shows whole milliseconds).
    pub rtt: Duration,
    /// Round-trip time deviation (`rxdebug` shows whole milliseconds).
    pub rtt_dev: Duration,
    /// Packets sent to the peer.
    pub n_sent: u32,
    /// Packets retransmitted to the peer.
    pub re_sends: u32,
    /// The peer's MTU as negotiated.
    pub nat_mtu: u16,
    /// Largest MTU the peer advertised.
    pub max_mtu: u16,
    pub max_dgram_packets: u16,
    pub if_dgram_packets: u16,
    /// MTU in use.
    pub mtu: u16,
    /// Congestion window, packets.
    pub cwind: u16,
    /// Jumbogram size in use, packets.
    pub n_dgram_packets: u16,
    pub congest_seq: u16,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

impl DebugPeer {
    /// A peer with all counters zero.
    pub fn new(addr: SocketAddrV4) -> Self {
        DebugPeer {
            addr,
            if_mtu: 0,
            idle_when: 0,
            ref_count: 0,
            rtt: Duration::ZERO,
            rtt_dev: Duration::ZERO,
            n_sent: 0,
            re_sends: 0,
            nat_mtu: 0,
            max_mtu: 0,
            max_dgram_packets: 0,
            if_dgram_packets: 0,
            mtu: 0,
            cwind: 0,
            n_dgram_packets: 0,
            congest_seq: 0,
            bytes_sent: 0,
            bytes_received: 0,
        }
    }
}

/// Where [`answer`] gets the endpoint's state. Each method is called at most once
/// per request, and only for the request type that needs it.
pub trait DebugSource {
    fn stats(&self) -> DebugStats;
    fn rx_stats(&self) -> RxStats;
    /// The `index`-th connection (from 0) in an order that stays the same between
    /// requests as far as possible (`rxdebug` walks the index up until `None`).
    fn connection(&self, index: usize) -> Option<DebugConn>;
    /// The `index`-th peer (from 0), in a stable order, or `None` past the end.
    fn peer(&self, index: usize) -> Option<DebugPeer>;
    /// The `index`-th connection for which [`DebugConn::is_interesting`] holds.
    /// The default scans [`connection`](Self::connection) from 0.
    fn interesting_connection(&self, index: usize) -> Option<DebugConn> {
        (0..)
            .map_while(|i| self.connection(i))
            .filter(DebugConn::is_interesting)
            .nth(index)
    }
}

/// A fixed picture of the endpoint's state, for tests and simple callers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub stats: DebugStats,
    pub rx_stats: RxStats,
    pub conns: Vec<DebugConn>,
    pub peers: Vec<DebugPeer>,
}

impl DebugSource for Snapshot {
    fn stats(&self) -> DebugStats {
        self.stats.clone()
    }
    fn rx_stats(&self) -> RxStats {
        self.rx_stats.clone()
    }
    fn connection(&self, index: usize) -> Option<DebugConn> {
        self.conns.get(index).cloned()
    }
    fn peer(&self, index: usize) -> Option<DebugPeer> {
        self.peers.get(index).cloned()
    }
}

/// A request this module answers, as read from a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// A VERSION packet.
    Version,
    /// DEBUG GETSTATS.
    Stats,
    /// DEBUG GETCONN (`all == false`: interesting connections only) or GETALLCONN.
    Conn { index: usize, all: bool },
    /// DEBUG RXSTATS.
    RxStats,
    /// DEBUG GETPEER.
    Peer { index: usize },
    /// A DEBUG request of a type we do not know: answered with BADTYPE.
    Unknown(i32),
}

/// Whether a packet of this type belongs to this module rather than to a
/// connection: the endpoint should hand DEBUG and VERSION packets to [`answer`]
/// and never create a connection for them.
pub fn is_debug_type(ty: PacketType) -> bool {
    matches!(ty, PacketType::Debug | PacketType::Version)
}

/// Reads the request in `packet`; `None` if it must not be answered (another
/// packet type, not client-initiated, or a DEBUG payload shorter than
/// `rx_debugIn`).
pub fn parse_request(packet: &Packet) -> Option<Request> {
    if !packet.header.is_client_initiated() {
        return None;
    }
    match packet.header.packet_type {
        PacketType::Version => Some(Request::Version),
        PacketType::Debug => {
            let mut p = packet.payload.get(..DEBUG_IN_LEN)?;
            let kind = p.get_i32();
            // OpenAFS counts the index down to 0: a negative index means the first.
            let index = usize::try_from(p.get_i32()).unwrap_or(0);
            Some(match kind {
                request_type::GET_STATS => Request::Stats,
                request_type::GET_CONN => Request::Conn { index, all: false },
                request_type::GET_ALL_CONN => Request::Conn { index, all: true },
                request_type::RX_STATS => Request::RxStats,
                request_type::GET_PEER => Request::Peer { index },
                other => Request::Unknown(other),
            })
        }
        _ => None,
    }
}

/// The reply OpenAFS would send to `packet`, or `None` if it would send none.
///
/// `version` is the string `rxdebug -version` shows (at most 64 bytes are sent;
/// `rxdebug` shows 63). Never panics, whatever the packet holds.
pub fn answer<S: DebugSource + ?Sized>(
    packet: &Packet,
    version: &str,
    source: &S,
) -> Option<Packet> {
    let payload = match parse_request(packet)? {
        Request::Version => encode_version(version),
        Request::Stats => source.stats().encode(),
        Request::Conn { index, all } => {
            let conn = if all {
                source.connection(index)
            } else {
                source.interesting_connection(index)
            };
            match conn {
                Some(c) => c.encode(),
                None => encode_conn_end(),
            }
        }
        Request::RxStats => source.rx_stats().encode(),
        Request::Peer { index } => match source.peer(index) {
            Some(p) => p.encode(),
            None => encode_peer_end(),
        },
        Request::Unknown(_) => {
            let mut out = BytesMut::with_capacity(DEBUG_IN_LEN);
            out.put_i32(request_type::BAD_TYPE);
            out.put_i32(request_type::BAD_TYPE);
            out.freeze()
        }
    };
    let mut header = packet.header;
    header.flags &= !flags::CLIENT_INITIATED;
    Some(Packet { header, payload })
}

/// The VERSION reply payload: `version` truncated to 64 bytes, NUL-padded to 65.
pub fn encode_version(version: &str) -> Bytes {
    let mut out = [0u8; VERSION_REPLY_LEN];
    let v = version.as_bytes();
    let n = v.len().min(VERSION_REPLY_LEN - 1);
    out[..n].copy_from_slice(&v[..n]);
    Bytes::copy_from_slice(&out)
}

/// Seconds and microseconds (`struct clock`), seconds saturating at `i32::MAX`.
fn put_clock(out: &mut BytesMut, d: Duration) {
    out.put_u32(d.as_secs().min(i32::MAX as u64) as u32);
    out.put_u32(d.subsec_micros());
}

/// A duration in 1/`per_ms` milliseconds, saturating.
fn scaled_ms(d: Duration, per_ms: u128) -> u32 {
    (d.as_micros() * per_ms / 1000).min(u128::from(i32::MAX as u32)) as u32
}

fn put_addr(out: &mut BytesMut, addr: &SocketAddrV4) {
    out.put_slice(&addr.ip().octets());
}

impl DebugStats {
    /// `struct rx_debugStats` in network order, version [`DEBUG_VERSION`].
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(DEBUG_STATS_LEN);
        out.put_u32(self.n_free_packets);
        out.put_u32(self.packet_reclaims);
        out.put_u32(self.calls_executed);
        out.put_u8(u8::from(self.waiting_for_packets));
        out.put_u8(self.used_fds);
        out.put_u8(DEBUG_VERSION);
        out.put_u8(0); // spare1
        out.put_u32(self.n_waiting);
        out.put_u32(self.idle_threads);
        out.put_u32(self.n_waited);
        out.put_u32(self.n_packets);
        out.put_bytes(0, 6 * 4); // spare2
        debug_assert_eq!(out.len(), DEBUG_STATS_LEN);
        out.freeze()
    }
}

impl RxStats {
    /// `struct rx_statistics` in network order.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(RX_STATS_LEN);
        for v in [
            self.packet_requests,
            self.receive_pkt_alloc_failures,
            self.send_pkt_alloc_failures,
            self.special_pkt_alloc_failures,
            self.socket_greedy,
            self.bogus_packet_on_read,
            self.bogus_host,
            self.no_packet_on_read,
            self.no_packet_buffers_on_read,
            self.selects,
            self.send_selects,
        ] {
            out.put_u32(v);
        }
        for v in self.packets_read {
            out.put_u32(v);
        }
        for v in [
            self.data_packets_read,
            self.ack_packets_read,
            self.dup_packets_read,
            self.spurious_packets_read,
        ] {
            out.put_u32(v);
        }
        for v in self.packets_sent {
            out.put_u32(v);
        }
        for v in [
            self.ack_packets_sent,
            self.ping_packets_sent,
            self.abort_packets_sent,
            self.busy_packets_sent,
            self.data_packets_sent,
            self.data_packets_resent,
            self.data_packets_pushed,
            self.ignore_acked_packet,
        ] {
            out.put_u32(v);
        }
        put_clock(&mut out, self.total_rtt);
        put_clock(&mut out, self.min_rtt);
        put_clock(&mut out, self.max_rtt);
        for v in [
            self.n_rtt_samples,
            self.n_server_conns,
            self.n_client_conns,
            self.n_peer_structs,
            self.n_call_structs,
            self.n_free_call_structs,
            self.net_send_failures,
            self.fatal_errors,
            self.ignore_packet_dally,
            self.receive_cbuf_pkt_alloc_failures,
            self.send_cbuf_pkt_alloc_failures,
            self.n_busies,
        ] {
            out.put_u32(v);
        }
        out.put_bytes(0, 4 * 4); // spares
        debug_assert_eq!(out.len(), RX_STATS_LEN);
        out.freeze()
    }
}

impl CallState {
    fn to_u8(self) -> u8 {
        match self {
            CallState::NotInit => 0,
            CallState::Precall => 1,
            CallState::Active => 2,
            CallState::Dally => 3,
            CallState::Hold => 4,
            CallState::Reset => 5,
        }
    }
}

impl CallMode {
    fn to_u8(self) -> u8 {
        match self {
            CallMode::None => 0,
            CallMode::Sending => 1,
            CallMode::Receiving => 2,
            CallMode::Error => 3,
            CallMode::Eof => 4,
        }
    }
}

impl SecStats {
    fn encode_into(&self, out: &mut BytesMut) {
        out.put_u8(self.sec_type);
        out.put_u8(self.level);
        out.put_bytes(0, 10); // sparec
        out.put_u32(self.flags);
        out.put_u32(self.expires);
        out.put_u32(self.packets_received);
        out.put_u32(self.packets_sent);
        out.put_u32(self.bytes_received);
        out.put_u32(self.bytes_sent);
        out.put_bytes(0, 4 * 2 + 8 * 4); // spares, sparel
    }
}

impl DebugConn {
    /// `struct rx_debugConn` in network order.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(DEBUG_CONN_LEN);
        put_addr(&mut out, &self.peer);
        out.put_u32(self.cid & !crate::packet::CHANNEL_MASK);
        out.put_u32(self.serial);
        for c in &self.calls {
            out.put_u32(c.number);
        }
        out.put_i32(self.error);
        out.put_u16(self.peer.port());
        out.put_u8(self.flags);
        out.put_u8(match self.conn_type {
            ConnType::Client => 0,
            ConnType::Server => 1,
        });
        out.put_u8(self.security_index);
        out.put_bytes(0, 3); // sparec
        for c in &self.calls {
            out.put_u8(c.state.to_u8());
        }
        for c in &self.calls {
            out.put_u8(c.mode.to_u8());
        }
        for c in &self.calls {
            out.put_u8(c.flags);
        }
        for c in &self.calls {
            out.put_u8(u8::from(c.has_input) | u8::from(c.has_output) << 1);
        }
        self.sec_stats.encode_into(&mut out);
        out.put_u32(self.epoch);
        out.put_u32(self.nat_mtu);
        out.put_bytes(0, 9 * 4); // sparel
        debug_assert_eq!(out.len(), DEBUG_CONN_LEN);
        out.freeze()
    }
}

/// The GETCONN answer past the last connection: all zero but `cid`.
fn encode_conn_end() -> Bytes {
    let mut out = BytesMut::zeroed(DEBUG_CONN_LEN);
    out[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    out.freeze()
}

impl DebugPeer {
    /// `struct rx_debugPeer` in network order.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(DEBUG_PEER_LEN);
        put_addr(&mut out, &self.addr);
        out.put_u16(self.addr.port());
        out.put_u16(self.if_mtu);
        out.put_u32(self.idle_when);
        out.put_u16(self.ref_count);
        out.put_u8(0); // burstSize
        out.put_u8(0); // burst
        out.put_bytes(0, 8); // burstWait
        out.put_u32(scaled_ms(self.rtt, 8));
        out.put_u32(scaled_ms(self.rtt_dev, 4));
        out.put_bytes(0, 8); // timeout: OpenAFS sends zero, rxdebug zeroes it anyway
        out.put_u32(self.n_sent);
        out.put_u32(self.re_sends);
        out.put_bytes(0, 3 * 4); // inPacketSkew, outPacketSkew, rateFlag
        for v in [
            self.nat_mtu,
            self.max_mtu,
            self.max_dgram_packets,
            self.if_dgram_packets,
            self.mtu,
            self.cwind,
            self.n_dgram_packets,
            self.congest_seq,
        ] {
            out.put_u16(v);
        }
        // afs_hyper_t: high word, then low word.
        out.put_u64(self.bytes_sent);
        out.put_u64(self.bytes_received);
        out.put_bytes(0, 10 * 4); // sparel
        debug_assert_eq!(out.len(), DEBUG_PEER_LEN);
        out.freeze()
    }
}

/// The GETPEER answer past the last peer: all zero but the host, 255.255.255.255.
fn encode_peer_end() -> Bytes {
    let mut out = BytesMut::zeroed(DEBUG_PEER_LEN);
    out[..4].copy_from_slice(&Ipv4Addr::BROADCAST.octets());
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Header;

    fn be32(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
    }

    fn be16(b: &[u8], at: usize) -> u16 {
        u16::from_be_bytes(b[at..at + 2].try_into().unwrap())
    }

    /// A request as OpenAFS's `MakeDebugCall` builds it.
    fn request(ty: PacketType, payload: &[u8]) -> Packet {
        Packet {
            header: Header {
                epoch: 999,
                cid: 0,
                call_number: 101,
                seq: 0,
                serial: 0,
                packet_type: ty,
                flags: flags::CLIENT_INITIATED | flags::LAST_PACKET,
                user_status: 0,
                security_index: 0,
                spare: 0,
                service_id: 0,
            },
            payload: Bytes::copy_from_slice(payload),
        }
    }

    fn debug_in(kind: i32, index: i32) -> Packet {
        let mut p = Vec::new();
        p.extend_from_slice(&kind.to_be_bytes());
        p.extend_from_slice(&index.to_be_bytes());
        request(PacketType::Debug, &p)
    }

    fn sample_conn(last: u8, active: bool) -> DebugConn {
        let mut c = DebugConn::new(
            SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, last), 7001),
            0x8000_1234,
            0x0000_0a04,
            ConnType::Server,
        );
        c.serial = 77;
        c.nat_mtu = 1444;
        if active {
            c.calls[2] = DebugCall {
                number: 9,
                state: CallState::Active,
                mode: CallMode::Receiving,
                flags: call_flags::READER_WAIT,
                has_input: true,
                has_output: false,
            };
        } else {
            c.calls[0].number = 3;
            c.calls[0].state = CallState::Dally;
            c.calls[0].mode = CallMode::Eof;
        }
        c
    }

    fn sample() -> Snapshot {
        let mut peer = DebugPeer::new(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 7001));
        peer.if_mtu = 1444;
        peer.ref_count = 2;
        peer.rtt = Duration::from_millis(12);
        peer.rtt_dev = Duration::from_millis(3);
        peer.n_sent = 1000;
        peer.re_sends = 5;
        peer.cwind = 32;
        peer.bytes_sent = 0x1_0000_0002;
        peer.bytes_received = 42;
        Snapshot {
            stats: DebugStats {
                n_free_packets: 100,
                n_packets: 200,
                calls_executed: 7,
                used_fds: 1,
                ..Default::default()
            },
            rx_stats: RxStats {
                packet_requests: 1,
                n_busies: 99,
                ..Default::default()
            },
            conns: vec![sample_conn(1, false), sample_conn(2, true)],
            peers: vec![peer],
        }
    }

    fn reply(p: &Packet) -> Packet {
        answer(p, "afs-wasm test", &sample()).expect("a reply")
    }

    #[test]
    fn reply_header_is_the_request_header_without_client_flag() {
        let req = debug_in(request_type::GET_STATS, 0);
        let rep = reply(&req);
        let mut want = req.header;
        want.flags = flags::LAST_PACKET;
        assert_eq!(rep.header, want);
        let req = request(PacketType::Version, &[0]);
        assert_eq!(reply(&req).header.flags, flags::LAST_PACKET);
        assert_eq!(reply(&req).header.packet_type, PacketType::Version);
    }

    #[test]
    fn version_reply_is_65_nul_padded_bytes() {
        let rep = reply(&request(PacketType::Version, &[0]));
        assert_eq!(rep.payload.len(), VERSION_REPLY_LEN);
        assert_eq!(&rep.payload[..13], b"afs-wasm test");
        assert!(rep.payload[13..].iter().all(|&b| b == 0));
        // Any payload, even none, as OpenAFS.
        assert!(answer(&request(PacketType::Version, &[]), "v", &sample()).is_some());
        // Long strings keep a terminating NUL.
        let long = "x".repeat(200);
        let p = encode_version(&long);
        assert_eq!(p.len(), VERSION_REPLY_LEN);
        assert!(p[..64].iter().all(|&b| b == b'x'));
        assert_eq!(p[64], 0);
        assert_eq!(encode_version(""), Bytes::from(vec![0u8; 65]));
    }

    #[test]
    fn not_client_initiated_gets_no_reply() {
        // OpenAFS peers send VERSION without the flag as NAT keep-alives.
        for mut p in [
            request(PacketType::Version, &[0]),
            debug_in(request_type::GET_STATS, 0),
        ] {
            p.header.flags = flags::LAST_PACKET;
            assert_eq!(answer(&p, "v", &sample()), None);
        }
    }

    #[test]
    fn other_packet_types_get_no_reply() {
        for ty in [
            PacketType::Data,
            PacketType::Ack,
            PacketType::Busy,
            PacketType::Abort,
            PacketType::AckAll,
            PacketType::Challenge,
            PacketType::Response,
            PacketType::Params,
        ] {
            assert!(!is_debug_type(ty));
            let mut p = debug_in(request_type::GET_STATS, 0);
            p.header.packet_type = ty;
            assert_eq!(answer(&p, "v", &sample()), None);
        }
        assert!(is_debug_type(PacketType::Debug));
        assert!(is_debug_type(PacketType::Version));
    }

    #[test]
    fn truncated_debug_requests_get_no_reply() {
        let full = debug_in(request_type::GET_STATS, 0);
        for n in 0..DEBUG_IN_LEN {
            let mut p = full.clone();
            p.payload = full.payload.slice(..n);
            assert_eq!(parse_request(&p), None);
            assert_eq!(answer(&p, "v", &sample()), None);
        }
        // Trailing bytes are ignored, as OpenAFS reads only rx_debugIn.
        let mut p = full.clone();
        p.payload = Bytes::from([&full.payload[..], &[1u8; 100]].concat());
        assert_eq!(parse_request(&p), Some(Request::Stats));
    }

    #[test]
    fn unknown_types_get_badtype() {
        for kind in [0, 6, 99, -1, -8, i32::MIN, i32::MAX] {
            let rep = reply(&debug_in(kind, 3));
            let mut want = Vec::new();
            want.extend_from_slice(&(-8i32).to_be_bytes());
            want.extend_from_slice(&(-8i32).to_be_bytes());
            assert_eq!(&rep.payload[..], &want[..], "type {kind}");
        }
    }

    #[test]
    fn parse_request_reads_type_and_index() {
        assert_eq!(
            parse_request(&debug_in(request_type::GET_CONN, 5)),
            Some(Request::Conn {
                index: 5,
                all: false
            })
        );
        assert_eq!(
            parse_request(&debug_in(request_type::GET_ALL_CONN, 0)),
            Some(Request::Conn {
                index: 0,
                all: true
            })
        );
        assert_eq!(
            parse_request(&debug_in(request_type::GET_PEER, -3)),
            Some(Request::Peer { index: 0 })
        );
        assert_eq!(
            parse_request(&debug_in(request_type::RX_STATS, 1)),
            Some(Request::RxStats)
        );
    }

    #[test]
    fn stats_layout_matches_rx_debug_stats() {
        let p = reply(&debug_in(request_type::GET_STATS, 0)).payload;
        assert_eq!(p.len(), DEBUG_STATS_LEN);
        assert_eq!(be32(&p, 0), 100, "nFreePackets");
        assert_eq!(be32(&p, 4), 0, "packetReclaims");
        assert_eq!(be32(&p, 8), 7, "callsExecuted");
        assert_eq!(p[12], 0, "waitingForPackets");
        assert_eq!(p[13], 1, "usedFDs");
        assert_eq!(p[14], b'S', "version");
        assert_eq!(p[15], 0, "spare1");
        assert_eq!(be32(&p, 28), 200, "nPackets");
        assert!(p[32..].iter().all(|&b| b == 0), "spare2");

        let s = DebugStats {
            n_free_packets: 1,
            n_packets: 2,
            packet_reclaims: 3,
            calls_executed: 4,
            waiting_for_packets: true,
            used_fds: 5,
            n_waiting: 6,
            idle_threads: 7,
            n_waited: 8,
        }
        .encode();
        let words: Vec<u32> = [0, 4, 8, 16, 20, 24, 28]
            .iter()
            .map(|&o| be32(&s, o))
            .collect();
        assert_eq!(words, [1, 3, 4, 6, 7, 8, 2]);
        assert_eq!(&s[12..16], &[1, 5, b'S', 0]);
    }

    #[test]
    fn rx_stats_layout_matches_rx_statistics() {
        // Give every field a distinct value and check it lands in its C slot.
        let mut s = RxStats {
            packet_requests: 1,
            receive_pkt_alloc_failures: 2,
            send_pkt_alloc_failures: 3,
            special_pkt_alloc_failures: 4,
            socket_greedy: 5,
            bogus_packet_on_read: 6,
            bogus_host: 7,
            no_packet_on_read: 8,
            no_packet_buffers_on_read: 9,
            selects: 10,
            send_selects: 11,
            data_packets_read: 25,
            ack_packets_read: 26,
            dup_packets_read: 27,
            spurious_packets_read: 28,
            ack_packets_sent: 42,
            ping_packets_sent: 43,
            abort_packets_sent: 44,
            busy_packets_sent: 45,
            data_packets_sent: 46,
            data_packets_resent: 47,
            data_packets_pushed: 48,
            ignore_acked_packet: 49,
            total_rtt: Duration::new(50, 51),
            min_rtt: Duration::new(52, 53_000),
            max_rtt: Duration::new(54, 55_000),
            n_rtt_samples: 56,
            n_server_conns: 57,
            n_client_conns: 58,
            n_peer_structs: 59,
            n_call_structs: 60,
            n_free_call_structs: 61,
            net_send_failures: 62,
            fatal_errors: 63,
            ignore_packet_dally: 64,
            receive_cbuf_pkt_alloc_failures: 65,
            send_cbuf_pkt_alloc_failures: 66,
            n_busies: 67,
            ..Default::default()
        };
        for i in 0..N_PACKET_TYPES {
            s.packets_read[i] = 12 + i as u32;
            s.packets_sent[i] = 29 + i as u32;
        }
        let p = s.encode();
        assert_eq!(p.len(), RX_STATS_LEN);
        let words: Vec<u32> = (0..RX_STATS_LEN / 4).map(|i| be32(&p, i * 4)).collect();
        // Slots 0..67 hold 1..=67 in C field order, then the four spares.
        let mut want: Vec<u32> = (1..=67).collect();
        want[50] = 0; // totalRtt.usec: 51 ns is 0 µs
        want.extend([0, 0, 0, 0]);
        assert_eq!(words.len(), 71);
        assert_eq!(words, want);
        assert_eq!(packet_type_slot(PacketType::Data), 0);
        assert_eq!(packet_type_slot(PacketType::Version), 12);
        assert_eq!(words[11 + packet_type_slot(PacketType::Ack)], 13);
    }

    #[test]
    fn sample_rx_stats_reply() {
        let p = reply(&debug_in(request_type::RX_STATS, 0)).payload;
        assert_eq!(p.len(), RX_STATS_LEN);
        assert_eq!(be32(&p, 0), 1);
        assert_eq!(be32(&p, 66 * 4), 99, "nBusies");
    }

    #[test]
    fn conn_layout_matches_rx_debug_conn() {
        let mut c = sample_conn(2, true);
        c.cid = 0x0000_0a07; // channel bits are dropped
        c.error = -5;
        c.flags = conn_flags::KNOW_WINDOW;
        c.security_index = 2;
        c.calls[3].number = 0x0102_0304;
        c.calls[3].has_output = true;
        c.sec_stats = SecStats {
            sec_type: sec_type::KAD,
            level: 2,
            flags: 2,
            expires: 0x1111_1111,
            packets_received: 10,
            packets_sent: 11,
            bytes_received: 12,
            bytes_sent: 13,
        };
        let p = c.encode();
        assert_eq!(p.len(), DEBUG_CONN_LEN);
        assert_eq!(&p[0..4], &[192, 0, 2, 2], "host");
        assert_eq!(be32(&p, 4), 0x0a04, "cid");
        assert_eq!(be32(&p, 8), 77, "serial");
        assert_eq!(be32(&p, 12), 0, "callNumber[0]");
        assert_eq!(be32(&p, 20), 9, "callNumber[2]");
        assert_eq!(be32(&p, 24), 0x0102_0304, "callNumber[3]");
        assert_eq!(be32(&p, 28) as i32, -5, "error");
        assert_eq!(be16(&p, 32), 7001, "port");
        assert_eq!(p[34], conn_flags::KNOW_WINDOW, "flags");
        assert_eq!(p[35], 1, "type: server");
        assert_eq!(p[36], 2, "securityIndex");
        assert_eq!(&p[37..40], &[0, 0, 0], "sparec");
        assert_eq!(&p[40..44], &[0, 0, 2, 0], "callState");
        assert_eq!(&p[44..48], &[0, 0, 2, 0], "callMode");
        assert_eq!(&p[48..52], &[0, 0, 1, 0], "callFlags");
        assert_eq!(&p[52..56], &[0, 0, 1, 2], "callOther");
        assert_eq!(&p[56..58], &[3, 2], "secStats type, level");
        assert!(p[58..68].iter().all(|&b| b == 0), "secStats sparec");
        let sec: Vec<u32> = (0..6).map(|i| be32(&p, 68 + 4 * i)).collect();
        assert_eq!(sec, [2, 0x1111_1111, 10, 11, 12, 13]);
        assert!(p[92..132].iter().all(|&b| b == 0), "secStats spares");
        assert_eq!(be32(&p, 132), 0x8000_1234, "epoch");
        assert_eq!(be32(&p, 136), 1444, "natMTU");
        assert!(p[140..].iter().all(|&b| b == 0), "sparel");
        // The client side of the type byte and rxnull's statistics type.
        let c = DebugConn::new(
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1),
            1,
            4,
            ConnType::Client,
        );
        let p = c.encode();
        assert_eq!(p[35], 0);
        assert_eq!(p[56], sec_type::NULL);
    }

    #[test]
    fn getconn_walks_interesting_and_getallconn_walks_all() {
        let src = sample();
        let cid_host = |p: &Packet| (be32(&p.payload, 4), p.payload[3]);
        // All: both connections, then the end marker.
        let all: Vec<_> = (0..3)
            .map(|i| cid_host(&reply(&debug_in(request_type::GET_ALL_CONN, i))))
            .collect();
        assert_eq!(all, [(0x0a04, 1), (0x0a04, 2), (u32::MAX, 0)]);
        // Interesting: only the one with an active call.
        let some: Vec<_> = (0..2)
            .map(|i| cid_host(&reply(&debug_in(request_type::GET_CONN, i))))
            .collect();
        assert_eq!(some, [(0x0a04, 2), (u32::MAX, 0)]);
        assert!(!src.conns[0].is_interesting());
        assert!(src.conns[1].is_interesting());
        let end = reply(&debug_in(request_type::GET_CONN, i32::MAX)).payload;
        assert_eq!(end.len(), DEBUG_CONN_LEN);
        assert_eq!(be32(&end, 4), u32::MAX);
        assert!(end[..4].iter().chain(&end[8..]).all(|&b| b == 0));
        // A negative index is the first, as OpenAFS counts down.
        assert_eq!(
            cid_host(&reply(&debug_in(request_type::GET_ALL_CONN, -1))),
            (0x0a04, 1)
        );
    }

    #[test]
    fn interesting_rules() {
        let base = DebugConn::new(
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1),
            1,
            4,
            ConnType::Client,
        );
        assert!(!base.is_interesting());
        for f in [conn_flags::MAKECALL_WAITING, conn_flags::DESTROY_ME] {
            let mut c = base.clone();
            c.flags = f;
            assert!(c.is_interesting());
        }
        let mut c = base.clone();
        c.flags = conn_flags::KNOW_WINDOW;
        assert!(!c.is_interesting());
        for (state, mode, want) in [
            (CallState::Precall, CallMode::None, true),
            (CallState::Active, CallMode::Eof, true),
            (CallState::Dally, CallMode::Sending, true),
            (CallState::Hold, CallMode::Receiving, true),
            (CallState::Dally, CallMode::Eof, false),
            (CallState::Hold, CallMode::Error, false),
            (CallState::Reset, CallMode::None, false),
        ] {
            let mut c = base.clone();
            c.calls[1].state = state;
            c.calls[1].mode = mode;
            assert_eq!(c.is_interesting(), want, "{state:?} {mode:?}");
        }
    }

    #[test]
    fn peer_layout_matches_rx_debug_peer() {
        let mut peer = sample().peers[0].clone();
        peer.idle_when = 0x0a0b_0c0d;
        peer.nat_mtu = 1;
        peer.max_mtu = 2;
        peer.max_dgram_packets = 3;
        peer.if_dgram_packets = 4;
        peer.mtu = 5;
        peer.n_dgram_packets = 7;
        peer.congest_seq = 8;
        let p = peer.encode();
        assert_eq!(p.len(), DEBUG_PEER_LEN);
        assert_eq!(&p[0..4], &[192, 0, 2, 1], "host");
        assert_eq!(be16(&p, 4), 7001, "port");
        assert_eq!(be16(&p, 6), 1444, "ifMTU");
        assert_eq!(be32(&p, 8), 0x0a0b_0c0d, "idleWhen");
        assert_eq!(be16(&p, 12), 2, "refCount");
        assert!(p[14..24].iter().all(|&b| b == 0), "burst fields");
        assert_eq!(be32(&p, 24), 12 * 8, "rtt in 1/8 ms");
        assert_eq!(be32(&p, 28), 3 * 4, "rtt_dev in 1/4 ms");
        assert!(p[32..40].iter().all(|&b| b == 0), "timeout");
        assert_eq!(be32(&p, 40), 1000, "nSent");
        assert_eq!(be32(&p, 44), 5, "reSends");
        assert!(p[48..60].iter().all(|&b| b == 0), "skews, rateFlag");
        let shorts: Vec<u16> = (0..8).map(|i| be16(&p, 60 + 2 * i)).collect();
        assert_eq!(shorts, [1, 2, 3, 4, 5, 32, 7, 8]);
        assert_eq!(be32(&p, 76), 1, "bytesSent.high");
        assert_eq!(be32(&p, 80), 2, "bytesSent.low");
        assert_eq!(be32(&p, 84), 0, "bytesReceived.high");
        assert_eq!(be32(&p, 88), 42, "bytesReceived.low");
        assert!(p[92..].iter().all(|&b| b == 0), "sparel");
    }

    #[test]
    fn getpeer_walks_peers_then_end_marker() {
        let first = reply(&debug_in(request_type::GET_PEER, 0)).payload;
        assert_eq!(&first[..4], &[192, 0, 2, 1]);
        let end = reply(&debug_in(request_type::GET_PEER, 1)).payload;
        assert_eq!(end.len(), DEBUG_PEER_LEN);
        assert_eq!(&end[..4], &[255; 4]);
        assert!(end[4..].iter().all(|&b| b == 0));
    }

    #[test]
    fn durations_saturate() {
        let mut peer = DebugPeer::new(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1));
        peer.rtt = Duration::MAX;
        peer.rtt_dev = Duration::from_micros(1);
        let p = peer.encode();
        assert_eq!(be32(&p, 24), i32::MAX as u32);
        assert_eq!(be32(&p, 28), 0);
        let s = RxStats {
            max_rtt: Duration::MAX,
            ..Default::default()
        }
        .encode();
        assert_eq!(be32(&s, 53 * 4), i32::MAX as u32);
    }

    #[test]
    fn every_reply_fits_one_small_datagram() {
        for p in [
            request(PacketType::Version, &[0]),
            debug_in(request_type::GET_STATS, 0),
            debug_in(request_type::GET_CONN, 0),
            debug_in(request_type::GET_ALL_CONN, 9),
            debug_in(request_type::RX_STATS, 0),
            debug_in(request_type::GET_PEER, 0),
            debug_in(request_type::GET_PEER, 9),
            debug_in(42, 0),
        ] {
            let d = reply(&p).to_datagram();
            assert!(d.len() <= MAX_REPLY_DATAGRAM);
            // OpenAFS rxdebug receives into 1500 bytes.
            assert!(d.len() <= 1500);
        }
    }

    /// A source that answers nothing: an endpoint with no connections or peers.
    struct Empty;

    impl DebugSource for Empty {
        fn stats(&self) -> DebugStats {
            DebugStats::default()
        }
        fn rx_stats(&self) -> RxStats {
            RxStats::default()
        }
        fn connection(&self, _: usize) -> Option<DebugConn> {
            None
        }
        fn peer(&self, _: usize) -> Option<DebugPeer> {
            None
        }
    }

    #[test]
    fn works_through_dyn_and_empty_sources() {
        let src: &dyn DebugSource = &Empty;
        let rep = answer(&debug_in(request_type::GET_CONN, 0), "v", src).unwrap();
        assert_eq!(be32(&rep.payload, 4), u32::MAX);
        let rep = answer(&debug_in(request_type::GET_STATS, 0), "v", src).unwrap();
        assert_eq!(rep.payload[14], DEBUG_VERSION);
    }

    #[test]
    fn garbage_never_panics() {
        let src = sample();
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut answered = 0;
        for len in 0..3000usize {
            let mut buf = Vec::with_capacity(len % 80);
            for _ in 0..len % 80 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf.push(x as u8);
            }
            // Steer half the datagrams to the types this module handles.
            if buf.len() > 21 && len % 2 == 0 {
                buf[20] = if len % 4 == 0 { 8 } else { 13 };
                buf[21] |= flags::CLIENT_INITIATED;
                if buf.len() >= HEADER_LEN + 4 && len % 8 == 0 {
                    buf[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&[0, 0, 0, (len % 7) as u8]);
                }
            }
            let Ok(pkts) = Packet::parse_datagram(Bytes::from(buf)) else {
                continue;
            };
            for p in pkts {
                if let Some(r) = answer(&p, "garbage", &src) {
                    answered += 1;
                    assert!(r.to_datagram().len() <= MAX_REPLY_DATAGRAM);
                    assert_eq!(r.header.flags & flags::CLIENT_INITIATED, 0);
                }
            }
        }
        assert!(answered > 100, "the steering reached answer(): {answered}");
    }
}
